"""Assertions for users' test suites: hold an implementation to refmem's golden tensors.

    from refmem.testing import assert_matches_golden

    def test_my_access_step():
        g = refmem.golden.load("dnc/access_step/paper")
        results = my_impl(g.given("float32"))           # {"outputs/...": ..., "grads/...": ...}
        assert_matches_golden("dnc/access_step/paper", results, "float32")

A failure raises :class:`AssertionError` whose message starts with the first divergence
(GOLDEN.md ``order``, the earliest time step first), then lists the failing tensors and
problems. Results may be arrays of any framework (NumPy, torch, JAX, CuPy).
"""

from __future__ import annotations

import os
from typing import Any, Mapping

__all__ = ["assert_matches_golden"]


def assert_matches_golden(case: Any, results: Mapping[str, Any], dtype: str = "float64",
                          directory: str | os.PathLike | None = None) -> None:
    """Assert that ``results`` match golden case ``case`` (a name or a loaded
    :class:`refmem.golden.Golden`) at the tolerance of ``dtype``.

    ``directory``: the golden directory (default: the checkout's ``golden/``, else the copy
    shipped with refmem). Raises :class:`AssertionError` naming the first divergence.
    """
    from . import golden

    g = case if isinstance(case, golden.Golden) else golden.load(str(case), directory)
    if not isinstance(results, Mapping):
        raise AssertionError(f"{g.name}: results must be a dict of role-prefixed names, got {type(results).__name__}")
    report = golden.compare(g, results, dtype)
    if not report.passed:
        raise AssertionError(f"{g.name} ({dtype}): " + report.failure_text(g.name))
