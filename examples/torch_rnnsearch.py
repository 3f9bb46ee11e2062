"""RNNsearch (SPEC §7, Bahdanau, Cho & Bengio 2015, appendix A) in PyTorch, differentiated by autograd.

An independent implementation written from SPEC §7, not a call into refmem: the bidirectional GRU
encoder, ``s_0 = tanh(←h_1 W_s + b_s)``, the alignment with the keys ``h U_a + b_a`` computed once,
the gated decoder reading ``[E_y y_{i-1} ; c_i]`` (``E_y y_0 = 0``), the deep output with maxout
and the teacher-forced log-likelihood, with source and target masks. Every equation case of the
family (``attention/rnnsearch*``) is covered, with its intermediates, the JVPs along the given
tangents (``torch.func.jvp``) and the HVPs (double backward)::

    refmem golden verify --adapter examples.torch_rnnsearch:run --dtype float64
"""

from __future__ import annotations

import numpy as np
import torch

#: The golden cases this adapter implements (fnmatch patterns).
CASES = ["attention/rnnsearch*"]

DTYPES = {"float32": torch.float32, "float64": torch.float64}
GRU = ("W_z", "U_z", "b_z", "W_r", "U_r", "b_r", "W", "U", "b")


# ----------------------------------------------------------------------------- the equations


def gru(x_z, x_r, x_h, h, p, mask=None, trace=None):
    """The gated unit from the input projections ``x_g`` (SPEC §7 GRU steps 1-5); ``mask [B]`` carries the state."""
    z = torch.sigmoid(x_z + h @ p["U_z"])
    r = torch.sigmoid(x_r + h @ p["U_r"])
    h_tilde = torch.tanh(x_h + (r * h) @ p["U"])  # the reset gate before U
    new = (1 - z) * h + z * h_tilde
    if mask is not None:
        new = torch.where(mask[:, None] != 0, new, h)
    if trace is not None:
        trace.update(z=z, r=r, h_tilde=h_tilde)
    return new


def gru_cell(x, h, p, mask=None, trace=None):
    return gru(x @ p["W_z"] + p["b_z"], x @ p["W_r"] + p["b_r"], x @ p["W"] + p["b"], h, p, mask, trace)


def encoder(x_tokens, E_x, fwd, bwd, mask=None, trace=None):
    """Annotations ``[B, Tx, 2n]``: both directions over ``E_x[x]``, each from a zero state."""
    emb = E_x[x_tokens]
    B, T, _ = emb.shape
    states = {}
    for name, p, order in (("forward", fwd, range(T)), ("backward", bwd, reversed(range(T)))):
        h = torch.zeros(B, p["U"].shape[0], dtype=emb.dtype)
        out = [None] * T
        for j in order:
            h = gru_cell(emb[:, j], h, p, None if mask is None else mask[:, j])
            out[j] = h
        states[name] = torch.stack(out, 1)
    if trace is not None:
        trace.update(source_embedding=emb, forward_states=states["forward"], backward_states=states["backward"])
    return torch.cat([states["forward"], states["backward"]], -1)


def initial_state(h, W_s, b_s):
    n = W_s.shape[0]
    return torch.tanh(h[:, 0, n:] @ W_s + b_s)


def masked_softmax(e, mask):
    if mask is None:
        return torch.softmax(e, -1)
    attend = mask != 0
    shift = torch.where(attend, e, e.min(-1, keepdim=True).values).max(-1, keepdim=True).values.detach()
    ex = torch.where(attend, torch.exp(torch.where(attend, e - shift, torch.zeros_like(e))), torch.zeros_like(e))
    total = ex.sum(-1, keepdim=True)
    return ex / torch.where(total == 0, torch.ones_like(total), total)


def alignment(s_prev, h, keys, W_a, v_a, mask=None, trace=None):
    e = torch.tanh((s_prev @ W_a)[:, None, :] + keys) @ v_a
    alpha = masked_softmax(e, mask)
    c = torch.einsum("bj,bjd->bd", alpha, h)
    if trace is not None:
        trace.update(e=e)
    return alpha, c


def maxout(t_tilde):
    pairs = t_tilde.reshape(*t_tilde.shape[:-1], t_tilde.shape[-1] // 2, 2)
    return torch.where(pairs[..., 0] >= pairs[..., 1], pairs[..., 0], pairs[..., 1])


def deep_output(s_prev, ey, c, p, trace=None):
    t_tilde = s_prev @ p["U_o"] + ey @ p["V_o"] + c @ p["C_o"] + p["b_o"]
    t = maxout(t_tilde)
    logits = t @ p["W_o"] + p["b_y"]
    log_p = torch.log_softmax(logits, -1)
    if trace is not None:
        trace.update(t_tilde=t_tilde, t=t, logits=logits, log_p=log_p)
    return torch.exp(log_p), log_p


def decoder_step(ey, s_prev, h, keys, p, mask=None, step_mask=None, trace=None):
    alpha, c = alignment(s_prev, h, keys, p["W_a"], p["v_a"], mask, trace)
    s = gru(ey @ p["W_z"] + c @ p["C_z"] + p["b_z"], ey @ p["W_r"] + c @ p["C_r"] + p["b_r"],
            ey @ p["W"] + c @ p["C"] + p["b"], s_prev, p, step_mask, trace)
    probs, log_p = deep_output(s_prev, ey, c, p, trace)
    if trace is not None:
        trace["context"] = c
        trace["s_tilde"] = trace.pop("h_tilde")
    return probs, log_p, alpha, s


def decoder(y_tokens, h, s0, p, mask=None, target_mask=None, trace=None):
    keys = h @ p["U_a"] + p["b_a"]  # once per sequence
    ey_all = p["E_y"][y_tokens]
    B, Ty = y_tokens.shape
    ey = torch.zeros_like(ey_all[:, 0])  # E_y y_0 = 0
    s = s0
    rows = []
    for i in range(Ty):
        step = {"target_embedding": ey}
        probs, log_p, alpha, s = decoder_step(ey, s, h, keys, p, mask,
                                              None if target_mask is None else target_mask[:, i], step)
        rows.append((probs, log_p, alpha, s, step))
        ey = ey_all[:, i]
    if trace is not None:
        trace["keys"] = keys
        for k in rows[0][4]:
            trace[k] = torch.stack([r[4][k] for r in rows], 1)
    return tuple(torch.stack([r[j] for r in rows], 1) for j in range(4))


# ----------------------------------------------------------------------------- the cases


def _gru_params(lv, prefix=""):
    return {k: lv[f"params/{prefix}{k}"] for k in GRU}


def _params(lv):
    return {k.split("/", 1)[1]: v for k, v in lv.items() if k.startswith("params/")}


def outputs_of(case, lv, const, trace=None):
    """The case's outputs from the leaves ``lv`` (differentiable) and ``const`` (tokens, masks)."""
    fn = case.split("/")[1]
    a = {**const, **lv}
    p = _params(lv)
    if fn == "rnnsearch_embedding":
        return {"emb": p["E"][a["inputs/tokens"]]}
    if fn == "rnnsearch_gru_cell":
        return {"h": gru_cell(a["inputs/x"], a["inputs/h_prev"], p, a.get("inputs/step_mask"), trace)}
    if fn == "rnnsearch_encoder":
        return {"h": encoder(a["inputs/x"], p["E_x"], _gru_params(lv, "fwd_"), _gru_params(lv, "bwd_"),
                             a.get("inputs/mask"), trace)}
    if fn == "rnnsearch_initial_state":
        return {"s0": initial_state(a["inputs/h"], p["W_s"], p["b_s"])}
    if fn == "rnnsearch_alignment":
        keys = a["inputs/h"] @ p["U_a"] + p["b_a"]
        alpha, c = alignment(a["inputs/s_prev"], a["inputs/h"], keys, p["W_a"], p["v_a"], a.get("inputs/mask"), trace)
        if trace is not None:
            trace["keys"] = keys
        return {"alpha": alpha, "c": c}
    if fn == "rnnsearch_maxout":
        return {"t": maxout(a["inputs/t_tilde"])}
    if fn == "rnnsearch_deep_output":
        probs, _ = deep_output(a["inputs/s_prev"], a["inputs/ey"], a["inputs/c"], p, trace)
        return {"p": probs}
    if fn == "rnnsearch_decoder_step":
        keys = a["inputs/h"] @ p["U_a"] + p["b_a"]
        probs, _, alpha, s = decoder_step(a["inputs/ey_prev"], a["inputs/s_prev"], a["inputs/h"], keys, p,
                                          a.get("inputs/mask"), a.get("inputs/step_mask"), trace)
        if trace is not None:
            trace["keys"] = keys
        return {"p": probs, "alpha": alpha, "s": s}
    if fn == "rnnsearch_decoder":
        probs, _, alpha, s = decoder(a["inputs/y"], a["inputs/h"], a["inputs/s0"], p, a.get("inputs/mask"),
                                     a.get("inputs/target_mask"), trace)
        return {"p": probs, "alpha": alpha, "s": s}
    if fn == "rnnsearch":
        h = encoder(a["inputs/x"], p["E_x"], _gru_params(lv, "fwd_"), _gru_params(lv, "bwd_"), a.get("inputs/mask"),
                    trace)
        s0 = initial_state(h, p["W_s"], p["b_s"])
        probs, log_p, alpha, s = decoder(a["inputs/y"], h, s0, p, a.get("inputs/mask"), a.get("inputs/target_mask"),
                                         trace)
        ll = log_p.gather(-1, a["inputs/y"][..., None])[..., 0]  # log p(y_i = y_{b,i})
        if "inputs/target_mask" in a:
            ll = ll * a["inputs/target_mask"]
        if trace is not None:
            trace.update(annotations=h, s0=s0)
        return {"log_likelihood": ll, "p": probs, "alpha": alpha, "s": s}
    raise KeyError(f"{case}: not an RNNsearch case")


def jvp_and_hvp(f, leaves, grads, tensors, torch_dtype):
    """docs/golden-format.md's ``jvp/`` (``torch.func.jvp``) and ``hvp/`` (double backward along the tangents; the
    loss has no stopped gradient, so the Hessian is symmetric)."""
    names = [k for k in leaves if f"tangents/{k}" in tensors]
    if not names:
        return {}
    tangents = {k: torch.tensor(tensors[f"tangents/{k}"], dtype=torch_dtype) for k in names}
    fixed = {k: v.detach() for k, v in leaves.items()}
    _, jvp = torch.func.jvp(lambda q: f({**fixed, **q}), ({k: fixed[k] for k in names},), (tangents,))
    by_name = dict(zip(leaves, grads))
    live = [k for k in names if by_name[k].requires_grad]
    hvp = torch.autograd.grad([by_name[k] for k in live], [leaves[k] for k in names],
                              grad_outputs=[tangents[k] for k in live], allow_unused=True)
    out = {f"jvp/{k}": v.detach().numpy() for k, v in jvp.items()}
    out.update({f"hvp/{k}": (h if h is not None else torch.zeros_like(tangents[k])).detach().numpy()
                for k, h in zip(names, hvp)})
    return out


def run(case: str, tensors: dict[str, np.ndarray], dtype: str, config: dict | None = None) -> dict[str, np.ndarray]:
    """The adapter: outputs, intermediates and grads by autograd, JVPs and HVPs along the tangents."""
    td = DTYPES[dtype]
    const, leaves = {}, {}
    for k, v in tensors.items():
        if k.split("/")[0] not in ("inputs", "params"):
            continue
        if np.issubdtype(np.asarray(v).dtype, np.integer):
            const[k] = torch.tensor(v, dtype=torch.int64)  # token indices (x, y): not differentiated
        elif k in ("inputs/mask", "inputs/target_mask", "inputs/step_mask"):
            const[k] = torch.tensor(v, dtype=td)  # 0/1: not differentiated
        else:
            leaves[k] = torch.tensor(v, dtype=td, requires_grad=True)
    trace = {}
    outputs = outputs_of(case, leaves, const, trace)
    loss = sum((v * torch.tensor(tensors[f"cotangents/{k}"], dtype=td)).sum() for k, v in outputs.items())
    # allow_unused: at Ty = 1 no step reads E_y (E_y y_0 = 0 and the last token is read by no step)
    grads = torch.autograd.grad(loss, list(leaves.values()), create_graph=True, allow_unused=True)
    grads = [torch.zeros_like(v) if g is None else g for g, v in zip(grads, leaves.values())]
    result = {f"outputs/{k}": v.detach().numpy() for k, v in outputs.items()}
    result.update({f"intermediates/{k}": v.detach().numpy() for k, v in trace.items()})
    result.update({f"grads/{k}": g.detach().numpy() for k, g in zip(leaves, grads)})
    result.update(jvp_and_hvp(lambda lv: outputs_of(case, lv, const), leaves, grads, tensors, td))
    return result
