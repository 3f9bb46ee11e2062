"""Forward mode and second order of every catalogue case (docs/golden-format.md: ``tangents/``, ``jvp/``, ``hvp/``).

With the case's loss ``L = Σ_outputs Σ cot ∘ out`` (the cotangents of
[`refmem.gradcheck.cotangents_for`][refmem.gradcheck.cotangents_for]) and tangents ``t`` (one per
differentiable tensor, [`tangents_for`][refmem.forward_mode.tangents_for]):

* ``jvp/<output>`` is ``J t``, the derivative of each output along ``t``;
* ``hvp/<role>/<name>`` is ``∂_t g``, the derivative along ``t`` of the vector-Jacobian
  product ``g = Jᵀ cot`` computed by the case's hand-derived backward (forward over
  reverse, what ``jax.jvp(jax.grad(L))`` returns).

Both are computed by the complex step, ``Im f(x + i h t) / h`` with ``h = 1e-30``,
through the forward (JVP) and through the backward (HVP): exact to rounding where the
code is analytic on the sampled path. The DNC's allocation sort is not analytic as a
function, but refmem decides its permutation on the real part (``P.real_part``), and the
samplers keep the sorted values ``refmem.dnc.cases.addressing.SORT_GAP`` apart, so
an imaginary perturbation of size ``1e-30`` leaves the permutation as it is: the complex
step differentiates the sort-then-product with the permutation held constant, which is the
derivative autograd frameworks compute (``torch.sort(...).indices``, ``jnp.argsort`` of a
stopped value). ``tests/test_forward_mode.py`` checks this against Richardson-extrapolated
central differences on those cases.

A stopped gradient (the ``deepmind`` usage) is a constant in both differentiations, as
``jax.lax.stop_gradient`` makes it: the forward and the backward run with the stopped
tensor frozen at the value the unperturbed forward recorded. The HVP is then the Hessian of
``L(θ, c)`` with the stopped value ``c`` a constant, so it is symmetric like any other, and
double backward (the detached tensor has no graph in either pass), ``torch.func.jvp(torch.func.grad(...))``
and ``jax.jvp(jax.grad(...))`` all give it.

``refmem check --method hvp`` ([`refmem.gradcheck.hvp_records`][refmem.gradcheck.hvp_records]) checks the HVP: symmetry
``⟨t₂, H t₁⟩ = ⟨t₁, H t₂⟩`` for two tangent draws, and the complex-step HVP against
Richardson-extrapolated central differences of the backward. This module imports nothing from
[`refmem.gradcheck`][refmem.gradcheck] (the check engine builds on it, not the other way round).
"""

from __future__ import annotations

import inspect
from typing import Any, Mapping

import numpy as np

from . import xp as rx
from .catalogue import Case
from .validation import probing

__all__ = [
    "COMPLEX_STEP", "COMPLEX_STEP_32", "TANGENT_SALT", "tangents_for", "jvp", "hvp", "central_hvp",
    "central_jvp", "method_of", "HVP_TOLERANCES",
]

COMPLEX_STEP = 1e-30
"""Complex step for complex128 (float64) evaluations, as in SPEC §6."""
COMPLEX_STEP_32 = 2.0**-60
"""Complex step for complex64 (float32) evaluations: ``h²`` far below float32's epsilon, and ``h |t|``
far above its smallest normal number.
"""
TANGENT_SALT = 0x7A46
"""Salt of the tangents' seed (independent of the inputs' and the cotangents')."""
RICHARDSON_STEP = 2.0**-17
"""Richardson-extrapolated central differences: the base step along the tangent."""


def tangents_for(arrays: Mapping[str, np.ndarray], keys: list[str], seed: int, draw: int = 0) -> dict[str, np.ndarray]:
    """One standard-normal tangent per differentiable tensor ``keys`` (float32-representable float64),
    from their own seed ``[seed, TANGENT_SALT, draw]``, in sorted name order."""
    rng = np.random.default_rng([int(seed), TANGENT_SALT, int(draw)])
    return {k: rng.normal(size=np.shape(arrays[k])).astype(np.float32).astype(np.float64) for k in sorted(keys)}


def _backward(case: Case, arrays: Mapping[str, Any], cot: Mapping[str, Any], frozen: Mapping[str, Any]) -> dict:
    """The case's backward, with the stopped tensors frozen when the case has any."""
    if frozen and "frozen" in inspect.signature(case.backward).parameters:
        return case.backward(arrays, cot, frozen=frozen)
    if frozen:
        raise TypeError(f"{case.name}: has a stopped gradient but its backward takes no frozen= values")
    return case.backward(arrays, cot)


def _complex_dtype(real: np.dtype) -> type:
    """The complex dtype of a real one: complex64, complex128, or complex long double (the golden
    references, evaluated in long double)."""
    return {np.dtype(np.float32): np.complex64, np.dtype(np.longdouble): np.clongdouble}.get(np.dtype(real),
                                                                                             np.complex128)


def _shifted(xp: Any, arrays: Mapping[str, Any], tangents: Mapping[str, np.ndarray], h: complex,
             dtype: Any) -> dict[str, Any]:
    """``arrays`` with ``x + h t`` for every tensor that has a tangent (as ``dtype``)."""
    out = dict(arrays)
    for k, t in tangents.items():
        x = rx.to_numpy(arrays[k])
        out[k] = rx.from_numpy(xp, (x.astype(dtype) + h * t.astype(dtype)).astype(dtype))
    return out


def _real_dtype(arrays: Mapping[str, Any], tangents: Mapping[str, np.ndarray]) -> np.dtype:
    return rx.to_numpy(arrays[next(iter(tangents))]).dtype


def jvp(case: Case, xp: Any, arrays: Mapping[str, Any], tangents: Mapping[str, np.ndarray],
        frozen: Mapping[str, Any] | None = None) -> dict[str, np.ndarray]:
    """``J t`` per output by the complex step through the forward (in the arrays' precision)."""
    real = _real_dtype(arrays, tangents)
    h = COMPLEX_STEP_32 if real == np.float32 else COMPLEX_STEP
    shifted = _shifted(xp, arrays, tangents, 1j * h, _complex_dtype(real))
    with probing():
        out = case.forward(shifted, frozen=dict(frozen or {})).outputs
    return {k: (np.imag(rx.to_numpy(v)) / h).astype(real) for k, v in out.items()}


def hvp(case: Case, xp: Any, arrays: Mapping[str, Any], cotangents: Mapping[str, np.ndarray],
        tangents: Mapping[str, np.ndarray], frozen: Mapping[str, Any] | None = None) -> dict[str, np.ndarray]:
    """``∂_t (Jᵀ cot)`` per differentiable tensor by the complex step through the hand-derived backward."""
    real = _real_dtype(arrays, tangents)
    h = COMPLEX_STEP_32 if real == np.float32 else COMPLEX_STEP
    shifted = _shifted(xp, arrays, tangents, 1j * h, _complex_dtype(real))
    # Real cotangents as complex: one dtype through the backward (torch's matmul does not promote).
    cot = {k: rx.from_numpy(xp, np.asarray(v, dtype=_complex_dtype(real))) for k, v in cotangents.items()}
    with probing():
        grads = _backward(case, shifted, cot, dict(frozen or {}))
    return {k: (np.imag(rx.to_numpy(grads[k])) / h).astype(real) for k in tangents}


def _richardson(f: Any, step: float) -> dict[str, np.ndarray]:
    """``∂_ε f(ε)`` at 0 from central differences at ``step`` and ``step/2``, extrapolated
    (``(4 D(h/2) - D(h)) / 3``, truncation error ``O(h⁴)``)."""
    def central(h: float) -> dict[str, np.ndarray]:
        p, m = f(h), f(-h)
        return {k: (p[k] - m[k]) / (2 * h) for k in p}

    d1, d2 = central(step), central(step / 2)
    return {k: (4 * d2[k] - d1[k]) / 3 for k in d1}


def central_jvp(case: Case, xp: Any, arrays: Mapping[str, Any], tangents: Mapping[str, np.ndarray],
                frozen: Mapping[str, Any] | None = None, step: float = RICHARDSON_STEP) -> dict[str, np.ndarray]:
    """``J t`` by Richardson-extrapolated central differences of the forward along ``t`` (float64)."""
    def f(h: float) -> dict[str, np.ndarray]:
        with probing():
            out = case.forward(_shifted(xp, arrays, tangents, h, np.float64), frozen=dict(frozen or {})).outputs
        return {k: rx.to_numpy(v) for k, v in out.items()}

    return _richardson(f, step)


def central_hvp(case: Case, xp: Any, arrays: Mapping[str, Any], cotangents: Mapping[str, np.ndarray],
                tangents: Mapping[str, np.ndarray], frozen: Mapping[str, Any] | None = None,
                step: float = RICHARDSON_STEP) -> dict[str, np.ndarray]:
    """``∂_t (Jᵀ cot)`` by Richardson-extrapolated central differences of the backward along ``t`` (float64)."""
    cot = {k: rx.from_numpy(xp, np.asarray(v, dtype=np.float64)) for k, v in cotangents.items()}

    def f(h: float) -> dict[str, np.ndarray]:
        with probing():
            g = _backward(case, _shifted(xp, arrays, tangents, h, np.float64), cot, dict(frozen or {}))
        return {k: rx.to_numpy(g[k]) for k in tangents}

    return _richardson(f, step)


def method_of(case: Case) -> str:
    """How ``jvp/`` and ``hvp/`` of ``case`` are computed (for the manifest's ``precision``)."""
    how = (f"jvp/ and hvp/ by the complex step (h = {COMPLEX_STEP:g}) through refmem's forward and "
           "hand-derived backward")
    if not case.complex_step:
        how += (", the allocation sort's permutation decided on the real part and held constant "
                "(sampled sort gaps keep it fixed under the step)")
    if case.stopped:
        how += ", the stopped gradient frozen at its recorded value in both"
    return how


# ----------------------------------------------------------------------------- refmem check --method hvp

HVP_TOLERANCES = {"symmetry": 1e-10, "agreement": (1e-7, 1e-5, 1e-8)}
