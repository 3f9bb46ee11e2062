"""Golden tensors (GOLDEN.md, format 2): export, check, load, compare and verify.

The package, one concern per module:

* :mod:`~refmem.golden.storage`: format and integrity (safetensors I/O, sha256, the
  manifest, where the goldens live: an explicit directory, else the checkout's
  ``golden/``, else the copy shipped in the wheel);
* :mod:`~refmem.golden.tolerances`: the ``[rtol, atol]`` rule;
* :mod:`~refmem.golden.exporter`: the reference values (:func:`reference`) and :func:`export`;
* :mod:`~refmem.golden.comparison`: :func:`load`, :func:`compare`, the first divergence;
* :mod:`~refmem.golden.adapters`: the adapter protocol and :func:`verify`;
* :mod:`~refmem.golden.checking`: :func:`check`;
* :mod:`~refmem.golden.readme`: ``golden/README.md``;
* :mod:`~refmem.golden.reports`: JSON, JUnit XML and Markdown reports.
"""

from __future__ import annotations

from pathlib import Path

from .adapters import Adapter, load_adapter, verify
from .checking import check
from .comparison import Divergence, Golden, Report, Row, compare, first_divergence, load
from .exporter import PRECISION, SEED, export, float32_run, reference
from .readme import case_notes, render_readme
from .reports import to_json, to_junit, to_markdown
from .storage import (
    FORMAT_VERSION, GoldenError, IntegrityError, default_dir, read_manifest, read_safetensors, write_safetensors,
)
from .tolerances import EPS, RTOL_ULPS, SAFETY, round_up, tolerance

__all__ = [
    "FORMAT_VERSION", "SEED", "PRECISION", "SAFETY", "RTOL_ULPS", "EPS", "DEFAULT_DIR", "GoldenError",
    "IntegrityError", "Golden", "Row", "Divergence", "Report", "Adapter", "reference", "float32_run",
    "tolerance", "round_up", "export", "read_manifest", "load", "compare", "first_divergence", "check",
    "verify", "load_adapter", "write_safetensors", "read_safetensors", "render_readme", "case_notes",
    "default_dir", "to_json", "to_junit", "to_markdown",
]

#: The golden directory used when none is given (see :func:`default_dir`), as found at import.
DEFAULT_DIR: Path = default_dir()
