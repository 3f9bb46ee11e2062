"""Checkpointed BPTT (``checkpoint_every=k``) of the DNC core and the Bahdanau decoder, and the
NumPy fast namespace of refmem.xp: the same values as the plain paths."""

from __future__ import annotations

import array_api_compat.numpy as compat
import numpy as np
import pytest

from refmem import xp as rx
from refmem.attention import bahdanau as BA
from refmem.dnc import core
from refmem.dnc.params import DNCConfig, init_params
from refmem.errors import DomainError, DTypeError
from refmem.optim import tree_leaves, tree_map

NP = rx.backend("numpy")


def _assert_same(ref, got):
    """Every leaf equal to ``<= 1e-15`` relative (of the leaf's largest magnitude)."""
    ref, got = tree_leaves(ref), tree_leaves(got)
    assert len(ref) == len(got) and ref
    for a, b in zip(ref, got):
        a, b = np.asarray(a), np.asarray(b)
        assert a.shape == b.shape and a.dtype == b.dtype
        scale = max(float(np.max(np.abs(a))), np.finfo(a.dtype).tiny) if a.size else 1.0
        assert float(np.max(np.abs(a - b), initial=0.0)) <= 1e-15 * scale


CONFIGS = [
    DNCConfig(D=3, Y=2, hidden=5, N=6, W=3, R=2, nw=1),
    DNCConfig(D=3, Y=2, hidden=4, N=5, W=3, R=2, nw=2, convention="paper"),
    DNCConfig(D=2, Y=3, hidden=4, layers=2, skip=False, N=4, W=2, R=1, nw=2, clip_value=0.3),
]


@pytest.mark.parametrize("cfg", CONFIGS, ids=["deepmind", "paper_nw2", "deep_clip"])
@pytest.mark.parametrize("frozen", [False, True])
def test_dnc_checkpointed_gradients_equal_the_plain_unroll(cfg, frozen):
    rng = np.random.default_rng(3)
    B, T = 3, 10
    params = init_params(NP, cfg, seed=1)
    x = rng.normal(size=(B, T, cfg.D))
    fw = rng.uniform(0, 0.9 / cfg.N, size=(B, T, cfg.nw, cfg.N)) if frozen else None
    out, cache = core.unroll_forward(x, params, cfg=cfg, frozen_write_weights=fw)
    d_final = core.zeros_like_state(out.state)._replace(read_vectors=rng.normal(size=out.state.read_vectors.shape))
    cot = core.UnrollOutputs(rng.normal(size=(B, T, cfg.Y)), rng.normal(size=(B, T, cfg.R, cfg.W)), d_final)
    ref = (out, core.unroll_backward(cot, cache))
    for k in (1, 2, 3, 4, 10, 11, 64):
        o, c = core.unroll_forward(x, params, cfg=cfg, frozen_write_weights=fw, checkpoint_every=k)
        assert c.every == k and len(c.checkpoints) == (0 if k == 1 else -(-T // k))
        assert (len(c.steps) == T) == (k == 1)
        _assert_same(ref, (o, core.unroll_backward(cot, c)))


def test_dnc_checkpointed_float32_and_initial_state():
    cfg = CONFIGS[0]
    rng = np.random.default_rng(0)
    params = tree_map(lambda a: a.astype(np.float32), init_params(NP, cfg))
    x = rng.normal(size=(2, 7, cfg.D)).astype(np.float32)
    out, cache = core.unroll_forward(x, params, cfg=cfg)
    assert out.y.dtype == np.float32
    ref = core.unroll_backward(core.UnrollOutputs(out.y, None), cache)
    o, c = core.unroll_forward(x, params, cfg=cfg, checkpoint_every=3)
    _assert_same(ref, core.unroll_backward(core.UnrollOutputs(o.y, None), c))


def test_checkpoint_every_is_validated():
    cfg = CONFIGS[0]
    params = init_params(NP, cfg)
    x = np.zeros((2, 4, cfg.D))
    with pytest.raises(DomainError, match="checkpoint_every: expected an integer >= 1, got 0"):
        core.unroll_forward(x, params, cfg=cfg, checkpoint_every=0)
    with pytest.raises(DTypeError, match="checkpoint_every: expected an integer >= 1, got 2.5"):
        core.unroll_forward(x, params, cfg=cfg, checkpoint_every=2.5)
    h = np.zeros((2, 4, 3))
    p = BA.init_params(NP, 3, 4, 2)
    with pytest.raises(DTypeError, match="checkpoint_every: expected an integer >= 1, got True"):
        BA.decoder_forward(h, p, checkpoint_every=True)
    with pytest.raises(DomainError, match="checkpoint_every"):
        BA.decoder_forward(h, p, checkpoint_every=-1)


@pytest.mark.parametrize("output_state", ["previous", "current"])
@pytest.mark.parametrize("teacher", [False, True])
def test_decoder_checkpointed_gradients_equal_the_plain_decoder(output_state, teacher):
    rng = np.random.default_rng(5)
    B, T, D, H, K = 3, 9, 4, 5, 3
    params = BA.init_params(NP, D, H, K, seed=2)
    h = rng.normal(size=(B, T, D))
    mask = np.ones((B, T))
    mask[1, 5:] = 0
    y_prev = rng.dirichlet(np.ones(K), size=(B, T)) if teacher else None
    d_y, d_alpha, d_s = rng.normal(size=(B, T, K)), rng.normal(size=(B, T, T)), rng.normal(size=(B, T, H))
    out, cache = BA.decoder_forward(h, params, y_prev, output_state=output_state, mask=mask)
    ref = (out, BA.decoder_backward((d_y, d_alpha, d_s), cache))
    for k in (1, 2, 4, 9, 20):
        o, c = BA.decoder_forward(h, params, y_prev, output_state=output_state, mask=mask, checkpoint_every=k)
        assert (len(c.steps) == T) == (k == 1)
        _assert_same(ref, (o, BA.decoder_backward((d_y, d_alpha, d_s), c)))


def test_fast_numpy_namespace_answers_like_array_api_compat():
    fast = rx.namespace(np.zeros(2))
    assert fast is not compat and rx.backend_name(fast) == "numpy"
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, 4, 5))
    xt = np.transpose(x, (2, 0, 1))  # not C-contiguous
    ints = rng.integers(0, 9, size=(3, 4)).astype(np.int32)
    for arr in (x, xt, ints, x.astype(np.float32), x + 1j * x):
        for axis in (None, 0, -1, (0, 1)):
            for keepdims in (False, True):
                for name in ("sum", "prod", "max"):
                    if name == "max" and np.iscomplexobj(arr):
                        continue
                    a = getattr(fast, name)(arr, axis=axis, keepdims=keepdims)
                    b = getattr(compat, name)(arr, axis=axis, keepdims=keepdims)
                    assert np.asarray(a).dtype == np.asarray(b).dtype
                    np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(fast.zeros_like(arr), compat.zeros_like(arr))
        assert fast.zeros_like(arr).dtype == arr.dtype
        np.testing.assert_array_equal(fast.flip(arr, axis=-1), compat.flip(arr, axis=-1))
        np.testing.assert_array_equal(fast.flip(arr, axis=0), compat.flip(arr, axis=0))
        assert fast.isdtype(arr.dtype, "complex floating") == compat.isdtype(arr.dtype, "complex floating")
        assert fast.isdtype(arr.dtype, "real floating") == compat.isdtype(arr.dtype, "real floating")
        assert fast.isdtype(arr.dtype, "integral") == compat.isdtype(arr.dtype, "integral")
    assert fast.sum(x, axis=1, dtype=np.float32).dtype == np.float32
    np.testing.assert_array_equal(fast.permute_dims(x, (1, 2, 0)), compat.permute_dims(x, (1, 2, 0)))
    np.testing.assert_array_equal(fast.reshape(xt, (5, -1)), compat.reshape(xt, (5, -1)))
    for axis in (0, 1, 2, 3, -1, -4):
        np.testing.assert_array_equal(fast.stack([x, 2 * x], axis=axis), compat.stack([x, 2 * x], axis=axis))
    with pytest.raises(ValueError):
        fast.stack([x, x[:, :2]], axis=0)
    for axis in (0, 1, -1):
        np.testing.assert_array_equal(fast.cumulative_prod(x, axis=axis), compat.cumulative_prod(x, axis=axis))
        perm = np.argsort(x, axis=axis)
        np.testing.assert_array_equal(fast.take_along_axis(x, perm, axis=axis),
                                      compat.take_along_axis(x, perm, axis=axis))
    assert fast.zeros((2, 3), dtype=np.float32).dtype == np.float32
    assert fast.zeros((2,)).dtype == np.float64
    assert fast.isdtype(np.float64, "real floating")


@pytest.mark.parametrize("backend", ["array_api_strict", "torch"])
def test_checkpointing_is_namespace_generic(backend):
    pytest.importorskip(backend)
    xp = rx.backend(backend)
    cfg = DNCConfig(D=3, Y=2, hidden=4, N=5, W=3, R=2, nw=2)
    params = init_params(xp, cfg, seed=0)
    x = rx.from_numpy(xp, np.random.default_rng(0).normal(size=(2, 7, 3)))
    runs = []
    for k in (None, 3):
        o, c = core.unroll_forward(x, params, cfg=cfg, checkpoint_every=k)
        runs.append((o, core.unroll_backward(core.UnrollOutputs(o.y, None), c)))
    _assert_same(*[_host(r) for r in runs])
    dec = BA.init_params(xp, 3, 4, 2)
    runs = []
    for k in (None, 2):
        o, c = BA.decoder_forward(x, dec, checkpoint_every=k)
        runs.append((o, BA.decoder_backward((o.y, None, o.s), c)))
    _assert_same(*[_host(r) for r in runs])


def _host(tree):
    return [rx.to_numpy(a) for a in tree_leaves(tree)]
