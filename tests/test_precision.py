"""float32 computes in float32: no array of a float32 forward or backward is promoted to float64
(a promotion would cost time and hide the precision the user asked for)."""

from __future__ import annotations

import numpy as np
import pytest

from refmem.optim import tree_leaves


def _float_dtypes(tree):
    return {leaf.dtype for leaf in tree_leaves(tree) if isinstance(leaf, np.ndarray) and leaf.dtype.kind in "fc"}


@pytest.mark.parametrize("name", ["dnc/copy", "attention/bahdanau", "memory_lstm/unroll"])
def test_float32_stays_float32(name, monkeypatch):
    from benchmarks import impl_refmem
    from benchmarks.configs import QUICK

    bench = next(b for b in QUICK if b.name == name)
    seen = []
    from refmem.attention import bahdanau
    from refmem.dnc import core
    import refmem.memory_lstm as memory_lstm

    for mod, fname in ((core, "unroll_forward"), (core, "unroll_backward"), (bahdanau, "decoder_forward"),
                       (bahdanau, "decoder_backward"), (memory_lstm, "unroll_forward"),
                       (memory_lstm, "unroll_backward")):
        original = getattr(mod, fname)

        def spy(*args, _original=original, **kwargs):
            out = _original(*args, **kwargs)
            seen.append(out)
            return out

        monkeypatch.setattr(mod, fname, spy)
    step = impl_refmem.build(bench, "float32")
    step()
    assert len(seen) == 2
    assert _float_dtypes(seen) == {np.dtype(np.float32)}
