"""Golden adapter for the PyPI ``dnc`` package (ixaxaar/pytorch-dnc), run unpatched.

Every function of refmem's DNC that pytorch-dnc's ``dnc.memory.Memory`` can compute on
the golden inputs is called on a ``Memory`` instance exactly as its own ``forward`` and
``write``/``read`` call it; the adapter only converts tensors and, where their
``Memory.forward`` applies an activation before calling the function (the
``F.softplus`` of the strengths, ``memory.py`` lines 219 and 223), applies that same
activation. Nothing of their arithmetic is replaced.

Covered: ``content_weights`` (``Memory.content_weightings`` with ``util.θ``),
``usage`` (``get_usage_vector``), ``allocation`` (``allocate``), ``temporal_linkage``
(``get_link_matrix`` and ``update_precedence``), ``directional_weights``
(``directional_weightings``) and ``read_weights`` (``content_weightings`` then
``read_weightings``), each in both conventions.

Not computable by design (see ``NOT_COVERED``): every golden DNC case has two write
heads and pytorch-dnc has one.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from dnc.memory import Memory

#: The golden cases this adapter implements (fnmatch patterns).
CASES = [
    "dnc/content_weights/*",
    "dnc/usage/*",
    "dnc/allocation/*",
    "dnc/temporal_linkage/*",
    "dnc/directional_weights/*",
    "dnc/read_weights/*",
]

#: refmem functions the package cannot compute on the golden inputs, and why.
NOT_COVERED = {
    "dnc/write_allocation_weights/*": "one write head only: Memory.write calls allocate() once (memory.py lines 139-142); "
                                      "the sequential allocation of SPEC §5 step 3 over nw = 2 heads has no counterpart",
    "dnc/write_weights/*": "needs the two-head allocation above; write_weighting (memory.py line 105) combines one "
                           "allocation with the content weights",
    "dnc/memory_update/*": "erase and add are inline in Memory.write (memory.py lines 153-159), which recomputes the "
                           "write weights from keys: the golden write weights cannot be given",
    "dnc/access_step/*": "one write head (interface size (w*r)+(3*w)+(5*r)+3, memory.py line 41; 3 read modes per head, "
                         "line 39) and tanh on keys and write vectors (lines 217-227): the golden step has nw = 2 and "
                         "SPEC §5's interface",
    "dnc/core_unroll/*": "dnc.DNC has its own controller (torch.nn.LSTM/GRU, separate input and output layers) and the "
                         "one-head memory above; no golden case is in its parametrisation",
}

DTYPES = {"float32": torch.float32, "float64": torch.float64}


def _memory(N: int, W: int, R: int) -> Memory:
    return Memory(input_size=1, mem_size=N, cell_size=W, read_heads=R, gpu_id=-1, independent_linears=True)


def run(case: str, tensors: dict[str, np.ndarray], dtype: str, config: dict | None = None) -> dict[str, np.ndarray]:
    """Outputs by pytorch-dnc's functions, grads by ``torch.autograd.grad`` through them."""
    td = DTYPES[dtype]
    leaves = {k: torch.tensor(v, dtype=td, requires_grad=True) for k, v in tensors.items() if k.startswith("inputs/")}
    x = {k.split("/", 1)[1]: v for k, v in leaves.items()}
    function = case.split("/")[1]
    if function == "content_weights":
        B, N, W = x["memory"].shape
        mem = _memory(N, W, x["keys"].shape[1])
        # Memory.forward: strengths = F.softplus(...) (lines 219, 223), then content_weightings (line 171)
        outputs = {"weights": mem.content_weightings(x["memory"], x["keys"], F.softplus(x["strengths"]))}
    elif function == "usage":
        B, R, N = x["prev_read_weights"].shape
        mem = _memory(N, 1, R)
        outputs = {"usage": mem.get_usage_vector(x["prev_usage"], x["free_gates"], x["prev_read_weights"],
                                                 x["prev_write_weights"])}
    elif function == "allocation":
        B, N = x["usage"].shape
        mem = _memory(N, 1, 1)
        alloc, _ = mem.allocate(x["usage"], None)  # the write_gate argument is unused (memory.py line 84)
        outputs = {"allocation": alloc[:, 0, :]}
    elif function == "temporal_linkage":
        B, nw, N = x["write_weights"].shape
        mem = _memory(N, 1, 1)
        # Memory.write: link from the previous precedence, then the precedence (lines 162-167)
        outputs = {"link": mem.get_link_matrix(x["prev_link"], x["write_weights"], x["prev_precedence"]),
                   "precedence": mem.update_precedence(x["prev_precedence"], x["write_weights"])}
    elif function == "directional_weights":
        B, R, N = x["prev_read_weights"].shape
        mem = _memory(N, 1, R)
        fwd, bwd = mem.directional_weightings(x["link"], x["prev_read_weights"])
        outputs = {"forward": fwd, "backward": bwd}
    elif function == "read_weights":
        B, N, W = x["memory"].shape
        R = x["read_keys"].shape[1]
        mem = _memory(N, W, R)
        # Memory.read (lines 194-205): content weights with the softplus strengths, then read_weightings
        content = mem.content_weightings(x["memory"], x["read_keys"], F.softplus(x["read_strengths"]))
        outputs = {"read_weights": mem.read_weightings(x["memory"], content, x["link"], x["read_modes"],
                                                       x["prev_read_weights"])}
    else:
        raise ValueError(f"case: pytorch-dnc has no counterpart of {case!r}")
    loss = sum((v * torch.tensor(tensors[f"cotangents/{k}"], dtype=td)).sum() for k, v in outputs.items())
    grads = torch.autograd.grad(loss, list(leaves.values()), allow_unused=True)
    result = {f"outputs/{k}": v.detach().numpy() for k, v in outputs.items()}
    result.update({f"grads/{k}": (g if g is not None else torch.zeros_like(leaves[k])).numpy()
                   for k, g in zip(leaves, grads)})
    return result
