"""Drawing examples: the points of a case that differential testing tries.

[`Example`][refmem.differential.drawing.Example] is one drawn point (sizes, the seed of the
case's sampler, a value scale, padded rows); [`edge_of`][refmem.differential.drawing.edge_of]
says how a case's values go toward the edge of their domain; [`examples_for`][refmem.differential.drawing.examples_for]
is the Hypothesis strategy of examples; [`draw_inputs`][refmem.differential.drawing.draw_inputs]
turns an example into the case's arrays.
"""

from __future__ import annotations

import fnmatch
import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

try:
    from hypothesis import strategies as st
except ImportError as exc:  # pragma: no cover - hypothesis is a test extra
    raise ImportError("refmem.differential needs Hypothesis: pip install 'refmem[test]'") from exc

from .. import xp as rx
from ..catalogue import Case

__all__ = ["SCALES", "MAX_SIDE", "EXTRA", "SORT_GAP", "Example", "Unsampleable", "edge_of", "sizes_limits",
           "examples_for", "draw_inputs"]

#: Value scales an example may take (powers of two: scaled float32-representable values stay so).
SCALES = (1, 4, 16, 64)
#: Largest size any letter is drawn at (``min(default + EXTRA, MAX_SIDE)``).
MAX_SIDE = 8
#: How far above its default size a letter may be drawn.
EXTRA = 2
#: Smallest gap of sorted usages an edge draw of the allocation keeps (the samplers' ``SORT_GAP``).
SORT_GAP = 1e-4


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
    allocation sort would come closer than [`SORT_GAP`][refmem.differential.SORT_GAP] to a tie (the samplers' kink)."""

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
    from ..dnc import addressing as A
    from ..dnc.cases.addressing import sort_gap

    xp = rx.backend("numpy")
    u, g = (rx.from_numpy(xp, arrays[k]) for k in ("inputs/usage", "inputs/write_gates"))
    return sort_gap(A.write_allocation_weights_forward(u, g)[1].heads)


def _access_strengths(arrays: dict, scale: int) -> dict:
    """Scale the write and read strength columns of the interface (``W_xi``, ``b_xi``). The allocation
    reads the usage and gates only, so the sampler's sort-gap guarantee still holds."""
    from ..dnc.access import AccessConfig, interface_layout

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
    """Examples of ``case``: sizes within [`sizes_limits`][refmem.differential.sizes_limits] (``B`` at least ``min_batch``), a seed,
    a scale from [`SCALES`][refmem.differential.SCALES] where the case has an edge, and padded rows where it has a mask."""
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
