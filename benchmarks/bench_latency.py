"""Copy speed over a network's latency: the engine against rclone, both endpoints behind latency_proxy.py.

On loopback a request costs CPU and no time; a real provider answers in
20-150 ms. There, objects/s are bounded by requests in flight / (round trips
per object x latency), not by CPU. This benchmark puts both `rclone serve s3`
servers (as bench_copy.py runs them: fresh per run, files in /dev/shm) behind
one latency proxy process and measures, in the same run:

- small objects (bench_copy's seed: Mastodon's size mix) at each ``--delays``
  value: objects/s and client CPU per object (the client's process tree, from
  wait4) of the engine (bench_copy's engine contender: ``copy_batch`` in
  batches, 64 requests in flight per endpoint to start with, following the
  round trip up to ``--engine-max-in-flight``), of the engine with a fixed 64
  (``engine 64``), optionally of the engine from another checkout
  (``--baseline-tree``, e.g. a worktree of main: ``engine (baseline)``) and
  with ``--batches-at-once`` batches copied at once (``engine, N batches at
  once``: the lever of copying more tables or partitions at once), and of
  rclone with ``--transfers 64 --checkers 64``
  and ``--transfers 256 --checkers 256`` (with bench_copy's flags for
  rclone's best: ``--no-check-dest -M --s3-no-head --no-traverse``), each
  beside its bound;
- large objects (``--large-objects`` x ``--large-mb``) behind a
  per-connection cap (``--cap-mb-s``): MB/s, the bound the cap allows, peak RSS;
- a provider answering 503 SlowDown above ``--slowdown-rps`` requests/s per
  endpoint (``--slowdown-objects`` of the small objects): the settled rate on
  each endpoint, the refusals, whether every object was copied; the bound is
  the rate / the requests per object the busier endpoint took.

Bounds: round trips per object are counted by the proxy (requests, plus the
extra round trip after each 100 Continue) on both endpoints. The engine limits
the requests in flight per endpoint (a GET's slot is free once its body has
arrived): bound = the smaller over the endpoints of the most requests in flight
its limiter allowed (``peak_in_flight``, from the engine's copy-phase line) /
(round trips per object there x delay). The baseline engine (before the limit
followed the round trip) kept ``in_flight`` objects each doing its requests
one after the other, holding its GET's slot: in_flight / (round trips per
object x delay). rclone's checkers HEAD the
source objects while its transfers GET and PUT: bound = the smaller of
checkers / (HEADs per object x delay) and transfers / (other round trips per
object x delay). CPU cap: objects/s if the cores did nothing but this run's
client, servers and proxy. Large objects: each object's GET is one connection, so no
object copies faster than the cap: bound = objects x MB / (ceil(objects /
in_flight) x MB / cap) for rclone; the engine copies parts in parallel (a part's
GET, then its upload), as many as the byte budget holds: bound = parts in
flight x cap / 2 (``large_bound``). Their CPU cap is given in MB/s.

    .venv/bin/python benchmarks/bench_latency.py --objects 4000 --large-objects 4 --large-mb 100
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path

import latency_proxy
from bench_common import (
    MB,
    MiB,
    Run,
    Setup,
    fresh_servers,
    rclone_command,
    rclone_environment,
    run_measured,
    settle,
    work_directory,
)
from bench_copy import engine_command, seed

ENGINE_IN_FLIGHT = 64
BUCKET = "bench-destination"


def contenders(arguments: argparse.Namespace):
    """(name, objects in flight, command factory taking the proxied setup)."""
    ceiling, batch = arguments.engine_max_in_flight, arguments.batch_objects
    yield (
        "engine",
        ceiling,
        lambda setup: (engine_command(setup, BUCKET, ENGINE_IN_FLIGHT, batch, max_in_flight=ceiling), dict(os.environ)),
    )
    yield (
        f"engine {ENGINE_IN_FLIGHT}",
        ENGINE_IN_FLIGHT,
        lambda setup: (
            engine_command(setup, BUCKET, ENGINE_IN_FLIGHT, batch, max_in_flight=ENGINE_IN_FLIGHT),
            dict(os.environ),
        ),
    )
    if arguments.batches_at_once > 1:
        yield (
            f"engine, {arguments.batches_at_once} batches at once",
            ceiling,
            lambda setup: (
                engine_command(
                    setup,
                    BUCKET,
                    ENGINE_IN_FLIGHT,
                    batch,
                    max_in_flight=ceiling,
                    batches_at_once=arguments.batches_at_once,
                ),
                dict(os.environ),
            ),
        )
    if arguments.baseline_tree:
        tree = Path(arguments.baseline_tree).resolve()

        def baseline(setup: Setup) -> tuple[list[str], dict[str, str]]:
            command = engine_command(setup, BUCKET, ENGINE_IN_FLIGHT, batch)
            command[1] = str(tree / "benchmarks" / "bench_copy.py")  # its engine worker, on its package
            return command, dict(os.environ) | {"PYTHONPATH": str(tree)}

        yield "engine (baseline)", ENGINE_IN_FLIGHT, baseline
    for transfers in arguments.rclone_transfers:
        yield (
            f"rclone {transfers}",
            transfers,
            lambda setup, transfers=transfers: (
                rclone_command(setup, BUCKET, transfers, no_traverse=True),
                rclone_environment(setup),
            ),
        )


def proxied(setup: Setup, endpoints: list[str]) -> Setup:
    return replace(
        setup,
        source=replace(setup.source, endpoint_url=endpoints[0]),
        destination=replace(setup.destination, endpoint_url=endpoints[1]),
    )


def measured_run(
    name: str, factory, setup: Setup, work: Path, busy: float, proxy_options: dict, timeout: float | None
) -> Run:
    """One contender between fresh servers behind a fresh proxy; the proxy's statistics in ``run.extra``.

    A run that fails, is stopped after ``timeout`` seconds or leaves the destination incomplete is
    returned with ``verified`` False and the reason in ``extra["failure"]`` (the throttled runs must
    report it, not stop the benchmark).
    """
    load = os.getloadavg()[0]
    with fresh_servers(setup, BUCKET, work / "destination"):  # removed after each run
        upstreams = [setup.source.endpoint_url, setup.destination.endpoint_url]
        with latency_proxy.running(upstreams, **proxy_options) as proxy:
            command, environment = factory(proxied(setup, proxy.endpoints))
            if timeout:
                command = ["timeout", f"{timeout:g}", *command]
            try:
                run = run_measured(
                    name, setup, command, environment, BUCKET, busy, keep_last_line=name.startswith("engine")
                )
            except SystemExit as failure:
                run = Run(name, len(setup.keys), setup.expected_bytes, 0, 0, 0, 0, False, busy)
                run.extra["failure"] = str(failure)[-800:]
    run.extra |= {"proxy": proxy.stats, "load": load}
    return run


# Figures ---------------------------------------------------------------------------------------


def round_trips(run: Run) -> tuple[float, float]:
    """(round trips per object, HEADs per object), over both endpoints, from the proxy's counts."""
    listeners = run.extra["proxy"]["listeners"]
    trips = sum(listener["requests"] + listener["continues"] for listener in listeners)
    heads = sum(listener["methods"].get("HEAD", 0) for listener in listeners)
    return trips / run.objects, heads / run.objects


def peak_in_flight(run: Run) -> list[int] | None:
    """The most requests in flight the engine's limiters allowed (source, destination), from its copy-phase line:
    one batch's, times the batches copied at once (each has limiters of its own)."""
    if not run.note.startswith("copy-phase "):
        return None
    phase = json.loads(run.note.removeprefix("copy-phase "))
    peaks = phase.get("peak_in_flight")
    return [peak * phase.get("batches_at_once", 1) for peak in peaks] if peaks else None


def bound(name: str, in_flight: int, run: Run, delay_ms: float) -> float:
    """Objects/s that ``in_flight`` requests allow at ``delay_ms`` per round trip (inf at 0 ms)."""
    if delay_ms == 0:
        return math.inf
    trips, heads = round_trips(run)
    delay = delay_ms / 1000
    if name.startswith("rclone") and heads:
        return min(in_flight / (heads * delay), in_flight / ((trips - heads) * delay))
    peaks = peak_in_flight(run)
    if peaks:
        listeners = run.extra["proxy"]["listeners"]
        per_endpoint = [(x["requests"] + x["continues"]) / run.objects for x in listeners]
        return min(peak / (endpoint_trips * delay) for peak, endpoint_trips in zip(peaks, per_endpoint))
    return in_flight / (trips * delay)


def describe(run: Run) -> str:
    proxy = run.extra["proxy"]
    if not run.verified:
        return f"FAILED ({run.extra.get('failure', 'destination incomplete')[:200]})"
    return (
        f"{run.objects_per_second:.0f} objects/s, {run.bytes / MB / run.seconds:.1f} MB/s, "
        f"client {run.cpu_ms_per_object:.3f} ms CPU/object, servers {run.server_ms_per_object:.3f}, "
        f"proxy {proxy['cpu_ms_per_request']} ms/request, peak RSS {run.peak_rss / MiB:.0f} MB, "
        f"round trips/object {round_trips(run)[0]:.2f}, peak in flight {peak_in_flight(run)}, refused {sum(x['refused'] for x in proxy['listeners'])}, "
        f"CPUs {run.busy:.0f}% busy, load {run.extra['load']:.1f}"
    )


def settled_rates(run: Run) -> list[float]:
    """Requests/s each throttled endpoint (source, destination) let through, median over the run's middle
    seconds (the first two and the last left out)."""
    rates = []
    for listener in run.extra["proxy"]["listeners"]:
        seconds = [accepted for accepted, _ in listener["per_second"]]
        middle = sorted(seconds[2:-1] or seconds)
        rates.append(middle[len(middle) // 2] if middle else 0.0)
    return rates


def throttle_bound(run: Run, rate: float) -> float:
    """Objects/s a provider letting ``rate`` requests/s through per endpoint allows, given the requests
    per object each endpoint took."""
    busiest = max(
        (listener["requests"] - listener["refused"]) / run.objects for listener in run.extra["proxy"]["listeners"]
    )
    return rate / busiest


def subset(setup: Setup, count: int) -> Setup:
    """The first ``count`` keys, with their sizes from the source server's files (rclone keeps objects as
    plain files), and a work directory of their own for the keys file."""
    keys = setup.keys[:count]
    work = setup.work / f"first-{count}"
    work.mkdir(exist_ok=True)
    (work / "source").symlink_to(setup.work / "source")  # where fresh_servers starts the source
    sizes = {key: (setup.work / "source" / setup.source_bucket / key).stat().st_size for key in keys}
    return replace(setup, keys=keys, work=work, expected_bytes=sum(sizes.values()), expected_sizes=sizes)


# Sections --------------------------------------------------------------------------------------


def run_rounds(
    arguments, setup: Setup, work: Path, proxy_options: dict, label: str, timeout: float | None = None
) -> list[tuple[str, int, Run]]:
    factories = [c for c in contenders(arguments) if not arguments.only or c[0] in arguments.only]
    results = []
    for repeat in range(arguments.repeat):
        shift = repeat % len(factories)
        for name, in_flight, factory in factories[shift:] + factories[:shift]:
            busy = settle(arguments.settle)
            run = measured_run(name, factory, setup, work, busy, proxy_options, timeout)
            run.extra["label"] = label
            results.append((name, in_flight, run))
            print(f"[{label}] {name}: {describe(run)}", flush=True)
    return results


def small(arguments, stack: ExitStack) -> list[dict]:
    work = work_directory(stack, "bench-latency-", arguments.work_dir)
    setup = seed(stack, argparse.Namespace(large=False, objects=arguments.objects, size_scale=1.0), work)
    rows = []
    for delay_ms in arguments.delays:
        for name, in_flight, run in run_rounds(arguments, setup, work, {"delay_ms": delay_ms}, f"{delay_ms:g} ms"):
            rows.append(row(name, in_flight, run, delay_ms))
    if arguments.slowdown_rps:
        options = {
            "delay_ms": arguments.slowdown_delay_ms,
            "slowdown_rps": arguments.slowdown_rps,
            "slowdown_burst": arguments.slowdown_burst,
        }
        label = (
            f"SlowDown above {arguments.slowdown_rps:g} requests/s per endpoint, {arguments.slowdown_delay_ms:g} ms, "
            f"{min(arguments.slowdown_objects, len(setup.keys))} objects"
        )
        throttled = subset(setup, arguments.slowdown_objects)
        for name, in_flight, run in run_rounds(arguments, throttled, work, options, label, arguments.slowdown_timeout):
            rows.append(
                row(name, in_flight, run, arguments.slowdown_delay_ms)
                | {
                    "settled": settled_rates(run),
                    "bound_objects_per_second": throttle_bound(run, arguments.slowdown_rps),
                }
            )
    return rows


def large(arguments, stack: ExitStack) -> list[dict]:
    work = work_directory(stack, "bench-latency-", arguments.work_dir)
    namespace = argparse.Namespace(large=True, large_objects=arguments.large_objects, large_mb=arguments.large_mb)
    setup = seed(stack, namespace, work)
    options = {"delay_ms": arguments.large_delay_ms, "rate_mb_s": arguments.cap_mb_s}
    label = f"{arguments.large_objects} x {arguments.large_mb} MB, {arguments.cap_mb_s:g} MB/s per connection"
    rows = []
    for name, in_flight, run in run_rounds(arguments, setup, work, options, label):
        rows.append(
            row(name, in_flight, run, arguments.large_delay_ms)
            | {
                "bound_mb_s": large_bound(name, in_flight, arguments),
                "cpu_cap_mb_s": cpu_cap(run) * run.bytes / MB / run.objects,
            }
        )
    return rows


def large_bound(name: str, in_flight: int, arguments) -> float:
    """MB/s the per-connection cap allows. rclone: each object's GET is one capped connection (its uploads
    keep up), so no object copies faster than the cap. The engine copies parts in parallel, each part's
    GET then its upload at the cap (cap / 2 per part in flight), as many parts as the byte budget holds
    (``Tuning``'s memory and part size)."""
    if name == "engine":
        from mastodon_s3_sync.core.tuning import Tuning

        parts = math.ceil(arguments.large_mb * MB / (Tuning.part_size_megabytes * MiB))
        in_budget = Tuning.memory_megabytes // Tuning.part_size_megabytes
        return min(arguments.large_objects * parts, in_budget) * arguments.cap_mb_s / 2
    seconds = math.ceil(arguments.large_objects / in_flight) * arguments.large_mb / arguments.cap_mb_s
    return arguments.large_objects * arguments.large_mb / seconds


def cpu_cap(run: Run) -> float:
    """Objects/s if the cores did nothing but this run's client, servers and proxy (as bench_copy's CPU cap,
    with the proxy's CPU added)."""
    spent = run.cpu_seconds + run.server_cpu_seconds + run.extra["proxy"]["cpu_seconds"]
    return os.cpu_count() * run.objects / spent if spent else math.inf


def row(name: str, in_flight: int, run: Run, delay_ms: float) -> dict:
    proxy = run.extra["proxy"]
    return {
        "label": run.extra["label"],
        "contender": name,
        "in_flight": in_flight,
        "peak_in_flight": peak_in_flight(run) if run.verified else None,
        "delay_ms": delay_ms,
        "verified": run.verified,
        "failure": run.extra.get("failure"),
        "objects": run.objects,
        "seconds": round(run.seconds, 3),
        "objects_per_second": round(run.objects_per_second, 1) if run.seconds else None,
        "mb_per_second": round(run.bytes / MB / run.seconds, 1) if run.seconds else None,
        "client_cpu_ms_per_object": round(run.cpu_ms_per_object, 3),
        "server_cpu_ms_per_object": round(run.server_ms_per_object, 3),
        "peak_rss_mb": round(run.peak_rss / MiB),
        "round_trips_per_object": round(round_trips(run)[0], 3),
        "bound_objects_per_second": round(bound(name, in_flight, run, delay_ms), 1),
        "proxy_cpu_ms_per_request": proxy["cpu_ms_per_request"],
        "cpu_cap_objects_per_second": round(cpu_cap(run), 1),
        "refused": sum(listener["refused"] for listener in proxy["listeners"]),
        "busy_percent": round(run.busy),
        "load": round(run.extra["load"], 2),
        "copy_phase": run.note,
    }


def table(rows: list[dict]) -> None:
    print(
        "\n| case | contender | objects/s | bound/s | CPU cap/s | MB/s | client CPU ms/object | servers ms/object "
        "| proxy ms/request | round trips/object | in flight (source, destination) | peak RSS MB | refused | load |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        bound_text = f"{r['bound_mb_s']:.0f} MB/s" if "bound_mb_s" in r else f"{r['bound_objects_per_second']:.0f}"
        cap_text = f"{r['cpu_cap_mb_s']:.0f} MB/s" if "cpu_cap_mb_s" in r else f"{r['cpu_cap_objects_per_second']:.0f}"
        rate = f"{r['objects_per_second']:.0f}" if r["verified"] else "FAILED"
        if "settled" in r:
            rate += " (settled {:.0f} + {:.0f} requests/s)".format(*r["settled"])
        print(
            f"| {r['label']} | {r['contender']} | {rate} | {bound_text} | {cap_text} "
            f"| {r['mb_per_second']} "
            f"| {r['client_cpu_ms_per_object']:.3f} | {r['server_cpu_ms_per_object']:.3f} "
            f"| {r['proxy_cpu_ms_per_request']} | {r['round_trips_per_object']:.2f} "
            f"| {', '.join(map(str, r['peak_in_flight'] or [r['in_flight']]))} | {r['peak_rss_mb']} "
            f"| {r['refused']} | {r['load']} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--objects", type=int, default=4000, help="small objects (two per media row); 0 to skip")
    parser.add_argument(
        "--delays", type=lambda text: [float(x) for x in text.split(",") if x], default=[0.0, 30.0, 100.0]
    )
    parser.add_argument("--rclone-transfers", type=lambda text: [int(x) for x in text.split(",")], default=[64, 256])
    parser.add_argument("--batch-objects", type=int, default=5000, help="objects per copy_batch call of the engine")
    parser.add_argument(
        "--engine-max-in-flight", type=int, default=512, help="the engine's ceiling of requests in flight per endpoint"
    )
    parser.add_argument(
        "--batches-at-once", type=int, default=1, help="N > 1 adds the engine copying N batches at once (threads)"
    )
    parser.add_argument("--baseline-tree", help="a checkout whose engine runs too, as 'engine (baseline)'")
    parser.add_argument("--repeat", type=int, default=1, help="runs per contender and case, taking turns")
    parser.add_argument("--only", action="append", help="run only this contender (its name; repeatable)")
    parser.add_argument("--large-objects", type=int, default=12, help="0 to skip the large objects")
    parser.add_argument("--large-mb", type=int, default=300)
    parser.add_argument("--cap-mb-s", type=float, default=20.0, help="per-connection cap for the large objects")
    parser.add_argument("--large-delay-ms", type=float, default=30.0)
    parser.add_argument("--slowdown-rps", type=float, default=100.0, help="requests/s per endpoint; 0 to skip")
    parser.add_argument("--slowdown-burst", type=float, default=10.0)
    parser.add_argument("--slowdown-delay-ms", type=float, default=30.0)
    parser.add_argument("--slowdown-objects", type=int, default=1000, help="the first N small objects")
    parser.add_argument("--slowdown-timeout", type=float, default=300, help="a throttled run is stopped after this")
    parser.add_argument("--settle", type=float, default=5, help="seconds to wait for a quiet machine before a run")
    parser.add_argument("--work-dir", default="/dev/shm" if Path("/dev/shm").is_dir() else None)
    parser.add_argument("--json", help="also write every row here")
    arguments = parser.parse_args()
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()}, {time.strftime('%Y-%m-%d %H:%M')}", flush=True)
    rows: list[dict] = []
    with ExitStack() as stack:
        if arguments.objects:
            rows += small(arguments, stack)
    with ExitStack() as stack:
        if arguments.large_objects:
            rows += large(arguments, stack)
    table(rows)
    if arguments.json:
        Path(arguments.json).write_text(json.dumps(rows, indent=1))
    if not all(r["verified"] for r in rows if "settled" not in r):
        sys.exit("some unthrottled runs failed or left the destination incomplete")


if __name__ == "__main__":
    main()
