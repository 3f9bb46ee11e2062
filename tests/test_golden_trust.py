"""Golden sets a user can trust (issue 19): atomic writes, tamper evidence, no traceback, no hang,
no orphan, and a verdict that reads right.

Each test is one reproduction of the issue and asserts its exact outcome: the exit status, the
one error line and the file, key or option it names.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import textwrap
import threading
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from refmem import catalogue, cli, golden
from refmem.golden import storage

from conftest import child_env, run

REPO = Path(__file__).resolve().parent.parent
DRIVER = REPO / "tests" / "golden_interrupts.py"
PRIMITIVES = catalogue.cases(["primitives"])
TANH = "primitives/tanh/default"


def _env(**extra: str) -> dict[str, str]:
    return child_env(**extra)


def _refmem(*argv: str, expect: int | None = None, **env: str) -> subprocess.CompletedProcess:
    """``refmem argv`` in a child; the test fails, showing its output, unless it exits with ``expect``
    (any status when ``None``, never a signal) within conftest's hang guard."""
    return run([sys.executable, "-m", "refmem", *argv], expect=expect, env=_env(**env))


def _files(d: Path) -> dict[str, bytes]:
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


def _error_line(err: str) -> str:
    """The last line of standard error, which must be the one error line (the progress lines come first)."""
    lines = err.strip().splitlines()
    assert "Traceback" not in err, err
    assert lines and sum(": error: " in line for line in lines) == 1 and ": error: " in lines[-1], err
    return lines[-1]


@pytest.fixture(scope="module")
def prims(tmp_path_factory) -> Path:
    """The primitives, exported once."""
    d = tmp_path_factory.mktemp("prims") / "golden"
    golden.export(d, PRIMITIVES)
    return d


@pytest.fixture
def gdir(prims, tmp_path) -> Path:
    d = tmp_path / "golden"
    shutil.copytree(prims, d)
    return d


def _manifest(d: Path) -> dict:
    return json.loads((d / "manifest.json").read_text())


def _write_manifest(d: Path, manifest: dict) -> None:
    (d / "manifest.json").write_text(json.dumps(manifest))


ADAPTER = textwrap.dedent(
    """
    import numpy as np
    CASES = ["primitives/tanh/*"]
    def run(case, tensors, dtype):
        x = tensors["inputs/x"]
        y = {body}
        return {{"outputs/out": y, "grads/inputs/x": tensors["cotangents/out"] * (1 - np.tanh(x) ** 2)}}
    """
)


def _adapter(tmp_path: Path, body: str = "np.tanh(x)", name: str = "tanh_adapter") -> str:
    path = tmp_path / f"{name}.py"
    path.write_text(ADAPTER.format(body=body))
    return f"{path}:run"


# ============================================================================ 1. atomic writes


def _driver(args: list[str]) -> dict:
    return json.loads(run([sys.executable, DRIVER, *args], env=_env(OPENBLAS_NUM_THREADS="1")).stdout)


def _assert_old_or_new(result: dict) -> None:
    runs = result["runs"]
    assert runs and result["stale_removed"]
    holds = {r["holds"] for r in runs}
    assert holds == {"old", "new"}, holds  # both sides of the exchange were interrupted, nothing else seen
    for r in runs:
        where = f"{r['signal']} before step {r['step']} ({r['what']})"
        assert r["holds"] in ("old", "new") and r["old_intact_or_new_checks"] == "", where
        assert not [p for p in r["leftovers"] if not p.startswith(".golden.refmem-stage-")], where  # nothing inside
        # the old set up to the exchange, the new one from it on
        assert r["holds"] == ("new" if r["step"] > result["exchange"] else "old"), where
        if r["signal"] == "SIGINT":
            assert r["exit"] == 130 and r["stderr"].strip().splitlines()[-1] == "refmem golden export: interrupted", \
                where + r["stderr"]
            assert "Traceback" not in r["stderr"] and r["leftovers"] == [], where  # cleaned up, even beside
        else:
            assert r["killed_by"] == signal.SIGKILL, where


@pytest.mark.skipif(not hasattr(os, "fork"), reason="the driver forks one process per interruption")
def test_an_interrupted_export_leaves_the_old_set_or_the_new_one(tmp_path):
    """SIGINT and SIGKILL before every third step of the write phase (and around the directory
    exchange) of ``refmem golden export --module primitives`` into a set that also holds another
    module's case and a user's file: the directory holds the old complete set or the new one."""
    result = _driver([str(tmp_path), "--stride=3", "SIGKILL", "SIGINT"])
    assert result["steps"] > 40  # the write phase has many steps: files, folders, links, fsyncs, the exchange
    _assert_old_or_new(result)


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(os, "fork"), reason="the driver forks one process per interruption")
def test_an_export_interrupted_at_every_step(tmp_path):
    _assert_old_or_new(_driver([str(tmp_path), "SIGKILL", "SIGINT"]))


def _mount_tmpfs_works() -> str:
    """``""`` when ``unshare -rm`` can mount a tmpfs here, else why not."""
    if not sys.platform.startswith("linux") or shutil.which("unshare") is None:
        return "needs Linux and unshare(1)"
    probe = run(["unshare", "-rm", "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt 2>&1 || "
                 "mount -t tmpfs -o size=64k tmpfs \"$HOME\" 2>&1"], expect=None)
    if probe.returncode != 0:
        return "cannot mount a tmpfs in a private mount namespace here (unshare -rm: " + \
            " ".join((probe.stdout + probe.stderr).split())[:120] + ")"
    return ""


def test_a_full_disk_leaves_the_old_set_and_saves_the_new_one_elsewhere(tmp_path):
    """A 2 MiB tmpfs holding the old set, then filled to leave from 0 bytes to 4x what the new set
    needs: below that, exit 2, one line naming the complete copy saved elsewhere, the old set
    intact and nothing left behind; from there on, the new set."""
    why = _mount_tmpfs_works()
    if why:
        pytest.skip(why)
    mount = tmp_path / "mnt"
    mount.mkdir()
    script = (f"mount -t tmpfs -o size=2m tmpfs {mount} && exec {sys.executable} {DRIVER} {tmp_path / 'work'} "
              f"--fill={mount}")
    proc = run(["unshare", "-rm", "sh", "-c", script], env=_env(OPENBLAS_NUM_THREADS="1"))
    result = json.loads(proc.stdout)
    runs = result["runs"]
    assert {r["holds"] for r in runs} == {"old", "new"}
    for r in runs:
        assert r["leftovers"] == [], r
        if r["holds"] == "old":
            assert r["exit"] == 2 and r["fallback_complete"], r
            assert r["error"].startswith(f"refmem golden export: error: argument --dir: writing {mount}/golden "
                                         "failed (No space left on device); saved to "), r
        else:
            assert r["exit"] == 0 and r["free"] >= result["need"] // 2, r
    assert all(r["holds"] == "old" for r in runs if r["free"] < result["need"] // 4)


def test_an_exception_in_the_write_phase_leaves_the_directory_as_it_was(gdir, monkeypatch):
    before = _files(gdir)
    real, calls = storage._write_new, []

    def failing(path, data):
        calls.append(path)
        if len(calls) == 4:
            raise OSError(28, "No space left on device")
        real(path, data)

    monkeypatch.setattr(storage, "_write_new", failing)
    with pytest.raises(OSError, match="No space left"):
        golden.export(gdir, PRIMITIVES[:5], seed=1)
    assert _files(gdir) == before
    assert [p.name for p in gdir.parent.iterdir()] == ["golden"]  # no staging folder either


def test_an_export_that_fails_before_writing_leaves_the_directory_as_it_was(gdir):
    """An old manifest entry holding a NUL: refused, and nothing is changed (the issue: 75 of 75 cases broken)."""
    manifest = _manifest(gdir)
    manifest["cases"][TANH]["spec"] = "SPEC \x00"
    _write_manifest(gdir, manifest)
    before = _files(gdir)
    with pytest.raises(golden.GoldenError):
        golden.export(gdir, PRIMITIVES[:1], merge=True)
    assert _files(gdir) == before


@pytest.mark.parametrize("where", ["name", "file"])
def test_a_nul_in_an_old_entry_is_refused_and_changes_nothing(gdir, where, capsys):
    """The issue: an old manifest entry holding a NUL broke every case of the set when exported over."""
    manifest = _manifest(gdir)
    if where == "name":
        manifest["cases"]["primitives/ta\x00nh/default"] = manifest["cases"].pop(TANH)
    else:
        manifest["cases"][TANH]["file"] = "primitives/ta\x00nh/default.safetensors"
    _write_manifest(gdir, manifest)
    before = _files(gdir)
    assert cli.main(["golden", "export", "--dir", str(gdir), "--module", "attention"]) == 2
    line = _error_line(capsys.readouterr().err)
    assert line.endswith("bad case name 'primitives/ta\\x00nh/default'; expected <module>/<function>/<variant>") \
        if where == "name" else line.endswith("manifest names file 'primitives/ta\\x00nh/default.safetensors', "
                                              "expected 'primitives/tanh/default.safetensors'"), line
    assert _files(gdir) == before


def test_write_set_carries_other_files_drops_stale_cases_and_leaves_no_temporary_file(gdir):
    (gdir / "notes.txt").write_text("mine")
    (gdir / "primitives" / "old.safetensors.tmp").write_bytes(b"left by an old refmem")
    golden.export(gdir, PRIMITIVES[:2])  # a full export of fewer cases: the others go
    names = set(_files(gdir))
    assert "notes.txt" in names and (gdir / "notes.txt").read_text() == "mine"
    assert {n for n in names if n.endswith(".safetensors")} == {f"{c.name}.safetensors" for c in PRIMITIVES[:2]}
    assert not any(".tmp" in n or "refmem-" in n for n in names)
    dropped = gdir / PRIMITIVES[2].name.rsplit("/", 1)[0]
    assert not dropped.exists()  # a folder emptied by dropping its case goes too
    assert sorted(p.name for p in gdir.parent.iterdir()) == ["golden"]


def test_a_directory_that_cannot_be_renamed_gets_its_files_replaced_one_by_one(gdir, monkeypatch, tmp_path):
    """A directory of a lower overlayfs layer cannot be renamed (EXDEV): the files are replaced instead,
    the manifest last, and the result is the same set."""
    import errno

    (gdir / "notes.txt").write_text("mine")
    expect = tmp_path / "expect"
    shutil.copytree(gdir, expect)
    golden.export(expect, PRIMITIVES[:3], seed=1)

    def cannot(a, b):
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(storage, "_exchange", cannot)
    golden.export(gdir, PRIMITIVES[:3], seed=1)
    assert _files(gdir) == _files(expect)
    assert sorted(p.name for p in gdir.parent.iterdir()) == ["expect", "golden"]


@pytest.mark.parametrize("version", [3, 99])
@pytest.mark.parametrize("module", [True, False])
def test_export_never_shrinks_a_newer_set(gdir, version, module, capsys):
    """The issue: ``golden export --module primitives`` into a newer-format set shrank it from 74 cases
    to 8. Refused, whole or per module, before any work; the directory is untouched."""
    manifest = _manifest(gdir)
    manifest["format_version"] = version
    manifest["cases"]["dnc/future/case"] = manifest["cases"][TANH]
    _write_manifest(gdir, manifest)
    before = _files(gdir)
    argv = ["golden", "export", "--dir", str(gdir)] + (["--module", "primitives"] if module else [])
    assert cli.main(argv) == 2
    line = _error_line(capsys.readouterr().err)
    assert line == (f"refmem golden export: error: argument --dir: {gdir}/manifest.json: format_version {version}, "
                    f"this refmem reads 1, 2; refusing to replace what {gdir} holds (a newer refmem's set, or a "
                    "damaged one): remove it or use another directory")
    assert _files(gdir) == before


def test_export_refuses_a_damaged_manifest_and_a_folder_of_other_files(gdir, tmp_path, capsys):
    (gdir / "manifest.json").write_text("{not json")
    assert cli.main(["golden", "export", "--dir", str(gdir), "--module", "primitives"]) == 2
    assert f"{gdir}/manifest.json is not valid JSON" in _error_line(capsys.readouterr().err)
    other = tmp_path / "home"
    other.mkdir()
    (other / "thesis.tex").write_text("years of work")
    assert cli.main(["golden", "export", "--dir", str(other), "--module", "primitives"]) == 2
    assert _error_line(capsys.readouterr().err) == (
        f"refmem golden export: error: argument --dir: {other} holds files but no golden set (no manifest.json); "
        "refusing to write a golden set into it: use a new or empty directory")
    assert _files(other) == {"thesis.tex": b"years of work"}


def test_export_into_the_current_directory_is_refused(gdir, monkeypatch, capsys):
    monkeypatch.chdir(gdir)
    assert cli.main(["golden", "export", "--dir", ".", "--module", "primitives"]) == 2
    assert "holds the current directory" in _error_line(capsys.readouterr().err)


def test_a_full_export_names_the_cases_it_removes(gdir, capsys):
    manifest = _manifest(gdir)
    assert cli.main(["golden", "export", "--dir", str(gdir), "--module", "primitives"]) == 0
    golden.export(gdir, PRIMITIVES[:3])
    capsys.readouterr()
    assert cli.main(["golden", "export", "--dir", str(gdir), "--module", "primitives"]) == 0
    assert len(_manifest(gdir)["cases"]) == len(manifest["cases"])


def test_save_failures_never_writes_into_a_golden_set(gdir, tmp_path, capsys):
    """The issue: ``--save-failures golden`` replaced a case by a 1x1 reproducer. Refused before any work."""
    pytest.importorskip("hypothesis")
    before = _files(gdir)
    assert cli.main(["verify", "--adapter", _adapter(tmp_path), "--examples", "1", "--save-failures", str(gdir)]) == 2
    assert _error_line(capsys.readouterr().err) == (
        f"refmem verify: error: argument --save-failures: {gdir} holds a golden set ({len(PRIMITIVES)} cases, not "
        "written by --save-failures); reproducers go to a directory of their own")
    assert _files(gdir) == before


def test_reproducers_are_written_as_a_set_and_added_to(tmp_path):
    pytest.importorskip("hypothesis")
    from refmem import differential as D

    case = catalogue.get_case(TANH)
    example = D.Example(TANH, {"B": 1, "N": 1}, 0, 1, ())
    live = D.live_golden(case, example)
    repro = tmp_path / "repro"
    D.save_reproducer(repro, live)
    D.save_reproducer(repro, live)  # again: the manifest keeps one entry, the set stays whole
    manifest = golden.read_manifest(repro)
    assert list(manifest["cases"]) == [TANH] and manifest["generator"]["differential"] is True
    golden.load(TANH, repro, manifest)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["repro"]
    with pytest.raises(golden.GoldenError, match="holds a golden set"):
        D.save_reproducer(golden.default_dir(), live)


@pytest.fixture
def devfull() -> str:
    if not (os.path.exists("/dev/full") and stat.S_ISCHR(os.stat("/dev/full").st_mode)):
        pytest.skip("no /dev/full character device here")
    return "/dev/full"


def _fallback(line: str) -> Path:
    return Path(line.rsplit("saved to ", 1)[1].split(" instead")[0])


@pytest.mark.parametrize("fmt", ["json", "junit", "markdown"])
def test_a_report_that_cannot_be_written_is_saved_elsewhere(prims, tmp_path, devfull, fmt, capsys):
    """The issue: ``golden verify --json /dev/full`` exited 0 with the report lost."""
    code = cli.main(["golden", "verify", "--adapter", _adapter(tmp_path), "--dir", str(prims), f"--{fmt}", devfull])
    assert code == 2
    line = _error_line(capsys.readouterr().err)
    assert line.startswith(f"refmem golden verify: error: argument --{fmt}: writing /dev/full failed (No space left "
                           "on device); saved to ")
    saved = _fallback(line)
    try:
        text = saved.read_text()
        if fmt == "json":
            assert json.loads(text)["passed"] is True
        elif fmt == "junit":
            assert ET.fromstring(text).get("tests") == "1"
        else:
            assert "**1 of 1 cases pass**" in text
    finally:
        saved.unlink()


@pytest.mark.parametrize("argv,option", [
    (["train", "copy", "--steps", "2", "--report-every", "0", "--threads", "0", "--save"], "--save"),
    (["train", "reverse", "--steps", "2", "--report-every", "0", "--threads", "0", "--json"], "--json"),
    (["train", "reverse", "--steps", "2", "--report-every", "0", "--threads", "0", "--plot"], "--plot"),
    (["plot", "attention", "--out"], "--out"),
    (["check", "--module", "primitives", "--case", "sigmoid", "--quiet", "--json"], "--json"),
])
def test_a_saved_file_that_cannot_be_written_is_not_reported_written(argv, option, devfull, capsys):
    """The issue: ``train --save /dev/full`` printed "wrote" and exited 0."""
    pytest.importorskip("matplotlib") if option in ("--plot", "--out") else None
    assert cli.main(argv + [devfull]) == 2
    captured = capsys.readouterr()
    line = _error_line(captured.err)
    assert line.split(": error: ")[1].startswith(f"argument {option}: writing /dev/full failed (No space left on "
                                                 "device); saved to ")
    assert "wrote" not in captured.out
    saved = _fallback(line)
    assert saved.stat().st_size > 0
    saved.unlink()


def test_a_file_written_over_is_replaced_whole_or_not_at_all(tmp_path):
    target = tmp_path / "report.json"
    target.write_text("the old report")
    out = cli.Outputs()

    def half_then_full_disk(path):  # the target's disk fills half way; the temporary directory has room
        if Path(path).parent == tmp_path:
            Path(path).write_text("the new rep")
            raise OSError(28, "No space left on device")
        Path(path).write_text("the new report")

    assert out.write(str(target), "--json", half_then_full_disk) == ""
    assert target.read_text() == "the old report"  # never truncated in place
    with pytest.raises(cli.CommandError) as err:
        out.finish()
    assert _fallback(str(err.value)).read_text() == "the new report"
    _fallback(str(err.value)).unlink()
    assert cli.Outputs().write_text(str(target), "--json", "the new report") == str(target)
    assert target.read_text() == "the new report"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json"]


def test_junit_is_valid_xml_whatever_a_message_holds(prims, tmp_path):
    bad = tmp_path / "ctrl.py"
    bad.write_text("CASES = ['primitives/tanh/*']\ndef run(case, tensors, dtype):\n"
                   "    raise RuntimeError('bell \\x07 escape \\x1b[31m nul \\x00 surrogate \\ud800 end')\n")
    report = golden.verify(f"{bad}:run", "float64", prims)
    root = ET.fromstring(golden.to_junit(report, "suite \x01"))
    failure = root.find("testsuite/testcase/failure")
    assert "bell \\x07 escape \\x1b[31m nul \\x00 surrogate \\ud800 end" in failure.get("message")
    assert root.get("name") == "suite \\x01"


# ============================================================================ 2. tamper evidence


def _tamper(d: Path, name: str, tensors_edit=None, tol: list[float] | None = None) -> None:
    """Edit case ``name`` as an attacker would: tensors and tolerances changed, the copy of the entry
    inside the file, its sha256 and the README all made consistent again."""
    manifest = _manifest(d)
    entry = manifest["cases"][name]
    tensors, _ = golden.read_safetensors((d / entry["file"]).read_bytes())
    if tensors_edit is not None:
        tensors_edit(tensors)
    described = {k: v for k, v in entry.items() if k not in ("file", "sha256")}
    if tol is not None:
        for desc in described["tensors"].values():
            if "tol" in desc:
                desc["tol"] = {"float64": list(tol), "float32": list(tol)}
    data = storage.encode_safetensors(tensors, json.dumps(described, sort_keys=True))
    (d / entry["file"]).write_bytes(data)
    manifest["cases"][name] = {"file": entry["file"], "sha256": storage.sha256(data), **described}
    (d / "manifest.json").write_text(storage.dumps(manifest))
    (d / "README.md").write_text(golden.render_readme(manifest, golden.case_notes(manifest)))


def _identity(t):
    t["outputs/out"] = t["inputs/x"].copy()


def test_the_issues_attack_is_refused_by_golden_check(gdir, tmp_path, capsys):
    """``outputs/out`` replaced by the input, every tolerance [1, 10], the sha256 recomputed: integrity
    holds and an identity function then passes ``golden verify`` as tanh, but ``golden check`` recomputes
    the tolerances and refuses every loosened one."""
    _tamper(gdir, TANH, _identity, tol=[1.0, 10.0])
    assert golden.verify(_adapter(tmp_path, body="x"), "float64", gdir).passed  # what the attack buys
    report = golden.check(gdir, modules=["primitives"])
    assert not report.passed
    mine = [p for p in report.problems if p.startswith(TANH)]
    assert mine and all("is looser than the recomputed" in p for p in mine)
    assert any(p.startswith(f"{TANH}: outputs/out tolerance float32 [rtol, atol] = [1, 10] is looser than the "
                            "recomputed [2e-06, ") for p in mine), mine
    assert not [p for p in report.problems if not p.startswith(TANH)]
    assert cli.main(["golden", "check", "--dir", str(gdir), "--module", "primitives"]) == 1
    err = capsys.readouterr().err
    assert f"FAILED {TANH}: outputs/out tolerance float32 [rtol, atol] = [1, 10] is looser than" in err


def test_a_loosened_tolerance_alone_is_refused(gdir):
    manifest = _manifest(gdir)
    tol = manifest["cases"][TANH]["tensors"]["grads/inputs/x"]["tol"]["float32"]
    _tamper(gdir, TANH)
    m = _manifest(gdir)
    m["cases"][TANH]["tensors"]["grads/inputs/x"]["tol"]["float32"] = [tol[0], tol[1] * 1.5]
    entry = m["cases"][TANH]
    tensors, _ = golden.read_safetensors((gdir / entry["file"]).read_bytes())
    described = {k: v for k, v in entry.items() if k not in ("file", "sha256")}
    data = storage.encode_safetensors(tensors, json.dumps(described, sort_keys=True))
    (gdir / entry["file"]).write_bytes(data)
    entry["sha256"] = storage.sha256(data)
    (gdir / "manifest.json").write_text(storage.dumps(m))
    (gdir / "README.md").write_text(golden.render_readme(m, golden.case_notes(m)))
    problems = golden.check(gdir, modules=["primitives"]).problems
    assert problems == [f"{TANH}: grads/inputs/x tolerance float32 [rtol, atol] = [{tol[0]:.2g}, {tol[1] * 1.5:.2g}] "
                        f"is looser than the recomputed [{tol[0]:.2g}, {tol[1]:.2g}]; refusing a loosened tolerance "
                        "(re-export with refmem golden export)"]


@pytest.mark.parametrize("tol,shown", [([-1, -1], "[-1, -1]"), ([0, 0], "[0, 0]"), ([1e-6, 0], "[1e-06, 0]"),
                                       (["NaN", 1], "[NaN, 1]"), (["Infinity", "Infinity"], "[Infinity, Infinity]"),
                                       ([1e-6], "[1e-06]"), ("loose", '"loose"')])
@pytest.mark.parametrize("action", ["verify", "check"])
def test_a_tolerance_that_is_not_finite_and_positive_is_refused(gdir, tmp_path, tol, shown, action, capsys):
    """The issue: ``[-1, -1]`` passed any finite answer. Refused by both, naming the file and key."""
    text = (gdir / "manifest.json").read_text()
    manifest = json.loads(text)
    manifest["cases"][TANH]["tensors"]["outputs/out"]["tol"]["float64"] = tol
    raw = json.dumps(manifest).replace('"NaN"', "NaN").replace('"Infinity"', "Infinity")
    (gdir / "manifest.json").write_text(raw)
    argv = ["golden", action, "--dir", str(gdir)] + (["--adapter", _adapter(tmp_path, "x")] if action == "verify"
                                                      else ["--module", "primitives"])
    assert cli.main(argv) == 2
    kind = "a string" if isinstance(tol, str) else "an array"
    assert _error_line(capsys.readouterr().err) == (
        f"refmem golden {action}: error: {gdir}/manifest.json: cases[\"{TANH}\"].tensors[\"outputs/out\"].tol.float64: "
        f"expected [rtol, atol], two finite numbers > 0, got {kind} {shown}")


#: (what is done to the manifest, the key the error names, what it says was found)
MALFORMED = [
    (lambda m: m.pop("generator"), "generator", "missing"),
    (lambda m: m.update(generator="refmem"), "generator", 'got a string "refmem"'),
    (lambda m: m.update(cases=[]), "cases", "got an array []"),
    (lambda m: m["cases"].update({TANH: 5}), f'cases["{TANH}"]', "got a number 5"),
    (lambda m: m["cases"][TANH].update(tensors="oops"), f'cases["{TANH}"].tensors', 'got a string "oops"'),
    (lambda m: m["cases"][TANH].update(seed="0"), f'cases["{TANH}"].seed', 'got a string "0"'),
    (lambda m: m["cases"][TANH].update(seed=True), f'cases["{TANH}"].seed', "got a boolean true"),
    (lambda m: m["cases"][TANH].pop("sha256"), f'cases["{TANH}"].sha256', "missing"),
    (lambda m: m["cases"][TANH].update(order={"a": 1}), f'cases["{TANH}"].order', 'got an object {"a": 1}'),
    (lambda m: m["cases"][TANH]["order"][0].update(name=3), f'cases["{TANH}"].order[0].name', "got a number 3"),
    (lambda m: m["cases"][TANH]["tensors"]["inputs/x"].update(shape=[2, -1]),
     f'cases["{TANH}"].tensors["inputs/x"].shape', "got an array [2, -1]"),
    (lambda m: m["cases"][TANH]["tensors"]["outputs/out"].pop("tol"), f'cases["{TANH}"].tensors["outputs/out"].tol',
     "missing"),
    (lambda m: m["cases"][TANH]["tensors"]["outputs/out"]["tol"].pop("float32"),
     f'cases["{TANH}"].tensors["outputs/out"].tol.float32', "missing"),
]


@pytest.mark.parametrize("edit,key,found", MALFORMED, ids=[f"{k} {f}" for _, k, f in MALFORMED])
def test_a_malformed_manifest_is_one_line_naming_the_file_and_key(gdir, tmp_path, edit, key, found, capsys):
    manifest = _manifest(gdir)
    edit(manifest)
    _write_manifest(gdir, manifest)
    assert cli.main(["golden", "verify", "--adapter", _adapter(tmp_path), "--dir", str(gdir)]) == 2
    line = _error_line(capsys.readouterr().err)
    assert line.startswith(f"refmem golden verify: error: {gdir}/manifest.json: {key}: expected "), line
    assert line.endswith(found), line


@pytest.mark.parametrize("text,says", [("[" * 200_000 + "]" * 200_000, "nested too deeply to parse"),
                                       ('{"format_version": 2, "generator": ' + "[" * 200_000, "nested too deeply"),
                                       ("[1, 2]", "the top level: expected a JSON object, got an array [1, 2]"),
                                       ('{"format_version": true}', "format_version true, this refmem reads 1, 2"),
                                       ("\udcff", "not UTF-8")],
                         ids=["deep-array", "deep-generator", "array", "bool-format", "not-utf8"])
def test_a_manifest_that_is_not_a_manifest(gdir, tmp_path, text, says, capsys):
    (gdir / "manifest.json").write_bytes(text.encode("utf-8", errors="surrogateescape"))
    assert cli.main(["golden", "verify", "--adapter", _adapter(tmp_path), "--dir", str(gdir)]) == 2
    line = _error_line(capsys.readouterr().err)
    assert line.startswith(f"refmem golden verify: error: {gdir}/manifest.json") and says in line, line


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
@pytest.mark.parametrize("where", ["manifest.json", "primitives/tanh/default.safetensors", "README.md"])
@pytest.mark.parametrize("kind", ["a FIFO", "a directory"])
def test_a_fifo_or_a_directory_where_a_file_belongs_never_hangs(gdir, tmp_path, where, kind):
    """The issue: these hung (a FIFO) or raised IsADirectoryError. Run as a separate process with a timeout."""
    path = gdir / where
    path.unlink()
    os.mkfifo(path) if kind == "a FIFO" else path.mkdir()
    action = ["check", "--module", "primitives"] if where == "README.md" else ["verify", "--adapter",
                                                                                _adapter(tmp_path)]
    if where == "README.md":
        action = ["check"]
    proc = _refmem("golden", *action, "--dir", str(gdir), expect=2 if where == "manifest.json" else 1)
    assert "Traceback" not in proc.stderr
    if where == "manifest.json":
        assert proc.returncode == 2
        assert _error_line(proc.stderr) == f"refmem golden {action[0]}: error: {path} is {kind}, not a regular file"
    elif where == "README.md":
        assert proc.returncode == 1 and f"FAILED {path} is missing or not the one generated" in proc.stderr
    else:
        assert proc.returncode == 1
        assert f"FAILED {TANH}: {path} is {kind}, not a regular file" in proc.stderr


def test_golden_compare_refuses_what_is_not_a_result_mapping(prims):
    g = golden.load(TANH, prims)
    with pytest.raises(TypeError, match=r"^results: expected a mapping of tensor names .* to arrays, got list$"):
        golden.compare(g, [g.outputs["out"]])
    with pytest.raises(TypeError, match=r"^golden: expected a refmem.golden.Golden .*, got list$"):
        golden.compare([g], g.expected())


# ============================================================================ 3. no traceback, no hang, no orphan


ADAPTERS = {
    "raises ValueError on import": ("bad.py", "raise ValueError('boom at import')\n", "importing {mod} raised "
                                    "ValueError: boom at import"),
    "raises SyntaxError on import": ("bad.py", "x = (\n", "importing {mod} raised SyntaxError: '(' was never closed ({file}, line 1)"),
    "exits on import": ("bad.py", "import sys\nsys.exit(3)\n", "importing {mod} called sys.exit(3)"),
    "CASES = 5": ("bad.py", "CASES = 5\ndef run(case, tensors, dtype):\n    return {}\n",
                  "CASES must be a list of fnmatch patterns (strings), got int 5"),
    "CASES = [1]": ("bad.py", "CASES = [1]\ndef run(case, tensors, dtype):\n    return {}\n",
                    "CASES must be a list of fnmatch patterns (strings), got list [1]"),
}


@pytest.mark.parametrize("what", list(ADAPTERS))
@pytest.mark.parametrize("as_module", [False, True])
def test_an_adapter_that_fails_to_import_is_one_line(prims, tmp_path, monkeypatch, what, as_module, capsys):
    name, source, says = ADAPTERS[what]
    mod = f"bad_{abs(hash((what, as_module))) % 10**8}"
    (tmp_path / f"{mod}.py").write_text(source)
    monkeypatch.chdir(tmp_path)
    spec = f"{mod}:run" if as_module else f"{mod}.py:run"
    assert cli.main(["golden", "verify", "--adapter", spec, "--dir", str(prims)]) == 2
    shown = mod if as_module else f"{mod}.py"
    assert _error_line(capsys.readouterr().err) == \
        f"refmem golden verify: error: adapter {spec!r}: " + says.format(mod=shown, file=f"{mod}.py")


@pytest.mark.parametrize("spec,says", [(":run", "expected package.module:function (a module and a function name)"),
                                       ("x.py:", "expected package.module:function (a module and a function name)"),
                                       ("{tmp}/adir.py:run", "{tmp}/adir.py is not a file")])
def test_an_adapter_spec_that_names_nothing_is_one_line(prims, tmp_path, spec, says, capsys):
    (tmp_path / "adir.py").mkdir()
    spec = spec.replace("{tmp}", str(tmp_path))
    assert cli.main(["golden", "verify", "--adapter", spec, "--dir", str(prims)]) == 2
    assert _error_line(capsys.readouterr().err) == \
        f"refmem golden verify: error: adapter {spec!r}: " + says.replace("{tmp}", str(tmp_path))


def test_an_ascii_terminal_shows_a_failure_without_unicode_errors(prims, tmp_path):
    """The issue: ``PYTHONIOENCODING=ascii`` with a failure (SPEC §, the first divergence) raised UnicodeEncodeError."""
    proc = _refmem("golden", "verify", "--adapter", _adapter(tmp_path, "x"), "--dir", str(prims), expect=1,
                   PYTHONIOENCODING="ascii")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr and "UnicodeEncodeError" not in proc.stderr
    assert "first divergence: outputs/out (SPEC \\xa71" in proc.stderr


@pytest.mark.parametrize("jobs", ["abc", "2.5", "0", "-3"])
def test_a_junk_refmem_jobs_is_one_line(jobs, monkeypatch, capsys):
    monkeypatch.setenv("REFMEM_JOBS", jobs)
    assert cli.main(["check", "--module", "primitives", "--case", "sigmoid"]) == 2
    assert _error_line(capsys.readouterr().err) == (
        "refmem check: error: environment variable REFMEM_JOBS: expected an integer >= 1 (worker processes of the "
        f"gradient checks), got {jobs!r}")
    from refmem.errors import DomainError
    from refmem.gradcheck import default_jobs

    with pytest.raises(DomainError, match=f"^REFMEM_JOBS: expected an integer >= 1, got {jobs!r}$"):
        default_jobs()


def _children(pid: int) -> list[int]:
    kids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                kids.append(int(entry))
    return kids


def _running(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie is dead: it only waits to be reaped)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _start(argv: list[str], ready: str) -> tuple[subprocess.Popen, list[str]]:
    """Start ``refmem argv`` and wait until a line of its standard error starts with ``ready``."""
    proc = subprocess.Popen([sys.executable, "-m", "refmem", *argv], env=_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    seen = threading.Event()

    def read() -> None:
        for line in proc.stderr:
            lines.append(line)
            if line.startswith(ready):
                seen.set()
    threading.Thread(target=read, daemon=True).start()
    assert seen.wait(300), "".join(lines)
    return proc, lines


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_ctrl_c_ends_train_and_its_child_with_one_line(tmp_path):
    """``refmem train`` re-executes itself in a child (its BLAS threads set first). SIGINT to the parent:
    one line, exit 130, and the child is gone (the issue: 76 lines, and the child kept running)."""
    proc, lines = _start(["train", "copy", "--steps", "100000", "--save", str(tmp_path / "p.safetensors")],
                         "train copy [")
    kids = _children(proc.pid)
    assert len(kids) == 1
    proc.send_signal(signal.SIGINT)
    assert proc.wait(60) == 130
    time.sleep(0.2)
    err = "".join(lines)
    assert "Traceback" not in err and err.strip().splitlines()[-1] == "refmem train: interrupted", err
    assert sum("interrupted" in line for line in lines) == 1
    deadline = time.time() + 30
    while _running(kids[0]) and time.time() < deadline:
        time.sleep(0.1)
    assert not _running(kids[0])
    assert list(tmp_path.iterdir()) == []  # nothing saved, nothing staged


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc; PR_SET_PDEATHSIG is Linux's")
def test_the_train_child_dies_with_a_killed_parent():
    proc, _ = _start(["train", "copy", "--steps", "100000"], "train copy [")
    (kid,) = _children(proc.pid)
    proc.kill()
    proc.wait(60)
    deadline = time.time() + 30
    while _running(kid) and time.time() < deadline:
        time.sleep(0.1)
    assert not _running(kid)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="signals a child process")
@pytest.mark.parametrize("argv,ready", [(["check", "--module", "dnc"], "check ["),
                                       (["golden", "check"], "golden check ["),
                                       (["golden", "export", "--dir", "{tmp}/g"], "golden export [")])
def test_ctrl_c_ends_a_command_with_one_line(argv, ready, tmp_path):
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    proc, lines = _start(argv, ready)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(120) == 130
    time.sleep(0.2)
    err = "".join(lines)
    command = "check" if argv[0] == "check" else " ".join(argv[:2])
    assert "Traceback" not in err and err.strip().splitlines()[-1] == f"refmem {command}: interrupted", err
    assert not _children(proc.pid)
    if argv[:2] == ["golden", "export"]:
        assert list(tmp_path.iterdir()) == []  # no half set, no staging folder


# ============================================================================ 4. a verdict that reads right


def test_values_are_labelled_in_one_order_everywhere(prims, tmp_path):
    report = golden.verify(_adapter(tmp_path, "x"), "float64", prims)
    (row,) = [r for r in report.failures if r.tensor == "outputs/out"]
    d = report.divergences[TANH]
    assert row.note.startswith(f"at {list(d.index)}: reference ") and ", yours " in row.note
    ref, yours = row.note.split(": reference ")[1].split(", yours ")
    assert d.message.endswith(f"at {list(d.index)}: reference {ref}, yours {yours}")
    assert float(ref) == pytest.approx(d.reference, rel=1e-3) and float(yours) == pytest.approx(d.given, rel=1e-3)
    assert " vs " not in report.table()


def test_an_adapter_returning_lists_is_told_it_returned_lists(prims, tmp_path):
    """The issue: a Python list returned for a float32 run was reported as a float64 computation."""
    path = tmp_path / "lists.py"
    path.write_text("import numpy as np\nCASES = ['primitives/tanh/*']\n"
                    "def run(case, tensors, dtype):\n    x = tensors['inputs/x']\n"
                    "    return {'outputs/out': np.tanh(x).tolist(), "
                    "'grads/inputs/x': tensors['cotangents/out'] * (1 - np.tanh(x) ** 2)}\n")
    report = golden.verify(f"{path}:run", "float32", prims)
    (row,) = report.failures
    assert row.tensor == "outputs/out" and row.note == (
        "returned a Python list, which has no dtype (NumPy reads it as float64); return an array of dtype float32")
    assert report.divergences[TANH].reason == row.note
    assert "compute in the dtype you were given" not in report.table()
    assert golden.verify(f"{path}:run", "float64", prims).passed  # a list of float64 values compares
