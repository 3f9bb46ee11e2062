"""Exact golden references: every stored value evaluated in extended precision, rounded once.

The golden ``outputs/``, ``intermediates/`` and ``grads/`` are "the float64 reference".
Computed in float64 they carry float64 rounding error of their own (up to 6 ulps of a
tensor's scale in the outputs and 26 in the gradients of refmem 0.1's goldens). Here each
case's forward and backward run instead on NumPy's ``long double`` (80-bit x87 extended
precision on x86-64 Linux: 64-bit significand, ``ε = 2⁻⁶³``, 2048 times finer than float64)
and every value is rounded once to float64 at the end, so a stored value is the float64
number nearest to an evaluation whose own error is about three orders of magnitude below
float64's resolution.

The model code needs no change for this: it creates every array with the dtype of its
inputs and uses only the array API, which ``array_api_compat.numpy`` provides for long
double too (elementwise functions call the C library's ``expl``, ``tanhl``, ...; ``matmul``
and ``sum`` run NumPy's own loops, never BLAS, so the result is also independent of the
machine's BLAS kernels). [`reference`][refmem.extended.reference] refuses a result that comes back in another
dtype.

Where the platform has no extended type (``np.finfo(np.longdouble).nmant <= 52``: aarch64
macOS, Windows), [`working_dtype`][refmem.extended.working_dtype] raises
[`ExtendedPrecisionError`][refmem.extended.ExtendedPrecisionError], unless the
caller passes ``allow_float64=True``; the precision then recorded is
[`PRECISION_FLOAT64`][refmem.extended.PRECISION_FLOAT64] instead of
[`precision`][refmem.extended.precision]'s extended wording.

The functions are small on purpose: the golden export calls
[`working_dtype`][refmem.extended.working_dtype] once,
records [`precision`][refmem.extended.precision], and calls [`reference`][refmem.extended.reference] per
case (or [`golden_tensors`][refmem.extended.golden_tensors],
a drop-in for the float64 ``reference(case, seed)`` of the export).
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from . import catalogue
from . import xp as rx


__all__ = [
    "ExtendedPrecisionError",
    "PRECISION_FLOAT64",
    "has_extended",
    "extended_bits",
    "working_dtype",
    "precision",
    "round_once",
    "l2",
    "reference",
    "golden_tensors",
]

PRECISION_FLOAT64 = "float64 (no extended type on this platform)"
"""The ``precision`` string of a reference computed in plain float64 (no extended type)."""


class ExtendedPrecisionError(RuntimeError):
    """No extended-precision type on this platform (and float64 was not allowed), or a case
    whose computation left the working dtype. (The golden export re-raises it as a
    [`refmem.golden.GoldenError`][refmem.golden.GoldenError]; this module does not import the golden
    package, which imports it.)"""


def has_extended() -> bool:
    """Whether NumPy's ``long double`` is wider than float64 here (more than 52 stored mantissa bits)."""
    return int(np.finfo(np.longdouble).nmant) > 52


def extended_bits() -> int:
    """The storage width of the extended format in bits (80 for x87: 1 sign, 15 exponent, 64 significand).

    NumPy reports x87 long double as ``float128`` (its padded size); the format itself is 80 bits.
    """
    fi = np.finfo(np.longdouble)
    return 1 + int(fi.nexp) + int(fi.nmant) + (1 if int(fi.nmant) == 63 else 0)


def working_dtype(allow_float64: bool = False) -> np.dtype:
    """The dtype references are computed in: ``np.longdouble`` where it is extended.

    Raises [`ExtendedPrecisionError`][refmem.extended.ExtendedPrecisionError] where it is not, unless
    ``allow_float64`` (then float64 is returned and [`precision`][refmem.extended.precision] says so).
    """
    if has_extended():
        return np.dtype(np.longdouble)
    if allow_float64:
        return np.dtype(np.float64)
    fi = np.finfo(np.longdouble)
    raise ExtendedPrecisionError(
        f"no extended-precision type on this platform: numpy.longdouble has {int(fi.nmant)} mantissa bits "
        "(float64 has 52), so golden references would carry float64 rounding error; export on x86-64 Linux, "
        "or pass allow_float64=True to accept plain float64 references"
    )


def precision(dtype: Any) -> str:
    """The manifest's ``precision`` string for references computed in ``dtype``."""
    dtype = np.dtype(dtype)
    if dtype == np.float64:
        return PRECISION_FLOAT64
    if dtype == np.longdouble and has_extended():
        return f"float64, rounded once from an {extended_bits()}-bit long double evaluation"
    raise ExtendedPrecisionError(f"dtype: expected float64 or an extended numpy.longdouble, got {dtype}")


def round_once(a: Any) -> np.ndarray:
    """``a`` (a host array) rounded to the nearest float64, C-contiguous; non-float arrays unchanged."""
    a = np.asarray(a)
    if a.dtype.kind == "f":
        return np.ascontiguousarray(a.astype(np.float64))
    return np.ascontiguousarray(a)


def l2(a: Any) -> float:
    """The Euclidean norm of ``a`` for the manifest's ``l2``, the same on every machine.

    ``numpy.linalg.norm`` of a float64 array calls the BLAS (``dnrm2``/``ddot``), whose kernels
    differ in the last bit between CPUs; this sums the squares in the working precision with
    NumPy's own (pairwise) loop and rounds once.
    """
    x = np.asarray(a)
    work = np.longdouble if has_extended() else np.float64
    x = x.astype(work).reshape(-1)
    return float(np.sqrt(np.sum(x * x)).astype(np.float64))


def _cast(a: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Float arrays to ``dtype`` (exact: float64 -> long double loses nothing); others unchanged."""
    return np.ascontiguousarray(a.astype(dtype)) if a.dtype.kind == "f" else np.ascontiguousarray(a)


def _host(name: str, a: Any, dtype: np.dtype, case: str) -> np.ndarray:
    h = np.asarray(rx.to_numpy(a))
    if h.dtype.kind == "f" and h.dtype != dtype:
        raise ExtendedPrecisionError(
            f"{case}: {name} comes out as {h.dtype} from {dtype} inputs; model code must create arrays "
            "with the dtype of its inputs"
        )
    return h


def reference(
    case: catalogue.Case,
    arrays: Mapping[str, np.ndarray],
    cotangents: Mapping[str, np.ndarray],
    *,
    allow_float64: bool = False,
    dtype: Any = None,
    round: bool = True,  # noqa: A002
) -> dict[str, np.ndarray]:
    """The reference ``outputs/``, ``intermediates/`` and ``grads/`` of ``case``, as float64.

    Args:
        case: the catalogue case.
        arrays: its role-prefixed ``inputs/``, ``params/``, ``state/`` host arrays (float64,
            float32-representable, as sampled; other dtypes, e.g. masks, pass unchanged).
        cotangents: bare output name -> upstream gradient (host float64 arrays).
        allow_float64: compute in float64 where no extended type exists instead of raising.
        dtype: the working dtype (default [`working_dtype`][refmem.extended.working_dtype]); for tests and
            measurements.
        round: round to float64 (the default); ``False`` returns the working-dtype values
            themselves, for measuring how far a float64 value is from them.

    The floats are cast to the working dtype, the case's forward and backward run on
    NumPy in it, and each result is rounded once to float64. Intermediates are those of
    ``Forward.intermediates`` where the catalogue defines them (none otherwise).
    Raises [`ExtendedPrecisionError`][refmem.extended.ExtendedPrecisionError] when a result is not in the
    working dtype.
    """
    work = np.dtype(dtype) if dtype is not None else working_dtype(allow_float64)
    xp = rx.backend("numpy")
    given = {k: rx.from_numpy(xp, _cast(np.asarray(v), work)) for k, v in arrays.items()}
    cot = {k: rx.from_numpy(xp, _cast(np.asarray(v), work)) for k, v in cotangents.items()}
    finish = round_once if round else (lambda a: np.ascontiguousarray(a))
    fwd = case.forward(given)
    out: dict[str, np.ndarray] = {}
    for k, v in fwd.outputs.items():
        out[f"outputs/{k}"] = finish(_host(f"outputs/{k}", v, work, case.name))
    for k, v in (getattr(fwd, "intermediates", None) or {}).items():
        out[f"intermediates/{k}"] = finish(_host(f"intermediates/{k}", v, work, case.name))
    grads = case.backward(given, cot)
    for k, v in grads.items():
        out[f"grads/{k}"] = finish(_host(f"grads/{k}", v, work, case.name))
    return out


def golden_tensors(case: catalogue.Case, seed: int = 0, *, allow_float64: bool = False) -> dict[str, np.ndarray]:
    """Every golden tensor of ``case`` at ``seed``: a drop-in for the export's float64 ``reference``.

    Draws the inputs (float64, float32-representable) as the export does, takes the
    cotangents of [`refmem.gradcheck.cotangents_for`][refmem.gradcheck.cotangents_for] (they depend on the
    outputs'
    shapes only) and evaluates [`reference`][refmem.extended.reference]. Returns the role-prefixed ``inputs/``,
    ``params/``, ``state/``, ``cotangents/``, ``outputs/``, ``intermediates/`` and ``grads/``.
    Raises [`ExtendedPrecisionError`][refmem.extended.ExtendedPrecisionError] for results that are not
    finite, gradients for the wrong tensors and inputs that are not float32-representable.
    """
    from . import gradcheck

    xp = rx.backend("numpy")
    sampled = {k: np.ascontiguousarray(rx.to_numpy(v)) for k, v in case.draw(xp, seed).items()}
    for k, v in sampled.items():
        if v.dtype.kind == "f" and (v.dtype != np.float64 or not np.array_equal(v.astype(np.float32).astype(np.float64), v)):
            raise ExtendedPrecisionError(f"{case.name}: sampled {k} is not float32-representable float64 (docs/golden-format.md)")
    # the shapes of the outputs, for the cotangents: one cheap float64 forward
    shapes = {k: np.zeros(np.shape(rx.to_numpy(v))) for k, v in case.forward(
        {k: rx.from_numpy(xp, v) for k, v in sampled.items()}).outputs.items()}
    cot = gradcheck.cotangents_for(shapes, seed)
    values = reference(case, sampled, cot, allow_float64=allow_float64)
    keys = case.differentiable(sampled)
    got = sorted(k[len("grads/"):] for k in values if k.startswith("grads/"))
    if got != sorted(keys):
        raise ExtendedPrecisionError(f"{case.name}: backward returned gradients for {got}, expected {sorted(keys)}")
    for k, v in values.items():
        if not np.all(np.isfinite(v)):
            raise ExtendedPrecisionError(f"{case.name}: {k} holds NaN or infinity")
        if k.startswith("grads/") and v.shape != sampled[k[len("grads/"):]].shape:
            raise ExtendedPrecisionError(f"{case.name}: {k} has shape {v.shape}, expected {sampled[k[6:]].shape}")
    out = dict(sampled)
    out.update({f"cotangents/{k}": np.ascontiguousarray(v) for k, v in cot.items()})
    out.update(values)
    return out
