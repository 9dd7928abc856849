"""The demo's Dagster UI, seen through a real browser.

Starts `python -m mastodon_s3_sync demo --ui` (embedded PostgreSQL, two rclone S3
servers, a seeded fake instance, `plan`, a synced `custom_emojis`, every id-range
partition cut, then `dagster dev`), opens its pages in Debian's headless Chromium
through Playwright, and checks what an admin sees: the seven assets, their
partitions, and the `custom_emojis` materialization with its metadata.
Screenshots go to test-artifacts/ at the repository root, with the demo's output.

The expected partition keys and metadata values are read from the same webserver's
GraphQL API, so the test checks that the UI shows what Dagster recorded, not
hard-coded numbers. Stopping the demo is checked too: Ctrl-C (SIGINT to its process
group) must end every process it started (the embedded PostgreSQL runs in a
session of its own, so it is found by an environment marker) and remove its
working directory.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import pytest
from mastodon_s3_sync_demo.servers import free_port
from mastodon_s3_sync_demo.ui import CHROMIUM_FLAGS
from playwright import sync_api

from mastodon_s3_sync.core.mastodon.tables import TABLES
from mastodon_s3_sync_tests.support.processes import signals_as_from_a_terminal

expect = sync_api.expect

# A fresh demo plus a browser is about a minute and a half; a first-time `apt-get install chromium` adds more.
pytestmark = [pytest.mark.timeout(600), pytest.mark.integration]

REPO_ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO_ROOT / "test-artifacts"
CHROMIUM = Path("/usr/bin/chromium")
ASSETS = tuple(TABLES)
NUMERIC_METADATA = ("objects_copied", "objects_skipped", "objects_missing", "bytes_copied")

READY_TIMEOUT_S = 240  # the demo seeds, plans, syncs custom_emojis and starts dagster dev: ~60 s here, idle
STOP_GRACE_S = 60  # Ctrl-C to a clean exit takes ~15 s here
UI_TIMEOUT_MS = 30_000  # one page's data arriving in the browser
MARKER_VARIABLE = "MASTODON_S3_SYNC_UI_TEST_RUN"

ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")
# Output lines of the demo (colours removed) that mean it went wrong before the UI came up.
FAILURE_PATTERNS = (
    re.compile(r"Traceback \(most recent call last\)"),
    re.compile(r"^error: "),
    re.compile(r"^\s+failed \S+: "),
    re.compile(r"^custom_emojis: .*\b[1-9]\d* failed\b"),
    re.compile(r"DEMO FAILED"),
    # dagster dev's webserver or daemon dying (e.g. the port was taken meanwhile) leaves the demo
    # running without a UI, so this is the only sign of it.
    re.compile(r"error while attempting to bind"),
    re.compile(r"^ERROR:\s"),
    re.compile(r"process shut down unexpectedly"),
    re.compile(r"An unexpected exception has occurred"),
)


# --------------------------------------------------------------------------- Chromium


def _install_chromium() -> str | None:
    """apt-get install Debian's chromium; returns why it could not be, or None once it is there."""
    if CHROMIUM.exists():
        return None
    if shutil.which("apt-get") is None:
        return f"{CHROMIUM} is missing and there is no apt-get to install Debian's chromium package"
    if os.geteuid() == 0:
        prefix: list[str] = []
    elif shutil.which("sudo") and subprocess.run(["sudo", "-n", "true"], capture_output=True).returncode == 0:
        prefix = ["sudo", "-n"]
    else:
        return f"{CHROMIUM} is missing and installing it needs root (run `make system-packages` as root)"
    apt = [*prefix, "env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "-o", "DPkg::Lock::Timeout=120"]
    for step in (["update", "-qq"], ["install", "-y", "-qq", "chromium"]):
        try:
            done = subprocess.run([*apt, *step], stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=420)
        except subprocess.TimeoutExpired:
            return f"`apt-get {' '.join(step)}` did not finish within 420 s; cannot install chromium"
        if done.returncode != 0:
            tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-5:])
            return f"`apt-get {' '.join(step)}` failed ({done.returncode}); cannot install chromium:\n{tail}"
    return None if CHROMIUM.exists() else f"apt-get installed chromium but {CHROMIUM} is still missing"


@pytest.fixture(scope="session")
def chromium_executable() -> str:
    reason = _install_chromium()
    if reason:
        pytest.fail(reason)
    return str(CHROMIUM)


@pytest.fixture(scope="module")
def browser(chromium_executable) -> Iterator[object]:
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_executable, headless=True, args=CHROMIUM_FLAGS)
        try:
            yield browser
        finally:
            browser.close()


# --------------------------------------------------------------------------- the demo


@dataclass
class DemoUI:
    """A running `demo --ui`: where its webserver listens, and what its output said."""

    process: subprocess.Popen
    base_url: str
    marker: str
    log_path: Path
    lines: list[str] = field(default_factory=list)
    reader: threading.Thread | None = None

    def output(self) -> str:
        return "".join(self.lines)

    def tail(self, count: int = 40) -> str:
        return "".join(self.lines[-count:])

    def work_dir(self) -> Path | None:
        """The demo's temporary directory, from the DAGSTER_HOME it prints."""
        found = re.search(r"DAGSTER_HOME=(\S+)/dagster_home", self.output())
        return Path(found.group(1)) if found else None

    def graphql(self, query: str, timeout: float = 10) -> dict:
        request = urllib.request.Request(
            f"{self.base_url}/graphql",
            data=json.dumps({"query": query}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = json.loads(response.read())
        if body.get("errors"):
            raise AssertionError(f"GraphQL errors for {query!r}: {body['errors']}")
        return body["data"]


def _reset_signals_and_detach() -> None:
    """In the demo's child process: a new session (so its whole tree can be signalled as one
    group) and the signals a terminal would leave it."""
    os.setsid()
    signals_as_from_a_terminal()


def _demo_environment(port: int, marker: str) -> dict[str, str]:
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("SOURCE_", "DESTINATION_", "DB_", "SYNC_"))
        and name not in ("DATABASE_URL", "MASTODON_ENV_FILE", "DAGSTER_HOME")
    }
    env.update(
        DEMO_UI_PORT=str(port),
        PYTHONUNBUFFERED="1",
        # The code under test, whatever the venv's editable install points at.
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
    )
    env[MARKER_VARIABLE] = marker
    return env


def _pump_output(demo: DemoUI) -> None:
    """Copy the demo's output to its log and to `demo.lines` until it closes (keeps the pipe drained)."""
    with open(demo.log_path, "w", encoding="utf-8") as log:
        for raw in iter(demo.process.stdout.readline, b""):
            line = raw.decode("utf-8", errors="replace")
            demo.lines.append(line)
            log.write(line)
            log.flush()


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _wait_until_ready(demo: DemoUI) -> None:
    """Poll the demo's output, its webserver and its code location until the UI can show the assets."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    stage = "the demo to print the UI's address"
    checked = 0
    while True:
        if demo.process.poll() is not None:
            demo.reader.join(5)
            pytest.fail(
                f"the demo exited with code {demo.process.returncode} while waiting for {stage}:\n{demo.tail()}"
            )
        lines = list(demo.lines)
        for line in lines[checked:]:
            line = ANSI_ESCAPE.sub("", line)
            if any(pattern.search(line) for pattern in FAILURE_PATTERNS):
                pytest.fail(f"the demo failed before its UI came up: {line.strip()}\n{demo.tail()}")
        checked = len(lines)
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {READY_TIMEOUT_S} s waiting for {stage}:\n{demo.tail()}")
        if stage == "the demo to print the UI's address":
            if any(f"Dagster UI: {demo.base_url}" in line for line in lines):
                stage = "the webserver to answer /server_info"
        elif stage == "the webserver to answer /server_info":
            if _http_ok(f"{demo.base_url}/server_info"):
                stage = "the code location to load"
        else:
            try:
                workspace = demo.graphql(
                    "{ workspaceOrError { __typename ... on Workspace { locationEntries { name loadStatus"
                    " locationOrLoadError { __typename ... on PythonError { message } } } } } }"
                )["workspaceOrError"]
            except (urllib.error.URLError, OSError):
                workspace = {}
            entries = workspace.get("locationEntries") or []
            for entry in entries:
                if (entry["locationOrLoadError"] or {}).get("__typename") == "PythonError":
                    pytest.fail(f"code location {entry['name']} failed to load: {entry['locationOrLoadError']}")
            if entries and all(entry["loadStatus"] == "LOADED" for entry in entries):
                return
        time.sleep(0.25)


def _processes_with_marker(marker: str) -> list[int]:
    """PIDs of live processes started with our marker in their environment (the demo's whole tree,
    including the embedded PostgreSQL, which detaches into a session of its own)."""
    needle = f"{MARKER_VARIABLE}={marker}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if needle in (entry / "environ").read_bytes().split(b"\0"):
                found.append(int(entry.name))
        except OSError:  # gone, a zombie, or not ours to read
            continue
    return found


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


def _wait_for(condition, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def _stop_demo(demo: DemoUI) -> list[str]:
    """Ctrl-C the demo (SIGINT to its process group), escalate if needed; returns what went wrong."""
    problems = []
    pgid = demo.process.pid
    if demo.process.poll() is None:
        _signal_group(pgid, signal.SIGINT)
        try:
            demo.process.wait(STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            problems.append(f"the demo did not exit within {STOP_GRACE_S} s of SIGINT")
            _signal_group(pgid, signal.SIGTERM)
            try:
                demo.process.wait(10)
            except subprocess.TimeoutExpired:
                problems.append("the demo did not exit on SIGTERM either; killed")
    else:
        problems.append(f"the demo had already exited with code {demo.process.returncode}")
    if not _wait_for(lambda: not _group_alive(pgid), 15):
        problems.append("processes of the demo's process group outlived it; killed")
        _signal_group(pgid, signal.SIGTERM)
        if not _wait_for(lambda: not _group_alive(pgid), 5):
            _signal_group(pgid, signal.SIGKILL)
    demo.process.wait()
    if not _wait_for(lambda: not _processes_with_marker(demo.marker), 15):
        leftovers = _processes_with_marker(demo.marker)
        problems.append(f"processes the demo started outlived it: {_describe(leftovers)}; killed")
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for pid in _processes_with_marker(demo.marker):
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
            if _wait_for(lambda: not _processes_with_marker(demo.marker), 5):
                break
    if demo.reader is not None:
        demo.reader.join(10)
    work_dir = demo.work_dir()
    if work_dir is not None and work_dir.exists():
        problems.append(f"the demo left its working directory {work_dir} behind; removed")
        shutil.rmtree(work_dir, ignore_errors=True)
    return problems


def _describe(pids: list[int]) -> str:
    described = []
    for pid in pids:
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            command = "?"
        described.append(f"{pid} ({command.strip()[:100]})")
    return ", ".join(described)


@pytest.fixture(scope="module")
def demo_ui(chromium_executable) -> Iterator[DemoUI]:
    """`python -m mastodon_s3_sync demo --ui` on a free port, in its own process group.

    (It asks for Chromium first so that a machine without it fails before the minute the demo takes.)
    """
    ARTIFACTS.mkdir(exist_ok=True)
    port = free_port()
    marker = uuid.uuid4().hex
    process = subprocess.Popen(
        [sys.executable, "-m", "mastodon_s3_sync", "demo", "--ui"],
        cwd=REPO_ROOT,  # as `make demo-ui` runs it: the CLI copies ./dagster.yaml into the demo's DAGSTER_HOME
        env=_demo_environment(port, marker),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        preexec_fn=_reset_signals_and_detach,
    )
    demo = DemoUI(process, f"http://127.0.0.1:{port}", marker, ARTIFACTS / "ui-demo-output.log")
    demo.reader = threading.Thread(target=_pump_output, args=(demo,), name="demo-output", daemon=True)
    demo.reader.start()
    ready = False
    try:
        _wait_until_ready(demo)
        # The community sign-up dialog would cover the screenshots: mark it seen for this instance
        # (the page fixture also sets the browser-side flag, and _screenshot checks it is not shown).
        try:
            demo.graphql("mutation { setNuxSeen }")
        except (AssertionError, urllib.error.URLError, OSError):
            pass
        ready = True
        yield demo
    finally:
        problems = _stop_demo(demo)
        message = "stopping the demo with Ctrl-C: " + "; ".join(problems)
        if problems and ready:
            pytest.fail(f"{message}\n{demo.tail()}")
        elif problems:  # the setup failure already being reported says more; do not replace it
            print(message, file=sys.stderr)


@dataclass(frozen=True)
class Expected:
    """What Dagster recorded, read from the webserver's GraphQL API."""

    partition_keys: dict[str, list[str]]
    emoji_partition: str
    emoji_metadata: dict[str, object]


@pytest.fixture(scope="module")
def expected(demo_ui) -> Expected:
    nodes = demo_ui.graphql("{ assetNodes { assetKey { path } isPartitioned partitionKeys } }")["assetNodes"]
    partition_keys = {"/".join(node["assetKey"]["path"]): node["partitionKeys"] for node in nodes}
    assert sorted(partition_keys) == sorted(ASSETS), "the code location should define exactly an asset per table"
    for asset, keys in partition_keys.items():
        assert keys, f"the demo should have cut {asset}'s id-range partitions"
    emojis = demo_ui.graphql(
        '{ assetOrError(assetKey: {path: ["custom_emojis"]}) { ... on Asset { assetMaterializations(limit: 1) {'
        " partition metadataEntries { label __typename ... on IntMetadataEntry { intValue }"
        " ... on MarkdownMetadataEntry { mdStr } } } } } }"
    )["assetOrError"]["assetMaterializations"]
    assert emojis, "the demo should have materialized custom_emojis"
    metadata = {entry["label"]: entry.get("intValue", entry.get("mdStr")) for entry in emojis[0]["metadataEntries"]}
    for label in NUMERIC_METADATA:
        assert isinstance(metadata.get(label), int), f"custom_emojis' materialization should record {label}"
    assert metadata["objects_copied"] > 0, "the demo's custom_emojis sync should have copied objects"
    assert "missing_at_source" in metadata
    return Expected(partition_keys, emojis[0]["partition"], metadata)


# --------------------------------------------------------------------------- the pages


@pytest.fixture(scope="module", autouse=True)
def patient_expect() -> Iterator[None]:
    """The UI fetches each panel's data separately: give every expectation time to see it arrive."""
    expect.set_options(timeout=UI_TIMEOUT_MS)
    try:
        yield
    finally:
        expect.set_options(timeout=None)


@pytest.fixture
def page(browser) -> Iterator[object]:
    # Tall enough for the whole metadata table: the UI scrolls inside fixed panels, so a
    # full-page screenshot is only ever the viewport.
    context = browser.new_context(viewport={"width": 1600, "height": 1400})
    # Belt and braces with setNuxSeen: the UI's own "dismissed" flag for the community dialog.
    context.add_init_script("window.localStorage.setItem('communityNux', '\"1\"')")
    page = context.new_page()
    page.set_default_timeout(UI_TIMEOUT_MS)
    try:
        yield page
    finally:
        context.close()


@contextmanager
def screenshot_on_failure(page, name: str) -> Iterator[None]:
    try:
        yield
    except BaseException:
        try:
            page.screenshot(path=str(ARTIFACTS / f"ui-FAILED-{name}.png"), full_page=True)
        except Exception:  # the original failure matters more
            pass
        raise


def _screenshot(page, name: str) -> None:
    # Nothing may cover the page we are about to keep.
    expect(page.get_by_text("Join the Dagster community")).to_have_count(0)
    page.screenshot(path=str(ARTIFACTS / f"ui-{name}.png"), full_page=True)


def _number(value: int) -> re.Pattern[str]:
    """A number as the UI may print it: 14969 or 14,969."""
    return re.compile(rf"(?<![\d,]){re.escape(str(value))}(?![\d,])|(?<![\d,]){re.escape(f'{value:,}')}(?![\d,])")


def _metadata_row(page, label: str):
    return page.locator("tr").filter(has=page.get_by_text(label, exact=True))


def _partitions_label(count: int) -> str:
    return f"{count} partition" if count == 1 else f"{count} partitions"


def test_catalog_lists_the_seven_assets_with_their_partitions(demo_ui, expected, page):
    with screenshot_on_failure(page, "01-asset-catalog"):
        page.goto(f"{demo_ui.base_url}/assets")
        for asset in ASSETS:
            link = page.locator(f'a[href="/assets/{asset}"]')
            expect(link.first).to_be_visible()
            expect(link.first).to_contain_text(asset)  # (plus a hidden copy the UI measures truncation with)
            # The asset's row (the nearest block around its link that counts partitions).
            row = link.first.locator("xpath=ancestor::div[contains(., ' partition')][1]")
            expect(row).to_contain_text(_partitions_label(len(expected.partition_keys[asset])))
            others = [other for other in ASSETS if other != asset and other in row.inner_text()]
            assert not others, f"{asset}'s row should be its own, but it also shows {others}"
        shown = page.locator('a[href^="/assets/"]').evaluate_all("links => links.map(l => l.getAttribute('href'))")
        assert {href.removeprefix("/assets/") for href in shown} == set(ASSETS)
        _screenshot(page, "01-asset-catalog")


def _expect_emoji_metadata(page, expected) -> None:
    """The custom_emojis materialization's numbers and its table of objects missing at the source."""
    for label in NUMERIC_METADATA:
        row = _metadata_row(page, label)
        expect(row).to_be_visible()
        expect(row).to_contain_text(_number(expected.emoji_metadata[label]))
    expect(_metadata_row(page, "missing_at_source")).to_contain_text("missing at the source")


def test_custom_emojis_overview_shows_the_latest_materialization_metadata(demo_ui, expected, page):
    with screenshot_on_failure(page, "02-custom_emojis-overview"):
        page.goto(f"{demo_ui.base_url}/assets/custom_emojis")
        expect(page.get_by_text("Latest materialization").first).to_be_visible()
        _expect_emoji_metadata(page, expected)
        _screenshot(page, "02-custom_emojis-overview")


def test_custom_emojis_partition_shows_its_materialization(demo_ui, expected, page):
    keys = expected.partition_keys["custom_emojis"]
    assert expected.emoji_partition in keys
    with screenshot_on_failure(page, "03-custom_emojis-partition"):
        page.goto(
            f"{demo_ui.base_url}/assets/custom_emojis?view=partitions&partition={quote(expected.emoji_partition)}"
        )
        expect(page.get_by_text(f"Materialized ({len(keys)})")).to_be_visible()
        expect(page.get_by_text("Missing (0)")).to_be_visible()
        for key in keys:  # the list truncates long keys in the middle; the full key is the item's title
            expect(page.locator(f'[title="{key}"]').first).to_be_visible()
        # The selected partition's panel: its key, its state, the run that materialized it and the metadata.
        expect(page.get_by_text(expected.emoji_partition, exact=True).filter(visible=True).first).to_be_visible()
        expect(page.get_by_text("Materialized", exact=True)).to_be_visible()
        expect(page.get_by_text("Latest materialization").first).to_be_visible()
        expect(page.get_by_text("sync_custom_emojis").first).to_be_visible()
        _expect_emoji_metadata(page, expected)
        _screenshot(page, "03-custom_emojis-partition")


def test_media_attachments_partitions_exist_and_are_not_materialized(demo_ui, expected, page):
    keys = expected.partition_keys["media_attachments"]
    assert len(keys) > 1, "the demo's 1000+ media_attachments rows should span several id-range partitions"
    with screenshot_on_failure(page, "04-media_attachments-partitions"):
        page.goto(f"{demo_ui.base_url}/assets/media_attachments?view=partitions")
        expect(page.get_by_text(f"Missing ({len(keys)})")).to_be_visible()
        expect(page.get_by_text("Materialized (0)")).to_be_visible()
        expect(page.get_by_text("Failed (0)")).to_be_visible()
        for key in keys:
            expect(page.locator(f'[title="{key}"]').first).to_be_visible()
        _screenshot(page, "04-media_attachments-partitions")
