"""Adapters that misbehave in every way an isolated adapter must survive (tests/test_campaign.py).

Each is refmem itself under the adapter protocol (so a comparison passes) with one misbehaviour:
it exits, crashes, hangs, prints, or modifies its inputs after computing (which must not make a
correct adapter fail). ``ONLY`` (an environment variable) limits the misbehaviour to cases whose
batch size is 1, so that a campaign sees it at some examples only.
"""

from __future__ import annotations

import os
import signal
import sys
import time

CASES = ["primitives/*", "memory_lstm/*"]


def _right(case, tensors, dtype):
    from refmem.differential import _refmem_run

    return _refmem_run(case, tensors, dtype)


def _only(tensors) -> bool:
    """Misbehave here? Everywhere, or with ``MISBEHAVE_AT_B1=1`` only at a batch of one."""
    if os.environ.get("MISBEHAVE_AT_B1") != "1":
        return True
    x = next(v for k, v in tensors.items() if k.startswith("inputs/"))
    return x.shape[0] == 1


def right(case, tensors, dtype):
    return _right(case, tensors, dtype)


def exit0(case, tensors, dtype):
    if _only(tensors):
        sys.exit(0)
    return _right(case, tensors, dtype)


def exit3(case, tensors, dtype):
    if _only(tensors):
        os._exit(3)
    return _right(case, tensors, dtype)


def raises(case, tensors, dtype):
    if _only(tensors):
        raise ValueError("planted")
    return _right(case, tensors, dtype)


def aborts(case, tensors, dtype):
    if _only(tensors):
        os.abort()
    return _right(case, tensors, dtype)


def segfault(case, tensors, dtype):
    if _only(tensors):
        os.kill(os.getpid(), signal.SIGSEGV)
    return _right(case, tensors, dtype)


def hangs(case, tensors, dtype):
    if _only(tensors):
        time.sleep(3600)
    return _right(case, tensors, dtype)


def prints(case, tensors, dtype):
    if _only(tensors):
        print("debug: hello from the adapter")
    return _right(case, tensors, dtype)


def mutates(case, tensors, dtype):
    """Correct, then scribbles over every input it was given (a buffer reused by the caller's framework)."""
    out = _right(case, tensors, dtype)
    for v in tensors.values():
        if hasattr(v, "dtype") and v.dtype.kind == "f":
            v[...] = 1e6
    return out


def wrong_wide(case, tensors, dtype):
    """A planted bug, not a misbehaviour: softmax rows of 3 or more entries come out 0.1 % too large."""
    out = _right(case, tensors, dtype)
    if case.startswith("primitives/softmax") and tensors["inputs/x"].shape[-1] >= 3:
        out["outputs/out"] = out["outputs/out"] * 1.001
    return out


def refuses_tangents(case, tensors, dtype):
    """Not a misbehaviour: right, but raises when it is given ``tangents/`` (``refmem verify --no-tangents``
    must give it none, in every process that runs it)."""
    given = sorted(k for k in tensors if k.startswith("tangents/"))
    if given:
        raise ValueError(f"given {given[0]}")
    return _right(case, tensors, dtype)
