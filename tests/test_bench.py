"""Performance machinery: batched gradient checks and the ``refmem bench`` smoke path.

No timing is asserted here; the figures come from ``refmem bench``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from refmem import catalogue, gradcheck
from refmem import xp as rx
from refmem.catalogue import Case, Forward

ALL = catalogue.cases()
IDS = [c.name for c in ALL]


# ----------------------------------------------------------------------------- batched finite differences


@pytest.mark.parametrize("case", ALL, ids=IDS)
def test_batched_equals_loop(case):
    """Every input and state tensor: the stacked evaluation gives the loop's numbers to rounding."""
    xp = rx.backend("numpy")
    ev = gradcheck.Evaluation(case, xp, case.draw(xp, 0), 0)
    assert ev.batch_rows() is not None, f"{case.name}: batched path off ({ev.batch_note})"
    keys = [k for k in ev.keys if not k.startswith("params/")]
    for key in keys:
        pairs = [(gradcheck.central_gradient(ev, key), gradcheck.central_gradient(ev, key, batched=False))]
        if case.complex_step:
            pairs.append((gradcheck.complex_gradient(ev, key), gradcheck.complex_gradient(ev, key, batched=False)))
        for fast, slow in pairs:
            scale = max(float(np.max(np.abs(slow))), 1e-300)
            assert np.max(np.abs(fast - slow)) <= 1e-12 * scale, key


def _user_case(fn, shape=(3, 4)):
    """A case ``y = fn(x)`` with ``x`` of ``shape`` and the backward of its Jacobian-free form."""
    x0 = np.random.default_rng(5).normal(size=shape)

    def fwd(a, frozen=None):
        return Forward({"y": fn(a["inputs/x"])})

    def bwd(a, cot):  # the exact VJP by reverse differences is not needed: tests compare engines only
        raise NotImplementedError

    return Case("user/f/default", "SPEC §6", "f", lambda xp_, s, z: {"inputs/x": xp_.asarray(x0)}, fwd, bwd)


@pytest.mark.parametrize("fn, separable", [
    (lambda x: np.tanh(x) * x, True),
    (lambda x: x - np.mean(x, axis=0, keepdims=True), False),  # rows mix
    (lambda x: x * x[0:1], False),  # every row reads row 0
    (lambda x: x * x[-1:], False),  # every row reads the last row
    (lambda x: x / x.shape[0], False),  # depends on the batch size
])
def test_probe_finds_rows_that_mix(fn, separable):
    """The batched path is used only for batch-separable forwards, and gives the loop's numbers."""
    case = _user_case(fn)
    xp = rx.backend("numpy")
    ev = gradcheck.Evaluation(case, xp, case.draw(xp, 0), 0)
    assert (ev.batch_rows() is not None) == separable, ev.batch_note
    fast = gradcheck.central_gradient(ev, "inputs/x")
    slow = gradcheck.central_gradient(ev, "inputs/x", batched=False)
    np.testing.assert_allclose(fast, slow, rtol=1e-12, atol=1e-15)
    fast = gradcheck.complex_gradient(ev, "inputs/x")
    slow = gradcheck.complex_gradient(ev, "inputs/x", batched=False)
    np.testing.assert_allclose(fast, slow, rtol=1e-12, atol=1e-15)


def test_batched_in_small_chunks(monkeypatch):
    """A stack budget that forces one copy per call still gives the same numbers."""
    case = catalogue.get_case("primitives/cosine/default")
    xp = rx.backend("numpy")
    ev = gradcheck.Evaluation(case, xp, case.draw(xp, 0), 0)
    whole = gradcheck.central_gradient(ev, "inputs/memory")
    monkeypatch.setattr(gradcheck.Evaluation, "STACK_BUDGET", 1)
    np.testing.assert_array_equal(gradcheck.central_gradient(ev, "inputs/memory"), whole)


def test_check_case_loop_and_batched_agree():
    case = catalogue.get_case("primitives/linear/default")
    xp = rx.backend("numpy")
    fast = gradcheck.check_case(case, xp)
    slow = gradcheck.check_case(case, xp, batched=False)
    assert [(r.tensor, r.method, r.passed) for r in fast] == [(r.tensor, r.method, r.passed) for r in slow]
    assert all(r.passed for r in fast)


def test_check_case_jobs_is_deprecated_and_changes_nothing():
    """The per-case fork pool is gone (refmem check runs cases side by side: tests/test_campaign.py);
    ``jobs`` warns and the records are those of the plain run."""
    case = catalogue.get_case("primitives/linear/default")
    xp = rx.backend("numpy")
    one = gradcheck.check_case(case, xp)
    with pytest.warns(DeprecationWarning, match="jobs"):
        two = gradcheck.check_case(case, xp, jobs=2)
    key = [(r.tensor, r.method, r.max_abs_err, r.max_rel_err, r.normwise_rel_err, r.passed) for r in one]
    assert key == [(r.tensor, r.method, r.max_abs_err, r.max_rel_err, r.normwise_rel_err, r.passed) for r in two]


def test_default_jobs(monkeypatch):
    monkeypatch.setenv("REFMEM_JOBS", "3")
    assert gradcheck.default_jobs() == 3
    monkeypatch.setenv("REFMEM_JOBS", "")
    assert gradcheck.default_jobs() >= 1


# ----------------------------------------------------------------------------- refmem bench (smoke path only)


def test_bench_quick_smoke(tmp_path, capfd):
    """``refmem bench --quick`` runs end to end and writes the JSON records (no timing asserted)."""
    from refmem import cli

    path = tmp_path / "bench.json"
    rc = cli.main(["bench", "--quick", "--impl", "refmem,torch", "--dtype", "float64", "--json", str(path)])
    out = capfd.readouterr().out
    assert rc == 0, out
    import json

    data = json.loads(path.read_text())
    assert data["records"], out
    for r in data["records"]:
        assert r["impl"] in ("refmem", "torch", "jax")
        assert r["benchmark"].split("/")[0] in ("dnc", "attention", "memory_lstm")
        assert r["dtype"] == "float64" and r["median_s"] > 0
        assert {"benchmark", "impl", "backend", "dtype", "median_s"} <= set(r)
    assert "refmem/torch" in out
    assert all(c["passed"] for c in data["gradcheck"] if c["impl"] == "refmem")


def test_bench_refuses_unknown_options(capsys):
    from refmem import cli

    assert cli.main(["bench", "--impl", "tensorflow"]) == 2
    assert "unknown implementation" in capsys.readouterr().err


def _quick(model):
    from benchmarks import configs

    return next(b for b in configs.QUICK if b.model == model)


def _refmem_forward(bench, x, p):
    """refmem's output of the benchmark, float64 NumPy."""
    from benchmarks import impl_refmem

    if bench.model == "memory_lstm":
        from refmem import memory_lstm as ML
        return ML.unroll_forward(x, ML.Params(**p))[0].h
    if bench.model == "attention":
        from refmem.attention import bahdanau as BA
        return BA.decoder_forward(x, BA.DecoderParams(**p), output_state="previous")[0].y
    from refmem.dnc import core
    from refmem.dnc.params import from_named
    cfg = impl_refmem.dnc_config(bench.sizes)
    return core.unroll_forward(x, from_named(p, cfg), cfg=cfg)[0].y


MODELS = ["memory_lstm", "attention", "dnc"]


@pytest.mark.parametrize("model", MODELS)
def test_torch_benchmark_computes_refmem_function(model):
    """The torch implementation times the same forward: equal outputs in float64, and equal gradients."""
    torch = pytest.importorskip("torch")
    from benchmarks import impl_refmem, impl_torch, problems

    bench = _quick(model)
    prob = problems.make(model, bench.sizes)
    step = impl_refmem.build(bench, "float64")
    x = torch.tensor(prob["x"], requires_grad=True)
    p = {k: torch.tensor(v, requires_grad=True) for k, v in prob["params"].items()}
    out = impl_torch.forward(model, x, p, bench.sizes)  # benchmarks.common.Skip here: an example is missing
    ref = _refmem_forward(bench, prob["x"], prob["params"])
    np.testing.assert_allclose(out.detach().numpy(), ref, rtol=1e-12, atol=1e-13)
    grads = torch.autograd.grad((out * torch.tensor(prob["cot"])).sum(), [x])
    ours = step()
    dx = {"dnc": lambda g: g[0], "attention": lambda g: g.h, "memory_lstm": lambda g: g.x}[model](ours)
    np.testing.assert_allclose(rx.to_numpy(dx), grads[0].numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("model", MODELS)
def test_jax_benchmark_computes_refmem_function(model):
    jax = pytest.importorskip("jax")
    from benchmarks import impl_jax, problems

    bench = _quick(model)
    prob = problems.make(model, bench.sizes)
    ref = _refmem_forward(bench, prob["x"], prob["params"])
    impl_jax._jax()  # float64 on before any array is made
    jnp = jax.numpy
    out = impl_jax.forward(model, jnp.asarray(prob["x"]), {k: jnp.asarray(v) for k, v in prob["params"].items()},
                           dict(bench.sizes))
    np.testing.assert_allclose(np.asarray(out), ref, rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("model", MODELS)
def test_refmem_benchmark_runs_on_array_api_strict(model):
    """The benchmarked refmem code is namespace-generic (what lets it run on CuPy): under array-api-strict it
    computes, in that namespace, the gradients it computes under NumPy."""
    pytest.importorskip("array_api_strict")
    from benchmarks import impl_refmem

    strict = _array_leaves(impl_refmem.build(_quick(model), "float64", backend="array_api_strict")())
    ref = _array_leaves(impl_refmem.build(_quick(model), "float64")())
    assert len(strict) == len(ref) > 0
    for got, want in zip(strict, ref):
        assert type(got).__module__.startswith("array_api_strict"), type(got)
        np.testing.assert_allclose(rx.to_numpy(got), want, rtol=1e-12, atol=1e-14)


def _array_leaves(tree) -> list:
    """The arrays of a (nested) tuple of arrays and ``None``, in order."""
    if tree is None:
        return []
    if isinstance(tree, (tuple, list)):
        return [leaf for item in tree for leaf in _array_leaves(item)]
    assert hasattr(tree, "shape"), type(tree)
    return [tree]


def test_bench_profile_and_memory_paths(capfd):
    """``--profile`` prints a cProfile table; a memory measurement runs in a child process."""
    from benchmarks import memory
    from refmem import cli

    assert cli.main(["bench", "--quick", "--profile", "memory_lstm"]) == 0
    assert "cumtime" in capfd.readouterr().out
    rec = memory.measure({"B": 2, "T": 2, "D": 3, "Y": 2, "H": 4, "N": 4, "W": 3, "R": 2, "nw": 1}, "float64")
    assert rec["traced_peak_bytes"] > 0 and rec["maxrss_bytes"] > 0
