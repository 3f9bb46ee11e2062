"""Golden tensors (docs/golden-format.md): export, integrity, check, compare and verify.

Generic over the catalogue: every case that exists is exported, loaded and
checked with no per-equation code here.
"""

from __future__ import annotations

import json
import shutil
import textwrap
from pathlib import Path

import numpy as np
import pytest

import refmem
from refmem import catalogue, golden
from refmem.cli import main

REPO = Path(__file__).resolve().parent.parent
COMMITTED = REPO / "golden"
PRIMITIVES = catalogue.cases(["primitives"])


@pytest.fixture
def exported(fresh_export):
    """A fresh export of the whole catalogue (conftest's, one per test process), read-only."""
    return fresh_export


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


# ----------------------------------------------------------------------------- format


def test_a_fresh_export_is_the_committed_set_byte_for_byte(exported):
    """An export is deterministic, and golden/ is what this code exports: every file, the manifest and
    README.md, byte for byte (a change that moves a reference, even the sign of a zero or the last bit
    of a float64 rounded from long double, re-exports in the same commit)."""
    files = sorted(p.relative_to(exported) for p in exported.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(COMMITTED) for p in COMMITTED.rglob("*") if p.is_file())
    differ = [str(rel) for rel in files if (exported / rel).read_bytes() != (COMMITTED / rel).read_bytes()]
    assert not differ, f"{len(differ)} of {len(files)} committed files differ from a fresh export (run " \
                       f"refmem golden export and commit, after checking why): {differ[:10]}"


def test_manifest_follows_golden_md(exported):
    text = (exported / "manifest.json").read_text()
    manifest = json.loads(text)
    assert text == json.dumps(manifest, sort_keys=True, indent=2, allow_nan=False, ensure_ascii=False) + "\n"
    assert manifest["format_version"] == 2
    assert manifest["generator"] == {"refmem": refmem.__version__}  # nothing machine-specific
    assert set(manifest["cases"]) == {c.name for c in catalogue.cases()}
    for case in catalogue.cases():
        entry = manifest["cases"][case.name]
        assert entry["file"] == f"{case.name}.safetensors"
        assert (exported / entry["file"]).exists()
        assert entry["function"] == case.function and entry["spec"] == case.spec
        assert entry["seed"] == 0 and entry["config"] == json.loads(json.dumps(dict(case.config)))
        roles = {name.split("/")[0] for name in entry["tensors"]}
        assert {"outputs", "cotangents", "grads", "tangents", "jvp", "hvp"} <= roles <= {
            "inputs", "params", "state", "outputs", "intermediates", "cotangents", "grads", "tangents", "jvp", "hvp"}
        names = {r: {n.split("/", 1)[1] for n in entry["tensors"] if n.startswith(r + "/")}
                 for r in ("outputs", "grads", "tangents", "jvp", "hvp")}
        assert names["tangents"] == names["grads"] == names["hvp"] and names["jvp"] == names["outputs"]
        assert entry["precision"].startswith("float64")
        assert {o["name"] for o in entry["order"]} == {n for n in entry["tensors"]
                                                       if n.split("/")[0] in ("outputs", "intermediates")}
        outs = {n.split("/", 1)[1] for n in entry["tensors"] if n.startswith("outputs/")}
        assert outs == {n.split("/", 1)[1] for n in entry["tensors"] if n.startswith("cotangents/")}
        for name, d in entry["tensors"].items():
            if name.startswith(("outputs/", "intermediates/", "grads/", "jvp/", "hvp/")):
                assert set(d) == {"dtype", "shape", "l2", "tol"}
                for dtype in ("float32", "float64"):
                    rtol, atol = d["tol"][dtype]
                    assert 0 < rtol < 1e-4 and 0 < atol, (case.name, name, dtype)
            else:
                assert set(d) == {"dtype", "shape"}
        grads = {n[len("grads/"):] for n in entry["tensors"] if n.startswith("grads/")}
        taken = {n for n in entry["tensors"] if n.split("/")[0] in ("inputs", "params", "state")}
        assert grads == taken - set(case.nondiff)


def test_files_are_plain_safetensors_and_match_the_reference(exported):
    from safetensors.numpy import load_file

    manifest = golden.read_manifest(exported)
    for name in manifest["cases"]:
        raw = load_file(str(exported / manifest["cases"][name]["file"]))
        ref = golden.reference(catalogue.get_case(name))
        assert set(raw) == set(ref)
        for k in ref:
            np.testing.assert_array_equal(raw[k], ref[k])
            assert raw[k].dtype == ref[k].dtype
        for k, v in raw.items():
            if k.split("/")[0] in ("inputs", "params", "state", "cotangents") and v.dtype.kind == "f":
                np.testing.assert_array_equal(v.astype(np.float32).astype(np.float64), v)


def test_cotangents_are_those_of_the_gradient_check(exported):
    from refmem import gradcheck

    g = golden.load("primitives/cosine/default", exported)
    expect = gradcheck.cotangents_for(g.outputs, 0)
    assert set(expect) == set(g.cotangents)
    for k in expect:
        np.testing.assert_array_equal(expect[k], g.cotangents[k])


def test_transposed_view_round_trips(tmp_path):
    a = np.arange(12, dtype=np.float64).reshape(3, 4)
    views = {"t": a.T, "f": np.asfortranarray(a), "s": a[:, ::2], "t3": np.arange(24.0).reshape(2, 3, 4).transpose(2, 0, 1)}
    assert not views["t"].flags.c_contiguous
    path = tmp_path / "x.safetensors"
    data = golden.write_safetensors(path, views, "{}")
    from safetensors.numpy import load_file

    for back in (golden.read_safetensors(data)[0], load_file(str(path))):
        for k, v in views.items():
            assert back[k].shape == v.shape
            np.testing.assert_array_equal(back[k], v)


def test_readme_lists_every_case_tensor_and_shape(exported):
    text = (exported / "README.md").read_text()
    manifest = golden.read_manifest(exported)
    assert text == golden.render_readme(manifest, golden.case_notes(manifest))
    for name, entry in manifest["cases"].items():
        assert f"## {name}" in text and entry["spec"] in text
        for t, d in entry["tensors"].items():
            assert f"| `{t}` | {d['dtype']} | [{', '.join(map(str, d['shape']))}] |" in text


def test_golden_stays_small(exported):
    size = sum(p.stat().st_size for p in exported.rglob("*") if p.is_file())
    assert size < 4 * 2**20, size


# ----------------------------------------------------------------------------- load and integrity


def test_load_gives_every_role(exported):
    g = golden.load("primitives/linear/default", exported)
    assert set(g.inputs) == {"x"} and set(g.params) == {"W", "b"} and not g.state
    assert set(g.outputs) == {"out"} and set(g.cotangents) == {"out"}
    assert set(g.grads) == {"inputs/x", "params/W", "params/b"}
    assert g.function == "refmem.primitives.linear_forward" and g.spec.startswith("SPEC §1")
    x, W, b = g.inputs["x"], g.params["W"], g.params["b"]
    np.testing.assert_allclose(g.outputs["out"], x @ W + b, rtol=1e-14, atol=1e-14)
    np.testing.assert_allclose(g.grads["params/W"], x.T @ g.cotangents["out"], rtol=1e-14, atol=1e-14)
    assert set(g.tol) == {"outputs/out", "grads/inputs/x", "grads/params/W", "grads/params/b", "jvp/out",
                          "hvp/inputs/x", "hvp/params/W", "hvp/params/b"}
    assert g.given("float32")["inputs/x"].dtype == np.float32
    # Forward mode and second order of the linear map, by hand.
    t, c = g.tangents, g.cotangents["out"]
    assert set(t) == {"inputs/x", "params/W", "params/b"} and set(g.jvp) == {"out"}
    np.testing.assert_allclose(g.jvp["out"], t["inputs/x"] @ W + x @ t["params/W"] + t["params/b"],
                               rtol=1e-14, atol=1e-14)
    np.testing.assert_allclose(g.hvp["inputs/x"], c @ t["params/W"].T, rtol=1e-14, atol=1e-14)
    np.testing.assert_allclose(g.hvp["params/W"], t["inputs/x"].T @ c, rtol=1e-14, atol=1e-14)
    assert not g.hvp["params/b"].any()
    assert not np.array_equal(t["inputs/x"], x) and g.given("float64")["tangents/inputs/x"].shape == x.shape


def _data_offset(path: Path) -> int:
    raw = path.read_bytes()
    return 8 + int.from_bytes(raw[:8], "little")


def test_flipped_byte_is_refused_naming_the_case(exported, tmp_path):
    d = _copy(exported, tmp_path / "g")
    name = "primitives/softmax/default"
    path = d / f"{name}.safetensors"
    raw = bytearray(path.read_bytes())
    raw[_data_offset(path) + 5] ^= 0x01
    path.write_bytes(bytes(raw))
    with pytest.raises(golden.IntegrityError, match=name):
        golden.load(name, d)
    report = golden.check(d, modules=["primitives"])  # the tolerances of the other modules are not in question
    assert not report.passed
    assert any(name in p and "sha256" in p for p in report.problems)
    golden.load("primitives/sigmoid/default", d)  # the others still load


def test_edited_manifest_is_refused_naming_the_case(exported, tmp_path):
    d = _copy(exported, tmp_path / "g")
    name = "primitives/tanh/default"
    manifest = json.loads((d / "manifest.json").read_text())
    manifest["cases"][name]["tensors"]["grads/inputs/x"]["tol"]["float32"] = [1.0, 1.0]  # loosened
    (d / "manifest.json").write_text(json.dumps(manifest, sort_keys=True, indent=2))
    with pytest.raises(golden.IntegrityError, match=f"{name}.*edited manifest"):
        golden.load(name, d)
    manifest["cases"][name]["sha256"] = "0" * 64
    (d / "manifest.json").write_text(json.dumps(manifest, sort_keys=True, indent=2))
    with pytest.raises(golden.IntegrityError, match=name):
        golden.load(name, d)


def test_unreadable_manifest_and_wrong_version(tmp_path):
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(golden.IntegrityError, match="not valid JSON"):
        golden.read_manifest(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps({"format_version": 3, "cases": {}}))
    with pytest.raises(golden.GoldenError, match="format_version 3"):
        golden.read_manifest(tmp_path)
    with pytest.raises(golden.GoldenError, match="no golden manifest"):
        golden.read_manifest(tmp_path / "absent")


# ----------------------------------------------------------------------------- tolerances


def test_every_reference_passes_and_a_perturbed_tensor_fails(exported):
    """The tolerances accept the reference and refuse a wrong value.

    One entry moved by a thousandth of the tensor's scale must fail in both dtypes,
    and the whole tensor scaled by ``1 + 1e-9`` must fail in float64. The one exception
    allowed is a second-order tensor (``hvp/``) whose measured float32 error is itself beyond a
    thousandth of its scale (``dnc/access_step/all_deepmind``'s ``hvp/state/usage``, κ ≈ 700: the
    eight float32 runs of that Hessian-vector product through the allocation's cumulative
    product spread that far): it must still keep a hundredth of its scale, and a move of ten
    times its float32 tolerance must fail.
    """
    manifest = golden.read_manifest(exported)
    for name in manifest["cases"]:
        g = golden.load(name, exported, manifest)
        expected = g.expected()
        for dtype in ("float32", "float64"):
            assert golden.compare(g, g.expected(dtype), dtype).passed
        for tensor, ref in expected.items():
            scale = float(np.max(np.abs(ref)))
            if scale == 0.0:
                continue
            idx = np.unravel_index(int(np.argmax(np.abs(ref))), ref.shape)
            atol32 = manifest["cases"][name]["tensors"][tensor]["tol"]["float32"][1]
            if atol32 >= 1e-3 * scale:
                assert tensor.startswith("hvp/") and atol32 < 1e-2 * scale, (name, tensor, atol32 / scale)
            for dtype in ("float32", "float64"):
                bad = ref.copy()
                bad[idx] += max(1e-3 * scale, 10 * atol32) if dtype == "float32" else 1e-3 * scale
                # the tensor alone (the whole case passed above): a compare of every tensor for each one was
                # quadratic in the tensors of a case
                rep = golden.compare(g, {tensor: bad.astype(dtype)}, dtype, names=[tensor])
                assert [r.tensor for r in rep.failures] == [tensor] and not rep.problems, (name, tensor, dtype)
            scaled = golden.compare(g, {tensor: ref * (1 + 1e-9)}, "float64", names=[tensor])
            assert [r.tensor for r in scaled.failures] == [tensor] and not scaled.problems, (name, tensor)


def test_float32_run_of_refmem_itself_passes_the_float32_tolerance(exported):
    manifest = golden.read_manifest(exported)
    for name in manifest["cases"]:
        g = golden.load(name, exported, manifest)
        f32 = golden.float32_run(catalogue.get_case(name), g.tensors)
        assert golden.compare(g, f32, "float32").passed, name
        f32_as64 = {k: v.astype(np.float64) for k, v in f32.items()}
        assert not golden.compare(g, f32_as64, "float64").passed or all(
            float(np.max(np.abs(f32[k] - v))) == 0.0 for k, v in g.expected().items()
        ), name


def test_tolerance_rule():
    ref = np.array([1.0, -2.0, 0.5])
    exact = golden.tolerance(ref, ref.astype(np.float32))
    assert exact["float32"][1] == pytest.approx(golden.round_up(16 * 2**-23 * 2.0))
    assert exact["float64"][0] == pytest.approx(3.6e-15)
    worse = golden.tolerance(ref, ref + 1e-5)
    assert worse["float32"][1] >= 16 * 1e-5
    assert worse["float64"][1] < 1e-10
    assert golden.tolerance(np.zeros(3), np.zeros(3, np.float32))["float32"][1] > 0
    assert golden.round_up(1.234e-6) == 1.3e-6 and golden.round_up(2e-6) == 2e-6


def test_compare_reports_missing_wrong_shape_nan_and_extra(exported):
    g = golden.load("primitives/linear/default", exported)
    res = g.expected()
    res.pop("grads/params/b")
    res["grads/params/W"] = res["grads/params/W"].T
    res["outputs/out"] = np.full_like(res["outputs/out"], np.nan)
    res["grads/params/typo"] = np.zeros(2)
    rep = golden.compare(g, res)
    notes = {r.tensor: r.note for r in rep.failures}
    assert notes["grads/params/b"] == "missing"
    assert notes["grads/params/W"].startswith("shape")
    assert "non-finite, first NaN at [0, 0]" in notes["outputs/out"], notes["outputs/out"]
    assert any("typo" in p for p in rep.problems)
    assert "FAIL" in rep.table()


# ----------------------------------------------------------------------------- check


def test_committed_golden_passes_check():
    report = golden.check(COMMITTED)
    assert report.passed, report.table(only_failures=True)
    assert {r.case for r in report.rows} == {c.name for c in catalogue.cases()}


def test_check_reports_missing_and_unknown_cases(tmp_path):
    d = tmp_path / "g"
    golden.export(d, PRIMITIVES)
    report = golden.check(d)
    others = [c.name for c in catalogue.cases() if c.module != "primitives"]
    for name in others:
        assert any(p.startswith(name) and "missing from the manifest" in p for p in report.problems)
    assert golden.check(d, modules=["primitives"]).passed
    manifest = json.loads((d / "manifest.json").read_text())
    manifest["cases"]["primitives/nothing/default"] = manifest["cases"]["primitives/tanh/default"]
    (d / "manifest.json").write_text(json.dumps(manifest))
    report = golden.check(d, modules=["primitives"])
    assert any("primitives/nothing/default" in p and "not in the catalogue" in p for p in report.problems)


def test_check_detects_a_changed_reference(tmp_path, monkeypatch):
    d = tmp_path / "g"
    golden.export(d, PRIMITIVES)
    case = catalogue.get_case("primitives/sigmoid/default")
    wrong_bwd = lambda arrays, cot: {k: 1.001 * v for k, v in case.backward(arrays, cot).items()}  # noqa: E731
    wrong = catalogue.Case(**{**case.__dict__, "backward": wrong_bwd})
    monkeypatch.setattr(catalogue, "cases", lambda modules=None: [wrong if c.name == case.name else c for c in PRIMITIVES])
    report = golden.check(d)
    assert {(r.case, r.tensor) for r in report.failures} >= {(case.name, "grads/inputs/x")}
    assert all(r.case == case.name for r in report.failures)


def test_cli_check_and_export(tmp_path, capsys):
    d = tmp_path / "g"
    assert main(["golden", "export", "--dir", str(d), "--module", "primitives"]) == 0
    assert main(["golden", "check", "--dir", str(d), "--module", "primitives"]) == 0
    out = capsys.readouterr().out
    assert "0 failed, 0 problems" in out
    path = d / "primitives/oneplus/default.safetensors"
    raw = bytearray(path.read_bytes())
    raw[-1] ^= 0x80
    path.write_bytes(bytes(raw))
    assert main(["golden", "check", "--dir", str(d), "--module", "primitives"]) == 1
    err = capsys.readouterr().err
    assert "primitives/oneplus/default" in err
    assert not any(p.name.endswith(".tmp") for p in d.rglob("*"))
    assert path.read_bytes() == bytes(raw)  # check never rewrites


# ----------------------------------------------------------------------------- verify


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


def _adapter(tmp_path: Path, factor: float = 1.0) -> str:
    path = tmp_path / f"adapter_{str(factor).replace('.', '_')}.py"
    path.write_text(ADAPTER.format(factor=factor))
    return f"{path}:run"


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_verify_accepts_a_correct_numpy_implementation(exported, tmp_path, dtype, capsys):
    report = golden.verify(_adapter(tmp_path), dtype, exported)
    assert report.passed, report.table()
    assert {r.case for r in report.rows} == {"primitives/sigmoid/default", "primitives/linear/default"}
    assert len(report.rows) == 2 + 4
    code = main(["golden", "verify", "--adapter", _adapter(tmp_path), "--dtype", dtype, "--dir", str(exported)])
    assert code == 0
    out = capsys.readouterr().out
    assert "grads/params/W" in out and "ok" in out


def test_verify_fails_a_wrong_gradient_naming_it(exported, tmp_path, capsys):
    spec = _adapter(tmp_path, factor=1.0001)
    code = main(["golden", "verify", "--adapter", spec, "--dtype", "float32", "--dir", str(exported)])
    assert code == 1
    captured = capsys.readouterr()
    assert "FAILED primitives/sigmoid/default: grads/inputs/x" in captured.err
    assert "primitives/linear" not in captured.err


def test_verify_case_filter_and_errors(exported, tmp_path, capsys):
    report = golden.verify(_adapter(tmp_path), "float64", exported, ["*linear*"])
    assert {r.case for r in report.rows} == {"primitives/linear/default"}
    with pytest.raises(golden.GoldenError, match="no golden case"):
        golden.verify(_adapter(tmp_path), "float64", exported, ["nothing"])
    assert main(["golden", "verify", "--adapter", "no_such_module_xyz:run", "--dir", str(exported)]) == 2
    assert "cannot import" in capsys.readouterr().err
    broken = tmp_path / "broken.py"
    broken.write_text("CASES = ['primitives/tanh/*']\ndef run(case, tensors, dtype):\n    raise RuntimeError('boom')\n")
    report = golden.verify(f"{broken}:run", "float64", exported)
    assert not report.passed and any("boom" in p for p in report.problems)


def test_verify_passes_config_when_asked(exported, tmp_path):
    path = tmp_path / "cfg.py"
    path.write_text(textwrap.dedent(
        """
        import numpy as np
        SEEN = []
        CASES = ["primitives/softplus/*"]
        def run(case, tensors, dtype, config=None):
            SEEN.append(config)
            x = tensors["inputs/x"]
            y = np.logaddexp(0, x)
            return {"outputs/out": y, "grads/inputs/x": tensors["cotangents/out"] / (1 + np.exp(-x))}
        """
    ))
    adapter = golden.load_adapter(f"{path}:run")
    assert golden.verify(adapter, "float32", exported).passed
    mod = __import__("sys").modules[adapter.function.__module__]
    assert mod.SEEN == [{}]


def test_export_of_one_module_keeps_the_others(exported, tmp_path):
    d = _copy(exported, tmp_path / "g")
    before = {p.relative_to(d): p.read_bytes() for p in d.rglob("*") if p.is_file()}
    assert main(["golden", "export", "--dir", str(d), "--module", "primitives"]) == 0
    after = {p.relative_to(d): p.read_bytes() for p in d.rglob("*") if p.is_file()}
    assert after == before  # deterministic, and nothing of the other modules dropped
    path = d / "primitives/tanh/default.safetensors"
    raw = path.read_bytes()
    path.write_bytes(raw[:-1] + bytes([raw[-1] ^ 0x01]))
    name = next(c.name for c in catalogue.cases() if c.module != "primitives")
    with pytest.raises(golden.IntegrityError, match="primitives/tanh/default"):
        golden.export(d, [catalogue.get_case(name)], merge=True)


@pytest.mark.parametrize("backend", ["torch", "cupy"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_refmem_under_another_backend_passes_every_committed_case(backend, dtype):
    """Another backend's rounding (torch kernels; CUDA where a GPU is) stays inside every case's tolerances."""
    from refmem import xp as rx

    try:
        xp = rx.backend(backend)
    except rx.BackendError as exc:
        pytest.skip(str(exc))
    manifest = golden.read_manifest(COMMITTED)
    for name in manifest["cases"]:
        case = catalogue.get_case(name)
        g = golden.load(name, COMMITTED, manifest)
        given = g.given(dtype)
        arrays = {k: rx.from_numpy(xp, v) for k, v in given.items() if not k.startswith("cotangents/")}
        cot = {k[len("cotangents/"):]: rx.from_numpy(xp, v) for k, v in given.items() if k.startswith("cotangents/")}
        results = {f"outputs/{k}": v for k, v in case.forward(arrays).outputs.items()}
        results.update({f"grads/{k}": v for k, v in case.backward(arrays, cot).items()})
        report = golden.compare(g, results, dtype)
        assert report.passed, report.table(only_failures=True)
        assert all(r.dtype == dtype for r in report.rows), name


def _toy_case(sample_value, hard_float64=False):
    from refmem import xp as rx

    def sample(xp, seed, sizes):
        return {"inputs/x": xp.asarray(np.array([[sample_value, 0.5]]))}

    def forward(arrays, frozen=None):
        x = arrays["inputs/x"]
        if hard_float64:
            x = x * rx.namespace(x).asarray(np.ones((1, 2)))  # promotes float32 to float64
        return catalogue.Forward({"y": 2.0 * x})

    def backward(arrays, cot):
        return {"inputs/x": 2.0 * cot["y"]}

    return catalogue.Case(name="primitives/toy/default", spec="SPEC §1 toy", function="toy", sample=sample,
                          forward=forward, backward=backward)


def test_export_refuses_inputs_that_float32_cannot_hold(tmp_path):
    with pytest.raises(golden.GoldenError, match="primitives/toy/default.*inputs/x.*float32-representable"):
        golden.export(tmp_path, [_toy_case(0.1)])
    golden.export(tmp_path, [_toy_case(0.25)])


def test_export_refuses_a_case_that_ignores_float32(tmp_path):
    with pytest.raises(golden.GoldenError, match="primitives/toy/default.*float64 from float32"):
        golden.export(tmp_path, [_toy_case(0.25, hard_float64=True)])


def test_gradients_of_nondiff_tensors_are_ignored(exported):
    case = catalogue.get_case("attention/bahdanau_decoder/previous_masked")
    assert case.nondiff == {"inputs/mask"}  # a result may hold a gradient of the mask; it is not compared
    g = golden.load(case.name, exported)
    res = g.expected()
    for k in case.nondiff:
        res[f"grads/{k}"] = np.zeros_like(g.tensors[k])
    rep = golden.compare(g, res)
    assert rep.passed and not rep.problems
    assert not any(r.tensor == f"grads/{k}" for r in rep.rows for k in case.nondiff)


def test_export_removes_only_its_own_stale_files(tmp_path):
    d = tmp_path / "g"
    golden.export(d, PRIMITIVES[:3])
    (d / "primitives" / "mine.safetensors").write_bytes(b"user file")
    golden.export(d, PRIMITIVES[:1])
    assert not (d / f"{PRIMITIVES[1].name}.safetensors").exists()
    assert (d / f"{PRIMITIVES[0].name}.safetensors").exists()
    assert (d / "primitives" / "mine.safetensors").read_bytes() == b"user file"
    assert set(golden.read_manifest(d)["cases"]) == {PRIMITIVES[0].name}


def test_a_failing_case_leaves_the_directory_untouched(tmp_path):
    d = tmp_path / "g"
    golden.export(d, PRIMITIVES[:2])
    before = {p: p.read_bytes() for p in d.rglob("*") if p.is_file()}
    with pytest.raises(golden.GoldenError):
        golden.export(d, [PRIMITIVES[2], _toy_case(0.1)])
    assert {p: p.read_bytes() for p in d.rglob("*") if p.is_file()} == before


#: The fixed DNC table of docs/golden-format.md: function -> (tensors it takes, outputs).
DNC_TABLE = {
    "content_weights": ({"inputs/memory", "inputs/keys", "inputs/strengths"}, {"weights"}),
    "usage": ({"inputs/prev_usage", "inputs/prev_write_weights", "inputs/free_gates", "inputs/prev_read_weights"},
              {"usage"}),
    "allocation": ({"inputs/usage"}, {"allocation"}),
    "write_allocation_weights": ({"inputs/usage", "inputs/write_gates"}, {"allocation"}),
    "write_weights": ({"inputs/memory", "inputs/usage", "inputs/write_keys", "inputs/write_strengths",
                       "inputs/allocation_gates", "inputs/write_gates"}, {"write_weights"}),
    "memory_update": ({"inputs/memory", "inputs/write_weights", "inputs/erase_vectors", "inputs/write_vectors"},
                      {"memory"}),
    "temporal_linkage": ({"inputs/prev_link", "inputs/prev_precedence", "inputs/write_weights"}, {"link", "precedence"}),
    "directional_weights": ({"inputs/link", "inputs/prev_read_weights"}, {"forward", "backward"}),
    "read_weights": ({"inputs/memory", "inputs/read_keys", "inputs/read_strengths", "inputs/link",
                      "inputs/prev_read_weights", "inputs/read_modes"}, {"read_weights"}),
    "access_step": ({"inputs/controller_output", "params/W_xi", "params/b_xi", "state/memory", "state/read_weights",
                     "state/write_weights", "state/link", "state/precedence", "state/usage"},
                    {"read_vectors", "memory", "read_weights", "write_weights", "link", "precedence", "usage"}),
}


def test_dnc_cases_follow_golden_md_table():
    manifest = golden.read_manifest(COMMITTED)
    dnc = {n: c for n, c in manifest["cases"].items() if n.startswith("dnc/")}
    assert set(DNC_TABLE) | {"core_unroll"} <= {n.split("/")[1] for n in dnc}, sorted(dnc)
    for name, entry in dnc.items():
        function, variant = name.split("/")[1:]
        tensors = entry["tensors"]
        outputs = {t.split("/", 1)[1] for t in tensors if t.startswith("outputs/")}
        taken = {t for t in tensors if t.split("/")[0] in ("inputs", "params", "state")}
        if function in DNC_TABLE:
            assert taken == DNC_TABLE[function][0], name
            assert outputs == DNC_TABLE[function][1], name
            if variant == "any_convention":  # a function without a convention: one case, no convention in its config
                assert "convention" not in entry["config"], name
            else:
                assert entry["config"]["convention"] in ("deepmind", "paper") and entry["config"]["convention"] in variant
        elif function == "core_unroll":
            assert "inputs/x" in taken and outputs == {"y", "read_vectors"}, name
            B, T = tensors["inputs/x"]["shape"][:2]
            assert tensors["outputs/read_vectors"]["shape"][:2] == [B, T], name
        # small sizes with nw >= 2 and R >= 2 so that head loops are exercised
        for t, axis in (("write_weights", 1), ("prev_write_weights", 1), ("write_gates", 1),
                        ("read_weights", 1), ("prev_read_weights", 1), ("free_gates", 1), ("read_keys", 1)):
            for role in ("inputs", "state", "outputs"):
                if f"{role}/{t}" in tensors:
                    assert tensors[f"{role}/{t}"]["shape"][axis] >= 2, (name, role, t)
