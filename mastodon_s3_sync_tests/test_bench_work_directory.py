"""The benchmarks' work directories (benchmarks/bench_common.py ``work_directory``): removed on SIGTERM; and /dev/shm is memory, so
what a benchmark killed outright (SIGKILL, the OOM killer) left there, and the servers still running on it,
are removed by the next benchmark; a directory whose benchmark still runs is left alone."""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
from contextlib import ExitStack
from pathlib import Path

_spec = importlib.util.spec_from_file_location(
    "bench_common", Path(__file__).resolve().parent.parent / "benchmarks" / "bench_common.py"
)
bench_common = sys.modules.setdefault("bench_common", importlib.util.module_from_spec(_spec))
_spec.loader.exec_module(bench_common)


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_leftovers_of_killed_benchmarks_and_their_servers_are_removed_a_running_ones_kept(tmp_path):
    stale = tmp_path / f"bench-latency-pid{dead_pid()}-abc"
    (stale / "source" / "bucket").mkdir(parents=True)
    (stale / "source" / "bucket" / "object").write_bytes(b"x" * 1000)
    server = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", str(stale / "source")])
    running = tmp_path / f"bench-copy-pid{os.getpid()}-def"
    running.mkdir()
    other = tmp_path / "not-a-benchmark"
    other.mkdir()
    handler = signal.getsignal(signal.SIGTERM)  # work_directory sets one that cleans up; not pytest's to keep
    try:
        with ExitStack() as stack:
            work = bench_common.work_directory(stack, "bench-e2e-", str(tmp_path))
            assert work.is_dir() and work.name.startswith(f"bench-e2e-pid{os.getpid()}-")
            assert server.wait(10) == -9, "the killed benchmark's server is stopped"
            assert sorted(path.name for path in tmp_path.iterdir()) == sorted([work.name, running.name, other.name])
        assert not work.exists()
    finally:
        signal.signal(signal.SIGTERM, handler)
        server.kill()
        server.wait()


def test_sigterm_unwinds_and_removes_the_directory(tmp_path):
    # as from a shell: an ignored or blocked SIGTERM is inherited, and a test before may have left pytest's so
    script = f"""
import signal, sys, time
from contextlib import ExitStack
signal.signal(signal.SIGTERM, signal.SIG_DFL)
signal.pthread_sigmask(signal.SIG_UNBLOCK, {{signal.SIGTERM}})
sys.path.insert(0, {str(Path(bench_common.__file__).parent)!r})
import bench_common
with ExitStack() as stack:
    work = bench_common.work_directory(stack, "bench-test-", {str(tmp_path)!r})
    (work / "file").write_bytes(b"x" * 1000)
    print(work, flush=True)
    time.sleep(60)
"""
    benchmark = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    work = Path(benchmark.stdout.readline().strip())
    assert (work / "file").is_file()
    status = dict(line.split(":\t", 1) for line in Path(f"/proc/{benchmark.pid}/status").read_text().splitlines())
    assert int(status["SigCgt"], 16) & 1 << (signal.SIGTERM - 1), f"no SIGTERM handler: {status}"
    benchmark.send_signal(signal.SIGTERM)
    assert benchmark.wait(30) != 0
    assert "Terminated: SIGTERM" in benchmark.stderr.read()
    assert list(tmp_path.iterdir()) == []
