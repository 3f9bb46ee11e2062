"""SPEC §1 pairs under the backward rule: outputs, None cotangents, the maths helpers, the 0.1 call forms.

The values and gradients themselves are checked element by element by the catalogue cases
(`refmem check --module primitives`, tests/test_catalogue.py); here: that each public pair
returns its named types, that a `None` cotangent is zero, that the checked pair computes exactly
what the unchecked maths helper computes, and that the 0.1 backward call form still gives the
0.1 result with a DeprecationWarning.
"""

import warnings

import numpy as np
import pytest

from refmem import primitives as P
from refmem.errors import DTypeError, ShapeError

rng = np.random.default_rng(3)
X = rng.normal(size=(3, 4))
D = rng.normal(size=(3, 4))

UNARY = [
    ("sigmoid", P.sigmoid_forward, P.sigmoid_backward, P.SigmoidOutputs, P.SigmoidCache, P.SigmoidGrads,
     lambda x: P.sigmoid(x), lambda d, x: P.sigmoid_vjp(d, P.sigmoid(x))),
    ("tanh", P.tanh_forward, P.tanh_backward, P.TanhOutputs, P.TanhCache, P.TanhGrads,
     lambda x: np.tanh(x), lambda d, x: P.tanh_vjp(d, np.tanh(x))),
    ("softplus", P.softplus_forward, P.softplus_backward, P.SoftplusOutputs, P.SoftplusCache, P.SoftplusGrads,
     lambda x: P.softplus(x), lambda d, x: P.softplus_vjp(d, x)),
    ("oneplus", P.oneplus_forward, P.oneplus_backward, P.OneplusOutputs, P.OneplusCache, P.OneplusGrads,
     lambda x: P.oneplus(x), lambda d, x: P.softplus_vjp(d, x)),
    ("softmax", P.softmax_forward, P.softmax_backward, P.SoftmaxOutputs, P.SoftmaxCache, P.SoftmaxGrads,
     lambda x: P.softmax(x, axis=-1), lambda d, x: P.softmax_vjp(d, P.softmax(x, axis=-1), -1)),
    ("exclusive_cumprod", P.exclusive_cumprod_forward, P.exclusive_cumprod_backward, P.ExclusiveCumprodOutputs,
     P.ExclusiveCumprodCache, P.ExclusiveCumprodGrads,
     lambda x: P.exclusive_cumprod(x, axis=-1), lambda d, x: P.exclusive_cumprod_vjp(d, x, -1)),
]


@pytest.mark.parametrize("name,fwd,bwd,outputs,cache_type,grads,value,vjp", UNARY, ids=[u[0] for u in UNARY])
def test_a_unary_pair_returns_its_types_and_the_maths_helpers_values(name, fwd, bwd, outputs, cache_type, grads,
                                                                     value, vjp):
    out, cache = fwd(X)
    assert type(out) is outputs and type(cache) is cache_type
    np.testing.assert_array_equal(out.out, value(X))
    g = bwd(outputs(D), cache)
    assert type(g) is grads and g._fields == ("x",)
    np.testing.assert_array_equal(g.x, vjp(D, X))
    np.testing.assert_array_equal(bwd((D,), cache).x, g.x)  # a plain tuple stands for the NamedTuple
    np.testing.assert_array_equal(bwd((None,), cache).x, np.zeros_like(X))  # None: zero


@pytest.mark.parametrize("name,fwd,bwd,outputs,cache_type,grads,value,vjp", UNARY, ids=[u[0] for u in UNARY])
def test_the_01_call_form_warns_and_returns_the_01_result(name, fwd, bwd, outputs, cache_type, grads, value, vjp):
    _, cache = fwd(X)
    with pytest.warns(DeprecationWarning, match=rf"{name}_backward\(d_out_array, cache\) is the refmem 0.1 call form"):
        dx = bwd(D, cache)
    np.testing.assert_array_equal(dx, vjp(D, X))
    with pytest.warns(DeprecationWarning):  # the 0.1 form is checked as well
        with pytest.raises(ShapeError, match=r"^d_out\.out: expected shape"):
            bwd(D[0], cache)


def test_the_01_cumprod_cache_tuple_is_still_accepted_in_the_01_form():
    with pytest.warns(DeprecationWarning):
        dx = P.exclusive_cumprod_backward(D, (X, -1))
    np.testing.assert_array_equal(dx, P.exclusive_cumprod_vjp(D, X, -1))


def test_the_new_form_by_keyword_does_not_warn():
    _, cache = P.sigmoid_forward(X)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert P.sigmoid_backward(d_out=(D,), cache=cache).x.shape == X.shape
    with pytest.raises(TypeError, match=r"takes the two arguments \(d_out, cache\)"):
        P.sigmoid_backward(D, cache, 1)


def test_options_are_keyword_only():
    with pytest.raises(TypeError):
        P.softmax_forward(X, -1)
    with pytest.raises(TypeError):
        P.exclusive_cumprod_forward(X, -1)
    with pytest.raises(TypeError):
        P.cosine_forward(rng.normal(size=(2, 3, 4)), rng.normal(size=(2, 5, 4)), 1e-6)


def test_cosine_pair():
    keys, memory = rng.normal(size=(2, 3, 4)), rng.normal(size=(2, 5, 4))
    out, cache = P.cosine_forward(keys, memory)
    sim, cache2 = P.cosine_similarity(keys, memory)
    np.testing.assert_array_equal(out.similarity, sim)
    d = rng.normal(size=(2, 3, 5))
    g = P.cosine_backward((d,), cache)
    assert g._fields == ("keys", "memory")
    for a, b in zip(g, P.cosine_vjp(d, cache2)):
        np.testing.assert_array_equal(a, b)
    zero = P.cosine_backward((None,), cache)
    assert not zero.keys.any() and not zero.memory.any() and zero.memory.shape == memory.shape
    with pytest.warns(DeprecationWarning):
        dk, dm = P.cosine_backward(d, cache)
    np.testing.assert_array_equal(dk, g.keys)


def test_linear_pair_and_its_optional_bias():
    x, W, b = rng.normal(size=(2, 3, 4)), rng.normal(size=(4, 5)), rng.normal(size=5)
    out, cache = P.linear_forward(x, W, b)
    np.testing.assert_array_equal(out.out, P.linear(x, W, b))
    np.testing.assert_array_equal(P.linear_forward(x, W)[0].out, x @ W)
    d = rng.normal(size=(2, 3, 5))
    g = P.linear_backward((d,), cache)
    assert g._fields == ("x", "W", "b")
    for a, want in zip(g, P.linear_vjp(d, x, W)):
        np.testing.assert_array_equal(a, want)
    zero = P.linear_backward((None,), cache)
    assert [z.shape for z in zero] == [(2, 3, 4), (4, 5), (5,)] and not any(z.any() for z in zero)
    with pytest.raises(ShapeError, match=r"^d_out\.out: expected shape \(\.\.\., D_out\) with \.\.\. = \(2, 3\)"):
        P.linear_backward((d[0],), cache)
    with pytest.raises(DTypeError, match=r"^d_out\.out: expected the precision of cache\.x \(float64\), got float32"):
        P.linear_backward((d.astype(np.float32),), cache)
