"""The attention scores of Keras 3's built-in layers, as refmem equations (extending SPEC §3).

SPEC §3 (Luong) fixes the scores `dot`, `general`, `concat` and `location`.
`keras.layers.Attention` and `keras.layers.AdditiveAttention` compute scores with
learnable scalars and vectors that SPEC §3 does not have; to check those layers
against hand-derived gradients these are refmem's forward and backward of the three
forms, over queries `q [B, Tq, d]`, keys `k [B, Tv, d]` and values `v [B, Tv, dv]`:

* `dot_scaled`: `e_ij = λ (q_i · k_j)` with a scalar `λ` (`Attention(score_mode="dot",
  use_scale=True)`; with `λ = 1` it is SPEC §3's `dot`);
* `concat_scaled`: `e_ij = w Σ_d tanh(λ (q_id + k_jd))` with scalars `λ` and `w`
  (`Attention(score_mode="concat", use_scale=True)`; `w` is its `concat_score_weight`);
* `additive`: `e_ij = Σ_d σ_d tanh(q_id + k_jd)` with a vector `σ [d]`
  (`AdditiveAttention(use_scale=True)`; SPEC §3's `concat` score is this one with
  `q = h_t @ W_a[:H]`, `k = hs @ W_a[H:]`, `σ = v_a`).

Then, as in SPEC §3's global alignment: `a_i = softmax_j(e_ij)` (maximum subtracted)
and `out_i = Σ_j a_ij v_j`. Outputs: `weights [B, Tq, Tv]` and `output [B, Tq, dv]`.

Backward (the vector-Jacobian product; `ḡ` is the gradient of `g`):

* `v̄ = aᵀ ōut`; `ā += ōut vᵀ`; `ē = a ∘ (ā - Σ_j ā ∘ a)` (the softmax VJP);
* `dot_scaled`: with `g = q kᵀ`: `λ̄ = Σ ē ∘ g`, `q̄ = λ ē k`, `k̄ = λ ēᵀ q`;
* `concat_scaled`: with `x_ijd = λ (q_id + k_jd)`, `u = tanh(x)`: `w̄ = Σ ē ∘ Σ_d u`;
  `x̄ = w ē ∘ (1 - u²)` (`ē` broadcast over `d`); `λ̄ = Σ x̄ ∘ (q_i + k_j)`;
  `q̄_i = λ Σ_j x̄_ij`, `k̄_j = λ Σ_i x̄_ij`;
* `additive`: with `u = tanh(q_i + k_j)`: `σ̄ = Σ_{b,i,j} ē ∘ u`;
  `x̄ = ē σ ∘ (1 - u²)`; `q̄_i = Σ_j x̄_ij`, `k̄_j = Σ_i x̄_ij`.
"""

from typing import Any, Literal, NamedTuple

from .. import primitives as PR
from .. import xp as rx
from ..validation import Array, Unit, checked
from ..validation import quiet_overflow, refuse_overflow
from ._edge import old_backward

__all__ = ["SCORES", "AttentionOutputs", "AttentionCache", "AttentionGrads", "ScoresOutput", "ScoresCache",
           "ScoresGrads", "attention", "attention_vjp", "attention_forward", "attention_backward"]

SCORES = ("dot_scaled", "concat_scaled", "additive")
"""The three score forms of Keras 3's attention layers."""

Score = Literal["dot_scaled", "concat_scaled", "additive"]


class AttentionOutputs(NamedTuple):
    """The outputs of [`attention_forward`][refmem.attention.keras_scores.attention_forward]."""

    weights: Unit["B Tq Tv"]
    """`a`, the softmax of the scores over the keys."""
    output: Array["B Tq dv"]
    """`a @ v`, the weighted values."""


class AttentionCache(NamedTuple):
    """What [`attention_backward`][refmem.attention.keras_scores.attention_backward] needs."""

    score: str
    """The score form."""
    q: Array["B Tq d"]
    """The queries."""
    k: Array["B Tv d"]
    """The keys."""
    v: Array["B Tv dv"]
    """The values."""
    scale: Array["m"]
    """`λ [1]` or `σ [d]`."""
    weight: Array["1"] | None
    """`w [1]` (`concat_scaled`), else `None`."""
    g: Array["B Tq Tv"] | None
    """`dot_scaled`: `q kᵀ`."""
    u: Array["B Tq Tv d"] | None
    """`concat_scaled`, `additive`: the tanh."""
    qk: Array["B Tq Tv d"] | None
    """`concat_scaled`, `additive`: `q_i + k_j`."""
    e: Array["B Tq Tv"]
    """The scores."""
    a: Array["B Tq Tv"]
    """The weights."""


class AttentionGrads(NamedTuple):
    """The gradients of [`attention_forward`][refmem.attention.keras_scores.attention_forward]'s arguments."""

    q: Array["B Tq d"]
    """The gradient of `q`."""
    k: Array["B Tv d"]
    """The gradient of `k`."""
    v: Array["B Tv dv"]
    """The gradient of `v`."""
    scale: Array["m"]
    """The gradient of `scale`."""
    weight: Array["1"] | None = None
    """The gradient of `weight`; `None` unless `concat_scaled`."""


ScoresOutput = AttentionOutputs
"""The 0.1 name of [`AttentionOutputs`][refmem.attention.keras_scores.AttentionOutputs] (a deprecated alias)."""
ScoresCache = AttentionCache
"""The 0.1 name of [`AttentionCache`][refmem.attention.keras_scores.AttentionCache] (a deprecated alias)."""
ScoresGrads = AttentionGrads
"""The 0.1 name of [`AttentionGrads`][refmem.attention.keras_scores.AttentionGrads] (a deprecated alias)."""


def attention(q: Any, k: Any, v: Any, scale: Any, weight: Any, score: str) -> tuple[AttentionOutputs, AttentionCache]:
    """The scores of `score`, the softmax over the keys and the weighted values, unchecked."""
    xp = rx.namespace(q, k, v, scale)
    g = u = qk = None
    if score == "dot_scaled":
        g = q @ k.mT
        e = scale * g
    else:
        qk = q[:, :, None, :] + k[:, None, :, :]  # [B, Tq, Tv, d]
        if score == "concat_scaled":
            u = xp.tanh(scale * qk)
            e = weight * xp.sum(u, axis=-1)
        else:
            u = xp.tanh(qk)
            e = xp.sum(scale * u, axis=-1)
    a = PR.softmax(e, axis=-1)
    out = a @ v
    return AttentionOutputs(a, out), AttentionCache(score, q, k, v, scale, weight, g, u, qk, e, a)


def attention_vjp(d_weights: Any, d_output: Any, cache: AttentionCache) -> AttentionGrads:
    """The gradients of [`attention`][refmem.attention.keras_scores.attention] from those of its
    outputs `weights`, `output` (each may be `None`, zero), unchecked."""
    C = cache
    xp = rx.namespace(C.q, C.a)
    d_a = xp.zeros_like(C.a) if d_weights is None else d_weights
    d_v = xp.zeros_like(C.v)
    if d_output is not None:
        d_a = d_a + d_output @ C.v.mT
        d_v = C.a.mT @ d_output
    d_e = C.a * (d_a - xp.sum(d_a * C.a, axis=-1, keepdims=True))
    d_weight = None
    if C.score == "dot_scaled":
        d_scale = xp.reshape(xp.sum(d_e * C.g), (1,))
        d_q = C.scale * (d_e @ C.k)
        d_k = C.scale * (d_e.mT @ C.q)
    elif C.score == "concat_scaled":
        d_weight = xp.reshape(xp.sum(d_e * xp.sum(C.u, axis=-1)), (1,))
        d_x = (C.weight * d_e)[..., None] * (1.0 - C.u * C.u)
        d_scale = xp.reshape(xp.sum(d_x * C.qk), (1,))
        d_q = C.scale * xp.sum(d_x, axis=2)
        d_k = C.scale * xp.sum(d_x, axis=1)
    else:
        d = int(C.u.shape[-1])
        d_scale = xp.sum(xp.reshape(d_e[..., None] * C.u, (-1, d)), axis=0)
        d_x = d_e[..., None] * C.scale * (1.0 - C.u * C.u)
        d_q = xp.sum(d_x, axis=2)
        d_k = xp.sum(d_x, axis=1)
    return AttentionGrads(d_q, d_k, d_v, d_scale, d_weight)


# The shapes that depend on the score: `scale` is `λ [1]` or `σ [d]`, `weight` exists for
# `concat_scaled` only. Declared per score and checked by the same mechanism after the annotations.


def _score_shapes(score: str) -> Any:
    def shapes(q: Any, k: Any, v: Any, scale: Any, weight: Any) -> None:
        """The shapes of `attention_forward`'s arguments for one score."""

    shapes.__annotations__ = {"q": Array["B Tq d"], "k": Array["B Tv d"], "v": Array["B Tv dv"],
                              "scale": Array["d"] if score == "additive" else Array["1"],
                              "weight": Array["1"] if score == "concat_scaled" else Any, "return": None}
    return checked(shapes)


_SHAPES = {score: _score_shapes(score) for score in SCORES}


@checked
def attention_forward(q: Array["B Tq d"], k: Array["B Tv d"], v: Array["B Tv dv"], scale: Array["m"],
                      weight: Array["1"] | None = None, *, score: Score) -> tuple[AttentionOutputs, AttentionCache]:
    """Scores of `score` (see the module docstring), softmax over the keys, weighted values:
    SPEC §3's global alignment with Keras 3's scores.

    Args:
        q: `[B, Tq, d]`, the queries.
        k: `[B, Tv, d]`, the keys.
        v: `[B, Tv, dv]`, the values.
        scale: `λ [1]` for `dot_scaled` and `concat_scaled` (Keras holds it 0-d), `σ [d]` for
            `additive`.
        weight: `w [1]` for `concat_scaled`; unused (`None`) otherwise.
        score: `"dot_scaled"`, `"concat_scaled"` or `"additive"` (keyword-only).

    Returns:
        outputs: an [`AttentionOutputs`][refmem.attention.keras_scores.AttentionOutputs] `(weights [B, Tq, Tv], output [B, Tq, dv])`.
        cache: an [`AttentionCache`][refmem.attention.keras_scores.AttentionCache].

    Raises:
        refmem.errors.ShapeError: `scale` or `weight` of the wrong shape for the score.
        refmem.errors.DomainError: finite inputs whose scores overflow the dtype.
    """
    _SHAPES[score](q, k, v, scale, weight)
    with quiet_overflow():
        out, cache = attention(q, k, v, scale, weight, score)
    refuse_overflow(cache.e, "q, k, scale" + (", weight" if score == "concat_scaled" else ""), f"{score} scores")
    return out, cache


@checked(legacy=old_backward(lambda: attention_backward, "attention_backward(d_weights, d_output, cache)",
                             "attention_backward(AttentionOutputs(weights=d_weights, output=d_output), cache)",
                             ("d_weights", "d_output", "cache"), (),
                             lambda a: (AttentionOutputs(a["d_weights"], a["d_output"]), a["cache"])))
def attention_backward(d_out: AttentionOutputs, cache: AttentionCache) -> AttentionGrads:
    """Vector-Jacobian product of [`attention_forward`][refmem.attention.keras_scores.attention_forward].

    Args:
        d_out: an [`AttentionOutputs`][refmem.attention.keras_scores.AttentionOutputs] (or a tuple
            in its order) of the upstream gradients of `weights [B, Tq, Tv]` and
            `output [B, Tq, dv]`; each may be `None` (zero).
        cache: the [`AttentionCache`][refmem.attention.keras_scores.AttentionCache] of the forward.

    Returns:
        grads: an [`AttentionGrads`][refmem.attention.keras_scores.AttentionGrads] `(q [B, Tq, d], k [B, Tv, d], v [B, Tv, dv], scale, weight [1])`;
            `scale` has the shape of the forward's, `weight` is `None` unless `concat_scaled`.

    Derivation: [docs/derivations/attention.md, "3a. Keras 3 attention scores"](../derivations/attention.md#3a-keras-3-attention-scores)
    """
    d_weights, d_output = d_out
    return attention_vjp(d_weights, d_output, cache)
