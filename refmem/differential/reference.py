"""The live reference: refmem's golden tensors of a drawn example, computed on the spot.

[`live_golden`][refmem.differential.reference.live_golden] gives an example's reference (float64
forward, intermediates, cotangents at its seed, hand-derived gradients) and tolerances by the
export's rule, as an in-memory [`Golden`][refmem.golden.Golden].
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from .. import catalogue
from .. import xp as rx
from ..catalogue import Case
from ..golden.comparison import Golden
from ..golden.exporter import float32_run, manifest_entry
from ..golden.storage import GoldenError, is_float, role_of
from .drawing import Example, draw_inputs
from .timing import Clock

__all__ = ["FLOAT32_TIE", "PERTURBED_RUNS", "LOST", "Live", "Undecidable", "live_golden", "float32_undecidable"]

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
    """A live reference: the [`Golden`][refmem.golden.Golden] of an example, its manifest entry and tensors."""

    golden: Golden
    entry: dict
    tensors: dict
    example: Example


#: One-ulp-perturbed float32 runs measured besides the plain one ([`_float32_measurement`][refmem.differential._float32_measurement]).
PERTURBED_RUNS = 3
#: A tensor whose float32 measurement is off by more than this fraction of its scale has lost every
#: float32 digit (saturation, underflow): the golden rule cannot derive a float64 tolerance from it.
LOST = 0.05


class Undecidable(RuntimeError):
    """An example the golden tolerance rule cannot judge (see [`live_golden`][refmem.differential.live_golden])."""


def _float32_measurement(case: Case, tensors: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """refmem's float32 run on the inputs and on [`PERTURBED_RUNS`][refmem.differential.PERTURBED_RUNS] copies moved by one float32 ulp
    each (random directions; what another implementation's different rounding amounts to); per
    tensor the run that deviates most from the reference. One run's error can be small by luck at tiny
    sizes; the perturbed run adds the conditioning of the example."""
    out = float32_run(case, tensors)
    rng = np.random.default_rng([int(len(tensors)), 0x5EED])

    def err(k: str, a: np.ndarray) -> float:
        return float(np.max(np.abs(a.astype(np.float64) - tensors[k]))) if a.size else 0.0

    for _ in range(PERTURBED_RUNS):
        moved = {}
        for k, v in tensors.items():
            if role_of(k) in catalogue.ROLES and is_float(v) and k not in case.nondiff:
                v32 = v.astype(np.float32)
                up = np.nextafter(v32, np.float32(np.inf))
                down = np.nextafter(v32, np.float32(-np.inf))
                v = np.where(rng.random(v.shape) < 0.5, up, down).astype(np.float64)
            moved[k] = v
        try:
            other = float32_run(case, moved)
        except Exception:  # noqa: BLE001 - a moved input outside a domain: the runs so far
            break
        for k, b in other.items():
            if np.all(np.isfinite(b)) and err(k, b) > err(k, out[k]):
                out[k] = b
    return out


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
                timings: dict[str, float] | None = None) -> Live:
    """refmem's reference of ``example`` (float64 NumPy forward, intermediates, cotangents drawn at its
    seed, hand-derived gradients) with tolerances from refmem's own float32 run, as the export does.
    The manifest entry gains ``"differential"``: the example's sizes, seed, scale and padded rows.

    Two guards keep the rule honest away from the golden's own point: the float32 measurement is
    the worse of a plain and a one-ulp-perturbed run ([`_float32_measurement`][refmem.differential._float32_measurement]), and an example
    where refmem's float32 result lost every digit of a tensor (error above [`LOST`][refmem.differential.LOST] of its
    scale: saturation, underflow), whose float64 tolerance the rule cannot derive, raises
    [`Undecidable`][refmem.differential.Undecidable] (the search refuses it).

    ``timings``: seconds spent drawing, on the reference and on the tolerances are added to its
    ``"draw"``, ``"reference"`` and ``"tolerances"`` entries."""
    clock = Clock(timings)
    arrays = draw_inputs(case, example) if arrays is None else dict(arrays)
    clock.lap("draw")
    tensors = _reference(case, example.seed, arrays)
    clock.lap("reference")
    # the export's measurement (its emulated float32 runs), plus the one-ulp-perturbed runs
    from ..golden.exporter import float32_runs

    f32 = {k: list(v) if isinstance(v, (list, tuple)) else [v] for k, v in float32_runs(case, tensors).items()
           if k in tensors}
    for k, v in _float32_measurement(case, tensors).items():
        if k in f32:
            f32[k].append(v)
    entry = manifest_entry(case, example.seed, tensors, f32)
    for k, runs in f32.items():
        ref = tensors[k]
        scale = float(np.max(np.abs(ref))) if ref.size else 0.0
        worst = max(float(np.max(np.abs(np.asarray(a, dtype=np.float64) - ref))) if ref.size else 0.0 for a in runs)
        if scale > 0 and not worst <= LOST * scale:
            clock.lap("tolerances")
            raise Undecidable(f"{k}: refmem's float32 run lost every digit (saturation or underflow)")
    entry["differential"] = example.to_json()
    entry = json.loads(json.dumps(entry, sort_keys=True, allow_nan=False))
    clock.lap("tolerances")
    return Live(_golden(case.name, entry, tensors), entry, tensors, example)


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
