"""The search's Hypothesis side: a failing example shrunk to the smallest that still fails, what it needs.

A campaign ([`refmem.differential.runner`][refmem.differential.runner]) finds the first
failing example of a case among examples drawn deterministically in (seed, index);
[`shrink`][refmem.differential.search.shrink] hands it to Hypothesis, which replays it (from an
in-memory example database holding its choice sequence) and shrinks it toward the smallest
sizes, seed 0, scale 1 and no padded row; [`triggers`][refmem.differential.triggers] names what
the shrunk example needs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

try:
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import seed as hyp_seed
    from hypothesis.database import ExampleDatabase, choices_to_bytes
except ImportError as exc:  # pragma: no cover - hypothesis is a test extra
    raise ImportError("refmem.differential needs Hypothesis: pip install 'refmem[test]'") from exc

from ..catalogue import Case
from ..golden.adapters import Adapter
from ..golden.comparison import Report
from .comparison import judge
from .drawing import SCALES, Example, Unsampleable, _mask_key, edge_of, examples_for, sizes_limits
from .reference import Live, Undecidable, float32_undecidable, live_golden

__all__ = ["CaseResult", "Result", "shrink", "triggers"]


@dataclass
class CaseResult:
    """The outcome of one case: its report, how many examples ran (refused ones included), the shrunk
    failing example (``None`` when it passed), the reproducer written (if any), the examples refused
    by the case's sampler or the tolerance rule, and the calls the shrinking made."""

    case: str
    report: Report
    examples: int = 0
    failing: Example | None = None
    reproducer: Path | None = None
    unsampleable: int = 0
    invariance: list[str] = field(default_factory=list)
    triggers: list[str] = field(default_factory=list)
    shrink_calls: int = 0

    @property
    def passed(self) -> bool:
        return self.report.passed


@dataclass
class Result:
    """Every case's [`CaseResult`][refmem.differential.CaseResult], their combined report, and the
    campaign's examples (one record per counted example: case, index, status, time split)."""

    cases: list[CaseResult]
    report: Report
    examples: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    workers: int = 1
    resumed: int = 0

    @property
    def passed(self) -> bool:
        return self.report.passed

    def meta(self) -> dict[str, Any]:
        return {c.case: {"examples": c.examples, "unsampleable": c.unsampleable,
                         "failing": None if c.failing is None else c.failing.to_json(), "needs": c.triggers,
                         "reproducer": None if c.reproducer is None else str(c.reproducer),
                         "shrink_calls": c.shrink_calls} for c in self.cases}


def _worst(report: Report) -> float:
    ratios = [r.ratio for r in report.rows if r.ratio == r.ratio]
    return max(ratios) if ratios else 0.0


def choices(case: Case, example: Example, min_batch: int = 1) -> list:
    """The choice sequence under which [`examples_for`][refmem.differential.examples_for]``(case, min_batch)``
    draws ``example``: each size letter, the seed, the scale's index (where the case has an edge) and
    one flag per batch row (where it has a mask)."""
    out: list = [int(example.sizes[letter]) for letter in sizes_limits(case)]
    out.append(int(example.seed))
    if edge_of(case) is not None:
        out.append(SCALES.index(int(example.scale)))
    if _mask_key(case) is not None and "B" in example.sizes:
        out.extend(b in example.padded for b in range(int(example.sizes["B"])))
    return out


class _Replay(ExampleDatabase):
    """A read-only example database holding one choice sequence: what Hypothesis replays, then shrinks."""

    def __init__(self, value: bytes):
        super().__init__()
        self.value = value

    def fetch(self, key: bytes):
        # Offered as a not-yet-minimal example of a bug (the secondary corpus): Hypothesis replays it and
        # shrinks it (a primary-corpus example counts as already shrunk and is not shrunk again).
        if key.endswith(b".secondary"):
            yield self.value

    def save(self, key: bytes, value: bytes) -> None:
        pass

    def delete(self, key: bytes, value: bytes) -> None:
        pass


def shrink(adapter: Adapter, case: Case, example: Example, dtype: str = "float64", seed: int = 0,
           invariance: bool = False) -> tuple[Example, Live | None, Report, list[str], int] | None:
    """Shrink the failing ``example`` with Hypothesis: ``(smallest failing example, its live reference
    (``None`` when refmem itself failed there), its report, its batch-invariance problems, calls made)``,
    or ``None`` when Hypothesis did not see ``example`` fail again (a flaky adapter)."""
    state: dict[str, Any] = {"n": 0, "fail": None, "first": None}

    def test(ex: Example) -> None:
        state["n"] += 1
        if state["first"] is None:
            state["first"] = ex
        try:
            live = live_golden(case, ex, runs=0)  # the free bound; a failure is judged by the exact rule
            if dtype == "float32" and float32_undecidable(live):
                return
            report, live, inv = judge(adapter, case, ex, dtype, live, invariance)
        except (Unsampleable, Undecidable):
            return  # not a failure of the adapter: the shrinker moves on
        except Exception as exc:  # noqa: BLE001 - refmem itself failed here
            report = Report()
            report.problems.append(f"{case.name}: refmem failed at this example: {type(exc).__name__}: {exc}")
            state["fail"] = (ex, None, report, [])
            raise AssertionError(report.problems[0]) from exc
        if not report.passed or inv:
            state["fail"] = (ex, live, report, inv)
            raise AssertionError(report.failure_text(case.name) or "\n".join(inv))

    min_batch = 2 if invariance else 1
    runner = given(examples_for(case, min_batch=min_batch))(test)
    runner = hyp_seed(seed)(runner)  # the shrinker's own random choices; before settings, which keep the database
    runner = settings(max_examples=1000, deadline=None, database=_Replay(choices_to_bytes(choices(case, example, min_batch))),
                      derandomize=False, phases=(Phase.reuse, Phase.shrink), print_blob=False,
                      suppress_health_check=list(HealthCheck))(runner)
    try:
        runner()
    except Exception:  # noqa: BLE001 - the shrunk failure Hypothesis re-raises (or reports as flaky)
        if state["fail"] is None:
            raise
    if state["fail"] is None or state["first"] != example:
        return None
    ex, live, report, inv = state["fail"]
    return ex, live, report, inv, state["n"]


def _passes(adapter: Adapter, case: Case, example: Example, dtype: str, invariance: bool,
            arrays: dict | None = None) -> bool | None:
    """Whether ``adapter`` passes at ``example`` (``None``: not drawable or not decidable there)."""
    try:
        live = live_golden(case, example, arrays, runs=0)
        if dtype == "float32" and float32_undecidable(live):
            return None
        report, _, inv = judge(adapter, case, example, dtype, live, invariance)
    except Exception:  # noqa: BLE001 - not drawable or not decidable there: says nothing
        return None
    return report.passed and not inv


def _extended(case: Case, example: Example, batch: int) -> tuple[Example, dict] | None:
    """``example`` grown to ``batch`` rows: its own rows first, unchanged, then rows of another draw
    (the same example at the other batch size), or ``None`` where the case has no batch rows to grow."""
    from .drawing import draw_inputs

    small = dict(example.sizes)
    B = int(small.get("B", 0))
    if not 0 < B < batch:
        return None
    big = Example(case.name, {**small, "B": batch}, example.seed, example.scale, example.padded)
    try:
        rows, arrays = draw_inputs(case, example), draw_inputs(case, big)
    except Exception:  # noqa: BLE001 - not drawable at the other size
        return None
    for k, v in rows.items():
        if np.ndim(v) and np.shape(v)[0] == B and not k.startswith("params/"):
            if np.shape(arrays[k])[0] != batch:
                return None
            grown = np.array(arrays[k], copy=True)
            grown[:B] = v
            arrays[k] = grown
        else:
            arrays[k] = v  # params and unbatched tensors: the example's own
    return big, arrays


#: Seeds a size hint is checked at: the shrunk example's and the next ones.
HINT_SEEDS = 3


def triggers(adapter: Adapter, case: Case, example: Example, dtype: str = "float64",
             invariance: bool = False) -> list[str]:
    """What of the shrunk ``example`` the failure needs, e.g. ``"R=1 (passes at R=2)"``: a value of it
    that, moved back to the case's default alone, makes the failure go away, on the same example.

    * ``B``: the example grown to the default batch (its rows unchanged, then others) passes;
    * another size letter (a different size draws different values): at the example's seed and
      the next ones ([`HINT_SEEDS`][refmem.differential.search.HINT_SEEDS] in all, at least two
      drawable), the shrunk size fails every time and the default size passes every time, so a
      value-dependent bug that a different draw merely hides gets no size hint;
    * the scale and the padded rows: the same draw at scale 1, or without padded rows, passes.
    """
    out = []
    for letter, value in example.sizes.items():
        default = int(case.sizes[letter])
        if value == default:
            continue
        what = f"{letter}={value} (passes at {letter}={default})"
        if letter == "B" and default > value:
            grown = _extended(case, example, default)
            if grown is not None:
                if _passes(adapter, case, grown[0], dtype, invariance, grown[1]):
                    out.append(what)
                continue
        checked, holds = 0, True
        for seed in range(example.seed, example.seed + HINT_SEEDS):
            here = Example(case.name, example.sizes, seed, example.scale, example.padded)
            sizes = {**example.sizes, letter: default}
            there = Example(case.name, sizes, seed, example.scale,
                            tuple(b for b in example.padded if b < sizes.get("B", 0)))
            fails = False if seed == example.seed else _passes(adapter, case, here, dtype, invariance)
            passes = _passes(adapter, case, there, dtype, invariance)
            if fails is None or passes is None:
                continue
            checked += 1
            if fails or not passes:
                holds = False
                break
        if holds and checked >= 2:
            out.append(what)
    if example.scale != 1:
        if _passes(adapter, case, Example(case.name, example.sizes, example.seed, 1, example.padded), dtype, invariance):
            out.append(f"scale {example.scale} (passes at scale 1)")
    if example.padded:
        if _passes(adapter, case, Example(case.name, example.sizes, example.seed, example.scale, ()), dtype, invariance):
            out.append(f"fully padded rows {list(example.padded)} (passes without)")
    return out
