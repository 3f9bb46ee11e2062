"""Exercise primitives/exclusive_cumprod: the backward pass of the exclusive cumulative product (SPEC §1).

Write `exclusive_cumprod_backward(d_out, cache) -> ExclusiveCumprodGrads`: with
`y_j = Π_{i<j} x_i` along the last axis (`y_0 = 1`), the gradient of `x` from the gradient
`d_out.out` of `y`. It must be exact when a factor is 0 (a fully used DNC memory slot): refmem
also checks it there. The forward below is given; the cache keeps `x` and the axis.
Derivation: docs/derivations/primitives.md, "5. Exclusive cumulative product".

Grade it:  refmem exercise check THIS_FILE
"""

from refmem import xp as rx
from refmem.primitives import ExclusiveCumprodCache, ExclusiveCumprodGrads, ExclusiveCumprodOutputs

EXERCISE = "primitives/exclusive_cumprod"


def exclusive_cumprod_forward(x, *, axis=-1):
    """`y_j = Π_{i<j} x_i` along the last axis, `y_0 = 1` (given; this exercise uses axis=-1)."""
    xp = rx.namespace(x)
    ones = xp.ones(x.shape[:-1] + (1,), dtype=x.dtype)
    y = xp.concat([ones, xp.cumulative_prod(x[..., :-1], axis=-1)], axis=-1)
    return ExclusiveCumprodOutputs(y), ExclusiveCumprodCache(x, axis)


def exclusive_cumprod_backward(d_out: ExclusiveCumprodOutputs, cache: ExclusiveCumprodCache) -> ExclusiveCumprodGrads:
    """The gradient of `x` (same shape), from `d_out.out` (same shape); exact with zero factors."""
    (g,) = d_out  # the upstream gradient of y
    x = cache.x  # [..., n], the product runs along the last axis
    xp = rx.namespace(x)
    n = x.shape[-1]
    # --- solution ---
    # 1. The sums S: x̄_i = Σ_{j>i} g_j Π_{k<j, k≠i} x_k = y_i S_i, S_i = Σ_{j>i} g_j Π_{i<k<j} x_k.
    #    Never divide by x_i (0 for a fully used slot): build S backwards (Horner's scheme),
    #    S_{n-1} = 0 and S_i = g_{i+1} + x_{i+1} S_{i+1}.
    S = [xp.zeros_like(g[..., 0])]
    for i in range(n - 2, -1, -1):
        S.append(g[..., i + 1] + x[..., i + 1] * S[-1])
    S = xp.stack(S[::-1], axis=-1)
    # 2. The gradient: x̄_i = y_i S_i, y_i the exclusive product of the factors before i
    ones = xp.ones(x.shape[:-1] + (1,), dtype=x.dtype)
    y = xp.concat([ones, xp.cumulative_prod(x[..., :-1], axis=-1)], axis=-1)
    d_x = y * S
    return ExclusiveCumprodGrads(d_x)
    # --- end of solution ---
