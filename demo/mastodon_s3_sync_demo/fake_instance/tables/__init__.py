"""The fake instance's media tables, one module each: its hand-written cases, its bulk generator.

A new Mastodon media table gets a module here and a line below; ``test_fake_tables``
fails until it has one.
"""

from __future__ import annotations

from mastodon_s3_sync_demo.fake_instance.model import FakeTable
from mastodon_s3_sync_demo.fake_instance.tables import (
    accounts,
    backups,
    custom_emojis,
    media_attachments,
    preview_card_providers,
    preview_cards,
    site_uploads,
)

FAKE_TABLES: dict[str, FakeTable] = {
    module.FAKE.name: module.FAKE
    for module in (
        accounts,  # before media_attachments: its cases and bulk rows belong to accounts
        media_attachments,
        custom_emojis,
        preview_cards,
        site_uploads,
        preview_card_providers,
        backups,
    )
}
"""In the order rows are built and schema tables emitted."""
TABLE_NAMES = tuple(FAKE_TABLES)
