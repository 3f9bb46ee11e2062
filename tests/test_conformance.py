"""tools/conformance.py: public implementations against the goldens, with declared deviations.

The run must pass while the declared deviations hold and fail both ways: on a failure no
declaration covers (a new deviation, or a removed declaration) and on a declaration that
no failure matches any more. The logic is tested on synthetic rows (no packages needed);
the real runs are skipped when the packages are missing. The root causes the declarations
name are checked numerically where that is cheap.
"""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import run

REPO = Path(__file__).resolve().parent.parent
TOOL = REPO / "tools" / "conformance.py"


def _tool():
    spec = importlib.util.spec_from_file_location("refmem_conformance_tool", TOOL)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


def _have(*mods):
    return all(importlib.util.find_spec(m) is not None for m in mods)


def _run(*args):
    """The tool in a child; the exit status is the caller's to check (its output is shown on a signal or a hang)."""
    return run([sys.executable, TOOL, *args], expect=None, cwd=REPO)


# ----------------------------------------------------------------------------- the rules, on synthetic rows


def _outcome(tool, rows, deviations):
    impl = tool.Implementation("x", "x", "x.py:run", (), ())
    out = tool.Outcome(impl, rows=[dict(r) for r in rows], deviations=deviations)
    tool.apply_deviations(out)
    return out


ROWS = [
    {"case": "dnc/usage/deepmind", "tensor": "grads/inputs/prev_write_weights", "dtype": "float32", "passed": False, "ratio": 9.0},
    {"case": "dnc/usage/deepmind", "tensor": "outputs/usage", "dtype": "float32", "passed": True, "ratio": 0.1},
    {"case": "dnc/usage/paper", "tensor": "outputs/usage", "dtype": "float64", "passed": True, "ratio": 0.1},
]
DEV = {"case": ["dnc/usage/deepmind"], "tensor": ["grads/inputs/prev_write_weights"], "dtypes": ["float32"],
       "reason": "r", "where": "w", "index": 1}


def test_declared_deviation_passes():
    tool = _tool()
    out = _outcome(tool, ROWS, [DEV])
    assert out.passed and not out.undeclared and not out.stale


def test_a_removed_declaration_fails():
    tool = _tool()
    out = _outcome(tool, ROWS, [])
    assert not out.passed
    assert [(r["case"], r["tensor"]) for r in out.undeclared] == [("dnc/usage/deepmind", "grads/inputs/prev_write_weights")]


def test_a_declaration_that_no_longer_occurs_fails():
    tool = _tool()
    fixed = [dict(r, passed=True) for r in ROWS]
    out = _outcome(tool, fixed, [DEV])
    assert not out.passed and [d["index"] for d in out.stale] == [1]


def test_a_new_deviation_fails_beside_declared_ones():
    tool = _tool()
    rows = ROWS + [{"case": "dnc/usage/paper", "tensor": "outputs/usage", "dtype": "float32", "passed": False, "ratio": 3.0}]
    out = _outcome(tool, rows, [DEV])
    assert not out.passed and [r["case"] for r in out.undeclared] == ["dnc/usage/paper"]


def test_a_declaration_holds_only_in_its_dtype():
    tool = _tool()
    rows = [dict(ROWS[0], dtype="float64")]
    out = _outcome(tool, rows, [DEV])
    assert out.undeclared and out.stale


def test_declaration_files_parse_and_name_their_sources():
    tool = _tool()
    for path in sorted((REPO / "conformance").glob("*.toml")):
        devs = tool.load_deviations(path)
        assert devs, path
        for d in devs:
            assert d["reason"] and d["where"] and d["dtypes"], (path, d)


def test_a_bad_declaration_is_refused(tmp_path):
    tool = _tool()
    p = tmp_path / "x.toml"
    p.write_text('[[deviation]]\ncase = "a"\ntensor = "*"\ndtypes = ["float16"]\nreason = "r"\nwhere = "w"\n')
    with pytest.raises(ValueError, match="dtypes"):
        tool.load_deviations(p)
    p.write_text('[[deviation]]\ncase = "a"\n')
    with pytest.raises(ValueError, match="lacks"):
        tool.load_deviations(p)


def test_a_missing_package_is_skipped_with_a_reason():
    tool = _tool()
    impl = tool.Implementation("ghost", "ghost", "x.py:run", ("refmem_no_such_module",), ())
    out = tool.run_implementation(impl)
    assert out.passed and out.skipped == "not installed: refmem_no_such_module"
    assert "skipped (not installed: refmem_no_such_module)" in tool.render([out])


# ----------------------------------------------------------------------------- real runs

#: The tests that read `full_run` run on one xdist worker, which runs the tool once.
on_full_run = pytest.mark.xdist_group("conformance-full-run")


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    """``tools/conformance.py --out REPORT`` over every implementation, once: CI's conformance verdict
    (CI runs it nowhere else). An implementation whose packages are missing is skipped by the tool.
    Returns the process and the report it wrote."""
    report = tmp_path_factory.mktemp("conformance") / "conformance.md"
    only = [a for impl in _tool().IMPLEMENTATIONS if impl.name not in TESTED_ELSEWHERE for a in ("--only", impl.name)]
    proc = _run("--out", report, *only)
    return proc, report.read_text() if report.exists() else ""


#: refmem's own Keras decoder on each backend: the same golden verification (every Bahdanau case, both
#: dtypes, no deviation may occur) runs in tests/test_keras_attention_decoder.py, in the child that
#: also checks the layer's Keras behaviour; the full run leaves it out rather than run it twice.
TESTED_ELSEWHERE = ("keras-decoder-torch", "keras-decoder-jax", "keras-decoder-tensorflow")


def _verdict(proc, name):
    """The tool's line for implementation ``name``."""
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(f"{name}: ")]
    assert len(lines) == 1, f"no single line for {name} in:\n{proc.stdout}\n{proc.stderr[-3000:]}"
    return lines[0]


@on_full_run
def test_every_implementation_conforms_to_its_declarations(full_run):
    """The verdict on every installed implementation: no undeclared deviation, no stale declaration."""
    proc, _ = full_run
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    tool = _tool()
    for impl in tool.IMPLEMENTATIONS:
        if impl.name in TESTED_ELSEWHERE:
            assert impl.ours and impl.adapter.startswith("examples/keras_attention_decoder.py"), impl
            continue
        line = _verdict(proc, impl.name)
        assert line.endswith(": ok") or line.startswith(f"{impl.name}: skipped (not installed"), line


@on_full_run
@pytest.mark.skipif(not _have("torch", "dnc"), reason="needs torch and the PyPI dnc package (pytorch-dnc)")
def test_pytorch_dnc_conforms_to_its_declarations(full_run):
    line = _verdict(full_run[0], "pytorch-dnc")
    assert line.startswith("pytorch-dnc: 86 tensors") and line.endswith(": ok"), line


@pytest.mark.skipif(not _have("torch", "dnc"), reason="needs torch and the PyPI dnc package (pytorch-dnc)")
def test_pytorch_dnc_fails_when_a_declaration_is_removed_or_stale(tmp_path):
    src = (REPO / "conformance" / "pytorch_dnc.toml").read_text()
    blocks = src.split("[[deviation]]")
    # remove the stopped-gradient declaration: its failure is then undeclared
    kept = [b for b in blocks if 'case = "dnc/usage/deepmind"' not in b]
    assert len(kept) == len(blocks) - 1
    (tmp_path / "pytorch_dnc.toml").write_text("[[deviation]]".join(kept))
    proc = _run("--only", "pytorch-dnc", "--no-write", "--deviations", str(tmp_path))
    assert proc.returncode == 1, proc.stdout
    assert "undeclared: dnc/usage/deepmind grads/inputs/prev_write_weights" in proc.stdout
    # declare a deviation that does not occur (the allocation agrees)
    (tmp_path / "pytorch_dnc.toml").write_text(
        src + '\n[[deviation]]\ncase = "dnc/allocation/any_convention"\ntensor = "*"\ndtypes = ["float64"]\nreason = "r"\nwhere = "w"\n')
    proc = _run("--only", "pytorch-dnc", "--no-write", "--deviations", str(tmp_path))
    assert proc.returncode == 1, proc.stdout
    assert "no longer occurs: deviation 5 (dnc/allocation/any_convention" in proc.stdout


@on_full_run
@pytest.mark.skipif(not _have("keras", "torch", "jax"), reason="needs keras with the torch and jax backends")
def test_keras_layers_conform_to_their_declarations(full_run):
    for name in ("keras-torch", "keras-jax"):
        assert _verdict(full_run[0], name).endswith(": ok")


@on_full_run
@pytest.mark.skipif(not _have("torch", "onmt", "d2l", "pandas"), reason="needs torch, OpenNMT-py, d2l and pandas")
def test_opennmt_and_d2l_conform(full_run):
    assert _verdict(full_run[0], "opennmt").startswith("opennmt: 48 tensors, 0 failing")
    assert _verdict(full_run[0], "d2l").startswith("d2l: 32 tensors, 0 failing")


@on_full_run
@pytest.mark.skipif(not _have("attention", "keras", "tensorflow"), reason="needs the attention package and tensorflow")
def test_the_attention_package_conforms(full_run):
    assert _verdict(full_run[0], "attention-pkg").startswith("attention-pkg: 20 tensors, 0 failing")


@on_full_run
@pytest.mark.skipif(not _have("tensorflow_addons"), reason="needs tensorflow-addons installed")
def test_tensorflow_addons_is_reported_as_not_importable(full_run):
    assert "does not import, as declared (ModuleNotFoundError: No module named 'keras.src.engine')" in \
        _verdict(full_run[0], "tensorflow-addons")


def test_an_undeclared_import_error_and_a_stale_declaration_fail():
    """The verdict on an implementation that does not import: declared and matching passes, otherwise fails."""
    tool = _tool()
    impl = tool.Implementation("x", "x", "x.py:run", (), (), unavailable="No module named 'y'")
    ok = tool.Outcome(impl, import_error="ModuleNotFoundError: No module named 'y'")
    assert ok.passed
    assert "installs, does not import (as declared)" in tool.render([ok])
    bad = tool.Outcome(impl, import_error="ImportError: z", problems=[{"case": "*", "dtype": "-", "problem": "p"}])
    assert not bad.passed


@on_full_run
@pytest.mark.skipif(not _have("keras", "torch", "dnc"), reason="needs keras, torch and the PyPI dnc package (pytorch-dnc)")
def test_the_report_is_written(full_run):
    proc, text = full_run
    assert text, proc.stdout + proc.stderr[-3000:]
    assert "Generated by `python tools/conformance.py`" in text
    assert "| `dnc/usage/deepmind` |" in text and "deviates [pytorch-dnc #4]" in text
    assert "dnc/memory.py:79" in text


def test_the_committed_report_is_generated():
    text = (REPO / "docs" / "conformance.md").read_text()
    assert text.startswith("# Conformance") and "Generated by `python tools/conformance.py`" in text


# ----------------------------------------------------------------------------- the root causes the declarations name


@pytest.mark.skipif(not _have("torch", "dnc"), reason="needs torch and the PyPI dnc package (pytorch-dnc)")
def test_pytorch_dnc_root_causes(monkeypatch):
    """Their results equal refmem's equations with exactly the choices the declarations name."""
    from refmem import golden

    monkeypatch.syspath_prepend(str(REPO))
    from conformance import pytorch_dnc as A

    def softplus(x):
        return np.log1p(np.exp(x))

    def content(M, k, s):  # cosine without eps under the square roots, + 1e-6 in the denominator
        cos = np.einsum("bhw,bnw->bhn", k, M) / (
            np.linalg.norm(k, axis=-1)[:, :, None] * np.linalg.norm(M, axis=-1)[:, None, :] + 1e-6)
        z = softplus(s)[..., None] * cos
        w = np.exp(z - z.max(-1, keepdims=True))
        return w / w.sum(-1, keepdims=True)

    g = golden.load("dnc/content_weights/deepmind")
    theirs = A.run(g.name, g.given("float64"), "float64")["outputs/weights"]
    assert np.abs(theirs - content(g.inputs["memory"], g.inputs["keys"], g.inputs["strengths"])).max() < 1e-15
    assert np.abs(theirs - g.outputs["weights"]).max() > 1e-8  # and that is what differs
    for conv in ("deepmind", "paper"):
        g = golden.load(f"dnc/read_weights/{conv}")
        x = g.inputs
        c = content(x["memory"], x["read_keys"], x["read_strengths"])
        f = np.einsum("bkij,brj->brki", x["link"], x["prev_read_weights"])
        b = np.einsum("bkij,bri->brkj", x["link"], x["prev_read_weights"])
        pi = x["read_modes"]
        three_modes = pi[:, :, 2:3] * c + pi[:, :, 0:1] * b.sum(2) + pi[:, :, 1:2] * f.sum(2)
        theirs = A.run(g.name, g.given("float64"), "float64")["outputs/read_weights"]
        assert np.abs(theirs - three_modes).max() < 1e-15, conv
    # no stopped gradient: run as the deepmind case, they give the paper's gradient (of the paper golden's tensors)
    g = golden.load("dnc/usage/paper")
    d = golden.load("dnc/usage/deepmind")
    theirs = A.run(d.name, g.given("float64"), "float64")["grads/inputs/prev_write_weights"]
    assert np.abs(theirs - g.grads["inputs/prev_write_weights"]).max() < 1e-12
    from refmem import catalogue  # and refmem's deepmind gradient there, with the stopped gradient, is another

    case = catalogue.get_case(d.name)
    arrays = {k: v for k, v in g.tensors.items() if k.split("/")[0] in ("inputs", "params", "state")}
    ours = case.backward(arrays, {k.split("/", 1)[1]: v for k, v in g.tensors.items() if k.startswith("cotangents/")})
    assert np.abs(theirs - np.asarray(ours["inputs/prev_write_weights"])).max() > 1e-6


@pytest.mark.skipif(not _have("keras", "torch"), reason="needs keras and torch")
@pytest.mark.parametrize("backend", ["torch", "jax"])
def test_keras_maps_float64_to_float32(backend):
    """The root cause of the Keras float64 deviations: result_type(float64, float64) is float32."""
    if not _have(backend):
        pytest.skip(f"needs {backend}")
    code = ("import keras; from keras import ops; import numpy as np; "
            "print(keras.backend.result_type('float64', 'float64'), "
            "ops.tanh(np.ones(2)).dtype if keras.backend.backend() == 'jax' else "
            "ops.matmul(ops.ones((2, 2), 'float64'), ops.ones((2, 2), 'float64')).dtype)")
    import os

    env = {**os.environ, "KERAS_BACKEND": backend}
    if backend == "jax":
        code = "import jax; jax.config.update('jax_enable_x64', True); " + code
    proc = run([sys.executable, "-c", code], env=env)
    assert proc.stdout.split()[0] == "float32" and "float32" in proc.stdout.split()[1], proc.stdout
