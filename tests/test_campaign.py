"""Campaigns and isolated adapters: the same verdict and reproducers on 1 or 2 local workers and on a
Dask cluster, a campaign killed with SIGKILL and resumed counts every example once, every adapter
misbehaviour is a failed case with its reason, refmem check on the executor gives a serial run's records.
Nothing here asserts a time."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from refmem import catalogue, golden
from refmem import differential as D
from refmem import xp as rx
from refmem.cli import main
from refmem.differential.runner import Journal, Plan

from conftest import child_env, run

ROOT = Path(__file__).resolve().parent.parent
ADAPTERS = "tests/misbehaving_adapters.py"
#: softmax wrong from 3 entries a row (found and shrunk), tanh right: a failing and a passing case.
CASES = ["--case", "primitives/softmax", "--case", "primitives/tanh"]


@pytest.fixture(autouse=True)
def _repo_root(monkeypatch):
    monkeypatch.chdir(ROOT)  # adapters are named relative to the repository root


def _env() -> dict:
    return child_env()


def _verify(*argv: str, expect: int | tuple[int, ...] | None = (0, 1), **env: str) -> subprocess.CompletedProcess:
    """``refmem verify`` in a fresh process (its output shown when its exit status is not ``expect``)."""
    return run([sys.executable, "-m", "refmem", "verify", *argv], expect=expect, cwd=ROOT, env=child_env(**env))


def _verdict(path: Path, repro: Path) -> dict:
    """What must not depend on where the examples ran: per case, the verdict, the examples counted,
    the failing example, what it needs, the report's rows and problems (no times; the reproducer's
    directory named alike)."""
    doc = json.loads(path.read_text().replace(str(repro), "REPRO"))
    out = {}
    for name, info in doc["meta"]["differential"].items():
        out[name] = {k: info[k] for k in ("examples", "unsampleable", "failing", "needs")}
        out[name]["passed"] = doc["cases"][name]["passed"]
        out[name]["case"] = json.dumps(doc["cases"][name], sort_keys=True)
    records = sorted((r["case"], r["index"], r["status"], json.dumps(r["example"], sort_keys=True))
                     for r in doc["meta"]["example_records"])
    return {"cases": out, "records": records, "problems": doc.get("problems")}


def _files(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def _campaign(tmp: Path, tag: str, *extra: str) -> tuple[dict, dict]:
    js, repro = tmp / f"{tag}.json", tmp / f"repro-{tag}"
    done = _verify("--adapter", f"{ADAPTERS}:wrong_wide", *CASES, "--examples", "12", "--seed", "3",
                   "--save-failures", str(repro), "--json", str(js), "--quiet", *extra, expect=1)
    assert done.returncode == 1  # softmax is wrong, and found
    return _verdict(js, repro), _files(repro)


@pytest.fixture(scope="module")
def serial(tmp_path_factory):
    """The reference campaign: one process."""
    return _campaign(tmp_path_factory.mktemp("serial"), "serial", "--workers", "1")


# ----------------------------------------------------------------------------- determinism


def test_examples_are_deterministic_in_seed_and_index():
    case = catalogue.get_case("attention/bahdanau_decoder/previous_masked")
    first = [D.example_at(case, 5, i) for i in range(20)]
    assert first == [D.example_at(case, 5, i) for i in range(20)]
    assert first != [D.example_at(case, 6, i) for i in range(20)]
    simplest = first[0]
    assert all(v == D.sizes_limits(case)[k][0] for k, v in simplest.sizes.items())
    assert (simplest.seed, simplest.scale, simplest.padded) == (0, 1, ())
    assert any(ex.padded for ex in first) and any(ex.scale > 1 for ex in first)


def test_shrinking_replays_the_failing_example_and_makes_it_smaller():
    case = catalogue.get_case("primitives/softmax/default")
    adapter = golden.load_adapter(f"{ADAPTERS}:wrong_wide")
    big = D.Example(case.name, {"B": 4, "N": 5}, 1234, 16)
    assert not D.check_example(adapter, case, big)[0].passed
    shrunk = D.shrink(adapter, case, big)
    assert shrunk is not None, "Hypothesis did not replay the failing example"
    example, live, report, inv, calls = shrunk
    assert example.sizes == {"B": 1, "N": 3} and example.seed == 0 and example.scale == 1
    assert not report.passed and calls > 1


def test_workers_1_and_2_give_the_same_verdicts_and_reproducers(tmp_path, serial):
    verdict, files = _campaign(tmp_path, "two", "--workers", "2")
    assert verdict == serial[0]
    assert files == serial[1] and files  # byte for byte


def _dask_cluster(tmp: Path):
    """A real ``dask scheduler`` and ``dask worker`` (2 processes, 1 thread each) on 127.0.0.1."""
    distributed = pytest.importorskip("distributed")
    dask = Path(sys.executable).with_name("dask")
    cmd = [str(dask)] if dask.exists() else [sys.executable, "-m", "distributed.cli.dask_scheduler"]
    info = tmp / "scheduler.json"
    logs = open(tmp / "dask.log", "w")
    procs = [subprocess.Popen([*cmd, "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                               "--scheduler-file", str(info)] if dask.exists() else
                              [*cmd, "--host", "127.0.0.1", "--port", "0", "--no-dashboard", "--scheduler-file", str(info)],
                              cwd=ROOT, env=_env(), stdout=logs, stderr=subprocess.STDOUT, start_new_session=True)]
    deadline = time.monotonic() + 60
    while not info.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert info.exists(), (tmp / "dask.log").read_text()
    worker = ([str(dask), "worker"] if dask.exists() else [sys.executable, "-m", "distributed.cli.dask_worker"])
    procs.append(subprocess.Popen([*worker, "--scheduler-file", str(info), "--nworkers", "2", "--nthreads", "1",
                                   "--host", "127.0.0.1", "--no-dashboard"], cwd=ROOT, env=_env(), stdout=logs,
                                  stderr=subprocess.STDOUT, start_new_session=True))
    address = json.loads(info.read_text())["address"]
    with distributed.Client(address, timeout="60s") as client:
        client.wait_for_workers(2, timeout=120)
    return address, procs, logs


def _stop(procs, logs) -> None:
    for p in reversed(procs):
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGTERM)
    for p in reversed(procs):
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait(timeout=30)
    logs.close()


@pytest.mark.slow
def test_a_dask_cluster_gives_the_same_verdicts_and_reproducers(tmp_path, serial):
    address, procs, logs = _dask_cluster(tmp_path)
    try:
        verdict, files = _campaign(tmp_path, "dask", "--scheduler", address)
    finally:
        _stop(procs, logs)
    assert address.startswith("tcp://127.0.0.1:")
    assert verdict == serial[0]
    assert files == serial[1]


def test_scheduler_and_workers_errors_are_one_line(capsys):
    assert main(["verify", "--adapter", f"{ADAPTERS}:right", "--case", "softmax", "--workers", "2",
                 "--scheduler", "tcp://127.0.0.1:1"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--scheduler" in err and "Traceback" not in err


# ----------------------------------------------------------------------------- resume


def _descendants(pid: int) -> set[int]:
    """Every process below ``pid`` (from /proc)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out, todo = set(), [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            if c not in out:
                out.add(c)
                todo.append(c)
    return out


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc (Linux)")
def test_a_campaign_killed_with_sigkill_and_resumed_counts_every_example_once(tmp_path):
    journal, js = tmp_path / "journal", tmp_path / "resumed.json"
    argv = [sys.executable, "-m", "refmem", "verify", "--adapter", f"{ADAPTERS}:right", "--case", "primitives",
            "--examples", "12", "--workers", "2", "--resume", str(journal), "--quiet"]
    child = subprocess.Popen(argv, cwd=ROOT, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    lines = journal / "examples.jsonl"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and child.poll() is None:
        if lines.exists() and lines.read_bytes().count(b"\n") >= 20:
            break
        time.sleep(0.05)
    assert child.poll() is None, f"finished before it could be killed: {child.stderr.read()}"
    below = _descendants(child.pid)
    assert below  # its workers and their adapter processes
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=30)
    child.stderr.close()
    # no worker and no adapter process outlives it
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and any(Path(f"/proc/{p}").exists() for p in below):
        time.sleep(0.1)
    alive = [p for p in below if Path(f"/proc/{p}/stat").exists()
             and Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"]
    assert not alive, f"orphans left: {alive}"
    before = [json.loads(x) for x in lines.read_text().splitlines() if x.strip()]
    with open(lines, "ab") as fh:  # a kill in the middle of a write: a torn last line
        fh.write(b'{"case": "primitives/tanh/default", "ind')
    done = run(argv + ["--json", str(js)], cwd=ROOT, env=_env())
    assert "counted from the journal" in done.stdout
    records = [json.loads(x) for x in lines.read_text().splitlines()]
    counts = Counter((r["case"], r["index"]) for r in records)
    assert max(counts.values()) == 1  # none repeated
    assert len(records) >= len(before)
    doc = json.loads(js.read_text())
    counted = Counter(r["case"] for r in doc["meta"]["example_records"])
    for name, info in doc["meta"]["differential"].items():
        assert counted[name] == info["examples"]
        indices = sorted(r["index"] for r in doc["meta"]["example_records"] if r["case"] == name)
        assert indices == list(range(info["examples"]))  # none lost
        passed = sum(r["status"] == "pass" for r in doc["meta"]["example_records"] if r["case"] == name)
        assert passed == 12
    # the same campaign uninterrupted, in one process, counts the same examples
    fresh = tmp_path / "fresh.json"
    run([*argv[:argv.index("--workers")], "--json", str(fresh), "--quiet"], cwd=ROOT, env=_env())
    key = lambda d: sorted((r["case"], r["index"], r["status"]) for r in d["meta"]["example_records"])  # noqa: E731
    assert key(json.loads(fresh.read_text())) == key(doc)


def test_the_journal_cuts_a_torn_line_and_refuses_another_campaign(tmp_path):
    plan = Plan("a:run", "float64", 5, 0, False, ("primitives/tanh/default",))
    book = Journal(tmp_path, plan)
    book.add_example({"case": "primitives/tanh/default", "index": 0, "status": "pass"})
    with open(tmp_path / "examples.jsonl", "ab") as fh:
        fh.write(b'{"case": "primitives/tanh/default", "index": 1, "sta')
    again = Journal(tmp_path, plan)
    assert list(again.examples) == [("primitives/tanh/default", 0)]
    assert (tmp_path / "examples.jsonl").read_bytes().endswith(b"}\n")
    with pytest.raises(golden.GoldenError, match="other settings.*dtype"):
        Journal(tmp_path, Plan("a:run", "float32", 5, 0, False, ("primitives/tanh/default",)))


def test_a_finished_campaign_grows_to_more_examples_without_repeating_one(tmp_path):
    """``--resume`` with another ``--examples``: the examples already run are counted, not run again;
    the grown campaign counts what a fresh one of that size counts; a case's verdict is recorded with
    its count."""
    case = catalogue.get_case("primitives/tanh/default")
    adapter = golden.Adapter("t", D._refmem_run, ("*",))
    lines = lambda: [json.loads(x) for x in (tmp_path / "examples.jsonl").read_text().splitlines()]  # noqa: E731
    first = D.campaign(adapter, [case], "float64", 4, journal=tmp_path)
    assert len(lines()) == first.cases[0].examples
    grown = D.campaign(adapter, [case], "float64", 9, journal=tmp_path)
    fresh = D.campaign(adapter, [case], "float64", 9)
    assert max(Counter((r["case"], r["index"]) for r in lines()).values()) == 1  # none ran twice
    key = lambda res: sorted((r["case"], r["index"], r["status"]) for r in res.examples)  # noqa: E731
    assert key(grown) == key(fresh) and grown.cases[0].examples == fresh.cases[0].examples == 9
    assert sum(bool(r.get("resumed")) for r in grown.examples) == first.cases[0].examples
    cases = [json.loads(x) for x in (tmp_path / "cases.jsonl").read_text().splitlines()]
    assert [c["examples"] for c in cases] == [4, 9]
    n = len(lines())
    cut = D.campaign(adapter, [case], "float64", 2, journal=tmp_path)  # fewer: nothing new runs
    assert len(lines()) == n and cut.cases[0].examples == 2 and cut.cases[0].passed
    assert json.loads((tmp_path / "campaign.json").read_text())["examples"] == 2
    with pytest.raises(golden.GoldenError, match="other settings.*seed"):
        D.campaign(adapter, [case], "float64", 2, seed=1, journal=tmp_path)


# ----------------------------------------------------------------------------- isolated adapters

#: misbehaviour -> words its failure names
MISBEHAVIOURS = {
    "exit0": "called sys.exit(0)",
    "exit3": "exited with status 3",
    "raises": "raised ValueError: planted",
    "aborts": "killed by SIGABRT",
    "segfault": "killed by SIGSEGV",
    "hangs": "did not answer within 2 s",
    "prints": "wrote to standard output ('debug: hello from the adapter')",
}


@pytest.mark.parametrize("name", sorted(MISBEHAVIOURS))
def test_golden_verify_reports_a_misbehaving_adapter_and_goes_on(name):
    done = run([sys.executable, "-m", "refmem", "golden", "verify", "--adapter", f"{ADAPTERS}:{name}",
                "--case", "primitives/softmax", "--case", "primitives/tanh", "--timeout", "2"],
               expect=1, cwd=ROOT, env=_env())
    assert "Traceback" not in done.stdout and "2 cases" in done.stdout  # both cases ran
    for case in ("primitives/softmax/default", "primitives/tanh/default"):
        assert f"{case}: the adapter" in done.stdout + done.stderr and MISBEHAVIOURS[name] in done.stdout + done.stderr


@pytest.mark.parametrize("name", ["exit0", "segfault", "hangs", "prints"])
def test_verify_reports_a_misbehaving_adapter_and_goes_on(name):
    """In refmem verify the misbehaviour shows at a batch of one only: the first example (B = 1) fails,
    and both cases still run."""
    done = _verify("--adapter", f"{ADAPTERS}:{name}", *CASES, "--examples", "3", "--timeout", "2", expect=1,
                   MISBEHAVE_AT_B1="1")
    assert "2 cases" in done.stdout and "2 failed" in done.stdout, done.stdout
    assert MISBEHAVIOURS[name] in done.stderr and "fails at sizes B=1" in done.stderr


def test_in_process_an_exit_is_still_a_failed_case(capsys):
    rc = main(["verify", "--adapter", f"{ADAPTERS}:exit0", "--case", "primitives/tanh", "--examples", "2",
               "--in-process"])
    captured = capsys.readouterr()
    assert rc == 1 and "called sys.exit(0)" in captured.err


@pytest.mark.parametrize("where", [[], ["--in-process"]])
def test_an_adapter_that_modifies_its_inputs_is_not_reported(where, capsys):
    """Batch invariance calls the adapter many times on one example: each call gets its own inputs."""
    rc = main(["verify", "--adapter", f"{ADAPTERS}:mutates", "--case", "primitives/softmax", "--case", "memory_lstm/step",
               "--examples", "4", "--batch-invariance", *where])
    captured = capsys.readouterr()
    assert rc == 0, captured.out + captured.err
    rc = main(["golden", "verify", "--adapter", f"{ADAPTERS}:mutates", "--case", "primitives", *where, "--quiet"])
    assert rc == 0, capsys.readouterr()


def test_an_adapter_that_exits_while_imported_is_one_line(tmp_path, capsys):
    bad = tmp_path / "bad_adapter.py"
    bad.write_text("import sys\nCASES = ['*']\nsys.exit(0)\ndef run(case, tensors, dtype):\n    return {}\n")
    assert main(["golden", "verify", "--adapter", f"{bad}:run"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "called sys.exit(0)" in err


def test_call_adapter_copies_the_inputs():
    seen = []

    def scribble(case, tensors, dtype):
        seen.append(tensors)
        for v in tensors.values():
            v[...] = 7.0
        return {}

    given = {"inputs/x": np.zeros(3)}
    from refmem.golden.isolated import call_adapter

    call_adapter(golden.Adapter("s", scribble, ("*",)), "c", given, "float64", {})
    assert np.all(given["inputs/x"] == 0) and seen[0] is not given


# ----------------------------------------------------------------------------- refmem check on the executor


def test_check_on_two_workers_gives_the_serial_records(tmp_path, capsys):
    one, two = tmp_path / "one.json", tmp_path / "two.json"
    assert main(["check", "--module", "primitives", "--module", "memory_lstm", "--workers", "1", "--json", str(one),
                 "--quiet"]) == 0
    assert main(["check", "--module", "primitives", "--module", "memory_lstm", "--workers", "2", "--json", str(two),
                 "--quiet"]) == 0
    capsys.readouterr()

    def key(path):
        return [{k: v for k, v in r.items() if k != "seconds"} for r in json.loads(path.read_text())["records"]]

    assert key(one) == key(two) and len(key(one)) > 10


def test_local_workers_run_blas_on_one_thread_unless_told(monkeypatch):
    """Two workers on two cores each with a BLAS pool oversubscribe them (the docstring of
    refmem.executor.THREAD_VARIABLES has the measurement); a value set by the user is kept."""
    from refmem.executor import THREAD_VARIABLES, Executor

    for var in THREAD_VARIABLES:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("MKL_NUM_THREADS", "3")
    with Executor(2) as ex:
        got = [ex.submit(os.getenv, var).result() for var in THREAD_VARIABLES]
    assert got == ["1", "1", "3"]


def test_idle_cpus_count_what_is_busy_now_not_a_minute_ago(monkeypatch):
    """The default workers: the CPUs less those busy during a short sample of /proc/stat (the
    one-minute load average still counts a command that has just ended); the load average only
    where /proc/stat cannot be read."""
    from refmem import executor

    snaps = iter([(100.0, 400.0, 2), (130.0, 500.0, 2)])  # 30 of 100 jiffies busy on 2 CPUs: 0.6 CPU
    monkeypatch.setattr(executor, "_cpu_times", lambda: next(snaps))
    monkeypatch.setattr(executor.time, "sleep", lambda s: None)
    monkeypatch.setattr(executor.os, "getloadavg", lambda: (1.9, 1.9, 1.9))
    monkeypatch.setattr(executor.os, "sched_getaffinity", lambda pid: {0, 1})
    assert executor.busy_cpus() == pytest.approx(0.6)
    snaps = iter([(100.0, 400.0, 2), (130.0, 500.0, 2)])
    assert executor.idle_cpus() == 1  # 2 - 0.6 rounds to 1
    snaps = iter([(100.0, 400.0, 2), (105.0, 500.0, 2)])  # 0.1 CPU busy
    assert executor.idle_cpus() == 2
    monkeypatch.setattr(executor, "_cpu_times", lambda: None)
    assert executor.busy_cpus() == 1.9 and executor.idle_cpus() == 1
    # /proc/stat: user nice system idle iowait irq softirq steal; niced time is busy (a niced job of
    # another session keeps its autogroup's share of the CPUs)
    stat = "cpu  100 500 20 300 30 0 0 50 0 0\ncpu0 50 250 10 150 15 0 0 25 0 0\ncpu1 50 250 10 150 15 0 0 25 0 0\n"
    assert executor._parse_stat(stat) == (670.0, 1000.0, 2)


def _worker_state():
    """In a worker: its pid, the warmed adapter waiting there and the pid of that adapter's process."""
    from refmem.differential import runner

    child = getattr(getattr(runner._WORKER["adapter"], "_proc", None), "pid", None)
    return os.getpid(), runner._WORKER["warm"], child


def test_local_workers_load_the_adapter_as_they_start():
    """`refmem verify --workers N` starts its workers with the adapter while it loads its own; a
    worker's first example takes the warmed adapter (its process) instead of starting another, and
    an adapter that cannot load leaves the pool working (the examples report the failure)."""
    from refmem.differential import runner
    from refmem.executor import Executor

    spec = f"{ADAPTERS}:right"
    with Executor(2, warmup=("refmem.differential.runner", "warm_worker", (spec, True, 60.0))) as ex:
        states = {pid: (warm, child) for pid, warm, child in (ex.submit(_worker_state).result() for _ in range(6))}
        assert states and all(warm == (spec, True, 60.0) and child for warm, child in states.values()), states
        token = "campaign"
        for i in range(6):
            rec = ex.submit(runner._remote_example, token, spec, True, 60.0, "primitives/tanh/default", "float64",
                            0, i, False).result()
            assert rec["status"] == "pass", rec
        after = {pid: (warm, child) for pid, warm, child in (ex.submit(_worker_state).result() for _ in range(6))}
        for pid, (warm, child) in after.items():
            assert warm is None and (pid not in states or child == states[pid][1]), (states, after)
    with Executor(2, warmup=("refmem.differential.runner", "warm_worker", ("no_such_module:run", True, 60.0))) as ex:
        assert ex.submit(os.getpid).result() > 0


def test_pytest_plugin_isolates_when_asked(tmp_path):
    """--refmem-isolate: an adapter that crashes fails its items, and the session reports them."""
    import importlib.metadata

    (tmp_path / "conftest.py").write_text("")
    plugin = [] if any(ep.value == "refmem.pytest_plugin" for ep in importlib.metadata.entry_points(group="pytest11")) \
        else ["-p", "refmem.pytest_plugin"]
    done = run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *plugin, str(tmp_path),
                "--refmem-adapter", f"{ADAPTERS}:segfault", "--refmem-case", "primitives/tanh",
                "--refmem-case", "primitives/softmax", "--refmem-isolate", "--refmem-timeout", "60"],
               expect=1, cwd=ROOT, env=_env())
    assert "2 failed" in done.stdout, done.stdout + done.stderr
    assert "killed by SIGSEGV" in done.stdout


def test_testing_differential_in_a_child_process():
    from refmem.testing import differential

    with pytest.raises(AssertionError, match="called sys.exit"):
        differential(f"{ADAPTERS}:exit0", "primitives/tanh", "float64", 2, isolate=True, timeout=60)
    assert differential(f"{ADAPTERS}:right", "primitives/tanh", "float64", 3, isolate=True, workers=2).passed


def test_verify_passes_the_documented_tangents():
    """examples/README.md: an adapter gets ``tangents/<role>/<name>`` for every differentiable tensor, in
    ``refmem verify`` too; the jvp/ and hvp/ it returns are left to the goldens (not compared live)."""
    seen = []

    def adapter(case, tensors, dtype):
        seen.append(sorted(k for k in tensors if k.startswith("tangents/")))
        assert all(v.dtype == np.dtype(dtype) for k, v in tensors.items() if k.startswith("tangents/"))
        out = D._refmem_run(case, tensors, dtype)
        out["jvp/h"] = np.zeros(1)  # not compared here
        return out

    case = catalogue.get_case("memory_lstm/step/default")
    r = D.run_case(golden.Adapter("t", adapter, ("*",)), case, "float32", 3, invariance=True)
    assert r.passed, r.report.failure_text(case.name)
    arrays = case.draw(rx.backend("numpy"), 0)
    assert seen and seen[0] == sorted(f"tangents/{k}" for k in case.differentiable(arrays))


@pytest.mark.parametrize("where", ["--in-process", "--workers=2"])
def test_no_tangents_gives_the_adapter_none(where):
    """``--no-tangents``: no ``tangents/`` reach the adapter, in this process or in a worker (where it is
    started in a child of its own); without it the same adapter is given them and fails."""
    argv = ["--adapter", "tests/misbehaving_adapters.py:refuses_tangents", "--case", "primitives/tanh",
            "--examples", "4", "--quiet", where]
    done = _verify(*argv, "--no-tangents", expect=0)
    assert "1 cases, 4 examples, 0 failed" in done.stdout
    given = _verify(*argv, expect=1)
    assert "raised ValueError: given tangents/inputs/x" in given.stdout + given.stderr


def test_a_journal_from_before_no_tangents_resumes(tmp_path):
    """A ``campaign.json`` without ``tangents`` (written before the option) is a campaign that gave them."""
    plan = Plan("a:run", "float64", 5, 0, False, ("primitives/tanh/default",))
    Journal(tmp_path, plan)
    stored = json.loads((tmp_path / "campaign.json").read_text())
    del stored["tangents"]
    (tmp_path / "campaign.json").write_text(json.dumps(stored))
    Journal(tmp_path, plan)  # resumes
    with pytest.raises(golden.GoldenError, match="other settings.*tangents"):
        Journal(tmp_path, Plan("a:run", "float64", 5, 0, False, ("primitives/tanh/default",), tangents=False))


def test_a_size_hint_only_where_the_same_example_passes_at_the_other_size():
    """A batch-of-one bug is hinted at B=1 (its rows grown to the default batch pass); a value-dependent
    bug (any entry above 2) gets no size hint, only the scale that brings its values there."""
    case = catalogue.get_case("primitives/softmax/default")

    def b1(name, tensors, dtype):
        out = D._refmem_run(name, tensors, dtype)
        if tensors["inputs/x"].shape[0] == 1:
            out["outputs/out"] = out["outputs/out"] * 1.001
        return out

    def big_values(name, tensors, dtype):
        out = D._refmem_run(name, tensors, dtype)
        if (np.abs(tensors["inputs/x"]) > 2.0).any():
            out["outputs/out"] = out["outputs/out"] * 1.001
        return out

    r = D.run_case(golden.Adapter("b1", b1, ("*",)), case, "float64", 20, seed=2)
    assert not r.passed and any(t.startswith("B=1 (passes at B=") for t in r.triggers), r.triggers
    r = D.run_case(golden.Adapter("v", big_values, ("*",)), case, "float64", 50, seed=2)
    assert not r.passed and r.failing.scale > 1
    assert not any(t.startswith(("B=", "N=")) for t in r.triggers), r.triggers
    assert any(t.startswith("scale") for t in r.triggers)


def test_the_cli_timeout_default_is_the_runner_s():
    from refmem.commands import adapter_process
    from refmem.golden import isolated

    assert adapter_process.DEFAULT_TIMEOUT == isolated.DEFAULT_TIMEOUT
