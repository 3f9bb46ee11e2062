"""The one float32 measurement and the one tolerance rule of the golden tensors (docs/golden-tolerances.md).

Every compared tensor (``outputs/``, ``intermediates/``, ``grads/``, ``jvp/``, ``hvp/``) gets a
tolerance per dtype, ``[rtol, atol]``, for the element-wise test ``|a - r| ≤ atol + rtol |r|``
(``r`` the float64 reference, ``a`` the result under test, both as float64). Export,
``refmem golden check`` and differential testing (``refmem verify``) all derive it here, from one
measurement:

* **The runs.** The case runs in float32 from its stored inputs and cotangents (cast without
  loss: they are float32-representable), in the emulated float32 of [`refmem.emulated32`][refmem.emulated32]
  (every operation rounded once, sums accumulated sequentially, no BLAS, no SIMD), once per
  entry of [`RUNS`][refmem.golden.tolerances.RUNS]: round to nearest, then stochastic rounding
  with seeds 1, 2 and 3, computed side by side. ``jvp/`` and ``hvp/`` are the complex step of
  [`refmem.forward_mode`][refmem.forward_mode] (``h = 2⁻⁶⁰``) through the same forward and
  backward in emulated complex64, each component of every operation rounded the same way
  ([`float32_runs`][refmem.golden.tolerances.float32_runs]). So the measurement, and every
  tolerance, is the same on every machine.
* **κ.** With ``e`` the largest absolute deviation of those runs from the reference and ``s``
  the largest ``|r|`` (1 for an all-zero tensor), ``κ = max(e / (ε₃₂ s), 1)`` is how many
  float32 units of the tensor's scale the computation loses ([`kappa`][refmem.golden.tolerances.kappa]).
* **The rule.** ``atol_d = SAFETY[d] · κ · ε_d · s`` and ``rtol_d = RTOL_ULPS · ε_d`` for ``d``
  in float32 and float64 (``ε`` the machine epsilon), rounded up to two significant digits
  ([`tolerance`][refmem.golden.tolerances.tolerance]). Rounding error grows with the unit
  roundoff to first order, so the float32 measurement sets the float64 tolerance too. The
  margins, [`SAFETY`][refmem.golden.tolerances.SAFETY] (16 for float32, 256 for float64),
  cover implementations that round differently from refmem.

**Lower bounds.** The rule is monotone in the runs: the tolerance from any subset of the runs
(down to none at all, ``κ = 1``) is never larger than the tolerance from all of them. A result
within such a bound passes the exact rule too. [`Measurement`][refmem.golden.tolerances.Measurement]
gives the tolerances of a case from the first ``n`` runs and computes further runs only when
asked; differential testing judges an example by the cheap bound and runs the whole
measurement only where that bound alone would fail it.

The API: [`RUNS`][refmem.golden.tolerances.RUNS], [`float32_runs`][refmem.golden.tolerances.float32_runs],
[`kappa`][refmem.golden.tolerances.kappa], [`tolerance`][refmem.golden.tolerances.tolerance],
[`tolerances`][refmem.golden.tolerances.tolerances] (every tolerance of a case from its stored
tensors: what export and ``golden check`` call) and [`Measurement`][refmem.golden.tolerances.Measurement].
"""

from __future__ import annotations

import inspect
import math
from typing import Any, Mapping, Sequence

import numpy as np

from .storage import GoldenError

__all__ = [
    "SAFETY", "RTOL_ULPS", "EPS", "DTYPES", "RUNS", "COMPARED", "round_up", "float32_runs", "kappa", "tolerance",
    "tolerances", "Measurement",
]

SAFETY = {"float32": 16.0, "float64": 256.0}
"""Safety margins over the measured float32 rounding error, per dtype."""
RTOL_ULPS = 16.0
"""Relative tolerance in units of the dtype's machine epsilon."""
EPS = {"float32": float(np.finfo(np.float32).eps), "float64": float(np.finfo(np.float64).eps)}
"""The machine epsilon of each dtype."""
DTYPES = ("float32", "float64")
"""The dtypes an implementation is verified in."""
RUNS: tuple[tuple[str, int], ...] = (("nearest", 0), ("stochastic", 1), ("stochastic", 2), ("stochastic", 3),
                                     ("faithful", 1), ("faithful", 2), ("faithful", 3), ("faithful", 4))
"""The emulated float32 runs every tolerance is measured from: ``(rounding, seed)``. Round to nearest;
three stochastic runs (each operation rounded up or down with probability proportional to the
distance: another order of the arithmetic); four faithful runs (stochastic arithmetic, and every
library function, ``exp``, ``tanh``, ``log``, ..., rounded to either neighbour with probability 1/2,
as a float32 library accurate to one ulp may return either)."""
COMPARED = ("outputs", "intermediates", "grads", "jvp", "hvp")
"""The roles that are compared, hence measured."""
_ARGUMENTS = ("inputs", "params", "state")
"""The roles a case reads (its arguments)."""


def round_up(x: float, digits: int = 2) -> float:
    """``x`` rounded up to ``digits`` significant digits (a clean number for JSON)."""
    if x <= 0:
        return 0.0
    e = math.floor(math.log10(x)) - (digits - 1)
    m = math.ceil(x / 10.0**e - 1e-9)
    return float(f"{m}e{e}")


# ----------------------------------------------------------------------------- the runs


def _role(name: str) -> str:
    return name.split("/", 1)[0]


def _backward(case: Any, arrays: Mapping[str, Any], cot: Mapping[str, Any], frozen: Mapping[str, Any]) -> dict:
    if frozen and "frozen" in inspect.signature(case.backward).parameters:
        return case.backward(arrays, cot, frozen=frozen)
    return case.backward(arrays, cot)


def _side_by_side(case: Any, tensors: Mapping[str, np.ndarray], runs: Sequence[tuple[str, int]]) -> dict[str, Any]:
    """Every compared quantity of ``case`` in one emulated namespace computing ``runs`` side by side."""
    from .. import emulated32 as E
    from .. import forward_mode as fm
    from ..validation import probing

    ns = E.Namespace(runs=runs)
    arrays = {k: ns.given(v) for k, v in tensors.items() if _role(k) in _ARGUMENTS}
    cot = {k[len("cotangents/"):]: ns.given(v) for k, v in tensors.items() if _role(k) == "cotangents"}
    fwd = case.forward(arrays)
    got: dict[str, Any] = {f"outputs/{k}": v for k, v in fwd.outputs.items()}
    got.update({f"intermediates/{k}": v for k, v in (getattr(fwd, "intermediates", None) or {}).items()})
    got.update({f"grads/{k}": v for k, v in case.backward(arrays, cot).items()})
    tangents = {k[len("tangents/"):]: v for k, v in tensors.items() if _role(k) == "tangents"}
    if tangents:
        # the complex step in complex64, as refmem.forward_mode takes it in complex128
        h = fm.COMPLEX_STEP_32
        frozen = dict(fwd.frozen) if case.stopped else {}
        shifted = dict(arrays)
        for k, t in tangents.items():
            z = np.empty((1,) + t.shape, dtype=np.complex64)
            z.real = arrays[k].a
            z.imag = t.astype(np.float32) * np.float32(h)  # exact: a power of two
            shifted[k] = E.Array(z, ns)
        complex_cot = {k: E.Array(v.a.astype(np.complex64), ns) for k, v in cot.items()}
        with probing():
            out = case.forward(shifted, frozen=dict(frozen)).outputs
            grads = _backward(case, shifted, complex_cot, frozen)
        got.update({f"jvp/{k}": E.Array(np.ascontiguousarray(v.a.imag) / np.float32(h), ns) for k, v in out.items()})
        got.update({f"hvp/{k}": E.Array(np.ascontiguousarray(grads[k].a.imag) / np.float32(h), ns)
                    for k in tangents})
    return got


def float32_runs(case: Any, tensors: Mapping[str, np.ndarray],
                 runs: Sequence[tuple[str, int]] = RUNS) -> dict[str, list[np.ndarray]]:
    """Every compared quantity of ``case`` in emulated float32, once per run.

    Args:
        case: a [`Case`][refmem.catalogue.Case].
        tensors: role-prefixed golden tensors; the ``inputs/``, ``params/``, ``state/``,
            ``cotangents/`` and (when present) ``tangents/`` are read (float64,
            float32-representable: cast without loss).
        runs: ``(rounding, seed)`` pairs, default [`RUNS`][refmem.golden.tolerances.RUNS].

    Returns ``{"outputs/..." | "intermediates/..." | "grads/..." | "jvp/..." | "hvp/...":
    [float32 array per run]}`` (``jvp/`` and ``hvp/`` where ``tensors`` holds tangents), the
    same bits on every machine. The runs are computed side by side; where they would take
    different branches, one by one (the same values). Raises
    [`GoldenError`][refmem.golden.GoldenError] when the case leaves float32 (a float64 array in
    the computation would make the measured tolerance too tight).
    """
    from .. import emulated32 as E

    runs = tuple((str(r), int(s)) for r, s in runs)
    order = sorted(range(len(runs)), key=lambda i: E.ROUNDINGS.index(runs[i][0]))  # the namespace's order
    ordered = tuple(runs[i] for i in order)
    try:
        with np.errstate(all="ignore"):
            try:
                got = {k: v.rows for k, v in _side_by_side(case, tensors, ordered).items()}
            except E.Diverged:
                got = {}
                for run in ordered:
                    for k, v in _side_by_side(case, tensors, (run,)).items():
                        got.setdefault(k, []).extend(v.rows)
    except E.EmulationError as exc:
        raise GoldenError(f"{case.name}: {exc}; model code must create arrays with the dtype of its inputs") from exc
    result: dict[str, list[np.ndarray]] = {}
    for k, rows in got.items():
        if rows[0].dtype != np.float32:
            raise GoldenError(f"{case.name}: {k} comes out as {rows[0].dtype} from float32 inputs; model code "
                              "must create arrays with the dtype of its inputs")
        back = [None] * len(runs)
        for pos, i in enumerate(order):
            back[i] = np.ascontiguousarray(rows[pos])
        result[k] = back  # type: ignore[assignment]
    return result


# ----------------------------------------------------------------------------- κ and the rule


def _as_runs(runs: Any) -> list:
    if runs is None:
        return []
    if isinstance(runs, np.ndarray) or not isinstance(runs, (list, tuple)):
        return [runs]
    return list(runs)


def kappa(ref: Any, runs: Any = ()) -> float:
    """``max(e / (ε₃₂ s), 1)``: the float32 units of the tensor's scale ``s = max |ref|`` (1 for an
    all-zero tensor) that the worst of ``runs`` (float32 results, one array or a sequence;
    none gives 1) deviates from ``ref``."""
    ref = np.asarray(ref, dtype=np.float64)
    err = 0.0
    for run in _as_runs(runs):
        run = np.asarray(run, dtype=np.float64)
        if run.shape != ref.shape:
            raise ValueError(f"runs: expected shape {ref.shape}, got {run.shape}")
        if ref.size:
            err = max(err, float(np.max(np.abs(run - ref))))
    scale = float(np.max(np.abs(ref))) if ref.size else 0.0
    scale = scale if scale > 0.0 else 1.0
    if not math.isfinite(err):
        return math.inf
    return max(err / (EPS["float32"] * scale), 1.0)


def tolerance(ref: Any, runs: Any = ()) -> dict[str, list[float]]:
    """``{"float64": [rtol, atol], "float32": [rtol, atol]}`` of the reference ``ref`` from the
    float32 ``runs`` (one array or a sequence; the emulated runs of
    [`float32_runs`][refmem.golden.tolerances.float32_runs]).

    ``atol_d = SAFETY[d] κ ε_d s``, ``rtol_d = RTOL_ULPS ε_d`` (see the module docstring). It
    only grows with more runs: with fewer runs, or none (``κ = 1``), it is a lower bound of
    the tolerance from all of them.
    """
    ref = np.asarray(ref, dtype=np.float64)
    k = kappa(ref, runs)
    scale = float(np.max(np.abs(ref))) if ref.size else 0.0
    scale = scale if scale > 0.0 else 1.0
    return {d: [round_up(RTOL_ULPS * EPS[d]), round_up(SAFETY[d] * k * EPS[d] * scale)] for d in DTYPES}


def _compared(tensors: Mapping[str, np.ndarray]) -> list[str]:
    return [k for k in tensors if _role(k) in COMPARED]


class Measurement:
    """The float32 measurement of one case at its stored tensors, run by run on demand.

    ``Measurement(case, tensors).tolerances()`` is [`tolerances`][refmem.golden.tolerances.tolerances];
    ``tolerances(0)`` is the bound of no run (``κ = 1``, free), ``tolerances(n)`` the bound of
    the first ``n`` runs of [`RUNS`][refmem.golden.tolerances.RUNS]: each a lower bound of the
    next, element for element. Runs are computed when first needed and kept.

    Args:
        case: a [`Case`][refmem.catalogue.Case].
        tensors: its role-prefixed tensors: arguments, cotangents (and tangents) and the
            references of the compared roles (float64).
        runs: the runs of the whole measurement (default [`RUNS`][refmem.golden.tolerances.RUNS]).
    """

    def __init__(self, case: Any, tensors: Mapping[str, np.ndarray], runs: Sequence[tuple[str, int]] = RUNS):
        self.case = case
        self.tensors = tensors
        self.all = tuple(runs)
        self.names = _compared(tensors)
        self.runs: dict[str, list[np.ndarray]] = {k: [] for k in self.names}
        self.done = 0  # runs computed so far (the first ``done`` of ``all``)

    @property
    def exact(self) -> bool:
        """Whether every run has been computed (the tolerances are then the exact rule's)."""
        return self.done == len(self.all)

    def measure(self, n: int | None = None) -> dict[str, list[np.ndarray]]:
        """Compute the first ``n`` runs (all by default) where not done yet; the runs per tensor."""
        n = len(self.all) if n is None else min(int(n), len(self.all))
        if n > self.done:
            more = float32_runs(self.case, self.tensors, self.all[self.done:n])
            for k in self.names:
                if k not in more:
                    raise GoldenError(f"{self.case.name}: the float32 runs compute no {k}")
                self.runs[k].extend(more[k])
            self.done = n
        return self.runs

    def tolerances(self, n: int | None = None) -> dict[str, dict[str, list[float]]]:
        """``{tensor: {"float64": [rtol, atol], "float32": [rtol, atol]}}`` from the first ``n`` runs
        (all by default; ``0``: ``κ = 1``), each a lower bound of the exact tolerance."""
        n = len(self.all) if n is None else min(int(n), len(self.all))
        if n:
            self.measure(n)
        return {k: tolerance(self.tensors[k], self.runs[k][:n]) for k in self.names}

    def kappa(self, name: str) -> float:
        """κ of tensor ``name`` from the runs computed so far."""
        return kappa(self.tensors[name], self.runs[name])


def tolerances(case: Any, tensors: Mapping[str, np.ndarray],
               runs: Sequence[tuple[str, int]] = RUNS) -> dict[str, dict[str, list[float]]]:
    """Every tolerance of ``case`` from its stored tensors: ``{tensor: {"float64": [rtol, atol],
    "float32": [rtol, atol]}}`` for each compared tensor ``tensors`` holds (``outputs/``,
    ``intermediates/``, ``grads/``, ``jvp/``, ``hvp/``), by the rule of
    [`tolerance`][refmem.golden.tolerances.tolerance] from the emulated runs of
    [`float32_runs`][refmem.golden.tolerances.float32_runs]. What the export stores and
    ``refmem golden check`` recomputes; the same on every machine."""
    return Measurement(case, tensors, runs).tolerances()
