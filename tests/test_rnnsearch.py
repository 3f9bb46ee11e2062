"""RNNsearch (SPEC §7) and the public-package attention of SPEC §8: properties beyond the catalogue's checks.

The catalogue cases run SPEC §6 (central and complex step) through ``refmem check``; here: the
complex step at further seeds, padding invariance, the maxout tie rule, ``E_y y_0 = 0``, the
backward rule's shapes and ``None`` cotangents, and bad input refused with one clear error.
"""

from __future__ import annotations

import numpy as np
import pytest

from refmem import catalogue, gradcheck
from refmem import xp as rx
from refmem.attention import additive as AD
from refmem.attention import rnnsearch as RS
from refmem.errors import DomainError, DTypeError, ShapeError

XP = rx.backend("numpy")
RNNSEARCH = [c for c in catalogue.cases(["attention"]) if "/rnnsearch" in c.name]
PUBLIC = [c for c in catalogue.cases(["attention"])
          if c.name.startswith(("attention/additive/", "attention/many_to_one/")) or c.name.endswith("global_square")]


def test_the_cases_are_listed():
    names = {c.name for c in RNNSEARCH}
    assert len(names) == 16 and "attention/rnnsearch/masked" in names and "attention/rnnsearch_maxout/default" in names
    assert len(PUBLIC) == 6


@pytest.mark.parametrize("seed", [1, 2])
@pytest.mark.parametrize("case", RNNSEARCH + PUBLIC, ids=lambda c: c.name)
def test_complex_step_at_further_seeds(case, seed):
    """The complex step has no rounding floor: every backward agrees to 1e-12 at other draws too."""
    records = gradcheck.check_case(case, XP, seed=seed, methods=["complex"])
    assert records and all(r.passed for r in records), [(r.tensor, r.normwise_rel_err) for r in records if not r.passed]


def _model(seed=0, sizes=None):
    case = catalogue.get_case("attention/rnnsearch/default")
    a = case.draw(XP, seed, sizes)
    params = RS.from_named({k.split("/", 1)[1]: v for k, v in a.items() if k.startswith("params/")})
    return a["inputs/x"], a["inputs/y"], params


def test_padding_gives_the_unpadded_results():
    """A sentence padded at the end (masked source and target positions, any tokens there) gives the
    log-likelihoods, distributions, weights and states of the same sentence without the padding, and
    the padding gets weight exactly 0 and log-likelihood 0."""
    x, y, params = _model(sizes={"B": 1, "Tx": 5, "Ty": 4})
    Lx, Ly = 3, 2
    short, _ = RS.rnnsearch_forward(params, x=x[:, :Lx], y=y[:, :Ly])
    pad_x = np.concatenate([np.asarray(x[:, :Lx]), np.array([[4, 1]])], axis=1)
    pad_y = np.concatenate([np.asarray(y[:, :Ly]), np.array([[2, 0]])], axis=1)
    mask = (np.arange(5) < Lx)[None, :].astype(np.float64)
    tmask = (np.arange(4) < Ly)[None, :].astype(np.float64)
    long, _ = RS.rnnsearch_forward(params, x=pad_x, y=pad_y, mask=mask, target_mask=tmask)
    np.testing.assert_allclose(long.log_likelihood[:, :Ly], short.log_likelihood, rtol=1e-13, atol=1e-14)
    np.testing.assert_array_equal(long.log_likelihood[:, Ly:], 0.0)
    np.testing.assert_allclose(long.p[:, :Ly], short.p, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(long.alpha[:, :Ly, :Lx], short.alpha, rtol=1e-13, atol=1e-15)
    np.testing.assert_array_equal(long.alpha[:, :, Lx:], 0.0)
    np.testing.assert_allclose(long.s[:, :Ly], short.s, rtol=1e-13, atol=1e-15)
    np.testing.assert_array_equal(long.s[:, Ly:], np.repeat(long.s[:, Ly - 1:Ly], 4 - Ly, axis=1))  # carried


def test_the_first_step_reads_a_zero_embedding():
    """E_y y_0 = 0: the first step's distribution does not depend on E_y or on any target token."""
    x, y, params = _model(sizes={"B": 2})
    out, _ = RS.rnnsearch_forward(params, x=x, y=y)
    other = params._replace(decoder=params.decoder._replace(E_y=params.decoder.E_y * 3.0 + 1.0))
    out2, _ = RS.rnnsearch_forward(other, x=x, y=(np.asarray(y) + 1) % params.decoder.E_y.shape[0])
    np.testing.assert_array_equal(out.p[:, 0], out2.p[:, 0])
    assert not np.allclose(out.p[:, 1], out2.p[:, 1])


def test_a_sentence_log_likelihood_is_the_row_sum_of_the_target_log_probabilities():
    x, y, params = _model()
    out, cache = RS.rnnsearch_forward(params, x=x, y=y)
    logp = np.log(np.take_along_axis(np.asarray(out.p), np.asarray(y)[..., None], -1)[..., 0])
    np.testing.assert_allclose(out.log_likelihood, logp, rtol=1e-12)


def test_maxout_takes_the_first_on_a_tie_and_sends_it_the_gradient():
    t = np.array([[1.0, 1.0, -2.0, 3.0]])
    out, cache = RS.maxout_forward(t)
    np.testing.assert_array_equal(out.t, [[1.0, 3.0]])
    g = RS.maxout_backward(RS.MaxoutOutputs(np.array([[5.0, 7.0]])), cache)
    np.testing.assert_array_equal(g.t_tilde, [[5.0, 0.0, 0.0, 7.0]])


def test_the_catalogue_keeps_maxout_pairs_apart():
    for case in [c for c in RNNSEARCH if "maxout" in c.kinks]:
        for seed in range(3):
            a = case.draw(XP, seed)
            out = case.forward(a)
            assert out.outputs  # the sampler returned a draw (it raises where it cannot)


def test_backward_rule_shapes_and_none_cotangents():
    x, y, params = _model()
    out, cache = RS.rnnsearch_forward(params, x=x, y=y)
    g = RS.rnnsearch_backward(RS.RNNsearchOutputs(out.log_likelihood * 0 + 1.0, None, None, None), cache)
    assert isinstance(g, RS.RNNsearchGrads) and isinstance(g.params, RS.RNNsearchParams)
    for name, value in RS.named(g.params).items():
        assert value.shape == RS.named(params)[name].shape, name
    zero = RS.rnnsearch_backward((None, None, None, None), cache)
    assert all(np.all(v == 0) for v in RS.named(zero.params).values())


def test_embedding_gradient_adds_repeated_tokens():
    E = np.arange(12.0).reshape(4, 3)
    tokens = np.array([[1, 1, 3]])
    out, cache = RS.embedding_forward(E, tokens=tokens)
    np.testing.assert_array_equal(out.emb, E[tokens])
    g = RS.embedding_backward(RS.EmbeddingOutputs(np.ones((1, 3, 3))), cache)
    np.testing.assert_array_equal(g.E, [[0, 0, 0], [2, 2, 2], [0, 0, 0], [1, 1, 1]])


def test_bad_input_is_refused_with_one_clear_error():
    x, y, params = _model()
    with pytest.raises(DTypeError, match=r"^x: expected an integer array of indices in \[0, Kx\), got dtype float64$"):
        RS.rnnsearch_forward(params, x=np.asarray(x, dtype=np.float64), y=y)
    with pytest.raises(DomainError, match=r"^y: expected indices in \[0, Ky\) = \[0, 5\), got 1[0-4] at \[0, 0\]$"):
        RS.rnnsearch_forward(params, x=x, y=np.asarray(y) + 10)
    with pytest.raises(ShapeError, match=r"^mask: expected shape \(B, Tx\) = \(3, 4\), got \(3, 2\)"):
        RS.rnnsearch_forward(params, x=x, y=y, mask=np.ones((3, 2)))
    with pytest.raises(DomainError, match="^target_mask: expected a mask of exactly 0 or 1"):
        RS.rnnsearch_forward(params, x=x, y=y, target_mask=np.full(np.shape(y), 0.5))
    bad = params._replace(W_s=np.ones((2, 2)))
    with pytest.raises(ShapeError, match=r"^params\.W_s: expected shape \(n, n\) = \(3, 3\), got \(2, 2\)"):
        RS.rnnsearch_forward(bad, x=x, y=y)
    with pytest.raises(TypeError, match="positional"):  # the 0.1 call: tokens are keyword-only
        RS.rnnsearch_forward(x, y, params)
    with pytest.raises(ShapeError, match="t_tilde"):
        RS.maxout_forward(np.ones((2, 3)))
    with pytest.raises(DomainError, match="score"):
        AD.attention_forward(np.ones((1, 1, 2)), np.ones((1, 2, 2)), np.ones((1, 2, 2)), np.ones((2, 2)),
                             score="dot")


def test_the_derived_widths_name_the_argument_that_disagrees():
    """`2n`, `2l` and `D = m` are the functions annotation_width, maxout_width and encoder_input_width."""
    x, y, params = _model()
    dec = params.decoder
    with pytest.raises(ShapeError, match=r"^params\.decoder\.U_a: expected shape \(n2, A\) = \(6, 3\), got \(5, 3\)"
                                         r" \(n2 = annotation_width\(n=3\) = 6\)"):
        RS.rnnsearch_forward(params._replace(decoder=dec._replace(U_a=np.ones((5, 3)))), x=x, y=y)
    enc = params.encoder
    with pytest.raises(ShapeError, match=r"^params\.encoder\.fwd\.W_z: expected shape \(D, n\) = \(3, \?\), got \(4, 3\)"
                                         r" \(D = encoder_input_width\(m=3\) = 3\)"):
        RS.rnnsearch_forward(params._replace(encoder=enc._replace(fwd=enc.fwd._replace(W_z=np.ones((4, 3))))),
                             x=x, y=y)
    with pytest.raises(ShapeError, match=r"^h: expected shape \(B, Tx, n2\) = \(\?, \?, 6\), got \(2, 4, 5\)"):
        RS.initial_state_forward(np.ones((2, 4, 5)), params.W_s, params.b_s)
    with pytest.raises(DTypeError, match=r"^params\.E_y: expected an array \(the decoder reads it"):
        RS.decoder_forward(np.ones((3, 4, 6)), np.ones((3, 3)), dec._replace(E_y=None), y=y)
    out, cache = RS.decoder_forward(np.ones((3, 4, 6)), np.ones((3, 3)), dec, y=y)
    with pytest.raises(ShapeError, match=r"^d_out\.alpha: expected shape \(B, Ty, Tx\) = \(3, 3, 4\), got \(3, 4, 3\)"):
        RS.decoder_backward((None, np.ones((3, 4, 3)), None), cache)


def test_additive_checks_the_parameters_of_its_score():
    q, k, v = np.ones((2, 3, 3)), np.ones((2, 4, 2)), np.ones((2, 4, 5))
    W_q, W_k, w = np.ones((3, 4)), np.ones((2, 4)), np.ones(4)
    out, cache = AD.attention_forward(q, k, v, W_q, W_k, w, score="additive")
    assert out.weights.shape == (2, 3, 4) and out.context.shape == (2, 3, 5)
    g = AD.attention_backward((None, None), cache)
    assert isinstance(g, AD.AttentionGrads) and np.all(g.q == 0) and g.b is None
    with pytest.raises(ShapeError, match=r"^W_q: expected shape \(Dq, A\) = \(3, 4\) for the additive score, got \(3, 5\)$"):
        AD.attention_forward(q, k, v, np.ones((3, 5)), W_k, w, score="additive")
    with pytest.raises(ShapeError, match=r"^w: expected shape \(A,\) = \(4,\), got \(3,\)"):
        AD.attention_forward(q, k, v, W_q, W_k, np.ones(3), score="additive")
    with pytest.raises(DTypeError, match=r"^W_k: expected an array \(the additive score uses it\), got None$"):
        AD.attention_forward(q, k, v, W_q, score="additive")
    with pytest.raises(DomainError, match=r"^w: the general score has no such parameter; expected None$"):
        AD.attention_forward(q, k, v, np.ones((2, 3)), None, w, score="general")
    with pytest.raises(ShapeError, match=r"^W_q: expected shape \(Dk, Dq\) = \(2, 3\) for the general score, got \(3, 2\)$"):
        AD.attention_forward(q, k, v, np.ones((3, 2)), score="general")
    with pytest.raises(ShapeError, match=r"^d_out\.context: expected shape \(B, Tq, Dv\) = \(2, 3, 5\), got \(2, 3, 4\)"):
        AD.attention_backward((None, np.ones((2, 3, 4))), cache)


def test_init_params_follow_the_paper():
    p = RS.init_params(XP, Kx=5, Ky=4, m=3, n=3, A=2, l=2, seed=0)
    U = np.asarray(p.encoder.fwd.U)
    np.testing.assert_allclose(U.T @ U, np.eye(3), atol=1e-12)
    assert np.all(np.asarray(p.decoder.v_a) == 0) and np.all(np.asarray(p.b_s) == 0)
    assert np.std(np.asarray(p.decoder.W_a)) < 0.01
