"""refmem.optim: RMSProp (TF1 form), Adam, global-norm clipping, on trees of arrays."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pytest

from refmem import optim
from refmem import xp as rx


class P(NamedTuple):
    W: object
    b: object


def _tree(xp, seed=0):
    rng = np.random.default_rng(seed)
    return {"lstm": P(xp.asarray(rng.normal(size=(3, 4))), xp.asarray(rng.normal(size=(4,)))),
            "out": [xp.asarray(rng.normal(size=(2,)))]}


def _np(tree):
    return [rx.to_numpy(a) for a in optim.tree_leaves(tree)]


def test_tree_map_keeps_structure(xp):
    t = _tree(xp)
    doubled = optim.tree_map(lambda a: 2 * a, t)
    assert isinstance(doubled["lstm"], P) and isinstance(doubled["out"], list)
    for a, b in zip(_np(t), _np(doubled)):
        np.testing.assert_array_equal(2 * a, b)


def test_clip_by_global_norm_matches_tf_formula(xp):
    g = _tree(xp, 1)
    leaves = _np(g)
    norm = np.sqrt(sum(np.sum(a * a) for a in leaves))
    clipped, got_norm = optim.clip_by_global_norm(g, 0.5 * norm)
    assert float(rx.to_numpy(got_norm)) == pytest.approx(norm, rel=1e-14)
    for a, c in zip(leaves, _np(clipped)):
        np.testing.assert_allclose(c, a * 0.5, rtol=1e-14)
    new_norm = np.sqrt(sum(np.sum(a * a) for a in _np(clipped)))
    assert new_norm == pytest.approx(0.5 * norm, rel=1e-13)
    # below the threshold: unchanged
    same, _ = optim.clip_by_global_norm(g, 2 * norm)
    for a, c in zip(leaves, _np(same)):
        np.testing.assert_array_equal(a, c)
    with pytest.raises(ValueError):
        optim.clip_by_global_norm(g, 0.0)


def _rmsprop_reference(p, grads, lr, decay, eps, momentum, ms0):
    """TF1 ApplyRMSProp kernel, written out for one array."""
    ms = np.full_like(p, ms0)
    mom = np.zeros_like(p)
    for g in grads:
        ms = decay * ms + (1 - decay) * g * g
        mom = momentum * mom + lr * g / np.sqrt(ms + eps)
        p = p - mom
    return p


@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_rmsprop_is_tf1(xp, momentum):
    rng = np.random.default_rng(3)
    p0 = rng.normal(size=(3, 4))
    grads = [rng.normal(size=(3, 4)) for _ in range(5)]
    opt = optim.RMSProp(lr=1e-2, momentum=momentum, epsilon=1e-10)
    params = {"W": xp.asarray(p0)}
    state = opt.init(params)
    np.testing.assert_array_equal(rx.to_numpy(state.ms["W"]), np.ones((3, 4)))  # TF1 starts ms at ones
    for g in grads:
        params, state = opt.update(params, {"W": xp.asarray(g)}, state)
    assert state.step == 5
    want = _rmsprop_reference(p0, grads, 1e-2, 0.9, 1e-10, momentum, 1.0)
    np.testing.assert_allclose(rx.to_numpy(params["W"]), want, rtol=1e-14, atol=1e-15)


def test_rmsprop_defaults_are_deepmind_dnc():
    opt = optim.RMSProp()
    assert (opt.lr, opt.decay, opt.momentum, opt.epsilon, opt.initial_ms, opt.epsilon_inside) == (
        1e-4, 0.9, 0.0, 1e-10, 1.0, True)


def test_rmsprop_torch_form_matches_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(4)
    p0 = rng.normal(size=(5,))
    grads = [rng.normal(size=(5,)) for _ in range(4)]
    tp = torch.tensor(p0, requires_grad=True)
    topt = torch.optim.RMSprop([tp], lr=1e-2, alpha=0.9, eps=1e-8)
    for g in grads:
        topt.zero_grad()
        tp.grad = torch.tensor(g)
        topt.step()
    xp = rx.backend("numpy")
    opt = optim.RMSProp(lr=1e-2, decay=0.9, epsilon=1e-8, initial_ms=0.0, epsilon_inside=False)
    params = [xp.asarray(p0)]
    state = opt.init(params)
    for g in grads:
        params, state = opt.update(params, [xp.asarray(g)], state)
    np.testing.assert_allclose(rx.to_numpy(params[0]), tp.detach().numpy(), rtol=1e-12)


def test_adam_matches_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(5)
    p0 = rng.normal(size=(2, 3))
    grads = [rng.normal(size=(2, 3)) for _ in range(6)]
    tp = torch.tensor(p0, requires_grad=True)
    topt = torch.optim.Adam([tp], lr=1e-2)
    for g in grads:
        tp.grad = torch.tensor(g)
        topt.step()
    xp = rx.backend("numpy")
    opt = optim.Adam(lr=1e-2)
    params = P(xp.asarray(p0), None)
    state = opt.init(params)
    for g in grads:
        params, state = opt.update(params, P(xp.asarray(g), None), state)
    assert params.b is None
    np.testing.assert_allclose(rx.to_numpy(params.W), tp.detach().numpy(), rtol=1e-12)


def test_adam_epsilon_hat_is_tf1(xp):
    rng = np.random.default_rng(6)
    p = rng.normal(size=(4,))
    grads = [rng.normal(size=(4,)) for _ in range(3)]
    opt = optim.Adam(lr=1e-2, epsilon=1e-3, epsilon_hat=True)
    params = [xp.asarray(p)]
    state = opt.init(params)
    m = np.zeros(4)
    v = np.zeros(4)
    for t, g in enumerate(grads, start=1):
        params, state = opt.update(params, [xp.asarray(g)], state)
        m = 0.9 * m + 0.1 * g
        v = 0.999 * v + 0.001 * g * g
        p = p - 1e-2 * np.sqrt(1 - 0.999**t) / (1 - 0.9**t) * m / (np.sqrt(v) + 1e-3)
    np.testing.assert_allclose(rx.to_numpy(params[0]), p, rtol=1e-13)


def test_sgd(xp):
    opt = optim.SGD(lr=0.5)
    params, state = opt.update({"a": xp.asarray([1.0, 2.0])}, {"a": xp.asarray([2.0, -2.0])}, opt.init(None))
    np.testing.assert_array_equal(rx.to_numpy(params["a"]), [0.0, 3.0])
    assert state == 1
