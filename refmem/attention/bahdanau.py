"""SPEC §2: the Bahdanau attention decoder of datalogue/keras-attention, equations 1-8.

The layer `AttentionDecoder` reads annotations `h [B, T, D]` (usually the outputs of a
bidirectional encoder) and runs exactly `T` decoder steps. Its recurrent state is the pair
`(y_{t-1}, s_{t-1})`: the previous step's full softmax output and the GRU-like hidden state.

```text
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
```

`output_state="previous"` takes `s_* = s_{t-1}` (the original repository, seed 002);
`"current"` takes `s_* = s_t` (seed 001, the paper's eq. 4).

The forward/backward pairs follow [the backward rule](../conventions.md):

* [`attention_weights_forward`][refmem.attention.bahdanau.attention_weights_forward] /
  [`attention_weights_backward`][refmem.attention.bahdanau.attention_weights_backward]:
  equation 2 alone, with an optional mask;
* [`decoder_step_forward`][refmem.attention.bahdanau.decoder_step_forward] /
  [`decoder_step_backward`][refmem.attention.bahdanau.decoder_step_backward]: one step `t`;
* [`decoder_forward`][refmem.attention.bahdanau.decoder_forward] /
  [`decoder_backward`][refmem.attention.bahdanau.decoder_backward]: `T` steps with
  backpropagation through time, including through the fed-back `y_{t-1}` and through
  `s_0 = tanh(h[:, 0] @ W_s)`;
* [`init_params`][refmem.attention.bahdanau.init_params]: keras-attention's initialisers.

The public pairs check their arguments once; the maths lives in
[`masked_softmax`][refmem.attention.bahdanau.masked_softmax],
[`decoder_step`][refmem.attention.bahdanau.decoder_step],
[`decoder_step_vjp`][refmem.attention.bahdanau.decoder_step_vjp],
[`decoder`][refmem.attention.bahdanau.decoder] and
[`decoder_vjp`][refmem.attention.bahdanau.decoder_vjp], which trust their inputs. The
derivation of every backward line is in `docs/derivations/attention.md`, with the names used
below.
"""

import warnings
from typing import Any, Literal, NamedTuple

from .. import primitives as PR
from .. import xp as rx
from ..errors import ShapeError
from ..sampling import Sampler
from ..validation import Array, Mask, Scores, Seed, Size, Unit, checked
from ..validation import quiet_overflow, refuse_overflow
from ._edge import old_backward

__all__ = [
    "OUTPUT_STATES",
    "PARAM_NAMES",
    "DecoderParams",
    "AttentionWeightsOutputs",
    "AttentionWeightsCache",
    "AttentionWeightsGrads",
    "DecoderStepOutputs",
    "DecoderStepCache",
    "DecoderStepGrads",
    "DecoderOutputs",
    "DecoderCache",
    "DecoderGrads",
    "DecoderOutput",
    "StepCache",
    "StepGrads",
    "init_params",
    "param_shapes",
    "check_params",
    "masked_softmax",
    "decoder_step",
    "decoder_step_vjp",
    "decoder",
    "decoder_vjp",
    "attention_weights",
    "attention_weights_forward",
    "attention_weights_backward",
    "decoder_step_forward",
    "decoder_step_backward",
    "decoder_forward",
    "decoder_backward",
]

OUTPUT_STATES = ("previous", "current")
"""The two readings of equation 8 (SPEC §2, option `output_state`)."""

OutputState = Literal["previous", "current"]


class DecoderParams(NamedTuple):
    """The 21 parameters of SPEC §2, named as there (`D` input width, `H` units, `K` outputs).

    The same type holds their gradients (one field per parameter, the same shapes).
    """

    V_a: Array["H"]
    """Attention (eq. 1): the energy vector."""
    W_a: Array["H H"]
    """Attention (eq. 1): the state's map."""
    U_a: Array["D H"]
    """Attention (eq. 1): the annotations' map."""
    b_a: Array["H"]
    """Attention (eq. 1): the bias."""
    W_r: Array["K H"]
    """Reset gate (eq. 4): the previous output's map."""
    U_r: Array["H H"]
    """Reset gate (eq. 4): the state's map."""
    C_r: Array["D H"]
    """Reset gate (eq. 4): the context's map."""
    b_r: Array["H"]
    """Reset gate (eq. 4): the bias."""
    W_z: Array["K H"]
    """Update gate (eq. 5): the previous output's map."""
    U_z: Array["H H"]
    """Update gate (eq. 5): the state's map."""
    C_z: Array["D H"]
    """Update gate (eq. 5): the context's map."""
    b_z: Array["H"]
    """Update gate (eq. 5): the bias."""
    W_p: Array["K H"]
    """Proposal (eq. 6): the previous output's map."""
    U_p: Array["H H"]
    """Proposal (eq. 6): the reset state's map."""
    C_p: Array["D H"]
    """Proposal (eq. 6): the context's map."""
    b_p: Array["H"]
    """Proposal (eq. 6): the bias."""
    W_o: Array["K K"]
    """Output (eq. 8): the previous output's map."""
    U_o: Array["H K"]
    """Output (eq. 8): the state's map."""
    C_o: Array["D K"]
    """Output (eq. 8): the context's map."""
    b_o: Array["K"]
    """Output (eq. 8): the bias."""
    W_s: Array["D H"]
    """Initial state: `s_0 = tanh(h[:, 0] @ W_s)`."""


PARAM_NAMES: tuple[str, ...] = DecoderParams._fields
"""Parameter names in SPEC order."""


def param_shapes(D: int, H: int, K: int) -> dict[str, tuple[tuple[int, ...], str]]:
    """Every parameter's shape in numbers and in SPEC's letters, e.g. `"C_r": ((D, H), "(D, H)")`."""
    sizes = {"D": D, "H": H, "K": K}
    out = {}
    for name, ann in DecoderParams.__annotations__.items():
        out[name] = (tuple(sizes[a] for a in ann.axes), ann.symbols)
    return out


@checked
def check_params(params: DecoderParams, D: Size) -> tuple[int, int]:
    """Refuse parameters of the wrong shape; return `(H, K)`.

    Args:
        params: the [`DecoderParams`][refmem.attention.bahdanau.DecoderParams].
        D: the input width the parameters must read.

    Returns:
        sizes: `(H, K)`, the units and the outputs.

    Raises:
        refmem.errors.ShapeError: a parameter of the wrong shape, named `params.<name>`.
    """
    if int(params.U_a.shape[0]) != D:
        raise ShapeError(f"params.U_a: expected shape (D, H) = ({D}, {int(params.U_a.shape[1])}), "
                         f"got {tuple(int(s) for s in params.U_a.shape)}")
    return int(params.W_a.shape[0]), int(params.W_o.shape[0])


# ----------------------------------------------------------------------------- initialisers


def _glorot_uniform(sampler: Sampler, shape: tuple[int, ...]) -> Any:
    # Keras 2 (the keras-attention era) `_compute_fans`: a matrix has fan_in = rows,
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
    # Keras `Orthogonal(gain=1)`: the SVD of a standard normal draw; `u` when it has
    # the matrix's shape (rows ≥ columns), otherwise `vᵀ` (orthonormal rows).
    a = sampler.normal(shape)
    u, _, vh = xp.linalg.svd(a, full_matrices=False)
    return u if tuple(u.shape) == tuple(shape) else vh


@checked
def init_params(xp: Any, D: Size, H: Size, K: Size, seed: Seed = 0, dtype: Any = None) -> DecoderParams:
    """Parameters initialised as keras-attention's `AttentionDecoder.build` does.

    * `V_a`, `W_a`, `U_a`: `glorot_uniform` (`kernel_initializer`), with Keras 2's fans
      (`V_a [H]` is a vector: fan_in = fan_out = sqrt(H), so the limit is `sqrt(3 / sqrt(H))`;
      tf.keras would take fan_in = fan_out = H, giving `sqrt(3 / H)`: keras-attention imports
      standalone Keras 2);
    * every gate, output and `W_s` matrix: `orthogonal` (`recurrent_initializer`, gain 1; the
      SVD of a standard normal draw);
    * every bias: zeros.

    The draws are made in float64 with one `refmem.sampling.Sampler` in the field order of
    [`DecoderParams`][refmem.attention.bahdanau.DecoderParams], then cast to `dtype`, so a seed
    gives the same parameters on every backend and in every precision (up to the cast).

    Args:
        xp: the array namespace to create the parameters in (`rx.backend("numpy")`, ...).
        D: input width (SPEC §2).
        H: units.
        K: output classes.
        seed: the seed of the draws.
        dtype: the floating dtype of the result (default `xp.float64`).

    Returns:
        params: the [`DecoderParams`][refmem.attention.bahdanau.DecoderParams].
    """
    dtype = xp.float64 if dtype is None else dtype
    s = Sampler(xp, seed)
    values: dict[str, Any] = {}
    for name, (shape, _) in param_shapes(D, H, K).items():
        if name.startswith("b_"):
            values[name] = xp.zeros(shape, dtype=dtype)
        elif name in ("V_a", "W_a", "U_a"):
            values[name] = xp.astype(_glorot_uniform(s, shape), dtype)
        else:
            values[name] = xp.astype(_orthogonal(xp, s, shape), dtype)
    return DecoderParams(**values)


# ----------------------------------------------------------------------------- equation 2 alone


def masked_softmax(e: Any, mask: Any | None = None) -> Any:
    """Equation 2, `α = softmax_j(e)` along the last axis with the maximum subtracted, unchecked.

    `mask` is `None` or a boolean array of `e`'s shape (`True`: attended). Masked positions get
    weight exactly 0 and take no part in the maximum or the sum; a row with no attended position
    gets all-zero weights (a context of 0) rather than NaN. `e` must be finite where `mask` is
    `True` (anything finite elsewhere).
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


def _as_bool(mask: Any) -> Any:
    """A (validated) mask as a boolean array (`True`: attend); `None` stays `None`."""
    if mask is None:
        return None
    xp = rx.namespace(mask)
    if xp.isdtype(mask.dtype, "bool"):
        return mask
    return mask != 0


class AttentionWeightsOutputs(NamedTuple):
    """The output of [`attention_weights_forward`][refmem.attention.bahdanau.attention_weights_forward]."""

    alpha: Unit["... T"]
    """`α`, the weights: each row sums to 1 over its attended positions (0 for a fully masked row)."""


class AttentionWeightsCache(NamedTuple):
    """What [`attention_weights_backward`][refmem.attention.bahdanau.attention_weights_backward] needs: the weights."""

    alpha: Array["... T"]
    """`α`, 0 at every masked position."""


class AttentionWeightsGrads(NamedTuple):
    """The gradient of [`attention_weights_forward`][refmem.attention.bahdanau.attention_weights_forward]'s argument."""

    e: Array["... T"]
    """The gradient of the energies `e` (0 at every masked position)."""


@checked
def attention_weights_forward(e: Scores["... T"], *,
                              mask: Mask["... T"] | None = None) -> tuple[AttentionWeightsOutputs, AttentionWeightsCache]:
    """Equation 2 of SPEC §2: `α = softmax_j(e)` along the last axis, the maximum subtracted first.

    A position is masked by `mask` (0 or `False`) or by an energy of `-inf` (the additive mask
    of other libraries); both give it weight exactly 0, keep it out of the maximum and the sum,
    and give its energy the gradient 0. A row with no attended position gets all-zero weights
    (a context of 0) rather than NaN.

    Args:
        e: `[..., T]`, the energies of eq. 1: finite, or `-inf` at a position that gets no weight.
        mask: `None` or `[..., T]` (the shape of `e`), bool or 0/1; `True`/1: attended
            (keyword-only).

    Returns:
        outputs: an [`AttentionWeightsOutputs`][refmem.attention.bahdanau.AttentionWeightsOutputs] `(alpha [..., T])`.
        cache: an [`AttentionWeightsCache`][refmem.attention.bahdanau.AttentionWeightsCache] (the weights).

    Raises:
        refmem.errors.DomainError: an energy that is NaN or `+inf`, or a mask value other than 0/1.
    """
    xp = rx.namespace(e)
    keep = _as_bool(mask)
    minus_inf = PR.real_part(e) == -float("inf")
    if bool(xp.any(minus_inf)):
        e = xp.where(minus_inf, xp.zeros_like(e), e)
        keep = ~minus_inf if keep is None else keep & ~minus_inf
    alpha = masked_softmax(e, keep)
    return AttentionWeightsOutputs(alpha), AttentionWeightsCache(alpha)


@checked
def _weights_of_01_call(d_alpha: Array["... T"], alpha: Unit["... T"]) -> AttentionWeightsCache:
    """The 0.1 form `attention_weights_backward(d_alpha, alpha)` passes the weights themselves,
    not the forward's cache: they are checked as 0.1 checked them (`alpha` weights in [0, 1])."""
    return AttentionWeightsCache(alpha)


@checked(legacy=old_backward(lambda: attention_weights_backward, "attention_weights_backward(d_alpha, alpha)",
                             "attention_weights_backward((d_alpha,), cache)", ("d_alpha", "alpha"), (),
                             lambda a: ((a["d_alpha"],), _weights_of_01_call(a["d_alpha"], a["alpha"])),
                             lambda g: g.e))
def attention_weights_backward(d_out: AttentionWeightsOutputs, cache: AttentionWeightsCache) -> AttentionWeightsGrads:
    """VJP of [`attention_weights_forward`][refmem.attention.bahdanau.attention_weights_forward]: `d_e = α ∘ (d_α - Σ_j d_α ∘ α)`.

    The masked positions, where `α = 0`, get `d_e = 0`.

    Args:
        d_out: an [`AttentionWeightsOutputs`][refmem.attention.bahdanau.AttentionWeightsOutputs]
            (or a 1-tuple): the gradient of `alpha [..., T]` (`None`: zero).
        cache: the [`AttentionWeightsCache`][refmem.attention.bahdanau.AttentionWeightsCache] of the forward.

    Returns:
        grads: an [`AttentionWeightsGrads`][refmem.attention.bahdanau.AttentionWeightsGrads] `(e [..., T])`.

    Derivation: [docs/derivations/attention.md, "The masked softmax"](../derivations/attention.md#the-masked-softmax-attention_weights_backward)
    """
    (d_alpha,) = d_out
    if d_alpha is None:
        return AttentionWeightsGrads(PR.zeros_if_none(None, cache.alpha))
    return AttentionWeightsGrads(PR.softmax_vjp(d_alpha, cache.alpha, -1))


def attention_weights(e: Any, mask: Any | None = None) -> Any:
    """Deprecated (the 0.1 value-only form): `attention_weights_forward(e, mask=mask)[0].alpha`.

    Args:
        e: `[..., T]`, the energies.
        mask: `None` or `[..., T]`, bool or 0/1.

    Returns:
        alpha: `[..., T]`, the weights.
    """
    warnings.warn("attention_weights(e, mask) is the refmem 0.1 call form, deprecated and removed after 0.2: "
                  "call attention_weights_forward(e, mask=mask)[0].alpha (docs/migration.md)",
                  DeprecationWarning, stacklevel=2)
    return attention_weights_forward(e, mask=mask)[0].alpha


# ----------------------------------------------------------------------------- one step


class DecoderStepOutputs(NamedTuple):
    """The outputs of one step ([`decoder_step_forward`][refmem.attention.bahdanau.decoder_step_forward])."""

    y: Unit["B K"]
    """`y_t`, the output distribution (eq. 8)."""
    alpha: Unit["B T"]
    """`α_t`, the attention weights (eq. 2)."""
    s: Array["B H"]
    """`s_t`, the state (eq. 7)."""


class DecoderStepCache(NamedTuple):
    """What [`decoder_step_backward`][refmem.attention.bahdanau.decoder_step_backward] needs."""

    y_in: Array["B K"]
    """`y_{t-1}`."""
    s_prev: Array["B H"]
    """`s_{t-1}`."""
    h: Array["B T D"]
    """The annotations."""
    att: Array["B T H"]
    """`tanh(s_{t-1} @ W_a + h @ U_a + b_a)` (eq. 1)."""
    alpha: Array["B T"]
    """`α_t` (eq. 2)."""
    c: Array["B D"]
    """`c_t` (eq. 3)."""
    r: Array["B H"]
    """`r_t` (eq. 4)."""
    z: Array["B H"]
    """`z_t` (eq. 5)."""
    p: Array["B H"]
    """`p_t` (eq. 6)."""
    rs: Array["B H"]
    """`r_t ∘ s_{t-1}` (eq. 6)."""
    s: Array["B H"]
    """`s_t` (eq. 7)."""
    s_out: Array["B H"]
    """`s_*` of eq. 8: `s_prev` or `s`."""
    y: Array["B K"]
    """`y_t` (eq. 8)."""
    params: DecoderParams
    """The parameters."""
    output_state: str
    """The reading of eq. 8."""


class DecoderStepGrads(NamedTuple):
    """The gradients of [`decoder_step_forward`][refmem.attention.bahdanau.decoder_step_forward]'s arguments."""

    y_in: Array["B K"]
    """The gradient of `y_in`."""
    s_prev: Array["B H"]
    """The gradient of `s_prev`."""
    h: Array["B T D"]
    """The gradient of `h` through the context (eq. 3)."""
    uh: Array["B T H"]
    """The gradient of `uh = h @ U_a + b_a`."""
    params: DecoderParams
    """The gradients of the parameters; `U_a`, `b_a` and `W_s` are `None` (zero: a step reads
    them only through `uh` and `s_prev`)."""


StepCache = DecoderStepCache
"""The 0.1 name of [`DecoderStepCache`][refmem.attention.bahdanau.DecoderStepCache] (a deprecated alias)."""
StepGrads = DecoderStepGrads
"""The 0.1 name of [`DecoderStepGrads`][refmem.attention.bahdanau.DecoderStepGrads] (a deprecated alias)."""


def decoder_step(y_in: Any, s_prev: Any, h: Any, uh: Any, params: DecoderParams, output_state: str = "previous",
                 mask: Any | None = None) -> tuple[DecoderStepOutputs, DecoderStepCache]:
    """One decoder step, SPEC §2 equations 1-8, unchecked; `mask` is `None` or boolean `[B, T]`."""
    xp = rx.namespace(y_in, s_prev, h, uh)
    P = params
    # (1) energies; the s_{t-1} @ W_a term is broadcast over the T annotations
    att = xp.tanh((s_prev @ P.W_a)[:, None, :] + uh)  # [B, T, H]
    e = xp.sum(att * P.V_a, axis=-1)  # [B, T]
    # (2) weights, (3) context
    alpha = masked_softmax(e, mask)
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
    return DecoderStepOutputs(y, alpha, s), DecoderStepCache(y_in, s_prev, h, att, alpha, c, r, z, p, rs, s, s_out,
                                                             y, P, output_state)


def decoder_step_vjp(d_y: Any, d_alpha: Any, d_s: Any, cache: DecoderStepCache) -> DecoderStepGrads:
    """The gradients of one step from those of its outputs `y`, `alpha`, `s` (each may be `None`,
    zero), unchecked. `docs/derivations/attention.md` §1 derives it line by line."""
    C = cache
    P = C.params
    xp = rx.namespace(C.y)
    if d_y is None:
        d_y = xp.zeros_like(C.y)
    if d_s is None:
        d_s = xp.zeros_like(C.s)
    y_in_t, s_prev_t, c_t = C.y_in.mT, C.s_prev.mT, C.c.mT
    # (8) y = softmax(o): do = y ∘ (dy - Σ dy ∘ y)
    d_o = PR.softmax_vjp(d_y, C.y, -1)
    d_y_in = d_o @ P.W_o.mT
    d_c = d_o @ P.C_o.mT
    d_s_out = d_o @ P.U_o.mT
    g_W_o, g_U_o, g_C_o, g_b_o = y_in_t @ d_o, C.s_out.mT @ d_o, c_t @ d_o, xp.sum(d_o, axis=0)
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
    d_rs = d_pp @ P.U_p.mT
    d_r = d_rs * C.s_prev
    d_s_prev = d_s_prev + d_rs * C.r
    d_y_in = d_y_in + d_pp @ P.W_p.mT
    d_c = d_c + d_pp @ P.C_p.mT
    g_W_p, g_U_p, g_C_p, g_b_p = y_in_t @ d_pp, C.rs.mT @ d_pp, c_t @ d_pp, xp.sum(d_pp, axis=0)
    # (5) z = σ(...)
    d_zz = d_z * C.z * (1.0 - C.z)
    d_y_in = d_y_in + d_zz @ P.W_z.mT
    d_s_prev = d_s_prev + d_zz @ P.U_z.mT
    d_c = d_c + d_zz @ P.C_z.mT
    g_W_z, g_U_z, g_C_z, g_b_z = y_in_t @ d_zz, s_prev_t @ d_zz, c_t @ d_zz, xp.sum(d_zz, axis=0)
    # (4) r = σ(...)
    d_rr = d_r * C.r * (1.0 - C.r)
    d_y_in = d_y_in + d_rr @ P.W_r.mT
    d_s_prev = d_s_prev + d_rr @ P.U_r.mT
    d_c = d_c + d_rr @ P.C_r.mT
    g_W_r, g_U_r, g_C_r, g_b_r = y_in_t @ d_rr, s_prev_t @ d_rr, c_t @ d_rr, xp.sum(d_rr, axis=0)
    # (3) c = Σ_j α_j h_j
    d_alpha_c = (C.h @ d_c[:, :, None])[:, :, 0]  # [B, T]
    d_alpha = d_alpha_c if d_alpha is None else d_alpha + d_alpha_c
    d_h = C.alpha[:, :, None] * d_c[:, None, :]  # [B, T, D]
    # (2) α = softmax(e), 0 where masked
    d_e = PR.softmax_vjp(d_alpha, C.alpha, -1)  # [B, T]
    # (1) e = tanh(s_prev W_a + uh) · V_a
    g_V_a = xp.sum(xp.reshape(d_e[:, :, None] * C.att, (-1, C.att.shape[-1])), axis=0)
    d_pre = (d_e[:, :, None] * P.V_a) * (1.0 - C.att * C.att)  # [B, T, H]
    d_sw = xp.sum(d_pre, axis=1)  # [B, H]
    g_W_a = s_prev_t @ d_sw
    d_s_prev = d_s_prev + d_sw @ P.W_a.mT
    grads = DecoderParams(g_V_a, g_W_a, None, None, g_W_r, g_U_r, g_C_r, g_b_r, g_W_z, g_U_z, g_C_z, g_b_z,
                          g_W_p, g_U_p, g_C_p, g_b_p, g_W_o, g_U_o, g_C_o, g_b_o, None)
    return DecoderStepGrads(d_y_in, d_s_prev, d_h, d_pre, grads)


@checked
def decoder_step_forward(y_in: Unit["B K"], s_prev: Array["B H"], h: Array["B T D"], uh: Array["B T H"],
                         params: DecoderParams, *, output_state: OutputState = "previous",
                         mask: Mask["B T"] | None = None) -> tuple[DecoderStepOutputs, DecoderStepCache]:
    """One decoder step, SPEC §2 equations 1-8.

    Args:
        y_in: `[B, K]`, `y_{t-1}` (the previous softmax output, or a teacher-forced one).
        s_prev: `[B, H]`, `s_{t-1}`.
        h: `[B, T, D]`, the annotations.
        uh: `[B, T, H]`, `h @ U_a + b_a` (computed once per sequence).
        params: the [`DecoderParams`][refmem.attention.bahdanau.DecoderParams].
        output_state: `"previous"` or `"current"`, which state eq. 8 reads (keyword-only).
        mask: `None` or `[B, T]`, bool or 0/1 (`True`/1: attended; keyword-only).

    Returns:
        outputs: a [`DecoderStepOutputs`][refmem.attention.bahdanau.DecoderStepOutputs] `(y [B, K], alpha [B, T], s [B, H])`.
        cache: a [`DecoderStepCache`][refmem.attention.bahdanau.DecoderStepCache].

    Raises:
        refmem.errors.DomainError: finite inputs whose energies or logits overflow the dtype.
    """
    with quiet_overflow():
        out, cache = decoder_step(y_in, s_prev, h, uh, params, output_state, _as_bool(mask))
    refuse_overflow(out.alpha, "params.V_a", "the energies e = tanh(...) · V_a (eq. 1)", "alpha")
    refuse_overflow(out.y, "y_in, s_prev, h, params", "the logits of eq. 8", "y")
    return out, cache


@checked(legacy=old_backward(lambda: decoder_step_backward, "decoder_step_backward(d_y, d_alpha, d_s, cache)",
                             "decoder_step_backward(DecoderStepOutputs(y=d_y, alpha=d_alpha, s=d_s), cache)",
                             ("d_y", "d_alpha", "d_s", "cache"), (),
                             lambda a: (DecoderStepOutputs(a["d_y"], a["d_alpha"], a["d_s"]), a["cache"])))
def decoder_step_backward(d_out: DecoderStepOutputs, cache: DecoderStepCache) -> DecoderStepGrads:
    """Vector-Jacobian product of [`decoder_step_forward`][refmem.attention.bahdanau.decoder_step_forward].

    Args:
        d_out: a [`DecoderStepOutputs`][refmem.attention.bahdanau.DecoderStepOutputs] (or a tuple
            in its order) of the upstream gradients `y [B, K]` (its own loss plus what the next
            step sends back), `alpha [B, T]` and `s [B, H]`; each may be `None` (zero).
        cache: the [`DecoderStepCache`][refmem.attention.bahdanau.DecoderStepCache] of the forward.

    Returns:
        grads: a [`DecoderStepGrads`][refmem.attention.bahdanau.DecoderStepGrads] `(y_in [B, K], s_prev [B, H], h [B, T, D], uh [B, T, H], params)`;
            `h` only through the context, and `params.U_a`, `params.b_a`, `params.W_s` are `None`
            (the step reads them only through `uh` and `s_prev`).

    Derivation: [docs/derivations/attention.md, "1. The Bahdanau decoder (SPEC §2), one step"](../derivations/attention.md#1-the-bahdanau-decoder-spec-2-one-step)
    """
    d_y, d_alpha, d_s = d_out
    return decoder_step_vjp(d_y, d_alpha, d_s, cache)


# ----------------------------------------------------------------------------- the decoder over T steps


class DecoderOutputs(NamedTuple):
    """The outputs of the decoder ([`decoder_forward`][refmem.attention.bahdanau.decoder_forward])."""

    y: Unit["B T K"]
    """`y_1 .. y_T`, the output distributions (eq. 8)."""
    alpha: Unit["B T T"]
    """The attention weights, `alpha[:, t, j] = α_tj` (eq. 2)."""
    s: Array["B T H"]
    """`s_1 .. s_T`, the states (eq. 7)."""


class DecoderCache(NamedTuple):
    """What [`decoder_backward`][refmem.attention.bahdanau.decoder_backward] needs from [`decoder_forward`][refmem.attention.bahdanau.decoder_forward]."""

    h: Array["B T D"]
    """The annotations."""
    s0: Array["B H"]
    """`s_0 = tanh(h[:, 0] @ W_s)`."""
    uh: Array["B T H"]
    """`h @ U_a + b_a`."""
    params: DecoderParams
    """The parameters."""
    y_prev: Array["B T K"] | None
    """The teacher-forced inputs, or `None` (free running)."""
    mask: Mask["B T"] | None
    """The mask as booleans, or `None`."""
    output_state: str
    """The reading of eq. 8."""
    steps: tuple[DecoderStepCache, ...]
    """One [`DecoderStepCache`][refmem.attention.bahdanau.DecoderStepCache] per step (empty when checkpointed)."""
    checkpoints: tuple = ()
    """With `checkpoint_every = k > 1`: the step inputs `(y_{t-1}, s_{t-1})` before steps `0, k, 2k, ...`."""
    every: int = 1
    """`k`, 1 for a plain decoder."""

    @property
    def teacher(self) -> bool:
        """Whether `y_prev` was given (teacher forcing)."""
        return self.y_prev is not None


class DecoderGrads(NamedTuple):
    """The gradients of [`decoder_forward`][refmem.attention.bahdanau.decoder_forward]'s arguments, in its order."""

    h: Array["B T D"]
    """The gradient of the annotations (through `U_a`, the contexts and `s_0`)."""
    params: DecoderParams
    """The gradients of every parameter."""
    y_prev: Array["B T K"] | None = None
    """The gradient of the teacher-forced inputs; `None` without teacher forcing."""


DecoderOutput = DecoderOutputs
"""The 0.1 name of [`DecoderOutputs`][refmem.attention.bahdanau.DecoderOutputs] (a deprecated alias)."""


class _DecoderGrads01(NamedTuple):
    """The 0.1 field order of the decoder's gradients, returned to the 0.1 call form only."""

    h: Any
    y_prev: Any
    params: DecoderParams


def decoder(h: Any, params: DecoderParams, y_prev: Any | None = None, output_state: str = "previous",
            mask: Any | None = None, checkpoint_every: int | None = None) -> tuple[DecoderOutputs, DecoderCache]:
    """The decoder over `T` steps (SPEC §2), unchecked; `mask` is `None` or boolean `[B, T]`.

    With `checkpoint_every = k > 1` only the step inputs before steps `0, k, 2k, ...` are kept;
    [`decoder_vjp`][refmem.attention.bahdanau.decoder_vjp] recomputes each segment.
    """
    B, T, D = (int(d) for d in h.shape)
    K = int(params.W_o.shape[0])
    xp = rx.namespace(h)
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
        (y, alpha, s), cache = decoder_step(y_in, s, h, uh, P, output_state, mask)
        ys.append(y)
        alphas.append(alpha)
        ss.append(s)
        if every == 1:
            steps.append(cache)
    out = DecoderOutputs(xp.stack(ys, axis=1), xp.stack(alphas, axis=1), xp.stack(ss, axis=1))
    return out, DecoderCache(h, s0, uh, P, y_prev, mask, output_state, tuple(steps), tuple(checkpoints), every)


def _recompute(cache: DecoderCache, start: int, stop: int) -> list:
    """The step caches of steps `start .. stop - 1`, recomputed from the checkpoint before `start`."""
    y_in, s = cache.checkpoints[start // cache.every]
    out = []
    for t in range(start, stop):
        if t > start and cache.y_prev is not None:
            y_in = cache.y_prev[:, t, :]
        (y, _, s), step = decoder_step(y_in, s, cache.h, cache.uh, cache.params, cache.output_state, cache.mask)
        out.append(step)
        y_in = y
    return out


def decoder_vjp(d_y: Any, d_alpha: Any, d_s: Any, cache: DecoderCache) -> DecoderGrads:
    """Backpropagation through time of [`decoder`][refmem.attention.bahdanau.decoder] from the
    gradients of its outputs `y`, `alpha`, `s` (each may be `None`, zero), unchecked.

    Walking `t = T..1`: the step receives `d_y_t` (its own cotangent plus, without teacher
    forcing, the `y_{t-1}` gradient of step `t+1`) and `d_s_t` (its own plus the `s_{t-1}`
    gradient of step `t+1`). Afterwards `uh = h @ U_a + b_a` and `s_0 = tanh(h[:, 0] @ W_s)` are
    differentiated once (`docs/derivations/attention.md` §2).
    """
    C = cache
    P = C.params
    h = C.h
    xp = rx.namespace(h)
    B, T, D = (int(d) for d in h.shape)
    H, K = int(P.W_a.shape[0]), int(P.W_o.shape[0])
    teacher = C.y_prev is not None
    carry_y = xp.zeros((B, K), dtype=h.dtype)  # d y_t arriving from step t+1
    carry_s = xp.zeros((B, H), dtype=h.dtype)  # d s_t arriving from step t+1
    acc: list[Any] = [None] * len(PARAM_NAMES)
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
        g = decoder_step_vjp(dy_t, da_t, ds_t, steps[t])
        steps[t] = None
        d_h = d_h + g.h
        d_uh = d_uh + g.uh
        for i, value in enumerate(g.params):
            if value is not None:
                acc[i] = value if acc[i] is None else acc[i] + value
        carry_s = g.s_prev
        if teacher:
            d_y_prev[t] = g.y_in
        else:
            carry_y = g.y_in
    grads = dict(zip(PARAM_NAMES, acc))
    # uh = h @ U_a + b_a
    h2 = xp.reshape(h, (B * T, D))
    duh2 = xp.reshape(d_uh, (B * T, H))
    grads["U_a"] = h2.mT @ duh2
    grads["b_a"] = xp.sum(duh2, axis=0)
    d_h = d_h + d_uh @ P.U_a.mT
    # s_0 = tanh(h[:, 0] @ W_s)
    d_s0 = carry_s * (1.0 - C.s0 * C.s0)
    h0 = h[:, 0, :]
    grads["W_s"] = h0.mT @ d_s0
    d_h0 = d_s0 @ P.W_s.mT
    if T > 1:
        d_h = d_h + xp.concat([d_h0[:, None, :], xp.zeros((B, T - 1, D), dtype=h.dtype)], axis=1)
    else:
        d_h = d_h + d_h0[:, None, :]
    y_prev_grad = xp.stack(d_y_prev, axis=1) if teacher else None
    return DecoderGrads(d_h, DecoderParams(**grads), y_prev_grad)


@checked
def decoder_forward(h: Array["B T D"], params: DecoderParams, y_prev: Unit["B T K"] | None = None, *,
                    output_state: OutputState = "previous", mask: Mask["B T"] | None = None,
                    checkpoint_every: Size | None = None) -> tuple[DecoderOutputs, DecoderCache]:
    """The whole `AttentionDecoder` over `T` steps (SPEC §2).

    Args:
        h: `[B, T, D]`, the annotations.
        params: the [`DecoderParams`][refmem.attention.bahdanau.DecoderParams] (see
            [`init_params`][refmem.attention.bahdanau.init_params]).
        y_prev: `None`, or `[B, T, K]` for teacher forcing: step `t` (0-based) reads
            `y_prev[:, t]` as its `y_{t-1}` instead of the fed-back output (usually
            `y_prev[:, 0] = 0` and `y_prev[:, t] = target[:, t-1]`).
        output_state: `"previous"` (`s_* = s_{t-1}` in eq. 8, the original repository) or
            `"current"` (`s_* = s_t`, the paper); keyword-only.
        mask: `None` or `[B, T]` over the annotations, bool or 0/1 (nonzero: attended); masked
            annotations get weight exactly 0 (keyword-only).
        checkpoint_every: `None` or `1` (default): keep every step's cache. An integer `k > 1`:
            checkpointed backpropagation through time; keep only the step inputs
            `(y_{t-1}, s_{t-1})` before steps `0, k, 2k, ...` and let
            [`decoder_backward`][refmem.attention.bahdanau.decoder_backward] recompute each
            segment of `k` steps before running it backward (memory `T/k` small states plus `k`
            step caches, each holding a `[B, T, H]` energy; one extra forward). Outputs and
            gradients equal the plain decoder's (keyword-only).

    Returns:
        outputs: a [`DecoderOutputs`][refmem.attention.bahdanau.DecoderOutputs] `(y [B, T, K], alpha [B, T, T], s [B, T, H])`.
        cache: a [`DecoderCache`][refmem.attention.bahdanau.DecoderCache].

    Raises:
        refmem.errors.DomainError: finite inputs whose energies or logits overflow the dtype.
    """
    with quiet_overflow():
        out, cache = decoder(h, params, y_prev, output_state, _as_bool(mask), checkpoint_every)
    refuse_overflow(out.alpha, "params.V_a", "the energies e = tanh(...) · V_a (eq. 1)", "alpha")
    refuse_overflow(out.y, "h, params", "the logits of eq. 8", "y")
    return out, cache


@checked(legacy=old_backward(lambda: decoder_backward, "decoder_backward(d_y, d_alpha, d_s, cache)",
                             "decoder_backward(DecoderOutputs(y=d_y, alpha=d_alpha, s=d_s), cache)",
                             ("d_y", "d_alpha", "d_s", "cache"), (),
                             lambda a: (DecoderOutputs(a["d_y"], a["d_alpha"], a["d_s"]), a["cache"]),
                             lambda g: _DecoderGrads01(g.h, g.y_prev, g.params)))
def decoder_backward(d_out: DecoderOutputs, cache: DecoderCache) -> DecoderGrads:
    """Backpropagation through time of [`decoder_forward`][refmem.attention.bahdanau.decoder_forward].

    Walking `t = T..1`: the step receives `d_y_t` (its own cotangent plus, without teacher
    forcing, the `y_{t-1}` gradient of step `t+1`) and `d_s_t` (its own plus the `s_{t-1}`
    gradient of step `t+1`). Afterwards `uh = h @ U_a + b_a` and `s_0 = tanh(h[:, 0] @ W_s)` are
    differentiated once. A cache of `decoder_forward(..., checkpoint_every=k)` is run segment by
    segment from the last: each segment's `k` steps are recomputed from its checkpoint and then
    run backward; the gradients are the plain decoder's.

    Args:
        d_out: a [`DecoderOutputs`][refmem.attention.bahdanau.DecoderOutputs] (or a tuple in its
            order) of the upstream gradients `y [B, T, K]`, `alpha [B, T, T]` and `s [B, T, H]`;
            each may be `None` (zero).
        cache: the [`DecoderCache`][refmem.attention.bahdanau.DecoderCache] of the forward.

    Returns:
        grads: a [`DecoderGrads`][refmem.attention.bahdanau.DecoderGrads] `(h [B, T, D], params, y_prev [B, T, K])`,
            in the order of the forward's arguments; `y_prev` is `None` without teacher forcing.

    Derivation: [docs/derivations/attention.md, "2. The decoder over T steps"](../derivations/attention.md#2-the-decoder-over-t-steps-backpropagation-through-time)
    """
    d_y, d_alpha, d_s = d_out
    return decoder_vjp(d_y, d_alpha, d_s, cache)
