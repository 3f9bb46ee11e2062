"""`refmem exercise`: every starter fails, every reference solution passes, every catalogued mistake
is recognised, and a file that cannot be graded is one line, exit 2.

The mistakes are graded without the gradient check (`gradcheck=False`: the golden tensors, the
traced intermediates and the catalogue remain), which keeps this file to seconds; the starters
and the reference solutions are graded whole.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from refmem.cli import main
from refmem.teaching import exercises as E

ROOT = Path(__file__).resolve().parent.parent
FAMILIES = ("primitives", "memory_lstm", "attention", "dnc")


def _write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def _cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run([sys.executable, "-m", "refmem", "exercise", *args], cwd=cwd or ROOT,
                          capture_output=True, text=True, env=env, timeout=300)


def test_every_family_has_an_exercise():
    assert {E.get(n).family for n in E.names()} >= set(FAMILIES)


@pytest.mark.parametrize("name", E.names())
def test_the_starter_fails_and_the_reference_passes(tmp_path, name):
    ex = E.get(name)
    starter = _write(tmp_path, "starter.py", E.starter(ex))
    with pytest.raises(E.SubmissionError, match=rf"{ex.function} raised NotImplementedError"):
        E.grade(starter)
    solution = _write(tmp_path, "solution.py", E.solution_source(ex))
    g = E.grade(solution)
    assert g.passed, "\n".join(t for _, t in E.render(g))
    assert g.gradcheck and all(r.passed for r in g.gradcheck)
    assert g.intermediates and all(i.status == "ok" for i in g.intermediates)
    assert g.mistakes == []


@pytest.mark.parametrize("name", E.names())
def test_the_starter_holds_the_headings_and_no_line_of_the_solution(name):
    ex = E.get(name)
    start = E.starter(ex)
    first, last, lines = E._region(E.solution_source(ex))
    code = [ln.strip() for ln in lines[first + 1:last] if ln.strip() and not ln.strip().startswith("#")]
    assert code, name
    given = {s.strip() for s in lines[:first] + lines[last + 1:]}  # the forward may share a line with it
    leaked = [ln for ln in code if ln in {s.strip() for s in start.splitlines()} and ln not in given]
    assert leaked == []
    for heading, _ in E.steps(ex):
        assert heading.split(" ")[0] in start
    assert f"def {ex.function}(d_out" in start and f"EXERCISE = \"{ex.name}\"" in start
    compile(start, "starter", "exec")


CATALOGUE = [(n, m.name) for n in E.names() for m in E.get(n).mistakes]


def test_every_exercise_has_a_catalogue_of_mistakes():
    assert all(len(E.get(n).mistakes) >= 3 for n in E.names())


@pytest.mark.parametrize("name,mistake", CATALOGUE)
def test_each_catalogued_mistake_is_recognised(tmp_path, name, mistake):
    ex = E.get(name)
    m = next(x for x in ex.mistakes if x.name == mistake)
    planted = E.mutant(ex, m)  # refuses a mistake whose text does not occur exactly once
    source = E.solution_source(ex).replace(m.old, m.new, 1)
    g = E.grade(_write(tmp_path, "mine.py", source), gradcheck=False)
    assert not g.passed
    assert [x.name for x in g.mistakes] == [mistake], [x.name for x in g.mistakes]
    assert callable(getattr(planted, ex.function))


def test_the_first_wrong_intermediate_is_named_with_its_step(tmp_path):
    ex = E.get("memory_lstm/step")
    m = next(x for x in ex.mistakes if x.name == "missing_shift")
    g = E.grade(_write(tmp_path, "mine.py", E.solution_source(ex).replace(m.old, m.new, 1)), gradcheck=False)
    assert g.first_wrong.name == "d_memory_prev"
    assert g.first_wrong.step.startswith("Step 4 (4.7)")
    before = [i.name for i in g.intermediates[:[i.name for i in g.intermediates].index("d_memory_prev")]]
    assert "d_e" in before and "shifted" in before
    div = g.golden[0][1].divergences["memory_lstm/step/default"]
    assert div.tensor == "grads/state/memory_prev" and div.spec == "SPEC §4"


def test_a_fitted_backward_fails_the_gradient_check(tmp_path):
    """A backward that returns the golden gradients passes the goldens and fails at another seed."""
    ex = E.get("primitives/softmax")
    from refmem.golden import load

    golden = load("primitives/softmax/default")
    fitted = E.solution_source(ex).replace(
        "    d_x = s * (g - g_dot_s)\n",
        f"    import numpy as np\n    d_x = np.array({golden.grads['inputs/x'].tolist()!r})\n")
    g = E.grade(_write(tmp_path, "fitted.py", fitted))
    assert g.golden_passed and not g.passed
    assert any(not r.passed for r in g.gradcheck)


def test_a_division_by_a_zero_factor_is_caught_by_the_probe(tmp_path):
    ex = E.get("primitives/exclusive_cumprod")
    m = next(x for x in ex.mistakes if x.name == "divide_by_x")
    g = E.grade(_write(tmp_path, "mine.py", E.solution_source(ex).replace(m.old, m.new, 1)), gradcheck=False)
    assert g.golden_passed and not g.passed  # the goldens sample away from 0: only the probe sees it
    assert g.probes and not g.probes[0][1] and "NaN" in g.probes[0][2]


def test_names_can_differ_from_the_derivation(tmp_path):
    """Locals named otherwise are not compared; the results still are."""
    ex = E.get("primitives/softmax")
    source = E.solution_source(ex).replace("g_dot_s", "weighted").replace("d_x", "grad_x")
    g = E.grade(_write(tmp_path, "mine.py", source), gradcheck=False)
    assert g.passed and {i.status for i in g.intermediates} == {"absent"}
    assert g.notes


# ----------------------------------------------------------------------------- the command line


def test_cli_list_start_check(tmp_path):
    r = _cli("list")
    assert r.returncode == 0 and all(n in r.stdout for n in E.names())
    r = _cli("start", "primitives/softmax", "--dir", str(tmp_path / "ex"))
    path = tmp_path / "ex" / "primitives_softmax.py"
    assert r.returncode == 0 and path.is_file() and str(path) in r.stdout
    r = _cli("start", "primitives/softmax", "--dir", str(tmp_path / "ex"))
    assert r.returncode == 2 and "exists" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    r = _cli("check", str(path))
    assert r.returncode == 2 and "NotImplementedError" in r.stderr and "Traceback" not in r.stderr
    path.write_text(E.solution_source(E.get("primitives/softmax")), encoding="utf-8")
    r = _cli("check", str(path), "--json", str(tmp_path / "grade.json"))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "PASS" in r.stdout
    assert json.loads((tmp_path / "grade.json").read_text())["passed"] is True
    ex = E.get("primitives/softmax")
    m = ex.mistakes[0]
    path.write_text(E.solution_source(ex).replace(m.old, m.new, 1), encoding="utf-8")
    r = _cli("check", str(path))
    assert r.returncode == 1
    assert f"known mistake: {m.title}" in r.stdout and "first wrong" in r.stdout and "SPEC §1 softmax" in r.stdout
    r = _cli("start", "primitives/softmax", "--dir", str(tmp_path / "ex"), "--force")
    assert r.returncode == 0 and "NotImplementedError" in path.read_text()


SOLUTION = E.solution_source(E.get("primitives/softmax"))


@pytest.mark.parametrize("text,expected", [
    ("def softmax_backward(d_out, cache:\n", "does not import: SyntaxError"),
    (SOLUTION.replace("EXERCISE = \"primitives/softmax\"", "EXERCISE = \"primitives/softmax\"\nundefined_name"),
     "does not import: NameError"),
    (SOLUTION.replace("EXERCISE = \"primitives/softmax\"", "EXERCISE = \"nope\""), "EXERCISE = 'nope' is no exercise"),
    ("x = 1\n", "names no exercise"),
    (SOLUTION.replace("def softmax_backward(", "def softmax_backwards("), "defines no function softmax_backward"),
    (SOLUTION.replace("def softmax_backward(d_out: SoftmaxOutputs, cache: SoftmaxCache)",
                      "def softmax_backward(d_out: SoftmaxOutputs, cache: SoftmaxCache, axis)"),
     "takes (d_out, cache, axis), expected"),
    (SOLUTION.replace("    d_x = s * (g - g_dot_s)\n", "    d_x = s * (g - g_dot_s)\n    raise ValueError('boom')\n"),
     "softmax_backward raised ValueError: boom (mine.py, line"),
    (SOLUTION.replace("return SoftmaxGrads(d_x)", "return d_x"), "returned ndarray, expected a SoftmaxGrads(x)"),
    (SOLUTION.replace("return SoftmaxGrads(d_x)", "return (d_x,)"), "wrap it: return SoftmaxGrads(...)"),
    (SOLUTION.replace("    d_x = s * (g - g_dot_s)\n", "    import sys; sys.exit(3)\n"), "raised SystemExit: 3"),
])
def test_cli_a_file_that_cannot_be_graded_is_one_line_exit_2(tmp_path, capsys, text, expected):
    path = _write(tmp_path, "mine.py", text)
    assert main(["exercise", "check", str(path)]) == 2  # in this process: a traceback would raise here
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("refmem exercise check: error: ") and expected in lines[0], lines[0]


def test_cli_errors_of_start(tmp_path, capsys):
    def error(*args: str) -> str:
        assert main(["exercise", *args]) == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1, err
        return err

    assert "no exercise named 'no/such'" in error("start", "no/such", "--dir", str(tmp_path))
    blocker = _write(tmp_path, "file", "")
    assert error("start", "primitives/softmax", "--dir", str(blocker / "sub")).startswith(
        "refmem exercise start: error: argument --dir: cannot write")
    assert "no such file" in error("check", str(tmp_path / "missing.py"))
    assert "name an action" in error()
    assert "expected an integer >= 0" in error("check", str(blocker), "--seed", "-1")
