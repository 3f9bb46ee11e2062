"""Finite in, finite out, for the DNC (issue 19 item 6): every input the specification does not
define is refused at the edge with one error naming the argument and the limit or invariant, and
every scale the edge accepts gives the right result (compared with a well-scaled equivalent)."""

import warnings

import numpy as np
import pytest

from refmem import xp as rx
from refmem.dnc import access as AC
from refmem.dnc import addressing as A
from refmem.dnc import core
from refmem.dnc.params import DNCConfig, init_params
from refmem.errors import DomainError, DTypeError
from refmem.validation import probing

B, N, W, H = 2, 5, 3, 2


def _lookup(rng):
    return rng.normal(size=(B, N, W)), rng.normal(size=(B, H, W)), rng.uniform(0.5, 2.0, size=(B, H))


def _naive_content(M, k, s):
    """SPEC §1's cosine written out in float64 (no overflow below the limit), then the softmax."""
    eps = 1e-6
    kn = np.sqrt(np.sum(k * k, -1) + eps)[:, :, None]
    mn = np.sqrt(np.sum(M * M, -1) + eps)[:, None, :]
    cos = np.einsum("bhw,bnw->bhn", k, M) / (kn * mn + eps)
    z = np.logaddexp(0.0, s)[:, :, None] * cos
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


@pytest.mark.parametrize("dtype, scale", [(np.float64, 1e155), (np.float32, 1e19)])
def test_content_weights_refuse_a_memory_beyond_the_cosine_limit(dtype, scale):
    """0.1 returned uniform weights and a NaN gradient here (the squared norms overflow)."""
    M, k, s = (x.astype(dtype) for x in _lookup(np.random.default_rng(0)))
    limit = A.cosine_limit(dtype)
    assert limit == pytest.approx(float(np.finfo(dtype).max) ** 0.25)
    with pytest.raises(DomainError) as info:
        A.content_weights_forward(M * dtype(scale), k, s)
    msg = str(info.value)
    assert msg.startswith("memory: expected every row of norm below") and f"{limit:.3g}" in msg
    with pytest.raises(DomainError, match="^keys: expected every key of norm below"):
        A.content_weights_forward(M, k * dtype(scale), s)
    with pytest.raises(DomainError, match="^memory: expected every row"):
        A.masked_content_weights_forward(M * dtype(scale), k, s, np.full((B, H, W), 0.5, dtype=dtype))


@pytest.mark.parametrize("dtype, scale", [(np.float64, 1e70), (np.float32, 1e8)])
def test_content_weights_below_the_limit_are_right(dtype, scale):
    """Just below the limit the weights are those of the unscaled memory (the cosine is scale-free
    up to its epsilons) and the gradients scale as 1/scale."""
    M, k, s = _lookup(np.random.default_rng(1))
    M, k, s = (x.astype(dtype) for x in (M, k, s))
    big = M * dtype(scale)
    assert float(np.max(np.linalg.norm(big.astype(np.float64), axis=-1))) < A.cosine_limit(dtype)
    (w_big,), c_big = A.content_weights_forward(big, k, s)
    (w,), c = A.content_weights_forward(M, k, s)
    rtol = 1e-5 if dtype == np.float64 else 1e-4  # the epsilons of n(m) at |m| ~ 1, and float32 rounding
    np.testing.assert_allclose(w_big, w, rtol=rtol, atol=rtol)
    if dtype == np.float64:
        np.testing.assert_allclose(w_big, _naive_content(big, k, s), rtol=1e-12, atol=1e-15)
    d = np.random.default_rng(2).normal(size=w.shape).astype(dtype)
    g_big = A.content_weights_backward((d,), c_big)
    g = A.content_weights_backward((d,), c)
    for x in g_big:
        assert np.all(np.isfinite(x))
    np.testing.assert_allclose(g_big.memory * dtype(scale), g.memory, rtol=10 * rtol, atol=10 * rtol)
    np.testing.assert_allclose(g_big.keys, g.keys, rtol=10 * rtol, atol=10 * rtol)
    np.testing.assert_allclose(g_big.strengths, g.strengths, rtol=10 * rtol, atol=10 * rtol)


def _access_inputs(cfg, seed=0):
    r = np.random.default_rng(seed)
    I = cfg.interface_size
    return (r.normal(size=(B, 4)), 0.3 * r.normal(size=(4, I)), 0.1 * r.normal(size=I),
            AC.initial_state(rx.backend("numpy"), B, cfg))


def test_access_step_refuses_controller_outputs_beyond_the_limit():
    """0.1 returned non-finite values for controller outputs x 1e300."""
    cfg = AC.AccessConfig(N=N, W=W, R=2, nw=1)
    h, W_xi, b_xi, state = _access_inputs(cfg)
    (rv, new), _ = AC.access_step_forward(h, W_xi, b_xi, state, cfg=cfg)
    assert all(np.all(np.isfinite(x)) for x in (rv, *new))
    with pytest.raises(DomainError) as info:
        AC.access_step_forward(h * 1e300, W_xi, b_xi, state, cfg=cfg)
    msg = str(info.value)
    assert msg.startswith("controller_output") and f"{A.cosine_limit(np.float64):.3g}" in msg
    # a memory beyond the limit in the state is named as such
    with pytest.raises(DomainError, match="^state.memory: expected every row of norm below"):
        AC.access_step_forward(h, W_xi, b_xi, state._replace(memory=np.full((B, N, W), 1e100)), cfg=cfg)


def test_access_step_at_a_large_scale_below_the_limit_is_finite_and_scale_free():
    """Controller outputs x 1e40 give keys and write vectors near 1e40: finite, and the read
    weights are those of the well-scaled step up to the cosine's epsilons."""
    cfg = AC.AccessConfig(N=N, W=W, R=2, nw=1)
    h, W_xi, b_xi, state = _access_inputs(cfg, seed=3)
    (rv, new), cache = AC.access_step_forward(h * 1e40, W_xi, b_xi * 1e40, state, cfg=cfg)
    assert all(np.all(np.isfinite(x)) for x in (rv, *new))
    g = AC.access_step_backward((np.ones(rv.shape), None), cache)
    assert all(np.all(np.isfinite(x)) for x in (*g[:3], *g.state))


def test_sharpen_eps_must_be_positive():
    """0.1 accepted eps <= 0 and returned NaN."""
    d = np.full((B, 2, 1, N), 1.0 / N)
    d[..., 0] = 0.0
    s = np.full((B, 2), 2.0)
    for eps in (0.0, -1e-6):
        with pytest.raises(DomainError, match=r"^eps: expected a finite number > 0, got"):
            A.sharpen_forward(d, s, eps=eps)
    (out,), _ = A.sharpen_forward(d, s, eps=1e-3)
    assert np.all(np.isfinite(out))


@pytest.mark.parametrize("field, value", [("skip", "False"), ("masked_content", 1), ("layers", 2.0),
                                          ("convention", b"paper")])
def test_dnc_config_fields_are_validated_strictly(field, value):
    """0.1 took DNCConfig(skip="False") as True."""
    with pytest.raises((DTypeError, DomainError), match=f"^DNCConfig.{field}: expected"):
        DNCConfig(D=2, Y=2, **{field: value})


def _read_inputs(rng):
    nw = 1
    L = rng.uniform(0.0, 0.2, size=(B, nw, N, N)) * (1 - np.eye(N))
    modes = rng.dirichlet(np.ones(1 + 2 * nw), size=(B, 2))
    return dict(memory=rng.normal(size=(B, N, W)), read_keys=rng.normal(size=(B, 2, W)),
                read_strengths=rng.normal(size=(B, 2)), link=L,
                prev_read_weights=rng.dirichlet(np.ones(N), size=(B, 2)) * 0.9, read_modes=modes)


def test_read_modes_must_sum_to_one():
    """0.1 accepted read modes summing to 0.5."""
    args = _read_inputs(np.random.default_rng(4))
    A.read_weights_forward(**args)
    args["read_modes"] = 0.5 * args["read_modes"]
    with pytest.raises(DomainError, match=r"^read_modes: expected rows summing to 1 over the last axis .* got a sum "
                                          r"of 0.5\d* at \[0, 0\]"):
        A.read_weights_forward(**args)


def test_a_link_with_a_non_zero_diagonal_is_refused():
    """0.1 accepted it silently."""
    args = _read_inputs(np.random.default_rng(5))
    args["link"] = args["link"].copy()
    args["link"][1, 0, 3, 3] = 0.125
    with pytest.raises(DomainError, match=r"^link: expected a zero diagonal \(L\[i, i\] = 0.* got 0.125 at "
                                          r"\[1, 0, 3, 3\]"):
        A.read_weights_forward(**args)
    with pytest.raises(DomainError, match=r"^prev_link: expected a zero diagonal"):
        A.temporal_linkage_forward(args["link"], np.zeros((B, 1, N)), np.zeros((B, 1, N)))
    cfg = AC.AccessConfig(N=N, W=W, R=2, nw=1)
    h, W_xi, b_xi, state = _access_inputs(cfg)
    with pytest.raises(DomainError, match=r"^state.link: expected a zero diagonal"):
        AC.access_step_forward(h, W_xi, b_xi, state._replace(link=args["link"]), cfg=cfg)


def test_weightings_must_sum_to_at_most_one():
    args = _read_inputs(np.random.default_rng(6))
    args["prev_read_weights"] = args["prev_read_weights"] * 1.5
    with pytest.raises(DomainError, match=r"^prev_read_weights: expected rows summing to at most 1"):
        A.read_weights_forward(**args)
    cfg = DNCConfig(D=2, Y=2, hidden=3, N=N, W=W, R=2)
    params = init_params(rx.backend("numpy"), cfg)
    x = np.zeros((B, 3, 2))
    fw = np.full((B, 3, 1, N), 0.4)
    with pytest.raises(DomainError, match=r"^frozen_write_weights: expected rows summing to at most 1"):
        core.unroll_forward(x, params, cfg=cfg, frozen_write_weights=fw)


def test_the_invariants_are_off_while_probing():
    """The gradient checks step inputs off the sample (SPEC §6): inside probing() only the invariants
    and the [0, 1] ranges are off; the shapes and finiteness are still checked."""
    args = _read_inputs(np.random.default_rng(7))
    args["read_modes"] = args["read_modes"] + 2.0 ** -20
    args["link"] = args["link"] + 2.0 ** -20
    with probing():
        A.read_weights_forward(**args)
        with pytest.raises(DomainError, match="finite"):
            A.read_weights_forward(**{**args, "memory": np.full((B, N, W), np.nan)})


def test_the_finiteness_check_refuses_any_infinity_or_nan_and_names_its_array():
    """`_require_finite` tests every array in one pass and one sync (no arithmetic: no overflow, and no
    warning, for large finite values); a non-finite value is then named with its array."""
    big = np.full((3, 4), np.finfo(np.float32).max / 2, dtype=np.float32)  # a plain sum would overflow float32
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        AC._require_finite("x", "the test", [("big", big), ("small", np.ones(3, np.float32))], np.dtype(np.float32))
    for bad in (np.nan, np.inf, -np.inf):
        v = np.ones(5)
        v[3] = bad
        with pytest.raises(DomainError, match=r"^x: the test overflows float64 at this scale \(v is not finite\)"):
            AC._require_finite("x", "the test", [("u", np.ones(2)), ("v", v)], np.dtype(np.float64))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_row_of_entries_each_below_the_limit_whose_norm_reaches_it_is_refused(dtype):
    """The norm check's shortcut (`max |x| < limit / sqrt(W)`) is not taken here: every entry is below
    the limit but the row's norm is above it."""
    limit = A.cosine_limit(dtype)
    x = np.full((2, 4), 0.6 * limit, dtype=dtype)  # norm 1.2 limit
    x[0] = 1.0
    with pytest.raises(DomainError, match=r"^m: expected every row of norm below .* got a norm of .* at \[1\]"):
        A._require_norms("m", x)
    A._require_norms("m", x * dtype(0.8))  # norm 0.96 limit


@pytest.mark.parametrize("name", ["dnc/access_step/deepmind", "dnc/content_weights/paper", "dnc/core_unroll/paper"])
def test_the_edge_checks_let_the_emulated_float32_runs_go_side_by_side(name):
    """The edge checks read only booleans, which every emulated float32 run agrees on: a float read
    from an array differs by run and sends the tolerance measurement (golden export and check) one
    run at a time, eight times its cost."""
    from refmem import catalogue, golden
    from refmem import emulated32 as E
    from refmem.golden import tolerances

    runs = sorted(tolerances.RUNS, key=lambda r: E.ROUNDINGS.index(r[0]))  # as float32_runs orders them
    with np.errstate(all="ignore"):
        tolerances._side_by_side(catalogue.get_case(name), golden.load(name).tensors, tuple(runs))  # no E.Diverged
