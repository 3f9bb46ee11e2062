"""SPEC §5 steps 1-9: DNC addressing, one forward/backward pair per equation.

Every pair follows [the backward rule](../conventions.md):

```python
out, cache = usage_forward(prev_usage, prev_write_weights, free_gates, prev_read_weights,
                           convention="paper")        # out: UsageOutputs(usage, retention)
grads = usage_backward(d_out, cache)                 # grads: UsageGrads(prev_usage, ...)
```

Shapes use SPEC's letters: `B` batch, `N` memory slots, `W` word size, `R` read heads, `nw`
write heads, `H` heads of a content lookup (`R` or `nw`), `K = 1 + 2nw` read modes per head.
The options of Csordás & Schmidhuber (SPEC §5) are optional arguments (`write_masks`,
`read_masks`, `forward_sharpness`, `backward_sharpness`, `deallocation`) whose gradients are
fields of the one `...Grads` type, `None` when the option is off.

The public pairs check their arguments once ([`checked`][refmem.validation.checked]), including
the invariants SPEC §5 states for them: a weighting's rows sum to at most 1
([`Weighting`][refmem.dnc.addressing.Weighting]), read modes sum to 1
([`Distribution`][refmem.dnc.addressing.Distribution]), a link has a zero diagonal
([`LinkMatrix`][refmem.dnc.addressing.LinkMatrix]); a content lookup refuses keys and memory rows
whose norm the cosine cannot carry ([`cosine_limit`][refmem.dnc.addressing.cosine_limit]). The
maths lives in ordinary functions that refmem's own code calls directly, without checks:
[`content_weights`][refmem.dnc.addressing.content_weights] and
[`content_weights_vjp`][refmem.dnc.addressing.content_weights_vjp], [`usage`][refmem.dnc.addressing.usage]
and [`usage_vjp`][refmem.dnc.addressing.usage_vjp], and so on for every step.

Products over heads (retention `ψ`, the write product of the usage, the erase retention of the
memory) are differentiated with the division-free "product of all the others"
([`prod_except`][refmem.dnc.addressing.prod_except]), so a factor equal to 0 gives the exact
gradient and never NaN. The derivations are written out step by step in
[docs/derivations/dnc.md](../derivations/dnc.md); the names there are the variables here.
"""

import math
from typing import Any, NamedTuple

from .. import primitives as P
from .. import xp as rx
from ..errors import DomainError, DTypeError
from ..validation import UNIT_SLACK, Array, NonNegative, Positive, Unit, checked, old_call_arguments, warn_old_call
from . import conventions as C
from .conventions import DEFAULT, ConventionName

__all__ = [
    "ALLOCATION_EPS", "SHARPNESS_EPS", "prod_except", "cosine_limit",
    "Weighting", "Distribution", "LinkMatrix", "BelowOne",
    # content addressing (steps 2 and 8)
    "ContentWeightsOutputs", "ContentWeightsCache", "ContentWeightsGrads", "content_weights", "content_weights_vjp",
    "content_weights_forward", "content_weights_backward",
    "MaskedContentWeightsOutputs", "MaskedContentWeightsCache", "MaskedContentWeightsGrads",
    "masked_content_weights", "masked_content_weights_vjp",
    "masked_content_weights_forward", "masked_content_weights_backward",
    # link sharpness
    "SharpenOutputs", "SharpenCache", "SharpenGrads", "sharpen", "sharpen_vjp", "sharpen_forward",
    "sharpen_backward",
    # step 1
    "UsageOutputs", "UsageCache", "UsageGrads", "usage", "usage_vjp", "usage_forward", "usage_backward",
    # step 3
    "AllocationOutputs", "AllocationCache", "AllocationGrads", "allocation", "allocation_vjp",
    "allocation_forward", "allocation_backward",
    "WriteAllocationWeightsOutputs", "WriteAllocationWeightsCache", "WriteAllocationWeightsGrads",
    "write_allocation_weights", "write_allocation_weights_vjp",
    "write_allocation_weights_forward", "write_allocation_weights_backward",
    # step 4
    "WriteWeightsOutputs", "WriteWeightsCache", "WriteWeightsGrads", "write_weights", "write_weights_vjp",
    "write_weights_forward", "write_weights_backward",
    # step 5
    "MemoryUpdateOutputs", "MemoryUpdateCache", "MemoryUpdateGrads", "memory_update", "memory_update_vjp",
    "memory_update_forward", "memory_update_backward",
    # step 6
    "TemporalLinkageOutputs", "TemporalLinkageCache", "TemporalLinkageGrads", "temporal_linkage",
    "temporal_linkage_vjp", "temporal_linkage_forward", "temporal_linkage_backward",
    # step 7
    "DirectionalWeightsOutputs", "DirectionalWeightsCache", "DirectionalWeightsGrads", "directional_weights",
    "directional_weights_vjp", "directional_weights_forward", "directional_weights_backward",
    # steps 8-9
    "ReadWeightsOutputs", "ReadWeightsCache", "ReadWeightsGrads", "read_weights", "read_weights_vjp",
    "read_weights_forward", "read_weights_backward",
]

ALLOCATION_EPS = 1e-6
"""`eps` of the allocation's `û = eps + (1 - eps) u` (SPEC §5 step 3)."""
SHARPNESS_EPS = 1e-6
"""`eps` of the link sharpening `S(d, s)_i = (d_i + eps)^s / Σ_j (d_j + eps)^s` (SPEC §5 options)."""


# ============================================================================= helpers


def prod_except(x: Any, axis: int) -> Any:
    """`out_r = Π_{s≠r} x_s` along `axis`, without division.

    The product of the factors before `r` (exclusive cumulative product) times the product of the
    factors after `r` (the same on the flipped axis).
    """
    xp = rx.namespace(x)
    if x.shape[axis] == 1:  # one factor: the product of the others is empty
        return xp.ones_like(x)
    before = P.exclusive_cumprod(x, axis=axis)
    after = xp.flip(P.exclusive_cumprod(xp.flip(x, axis=axis), axis=axis), axis=axis)
    return before * after


def _times_others(d: Any, x: Any, axis: int) -> Any:
    """`d ∘ prod_except(x, axis)`: `d` itself when the axis holds one factor (the product of no others
    is 1, and `d ∘ 1 = d` exactly), so a single write head costs no `[B, 1, N, W]` pass of ones."""
    if x.shape[axis] == 1 and d.dtype == x.dtype:
        return d
    return d * prod_except(x, axis)


def _prod_heads(x: Any) -> Any:
    """`Π_k x[:, k]` over axis 1: the one factor itself when there is one (the same value)."""
    if x.shape[1] == 1:
        return x[:, 0, ...]
    return rx.namespace(x).prod(x, axis=1)


def _imul(a: Any, b: Any) -> Any:
    """`a ∘ b` written into `a` (a fresh array the caller owns, of the broadcast shape) where the
    dtypes agree, by the standard's in-place operator; a new array otherwise (a complex `b`)."""
    if a.dtype == b.dtype:
        a *= b
        return a
    return a * b


def _iadd(a: Any, b: Any) -> Any:
    """`a + b` written into `a` where the dtypes agree (see `_imul`)."""
    if a.dtype == b.dtype:
        a += b
        return a
    return a + b


def _common(xp: Any, *arrays: Any) -> tuple:
    """`arrays` in their common dtype (some backends, e.g. torch, do not promote inside matmul)."""
    dtype = xp.result_type(*arrays)
    return tuple(a if a.dtype == dtype else xp.astype(a, dtype) for a in arrays)


_BLAS_MIN_ELEMENTS = 1024
"""From this many elements per matrix on (`N × N` of the link, `N × W` of the erase), the
outer-product forms `1 - w_i - w_j` and `w_i p_j` are computed as BLAS products over a contracted
axis of two (`_pair_matmul`): several times faster than NumPy's broadcast loops at `N = 128`,
slower below about `32 × 32`, where the broadcast expression is used. Both give the same values bit
for bit in real dtypes (every product in the matmul is exact); `tests/test_dnc_addressing.py`
checks it (in complex dtypes a BLAS may fuse the multiply-adds of one complex product: the same to
rounding)."""


def _pair_matmul(xp: Any, a0: Any, a1: Any, b0: Any, b1: Any) -> Any:
    """`out[..., i, j] = a0[..., i] b0[..., j] + a1[..., i] b1[..., j]` as one matmul over a contracted
    axis of two, `[a0 a1] @ [b0 ; b1]`: an `[..., N, N]` result written by the BLAS in one pass
    (a broadcast `a[..., :, None] ∘ b[..., None, :]` is several times slower). Where every product
    is exact (a factor 1, or a term 0 ∘ 0) the result equals the broadcast expression bit for bit
    in real dtypes."""
    if not a0.dtype == a1.dtype == b0.dtype == b1.dtype:
        a0, a1, b0, b1 = _common(xp, a0, a1, b0, b1)
    return xp.stack([a0, a1], axis=-1) @ xp.stack([b0, b1], axis=-2)


def _one_minus_sum(w: Any) -> Any:
    """`F[..., i, j] = 1 - w_i - w_j` (computed as `(1 - w_i) - w_j`), a fresh `[..., N, N]` array:
    from `_BLAS_MIN_ELEMENTS` on `[1 - w, 1] @ [1 ; -w]`,
    whose products are exact, so the same values as the broadcast."""
    if int(w.shape[-1]) ** 2 < _BLAS_MIN_ELEMENTS:
        return (1.0 - w[..., :, None]) - w[..., None, :]
    xp = rx.namespace(w)
    ones = xp.ones_like(w)
    return _pair_matmul(xp, 1.0 - w, ones, ones, -w)


def _outer(w: Any, p: Any) -> Any:
    """`w[..., i] p[..., j]`, a fresh `[..., N, M]` array: from
    `_BLAS_MIN_ELEMENTS` on `[w, 0] @ [p ; 0]` (the same values)."""
    if int(w.shape[-1]) * int(p.shape[-1]) < _BLAS_MIN_ELEMENTS:
        return w[..., :, None] * p[..., None, :]
    xp = rx.namespace(w, p)
    return _pair_matmul(xp, w, xp.zeros_like(w), p, xp.zeros_like(p))


def _row_sums(x: Any) -> Any:
    """`Σ_j x[..., i, j]` as the product `x @ 1` (a BLAS pass; the same sequence of additions as a
    sequential sum, which is how the emulated float32 of the golden tolerances adds)."""
    xp = rx.namespace(x)
    return (x @ xp.ones(tuple(x.shape[:-1]) + (1,), dtype=x.dtype))[..., 0]


def _column_sums(x: Any) -> Any:
    """`Σ_i x[..., i, j]` as the product `1ᵀ @ x` (see `_row_sums`)."""
    xp = rx.namespace(x)
    return (xp.ones(tuple(x.shape[:-2]) + (1, int(x.shape[-2])), dtype=x.dtype) @ x)[..., 0, :]


def _zero_diagonal(x: Any) -> Any:
    """`x [..., N, N]` (a fresh array the caller owns) with `x[..., i, i] = 0`, set through a flat view
    of the last two axes (`N` elements written, not an `N × N` pass)."""
    xp = rx.namespace(x)
    n = int(x.shape[-1])
    shape = tuple(x.shape)
    flat = xp.reshape(x, shape[:-2] + (n * n,))
    flat[..., ::n + 1] = 0.0
    return xp.reshape(flat, shape)


_OFF_DIAGONAL: dict = {}


def _off_diagonal(xp: Any, n: int, dtype: Any) -> Any:
    """`1 - eye(n)`, made once per namespace, size and dtype (a constant of every step)."""
    try:
        key = (xp, n, dtype)
        hit = _OFF_DIAGONAL.get(key)
    except TypeError:  # an unhashable namespace or dtype
        return 1.0 - xp.eye(n, dtype=dtype)
    if hit is None:
        if len(_OFF_DIAGONAL) > 64:
            _OFF_DIAGONAL.clear()
        hit = _OFF_DIAGONAL[key] = 1.0 - xp.eye(n, dtype=dtype)
    return hit


def _first(bad: Any) -> list[int]:
    """The index of the first `True` of a host (NumPy) boolean array."""
    return [int(ix[0]) for ix in bad.nonzero()]


def _sum_slack(x: Any) -> float:
    """How far a row sum may pass its bound: the `Unit` slack plus the rounding of the sum."""
    return UNIT_SLACK + int(x.shape[-1]) * float(rx.namespace(x).finfo(x.dtype).eps)


def _weighting_invariant(label: str, x: Any) -> None:
    xp = rx.namespace(x)
    sums = xp.sum(P.real_part(x), axis=-1)
    if not bool(xp.all(sums <= 1.0 + _sum_slack(x))):
        h = rx.to_numpy(sums)
        at = _first(h > 1.0 + _sum_slack(x))
        raise DomainError(f"{label}: expected rows summing to at most 1 over the last axis (a weighting, SPEC §5), "
                          f"got a sum of {float(h[tuple(at)])!r} at {at}")


def _distribution_invariant(label: str, x: Any) -> None:
    xp = rx.namespace(x)
    sums = xp.sum(P.real_part(x), axis=-1)
    if not bool(xp.all(xp.abs(sums - 1.0) <= _sum_slack(x))):
        h = rx.to_numpy(sums)
        at = _first(abs(h - 1.0) > _sum_slack(x))
        raise DomainError(f"{label}: expected rows summing to 1 over the last axis (a softmax, SPEC §5), "
                          f"got a sum of {float(h[tuple(at)])!r} at {at}")


def _link_invariant(label: str, x: Any) -> None:
    xp = rx.namespace(x)
    n = int(x.shape[-1])
    if int(x.shape[-2]) != n:  # the shape check names this; here only square links have a diagonal
        return
    diagonal = xp.sum(P.real_part(x) * xp.eye(n, dtype=P.real_part(x).dtype), axis=-1)
    if bool(xp.any(diagonal != 0.0)):
        h = rx.to_numpy(diagonal)
        at = _first(h != 0.0)
        raise DomainError(f"{label}: expected a zero diagonal (L[i, i] = 0, SPEC §5 step 6), got "
                          f"{float(h[tuple(at)])!r} at {at + [at[-1]]}")


class Weighting(Unit):
    """Annotation of a weighting over the slots (read and write weights, precedence): a
    [`Unit`][refmem.validation.Unit] array whose rows (the last axis) sum to at most 1, up to the
    `Unit` slack plus the rounding of the sum. `Weighting["B R N"]`."""

    invariant = staticmethod(_weighting_invariant)


class Distribution(Unit):
    """Annotation of a distribution along the last axis (the read modes, a softmax): a
    [`Unit`][refmem.validation.Unit] array whose rows sum to 1, up to the `Unit` slack plus the
    rounding of the sum. `Distribution["B R K"]`."""

    invariant = staticmethod(_distribution_invariant)


class LinkMatrix(Unit):
    """Annotation of a temporal link matrix: a [`Unit`][refmem.validation.Unit] array whose last
    two axes are `N × N` with a zero diagonal (`L[i, i] = 0`, SPEC §5 step 6).
    `LinkMatrix["B nw N N"]`."""

    invariant = staticmethod(_link_invariant)


class BelowOne(NonNegative):
    """Annotation of a finite number in [0, 1) (the allocation's `eps`: `û = eps + (1 - eps) u`)."""

    expects = "a finite number in [0, 1)"

    @classmethod
    def check(cls, label: str, value: Any) -> None:
        super().check(label, value)
        if not value < 1:
            raise DomainError(f"{label}: expected {cls.expects}, got {value!r}")


def cosine_limit(dtype: Any, xp: Any = None) -> float:
    """The largest key or memory-row norm a content lookup accepts: `finfo(dtype).max ** 0.25`.

    Up to it the cosine of SPEC §1 (`k·m / (n(k) n(m) + eps)`) and its gradient, whose
    `denom²` is the largest intermediate, stay finite and exact: about `1.16e77` in float64,
    `4.29e9` in float32. A lookup beyond it is refused with a `DomainError` naming the limit
    (the naive cosine would give uniform weights and a NaN gradient).
    """
    xp = rx.backend("numpy") if xp is None else xp
    return float(xp.finfo(dtype).max) ** 0.25


def _require_norms(label: str, x: Any, what: str = "row") -> None:
    """Refuse `x` when a row (the last axis) has a norm of at least
    [`cosine_limit`][refmem.dnc.addressing.cosine_limit]; computed without overflow (each row scaled
    by its largest magnitude)."""
    xp = rx.namespace(x)
    r = xp.abs(P.real_part(x))
    limit = cosine_limit(r.dtype, xp)
    if math.prod(int(n) for n in x.shape) == 0:
        return
    n = int(x.shape[-1]) if x.ndim else 1
    # every row: norm <= sqrt(n) max|x| < limit (NaN: not taken). A bool, never a float: an emulated
    # float32 run side by side (refmem.golden.tolerances) may read only what every run agrees on.
    if bool(xp.max(r) < limit / math.sqrt(n)):
        return
    m = xp.max(r, axis=-1)
    nonzero = m > 0
    safe = xp.where(nonzero, m, xp.ones_like(m))
    rel = xp.where(nonzero, xp.sqrt(xp.sum((r / safe[..., None]) ** 2, axis=-1)), xp.ones_like(m))  # in [1, sqrt(W)]
    ok = m < limit / rel
    if bool(xp.all(ok)):
        return
    at = _first(~rx.to_numpy(ok))
    norm = float(rx.to_numpy(m)[tuple(at)]) * float(rx.to_numpy(rel)[tuple(at)])
    raise DomainError(f"{label}: expected every {what} of norm below {limit:.3g} (finfo({r.dtype}).max ** 0.25, "
                      f"beyond which the cosine of SPEC §1 or its gradient overflows), got a norm of {norm:.3g} "
                      f"at {at}; scale it down")


def _require_cosine_scale(cache: P.CosineCache, keys: str, memory: str) -> None:
    """Refuse a lookup whose key or memory-row norms reach [`cosine_limit`][refmem.dnc.addressing.cosine_limit]."""
    xp = rx.namespace(cache.key_norm)
    dtype = P.real_part(cache.key_norm).dtype
    limit = cosine_limit(dtype, xp)
    for label, norms, what in ((keys, cache.key_norm[..., 0], "key"), (memory, cache.memory_norm[..., 0, :], "row")):
        norms = P.real_part(norms)
        if bool(xp.max(norms) < limit):  # the common case in one reduction (a NaN fails it)
            continue
        if not bool(xp.all(norms < limit)):
            h = rx.to_numpy(norms)
            at = _first(~(h < limit))
            raise DomainError(f"{label}: expected every {what} of norm below {limit:.3g} (finfo({dtype}).max ** 0.25, "
                              f"beyond which the cosine of SPEC §1 or its gradient overflows), got a norm of "
                              f"{float(h[tuple(at)]):.3g} at {at}; scale it down")


# ============================================================================= steps 2 and 8: content


class ContentWeightsOutputs(NamedTuple):
    """The output of [`content_weights_forward`][refmem.dnc.addressing.content_weights_forward]."""

    weights: Unit["B H N"]
    """`C(M, k, β)`: one distribution over the `N` slots per head."""


class ContentWeightsCache(NamedTuple):
    """Intermediates of [`content_weights_forward`][refmem.dnc.addressing.content_weights_forward]."""

    strengths: Array["B H"]
    """The raw strengths."""
    beta: Array["B H"]
    """`act(strengths)`."""
    similarity: Array["B H N"]
    """`cos(k_h, M_i)`."""
    weights: Array["B H N"]
    """The weights."""
    cosine: P.CosineCache
    """The [`CosineCache`][refmem.primitives.CosineCache] of the similarity."""


class ContentWeightsGrads(NamedTuple):
    """The gradients of [`content_weights_forward`][refmem.dnc.addressing.content_weights_forward]'s arguments."""

    memory: Array["B N W"]
    """The gradient of `memory`."""
    keys: Array["B H W"]
    """The gradient of `keys`."""
    strengths: Array["B H"]
    """The gradient of the raw `strengths`."""


def content_weights(memory: Any, keys: Any, strengths: Any, conv: C.Convention) -> tuple[Any, ContentWeightsCache]:
    """`C(M, k, β)_i = softmax_i(act(β) · cos(k, M_i))` (SPEC §5 steps 2 and 8), unchecked: `(weights, cache)`."""
    similarity, cosine = P.cosine_similarity(keys, memory)
    beta = C.strength(strengths, conv)
    weights = P.softmax(beta[:, :, None] * similarity, axis=-1)
    return weights, ContentWeightsCache(strengths, beta, similarity, weights, cosine)


def content_weights_vjp(d_weights: Any, cache: ContentWeightsCache) -> ContentWeightsGrads:
    """The gradients of [`content_weights`][refmem.dnc.addressing.content_weights], unchecked:
    `d_logits` by the softmax VJP, `d_beta = Σ_N d_logits ∘ cos`, `d_cos = d_logits ∘ beta`, then
    the cosine's VJP."""
    xp = rx.namespace(d_weights)
    d_logits = P.softmax_vjp(d_weights, cache.weights, -1)
    d_beta = xp.sum(d_logits * cache.similarity, axis=-1)
    d_similarity = d_logits * cache.beta[:, :, None]
    d_keys, d_memory = P.cosine_vjp(d_similarity, cache.cosine)
    return ContentWeightsGrads(d_memory, d_keys, C.strength_vjp(d_beta, cache.strengths))


@checked
def content_weights_forward(memory: Array["B N W"], keys: Array["B H W"], strengths: Array["B H"], *,
                            convention: ConventionName = DEFAULT) -> tuple[ContentWeightsOutputs, ContentWeightsCache]:
    """Content addressing `C(M, k, β)_i = softmax_i(act(β) · cos(k, M_i))` (SPEC §5 steps 2 and 8).

    Args:
        memory: `[B, N, W]`.
        keys: `[B, H, W]`, one key per head.
        strengths: `[B, H]`, raw; `act` is the convention's (softplus or oneplus).
        convention: `"deepmind"` (default), `"paper"` or a [`Convention`][refmem.dnc.conventions.Convention]
            (keyword-only).

    Returns:
        outputs: a [`ContentWeightsOutputs`][refmem.dnc.addressing.ContentWeightsOutputs] `(weights [B, H, N])`.
        cache: a [`ContentWeightsCache`][refmem.dnc.addressing.ContentWeightsCache].

    Raises:
        refmem.errors.DomainError: a key or memory row of norm at least
            [`cosine_limit`][refmem.dnc.addressing.cosine_limit].
    """
    _require_norms("memory", memory)
    _require_norms("keys", keys, "key")
    weights, cache = content_weights(memory, keys, strengths, C.get(convention))
    return ContentWeightsOutputs(weights), cache


def _not_outputs(label: str, cls: type, value: Any) -> DTypeError:
    """The error for an upstream gradient that is neither the forward's outputs type nor a tuple."""
    return DTypeError(f"{label}: expected {'an' if cls.__name__[0] in 'AEIOU' else 'a'} {cls.__name__} (or a tuple "
                      f"of its {len(cls._fields)} fields: {', '.join(cls._fields)}; None for zero), got "
                      f"{type(value).__name__}")


def _old_single(name: str, array_result: bool = False) -> Any:
    """The 0.1 call form `f(d_array, cache)` of a backward with one output: it warns and calls the
    new form `f((d_array,), cache)`; `array_result`: return the one gradient as 0.1 did."""

    def old(*args: Any, **kwargs: Any) -> Any:
        given = dict(zip(("d_out", "cache"), args))
        if len(args) > 2 or set(given) & set(kwargs):
            raise TypeError(f"{name}() takes the two arguments (d_out, cache)")
        given.update(kwargs)
        cache = given.pop("cache", None)
        if len(given) != 1 or cache is None:
            raise TypeError(f"{name}() takes the two arguments (d_out, cache)")
        d_out = next(iter(given.values()))
        new = globals()[name]
        if isinstance(d_out, tuple):
            return new(d_out, cache)
        warn_old_call(f"{name}(d, cache)", f"{name}((d,), cache)")
        grads = new((d_out,), cache)
        return grads[0] if array_result else grads

    return old


@checked(legacy=_old_single("content_weights_backward"))
def content_weights_backward(d_out: ContentWeightsOutputs, cache: ContentWeightsCache) -> ContentWeightsGrads:
    """VJP of [`content_weights_forward`][refmem.dnc.addressing.content_weights_forward]:
    `d_logits = softmax_backward`; `d_beta = Σ_N d_logits ∘ cos`; `d_cos = d_logits ∘ beta`.

    Args:
        d_out: a [`ContentWeightsOutputs`][refmem.dnc.addressing.ContentWeightsOutputs] (or a 1-tuple):
            the gradient of `weights [B, H, N]` (`None`: zero).
        cache: the [`ContentWeightsCache`][refmem.dnc.addressing.ContentWeightsCache] of the forward.

    Returns:
        grads: a [`ContentWeightsGrads`][refmem.dnc.addressing.ContentWeightsGrads]
            `(memory [B, N, W], keys [B, H, W], strengths [B, H])`.

    Derivation: [docs/derivations/dnc.md, "1. Content weights (steps 2 and 8)"](../derivations/dnc.md#1-content-weights-steps-2-and-8-content_weights_forward)
    """
    (d,) = d_out
    return content_weights_vjp(P.zeros_if_none(d, cache.weights), cache)


class MaskedContentWeightsOutputs(NamedTuple):
    """The output of [`masked_content_weights_forward`][refmem.dnc.addressing.masked_content_weights_forward]."""

    weights: Unit["B H N"]
    """`C(M, k, β, m)`: one distribution over the `N` slots per head."""


class MaskedContentWeightsCache(NamedTuple):
    """Intermediates of [`masked_content_weights_forward`][refmem.dnc.addressing.masked_content_weights_forward]."""

    memory: Array["B N W"]
    """The unmasked memory."""
    keys: Array["B H W"]
    """The unmasked keys."""
    masks: Array["B H W"]
    """The masks."""
    weights: Array["B H N"]
    """The weights."""
    content: ContentWeightsCache
    """The [`ContentWeightsCache`][refmem.dnc.addressing.ContentWeightsCache] of the lookup of each
    head's masked key in its masked memory (batch `B H`, one head each)."""


class MaskedContentWeightsGrads(NamedTuple):
    """The gradients of [`masked_content_weights_forward`][refmem.dnc.addressing.masked_content_weights_forward]'s arguments."""

    memory: Array["B N W"]
    """The gradient of `memory`."""
    keys: Array["B H W"]
    """The gradient of `keys`."""
    strengths: Array["B H"]
    """The gradient of the raw `strengths`."""
    masks: Array["B H W"]
    """The gradient of `masks`."""


def masked_content_weights(memory: Any, keys: Any, strengths: Any, masks: Any,
                           conv: C.Convention) -> tuple[Any, MaskedContentWeightsCache]:
    """`C(M, k, β, m)_i = softmax_i(act(β) · cos(k ∘ m, M_i ∘ m))` (SPEC §5 option `masked_content`),
    unchecked: `(weights, cache)`."""
    xp = rx.namespace(memory, keys, strengths, masks)
    B, N, W = (int(s) for s in memory.shape)
    H = int(keys.shape[1])
    masked_keys = xp.reshape(keys * masks, (B * H, 1, W))
    masked_memory = xp.reshape(memory[:, None, :, :] * masks[:, :, None, :], (B * H, N, W))
    w, content = content_weights(masked_memory, masked_keys, xp.reshape(strengths, (B * H, 1)), conv)
    weights = xp.reshape(w, (B, H, N))
    return weights, MaskedContentWeightsCache(memory, keys, masks, weights, content)


def masked_content_weights_vjp(d_weights: Any, cache: MaskedContentWeightsCache) -> MaskedContentWeightsGrads:
    """The gradients of [`masked_content_weights`][refmem.dnc.addressing.masked_content_weights], unchecked:
    the lookup's gradient w.r.t. the masked key `k ∘ m` and memory `M_i ∘ m`, then `dk = d(k∘m) ∘ m`,
    `dM = Σ_H d(M∘m) ∘ m`, `dm = d(k∘m) ∘ k + Σ_N d(M∘m) ∘ M`."""
    xp = rx.namespace(d_weights)
    B, N, W = (int(s) for s in cache.memory.shape)
    H = int(cache.keys.shape[1])
    g = content_weights_vjp(xp.reshape(d_weights, (B * H, 1, N)), cache.content)
    d_mk = xp.reshape(g.keys, (B, H, W))
    d_mm = xp.reshape(g.memory, (B, H, N, W))
    d_memory = xp.sum(d_mm * cache.masks[:, :, None, :], axis=1)
    d_keys = d_mk * cache.masks
    d_masks = d_mk * cache.keys + xp.sum(d_mm * cache.memory[:, None, :, :], axis=2)
    return MaskedContentWeightsGrads(d_memory, d_keys, xp.reshape(g.strengths, (B, H)), d_masks)


@checked
def masked_content_weights_forward(memory: Array["B N W"], keys: Array["B H W"], strengths: Array["B H"],
                                   masks: Unit["B H W"], *, convention: ConventionName = DEFAULT
                                   ) -> tuple[MaskedContentWeightsOutputs, MaskedContentWeightsCache]:
    """Masked content addressing `C(M, k, β, m)_i = softmax_i(act(β) · cos(k ∘ m, M_i ∘ m))`
    (SPEC §5 option `masked_content`, Csordás & Schmidhuber 2019).

    Args:
        memory: `[B, N, W]`.
        keys: `[B, H, W]`, one key per head.
        strengths: `[B, H]`, raw; `act` is the convention's.
        masks: `[B, H, W]`, one mask per head (after the sigmoid), applied to the key and to
            every memory row.
        convention: `"deepmind"` (default), `"paper"` or a [`Convention`][refmem.dnc.conventions.Convention]
            (keyword-only): which strength activation `act` is.

    Returns:
        outputs: a [`MaskedContentWeightsOutputs`][refmem.dnc.addressing.MaskedContentWeightsOutputs]
            `(weights [B, H, N])`.
        cache: a [`MaskedContentWeightsCache`][refmem.dnc.addressing.MaskedContentWeightsCache].

    Raises:
        refmem.errors.DomainError: a masked key or memory row of norm at least
            [`cosine_limit`][refmem.dnc.addressing.cosine_limit].
    """
    _require_norms("memory", memory)
    _require_norms("keys", keys, "key")
    weights, cache = masked_content_weights(memory, keys, strengths, masks, C.get(convention))
    return MaskedContentWeightsOutputs(weights), cache


@checked(legacy=_old_single("masked_content_weights_backward"))
def masked_content_weights_backward(d_out: MaskedContentWeightsOutputs,
                                    cache: MaskedContentWeightsCache) -> MaskedContentWeightsGrads:
    """VJP of [`masked_content_weights_forward`][refmem.dnc.addressing.masked_content_weights_forward].

    The lookup's gradient w.r.t. the masked key `k ∘ m` and memory `M_i ∘ m`, then
    `dk = d(k∘m) ∘ m`, `dM = Σ_H d(M∘m) ∘ m`, `dm = d(k∘m) ∘ k + Σ_N d(M∘m) ∘ M`.

    Args:
        d_out: a [`MaskedContentWeightsOutputs`][refmem.dnc.addressing.MaskedContentWeightsOutputs]
            (or a 1-tuple): the gradient of `weights [B, H, N]` (`None`: zero).
        cache: the [`MaskedContentWeightsCache`][refmem.dnc.addressing.MaskedContentWeightsCache] of the forward.

    Returns:
        grads: a [`MaskedContentWeightsGrads`][refmem.dnc.addressing.MaskedContentWeightsGrads]
            `(memory [B, N, W], keys [B, H, W], strengths [B, H], masks [B, H, W])`.

    Derivation: [docs/derivations/dnc.md, "Masked content"](../derivations/dnc.md#masked-content-masked_content_weights_forward)
    """
    (d,) = d_out
    return masked_content_weights_vjp(P.zeros_if_none(d, cache.weights), cache)


def _content(memory: Any, keys: Any, strengths: Any, masks: Any, conv: C.Convention) -> tuple[Any, Any]:
    """Plain content addressing, or the masked one when `masks` is given (unchecked)."""
    if masks is None:
        return content_weights(memory, keys, strengths, conv)
    return masked_content_weights(memory, keys, strengths, masks, conv)


def _content_vjp(d_weights: Any, cache: Any) -> tuple[Any, Any, Any, Any]:
    """`(memory, keys, strengths, masks)` gradients of [`_content`][] (`masks` `None` if unmasked)."""
    if type(cache) is MaskedContentWeightsCache:
        return tuple(masked_content_weights_vjp(d_weights, cache))
    g = content_weights_vjp(d_weights, cache)
    return g.memory, g.keys, g.strengths, None


def _lookup_cosine(cache: Any) -> P.CosineCache:
    """The cosine cache of a plain or masked lookup."""
    return cache.content.cosine if type(cache) is MaskedContentWeightsCache else cache.cosine


# ============================================================================= option: link sharpness


class SharpenOutputs(NamedTuple):
    """The output of [`sharpen_forward`][refmem.dnc.addressing.sharpen_forward]."""

    sharpened: Unit["B R nw N"]
    """`S(d, s)`, a distribution over the `N` slots per read head and write head."""


class SharpenCache(NamedTuple):
    """Intermediates of [`sharpen_forward`][refmem.dnc.addressing.sharpen_forward]."""

    shifted: Array["B R nw N"]
    """`d + eps`."""
    log_shifted: Array["B R nw N"]
    """`log(d + eps)`."""
    sharpness: Array["B R"]
    """The sharpness `s`."""
    out: Array["B R nw N"]
    """The sharpened weights."""


class SharpenGrads(NamedTuple):
    """The gradients of [`sharpen_forward`][refmem.dnc.addressing.sharpen_forward]'s arguments."""

    weights: Array["B R nw N"]
    """The gradient of `weights`."""
    sharpness: Array["B R"]
    """The gradient of `sharpness`."""


def sharpen(weights: Any, sharpness: Any, eps: float = SHARPNESS_EPS) -> tuple[Any, SharpenCache]:
    """`S(d, s)_i = softmax_i(s · log(d_i + eps))` over the `N` slots (SPEC §5 option `link_sharpness`),
    unchecked: `(sharpened, cache)`."""
    xp = rx.namespace(weights, sharpness)
    shifted = weights + eps
    log_shifted = xp.log(shifted)
    out = P.softmax(sharpness[:, :, None, None] * log_shifted, axis=-1)
    return out, SharpenCache(shifted, log_shifted, sharpness, out)


def sharpen_vjp(d_out: Any, cache: SharpenCache) -> SharpenGrads:
    """The gradients of [`sharpen`][refmem.dnc.addressing.sharpen], unchecked: `g` the softmax VJP of
    the logits `s log(d + eps)`; `dd = g s / (d + eps)`, `ds = Σ_{nw, N} g log(d + eps)`."""
    xp = rx.namespace(d_out)
    g = P.softmax_vjp(d_out, cache.out, -1)
    d_weights = g * cache.sharpness[:, :, None, None] / cache.shifted
    d_sharpness = xp.sum(g * cache.log_shifted, axis=(-2, -1))
    return SharpenGrads(d_weights, d_sharpness)


@checked
def sharpen_forward(weights: Unit["B R nw N"], sharpness: Array["B R"], *,
                    eps: Positive = SHARPNESS_EPS) -> tuple[SharpenOutputs, SharpenCache]:
    """Link distribution sharpness `S(d, s)_i = (d_i + eps)^s / Σ_j (d_j + eps)^s` over the `N` slots
    (SPEC §5 option `link_sharpness`), one sharpness per read head shared by the write heads.

    Computed as `softmax_i(s · log(d_i + eps))` (the same value; analytic for `d + eps > 0`).

    Args:
        weights: `[B, R, nw, N]`, forward or backward weights (non-negative).
        sharpness: `[B, R]`, after the activation (oneplus: `s > 1`).
        eps: the `eps` added to every weight, a finite number > 0 (SPEC: `1e-6`; keyword-only).

    Returns:
        outputs: a [`SharpenOutputs`][refmem.dnc.addressing.SharpenOutputs] `(sharpened [B, R, nw, N])`.
        cache: a [`SharpenCache`][refmem.dnc.addressing.SharpenCache].
    """
    out, cache = sharpen(weights, sharpness, eps)
    return SharpenOutputs(out), cache


@checked(legacy=_old_single("sharpen_backward"))
def sharpen_backward(d_out: SharpenOutputs, cache: SharpenCache) -> SharpenGrads:
    """VJP of [`sharpen_forward`][refmem.dnc.addressing.sharpen_forward].

    `g = softmax_backward(d_out)` of the logits `s log(d + eps)`; `dd = g s / (d + eps)`,
    `ds = Σ_{nw, N} g log(d + eps)`.

    Args:
        d_out: a [`SharpenOutputs`][refmem.dnc.addressing.SharpenOutputs] (or a 1-tuple): the gradient
            of `sharpened [B, R, nw, N]` (`None`: zero).
        cache: the [`SharpenCache`][refmem.dnc.addressing.SharpenCache] of the forward.

    Returns:
        grads: a [`SharpenGrads`][refmem.dnc.addressing.SharpenGrads] `(weights [B, R, nw, N], sharpness [B, R])`.

    Derivation: [docs/derivations/dnc.md, "Link sharpness"](../derivations/dnc.md#link-sharpness-sharpen_forward)
    """
    (d,) = d_out
    return sharpen_vjp(P.zeros_if_none(d, cache.out), cache)


# ============================================================================= step 1: usage


class UsageOutputs(NamedTuple):
    """The outputs of [`usage_forward`][refmem.dnc.addressing.usage_forward]."""

    usage: Unit["B N"]
    """`u_t`."""
    retention: Unit["B N"]
    """The retention `ψ = Π_r (1 - f_r wr_{t-1,r})`, which the de-allocation option also reads."""


class UsageCache(NamedTuple):
    """Intermediates of [`usage_forward`][refmem.dnc.addressing.usage_forward]."""

    prev_usage: Array["B N"]
    """`u_{t-1}`."""
    write_factors: Array["B nw N"]
    """`1 - ww_{t-1,k}`, of the tensor actually used (the frozen one when given)."""
    write_product: Array["B N"]
    """`1 - Π_k (1 - ww_{t-1,k})`."""
    usage_after_write: Array["B N"]
    """`u'`."""
    free_gates: Array["B R"]
    """The free gates."""
    prev_read_weights: Array["B R N"]
    """`wr_{t-1}`."""
    free_factors: Array["B R N"]
    """`1 - f_r wr_{t-1,r}`."""
    retention: Array["B N"]
    """`ψ`."""
    stop: bool
    """Whether the gradient w.r.t. `ww_{t-1}` is stopped."""


class UsageGrads(NamedTuple):
    """The gradients of [`usage_forward`][refmem.dnc.addressing.usage_forward]'s arguments."""

    prev_usage: Array["B N"]
    """The gradient of `prev_usage`."""
    prev_write_weights: Array["B nw N"]
    """The gradient of `prev_write_weights` (zeros when the convention stops it)."""
    free_gates: Array["B R"]
    """The gradient of `free_gates`."""
    prev_read_weights: Array["B R N"]
    """The gradient of `prev_read_weights`."""


def usage(prev_usage: Any, prev_write_weights: Any, free_gates: Any, prev_read_weights: Any, conv: C.Convention,
          frozen_write_weights: Any = None) -> tuple[Any, UsageCache]:
    """The usage update of SPEC §5 step 1, unchecked: `(usage, cache)`; the retention is `cache.retention`.

    `ψ = Π_r (1 - f_r wr_{t-1,r})`; `u' = u_{t-1} + (1 - u_{t-1}) ∘ (1 - Π_k (1 - ww_{t-1,k}))`; `u_t = u' ∘ ψ`.
    """
    xp = rx.namespace(prev_usage, prev_write_weights, free_gates, prev_read_weights)
    ww = prev_write_weights
    if conv.stop_usage_gradient and frozen_write_weights is not None:
        ww = frozen_write_weights
    write_factors = 1.0 - ww
    write_product = 1.0 - _prod_heads(write_factors)
    usage_after_write = prev_usage + (1.0 - prev_usage) * write_product
    free_factors = 1.0 - free_gates[:, :, None] * prev_read_weights
    retention = xp.prod(free_factors, axis=1)
    u = usage_after_write * retention
    cache = UsageCache(prev_usage, write_factors, write_product, usage_after_write, free_gates,
                       prev_read_weights, free_factors, retention, conv.stop_usage_gradient)
    return u, cache


def usage_vjp(d_usage: Any, d_retention: Any, cache: UsageCache) -> UsageGrads:
    """The gradients of [`usage`][refmem.dnc.addressing.usage] from those of `u_t` and of the retention
    `ψ` (either may be `None`, zero), unchecked; products differentiated without division."""
    xp = rx.namespace(cache.retention)
    if d_usage is None:
        d_usage = xp.zeros_like(cache.retention)
    d_after_write = d_usage * cache.retention
    d_retention = P.add_optional(d_usage * cache.usage_after_write, d_retention)
    d_prev_usage = d_after_write * (1.0 - cache.write_product)
    if cache.stop:
        d_prev_write_weights = xp.zeros(cache.write_factors.shape, dtype=d_usage.dtype)
    else:
        d_write_product = d_after_write * (1.0 - cache.prev_usage)
        # write_product = 1 - Π_k (1 - ww_k)  ->  ∂/∂ww_k = Π_{j≠k} (1 - ww_j)
        d_prev_write_weights = _times_others(d_write_product[:, None, :], cache.write_factors, 1)
    d_free_factors = _times_others(d_retention[:, None, :], cache.free_factors, 1)
    d_free_gates = -xp.sum(d_free_factors * cache.prev_read_weights, axis=-1)
    d_prev_read_weights = -d_free_factors * cache.free_gates[:, :, None]
    return UsageGrads(d_prev_usage, d_prev_write_weights, d_free_gates, d_prev_read_weights)


@checked
def usage_forward(prev_usage: Unit["B N"], prev_write_weights: Weighting["B nw N"], free_gates: Unit["B R"],
                  prev_read_weights: Weighting["B R N"], *, convention: ConventionName = DEFAULT,
                  frozen_write_weights: Weighting["B nw N"] | None = None) -> tuple[UsageOutputs, UsageCache]:
    """Usage update, SPEC §5 step 1.

    `ψ = Π_r (1 - f_r wr_{t-1,r})`; `u' = u_{t-1} + (1 - u_{t-1}) ∘ (1 - Π_k (1 - ww_{t-1,k}))`;
    `u_t = u' ∘ ψ`.

    Args:
        prev_usage: `[B, N]`.
        prev_write_weights: `[B, nw, N]`, rows summing to at most 1.
        free_gates: `[B, R]` (after the sigmoid).
        prev_read_weights: `[B, R, N]`, rows summing to at most 1.
        convention: `"deepmind"` (default) stops the gradient w.r.t. `prev_write_weights`; `"paper"`
            does not (keyword-only).
        frozen_write_weights: `[B, nw, N]` or `None` (keyword-only); under a convention that stops
            the gradient, the value used in place of `prev_write_weights` (the recorded value of a
            finite-difference check, SPEC §6). Ignored by the `paper` convention, which has no
            stopped path.

    Returns:
        outputs: a [`UsageOutputs`][refmem.dnc.addressing.UsageOutputs] `(usage [B, N], retention [B, N])`.
        cache: a [`UsageCache`][refmem.dnc.addressing.UsageCache].
    """
    u, cache = usage(prev_usage, prev_write_weights, free_gates, prev_read_weights, C.get(convention),
                     frozen_write_weights)
    return UsageOutputs(u, cache.retention), cache


def _old_usage_backward(*args: Any, **kwargs: Any) -> UsageGrads:
    """The 0.1 form `usage_backward(d_usage, cache, d_retention=None)`, deprecated."""
    given = old_call_arguments("usage_backward", ("d_out", "cache", "d_retention"), args, kwargs,
                               required=("d_out", "cache"), renamed={"d_usage": "d_out"})
    if isinstance(given["d_out"], tuple) and "d_retention" not in given:
        return usage_backward(given["d_out"], given["cache"])
    warn_old_call("usage_backward(d_usage, cache, d_retention=None)",
                  "usage_backward(UsageOutputs(usage=d_usage, retention=d_retention), cache)")
    return usage_backward(UsageOutputs(given["d_out"], given.get("d_retention")), given["cache"])


@checked(legacy=_old_usage_backward)
def usage_backward(d_out: UsageOutputs, cache: UsageCache) -> UsageGrads:
    """VJP of [`usage_forward`][refmem.dnc.addressing.usage_forward]; products differentiated without division.

    Args:
        d_out: a [`UsageOutputs`][refmem.dnc.addressing.UsageOutputs] (or a tuple in its order) of the
            gradients of `usage [B, N]` and of `retention [B, N]` (the path of the de-allocation
            option, never stopped); each may be `None` (zero).
        cache: the [`UsageCache`][refmem.dnc.addressing.UsageCache] of the forward.

    Returns:
        grads: a [`UsageGrads`][refmem.dnc.addressing.UsageGrads] `(prev_usage [B, N],
            prev_write_weights [B, nw, N], free_gates [B, R], prev_read_weights [B, R, N])`;
            `prev_write_weights` is zero when the convention stops that gradient.

    Derivation: [docs/derivations/dnc.md, "2. Usage (step 1)"](../derivations/dnc.md#2-usage-step-1-usage_forward)
    """
    d_usage, d_retention = d_out
    return usage_vjp(d_usage, d_retention, cache)


# ============================================================================= step 3: allocation


class AllocationOutputs(NamedTuple):
    """The output of [`allocation_forward`][refmem.dnc.addressing.allocation_forward]."""

    allocation: Unit["B N"]
    """`a = alloc(u)`."""


class AllocationCache(NamedTuple):
    """Intermediates of [`allocation_forward`][refmem.dnc.addressing.allocation_forward]."""

    perm: Any
    """`φ [B, N]`, the integer sort permutation (treated as a constant)."""
    sorted_nonusage: Array["B N"]
    """`sn`."""
    sorted_usage: Array["B N"]
    """`su = 1 - sn`."""
    prod_sorted_usage: Array["B N"]
    """`Π_{i<j} su_i`."""
    eps: float = ALLOCATION_EPS
    """The forward's `eps`."""
    inverse: Any = None
    """`φ⁻¹ [B, N]`, the inverse permutation (the forward's un-sort; `None`: the backward computes it)."""


class AllocationGrads(NamedTuple):
    """The gradient of [`allocation_forward`][refmem.dnc.addressing.allocation_forward]'s argument."""

    usage: Array["B N"]
    """The gradient of `usage` (the permutation held constant)."""


def allocation(usage: Any, eps: float = ALLOCATION_EPS) -> tuple[Any, AllocationCache]:
    """Allocation weights `a = alloc(u)` (SPEC §5 step 3), unchecked: `(allocation, cache)`."""
    xp = rx.namespace(usage)
    usage_hat = eps + (1.0 - eps) * usage
    nonusage = 1.0 - usage_hat
    # descending and stable: the stable ascending order of the negation (exact), which NumPy sorts
    # natively where `descending=True` flips twice around it
    perm = xp.argsort(-P.real_part(nonusage), axis=-1, stable=True)
    sorted_nonusage = xp.take_along_axis(nonusage, perm, axis=-1)
    sorted_usage = 1.0 - sorted_nonusage
    prod_sorted_usage = P.exclusive_cumprod(sorted_usage, axis=-1)
    sorted_allocation = sorted_nonusage * prod_sorted_usage
    inverse = xp.argsort(perm, axis=-1, stable=True)  # what P.unsort computes, kept for the backward
    a = xp.take_along_axis(sorted_allocation, inverse, axis=-1)
    return a, AllocationCache(perm, sorted_nonusage, sorted_usage, prod_sorted_usage, eps, inverse)


def allocation_vjp(d_allocation: Any, cache: AllocationCache) -> Any:
    """The gradient `d_usage [B, N]` of [`allocation`][refmem.dnc.addressing.allocation], unchecked,
    the permutation held constant."""
    xp = rx.namespace(d_allocation)
    d_sorted_allocation = xp.take_along_axis(d_allocation, cache.perm, axis=-1)
    d_sorted_nonusage = d_sorted_allocation * cache.prod_sorted_usage
    d_prod = d_sorted_allocation * cache.sorted_nonusage
    d_sorted_usage = P.exclusive_cumprod_vjp(d_prod, cache.sorted_usage, -1, cache.prod_sorted_usage)
    d_sorted_nonusage = d_sorted_nonusage - d_sorted_usage
    if cache.inverse is None:
        d_nonusage = P.unsort(d_sorted_nonusage, cache.perm, axis=-1)
    else:
        d_nonusage = xp.take_along_axis(d_sorted_nonusage, cache.inverse, axis=-1)
    return -(1.0 - cache.eps) * d_nonusage


@checked
def allocation_forward(usage: Unit["B N"], *,
                       eps: BelowOne = ALLOCATION_EPS) -> tuple[AllocationOutputs, AllocationCache]:
    """Allocation weights `a = alloc(u)` (SPEC §5 step 3).

    `û = eps + (1 - eps) u`; `sn = sort(1 - û)` descending and stable (lower index first on ties;
    the order is decided on the real part), permutation `φ`; `su = 1 - sn`;
    `a_sorted_j = sn_j Π_{i<j} su_i`; un-sort with `φ`.

    Args:
        usage: `[B, N]`.
        eps: the `ε` of `û`, in [0, 1) ([`ALLOCATION_EPS`][refmem.dnc.addressing.ALLOCATION_EPS], SPEC §5
            step 3; keyword-only). The backward reads it from the cache.

    Returns:
        outputs: an [`AllocationOutputs`][refmem.dnc.addressing.AllocationOutputs] `(allocation [B, N])`.
        cache: an [`AllocationCache`][refmem.dnc.addressing.AllocationCache].
    """
    a, cache = allocation(usage, eps)
    return AllocationOutputs(a), cache


def _old_allocation_backward(*args: Any, **kwargs: Any) -> Any:
    """The 0.1 form `allocation_backward(d_allocation, cache, eps=None)`, deprecated: it returns the
    array `d_usage`; a given `eps` overrides the forward's."""
    given = old_call_arguments("allocation_backward", ("d_out", "cache", "eps"), args, kwargs,
                               required=("d_out", "cache"), renamed={"d_allocation": "d_out"})
    d_out, cache, eps = given["d_out"], given["cache"], given.get("eps")
    if isinstance(d_out, tuple) and "eps" not in given:
        return allocation_backward(d_out, cache)
    warn_old_call("allocation_backward(d_allocation, cache, eps=None)",
                  "allocation_backward((d_allocation,), cache).usage (the cache keeps the forward's eps)")
    if eps is not None:
        BelowOne.check("eps", eps)
        cache = cache._replace(eps=eps)
    return allocation_backward(d_out if isinstance(d_out, tuple) else (d_out,), cache).usage


@checked(legacy=_old_allocation_backward)
def allocation_backward(d_out: AllocationOutputs, cache: AllocationCache) -> AllocationGrads:
    """VJP of [`allocation_forward`][refmem.dnc.addressing.allocation_forward], the permutation held
    constant (SPEC §5 step 3), with the `eps` the forward used.

    Args:
        d_out: an [`AllocationOutputs`][refmem.dnc.addressing.AllocationOutputs] (or a 1-tuple): the
            gradient of `allocation [B, N]` (`None`: zero).
        cache: the [`AllocationCache`][refmem.dnc.addressing.AllocationCache] of the forward.

    Returns:
        grads: an [`AllocationGrads`][refmem.dnc.addressing.AllocationGrads] `(usage [B, N])`.

    Derivation: [docs/derivations/dnc.md, "3. Allocation (step 3)"](../derivations/dnc.md#3-allocation-step-3-allocation_forward)
    """
    (d,) = d_out
    return AllocationGrads(allocation_vjp(P.zeros_if_none(d, cache.sorted_usage), cache))


class WriteAllocationWeightsOutputs(NamedTuple):
    """The output of [`write_allocation_weights_forward`][refmem.dnc.addressing.write_allocation_weights_forward]."""

    allocation: Unit["B nw N"]
    """`a_k`, one allocation per write head."""


class WriteAllocationWeightsCache(NamedTuple):
    """Intermediates of [`write_allocation_weights_forward`][refmem.dnc.addressing.write_allocation_weights_forward]."""

    usages: Array["B nw N"]
    """`u^(k)`, the usage each head allocates from."""
    allocation: Array["B nw N"]
    """`a_k`."""
    write_gates: Array["B nw"]
    """The gates `g_k`."""
    heads: tuple[AllocationCache, ...]
    """One [`AllocationCache`][refmem.dnc.addressing.AllocationCache] per write head."""


class WriteAllocationWeightsGrads(NamedTuple):
    """The gradients of [`write_allocation_weights_forward`][refmem.dnc.addressing.write_allocation_weights_forward]'s arguments."""

    usage: Array["B N"]
    """The gradient of `usage`."""
    write_gates: Array["B nw"]
    """The gradient of `write_gates`."""


def write_allocation_weights(usage: Any, write_gates: Any) -> tuple[Any, WriteAllocationWeightsCache]:
    """Allocation for each write head in turn (SPEC §5 step 3), unchecked: `(allocation, cache)`.

    `a_k = alloc(u^(k))`, `u^(k+1) = u^(k) + (1 - u^(k)) ∘ g_k a_k`, `u^(0) = u_t`.
    """
    xp = rx.namespace(usage, write_gates)
    nw = int(write_gates.shape[1])
    u = usage
    usages, allocs, heads = [], [], []
    for k in range(nw):
        a, cache = allocation(u)
        usages.append(u)
        allocs.append(a)
        heads.append(cache)
        u = u + (1.0 - u) * write_gates[:, k:k + 1] * a
    alloc = xp.stack(allocs, axis=1)
    return alloc, WriteAllocationWeightsCache(xp.stack(usages, axis=1), alloc, write_gates, tuple(heads))


def write_allocation_weights_vjp(d_allocation: Any, cache: WriteAllocationWeightsCache) -> WriteAllocationWeightsGrads:
    """The gradients of [`write_allocation_weights`][refmem.dnc.addressing.write_allocation_weights],
    unchecked: reverse over the write heads, `d u^(k)` collecting the allocation of head `k` and the
    simulated update `u^(k+1)`."""
    xp = rx.namespace(d_allocation)
    nw = int(cache.write_gates.shape[1])
    d_u = None  # d u^(nw) = 0: u^(nw) is not used, so the last head starts from its allocation alone
    d_gates = [None] * nw
    for k in reversed(range(nw)):
        if d_u is None:
            d_gates[k] = xp.zeros(cache.write_gates[:, k].shape, dtype=d_allocation.dtype)
            d_u = allocation_vjp(d_allocation[:, k, :], cache.heads[k])
            continue
        u_k = cache.usages[:, k, :]
        a_k = cache.allocation[:, k, :]
        g_k = cache.write_gates[:, k:k + 1]
        d_a = d_allocation[:, k, :] + d_u * (1.0 - u_k) * g_k
        d_gates[k] = xp.sum(d_u * (1.0 - u_k) * a_k, axis=-1)
        d_u = d_u * (1.0 - g_k * a_k) + allocation_vjp(d_a, cache.heads[k])
    return WriteAllocationWeightsGrads(d_u, xp.stack(d_gates, axis=1))


@checked
def write_allocation_weights_forward(usage: Unit["B N"], write_gates: Unit["B nw"]
                                     ) -> tuple[WriteAllocationWeightsOutputs, WriteAllocationWeightsCache]:
    """Allocation for each write head in turn (SPEC §5 step 3).

    `a_k = alloc(u^(k))`, `u^(k+1) = u^(k) + (1 - u^(k)) ∘ g_k a_k`, `u^(0) = u_t`, with
    `g_k = g^a_k g^w_k`.

    Args:
        usage: `[B, N]`, `u_t`.
        write_gates: `[B, nw]`, the products `g^a_k g^w_k`.

    Returns:
        outputs: a [`WriteAllocationWeightsOutputs`][refmem.dnc.addressing.WriteAllocationWeightsOutputs]
            `(allocation [B, nw, N])`.
        cache: a [`WriteAllocationWeightsCache`][refmem.dnc.addressing.WriteAllocationWeightsCache].
    """
    a, cache = write_allocation_weights(usage, write_gates)
    return WriteAllocationWeightsOutputs(a), cache


@checked(legacy=_old_single("write_allocation_weights_backward"))
def write_allocation_weights_backward(d_out: WriteAllocationWeightsOutputs,
                                      cache: WriteAllocationWeightsCache) -> WriteAllocationWeightsGrads:
    """VJP of [`write_allocation_weights_forward`][refmem.dnc.addressing.write_allocation_weights_forward]:
    reverse over the write heads, `d u^(k)` collects the allocation of head `k` and the simulated
    update `u^(k+1)`.

    Args:
        d_out: a [`WriteAllocationWeightsOutputs`][refmem.dnc.addressing.WriteAllocationWeightsOutputs]
            (or a 1-tuple): the gradient of every head's `allocation [B, nw, N]` (`None`: zero).
        cache: the [`WriteAllocationWeightsCache`][refmem.dnc.addressing.WriteAllocationWeightsCache] of the forward.

    Returns:
        grads: a [`WriteAllocationWeightsGrads`][refmem.dnc.addressing.WriteAllocationWeightsGrads]
            `(usage [B, N], write_gates [B, nw])`.

    Derivation: [docs/derivations/dnc.md, "Sequential allocation over write heads"](../derivations/dnc.md#sequential-allocation-over-write-heads-write_allocation_weights_forward)
    """
    (d,) = d_out
    return write_allocation_weights_vjp(P.zeros_if_none(d, cache.allocation), cache)


# ============================================================================= step 4: write weights


class WriteWeightsOutputs(NamedTuple):
    """The output of [`write_weights_forward`][refmem.dnc.addressing.write_weights_forward]."""

    write_weights: Unit["B nw N"]
    """`ww_k`, one weighting per write head."""


class WriteWeightsCache(NamedTuple):
    """Intermediates of [`write_weights_forward`][refmem.dnc.addressing.write_weights_forward]."""

    content: Array["B nw N"]
    """`c^w`, the write content weights."""
    allocation: Array["B nw N"]
    """`a`, the allocation of every head."""
    allocation_gates: Array["B nw"]
    """`g^a`."""
    write_gates: Array["B nw"]
    """`g^w`."""
    content_cache: Any
    """The [`ContentWeightsCache`][refmem.dnc.addressing.ContentWeightsCache] of the lookup (a
    [`MaskedContentWeightsCache`][refmem.dnc.addressing.MaskedContentWeightsCache] with masks)."""
    allocation_cache: WriteAllocationWeightsCache
    """The [`WriteAllocationWeightsCache`][refmem.dnc.addressing.WriteAllocationWeightsCache] of the allocation."""


class WriteWeightsGrads(NamedTuple):
    """The gradients of [`write_weights_forward`][refmem.dnc.addressing.write_weights_forward]'s arguments."""

    memory: Array["B N W"]
    """The gradient of `memory`."""
    usage: Array["B N"]
    """The gradient of `usage`."""
    write_keys: Array["B nw W"]
    """The gradient of `write_keys`."""
    write_strengths: Array["B nw"]
    """The gradient of the raw `write_strengths`."""
    allocation_gates: Array["B nw"]
    """The gradient of `allocation_gates`."""
    write_gates: Array["B nw"]
    """The gradient of `write_gates`."""
    write_masks: Array["B nw W"] | None = None
    """The gradient of `write_masks`; `None` without masks."""


def write_weights(memory: Any, usage: Any, write_keys: Any, write_strengths: Any, allocation_gates: Any,
                  write_gates: Any, write_masks: Any, conv: C.Convention) -> tuple[Any, WriteWeightsCache]:
    """Write weights `ww_k = g^w_k (g^a_k a_k + (1 - g^a_k) c^w_k)` (SPEC §5 steps 2-4), unchecked:
    `(write_weights, cache)`; `write_masks` may be `None`."""
    content, content_cache = _content(memory, write_keys, write_strengths, write_masks, conv)
    alloc, alloc_cache = write_allocation_weights(usage, allocation_gates * write_gates)
    ga = allocation_gates[:, :, None]
    gw = write_gates[:, :, None]
    ww = gw * (ga * alloc + (1.0 - ga) * content)
    return ww, WriteWeightsCache(content, alloc, allocation_gates, write_gates, content_cache, alloc_cache)


def write_weights_vjp(d_write_weights: Any, cache: WriteWeightsCache) -> WriteWeightsGrads:
    """The gradients of [`write_weights`][refmem.dnc.addressing.write_weights], unchecked; the
    allocation's gate is the product `g^a g^w`."""
    xp = rx.namespace(d_write_weights)
    ga = cache.allocation_gates[:, :, None]
    gw = cache.write_gates[:, :, None]
    mix = ga * cache.allocation + (1.0 - ga) * cache.content
    d_write_gates = xp.sum(d_write_weights * mix, axis=-1)
    d_mix = d_write_weights * gw
    d_allocation_gates = xp.sum(d_mix * (cache.allocation - cache.content), axis=-1)
    d_content = d_mix * (1.0 - ga)
    d_allocation = d_mix * ga
    alloc = write_allocation_weights_vjp(d_allocation, cache.allocation_cache)
    d_allocation_gates = d_allocation_gates + alloc.write_gates * cache.write_gates
    d_write_gates = d_write_gates + alloc.write_gates * cache.allocation_gates
    d_memory, d_keys, d_strengths, d_masks = _content_vjp(d_content, cache.content_cache)
    return WriteWeightsGrads(d_memory, alloc.usage, d_keys, d_strengths, d_allocation_gates, d_write_gates, d_masks)


@checked
def write_weights_forward(memory: Array["B N W"], usage: Unit["B N"], write_keys: Array["B nw W"],
                          write_strengths: Array["B nw"], allocation_gates: Unit["B nw"], write_gates: Unit["B nw"],
                          write_masks: Unit["B nw W"] | None = None, *,
                          convention: ConventionName = DEFAULT) -> tuple[WriteWeightsOutputs, WriteWeightsCache]:
    """Write weights `ww_k = g^w_k (g^a_k a_k + (1 - g^a_k) c^w_k)` (SPEC §5 steps 2-4).

    Args:
        memory: `[B, N, W]`, `M_{t-1}` (the write lookup reads the old memory).
        usage: `[B, N]`, `u_t`.
        write_keys: `[B, nw, W]`.
        write_strengths: `[B, nw]` (raw).
        allocation_gates: `[B, nw]`, `g^a`.
        write_gates: `[B, nw]`, `g^w`.
        write_masks: `[B, nw, W]` or `None`; with masks the content lookup is
            [`masked_content_weights_forward`][refmem.dnc.addressing.masked_content_weights_forward]
            (SPEC §5 option `masked_content`).
        convention: `"deepmind"` (default), `"paper"` or a [`Convention`][refmem.dnc.conventions.Convention]
            (keyword-only).

    Returns:
        outputs: a [`WriteWeightsOutputs`][refmem.dnc.addressing.WriteWeightsOutputs] `(write_weights [B, nw, N])`.
        cache: a [`WriteWeightsCache`][refmem.dnc.addressing.WriteWeightsCache].

    Raises:
        refmem.errors.DomainError: a write key or memory row of norm at least
            [`cosine_limit`][refmem.dnc.addressing.cosine_limit].
    """
    _require_norms("memory", memory)
    _require_norms("write_keys", write_keys, "key")
    ww, cache = write_weights(memory, usage, write_keys, write_strengths, allocation_gates, write_gates, write_masks,
                              C.get(convention))
    return WriteWeightsOutputs(ww), cache


@checked(legacy=_old_single("write_weights_backward"))
def write_weights_backward(d_out: WriteWeightsOutputs, cache: WriteWeightsCache) -> WriteWeightsGrads:
    """VJP of [`write_weights_forward`][refmem.dnc.addressing.write_weights_forward]; the allocation's
    gate is the product `g^a g^w`.

    Args:
        d_out: a [`WriteWeightsOutputs`][refmem.dnc.addressing.WriteWeightsOutputs] (or a 1-tuple): the
            gradient of `write_weights [B, nw, N]` (`None`: zero).
        cache: the [`WriteWeightsCache`][refmem.dnc.addressing.WriteWeightsCache] of the forward.

    Returns:
        grads: a [`WriteWeightsGrads`][refmem.dnc.addressing.WriteWeightsGrads] `(memory [B, N, W],
            usage [B, N], write_keys [B, nw, W], write_strengths [B, nw], allocation_gates [B, nw],
            write_gates [B, nw], write_masks [B, nw, W])`; `write_masks` is `None` without masks.

    Derivation: [docs/derivations/dnc.md, "4. Write weights (step 4)"](../derivations/dnc.md#4-write-weights-step-4-write_weights_forward)
    """
    (d,) = d_out
    return write_weights_vjp(P.zeros_if_none(d, cache.content), cache)


# ============================================================================= step 5: memory


class MemoryUpdateOutputs(NamedTuple):
    """The output of [`memory_update_forward`][refmem.dnc.addressing.memory_update_forward]."""

    memory: Array["B N W"]
    """`M_t`."""


class MemoryUpdateCache(NamedTuple):
    """Intermediates of [`memory_update_forward`][refmem.dnc.addressing.memory_update_forward]."""

    memory: Array["B N W"]
    """`M_{t-1}`."""
    write_weights: Array["B nw N"]
    """The write weights."""
    erase_vectors: Array["B nw W"]
    """The erase vectors."""
    write_vectors: Array["B nw W"]
    """The write vectors."""
    erase_factors: Array["B nw N W"]
    """`1 - ww_k e_kᵀ`."""
    retention: Array["B N W"]
    """`Π_k` of the erase factors."""
    deallocation: Array["B N"] | None = None
    """`ψ_t` of the de-allocation option, or `None`."""


class MemoryUpdateGrads(NamedTuple):
    """The gradients of [`memory_update_forward`][refmem.dnc.addressing.memory_update_forward]'s arguments."""

    memory: Array["B N W"]
    """The gradient of `M_{t-1}`."""
    write_weights: Array["B nw N"]
    """The gradient of `write_weights`."""
    erase_vectors: Array["B nw W"]
    """The gradient of `erase_vectors`."""
    write_vectors: Array["B nw W"]
    """The gradient of `write_vectors`."""
    deallocation: Array["B N"] | None = None
    """The gradient of `deallocation`; `None` without de-allocation."""


def memory_update(memory: Any, write_weights: Any, erase_vectors: Any, write_vectors: Any,
                  deallocation: Any = None) -> tuple[Any, MemoryUpdateCache]:
    """Erase and write, SPEC §5 step 5, unchecked: `(memory, cache)`.

    `M_t = M_{t-1} ∘ Π_k (1 - ww_k e_kᵀ) + Σ_k ww_k v_kᵀ`; with `deallocation` (`ψ_t`) the old
    memory is `M_{t-1} ∘ ψ_t` first.
    """
    xp = rx.namespace(memory, write_weights, erase_vectors, write_vectors)
    erase_factors = 1.0 - _outer(write_weights, erase_vectors)  # 1 - ww_k[i] e_k[w]
    retention = _prod_heads(erase_factors)
    kept = memory if deallocation is None else memory * deallocation[:, :, None]
    new_memory = kept * retention + P.transpose_last(write_weights) @ write_vectors
    return new_memory, MemoryUpdateCache(memory, write_weights, erase_vectors, write_vectors, erase_factors,
                                         retention, deallocation)


def memory_update_vjp(d_memory: Any, cache: MemoryUpdateCache) -> MemoryUpdateGrads:
    """The gradients of [`memory_update`][refmem.dnc.addressing.memory_update], unchecked:
    `dM_{t-1} = d ∘ retention`; the erase factors by the division-free product of the others;
    `d ww = v dᵀ`, `d v = ww d` for the write."""
    xp = rx.namespace(d_memory)
    psi = cache.deallocation
    d_prev_memory = d_memory * cache.retention
    d_dealloc = None
    if psi is not None:  # M_{t-1} ∘ ψ: dψ = Σ_W d ∘ retention ∘ M_{t-1}
        d_dealloc = xp.sum(d_prev_memory * cache.memory, axis=-1)
        d_prev_memory = d_prev_memory * psi[:, :, None]
    d_retention = d_memory * (cache.memory if psi is None else cache.memory * psi[:, :, None])
    d_erase_factors = _times_others(d_retention[:, None, :, :], cache.erase_factors, 1)  # [B, nw, N, W]
    d_write_weights = -xp.sum(d_erase_factors * cache.erase_vectors[:, :, None, :], axis=-1)
    d_erase_vectors = -xp.sum(d_erase_factors * cache.write_weights[:, :, :, None], axis=-2)
    d_write_weights = d_write_weights + cache.write_vectors @ P.transpose_last(d_memory)
    d_write_vectors = cache.write_weights @ d_memory
    return MemoryUpdateGrads(d_prev_memory, d_write_weights, d_erase_vectors, d_write_vectors, d_dealloc)


@checked
def memory_update_forward(memory: Array["B N W"], write_weights: Weighting["B nw N"], erase_vectors: Unit["B nw W"],
                          write_vectors: Array["B nw W"], deallocation: Unit["B N"] | None = None
                          ) -> tuple[MemoryUpdateOutputs, MemoryUpdateCache]:
    """Erase and write, SPEC §5 step 5: `M_t = M_{t-1} ∘ Π_k (1 - ww_k e_kᵀ) + Σ_k ww_k v_kᵀ`.

    Args:
        memory: `[B, N, W]`.
        write_weights: `[B, nw, N]`, rows summing to at most 1.
        erase_vectors: `[B, nw, W]` (after the sigmoid).
        write_vectors: `[B, nw, W]`.
        deallocation: `[B, N]` or `None`; SPEC §5 option `deallocation`: the usage's retention `ψ_t`,
            so `M_t = (M_{t-1} ∘ ψ_t) ∘ Π_k (1 - ww_k e_kᵀ) + Σ_k ww_k v_kᵀ`.

    Returns:
        outputs: a [`MemoryUpdateOutputs`][refmem.dnc.addressing.MemoryUpdateOutputs] `(memory [B, N, W])`.
        cache: a [`MemoryUpdateCache`][refmem.dnc.addressing.MemoryUpdateCache].
    """
    m, cache = memory_update(memory, write_weights, erase_vectors, write_vectors, deallocation)
    return MemoryUpdateOutputs(m), cache


@checked(legacy=_old_single("memory_update_backward"))
def memory_update_backward(d_out: MemoryUpdateOutputs, cache: MemoryUpdateCache) -> MemoryUpdateGrads:
    """VJP of [`memory_update_forward`][refmem.dnc.addressing.memory_update_forward]: `dM_{t-1} = d ∘ retention`;
    erase factors by the division-free product of the others; `d ww = v dᵀ`, `d v = ww d` for the write.

    Args:
        d_out: a [`MemoryUpdateOutputs`][refmem.dnc.addressing.MemoryUpdateOutputs] (or a 1-tuple): the
            gradient of `memory [B, N, W]`, `M_t` (`None`: zero).
        cache: the [`MemoryUpdateCache`][refmem.dnc.addressing.MemoryUpdateCache] of the forward.

    Returns:
        grads: a [`MemoryUpdateGrads`][refmem.dnc.addressing.MemoryUpdateGrads] `(memory [B, N, W],
            write_weights [B, nw, N], erase_vectors [B, nw, W], write_vectors [B, nw, W],
            deallocation [B, N])`; `deallocation` is `None` without de-allocation.

    Derivation: [docs/derivations/dnc.md, "5. Erase and write (step 5)"](../derivations/dnc.md#5-erase-and-write-step-5-memory_update_forward)
    """
    (d,) = d_out
    return memory_update_vjp(P.zeros_if_none(d, cache.memory), cache)


# ============================================================================= step 6: link


class TemporalLinkageOutputs(NamedTuple):
    """The outputs of [`temporal_linkage_forward`][refmem.dnc.addressing.temporal_linkage_forward]."""

    link: Unit["B nw N N"]
    """`L_t`, zero on the diagonal."""
    precedence: Unit["B nw N"]
    """`p_t`."""


class TemporalLinkageCache(NamedTuple):
    """Intermediates of [`temporal_linkage_forward`][refmem.dnc.addressing.temporal_linkage_forward]."""

    prev_link: Array["B nw N N"]
    """`L_{t-1}`."""
    prev_precedence: Array["B nw N"]
    """`p_{t-1}`."""
    write_weights: Array["B nw N"]
    """The write weights."""
    off_diagonal: Array["N N"]
    """1 off the diagonal, 0 on it."""
    write_sum: Array["B nw 1"]
    """`Σ_i ww[i]`."""


class TemporalLinkageGrads(NamedTuple):
    """The gradients of [`temporal_linkage_forward`][refmem.dnc.addressing.temporal_linkage_forward]'s arguments."""

    prev_link: Array["B nw N N"]
    """The gradient of `prev_link`."""
    prev_precedence: Array["B nw N"]
    """The gradient of `prev_precedence`."""
    write_weights: Array["B nw N"]
    """The gradient of `write_weights`."""


def temporal_linkage(prev_link: Any, prev_precedence: Any, write_weights: Any) -> tuple[Any, Any, TemporalLinkageCache]:
    """Link and precedence per write head, SPEC §5 step 6, unchecked: `(link, precedence, cache)`."""
    xp = rx.namespace(prev_link, prev_precedence, write_weights)
    N = int(write_weights.shape[-1])
    off_diagonal = _off_diagonal(xp, N, write_weights.dtype)
    # ((1 - w_i - w_j) L + w_i p_j) with the diagonal set to 0: the same operations on every
    # element as the broadcast expression times the off-diagonal mask, in four [B, nw, N, N] passes
    # (two of them BLAS products), written in place
    link = _one_minus_sum(write_weights)
    link = _imul(link, prev_link)
    link = _iadd(link, _outer(write_weights, prev_precedence))
    link = _zero_diagonal(link)
    write_sum = xp.sum(write_weights, axis=-1, keepdims=True)
    precedence = (1.0 - write_sum) * prev_precedence + write_weights
    return link, precedence, TemporalLinkageCache(prev_link, prev_precedence, write_weights, off_diagonal, write_sum)


def temporal_linkage_vjp(d_link: Any, d_precedence: Any, cache: TemporalLinkageCache, *,
                         overwrite: bool = False) -> TemporalLinkageGrads:
    """The gradients of [`temporal_linkage`][refmem.dnc.addressing.temporal_linkage] from those of the
    link and the precedence (either may be `None`, zero), unchecked. `overwrite`: `d_link` is a
    fresh array the caller gives up (its diagonal is zeroed in place instead of a masked copy)."""
    xp = rx.namespace(cache.write_weights)
    d_precedence = P.zeros_if_none(d_precedence, cache.prev_precedence)
    if d_link is None:
        g = P.zeros_if_none(d_link, cache.prev_link)
    elif overwrite:
        g = _zero_diagonal(d_link)
    else:
        g = d_link * cache.off_diagonal
    w = cache.write_weights
    d_prev_link = _imul(_one_minus_sum(w), g)  # g (1 - w_i - w_j)
    # through ww[i]: Σ_j g[i, j] (p[j] - L[i, j]); through ww[j]: -Σ_i g[i, j] L[i, j]
    # (every sum over a [B, nw, N, N] array as a matrix-vector product)
    g_link = g * cache.prev_link
    d_w = (g @ cache.prev_precedence[:, :, :, None])[:, :, :, 0] - _row_sums(g_link) - _column_sums(g_link)
    d_prev_precedence = (w[:, :, None, :] @ g)[:, :, 0, :]  # Σ_i ww[i] g[i, j]
    d_prev_precedence = d_prev_precedence + d_precedence * (1.0 - cache.write_sum)
    d_w = d_w + d_precedence - xp.sum(d_precedence * cache.prev_precedence, axis=-1, keepdims=True)
    return TemporalLinkageGrads(d_prev_link, d_prev_precedence, d_w)


@checked
def temporal_linkage_forward(prev_link: LinkMatrix["B nw N N"], prev_precedence: Weighting["B nw N"],
                             write_weights: Weighting["B nw N"]
                             ) -> tuple[TemporalLinkageOutputs, TemporalLinkageCache]:
    """Link and precedence per write head, SPEC §5 step 6.

    `L_t[i, j] = (1 - ww[i] - ww[j]) L_{t-1}[i, j] + ww[i] p_{t-1}[j]`, then `L_t[i, i] = 0`;
    `p_t = (1 - Σ_i ww[i]) p_{t-1} + ww`.

    Args:
        prev_link: `[B, nw, N, N]`, zero on the diagonal.
        prev_precedence: `[B, nw, N]`, rows summing to at most 1.
        write_weights: `[B, nw, N]`, rows summing to at most 1.

    Returns:
        outputs: a [`TemporalLinkageOutputs`][refmem.dnc.addressing.TemporalLinkageOutputs]
            `(link [B, nw, N, N], precedence [B, nw, N])`.
        cache: a [`TemporalLinkageCache`][refmem.dnc.addressing.TemporalLinkageCache].
    """
    link, precedence, cache = temporal_linkage(prev_link, prev_precedence, write_weights)
    return TemporalLinkageOutputs(link, precedence), cache


def _old_pair(name: str, fields: tuple[str, str]) -> Any:
    """The 0.1 form `f(d_a, d_b, cache)` of a backward with two outputs, deprecated."""

    def old(*args: Any, **kwargs: Any) -> Any:
        new = globals()[name]
        if len(args) == 2 and not kwargs:  # not a 0.1 call (it had three arguments): d_out is not a tuple
            raise _not_outputs("d_out", globals()[name.replace("_backward", "_forward")].__annotations__[
                "return"].__args__[0], args[0])
        given = old_call_arguments(name, (*fields, "cache"), args, kwargs)
        if set(given) == {"d_out", "cache"}:
            return new(given["d_out"], given["cache"])
        warn_old_call(f"{name}({', '.join(fields)}, cache)", f"{name}(({', '.join(fields)}), cache)")
        return new((given.get(fields[0]), given.get(fields[1])), given["cache"])

    return old


@checked(legacy=_old_pair("temporal_linkage_backward", ("d_link", "d_precedence")))
def temporal_linkage_backward(d_out: TemporalLinkageOutputs, cache: TemporalLinkageCache) -> TemporalLinkageGrads:
    """VJP of [`temporal_linkage_forward`][refmem.dnc.addressing.temporal_linkage_forward].

    Args:
        d_out: a [`TemporalLinkageOutputs`][refmem.dnc.addressing.TemporalLinkageOutputs] (or a tuple in
            its order) of the gradients of `link [B, nw, N, N]` and `precedence [B, nw, N]`; each may be
            `None` (zero).
        cache: the [`TemporalLinkageCache`][refmem.dnc.addressing.TemporalLinkageCache] of the forward.

    Returns:
        grads: a [`TemporalLinkageGrads`][refmem.dnc.addressing.TemporalLinkageGrads]
            `(prev_link [B, nw, N, N], prev_precedence [B, nw, N], write_weights [B, nw, N])`.

    Derivation: [docs/derivations/dnc.md, "6. Link and precedence (step 6)"](../derivations/dnc.md#6-link-and-precedence-step-6-temporal_linkage_forward)
    """
    d_link, d_precedence = d_out
    return temporal_linkage_vjp(d_link, d_precedence, cache)


# ============================================================================= step 7: directional


class DirectionalWeightsOutputs(NamedTuple):
    """The outputs of [`directional_weights_forward`][refmem.dnc.addressing.directional_weights_forward]."""

    forward: Unit["B R nw N"]
    """`f_{r,k} = L_k wr_r`."""
    backward: Unit["B R nw N"]
    """`b_{r,k} = L_kᵀ wr_r`."""


class DirectionalWeightsCache(NamedTuple):
    """Intermediates of [`directional_weights_forward`][refmem.dnc.addressing.directional_weights_forward]."""

    link: Array["B nw N N"]
    """The link."""
    prev_read_weights: Array["B R N"]
    """`wr_{t-1}`."""


class DirectionalWeightsGrads(NamedTuple):
    """The gradients of [`directional_weights_forward`][refmem.dnc.addressing.directional_weights_forward]'s arguments."""

    link: Array["B nw N N"]
    """The gradient of `link`."""
    prev_read_weights: Array["B R N"]
    """The gradient of `prev_read_weights`."""


def directional_weights(link: Any, prev_read_weights: Any) -> tuple[Any, Any, DirectionalWeightsCache]:
    """Forward and backward weights, SPEC §5 step 7, unchecked: `(forward, backward, cache)`, each
    `[B, R, nw, N]`."""
    xp = rx.namespace(link, prev_read_weights)
    wr = prev_read_weights[:, None, :, :]  # [B, 1, R, N]
    fwd = wr @ P.transpose_last(link)  # [B, nw, R, N]: Σ_j wr[j] L[i, j]
    bwd = wr @ link  # [B, nw, R, N]: Σ_j wr[j] L[j, i]
    fwd = xp.permute_dims(fwd, (0, 2, 1, 3))
    bwd = xp.permute_dims(bwd, (0, 2, 1, 3))
    return fwd, bwd, DirectionalWeightsCache(link, prev_read_weights)


def directional_weights_vjp(d_forward: Any, d_backward: Any, cache: DirectionalWeightsCache) -> DirectionalWeightsGrads:
    """The gradients of [`directional_weights`][refmem.dnc.addressing.directional_weights] (either
    upstream gradient may be `None`, zero), unchecked: `dL_k = Σ_r d f_{r,k} wr_rᵀ + wr_r d b_{r,k}ᵀ`,
    `d wr_r = Σ_k L_kᵀ d f_{r,k} + L_k d b_{r,k}`."""
    xp = rx.namespace(cache.link)
    link, wr = cache.link, cache.prev_read_weights
    B, nw, N, _ = (int(s) for s in link.shape)
    R = int(wr.shape[1])
    shape = (B, R, nw, N)
    d_forward = d_forward if d_forward is not None else xp.zeros(shape, dtype=link.dtype)
    d_backward = d_backward if d_backward is not None else xp.zeros(shape, dtype=link.dtype)
    gf = xp.permute_dims(d_forward, (0, 2, 1, 3))  # [B, nw, R, N]
    gb = xp.permute_dims(d_backward, (0, 2, 1, 3))
    wr4 = xp.broadcast_to(wr[:, None, :, :], (B, nw, R, N))
    # gfᵀ wr + wrᵀ gb as one product [gfᵀ | wrᵀ] @ [wr ; gb] (one [B, nw, N, N] result, no sum)
    d_link = P.transpose_last(xp.concat([gf, wr4], axis=2)) @ xp.concat([wr4, gb], axis=2)  # [B, nw, N, N]
    d_wr = xp.sum(gf @ link + gb @ P.transpose_last(link), axis=1)  # [B, R, N]
    return DirectionalWeightsGrads(d_link, d_wr)


@checked
def directional_weights_forward(link: LinkMatrix["B nw N N"], prev_read_weights: Weighting["B R N"]
                                ) -> tuple[DirectionalWeightsOutputs, DirectionalWeightsCache]:
    """Forward and backward weights, SPEC §5 step 7.

    `f_{r,k} = L_k wr_r` (`f[i] = Σ_j L[i, j] wr[j]`), `b_{r,k} = L_kᵀ wr_r`.

    Args:
        link: `[B, nw, N, N]`, zero on the diagonal.
        prev_read_weights: `[B, R, N]`, `wr_{t-1}`, rows summing to at most 1.

    Returns:
        outputs: a [`DirectionalWeightsOutputs`][refmem.dnc.addressing.DirectionalWeightsOutputs]
            `(forward [B, R, nw, N], backward [B, R, nw, N])`.
        cache: a [`DirectionalWeightsCache`][refmem.dnc.addressing.DirectionalWeightsCache].
    """
    fwd, bwd, cache = directional_weights(link, prev_read_weights)
    return DirectionalWeightsOutputs(fwd, bwd), cache


@checked(legacy=_old_pair("directional_weights_backward", ("d_forward", "d_backward")))
def directional_weights_backward(d_out: DirectionalWeightsOutputs,
                                 cache: DirectionalWeightsCache) -> DirectionalWeightsGrads:
    """VJP of [`directional_weights_forward`][refmem.dnc.addressing.directional_weights_forward]:
    `dL_k = Σ_r d f_{r,k} wr_rᵀ + wr_r d b_{r,k}ᵀ`, `d wr_r = Σ_k L_kᵀ d f_{r,k} + L_k d b_{r,k}`.

    Args:
        d_out: a [`DirectionalWeightsOutputs`][refmem.dnc.addressing.DirectionalWeightsOutputs] (or a
            tuple in its order) of the gradients of `forward [B, R, nw, N]` and `backward [B, R, nw, N]`;
            each may be `None` (zero).
        cache: the [`DirectionalWeightsCache`][refmem.dnc.addressing.DirectionalWeightsCache] of the forward.

    Returns:
        grads: a [`DirectionalWeightsGrads`][refmem.dnc.addressing.DirectionalWeightsGrads]
            `(link [B, nw, N, N], prev_read_weights [B, R, N])`.

    Derivation: [docs/derivations/dnc.md, "7. Directional weights (step 7)"](../derivations/dnc.md#7-directional-weights-step-7-directional_weights_forward)
    """
    d_forward, d_backward = d_out
    return directional_weights_vjp(d_forward, d_backward, cache)


# ============================================================================= steps 8-9: read weights


class ReadWeightsOutputs(NamedTuple):
    """The output of [`read_weights_forward`][refmem.dnc.addressing.read_weights_forward]."""

    read_weights: Unit["B R N"]
    """`wr_t`."""


class ReadWeightsCache(NamedTuple):
    """Intermediates of [`read_weights_forward`][refmem.dnc.addressing.read_weights_forward]."""

    content: Array["B R N"]
    """`c^r`, the read content weights."""
    forward: Array["B R nw N"]
    """The forward weights step 9 uses (sharpened when the sharpness is given)."""
    backward: Array["B R nw N"]
    """The backward weights step 9 uses (sharpened when the sharpness is given)."""
    modes_backward: Array["B R nw"]
    """The backward block of the read modes."""
    modes_forward: Array["B R nw"]
    """The forward block of the read modes."""
    modes_content: Array["B R 1"]
    """The content block of the read modes."""
    convention: C.Convention
    """The convention (its read-mode layout)."""
    content_cache: Any
    """The [`ContentWeightsCache`][refmem.dnc.addressing.ContentWeightsCache] of the lookup (a
    [`MaskedContentWeightsCache`][refmem.dnc.addressing.MaskedContentWeightsCache] with masks)."""
    directional_cache: DirectionalWeightsCache
    """The [`DirectionalWeightsCache`][refmem.dnc.addressing.DirectionalWeightsCache]."""
    forward_sharpen: SharpenCache | None = None
    """The [`SharpenCache`][refmem.dnc.addressing.SharpenCache] of the forward weights, or `None`."""
    backward_sharpen: SharpenCache | None = None
    """The [`SharpenCache`][refmem.dnc.addressing.SharpenCache] of the backward weights, or `None`."""


class ReadWeightsGrads(NamedTuple):
    """The gradients of [`read_weights_forward`][refmem.dnc.addressing.read_weights_forward]'s arguments."""

    memory: Array["B N W"]
    """The gradient of `memory`."""
    read_keys: Array["B R W"]
    """The gradient of `read_keys`."""
    read_strengths: Array["B R"]
    """The gradient of the raw `read_strengths`."""
    link: Array["B nw N N"]
    """The gradient of `link`."""
    prev_read_weights: Array["B R N"]
    """The gradient of `prev_read_weights`."""
    read_modes: Array["B R K"]
    """The gradient of `read_modes`, in the convention's layout."""
    read_masks: Array["B R W"] | None = None
    """The gradient of `read_masks`; `None` without masks."""
    forward_sharpness: Array["B R"] | None = None
    """The gradient of `forward_sharpness`; `None` without it."""
    backward_sharpness: Array["B R"] | None = None
    """The gradient of `backward_sharpness`; `None` without it."""


def read_weights(memory: Any, read_keys: Any, read_strengths: Any, link: Any, prev_read_weights: Any,
                 read_modes: Any, read_masks: Any, forward_sharpness: Any, backward_sharpness: Any,
                 conv: C.Convention) -> tuple[Any, ReadWeightsCache]:
    """Read weights, SPEC §5 steps 7-9, unchecked: `(read_weights, cache)`; the option arrays may be `None`.

    `wr_r = π_r[content] c^r_r + Σ_k π_r[forward_k] f_{r,k} + Σ_k π_r[backward_k] b_{r,k}`.
    """
    xp = rx.namespace(memory, read_keys, read_strengths, link, prev_read_weights, read_modes)
    nw = int(link.shape[1])
    pb, pf, pc = C.split_read_modes(read_modes, nw, conv)
    content, content_cache = _content(memory, read_keys, read_strengths, read_masks, conv)
    fwd, bwd, dir_cache = directional_weights(link, prev_read_weights)
    f_cache = b_cache = None
    if forward_sharpness is not None:
        fwd, f_cache = sharpen(fwd, forward_sharpness)
    if backward_sharpness is not None:
        bwd, b_cache = sharpen(bwd, backward_sharpness)
    wr = (pc * content + xp.sum(pf[:, :, :, None] * fwd, axis=2)
          + xp.sum(pb[:, :, :, None] * bwd, axis=2))
    cache = ReadWeightsCache(content, fwd, bwd, pb, pf, pc, conv, content_cache, dir_cache, f_cache, b_cache)
    return wr, cache


def read_weights_vjp(d_read_weights: Any, cache: ReadWeightsCache) -> ReadWeightsGrads:
    """The gradients of [`read_weights`][refmem.dnc.addressing.read_weights], unchecked; the mode
    gradients are joined in the convention's layout."""
    xp = rx.namespace(d_read_weights)
    d = d_read_weights
    d_pc = xp.sum(d * cache.content, axis=-1, keepdims=True)
    d_pf = xp.sum(d[:, :, None, :] * cache.forward, axis=-1)
    d_pb = xp.sum(d[:, :, None, :] * cache.backward, axis=-1)
    d_content = d * cache.modes_content
    d_forward = cache.modes_forward[:, :, :, None] * d[:, :, None, :]
    d_backward = cache.modes_backward[:, :, :, None] * d[:, :, None, :]
    d_fs = d_bs = None
    if cache.forward_sharpen is not None:
        d_forward, d_fs = sharpen_vjp(d_forward, cache.forward_sharpen)
    if cache.backward_sharpen is not None:
        d_backward, d_bs = sharpen_vjp(d_backward, cache.backward_sharpen)
    directional = directional_weights_vjp(d_forward, d_backward, cache.directional_cache)
    d_memory, d_keys, d_strengths, d_masks = _content_vjp(d_content, cache.content_cache)
    d_modes = C.join_read_modes(d_pb, d_pf, d_pc, cache.convention)
    return ReadWeightsGrads(d_memory, d_keys, d_strengths, directional.link, directional.prev_read_weights,
                            d_modes, d_masks, d_fs, d_bs)


@checked(derive={"K": C.read_mode_width})
def read_weights_forward(memory: Array["B N W"], read_keys: Array["B R W"], read_strengths: Array["B R"],
                         link: LinkMatrix["B nw N N"], prev_read_weights: Weighting["B R N"],
                         read_modes: Distribution["B R K"], read_masks: Unit["B R W"] | None = None,
                         forward_sharpness: Array["B R"] | None = None,
                         backward_sharpness: Array["B R"] | None = None, *,
                         convention: ConventionName = DEFAULT) -> tuple[ReadWeightsOutputs, ReadWeightsCache]:
    """Read weights, SPEC §5 steps 7-9.

    `wr_r = π_r[content] c^r_r + Σ_k π_r[forward_k] f_{r,k} + Σ_k π_r[backward_k] b_{r,k}`.

    Args:
        memory: `[B, N, W]`, `M_t`.
        read_keys: `[B, R, W]`.
        read_strengths: `[B, R]` (raw).
        link: `[B, nw, N, N]`, `L_t`, zero on the diagonal.
        prev_read_weights: `[B, R, N]`, `wr_{t-1}`, rows summing to at most 1.
        read_modes: `[B, R, K]`, `K = 1 + 2nw`, rows summing to 1, in the convention's layout.
        read_masks: `[B, R, W]` or `None`; SPEC §5 option `masked_content`.
        forward_sharpness: `[B, R]` (activated) or `None`; SPEC §5 option `link_sharpness`: the
            forward weights become [`sharpen_forward`][refmem.dnc.addressing.sharpen_forward] of them.
        backward_sharpness: `[B, R]` or `None`; the same for the backward weights.
        convention: `"deepmind"` (default), `"paper"` or a [`Convention`][refmem.dnc.conventions.Convention]
            (keyword-only).

    Returns:
        outputs: a [`ReadWeightsOutputs`][refmem.dnc.addressing.ReadWeightsOutputs] `(read_weights [B, R, N])`.
        cache: a [`ReadWeightsCache`][refmem.dnc.addressing.ReadWeightsCache] (its `forward` and `backward`
            are the weights step 9 uses: sharpened when the sharpness is given).

    Raises:
        refmem.errors.DomainError: a read key or memory row of norm at least
            [`cosine_limit`][refmem.dnc.addressing.cosine_limit].
    """
    _require_norms("memory", memory)
    _require_norms("read_keys", read_keys, "key")
    wr, cache = read_weights(memory, read_keys, read_strengths, link, prev_read_weights, read_modes, read_masks,
                             forward_sharpness, backward_sharpness, C.get(convention))
    return ReadWeightsOutputs(wr), cache


@checked(legacy=_old_single("read_weights_backward"))
def read_weights_backward(d_out: ReadWeightsOutputs, cache: ReadWeightsCache) -> ReadWeightsGrads:
    """VJP of [`read_weights_forward`][refmem.dnc.addressing.read_weights_forward]; the mode gradients are
    joined in the convention's layout.

    Args:
        d_out: a [`ReadWeightsOutputs`][refmem.dnc.addressing.ReadWeightsOutputs] (or a 1-tuple): the
            gradient of `read_weights [B, R, N]`, `wr_t` (`None`: zero).
        cache: the [`ReadWeightsCache`][refmem.dnc.addressing.ReadWeightsCache] of the forward.

    Returns:
        grads: a [`ReadWeightsGrads`][refmem.dnc.addressing.ReadWeightsGrads] `(memory [B, N, W],
            read_keys [B, R, W], read_strengths [B, R], link [B, nw, N, N], prev_read_weights [B, R, N],
            read_modes [B, R, K], read_masks [B, R, W], forward_sharpness [B, R], backward_sharpness [B, R])`;
            the last three are `None` where their option is off.

    Derivation: [docs/derivations/dnc.md, "8. Read weights (steps 8-9)"](../derivations/dnc.md#8-read-weights-steps-8-9-read_weights_forward)
    """
    (d,) = d_out
    return read_weights_vjp(P.zeros_if_none(d, cache.content), cache)


# ----------------------------------------------------------------------------- 0.1 names

#: The 0.1 names of the types (deprecated aliases; removed after 0.2).
ContentCache = ContentWeightsCache
ContentGrads = ContentWeightsGrads
MaskedContentCache = MaskedContentWeightsCache
MaskedContentGrads = MaskedContentWeightsGrads
WriteAllocationCache = WriteAllocationWeightsCache
WriteAllocationGrads = WriteAllocationWeightsGrads
MemoryCache = MemoryUpdateCache
MemoryGrads = MemoryUpdateGrads
LinkCache = TemporalLinkageCache
LinkGrads = TemporalLinkageGrads
DirectionalCache = DirectionalWeightsCache
DirectionalGrads = DirectionalWeightsGrads
