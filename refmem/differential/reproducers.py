"""Reproducers: a shrunk failing example written as a format-2 golden case."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from ..golden.readme import case_notes, render_readme
from ..golden.storage import FORMAT_VERSION, GoldenError, dumps, read_manifest, relpath, sha256, write_safetensors
from .reference import Live

__all__ = ["save_reproducer"]

def save_reproducer(directory: str | Path, live: Live) -> Path:
    """Write ``live`` as a format-2 golden case into ``directory`` (its file, and the directory's
    ``manifest.json`` and ``README.md``, keeping the other cases of an existing manifest there),
    so that ``refmem golden verify --dir DIRECTORY --adapter ...`` re-runs it. Returns the file."""
    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    name = live.golden.name
    cases: dict[str, Any] = {}
    if (root / "manifest.json").exists():
        try:
            cases = dict(read_manifest(root)["cases"])
        except GoldenError:
            cases = {}
    rel = relpath(name)
    data = write_safetensors(root / rel, live.tensors, json.dumps(live.entry, sort_keys=True, allow_nan=False))
    cases[name] = {"file": rel, "sha256": sha256(data), **live.entry}
    manifest = {"format_version": FORMAT_VERSION,
                "generator": {"refmem": __version__, "numpy": np.__version__, "differential": True},
                "cases": dict(sorted(cases.items()))}
    (root / "manifest.json").write_text(dumps(manifest), encoding="utf-8")
    (root / "README.md").write_text(render_readme(manifest, case_notes(manifest)), encoding="utf-8")
    return root / rel
