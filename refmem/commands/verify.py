"""``refmem verify``: differential property testing of your implementation against live refmem.

``refmem verify --adapter package.module:function [--case PATTERN] [--dtype float32|float64]
[--examples N] [--seed S] [--save-failures DIR] [--json PATH] [--junit PATH] [--batch-invariance]``

For each catalogue case the adapter declares (the adapter protocol of ``refmem golden
verify``), Hypothesis draws N examples (every size letter from its smallest allowed value,
the seed of the inputs, value scales toward the edges of the domain, fully padded mask rows)
and the adapter's outputs, intermediates and gradients are compared with refmem's, computed
live on the same inputs, by the golden rules. A failure is shrunk to the smallest failing
example; with ``--save-failures DIR`` it is written there as a format-2 golden case that
``refmem golden verify --dir DIR --adapter ...`` re-runs. Exit 1 on any failure.

``OMP_NUM_THREADS`` defaults to 1 here (set it to override): the examples are small, and a
framework's thread pool only costs time on them.
"""

from __future__ import annotations

import os
import sys
import time
from argparse import ArgumentParser, Namespace

HELP = "differential testing: your implementation against live refmem at Hypothesis-drawn shapes"
DESCRIPTION = (
    "Compare your implementation (the adapter of 'refmem golden verify') with refmem computed live "
    "at Hypothesis-drawn sizes (1 included), seeds, value scales and fully padded mask rows; a "
    "failure is shrunk to the smallest failing example and, with --save-failures, saved as a golden "
    "case that 'refmem golden verify --dir DIR' re-runs. Exit status 1 on any failure."
)


def add_arguments(p: ArgumentParser) -> None:
    from ..cli import int_at_least

    p.add_argument("--adapter", required=True, metavar="MODULE:FUNCTION",
                   help="package.module:function or path/to/file.py:function (see examples/README.md)")
    p.add_argument("--case", action="append", metavar="PATTERN",
                   help="only cases matching PATTERN (fnmatch or substring; repeatable)")
    p.add_argument("--dtype", default="float64", choices=["float32", "float64"],
                   help="dtype the inputs are cast to and whose tolerance applies (default float64)")
    p.add_argument("--examples", type=int_at_least(1), default=100, metavar="N",
                   help="examples drawn per case (default 100)")
    p.add_argument("--seed", type=int_at_least(0), default=0, metavar="S",
                   help="seed of the Hypothesis search (default 0): the same seed draws the same examples")
    p.add_argument("--save-failures", metavar="DIR",
                   help="write each case's shrunk failing example to DIR as a format-2 golden case")
    p.add_argument("--batch-invariance", action="store_true",
                   help="also check that an item's outputs do not depend on its batch companions, "
                        "nor on the values under its padding (examples with B >= 2)")
    p.add_argument("--quiet", action="store_true", help="print only failures and the summary")
    p.add_argument("--json", metavar="PATH", help="also write the report as JSON")
    p.add_argument("--junit", metavar="PATH", help="also write JUnit XML (one test case per case) for CI")


def run(args: Namespace) -> int:
    from ..cli import CommandError, check_output_dir

    if args.save_failures is not None:
        check_output_dir(args.save_failures, "--save-failures")
        from ..golden.storage import GoldenError, reproducer_target_problem

        try:
            problem = reproducer_target_problem(args.save_failures)
        except GoldenError as exc:
            problem = str(exc)
        if problem:  # never a golden set: refused before any work
            raise CommandError(f"argument --save-failures: {problem}")
    # Examples are small: a framework's intra-op thread pool only spins (measured with torch on 2 shared
    # cores: 90 s wall for 18 s of CPU, against 36 s with one thread). One thread unless the user says.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    try:
        from .. import differential as D
    except ImportError as exc:
        raise CommandError(str(exc)) from exc
    from .. import golden

    t0 = time.perf_counter()

    def progress(r) -> None:
        verdict = "ok" if r.passed else f"FAIL at {r.failing.describe()}" if r.failing else "FAIL"
        print(f"{r.case}: {r.examples} examples, {verdict}", file=sys.stderr, flush=True)

    try:
        result = D.differential(args.adapter, args.case, args.dtype, args.examples, args.seed,
                                args.save_failures, args.batch_invariance, on_case=progress)
    except golden.GoldenError as exc:
        raise CommandError(str(exc)) from exc
    report = result.report
    meta = {"adapter": args.adapter, "dtype": args.dtype, "cases": args.case or [], "examples": args.examples,
            "seed": args.seed, "batch_invariance": bool(args.batch_invariance), "differential": result.meta()}
    title = f"refmem verify {args.adapter} ({args.dtype}, {args.examples} examples per case)"
    from ..cli import Outputs

    outputs = Outputs()  # atomic; a failed write goes to a temporary file named on the error line (exit 2)
    if args.json:
        outputs.write_text(args.json, "--json", golden.to_json(report, meta))
    if args.junit:
        outputs.write_text(args.junit, "--junit", golden.to_junit(report, title))
    text = report.table(only_failures=args.quiet)
    if text:
        print(text)
    failed = [r for r in result.cases if not r.passed]
    print(f"\nverify {args.adapter} in {args.dtype}: {len(result.cases)} cases, "
          f"{sum(r.examples for r in result.cases)} examples, {len(failed)} failed, "
          f"{time.perf_counter() - t0:.1f} s")
    for r in failed:
        print(f"FAILED {r.case}" + (f" at {r.failing.describe()}" if r.failing else ""), file=sys.stderr)
        if r.case in report.divergences:
            print(f"  {report.divergences[r.case].message}", file=sys.stderr)
        for p in report.problems:
            if p.split(":")[0] == r.case:
                print(f"  {p}", file=sys.stderr)
        if r.reproducer is not None:
            print(f"  reproducer: refmem golden verify --dir {args.save_failures} --adapter {args.adapter} "
                  f"--dtype {args.dtype} --case {r.case}", file=sys.stderr)
    outputs.finish()
    return 1 if failed else 0
