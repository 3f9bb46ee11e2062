"""``refmem verify``: differential property testing of your implementation against live refmem.

``refmem verify --adapter package.module:function [--case PATTERN] [--dtype float32|float64]
[--examples N] [--seed S] [--save-failures DIR] [--json PATH] [--junit PATH] [--batch-invariance]
[--no-tangents] [--workers N | --scheduler ADDRESS] [--resume DIR] [--timeout S] [--in-process]``

For each catalogue case the adapter declares (the adapter protocol of ``refmem golden
verify``), N examples are drawn, deterministically in (seed, index) (every size letter from
its smallest allowed value, the seed of the inputs, value scales toward the edges of the
domain, fully padded mask rows), and the adapter's outputs, intermediates and gradients are
compared with refmem's, computed live on the same inputs, by the golden rules. A failure is
shrunk (Hypothesis) to the smallest failing example; with ``--save-failures DIR`` it is
written there as a format-2 golden case that ``refmem golden verify --dir DIR --adapter ...``
re-runs. Exit 1 on any failure.

The examples run in this process, in ``--workers N`` local processes or on the Dask cluster
at ``--scheduler ADDRESS``; the verdict does not depend on which. ``--resume DIR`` records
every finished example in DIR and, run again, runs only those it has no record of. The
adapter runs in a child process (``--timeout``, ``--in-process``: see
[`refmem.golden.isolated`][refmem.golden.isolated]). The summary gives examples/s and the
median and 90th percentile of each example's time split (drawing, reference, tolerances,
adapter, comparison); ``--json`` records the split of every example.

The adapter gets the tensors of ``refmem golden verify``, one tangent per differentiable tensor
included; the ``jvp/`` and ``hvp/`` it returns are not compared here. ``--no-tangents`` gives
it none, so that it computes no forward mode: an adapter that compiles each new shape
(``jax.jit``) compiles a quarter of the code (4.3 s against 1.05 s for ``examples.jax_attention``
at a new shape).

``OMP_NUM_THREADS`` defaults to 1 here (set it to override): the examples are small, and a
framework's thread pool only costs time on them.
"""

from __future__ import annotations

import os
import sys
import time
from argparse import ArgumentParser, Namespace

HELP = "differential testing: your implementation against live refmem at drawn shapes, failures shrunk by Hypothesis"
DESCRIPTION = (
    "Compare your implementation (the adapter of 'refmem golden verify') with refmem computed live "
    "at drawn sizes (1 included), seeds, value scales and fully padded mask rows; a failure is "
    "shrunk (Hypothesis) to the smallest failing example and, with --save-failures, saved as a golden "
    "case that 'refmem golden verify --dir DIR' re-runs. Examples run here, in --workers local "
    "processes or on a Dask cluster (--scheduler), and a campaign resumes (--resume). Exit status 1 "
    "on any failure."
)


def add_arguments(p: ArgumentParser) -> None:
    from ..cli import int_at_least
    from . import adapter_process

    p.add_argument("--adapter", required=True, metavar="MODULE:FUNCTION",
                   help="package.module:function or path/to/file.py:function (see examples/README.md)")
    p.add_argument("--case", action="append", metavar="PATTERN",
                   help="only cases matching PATTERN (fnmatch or substring; repeatable)")
    p.add_argument("--dtype", default="float64", choices=["float32", "float64"],
                   help="dtype the inputs are cast to and whose tolerance applies (default float64)")
    p.add_argument("--examples", type=int_at_least(1), default=100, metavar="N",
                   help="examples counted per case (default 100; refused ones are drawn again, up to 10 N)")
    p.add_argument("--seed", type=int_at_least(0), default=0, metavar="S",
                   help="seed of the campaign (default 0): example i of a case depends on the seed, the case and i only")
    p.add_argument("--save-failures", metavar="DIR",
                   help="write each case's shrunk failing example to DIR as a format-2 golden case")
    p.add_argument("--batch-invariance", action="store_true",
                   help="also check that an item's outputs do not depend on its batch companions, "
                        "nor on the values under its padding (examples with B >= 2)")
    p.add_argument("--no-tangents", action="store_true",
                   help="give the adapter no tangents/ (its jvp/ and hvp/ are not compared here anyway): an "
                        "adapter that compiles every new shape (jax.jit) then compiles no forward mode")
    p.add_argument("--quiet", action="store_true", help="print only failures and the summary")
    p.add_argument("--json", metavar="PATH", help="also write the report as JSON")
    p.add_argument("--junit", metavar="PATH", help="also write JUnit XML (one test case per case) for CI")
    p.add_argument("--workers", type=int_at_least(1), default=1, metavar="N",
                   help="run the examples in N local processes (default 1: in this process); the verdict "
                        "and the reproducers do not depend on N")
    p.add_argument("--scheduler", metavar="ADDRESS",
                   help="run the examples on the Dask distributed cluster at ADDRESS (tcp://host:port; its "
                        "workers import refmem and the adapter from their own working directory; "
                        "pip install 'refmem[distributed]')")
    p.add_argument("--resume", metavar="DIR",
                   help="record every finished example in DIR; run again with the same options, the "
                        "campaign goes on where it stopped (killed or interrupted) and counts every example once; "
                        "with a larger --examples, a finished campaign grows without running an example twice")
    adapter_process.add_arguments(p)


def _ms(x: float) -> str:
    return f"{1000 * x:.0f}" if x >= 0.01 else f"{1000 * x:.1f}"


def split_lines(result) -> list[str]:
    """The summary's speed lines: examples/s and the time split (median / p90 per example)."""
    from ..differential.timing import PARTS, split_summary

    records = result.examples
    if not records:
        return []
    fresh = sum(1 for r in records if not r.get("resumed"))  # run now, not taken from the journal
    rate = fresh / result.seconds if result.seconds > 0 else float("inf")
    split = split_summary(r["seconds"] for r in records)
    parts = ", ".join(f"{p} {_ms(split[p]['median'])}/{_ms(split[p]['p90'])}" for p in PARTS)
    where = f"{result.workers} worker{'s' if result.workers != 1 else ''}"
    lines = [f"{fresh} examples run in {result.seconds:.1f} s: {rate:.2f} examples/s ({where})"
             + (f"; {len(records) - fresh} more counted from the journal" if len(records) > fresh else ""),
             f"per example, median/p90 ms: {parts}; refmem's share {_ms(split['refmem']['median'])}"
             f"/{_ms(split['refmem']['p90'])}"]
    return lines


def run(args: Namespace) -> int:
    from ..cli import CommandError, Outputs, Progress, check_output_dir
    from . import adapter_process

    if args.save_failures is not None:
        check_output_dir(args.save_failures, "--save-failures")
        from ..golden.storage import GoldenError, reproducer_target_problem

        try:
            problem = reproducer_target_problem(args.save_failures)
        except GoldenError as exc:
            problem = str(exc)
        if problem:  # never a golden set: refused before any work
            raise CommandError(f"argument --save-failures: {problem}")
    if args.resume is not None:
        check_output_dir(args.resume, "--resume")
    if args.scheduler is not None and args.workers != 1:
        raise CommandError("argument --scheduler: not allowed with --workers (the cluster has its own workers)")
    # Examples are small: a framework's intra-op thread pool only spins (measured with torch on 2 shared
    # cores: 90 s wall for 18 s of CPU, against 36 s with one thread). One thread unless the user says.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    try:
        from .. import differential as D
    except ImportError as exc:
        raise CommandError(str(exc)) from exc
    from .. import golden
    from ..executor import Executor

    t0 = time.perf_counter()
    bar = None

    def on_example(done: int, total: int) -> None:
        nonlocal bar
        if bar is None:
            bar = Progress(total, label="verify")
        elapsed = time.perf_counter() - t0
        rate = done / elapsed if elapsed > 0 else 0.0
        left = (total - done) / rate if rate > 0 else float("inf")
        bar.update(done - bar.done, f"{rate:.2f} examples/s, {left:.0f} s left" if left != float("inf") else "")

    def progress(r) -> None:
        verdict = "ok" if r.passed else f"FAIL at {r.failing.describe()}" if r.failing else "FAIL"
        text = f"{r.case}: {r.examples} examples, {verdict}"
        if bar is not None and bar.tty:
            bar.update(0, text)
        else:
            print(text, file=sys.stderr, flush=True)

    executor = adapter = None
    try:
        # local workers start, and load the adapter, while this process loads its own
        warm = None if (args.scheduler is not None or args.workers < 2) else (
            "refmem.differential.runner", "warm_worker",
            (args.adapter, not args.in_process, 0.0 if args.in_process else float(args.timeout)))
        try:
            executor = Executor(args.workers, args.scheduler, environ={"OMP_NUM_THREADS": os.environ["OMP_NUM_THREADS"]},
                                warmup=warm)
        except (ValueError, ImportError) as exc:
            raise CommandError(f"argument {'--scheduler' if args.scheduler else '--workers'}: {exc}") from None
        adapter = adapter_process.open_adapter(args)
        result = D.differential(adapter, args.case, args.dtype, args.examples, args.seed, args.save_failures,
                                args.batch_invariance, on_case=progress, executor=executor, journal=args.resume,
                                on_example=on_example, tangents=not args.no_tangents)
    except golden.GoldenError as exc:
        raise CommandError(str(exc)) from exc
    finally:
        if bar is not None:
            bar.close()
        if executor is not None:
            executor.close()
        if adapter is not None and hasattr(adapter, "close"):
            adapter.close()
    report = result.report
    meta = {"adapter": args.adapter, "dtype": args.dtype, "cases": args.case or [], "examples": args.examples,
            "seed": args.seed, "batch_invariance": bool(args.batch_invariance),
            "tangents": not args.no_tangents, "differential": result.meta(),
            "workers": result.workers, "scheduler": args.scheduler, "seconds": result.seconds,
            "example_records": [{k: r[k] for k in ("case", "index", "status", "example", "seconds")}
                                for r in result.examples]}
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
    for line in split_lines(result):
        print(line)
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
