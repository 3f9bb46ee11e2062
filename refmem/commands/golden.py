"""``refmem golden``: export, check and verify golden tensors (docs/golden-format.md).

* ``refmem golden export [--dir golden]``: write every catalogue case, the manifest and README.
* ``refmem golden check [--dir golden]``: recompute every case and compare; never writes.
* ``refmem golden verify --adapter package.module:function [--dtype float32|float64]
  [--json PATH] [--junit PATH] [--markdown PATH]``: run your implementation on the golden
  cases it declares, print a table and, per failing case, its first divergence; optionally
  write the report as JSON, JUnit XML (one test case per golden case) and a Markdown summary.
  The adapter runs in a child process (``--timeout S``, default 600; ``--in-process`` to run it in
  refmem's own): one that exits, crashes, hangs or prints fails its case and the run goes on.

``check`` and ``verify`` exit 1 on any failure, naming each failing case and tensor.
"""

from __future__ import annotations

import os
import sys
import time
from argparse import ArgumentParser, Namespace
from pathlib import Path

from . import adapter_process

HELP = "export, check and verify golden tensors for other frameworks (docs/golden-format.md)"


def add_arguments(p: ArgumentParser) -> None:
    from .check import module_name

    sub = p.add_subparsers(dest="action", metavar="ACTION")
    sub.required = True
    e = sub.add_parser("export", help="write golden/<module>/<function>/<variant>.safetensors, manifest.json, README.md")
    e.add_argument("--dir", default="golden",
                   help="output directory (default golden; created if missing, checked writable first)")
    e.add_argument("--allow-float64", action="store_true",
                   help="export float64 references where the platform has no extended (long double) type")
    e.add_argument("--module", action="append", metavar="NAME", type=module_name,
                   help="re-export only this module (repeatable); the other cases of an existing manifest are kept")
    c = sub.add_parser("check", help="recompute every golden case and compare (never writes)")
    c.add_argument("--dir", default=None, help="golden directory (default: the checkout's golden/, else the copy shipped with refmem)")
    c.add_argument("--module", action="append", metavar="NAME", type=module_name,
                   help="check only this module (repeatable)")
    c.add_argument("--verbose", action="store_true", help="print every tensor, not only failures")
    v = sub.add_parser("verify", help="check your implementation against the golden tensors")
    v.add_argument("--adapter", required=True, metavar="MODULE:FUNCTION",
                   help="package.module:function or path/to/file.py:function (see examples/README.md)")
    v.add_argument("--dtype", default="float64", choices=["float32", "float64"],
                   help="dtype the inputs are cast to and whose tolerance applies (default float64)")
    v.add_argument("--dir", default=None, help="golden directory (default: the checkout's golden/, else the copy shipped with refmem)")
    v.add_argument("--case", action="append", metavar="PATTERN",
                   help="only cases matching PATTERN (fnmatch or substring; repeatable)")
    v.add_argument("--quiet", action="store_true", help="print only failures and the summary")
    v.add_argument("--json", metavar="PATH", help="also write the report as JSON")
    v.add_argument("--junit", metavar="PATH", help="also write JUnit XML (one test case per golden case) for CI")
    v.add_argument("--markdown", metavar="PATH", help="also write a Markdown summary (e.g. for a CI job summary)")
    adapter_process.add_arguments(v)


def run(args: Namespace) -> int:
    from .. import golden
    from ..cli import CommandError, Outputs, Progress, check_output_dir

    t0 = time.perf_counter()
    try:
        if args.action == "export":
            from .. import catalogue
            from ..golden.storage import previous_set

            check_output_dir(args.dir, "--dir")
            check_output_dir(os.path.dirname(os.path.abspath(args.dir)), "--dir")  # the set is staged beside it
            try:
                before = previous_set(args.dir)  # refused before the work: a newer or damaged set, foreign files
            except golden.GoldenError as exc:
                raise CommandError(f"argument --dir: {exc}") from None
            cases = catalogue.cases(args.module)
            outputs, manifests = Outputs(), []

            def export(directory: str) -> None:
                bar = Progress(len(cases), label="golden export")
                try:
                    manifests.append(golden.export(directory, cases, on_case=lambda name: bar.update(1, name),
                                                   merge=bool(args.module), allow_float64=args.allow_float64))
                finally:
                    bar.close()

            written = outputs.write(args.dir, "--dir", export, directory=True)
            if manifests and written:
                manifest = manifests[-1]
                print(f"wrote {len(manifest['cases'])} cases to {written}/ in {time.perf_counter() - t0:.1f} s")
                for module in sorted({n.split('/')[0] for n in manifest["cases"]}):
                    names = [n for n in manifest["cases"] if n.split("/")[0] == module]
                    print(f"  {module}: {len(names)} cases")
                gone = sorted(set((before or {}).get("cases", {})) - set(manifest["cases"]))
                if gone:
                    print(f"  removed {len(gone)} cases the catalogue no longer has: {', '.join(gone)}")
            outputs.finish()
            return 0

        if args.action == "check":
            manifest = golden.read_manifest(args.dir)
            total = sum(1 for n in manifest["cases"] if not args.module or n.split("/")[0] in args.module)
            bar = Progress(total, label="golden check")
            try:
                report = golden.check(args.dir, modules=args.module, on_case=lambda name: bar.update(1, name))
            finally:
                bar.close()
            text = report.table(only_failures=not args.verbose)
            if text:
                print(text)
            n_cases = len({r.case for r in report.rows})
            failed = report.failures
            print(f"\ngolden check: {n_cases} cases, {len(report.rows)} tensors compared, "
                  f"{len(failed)} failed, {len(report.problems)} problems, {time.perf_counter() - t0:.1f} s")
            if not report.passed:
                _name_failures(report)
                return 1
            return 0

        if args.action == "verify":
            adapter = adapter_process.open_adapter(args)
            try:
                report = golden.verify(adapter, args.dtype, args.dir, args.case)
            finally:
                if hasattr(adapter, "close"):
                    adapter.close()
            meta = {"adapter": args.adapter, "dtype": args.dtype, "cases": args.case or []}
            title = f"refmem golden verify {args.adapter} ({args.dtype})"
            writers = {"json": lambda: golden.to_json(report, meta), "junit": lambda: golden.to_junit(report, title),
                       "markdown": lambda: golden.to_markdown(report, title)}
            outputs = Outputs()
            for fmt, render in writers.items():
                path = getattr(args, fmt)
                if path is not None:
                    outputs.write_text(path, f"--{fmt}", render())
            text = report.table(only_failures=args.quiet)
            if text:
                print(text)
            n_cases = len(report.cases)
            print(f"\nverify {args.adapter} in {args.dtype}: {n_cases} cases, {len(report.rows)} tensors, "
                  f"{len(report.failures)} failed, {len(report.problems)} problems, {time.perf_counter() - t0:.1f} s")
            if not report.passed:
                _name_failures(report)
            outputs.finish()  # a report that could not be written: exit 2, naming where it went
            return 0 if report.passed else 1
    except golden.GoldenError as exc:
        raise CommandError(str(exc)) from exc
    raise CommandError(f"unknown action {args.action!r}")


def _name_failures(report) -> None:
    failing: dict[str, list[str]] = {}
    for r in report.failures:
        failing.setdefault(r.case, []).append(r.tensor)
    for case, tensors in sorted(failing.items()):
        print(f"FAILED {case}: {', '.join(tensors)}", file=sys.stderr)
        if case in report.divergences:
            print(f"  {report.divergences[case].message}", file=sys.stderr)
    for p in report.problems:
        print(f"FAILED {p}", file=sys.stderr)
