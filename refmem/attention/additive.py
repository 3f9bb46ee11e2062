"""SPEC §8: the attention layers of public packages that SPEC §2, §3 and §7 do not compute.

Over queries ``q [B, Tq, Dq]``, keys ``k [B, Tk, Dk]`` and values ``v [B, Tk, Dv]``:

* ``additive``: ``e_tj = w · tanh(q_t W_q + k_j W_k + b)`` (``W_q [Dq, A]``, ``W_k [Dk, A]``, ``w [A]``,
  ``b [A]`` or none) — d2l's ``AdditiveAttention`` (no bias), OpenNMT-py's ``mlp`` score (the bias of
  its ``linear_query``), the ``attention`` package's ``bahdanau`` score;
* ``general``: ``e_tj = q_t · (k_j W)`` (``W [Dk, Dq]``) — the ``attention`` package's ``luong`` score,
  which multiplies the keys, not the query;

then ``α_t = softmax_j(e_tj)`` over the unmasked keys (masked weights exactly 0) and
``c_t = Σ_j α_tj v_j``. Outputs: ``weights [B, Tq, Tk]``, ``context [B, Tq, Dv]``.

The pair follows the project's rule: ``out, cache = attention_forward(...)``,
``grads = attention_backward(d_out, cache)``. Derivation: docs/derivations/additive.md.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from .. import primitives as PR
from .. import xp as rx
from ..errors import DomainError
from ..validation import check_arrays

__all__ = ["SCORES", "AttentionOutputs", "AttentionCache", "AttentionGrads", "attention_forward", "attention_backward"]

#: The two scores of SPEC §8.
SCORES = ("additive", "general")


class AttentionOutputs(NamedTuple):
    """``weights [B, Tq, Tk]`` (``α``) and ``context [B, Tq, Dv]``."""

    weights: Any
    context: Any


class AttentionCache(NamedTuple):
    """The inputs and parameters, ``u`` (``tanh`` of the additive score, ``[B, Tq, Tk, A]``) or ``kw``
    (``k W``, general), the weights, the mask and the score."""

    q: Any
    k: Any
    v: Any
    W_q: Any
    W_k: Any
    w: Any
    b: Any
    u: Any
    kw: Any
    weights: Any
    mask: Any
    score: str


class AttentionGrads(NamedTuple):
    """Gradients of ``q``, ``k``, ``v``, ``W_q`` (``W`` of ``general``), ``W_k``, ``w`` and ``b`` (``None`` where
    the score has no such parameter)."""

    q: Any
    k: Any
    v: Any
    W_q: Any
    W_k: Any = None
    w: Any = None
    b: Any = None


def _masked_softmax(e: Any, mask: Any) -> Any:
    if mask is None:
        return PR.softmax(e, axis=-1)
    xp = rx.namespace(e)
    re = PR.real_part(e)
    shift = xp.max(xp.where(mask, re, xp.min(re, axis=-1, keepdims=True)), axis=-1, keepdims=True)
    zero = xp.zeros_like(e)
    ex = xp.where(mask, xp.exp(xp.where(mask, e - shift, zero)), zero)
    total = xp.sum(ex, axis=-1, keepdims=True)
    return ex / xp.where(PR.real_part(total) == 0, xp.ones_like(total), total)


def _attention(score: str, q: Any, k: Any, v: Any, W_q: Any, W_k: Any, w: Any, b: Any,
               mask: Any) -> tuple[AttentionOutputs, AttentionCache]:
    xp = rx.namespace(q, k, v)
    u = kw = None
    if score == "additive":
        pre = (q @ W_q)[:, :, None, :] + (k @ W_k)[:, None, :, :]
        if b is not None:
            pre = pre + b
        u = xp.tanh(pre)
        e = xp.sum(u * w, axis=-1)
    else:
        kw = k @ W_q
        e = q @ PR.transpose_last(kw)
    m = None if mask is None else (mask if xp.isdtype(mask.dtype, "bool") else mask != 0)[:, None, :]
    a = _masked_softmax(e, m)
    return AttentionOutputs(a, a @ v), AttentionCache(q, k, v, W_q, W_k, w, b, u, kw, a, m, score)


def _attention_back(d_a: Any, d_c: Any, C: AttentionCache) -> AttentionGrads:
    xp = rx.namespace(C.q)
    d_a = d_a + d_c @ PR.transpose_last(C.v)
    d_v = PR.transpose_last(C.weights) @ d_c
    d_e = C.weights * (d_a - xp.sum(d_a * C.weights, axis=-1, keepdims=True))
    if C.score == "general":
        d_q = d_e @ C.kw
        d_kw = PR.transpose_last(d_e) @ C.q
        B, Tk, Dk = (int(s) for s in C.k.shape)
        g_W = PR.transpose_last(xp.reshape(C.k, (B * Tk, Dk))) @ xp.reshape(d_kw, (B * Tk, -1))
        return AttentionGrads(d_q, d_kw @ PR.transpose_last(C.W_q), d_v, g_W)
    A = int(C.u.shape[-1])
    g_w = xp.sum(xp.reshape(d_e[..., None] * C.u, (-1, A)), axis=0)
    d_pre = d_e[..., None] * C.w * (1.0 - C.u * C.u)
    d_qw = xp.sum(d_pre, axis=2)  # [B, Tq, A]
    d_kw = xp.sum(d_pre, axis=1)  # [B, Tk, A]
    g_b = None if C.b is None else xp.sum(xp.reshape(d_pre, (-1, A)), axis=0)
    Dq, Dk = int(C.q.shape[-1]), int(C.k.shape[-1])
    g_Wq = PR.transpose_last(xp.reshape(C.q, (-1, Dq))) @ xp.reshape(d_qw, (-1, A))
    g_Wk = PR.transpose_last(xp.reshape(C.k, (-1, Dk))) @ xp.reshape(d_kw, (-1, A))
    return AttentionGrads(d_qw @ PR.transpose_last(C.W_q), d_kw @ PR.transpose_last(C.W_k), d_v, g_Wq, g_Wk, g_w, g_b)


def attention_forward(q: Any, k: Any, v: Any, W_q: Any, W_k: Any | None = None, w: Any | None = None,
                      b: Any | None = None, *, score: str = "additive",
                      mask: Any | None = None) -> tuple[AttentionOutputs, AttentionCache]:
    """Attention with the scores of SPEC §8 (see the module docstring).

    Args:
        q: ``[B, Tq, Dq]``, the queries.
        k: ``[B, Tk, Dk]``, the keys.
        v: ``[B, Tk, Dv]``, the values.
        W_q: ``[Dq, A]`` (additive) or ``W [Dk, Dq]`` (general).
        W_k: ``[Dk, A]`` (additive; ``None`` for general).
        w: ``[A]`` (additive; ``None`` for general).
        b: ``None`` or ``[A]``, the bias inside the tanh (additive only).
        score: ``"additive"`` or ``"general"``.
        mask: ``None`` or ``[B, Tk]``, bool or 0/1 (0: the key gets weight exactly 0).

    Returns:
        The outputs, an [`AttentionOutputs`][refmem.attention.additive.AttentionOutputs] with ``weights
            [B, Tq, Tk]`` and ``context [B, Tq, Dv]``, and an [`AttentionCache`][refmem.attention.additive.AttentionCache].
    """
    if score not in SCORES:
        raise DomainError(f"score: expected one of {SCORES}, got {score!r}")
    arrays = {"q": q, "k": k, "v": v, "W_q": W_q, "W_k": W_k, "w": w, "b": b, "mask": mask}
    if score == "additive":
        specs = {"q": "B Tq Dq", "k": "B Tk Dk", "v": "B Tk Dv", "W_q": "Dq A", "W_k": "Dk A", "w": "A", "b": "?A",
                 "mask": "?B Tk | mask"}
    else:
        for name in ("W_k", "w", "b"):
            if arrays[name] is not None:
                raise DomainError(f"{name}: the general score has no such parameter; expected None")
        specs = {"q": "B Tq Dq", "k": "B Tk Dk", "v": "B Tk Dv", "W_q": "Dk Dq", "mask": "?B Tk | mask"}
    check_arrays(arrays, specs)
    return _attention(score, q, k, v, W_q, W_k, w, b, mask)


def attention_backward(d_out: Any, cache: AttentionCache) -> AttentionGrads:
    """Vector-Jacobian product of [`attention_forward`][refmem.attention.additive.attention_forward].

    Args:
        d_out: the gradients of the outputs, an [`AttentionOutputs`][refmem.attention.additive.AttentionOutputs]
            (or a tuple) holding ``weights [B, Tq, Tk]`` and ``context [B, Tq, Dv]``, each ``None`` for zero.
        cache: the [`AttentionCache`][refmem.attention.additive.AttentionCache] of the forward.

    Returns:
        The gradients, an [`AttentionGrads`][refmem.attention.additive.AttentionGrads]: ``q [B, Tq, Dq]``,
            ``k [B, Tk, Dk]``, ``v [B, Tk, Dv]``, ``W_q``, ``W_k``, ``w``, ``b`` (``None`` where the score has no
            such parameter).

    Derivation: [docs/derivations/additive.md, "Backward"](../derivations/additive.md#backward)
    """
    if not isinstance(cache, AttentionCache):
        raise TypeError(f"cache: expected the AttentionCache of attention_forward, got {type(cache).__name__}")
    if not isinstance(d_out, tuple) or len(d_out) != 2:
        raise TypeError("d_out: expected an AttentionOutputs (or a 2-tuple) of gradients (weights, context)")
    xp = rx.namespace(cache.q)
    check_arrays({"the forward's weights": cache.weights, "the forward's v": cache.v, "d_out.weights": d_out[0],
                  "d_out.context": d_out[1]},
                 {"the forward's weights": "B Tq Tk", "the forward's v": "B Tk Dv", "d_out.weights": "?B Tq Tk",
                  "d_out.context": "?B Tq Dv"})
    B, Tq, _ = (int(s) for s in cache.weights.shape)
    d_a = xp.zeros_like(cache.weights) if d_out[0] is None else d_out[0]
    d_c = xp.zeros((B, Tq, int(cache.v.shape[-1])), dtype=cache.v.dtype) if d_out[1] is None else d_out[1]
    return _attention_back(d_a, d_c, cache)
