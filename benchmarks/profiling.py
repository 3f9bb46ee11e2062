"""Where the time of a benchmark goes: a cProfile of one refmem forward+backward, the array
operations it makes per step, and the bytes they move.

* [`profile`][] runs cProfile over one forward+backward on NumPy (Python calls).
* [`count_ops`][] runs the same forward+backward on array-api-strict, whose operators and
  functions are Python functions, and counts every call that refmem's code makes into the array
  namespace or onto an array (``xp.sum``, ``a * b``, ``a[:, None]``, ``a @ b``, in-place ``+=``);
  calls the namespace makes internally, and metadata (``.shape``, ``.dtype``), are not counted.
  It also adds up the bytes each operation reads (its array operands, each once) and writes (its
  result): the compulsory traffic of the step if every operation streamed its operands through
  memory once, which the memory bandwidth turns into a lower bound on the time. Views (reshape,
  permute_dims, basic indexing, broadcast_to) move nothing; an assignment `x[key] = value` moves
  the value's bytes twice (read, then written into `x`), a scalar value none.
"""

from __future__ import annotations

import cProfile
import io
import os
import pstats
import sys
import time
from collections import Counter
from typing import Any

from . import impl_refmem
from .configs import Bench

METADATA = frozenset({"shape", "dtype", "ndim", "device", "size", "__array_namespace__", "__len__", "__hash__",
                      "__repr__", "__str__", "__dlpack__", "__dlpack_device__", "to_device"})
"""Calls that ask about an array without computing anything: not counted."""
VIEWS = frozenset({"reshape", "permute_dims", "__getitem__", "matrix_transpose", "mT", "T", "broadcast_to",
                   "expand_dims", "squeeze"})
"""Operations that are views on NumPy: counted as operations, moving no bytes."""


def profile(bench: Bench, dtype: str = "float64", top: int = 25, sort: str = "tottime") -> str:
    """The ``top`` functions of one forward+backward (after one warm-up call), as text."""
    step = impl_refmem.build(bench, dtype)
    step()
    prof = cProfile.Profile()
    prof.enable()
    step()
    prof.disable()
    buf = io.StringIO()
    pstats.Stats(prof, stream=buf).strip_dirs().sort_stats(sort).print_stats(top)
    return buf.getvalue()


def python_calls(bench: Bench, dtype: str = "float64") -> int:
    """The function calls (Python and C, as cProfile counts them) of one forward+backward on NumPy."""
    step = impl_refmem.build(bench, dtype)
    step()
    prof = cProfile.Profile()
    prof.enable()
    step()
    prof.disable()
    return int(pstats.Stats(prof).total_calls)


def _nbytes(value: Any, Array: type) -> list:
    """The arrays of ``value`` (an array, or a list or tuple of them)."""
    if type(value) is Array:
        return [value]
    if type(value) in (list, tuple):
        return [v for v in value if type(v) is Array]
    return []


def count_ops(bench: Bench, dtype: str = "float64") -> dict:
    """Array operations and bytes moved by one forward+backward of ``bench`` on array-api-strict.

    Returns ``{"ops": total, "by_name": Counter, "bytes_by_name": Counter, "bytes_read",
    "bytes_written", "steps": T, "seconds": the counted run's wall time}``.
    """
    import array_api_strict

    Array = type(array_api_strict.asarray([0.0]))
    strict_dir = os.path.dirname(array_api_strict.__file__) + os.sep
    import refmem
    model_dir = os.path.dirname(refmem.__file__) + os.sep
    skip_files = tuple(strict_dir + f for f in ("_dtypes.py", "_flags.py", "_info.py", "_devices.py"))
    step = impl_refmem.build(bench, dtype, backend="array_api_strict")
    step()  # warm-up: imports and caches
    by_name: Counter = Counter()
    read = [0]
    written = [0]
    bytes_by_name: Counter = Counter()
    open_frames: dict[int, str] = {}

    def hook(frame, event, arg):
        if event == "call":
            code = frame.f_code
            fn = code.co_filename
            if not fn.startswith(strict_dir) or fn.startswith(skip_files):
                return
            back = frame.f_back
            if back is None or not back.f_code.co_filename.startswith(model_dir):
                return
            name = code.co_name
            if name in METADATA or (name.startswith("_") and not name.startswith("__")):
                return
            local = frame.f_locals
            if name in ("func", "inner"):  # array-api-strict's elementwise functions share two wrappers
                name = str(local.get("func_name", "elementwise"))
            by_name[name] += 1
            if name in VIEWS:
                return
            seen = {}
            for key, v in local.items():
                if name == "__setitem__" and key != "value":  # writes the selected elements only
                    continue
                for a in _nbytes(v, Array):
                    seen[id(a)] = a._array.nbytes
            n = sum(seen.values())
            read[0] += n
            bytes_by_name[name] += n
            if name == "__setitem__":
                written[0] += n
                bytes_by_name[name] += n
                return
            open_frames[id(frame)] = name
        elif event == "return":
            name = open_frames.pop(id(frame), None)
            if name is not None:
                n = sum(a._array.nbytes for a in _nbytes(arg, Array))
                written[0] += n
                bytes_by_name[name] += n

    t0 = time.perf_counter()
    sys.setprofile(hook)
    try:
        step()
    finally:
        sys.setprofile(None)
    return {"ops": sum(by_name.values()), "by_name": by_name, "bytes_by_name": bytes_by_name, "bytes_read": read[0], "bytes_written": written[0],
            "steps": int(bench.sizes.get("T", 1)), "seconds": time.perf_counter() - t0}


def per_step(bench: Bench, dtype: str = "float64", short: int = 2, long: int = 4) -> dict:
    """What one more time step costs: ``count_ops`` of ``bench`` at ``T = long`` minus at ``T = short``,
    divided by the difference (the unroll's per-sequence work, the first step's zero state and the
    stacking of the outputs cancel). Keys ``ops``, ``by_name``, ``bytes_by_name``, ``bytes_read``,
    ``bytes_written`` (per step)."""
    runs = [count_ops(Bench(bench.name, bench.model, {**bench.sizes, "T": T}), dtype) for T in (short, long)]
    d = long - short
    out = {k: (runs[1][k] - runs[0][k]) / d for k in ("ops", "bytes_read", "bytes_written")}
    for k in ("by_name", "bytes_by_name"):
        names = set(runs[0][k]) | set(runs[1][k])
        out[k] = Counter({n: (runs[1][k][n] - runs[0][k][n]) / d for n in names})
    return out


def copy_bandwidth(megabytes: int = 256, repeats: int = 5) -> float:
    """Bytes per second of a NumPy copy of a ``megabytes`` array (read once, written once), the best
    of ``repeats``: the memory bandwidth one thread reaches on this machine."""
    import numpy as np

    a = np.ones(megabytes * 2**20 // 8)
    b = np.empty_like(a)
    np.copyto(b, a)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        np.copyto(b, a)
        best = min(best, time.perf_counter() - t0)
    return 2 * a.nbytes / best


def report(bench: Bench, dtype: str = "float64") -> str:
    """The lines ``refmem bench --profile`` prints after the cProfile table: array operations per
    step (counted on array-api-strict), Python calls (cProfile on NumPy) and bytes moved per step."""
    c = per_step(bench, dtype)
    calls = python_calls(bench, dtype)
    T = int(bench.sizes.get("T", 1))
    moved = c["bytes_read"] + c["bytes_written"]
    top = ", ".join(f"{k} {v:.0f}" for k, v in c["by_name"].most_common(14))
    heavy = ", ".join(f"{k} {v / 1e6:.2f}" for k, v in c["bytes_by_name"].most_common(8))
    return (f"array operations per step (forward+backward, {dtype}): {c['ops']:.0f}\n"
            f"Python calls per forward+backward (T = {T}): {calls} ({calls / T:.0f} per step)\n"
            f"bytes moved per step: {moved / 1e6:.2f} MB (read {c['bytes_read'] / 1e6:.2f}, "
            f"written {c['bytes_written'] / 1e6:.2f})\n"
            f"operations per step by name: {top}\n"
            f"MB per step by operation: {heavy}")
