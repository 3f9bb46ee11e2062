"""``refmem bench``: refmem beside torch eager autograd and ``jax.jit(jax.grad(...))``.

The benchmarks live in ``benchmarks/`` at the root of the checkout (not part of
the installed package); this command finds them beside the ``refmem`` package
(``pip install -e .``) and runs ``python -m benchmarks.run`` in a child process
whose BLAS, OpenMP and XLA thread counts are fixed first (``--threads``, default
1: on a shared machine an oversubscribed BLAS or OpenMP pool makes small
matrix products tens of times slower and the figures meaningless). The child
cannot outlive the command (`refmem.cli.run_child`): Ctrl-C ends both.
"""

from __future__ import annotations

import json
import os
import sys
from argparse import ArgumentParser, Namespace
from pathlib import Path

HELP = ("time forward+backward of refmem's models beside torch eager and jax.jit, and the gradient checks "
        "(figures, not tests; needs a source checkout)")

ROOT = Path(__file__).resolve().parents[2]


def _csv(text: str) -> list[str]:
    return [t for t in text.split(",") if t]


def add_arguments(p: ArgumentParser) -> None:
    from ..cli import int_at_least

    p.add_argument("--json", metavar="PATH",
                   help='write {"records", "skipped", "gradcheck", "memory", "meta"} as JSON to PATH')
    p.add_argument("--quick", action="store_true", help="tiny sizes, one repeat: a smoke run")
    try:
        names = ", ".join(b.name for b in _configs().BENCHES)
    except OSError:  # no benchmarks/ beside the package: run() says so
        names = "see benchmarks/configs.py"
    p.add_argument("--only", action="append", metavar="TEXT",
                   help=f"benchmarks whose name contains TEXT (repeatable; each must match one): {names}")
    p.add_argument("--impl", type=_csv, metavar="LIST", help="refmem,torch,jax (default: all three)")
    p.add_argument("--dtype", type=_csv, metavar="LIST", help="float32,float64 (default: both)")
    p.add_argument("--repeats", type=int_at_least(1), metavar="N",
                   help="timed repeats per measurement (default 5; quick 1)")
    p.add_argument("--no-gradcheck", dest="gradcheck", action="store_false",
                   help="skip the gradient-check timings")
    p.add_argument("--memory", action="store_true", help="also measure the peak memory of BPTT (DNC, minutes)")
    p.add_argument("--profile", metavar="NAME",
                   help="print a cProfile of refmem's forward+backward of the benchmarks whose name contains "
                        "NAME, and stop")
    p.add_argument("--threads", type=int_at_least(0), default=1, metavar="N",
                   help="threads for BLAS, torch and XLA (default 1; 0 leaves the libraries' defaults)")


def _environment(threads: int) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    if threads:
        for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            env[var] = str(threads)
        flags = f"--xla_cpu_multi_thread_eigen={'true' if threads > 1 else 'false'} " \
                f"intra_op_parallelism_threads={threads}"
        env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " " + flags).strip()
    return env


def _configs():
    """``benchmarks/configs.py`` of the checkout (plain Python, no NumPy), loaded without importing the rest."""
    import importlib.util

    name = "_refmem_bench_configs"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / "configs.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod  # dataclasses look their module up while the file runs
    try:
        spec.loader.exec_module(mod)
    except BaseException:
        del sys.modules[name]
        raise
    return mod


def run(args: Namespace) -> int:
    from ..cli import CommandError

    if not (ROOT / "benchmarks" / "run.py").exists():
        raise CommandError(f"benchmarks/ not found beside the refmem package (looked in {ROOT}); "
                           "run refmem bench from a source checkout installed with pip install -e .")
    configs = _configs()
    for impl in args.impl or []:
        if impl not in configs.IMPLS:
            raise CommandError(f"argument --impl: unknown implementation {impl!r}; expected {', '.join(configs.IMPLS)}")
    if args.impl is not None and not args.impl:
        raise CommandError(f"argument --impl: expected a list of {', '.join(configs.IMPLS)}, got an empty one")
    for dtype in args.dtype or []:
        if dtype not in configs.DTYPES:
            raise CommandError(f"argument --dtype: unknown dtype {dtype!r}; expected {', '.join(configs.DTYPES)}")
    if args.dtype is not None and not args.dtype:
        raise CommandError(f"argument --dtype: expected a list of {', '.join(configs.DTYPES)}, got an empty one")
    problem = configs.unmatched(args.quick, args.only, "--only") or \
        configs.unmatched(args.quick, [args.profile] if args.profile is not None else None, "--profile")
    if problem:
        raise CommandError(problem)
    opts = {"json": os.path.abspath(args.json) if args.json else None, "quick": args.quick, "only": args.only,
            "impl": args.impl, "dtype": args.dtype, "repeats": args.repeats, "gradcheck": args.gradcheck,
            "memory": args.memory, "profile": args.profile, "threads": args.threads}
    sys.stdout.flush()
    from ..cli import run_child

    return run_child("benchmarks.run", [json.dumps(opts)], env=_environment(args.threads), cwd=str(ROOT))
