"""Shared fixtures and helpers: the backends to run under, the Hypothesis profiles, and `run`, the
one way a test runs a child process (its output is shown when it fails)."""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from refmem import xp as rx

settings.register_profile(
    "ci",
    max_examples=15,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile("dev", max_examples=60, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def _available(name: str) -> bool:
    try:
        rx.backend(name)
        return True
    except rx.BackendError:
        return False


#: numpy and array_api_strict always; torch and cupy when present.
BACKEND_PARAMS = [
    pytest.param(name, marks=pytest.mark.skipif(not _available(name), reason=f"{name} not available"))
    for name in rx.BACKENDS
]


@pytest.fixture(params=BACKEND_PARAMS)
def backend_name(request):
    return request.param


@pytest.fixture
def xp(backend_name):
    return rx.backend(backend_name)


@pytest.fixture(scope="session")
def fresh_export(tmp_path_factory) -> Path:
    """A fresh export of the whole catalogue (``golden.export``), made once per test process and
    shared read-only by the tests that compare against it (the export is the dear part: long double
    references and emulated float32 runs of every case). A test that changes files copies them first."""
    from refmem import golden

    d = tmp_path_factory.mktemp("fresh_export")
    golden.export(d)
    return d


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """Under pytest-xdist (``--dist loadgroup``) the tests that use `fresh_export` run on one worker,
    which exports once; before xdist reads the groups.

    Then the long tests go first: the groups (one worker each) and those marked ``slow``, in their
    order, then the rest. xdist hands out the first quarter of the items round-robin and the rest
    as workers free up, so the run ends on short tests instead of one worker finishing a long one
    while the other waits (the order of tests within a module is kept)."""
    for item in items:
        if "fresh_export" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.xdist_group("fresh_export"))
    items.sort(key=lambda item: 0 if (item.get_closest_marker("slow") or item.get_closest_marker("xdist_group")) else 1)


def has_module(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


REPO = Path(__file__).resolve().parent.parent

#: Seconds a child process may run before its test fails as hung. A guard against a hang, never a
#: measure of speed: generous for a loaded 2-core CI machine (CI's own limit is 90 minutes).
CHILD_TIMEOUT = float(os.environ.get("REFMEM_TEST_CHILD_TIMEOUT", "1800"))


def child_env(**extra: str | None) -> dict[str, str]:
    """This process's environment with the checkout first on ``PYTHONPATH`` (a child imports this
    refmem and ``examples``, not an installed copy), updated with ``extra`` (``None`` removes a name)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    for k, v in extra.items():
        if v is None:
            env.pop(k, None)
        else:
            env[k] = v
    return env


def _ending(returncode: int) -> str:
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exit status {returncode}"


def _tail(text: str | bytes | None, limit: int = 6000) -> str:
    if text is None:
        return ""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return text if len(text) <= limit else "[...]" + text[-limit:]


def run(args, *, expect: int | tuple[int, ...] | None = 0, timeout: float | None = None,
        **kwargs) -> subprocess.CompletedProcess:
    """Run a child with its stdout and stderr captured as text and return it.

    The test fails, showing the command, how the child ended and the end of its stdout and stderr,
    when the child's exit status is not ``expect`` (an int or a tuple of them; ``None`` takes any
    status), when it dies of a signal (unless ``expect`` names that negative status), or when it runs
    past ``timeout`` seconds (default `CHILD_TIMEOUT`). Keyword arguments go to
    ``subprocess.run`` (``cwd``, ``env``, ``input``, ...).
    """
    kwargs.setdefault("text", True)
    if "stdout" not in kwargs and "stderr" not in kwargs:
        kwargs["capture_output"] = True
    shown = " ".join(str(a) for a in args)
    try:
        proc = subprocess.run(list(map(str, args)), timeout=timeout or CHILD_TIMEOUT, **kwargs)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"{shown}\nran past {exc.timeout:.0f} s and was killed\n--- stdout:\n{_tail(exc.stdout)}"
                    f"\n--- stderr:\n{_tail(exc.stderr)}", pytrace=False)
    wanted = (expect,) if isinstance(expect, int) else expect
    if (wanted is not None and proc.returncode not in wanted) or (wanted is None and proc.returncode < 0):
        pytest.fail(f"{shown}\n{_ending(proc.returncode)} (expected {expect})\n--- stdout:\n{_tail(proc.stdout)}"
                    f"\n--- stderr:\n{_tail(proc.stderr)}", pytrace=False)
    return proc


def pytest_configure(config):
    """pytest-xdist's workers ignore SIGINT (the controller takes Ctrl-C), and an ignored signal is
    inherited through exec: the tests that interrupt a child (`refmem golden export` killed mid-write,
    Ctrl-C ending a command with one line) would find it deaf and see the command finish. A worker
    takes SIGINT back as Python's default (KeyboardInterrupt), which its children then start with."""
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
