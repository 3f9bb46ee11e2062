"""Where an example's time goes: drawing, reference, tolerances, adapter, comparison."""

from __future__ import annotations

import time
from typing import Iterable, Mapping, Sequence

__all__ = ["PARTS", "Clock", "split_summary"]

#: The parts of an example's time, in the order they happen. refmem's own share is all but the adapter.
PARTS = ("draw", "reference", "tolerances", "adapter", "comparison")


class Clock:
    """Adds the seconds since the last lap to ``timings[part]`` (nothing when ``timings`` is ``None``)."""

    def __init__(self, timings: dict[str, float] | None):
        self.timings = timings
        self.last = time.perf_counter()

    def lap(self, part: str) -> None:
        now = time.perf_counter()
        if self.timings is not None:
            self.timings[part] = self.timings.get(part, 0.0) + (now - self.last)
        self.last = now


def _quantile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    pos = q * (len(ordered) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def split_summary(splits: Iterable[Mapping[str, float]]) -> dict[str, dict[str, float]]:
    """``part -> {"median": s, "p90": s}`` over the examples' splits, and ``"refmem"`` (all but the adapter)."""
    rows = [dict(s) for s in splits]
    out = {}
    for part in (*PARTS, "refmem"):
        if part == "refmem":
            values = [sum(v for k, v in r.items() if k != "adapter") for r in rows]
        else:
            values = [r.get(part, 0.0) for r in rows]
        out[part] = {"median": _quantile(values, 0.5), "p90": _quantile(values, 0.9)}
    return out
