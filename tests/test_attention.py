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
