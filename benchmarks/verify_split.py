"""Where a differential example's time goes, and what the float32 measurement costs (docs/performance.md).

    python -m benchmarks.verify_split split ADAPTER DTYPE N CASE   # run_case over the matching cases:
                                                                  # CPU time per example by part
    python -m benchmarks.verify_split tolerances                  # every tolerance of every case, measured again

Both print one JSON line. They work on refmem 0.1 as well (the measurement before refmem 0.2:
the export's emulated runs plus the one-ulp-perturbed native runs; one native complex64 run for
``jvp/`` and ``hvp/``), so a checkout of an older commit gives the "before" column with the same
script. Times are CPU times (``time.process_time``): on a shared machine, wall times mostly
measure the other jobs.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time

PARTS = ("draw", "reference", "tolerances", "adapter", "comparison")


def split(adapter_spec: str, dtype: str, n: str, pattern: str) -> dict:
    """``run_case`` of every case of ``adapter_spec`` matching ``pattern``, ``n`` examples each, in this
    process, with the CPU time of each example split into drawing, reference, tolerances, adapter
    and comparison (the rest, the search's own work, is in ``total``). Works on the single-module
    ``refmem.differential`` of refmem 0.1 (a Hypothesis search) and on the package of refmem 0.2
    (examples by seed and index)."""
    import importlib

    from refmem import differential as D
    from refmem import golden

    clk = time.process_time
    records: list[dict] = []
    state = {"cur": dict.fromkeys(PARTS, 0.0), "depth": 0}

    def timed(fn, part):
        def wrapper(*args, **kwargs):
            if state["depth"]:  # inside another timed part: counted there
                return fn(*args, **kwargs)
            state["depth"] += 1
            t0 = clk()
            try:
                return fn(*args, **kwargs)
            finally:
                state["cur"][part] += clk() - t0
                state["depth"] -= 1
        return wrapper

    def starting(fn):  # every example starts with its live reference (0.1) or run_example (0.2)
        def wrapper(*args, **kwargs):
            state["cur"] = dict.fromkeys(PARTS, 0.0)
            state["cur"]["start"] = clk()
            records.append(state["cur"])
            return fn(*args, **kwargs)
        return wrapper

    def patch(module, name, part):
        if hasattr(module, name):
            setattr(module, name, timed(getattr(module, name), part))

    if hasattr(D, "runner"):  # refmem 0.2: patch where the names are looked up
        mods = {m: importlib.import_module(f"refmem.differential.{m}") for m in ("runner", "reference", "comparison")}
        mods["runner"].run_example = starting(mods["runner"].run_example)
        patch(mods["reference"], "draw_inputs", "draw")
        patch(mods["reference"], "_reference", "reference")
        patch(mods["reference"], "manifest_entry", "tolerances")
        patch(mods["comparison"], "_call", "adapter")
        patch(mods["comparison"], "compare", "comparison")
        from refmem.golden import tolerances as T

        T.Measurement.measure = timed(T.Measurement.measure, "tolerances")
        T.Measurement.tolerances = timed(T.Measurement.tolerances, "tolerances")
    else:  # refmem 0.1
        D.live_golden = starting(D.live_golden)
        patch(D, "draw_inputs", "draw")
        patch(D, "_reference", "reference")
        import refmem.golden.exporter as exporter

        patch(exporter, "float32_runs", "tolerances")
        patch(D, "_float32_measurement", "tolerances")
        patch(D, "manifest_entry", "tolerances")
        patch(D, "compare", "comparison")
        patch(D, "_call", "adapter")
    adapter = golden.load_adapter(adapter_spec)
    cases = D.select_cases(adapter, [pattern])
    wall0, cpu0 = time.perf_counter(), clk()
    examples = 0
    for case in cases:
        result = D.run_case(adapter, case, dtype, int(n), seed=0)
        examples += result.examples
        if not result.passed:
            raise SystemExit(f"{case.name} failed: {result.report.problems}")
    wall, cpu = time.perf_counter() - wall0, clk() - cpu0
    for a, b in zip(records, records[1:] + [None]):
        a["total"] = (b["start"] if b else cpu0 + cpu) - a["start"]
    share = [sum(r[p] for p in PARTS if p != "adapter") for r in records]
    ms = lambda f, key: round(1e3 * f(r[key] for r in records), 2)  # noqa: E731
    return {
        "adapter": adapter_spec, "dtype": dtype, "cases": [c.name for c in cases], "examples": examples,
        "cpu_s": round(cpu, 2), "wall_s": round(wall, 2), "examples_per_cpu_s": round(examples / cpu, 1),
        "load": [round(x, 2) for x in os.getloadavg()],
        "median_ms": {k: ms(statistics.median, k) for k in PARTS + ("total",)},
        "mean_ms": {k: ms(statistics.fmean, k) for k in PARTS + ("total",)},
        "refmem_share_median_ms": round(1e3 * statistics.median(share), 2),
        "refmem_share_mean_ms": round(1e3 * statistics.fmean(share), 2),
    }


def tolerances() -> dict:
    """Every tolerance of every catalogue case measured again from the committed golden tensors
    (what ``refmem golden check`` recomputes)."""
    from refmem import catalogue, golden

    cpu0, wall0 = time.process_time(), time.perf_counter()
    count = 0
    for case in catalogue.cases():
        t = golden.load(case.name).tensors
        try:
            from refmem.golden.tolerances import tolerances as measure
        except ImportError:  # refmem 0.1
            from refmem import emulated32
            from refmem.golden import forward_mode
            from refmem.golden.tolerances import tolerance

            runs = dict(emulated32.float32_runs(case, t))
            runs.update(forward_mode.float32_tensors(case, t))
            tol = {k: tolerance(t[k], v) for k, v in runs.items()}
        else:
            tol = measure(case, t)
        count += len(tol)
    return {"tolerances": count, "cpu_s": round(time.process_time() - cpu0, 2),
            "wall_s": round(time.perf_counter() - wall0, 2), "load": [round(x, 2) for x in os.getloadavg()]}


def main(argv: list[str]) -> int:
    if argv[:1] == ["split"] and len(argv) == 5:
        print(json.dumps(split(*argv[1:])))
        return 0
    if argv == ["tolerances"]:
        print(json.dumps(tolerances()))
        return 0
    raise SystemExit(__doc__)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
