"""The forward-mode and second-order tensors of a golden case (docs/golden-format.md, format 2).

``tangents/<role>/<name>``: one tangent per differentiable input, param and state tensor,
drawn from their own seed ([`tangents_for`][refmem.forward_mode.tangents_for]), float32-representable.
``jvp/<output>``: the derivative of each output along all tangents at once.
``hvp/<role>/<name>``: the derivative along the tangents of the vector-Jacobian product with
the stored cotangents (refmem's hand-derived backward, differentiated forward over reverse).
Both by the complex step ([`refmem.forward_mode`][refmem.forward_mode]), the stopped gradient
frozen in both, evaluated in complex long double (like every other reference: no BLAS, no
SIMD, the same bits on every machine) and rounded once to float64.

Kept apart from `refmem.golden.exporter` ([`export`][refmem.golden.export]), which calls
[`reference_tensors`][refmem.golden.forward_mode.reference_tensors] from ``reference``. Their
tolerances come from the one float32 measurement,
[`refmem.golden.tolerances.float32_runs`][refmem.golden.tolerances.float32_runs] (the same complex
step in emulated complex64). [`float32_tensors`][refmem.golden.forward_mode.float32_tensors] is
refmem's own native complex64 run, which ``refmem golden check`` holds to those tolerances.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from .. import catalogue
from .. import forward_mode as fm
from .. import xp as rx
from .storage import GoldenError, is_float, role_of

__all__ = ["ROLES", "reference_tensors", "float32_tensors", "precision"]

#: The compared roles this module adds (optional for an implementation, like ``intermediates/``).
ROLES = ("jvp", "hvp")


def _host(a: Any) -> np.ndarray:
    return np.ascontiguousarray(rx.to_numpy(a))


def reference_tensors(case: catalogue.Case, xp: Any, arrays: Mapping[str, Any], forward: catalogue.Forward,
                      cotangents: Mapping[str, np.ndarray], seed: int) -> dict[str, np.ndarray]:
    """``tangents/``, ``jvp/`` and ``hvp/`` of ``case`` at its sampled ``arrays`` (and ``cotangents``),
    in their precision (long double for the golden export: the complex step in complex long
    double), each result rounded once to float64."""
    keys = case.differentiable(arrays)
    host = {k: _host(arrays[k]) for k in keys}
    tangents = fm.tangents_for(host, keys, seed)
    frozen = dict(forward.frozen) if case.stopped else {}
    out = {f"tangents/{k}": np.ascontiguousarray(v) for k, v in tangents.items()}
    jvp = fm.jvp(case, xp, arrays, tangents, frozen)
    hvp = fm.hvp(case, xp, arrays, cotangents, tangents, frozen)
    for prefix, values in (("jvp", jvp), ("hvp", hvp)):
        for k, v in values.items():
            v = np.ascontiguousarray(v, dtype=np.float64)
            if not np.all(np.isfinite(v)):
                raise GoldenError(f"{case.name}: {prefix}/{k} holds NaN or infinity")
            out[f"{prefix}/{k}"] = v
    return out


def float32_tensors(case: catalogue.Case, tensors: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``jvp/`` and ``hvp/`` of refmem's own native float32 run (complex64 step) from the stored
    tensors: an implementation under test, as ``refmem golden check`` runs it (not the measurement
    behind the tolerances)."""
    tangents = {k[len("tangents/"):]: v.astype(np.float32) for k, v in tensors.items() if role_of(k) == "tangents"}
    if not tangents:
        return {}
    xp = rx.backend("numpy")
    arrays = {k: rx.from_numpy(xp, v.astype(np.float32) if is_float(v) else v)
              for k, v in tensors.items() if role_of(k) in catalogue.ROLES}
    cot = {k[len("cotangents/"):]: v.astype(np.float32) for k, v in tensors.items() if role_of(k) == "cotangents"}
    frozen = dict(case.forward(arrays).frozen) if case.stopped else {}
    out = {f"jvp/{k}": v for k, v in fm.jvp(case, xp, arrays, tangents, frozen).items()}
    out.update({f"hvp/{k}": v for k, v in fm.hvp(case, xp, arrays, cot, tangents, frozen).items()})
    return out


def precision(case: catalogue.Case, dtype: Any = np.longdouble) -> str:
    """The manifest's ``precision`` sentence for ``jvp/`` and ``hvp/`` evaluated in ``dtype``."""
    where = "complex long double" if np.dtype(dtype) == np.longdouble else "complex128"
    return f"{fm.method_of(case)}; evaluated in {where}, rounded once to float64"
