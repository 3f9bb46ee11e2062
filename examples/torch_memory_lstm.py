"""The LSTM memory cell (SPEC §4) in PyTorch, differentiated by autograd.

An independent implementation written from SPEC §4, not a call into refmem. It
plugs into refmem's golden tensors through the adapter protocol of
examples/README.md::

    refmem golden verify --adapter examples.torch_memory_lstm:run --dtype float32
"""

from __future__ import annotations

import numpy as np
import torch

#: The golden cases this adapter implements (fnmatch patterns).
CASES = ["memory_lstm/step/*", "memory_lstm/unroll/*"]

DTYPES = {"float32": torch.float32, "float64": torch.float64}


def memory_lstm_step(x, h_prev, memory_prev, p, trace=None):
    """One step of SPEC §4: ``x [B, D]``, ``h_prev [B, H]``, ``memory_prev [B, M, H]`` -> ``h, c, memory``.

    ``trace``: a dict that receives the gates ``i, f, o``, ``c_tilde``, ``e`` and ``m`` (the intermediates of docs/golden-format.md)."""
    i = torch.sigmoid(x @ p["W_i"] + h_prev @ p["U_i"] + p["b_i"])
    f = torch.sigmoid(x @ p["W_f"] + h_prev @ p["U_f"] + p["b_f"])
    o = torch.sigmoid(x @ p["W_o"] + h_prev @ p["U_o"] + p["b_o"])
    c_tilde = torch.tanh(x @ p["W_c"] + h_prev @ p["U_c"] + p["b_c"])
    e = torch.softmax(x @ p["W_e"] + h_prev @ p["U_e"] + p["b_e"], dim=-1)  # [B, M] over the slots
    m = torch.einsum("bk,bkh->bh", e, memory_prev)  # Σ_k e_k memory_prev[:, k]
    c = f * (m + x @ p["W_m"]) + i * c_tilde
    h = o * torch.tanh(c)
    memory = torch.cat([c[:, None, :], memory_prev[:, :-1, :]], dim=1)  # newest first
    if trace is not None:
        trace.update({"i": i, "f": f, "o": o, "c_tilde": c_tilde, "e": e, "m": m})
    return h, c, memory


def memory_lstm_unroll(x, h0, memory0, p, trace=None):
    """``T`` steps over ``x [B, T, D]``: ``h [B, T, H]``, ``c [B, T, H]`` and the final ``memory [B, M, H]``;
    ``trace`` receives each step's intermediates stacked as ``[B, T, ...]``."""
    h, memory = h0, memory0
    hs, cs, steps = [], [], []
    for t in range(x.shape[1]):
        steps.append({})
        h, c, memory = memory_lstm_step(x[:, t], h, memory, p, steps[-1])
        hs.append(h)
        cs.append(c)
    if trace is not None:
        trace.update({k: torch.stack([st[k] for st in steps], dim=1) for k in steps[0]})
    return torch.stack(hs, dim=1), torch.stack(cs, dim=1), memory


def jvp_and_hvp(outputs_of, leaves, grads, tensors, torch_dtype):
    """docs/golden-format.md's ``jvp/`` and ``hvp/`` for the given ``tangents/``: the JVP by ``torch.func.jvp``,
    the HVP by double backward (``grads`` were taken with ``create_graph=True``; the loss has no
    stopped gradient, so the Hessian is symmetric and ``(∂g)ᵀ t`` is ``∂g t``)."""
    names = [k for k in leaves if f"tangents/{k}" in tensors]
    if not names:
        return {}
    tangents = {k: torch.tensor(tensors[f"tangents/{k}"], dtype=torch_dtype) for k in names}
    fixed = {k: v.detach() for k, v in leaves.items()}
    _, jvp = torch.func.jvp(lambda p: outputs_of({**fixed, **p}), ({k: fixed[k] for k in names},), (tangents,))
    by_name = dict(zip(leaves, grads))
    live = [k for k in names if by_name[k].requires_grad]  # a gradient that is a constant has a zero HVP
    hvp = torch.autograd.grad([by_name[k] for k in live], [leaves[k] for k in names],
                              grad_outputs=[tangents[k] for k in live], allow_unused=True)
    result = {f"jvp/{k}": v.detach().numpy() for k, v in jvp.items()}
    result.update({f"hvp/{k}": (h if h is not None else torch.zeros_like(tangents[k])).detach().numpy()
                   for k, h in zip(names, hvp)})
    return result


def run(case: str, tensors: dict[str, np.ndarray], dtype: str) -> dict[str, np.ndarray]:
    """The adapter: given inputs, params, state, cotangents and tangents, return outputs, intermediates,
    grads, and the JVPs and HVPs along the tangents."""
    torch_dtype = DTYPES[dtype]
    leaves = {
        k: torch.tensor(v, dtype=torch_dtype, requires_grad=True)
        for k, v in tensors.items()
        if k.split("/")[0] in ("inputs", "params", "state")
    }

    def outputs_of(lv, trace=None):
        p = {k.split("/", 1)[1]: v for k, v in lv.items() if k.startswith("params/")}
        if case.startswith("memory_lstm/step/"):
            h, c, memory = memory_lstm_step(lv["inputs/x"], lv["state/h_prev"], lv["state/memory_prev"], p, trace)
        else:
            h, c, memory = memory_lstm_unroll(lv["inputs/x"], lv["state/h0"], lv["state/memory0"], p, trace)
        return {"h": h, "c": c, "memory": memory}

    trace = {}
    outputs = outputs_of(leaves, trace)
    # The golden grads are the vector-Jacobian product with the given cotangents.
    loss = sum((out * torch.tensor(tensors[f"cotangents/{k}"], dtype=torch_dtype)).sum() for k, out in outputs.items())
    grads = torch.autograd.grad(loss, list(leaves.values()), create_graph=True)
    result = {f"outputs/{k}": v.detach().numpy() for k, v in outputs.items()}
    result.update({f"intermediates/{k}": v.detach().numpy() for k, v in trace.items()})
    result.update({f"grads/{k}": g.detach().numpy() for k, g in zip(leaves, grads)})
    result.update(jvp_and_hvp(outputs_of, leaves, grads, tensors, torch_dtype))
    return result
