"""Measurements behind issue 11 items 4 and 5 (exact references, portable float32 tolerances).

    python -m benchmarks.golden_exactness ulps [DIR]    # stored values vs the long double evaluation
    python -m benchmarks.golden_exactness coretypes     # export under several OPENBLAS_CORETYPE values
    python -m benchmarks.golden_exactness ratios DIR    # worst verify ratio of each example, per dtype
    python -m benchmarks.golden_exactness kappas        # emulated κ against real float32 runs and examples

The export computes references with ``refmem.extended.golden_tensors`` (long double, rounded
once) and tolerances from the emulated float32 runs of ``refmem.golden.tolerances`` (docs/golden-tolerances.md).
"""

from __future__ import annotations

import collections
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

CORETYPES = ("Haswell", "SkylakeX", "Sandybridge", "Zen", "Nehalem", "Prescott")
#: NumPy's own SIMD dispatch limited to its x86-64-v2 baseline (no AVX2/AVX-512 loops), with Haswell BLAS.
NO_SIMD = {"OPENBLAS_CORETYPE": "Haswell", "NPY_DISABLE_CPU_FEATURES": "X86_V3 X86_V4 AVX512_ICL AVX512_SPR"}
EXAMPLES = ("torch_dnc", "torch_attention", "torch_luong", "torch_memory_lstm", "jax_dnc")


def export(directory: str) -> dict:
    from refmem import golden

    return golden.export(directory)


def digest() -> dict:
    """Export into a temporary directory; the BLAS core in use and the sha256 of every file."""
    import numpy  # noqa: F401 - load the BLAS before asking which core it runs
    import threadpoolctl

    from numpy._core._multiarray_umath import __cpu_dispatch__, __cpu_features__

    blas = [(i.get("internal_api"), i.get("architecture")) for i in threadpoolctl.threadpool_info()]
    blas.append(("numpy simd", [k for k in __cpu_dispatch__ if __cpu_features__.get(k)]))
    with tempfile.TemporaryDirectory() as tmp:
        export(tmp)
        files = {str(p.relative_to(tmp)): hashlib.sha256(p.read_bytes()).hexdigest()
                 for p in sorted(Path(tmp).rglob("*")) if p.is_file()}
    return {"blas": blas, "files": files}


def coretypes() -> int:
    results = {}
    configs = [(core, {"OPENBLAS_CORETYPE": core}) for core in CORETYPES] + [("Haswell, NumPy SIMD baseline", NO_SIMD)]
    for core, extra in configs:
        env = dict(os.environ, **extra)
        out = subprocess.run([sys.executable, "-m", "benchmarks.golden_exactness", "_digest"],
                             env=env, capture_output=True, text=True, check=True)
        results[core] = json.loads(out.stdout.strip().splitlines()[-1])
    base = results[CORETYPES[0]]["files"]
    for core, r in results.items():
        changed = sorted(k for k in base if r["files"].get(k) != base[k])
        whole = hashlib.sha256(json.dumps(r["files"], sort_keys=True).encode()).hexdigest()[:16]
        print(f"{core:28s} blas {r['blas']}  all files {whole}  "
              f"differ from {CORETYPES[0]}: {len(changed)} of {len(base)}")
    return 0 if all(r["files"] == base for r in results.values()) else 1


def ulps(directory: str = "golden") -> int:
    """Per case: worst |stored - long double| in float64 ulps of the tensor's scale and element-wise."""
    import numpy as np

    from refmem import catalogue, extended, golden

    eps = float(np.finfo(np.float64).eps)
    ld = np.longdouble
    worst: dict[str, list] = collections.defaultdict(lambda: [0.0, 0.0, ""])
    for case in catalogue.cases():
        t = golden.load(case.name, directory).tensors
        arrays = {k: v for k, v in t.items() if k.split("/")[0] in catalogue.ROLES}
        cot = {k[len("cotangents/"):]: v for k, v in t.items() if k.startswith("cotangents/")}
        exact = extended.reference(case, arrays, cot, round=False)
        line = [0.0, 0.0]
        for k, r in exact.items():
            if k not in t:
                continue
            a = t[k].astype(ld)
            s = np.max(np.abs(r)) if r.size else ld(0)
            s = s if s > 0 else ld(1)
            by_scale = float(np.max(np.abs(a - r)) / (ld(eps) * s)) if r.size else 0.0
            spacing = np.spacing(np.abs(r.astype(np.float64))).astype(ld)
            by_elem = float(np.max(np.abs(a - r) / spacing)) if r.size else 0.0
            role = k.split("/")[0]
            if by_scale > worst[role][0]:
                worst[role][0], worst[role][2] = by_scale, f"{case.name} {k}"
            worst[role][1] = max(worst[role][1], by_elem)
            line = [max(line[0], by_scale), max(line[1], by_elem)]
        print(f"{case.name:45s} ulps of scale {line[0]:8.3f}   element-wise ulps {line[1]:10.3f}")
    for role, (s, e, where) in sorted(worst.items()):
        print(f"worst {role}: {s:.3f} ulps of scale ({where}); {e:.3f} ulps element-wise")
    return 0


def ratios(directory: str) -> int:
    from refmem import golden

    ok = True
    for ex in EXAMPLES:
        for dtype in ("float32", "float64"):
            rep = golden.verify(f"examples.{ex}:run", dtype, directory)
            per_case: dict[str, float] = collections.defaultdict(float)
            for r in rep.rows:
                per_case[r.case] = max(per_case[r.case], r.ratio)
            w = max(rep.rows, key=lambda r: r.ratio)
            ok = ok and rep.passed and (dtype != "float32" or max(per_case.values()) <= 0.25)
            print(f"{ex:18s} {dtype}: {len(per_case)} cases, passed {rep.passed}, worst ratio {w.ratio:.3f} "
                  f"({w.case} {w.tensor})")
    return 0 if ok else 1


def _real_kappas() -> dict:
    """κ of refmem's real float32 run on this machine (BLAS and SIMD as they are), per tensor."""
    from refmem import catalogue, extended, golden
    from refmem.golden.tolerances import kappa

    out = {}
    for case in catalogue.cases():
        t = extended.golden_tensors(case, 0)
        f32 = golden.float32_run(case, t)
        for k, v in f32.items():
            out[f"{case.name} {k}"] = kappa(t[k], v)
    return out


def kappas() -> int:
    """How the emulated κ compares with real float32 runs under each BLAS core and with the examples."""
    import numpy as np

    from refmem import catalogue, extended, golden
    from refmem import xp as rx
    from refmem.golden.tolerances import float32_runs, kappa

    emu, refs = {}, {}
    for case in catalogue.cases():
        t = extended.golden_tensors(case, 0)
        refs[case.name] = t
        for k, v in float32_runs(case, t).items():
            if not k.startswith("intermediates/"):
                emu[f"{case.name} {k}"] = kappa(t[k], v)
    configs = [(core, {"OPENBLAS_CORETYPE": core}) for core in CORETYPES] + [("SIMD baseline", NO_SIMD)]
    real: dict[str, float] = collections.defaultdict(float)
    for core, extra in configs:
        proc = subprocess.run([sys.executable, "-m", "benchmarks.golden_exactness", "_real"],
                              env=dict(os.environ, **extra), capture_output=True, text=True, check=True)
        got = json.loads(proc.stdout.strip().splitlines()[-1])
        spread = [got[k] / emu[k] for k in emu]
        print(f"real float32 run, {core:14s}: κ_real/κ_emulated median {np.median(spread):.2f}, max {max(spread):.2f}")
        for k in emu:
            real[k] = max(real[k], got[k])
    spread = np.array([real[k] / emu[k] for k in emu])
    print(f"max over all cores           : κ_real/κ_emulated median {np.median(spread):.2f}, max {spread.max():.2f}"
          f" ({max(emu, key=lambda k: real[k] / emu[k])})")
    for ex in EXAMPLES:
        adapter = golden.load_adapter(f"examples.{ex}:run")
        ratios = []
        for name, t in refs.items():
            if not adapter.implements(name):
                continue
            case = catalogue.get_case(name)
            given = {k: (v.astype(np.float32) if v.dtype.kind == "f" else v) for k, v in t.items()
                     if k.split("/")[0] in catalogue.ROLES + ("cotangents",)}
            res = adapter(name, given, "float32", dict(case.config))
            for k, v in res.items():
                if f"{name} {k}" in emu:
                    ratios.append(kappa(t[k], np.asarray(rx.to_numpy(v), dtype=np.float64)) / emu[f"{name} {k}"])
        print(f"{ex:18s} float32       : κ_example/κ_emulated median {np.median(ratios):.2f}, max {max(ratios):.2f}")
    return 0


def main(argv: list[str]) -> int:
    cmd, rest = argv[0], argv[1:]
    if cmd == "ulps":
        return ulps(*rest)
    if cmd == "coretypes":
        return coretypes(*rest)
    if cmd == "ratios":
        return ratios(*rest)
    if cmd == "kappas":
        return kappas()
    if cmd == "_real":
        print(json.dumps(_real_kappas()))
        return 0
    if cmd == "_digest":
        print(json.dumps(digest()))
        return 0
    raise SystemExit(__doc__)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
