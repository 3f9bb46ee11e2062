"""Interrupt ``refmem golden export`` at every filesystem step of its write phase (tests/test_golden_atomic.py).

Run as ``python tests/golden_interrupts.py WORKDIR [--stride=K] SIGNAL...`` in a fresh interpreter (so that
forking is safe: no framework threads). It builds an old golden set (the primitives at seed 1,
one attention case, a user's file), the set ``refmem golden export --dir D --module primitives``
makes of it, and then, for every step ``n`` of the write phase (every K-th, and the steps around
the directory exchange, with ``--stride=K``) and every signal, copies the old
set to ``D``, forks, and runs that command with the signal sent to itself just before step
``n``. A step is a call of a function that changes the file system (``os.mkdir``, ``os.link``,
``open`` for writing, ``os.fsync``, ``os.rename``, the directory exchange, ``shutil.rmtree``,
...). The reference values are computed once before the forks (the computation is not what is
interrupted). Prints one JSON object: the number of steps and, per run, the signal, the step,
what ``D`` holds (``"old"``, ``"new"`` or ``"other"``), the exit, standard error, leftovers.

``python tests/golden_interrupts.py WORKDIR --fill=MOUNT`` does the same on a small file system
mounted at ``MOUNT`` (a tmpfs; the test mounts it in a private mount namespace), leaving less and
less free space before the export instead of sending a signal.
"""

from __future__ import annotations

import builtins
import json
import os
import shutil
import signal
import sys
from pathlib import Path


def snapshot(d: Path) -> dict[str, bytes]:
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


def leftovers(d: Path) -> list[str]:
    """Staging folders beside ``d`` and temporary files inside it."""
    beside = [p.name for p in d.parent.iterdir() if p.name.startswith(f".{d.name}.refmem-")]
    inside = [str(p.relative_to(d)) for p in d.rglob("*") if ".tmp" in p.name or ".refmem-" in p.name]
    return beside + inside


def memoize() -> None:
    """Compute each case's references and float32 runs once (before any fork)."""
    from refmem.golden import exporter

    cache: dict = {}

    def cached(name, fn):
        def wrapper(case, *args, **kw):
            key = (name, case.name, args[:1] if name == "reference" else ())  # one seed per case
            if key not in cache:
                cache[key] = fn(case, *args, **kw)
            return cache[key]
        return wrapper

    exporter.reference = cached("reference", exporter.reference)
    exporter.tolerances = cached("tolerances", exporter.tolerances)  # the one float32 measurement


class Steps:
    """Counts the file-system changes of the write phase and sends ``sig`` before step ``at``."""

    MUTATING_OS = ("mkdir", "rmdir", "link", "symlink", "rename", "replace", "chmod", "fsync", "unlink", "open")

    def __init__(self, at: int = 0, sig: int = 0):
        self.at, self.sig, self.n, self.active, self.labels = at, sig, 0, False, []

    def step(self, what: str) -> None:
        if not self.active:
            return
        self.n += 1
        self.labels.append(what)
        if self.n == self.at:
            os.kill(os.getpid(), self.sig)
            _tick()  # a Python call: a pending SIGINT is raised here, before the step

    def install(self) -> None:
        from refmem.golden import exporter, storage

        def wrap(owner, name, label=None, when=None):
            real = getattr(owner, name)

            def wrapper(*a, **k):
                if when is None or when(*a, **k):
                    self.step(label or name)
                return real(*a, **k)
            setattr(owner, name, wrapper)

        for name in self.MUTATING_OS:
            wrap(os, name, f"os.{name}",
                 when=(lambda *a, **k: bool((a[1] if len(a) > 1 else k.get("flags", 0)) & (os.O_WRONLY | os.O_CREAT)))
                 if name == "open" else None)
        wrap(builtins, "open", "open", when=lambda *a, **k: any(c in str(a[1] if len(a) > 1 else k.get("mode", "r"))
                                                                 for c in "wxa+"))
        for name in ("rmtree", "copy2", "copystat"):
            wrap(shutil, name, f"shutil.{name}")
        wrap(storage, "_exchange", "renameat2(RENAME_EXCHANGE)")
        real_write_set = exporter.write_set

        def write_set(*a, **k):
            self.active = True
            try:
                return real_write_set(*a, **k)
            finally:
                self.active = False
        exporter.write_set = write_set


def _tick() -> None:
    pass


def run_export(d: Path, steps: Steps, err_path: Path) -> tuple[int, int]:
    """Fork; the child runs the command with ``steps`` installed. Returns ``(exit status or -1, signal or 0)``."""
    from refmem import cli

    pid = os.fork()
    if pid == 0:  # the child
        code = 3
        try:
            fd = os.open(err_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.dup2(fd, 2)
            os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
            sys.stderr = open(2, "w", closefd=False)
            sys.stdout = open(1, "w", closefd=False)
            steps.install()
            code = cli.main(["golden", "export", "--dir", str(d), "--module", "primitives"])
            if steps.at == 0:
                Path(str(err_path) + ".steps").write_text(json.dumps(steps.labels))
        except BaseException as exc:  # noqa: BLE001 - what escaped main
            try:
                sys.stderr.write(f"ESCAPED {type(exc).__name__}: {exc}\n")
                sys.stderr.flush()
            except BaseException:  # noqa: BLE001
                pass
        finally:
            for stream in (sys.stdout, sys.stderr):
                try:
                    stream.flush()
                except BaseException:  # noqa: BLE001
                    pass
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        return -1, os.WTERMSIG(status)
    return os.WEXITSTATUS(status), 0


def main(work: Path, signals: list[str], stride: int = 1) -> dict:
    from refmem import catalogue, golden

    memoize()
    os.fsync = lambda fd: None  # durability against power loss is not what is tested here, and it is slow
    work.mkdir(parents=True, exist_ok=True)
    old = work / "old"
    golden.export(old, catalogue.cases(["primitives"]), seed=1)
    golden.export(old, [catalogue.cases(["attention"])[0]], merge=True)
    (old / "notes.txt").write_text("a user's file beside the set\n")
    old_snap = snapshot(old)
    expect = work / "expect"
    shutil.copytree(old, expect)
    rc, _ = run_export(expect, Steps(), work / "count.err")
    assert rc == 0, (work / "count.err").read_text()
    new_snap = snapshot(expect)
    labels = json.loads(Path(str(work / "count.err") + ".steps").read_text())
    total = len(labels)
    assert new_snap != old_snap and total > 0
    swap = labels.index("renameat2(RENAME_EXCHANGE)") + 1
    chosen = sorted(set(range(1, total + 1, stride)) | {swap - 1, swap, swap + 1, total})
    runs = []
    d = work / "golden"
    for name in signals:
        sig = getattr(signal, name)
        for at in chosen:
            if d.exists():
                shutil.rmtree(d)
            for p in work.iterdir():
                if p.name.startswith(".golden.refmem-"):
                    shutil.rmtree(p)
            shutil.copytree(old, d)
            steps = Steps(at, sig)
            err = work / "run.err"
            rc, killed = run_export(d, steps, err)
            snap = snapshot(d)
            runs.append({"signal": name, "step": at, "what": labels[at - 1], "holds": "old" if snap == old_snap else
                         "new" if snap == new_snap else "other", "exit": rc, "killed_by": killed,
                         "stderr": err.read_text(), "leftovers": leftovers(d),
                         "old_intact_or_new_checks": _integrity(d)})
    # a later export removes the staging folder a SIGKILL left beside the set
    for p in work.iterdir():
        if p.name.startswith(".golden.refmem-"):
            shutil.rmtree(p)
    stale = work / f".golden.refmem-stage-{2**22 + 12345}-x"  # no such process
    stale.mkdir()
    rc, _ = run_export(d, Steps(), work / "clean.err")
    return {"steps": total, "exchange": swap, "runs": runs, "stale_removed": not stale.exists() and rc == 0,
            "files": len(new_snap)}


def fill(work: Path, mount: Path) -> dict:
    """On the small file system mounted at ``mount``: the old set, then a file that leaves ``k``
    bytes free, then the export, for ``k`` from nothing to more than the new set needs."""
    from refmem import catalogue, golden

    memoize()
    work.mkdir(parents=True, exist_ok=True)
    old = work / "old"
    golden.export(old, catalogue.cases(["primitives"]), seed=1)
    golden.export(old, [catalogue.cases(["attention"])[0]], merge=True)
    old_snap = snapshot(old)
    expect = work / "expect"
    shutil.copytree(old, expect)
    rc, _ = run_export(expect, Steps(), work / "expect.err")
    assert rc == 0, (work / "expect.err").read_text()
    new_snap = snapshot(expect)
    need = sum(len(v) for v in new_snap.values())
    d, filler = mount / "golden", mount / "filler"
    runs = []
    for k in sorted({0, 4096, need // 8, need // 4, need // 2, 3 * need // 4, need, 2 * need, 4 * need}):
        for p in (d, filler):
            if p.is_dir():
                shutil.rmtree(p)
            elif p.exists():
                p.unlink()
        shutil.copytree(old, d)
        st = os.statvfs(mount)
        with open(filler, "wb") as fh:
            left = max(st.f_bavail * st.f_frsize - k, 0)
            block = b"\0" * (1 << 16)
            try:
                while left > 0:
                    left -= fh.write(block[:min(left, len(block))])
            except OSError:
                pass
        err = work / "fill.err"
        rc, killed = run_export(d, Steps(), err)
        snap = snapshot(d)
        lines = err.read_text().strip().splitlines()
        last = lines[-1] if lines else ""
        fallback = last.rsplit("saved to ", 1)[1].split(" instead")[0] if "saved to " in last else ""
        runs.append({"free": k, "exit": rc, "holds": "old" if snap == old_snap else "new" if snap == new_snap else
                     "other", "error": last if ": error: " in last else "", "leftovers": leftovers(d),
                     "fallback_complete": bool(fallback) and snapshot(Path(fallback)).keys() >= {
                         k for k in new_snap if k.startswith("primitives/")}})
        if fallback:
            shutil.rmtree(fallback)
    return {"need": need, "runs": runs}


def _integrity(d: Path) -> str:
    """``""`` when every case of ``d`` loads (sha256, manifest), else the first problem."""
    from refmem import golden

    try:
        manifest = golden.read_manifest(d)
        for name in manifest["cases"]:
            golden.load(name, d, manifest)
    except Exception as exc:  # noqa: BLE001
        return f"{type(exc).__name__}: {exc}"
    return ""


if __name__ == "__main__":
    args = sys.argv[2:]
    if args and args[0].startswith("--fill="):
        print(json.dumps(fill(Path(sys.argv[1]), Path(args[0][len("--fill="):]))))
        sys.exit(0)
    stride = int(args.pop(0)[len("--stride="):]) if args and args[0].startswith("--stride=") else 1
    print(json.dumps(main(Path(sys.argv[1]), args, stride)))
