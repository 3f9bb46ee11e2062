"""Exercise primitives/softmax: the backward pass of the softmax (SPEC §1).

Write `softmax_backward(d_out, cache) -> SoftmaxGrads`: the gradient of the loss with respect to
`x` from the gradient `d_out.out` of the softmax `s` (same shape as `x`). The forward below is
given; the cache keeps the output `s` and the axis. Derivation: docs/derivations/primitives.md,
"3. Softmax". Name your intermediate gradients as the comments do and refmem checks each one.

Grade it:  refmem exercise check THIS_FILE
"""

from refmem import xp as rx
from refmem.primitives import SoftmaxCache, SoftmaxGrads, SoftmaxOutputs

EXERCISE = "primitives/softmax"


def softmax_forward(x, *, axis=-1):
    """Softmax along `axis`, the maximum subtracted first (given)."""
    xp = rx.namespace(x)
    z = xp.exp(x - xp.max(x, axis=axis, keepdims=True))
    s = z / xp.sum(z, axis=axis, keepdims=True)
    return SoftmaxOutputs(s), SoftmaxCache(s, axis)


def softmax_backward(d_out: SoftmaxOutputs, cache: SoftmaxCache) -> SoftmaxGrads:
    """The gradient of `x` (same shape), from `d_out.out` (same shape)."""
    (g,) = d_out  # the upstream gradient of the softmax output s
    s, axis = cache.out, cache.axis
    xp = rx.namespace(s)
    # --- solution ---
    # 1. The shared sum: the Jacobian is diag(s) - s sᵀ (every s_i depends on every x_k);
    #    the part shared by all k is Σ_i g_i s_i, along the axis.
    g_dot_s = xp.sum(g * s, axis=axis, keepdims=True)
    # 2. The gradient: x̄_k = Σ_i g_i s_i (δ_ik - s_k) = s_k (g_k - Σ_i g_i s_i)
    d_x = s * (g - g_dot_s)
    return SoftmaxGrads(d_x)
    # --- end of solution ---
