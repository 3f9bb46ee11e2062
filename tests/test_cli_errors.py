"""The command line's user errors: one line on standard error, exit status 2, no traceback, the option named.

One command line per kind of mistake (refmem.cli's module docstring states the policy), run
in-process through ``refmem.cli.main``; a few run through ``python -m refmem`` to see what a
shell sees. Output paths are refused before any work starts, and a write that fails after the
work saves the result elsewhere and says where.
"""

from __future__ import annotations

import json
import os
import pathlib
import sys

import pytest

from refmem import cli
from refmem.catalogue import module_names

from conftest import child_env, run

ROOT = pathlib.Path(__file__).resolve().parents[1]

T = "{tmp}"  # replaced by the test's temporary folder

#: (command line, the text the one error line must contain: the option, or what is wrong)
BAD = [
    # argparse: a value of the wrong type, an unknown option, a missing or unknown choice
    ("train copy --steps abc", "--steps"),
    ("train copy --frobnicate", "--frobnicate"),
    ("train sort", "sort"),
    ("train", "task"),
    ("check --method foo", "--method"),
    ("frob", "frob"),
    ("", "name a command"),
    ("golden", "ACTION"),
    ("plot", "name a target"),
    ("plot bogus", "bogus"),
    ("golden verify --adapter no_such_module_xyz:run --dtype float16", "--dtype"),
    # numbers out of range
    ("train copy --steps 0", "--steps"),
    ("train copy --seed -1", "--seed"),
    ("train copy --lr nan", "--lr"),
    ("train copy --lr -1", "--lr"),
    ("train copy --lr inf", "--lr"),
    ("train copy --hidden 0", "--hidden"),
    ("train copy --batch-size 0", "--batch-size"),
    ("train copy --max-length 0", "--max-length"),
    ("train copy --clip-value -1", "--clip-value"),
    ("train copy --max-grad-norm nan", "--max-grad-norm"),
    ("train reverse --steps -3", "--steps"),
    ("check --seed -1", "--seed"),
    ("bench --repeats 0", "--repeats"),
    ("bench --threads -1", "--threads"),
    ("plot attention --batch -1", "--batch"),
    ("plot dnc --length 0", "--length"),
    # names that match nothing
    ("check --module zzz", "--module"),
    ("golden check --module zzz", "--module"),
    ("check --case zzz", "--case"),
    ("check --module primitives --case dnc/", "--case"),
    ("bench --only zzz", "--only"),
    ("bench --profile zzz", "--profile"),
    ("bench --impl tensorflow", "--impl"),
    ("check --backend zzz", "--backend"),
    ("train copy --backend zzz", "--backend"),
    ("plot attention --case nope", "--case"),
    ("plot attention --batch 99", "--batch"),
    ("golden verify --adapter no_such_module_xyz:run", "no_such_module_xyz"),
    # options that do not apply
    ("train reverse --memory-size 8", "--memory-size"),
    ("train reverse --preset deepmind", "--preset"),
    # output paths, refused before the work starts
    ("train copy --save /proc/x", "--save"),
    ("train copy --json /nonexistent/dir/x.json", "--json"),
    ("train copy --json {tmp}", "--json"),
    ("train copy --plot /proc/x.png", "--plot"),
    ("train reverse --plot /nonexistent/dir/a.png", "--plot"),
    ("check --json /proc/x", "--json"),
    ("bench --json /nonexistent/dir/b.json", "--json"),
    ("plot attention --out /proc/a.png", "--out"),
    ("plot dnc --out {tmp}", "--out"),
    ("golden export --dir /proc/golden", "--dir"),
    ("golden export --dir {tmp}/file.txt", "--dir"),
    ("golden verify --adapter examples/torch_memory_lstm.py:run --junit /proc/x/j.xml", "--junit"),
    # input files
    ("plot dnc --params /nonexistent.safetensors", "--params"),
    ("plot dnc --params {tmp}/file.txt", "--params"),
    ("golden check --dir /nonexistent", "/nonexistent"),
]


def _argv(line: str, tmp: pathlib.Path) -> list[str]:
    return [a.replace(T, str(tmp)) for a in line.split()]


@pytest.fixture
def tmp(tmp_path):
    (tmp_path / "file.txt").write_text("not a parameter file\n")
    return tmp_path


@pytest.mark.parametrize("line,named", BAD, ids=[b[0] or "(nothing)" for b in BAD])
def test_a_user_error_is_one_line_and_exit_2(line, named, tmp, capsys, monkeypatch):
    from refmem.dnc import train as dnc_train

    def no_work(*args, **kwargs):
        raise AssertionError("the work started before the error was found")

    monkeypatch.setattr(dnc_train, "train", no_work)
    assert cli.main(_argv(line, tmp)) == 2
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("refmem") and ": error: " in lines[0], lines[0]
    assert named in lines[0], lines[0]
    assert "Traceback" not in captured.err and captured.out == ""
    assert list(tmp.iterdir()) == [tmp / "file.txt"]  # nothing written, not even a probe file


def test_the_error_line_names_the_sub_command(capsys):
    assert cli.main(["plot", "dnc", "--length", "0"]) == 2
    assert capsys.readouterr().err.startswith("refmem plot dnc: error: argument --length: expected an integer >= 1")
    assert cli.main(["golden", "export", "--dir", "/proc/golden"]) == 2
    assert capsys.readouterr().err.startswith("refmem golden export: error: argument --dir: ")


def test_unknown_module_lists_the_catalogue(capsys):
    assert cli.main(["check", "--module", "zzz"]) == 2
    err = capsys.readouterr().err
    assert all(name in err for name in module_names())


def test_bench_only_lists_the_benchmarks(capsys):
    assert cli.main(["bench", "--only", "zzz"]) == 2
    err = capsys.readouterr().err
    assert "dnc/copy" in err and "memory_lstm/unroll" in err


@pytest.mark.parametrize("argv", [["train", "copy", "--lr", "nan", "--steps", "5"],
                                  ["train", "copy", "--save", "/proc/x", "--steps", "5"],
                                  ["check", "--seed", "-1"],
                                  ["bench", "--only", "zzz"]])
def test_through_the_shell(argv):
    proc = run([sys.executable, "-m", "refmem", *argv], expect=2, env=child_env())
    assert len(proc.stderr.splitlines()) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert argv[2] in proc.stderr or argv[1] in proc.stderr


def test_a_write_that_fails_after_the_work_saves_elsewhere(tmp_path, capsys, monkeypatch):
    """The pre-check cannot foresee every failure (a disk that fills, a folder removed meanwhile):
    the result then goes to a temporary file, named on the error line."""
    monkeypatch.setattr(cli, "check_output_path", lambda path, option: None)
    target = str(tmp_path / "gone" / "curve.json")
    assert cli.main(["train", "reverse", "--steps", "3", "--json", target, "--report-every", "0",
                     "--threads", "0"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()  # the progress bar's lines, then the error
    errors = [line for line in lines if ": error: " in line]
    assert len(errors) == 1 and errors[0] == lines[-1]
    err = errors[0]
    assert err.startswith("refmem train: error: argument --json: writing " + target + " failed")
    fallback = err.rsplit("saved to ", 1)[1].split(" instead")[0]
    try:
        data = json.loads(pathlib.Path(fallback).read_text())
        assert data["step"] == [1, 2, 3] and len(data["loss"]) == 3
    finally:
        os.unlink(fallback)


def test_outputs_fallback_for_every_writer(tmp_path):
    out = cli.Outputs()
    target = str(tmp_path / "missing" / "x.txt")
    assert out.write(target, "--save", lambda p: pathlib.Path(p).write_text("ok")) == ""  # not written there
    with pytest.raises(cli.CommandError, match="argument --save: writing .* failed .*; saved to .* instead") as err:
        out.finish()
    saved = str(err.value).rsplit("saved to ", 1)[1].split(" instead")[0]
    assert saved.endswith(".txt") and pathlib.Path(saved).read_text() == "ok"
    os.unlink(saved)
    fine = cli.Outputs()
    assert fine.write(str(tmp_path / "y.txt"), "--json", lambda p: pathlib.Path(p).write_text("ok")) == \
        str(tmp_path / "y.txt")
    fine.finish()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["y.txt"]  # no staging file left beside it


def test_output_path_checks(tmp_path):
    cli.check_output_path(str(tmp_path / "new.json"), "--json")
    (tmp_path / "old.json").write_text("keep")
    cli.check_output_path(str(tmp_path / "old.json"), "--json")
    assert (tmp_path / "old.json").read_text() == "keep"  # checked, not truncated
    cli.check_output_path(os.devnull, "--json")
    for bad in ("", str(tmp_path), "/proc/x", "/nonexistent/dir/x.json", str(tmp_path / "old.json" / "x")):
        with pytest.raises(cli.CommandError, match="argument --json: "):
            cli.check_output_path(bad, "--json")
    cli.check_output_dir(str(tmp_path / "a" / "b"), "--dir")
    assert not (tmp_path / "a").exists()
    for bad in ("/proc/golden", str(tmp_path / "old.json")):
        with pytest.raises(cli.CommandError, match="argument --dir: "):
            cli.check_output_dir(bad, "--dir")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old.json"]


def test_option_types():
    import argparse

    assert cli.int_at_least(1)("3") == 3 and cli.positive_float("1e-3") == 1e-3 and cli.nonnegative_float("0") == 0
    for parse, text in [(cli.int_at_least(1), "0"), (cli.int_at_least(0), "-1"), (cli.int_at_least(0), "1.5"),
                        (cli.positive_float, "0"), (cli.positive_float, "nan"), (cli.positive_float, "-inf"),
                        (cli.nonnegative_float, "-1e-9"), (cli.nonnegative_float, "inf")]:
        with pytest.raises(argparse.ArgumentTypeError, match=repr(text)):
            parse(text)


def test_presets_agree_with_the_command():
    from refmem.commands import train as command
    from refmem.dnc.train import PRESETS, TrainConfig, preset

    assert tuple(PRESETS) == command.PRESET_NAMES
    deepmind = preset("deepmind")
    assert (deepmind.lr, deepmind.steps, deepmind.optimizer, deepmind.epsilon) == (1e-4, 100_000, "rmsprop", 1e-10)
    assert preset("demo") == TrainConfig()
    assert preset("deepmind", steps=7).steps == 7
    with pytest.raises(ValueError, match="preset"):
        preset("fast")


@pytest.mark.parametrize("bad", [{"lr": float("nan")}, {"lr": -1.0}, {"steps": -1}, {"seed": -1}, {"hidden": 0},
                                 {"N": 0}, {"batch_size": 0}, {"max_grad_norm": float("inf")},
                                 {"clip_value": -1.0}, {"min_length": 3}, {"convention": "tf"}])
def test_train_config_refuses_bad_values_naming_the_field(bad):
    from refmem.dnc.train import TrainConfig

    with pytest.raises(ValueError, match=f"^{next(iter(bad))}: expected"):
        TrainConfig(**bad)


def test_help_is_current_and_light():
    """``refmem --help`` builds every parser without importing NumPy or rich (it stays fast), and the
    help of every command and target is printed."""
    code = ("import sys; from refmem import cli; cli.build_parser(); "
            "print(sorted(m for m in ('numpy', 'rich', 'matplotlib') if m in sys.modules))")
    proc = run([sys.executable, "-c", code], env=child_env())
    assert proc.stdout.strip() == "[]", proc.stdout + proc.stderr
    top = run([sys.executable, "-m", "refmem", "--help"], env=child_env()).stdout
    plot_line = " ".join(top[top.index("    plot"):].split())
    assert "attention" in plot_line and "dnc" in plot_line.split("options:")[0]
    for argv in (["train", "--help"], ["plot", "dnc", "--help"], ["golden", "export", "--help"],
                 ["bench", "--help"], ["check", "--help"]):
        with pytest.raises(SystemExit) as exit_:
            cli.main(argv)
        assert exit_.value.code == 0


def test_train_help_documents_the_presets(capsys):
    with pytest.raises(SystemExit):
        cli.main(["train", "--help"])
    out = capsys.readouterr().out
    assert "--preset {demo,deepmind}" in out and "lr 1e-4" in out and "100000 steps" in out


def test_no_control_codes_when_not_a_terminal(tmp_path, capsys):
    """Under a pipe (here pytest's capture) the bar is plain lines and the tables plain text."""
    assert cli.main(["check", "--module", "primitives", "--case", "sigmoid", "--json", str(tmp_path / "c.json")]) == 0
    captured = capsys.readouterr()
    for text in (captured.out, captured.err):
        assert "\x1b" not in text and "\r" not in text
    assert "check [" in captured.err and "case" in captured.out.splitlines()[0]
    records = json.loads((tmp_path / "c.json").read_text())["records"]
    assert records and set(records[0]) >= {"case", "tensor", "method", "max_abs_err", "max_rel_err",
                                           "normwise_rel_err", "passed", "seconds", "backend"}


def test_golden_export_falls_back_to_a_temporary_folder(capsys, monkeypatch):
    import shutil

    monkeypatch.setattr(cli, "check_output_dir", lambda path, option: None)
    assert cli.main(["golden", "export", "--dir", "/proc/golden", "--module", "primitives"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("refmem golden export: error: argument --dir: writing /proc/golden failed")
    fallback = pathlib.Path(err.rsplit("saved to ", 1)[1].split(" instead")[0])
    try:
        manifest = json.loads((fallback / "manifest.json").read_text())
        assert manifest["cases"] and all(name.startswith("primitives/") for name in manifest["cases"])
    finally:
        shutil.rmtree(fallback)


def test_benchmarks_driver_refuses_like_the_command(capsys):
    """``python -m benchmarks.run '<json>'`` (the child of ``refmem bench``) refuses before any timing."""
    from benchmarks import run

    assert run.main({"only": ["zzz"]}) == 2
    assert run.main({"repeats": 0}) == 2
    assert run.main({"impl": ["tf"]}) == 2
    assert run.main({"frob": 1}) == 2
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 4 and all(line.startswith("refmem bench: error: ") for line in lines)
    assert "--only" in lines[0] and "--repeats" in lines[1] and "--impl" in lines[2] and "frob" in lines[3]
    assert captured.out == ""
