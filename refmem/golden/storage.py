"""Format and integrity (docs/golden-format.md): safetensors I/O, sha256, the manifest, where goldens live.

* [`write_safetensors`][refmem.golden.storage.write_safetensors] /
  [`read_safetensors`][refmem.golden.storage.read_safetensors]: one file per case, only
  C-contiguous arrays (safetensors 0.8.0 writes a non-contiguous array in memory
  order under its logical shape, issue #825), the case's manifest entry stored as
  the single metadata key ``META_KEY``.
* [`sha256`][refmem.golden.storage.sha256], [`dumps`][refmem.golden.storage.dumps] (the canonical JSON:
  sorted keys, indent 2, no NaN), [`relpath`][refmem.golden.storage.relpath] (a case name to its file),
  [`read_manifest`][refmem.golden.storage.read_manifest].
* [`default_dir`][refmem.golden.storage.default_dir]: the checkout's ``golden/`` when refmem runs from
  one, else the copy shipped inside the installed package (``refmem/_golden``).
"""

from __future__ import annotations

import errno
import hashlib
import json
import math
import os
import shutil
import signal
import stat
import sys
import tempfile
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ..catalogue import ROLES

__all__ = [
    "FORMAT_VERSION", "READS", "META_KEY", "GoldenError", "IntegrityError", "write_safetensors",
    "encode_safetensors", "read_safetensors", "sha256", "dumps", "relpath", "read_manifest", "default_dir",
    "resolve_dir", "given_tensors", "expected_tensors", "is_float", "role_of", "COMPARED", "OPTIONAL", "GIVEN",
    "read_regular", "parse_json", "validate_manifest", "validate_entry", "write_set", "set_target_problem",
    "previous_set", "reproducer_target_problem",
]

FORMAT_VERSION = 2
"""Version of the on-disk format this refmem writes ([docs/golden-format.md](../golden-format.md)); bump it with a migration note."""
READS = (1, 2)
"""Versions this refmem reads (format 2 is format 1 plus optional roles and fields)."""
META_KEY = "refmem_golden"
"""Name of the one safetensors metadata key (one key keeps the header deterministic: safetensors orders
several metadata keys at random).
"""
COMPARED = ("outputs", "intermediates", "grads", "jvp", "hvp")
"""Roles an implementation returns and that are compared."""
OPTIONAL = ("intermediates", "jvp", "hvp")
"""Compared roles an implementation may leave out (compared when returned)."""
GIVEN = ROLES + ("cotangents", "tangents")
"""Roles an implementation is given."""


class GoldenError(RuntimeError):
    """A golden directory that cannot be used (missing, wrong format, unknown case)."""


class IntegrityError(GoldenError):
    """A golden file or manifest entry that does not match its recorded hash or metadata."""


def role_of(name: str) -> str:
    """The role prefix of a tensor name (``"grads"`` for ``"grads/params/W"``)."""
    return name.split("/", 1)[0]


def is_float(a: np.ndarray) -> bool:
    return a.dtype.kind == "f"


def given_tensors(tensors: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The tensors an implementation is given: inputs, params, state, cotangents and tangents."""
    return {k: v for k, v in tensors.items() if role_of(k) in GIVEN}


def expected_tensors(tensors: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The tensors an implementation is compared on: outputs, intermediates, grads, jvp and hvp."""
    return {k: v for k, v in tensors.items() if role_of(k) in COMPARED}


def encode_safetensors(tensors: Mapping[str, np.ndarray], metadata: str) -> bytes:
    """The safetensors bytes of ``tensors``, every array copied to C order first (safetensors
    issue #825), ``metadata`` stored under the single key `META_KEY`."""
    from safetensors.numpy import save

    arrays = {}
    for name, value in tensors.items():
        a = np.asarray(value)
        if a.dtype.kind not in "fiub":
            raise GoldenError(f"{name}: cannot store dtype {a.dtype}")
        arrays[name] = np.ascontiguousarray(a)
    return save(arrays, metadata={META_KEY: metadata})


def write_safetensors(path: str | os.PathLike, tensors: Mapping[str, np.ndarray], metadata: str) -> bytes:
    """Write ``tensors`` to ``path`` atomically and return the bytes written.

    The bytes of `encode_safetensors` go to a temporary file beside ``path``, which
    then replaces it: ``path`` holds the old file or the new one, never a part, and no
    temporary file is left behind (not even when the write fails). A whole golden set is
    written with `write_set`.
    """
    data = encode_safetensors(tensors, metadata)
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".refmem-tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, target)
    except BaseException:
        _unlink_quietly(tmp)
        raise
    return data


def read_safetensors(data: bytes) -> tuple[dict[str, np.ndarray], str]:
    """Parse safetensors ``data``: ``(tensors, metadata string)``."""
    from safetensors.numpy import load as st_load

    tensors = st_load(data)
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + n].decode("utf-8"))
    meta = (header.get("__metadata__") or {}).get(META_KEY, "")
    return tensors, meta


def sha256(data: bytes) -> str:
    """Hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def dumps(obj: Any) -> str:
    """The canonical JSON of refmem golden: sorted keys, indent 2, no NaN."""
    return json.dumps(obj, sort_keys=True, indent=2, allow_nan=False, ensure_ascii=False) + "\n"


def relpath(name: str) -> str:
    """The file of case ``name`` relative to the golden directory."""
    parts = name.split("/") if isinstance(name, str) else []
    if len(parts) != 3 or not all(parts) or any(p in (".", "..") for p in parts) \
            or any(ord(c) < 0x20 or c in "\\:" for c in name):
        raise GoldenError(f"bad case name {name!r}; expected <module>/<function>/<variant>")
    return f"{name}.safetensors"


# ----------------------------------------------------------------------------- where goldens live

_PACKAGE = Path(__file__).resolve().parent.parent  # refmem/


def _checkout_dir() -> Path | None:
    """``<checkout>/golden`` when this refmem is imported from a source checkout."""
    root = _PACKAGE.parent
    if (root / "golden" / "manifest.json").is_file() and (root / "pyproject.toml").is_file():
        return root / "golden"
    return None


def _shipped_dir() -> Path | None:
    """The copy inside the installed package (``refmem/_golden``, placed there by the wheel build)."""
    d = _PACKAGE / "_golden"
    return d if (d / "manifest.json").is_file() else None


def default_dir() -> Path:
    """The golden directory used when none is given.

    The checkout's ``golden/`` when refmem runs from a checkout (an editable install
    included), else the copy shipped in the wheel (``refmem/_golden``), else ``./golden``.
    """
    return _checkout_dir() or _shipped_dir() or Path("golden")


def resolve_dir(directory: str | os.PathLike | None) -> Path:
    """``directory`` when given (an explicit directory always wins), else
    [`default_dir`][refmem.golden.storage.default_dir]."""
    return Path(directory) if directory is not None else default_dir()


def read_manifest(directory: str | os.PathLike | None = None) -> dict:
    """Parse and validate ``<directory>/manifest.json`` (format 1 or 2).

    Refuses, with one line naming the file and the key, anything `validate_manifest`
    refuses; a manifest that is not a regular file (a directory, a FIFO: never waited on)
    and JSON nested too deeply for the parser are refused the same way.
    """
    root = resolve_dir(directory)
    path = root / "manifest.json"
    if not os.path.lexists(path):
        raise GoldenError(f"no golden manifest at {path} (run: refmem golden export --dir {root})")
    data = read_regular(path)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise IntegrityError(f"{path} is not valid JSON: not UTF-8 ({exc.reason} at byte {exc.start})") from None
    manifest = parse_json(text, path)
    validate_manifest(manifest, path)
    return manifest


# ----------------------------------------------------------------------------- reading safely


_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def _kind(mode: int) -> str:
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def read_regular(path: str | os.PathLike) -> bytes:
    """The bytes of the regular file ``path``.

    Anything else is refused with `GoldenError` naming ``path`` and what it is: a
    missing file, a directory, a FIFO (opened without blocking, so a FIFO with no writer
    cannot hang the reader), a device (``/dev/zero`` would never end), a socket, a file
    that cannot be read.
    """
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise GoldenError(f"{path} is missing") from None
    except IsADirectoryError:
        raise GoldenError(f"{path} is a directory, not a regular file") from None
    except OSError as exc:
        raise GoldenError(f"cannot read {path} ({exc.strerror or exc})") from None
    except ValueError as exc:  # an embedded NUL
        raise GoldenError(f"cannot read {str(path)!r} ({exc})") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise GoldenError(f"{path} is {_kind(mode)}, not a regular file")
        chunks = []
        while True:
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)
    except OSError as exc:
        raise GoldenError(f"cannot read {path} ({exc.strerror or exc})") from None
    finally:
        os.close(fd)


def parse_json(text: str, path: str | os.PathLike) -> Any:
    """``json.loads(text)``; what the parser refuses (bad syntax, nesting too deep for it) is an
    `IntegrityError` naming ``path``."""
    try:
        return json.loads(text)
    except RecursionError:
        raise IntegrityError(f"{path} is not valid JSON: nested too deeply to parse") from None
    except ValueError as exc:
        raise IntegrityError(f"{path} is not valid JSON: {exc}") from None


# ----------------------------------------------------------------------------- the manifest's schema


def _key(parts: tuple[Any, ...]) -> str:
    out = ""
    for p in parts:
        if isinstance(p, int):
            out += f"[{p}]"
        elif isinstance(p, str) and p.isidentifier():
            out += ("." if out else "") + p
        else:
            out += f"[{json.dumps(p, ensure_ascii=False)}]"
    return out


def _short(value: Any) -> str:
    try:
        text = json.dumps(value, ensure_ascii=False, allow_nan=True)
    except (TypeError, ValueError, RecursionError):
        text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


class _Schema:
    """Checks one manifest (or entry) and raises `IntegrityError` at the first bad key."""

    def __init__(self, path: str | os.PathLike):
        self.path = path

    def fail(self, parts: tuple[Any, ...], expected: str, value: Any = None, missing: bool = False) -> None:
        where = _key(parts) or "the top level"
        got = "missing" if missing else f"got {_json_type(value)} {_short(value)}"
        raise IntegrityError(f"{self.path}: {where}: expected {expected}, {got}")

    def get(self, obj: dict, parts: tuple[Any, ...], key: str, expected: str, test, optional: bool = False) -> Any:
        if key not in obj:
            if optional:
                return None
            self.fail(parts + (key,), expected, missing=True)
        value = obj[key]
        if not test(value):
            self.fail(parts + (key,), expected, value)
        return value


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_positive(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0


def _is_pair(v: Any) -> bool:
    return isinstance(v, list) and len(v) == 2 and all(_is_positive(x) for x in v)


def validate_entry(name: str, entry: Any, path: str | os.PathLike = "manifest.json") -> None:
    """Refuse (`IntegrityError`, naming ``path`` and the key) a malformed manifest entry.

    Checked: the JSON type of every field refmem reads (``file``, ``sha256``, ``function``,
    ``spec``, ``seed``, ``config``, ``tensors``, ``order``, ``precision``); every tensor's
    ``dtype`` and ``shape``; and for every compared tensor (``outputs/``, ``intermediates/``,
    ``grads/``, ``jvp/``, ``hvp/``) a finite ``l2`` and a ``tol`` of ``[rtol, atol]`` per
    dtype, both finite and > 0 (a tolerance of 0, below 0, NaN or infinity is refused).
    Unknown fields are ignored.
    """
    from .tolerances import DTYPES

    sc = _Schema(path)
    at: tuple[Any, ...] = ("cases", name)
    if not isinstance(entry, dict):
        sc.fail(at, "an object (a case entry)", entry)
    sc.get(entry, at, "file", "a string", lambda v: isinstance(v, str))
    sc.get(entry, at, "sha256", "a hex sha256 string", lambda v: isinstance(v, str))
    for key in ("function", "spec"):
        sc.get(entry, at, key, "a string", lambda v: isinstance(v, str))
    sc.get(entry, at, "seed", "an integer >= 0", lambda v: _is_int(v) and v >= 0)
    sc.get(entry, at, "config", "an object", lambda v: isinstance(v, dict))
    sc.get(entry, at, "precision", "a string", lambda v: isinstance(v, str), optional=True)
    order = sc.get(entry, at, "order", "an array", lambda v: isinstance(v, list), optional=True)
    for i, item in enumerate(order or []):
        if not isinstance(item, dict):
            sc.fail(at + ("order", i), "an object {name, spec[, per_step]}", item)
        for key in ("name", "spec"):
            sc.get(item, at + ("order", i), key, "a string", lambda v: isinstance(v, str))
        sc.get(item, at + ("order", i), "per_step", "a boolean", lambda v: isinstance(v, bool), optional=True)
    tensors = sc.get(entry, at, "tensors", "an object", lambda v: isinstance(v, dict))
    for t, desc in tensors.items():
        here = at + ("tensors", t)
        if not isinstance(desc, dict):
            sc.fail(here, "an object {dtype, shape[, l2, tol]}", desc)
        sc.get(desc, here, "dtype", "a string", lambda v: isinstance(v, str))
        sc.get(desc, here, "shape", "an array of integers >= 0",
               lambda v: isinstance(v, list) and all(_is_int(s) and s >= 0 for s in v))
        compared = role_of(t) in COMPARED
        sc.get(desc, here, "l2", "a finite number >= 0",
               lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v >= 0,
               optional=not compared)
        tol = sc.get(desc, here, "tol", "an object {float64: [rtol, atol], float32: [rtol, atol]}",
                     lambda v: isinstance(v, dict), optional=not compared)
        if tol is not None:
            for d in DTYPES:
                sc.get(tol, here + ("tol",), d, "[rtol, atol], two finite numbers > 0", _is_pair)


def validate_manifest(manifest: Any, path: str | os.PathLike = "manifest.json") -> None:
    """Refuse (`GoldenError`; `IntegrityError` for a malformed one) a manifest this
    refmem cannot use, naming ``path`` and the key: not an object, a ``format_version`` it does
    not read, a missing or malformed ``generator`` or ``cases``, and any entry
    `validate_entry` refuses."""
    sc = _Schema(path)
    if not isinstance(manifest, dict):
        sc.fail((), "a JSON object", manifest)
    version = manifest.get("format_version")
    if not _is_int(version) or version not in READS:
        raise GoldenError(f"{path}: format_version {_short(version)}, this refmem reads "
                          f"{', '.join(map(str, READS))}")
    sc.get(manifest, (), "generator", "an object {\"refmem\": version, \"numpy\": version}",
           lambda v: isinstance(v, dict) and all(isinstance(x, (str, bool, int, float)) for x in v.values()))
    cases = sc.get(manifest, (), "cases", "an object of case entries", lambda v: isinstance(v, dict))
    for name, entry in cases.items():
        validate_entry(name, entry, path)


# ----------------------------------------------------------------------------- writing a set atomically


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _unlink_quietly(path: str | os.PathLike) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def _fsync_dir(path: str | os.PathLike) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return  # not possible on this platform (Windows): nothing to flush
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _stage_prefix(root: Path) -> str:
    return f".{root.name}.refmem-stage-"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def _remove_stale_stages(root: Path) -> None:
    """Remove the staging folders beside ``root`` left by exports that were killed (their process is gone)."""
    prefix = _stage_prefix(root)
    try:
        entries = list(os.scandir(root.parent))
    except OSError:
        return
    for e in entries:
        if not e.name.startswith(prefix):
            continue
        try:
            pid = int(e.name[len(prefix):].split("-", 1)[0])
            if e.is_dir(follow_symlinks=False) and e.stat(follow_symlinks=False).st_uid == os.getuid() \
                    and not _alive(pid):
                shutil.rmtree(e.path, ignore_errors=True)
        except (ValueError, OSError, AttributeError):
            continue


def previous_set(directory: str | os.PathLike) -> dict | None:
    """The manifest of the golden set in ``directory``, ``None`` when there is none (no such
    directory, or an empty one); `GoldenError` naming why it cannot be written (see
    `set_target_problem`)."""
    problem = set_target_problem(directory)
    if problem:
        raise GoldenError(problem)
    root = Path(directory)
    if not root.exists() or not (os.path.lexists(root / "manifest.json")):
        return None
    return read_manifest(root)


def set_target_problem(directory: str | os.PathLike) -> str | None:
    """Why a golden set cannot be written to ``directory`` (``None`` when it can).

    A set is staged in a folder beside ``directory`` and swapped in whole (`write_set`),
    so refused are: a path that is not a directory, a mount point (it cannot be swapped), the
    current directory or one holding it (the shell would be left in the old, removed folder),
    a non-empty directory that holds no golden set, and one whose ``manifest.json`` this
    refmem cannot read (a newer format, malformed JSON): writing there would lose what it holds.
    """
    root = Path(os.path.abspath(directory))
    if root.is_symlink():
        root = root.resolve()
    if not root.exists():
        return None
    if not root.is_dir():
        return f"{directory} is not a directory"
    if os.path.ismount(root):
        return (f"{directory} is a mount point: a golden set is staged beside its directory and swapped in, "
                "which a mount point cannot be; write to a directory inside it")
    cwd = Path(os.path.abspath(os.getcwd()))
    if cwd == root or root in cwd.parents:
        return (f"{directory} holds the current directory, which the swap would leave pointing at the "
                "old, removed set; run from outside it")
    try:
        empty = not any(os.scandir(root))
    except OSError as exc:
        return f"cannot list {directory} ({exc.strerror or exc})"
    if empty:
        return None
    if not os.path.lexists(root / "manifest.json"):
        return (f"{directory} holds files but no golden set (no manifest.json); refusing to write a golden set "
                "into it: use a new or empty directory")
    try:
        read_manifest(root)
    except GoldenError as exc:
        return (f"{exc}; refusing to replace what {directory} holds (a newer refmem's set, or a damaged one): "
                "remove it or use another directory")
    return None


def reproducer_target_problem(directory: str | os.PathLike) -> str | None:
    """Why ``directory`` cannot take reproducers (``refmem verify --save-failures``): a directory
    that holds a golden set not written by ``--save-failures`` (its ``generator`` lacks
    ``"differential": true``) is never written to, nor anything `set_target_problem` refuses."""
    problem = set_target_problem(directory)
    if problem:
        return problem
    root = Path(directory)
    if root.exists() and os.path.lexists(root / "manifest.json"):
        manifest = read_manifest(root)
        if manifest["generator"].get("differential") is not True:
            return (f"{directory} holds a golden set ({len(manifest['cases'])} cases, not written by "
                    "--save-failures); reproducers go to a directory of their own")
    return None


def _carry(src: Path, dst: Path, skip: set[str], rel: str = "") -> None:
    """Hard-link (else copy) everything under ``src`` into ``dst`` but the relative paths in ``skip``
    and the ``*.safetensors.tmp`` an interrupted export of an older refmem left."""
    for e in sorted(os.scandir(src), key=lambda e: e.name):
        r = f"{rel}{e.name}"
        if r in skip or e.name.endswith(".safetensors.tmp"):
            continue
        target = dst / e.name
        if e.is_dir(follow_symlinks=False):
            os.mkdir(target)
            _carry(Path(e.path), target, skip, r + "/")
            shutil.copystat(e.path, target, follow_symlinks=False)
        elif e.is_symlink():
            os.symlink(os.readlink(e.path), target)
        else:
            try:
                os.link(e.path, target, follow_symlinks=False)
            except OSError:
                if not e.is_file(follow_symlinks=False):
                    raise GoldenError(f"cannot carry {e.path} ({_kind(e.stat(follow_symlinks=False).st_mode)}) "
                                      "over to the new set") from None
                shutil.copy2(e.path, target)


def _write_new(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "xb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def _exchange(a: Path, b: Path) -> bool:
    """Swap the directories ``a`` and ``b`` in one step (Linux ``renameat2(RENAME_EXCHANGE)``);
    ``False`` where this platform or file system cannot."""
    if not sys.platform.startswith("linux"):
        return False
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    AT_FDCWD, RENAME_EXCHANGE = -100, 2
    if renameat2(AT_FDCWD, os.fsencode(a), AT_FDCWD, os.fsencode(b), RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False  # EINVAL, ENOSYS, EOPNOTSUPP: the file system cannot exchange
    raise OSError(err, os.strerror(err), str(b))


def _replace_files(stage: Path, root: Path, dropped: set[str]) -> None:
    """Where ``root`` cannot be swapped as a whole (a directory of a lower overlayfs layer refuses to
    be renamed, ``EXDEV``): replace its files one by one (each atomically), the manifest last, then
    remove the dropped ones. Set-atomic no longer, but never a part of a file and never a manifest
    that names a file not yet written."""
    last = ("README.md", "manifest.json")
    for dirpath, _, names in os.walk(stage):
        rel_dir = Path(dirpath).relative_to(stage)
        (root / rel_dir).mkdir(parents=True, exist_ok=True)
        for name in names:
            rel = rel_dir / name
            if str(rel) not in last:
                os.replace(stage / rel, root / rel)
    for name in last:
        os.replace(stage / name, root / name)
    for rel in sorted(dropped):
        _unlink_quietly(root / rel)
        parent = (root / rel).parent
        while parent != root and parent.is_dir() and not any(parent.iterdir()):
            parent.rmdir()
            parent = parent.parent


def _swap(stage: Path, root: Path, dropped: set[str] = frozenset()) -> None:
    """Put the set staged in ``stage`` at ``root``; the old set (if any) is left at ``stage``."""
    if not os.path.lexists(root):
        os.rename(stage, root)
        return
    try:
        if _exchange(stage, root):
            return
    except OSError as exc:
        if exc.errno not in (errno.EXDEV, errno.EBUSY):
            raise
        _replace_files(stage, root, dropped)
        return
    # No atomic exchange here: two renames with SIGINT held back; a SIGKILL between them leaves
    # the old set at <stage>.old and none at root (docs/golden-format.md).
    old = stage.with_name(stage.name + ".old")
    with _sigint_held():
        os.rename(root, old)
        try:
            os.rename(stage, root)
        except BaseException:
            os.rename(old, root)
            raise
        os.rename(old, stage)


def write_set(directory: str | os.PathLike, manifest: Mapping[str, Any], files: Mapping[str, bytes], readme: str,
              previous: Mapping[str, Any] | None = None) -> Path:
    """Write a golden set to ``directory`` so that, whatever interrupts it, the directory holds
    the old complete set or the new complete set.

    The new set is staged in a folder beside ``directory`` (``.<name>.refmem-stage-<pid>-*``):
    ``files`` (relative path -> bytes), ``manifest.json`` (``manifest`` as `dumps`
    writes it) and ``README.md`` (``readme``), every other file of ``directory`` hard-linked
    (or copied) over, except the files of cases ``previous`` (the old manifest) lists and
    ``manifest`` does not. Every file is flushed to disk; then the staged folder and
    ``directory`` are exchanged in one ``renameat2(RENAME_EXCHANGE)`` (Linux; elsewhere two
    renames; where the directory cannot be renamed at all, a directory of a lower overlayfs layer,
    its files are replaced one by one, the manifest last) and the old set is removed. An exception, SIGINT, SIGKILL or a full disk before
    the exchange leaves ``directory`` as it was (a SIGKILL may leave the staging folder beside
    it, removed by the next write); after it, ``directory`` holds the new set.

    Refuses what `set_target_problem` refuses, and a manifest case whose file would be
    missing from the new set. Returns the directory written.
    """
    problem = set_target_problem(directory)
    if problem:
        raise GoldenError(problem)
    root = Path(os.path.abspath(directory))
    if root.is_symlink():
        root = root.resolve()  # swap the directory it points to; the link stays
    root.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_stages(root)
    stage = Path(tempfile.mkdtemp(prefix=f"{_stage_prefix(root)}{os.getpid()}-", dir=root.parent))
    try:
        kept = {str(e["file"]) for e in manifest["cases"].values()}
        dropped = {str(e.get("file", "")) for e in (previous or {}).get("cases", {}).values()
                   if isinstance(e, dict)} - kept
        dropped = {f for f in dropped if f.endswith(".safetensors")}
        if root.is_dir():
            _carry(root, stage, {"manifest.json", "README.md"} | set(files) | dropped)
        for rel in sorted(dropped):  # folders emptied by dropping a stale case go too
            parent = (stage / rel).parent
            while parent != stage and parent.is_dir() and not any(parent.iterdir()):
                parent.rmdir()
                parent = parent.parent
        for rel, data in files.items():
            _write_new(stage / rel, data)
        _write_new(stage / "manifest.json", dumps(dict(manifest)).encode("utf-8"))
        _write_new(stage / "README.md", readme.encode("utf-8"))
        missing = sorted(f for f in kept if not (stage / f).is_file())
        if missing:
            raise GoldenError(f"{directory}: the new set would lack {', '.join(missing[:3])}"
                              + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
                              + "; nothing was changed")
        for dirpath, _, _ in os.walk(stage):
            _fsync_dir(dirpath)
        os.chmod(stage, stat.S_IMODE(root.stat().st_mode) if root.is_dir() else 0o777 & ~_umask())
        _swap(stage, root, dropped)
        _fsync_dir(root.parent)
    finally:
        # the staged set if not swapped in, else the old set; a Ctrl-C meanwhile waits until it is gone
        with _sigint_held():
            shutil.rmtree(stage, ignore_errors=True)
    return root


class _sigint_held:
    """Hold SIGINT back in the block (main thread, where the platform can); delivered when it ends."""

    def __enter__(self) -> None:
        self.mask = None
        if hasattr(signal, "pthread_sigmask"):
            try:
                self.mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
            except (OSError, ValueError):
                self.mask = None

    def __exit__(self, *exc: Any) -> None:
        if self.mask is not None:
            signal.pthread_sigmask(signal.SIG_SETMASK, self.mask)
