"""Peak memory of `mastodon-s3-sync verify` when every referenced object is missing.

Builds media_attachments rows with SQL on Mastodon's real schema (two objects per row: file and
small), none of whose objects exist at the source, then runs `verify media_attachments --output
FILE` in its own process (peak RSS from wait4) against two empty `rclone serve s3` buckets. Every
object is a finding; the findings are written to the file as they are found and only counted in
memory, so the peak must not grow with their number.

    .venv/bin/python benchmarks/bench_verify_memory.py --rows 100000,500000
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack, closing
from pathlib import Path

import psycopg2

ROOT = Path(__file__).resolve().parent.parent
SCHEMA_SQL = ROOT / "demo" / "mastodon_s3_sync_demo" / "schema" / "mastodon_schema.sql"

INSERT_ROWS = """
INSERT INTO media_attachments (id, file_file_name, file_content_type, file_file_size, file_updated_at,
                               created_at, updated_at, account_id, remote_url, type)
SELECT 114000000000000000 + g, md5(g::text) || '.jpeg', 'image/jpeg', 150000, now(), now(), now(), g, '', 0
FROM generate_series(%s, %s) AS g
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", default="100000,500000", help="media rows, comma-separated (two objects each)")
    arguments = parser.parse_args()
    from mastodon_s3_sync_demo.servers import fresh_database, postgres_server, rclone_s3_server

    with ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-verify-", dir="/dev/shm")))
        database_url = stack.enter_context(fresh_database(stack.enter_context(postgres_server()), "bench_verify"))
        source = stack.enter_context(rclone_s3_server(work / "source"))
        destination = stack.enter_context(rclone_s3_server(work / "destination"))
        source.create_bucket("verify-source")
        destination.create_bucket("verify-destination")
        with closing(psycopg2.connect(database_url)) as connection, connection, connection.cursor() as cursor:
            cursor.execute(SCHEMA_SQL.read_text())
        environment = {
            **os.environ,
            "DATABASE_URL": database_url,
            "SOURCE_S3_BUCKET": "verify-source",
            "SOURCE_S3_ENDPOINT": source.endpoint_url,
            "SOURCE_AWS_ACCESS_KEY_ID": source.access_key,
            "SOURCE_AWS_SECRET_ACCESS_KEY": source.secret_key,
            "DESTINATION_S3_BUCKET": "verify-destination",
            "DESTINATION_S3_ENDPOINT": destination.endpoint_url,
            "DESTINATION_AWS_ACCESS_KEY_ID": destination.access_key,
            "DESTINATION_AWS_SECRET_ACCESS_KEY": destination.secret_key,
            "DAGSTER_HOME": str(work / "home"),
        }
        loaded = 0
        print(f"{'rows':>9} {'objects':>9} {'findings written':>17} {'peak RSS MB':>12} {'seconds':>8}")
        for rows in sorted(int(size) for size in arguments.rows.split(",")):
            with closing(psycopg2.connect(database_url)) as connection, connection, connection.cursor() as cursor:
                cursor.execute(INSERT_ROWS, (loaded + 1, rows))
                cursor.execute("ANALYZE media_attachments")
            loaded = rows
            output = work / f"findings-{rows}.csv"
            started = time.monotonic()
            process = subprocess.Popen(
                [sys.executable, "-m", "mastodon_s3_sync", "verify", "media_attachments", "--output", str(output)],
                env=environment,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )
            _, status, usage = os.wait4(process.pid, 0)
            seconds = time.monotonic() - started
            if os.waitstatus_to_exitcode(status) != 0:  # incomplete: every object is missing at the source
                assert "Traceback" not in process.stderr.read()
            written = sum(1 for _ in output.open()) - 1
            assert written == 2 * rows, f"{written} findings written for {2 * rows} objects"
            # ru_maxrss is in kilobytes on Linux
            print(f"{rows:>9,} {2 * rows:>9,} {written:>17,} {usage.ru_maxrss / 1024:>12.0f} {seconds:>8.1f}")
            output.unlink()


if __name__ == "__main__":
    main()
