"""What the implementation modules share: the skip signal, timing and the examples loader."""

from __future__ import annotations

import importlib.util
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent


class Skip(Exception):
    """A benchmark that cannot run here (framework or model missing); the message says why."""


def median_time(fn: Callable[[], object], repeats: int, warmup: int = 1) -> tuple[float, list[float]]:
    """Median wall time of ``fn()`` over ``repeats`` calls after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), times


def example(name: str):
    """``examples/<name>.py`` of this checkout (the golden engineer's framework adapters), loaded by path.

    Raises :class:`Skip` when the file is missing or its framework is not installed.
    """
    key = f"_refmem_examples_{name}"
    if key in sys.modules:
        return sys.modules[key]
    path = ROOT / "examples" / f"{name}.py"
    if not path.exists():
        raise Skip(f"examples/{name}.py not found")
    spec = importlib.util.spec_from_file_location(key, path)
    mod = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(mod)
    except ImportError as exc:
        raise Skip(f"examples/{name}.py: {exc}") from exc
    sys.modules[key] = mod
    return mod
