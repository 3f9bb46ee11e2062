"""Luong attention (SPEC §3) in PyTorch: four scores, global and local alignments, by autograd.

An independent implementation written from SPEC §3, not a call into refmem. The
options come from the case's config (``score``, ``alignment``, ``window`` = the
half-width ``D``, ``t0`` = the decoder step of the first query for ``local_m``)::

    refmem golden verify --adapter examples.torch_luong:run --dtype float32
"""

from __future__ import annotations

import numpy as np
import torch

#: The golden cases this adapter implements (fnmatch patterns).
CASES = ["attention/luong_*"]

DTYPES = {"float32": torch.float32, "float64": torch.float64}


def scores(kind, h, hs, p):
    """``score [B, T, S]`` of queries ``h [B, T, H]`` against source states ``hs [B, S, Hs]``."""
    if kind == "dot":
        return h @ hs.transpose(1, 2)
    if kind == "general":
        return (h @ p["W_a"]) @ hs.transpose(1, 2)
    if kind == "concat":  # v_a · tanh([h_t ; hs_s] @ W_a): split W_a into its h and hs rows
        H = h.shape[-1]
        hid = (h @ p["W_a"][:H])[:, :, None, :] + (hs @ p["W_a"][H:])[:, None, :, :]
        return torch.tanh(hid) @ p["v_a"]
    if kind == "location":
        return h @ p["W_a"]
    raise ValueError(kind)


def luong(h, hs, p, score, alignment, D=2, t0=0, trace=None):
    """SPEC §3: ``(a [B, T, S], c [B, T, Hs], h_tilde [B, T, H], p_t [B, T] or None)``; ``trace``, a dict,
    receives the intermediates ``score`` and (local alignments) ``align``, the softmax over the window."""
    B, T, _ = h.shape
    S = hs.shape[1]
    e = scores(score, h, hs, p)
    if alignment == "global":
        a, pos = torch.softmax(e, dim=-1), None
    else:
        if alignment == "local_m":
            pos = (t0 + torch.arange(T, dtype=h.dtype))[None, :].expand(B, T)
        else:  # local_p
            pos = S * torch.sigmoid(torch.tanh(h @ p["W_p"]) @ p["v_p"])
        offset = torch.arange(S, dtype=h.dtype)[None, None, :] - pos[:, :, None]  # s - p_t
        inside = offset.detach().abs() <= D  # window membership: piecewise constant in p_t
        sigma = D / 2.0
        soft = torch.softmax(torch.where(inside, e, torch.full_like(e, -torch.inf)), dim=-1)
        a = torch.where(inside, soft * torch.exp(-offset**2 / (2 * sigma**2)), torch.zeros_like(e))
    c = a @ hs
    h_tilde = torch.tanh(torch.cat([c, h], dim=-1) @ p["W_c"])
    if trace is not None:
        trace["score"] = e
        if alignment != "global":
            trace["align"] = soft
    return a, c, h_tilde, pos


def run(case: str, tensors: dict[str, np.ndarray], dtype: str, config: dict | None = None) -> dict[str, np.ndarray]:
    """The adapter: given inputs, params and cotangents, return outputs and grads."""
    torch_dtype = DTYPES[dtype]
    cfg = dict(config or {})
    if "score" not in cfg:  # derive the options from the case name, e.g. attention/luong_dot/local_m
        cfg["score"], cfg["alignment"] = case.split("/")[1][len("luong_"):], case.split("/")[2]
    leaves = {
        k: torch.tensor(v, dtype=torch_dtype, requires_grad=True)
        for k, v in tensors.items()
        if k.split("/")[0] in ("inputs", "params", "state")
    }
    p = {k.split("/", 1)[1]: v for k, v in leaves.items() if k.startswith("params/")}
    h = leaves["inputs/h"]
    trace = {}
    a, c, h_tilde, pos = luong(h, leaves["inputs/hs"], p, cfg["score"], cfg["alignment"],
                               int(cfg.get("window") or 2), int(cfg.get("t0") or 0), trace)
    outputs = {"a": a, "c": c, "h_tilde": h_tilde}
    if cfg["alignment"] == "local_p":
        outputs["p"] = pos
    loss = sum((out * torch.tensor(tensors[f"cotangents/{k}"], dtype=torch_dtype)).sum() for k, out in outputs.items())
    grads = torch.autograd.grad(loss, list(leaves.values()))
    result = {f"outputs/{k}": v.detach().numpy() for k, v in outputs.items()}
    result.update({f"intermediates/{k}": v.detach().numpy() for k, v in trace.items()})
    result.update({f"grads/{k}": g.numpy() for k, g in zip(leaves, grads)})
    return result
