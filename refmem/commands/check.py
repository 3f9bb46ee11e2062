"""``refmem check``: run the gradient checks of SPEC §6 over the catalogue.

Cases are checked side by side in ``--workers`` processes (default ``REFMEM_JOBS``, else the
idle CPUs) on the executor of ``refmem verify`` ([`refmem.executor`][refmem.executor]); each case
runs whole in one process, so the records are those of a serial run, in catalogue order.
"""

from __future__ import annotations

import json
import sys
import time
from argparse import ArgumentParser, ArgumentTypeError, Namespace
from typing import Any

HELP = ("run the gradient checks of every catalogue case (SPEC §6): each backward against finite "
        "differences (central, complex step, or directional)")


def module_name(text: str) -> str:
    """An argparse ``type``: a module of the catalogue (read from ``refmem.catalogue.module_names()``)."""
    from ..catalogue import module_names

    names = module_names()
    if text not in names:
        raise ArgumentTypeError(f"unknown module {text!r}; expected one of {', '.join(names)}")
    return text


def add_arguments(p: ArgumentParser) -> None:
    from ..cli import int_at_least

    p.add_argument("--module", action="append", metavar="NAME", type=module_name,
                   help="check only this family of the catalogue (repeatable; read from "
                        "refmem.catalogue.module_names(): an unknown name is refused with the list)")
    p.add_argument("--case", action="append", metavar="TEXT",
                   help="check only cases whose name (<module>/<function>/<variant>) contains TEXT (repeatable; "
                        "a TEXT that matches no case is an error)")
    p.add_argument("--backend", default="numpy", help="numpy | array_api_strict | torch | cupy (default numpy)")
    p.add_argument("--seed", type=int_at_least(0), default=0, help="seed of the inputs and cotangents (default 0)")
    p.add_argument("--method", action="append", choices=["central", "complex", "directional", "hvp"],
                   help="check method (repeatable; default: central and complex); hvp: second order, the "
                        "complex step through the backward against central differences of it, and symmetry")
    p.add_argument("--workers", type=int_at_least(1), default=None, metavar="N",
                   help="check cases side by side in N processes (default: REFMEM_JOBS, else the idle CPUs; "
                        "NumPy and array-api-strict only, other backends run in this process); the records "
                        "do not depend on N")
    p.add_argument("--json", metavar="PATH", help='write {"records": [...]} as JSON to PATH')
    p.add_argument("--quiet", action="store_true", help="print only failures and the summary")


def _fmt(x: float) -> str:
    return "nan" if x != x else f"{x:.1e}"


def check_one(name: str, backend: str, seed: int, methods: list[str]) -> list:
    """The records of case ``name`` (a crashing case is one failed record with its reason): one task of
    ``refmem check``, the same in this process or a worker."""
    from .. import catalogue, gradcheck
    from .. import xp as rx

    case = catalogue.get_case(name)
    try:
        return gradcheck.check_case(case, rx.backend(backend), seed=seed, methods=methods)
    except Exception as exc:  # noqa: BLE001 - a crashing case is a failed case, reported with its reason
        return [gradcheck.Record(name, "*", "error", float("nan"), float("nan"), float("nan"), False, 0.0, backend,
                                 note=f"{type(exc).__name__}: {exc}")]


def _heaviest_first(cases: list) -> list:
    """``cases`` in the order to start them: the largest product of default sizes (a cheap proxy of the
    forward calls the element-wise checks make) first, so that no long case starts last. The records
    are put back in catalogue order."""
    import math

    return sorted(cases, key=lambda c: math.prod(int(v) for v in c.sizes.values()), reverse=True)


def run(args: Namespace) -> int:
    from .. import gradcheck
    from .. import xp as rx
    from ..cli import CommandError
    from ..executor import Executor

    try:
        xp = rx.backend(args.backend)
    except rx.BackendError as exc:
        raise CommandError(f"argument --backend: {exc}") from None
    workers = args.workers if args.workers is not None else gradcheck.default_jobs()
    if rx.backend_name(xp) not in ("numpy", "array_api_strict"):
        workers = 1  # a device backend: one process owns the device
    executor = None
    if workers > 1 and not args.case:
        # the whole catalogue (or modules): the workers start now and import the cases while this
        # process does (a narrower --case may need fewer workers than asked: they start later)
        try:
            executor = Executor(workers, warmup=("refmem.catalogue", "cases", (args.module,)))
        except ValueError as exc:
            raise CommandError(f"argument --workers: {exc}") from None
    try:
        return _check(args, workers, executor)
    finally:
        if executor is not None:
            executor.close()


def _check(args: Namespace, workers: int, executor: Any) -> int:
    """The checks of ``run``, on ``executor`` (started by ``run``) or on one of their own."""
    from .. import catalogue, gradcheck
    from ..cli import CommandError, Outputs, Progress, print_table
    from ..executor import Executor, run_all

    chosen = catalogue.cases(args.module)
    if args.case:
        unmatched = [t for t in args.case if not any(t in c.name for c in chosen)]
        if unmatched:
            scope = f" of module {', '.join(args.module)}" if args.module else ""
            raise CommandError(f"argument --case: {', '.join(repr(t) for t in unmatched)} matches no case{scope}; "
                               f"names are <module>/<function>/<variant>, e.g. {chosen[0].name if chosen else '-'}")
        chosen = [c for c in chosen if any(t in c.name for t in args.case)]
    methods = args.method or ["central", "complex"]
    tasks = [(case.name, args.backend, args.seed, methods) for case in _heaviest_first(chosen)]
    bar = Progress(len(chosen), label="check")
    t_start = time.perf_counter()
    own = executor is None
    if own:
        try:
            executor = Executor(min(workers, max(1, len(tasks))))
        except ValueError as exc:
            raise CommandError(f"argument --workers: {exc}") from None
    try:
        done = run_all(executor, check_one, tasks, on_result=lambda i, _: bar.update(1, tasks[i][0]))
    finally:
        if own:
            executor.close()
        bar.close()
    by_case = {t[0]: recs for t, recs in zip(tasks, done)}
    records: list[gradcheck.Record] = [r for case in chosen for r in by_case[case.name]]
    elapsed = time.perf_counter() - t_start

    rows = [r for r in records if not (args.quiet and r.passed)]
    if rows:
        print_table(["case", "tensor", "method", "max_abs", "max_rel", "normwise", "result"],
                    [[r.case, r.tensor, r.method, _fmt(r.max_abs_err), _fmt(r.max_rel_err),
                      _fmt(r.normwise_rel_err), "ok" if r.passed else "FAIL" + (f" ({r.note})" if r.note else "")]
                     for r in rows], right=("max_abs", "max_rel", "normwise"))
    failed = [r for r in records if not r.passed]
    print(f"\n{len(chosen)} cases, {len(records)} checks on backend {args.backend}, seed {args.seed}, "
          f"{elapsed:.1f} s")
    print(f"{len(records) - len(failed)} passed, {len(failed)} failed")
    outputs = Outputs()
    if args.json:
        def write(path: str) -> None:
            with open(path, "w") as fh:
                json.dump({"records": [r.as_json() for r in records]}, fh, indent=1, allow_nan=True)

        outputs.write(args.json, "--json", write)
    if failed:
        print("failing: " + ", ".join(sorted({f"{r.case}:{r.tensor}:{r.method}" for r in failed})), file=sys.stderr)
    outputs.finish()
    return 1 if failed else 0
