"""The case catalogue: every equation of SPEC.md as one checkable case.

A :class:`Case` knows its forward and backward functions, how to draw valid
inputs from a seed (away from kinks), which checks apply, and its variant. Four
readers walk the catalogue: ``refmem check``, ``refmem golden``, the tests and
the benchmarks. A family keeps its cases beside its model and exposes them as a
module-level ``CASES`` list; :data:`MODULES` maps a module name to that place.

Array dictionaries use GOLDEN.md's role-prefixed names: ``inputs/<name>``,
``params/<name>``, ``state/<name>`` for what a case takes; a forward returns its
outputs under bare names (``"y"``, ``"alpha"``); a backward returns gradients
under the role-prefixed name of the tensor they belong to.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

__all__ = ["Case", "Forward", "MODULES", "UnknownModuleError", "cases", "get_case", "module_names"]

#: Module name -> the Python module that holds its ``CASES``.
MODULES: dict[str, str] = {
    "primitives": "refmem.primitive_cases",
    "memory_lstm": "refmem.memory_lstm_cases",
    "attention": "refmem.attention.cases",
    "dnc": "refmem.dnc.cases",
}

ROLES = ("inputs", "params", "state")


class UnknownModuleError(KeyError):
    """A module name that is not in the catalogue."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0])


@dataclass(frozen=True)
class Forward:
    """What a case's forward returns.

    ``outputs``: bare output name -> array. ``frozen``: the recorded values of
    tensors whose gradient is stopped (SPEC §6); a forward called again with
    ``frozen=`` uses them in place of the live values on the stopped path.
    """

    outputs: dict[str, Any]
    frozen: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Case:
    """One checkable equation.

    Attributes:
        name: ``<module>/<function>/<variant>`` (GOLDEN.md).
        spec: the SPEC reference, e.g. ``"SPEC §5 step 3"``.
        function: public Python path of the forward, e.g. ``"refmem.dnc.addressing.allocation"``.
        sample: ``sample(xp, seed, sizes) -> {role/name: array}``: valid float64 inputs
            (float32-representable), away from kinks.
        forward: ``forward(arrays, frozen=None) -> Forward``.
        backward: ``backward(arrays, cotangents) -> {role/name: grad}``; ``cotangents``
            maps each output name to its upstream gradient.
        sizes: default sizes in SPEC's letters, e.g. ``{"B": 2, "N": 6}``.
        min_sizes: smallest size each letter may take when drawn (default 1).
        config: options that define the variant (convention, output_state, ...), JSON-able.
        complex_step: whether the forward is analytic on the sampled path (no sort,
            clip or window edge), so the complex-step check applies.
        nondiff: role-prefixed names of inputs that are not differentiated (masks, indices).
        stopped: a sentence naming the stopped gradient, if any (checked with the
            recorded value frozen).
        kinks: how the sampler avoids non-differentiable points, for the docs.
    """

    name: str
    spec: str
    function: str
    sample: Callable[..., dict[str, Any]]
    forward: Callable[..., Forward]
    backward: Callable[[Mapping[str, Any], Mapping[str, Any]], dict[str, Any]]
    sizes: Mapping[str, int] = field(default_factory=dict)
    min_sizes: Mapping[str, int] = field(default_factory=dict)
    config: Mapping[str, Any] = field(default_factory=dict)
    complex_step: bool = True
    nondiff: frozenset[str] = frozenset()
    stopped: str = ""
    kinks: str = ""

    @property
    def module(self) -> str:
        return self.name.split("/")[0]

    @property
    def function_name(self) -> str:
        return self.name.split("/")[1]

    @property
    def variant(self) -> str:
        return self.name.split("/")[2]

    def draw(self, xp: Any, seed: int = 0, sizes: Mapping[str, int] | None = None) -> dict[str, Any]:
        """Sample inputs at ``seed`` with the default sizes updated by ``sizes``."""
        merged = dict(self.sizes)
        if sizes:
            unknown = set(sizes) - set(merged)
            if unknown:
                raise KeyError(f"{self.name}: unknown size letters {sorted(unknown)}; known {sorted(merged)}")
            merged.update(sizes)
        arrays = self.sample(xp, seed, merged)
        for key in arrays:
            if key.split("/")[0] not in ROLES:
                raise ValueError(f"{self.name}: sampled tensor {key!r} lacks a role prefix {ROLES}")
        return arrays

    def differentiable(self, arrays: Mapping[str, Any]) -> list[str]:
        """The role-prefixed names whose gradients the backward returns."""
        return [k for k in arrays if k not in self.nondiff]


def module_names() -> list[str]:
    """Every module name of the catalogue, in a fixed order."""
    return list(MODULES)


def _load(module: str, required: bool = True) -> list[Case]:
    if module not in MODULES:
        raise UnknownModuleError(f"unknown module {module!r}; expected one of {', '.join(MODULES)}")
    try:
        mod = importlib.import_module(MODULES[module])
    except ModuleNotFoundError as exc:
        path = MODULES[module]
        if not (exc.name and (path == exc.name or path.startswith(exc.name + "."))):
            raise
        if required:
            raise UnknownModuleError(f"module {module!r} has no cases in this build") from exc
        return []  # a family not built yet contributes no cases to "all modules"
    found = list(mod.CASES)
    for case in found:
        if case.module != module:
            raise ValueError(f"case {case.name} is listed under module {module!r}")
    return found


def cases(modules: list[str] | tuple[str, ...] | None = None) -> list[Case]:
    """The cases of ``modules`` (all modules when ``None``), in catalogue order."""
    names = module_names() if not modules else list(dict.fromkeys(modules))
    out: list[Case] = []
    for name in names:
        out.extend(_load(name, required=bool(modules)))
    seen: set[str] = set()
    for case in out:
        if case.name in seen:
            raise ValueError(f"duplicate case name {case.name}")
        seen.add(case.name)
    return out


def get_case(name: str) -> Case:
    """The case called ``name`` (``<module>/<function>/<variant>``)."""
    module = name.split("/")[0]
    for case in _load(module):
        if case.name == name:
            return case
    raise KeyError(f"no case named {name!r}")
