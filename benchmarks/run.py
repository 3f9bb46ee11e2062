"""The driver behind ``refmem bench``: time every implementation, print the table, write the JSON.

``python -m benchmarks.run '<options as JSON>'`` runs it in this process;
``refmem bench`` starts it so, in a child process whose BLAS, OpenMP and XLA
thread counts are fixed before NumPy, torch or jax load (``--threads``).
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from typing import Any

from . import configs
from .common import Skip, median_times

DEFAULTS: dict[str, Any] = {
    "json": None, "quick": False, "only": None, "impl": None, "dtype": None, "repeats": None,
    "gradcheck": True, "memory": False, "profile": None, "threads": 1,
}


def _versions() -> dict[str, str]:
    import numpy

    import refmem

    out = {"python": platform.python_version(), "numpy": numpy.__version__, "refmem": refmem.__version__}
    for name in ("torch", "jax"):
        try:
            out[name] = __import__(name).__version__
        except ImportError:
            out[name] = "not installed"
    return out


def _builder(impl: str):
    if impl == "refmem":
        from . import impl_refmem
        return impl_refmem.build
    if impl == "torch":
        try:
            from . import impl_torch
            import torch  # noqa: F401
        except ImportError as exc:
            raise Skip("torch is not installed") from exc
        return impl_torch.build
    if impl == "jax":
        try:
            from . import impl_jax
            import jax  # noqa: F401
        except ImportError as exc:
            raise Skip("jax is not installed") from exc
        return impl_jax.build
    raise ValueError(f"unknown implementation {impl!r}")


def time_all(benches, impls, dtypes, repeats: int, log=print) -> tuple[list[dict], list[dict]]:
    """``(records, skipped)``: the median forward+backward time of every benchmark, implementation and dtype."""
    records, skipped = [], []
    for bench in benches:
        for dtype in dtypes:
            for impl in impls:
                label = f"{bench.name} {impl} {dtype}"
                try:
                    build = _builder(impl)
                    t0 = time.perf_counter()
                    step = build(bench, dtype)
                    step()  # warm-up: jax compiles here
                    first = time.perf_counter() - t0
                    median, times, cpu_median, cpu_times = median_times(step, repeats)
                except Skip as exc:
                    skipped.append({"benchmark": bench.name, "impl": impl, "dtype": dtype, "reason": str(exc)})
                    log(f"  {label}: skipped ({exc})")
                    continue
                backend = {"refmem": "numpy", "torch": "cpu eager", "jax": "cpu jit"}[impl]
                records.append({"benchmark": bench.name, "impl": impl, "backend": backend, "dtype": dtype,
                                "median_s": median, "times_s": times, "cpu_median_s": cpu_median,
                                "cpu_times_s": cpu_times, "first_call_s": first,
                                "batch": bench.batch, "sizes": dict(bench.sizes)})
                log(f"  {label}: {median * 1e3:.1f} ms, CPU {cpu_median * 1e3:.1f} ms (first call {first:.2f} s)")
    return records, skipped


def table(records: list[dict], key: str = "median_s") -> str:
    """The side-by-side table with ratios refmem/torch and refmem/jax (below 1: refmem is faster),
    of the wall-time medians (``key="median_s"``) or of the CPU-time medians (``"cpu_median_s"``)."""
    by = {(r["benchmark"], r["dtype"], r["impl"]): r[key] for r in records}
    rows = sorted({(r["benchmark"], r["dtype"]) for r in records}, key=lambda k: (k[0], k[1]))

    def ms(v):
        return "-" if v is None else f"{v * 1e3:.1f}"

    def ratio(a, b):
        return "-" if a is None or b is None else f"{a / b:.2f}"

    head = f"{'benchmark':<20} {'dtype':<8} {'refmem ms':>10} {'torch ms':>10} {'jax ms':>10} " \
           f"{'refmem/torch':>13} {'refmem/jax':>11}"
    lines = [head, "-" * len(head)]
    for bench, dtype in rows:
        r, t, j = (by.get((bench, dtype, i)) for i in ("refmem", "torch", "jax"))
        lines.append(f"{bench:<20} {dtype:<8} {ms(r):>10} {ms(t):>10} {ms(j):>10} {ratio(r, t):>13} {ratio(r, j):>11}")
    return "\n".join(lines)


def bandwidth_table(records: list[dict], log=print) -> list[dict]:
    """Bytes moved per step of every DNC benchmark refmem was timed on, beside its wall and CPU time
    per step and the time that traffic takes at this machine's copy bandwidth (the memory-bandwidth
    limit); the ratio is taken with the CPU time (the figure that a loaded machine inflates least).

    The bytes are counted on array-api-strict (`benchmarks.profiling.per_step`): each array
    operation reading its operands and writing its result once, views free.
    """
    from . import profiling

    mine = [r for r in records if r["impl"] == "refmem" and r["benchmark"].startswith("dnc/")]
    if not mine:
        return []
    bandwidth = profiling.copy_bandwidth()
    log(f"\nbytes moved per step (each array operation reading its operands and writing its result once, "
        f"counted on array-api-strict) and the time they take at this machine's copy bandwidth, "
        f"{bandwidth / 1e9:.1f} GB/s (NumPy copy of 256 MB, best of 5)")
    head = f"{'benchmark':<20} {'dtype':<8} {'MB/step':>9} {'wall ms/step':>13} {'CPU ms/step':>12} " \
           f"{'GB/s (CPU)':>11} {'bound ms/step':>14} {'CPU/bound':>10}"
    log(head)
    log("-" * len(head))
    out = []
    by_name = {b.name: b for b in configs.BENCHES}
    for r in mine:
        bench = by_name.get(r["benchmark"])
        if bench is None:
            continue
        c = profiling.per_step(bench, r["dtype"])
        moved = c["bytes_read"] + c["bytes_written"]
        T = int(bench.sizes["T"])
        per_step_s = r["median_s"] / T
        bound = moved / bandwidth
        rec = {"benchmark": r["benchmark"], "dtype": r["dtype"], "bytes_per_step": moved,
               "bytes_read_per_step": c["bytes_read"], "bytes_written_per_step": c["bytes_written"],
               "ops_per_step": c["ops"], "seconds_per_step": per_step_s,
               "cpu_seconds_per_step": r["cpu_median_s"] / T, "copy_bandwidth_bytes_per_s": bandwidth,
               "bandwidth_bound_seconds_per_step": bound}
        out.append(rec)
        cpu_s = rec["cpu_seconds_per_step"]
        log(f"{r['benchmark']:<20} {r['dtype']:<8} {moved / 1e6:>9.2f} {per_step_s * 1e3:>13.2f} {cpu_s * 1e3:>12.2f} "
            f"{moved / cpu_s / 1e9:>11.2f} {bound * 1e3:>14.2f} {cpu_s / bound:>10.1f}")
    return out


def _refuse(o: dict[str, Any]) -> str:
    """A one-line error for options ``refmem bench`` would refuse (when run as ``python -m benchmarks.run``)."""
    unknown = sorted(set(o) - set(DEFAULTS))
    if unknown:
        return f"unknown option(s) {', '.join(unknown)}; expected {', '.join(DEFAULTS)}"
    for key, allowed in (("impl", configs.IMPLS), ("dtype", configs.DTYPES)):
        bad = [v for v in o[key] or [] if v not in allowed]
        if bad:
            return f"argument --{key}: unknown {bad[0]!r}; expected {', '.join(allowed)}"
    if o["repeats"] is not None and (not isinstance(o["repeats"], int) or o["repeats"] < 1):
        return f"argument --repeats: expected an integer >= 1, got {o['repeats']!r}"
    return configs.unmatched(bool(o["quick"]), o["only"], "--only") or \
        configs.unmatched(bool(o["quick"]), [o["profile"]] if o["profile"] is not None else None, "--profile")


def _write_json(path: str, out: dict) -> int:
    """Write ``out`` to ``path`` atomically (`refmem.cli.Outputs`); if that fails, to a temporary
    file named on standard error (exit 2)."""
    from refmem.cli import CommandError, Outputs

    outputs = Outputs()
    written = outputs.write_text(path, "--json", json.dumps(out, indent=1))
    try:
        outputs.finish()
    except CommandError as exc:
        print(f"refmem bench: error: {exc}", file=sys.stderr)
        return 2
    print(f"\nwrote {written}")
    return 0


def main(opts: dict[str, Any] | None = None) -> int:
    o = {**DEFAULTS, **(opts or {})}
    problem = _refuse(o)
    if problem:
        print(f"refmem bench: error: {problem}", file=sys.stderr)
        return 2
    quick = bool(o["quick"])
    threads = int(o["threads"] or 0)
    if threads:
        try:
            import torch
            torch.set_num_threads(threads)
        except ImportError:
            pass
    benches = configs.select(quick, o["only"])
    impls = o["impl"] or list(configs.IMPLS)
    dtypes = o["dtype"] or list(configs.DTYPES)
    repeats = int(o["repeats"] or (1 if quick else 5))
    meta = {"versions": _versions(), "threads": threads or "library default", "cpus": os.cpu_count(),
            "machine": platform.machine(), "quick": quick, "repeats": repeats,
            "load_average_at_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
            "unit": "median_s: seconds of one forward+backward over a batch of B sequences of length T"}
    print(f"refmem bench: {', '.join(f'{k} {v}' for k, v in meta['versions'].items())}; "
          f"threads {meta['threads']}, {repeats} timed repeats each")
    if o["profile"]:
        from .profiling import profile, report
        for bench in configs.select(quick, [o["profile"]]):
            print(f"\nprofile of {bench.name} (float64), one forward+backward:")
            print(profile(bench))
            print(report(bench))
        return 0

    records, skipped = time_all(benches, impls, dtypes, repeats)
    print("\nforward+backward per batch (median of repeats); ratios below 1 mean refmem is faster")
    print(table(records))
    print("\nthe same, process CPU time (every thread; on a loaded machine the figure to compare)")
    print(table(records, "cpu_median_s"))
    traffic = bandwidth_table(records, log=print) if not quick else []

    checks: list[dict] = []
    if o["gradcheck"]:
        from . import gradcheck_bench
        print("\nfull element-wise gradient checks (central + complex step) beside torch.autograd.gradcheck")
        modules = ["memory_lstm"] if quick else None
        checks = gradcheck_bench.run(modules, loop=not quick, log=print)
        meta["load_average_after_timings"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
        for c in checks:
            print(f"  {c['module']:<12} {c['impl']:<7} {c['what']:<70} {c['seconds']:8.2f} s  "
                  f"{c['elements']:6d} elements  {'passed' if c['passed'] else 'FAILED'}")
    memory: list[dict] = []
    if o["memory"]:
        from . import memory as mem
        print("\npeak memory of BPTT, DNC core (large config)")
        memory = mem.study(quick=quick)
    if o["json"]:
        out = {"records": records, "traffic": traffic,
               "skipped": skipped, "gradcheck": checks, "memory": memory, "meta": meta}
        return _write_json(o["json"], out)
    return 0


if __name__ == "__main__":
    sys.exit(main(json.loads(sys.argv[1]) if len(sys.argv) > 1 else None))
