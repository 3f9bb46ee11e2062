"""Checks at the edge: annotations that read like the specification, checked once per public call.

A public forward or backward declares what each argument must be in its annotations, in the
letters of [the specification](../spec.md) (`B` batch, `T` time, `N` slots, `W` word size, ...),
and is decorated with [`checked`][refmem.validation.checked]:

```python
from refmem.validation import Array, Unit, checked

@checked
def usage_forward(prev_usage: Unit["B N"], free_gates: Unit["B R"], ...) -> tuple[UsageOutputs, UsageCache]:
    return usage(prev_usage, free_gates, ...)      # an ordinary named maths function
```

A call from a user runs the checks once; refmem's own code calls the maths function
(`usage(...)`) directly, so nothing is validated twice and nothing per time step. The
annotations are the whole grammar:

| annotation | accepts |
|---|---|
| `Array["B N W"]` | a floating array of shape `(B, N, W)`; each axis a letter, an integer or a leading `...` (any leading axes, the same in every argument of the call) |
| `Unit["B N"]` | the same, with values in [0, 1] (up to [`UNIT_SLACK`][refmem.validation.UNIT_SLACK]; off inside [`probing`][refmem.validation.probing]) |
| `Mask["B T"]` | a boolean array, or a floating or integer one of exactly 0 and 1 |
| `Scores["B T"]` | a floating array of scores before a softmax: each value finite or `-inf` (a position that gets weight 0) |
| `Index["B T", "K"]` | an integer array of shape `(B, T)` whose values are indices in `[0, K)` (tokens); never differentiated, so a keyword-only argument of a forward |
| a family's subclass of `Unit` with an [`invariant`][refmem.validation.Array.invariant] | the same, and the invariant (the DNC's `Weighting["B R N"]`: rows summing to at most 1) |
| `X | None` | `X` or `None` |
| a NamedTuple class (`Params`, `AccessState`) | an instance of it, each field checked through the class's own annotations (`params.W_i`) |
| `tuple[S, ...]` of a NamedTuple `S` | a tuple of `S`; a letter first bound inside one element is that element's own (layers of different widths) |
| a [`Config`][refmem.validation.Config] dataclass | an instance of it (validated when it was built); its [`sizes`][refmem.validation.Config.sizes] bind letters |
| [`Positive`][refmem.validation.Positive], [`NonNegative`][refmem.validation.NonNegative] | a finite real number > 0, >= 0 |
| [`Size`][refmem.validation.Size], [`Seed`][refmem.validation.Seed] | an integer >= 1, >= 0 (never a bool) |
| `Axis["x"]` | an integer axis of the array argument `x` |
| `Literal["deepmind", "paper"]` | one of the names |
| `bool`, `int`, `float`, `str`, any other class | exactly that type (`skip="False"` is refused) |

Two argument names carry a meaning, those of the backward rule (`f_backward(d_out, cache)`):

* **`cache`**: the forward's cache. Its array fields only *bind* letters (and fix the call's
  namespace and precision); it is not validated again.
* **`d_...`**: an upstream gradient. Every array field of a `d_...` structure may be `None`
  (zero), a plain tuple of the right length stands for the NamedTuple, and only finiteness is
  checked (the gradient of a probability is not a probability).

The letters are bound in this order, so that a wrong input is reported on itself, not on the
parameters: the cache, the configs, the structures (parameters, states) in argument order, then
the plain arrays in argument order. A size derived from others is a small Python function whose
parameters are letters, given to the decorator: `@checked(derive={"K": read_mode_width})` with
`def read_mode_width(nw): return 1 + 2 * nw`. No string is ever evaluated.

The policy, the same for every entry point (`refmem.errors`; every message names the
argument, the expected and the given):

* **arrays only**: a Python list or scalar, a NumPy masked array or `np.matrix` where an array
  is expected is refused (`DTypeError`).
* **one namespace**: every array of a call comes from one array library and device
  (`NamespaceError` names two arguments that differ).
* **one precision**: real and complex of one precision mix (the complex-step check of SPEC §6
  perturbs one input into complex128 while the others stay float64); float32 with float64 does
  not (`DTypeError` names both).
* **shapes**: a letter takes one value across all arguments of the call, every size is at
  least 1 (`ShapeError`: `keys: expected shape (B, H, W) = (2, ?, 3), got (2, 4, 5)`).
* **domains**: every floating value is finite; `Unit` values lie in [0, 1]; `Mask` values are
  exactly 0 or 1 (`DomainError` names the argument, the first offending index and value).
* **scalars and options**: `DTypeError` for the wrong type, `DomainError` for a value out of
  range or an unknown option name.

The 0.1 mechanism (`edge`, `checked_by`, `check_arrays`, `check_array`, `check_size`, spec
strings such as `"?B H | unit"` and the `.unchecked` attribute) is gone: every family is
converted ([migration](../migration.md)).
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import functools
import inspect
import types
import typing
import warnings
from typing import Any, Callable, Literal, Mapping

import array_api_compat
import numpy as np

from .errors import DomainError, DTypeError, NamespaceError, ShapeError
from .xp import namespace

__all__ = [
    # the mechanism
    "Array", "Unit", "Mask", "Scores", "Index", "Axis", "Positive", "NonNegative", "Size", "Seed", "Config", "checked",
    "is_checked", "probing", "trusted", "is_trusted", "UNIT_SLACK", "warn_old_call", "old_call_arguments", "quiet_overflow", "refuse_overflow",
    "ShapeError", "DTypeError", "DomainError", "NamespaceError",
]

UNIT_SLACK = 1e-6
"""How far outside [0, 1] a `Unit` value may lie: rounding of a softmax or a product, and the
`2**-20` probes of the central differences of SPEC §6, stay inside; a misuse (2.0, -0.9) does not."""

_PROBING: contextvars.ContextVar[bool] = contextvars.ContextVar("refmem_probing", default=False)


@contextlib.contextmanager
def probing() -> Any:
    """Switch the [0, 1] range checks of `Unit` arrays off inside this context.

    Shapes, dtypes, namespaces and finiteness are still checked. The gradient checks of
    SPEC §6 evaluate the equations at inputs moved off the sample by finite-difference and
    directional probes; a value sampled on the edge of [0, 1] (a zero link diagonal, a zero
    usage) then steps outside it, where the equations are still defined and are exactly what
    the difference quotient needs.
    """
    token = _PROBING.set(True)
    try:
        yield
    finally:
        _PROBING.reset(token)


_TRUSTED: contextvars.ContextVar[bool] = contextvars.ContextVar("refmem_trusted", default=False)


@contextlib.contextmanager
def trusted() -> Any:
    """Call [`checked`][refmem.validation.checked] functions without their argument checks inside
    this context. For refmem's own derivative loops only ([`refmem.gradcheck`][refmem.gradcheck]):
    they call a case's forward thousands of times at arguments that differ from those of one
    fully checked call by a step in some elements (stacked copies, a complex step), so every
    shape, dtype and namespace is the checked call's and every value is finite. What such a call
    returns is still judged: it is compared with the analytic gradient, and a NaN or an infinity
    fails that comparison.
    """
    token = _TRUSTED.set(True)
    try:
        yield
    finally:
        _TRUSTED.reset(token)


def is_trusted() -> bool:
    """Whether this call runs inside [`trusted`][refmem.validation.trusted] (checks a function makes
    by hand, beyond its annotations, skip themselves there too)."""
    return _TRUSTED.get()


# ============================================================================= annotations

_UNIT = "unit"
_MASK = "mask"
_SCORES = "scores"
_INDEX = "index"


class Array:
    """Annotation of a floating array argument: `Array["B N W"]` is an array of shape `(B, N, W)`.

    The axes are separated by spaces; each is a letter of the specification (any Python
    identifier, `B`, `nw`, `D_in`), an integer, or a leading `...` (any number of leading axes,
    the same in every argument of the call). A letter takes one value across the call.
    `Array["B N W"] | None` also accepts `None`. See [`Unit`][refmem.validation.Unit] and
    [`Mask`][refmem.validation.Mask] for the arrays with a domain.
    """

    spec: str = "..."
    axes: tuple = ()
    lead: bool = True
    domain: str | None = None
    symbols: str = "(...)"
    invariant: Callable[[str, Any], None] | None = None
    """A family's subclass may set a function `invariant(label, x)` that raises the `DomainError` for a
    value the specification does not define beyond the domain (rows that must sum to 1, a diagonal
    that must be 0). It runs after every other check of the call (so it sees the shapes it expects),
    never on a gradient (`d_...`) or a cache, and not inside [`probing`][refmem.validation.probing]."""

    def __class_getitem__(cls, spec: str) -> type:
        key = (cls, spec)
        made = _ANNOTATIONS.get(key)
        if made is None:
            made = _ANNOTATIONS[key] = _make_array_type(cls, spec)
        return made

    def __init__(self) -> None:  # pragma: no cover - an annotation, never instantiated
        raise TypeError(f"{type(self).__qualname__} is an annotation, not an array type to build")


class Unit(Array):
    """Annotation of a floating array whose values lie in [0, 1] (probabilities, gates, weights,
    usages, links): `Unit["B N"]`. The range allows [`UNIT_SLACK`][refmem.validation.UNIT_SLACK]
    for rounding and is not checked inside [`probing`][refmem.validation.probing]."""

    domain = _UNIT


class Mask(Array):
    """Annotation of a mask: `Mask["B T"]` is a boolean array, or a floating or integer array
    whose values are exactly 0 and 1 (1 attends, 0 does not). A mask is outside the call's
    one-precision rule."""

    domain = _MASK


class Scores(Array):
    """Annotation of the scores (energies, logits) that a softmax turns into weights:
    `Scores["B T"]` is a floating array whose values are finite or `-inf`. A score of `-inf` is
    the additive mask of other libraries: its position gets weight exactly 0. NaN and `+inf` are
    refused (`DomainError`)."""

    domain = _SCORES


class Index(Array):
    """Annotation of an integer array of indices (the tokens of a sentence): `Index["B T", "K"]` is
    an integer array of shape `(B, T)` whose values lie in `[0, K)`, `K` a letter that another
    argument of the call binds (the rows of an embedding matrix `E: Array["K m"]`). An index
    array has no gradient: it is a keyword-only argument of a forward, outside the call's
    one-precision rule. A bool array, a float array (even of whole numbers) and a value outside
    `[0, K)` are refused (`DTypeError`, `DomainError`)."""

    domain = _INDEX
    of: str = ""
    """The letter `K` of the exclusive upper bound."""

    def __class_getitem__(cls, spec: Any) -> type:
        if not (isinstance(spec, tuple) and len(spec) == 2 and all(isinstance(t, str) for t in spec)
                and spec[1].isidentifier()):
            raise TypeError(f"Index[...] takes the axes and the letter of the bound, Index[\"B T\", \"K\"], "
                            f"got {spec!r}")
        key = (cls, spec)
        made = _ANNOTATIONS.get(key)
        if made is None:
            base = _make_array_type(cls, spec[0])
            name = f'Index["{spec[0]}", "{spec[1]}"]'
            made = _ANNOTATIONS[key] = type(name, (base,), {"of": spec[1], "__module__": cls.__module__,
                                                            "__qualname__": name})
        return made


_ANNOTATIONS: dict[tuple[type, Any], type] = {}


def _make_array_type(cls: type, spec: Any) -> type:
    if not isinstance(spec, str):
        raise TypeError(f"{cls.__name__}[...] takes a string of axes such as \"B N W\", got {spec!r}")
    tokens = spec.split()
    lead = bool(tokens) and tokens[0] == "..."
    if lead:
        tokens = tokens[1:]
    axes: list[Any] = []
    for t in tokens:
        if t.isdigit():
            axes.append(int(t))
        elif t.isidentifier():
            axes.append(t)
        else:
            raise TypeError(f"{cls.__name__}[{spec!r}]: axis {t!r} is neither a letter, an integer nor a "
                            f"leading '...' (a derived size is a letter given by @checked(derive=...))")
    shown = (["..."] if lead else []) + [str(a) for a in axes]
    symbols = "(" + ", ".join(shown) + ("," if len(shown) == 1 and not lead else "") + ")"
    name = f'{cls.__name__}["{spec}"]'
    return type(name, (cls,), {"spec": spec, "axes": tuple(axes), "lead": lead, "symbols": symbols,
                               "__module__": cls.__module__, "__qualname__": name})


class Scalar:
    """Base of the scalar annotations ([`Positive`][refmem.validation.Positive], ...)."""

    expects = "a value"

    @classmethod
    def check(cls, label: str, value: Any) -> None:  # pragma: no cover - overridden
        raise NotImplementedError


def _is_real(value: Any) -> bool:
    return not isinstance(value, (bool, np.bool_)) and isinstance(value, (int, float, np.integer, np.floating))


def _is_int(value: Any) -> bool:
    return not isinstance(value, (bool, np.bool_)) and isinstance(value, (int, np.integer))


class Positive(Scalar):
    """Annotation of a finite real number > 0 (an `eps`, a learning rate)."""

    expects = "a finite number > 0"

    @classmethod
    def check(cls, label: str, value: Any) -> None:
        if not _is_real(value):
            raise DTypeError(f"{label}: expected {cls.expects}, got {value!r}")
        if not (np.isfinite(float(value)) and value > 0):
            raise DomainError(f"{label}: expected {cls.expects}, got {value!r}")


class NonNegative(Scalar):
    """Annotation of a finite real number >= 0 (a clip value, where 0 switches clipping off)."""

    expects = "a finite number >= 0"

    @classmethod
    def check(cls, label: str, value: Any) -> None:
        if not _is_real(value):
            raise DTypeError(f"{label}: expected {cls.expects}, got {value!r}")
        if not (np.isfinite(float(value)) and value >= 0):
            raise DomainError(f"{label}: expected {cls.expects}, got {value!r}")


class Size(Scalar):
    """Annotation of a size: an integer >= 1 (never a bool). A [`Config`][refmem.validation.Config]
    field annotated `Size` is a letter the config binds (see [`Config.sizes`][refmem.validation.Config.sizes])."""

    expects = "an integer >= 1"
    minimum = 1

    @classmethod
    def check(cls, label: str, value: Any) -> None:
        if not _is_int(value):
            raise DTypeError(f"{label}: expected {cls.expects}, got {value!r}")
        if value < cls.minimum:
            raise DomainError(f"{label}: expected {cls.expects}, got {value!r}")


class Seed(Size):
    """Annotation of a seed: an integer >= 0 (never a bool)."""

    expects = "an integer >= 0"
    minimum = 0


class Axis(Scalar):
    """Annotation of an axis of an array argument: `Axis["x"]` is an integer in `[-x.ndim, x.ndim)`."""

    of = ""

    def __class_getitem__(cls, of: str) -> type:
        key = (cls, of)
        made = _ANNOTATIONS.get(key)
        if made is None:
            if not (isinstance(of, str) and of.isidentifier()):
                raise TypeError(f"Axis[...] takes the name of an array argument, got {of!r}")
            name = f'Axis["{of}"]'
            made = _ANNOTATIONS[key] = type(name, (cls,), {"of": of, "__module__": cls.__module__,
                                                          "__qualname__": name})
        return made


# ============================================================================= configs


class Config:
    """Base of refmem's configuration dataclasses: they validate their own fields and give sizes.

    A subclass is a frozen dataclass whose fields are annotated with the scalar annotations
    (`Size`, `Positive`, `NonNegative`, `bool`, `Literal[...]`, ...). Building one checks every
    field strictly (`DNCConfig(skip="False")` is a `DTypeError`, `AccessConfig(N=0)` a
    `DomainError`, each naming `Class.field`). A public function with an argument annotated
    with the config's class binds the letters of [`sizes`][refmem.validation.Config.sizes]
    before it reads any array.

    ```python
    @dataclasses.dataclass(frozen=True)
    class AccessConfig(Config):
        N: Size
        W: Size
        R: Size
        nw: Size = 1
        convention: Literal["deepmind", "paper"] = "deepmind"

        def sizes(self) -> dict[str, int]:
            return {**super().sizes(), "I": interface_size(self)}   # a derived size
    ```

    A subclass that defines its own `__post_init__` calls `super().__post_init__()` first.
    """

    def __post_init__(self) -> None:
        cls = type(self)
        for name, optional, check in _config_checkers(cls):
            value = getattr(self, name)
            if value is None and optional:
                continue
            check(f"{cls.__name__}.{name}", value, None)
        object.__setattr__(self, "_refmem_sizes", dict(self.sizes()))

    def sizes(self) -> dict[str, int]:
        """The letters this config fixes: every field annotated [`Size`][refmem.validation.Size],
        under its own name. Override to add derived sizes (`{**super().sizes(), "I": ...}`)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)  # type: ignore[arg-type]
                if isinstance(f.type, type) and issubclass(f.type, Size) and f.type is not Seed}


_CONFIG_CHECKERS: dict[type, list] = {}


def _config_checkers(cls: type) -> list:
    found = _CONFIG_CHECKERS.get(cls)
    if found is None:
        found = []
        for f in dataclasses.fields(cls):
            if isinstance(f.type, str):
                raise TypeError(f"{cls.__name__}.{f.name}: the annotation is the string {f.type!r}; a Config's "
                                f"module must not use 'from __future__ import annotations' (annotations are "
                                f"read, never evaluated)")
            optional, base = _split_optional(f.type)
            check = _scalar_checker(base, {}, f"{cls.__name__}.{f.name}")
            if check is not None:
                found.append((f.name, optional, check))
        _CONFIG_CHECKERS[cls] = found
    return found


# ============================================================================= compiling annotations

_MISSING = object()
_ND = np.ndarray
_GENERIC = np.generic
_isfinite = np.isfinite
_and_reduce = np.logical_and.reduce
_or_reduce = np.logical_or.reduce
_min_reduce = np.minimum.reduce
_max_reduce = np.maximum.reduce
_HI = 1.0 + UNIT_SLACK
_LO = -UNIT_SLACK

# kinds of a compiled field or argument
_ARR, _STRUCT, _SEQ = 1, 2, 3


def _split_optional(ann: Any) -> tuple[bool, Any]:
    """`(True, X)` for `X | None` (or `Optional[X]`), `(False, ann)` otherwise."""
    origin = typing.get_origin(ann)
    if origin is typing.Union or origin is types.UnionType:
        args = typing.get_args(ann)
        if type(None) in args:
            rest = tuple(a for a in args if a is not type(None))
            if len(rest) == 1:
                return True, rest[0]
            return True, typing.Union[rest]  # type: ignore[return-value]
    return False, ann


def _is_array(ann: Any) -> bool:
    return isinstance(ann, type) and issubclass(ann, Array)


def _is_namedtuple(ann: Any) -> bool:
    return isinstance(ann, type) and issubclass(ann, tuple) and hasattr(ann, "_fields")


def _seq_of(ann: Any) -> type | None:
    """`S` for `tuple[S, ...]` with `S` a NamedTuple, else `None`."""
    if typing.get_origin(ann) is tuple:
        args = typing.get_args(ann)
        if len(args) == 2 and args[1] is Ellipsis and _is_namedtuple(args[0]):
            return args[0]
    return None


def _as_array(ann: Any) -> Any:
    return Array["..."] if ann is Array else Unit["..."] if ann is Unit else Mask["..."] if ann is Mask else ann


class _Node:
    """A NamedTuple type compiled for one label: its checked fields."""

    __slots__ = ("cls", "label", "n", "fields", "what")

    def __init__(self, cls: type, label: str, cache: bool):
        self.cls = cls
        self.label = label
        self.n = len(cls._fields)
        self.what = f"{_article(cls.__name__)} {cls.__name__}"
        hints = _field_hints(cls)
        fields = []
        for i, name in enumerate(cls._fields):
            ann = hints.get(name)
            if ann is None:
                continue
            optional, base = _split_optional(_as_array(ann))
            sub = f"{label}.{name}"
            if _is_array(base):
                fields.append((i, _ARR, base, sub, optional))
            elif _is_namedtuple(base):
                if cache:  # a cache binds from its own arrays and its nested structures
                    fields.append((i, _STRUCT, _node(base, sub, True), sub, True))
                else:
                    fields.append((i, _STRUCT, _node(base, sub, False), sub, optional))
            elif _seq_of(base) is not None and not cache:
                fields.append((i, _SEQ, _seq_of(base), sub, optional))
        self.fields = tuple(fields)


def _field_hints(cls: type) -> dict[str, Any]:
    hints: dict[str, Any] = {}
    for klass in reversed(cls.__mro__):
        for name, ann in vars(klass).get("__annotations__", {}).items():
            if isinstance(ann, str):
                raise TypeError(f"{cls.__name__}.{name}: the annotation is the string {ann!r}; a module with checked "
                                f"structures must not use 'from __future__ import annotations' (annotations are "
                                f"read, never evaluated)")
            hints[name] = ann
    return hints


_NODES: dict[tuple[type, str, bool], _Node] = {}


def _node(cls: type, label: str, cache: bool) -> _Node:
    key = (cls, label, cache)
    node = _NODES.get(key)
    if node is None:
        node = _NODES[key] = _Node(cls, label, cache)
    return node


def _article(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" else "a"


def _describe(cls: Any) -> str:
    return f"{_article(cls.__name__)} {cls.__name__}" if isinstance(cls, type) else repr(cls)


def _scalar_checker(ann: Any, positions: Mapping[str, int], where: str) -> Callable[[str, Any, Any], None] | None:
    """A function `check(label, value, values)` for a non-array annotation, or `None` (no check)."""
    if ann is Any or ann is inspect.Parameter.empty or ann is None:
        return None
    if isinstance(ann, type) and issubclass(ann, Axis):
        if ann.of not in positions:
            raise TypeError(f"{where}: Axis[{ann.of!r}] names no argument of the function")
        at = positions[ann.of]

        def axis(label: str, value: Any, values: Any) -> None:
            ref = values[at]
            ndim = len(ref.shape)
            if not _is_int(value):
                raise DTypeError(f"{label}: expected an integer axis of {ann.of} (ndim {ndim}), got {value!r}")
            if not -ndim <= value < ndim:
                raise DomainError(f"{label}: expected an axis in [{-ndim}, {ndim - 1}] for {ann.of} of shape "
                                  f"{tuple(int(s) for s in ref.shape)}, got {value}")

        axis.expects = "an axis"  # type: ignore[attr-defined]
        return axis
    if isinstance(ann, type) and issubclass(ann, Scalar):
        def scalar(label: str, value: Any, values: Any) -> None:
            ann.check(label, value)

        scalar.expects = ann.expects  # type: ignore[attr-defined]
        return scalar
    if typing.get_origin(ann) is Literal:
        allowed = typing.get_args(ann)
        shown = ", ".join(repr(a) for a in allowed)

        def literal(label: str, value: Any, values: Any) -> None:
            for a in allowed:
                if type(value) is type(a) and value == a:
                    return
            raise DomainError(f"{label}: expected one of {shown}, got {value!r}")

        literal.expects = f"one of {shown}"  # type: ignore[attr-defined]
        literal.accepts = tuple({type(a) for a in allowed})  # type: ignore[attr-defined]
        return literal
    origin = typing.get_origin(ann)
    if origin is typing.Union or origin is types.UnionType:
        members = [_scalar_checker(a, positions, where) for a in typing.get_args(ann)]
        if any(m is None for m in members):
            return None

        def union(label: str, value: Any, values: Any) -> None:
            first_domain = None
            for m in members:
                try:
                    m(label, value, values)
                    return
                except DomainError as exc:
                    if first_domain is None and isinstance(value, getattr(m, "accepts", ())):
                        first_domain = exc
                except DTypeError:
                    pass
            if first_domain is not None:
                raise first_domain
            raise DTypeError(f"{label}: expected {' or '.join(m.expects for m in members)}, got {value!r}")

        union.expects = " or ".join(m.expects for m in members)  # type: ignore[attr-defined]
        return union
    if ann is bool:
        def strict_bool(label: str, value: Any, values: Any) -> None:
            if type(value) is not bool:
                raise DTypeError(f"{label}: expected a bool (True or False), got {value!r}")

        strict_bool.expects = "a bool"  # type: ignore[attr-defined]
        return strict_bool
    if ann is int:
        def strict_int(label: str, value: Any, values: Any) -> None:
            if not _is_int(value):
                raise DTypeError(f"{label}: expected an integer, got {value!r}")

        strict_int.expects = "an integer"  # type: ignore[attr-defined]
        return strict_int
    if ann is float:
        def real(label: str, value: Any, values: Any) -> None:
            if not _is_real(value):
                raise DTypeError(f"{label}: expected a real number, got {value!r}")
            if not np.isfinite(float(value)):
                raise DomainError(f"{label}: expected a finite number, got {value!r}")

        real.expects = "a real number"  # type: ignore[attr-defined]
        return real
    if isinstance(ann, type):
        def instance(label: str, value: Any, values: Any) -> None:
            if not isinstance(value, ann):
                raise DTypeError(f"{label}: expected {_describe(ann)}, got {type(value).__name__}")

        instance.expects = _describe(ann)  # type: ignore[attr-defined]
        return instance
    return None  # other typing constructs (Callable, Mapping, ...) are documentation only


class _Plan:
    """A function's annotations compiled once, at decoration."""

    __slots__ = ("fetch", "caches", "configs", "structs", "arrays", "scalars", "derive", "legacy")

    def __init__(self, fn: Callable[..., Any], derive: Mapping[str, Callable[..., int]] | None,
                 legacy: Callable[..., Any] | None):
        sig = inspect.signature(fn)
        where = fn.__qualname__
        params = [p for p in sig.parameters.values()
                  if p.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)]
        positions = {p.name: i for i, p in enumerate(params)}
        self.fetch = tuple(
            (i if p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD) else 1 << 30,
             p.name, _MISSING if p.default is inspect.Parameter.empty else p.default)
            for i, p in enumerate(params))
        caches, configs, structs, arrays, scalars = [], [], [], [], []
        for i, p in enumerate(params):
            ann = p.annotation
            if isinstance(ann, str):
                raise TypeError(f"{where}: the annotation of {p.name} is the string {ann!r}; a module with checked "
                                f"functions must not use 'from __future__ import annotations' (annotations are "
                                f"read, never evaluated)")
            optional, base = _split_optional(_as_array(ann))
            grad = p.name.startswith("d_")
            if _is_array(base):
                arrays.append((i, p.name, base, optional, grad))
            elif _is_namedtuple(base):
                if p.name == "cache":
                    caches.append((i, _node(base, p.name, True)))
                else:
                    structs.append((i, p.name, _STRUCT, _node(base, p.name, False), optional, grad))
            elif _seq_of(base) is not None:
                structs.append((i, p.name, _SEQ, _seq_of(base), optional, grad))
            elif isinstance(base, type) and issubclass(base, Config):
                configs.append((i, p.name, base, optional))
            else:
                check = _scalar_checker(base, positions, f"{where}({p.name})")
                if check is not None:
                    scalars.append((i, p.name, check, optional))
        self.caches, self.configs, self.structs = tuple(caches), tuple(configs), tuple(structs)
        self.arrays, self.scalars = tuple(arrays), tuple(scalars)
        self.derive = None
        if derive:
            self.derive = {}
            for letter, rule in derive.items():
                inputs = tuple(inspect.signature(rule).parameters)
                self.derive[letter] = (rule, inputs)
        if legacy is not None and list(positions) != ["d_out", "cache"]:
            raise TypeError(f"{where}: legacy= is for a backward of the form f(d_out, cache)")
        self.legacy = legacy


# ============================================================================= the checks of one call
#
# `bound` maps each letter (and "...") to its size; `refs` is [namespace reference (label, array),
# precision reference (label, dtype, bits), probing, the plan's derived sizes, the checks to run
# once every shape of the call is checked and every letter bound (check, label, array): the invariants,
# the range of the indices].


def _run(plan: _Plan, values: list, bound: dict, again: bool = False, arrays_first: bool = False) -> None:
    """Check one call's arguments (`values`, in parameter order) against the compiled plan.

    The structures bind their letters before the plain arrays, so that an input of the wrong
    width is reported on the input. When the structures disagree among themselves (a parameter
    of the wrong shape), the call is checked again with the plain arrays first, so that the
    parameter that disagrees with the inputs is the one named.
    """
    start = dict(bound)
    refs: list = [None, None, _PROBING.get(), plan.derive, []]
    for i, node in plan.caches:
        _bind_cache(node, values[i], bound, refs)
    for i, name, cls, optional in plan.configs:
        value = values[i]
        if value is None and optional:
            continue
        if not isinstance(value, cls):
            raise DTypeError(f"{name}: expected {_describe(cls)}, got {type(value).__name__}")
        bound.update(value._refmem_sizes)
    derive = plan.derive
    if derive:
        for letter, (rule, inputs) in derive.items():
            if letter not in bound and all(a in bound for a in inputs):
                bound[letter] = rule(*(bound[a] for a in inputs))
    try:
        if arrays_first:
            _check_arrays(plan, values, bound, refs)
        try:
            _check_structs(plan, values, bound, refs)
        except ShapeError:
            if arrays_first or not plan.arrays:
                raise
            _run(plan, values, start, again, arrays_first=True)
            raise
        if not arrays_first:
            _check_arrays(plan, values, bound, refs)
    except ShapeError:
        if derive and not again:  # a derived letter bound to a wrong size: the argument that bound it is named
            _derived_first(plan, values, bound, arrays_first)
        raise
    for i, name, check, optional in plan.scalars:
        value = values[i]
        if value is None and optional:
            continue
        check(name, value, values)
    if derive:
        for letter, (rule, inputs) in derive.items():
            if all(a in bound for a in inputs):
                want = rule(*(bound[a] for a in inputs))
                have = bound.get(letter)
                if have is not None and have != want:
                    if not again:  # again with the letter fixed first: the first argument that disagrees is named
                        _run(plan, values, {letter: want}, again=True, arrays_first=arrays_first)
                    raise ShapeError(f"{letter}: expected {rule.__name__}("
                                     f"{', '.join(f'{a}={bound[a]}' for a in inputs)}) = {want}, got {have}")
    for check, label, x in refs[4]:
        check(label, x)


def _derived_first(plan: _Plan, values: list, bound: dict, arrays_first: bool) -> None:
    """After a `ShapeError`: where a derived letter was bound to a size its rule does not give,
    check the call again with the letter fixed first, so that the argument that bound it is the one
    named (and the message shows the rule), not a later argument that agrees with the rule."""
    for letter, (rule, inputs) in plan.derive.items():
        if letter in bound and all(a in bound for a in inputs):
            want = rule(*(bound[a] for a in inputs))
            if bound[letter] != want:
                _run(plan, values, {letter: want}, again=True, arrays_first=arrays_first)


def _check_structs(plan: _Plan, values: list, bound: dict, refs: list) -> None:
    for i, name, kind, payload, optional, grad in plan.structs:
        value = values[i]
        if value is None:
            if optional:
                continue
            what = payload.what if kind is _STRUCT else f"a tuple of {payload.__name__}"
            raise DTypeError(f"{name}: expected {what}, got None")
        if kind is _STRUCT:
            _check_struct(payload, value, bound, refs, grad, True)
        else:
            _check_seq(name, payload, value, bound, refs, grad)


def _check_arrays(plan: _Plan, values: list, bound: dict, refs: list) -> None:
    for i, name, spec, optional, grad in plan.arrays:
        value = values[i]
        if value is None:
            if optional:
                continue
            raise DTypeError(f"{name}: expected an array, got None")
        _check_array(name, value, spec, bound, refs, grad)


def _bind_cache(node: _Node, cache: Any, bound: dict, refs: list) -> None:
    """Bind letters from a cache's own array fields; fix the call's namespace and precision from them."""
    if not isinstance(cache, node.cls):
        raise DTypeError(f"{node.label}: expected the {node.cls.__name__} of the forward, got {type(cache).__name__}")
    for i, kind, spec, label, optional in node.fields:
        if kind is not _ARR:
            continue
        x = cache[i]
        if x is None:
            continue
        if refs[0] is None:
            refs[0] = (label, x)
        if refs[1] is None:
            dtype = x.dtype
            if type(x) is _ND:
                kind_ = dtype.kind
                if kind_ == "f" or kind_ == "c":
                    refs[1] = (label, dtype, dtype.itemsize * (8 if kind_ == "f" else 4))
            else:
                k, bits = _foreign_kind(x)
                if bits:
                    refs[1] = (label, dtype, bits)
        _bind(label, x.shape, spec, bound, refs)


def _check_struct(node: _Node, value: Any, bound: dict, refs: list, grad: bool, top: bool) -> None:
    cls = node.cls
    if type(value) is not cls and not isinstance(value, cls):
        if not (grad and top and isinstance(value, tuple) and len(value) == node.n):
            extra = (f" (or a tuple of its {node.n} field{'s' if node.n > 1 else ''}: {', '.join(cls._fields)}; "
                     f"None for zero)"
                     if grad and top else "")
            got = type(value).__name__ + (f" of length {len(value)}" if extra and isinstance(value, tuple) else "")
            raise DTypeError(f"{node.label}: expected {node.what}{extra}, got {got}")
    for i, kind, payload, label, optional in node.fields:
        x = value[i]
        if x is None:
            if optional or grad:
                continue
            raise DTypeError(f"{label}: expected {'an array' if kind is _ARR else _describe(payload.cls if kind is _STRUCT else tuple)}, got None")
        if kind is _ARR:
            _check_array(label, x, payload, bound, refs, grad)
        elif kind is _STRUCT:
            _check_struct(payload, x, bound, refs, grad, False)
        else:
            _check_seq(label, payload, x, bound, refs, grad)


def _check_seq(label: str, cls: type, value: Any, bound: dict, refs: list, grad: bool) -> None:
    if not isinstance(value, (tuple, list)) or _is_namedtuple(type(value)):
        raise DTypeError(f"{label}: expected a tuple of {cls.__name__}, got {type(value).__name__}")
    for k, item in enumerate(value):  # each element in its own scope: layers of different widths
        _check_struct(_node(cls, f"{label}[{k}]", False), item, dict(bound), refs, grad, False)


def _check_array(label: str, x: Any, spec: type, bound: dict, refs: list, grad: bool) -> None:
    """Type, namespace, precision, shape and domain of one array."""
    if type(x) is _ND:
        dtype = x.dtype
        kind = dtype.kind
        ns = refs[0]
        if ns is None:
            refs[0] = (label, x)
        elif type(ns[1]) is not _ND:
            _same_library(ns, label, x)
        bits = dtype.itemsize * 8 if kind == "f" else dtype.itemsize * 4 if kind == "c" else 0
        host = True
    else:
        kind, bits = _foreign(label, x, refs)
        dtype = x.dtype
        host = False
    domain = None if grad else spec.domain
    if domain is _MASK:
        if kind not in ("b", "f", "i", "u"):
            raise DTypeError(f"{label}: expected a boolean mask or one of 0/1, got dtype {dtype}")
    elif domain is _INDEX:
        if kind not in ("i", "u"):
            raise DTypeError(f"{label}: expected an integer array of indices in [0, {spec.of}), got dtype {dtype}")
        _bind(label, x.shape, spec, bound, refs)
        refs[4].append((_index_range(spec.of, bound), label, x))  # once every letter of the call is bound
        return
    elif not bits:
        raise DTypeError(f"{label}: expected a floating dtype, got {dtype}")
    else:
        ref = refs[1]
        if ref is None:
            refs[1] = (label, dtype, bits)
        elif ref[2] != bits:
            raise DTypeError(f"{label}: expected the precision of {ref[0]} ({ref[1]}), got {dtype}; "
                             f"one float dtype per call (cast with xp.astype)")
    _bind(label, x.shape, spec, bound, refs)
    if not host:
        _foreign_domain(label, x, kind, domain, refs[2])
    elif domain is None or (domain is _UNIT and refs[2]):
        if not _and_reduce(_isfinite(x), axis=None):
            _domain_error(label, x, None)
    elif domain is _UNIT:
        r = x.real if kind == "c" else x
        if not (_min_reduce(r, axis=None) >= _LO and _max_reduce(r, axis=None) <= _HI):
            _domain_error(label, x, _UNIT)
        if kind == "c" and not _and_reduce(_isfinite(x), axis=None):
            _domain_error(label, x, None)
    elif domain is _SCORES:
        if not _and_reduce(_isfinite(x), axis=None) and not _and_reduce(_finite_or_minus_inf(x), axis=None):
            _domain_error(label, x, _SCORES)
    elif kind != "b":
        if _or_reduce((x != 0) & (x != 1), axis=None):
            _domain_error(label, x, _MASK)
    if domain is not None and not refs[2] and spec.invariant is not None:
        refs[4].append((spec.invariant, label, x))  # run once every shape of the call is known


def _index_range(letter: str, bound: dict) -> Callable[[str, Any], None]:
    """The check that an index array's values lie in `[0, bound[letter])`."""

    def in_range(label: str, x: Any) -> None:
        K = bound.get(letter)
        if K is None:
            raise TypeError(f"{label}: Index[..., {letter!r}] needs another argument of the call to fix {letter}")
        xp = namespace(x)
        if int(xp.min(x)) >= 0 and int(xp.max(x)) < K:
            return
        from .xp import to_numpy

        h = to_numpy(x)
        at = _first((h < 0) | (h >= K))
        raise DomainError(f"{label}: expected indices in [0, {letter}) = [0, {K}), got {h[at].item()!r} at {list(at)}")

    return in_range


def _bind(label: str, shape: Any, spec: type, bound: dict, refs: list) -> None:
    """Bind the letters of `spec` to `shape`, or raise the `ShapeError` naming `label`."""
    axes = spec.axes
    if spec.lead:
        k = len(shape) - len(axes)
        if k < 0:
            raise ShapeError(f"{label}: expected shape {spec.symbols} (at least {len(axes)} axes), got {_ints(shape)}")
        lead = tuple(shape[:k])
        if 0 in lead:
            raise ShapeError(f"{label}: expected every axis of size at least 1 (empty arrays are refused), "
                             f"got shape {_ints(shape)}")
        prev = bound.get("...")
        if prev is None:
            bound["..."] = lead
        elif prev != lead:
            raise ShapeError(f"{label}: expected shape {spec.symbols} with ... = {_ints(prev)} (from the other "
                             f"arguments), got {_ints(shape)}")
        if not axes:
            return
        tail = shape[k:]
    elif len(shape) != len(axes):
        raise _mismatch(label, spec, shape, bound, None, None, refs)
    else:
        tail = shape
    fresh = None
    for ax, g in zip(axes, tail):
        if type(ax) is int:
            if ax != g:
                raise _mismatch(label, spec, shape, bound, fresh, None, refs)
            continue
        b = bound.get(ax)
        if b is None:
            if g < 1:
                raise ShapeError(f"{label}: size {ax} = {g}, expected at least 1 "
                                 f"(empty {'batches' if ax == 'B' else 'axes'} are refused)")
            bound[ax] = g
            fresh = (ax,) if fresh is None else fresh + (ax,)
        elif b != g:
            raise _mismatch(label, spec, shape, bound, fresh, ax, refs)


def _ints(shape: Any) -> tuple[int, ...]:
    return tuple(int(s) for s in shape)


def _mismatch(label: str, spec: type, shape: Any, bound: Mapping, fresh: Any, ax: Any, refs: list) -> ShapeError:
    shown = ["..."] if spec.lead else []
    for a in spec.axes:
        if type(a) is int:
            shown.append(str(a))
        elif a in bound and not (fresh and a in fresh):
            shown.append(str(bound[a]))
        else:
            shown.append("?")
    text = "(" + ", ".join(shown) + ("," if len(shown) == 1 and not spec.lead else "") + ")"
    msg = f"{label}: expected shape {spec.symbols} = {text}, got {_ints(shape)}"
    if ax is not None:
        derive = refs[3]
        rule = derive.get(ax) if derive else None
        if rule is not None and all(a in bound for a in rule[1]) and rule[0](*(bound[a] for a in rule[1])) == bound[ax]:
            args = ", ".join(f"{a}={bound[a]}" for a in rule[1])
            msg += f" ({ax} = {rule[0].__name__}({args}) = {bound[ax]})"
        else:
            msg += f" ({ax} = {bound[ax]} from the other arguments)"
    return ShapeError(msg)


def _foreign_kind(x: Any) -> tuple[str, int]:
    """`(kind, bits)` of an array of any library: kind one of f c b i, bits per real component or 0."""
    xp = namespace(x)
    dt = x.dtype
    if xp.isdtype(dt, "real floating"):
        return "f", int(xp.finfo(dt).bits)
    if xp.isdtype(dt, "complex floating"):
        return "c", int(xp.finfo(dt).bits)
    if xp.isdtype(dt, "bool"):
        return "b", 0
    if xp.isdtype(dt, "integral"):
        return "i", 0
    return "", 0


def _foreign(label: str, x: Any, refs: list) -> tuple[str, int]:
    """Checks of an argument that is not a plain NumPy array: is it an array, of the call's library?"""
    if not (hasattr(x, "shape") and hasattr(x, "dtype")) or isinstance(x, _GENERIC):
        raise DTypeError(f"{label}: expected an array, got {type(x).__name__} "
                         f"(create arrays with xp.asarray in the namespace you compute in)")
    if isinstance(x, np.ma.MaskedArray):
        raise DTypeError(f"{label}: expected a plain array, got a NumPy masked array (its mask would be "
                         f"ignored); pass x.filled(value) or np.asarray(x)")
    if isinstance(x, np.matrix):
        raise DTypeError(f"{label}: expected a plain array, got np.matrix (it keeps two axes and redefines *); "
                         f"pass np.asarray(x)")
    try:
        array_api_compat.array_namespace(x)
    except TypeError:
        raise DTypeError(f"{label}: expected an array of a supported array library, got "
                         f"{type(x).__module__}.{type(x).__name__}") from None
    ns = refs[0]
    if ns is None:
        refs[0] = (label, x)
    else:
        _same_library(ns, label, x)
    return _foreign_kind(x)


def _same_library(ref: tuple, label: str, x: Any) -> None:
    first = ref[1]
    try:
        array_api_compat.array_namespace(first, x)
    except TypeError:
        raise NamespaceError(f"{label}: expected an array of the same library as {ref[0]} "
                             f"({type(first).__module__}.{type(first).__name__}), got "
                             f"{type(x).__module__}.{type(x).__name__}") from None
    a, b = array_api_compat.device(first), array_api_compat.device(x)
    if str(a) != str(b):
        raise NamespaceError(f"{label}: expected an array on the device of {ref[0]} ({a}), got {b}")


def _foreign_domain(label: str, x: Any, kind: str, domain: str | None, probing_: bool) -> None:
    xp = namespace(x)
    if domain is _MASK:
        if kind != "b" and not bool(xp.all((x == 0) | (x == 1))):
            _domain_error(label, x, _MASK)
        return
    if domain is _SCORES:
        r = xp.real(x) if kind == "c" else x
        ok = xp.isfinite(x) | ((r == -float("inf")) & xp.isfinite(xp.imag(x) if kind == "c" else xp.zeros_like(r)))
        if not bool(xp.all(ok)):
            _domain_error(label, x, _SCORES)
        return
    if not bool(xp.all(xp.isfinite(x))):
        _domain_error(label, x, None)
    if domain is _UNIT and not probing_:
        r = xp.real(x) if kind == "c" else x
        if not bool(xp.all((r >= _LO) & (r <= _HI))):
            _domain_error(label, x, _UNIT)


def _domain_error(label: str, x: Any, domain: str | None) -> None:
    """Raise the `DomainError` for `x`, naming the first offending index and value."""
    from .xp import to_numpy

    h = to_numpy(x)
    if domain is _MASK:
        bad = ~((h == 0) | (h == 1))
        at = _first(bad)
        raise DomainError(f"{label}: expected a mask of exactly 0 or 1 (or booleans), got {h[at].item()!r} at "
                          f"{list(at)}")
    if domain is _SCORES:
        at = _first(~_finite_or_minus_inf(h))
        raise DomainError(f"{label}: expected finite values or -inf, got {h[at].item()!r} at {list(at)}")
    bad = ~np.isfinite(h)
    if bad.any():
        at = _first(bad)
        raise DomainError(f"{label}: expected finite values, got {h[at].item()!r} at {list(at)}")
    r = np.real(h)
    at = _first((r < _LO) | (r > _HI))
    raise DomainError(f"{label}: expected values in [0, 1], got {r[at].item()!r} at {list(at)}")


def _finite_or_minus_inf(h: np.ndarray) -> np.ndarray:
    """Where a NumPy array is finite, or has the real part `-inf` (and a finite imaginary part)."""
    return np.isfinite(h) | ((np.real(h) == -np.inf) & np.isfinite(np.imag(h)))


def _first(bad: np.ndarray) -> tuple[int, ...]:
    return tuple(int(i) for i in np.argwhere(bad)[0])


# ============================================================================= the decorator


def checked(fn: Callable[..., Any] | None = None, *, derive: Mapping[str, Callable[..., int]] | None = None,
            legacy: Callable[..., Any] | None = None) -> Any:
    """Check a public function's arguments against its annotations, once per call.

    The annotations are read at decoration (a spec that does not parse is a `TypeError` at
    import); each call checks its arguments as the module docstring describes and then calls
    the function unchanged. The function keeps its name, signature, annotations and docstring
    (`functools.wraps`).

    Args:
        fn: the function (`@checked` without arguments).
        derive: letter -> a small function whose parameters are letters, giving a size derived
            from others, e.g. `{"K": read_mode_width}` with `def read_mode_width(nw): return 1 + 2 * nw`.
        legacy: for a backward `f(d_out, cache)` only: a function called instead of the checks
            when the call is not of the form `f(tuple, cache)` (the 0.1 call with positional
            gradients); it warns with [`warn_old_call`][refmem.validation.warn_old_call] and
            calls `f` in the new form.

    Returns:
        The checked function (or, with keyword arguments only, a decorator).
    """
    if fn is None:
        return lambda f: checked(f, derive=derive, legacy=legacy)
    plan = _Plan(fn, derive, legacy)
    fetch = plan.fetch
    old = plan.legacy

    @functools.wraps(fn)
    def checked_call(*args: Any, **kwargs: Any) -> Any:
        if old is not None and (len(args) != 2 or kwargs or not isinstance(args[0], tuple)):
            return old(*args, **kwargs)
        if _TRUSTED.get():  # refmem's own derivative loop, after one checked call (`trusted`)
            return fn(*args, **kwargs)
        n = len(args)
        values = []
        for pos, name, default in fetch:
            if pos < n:
                values.append(args[pos])
            else:
                v = kwargs.get(name, default)
                if v is _MISSING:  # a required argument is missing: Python's own TypeError
                    return fn(*args, **kwargs)
                values.append(v)
        _run(plan, values, {})
        return fn(*args, **kwargs)

    return checked_call


def is_checked(fn: Any) -> bool:
    """Whether `fn` is a function decorated with [`checked`][refmem.validation.checked]."""
    return getattr(getattr(fn, "__code__", None), "co_name", None) == "checked_call" and \
        fn.__code__.co_filename == __file__


def warn_old_call(old: str, new: str) -> None:
    """Warn that a 0.1 call form was used (`DeprecationWarning`, pointing at the caller's line)."""
    warnings.warn(f"{old} is the refmem 0.1 call form, deprecated and removed after 0.2: call {new} "
                  f"(docs/migration.md)", DeprecationWarning, stacklevel=4)


def old_call_arguments(name: str, names: tuple[str, ...], args: tuple, kwargs: dict[str, Any],
                       required: tuple[str, ...] = ("cache",), renamed: dict[str, str] | None = None) -> dict[str, Any]:
    """Bind a call of the backward `name` that may be its 0.1 form: the positional `args` to `names`
    (the 0.1 parameters, `cache` among them), then `kwargs`, a 0.1 keyword of `renamed` under its
    new name. The 0.2 form by keyword, `{"d_out", "cache"}`, binds too; the caller tells the forms
    apart and warns with [`warn_old_call`][refmem.validation.warn_old_call]. Raises `TypeError`
    ("`name`() takes (d_out, cache)") for too many or repeated arguments, an unknown keyword or a
    missing one of `required`."""
    given = dict(zip(names, args))
    if len(args) > len(names) or set(given) & set(kwargs):
        raise TypeError(f"{name}() takes (d_out, cache)")
    given.update(kwargs)
    for old, new in (renamed or {}).items():
        if old in given:
            given[new] = given.pop(old)
    if not set(required) <= set(given) or (set(given) - set(names) and set(given) != {"d_out", "cache"}):
        raise TypeError(f"{name}() takes (d_out, cache)")
    return given


# ============================================================================= host copies


def _host(x: Any) -> np.ndarray:
    from .xp import to_numpy

    return to_numpy(x)


# ----------------------------------------------------------------------------- overflow of finite inputs


def quiet_overflow() -> Any:
    """A context in which NumPy does not warn of an overflow or an invalid value: the entry points
    that use it check their results with `refuse_overflow`
    afterwards, so the overflow is reported once, as a `DomainError`, not as a warning before it."""
    return np.errstate(over="ignore", invalid="ignore")


def refuse_overflow(values: Any, label: str, what: str, shown: str = "") -> None:
    """Raise a `DomainError` naming `label` when `values` (computed from finite inputs) is not finite.

    A score or a logit beyond the largest number of the dtype becomes `inf` (and a softmax of it
    NaN): no answer is right then, so the input is refused, naming the limit.

    Args:
        values: the computed array (scores, weights, outputs).
        label: the arguments to name (`"h, hs"`).
        what: what overflowed (`"dot scores h·hs"`).
        shown: the name of `values` in the message when it is not the overflowing quantity itself
            (`"alpha"` for energies seen through their softmax); empty when it is.
    """
    xp = namespace(values)
    if bool(xp.all(xp.isfinite(values))):
        return
    h = _host(values)
    at = tuple(int(i) for i in np.argwhere(~np.isfinite(h))[0])
    limit = float(np.finfo(h.dtype).max)
    dtype = np.finfo(h.dtype).dtype.name
    where = f"{shown} is {h[at].item()!r} at {list(at)}" if shown else f"{h[at].item()!r} at {list(at)}"
    raise DomainError(f"{label}: expected {what} within the range of {dtype} (magnitude <= {limit:.4g}), "
                      f"got an overflow ({where}); the inputs are finite but too large for {dtype}: "
                      f"scale them down")
