"""Forward mode and second order (docs/golden-format.md ``tangents/``, ``jvp/``, ``hvp/``; refmem.forward_mode).

* The complex step through the forward (JVP) and through the hand-derived backward (HVP)
  agrees with Richardson-extrapolated central differences on every case, including the
  cases with the allocation sort, where the complex step holds the permutation constant.
* ``refmem check --method hvp`` passes on the catalogue and fails a backward that is no gradient.
* Against torch (skipped without it): ``torch.func.jvp`` and double backward or
  ``torch.func.jvp(torch.func.grad(...))`` on representative cases of every family agree with
  the golden JVPs and HVPs; the worst errors are printed (``-s``).
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import numpy as np
import pytest

from refmem import catalogue, forward_mode as fm, golden, gradcheck
from refmem import xp as rx
from refmem.catalogue import Case, Forward
from refmem.cli import main

REPO = Path(__file__).resolve().parent.parent
GOLDEN = REPO / "golden"
XP = rx.backend("numpy")


def _normwise(a, b):
    a, b = np.asarray(a, float), np.asarray(b, float)
    scale = max(np.linalg.norm(a), np.linalg.norm(b))
    return float(np.linalg.norm(a - b) / scale) if scale else 0.0


def _evaluation(case):
    return gradcheck.Evaluation(case, XP, case.draw(XP, 0), 0)


SORTED = [c for c in catalogue.cases() if not c.complex_step]


def test_sort_cases_exist_and_are_flagged_non_analytic():
    names = {c.name.split("/")[1] for c in SORTED}
    assert {"allocation", "write_allocation_weights", "write_weights", "access_step"} <= names


@pytest.mark.parametrize("case", SORTED, ids=[c.name for c in SORTED])
def test_complex_step_agrees_with_richardson_where_the_sort_is(case):
    """Where the forward sorts, the complex step (permutation on the real part) is the derivative with the
    permutation held constant: it agrees with central differences that stay inside the sort gaps."""
    ev = _evaluation(case)
    frozen = ev.frozen if case.stopped else {}
    t = fm.tangents_for(ev.host, ev.keys, 0)
    exact, numeric = fm.jvp(case, XP, ev.arrays, t, frozen), fm.central_jvp(case, XP, ev.arrays, t, frozen)
    for k in exact:
        assert _normwise(exact[k], numeric[k]) < 1e-9, k
    exact = fm.hvp(case, XP, ev.arrays, ev.cotangents, t, frozen)
    numeric = fm.central_hvp(case, XP, ev.arrays, ev.cotangents, t, frozen)
    for k in exact:
        assert _normwise(exact[k], numeric[k]) < 1e-8, k


def test_jvp_is_linear_in_the_tangent():
    case = catalogue.get_case("dnc/access_step/paper")
    ev = _evaluation(case)
    t1, t2 = fm.tangents_for(ev.host, ev.keys, 0), fm.tangents_for(ev.host, ev.keys, 0, draw=1)
    mix = {k: 2.0 * t1[k] - 0.5 * t2[k] for k in t1}
    j1, j2, jm = (fm.jvp(case, XP, ev.arrays, t) for t in (t1, t2, mix))
    for k in jm:
        np.testing.assert_allclose(jm[k], 2.0 * j1[k] - 0.5 * j2[k], rtol=1e-12, atol=1e-13)


def test_stopped_gradient_is_a_constant_in_the_hvp():
    """deepmind usage: the previous write weights enter only through the stopped path, so their HVP is 0 and
    their tangent changes no HVP; paper: they do."""
    for conv, zero in (("deepmind", True), ("paper", False)):
        case = catalogue.get_case(f"dnc/usage/{conv}")
        ev = _evaluation(case)
        frozen = ev.frozen if case.stopped else {}
        t = fm.tangents_for(ev.host, ev.keys, 0)
        h = fm.hvp(case, XP, ev.arrays, ev.cotangents, t, frozen)
        only = {k: (v if k == "inputs/prev_write_weights" else np.zeros_like(v)) for k, v in t.items()}
        h_only = fm.hvp(case, XP, ev.arrays, ev.cotangents, only, frozen)
        assert (not h["inputs/prev_write_weights"].any()) == zero
        assert all(not v.any() for v in h_only.values()) == zero


def test_check_method_hvp_passes_on_the_catalogue(capsys):
    code = main(["check", "--method", "hvp", "--quiet"])
    out = capsys.readouterr().out
    assert code == 0, out
    n = len(catalogue.cases())
    assert f"{n} cases" in out and "0 failed" in out


def _product_case(factor: float) -> Case:
    """``out = a b`` (element-wise) with a backward whose ``d b`` is ``factor`` times the true one."""
    def sample(xp, seed, sizes):
        s = np.random.default_rng(seed)
        return {k: rx.from_numpy(xp, s.normal(size=(2, 3)).astype(np.float32).astype(np.float64))
                for k in ("inputs/a", "inputs/b")}

    def forward(arrays, frozen=None):
        return Forward({"out": arrays["inputs/a"] * arrays["inputs/b"]})

    def backward(arrays, cot):
        return {"inputs/a": cot["out"] * arrays["inputs/b"], "inputs/b": factor * cot["out"] * arrays["inputs/a"]}

    return Case(name="user/product/default", spec="", function="product", sample=sample, forward=forward,
                backward=backward)


def test_symmetry_fails_a_backward_that_is_no_gradient():
    good = gradcheck.check_case(_product_case(1.0), XP, methods=["hvp"])
    assert all(r.passed for r in good) and any(r.tensor == "<t2,Ht1>" for r in good)
    bad = {r.tensor: r for r in gradcheck.check_case(_product_case(2.0), XP, methods=["hvp"])}
    assert not bad["<t2,Ht1>"].passed
    assert bad["hvp/inputs/a"].passed and bad["hvp/inputs/b"].passed  # both methods differentiate the same backward


def test_check_method_hvp_on_array_api_strict():
    pytest.importorskip("array_api_strict")
    xp = rx.backend("array_api_strict")
    recs = gradcheck.check_case(catalogue.get_case("dnc/content_weights/paper"), xp, methods=["hvp"])
    assert recs and all(r.passed for r in recs)


def test_golden_file_holds_the_exported_jvp_and_hvp():
    """The stored jvp/ and hvp/ are what refmem.forward_mode computes from the stored tangents in
    long double (complex long double steps), rounded once to float64, bit for bit; a float64
    evaluation of the same agrees only to a few ulps."""
    from refmem import extended

    work = extended.working_dtype()
    for name in ("attention/luong_general/local_p", "dnc/core_unroll/deepmind"):
        case, g = catalogue.get_case(name), golden.load(name, GOLDEN)
        arrays = {k: rx.from_numpy(XP, v.astype(work) if v.dtype.kind == "f" else v)
                  for k, v in g.tensors.items() if k.split("/")[0] in catalogue.ROLES}
        tangents = {k: v.astype(work) for k, v in g.tangents.items()}
        cot = {k: v.astype(work) for k, v in g.cotangents.items()}
        frozen = case.forward(arrays).frozen if case.stopped else {}
        jvp = fm.jvp(case, XP, arrays, tangents, frozen)
        hvp = fm.hvp(case, XP, arrays, cot, tangents, frozen)
        for k in g.jvp:
            np.testing.assert_array_equal(np.asarray(jvp[k], dtype=np.float64), g.jvp[k])
        for k in g.hvp:
            np.testing.assert_array_equal(np.asarray(hvp[k], dtype=np.float64), g.hvp[k])
        assert "complex step" in g.precision


# ----------------------------------------------------------------------------- against torch


def _torch_primitive(name):
    torch = pytest.importorskip("torch")
    eps = 1e-6

    def cosine(keys, memory):
        nk = torch.sqrt((keys * keys).sum(-1, keepdim=True) + eps)
        nm = torch.sqrt((memory * memory).sum(-1, keepdim=True) + eps).transpose(1, 2)
        return keys @ memory.transpose(1, 2) / (nk * nm + eps)

    def excl(x):
        return torch.cat([torch.ones_like(x[..., :1]), torch.cumprod(x[..., :-1], -1)], -1)

    return {
        "primitives/sigmoid/default": lambda a: {"out": torch.sigmoid(a["inputs/x"])},
        "primitives/tanh/default": lambda a: {"out": torch.tanh(a["inputs/x"])},
        "primitives/softplus/default": lambda a: {"out": torch.nn.functional.softplus(a["inputs/x"])},
        "primitives/softmax/default": lambda a: {"out": torch.softmax(a["inputs/x"], -1)},
        "primitives/cosine/default": lambda a: {"similarity": cosine(a["inputs/keys"], a["inputs/memory"])},
        "primitives/exclusive_cumprod/default": lambda a: {"out": excl(a["inputs/x"])},
    }[name]


def _torch_forward_mode(fn, g, double_backward):
    """JVP by torch.func.jvp; HVP by double backward or forward over reverse (torch.func)."""
    import torch

    leaves = {k: torch.tensor(v) for k, v in g.tensors.items() if k.split("/")[0] in catalogue.ROLES}
    names = sorted(g.tangents)
    tangents = {k: torch.tensor(g.tangents[k]) for k in names}
    cot = {k: torch.tensor(v) for k, v in g.cotangents.items()}

    def outputs(p):
        return fn({**leaves, **p})

    def loss(p):
        return sum((v * cot[k]).sum() for k, v in outputs(p).items())

    primals = {k: leaves[k] for k in names}
    _, jvp = torch.func.jvp(outputs, (primals,), (tangents,))
    if double_backward:
        x = {k: v.clone().requires_grad_(True) for k, v in primals.items()}
        grads = torch.autograd.grad(loss(x), [x[k] for k in names], create_graph=True, allow_unused=True)
        live = [i for i, gr in enumerate(grads) if gr is not None and gr.requires_grad]  # a constant gradient has a zero HVP
        hv = torch.autograd.grad([grads[i] for i in live], [x[k] for k in names],
                                 grad_outputs=[tangents[names[i]] for i in live], allow_unused=True)
        hvp = {k: (h if h is not None else torch.zeros_like(tangents[k])) for k, h in zip(names, hv)}
    else:
        _, hvp = torch.func.jvp(torch.func.grad(loss), (primals,), (tangents,))
    return ({k: v.detach().numpy() for k, v in jvp.items()}, {k: v.detach().numpy() for k, v in hvp.items()})


PRIMITIVES = ["primitives/sigmoid/default", "primitives/tanh/default", "primitives/softplus/default",
              "primitives/softmax/default", "primitives/cosine/default", "primitives/exclusive_cumprod/default"]
#: Representative cases of the other families, through the torch examples' adapters.
FROM_EXAMPLES = [
    ("torch_memory_lstm", "memory_lstm/step/default"), ("torch_memory_lstm", "memory_lstm/unroll/default"),
    ("torch_attention", "attention/bahdanau_decoder/previous_masked"),
    ("torch_attention", "attention/bahdanau_decoder/current_teacher"),
    ("torch_luong", "attention/luong_concat/local_p"), ("torch_luong", "attention/luong_general/global"),
    ("torch_dnc", "dnc/access_step/deepmind"), ("torch_dnc", "dnc/access_step/paper"),
    ("torch_dnc", "dnc/core_unroll/deepmind"), ("torch_dnc", "dnc/core_unroll/deep_deepmind"),
]
#: Worst normwise relative errors against torch, per role (printed at the end with -s).
WORST: dict[str, tuple[float, str]] = {}


def _record(role, name, ref, got):
    for k in ref:
        err = _normwise(got[k], ref[k])
        if err >= WORST.get(role, (-1.0, ""))[0]:
            WORST[role] = (err, f"{name}: {role}/{k}")
        assert err < 1e-12, f"{name}: {role}/{k} differs from torch by {err:.1e} (normwise)"


@pytest.mark.parametrize("name", PRIMITIVES)
@pytest.mark.parametrize("double_backward", [True, False], ids=["double_backward", "forward_over_reverse"])
def test_primitives_against_torch(name, double_backward):
    fn = _torch_primitive(name)
    g = golden.load(name, GOLDEN)
    jvp, hvp = _torch_forward_mode(fn, g, double_backward)
    _record("jvp", name, g.jvp, jvp)
    _record("hvp", name, g.hvp, hvp)


@pytest.mark.parametrize("module,name", FROM_EXAMPLES, ids=[n for _, n in FROM_EXAMPLES])
def test_families_against_torch(module, name, monkeypatch):
    pytest.importorskip("torch")
    monkeypatch.syspath_prepend(str(REPO))
    run = golden.load_adapter(f"examples.{module}:run")
    g = golden.load(name, GOLDEN)
    result = run(name, g.given("float64"), "float64", dict(g.config))
    _record("jvp", name, g.jvp, {k[4:]: v for k, v in result.items() if k.startswith("jvp/")})
    _record("hvp", name, g.hvp, {k[4:]: v for k, v in result.items() if k.startswith("hvp/")})
    assert {f"jvp/{k}" for k in g.jvp} | {f"hvp/{k}" for k in g.hvp} <= set(result)


@pytest.mark.parametrize("name", ["dnc/access_step/deepmind", "dnc/core_unroll/deepmind"])
def test_double_backward_agrees_where_a_gradient_is_stopped(name):
    """With the deepmind stop_gradient a constant in both differentiations, the HVP is the Hessian of the
    loss with the stopped value fixed: double backward and forward over reverse both give the golden one."""
    pytest.importorskip("torch")
    sys.path.insert(0, str(REPO))
    try:
        E = importlib.import_module("examples.torch_dnc")
    finally:
        sys.path.remove(str(REPO))
    g = golden.load(name, GOLDEN)
    cfg = dict(g.config)

    def fn(a):
        state = {k.split("/", 1)[1]: v for k, v in a.items() if k.startswith("state/")}
        params = {k.split("/", 1)[1]: v for k, v in a.items() if k.startswith("params/")}
        if name.startswith("dnc/core_unroll/"):
            return E.core_unroll(a["inputs/x"], params, state, cfg)
        B, nw, N = state["write_weights"].shape
        rv, new = E.access_step(a["inputs/controller_output"], params["W_xi"], params["b_xi"], state, nw,
                                state["read_weights"].shape[1], state["memory"].shape[2], cfg["convention"])
        return {"read_vectors": rv, **new}

    for double_backward in (True, False):
        jvp, hvp = _torch_forward_mode(fn, g, double_backward)
        _record("jvp", name, g.jvp, jvp)
        _record("hvp", name, g.hvp, hvp)


def teardown_module(module):
    if WORST:
        print("\nworst normwise relative error against torch: "
              + "; ".join(f"{role} {err:.1e} ({where})" for role, (err, where) in sorted(WORST.items())))


@pytest.mark.parametrize("name", ["dnc/memory_update/any_convention", "dnc/access_step/deepmind", "attention/luong_dot/local_p"])
def test_check_method_hvp_on_torch(name):
    """The complex step runs through the backwards on torch too (whose matmul does not mix real and complex)."""
    pytest.importorskip("torch")
    recs = gradcheck.check_case(catalogue.get_case(name), rx.backend("torch"), methods=["hvp"])
    assert recs and all(r.passed for r in recs), [r for r in recs if not r.passed]
