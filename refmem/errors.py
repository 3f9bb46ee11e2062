"""refmem's exception types: one per kind of bad input.

Every message names the argument, what was expected and what was given, e.g.
`params.W_m: expected shape (D, H) = (4, 5), got (8, 5)`. All of them derive from
`RefmemError`; the input errors also derive from the built-in type a caller would expect
(`ValueError`, `TypeError`), so existing `except` clauses keep working.

| error | raised for |
|---|---|
| `ShapeError` | a wrong rank or size, an empty axis (a `ValueError`) |
| `DTypeError` | not an array, not a floating array, dtypes mixed in one call, a structure or scalar of the wrong type (a `TypeError`) |
| `DomainError` | a value outside the range the specification implies: a probability outside [0, 1], a NaN, a size below its minimum, an unknown option (a `ValueError`) |
| `NamespaceError` | arrays of different libraries or devices in one call (a `TypeError`) |
"""

from __future__ import annotations

__all__ = ["RefmemError", "InputError", "ShapeError", "DTypeError", "DomainError", "NamespaceError"]


class RefmemError(Exception):
    """Base class of every error refmem raises on purpose."""


class InputError(RefmemError, ValueError):
    """An argument refmem refuses; the message names it, the expected and the given."""


class ShapeError(InputError):
    """An argument with the wrong rank or size."""


class DTypeError(InputError, TypeError):
    """An argument that is not a floating array, or whose dtype differs from the call's other arrays."""


class DomainError(InputError):
    """A value outside the domain SPEC implies (probabilities in [0, 1], finite values, sizes ≥ a minimum)."""


class NamespaceError(InputError, TypeError):
    """Arrays of different array libraries (or devices) mixed in one call."""
