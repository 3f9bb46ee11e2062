"""Where independent tasks run: this process, local worker processes, or a Dask cluster.

``refmem verify`` (its examples) and ``refmem check`` (its cases) hand their tasks to an
[`Executor`][refmem.executor.Executor], built on existing engines, never a home-made pool:

* ``workers=1`` (and no scheduler): every task runs in this process, one after another;
* ``workers=N``: a [`concurrent.futures.ProcessPoolExecutor`][concurrent.futures.ProcessPoolExecutor]
  of N processes (started with ``spawn``, so a framework's threads in this process do not matter);
  each worker ignores Ctrl-C (this process decides), is killed by the kernel when this process
  dies (Linux) and watches it otherwise, so no worker outlives a killed or interrupted run;
* ``scheduler="tcp://host:port"``: a [Dask distributed](https://distributed.dask.org) cluster
  (``pip install 'refmem[distributed]'``): tasks go to its workers, which must import refmem
  (and the adapter) themselves.

Tasks are plain module-level functions with picklable arguments; their results come back in
the order they finish ([`Executor.wait`][refmem.executor.Executor.wait]) or in submission order
([`run_all`][refmem.executor.run_all]). A task's result never depends on where it ran.
"""

from __future__ import annotations

import concurrent.futures as cf
import ctypes
import multiprocessing
import os
import signal
import sys
import threading
import time
from typing import Any, Callable, Iterable, Sequence

__all__ = ["Executor", "run_all", "die_with_parent", "idle_cpus", "busy_cpus"]


def die_with_parent(parent: int, main_thread: bool = True) -> None:
    """End this process when process ``parent`` is gone: the kernel's parent-death signal (Linux, when
    the parent's main thread started this process) and a watcher thread (everywhere)."""
    if main_thread and sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL), 0, 0, 0)  # PR_SET_PDEATHSIG
        except Exception:  # noqa: BLE001 - best effort; the watcher still runs
            pass
    if os.getppid() != parent:
        os._exit(1)

    def watch() -> None:
        while True:
            time.sleep(0.5)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, name="refmem-parent-watch", daemon=True).start()


def _cpu_times() -> tuple[float, float, int] | None:
    """(busy, total) jiffies of all CPUs and their number, from ``/proc/stat``; ``None`` elsewhere."""
    try:
        with open("/proc/stat") as fh:
            return _parse_stat(fh.read())
    except OSError:
        return None


def _parse_stat(text: str) -> tuple[float, float, int]:
    """[`_cpu_times`][refmem.executor._cpu_times] of the text of ``/proc/stat``. Busy is every
    jiffy but idle and iowait, ``nice`` included: with the scheduler's autogroups (on by default in
    most Linux kernels) a niced job started in another session still takes its session's share
    of the CPUs (measured: with a campaign at nice 19 on both cores, `refmem check` on two workers
    took 28.5 s, on one 16.4 s)."""
    lines = text.splitlines()
    fields = [float(v) for v in lines[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0.0)  # idle and iowait
    total = sum(fields[:8])  # user .. steal (guest time is already counted in user)
    return total - idle, total, sum(1 for ln in lines if ln.startswith("cpu") and ln[3:4].isdigit())


def busy_cpus(interval: float = 0.1) -> float:
    """How many CPUs other processes keep busy now: sampled from ``/proc/stat`` over ``interval``
    seconds (Linux: ten ticks of each CPU's 100 Hz clock, enough to tell a busy CPU from an idle
    one), else the one-minute load average. The load average lags by a minute: right
    after a command (an install, another check) it still counts that command."""
    first = _cpu_times()
    if first is not None:
        time.sleep(interval)
        second = _cpu_times()
        if second is not None and second[1] > first[1]:
            return (second[0] - first[0]) / (second[1] - first[1]) * second[2]
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return 0.0


def idle_cpus() -> int:
    """The usable CPUs less those other processes keep busy now ([`busy_cpus`][refmem.executor.busy_cpus]),
    at least 1."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, int(cpus - busy_cpus() + 0.5)))


#: Thread pools of the numerical libraries, one thread each in a local worker unless set: N workers
#: are N busy processes, and a BLAS pool per worker only oversubscribes the cores (measured on
#: `refmem check --workers 2`, 2 cores: 27.7 s CPU for 14.3 s wall, 23.3 s CPU for 12.1 s wall with one thread).
THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def _init_worker(parent: int, environ: dict[str, str], warmup: tuple[str, str, tuple] | None = None) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for var in THREAD_VARIABLES:  # before the task's first import of NumPy (spawn: nothing is loaded yet)
        os.environ.setdefault(var, "1")
    os.environ.update(environ)
    die_with_parent(parent)
    if warmup is not None:  # named by module and function, imported only now (after the variables above)
        import importlib

        module, name, args = warmup
        getattr(importlib.import_module(module), name)(*args)


class _Inline:
    """A finished future: what a task run in this process gives."""

    def __init__(self, fn: Callable[..., Any], args: tuple):
        try:
            self._value, self._error = fn(*args), None
        except BaseException as exc:  # noqa: BLE001 - re-raised by result()
            self._value, self._error = None, exc

    def result(self) -> Any:
        if self._error is not None:
            raise self._error
        return self._value


class Executor:
    """Runs tasks in this process (``workers=1``), in ``workers`` local processes, or on the Dask
    cluster at ``scheduler``. ``environ`` is set in local worker processes (e.g. ``OMP_NUM_THREADS``),
    which otherwise run the numerical libraries' thread pools on one thread each
    ([`THREAD_VARIABLES`][refmem.executor.THREAD_VARIABLES], unless set in this process's environment).
    ``warmup``: ``(module, function, args)`` that each local worker calls as it starts, and the
    workers are started at once (it must not raise: an exception there breaks the pool).

    Raises ``ValueError`` for ``workers < 1``, both options at once, or a scheduler that cannot be
    reached, and ``ImportError`` when ``scheduler`` is given and Dask distributed is not installed.
    """

    def __init__(self, workers: int = 1, scheduler: str | None = None, environ: dict[str, str] | None = None,
                 connect_timeout: float = 20.0, warmup: tuple[str, str, tuple] | None = None):
        if int(workers) < 1:
            raise ValueError(f"workers: expected at least 1, got {workers!r}")
        if scheduler is not None and int(workers) != 1:
            raise ValueError("workers and scheduler: give one of them (a cluster has its own workers)")
        self.workers = int(workers)
        self.scheduler = scheduler
        self._pool: cf.ProcessPoolExecutor | None = None
        self._client: Any = None
        self._warm: list[Any] = []
        if scheduler is not None:
            try:
                from distributed import Client
            except ImportError as exc:
                raise ImportError("--scheduler needs Dask distributed: pip install 'refmem[distributed]'") from exc
            try:
                self._client = Client(scheduler, timeout=f"{connect_timeout}s", set_as_default=False)
            except (OSError, TimeoutError) as exc:
                raise ValueError(f"scheduler {scheduler!r}: cannot connect ({type(exc).__name__}: {exc})") from None
            self.workers = max(1, sum(self._client.nthreads().values()))
        elif self.workers > 1:
            self._pool = cf.ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"),
                                                initializer=_init_worker,
                                                initargs=(os.getpid(), dict(environ or {}), warmup))
            if warmup is not None:  # start every worker now (the pool starts one per task submitted)
                self._warm = [self._pool.submit(os.getpid) for _ in range(self.workers)]

    @property
    def parallel(self) -> bool:
        """Whether tasks run elsewhere (and several at a time)."""
        return self._pool is not None or self._client is not None

    @property
    def slots(self) -> int:
        """How many tasks to keep in flight: two per worker, so that none waits for the next."""
        return 2 * self.workers if self.parallel else 1

    def submit(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Start ``fn(*args)``; returns a future (``.result()``). Inline, it has already run."""
        if self._client is not None:
            return self._client.submit(fn, *args, pure=False)
        if self._pool is not None:
            return self._pool.submit(fn, *args)
        return _Inline(fn, args)

    def wait(self, futures: Iterable[Any]) -> set:
        """The futures of ``futures`` that are done, once at least one is (all of them, inline)."""
        futures = list(futures)
        if not futures:
            return set()
        if self._client is not None:
            from distributed import wait

            with self._client.as_current():
                return set(wait(futures, return_when="FIRST_COMPLETED").done)
        if self._pool is not None:
            return set(cf.wait(futures, return_when=cf.FIRST_COMPLETED).done)
        return set(futures)

    def close(self, pending: Iterable[Any] = ()) -> None:
        """Cancel ``pending`` and let go of the workers (local ones are ended)."""
        pending = [f for f in pending if not isinstance(f, _Inline)] + [f for f in self._warm if not f.done()]
        self._warm = []
        if self._client is not None:
            try:
                if pending:
                    self._client.cancel(pending)
            finally:
                self._client.close()
                self._client = None
        if self._pool is not None:
            pool, self._pool = self._pool, None
            for f in pending:
                f.cancel()
            processes = list(getattr(pool, "_processes", {}).values())
            pool.shutdown(wait=not pending, cancel_futures=True)
            for p in processes:  # busy with a cancelled campaign's task: not worth waiting for
                if p.is_alive():
                    p.kill()
                    p.join(5)

    def __enter__(self) -> "Executor":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def run_all(executor: Executor, fn: Callable[..., Any], tasks: Sequence[tuple],
            on_result: Callable[[int, Any], None] | None = None) -> list:
    """``[fn(*task) for task in tasks]`` on ``executor``, in the order of ``tasks``; ``on_result(i, value)``
    as each finishes. At most ``executor.slots`` tasks are in flight."""
    results: list = [None] * len(tasks)
    inflight: dict[Any, int] = {}
    nxt = 0
    try:
        while nxt < len(tasks) or inflight:
            while nxt < len(tasks) and len(inflight) < executor.slots:
                inflight[executor.submit(fn, *tasks[nxt])] = nxt
                nxt += 1
            for f in executor.wait(inflight):
                i = inflight.pop(f)
                results[i] = f.result()
                if on_result is not None:
                    on_result(i, results[i])
    except BaseException:
        executor.close(list(inflight))
        raise
    return results
