"""The options of ``refmem verify`` and ``refmem golden verify`` that say where the adapter runs.

By default the adapter runs in a child process ([`IsolatedAdapter`][refmem.golden.isolated.IsolatedAdapter]):
an adapter that exits, crashes, hangs past ``--timeout`` or prints to standard output fails its case
with the reason and the run goes on. ``--in-process`` imports and calls it in refmem's own process, as
``refmem.testing`` and the pytest plugin do by default (faster to start, nothing isolated).
"""

from __future__ import annotations

from argparse import ArgumentParser, Namespace
from typing import Any

#: ``refmem.golden.isolated.DEFAULT_TIMEOUT``, repeated so that building the parser imports no NumPy
#: (``refmem --help`` stays fast); tests/test_campaign.py holds the two equal.
DEFAULT_TIMEOUT = 600.0


def add_arguments(p: ArgumentParser) -> None:
    from ..cli import positive_float

    p.add_argument("--timeout", type=positive_float, default=DEFAULT_TIMEOUT, metavar="S",
                   help=f"seconds one adapter call (and its import) may take before it is reported as hanging "
                        f"and its process killed (default {DEFAULT_TIMEOUT:g}: far above a first JAX compile)")
    p.add_argument("--in-process", action="store_true",
                   help="run the adapter in refmem's own process (default: a child process, so that an adapter "
                        "that exits, crashes, hangs or prints fails its case and the run goes on)")


def open_adapter(args: Namespace) -> Any:
    """The adapter of ``args.adapter``: in a child process unless ``--in-process``."""
    from ..golden.adapters import load_adapter
    from ..golden.isolated import IsolatedAdapter

    if args.in_process:
        return load_adapter(args.adapter)
    return IsolatedAdapter(args.adapter, args.timeout)
