"""Exercise memory_lstm/step: the backward pass of one step of the LSTM memory cell (SPEC §4).

Write `step_backward(d_out, cache) -> StepGrads`: from the gradients of the step's outputs
`d_out = StepOutputs(h [B, H], c [B, H], memory [B, M, H])` (any may be None: zero), the
gradients of `x [B, D]`, `h_prev [B, H]`, `memory_prev [B, M, H]` and of every parameter
(`Params`, the same field names). The forward below is given; read what it caches.
Derivation: docs/derivations/memory_lstm.md, "1. One step" (the comments below are its steps).
Name your intermediate gradients as the comments do and refmem checks each one.

Grade it:  refmem exercise check THIS_FILE
"""

from refmem import xp as rx
from refmem.memory_lstm import Params, StepCache, StepGrads, StepOutputs

EXERCISE = "memory_lstm/step"


def _sigmoid(a, xp):
    return 0.5 * (1.0 + xp.tanh(0.5 * a))


def step_forward(x, h_prev, memory_prev, params):
    """One step, SPEC §4 (given); `x [B, D]`, `h_prev [B, H]`, `memory_prev [B, M, H]` newest first."""
    xp = rx.namespace(x)
    p = params
    i = _sigmoid(x @ p.W_i + h_prev @ p.U_i + p.b_i, xp)                # (4.1) gates
    f = _sigmoid(x @ p.W_f + h_prev @ p.U_f + p.b_f, xp)
    o = _sigmoid(x @ p.W_o + h_prev @ p.U_o + p.b_o, xp)
    c_tilde = xp.tanh(x @ p.W_c + h_prev @ p.U_c + p.b_c)              # (4.2) candidate
    a_e = x @ p.W_e + h_prev @ p.U_e + p.b_e                           # (4.3) slot weights, softmax over M
    z = xp.exp(a_e - xp.max(a_e, axis=-1, keepdims=True))
    e = z / xp.sum(z, axis=-1, keepdims=True)
    m = xp.sum(e[:, :, None] * memory_prev, axis=1)                    # (4.4) the read
    u = m + x @ p.W_m                                                  # (4.5) the cell
    c = f * u + i * c_tilde
    tanh_c = xp.tanh(c)                                                # (4.6) the hidden state
    h = o * tanh_c
    memory = xp.concat([c[:, None, :], memory_prev[:, :-1, :]], axis=1)  # (4.7) newest first
    cache = StepCache(x, h_prev, memory_prev, p, i, f, o, c_tilde, e, u, tanh_c)
    return StepOutputs(h, c, memory), cache


def step_backward(d_out: StepOutputs, cache: StepCache) -> StepGrads:
    """The gradients `StepGrads(x, h_prev, memory_prev, params)` of one step."""
    d_h, d_c, d_memory = d_out
    C = cache
    x, h_prev, memory_prev, p = C.x, C.h_prev, C.memory_prev, C.params
    i, f, o, c_tilde, e, u, tanh_c = C.i, C.f, C.o, C.c_tilde, C.e, C.u, C.tanh_c
    xp = rx.namespace(x)
    if d_h is None:
        d_h = xp.zeros_like(tanh_c)
    if d_c is None:
        d_c = xp.zeros_like(tanh_c)
    if d_memory is None:
        d_memory = xp.zeros_like(memory_prev)
    T = xp.matrix_transpose
    # --- solution ---
    # Step 1 (4.6, 4.7): everything that reaches c: h = o ∘ tanh c, the newest slot, c itself
    d_o = d_h * tanh_c
    d_c_total = d_h * o * (1.0 - tanh_c * tanh_c) + d_memory[:, 0, :] + d_c
    # Step 2 (4.5): c = f ∘ u + i ∘ c~ is bilinear; u = m + x W_m passes d_u on
    d_f = d_c_total * u
    d_u = d_c_total * f
    d_i = d_c_total * c_tilde
    d_c_tilde = d_c_total * i
    d_W_m = T(x) @ d_u
    # Step 3 (4.4): the read m = Σ_k e_k memory_prev[:, k]
    d_e = xp.sum(memory_prev * d_u[:, None, :], axis=2)
    d_memory_prev = e[:, :, None] * d_u[:, None, :]
    # Step 4 (4.7): slot k of memory_prev is slot k + 1 of memory; the oldest slot drops out
    shifted = xp.concat([d_memory[:, 1:, :], xp.zeros_like(d_memory[:, :1, :])], axis=1)
    d_memory_prev = d_memory_prev + shifted
    # Step 5 (4.1-4.3): through the non-linearities, written with their outputs
    d_a_i = d_i * i * (1.0 - i)
    d_a_f = d_f * f * (1.0 - f)
    d_a_o = d_o * o * (1.0 - o)
    d_a_c = d_c_tilde * (1.0 - c_tilde * c_tilde)
    d_a_e = e * (d_e - xp.sum(d_e * e, axis=-1, keepdims=True))
    # Step 6: the affine maps a_g = x W_g + h_prev U_g + b_g, for g in i, f, o, c, e
    d_x = d_u @ T(p.W_m)
    d_h_prev = xp.zeros_like(h_prev)
    grads = {"W_m": d_W_m}
    for g, d_a in (("i", d_a_i), ("f", d_a_f), ("o", d_a_o), ("c", d_a_c), ("e", d_a_e)):
        W, U = getattr(p, f"W_{g}"), getattr(p, f"U_{g}")
        grads[f"W_{g}"] = T(x) @ d_a
        grads[f"U_{g}"] = T(h_prev) @ d_a
        grads[f"b_{g}"] = xp.sum(d_a, axis=0)
        d_x = d_x + d_a @ T(W)
        d_h_prev = d_h_prev + d_a @ T(U)
    return StepGrads(d_x, d_h_prev, d_memory_prev, Params(**grads))
    # --- end of solution ---
