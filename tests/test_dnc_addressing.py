"""SPEC §5 steps 1-9: each addressing function against a plain loop-by-loop NumPy
reference, the conventions, division-free products at a factor of 0, and the
errors for inconsistent shapes."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from refmem import catalogue, gradcheck
from refmem import xp as rx
from refmem.dnc import addressing as A
from refmem.dnc import conventions as C
from refmem.errors import DomainError

NP = rx.backend("numpy")
EPS = 1e-6


def _softplus(x):
    return np.logaddexp(0.0, x)


def _rng(seed=0):
    return np.random.default_rng(seed)


# ----------------------------------------------------------------------------- loop references


def ref_content(memory, keys, strengths, convention):
    B, N, W = memory.shape
    H = keys.shape[1]
    out = np.zeros((B, H, N))
    for b in range(B):
        for h in range(H):
            beta = _softplus(strengths[b, h]) + (1.0 if convention == "paper" else 0.0)
            k = keys[b, h]
            logits = []
            for i in range(N):
                m = memory[b, i]
                cos = k @ m / (np.sqrt(k @ k + EPS) * np.sqrt(m @ m + EPS) + EPS)
                logits.append(beta * cos)
            e = np.exp(np.array(logits) - max(logits))
            out[b, h] = e / e.sum()
    return out


def ref_usage(u, ww, f, wr):
    B, N = u.shape
    out = np.zeros_like(u)
    for b in range(B):
        for i in range(N):
            keep = 1.0
            for k in range(ww.shape[1]):
                keep *= 1.0 - ww[b, k, i]
            up = u[b, i] + (1.0 - u[b, i]) * (1.0 - keep)
            psi = 1.0
            for r in range(wr.shape[1]):
                psi *= 1.0 - f[b, r] * wr[b, r, i]
            out[b, i] = up * psi
    return out


def ref_allocation(u):
    B, N = u.shape
    out = np.zeros_like(u)
    for b in range(B):
        uh = EPS + (1 - EPS) * u[b]
        order = sorted(range(N), key=lambda i: (uh[i], i))  # ascending usage = descending 1-û, stable
        prod = 1.0
        for i in order:
            out[b, i] = (1 - uh[i]) * prod
            prod *= uh[i]
    return out


def ref_write_allocation(u, g):
    u = u.copy()
    out = []
    for k in range(g.shape[1]):
        a = ref_allocation(u)
        out.append(a)
        u = u + (1 - u) * g[:, k:k + 1] * a
    return np.stack(out, axis=1)


def ref_memory(M, ww, e, v):
    B, N, W = M.shape
    out = np.zeros_like(M)
    for b in range(B):
        for i in range(N):
            for j in range(W):
                keep = 1.0
                add = 0.0
                for k in range(ww.shape[1]):
                    keep *= 1.0 - ww[b, k, i] * e[b, k, j]
                    add += ww[b, k, i] * v[b, k, j]
                out[b, i, j] = M[b, i, j] * keep + add
    return out


def ref_link(L, p, ww):
    B, nw, N, _ = L.shape
    out = np.zeros_like(L)
    prec = np.zeros_like(p)
    for b in range(B):
        for k in range(nw):
            w = ww[b, k]
            for i in range(N):
                for j in range(N):
                    if i != j:
                        out[b, k, i, j] = (1 - w[i] - w[j]) * L[b, k, i, j] + w[i] * p[b, k, j]
            prec[b, k] = (1 - w.sum()) * p[b, k] + w
    return out, prec


def ref_directional(L, wr):
    B, nw, N, _ = L.shape
    R = wr.shape[1]
    f = np.zeros((B, R, nw, N))
    bk = np.zeros((B, R, nw, N))
    for b in range(B):
        for r in range(R):
            for k in range(nw):
                f[b, r, k] = L[b, k] @ wr[b, r]
                bk[b, r, k] = L[b, k].T @ wr[b, r]
    return f, bk


def ref_read_weights(M, keys, strengths, L, wr, modes, convention):
    nw = L.shape[1]
    c = ref_content(M, keys, strengths, convention)
    f, bk = ref_directional(L, wr)
    B, R, N = wr.shape
    out = np.zeros((B, R, N))
    for b in range(B):
        for r in range(R):
            pi = modes[b, r]
            back = pi[:nw]
            if convention == "deepmind":
                fwd, cont = pi[nw:2 * nw], pi[2 * nw]
            else:
                cont, fwd = pi[nw], pi[nw + 1:]
            out[b, r] = cont * c[b, r] + sum(fwd[k] * f[b, r, k] + back[k] * bk[b, r, k] for k in range(nw))
    return out


# ----------------------------------------------------------------------------- forward values


@pytest.mark.parametrize("conv", ["deepmind", "paper"])
def test_content_weights_match_reference(conv):
    r = _rng(1)
    M, k, s = r.normal(size=(2, 6, 4)), r.normal(size=(2, 3, 4)), r.normal(size=(2, 3))
    out, _ = A.content_weights_forward(M, k, s, convention=conv)
    np.testing.assert_allclose(out.weights, ref_content(M, k, s, conv), rtol=1e-13, atol=1e-15)


def test_strength_activations_differ_by_convention():
    s = np.array([[-2.0, 0.0, 3.0]])
    np.testing.assert_allclose(C.strength_forward(s, convention="deepmind")[0].beta, _softplus(s), rtol=1e-15)
    out, cache = C.strength_forward(s, convention="paper")
    np.testing.assert_allclose(out.beta, 1.0 + _softplus(s), rtol=1e-15)
    d = np.array([[0.5, -1.0, 2.0]])
    np.testing.assert_allclose(C.strength_backward((d,), cache).raw, d / (1 + np.exp(-s)), rtol=1e-15)
    assert np.all(C.strength_backward((None,), cache).raw == 0.0)


def test_usage_matches_reference_and_conventions_agree_on_values():
    r = _rng(2)
    u, ww = r.uniform(size=(3, 5)), r.dirichlet(np.ones(5), size=(3, 2)) * 0.8
    f, wr = r.uniform(size=(3, 2)), r.dirichlet(np.ones(5), size=(3, 2))
    ref = ref_usage(u, ww, f, wr)
    for conv in ("deepmind", "paper"):
        got, _ = A.usage_forward(u, ww, f, wr, convention=conv)
        np.testing.assert_allclose(got.usage, ref, rtol=1e-14, atol=1e-15)
        np.testing.assert_allclose(got.retention, np.prod(1 - f[:, :, None] * wr, axis=1), rtol=1e-15)


def test_allocation_matches_reference_including_ties():
    r = _rng(3)
    u = r.uniform(size=(4, 7))
    u[1, 2] = u[1, 5]  # a tie: the lower index is allocated first
    u[2] = 0.3
    got = A.allocation_forward(u)[0].allocation
    np.testing.assert_allclose(got, ref_allocation(u), rtol=1e-14, atol=1e-16)
    assert got[1, 2] > got[1, 5]
    assert np.all(np.diff(got[2]) < 0)  # all equal: index order


def test_write_allocation_matches_reference():
    r = _rng(4)
    u, g = r.uniform(size=(3, 6)), r.uniform(size=(3, 3))
    got = A.write_allocation_weights_forward(u, g)[0].allocation
    np.testing.assert_allclose(got, ref_write_allocation(u, g), rtol=1e-14, atol=1e-16)


@pytest.mark.parametrize("conv", ["deepmind", "paper"])
def test_write_weights_match_reference(conv):
    r = _rng(5)
    M, u = r.normal(size=(2, 5, 3)), r.uniform(size=(2, 5))
    k, s = r.normal(size=(2, 2, 3)), r.normal(size=(2, 2))
    ga, gw = r.uniform(size=(2, 2)), r.uniform(size=(2, 2))
    got = A.write_weights_forward(M, u, k, s, ga, gw, convention=conv)[0].write_weights
    c = ref_content(M, k, s, conv)
    a = ref_write_allocation(u, ga * gw)
    ref = gw[:, :, None] * (ga[:, :, None] * a + (1 - ga[:, :, None]) * c)
    np.testing.assert_allclose(got, ref, rtol=1e-13, atol=1e-16)


def test_memory_update_matches_reference():
    r = _rng(6)
    M, ww = r.normal(size=(2, 5, 3)), r.dirichlet(np.ones(5), size=(2, 3))
    e, v = r.uniform(size=(2, 3, 3)), r.normal(size=(2, 3, 3))
    got = A.memory_update_forward(M, ww, e, v)[0].memory
    np.testing.assert_allclose(got, ref_memory(M, ww, e, v), rtol=1e-14, atol=1e-15)


def test_temporal_linkage_matches_reference():
    r = _rng(7)
    L = r.uniform(0, 0.2, size=(2, 2, 5, 5)) * (1 - np.eye(5))
    p, ww = r.dirichlet(np.ones(5), size=(2, 2)) * 0.7, r.dirichlet(np.ones(5), size=(2, 2)) * 0.9
    (link, prec), _ = A.temporal_linkage_forward(L, p, ww)
    ref_l, ref_p = ref_link(L, p, ww)
    np.testing.assert_allclose(link, ref_l, rtol=1e-14, atol=1e-16)
    np.testing.assert_allclose(prec, ref_p, rtol=1e-14, atol=1e-16)


def test_directional_weights_match_reference():
    r = _rng(8)
    L, wr = r.uniform(size=(2, 3, 4, 4)) * (1 - np.eye(4)), r.dirichlet(np.ones(4), size=(2, 2))
    (f, b), _ = A.directional_weights_forward(L, wr)
    rf, rb = ref_directional(L, wr)
    np.testing.assert_allclose(f, rf, rtol=1e-14)
    np.testing.assert_allclose(b, rb, rtol=1e-14)


@pytest.mark.parametrize("conv", ["deepmind", "paper"])
def test_read_weights_match_reference(conv):
    r = _rng(9)
    nw = 2
    M, k, s = r.normal(size=(2, 5, 3)), r.normal(size=(2, 3, 3)), r.normal(size=(2, 3))
    L, wr = r.uniform(0, 0.2, size=(2, nw, 5, 5)) * (1 - np.eye(5)), r.dirichlet(np.ones(5), size=(2, 3))
    modes = r.dirichlet(np.ones(1 + 2 * nw), size=(2, 3))
    got = A.read_weights_forward(M, k, s, L, wr, modes, convention=conv)[0].read_weights
    np.testing.assert_allclose(got, ref_read_weights(M, k, s, L, wr, modes, conv), rtol=1e-13, atol=1e-16)


@pytest.mark.parametrize("conv, content_index", [("deepmind", 4), ("paper", 2)])
def test_read_mode_layout(conv, content_index):
    """A one-hot read mode on the content position gives the content weights (nw = 2)."""
    r = _rng(10)
    M, k, s = r.normal(size=(1, 5, 3)), r.normal(size=(1, 2, 3)), r.normal(size=(1, 2))
    L, wr = r.uniform(0, 0.2, size=(1, 2, 5, 5)) * (1 - np.eye(5)), r.dirichlet(np.ones(5), size=(1, 2))
    modes = np.zeros((1, 2, 5))
    modes[..., content_index] = 1.0
    got = A.read_weights_forward(M, k, s, L, wr, modes, convention=conv)[0].read_weights
    np.testing.assert_allclose(got, ref_content(M, k, s, conv), rtol=1e-14)
    # backward mode 0 follows Lᵀ under both conventions
    modes = np.zeros((1, 2, 5))
    modes[..., 0] = 1.0
    got = A.read_weights_forward(M, k, s, L, wr, modes, convention=conv)[0].read_weights
    np.testing.assert_allclose(got[0, 0], L[0, 0].T @ wr[0, 0], rtol=1e-14)


def test_split_and_join_read_modes_round_trip():
    x = np.arange(2 * 3 * 7, dtype=np.float64).reshape(2, 3, 7)
    for conv in ("deepmind", "paper"):
        b, f, c = C.split_read_modes(x, 3, conv)
        assert b.shape == (2, 3, 3) and f.shape == (2, 3, 3) and c.shape == (2, 3, 1)
        np.testing.assert_array_equal(C.join_read_modes(b, f, c, conv), x)


# ----------------------------------------------------------------------------- gradients


def test_stopped_usage_gradient_is_zero_in_deepmind_and_exact_in_paper():
    r = _rng(11)
    u, ww = r.uniform(size=(2, 4)), r.dirichlet(np.ones(4), size=(2, 2)) * 0.8
    f, wr = r.uniform(size=(2, 2)), r.dirichlet(np.ones(4), size=(2, 2))
    d = r.normal(size=(2, 4))
    _, cache = A.usage_forward(u, ww, f, wr, convention="deepmind")
    assert np.all(A.usage_backward((d, None), cache).prev_write_weights == 0.0)
    _, cache = A.usage_forward(u, ww, f, wr, convention="paper")
    g = A.usage_backward((d, None), cache).prev_write_weights
    h = 1e-6
    num = np.zeros_like(ww)
    for idx in np.ndindex(ww.shape):
        p, m = ww.copy(), ww.copy()
        p[idx] += h
        m[idx] -= h
        num[idx] = np.sum(d * (ref_usage(u, p, f, wr) - ref_usage(u, m, f, wr))) / (2 * h)
    np.testing.assert_allclose(g, num, rtol=1e-7, atol=1e-9)


def test_frozen_write_weights_replace_the_stopped_value_only_in_deepmind():
    r = _rng(12)
    u, ww = r.uniform(size=(2, 4)), r.dirichlet(np.ones(4), size=(2, 2)) * 0.8
    f, wr = r.uniform(size=(2, 2)), r.dirichlet(np.ones(4), size=(2, 2))
    frozen = np.zeros_like(ww)
    dm, _ = A.usage_forward(u, ww, f, wr, convention="deepmind", frozen_write_weights=frozen)
    np.testing.assert_allclose(dm.usage, ref_usage(u, frozen, f, wr), rtol=1e-15)
    pp, _ = A.usage_forward(u, ww, f, wr, convention="paper", frozen_write_weights=frozen)
    np.testing.assert_allclose(pp.usage, ref_usage(u, ww, f, wr), rtol=1e-15)


def _num_grad(fn, x, d, h=1e-6):
    g = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        p, m = x.copy(), x.copy()
        p[idx] += h
        m[idx] -= h
        g[idx] = np.sum(d * (fn(p) - fn(m))) / (2 * h)
    return g


def test_products_with_a_zero_factor_give_exact_finite_gradients():
    """Free gate 1 on a read weight 1 (ψ factor 0), erase 1 on a write weight 1 (memory
    factor 0), a write weight 1 (usage write factor 0): no NaN, and the exact gradient."""
    r = _rng(13)
    u = r.uniform(0.1, 0.9, size=(1, 4))
    ww = np.array([[[1.0, 0.0, 0.0, 0.0], [0.2, 0.3, 0.1, 0.1]]])
    f = np.array([[1.0, 0.4]])
    wr = np.array([[[0.0, 1.0, 0.0, 0.0], [0.1, 0.2, 0.3, 0.4]]])
    d = r.normal(size=(1, 4))
    _, cache = A.usage_forward(u, ww, f, wr, convention="paper")
    g = A.usage_backward((d, None), cache)
    for got in g:
        assert np.all(np.isfinite(got))
    np.testing.assert_allclose(g.prev_write_weights, _num_grad(lambda x: ref_usage(u, x, f, wr), ww, d),
                               rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(g.free_gates, _num_grad(lambda x: ref_usage(u, ww, x, wr), f, d), rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(g.prev_read_weights, _num_grad(lambda x: ref_usage(u, ww, f, x), wr, d),
                               rtol=1e-7, atol=1e-9)

    M, e, v = r.normal(size=(1, 4, 3)), np.ones((1, 2, 3)), r.normal(size=(1, 2, 3))
    e[0, 1] = 0.5
    dM = r.normal(size=(1, 4, 3))
    _, mcache = A.memory_update_forward(M, ww, e, v)
    gm = A.memory_update_backward((dM,), mcache)
    assert gm.deallocation is None
    for got in gm[:4]:
        assert np.all(np.isfinite(got))
    np.testing.assert_allclose(gm.write_weights, _num_grad(lambda x: ref_memory(M, x, e, v), ww, dM), rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(gm.erase_vectors, _num_grad(lambda x: ref_memory(M, ww, x, v), e, dM), rtol=1e-7, atol=1e-9)


def test_allocation_gradient_with_a_zero_factor_in_the_cumulative_product():
    """With ``eps = 0`` and a usage of exactly 0, the sorted product has a factor 0."""
    u = np.array([[0.0, 0.5, 0.25, 0.75]])
    d = np.array([[0.3, -1.1, 0.7, 0.2]])
    _, cache = A.allocation_forward(u, eps=0.0)
    assert np.any(cache.sorted_usage == 0.0)
    g = A.allocation_backward((d,), cache).usage
    assert np.all(np.isfinite(g))

    def f(x):
        return A.allocation_forward(x, eps=0.0)[0].allocation

    np.testing.assert_allclose(g, _num_grad(f, u, d), rtol=1e-8, atol=1e-10)


def test_prod_except_without_division():
    x = np.array([[2.0, 0.0, 3.0, 0.0], [1.5, 2.0, 0.0, 4.0]])
    got = A.prod_except(x, axis=-1)
    ref = np.array([[np.prod(np.delete(row, i)) for i in range(4)] for row in x])
    np.testing.assert_array_equal(got, ref)


@pytest.mark.parametrize("name", ["allocation", "write_allocation_weights", "write_weights", "access_step"])
def test_complex_step_also_agrees_through_the_sort(name):
    """The sort is decided on real parts, which the complex step leaves unchanged, so away
    from ties it agrees too; the catalogue keeps ``complex_step=False`` as SPEC §6 says."""
    variant = "paper" if name in ("write_weights", "access_step") else "any_convention"
    case = dataclasses.replace(catalogue.get_case(f"dnc/{name}/{variant}"), complex_step=True)
    records = gradcheck.check_case(case, NP, seed=0, methods=("complex",))
    assert records and all(r.passed for r in records), records


# ----------------------------------------------------------------------------- errors


def test_shape_errors_name_the_argument_expected_and_given():
    M = np.zeros((2, 5, 3))
    with pytest.raises(rx.ShapeError, match=r"keys: expected shape \(B, H, W\) = \(2, \?, 3\), got \(2, 2, 4\)"):
        A.content_weights_forward(M, np.zeros((2, 2, 4)), np.zeros((2, 2)))
    with pytest.raises(rx.ShapeError, match=r"strengths: expected shape \(B, H\) = \(2, 2\), got \(2, 3\)"):
        A.content_weights_forward(M, np.zeros((2, 2, 3)), np.zeros((2, 3)))
    with pytest.raises(rx.ShapeError, match="prev_read_weights"):
        A.usage_forward(np.zeros((2, 5)), np.zeros((2, 2, 5)), np.zeros((2, 3)), np.zeros((2, 2, 5)))
    with pytest.raises(rx.ShapeError, match=r"write_gates: expected shape \(B, nw\) = \(2, 2\), got \(2, 3\)"):
        A.write_weights_forward(M, np.zeros((2, 5)), np.zeros((2, 2, 3)), np.zeros((2, 2)), np.zeros((2, 2)),
                                np.zeros((2, 3)))
    with pytest.raises(rx.ShapeError, match="erase_vectors"):
        A.memory_update_forward(M, np.zeros((2, 2, 5)), np.zeros((2, 3, 3)), np.zeros((2, 2, 3)))
    with pytest.raises(rx.ShapeError, match="prev_precedence"):
        A.temporal_linkage_forward(np.zeros((2, 2, 5, 5)), np.zeros((2, 1, 5)), np.zeros((2, 2, 5)))
    with pytest.raises(rx.ShapeError, match="link"):
        A.directional_weights_forward(np.zeros((2, 2, 5, 4)), np.zeros((2, 2, 5)))


def test_read_mode_width_must_be_one_plus_two_nw():
    M = np.zeros((1, 5, 3))
    with pytest.raises(rx.ShapeError, match=r"read_modes: expected shape \(B, R, K\) = \(1, 2, 5\), got \(1, 2, 3\) "
                                            r"\(K = read_mode_width\(nw=2\) = 5\)"):
        A.read_weights_forward(M, np.zeros((1, 2, 3)), np.zeros((1, 2)), np.zeros((1, 2, 5, 5)),
                               np.zeros((1, 2, 5)), np.zeros((1, 2, 3)))


def test_unknown_convention():
    with pytest.raises(ValueError, match=r"convention: expected one of 'deepmind', 'paper', got 'graves'"):
        A.content_weights_forward(np.zeros((1, 2, 2)), np.zeros((1, 1, 2)), np.zeros((1, 1)), convention="graves")


def test_allocation_backward_uses_the_forwards_eps():
    """The cache keeps the forward's eps: the backward takes no eps (0.1 took one; that form warns)."""
    xp = rx.backend("numpy")
    u = xp.asarray([[0.1, 0.7, 0.4, 0.9]])
    d = xp.asarray([[0.3, -1.0, 0.5, 2.0]])
    _, cache = A.allocation_forward(u, eps=0.1)
    new = A.allocation_backward((d,), cache).usage
    with pytest.warns(DeprecationWarning, match="allocation_backward"):
        explicit = A.allocation_backward(d, cache, eps=0.1)
    assert np.array_equal(rx.to_numpy(new), rx.to_numpy(explicit))
    with pytest.warns(DeprecationWarning):
        other = A.allocation_backward(d, cache, eps=1e-6)
    assert not np.allclose(rx.to_numpy(new), rx.to_numpy(other))
    with pytest.raises(DomainError, match=r"eps: expected a finite number in \[0, 1\), got 1.0"):
        A.allocation_forward(u, eps=1.0)


# ----------------------------------------------------------------------------- cases and conventions


def test_a_case_names_a_convention_exactly_when_its_function_depends_on_one():
    """A function that takes a convention (or a config holding one) has a case per convention; one
    that takes none has the single case `any_convention`, whose config names no convention."""
    import importlib
    import inspect

    seen: dict[str, set] = {}
    for case in catalogue.cases():
        if case.module != "dnc":
            continue
        module, _, attr = case.function.rpartition(".")
        params = inspect.signature(getattr(importlib.import_module(module), attr)).parameters
        depends = "convention" in params or "cfg" in params
        assert ("convention" in case.config) == depends, case.name
        assert (case.variant == "any_convention") == (not depends), case.name
        if depends:
            seen.setdefault(case.function_name, set()).add(case.config["convention"])
    assert all(v == {"deepmind", "paper"} for v in seen.values()), seen
    free = {c.function_name for c in catalogue.cases() if c.module == "dnc" and c.variant == "any_convention"}
    assert free == {"allocation", "write_allocation_weights", "memory_update", "temporal_linkage",
                    "directional_weights", "sharpen"}


@pytest.mark.parametrize("backend", ["numpy", "array_api_strict"])
@pytest.mark.parametrize("N", [6, 40])
def test_link_outer_forms_are_the_broadcast_bit_for_bit(backend, N):
    """The link update's `1 - w_i - w_j` and `w_i p_j`, and the erase's `ww_i e_j` (BLAS products
    from 32 x 32 elements on, broadcasts below), and the whole link equal the broadcast expression
    times the off-diagonal mask exactly in float32 and float64 (issue 22: the goldens' float32
    tolerances are measured on these very operations); in complex128 to rounding (a complex BLAS
    product may fuse the multiply-adds of one complex product)."""
    xp = rx.backend(backend)
    rng = np.random.default_rng(N)
    for dtype in ("float32", "float64", "complex128"):
        def arr(shape):
            a = rng.uniform(0, 0.5 / N, shape)
            if dtype == "complex128":
                a = a + 1e-3j * rng.normal(size=shape)
            return xp.asarray(a.astype(dtype))

        def same(a, b):
            if dtype == "complex128":
                return np.allclose(rx.to_numpy(a), rx.to_numpy(b), rtol=1e-14, atol=0)
            return bool(xp.all(a == b))

        w, p, L = arr((3, 2, N)), arr((3, 2, N)), arr((3, 2, N, N))
        e = arr((3, 2, 5 * N))
        assert same(A._one_minus_sum(w), (1.0 - w[:, :, :, None]) - w[:, :, None, :])
        assert same(A._outer(w, p), w[:, :, :, None] * p[:, :, None, :])
        assert same(A._outer(w, e), w[:, :, :, None] * e[:, :, None, :])
        off = 1.0 - xp.eye(N, dtype=L.dtype)
        L = L * off
        link, precedence, _ = A.temporal_linkage(L, p, w)
        old = ((1.0 - w[:, :, :, None] - w[:, :, None, :]) * L + w[:, :, :, None] * p[:, :, None, :]) * off
        assert same(link, old), (dtype, N)
