"""What the verify benchmark's memory figures rest on (benchmarks/bench_verify_memory.py).

Its first figures took ``wait4``'s peak RSS of the ``verify`` it started, which counts the
benchmark's own memory (the kernel keeps the starting process's high-water mark across ``exec``):
the benchmark grows as it seeds, so ``verify`` seemed to grow 0.4 kB per object. ``verify`` itself
stays flat. These tests pin the measurement down: the peak is the measured command's own, and the
growth is a slope fitted over the run's second half.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location(
    "bench_verify_memory", Path(__file__).resolve().parent.parent / "benchmarks" / "bench_verify_memory.py"
)
bench_verify_memory = sys.modules.setdefault("bench_verify_memory", importlib.util.module_from_spec(_spec))
_spec.loader.exec_module(bench_verify_memory)

MB = 1_000_000
ALLOCATES_50_MB = [sys.executable, "-c", "memory = bytearray(b'1') * 50_000_000"]


def linear(kb_per_object: float) -> list[tuple[int, int]]:
    return [(objects, 40_000 + round(kb_per_object * objects)) for objects in range(10_000, 160_001, 10_000)]


@pytest.mark.parametrize(
    ("samples", "growth"),
    [
        ([], None),
        ([(10_000, 50_000), (20_000, 50_100)], None),  # too few to fit
        ([(objects, 50_000) for objects in range(10_000, 100_001, 10_000)], 0.0),
        # the first half grows once (the allocator's pools settling), the second is flat
        (
            [
                (10_000, 40_000),
                (20_000, 46_000),
                (30_000, 49_000),
                (40_000, 50_000),
                (60_000, 50_000),
                (80_000, 50_000),
            ],
            0.0,
        ),
        (linear(0.4), 400.0),  # what the first figures showed (90 MB at 40k objects, 139 MB at 160k)
        (linear(0.005), 5.0),
    ],
)
def test_rss_growth_is_kb_per_1000_objects_over_the_second_half(samples, growth) -> None:
    found = bench_verify_memory.rss_growth(samples)
    assert (found is None) if growth is None else found == pytest.approx(growth, abs=0.05)


def test_the_peak_rss_is_the_commands_own_not_the_benchmarks(monkeypatch) -> None:
    """With 400 MB held here, a command that allocates 50 MB peaks at about 50 MB; ``wait4`` on the
    same command started from here says 400 MB or more (the figure the first table showed)."""
    held = bytearray(b"1") * (400 * MB)
    monkeypatch.setattr(bench_verify_memory, "VERIFY", ALLOCATES_50_MB)

    run = bench_verify_memory.run_verify(dict(os.environ))

    started_here = subprocess.Popen(ALLOCATES_50_MB)
    _, status, usage = os.wait4(started_here.pid, 0)
    del held
    assert run.exit_code == 0 and os.waitstatus_to_exitcode(status) == 0
    assert 50 * MB <= run.peak_rss < 150 * MB
    assert usage.ru_maxrss * 1024 >= 400 * MB
