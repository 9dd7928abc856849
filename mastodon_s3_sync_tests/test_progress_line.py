"""The command line's progress line off a terminal: what a copy step reports through the progress hub,
the requests in flight among it (fast tier: no servers)."""

from __future__ import annotations

import re

from mastodon_s3_sync.cli.progress import TerminalProgress
from mastodon_s3_sync.core.progress import BatchDeltas, ProgressHub


def test_the_progress_line_shows_the_requests_in_flight_and_their_ceiling(capsys) -> None:
    hub = ProgressHub()
    with TerminalProgress("media_attachments", total=1000, interval=0) as progress, hub.listening(progress):
        report = BatchDeltas(hub)
        report(100, 2_000_000, 64, 512)
        report(400, 8_000_000, 180, 512)
    lines = [re.sub(r"[0-9,]+ objects/s", "R objects/s", line) for line in capsys.readouterr().err.splitlines()]
    assert lines == [
        "media_attachments: 100/1000 objects, 2.0 MB, R objects/s, in flight 64 (max 512), about 0 s left",
        "media_attachments: 400/1000 objects, 8.0 MB, R objects/s, in flight 180 (max 512), about 0 s left",
        "media_attachments: 400/1000 objects, 8.0 MB, R objects/s, in flight 180 (max 512), about 0 s left",  # on exit
    ]
