"""The Bahdanau attention decoder (SPEC §2, equations 1-8) in PyTorch, differentiated by autograd.

An independent implementation written from SPEC §2, not a call into refmem. Both
``output_state`` options (``previous``: ``s_* = s_{t-1}``; ``current``:
``s_* = s_t``), an attention mask and teacher forcing are covered::

    refmem golden verify --adapter examples.torch_attention:run --dtype float64

The adapter also returns the intermediates (docs/golden-format.md, format 2): ``s0``, and per step the
energies ``e`` (before the mask), ``context``, ``r``, ``z`` and ``p``, stacked as ``[B, T, ...]``.
"""

from __future__ import annotations

import numpy as np
import torch

#: The golden cases this adapter implements (fnmatch patterns).
CASES = ["attention/bahdanau_decoder/*"]

DTYPES = {"float32": torch.float32, "float64": torch.float64}


def bahdanau_decoder(h, p, output_state="previous", mask=None, y_prev=None, trace=None):
    """Run the decoder for ``T`` steps over annotations ``h [B, T, D]``.

    ``mask [B, T]`` (nonzero: attended) gives masked annotations weight exactly 0;
    ``y_prev [B, T, K]`` (teacher forcing) replaces the fed-back ``y_{t-1}`` of
    step ``t`` (0-based) by ``y_prev[:, t]``. Returns ``y [B, T, K]``,
    ``alpha [B, T, T]`` and ``s [B, T, H]``; ``trace``, a dict, receives the intermediates.
    """
    B, T, _ = h.shape
    K = p["W_o"].shape[0]
    s = torch.tanh(h[:, 0] @ p["W_s"])  # s_0
    y = torch.zeros(B, K, dtype=h.dtype)  # y_0
    keys = h @ p["U_a"] + p["b_a"]  # [B, T, H], once per sequence
    s0 = s
    ys, alphas, states, steps = [], [], [], []
    for t in range(T):
        y_in = y if y_prev is None else y_prev[:, t]
        e = torch.tanh((s @ p["W_a"])[:, None, :] + keys) @ p["V_a"]  # (1) [B, T]
        energies = e
        if mask is not None:
            attend = mask != 0
            e = torch.where(attend, e, torch.full_like(e, -torch.inf))
            alpha = torch.softmax(e, dim=-1)  # (2) exp(-inf) = 0 exactly
            alpha = torch.where(attend, alpha, torch.zeros_like(alpha))
        else:
            alpha = torch.softmax(e, dim=-1)  # (2)
        c = torch.einsum("bj,bjd->bd", alpha, h)  # (3)
        r = torch.sigmoid(y_in @ p["W_r"] + s @ p["U_r"] + c @ p["C_r"] + p["b_r"])  # (4)
        z = torch.sigmoid(y_in @ p["W_z"] + s @ p["U_z"] + c @ p["C_z"] + p["b_z"])  # (5)
        proposal = torch.tanh(y_in @ p["W_p"] + (r * s) @ p["U_p"] + c @ p["C_p"] + p["b_p"])  # (6)
        s_new = (1 - z) * s + z * proposal  # (7)
        s_star = s if output_state == "previous" else s_new
        y = torch.softmax(y_in @ p["W_o"] + s_star @ p["U_o"] + c @ p["C_o"] + p["b_o"], dim=-1)  # (8)
        s = s_new
        steps.append({"e": energies, "context": c, "r": r, "z": z, "p": proposal})
        ys.append(y)
        alphas.append(alpha)
        states.append(s)
    if trace is not None:
        trace["s0"] = s0
        trace.update({k: torch.stack([st[k] for st in steps], 1) for k in steps[0]})
    return torch.stack(ys, 1), torch.stack(alphas, 1), torch.stack(states, 1)


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


def run(case: str, tensors: dict[str, np.ndarray], dtype: str, config: dict | None = None) -> dict[str, np.ndarray]:
    """The adapter: given inputs, params, state, cotangents and tangents, return outputs, intermediates,
    grads, and the JVPs and HVPs along the tangents."""
    torch_dtype = DTYPES[dtype]
    config = config or {}
    mask = torch.tensor(tensors["inputs/mask"]) if "inputs/mask" in tensors else None  # not differentiated
    leaves = {
        k: torch.tensor(v, dtype=torch_dtype, requires_grad=True)
        for k, v in tensors.items()
        if k.split("/")[0] in ("inputs", "params", "state") and k != "inputs/mask"
    }
    output_state = config.get("output_state") or ("current" if "/current" in case else "previous")
    def outputs_of(lv, trace=None):
        p = {k.split("/", 1)[1]: v for k, v in lv.items() if k.startswith("params/")}
        y, alpha, s = bahdanau_decoder(lv["inputs/h"], p, output_state, mask, lv.get("inputs/y_prev"), trace)
        return {"y": y, "alpha": alpha, "s": s}

    trace = {}
    outputs = outputs_of(leaves, trace)
    loss = sum((out * torch.tensor(tensors[f"cotangents/{k}"], dtype=torch_dtype)).sum() for k, out in outputs.items())
    grads = torch.autograd.grad(loss, list(leaves.values()), create_graph=True)
    result = {f"outputs/{k}": v.detach().numpy() for k, v in outputs.items()}
    result.update({f"intermediates/{k}": v.detach().numpy() for k, v in trace.items()})
    result.update({f"grads/{k}": g.detach().numpy() for k, g in zip(leaves, grads)})
    result.update(jvp_and_hvp(outputs_of, leaves, grads, tensors, torch_dtype))
    return result
