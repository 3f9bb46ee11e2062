"""SPEC §2: the Bahdanau attention decoder of datalogue/keras-attention, equations 1-8.

The layer ``AttentionDecoder`` reads annotations ``h [B, T, D]`` (usually the
outputs of a bidirectional encoder) and runs exactly ``T`` decoder steps. Its
recurrent state is the pair ``(y_{t-1}, s_{t-1})``: the previous step's full
softmax output and the GRU-like hidden state.

    s_0 = tanh(h[:, 0] @ W_s),  y_0 = 0
    for t = 1..T:
      (1) e_tj = tanh(s_{t-1} @ W_a + h_j @ U_a + b_a) · V_a
      (2) α_tj = softmax_j(e_tj)
      (3) c_t  = Σ_j α_tj h_j
      (4) r_t  = σ(y_{t-1} @ W_r + s_{t-1} @ U_r + c_t @ C_r + b_r)
      (5) z_t  = σ(y_{t-1} @ W_z + s_{t-1} @ U_z + c_t @ C_z + b_z)
      (6) p_t  = tanh(y_{t-1} @ W_p + (r_t ∘ s_{t-1}) @ U_p + c_t @ C_p + b_p)
      (7) s_t  = (1 - z_t) ∘ s_{t-1} + z_t ∘ p_t
      (8) y_t  = softmax(y_{t-1} @ W_o + s_* @ U_o + c_t @ C_o + b_o)

``output_state="previous"`` takes ``s_* = s_{t-1}`` (the original repository,
seed 002); ``"current"`` takes ``s_* = s_t`` (seed 001, the paper's eq. 4).

Public pairs (pure functions, no hidden state):

* :func:`decoder_step_forward` / :func:`decoder_step_backward`: one step ``t``;
* :func:`decoder_forward` / :func:`decoder_backward`: ``T`` steps with
  backpropagation through time, including through the fed-back ``y_{t-1}`` and
  through ``s_0 = tanh(h[:, 0] @ W_s)``;
* :func:`init_params`: keras-attention's initialisers.

The derivation of every backward line is in ``docs/derivations/attention.md``.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from .. import primitives as PR
from .. import xp as rx
from ..errors import ShapeError
from ..sampling import Sampler
from ..errors import DomainError
from ..validation import check_arrays, check_size, checked_by, edge

__all__ = [
    "OUTPUT_STATES",
    "PARAM_NAMES",
    "DecoderParams",
    "DecoderOutput",
    "StepCache",
    "StepGrads",
    "DecoderCache",
    "DecoderGrads",
    "init_params",
    "param_shapes",
    "check_params",
    "attention_weights",
    "attention_weights_backward",
    "decoder_step_forward",
    "decoder_step_backward",
    "decoder_forward",
    "decoder_backward",
]

#: The two readings of equation 8 (SPEC §2, option ``output_state``).
OUTPUT_STATES = ("previous", "current")


class DecoderParams(NamedTuple):
    """The 21 parameters of SPEC §2, named as there (``D`` input, ``H`` units, ``K`` outputs).

    Attention (eq. 1): ``V_a [H]``, ``W_a [H, H]``, ``U_a [D, H]``, ``b_a [H]``.
    Reset gate (eq. 4): ``W_r [K, H]``, ``U_r [H, H]``, ``C_r [D, H]``, ``b_r [H]``.
    Update gate (eq. 5): ``W_z [K, H]``, ``U_z [H, H]``, ``C_z [D, H]``, ``b_z [H]``.
    Proposal (eq. 6): ``W_p [K, H]``, ``U_p [H, H]``, ``C_p [D, H]``, ``b_p [H]``.
    Output (eq. 8): ``W_o [K, K]``, ``U_o [H, K]``, ``C_o [D, K]``, ``b_o [K]``.
    Initial state: ``W_s [D, H]``.

    The same type holds gradients (one field per parameter, same shapes).
    """

    V_a: Any
    W_a: Any
    U_a: Any
    b_a: Any
    W_r: Any
    U_r: Any
    C_r: Any
    b_r: Any
    W_z: Any
    U_z: Any
    C_z: Any
    b_z: Any
    W_p: Any
    U_p: Any
    C_p: Any
    b_p: Any
    W_o: Any
    U_o: Any
    C_o: Any
    b_o: Any
    W_s: Any


#: Parameter names in SPEC order.
PARAM_NAMES: tuple[str, ...] = DecoderParams._fields


def param_shapes(D: int, H: int, K: int) -> dict[str, tuple[tuple[int, ...], str]]:
    """Every parameter's shape and its spelling in SPEC's letters."""
    shapes: dict[str, tuple[tuple[int, ...], str]] = {
        "V_a": ((H,), "(H,)"),
        "W_a": ((H, H), "(H, H)"),
        "U_a": ((D, H), "(D, H)"),
        "b_a": ((H,), "(H,)"),
    }
    for g in "rzp":
        shapes[f"W_{g}"] = ((K, H), "(K, H)")
        shapes[f"U_{g}"] = ((H, H), "(H, H)")
        shapes[f"C_{g}"] = ((D, H), "(D, H)")
        shapes[f"b_{g}"] = ((H,), "(H,)")
    shapes.update(
        W_o=((K, K), "(K, K)"),
        U_o=((H, K), "(H, K)"),
        C_o=((D, K), "(D, K)"),
        b_o=((K,), "(K,)"),
        W_s=((D, H), "(D, H)"),
    )
    return shapes


#: Spec strings of the parameters (see :mod:`refmem.validation`), SPEC §2's letters.
PARAM_SPECS: dict[str, str] = {name: symbols.strip("(,)").replace(",", "")
                               for name, (_, symbols) in param_shapes(1, 1, 1).items()}


def check_params(params: DecoderParams, D: int) -> tuple[int, int]:
    """Refuse parameters of the wrong shape (:class:`refmem.errors.ShapeError`); return ``(H, K)``.

    ``H`` is read from ``W_a``'s rows and ``K`` from ``W_o``'s rows, then every
    parameter is checked against SPEC §2's shapes.
    """
    if not isinstance(params, DecoderParams):
        raise TypeError(f"params: expected DecoderParams, got {type(params).__name__}")
    bound = check_arrays({n: getattr(params, n) for n in PARAM_NAMES}, PARAM_SPECS, sizes={"D": D})
    return bound["H"], bound["K"]


# ----------------------------------------------------------------------------- initialisers


def _glorot_uniform(sampler: Sampler, shape: tuple[int, ...]) -> Any:
    # Keras 2 (the keras-attention era) ``_compute_fans``: a matrix has fan_in = rows,
    # fan_out = columns; any other rank uses fan_in = fan_out = sqrt(prod(shape)).
    if len(shape) == 2:
        fan_in, fan_out = shape
    else:
        n = 1
        for d in shape:
            n *= d
        fan_in = fan_out = n**0.5
    limit = (6.0 / (fan_in + fan_out)) ** 0.5
    return sampler.uniform(shape, -limit, limit)


def _orthogonal(xp: Any, sampler: Sampler, shape: tuple[int, int]) -> Any:
    # Keras ``Orthogonal(gain=1)``: the SVD of a standard normal draw; ``u`` when it has
    # the matrix's shape (rows ≥ columns), otherwise ``vᵀ`` (orthonormal rows).
    a = sampler.normal(shape)
    u, _, vh = xp.linalg.svd(a, full_matrices=False)
    return u if tuple(u.shape) == tuple(shape) else vh


def init_params(xp: Any, D: int, H: int, K: int, seed: int = 0) -> DecoderParams:
    """Parameters initialised as keras-attention's ``AttentionDecoder.build`` does.

    * ``V_a``, ``W_a``, ``U_a``: ``glorot_uniform`` (``kernel_initializer``), with
      Keras 2's fans (``V_a [H]`` is a vector: fan_in = fan_out = sqrt(H), so the
      limit is ``sqrt(3 / sqrt(H))``; tf.keras would take fan_in = fan_out = H, giving
      ``sqrt(3 / H)``: keras-attention imports standalone Keras 2);
    * every gate, output and ``W_s`` matrix: ``orthogonal`` (``recurrent_initializer``,
      gain 1; the SVD of a standard normal draw);
    * every bias: zeros.

    Args:
        xp: the array namespace to create the parameters in.
        D: input width (SPEC §2).
        H: units.
        K: output classes.
        seed: the draws come from ``refmem.xp.Sampler(xp, seed)``.
    """
    D, H, K = (check_size(n, v) for n, v in (("D", D), ("H", H), ("K", K)))
    s = Sampler(xp, check_size("seed", seed, 0))
    shapes = param_shapes(D, H, K)
    values: dict[str, Any] = {}
    for name, (shape, _) in shapes.items():
        if name.startswith("b_"):
            values[name] = xp.zeros(shape, dtype=xp.float64)
        elif name in ("V_a", "W_a", "U_a"):
            values[name] = _glorot_uniform(s, shape)
        else:
            values[name] = _orthogonal(xp, s, shape)
    return DecoderParams(**values)


# ----------------------------------------------------------------------------- helpers


def _mask_bool(mask: Any) -> Any:
    """The (validated) mask ``[B, T]`` as a boolean array (``True``: attend); ``None`` stays ``None``."""
    if mask is None:
        return None
    xp = rx.namespace(mask)
    if xp.isdtype(mask.dtype, "bool"):
        return mask
    return mask != 0


def _check_weights(e: Any, mask: Any | None = None) -> None:
    check_arrays({"e": e, "mask": mask}, {"e": "... T", "mask": "?... T | mask"})
    if mask is not None and tuple(mask.shape) != tuple(e.shape):
        raise ShapeError(f"mask: expected the shape of e {tuple(e.shape)}, got {tuple(mask.shape)}")


@checked_by(_check_weights)
def attention_weights(e: Any, mask: Any | None = None) -> Any:
    """Equation 2: ``α = softmax_j(e)`` along the last axis, maximum subtracted first.

    With a boolean ``mask`` (same shape as ``e``, ``True`` where attended) the
    masked positions get weight exactly 0 and do not take part in the maximum or
    the sum; a row with no attended position gets all-zero weights (a context of 0)
    rather than NaN.

    Args:
        e: ``[..., T]``, the energies of eq. 1 (SPEC §2).
        mask: ``None`` or ``[..., T]`` (the shape of ``e``), bool or 0/1; ``True``/1: attended.

    Returns:
        ``alpha [..., T]``, the weights (no cache: :func:`attention_weights_backward` reads ``alpha``).
    """
    if mask is None:
        return PR.softmax(e, axis=-1)
    xp = rx.namespace(e)
    re = PR.real_part(e)
    lowest = xp.min(re, axis=-1, keepdims=True)
    shift = xp.max(xp.where(mask, re, lowest), axis=-1, keepdims=True)
    shifted = xp.where(mask, e - shift, xp.zeros_like(e))
    ex = xp.where(mask, xp.exp(shifted), xp.zeros_like(e))
    total = xp.sum(ex, axis=-1, keepdims=True)
    empty = PR.real_part(total) == 0
    return ex / xp.where(empty, xp.ones_like(total), total)


@edge(alpha="... T | unit", d_alpha="... T")
def attention_weights_backward(d_alpha: Any, alpha: Any) -> Any:
    """VJP of equation 2: ``d_e = α ∘ (d_α - Σ_j d_α ∘ α)`` (0 wherever ``α`` is 0 by the mask).

    Args:
        d_alpha: ``[..., T]``, the gradient of ``α`` (not ``None``).
        alpha: ``[..., T]``, the output of :func:`attention_weights` (it is the cache).

    Returns:
        d_e: ``[..., T]``, the gradient of the energies ``e``.

    Derivation: [docs/derivations/attention.md, "1. The Bahdanau decoder (SPEC §2), one step"](../derivations/attention.md#1-the-bahdanau-decoder-spec-2-one-step) (eq. 2; the mask: section 2)
    """
    return PR.softmax_vjp(d_alpha, alpha, -1)


# ----------------------------------------------------------------------------- one step


class StepCache(NamedTuple):
    """What one step keeps for its backward (``B`` batch, ``T`` annotations).

    ``y_in [B, K]`` (``y_{t-1}``), ``s_prev [B, H]`` (``s_{t-1}``), ``h [B, T, D]``,
    ``att [B, T, H]`` (``tanh(s_{t-1} @ W_a + h @ U_a + b_a)``), ``alpha [B, T]``,
    ``c [B, D]``, ``r, z, p [B, H]``, ``rs [B, H]`` (``r_t ∘ s_{t-1}``), ``s [B, H]``
    (``s_t``), ``s_out [B, H]`` (``s_*`` of eq. 8), ``y [B, K]``, ``params``,
    ``output_state``.
    """

    y_in: Any
    s_prev: Any
    h: Any
    att: Any
    alpha: Any
    c: Any
    r: Any
    z: Any
    p: Any
    rs: Any
    s: Any
    s_out: Any
    y: Any
    params: DecoderParams
    output_state: str


class StepGrads(NamedTuple):
    """Gradients of one step: ``y_in [B, K]``, ``s_prev [B, H]``, ``h [B, T, D]`` (through
    the context, eq. 3), ``uh [B, T, H]`` (of ``h @ U_a + b_a``), and ``params``: a
    :class:`DecoderParams` whose ``U_a``, ``b_a`` and ``W_s`` are ``None`` (a step does
    not use them directly)."""

    y_in: Any
    s_prev: Any
    h: Any
    uh: Any
    params: DecoderParams


def _check_step(y_in: Any, s_prev: Any, h: Any, uh: Any, params: Any, output_state: str = "previous",
                mask: Any | None = None) -> None:
    if output_state not in OUTPUT_STATES:
        raise DomainError(f"output_state: expected one of {OUTPUT_STATES}, got {output_state!r}")
    if not isinstance(params, DecoderParams):
        raise TypeError(f"params: expected DecoderParams, got {type(params).__name__}")
    # the parameters first: the inputs are measured against them
    arrays = {**{f"params.{n}": getattr(params, n) for n in PARAM_NAMES},
              "y_in": y_in, "s_prev": s_prev, "h": h, "uh": uh, "mask": mask}
    specs = {**{f"params.{n}": v for n, v in PARAM_SPECS.items()},
             "y_in": "B K | unit", "s_prev": "B H", "h": "B T D", "uh": "B T H", "mask": "?B T | mask"}
    check_arrays(arrays, specs)


@checked_by(_check_step)
def decoder_step_forward(
    y_in: Any,
    s_prev: Any,
    h: Any,
    uh: Any,
    params: DecoderParams,
    output_state: str = "previous",
    mask: Any | None = None,
) -> tuple[tuple[Any, Any, Any], StepCache]:
    """One decoder step, SPEC §2 equations 1-8.

    Args:
        y_in: ``[B, K]``, ``y_{t-1}`` (the previous softmax output or a teacher-forced one).
        s_prev: ``[B, H]``, ``s_{t-1}``.
        h: ``[B, T, D]``, the annotations.
        uh: ``[B, T, H]``, ``h @ U_a + b_a`` (computed once per sequence).
        params: :class:`DecoderParams`.
        output_state: ``"previous"`` or ``"current"`` (which state eq. 8 reads).
        mask: ``None`` or a boolean ``[B, T]`` (``True``: attended).
    Returns:
        ``(y_t [B, K], α_t [B, T], s_t [B, H])`` (the order of :class:`DecoderOutput`) and a
            :class:`StepCache`.
    """
    xp = rx.namespace(y_in, s_prev, h, uh)
    P = params
    # (1) energies; the s_{t-1} @ W_a term is broadcast over the T annotations
    att = xp.tanh((s_prev @ P.W_a)[:, None, :] + uh)  # [B, T, H]
    e = xp.sum(att * P.V_a, axis=-1)  # [B, T]
    # (2) weights, (3) context
    alpha = attention_weights.unchecked(e, _mask_bool(mask))
    c = (alpha[:, None, :] @ h)[:, 0, :]  # [B, D]
    # (4)-(7) the GRU-like state update
    r = PR.sigmoid(y_in @ P.W_r + s_prev @ P.U_r + c @ P.C_r + P.b_r)
    z = PR.sigmoid(y_in @ P.W_z + s_prev @ P.U_z + c @ P.C_z + P.b_z)
    rs = r * s_prev
    p = xp.tanh(y_in @ P.W_p + rs @ P.U_p + c @ P.C_p + P.b_p)
    s = (1.0 - z) * s_prev + z * p
    # (8) the output distribution
    s_out = s_prev if output_state == "previous" else s
    y = PR.softmax(y_in @ P.W_o + s_out @ P.U_o + c @ P.C_o + P.b_o, axis=-1)
    cache = StepCache(y_in, s_prev, h, att, alpha, c, r, z, p, rs, s, s_out, y, P, output_state)
    return (y, alpha, s), cache


@edge({"cache.y": "B K", "cache.s": "B H", "cache.alpha": "B T"}, d_y="B K", d_alpha="?B T", d_s="B H")
def decoder_step_backward(d_y: Any, d_alpha: Any | None, d_s: Any, cache: StepCache) -> StepGrads:
    """Vector-Jacobian product of :func:`decoder_step_forward` (upstream gradients in the order
    of its outputs, then the cache; derived in ``docs/derivations/attention.md``).

    Args:
        d_y: ``[B, K]``, gradient of ``y_t`` (its own loss plus what the next step sends back; not ``None``).
        d_alpha: ``[B, T]`` or ``None``, gradient of ``α_t``.
        d_s: ``[B, H]``, gradient of ``s_t`` (not ``None``).
        cache: the :class:`StepCache` of :func:`decoder_step_forward`.
    Returns:
        The gradients, a :class:`StepGrads` with fields ``y_in [B, K]``, ``s_prev [B, H]``, ``h [B, T, D]`` (through
            the context), ``uh [B, T, H]`` and ``params`` (:class:`DecoderParams` of gradients,
            ``U_a``, ``b_a``, ``W_s`` ``None``).

    Derivation: [docs/derivations/attention.md, "1. The Bahdanau decoder (SPEC §2), one step"](../derivations/attention.md#1-the-bahdanau-decoder-spec-2-one-step)
    """
    xp = rx.namespace(d_y, d_s)
    C = cache
    P = C.params
    # (8) y = softmax(o): do = y ∘ (dy - Σ dy ∘ y)
    d_o = PR.softmax_vjp(d_y, C.y, -1)
    d_y_in = d_o @ PR.transpose_last(P.W_o)
    d_c = d_o @ PR.transpose_last(P.C_o)
    d_s_out = d_o @ PR.transpose_last(P.U_o)
    g_W_o, g_U_o, g_C_o, g_b_o = PR.transpose_last(C.y_in) @ d_o, PR.transpose_last(C.s_out) @ d_o, PR.transpose_last(C.c) @ d_o, xp.sum(d_o, axis=0)
    if C.output_state == "current":
        d_s = d_s + d_s_out
        d_s_prev = xp.zeros_like(d_s_out)
    else:
        d_s_prev = d_s_out
    # (7) s = (1 - z) s_prev + z p
    d_z = d_s * (C.p - C.s_prev)
    d_p = d_s * C.z
    d_s_prev = d_s_prev + d_s * (1.0 - C.z)
    # (6) p = tanh(y_in W_p + (r s_prev) U_p + c C_p + b_p)
    d_pp = d_p * (1.0 - C.p * C.p)
    d_rs = d_pp @ PR.transpose_last(P.U_p)
    d_r = d_rs * C.s_prev
    d_s_prev = d_s_prev + d_rs * C.r
    d_y_in = d_y_in + d_pp @ PR.transpose_last(P.W_p)
    d_c = d_c + d_pp @ PR.transpose_last(P.C_p)
    g_W_p, g_U_p, g_C_p, g_b_p = PR.transpose_last(C.y_in) @ d_pp, PR.transpose_last(C.rs) @ d_pp, PR.transpose_last(C.c) @ d_pp, xp.sum(d_pp, axis=0)
    # (5) z = σ(...)
    d_zz = d_z * C.z * (1.0 - C.z)
    d_y_in = d_y_in + d_zz @ PR.transpose_last(P.W_z)
    d_s_prev = d_s_prev + d_zz @ PR.transpose_last(P.U_z)
    d_c = d_c + d_zz @ PR.transpose_last(P.C_z)
    g_W_z, g_U_z, g_C_z, g_b_z = PR.transpose_last(C.y_in) @ d_zz, PR.transpose_last(C.s_prev) @ d_zz, PR.transpose_last(C.c) @ d_zz, xp.sum(d_zz, axis=0)
    # (4) r = σ(...)
    d_rr = d_r * C.r * (1.0 - C.r)
    d_y_in = d_y_in + d_rr @ PR.transpose_last(P.W_r)
    d_s_prev = d_s_prev + d_rr @ PR.transpose_last(P.U_r)
    d_c = d_c + d_rr @ PR.transpose_last(P.C_r)
    g_W_r, g_U_r, g_C_r, g_b_r = PR.transpose_last(C.y_in) @ d_rr, PR.transpose_last(C.s_prev) @ d_rr, PR.transpose_last(C.c) @ d_rr, xp.sum(d_rr, axis=0)
    # (3) c = Σ_j α_j h_j
    d_alpha_c = (C.h @ d_c[:, :, None])[:, :, 0]  # [B, T]
    d_alpha = d_alpha_c if d_alpha is None else d_alpha + d_alpha_c
    d_h = C.alpha[:, :, None] * d_c[:, None, :]  # [B, T, D]
    # (2) α = softmax(e)
    d_e = attention_weights_backward(d_alpha, C.alpha)  # [B, T]
    # (1) e = tanh(s_prev W_a + uh) · V_a
    g_V_a = xp.sum(xp.reshape(d_e[:, :, None] * C.att, (-1, C.att.shape[-1])), axis=0)
    d_pre = (d_e[:, :, None] * P.V_a) * (1.0 - C.att * C.att)  # [B, T, H]
    d_sw = xp.sum(d_pre, axis=1)  # [B, H]
    g_W_a = PR.transpose_last(C.s_prev) @ d_sw
    d_s_prev = d_s_prev + d_sw @ PR.transpose_last(P.W_a)
    grads = DecoderParams(
        V_a=g_V_a, W_a=g_W_a, U_a=None, b_a=None,
        W_r=g_W_r, U_r=g_U_r, C_r=g_C_r, b_r=g_b_r,
        W_z=g_W_z, U_z=g_U_z, C_z=g_C_z, b_z=g_b_z,
        W_p=g_W_p, U_p=g_U_p, C_p=g_C_p, b_p=g_b_p,
        W_o=g_W_o, U_o=g_U_o, C_o=g_C_o, b_o=g_b_o,
        W_s=None,
    )
    return StepGrads(d_y_in, d_s_prev, d_h, d_pre, grads)


# ----------------------------------------------------------------------------- the decoder over T steps


class DecoderOutput(NamedTuple):
    """``y [B, T, K]`` (eq. 8), ``alpha [B, T, T]`` (``alpha[:, t, j] = α_tj``, eq. 2),
    ``s [B, T, H]`` (``s_1 .. s_T``, eq. 7)."""

    y: Any
    alpha: Any
    s: Any


class DecoderCache(NamedTuple):
    """``h [B, T, D]``, ``s0 [B, H]`` (``s_0``), ``steps``: one :class:`StepCache` per step,
    ``teacher``: whether ``y_prev`` was given, ``params``.

    With ``checkpoint_every=k > 1`` (see :func:`decoder_forward`) ``steps`` is empty and
    ``checkpoints`` holds the step inputs ``(y_{t-1}, s_{t-1})`` before steps ``0, k, 2k, ...``,
    ``every`` is ``k`` and ``inputs`` is ``(uh, output_state, mask, y_prev)``, what the
    backward needs to recompute a segment. A plain decoder has ``every = 1``.
    """

    h: Any
    s0: Any
    steps: tuple
    teacher: bool
    params: DecoderParams
    checkpoints: tuple = ()
    every: int = 1
    inputs: Any = None


class DecoderGrads(NamedTuple):
    """``h [B, T, D]``; ``y_prev [B, T, K]`` (``None`` without teacher forcing);
    ``params``: a :class:`DecoderParams` of gradients."""

    h: Any
    y_prev: Any
    params: DecoderParams


def _check_decoder(h: Any, params: Any, output_state: str = "previous", mask: Any | None = None,
                   y_prev: Any | None = None, *, checkpoint_every: Any = None) -> None:
    if checkpoint_every is not None:
        check_size("checkpoint_every", checkpoint_every)
    if output_state not in OUTPUT_STATES:
        raise DomainError(f"output_state: expected one of {OUTPUT_STATES}, got {output_state!r}")
    if not isinstance(params, DecoderParams):
        raise TypeError(f"params: expected DecoderParams, got {type(params).__name__}")
    arrays = {**{f"params.{n}": getattr(params, n) for n in PARAM_NAMES}, "h": h, "mask": mask, "y_prev": y_prev}
    specs = {**{f"params.{n}": v for n, v in PARAM_SPECS.items()},
             "h": "B T D", "mask": "?B T | mask", "y_prev": "?B T K | unit"}
    check_arrays(arrays, specs)


@checked_by(_check_decoder)
def decoder_forward(
    h: Any,
    params: DecoderParams,
    output_state: str = "previous",
    mask: Any | None = None,
    y_prev: Any | None = None,
    *,
    checkpoint_every: int | None = None,
) -> tuple[DecoderOutput, DecoderCache]:
    """The whole ``AttentionDecoder`` over ``T`` steps (SPEC §2).

    Args:
        h: ``[B, T, D]`` annotations.
        params: :class:`DecoderParams` (see :func:`init_params`).
        output_state: ``"previous"`` (``s_* = s_{t-1}`` in eq. 8, the original repository)
            or ``"current"`` (``s_* = s_t``, the paper).
        mask: optional ``[B, T]`` over the annotations, bool or 0/1 (nonzero: attended);
            masked annotations get weight exactly 0.
        y_prev: optional ``[B, T, K]`` for teacher forcing: step ``t`` (0-based) reads
            ``y_prev[:, t]`` as its ``y_{t-1}`` instead of the fed-back output (usually
            ``y_prev[:, 0] = 0`` and ``y_prev[:, t] = target[:, t-1]``).
        checkpoint_every: ``None`` or ``1`` (default): keep every step's cache. An int
            ``k > 1``: checkpointed backpropagation through time; keep only the step inputs
            ``(y_{t-1}, s_{t-1})`` before steps ``0, k, 2k, ...`` and let
            :func:`decoder_backward` recompute each segment of ``k`` steps before running it
            backward (memory ``T/k`` small states plus ``k`` step caches, each holding a
            ``[B, T, H]`` energy; one extra forward). Outputs and gradients equal the plain
            decoder's.
    Returns:
        The outputs, a :class:`DecoderOutput`, and a :class:`DecoderCache`.
    """
    B, T, D = (int(d) for d in h.shape)
    K = int(params.W_o.shape[0])
    m = _mask_bool(mask)
    xp = rx.namespace(h, *params)
    P = params
    s = xp.tanh(h[:, 0, :] @ P.W_s)  # s_0
    s0 = s
    y = xp.zeros((B, K), dtype=h.dtype)  # y_0
    uh = h @ P.U_a + P.b_a  # [B, T, H], once per sequence
    every = 1 if checkpoint_every is None else int(checkpoint_every)
    ys, alphas, ss, steps, checkpoints = [], [], [], [], []
    for t in range(T):
        y_in = y if y_prev is None else y_prev[:, t, :]
        if every > 1 and t % every == 0:
            checkpoints.append((y_in, s))
        (y, alpha, s), cache = decoder_step_forward.unchecked(y_in, s, h, uh, P, output_state, m)
        ys.append(y)
        alphas.append(alpha)
        ss.append(s)
        if every == 1:
            steps.append(cache)
    out = DecoderOutput(xp.stack(ys, axis=1), xp.stack(alphas, axis=1), xp.stack(ss, axis=1))
    if every == 1:
        return out, DecoderCache(h, s0, tuple(steps), y_prev is not None, P)
    return out, DecoderCache(h, s0, (), y_prev is not None, P, tuple(checkpoints), every,
                             (uh, output_state, m, y_prev))


def _recompute(cache: DecoderCache, start: int, stop: int) -> list:
    """The step caches of steps ``start .. stop - 1``, recomputed from the checkpoint before ``start``."""
    uh, output_state, m, y_prev = cache.inputs
    y_in, s = cache.checkpoints[start // cache.every]
    out = []
    for t in range(start, stop):
        if t > start and y_prev is not None:
            y_in = y_prev[:, t, :]
        (y, _, s), step = decoder_step_forward.unchecked(y_in, s, cache.h, uh, cache.params, output_state, m)
        out.append(step)
        y_in = y
    return out


def _check_decoder_backward(d_y: Any, d_alpha: Any, d_s: Any, cache: Any) -> None:
    if not isinstance(cache, DecoderCache):
        raise TypeError(f"cache: expected the DecoderCache of decoder_forward, got {type(cache).__name__}")
    B, T, _ = (int(d) for d in cache.h.shape)
    H, K = int(cache.params.W_a.shape[0]), int(cache.params.W_o.shape[0])
    check_arrays({"the forward's h": cache.h, "d_y": d_y, "d_alpha": d_alpha, "d_s": d_s},
                 {"the forward's h": "B T D", "d_y": "?B T K", "d_alpha": "?B T T", "d_s": "?B T H"},
                 sizes={"H": H, "K": K})


@checked_by(_check_decoder_backward)
def decoder_backward(d_y: Any | None, d_alpha: Any | None, d_s: Any | None, cache: DecoderCache) -> DecoderGrads:
    """Backpropagation through time of :func:`decoder_forward`.

    Args:
        d_y: ``[B, T, K]`` or ``None`` (zero), gradient of the outputs ``y``.
        d_alpha: ``[B, T, T]`` or ``None``, gradient of the attention weights.
        d_s: ``[B, T, H]`` or ``None``, gradient of the states.
        cache: the :class:`DecoderCache` of :func:`decoder_forward`.
    Returns:
        The gradients, a :class:`DecoderGrads`: the annotations ``h [B, T, D]`` (through ``U_a``, the contexts and
            ``s_0``), ``y_prev [B, T, K]`` when teacher-forced (else ``None``), and ``params``, a
            :class:`DecoderParams` of gradients of every parameter (the shapes of SPEC §2).

    Walking ``t = T..1``: the step receives ``d_y_t`` (its own cotangent plus, without
    teacher forcing, the ``y_{t-1}`` gradient of step ``t+1``) and ``d_s_t`` (its own
    plus the ``s_{t-1}`` gradient of step ``t+1``). Afterwards ``uh = h @ U_a + b_a``
    and ``s_0 = tanh(h[:, 0] @ W_s)`` are differentiated once.

    A cache of ``decoder_forward(..., checkpoint_every=k)`` is run segment by segment from the
    last: each segment's ``k`` steps are recomputed from its checkpoint and then run backward;
    the gradients are the plain decoder's.

    Derivation: [docs/derivations/attention.md, "2. The decoder over T steps"](../derivations/attention.md#2-the-decoder-over-t-steps-backpropagation-through-time)
    """
    C = cache
    P = C.params
    h = C.h
    xp = rx.namespace(h)
    B, T, D = (int(d) for d in h.shape)
    H, K = int(P.W_a.shape[0]), int(P.W_o.shape[0])
    zeros_y = xp.zeros((B, K), dtype=h.dtype)
    zeros_s = xp.zeros((B, H), dtype=h.dtype)
    carry_y = zeros_y  # d y_t arriving from step t+1
    carry_s = zeros_s  # d s_t arriving from step t+1
    acc: dict[str, Any] = {}
    d_h = xp.zeros(h.shape, dtype=h.dtype)
    d_uh = xp.zeros((B, T, H), dtype=h.dtype)
    d_y_prev: list[Any] = [None] * T
    every = C.every
    steps: list = list(C.steps)
    for t in reversed(range(T)):
        if every > 1 and (t == T - 1 or t % every == every - 1):
            start = t - t % every
            steps = [None] * start + _recompute(C, start, t + 1)  # this segment's caches only
        dy_t = carry_y if d_y is None else d_y[:, t, :] + carry_y
        ds_t = carry_s if d_s is None else d_s[:, t, :] + carry_s
        da_t = None if d_alpha is None else d_alpha[:, t, :]
        g = decoder_step_backward.unchecked(dy_t, da_t, ds_t, steps[t])
        steps[t] = None
        d_h = d_h + g.h
        d_uh = d_uh + g.uh
        for name, value in zip(PARAM_NAMES, g.params):
            if value is not None:
                acc[name] = value if name not in acc else acc[name] + value
        carry_s = g.s_prev
        if C.teacher:
            d_y_prev[t] = g.y_in
        else:
            carry_y = g.y_in
    # uh = h @ U_a + b_a
    h2 = xp.reshape(h, (B * T, D))
    duh2 = xp.reshape(d_uh, (B * T, H))
    acc["U_a"] = PR.transpose_last(h2) @ duh2
    acc["b_a"] = xp.sum(duh2, axis=0)
    d_h = d_h + d_uh @ PR.transpose_last(P.U_a)
    # s_0 = tanh(h[:, 0] @ W_s)
    d_s0 = carry_s * (1.0 - C.s0 * C.s0)
    h0 = h[:, 0, :]
    acc["W_s"] = PR.transpose_last(h0) @ d_s0
    d_h0 = d_s0 @ PR.transpose_last(P.W_s)
    if T > 1:
        d_h = d_h + xp.concat([d_h0[:, None, :], xp.zeros((B, T - 1, D), dtype=h.dtype)], axis=1)
    else:
        d_h = d_h + d_h0[:, None, :]
    grads = DecoderParams(**{name: acc[name] for name in PARAM_NAMES})
    y_prev_grad = xp.stack(d_y_prev, axis=1) if C.teacher else None
    return DecoderGrads(d_h, y_prev_grad, grads)
