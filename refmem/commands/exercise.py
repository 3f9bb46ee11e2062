"""``refmem exercise``: backward passes a learner writes and refmem grades.

``refmem exercise list`` lists the exercises; ``refmem exercise start NAME --dir DIR`` writes
``DIR/<family>_<function>.py``, the given forward and the backward to write (its signature, the
cache's fields, the derivation's steps as comments; never the solution); ``refmem exercise
check FILE`` grades it against the golden tensors and the gradient check of SPEC §6, names the
first wrong intermediate gradient with its derivation step and the first wrong tensor with its
SPEC equation, and names a known mistake when the gradients are those of one
([`refmem.teaching.exercises`][refmem.teaching.exercises]). Exit status: 0 passed, 1 graded and
wrong, 2 a file that cannot be graded (one line: it does not import, lacks the function, has
another signature, its backward raises or returns another type).
"""

from __future__ import annotations

import json
import os
import sys
from argparse import ArgumentParser, Namespace

HELP = ("exercises graded by refmem: write a backward pass, get the first wrong intermediate and the "
        "known mistake it matches ('list', 'start NAME --dir DIR', 'check FILE')")

EPILOG = """\
examples:
  refmem exercise list
  refmem exercise start primitives/softmax --dir exercises
  refmem exercise check exercises/primitives_softmax.py
"""


def add_arguments(p: ArgumentParser) -> None:
    from ..cli import Parser, _HelpFormatter

    sub = p.add_subparsers(dest="action", metavar="ACTION", parser_class=Parser)
    sub.add_parser("list", help="list the exercises", description="List the exercises: name, level, what to write.")
    s = sub.add_parser("start", help="write the starter file of an exercise",
                       description="Write DIR/<family>_<function>.py: the given forward and the backward to write.",
                       formatter_class=_HelpFormatter)
    s.add_argument("name", metavar="NAME", help="the exercise (refmem exercise list)")
    s.add_argument("--dir", default=".", metavar="DIR", help="the folder to write it in (created; default .)")
    s.add_argument("--force", action="store_true", help="overwrite an existing file of that name")
    c = sub.add_parser("check", help="grade a file written from a starter",
                       description="Grade FILE: golden tensors, each intermediate gradient, the gradient check, "
                                   "and the known mistakes. Exit 0 passed, 1 wrong, 2 cannot be graded.")
    c.add_argument("file", metavar="FILE", help="the exercise file (refmem exercise start writes it)")
    c.add_argument("--seed", type=_seed, default=1, help="seed of the gradient check's inputs (default 1; the "
                                                         "golden tensors are at seed 0)")
    c.add_argument("--json", metavar="PATH", help="also write the grade as JSON to PATH")
    p.set_defaults(action=None)


def _seed(text: str) -> int:
    from ..cli import int_at_least

    return int_at_least(0)(text)


def _list() -> int:
    from ..cli import print_table
    from ..teaching import exercises as E

    rows = [(ex.name, "*" * ex.level, f"{ex.function}(d_out, cache)", ex.spec, ex.summary) for ex in E.EXERCISES.values()]
    print_table(["exercise", "level", "you write", "SPEC", "what"], rows)
    print("\nstart one: refmem exercise start NAME --dir DIR; grade it: refmem exercise check DIR/FILE.py")
    return 0


def _start(args: Namespace) -> int:
    from ..cli import CommandError, Outputs, check_output_dir
    from ..teaching import exercises as E

    try:
        ex = E.get(args.name)
    except KeyError as exc:
        raise CommandError(f"argument NAME: {exc.args[0]}") from None
    check_output_dir(args.dir, "--dir")
    path = os.path.join(args.dir, E.starter_name(ex))
    if os.path.exists(path) and not args.force:
        raise CommandError(f"argument --dir: {path} exists (your work?); pass --force to overwrite it")
    try:
        os.makedirs(args.dir, exist_ok=True)
    except OSError as exc:
        raise CommandError(f"argument --dir: cannot create {args.dir} ({exc.strerror or exc})") from None
    outputs = Outputs()
    written = outputs.write_text(path, "--dir", E.starter(ex))
    outputs.finish()
    if written:
        print(f"wrote {path}: write {ex.function}(d_out, cache) ({ex.spec}; docs/{ex.derivation.split('#')[0]})")
        print(f"grade it: refmem exercise check {path}")
    return 0


def _check(args: Namespace) -> int:
    from ..cli import CommandError, Outputs
    from ..teaching import exercises as E

    try:
        grade = E.grade(args.file, seed=args.seed)
    except E.SubmissionError as exc:
        raise CommandError(str(exc)) from None
    _print(E.render(grade))
    if args.json:
        outputs = Outputs()
        outputs.write_text(args.json, "--json", json.dumps(grade.as_json(), indent=2) + "\n")
        outputs.finish()
    return 0 if grade.passed else 1


STYLES = {"ok": "green", "fail": "bold red", "head": "bold", "hint": "yellow", "": ""}


def _print(lines: list[tuple[str, str]]) -> None:
    """The report: colored on a terminal (rich), plain text in a log or a pipe."""
    from ..cli import _is_terminal

    if _is_terminal(sys.stdout):
        from rich.console import Console
        from rich.text import Text

        console = Console(file=sys.stdout, highlight=False, soft_wrap=True)
        for style, text in lines:
            console.print(Text(text, style=STYLES.get(style, "")))
        return
    for _, text in lines:
        sys.stdout.write(text + "\n")
    sys.stdout.flush()


def run(args: Namespace) -> int:
    from ..cli import CommandError

    if args.action == "list":
        return _list()
    if args.action == "start":
        return _start(args)
    if args.action == "check":
        return _check(args)
    raise CommandError("name an action: list, start NAME --dir DIR, check FILE (refmem exercise --help)")
