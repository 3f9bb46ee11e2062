"""Measure the mutant table of docs/differential-testing.md (run by hand, not collected by pytest):

    python tests/differential_table.py [--examples 100] [--dtype float64]

For each mutant of tests/differential_mutants.py: does ``refmem golden verify`` catch it (both
dtypes), does ``refmem verify --examples N`` (in the dtype where the bug shows), and at which
shrunk sizes. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from refmem import differential as D  # noqa: E402
from refmem import golden  # noqa: E402

import differential_mutants as M  # noqa: E402

#: The dtype each mutant is searched in (the float32-only bugs in float32).
DTYPE = {"f32_overflow": "float32", "global_max": "float32"}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--examples", type=int, default=100)
    ap.add_argument("--only", action="append")
    args = ap.parse_args()
    rows = ["| mutant | bug | shows at | goldens (float64 / float32) | `refmem verify --examples "
            f"{args.examples}` | shrunk failing example | reproducer fails again | time |",
            "|---|---|---|---|---|---|---|---|"]
    for name, (example, cases, _, _, what, when) in M.MUTANTS.items():
        if args.only and name not in args.only:
            continue
        adapter = golden.load_adapter(f"tests/differential_mutants.py:{name}")
        gold = ["caught" if not golden.verify(adapter, d).passed else "passes" for d in ("float64", "float32")]
        dtype = DTYPE.get(name, "float64")
        t0 = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            res = D.differential(adapter, None, dtype, args.examples, 0, tmp)
            dt = time.perf_counter() - t0
            failed = [r for r in res.cases if not r.passed]
            if failed:
                r = failed[0]
                found = f"caught ({dtype}, {r.case})"
                shrunk = r.failing.describe() if r.failing else "; ".join(r.report.problems)[:80]
                if r.triggers:
                    shrunk += "; needs " + ", ".join(r.triggers)
                again = "yes" if r.reproducer and not golden.verify(adapter, dtype, tmp, [r.case]).passed else "no"
            else:
                found, shrunk, again = f"missed ({dtype})", "", ""
        rows.append(f"| `{name}` | {what} | {when} | {gold[0]} / {gold[1]} | {found} | {shrunk} | {again} | "
                    f"{dt:.0f} s |")
        print(rows[-1], file=sys.stderr, flush=True)
    print("\n".join(rows))


if __name__ == "__main__":
    main()
