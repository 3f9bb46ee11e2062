"""SPEC §1: the primitives, each a forward/backward pair.

Every ``*_forward`` returns ``(out, cache)`` and every ``*_backward`` takes the
upstream gradient and that cache and returns the gradient(s) of the inputs.
All functions take the namespace of their inputs (see :mod:`refmem.xp`).
"""

from __future__ import annotations

from typing import Any, NamedTuple

from . import xp as rx
from .xp import namespace

__all__ = [
    "COSINE_EPS",
    "sigmoid_forward",
    "sigmoid_backward",
    "tanh_forward",
    "tanh_backward",
    "softplus_forward",
    "softplus_backward",
    "oneplus_forward",
    "oneplus_backward",
    "softmax_forward",
    "softmax_backward",
    "cosine_forward",
    "cosine_backward",
    "CosineCache",
    "exclusive_cumprod_forward",
    "exclusive_cumprod_backward",
    "linear_forward",
    "linear_backward",
    "LinearCache",
]

#: ``eps`` of the DNC cosine similarity (SPEC §1).
COSINE_EPS = 1e-6


# ----------------------------------------------------------------------------- sigmoid, tanh


def sigmoid_forward(x: Any) -> tuple[Any, Any]:
    """``σ(x) = 0.5 (1 + tanh(x/2))``; cache: the output."""
    out = rx.sigmoid(x)
    return out, out


def sigmoid_backward(d_out: Any, cache: Any) -> Any:
    """``dx = d_out ∘ σ ∘ (1 - σ)``."""
    return d_out * cache * (1.0 - cache)


def tanh_forward(x: Any) -> tuple[Any, Any]:
    """``tanh(x)``; cache: the output."""
    out = namespace(x).tanh(x)
    return out, out


def tanh_backward(d_out: Any, cache: Any) -> Any:
    """``dx = d_out ∘ (1 - tanh²)``."""
    return d_out * (1.0 - cache * cache)


# ----------------------------------------------------------------------------- softplus, oneplus


def softplus_forward(x: Any) -> tuple[Any, Any]:
    """``softplus(x) = log(1 + exp(x))`` without overflow; cache: the input."""
    return rx.softplus(x), x


def softplus_backward(d_out: Any, cache: Any) -> Any:
    """``dx = d_out ∘ σ(x)``."""
    return d_out * rx.sigmoid(cache)


def oneplus_forward(x: Any) -> tuple[Any, Any]:
    """``oneplus(x) = 1 + softplus(x)``; cache: the input."""
    return rx.oneplus(x), x


def oneplus_backward(d_out: Any, cache: Any) -> Any:
    """``dx = d_out ∘ σ(x)`` (the constant 1 has no gradient)."""
    return d_out * rx.sigmoid(cache)


# ----------------------------------------------------------------------------- softmax


class SoftmaxCache(NamedTuple):
    """``out``: the softmax output; ``axis``: the normalised axis."""

    out: Any
    axis: int


def softmax_forward(x: Any, axis: int = -1) -> tuple[Any, SoftmaxCache]:
    """Softmax along ``axis`` with the maximum subtracted first."""
    out = rx.softmax(x, axis=axis)
    return out, SoftmaxCache(out, axis)


def softmax_backward(d_out: Any, cache: SoftmaxCache) -> Any:
    """``dx = s ∘ (d_out - Σ_axis d_out ∘ s)``."""
    return rx.softmax_backward(d_out, cache.out, axis=cache.axis)


# ----------------------------------------------------------------------------- cosine similarity


class CosineCache(NamedTuple):
    """Intermediates of :func:`cosine_forward`.

    ``keys [B, H, W]``, ``memory [B, N, W]``, ``dot [B, H, N]`` (``k·m``),
    ``key_norm [B, H, 1]`` and ``memory_norm [B, 1, N]`` (``n(v)``), ``denom [B, H, N]``
    (``n(k) n(m) + eps``).
    """

    keys: Any
    memory: Any
    dot: Any
    key_norm: Any
    memory_norm: Any
    denom: Any


def cosine_forward(keys: Any, memory: Any, eps: float = COSINE_EPS) -> tuple[Any, CosineCache]:
    """DNC cosine similarity (SPEC §1) of every key with every memory row.

    ``n(v) = sqrt(Σ v² + eps)``, ``cos(k, m) = k·m / (n(k) n(m) + eps)``.

    Args:
        keys: ``[B, H, W]``, one key per head.
        memory: ``[B, N, W]``.
    Returns:
        ``[B, H, N]`` similarities and a :class:`CosineCache`.
    """
    xp = namespace(keys, memory)
    rx.check_array("keys", keys, (None, None, None), "(B, H, W)")
    rx.check_array("memory", memory, (keys.shape[0], None, keys.shape[2]), "(B, N, W)")
    dot = keys @ xp.permute_dims(memory, (0, 2, 1))
    key_norm = xp.sqrt(xp.sum(keys * keys, axis=-1, keepdims=True) + eps)
    memory_norm = xp.permute_dims(xp.sqrt(xp.sum(memory * memory, axis=-1, keepdims=True) + eps), (0, 2, 1))
    denom = key_norm * memory_norm + eps
    return dot / denom, CosineCache(keys, memory, dot, key_norm, memory_norm, denom)


def cosine_backward(d_out: Any, cache: CosineCache) -> tuple[Any, Any]:
    """Gradients of :func:`cosine_forward` with respect to ``keys`` and ``memory``.

    ``d_dot = d / denom``; ``d_denom = -d · dot / denom²``;
    ``d n(k) = Σ_N d_denom n(m)``, ``d n(m) = Σ_H d_denom n(k)``;
    ``dk = d_dot @ M + d n(k) · k / n(k)``, ``dM = d_dotᵀ @ k + d n(m) · m / n(m)``.
    """
    xp = namespace(d_out)
    d_dot = d_out / cache.denom
    d_denom = -d_out * cache.dot / (cache.denom * cache.denom)
    d_key_norm = xp.sum(d_denom * cache.memory_norm, axis=-1, keepdims=True)  # [B, H, 1]
    d_memory_norm = xp.sum(d_denom * cache.key_norm, axis=-2, keepdims=True)  # [B, 1, N]
    d_keys = d_dot @ cache.memory + d_key_norm * cache.keys / cache.key_norm
    d_memory = xp.permute_dims(d_dot, (0, 2, 1)) @ cache.keys
    d_memory = d_memory + xp.permute_dims(d_memory_norm / cache.memory_norm, (0, 2, 1)) * cache.memory
    return d_keys, d_memory


# ----------------------------------------------------------------------------- exclusive cumprod


def exclusive_cumprod_forward(x: Any, axis: int = -1) -> tuple[Any, tuple[Any, int]]:
    """``out_j = Π_{i<j} x_i`` along ``axis``; cache: ``(x, axis)``."""
    return rx.exclusive_cumprod(x, axis=axis), (x, axis)


def exclusive_cumprod_backward(d_out: Any, cache: tuple[Any, int]) -> Any:
    """Exact VJP without division (a zero factor gives no NaN); see :func:`refmem.xp.exclusive_cumprod_backward`."""
    x, axis = cache
    return rx.exclusive_cumprod_backward(d_out, x, axis=axis)


# ----------------------------------------------------------------------------- linear


class LinearCache(NamedTuple):
    """``x [..., in]``, ``W [in, out]``."""

    x: Any
    W: Any


def linear_forward(x: Any, W: Any, b: Any | None = None) -> tuple[Any, LinearCache]:
    """``x @ W + b`` with ``x [..., in]``, ``W [in, out]``, ``b [out]`` (optional)."""
    rx.check_array("W", W, (None, None), "(in, out)")
    rx.check_array("x", x, None)
    if x.shape[-1] != W.shape[0]:
        raise rx.ShapeError(f"x: expected last dimension in = {W.shape[0]} (rows of W), got shape {tuple(x.shape)}")
    out = x @ W
    if b is not None:
        rx.check_array("b", b, (W.shape[1],), "(out,)")
        out = out + b
    return out, LinearCache(x, W)


def linear_backward(d_out: Any, cache: LinearCache) -> tuple[Any, Any, Any]:
    """Returns ``(dx, dW, db)``: ``dx = d_out @ Wᵀ``, ``dW = Σ xᵀ d_out``, ``db = Σ d_out``."""
    xp = namespace(d_out)
    x, W = cache
    dx = d_out @ xp.permute_dims(W, (1, 0))
    x2 = xp.reshape(x, (-1, x.shape[-1]))
    d2 = xp.reshape(d_out, (-1, d_out.shape[-1]))
    dW = xp.permute_dims(x2, (1, 0)) @ d2
    db = xp.sum(d2, axis=0)
    return dx, dW, db
