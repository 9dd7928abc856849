"""Time the copy engine, the full sync through Dagster and rclone on the same objects.

Two `rclone serve s3` servers on loopback hold the source and the destination.
The source gets a fake instance (``seed_bulk``: media_attachments rows in a
fresh PostgreSQL database and their objects, with Mastodon's size mix), then
each contender copies the same key list, in each run between two freshly
started servers (the source's on the seeded files): rclone's server spends
more CPU per object the more objects it has served, which would handicap
whoever runs later.

- engine: ``copy_batch`` alone, in batches, as a copy step runs it;
- engine, checks off (``--integrity``): the same with ``TransferSettings(verify_content=False)``,
  to measure what proving every copy equal to its source costs;
- dagster: ``python -m mastodon_s3_sync sync media_attachments``, planning included;
- rclone: ``rclone copy --files-from-raw`` at its best, with and without --no-traverse.

Each contender runs in its own process, so its CPU time and peak RSS (from
wait4) are its own; the servers' CPU is reported apart. Every run is checked:
the destination must then hold every key with the source's size. With
``--repeat`` the contenders take turns, in a new order each round, and each
one's fastest run counts; before each run the benchmark waits a while for the
machine to be quiet, as it may be busy with other work (the CPU use just before
each run's start is printed). ``--large`` copies a few objects of several
hundred MB instead, 16 at a time, to show peak memory.

    .venv/bin/python benchmarks/bench_copy.py --objects 10000
    .venv/bin/python benchmarks/bench_copy.py --large --large-objects 16 --large-mb 300
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import resource
import sys
import time
from contextlib import ExitStack
from pathlib import Path

from bench_common import (
    MB,
    MiB,
    Run,
    Setup,
    best_runs,
    bucket_spec,
    dagster_environment,
    fresh_servers,
    measure,
    rclone_command,
    rclone_environment,
    run_measured,
    settle,
    work_directory,
)

# Contenders ------------------------------------------------------------------------------------


def engine_command(
    setup: Setup,
    bucket: str,
    concurrency: int,
    batch_objects: int,
    verify_content: bool = True,
    max_in_flight: int | None = None,
    batches_at_once: int = 1,
) -> list[str]:
    """The engine contender: ``concurrency`` requests in flight per endpoint to start with, following the
    round trip up to ``max_in_flight`` (``TransferSettings``' default when None; ``concurrency`` for a fixed
    limit); ``batches_at_once`` batches copied at once (threads, as ``sync`` copies tables at once)."""
    spec = {
        "max_in_flight": max_in_flight,
        "batches_at_once": batches_at_once,
        "verify_content": verify_content,
        "source": bucket_spec(setup.source, setup.source_bucket),
        "destination": bucket_spec(setup.destination, bucket),
        "keys_file": str(setup.keys_file),
        "concurrency": concurrency,
        "batch_objects": batch_objects,
    }
    return [sys.executable, __file__, "engine-worker", json.dumps(spec)]


def contenders(setup: Setup, arguments: argparse.Namespace):
    """(name, command, environment) factories, one call per run (each run gets a fresh bucket and home)."""
    sync_extra = dict(item.split("=", 1) for item in arguments.sync_env)
    if arguments.large:
        sync_extra.setdefault("SYNC_CONCURRENCY", str(arguments.concurrency))
    transfers = arguments.concurrency if arguments.large else 64
    yield (
        "engine",
        lambda bucket: (
            engine_command(setup, bucket, arguments.concurrency, arguments.batch_objects),
            dict(os.environ),
        ),
    )
    if arguments.integrity:
        yield (
            "engine, checks off",
            lambda bucket: (
                engine_command(setup, bucket, arguments.concurrency, arguments.batch_objects, verify_content=False),
                dict(os.environ),
            ),
        )
    if not arguments.no_dagster:
        yield (
            "dagster sync",
            lambda bucket: (
                [sys.executable, "-m", "mastodon_s3_sync", "sync", "media_attachments"],
                dagster_environment(setup, bucket, sync_extra),
            ),
        )
    yield "rclone", lambda bucket: (rclone_command(setup, bucket, transfers, False), rclone_environment(setup))
    yield (
        "rclone --no-traverse",
        lambda bucket: (
            rclone_command(setup, bucket, transfers, True),
            rclone_environment(setup),
        ),
    )


# Seeding ---------------------------------------------------------------------------------------


class PatternReader(io.RawIOBase):
    """``size`` bytes of a repeated random block, produced as read (no large object in memory)."""

    def __init__(self, size: int, seed: int):
        self.remaining = size
        self.block = random.Random(seed).randbytes(MiB)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        count = min(len(buffer), self.remaining, len(self.block))
        buffer[:count] = self.block[:count]
        self.remaining -= count
        return count


def seed(stack: ExitStack, arguments: argparse.Namespace, work: Path) -> Setup:
    from boto3.s3.transfer import TransferConfig
    from mastodon_s3_sync_demo.fake_instance.bulk import seed_bulk
    from mastodon_s3_sync_demo.fake_instance.seeding import create_schema
    from mastodon_s3_sync_demo.servers import fresh_database, postgres_server, rclone_s3_server

    database_url = stack.enter_context(fresh_database(stack.enter_context(postgres_server()), prefix="bench"))
    # The seeding server; each run starts its own on the same files (see main).
    with rclone_s3_server(work / "source") as source:
        create_schema(database_url)
        source.create_bucket("bench-source")
        client = source.client()
        started = time.monotonic()
        if arguments.large:
            keys = seed_bulk(database_url, client, "bench-source", rows=arguments.large_objects)
            originals = [key for key in keys if "/original/" in key]
            size = arguments.large_mb * MB
            config = TransferConfig(multipart_chunksize=64 * MiB, max_concurrency=4)
            for position, key in enumerate(originals):
                reader = io.BufferedReader(PatternReader(size, position), buffer_size=MiB)
                client.upload_fileobj(
                    reader, "bench-source", key, ExtraArgs={"ContentType": "image/jpeg"}, Config=config
                )
            import psycopg2

            with psycopg2.connect(database_url) as connection, connection.cursor() as cursor:
                cursor.execute("UPDATE media_attachments SET file_file_size = %s", (size,))
            connection.close()
        else:
            keys = seed_bulk(
                database_url, client, "bench-source", rows=arguments.objects // 2, size_scale=arguments.size_scale
            )
        setup = Setup(source, "bench-source", keys, database_url, work)
        sizes = {}
        for page in client.get_paginator("list_objects_v2").paginate(Bucket="bench-source"):
            sizes.update({item["Key"]: item["Size"] for item in page.get("Contents", [])})
        setup.expected_bytes = sum(sizes[key] for key in keys)
    print(
        f"seeded {len(keys)} objects, {setup.expected_bytes / MB:.0f} MB "
        f"(mean {setup.expected_bytes / len(keys) / 1000:.0f} kB) in {time.monotonic() - started:.0f} s",
        flush=True,
    )
    return setup


# Report ----------------------------------------------------------------------------------------


def report(runs: list[Run], large: bool) -> None:
    best = best_runs(runs)
    print(
        f"{'contender':<24} {'objects/s':>9} {'MB/s':>7} {'wall s':>7} {'CPU s':>7} {'CPU ms/obj':>10} "
        f"{'peak RSS MB':>11} {'servers ms/obj':>14} {'CPU cap/s':>9}  ok   all runs (objects/s)"
    )
    for name, run in best.items():
        all_runs = ", ".join(f"{other.objects_per_second:.0f}" for other in runs if other.contender == name)
        print(
            f"{name:<24} {run.objects_per_second:>9.1f} {run.bytes / MB / run.seconds:>7.1f} {run.seconds:>7.2f} "
            f"{run.cpu_seconds:>7.2f} {run.cpu_ms_per_object:>10.3f} {run.peak_rss / MiB:>11.0f} "
            f"{1000 * run.server_cpu_seconds / run.objects:>14.3f} {'-' if large else f'{run.cpu_ceiling:.0f}':>9}  "
            f"{'yes' if run.verified else 'NO':<4} {all_runs}"
        )
    print(
        f"(CPU cap: the objects/s that {os.cpu_count()} cores allow when client and servers together need "
        "CPU ms/obj + servers ms/obj per object; a copy can't beat it, whatever its client does)"
    )
    rclone = min((run for name, run in best.items() if name.startswith("rclone")), key=lambda run: run.seconds)
    print(f"\nrclone's best: {rclone.contender}")
    engine, dagster = best.get("engine"), best.get("dagster sync")
    if large:
        for run in (engine, dagster):
            if run is not None:
                print(f"  {run.contender} MB/s vs rclone: {rclone.seconds / run.seconds:.2f}x")
        peak = max(run.peak_rss for name, run in best.items() if not name.startswith("rclone"))
        print(f"  peak RSS of our processes: {peak / MiB:.0f} MB   target <= 400 MB")
    else:
        if engine is not None:
            phase = json.loads(engine.note.removeprefix("copy-phase "))
            rate, cpu = engine.objects / phase["seconds"], 1000 * phase["cpu_seconds"] / engine.objects
            print(
                f"engine, copy phase (after interpreter start and imports): {rate:.0f} objects/s, {cpu:.3f} ms CPU/object"
            )
            print(
                f"  objects/s vs rclone: {rate / rclone.objects_per_second:.2f}x "
                f"(whole process: {engine.objects_per_second / rclone.objects_per_second:.2f}x)   target >= 1.5x"
            )
            print(
                f"  CPU/object vs rclone: {cpu / rclone.cpu_ms_per_object:.2f}x "
                f"(whole process: {engine.cpu_ms_per_object / rclone.cpu_ms_per_object:.2f}x)   target <= 0.7x"
            )
        if dagster is not None:
            ratio = dagster.objects_per_second / rclone.objects_per_second
            print(f"  dagster sync objects/s vs rclone: {ratio:.2f}x   target >= 1.2x")
        if engine is not None:
            print(
                f"  CPU caps, engine vs rclone: {engine.cpu_ceiling / rclone.cpu_ceiling:.2f}x (the most it can show here)"
            )
        unchecked = best.get("engine, checks off")
        if engine is not None and unchecked is not None:
            checked_phase = json.loads(engine.note.removeprefix("copy-phase "))
            unchecked_phase = json.loads(unchecked.note.removeprefix("copy-phase "))
            print("integrity checks (engine with checks on vs off, best runs, copy phase):")
            print(
                f"  objects/s: {unchecked_phase['seconds'] / checked_phase['seconds']:.3f}x "
                f"(whole process {engine.objects_per_second / unchecked.objects_per_second:.3f}x)   target >= 0.95x"
            )
            print(
                f"  client CPU/object: {checked_phase['cpu_seconds'] / unchecked_phase['cpu_seconds']:.3f}x "
                f"({1000 * checked_phase['cpu_seconds'] / engine.objects:.3f} vs "
                f"{1000 * unchecked_phase['cpu_seconds'] / unchecked.objects:.3f} ms)"
            )
            checks = {name: value for name, value in checked_phase.items() if name.startswith("check ")}
            print(f"  how the copies were proven: {checks}; rejected attempts: {checked_phase.get('rejected', 0)}")
            per_round = [
                f"{on.objects_per_second / off.objects_per_second:.3f}x"
                for on, off in zip(
                    [run for run in runs if run.contender == "engine"],
                    [run for run in runs if run.contender == "engine, checks off"],
                )
            ]
            print(f"  objects/s on vs off per round (whole process): {', '.join(per_round)}")
    if not all(run.verified for run in runs):
        raise SystemExit("some runs left the destination incomplete")


# Entry points ----------------------------------------------------------------------------------


def engine_worker(spec_text: str) -> None:
    """One contender process: copy the keys with ``copy_batch``, batch after batch (``batches_at_once`` at a
    time); print the copy phase's cost and the most requests in flight per endpoint the limiters allowed."""
    from concurrent.futures import ThreadPoolExecutor

    from mastodon_s3_sync.core.transfer.batch import CopyItem, Outcome, TransferSettings
    from mastodon_s3_sync.core.transfer.engine import copy_batch
    from mastodon_s3_sync.core.transfer.s3 import Bucket

    spec = json.loads(spec_text)
    keys = Path(spec["keys_file"]).read_text().split("\n")[:-1]
    settings = TransferSettings(
        concurrency=spec["concurrency"],
        max_in_flight_per_endpoint=spec.get("max_in_flight") or TransferSettings.max_in_flight_per_endpoint,
        verify_content=spec.get("verify_content", True),
    )
    source, destination = Bucket(**spec["source"]), Bucket(**spec["destination"])
    started, cpu = time.monotonic(), resource.getrusage(resource.RUSAGE_SELF)
    outcomes: dict[str, int] = {}
    peaks = [0, 0]

    def one_batch(start: int):
        return copy_batch(
            source, destination, [CopyItem(key, key) for key in keys[start : start + spec["batch_objects"]]], settings
        )

    with ThreadPoolExecutor(spec.get("batches_at_once", 1)) as batches:
        batch_results = list(batches.map(one_batch, range(0, len(keys), spec["batch_objects"])))
    for batch_result in batch_results:
        peaks = [
            max(peaks[0], batch_result.source_limiter.highest_concurrency),
            max(peaks[1], batch_result.destination_limiter.highest_concurrency),
        ]
        for result in batch_result.results:
            outcomes[result.outcome.value] = outcomes.get(result.outcome.value, 0) + 1
            if result.check is not None:
                outcomes[f"check {result.check.value}"] = outcomes.get(f"check {result.check.value}", 0) + 1
        if batch_result.progress.rejected_attempts:
            outcomes["rejected"] = outcomes.get("rejected", 0) + batch_result.progress.rejected_attempts
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu_seconds = usage.ru_utime - cpu.ru_utime + usage.ru_stime - cpu.ru_stime
    summary = {"seconds": round(time.monotonic() - started, 3), "cpu_seconds": round(cpu_seconds, 3), **outcomes}
    summary["peak_in_flight"] = peaks
    summary["batches_at_once"] = spec.get("batches_at_once", 1)
    print("copy-phase", json.dumps(summary), flush=True)
    if outcomes.get(Outcome.COPIED.value, 0) != len(keys):
        raise SystemExit(f"not everything was copied: {outcomes}")


def main() -> None:
    if sys.argv[1:2] == ["engine-worker"]:
        return engine_worker(sys.argv[2])
    if sys.argv[1:2] == ["measure"]:  # the wrapper now lives in bench_common.py; kept for old command lines
        return measure(sys.argv[2], sys.argv[3:])
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--objects", type=int, default=2000, help="objects to copy (two per media row)")
    parser.add_argument("--size-scale", type=float, default=1.0, help="seed_bulk's size scale (1.0: realistic)")
    parser.add_argument("--repeat", type=int, default=1, help="runs per contender, taking turns; the fastest counts")
    parser.add_argument("--concurrency", type=int, default=None, help="engine objects in flight (default 64; 16 large)")
    parser.add_argument("--batch-objects", type=int, default=5000, help="objects per copy_batch call of the engine")
    parser.add_argument("--no-dagster", action="store_true", help="leave out the full sync through Dagster")
    parser.add_argument("--settle", type=float, default=60, help="seconds to wait for a quiet machine before a run")
    parser.add_argument(
        "--work-dir",
        default="/dev/shm" if Path("/dev/shm").is_dir() else None,
        help="where the servers keep their files (default /dev/shm: in memory, so the disk's writeback and "
        "page-cache evictions don't decide the result)",
    )
    parser.add_argument(
        "--sync-env", action="append", default=[], metavar="NAME=VALUE", help="e.g. SYNC_CONCURRENCY=96"
    )
    parser.add_argument(
        "--integrity",
        action="store_true",
        help="also run the engine with its content checks off (verify_content=False), to measure their cost",
    )
    parser.add_argument("--large", action="store_true", help="copy a few large objects instead, for peak memory")
    parser.add_argument("--large-objects", type=int, default=16)
    parser.add_argument("--large-mb", type=int, default=300)
    arguments = parser.parse_args()
    arguments.concurrency = arguments.concurrency or (arguments.large_objects if arguments.large else 64)

    runs: list[Run] = []
    with ExitStack() as stack:
        work = work_directory(stack, "bench-copy-", arguments.work_dir)
        setup = seed(stack, arguments, work)
        factories = list(contenders(setup, arguments))
        for repeat in range(arguments.repeat):
            shift = repeat % len(factories)  # each round in another order: no contender always follows the same one
            for name, factory in factories[shift:] + factories[:shift]:
                busy = settle(arguments.settle)
                with fresh_servers(setup, "bench-destination", work / f"destination-{len(runs)}"):
                    command, environment = factory("bench-destination")
                    run = run_measured(
                        name, setup, command, environment, "bench-destination", busy, name.startswith("engine")
                    )
                runs.append(run)
                print(
                    f"{name}: {run.objects_per_second:.0f} objects/s, {run.cpu_ms_per_object:.3f} ms CPU/object, "
                    f"peak RSS {run.peak_rss / MiB:.0f} MB, CPUs {run.busy:.0f}% busy before it"
                    f"{'' if run.verified else ', INCOMPLETE'}",
                    flush=True,
                )
    report(runs, arguments.large)


if __name__ == "__main__":
    main()
