"""Seeded, backend-independent random arrays (samplers of the cases, initialisers)."""

from __future__ import annotations

from typing import Any

import numpy as np

from .errors import DomainError
from .xp import from_numpy

__all__ = ["Sampler"]


class Sampler:
    """Seeded source of float32-representable float64 arrays in a given namespace.

    Samplers and initialisers draw with NumPy's ``Generator`` (PCG64) so that a
    seed gives the same numbers on every backend; each draw is rounded to
    float32 and stored as float64 ([docs/golden-format.md](../golden-format.md)), then moved into ``xp``.
    """

    def __init__(self, xp: Any, seed: int | tuple[int, ...]):
        for k in (seed if isinstance(seed, (list, tuple)) else (seed,)):
            if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 0:
                raise DomainError(f"seed: expected an integer >= 0, got {seed!r}")
        self.xp = xp
        # an int, or a sequence of ints (NumPy's SeedSequence entropy, e.g. ``(seed, 1)`` for a second stream)
        self.seed = tuple(int(k) for k in seed) if isinstance(seed, (list, tuple)) else int(seed)
        self.rng = np.random.default_rng(self.seed)

    @classmethod
    def from_generator(cls, xp: Any, generator: Any) -> "Sampler":
        """A sampler into ``xp`` that continues the stream of an existing NumPy ``Generator``.

        Lets an API that accepts a caller's ``numpy.random.Generator`` draw through
        [`Sampler`][refmem.sampling.Sampler]; every draw advances ``generator`` itself.
        """
        if not isinstance(generator, np.random.Generator):
            raise TypeError(f"Sampler.from_generator: expected a numpy.random.Generator, got "
                            f"{type(generator).__name__}")
        self = cls.__new__(cls)
        self.xp = xp
        self.seed = None
        self.rng = generator
        return self

    def with_namespace(self, xp: Any) -> "Sampler":
        """A sampler into ``xp`` that shares this sampler's stream (draws advance both)."""
        other = Sampler.from_generator(xp, self.rng)
        other.seed = self.seed
        return other

    def _out(self, a: np.ndarray) -> Any:
        a = np.asarray(a, dtype=np.float64).astype(np.float32).astype(np.float64)
        return from_numpy(self.xp, a)

    def normal(self, shape: tuple[int, ...], scale: float = 1.0, loc: float = 0.0) -> Any:
        """Normal draws of the given shape."""
        return self._out(self.rng.normal(loc, scale, size=shape))

    def uniform(self, shape: tuple[int, ...], low: float = -1.0, high: float = 1.0) -> Any:
        """Uniform draws in ``[low, high)``."""
        return self._out(self.rng.uniform(low, high, size=shape))

    def simplex(self, shape: tuple[int, ...], total: float = 1.0, axis: int = -1) -> Any:
        """Non-negative rows along ``axis`` that sum to ``total`` (Dirichlet draws)."""
        shape = tuple(shape)
        n = shape[axis]
        moved = tuple(s for i, s in enumerate(shape) if i != axis % len(shape)) + (n,)
        a = self.rng.dirichlet(np.ones(n), size=moved[:-1]) * total
        a = np.moveaxis(a.reshape(moved), -1, axis % len(shape))
        return self._out(a)

    def separated(self, shape: tuple[int, ...], low: float, high: float, gap: float) -> Any:
        """Values in ``[low, high]`` whose pairwise gaps along the last axis are ≥ ``gap``.

        Each row is a random permutation of an evenly spaced grid jittered by less
        than a quarter of the spacing; raises ``ValueError`` when the row is too
        long for the requested gap.
        """
        shape = tuple(shape)
        n = shape[-1]
        spacing = (high - low) / max(n, 1)
        if spacing < 2 * gap:
            raise ValueError(
                f"separated: {n} values in [{low}, {high}] cannot keep gaps of {gap}"
            )
        rows = int(np.prod(shape[:-1], dtype=np.int64))
        base = low + spacing * (np.arange(n) + 0.5)
        out = np.empty((rows, n))
        for r in range(rows):
            jitter = self.rng.uniform(-0.25 * spacing, 0.25 * spacing, size=n)
            out[r] = self.rng.permutation(base + jitter)
        return self._out(out.reshape(shape))

    def integers(self, shape: tuple[int, ...], low: int, high: int) -> Any:
        """Integer draws in ``[low, high)`` as int64."""
        return from_numpy(self.xp, self.rng.integers(low, high, size=shape).astype(np.int64))

    def truncated_normal(self, shape: tuple[int, ...], scale: float = 1.0, bound: float = 2.0,
                         float32: bool = True) -> Any:
        """Normal draws of standard deviation ``scale``, truncated at ``±bound`` standard deviations.

        TensorFlow's ``truncated_normal_initializer``: standard normal draws of the whole
        shape, then every draw outside ``[-bound, bound]`` is re-drawn (in C order, one
        batch of re-draws per round) until none is left; the result is multiplied by
        ``scale``. With ``float32=False`` the float64 draws are kept as they are (not
        rounded to float32-representable values).
        """
        out = self.rng.normal(0.0, 1.0, size=shape)
        bad = np.abs(out) > bound
        while np.any(bad):
            out[bad] = self.rng.normal(0.0, 1.0, size=int(bad.sum()))
            bad = np.abs(out) > bound
        out = out * scale
        if float32:
            return self._out(out)
        return from_numpy(self.xp, np.asarray(out, dtype=np.float64))
