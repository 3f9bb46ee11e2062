"""Mutant adapters for the differential-testing tests: the examples with one planted bug each.

Each mutant is built from an example's source with one textual replacement (``mutate``
refuses a replacement that does not match exactly once), so the bug is a one-line diff. Every
bug shows only at some sizes or values, never at the golden tensors' default sizes and values.
Load them as adapters: ``tests/differential_mutants.py:r1_squeeze``.
"""

from __future__ import annotations

import fnmatch
import sys
import types
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def mutate(example: str, old: str, new: str, name: str) -> types.ModuleType:
    """The module ``examples/<example>.py`` with ``old`` (which must occur exactly once) replaced by ``new``."""
    src = (EXAMPLES / f"{example}.py").read_text(encoding="utf-8")
    if src.count(old) != 1:
        raise ValueError(f"mutant {name}: {old!r} occurs {src.count(old)} times in {example}.py, expected once")
    module = types.ModuleType(f"refmem_mutant_{name}")
    module.__file__ = str(EXAMPLES / f"{example}.py")
    sys.modules[module.__name__] = module
    exec(compile(src.replace(old, new), f"<mutant {name} of {example}.py>", "exec"), module.__dict__)
    return module


#: name -> (example, cases, old line, new line, what the bug is, when it shows).
MUTANTS = {
    "r1_squeeze": (
        "torch_dnc", ["dnc/access_step/*"],
        "read_keys = parts[8].reshape(B, R, W)",
        "read_keys = parts[8].reshape(B, R, W).squeeze(1)",
        "read keys squeezed on the head axis", "R = 1"),
    "b1_squeeze": (
        "torch_dnc", ["dnc/access_step/*"],
        "    nm = torch.sqrt((memory * memory).sum(-1) + EPS_COS)",
        "    memory = memory.squeeze(0)\n    nm = torch.sqrt((memory * memory).sum(-1) + EPS_COS)",
        "memory squeezed on the batch axis in the cosine", "B = 1"),
    "padded_row": (
        "torch_attention", ["attention/bahdanau_decoder/*"],
        "            alpha = torch.where(attend, alpha, torch.zeros_like(alpha))\n",
        "",
        "softmax over -inf energies without re-masking (NaN for an all-padded row)", "a fully padded row"),
    "nw1_fast_path": (
        "torch_dnc", ["dnc/access_step/*"],
        "    alloc = torch.stack(allocs, dim=1)\n",
        "    alloc = torch.stack(allocs, dim=1)\n"
        "    if nw == 1:  # one write head: fast path, gates folded in (twice: ww applies them again)\n"
        "        alloc = allocation(usage)[:, None] * gates[:, :, None]\n",
        "single-write-head fast path applies the gates twice", "nw = 1"),
    "t1_memory": (
        "torch_memory_lstm", ["memory_lstm/unroll/*"],
        "return torch.stack(hs, dim=1), torch.stack(cs, dim=1), memory",
        "return torch.stack(hs, dim=1), torch.stack(cs, dim=1), (memory if x.shape[1] > 1 else memory0)",
        "a length-1 sequence returns the initial memory (off by one step)", "T = 1"),
    "f32_overflow": (
        "torch_dnc", ["dnc/access_step/*"],
        "    return torch.softmax(strength[..., None] * cosine(keys, memory), dim=-1)",
        "    z = torch.exp(strength[..., None] * cosine(keys, memory))  # no max subtracted\n"
        "    return z / z.sum(-1, keepdim=True)",
        "content softmax without the max subtracted (exp overflows in float32)", "float32, strengths > 88"),
    "y0_hidden": (
        "torch_attention", ["attention/bahdanau_decoder/*"],
        "y = torch.zeros(B, K, dtype=h.dtype)",
        "y = torch.zeros(B, p['W_s'].shape[1], dtype=h.dtype)",
        "y_0 allocated with the hidden size H instead of the output size K", "H != K (the goldens have H = K = 3)"),
    "global_max": (
        "torch_attention", ["attention/bahdanau_decoder/*"],
        "            alpha = torch.softmax(e, dim=-1)  # (2)\n",
        "            z = torch.exp(e - e.max())  # shifted by the maximum over the whole batch\n"
        "            alpha = z / z.sum(-1, keepdim=True)\n",
        "softmax as exp(e - max e) / sum with the batch-wide maximum, not detached (its gradient cancels only up to rounding)",
        "float32, large energies, B >= 2"),
}


def _adapter(name: str):
    """The mutant's ``run``, declaring the cases of ``cases`` that its example declares (the example
    implements the plain DNC access step, not the option cases ``dnc/access_step/*`` also matches)."""
    example, cases, old, new, _, _ = MUTANTS[name]
    module = mutate(example, old, new, name)
    run = module.run
    run.cases = [c for c in module.CASES if any(fnmatch.fnmatchcase(c, p) for p in cases)]
    return run


r1_squeeze = _adapter("r1_squeeze")
b1_squeeze = _adapter("b1_squeeze")
padded_row = _adapter("padded_row")
nw1_fast_path = _adapter("nw1_fast_path")
t1_memory = _adapter("t1_memory")
f32_overflow = _adapter("f32_overflow")
y0_hidden = _adapter("y0_hidden")
global_max = _adapter("global_max")
