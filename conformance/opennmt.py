"""Golden adapter for OpenNMT-py's ``onmt.modules.global_attention.GlobalAttention``, run unpatched.

OpenNMT-py 3.5.1 (PyPI ``OpenNMT-py``) is installed without its dependencies (``pip install --no-deps``):
its package ``__init__`` files import the whole training stack (``onmt/__init__.py`` imports
``onmt.inputters``, which needs the ``pyonmttok`` tokenizer, and more). This adapter therefore
registers ``onmt``, ``onmt.modules`` and ``onmt.utils`` as bare packages pointing at the installed
directories, without running their ``__init__.py``, and imports the three module files the layer
needs, unmodified: ``onmt/modules/global_attention.py``, ``onmt/modules/sparse_activations.py``
and ``onmt/utils/misc.py``.

The layer runs with the golden parameters through ``torch.func.functional_call`` (their
``forward``, their parameter names; ``nn.Linear`` keeps ``weight [out, in]``, the transpose of
refmem's ``W [in, out]``); gradients by ``torch.autograd.grad`` through it. The context ``c``,
which ``forward`` does not return, is read from the input of its ``linear_out`` through a
forward hook (their ``torch.cat([c, src], 2)``, global_attention.py line 197); its cotangent
flows back through their graph.

* ``attention/luong_dot/global``: ``GlobalAttention(H, attn_type="dot")``, ``linear_out.weight = W_cᵀ``;
* ``attention/luong_general/global_square``: ``attn_type="general"``, ``linear_in.weight = W_aᵀ``;
* ``attention/additive/mlp_output``: ``attn_type="mlp"`` (``linear_query`` with bias = ``W_q``, ``b``;
  ``linear_context`` = ``W_k``; ``v`` = ``w``; ``linear_out`` with bias = ``W_o``, ``b_o``), the key mask
  as ``src_len`` (prefix masks).
"""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path

import numpy as np
import torch


def _load_global_attention():
    spec = importlib.util.find_spec("onmt")  # locates the package without importing it
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("OpenNMT-py (onmt) is not installed")
    root = Path(list(spec.submodule_search_locations)[0])
    for name, sub in (("onmt", ""), ("onmt.modules", "modules"), ("onmt.utils", "utils")):
        if name not in sys.modules:
            pkg = types.ModuleType(name)
            pkg.__path__ = [str(root / sub) if sub else str(root)]
            sys.modules[name] = pkg
    from onmt.modules.global_attention import GlobalAttention

    return GlobalAttention


GlobalAttention = _load_global_attention()

#: The golden cases this adapter implements.
CASES = ["attention/luong_dot/global", "attention/luong_general/global_square", "attention/additive/mlp_output"]

LAYERS = {
    "attention/luong_dot/global": "GlobalAttention(dim, attn_type='dot')",
    "attention/luong_general/global_square": "GlobalAttention(dim, attn_type='general')",
    "attention/additive/mlp_output": "GlobalAttention(dim, attn_type='mlp'), src_len from the mask",
}

NOT_COVERED = {
    "attention/luong_general/global": "GlobalAttention's linear_in is Linear(dim, dim) and linear_out Linear(2 dim, dim) "
                                      "(global_attention.py lines 95, 103): the query and source widths must be equal; "
                                      "the square case global_square covers the score",
    "attention/luong_concat/*, attention/luong_location/*, local alignments": "not among attn_type dot, general, mlp",
    "attention/rnnsearch*": "GlobalAttention is one attention layer; its mlp score is RNNsearch's alignment with a "
                            "bias in the query projection, but OpenNMT-py's RNN decoder (input feeding, an LSTM, "
                            "the attention read after the state update) is not RNNsearch",
}

DTYPES = {"float32": torch.float32, "float64": torch.float64}


def run(case: str, tensors: dict[str, np.ndarray], dtype: str, config: dict | None = None) -> dict[str, np.ndarray]:
    """Outputs by GlobalAttention, grads by ``torch.autograd.grad`` through it."""
    td = DTYPES[dtype]
    leaves = {k: torch.tensor(v, dtype=td, requires_grad=True) for k, v in tensors.items()
              if k.split("/")[0] in ("inputs", "params") and k != "inputs/mask"}
    p = {k.split("/", 1)[1]: v for k, v in leaves.items() if k.startswith("params/")}
    if case == "attention/additive/mlp_output":
        q, src = leaves["inputs/q"], leaves["inputs/hs"]
        layer = GlobalAttention(q.shape[-1], attn_type="mlp").to(td)
        params = {"linear_query.weight": p["W_q"].T, "linear_query.bias": p["b"], "linear_context.weight": p["W_k"].T,
                  "v.weight": p["w"][None, :], "linear_out.weight": p["W_o"].T, "linear_out.bias": p["b_o"]}
        names = ("weights", "context", "h_tilde")
    else:
        q, src = leaves["inputs/h"], leaves["inputs/hs"]
        kind = "dot" if "luong_dot" in case else "general"
        layer = GlobalAttention(q.shape[-1], attn_type=kind).to(td)
        params = {"linear_out.weight": p["W_c"].T}
        if kind == "general":
            params["linear_in.weight"] = p["W_a"].T
        names = ("a", "c", "h_tilde")
    src_len = None
    if "inputs/mask" in tensors:
        mask = np.asarray(tensors["inputs/mask"]) != 0
        lengths = mask.sum(-1)
        if not np.array_equal(mask, np.arange(mask.shape[-1])[None, :] < lengths[:, None]):
            raise ValueError("GlobalAttention takes lengths (src_len): only prefix masks can be given")
        src_len = torch.tensor(lengths, dtype=torch.int64)
    seen = {}

    def keep_input(module, args, out):  # returns None: the output is left as it is
        seen["concat"] = args[0]

    hook = layer.linear_out.register_forward_hook(keep_input)
    try:
        attn_h, align = torch.func.functional_call(layer, params, (q, src), {"src_len": src_len})
    finally:
        hook.remove()
    B, T, D = q.shape
    c = seen["concat"].view(B, T, 2 * D)[..., :D]
    outputs = dict(zip(names, (align, c, attn_h)))
    loss = sum((v * torch.tensor(tensors[f"cotangents/{k}"], dtype=td)).sum() for k, v in outputs.items())
    grads = torch.autograd.grad(loss, list(leaves.values()))
    result = {f"outputs/{k}": v.detach().numpy() for k, v in outputs.items()}
    result.update({f"grads/{k}": g.numpy() for k, g in zip(leaves, grads)})
    return result


#: Where GlobalAttention(attn_type="mlp"), "Bahdanau Attention (mlp)" in its docstring, stands against SPEC §7.
RNNSEARCH = {
    "alignment score": "matches eq. 1 up to a bias: `v · tanh(W_q q + b_q + U h_j)` (linear_query has a bias, "
                       "linear_context none; global_attention.py lines 97-99, 128-138); refmem: attention/additive/mlp_output",
    "keys U_a h_j once per sequence": "no: linear_context runs on every call (line 132), once per target step "
                                      "when the decoder calls it step by step",
    "what attends": "the query is the decoder's current output (OpenNMT's RNN decoder attends after the state "
                    "update, Luong-style), not RNNsearch's s_{i-1}",
    "context into the state": "no: the context goes to an output layer `[c ; q] W + b` without tanh (line 189), "
                              "not into the gated unit",
    "encoder, s_0, deep output, maxout": "not part of the layer",
}
