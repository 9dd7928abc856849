"""What the benchmarks share: measuring a contender in its own process, the servers, rclone, settling.

- ``measure``: a small wrapper process that runs a command and writes its wall
  time, CPU (user + system, children included) and peak RSS, from ``wait4``.
  With ``--subreaper`` it also adopts the command's orphaned descendants
  (``PR_SET_CHILD_SUBREAPER``) and waits for every one of them, so that a
  daemon's code servers and run workers are counted even when their parent
  did not wait for them. Run as ``python bench_common.py measure OUTPUT
  [--subreaper] COMMAND...``.
- ``tree_cpu_seconds``: the CPU a live process tree has spent so far (its
  live members' own CPU plus what their reaped children spent), from /proc.
- ``settle``: write back dirty pages, then wait for the CPUs to be idle.
- rclone's configuration and command line at its best (the flags bench_copy.py
  found), the environment of a ``mastodon-s3-sync`` run in a fresh DAGSTER_HOME,
  and the destination listing every run is checked against.
"""

from __future__ import annotations

import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parent.parent
RCLONE = Path(sys.executable).parent / "rclone"
MB = 1_000_000
MiB = 1024 * 1024
PR_SET_CHILD_SUBREAPER = 36
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class Run:
    contender: str
    objects: int
    bytes: int
    seconds: float
    cpu_seconds: float
    peak_rss: int
    server_cpu_seconds: float
    verified: bool
    busy: float
    """Share of the CPUs in use (0-100) over the seconds before the run started."""
    note: str = ""
    """The contender's last output line, when asked for (the engine worker's copy phase, as JSON)."""
    extra: dict = field(default_factory=dict)
    """Contender-specific figures (a backfill's phases, partitions, runs)."""

    @property
    def objects_per_second(self) -> float:
        return self.objects / self.seconds

    @property
    def cpu_ms_per_object(self) -> float:
        return 1000 * self.cpu_seconds / self.objects

    @property
    def server_ms_per_object(self) -> float:
        return 1000 * self.server_cpu_seconds / self.objects

    @property
    def cpu_ceiling(self) -> float:
        """Objects/s if the machine's cores did nothing but this client's and the servers' work for it."""
        return os.cpu_count() * self.objects / (self.cpu_seconds + self.server_cpu_seconds)


@dataclass
class Setup:
    source: object  # S3Server
    source_bucket: str
    keys: list[str]
    database_url: str
    work: Path
    expected_bytes: int = 0
    destination: object = None
    """The current run's destination server: a fresh one per run."""
    expected_sizes: dict[str, int] | None = None
    """Key -> the source's size; when set, a run is verified key by key (else by count and total bytes)."""
    from_disk: bool = False
    """Copy from the seeded files themselves (``source_root``), as from a disk instance's ``public/system``."""

    @property
    def source_root(self) -> Path:
        """The source server's files for the source bucket: a Paperclip root (no key prefix)."""
        return self.work / "source" / self.source_bucket

    @property
    def keys_file(self) -> Path:
        path = self.work / "keys.txt"
        if not path.exists():
            path.write_text("".join(f"{key}\n" for key in self.keys))
        return path

    @staticmethod
    def servers() -> list:
        """The rclone server processes (psutil), for their CPU time; call it between runs."""
        import psutil

        return [process for process in psutil.Process().children(recursive=True) if process.name() == "rclone"]


def work_directory(stack: ExitStack, prefix: str, parent: str | None) -> Path:
    """A temporary directory for a benchmark's servers and files, removed when ``stack`` closes (on SIGTERM
    too). What benchmarks killed outright (SIGKILL, the OOM killer) left is removed first: their
    directories, the servers still running on them and their orphaned helpers (the latency proxy).
    /dev/shm is memory, and a few such leftovers (1-6 GB per killed run) once had the OOM killer stop a
    test run on this machine."""
    parent_path = Path(parent or tempfile.gettempdir())
    stale = [
        path
        for path in parent_path.glob("bench-*-pid*-*")
        if (found := re.fullmatch(r"bench-.*-pid(\d+)-.*", path.name)) and not _alive(int(found.group(1)))
    ]
    _kill_leftovers(stale)
    for path in stale:
        shutil.rmtree(path, ignore_errors=True)
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _terminated)
    created = tempfile.TemporaryDirectory(prefix=f"{prefix}pid{os.getpid()}-", dir=parent)
    return Path(stack.enter_context(created))


class Terminated(BaseException):
    """SIGTERM: unwinds the with-blocks (servers stopped, directories removed); not a ``SystemExit``, which
    the benchmarks take for one contender's failure."""


def _terminated(*_) -> None:
    raise Terminated("SIGTERM")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _kill_leftovers(stale: list[Path]) -> None:
    """SIGKILL the processes whose command line names a ``stale`` directory (servers), and the orphans
    (adopted by init) running a script of this directory (the latency proxy names no directory)."""
    scripts = str(Path(__file__).resolve().parent) + "/"
    for process in Path("/proc").glob("[0-9]*"):
        try:
            command = (process / "cmdline").read_bytes().decode(errors="replace")
            orphan = (process / "stat").read_text().rsplit(")", 1)[1].split()[1] == "1"
            if any(str(path) in command for path in stale) or (orphan and scripts in command):
                os.kill(int(process.name), signal.SIGKILL)
        except (OSError, ValueError, IndexError):
            continue


def server_cpu(servers: list) -> float:
    return sum(sum(process.cpu_times()[:2]) for process in servers)


@contextmanager
def fresh_servers(setup: Setup, destination_bucket: str, root: Path):
    """A new source server on the seeded files and a new, empty destination (``setup.destination``).

    rclone's server spends more CPU per object the more objects it has served,
    which would favour whoever runs first.
    """
    import shutil

    from mastodon_s3_sync_demo.servers import rclone_s3_server

    with (
        rclone_s3_server(
            setup.work / "source", access_key=setup.source.access_key, secret_key=setup.source.secret_key
        ) as setup.source,
        rclone_s3_server(root) as setup.destination,
    ):
        setup.destination.create_bucket(destination_bucket)
        yield
    shutil.rmtree(root, ignore_errors=True)


# Measuring -------------------------------------------------------------------------------------


def measured(output: Path, command: list[str], subreaper: bool = False) -> list[str]:
    """``command`` under the ``measure`` wrapper (a process of its own, started small)."""
    return [sys.executable, __file__, "measure", str(output), *(["--subreaper"] if subreaper else []), *command]


def measure(output: str, command: list[str], subreaper: bool = False) -> None:
    """Run ``command`` and write its wall time, CPU and peak RSS (its own and its children's) to ``output``.

    A process of its own, started small: a child's peak RSS as wait4 reports it
    includes the memory of the process that forked it, which must not be the
    benchmark's (hundreds of MB after seeding). With ``subreaper``, descendants
    orphaned on the way are adopted and waited for too, so their CPU counts.
    SIGTERM is passed on to the command's process group.
    """
    if subreaper:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    started = time.monotonic()
    process = subprocess.Popen(command, start_new_session=subreaper)
    if subreaper:
        signal.signal(signal.SIGTERM, lambda *_: os.killpg(process.pid, signal.SIGTERM))
    while True:
        try:
            _, status, _ = os.wait4(process.pid, 0)
            break
        except InterruptedError:
            continue
    process.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.monotonic() - started
    if subreaper:  # whatever the command left behind: adopted by us, waited for here
        deadline = time.monotonic() + 30
        while True:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                if time.monotonic() > deadline:
                    os.killpg(process.pid, signal.SIGKILL)
                time.sleep(0.1)
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    measurement = {
        "seconds": seconds,
        "cpu_seconds": usage.ru_utime + usage.ru_stime,
        "peak_rss": usage.ru_maxrss * 1024,
    }
    Path(output).write_text(json.dumps(measurement))
    sys.exit(process.returncode)


def _proc_stat(pid: int) -> tuple[int, float] | None:
    """(parent pid, CPU seconds of the process and of its reaped children), or None if it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = text[text.rindex(")") + 2 :].split()
    # fields[0] is field 3 (state): ppid is field 4, utime..cstime fields 14-17.
    return int(fields[1]), sum(int(value) for value in fields[11:15]) / CLOCK_TICKS


def tree_cpu_seconds(root: int) -> tuple[float, int]:
    """CPU seconds a live process tree has spent so far, and how many processes it has now.

    Each live member's own CPU plus what its children that it has waited for
    spent (cutime/cstime): a run worker that has exited and been reaped by its
    code server is counted in the code server's figure. (A process that exits
    between two reads of /proc may be missed once; ``measure --subreaper``
    gives the exact total at the end.)
    """
    stats, members = process_tree(root)
    return sum(stats[pid][1] for pid in members), len(members)


def process_tree(root: int) -> tuple[dict[int, tuple[int, float]], set[int]]:
    """Every live process's (parent, CPU seconds) from /proc, and the live pids of the tree under ``root``."""
    stats = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = _proc_stat(int(entry))
            if stat is not None:
                stats[int(entry)] = stat
    members = {root}
    grew = True
    while grew:
        grew = False
        for pid, (parent, _) in stats.items():
            if parent in members and pid not in members:
                members.add(pid)
                grew = True
    return stats, members & stats.keys()


def best_runs(runs: list[Run]) -> dict[str, Run]:
    """Each contender's fastest run, in the order the contenders first ran."""
    best: dict[str, Run] = {}
    for run in runs:
        if run.contender not in best or run.seconds < best[run.contender].seconds:
            best[run.contender] = run
    return best


def settle(patience: float, quiet_percent: float = 10.0) -> float:
    """Write back the last run's files, then wait (up to ``patience`` s) for the CPUs to be idle; the busy share.

    On a shared machine a contender would otherwise pay for the previous one's
    disk writeback, or for whatever else just ran. (The load average is no
    guide here: on this VM it stays near 2 with the CPUs 98% idle.)
    """
    import psutil

    os.sync()
    deadline = time.monotonic() + patience
    busy = psutil.cpu_percent(interval=2)
    while busy > quiet_percent and time.monotonic() < deadline:
        busy = psutil.cpu_percent(interval=2)
    return busy


# Contenders' settings --------------------------------------------------------------------------

OUR_VARIABLES = ("SOURCE_", "DESTINATION_", "DB_", "SYNC_", "DAGSTER_", "DATABASE_URL", "MASTODON_ENV_FILE")


def dagster_environment(setup: Setup, bucket: str, extra: dict[str, str], home: Path | None = None) -> dict[str, str]:
    """The environment of a ``mastodon-s3-sync`` run between the current servers, in a fresh DAGSTER_HOME."""
    environment = {name: value for name, value in os.environ.items() if not name.startswith(OUR_VARIABLES)}
    sides = [("DESTINATION", setup.destination, bucket)]
    if setup.from_disk:
        environment["SOURCE_PAPERCLIP_ROOT_PATH"] = str(setup.source_root)
    else:
        sides.append(("SOURCE", setup.source, setup.source_bucket))
    for side, server, name in sides:
        environment |= {
            f"{side}_S3_BUCKET": name,
            f"{side}_S3_ENDPOINT": server.endpoint_url,
            f"{side}_S3_REGION": server.region,
            f"{side}_AWS_ACCESS_KEY_ID": server.access_key,
            f"{side}_AWS_SECRET_ACCESS_KEY": server.secret_key,
        }
    home = home or Path(tempfile.mkdtemp(prefix="dagster-home-", dir=setup.work))
    return environment | {
        "DATABASE_URL": setup.database_url,
        "DESTINATION_S3_PERMISSION": "",  # rclone ignores ACLs
        "DAGSTER_HOME": str(home),
        **extra,
    }


def rclone_environment(setup: Setup) -> dict[str, str]:
    config = setup.work / "rclone.conf"
    config.touch()
    environment = dict(os.environ, RCLONE_CONFIG=str(config))
    for remote, server in (("SRC", setup.source), ("DST", setup.destination)):
        environment |= {
            f"RCLONE_CONFIG_{remote}_TYPE": "s3",
            f"RCLONE_CONFIG_{remote}_PROVIDER": "Other",
            f"RCLONE_CONFIG_{remote}_ENDPOINT": server.endpoint_url,
            f"RCLONE_CONFIG_{remote}_ACCESS_KEY_ID": server.access_key,
            f"RCLONE_CONFIG_{remote}_SECRET_ACCESS_KEY": server.secret_key,
            f"RCLONE_CONFIG_{remote}_FORCE_PATH_STYLE": "true",
        }
    return environment


def rclone_command(setup: Setup, bucket: str, transfers: int, no_traverse: bool) -> list[str]:
    """From a disk source, rclone reads the files directly; ``-M`` (metadata) is left out there, as
    a file's metadata (mode, owner, times) is not what a Mastodon bucket holds."""
    source = str(setup.source_root) if setup.from_disk else f"src:{setup.source_bucket}"
    return [
        str(RCLONE), "copy", "--files-from-raw", str(setup.keys_file), source, f"dst:{bucket}",
        "--transfers", str(transfers), "--checkers", str(transfers), "--no-check-dest",
        *([] if setup.from_disk else ["-M"]), "--s3-no-head", *(["--no-traverse"] if no_traverse else []),
    ]  # fmt: skip


# Buckets ---------------------------------------------------------------------------------------


def bucket_spec(server, name: str) -> dict:
    return {
        "name": name,
        "endpoint_url": server.endpoint_url,
        "region": server.region,
        "access_key_id": server.access_key,
        "secret_access_key": server.secret_key,
    }


def bucket_listing(server, bucket: str) -> dict[str, int]:
    """Key -> size of every object in ``bucket``."""
    sizes: dict[str, int] = {}
    for page in server.client().get_paginator("list_objects_v2").paginate(Bucket=bucket):
        sizes.update({item["Key"]: item["Size"] for item in page.get("Contents", [])})
    return sizes


def destination_contents(setup: Setup, bucket: str) -> tuple[int, int]:
    sizes = bucket_listing(setup.destination, bucket)
    return len(sizes), sum(sizes.values())


def verified(setup: Setup, bucket: str) -> bool:
    """The destination holds exactly the seeded keys with the source's sizes (by count and bytes without
    ``setup.expected_sizes``)."""
    if setup.expected_sizes is None:
        return destination_contents(setup, bucket) == (len(setup.keys), setup.expected_bytes)
    return bucket_listing(setup.destination, bucket) == setup.expected_sizes


def run_measured(
    contender: str,
    setup: Setup,
    command: list[str],
    env: dict[str, str],
    destination_bucket: str,
    busy: float,
    keep_last_line: bool = False,
) -> Run:
    """Run ``command`` to completion under the ``measure`` wrapper, then check the destination."""
    log = setup.work / f"{contender.replace(' ', '_').replace(',', '')}.log"
    measurement = setup.work / "measurement.json"
    servers = setup.servers()
    before = server_cpu(servers)
    with open(log, "wb") as output:
        returncode = subprocess.run(
            measured(measurement, command), stdout=output, stderr=subprocess.STDOUT, env=env, cwd=REPOSITORY
        ).returncode
    spent = server_cpu(servers) - before
    if returncode != 0:
        tail = log.read_text(errors="replace")[-3000:]
        raise SystemExit(f"{contender} exited with {returncode}; end of {log}:\n{tail}")
    usage = json.loads(measurement.read_text())
    return Run(
        contender,
        len(setup.keys),
        setup.expected_bytes,
        usage["seconds"],
        usage["cpu_seconds"],
        usage["peak_rss"],
        spent,
        verified(setup, destination_bucket),
        busy,
        log.read_text(errors="replace").strip().splitlines()[-1] if keep_last_line else "",
    )


def main() -> None:
    if sys.argv[1:2] == ["measure"]:
        subreaper = sys.argv[3:4] == ["--subreaper"]
        return measure(sys.argv[2], sys.argv[4:] if subreaper else sys.argv[3:], subreaper)
    raise SystemExit(f"usage: {sys.argv[0]} measure OUTPUT [--subreaper] COMMAND...")


if __name__ == "__main__":
    main()
