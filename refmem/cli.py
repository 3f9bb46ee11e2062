"""The ``refmem`` command line: ``refmem check``, ``golden``, ``bench``, ``train``, ``plot``.

Each sub-command lives in ``refmem/commands/<name>.py`` and provides ``HELP``,
``add_arguments(parser)`` and ``run(args) -> int``. An expected failure (an
unknown module, a backend that is missing) is raised as :class:`CommandError` or
:class:`refmem.xp.BackendError` and printed as one line, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Sequence, TextIO

__all__ = ["CommandError", "Progress", "main"]

#: Sub-command name -> module.
COMMANDS = {
    "check": "refmem.commands.check",
    "golden": "refmem.commands.golden",
    "bench": "refmem.commands.bench",
    "train": "refmem.commands.train",
    "plot": "refmem.commands.plot",
}


class CommandError(RuntimeError):
    """An error the user can fix; printed as ``refmem: error: <message>``."""


class Progress:
    """A one-line text progress bar on a stream (standard error by default).

    Redraws in place on a terminal; elsewhere it prints a line every tenth of
    the way, so logs stay short.
    """

    def __init__(self, total: int, label: str = "", stream: TextIO | None = None, width: int = 28):
        self.total = max(int(total), 1)
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        self.width = width
        self.done = 0
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._last_decile = -1

    def update(self, n: int = 1, text: str = "") -> None:
        self.done = min(self.done + n, self.total)
        filled = int(self.width * self.done / self.total)
        line = f"{self.label} [{'#' * filled}{'.' * (self.width - filled)}] {self.done}/{self.total} {text}"
        if self.tty:
            self.stream.write("\r" + line[:120].ljust(120))
            self.stream.flush()
        else:
            decile = (10 * self.done) // self.total
            if decile != self._last_decile:
                self._last_decile = decile
                self.stream.write(line + "\n")
                self.stream.flush()

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


def _load_commands() -> dict[str, object]:
    found = {}
    for name, path in COMMANDS.items():
        try:
            found[name] = importlib.import_module(path)
        except ModuleNotFoundError as exc:
            if exc.name == path:
                continue  # that command is not part of this build
            raise
    return found


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, object]]:
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="refmem",
        description="Reference memory and attention networks: gradient checks, golden tensors, benchmarks.",
    )
    parser.add_argument("--version", action="version", version=f"refmem {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands = _load_commands()
    for name, mod in commands.items():
        p = sub.add_parser(name, help=mod.HELP, description=mod.HELP)
        mod.add_arguments(p)
    return parser, commands


def main(argv: Sequence[str] | None = None) -> int:
    from .catalogue import UnknownModuleError
    from .xp import BackendError

    parser, commands = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 2
    try:
        return int(commands[args.command].run(args) or 0)
    except (CommandError, BackendError, UnknownModuleError) as exc:
        print(f"refmem: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
