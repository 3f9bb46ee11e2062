"""RNNsearch (SPEC §7, Bahdanau, Cho & Bengio 2015, appendix A) in JAX: ``lax.scan`` over the time steps,
``jax.vjp`` for the gradients.

An independent implementation written from SPEC §7, not a call into refmem. Both encoder
directions and the decoder are ``lax.scan`` loops (the backward direction scans the reversed
source); the masks carry the state with ``jnp.where``. Every equation case of the family
(``attention/rnnsearch*``) is covered with its intermediates, ``jax.jvp`` along the given tangents
and the HVPs by forward over reverse (``jax.jvp(jax.grad(loss))``). float64 needs ``jax_enable_x64``,
which this module switches on when it is imported::

    refmem golden verify --adapter examples.jax_rnnsearch:run --dtype float64
"""

from __future__ import annotations

import functools

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

#: The golden cases this adapter implements (fnmatch patterns).
CASES = ["attention/rnnsearch*"]

GRU = ("W_z", "U_z", "b_z", "W_r", "U_r", "b_r", "W", "U", "b")
#: The masks (0/1, not differentiated); integer tensors are token indices, not differentiated either.
CONST = ("inputs/mask", "inputs/target_mask", "inputs/step_mask")


def gru(x_z, x_r, x_h, h, p, mask=None):
    """The gated unit (SPEC §7 GRU steps 1-5) from the input projections; returns ``(h, (z, r, h̃))``."""
    z = jax.nn.sigmoid(x_z + h @ p["U_z"])
    r = jax.nn.sigmoid(x_r + h @ p["U_r"])
    h_tilde = jnp.tanh(x_h + (r * h) @ p["U"])
    new = (1 - z) * h + z * h_tilde
    if mask is not None:
        new = jnp.where(mask[:, None] != 0, new, h)
    return new, (z, r, h_tilde)


def encoder(x, E_x, fwd, bwd, mask):
    emb = E_x[x]
    B, T, _ = emb.shape
    ones = jnp.ones((B, T), emb.dtype) if mask is None else mask

    def run(p, seq, m):
        proj = [seq @ p[w] + p[b] for w, b in (("W_z", "b_z"), ("W_r", "b_r"), ("W", "b"))]  # once per sequence

        def step(h, xs):
            az, ar, ah, mj = xs
            h, _ = gru(az, ar, ah, h, p, mj)
            return h, h

        xs = tuple(jnp.swapaxes(a, 0, 1) for a in proj) + (jnp.swapaxes(m, 0, 1),)
        _, hs = jax.lax.scan(step, jnp.zeros((B, p["U"].shape[0]), emb.dtype), xs)
        return jnp.swapaxes(hs, 0, 1)

    forward = run(fwd, emb, ones)
    backward = run(bwd, emb[:, ::-1], ones[:, ::-1])[:, ::-1]
    return jnp.concatenate([forward, backward], -1), {"source_embedding": emb, "forward_states": forward,
                                                       "backward_states": backward}


def masked_softmax(e, mask):
    if mask is None:
        return jax.nn.softmax(e, axis=-1)
    attend = mask != 0
    shift = jax.lax.stop_gradient(jnp.max(jnp.where(attend, e, jnp.min(e, -1, keepdims=True)), -1, keepdims=True))
    ex = jnp.where(attend, jnp.exp(jnp.where(attend, e - shift, 0.0)), 0.0)
    total = jnp.sum(ex, -1, keepdims=True)
    return ex / jnp.where(total == 0, 1.0, total)


def alignment(s_prev, h, keys, p, mask):
    e = jnp.tanh((s_prev @ p["W_a"])[:, None, :] + keys) @ p["v_a"]
    alpha = masked_softmax(e, mask)
    return alpha, jnp.einsum("bj,bjd->bd", alpha, h), e


def deep_output(s_prev, ey, c, p):
    t_tilde = s_prev @ p["U_o"] + ey @ p["V_o"] + c @ p["C_o"] + p["b_o"]
    pairs = t_tilde.reshape(t_tilde.shape[:-1] + (t_tilde.shape[-1] // 2, 2))
    t = jnp.where(pairs[..., 0] >= pairs[..., 1], pairs[..., 0], pairs[..., 1])
    logits = t @ p["W_o"] + p["b_y"]
    log_p = jax.nn.log_softmax(logits, axis=-1)
    return jnp.exp(log_p), {"t_tilde": t_tilde, "t": t, "logits": logits, "log_p": log_p}


def decoder_step(ey, s_prev, h, keys, p, mask, step_mask):
    alpha, c, e = alignment(s_prev, h, keys, p, mask)
    s, (z, r, s_tilde) = gru(ey @ p["W_z"] + c @ p["C_z"] + p["b_z"], ey @ p["W_r"] + c @ p["C_r"] + p["b_r"],
                             ey @ p["W"] + c @ p["C"] + p["b"], s_prev, p, step_mask)
    probs, out = deep_output(s_prev, ey, c, p)
    return probs, alpha, s, {"e": e, "context": c, "z": z, "r": r, "s_tilde": s_tilde, **out}


def decoder(y, h, s0, p, mask, target_mask):
    keys = h @ p["U_a"] + p["b_a"]  # once per sequence
    ey_all = p["E_y"][y]
    ey_in = jnp.concatenate([jnp.zeros_like(ey_all[:, :1]), ey_all[:, :-1]], 1)  # E_y y_0 = 0
    tm = jnp.ones(y.shape, h.dtype) if target_mask is None else target_mask

    def step(s, xs):
        ey, m = xs
        probs, alpha, s_new, trace = decoder_step(ey, s, h, keys, p, mask, m)
        return s_new, (probs, alpha, s_new, {"target_embedding": ey, **trace})

    _, (probs, alpha, s, trace) = jax.lax.scan(step, s0, (jnp.swapaxes(ey_in, 0, 1), jnp.swapaxes(tm, 0, 1)))
    sw = functools.partial(jnp.swapaxes, axis1=0, axis2=1)
    return sw(probs), sw(alpha), sw(s), {"keys": keys, **{k: sw(v) for k, v in trace.items()}}


def outputs_of(case, a):
    """``(outputs, intermediates)`` of ``case`` from the arrays ``a`` (leaves and constants)."""
    fn = case.split("/")[1]
    p = {k.split("/", 1)[1]: v for k, v in a.items() if k.startswith("params/")}
    fwd = {k: p[f"fwd_{k}"] for k in GRU if f"fwd_{k}" in p}
    bwd = {k: p[f"bwd_{k}"] for k in GRU if f"bwd_{k}" in p}
    if fn == "rnnsearch_embedding":
        return {"emb": p["E"][a["inputs/tokens"]]}, {}
    if fn == "rnnsearch_gru_cell":
        x = a["inputs/x"]
        h, (z, r, h_tilde) = gru(x @ p["W_z"] + p["b_z"], x @ p["W_r"] + p["b_r"], x @ p["W"] + p["b"],
                                 a["inputs/h_prev"], p, a.get("inputs/step_mask"))
        return {"h": h}, {"z": z, "r": r, "h_tilde": h_tilde}
    if fn == "rnnsearch_encoder":
        h, trace = encoder(a["inputs/x"], p["E_x"], fwd, bwd, a.get("inputs/mask"))
        return {"h": h}, trace
    if fn == "rnnsearch_initial_state":
        n = p["W_s"].shape[0]
        return {"s0": jnp.tanh(a["inputs/h"][:, 0, n:] @ p["W_s"] + p["b_s"])}, {}
    if fn == "rnnsearch_alignment":
        keys = a["inputs/h"] @ p["U_a"] + p["b_a"]
        alpha, c, e = alignment(a["inputs/s_prev"], a["inputs/h"], keys, p, a.get("inputs/mask"))
        return {"alpha": alpha, "c": c}, {"keys": keys, "e": e}
    if fn == "rnnsearch_maxout":
        tt = a["inputs/t_tilde"]
        pairs = tt.reshape(tt.shape[:-1] + (tt.shape[-1] // 2, 2))
        return {"t": jnp.where(pairs[..., 0] >= pairs[..., 1], pairs[..., 0], pairs[..., 1])}, {}
    if fn == "rnnsearch_deep_output":
        probs, trace = deep_output(a["inputs/s_prev"], a["inputs/ey"], a["inputs/c"], p)
        return {"p": probs}, trace
    if fn == "rnnsearch_decoder_step":
        keys = a["inputs/h"] @ p["U_a"] + p["b_a"]
        probs, alpha, s, trace = decoder_step(a["inputs/ey_prev"], a["inputs/s_prev"], a["inputs/h"], keys, p,
                                              a.get("inputs/mask"), a.get("inputs/step_mask"))
        return {"p": probs, "alpha": alpha, "s": s}, {"keys": keys, **trace}
    if fn == "rnnsearch_decoder":
        probs, alpha, s, trace = decoder(a["inputs/y"], a["inputs/h"], a["inputs/s0"], p, a.get("inputs/mask"),
                                         a.get("inputs/target_mask"))
        return {"p": probs, "alpha": alpha, "s": s}, trace
    if fn == "rnnsearch":
        mask, tmask = a.get("inputs/mask"), a.get("inputs/target_mask")
        h, enc = encoder(a["inputs/x"], p["E_x"], fwd, bwd, mask)
        n = p["W_s"].shape[0]
        s0 = jnp.tanh(h[:, 0, n:] @ p["W_s"] + p["b_s"])
        probs, alpha, s, trace = decoder(a["inputs/y"], h, s0, p, mask, tmask)
        ll = jnp.take_along_axis(trace["log_p"], a["inputs/y"][..., None], -1)[..., 0]
        if tmask is not None:
            ll = ll * tmask
        return ({"log_likelihood": ll, "p": probs, "alpha": alpha, "s": s},
                {**enc, "annotations": h, "s0": s0, **trace})
    raise KeyError(f"{case}: not an RNNsearch case")


@functools.partial(jax.jit, static_argnums=0)
def _forward_backward(case, leaves, const, cotangents):
    (outputs, trace), vjp = jax.vjp(lambda lv: outputs_of(case, {**const, **lv}), leaves)
    (grads,) = vjp((cotangents, jax.tree_util.tree_map(jnp.zeros_like, trace)))
    return outputs, trace, grads


@functools.partial(jax.jit, static_argnums=0)
def _forward_mode(case, leaves, const, cotangents, tangents):
    def outputs(lv):
        return outputs_of(case, {**const, **lv})[0]

    def loss(lv):
        out = outputs(lv)
        return sum(jnp.sum(out[k] * cotangents[k]) for k in out)

    _, jvp = jax.jvp(outputs, (leaves,), (tangents,))
    _, hvp = jax.jvp(jax.grad(loss), (leaves,), (tangents,))
    return jvp, hvp


#: A differential campaign calls the adapter with new sizes at every example, and jit compiles each
#: new shape: the compiled code of thousands of shapes exhausts the process's memory maps (LLVM
#: "Cannot allocate memory", then a crash, seen after about 600 calls of jax_rnnsearch). The caches
#: are dropped every ``CLEAR_EVERY`` calls (a later call of a dropped shape compiles again).
CLEAR_EVERY = 64
_CALLS = 0


def run(case: str, tensors: dict[str, np.ndarray], dtype: str, config: dict | None = None) -> dict[str, np.ndarray]:
    """The adapter: outputs and intermediates, grads by ``jax.vjp``, JVPs and HVPs along the tangents."""
    global _CALLS
    _CALLS += 1
    if _CALLS % CLEAR_EVERY == 0:
        jax.clear_caches()
    jd = {"float32": jnp.float32, "float64": jnp.float64}[dtype]
    const, leaves = {}, {}
    for k, v in tensors.items():
        if k.split("/")[0] not in ("inputs", "params"):
            continue
        if np.issubdtype(np.asarray(v).dtype, np.integer):
            const[k] = jnp.asarray(v, dtype=jnp.int64)  # token indices (x, y): not differentiated
        elif k in CONST:
            const[k] = jnp.asarray(v, dtype=jd)  # masks: not differentiated
        else:
            leaves[k] = jnp.asarray(v, dtype=jd)
    cot = {k.split("/", 1)[1]: jnp.asarray(v, dtype=jd) for k, v in tensors.items() if k.startswith("cotangents/")}
    outputs, trace, grads = _forward_backward(case, leaves, const, cot)
    result = {f"outputs/{k}": np.asarray(v) for k, v in outputs.items()}
    result.update({f"intermediates/{k}": np.asarray(v) for k, v in trace.items()})
    result.update({f"grads/{k}": np.asarray(v) for k, v in grads.items()})
    if any(k.startswith("tangents/") for k in tensors):
        tangents = {k: (jnp.asarray(tensors[f"tangents/{k}"], dtype=jd) if f"tangents/{k}" in tensors
                        else jnp.zeros_like(v)) for k, v in leaves.items()}
        jvp, hvp = _forward_mode(case, leaves, const, cot, tangents)
        result.update({f"jvp/{k}": np.asarray(v) for k, v in jvp.items()})
        result.update({f"hvp/{k}": np.asarray(v) for k, v in hvp.items() if f"tangents/{k}" in tensors})
    return result
