"""Adapters in a child process: an adapter that exits, crashes, hangs or prints fails its case, never the run.

``refmem verify`` and ``refmem golden verify`` run the adapter of examples/README.md in a
child process by default ([`IsolatedAdapter`][refmem.golden.isolated.IsolatedAdapter]): the
child imports the adapter once and answers one call after another over a pipe. What the
adapter does to its own process stays there:

* it raises: the case fails with ``the adapter raised ValueError: ...`` (as in process);
* it calls ``sys.exit(n)`` (0 included) or raises ``KeyboardInterrupt``: the case fails with
  ``the adapter called sys.exit(n)``, and the child goes on serving;
* its process exits (``os._exit``, a C library's ``exit``) or dies of a signal (a segfault,
  ``os.abort``, an out-of-memory kill): the case fails naming the exit status or the signal, and
  the next call starts a fresh child (its fatal error's traceback, from ``faulthandler``, is on
  standard error);
* it does not answer within ``timeout`` seconds: its process group is killed, the case fails
  with ``the adapter did not answer within S s``, and the next call starts a fresh child;
* it writes to standard output (refmem's report goes there): the case fails, quoting what it
  wrote. Standard error is the adapter's own and passes through.

Each call sends its own copy of the inputs (pickled), so an adapter that modifies its inputs
cannot change what later calls are given. The child runs in its own session (a Ctrl-C at the
terminal reaches refmem, which then ends it), watches its parent and, on Linux, is killed by the
kernel when the parent dies: no child outlives refmem.

[`call_adapter`][refmem.golden.isolated.call_adapter] is the one way both commands (and the
in-process path of ``refmem.testing`` and the pytest plugin) call an adapter and turn whatever
went wrong into a reason.
"""

from __future__ import annotations

import atexit
import ctypes
import faulthandler
import os
import pickle
import select
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from pathlib import Path
from typing import Any, Mapping

import numpy as np

__all__ = ["DEFAULT_TIMEOUT", "AdapterFailure", "IsolatedAdapter", "call_adapter", "copy_inputs"]

#: Seconds an adapter call (and the adapter's import) may take before it is reported as hanging. An
#: honest call takes milliseconds to seconds; the slowest seen is a first JAX compile of a DNC core
#: unroll (tens of seconds on a loaded 2-core machine). Ten minutes leaves that a wide margin and still
#: ends a hung run.
DEFAULT_TIMEOUT = 600.0
#: Characters of an adapter's standard output quoted in the failure.
QUOTE = 200

_HEADER = struct.Struct("!Q")


class AdapterFailure(Exception):
    """An adapter call that gave no result; the message is the reason (``the adapter raised ...``)."""


def copy_inputs(tensors: Mapping[str, Any]) -> dict[str, Any]:
    """A fresh dict with a copy of every array of ``tensors``: each call gets inputs of its own."""
    return {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in tensors.items()}


def call_adapter(adapter: Any, name: str, given: Mapping[str, Any], dtype: str,
                 config: Mapping[str, Any]) -> tuple[Mapping[str, Any] | None, str]:
    """``(results, "")`` from ``adapter`` on case ``name``, or ``(None, reason)`` when it gave none.

    ``adapter`` is an [`Adapter`][refmem.golden.Adapter] (called in this process) or an
    [`IsolatedAdapter`][refmem.golden.isolated.IsolatedAdapter]. The adapter gets its own copy of
    ``given`` and of ``config``; anything it raises (``SystemExit`` included) fails the call.
    """
    try:
        results = adapter(name, copy_inputs(given), dtype, dict(config))
    except AdapterFailure as exc:
        return None, f"{name}: {exc}"
    except SystemExit as exc:
        return None, f"{name}: the adapter called sys.exit({exc.code!r})"
    except Exception as exc:  # noqa: BLE001 - an adapter that raises fails the case
        return None, f"{name}: the adapter raised {type(exc).__name__}: {exc}"
    if not isinstance(results, Mapping):
        return None, f"{name}: the adapter raised TypeError: the adapter returned {type(results).__name__}, expected a dict"
    return results, ""


# ----------------------------------------------------------------------------- framing


def _send(fd: int, obj: Any, deadline: float | None = None) -> None:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    view = memoryview(_HEADER.pack(len(data)) + data)
    while view:
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([], [fd], [], left)[1]:
                raise TimeoutError
        n = os.write(fd, view[:1 << 20])
        view = view[n:]


def _recv(fd: int, deadline: float | None = None) -> Any:
    """The next object on ``fd``; ``EOFError`` when the writer is gone, ``TimeoutError`` past ``deadline``."""

    def read(n: int) -> bytes:
        chunks, got = [], 0
        while got < n:
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0 or not select.select([fd], [], [], left)[0]:
                    raise TimeoutError
            chunk = os.read(fd, min(n - got, 1 << 20))
            if not chunk:
                raise EOFError
            chunks.append(chunk)
            got += len(chunk)
        return b"".join(chunks)

    (size,) = _HEADER.unpack(read(_HEADER.size))
    return pickle.loads(read(size))


# ----------------------------------------------------------------------------- the parent side

_LIVE: "weakref.WeakSet[IsolatedAdapter]" = weakref.WeakSet()


@atexit.register
def _close_all() -> None:
    for adapter in list(_LIVE):
        adapter.close()


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


class IsolatedAdapter:
    """An adapter run in a child process, with the interface of [`Adapter`][refmem.golden.Adapter].

    ``spec`` is what [`load_adapter`][refmem.golden.load_adapter] takes; the child imports it
    (this process never does) and reports its case patterns. A call that gives no result raises
    [`AdapterFailure`][refmem.golden.isolated.AdapterFailure] with the reason; ``timeout`` bounds
    each call and the import, in seconds. Raises [`GoldenError`][refmem.golden.GoldenError] when
    the adapter cannot be loaded (the same one-line errors as in process).
    """

    def __init__(self, spec: str, timeout: float = DEFAULT_TIMEOUT):
        if not timeout > 0:
            raise ValueError(f"timeout: expected a positive number of seconds, got {timeout!r}")
        self.spec = spec
        self.timeout = float(timeout)
        self.patterns: tuple[str, ...] = ()
        self._proc: subprocess.Popen | None = None
        self._lock = threading.Lock()
        _LIVE.add(self)
        self._start()

    # the Adapter interface
    def implements(self, case: str) -> bool:
        import fnmatch

        return any(fnmatch.fnmatchcase(case, p) for p in self.patterns)

    def __call__(self, case: str, tensors: dict[str, np.ndarray], dtype: str, config: dict) -> Mapping[str, Any]:
        with self._lock:
            if self._proc is None:
                self._start()
            before = self._out.seek(0, os.SEEK_END)
            deadline = time.monotonic() + self.timeout
            try:
                _send(self._req, (case, tensors, dtype, dict(config)), deadline)
                answer = _recv(self._res, deadline)
            except TimeoutError:
                self._kill()
                raise AdapterFailure(f"the adapter did not answer within {self.timeout:g} s "
                                     "(its process was killed; --timeout sets the limit)") from None
            except (EOFError, BrokenPipeError, OSError):
                raise AdapterFailure(self._death()) from None
            printed = self._printed(before)
            kind, value = answer
            if printed:
                raise AdapterFailure(f"the adapter wrote to standard output ({printed}); "
                                     "write diagnostics to standard error")
            if kind == "ok":
                return value
            raise AdapterFailure(value)

    def close(self) -> None:
        """End the child (if any)."""
        with self._lock:
            self._kill(graceful=True)
        _LIVE.discard(self)

    def __enter__(self) -> "IsolatedAdapter":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __reduce__(self):  # a worker process starts its own child
        return (IsolatedAdapter, (self.spec, self.timeout))

    # the child
    def _start(self) -> None:
        from .storage import GoldenError

        req_r, req_w = os.pipe()
        res_r, res_w = os.pipe()
        self._out = tempfile.TemporaryFile()
        root = str(Path(__file__).resolve().parent.parent.parent)
        env = dict(os.environ)
        env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        main_thread = threading.current_thread() is threading.main_thread()
        cmd = [sys.executable, "-c", "from refmem.golden.isolated import _child; _child()",
               str(req_r), str(res_w), str(os.getpid()), "1" if main_thread else "0", self.spec]
        try:
            self._proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=self._out, stderr=None,
                                          pass_fds=(req_r, res_w), start_new_session=True, env=env)
        finally:
            os.close(req_r)
            os.close(res_w)
        self._req, self._res = req_w, res_r
        try:
            kind, value = _recv(self._res, time.monotonic() + self.timeout)
        except TimeoutError:
            self._kill()
            raise GoldenError(f"adapter {self.spec!r}: importing it took more than {self.timeout:g} s") from None
        except (EOFError, OSError):
            why = self._death()
            raise GoldenError(f"adapter {self.spec!r}: its process ended while importing it ({why})") from None
        if kind != "ready":
            self._kill()
            raise GoldenError(value)
        self.patterns = tuple(value)
        self._out.seek(0, os.SEEK_END)  # what the import printed is not a call's output

    def _printed(self, before: int) -> str:
        self._out.seek(before)
        text = self._out.read(4 * QUOTE).decode("utf-8", "replace")
        self._out.seek(0, os.SEEK_END)
        if not text:
            return ""
        quoted = text[:QUOTE].strip()
        return repr(quoted) + (" ..." if len(text) > QUOTE else "")

    def _death(self) -> str:
        """Why the child is gone (and forget it)."""
        proc = self._proc
        code = None
        if proc is not None:
            try:
                code = proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        self._kill()
        if code is None:
            return "the adapter's process stopped answering"
        if code < 0:
            return f"the adapter's process was killed by {_signal_name(-code)}"
        return f"the adapter's process exited with status {code}"

    def _kill(self, graceful: bool = False) -> None:
        proc, self._proc = self._proc, None
        for fd in ("_req", "_res"):
            f = getattr(self, fd, None)
            if f is not None:
                try:
                    os.close(f)
                except OSError:
                    pass
                setattr(self, fd, None)
        if proc is None:
            return
        if graceful:  # the request pipe is closed: an idle child exits by itself
            try:
                proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                pass
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass


# ----------------------------------------------------------------------------- the child side


def _flush_stdout() -> None:
    try:
        sys.stdout.flush()
    except Exception:  # noqa: BLE001
        pass
    try:
        ctypes.CDLL(None).fflush(None)
    except Exception:  # noqa: BLE001
        pass


def _host(value: Any) -> Any:
    """A result as a NumPy array (dtype kept) that pickles without the adapter's framework."""
    from .comparison import to_host

    try:
        out = to_host(value)
    except Exception as exc:  # noqa: BLE001 - compare reports it as not an array
        return f"<{type(value).__name__}: not an array: {type(exc).__name__}: {exc}>"
    if out.dtype == object:
        return f"<{type(value).__name__}: not an array>"
    return out


def _child() -> None:
    req, res, parent, main_thread, spec = (int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]),
                                           sys.argv[4] == "1", sys.argv[5])
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when this ends
    from ..executor import die_with_parent

    die_with_parent(parent, main_thread)
    faulthandler.enable(file=sys.stderr, all_threads=False)
    from .adapters import load_adapter
    from .storage import GoldenError

    try:
        adapter = load_adapter(spec)
    except GoldenError as exc:
        _send(res, ("error", str(exc)))
        return
    except BaseException as exc:  # noqa: BLE001 - an import that raises or exits
        what = f"called sys.exit({exc.code!r})" if isinstance(exc, SystemExit) else f"raised {type(exc).__name__}: {exc}"
        _send(res, ("error", f"adapter {spec!r}: importing it {what}"))
        return
    _flush_stdout()
    _send(res, ("ready", list(adapter.patterns)))
    while True:
        try:
            case, tensors, dtype, config = _recv(req)
        except EOFError:
            return
        try:
            results = adapter(case, tensors, dtype, config)
            if not isinstance(results, Mapping):
                answer = ("failed", f"the adapter raised TypeError: the adapter returned "
                                    f"{type(results).__name__}, expected a dict")
            else:
                answer = ("ok", {k: _host(v) for k, v in results.items()})
        except SystemExit as exc:
            answer = ("failed", f"the adapter called sys.exit({exc.code!r})")
        except BaseException as exc:  # noqa: BLE001 - reported as the adapter's failure
            answer = ("failed", f"the adapter raised {type(exc).__name__}: {exc}")
        _flush_stdout()
        try:
            _send(res, answer)
        except Exception as exc:  # noqa: BLE001 - e.g. a result that does not pickle
            _send(res, ("failed", f"the adapter's result could not be sent back: {type(exc).__name__}: {exc}"))
