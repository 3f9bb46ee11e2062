"""Property tests (Hypothesis, profile ``ci`` of tests/conftest.py).

Generic over the catalogue: every case, including cases added later by any
family, gets a directional ``vᵀJu`` check and a linearity check of its backward
at drawn sizes and seeds (the suite's one linearity test). Plus properties of the primitives (softmax rows, the
exclusive cumulative product at a zero factor) and of the strategies themselves.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from refmem import catalogue, gradcheck, primitives
from refmem import strategies as rst
from refmem import primitives as P
from refmem import xp as rx

ALL = catalogue.cases()
IDS = [c.name for c in ALL]
NP = rx.backend("numpy")

#: Examples per catalogue case: a fifth of the loaded profile's (``ci``: 15 -> 3), at least 2.
PER_CASE = settings(max_examples=max(2, settings.default.max_examples // 5))


def _passed(records):
    bad = [r for r in records if not r.passed]
    assert records, "no check ran"
    assert not bad, "\n".join(
        f"{r.case} {r.tensor} {r.method}: max_abs {r.max_abs_err:.2e} normwise {r.normwise_rel_err:.2e}" for r in bad
    )


# ----------------------------------------------------------------------------- every catalogue case


@pytest.mark.parametrize("case", ALL, ids=IDS)
def test_directional_at_drawn_sizes(case):
    """``vᵀJu`` by central differences equals the backward's, at drawn sizes and seeds (SPEC §6)."""

    @PER_CASE
    @given(sizes=rst.sizes_for(case), seed=rst.seeds())
    def check(sizes, seed):
        _passed(gradcheck.check_case(case, NP, seed=seed, sizes=sizes, methods=("directional",)))

    check()


@pytest.mark.parametrize("case", ALL, ids=IDS)
def test_backward_linear_in_cotangent_at_drawn_sizes(case):
    """``backward(a u + b v) = a backward(u) + b backward(v)`` at drawn sizes, seeds and coefficients."""

    @PER_CASE
    @given(drawn=rst.case_inputs(case, NP), a=st.floats(-3, 3), b=st.floats(-3, 3))
    def check(drawn, a, b):
        assert nonlinear(case, drawn.arrays, drawn.seed, a, b) == []

    check()


def nonlinear(case, arrays, seed, a, b) -> list[str]:
    """The gradients for which ``backward(a u + b v) != a backward(u) + b backward(v)`` (``[]``: none)."""
    out = {k: rx.to_numpy(v) for k, v in case.forward(arrays).outputs.items()}
    u = gradcheck.cotangents_for(out, seed)
    v = gradcheck.cotangents_for(out, seed + 1)
    w = {k: a * u[k] + b * v[k] for k in u}
    gu, gv, gw = (case.backward(arrays, {k: NP.asarray(c[k]) for k in c}) for c in (u, v, w))
    if set(gw) != set(case.differentiable(arrays)):
        return [f"gradients {sorted(gw)}, expected {sorted(case.differentiable(arrays))}"]
    bad = []
    for k in gw:
        expect = a * rx.to_numpy(gu[k]) + b * rx.to_numpy(gv[k])
        scale = np.abs(a * rx.to_numpy(gu[k])) + np.abs(b * rx.to_numpy(gv[k]))
        # the two sides differ only by the rounding of the summations inside the backward
        if not np.all(np.abs(rx.to_numpy(gw[k]) - expect) <= 1e-12 * (1.0 + scale)):
            bad.append(k)
    return bad


def test_the_linearity_check_catches_an_affine_backward():
    """A backward that adds a constant (here: a bias in one gradient) is affine, not linear: caught."""
    import dataclasses

    case = catalogue.get_case("memory_lstm/step/default")
    arrays = case.draw(NP, 0)

    def affine(arrays_, cot):
        g = dict(case.backward(arrays_, cot))
        g["params/b_e"] = g["params/b_e"] + 1e-6
        return g

    assert nonlinear(case, arrays, 0, 2.0, -0.5) == []
    assert nonlinear(dataclasses.replace(case, backward=affine), arrays, 0, 2.0, -0.5) == ["params/b_e"]


# ----------------------------------------------------------------------------- softmax


@given(x=rst.finite_arrays(rst.shapes(2, max_side=6), low=-1e4, high=1e4))
@example(x=np.array([[1e4, -1e4, 0.0], [-1e4, -1e4, -1e4], [1e4, 1e4, -1e4]]))
def test_softmax_rows_are_probabilities(x):
    """Rows of ``softmax`` are in ``[0, 1]`` and sum to 1, even for energies of ±1e4 (SPEC §1)."""
    for fn in (lambda a: rx.softmax(a, axis=-1), lambda a: primitives.softmax_forward(a, axis=-1)[0].out):
        p = rx.to_numpy(fn(NP.asarray(x)))
        assert np.all(np.isfinite(p))
        assert np.all((p >= 0.0) & (p <= 1.0))
        np.testing.assert_allclose(p.sum(axis=-1), 1.0, rtol=0, atol=1e-12)


@given(x=rst.finite_arrays(rst.shapes(2, max_side=5), low=-1e4, high=1e4))
def test_softmax_rows_strict_backend(x):
    """The same under array-api-strict, and the same numbers as NumPy."""
    strict = pytest.importorskip("array_api_strict")
    p = np.asarray(rx.softmax(strict.asarray(x), axis=-1))
    np.testing.assert_allclose(p.sum(axis=-1), 1.0, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(p, rx.to_numpy(rx.softmax(NP.asarray(x), axis=-1)))


@given(p=rst.probability_rows(rst.shapes(2, max_side=6)), g=st.data())
def test_softmax_backward_is_orthogonal_to_ones(p, g):
    """``softmax_backward`` returns rows summing to 0 (the softmax is shift-invariant)."""
    d = g.draw(rst.finite_arrays(p.shape, low=-5, high=5))
    dx = rx.to_numpy(P.softmax_backward((NP.asarray(d),), P.SoftmaxCache(NP.asarray(p), -1)).x)
    np.testing.assert_allclose(dx.sum(axis=-1), 0.0, rtol=0, atol=1e-12 * (1 + np.abs(d).sum()))


# ----------------------------------------------------------------------------- exclusive cumprod


def _cumprod_vjp_by_products(g: np.ndarray, x: np.ndarray) -> np.ndarray:
    """``∂L/∂x_i = Σ_{j>i} g_j Π_{k<j, k≠i} x_k``, term by term (rows of ``[..., n]``)."""
    n = x.shape[-1]
    out = np.zeros_like(x)
    for i in range(n):
        for j in range(i + 1, n):
            keep = [k for k in range(j) if k != i]
            out[..., i] += g[..., j] * np.prod(x[..., keep], axis=-1)
    return out


@given(
    x=rst.finite_arrays(rst.shapes(2, min_side=1, max_side=6), low=-2, high=2),
    where=st.data(),
)
def test_exclusive_cumprod_backward_with_a_zero_factor(x, where):
    """One or two zero factors give a finite gradient equal to the exact products (no division)."""
    n = x.shape[-1]
    cols = where.draw(st.lists(st.integers(0, n - 1), min_size=1, max_size=2), label="zeros at")
    x = x.copy()
    x[:, cols] = 0.0
    g = where.draw(rst.finite_arrays(x.shape, low=-3, high=3), label="cotangent")
    got = rx.to_numpy(P.exclusive_cumprod_vjp(NP.asarray(g), NP.asarray(x), -1))
    want = _cumprod_vjp_by_products(g, x)
    assert np.all(np.isfinite(got))
    np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-13 * (1 + np.abs(want).max()))
    # the products of the primitive pair agree as well
    _, cache = primitives.exclusive_cumprod_forward(NP.asarray(x), axis=-1)
    np.testing.assert_array_equal(rx.to_numpy(primitives.exclusive_cumprod_backward((NP.asarray(g),), cache).x), got)


@given(x=rst.finite_arrays(rst.shapes(3, max_side=4), low=-2, high=2), data=st.data())
def test_exclusive_cumprod_backward_along_any_axis(x, data):
    """Along a drawn axis the VJP equals the last-axis VJP of the moved array."""
    axis = data.draw(st.integers(0, 2), label="axis")
    g = data.draw(rst.finite_arrays(x.shape, low=-3, high=3), label="cotangent")
    got = rx.to_numpy(P.exclusive_cumprod_backward((NP.asarray(g),), P.ExclusiveCumprodCache(NP.asarray(x), axis)).x)
    want = np.moveaxis(_cumprod_vjp_by_products(np.moveaxis(g, axis, -1), np.moveaxis(x, axis, -1)), -1, axis)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12 * (1 + np.abs(want).max()))


# ----------------------------------------------------------------------------- the strategies


@given(x=rst.finite_arrays((3, 4), low=-1.5, high=2.5))
def test_finite_arrays_are_float32_representable(x):
    assert x.dtype == np.float64 and x.shape == (3, 4)
    assert np.all((x >= -1.5) & (x <= 2.5))
    np.testing.assert_array_equal(x.astype(np.float32).astype(np.float64), x)


@given(p=rst.probability_rows(rst.shapes(3, max_side=5), min_prob=0.01))
def test_probability_rows(p):
    assert np.all(p >= 0.01 - 1e-15)
    np.testing.assert_allclose(p.sum(axis=-1), 1.0, rtol=0, atol=1e-12)


@given(data=st.data(), shape=rst.shapes(2, max_side=8))
def test_separated_values_keep_their_gap(data, shape):
    gap = 0.04
    v = data.draw(rst.separated_values(shape, low=0.0, high=1.0, gap=gap))
    assert v.shape == shape and np.all((v >= 0.0) & (v <= 1.0))
    np.testing.assert_array_equal(v.astype(np.float32).astype(np.float64), v)
    s = np.sort(v, axis=-1)
    assert np.all(np.diff(s, axis=-1) >= gap)


def test_separated_values_refuse_an_impossible_gap():
    with pytest.raises(ValueError, match="cannot keep gaps"):
        rst.separated_values((2, 20), 0.0, 1.0, gap=0.1)


@pytest.mark.parametrize("case", ALL[:1] + [c for c in ALL if c.module == "memory_lstm"], ids=lambda c: c.name)
def test_sizes_for_respects_bounds(case):
    @settings(max_examples=10)
    @given(sizes=rst.sizes_for(case, extra=2, fixed={next(iter(case.sizes)): 1}))
    def check(sizes):
        assert set(sizes) == set(case.sizes)
        first = next(iter(case.sizes))
        assert sizes[first] == 1
        for k, v in sizes.items():
            assert case.min_sizes.get(k, 1) <= v <= max(case.min_sizes.get(k, 1), case.sizes[k] + 2)

    check()


def test_strategies_accept_a_namespace():
    strict = pytest.importorskip("array_api_strict")

    @settings(max_examples=3)
    @given(x=rst.finite_arrays((2, 3), xp=strict), p=rst.probability_rows((2, 3), xp=strict))
    def check(x, p):
        assert rx.backend_name(rx.namespace(x, p)) == "array_api_strict"

    check()


# ----------------------------------------------------------------------------- the check has teeth


@pytest.mark.parametrize("error", ["scaled", "zero", "swapped", "no_shift"])
@given(seed=rst.seeds())
@settings(max_examples=5)
def test_directional_check_catches_a_wrong_backward(error, seed):
    """``vᵀJu`` fails for a backward with one tensor off by 1%, one returning zeros, one with
    two rows of a gradient swapped (same norm, wrong direction), and one that forgets the
    memory shift of SPEC §4 (the gradient of ``memory[:, k + 1]`` reaching ``memory_prev[:, k]``)."""
    import dataclasses

    case = catalogue.get_case("memory_lstm/step/default")

    def wrong(arrays, cot):
        g = dict(case.backward(arrays, cot))
        if error == "scaled":
            g["params/U_e"] = g["params/U_e"] * 1.01
        elif error == "zero":
            g = {k: NP.zeros_like(v) for k, v in g.items()}
        elif error == "swapped":
            w = rx.to_numpy(g["params/W_i"]).copy()
            w[[0, 1]] = w[[1, 0]]
            g["params/W_i"] = NP.asarray(w)
        else:
            d = rx.to_numpy(cot["memory"])
            shift = np.concatenate([d[:, 1:], np.zeros_like(d[:, :1])], axis=1)
            g["state/memory_prev"] = g["state/memory_prev"] - NP.asarray(shift)
        return g

    records = gradcheck.check_case(dataclasses.replace(case, backward=wrong), NP, seed=seed, methods=("directional",))
    assert records and not any(r.passed for r in records)
