"""SPEC §2 and §3: properties of the attention family beyond the generic catalogue checks.

The catalogue tests (tests/test_catalogue.py) already prove every backward by
central differences and the complex step. Here: shapes and errors, the mask, the
initialisers, the single-step/sequence agreement, energies of ±1e4, and the plot.
"""

from __future__ import annotations

import numpy as np
import pytest

from refmem import catalogue
from refmem import xp as rx
from refmem.errors import DomainError, DTypeError
from refmem.attention import bahdanau as BD
from refmem.attention import luong as LU

NP = rx.backend("numpy")


def _draw(name, seed=0, xp=NP):
    case = catalogue.get_case(name)
    return case, case.draw(xp, seed)


def _bd_params(arrays):
    return BD.DecoderParams(**{n: arrays[f"params/{n}"] for n in BD.PARAM_NAMES})


# ----------------------------------------------------------------------------- Bahdanau


@pytest.mark.parametrize("output_state", BD.OUTPUT_STATES)
def test_decoder_shapes_and_probabilities(output_state):
    _, a = _draw(f"attention/bahdanau_decoder/{output_state}")
    out, _ = BD.decoder_forward(a["inputs/h"], _bd_params(a), output_state=output_state)
    B, T, D = a["inputs/h"].shape
    H, K = a["params/W_a"].shape[0], a["params/W_o"].shape[0]
    assert out.y.shape == (B, T, K) and out.alpha.shape == (B, T, T) and out.s.shape == (B, T, H)
    np.testing.assert_allclose(np.sum(out.y, axis=-1), 1.0, rtol=0, atol=1e-14)
    np.testing.assert_allclose(np.sum(out.alpha, axis=-1), 1.0, rtol=0, atol=1e-14)


def test_output_state_variants_differ_only_in_equation_8():
    """Same states and attention (eqs 1-7 do not read y_t's own s_*) at step 1, different y."""
    _, a = _draw("attention/bahdanau_decoder/previous")
    p = _bd_params(a)
    prev, _ = BD.decoder_forward(a["inputs/h"], p, output_state="previous")
    cur, _ = BD.decoder_forward(a["inputs/h"], p, output_state="current")
    np.testing.assert_array_equal(prev.alpha[:, 0], cur.alpha[:, 0])
    np.testing.assert_array_equal(prev.s[:, 0], cur.s[:, 0])
    assert np.max(np.abs(prev.y[:, 0] - cur.y[:, 0])) > 1e-3


def test_step_by_step_equals_the_unroll():
    """Calling the step pair by hand reproduces decoder_forward and decoder_backward."""
    _, a = _draw("attention/bahdanau_decoder/current")
    h, p = a["inputs/h"], _bd_params(a)
    out, cache = BD.decoder_forward(h, p, output_state="current")
    B, T, _ = h.shape
    s = np.tanh(h[:, 0] @ p.W_s)
    y = np.zeros((B, p.W_o.shape[0]))
    uh = h @ p.U_a + p.b_a
    for t in range(T):
        (y, alpha, s), _ = BD.decoder_step_forward(y, s, h, uh, p, output_state="current")
        np.testing.assert_array_equal(y, out.y[:, t])
        np.testing.assert_array_equal(s, out.s[:, t])
        np.testing.assert_array_equal(alpha, out.alpha[:, t])


def test_mask_gives_exact_zeros_and_no_gradient_through_attention():
    case, a = _draw("attention/bahdanau_decoder/previous_masked", seed=3)
    mask = a["inputs/mask"]
    assert np.any(mask == 0), "the sampled mask should mask something"
    out, cache = BD.decoder_forward(a["inputs/h"], _bd_params(a), output_state="previous", mask=mask)
    masked = np.broadcast_to(mask[:, None, :] == 0, out.alpha.shape)
    assert np.all(out.alpha[masked] == 0.0)
    np.testing.assert_allclose(np.sum(out.alpha, axis=-1), 1.0, rtol=0, atol=1e-14)
    rng = np.random.default_rng(0)
    g = BD.decoder_backward((rng.normal(size=out.y.shape), rng.normal(size=out.alpha.shape),
                             rng.normal(size=out.s.shape)), cache)
    # masked annotations (positions j ≥ length ≥ 1) reach the loss only through attention
    assert np.all(g.h[mask == 0] == 0.0)
    assert np.any(g.h[mask == 1] != 0.0)
    # a boolean mask gives the same numbers
    out_b, _ = BD.decoder_forward(a["inputs/h"], _bd_params(a), output_state="previous", mask=mask != 0)
    np.testing.assert_array_equal(out_b.y, out.y)


def test_a_fully_masked_row_gives_zero_weights_not_nan():
    _, a = _draw("attention/bahdanau_decoder/previous")
    mask = np.ones(a["inputs/h"].shape[:2])
    mask[0] = 0.0
    out, cache = BD.decoder_forward(a["inputs/h"], _bd_params(a), output_state="previous", mask=mask)
    assert np.all(out.alpha[0] == 0.0) and np.all(np.isfinite(out.y))
    g = BD.decoder_backward((np.ones_like(out.y), np.ones_like(out.alpha), np.ones_like(out.s)), cache)
    assert all(np.all(np.isfinite(v)) for v in (g.h, *g.params))


def test_teacher_forcing_reads_y_prev():
    """With y_prev equal to the free-running feedback, teacher forcing changes nothing."""
    _, a = _draw("attention/bahdanau_decoder/previous")
    h, p = a["inputs/h"], _bd_params(a)
    free, _ = BD.decoder_forward(h, p, output_state="previous")
    fed = np.concatenate([np.zeros_like(free.y[:, :1]), free.y[:, :-1]], axis=1)
    forced, cache = BD.decoder_forward(h, p, fed, output_state="previous")
    np.testing.assert_allclose(forced.y, free.y, rtol=0, atol=1e-15)
    g = BD.decoder_backward((np.ones_like(forced.y), None, None), cache)
    assert g.y_prev.shape == fed.shape


def test_decoder_refuses_wrong_shapes():
    _, a = _draw("attention/bahdanau_decoder/previous")
    p = _bd_params(a)
    D, H = p.U_a.shape
    with pytest.raises(rx.ShapeError, match=r"C_r: expected shape \(D, H\) = \(3, 3\), got \(4, 3\)"):
        BD.decoder_forward(a["inputs/h"], p._replace(C_r=np.zeros((D + 1, H))))
    with pytest.raises(rx.ShapeError, match=r"W_s"):
        BD.decoder_forward(a["inputs/h"], p._replace(W_s=np.zeros((H, D + 2))))
    with pytest.raises(rx.ShapeError, match=r"h: expected shape \(B, T, D\)"):
        BD.decoder_forward(a["inputs/h"][0], p)
    with pytest.raises(rx.ShapeError, match=r"mask: expected shape \(B, T\)"):
        BD.decoder_forward(a["inputs/h"], p, mask=np.ones((2, 2)))
    with pytest.raises(rx.ShapeError, match=r"y_prev"):
        BD.decoder_forward(a["inputs/h"], p, y_prev=np.zeros((1, 1, 1)))
    with pytest.raises(ValueError, match="output_state"):
        BD.decoder_forward(a["inputs/h"], p, output_state="next")


def test_init_params_follow_keras_attention():
    D, H, K = 5, 4, 3
    p = BD.init_params(NP, D, H, K, seed=1)
    for name, (shape, _) in BD.param_shapes(D, H, K).items():
        v = getattr(p, name)
        assert v.shape == shape, name
        if name.startswith("b_"):
            assert np.all(v == 0.0), name
        elif name in ("V_a", "W_a", "U_a"):  # glorot uniform, Keras 2 fans
            fan = (shape[0] + shape[1]) if len(shape) == 2 else 2 * np.sqrt(shape[0])
            assert np.all(np.abs(v) <= np.sqrt(6.0 / fan)), name
        else:  # orthogonal: orthonormal columns (tall) or rows (wide)
            g = v.T @ v if shape[0] >= shape[1] else v @ v.T
            np.testing.assert_allclose(g, np.eye(min(shape)), atol=1e-6, err_msg=name)
    again = BD.init_params(NP, D, H, K, seed=1)
    for x, y in zip(p, again):
        np.testing.assert_array_equal(x, y)
    strict = BD.init_params(rx.backend("array_api_strict"), D, H, K, seed=1)
    for x, y in zip(p, strict):
        np.testing.assert_allclose(rx.to_numpy(y), x, rtol=0, atol=1e-12)


def test_decoder_energies_of_1e4_stay_finite():
    """V_a of size 1e4 drives the energies e_tj to about ±1e4: finite weights and gradients."""
    _, a = _draw("attention/bahdanau_decoder/previous")
    p = _bd_params(a)
    p = p._replace(V_a=np.sign(p.V_a) * 1e4)
    out, cache = BD.decoder_forward(a["inputs/h"], p, output_state="previous")
    att = np.tanh((out.s[:, :1] @ p.W_a) + a["inputs/h"] @ p.U_a + p.b_a)  # step 2's energies, roughly
    assert np.max(np.abs(att @ p.V_a)) > 1e3
    assert all(np.all(np.isfinite(v)) for v in out)
    np.testing.assert_allclose(np.sum(out.alpha, axis=-1), 1.0, rtol=0, atol=1e-12)
    rng = np.random.default_rng(1)
    g = BD.decoder_backward((rng.normal(size=out.y.shape), rng.normal(size=out.alpha.shape),
                             rng.normal(size=out.s.shape)), cache)
    assert np.all(np.isfinite(g.h)) and all(np.all(np.isfinite(v)) for v in g.params)


# ----------------------------------------------------------------------------- Luong


@pytest.mark.parametrize("score", LU.SCORES)
def test_luong_energies_of_1e4_stay_finite(score):
    case, a = _draw(f"attention/luong_{score}/global")
    arrays = dict(a)
    arrays["inputs/h"] = a["inputs/h"] * 100.0
    arrays["inputs/hs"] = a["inputs/hs"] * 100.0
    if score == "concat":  # the tanh saturates: v_a sets the size of the energies
        arrays["params/v_a"] = a["params/v_a"] * 1e4
    elif "params/W_a" in arrays:
        arrays["params/W_a"] = a["params/W_a"] * 100.0
    params = LU.LuongParams(**{k.split("/", 1)[1]: v for k, v in arrays.items() if k.startswith("params/")})
    (sc,), _ = LU.score_forward(arrays["inputs/h"], arrays["inputs/hs"], params.W_a, params.v_a, score=score)
    assert np.max(np.abs(sc)) > 1e3
    out, cache = LU.attention_forward(arrays["inputs/h"], arrays["inputs/hs"], params, score=score)
    assert all(np.all(np.isfinite(v)) for v in out if v is not None)
    np.testing.assert_allclose(np.sum(out.a, axis=-1), 1.0, rtol=0, atol=1e-12)
    rng = np.random.default_rng(2)
    g = LU.attention_backward((rng.normal(size=out.a.shape), rng.normal(size=out.c.shape),
                               rng.normal(size=out.h_tilde.shape), None), cache)
    assert np.all(np.isfinite(g.h)) and np.all(np.isfinite(g.hs))
    assert all(np.all(np.isfinite(v)) for v in g.params if v is not None)


@pytest.mark.parametrize("alignment", ["local_m", "local_p"])
def test_local_window_and_gaussian(alignment):
    case, a = _draw(f"attention/luong_general/{alignment}", seed=4)
    out = case.forward(a).outputs
    D = case.config["window"]
    S = a["inputs/hs"].shape[1]
    if alignment == "local_m":
        p = np.broadcast_to(case.config["t0"] + np.arange(out["a"].shape[1]), out["a"].shape[:2])
    else:
        p = out["p"]
        assert np.all((p > 0) & (p < S))
        frac = p - np.floor(p)
        assert np.all((frac > 0.2) & (frac < 0.8)), "the sampler keeps p_t off the window edges"
    dist = np.abs(np.arange(S)[None, None, :] - p[..., None])
    assert np.all(out["a"][dist > D] == 0.0)
    inside = dist <= D
    # a / gauss is the softmax over the window: sums to 1 over it
    gauss = np.exp(-dist**2 / (2 * (D / 2) ** 2))
    soft = np.where(inside, out["a"] / gauss, 0.0)
    np.testing.assert_allclose(soft.sum(axis=-1), 1.0, rtol=0, atol=1e-12)
    assert np.all(out["a"].sum(axis=-1) < 1.0), "no renormalisation after the Gaussian"


def test_luong_single_step_equals_a_sequence_of_one():
    case, a = _draw("attention/luong_concat/local_p")
    params = LU.LuongParams(**{k.split("/", 1)[1]: v for k, v in a.items() if k.startswith("params/")})
    h1 = a["inputs/h"][:, 0, :]
    one, c1 = LU.attention_forward(h1, a["inputs/hs"], params, score="concat", alignment="local_p")
    seq, cs = LU.attention_forward(h1[:, None, :], a["inputs/hs"], params, score="concat", alignment="local_p")
    for x, y in zip(one, seq):
        np.testing.assert_array_equal(x, y[:, 0])
    rng = np.random.default_rng(3)
    da, dc, dht = rng.normal(size=one.a.shape), rng.normal(size=one.c.shape), rng.normal(size=one.h_tilde.shape)
    dp = rng.normal(size=one.p.shape)
    g1 = LU.attention_backward((da, dc, dht, dp), c1)
    gs = LU.attention_backward((da[:, None], dc[:, None], dht[:, None], dp[:, None]), cs)
    np.testing.assert_array_equal(g1.h, gs.h[:, 0])
    np.testing.assert_array_equal(g1.hs, gs.hs)


def test_luong_refuses_wrong_shapes():
    _, a = _draw("attention/luong_general/global")
    params = LU.LuongParams(W_c=a["params/W_c"], W_a=a["params/W_a"])
    h, hs = a["inputs/h"], a["inputs/hs"]
    with pytest.raises(rx.ShapeError, match=r"^params\.W_a: expected shape \(H, Hs\) = \(3, 4\) for the general score, got \(4, 3\)$"):
        LU.attention_forward(h, hs, params._replace(W_a=params.W_a.T), score="general")
    with pytest.raises(rx.ShapeError, match=r"^hs: expected shape \(B, S, H\) = \(2, 6, 3\) for the dot score, got \(2, 6, 4\)$"):
        LU.attention_forward(h, hs, params, score="dot")  # the dot score needs Hs = H
    with pytest.raises(rx.ShapeError, match=r"^params\.W_c: expected shape \(Hs \+ H, H\) = \(7, 3\), got \(6, 3\)$"):
        LU.attention_forward(h, hs, params._replace(W_c=params.W_c[1:]), score="general")
    with pytest.raises(ValueError, match="alignment"):
        LU.attention_forward(h, hs, params, score="general", alignment="local")


def test_luong_init_params():
    p = LU.init_params(NP, "concat", "local_p", H=3, Hs=4, S=6, A=5, seed=0)
    assert p.W_a.shape == (7, 5) and p.v_a.shape == (5,) and p.W_c.shape == (7, 3)
    assert p.W_p.shape == (3, 5) and p.v_p.shape == (5,)
    assert LU.init_params(NP, "dot", "global", H=3, Hs=3).W_a is None


# ----------------------------------------------------------------------------- refmem plot attention


def test_plot_attention_writes_a_png(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    from refmem.cli import main

    out = tmp_path / "alpha.png"
    assert main(["plot", "attention", "--case", "bahdanau_decoder/current", "--seed", "2", "--out", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "alpha of attention/bahdanau_decoder/current" in capsys.readouterr().out
    out2 = tmp_path / "a.png"
    assert main(["plot", "attention", "--case", "attention/luong_dot/local_m", "--out", str(out2)]) == 0
    assert out2.exists()


def test_plot_errors_are_one_line(tmp_path, capsys, monkeypatch):
    from refmem import plots
    from refmem.cli import main

    assert main(["plot"]) == 2
    assert "name a target: attention" in capsys.readouterr().err
    assert main(["plot", "attention", "--case", "nope", "--out", str(tmp_path / "x.png")]) == 2
    assert "no attention case named 'attention/nope'" in capsys.readouterr().err

    def missing():
        raise plots.PlotDependencyError("matplotlib is not installed (pip install 'refmem[plot]')")

    monkeypatch.setattr(plots, "pyplot", missing)
    assert main(["plot", "attention", "--out", str(tmp_path / "y.png")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "refmem plot attention: error: matplotlib is not installed (pip install 'refmem[plot]')"
    assert not (tmp_path / "y.png").exists()


# ----------------------------------------------------------------------------- the training demo


def test_training_demo_learns_to_reverse():
    """A short run of refmem.attention.train: the loss falls and attention turns anti-diagonal."""
    from refmem.attention.train import train

    res = train(steps=120, B=16, T=4, V=4, H=12, lr=0.03, seed=0)
    assert all(np.isfinite(res.losses))
    assert np.mean(res.losses[-10:]) < 0.25 * np.mean(res.losses[:10])
    alpha = rx.to_numpy(res.alpha)  # [B, T, T]
    T = alpha.shape[1]
    anti = np.mean([alpha[:, t, T - 1 - t] for t in range(T)])
    assert anti > 0.5, f"mean anti-diagonal weight {anti:.2f}"


# ----------------------------------------------------------------------------- the backward rule, the 0.1 call forms


def test_attention_weights_is_a_pair_and_the_value_only_form_is_deprecated():
    rng = np.random.default_rng(4)
    e = rng.normal(size=(2, 3, 5))
    mask = rng.random((2, 3, 5)) < 0.7
    out, cache = BD.attention_weights_forward(e, mask=mask)
    assert isinstance(out, BD.AttentionWeightsOutputs) and isinstance(cache, BD.AttentionWeightsCache)
    np.testing.assert_array_equal(out.alpha, BD.masked_softmax(e, mask))
    d = rng.normal(size=e.shape)
    g = BD.attention_weights_backward((d,), cache)
    assert isinstance(g, BD.AttentionWeightsGrads)
    np.testing.assert_array_equal(g.e, out.alpha * (d - np.sum(d * out.alpha, axis=-1, keepdims=True)))
    np.testing.assert_array_equal(BD.attention_weights_backward((None,), cache).e, np.zeros_like(e))
    with pytest.warns(DeprecationWarning, match=r"attention_weights\(e, mask\) is the refmem 0\.1 call form"):
        np.testing.assert_array_equal(BD.attention_weights(e, mask), out.alpha)
    with pytest.warns(DeprecationWarning, match=r"call attention_weights_backward\(\(d_alpha,\), cache\)"):
        np.testing.assert_array_equal(BD.attention_weights_backward(d, out.alpha), g.e)


def _old_and_new(old, new):
    """The 0.1 call warns and gives what the 0.2 call gives (NamedTuples compared field by field)."""
    with pytest.warns(DeprecationWarning, match="0.1 call form"):
        was = old()
    now = new()
    def flat(t, at=""):
        if hasattr(t, "_fields"):  # by name: a 0.1 result may order its fields differently
            return {k: v for f in t._fields for k, v in flat(getattr(t, f), f"{at}{f}.").items()}
        if isinstance(t, tuple):
            return {k: v for i, x in enumerate(t) for k, v in flat(x, f"{at}{i}.").items()}
        return {at: t}

    was_, now_ = flat(was), flat(now)
    assert set(was_) == set(now_)
    for k in now_:
        assert (was_[k] is None and now_[k] is None) or np.array_equal(was_[k], now_[k]), k
    return was


def test_the_0_1_backward_call_forms_still_work_with_a_deprecation_warning():
    rng = np.random.default_rng(6)
    _, a = _draw("attention/bahdanau_decoder/current_teacher")
    h, p, y_prev = a["inputs/h"], _bd_params(a), a["inputs/y_prev"]
    out, cache = BD.decoder_forward(h, p, y_prev, output_state="current")
    d = [rng.normal(size=x.shape) for x in out]
    was = _old_and_new(lambda: BD.decoder_backward(*d, cache), lambda: BD.decoder_backward(tuple(d), cache))
    assert was._fields == ("h", "y_prev", "params")  # the 0.1 order for the 0.1 call
    assert BD.decoder_backward(tuple(d), cache)._fields == ("h", "params", "y_prev")
    uh = h @ p.U_a + p.b_a
    s0 = np.tanh(h[:, 0] @ p.W_s)
    so, sc = BD.decoder_step_forward(y_prev[:, 0], s0, h, uh, p, output_state="current")
    ds = [rng.normal(size=x.shape) for x in so]
    _old_and_new(lambda: BD.decoder_step_backward(*ds, sc), lambda: BD.decoder_step_backward(BD.DecoderStepOutputs(*ds), sc))
    # the new form by keyword is not a 0.1 call
    BD.decoder_step_backward(d_out=tuple(ds), cache=sc)

    _, a = _draw("attention/luong_concat/local_p")
    params = LU.LuongParams(**{k.split("/", 1)[1]: v for k, v in a.items() if k.startswith("params/")})
    lo, lc = LU.attention_forward(a["inputs/h"], a["inputs/hs"], params, score="concat", alignment="local_p")
    dl = [rng.normal(size=x.shape) for x in lo]
    _old_and_new(lambda: LU.attention_backward(*dl[:3], lc, d_p=dl[3]), lambda: LU.attention_backward(tuple(dl), lc))
    (sc_,), scc = LU.score_forward(lc.h, lc.hs, params.W_a, params.v_a, score="concat")
    dsc = rng.normal(size=sc_.shape)
    _old_and_new(lambda: LU.score_backward(dsc, scc), lambda: LU.score_backward((dsc,), scc))
    (pp,), pc = LU.position_forward(lc.h, params.W_p, params.v_p, S=6)
    dp = rng.normal(size=pp.shape)
    _old_and_new(lambda: LU.position_backward(dp, pc), lambda: LU.position_backward((dp,), pc))
    wo, wc = LU.window_forward(pp, S=6, D=2)
    dg = rng.normal(size=wo.gauss.shape)
    _old_and_new(lambda: LU.WindowGrads(LU.window_backward(dg, wc)), lambda: LU.window_backward((None, dg), wc))

    from refmem.attention import keras_scores as KS
    _, a = _draw("attention/keras_scores/concat_scaled")
    ko, kc = KS.attention_forward(a["inputs/q"], a["inputs/k"], a["inputs/v"], a["params/scale"], a["params/weight"],
                                  score="concat_scaled")
    dk = [rng.normal(size=x.shape) for x in ko]
    _old_and_new(lambda: KS.attention_backward(*dk, kc), lambda: KS.attention_backward(KS.AttentionOutputs(*dk), kc))
    with pytest.raises(TypeError, match=r"takes \(d_out, cache\)"):
        KS.attention_backward(dk[0], kc)


def test_options_are_keyword_only_and_a_0_1_positional_option_is_refused():
    _, a = _draw("attention/bahdanau_decoder/previous")
    with pytest.raises(DTypeError, match=r"^y_prev: expected an array, got str"):
        BD.decoder_forward(a["inputs/h"], _bd_params(a), "current")
    _, a = _draw("attention/luong_general/global")
    params = LU.LuongParams(W_c=a["params/W_c"], W_a=a["params/W_a"])
    with pytest.raises(TypeError):
        LU.attention_forward(a["inputs/h"], a["inputs/hs"], params, "general")


@pytest.mark.parametrize("score", LU.SCORES)
@pytest.mark.parametrize("alignment", LU.ALIGNMENTS)
def test_luong_names_the_argument_that_disagrees(score, alignment):
    """A wrong W_c is reported on W_c (issue 19: it was reported on W_a, or on h), whichever
    score and alignment; a wrong W_a on W_a; a query or source of the wrong width on itself."""
    rng = np.random.default_rng(7)
    Hs = 3 if score == "dot" else 4
    h, hs = rng.normal(size=(2, 3, 3)), rng.normal(size=(2, 6, Hs))
    p = LU.init_params(NP, score, alignment, 3, Hs, S=6, A=5)
    LU.attention_forward(h, hs, p, score=score, alignment=alignment)
    for bad in (p.W_c[1:], p.W_c[:, 1:], p.W_c[:, :2].T):
        if score == "location" and bad.shape[1] == 3:
            # a tie: Hs is read from W_c's rows and hs only; between two, the parameter fixes it
            with pytest.raises(rx.ShapeError, match=r"^hs: expected shape \(B, S, Hs\) = \(2, 6, 3\), got \(2, 6, 4\)$"):
                LU.attention_forward(h, hs, p._replace(W_c=bad), score=score, alignment=alignment)
            continue
        with pytest.raises(rx.ShapeError, match=r"^params\.W_c: expected shape \(Hs \+ H, H\) = \((7|6), 3\), got"):
            LU.attention_forward(h, hs, p._replace(W_c=bad), score=score, alignment=alignment)
    if p.W_a is not None:
        with pytest.raises(rx.ShapeError, match=rf"^params\.W_a: expected shape .* for the {score} score, got"):
            LU.attention_forward(h, hs, p._replace(W_a=p.W_a[:, :2].T), score=score, alignment=alignment)
    with pytest.raises(rx.ShapeError, match=r"^h: expected shape \(\.\.\., H\) = \(2, 3, 3\), got \(2, 3, 4\)"):
        LU.attention_forward(rng.normal(size=(2, 3, 4)), hs, p, score=score, alignment=alignment)
    if score != "location":  # location: S and Hs are each read from hs and one parameter only
        with pytest.raises(rx.ShapeError, match=r"^hs: expected shape"):
            LU.attention_forward(h, rng.normal(size=(2, 6, Hs + 1)), p, score=score, alignment=alignment)
    if alignment == "local_p":
        with pytest.raises(DTypeError, match=r"^params\.W_p: expected an array \(the local_p alignment uses it\)"):
            LU.attention_forward(h, hs, p._replace(W_p=None), score=score, alignment=alignment)


# ----------------------------------------------------------------------------- finite in, finite out (issue 19 item 6)


@pytest.mark.parametrize("score", ["dot", "general"])
def test_luong_scores_are_right_at_any_scale_float64_holds_and_refused_beyond(score):
    """States scaled by 1e150 give scores near 1e300: the weights are the exact one-hot of the
    largest score and the gradients are finite and right. Scaled by 1e155 the scores exceed
    float64 (they gave NaN): a DomainError names the arguments and the limit."""
    rng = np.random.default_rng(8)
    h, hs = rng.normal(size=(2, 3, 3)), rng.normal(size=(2, 5, 3))
    p = LU.init_params(NP, score, "global", 3, 3, seed=1)
    (ref,), _ = LU.score_forward(h, hs, p.W_a, score=score)
    lam = 1e150
    out, cache = LU.attention_forward(h * lam, hs * lam, p, score=score)
    top = np.argmax(ref, axis=-1)
    np.testing.assert_array_equal(out.a, np.eye(5)[top])
    np.testing.assert_array_equal(out.c, np.take_along_axis(hs * lam, top[..., None], axis=1))
    np.testing.assert_array_equal(out.h_tilde, np.tanh(np.concatenate([out.c, h * lam], -1) @ p.W_c))
    d = [rng.normal(size=x.shape) for x in out[:3]]
    g = LU.attention_backward((*d, None), cache)
    assert all(np.all(np.isfinite(x)) for x in (g.h, g.hs, g.params.W_c))
    # a one-hot softmax passes no gradient to the scores: only the context and the state's routes
    if score == "general":
        np.testing.assert_array_equal(g.params.W_a, np.zeros_like(p.W_a))
    with pytest.raises(DomainError, match=r"^h, hs(, params\.W_a)?: expected (dot|general) scores within the range "
                                             r"of float64 \(magnitude <= 1\.798e\+308\), got an overflow"):
        LU.attention_forward(h * 1e155, hs * 1e155, p, score=score)
    with pytest.raises(DomainError, match=r"^h, hs(, W_a)?: expected .* scores within the range of float32 "
                                             r"\(magnitude <= 3\.403e\+38\)"):
        p32 = LU.init_params(NP, score, "global", 3, 3, seed=1, dtype=np.float32)
        LU.score_forward((h * 1e20).astype(np.float32), (hs * 1e20).astype(np.float32), p32.W_a, score=score)


def test_overflowing_energies_logits_and_keras_scores_are_refused_not_nan():
    from refmem.attention import keras_scores as KS

    p = BD.init_params(NP, 3, 4, 5)
    h = np.random.default_rng(9).normal(size=(2, 3, 3))
    with pytest.raises(DomainError, match=r"^params\.V_a: expected the energies .* within the range of float64"):
        BD.decoder_forward(h, p._replace(V_a=np.full(4, 1e308), b_a=np.full(4, 1e3)))
    with pytest.raises(DomainError, match=r"^h, params: expected the logits of eq\. 8 within the range of float64"):
        BD.decoder_forward(h, p._replace(W_o=np.full((5, 5), 1e308), b_o=np.array([1e308, 1e308, -1e308, 0, 0])))
    q = np.random.default_rng(10).normal(size=(2, 3, 4))
    with pytest.raises(DomainError, match=r"^q, k, scale: expected dot_scaled scores within the range of float64"):
        KS.attention_forward(q * 1e155, q * 1e155, q, np.ones(1), score="dot_scaled")


def test_init_params_take_a_dtype():
    for p64, p32 in ((BD.init_params(NP, 3, 4, 5, seed=2), BD.init_params(NP, 3, 4, 5, seed=2, dtype=np.float32)),
                     (LU.init_params(NP, "concat", "local_p", 3, 4, A=5, seed=2),
                      LU.init_params(NP, "concat", "local_p", 3, 4, A=5, seed=2, dtype=np.float32))):
        for a, b in zip(p64, p32):
            if a is not None:
                assert a.dtype == np.float64 and b.dtype == np.float32
                np.testing.assert_array_equal(b, a.astype(np.float32))
    out, cache = BD.decoder_forward(np.ones((2, 3, 3), np.float32), BD.init_params(NP, 3, 4, 5, dtype=np.float32))
    assert out.y.dtype == np.float32
