"""Catalogue cases of SPEC §5 (module ``dnc``)."""

from __future__ import annotations

from ..catalogue import Case

CASES: list[Case] = []
