"""Every public forward/backward pair documents its arguments, its results and its derivation.

The convention (``docs/conventions.md``): ``out, cache = f_forward(...)`` and
``grads = f_backward(d_out..., cache)``. A reader of a backward must find, in its
docstring, each upstream gradient with its shape and whether ``None`` means zero, the
cache, the gradients it returns with their shapes (for a NamedTuple result: every
field), and a link to the section of ``docs/derivations/`` that derives it, written as

    Derivation: [docs/derivations/dnc.md, "5. Erase and write"](../derivations/dnc.md#5-erase-and-write-...)

(the link is relative to the API pages under ``docs/api/``, where mkdocstrings renders
it; the link text names the file as seen from the repository root). A forward gives
each argument, its results and the SPEC section it implements.

The functions are found, not listed: every name ending in ``_forward`` or ``_backward``
in the ``__all__`` of every module of every family package of the catalogue (and the
methods of the classes there), plus every catalogue case's forward.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
import textwrap
import typing
from pathlib import Path

import pytest

from refmem import catalogue
from test_links import anchors

ROOT = Path(__file__).resolve().parent.parent

SUFFIXES = ("_forward", "_backward")


def _family_modules() -> list[str]:
    names = []
    for family in catalogue.families():
        pkg = importlib.import_module(f"refmem.{family}")
        names.append(pkg.__name__)
        for info in pkgutil.walk_packages(pkg.__path__, prefix=f"{pkg.__name__}."):
            if ".cases" not in info.name and not info.name.endswith(".cases"):
                names.append(info.name)
    return names


def public_pairs() -> dict[str, object]:
    """Qualified name -> function, for every public ``*_forward`` / ``*_backward``."""
    found: dict[str, object] = {}

    def add(fn: object, where: str) -> None:
        target = inspect.unwrap(fn)
        key = f"{target.__module__}.{target.__qualname__}"
        found.setdefault(key, fn)

    for name in _family_modules():
        mod = importlib.import_module(name)
        for attr in getattr(mod, "__all__", ()):
            obj = getattr(mod, attr)
            if inspect.isclass(obj) and obj.__module__ == mod.__name__:
                for member, value in vars(obj).items():
                    if member.endswith(SUFFIXES) and not member.startswith("_") and callable(value):
                        add(value, name)
            elif callable(obj) and attr.endswith(SUFFIXES):
                add(obj, name)
    for case in catalogue.cases():
        module, _, attr = case.function.rpartition(".")
        add(getattr(importlib.import_module(module), attr), module)
    return dict(sorted(found.items()))


# ----------------------------------------------------------------------------- the docstring reader

_SECTION = re.compile(r"^(Args|Arguments|Parameters|Returns|Raises|Yields|Attributes|Examples?|Notes?):\s*$")
_ENTRY = re.compile(r"^([A-Za-z_]\w*)\s*(?:\([^)]*\))?:\s")
_DERIVATION = re.compile(
    r"\[(docs/derivations/[\w.-]+\.md)\b[^\]]*\]\(\.\./derivations/([\w.-]+\.md)(?:#([^)\s]+))?\)")


def sections(doc: str) -> dict[str, str]:
    """Google-style sections of a cleaned docstring: title -> its (dedented) body."""
    out: dict[str, list[str]] = {}
    current = None
    for line in doc.splitlines():
        m = _SECTION.match(line)
        if m:
            current = m.group(1)
            out[current] = []
            continue
        if current is not None:
            if line.strip() and not line.startswith(" "):
                current = None  # back to free text at the docstring's margin
                continue
            out[current].append(line)
    return {k: textwrap.dedent("\n".join(v)).strip("\n") for k, v in out.items()}


def arg_entries(body: str) -> dict[str, str]:
    """``name -> description`` of an ``Args:`` body (continuation lines joined)."""
    entries: dict[str, list[str]] = {}
    name = None
    for line in body.splitlines():
        m = _ENTRY.match(line)
        if m and not line.startswith(" "):
            name = m.group(1)
            entries[name] = [line[m.end():]]
        elif name is not None:
            entries[name].append(line.strip())
    return {k: " ".join(v) for k, v in entries.items()}


def _parameters(fn: object) -> list[str]:
    params = inspect.signature(fn).parameters
    return [p for p in params if p not in ("self", "cls")]


def _namedtuple_result(fn: object):
    hint = typing.get_type_hints(inspect.unwrap(fn)).get("return")
    if inspect.isclass(hint) and issubclass(hint, tuple) and hasattr(hint, "_fields"):
        return hint
    return None


def problems(fn: object, root: Path = ROOT) -> list[str]:
    """What the docstring of ``fn`` lacks (empty: nothing)."""
    name = getattr(fn, "__qualname__", repr(fn))
    doc = inspect.getdoc(fn) or ""
    found: list[str] = []
    parts = sections(doc)
    if "Args" not in parts and _parameters(fn):
        found.append(f"{name}: no Args: section")
    entries = arg_entries(parts.get("Args", ""))
    for p in _parameters(fn):
        if p not in entries:
            found.append(f"{name}: Args: has no entry for {p!r}")
        elif name.endswith("_backward") and p.startswith("d_") and "None" not in entries[p]:
            found.append(f"{name}: Args: {p!r} does not say what None means")
        elif p.startswith("d_") and "[" not in entries[p] and "class:" not in entries[p]:
            found.append(f"{name}: Args: {p!r} gives no shape")
    for line in parts.get("Args", "").splitlines():
        if line.strip() and not line.startswith(" ") and not _ENTRY.match(line):
            found.append(f"{name}: Args: {line!r} is neither an entry nor an indented continuation")
    returns = parts.get("Returns", "")
    if not returns:
        found.append(f"{name}: no Returns: section")
    items = [line for line in returns.splitlines() if line.strip() and not line.startswith(" ")]
    # mkdocstrings (griffe) reads each line at the section's margin as one returned item and
    # ``:class:`...``` at the start of an item as a name: indent continuations, name the items
    if len(items) > 1 and not all(_ENTRY.match(line) for line in items):
        found.append(f"{name}: Returns: several lines at the margin that are not all 'name: ...' items")
    for line in items:
        griffe_name = re.match(r"^(\w+)?\s*(?:\([^)]*\))?:", line)
        if griffe_name and not _ENTRY.match(line):
            found.append(f"{name}: Returns: {line!r} starts like 'name:' (griffe takes "
                         f"{griffe_name.group(0)!r} for a name)")
    try:
        result = _namedtuple_result(fn)
    except Exception as exc:  # noqa: BLE001 - reported: the API pages render the annotations
        found.append(f"{name}: its annotations do not resolve ({type(exc).__name__}: {exc})")
        result = None
    if result is not None and returns:
        missing = [f for f in result._fields if not re.search(rf"(?<![\w.]){f}\b", returns)]
        if missing:
            found.append(f"{name}: Returns: does not list the fields {missing} of {result.__name__}")
    if name.endswith("_forward") and not re.search(r"SPEC §\d", doc):
        found.append(f"{name}: names no SPEC section")
    for number in re.findall(r"SPEC §(\d+)", doc):
        spec = (root / "docs" / "spec.md").read_text(encoding="utf-8")
        if not re.search(rf"^## {number}\. ", spec, re.MULTILINE):
            found.append(f"{name}: SPEC §{number} is not a section of docs/spec.md")
    links = _DERIVATION.findall(doc)
    if name.endswith("_backward") and not re.search(r"^Derivation: \[", doc, re.MULTILINE):
        found.append(f"{name}: no 'Derivation: [docs/derivations/...](../derivations/...#...)' line")
    for text_path, target, fragment in links:
        path = root / "docs" / "derivations" / target
        if text_path != f"docs/derivations/{target}":
            found.append(f"{name}: the link text names {text_path} but the link goes to {target}")
        if not path.is_file():
            found.append(f"{name}: no such file docs/derivations/{target}")
        elif not fragment:
            found.append(f"{name}: the link to docs/derivations/{target} names no section (#heading)")
        elif fragment not in anchors(path.read_text(encoding="utf-8")):
            found.append(f"{name}: no heading #{fragment} in docs/derivations/{target}")
    if name.endswith("_backward") and not links:
        found.append(f"{name}: links no section of docs/derivations/")
    return found


# ----------------------------------------------------------------------------- the tests

PAIRS = public_pairs()


def test_the_pairs_are_found():
    names = set(PAIRS)
    assert len([n for n in names if n.endswith("_backward")]) >= 35, sorted(names)
    for expected in ("refmem.primitives.ops.exclusive_cumprod_backward",
                     "refmem.memory_lstm.model.step_backward",
                     "refmem.attention.luong.window_backward",
                     "refmem.dnc.core.unroll_backward",
                     "refmem.dnc.tasks.RepeatCopy.cost_backward"):
        assert expected in names


@pytest.mark.parametrize("name", list(PAIRS))
def test_the_docstring_documents_arguments_results_and_derivation(name):
    assert problems(PAIRS[name]) == []


def _planted_backward(d_out, cache):
    """Something that forgot its docstring sections."""


def _planted_with_bad_links(d_out, cache):
    """A backward whose sections are there but whose links are wrong.

    Args:
        d_out: ``[B, N]``, the upstream gradient (``None``: zero).
        cache: the forward's cache.

    Returns:
        dx: ``[B, N]``.

    Derivation: [docs/derivations/dnc.md, "Nowhere"](../derivations/dnc.md#no-such-heading),
    [docs/derivations/missing.md](../derivations/missing.md#x),
    [docs/derivations/dnc.md](../derivations/attention.md#1-the-bahdanau-decoder-spec-2-one-step)
    """


def _planted_good(d_out, cache):
    """A backward documented as the convention asks.

    Args:
        d_out: ``[B, N]``, the upstream gradient (``None``: zero).
        cache: the forward's cache.

    Returns:
        dx: ``[B, N]``.

    Derivation: [docs/derivations/primitives.md, "Softmax"](../derivations/primitives.md#3-softmax)
    """


class _Grads(typing.NamedTuple):
    memory: typing.Any
    keys: typing.Any


def _planted_namedtuple_backward(d_weights, cache) -> _Grads:
    """Lists one field of two.

    Args:
        d_weights: ``[B, H, N]`` (``None``: zero).
        cache: the cache.

    Returns:
        The gradients, a :class:`_Grads` with ``memory [B, N, W]``.

    Derivation: [docs/derivations/dnc.md, "1."](../derivations/dnc.md#1-content-weights-steps-2-and-8-content_weights_forward)
    """


def test_the_checker_finds_planted_gaps():
    _planted_backward.__qualname__ = "planted_backward"
    found = problems(_planted_backward)
    for needle in ("no Args:", "no Returns:", "no 'Derivation:", "links no section"):
        assert any(needle in p for p in found), (needle, found)

    _planted_with_bad_links.__qualname__ = "planted_with_bad_links_backward"
    found = problems(_planted_with_bad_links)
    assert len(found) == 3, found
    for needle in ("no heading #no-such-heading", "no such file docs/derivations/missing.md",
                   "names docs/derivations/dnc.md but the link goes to attention.md"):
        assert any(needle in p for p in found), (needle, found)

    _planted_good.__qualname__ = "planted_good_backward"
    assert problems(_planted_good) == []

    _planted_namedtuple_backward.__qualname__ = "planted_namedtuple_backward"
    found = problems(_planted_namedtuple_backward)
    assert found == ["planted_namedtuple_backward: Returns: does not list the fields ['keys'] of _Grads"]


def _planted_badly_laid_out(d_out, cache):
    """Sections that mkdocstrings would render wrong.

    Args:
        d_out: ``[B, N]``, the upstream gradient
        (``None``: zero), continued at the margin.
        cache: the cache.

    Returns:
        :class:`tuple` of ``dx [B, N]`` and
        ``dy [B, N]``, continued at the margin.

    Derivation: [docs/derivations/primitives.md, "Softmax"](../derivations/primitives.md#3-softmax)
    """


def test_the_checker_finds_sections_that_would_render_wrong():
    _planted_badly_laid_out.__qualname__ = "planted_badly_laid_out_backward"
    found = problems(_planted_badly_laid_out)
    assert len(found) == 3, found
    for needle in ("is neither an entry nor an indented continuation", "not all 'name: ...' items",
                   "starts like 'name:'"):
        assert any(needle in p for p in found), (needle, found)

    def planted_forward(x):
        """SPEC §1.

        Args:
            x: ``[B]``.

        Returns:
            A :class:`tuple` (griffe would render "A" as the name of the result).
        """

    found = problems(planted_forward)
    assert len(found) == 1 and "starts like 'name:' (griffe takes 'A :' for a name)" in found[0], found


def test_the_checker_reports_annotations_that_do_not_resolve():
    def planted_forward(x: "NoSuchType") -> "AlsoMissing":  # noqa: F821
        """SPEC §1.

        Args:
            x: ``[B]``.

        Returns:
            out: ``[B]``.
        """

    found = problems(planted_forward)
    assert len(found) == 1 and "annotations do not resolve (NameError" in found[0], found


def test_the_checker_wants_each_argument_and_a_spec_section_of_a_forward():
    def planted_forward(x, axis=-1):
        """Softmax.

        Args:
            x: ``[..., N]``.

        Returns:
            ``out [..., N]`` and a cache.
        """

    found = problems(planted_forward)
    assert any("no entry for 'axis'" in p for p in found), found
    assert any("names no SPEC section" in p for p in found), found
