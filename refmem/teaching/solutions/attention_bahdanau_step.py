"""Exercise attention/bahdanau_step: the backward pass of one Bahdanau decoder step (SPEC §2, eqs. 1-8).

Write `decoder_step_backward(d_out, cache) -> DecoderStepGrads`: from the gradients of the step's
outputs `d_out = DecoderStepOutputs(y [B, K], alpha [B, T], s [B, H])` (y and s may be None:
zero), the gradients of `y_in [B, K]`, `s_prev [B, H]`, `h [B, T, D]` (through the context),
`uh [B, T, H]` (= h @ U_a + b_a) and of the parameters (`DecoderParams`; `U_a`, `b_a`, `W_s` are
None: a step reads them only through uh and s_prev). The forward of a step, the decoder over T
steps and its backpropagation through time (which calls your step backward) are given.
Derivation: docs/derivations/attention.md, "1. The Bahdanau decoder (SPEC §2), one step".
refmem grades the whole decoder against the golden tensors of `output_state` "previous" and
"current", and your step's intermediate gradients (named as the comments do) one by one.

Grade it:  refmem exercise check THIS_FILE
"""

from refmem import xp as rx
from refmem.attention.bahdanau import (DecoderGrads, DecoderOutputs, DecoderParams, DecoderStepCache,
                                       DecoderStepGrads, DecoderStepOutputs)

EXERCISE = "attention/bahdanau_step"


def _sigmoid(a, xp):
    return 0.5 * (1.0 + xp.tanh(0.5 * a))


def _softmax(a, xp):
    z = xp.exp(a - xp.max(a, axis=-1, keepdims=True))
    return z / xp.sum(z, axis=-1, keepdims=True)


def decoder_step_forward(y_in, s_prev, h, uh, params, *, output_state="previous"):
    """One step, SPEC §2 eqs. 1-8 (given). `uh = h @ U_a + b_a` is computed once per sequence."""
    xp = rx.namespace(h)
    P = params
    att = xp.tanh((s_prev @ P.W_a)[:, None, :] + uh)                        # (1) [B, T, H]
    e = xp.sum(att * P.V_a, axis=-1)                                        # (1) energies [B, T]
    alpha = _softmax(e, xp)                                                 # (2)
    c = (alpha[:, None, :] @ h)[:, 0, :]                                    # (3) context [B, D]
    r = _sigmoid(y_in @ P.W_r + s_prev @ P.U_r + c @ P.C_r + P.b_r, xp)     # (4) reset gate
    z = _sigmoid(y_in @ P.W_z + s_prev @ P.U_z + c @ P.C_z + P.b_z, xp)     # (5) update gate
    rs = r * s_prev
    p = xp.tanh(y_in @ P.W_p + rs @ P.U_p + c @ P.C_p + P.b_p)              # (6) proposal
    s = (1.0 - z) * s_prev + z * p                                          # (7) state
    s_out = s_prev if output_state == "previous" else s
    y = _softmax(y_in @ P.W_o + s_out @ P.U_o + c @ P.C_o + P.b_o, xp)      # (8) output
    cache = DecoderStepCache(y_in, s_prev, h, att, alpha, c, r, z, p, rs, s, s_out, y, P, output_state)
    return DecoderStepOutputs(y, alpha, s), cache


def decoder_forward(h, params, *, output_state="previous"):
    """The decoder over T steps (given): s_0 = tanh(h[:, 0] @ W_s), y_0 = 0, free running."""
    xp = rx.namespace(h)
    B, T, _ = h.shape
    K = params.W_o.shape[0]
    s = xp.tanh(h[:, 0, :] @ params.W_s)
    y = xp.zeros((B, K), dtype=h.dtype)
    uh = h @ params.U_a + params.b_a
    ys, alphas, ss, caches = [], [], [], []
    for t in range(T):
        (y, alpha, s), cache = decoder_step_forward(y, s, h, uh, params, output_state=output_state)
        ys.append(y)
        alphas.append(alpha)
        ss.append(s)
        caches.append(cache)
    out = DecoderOutputs(xp.stack(ys, axis=1), xp.stack(alphas, axis=1), xp.stack(ss, axis=1))
    return out, (h, caches)


def decoder_backward(d_out, cache, step_backward):
    """Backpropagation through time (given; derivation §2): calls `step_backward` for t = T-1 .. 0."""
    h, caches = cache
    xp = rx.namespace(h)
    B, T, D = h.shape
    P = caches[0].params
    carry_y = xp.zeros_like(caches[0].y)        # d y_t arriving from step t+1 (it read y_t as y_in)
    carry_s = xp.zeros_like(caches[0].s)        # d s_t arriving from step t+1
    d_h = xp.zeros_like(h)
    d_uh = xp.zeros(caches[0].att.shape, dtype=h.dtype)
    sums = {}
    for t in reversed(range(T)):
        g = step_backward(DecoderStepOutputs(d_out.y[:, t] + carry_y, d_out.alpha[:, t], d_out.s[:, t] + carry_s),
                          caches[t])
        carry_y, carry_s = g.y_in, g.s_prev
        d_h = d_h + g.h
        d_uh = d_uh + g.uh
        for name, value in zip(DecoderParams._fields, g.params):
            if value is not None:
                sums[name] = sums[name] + value if name in sums else value
    h2, duh2 = xp.reshape(h, (-1, D)), xp.reshape(d_uh, (-1, d_uh.shape[-1]))
    sums["U_a"] = xp.matrix_transpose(h2) @ duh2                    # uh = h @ U_a + b_a
    sums["b_a"] = xp.sum(duh2, axis=0)
    d_h = d_h + d_uh @ xp.matrix_transpose(P.U_a)
    s0 = xp.tanh(h[:, 0, :] @ P.W_s)                                  # s_0 = tanh(h[:, 0] @ W_s)
    d_s0 = carry_s * (1.0 - s0 * s0)
    sums["W_s"] = xp.matrix_transpose(h[:, 0, :]) @ d_s0
    first = xp.concat([(d_s0 @ xp.matrix_transpose(P.W_s))[:, None, :], xp.zeros_like(h[:, 1:, :])], axis=1)
    return DecoderGrads(d_h + first, DecoderParams(**sums), None)


def decoder_step_backward(d_out: DecoderStepOutputs, cache: DecoderStepCache) -> DecoderStepGrads:
    """The gradients `DecoderStepGrads(y_in, s_prev, h, uh, params)` of one step."""
    d_y, d_alpha, d_s = d_out
    C = cache
    P = C.params
    xp = rx.namespace(C.y)
    if d_y is None:
        d_y = xp.zeros_like(C.y)
    if d_s is None:
        d_s = xp.zeros_like(C.s)
    T = xp.matrix_transpose
    # --- solution ---
    # (eq. 8) the output: y = softmax(o), o = y_in W_o + s_out U_o + c C_o + b_o
    d_o = C.y * (d_y - xp.sum(d_y * C.y, axis=-1, keepdims=True))
    d_y_in = d_o @ T(P.W_o)
    d_c = d_o @ T(P.C_o)
    d_s_out = d_o @ T(P.U_o)
    g_W_o, g_U_o, g_C_o, g_b_o = T(C.y_in) @ d_o, T(C.s_out) @ d_o, T(C.c) @ d_o, xp.sum(d_o, axis=0)
    # (eq. 8, which state) 'current' reads s_t: its gradient joins d_s before eq. 7
    if C.output_state == "current":
        d_s = d_s + d_s_out
        d_s_prev = xp.zeros_like(d_s_out)
    else:
        d_s_prev = d_s_out
    # (eq. 7) the state: s = (1 - z) s_prev + z p is bilinear
    d_z = d_s * (C.p - C.s_prev)
    d_p = d_s * C.z
    d_s_prev = d_s_prev + d_s * (1.0 - C.z)
    # (eq. 6) the proposal: p = tanh(y_in W_p + (r ∘ s_prev) U_p + c C_p + b_p)
    d_pp = d_p * (1.0 - C.p * C.p)
    d_rs = d_pp @ T(P.U_p)
    d_r = d_rs * C.s_prev
    d_s_prev = d_s_prev + d_rs * C.r
    d_y_in = d_y_in + d_pp @ T(P.W_p)
    d_c = d_c + d_pp @ T(P.C_p)
    g_W_p, g_U_p, g_C_p, g_b_p = T(C.y_in) @ d_pp, T(C.rs) @ d_pp, T(C.c) @ d_pp, xp.sum(d_pp, axis=0)
    # (eq. 5) the update gate: z = σ(y_in W_z + s_prev U_z + c C_z + b_z)
    d_zz = d_z * C.z * (1.0 - C.z)
    d_y_in = d_y_in + d_zz @ T(P.W_z)
    d_s_prev = d_s_prev + d_zz @ T(P.U_z)
    d_c = d_c + d_zz @ T(P.C_z)
    g_W_z, g_U_z, g_C_z, g_b_z = T(C.y_in) @ d_zz, T(C.s_prev) @ d_zz, T(C.c) @ d_zz, xp.sum(d_zz, axis=0)
    # (eq. 4) the reset gate: r = σ(y_in W_r + s_prev U_r + c C_r + b_r)
    d_rr = d_r * C.r * (1.0 - C.r)
    d_y_in = d_y_in + d_rr @ T(P.W_r)
    d_s_prev = d_s_prev + d_rr @ T(P.U_r)
    d_c = d_c + d_rr @ T(P.C_r)
    g_W_r, g_U_r, g_C_r, g_b_r = T(C.y_in) @ d_rr, T(C.s_prev) @ d_rr, T(C.c) @ d_rr, xp.sum(d_rr, axis=0)
    # (eq. 3) the context: c = Σ_j α_j h_j
    d_alpha_c = (C.h @ d_c[:, :, None])[:, :, 0]
    d_alpha = d_alpha_c if d_alpha is None else d_alpha + d_alpha_c
    d_h = C.alpha[:, :, None] * d_c[:, None, :]
    # (eq. 2) the weights: α = softmax(e)
    d_e = C.alpha * (d_alpha - xp.sum(d_alpha * C.alpha, axis=-1, keepdims=True))
    # (eq. 1) the energies: e = tanh(s_prev W_a + uh) · V_a
    g_V_a = xp.sum(xp.reshape(d_e[:, :, None] * C.att, (-1, C.att.shape[-1])), axis=0)
    d_pre = d_e[:, :, None] * P.V_a * (1.0 - C.att * C.att)
    d_sw = xp.sum(d_pre, axis=1)
    g_W_a = T(C.s_prev) @ d_sw
    d_s_prev = d_s_prev + d_sw @ T(P.W_a)
    grads = DecoderParams(g_V_a, g_W_a, None, None, g_W_r, g_U_r, g_C_r, g_b_r, g_W_z, g_U_z, g_C_z, g_b_z,
                          g_W_p, g_U_p, g_C_p, g_b_p, g_W_o, g_U_o, g_C_o, g_b_o, None)
    return DecoderStepGrads(d_y_in, d_s_prev, d_h, d_pre, grads)
    # --- end of solution ---
