"""Reproducers: a shrunk failing example written as a format-2 golden case."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from ..golden.readme import case_notes, render_readme
from ..golden.storage import (
    FORMAT_VERSION, GoldenError, encode_safetensors, previous_set, relpath, reproducer_target_problem, sha256,
    write_set,
)
from .reference import Live

__all__ = ["save_reproducer"]

def save_reproducer(directory: str | Path, live: Live) -> Path:
    """Write ``live`` as a format-2 golden case into ``directory`` (its file, and the directory's
    ``manifest.json`` and ``README.md``, keeping the other cases of an existing manifest there),
    so that ``refmem golden verify --dir DIRECTORY --adapter ...`` re-runs it. Returns the file.

    Written atomically ([`write_set`][refmem.golden.storage.write_set]); a directory holding a golden
    set not written by ``--save-failures`` is refused
    ([`reproducer_target_problem`][refmem.golden.storage.reproducer_target_problem])."""
    root = Path(directory)
    problem = reproducer_target_problem(root)
    if problem:
        raise GoldenError(problem)
    name = live.golden.name
    previous = previous_set(root)
    cases: dict[str, Any] = dict(previous["cases"]) if previous else {}
    rel = relpath(name)
    data = encode_safetensors(live.tensors, json.dumps(live.entry, sort_keys=True, allow_nan=False))
    cases[name] = {"file": rel, "sha256": sha256(data), **live.entry}
    manifest = {"format_version": FORMAT_VERSION,
                "generator": {"refmem": __version__, "numpy": np.__version__, "differential": True},
                "cases": dict(sorted(cases.items()))}
    write_set(root, manifest, {rel: data}, render_readme(manifest, case_notes(manifest)), previous)
    return root / rel
