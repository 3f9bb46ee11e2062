"""Exercise dnc/allocation: the backward pass of the DNC's allocation weights (SPEC §5 step 3).

Write `allocation_backward(d_out, cache) -> AllocationGrads`: the gradient of `usage [B, N]` from
the gradient `d_out.allocation [B, N]`, the sort's permutation held constant (SPEC §5). The
forward below is given; read what it caches. You may call `P.exclusive_cumprod_vjp(d, x, axis)`
(the exercise primitives/exclusive_cumprod) and `P.unsort(values, perm, axis)`.
Derivation: docs/derivations/dnc.md, "3. Allocation (step 3)". Name your intermediate gradients
as the comments do and refmem checks each one.

Grade it:  refmem exercise check THIS_FILE
"""

from refmem import primitives as P
from refmem import xp as rx
from refmem.dnc.addressing import AllocationCache, AllocationGrads, AllocationOutputs

EXERCISE = "dnc/allocation"


def allocation_forward(usage, *, eps=1e-6):
    """a = alloc(u), SPEC §5 step 3 (given)."""
    xp = rx.namespace(usage)
    usage_hat = eps + (1.0 - eps) * usage                              # û = ε + (1 - ε) u
    nonusage = 1.0 - usage_hat
    perm = xp.argsort(nonusage, axis=-1, descending=True, stable=True)   # φ: most free first
    sorted_nonusage = xp.take_along_axis(nonusage, perm, axis=-1)       # s^n
    sorted_usage = 1.0 - sorted_nonusage                                # s^u
    prod_sorted_usage = P.exclusive_cumprod(sorted_usage, axis=-1)      # Π_{i<j} s^u_i
    sorted_allocation = sorted_nonusage * prod_sorted_usage
    allocation = P.unsort(sorted_allocation, perm, axis=-1)             # back to slot order
    return AllocationOutputs(allocation), AllocationCache(perm, sorted_nonusage, sorted_usage, prod_sorted_usage, eps)


def allocation_backward(d_out: AllocationOutputs, cache: AllocationCache) -> AllocationGrads:
    """The gradient `AllocationGrads(usage)`, the permutation held constant."""
    (d_allocation,) = d_out
    xp = rx.namespace(d_allocation)
    # --- solution ---
    # 1. Gather: the un-sort is a permutation, its gradient the inverse permutation (gather with φ)
    d_sorted_allocation = xp.take_along_axis(d_allocation, cache.perm, axis=-1)
    # 2. The product: sorted_allocation = s^n ∘ prod_sorted_usage
    d_sorted_nonusage = d_sorted_allocation * cache.prod_sorted_usage
    d_prod = d_sorted_allocation * cache.sorted_nonusage
    # 3. The exclusive cumulative product prod_j = Π_{i<j} s^u_i (no division)
    d_sorted_usage = P.exclusive_cumprod_vjp(d_prod, cache.sorted_usage, -1)
    # 4. The coupling: s^u = 1 - s^n
    d_sorted_nonusage = d_sorted_nonusage - d_sorted_usage
    # 5. Scatter: back to slot order
    d_nonusage = P.unsort(d_sorted_nonusage, cache.perm, axis=-1)
    # 6. The input: nonusage = 1 - û, û = ε + (1 - ε) u
    d_usage = -(1.0 - cache.eps) * d_nonusage
    return AllocationGrads(d_usage)
    # --- end of solution ---
