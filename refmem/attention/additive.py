"""SPEC §8: the attention layers of public packages that SPEC §2, §3 and §7 do not compute.

Over queries ``q [B, Tq, Dq]``, keys ``k [B, Tk, Dk]`` and values ``v [B, Tk, Dv]``:

* ``additive``: ``e_tj = w · tanh(q_t W_q + k_j W_k + b)`` (``W_q [Dq, A]``, ``W_k [Dk, A]``, ``w [A]``,
  ``b [A]`` or none) — d2l's ``AdditiveAttention`` (no bias), OpenNMT-py's ``mlp`` score (the bias of
  its ``linear_query``), the ``attention`` package's ``bahdanau`` score;
* ``general``: ``e_tj = q_t · (k_j W)`` (``W [Dk, Dq]``) — the ``attention`` package's ``luong`` score,
  which multiplies the keys, not the query;

then ``α_t = softmax_j(e_tj)`` over the unmasked keys (masked weights exactly 0) and
``c_t = Σ_j α_tj v_j``. Outputs: ``weights [B, Tq, Tk]``, ``context [B, Tq, Dv]``.

The pair follows [the backward rule](../conventions.md): ``out, cache = attention_forward(...)``,
``grads = attention_backward(d_out, cache)``; the arguments are checked once by their annotations
(the shapes that depend on the score by the forward). Derivation: docs/derivations/additive.md.
"""

from typing import Any, Literal, NamedTuple

from .. import primitives as PR
from .. import xp as rx
from ..errors import DomainError, DTypeError, ShapeError
from ..validation import Array, Mask, Unit, checked

__all__ = ["SCORES", "AttentionOutputs", "AttentionCache", "AttentionGrads", "attention_forward", "attention_backward"]

#: The two scores of SPEC §8.
SCORES = ("additive", "general")

Score = Literal["additive", "general"]


class AttentionOutputs(NamedTuple):
    """The outputs of [`attention_forward`][refmem.attention.additive.attention_forward]."""

    weights: Unit["B Tq Tk"]
    """`α`: each query's weights over the keys (0 at a masked key)."""
    context: Array["B Tq Dv"]
    """`c_t = Σ_j α_tj v_j`."""


class AttentionCache(NamedTuple):
    """What [`attention_backward`][refmem.attention.additive.attention_backward] needs."""

    q: Array["B Tq Dq"]
    """The queries."""
    k: Array["B Tk Dk"]
    """The keys."""
    v: Array["B Tk Dv"]
    """The values."""
    W_q: Array["I O"]
    """`W_q` (`W` of `general`)."""
    W_k: Array["Dk A"] | None
    """`W_k`, or `None` (`general`)."""
    w: Array["A"] | None
    """`w`, or `None` (`general`)."""
    b: Array["A"] | None
    """`b`, or `None`."""
    u: Array["B Tq Tk A"] | None
    """`additive`: the `tanh` of the score."""
    kw: Array["B Tk Dq"] | None
    """`general`: `k W`."""
    weights: Array["B Tq Tk"]
    """The weights."""
    mask: Mask["B 1 Tk"] | None
    """The mask as booleans with a query axis, or `None`."""
    score: str
    """The score."""


class AttentionGrads(NamedTuple):
    """The gradients of [`attention_forward`][refmem.attention.additive.attention_forward]'s arguments."""

    q: Array["B Tq Dq"]
    """The gradient of the queries."""
    k: Array["B Tk Dk"]
    """The gradient of the keys."""
    v: Array["B Tk Dv"]
    """The gradient of the values."""
    W_q: Array["I O"]
    """The gradient of `W_q` (`W` of `general`)."""
    W_k: Array["Dk A"] | None = None
    """The gradient of `W_k`; `None` for `general`."""
    w: Array["A"] | None = None
    """The gradient of `w`; `None` for `general`."""
    b: Array["A"] | None = None
    """The gradient of `b`; `None` where there is no bias."""


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


def _check_score_shapes(score: str, q: Any, k: Any, W_q: Any, W_k: Any, w: Any, b: Any) -> None:
    """The parameters each score needs, of the shapes it needs (the annotations bind the letters)."""
    if score == "general":
        for name, value in (("W_k", W_k), ("w", w), ("b", b)):
            if value is not None:
                raise DomainError(f"{name}: the general score has no such parameter; expected None")
        want, symbols = (int(k.shape[-1]), int(q.shape[-1])), "(Dk, Dq)"
    else:
        for name, value in (("W_k", W_k), ("w", w)):
            if value is None:
                raise DTypeError(f"{name}: expected an array (the additive score uses it), got None")
        want, symbols = (int(q.shape[-1]), int(w.shape[0])), "(Dq, A)"
    got = tuple(int(d) for d in W_q.shape)
    if got != want:
        raise ShapeError(f"W_q: expected shape {symbols} = {want} for the {score} score, got {got}")


@checked
def attention_forward(q: Array["B Tq Dq"], k: Array["B Tk Dk"], v: Array["B Tk Dv"], W_q: Array["I O"],
                      W_k: Array["Dk A"] | None = None, w: Array["A"] | None = None, b: Array["A"] | None = None,
                      *, score: Score = "additive",
                      mask: Mask["B Tk"] | None = None) -> tuple[AttentionOutputs, AttentionCache]:
    """Attention with the scores of SPEC §8 (see the module docstring).

    Args:
        q: `[B, Tq, Dq]`, the queries.
        k: `[B, Tk, Dk]`, the keys.
        v: `[B, Tk, Dv]`, the values.
        W_q: `[Dq, A]` (additive) or `W [Dk, Dq]` (general).
        W_k: `[Dk, A]` (additive; `None` for general).
        w: `[A]` (additive; `None` for general).
        b: `None` or `[A]`, the bias inside the tanh (additive only).
        score: `"additive"` or `"general"` (keyword-only).
        mask: `None` or `[B, Tk]`, bool or 0/1 (0: the key gets weight exactly 0; keyword-only).

    Returns:
        outputs: an [`AttentionOutputs`][refmem.attention.additive.AttentionOutputs]
            `(weights [B, Tq, Tk], context [B, Tq, Dv])`.
        cache: an [`AttentionCache`][refmem.attention.additive.AttentionCache].

    Raises:
        refmem.errors.ShapeError: `W_q` of the wrong shape for the score.
        refmem.errors.DomainError: a parameter the general score does not have.
    """
    _check_score_shapes(score, q, k, W_q, W_k, w, b)
    return _attention(score, q, k, v, W_q, W_k, w, b, mask)


@checked
def attention_backward(d_out: AttentionOutputs, cache: AttentionCache) -> AttentionGrads:
    """VJP of [`attention_forward`][refmem.attention.additive.attention_forward].

    Args:
        d_out: an [`AttentionOutputs`][refmem.attention.additive.AttentionOutputs] (or a 2-tuple):
            the gradients of `weights [B, Tq, Tk]` and `context [B, Tq, Dv]`, each `None` for zero.
        cache: the [`AttentionCache`][refmem.attention.additive.AttentionCache] of the forward.

    Returns:
        grads: an [`AttentionGrads`][refmem.attention.additive.AttentionGrads]
            `(q [B, Tq, Dq], k [B, Tk, Dk], v [B, Tk, Dv], W_q, W_k, w, b)` (`None` where the score has
            no such parameter).

    Derivation: [docs/derivations/additive.md, "Backward"](../derivations/additive.md#backward)
    """
    xp = rx.namespace(cache.q)
    d_a, d_c = d_out
    B, Tq, _ = (int(s) for s in cache.weights.shape)
    d_a = xp.zeros_like(cache.weights) if d_a is None else d_a
    d_c = xp.zeros((B, Tq, int(cache.v.shape[-1])), dtype=cache.v.dtype) if d_c is None else d_c
    return _attention_back(d_a, d_c, cache)
