"""Benchmark sizes in SPEC's letters (the task's configurations) and their ``--quick`` versions."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping


@dataclass(frozen=True)
class Bench:
    """One benchmark: ``name`` (starts with the model), ``model`` and ``sizes``."""

    name: str
    model: str
    sizes: Mapping[str, int] = field(default_factory=dict)

    @property
    def batch(self) -> int:
        return int(self.sizes["B"])


# The copy task of deepmind/dnc's train.py: 4 bits, so D = 6 inputs, Y = 5 targets.
BENCHES = (
    Bench("dnc/copy", "dnc", {"B": 16, "T": 20, "D": 6, "Y": 5, "H": 64, "N": 16, "W": 16, "R": 4, "nw": 1}),
    Bench("dnc/large", "dnc", {"B": 32, "T": 50, "D": 6, "Y": 5, "H": 128, "N": 128, "W": 32, "R": 4, "nw": 1}),
    Bench("attention/bahdanau", "attention", {"B": 32, "T": 50, "D": 128, "H": 128, "K": 32}),
    Bench("memory_lstm/unroll", "memory_lstm", {"B": 32, "T": 50, "D": 64, "H": 128, "M": 8}),
)

QUICK = (
    Bench("dnc/copy", "dnc", {"B": 2, "T": 3, "D": 6, "Y": 5, "H": 8, "N": 6, "W": 4, "R": 2, "nw": 1}),
    Bench("attention/bahdanau", "attention", {"B": 2, "T": 4, "D": 5, "H": 6, "K": 3}),
    Bench("memory_lstm/unroll", "memory_lstm", {"B": 2, "T": 4, "D": 5, "H": 6, "M": 3}),
)

DTYPES = ("float32", "float64")
IMPLS = ("refmem", "torch", "jax")


def unmatched(quick: bool, texts: list[str] | None, option: str = "--only") -> str:
    """``""`` when every text of ``texts`` is in some benchmark's name, else a one-line error naming them."""
    chosen = QUICK if quick else BENCHES
    missing = [t for t in texts or [] if not any(t in b.name for b in chosen)]
    if not missing:
        return ""
    which = "quick benchmark" if quick else "benchmark"
    return (f"argument {option}: {', '.join(repr(t) for t in missing)} matches no {which}; "
            f"choices: {', '.join(b.name for b in chosen)}")


def select(quick: bool, only: list[str] | None = None) -> tuple[Bench, ...]:
    """The benchmarks to run: all (or the quick set), filtered by name substrings."""
    chosen = QUICK if quick else BENCHES
    if only:
        chosen = tuple(b for b in chosen if any(s in b.name for s in only))
    return chosen
