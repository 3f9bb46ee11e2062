"""The framework implementations in examples/ pass `refmem golden verify` in float64 and float32.

Each example is an independent implementation written from SPEC (it never
imports refmem) plugged in through the adapter protocol of examples/README.md.
A test is skipped when its framework is not installed.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from refmem import golden
from refmem.cli import main

REPO = Path(__file__).resolve().parent.parent
GOLDEN = REPO / "golden"

#: XLA compiles the whole access step for each dtype and convention; on a small, busy CI
#: machine the lower optimisation level halves that time (the results still pass).
FAST_XLA = "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"

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


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("module,framework,required", EXAMPLES, ids=[e[0] for e in EXAMPLES])
def test_example_passes_verify(module, framework, required, dtype):
    pytest.importorskip(framework)
    manifest = golden.read_manifest(GOLDEN)
    missing = [c for c in required if c not in manifest["cases"]]
    assert not missing, f"golden/ lacks {missing}; run refmem golden export"
    if framework == "jax":  # in a fresh process, so that XLA_FLAGS applies to it alone
        env = {**os.environ, "XLA_FLAGS": (os.environ.get("XLA_FLAGS", "") + " " + FAST_XLA).strip()}
        proc = subprocess.run(
            [sys.executable, "-m", "refmem", "golden", "verify", "--adapter", f"examples.{module}:run",
             "--dtype", dtype, "--dir", str(GOLDEN)],
            cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "0 failed, 0 problems" in proc.stdout and "returned float" not in proc.stdout
        for case in required:
            assert case in proc.stdout
        for case in required:  # forward mode and second order: every JVP and HVP of the case, compared
            g = golden.load(case, GOLDEN)
            rows = {tuple(line.split()[:2]) for line in proc.stdout.splitlines() if line.startswith(case + " ")}
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
