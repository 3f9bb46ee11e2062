"""The live reference: refmem's golden tensors of a drawn example, computed on the spot.

[`live_golden`][refmem.differential.reference.live_golden] gives an example's reference (float64
forward, intermediates, cotangents at its seed, hand-derived gradients) and tolerances from the
golden export's one float32 measurement ([`Measurement`][refmem.golden.tolerances.Measurement]), as
an in-memory [`Golden`][refmem.golden.Golden]. The search asks for the measurement's free lower
bound (``runs=0``) and refines it ([`Live.refined`][refmem.differential.Live.refined]) only where a
result falls beyond it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from .. import xp as rx
from ..catalogue import Case
from ..golden.comparison import Golden
from ..golden.exporter import manifest_entry
from ..golden.storage import GoldenError
from ..golden.tolerances import Measurement
from .drawing import Example, draw_inputs
from .timing import Clock

__all__ = ["FLOAT32_TIE", "LOST", "Live", "Undecidable", "live_golden", "float32_undecidable", "float64_undecidable"]

#: Below this, a non-zero gap between two usages is a structural near-tie (``eps``-sized terms of a zero
#: initial usage, which the core sampler accepts): float64 orders them by those terms, float32 cannot
#: resolve them, so the allocation's order, and everything after it, is undetermined in float32.
FLOAT32_TIE = 1e-5


def _golden(name: str, entry: Mapping[str, Any], tensors: Mapping[str, np.ndarray]) -> Golden:
    def role(prefix: str) -> dict[str, np.ndarray]:
        n = len(prefix) + 1
        return {k[n:]: v for k, v in sorted(tensors.items()) if k.startswith(prefix + "/")}

    return Golden(
        name=name, function=entry["function"], spec=entry["spec"], seed=int(entry["seed"]),
        config=dict(entry["config"]), inputs=role("inputs"), params=role("params"), state=role("state"),
        cotangents=role("cotangents"), outputs=role("outputs"), grads=role("grads"),
        tensors=dict(sorted(tensors.items())),
        tol={k: d["tol"] for k, d in entry["tensors"].items() if "tol" in d},
        intermediates=role("intermediates"), order=tuple(dict(o) for o in entry["order"]),
        precision=str(entry.get("precision", "")),
    )


@dataclass(frozen=True)
class Live:
    """A live reference: the [`Golden`][refmem.golden.Golden] of an example, its manifest entry and
    tensors, and the float32 measurement its tolerances come from (``exact``: from every run, the
    golden rule itself; otherwise a lower bound of it)."""

    golden: Golden
    entry: dict
    tensors: dict
    example: Example
    measurement: Measurement | None = field(default=None, repr=False, compare=False)

    @property
    def exact(self) -> bool:
        """Whether the tolerances are the exact rule's (every run of the measurement)."""
        return self.measurement is None or self.measurement.exact

    def refined(self, runs: int | None = None, timings: dict[str, float] | None = None) -> "Live":
        """This reference with the tolerances of the first ``runs`` runs of its measurement (all by
        default: the exact rule), the missing runs computed and the reference tensors reused. Raises
        [`Undecidable`][refmem.differential.Undecidable] where the runs computed lost every float32
        digit of a tensor. ``timings``: the seconds are added to its ``"tolerances"`` entry."""
        m = self.measurement
        if m is None or m.exact or (runs is not None and m.done >= runs):
            return self
        clock = Clock(timings)
        try:
            return _live(m.case, self.example, self.tensors, m, runs)
        finally:
            clock.lap("tolerances")


#: A tensor whose float32 measurement is off by more than this fraction of its scale has lost every
#: float32 digit (saturation, underflow): the golden rule cannot derive a float64 tolerance from it.
LOST = 0.05


class Undecidable(RuntimeError):
    """An example the golden tolerance rule cannot judge (see [`live_golden`][refmem.differential.live_golden])."""


def _reference(case: Case, seed: int, arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The golden tensors of ``arrays`` ([`refmem.extended.reference`][refmem.extended.reference] with float64 as the working
    dtype: refmem's NumPy float64 evaluation, the reference every number of
    docs/differential-testing.md was measured with; the export now evaluates in long double), with
    the cotangents of [`refmem.gradcheck.cotangents_for`][refmem.gradcheck.cotangents_for] at ``seed``."""
    from .. import extended, gradcheck

    xp = rx.backend("numpy")
    shapes = {k: np.zeros(np.shape(rx.to_numpy(v))) for k, v in
              case.forward({k: rx.from_numpy(xp, v) for k, v in arrays.items()}).outputs.items()}
    cot = gradcheck.cotangents_for(shapes, seed)
    values = extended.reference(case, arrays, cot, dtype=np.float64)
    for k, v in values.items():
        if not np.all(np.isfinite(v)):
            raise GoldenError(f"{case.name}: {k} holds NaN or infinity")
    out = {k: np.ascontiguousarray(v) for k, v in arrays.items()}
    out.update({f"cotangents/{k}": np.ascontiguousarray(v) for k, v in cot.items()})
    out.update(values)
    return out


def live_golden(case: Case, example: Example, arrays: Mapping[str, np.ndarray] | None = None,
                timings: dict[str, float] | None = None, runs: int | None = None) -> Live:
    """refmem's reference of ``example`` (float64 NumPy forward, intermediates, cotangents drawn at its
    seed, hand-derived gradients) with tolerances from the one float32 measurement of the golden
    export ([`Measurement`][refmem.golden.tolerances.Measurement]: the emulated float32 runs of
    refmem on the example). The manifest entry gains ``"differential"``: the example's sizes,
    seed, scale and padded rows.

    ``runs``: how many of the measurement's runs to compute now; all by default (the exact rule).
    Fewer give a lower bound of every tolerance (``0``: ``κ = 1``, no run at all, free): a result
    within it passes the exact rule too, and [`check_example`][refmem.differential.check_example]
    judges a result that is not by the exact rule ([`Live.refined`][refmem.differential.Live.refined]).

    An example where refmem's emulated float32 lost every digit of a tensor in a run computed
    (error above [`LOST`][refmem.differential.LOST] of its scale: saturation, underflow), whose
    float64 tolerance the rule cannot derive, raises [`Undecidable`][refmem.differential.Undecidable]
    (the search refuses it): the exact rule, whose runs include those, would too.

    ``timings``: seconds spent drawing, on the reference and on the tolerances are added to its
    ``"draw"``, ``"reference"`` and ``"tolerances"`` entries."""
    clock = Clock(timings)
    arrays = draw_inputs(case, example) if arrays is None else dict(arrays)
    clock.lap("draw")
    tensors = _reference(case, example.seed, arrays)
    clock.lap("reference")
    try:
        return _live(case, example, tensors, Measurement(case, tensors), runs)
    finally:
        clock.lap("tolerances")


def _live(case: Case, example: Example, tensors: dict, measurement: Measurement, runs: int | None) -> Live:
    tol = measurement.tolerances(runs)
    if measurement.done:  # the runs so far already lost every digit: so would all of them
        for k, got in measurement.runs.items():
            ref = tensors[k]
            scale = float(np.max(np.abs(ref))) if ref.size else 0.0
            worst = max((float(np.max(np.abs(a.astype(np.float64) - ref))) if ref.size else 0.0 for a in got),
                        default=0.0)
            if scale > 0 and not worst <= LOST * scale:
                raise Undecidable(f"{k}: refmem's float32 run lost every digit (saturation or underflow)")
    entry = manifest_entry(case, example.seed, tensors, tol)
    entry["differential"] = example.to_json()
    entry = json.loads(json.dumps(entry, sort_keys=True, allow_nan=False))
    return Live(_golden(case.name, entry, tensors), entry, tensors, example, measurement)


def float32_undecidable(live: Live) -> bool:
    """Whether ``live`` holds a usage (``outputs/usage`` or, per step, ``intermediates/usage``) with two
    values closer than [`FLOAT32_TIE`][refmem.differential.FLOAT32_TIE] but not equal: the allocation sort's order there is set by
    terms float32 cannot resolve, so a float32 implementation may sort otherwise (the example is
    skipped in float32, counted as refused)."""
    for key in ("outputs/usage", "intermediates/usage"):
        u = live.tensors.get(key)
        if u is None or u.shape[-1] < 2:
            continue
        gaps = np.diff(np.sort(u, axis=-1), axis=-1)
        if np.any((gaps > 0) & (gaps < FLOAT32_TIE)):
            return True
    return False


def float64_undecidable(case: Case, live: Live) -> str:
    """Why the float64 tolerances of ``live`` cannot judge a float64 result (``""``: they can).

    The rule derives the float64 tolerance from the float32 measurement (``atol = 256 κ ε₆₄ s``),
    which assumes float64 loses what float32 loses, scaled by the unit roundoff. Where a tensor is
    so ill-conditioned that this fails (float32 saturates or underflows where float64 does not, at
    a large value scale), refmem's own float64 evaluation, the live reference, is itself off the
    long double evaluation by more than that tolerance: such an example is refused in float64
    (the search asks only for an example whose float64 result failed, so this long double
    evaluation runs only there)."""
    from .. import extended
    from ..golden.storage import role_of

    if not extended.has_extended():
        return ""
    t = live.tensors
    arrays = {k: v for k, v in t.items() if role_of(k) in ("inputs", "params", "state")}
    cot = {k[len("cotangents/"):]: v for k, v in t.items() if role_of(k) == "cotangents"}
    exact = extended.reference(case, arrays, cot, round=False)
    for k, rtol_atol in live.golden.tol.items():
        if k not in exact:
            continue
        rtol, atol = rtol_atol["float64"]
        ld = exact[k]
        err = np.abs(t[k].astype(ld.dtype) - ld)
        if not np.all(err <= atol + rtol * np.abs(ld)):
            return (f"{k}: refmem's own float64 evaluation is off the long double one by more than the float64 "
                    "tolerance the float32 measurement gives (too ill-conditioned for the rule)")
    return ""
