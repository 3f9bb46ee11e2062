"""The framework implementations in examples/ pass `refmem golden verify` in float64 and float32.

Each example is an independent implementation written from SPEC (it never
imports refmem) plugged in through the adapter protocol of examples/README.md.
A test is skipped when its framework is not installed.
"""

from __future__ import annotations

import ast
import fnmatch
import os
import re
import sys
from pathlib import Path

import pytest

from refmem import golden
from refmem.cli import main

from conftest import child_env, run

REPO = Path(__file__).resolve().parent.parent
GOLDEN = REPO / "golden"

#: XLA compiles the whole access step for each dtype and convention; on a small, busy CI
#: machine the lower optimisation level halves that time (the results still pass).
FAST_XLA = "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"

#: The jax examples compile their forward, backward, JVP and HVP once per case (``jax.jit``): about
#: 15 CPU seconds a DNC core case, most of a run. Every case the example declares runs in both
#: dtypes, op by op (``JAX_DISABLE_JIT``: the same functions, the same primitives in the same order;
#: jax still compiles each primitive once per shape, which the cases share), except that in float32
#: its required cases (``EXAMPLES``: every code path of the example, each convention and
#: configuration branch) run compiled instead, as a user runs them. What jit adds (tracing under
#: static arguments, XLA's fused kernels) is checked there. No case runs twice in one dtype.
COMPILED_DTYPE = "float32"


def _declared_cases(module: str, manifest: dict) -> list[str]:
    """The committed cases an example declares (its module's ``CASES`` fnmatch patterns), read from
    its source (the test process does not import jax)."""
    tree = ast.parse((REPO / "examples" / f"{module}.py").read_text())
    patterns = next(ast.literal_eval(node.value) for node in tree.body if isinstance(node, ast.Assign)
                    and any(getattr(t, "id", None) == "CASES" for t in node.targets))
    return [c for c in manifest["cases"] if any(fnmatch.fnmatchcase(c, p) for p in patterns)]


def _jax_verify(module: str, dtype: str, cases: list[str], *, compiled: bool) -> str:
    """``refmem golden verify`` of a jax example on ``cases`` in a fresh process (XLA_FLAGS and
    JAX_DISABLE_JIT apply to it alone); its stdout, after checking that every case passed in ``dtype``."""
    env = child_env(XLA_FLAGS=(os.environ.get("XLA_FLAGS", "") + " " + FAST_XLA).strip(),
                    JAX_DISABLE_JIT=None if compiled else "1")
    proc = run([sys.executable, "-m", "refmem", "golden", "verify", "--adapter", f"examples.{module}:run",
                "--dtype", dtype, "--dir", GOLDEN, *(a for c in cases for a in ("--case", c))], cwd=REPO, env=env)
    assert "0 failed, 0 problems" in proc.stdout and "returned float" not in proc.stdout
    # --case selects by fnmatch or substring: the cases named and those they name a part of
    chosen = [c for c in golden.read_manifest(GOLDEN)["cases"] if any(fnmatch.fnmatchcase(c, p) or p in c for p in cases)]
    assert f"{len(chosen)} cases" in proc.stdout, proc.stdout[-2000:]
    for case in cases:
        assert case in proc.stdout
    return proc.stdout

#: adapter module, framework it needs, cases it must cover (at least).
EXAMPLES = [
    ("torch_attention", "torch", ["attention/bahdanau_decoder/previous", "attention/bahdanau_decoder/current"]),
    ("torch_luong", "torch", ["attention/luong_concat/local_p", "attention/luong_location/local_m"]),
    ("torch_memory_lstm", "torch", ["memory_lstm/step/default", "memory_lstm/unroll/default"]),
    ("torch_dnc", "torch", ["dnc/access_step/deepmind", "dnc/access_step/paper", "dnc/core_unroll/deepmind",
                            "dnc/core_unroll/paper", "dnc/core_unroll/deep_deepmind"]),
    ("jax_dnc", "jax", ["dnc/access_step/deepmind", "dnc/access_step/paper", "dnc/core_unroll/deepmind",
                        "dnc/core_unroll/paper", "dnc/core_unroll/deep_deepmind"]),
    ("torch_rnnsearch", "torch", ["attention/rnnsearch/default", "attention/rnnsearch/masked",
                                  "attention/rnnsearch_encoder/masked", "attention/rnnsearch_decoder/masked",
                                  "attention/rnnsearch_maxout/default"]),
    ("jax_rnnsearch", "jax", ["attention/rnnsearch/default", "attention/rnnsearch/masked",
                              "attention/rnnsearch_decoder_step/masked", "attention/rnnsearch_gru_cell/masked"]),
    ("jax_attention", "jax", ["attention/bahdanau_decoder/previous", "attention/bahdanau_decoder/current",
                              "attention/bahdanau_decoder/previous_masked", "attention/bahdanau_decoder/current_teacher"]),
]


@pytest.fixture(autouse=True)
def _repo_on_path(monkeypatch):
    monkeypatch.syspath_prepend(str(REPO))
    monkeypatch.chdir(REPO)


@pytest.mark.slow
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("module,framework,required", EXAMPLES, ids=[e[0] for e in EXAMPLES])
def test_example_passes_verify(module, framework, required, dtype):
    pytest.importorskip(framework)
    manifest = golden.read_manifest(GOLDEN)
    missing = [c for c in required if c not in manifest["cases"]]
    assert not missing, f"golden/ lacks {missing}; run refmem golden export"
    if framework == "jax":
        declared = _declared_cases(module, manifest)
        assert set(required) <= set(declared), module
        # each declared case once in each dtype: in COMPILED_DTYPE the required ones compiled, the rest op by op
        compiled = required if dtype == COMPILED_DTYPE else []
        op_by_op = [c for c in declared if c not in compiled]
        outputs = [_jax_verify(module, dtype, op_by_op, compiled=False)] if op_by_op else []
        if compiled:
            outputs.append(_jax_verify(module, dtype, compiled, compiled=True))
        stdout = "\n".join(outputs)
        for case in required:  # forward mode and second order: every JVP and HVP of the case, compared
            g = golden.load(case, GOLDEN)
            rows = {tuple(line.split()[:2]) for line in stdout.splitlines() if line.startswith(case + " ")}
            assert {(case, f"jvp/{k}") for k in g.jvp} | {(case, f"hvp/{k}") for k in g.hvp} <= rows, case
        return
    report = golden.verify(f"examples.{module}:run", dtype, GOLDEN)
    assert report.passed, report.table(only_failures=True)
    assert set(required) <= {r.case for r in report.rows}
    for row in report.rows:
        assert row.dtype == dtype, (row.case, row.tensor, row.dtype)  # computed in the dtype asked for
    grads = {r.tensor for r in report.rows if r.tensor.startswith("grads/")}
    assert grads, "the example returned no gradients"
    for case in required:  # forward mode and second order: every JVP and HVP of the case, compared
        g = golden.load(case, GOLDEN)
        compared = {r.tensor for r in report.rows if r.case == case}
        assert {f"jvp/{k}" for k in g.jvp} | {f"hvp/{k}" for k in g.hvp} <= compared, case


@pytest.mark.parametrize("module,framework,required", EXAMPLES, ids=[e[0] for e in EXAMPLES])
def test_example_is_independent_of_refmem(module, framework, required):
    source = (REPO / "examples" / f"{module}.py").read_text()
    assert not re.search(r"^\s*(from|import)\s+refmem\b", source, re.M), module


def test_verify_command_line_with_an_example(capsys):
    pytest.importorskip("torch")
    code = main(["golden", "verify", "--adapter", "examples.torch_dnc:run", "--dtype", "float32",
                 "--dir", str(GOLDEN), "--case", "*paper*"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "dnc/access_step/paper" in out and "dnc/access_step/deepmind" not in out
    assert "grads/params/W_xi" in out


def test_a_wrong_convention_fails(monkeypatch):
    """The tolerances tell the conventions apart: deepmind's code on the paper case fails."""
    pytest.importorskip("torch")
    import importlib

    mod = importlib.import_module("examples.torch_dnc")

    def swapped(case, tensors, dtype, config=None):
        other = "deepmind" if case.endswith("paper") else "paper"
        return mod.run(case, tensors, dtype, {"convention": other})

    adapter = golden.Adapter("swapped", swapped, ("dnc/access_step/deepmind", "dnc/access_step/paper"))
    for dtype in ("float32", "float64"):
        report = golden.verify(adapter, dtype, GOLDEN)
        failed = {r.case for r in report.failures}
        assert failed == {"dnc/access_step/deepmind", "dnc/access_step/paper"}, dtype
