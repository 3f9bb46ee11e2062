"""The attention scores of Keras 3's built-in layers, as refmem equations (extending SPEC §3).

SPEC §3 (Luong) fixes the scores ``dot``, ``general``, ``concat`` and ``location``.
``keras.layers.Attention`` and ``keras.layers.AdditiveAttention`` compute scores with
learnable scalars and vectors that SPEC §3 does not have; to check those layers
against hand-derived gradients these are refmem's forward and backward of the three
forms, over queries ``q [B, Tq, d]``, keys ``k [B, Tv, d]`` and values ``v [B, Tv, dv]``:

* ``dot_scaled``: ``e_ij = λ (q_i · k_j)`` with a scalar ``λ`` (``Attention(score_mode="dot",
  use_scale=True)``; with ``λ = 1`` it is SPEC §3's ``dot``);
* ``concat_scaled``: ``e_ij = w Σ_d tanh(λ (q_id + k_jd))`` with scalars ``λ`` and ``w``
  (``Attention(score_mode="concat", use_scale=True)``; ``w`` is its ``concat_score_weight``);
* ``additive``: ``e_ij = Σ_d σ_d tanh(q_id + k_jd)`` with a vector ``σ [d]``
  (``AdditiveAttention(use_scale=True)``; SPEC §3's ``concat`` score is this one with
  ``q = h_t @ W_a[:H]``, ``k = hs @ W_a[H:]``, ``σ = v_a``).

Then, as in SPEC §3's global alignment: ``a_i = softmax_j(e_ij)`` (maximum subtracted)
and ``out_i = Σ_j a_ij v_j``. Outputs: ``weights [B, Tq, Tv]`` and ``output [B, Tq, dv]``.

Backward (the vector-Jacobian product; ``ḡ`` is the gradient of ``g``):

* ``v̄ = aᵀ ōut``; ``ā += ōut vᵀ``; ``ē = a ∘ (ā - Σ_j ā ∘ a)`` (the softmax VJP);
* ``dot_scaled``: with ``g = q kᵀ``: ``λ̄ = Σ ē ∘ g``, ``q̄ = λ ē k``, ``k̄ = λ ēᵀ q``;
* ``concat_scaled``: with ``x_ijd = λ (q_id + k_jd)``, ``u = tanh(x)``: ``w̄ = Σ ē ∘ Σ_d u``;
  ``x̄ = w ē ∘ (1 - u²)`` (``ē`` broadcast over ``d``); ``λ̄ = Σ x̄ ∘ (q_i + k_j)``;
  ``q̄_i = λ Σ_j x̄_ij``, ``k̄_j = λ Σ_i x̄_ij``;
* ``additive``: with ``u = tanh(q_i + k_j)``: ``σ̄ = Σ_{b,i,j} ē ∘ u``;
  ``x̄ = ē σ ∘ (1 - u²)``; ``q̄_i = Σ_j x̄_ij``, ``k̄_j = Σ_i x̄_ij``.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from .. import primitives as PR
from .. import xp as rx
from ..errors import DomainError
from ..validation import check_arrays, checked_by

__all__ = ["SCORES", "ScoresOutput", "ScoresCache", "ScoresGrads", "attention_forward", "attention_backward"]

#: The three score forms of Keras 3's attention layers.
SCORES = ("dot_scaled", "concat_scaled", "additive")


class ScoresOutput(NamedTuple):
    """``weights [B, Tq, Tv]`` (the softmax ``a``) and ``output [B, Tq, dv]``."""

    weights: Any
    output: Any


class ScoresCache(NamedTuple):
    """``score``, ``q``, ``k``, ``v``, ``scale``, ``weight``; ``g`` (``dot_scaled``: ``q kᵀ``)
    or ``u [B, Tq, Tv, d]`` (the tanh), ``qk [B, Tq, Tv, d]`` (``q_i + k_j``), ``a``."""

    score: str
    q: Any
    k: Any
    v: Any
    scale: Any
    weight: Any
    g: Any
    u: Any
    qk: Any
    a: Any


class ScoresGrads(NamedTuple):
    """Gradients of ``q``, ``k``, ``v``, ``scale`` and ``weight`` (``None`` unless ``concat_scaled``)."""

    q: Any
    k: Any
    v: Any
    scale: Any
    weight: Any


def _check_forward(score: str, q: Any, k: Any, v: Any, scale: Any, weight: Any = None) -> None:
    if score not in SCORES:
        raise DomainError(f"score: expected one of {SCORES}, got {score!r}")
    check_arrays({"q": q, "k": k, "v": v, "scale": scale, "weight": weight if score == "concat_scaled" else None},
                 {"q": "B Tq d", "k": "B Tv d", "v": "B Tv dv", "scale": "d" if score == "additive" else "1",
                  "weight": "1" if score == "concat_scaled" else "?1"})


@checked_by(_check_forward)
def attention_forward(score: str, q: Any, k: Any, v: Any, scale: Any, weight: Any = None) -> tuple[ScoresOutput, ScoresCache]:
    """Scores of ``score`` (see the module docstring), softmax over the keys, weighted values:
    SPEC §3's global alignment with Keras 3's scores.

    Args:
        score: ``"dot_scaled"``, ``"concat_scaled"`` or ``"additive"``.
        q: ``[B, Tq, d]``, the queries.
        k: ``[B, Tv, d]``, the keys.
        v: ``[B, Tv, dv]``, the values.
        scale: ``λ [1]`` for ``dot_scaled`` and ``concat_scaled`` (Keras holds it 0-d), ``σ [d]``
            for ``additive``.
        weight: ``w [1]`` for ``concat_scaled``; unused otherwise.
    Returns:
        ``(out, cache)``: ``out`` a :class:`ScoresOutput` (``weights [B, Tq, Tv]``, ``output [B, Tq, dv]``),
            ``cache`` a :class:`ScoresCache` for :func:`attention_backward`.
    """
    xp = rx.namespace(q, k, v, scale)
    g = u = qk = None
    if score == "dot_scaled":
        g = q @ PR.transpose_last(k)
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
    return ScoresOutput(a, out), ScoresCache(score, q, k, v, scale, weight, g, u, qk, a)


def _check_backward(d_weights: Any, d_output: Any, cache: Any) -> None:
    if not isinstance(cache, ScoresCache):
        raise TypeError(f"cache: expected the ScoresCache of attention_forward, got {type(cache).__name__}")
    check_arrays({"the forward's weights": cache.a, "the forward's v": cache.v, "d_weights": d_weights,
                  "d_output": d_output},
                 {"the forward's weights": "B Tq Tv", "the forward's v": "B Tv dv", "d_weights": "?B Tq Tv",
                  "d_output": "?B Tq dv"})


@checked_by(_check_backward)
def attention_backward(d_weights: Any | None, d_output: Any | None, cache: ScoresCache) -> ScoresGrads:
    """Vector-Jacobian product of :func:`attention_forward`.

    Args:
        d_weights: ``[B, Tq, Tv]`` or ``None`` (zero), the gradient of ``weights``.
        d_output: ``[B, Tq, dv]`` or ``None`` (zero), the gradient of ``output``.
        cache: the :class:`ScoresCache` of the forward.
    Returns:
        The gradients of ``q``, ``k``, ``v``, ``scale`` and ``weight`` as a :class:`ScoresGrads`
            (``weight`` is ``None`` unless ``concat_scaled``).

    Derivation: [docs/derivations/attention.md, "3a. Keras 3 attention scores"](../derivations/attention.md#3a-keras-3-attention-scores)
    """
    C = cache
    xp = rx.namespace(C.q, C.a)
    d_a = xp.zeros_like(C.a) if d_weights is None else d_weights
    d_v = xp.zeros_like(C.v)
    if d_output is not None:
        d_a = d_a + d_output @ PR.transpose_last(C.v)
        d_v = PR.transpose_last(C.a) @ d_output
    d_e = C.a * (d_a - xp.sum(d_a * C.a, axis=-1, keepdims=True))
    d_weight = None
    if C.score == "dot_scaled":
        d_scale = xp.reshape(xp.sum(d_e * C.g), (1,))
        d_q = C.scale * (d_e @ C.k)
        d_k = C.scale * (PR.transpose_last(d_e) @ C.q)
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
    return ScoresGrads(d_q, d_k, d_v, d_scale, d_weight)
