"""SPEC §1: the primitives, each a forward/backward pair, and the maths helpers every family uses.

Every pair follows [the backward rule](../conventions.md):

```python
out, cache = sigmoid_forward(x)          # out: SigmoidOutputs(out), cache: SigmoidCache
grads = sigmoid_backward(d_out, cache)   # d_out: SigmoidOutputs (or a tuple), grads: SigmoidGrads(x)
```

The public pairs check their arguments once ([`checked`][refmem.validation.checked]); the maths
lives in ordinary functions that refmem's own code calls directly, without checks:
[`sigmoid`][refmem.primitives.sigmoid] and [`sigmoid_vjp`][refmem.primitives.sigmoid_vjp],
[`softmax`][refmem.primitives.softmax] and [`softmax_vjp`][refmem.primitives.softmax_vjp],
[`cosine_similarity`][refmem.primitives.cosine_similarity] and
[`cosine_vjp`][refmem.primitives.cosine_vjp], [`linear`][refmem.primitives.linear] and
[`linear_vjp`][refmem.primitives.linear_vjp], ... They take and return plain arrays and work on
real and complex arrays alike (the complex-step check of SPEC §6 runs the very same code on
complex128): every branch is decided on the real part and every formula is analytic in between.
All functions take the namespace of their inputs (see [`refmem.xp`][refmem.xp]).
"""

from typing import Any, NamedTuple

from ..validation import Array, Axis, Positive, checked, warn_old_call
from ..xp import namespace

__all__ = [
    # maths helpers (plain arrays in and out, no checks)
    "sigmoid", "softplus", "oneplus", "softmax", "exclusive_cumprod", "unsort", "is_complex", "real_part",
    "transpose_last", "add_optional", "zeros_if_none", "sigmoid_vjp", "tanh_vjp", "softplus_vjp",
    "softmax_vjp", "exclusive_cumprod_vjp", "cosine_similarity", "cosine_vjp", "linear", "linear_vjp",
    "COSINE_EPS",
    # the checked pairs of SPEC §1
    "SigmoidOutputs", "SigmoidCache", "SigmoidGrads", "sigmoid_forward", "sigmoid_backward",
    "TanhOutputs", "TanhCache", "TanhGrads", "tanh_forward", "tanh_backward",
    "SoftplusOutputs", "SoftplusCache", "SoftplusGrads", "softplus_forward", "softplus_backward",
    "OneplusOutputs", "OneplusCache", "OneplusGrads", "oneplus_forward", "oneplus_backward",
    "SoftmaxOutputs", "SoftmaxCache", "SoftmaxGrads", "softmax_forward", "softmax_backward",
    "CosineOutputs", "CosineCache", "CosineGrads", "cosine_forward", "cosine_backward",
    "ExclusiveCumprodOutputs", "ExclusiveCumprodCache", "ExclusiveCumprodGrads",
    "exclusive_cumprod_forward", "exclusive_cumprod_backward",
    "LinearOutputs", "LinearCache", "LinearGrads", "linear_forward", "linear_backward",
]

#: `eps` of the DNC cosine similarity (SPEC §1).
COSINE_EPS = 1e-6


# ============================================================================= maths helpers


def is_complex(x: Any) -> bool:
    """Whether `x` has a complex floating dtype."""
    xp = namespace(x)
    return xp.isdtype(x.dtype, "complex floating")


def real_part(x: Any) -> Any:
    """The real part of `x` (`x` itself when real); used for branch decisions."""
    xp = namespace(x)
    return xp.real(x) if xp.isdtype(x.dtype, "complex floating") else x


def sigmoid(x: Any) -> Any:
    """Logistic sigmoid without overflow: `0.5 * (1 + tanh(x / 2))` (SPEC §1)."""
    xp = namespace(x)
    y = xp.tanh(0.5 * x)
    y += 1.0  # in place on the fresh result: the same values as 0.5 * (1 + tanh), two arrays fewer
    y *= 0.5
    return y


def softplus(x: Any) -> Any:
    """`log(1 + exp(x))` without overflow (SPEC §1).

    Written as `max(x, 0) + log1p(exp(-|x|))` with the branch taken on the real part, which
    equals `logaddexp(0, x)` for real input and stays analytic for the complex step.
    """
    xp = namespace(x)
    pos = real_part(x) > 0
    safe_neg = xp.where(pos, -x, x)  # always has a non-positive real part
    return xp.where(pos, x, xp.zeros_like(x)) + xp.log1p(xp.exp(safe_neg))


def oneplus(x: Any) -> Any:
    """`1 + softplus(x)` (SPEC §1), the DNC paper's strength activation."""
    return 1.0 + softplus(x)


def softmax(x: Any, axis: int = -1) -> Any:
    """Softmax along `axis` with the (real) maximum subtracted first (SPEC §1)."""
    xp = namespace(x)
    shift = xp.max(real_part(x), axis=axis, keepdims=True)
    ex = xp.exp(x - shift)
    return ex / xp.sum(ex, axis=axis, keepdims=True)


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
    """Exclusive cumulative product: `out[..., j] = Π_{i<j} x[..., i]`, `out[..., 0] = 1`."""
    xp = namespace(x)
    y = _moveaxis_last(x, axis)
    n = y.shape[-1]
    ones = xp.ones(y.shape[:-1] + (1,), dtype=y.dtype)
    if n == 1:
        out = ones
    else:
        out = xp.concat([ones, xp.cumulative_prod(y[..., :-1], axis=-1)], axis=-1)
    return _moveaxis_back(out, axis)


def unsort(sorted_values: Any, perm: Any, axis: int = -1) -> Any:
    """Undo a sort: given `s = take_along_axis(x, perm)`, return `x`.

    `perm` is the integer permutation returned by `argsort` along `axis`.
    """
    xp = namespace(sorted_values)
    inverse = xp.argsort(perm, axis=axis, stable=True)
    return xp.take_along_axis(sorted_values, inverse, axis=axis)


def transpose_last(x: Any) -> Any:
    """Swap the last two axes (the standard's `matrix_transpose`, written with `permute_dims`)."""
    xp = namespace(x)
    order = tuple(range(x.ndim - 2)) + (x.ndim - 1, x.ndim - 2)
    return xp.permute_dims(x, order)


def add_optional(a: Any, b: Any) -> Any:
    """`a + b` where either may be `None` (a gradient that no path produced); `None` if both are."""
    if a is None:
        return b
    if b is None:
        return a
    return a + b


def zeros_if_none(d: Any, like: Any) -> Any:
    """`d`, or zeros shaped and typed like `like` when `d` is `None`."""
    if d is not None:
        return d
    return namespace(like).zeros(like.shape, dtype=like.dtype)


def sigmoid_vjp(d_out: Any, out: Any) -> Any:
    """The gradient of `x` for `out = sigmoid(x)`: `d_out ∘ out ∘ (1 - out)`."""
    return d_out * out * (1.0 - out)


def tanh_vjp(d_out: Any, out: Any) -> Any:
    """The gradient of `x` for `out = tanh(x)`: `d_out ∘ (1 - out²)`."""
    return d_out * (1.0 - out * out)


def softplus_vjp(d_out: Any, x: Any) -> Any:
    """The gradient of `x` for `softplus(x)` and for `oneplus(x)`: `d_out ∘ σ(x)`."""
    return d_out * sigmoid(x)


def softmax_vjp(d_out: Any, out: Any, axis: int = -1) -> Any:
    """The gradient of `x` for `out = softmax(x, axis)`: `out ∘ (d_out - Σ_axis d_out ∘ out)`."""
    xp = namespace(d_out, out)
    return out * (d_out - xp.sum(d_out * out, axis=axis, keepdims=True))


def exclusive_cumprod_vjp(d_out: Any, x: Any, axis: int = -1, prefix: Any = None) -> Any:
    """The gradient of `x` for `exclusive_cumprod(x, axis)`, computed without dividing by any factor.

    With `y_j = Π_{k<j} x_k`, `∂L/∂x_i = Σ_{j>i} g_j Π_{k<j, k≠i} x_k = y_i · S_i` with
    `S_i = Σ_{j>i} g_j Π_{i<k<j} x_k`. `S` follows the reverse recurrence `S_{n-1} = 0`,
    `S_i = g_{i+1} + x_{i+1} S_{i+1}` (Horner's scheme), `O(n)` work and memory along the axis,
    so a factor equal to 0 gives the exact gradient instead of NaN. `prefix`: the forward's
    `exclusive_cumprod(x, axis)` when the caller kept it (the same values, not computed again).
    """
    xp = namespace(d_out, x)
    g = _moveaxis_last(d_out, axis)
    v = _moveaxis_last(x, axis)
    n = v.shape[-1]
    if n >= 32:  # every position at once: two operations, not 2n indexings (NumPy's unstack costs
        gs = xp.unstack(g, axis=-1)  # about 20 Python calls, more than the indexings below 32 positions)
        vs = xp.unstack(v, axis=-1)
    else:
        gs = [g[..., i] for i in range(n)]
        vs = [v[..., i] for i in range(n)]
    acc = xp.zeros_like(gs[0] * vs[0])
    s = [acc]
    for i in range(n - 2, -1, -1):
        acc = gs[i + 1] + vs[i + 1] * acc
        s.append(acc)
    y = exclusive_cumprod(v, axis=-1) if prefix is None else _moveaxis_last(prefix, axis)
    return _moveaxis_back(y * xp.stack(s[::-1], axis=-1), axis)


# ============================================================================= sigmoid, tanh


class SigmoidOutputs(NamedTuple):
    """The output of [`sigmoid_forward`][refmem.primitives.sigmoid_forward]."""

    out: Array["..."]
    """`σ(x)`, the shape of `x`."""


class SigmoidCache(NamedTuple):
    """What [`sigmoid_backward`][refmem.primitives.sigmoid_backward] needs: the output."""

    out: Array["..."]
    """`σ(x)`."""


class SigmoidGrads(NamedTuple):
    """The gradient of [`sigmoid_forward`][refmem.primitives.sigmoid_forward]'s argument."""

    x: Array["..."]
    """The gradient of `x`."""


def _old_backward(name: str, cache_type: type | None = None) -> Any:
    """The 0.1 call form `f(d_out_array, cache)` of a primitive's backward: it warns, calls the new
    form `f((d_out_array,), cache)` and returns what 0.1 returned (the array, or the tuple)."""

    def old(*args: Any, **kwargs: Any) -> Any:
        given = dict(zip(("d_out", "cache"), args))
        if len(args) > 2 or set(given) & set(kwargs) or set(given) | set(kwargs) != {"d_out", "cache"}:
            raise TypeError(f"{name}() takes the two arguments (d_out, cache), got {len(args)} positional "
                            f"and the keywords {sorted(kwargs)}")
        given.update(kwargs)
        new = globals()[name]
        d_out, cache = given["d_out"], given["cache"]
        if isinstance(d_out, tuple):  # the new form, given by keyword
            return new(d_out, cache)
        warn_old_call(f"{name}(d_out_array, cache)", f"{name}((d_out_array,), cache)")
        if cache_type is not None and type(cache) is tuple:
            cache = cache_type(*cache)
        grads = new((d_out,), cache)
        return grads[0] if len(grads) == 1 else grads

    return old


@checked
def sigmoid_forward(x: Array["..."]) -> tuple[SigmoidOutputs, SigmoidCache]:
    """`σ(x) = 0.5 (1 + tanh(x/2))` (SPEC §1), without overflow.

    Args:
        x: `[...]`, any shape.

    Returns:
        outputs: a [`SigmoidOutputs`][refmem.primitives.SigmoidOutputs] `(out [...])`, the shape of `x`.
        cache: a [`SigmoidCache`][refmem.primitives.SigmoidCache] (the output).
    """
    out = sigmoid(x)
    return SigmoidOutputs(out), SigmoidCache(out)


@checked(legacy=_old_backward("sigmoid_backward"))
def sigmoid_backward(d_out: SigmoidOutputs, cache: SigmoidCache) -> SigmoidGrads:
    """VJP of [`sigmoid_forward`][refmem.primitives.sigmoid_forward]: `dx = d_out ∘ σ ∘ (1 - σ)`.

    Args:
        d_out: a [`SigmoidOutputs`][refmem.primitives.SigmoidOutputs] (or a 1-tuple): the gradient of
            `out [...]` (`None`: zero).
        cache: the [`SigmoidCache`][refmem.primitives.SigmoidCache] of the forward.

    Returns:
        grads: a [`SigmoidGrads`][refmem.primitives.SigmoidGrads] `(x [...])`.

    Derivation: [docs/derivations/primitives.md, "1. Sigmoid and tanh"](../derivations/primitives.md#1-sigmoid-and-tanh)
    """
    (d,) = d_out
    return SigmoidGrads(zeros_if_none(None, cache.out) if d is None else sigmoid_vjp(d, cache.out))


class TanhOutputs(NamedTuple):
    """The output of [`tanh_forward`][refmem.primitives.tanh_forward]."""

    out: Array["..."]
    """`tanh(x)`, the shape of `x`."""


class TanhCache(NamedTuple):
    """What [`tanh_backward`][refmem.primitives.tanh_backward] needs: the output."""

    out: Array["..."]
    """`tanh(x)`."""


class TanhGrads(NamedTuple):
    """The gradient of [`tanh_forward`][refmem.primitives.tanh_forward]'s argument."""

    x: Array["..."]
    """The gradient of `x`."""


@checked
def tanh_forward(x: Array["..."]) -> tuple[TanhOutputs, TanhCache]:
    """`tanh(x)` (SPEC §1, used by every family).

    Args:
        x: `[...]`, any shape.

    Returns:
        outputs: a [`TanhOutputs`][refmem.primitives.TanhOutputs] `(out [...])`, the shape of `x`.
        cache: a [`TanhCache`][refmem.primitives.TanhCache] (the output).
    """
    out = namespace(x).tanh(x)
    return TanhOutputs(out), TanhCache(out)


@checked(legacy=_old_backward("tanh_backward"))
def tanh_backward(d_out: TanhOutputs, cache: TanhCache) -> TanhGrads:
    """VJP of [`tanh_forward`][refmem.primitives.tanh_forward]: `dx = d_out ∘ (1 - tanh²)`.

    Args:
        d_out: a [`TanhOutputs`][refmem.primitives.TanhOutputs] (or a 1-tuple): the gradient of
            `out [...]` (`None`: zero).
        cache: the [`TanhCache`][refmem.primitives.TanhCache] of the forward.

    Returns:
        grads: a [`TanhGrads`][refmem.primitives.TanhGrads] `(x [...])`.

    Derivation: [docs/derivations/primitives.md, "1. Sigmoid and tanh"](../derivations/primitives.md#1-sigmoid-and-tanh)
    """
    (d,) = d_out
    return TanhGrads(zeros_if_none(None, cache.out) if d is None else tanh_vjp(d, cache.out))


# ============================================================================= softplus, oneplus


class SoftplusOutputs(NamedTuple):
    """The output of [`softplus_forward`][refmem.primitives.softplus_forward]."""

    out: Array["..."]
    """`softplus(x)`, the shape of `x`."""


class SoftplusCache(NamedTuple):
    """What [`softplus_backward`][refmem.primitives.softplus_backward] needs: the input."""

    x: Array["..."]
    """The input `x`."""


class SoftplusGrads(NamedTuple):
    """The gradient of [`softplus_forward`][refmem.primitives.softplus_forward]'s argument."""

    x: Array["..."]
    """The gradient of `x`."""


@checked
def softplus_forward(x: Array["..."]) -> tuple[SoftplusOutputs, SoftplusCache]:
    """`softplus(x) = log(1 + exp(x))` without overflow (SPEC §1).

    Args:
        x: `[...]`, any shape.

    Returns:
        outputs: a [`SoftplusOutputs`][refmem.primitives.SoftplusOutputs] `(out [...])`, the shape of `x`.
        cache: a [`SoftplusCache`][refmem.primitives.SoftplusCache] (the input).
    """
    return SoftplusOutputs(softplus(x)), SoftplusCache(x)


@checked(legacy=_old_backward("softplus_backward"))
def softplus_backward(d_out: SoftplusOutputs, cache: SoftplusCache) -> SoftplusGrads:
    """VJP of [`softplus_forward`][refmem.primitives.softplus_forward]: `dx = d_out ∘ σ(x)`.

    Args:
        d_out: a [`SoftplusOutputs`][refmem.primitives.SoftplusOutputs] (or a 1-tuple): the gradient
            of `out [...]` (`None`: zero).
        cache: the [`SoftplusCache`][refmem.primitives.SoftplusCache] of the forward.

    Returns:
        grads: a [`SoftplusGrads`][refmem.primitives.SoftplusGrads] `(x [...])`.

    Derivation: [docs/derivations/primitives.md, "2. Softplus and oneplus"](../derivations/primitives.md#2-softplus-and-oneplus)
    """
    (d,) = d_out
    return SoftplusGrads(zeros_if_none(None, cache.x) if d is None else softplus_vjp(d, cache.x))


class OneplusOutputs(NamedTuple):
    """The output of [`oneplus_forward`][refmem.primitives.oneplus_forward]."""

    out: Array["..."]
    """`oneplus(x)`, the shape of `x`."""


class OneplusCache(NamedTuple):
    """What [`oneplus_backward`][refmem.primitives.oneplus_backward] needs: the input."""

    x: Array["..."]
    """The input `x`."""


class OneplusGrads(NamedTuple):
    """The gradient of [`oneplus_forward`][refmem.primitives.oneplus_forward]'s argument."""

    x: Array["..."]
    """The gradient of `x`."""


@checked
def oneplus_forward(x: Array["..."]) -> tuple[OneplusOutputs, OneplusCache]:
    """`oneplus(x) = 1 + softplus(x)` (SPEC §1).

    Args:
        x: `[...]`, any shape.

    Returns:
        outputs: a [`OneplusOutputs`][refmem.primitives.OneplusOutputs] `(out [...])`, the shape of `x`.
        cache: a [`OneplusCache`][refmem.primitives.OneplusCache] (the input).
    """
    return OneplusOutputs(oneplus(x)), OneplusCache(x)


@checked(legacy=_old_backward("oneplus_backward"))
def oneplus_backward(d_out: OneplusOutputs, cache: OneplusCache) -> OneplusGrads:
    """VJP of [`oneplus_forward`][refmem.primitives.oneplus_forward]: `dx = d_out ∘ σ(x)` (the constant 1 has no gradient).

    Args:
        d_out: a [`OneplusOutputs`][refmem.primitives.OneplusOutputs] (or a 1-tuple): the gradient of
            `out [...]` (`None`: zero).
        cache: the [`OneplusCache`][refmem.primitives.OneplusCache] of the forward.

    Returns:
        grads: a [`OneplusGrads`][refmem.primitives.OneplusGrads] `(x [...])`.

    Derivation: [docs/derivations/primitives.md, "2. Softplus and oneplus"](../derivations/primitives.md#2-softplus-and-oneplus)
    """
    (d,) = d_out
    return OneplusGrads(zeros_if_none(None, cache.x) if d is None else softplus_vjp(d, cache.x))


# ============================================================================= softmax


class SoftmaxOutputs(NamedTuple):
    """The output of [`softmax_forward`][refmem.primitives.softmax_forward]."""

    out: Array["..."]
    """The softmax, the shape of `x`, summing to 1 along `axis`."""


class SoftmaxCache(NamedTuple):
    """What [`softmax_backward`][refmem.primitives.softmax_backward] needs."""

    out: Array["..."]
    """The softmax output."""
    axis: int
    """The normalised axis."""


class SoftmaxGrads(NamedTuple):
    """The gradient of [`softmax_forward`][refmem.primitives.softmax_forward]'s argument."""

    x: Array["..."]
    """The gradient of `x`."""


@checked
def softmax_forward(x: Array["..."], *, axis: Axis["x"] = -1) -> tuple[SoftmaxOutputs, SoftmaxCache]:
    """Softmax along `axis` with the maximum subtracted first (SPEC §1).

    Args:
        x: `[...]`, any shape.
        axis: the axis normalised over (keyword-only).

    Returns:
        outputs: a [`SoftmaxOutputs`][refmem.primitives.SoftmaxOutputs] `(out [...])`, the shape of `x`.
        cache: a [`SoftmaxCache`][refmem.primitives.SoftmaxCache] `(out, axis)`.
    """
    out = softmax(x, axis=axis)
    return SoftmaxOutputs(out), SoftmaxCache(out, axis)


@checked(legacy=_old_backward("softmax_backward", SoftmaxCache))
def softmax_backward(d_out: SoftmaxOutputs, cache: SoftmaxCache) -> SoftmaxGrads:
    """VJP of [`softmax_forward`][refmem.primitives.softmax_forward]: `dx = s ∘ (d_out - Σ_axis d_out ∘ s)`.

    Args:
        d_out: a [`SoftmaxOutputs`][refmem.primitives.SoftmaxOutputs] (or a 1-tuple): the gradient of
            the softmax `out [...]` (`None`: zero).
        cache: the [`SoftmaxCache`][refmem.primitives.SoftmaxCache] of the forward.

    Returns:
        grads: a [`SoftmaxGrads`][refmem.primitives.SoftmaxGrads] `(x [...])`.

    Derivation: [docs/derivations/primitives.md, "3. Softmax"](../derivations/primitives.md#3-softmax)
    """
    (d,) = d_out
    return SoftmaxGrads(zeros_if_none(None, cache.out) if d is None else softmax_vjp(d, cache.out, cache.axis))


# ============================================================================= cosine similarity


class CosineOutputs(NamedTuple):
    """The output of [`cosine_forward`][refmem.primitives.cosine_forward]."""

    similarity: Array["B H N"]
    """`cos(k_h, M_n)` of every key with every memory row."""


class CosineCache(NamedTuple):
    """Intermediates of [`cosine_forward`][refmem.primitives.cosine_forward] (and of
    [`cosine_similarity`][refmem.primitives.cosine_similarity])."""

    keys: Array["B H W"]
    """The keys `k`."""
    memory: Array["B N W"]
    """The memory `M`."""
    dot: Array["B H N"]
    """`k · M`."""
    key_norm: Array["B H 1"]
    """`n(k) = sqrt(Σ k² + eps)`."""
    memory_norm: Array["B 1 N"]
    """`n(M)`."""
    denom: Array["B H N"]
    """`n(k) n(M) + eps`."""


class CosineGrads(NamedTuple):
    """The gradients of [`cosine_forward`][refmem.primitives.cosine_forward]'s arguments."""

    keys: Array["B H W"]
    """The gradient of `keys`."""
    memory: Array["B N W"]
    """The gradient of `memory`."""


def cosine_similarity(keys: Any, memory: Any, eps: float = COSINE_EPS) -> tuple[Any, CosineCache]:
    """The DNC cosine similarity of SPEC §1, unchecked: `(similarity [B, H, N], CosineCache)`.

    `n(v) = sqrt(Σ v² + eps)`, `cos(k, m) = k·m / (n(k) n(m) + eps)`.
    """
    xp = namespace(keys, memory)
    dot = keys @ xp.permute_dims(memory, (0, 2, 1))
    key_norm = xp.sqrt(xp.sum(keys * keys, axis=-1, keepdims=True) + eps)
    memory_norm = xp.permute_dims(xp.sqrt(xp.sum(memory * memory, axis=-1, keepdims=True) + eps), (0, 2, 1))
    denom = key_norm * memory_norm + eps
    return dot / denom, CosineCache(keys, memory, dot, key_norm, memory_norm, denom)


def cosine_vjp(d_out: Any, cache: CosineCache) -> tuple[Any, Any]:
    """The gradients `(d_keys [B, H, W], d_memory [B, N, W])` of the cosine similarity, unchecked.

    `d_dot = d / denom`; `d_denom = -d · dot / denom²`; `d n(k) = Σ_N d_denom n(m)`,
    `d n(m) = Σ_H d_denom n(k)`; `dk = d_dot @ M + d n(k) · k / n(k)`,
    `dM = d_dotᵀ @ k + d n(m) · m / n(m)`.
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


@checked
def cosine_forward(keys: Array["B H W"], memory: Array["B N W"], *,
                   eps: Positive = COSINE_EPS) -> tuple[CosineOutputs, CosineCache]:
    """DNC cosine similarity (SPEC §1) of every key with every memory row.

    `n(v) = sqrt(Σ v² + eps)`, `cos(k, m) = k·m / (n(k) n(m) + eps)`.

    Args:
        keys: `[B, H, W]`, one key per head.
        memory: `[B, N, W]`.
        eps: `ε`, 1e-6 in SPEC §1 (keyword-only).

    Returns:
        outputs: a [`CosineOutputs`][refmem.primitives.CosineOutputs] `(similarity [B, H, N])`.
        cache: a [`CosineCache`][refmem.primitives.CosineCache].
    """
    similarity, cache = cosine_similarity(keys, memory, eps)
    return CosineOutputs(similarity), cache


@checked(legacy=_old_backward("cosine_backward"))
def cosine_backward(d_out: CosineOutputs, cache: CosineCache) -> CosineGrads:
    """Gradients of [`cosine_forward`][refmem.primitives.cosine_forward] with respect to `keys` and `memory`.

    `d_dot = d / denom`; `d_denom = -d · dot / denom²`; `d n(k) = Σ_N d_denom n(m)`,
    `d n(m) = Σ_H d_denom n(k)`; `dk = d_dot @ M + d n(k) · k / n(k)`, `dM = d_dotᵀ @ k + d n(m) · m / n(m)`.

    Args:
        d_out: a [`CosineOutputs`][refmem.primitives.CosineOutputs] (or a 1-tuple): the gradient of
            `similarity [B, H, N]` (`None`: zero).
        cache: the [`CosineCache`][refmem.primitives.CosineCache] of the forward.

    Returns:
        grads: a [`CosineGrads`][refmem.primitives.CosineGrads] `(keys [B, H, W], memory [B, N, W])`.

    Derivation: [docs/derivations/primitives.md, "4. The DNC cosine similarity"](../derivations/primitives.md#4-the-dnc-cosine-similarity)
    """
    (d,) = d_out
    if d is None:
        return CosineGrads(zeros_if_none(None, cache.keys), zeros_if_none(None, cache.memory))
    return CosineGrads(*cosine_vjp(d, cache))


# ============================================================================= exclusive cumprod


class ExclusiveCumprodOutputs(NamedTuple):
    """The output of [`exclusive_cumprod_forward`][refmem.primitives.exclusive_cumprod_forward]."""

    out: Array["..."]
    """`out_j = Π_{i<j} x_i` along the axis, the shape of `x`."""


class ExclusiveCumprodCache(NamedTuple):
    """What [`exclusive_cumprod_backward`][refmem.primitives.exclusive_cumprod_backward] needs."""

    x: Array["..."]
    """The input `x`."""
    axis: int
    """The axis of the product."""


class ExclusiveCumprodGrads(NamedTuple):
    """The gradient of [`exclusive_cumprod_forward`][refmem.primitives.exclusive_cumprod_forward]'s argument."""

    x: Array["..."]
    """The gradient of `x`."""


@checked
def exclusive_cumprod_forward(x: Array["..."], *,
                              axis: Axis["x"] = -1) -> tuple[ExclusiveCumprodOutputs, ExclusiveCumprodCache]:
    """Exclusive cumulative product `out_j = Π_{i<j} x_i` along `axis` (SPEC §1), `out_0 = 1`.

    Args:
        x: `[...]`, any shape.
        axis: the axis of the product (keyword-only).

    Returns:
        outputs: an [`ExclusiveCumprodOutputs`][refmem.primitives.ExclusiveCumprodOutputs] `(out [...])`, the shape of `x`.
        cache: an [`ExclusiveCumprodCache`][refmem.primitives.ExclusiveCumprodCache] `(x, axis)`.
    """
    return ExclusiveCumprodOutputs(exclusive_cumprod(x, axis=axis)), ExclusiveCumprodCache(x, axis)


@checked(legacy=_old_backward("exclusive_cumprod_backward", ExclusiveCumprodCache))
def exclusive_cumprod_backward(d_out: ExclusiveCumprodOutputs, cache: ExclusiveCumprodCache) -> ExclusiveCumprodGrads:
    """Exact VJP without division (a zero factor gives no NaN): the reverse recurrence of
    [`exclusive_cumprod_vjp`][refmem.primitives.exclusive_cumprod_vjp].

    Args:
        d_out: an [`ExclusiveCumprodOutputs`][refmem.primitives.ExclusiveCumprodOutputs] (or a
            1-tuple): the gradient of `out [...]` (`None`: zero).
        cache: the [`ExclusiveCumprodCache`][refmem.primitives.ExclusiveCumprodCache] of the forward.

    Returns:
        grads: an [`ExclusiveCumprodGrads`][refmem.primitives.ExclusiveCumprodGrads] `(x [...])`.

    Derivation: [docs/derivations/primitives.md, "5. Exclusive cumulative product"](../derivations/primitives.md#5-exclusive-cumulative-product)
    """
    (d,) = d_out
    x, axis = cache
    return ExclusiveCumprodGrads(zeros_if_none(None, x) if d is None else exclusive_cumprod_vjp(d, x, axis))


# ============================================================================= linear


class LinearOutputs(NamedTuple):
    """The output of [`linear_forward`][refmem.primitives.linear_forward]."""

    out: Array["... D_out"]
    """`x @ W + b`."""


class LinearCache(NamedTuple):
    """What [`linear_backward`][refmem.primitives.linear_backward] needs."""

    x: Array["... D_in"]
    """The input `x`."""
    W: Array["D_in D_out"]
    """The matrix `W`."""


class LinearGrads(NamedTuple):
    """The gradients of [`linear_forward`][refmem.primitives.linear_forward]'s arguments."""

    x: Array["... D_in"]
    """The gradient of `x`."""
    W: Array["D_in D_out"]
    """The gradient of `W` (summed over the leading axes)."""
    b: Array["D_out"]
    """The gradient of `b` (returned also when the forward had no bias)."""


def linear(x: Any, W: Any, b: Any = None) -> Any:
    """The linear map `x @ W + b` (SPEC §1), unchecked; `b` may be `None`."""
    out = x @ W
    return out if b is None else out + b


def linear_vjp(d_out: Any, x: Any, W: Any) -> tuple[Any, Any, Any]:
    """The gradients `(dx [..., D_in], dW [D_in, D_out], db [D_out])` of `x @ W + b`, unchecked."""
    xp = namespace(d_out)
    dx = d_out @ xp.permute_dims(W, (1, 0))
    x2 = xp.reshape(x, (-1, x.shape[-1]))
    d2 = xp.reshape(d_out, (-1, d_out.shape[-1]))
    return dx, xp.permute_dims(x2, (1, 0)) @ d2, xp.sum(d2, axis=0)


@checked
def linear_forward(x: Array["... D_in"], W: Array["D_in D_out"],
                   b: Array["D_out"] | None = None) -> tuple[LinearOutputs, LinearCache]:
    """The linear map `x @ W + b` (SPEC §1).

    Args:
        x: `[..., D_in]`.
        W: `[D_in, D_out]`.
        b: `[D_out]` or `None` (no bias).

    Returns:
        outputs: a [`LinearOutputs`][refmem.primitives.LinearOutputs] `(out [..., D_out])`.
        cache: a [`LinearCache`][refmem.primitives.LinearCache] `(x, W)`.
    """
    return LinearOutputs(linear(x, W, b)), LinearCache(x, W)


@checked(legacy=_old_backward("linear_backward"))
def linear_backward(d_out: LinearOutputs, cache: LinearCache) -> LinearGrads:
    """VJP of [`linear_forward`][refmem.primitives.linear_forward]: `dx = d_out @ Wᵀ`, `dW = Σ xᵀ d_out`, `db = Σ d_out`.

    Args:
        d_out: a [`LinearOutputs`][refmem.primitives.LinearOutputs] (or a 1-tuple): the gradient of
            `out [..., D_out]` (`None`: zero).
        cache: the [`LinearCache`][refmem.primitives.LinearCache] of the forward.

    Returns:
        grads: a [`LinearGrads`][refmem.primitives.LinearGrads] `(x [..., D_in], W [D_in, D_out], b [D_out])`;
            `b` also when the forward had no bias.

    Derivation: [docs/derivations/primitives.md, "6. Linear map"](../derivations/primitives.md#6-linear-map)
    """
    (d,) = d_out
    x, W = cache
    if d is None:
        xp = namespace(x)
        return LinearGrads(zeros_if_none(None, x), zeros_if_none(None, W), xp.zeros((W.shape[1],), dtype=W.dtype))
    return LinearGrads(*linear_vjp(d, x, W))
