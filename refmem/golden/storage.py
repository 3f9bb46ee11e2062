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

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ..catalogue import ROLES

__all__ = [
    "FORMAT_VERSION", "READS", "META_KEY", "GoldenError", "IntegrityError", "write_safetensors",
    "read_safetensors", "sha256", "dumps", "relpath", "read_manifest", "default_dir", "resolve_dir",
    "given_tensors", "expected_tensors", "is_float", "role_of", "COMPARED", "OPTIONAL", "GIVEN",
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


def write_safetensors(path: str | os.PathLike, tensors: Mapping[str, np.ndarray], metadata: str) -> bytes:
    """Write ``tensors`` to ``path`` (atomically) and return the bytes written.

    Every array is copied to C order first (safetensors issue #825). ``metadata`` is
    stored under the single key ``META_KEY``.
    """
    from safetensors.numpy import save

    arrays = {}
    for name, value in tensors.items():
        a = np.asarray(value)
        if a.dtype.kind not in "fiub":
            raise GoldenError(f"{name}: cannot store dtype {a.dtype}")
        arrays[name] = np.ascontiguousarray(a)
    data = save(arrays, metadata={META_KEY: metadata})
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(str(path) + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
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
    parts = name.split("/")
    if len(parts) != 3 or not all(parts) or any(p in (".", "..") for p in parts):
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
    """Parse and validate ``<directory>/manifest.json`` (format 1 or 2)."""
    root = resolve_dir(directory)
    path = root / "manifest.json"
    if not path.exists():
        raise GoldenError(f"no golden manifest at {path} (run: refmem golden export --dir {root})")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise IntegrityError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(manifest, dict) or manifest.get("format_version") not in READS:
        got = manifest.get("format_version") if isinstance(manifest, dict) else None
        raise GoldenError(f"{path}: format_version {got!r}, this refmem reads {', '.join(map(str, READS))}")
    if not isinstance(manifest.get("cases"), dict):
        raise IntegrityError(f"{path}: no 'cases' object")
    return manifest
