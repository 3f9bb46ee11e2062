"""SPEC §5 Core: the Sonnet LSTM controller and the DeepRNN stack (refmem.dnc.controller)."""

from __future__ import annotations

import numpy as np
import pytest

from refmem import gradcheck
from refmem import xp as rx
from refmem.dnc import controller as C


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _sonnet_lstm(x, h, c, W, b, forget_bias=1.0):
    """Plain NumPy Sonnet LSTM, written independently of the module."""
    gates = np.concatenate([x, h], axis=1) @ W + b
    i, j, f, o = np.split(gates, 4, axis=1)
    c_new = _sigmoid(f + forget_bias) * c + _sigmoid(i) * np.tanh(j)
    return np.tanh(c_new) * _sigmoid(o), c_new


def _draw(xp, cfg, B, seed, state_scale=0.5):
    s = rx.Sampler(xp, seed)
    x = s.normal((B, cfg.input_size))
    params = tuple(C.LSTMParams(s.normal((cfg.layer_input_size(l) + cfg.hidden, 4 * cfg.hidden), 0.5),
                                s.normal((4 * cfg.hidden,), 0.2)) for l in range(cfg.layers))
    state = tuple(C.LSTMState(s.uniform((B, cfg.hidden), -0.9, 0.9), s.normal((B, cfg.hidden), state_scale))
                  for _ in range(cfg.layers))
    return x, state, params


def _flat(x, state, params):
    arrays = {"x": x}
    for l, (st, p) in enumerate(zip(state, params)):
        arrays[f"h{l}"] = st.h
        arrays[f"c{l}"] = st.c
        arrays[f"W{l}"] = p.W
        arrays[f"b{l}"] = p.b
    return arrays


def _unflat(a, L):
    state = tuple(C.LSTMState(a[f"h{l}"], a[f"c{l}"]) for l in range(L))
    params = tuple(C.LSTMParams(a[f"W{l}"], a[f"b{l}"]) for l in range(L))
    return a["x"], state, params


def _check(cfg, xp, seed=0, methods=("central",), state_scale=0.5, complex_step=True):
    L = cfg.layers
    x, state, params = _draw(xp, cfg, 2, seed, state_scale)

    def fwd(a):
        (out, new), _ = C.controller_forward(*_unflat(a, L), cfg=cfg)
        res = {"out": out}
        for l, st in enumerate(new):
            res[f"h{l}"] = st.h
            res[f"c{l}"] = st.c
        return res

    def bwd(a, cot):
        _, cache = C.controller_forward(*_unflat(a, L), cfg=cfg)
        d_new = tuple(C.LSTMState(cot[f"h{l}"], cot[f"c{l}"]) for l in range(L))
        dx, d_prev, d_params = C.controller_backward((cot["out"], d_new), cache)
        return _flat(dx, d_prev, d_params)

    records = gradcheck.check_function(fwd, bwd, _flat(x, state, params), seed=seed, methods=methods,
                                       name="controller", complex_step=complex_step)
    bad = [r for r in records if not r.passed]
    assert records and not bad, [(r.tensor, r.method, r.max_abs_err, r.normwise_rel_err) for r in bad]


def test_lstm_step_matches_sonnet_equations(xp):
    cfg = C.ControllerConfig(input_size=3, hidden=4)
    x, state, params = _draw(xp, cfg, 2, 0)
    (h, new), _ = C.lstm_step_forward(x, state[0], params[0], forget_bias=1.0)
    n = {k: rx.to_numpy(v) for k, v in _flat(x, state, params).items()}
    want_h, want_c = _sonnet_lstm(n["x"], n["h0"], n["c0"], n["W0"], n["b0"])
    np.testing.assert_allclose(rx.to_numpy(h), want_h, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(rx.to_numpy(new.c), want_c, rtol=1e-13, atol=1e-15)
    np.testing.assert_array_equal(rx.to_numpy(new.h), rx.to_numpy(h))


@pytest.mark.parametrize("skip", [True, False])
def test_deep_controller_wiring(skip):
    xp = rx.backend("numpy")
    cfg = C.ControllerConfig(input_size=3, hidden=2, layers=3, skip=skip)
    x, state, params = _draw(xp, cfg, 2, 1)
    (out, new), _ = C.controller_forward(x, state, params, cfg=cfg)
    hs, inp = [], x
    for l in range(3):
        if l > 0:
            inp = np.concatenate([x, hs[-1]], axis=1) if skip else hs[-1]
        h, c = _sonnet_lstm(inp, state[l].h, state[l].c, params[l].W, params[l].b)
        hs.append(h)
        np.testing.assert_allclose(new[l].c, c, rtol=1e-13)
    want = np.concatenate(hs, axis=1) if skip else hs[-1]
    assert out.shape == (2, cfg.output_size) == want.shape
    np.testing.assert_allclose(out, want, rtol=1e-13)


@pytest.mark.parametrize("layers,skip", [(1, True), (3, True), (3, False)])
def test_controller_gradients(xp, layers, skip):
    cfg = C.ControllerConfig(input_size=3, hidden=3 if layers == 1 else 2, layers=layers, skip=skip)
    # every element by central differences on every backend; the complex step under NumPy (the
    # catalogue's core cases run it under every backend)
    methods = ("central", "complex") if rx.backend_name(xp) == "numpy" else ("central",)
    _check(cfg, xp, methods=methods)


def test_controller_gradients_with_active_clip():
    """A clip that cuts some carried c (drawn at scale 3, clip 1.5): gradient 0 outside, 1 inside."""
    xp = rx.backend("numpy")
    cfg = C.ControllerConfig(input_size=3, hidden=3, layers=2, clip_value=1.5)
    x, state, params = _draw(xp, cfg, 2, 0, state_scale=3.0)
    (_, new), cache = C.controller_forward(x, state, params, cfg=cfg)
    c = np.concatenate([rx.to_numpy(s.c) for s in new])
    raw = np.concatenate([rx.to_numpy(lc.f * lc.c_prev + lc.i * lc.j) for lc in cache.layers])
    assert np.any(np.abs(raw) > 1.5), "the sample must exercise the clip"
    assert np.all(np.abs(np.abs(raw) - 1.5) > 1e-3), "the sample must stay away from the clip's kink"
    assert np.all(np.abs(c) <= 1.5)
    _check(cfg, xp, methods=("central", "complex"), state_scale=3.0)


def test_clip_forward_backward(xp):
    x = xp.asarray([-3.0, -1.0, 0.5, 2.0, 5.0])
    (y,), cache = C.clip_forward(x, clip_value=2.0)
    np.testing.assert_array_equal(rx.to_numpy(y), [-2.0, -1.0, 0.5, 2.0, 2.0])
    np.testing.assert_array_equal(rx.to_numpy(C.clip_backward((xp.ones_like(x),), cache).x), [0, 1, 1, 1, 0])
    np.testing.assert_array_equal(rx.to_numpy(C.clip_backward((None,), cache).x), [0, 0, 0, 0, 0])
    (same,), cache = C.clip_forward(x, clip_value=0.0)
    assert cache.inside is None and same is x
    np.testing.assert_array_equal(rx.to_numpy(C.clip_backward((xp.ones_like(x),), cache).x), [1, 1, 1, 1, 1])


def test_clip_and_lstm_old_call_forms_warn_and_agree():
    xp = rx.backend("numpy")
    x = xp.asarray([-3.0, -1.0, 0.5, 2.0, 5.0])
    _, cache = C.clip_forward(x, clip_value=2.0)
    with pytest.warns(DeprecationWarning, match="clip_backward"):
        old = C.clip_backward(xp.ones_like(x), cache.inside)
    np.testing.assert_array_equal(old, C.clip_backward((xp.ones_like(x),), cache).x)
    cfg = C.ControllerConfig(input_size=3, hidden=4)
    x, state, params = _draw(xp, cfg, 2, 0)
    _, cache = C.lstm_step_forward(x, state[0], params[0])
    d_h, d_c = np.ones((2, 4)), np.full((2, 4), 0.5)
    new = C.lstm_step_backward((d_h, C.LSTMState(None, d_c)), cache)
    with pytest.warns(DeprecationWarning, match="lstm_step_backward"):
        dx, d_state, d_params = C.lstm_step_backward(d_h, d_c, cache)
    for a, b in zip((dx, *d_state, *d_params), (new.x, *new.state, *new.params)):
        np.testing.assert_array_equal(a, b)
    # the output h and the carried h are one array: their gradients add
    split = C.lstm_step_backward((0.25 * d_h, C.LSTMState(0.75 * d_h, d_c)), cache)
    np.testing.assert_allclose(split.x, new.x, rtol=1e-15)


def test_shapes_are_refused():
    xp = rx.backend("numpy")
    cfg = C.ControllerConfig(input_size=3, hidden=2, layers=2)
    x, state, params = _draw(xp, cfg, 2, 0)
    bad = (params[0], C.LSTMParams(params[1].W[:-1], params[1].b))
    with pytest.raises(rx.ShapeError, match=r"params\[1\].W: expected shape \(I_l \+ H, 4H\) = \(7, 8\), got \(6, 8\)"):
        C.controller_forward(x, state, bad, cfg=cfg)
    with pytest.raises(rx.ShapeError, match="x: expected shape"):
        C.controller_forward(x[:, :2], state, params, cfg=cfg)
    with pytest.raises(rx.ShapeError, match=r"params: expected 2 controller layers \(cfg.layers\), got 1"):
        C.controller_forward(x, state, params[:1], cfg=cfg)
    with pytest.raises(rx.ShapeError, match=r"state\[0\].h: expected shape \(B, H\) = \(2, 2\), got \(3, 2\)"):
        C.controller_forward(x, tuple(C.LSTMState(np.zeros((3, 2)), np.zeros((3, 2))) for _ in state), params,
                             cfg=cfg)
    with pytest.raises(ValueError):
        C.ControllerConfig(input_size=3, hidden=0)
    with pytest.raises(TypeError, match="ControllerConfig.skip: expected a bool"):
        C.ControllerConfig(input_size=3, hidden=2, skip="False")
    # the parameters fix the input width (as in 0.1): an input of the wrong width is named
    with pytest.raises(rx.ShapeError, match=r"^x: expected shape \(B, I\) = \(2, 3\), got \(2, 1\) "
                                            r"\(I = input_width\(IH=5, H=2\) = 3\)"):
        C.lstm_step_forward(x[:, :1], state[0], params[0])
    with pytest.raises(rx.ShapeError, match=r"params.b: expected shape \(G,\) = \(8,\), got \(4,\)"):
        C.lstm_step_forward(x, state[0], C.LSTMParams(params[0].W, params[0].b[:4]))
