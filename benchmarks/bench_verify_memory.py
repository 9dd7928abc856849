"""Wall time and peak memory of `mastodon-s3-sync verify media_attachments`, in three cases.

Builds media_attachments rows with SQL on Mastodon's real schema (two objects per row: file and
small) and runs `verify` in its own process (peak RSS from wait4) against `rclone serve s3`:

- ``missing`` (default): none of the objects exist; with ``--accept-missing`` every object is a
  finding, written to ``--output`` as it is found and only counted in memory.
- ``healthy``: every object exists at the source and, identical, at the destination (empty files
  written straight into the server's directory; the destination bucket is a symlink to the
  source's, served with ``RCLONE_COPY_LINKS``), so verify lists, HEADs and proves every object.
- ``empty``: an empty source bucket: the time until verify stops with its one-line error.

    .venv/bin/python benchmarks/bench_verify_memory.py --rows 100000,500000
    .venv/bin/python benchmarks/bench_verify_memory.py --case healthy --rows 100000,500000
    .venv/bin/python benchmarks/bench_verify_memory.py --case empty --rows 2000000
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


VERIFY = [sys.executable, "-m", "mastodon_s3_sync", "verify", "media_attachments"]


def run_verify(environment: dict[str, str]) -> tuple[int, float, float, list[str]]:
    """Exit code, seconds, peak RSS (MB) and stderr lines of one `verify media_attachments`."""
    with tempfile.TemporaryFile("w+") as output:
        started = time.monotonic()
        process = subprocess.Popen(VERIFY, env=environment, stdout=output, stderr=subprocess.STDOUT, text=True)
        _, status, usage = os.wait4(process.pid, 0)  # ru_maxrss of this child alone, in kilobytes
        seconds = time.monotonic() - started
        output.seek(0)
        lines = output.read().strip().splitlines()
    return os.waitstatus_to_exitcode(status), seconds, usage.ru_maxrss / 1024, lines


def healthy(arguments, stack, work: Path, database_url: str, rclone_s3_server) -> None:
    """Every object present and identical on both sides: one directory, served as both buckets."""
    from mastodon_s3_sync.core.database import MastodonDatabase
    from mastodon_s3_sync.core.mastodon.tables import TABLES
    from mastodon_s3_sync.core.referenced_objects import referenced_objects

    root = work / "served"
    (root / "verify-source").mkdir(parents=True)
    (root / "verify-destination").symlink_to(root / "verify-source")
    os.environ["RCLONE_COPY_LINKS"] = "true"  # rclone_s3_server passes the environment on to rclone
    loaded = 0
    print(f"{'rows':>9} {'objects':>9} {'seed s':>7} {'peak RSS MB':>12} {'seconds':>8} {'objects/s':>10}  verdict")
    for rows in sorted(int(size) for size in arguments.rows.split(",")):
        seeding = time.monotonic()
        with closing(psycopg2.connect(database_url)) as connection, connection, connection.cursor() as cursor:
            cursor.execute(INSERT_ROWS, (loaded + 1, rows))
            cursor.execute("ANALYZE media_attachments")
        directories: set[Path] = set()
        objects = 0
        for media_object in referenced_objects(MastodonDatabase(database_url), TABLES["media_attachments"], None):
            path = root / "verify-source" / media_object.key
            if path.parent not in directories:
                path.parent.mkdir(parents=True, exist_ok=True)
                directories.add(path.parent)
            path.touch()
            objects += 1
        loaded = rows
        seeded = time.monotonic() - seeding
        with rclone_s3_server(root) as server:  # started after the files are written: its listings see them all
            environment = {
                **os.environ,
                "DATABASE_URL": database_url,
                "DAGSTER_HOME": str(work / "home"),
                **{
                    f"{side}_{name}": value
                    for side in ("SOURCE", "DESTINATION")
                    for name, value in (
                        ("S3_BUCKET", f"verify-{side.lower()}"),
                        ("S3_ENDPOINT", server.endpoint_url),
                        ("AWS_ACCESS_KEY_ID", server.access_key),
                        ("AWS_SECRET_ACCESS_KEY", server.secret_key),
                    )
                },
            }
            exit_code, seconds, peak, lines = run_verify(environment)
        verdict = lines[-1] if lines else ""
        assert exit_code == 0 and verdict == "verified: complete", lines[-5:]
        print(
            f"{rows:>9,} {objects:>9,} {seeded:>7.0f} {peak:>12.0f} {seconds:>8.1f} {objects / seconds:>10,.0f}  {verdict}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", default="100000,500000", help="media rows, comma-separated (two objects each)")
    parser.add_argument("--case", choices=("missing", "healthy", "empty"), default="missing")
    arguments = parser.parse_args()
    from mastodon_s3_sync_demo.servers import fresh_database, postgres_server, rclone_s3_server

    with ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-verify-", dir="/dev/shm")))
        database_url = stack.enter_context(fresh_database(stack.enter_context(postgres_server()), "bench_verify"))
        with closing(psycopg2.connect(database_url)) as connection, connection, connection.cursor() as cursor:
            cursor.execute(SCHEMA_SQL.read_text())
        if arguments.case == "healthy":
            return healthy(arguments, stack, work, database_url, rclone_s3_server)
        source = stack.enter_context(rclone_s3_server(work / "source"))
        destination = stack.enter_context(rclone_s3_server(work / "destination"))
        source.create_bucket("verify-source")
        destination.create_bucket("verify-destination")
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
            if arguments.case == "empty":
                exit_code, seconds, peak, errors = run_verify(environment)
                assert exit_code == 2 and errors[-1].startswith("error: media_attachments: most referenced"), errors
                print(f"{rows:>9,} {2 * rows:>9,} {'(stopped)':>17} {peak:>12.0f} {seconds:>8.1f}  {errors[-1][:60]}")
                continue
            started = time.monotonic()
            process = subprocess.Popen(
                [*VERIFY, "--accept-missing", "--output", str(output)],
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
