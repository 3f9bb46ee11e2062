"""The case catalogue: every equation of the specification ([docs/spec.md](../spec.md)) as one checkable case.

A [`Case`][refmem.catalogue.Case] knows its forward and backward functions, how to draw valid
inputs from a seed (away from kinks), which checks apply, and its variant. Four
readers walk the catalogue: ``refmem check``, ``refmem golden``, the tests and
the benchmarks.

Families are found by discovery, as ONNX finds its node test cases: every
sub-package ``refmem.<family>`` that has a ``cases`` module (or a ``cases``
package, whose modules are read in name order) is a family, and each such
module contributes its module-level ``CASES`` list. A family sets its place in
the listing with a module-level ``ORDER`` integer in its ``cases`` (the lowest
first; families without one come last, by name). Adding an equation touches
only its family's ``cases``; adding a family is a new package with a ``cases``
module. Nothing else lists modules.

Array dictionaries use the role-prefixed names of [docs/golden-format.md](../golden-format.md): ``inputs/<name>``,
``params/<name>``, ``state/<name>`` for what a case takes; a forward returns its
outputs under bare names (``"y"``, ``"alpha"``); a backward returns gradients
under the role-prefixed name of the tensor they belong to.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

__all__ = ["Case", "Forward", "UnknownModuleError", "cases", "families", "get_case", "module_names"]


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
    ``trace``: ``None`` or a function of no argument returning the named quantities
    the forward computed on the way ([docs/golden-format.md](../golden-format.md), ``intermediates/``), under bare names,
    with the time axis right after the batch axis in unrolled cases. It is called
    only when [`intermediates`][refmem.catalogue.Forward.intermediates] is read (the golden export), so
    gradient checks, which call a forward many times, do not pay for it.
    """

    outputs: dict[str, Any]
    frozen: dict[str, Any] = field(default_factory=dict)
    trace: Callable[[], dict[str, Any]] | None = field(default=None, repr=False, compare=False)

    @property
    def intermediates(self) -> dict[str, Any]:
        """Bare name -> array of every intermediate the case defines (``{}`` for none)."""
        return {} if self.trace is None else dict(self.trace())


@dataclass(frozen=True)
class Case:
    """One checkable equation.

    Attributes:
        name: ``<module>/<function>/<variant>`` ([docs/golden-format.md](../golden-format.md)).
        spec: the SPEC reference, e.g. ``"SPEC §5 step 3"``.
        function: public Python path of the forward, e.g. ``"refmem.dnc.addressing.usage_forward"``.
        sample: ``sample(xp, seed, sizes) -> {role/name: array}``: valid float64 inputs
            (float32-representable), away from kinks.
        forward: ``forward(arrays, frozen=None) -> Forward``.
        backward: ``backward(arrays, cotangents) -> {role/name: grad}``; ``cotangents``
            maps each output name to its upstream gradient. A case with a stopped gradient
            also takes ``frozen=`` (the recorded values of [`Forward`][refmem.catalogue.Forward]), so that the
            stopped tensor is a constant when the backward itself is differentiated
            ([`refmem.forward_mode`][refmem.forward_mode]).
        sizes: default sizes in SPEC's letters, e.g. ``{"B": 2, "N": 6}``.
        min_sizes: smallest size each letter may take when drawn (default 1).
        max_sizes: largest size a letter may take when drawn, where the sampler cannot keep
            away from the kinks at larger sizes (default: no case-specific bound).
        config: options that define the variant (convention, output_state, ...), JSON-able.
        complex_step: whether the forward is analytic on the sampled path (no sort,
            clip or window edge), so the complex-step check applies.
        nondiff: role-prefixed names of inputs that are not differentiated (masks, indices).
        stopped: a sentence naming the stopped gradient, if any (checked with the
            recorded value frozen).
        kinks: how the sampler avoids non-differentiable points, for the docs.
        order: ``(role-prefixed name, SPEC reference)`` of every output and intermediate
            in the order the forward computes them ([docs/golden-format.md](../golden-format.md), ``order``; for unrolled
            cases the order within one step, with what comes before or after the loop
            first or last). Empty: the outputs in the forward's order, each at ``spec``.
        per_step: the names of ``order`` that carry a time axis right after the batch
            axis (``[B, T, ...]``) in an unrolled case; compared one step at a time.
    """

    name: str
    spec: str
    function: str
    sample: Callable[..., dict[str, Any]]
    forward: Callable[..., Forward]
    backward: Callable[[Mapping[str, Any], Mapping[str, Any]], dict[str, Any]]
    sizes: Mapping[str, int] = field(default_factory=dict)
    min_sizes: Mapping[str, int] = field(default_factory=dict)
    max_sizes: Mapping[str, int] = field(default_factory=dict)
    config: Mapping[str, Any] = field(default_factory=dict)
    complex_step: bool = True
    nondiff: frozenset[str] = frozenset()
    stopped: str = ""
    kinks: str = ""
    order: tuple[tuple[str, str], ...] = ()
    per_step: frozenset[str] = frozenset()

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


def _discover() -> dict[str, list[str]]:
    """Family name -> the Python modules holding its ``CASES``, in listing order."""
    import refmem

    found: list[tuple[int, str, list[str]]] = []
    for info in pkgutil.iter_modules(refmem.__path__):
        if not info.ispkg:
            continue
        family = info.name
        # looked up on disk: find_spec("refmem.<family>.cases") would import every package of refmem
        # (the differential and golden ones import Hypothesis: 0.2 s of every refmem check)
        where = os.path.join(getattr(info.module_finder, "path", ""), family)
        cases = next((m for m in pkgutil.iter_modules([where]) if m.name == "cases"), None)
        if cases is None:
            continue
        if cases.ispkg:  # a cases package: its modules in name order
            mods = [f"refmem.{family}.cases.{m.name}"
                    for m in sorted(pkgutil.iter_modules([os.path.join(where, "cases")]), key=lambda m: m.name)]
        else:
            mods = [f"refmem.{family}.cases"]
        order = getattr(importlib.import_module(f"refmem.{family}.cases"), "ORDER", 1 << 30)
        found.append((order, family, mods))
    return {family: mods for _, family, mods in sorted(found)}


_FAMILIES: dict[str, list[str]] | None = None


def families() -> dict[str, list[str]]:
    """Family name -> the modules that hold its ``CASES`` (discovered once, then cached)."""
    global _FAMILIES
    if _FAMILIES is None:
        _FAMILIES = _discover()
    return _FAMILIES


def module_names() -> list[str]:
    """Every family (module) name of the catalogue, in listing order."""
    return list(families())


def _load(module: str, required: bool = True) -> list[Case]:
    fams = families()
    if module not in fams:
        raise UnknownModuleError(f"unknown module {module!r}; expected one of {', '.join(fams)}")
    found: list[Case] = []
    for path in fams[module]:
        mod = importlib.import_module(path)
        found.extend(getattr(mod, "CASES", ()))
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
