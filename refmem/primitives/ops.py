"""SPEC §1: the primitives, each a forward/backward pair.

Every ``*_forward`` returns ``(out, cache)`` and every ``*_backward`` takes the
upstream gradient and that cache and returns the gradient(s) of the inputs.
All functions take the namespace of their inputs (see :mod:`refmem.xp`).
"""

from __future__ import annotations

from typing import Any, NamedTuple

from ..errors import ShapeError
from ..validation import check_arrays, checked_by, edge
from ..xp import namespace

__all__ = [
    "sigmoid",
    "softplus",
    "oneplus",
    "softmax",
    "exclusive_cumprod",
    "unsort",
    "is_complex",
    "real_part",
    "transpose_last",
    "add_optional",
    "zeros_if_none",
    "SoftmaxCache",
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


# ----------------------------------------------------------------------------- value helpers
# Plain functions of the values; the forward/backward pairs below build on them. They work on
# real and complex arrays alike (the complex-step check of SPEC §6 runs the very same code on
# complex128): every branch is decided on the real part and every formula is analytic in between.


def is_complex(x: Any) -> bool:
    """Whether ``x`` has a complex floating dtype."""
    xp = namespace(x)
    return xp.isdtype(x.dtype, "complex floating")


def real_part(x: Any) -> Any:
    """The real part of ``x`` (``x`` itself when real); used for branch decisions."""
    xp = namespace(x)
    return xp.real(x) if xp.isdtype(x.dtype, "complex floating") else x


# --------------------------------------------------------------------------- activations


def sigmoid(x: Any) -> Any:
    """Logistic sigmoid without overflow: ``0.5 * (1 + tanh(x / 2))`` (SPEC §1)."""
    xp = namespace(x)
    return 0.5 * (1.0 + xp.tanh(0.5 * x))


def softplus(x: Any) -> Any:
    """``log(1 + exp(x))`` without overflow (SPEC §1).

    Written as ``max(x, 0) + log1p(exp(-|x|))`` with the branch taken on the real
    part, which equals ``logaddexp(0, x)`` for real input and stays analytic for
    the complex step.
    """
    xp = namespace(x)
    pos = real_part(x) > 0
    safe_neg = xp.where(pos, -x, x)  # always has a non-positive real part
    return xp.where(pos, x, xp.zeros_like(x)) + xp.log1p(xp.exp(safe_neg))


def oneplus(x: Any) -> Any:
    """``1 + softplus(x)`` (SPEC §1), the DNC paper's strength activation."""
    return 1.0 + softplus(x)


def softmax(x: Any, axis: int = -1) -> Any:
    """Softmax along ``axis`` with the (real) maximum subtracted first (SPEC §1)."""
    xp = namespace(x)
    shift = xp.max(real_part(x), axis=axis, keepdims=True)
    ex = xp.exp(x - shift)
    return ex / xp.sum(ex, axis=axis, keepdims=True)


# --------------------------------------------------------------------------- products and sorting


def _moveaxis_last(x: Any, axis: int) -> Any:
    axis = axis % x.ndim
    if axis == x.ndim - 1:
        return x
    xp = namespace(x)
    order = [i for i in range(x.ndim) if i != axis] + [axis]
    return xp.permute_dims(x, tuple(order))


def _moveaxis_back(x: Any, axis: int) -> Any:
    axis = axis % x.ndim
    if axis == x.ndim - 1:
        return x
    xp = namespace(x)
    order = list(range(x.ndim - 1))
    order.insert(axis, x.ndim - 1)
    return xp.permute_dims(x, tuple(order))


def exclusive_cumprod(x: Any, axis: int = -1) -> Any:
    """Exclusive cumulative product: ``out[..., j] = Π_{i<j} x[..., i]``, ``out[..., 0] = 1``."""
    xp = namespace(x)
    y = _moveaxis_last(x, axis)
    n = y.shape[-1]
    ones = xp.ones(y.shape[:-1] + (1,), dtype=y.dtype)
    if n == 1:
        out = ones
    else:
        out = xp.concat([ones, xp.cumulative_prod(y[..., :-1], axis=-1)], axis=-1)
    return _moveaxis_back(out, axis)


def _exclusive_cumprod_vjp(d_out: Any, x: Any, axis: int) -> Any:
    """VJP of :func:`exclusive_cumprod`, computed without dividing by any factor.

    With ``y_j = Π_{k<j} x_k``, ``∂L/∂x_i = Σ_{j>i} g_j Π_{k<j, k≠i} x_k
    = y_i · S_i`` with ``S_i = Σ_{j>i} g_j Π_{i<k<j} x_k``. ``S`` follows the
    reverse recurrence ``S_{n-1} = 0``, ``S_i = g_{i+1} + x_{i+1} S_{i+1}``
    (Horner's scheme), ``O(n)`` work and memory along the axis, so a factor
    equal to 0 gives the exact gradient instead of NaN.
    """
    xp = namespace(d_out, x)
    g = _moveaxis_last(d_out, axis)
    v = _moveaxis_last(x, axis)
    n = v.shape[-1]
    acc = xp.zeros_like(g[..., 0] * v[..., 0])
    s = [acc]
    for i in range(n - 2, -1, -1):
        acc = g[..., i + 1] + v[..., i + 1] * acc
        s.append(acc)
    grad = exclusive_cumprod(v, axis=-1) * xp.stack(s[::-1], axis=-1)
    return _moveaxis_back(grad, axis)


def unsort(sorted_values: Any, perm: Any, axis: int = -1) -> Any:
    """Undo a sort: given ``s = take_along_axis(x, perm)``, return ``x``.

    ``perm`` is the integer permutation returned by ``argsort`` along ``axis``.
    """
    xp = namespace(sorted_values)
    inverse = xp.argsort(perm, axis=axis, stable=True)
    return xp.take_along_axis(sorted_values, inverse, axis=axis)


def transpose_last(x: Any) -> Any:
    """Swap the last two axes (the standard's ``matrix_transpose``, written with ``permute_dims``)."""
    xp = namespace(x)
    order = tuple(range(x.ndim - 2)) + (x.ndim - 1, x.ndim - 2)
    return xp.permute_dims(x, order)


def add_optional(a: Any, b: Any) -> Any:
    """``a + b`` where either may be ``None`` (a gradient that no path produced); ``None`` if both are."""
    if a is None:
        return b
    if b is None:
        return a
    return a + b


def zeros_if_none(d: Any, like: Any) -> Any:
    """``d``, or zeros shaped and typed like ``like`` when ``d`` is ``None``."""
    if d is not None:
        return d
    return namespace(like).zeros(like.shape, dtype=like.dtype)


# ----------------------------------------------------------------------------- sigmoid, tanh


@edge(x="...")
def sigmoid_forward(x: Any) -> tuple[Any, Any]:
    """``σ(x) = 0.5 (1 + tanh(x/2))`` (SPEC §1), without overflow.

    Args:
        x: ``[...]``, any shape.

    Returns:
        ``out [...]`` (the shape of ``x``) and the cache: the output ``out``.
    """
    out = sigmoid(x)
    return out, out


@edge({"cache": "..."}, d_out="...")
def sigmoid_backward(d_out: Any, cache: Any) -> Any:
    """VJP of :func:`sigmoid_forward`: ``dx = d_out ∘ σ ∘ (1 - σ)``.

    Args:
        d_out: ``[...]``, the gradient of ``out`` (the shape of ``x``; not ``None``).
        cache: the output ``σ(x) [...]`` of :func:`sigmoid_forward`.

    Returns:
        dx: ``[...]``, the gradient of ``x``.

    Derivation: [docs/derivations/primitives.md, "1. Sigmoid and tanh"](../derivations/primitives.md#1-sigmoid-and-tanh)
    """
    return d_out * cache * (1.0 - cache)


@edge(x="...")
def tanh_forward(x: Any) -> tuple[Any, Any]:
    """``tanh(x)`` (SPEC §1, used by every family).

    Args:
        x: ``[...]``, any shape.

    Returns:
        ``out [...]`` (the shape of ``x``) and the cache: the output ``out``.
    """
    out = namespace(x).tanh(x)
    return out, out


@edge({"cache": "..."}, d_out="...")
def tanh_backward(d_out: Any, cache: Any) -> Any:
    """VJP of :func:`tanh_forward`: ``dx = d_out ∘ (1 - tanh²)``.

    Args:
        d_out: ``[...]``, the gradient of ``out`` (the shape of ``x``; not ``None``).
        cache: the output ``tanh(x) [...]`` of :func:`tanh_forward`.

    Returns:
        dx: ``[...]``, the gradient of ``x``.

    Derivation: [docs/derivations/primitives.md, "1. Sigmoid and tanh"](../derivations/primitives.md#1-sigmoid-and-tanh)
    """
    return d_out * (1.0 - cache * cache)


# ----------------------------------------------------------------------------- softplus, oneplus


@edge(x="...")
def softplus_forward(x: Any) -> tuple[Any, Any]:
    """``softplus(x) = log(1 + exp(x))`` without overflow (SPEC §1).

    Args:
        x: ``[...]``, any shape.

    Returns:
        ``out [...]`` (the shape of ``x``) and the cache: the input ``x``.
    """
    return softplus(x), x


@edge({"cache": "..."}, d_out="...")
def softplus_backward(d_out: Any, cache: Any) -> Any:
    """VJP of :func:`softplus_forward`: ``dx = d_out ∘ σ(x)``.

    Args:
        d_out: ``[...]``, the gradient of ``out`` (the shape of ``x``; not ``None``).
        cache: the input ``x [...]`` of :func:`softplus_forward`.

    Returns:
        dx: ``[...]``, the gradient of ``x``.

    Derivation: [docs/derivations/primitives.md, "2. Softplus and oneplus"](../derivations/primitives.md#2-softplus-and-oneplus)
    """
    return d_out * sigmoid(cache)


@edge(x="...")
def oneplus_forward(x: Any) -> tuple[Any, Any]:
    """``oneplus(x) = 1 + softplus(x)`` (SPEC §1).

    Args:
        x: ``[...]``, any shape.

    Returns:
        ``out [...]`` (the shape of ``x``) and the cache: the input ``x``.
    """
    return oneplus(x), x


@edge({"cache": "..."}, d_out="...")
def oneplus_backward(d_out: Any, cache: Any) -> Any:
    """VJP of :func:`oneplus_forward`: ``dx = d_out ∘ σ(x)`` (the constant 1 has no gradient).

    Args:
        d_out: ``[...]``, the gradient of ``out`` (the shape of ``x``; not ``None``).
        cache: the input ``x [...]`` of :func:`oneplus_forward`.

    Returns:
        dx: ``[...]``, the gradient of ``x``.

    Derivation: [docs/derivations/primitives.md, "2. Softplus and oneplus"](../derivations/primitives.md#2-softplus-and-oneplus)
    """
    return d_out * sigmoid(cache)


# ----------------------------------------------------------------------------- softmax


class SoftmaxCache(NamedTuple):
    """``out``: the softmax output; ``axis``: the normalised axis."""

    out: Any
    axis: int


@edge(x="...", axis="axis of x")
def softmax_forward(x: Any, axis: int = -1) -> tuple[Any, SoftmaxCache]:
    """Softmax along ``axis`` with the maximum subtracted first (SPEC §1).

    Args:
        x: ``[...]``, any shape.
        axis: the axis normalised over.

    Returns:
        ``out [...]`` (the shape of ``x``, summing to 1 along ``axis``) and a :class:`SoftmaxCache`.
    """
    out = softmax(x, axis=axis)
    return out, SoftmaxCache(out, axis)


@edge({"cache.out": "..."}, d_out="...")
def softmax_backward(d_out: Any, cache: SoftmaxCache) -> Any:
    """VJP of :func:`softmax_forward`: ``dx = s ∘ (d_out - Σ_axis d_out ∘ s)``.

    Args:
        d_out: ``[...]``, the gradient of the softmax output ``s`` (its shape; not ``None``).
        cache: the :class:`SoftmaxCache` ``(out, axis)`` of :func:`softmax_forward`.

    Returns:
        dx: ``[...]``, the gradient of ``x``.

    Derivation: [docs/derivations/primitives.md, "3. Softmax"](../derivations/primitives.md#3-softmax)
    """
    out = cache.out
    xp = namespace(d_out, out)
    return out * (d_out - xp.sum(d_out * out, axis=cache.axis, keepdims=True))


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


@edge(keys="B H W", memory="B N W", eps="float > 0")
def cosine_forward(keys: Any, memory: Any, eps: float = COSINE_EPS) -> tuple[Any, CosineCache]:
    """DNC cosine similarity (SPEC §1) of every key with every memory row.

    ``n(v) = sqrt(Σ v² + eps)``, ``cos(k, m) = k·m / (n(k) n(m) + eps)``.

    Args:
        keys: ``[B, H, W]``, one key per head.
        memory: ``[B, N, W]``.
        eps: ``ε``, 1e-6 in SPEC §1.

    Returns:
        ``[B, H, N]`` similarities and a :class:`CosineCache`.
    """
    xp = namespace(keys, memory)
    dot = keys @ xp.permute_dims(memory, (0, 2, 1))
    key_norm = xp.sqrt(xp.sum(keys * keys, axis=-1, keepdims=True) + eps)
    memory_norm = xp.permute_dims(xp.sqrt(xp.sum(memory * memory, axis=-1, keepdims=True) + eps), (0, 2, 1))
    denom = key_norm * memory_norm + eps
    return dot / denom, CosineCache(keys, memory, dot, key_norm, memory_norm, denom)


@edge({"cache.dot": "B H N"}, d_out="B H N")
def cosine_backward(d_out: Any, cache: CosineCache) -> tuple[Any, Any]:
    """Gradients of :func:`cosine_forward` with respect to ``keys`` and ``memory``.

    ``d_dot = d / denom``; ``d_denom = -d · dot / denom²``;
    ``d n(k) = Σ_N d_denom n(m)``, ``d n(m) = Σ_H d_denom n(k)``;
    ``dk = d_dot @ M + d n(k) · k / n(k)``, ``dM = d_dotᵀ @ k + d n(m) · m / n(m)``.

    Args:
        d_out: ``[B, H, N]``, the gradient of the similarities (not ``None``).
        cache: the :class:`CosineCache` of :func:`cosine_forward`.

    Returns:
        d_keys: ``[B, H, W]``, the gradient of ``keys``.
        d_memory: ``[B, N, W]``, the gradient of ``memory``.

    Derivation: [docs/derivations/primitives.md, "4. The DNC cosine similarity"](../derivations/primitives.md#4-the-dnc-cosine-similarity)
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


@edge(x="...", axis="axis of x")
def exclusive_cumprod_forward(x: Any, axis: int = -1) -> tuple[Any, tuple[Any, int]]:
    """Exclusive cumulative product ``out_j = Π_{i<j} x_i`` along ``axis`` (SPEC §1), ``out_0 = 1``.

    Args:
        x: ``[...]``, any shape.
        axis: the axis of the product.

    Returns:
        ``out [...]`` (the shape of ``x``) and the cache ``(x, axis)``.
    """
    return exclusive_cumprod(x, axis=axis), (x, axis)


def _check_cumprod_backward(d_out: Any, cache: tuple[Any, int]) -> None:
    x = cache[0]
    check_arrays({"the forward's x": x, "d_out": d_out}, {"the forward's x": "...", "d_out": "..."})
    if tuple(d_out.shape) != tuple(x.shape):
        raise ShapeError(f"d_out: expected shape {tuple(x.shape)} (that of the forward's x), got {tuple(d_out.shape)}")


@checked_by(_check_cumprod_backward)
def exclusive_cumprod_backward(d_out: Any, cache: tuple[Any, int]) -> Any:
    """Exact VJP without division (a zero factor gives no NaN); the reverse recurrence of :func:`_exclusive_cumprod_vjp`.

    Args:
        d_out: ``[...]``, the gradient of ``out`` (the shape of ``x``; not ``None``).
        cache: the ``(x, axis)`` of :func:`exclusive_cumprod_forward`.

    Returns:
        dx: ``[...]``, the gradient of ``x``.

    Derivation: [docs/derivations/primitives.md, "5. Exclusive cumulative product"](../derivations/primitives.md#5-exclusive-cumulative-product)
    """
    x, axis = cache
    return _exclusive_cumprod_vjp(d_out, x, axis)


# ----------------------------------------------------------------------------- linear


class LinearCache(NamedTuple):
    """``x [..., in]``, ``W [in, out]``."""

    x: Any
    W: Any


@edge(x="... in", W="in out", b="?out")
def linear_forward(x: Any, W: Any, b: Any | None = None) -> tuple[Any, LinearCache]:
    """The linear map ``x @ W + b`` (SPEC §1).

    Args:
        x: ``[..., in]``.
        W: ``[in, out]``.
        b: ``[out]`` or ``None`` (no bias).

    Returns:
        ``out [..., out]`` and a :class:`LinearCache`.
    """
    out = x @ W
    if b is not None:
        out = out + b
    return out, LinearCache(x, W)


@edge({"cache.x": "... in", "cache.W": "in out"}, d_out="... out")
def linear_backward(d_out: Any, cache: LinearCache) -> tuple[Any, Any, Any]:
    """VJP of :func:`linear_forward`: ``dx = d_out @ Wᵀ``, ``dW = Σ xᵀ d_out``, ``db = Σ d_out``.

    Args:
        d_out: ``[..., out]``, the gradient of the output (not ``None``).
        cache: the :class:`LinearCache` of :func:`linear_forward`.

    Returns:
        dx: ``[..., in]``, the gradient of ``x``.
        dW: ``[in, out]``, the gradient of ``W`` (summed over the leading axes).
        db: ``[out]``, the gradient of ``b`` (returned also when the forward had no bias).

    Derivation: [docs/derivations/primitives.md, "6. Linear map"](../derivations/primitives.md#6-linear-map)
    """
    xp = namespace(d_out)
    x, W = cache
    dx = d_out @ xp.permute_dims(W, (1, 0))
    x2 = xp.reshape(x, (-1, x.shape[-1]))
    d2 = xp.reshape(d_out, (-1, d_out.shape[-1]))
    dW = xp.permute_dims(x2, (1, 0)) @ d2
    db = xp.sum(d2, axis=0)
    return dx, dW, db
