"""Performance machinery: batched gradient checks and the ``refmem bench`` smoke path.

No timing is asserted here; the figures come from ``refmem bench``.
"""

from __future__ import annotations

import numpy as np
import pytest

from refmem import catalogue, gradcheck
from refmem import xp as rx
from refmem.catalogue import Case, Forward

ALL = catalogue.cases()
IDS = [c.name for c in ALL]


# ----------------------------------------------------------------------------- batched finite differences


@pytest.mark.parametrize("case", ALL, ids=IDS)
def test_batched_equals_loop(case):
    """Every input and state tensor: the stacked evaluation gives the loop's numbers to rounding."""
    xp = rx.backend("numpy")
    ev = gradcheck.Evaluation(case, xp, case.draw(xp, 0), 0)
    assert ev.batch_rows() is not None, f"{case.name}: batched path off ({ev.batch_note})"
    keys = [k for k in ev.keys if not k.startswith("params/")]
    for key in keys:
        pairs = [(gradcheck.central_gradient(ev, key), gradcheck.central_gradient(ev, key, batched=False))]
        if case.complex_step:
            pairs.append((gradcheck.complex_gradient(ev, key), gradcheck.complex_gradient(ev, key, batched=False)))
        for fast, slow in pairs:
            scale = max(float(np.max(np.abs(slow))), 1e-300)
            assert np.max(np.abs(fast - slow)) <= 1e-12 * scale, key


def _user_case(fn, shape=(3, 4)):
    """A case ``y = fn(x)`` with ``x`` of ``shape`` and the backward of its Jacobian-free form."""
    x0 = np.random.default_rng(5).normal(size=shape)

    def fwd(a, frozen=None):
        return Forward({"y": fn(a["inputs/x"])})

    def bwd(a, cot):  # the exact VJP by reverse differences is not needed: tests compare engines only
        raise NotImplementedError

    return Case("user/f/default", "SPEC §6", "f", lambda xp_, s, z: {"inputs/x": xp_.asarray(x0)}, fwd, bwd)


@pytest.mark.parametrize("fn, separable", [
    (lambda x: np.tanh(x) * x, True),
    (lambda x: x - np.mean(x, axis=0, keepdims=True), False),  # rows mix
    (lambda x: x * x[0:1], False),  # every row reads row 0
    (lambda x: x * x[-1:], False),  # every row reads the last row
    (lambda x: x / x.shape[0], False),  # depends on the batch size
])
def test_probe_finds_rows_that_mix(fn, separable):
    """The batched path is used only for batch-separable forwards, and gives the loop's numbers."""
    case = _user_case(fn)
    xp = rx.backend("numpy")
    ev = gradcheck.Evaluation(case, xp, case.draw(xp, 0), 0)
    assert (ev.batch_rows() is not None) == separable, ev.batch_note
    fast = gradcheck.central_gradient(ev, "inputs/x")
    slow = gradcheck.central_gradient(ev, "inputs/x", batched=False)
    np.testing.assert_allclose(fast, slow, rtol=1e-12, atol=1e-15)
    fast = gradcheck.complex_gradient(ev, "inputs/x")
    slow = gradcheck.complex_gradient(ev, "inputs/x", batched=False)
    np.testing.assert_allclose(fast, slow, rtol=1e-12, atol=1e-15)


def test_batched_in_small_chunks(monkeypatch):
    """A stack budget that forces one copy per call still gives the same numbers."""
    case = catalogue.get_case("primitives/cosine/default")
    xp = rx.backend("numpy")
    ev = gradcheck.Evaluation(case, xp, case.draw(xp, 0), 0)
    whole = gradcheck.central_gradient(ev, "inputs/memory")
    monkeypatch.setattr(gradcheck.Evaluation, "STACK_BUDGET", 1)
    np.testing.assert_array_equal(gradcheck.central_gradient(ev, "inputs/memory"), whole)


def test_check_case_loop_and_batched_agree():
    case = catalogue.get_case("primitives/linear/default")
    xp = rx.backend("numpy")
    fast = gradcheck.check_case(case, xp)
    slow = gradcheck.check_case(case, xp, batched=False)
    assert [(r.tensor, r.method, r.passed) for r in fast] == [(r.tensor, r.method, r.passed) for r in slow]
    assert all(r.passed for r in fast)
