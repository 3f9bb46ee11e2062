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


def median_times(fn: Callable[[], object], repeats: int) -> tuple[float, list[float], float, list[float]]:
    """``(wall median, wall times, CPU median, CPU times)`` of ``fn()`` over ``repeats`` calls.

    The CPU time is the process's (``time.process_time``: every thread, so XLA's and torch's
    workers count): on a machine shared with other jobs it leaves out the time the process
    waited for a core, which the wall time includes.
    """
    wall, cpu = [], []
    for _ in range(max(1, repeats)):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return statistics.median(wall), wall, statistics.median(cpu), cpu


def example(name: str):
    """``examples/<name>.py`` of this checkout (the golden engineer's framework adapters), loaded by path.

    Raises ``Skip`` when the file is missing or its framework is not installed.
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
