"""Comparing an adapter with the live reference: one example by the golden rules, and batch invariance."""

from __future__ import annotations

import time
from typing import Any, Mapping, Sequence

import numpy as np

from .. import catalogue
from .. import forward_mode as fm
from .. import xp as rx
from ..catalogue import Case
from ..golden.adapters import Adapter
from ..golden.comparison import Report, compare
from ..golden.isolated import call_adapter
from ..golden.storage import role_of
from .drawing import Example, Unsampleable, _mask_key, draw_inputs
from .reference import Live, Undecidable, float64_undecidable, live_golden
from .timing import Clock

__all__ = ["check_example", "judge", "batch_invariance"]


def _call(adapter: Adapter, name: str, given: dict, dtype: str, config: dict) -> tuple[Mapping | None, str]:
    """The adapter's results on ``given`` (its own copy), or ``None`` and the reason it gave none."""
    return call_adapter(adapter, name, given, dtype, config)


#: Roles an adapter may return that differential testing does not compare: the live reference holds
#: no forward-mode tensors (``refmem golden verify`` compares them against the goldens).
NOT_COMPARED = ("jvp", "hvp")


def given_of(case: Case, live: Live, dtype: str) -> dict[str, np.ndarray]:
    """What the adapter is given for ``live``: inputs, params, state and cotangents (floats cast to
    ``dtype``) and, as examples/README.md documents, one tangent per differentiable tensor
    (``tangents/<role>/<name>``, [`tangents_for`][refmem.forward_mode.tangents_for] at the example's seed)."""
    given = live.golden.given(dtype)
    if not any(k.startswith("tangents/") for k in given):
        arrays = {k: v for k, v in live.tensors.items() if role_of(k) in catalogue.ROLES}
        np_dtype = np.dtype(dtype)
        for k, v in fm.tangents_for(arrays, case.differentiable(arrays), live.golden.seed).items():
            given[f"tangents/{k}"] = v.astype(np_dtype)
    return given


def compared(results: Mapping[str, Any]) -> dict[str, Any]:
    """``results`` without the forward-mode tensors (``NOT_COMPARED``) an adapter may return."""
    return {k: v for k, v in results.items() if not (isinstance(k, str) and role_of(k) in NOT_COMPARED)}


def check_example(adapter: Adapter, case: Case, example: Example, dtype: str = "float64",
                  live: Live | None = None, timings: dict[str, float] | None = None) -> tuple[Report, Live]:
    """Run ``adapter`` on ``example`` and compare with the live reference by the golden rules.

    With a ``live`` whose tolerances are a lower bound (``live_golden(..., runs=0)``), a result
    within them passes; one that is not is compared again under the bound of the round-to-nearest
    run, then under the exact tolerances ([`Live.refined`][refmem.differential.Live.refined], which
    may raise [`Undecidable`][refmem.differential.Undecidable]), so the verdict is the exact rule's.
    Returns the report and the live reference it was judged by.

    ``timings``: seconds are added to its ``"adapter"`` and ``"comparison"`` entries, the runs a
    refinement computes to ``"tolerances"`` (and those of
    [`live_golden`][refmem.differential.live_golden] when ``live`` is not given)."""
    live = live or live_golden(case, example, timings=timings)
    clock = Clock(timings)
    results, problem = _call(adapter, case.name, given_of(case, live, dtype), dtype, live.golden.config)
    clock.lap("adapter")
    if results is None:
        report = Report()
        report.problems.append(problem)
        return report, live
    results = compared(results)
    report = compare(live.golden, results, dtype)
    clock.lap("comparison")
    for runs in (1, None):  # the round-to-nearest run alone (a tighter bound, cheap), then every run
        if report.passed or live.exact:
            break
        live = live.refined(runs, timings)
        clock = Clock(timings)
        report = compare(live.golden, results, dtype)
        clock.lap("comparison")
    return report, live


def judge(adapter: Adapter, case: Case, example: Example, dtype: str, live: Live, invariance: bool = False,
          timings: dict[str, float] | None = None) -> tuple[Report, Live, list[str]]:
    """[`check_example`][refmem.differential.check_example] and, where it passes and ``invariance``
    is asked, [`batch_invariance`][refmem.differential.batch_invariance], each failure judged by the
    exact rule (``live`` refined where its tolerances were a lower bound). Returns the report, the
    live reference of the verdict and the batch-invariance problems. Raises
    [`Undecidable`][refmem.differential.Undecidable] where the exact rule cannot judge the example
    (in float64 also where [`float64_undecidable`][refmem.differential.reference.float64_undecidable]
    says its float64 tolerance cannot)."""
    report, live = check_example(adapter, case, example, dtype, live, timings)
    if not report.passed and dtype == "float64" and live.exact:
        clock = Clock(timings)
        why = float64_undecidable(case, live)
        clock.lap("tolerances")
        if why:
            raise Undecidable(why)
    inv = _invariance(adapter, case, example, dtype, live, timings) if (invariance and report.passed) else []
    if inv and not live.exact:
        live = live.refined(None, timings)
        inv = _invariance(adapter, case, example, dtype, live, timings)
    return report, live, inv


def _invariance(adapter: Adapter, case: Case, example: Example, dtype: str, live: Live,
                timings: dict[str, float] | None) -> list[str]:
    """[`batch_invariance`][refmem.differential.batch_invariance], its time outside the adapter's
    calls and the comparisons (drawing the other batch, slicing rows) counted as comparison."""
    t0, before = time.perf_counter(), sum(timings.values()) if timings is not None else 0.0
    inv = batch_invariance(adapter, case, example, dtype, live, timings)
    if timings is not None:
        timings["comparison"] += (time.perf_counter() - t0) - (sum(timings.values()) - before)
    return inv


# ----------------------------------------------------------------------------- batch invariance


def _item(tensors: Mapping[str, np.ndarray], keys: Sequence[str], b: int, B: int) -> dict[str, np.ndarray]:
    """Batch row ``b`` (kept as a batch of one) of every tensor of ``keys`` with a leading axis of ``B``."""
    out = {}
    for k in keys:
        v = tensors[k]
        shared = role_of(k) == "params" or k.startswith(("grads/params/", "tangents/params/"))
        batched = not shared and v.ndim and v.shape[0] == B
        out[k] = np.ascontiguousarray(v[b:b + 1]) if batched else v
    return out


def _close(case: str, what: str, ref: np.ndarray, got: Any, tol: Sequence[float]) -> str:
    """``""`` when ``got`` matches ``ref`` within ``[rtol, atol]``, else the reason."""
    try:
        got = np.asarray(got, dtype=np.float64)
    except Exception as exc:  # noqa: BLE001
        return f"{case}: {what}: not an array ({exc})"
    if got.shape != ref.shape:
        return f"{case}: {what}: shape {list(got.shape)}, expected {list(ref.shape)}"
    rtol, atol = tol
    with np.errstate(invalid="ignore"):
        bad = ~(np.abs(got - ref) <= atol + rtol * np.abs(ref))
    if bad.any():
        idx = tuple(int(i) for i in np.argwhere(bad)[0])
        return f"{case}: {what} at {list(idx)}: your full batch {ref[idx]:.9g}, this run {got[idx]:.9g}"
    return ""


def batch_invariance(adapter: Adapter, case: Case, example: Example, dtype: str = "float64",
                     live: Live | None = None, timings: dict[str, float] | None = None) -> list[str]:
    """Problems (``[]``: none) of the batch-invariance property of ``adapter`` at ``example`` (B ≥ 2):

    * every item of the batch, run alone (a batch of one, the same cotangent rows), gives the
      outputs, intermediates and input/state gradients of its row in the full batch;
    * every item, its companions replaced by the items of another draw (seed + 1), gives the same;
    * in a masked case, the values of ``inputs/h`` under an item's padding, changed, leave its
      outputs unchanged (except position 0, which SPEC §2's ``s_0 = tanh(h[:, 0] W_s)`` reads).

    Values are held to the example's tolerance in ``dtype``. ``timings`` as in
    [`check_example`][refmem.differential.check_example]: the adapter's calls, and the rest as comparison.
    """
    live = live or live_golden(case, example, timings=timings)
    g = live.golden
    clock = Clock(timings)

    def call(given_: dict) -> tuple[Mapping | None, str]:
        clock.lap("comparison")
        out = _call(adapter, case.name, given_, dtype, g.config)
        clock.lap("adapter")
        return out

    B = int(example.sizes.get("B", 0))
    if B < 2:
        return []
    given = given_of(case, live, dtype)
    full, problem = call(given)
    if full is None:
        return [problem]
    full = {k: np.asarray(v if isinstance(v, np.ndarray) else rx.to_numpy(v)) for k, v in full.items()}
    compared = [k for k in g.tol if k in full and not k.startswith("grads/params/")]
    problems: list[str] = []

    def host(v: Any) -> np.ndarray:
        return np.asarray(v if isinstance(v, np.ndarray) else rx.to_numpy(v))

    def against(b: int, results: Mapping[str, Any] | None, problem: str, how: str, keys: Sequence[str],
                batched: bool = False) -> None:
        """``results`` (of item ``b`` alone, or of a full batch whose row ``b`` counts) against row ``b``."""
        if results is None:
            problems.append(problem + f" ({how})")
            return
        want = _item(full, keys, b, B)
        for k in keys:
            if k not in results:
                problems.append(f"{case.name}: batch invariance ({how}): {k} missing")
                return
            got = host(results[k])
            if batched:
                got = _item({k: got}, [k], b, B)[k]
            why = _close(case.name, f"batch invariance ({how}): item {b} {k}", want[k], got, g.tol[k][dtype])
            if why:
                problems.append(why)
                return

    # alone
    for b in range(B):
        alone = _item(given, list(given), b, B)
        res, problem = call(alone)
        against(b, res, problem, "run alone", compared)
        if problems:
            return problems
    # other companions: item 0 of this draw with items 1.. of another draw
    try:
        other = draw_inputs(case, Example(case.name, example.sizes, example.seed + 1, example.scale, example.padded))
    except Unsampleable:
        other = {}  # no second draw there: the companions check is skipped
    mixed = {}
    for k, v in given.items():
        if role_of(k) in ("inputs", "state") and v.ndim and v.shape[0] == B and k in other:
            w = other[k].astype(v.dtype)
            w[0] = v[0]
            mixed[k] = w
        else:
            mixed[k] = v
    res, problem = call(mixed)
    against(0, res, problem, "companions replaced", [k for k in compared if role_of(k) == "outputs"], batched=True)
    if problems:
        return problems
    # values under padding
    key = _mask_key(case)
    if key is not None and "inputs/h" in given:
        mask = given[key]
        h = given["inputs/h"].copy()
        pad = mask == 0
        pad[:, 0] = False  # s_0 reads h[:, 0] whatever the mask
        if pad.any():
            noise = np.random.default_rng([example.seed, 0x9AD]).normal(size=h.shape) * 3
            h[pad] = noise[pad].astype(h.dtype)
            res, problem = call({**given, "inputs/h": h})
            if res is None:
                problems.append(problem + " (padding changed)")
            else:
                for k in [k for k in compared if role_of(k) == "outputs"]:
                    why = _close(case.name, f"batch invariance (values under padding changed): {k}", full[k],
                                 host(res[k]), g.tol[k][dtype])
                    if why:
                        problems.append(why)
                        break
    return problems
