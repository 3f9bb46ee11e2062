"""The ``refmem`` command line: ``refmem check``, ``golden``, ``verify``, ``bench``, ``train``, ``plot``, ``exercise``.

Each sub-command lives in ``refmem/commands/<name>.py`` and provides ``HELP``,
``add_arguments(parser)`` and ``run(args) -> int``.

Errors. A user error (a bad option value, an unknown module, a backend that is
missing, an unwritable output path, a junk ``REFMEM_JOBS``) is printed as one
line on standard error, ``refmem <command>: error: <message>``, and the exit
status is 2; never a traceback. Commands raise `CommandError` for these
(or refmem's own error types, see `user_error_types`); argparse's errors
take the same form. Ctrl-C ends any command with ``refmem <command>:
interrupted`` and exit status 130, and the child processes a command starts
(`run_child`) end with it. A character the terminal's encoding cannot
show is escaped, not an error. Anything else that escapes a command is a bug
and keeps its traceback.

Output paths. Every ``--json``, ``--save``, ``--out``, ``--plot``, ``--junit``
and ``--markdown`` option is checked writable before the work starts
(`check_output_path`) and written atomically: to a temporary file beside
it, renamed over it (`Outputs`). A write that still fails afterwards
goes to a temporary file instead, named on standard error, and the exit
status is 2; nothing is reported written that was not.

Option values. The ``type=`` helpers [`int_at_least`][refmem.cli.int_at_least],
[`positive_float`][refmem.cli.positive_float]
and [`nonnegative_float`][refmem.cli.nonnegative_float] refuse out-of-range numbers while parsing, so the
error names the option.

Terminal output. Progress bars and tables are drawn by ``rich`` (imported only
when one is drawn, so ``refmem --help`` stays fast). When the stream is not a
terminal (a CI log, a pipe) the progress bar prints one plain line every tenth of
the way and tables are plain text: no control codes.
"""

from __future__ import annotations

import argparse
import importlib
import math
import os
import sys
import tempfile
import textwrap
from typing import Any, Callable, Sequence, TextIO

__all__ = ["CommandError", "UsageError", "Parser", "Progress", "Outputs", "print_table", "check_output_path",
           "check_output_dir", "int_at_least", "positive_float", "nonnegative_float", "user_error_types", "run_child",
           "main"]

#: Sub-command name -> module.
COMMANDS = {
    "check": "refmem.commands.check",
    "golden": "refmem.commands.golden",
    "verify": "refmem.commands.verify",
    "bench": "refmem.commands.bench",
    "train": "refmem.commands.train",
    "plot": "refmem.commands.plot",
    "exercise": "refmem.commands.exercise",
}

#: Option destinations that name a file the command writes; checked before the work starts.
OUTPUT_OPTIONS = ("json", "save", "out", "plot", "junit", "markdown")


class CommandError(RuntimeError):
    """An error the user can fix; printed as ``refmem <command>: error: <message>``, exit status 2.

    Start the message with the option it is about (``argument --case: ...``).
    """


class UsageError(Exception):
    """An argparse error (unknown option, bad value), raised instead of argparse's exit."""

    def __init__(self, prog: str, message: str):
        super().__init__(message)
        self.prog = prog


class Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line (no usage block) and do not exit the process."""

    def error(self, message: str):  # type: ignore[override]
        raise UsageError(self.prog, message)


# ----------------------------------------------------------------------------- option types


def int_at_least(minimum: int) -> Callable[[str], int]:
    """An argparse ``type``: an integer ``>= minimum``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {text!r}")
        return value

    parse.__name__ = f"integer >= {minimum}"
    return parse


def _finite(text: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
    return value


def positive_float(text: str) -> float:
    """An argparse ``type``: a finite number ``> 0``."""
    value = _finite(text, "a finite number > 0")
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a finite number > 0, got {text!r}")
    return value


def nonnegative_float(text: str) -> float:
    """An argparse ``type``: a finite number ``>= 0``."""
    value = _finite(text, "a finite number >= 0")
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text!r}")
    return value


# ----------------------------------------------------------------------------- output paths


def _probe_dir(directory: str) -> str | None:
    """``None`` when a file can be created in ``directory``, else the reason."""
    if not os.path.exists(directory):
        return f"directory {directory} does not exist"
    if not os.path.isdir(directory):
        return f"{directory} is not a directory"
    try:
        fd, probe = tempfile.mkstemp(prefix=".refmem-probe-", dir=directory)
    except OSError as exc:
        return f"cannot create files in {directory} ({exc.strerror or exc})"
    os.close(fd)
    try:
        os.unlink(probe)
    except OSError:
        pass
    return None


def _special(path: str) -> bool:
    """Whether ``path`` is written in place rather than replaced: an existing file that is not a
    regular one (a device such as ``/dev/null``, a FIFO, a terminal), or anything under
    ``/dev`` or ``/proc`` (``/dev/stdout`` redirected to a file is still the caller's stream)."""
    if path.startswith(("/dev/", "/proc/")) or os.path.realpath(path).startswith(("/dev/", "/proc/")):
        return os.path.exists(path)
    return os.path.exists(path) and not os.path.isfile(path)


def check_output_path(path: str, option: str) -> None:
    """Raise [`CommandError`][refmem.cli.CommandError] unless ``path`` can be written as a file (checked,
    not created).

    Files are written to a temporary file beside them and renamed into place (`Outputs`),
    so refused are: an empty path, a directory, a parent directory that does not exist or in
    which no file can be created, an existing file that cannot be opened for writing. A
    device or FIFO (``/dev/null``, ``/dev/stdout``) is written in place and must be writable.
    """
    if not path:
        raise CommandError(f"argument {option}: expected a file path, got an empty string")
    if os.path.isdir(path):
        raise CommandError(f"argument {option}: {path} is a directory; expected a file path")
    if _special(path):
        if not os.access(path, os.W_OK):
            raise CommandError(f"argument {option}: cannot write {path}")
        return
    if os.path.exists(path):
        try:
            with open(path, "ab"):
                pass
        except OSError as exc:
            raise CommandError(f"argument {option}: cannot write {path} ({exc.strerror or exc})") from None
    reason = _probe_dir(os.path.dirname(os.path.realpath(path)))
    if reason:
        raise CommandError(f"argument {option}: cannot write {path}: {reason}")


def check_output_dir(path: str, option: str) -> None:
    """Raise [`CommandError`][refmem.cli.CommandError] unless ``path`` is (or can be created as) a
    writable directory."""
    if not path:
        raise CommandError(f"argument {option}: expected a directory path, got an empty string")
    target = os.path.abspath(path)
    if os.path.exists(target):
        reason = _probe_dir(target)
    else:
        parent = os.path.dirname(target)
        while parent and not os.path.exists(parent) and os.path.dirname(parent) != parent:
            parent = os.path.dirname(parent)
        reason = _probe_dir(parent)
    if reason:
        raise CommandError(f"argument {option}: cannot write to {path}: {reason}")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def _fsync_file(path: str) -> None:
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())


def _copy_into(src: str, path: str) -> None:
    """Write the bytes of ``src`` into the existing non-regular file ``path`` (a device, a FIFO,
    a terminal), raising ``OSError`` on any failure: opened without blocking (a FIFO nobody
    reads is an error, not a hang), every ``write`` checked (``/dev/full`` fails here)."""
    fd = os.open(path, os.O_WRONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    try:
        if hasattr(os, "O_NONBLOCK"):
            os.set_blocking(fd, True)
        with open(src, "rb") as fh:
            while True:
                chunk = fh.read(1 << 20)
                if not chunk:
                    break
                view = memoryview(chunk)
                while view:
                    view = view[os.write(fd, view):]
    finally:
        os.close(fd)


def _stage_beside(path: str, suffix: str) -> tuple[str, str]:
    """``(staging file, target)``: a fresh temporary file in the directory of ``path`` (through a
    symbolic link: the file it points to is replaced), ending in ``suffix``."""
    target = os.path.realpath(path)
    directory, name = os.path.split(target)
    fd, staged = tempfile.mkstemp(prefix=f".{name}.", suffix=".refmem-tmp" + suffix, dir=directory or ".")
    os.close(fd)
    return staged, target


def _fallback_file(suffix: str) -> str:
    fd, fallback = tempfile.mkstemp(prefix="refmem-", suffix=suffix)
    os.close(fd)
    return fallback


class Outputs:
    """Writes a command's output files atomically; a write that fails goes to a temporary file instead.

    ``write(path, option, fn)`` calls ``fn(staged)`` on a fresh temporary file beside ``path``
    (same suffix, so a plotting library picks the format), then renames it over ``path``:
    ``path`` holds the old content or the new, never a part. A device or FIFO (``/dev/null``,
    ``/dev/stdout``) is written in place from a staged copy, every write checked. When any
    step fails with ``OSError`` (a full disk, ``/dev/full``, a folder removed meanwhile), the
    content goes to a fresh file in the temporary directory instead and `finish` raises
    one `CommandError` naming both, so nothing finished is lost and the exit status
    says something went wrong. Nothing is left behind in ``path``'s folder.
    """

    def __init__(self) -> None:
        self.failures: list[str] = []

    def write_bytes(self, path: str, option: str, data: bytes) -> str:
        """Write ``data`` to ``path`` (see `write`)."""

        def put(p: str) -> None:
            with open(p, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())

        return self.write(path, option, put)

    def write_text(self, path: str, option: str, text: str) -> str:
        """Write ``text`` as UTF-8 to ``path`` (see `write`)."""
        return self.write_bytes(path, option, text.encode("utf-8", errors="backslashreplace"))

    def _fail(self, path: str, option: str, exc: OSError, fn: Callable[[str], Any], suffix: str,
              saved: str = "") -> None:
        if not saved:
            saved = _fallback_file(suffix)
            try:
                fn(saved)
            except OSError as exc2:
                _unlink(saved)
                self.failures.append(f"argument {option}: writing {path} failed ({exc.strerror or exc}) "
                                     f"and so did the fallback {saved} ({exc2.strerror or exc2})")
                return
            except BaseException:
                _unlink(saved)
                raise
        self.failures.append(f"argument {option}: writing {path} failed ({exc.strerror or exc}); "
                             f"saved to {saved} instead")

    def write(self, path: str, option: str, fn: Callable[[str], Any], directory: bool = False,
              suffix: str | None = None) -> str:
        """Have ``fn`` write the content to a staged file and put it at ``path``; returns ``path`` when
        it was written there, ``""`` when it was not (then the content is in a temporary file named
        by `finish`'s error). ``suffix``: the staged file's (default: ``path``'s; a figure
        without one gets ``".png"`` from its caller, so the plotting library neither guesses nor
        appends one). ``directory``: ``path`` is a folder ``fn`` writes itself (atomically:
        `refmem.golden.storage.write_set`); the fallback is a fresh temporary folder."""
        if suffix is None:
            suffix = os.path.splitext(path)[1]
        if directory:
            try:
                fn(path)
                return path
            except OSError as exc:
                fallback = tempfile.mkdtemp(prefix="refmem-")
                try:
                    fn(fallback)
                except OSError as exc2:
                    self.failures.append(f"argument {option}: writing {path} failed ({exc.strerror or exc}) "
                                         f"and so did the fallback {fallback} ({exc2.strerror or exc2})")
                    return ""
                self.failures.append(f"argument {option}: writing {path} failed ({exc.strerror or exc}); "
                                     f"saved to {fallback} instead")
                return ""
        if _special(path):
            staged = _fallback_file(suffix)
            _STAGED.add(staged)
            try:
                try:
                    fn(staged)
                except OSError as exc:
                    _unlink(staged)
                    self._fail(path, option, exc, fn, suffix)
                    return ""
                except BaseException:
                    _unlink(staged)
                    raise
                try:
                    _copy_into(staged, path)
                except OSError as exc:
                    self._fail(path, option, exc, fn, suffix, saved=staged)  # the staged copy is complete: keep it
                    return ""
                _unlink(staged)
                return path
            finally:
                _STAGED.discard(staged)
        try:
            staged, target = _stage_beside(path, suffix)
        except OSError as exc:
            self._fail(path, option, exc, fn, suffix)
            return ""
        _STAGED.add(staged)
        try:
            fn(staged)
            _fsync_file(staged)
            try:
                mode = os.stat(target).st_mode & 0o7777
            except OSError:
                mode = 0o666 & ~_umask()
            os.chmod(staged, mode)
            os.replace(staged, target)
        except OSError as exc:
            _unlink(staged)
            self._fail(path, option, exc, fn, suffix)
            return ""
        except BaseException:
            _unlink(staged)
            raise
        finally:
            _STAGED.discard(staged)
        return path

    def finish(self) -> None:
        if self.failures:
            raise CommandError("; ".join(self.failures))


# ----------------------------------------------------------------------------- terminal output


def _is_terminal(stream: TextIO) -> bool:
    try:
        return bool(stream.isatty()) and os.environ.get("TERM") != "dumb"
    except (AttributeError, ValueError):
        return False


class Progress:
    """A progress bar on a stream (standard error by default).

    On a terminal: a ``rich`` progress bar (label, bar, count, elapsed and remaining
    time, ``text``). Elsewhere: one plain line every tenth of the way, so that logs
    stay short and hold no control codes.
    """

    def __init__(self, total: int, label: str = "", stream: TextIO | None = None, width: int = 28):
        self.total = max(int(total), 1)
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        self.width = width
        self.done = 0
        self.tty = _is_terminal(self.stream)
        self._last_decile = -1
        self._rich: Any = None
        if self.tty:
            from rich.console import Console
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress as RichProgress, TextColumn,
                                       TimeElapsedColumn, TimeRemainingColumn)
            from rich.table import Column

            def fixed() -> Column:
                return Column(no_wrap=True)

            self._rich = RichProgress(TextColumn("{task.description}", table_column=fixed()),
                                      BarColumn(bar_width=width, table_column=fixed()),
                                      MofNCompleteColumn(table_column=fixed()),
                                      TimeElapsedColumn(table_column=fixed()),
                                      TimeRemainingColumn(table_column=fixed()),
                                      TextColumn("{task.fields[text]}",
                                                 table_column=Column(no_wrap=True, overflow="ellipsis")),
                                      console=Console(file=self.stream), transient=False)
            self._task = self._rich.add_task(label, total=self.total, text="")
            self._rich.start()

    def update(self, n: int = 1, text: str = "") -> None:
        self.done = min(self.done + n, self.total)
        if self._rich is not None:
            self._rich.update(self._task, completed=self.done, text=text)
            return
        decile = (10 * self.done) // self.total
        if decile != self._last_decile:
            self._last_decile = decile
            filled = int(self.width * self.done / self.total)
            self.stream.write(f"{self.label} [{'#' * filled}{'.' * (self.width - filled)}] "
                              f"{self.done}/{self.total} {text}".rstrip() + "\n")
            self.stream.flush()

    def close(self) -> None:
        if self._rich is not None:
            self._rich.stop()
            self._rich = None


def print_table(columns: Sequence[str], rows: Sequence[Sequence[Any]], stream: TextIO | None = None,
                right: Sequence[str] = ()) -> None:
    """Print a table: a ``rich`` table on a terminal, plain aligned columns elsewhere.

    ``columns``: the header; ``rows``: the cells (converted with ``str``); ``right``: the
    columns to align right (numbers).
    """
    stream = stream if stream is not None else sys.stdout
    cells = [[str(c) for c in row] for row in rows]
    if _is_terminal(stream):
        from rich import box
        from rich.console import Console
        from rich.table import Table

        table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
        for i, name in enumerate(columns):
            last = i == len(columns) - 1
            table.add_column(name, justify="right" if name in right else "left", no_wrap=not last,
                             overflow="fold" if last else "ellipsis")
        for row in cells:
            table.add_row(*row, style="red" if any(c.startswith("FAIL") for c in row) else None)
        console = Console(file=stream, highlight=False)
        from rich.measure import Measurement

        needed = Measurement.get(console, console.options.update_width(1000), table).maximum
        if needed > console.width:  # a wide table wraps in the terminal rather than cutting names short
            console = Console(file=stream, highlight=False, width=min(needed, 240))
        console.print(table)
        return
    widths = [max([len(name)] + [len(r[i]) for r in cells]) for i, name in enumerate(columns)]

    def line(values: Sequence[str]) -> str:
        parts = [v.rjust(w) if name in right else v.ljust(w) for v, w, name in zip(values, widths, columns)]
        return "  ".join(parts).rstrip()

    head = line(list(columns))
    stream.write(head + "\n" + "-" * len(head) + "\n")
    for row in cells:
        stream.write(line(row) + "\n")
    stream.flush()


# ----------------------------------------------------------------------------- the dispatcher


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


class _HelpFormatter(argparse.HelpFormatter):
    """Wraps one-paragraph texts at spaces only (a path such as ``docs/golden-format.md`` stays whole);
    keeps a text with line breaks (an epilog) as written."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if "\n" in text.strip():
            return "".join(indent + line for line in text.splitlines(keepends=True))
        return textwrap.fill(" ".join(text.split()), width, initial_indent=indent, subsequent_indent=indent,
                             break_on_hyphens=False, break_long_words=False)

    def _split_lines(self, text: str, width: int) -> list[str]:
        return textwrap.wrap(" ".join(text.split()), width, break_on_hyphens=False, break_long_words=False)


def _set_prog_defaults(parser: argparse.ArgumentParser) -> None:
    """Record each (sub-)parser's ``prog`` in the namespace it fills, for the error line."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                sub.set_defaults(_prog=sub.prog)
                _set_prog_defaults(sub)


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, object]]:
    from . import __version__

    parser = Parser(
        prog="refmem",
        description="Reference memory and attention networks with hand-derived gradients: gradient checks, "
                    "golden tensors for other frameworks, benchmarks, training demos and figures.",
        epilog="Run 'refmem COMMAND --help' for a command's options. A user error is one line on standard "
               "error and exit status 2.",
    )
    parser.add_argument("--version", action="version", version=f"refmem {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands = _load_commands()
    for name, mod in commands.items():
        p = sub.add_parser(name, help=mod.HELP, description=getattr(mod, "DESCRIPTION", mod.HELP),
                           epilog=getattr(mod, "EPILOG", None), formatter_class=_HelpFormatter)
        mod.add_arguments(p)
    _set_prog_defaults(parser)
    return parser, commands


def user_error_types() -> tuple[type[BaseException], ...]:
    """The exceptions printed as one line (exit 2): [`CommandError`][refmem.cli.CommandError],
    [`UsageError`][refmem.cli.UsageError]
    and refmem's own error types of the modules loaded so far (backends, the catalogue,
    golden files, plotting, and the validation errors of ``refmem.errors`` where present)."""
    found: list[type[BaseException]] = [CommandError, UsageError]
    for module, names in (("refmem.xp", ("BackendError", "ShapeError")),
                          ("refmem.catalogue", ("UnknownModuleError",)),
                          ("refmem.golden", ("GoldenError",)),
                          ("refmem.plots", ("PlotDependencyError",))):
        mod = sys.modules.get(module)
        for name in names:
            cls = getattr(mod, name, None) if mod is not None else None
            if isinstance(cls, type) and issubclass(cls, BaseException):
                found.append(cls)
    errors = sys.modules.get("refmem.errors")
    if errors is not None:
        for value in vars(errors).values():
            if isinstance(value, type) and issubclass(value, Exception) and value.__module__ == "refmem.errors":
                found.append(value)
    return tuple(found)


def _check_outputs(args: argparse.Namespace) -> None:
    for dest in OUTPUT_OPTIONS:
        value = getattr(args, dest, None)
        if isinstance(value, str):
            check_output_path(value, "--" + dest.replace("_", "-"))


def _check_environment() -> None:
    """Refuse environment variables refmem reads, before any work (one line, exit 2)."""
    jobs = os.environ.get("REFMEM_JOBS", "").strip()
    if jobs:
        try:
            ok = int(jobs) >= 1
        except ValueError:
            ok = False
        if not ok:
            raise CommandError(f"environment variable REFMEM_JOBS: expected an integer >= 1 (worker processes "
                               f"of the gradient checks), got {jobs!r}")


def _tolerant_streams() -> None:
    """Characters the terminal's encoding cannot show (``PYTHONIOENCODING=ascii`` and a ``§`` or
    ``κ`` in a message) are written as ``\\u00a7`` instead of raising ``UnicodeEncodeError``."""
    for stream in (sys.stdout, sys.stderr):
        try:
            if getattr(stream, "errors", "strict") == "strict":
                stream.reconfigure(errors="backslashreplace")
        except (AttributeError, ValueError, OSError):
            pass


# ----------------------------------------------------------------------------- child processes


#: Files `Outputs` has staged and not yet put in place; a child process ended by SIGTERM
#: (`run_child`) removes them before it exits.
_STAGED: set[str] = set()


_GUARD = """\
import signal
signal.signal(signal.SIGINT, signal.SIG_IGN)
signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
from refmem.cli import _child_main
_child_main()
"""


def _die_with_parent(ppid: int) -> None:
    """Ask the kernel to send this process SIGTERM when its parent dies (Linux ``PR_SET_PDEATHSIG``);
    exit now if the parent ``ppid`` is already gone."""
    if sys.platform.startswith("linux"):
        import ctypes

        try:
            ctypes.CDLL(None, use_errno=True).prctl(1, 15)  # PR_SET_PDEATHSIG, SIGTERM
        except (OSError, AttributeError):
            pass
    if os.getppid() != ppid:
        sys.exit(143)


def _child_main() -> None:
    """The child side of `run_child`: ``python -c GUARD <parent pid> <module> <args>...``."""
    import runpy
    import signal

    ppid, module = int(sys.argv[1]), sys.argv[2]

    def terminate(signum: int, frame: Any) -> None:
        # at once and silently (the parent prints the one line): an exception raised here could land
        # in a garbage-collector callback and be printed and ignored; only what Outputs staged is removed
        for path in list(_STAGED):
            _unlink(path)
        os._exit(143)

    signal.signal(signal.SIGTERM, terminate)
    _die_with_parent(ppid)
    sys.argv = [module] + sys.argv[3:]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


def run_child(module: str, args: Sequence[str], env: dict[str, str] | None = None, cwd: str | None = None) -> int:
    """Run ``python -m module args...`` in a child process that cannot outlive this one; its exit status.

    The child ignores SIGINT (a Ctrl-C reaches the whole process group): this process gets
    ``KeyboardInterrupt``, terminates the child (SIGTERM, on which the child removes the files
    it has staged and exits at once, silently; SIGKILL after 10 s) and re-raises, so one line
    is printed and nothing is left running. Killed outright (SIGKILL), this process takes the
    child with it through ``PR_SET_PDEATHSIG`` (Linux).
    """
    import signal
    import subprocess

    cmd = [sys.executable, "-c", _GUARD, str(os.getpid()), module, *args]
    blocking = hasattr(signal, "pthread_sigmask")
    if blocking:  # a Ctrl-C while the child starts is held back until it can be handled
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        proc = subprocess.Popen(cmd, env=env, cwd=cwd)
    except BaseException:
        if blocking:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        raise
    try:
        if blocking:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        return proc.wait()
    except BaseException:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        raise


def main(argv: Sequence[str] | None = None) -> int:
    _tolerant_streams()
    prog = "refmem"
    try:
        parser, commands = build_parser()
        args = parser.parse_args(argv)
        prog = getattr(args, "_prog", None) or prog
        if not args.command:
            raise UsageError("refmem", f"name a command: {', '.join(commands)} (refmem --help describes them)")
        _check_environment()
        _check_outputs(args)
        return int(commands[args.command].run(args) or 0)
    except user_error_types() as exc:
        where = exc.prog if isinstance(exc, UsageError) else prog
        message = " ".join(str(exc).split())  # one line, whatever the message holds
        print(f"{where}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
