"""Campaigns: the examples of every case, deterministic in (seed, index), on any executor, resumable.

Example ``i`` of a case is a pure function of the campaign's seed, the case and ``i``
([`example_at`][refmem.differential.runner.example_at]): example 0 is the simplest (every
size at its smallest, seed 0, scale 1, no padded row), the others are drawn by a NumPy
generator seeded with ``[seed, crc32(case), i]``. So is its outcome
([`run_example`][refmem.differential.runner.run_example]: a record with its status, its worst
error ratio and where its time went). A case counts the shortest run of examples ``0 .. K-1``
that holds ``max_examples`` valid ones (refused examples, which the case's sampler or the
tolerance rule cannot judge, do not count toward them; at most ``10 max_examples`` are
drawn), or that ends at its first failing example. Which examples count, and the verdict,
therefore do not depend on how many workers ran them, nor in which order they finished:
extra examples a parallel run computed past ``K`` are ignored.

The first failing example is shrunk by Hypothesis ([`shrink`][refmem.differential.search.shrink])
and, with ``save_dir``, saved as a golden reproducer, in this process, as before.

With ``journal`` (``refmem verify --resume DIR``) every finished example is appended to
``DIR/examples.jsonl`` (one JSON line, written in one ``write`` of an ``O_APPEND`` file; a torn
last line, from a kill in the middle of a write, is ignored and cut off) and every finished
case to ``DIR/cases.jsonl``; ``DIR/campaign.json`` holds the campaign's settings. A campaign
stopped at any moment (SIGKILL included) and started again with the same journal runs only
the examples it has no record of: every example is counted once. The options must be the same,
but for ``--examples``: example ``i`` does not depend on the count, so a finished campaign of
100 examples per case grows to 1,000 by running examples 100 onwards (a case's verdict is
recorded with the count it was reached at, and reached again at another).
"""

from __future__ import annotations

import fnmatch
import json
import os
import time
import uuid
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from .. import catalogue
from ..catalogue import Case
from ..golden.adapters import Adapter, load_adapter
from ..golden.comparison import Report
from ..golden.storage import GoldenError
from ..golden.tolerances import DTYPES
from .comparison import batch_invariance, check_example, judge
from .drawing import SCALES, Example, Unsampleable, _mask_key, edge_of, sizes_limits
from .reference import Undecidable, float32_undecidable, live_golden
from .reproducers import save_reproducer
from .search import CaseResult, Result, _worst, shrink, triggers
from .timing import PARTS

__all__ = ["Plan", "WithoutTangents", "example_at", "run_example", "Journal", "campaign", "run_case", "differential", "select_cases"]

#: At most this many examples are drawn per counted example (the rest were refused).
MAX_DRAWS = 10
#: Seeds of the case's sampler are drawn from ``0 .. MAX_SEED``.
MAX_SEED = 2**16


@dataclass(frozen=True)
class Plan:
    """What a campaign is; a journal refuses to resume a different one."""

    adapter: str
    dtype: str
    examples: int
    seed: int
    invariance: bool
    cases: tuple[str, ...]
    tangents: bool = True

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "cases": list(self.cases)}


class WithoutTangents:
    """``adapter`` called without the ``tangents/`` of the tensors it is given (``refmem verify
    --no-tangents``): differential testing does not compare the ``jvp/`` and ``hvp/`` an adapter
    returns, and an adapter that compiles per shape (``jax.jit``) then compiles no forward mode."""

    def __init__(self, adapter: Any):
        self.adapter = adapter

    def __call__(self, case: str, tensors: dict, dtype: str, config: dict) -> Any:
        return self.adapter(case, {k: v for k, v in tensors.items() if not k.startswith("tangents/")}, dtype, config)

    def __getattr__(self, name: str) -> Any:  # spec, patterns, implements, timeout, close
        return getattr(self.adapter, name)


def _given_tangents(adapter: Any, tangents: bool) -> Any:
    return adapter if tangents else WithoutTangents(adapter)


# ----------------------------------------------------------------------------- one example


def example_at(case: Case, seed: int, index: int, min_batch: int = 1) -> Example:
    """Example ``index`` of ``case`` in the campaign of ``seed`` (``B`` at least ``min_batch``).

    Index 0 is the simplest example (what Hypothesis tries first). Otherwise each size letter
    is its smallest value with probability 1/4, else uniform over its range
    ([`sizes_limits`][refmem.differential.sizes_limits]); the seed is uniform; the scale uniform
    over [`SCALES`][refmem.differential.SCALES] where the case has an edge; each batch row of a
    masked case is fully padded with probability 1/2.
    """
    rng = np.random.default_rng([int(seed), zlib.crc32(case.name.encode()), int(index)])
    sizes = {}
    for letter, (low, high) in sizes_limits(case).items():
        if letter == "B":
            low = min(max(low, min_batch), max(high, min_batch))
            high = max(high, low)
        if index == 0 or rng.random() < 0.25:
            sizes[letter] = int(low)
        else:
            sizes[letter] = int(rng.integers(low, high + 1))
    ex_seed = 0 if index == 0 else int(rng.integers(0, MAX_SEED + 1))
    scale = 1
    if edge_of(case) is not None and index != 0:
        scale = int(SCALES[int(rng.integers(0, len(SCALES)))])
    padded: tuple = ()
    if _mask_key(case) is not None and "B" in sizes and index != 0:
        padded = tuple(b for b in range(sizes["B"]) if rng.random() < 0.5)
    return Example(case.name, sizes, ex_seed, scale, padded)


def run_example(adapter: Any, case: Case, dtype: str, seed: int, index: int, invariance: bool = False) -> dict:
    """The outcome of example ``index`` of ``case``: ``{"case", "index", "example", "status", "worst",
    "problem", "seconds"}``, ``status`` one of ``pass``, ``fail``, ``refused`` and ``error`` (refmem itself
    failed), ``worst`` the largest error ratio, ``seconds`` the time split (draw, reference, tolerances,
    adapter, comparison)."""
    timings = {p: 0.0 for p in PARTS}
    example = example_at(case, seed, index, 2 if invariance else 1)
    record = {"case": case.name, "index": int(index), "example": example.to_json(), "status": "pass",
              "worst": 0.0, "problem": "", "seconds": timings}
    try:  # the free lower bound of the tolerances (κ = 1); the measurement runs only for a result beyond it
        live = live_golden(case, example, timings=timings, runs=0)
    except (Unsampleable, Undecidable) as exc:
        record.update(status="refused", problem=str(exc))
        return record
    except Exception as exc:  # noqa: BLE001 - refmem itself failed here: a failure, shrunk later
        record.update(status="error", problem=f"{case.name}: refmem failed at this example: {type(exc).__name__}: {exc}")
        return record
    if dtype == "float32" and float32_undecidable(live):
        record.update(status="refused", problem="float32 near-tie of the usage")
        return record
    try:
        report, live, inv = judge(adapter, case, example, dtype, live, invariance, timings)
    except Undecidable as exc:  # the exact rule cannot judge it: refused, as it always was
        record.update(status="refused", problem=str(exc))
        return record
    except Exception as exc:  # noqa: BLE001 - the measurement failed here
        record.update(status="error", problem=f"{case.name}: refmem failed at this example: {type(exc).__name__}: {exc}")
        return record
    record["worst"] = _worst(report)
    if not report.passed or inv:
        text = report.failure_text(case.name) or "\n".join(inv)
        record.update(status="fail", problem=text.splitlines()[0] if text else "failed")
    return record


_WORKER: dict[str, Any] = {"token": None, "adapter": None, "warm": None}


def _open(spec: str, isolated: bool, timeout: float) -> Any:
    """The adapter ``spec``, in a child process of its own when ``isolated``."""
    if isolated:
        from ..golden.isolated import IsolatedAdapter

        return IsolatedAdapter(spec, timeout)
    return load_adapter(spec)


def _remote_example(token: str, spec: str, isolated: bool, timeout: float, case: str, dtype: str, seed: int,
                    index: int, invariance: bool, tangents: bool = True) -> dict:
    """[`run_example`][refmem.differential.runner.run_example] in a worker process: the adapter is
    loaded (or started, isolated) once per campaign (``token``) and worker, and kept for its examples;
    a long-lived (Dask) worker starts afresh for the next campaign, so an edited adapter is seen.
    An adapter [`warm_worker`][refmem.differential.runner.warm_worker] loaded as the worker started is
    taken by the campaign that asks for the same one."""
    if _WORKER["token"] != token and _WORKER["warm"] == (spec, bool(isolated), float(timeout)):
        _WORKER.update(token=token, warm=None)
    if _WORKER["token"] != token:
        old = _WORKER["adapter"]
        _WORKER.update(token=None, adapter=None, warm=None)
        if old is not None and hasattr(old, "close"):
            old.close()
        _WORKER.update(token=token, adapter=_open(spec, isolated, timeout))
    return run_example(_given_tangents(_WORKER["adapter"], tangents), catalogue.get_case(case), dtype, seed, index,
                       invariance)


def warm_worker(spec: str, isolated: bool, timeout: float) -> None:
    """Load (or start, ``isolated``) adapter ``spec`` in a local worker as it starts, while the process
    that runs the campaign loads its own, so that the worker's first example finds it ready (the
    initializer of `refmem verify --workers`' pool). A failure is left for that example to meet and
    report in its usual words: nothing is raised here."""
    try:
        adapter = _open(spec, isolated, timeout)
    except BaseException:  # noqa: BLE001 - an import error, a hang or an exit: the first example reports it
        return
    _WORKER.update(token=None, adapter=adapter, warm=(spec, bool(isolated), float(timeout)))


# ----------------------------------------------------------------------------- the journal


class Journal:
    """A campaign's records in directory ``root`` (see the module docstring). Raises
    [`GoldenError`][refmem.golden.GoldenError] when ``root`` holds a campaign of another plan."""

    def __init__(self, root: str | os.PathLike, plan: Plan):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        settings = self.root / "campaign.json"
        mine = plan.to_json()
        before = plan.examples
        if settings.exists():
            try:
                stored = json.loads(settings.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise GoldenError(f"--resume {self.root}: campaign.json is not readable JSON ({exc})") from None
            if isinstance(stored, dict):
                stored.setdefault("tangents", True)  # journals written before --no-tangents gave them
            # --examples may differ: example i is the same at any count, so a campaign grows (or is cut)
            if not isinstance(stored, dict) or set(stored) != set(mine) or \
                    any(stored[k] != mine[k] for k in mine if k != "examples"):
                diff = sorted(k for k in mine if k != "examples" and (not isinstance(stored, dict) or stored.get(k) != mine[k]))
                raise GoldenError(f"--resume {self.root}: it holds a campaign with other settings "
                                  f"({', '.join(diff) or 'format'}); resume it with the same options or use a new directory")
            before = int(stored["examples"])
        if before != plan.examples or not settings.exists():
            tmp = settings.with_suffix(".json.tmp")
            tmp.write_text(json.dumps(mine, indent=1), encoding="utf-8")
            os.replace(tmp, settings)
        self.plan = plan
        self.examples: dict[tuple[str, int], dict] = {}
        for rec in self._read("examples.jsonl"):
            self.examples.setdefault((rec["case"], int(rec["index"])), rec)
        # a case's verdict holds for the count it was reached at (recorded with it since --examples may change)
        self.cases: dict[str, dict] = {}
        for rec in self._read("cases.jsonl"):
            if int(rec.get("examples", before)) == plan.examples:
                self.cases.setdefault(rec["case"], rec)

    def _read(self, name: str) -> list[dict]:
        """The complete lines of ``name``; a torn last line (no newline, or not JSON) is cut off."""
        path = self.root / name
        if not path.exists():
            return []
        data = path.read_bytes()
        keep = data.rfind(b"\n") + 1
        out = []
        for line in data[:keep].split(b"\n"):
            if not line.strip():
                continue
            try:
                out.append(json.loads(line))
            except ValueError:
                continue  # a line torn by an earlier crash, already followed by others
        if keep != len(data):
            with open(path, "r+b") as fh:
                fh.truncate(keep)
        return out

    def _append(self, name: str, record: dict) -> None:
        line = (json.dumps(record, sort_keys=True, allow_nan=False) + "\n").encode("utf-8")
        fd = os.open(self.root / name, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)

    def add_example(self, record: dict) -> None:
        self.examples[(record["case"], int(record["index"]))] = record
        self._append("examples.jsonl", record)

    def add_case(self, record: dict) -> None:
        record = {**record, "examples": self.plan.examples}
        self.cases[record["case"]] = record
        self._append("cases.jsonl", record)


# ----------------------------------------------------------------------------- the coordinator


class _Case:
    """The examples of one case: which are known, which are in flight, whether the count is complete."""

    def __init__(self, case: Case, wanted: int):
        self.case = case
        self.wanted = wanted
        self.cap = MAX_DRAWS * wanted
        self.records: dict[int, dict] = {}
        self.pending: set[int] = set()
        self.next = 0
        self.finished = False

    def first_failure(self) -> int | None:
        bad = [i for i, r in self.records.items() if r["status"] in ("fail", "error")]
        return min(bad) if bad else None

    def prefix(self) -> tuple[int, int, int | None, bool]:
        """``(K, valid, failing index, complete)`` of the counted run ``0 .. K-1`` known so far."""
        valid = 0
        i = 0
        while i < self.cap and i in self.records:
            status = self.records[i]["status"]
            if status in ("fail", "error"):
                return i + 1, valid, i, True
            if status == "pass":
                valid += 1
                if valid == self.wanted:
                    return i + 1, valid, None, True
            i += 1
        return i, valid, None, i >= self.cap

    def take(self) -> int | None:
        """The next index to run, or ``None`` when nothing more is needed now."""
        if self.finished:
            return None
        limit = self.first_failure()
        limit = self.cap if limit is None else limit
        valid = sum(1 for r in self.records.values() if r["status"] == "pass")
        while self.next < limit and (self.next in self.records or self.next in self.pending):
            self.next += 1
        if self.next >= limit:
            return None
        if limit == self.cap and valid + len(self.pending) >= self.wanted:
            return None
        self.pending.add(self.next)
        return self.next


def select_cases(adapter: Any, patterns: Sequence[str] | None = None) -> list[Case]:
    """The catalogue cases ``adapter`` declares, narrowed by ``patterns`` (fnmatch or substring)."""
    chosen = [c for c in catalogue.cases() if adapter.implements(c.name)]
    if patterns:
        chosen = [c for c in chosen if any(fnmatch.fnmatchcase(c.name, p) or p in c.name for p in patterns)]
    return chosen


def _finish(adapter: Any, state: _Case, dtype: str, seed: int, invariance: bool, save_dir: str | Path | None,
            journal: Journal | None) -> CaseResult:
    """The case's result from its counted examples: the closest call of a passing case, or the first
    failing example shrunk, explained and saved."""
    case = state.case
    K, valid, failing, _ = state.prefix()
    counted = [state.records[i] for i in range(K)]
    result = CaseResult(case.name, Report(), examples=K, unsampleable=sum(r["status"] == "refused" for r in counted))
    saved = journal.cases.get(case.name) if journal is not None else None
    min_batch = 2 if invariance else 1
    if failing is None:
        if valid == 0:
            result.report.problems.append(f"{case.name}: the case's sampler refused every drawn example")
            return result
        best = max((r for r in counted if r["status"] == "pass"), key=lambda r: (r["worst"], -r["index"]))
        example = example_at(case, seed, best["index"], min_batch)
        note = ""
        try:  # the closest call under the exact tolerances (the campaign judged it under their lower bound)
            report, _ = check_example(adapter, case, example, dtype)
        except Undecidable:  # the exact rule cannot judge it (its float32 runs lost every digit): the bound's rows
            report, _ = check_example(adapter, case, example, dtype, live_golden(case, example, runs=0))
            note = "; tolerances: the lower bound it passed under"
        for row in report.rows:
            row.note = f"closest of {K} examples: {example.describe()}{note}"
        result.report.extend(report)
        if journal is not None and saved is None:
            journal.add_case({"case": case.name, "passed": True})
        return result
    first = counted[failing]
    example = example_at(case, seed, failing, min_batch)
    shrunk = None
    if saved is not None and saved.get("failing") is not None:
        f = saved["failing"]
        example = Example(case.name, dict(f["sizes"]), int(f["seed"]), int(f["scale"]), tuple(f["padded"]))
        result.shrink_calls = int(saved.get("shrink_calls", 0))
    elif "did not answer within" not in first["problem"]:  # a hang would cost the timeout per shrink step
        shrunk = shrink(adapter, case, example, dtype, seed, invariance)
    note = ""
    if shrunk is not None:
        example, live, report, inv, result.shrink_calls = shrunk
    else:
        if saved is None:
            note = (" (not shrunk: the adapter hung)" if "did not answer within" in first["problem"]
                    else " (not shrunk: it did not fail again under Hypothesis)")
        try:
            live = live_golden(case, example)
            report, _ = check_example(adapter, case, example, dtype, live)
            inv = batch_invariance(adapter, case, example, dtype, live) if (invariance and report.passed) else []
        except Exception:  # noqa: BLE001 - refmem itself fails here: the record says how
            live, report, inv = None, Report(), []
        if report.passed and not inv:  # it passed this time: keep what the campaign saw
            report = Report()
            report.problems.append(first["problem"])
            note = " (it passed when run again: the adapter is not deterministic)"
            live = None
    result.failing, result.invariance = example, list(inv)
    result.report.extend(report)
    result.report.problems.extend(inv)
    where = ""
    if save_dir is not None and live is not None:
        result.reproducer = save_reproducer(save_dir, live)
        where = f"; reproducer {result.reproducer} (refmem golden verify --dir {save_dir})"
    if saved is not None:
        result.triggers = list(saved.get("triggers", []))
    elif live is not None and "did not answer within" not in first["problem"]:
        result.triggers = triggers(adapter, case, example, dtype, invariance)
    needs = f"; it needs {', '.join(result.triggers)}" if result.triggers else ""
    how = "shrunk, " if (shrunk is not None or saved is not None) else ""
    result.report.problems.append(f"{case.name}: differential ({dtype}): fails at {example.describe()}{note}"
                                  f" ({how}{K} examples run){needs}{where}")
    if journal is not None and saved is None:
        journal.add_case({"case": case.name, "passed": False, "failing": example.to_json(),
                          "triggers": result.triggers, "shrink_calls": result.shrink_calls})
    return result


def campaign(adapter: Any, cases: Sequence[Case], dtype: str = "float64", max_examples: int = 100, seed: int = 0,
             save_dir: str | Path | None = None, invariance: bool = False, *, executor: Any = None,
             journal: str | os.PathLike | None = None,
             on_example: Callable[[int, int], None] | None = None,
             on_case: Callable[[CaseResult], None] | None = None, tangents: bool = True) -> Result:
    """Run ``max_examples`` counted examples of every case in ``cases`` (see the module docstring).

    ``adapter``: an [`Adapter`][refmem.golden.Adapter] or an
    [`IsolatedAdapter`][refmem.golden.isolated.IsolatedAdapter], used here for the serial run, the
    shrinking and the report. ``executor``: a [`refmem.executor.Executor`][refmem.executor.Executor]
    whose workers run the examples (they load the adapter by its ``spec``, isolated like this one);
    ``None`` runs them here. ``journal``: a directory to record and resume the campaign in.
    ``on_example(counted, total)`` after each finished example; ``on_case`` after each case.
    ``tangents=False``: the adapter is given no ``tangents/`` ([`WithoutTangents`][refmem.differential.runner.WithoutTangents]).
    """
    from ..golden.isolated import IsolatedAdapter

    t0 = time.perf_counter()
    plan = Plan(str(getattr(adapter, "spec", "")), dtype, int(max_examples), int(seed), bool(invariance),
                tuple(c.name for c in cases), bool(tangents))
    book = Journal(journal, plan) if journal is not None else None
    states = [_Case(c, int(max_examples)) for c in cases]
    resumed = 0
    if book is not None:
        for st in states:
            for (name, i), rec in book.examples.items():
                if name == st.case.name:
                    st.records[i] = {**rec, "resumed": True}
                    resumed += 1
    remote = executor is not None and executor.parallel
    isolated = isinstance(adapter, IsolatedAdapter)
    timeout = float(getattr(adapter, "timeout", 0.0))
    adapter = _given_tangents(adapter, tangents)
    total = len(states) * int(max_examples)
    token = uuid.uuid4().hex
    results: list[CaseResult | None] = [None] * len(states)
    inflight: dict[Any, tuple[_Case, int]] = {}

    def counted() -> int:
        n = 0
        for st in states:
            K, valid, failing, complete = st.prefix()
            n += int(max_examples) if (st.finished or (complete and failing is not None)) else valid
        return n

    def record(st: _Case, rec: dict) -> None:
        st.pending.discard(rec["index"])
        if rec["index"] in st.records:
            return
        st.records[rec["index"]] = rec
        if book is not None:
            book.add_example(rec)
        if on_example is not None:
            on_example(counted(), total)

    def finish_ready() -> None:
        for k, st in enumerate(states):
            if not st.finished and st.prefix()[3]:
                st.finished = True
                results[k] = _finish(adapter, st, dtype, seed, invariance, save_dir, book)
                if on_case is not None:
                    on_case(results[k])

    def next_task() -> tuple[_Case, int] | None:
        for st in states:
            i = st.take()
            if i is not None:
                return st, i
        return None

    try:
        finish_ready()
        while True:
            while len(inflight) < (executor.slots if remote else 1):
                task = next_task()
                if task is None:
                    break
                st, i = task
                if remote:
                    fut = executor.submit(_remote_example, token, plan.adapter, isolated, timeout, st.case.name,
                                          dtype, int(seed), i, bool(invariance), bool(tangents))
                    inflight[fut] = (st, i)
                else:
                    record(st, run_example(adapter, st.case, dtype, seed, i, invariance))
                    finish_ready()
            if not inflight:
                break  # nothing in flight and nothing more wanted: every case is finished
            for fut in executor.wait(inflight):
                st, i = inflight.pop(fut)
                try:
                    rec = fut.result()
                except GoldenError as exc:
                    raise GoldenError(f"a worker could not load adapter {plan.adapter!r}: {exc}") from None
                record(st, rec)
            finish_ready()
    finally:
        if remote and inflight:
            executor.close(list(inflight))
    unfinished = [st.case.name for st in states if not st.finished]
    if unfinished:  # pragma: no cover - the bookkeeping above guarantees it
        raise RuntimeError(f"campaign ended with unfinished cases {unfinished}")
    report = Report()
    examples: list[dict] = []
    for st, r in zip(states, results):
        assert r is not None
        report.extend(r.report)
        K = st.prefix()[0]
        examples.extend(st.records[i] for i in range(K))
    return Result([r for r in results if r is not None], report, examples, time.perf_counter() - t0,
                  executor.workers if remote else 1, resumed)


def run_case(adapter: Any, case: Case, dtype: str = "float64", max_examples: int = 100, seed: int = 0,
             save_dir: str | Path | None = None, invariance: bool = False) -> CaseResult:
    """Search ``max_examples`` examples of ``case`` (in this process) for one where ``adapter`` disagrees
    with live refmem (and, with ``invariance``, where it is not batch invariant); shrink it; report it.

    A passing case's report holds the rows of its closest call (the example of the largest
    error ratio), each noted with the example. A failing case's report holds the shrunk
    example's rows, first divergence and a problem naming the example and its reproducer.
    """
    return campaign(adapter, [case], dtype, max_examples, seed, save_dir, invariance).cases[0]


def differential(adapter: Any, patterns: Sequence[str] | str | None = None, dtype: str = "float64",
                 max_examples: int = 100, seed: int = 0, save_dir: str | Path | None = None,
                 invariance: bool = False, on_case: Callable[[CaseResult], None] | None = None, *,
                 executor: Any = None, journal: str | os.PathLike | None = None,
                 on_example: Callable[[int, int], None] | None = None, tangents: bool = True) -> Result:
    """[`campaign`][refmem.differential.runner.campaign] over every catalogue case ``adapter`` declares
    (narrowed by ``patterns``). ``adapter`` given by name is imported and called in this process.

    Raises [`GoldenError`][refmem.golden.GoldenError] for a bad dtype or when no case matches.
    """
    if dtype not in DTYPES:
        raise GoldenError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    if isinstance(adapter, str):
        adapter = load_adapter(adapter)
    if isinstance(patterns, str):
        patterns = [patterns]
    chosen = select_cases(adapter, patterns)
    if not chosen:
        raise GoldenError(f"adapter {adapter.spec}: no catalogue case matches {list(adapter.patterns)}"
                          + (f" and {list(patterns)}" if patterns else ""))
    return campaign(adapter, chosen, dtype, max_examples, seed, save_dir, invariance, executor=executor,
                    journal=journal, on_example=on_example, on_case=on_case, tangents=tangents)
