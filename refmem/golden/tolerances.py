"""Tolerances of the golden tensors, per compared tensor and per dtype, as ``[rtol, atol]``.

The element-wise test is ``|a - r| ≤ atol + rtol |r|`` (``r`` the float64 reference,
``a`` the result under test, both as float64). [`tolerance`][refmem.golden.tolerance] derives both pairs
from one float32 measurement:

* The case runs in float32 from the stored inputs and cotangents (cast without loss:
  they are float32-representable): at export, four times in the emulated float32 of
  ``refmem.emulated32`` (round to nearest, then stochastic rounding with seeds 1, 2,
  3; every operation rounded once, sums accumulated sequentially, no BLAS), so the
  measurement is the same on every machine (docs/golden-tolerances.md). With ``e`` the
  largest absolute deviation of those float32 results from the reference and ``s`` the
  largest ``|r|`` (1 for an all-zero tensor), ``κ = max(e / (ε₃₂ s), 1)`` is how many
  float32 units of the tensor's scale the computation loses.
* ``atol_d = SAFETY[d] · κ · ε_d · s`` and ``rtol_d = RTOL_ULPS · ε_d`` for ``d`` in
  float32 and float64 (``ε`` the machine epsilon). Rounding error grows with the
  unit roundoff to first order, so the float32 measurement sets the float64
  tolerance too. The margins, [`SAFETY`][refmem.golden.SAFETY] (16 for float32, 256 for float64),
  cover implementations that round differently from refmem.
* Values are rounded up to two significant digits.

The whole rule is [`tolerance`][refmem.golden.tolerance]; a different derivation replaces that one function.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = ["SAFETY", "RTOL_ULPS", "EPS", "DTYPES", "round_up", "tolerance"]

#: Safety margins over the measured float32 rounding error, per dtype.
SAFETY = {"float32": 16.0, "float64": 256.0}
#: Relative tolerance in units of the dtype's machine epsilon.
RTOL_ULPS = 16.0
EPS = {"float32": float(np.finfo(np.float32).eps), "float64": float(np.finfo(np.float64).eps)}
#: The dtypes an implementation is verified in.
DTYPES = ("float32", "float64")


def round_up(x: float, digits: int = 2) -> float:
    """``x`` rounded up to ``digits`` significant digits (a clean number for JSON)."""
    if x <= 0:
        return 0.0
    e = math.floor(math.log10(x)) - (digits - 1)
    m = math.ceil(x / 10.0**e - 1e-9)
    return float(f"{m}e{e}")


def tolerance(ref: np.ndarray, f32: Any) -> dict[str, list[float]]:
    """``{"float64": [rtol, atol], "float32": [rtol, atol]}`` from a float32 measurement.

    ``f32`` is one float32 result or a list of them (the emulated float32 runs of
    ``refmem.emulated32.float32_runs``, what the export passes); ``e`` is the largest
    deviation over all of them.

    ``κ = max(e / (ε₃₂ s), 1)``, ``atol_d = SAFETY[d] κ ε_d s``, ``rtol_d = RTOL_ULPS ε_d``
    (see the module docstring).
    """
    ref = np.asarray(ref, dtype=np.float64)
    runs = list(f32) if isinstance(f32, (list, tuple)) else [f32]
    err = max((float(np.max(np.abs(np.asarray(r, dtype=np.float64) - ref))) for r in runs), default=0.0) \
        if ref.size else 0.0
    scale = float(np.max(np.abs(ref))) if ref.size else 0.0
    if scale == 0.0:
        scale = 1.0
    kappa = max(err / (EPS["float32"] * scale), 1.0)
    return {d: [round_up(RTOL_ULPS * EPS[d]), round_up(SAFETY[d] * kappa * EPS[d] * scale)] for d in DTYPES}
