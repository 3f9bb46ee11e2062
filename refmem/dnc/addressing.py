"""SPEC §5 steps 1-9: DNC addressing, one forward/backward pair per equation.

Each ``*_forward`` returns its output(s) and a cache; each ``*_backward`` takes
the upstream gradient(s) and that cache and returns a small NamedTuple of
gradients named after the forward's arguments. Shapes use SPEC's letters:
``B`` batch, ``N`` memory slots, ``W`` word size, ``R`` read heads, ``nw`` write
heads, ``H`` heads of a content lookup (``R`` or ``nw``).

Products over heads (retention ``ψ``, the write product of the usage, the erase
retention of the memory) are differentiated with the division-free
"product of all the others" (:func:`prod_except`), so a factor equal to 0 gives
the exact gradient and never NaN.

The derivations are written out step by step in ``docs/derivations/dnc.md``;
the names of the steps there are the names of the variables here.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from .. import primitives as P
from .. import xp as rx
from ..validation import edge
from . import conventions as C

__all__ = [
    "ALLOCATION_EPS",
    "prod_except",
    "ContentCache", "ContentGrads", "content_weights_forward", "content_weights_backward",
    "UsageCache", "UsageGrads", "usage_forward", "usage_backward",
    "AllocationCache", "allocation_forward", "allocation_backward",
    "WriteAllocationCache", "WriteAllocationGrads",
    "write_allocation_weights_forward", "write_allocation_weights_backward",
    "WriteWeightsCache", "WriteWeightsGrads", "write_weights_forward", "write_weights_backward",
    "MemoryCache", "MemoryGrads", "memory_update_forward", "memory_update_backward",
    "LinkCache", "LinkGrads", "temporal_linkage_forward", "temporal_linkage_backward",
    "DirectionalCache", "DirectionalGrads", "directional_weights_forward", "directional_weights_backward",
    "ReadWeightsCache", "ReadWeightsGrads", "read_weights_forward", "read_weights_backward",
    "MaskedWriteWeightsGrads", "DeallocMemoryGrads", "OptionReadWeightsGrads",
    "MaskedContentCache", "MaskedContentGrads", "masked_content_weights_forward", "masked_content_weights_backward",
    "SHARPNESS_EPS", "SharpenCache", "SharpenGrads", "sharpen_forward", "sharpen_backward",
]

#: ``eps`` of the allocation's ``û = eps + (1 - eps) u`` (SPEC §5 step 3).
ALLOCATION_EPS = 1e-6
#: ``eps`` of the link sharpening ``S(d, s)_i = (d_i + eps)^s / Σ_j (d_j + eps)^s`` (SPEC §5 options).
SHARPNESS_EPS = 1e-6


# ----------------------------------------------------------------------------- helpers


def prod_except(x: Any, axis: int) -> Any:
    """``out_r = Π_{s≠r} x_s`` along ``axis``, without division.

    The product of the factors before ``r`` (exclusive cumulative product) times
    the product of the factors after ``r`` (the same on the flipped axis).
    """
    xp = rx.namespace(x)
    if x.shape[axis] == 1:  # one factor: the product of the others is empty
        return xp.ones_like(x)
    before = P.exclusive_cumprod(x, axis=axis)
    after = xp.flip(P.exclusive_cumprod(xp.flip(x, axis=axis), axis=axis), axis=axis)
    return before * after


def _shape(x: Any) -> tuple[int, ...]:
    return tuple(map(int, x.shape))


# ----------------------------------------------------------------------------- step 2 / 8: content


class ContentCache(NamedTuple):
    """Intermediates of :func:`content_weights_forward`.

    ``strengths [B, H]`` (raw), ``beta [B, H]`` (``act(strengths)``),
    ``similarity [B, H, N]`` (``cos(k, M_i)``), ``weights [B, H, N]``,
    ``cosine``: the :class:`refmem.primitives.CosineCache`.
    """

    strengths: Any
    beta: Any
    similarity: Any
    weights: Any
    cosine: P.CosineCache


class ContentGrads(NamedTuple):
    """``memory [B, N, W]``, ``keys [B, H, W]``, ``strengths [B, H]``."""

    memory: Any
    keys: Any
    strengths: Any


@edge(memory="B N W", keys="B H W", strengths="B H")
def content_weights_forward(memory: Any, keys: Any, strengths: Any,
                            convention: str | C.Convention = C.DEFAULT) -> tuple[Any, ContentCache]:
    """Content addressing ``C(M, k, β)_i = softmax_i(act(β) · cos(k, M_i))`` (SPEC §5 steps 2 and 8).

    Args:
        memory: ``[B, N, W]``.
        keys: ``[B, H, W]``, one key per head.
        strengths: ``[B, H]``, raw; ``act`` is the convention's (softplus or oneplus).
        convention: ``"deepmind"`` (default) or ``"paper"``, or a :class:`~refmem.dnc.conventions.Convention`.
    Returns:
        ``weights [B, H, N]`` and a :class:`ContentCache`.
    """
    B, N, W = _shape(memory)
    similarity, cos_cache = P.cosine_similarity(keys, memory)
    beta = C.strength_forward(strengths, convention)
    weights = P.softmax(beta[:, :, None] * similarity, axis=-1)
    return weights, ContentCache(strengths, beta, similarity, weights, cos_cache)


@edge({"cache.weights": "B H N"}, d_weights="B H N")
def content_weights_backward(d_weights: Any, cache: ContentCache) -> ContentGrads:
    """``d_logits = softmax_backward``; ``d_beta = Σ_N d_logits ∘ cos``; ``d_cos = d_logits ∘ beta``.

    Args:
        d_weights: ``[B, H, N]``, the gradient of the weights (not ``None``).
        cache: the :class:`ContentCache` of :func:`content_weights_forward`.

    Returns:
        The gradients, a :class:`ContentGrads` with fields ``memory [B, N, W]``, ``keys [B, H, W]``, ``strengths [B, H]``.

    Derivation: [docs/derivations/dnc.md, "1. Content weights (steps 2 and 8)"](../derivations/dnc.md#1-content-weights-steps-2-and-8-content_weights_forward)
    """
    xp = rx.namespace(d_weights)
    d_logits = P.softmax_vjp(d_weights, cache.weights, -1)
    d_beta = xp.sum(d_logits * cache.similarity, axis=-1)
    d_similarity = d_logits * cache.beta[:, :, None]
    d_keys, d_memory = P.cosine_vjp(d_similarity, cache.cosine)
    d_strengths = C.strength_backward(d_beta, cache.strengths)
    return ContentGrads(d_memory, d_keys, d_strengths)


class MaskedContentCache(NamedTuple):
    """Intermediates of :func:`masked_content_weights_forward`.

    ``memory [B, N, W]``, ``keys [B, H, W]``, ``masks [B, H, W]`` (the unmasked inputs),
    ``weights [B, H, N]``, ``content``: the :class:`ContentCache` of the lookup of the masked
    key of each head in its masked memory (batch ``B H``, one head each).
    """

    memory: Any
    keys: Any
    masks: Any
    weights: Any
    content: ContentCache


class MaskedContentGrads(NamedTuple):
    """``memory [B, N, W]``, ``keys [B, H, W]``, ``strengths [B, H]``, ``masks [B, H, W]``."""

    memory: Any
    keys: Any
    strengths: Any
    masks: Any


@edge(memory="B N W", keys="B H W", strengths="B H", masks="B H W | unit")
def masked_content_weights_forward(memory: Any, keys: Any, strengths: Any, masks: Any,
                                   convention: str | C.Convention = C.DEFAULT) -> tuple[Any, MaskedContentCache]:
    """Masked content addressing ``C(M, k, β, m)_i = softmax_i(act(β) · cos(k ∘ m, M_i ∘ m))``
    (SPEC §5 option ``masked_content``, Csordás & Schmidhuber 2019).

    Args:
        memory: ``[B, N, W]``.
        keys: ``[B, H, W]``, one key per head.
        strengths: ``[B, H]``, raw; ``act`` is the convention's.
        masks: ``[B, H, W]``, one mask per head (after the sigmoid), applied to the key and to
            every memory row.
        convention: ``deepmind`` or ``paper``: which strength activation ``act`` is.
    Returns:
        ``weights [B, H, N]`` and the :class:`MaskedContentCache`.
    """
    xp = rx.namespace(memory, keys, strengths, masks)
    B, N, W = _shape(memory)
    H = int(keys.shape[1])
    masked_keys = xp.reshape(keys * masks, (B * H, 1, W))
    masked_memory = xp.reshape(memory[:, None, :, :] * masks[:, :, None, :], (B * H, N, W))
    w, content = content_weights_forward.unchecked(masked_memory, masked_keys,
                                                   xp.reshape(strengths, (B * H, 1)), convention)
    weights = xp.reshape(w, (B, H, N))
    return weights, MaskedContentCache(memory, keys, masks, weights, content)


@edge({"cache.weights": "B H N"}, d_weights="B H N")
def masked_content_weights_backward(d_weights: Any, cache: MaskedContentCache) -> MaskedContentGrads:
    """Gradients of :func:`masked_content_weights_forward`.

    The lookup's gradient w.r.t. the masked key ``k ∘ m`` and memory ``M_i ∘ m``, then
    ``dk = d(k∘m) ∘ m``, ``dM = Σ_H d(M∘m) ∘ m``, ``dm = d(k∘m) ∘ k + Σ_N d(M∘m) ∘ M``.

    Args:
        d_weights: ``[B, H, N]``, gradient of the weights (not ``None``).
        cache: the :class:`MaskedContentCache` of the forward.
    Returns:
        MaskedContentGrads: ``memory [B, N, W]``, ``keys [B, H, W]``, ``strengths [B, H]``,
            ``masks [B, H, W]``.

    Derivation: [docs/derivations/dnc.md, "Masked content"](../derivations/dnc.md#masked-content-masked_content_weights_forward)
    """
    xp = rx.namespace(d_weights)
    B, N, W = _shape(cache.memory)
    H = int(cache.keys.shape[1])
    g = content_weights_backward.unchecked(xp.reshape(d_weights, (B * H, 1, N)), cache.content)
    d_mk = xp.reshape(g.keys, (B, H, W))
    d_mm = xp.reshape(g.memory, (B, H, N, W))
    d_memory = xp.sum(d_mm * cache.masks[:, :, None, :], axis=1)
    d_keys = d_mk * cache.masks
    d_masks = d_mk * cache.keys + xp.sum(d_mm * cache.memory[:, None, :, :], axis=2)
    return MaskedContentGrads(d_memory, d_keys, xp.reshape(g.strengths, (B, H)), d_masks)


def _content_forward(memory: Any, keys: Any, strengths: Any, masks: Any, convention: Any) -> tuple[Any, Any]:
    """Plain content addressing, or the masked one when ``masks`` is given (unchecked)."""
    if masks is None:
        return content_weights_forward.unchecked(memory, keys, strengths, convention)
    return masked_content_weights_forward.unchecked(memory, keys, strengths, masks, convention)


def _content_backward(d_weights: Any, cache: Any) -> tuple[Any, Any, Any, Any]:
    """``(memory, keys, strengths, masks)`` gradients of :func:`_content_forward` (``masks`` ``None`` if unmasked)."""
    if isinstance(cache, MaskedContentCache):
        return tuple(masked_content_weights_backward.unchecked(d_weights, cache))
    g = content_weights_backward.unchecked(d_weights, cache)
    return g.memory, g.keys, g.strengths, None


# ----------------------------------------------------------------------------- option: link sharpness


class SharpenCache(NamedTuple):
    """Intermediates of :func:`sharpen_forward`: ``shifted [B, R, nw, N]`` (``d + eps``),
    ``log_shifted`` (its log), ``sharpness [B, R]``, ``out [B, R, nw, N]``."""

    shifted: Any
    log_shifted: Any
    sharpness: Any
    out: Any


class SharpenGrads(NamedTuple):
    """``weights [B, R, nw, N]``, ``sharpness [B, R]``."""

    weights: Any
    sharpness: Any


@edge(weights="B R nw N | unit", sharpness="B R")
def sharpen_forward(weights: Any, sharpness: Any, eps: float = SHARPNESS_EPS) -> tuple[Any, SharpenCache]:
    """Link distribution sharpness ``S(d, s)_i = (d_i + eps)^s / Σ_j (d_j + eps)^s`` over the ``N`` slots
    (SPEC §5 option ``link_sharpness``), one sharpness per read head shared by the write heads.

    Computed as ``softmax_i(s · log(d_i + eps))`` (the same value; analytic for ``d + eps > 0``).

    Args:
        weights: ``[B, R, nw, N]``, forward or backward weights (non-negative).
        sharpness: ``[B, R]``, after the activation (oneplus: ``s > 1``).
        eps: the ``eps`` added to every weight (SPEC: ``1e-6``).
    Returns:
        ``sharpened [B, R, nw, N]`` and the :class:`SharpenCache`.
    """
    xp = rx.namespace(weights, sharpness)
    shifted = weights + eps
    log_shifted = xp.log(shifted)
    out = P.softmax(sharpness[:, :, None, None] * log_shifted, axis=-1)
    return out, SharpenCache(shifted, log_shifted, sharpness, out)


@edge({"cache.out": "B R nw N"}, d_out="B R nw N")
def sharpen_backward(d_out: Any, cache: SharpenCache) -> SharpenGrads:
    """Gradients of :func:`sharpen_forward`.

    ``g = softmax_backward(d_out)`` of the logits ``s log(d + eps)``; ``dd = g s / (d + eps)``,
    ``ds = Σ_{nw, N} g log(d + eps)``.

    Args:
        d_out: ``[B, R, nw, N]``, gradient of the sharpened weights (not ``None``).
        cache: the :class:`SharpenCache` of the forward.
    Returns:
        SharpenGrads: ``weights [B, R, nw, N]``, ``sharpness [B, R]``.

    Derivation: [docs/derivations/dnc.md, "Link sharpness"](../derivations/dnc.md#link-sharpness-sharpen_forward)
    """
    xp = rx.namespace(d_out)
    g = P.softmax_vjp(d_out, cache.out, -1)
    d_weights = g * cache.sharpness[:, :, None, None] / cache.shifted
    d_sharpness = xp.sum(g * cache.log_shifted, axis=(-2, -1))
    return SharpenGrads(d_weights, d_sharpness)


# ----------------------------------------------------------------------------- step 1: usage


class UsageCache(NamedTuple):
    """Intermediates of :func:`usage_forward`.

    ``prev_usage [B, N]``; ``write_factors [B, nw, N]`` (``1 - ww_{t-1,k}``, of the
    tensor actually used: the frozen one when given); ``write_product [B, N]``
    (``1 - Π_k (1 - ww_{t-1,k})``); ``usage_after_write [B, N]`` (``u'``);
    ``free_gates [B, R]``; ``prev_read_weights [B, R, N]``; ``free_factors [B, R, N]``
    (``1 - f_r wr_{t-1,r}``); ``retention [B, N]`` (``ψ``); ``stop``: whether the
    gradient w.r.t. ``ww_{t-1}`` is stopped.
    """

    prev_usage: Any
    write_factors: Any
    write_product: Any
    usage_after_write: Any
    free_gates: Any
    prev_read_weights: Any
    free_factors: Any
    retention: Any
    stop: bool


class UsageGrads(NamedTuple):
    """``prev_usage [B, N]``, ``prev_write_weights [B, nw, N]`` (zero when stopped),
    ``free_gates [B, R]``, ``prev_read_weights [B, R, N]``."""

    prev_usage: Any
    prev_write_weights: Any
    free_gates: Any
    prev_read_weights: Any


@edge(prev_usage="B N | unit", prev_write_weights="B nw N | unit", free_gates="B R | unit",
      prev_read_weights="B R N | unit", frozen_write_weights="?B nw N | unit")
def usage_forward(prev_usage: Any, prev_write_weights: Any, free_gates: Any, prev_read_weights: Any,
                  convention: str | C.Convention = C.DEFAULT,
                  frozen_write_weights: Any = None) -> tuple[Any, UsageCache]:
    """Usage update, SPEC §5 step 1.

    ``ψ = Π_r (1 - f_r wr_{t-1,r})``; ``u' = u_{t-1} + (1 - u_{t-1}) ∘ (1 - Π_k (1 - ww_{t-1,k}))``;
    ``u_t = u' ∘ ψ``.

    Args:
        prev_usage: ``[B, N]``.
        prev_write_weights: ``[B, nw, N]``.
        free_gates: ``[B, R]`` (after the sigmoid).
        prev_read_weights: ``[B, R, N]``.
        convention: ``deepmind`` stops the gradient w.r.t. ``prev_write_weights``.
        frozen_write_weights: ``[B, nw, N]`` or ``None``; under a convention that stops
            the gradient, the value used in place of ``prev_write_weights`` (the recorded
            value of a finite-difference check, SPEC §6). Ignored by the ``paper``
            convention, which has no stopped path.
    Returns:
        ``usage [B, N]`` and a :class:`UsageCache`.
    """
    xp = rx.namespace(prev_usage, prev_write_weights, free_gates, prev_read_weights)
    conv = C.get(convention)
    B, N = _shape(prev_usage)
    ww = prev_write_weights
    if conv.stop_usage_gradient and frozen_write_weights is not None:
        ww = frozen_write_weights
    write_factors = 1.0 - ww
    write_product = 1.0 - xp.prod(write_factors, axis=1)
    usage_after_write = prev_usage + (1.0 - prev_usage) * write_product
    free_factors = 1.0 - free_gates[:, :, None] * prev_read_weights
    retention = xp.prod(free_factors, axis=1)
    usage = usage_after_write * retention
    cache = UsageCache(prev_usage, write_factors, write_product, usage_after_write, free_gates,
                       prev_read_weights, free_factors, retention, conv.stop_usage_gradient)
    return usage, cache


@edge({"cache.retention": "B N"}, d_usage="B N", d_retention="?B N")
def usage_backward(d_usage: Any, cache: UsageCache, d_retention: Any = None) -> UsageGrads:
    """Reverse of :func:`usage_forward`; products differentiated without division.

    Args:
        d_usage: ``[B, N]``, the gradient of ``u_t`` (not ``None``).
        cache: the :class:`UsageCache` of :func:`usage_forward`.
        d_retention: ``[B, N]`` or ``None``; a gradient reaching the retention ``ψ`` by another
            path (the memory's de-allocation, SPEC §5 option ``deallocation``); never stopped.

    Returns:
        The gradients, a :class:`UsageGrads` with fields ``prev_usage [B, N]``, ``prev_write_weights [B, nw, N]``
            (zeros when the convention stops that gradient), ``free_gates [B, R]``,
            ``prev_read_weights [B, R, N]``.

    Derivation: [docs/derivations/dnc.md, "2. Usage (step 1)"](../derivations/dnc.md#2-usage-step-1-usage_forward)
    """
    xp = rx.namespace(d_usage)
    d_after_write = d_usage * cache.retention
    d_retention = P.add_optional(d_usage * cache.usage_after_write, d_retention)
    d_prev_usage = d_after_write * (1.0 - cache.write_product)
    if cache.stop:
        d_prev_write_weights = xp.zeros(cache.write_factors.shape, dtype=d_usage.dtype)
    else:
        d_write_product = d_after_write * (1.0 - cache.prev_usage)
        # write_product = 1 - Π_k (1 - ww_k)  ->  ∂/∂ww_k = Π_{j≠k} (1 - ww_j)
        d_prev_write_weights = d_write_product[:, None, :] * prod_except(cache.write_factors, axis=1)
    d_free_factors = d_retention[:, None, :] * prod_except(cache.free_factors, axis=1)
    d_free_gates = -xp.sum(d_free_factors * cache.prev_read_weights, axis=-1)
    d_prev_read_weights = -d_free_factors * cache.free_gates[:, :, None]
    return UsageGrads(d_prev_usage, d_prev_write_weights, d_free_gates, d_prev_read_weights)


# ----------------------------------------------------------------------------- step 3: allocation


class AllocationCache(NamedTuple):
    """Intermediates of :func:`allocation_forward`.

    ``perm [B, N]`` (integer sort permutation φ, treated as a constant),
    ``sorted_nonusage [B, N]`` (``sn``), ``sorted_usage [B, N]`` (``su = 1 - sn``),
    ``prod_sorted_usage [B, N]`` (``Π_{i<j} su_i``), ``eps``: the forward's ``eps``.
    """

    perm: Any
    sorted_nonusage: Any
    sorted_usage: Any
    prod_sorted_usage: Any
    eps: float = ALLOCATION_EPS


@edge(usage="B N | unit", eps="float >= 0")
def allocation_forward(usage: Any, eps: float = ALLOCATION_EPS) -> tuple[Any, AllocationCache]:
    """Allocation weights ``a = alloc(u)`` (SPEC §5 step 3).

    ``û = eps + (1 - eps) u``; ``sn = sort(1 - û)`` descending and stable (lower
    index first on ties; the order is decided on the real part), permutation
    ``φ``; ``su = 1 - sn``; ``a_sorted_j = sn_j Π_{i<j} su_i``; un-sort with ``φ``.

    Args:
        usage: ``[B, N]``.
        eps: the ``ε`` of ``û`` (:data:`ALLOCATION_EPS`, SPEC §5 step 3).
    Returns:
        ``allocation [B, N]`` and an :class:`AllocationCache`.
    """
    xp = rx.namespace(usage)
    usage_hat = eps + (1.0 - eps) * usage
    nonusage = 1.0 - usage_hat
    perm = xp.argsort(P.real_part(nonusage), axis=-1, descending=True, stable=True)
    sorted_nonusage = xp.take_along_axis(nonusage, perm, axis=-1)
    sorted_usage = 1.0 - sorted_nonusage
    prod_sorted_usage = P.exclusive_cumprod(sorted_usage, axis=-1)
    sorted_allocation = sorted_nonusage * prod_sorted_usage
    allocation = P.unsort(sorted_allocation, perm, axis=-1)
    return allocation, AllocationCache(perm, sorted_nonusage, sorted_usage, prod_sorted_usage, eps)


@edge({"cache.sorted_nonusage": "B N"}, d_allocation="B N", eps="?float >= 0")
def allocation_backward(d_allocation: Any, cache: AllocationCache, eps: float | None = None) -> Any:
    """Gradient w.r.t. ``usage [B, N]``, the permutation held constant (SPEC §5 step 3).

    Args:
        d_allocation: ``[B, N]``, the gradient of the allocation weights (not ``None``).
        cache: the :class:`AllocationCache` of :func:`allocation_forward`.
        eps: ``None`` (default): the ``eps`` the forward used, kept in the cache; a number
            overrides it (refmem 0.1 took it here only).

    Returns:
        d_usage: ``[B, N]``, the gradient of ``usage``.

    Derivation: [docs/derivations/dnc.md, "3. Allocation (step 3)"](../derivations/dnc.md#3-allocation-step-3-allocation_forward)
    """
    xp = rx.namespace(d_allocation)
    d_sorted_allocation = xp.take_along_axis(d_allocation, cache.perm, axis=-1)
    d_sorted_nonusage = d_sorted_allocation * cache.prod_sorted_usage
    d_prod = d_sorted_allocation * cache.sorted_nonusage
    d_sorted_usage = P.exclusive_cumprod_vjp(d_prod, cache.sorted_usage, -1)
    d_sorted_nonusage = d_sorted_nonusage - d_sorted_usage
    d_nonusage = P.unsort(d_sorted_nonusage, cache.perm, axis=-1)
    eps = cache.eps if eps is None else eps
    return -(1.0 - eps) * d_nonusage


class WriteAllocationCache(NamedTuple):
    """Intermediates of :func:`write_allocation_weights_forward`.

    ``usages [B, nw, N]`` (``u^(k)``, the usage each head allocates from),
    ``allocation [B, nw, N]`` (``a_k``), ``write_gates [B, nw]``, ``heads``: one
    :class:`AllocationCache` per write head.
    """

    usages: Any
    allocation: Any
    write_gates: Any
    heads: tuple


class WriteAllocationGrads(NamedTuple):
    """``usage [B, N]``, ``write_gates [B, nw]``."""

    usage: Any
    write_gates: Any


@edge(usage="B N | unit", write_gates="B nw | unit")
def write_allocation_weights_forward(usage: Any, write_gates: Any) -> tuple[Any, WriteAllocationCache]:
    """Allocation for each write head in turn (SPEC §5 step 3).

    ``a_k = alloc(u^(k))``, ``u^(k+1) = u^(k) + (1 - u^(k)) ∘ g_k a_k``, ``u^(0) = u_t``,
    with ``g_k = g^a_k g^w_k``.

    Args:
        usage: ``[B, N]``, ``u_t``.
        write_gates: ``[B, nw]``, the products ``g^a_k g^w_k``.
    Returns:
        ``allocation [B, nw, N]`` and a :class:`WriteAllocationCache`.
    """
    xp = rx.namespace(usage, write_gates)
    B, N = _shape(usage)
    nw = int(write_gates.shape[1])
    u = usage
    usages, allocs, heads = [], [], []
    for k in range(nw):
        a, cache = allocation_forward.unchecked(u)
        usages.append(u)
        allocs.append(a)
        heads.append(cache)
        u = u + (1.0 - u) * write_gates[:, k:k + 1] * a
    allocation = xp.stack(allocs, axis=1)
    return allocation, WriteAllocationCache(xp.stack(usages, axis=1), allocation, write_gates, tuple(heads))


@edge({"cache.allocation": "B nw N"}, d_allocation="B nw N")
def write_allocation_weights_backward(d_allocation: Any, cache: WriteAllocationCache) -> WriteAllocationGrads:
    """Reverse over the write heads: ``d u^(k)`` collects the allocation of head ``k``
    and the simulated update ``u^(k+1)``.

    Args:
        d_allocation: ``[B, nw, N]``, the gradient of every head's allocation (not ``None``).
        cache: the :class:`WriteAllocationCache` of :func:`write_allocation_weights_forward`.

    Returns:
        The gradients, a :class:`WriteAllocationGrads` with fields ``usage [B, N]``, ``write_gates [B, nw]``.

    Derivation: [docs/derivations/dnc.md, "Sequential allocation over write heads"](../derivations/dnc.md#sequential-allocation-over-write-heads-write_allocation_weights_forward)
    """
    xp = rx.namespace(d_allocation)
    nw = int(cache.write_gates.shape[1])
    d_u = xp.zeros(cache.usages[:, 0, :].shape, dtype=d_allocation.dtype)  # d u^(nw): unused
    d_gates = [None] * nw
    for k in reversed(range(nw)):
        u_k = cache.usages[:, k, :]
        a_k = cache.allocation[:, k, :]
        g_k = cache.write_gates[:, k:k + 1]
        d_a = d_allocation[:, k, :] + d_u * (1.0 - u_k) * g_k
        d_gates[k] = xp.sum(d_u * (1.0 - u_k) * a_k, axis=-1)
        d_u = d_u * (1.0 - g_k * a_k) + allocation_backward.unchecked(d_a, cache.heads[k])
    return WriteAllocationGrads(d_u, xp.stack(d_gates, axis=1))


# ----------------------------------------------------------------------------- step 4: write weights


class WriteWeightsCache(NamedTuple):
    """Intermediates of :func:`write_weights_forward`.

    ``content [B, nw, N]`` (``c^w``), ``allocation [B, nw, N]`` (``a``),
    ``allocation_gates [B, nw]``, ``write_gates [B, nw]``, and the caches of the
    content lookup and of the allocation.
    """

    content: Any
    allocation: Any
    allocation_gates: Any
    write_gates: Any
    content_cache: ContentCache
    allocation_cache: WriteAllocationCache


class WriteWeightsGrads(NamedTuple):
    """``memory [B, N, W]``, ``usage [B, N]``, ``write_keys [B, nw, W]``, ``write_strengths [B, nw]``,
    ``allocation_gates [B, nw]``, ``write_gates [B, nw]``."""

    memory: Any
    usage: Any
    write_keys: Any
    write_strengths: Any
    allocation_gates: Any
    write_gates: Any


class MaskedWriteWeightsGrads(NamedTuple):
    """:class:`WriteWeightsGrads` and ``write_masks [B, nw, W]``: what :func:`write_weights_backward`
    returns when the forward had masks (SPEC §5 option ``masked_content``)."""

    memory: Any
    usage: Any
    write_keys: Any
    write_strengths: Any
    allocation_gates: Any
    write_gates: Any
    write_masks: Any


@edge(memory="B N W", usage="B N | unit", write_keys="B nw W", write_strengths="B nw",
      allocation_gates="B nw | unit", write_gates="B nw | unit", write_masks="?B nw W | unit")
def write_weights_forward(memory: Any, usage: Any, write_keys: Any, write_strengths: Any, allocation_gates: Any,
                          write_gates: Any, convention: str | C.Convention = C.DEFAULT,
                          write_masks: Any = None) -> tuple[Any, WriteWeightsCache]:
    """Write weights ``ww_k = g^w_k (g^a_k a_k + (1 - g^a_k) c^w_k)`` (SPEC §5 steps 2-4).

    Args:
        memory: ``[B, N, W]``, ``M_{t-1}`` (the write lookup reads the old memory).
        usage: ``[B, N]``, ``u_t``.
        write_keys: ``[B, nw, W]``.
        write_strengths: ``[B, nw]`` (raw).
        allocation_gates: ``[B, nw]``, ``g^a``.
        write_gates: ``[B, nw]``, ``g^w``.
        convention: ``"deepmind"`` (default) or ``"paper"``, or a :class:`~refmem.dnc.conventions.Convention`.
        write_masks: ``[B, nw, W]`` or ``None``; with masks the content lookup is
            :func:`masked_content_weights_forward` (SPEC §5 option ``masked_content``).
    Returns:
        ``write_weights [B, nw, N]`` and a :class:`WriteWeightsCache`.
    """
    B, N, W = _shape(memory)
    content, content_cache = _content_forward(memory, write_keys, write_strengths, write_masks, convention)
    allocation, alloc_cache = write_allocation_weights_forward.unchecked(usage, allocation_gates * write_gates)
    ga = allocation_gates[:, :, None]
    gw = write_gates[:, :, None]
    write_weights = gw * (ga * allocation + (1.0 - ga) * content)
    return write_weights, WriteWeightsCache(content, allocation, allocation_gates, write_gates,
                                            content_cache, alloc_cache)


@edge({"cache.content": "B nw N"}, d_write_weights="B nw N")
def write_weights_backward(d_write_weights: Any, cache: WriteWeightsCache) -> WriteWeightsGrads:
    """Reverse of :func:`write_weights_forward`; the allocation's gate is the product ``g^a g^w``.

    Args:
        d_write_weights: ``[B, nw, N]``, the gradient of the write weights (not ``None``).
        cache: the :class:`WriteWeightsCache` of :func:`write_weights_forward`.

    Returns:
        The gradients, a :class:`WriteWeightsGrads` with fields ``memory [B, N, W]``, ``usage [B, N]``,
            ``write_keys [B, nw, W]``, ``write_strengths [B, nw]``, ``allocation_gates [B, nw]``,
            ``write_gates [B, nw]``.

    Derivation: [docs/derivations/dnc.md, "4. Write weights (step 4)"](../derivations/dnc.md#4-write-weights-step-4-write_weights_forward)
    """
    xp = rx.namespace(d_write_weights)
    ga = cache.allocation_gates[:, :, None]
    gw = cache.write_gates[:, :, None]
    mix = ga * cache.allocation + (1.0 - ga) * cache.content
    d_write_gates = xp.sum(d_write_weights * mix, axis=-1)
    d_mix = d_write_weights * gw
    d_allocation_gates = xp.sum(d_mix * (cache.allocation - cache.content), axis=-1)
    d_content = d_mix * (1.0 - ga)
    d_allocation = d_mix * ga
    alloc = write_allocation_weights_backward.unchecked(d_allocation, cache.allocation_cache)
    d_allocation_gates = d_allocation_gates + alloc.write_gates * cache.write_gates
    d_write_gates = d_write_gates + alloc.write_gates * cache.allocation_gates
    d_memory, d_keys, d_strengths, d_masks = _content_backward(d_content, cache.content_cache)
    if d_masks is None:
        return WriteWeightsGrads(d_memory, alloc.usage, d_keys, d_strengths, d_allocation_gates, d_write_gates)
    return MaskedWriteWeightsGrads(d_memory, alloc.usage, d_keys, d_strengths, d_allocation_gates, d_write_gates,
                                   d_masks)


# ----------------------------------------------------------------------------- step 5: memory


class MemoryCache(NamedTuple):
    """Intermediates of :func:`memory_update_forward`.

    ``memory [B, N, W]`` (``M_{t-1}``), ``write_weights [B, nw, N]``,
    ``erase_vectors [B, nw, W]``, ``write_vectors [B, nw, W]``,
    ``erase_factors [B, nw, N, W]`` (``1 - ww_k e_kᵀ``), ``retention [B, N, W]``
    (``Π_k`` of them).
    """

    memory: Any
    write_weights: Any
    erase_vectors: Any
    write_vectors: Any
    erase_factors: Any
    retention: Any
    deallocation: Any = None


class MemoryGrads(NamedTuple):
    """``memory [B, N, W]``, ``write_weights [B, nw, N]``, ``erase_vectors [B, nw, W]``, ``write_vectors [B, nw, W]``."""

    memory: Any
    write_weights: Any
    erase_vectors: Any
    write_vectors: Any


class DeallocMemoryGrads(NamedTuple):
    """:class:`MemoryGrads` and ``deallocation [B, N]``: what :func:`memory_update_backward` returns
    when the forward had ``deallocation`` (SPEC §5 option)."""

    memory: Any
    write_weights: Any
    erase_vectors: Any
    write_vectors: Any
    deallocation: Any


@edge(memory="B N W", write_weights="B nw N | unit", erase_vectors="B nw W | unit",
      write_vectors="B nw W", deallocation="?B N | unit")
def memory_update_forward(memory: Any, write_weights: Any, erase_vectors: Any,
                          write_vectors: Any, deallocation: Any = None) -> tuple[Any, MemoryCache]:
    """Erase and write, SPEC §5 step 5: ``M_t = M_{t-1} ∘ Π_k (1 - ww_k e_kᵀ) + Σ_k ww_k v_kᵀ``.

    Args:
        memory: ``[B, N, W]``.
        write_weights: ``[B, nw, N]``.
        erase_vectors: ``[B, nw, W]`` (after the sigmoid).
        write_vectors: ``[B, nw, W]``.
        deallocation: ``[B, N]`` or ``None``; SPEC §5 option ``deallocation``: the usage's
            retention ``ψ_t``, so ``M_t = (M_{t-1} ∘ ψ_t) ∘ Π_k (1 - ww_k e_kᵀ) + Σ_k ww_k v_kᵀ``.
    Returns:
        ``memory [B, N, W]`` and a :class:`MemoryCache`.
    """
    xp = rx.namespace(memory, write_weights, erase_vectors, write_vectors)
    B, N, W = _shape(memory)
    erase_factors = 1.0 - write_weights[:, :, :, None] * erase_vectors[:, :, None, :]
    retention = xp.prod(erase_factors, axis=1)
    kept = memory if deallocation is None else memory * deallocation[:, :, None]
    new_memory = kept * retention + P.transpose_last(write_weights) @ write_vectors
    return new_memory, MemoryCache(memory, write_weights, erase_vectors, write_vectors, erase_factors, retention,
                                   deallocation)


@edge({"cache.memory": "B N W"}, d_memory="B N W")
def memory_update_backward(d_memory: Any, cache: MemoryCache) -> MemoryGrads:
    """``dM_{t-1} = d ∘ retention``; erase factors by the division-free product of the others;
    ``d ww = v dᵀ``, ``d v = ww d`` for the write.

    Args:
        d_memory: ``[B, N, W]``, the gradient of ``M_t`` (not ``None``).
        cache: the :class:`MemoryCache` of :func:`memory_update_forward`.

    Returns:
        The gradients, a :class:`MemoryGrads` with fields ``memory [B, N, W]`` (of ``M_{t-1}``),
            ``write_weights [B, nw, N]``, ``erase_vectors [B, nw, W]``, ``write_vectors [B, nw, W]``.

    Derivation: [docs/derivations/dnc.md, "5. Erase and write (step 5)"](../derivations/dnc.md#5-erase-and-write-step-5-memory_update_forward)
    """
    xp = rx.namespace(d_memory)
    psi = cache.deallocation
    d_prev_memory = d_memory * cache.retention
    d_dealloc = None
    if psi is not None:  # M_{t-1} ∘ ψ: dψ = Σ_W d ∘ retention ∘ M_{t-1}
        d_dealloc = xp.sum(d_prev_memory * cache.memory, axis=-1)
        d_prev_memory = d_prev_memory * psi[:, :, None]
    d_retention = d_memory * (cache.memory if psi is None else cache.memory * psi[:, :, None])
    d_erase_factors = d_retention[:, None, :, :] * prod_except(cache.erase_factors, axis=1)  # [B, nw, N, W]
    d_write_weights = -xp.sum(d_erase_factors * cache.erase_vectors[:, :, None, :], axis=-1)
    d_erase_vectors = -xp.sum(d_erase_factors * cache.write_weights[:, :, :, None], axis=-2)
    d_write_weights = d_write_weights + cache.write_vectors @ P.transpose_last(d_memory)
    d_write_vectors = cache.write_weights @ d_memory
    if psi is None:
        return MemoryGrads(d_prev_memory, d_write_weights, d_erase_vectors, d_write_vectors)
    return DeallocMemoryGrads(d_prev_memory, d_write_weights, d_erase_vectors, d_write_vectors, d_dealloc)


# ----------------------------------------------------------------------------- step 6: link


class LinkCache(NamedTuple):
    """Intermediates of :func:`temporal_linkage_forward`.

    ``prev_link [B, nw, N, N]``, ``prev_precedence [B, nw, N]``, ``write_weights [B, nw, N]``,
    ``off_diagonal [N, N]`` (1 off the diagonal, 0 on it), ``write_sum [B, nw, 1]`` (``Σ_i ww[i]``).
    """

    prev_link: Any
    prev_precedence: Any
    write_weights: Any
    off_diagonal: Any
    write_sum: Any


class LinkGrads(NamedTuple):
    """``prev_link [B, nw, N, N]``, ``prev_precedence [B, nw, N]``, ``write_weights [B, nw, N]``."""

    prev_link: Any
    prev_precedence: Any
    write_weights: Any


@edge(prev_link="B nw N N | unit", prev_precedence="B nw N | unit", write_weights="B nw N | unit")
def temporal_linkage_forward(prev_link: Any, prev_precedence: Any,
                             write_weights: Any) -> tuple[Any, Any, LinkCache]:
    """Link and precedence per write head, SPEC §5 step 6.

    ``L_t[i, j] = (1 - ww[i] - ww[j]) L_{t-1}[i, j] + ww[i] p_{t-1}[j]``, then ``L_t[i, i] = 0``;
    ``p_t = (1 - Σ_i ww[i]) p_{t-1} + ww``.

    Args:
        prev_link: ``[B, nw, N, N]``.
        prev_precedence: ``[B, nw, N]``.
        write_weights: ``[B, nw, N]``.
    Returns:
        ``link [B, nw, N, N]``, ``precedence [B, nw, N]`` and a :class:`LinkCache`.
    """
    xp = rx.namespace(prev_link, prev_precedence, write_weights)
    B, nw, N = _shape(write_weights)
    off_diagonal = 1.0 - xp.eye(N, dtype=write_weights.dtype)
    w_i = write_weights[:, :, :, None]
    w_j = write_weights[:, :, None, :]
    link = ((1.0 - w_i - w_j) * prev_link + w_i * prev_precedence[:, :, None, :]) * off_diagonal
    write_sum = xp.sum(write_weights, axis=-1, keepdims=True)
    precedence = (1.0 - write_sum) * prev_precedence + write_weights
    return link, precedence, LinkCache(prev_link, prev_precedence, write_weights, off_diagonal, write_sum)


@edge({"cache.prev_link": "B nw N N"}, d_link="?B nw N N", d_precedence="?B nw N")
def temporal_linkage_backward(d_link: Any, d_precedence: Any, cache: LinkCache) -> LinkGrads:
    """Reverse of :func:`temporal_linkage_forward`; either upstream gradient may be ``None`` (zero).

    Args:
        d_link: ``[B, nw, N, N]`` or ``None`` (zero), the gradient of ``L_t``.
        d_precedence: ``[B, nw, N]`` or ``None`` (zero), the gradient of ``p_t``.
        cache: the :class:`LinkCache` of :func:`temporal_linkage_forward`.

    Returns:
        The gradients, a :class:`LinkGrads` with fields ``prev_link [B, nw, N, N]``, ``prev_precedence [B, nw, N]``,
            ``write_weights [B, nw, N]``.

    Derivation: [docs/derivations/dnc.md, "6. Link and precedence (step 6)"](../derivations/dnc.md#6-link-and-precedence-step-6-temporal_linkage_forward)
    """
    xp = rx.namespace(cache.write_weights)
    d_link = P.zeros_if_none(d_link, cache.prev_link)
    d_precedence = P.zeros_if_none(d_precedence, cache.prev_precedence)
    g = d_link * cache.off_diagonal
    w = cache.write_weights
    d_prev_link = g * (1.0 - w[:, :, :, None] - w[:, :, None, :])
    # through ww[i]: Σ_j g[i, j] (p[j] - L[i, j]); through ww[j]: -Σ_i g[i, j] L[i, j]
    # (the sums over p and w as matrix-vector products: fewer [B, nw, N, N] passes)
    g_link = g * cache.prev_link
    d_w = (g @ cache.prev_precedence[:, :, :, None])[:, :, :, 0] - xp.sum(g_link, axis=-1) - xp.sum(g_link, axis=-2)
    d_prev_precedence = (w[:, :, None, :] @ g)[:, :, 0, :]  # Σ_i ww[i] g[i, j]
    d_prev_precedence = d_prev_precedence + d_precedence * (1.0 - cache.write_sum)
    d_w = d_w + d_precedence - xp.sum(d_precedence * cache.prev_precedence, axis=-1, keepdims=True)
    return LinkGrads(d_prev_link, d_prev_precedence, d_w)


# ----------------------------------------------------------------------------- step 7: directional


class DirectionalCache(NamedTuple):
    """``link [B, nw, N, N]``, ``prev_read_weights [B, R, N]``."""

    link: Any
    prev_read_weights: Any


class DirectionalGrads(NamedTuple):
    """``link [B, nw, N, N]``, ``prev_read_weights [B, R, N]``."""

    link: Any
    prev_read_weights: Any


@edge(link="B nw N N | unit", prev_read_weights="B R N | unit")
def directional_weights_forward(link: Any, prev_read_weights: Any) -> tuple[Any, Any, DirectionalCache]:
    """Forward and backward weights, SPEC §5 step 7.

    ``f_{r,k} = L_k wr_r`` (``f[i] = Σ_j L[i, j] wr[j]``), ``b_{r,k} = L_kᵀ wr_r``.

    Args:
        link: ``[B, nw, N, N]``.
        prev_read_weights: ``[B, R, N]``, ``wr_{t-1}``.
    Returns:
        ``forward [B, R, nw, N]``, ``backward [B, R, nw, N]`` and a :class:`DirectionalCache`.
    """
    xp = rx.namespace(link, prev_read_weights)
    B, nw, N, N2 = _shape(link)
    wr = prev_read_weights[:, None, :, :]  # [B, 1, R, N]
    fwd = wr @ P.transpose_last(link)  # [B, nw, R, N]: Σ_j wr[j] L[i, j]
    bwd = wr @ link  # [B, nw, R, N]: Σ_j wr[j] L[j, i]
    fwd = xp.permute_dims(fwd, (0, 2, 1, 3))
    bwd = xp.permute_dims(bwd, (0, 2, 1, 3))
    return fwd, bwd, DirectionalCache(link, prev_read_weights)


@edge({"cache.link": "B nw N N", "cache.prev_read_weights": "B R N"}, d_forward="?B R nw N",
      d_backward="?B R nw N")
def directional_weights_backward(d_forward: Any, d_backward: Any, cache: DirectionalCache) -> DirectionalGrads:
    """``dL_k = Σ_r d f_{r,k} wr_rᵀ + wr_r d b_{r,k}ᵀ``, ``d wr_r = Σ_k L_kᵀ d f_{r,k} + L_k d b_{r,k}``.

    Either upstream gradient may be ``None`` (zero).

    Args:
        d_forward: ``[B, R, nw, N]`` or ``None`` (zero), the gradient of the forward weights.
        d_backward: ``[B, R, nw, N]`` or ``None`` (zero), the gradient of the backward weights.
        cache: the :class:`DirectionalCache` of :func:`directional_weights_forward`.

    Returns:
        The gradients, a :class:`DirectionalGrads` with fields ``link [B, nw, N, N]``, ``prev_read_weights [B, R, N]``.

    Derivation: [docs/derivations/dnc.md, "7. Directional weights (step 7)"](../derivations/dnc.md#7-directional-weights-step-7-directional_weights_forward)
    """
    xp = rx.namespace(cache.link)
    link, wr = cache.link, cache.prev_read_weights
    B, nw, N, _ = _shape(link)
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
    return DirectionalGrads(d_link, d_wr)


# ----------------------------------------------------------------------------- step 8-9: read weights


class ReadWeightsCache(NamedTuple):
    """Intermediates of :func:`read_weights_forward`.

    ``content [B, R, N]`` (``c^r``), ``forward``/``backward [B, R, nw, N]``,
    ``modes_backward``/``modes_forward [B, R, nw]`` and ``modes_content [B, R, 1]``
    (the read-mode blocks), ``convention``, and the caches of the content lookup and
    of the directional weights.
    """

    content: Any
    forward: Any
    backward: Any
    modes_backward: Any
    modes_forward: Any
    modes_content: Any
    convention: C.Convention
    content_cache: ContentCache
    directional_cache: DirectionalCache
    forward_sharpen: Any = None
    backward_sharpen: Any = None


class ReadWeightsGrads(NamedTuple):
    """``memory [B, N, W]``, ``read_keys [B, R, W]``, ``read_strengths [B, R]``, ``link [B, nw, N, N]``,
    ``prev_read_weights [B, R, N]``, ``read_modes [B, R, 1 + 2nw]``."""

    memory: Any
    read_keys: Any
    read_strengths: Any
    link: Any
    prev_read_weights: Any
    read_modes: Any


class OptionReadWeightsGrads(NamedTuple):
    """:class:`ReadWeightsGrads` and ``read_masks [B, R, W]``, ``forward_sharpness [B, R]``,
    ``backward_sharpness [B, R]`` (each ``None`` where its option is off): what
    :func:`read_weights_backward` returns when the forward had masks or sharpness (SPEC §5 options)."""

    memory: Any
    read_keys: Any
    read_strengths: Any
    link: Any
    prev_read_weights: Any
    read_modes: Any
    read_masks: Any
    forward_sharpness: Any
    backward_sharpness: Any


@edge(memory="B N W", read_keys="B R W", read_strengths="B R", link="B nw N N | unit",
      prev_read_weights="B R N | unit", read_modes="B R (1+2*nw) | unit", read_masks="?B R W | unit",
      forward_sharpness="?B R", backward_sharpness="?B R")
def read_weights_forward(memory: Any, read_keys: Any, read_strengths: Any, link: Any, prev_read_weights: Any,
                         read_modes: Any, convention: str | C.Convention = C.DEFAULT, read_masks: Any = None,
                         forward_sharpness: Any = None,
                         backward_sharpness: Any = None) -> tuple[Any, ReadWeightsCache]:
    """Read weights, SPEC §5 steps 7-9.

    ``wr_r = π_r[content] c^r_r + Σ_k π_r[forward_k] f_{r,k} + Σ_k π_r[backward_k] b_{r,k}``.

    Args:
        memory: ``[B, N, W]``, ``M_t``.
        read_keys: ``[B, R, W]``.
        read_strengths: ``[B, R]`` (raw).
        link: ``[B, nw, N, N]``, ``L_t``.
        prev_read_weights: ``[B, R, N]``, ``wr_{t-1}``.
        read_modes: ``[B, R, 1 + 2nw]``, probabilities in the convention's layout.
        convention: ``"deepmind"`` (default) or ``"paper"``, or a :class:`~refmem.dnc.conventions.Convention`.
        read_masks: ``[B, R, W]`` or ``None``; SPEC §5 option ``masked_content``.
        forward_sharpness: ``[B, R]`` (activated) or ``None``; SPEC §5 option ``link_sharpness``:
            the forward weights become :func:`sharpen_forward` of them.
        backward_sharpness: ``[B, R]`` or ``None``; the same for the backward weights.
    Returns:
        ``read_weights [B, R, N]`` and the :class:`ReadWeightsCache` (its ``forward`` and
            ``backward`` are the weights step 9 uses: sharpened when the sharpness is given).
    """
    xp = rx.namespace(memory, read_keys, read_strengths, link, prev_read_weights, read_modes)
    conv = C.get(convention)
    B, N, W = _shape(memory)
    nw = int(link.shape[1])
    pb, pf, pc = C.split_read_modes(read_modes, nw, conv)
    content, content_cache = _content_forward(memory, read_keys, read_strengths, read_masks, conv)
    fwd, bwd, dir_cache = directional_weights_forward.unchecked(link, prev_read_weights)
    f_cache = b_cache = None
    if forward_sharpness is not None:
        fwd, f_cache = sharpen_forward.unchecked(fwd, forward_sharpness)
    if backward_sharpness is not None:
        bwd, b_cache = sharpen_forward.unchecked(bwd, backward_sharpness)
    read_weights = (pc * content + xp.sum(pf[:, :, :, None] * fwd, axis=2)
                    + xp.sum(pb[:, :, :, None] * bwd, axis=2))
    cache = ReadWeightsCache(content, fwd, bwd, pb, pf, pc, conv, content_cache, dir_cache, f_cache, b_cache)
    return read_weights, cache


@edge({"cache.content_cache.weights": "B R N"}, d_read_weights="B R N")
def read_weights_backward(d_read_weights: Any, cache: ReadWeightsCache) -> ReadWeightsGrads:
    """Reverse of :func:`read_weights_forward`; the mode gradients are joined in the convention's layout.

    Args:
        d_read_weights: ``[B, R, N]``, the gradient of ``wr_t`` (not ``None``).
        cache: the :class:`ReadWeightsCache` of :func:`read_weights_forward`.

    Returns:
        The gradients, a :class:`ReadWeightsGrads` with fields ``memory [B, N, W]``, ``read_keys [B, R, W]``,
            ``read_strengths [B, R]``, ``link [B, nw, N, N]``, ``prev_read_weights [B, R, N]``,
            ``read_modes [B, R, 1 + 2nw]``.

    Derivation: [docs/derivations/dnc.md, "8. Read weights (steps 8-9)"](../derivations/dnc.md#8-read-weights-steps-8-9-read_weights_forward)
    """
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
        d_forward, d_fs = sharpen_backward.unchecked(d_forward, cache.forward_sharpen)
    if cache.backward_sharpen is not None:
        d_backward, d_bs = sharpen_backward.unchecked(d_backward, cache.backward_sharpen)
    directional = directional_weights_backward.unchecked(d_forward, d_backward, cache.directional_cache)
    d_memory, d_keys, d_strengths, d_masks = _content_backward(d_content, cache.content_cache)
    d_modes = C.join_read_modes(d_pb, d_pf, d_pc, cache.convention)
    if d_masks is None and d_fs is None and d_bs is None:
        return ReadWeightsGrads(d_memory, d_keys, d_strengths, directional.link, directional.prev_read_weights,
                                d_modes)
    return OptionReadWeightsGrads(d_memory, d_keys, d_strengths, directional.link, directional.prev_read_weights,
                                  d_modes, d_masks, d_fs, d_bs)
