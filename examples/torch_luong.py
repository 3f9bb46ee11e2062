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
        # a window with no source position inside (S small, p_t near the end): softmax of all -inf is NaN;
        # SPEC's weights there are 0 (found by refmem verify at S = 1)
        soft = torch.where(inside, soft, torch.zeros_like(soft))
        a = torch.where(inside, soft * torch.exp(-offset**2 / (2 * sigma**2)), torch.zeros_like(e))
    c = a @ hs
    h_tilde = torch.tanh(torch.cat([c, h], dim=-1) @ p["W_c"])
    if trace is not None:
        trace["score"] = e
        if alignment != "global":
            trace["align"] = soft
    return a, c, h_tilde, pos


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
    """The adapter: given inputs, params, cotangents and tangents, return outputs, intermediates, grads,
    and the JVPs and HVPs along the tangents."""
    torch_dtype = DTYPES[dtype]
    cfg = dict(config or {})
    if "score" not in cfg:  # derive the options from the case name, e.g. attention/luong_dot/local_m
        cfg["score"], cfg["alignment"] = case.split("/")[1][len("luong_"):], case.split("/")[2]
    leaves = {
        k: torch.tensor(v, dtype=torch_dtype, requires_grad=True)
        for k, v in tensors.items()
        if k.split("/")[0] in ("inputs", "params", "state")
    }

    def outputs_of(lv, trace=None):
        p = {k.split("/", 1)[1]: v for k, v in lv.items() if k.startswith("params/")}
        a, c, h_tilde, pos = luong(lv["inputs/h"], lv["inputs/hs"], p, cfg["score"], cfg["alignment"],
                                   int(cfg.get("window") or 2), int(cfg.get("t0") or 0), trace)
        outputs = {"a": a, "c": c, "h_tilde": h_tilde}
        if cfg["alignment"] == "local_p":
            outputs["p"] = pos
        return outputs

    trace = {}
    outputs = outputs_of(leaves, trace)
    loss = sum((out * torch.tensor(tensors[f"cotangents/{k}"], dtype=torch_dtype)).sum() for k, out in outputs.items())
    grads = torch.autograd.grad(loss, list(leaves.values()), create_graph=True)
    result = {f"outputs/{k}": v.detach().numpy() for k, v in outputs.items()}
    result.update({f"intermediates/{k}": v.detach().numpy() for k, v in trace.items()})
    result.update({f"grads/{k}": g.detach().numpy() for k, g in zip(leaves, grads)})
    result.update(jvp_and_hvp(outputs_of, leaves, grads, tensors, torch_dtype))
    return result
