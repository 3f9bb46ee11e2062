"""Exercise primitives/linear: the backward pass of the linear map `x @ W + b` (SPEC §1).

Write `linear_backward(d_out, cache) -> LinearGrads`: with `x [B, D_in]`, `W [D_in, D_out]`,
`b [D_out]` and `out = x @ W + b`, the gradients of `x`, `W` and `b` from the gradient
`d_out.out [B, D_out]`. The forward below is given; the cache keeps `x` and `W`.
Derivation: docs/derivations/primitives.md, "6. Linear map".

Grade it:  refmem exercise check THIS_FILE
"""

from refmem import xp as rx
from refmem.primitives import LinearCache, LinearGrads, LinearOutputs

EXERCISE = "primitives/linear"


def linear_forward(x, W, b=None):
    """`out = x @ W + b` (given)."""
    out = x @ W
    if b is not None:
        out = out + b
    return LinearOutputs(out), LinearCache(x, W)


def linear_backward(d_out: LinearOutputs, cache: LinearCache) -> LinearGrads:
    """The gradients `(x [B, D_in], W [D_in, D_out], b [D_out])` from `d_out.out [B, D_out]`."""
    (g,) = d_out  # [B, D_out]
    x, W = cache.x, cache.W
    xp = rx.namespace(x)
    # --- solution ---
    # 1. The input: out_pq = Σ_r x_pr W_rq + b_q, so ∂out_pq/∂x_pr = W_rq and x̄ = g Wᵀ
    d_x = g @ xp.matrix_transpose(W)
    # 2. The weight: ∂out_pq/∂W_rq = x_pr, summed over the rows p that share W: W̄ = xᵀ g
    d_W = xp.matrix_transpose(x) @ g
    # 3. The bias: ∂out_pq/∂b_q = 1, summed over the rows: b̄ = Σ_p g
    d_b = xp.sum(g, axis=0)
    return LinearGrads(d_x, d_W, d_b)
    # --- end of solution ---
