"""torch eager autograd on the CPU: the golden engineer's adapters in ``examples/`` plus the DNC core loop.

``examples/torch_memory_lstm.py`` and ``examples/torch_attention.py`` are whole
unrolls written from SPEC §4 and §2; ``examples/torch_dnc.py`` is one access
step of SPEC §5, around which ``dnc_core`` runs the Sonnet LSTM controller
and the output map of SPEC §5 "Core" (one layer, no clipping, ``deepmind``).
"""

from __future__ import annotations

from typing import Any, Callable

from .common import Skip, example
from .configs import Bench
from .problems import make


def _torch():
    try:
        import torch
    except ImportError as exc:
        raise Skip("torch is not installed") from exc
    return torch


def dnc_core(x, p, sizes: dict, convention: str = "deepmind"):
    """The DNC core over ``x [B, T, D]``: ``y [B, T, Y]`` (SPEC §5 Core, one LSTM layer, no clip)."""
    torch = _torch()
    access_step = example("torch_dnc").access_step
    B, T, _ = x.shape
    H, N, W, R, nw = sizes["H"], sizes["N"], sizes["W"], sizes["R"], sizes["nw"]
    z = lambda *shape: torch.zeros(*shape, dtype=x.dtype)  # noqa: E731
    state = {"memory": z(B, N, W), "read_weights": z(B, R, N), "write_weights": z(B, nw, N),
             "link": z(B, nw, N, N), "precedence": z(B, nw, N), "usage": z(B, N)}
    h, c, reads = z(B, H), z(B, H), z(B, R * W)
    ys = []
    for t in range(T):
        gates = torch.cat([x[:, t], reads, h], dim=1) @ p["W_lstm1"] + p["b_lstm1"]
        i, j, f, o = torch.split(gates, H, dim=1)
        c = torch.sigmoid(f + 1.0) * c + torch.sigmoid(i) * torch.tanh(j)
        h = torch.tanh(c) * torch.sigmoid(o)
        read_vectors, state = access_step(h, p["W_xi"], p["b_xi"], state, nw, R, W, convention)
        reads = read_vectors.reshape(B, R * W)
        ys.append(torch.cat([h, reads], dim=1) @ p["W_y"] + p["b_y"])
    return torch.stack(ys, dim=1)


def forward(model: str, x, p, sizes: dict):
    """The model's output the loss reads (``h``, ``y`` or the DNC's ``y``)."""
    if model == "memory_lstm":
        torch = _torch()
        B, H, M = x.shape[0], sizes["H"], sizes["M"]
        h0 = torch.zeros(B, H, dtype=x.dtype)
        m0 = torch.zeros(B, M, H, dtype=x.dtype)
        return example("torch_memory_lstm").memory_lstm_unroll(x, h0, m0, p)[0]
    if model == "attention":
        return example("torch_attention").bahdanau_decoder(x, p, "previous")[0]
    if model == "dnc":
        return dnc_core(x, p, sizes)
    raise KeyError(model)


def leaves(bench: Bench, dtype: str) -> tuple[Any, dict, Any]:
    """``(x, params, cot)`` as torch tensors of ``dtype``; ``x`` and params require grad."""
    torch = _torch()
    dt = getattr(torch, dtype)
    prob = make(bench.model, bench.sizes)
    x = torch.tensor(prob["x"], dtype=dt, requires_grad=True)
    p = {k: torch.tensor(v, dtype=dt, requires_grad=True) for k, v in prob["params"].items()}
    return x, p, torch.tensor(prob["cot"], dtype=dt)


def build(bench: Bench, dtype: str) -> Callable[[], Any]:
    """One forward and one backward (``torch.autograd.grad`` of ``Σ out ∘ cot`` w.r.t. ``x`` and every param)."""
    torch = _torch()
    x, p, cot = leaves(bench, dtype)
    forward(bench.model, x, p, bench.sizes)  # raises Skip early when an example is missing
    inputs = [x, *p.values()]

    def step():
        out = forward(bench.model, x, p, bench.sizes)
        return torch.autograd.grad((out * cot).sum(), inputs)

    return step
