"""The DNC (SPEC §5) in JAX, differentiated by ``jax.vjp``: one memory-access step
(steps 1-10) and the whole core unrolled over a sequence with ``lax.scan`` (Sonnet
LSTM controller, one or more layers with or without skip connections, output map,
clipping).

An independent implementation written from SPEC §5, not a call into refmem;
both conventions (``deepmind``, ``paper``) are covered. float64 needs
``jax_enable_x64``, which this module switches on when it is imported::

    refmem golden verify --adapter examples.jax_dnc:run --dtype float64
"""

from __future__ import annotations

import functools

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

#: The golden cases this adapter implements (fnmatch patterns).
# The plain DNC of SPEC §5 in both conventions, with every core variant (live state, active clip,
# deep controller with and without skips); the Csordás & Schmidhuber options (the access_step and
# core_unroll variants named after them) are not implemented here.
CASES = ["dnc/access_step/deepmind", "dnc/access_step/paper", "dnc/core_unroll/deepmind", "dnc/core_unroll/paper",
         "dnc/core_unroll/deep_*", "dnc/core_unroll/state_*", "dnc/core_unroll/clip_*"]

EPS_COS = 1e-6  # SPEC §1 cosine similarity
EPS_ALLOC = 1e-6  # SPEC §5 step 3
STATE = ("memory", "read_weights", "write_weights", "link", "precedence", "usage")


def content_weights(memory, keys, raw_strengths, convention):
    """SPEC §5 step 2 with the DNC cosine of SPEC §1: ``[B, H, N]``."""
    nk = jnp.sqrt(jnp.sum(keys * keys, -1) + EPS_COS)
    nm = jnp.sqrt(jnp.sum(memory * memory, -1) + EPS_COS)
    cos = jnp.einsum("bhw,bnw->bhn", keys, memory) / (nk[:, :, None] * nm[:, None, :] + EPS_COS)
    strength = jax.nn.softplus(raw_strengths)
    if convention == "paper":
        strength = 1 + strength  # oneplus
    return jax.nn.softmax(strength[..., None] * cos, axis=-1)


def allocation(usage):
    """``alloc(u)`` of SPEC §5 step 3 (descending stable sort of ``1 - û``, permutation held constant)."""
    free = 1 - (EPS_ALLOC + (1 - EPS_ALLOC) * usage)
    order = jnp.argsort(-jax.lax.stop_gradient(free), axis=-1, stable=True)
    sn = jnp.take_along_axis(free, order, axis=-1)
    excl = jnp.concatenate([jnp.ones_like(sn[..., :1]), jnp.cumprod(1 - sn[..., :-1], axis=-1)], axis=-1)
    inverse = jnp.argsort(order, axis=-1)
    return jnp.take_along_axis(sn * excl, inverse, axis=-1)


def access_step(controller_output, W_xi, b_xi, state, convention):
    """``(read_vectors [B, R, W], new state, intermediates)`` from the controller output and the previous state
    (the intermediates under the names of docs/golden-format.md)."""
    memory, prev_wr, prev_ww = state["memory"], state["read_weights"], state["write_weights"]
    B, nw, N = prev_ww.shape
    R, W = prev_wr.shape[1], memory.shape[2]
    xi = controller_output @ W_xi + b_xi
    sizes = [nw * W, nw * W, R, nw, nw, R * (1 + 2 * nw), nw * W, nw, R * W, R]
    parts = jnp.split(xi, np.cumsum(sizes)[:-1], axis=-1)
    write_vectors = parts[0].reshape(B, nw, W)
    erase_vectors = jax.nn.sigmoid(parts[1]).reshape(B, nw, W)
    free_gates, alloc_gates, write_gates = (jax.nn.sigmoid(p) for p in parts[2:5])
    read_modes = jax.nn.softmax(parts[5].reshape(B, R, 1 + 2 * nw), axis=-1)
    write_keys, write_strengths = parts[6].reshape(B, nw, W), parts[7]
    read_keys, read_strengths = parts[8].reshape(B, R, W), parts[9]

    # 1. usage
    ww_prev = jax.lax.stop_gradient(prev_ww) if convention == "deepmind" else prev_ww
    psi = jnp.prod(1 - free_gates[:, :, None] * prev_wr, axis=1)
    usage = (state["usage"] + (1 - state["usage"]) * (1 - jnp.prod(1 - ww_prev, axis=1))) * psi
    # 2-4. write weights from content and sequential allocation
    cw = content_weights(memory, write_keys, write_strengths, convention)
    u, allocs = usage, []
    for k in range(nw):
        allocs.append(allocation(u))
        u = u + (1 - u) * (alloc_gates[:, k] * write_gates[:, k])[:, None] * allocs[-1]
    ga = alloc_gates[..., None]
    ww = write_gates[..., None] * (ga * jnp.stack(allocs, 1) + (1 - ga) * cw)
    # 5. memory
    keep = jnp.prod(1 - ww[..., None] * erase_vectors[:, :, None, :], axis=1)
    new_memory = memory * keep + jnp.einsum("bkn,bkw->bnw", ww, write_vectors)
    # 6. link and precedence
    link = (1 - ww[..., :, None] - ww[..., None, :]) * state["link"] + ww[..., :, None] * state["precedence"][..., None, :]
    link = link * (1 - jnp.eye(N, dtype=link.dtype))
    precedence = (1 - jnp.sum(ww, -1, keepdims=True)) * state["precedence"] + ww
    # 7. directional weights [B, R, nw, N]
    fwd = jnp.einsum("bkij,brj->brki", link, prev_wr)
    bwd = jnp.einsum("bkij,bri->brkj", link, prev_wr)
    # 8-9. read weights
    cr = content_weights(new_memory, read_keys, read_strengths, convention)
    if convention == "deepmind":
        pb, pf, pc = read_modes[..., :nw], read_modes[..., nw : 2 * nw], read_modes[..., 2 * nw :]
    else:
        pb, pc, pf = read_modes[..., :nw], read_modes[..., nw : nw + 1], read_modes[..., nw + 1 :]
    wr = pc * cr + jnp.sum(pf[..., None] * fwd, 2) + jnp.sum(pb[..., None] * bwd, 2)
    # 10. read vectors
    read_vectors = wr @ new_memory
    new_state = {"memory": new_memory, "read_weights": wr, "write_weights": ww, "link": link,
                 "precedence": precedence, "usage": usage}
    intermediates = {"write_vectors": write_vectors, "erase_vectors": erase_vectors, "free_gates": free_gates,
                     "allocation_gates": alloc_gates, "write_gates": write_gates, "read_modes": read_modes,
                     "write_content_weights": cw, "allocation": jnp.stack(allocs, 1), "forward_weights": fwd,
                     "backward_weights": bwd, "read_content_weights": cr}
    return read_vectors, new_state, intermediates


def _outputs(args, convention):
    state = {s: args[f"state/{s}"] for s in STATE}
    rv, new, intermediates = access_step(args["inputs/controller_output"], args["params/W_xi"], args["params/b_xi"],
                                         state, convention)
    return {"read_vectors": rv, **new}, intermediates


@functools.partial(jax.jit, static_argnums=2)
def _forward_backward(args, cotangents, convention):
    """Outputs, intermediates (as auxiliary data) and the vector-Jacobian product with ``cotangents``,
    compiled once per shape."""
    outputs, vjp, intermediates = jax.vjp(lambda a: _outputs(a, convention), args, has_aux=True)
    (grads,) = vjp(cotangents)
    return outputs, intermediates, grads


def lstm_step(inp, h, c, W, b, forget_bias):
    """Sonnet's LSTM: ``gates = [inp ; h] @ W + b`` split as ``i, j, f, o``, ``forget_bias`` added at run time."""
    i, j, f, o = jnp.split(jnp.concatenate([inp, h], -1) @ W + b, 4, axis=-1)
    c = jax.nn.sigmoid(f + forget_bias) * c + jax.nn.sigmoid(i) * jnp.tanh(j)
    return jnp.tanh(c) * jax.nn.sigmoid(o), c


def core_unroll(x, p, state, convention, layers, skip, clip_value, forget_bias):
    """SPEC §5 Core over ``x [B, T, D]`` with ``lax.scan``: ``y [B, T, Y]``, ``read_vectors [B, T, R, W]``.

    ``state`` holds the access state, ``read_vectors [B, R, W]`` and ``h1, c1, ...`` per layer.
    The controller reads ``[x_t ; flatten(r_{t-1})]``; with skip connections layer ``l > 1``
    reads ``[input ; h^{l-1}]`` and the access and output layers read every layer's ``h``.
    """
    def clip(v):
        return jnp.clip(v, -clip_value, clip_value) if clip_value > 0 else v

    B = x.shape[0]
    R, W = state["read_vectors"].shape[1:]

    def step(carry, x_t):
        hs, cs, r, access = carry
        inp = jnp.concatenate([x_t, r.reshape(B, R * W)], -1)
        new_h, new_c = [], []
        for l in range(layers):
            layer_in = inp if l == 0 else (jnp.concatenate([inp, new_h[-1]], -1) if skip else new_h[-1])
            h_l, c_l = lstm_step(layer_in, hs[l], cs[l], p[f"W_lstm{l + 1}"], p[f"b_lstm{l + 1}"], forget_bias)
            new_h.append(clip(h_l))
            new_c.append(clip(c_l))
        hc = clip(jnp.concatenate(new_h, -1) if skip else new_h[-1])
        r, access, _ = access_step(hc, p["W_xi"], p["b_xi"], access, convention)
        y = clip(jnp.concatenate([hc, r.reshape(B, R * W)], -1) @ p["W_y"] + p["b_y"])
        return (tuple(new_h), tuple(new_c), r, access), (y, r)

    init = (tuple(state[f"h{l + 1}"] for l in range(layers)), tuple(state[f"c{l + 1}"] for l in range(layers)),
            state["read_vectors"], {k: state[k] for k in STATE})
    _, (ys, rs) = jax.lax.scan(step, init, jnp.swapaxes(x, 0, 1))
    return {"y": jnp.swapaxes(ys, 0, 1), "read_vectors": jnp.swapaxes(rs, 0, 1)}


def _core_outputs(a, convention, cfg):
    layers, skip, clip_value, forget_bias = cfg
    p = {k.split("/", 1)[1]: v for k, v in a.items() if k.startswith("params/")}
    state = {k.split("/", 1)[1]: v for k, v in a.items() if k.startswith("state/")}
    return core_unroll(a["inputs/x"], p, state, convention, layers, skip, clip_value, forget_bias)


@functools.partial(jax.jit, static_argnums=(2, 3))
def _core_forward_backward(args, cotangents, convention, cfg):
    outputs, vjp = jax.vjp(lambda a: _core_outputs(a, convention, cfg), args)
    (grads,) = vjp(cotangents)
    return outputs, grads


@functools.partial(jax.jit, static_argnums=(3, 4))
def _forward_mode(args, cotangents, tangents, convention, cfg):
    """docs/golden-format.md's ``jvp/`` (``jax.jvp`` of the outputs) and ``hvp/`` (forward over reverse:
    ``jax.jvp(jax.grad(loss))``, the stopped gradient a constant in both) along ``tangents``;
    ``cfg`` is the core's ``(layers, skip, clip_value, forget_bias)``, or ``None`` for the access step."""
    def outputs(a):
        return _outputs(a, convention)[0] if cfg is None else _core_outputs(a, convention, cfg)

    def loss(a):
        out = outputs(a)
        return sum(jnp.sum(out[k] * cotangents[k]) for k in out)

    _, jvp = jax.jvp(outputs, (args,), (tangents,))
    _, hvp = jax.jvp(jax.grad(loss), (args,), (tangents,))
    return jvp, hvp


#: A differential campaign calls the adapter with new sizes at every example, and jit compiles each
#: new shape: the compiled code of thousands of shapes exhausts the process's memory maps (LLVM
#: "Cannot allocate memory", then a crash, seen after about 600 calls of jax_rnnsearch). The caches
#: are dropped every ``CLEAR_EVERY`` calls (a later call of a dropped shape compiles again).
CLEAR_EVERY = 64
_CALLS = 0


def run(case: str, tensors: dict[str, np.ndarray], dtype: str, config: dict | None = None) -> dict[str, np.ndarray]:
    """The adapter: outputs by the forward, grads by ``jax.vjp`` with the given cotangents, and
    ``jvp/`` and ``hvp/`` along the given tangents by ``jax.jvp`` and ``jax.jvp(jax.grad(...))``."""
    global _CALLS
    _CALLS += 1
    if _CALLS % CLEAR_EVERY == 0:
        jax.clear_caches()
    config = config or {}
    convention = config.get("convention") or ("paper" if "paper" in case.split("/")[-1] else "deepmind")
    jdtype = {"float32": jnp.float32, "float64": jnp.float64}[dtype]
    args = {k: jnp.asarray(v, dtype=jdtype) for k, v in tensors.items() if k.split("/")[0] in ("inputs", "params", "state")}
    cot = {k.split("/", 1)[1]: jnp.asarray(v, dtype=jdtype) for k, v in tensors.items() if k.startswith("cotangents/")}
    intermediates, cfg = {}, None
    if case.startswith("dnc/core_unroll/"):
        cfg = (int(config.get("layers", 1)), bool(config.get("skip", True)), float(config.get("clip_value", 0.0)),
               float(config.get("forget_bias", 1.0)))
        outputs, grads = _core_forward_backward(args, cot, convention, cfg)
    else:
        outputs, intermediates, grads = _forward_backward(args, cot, convention)
    result = {f"outputs/{k}": np.asarray(v) for k, v in outputs.items()}
    result.update({f"intermediates/{k}": np.asarray(v) for k, v in intermediates.items()})
    result.update({f"grads/{k}": np.asarray(g) for k, g in grads.items()})
    if any(k.startswith("tangents/") for k in tensors):  # a golden file with forward-mode tensors
        # A tensor without a tangent (not differentiated in this case) is held fixed: a zero tangent.
        tangents = {k: (jnp.asarray(tensors[f"tangents/{k}"], dtype=jdtype) if f"tangents/{k}" in tensors
                        else jnp.zeros_like(v)) for k, v in args.items()}
        jvp, hvp = _forward_mode(args, cot, tangents, convention, cfg)
        result.update({f"jvp/{k}": np.asarray(v) for k, v in jvp.items()})
        result.update({f"hvp/{k}": np.asarray(v) for k, v in hvp.items() if f"tangents/{k}" in tensors})
    return result
