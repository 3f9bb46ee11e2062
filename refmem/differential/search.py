"""The search: Hypothesis draws examples of a case, a failure is shrunk and reported."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

try:
    from hypothesis import HealthCheck, Phase, given, reject, settings
    from hypothesis import seed as hyp_seed
    from hypothesis.errors import Unsatisfiable
except ImportError as exc:  # pragma: no cover - hypothesis is a test extra
    raise ImportError("refmem.differential needs Hypothesis: pip install 'refmem[test]'") from exc

from .. import catalogue
from ..catalogue import Case
from ..golden.adapters import Adapter, load_adapter
from ..golden.comparison import Report
from ..golden.storage import GoldenError
from ..golden.tolerances import DTYPES
from .comparison import batch_invariance, check_example
from .drawing import Example, Unsampleable, examples_for
from .reference import Undecidable, float32_undecidable, live_golden
from .reproducers import save_reproducer

__all__ = ["CaseResult", "Result", "run_case", "triggers", "select_cases", "differential"]


@dataclass
class CaseResult:
    """The outcome of one case: its report, how many examples ran, the shrunk failing example
    (``None`` when it passed), the reproducer written (if any) and the examples refused by the
    case's sampler."""

    case: str
    report: Report
    examples: int = 0
    failing: Example | None = None
    reproducer: Path | None = None
    unsampleable: int = 0
    invariance: list[str] = field(default_factory=list)
    triggers: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.report.passed


@dataclass
class Result:
    """Every case's [`CaseResult`][refmem.differential.CaseResult] and their combined report."""

    cases: list[CaseResult]
    report: Report

    @property
    def passed(self) -> bool:
        return self.report.passed

    def meta(self) -> dict[str, Any]:
        return {c.case: {"examples": c.examples, "unsampleable": c.unsampleable,
                         "failing": None if c.failing is None else c.failing.to_json(), "needs": c.triggers,
                         "reproducer": None if c.reproducer is None else str(c.reproducer)} for c in self.cases}


def _worst(report: Report) -> float:
    ratios = [r.ratio for r in report.rows if r.ratio == r.ratio]
    return max(ratios) if ratios else 0.0


def run_case(adapter: Adapter, case: Case, dtype: str = "float64", max_examples: int = 100, seed: int = 0,
             save_dir: str | Path | None = None, invariance: bool = False) -> CaseResult:
    """Search ``max_examples`` examples of ``case`` for one where ``adapter`` disagrees with live refmem
    (and, with ``invariance``, where it is not batch invariant); shrink it; report it.

    A passing case's report holds the rows of its closest call (the example of the largest
    error ratio), each noted with the example. A failing case's report holds the shrunk
    example's rows, first divergence and a problem naming the example and its reproducer.
    """
    state: dict[str, Any] = {"n": 0, "bad": 0, "worst": None, "fail": None}

    def test(example: Example) -> None:
        state["n"] += 1
        try:
            live = live_golden(case, example)
        except (Unsampleable, Undecidable):
            state["bad"] += 1
            reject()
        except Exception as exc:  # noqa: BLE001 - refmem itself failed here: report it, shrunk
            report = Report()
            report.problems.append(f"{case.name}: refmem failed at this example: {type(exc).__name__}: {exc}")
            state["fail"] = (example, None, report, [])
            raise AssertionError(report.problems[0]) from exc
        if dtype == "float32" and float32_undecidable(live):
            state["bad"] += 1
            reject()
        report, _ = check_example(adapter, case, example, dtype, live)
        inv = batch_invariance(adapter, case, example, dtype, live) if (invariance and report.passed) else []
        if not report.passed or inv:
            state["fail"] = (example, live, report, inv)
            raise AssertionError(report.failure_text(case.name) or "\n".join(inv))
        if state["worst"] is None or _worst(report) > _worst(state["worst"][1]):
            state["worst"] = (example, report)

    runner = given(examples_for(case, min_batch=2 if invariance else 1))(test)
    runner = settings(max_examples=max_examples, deadline=None, database=None, derandomize=False,
                      phases=(Phase.generate, Phase.shrink), print_blob=False,
                      suppress_health_check=list(HealthCheck))(runner)
    runner = hyp_seed(seed)(runner)
    result = CaseResult(case.name, Report())
    try:
        runner()
    except Unsatisfiable:
        result.report.problems.append(f"{case.name}: the case's sampler refused every drawn example")
    except Exception:  # noqa: BLE001 - the shrunk failure Hypothesis re-raises (or reports as flaky)
        if state["fail"] is None:
            raise
    result.examples, result.unsampleable = state["n"], state["bad"]
    if state["fail"] is not None:
        example, live, report, inv = state["fail"]
        result.failing, result.invariance = example, list(inv)
        result.report.extend(report)
        result.report.problems.extend(inv)
        where = ""
        if save_dir is not None and live is not None:
            result.reproducer = save_reproducer(save_dir, live)
            where = f"; reproducer {result.reproducer} (refmem golden verify --dir {save_dir})"
        result.triggers = triggers(adapter, case, example, dtype, invariance) if live is not None else []
        needs = f"; it needs {', '.join(result.triggers)}" if result.triggers else ""
        result.report.problems.append(f"{case.name}: differential ({dtype}): fails at {example.describe()}"
                                      f" (shrunk, {state['n']} examples run){needs}{where}")
    elif state["worst"] is not None:
        example, report = state["worst"]
        for row in report.rows:
            row.note = f"closest of {state['n']} examples: {example.describe()}"
        result.report.extend(report)
    return result


def triggers(adapter: Adapter, case: Case, example: Example, dtype: str = "float64",
             invariance: bool = False) -> list[str]:
    """What of the shrunk ``example`` the failure needs: for each size letter (then the scale, then
    the padded rows), the example with just that one moved back to the case's default still
    fails or not; those whose move makes it pass are listed, e.g. ``"R=1 (passes at R=2)"``."""
    out = []
    variants: list[tuple[str, Example]] = []
    for letter, value in example.sizes.items():
        default = int(case.sizes[letter])
        if value != default:
            sizes = {**example.sizes, letter: default}
            padded = tuple(b for b in example.padded if b < sizes.get("B", 0))
            variants.append((f"{letter}={value} (passes at {letter}={default})",
                             Example(case.name, sizes, example.seed, example.scale, padded)))
    if example.scale != 1:
        variants.append((f"scale {example.scale} (passes at scale 1)",
                         Example(case.name, example.sizes, example.seed, 1, example.padded)))
    if example.padded:
        variants.append((f"fully padded rows {list(example.padded)} (passes without)",
                         Example(case.name, example.sizes, example.seed, example.scale, ())))
    for what, ex in variants:
        try:
            live = live_golden(case, ex)
        except Exception:  # noqa: BLE001 - not drawable there: says nothing
            continue
        report, _ = check_example(adapter, case, ex, dtype, live)
        inv = batch_invariance(adapter, case, ex, dtype, live) if (invariance and report.passed) else []
        if report.passed and not inv:
            out.append(what)
    return out


def select_cases(adapter: Adapter, patterns: Sequence[str] | None = None) -> list[Case]:
    """The catalogue cases ``adapter`` declares, narrowed by ``patterns`` (fnmatch or substring)."""
    chosen = [c for c in catalogue.cases() if adapter.implements(c.name)]
    if patterns:
        chosen = [c for c in chosen if any(fnmatch.fnmatchcase(c.name, p) or p in c.name for p in patterns)]
    return chosen


def differential(adapter: Adapter | str, patterns: Sequence[str] | str | None = None, dtype: str = "float64",
                 max_examples: int = 100, seed: int = 0, save_dir: str | Path | None = None,
                 invariance: bool = False, on_case: Callable[[CaseResult], None] | None = None) -> Result:
    """[`run_case`][refmem.differential.run_case] for every catalogue case ``adapter`` declares (narrowed by ``patterns``).

    Raises [`GoldenError`][refmem.golden.GoldenError] for a bad dtype or when no case matches.
    """
    if dtype not in DTYPES:
        raise GoldenError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    if isinstance(adapter, str):
        adapter = load_adapter(adapter)
    if isinstance(patterns, str):
        patterns = [patterns]
    chosen = select_cases(adapter, patterns)
    if not chosen:
        raise GoldenError(f"adapter {adapter.spec}: no catalogue case matches {list(adapter.patterns)}"
                          + (f" and {list(patterns)}" if patterns else ""))
    results, report = [], Report()
    for case in chosen:
        r = run_case(adapter, case, dtype, max_examples, seed, save_dir, invariance)
        results.append(r)
        report.extend(r.report)
        if on_case is not None:
            on_case(r)
    return Result(results, report)
