"""Golden format 2: intermediates, order and precision; strict comparison; the first divergence;
JSON, JUnit and Markdown reports; refmem.testing and the pytest plugin; goldens in the wheel."""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from refmem import catalogue, golden
from refmem.cli import main
from refmem.dnc import addressing as A
from refmem.testing import assert_matches_golden

from conftest import run

REPO = Path(__file__).resolve().parent.parent
COMMITTED = REPO / "golden"

#: The composite cases (several equations in one case) and the intermediates docs/golden-format.md fixes for them.
COMPOSITE = {
    "dnc/access_step/": {"write_vectors", "erase_vectors", "free_gates", "allocation_gates", "write_gates",
                         "read_modes", "write_content_weights", "allocation", "forward_weights",
                         "backward_weights", "read_content_weights"},
    "dnc/core_unroll/": {"controller_output", "usage", "write_weights", "memory", "link", "precedence",
                         "read_weights"},
    "attention/bahdanau_decoder/": {"s0", "e", "context", "r", "z", "p"},
    "attention/luong_": {"score"},
    "memory_lstm/": {"i", "f", "o", "c_tilde", "e", "m"},
}


@pytest.fixture(scope="module")
def manifest():
    return golden.read_manifest(COMMITTED)


# ----------------------------------------------------------------------------- format 2


def test_every_composite_case_has_its_intermediates_and_order(manifest):
    assert manifest["format_version"] == 2
    seen = set()
    for name, entry in manifest["cases"].items():
        assert entry["precision"], name
        listed = [o["name"] for o in entry["order"]]
        assert all(n in entry["tensors"] for n in listed), name
        assert set(listed) == {t for t in entry["tensors"] if t.split("/")[0] in ("outputs", "intermediates")}, name
        assert all(o["spec"].startswith("SPEC §") for o in entry["order"]), name
        for prefix, names in COMPOSITE.items():
            if name.startswith(prefix):
                seen.add(prefix)
                have = {t.split("/", 1)[1] for t in entry["tensors"] if t.startswith("intermediates/")}
                assert names <= have, (name, names - have)
    assert seen == set(COMPOSITE)
    core = manifest["cases"]["dnc/core_unroll/deepmind"]
    assert core["order"][0]["name"] == "intermediates/controller_output" and core["order"][-1]["name"] == "outputs/y"
    assert core["tensors"]["intermediates/allocation"]["shape"][:2] == core["tensors"]["inputs/x"]["shape"][:2]


def test_access_step_order_is_golden_md_s():
    entry = golden.read_manifest(COMMITTED)["cases"]["dnc/access_step/paper"]
    assert [o["name"].split("/", 1)[1] for o in entry["order"]] == [
        "write_vectors", "erase_vectors", "free_gates", "allocation_gates", "write_gates", "read_modes", "usage",
        "write_content_weights", "allocation", "write_weights", "memory", "link", "precedence", "forward_weights",
        "backward_weights", "read_content_weights", "read_weights", "read_vectors"]
    b = golden.read_manifest(COMMITTED)["cases"]["attention/bahdanau_decoder/previous"]["order"]
    assert [o["name"] for o in b] == ["intermediates/s0", "intermediates/e", "outputs/alpha", "intermediates/context",
                                     "intermediates/r", "intermediates/z", "intermediates/p", "outputs/s", "outputs/y"]
    assert not b[0].get("per_step") and all(o["per_step"] for o in b[1:])


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


@pytest.mark.parametrize("conv", ["deepmind", "paper"])
def test_access_step_intermediates_equal_an_independent_recomputation(conv):
    """The interface by hand in NumPy, then each step with refmem's stand-alone addressing functions."""
    g = golden.load(f"dnc/access_step/{conv}", COMMITTED)
    it, st = g.intermediates, g.state
    B, nw, N = st["write_weights"].shape
    R, W = st["read_weights"].shape[1], st["memory"].shape[2]
    xi = g.inputs["controller_output"] @ g.params["W_xi"] + g.params["b_xi"]
    sizes = [nw * W, nw * W, R, nw, nw, R * (1 + 2 * nw), nw * W, nw, R * W, R]
    parts = np.split(xi, np.cumsum(sizes)[:-1], axis=1)
    close = dict(rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(it["write_vectors"], parts[0].reshape(B, nw, W), **close)
    np.testing.assert_allclose(it["erase_vectors"], _sigmoid(parts[1]).reshape(B, nw, W), **close)
    np.testing.assert_allclose(it["free_gates"], _sigmoid(parts[2]), **close)
    np.testing.assert_allclose(it["allocation_gates"], _sigmoid(parts[3]), **close)
    np.testing.assert_allclose(it["write_gates"], _sigmoid(parts[4]), **close)
    np.testing.assert_allclose(it["read_modes"], _softmax(parts[5].reshape(B, R, 1 + 2 * nw)), **close)
    (usage, _), _ = A.usage_forward(st["usage"], st["write_weights"], it["free_gates"], st["read_weights"],
                                    convention=conv)
    np.testing.assert_allclose(g.outputs["usage"], usage, **close)
    (cw,), _ = A.content_weights_forward(st["memory"], parts[6].reshape(B, nw, W), parts[7], convention=conv)
    np.testing.assert_allclose(it["write_content_weights"], cw, **close)
    (alloc,), _ = A.write_allocation_weights_forward(usage, it["allocation_gates"] * it["write_gates"])
    np.testing.assert_allclose(it["allocation"], alloc, **close)
    (fwd, bwd), _ = A.directional_weights_forward(g.outputs["link"], st["read_weights"])
    np.testing.assert_allclose(it["forward_weights"], fwd, **close)
    np.testing.assert_allclose(it["backward_weights"], bwd, **close)
    (cr,), _ = A.content_weights_forward(g.outputs["memory"], parts[8].reshape(B, R, W), parts[9], convention=conv)
    np.testing.assert_allclose(it["read_content_weights"], cr, **close)


def test_bahdanau_energies_equal_eq_1_by_hand():
    g = golden.load("attention/bahdanau_decoder/previous_masked", COMMITTED)
    p, h = g.params, g.inputs["h"]
    s_prev = np.concatenate([g.intermediates["s0"][:, None], g.outputs["s"][:, :-1]], axis=1)  # s_{t-1}
    e = np.tanh((s_prev @ p["W_a"])[:, :, None, :] + (h @ p["U_a"] + p["b_a"])[:, None]) @ p["V_a"]
    np.testing.assert_allclose(g.intermediates["e"], e, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(g.intermediates["s0"], np.tanh(h[:, 0] @ p["W_s"]), rtol=1e-13, atol=1e-14)


def test_every_reference_intermediate_passes_and_a_perturbed_one_is_the_first_divergence(manifest):
    for name in [n for n in manifest["cases"] if any(n.startswith(p) for p in COMPOSITE)]:
        g = golden.load(name, COMMITTED, manifest)
        for dtype in ("float32", "float64"):
            assert golden.compare(g, g.expected(dtype), dtype).passed, (name, dtype)
        last = [o for o in g.order if o["name"].startswith("intermediates/")][-1]
        bad = g.expected()
        ref = bad[last["name"]].copy()
        idx = np.unravel_index(int(np.argmax(np.abs(ref))), ref.shape)
        ref[idx] += 1e-3 * float(np.max(np.abs(ref)))
        bad[last["name"]] = ref
        rep = golden.compare(g, bad, "float64")
        d = rep.divergences[name]
        assert d.tensor == last["name"] and d.spec == last["spec"], (name, d)
        if last.get("per_step"):
            assert d.step == idx[1] and d.index == (idx[0],) + tuple(idx[2:]), (name, d)


def test_format_1_still_loads(tmp_path):
    d = tmp_path / "g"
    golden.export(d, catalogue.cases(["primitives"])[:1])
    m = json.loads((d / "manifest.json").read_text())
    m["format_version"] = 1
    (d / "manifest.json").write_text(json.dumps(m))
    name = next(iter(m["cases"]))
    assert golden.load(name, d).outputs
    assert any("format_version 1" in p for p in golden.check(d, modules=["primitives"]).problems)


# ----------------------------------------------------------------------------- strict comparison


@pytest.fixture(scope="module")
def linear():
    return golden.load("primitives/linear/default", COMMITTED)


def _notes(rep):
    return {r.tensor: r.note for r in rep.failures}


def test_a_complex_result_fails(linear):
    res = linear.expected("float64")
    res["outputs/out"] = res["outputs/out"].astype(np.complex128)  # imaginary part 0: values "equal"
    rep = golden.compare(linear, res, "float64")
    assert not rep.passed
    assert "complex result (complex128)" in _notes(rep)["outputs/out"]


@pytest.mark.parametrize("value,kind", [(np.nan, "NaN"), (np.inf, "inf")])
def test_a_non_finite_result_fails_naming_it(linear, value, kind):
    res = linear.expected("float32")
    res["grads/params/W"][1, 0] = value
    rep = golden.compare(linear, res, "float32")
    assert _notes(rep)["grads/params/W"] == f"1 non-finite, first {kind} at [1, 0]"


def test_a_wrong_dtype_fails(linear):
    rep = golden.compare(linear, linear.expected("float64"), "float32")
    assert not rep.passed and len(rep.failures) == 8  # out, 3 grads, 1 jvp, 3 hvp
    assert all("dtype float64, expected float32" in r.note for r in rep.failures)
    res = linear.expected("float64")
    res["outputs/out"] = np.rint(res["outputs/out"]).astype(np.int64)
    assert "dtype int64 is not a floating type" in _notes(golden.compare(linear, res, "float64"))["outputs/out"]


def test_a_wrong_shape_and_an_unknown_name_fail(linear):
    res = linear.expected("float64")
    res["outputs/out"] = res["outputs/out"][None]
    res["intermediates/h"] = np.zeros(3)
    res["output/out"] = np.zeros(3)
    rep = golden.compare(linear, res, "float64")
    assert _notes(rep)["outputs/out"].startswith("shape [1, ")
    assert any("'intermediates/h': this case has no such tensor" in p for p in rep.problems)
    assert any("'output/out': unknown role 'output'" in p for p in rep.problems)
    assert "shape [1," in rep.divergences[linear.name].message


# ----------------------------------------------------------------------------- planted bugs


def _planted(tmp_path, example, old, new):
    source = (REPO / "examples" / f"{example}.py").read_text()
    assert source.count(old) == 1, old
    path = tmp_path / f"bug_{example}.py"
    path.write_text(source.replace(old, new))
    return f"{path}:run"


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_a_planted_allocation_bug_is_named_at_intermediates_allocation(tmp_path, dtype):
    pytest.importorskip("torch")
    spec = _planted(tmp_path, "torch_dnc", "torch.cumprod(su[..., :-1], dim=-1)", "torch.cumprod(su[..., 1:], dim=-1)")
    report = golden.verify(spec, dtype, COMMITTED)
    failed = {r.case for r in report.failures}
    assert {"dnc/access_step/deepmind", "dnc/access_step/paper", "dnc/core_unroll/deepmind"} <= failed
    for case in failed:
        d = report.divergences[case]
        assert d.tensor == "intermediates/allocation" and d.spec == "SPEC §5 step 3", (case, d.message)
        assert re.fullmatch(r"first divergence( at t=\d+)?: intermediates/allocation \(SPEC §5 step 3\) at "
                            r"\[\d+, \d+, \d+\]: reference \S+, yours \S+", d.message), d.message
    # From the zero initial state every usage is eps-level at t=0, so the bug moves the allocation there only by
    # about 1e-6: the float64 tolerance sees it, the float32 one does not, and float32 names t=1.
    assert report.divergences["dnc/core_unroll/deepmind"].step == {"float32": 1, "float64": 0}[dtype]


def test_a_planted_energy_bug_is_named_at_intermediates_e(tmp_path, capsys):
    pytest.importorskip("torch")
    spec = _planted(tmp_path, "torch_attention", '+ keys) @ p["V_a"]  # (1)', '+ keys) @ (1.01 * p["V_a"])  # (1)')
    code = main(["golden", "verify", "--adapter", spec, "--dir", str(COMMITTED), "--dtype", "float32"])
    assert code == 1
    err = capsys.readouterr().err
    for case in ("previous", "current", "previous_masked", "current_teacher"):
        assert f"FAILED attention/bahdanau_decoder/{case}:" in err
    assert err.count("first divergence at t=0: intermediates/e (SPEC §2 eq. 1) at [") == 4, err


# ----------------------------------------------------------------------------- reports


ADAPTER = textwrap.dedent(
    """
    import numpy as np

    CASES = ["primitives/sigmoid/*", "primitives/linear/*"]
    FACTOR = {factor}

    def run(case, tensors, dtype):
        if case.startswith("primitives/sigmoid/"):
            x = tensors["inputs/x"]
            y = 1.0 / (1.0 + np.exp(-x))
            return {{"outputs/out": y, "grads/inputs/x": FACTOR * tensors["cotangents/out"] * y * (1 - y)}}
        x, W, b, g = tensors["inputs/x"], tensors["params/W"], tensors["params/b"], tensors["cotangents/out"]
        return {{"outputs/out": x @ W + b, "grads/inputs/x": g @ W.T, "grads/params/W": x.T @ g,
                 "grads/params/b": g.sum(0)}}
    """
)


def _adapter(directory: Path, factor: float = 1.0, name: str = "numpy_adapter") -> Path:
    path = directory / f"{name}.py"
    path.write_text(ADAPTER.format(factor=factor))
    return path


def test_verify_writes_json_junit_and_markdown(tmp_path):
    spec = f"{_adapter(tmp_path, 1.001)}:run"
    out = {k: tmp_path / f"report.{k}" for k in ("json", "xml", "md")}
    code = main(["golden", "verify", "--adapter", spec, "--dir", str(COMMITTED), "--json", str(out["json"]),
                 "--junit", str(out["xml"]), "--markdown", str(out["md"])])
    assert code == 1
    doc = json.loads(out["json"].read_text())
    assert doc["passed"] is False and set(doc["cases"]) == {"primitives/linear/default", "primitives/sigmoid/default"}
    sig = doc["cases"]["primitives/sigmoid/default"]
    assert not sig["passed"] and sig["first_divergence"]["tensor"] == "grads/inputs/x"
    assert doc["cases"]["primitives/linear/default"]["passed"]
    root = ET.parse(out["xml"]).getroot()
    assert root.tag == "testsuites" and root.get("tests") == "2" and root.get("failures") == "1"
    (suite,) = root.findall("testsuite")
    cases = {tc.get("name"): tc for tc in suite.findall("testcase")}
    assert set(cases) == {"primitives/linear/default", "primitives/sigmoid/default"}
    assert cases["primitives/linear/default"].find("failure") is None
    failure = cases["primitives/sigmoid/default"].find("failure")
    assert "first failing gradient: grads/inputs/x" in failure.get("message") and "grads/inputs/x" in failure.text
    md = out["md"].read_text()
    assert "**1 of 2 cases pass**" in md and "| `primitives/linear/default` | ✅ |" in md and "grads/inputs/x" in md


def test_verify_refuses_an_unwritable_report_path_before_running(tmp_path, capsys):
    spec = f"{_adapter(tmp_path)}:run"
    code = main(["golden", "verify", "--adapter", spec, "--dir", str(COMMITTED),
                 "--junit", str(tmp_path / "no" / "such" / "dir" / "r.xml")])
    assert code == 2
    err = capsys.readouterr().err
    assert "--junit" in err and "does not exist" in err and len(err.strip().splitlines()) == 1


def test_assert_matches_golden(linear):
    assert_matches_golden("primitives/linear/default", linear.expected("float32"), "float32", COMMITTED)
    bad = linear.expected("float32")
    bad["outputs/out"] = bad["outputs/out"] * np.float32(1.01)
    with pytest.raises(AssertionError, match=r"first divergence: outputs/out \(SPEC §1[^)]*\) at \["):
        assert_matches_golden(linear, bad, "float32")


# ----------------------------------------------------------------------------- the pytest plugin


def _plugin_args() -> list[str]:
    eps = importlib.metadata.entry_points(group="pytest11")
    installed = any(ep.value == "refmem.pytest_plugin" for ep in eps)
    return [] if installed else ["-p", "refmem.pytest_plugin"]


def _pytest(project: Path, *args: str) -> subprocess.CompletedProcess:
    """pytest in ``project``; the exit status is the caller's to check (its output is shown on a signal
    or a hang)."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *_plugin_args(), *args],
               expect=None, cwd=project, env=env)


def test_pytest_plugin_runs_one_test_per_golden_case(tmp_path):
    project = tmp_path / "proj"
    project.mkdir()
    (project / "test_own.py").write_text("def test_own():\n    assert True\n")
    _adapter(project, name="good")
    _adapter(project, 1.001, name="bad")
    quiet = _pytest(project)
    assert quiet.returncode == 0 and "1 passed" in quiet.stdout, quiet.stdout + quiet.stderr
    good = _pytest(project, "--refmem-adapter", "good:run", "--refmem-golden-dir", str(COMMITTED))
    assert good.returncode == 0 and "3 passed" in good.stdout, good.stdout + good.stderr
    bad = _pytest(project, "--refmem-adapter", "bad:run", "--refmem-dtype", "float32", "--refmem-case", "sigmoid")
    assert bad.returncode == 1 and "1 failed, 1 passed" in bad.stdout, bad.stdout + bad.stderr
    assert "primitives/sigmoid/default (float32, adapter bad:run):" in bad.stdout
    assert "first failing gradient: grads/inputs/x (SPEC §1 sigmoid) at [" in bad.stdout
    none = _pytest(project, "--refmem-adapter", "good:run", "--refmem-case", "nothing_matches")
    assert none.returncode == 4 and "no golden case" in none.stdout + none.stderr


# ----------------------------------------------------------------------------- the wheel


def _bare_venv(venv: Path) -> Path:
    """A venv without pip that sees this interpreter's installed packages (numpy, safetensors, pip, ...)
    but no refmem of theirs: their site directories are listed in a ``.pth`` file, so the ``.pth``
    files inside them (an editable refmem's import hook) are not run. Works the same whether this
    interpreter is a system Python or itself a venv (``--system-site-packages`` would give the base
    interpreter's packages, not this one's). Returns the venv's python."""
    import site
    import sysconfig

    run([sys.executable, "-m", "venv", "--without-pip", venv])
    py = venv / "bin" / "python"
    inner = Path(run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip())
    outer = [*site.getsitepackages(), site.getusersitepackages(), sysconfig.get_paths()["purelib"],
             sysconfig.get_paths()["platlib"]]
    (inner / "_outer_site.pth").write_text("".join(f"{d}\n" for d in dict.fromkeys(outer) if Path(d).is_dir()))
    return py


@pytest.mark.slow
def test_wheel_ships_the_goldens_and_runs_far_from_the_checkout(tmp_path):
    """Build the wheel, install it in a fresh venv in a temporary directory, run check and verify there."""
    import shutil

    # Build from a clean copy: an in-tree build reuses build/lib, where a stale module could ride along.
    src = tmp_path / "src"
    shutil.copytree(REPO, src, ignore=shutil.ignore_patterns(".git", "build", "dist", "*.egg-info", "__pycache__",
                                                             ".pytest_cache", ".hypothesis", ".venv", "out"))
    wheels = tmp_path / "wheels"
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", src, "-w", wheels])
    (wheel,) = wheels.glob("refmem-*.whl")
    py = _bare_venv(tmp_path / "venv")
    venv = py.parent.parent
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    run([py, "-m", "pip", "install", "-q", "--no-deps", "--no-index", wheel], env=env)
    far = tmp_path / "far" / "away"
    far.mkdir(parents=True)
    where = run([py, "-c", "import refmem, refmem.golden as g; print(refmem.__file__); print(g.default_dir())"],
                cwd=far, env=env)
    module_file, golden_dir = where.stdout.split()
    assert Path(module_file).is_relative_to(venv) and not Path(module_file).is_relative_to(REPO), module_file
    assert Path(golden_dir) == Path(module_file).parent / "_golden"
    # every committed file ships, byte for byte (test_golden checks the committed set in full: here the
    # command runs on one module, far from the checkout)
    committed = sorted(p.relative_to(COMMITTED) for p in COMMITTED.rglob("*") if p.is_file())
    assert committed == sorted(p.relative_to(golden_dir) for p in Path(golden_dir).rglob("*") if p.is_file())
    assert all((Path(golden_dir) / rel).read_bytes() == (COMMITTED / rel).read_bytes() for rel in committed)
    refmem_cmd = venv / "bin" / "refmem"
    check = run([refmem_cmd, "golden", "check", "--module", "primitives"], cwd=far, env=env)
    assert "0 failed, 0 problems" in check.stdout and "cases" in check.stdout, check.stdout + check.stderr
    _adapter(far, name="adapter")
    verify = run([refmem_cmd, "golden", "verify", "--adapter", "adapter.py:run"], cwd=far, env=env)
    assert "2 cases, 6 tensors, 0 failed, 0 problems" in verify.stdout, verify.stdout
    # sha256 checked: a changed shipped file is refused, naming the case
    target = Path(golden_dir) / "primitives" / "sigmoid" / "default.safetensors"
    raw = bytearray(target.read_bytes())
    raw[-1] ^= 0x01
    target.write_bytes(bytes(raw))
    tampered = run([refmem_cmd, "golden", "verify", "--adapter", "adapter.py:run"], expect=1, cwd=far, env=env)
    assert "primitives/sigmoid/default" in tampered.stderr
    assert "sha256" in tampered.stdout + tampered.stderr


@pytest.mark.parametrize("module,case", [("torch_dnc", "dnc/access_step/paper"), ("torch_dnc", "core_unroll/paper"),
                                         ("torch_attention", "bahdanau_decoder/current_teacher"),
                                         ("torch_luong", "luong_concat/local_p"),
                                         ("torch_memory_lstm", "memory_lstm/unroll")])
def test_examples_return_every_intermediate(module, case, monkeypatch):
    pytest.importorskip("torch")
    monkeypatch.syspath_prepend(str(REPO))
    report = golden.verify(f"examples.{module}:run", "float32", COMMITTED, [case])
    assert report.passed, report.table(only_failures=True)
    for name in {r.case for r in report.rows}:
        stored = set(golden.load(name, COMMITTED).intermediates)
        returned = {r.tensor.split("/", 1)[1] for r in report.rows if r.case == name and r.tensor.startswith("intermediates/")}
        assert stored and returned == stored, (name, stored - returned)


def test_the_manifest_example_of_golden_format_md_is_the_current_format(manifest):
    """docs/golden-format.md shows a manifest of the format this refmem writes, with the fields of a real entry."""
    text = (Path(__file__).resolve().parent.parent / "docs" / "golden-format.md").read_text(encoding="utf-8")
    block = text.split("## manifest.json\n```json\n", 1)[1].split("```", 1)[0]
    example = json.loads(block)
    assert example["format_version"] == golden.FORMAT_VERSION == manifest["format_version"]
    assert set(example) == set(manifest)
    (name, entry), = example["cases"].items()
    real = manifest["cases"][name]
    assert set(entry) == set(real), sorted(set(entry) ^ set(real))
    assert {k: entry[k] for k in ("file", "function", "spec", "seed", "config", "order")} == \
        {k: real[k] for k in ("file", "function", "spec", "seed", "config", "order")}
    for tensor, info in entry["tensors"].items():
        assert info["dtype"] == real["tensors"][tensor]["dtype"] and info["shape"] == real["tensors"][tensor]["shape"]
        assert set(info) == set(real["tensors"][tensor]), tensor
