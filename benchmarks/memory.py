"""Peak memory of refmem's BPTT (forward with caches, then backward) for the DNC core.

Each measurement runs in a fresh Python process so that peaks do not mix:
``tracemalloc`` counts every array NumPy allocates (its peak is the memory the
model itself needs), and ``ru_maxrss`` is the process's resident peak
(interpreter, libraries and allocator slack included). ``estimate`` fits the
per-step growth from short runs, so a long run is started only when it fits
in the memory this machine has free.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

from .common import ROOT
from .configs import BENCHES

LARGE = dict(next(b for b in BENCHES if b.name == "dnc/large").sizes)

_CHILD = """
import json, resource, sys, time, tracemalloc
from benchmarks.configs import Bench
from benchmarks import impl_refmem
sizes, dtype, trace = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3] == "1"
every = json.loads(sys.argv[4])
step = impl_refmem.build(Bench("dnc/memory", "dnc", sizes), dtype, checkpoint_every=every)
if trace:
    tracemalloc.start()
t0 = time.perf_counter()
step()
seconds = time.perf_counter() - t0
peak = tracemalloc.get_traced_memory()[1] if trace else None
print(json.dumps({"traced_peak_bytes": peak, "maxrss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                  "seconds": seconds}))
"""


def measure(sizes: dict, dtype: str = "float64", trace: bool = True, timeout: float = 1800,
            checkpoint_every: int | None = None) -> dict[str, Any]:
    """Peak memory of one forward+backward of the DNC core at ``sizes``, in a child process
    (``checkpoint_every``: checkpointed BPTT, see ``refmem.dnc.core.unroll_forward``)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env.setdefault(var, "1")
    out = subprocess.run([sys.executable, "-c", _CHILD, json.dumps(sizes), dtype, "1" if trace else "0",
                          json.dumps(checkpoint_every)],
                         capture_output=True, text=True, env=env, timeout=timeout, cwd=str(ROOT))
    if out.returncode != 0:
        raise RuntimeError(f"memory child failed: {out.stderr.strip()[-400:]}")
    rec = json.loads(out.stdout.strip().splitlines()[-1])
    rec.update({"sizes": sizes, "dtype": dtype, "checkpoint_every": checkpoint_every})
    return rec


def available_bytes() -> int | None:
    """``MemAvailable`` of /proc/meminfo (``None`` where there is none)."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def per_step(sizes: dict, dtype: str, T: tuple[int, int] = (4, 8)) -> tuple[float, float]:
    """``(fixed, per_step)`` bytes of the traced peak, fitted from two short runs."""
    a = measure({**sizes, "T": T[0]}, dtype)["traced_peak_bytes"]
    b = measure({**sizes, "T": T[1]}, dtype)["traced_peak_bytes"]
    slope = (b - a) / (T[1] - T[0])
    return a - slope * T[0], slope


def study(log=print, T_long: int = 1000, quick: bool = False) -> list[dict[str, Any]]:
    """Growth with ``T`` and ``N`` at the large DNC config, then one run at ``T_long`` where it fits."""
    records: list[dict[str, Any]] = []
    base = {**LARGE, "B": 2, "N": 8, "W": 4, "H": 8, "T": 3} if quick else dict(LARGE)
    dtypes = ("float64",) if quick else ("float64", "float32")
    for dtype in dtypes:
        for T in ((2, 4) if quick else (10, 25, 50, 100)):
            rec = measure({**base, "T": T}, dtype)
            records.append(rec)
            log(f"  memory dnc B={base['B']} N={base['N']} T={T} {dtype}: traced peak "
                f"{rec['traced_peak_bytes'] / 2**20:.1f} MiB, max RSS {rec['maxrss_bytes'] / 2**20:.1f} MiB")
    for N in ((4, 8) if quick else (32, 64, 128, 256)):
        fixed, slope = per_step({**base, "N": N}, "float64")
        records.append({"sizes": {**base, "N": N}, "dtype": "float64", "fixed_bytes": fixed,
                        "per_step_bytes": slope})
        log(f"  memory dnc N={N}: {slope / 2**20:.2f} MiB per time step, {fixed / 2**20:.1f} MiB fixed (float64)")
    if quick:
        return records
    for dtype in ("float32", "float64"):
        fixed, slope = per_step(base, dtype)
        need = fixed + slope * T_long
        free = available_bytes()
        if free is not None and need * 1.5 > free:
            log(f"  memory dnc T={T_long} {dtype}: skipped, needs about {need / 2**30:.1f} GiB, "
                f"{free / 2**30:.1f} GiB available")
            records.append({"sizes": {**base, "T": T_long}, "dtype": dtype, "estimated_bytes": need,
                            "skipped": "not enough free memory"})
            continue
        rec = measure({**base, "T": T_long}, dtype, trace=False)
        rec["estimated_bytes"] = need
        records.append(rec)
        log(f"  memory dnc T={T_long} {dtype}: max RSS {rec['maxrss_bytes'] / 2**30:.2f} GiB "
            f"(fit from short runs: {need / 2**30:.2f} GiB), {rec['seconds']:.0f} s")
    return records


def checkpoint_curve(T: int = 1000, ks: tuple = (1, 10, 32, 100), dtype: str = "float64", trace: bool = False,
                     log=print) -> list[dict[str, Any]]:
    """Peak memory and time of BPTT at the large DNC config against ``checkpoint_every`` (``k = 1``:
    every step's cache kept), one fresh process each."""
    records = []
    for k in ks:
        rec = measure({**LARGE, "T": T}, dtype, trace=trace, checkpoint_every=int(k))
        records.append(rec)
        traced = "" if rec["traced_peak_bytes"] is None else f", traced peak {rec['traced_peak_bytes'] / 2**30:.3f} GiB"
        log(f"  memory dnc large T={T} {dtype} checkpoint_every={k}: max RSS "
            f"{rec['maxrss_bytes'] / 2**30:.3f} GiB{traced}, {rec['seconds']:.1f} s")
    return records


def main(argv: list[str] | None = None) -> int:
    """``python -m benchmarks.memory --T 1000 --k 1,10,32,100 [--dtype float64] [--trace] [--json PATH]``:
    the checkpointing curve of ``checkpoint_curve``."""
    import argparse

    p = argparse.ArgumentParser(prog="python -m benchmarks.memory", description=main.__doc__)
    p.add_argument("--T", type=int, default=1000)
    p.add_argument("--k", default="1,10,32,100", help="comma-separated checkpoint_every values")
    p.add_argument("--dtype", default="float64", choices=("float32", "float64"))
    p.add_argument("--trace", action="store_true", help="also tracemalloc's peak (slower)")
    p.add_argument("--json", help="write the records as JSON to this path")
    a = p.parse_args(argv)
    recs = checkpoint_curve(a.T, tuple(int(k) for k in a.k.split(",")), a.dtype, a.trace)
    if a.json:
        with open(a.json, "w") as fh:
            json.dump(recs, fh, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
