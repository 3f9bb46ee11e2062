"""Checks at the edge: the validation a public entry point runs once on a user's arrays.

ARCHITECTURE.md: "check at the edge, compute inside". A public function is written as
maths only and declares what its array arguments must be with :func:`edge`::

    @edge(memory="B N W", keys="B H W", strengths="B H")
    def content_weights_forward(memory, keys, strengths, convention="deepmind"):
        ...                                          # trusts its inputs

A call from a user runs the checks once; refmem's own code calls the unchecked body,
``content_weights_forward.unchecked(...)``, so nothing is validated twice and nothing
per time step. The policy, the same for every entry point:

* **arrays only**: a Python list or scalar where an array is expected is refused
  (``DTypeError``); create arrays with ``xp.asarray`` in the namespace you want.
* **one namespace**: every array of a call comes from one array library
  (``NamespaceError`` names two arguments that differ).
* **one precision**: every floating array of a call has one precision; real and complex
  of that precision mix (the complex-step check of SPEC §6 perturbs one input into
  complex128 while the others stay float64), float32 with float64 does not
  (``DTypeError`` names both). float32 inputs compute in float32 and give float32 results.
* **shapes**: each spec names the axes in SPEC's letters; a letter takes one value
  across all arguments of the call, and every size is at least 1 (``ShapeError``:
  ``keys: expected shape (B, H, W) = (2, ?, 3), got (2, 4, 5)``).
* **domains**: every floating value is finite; ``| unit`` values (probabilities, gates,
  weights, usages, erase vectors, links) lie in [0, 1] (up to :data:`UNIT_SLACK`, so that
  rounding and the finite-difference probes of SPEC §6 are not refused); ``| mask`` arrays are boolean or
  exactly 0/1 (``DomainError`` names the argument, the first offending index and value).

Spec strings: space-separated axes, each a letter (``B``), an integer, a parenthesised
expression over letters (``(1+2*nw)``) or ``*`` (any size); an optional ``| unit`` or
``| mask`` domain; a leading ``?`` allows ``None``. A backward binds the letters from its
forward's cache through :func:`edge`'s ``paths`` (``{"cache.weights": "B H N"}``), so a
cotangent without its batch axis is refused instead of broadcast.
"""

from __future__ import annotations

import contextlib
import re
import contextvars
import functools
import inspect
from typing import Any, Callable, Mapping

import array_api_compat
import numpy as np

from .errors import DomainError, DTypeError, NamespaceError, ShapeError
from .xp import namespace

__all__ = ["edge", "checked_by", "fields", "probing", "spec_from_symbols", "check_array", "check_arrays", "check_size", "ShapeError", "DTypeError", "DomainError",
           "NamespaceError"]


# ----------------------------------------------------------------------------- spec parsing


class _Spec:
    __slots__ = ("axes", "domain", "optional", "text")

    def __init__(self, text: str):
        self.text = text
        t = text.strip()
        self.optional = t.startswith("?")
        if self.optional:
            t = t[1:].strip()
        self.domain = None
        if "|" in t:
            t, dom = t.split("|", 1)
            self.domain = dom.strip()
            if self.domain not in ("unit", "mask", "real"):
                raise ValueError(f"unknown domain {self.domain!r} in spec {text!r}")
        self.axes = tuple(_tokens(t.strip()))

    def symbols(self) -> str:
        shown = [re.sub(r"(\d)\*([A-Za-z])", r"\1\2", a[1:-1].replace("+", " + ").replace("-", " - "))
                 if a.startswith("(") else a for a in self.axes]
        return "(" + ", ".join(shown) + ("," if len(shown) == 1 else "") + ")"


def _tokens(text: str) -> list[str]:
    out, depth, cur = [], 0, ""
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == " " and depth == 0:
            if cur:
                out.append(cur)
            cur = ""
        else:
            cur += ch
    if cur:
        out.append(cur)
    return out


def _is_name(token: str) -> bool:
    return token.isidentifier()


# ----------------------------------------------------------------------------- single checks


def _kind(x: Any) -> str:
    """'f' real floating, 'c' complex floating, 'b' bool, 'i' integer, '' other."""
    if type(x) is np.ndarray:
        k = x.dtype.kind
        return {"f": "f", "c": "c", "b": "b", "i": "i", "u": "i"}.get(k, "")
    xp = namespace(x)
    if xp.isdtype(x.dtype, "real floating"):
        return "f"
    if xp.isdtype(x.dtype, "complex floating"):
        return "c"
    if xp.isdtype(x.dtype, "bool"):
        return "b"
    if xp.isdtype(x.dtype, "integral"):
        return "i"
    return ""


def _precision(x: Any) -> int:
    """Bits per real component of a floating array (float64 and complex128 both give 64)."""
    if type(x) is np.ndarray:
        return np.finfo(x.dtype).bits
    return int(namespace(x).finfo(x.dtype).bits)


def _host(x: Any) -> np.ndarray:
    from .xp import to_numpy

    return to_numpy(x)


def _first_bad(bad: np.ndarray) -> tuple[int, ...]:
    return tuple(int(i) for i in np.argwhere(bad)[0])


def _check_domain(name: str, x: Any, domain: str | None) -> None:
    kind = _kind(x)
    if domain == "mask":
        if kind == "b":
            return
        if kind not in ("f", "i"):
            raise DTypeError(f"{name}: expected a boolean mask or one of 0/1, got dtype {x.dtype}")
        h = _host(x)
        bad = ~((h == 0) | (h == 1))
        if bad.any():
            at = _first_bad(bad)
            raise DomainError(f"{name}: expected a mask of exactly 0 or 1 (or booleans), got {h[at].item()!r} at "
                              f"{list(at)}")
        return
    xp = namespace(x)
    re = xp.real(x) if kind == "c" else x
    if not bool(xp.all(xp.isfinite(x))):
        h = _host(x)
        at = _first_bad(~np.isfinite(h))
        raise DomainError(f"{name}: expected finite values, got {h[at].item()!r} at {list(at)}")
    if domain == "unit" and not _PROBING.get():
        if not bool(xp.all((re >= -UNIT_SLACK) & (re <= 1 + UNIT_SLACK))):
            h = np.real(_host(x))
            at = _first_bad((h < -UNIT_SLACK) | (h > 1 + UNIT_SLACK))
            raise DomainError(f"{name}: expected values in [0, 1], got {h[at].item()!r} at {list(at)}")


def check_size(name: str, value: Any, minimum: int = 1) -> int:
    """Refuse a size that is not an integer ``>= minimum``; return it as an ``int``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise DTypeError(f"{name}: expected an integer >= {minimum}, got {value!r}")
    if value < minimum:
        raise DomainError(f"{name}: expected an integer >= {minimum}, got {value}")
    return int(value)


def check_arrays(arrays: Mapping[str, Any], specs: Mapping[str, str], sizes: dict[str, int] | None = None,
                 where: str = "", precision_of: Mapping[str, Any] | None = None) -> dict[str, int]:
    """Validate ``arrays`` (argument name -> array or ``None``) against spec strings.

    Returns the sizes bound to each letter. ``sizes`` pre-binds letters (e.g. from a
    config). ``where`` prefixes the argument names in messages (``"params."``).
    """
    bound: dict[str, int] = dict(sizes or {})
    present: list[tuple[str, Any, _Spec]] = []
    for arg, text in specs.items():
        spec = _SPEC_CACHE.get(text) or _SPEC_CACHE.setdefault(text, _Spec(text))
        x = arrays.get(arg)
        label = where + arg
        if x is None:
            if spec.optional:
                continue
            raise DTypeError(f"{label}: expected an array, got None")
        if not (hasattr(x, "shape") and hasattr(x, "dtype")) or isinstance(x, (np.generic,)):
            raise DTypeError(f"{label}: expected an array, got {type(x).__name__} "
                             f"(create arrays with xp.asarray in the namespace you compute in)")
        present.append((label, x, spec))
    if precision_of:  # arrays the call's arrays must agree with (a backward's cache)
        ref = [(k, v, _ANY) for k, v in precision_of.items() if v is not None][:1]
        _same_namespace(ref + present)
        _same_precision(ref + present)
    else:
        _same_namespace(present)
        _same_precision(present)
    pending = []
    for label, x, spec in present:
        given = tuple(int(s) for s in x.shape)
        kind = _kind(x)
        before = dict(bound)
        if spec.domain != "mask" and kind not in ("f", "c"):
            raise DTypeError(f"{label}: expected a floating dtype, got {x.dtype}")
        axes = spec.axes
        if axes and axes[0] == "...":  # any leading axes, the same in every argument of the call
            axes = axes[1:]
            if len(given) < len(axes):
                raise ShapeError(f"{label}: expected shape {spec.symbols()} (at least {len(axes)} axes), got {given}")
            lead, given_tail = given[:len(given) - len(axes)], given[len(given) - len(axes):]
            if any(s < 1 for s in lead):
                raise ShapeError(f"{label}: expected every axis of size at least 1 (empty arrays are refused), "
                                 f"got shape {given}")
            if "..." in bound and bound["..."] != lead:
                raise ShapeError(f"{label}: expected leading axes {bound['...']} (those of the other arguments), "
                                 f"got shape {given}")
            bound.setdefault("...", lead)
        else:
            given_tail = given
        if len(given_tail) != len(axes):
            raise ShapeError(f"{label}: expected shape {spec.symbols()} = {_shown(axes, before)}, got {given}")
        for ax, g in zip(axes, given_tail):
            if ax == "*" or ax == "...":
                continue
            if _is_name(ax):
                if ax in bound and bound[ax] != g:
                    raise ShapeError(f"{label}: expected shape {spec.symbols()} = {_shown(axes, before)}, got {given} "
                                     f"({ax} = {bound[ax]} from the other arguments)")
                bound.setdefault(ax, g)
                if g < 1:
                    raise ShapeError(f"{label}: size {ax} = {g}, expected at least 1 "
                                     f"(empty {'batches' if ax == 'B' else 'axes'} are refused)")
            elif ax.isdigit():
                if int(ax) != g:
                    raise ShapeError(f"{label}: expected shape {spec.symbols()} = {_shown(axes, before)}, got {given}")
            else:
                pending.append((label, spec, given))
    for label, spec, given in pending:
        axes = tuple(a for a in spec.axes if a != "...")
        want = tuple(_value(ax, bound) for ax in axes)
        if any(w is not None and w != g for w, g in zip(want, given[len(given) - len(axes):])):
            raise ShapeError(f"{label}: expected shape {spec.symbols()} = {_shown(spec.axes, bound)}, got {given}")
    for letter, value in bound.items():
        if letter != "..." and value < 1:
            who = next(label for label, x, spec in present if spec.axes and letter in spec.axes)
            raise ShapeError(f"{who}: size {letter} = {value}, expected at least 1 "
                             f"(empty {'batches' if letter == 'B' else 'axes'} are refused)")
    for label, x, spec in present:
        _check_domain(label, x, spec.domain)
    return bound


def _value(ax: str, bound: Mapping[str, int]) -> int | None:
    if ax in ("*", "..."):
        return None
    if ax.isdigit():
        return int(ax)
    if _is_name(ax):
        return bound.get(ax)
    try:
        return int(eval(ax, {"__builtins__": {}}, dict(bound)))  # noqa: S307 (spec strings are refmem's own)
    except NameError:
        return None


def _shown(axes: tuple[str, ...], bound: Mapping[str, int]) -> str:
    vals = [_value(a, bound) for a in axes]
    return "(" + ", ".join("?" if v is None else str(v) for v in vals) + ("," if len(vals) == 1 else "") + ")"


def _same_namespace(present: list[tuple[str, Any, _Spec]]) -> None:
    if len(present) < 2:
        return
    if all(type(x) is np.ndarray for _, x, _ in present):
        return
    try:
        array_api_compat.array_namespace(*(x for _, x, _ in present))
    except TypeError:
        first = present[0]
        for label, x, _ in present[1:]:
            try:
                array_api_compat.array_namespace(first[1], x)
            except TypeError:
                raise NamespaceError(
                    f"{label}: expected an array of the same library as {first[0]} "
                    f"({type(first[1]).__module__}.{type(first[1]).__name__}), got "
                    f"{type(x).__module__}.{type(x).__name__}") from None
        raise NamespaceError("arrays of different libraries in one call: "
                             + ", ".join(f"{l} {type(x).__module__}" for l, x, _ in present)) from None
    devices = {str(array_api_compat.device(x)) for _, x, _ in present}
    if len(devices) > 1:
        raise NamespaceError("arrays on different devices in one call: "
                             + ", ".join(f"{l} on {array_api_compat.device(x)}" for l, x, _ in present))


def _same_precision(present: list[tuple[str, Any, _Spec]]) -> None:
    ref = None
    for label, x, spec in present:
        if spec.domain == "mask" or _kind(x) not in ("f", "c"):
            continue
        p = _precision(x)
        if ref is None:
            ref = (label, x, p)
        elif p != ref[2]:
            raise DTypeError(f"{label}: expected the precision of {ref[0]} ({ref[1].dtype}), got {x.dtype}; "
                             f"one float dtype per call (cast with xp.astype)")


#: How far outside [0, 1] a ``| unit`` value may lie: rounding of a softmax or a product, and the
#: ``2**-20`` probes of the central differences of SPEC §6, stay inside; a misuse (2.0, -0.9) does not.
UNIT_SLACK = 1e-6

_PROBING: contextvars.ContextVar[bool] = contextvars.ContextVar("refmem_probing", default=False)


@contextlib.contextmanager
def probing() -> Any:
    """Inside this context the ``| unit`` range checks are off (shapes, dtypes, namespaces and
    finiteness are still checked). The gradient checks of SPEC §6 evaluate the equations at
    inputs moved off the sample by finite-difference and directional probes; a value sampled
    on the edge of [0, 1] (a zero link diagonal, a zero usage) then steps outside it, where the
    equations are still defined and are exactly what the difference quotient needs."""
    token = _PROBING.set(True)
    try:
        yield
    finally:
        _PROBING.reset(token)


_SPEC_CACHE: dict[str, _Spec] = {}
_ANY = _Spec("")


# ----------------------------------------------------------------------------- the decorator


def edge(paths: Mapping[str, str] | None = None, **specs: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Validate the named array arguments of a public function once, at the edge.

    ``specs`` maps argument names to spec strings. ``paths`` maps dotted attribute
    paths of arguments (``"cache.weights"``) to spec strings: a backward binds the
    letters from its cache this way and checks its upstream gradients against them.
    The wrapped function keeps its signature and docstring; its unchecked body stays
    reachable as ``fn.unchecked`` for refmem's internal callers. See the module
    docstring for the spec strings and the policy.
    """
    paths = dict(paths or {})

    def wrap(fn: Callable[..., Any]) -> Callable[..., Any]:
        sig = inspect.signature(fn)
        names = list(sig.parameters)
        for arg in list(specs) + [p.split(".")[0] for p in paths]:
            if arg not in names:
                raise TypeError(f"edge: {fn.__qualname__} has no argument {arg!r}")
        owners = sorted({p.split(".")[0] for p in paths} - set(specs))
        positions = {arg: names.index(arg) for arg in list(specs) + owners}
        defaults = {k: p.default for k, p in sig.parameters.items() if p.default is not inspect.Parameter.empty}
        scalars = {a: s for a, s in specs.items() if s.split()[0].lstrip("?") in _SCALAR_KINDS}
        plain = {a: s for a, s in specs.items() if a not in scalars}

        @functools.wraps(fn)
        def checked(*args: Any, **kwargs: Any) -> Any:
            values = {}
            for arg, pos in positions.items():
                if pos < len(args):
                    values[arg] = args[pos]
                elif arg in kwargs:
                    values[arg] = kwargs[arg]
                else:
                    values[arg] = defaults.get(arg)
            if paths:
                found = {}
                for path in paths:
                    owner, *attrs = path.split(".")
                    obj = values[owner]
                    for a in attrs:
                        obj = getattr(obj, a, None)
                    found[f"the forward's {attrs[-1] if attrs else owner}"] = obj
                spec_of = {f"the forward's {p.split('.')[-1] if '.' in p else p}": t for p, t in paths.items()}
                bound = check_arrays(found, spec_of)
                # the cotangents second, so that a mismatch is reported on them
                check_arrays({a: values[a] for a in plain}, plain, sizes=bound, precision_of=found)
            else:
                check_arrays({a: values[a] for a in plain}, plain)
            for arg, spec in scalars.items():
                _check_scalar(arg, values[arg], spec, values)
            return fn(*args, **kwargs)

        checked.unchecked = fn  # type: ignore[attr-defined]
        return checked

    return wrap


#: Specs of non-array arguments: ``"float > 0"``, ``"float >= 0"`` (a finite real number), ``"axis of x"``
#: (an integer axis of the array argument ``x``); a leading ``?`` allows ``None``.
_SCALAR_KINDS = ("float", "axis")


def _check_scalar(arg: str, value: Any, spec: str, values: Mapping[str, Any]) -> None:
    kind, *rest = spec.split()
    if kind.startswith("?"):  # optional: None allowed
        if value is None:
            return
        kind = kind[1:]
    if kind == "axis":
        ref = values[rest[1]]
        ndim = len(ref.shape)
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise DTypeError(f"{arg}: expected an integer axis of {rest[1]} (ndim {ndim}), got {value!r}")
        if not -ndim <= value < ndim:
            raise DomainError(f"{arg}: expected an axis in [{-ndim}, {ndim - 1}] for {rest[1]} of shape "
                              f"{tuple(int(s) for s in ref.shape)}, got {value}")
        return
    op, bound = rest
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise DTypeError(f"{arg}: expected a real number {op} {bound}, got {value!r}")
    v = float(value)
    if not np.isfinite(v) or not (v > float(bound) if op == ">" else v >= float(bound)):
        raise DomainError(f"{arg}: expected a finite number {op} {bound}, got {value!r}")


# ----------------------------------------------------------------------------- the 0.1 helper


def check_array(name: str, x: Any, shape: tuple | None = None, symbols: str | None = None) -> None:
    """Refuse ``x`` unless it is a floating array of ``shape``.

    ``shape`` holds ints, or ``None`` for a free dimension; ``symbols`` spells it
    in SPEC's letters, e.g. ``"(D, H)"``. Raises :class:`ShapeError` such as
    ``W_m: expected shape (D, H) = (4, 5), got (8, 5)``, or :class:`DTypeError`.
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


def checked_by(checker: Callable[..., Any]) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Like :func:`edge`, for entry points whose arguments are structures (states, params):
    ``checker`` is called with the function's arguments first and raises on bad input."""

    def wrap(fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def checked(*args: Any, **kwargs: Any) -> Any:
            checker(*args, **kwargs)
            return fn(*args, **kwargs)

        checked.unchecked = fn  # type: ignore[attr-defined]
        return checked

    return wrap


def fields(prefix: str, obj: Any, specs: Mapping[str, str]) -> tuple[dict[str, Any], dict[str, str]]:
    """The arrays ``obj.<field>`` under ``prefix.<field>`` and their specs, for :func:`check_arrays`."""
    if obj is None:
        return {}, {}
    arrays = {f"{prefix}.{k}": getattr(obj, k, None) for k in specs}
    return arrays, {f"{prefix}.{k}": v for k, v in specs.items()}


def spec_from_symbols(symbols: str) -> str:
    """A spec string from a shape spelled in SPEC's letters: ``"(Hs + H, A)"`` -> ``"(Hs+H) A"``."""
    inner = symbols.strip()
    if inner.startswith("(") and inner.endswith(")"):
        inner = inner[1:-1]
    parts = [p.strip().replace(" ", "") for p in inner.split(",") if p.strip()]
    return " ".join(p if (p.isidentifier() or p.isdigit()) else f"({p})" for p in parts)
