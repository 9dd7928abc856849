"""The benchmarks' latency proxy (``benchmarks/latency_proxy.py``), imported for the tests that run behind it."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

_spec = importlib.util.spec_from_file_location(
    "latency_proxy", Path(__file__).resolve().parents[2] / "benchmarks" / "latency_proxy.py"
)
latency_proxy = sys.modules.setdefault("latency_proxy", importlib.util.module_from_spec(_spec))
_spec.loader.exec_module(latency_proxy)
