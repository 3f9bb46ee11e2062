"""Checks at the edge: the validation a public entry point runs once on a user's arrays.

Internal equations trust their inputs (ARCHITECTURE.md, "check at the edge, compute
inside"); the functions here are what the public entry points call before them.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .errors import DTypeError, ShapeError
from .xp import namespace

__all__ = ["check_array", "ShapeError", "DTypeError"]


def check_array(name: str, x: Any, shape: tuple | None = None, symbols: str | None = None) -> None:
    """Refuse ``x`` unless it is a floating array of ``shape``.

    ``shape`` holds ints, or ``None`` for a free dimension; ``symbols`` spells it
    in SPEC's letters, e.g. ``"(D, H)"``. Raises :class:`ShapeError` such as
    ``W_m: expected shape (D, H) = (4, 5), got (8, 5)``.
    """
    if type(x) is np.ndarray:  # fast path, same verdicts: NumPy's floating kinds are "f" and "c"
        if x.dtype.kind not in "fc":
            raise DTypeError(f"{name}: expected a floating dtype, got {x.dtype}")
        if shape is None:
            return
        given = x.shape
    else:
        if not hasattr(x, "shape") or not hasattr(x, "dtype"):
            raise DTypeError(f"{name}: expected an array, got {type(x).__name__}")
        xp = namespace(x)
        if not (xp.isdtype(x.dtype, "real floating") or xp.isdtype(x.dtype, "complex floating")):
            raise DTypeError(f"{name}: expected a floating dtype, got {x.dtype}")
        if shape is None:
            return
        given = tuple(int(s) for s in x.shape)
    ok = len(given) == len(shape) and all(e is None or e == g for e, g in zip(shape, given))
    if not ok:
        shown = "(" + ", ".join("?" if e is None else str(e) for e in shape) + ("," if len(shape) == 1 else "") + ")"
        label = f"{symbols} = {shown}" if symbols else shown
        raise ShapeError(f"{name}: expected shape {label}, got {given}")
