"""Golden adapter for d2l's ``AdditiveAttention`` (PyPI ``d2l``, module ``d2l.torch``), run unpatched.

``d2l/torch.py`` imports ``torchvision`` at its top (lines 6 and 11) for its image datasets; PyPI's
torchvision wheels do not import beside the installed CPU build of torch, so ``d2l`` is installed
with ``pip install --no-deps`` and this adapter puts an empty stand-in module ``torchvision`` (with
an empty ``transforms``) into ``sys.modules`` before importing ``d2l.torch``. It also imports
``IPython.display`` and ``matplotlib_inline.backend_inline`` (lines 35 and 37) for its notebook
plots; where those are not installed (a plain environment, CI's) the adapter puts empty stand-ins
there too.
Nothing of the attention code reads either; the module file runs as installed.

* ``attention/additive/plain`` and ``attention/additive/masked``: ``AdditiveAttention(A, dropout=0)``
  in eval mode (``W_q.weight = W_qᵀ``, ``W_k.weight = W_kᵀ``, ``w_v.weight = w`` as a row, through
  ``torch.func.functional_call``); the mask as ``valid_lens`` (prefix masks). The weights are the
  module's ``attention_weights`` (set by its ``forward``, torch.py line 1133), the context its output.
"""

from __future__ import annotations

import importlib.util
import sys
import types

import numpy as np
import torch

if "torchvision" not in sys.modules:  # a stand-in: d2l.torch imports it, the attention code never uses it
    _tv = types.ModuleType("torchvision")
    _tv.transforms = types.ModuleType("torchvision.transforms")
    sys.modules["torchvision"] = _tv
    sys.modules["torchvision.transforms"] = _tv.transforms

# stand-ins where the notebook helpers are not installed: d2l.torch imports IPython.display and
# matplotlib_inline.backend_inline for its notebook plots, which the attention code never calls
for _name, _sub in (("IPython", "display"), ("matplotlib_inline", "backend_inline")):
    if importlib.util.find_spec(_name) is None:
        _mod = types.ModuleType(_name)
        setattr(_mod, _sub, types.ModuleType(f"{_name}.{_sub}"))
        sys.modules[_name] = _mod
        sys.modules[f"{_name}.{_sub}"] = getattr(_mod, _sub)

from d2l import torch as d2l  # noqa: E402

#: The golden cases this adapter implements.
CASES = ["attention/additive/plain", "attention/additive/masked"]

LAYERS = {
    "attention/additive/plain": "d2l.AdditiveAttention(num_hiddens, dropout=0), eval mode",
    "attention/additive/masked": "d2l.AdditiveAttention(num_hiddens, dropout=0), valid_lens from the mask",
}

NOT_COVERED = {
    "d2l attention decoder": "d2l 1.0.3 ships only the abstract d2l.AttentionDecoder (d2l/torch.py lines 1138-1147, "
                             "attention_weights raises NotImplementedError); the Bahdanau decoder "
                             "Seq2SeqAttentionDecoder of the book's section 11.4 is not in the package",
    "attention/rnnsearch*": "no RNNsearch in the package: its Seq2SeqEncoder is a unidirectional multi-layer "
                            "nn.GRU (d2l/torch.py lines 995-1010), not the bidirectional encoder of SPEC §7",
}

DTYPES = {"float32": torch.float32, "float64": torch.float64}


def run(case: str, tensors: dict[str, np.ndarray], dtype: str, config: dict | None = None) -> dict[str, np.ndarray]:
    """Outputs by d2l's AdditiveAttention, grads by ``torch.autograd.grad`` through it."""
    td = DTYPES[dtype]
    leaves = {k: torch.tensor(v, dtype=td, requires_grad=True) for k, v in tensors.items()
              if k.split("/")[0] in ("inputs", "params") and k != "inputs/mask"}
    q, k, v = leaves["inputs/q"], leaves["inputs/k"], leaves["inputs/v"]
    W_q, W_k, w = leaves["params/W_q"], leaves["params/W_k"], leaves["params/w"]
    layer = d2l.AdditiveAttention(W_q.shape[1], dropout=0.0)
    layer.eval()
    with torch.no_grad():  # materialise the lazy layers at the golden shapes and dtype
        layer(q.detach().float(), k.detach().float(), v.detach().float(), None)
    layer.to(td)
    valid_lens = None
    if "inputs/mask" in tensors:
        mask = np.asarray(tensors["inputs/mask"]) != 0
        lengths = mask.sum(-1)
        if not np.array_equal(mask, np.arange(mask.shape[-1])[None, :] < lengths[:, None]):
            raise ValueError("d2l's masked_softmax takes valid_lens: only prefix masks can be given")
        valid_lens = torch.tensor(lengths, dtype=td)
    params = {"W_q.weight": W_q.T, "W_k.weight": W_k.T, "w_v.weight": w[None, :]}
    context = torch.func.functional_call(layer, params, (q, k, v, valid_lens))
    outputs = {"weights": layer.attention_weights, "context": context}
    loss = sum((o * torch.tensor(tensors[f"cotangents/{n}"], dtype=td)).sum() for n, o in outputs.items())
    grads = torch.autograd.grad(loss, list(leaves.values()))
    result = {f"outputs/{n}": o.detach().numpy() for n, o in outputs.items()}
    result.update({f"grads/{n}": g.numpy() for n, g in zip(leaves, grads)})
    return result


#: Where d2l (whose section 11.4 is titled "The Bahdanau Attention Mechanism") stands against SPEC §7.
RNNSEARCH = {
    "alignment score": "matches eq. 1 without biases: `w_v · tanh(W_q q + W_k k)` (d2l/torch.py lines 1117-1132), "
                       "as the paper's text (which omits biases); refmem: attention/additive/*",
    "masked softmax": "padding gets -1e6 before the softmax (lines 1067-1090), weight exactly 0 when a row has a "
                      "real key; an all-padding row gets uniform weights, not zeros",
    "encoder": "not bidirectional: Seq2SeqEncoder is a multi-layer nn.GRU (lines 995-1010)",
    "decoder, s_0, deep output, maxout": "not in the package (only the abstract AttentionDecoder, lines 1138-1147); "
                                         "the book's decoder feeds [c ; embedding] to nn.GRU, whose reset gate acts "
                                         "after U (r ∘ (U h + b)), starts from the encoder's last state and reads "
                                         "out with one Dense layer: no tanh(W_s ←h_1), no deep output, no maxout",
}
