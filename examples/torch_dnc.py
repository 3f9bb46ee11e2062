"""The DNC (SPEC §5) in PyTorch, differentiated by autograd: one memory-access step
(steps 1-10) and the whole core unrolled over a sequence (LSTM controller, deep
controller with or without skip connections, output map, clipping).

An independent implementation written from SPEC §5 (and the conventions table),
not a call into refmem. Both conventions are covered: ``deepmind`` (softplus
strengths, read modes ``[backward×nw, forward×nw, content]``, the usage
gradient w.r.t. the previous write weights stopped) and ``paper`` (oneplus,
``[backward×nw, content, forward×nw]``, exact gradient)::

    refmem golden verify --adapter examples.torch_dnc:run --dtype float32

Besides the outputs and gradients, the adapter returns the intermediates it computes on the way
(docs/golden-format.md, format 2: the activated interface, the write content weights, the per-head allocation,
the directional and read content weights; per step ``[B, T, ...]`` in the core), so that a
mismatch is reported at the first equation that breaks.
"""

from __future__ import annotations

import numpy as np
import torch

#: The golden cases this adapter implements (fnmatch patterns).
# The plain DNC of SPEC §5 in both conventions, with every core variant (live state, active clip,
# deep controller with and without skips); the Csordás & Schmidhuber options (the access_step and
# core_unroll variants named after them) are not implemented here.
CASES = ["dnc/access_step/deepmind", "dnc/access_step/paper", "dnc/core_unroll/deepmind", "dnc/core_unroll/paper",
         "dnc/core_unroll/deep_*", "dnc/core_unroll/state_*", "dnc/core_unroll/clip_*"]

DTYPES = {"float32": torch.float32, "float64": torch.float64}
EPS_COS = 1e-6  # SPEC §1 cosine similarity
EPS_ALLOC = 1e-6  # SPEC §5 step 3


def cosine(keys, memory):
    """``cos(k, M_i)`` of SPEC §1 (DNC form): ``keys [B, H, W]``, ``memory [B, N, W]`` -> ``[B, H, N]``."""
    nk = torch.sqrt((keys * keys).sum(-1) + EPS_COS)
    nm = torch.sqrt((memory * memory).sum(-1) + EPS_COS)
    return (keys @ memory.transpose(1, 2)) / (nk[:, :, None] * nm[:, None, :] + EPS_COS)


def softplus(x):
    """``log(1 + exp(x))`` without overflow. Not ``F.softplus``: above its ``threshold=20`` it returns
    ``x`` itself, off by up to ``exp(-20) = 2e-9``, which ``refmem verify`` finds in float64 at large
    strengths (scale 64)."""
    return x.clamp(min=0) + torch.log1p(torch.exp(-x.abs()))


def content_weights(memory, keys, raw_strengths, convention):
    """SPEC §5 step 2: ``softmax_i(act(β) cos(k, M_i))`` with ``act`` the convention's."""
    strength = softplus(raw_strengths) if convention == "deepmind" else 1 + softplus(raw_strengths)
    return torch.softmax(strength[..., None] * cosine(keys, memory), dim=-1)


def allocation(usage):
    """``alloc(u)`` of SPEC §5 step 3; the sort permutation is a constant for autograd."""
    u = EPS_ALLOC + (1 - EPS_ALLOC) * usage
    free = 1 - u
    order = torch.sort(free, dim=-1, descending=True, stable=True).indices
    sn = torch.gather(free, -1, order)
    su = 1 - sn
    excl = torch.cat([torch.ones_like(su[..., :1]), torch.cumprod(su[..., :-1], dim=-1)], dim=-1)
    a_sorted = sn * excl
    return torch.zeros_like(a_sorted).scatter(-1, order, a_sorted)  # un-sort


def access_step(xi_in, W_xi, b_xi, state, nw, R, W, convention, trace=None):
    """One access step: ``xi_in [B, Hc]`` and the previous state -> ``(read_vectors [B, R, W], new state)``.

    ``trace``: a dict that receives the step's intermediates under the names of docs/golden-format.md."""
    memory, prev_wr, prev_ww = state["memory"], state["read_weights"], state["write_weights"]
    link, prec, prev_usage = state["link"], state["precedence"], state["usage"]
    B = xi_in.shape[0]

    # The interface vector, sliced in SPEC §5's order (row-major reshapes).
    xi = xi_in @ W_xi + b_xi
    sizes = [nw * W, nw * W, R, nw, nw, R * (1 + 2 * nw), nw * W, nw, R * W, R]
    parts = torch.split(xi, sizes, dim=-1)
    write_vectors = parts[0].reshape(B, nw, W)
    erase_vectors = torch.sigmoid(parts[1]).reshape(B, nw, W)
    free_gates = torch.sigmoid(parts[2])
    alloc_gates = torch.sigmoid(parts[3])
    write_gates = torch.sigmoid(parts[4])
    read_modes = torch.softmax(parts[5].reshape(B, R, 1 + 2 * nw), dim=-1)
    write_keys = parts[6].reshape(B, nw, W)
    write_strengths = parts[7]
    read_keys = parts[8].reshape(B, R, W)
    read_strengths = parts[9]

    # 1. usage (deepmind: no gradient reaches the previous write weights through it)
    ww_for_usage = prev_ww.detach() if convention == "deepmind" else prev_ww
    psi = torch.prod(1 - free_gates[:, :, None] * prev_wr, dim=1)
    written = 1 - torch.prod(1 - ww_for_usage, dim=1)
    usage = (prev_usage + (1 - prev_usage) * written) * psi

    # 2. write content weights on M_{t-1}
    cw = content_weights(memory, write_keys, write_strengths, convention)

    # 3. allocation, one write head after another
    gates = alloc_gates * write_gates
    u = usage
    allocs = []
    for k in range(nw):
        a = allocation(u)
        allocs.append(a)
        u = u + (1 - u) * gates[:, k, None] * a
    alloc = torch.stack(allocs, dim=1)

    # 4. write weights
    ww = write_gates[..., None] * (alloc_gates[..., None] * alloc + (1 - alloc_gates[..., None]) * cw)

    # 5. memory: erase, then add
    erase = torch.prod(1 - ww[:, :, :, None] * erase_vectors[:, :, None, :], dim=1)
    new_memory = memory * erase + torch.einsum("bkn,bkw->bnw", ww, write_vectors)

    # 6. temporal link and precedence, per write head
    wi, wj = ww[:, :, :, None], ww[:, :, None, :]
    new_link = (1 - wi - wj) * link + wi * prec[:, :, None, :]
    new_link = new_link * (1 - torch.eye(new_link.shape[-1], dtype=new_link.dtype))
    new_prec = (1 - ww.sum(-1, keepdim=True)) * prec + ww

    # 7. directional weights from wr_{t-1}: [B, R, nw, N]
    forward = torch.einsum("bkij,brj->brki", new_link, prev_wr)
    backward = torch.einsum("bkij,bri->brkj", new_link, prev_wr)

    # 8-9. read content weights on M_t, then the mode mixture in the convention's layout
    cr = content_weights(new_memory, read_keys, read_strengths, convention)
    if convention == "deepmind":
        pb, pf, pc = read_modes[..., :nw], read_modes[..., nw : 2 * nw], read_modes[..., 2 * nw :]
    else:
        pb, pc, pf = read_modes[..., :nw], read_modes[..., nw : nw + 1], read_modes[..., nw + 1 :]
    wr = pc * cr + (pf[..., None] * forward).sum(2) + (pb[..., None] * backward).sum(2)

    # 10. read vectors
    read_vectors = wr @ new_memory
    if trace is not None:
        trace.update({"write_vectors": write_vectors, "erase_vectors": erase_vectors, "free_gates": free_gates,
                      "allocation_gates": alloc_gates, "write_gates": write_gates, "read_modes": read_modes,
                      "write_content_weights": cw, "allocation": alloc, "forward_weights": forward,
                      "backward_weights": backward, "read_content_weights": cr})
    new_state = {"memory": new_memory, "read_weights": wr, "write_weights": ww, "link": new_link,
                 "precedence": new_prec, "usage": usage}
    return read_vectors, new_state


ACCESS_STATE = ("memory", "read_weights", "write_weights", "link", "precedence", "usage")


def lstm_step(inp, h, c, W, b, forget_bias=1.0):
    """Sonnet's LSTM: ``gates = [inp ; h] @ W + b`` split as ``i, j, f, o``."""
    i, j, f, o = torch.split(torch.cat([inp, h], -1) @ W + b, h.shape[-1], dim=-1)
    c = torch.sigmoid(f + forget_bias) * c + torch.sigmoid(i) * torch.tanh(j)
    return torch.tanh(c) * torch.sigmoid(o), c


def core_unroll(x, p, state, cfg, trace=None):
    """SPEC §5 Core over ``x [B, T, D]``: ``y [B, T, Y]`` and ``read_vectors [B, T, R, W]``.

    ``state`` holds the access state, ``read_vectors [B, R, W]`` and ``h1, c1, ...`` per
    controller layer; ``cfg`` the case config (``convention``, ``layers``, ``skip``,
    ``clip_value``, ``forget_bias``). ``trace``: a dict that receives every step's
    intermediates stacked over time (``[B, T, ...]``).
    """
    layers, skip = int(cfg.get("layers", 1)), bool(cfg.get("skip", True))
    clip_value, forget_bias = float(cfg.get("clip_value", 0.0)), float(cfg.get("forget_bias", 1.0))

    def clip(v):
        return v.clamp(-clip_value, clip_value) if clip_value > 0 else v

    access = {k: state[k] for k in ACCESS_STATE}
    h = [state[f"h{l + 1}"] for l in range(layers)]
    c = [state[f"c{l + 1}"] for l in range(layers)]
    r = state["read_vectors"]
    B, nw, _ = access["write_weights"].shape
    R, W = r.shape[1], r.shape[2]
    ys, rs, steps = [], [], []
    for t in range(x.shape[1]):
        inp = torch.cat([x[:, t], r.reshape(B, R * W)], -1)  # [x_t ; flatten(r_{t-1})]
        for l in range(layers):
            layer_in = inp if l == 0 else (torch.cat([inp, h[l - 1]], -1) if skip else h[l - 1])
            h_l, c_l = lstm_step(layer_in, h[l], c[l], p[f"W_lstm{l + 1}"], p[f"b_lstm{l + 1}"], forget_bias)
            h[l], c[l] = clip(h_l), clip(c_l)
        hc = clip(torch.cat(h, -1) if skip else h[-1])
        step = {"controller_output": hc}
        r, access = access_step(hc, p["W_xi"], p["b_xi"], access, nw, R, W, cfg["convention"], step)
        step.update(access)
        steps.append(step)
        ys.append(clip(torch.cat([hc, r.reshape(B, R * W)], -1) @ p["W_y"] + p["b_y"]))
        rs.append(r)
    if trace is not None:
        trace.update({k: torch.stack([st[k] for st in steps], 1) for k in steps[0]})
    return {"y": torch.stack(ys, 1), "read_vectors": torch.stack(rs, 1)}


def jvp_and_hvp(outputs_of, leaves, tensors, torch_dtype):
    """docs/golden-format.md's ``jvp/`` and ``hvp/`` for the given ``tangents/``, by ``torch.func``: the JVP of the
    outputs, and the HVP forward over reverse, ``jvp(grad(loss))`` (the deepmind ``.detach()`` is a
    constant in both differentiations; double backward gives the same numbers)."""
    names = [k for k in leaves if f"tangents/{k}" in tensors]
    if not names:
        return {}
    tangents = {k: torch.tensor(tensors[f"tangents/{k}"], dtype=torch_dtype) for k in names}
    cot = {k.split("/", 1)[1]: torch.tensor(v, dtype=torch_dtype) for k, v in tensors.items()
           if k.startswith("cotangents/")}
    fixed = {k: v.detach() for k, v in leaves.items()}

    def outputs(p):
        return outputs_of({**fixed, **p})

    def loss(p):
        return sum((out * cot[k]).sum() for k, out in outputs(p).items())

    primals = ({k: fixed[k] for k in names},)
    _, jvp = torch.func.jvp(outputs, primals, (tangents,))
    _, hvp = torch.func.jvp(torch.func.grad(loss), primals, (tangents,))
    result = {f"jvp/{k}": v.detach().numpy() for k, v in jvp.items()}
    result.update({f"hvp/{k}": v.detach().numpy() for k, v in hvp.items()})
    return result


def run(case: str, tensors: dict[str, np.ndarray], dtype: str, config: dict | None = None) -> dict[str, np.ndarray]:
    """The adapter: given inputs, params, state, cotangents and tangents, return outputs, intermediates,
    grads, and the JVPs and HVPs along the tangents."""
    torch_dtype = DTYPES[dtype]
    config = dict(config or {})
    config.setdefault("convention", "paper" if "paper" in case.split("/")[-1] else "deepmind")
    leaves = {
        k: torch.tensor(v, dtype=torch_dtype, requires_grad=True)
        for k, v in tensors.items()
        if k.split("/")[0] in ("inputs", "params", "state")
    }

    def outputs_of(lv, trace=None):
        state = {k.split("/", 1)[1]: v for k, v in lv.items() if k.startswith("state/")}
        params = {k.split("/", 1)[1]: v for k, v in lv.items() if k.startswith("params/")}
        if case.startswith("dnc/core_unroll/"):
            return core_unroll(lv["inputs/x"], params, state, config, trace)
        B, nw, N = state["write_weights"].shape
        R, W = state["read_weights"].shape[1], state["memory"].shape[2]
        read_vectors, new_state = access_step(
            lv["inputs/controller_output"], params["W_xi"], params["b_xi"], state, nw, R, W, config["convention"],
            trace,
        )
        return {"read_vectors": read_vectors, **new_state}

    trace = {}
    outputs = outputs_of(leaves, trace)
    loss = sum((out * torch.tensor(tensors[f"cotangents/{k}"], dtype=torch_dtype)).sum() for k, out in outputs.items())
    grads = torch.autograd.grad(loss, list(leaves.values()), allow_unused=True)
    result = {f"outputs/{k}": v.detach().numpy() for k, v in outputs.items()}
    result.update({f"intermediates/{k}": v.detach().numpy() for k, v in trace.items()})
    result.update({
        f"grads/{k}": (g if g is not None else torch.zeros_like(leaves[k])).numpy() for k, g in zip(leaves, grads)
    })
    result.update(jvp_and_hvp(outputs_of, leaves, tensors, torch_dtype))
    return result
