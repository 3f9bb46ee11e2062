"""refmem's exception types: one per kind of bad input.

Every message names the argument, what was expected and what was given, e.g.
``W_m: expected shape (D, H) = (4, 5), got (8, 5)``. All of them derive from
:class:`RefmemError`; the input errors also derive from the built-in type a
caller would expect (``ValueError``, ``TypeError``), so existing ``except``
clauses keep working.

=====================  ==================================================
:class:`ShapeError`    wrong rank or size (``ValueError``)
:class:`DTypeError`    not a floating array, or dtypes mixed in one call (``TypeError``)
:class:`DomainError`   a value outside the range SPEC implies: a probability
                       outside [0, 1], a NaN, a size below its minimum (``ValueError``)
:class:`NamespaceError` arrays of different libraries in one call (``TypeError``)
=====================  ==================================================
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
