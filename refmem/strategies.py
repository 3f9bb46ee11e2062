"""Hypothesis strategies for property tests of refmem and of your own implementation.

Hypothesis is a test extra (``pip install 'refmem[test]'``); importing
``refmem`` never needs it, only importing this module does.

The strategies draw NumPy ``float64`` arrays whose values are float32-representable
(as the catalogue's samplers and [docs/golden-format.md](../golden-format.md) do), so a float32 implementation
sees exactly the same numbers; pass ``xp=`` to get them in another namespace.

A property test of a catalogue case at drawn sizes and seeds:

    from hypothesis import given
    from refmem import catalogue, gradcheck, strategies as rst
    from refmem import xp as rx

    case = catalogue.get_case("memory_lstm/step/default")

    @given(sizes=rst.sizes_for(case), seed=rst.seeds())
    def test_vjp(sizes, seed):
        records = gradcheck.check_case(case, rx.backend("numpy"), seed=seed,
                                       sizes=sizes, methods=("directional",))
        assert all(r.passed for r in records)

and one of a function of your own:

    @given(rst.finite_arrays((3, 5), low=-1e4, high=1e4))
    def test_softmax_rows(x):
        p = my_softmax(x)
        assert abs(p.sum(-1) - 1).max() < 1e-12
"""

from __future__ import annotations

from typing import Any, Mapping, NamedTuple

import numpy as np

try:
    from hypothesis import strategies as st
    from hypothesis.extra import numpy as hnp
except ImportError as exc:  # pragma: no cover - hypothesis is a test extra
    raise ImportError("refmem.strategies needs Hypothesis: pip install 'refmem[test]'") from exc

from . import xp as rx
from .errors import DomainError
from .catalogue import Case

__all__ = [
    "MAX_SEED",
    "Drawn",
    "seeds",
    "sizes_for",
    "case_inputs",
    "shapes",
    "finite_arrays",
    "probability_rows",
    "separated_values",
]

MAX_SEED = 2**31 - 1
"""Largest seed [`seeds`][refmem.strategies.seeds] draws."""


def _to(xp: Any, a: np.ndarray) -> Any:
    return a if xp is None else rx.from_numpy(xp, a)


def _f32(a: np.ndarray) -> np.ndarray:
    """Round to float32 and store as float64 ([docs/golden-format.md](../golden-format.md))."""
    return np.asarray(a, dtype=np.float64).astype(np.float32).astype(np.float64)


def seeds(max_seed: int = MAX_SEED) -> st.SearchStrategy[int]:
    """Seeds for [`refmem.sampling.Sampler`][refmem.sampling.Sampler] and the catalogue's ``sample``:
    integers in ``[0, max_seed]``."""
    _at_least("max_seed", max_seed, 0)
    return st.integers(min_value=0, max_value=max_seed)


def sizes_for(case: Case, extra: int = 2, fixed: Mapping[str, int] | None = None) -> st.SearchStrategy[dict[str, int]]:
    """Sizes for ``case``: each SPEC letter of ``case.sizes`` from its ``min_sizes`` (default 1) to default
    ``+ extra`` (or its ``max_sizes``, when lower).

    ``fixed`` pins some letters to given values (e.g. ``{"B": 1}``). Draws shrink
    towards the smallest sizes.
    """
    if not isinstance(case, Case):
        raise TypeError(f"case: expected a refmem.catalogue.Case (see refmem.catalogue.get_case), got {type(case).__name__}")
    _at_least("extra", extra, 0)
    fixed = dict(fixed or {})
    unknown = set(fixed) - set(case.sizes)
    if unknown:
        raise KeyError(f"{case.name}: unknown size letters {sorted(unknown)}; known {sorted(case.sizes)}")
    parts = {}
    for letter, default in case.sizes.items():
        if letter in fixed:
            parts[letter] = st.just(int(fixed[letter]))
            continue
        low = int(case.min_sizes.get(letter, 1))
        high = min(int(default) + extra, int(case.max_sizes.get(letter, int(default) + extra)))
        parts[letter] = st.integers(min_value=low, max_value=max(low, high))
    return st.fixed_dictionaries(parts)


class Drawn(NamedTuple):
    """What [`case_inputs`][refmem.strategies.case_inputs] draws: ``sizes`` (SPEC letters), ``seed``, and
    the sampled ``arrays``."""

    sizes: dict
    seed: int
    arrays: dict


def case_inputs(case: Case, xp: Any, extra: int = 2) -> st.SearchStrategy[Drawn]:
    """Valid inputs of ``case`` in namespace ``xp`` at drawn sizes and seed (``case.draw``)."""

    sizes_for(case, extra=extra)  # refuses a non-Case and a negative extra now, not at the first draw

    @st.composite
    def drawn(draw):
        sizes = draw(sizes_for(case, extra=extra), label="sizes")
        seed = draw(seeds(), label="seed")
        return Drawn(sizes, seed, case.draw(xp, seed, sizes))

    return drawn()


def shapes(ndim: int, min_side: int = 1, max_side: int = 5) -> st.SearchStrategy[tuple[int, ...]]:
    """Array shapes of exactly ``ndim`` dimensions, each side in ``[min_side, max_side]``."""
    _at_least("ndim", ndim, 0)
    _at_least("min_side", min_side, 0)
    _at_least("max_side", max_side, min_side)
    return hnp.array_shapes(min_dims=ndim, max_dims=ndim, min_side=min_side, max_side=max_side)


def _at_least(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise DomainError(f"{name}: expected an integer >= {minimum}, got {value!r}")


def _shape_strategy(shape: Any) -> st.SearchStrategy[tuple[int, ...]]:
    if isinstance(shape, st.SearchStrategy):
        return shape
    return st.just(tuple(int(s) for s in shape))


def finite_arrays(
    shape: Any,
    low: float = -10.0,
    high: float = 10.0,
    xp: Any = None,
    float32: bool = True,
) -> st.SearchStrategy[Any]:
    """Finite float64 arrays with values in ``[low, high]`` (no NaN, no infinity).

    Args:
        shape: a tuple, or a strategy of tuples (e.g. [`shapes`][refmem.strategies.shapes]).
        low: lower bound of the values, included.
        high: upper bound of the values, included.
        xp: namespace to return the arrays in (``None``: NumPy).
        float32: draw float32-representable values only (default), as the golden inputs are.
    """
    if not (np.isfinite(low) and np.isfinite(high) and low <= high):
        raise DomainError(f"low, high: expected finite bounds with low <= high, got low={low!r}, high={high!r}")
    elements = st.floats(min_value=low, max_value=high, allow_nan=False, allow_infinity=False,
                         allow_subnormal=False, width=32 if float32 else 64)
    dtype = np.float32 if float32 else np.float64
    return _shape_strategy(shape).flatmap(
        lambda s: hnp.arrays(dtype, s, elements=elements).map(lambda a: _to(xp, np.asarray(a, dtype=np.float64)))
    )


def probability_rows(shape: Any, min_prob: float = 0.0, xp: Any = None) -> st.SearchStrategy[Any]:
    """Arrays whose rows along the last axis are probability vectors (non-negative, summing to 1).

    Each row is drawn as non-negative weights and normalised, then mixed with the
    uniform distribution so that every entry is at least ``min_prob``
    (``min_prob · n ≤ 1`` is required). Rows sum to 1 up to float64 rounding;
    values are not rounded to float32 (that would break the sum).
    """

    def check(s: tuple[int, ...]) -> None:
        n = s[-1] if s else 1
        if min_prob * n > 1.0:
            raise DomainError(f"min_prob: expected at most 1/{n} for rows of {n}, got {min_prob}")

    if not isinstance(shape, st.SearchStrategy):
        check(tuple(shape))

    def build(s: tuple[int, ...]) -> st.SearchStrategy[Any]:
        check(s)
        n = s[-1] if s else 1
        weights = hnp.arrays(np.float64, s, elements=st.floats(0.0, 1.0, allow_subnormal=False))

        def normalise(w: np.ndarray) -> Any:
            w = w + 1e-3  # no all-zero row
            p = w / w.sum(axis=-1, keepdims=True)
            p = min_prob + (1.0 - min_prob * n) * p
            return _to(xp, p)

        return weights.map(normalise)

    return _shape_strategy(shape).flatmap(build)


def separated_values(
    shape: Any,
    low: float = 0.0,
    high: float = 1.0,
    gap: float = 0.05,
    xp: Any = None,
) -> st.SearchStrategy[Any]:
    """Values in ``[low, high]`` whose pairwise gaps along the last axis are all ≥ ``gap``.

    For inputs that are sorted (the DNC's usages before allocation, SPEC §5 step 3):
    ties and near-ties are kinks of the sort, so such values stay clear of them.
    Each row is a drawn permutation of an evenly spaced grid, each point moved by
    a drawn jitter of less than a fifth of the spacing; raises ``ValueError``
    when ``gap`` does not fit (``(high - low) / n < 2 gap``). Values are float32-representable.
    """

    def check(s: tuple[int, ...]) -> float:
        n = s[-1]
        spacing = (high - low) / max(n, 1)
        if spacing < 2 * gap:
            raise DomainError(f"gap: separated_values: {n} values in [{low}, {high}] cannot keep gaps of {gap}")
        return spacing

    if not isinstance(shape, st.SearchStrategy):
        check(tuple(shape))

    def build(s: tuple[int, ...]) -> st.SearchStrategy[Any]:
        spacing = check(s)
        n = s[-1]
        rows = int(np.prod(s[:-1], dtype=np.int64))
        jitter = hnp.arrays(np.float64, (rows, n), elements=st.floats(-0.2, 0.2, allow_subnormal=False))
        perms = st.lists(st.permutations(list(range(n))), min_size=rows, max_size=rows)

        def assemble(args: tuple[np.ndarray, list[list[int]]]) -> Any:
            j, order = args
            base = low + spacing * (np.arange(n) + 0.5)
            out = np.empty((rows, n))
            for r in range(rows):
                out[r] = (base + spacing * j[r])[np.asarray(order[r], dtype=np.int64)]
            return _to(xp, _f32(np.clip(out, low, high)).reshape(s))

        return st.tuples(jitter, perms).map(assemble)

    return _shape_strategy(shape).flatmap(build)
