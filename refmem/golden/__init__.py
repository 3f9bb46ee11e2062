"""Golden tensors (format 2, [docs/golden-format.md](../golden-format.md)): export, check, load, compare and verify.

The package, one concern per module:

* `refmem.golden.storage`: format and integrity (safetensors I/O, sha256, the
  manifest, where the goldens live: an explicit directory, else the checkout's
  ``golden/``, else the copy shipped in the wheel);
* `refmem.golden.tolerances`: the ``[rtol, atol]`` rule;
* `refmem.golden.exporter`: the reference values ([`reference`][refmem.golden.exporter.reference]) and
  [`export`][refmem.golden.exporter.export];
* `refmem.golden.comparison`: [`load`][refmem.golden.comparison.load],
  [`compare`][refmem.golden.comparison.compare], the first divergence;
* `refmem.golden.adapters`: the adapter protocol and [`verify`][refmem.golden.adapters.verify];
* `refmem.golden.checking`: [`check`][refmem.golden.checking.check];
* `refmem.golden.readme`: ``golden/README.md``;
* `refmem.golden.reports`: JSON, JUnit XML and Markdown reports.
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

DEFAULT_DIR: Path = default_dir()
"""The golden directory used when none is given (see
[`default_dir`][refmem.golden.storage.default_dir]), as found at import.
"""
