"""Exercise dnc/usage: the backward pass of the DNC's usage update (SPEC §5 step 1).

Write `usage_backward(d_out, cache) -> UsageGrads`: from the gradients of
`d_out = UsageOutputs(usage [B, N], retention [B, N])` (either may be None: zero), the gradients
of `prev_usage [B, N]`, `prev_write_weights [B, nw, N]`, `free_gates [B, R]` and
`prev_read_weights [B, R, N]`. Under the deepmind convention (`cache.stop`) the previous write
weights enter through tf.stop_gradient. Products are differentiated without division: use
`prod_except(x, axis)`, the product of all the other factors. The forward below is given.
Derivation: docs/derivations/dnc.md, "2. Usage (step 1)". refmem grades both conventions.

Grade it:  refmem exercise check THIS_FILE
"""

from refmem import xp as rx
from refmem.dnc.addressing import UsageCache, UsageGrads, UsageOutputs, prod_except

EXERCISE = "dnc/usage"


def usage_forward(prev_usage, prev_write_weights, free_gates, prev_read_weights, *, convention="deepmind"):
    """u_t, SPEC §5 step 1 (given)."""
    xp = rx.namespace(prev_usage)
    write_factors = 1.0 - prev_write_weights                               # [B, nw, N]
    write_product = 1.0 - xp.prod(write_factors, axis=1)                    # 1 - Π_k (1 - ww_k)
    usage_after_write = prev_usage + (1.0 - prev_usage) * write_product     # u'
    free_factors = 1.0 - free_gates[:, :, None] * prev_read_weights         # [B, R, N]
    retention = xp.prod(free_factors, axis=1)                               # ψ
    usage = usage_after_write * retention
    stop = convention == "deepmind"                                         # tf.stop_gradient on ww_{t-1}
    cache = UsageCache(prev_usage, write_factors, write_product, usage_after_write, free_gates,
                       prev_read_weights, free_factors, retention, stop)
    return UsageOutputs(usage, retention), cache


def usage_backward(d_out: UsageOutputs, cache: UsageCache) -> UsageGrads:
    """The gradients `UsageGrads(prev_usage, prev_write_weights, free_gates, prev_read_weights)`."""
    d_usage, d_retention_out = d_out
    xp = rx.namespace(cache.retention)
    if d_usage is None:
        d_usage = xp.zeros_like(cache.retention)
    if d_retention_out is None:
        d_retention_out = xp.zeros_like(cache.retention)
    # --- solution ---
    # 1. The product u_t = u' ∘ ψ (ψ is also an output)
    d_after_write = d_usage * cache.retention
    d_retention = d_usage * cache.usage_after_write + d_retention_out
    # 2. The write: u' = u_{t-1} + (1 - u_{t-1}) ∘ write_product
    d_prev_usage = d_after_write * (1.0 - cache.write_product)
    d_write_product = d_after_write * (1.0 - cache.prev_usage)
    # 3. The write weights: write_product = 1 - Π_k (1 - ww_k), stopped under deepmind
    if cache.stop:
        d_prev_write_weights = xp.zeros_like(cache.write_factors)
    else:
        d_prev_write_weights = d_write_product[:, None, :] * prod_except(cache.write_factors, axis=1)
    # 4. The retention: ψ = Π_r (1 - f_r wr_r), the product of the others without division
    d_free_factors = d_retention[:, None, :] * prod_except(cache.free_factors, axis=1)
    d_free_gates = -xp.sum(d_free_factors * cache.prev_read_weights, axis=-1)
    d_prev_read_weights = -d_free_factors * cache.free_gates[:, :, None]
    return UsageGrads(d_prev_usage, d_prev_write_weights, d_free_gates, d_prev_read_weights)
    # --- end of solution ---
