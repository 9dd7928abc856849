"""Wall time and peak memory of `mastodon-s3-sync verify media_attachments`, in three cases.

Builds media_attachments rows with SQL on Mastodon's real schema (two objects per row: file and
small) and runs `verify` in its own process (measured as said below) against `rclone serve s3`:

- ``missing`` (default): none of the objects exist; with ``--accept-missing`` every object is a
  finding, written to ``--output`` as it is found and only counted in memory.
- ``healthy``: every object exists at the source and, identical, at the destination (empty files
  written straight into the server's directory; the destination bucket is a symlink to the
  source's, served with ``RCLONE_COPY_LINKS``), so verify lists, HEADs and proves every object.
- ``empty``: an empty source bucket: the time until verify stops with its one-line error.

    .venv/bin/python benchmarks/bench_verify_memory.py --rows 100000,500000
    .venv/bin/python benchmarks/bench_verify_memory.py --case healthy --rows 100000,500000
    .venv/bin/python benchmarks/bench_verify_memory.py --case empty --rows 2000000

Each run is measured under ``bench_common``'s ``measure`` wrapper, a small process of its own: the
peak RSS that ``wait4`` reports for a child includes the RSS of the process that started it (the
kernel keeps the old memory's high-water mark across ``exec``), here this benchmark's own after
seeding (about 0.4 kB per object). That, not ``verify``, was the growth the first figures showed.
Besides the peak, ``verify``'s RSS is read from /proc every quarter second against the objects its
progress lines say are done (one every 10 s), and its growth fitted over the run's second half
(``rss_growth``); the healthy case fails if that is not flat (``FLAT_KB_PER_1000``). The
CPU is split between ``verify`` (user + system, from ``wait4``) and the rclone servers (from /proc),
per object, with the time 2M rows would take if the servers' CPU were elsewhere: ``verify``'s CPU
alone, one core (it runs on one thread).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from contextlib import ExitStack, closing
from dataclasses import dataclass, field
from pathlib import Path

import psycopg2

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import Setup, measured, server_cpu, work_directory  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SCHEMA_SQL = ROOT / "demo" / "mastodon_s3_sync_demo" / "schema" / "mastodon_schema.sql"

INSERT_ROWS = """
INSERT INTO media_attachments (id, file_file_name, file_content_type, file_file_size, file_updated_at,
                               created_at, updated_at, account_id, remote_url, type)
SELECT 114000000000000000 + g, md5(g::text) || '.jpeg', 'image/jpeg', 150000, now(), now(), now(), g, '', 0
FROM generate_series(%s, %s) AS g
"""


VERIFY = [sys.executable, "-m", "mastodon_s3_sync", "verify", "media_attachments"]
SAMPLE_INTERVAL = 0.25
FLAT_KB_PER_1000 = 10.0
"""The most RSS the healthy case may grow per 1,000 objects in its second half: 40 MB at 4M objects,
a fortieth of what the first figures seemed to show. (verify levels off: 47.5 MB from 120,000 to
300,000 objects, measured once; a run of 200,000 objects still fits about 4 kB per 1,000.)"""
PROJECTED_ROWS = 2_000_000
PROGRESS = re.compile(r"^verify \S+: (\d+)(?:/\d+)? objects", re.MULTILINE)


@dataclass
class VerifyRun:
    exit_code: int
    seconds: float
    cpu_seconds: float
    """``verify``'s own CPU, user + system."""
    peak_rss: int
    """``verify``'s own peak RSS, bytes."""
    server_cpu_seconds: float
    """What the rclone servers spent meanwhile."""
    lines: list[str]
    rss_samples: list[tuple[int, int]] = field(default_factory=list)
    """(objects done, ``verify``'s RSS in kB) when each progress line appeared."""

    @property
    def rss_growth(self) -> float | None:
        return rss_growth(self.rss_samples)


def rss_growth(samples: Sequence[tuple[int, int]]) -> float | None:
    """kB of RSS per 1,000 objects: the least-squares slope over the samples of the run's second
    half (the first grows once, about 1 MB over 100,000 objects, as the allocator's pools settle),
    or None with fewer than three of them."""
    if not samples:
        return None
    last = max(objects for objects, _ in samples)
    points = [(objects, rss) for objects, rss in samples if objects >= last / 2]
    if len(points) < 3:
        return None
    mean_x = sum(x for x, _ in points) / len(points)
    mean_y = sum(y for _, y in points) / len(points)
    spread = sum((x - mean_x) ** 2 for x, _ in points)
    if spread == 0:
        return None
    return 1000 * sum((x - mean_x) * (y - mean_y) for x, y in points) / spread


def _rss_kb(wrapper_pid: int) -> int | None:
    """The RSS of the measure wrapper's child (``verify``), in kB, or None before it starts or once it ends."""
    try:
        children = Path(f"/proc/{wrapper_pid}/task/{wrapper_pid}/children").read_text().split()
        status = Path(f"/proc/{children[0]}/status").read_text() if children else ""
    except (FileNotFoundError, ProcessLookupError):
        return None
    found = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
    return int(found.group(1)) if found else None


def run_verify(environment: dict[str, str], arguments: Sequence[str] = ()) -> VerifyRun:
    """``VERIFY`` with ``arguments``, measured in a process of its own; its RSS sampled as it goes."""
    with tempfile.TemporaryDirectory(prefix="bench-verify-run-") as work:
        output, measurement = Path(work) / "output", Path(work) / "measurement.json"
        servers = Setup.servers()
        servers_before = server_cpu(servers)
        samples: list[tuple[int, int]] = []
        with output.open("w") as written:
            wrapper = subprocess.Popen(
                measured(measurement, [*VERIFY, *arguments]), env=environment, stdout=written, stderr=subprocess.STDOUT
            )
            while wrapper.poll() is None:
                time.sleep(SAMPLE_INTERVAL)
                progress = PROGRESS.findall(output.read_text(errors="replace"))
                rss = _rss_kb(wrapper.pid)
                if progress and rss is not None and (not samples or samples[-1][0] != int(progress[-1])):
                    samples.append((int(progress[-1]), rss))
        usage = json.loads(measurement.read_text())
        return VerifyRun(
            exit_code=wrapper.returncode,
            seconds=usage["seconds"],
            cpu_seconds=usage["cpu_seconds"],
            peak_rss=usage["peak_rss"],
            server_cpu_seconds=server_cpu(servers) - servers_before,
            lines=output.read_text(errors="replace").strip().splitlines(),
            rss_samples=samples,
        )


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
    previous: tuple[int, int, VerifyRun] | None = None
    print(
        f"{'rows':>9} {'objects':>9} {'seed s':>6} {'seconds':>8} {'objects/s':>9} {'verify ms/obj':>13} "
        f"{'servers ms/obj':>14} {'2M rows, servers elsewhere':>26} {'peak RSS MB':>11} {'RSS kB/1000 obj':>15}"
    )
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
            run = run_verify(environment)
        assert run.exit_code == 0 and run.lines[-1:] == ["verified: complete"], run.lines[-5:]
        growth = run.rss_growth
        print(
            f"{rows:>9,} {objects:>9,} {seeded:>6.0f} {_figures(rows, objects, run.seconds, run.cpu_seconds, run.server_cpu_seconds)} "
            f"{run.peak_rss / 1e6:>11.0f} {'n/a' if growth is None else f'{growth:.2f}':>15}",
            flush=True,
        )
        if previous:  # the difference between two sizes: verify's start (imports, plan query) left out
            rows_before, objects_before, before = previous
            figures = _figures(
                rows - rows_before,
                objects - objects_before,
                run.seconds - before.seconds,
                run.cpu_seconds - before.cpu_seconds,
                run.server_cpu_seconds - before.server_cpu_seconds,
            )
            print(f"{'the ' + format(objects - objects_before, ',') + ' more':>26} {figures}", flush=True)
        previous = rows, objects, run
        assert growth is None or growth <= FLAT_KB_PER_1000, (
            f"RSS grows {growth:.2f} kB per 1,000 objects: {run.rss_samples}"
        )


def _figures(rows: int, objects: int, seconds: float, cpu_seconds: float, server_cpu_seconds: float) -> str:
    """Seconds, objects/s, verify's and the servers' CPU per object, and how long ``PROJECTED_ROWS``
    would take with verify's CPU alone (the servers elsewhere, on one core: verify runs on one thread)."""
    verify_ms, servers_ms = 1000 * cpu_seconds / objects, 1000 * server_cpu_seconds / objects
    projected = PROJECTED_ROWS * objects / rows * verify_ms / 1000 / 60
    return (
        f"{seconds:>8.1f} {objects / seconds:>9,.0f} {verify_ms:>13.3f} {servers_ms:>14.3f} "
        f"{f'{projected:.1f} min':>26}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", default="100000,500000", help="media rows, comma-separated (two objects each)")
    parser.add_argument("--case", choices=("missing", "healthy", "empty"), default="missing")
    arguments = parser.parse_args()
    from mastodon_s3_sync_demo.servers import fresh_database, postgres_server, rclone_s3_server

    with ExitStack() as stack:
        work = work_directory(stack, "bench-verify-", "/dev/shm")
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
                run = run_verify(environment)
                error = run.lines[-1] if run.lines else ""
                assert run.exit_code == 2 and error.startswith("error: media_attachments: most referenced"), run.lines
                print(
                    f"{rows:>9,} {2 * rows:>9,} {'(stopped)':>17} {run.peak_rss / 1e6:>12.0f} {run.seconds:>8.1f}  {error[:60]}"
                )
                continue
            run = run_verify(environment, ["--accept-missing", "--output", str(output)])
            assert "Traceback" not in "\n".join(run.lines), run.lines[-20:]
            written = sum(1 for _ in output.open()) - 1
            assert written == 2 * rows, f"{written} findings written for {2 * rows} objects"
            print(f"{rows:>9,} {2 * rows:>9,} {written:>17,} {run.peak_rss / 1e6:>12.0f} {run.seconds:>8.1f}")
            output.unlink()


if __name__ == "__main__":
    main()
