"""SPEC §4, the LSTM memory cell: the model functions beyond the catalogue's generic checks.

The catalogue cases ``memory_lstm/step/default`` and ``memory_lstm/unroll/default``
are checked element by element in tests/test_catalogue.py; here: the unroll against
a loop of steps, shape validation (the seed's ``W_m`` bug), an independent
autodiff oracle (torch.autograd), the zero initial state, and the initial-state
gradients.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

from refmem import gradcheck
from refmem import memory_lstm as L
from refmem import xp as rx
from refmem.errors import DTypeError
from refmem.catalogue import get_case

B, T, D, H, M = 2, 4, 3, 5, 4  # D != M, so the seed's W_m (M, H) is detectably wrong


def _params(xp, seed=0, scale=0.5):
    """Parameters with non-zero biases, float32-representable."""
    s = rx.Sampler(xp, seed)
    return L.Params(**{name: s.normal(shape, scale=scale) for name, shape in L.param_shapes(D, H, M).items()})


def _inputs(xp, seed=1):
    s = rx.Sampler(xp, seed)
    return s.normal((B, T, D)), s.uniform((B, H), -0.9, 0.9), s.normal((B, M, H), scale=0.7)


def _np(a):
    return rx.to_numpy(a)


# ----------------------------------------------------------------------------- forward


def test_unroll_equals_a_loop_of_steps(xp):
    params = _params(xp)
    x, h0, mem0 = _inputs(xp)
    out, _ = L.unroll_forward(x, params, h0, mem0)
    h, mem = h0, mem0
    for t in range(T):
        step, _ = L.step_forward(x[:, t, :], h, mem, params)
        np.testing.assert_array_equal(_np(out.h[:, t, :]), _np(step.h))
        np.testing.assert_array_equal(_np(out.c[:, t, :]), _np(step.c))
        h, mem = step.h, step.memory
    np.testing.assert_array_equal(_np(out.memory), _np(mem))
    assert tuple(out.h.shape) == (B, T, H) and tuple(out.c.shape) == (B, T, H)
    assert tuple(out.memory.shape) == (B, M, H)


def test_memory_is_newest_first():
    xp = rx.backend("numpy")
    params = _params(xp)
    x, h0, mem0 = _inputs(xp)
    out, _ = L.unroll_forward(x, params, h0, mem0)
    mem = _np(out.memory)
    c = _np(out.c)
    for k in range(M):  # slot k holds c_{T-1-k}, then the initial slots
        want = c[:, T - 1 - k, :] if k < T else _np(mem0)[:, k - T, :]
        np.testing.assert_array_equal(mem[:, k, :], want)


def test_step_matches_the_equations_written_out():
    """Each line of SPEC §4 written independently in NumPy."""
    xp = rx.backend("numpy")
    p = {k: _np(v) for k, v in _params(xp)._asdict().items()}
    x, h0, mem0 = (_np(a) for a in _inputs(xp))
    x = x[:, 0, :]
    sig = lambda a: 1.0 / (1.0 + np.exp(-a))  # noqa: E731
    pre = lambda g: x @ p[f"W_{g}"] + h0 @ p[f"U_{g}"] + p[f"b_{g}"]  # noqa: E731
    i, f, o = sig(pre("i")), sig(pre("f")), sig(pre("o"))
    ct = np.tanh(pre("c"))
    a = pre("e")
    e = np.exp(a - a.max(-1, keepdims=True))
    e /= e.sum(-1, keepdims=True)
    m = np.einsum("bk,bkh->bh", e, mem0)
    c = f * (m + x @ p["W_m"]) + i * ct
    h = o * np.tanh(c)
    out, _ = L.step_forward(xp.asarray(x), xp.asarray(h0), xp.asarray(mem0), L.Params(**{k: xp.asarray(v) for k, v in p.items()}))
    np.testing.assert_allclose(_np(out.h), h, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(_np(out.c), c, rtol=1e-13, atol=1e-15)
    np.testing.assert_array_equal(_np(out.memory)[:, 1:], mem0[:, :-1])
    np.testing.assert_array_equal(_np(out.memory)[:, 0], _np(out.c))


def test_zero_initial_state(xp):
    params = _params(xp)
    x, _, _ = _inputs(xp)
    default, cache = L.unroll_forward(x, params)
    zeros, _ = L.unroll_forward(x, params, xp.zeros((B, H), dtype=xp.float64), xp.zeros((B, M, H), dtype=xp.float64))
    for a, b in zip(default, zeros):
        np.testing.assert_array_equal(_np(a), _np(b))
    # with h0 = 0 and memory0 = 0 the first step reads nothing from memory: c_0 = f (x W_m) + i c~
    p = {k: _np(v) for k, v in params._asdict().items()}
    x0 = _np(x)[:, 0, :]
    sig = lambda a: 1.0 / (1.0 + np.exp(-a))  # noqa: E731
    c0 = sig(x0 @ p["W_f"] + p["b_f"]) * (x0 @ p["W_m"]) + sig(x0 @ p["W_i"] + p["b_i"]) * np.tanh(x0 @ p["W_c"] + p["b_c"])
    np.testing.assert_allclose(_np(default.c)[:, 0, :], c0, rtol=1e-13, atol=1e-15)
    # ... and the zero state still receives its gradient
    grads = L.unroll_backward((xp.ones_like(default.h), None, None), cache)
    assert tuple(grads.h0.shape) == (B, H) and tuple(grads.memory0.shape) == (B, M, H)
    assert np.all(np.isfinite(_np(grads.h0))) and np.any(_np(grads.memory0) != 0)


def test_single_slot_and_single_step():
    """``M = 1`` (the memory is the last cell state) and ``T = 1`` work and check."""
    xp = rx.backend("numpy")
    case = get_case("memory_lstm/unroll/default")
    records = gradcheck.check_case(case, xp, seed=4, sizes={"M": 1, "T": 1, "B": 1}, methods=("central", "complex"))
    assert records and all(r.passed for r in records), [r for r in records if not r.passed]


def test_init_params_is_deterministic_across_backends(xp):
    a = L.init_params(xp, D, H, M, seed=3)
    b = L.init_params(rx.backend("numpy"), D, H, M, seed=3)
    for name, va, vb in zip(L.Params._fields, a, b):
        np.testing.assert_array_equal(_np(va), _np(vb), err_msg=name)
        assert tuple(va.shape) == L.param_shapes(D, H, M)[name]
    limit = np.sqrt(6.0 / (D + H))
    assert np.all(np.abs(_np(a.W_m)) <= limit) and np.all(_np(a.b_f) == 0)
    f32 = L.init_params(xp, D, H, M, seed=3, dtype=xp.float32)
    assert f32.W_i.dtype == xp.float32


def test_readme_example():
    xp = rx.backend("numpy")
    params = L.init_params(xp, D=4, H=8, M=3, seed=0)
    x = rx.Sampler(xp, seed=1).normal((2, 5, 4))
    out, cache = L.unroll_forward(x, params)
    grads = L.unroll_backward((xp.ones_like(out.h), None, None), cache)
    assert grads.params.W_m.shape == (4, 8) and grads.x.shape == (2, 5, 4)


def test_float32_runs():
    xp = rx.backend("numpy")
    params = L.Params(*(xp.astype(p, xp.float32) for p in _params(xp)))
    x = xp.astype(_inputs(xp)[0], xp.float32)
    out, cache = L.unroll_forward(x, params)
    assert out.h.dtype == xp.float32 and out.memory.dtype == xp.float32
    grads = L.unroll_backward((xp.ones_like(out.h), None, None), cache)
    assert grads.params.W_e.dtype == xp.float32 and grads.h0.dtype == xp.float32


# ----------------------------------------------------------------------------- shape validation


def test_the_seed_W_m_bug_is_refused(xp):
    """The seed's ``W_m`` of shape ``(M, H)`` (instead of ``(D, H)``) is named with both shapes."""
    params = _params(xp)._replace(W_m=rx.Sampler(xp, 9).normal((M, H)))
    x, h0, mem0 = _inputs(xp)
    expected = re.escape(f"W_m: expected shape (D, H) = ({D}, {H}), got ({M}, {H})")
    with pytest.raises(rx.ShapeError, match=expected):
        L.step_forward(x[:, 0, :], h0, mem0, params)
    with pytest.raises(rx.ShapeError, match=expected):
        L.unroll_forward(x, params, h0, mem0)
    with pytest.raises(rx.ShapeError, match=expected):
        L.unroll_forward(x, params)


@pytest.mark.parametrize("name", L.Params._fields)
def test_every_parameter_shape_is_checked(name):
    xp = rx.backend("numpy")
    params = _params(xp)
    good = L.param_shapes(D, H, M)[name]
    bad = good[:-1] + (good[-1] + 1,)
    params = params._replace(**{name: xp.zeros(bad, dtype=xp.float64)})
    x, h0, mem0 = _inputs(xp)
    letters = L.PARAM_SHAPES[name]
    pattern = re.escape(f"{name}: expected shape ({', '.join(letters)}{',' if len(letters) == 1 else ''}) = ")
    pattern += ".*" + re.escape(f"got {bad}")
    with pytest.raises(rx.ShapeError, match=pattern):
        L.step_forward(x[:, 0, :], h0, mem0, params)
    with pytest.raises(rx.ShapeError, match=pattern):
        L.unroll_forward(x, params, h0, mem0)


def test_state_and_input_mismatches_are_refused():
    xp = rx.backend("numpy")
    params = _params(xp)
    x, h0, mem0 = _inputs(xp)
    z = lambda *s: xp.zeros(s, dtype=xp.float64)  # noqa: E731
    cases = [
        # (call, expected message fragment)
        (lambda: L.step_forward(x[:, 0, :], z(B + 1, H), mem0, params), f"h_prev: expected shape (B, H) = ({B}, {H}), got ({B + 1}, {H})"),
        (lambda: L.step_forward(x[:, 0, :], h0, z(B, M, H + 1), params), f"memory_prev: expected shape (B, M, H) = ({B}, {M}, {H}), got ({B}, {M}, {H + 1})"),
        (lambda: L.step_forward(x[:, 0, :], h0, z(B + 1, M, H), params), "memory_prev: expected shape (B, M, H)"),
        (lambda: L.step_forward(x[:, 0, :], h0, z(B, 0, H), params), f"memory_prev: expected shape (B, M, H) = ({B}, {M}, {H}), got ({B}, 0, {H})"),
        (lambda: L.step_forward(x, h0, mem0, params), f"x: expected shape (B, D) = (?, {D}), got ({B}, {T}, {D})"),
        (lambda: L.step_forward(z(B, D + 1), h0, mem0, params), f"x: expected shape (B, D) = (?, {D}), got ({B}, {D + 1})"),
        (lambda: L.step_forward(x[:, 0, :], z(B, H + 1), z(B, M, H + 1), params), f"h_prev: expected shape (B, H) = ({B}, {H}), got ({B}, {H + 1})"),
        (lambda: L.step_forward(x[:, 0, :], h0, z(B, M + 1, H), params), f"memory_prev: expected shape (B, M, H) = ({B}, {M}, {H}), got ({B}, {M + 1}, {H})"),
        (lambda: L.unroll_forward(x[:, 0, :], params), f"x: expected shape (B, T, D) = (?, ?, {D}), got ({B}, {D})"),
        (lambda: L.unroll_forward(z(B, 0, D), params), "x: size T = 0, expected at least 1"),
        (lambda: L.unroll_forward(x, params, z(B, H + 1)), "h0: expected shape (B, H)"),
        (lambda: L.unroll_forward(x, params, h0, z(B, M, H - 1)), "memory0: expected shape (B, M, H)"),
        (lambda: L.unroll_forward(x, params, z(B - 1, H)), "h0: expected shape (B, H)"),
        (lambda: L.unroll_forward(x, tuple(params)), "params: expected a Params, got tuple"),
        (lambda: L.unroll_forward(x, params, xp.astype(h0, xp.float32)), "h0: expected the precision of params.W_i (float64), got float32"),
        (lambda: L.unroll_forward(x, params._replace(U_e=xp.astype(params.U_e, xp.float32))), "params.U_e: expected the precision of params.W_i (float64), got float32"),
        (lambda: L.step_forward(x[:, 0, :], None, mem0, params), "h_prev: expected an array, got None"),
    ]
    for call, fragment in cases:
        kind = DTypeError if "precision" in fragment or "expected an array" in fragment or "a Params" in fragment else rx.ShapeError
        with pytest.raises(kind, match=re.escape(fragment)):
            call()


def test_backward_cotangent_shapes_are_checked():
    xp = rx.backend("numpy")
    params = _params(xp)
    x, h0, mem0 = _inputs(xp)
    out, cache = L.unroll_forward(x, params, h0, mem0)
    with pytest.raises(rx.ShapeError, match=re.escape(f"d_out.h: expected shape (B, T, H) = ({B}, {T}, {H}), got ({B}, {T - 1}, {H})")):
        L.unroll_backward((out.h[:, 1:, :], None, None), cache)
    with pytest.raises(rx.ShapeError, match=re.escape("d_out.memory: expected shape (B, M, H)")):
        L.unroll_backward(L.UnrollOutputs(out.h, out.memory[:, 1:, :], None), cache)
    with pytest.raises(rx.ShapeError, match=re.escape(f"d_out.c: expected shape (B, T, H) = ({B}, {T}, {H}), got ({B}, {H})")):
        L.unroll_backward(L.UnrollOutputs(None, None, out.h[:, 0, :]), cache)
    step, scache = L.step_forward(x[:, 0, :], h0, mem0, params)
    with pytest.raises(rx.ShapeError, match=re.escape("d_out.h: expected shape (B, H)")):
        L.step_backward((step.memory, None, None), scache)
    with pytest.raises(rx.ShapeError, match=re.escape("d_out.c: expected shape (B, H)")):
        L.step_backward(L.StepOutputs(step.h, step.memory, step.memory), scache)
    with pytest.raises(DTypeError, match=re.escape("cache: expected the StepCache of the forward, got UnrollCache")):
        L.step_backward((step.h, None, None), cache)
    with pytest.raises(DTypeError, match=re.escape("d_out: expected a StepOutputs (or a tuple of its 3 fields")):
        L.step_backward((step.h, None), scache)


# ----------------------------------------------------------------------------- gradients


def test_initial_state_gradients_by_central_differences():
    """``h0`` and ``memory0`` gradients, with cotangents on ``h`` and the final ``memory`` only."""
    xp = rx.backend("numpy")
    params = _params(xp)
    x, h0, mem0 = _inputs(xp)

    def forward(a):
        out, _ = L.unroll_forward(x, params, a["h0"], a["memory0"])
        return {"h": out.h, "memory": out.memory}

    def backward(a, cot):
        _, cache = L.unroll_forward(x, params, a["h0"], a["memory0"])
        g = L.unroll_backward(L.UnrollOutputs(h=cot["h"], memory=cot["memory"], c=None), cache)
        return {"h0": g.h0, "memory0": g.memory0}

    records = gradcheck.check_function(forward, backward, {"h0": h0, "memory0": mem0}, seed=5,
                                       methods=("central", "complex"), name="memory_lstm_initial_state")
    assert len(records) == 4 and all(r.passed for r in records), records


def test_memory0_gradient_in_closed_form_for_one_step():
    """With ``T = 1``, slot ``k < M - 1`` of ``memory0`` moves to slot ``k + 1``: its gradient is that
    slot's ``d_memory`` plus the attention read ``e_k f ∘ d_c``; the oldest slot gets the read only."""
    xp = rx.backend("numpy")
    params = _params(xp)
    x, h0, mem0 = _inputs(xp)
    x1 = x[:, :1, :]  # T = 1
    out, cache = L.unroll_forward(x1, params, h0, mem0)
    d_mem = rx.Sampler(xp, 11).normal((B, M, H))
    g = L.unroll_backward(L.UnrollOutputs(h=None, memory=d_mem, c=None), cache)
    e = _np(cache.steps[0].e)  # [B, M]
    f = _np(cache.steps[0].f)
    d_c = _np(d_mem)[:, 0, :]
    want = e[:, :, None] * (d_c * f)[:, None, :]
    want[:, :-1, :] += _np(d_mem)[:, 1:, :]
    np.testing.assert_allclose(_np(g.memory0), want, rtol=1e-14, atol=1e-15)


def _torch_oracle(torch, x, h0, mem0, params, d_h, d_mem, d_c):
    """SPEC §4 written in torch, differentiated by torch.autograd."""
    leaves = {"x": x, "h0": h0, "memory0": mem0, **params}
    leaves = {k: torch.tensor(v, dtype=torch.float64, requires_grad=True) for k, v in leaves.items()}
    p = leaves
    h, mem = p["h0"], p["memory0"]
    hs, cs = [], []
    for t in range(x.shape[1]):
        xt = p["x"][:, t, :]
        gate = lambda g: xt @ p[f"W_{g}"] + h @ p[f"U_{g}"] + p[f"b_{g}"]  # noqa: E731,B023
        i, f, o = torch.sigmoid(gate("i")), torch.sigmoid(gate("f")), torch.sigmoid(gate("o"))
        ct = torch.tanh(gate("c"))
        e = torch.softmax(gate("e"), dim=-1)
        m = torch.einsum("bk,bkh->bh", e, mem)
        c = f * (m + xt @ p["W_m"]) + i * ct
        h = o * torch.tanh(c)
        mem = torch.cat([c[:, None, :], mem[:, :-1, :]], dim=1)
        hs.append(h)
        cs.append(c)
    H_, C_ = torch.stack(hs, 1), torch.stack(cs, 1)
    loss = (H_ * torch.tensor(d_h)).sum() + (mem * torch.tensor(d_mem)).sum() + (C_ * torch.tensor(d_c)).sum()
    loss.backward()
    return (H_.detach().numpy(), mem.detach().numpy(), C_.detach().numpy()), {k: v.grad.numpy() for k, v in leaves.items()}


@pytest.mark.parametrize("backend", ["numpy", "array_api_strict"])
def test_against_torch_autograd(backend):
    """Forward and every gradient agree with an independent torch.autograd oracle to 1e-10 (float64)."""
    torch = pytest.importorskip("torch")
    xp = rx.backend(backend)
    params = _params(xp)
    x, h0, mem0 = _inputs(xp)
    s = rx.Sampler(xp, 21)
    d_h, d_mem, d_c = s.normal((B, T, H)), s.normal((B, M, H)), s.normal((B, T, H))
    out, cache = L.unroll_forward(x, params, h0, mem0)
    g = L.unroll_backward(L.UnrollOutputs(h=d_h, memory=d_mem, c=d_c), cache)

    ref_out, ref_grads = _torch_oracle(
        torch, _np(x), _np(h0), _np(mem0), {k: _np(v) for k, v in params._asdict().items()},
        _np(d_h), _np(d_mem), _np(d_c),
    )
    for name, ours, ref in zip(("h", "memory", "c"), (out.h, out.memory, out.c), ref_out):
        np.testing.assert_allclose(_np(ours), ref, rtol=1e-10, atol=1e-10, err_msg=name)
    ours = {"x": g.x, "h0": g.h0, "memory0": g.memory0, **g.params._asdict()}
    assert set(ours) == set(ref_grads)
    for name in ref_grads:
        np.testing.assert_allclose(_np(ours[name]), ref_grads[name], rtol=1e-10, atol=1e-10, err_msg=name)


def test_step_against_torch_autograd():
    """One step with the full memory cotangent, against torch.autograd."""
    torch = pytest.importorskip("torch")
    xp = rx.backend("numpy")
    params = _params(xp)
    x, h0, mem0 = _inputs(xp)
    x1 = x[:, 0, :]
    s = rx.Sampler(xp, 22)
    d_h, d_mem, d_c = s.normal((B, H)), s.normal((B, M, H)), s.normal((B, H))
    out, cache = L.step_forward(x1, h0, mem0, params)
    g = L.step_backward(L.StepOutputs(h=d_h, c=d_c, memory=d_mem), cache)
    ref_out, ref = _torch_oracle(
        torch, _np(x1)[:, None, :], _np(h0), _np(mem0), {k: _np(v) for k, v in params._asdict().items()},
        _np(d_h)[:, None, :], _np(d_mem), _np(d_c)[:, None, :],
    )
    np.testing.assert_allclose(_np(out.h), ref_out[0][:, 0], rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(_np(out.memory), ref_out[1], rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(_np(g.x), ref["x"][:, 0], rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(_np(g.h_prev), ref["h0"], rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(_np(g.memory_prev), ref["memory0"], rtol=1e-10, atol=1e-10)
    for name, v in g.params._asdict().items():
        np.testing.assert_allclose(_np(v), ref[name], rtol=1e-10, atol=1e-10, err_msg=name)


def test_unroll_gradient_is_the_sum_of_step_gradients():
    """BPTT by hand: step backwards in time, carrying ``h`` and ``memory`` gradients."""
    xp = rx.backend("numpy")
    params = _params(xp)
    x, h0, mem0 = _inputs(xp)
    s = rx.Sampler(xp, 23)
    d_h, d_mem = s.normal((B, T, H)), s.normal((B, M, H))
    _, cache = L.unroll_forward(x, params, h0, mem0)
    g = L.unroll_backward(L.UnrollOutputs(h=d_h, memory=d_mem, c=None), cache)
    carry_h, carry_m, total = xp.zeros((B, H), dtype=xp.float64), d_mem, None
    for t in reversed(range(T)):
        st = L.step_backward(L.StepOutputs(h=d_h[:, t, :] + carry_h, c=None, memory=carry_m), cache.steps[t])
        np.testing.assert_array_equal(_np(g.x[:, t, :]), _np(st.x))
        carry_h, carry_m = st.h_prev, st.memory_prev
        total = st.params if total is None else L.Params(*(a + b for a, b in zip(total, st.params)))
    np.testing.assert_allclose(_np(g.h0), _np(carry_h), rtol=1e-15, atol=1e-16)
    np.testing.assert_array_equal(_np(g.memory0), _np(carry_m))
    for a, b in zip(g.params, total):
        np.testing.assert_array_equal(_np(a), _np(b))


# ----------------------------------------------------------------------------- the 0.1 call forms


def test_the_01_backward_call_forms_still_work_and_warn():
    """``step_backward(d_h, d_memory, cache, d_c=None)`` and ``unroll_backward(d_h, cache, d_memory=None,
    d_c=None)`` give the new results with a DeprecationWarning; the unroll's in the 0.1 field order."""
    xp = rx.backend("numpy")
    params = _params(xp)
    x, h0, mem0 = _inputs(xp)
    s = rx.Sampler(xp, 24)
    d_h, d_mem, d_c = s.normal((B, T, H)), s.normal((B, M, H)), s.normal((B, T, H))
    _, cache = L.unroll_forward(x, params, h0, mem0)
    new = L.unroll_backward(L.UnrollOutputs(d_h, d_mem, d_c), cache)
    with pytest.warns(DeprecationWarning, match=r"unroll_backward\(d_h, cache, d_memory=None, d_c=None\)"):
        old = L.unroll_backward(d_h, cache, d_memory=d_mem, d_c=d_c)
    assert old._fields == ("x", "h0", "memory0", "params")
    dx, dh0, dmem0, dparams = old
    for a, b in ((dx, new.x), (dh0, new.h0), (dmem0, new.memory0), (dparams.W_m, new.params.W_m)):
        np.testing.assert_array_equal(_np(a), _np(b))
    _, scache = L.step_forward(x[:, 0, :], h0, mem0, params)
    new = L.step_backward(L.StepOutputs(d_h[:, 0], d_c[:, 0], d_mem), scache)
    with pytest.warns(DeprecationWarning, match=r"step_backward\(d_h, d_memory, cache, d_c=None\)"):
        old = L.step_backward(d_h[:, 0], d_mem, scache, d_c=d_c[:, 0])
    for a, b in ((old.x, new.x), (old.h_prev, new.h_prev), (old.memory_prev, new.memory_prev)):
        np.testing.assert_array_equal(_np(a), _np(b))
    with pytest.raises(TypeError, match=r"takes \(d_out, cache\)"):
        L.step_backward(d_h[:, 0], scache)
    # the new form by keyword is not taken for the old one
    assert isinstance(L.step_backward(d_out=(d_h[:, 0], None, None), cache=scache), L.StepGrads)
