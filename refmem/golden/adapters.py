"""Verify a user's implementation: the adapter protocol (examples/README.md) and
[`verify`][refmem.golden.adapters.verify]."""

from __future__ import annotations

import fnmatch
import hashlib
import importlib
import importlib.util
import inspect
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from .comparison import Report, compare, load
from .storage import GoldenError, read_manifest, resolve_dir
from .tolerances import DTYPES

__all__ = ["Adapter", "load_adapter", "select", "verify", "verify_case"]


@dataclass(frozen=True)
class Adapter:
    """A user's implementation: ``function(case, tensors, dtype[, config=...]) -> {name: array}``
    and the fnmatch ``patterns`` of the case names it implements."""

    spec: str
    function: Callable[..., Mapping[str, Any]]
    patterns: tuple[str, ...]

    def implements(self, case: str) -> bool:
        return any(fnmatch.fnmatchcase(case, p) for p in self.patterns)

    def __call__(self, case: str, tensors: dict[str, np.ndarray], dtype: str, config: dict) -> Mapping[str, Any]:
        try:
            params = inspect.signature(self.function).parameters
            takes_config = "config" in params or any(p.kind is p.VAR_KEYWORD for p in params.values())
        except (TypeError, ValueError):
            takes_config = False
        if takes_config:
            return self.function(case, tensors, dtype, config=config)
        return self.function(case, tensors, dtype)


def load_adapter(spec: str) -> Adapter:
    """Import ``package.module:function`` (or ``path/to/file.py:function``).

    The case patterns come from the function's ``cases`` attribute or else the
    module's ``CASES`` list. The current directory is put on ``sys.path`` so that
    ``examples.torch_dnc:run`` works from the repository root.
    """
    if ":" not in spec:
        raise GoldenError(f"adapter {spec!r}: expected package.module:function")
    mod_name, _, fn_name = spec.rpartition(":")
    if not mod_name or not fn_name:
        raise GoldenError(f"adapter {spec!r}: expected package.module:function (a module and a function name)")
    try:
        if mod_name.endswith(".py"):
            path = Path(mod_name)
            if not path.exists():
                raise GoldenError(f"adapter {spec!r}: no file {path}")
            if not path.is_file():
                raise GoldenError(f"adapter {spec!r}: {path} is not a file")
            uniq = "refmem_adapter_" + hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:12]
            s = importlib.util.spec_from_file_location(uniq, path)
            module = importlib.util.module_from_spec(s)
            sys.modules[uniq] = module
            try:
                s.loader.exec_module(module)
            except BaseException:
                sys.modules.pop(uniq, None)
                raise
        else:
            cwd = os.getcwd()
            if cwd not in sys.path and "" not in sys.path:
                sys.path.insert(0, cwd)
            module = importlib.import_module(mod_name)
    except GoldenError:
        raise
    except ImportError as exc:
        raise GoldenError(f"adapter {spec!r}: cannot import {mod_name}: {exc}") from exc
    except (Exception, SystemExit) as exc:  # the adapter's own code failed while it was imported
        what = f"called sys.exit({exc.code!r})" if isinstance(exc, SystemExit) else f"raised {type(exc).__name__}: {exc}"
        raise GoldenError(f"adapter {spec!r}: importing {mod_name} {what}") from exc
    fn = getattr(module, fn_name, None)
    if not callable(fn):
        raise GoldenError(f"adapter {spec!r}: {mod_name} has no function {fn_name!r}")
    patterns = getattr(fn, "cases", None) or getattr(module, "CASES", None)
    if not patterns:
        raise GoldenError(f"adapter {spec!r}: declare the cases it implements in {mod_name}.CASES (fnmatch patterns)")
    if isinstance(patterns, str):
        patterns = [patterns]
    if not isinstance(patterns, (list, tuple, set, frozenset)) or not all(isinstance(p, str) for p in patterns):
        raise GoldenError(f"adapter {spec!r}: CASES must be a list of fnmatch patterns (strings), "
                          f"got {type(patterns).__name__} {patterns!r:.60}")
    return Adapter(spec, fn, tuple(patterns))


def select(adapter: Adapter, manifest: Mapping[str, Any], patterns: Sequence[str] | None = None) -> list[str]:
    """The manifest's cases ``adapter`` declares, narrowed by ``patterns`` (fnmatch or substring)."""
    names = [n for n in sorted(manifest["cases"]) if adapter.implements(n)]
    if patterns:
        names = [n for n in names if any(fnmatch.fnmatchcase(n, p) or p in n for p in patterns)]
    return names


def verify_case(adapter: Adapter, name: str, dtype: str, root: Path, manifest: Mapping[str, Any]) -> Report:
    """Run ``adapter`` on case ``name`` and compare; a load error or an adapter that gives no result
    (it raises; run in a child process, ``refmem.golden.isolated.IsolatedAdapter``,
    also one that exits, crashes, hangs or prints) is a problem of the report, not an exception."""
    report = Report()
    try:
        golden = load(name, root, dict(manifest))
    except GoldenError as exc:
        report.problems.append(str(exc))
        return report
    from .isolated import call_adapter

    results, problem = call_adapter(adapter, name, golden.given(dtype), dtype, golden.config)
    if results is None:  # it raised, exited, crashed, hung or printed: report and go on
        report.problems.append(problem)
        return report
    report.extend(compare(golden, results, dtype))
    return report


def verify(
    adapter: Adapter | str,
    dtype: str = "float64",
    directory: str | os.PathLike | None = None,
    patterns: Sequence[str] | None = None,
    on_case: Callable[[str], None] | None = None,
) -> Report:
    """Run ``adapter`` on every golden case it declares (narrowed by ``patterns``) and compare.

    The adapter gets inputs, params, state and cotangents (floats cast to ``dtype``)
    and returns ``outputs/<name>``, ``grads/<role>/<name>`` and, optionally, any
    ``intermediates/<name>``; each is compared with the reference at the tolerance of
    ``dtype``, and each failing case names its first divergence. An exception inside
    the adapter fails that case and the others still run. ``adapter`` given by name is
    imported and called in this process; pass an
    ``refmem.golden.isolated.IsolatedAdapter`` to run it in a child process
    (what ``refmem golden verify`` does).
    """
    if dtype not in DTYPES:
        raise GoldenError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    if isinstance(adapter, str):
        adapter = load_adapter(adapter)
    root = resolve_dir(directory)
    manifest = read_manifest(root)
    names = select(adapter, manifest, patterns)
    if not names:
        raise GoldenError(
            f"adapter {adapter.spec}: no golden case in {root} matches {list(adapter.patterns)}"
            + (f" and {list(patterns)}" if patterns else "")
        )
    report = Report()
    for name in names:
        report.extend(verify_case(adapter, name, dtype, root, manifest))
        if on_case is not None:
            on_case(name)
    return report
