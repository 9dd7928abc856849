"""What to trim first (``core.cached_media`` and ``plan``'s report of it), on the fake instance.

The figures are the hand-written rows' (demo/mastodon_s3_sync_demo/fake_instance/tables/): the
remote media rows were created 2024-03-02 08:00..22:00, one an hour; at ``NOW`` the cut-off of
``--days 7`` is 2024-03-02 15:30, so the six rows of 08:00-15:00 are older than 7 days:
files 1493 + 937 + 1945 + 1792 + 2611 + 1587 = 10,365 bytes, one thumbnail of 1002; the five
younger ones 1461 + 95873 + 2513 + 2841 + 274 = 102,962 bytes, thumbnails 1164 + 1097.
"""

from __future__ import annotations

from datetime import datetime

import psycopg2
from mastodon_s3_sync_demo.fake_instance.instance import build_fake_instance
from mastodon_s3_sync_demo.fake_instance.model import T0
from mastodon_s3_sync_demo.fake_instance.seeding import create_schema, insert_rows

from mastodon_s3_sync.core.cached_media import Figures, cached_media
from mastodon_s3_sync.core.database import MastodonDatabase
from mastodon_s3_sync_tests.support.cli import run_wide

NOW = datetime(2024, 3, 9, 15, 30)


def seed_rows(database_url: str) -> None:
    """The fake instance's rows, with webfinger dates on the remote accounts (the test's own writes:
    three accounts last webfingered long ago, one a day before ``NOW``)."""
    create_schema(database_url)
    insert_rows(database_url, build_fake_instance())
    with psycopg2.connect(database_url) as connection, connection.cursor() as cursor:
        cursor.execute(
            "UPDATE accounts SET last_webfingered_at = %s WHERE id IN (1234, 4321, 105585102028813107)", (T0,)
        )
        cursor.execute("UPDATE accounts SET last_webfingered_at = '2024-03-08' WHERE id = 113775634022404369")
    connection.close()


def test_cached_media_by_age_and_what_tootctl_would_free(database_url):
    seed_rows(database_url)
    report = cached_media(MastodonDatabase(database_url=database_url), 7, NOW)
    none = Figures(0, 0)
    assert report.by_age == {
        "remote media attachments": [Figures(5, 102_962), Figures(6, 10_365), none, none],
        "remote media thumbnails": [Figures(2, 2_261), Figures(1, 1_002), none, none],
        # accounts 1234, 4321, 56789, 105585102028813107, 113775634022404369 (2024-03-01): 2751 + 1017 + 1659 + 218 + 2313
        "remote avatars": [none, Figures(5, 7_958), none, none],
        "remote headers": [none, Figures(3, 2_955 + 2_150 + 183_211), none, none],
        "remote custom emojis": [Figures(4, 4_774), none, none, none],
        "preview cards": [Figures(6, 48_807), none, none, none],
    }
    assert report.tootctl == {
        "tootctl media remove --days 7": Figures(6, 10_365 + 1_002),
        # 1234: 2751 + 2955; 4321: 1017; 105585102028813107: 218 + 2150 (113775634022404369 webfingered lately)
        "tootctl media remove --days 7 --prune-profiles --include-follows": Figures(3, 9_091),
        "tootctl media remove --days 7 --remove-headers --include-follows": Figures(2, 2_955 + 2_150),
    }


def test_followed_accounts_are_kept_without_include_follows(database_url):
    seed_rows(database_url)
    with psycopg2.connect(database_url) as connection, connection.cursor() as cursor:
        cursor.execute("CREATE TABLE follows (id bigserial PRIMARY KEY, account_id bigint, target_account_id bigint)")
        cursor.execute("INSERT INTO follows (account_id, target_account_id) VALUES (1, 4321), (1234, 2)")
    connection.close()
    report = cached_media(MastodonDatabase(database_url=database_url), 7, NOW)
    assert report.tootctl["tootctl media remove --days 7 --prune-profiles"] == Figures(1, 2_368)
    assert report.tootctl["tootctl media remove --days 7 --remove-headers"] == Figures(1, 2_150)
    assert report.tootctl["tootctl media remove --days 7 --prune-profiles --include-follows"] == Figures(3, 9_091)


def test_plan_prints_the_trimming_report_and_the_url_change(database_url, tmp_path, environment):
    seed_rows(database_url)
    environment(
        {
            "DATABASE_URL": database_url,
            "DAGSTER_HOME": str(tmp_path / "home"),
            "SOURCE_S3_BUCKET": "old-media",
            "SOURCE_S3_REGION": "eu-west-1",
            "DESTINATION_S3_BUCKET": "new-media",
            "DESTINATION_S3_ENDPOINT": "https://acct.r2.cloudflarestorage.com",
        }
    )
    result = run_wide("plan", "--days", "3650", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Cached remote media (cache/) by age of the row" in result.stdout
    assert "  tootctl media remove --days 3650: 0 rows, 0 B of originals\n" in result.stdout, "nothing that old"
    assert (
        "Media URLs WILL CHANGE: https://s3.eu-west-1.amazonaws.com/old-media/... -> "
        "https://acct.r2.cloudflarestorage.com/new-media/...; no S3_ALIAS_HOST on either side"
    ) in result.stdout
