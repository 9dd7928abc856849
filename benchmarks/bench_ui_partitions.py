"""The Dagster UI with thousands of id-range partitions per asset (issue 12): pages, queries, a backfill of all.

For each N of ``--partitions`` (default 1000, 5000 and 20000), with real components only:

1. Seeding (timed, not the measurement): a fresh DAGSTER_HOME in a temporary
   directory with the repository's dagster.yaml, its run queue stopped
   (``max_concurrent_runs: 0``, which Dagster documents as "stop any runs from
   launching"), so the backfill's runs stay QUEUED and nothing is copied. N
   consecutive id-range partitions per table (keys from ``core.id_ranges``,
   tiled from ``MIN_ID`` as ``add_new_partitions`` cuts them) for each of the
   seven tables, and a materialization for the first ``--materialized-fraction``
   of them, with metadata built by ``definitions.metadata.partition_metadata``
   (``report_runless_asset_event``, in a few processes at once: SQLite takes
   10-15 ms of CPU per event).
2. A real ``dagster-webserver -w workspace.yaml`` on a free port (cwd: the
   repository), ready once it serves /server_info and has loaded the code location.
3. Pages, in Debian's headless Chromium through Playwright, each ``--repeat``
   times in a fresh browser context: the wall time from ``page.goto`` until the
   data is on screen (checked every 100 ms on the page's text):
   - the asset's Partitions tab, ``/assets/media_attachments?view=partitions``:
     "Materialized (M)" and "Missing (N-M)";
   - the same tab with a partition selected (``&partition=<key>``): its key and
     "Latest materialization";
   - the asset's overview, ``/assets/media_attachments``: "Latest
     materialization" and the key of the latest materialized partition;
   - the catalog, ``/assets``: all seven rows with "M / N-M ... N partitions";
   - the global lineage (asset graph), ``/asset-groups``: seven "P% filled";
   - once the backfill's runs are queued: the Partitions tab again ("Materializing
     (N)": a queued run's partitions show as materializing), and the backfill's
     page ``/runs/b/<id>`` (where the UI's links to a backfill go; the seven asset
     rows with N partitions targeted and N in progress).
4. GraphQL: every query those pages sent (captured from the browser: the UI's
   own query text and variables) is replayed over HTTP ``--repeat`` times, and
   each is reported (best and median wall time, response size). Among them:
   ``PartitionHealthQuery`` (``partitionKeysByDimension`` and
   ``assetPartitionStatuses``), ``AssetViewDefinitionQuery``,
   ``AssetPartitionDetailQuery``, the catalog's and the graph's
   ``AssetGraphLiveQuery``/``AssetRecordsQuery``/``LocationWorkspaceAssetsQuery``
   for all seven assets, and the backfill page's queries.
5. A backfill of all partitions of all seven assets, as the UI's "Materialize
   all" launches it (``launchPartitionBackfill`` with ``allPartitions: true`` over
   the seven-asset selection): the mutation's time; then ``dagster-daemon run
   -w workspace.yaml`` is started and the time until the backfill daemon has
   created all its runs is measured (``BackfillPolicy.multi_run(20)``: ceil(N/20)
   runs per asset expected; counted with ``instance.get_runs_count`` on the
   ``dagster/backfill`` tag; a run counts once it has left NOT_STARTED), and the
   runs per asset and their statuses are checked. If the runs are not all there
   within ``--backfill-timeout``, the count reached is reported and the daemon is
   stopped before the backfill's pages are measured (so it does not compete with them).
6. Resources: the peak RSS (``VmHWM`` in /proc/<pid>/status) of the webserver and
   of the daemon, each process of their trees (their code servers), and the CPU
   seconds of each tree (``bench_common.tree_cpu_seconds``).

Creating a run resolves the run config, which needs the bucket names bound to
``SOURCE_S3_BUCKET``/``DESTINATION_S3_BUCKET``: the webserver and daemon get
placeholder names (no bucket, no database: the runs never start).

    .venv/bin/python benchmarks/bench_ui_partitions.py                      # 1000, 5000, 20000
    .venv/bin/python benchmarks/bench_ui_partitions.py --partitions 1000 --repeat 1 --json out.jsonl

Prints a markdown table (one column per N) and the per-query details. Every process it
starts (webserver, daemon and their code servers, Chromium) is stopped, also on error.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import REPOSITORY, tree_cpu_seconds  # noqa: E402

sys.path.insert(0, str(REPOSITORY))
from mastodon_s3_sync_demo.ui import CHROMIUM_FLAGS, LAUNCH_BACKFILL

from mastodon_s3_sync.core.copying import PartitionReport  # noqa: E402
from mastodon_s3_sync.core.id_ranges import MIN_ID, IdRange, last_range_end, parse_partition_key  # noqa: E402
from mastodon_s3_sync.core.mastodon.layout import object_key  # noqa: E402
from mastodon_s3_sync.core.mastodon.tables import TABLES  # noqa: E402
from mastodon_s3_sync.core.referenced_objects import ObjectProblem  # noqa: E402
from mastodon_s3_sync.core.settings import value  # noqa: E402
from mastodon_s3_sync.definitions.metadata import partition_metadata  # noqa: E402
from mastodon_s3_sync.definitions.partitions import partitions_name  # noqa: E402

BIN = Path(sys.executable).parent
WORKSPACE = "workspace.yaml"
LOCATION = "mastodon_s3_sync"
ASSET = "media_attachments"
CHROMIUM = "/usr/bin/chromium"
OUR_VARIABLES = ("SOURCE_", "DESTINATION_", "DB_", "SYNC_", "DAGSTER_", "DATABASE_URL", "MASTODON_ENV_FILE")
PLACEHOLDER_BUCKETS = {"SOURCE_S3_BUCKET": "bench-ui-no-source", "DESTINATION_S3_BUCKET": "bench-ui-no-destination"}
"""Run config resolution needs the bucket names bound; the runs stay queued, so nothing reaches them."""
FIRST_ID = 110_000_000_000_000_000
"""About where Mastodon's snowflake ids were in 2023: the first range ends at FIRST_ID + one partition."""
IDS_PER_ROW = 65_536
"""Snowflake ids are (milliseconds << 16) | sequence: about one row per millisecond on a busy instance."""
QUEUE_STOPPED = "run_coordinator.config.max_concurrent_runs: 0"
REPLAYED_WITH_BACKFILL = {"PartitionHealthQuery", "AssetViewDefinitionQuery", "AssetGraphLiveQuery"}
"""The asset page's queries replayed again while the backfill's runs are queued (its partitions materializing)."""

LOCATION_STATUS = "{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus } } } }"


def mb(size: int) -> str:
    return f"{size / 1e6:,.0f}"


# Seeding -----------------------------------------------------------------------------------------


def partition_keys(count: int, rows_per_partition: int) -> list[str]:
    """``count`` consecutive id ranges as ``add_new_partitions`` cuts them: the first from MIN_ID, each
    next one right after the previous one (a partition of ``rows_per_partition`` snowflake-id rows)."""
    ranges, lo = [], MIN_ID
    for index in range(count):
        hi = FIRST_ID + (index + 1) * rows_per_partition * IDS_PER_ROW
        ranges.append(IdRange(lo, hi))
        lo = hi + 1
    keys = [id_range.key for id_range in ranges]
    assert last_range_end(keys) == ranges[-1].hi and parse_partition_key(keys[0]).lo == MIN_ID
    return keys


def realistic_report(table: str, id_range: IdRange, rows: int) -> PartitionReport:
    """A sync's figures for one partition, with two objects missing at the source (a markdown table)."""
    directory = TABLES[table].attachments[0].directory
    missing = [
        ObjectProblem(table, row_id, object_key(table, directory, row_id, "original", "a.jpg", cached=False),
                      "missing at the source")
        for row_id in (id_range.hi - 1, id_range.hi)
    ]  # fmt: skip
    return PartitionReport(
        snapshot_at=datetime.now(UTC), rows=rows, planned=2 * rows, copied=2 * rows - 2, skipped=0,
        missing=2, failed=0, bytes_copied=rows * 180_000, invalid_rows=0, fallback_used=0,
        missing_objects=missing, problems=[],
    )  # fmt: skip


_worker_instance = None


def _record_materializations(task: tuple[str, str, list[str], int]) -> int:
    """In a seeding process: one materialization per key, as the report op's (runless here)."""
    global _worker_instance
    from dagster import AssetKey, AssetMaterialization, DagsterInstance

    home, table, keys, rows = task
    if _worker_instance is None:
        _worker_instance = DagsterInstance.from_config(home)
    for key in keys:
        id_range = parse_partition_key(key)
        metadata = partition_metadata(realistic_report(table, id_range, rows), id_range)
        _worker_instance.report_runless_asset_event(
            AssetMaterialization(asset_key=AssetKey(table), partition=key, metadata=metadata)
        )
    return len(keys)


def instance_settings(home: Path) -> None:
    """The repository's dagster.yaml in ``home``, with the run queue stopped (runs stay QUEUED)."""
    config = yaml.safe_load((REPOSITORY / "dagster.yaml").read_text())
    config["run_coordinator"]["config"]["max_concurrent_runs"] = 0
    (home / "dagster.yaml").write_text(yaml.safe_dump(config, sort_keys=False))


def seed(home: Path, count: int, fraction: float, workers: int) -> dict:
    """N partitions per table and the first ``fraction`` of them materialized; timed."""
    from dagster import AssetKey, DagsterInstance

    rows = value("SYNC_PARTITION_ROWS")
    keys = partition_keys(count, rows)
    materialized = keys[: round(count * fraction)]
    # Opened first, so the storage exists before any other process opens it (concurrent SQLite schema
    # creation can stamp it twice, see test_daemon.py).
    instance = DagsterInstance.from_config(str(home))
    started = time.monotonic()
    for table in TABLES:
        instance.add_dynamic_partitions(partitions_name(table), keys)
    partitions_seconds = time.monotonic() - started
    chunk = 250
    tasks = [
        (str(home), table, materialized[start : start + chunk], rows)
        for table in TABLES
        for start in range(0, len(materialized), chunk)
    ]
    started = time.monotonic()
    recorded = 0
    if tasks:
        with multiprocessing.get_context("spawn").Pool(workers) as pool:
            for done in pool.imap_unordered(_record_materializations, tasks):
                recorded += done
    events_seconds = time.monotonic() - started
    latest = instance.get_latest_materialization_event(AssetKey(ASSET))
    got = {table: len(instance.get_materialized_partitions(AssetKey(table))) for table in TABLES}
    assert all(count == len(materialized) for count in got.values()), got
    instance.dispose()
    return {
        "keys": keys,
        "materialized": len(materialized),
        "partitions_seconds": partitions_seconds,
        "events": recorded,
        "events_seconds": events_seconds,
        "latest_key": latest.asset_materialization.partition if latest else None,
    }


# Processes ---------------------------------------------------------------------------------------


def _children() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            text = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        parent = int(text[text.rindex(")") + 2 :].split()[1])
        children.setdefault(parent, []).append(int(entry))
    return children


def tree_peaks(root: int) -> list[tuple[int, str, int]]:
    """(pid, command, VmHWM bytes) of each live process of ``root``'s tree."""
    children, found, todo = _children(), [], [root]
    while todo:
        pid = todo.pop()
        todo += children.get(pid, [])
        try:
            status = Path(f"/proc/{pid}/status").read_text()
            command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        peak = next((int(line.split()[1]) * 1024 for line in status.splitlines() if line.startswith("VmHWM:")), 0)
        found.append((pid, command.strip(), peak))
    return found


class Processes:
    """Commands from the repository, each in its own process group with what it starts; stopped together."""

    def __init__(self, env: dict[str, str], log_dir: Path):
        self.env, self.log_dir = env, log_dir
        self.processes: dict[str, subprocess.Popen] = {}

    def start(self, name: str, command: list[str]) -> subprocess.Popen:
        with open(self.log(name), "wb") as out:
            self.processes[name] = subprocess.Popen(
                command, cwd=REPOSITORY, env=self.env, stdin=subprocess.DEVNULL, stdout=out,
                stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        return self.processes[name]

    def log(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"

    def tail(self, name: str, lines: int = 30) -> str:
        return "\n".join(self.log(name).read_text(errors="replace").splitlines()[-lines:])

    def check_alive(self, name: str) -> None:
        process = self.processes[name]
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited ({process.returncode}):\n{self.tail(name)}")

    def resources(self, name: str) -> dict:
        """Peak RSS of each process of the tree (VmHWM) and the tree's CPU seconds so far."""
        pid = self.processes[name].pid
        peaks = tree_peaks(pid)
        cpu, _ = tree_cpu_seconds(pid)
        main = next((peak for member, _, peak in peaks if member == pid), 0)
        others = [(command[:90], peak) for member, command, peak in peaks if member != pid]
        return {
            "peak_rss": main,
            "peak_rss_others": others,
            "peak_rss_largest_other": max((peak for _, peak in others), default=0),
            "cpu_seconds": cpu,
        }

    def stop_one(self, name: str) -> None:
        self.stop([self.processes[name]])

    def stop(self, processes: list[subprocess.Popen] | None = None) -> None:
        """SIGTERM to each group, then SIGKILL to whatever is left of it (by its leader's pid)."""
        processes = list(self.processes.values()) if processes is None else processes
        for sig, grace in ((signal.SIGTERM, 15), (signal.SIGKILL, 5)):
            for process in processes:
                try:
                    os.killpg(process.pid, sig)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + grace
            for process in processes:
                try:
                    process.wait(max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    pass


# GraphQL -----------------------------------------------------------------------------------------


class GraphQLError(RuntimeError):
    pass


def graphql(base: str, query: str, variables: dict | None = None, operation: str | None = None, timeout=600):
    """POST to /graphql as the UI does; (seconds, response bytes, data)."""
    body = {"query": query, "variables": variables or {}}
    if operation:
        body["operationName"] = operation
    request = urllib.request.Request(
        f"{base}/graphql" + (f"?op={operation}" if operation else ""),
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    started = time.monotonic()
    with urllib.request.urlopen(request, timeout=timeout) as response:
        raw = response.read()
    seconds = time.monotonic() - started
    answer = json.loads(raw)
    if answer.get("errors"):
        raise GraphQLError(f"{operation or query[:60]}: {answer['errors']}")
    return seconds, len(raw), answer["data"]


def wait_for_webserver(base: str, processes: Processes, timeout: float) -> float:
    started = time.monotonic()
    while True:
        processes.check_alive("dagster-webserver")
        try:
            with urllib.request.urlopen(f"{base}/server_info", timeout=10) as response:
                response.read()
            _, _, data = graphql(base, LOCATION_STATUS, timeout=10)
            entries = data["workspaceOrError"].get("locationEntries", [])
            if any(entry["name"] == LOCATION and entry["loadStatus"] == "LOADED" for entry in entries):
                return time.monotonic() - started
        except (OSError, GraphQLError, urllib.error.URLError):
            pass
        if time.monotonic() - started > timeout:
            raise RuntimeError(f"the webserver did not load the code location in {timeout:g}s")
        time.sleep(0.2)


@dataclass
class Operation:
    """A query a page sent, as the browser sent it."""

    page: str
    name: str
    label: str
    body: dict
    timings: list[float] = field(default_factory=list)
    size: int = 0
    error: str = ""


def operation_label(name: str, variables: dict) -> str:
    """The query's name and what it was asked about (one asset, n assets, a backfill)."""
    asset = variables.get("assetKey") or variables.get("key")
    if isinstance(asset, dict) and asset.get("path"):
        return f"{name} ({'/'.join(asset['path'])})"
    for plural in ("assetKeys", "keys"):
        if isinstance(variables.get(plural), list):
            return f"{name} ({len(variables[plural])} assets)"
    if variables.get("backfillId"):
        return f"{name} (backfill)"
    return name


def replay(base: str, operations: list[Operation], repeat: int, timeout: float) -> None:
    for operation in operations:
        for _ in range(repeat):
            try:
                seconds, operation.size, _ = graphql(
                    base, operation.body["query"], operation.body.get("variables"), operation.name, timeout
                )
                operation.timings.append(seconds)
            except (OSError, GraphQLError, urllib.error.URLError) as error:
                operation.error = str(error)[:300]
                break


# Pages -------------------------------------------------------------------------------------------


def number(count: int) -> str:
    """A regex for a count as the UI may print it: 14969 or 14,969."""
    return f"(?:{count}|{count:,})"


SHOWN_JS = """
(conditions) => {
  const text = document.body ? document.body.innerText : "";
  return conditions.every(([pattern, count]) => (text.match(new RegExp(pattern, "g")) || []).length >= count);
}
"""


@dataclass
class Page:
    name: str
    path: str
    conditions: list[tuple[str, int]]
    """(regex, how many times) that must all be in the page's text."""
    key: str = ""
    """Put for ``<key>`` in the path."""
    timings: list[float | None] = field(default_factory=list)
    operations: dict[str, Operation] = field(default_factory=dict)
    slowest_in_browser: tuple[str, float] | None = None
    error: str = ""


def load_page(browser, base: str, page_spec: Page, timeout_s: float, screenshot: Path | None) -> None:
    """Open the page in a fresh context; record the time until its conditions hold, and its queries."""
    context = browser.new_context(viewport={"width": 1600, "height": 1400})
    context.add_init_script("window.localStorage.setItem('communityNux', '\"1\"')")
    page = context.new_page()
    sent: list[dict] = []
    in_browser: list[tuple[str, float]] = []

    def on_request(request):
        if "/graphql" in request.url and request.method == "POST":
            try:
                sent.append(request.post_data_json or {})
            except ValueError:
                pass

    def on_finished(request):
        if "/graphql" in request.url:
            timing = request.timing
            if timing.get("responseEnd", -1) >= 0:
                in_browser.append((request.url.split("op=")[-1], timing["responseEnd"] / 1000))

    page.on("request", on_request)
    page.on("requestfinished", on_finished)
    started = time.monotonic()
    try:
        page.goto(base + page_spec.path.replace("<key>", page_spec.key), wait_until="commit", timeout=timeout_s * 1000)
        page.wait_for_function(SHOWN_JS, arg=page_spec.conditions, polling=100, timeout=timeout_s * 1000)
        page_spec.timings.append(time.monotonic() - started)
    except Exception as error:  # Playwright's TimeoutError among others: recorded, the run goes on
        page_spec.timings.append(None)
        page_spec.error = f"not shown within {timeout_s:g}s: {str(error).splitlines()[0][:200]}"
    if screenshot is not None:
        try:
            page.screenshot(path=str(screenshot))
        except Exception:
            pass
    context.close()
    for body in sent:
        name = body.get("operationName") or "?"
        label = operation_label(name, body.get("variables") or {})
        page_spec.operations.setdefault(label, Operation(page_spec.name, name, label, body))
    if in_browser:
        slowest = max(in_browser, key=lambda item: item[1])
        if page_spec.slowest_in_browser is None or slowest[1] > page_spec.slowest_in_browser[1]:
            page_spec.slowest_in_browser = slowest


def measure_pages(browser, base: str, pages: list[Page], repeat: int, timeout_s: float, artifacts: Path | None, n):
    for page_spec in pages:
        for attempt in range(repeat):
            shot = artifacts / f"{n}-{page_spec.name}.png" if artifacts and attempt == 0 else None
            load_page(browser, base, page_spec, timeout_s, shot)
            print(f"  page {page_spec.name}: {fmt(page_spec.timings[-1])} s {page_spec.error}", flush=True)


# Backfill ----------------------------------------------------------------------------------------


def backfill_runs(instance, backfill_id: str, expected: int, processes: Processes, timeout: float) -> dict:
    """Wait for the backfill daemon to create ``expected`` runs; when the first and the last appeared."""
    from dagster import DagsterRunStatus, RunsFilter

    tags = {"dagster/backfill": backfill_id}
    started = time.monotonic()
    first = None
    count = 0
    progress = []
    stopped = ""
    resources = {}
    while True:
        daemon = processes.processes["dagster-daemon"]
        if daemon.poll() is not None:  # recorded: what the pages show of the runs made so far is still measured
            stopped = f"dagster-daemon exited ({daemon.returncode}) after {time.monotonic() - started:.0f} s"
            print(f"  {stopped}:\n{processes.tail('dagster-daemon', 15)}", flush=True)
        else:
            resources = processes.resources("dagster-daemon")  # the last look before it may be gone
        count = instance.get_runs_count(RunsFilter(tags=tags))
        elapsed = time.monotonic() - started
        if count and first is None:
            first = elapsed
        if not progress or progress[-1][1] != count:
            progress.append((round(elapsed, 1), count))
        # Created and submitted (QUEUED): a run is created NOT_STARTED, then enqueued.
        done = count >= expected and not instance.get_runs_count(
            RunsFilter(tags=tags, statuses=[DagsterRunStatus.NOT_STARTED])
        )
        if done or elapsed > timeout or stopped:
            break
        time.sleep(1)
    return {"first_run_seconds": first, "all_runs_seconds": elapsed if done else None,
            "runs": count, "progress": progress, "daemon_stopped": stopped, "resources": resources}  # fmt: skip


def runs_breakdown(instance, backfill_id: str) -> dict:
    from dagster import RunsFilter

    runs = instance.get_runs(RunsFilter(tags={"dagster/backfill": backfill_id}))
    per_asset = Counter("+".join(key.to_user_string() for key in sorted(run.asset_selection or [])) for run in runs)
    statuses = Counter(run.status.value for run in runs)
    partitions = Counter()
    for run in runs:
        if "dagster/asset_partition_range_start" in run.tags:
            partitions["ranged"] += 1
        elif "dagster/partition" in run.tags:
            partitions["single"] += 1
    return {"per_asset": dict(per_asset), "statuses": dict(statuses), "kinds": dict(partitions)}


# One N -------------------------------------------------------------------------------------------


def environment(home: Path) -> dict[str, str]:
    env = {name: val for name, val in os.environ.items() if not name.startswith(OUR_VARIABLES)}
    return env | PLACEHOLDER_BUCKETS | {"DAGSTER_HOME": str(home), "PYTHONUNBUFFERED": "1"}


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def bench(n: int, arguments: argparse.Namespace) -> dict:
    from dagster import DagsterInstance
    from playwright.sync_api import sync_playwright

    figures: dict = {"partitions": n, "load_before": os.getloadavg(), "queue_stopped_by": QUEUE_STOPPED}
    started_all = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix=f"bench-ui-{n}-", dir=arguments.work_dir))
    home = work / "dagster_home"
    home.mkdir()
    instance_settings(home)
    print(f"N={n}: load {figures['load_before']}, DAGSTER_HOME={home}", flush=True)
    seeded = seed(home, n, arguments.materialized_fraction, arguments.seed_workers)
    keys, materialized = seeded.pop("keys"), seeded["materialized"]
    figures["seed"] = seeded
    print(f"  seeded: partitions {seeded['partitions_seconds']:.1f} s, {seeded['events']} materializations "
          f"{seeded['events_seconds']:.1f} s", flush=True)  # fmt: skip
    artifacts = arguments.artifacts
    if artifacts:
        artifacts.mkdir(parents=True, exist_ok=True)

    with ExitStack() as stack:
        processes = Processes(environment(home), work)
        stack.callback(processes.stop)
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        processes.start(
            "dagster-webserver",
            [str(BIN / "dagster-webserver"), "-h", "127.0.0.1", "-p", str(port), "-w", WORKSPACE],
        )
        figures["webserver_ready_seconds"] = wait_for_webserver(base, processes, 300)
        print(f"  webserver ready in {figures['webserver_ready_seconds']:.1f} s", flush=True)
        try:
            graphql(base, "mutation { setNuxSeen }")
        except (OSError, GraphQLError):
            pass

        playwright = stack.enter_context(sync_playwright())
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS)
        stack.callback(browser.close)
        missing = n - materialized
        selected = keys[materialized - 1] if materialized else keys[0]
        percent = 100 * materialized / n
        percents = sorted({math.floor(percent), round(percent), math.ceil(percent)})
        pages = [
            Page("partitions", f"/assets/{ASSET}?view=partitions",
                 [(rf"Materialized \({number(materialized)}\)", 1), (rf"Missing \({number(missing)}\)", 1)]),
            Page("partition selected", f"/assets/{ASSET}?view=partitions&partition=<key>",
                 [(selected, 2), ("Latest materialization", 1)], key=selected),
            Page("overview", f"/assets/{ASSET}", [("Latest materialization", 1), (seeded["latest_key"], 1)]),
            Page("catalog", "/assets",
                 [(rf"{number(materialized)}\s+{number(missing)}\s+0\s+0\s+{number(n)} partitions", len(TABLES))]),
            Page("lineage", "/asset-groups",
                 [(rf"(?:{'|'.join(map(str, percents))})% filled", len(TABLES)), (rf"{number(n)} partitions",
                                                                                   len(TABLES))]),
        ]  # fmt: skip
        measure_pages(browser, base, pages, arguments.repeat, arguments.page_timeout, artifacts, n)

        operations = [op for page in pages for op in page.operations.values()]
        operations = list({op.label: op for op in reversed(operations)}.values())[::-1]  # first page that sent it
        replay(base, operations, arguments.repeat, arguments.page_timeout)
        for op in operations:
            print(f"  query {op.label}: {best_median(op.timings)} s, {op.size / 1e3:,.0f} kB {op.error}", flush=True)

        # The backfill of every partition of every asset, as "Materialize all" launches it.
        params = {"assetSelection": [{"path": [table]} for table in TABLES], "allPartitions": True}
        seconds, _, data = graphql(base, LAUNCH_BACKFILL, {"backfillParams": params}, timeout=arguments.page_timeout)
        result = data["launchPartitionBackfill"]
        if result["__typename"] != "LaunchBackfillSuccess":
            raise RuntimeError(f"launchPartitionBackfill: {result}")
        backfill_id = result["backfillId"]
        per_run = value("SYNC_PARTITIONS_PER_RUN")
        expected = len(TABLES) * math.ceil(n / per_run)
        figures["backfill"] = {"id": backfill_id, "launch_seconds": seconds, "expected_runs": expected}
        print(f"  backfill {backfill_id} launched in {seconds:.2f} s; expecting {expected} runs", flush=True)

        processes.start("dagster-daemon", [str(BIN / "dagster-daemon"), "run", "-w", WORKSPACE])
        instance = stack.enter_context(DagsterInstance.from_config(str(home)))
        created = backfill_runs(instance, backfill_id, expected, processes, arguments.backfill_timeout)
        figures["daemon_at_all_runs"] = created.pop("resources")
        figures["backfill"].update(created)
        figures["backfill"].update(runs_breakdown(instance, backfill_id))
        backfill = instance.get_backfill(backfill_id)
        figures["backfill"]["status"] = backfill.status.value
        figures["backfill"]["queue_log_says_stopped"] = "Maximum is 0, won't launch more" in processes.log(
            "dagster-daemon"
        ).read_text(errors="replace")
        print(f"  runs: {created['runs']}/{expected} in {fmt(created['all_runs_seconds'])} s (first after "
              f"{fmt(created['first_run_seconds'])} s); {figures['backfill']['statuses']}", flush=True)  # fmt: skip

        complete = created["all_runs_seconds"] is not None
        if complete:  # every run queued: every partition shows as materializing, each asset's N in progress
            queued_pages = [
                Page("partitions, backfill queued", f"/assets/{ASSET}?view=partitions",
                     [(rf"Materializing \({number(n)}\)", 1)]),
                Page("backfill", f"/runs/b/{backfill_id}",
                     [(rf"% completed\s+{number(n)}\s+{number(n)}\s+0\s+0", len(TABLES))]),
            ]  # fmt: skip
            daemon_before = (time.monotonic(), figures["daemon_at_all_runs"]["cpu_seconds"])
        else:  # stopped, so that it does not compete with the pages; the pages show the runs made so far
            figures["daemon"] = figures["daemon_at_all_runs"]
            processes.stop_one("dagster-daemon")
            if not created["daemon_stopped"]:
                print("  run creation timed out: daemon stopped before the backfill pages", flush=True)
            queued_pages = [
                Page("partitions, backfill queued", f"/assets/{ASSET}?view=partitions",
                     [(r"Materializing \([\d,]+\)", 1)]),
                Page("backfill", f"/runs/b/{backfill_id}", [(rf"% completed\s+{number(n)}\s", len(TABLES))]),
            ]  # fmt: skip
        measure_pages(browser, base, queued_pages, arguments.repeat, arguments.page_timeout, artifacts, n)
        known = {op.label for op in operations}
        more = []
        for page in queued_pages:
            for op in page.operations.values():
                if page.name == "backfill" and op.label not in known:
                    more.append(op)
                elif page.name != "backfill" and op.name in REPLAYED_WITH_BACKFILL:
                    op.label += ", backfill queued"
                    more.append(op)
        replay(base, more, arguments.repeat, arguments.page_timeout)
        for op in more:
            print(f"  query {op.label}: {best_median(op.timings)} s, {op.size / 1e3:,.0f} kB {op.error}", flush=True)
        figures["pages"] = [
            {"name": p.name, "path": p.path, "timings": p.timings, "error": p.error, "slowest": p.slowest_in_browser}
            for p in pages + queued_pages
        ]
        figures["queries"] = [
            {"page": op.page, "label": op.label, "timings": op.timings, "size": op.size, "error": op.error}
            for op in operations + more
        ]
        figures["webserver"] = processes.resources("dagster-webserver")
        if complete:
            figures["daemon"] = processes.resources("dagster-daemon")
            spent, seconds = figures["daemon"]["cpu_seconds"] - daemon_before[1], time.monotonic() - daemon_before[0]
            figures["daemon_cpu_share_after_runs"] = spent / seconds
        figures["backfill"]["complete"] = complete
        figures["backfill"]["status_at_end"] = instance.get_backfill(backfill_id).status.value
    figures["total_seconds"] = time.monotonic() - started_all
    if not arguments.keep:
        shutil.rmtree(work, ignore_errors=True)
    else:
        figures["work"] = str(work)
    return figures


# Report ------------------------------------------------------------------------------------------


def fmt(seconds: float | None, digits: int = 2) -> str:
    return "–" if seconds is None else f"{seconds:.{digits}f}"


def best_median(timings: list[float | None]) -> str:
    done = [t for t in timings if t is not None]
    if not done:
        return "timed out"
    text = f"{min(done):.2f} / {statistics.median(done):.2f}"
    if len(done) < len(timings):
        text += f" ({len(timings) - len(done)} timed out)"
    return text


def runs_per_second(backfill: dict) -> str:
    progress = backfill["progress"]
    first = next(((seconds, count) for seconds, count in progress if count), None)
    if first is None or progress[-1][0] <= first[0]:
        return "–"
    return f"{(progress[-1][1] - first[1]) / (progress[-1][0] - first[0]):.2f}"


def report(results: list[dict]) -> None:
    columns = [f"N = {r['partitions']:,}" for r in results]
    rows: list[tuple[str, list[str]]] = []

    def row(label: str, cells) -> None:
        rows.append((label, list(cells)))

    row("load average before (1/5/15 min)", (" / ".join(f"{v:.2f}" for v in r["load_before"]) for r in results))
    row("partitions (7 tables)", (f"{7 * r['partitions']:,}" for r in results))
    row("seeding: add_dynamic_partitions, s", (fmt(r["seed"]["partitions_seconds"], 1) for r in results))
    row("seeding: materializations recorded", (f"{r['seed']['events']:,}" for r in results))
    row("seeding: materializations, s", (fmt(r["seed"]["events_seconds"], 0) for r in results))
    row("webserver start to code location loaded, s", (fmt(r["webserver_ready_seconds"], 1) for r in results))
    names = [page["name"] for page in results[0]["pages"]]
    for name in names:
        page = results[0]["pages"][names.index(name)]
        path = "/runs/b/<id>" if name == "backfill" else page["path"]
        row(f"page `{path}` ({name}), s best / median",
            (best_median(next(p for p in r["pages"] if p["name"] == name)["timings"]) for r in results))  # fmt: skip
    labels = list(dict.fromkeys(q["label"] for r in results for q in r["queries"]))
    for label in labels:
        cells = []
        for r in results:
            query = next((q for q in r["queries"] if q["label"] == label), None)
            if query is None:
                cells.append("not sent")
            elif not query["timings"]:
                cells.append(f"error: {query['error'][:60]}")
            else:
                cells.append(f"{best_median(query['timings'])} ({query['size'] / 1e3:,.0f} kB)")
        row(f"GraphQL {label}, s best / median (response)", cells)
    row("backfill: launchPartitionBackfill (all partitions, 7 assets), s",
        (fmt(r["backfill"]["launch_seconds"]) for r in results))  # fmt: skip
    row("backfill: runs created / expected", (f"{r['backfill']['runs']:,} / {r['backfill']['expected_runs']:,}"
                                               for r in results))  # fmt: skip
    row("backfill: daemon start to first run, s", (fmt(r["backfill"]["first_run_seconds"], 1) for r in results))
    row("backfill: daemon start to all runs, s", (fmt(r["backfill"]["all_runs_seconds"], 1) for r in results))
    row("backfill: runs created per second (first to last)", (runs_per_second(r["backfill"]) for r in results))
    row("backfill: runs per asset", (", ".join(sorted({str(v) for v in r["backfill"]["per_asset"].values()}))
                                     + f" ({len(r['backfill']['per_asset'])} assets)" for r in results))  # fmt: skip
    row("backfill: run statuses", (", ".join(f"{k} {v:,}" for k, v in r["backfill"]["statuses"].items())
                                   for r in results))  # fmt: skip
    for who in ("webserver", "daemon"):
        row(f"{who}: peak RSS (VmHWM), MB: own / its largest code server",
            (f"{mb(r[who]['peak_rss'])} / {mb(r[who]['peak_rss_largest_other'])}" for r in results))  # fmt: skip
        row(f"{who}: CPU seconds (process tree)", (fmt(r[who]["cpu_seconds"], 0) for r in results))
    row("daemon CPU seconds until all runs existed (or the timeout)",
        (fmt(r["daemon_at_all_runs"]["cpu_seconds"], 0) for r in results))  # fmt: skip
    row("daemon CPU share once all runs queued (backfill pages measured meanwhile), %",
        (fmt(100 * r["daemon_cpu_share_after_runs"], 0) if "daemon_cpu_share_after_runs" in r else "–"
         for r in results))  # fmt: skip
    row("total for this N (seeding included), s", (fmt(r["total_seconds"], 0) for r in results))

    print()
    print("| figure | " + " | ".join(columns) + " |")
    print("|---|" + "---:|" * len(columns))
    for label, cells in rows:
        print(f"| {label} | " + " | ".join(cells) + " |")
    print()
    for r in results:
        problems = [f"{p['name']}: {p['error']}" for p in r["pages"] if p["error"]]
        problems += [f"{q['label']}: {q['error']}" for q in r["queries"] if q["error"]]
        problems += [r["backfill"]["daemon_stopped"]] if r["backfill"].get("daemon_stopped") else []
        slowest = [f"{p['name']}: {p['slowest'][0]} {p['slowest'][1]:.2f} s" for p in r["pages"] if p["slowest"]]
        print(f"N={r['partitions']}: run queue stopped by {r['queue_stopped_by']} "
              f"(daemon log says so: {r['backfill']['queue_log_says_stopped']}); backfill status "
              f"{r['backfill']['status_at_end']}; runs per asset {r['backfill']['per_asset']}; "
              f"run kinds {r['backfill']['kinds']}")  # fmt: skip
        print(f"  slowest query in the browser, per page: {'; '.join(slowest)}")
        for who in ("webserver", "daemon"):
            others = ", ".join(
                f"{command.split(' ', 2)[-1][:60]} {mb(peak)} MB" for command, peak in r[who]["peak_rss_others"]
            )
            print(f"  {who} tree peaks: own {mb(r[who]['peak_rss'])} MB; {others}")
        if problems:
            print("  problems: " + "; ".join(problems))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--partitions", default="1000,5000,20000", help="partitions per asset, comma-separated")
    parser.add_argument("--materialized-fraction", type=float, default=0.5)
    parser.add_argument("--repeat", type=int, default=3, help="page loads and queries, each (best and median)")
    parser.add_argument("--page-timeout", type=float, default=300, help="seconds a page or query may take")
    parser.add_argument("--backfill-timeout", type=float, default=1800, help="seconds for the daemon's runs")
    parser.add_argument("--seed-workers", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--work-dir", default=None, help="where the temporary DAGSTER_HOMEs go")
    parser.add_argument("--artifacts", type=Path, help="a screenshot of each page (first load) here")
    parser.add_argument("--json", type=Path, help="append each N's figures to this JSON-lines file")
    parser.add_argument("--keep", action="store_true", help="keep each N's DAGSTER_HOME and logs")
    arguments = parser.parse_args()
    if not Path(CHROMIUM).exists():
        raise SystemExit(f"{CHROMIUM} is missing: apt-get install -y chromium")

    # SIGTERM (e.g. a timeout) must still stop the webserver, the daemon and the browser.
    def terminated(*_):
        print("bench_ui_partitions: SIGTERM received; stopping what it started", file=sys.stderr, flush=True)
        sys.exit(143)

    signal.signal(signal.SIGTERM, terminated)
    results = []
    for n in [int(part) for part in arguments.partitions.split(",") if part.strip()]:
        figures = bench(n, arguments)
        results.append(figures)
        if arguments.json:
            with open(arguments.json, "a") as out:
                out.write(json.dumps(figures, default=str) + "\n")
        report(results)


if __name__ == "__main__":
    main()
