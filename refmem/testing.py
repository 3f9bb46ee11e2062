"""Assertions for users' test suites: hold an implementation to refmem's golden tensors.

    from refmem.testing import assert_matches_golden

    def test_my_access_step():
        g = refmem.golden.load("dnc/access_step/paper")
        results = my_impl(g.given("float32"))           # {"outputs/...": ..., "grads/...": ...}
        assert_matches_golden("dnc/access_step/paper", results, "float32")

A failure raises `AssertionError` whose message starts with the first divergence
([docs/golden-format.md](../golden-format.md), ``order``, the earliest time step first), then lists the failing tensors and
problems. Results may be arrays of any framework (NumPy, torch, JAX, CuPy).

[`differential`][refmem.testing.differential] holds an adapter to live refmem at drawn shapes (failures shrunk by Hypothesis)
(:mod:`refmem.differential`)::

    def test_my_access_step_everywhere():
        differential("mypkg.adapter:run", "dnc/access_step/*", "float32", max_examples=50)
"""

from __future__ import annotations

import os
from typing import Any, Mapping

__all__ = ["assert_matches_golden", "differential"]


def assert_matches_golden(case: Any, results: Mapping[str, Any], dtype: str = "float64",
                          directory: str | os.PathLike | None = None) -> None:
    """Assert that ``results`` match golden case ``case`` (a name or a loaded
    [`refmem.golden.Golden`][refmem.golden.Golden]) at the tolerance of ``dtype``.

    ``directory``: the golden directory (default: the checkout's ``golden/``, else the copy
    shipped with refmem). Raises `AssertionError` naming the first divergence.
    """
    from . import golden

    g = case if isinstance(case, golden.Golden) else golden.load(str(case), directory)
    if not isinstance(results, Mapping):
        raise AssertionError(f"{g.name}: results must be a dict of role-prefixed names, got {type(results).__name__}")
    report = golden.compare(g, results, dtype)
    if not report.passed:
        raise AssertionError(f"{g.name} ({dtype}): " + report.failure_text(g.name))


def differential(adapter: Any, case_pattern: Any = None, dtype: str = "float64", max_examples: int = 100,
                 seed: int = 0, save_failures: str | os.PathLike | None = None,
                 batch_invariance: bool = False, *, isolate: bool = False, timeout: float | None = None,
                 workers: int = 1):
    """Assert that ``adapter`` (``"package.module:function"``, a path ``file.py:function`` or a
    [`refmem.golden.Adapter`][refmem.golden.Adapter]) agrees with live refmem on ``max_examples`` drawn
    examples of every case it declares that matches ``case_pattern`` (fnmatch or substring; a
    list for several), in ``dtype``.

    Raises `AssertionError` naming, per failing case, the shrunk failing example and its
    first divergence (with ``save_failures``, the golden reproducer written there). Returns the
    ``refmem.differential.Result`` when every case passes. Call it from a plain test
    function, not from inside a ``@given`` test (it runs its own Hypothesis search).

    The adapter runs in this process by default (fast, and a function of your test module works).
    ``isolate=True`` (an adapter given by name) runs it in a child process, as ``refmem verify``
    does: one that exits, crashes, prints or hangs past ``timeout`` seconds (default
    ``refmem.golden.isolated.DEFAULT_TIMEOUT``) fails its case instead of your
    test session. ``workers``: run the examples in that many local processes (an adapter given by
    name); the verdict does not depend on it.
    """
    from . import differential as D
    from .executor import Executor
    from .golden.isolated import DEFAULT_TIMEOUT, IsolatedAdapter

    own = None
    if isolate:
        if not isinstance(adapter, str):
            raise TypeError(f"isolate: an isolated adapter is given by name (package.module:function), "
                            f"got {type(adapter).__name__}")
        adapter = own = IsolatedAdapter(adapter, DEFAULT_TIMEOUT if timeout is None else timeout)
    try:
        with Executor(workers) as executor:
            result = D.differential(adapter, case_pattern, dtype, max_examples, seed, save_failures, batch_invariance,
                                    executor=executor)
    finally:
        if own is not None:
            own.close()
    if not result.passed:
        lines = []
        for r in result.cases:
            if not r.passed:
                lines.append(f"{r.case} ({dtype}): " + r.report.failure_text(r.case))
        raise AssertionError("\n".join(lines))
    return result
