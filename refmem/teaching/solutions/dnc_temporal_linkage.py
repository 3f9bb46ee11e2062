"""Exercise dnc/temporal_linkage: the backward pass of the link matrix and the precedence (SPEC §5 step 6).

Write `temporal_linkage_backward(d_out, cache) -> TemporalLinkageGrads`: from the gradients of
`d_out = TemporalLinkageOutputs(link [B, nw, N, N], precedence [B, nw, N])` (either may be None:
zero), the gradients of `prev_link`, `prev_precedence` and `write_weights`. The forward below is
given. Derivation: docs/derivations/dnc.md, "6. Link and precedence (step 6)".

Grade it:  refmem exercise check THIS_FILE
"""

from refmem import xp as rx
from refmem.dnc.addressing import TemporalLinkageCache, TemporalLinkageGrads, TemporalLinkageOutputs

EXERCISE = "dnc/temporal_linkage"


def temporal_linkage_forward(prev_link, prev_precedence, write_weights):
    """L_t and p_t per write head, SPEC §5 step 6 (given)."""
    xp = rx.namespace(prev_link)
    N = write_weights.shape[-1]
    off_diagonal = 1.0 - xp.eye(N, dtype=write_weights.dtype)
    w_i = write_weights[:, :, :, None]                    # w^w[i], the row
    w_j = write_weights[:, :, None, :]                    # w^w[j], the column
    link = ((1.0 - w_i - w_j) * prev_link + w_i * prev_precedence[:, :, None, :]) * off_diagonal
    write_sum = xp.sum(write_weights, axis=-1, keepdims=True)
    precedence = (1.0 - write_sum) * prev_precedence + write_weights
    cache = TemporalLinkageCache(prev_link, prev_precedence, write_weights, off_diagonal, write_sum)
    return TemporalLinkageOutputs(link, precedence), cache


def temporal_linkage_backward(d_out: TemporalLinkageOutputs, cache: TemporalLinkageCache) -> TemporalLinkageGrads:
    """The gradients `TemporalLinkageGrads(prev_link, prev_precedence, write_weights)`."""
    d_link, d_precedence = d_out
    xp = rx.namespace(cache.write_weights)
    if d_link is None:
        d_link = xp.zeros_like(cache.prev_link)
    if d_precedence is None:
        d_precedence = xp.zeros_like(cache.prev_precedence)
    w = cache.write_weights
    off_diagonal = cache.off_diagonal
    # --- solution ---
    # 1. The diagonal: L_t[i, i] = 0 is a constant, its upstream gradient is dropped
    g = d_link * off_diagonal
    # 2. The previous link: L_t[i, j] = (1 - w[i] - w[j]) L_{t-1}[i, j] + ...
    d_prev_link = g * (1.0 - w[:, :, :, None] - w[:, :, None, :])
    # 3. The write weights in the row role: Σ_j g[i, j] (p_{t-1}[j] - L_{t-1}[i, j])
    d_ww = xp.sum(g * (cache.prev_precedence[:, :, None, :] - cache.prev_link), axis=-1)
    # 4. The write weights in the column role: -Σ_i g[i, j] L_{t-1}[i, j]
    d_ww = d_ww - xp.sum(g * cache.prev_link, axis=-2)
    # 5. The previous precedence through the link: Σ_i w[i] g[i, j]
    d_prev_precedence = xp.sum(w[:, :, :, None] * g, axis=-2)
    # 6. The precedence: p_t = (1 - Σ_i w[i]) p_{t-1} + w
    d_prev_precedence = d_prev_precedence + d_precedence * (1.0 - cache.write_sum)
    d_ww = d_ww + d_precedence - xp.sum(d_precedence * cache.prev_precedence, axis=-1, keepdims=True)
    return TemporalLinkageGrads(d_prev_link, d_prev_precedence, d_ww)
    # --- end of solution ---
