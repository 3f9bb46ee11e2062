"""A pytest plugin: one test per golden case for your implementation.

    pytest --refmem-adapter mypkg.adapter:run [--refmem-case PATTERN] [--refmem-dtype float32]
           [--refmem-golden-dir DIR] [--refmem-differential N] [--refmem-isolate [--refmem-timeout S]]

Registered as the ``pytest11`` entry point ``refmem`` (or load it with
``-p refmem.pytest_plugin``). The adapter follows examples/README.md's protocol. Each
golden case the adapter declares (narrowed by ``--refmem-case``, fnmatch or substring,
repeatable) becomes a test item ``refmem-golden::<case>[<dtype>]`` whose failure text is the
case's first divergence. Without ``--refmem-adapter`` the plugin only registers its
options: it imports nothing else and adds no test. With ``--refmem-differential N`` every
such catalogue case also becomes an item ``refmem-differential::<case>[<dtype>]`` that runs
``refmem verify``'s search (``refmem.differential``) for N examples.

The adapter is imported and called in the pytest process by default. ``--refmem-isolate`` runs
it in a child process (as ``refmem verify`` and ``refmem golden verify`` do): an adapter that
exits, crashes, prints or hangs past ``--refmem-timeout`` seconds fails its item, not the session.
"""

from __future__ import annotations

import pytest

__all__ = ["GoldenCase", "GoldenMismatch", "DifferentialCase"]


def pytest_addoption(parser) -> None:
    group = parser.getgroup("refmem", "refmem golden tensors")
    group.addoption("--refmem-adapter", default=None, metavar="MODULE:FUNCTION",
                    help="run this refmem golden adapter (package.module:function or path.py:function) "
                         "on every golden case it declares, one test per case")
    group.addoption("--refmem-case", action="append", default=None, metavar="PATTERN",
                    help="only golden cases matching PATTERN (fnmatch or substring; repeatable)")
    group.addoption("--refmem-dtype", default="float64", choices=["float32", "float64"],
                    help="dtype the inputs are cast to and whose tolerance applies (default float64)")
    group.addoption("--refmem-golden-dir", default=None, metavar="DIR",
                    help="golden directory (default: the checkout's golden/, else the copy shipped with refmem)")
    group.addoption("--refmem-differential", type=int, default=0, metavar="N",
                    help="also test every case the adapter declares against live refmem at N drawn "
                         "examples (refmem verify), one test per case")
    group.addoption("--refmem-isolate", action="store_true", default=False,
                    help="run the adapter in a child process (default: in the pytest process); an adapter that "
                         "exits, crashes, prints or hangs fails its item")
    group.addoption("--refmem-timeout", type=float, default=None, metavar="S",
                    help="with --refmem-isolate: seconds one adapter call may take (default 600)")


class GoldenMismatch(AssertionError):
    """A golden case the adapter does not reproduce; the message is the report's failure text."""


class GoldenCase(pytest.Item):
    """One golden case run through the adapter."""

    def __init__(self, *, case: str, adapter, dtype: str, root, manifest, **kwargs) -> None:
        super().__init__(**kwargs)
        self.case, self.adapter, self.dtype, self.root, self.manifest = case, adapter, dtype, root, manifest

    def runtest(self) -> None:
        from .golden.adapters import verify_case

        report = verify_case(self.adapter, self.case, self.dtype, self.root, self.manifest)
        if not report.passed:
            raise GoldenMismatch(f"{self.case} ({self.dtype}, adapter {self.adapter.spec}):\n"
                                 + report.failure_text(self.case))

    def repr_failure(self, excinfo, style=None):
        if isinstance(excinfo.value, GoldenMismatch):
            return str(excinfo.value)
        return super().repr_failure(excinfo, style=style)

    def reportinfo(self):
        return self.root, None, f"refmem golden {self.case} [{self.dtype}]"


class DifferentialCase(pytest.Item):
    """One catalogue case searched by [`refmem.differential.run_case`][refmem.differential.run_case]."""

    def __init__(self, *, case, adapter, dtype: str, examples: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.case, self.adapter, self.dtype, self.examples = case, adapter, dtype, examples

    def runtest(self) -> None:
        from .differential import run_case

        r = run_case(self.adapter, self.case, self.dtype, self.examples)
        if not r.passed:
            raise GoldenMismatch(f"{self.case.name} ({self.dtype}, adapter {self.adapter.spec}, differential):\n"
                                 + r.report.failure_text(self.case.name))

    def repr_failure(self, excinfo, style=None):
        if isinstance(excinfo.value, GoldenMismatch):
            return str(excinfo.value)
        return super().repr_failure(excinfo, style=style)

    def reportinfo(self):
        return self.path, None, f"refmem differential {self.case.name} [{self.dtype}]"


def pytest_collection_modifyitems(session, config, items) -> None:
    spec = config.getoption("--refmem-adapter")
    if not spec:
        return
    from . import golden
    from .golden.adapters import select
    from .golden.storage import resolve_dir

    dtype = config.getoption("--refmem-dtype")
    try:
        if config.getoption("--refmem-isolate"):
            from .golden.isolated import DEFAULT_TIMEOUT, IsolatedAdapter

            timeout = config.getoption("--refmem-timeout") or DEFAULT_TIMEOUT
            adapter = IsolatedAdapter(spec, timeout)
            config.add_cleanup(adapter.close)
        else:
            adapter = golden.load_adapter(spec)
        root = resolve_dir(config.getoption("--refmem-golden-dir"))
        manifest = golden.read_manifest(root)
    except (golden.GoldenError, ValueError) as exc:
        raise pytest.UsageError(f"--refmem-adapter {spec}: {exc}") from None
    names = select(adapter, manifest, config.getoption("--refmem-case"))
    if not names:
        raise pytest.UsageError(f"--refmem-adapter {spec}: no golden case in {root} matches "
                                f"{list(adapter.patterns)}" + (f" and {config.getoption('--refmem-case')}"
                                                               if config.getoption("--refmem-case") else ""))
    for name in names:
        items.append(GoldenCase.from_parent(session, name=f"refmem-golden::{name}[{dtype}]", case=name,
                                            adapter=adapter, dtype=dtype, root=root, manifest=manifest))
    n = config.getoption("--refmem-differential")
    if n and n > 0:
        from .differential import select_cases

        for case in select_cases(adapter, config.getoption("--refmem-case")):
            items.append(DifferentialCase.from_parent(session, name=f"refmem-differential::{case.name}[{dtype}]",
                                                      case=case, adapter=adapter, dtype=dtype, examples=n))
