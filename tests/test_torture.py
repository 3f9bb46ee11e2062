"""Torture suite (issue 12 item 5): extreme but valid inputs give finite, sensible results.

Zero memory rows, usage exactly 0, exactly 1 and tied, strengths of ±1e4, controller
outputs scaled by 1e3 and 1e6 over 200 steps (access step and core), saturated gates,
all-masked attention rows, -inf energies (the additive mask: weight 0, as a masked
position), long sequences (T = 1000); Hypothesis properties where the domain
allows.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import refmem.attention.bahdanau as BA
import refmem.attention.luong as LU
import refmem.dnc.access as AC
import refmem.dnc.addressing as AD
import refmem.dnc.core as DC
import refmem.memory_lstm as ML
from refmem.dnc.params import DNCConfig, init_params
from refmem.errors import DomainError
from refmem.optim import tree_leaves

B, N, W, H, R, NW = 2, 6, 4, 2, 2, 1


def rng(seed=0):
    return np.random.default_rng(seed)


def finite(*trees):
    leaves = [a for t in trees for a in tree_leaves(t) if hasattr(a, "dtype") and a.dtype.kind in "fc"]
    assert leaves, "nothing to check"
    for a in leaves:
        assert np.all(np.isfinite(a)), "non-finite value"
    return True


def rows(*shape, seed=0, total=0.9):
    x = rng(seed).uniform(0.05, 1.0, shape)
    return total * x / x.sum(-1, keepdims=True)


# ----------------------------------------------------------------------------- content addressing


@pytest.mark.parametrize("convention", ["deepmind", "paper"])
@pytest.mark.parametrize("strength", [1e4, -1e4])
def test_content_weights_zero_memory_rows_and_huge_strengths(convention, strength):
    memory = rng().standard_normal((B, N, W))
    memory[:, :3] = 0.0  # zero rows: the cosine's eps keeps the norm away from 0
    keys = rng(1).standard_normal((B, H, W))
    strengths = np.full((B, H), strength)
    (w,), cache = AD.content_weights_forward(memory, keys, strengths, convention=convention)
    assert finite(w)
    np.testing.assert_allclose(w.sum(-1), 1.0, atol=1e-12)  # a softmax over the rows
    assert np.all(w >= 0)
    g = AD.content_weights_backward((rng(2).standard_normal(w.shape),), cache)
    assert finite(g)


def test_content_weights_all_memory_zero_is_uniform():
    (w,), _ = AD.content_weights_forward(np.zeros((B, N, W)), rng().standard_normal((B, H, W)), np.ones((B, H)))
    np.testing.assert_allclose(w, 1.0 / N, atol=1e-12)  # every similarity is 0


# ----------------------------------------------------------------------------- usage and allocation


@pytest.mark.parametrize("usage", [np.zeros((B, N)), np.ones((B, N)), np.full((B, N), 0.5),
                                   np.array([[0.0, 1.0, 0.0, 1.0, 0.5, 0.5]] * B)], ids=["zero", "one", "tied", "mixed"])
def test_allocation_edges_of_usage(usage):
    (a,), cache = AD.allocation_forward(usage)
    assert finite(a)
    assert np.all(a >= 0) and np.all(a <= 1)
    assert np.all(a.sum(-1) <= 1 + 1e-12)
    free = usage == 0
    if free.any():  # the least-used free slot takes (almost) everything
        assert np.all(a.max(-1) > 0.99)
    g = AD.allocation_backward((rng().standard_normal(a.shape),), cache)
    assert finite(g)


def test_allocation_usage_one_gives_no_allocation():
    (a,), _ = AD.allocation_forward(np.ones((B, N)))
    np.testing.assert_allclose(a, 0.0, atol=1e-5)


def test_usage_saturated_free_gates_and_full_usage():
    u = np.ones((B, N))
    (usage, _), cache = AD.usage_forward(u, rows(B, NW, N), np.ones((B, R)), rows(B, R, N, total=1.0))
    assert finite(usage)
    assert np.all((usage >= 0) & (usage <= 1))
    assert finite(AD.usage_backward((rng().standard_normal(usage.shape), None), cache))


def test_write_weights_saturated_gates():
    (w,), cache = AD.write_weights_forward(rng().standard_normal((B, N, W)), np.ones((B, N)), rng(1).standard_normal((B, NW, W)),
                                        np.full((B, NW), 1e4), np.ones((B, NW)), np.ones((B, NW)))
    assert finite(w)
    np.testing.assert_allclose(w, 0.0, atol=1e-5)  # all allocation, but nothing is free
    assert finite(AD.write_weights_backward((rng(2).standard_normal(w.shape),), cache)[:6])


# ----------------------------------------------------------------------------- long runs of the access module and the core


def _access(convention, seed=0):
    cfg = AC.AccessConfig(N=5, W=3, R=2, nw=1, convention=convention)
    S = AC.interface_size(cfg)
    return (0.3 * rng(seed).standard_normal((4, S)), 0.1 * rng(seed + 1).standard_normal(S),
            AC.initial_state(np, B, cfg), cfg)


@pytest.mark.parametrize("scale", [1e3, 1e6])
@pytest.mark.parametrize("convention", ["deepmind", "paper"])
def test_access_200_steps_with_scaled_controller_outputs(scale, convention):
    W_xi, b_xi, state, cfg = _access(convention)
    for t in range(200):
        h = scale * rng(t).standard_normal((B, 4))
        (r, state), cache = AC.access_step_forward(h, W_xi, b_xi, state, cfg=cfg)
        assert np.all(np.isfinite(r))
    assert finite(state)
    assert np.all((state.usage >= -1e-12) & (state.usage <= 1 + 1e-12))
    assert np.all(state.read_weights.sum(-1) <= 1 + 1e-9)
    grads = AC.access_step_backward((rng().standard_normal(r.shape), None), cache)
    assert finite(grads)


@pytest.mark.parametrize("scale", [1e3, 1e6])
@pytest.mark.parametrize("convention", ["deepmind", "paper"])
def test_core_200_steps_with_scaled_inputs(scale, convention):
    cfg = DNCConfig(D=3, Y=2, hidden=4, N=5, W=3, R=2, nw=1, convention=convention)
    params = init_params(np, cfg)
    state = DC.initial_state(np, B, cfg)
    for t in range(200):
        (y, state), cache = DC.core_step_forward(scale * rng(t).standard_normal((B, 3)), state, params, cfg=cfg)
        assert np.all(np.isfinite(y))
    assert finite(state)
    dx, d_state, d_params = DC.core_step_backward((rng().standard_normal(y.shape), None), cache)
    assert finite(dx, d_state, d_params)


# ----------------------------------------------------------------------------- attention


def test_all_masked_rows_give_zero_weights_and_finite_gradients():
    e = rng().standard_normal((3, 4))
    mask = np.array([[True, False, True, True], [False] * 4, [True] * 4])
    (alpha,), cache = BA.attention_weights_forward(e, mask=mask)
    assert finite(alpha)
    np.testing.assert_array_equal(alpha[1], 0.0)
    np.testing.assert_allclose(alpha[[0, 2]].sum(-1), 1.0)
    assert alpha[0, 1] == 0.0
    (d,) = BA.attention_weights_backward((rng(1).standard_normal(alpha.shape),), cache)
    assert finite(d)
    np.testing.assert_array_equal(d[1], 0.0)


def test_decoder_with_a_fully_masked_sequence_is_finite_forward_and_backward():
    p = BA.init_params(np, 2, 3, 4)
    h = rng().standard_normal((2, 5, 2))
    mask = np.ones((2, 5), dtype=bool)
    mask[1] = False
    out, cache = BA.decoder_forward(h, p, mask=mask)
    assert finite(out)
    np.testing.assert_array_equal(out.alpha[1], 0.0)
    grads = BA.decoder_backward((rng(1).standard_normal(out.y.shape), None, None), cache)
    assert finite(grads)


def test_minus_inf_energies_mask_their_positions():
    # Documented behaviour (docs/validation.md): an energy of -inf is the additive mask of other
    # libraries; its position gets weight 0 and gradient 0, like a masked one (a row with no
    # position left gets weights 0, not NaN). NaN and +inf stay refused.
    e = rng().standard_normal((3, 4))
    keep = np.array([[True, False, True, True], [False] * 4, [True, True, False, True]])
    (ref,), ref_cache = BA.attention_weights_forward(e, mask=keep)
    (alpha,), cache = BA.attention_weights_forward(np.where(keep, e, -np.inf))
    np.testing.assert_array_equal(alpha, ref)
    (both,), _ = BA.attention_weights_forward(np.where(keep, e, -np.inf), mask=keep)
    np.testing.assert_array_equal(both, ref)
    d = rng(1).standard_normal(e.shape)
    np.testing.assert_array_equal(BA.attention_weights_backward((d,), cache).e,
                                  BA.attention_weights_backward((d,), ref_cache).e)
    assert np.all(BA.attention_weights_backward((d,), cache).e[~keep] == 0.0)
    with pytest.raises(DomainError, match=r"^e: expected finite values or -inf, got nan at \[0, 1\]"):
        BA.attention_weights_forward(np.array([[0.0, np.nan, 1.0]]))
    with pytest.raises(DomainError, match=r"^e: expected finite values or -inf, got inf at \[0, 2\]"):
        BA.attention_weights_forward(np.array([[0.0, -np.inf, np.inf]]), mask=np.array([[1, 0, 0]]))


@pytest.mark.parametrize("alignment", ["global", "local_m", "local_p"])
def test_luong_huge_states_stay_finite(alignment):
    p = LU.init_params(np, "general", alignment, 3, 3, S=6, A=4)
    h = 1e4 * rng().standard_normal((2, 4, 3))
    hs = 1e4 * rng(1).standard_normal((2, 6, 3))
    out, cache = LU.attention_forward(h, hs, p, alignment=alignment)
    assert finite(out)
    grads = LU.attention_backward((rng(2).standard_normal(out.a.shape), None, rng(3).standard_normal(out.h_tilde.shape),
                                   None), cache)
    assert finite(grads)


# ----------------------------------------------------------------------------- long sequences


@pytest.mark.slow
def test_dnc_unroll_T_1000_forward_and_backward_finite():
    cfg = DNCConfig(D=2, Y=2, hidden=3, N=3, W=2, R=1, nw=1)
    params = init_params(np, cfg)
    x = rng().standard_normal((1, 1000, 2))
    out, cache = DC.unroll_forward(x, params, cfg=cfg)
    assert out.y.shape == (1, 1000, 2) and finite(out)
    dx, d_params, d_state = DC.unroll_backward(DC.UnrollOutputs(rng(1).standard_normal(out.y.shape), None), cache)
    assert finite(dx, d_params, d_state)


@pytest.mark.slow
def test_memory_lstm_T_1000_forward_and_backward_finite():
    p = ML.init_params(np, 2, 3, 2)
    out, cache = ML.unroll_forward(rng().standard_normal((1, 1000, 2)), p)
    assert finite(out)
    grads = ML.unroll_backward(ML.UnrollOutputs(rng(1).standard_normal(out.h.shape), None, None), cache)
    assert finite(grads)


@pytest.mark.slow
def test_bahdanau_decoder_T_1000_forward_and_backward_finite():
    p = BA.init_params(np, 2, 3, 2)
    out, cache = BA.decoder_forward(rng().standard_normal((1, 1000, 2)), p)
    assert finite(out)
    grads = BA.decoder_backward((rng(1).standard_normal(out.y.shape), None, None), cache)
    assert finite(grads)


# ----------------------------------------------------------------------------- float32 stays float32


def test_float32_core_unroll_computes_in_float32():
    cfg = DNCConfig(D=3, Y=2, hidden=4, layers=3, N=5, W=3, R=2, clip_value=20.0)
    params = init_params(np, cfg, dtype=np.float32)
    x = rng().standard_normal((2, 3, 3)).astype(np.float32)
    out, cache = DC.unroll_forward(x, params, cfg=cfg)  # no state: zeros in x's dtype
    dx, d_params, d_state = DC.unroll_backward(DC.UnrollOutputs(np.ones((2, 3, 2), np.float32), None), cache)
    for a in tree_leaves((out, dx, d_params, d_state)):
        if a is not None:
            assert a.dtype == np.float32


# ----------------------------------------------------------------------------- properties


unit_rows = st.integers(1, 6).flatmap(lambda n: st.lists(st.sampled_from([0.0, 0.25, 0.5, 1.0]) | st.floats(0, 1),
                                                         min_size=n, max_size=n))


@settings(max_examples=60, deadline=None)
@given(unit_rows)
def test_property_allocation_is_a_subprobability_for_any_usage(usage):
    u = np.asarray([usage])
    (a,), cache = AD.allocation_forward(u)
    assert np.all(np.isfinite(a)) and np.all(a >= -1e-12) and a.sum() <= 1 + 1e-9
    assert np.all(np.isfinite(AD.allocation_backward((np.ones_like(u),), cache).usage))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(-1e4, 1e4), min_size=1, max_size=7), st.lists(st.booleans(), min_size=7, max_size=7))
def test_property_masked_attention_weights(energies, keep):
    e = np.asarray([energies])
    m = np.asarray([keep[:e.shape[1]]])
    a = BA.attention_weights_forward(e, mask=m)[0].alpha
    assert np.all(np.isfinite(a)) and np.all(a[~m] == 0)
    total = a.sum()
    assert (abs(total - 1) < 1e-9) if m.any() else total == 0


@settings(max_examples=40, deadline=None)
@given(st.floats(-1e4, 1e4), st.integers(0, 2**16))
def test_property_content_weights_any_strength(strength, seed):
    memory = rng(seed).standard_normal((1, 4, 3))
    memory[0, seed % 4] = 0.0
    (w,), _ = AD.content_weights_forward(memory, rng(seed + 1).standard_normal((1, 1, 3)), np.array([[strength]]))
    assert np.all(np.isfinite(w)) and abs(w.sum() - 1) < 1e-9
