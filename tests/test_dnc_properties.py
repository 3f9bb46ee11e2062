"""Property tests (Hypothesis, profile ``ci``) of the DNC invariants, after deepmind/dnc's
tests: weights in [0, 1] with sums ≤ 1, usage after a full write or free, allocation
order, link and precedence, sharp content lookup, zero memory rows."""

from __future__ import annotations

import numpy as np
from hypothesis import assume, given
from hypothesis import strategies as st

from refmem import gradcheck
from refmem import xp as rx
from refmem.dnc import access as AC
from refmem.dnc import addressing as A

NP = rx.backend("numpy")
TOL = 1e-12  # rounding slack on sums and bounds

sizes = st.fixed_dictionaries({
    "B": st.integers(1, 3), "N": st.integers(1, 8), "W": st.integers(1, 4),
    "R": st.integers(1, 3), "nw": st.integers(1, 3), "Hc": st.integers(1, 5),
})
seeds = st.integers(0, 2**32 - 1)
conventions = st.sampled_from(["deepmind", "paper"])


def _in_unit(x):
    return float(np.min(x)) >= -TOL and float(np.max(x)) <= 1.0 + TOL


def _simplex(r, shape, total=1.0):
    return r.dirichlet(np.ones(shape[-1]), size=shape[:-1]) * total


@given(z=sizes, seed=seeds, conv=conventions, scale=st.floats(0.1, 4.0), steps=st.integers(1, 4))
def test_access_invariants_over_steps(z, seed, conv, scale, steps):
    """From the zero state, a few steps with random controller outputs: every weighting in
    [0, 1] with sums ≤ 1, usage in [0, 1], link ≥ 0 with a zero diagonal and rows and
    columns summing to ≤ 1, precedence a sub-probability vector; all finite."""
    r = np.random.default_rng(seed)
    B, N, W, R, nw, Hc = (z[k] for k in ("B", "N", "W", "R", "nw", "Hc"))
    cfg = AC.AccessConfig(N=N, W=W, R=R, nw=nw, convention=conv)
    W_xi = r.normal(size=(Hc, cfg.interface_size)) * scale
    b_xi = r.normal(size=cfg.interface_size) * scale
    state = AC.initial_state(NP, B, cfg)
    for _ in range(steps):
        (rv, state), cache = AC.access_step_forward(r.normal(size=(B, Hc)), W_xi, b_xi, state, cfg=cfg)
        assert all(np.all(np.isfinite(x)) for x in (rv, *state))
        alloc = cache.write.allocation
        for w in (state.write_weights, state.read_weights, alloc, cache.write.content, state.precedence):
            assert _in_unit(w)
            assert float(np.max(np.sum(w, axis=-1))) <= 1.0 + TOL
        assert _in_unit(state.usage)
        L = state.link
        assert float(np.min(L)) >= -TOL
        assert not np.any(np.diagonal(L, axis1=-2, axis2=-1))
        assert float(np.max(np.sum(L, axis=-1))) <= 1.0 + 1e-10
        assert float(np.max(np.sum(L, axis=-2))) <= 1.0 + 1e-10


@given(z=sizes, seed=seeds, slot=st.integers(0, 7), head=st.integers(0, 2))
def test_usage_is_one_after_a_full_write_and_zero_after_a_full_free(z, seed, slot, head):
    r = np.random.default_rng(seed)
    B, N, R, nw = z["B"], z["N"], z["R"], z["nw"]
    i, k = slot % N, head % nw
    u = r.uniform(size=(B, N))
    ww = _simplex(r, (B, nw, N), 0.5)
    ww[:, k, :] = 0.0
    ww[:, k, i] = 1.0
    f = np.zeros((B, R))
    wr = _simplex(r, (B, R, N))
    for conv in ("deepmind", "paper"):
        (usage, _), _ = A.usage_forward(u, ww, f, wr, convention=conv)
        assert np.all(usage[:, i] == 1.0)
        assert _in_unit(usage)
    # a full free: free gate 1 on a read weight of 1 at slot i
    f = r.uniform(size=(B, R))
    f[:, 0] = 1.0
    wr[:, 0, :] = 0.0
    wr[:, 0, i] = 1.0
    (usage, _), _ = A.usage_forward(u, ww, f, wr)
    assert np.all(usage[:, i] == 0.0)


@given(levels=st.lists(st.integers(0, 64), min_size=1, max_size=12), nw=st.integers(1, 3), seed=seeds)
def test_least_used_slot_is_allocated_most(levels, nw, seed):
    """argmin of the usage is argmax of the allocation (lowest index on ties); allocation in
    [0, 1] summing to ≤ 1, for one head and for each head of the sequential allocation."""
    u = np.array([levels], dtype=np.float64) / 64.0
    (a,), _ = A.allocation_forward(u)
    assert int(np.argmax(a[0])) == int(np.argmin(u[0]))
    assert _in_unit(a) and float(np.sum(a)) <= 1.0 + TOL
    g = np.random.default_rng(seed).uniform(size=(1, nw))
    (aw,), cache = A.write_allocation_weights_forward(u, g)
    for k in range(nw):
        uk = cache.usages[0, k]
        assert int(np.argmax(aw[0, k])) == int(np.argmin(uk)) or np.isclose(np.min(uk), uk[np.argmax(aw[0, k])])
        assert _in_unit(aw[0, k]) and float(np.sum(aw[0, k])) <= 1.0 + TOL


@given(z=sizes, seed=seeds)
def test_precedence_unchanged_without_a_write_and_replaced_by_a_full_write(z, seed):
    r = np.random.default_rng(seed)
    B, N, nw = z["B"], z["N"], z["nw"]
    L, p = np.zeros((B, nw, N, N)), np.zeros((B, nw, N))
    for _ in range(r.integers(1, 5)):  # a reachable link and precedence
        (L, p), _ = A.temporal_linkage_forward(L, p, _simplex(r, (B, nw, N), r.uniform()))
    (link, prec), _ = A.temporal_linkage_forward(L, p, np.zeros((B, nw, N)))
    np.testing.assert_array_equal(prec, p)
    np.testing.assert_array_equal(link, L)
    full = np.zeros((B, nw, N))
    full[..., r.integers(N)] = 1.0
    (link, prec), _ = A.temporal_linkage_forward(L, p, full)
    np.testing.assert_array_equal(prec, full)
    ww = _simplex(r, (B, nw, N))  # sums to 1 up to rounding
    (link, prec), _ = A.temporal_linkage_forward(L, p, ww)
    np.testing.assert_allclose(prec, ww, atol=1e-15)
    assert not np.any(np.diagonal(link, axis1=-2, axis2=-1))
    assert float(np.min(link)) >= -TOL
    assert float(np.max(np.sum(link, -1))) <= 1 + 1e-12 and float(np.max(np.sum(link, -2))) <= 1 + 1e-12


@given(z=sizes, seed=seeds, conv=conventions)
def test_large_strength_gives_a_one_hot_lookup(z, seed, conv):
    r = np.random.default_rng(seed)
    B, N, W = z["B"], z["N"], max(z["W"], 2)
    M = r.normal(size=(B, N, W))
    target = r.integers(N, size=B)
    keys = (M[np.arange(B), target] * r.uniform(0.5, 2.0, size=(B, 1)))[:, None, :]
    cos = np.einsum("bw,bnw->bn", keys[:, 0], M) / (np.linalg.norm(keys[:, 0], axis=-1)[:, None] * np.linalg.norm(M, axis=-1))
    second = np.sort(cos, axis=-1)[:, -2] if N > 1 else np.full(B, -1.0)
    assume(not np.any(second > 1 - 1e-2))  # another row nearly parallel to the key: not this property's case
    (w,), _ = A.content_weights_forward(M, keys, np.full((B, 1), 1e4), convention=conv)
    np.testing.assert_allclose(w[np.arange(B), 0, target], 1.0, atol=1e-12)


@given(z=sizes, seed=seeds, conv=conventions, zero_rows=st.integers(1, 8))
def test_zero_memory_rows_give_finite_outputs_and_gradients(z, seed, conv, zero_rows):
    r = np.random.default_rng(seed)
    B, N, W, R, nw, Hc = (z[k] for k in ("B", "N", "W", "R", "nw", "Hc"))
    cfg = AC.AccessConfig(N=N, W=W, R=R, nw=nw, convention=conv)
    state = AC.initial_state(NP, B, cfg)
    M = r.normal(size=(B, N, W))
    M[:, : min(zero_rows, N)] = 0.0
    state = state._replace(memory=M)
    W_xi, b_xi = r.normal(size=(Hc, cfg.interface_size)), r.normal(size=cfg.interface_size)
    (rv, new), cache = AC.access_step_forward(r.normal(size=(B, Hc)), W_xi, b_xi, state, cfg=cfg)
    d = AC.access_step_backward((r.normal(size=rv.shape), AC.AccessState(*(r.normal(size=x.shape) for x in new))),
                                cache)
    for x in (rv, *new, *d[:3], *d[3]):
        assert np.all(np.isfinite(x))
    keys = r.normal(size=(B, 2, W))
    keys[:, 0] = 0.0  # a zero key too
    (w,), c = A.content_weights_forward(M, keys, r.normal(size=(B, 2)), convention=conv)
    g = A.content_weights_backward((r.normal(size=w.shape),), c)
    assert all(np.all(np.isfinite(x)) for x in (w, *g))


def test_zero_memory_rows_and_keys_pass_the_gradient_check():
    """The cosine's epsilons make a zero row smooth, and the backward is exact there: the
    complex step agrees to rounding (SPEC §6's 1e-12). Central differences are not used at
    this point: ``n(0) = sqrt(eps) = 1e-3`` makes the slope ~1e3 and the third derivative
    ~1e9 over a 1e-3-wide smoothing, so the step 2**-20 carries a truncation error far above
    SPEC's tolerance; that is the steepness of the cosine at 0, not a gradient error."""
    r = np.random.default_rng(0)
    M = r.normal(size=(2, 5, 3))
    M[:, 1] = 0.0
    keys = r.normal(size=(2, 2, 3))
    keys[0, 1] = 0.0
    arrays = {"memory": M, "keys": keys, "strengths": r.normal(size=(2, 2))}
    for conv in ("deepmind", "paper"):
        def fwd(a):
            return A.content_weights_forward(a["memory"], a["keys"], a["strengths"], convention=conv)[0]._asdict()

        def bwd(a, cot):
            _, cache = A.content_weights_forward(a["memory"], a["keys"], a["strengths"], convention=conv)
            return A.content_weights_backward((cot["weights"],), cache)._asdict()

        records = gradcheck.check_function(fwd, bwd, arrays, methods=("complex",), name=f"zero_rows_{conv}")
        assert records and all(rec.passed for rec in records), records
