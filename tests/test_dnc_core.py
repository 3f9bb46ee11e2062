"""SPEC §5 Core: the DNC unrolled over time, its BPTT, parameters and files (refmem.dnc.core, params).

The catalogue checks ``dnc/core_unroll/{deepmind,paper,deep_deepmind}`` element by element
(tests/test_catalogue.py); here: the other variants (sampled initial state, no skip
connections, clip), an active clip, the stopped gradient, the torch example, shapes and files.
"""

from __future__ import annotations

import importlib.util
import pathlib

import numpy as np
import pytest

from refmem import gradcheck
from refmem import xp as rx
from refmem.dnc import core
from refmem.dnc.cases import core as core_cases
from refmem.optim import tree_leaves
from refmem.dnc.params import (DNCConfig, from_named, init_params, load_params, named, save_params,
                               truncated_normal)

NP = rx.backend("numpy")
ROOT = pathlib.Path(__file__).resolve().parents[1]


def _passed(records):
    bad = [r for r in records if not r.passed]
    assert records and not bad, [(r.case, r.tensor, r.method, r.max_abs_err, r.normwise_rel_err) for r in bad]


@pytest.mark.parametrize("variant", ["state_deepmind", "state_paper", "deep_noskip_deepmind", "clip_deepmind"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_other_variants_directional(variant, seed):
    _passed(gradcheck.check_case(core_cases.VARIANTS[variant], NP, seed=seed, methods=("directional",)))


@pytest.mark.parametrize("variant", ["state_deepmind", "state_paper"])
def test_initial_state_gradients_elementwise(variant):
    """Every element of a sampled (non-zero) initial state: central differences and the complex step."""
    case = core_cases.VARIANTS[variant]
    ev = gradcheck.Evaluation(case, NP, case.draw(NP, 0), 0)
    analytic = ev.analytic()
    keys = [k for k in ev.keys if k.startswith("state/")]
    assert len(keys) == 9
    for key in keys:
        for method, fn in (("central", gradcheck.central_gradient), ("complex", gradcheck.complex_gradient)):
            err = gradcheck.compare(analytic[key], fn(ev, key), gradcheck.TOLERANCES[method])
            assert err[3], (key, method, err)


def test_deepmind_stops_the_usage_gradient_paper_does_not():
    for variant, stopped in (("state_deepmind", True), ("state_paper", False)):
        case = core_cases.VARIANTS[variant]
        arrays = case.draw(NP, 0)
        out = case.forward(arrays).outputs
        cot = gradcheck.cotangents_for({k: np.asarray(v) for k, v in out.items()}, 0)
        g = case.backward(arrays, cot)["state/write_weights"]
        if stopped:
            assert np.all(g == 0.0)
        else:
            assert np.abs(g).max() > 1e-3


def test_frozen_forward_reproduces_outputs():
    case = core_cases.VARIANTS["deepmind"]
    arrays = case.draw(NP, 1)
    base = case.forward(arrays)
    assert base.frozen["prev_write_weights"].shape == (2, 3, 2, 3)
    again = case.forward(arrays, frozen=base.frozen)
    for k in base.outputs:
        np.testing.assert_array_equal(base.outputs[k], again.outputs[k])
    assert core_cases.VARIANTS["paper"].forward(core_cases.VARIANTS["paper"].draw(NP, 1)).frozen == {}


def _raw_clipped_values(cache):
    """Every value the clip sees: y before the clip, and each layer's h and c before the clip."""
    vals = []
    for step in cache.steps:
        lin = step.output
        vals.append(lin.x @ lin.W)  # + b_y added by the caller
        for lc in step.controller.layers:
            c = lc.f * lc.c_prev + lc.i * lc.j
            vals += [c, np.tanh(c) * lc.o]
    return vals


def test_active_clip_gradients():
    """A clip that cuts some outputs and controller cells: gradient 1 inside, 0 outside (SPEC §5 Core)."""
    case = core_cases.VARIANTS["deepmind"]
    arrays = case.draw(NP, 0)
    cfg = core_cases.config_from(arrays, "deepmind", 1, True, 0.0)
    params = from_named({k[7:]: v for k, v in arrays.items() if k.startswith("params/")}, cfg)
    clipped = None
    for clip in np.linspace(0.2, 0.6, 41).astype(np.float32).astype(np.float64):
        trial = DNCConfig(**{**cfg.to_json(), "clip_value": float(clip)})
        y, cache = core.unroll_forward(arrays["inputs/x"], params, cfg=trial)
        raw = _raw_clipped_values(cache)
        raw[0::3] = [v + params.b_y for v in raw[0::3]]
        y_raw = np.stack(raw[0::3])
        if (np.any(np.abs(y_raw) > clip) and all(np.all(np.abs(np.abs(v) - clip) > 1e-3) for v in raw)
                and core_cases.gaps_ok(cache)):
            clipped = trial
            break
    assert clipped is not None, "no clip value away from every kink"
    assert np.max(np.abs(y.y)) == clipped.clip_value
    names = ["inputs/x", "params/W_lstm1", "params/b_lstm1", "params/W_xi", "params/b_xi", "params/W_y",
             "params/b_y"]

    # deepmind stops the usage gradient w.r.t. the previous write weights: freeze them at their values
    _, base = core.unroll_forward(arrays["inputs/x"], params, cfg=clipped)
    frozen = base.prev_write_weights

    def fwd(a):
        p = from_named({k[7:]: v for k, v in a.items() if k.startswith("params/")}, clipped)
        o, _ = core.unroll_forward(a["inputs/x"], p, cfg=clipped, frozen_write_weights=frozen)
        return {"y": o.y, "read_vectors": o.read_vectors}

    def bwd(a, cot):
        p = from_named({k[7:]: v for k, v in a.items() if k.startswith("params/")}, clipped)
        _, c = core.unroll_forward(a["inputs/x"], p, cfg=clipped)
        dx, dp, _ = core.unroll_backward(core.UnrollOutputs(cot["y"], cot["read_vectors"]), c)
        return {"inputs/x": dx, **{f"params/{k}": v for k, v in named(dp).items()}}

    _passed(gradcheck.check_function(fwd, bwd, {k: arrays[k] for k in names}, methods=("central",),
                                     name="clipped_core"))


def test_unroll_defaults_and_state():
    case = core_cases.VARIANTS["deepmind"]
    arrays = case.draw(NP, 0)
    cfg = core_cases.config_from(arrays, "deepmind", 1, True, 0.0)
    params = from_named({k[7:]: v for k, v in arrays.items() if k.startswith("params/")}, cfg)
    out, cache = core.unroll_forward(arrays["inputs/x"], params, cfg=cfg)
    final = out.state
    zero = core.initial_state(NP, 2, cfg)
    out2, _ = core.unroll_forward(arrays["inputs/x"], params, zero, cfg=cfg)
    np.testing.assert_array_equal(out.y, out2.y)
    assert out.y.shape == (2, 3, 2) and out.read_vectors.shape == (2, 3, 2, 2)
    np.testing.assert_array_equal(final.read_vectors, out.read_vectors[:, -1])
    assert final is cache.states[-1]
    # step by step equals the unroll
    state = zero
    for t in range(3):
        (y, state), _ = core.core_step_forward(arrays["inputs/x"][:, t], state, params, cfg=cfg)
        np.testing.assert_array_equal(y, out.y[:, t])
    # the access invariants of deepmind/dnc hold along the way
    for st in cache.states:
        assert np.all(np.abs(np.diagonal(st.access.link, axis1=-2, axis2=-1)) == 0)
        assert np.all(st.access.usage >= 0) and np.all(st.access.usage <= 1)
        assert np.all(st.access.read_weights.sum(-1) <= 1 + 1e-12)


def test_shapes_are_refused():
    cfg = DNCConfig(D=3, Y=2, hidden=4, N=5, W=3, R=2, nw=2)
    params = init_params(NP, cfg, seed=0)
    x = np.zeros((2, 4, 3))
    with pytest.raises(rx.ShapeError, match=r"x: expected shape \(B, T, D\) = \(\?, \?, 3\), got \(2, 4, 2\)"):
        core.unroll_forward(x[..., :2], params, cfg=cfg)
    bad = params._replace(W_xi=params.W_xi[:, :-1])
    with pytest.raises(rx.ShapeError, match=r"params.W_xi: expected shape \(Hc, I\) = \(4, 44\), got \(4, 43\)"):
        core.unroll_forward(x, bad, cfg=cfg)
    bad = params._replace(W_y=params.W_y.T)
    with pytest.raises(rx.ShapeError, match="params.W_y"):
        core.unroll_forward(x, bad, cfg=cfg)
    bad = params._replace(lstm=(params.lstm[0]._replace(W=params.lstm[0].W[:-1]),))
    with pytest.raises(rx.ShapeError, match=r"params.lstm\[0\].W: expected shape \(I_l \+ H, 4H\) = \(13, 16\), got \(12, 16\)"):
        core.unroll_forward(x, bad, cfg=cfg)
    with pytest.raises(TypeError):  # the config is keyword-only (0.1 took it third, positionally)
        core.unroll_forward(x, params, cfg)


def test_init_params_follow_deepmind():
    cfg = DNCConfig(D=6, Y=5)  # deepmind/dnc train.py sizes: hidden 64, N 16, W 16, R 4, nw 1
    a = init_params(NP, cfg, seed=3)
    b = init_params(NP, cfg, seed=3)
    c = init_params(NP, cfg, seed=4)
    for k, v in named(a).items():
        np.testing.assert_array_equal(v, named(b)[k])
        assert v.shape == cfg.shapes()[k]
        if k.startswith("b"):
            assert np.all(v == 0)
        else:
            std = 1 / np.sqrt(v.shape[0])
            assert np.abs(v).max() <= 2 * std
            assert not np.array_equal(v, named(c)[k])
    W = named(a)["W_lstm1"]  # [6 + 64 + 64, 256]
    assert W.shape == (134, 256)
    # a normal truncated at 2 sigma has std 0.8796 sigma
    assert abs(W.std() * np.sqrt(134) - 0.8796) < 0.02
    t = truncated_normal(np.random.default_rng(0), (100000,), 2.0)
    assert np.abs(t).max() <= 4.0 and abs(t.std() - 2 * 0.8796) < 0.02


def test_save_load_round_trip(tmp_path, xp):
    cfg = DNCConfig(D=3, Y=2, hidden=4, layers=3, N=5, W=3, R=2, nw=2, convention="paper", clip_value=20.0)
    params = init_params(xp, cfg, seed=0)
    # a transposed (non-C-contiguous) view must come back with its values (safetensors issue #825)
    W_y = rx.to_numpy(params.W_y)
    params = params._replace(W_y=xp.asarray(np.asfortranarray(W_y)))
    path = tmp_path / "dnc.safetensors"
    save_params(path, params, cfg, metadata={"note": "test"})
    loaded, cfg2 = load_params(path, xp)
    assert cfg2 == cfg
    for k, v in named(params).items():
        np.testing.assert_array_equal(rx.to_numpy(named(loaded)[k]), rx.to_numpy(v))
    Wt = np.ascontiguousarray(np.zeros((4, 3)))
    with pytest.raises(ValueError, match="not a refmem DNC parameter file"):
        from safetensors.numpy import save_file
        save_file({"a": Wt}, str(tmp_path / "other.safetensors"))
        load_params(tmp_path / "other.safetensors")


def _torch_example():
    pytest.importorskip("torch")
    path = ROOT / "examples" / "torch_dnc.py"  # part of the repository: missing is a failure, not a skip
    spec = importlib.util.spec_from_file_location("torch_dnc_example", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("variant", ["deepmind", "paper", "deep_deepmind", "deep_noskip_deepmind", "state_paper"])
def test_agrees_with_torch_autograd(variant):
    """The PyTorch example (autograd, written separately) computes the same outputs and gradients."""
    mod = _torch_example()
    case = core_cases.VARIANTS[variant]
    arrays = {k: np.asarray(v) for k, v in case.draw(NP, 0).items()}
    out = case.forward(arrays).outputs
    cot = gradcheck.cotangents_for({k: np.asarray(v) for k, v in out.items()}, 0)
    grads = case.backward(arrays, cot)
    tensors = dict(arrays)
    tensors.update({f"cotangents/{k}": v for k, v in cot.items()})
    got = mod.run(case.name, tensors, "float64", dict(case.config))
    for k, v in out.items():
        np.testing.assert_allclose(got[f"outputs/{k}"], v, rtol=1e-11, atol=1e-13)
    for k, v in grads.items():
        np.testing.assert_allclose(got[f"grads/{k}"], v, rtol=1e-9, atol=1e-12, err_msg=k)


def test_plot_dnc_writes_a_png(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    from refmem.cli import main

    cfg = DNCConfig(D=6, Y=5, hidden=8, N=6, W=4, R=2, nw=2)
    save_params(tmp_path / "p.safetensors", init_params(NP, cfg, seed=0), cfg)
    out = tmp_path / "dnc.png"
    assert main(["plot", "dnc", "--params", str(tmp_path / "p.safetensors"), "--out", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "wrote" in capsys.readouterr().out
    assert main(["plot", "dnc", "--params", str(tmp_path / "missing.safetensors")]) == 2


def test_the_0_1_backward_call_forms_warn_and_give_the_new_results():
    """Each backward called as in refmem 0.1 (gradients as separate arrays, gradients after the cache)
    warns once and returns what the new form returns (in 0.1's order, which the new Grads keep)."""
    from refmem.dnc import access as AC
    from refmem.dnc import addressing as A

    rng = np.random.default_rng(0)
    case = core_cases.VARIANTS["state_paper"]
    arrays = case.draw(NP, 0)
    cfg = core_cases.config_from(arrays, "paper", 1, True, 0.0)
    params = from_named({k[7:]: v for k, v in arrays.items() if k.startswith("params/")}, cfg)
    state = core_cases._state_from(arrays, 1)
    out, cache = core.unroll_forward(arrays["inputs/x"], params, state, cfg=cfg)
    d_y = rng.normal(size=out.y.shape)
    d_final = core.zeros_like_state(out.state)._replace(read_vectors=rng.normal(size=out.state.read_vectors.shape))
    new = core.unroll_backward(core.UnrollOutputs(d_y, None, d_final), cache)
    with pytest.warns(DeprecationWarning, match="unroll_backward"):
        old = core.unroll_backward(core.UnrollOutputs(d_y, None), cache, d_final)
    for a, b in zip(tree_leaves(new), tree_leaves(old)):
        np.testing.assert_array_equal(a, b)

    (y, new_state), step = core.core_step_forward(arrays["inputs/x"][:, 0], state, params, cfg=cfg)
    d_y = rng.normal(size=y.shape)
    new = core.core_step_backward((d_y, None), step)
    with pytest.warns(DeprecationWarning, match="core_step_backward"):
        dx, d_state, d_params = core.core_step_backward(d_y, None, step)
    for a, b in zip(tree_leaves(new), tree_leaves((dx, d_state, d_params))):
        np.testing.assert_array_equal(a, b)

    acc = step.access
    d_rv = rng.normal(size=new_state.read_vectors.shape)
    new = AC.access_step_backward((d_rv, None), acc)
    with pytest.warns(DeprecationWarning, match="access_step_backward"):
        old = AC.access_step_backward(d_rv, None, acc)
    for a, b in zip(tree_leaves(new), tree_leaves(old)):
        np.testing.assert_array_equal(a, b)

    lc = acc.link
    d_l, d_p = rng.normal(size=lc.prev_link.shape), rng.normal(size=lc.prev_precedence.shape)
    new = A.temporal_linkage_backward((d_l, d_p), lc)
    with pytest.warns(DeprecationWarning, match="temporal_linkage_backward"):
        old = A.temporal_linkage_backward(d_l, d_p, lc)
    for a, b in zip(new, old):
        np.testing.assert_array_equal(a, b)

    uc = acc.usage
    d_u, d_psi = rng.normal(size=uc.retention.shape), rng.normal(size=uc.retention.shape)
    new = A.usage_backward((d_u, d_psi), uc)
    with pytest.warns(DeprecationWarning, match="usage_backward"):
        old = A.usage_backward(d_u, uc, d_retention=d_psi)
    for a, b in zip(new, old):
        np.testing.assert_array_equal(a, b)

    wc = acc.write
    d_w = rng.normal(size=wc.content.shape)
    new = A.write_weights_backward((d_w,), wc)
    with pytest.warns(DeprecationWarning, match="write_weights_backward"):
        old = A.write_weights_backward(d_w, wc)
    assert type(old) is A.WriteWeightsGrads and old.write_masks is None
    for a, b in zip(new[:6], old[:6]):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(TypeError, match="d_out: expected a TemporalLinkageOutputs"):
        A.temporal_linkage_backward(d_l, lc)  # neither form: two arguments, the first no tuple
