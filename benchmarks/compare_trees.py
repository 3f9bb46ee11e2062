"""refmem's forward+backward of one benchmark in two source trees, timed in alternating processes.

``python -m benchmarks.compare_trees OLD NEW NAME DTYPE REPEATS [ROUNDS]`` runs, ``ROUNDS`` times
(default 3), a child process in ``OLD`` then one in ``NEW`` (each with its own ``PYTHONPATH``,
BLAS and OpenMP at one thread), each timing ``REPEATS`` calls after two warm-up calls, and prints
the medians of the wall and process CPU times of each tree and the ratio NEW/OLD. Alternating
spreads a shared machine's load over both trees, which one run after the other does not.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys

_CHILD = """
import json, time
from benchmarks import impl_refmem
from benchmarks.configs import BENCHES
bench = [b for b in BENCHES if b.name == {name!r}][0]
step = impl_refmem.build(bench, {dtype!r})
step(); step()
wall, cpu = [], []
for _ in range({repeats}):
    t0, c0 = time.perf_counter(), time.process_time()
    step()
    wall.append(time.perf_counter() - t0)
    cpu.append(time.process_time() - c0)
print(json.dumps([wall, cpu]))
"""


def compare(old: str, new: str, name: str, dtype: str, repeats: int, rounds: int = 3) -> dict:
    """``{"old": (wall, cpu), "new": (wall, cpu)}``, the times in seconds of every call."""
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    out: dict = {"old": ([], []), "new": ([], [])}
    code = _CHILD.format(name=name, dtype=dtype, repeats=int(repeats))
    for _ in range(rounds):
        for tag, root in (("old", old), ("new", new)):
            root = os.path.abspath(root)
            done = subprocess.run([sys.executable, "-c", code], cwd=root, env=dict(env, PYTHONPATH=root),
                                  capture_output=True, text=True, check=True)
            wall, cpu = json.loads(done.stdout.strip().splitlines()[-1])
            out[tag][0].extend(wall)
            out[tag][1].extend(cpu)
    return out


def main(argv: list[str]) -> int:
    if len(argv) not in (5, 6):
        print("usage: python -m benchmarks.compare_trees OLD NEW NAME DTYPE REPEATS [ROUNDS]", file=sys.stderr)
        return 2
    old, new, name, dtype, repeats = argv[:5]
    res = compare(old, new, name, dtype, int(repeats), int(argv[5]) if len(argv) == 6 else 3)
    med = {tag: (statistics.median(w), statistics.median(c)) for tag, (w, c) in res.items()}
    for tag in ("old", "new"):
        print(f"{name} {dtype} {tag}: wall median {med[tag][0] * 1e3:.1f} ms, CPU median {med[tag][1] * 1e3:.1f} ms")
    print(f"new/old: wall {med['new'][0] / med['old'][0]:.2f}, CPU {med['new'][1] / med['old'][1]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
