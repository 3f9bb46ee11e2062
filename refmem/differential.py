"""Differential property testing: a user's implementation against live refmem at drawn shapes.

Golden tensors pin one small shape per case. This module compares an implementation
(the adapter protocol of ``refmem golden verify``, examples/README.md) with refmem
computed *live* on the same inputs, at sizes, seeds, masks and value scales drawn by
Hypothesis, and shrinks a failure to the smallest example that still fails:

* :class:`Example`: one drawn point: the case's size letters (each from
  ``case.min_sizes``, 1 by default, up to a small bound), the seed of the case's own
  sampler (which keeps every draw away from the case's kinks), a value ``scale``
  (1, 4, 16 or 64; how far values go toward the edge of their domain, see
  :func:`edge_of`) and, for a masked case, the batch rows whose mask is all padding.
* :func:`examples_for`: the Hypothesis strategy of examples of a case; it shrinks
  toward the smallest sizes, seed 0, scale 1 and no padded row.
* [`live_golden`][refmem.differential.live_golden]: the reference of an example as an in-memory
  [`Golden`][refmem.golden.Golden]: outputs, intermediates, cotangents and gradients
  (refmem's float64 evaluation), tolerances from the one float32 measurement the golden
  export uses ([`refmem.golden.tolerances`][refmem.golden.tolerances]), or its cheap lower bound.
* [`check_example`][refmem.differential.check_example]: run the adapter on it and
  [`compare`][refmem.golden.compare] (the golden rules: per-dtype tolerance, strictness,
  first divergence); a result that fails a lower-bound tolerance is judged again by the
  exact one, so a verdict is always the exact rule's.
* :func:`batch_invariance`: an item's outputs do not depend on its batch companions,
  nor, in a masked case, on the values under its padding.
* :func:`run_case` / :func:`differential`: the Hypothesis search per case, the report
  (a :class:`~refmem.golden.Report`, so JSON and JUnit are those of ``golden verify``)
  and, on failure, the shrunk example written as a format-2 golden directory
  (:func:`save_reproducer`) that ``refmem golden verify --dir DIR`` re-runs.

Hypothesis is a test extra; importing :mod:`refmem` never needs it, this module does.
"""

from __future__ import annotations

import fnmatch
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

try:
    from hypothesis import HealthCheck, Phase, given, reject, settings
    from hypothesis import seed as hyp_seed
    from hypothesis import strategies as st
    from hypothesis.errors import Unsatisfiable
except ImportError as exc:  # pragma: no cover - hypothesis is a test extra
    raise ImportError("refmem.differential needs Hypothesis: pip install 'refmem[test]'") from exc

from . import __version__, catalogue
from . import xp as rx
from .catalogue import Case
from .golden.adapters import Adapter, load_adapter
from .golden.comparison import Golden, Report, compare
from .golden.exporter import manifest_entry
from .golden.readme import case_notes, render_readme
from .golden.storage import (
    FORMAT_VERSION, GoldenError, encode_safetensors, given_tensors, previous_set, relpath,
    reproducer_target_problem, role_of, sha256, write_set,
)
from .golden.tolerances import DTYPES, Measurement

__all__ = [
    "SCALES", "MAX_SIDE", "Example", "Undecidable", "CaseResult", "Result", "Unsampleable", "edge_of", "sizes_limits",
    "examples_for", "draw_inputs", "live_golden", "float32_undecidable", "check_example", "batch_invariance", "save_reproducer", "triggers",
    "select_cases", "run_case", "differential", "refmem_adapter",
]

#: Value scales an example may take (powers of two: scaled float32-representable values stay so).
SCALES = (1, 4, 16, 64)
#: Largest size any letter is drawn at (``min(default + EXTRA, MAX_SIDE)``).
MAX_SIDE = 8
#: How far above its default size a letter may be drawn.
EXTRA = 2
#: Smallest gap of sorted usages an edge draw of the allocation keeps (the samplers' ``SORT_GAP``).
SORT_GAP = 1e-4
#: Below this, a non-zero gap between two usages is a structural near-tie (``eps``-sized terms of a zero
#: initial usage, which the core sampler accepts): float64 orders them by those terms, float32 cannot
#: resolve them, so the allocation's order, and everything after it, is undetermined in float32.
FLOAT32_TIE = 1e-5


class Unsampleable(RuntimeError):
    """The case's sampler found no valid draw at this example (its rejection loop gave up)."""


@dataclass(frozen=True)
class Example:
    """One drawn point of a case: ``sizes`` (SPEC letters), ``seed``, ``scale``, ``padded`` rows."""

    case: str
    sizes: dict
    seed: int
    scale: int = 1
    padded: tuple = ()

    def to_json(self) -> dict[str, Any]:
        return {"sizes": dict(self.sizes), "seed": int(self.seed), "scale": int(self.scale),
                "padded": [int(b) for b in self.padded]}

    def describe(self) -> str:
        sizes = ", ".join(f"{k}={v}" for k, v in self.sizes.items())
        text = f"sizes {sizes}; seed {self.seed}; scale {self.scale}"
        if self.padded:
            text += f"; fully padded rows {list(self.padded)}"
        return text


# ----------------------------------------------------------------------------- edges of the domain


def _times(names: Sequence[str]) -> Callable[[dict, int], dict]:
    """Multiply the tensors ``names`` by the scale (exact: powers of two)."""

    def apply(arrays: dict, scale: int) -> dict:
        return {k: (v * scale if k in names else v) for k, v in arrays.items()}

    return apply


def _sharpen(u: np.ndarray, scale: int) -> np.ndarray:
    """Values in (0, 1) pushed toward 0 and 1, order kept: ``σ(k logit(u))`` with ``k = 1 + log4(scale)``."""
    k = 1.0 + math.log(scale, 4)
    z = np.log(u) - np.log1p(-u)
    out = 1.0 / (1.0 + np.exp(-k * z))
    return np.clip(out, 1e-6, 1 - 1e-6).astype(np.float32).astype(np.float64)


def _toward_01(names: Sequence[str], sorted_gap: Callable[[dict], float] | None = None):
    """Push the (0, 1) tensors ``names`` toward 0 and 1; with ``sorted_gap``, refuse a draw whose
    allocation sort would come closer than :data:`SORT_GAP` to a tie (the samplers' kink)."""

    def apply(arrays: dict, scale: int) -> dict:
        if scale == 1:
            return arrays
        out = {k: (_sharpen(v, scale) if k in names else v) for k, v in arrays.items()}
        if sorted_gap is not None and sorted_gap(out) < SORT_GAP:
            raise Unsampleable("sort tie at this scale")
        return out

    return apply


def _usage_gap(arrays: dict) -> float:
    u = np.sort(arrays["inputs/usage"], axis=-1)
    return math.inf if u.shape[-1] < 2 else float(np.min(np.diff(u, axis=-1))) * (1 - 1e-6)


def _write_allocation_gap(arrays: dict) -> float:
    from .dnc import addressing as A
    from .dnc.cases.addressing import sort_gap

    xp = rx.backend("numpy")
    u, g = (rx.from_numpy(xp, arrays[k]) for k in ("inputs/usage", "inputs/write_gates"))
    return sort_gap(A.write_allocation_weights_forward(u, g)[1].heads)


def _access_strengths(arrays: dict, scale: int) -> dict:
    """Scale the write and read strength columns of the interface (``W_xi``, ``b_xi``). The allocation
    reads the usage and gates only, so the sampler's sort-gap guarantee still holds."""
    from .dnc.access import AccessConfig, interface_layout

    B, N, W = arrays["state/memory"].shape
    cfg = AccessConfig(N=N, W=W, R=arrays["state/read_weights"].shape[1], nw=arrays["state/write_weights"].shape[1])
    factor = np.ones(arrays["params/b_xi"].shape[0])
    start = 0
    for name, shape, _ in interface_layout(cfg):
        width = int(np.prod(shape))
        if name in ("write_strengths", "read_strengths"):
            factor[start:start + width] = scale
        start += width
    out = dict(arrays)
    out["params/W_xi"] = arrays["params/W_xi"] * factor
    out["params/b_xi"] = arrays["params/b_xi"] * factor
    return out


#: (fnmatch pattern of case names, how their values go to the edge, what that means).
_EDGES: tuple[tuple[str, Callable[[dict, int], dict], str], ...] = (
    ("primitives/sigmoid/*", _times(["inputs/x"]), "inputs scaled up (saturation)"),
    ("primitives/tanh/*", _times(["inputs/x"]), "inputs scaled up (saturation)"),
    ("primitives/softplus/*", _times(["inputs/x"]), "inputs scaled up (exp overflow)"),
    ("primitives/oneplus/*", _times(["inputs/x"]), "inputs scaled up (exp overflow)"),
    ("primitives/softmax/*", _times(["inputs/x"]), "logits scaled up (exp overflow and underflow)"),
    ("primitives/linear/*", _times(["inputs/x"]), "inputs scaled up"),
    ("memory_lstm/*", _times(["params/W_e", "params/U_e", "params/b_e"]), "slot-softmax logits scaled up"),
    ("attention/bahdanau_decoder/*", _times(["params/V_a"]), "energies scaled up (V_a)"),
    ("attention/luong_dot/*", _times(["inputs/hs"]), "scores scaled up (source states)"),
    ("attention/luong_general/*", _times(["params/W_a"]), "scores scaled up (W_a)"),
    ("attention/luong_concat/*", _times(["params/v_a"]), "scores scaled up (v_a)"),
    ("attention/luong_location/*", _times(["params/W_a"]), "scores scaled up (W_a)"),
    ("dnc/content_weights/*", _times(["inputs/strengths"]), "strengths scaled up"),
    ("dnc/write_weights/*", _times(["inputs/write_strengths"]), "write strengths scaled up"),
    ("dnc/read_weights/*", _times(["inputs/read_strengths"]), "read strengths scaled up"),
    ("dnc/access_step/*", _access_strengths, "write and read strengths scaled up (interface columns)"),
    ("dnc/usage/*", _toward_01(["inputs/prev_usage", "inputs/free_gates"]), "usage and free gates toward 0 and 1"),
    ("dnc/allocation/*", _toward_01(["inputs/usage"], _usage_gap),
     "usage toward 0 and 1, sorted values kept 1e-4 apart"),
    ("dnc/write_allocation_weights/*", _toward_01(["inputs/usage", "inputs/write_gates"], _write_allocation_gap),
     "usage and gates toward 0 and 1, every head's sorted values kept 1e-4 apart"),
)


def edge_of(case: Case) -> tuple[Callable[[dict, int], dict], str] | None:
    """How ``case``'s values are pushed toward the edge of their domain at a scale > 1, and a
    sentence saying so; ``None`` for a case drawn at its sampler's scale only (the core unroll,
    whose later sort gaps a rescaled strength would move; the cosine; the memory update ...)."""
    for pattern, fn, what in _EDGES:
        if fnmatch.fnmatchcase(case.name, pattern):
            return fn, what
    return None


def _mask_key(case: Case) -> str | None:
    return "inputs/mask" if "inputs/mask" in case.nondiff else None


# ----------------------------------------------------------------------------- drawing


def sizes_limits(case: Case) -> dict[str, tuple[int, int]]:
    """``letter -> (lowest, highest)`` drawn: from ``case.min_sizes`` (1 by default) to
    ``min(default + EXTRA, MAX_SIDE, case.max_sizes)`` (never below the lowest)."""
    out = {}
    for letter, default in case.sizes.items():
        low = int(case.min_sizes.get(letter, 1))
        high = min(int(default) + EXTRA, MAX_SIDE, int(case.max_sizes.get(letter, MAX_SIDE)))
        out[letter] = (low, max(low, high))
    return out


def examples_for(case: Case, min_batch: int = 1, max_seed: int = 2**16) -> st.SearchStrategy[Example]:
    """Examples of ``case``: sizes within :func:`sizes_limits` (``B`` at least ``min_batch``), a seed,
    a scale from :data:`SCALES` where the case has an edge, and padded rows where it has a mask."""
    limits = sizes_limits(case)
    has_edge = edge_of(case) is not None
    masked = _mask_key(case) is not None

    @st.composite
    def draw(d):
        sizes = {}
        for letter, (low, high) in limits.items():
            if letter == "B":
                low = min(max(low, min_batch), max(high, min_batch))
                high = max(high, low)
            sizes[letter] = d(st.integers(low, high), label=letter)
        seed = d(st.integers(0, max_seed), label="seed")
        scale = d(st.sampled_from(SCALES), label="scale") if has_edge else 1
        padded: tuple = ()
        if masked and "B" in sizes:
            flags = d(st.lists(st.booleans(), min_size=sizes["B"], max_size=sizes["B"]), label="padded")
            padded = tuple(i for i, f in enumerate(flags) if f)
        return Example(case.name, sizes, seed, scale, padded)

    return draw()


def draw_inputs(case: Case, example: Example) -> dict[str, np.ndarray]:
    """The example's inputs, params and state (NumPy float64, float32-representable): the case's
    sampler at its sizes and seed, then the edge transform at its scale, then its padded rows."""
    xp = rx.backend("numpy")
    try:
        arrays = {k: np.array(rx.to_numpy(v)) for k, v in case.draw(xp, example.seed, example.sizes).items()}
    except RuntimeError as exc:  # a sampler's rejection loop that gave up
        raise Unsampleable(str(exc)) from exc
    if example.scale != 1:
        edge = edge_of(case)
        if edge is None:
            raise ValueError(f"{case.name}: no value edge; scale must be 1, got {example.scale}")
        arrays = edge[0](arrays, example.scale)
    key = _mask_key(case)
    if key is not None and example.padded:
        mask = arrays[key].copy()
        mask[list(example.padded)] = 0
        arrays[key] = mask
    return arrays


# ----------------------------------------------------------------------------- the live reference


def _golden(name: str, entry: Mapping[str, Any], tensors: Mapping[str, np.ndarray]) -> Golden:
    def role(prefix: str) -> dict[str, np.ndarray]:
        n = len(prefix) + 1
        return {k[n:]: v for k, v in sorted(tensors.items()) if k.startswith(prefix + "/")}

    return Golden(
        name=name, function=entry["function"], spec=entry["spec"], seed=int(entry["seed"]),
        config=dict(entry["config"]), inputs=role("inputs"), params=role("params"), state=role("state"),
        cotangents=role("cotangents"), outputs=role("outputs"), grads=role("grads"),
        tensors=dict(sorted(tensors.items())),
        tol={k: d["tol"] for k, d in entry["tensors"].items() if "tol" in d},
        intermediates=role("intermediates"), order=tuple(dict(o) for o in entry["order"]),
        precision=str(entry.get("precision", "")),
    )


@dataclass(frozen=True)
class Live:
    """A live reference: the [`Golden`][refmem.golden.Golden] of an example, its manifest entry and
    tensors, and the float32 measurement its tolerances come from (``exact``: from every run,
    the golden rule itself; otherwise a lower bound of it)."""

    golden: Golden
    entry: dict
    tensors: dict
    example: Example
    measurement: Measurement | None = field(default=None, repr=False, compare=False)

    @property
    def exact(self) -> bool:
        """Whether the tolerances are the exact rule's (every run of the measurement)."""
        return self.measurement is None or self.measurement.exact

    def refined(self, runs: int | None = None) -> "Live":
        """This reference with the tolerances of the first ``runs`` runs of its measurement (all by
        default: the exact rule), the missing runs computed and the reference tensors reused. With
        every run, raises [`Undecidable`][refmem.differential.Undecidable] where the exact rule
        cannot judge the example."""
        m = self.measurement
        if m is None or m.exact or (runs is not None and m.done >= runs):
            return self
        return _live(m.case, self.example, self.tensors, m, runs)


#: A tensor whose float32 measurement is off by more than this fraction of its scale has lost every
#: float32 digit (saturation, underflow): the golden rule cannot derive a float64 tolerance from it.
LOST = 0.05


class Undecidable(RuntimeError):
    """An example the golden tolerance rule cannot judge (see :func:`live_golden`)."""


def _reference(case: Case, seed: int, arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The golden tensors of ``arrays`` (:func:`refmem.extended.reference` with float64 as the working
    dtype: refmem's NumPy float64 evaluation, the reference every number of
    docs/differential-testing.md was measured with; the export now evaluates in long double), with
    the cotangents of :func:`refmem.gradcheck.cotangents_for` at ``seed``."""
    from . import extended, gradcheck

    xp = rx.backend("numpy")
    shapes = {k: np.zeros(np.shape(rx.to_numpy(v))) for k, v in
              case.forward({k: rx.from_numpy(xp, v) for k, v in arrays.items()}).outputs.items()}
    cot = gradcheck.cotangents_for(shapes, seed)
    values = extended.reference(case, arrays, cot, dtype=np.float64)
    for k, v in values.items():
        if not np.all(np.isfinite(v)):
            raise GoldenError(f"{case.name}: {k} holds NaN or infinity")
    out = {k: np.ascontiguousarray(v) for k, v in arrays.items()}
    out.update({f"cotangents/{k}": np.ascontiguousarray(v) for k, v in cot.items()})
    out.update(values)
    return out


def live_golden(case: Case, example: Example, arrays: Mapping[str, np.ndarray] | None = None,
                runs: int | None = None) -> Live:
    """refmem's reference of ``example`` (float64 NumPy forward, intermediates, cotangents drawn at its
    seed, hand-derived gradients) with tolerances from the one float32 measurement of the golden
    export ([`Measurement`][refmem.golden.tolerances.Measurement]: the emulated float32 runs of
    refmem on the example). The manifest entry gains ``"differential"``: the example's sizes,
    seed, scale and padded rows.

    ``runs``: how many of the measurement's runs to compute now; all by default (the exact rule).
    Fewer give a lower bound of every tolerance (``0``: ``κ = 1``, no run at all, free): a result
    within it passes the exact rule too, and [`check_example`][refmem.differential.check_example]
    judges a result that does not by the exact rule ([`Live.refined`][refmem.differential.Live.refined]).

    An example where refmem's emulated float32 lost every digit of a tensor in a run computed
    (error above [`LOST`][refmem.differential.LOST] of its scale: saturation, underflow), whose
    float64 tolerance the rule cannot derive, raises [`Undecidable`][refmem.differential.Undecidable]
    (the search refuses it): the exact rule, whose runs include those, would too."""
    arrays = draw_inputs(case, example) if arrays is None else dict(arrays)
    tensors = _reference(case, example.seed, arrays)
    return _live(case, example, tensors, Measurement(case, tensors), runs)


def _live(case: Case, example: Example, tensors: dict, measurement: Measurement, runs: int | None) -> Live:
    tol = measurement.tolerances(runs)
    if measurement.done:  # the runs so far already lost every digit: so would all of them
        for k, runs in measurement.runs.items():
            ref = tensors[k]
            scale = float(np.max(np.abs(ref))) if ref.size else 0.0
            worst = max((float(np.max(np.abs(a.astype(np.float64) - ref))) if ref.size else 0.0 for a in runs),
                        default=0.0)
            if scale > 0 and not worst <= LOST * scale:
                raise Undecidable(f"{k}: refmem's float32 run lost every digit (saturation or underflow)")
    entry = manifest_entry(case, example.seed, tensors, tol)
    entry["differential"] = example.to_json()
    entry = json.loads(json.dumps(entry, sort_keys=True, allow_nan=False))
    return Live(_golden(case.name, entry, tensors), entry, tensors, example, measurement)


def float32_undecidable(live: Live) -> bool:
    """Whether ``live`` holds a usage (``outputs/usage`` or, per step, ``intermediates/usage``) with two
    values closer than :data:`FLOAT32_TIE` but not equal: the allocation sort's order there is set by
    terms float32 cannot resolve, so a float32 implementation may sort otherwise (the example is
    skipped in float32, counted as refused)."""
    for key in ("outputs/usage", "intermediates/usage"):
        u = live.tensors.get(key)
        if u is None or u.shape[-1] < 2:
            continue
        gaps = np.diff(np.sort(u, axis=-1), axis=-1)
        if np.any((gaps > 0) & (gaps < FLOAT32_TIE)):
            return True
    return False


def _call(adapter: Adapter, name: str, given: dict, dtype: str, config: dict) -> tuple[Mapping | None, str]:
    try:
        results = adapter(name, given, dtype, dict(config))
        if not isinstance(results, Mapping):
            raise TypeError(f"the adapter returned {type(results).__name__}, expected a dict")
        return results, ""
    except Exception as exc:  # noqa: BLE001 - an adapter that raises fails the example
        return None, f"{name}: the adapter raised {type(exc).__name__}: {exc}"


def check_example(adapter: Adapter, case: Case, example: Example, dtype: str = "float64",
                  live: Live | None = None) -> tuple[Report, Live]:
    """Run ``adapter`` on ``example`` and compare with the live reference by the golden rules.

    With a ``live`` whose tolerances are a lower bound (``live_golden(..., runs=0)``), a result
    within them passes; one that is not is compared again under the bound of the round-to-nearest
    run, then under the exact tolerances ([`Live.refined`][refmem.differential.Live.refined], which
    may raise [`Undecidable`][refmem.differential.Undecidable]), so the verdict is the exact rule's.
    Returns the report and the live reference it was judged by.
    """
    live = live or live_golden(case, example)
    results, problem = _call(adapter, case.name, live.golden.given(dtype), dtype, live.golden.config)
    if results is None:
        report = Report()
        report.problems.append(problem)
        return report, live
    report = compare(live.golden, results, dtype)
    for runs in (1, None):  # the round-to-nearest run alone (a tighter bound, cheap), then every run
        if report.passed or live.exact:
            break
        live = live.refined(runs)
        report = compare(live.golden, results, dtype)
    return report, live


# ----------------------------------------------------------------------------- batch invariance


def _item(tensors: Mapping[str, np.ndarray], keys: Sequence[str], b: int, B: int) -> dict[str, np.ndarray]:
    """Batch row ``b`` (kept as a batch of one) of every tensor of ``keys`` with a leading axis of ``B``."""
    out = {}
    for k in keys:
        v = tensors[k]
        batched = role_of(k) != "params" and not k.startswith("grads/params/") and v.ndim and v.shape[0] == B
        out[k] = np.ascontiguousarray(v[b:b + 1]) if batched else v
    return out


def _close(case: str, what: str, ref: np.ndarray, got: Any, tol: Sequence[float]) -> str:
    """``""`` when ``got`` matches ``ref`` within ``[rtol, atol]``, else the reason."""
    try:
        got = np.asarray(got, dtype=np.float64)
    except Exception as exc:  # noqa: BLE001
        return f"{case}: {what}: not an array ({exc})"
    if got.shape != ref.shape:
        return f"{case}: {what}: shape {list(got.shape)}, expected {list(ref.shape)}"
    rtol, atol = tol
    with np.errstate(invalid="ignore"):
        bad = ~(np.abs(got - ref) <= atol + rtol * np.abs(ref))
    if bad.any():
        idx = tuple(int(i) for i in np.argwhere(bad)[0])
        return f"{case}: {what} at {list(idx)}: your full batch {ref[idx]:.9g}, this run {got[idx]:.9g}"
    return ""


def batch_invariance(adapter: Adapter, case: Case, example: Example, dtype: str = "float64",
                     live: Live | None = None) -> list[str]:
    """Problems (``[]``: none) of the batch-invariance property of ``adapter`` at ``example`` (B ≥ 2):

    * every item of the batch, run alone (a batch of one, the same cotangent rows), gives the
      outputs, intermediates and input/state gradients of its row in the full batch;
    * every item, its companions replaced by the items of another draw (seed + 1), gives the same;
    * in a masked case, the values of ``inputs/h`` under an item's padding, changed, leave its
      outputs unchanged (except position 0, which SPEC §2's ``s_0 = tanh(h[:, 0] W_s)`` reads).

    Values are held to the example's tolerance in ``dtype``.
    """
    live = live or live_golden(case, example)
    g = live.golden
    B = int(example.sizes.get("B", 0))
    if B < 2:
        return []
    given = g.given(dtype)
    full, problem = _call(adapter, case.name, given, dtype, g.config)
    if full is None:
        return [problem]
    full = {k: np.asarray(v if isinstance(v, np.ndarray) else rx.to_numpy(v)) for k, v in full.items()}
    compared = [k for k in g.tol if k in full and not k.startswith("grads/params/")]
    problems: list[str] = []

    def host(v: Any) -> np.ndarray:
        return np.asarray(v if isinstance(v, np.ndarray) else rx.to_numpy(v))

    def against(b: int, results: Mapping[str, Any] | None, problem: str, how: str, keys: Sequence[str],
                batched: bool = False) -> None:
        """``results`` (of item ``b`` alone, or of a full batch whose row ``b`` counts) against row ``b``."""
        if results is None:
            problems.append(problem + f" ({how})")
            return
        want = _item(full, keys, b, B)
        for k in keys:
            if k not in results:
                problems.append(f"{case.name}: batch invariance ({how}): {k} missing")
                return
            got = host(results[k])
            if batched:
                got = _item({k: got}, [k], b, B)[k]
            why = _close(case.name, f"batch invariance ({how}): item {b} {k}", want[k], got, g.tol[k][dtype])
            if why:
                problems.append(why)
                return

    # alone
    for b in range(B):
        alone = _item(given, list(given), b, B)
        res, problem = _call(adapter, case.name, alone, dtype, g.config)
        against(b, res, problem, "run alone", compared)
        if problems:
            return problems
    # other companions: item 0 of this draw with items 1.. of another draw
    try:
        other = draw_inputs(case, Example(case.name, example.sizes, example.seed + 1, example.scale, example.padded))
    except Unsampleable:
        other = {}  # no second draw there: the companions check is skipped
    mixed = {}
    for k, v in given.items():
        if role_of(k) in ("inputs", "state") and v.ndim and v.shape[0] == B and k in other:
            w = other[k].astype(v.dtype)
            w[0] = v[0]
            mixed[k] = w
        else:
            mixed[k] = v
    res, problem = _call(adapter, case.name, mixed, dtype, g.config)
    against(0, res, problem, "companions replaced", [k for k in compared if role_of(k) == "outputs"], batched=True)
    if problems:
        return problems
    # values under padding
    key = _mask_key(case)
    if key is not None and "inputs/h" in given:
        mask = given[key]
        h = given["inputs/h"].copy()
        pad = mask == 0
        pad[:, 0] = False  # s_0 reads h[:, 0] whatever the mask
        if pad.any():
            noise = np.random.default_rng([example.seed, 0x9AD]).normal(size=h.shape) * 3
            h[pad] = noise[pad].astype(h.dtype)
            res, problem = _call(adapter, case.name, {**given, "inputs/h": h}, dtype, g.config)
            if res is None:
                problems.append(problem + " (padding changed)")
            else:
                for k in [k for k in compared if role_of(k) == "outputs"]:
                    why = _close(case.name, f"batch invariance (values under padding changed): {k}", full[k],
                                 host(res[k]), g.tol[k][dtype])
                    if why:
                        problems.append(why)
                        break
    return problems


# ----------------------------------------------------------------------------- reproducers


def save_reproducer(directory: str | Path, live: Live) -> Path:
    """Write ``live`` as a format-2 golden case into ``directory`` (its file, and the directory's
    ``manifest.json`` and ``README.md``, keeping the other cases of an existing manifest there),
    so that ``refmem golden verify --dir DIRECTORY --adapter ...`` re-runs it. Returns the file.

    Written atomically (`refmem.golden.storage.write_set`); a directory holding a golden
    set not written by ``--save-failures`` is refused (`refmem.golden.storage.reproducer_target_problem`)."""
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


# ----------------------------------------------------------------------------- the search


@dataclass
class CaseResult:
    """The outcome of one case: its report, how many examples ran, the shrunk failing example
    (``None`` when it passed), the reproducer written (if any) and the examples refused by the
    case's sampler."""

    case: str
    report: Report
    examples: int = 0
    failing: Example | None = None
    reproducer: Path | None = None
    unsampleable: int = 0
    invariance: list[str] = field(default_factory=list)
    triggers: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.report.passed


@dataclass
class Result:
    """Every case's :class:`CaseResult` and their combined report."""

    cases: list[CaseResult]
    report: Report

    @property
    def passed(self) -> bool:
        return self.report.passed

    def meta(self) -> dict[str, Any]:
        return {c.case: {"examples": c.examples, "unsampleable": c.unsampleable,
                         "failing": None if c.failing is None else c.failing.to_json(), "needs": c.triggers,
                         "reproducer": None if c.reproducer is None else str(c.reproducer)} for c in self.cases}


def _worst(report: Report) -> float:
    ratios = [r.ratio for r in report.rows if r.ratio == r.ratio]
    return max(ratios) if ratios else 0.0


def run_case(adapter: Adapter, case: Case, dtype: str = "float64", max_examples: int = 100, seed: int = 0,
             save_dir: str | Path | None = None, invariance: bool = False) -> CaseResult:
    """Search ``max_examples`` examples of ``case`` for one where ``adapter`` disagrees with live refmem
    (and, with ``invariance``, where it is not batch invariant); shrink it; report it.

    A passing case's report holds the rows of its closest call (the example of the largest
    error ratio), each noted with the example. A failing case's report holds the shrunk
    example's rows, first divergence and a problem naming the example and its reproducer.
    """
    state: dict[str, Any] = {"n": 0, "bad": 0, "worst": None, "fail": None}

    def refmem_failed(example: Example, exc: Exception) -> None:
        report = Report()
        report.problems.append(f"{case.name}: refmem failed at this example: {type(exc).__name__}: {exc}")
        state["fail"] = (example, None, report, [])
        raise AssertionError(report.problems[0]) from exc

    def test(example: Example) -> None:
        state["n"] += 1
        try:
            live = live_golden(case, example, runs=0)  # the free lower bound of the tolerances (κ = 1)
        except (Unsampleable, Undecidable):
            state["bad"] += 1
            reject()
        except Exception as exc:  # noqa: BLE001 - refmem itself failed here: report it, shrunk
            refmem_failed(example, exc)
        if dtype == "float32" and float32_undecidable(live):
            state["bad"] += 1
            reject()
        try:  # a result beyond the bound is judged again by the exact rule (the measurement runs then)
            report, live = check_example(adapter, case, example, dtype, live)
            inv = batch_invariance(adapter, case, example, dtype, live) if (invariance and report.passed) else []
            if inv and not live.exact:
                live = live.refined()
                inv = batch_invariance(adapter, case, example, dtype, live)
        except Undecidable:
            state["bad"] += 1
            reject()
        except Exception as exc:  # noqa: BLE001 - the measurement failed here
            refmem_failed(example, exc)
        if not report.passed or inv:
            state["fail"] = (example, live, report, inv)
            raise AssertionError(report.failure_text(case.name) or "\n".join(inv))
        if state["worst"] is None or _worst(report) > _worst(state["worst"][1]):
            state["worst"] = (example, report)

    runner = given(examples_for(case, min_batch=2 if invariance else 1))(test)
    runner = settings(max_examples=max_examples, deadline=None, database=None, derandomize=False,
                      phases=(Phase.generate, Phase.shrink), print_blob=False,
                      suppress_health_check=list(HealthCheck))(runner)
    runner = hyp_seed(seed)(runner)
    result = CaseResult(case.name, Report())
    try:
        runner()
    except Unsatisfiable:
        result.report.problems.append(f"{case.name}: the case's sampler refused every drawn example")
    except Exception:  # noqa: BLE001 - the shrunk failure Hypothesis re-raises (or reports as flaky)
        if state["fail"] is None:
            raise
    result.examples, result.unsampleable = state["n"], state["bad"]
    if state["fail"] is not None:
        example, live, report, inv = state["fail"]
        result.failing, result.invariance = example, list(inv)
        result.report.extend(report)
        result.report.problems.extend(inv)
        where = ""
        if save_dir is not None and live is not None:
            result.reproducer = save_reproducer(save_dir, live)
            where = f"; reproducer {result.reproducer} (refmem golden verify --dir {save_dir})"
        result.triggers = triggers(adapter, case, example, dtype, invariance) if live is not None else []
        needs = f"; it needs {', '.join(result.triggers)}" if result.triggers else ""
        result.report.problems.append(f"{case.name}: differential ({dtype}): fails at {example.describe()}"
                                      f" (shrunk, {state['n']} examples run){needs}{where}")
    elif state["worst"] is not None:
        example, report = state["worst"]
        try:  # the closest call, judged under the exact tolerances (the search used their lower bound)
            exact, _ = check_example(adapter, case, example, dtype, live_golden(case, example))
            report = exact if exact.passed else report
        except Exception:  # noqa: BLE001 - undecidable there: keep the rows of the bound
            pass
        for row in report.rows:
            row.note = f"closest of {state['n']} examples: {example.describe()}"
        result.report.extend(report)
    return result


def triggers(adapter: Adapter, case: Case, example: Example, dtype: str = "float64",
             invariance: bool = False) -> list[str]:
    """What of the shrunk ``example`` the failure needs: for each size letter (then the scale, then
    the padded rows), the example with just that one moved back to the case's default still
    fails or not; those whose move makes it pass are listed, e.g. ``"R=1 (passes at R=2)"``."""
    out = []
    variants: list[tuple[str, Example]] = []
    for letter, value in example.sizes.items():
        default = int(case.sizes[letter])
        if value != default:
            sizes = {**example.sizes, letter: default}
            padded = tuple(b for b in example.padded if b < sizes.get("B", 0))
            variants.append((f"{letter}={value} (passes at {letter}={default})",
                             Example(case.name, sizes, example.seed, example.scale, padded)))
    if example.scale != 1:
        variants.append((f"scale {example.scale} (passes at scale 1)",
                         Example(case.name, example.sizes, example.seed, 1, example.padded)))
    if example.padded:
        variants.append((f"fully padded rows {list(example.padded)} (passes without)",
                         Example(case.name, example.sizes, example.seed, example.scale, ())))
    for what, ex in variants:
        try:
            live = live_golden(case, ex)
        except Exception:  # noqa: BLE001 - not drawable there: says nothing
            continue
        report, _ = check_example(adapter, case, ex, dtype, live)
        inv = batch_invariance(adapter, case, ex, dtype, live) if (invariance and report.passed) else []
        if report.passed and not inv:
            out.append(what)
    return out


def select_cases(adapter: Adapter, patterns: Sequence[str] | None = None) -> list[Case]:
    """The catalogue cases ``adapter`` declares, narrowed by ``patterns`` (fnmatch or substring)."""
    chosen = [c for c in catalogue.cases() if adapter.implements(c.name)]
    if patterns:
        chosen = [c for c in chosen if any(fnmatch.fnmatchcase(c.name, p) or p in c.name for p in patterns)]
    return chosen


def differential(adapter: Adapter | str, patterns: Sequence[str] | str | None = None, dtype: str = "float64",
                 max_examples: int = 100, seed: int = 0, save_dir: str | Path | None = None,
                 invariance: bool = False, on_case: Callable[[CaseResult], None] | None = None) -> Result:
    """:func:`run_case` for every catalogue case ``adapter`` declares (narrowed by ``patterns``).

    Raises :class:`~refmem.golden.GoldenError` for a bad dtype or when no case matches.
    """
    if dtype not in DTYPES:
        raise GoldenError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    if isinstance(adapter, str):
        adapter = load_adapter(adapter)
    if isinstance(patterns, str):
        patterns = [patterns]
    chosen = select_cases(adapter, patterns)
    if not chosen:
        raise GoldenError(f"adapter {adapter.spec}: no catalogue case matches {list(adapter.patterns)}"
                          + (f" and {list(patterns)}" if patterns else ""))
    results, report = [], Report()
    for case in chosen:
        r = run_case(adapter, case, dtype, max_examples, seed, save_dir, invariance)
        results.append(r)
        report.extend(r.report)
        if on_case is not None:
            on_case(r)
    return Result(results, report)


# ----------------------------------------------------------------------------- refmem as an adapter


def _refmem_run(case: str, tensors: dict[str, np.ndarray], dtype: str) -> dict[str, np.ndarray]:
    """refmem itself under the adapter protocol (NumPy, in ``dtype``): for the property tests of
    refmem (batch invariance) and as a template."""
    c = catalogue.get_case(case)
    xp = rx.backend("numpy")
    arrays = {k: rx.from_numpy(xp, v) for k, v in tensors.items() if role_of(k) in catalogue.ROLES}
    fwd = c.forward(arrays)
    cot = {k[len("cotangents/"):]: rx.from_numpy(xp, v) for k, v in tensors.items() if k.startswith("cotangents/")}
    grads = c.backward(arrays, cot)
    out = {f"outputs/{k}": np.asarray(rx.to_numpy(v)) for k, v in fwd.outputs.items()}
    out.update({f"intermediates/{k}": np.asarray(rx.to_numpy(v)) for k, v in fwd.intermediates.items()})
    out.update({f"grads/{k}": np.asarray(rx.to_numpy(v)) for k, v in grads.items()})
    return out


#: :func:`_refmem_run` as an :class:`~refmem.golden.Adapter` of every case.
refmem_adapter = Adapter("refmem.differential:refmem_adapter", _refmem_run, ("*",))
