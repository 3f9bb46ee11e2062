"""``refmem check``: run the gradient checks of SPEC §6 over the catalogue."""

from __future__ import annotations

import json
import sys
import time
from argparse import ArgumentParser, Namespace

HELP = "run the gradient checks of every catalogue case (SPEC §6)"


def add_arguments(p: ArgumentParser) -> None:
    p.add_argument("--module", action="append", metavar="NAME",
                   help="check only this module (repeatable): primitives, memory_lstm, attention, dnc")
    p.add_argument("--case", action="append", metavar="TEXT",
                   help="check only cases whose name contains TEXT (repeatable)")
    p.add_argument("--backend", default="numpy", help="numpy | array_api_strict | torch | cupy (default numpy)")
    p.add_argument("--seed", type=int, default=0, help="seed of the inputs and cotangents (default 0)")
    p.add_argument("--method", action="append", choices=["central", "complex", "directional"],
                   help="check method (repeatable; default: central and complex)")
    p.add_argument("--json", metavar="PATH", help="write the records as JSON to PATH")
    p.add_argument("--quiet", action="store_true", help="print only failures and the summary")


def _fmt(x: float) -> str:
    return "nan" if x != x else f"{x:.1e}"


def run(args: Namespace) -> int:
    from .. import catalogue, gradcheck
    from .. import xp as rx
    from ..cli import CommandError, Progress

    xp = rx.backend(args.backend)
    chosen = catalogue.cases(args.module)
    if args.case:
        chosen = [c for c in chosen if any(t in c.name for t in args.case)]
        if not chosen:
            raise CommandError(f"no case matches --case {' '.join(args.case)}")
    methods = args.method or ["central", "complex"]
    records: list[gradcheck.Record] = []
    bar = Progress(len(chosen), label="check")
    t_start = time.perf_counter()
    for case in chosen:
        try:
            records.extend(gradcheck.check_case(case, xp, seed=args.seed, methods=methods))
        except Exception as exc:  # a crashing case is a failed case, reported with its reason
            records.append(gradcheck.Record(case.name, "*", "error", float("nan"), float("nan"),
                                            float("nan"), False, 0.0, args.backend,
                                            note=f"{type(exc).__name__}: {exc}"))
        bar.update(1, case.name)
    bar.close()
    elapsed = time.perf_counter() - t_start

    rows = [r for r in records if not (args.quiet and r.passed)]
    if rows:
        w_case = max(len(r.case) for r in rows)
        w_t = max(len(r.tensor) for r in rows)
        header = f"{'case':<{w_case}}  {'tensor':<{w_t}}  {'method':<11} {'max_abs':>8} {'max_rel':>8} {'normwise':>8}  result"
        print(header)
        print("-" * len(header))
        for r in rows:
            verdict = "ok" if r.passed else "FAIL" + (f" ({r.note})" if r.note else "")
            print(f"{r.case:<{w_case}}  {r.tensor:<{w_t}}  {r.method:<11} {_fmt(r.max_abs_err):>8} "
                  f"{_fmt(r.max_rel_err):>8} {_fmt(r.normwise_rel_err):>8}  {verdict}")
    failed = [r for r in records if not r.passed]
    print(f"\n{len(chosen)} cases, {len(records)} checks on backend {args.backend}, seed {args.seed}, "
          f"{elapsed:.1f} s")
    print(f"{len(records) - len(failed)} passed, {len(failed)} failed")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"records": [r.as_json() for r in records]}, fh, indent=1, allow_nan=True)
    if failed:
        print("failing: " + ", ".join(sorted({f"{r.case}:{r.tensor}:{r.method}" for r in failed})), file=sys.stderr)
        return 1
    return 0
