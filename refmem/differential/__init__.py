"""Differential property testing: a user's implementation against live refmem at drawn shapes.

Golden tensors pin one small shape per case. This package compares an implementation
(the adapter protocol of ``refmem golden verify``, examples/README.md) with refmem
computed *live* on the same inputs, at sizes, seeds, masks and value scales that are
drawn, and shrinks a failure (Hypothesis) to the smallest example that still fails.
One module per concern:

* [`drawing`][refmem.differential.drawing]: [`Example`][refmem.differential.Example], one
  drawn point (the case's size letters, each from ``case.min_sizes``, 1 by default, up to a
  small bound; the seed of the case's own sampler, which keeps every draw away from the
  case's kinks; a value ``scale`` of 1, 4, 16 or 64, how far values go toward the edge of
  their domain, see [`edge_of`][refmem.differential.edge_of]; for a masked case, the batch
  rows whose mask is all padding), [`examples_for`][refmem.differential.examples_for] (the
  Hypothesis strategy of examples, which shrinks toward the smallest sizes, seed 0, scale 1
  and no padded row) and [`draw_inputs`][refmem.differential.draw_inputs].
* [`reference`][refmem.differential.reference]: [`live_golden`][refmem.differential.live_golden],
  the reference of an example as an in-memory [`Golden`][refmem.golden.Golden] (outputs,
  intermediates, cotangents and gradients, tolerances from the golden export's one float32
  measurement, or its cheap lower bound refined only where a result falls beyond it).
* [`comparison`][refmem.differential.comparison]: [`check_example`][refmem.differential.check_example]
  (the adapter against the reference by [`compare`][refmem.golden.compare]) and
  [`batch_invariance`][refmem.differential.batch_invariance] (an item's outputs depend neither on
  its batch companions nor, masked, on the values under its padding).
* [`runner`][refmem.differential.runner]: [`run_case`][refmem.differential.run_case] and
  [`differential`][refmem.differential.differential], the campaign over every case: examples
  deterministic in (seed, index), run here, in local worker processes or on a Dask cluster
  ([`refmem.executor`][refmem.executor]), resumable from a journal, and its report (a
  [`Report`][refmem.golden.Report], so JSON and JUnit are those of ``golden verify``).
* [`search`][refmem.differential.search]: a failing example shrunk by Hypothesis
  ([`shrink`][refmem.differential.shrink]) and what it needs ([`triggers`][refmem.differential.triggers]).
* [`timing`][refmem.differential.timing]: where an example's time goes.
* [`reproducers`][refmem.differential.reproducers]: [`save_reproducer`][refmem.differential.save_reproducer]
  writes a shrunk example as a format-2 golden directory that ``refmem golden verify --dir DIR`` re-runs.
* [`reference_adapter`][refmem.differential.reference_adapter]: refmem itself as an adapter.

Hypothesis is a test extra; importing [`refmem`][refmem] never needs it, this package does.
"""

from __future__ import annotations

try:
    import hypothesis  # noqa: F401
except ImportError as exc:  # pragma: no cover - hypothesis is a test extra
    raise ImportError("refmem.differential needs Hypothesis: pip install 'refmem[test]'") from exc

from .comparison import _call, _close, _item, batch_invariance, check_example, judge
from .drawing import (
    EXTRA, MAX_SIDE, SCALES, SORT_GAP, Example, Unsampleable, _mask_key, draw_inputs, edge_of, examples_for,
    sizes_limits,
)
from .reference import FLOAT32_TIE, LOST, Live, Undecidable, _reference, float32_undecidable, live_golden
from .reference_adapter import _refmem_run, refmem_adapter
from .reproducers import save_reproducer
from .search import CaseResult, Result, shrink, triggers
from .runner import Plan, campaign, differential, example_at, run_case, run_example, select_cases

__all__ = [
    "SCALES", "MAX_SIDE", "Example", "Undecidable", "CaseResult", "Result", "Unsampleable", "edge_of", "sizes_limits",
    "examples_for", "draw_inputs", "live_golden", "float32_undecidable", "check_example", "batch_invariance",
    "save_reproducer", "triggers", "select_cases", "run_case", "differential", "refmem_adapter", "Live",
    "campaign", "example_at", "run_example", "shrink", "Plan",
]
