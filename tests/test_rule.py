"""The backward rule (docs/conventions.md), enforced on every public pair of every family.

```python
outputs, cache = f_forward(a, b, ..., *, options)   # -> tuple[FOutputs, FCache]
grads = f_backward(d_out, cache)                    # (d_out: FOutputs, cache: FCache) -> FGrads
```

The pairs are found, not listed: every `*_forward` / `*_backward` in the `__all__` of every
module of every family package the catalogue discovers (and the public methods of the classes
there). For each, [`rule_problems`][] lists what breaks the rule; the planted pairs at the end
show that each kind of break is caught.

The families whose conversion is still under way are in `NOT_YET_CONVERTED`, their test marked
`xfail(strict=True)`: when a family follows the rule, its test passes, the strict xfail fails,
and the helper who converted it deletes its entry.
"""

import importlib
import inspect
import pkgutil
import re
import types
import typing
from typing import Any, Literal, NamedTuple

import pytest

from refmem import catalogue
from refmem.validation import Array, Index, Mask, Unit, checked, is_checked

#: Families not yet converted to the rule; each is deleted by the helper that converts it.
NOT_YET_CONVERTED: dict[str, str] = {}

SUFFIXES = ("_forward", "_backward")


# ----------------------------------------------------------------------------- finding the pairs


def family_modules(family: str) -> list[types.ModuleType]:
    """The modules of a family package, its catalogue cases left out."""
    pkg = importlib.import_module(f"refmem.{family}")
    mods = [pkg]
    for info in pkgutil.walk_packages(pkg.__path__, prefix=f"{pkg.__name__}."):
        if not (info.name.endswith(".cases") or ".cases." in info.name):
            mods.append(importlib.import_module(info.name))
    return mods


def public_functions(family: str) -> dict[str, tuple[Any, Any]]:
    """`module.name -> (function, owner)` for every public `*_forward` / `*_backward` of a family;
    `owner` is the module or the class whose namespace holds its partner."""
    found: dict[str, tuple[Any, Any]] = {}
    for mod in family_modules(family):
        for attr in getattr(mod, "__all__", ()):
            obj = getattr(mod, attr)
            if inspect.isclass(obj) and obj.__module__ == mod.__name__:
                for member, value in vars(obj).items():
                    if member.endswith(SUFFIXES) and not member.startswith("_") and callable(value):
                        found.setdefault(f"{obj.__module__}.{obj.__qualname__}.{member}", (value, obj))
            elif callable(obj) and attr.endswith(SUFFIXES):
                target = inspect.unwrap(obj)
                home = importlib.import_module(target.__module__)
                found.setdefault(f"{target.__module__}.{target.__name__}", (obj, home))
    return dict(sorted(found.items()))


def pairs(functions: dict[str, tuple[Any, Any]]) -> tuple[list[tuple[str, Any, Any]], list[str]]:
    """`(stem, forward, backward)` of each pair, and the problems of the functions without a partner."""
    out, problems = [], []
    for name, (fn, owner) in functions.items():
        base = name.rsplit(".", 1)[1]
        if base.endswith("_backward"):
            stem = base[: -len("_backward")]
            forward = getattr(owner, stem + "_forward", None)
            if forward is None:
                problems.append(f"{name}: no {stem}_forward beside it")
            else:
                out.append((name[: -len("_backward")], forward, fn))
        else:
            stem = base[: -len("_forward")]
            if getattr(owner, stem + "_backward", None) is None:
                problems.append(f"{name}: no {stem}_backward beside it")
    return out, problems


# ----------------------------------------------------------------------------- the rule


def _plain(ann: Any) -> tuple[bool, Any]:
    """`(optional, X)` of `X | None`."""
    origin = typing.get_origin(ann)
    if origin is typing.Union or origin is types.UnionType:
        args = [a for a in typing.get_args(ann) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(ann)) == 2:
            return True, args[0]
    return False, ann


def _is_namedtuple(ann: Any) -> bool:
    return isinstance(ann, type) and issubclass(ann, tuple) and hasattr(ann, "_fields")


def _is_differentiable(ann: Any) -> bool:
    """An array (not a mask, not indices), a NamedTuple structure, or a tuple of structures (`| None` allowed)."""
    _, ann = _plain(ann)
    if ann is Array or ann is Unit:
        return True
    if isinstance(ann, type) and issubclass(ann, Array):
        return not issubclass(ann, (Mask, Index))
    if _is_namedtuple(ann):
        return True
    if typing.get_origin(ann) is tuple:
        args = typing.get_args(ann)
        return len(args) == 2 and args[1] is Ellipsis and _is_namedtuple(args[0])
    return False


def _same_kind(a: Any, b: Any) -> bool:
    """A gradient's annotation mirrors its argument's: the same axes, or the same structure type."""
    _, a = _plain(a)
    _, b = _plain(b)
    if isinstance(a, type) and issubclass(a, Array) and isinstance(b, type) and issubclass(b, Array):
        return (a.axes, a.lead) == (b.axes, b.lead)
    return a == b


def _camel(stem: str) -> str:
    return stem.replace("_", "").lower()


def _annotations(fn: Any) -> dict[str, Any]:
    return dict(getattr(inspect.unwrap(fn), "__annotations__", {}))


def rule_problems(stem: str, forward: Any, backward: Any) -> list[str]:
    """Everything about one pair that breaks the rule (empty: nothing)."""
    found: list[str] = []
    fname, bname = f"{stem}_forward", f"{stem}_backward"
    short = stem.rsplit(".", 1)[-1]
    for name, fn in ((fname, forward), (bname, backward)):
        if not is_checked(fn):
            found.append(f"{name}: not a @checked entry point")
    f_params = [p for p in inspect.signature(forward).parameters.values() if p.name != "self"]
    b_params = [p for p in inspect.signature(backward).parameters.values() if p.name != "self"]
    f_ann, b_ann = _annotations(forward), _annotations(backward)
    if any(isinstance(a, str) for a in (*f_ann.values(), *b_ann.values())):
        return found + [f"{stem}: annotations are strings (the module uses 'from __future__ import annotations')"]

    # the forward: -> tuple[FOutputs, FCache], every argument annotated, options keyword-only
    ret = f_ann.get("return")
    outputs = cache = None
    if typing.get_origin(ret) is tuple and len(typing.get_args(ret)) == 2:
        outputs, cache = typing.get_args(ret)
    else:
        found.append(f"{fname}: the return annotation is {ret!r}, not tuple[FOutputs, FCache]")
    for role, cls, suffix in (("outputs", outputs, "Outputs"), ("cache", cache, "Cache")):
        if cls is None:
            continue
        if not _is_namedtuple(cls):
            found.append(f"{fname}: the {role} type {cls!r} is not a NamedTuple")
        elif cls.__name__.lower() != _camel(short) + suffix.lower():
            found.append(f"{fname}: the {role} type is named {cls.__name__}, not <{short}>{suffix}")
    if _is_namedtuple(outputs):
        hints = outputs.__annotations__
        for field in outputs._fields:
            if not _is_differentiable(hints.get(field)) and not _is_mask(hints.get(field)):
                found.append(f"{fname}: the output {outputs.__name__}.{field} is annotated "
                             f"{hints.get(field)!r}, not an array or a structure")
    positional = []
    for p in f_params:
        ann = p.annotation
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            found.append(f"{fname}: *{p.name} (every argument is named)")
        elif ann is inspect.Parameter.empty:
            found.append(f"{fname}: the argument {p.name} has no annotation")
        elif p.kind is p.KEYWORD_ONLY:
            continue  # an option or a stopped-gradient frozen value: no gradient
        elif not _is_differentiable(ann):
            found.append(f"{fname}: the positional argument {p.name}: {_show(ann)} is not differentiable "
                         f"(options, masks and configs are keyword-only)")
        else:
            positional.append(p)

    # the backward: exactly (d_out: FOutputs, cache: FCache) -> FGrads
    names = [p.name for p in b_params]
    if names != ["d_out", "cache"] or any(p.kind not in (p.POSITIONAL_OR_KEYWORD, p.POSITIONAL_ONLY)
                                          for p in b_params):
        found.append(f"{bname}: the parameters are {names}, not exactly (d_out, cache)")
    for p in b_params:
        if p.annotation is inspect.Parameter.empty:
            found.append(f"{bname}: the argument {p.name} has no annotation")
        elif not _is_namedtuple(p.annotation):
            found.append(f"{bname}: {p.name} is annotated {_show(p.annotation)}, not a NamedTuple")
    if outputs is not None and b_ann.get("d_out") is not outputs:
        found.append(f"{bname}: d_out is annotated {_show(b_ann.get('d_out'))}, not the forward's "
                     f"{getattr(outputs, '__name__', outputs)}")
    if cache is not None and b_ann.get("cache") is not cache:
        found.append(f"{bname}: cache is annotated {_show(b_ann.get('cache'))}, not the forward's "
                     f"{getattr(cache, '__name__', cache)}")
    grads = b_ann.get("return")
    if not _is_namedtuple(grads):
        found.append(f"{bname}: the return annotation is {_show(grads)}, not one FGrads NamedTuple")
        return found
    if grads.__name__.lower() != _camel(short) + "grads":
        found.append(f"{bname}: the gradients type is named {grads.__name__}, not <{short}>Grads")
    want = [p.name for p in positional]
    if list(grads._fields) != want:
        found.append(f"{bname}: {grads.__name__} has the fields {list(grads._fields)}, the forward's "
                     f"differentiable arguments are {want}")
    hints = grads.__annotations__
    for p in positional:
        if p.name in hints and not _same_kind(hints[p.name], p.annotation):
            found.append(f"{bname}: {grads.__name__}.{p.name} is annotated {_show(hints[p.name])}, the argument "
                         f"{_show(p.annotation)}")
    return found


def _is_mask(ann: Any) -> bool:
    _, ann = _plain(ann)
    return isinstance(ann, type) and issubclass(ann, Mask)


def _show(ann: Any) -> str:
    return getattr(ann, "__qualname__", None) or repr(ann)


def shared_grads(all_pairs: list[tuple[str, Any, Any]]) -> list[str]:
    """A gradients type returned by more than one backward (one Grads type per function)."""
    users: dict[Any, list[str]] = {}
    for stem, _, backward in all_pairs:
        grads = _annotations(backward).get("return")
        if _is_namedtuple(grads):
            users.setdefault(grads, []).append(f"{stem}_backward")
    return [f"{cls.__name__} is returned by {', '.join(names)} (one Grads type per function)"
            for cls, names in users.items() if len(names) > 1]


def family_problems(family: str) -> list[str]:
    found_pairs, problems = pairs(public_functions(family))
    for stem, forward, backward in found_pairs:
        problems += rule_problems(stem, forward, backward)
    return problems + shared_grads(found_pairs)


# ----------------------------------------------------------------------------- the tests

FAMILIES = list(catalogue.families())


def test_the_families_are_found_and_have_pairs():
    assert {"primitives", "memory_lstm", "attention", "dnc"} <= set(FAMILIES)
    for family in FAMILIES:
        assert pairs(public_functions(family))[0], family
    assert set(NOT_YET_CONVERTED) <= set(FAMILIES)  # no stale entry


@pytest.mark.parametrize("family", [
    pytest.param(f, marks=pytest.mark.xfail(strict=True, reason=NOT_YET_CONVERTED[f])) if f in NOT_YET_CONVERTED else f
    for f in FAMILIES])
def test_every_pair_of_the_family_follows_the_rule(family):
    problems = family_problems(family)
    assert problems == [], "\n".join(problems)


# ----------------------------------------------------------------------------- planted breaks


class GoodOutputs(NamedTuple):
    y: Array["B N"]


class GoodCache(NamedTuple):
    x: Array["B N"]


class GoodGrads(NamedTuple):
    x: Array["B N"]
    W: Array["N N"]


@checked
def good_forward(x: Array["B N"], W: Array["N N"], *, mode: Literal["a", "b"] = "a",
                 mask: Mask["B N"] | None = None) -> tuple[GoodOutputs, GoodCache]:
    pass


@checked
def good_backward(d_out: GoodOutputs, cache: GoodCache) -> GoodGrads:
    pass


def test_the_checker_passes_a_pair_that_follows_the_rule():
    assert rule_problems("good", good_forward, good_backward) == []


class OldOutputs(NamedTuple):
    y: Array["B N"]


class OldCache(NamedTuple):
    x: Array["B N"]


class OldGrads(NamedTuple):
    W: Array["N N"]
    x: Array["B N"]


@checked
def old_forward(x: Array["B N"], W: Array["N N"], mode: Literal["a", "b"] = "a") -> tuple[OldOutputs, OldCache]:
    pass


@checked
def old_backward(d_y: Array["B N"], cache: OldCache, d_extra: Array["B N"] | None = None) -> OldGrads:
    pass


def test_the_checker_catches_the_0_1_shapes_of_a_pair():
    found = rule_problems("old", old_forward, old_backward)
    for needle in ("the positional argument mode", "not exactly (d_out, cache)",
                   "d_out is annotated None, not the forward's OldOutputs", "d_y is annotated Array",
                   "OldGrads has the fields ['W', 'x'], the forward's differentiable arguments are ['x', 'W']"):
        assert any(needle in p for p in found), (needle, found)
    assert len(found) == 6, found  # and d_extra: annotated an array, not a NamedTuple


class Loose(NamedTuple):
    y: Any


def loose_forward(x, W: Any):
    pass


def loose_backward(d_out: Loose, cache) -> tuple:
    pass


def test_the_checker_catches_unchecked_unannotated_and_untyped_pairs():
    found = rule_problems("loose", loose_forward, loose_backward)
    for needle in ("loose_forward: not a @checked entry point", "loose_backward: not a @checked entry point",
                   "the return annotation is None, not tuple[FOutputs, FCache]", "the argument x has no annotation",
                   "the positional argument W: Any is not differentiable",
                   "loose_backward: the argument cache has no annotation",
                   "the return annotation is tuple, not one FGrads NamedTuple"):
        assert any(needle in p for p in found), (needle, found)


class MisnamedOutputs(NamedTuple):
    y: Array["B N"]


class OtherCache(NamedTuple):
    x: Array["B N"]


class OtherGrads(NamedTuple):
    x: Array["B M"]


@checked
def misnamed_forward(x: Array["B N"]) -> tuple[MisnamedOutputs, OtherCache]:
    pass


@checked
def misnamed_backward(d_out: MisnamedOutputs, cache: GoodCache) -> OtherGrads:
    pass


def test_the_checker_catches_names_and_mismatched_types():
    found = rule_problems("misnamed", misnamed_forward, misnamed_backward)
    for needle in ("the cache type is named OtherCache, not <misnamed>Cache",
                   "cache is annotated GoodCache, not the forward's OtherCache",
                   "the gradients type is named OtherGrads, not <misnamed>Grads",
                   "OtherGrads.x is annotated"):
        assert any(needle in p for p in found), (needle, found)
    assert len(found) == 4, found


def test_the_checker_catches_a_shared_grads_type_and_a_missing_partner():
    @checked
    def twin_backward(d_out: GoodOutputs, cache: GoodCache) -> GoodGrads:
        pass

    found = shared_grads([("m.good", good_forward, good_backward), ("m.twin", good_forward, twin_backward)])
    assert found == ["GoodGrads is returned by m.good_backward, m.twin_backward (one Grads type per function)"]

    class Holder:
        lonely_backward = staticmethod(good_backward)

    _, problems = pairs({"m.Holder.lonely_backward": (good_backward, Holder)})
    assert problems == ["m.Holder.lonely_backward: no lonely_forward beside it"]


def test_the_checker_catches_a_grads_union_of_options():
    class OptionGrads(NamedTuple):
        x: Array["B N"]

    @checked
    def opt_backward(d_out: GoodOutputs, cache: GoodCache) -> GoodGrads | OptionGrads:
        pass

    found = rule_problems("good", good_forward, opt_backward)
    assert any("not one FGrads NamedTuple" in p for p in found), found


class EmbedOutputs(NamedTuple):
    emb: Array["B T m"]


class EmbedCache(NamedTuple):
    E: Array["K m"]


class EmbedGrads(NamedTuple):
    E: Array["K m"]


def test_the_checker_catches_positional_tokens():
    """Indices (tokens) have no gradient: a positional `Index` argument breaks the rule, a keyword-only one does not."""
    @checked
    def embed_backward(d_out: EmbedOutputs, cache: EmbedCache) -> EmbedGrads:
        pass

    @checked
    def positional_forward(tokens: Index["B T", "K"], E: Array["K m"]) -> tuple[EmbedOutputs, EmbedCache]:
        pass

    @checked
    def keyword_forward(E: Array["K m"], *, tokens: Index["B T", "K"]) -> tuple[EmbedOutputs, EmbedCache]:
        pass

    found = rule_problems("embed", positional_forward, embed_backward)
    assert any("the positional argument tokens" in p and "not differentiable" in p for p in found), found
    assert rule_problems("embed", keyword_forward, embed_backward) == []
