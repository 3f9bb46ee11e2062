"""A deterministic, machine-independent float32 (and complex64): an array namespace that rounds after every operation.

The golden float32 tolerances ([`refmem.golden.tolerances`][refmem.golden.tolerances]) measure how much float32
arithmetic loses on each tensor. A plain float32 run of refmem does not give a
machine-independent answer: its ``matmul`` goes to the machine's BLAS (OpenBLAS picks other
kernels, with other summation orders, on other CPUs) and NumPy's float32 ``exp``/``tanh``/``log``
have SIMD variants chosen at run time. This module runs the very same model code on arrays of
class [`Array`][refmem.emulated32.Array] whose namespace, [`Namespace`][refmem.emulated32.Namespace],
computes every operation from its float32 operands in long double and rounds the result to
float32 once:

* ``+ - * /``, ``sqrt`` and the elementwise functions (``exp``, ``log``, ``log1p``, ``tanh``, ...):
  the long double result rounded to float32, i.e. a correctly rounded float32 operation, the
  same bits on every machine (NumPy's long double loops call the C library, never SIMD or BLAS).
  A product of two float32 numbers is exact in float64, so ``*`` is computed in float64.
* reductions (``sum``, ``prod``, ``mean``, ``cumulative_prod``, ``cumulative_sum``) and
  products (``@``/``matmul``, ``vecdot``, ``tensordot``): a *sequential* float32 accumulation,
  ``acc ← round(acc + a_k b_k)`` for ``k = 0, 1, ...``, as a fused-multiply-add BLAS kernel
  does along ``K``; sequential summation is the least accurate usual order (error growing
  like ``K ε``, where pairwise and blocked orders grow like ``log K`` or ``√K``), so the
  measured loss is not smaller than what a real kernel loses.
* indexing, reshaping, ``where``, ``max``, ``min``, ``sort``, comparisons and the like are exact.
* a Python scalar operand is first converted to float32, as NumPy and PyTorch do for a
  float32 array.
* complex64 (the complex step of the forward-mode tolerances): every operation is computed in
  complex long double and each component, real and imaginary, is rounded to float32 once.

``"stochastic"`` rounding replaces round-to-nearest by stochastic rounding (up or down with
probability proportional to the distance; Monte Carlo arithmetic). The "random" number of an
element is a hash of the seed and of the exact value being rounded, so equal values always
round alike (a real float32 computation maps equal inputs to equal outputs, and a tie such as
a sort of equal usages must stay a tie), while different values get independent-looking
errors. Each seed is another plausible set of rounding errors, a stand-in for a float32
implementation that orders its operations differently; results are bit-identical on every
machine.

**Runs side by side.** A namespace holds one or more *runs*, ``(rounding, seed)`` pairs, and
computes them together: every array carries a leading axis of one row per run (or a single row
while all runs agree on it, as the inputs do), so the Python work of an operation is paid once
for all runs. Row ``r`` is computed exactly as a namespace of the one run ``r`` computes it.
Where the runs would take different branches (a ``bool``, an index or a ``float`` taken from
an array whose rows differ), the namespace raises [`Diverged`][refmem.emulated32.Diverged],
and the caller runs them one by one.

Model code needs no change: it takes the namespace of its inputs (``__array_namespace__``).
A model function that created a float64 array in a float32 computation raises
[`EmulationError`][refmem.emulated32.EmulationError].
"""

from __future__ import annotations

import math
import operator
from typing import Any, Callable, Sequence

import numpy as np

__all__ = ["Array", "Namespace", "EmulationError", "Diverged", "wrap", "unwrap", "ROUNDINGS"]

#: The rounding modes of a run: round to nearest; stochastic rounding (up or down with probability
#: proportional to the distance); stochastic rounding of the arithmetic with the library functions
#: (``exp``, ``tanh``, ``log``, ...) rounded *faithfully*, to either neighbour with probability 1/2.
ROUNDINGS = ("nearest", "stochastic", "faithful")

_LD = np.dtype(np.longdouble)
_CLD = np.dtype(np.clongdouble)
_F32 = np.dtype(np.float32)
_C64 = np.dtype(np.complex64)
_F64 = np.dtype(np.float64)
_U64 = np.dtype(np.uint64)
# Constants as 0-d arrays: NumPy combines them with arrays several times faster than Python or NumPy scalars.
_INF32 = np.asarray(np.inf, dtype=np.float32)
_ZERO64 = np.asarray(0.0)
_HALF = np.asarray(0.5)
_TWO53 = np.asarray(2.0**53)
_GOLDEN = np.asarray(0x9E3779B97F4A7C15, dtype=np.uint64)
_M1, _M2 = np.asarray(0xBF58476D1CE4E5B9, dtype=np.uint64), np.asarray(0x94D049BB133111EB, dtype=np.uint64)
_S30, _S27, _S31, _S11 = (np.asarray(k, dtype=np.uint64) for k in (30, 27, 31, 11))
#: Salt of a run's seed, and the extra salt of imaginary parts (independent draws from the real parts').
_SEED_SALT = np.asarray(0x5F3759DF5F32, dtype=np.uint64)
#: Salt of a faithful run's seed (draws independent of the stochastic run of the same seed).
_FAITHFUL_SALT = np.asarray(0x2545F4914F6CDD1D, dtype=np.uint64)
_IMAG_SALT = np.asarray(0x1D8E4E27C47D124F, dtype=np.uint64)


def _mix(z: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser on a uint64 array of at least one axis (wrapping arithmetic, which
    NumPy does silently for arrays): a fast, well-mixed hash."""
    z = z + _GOLDEN
    t = z >> _S30
    z ^= t
    z *= _M1
    np.right_shift(z, _S27, out=t)
    z ^= t
    z *= _M2
    np.right_shift(z, _S31, out=t)
    z ^= t
    return z


class EmulationError(RuntimeError):
    """An operation the emulated float32 namespace does not provide, or a float64 value in an
    emulated float32 computation (the golden export re-raises it as a
    [`GoldenError`][refmem.golden.GoldenError])."""


class Diverged(EmulationError):
    """The runs computed side by side need different branches here (a ``bool``, an index, a
    Python number or a NumPy array was taken from an array whose runs differ): compute them one
    by one."""


def _one(a: np.ndarray) -> np.ndarray:
    """The one logical value of a physical array: its row when all runs agree, else [`Diverged`][refmem.emulated32.Diverged]."""
    if a.shape[0] == 1:
        return a[0, ...]  # an array, 0-d for a logical scalar
    first = a[0, ...]
    for row in a[1:]:
        if not np.array_equal(row, first, equal_nan=a.dtype.kind in "fc"):
            raise Diverged("the runs computed side by side differ in a value that decides a branch")
    return first


def unwrap(x: Any) -> Any:
    """The NumPy value of an [`Array`][refmem.emulated32.Array] (its one row: raises
    [`Diverged`][refmem.emulated32.Diverged] where the runs differ); other values unchanged,
    tuples and lists recursively."""
    if isinstance(x, Array):
        return _one(x.a)
    if isinstance(x, (tuple, list)):
        return type(x)(unwrap(v) for v in x)
    return x


def _checked(a: np.ndarray) -> np.ndarray:
    k = a.dtype.kind
    if k == "f" and a.dtype != _F32:
        raise EmulationError(f"an emulated float32 computation produced a {a.dtype} array")
    if k == "c" and a.dtype != _C64:
        raise EmulationError(f"an emulated float32 computation produced a {a.dtype} array")
    return a


def wrap(ns: "Namespace", a: Any) -> "Array":
    """An [`Array`][refmem.emulated32.Array] of namespace ``ns`` holding the NumPy array ``a``,
    the same value in every run (a float array must be float32, a complex one complex64)."""
    a = _checked(np.asarray(a))
    return Array(a[None], ns)


def _index_key(key: Any) -> tuple[tuple, bool]:
    """``key`` as a tuple, and whether it is basic (ints, slices, ``None``, ``...``) only."""
    key = key if isinstance(key, tuple) else (key,)
    basic = all(k is None or k is Ellipsis or isinstance(k, (int, slice, np.integer)) for k in key)
    return key, basic


class Array:
    """An emulated float32 or complex64 array (or a bool/integer array of the same computation).

    ``a`` holds one row per run of its namespace, or a single row shared by all runs: its
    shape is ``(1 or R, *shape)``.
    """

    __slots__ = ("a", "ns")
    __array_priority__ = 1000  # NumPy defers to our reflected operators

    def __init__(self, a: np.ndarray, ns: "Namespace"):
        self.a = a
        self.ns = ns

    def __array_namespace__(self, api_version: str | None = None) -> "Namespace":
        return self.ns

    # --- attributes
    @property
    def shape(self) -> tuple[int, ...]:
        return self.a.shape[1:]

    @property
    def ndim(self) -> int:
        return self.a.ndim - 1

    @property
    def size(self) -> int:
        return math.prod(self.a.shape[1:])

    @property
    def dtype(self) -> np.dtype:
        return self.a.dtype

    @property
    def device(self) -> str:
        return "cpu"

    @property
    def T(self) -> "Array":  # noqa: N802
        return Array(np.transpose(self.a, (0,) + tuple(range(self.a.ndim - 1, 0, -1))), self.ns)

    @property
    def mT(self) -> "Array":  # noqa: N802
        return Array(np.swapaxes(self.a, -1, -2), self.ns)

    @property
    def rows(self) -> list[np.ndarray]:
        """The value of every run (one NumPy array per run of the namespace)."""
        return [self.a[0, ...]] * self.ns.R if self.a.shape[0] == 1 else [r[...] for r in self.a]

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        v = _one(self.a)
        return v if dtype is None else v.astype(dtype)

    def __len__(self) -> int:
        return self.a.shape[1]

    def __repr__(self) -> str:
        return f"Emulated32({self.a!r})"

    def __float__(self) -> float:
        return float(_one(self.a))

    def __int__(self) -> int:
        return int(_one(self.a))

    def __index__(self) -> int:
        return operator.index(_one(self.a))

    def __bool__(self) -> bool:
        return bool(_one(self.a))

    def __complex__(self) -> complex:
        return complex(_one(self.a))

    def __getitem__(self, key: Any) -> "Array":
        key, basic = _index_key(key)
        if basic:
            return Array(self.a[(slice(None),) + key], self.ns)
        key = tuple(_one(k.a) if isinstance(k, Array) else k for k in key)
        if self.a.shape[0] == 1:
            return Array(self.a[0][key][None], self.ns)
        return Array(np.stack([row[key] for row in self.a]), self.ns)

    def __setitem__(self, key: Any, value: Any) -> None:
        v = self.ns._operand(value, like=self.a)
        if v.dtype.kind in "fc" and v.dtype != self.a.dtype and self.a.dtype.kind in "fc":
            v = v.astype(self.a.dtype)  # a float32 value into a complex64 array: exact
        lead = max(self.a.shape[0], v.shape[0] if v.ndim else 1)
        a = np.array(np.broadcast_to(self.a, (lead,) + self.a.shape[1:]))
        key, basic = _index_key(key)
        if basic:
            target = a[(slice(None),) + key]
            target[...] = self.ns._lift(v, target.ndim - 1)
        else:
            key = tuple(_one(k.a) if isinstance(k, Array) else k for k in key)
            vs = np.broadcast_to(v, (lead,) + v.shape[1:]) if v.ndim else [v] * lead
            for row, val in zip(a, vs):
                row[key] = val
        self.a = a

    # --- arithmetic (rounded)
    def __add__(self, o: Any) -> "Array":
        return self.ns.add(self, o)

    def __radd__(self, o: Any) -> "Array":
        return self.ns.add(o, self)

    def __sub__(self, o: Any) -> "Array":
        return self.ns.subtract(self, o)

    def __rsub__(self, o: Any) -> "Array":
        return self.ns.subtract(o, self)

    def __mul__(self, o: Any) -> "Array":
        return self.ns.multiply(self, o)

    def __rmul__(self, o: Any) -> "Array":
        return self.ns.multiply(o, self)

    def __truediv__(self, o: Any) -> "Array":
        return self.ns.divide(self, o)

    def __rtruediv__(self, o: Any) -> "Array":
        return self.ns.divide(o, self)

    def __pow__(self, o: Any) -> "Array":
        return self.ns.pow(self, o)

    def __rpow__(self, o: Any) -> "Array":
        return self.ns.pow(o, self)

    def __matmul__(self, o: Any) -> "Array":
        return self.ns.matmul(self, o)

    def __rmatmul__(self, o: Any) -> "Array":
        return self.ns.matmul(o, self)

    def __neg__(self) -> "Array":
        return Array(-self.a, self.ns)

    def __pos__(self) -> "Array":
        return self

    def __abs__(self) -> "Array":
        return self.ns.abs(self)

    # --- exact
    def __lt__(self, o: Any) -> "Array":
        return self.ns.less(self, o)

    def __le__(self, o: Any) -> "Array":
        return self.ns.less_equal(self, o)

    def __gt__(self, o: Any) -> "Array":
        return self.ns.greater(self, o)

    def __ge__(self, o: Any) -> "Array":
        return self.ns.greater_equal(self, o)

    def __eq__(self, o: Any) -> "Array":  # type: ignore[override]
        return self.ns.equal(self, o)

    def __ne__(self, o: Any) -> "Array":  # type: ignore[override]
        return self.ns.not_equal(self, o)

    def __and__(self, o: Any) -> "Array":
        return self.ns._exact2(np.bitwise_and, self, o)

    def __rand__(self, o: Any) -> "Array":
        return self.ns._exact2(np.bitwise_and, o, self)

    def __or__(self, o: Any) -> "Array":
        return self.ns._exact2(np.bitwise_or, self, o)

    def __ror__(self, o: Any) -> "Array":
        return self.ns._exact2(np.bitwise_or, o, self)

    def __xor__(self, o: Any) -> "Array":
        return self.ns._exact2(np.bitwise_xor, self, o)

    def __rxor__(self, o: Any) -> "Array":
        return self.ns._exact2(np.bitwise_xor, o, self)

    def __invert__(self) -> "Array":
        return Array(~self.a, self.ns)

    __hash__ = None  # type: ignore[assignment]


#: Elementwise functions computed in long double and rounded once.
_UNARY_ROUNDED = {"exp": np.exp, "expm1": np.expm1, "log": np.log, "log1p": np.log1p, "log2": np.log2,
                  "log10": np.log10, "tanh": np.tanh, "sinh": np.sinh, "cosh": np.cosh, "sin": np.sin,
                  "cos": np.cos, "tan": np.tan, "atan": np.arctan, "arctan": np.arctan, "sqrt": np.sqrt,
                  "square": np.square, "reciprocal": np.reciprocal}
#: Elementwise functions exact on float32 values.
#: The operations IEEE 754 requires correctly rounded (every float32 implementation rounds them so); the
#: other elementwise functions are library functions, faithful (within one ulp) in real implementations.
_CORRECTLY_ROUNDED = (np.add, np.subtract, np.multiply, np.divide, np.sqrt, np.square, np.reciprocal)
_UNARY_EXACT = {"negative": np.negative, "positive": np.positive, "sign": np.sign, "floor": np.floor,
                "ceil": np.ceil, "trunc": np.trunc, "round": np.round, "isfinite": np.isfinite, "isnan": np.isnan,
                "isinf": np.isinf, "logical_not": np.logical_not, "signbit": np.signbit,
                "bitwise_invert": np.invert}
_BINARY_EXACT = {"maximum": np.maximum, "minimum": np.minimum, "less": np.less, "less_equal": np.less_equal,
                 "greater": np.greater, "greater_equal": np.greater_equal, "equal": np.equal,
                 "not_equal": np.not_equal, "logical_and": np.logical_and, "logical_or": np.logical_or,
                 "logical_xor": np.logical_xor, "copysign": np.copysign, "bitwise_and": np.bitwise_and,
                 "bitwise_or": np.bitwise_or, "bitwise_xor": np.bitwise_xor}


def _axes(axis: Any, ndim: int) -> tuple[int, ...]:
    """Logical ``axis`` (``None``, an int or a tuple, negative allowed) as physical axes (after the run axis)."""
    if axis is None:
        return tuple(range(1, ndim + 1))
    if isinstance(axis, (tuple, list)):
        return tuple(operator.index(a) % ndim + 1 for a in axis)
    return (operator.index(axis) % ndim + 1,) if ndim else (1,)


def _ax(axis: int, ndim: int) -> int:
    """One logical axis of an array of logical ``ndim`` as a physical axis."""
    if not -ndim <= axis < ndim:
        raise np.exceptions.AxisError(axis, ndim)
    return axis % ndim + 1


class _Linalg:
    """``xp.linalg`` of the emulated namespace: ``matmul``, ``vecdot``, ``tensordot``, ``vector_norm``."""

    def __init__(self, ns: "Namespace"):
        self.ns = ns

    def matmul(self, x: Any, y: Any) -> Array:
        return self.ns.matmul(x, y)

    def vecdot(self, x: Any, y: Any, axis: int = -1) -> Array:
        return self.ns.vecdot(x, y, axis=axis)

    def tensordot(self, x: Any, y: Any, axes: Any = 2) -> Array:
        return self.ns.tensordot(x, y, axes=axes)

    def matrix_transpose(self, x: Any) -> Array:
        return self.ns.matrix_transpose(x)

    def vector_norm(self, x: Any, axis: Any = None, keepdims: bool = False, ord: Any = 2) -> Array:  # noqa: A002
        if ord != 2:
            raise EmulationError("linalg.vector_norm: only ord=2 is emulated")
        return self.ns.sqrt(self.ns.sum(x * x, axis=axis, keepdims=keepdims))

    def __getattr__(self, name: str) -> Any:
        raise EmulationError(f"the emulated float32 namespace has no linalg.{name!r}")


class Namespace:
    """The array namespace of [`Array`][refmem.emulated32.Array]: float32 with one rounding per operation.

    Args:
        rounding: ``"nearest"`` (round to nearest, ties to even) or ``"stochastic"``, for a
            namespace of one run.
        seed: the seed of that run's stochastic rounding draws (ignored for ``"nearest"``).
        runs: instead of ``rounding`` and ``seed``, the ``(rounding, seed)`` of every run the
            namespace computes side by side; arrays then hold one row per run.
    """

    float32 = _F32
    complex64 = _C64
    float64 = _F64
    complex128 = np.dtype(np.complex128)
    bool = np.dtype(np.bool_)
    int8, int16, int32, int64 = (np.dtype(t) for t in (np.int8, np.int16, np.int32, np.int64))
    uint8, uint16, uint32, uint64 = (np.dtype(t) for t in (np.uint8, np.uint16, np.uint32, np.uint64))
    e, pi, inf, nan = math.e, math.pi, math.inf, math.nan
    newaxis = None
    __name__ = "refmem.emulated32"

    def __init__(self, rounding: str = "nearest", seed: int = 0, *, runs: Sequence[tuple[str, int]] | None = None):
        runs = ((rounding, seed),) if runs is None else tuple((str(r), int(s)) for r, s in runs)
        if not runs:
            raise ValueError("runs: expected at least one (rounding, seed) pair, got none")
        for r, _ in runs:
            if r not in ROUNDINGS:
                raise ValueError(f"rounding: expected one of {', '.join(map(repr, ROUNDINGS))}, got {r!r}")
        self.runs = runs
        self.R = len(runs)
        self.rounding, self.seed = runs[0]
        kinds = [ROUNDINGS.index(r) for r, _ in runs]
        if kinds != sorted(kinds):  # (the caller orders them: refmem.golden.tolerances.float32_runs does)
            raise ValueError("runs: expected the round-to-nearest runs first, then the stochastic, then the faithful")
        self._near = kinds.count(0)
        self._faithful = kinds.count(2)
        seeds = np.asarray([s for r, s in runs if r != "nearest"], dtype=np.uint64).reshape(-1)
        salts = np.asarray([_SEED_SALT if r == "stochastic" else _SEED_SALT ^ _FAITHFUL_SALT
                            for r, _ in runs if r != "nearest"], dtype=np.uint64).reshape(-1)
        self._salt = _mix(seeds ^ salts)  # one salt per stochastic or faithful row (at least one axis)
        self._salt_im = _mix(self._salt ^ _IMAG_SALT)
        self._inner = _mix(self._salt)  # the inner hash of a value with no long double residual
        self._inner_im = _mix(self._salt_im)
        self._shaped: dict[tuple[int, bool], tuple[np.ndarray, np.ndarray]] = {}
        self.ops = 0  # rounded operations performed (for tests and cost reports)
        import array_api_compat.numpy as _np_ns

        self._np = _np_ns
        self.linalg = _Linalg(self)

    def __repr__(self) -> str:
        if self.R == 1:
            return f"Namespace(rounding={self.rounding!r}, seed={self.seed})"
        return f"Namespace(runs={self.runs!r})"

    # --------------------------------------------------------------- operands
    def given(self, a: np.ndarray) -> Array:
        """A stored tensor as an emulated input: floats cast to float32 (they must be
        float32-representable; the cast is then exact), other dtypes unchanged."""
        a = np.asarray(a)
        if a.dtype.kind == "f":
            a = a.astype(_F32)
        elif a.dtype.kind == "c":
            a = a.astype(_C64)
        return Array(np.ascontiguousarray(a)[None], self)

    def _operand(self, x: Any, like: np.ndarray | None = None) -> np.ndarray:
        """A physical NumPy operand: an Array's rows, a NumPy array with a run axis, or a Python
        scalar as a 0-d array (float32 for a float, the integer dtype of ``like`` for an int)."""
        if type(x) is Array:
            return x.a
        if isinstance(x, np.ndarray):
            return _checked(x)[None]
        if isinstance(x, (bool, np.bool_)):
            return np.asarray(x)
        if isinstance(x, (int, np.integer)):
            if like is not None and like.dtype.kind in "iub":
                return np.asarray(x, dtype=like.dtype)
            return np.asarray(np.float32(x))
        if isinstance(x, (float, np.floating)):
            return np.asarray(np.float32(x))
        if isinstance(x, (complex, np.complexfloating)):
            return np.asarray(np.complex64(x))
        if isinstance(x, Array):
            raise EmulationError("an array of another emulated namespace entered this computation")
        raise EmulationError(f"unsupported operand of type {type(x).__name__} in an emulated float32 computation")

    @staticmethod
    def _lift(a: np.ndarray, ndim: int) -> np.ndarray:
        """Physical ``a`` with axes inserted after the run axis up to logical ``ndim`` (0-d left alone)."""
        if a.ndim == 0 or a.ndim - 1 >= ndim:
            return a
        return a.reshape((a.shape[0],) + (1,) * (ndim - a.ndim + 1) + a.shape[1:])

    def _pair(self, x: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
        a = self._operand(x)
        b = self._operand(y, like=a if a.ndim else None)
        if not a.ndim and b.ndim and b.dtype.kind in "iu" and isinstance(x, (int, np.integer)) \
                and not isinstance(x, bool):
            a = np.asarray(x, dtype=b.dtype)  # a Python int with an integer array: that array's dtype
        if not a.ndim and not b.ndim:  # two scalars: a logical scalar
            return a.reshape(1), b
        if a.ndim and b.ndim and a.ndim != b.ndim:
            n = max(a.ndim, b.ndim) - 1
            a, b = self._lift(a, n), self._lift(b, n)
        return a, b

    def _rows(self, *arrays: np.ndarray) -> list[np.ndarray]:
        """Physical arrays broadcast to one number of rows (for concatenation, stacking, ...)."""
        lead = max(a.shape[0] for a in arrays)
        return [a if a.shape[0] == lead else np.broadcast_to(a, (lead,) + a.shape[1:]) for a in arrays]

    # --------------------------------------------------------------- rounding
    def _salts(self, ndim: int, imag: bool) -> tuple[np.ndarray, np.ndarray]:
        """The stochastic rows' salts and inner hashes shaped ``(rows, 1, ..., 1)`` for ``ndim`` axes."""
        key = (ndim, imag)
        got = self._shaped.get(key)
        if got is None:
            shape = (-1,) + (1,) * (ndim - 1)
            salt, inner = (self._salt_im, self._inner_im) if imag else (self._salt, self._inner)
            got = self._shaped[key] = (salt.reshape(shape), inner.reshape(shape))
        return got

    def _round(self, y: np.ndarray, imag: bool = False, library: bool = False) -> np.ndarray:
        """Physical values ``y`` rounded to float32 per run: nearest, or stochastically (``library``:
        the result of a library function, which a faithful run rounds to either neighbour with
        probability 1/2).

        ``y`` holds the value to round: a long double, or a float64 where that is exact (a
        product of two float32 numbers, a sum that float64 holds exactly); complex: each
        component. Everything after the first comparison is exact float64 arithmetic, so the
        result is the same whichever precision carried ``y``.
        """
        if y.dtype.kind == "c":
            re, im = self._rows(self._round(y.real, library=library), self._round(y.imag, True, library))
            out = np.empty(re.shape, dtype=_C64)
            out.real, out.imag = re, im
            return out
        self.ops += 1
        if y.ndim == 0:  # from two scalars: a logical scalar, the same in every run
            y = y.reshape(1)
        res = None
        if y.dtype == _LD:
            hi = y.astype(_F64)
            res = (y - hi.astype(_LD)).astype(_F64)  # the exact residual (NaN where y is not finite)
            if res.any():
                r = y.astype(_F32)
            else:
                y, r, res = hi, hi.astype(_F32), None  # float64 holds y exactly
        else:
            r = y.astype(_F32)
        near = self._near
        if near == self.R:
            return r
        invariant = y.shape[0] == 1
        ys, rs = (y, r) if invariant else (y[near:], r[near:])
        r64 = rs.astype(_F64)
        if res is None:
            hi = ys
            d = ys - r64  # exact (the two are within one float32 ulp)
        else:
            hi = ys.astype(_F64)
            rs_res = res if invariant else res[near:]
            d = (hi - r64) + rs_res  # y - r, exact: at most 42 significant bits
        if not d.any():
            return r  # every value is a float32 number: no rounding in any run
        up = d < _ZERO64  # r is above y: the other candidate is below
        other = np.nextafter(rs, np.copysign(_INF32, d, dtype=_F32))  # toward y
        q = d / (other.astype(_F64) - r64)  # distance to r in units of the gap to the other candidate (exact)
        p_hi = np.abs(up - q)  # (y - lo) / (hi - lo) = 1 - q below, q above (exact): the chance to round up
        if library and self._faithful:  # faithful rows: either neighbour, 1/2 each (an exact value stays)
            nf, ns = self._faithful, self.R - near - self._faithful
            coin = np.where(d != _ZERO64, _HALF, _ZERO64)
            if invariant:
                p_hi = np.concatenate((np.broadcast_to(p_hi, (ns,) + p_hi.shape[1:]),
                                       np.broadcast_to(coin, (nf,) + coin.shape[1:])))
            else:
                p_hi = np.concatenate((p_hi[:ns], coin[ns:]))
        salt, inner = self._salts(ys.ndim, imag)
        if res is not None:
            lo = np.where(np.isfinite(hi), rs_res, _ZERO64) + _ZERO64  # no negative zero
            inner = _mix(lo.view(_U64) ^ salt)
        h = _mix(inner ^ (hi + _ZERO64).view(_U64)) >> _S11  # a uniform integer in [0, 2^53)
        to_other = (h < p_hi * _TWO53) != up
        pick = np.where(to_other, other, rs)
        if near == 0:
            return pick
        head = r if invariant else r[:near]
        if invariant and near > 1:
            head = np.broadcast_to(r, (near,) + r.shape[1:])
        return np.concatenate((head, pick))

    def _sum32(self, a: np.ndarray, b: np.ndarray, minus: bool) -> np.ndarray:
        """``a ± b`` of float32 operands rounded per run: in float64 where that is exact (checked),
        else in long double."""
        a64, b64 = a.astype(_F64), b.astype(_F64)
        if minus:
            s = a64 - b64
            exact = ((a64 - s) == b64).all() and ((s + b64) == a64).all()
        else:
            s = a64 + b64
            exact = ((s - a64) == b64).all() and ((s - b64) == a64).all()
        if not exact:  # (by Dekker's theorem one of the two differences is exact, so s is too when both match)
            s = a.astype(_LD) - b.astype(_LD) if minus else a.astype(_LD) + b.astype(_LD)
        return self._round(s)

    def rounded(self, y: Any) -> np.ndarray:
        """``y`` (NumPy values in any precision, one set for every run) rounded to float32 by each
        run: an array of shape ``(R, *y.shape)``."""
        y = np.asarray(y)
        y = y.astype(_CLD if y.dtype.kind == "c" else _LD)[None]
        out = self._round(y)
        return np.broadcast_to(out, (self.R,) + out.shape[1:]).copy()

    @staticmethod
    def _wide(a: np.ndarray, b: np.ndarray | None = None) -> np.dtype:
        complex_ = a.dtype.kind == "c" or (b is not None and b.dtype.kind == "c")
        return _CLD if complex_ else _LD

    def _rounded1(self, fn: Callable, x: Any) -> Array:
        a = self._operand(x)
        if a.dtype.kind not in "fc":
            a = a.astype(_F32)
        return Array(self._round(fn(a.astype(self._wide(a))), library=fn not in _CORRECTLY_ROUNDED), self)

    def _rounded2(self, fn: Callable, x: Any, y: Any) -> Array:
        a, b = self._pair(x, y)
        ka, kb = a.dtype.kind, b.dtype.kind
        if ka not in "fc" and kb not in "fc":
            return Array(fn(a, b), self)
        W = self._wide(a, b)
        return Array(self._round(fn(a.astype(W), b.astype(W)), library=fn not in _CORRECTLY_ROUNDED), self)

    def _exact2(self, fn: Callable, x: Any, y: Any) -> Array:
        a, b = self._pair(x, y)
        return Array(np.asarray(fn(a, b)), self)

    # --------------------------------------------------------------- elementwise
    def add(self, x: Any, y: Any) -> Array:
        a, b = self._pair(x, y)
        if a.dtype == _F32 and b.dtype == _F32:
            return Array(self._sum32(a, b, False), self)
        return self._rounded2(np.add, x, y)

    def subtract(self, x: Any, y: Any) -> Array:
        a, b = self._pair(x, y)
        if a.dtype == _F32 and b.dtype == _F32:
            return Array(self._sum32(a, b, True), self)
        return self._rounded2(np.subtract, x, y)

    def multiply(self, x: Any, y: Any) -> Array:
        a, b = self._pair(x, y)
        if a.dtype == _F32 and b.dtype == _F32:  # a product of two float32 numbers is exact in float64
            return Array(self._round(a.astype(_F64) * b.astype(_F64)), self)
        ka, kb = a.dtype.kind, b.dtype.kind
        if ka not in "fc" and kb not in "fc":
            return Array(a * b, self)
        W = self._wide(a, b)
        return Array(self._round(a.astype(W) * b.astype(W)), self)

    def divide(self, x: Any, y: Any) -> Array:
        a, b = self._pair(x, y)
        if a.dtype.kind not in "fc" and b.dtype.kind not in "fc":
            a = a.astype(_F32)
        W = self._wide(a, b)
        return Array(self._round(a.astype(W) / b.astype(W)), self)

    def pow(self, x: Any, y: Any) -> Array:
        return self._rounded2(np.power, x, y)

    power = pow

    def atan2(self, x: Any, y: Any) -> Array:
        return self._rounded2(np.arctan2, x, y)

    def logaddexp(self, x: Any, y: Any) -> Array:
        return self._rounded2(np.logaddexp, x, y)

    def abs(self, x: Any) -> Array:
        a = self._operand(x)
        if a.dtype.kind == "c":  # the modulus: rounded
            return Array(self._round(np.abs(a.astype(_CLD))), self)
        return Array(np.abs(a), self)

    def where(self, cond: Any, x: Any, y: Any) -> Array:
        c = self._operand(cond)
        a, b = self._pair(x, y)
        n = max(c.ndim, a.ndim, b.ndim) - 1
        c, a, b = self._lift(c, n), self._lift(a, n), self._lift(b, n)
        out = np.where(c, a, b)
        dt = np.result_type(a, b) if a.ndim and b.ndim else out.dtype
        return Array(out.astype(dt, copy=False), self)

    def clip(self, x: Any, min: Any = None, max: Any = None) -> Array:  # noqa: A002
        a = self._operand(x)
        lo = None if min is None else self._lift(self._operand(min, a), a.ndim - 1)
        hi = None if max is None else self._lift(self._operand(max, a), a.ndim - 1)
        return Array(np.clip(a, lo, hi).astype(a.dtype, copy=False), self)

    def real(self, x: Any) -> Array:
        a = self._operand(x)
        return Array(np.ascontiguousarray(a.real) if a.dtype.kind == "c" else a, self)

    def imag(self, x: Any) -> Array:
        a = self._operand(x)
        return Array(np.ascontiguousarray(a.imag) if a.dtype.kind == "c" else np.zeros_like(a), self)

    def conj(self, x: Any) -> Array:
        a = self._operand(x)
        return Array(np.conj(a) if a.dtype.kind == "c" else a, self)

    # --------------------------------------------------------------- reductions (sequential, one rounding per step)
    def _last(self, a: np.ndarray, axis: Any) -> tuple[np.ndarray, tuple[int, ...]]:
        """Physical ``a`` with the reduced logical axes flattened into the last one, and the
        physical kept shape (keepdims form)."""
        nd = a.ndim - 1
        axes = _axes(axis, nd)
        kept = [i for i in range(a.ndim) if i not in axes]
        moved = np.transpose(a, kept + list(axes))
        flat = moved.reshape(tuple(a.shape[i] for i in kept) + (-1,))
        keep_shape = tuple(1 if i in axes else a.shape[i] for i in range(a.ndim))
        return flat, keep_shape

    def _fold(self, flat: np.ndarray, step: Callable, empty: float) -> np.ndarray:
        n = flat.shape[-1]
        if n == 0:
            return np.full(flat.shape[:-1], empty, dtype=_C64 if flat.dtype.kind == "c" else _F32)
        acc = flat[..., 0]
        if flat.dtype == _F32:
            for k in range(1, n):
                acc = self._step32(step, acc, flat[..., k])
            return acc
        W = self._wide(flat)
        wide = flat.astype(W)
        for k in range(1, n):
            acc = self._round(step(acc.astype(W), wide[..., k]))
        return acc

    def _step32(self, step: Callable, acc: np.ndarray, x: np.ndarray) -> np.ndarray:
        """One rounded ``acc + x`` or ``acc * x`` of float32 operands."""
        if step is np.add:
            return self._sum32(acc, x, False)
        return self._round(acc.astype(_F64) * x.astype(_F64))  # exact in float64

    def _reduce(self, x: Any, axis: Any, keepdims: bool, step: Callable, empty: float) -> Array:
        a = self._operand(x)
        if a.dtype.kind not in "fc":
            a = a.astype(_F32)
        flat, keep_shape = self._last(a, axis)
        out = self._fold(flat, step, empty)
        if keepdims:
            out = out.reshape((out.shape[0],) + keep_shape[1:])
        return Array(out, self)

    def sum(self, x: Any, axis: Any = None, keepdims: bool = False, dtype: Any = None) -> Array:
        return self._reduce(x, axis, keepdims, np.add, 0.0)

    def prod(self, x: Any, axis: Any = None, keepdims: bool = False, dtype: Any = None) -> Array:
        return self._reduce(x, axis, keepdims, np.multiply, 1.0)

    def mean(self, x: Any, axis: Any = None, keepdims: bool = False) -> Array:
        a = self._operand(x)
        s = self.sum(x, axis=axis, keepdims=keepdims)
        n = math.prod(a.shape[1:]) // max(math.prod(s.a.shape[1:]), 1) if a.size else 0
        return self.divide(s, float(n))

    def _cumulative(self, x: Any, axis: Any, include_initial: bool, step: Callable, initial: float) -> Array:
        a = self._operand(x)
        if a.dtype.kind not in "fc":
            a = a.astype(_F32)
        nd = a.ndim - 1
        if axis is None:
            if nd != 1:
                raise EmulationError("cumulative_*: axis is required for arrays of more than one dimension")
            axis = 0
        b = np.moveaxis(a, _ax(axis, nd), -1)
        outs = []
        if b.shape[-1]:
            acc = b[..., 0]
            outs.append(acc)
            if b.dtype == _F32:
                for k in range(1, b.shape[-1]):
                    acc = self._step32(step, acc, b[..., k])
                    outs.append(acc)
            else:
                W = self._wide(b)
                wide = b.astype(W)
                for k in range(1, b.shape[-1]):
                    acc = self._round(step(acc.astype(W), wide[..., k]))
                    outs.append(acc)
        if include_initial:
            outs.insert(0, np.full(b.shape[:-1], initial, dtype=b.dtype))
        out = np.stack(self._rows(*outs), axis=-1) if outs else np.zeros(b.shape, dtype=b.dtype)
        return Array(np.moveaxis(out, -1, _ax(axis, nd)), self)

    def cumulative_prod(self, x: Any, axis: Any = None, dtype: Any = None, include_initial: bool = False) -> Array:
        return self._cumulative(x, axis, include_initial, np.multiply, 1.0)

    def cumulative_sum(self, x: Any, axis: Any = None, dtype: Any = None, include_initial: bool = False) -> Array:
        return self._cumulative(x, axis, include_initial, np.add, 0.0)

    def _products(self, A: np.ndarray, Bm: np.ndarray) -> np.ndarray:
        """Every product ``A[..., m, k] B[..., k, n]`` at ``[..., m, k, n]``, exactly (float32 products
        are exact in float64) in the working precision of the accumulation."""
        if A.dtype == _F32 and Bm.dtype == _F32:
            return (A[..., :, :, None].astype(_F64) * Bm[..., None, :, :]).astype(_LD)
        W = self._wide(A, Bm)
        return A[..., :, :, None].astype(W) * Bm[..., None, :, :].astype(W)

    def matmul(self, x: Any, y: Any) -> Array:
        """``x @ y`` as a sequential fused multiply-add along the contracted axis."""
        a, b = self._operand(x), self._operand(y)
        if a.ndim < 2 or b.ndim < 2:
            raise EmulationError("matmul: 0-d operands are not arrays")
        va, vb = a.ndim == 2, b.ndim == 2  # logical 1-d
        A = a[:, None, :] if va else a
        Bm = b[:, :, None] if vb else b
        n = max(A.ndim, Bm.ndim) - 1
        A, Bm = self._lift(A, n), self._lift(Bm, n)
        K = A.shape[-1]
        if Bm.shape[-2] != K:
            raise ValueError(f"matmul: shapes {a.shape[1:]} and {b.shape[1:]} do not align")
        out_shape = np.broadcast_shapes(A.shape[:-2], Bm.shape[:-2]) + (A.shape[-2], Bm.shape[-1])
        complex_ = A.dtype.kind == "c" or Bm.dtype.kind == "c"
        if K == 0:
            acc = np.zeros(out_shape, dtype=_C64 if complex_ else _F32)
        else:
            P = self._products(A, Bm)
            acc = self._round(P[..., :, 0, :])
            W = P.dtype
            for k in range(1, K):
                acc = self._round(acc.astype(W) + P[..., :, k, :])
        if va:
            acc = acc[..., 0, :]
        if vb:
            acc = acc[..., 0]
        return Array(np.ascontiguousarray(acc), self)

    def vecdot(self, x: Any, y: Any, axis: int = -1) -> Array:
        a, b = self._pair(x, y)
        if a.dtype.kind == "c":
            a = np.conj(a)
        a, b = np.broadcast_arrays(a, b)
        nd = a.ndim - 1
        a, b = np.moveaxis(a, _ax(axis, nd), -1), np.moveaxis(b, _ax(axis, nd), -1)
        K = a.shape[-1]
        if a.dtype == _F32 and b.dtype == _F32:
            P = (a.astype(_F64) * b).astype(_LD)
        else:
            W = self._wide(a, b)
            P = a.astype(W) * b.astype(W)
        if K == 0:
            return Array(np.zeros(a.shape[:-1], dtype=_C64 if P.dtype.kind == "c" else _F32), self)
        acc = self._round(P[..., 0])
        for k in range(1, K):
            acc = self._round(acc.astype(P.dtype) + P[..., k])
        return Array(acc, self)

    def tensordot(self, x: Any, y: Any, axes: Any = 2) -> Array:
        a, b = self._operand(x), self._operand(y)
        na, nb = a.ndim - 1, b.ndim - 1
        if isinstance(axes, int):
            ax_a, ax_b = list(range(na - axes, na)), list(range(axes))
        else:
            ax_a, ax_b = [i % na for i in axes[0]], [i % nb for i in axes[1]]
        free_a = [i for i in range(na) if i not in ax_a]
        free_b = [i for i in range(nb) if i not in ax_b]
        m = math.prod(a.shape[i + 1] for i in free_a)
        n = math.prod(b.shape[i + 1] for i in free_b)
        A2 = np.transpose(a, [0] + [i + 1 for i in free_a + ax_a]).reshape(a.shape[0], m, -1)
        B2 = np.transpose(b, [0] + [i + 1 for i in ax_b + free_b]).reshape(b.shape[0], -1, n)
        out = self.matmul(Array(A2, self), Array(B2, self)).a
        shape = tuple(a.shape[i + 1] for i in free_a) + tuple(b.shape[i + 1] for i in free_b)
        return Array(out.reshape((out.shape[0],) + shape), self)

    # --------------------------------------------------------------- exact array manipulation
    def reshape(self, x: Any, shape: Sequence[int], copy: Any = None) -> Array:
        a = self._operand(x)
        return Array(a.reshape((a.shape[0],) + tuple(shape)), self)

    def permute_dims(self, x: Any, axes: Sequence[int]) -> Array:
        a = self._operand(x)
        return Array(np.transpose(a, (0,) + tuple(operator.index(i) % (a.ndim - 1) + 1 for i in axes)), self)

    def matrix_transpose(self, x: Any) -> Array:
        return Array(np.swapaxes(self._operand(x), -1, -2), self)

    def moveaxis(self, x: Any, source: Any, destination: Any) -> Array:
        a = self._operand(x)
        nd = a.ndim - 1
        src = [_ax(s, nd) for s in (source if isinstance(source, (tuple, list)) else (source,))]
        dst = [_ax(s, nd) for s in (destination if isinstance(destination, (tuple, list)) else (destination,))]
        return Array(np.moveaxis(a, src, dst), self)

    def expand_dims(self, x: Any, axis: int = 0) -> Array:
        a = self._operand(x)
        nd = a.ndim  # logical ndim of the result
        return Array(np.expand_dims(a, _ax(axis, nd)), self)

    def squeeze(self, x: Any, axis: Any) -> Array:
        a = self._operand(x)
        return Array(np.squeeze(a, axis=_axes(axis, a.ndim - 1)), self)

    def broadcast_to(self, x: Any, shape: Sequence[int]) -> Array:
        a = self._operand(x)
        a = self._lift(a if a.ndim else a[None], len(shape))
        return Array(np.broadcast_to(a, (a.shape[0],) + tuple(shape)), self)

    def broadcast_arrays(self, *arrays: Any) -> list[Array]:
        ops = [self._operand(x) for x in arrays]
        ops = [o if o.ndim else o[None] for o in ops]
        shape = np.broadcast_shapes(*[o.shape[1:] for o in ops])
        return [self.broadcast_to(Array(o, self), shape) for o in ops]

    def concat(self, arrays: Sequence[Any], axis: int | None = 0) -> Array:
        ops = self._rows(*[self._operand(x) for x in arrays])
        if axis is None:
            return Array(np.concatenate([o.reshape(o.shape[0], -1) for o in ops], axis=1), self)
        return Array(np.concatenate(ops, axis=_ax(axis, ops[0].ndim - 1)), self)

    def stack(self, arrays: Sequence[Any], axis: int = 0) -> Array:
        ops = self._rows(*[self._operand(x) for x in arrays])
        return Array(np.stack(ops, axis=_ax(axis, ops[0].ndim)), self)

    def unstack(self, x: Any, axis: int = 0) -> tuple[Array, ...]:
        a = self._operand(x)
        ax = _ax(axis, a.ndim - 1)
        return tuple(Array(np.take(a, i, axis=ax), self) for i in range(a.shape[ax]))

    def flip(self, x: Any, axis: Any = None) -> Array:
        a = self._operand(x)
        return Array(np.flip(a, axis=_axes(axis, a.ndim - 1)), self)

    def roll(self, x: Any, shift: Any, axis: Any = None) -> Array:
        a = self._operand(x)
        if axis is None:
            return Array(np.roll(a.reshape(a.shape[0], -1), shift, axis=1).reshape(a.shape), self)
        return Array(np.roll(a, shift, axis=_axes(axis, a.ndim - 1)), self)

    def tile(self, x: Any, repetitions: Sequence[int]) -> Array:
        a = self._operand(x)
        reps = tuple(repetitions)
        a = self._lift(a, len(reps))
        reps = (1,) * (a.ndim - 1 - len(reps)) + reps
        return Array(np.tile(a, (1,) + reps), self)

    def repeat(self, x: Any, repeats: Any, axis: int | None = None) -> Array:
        a = self._operand(x)
        repeats = _one(repeats.a) if isinstance(repeats, Array) else repeats
        if axis is None:
            return Array(np.repeat(a.reshape(a.shape[0], -1), repeats, axis=1), self)
        return Array(np.repeat(a, repeats, axis=_ax(axis, a.ndim - 1)), self)

    def tril(self, x: Any, k: int = 0) -> Array:
        return Array(np.tril(self._operand(x), k), self)

    def triu(self, x: Any, k: int = 0) -> Array:
        return Array(np.triu(self._operand(x), k), self)

    def take(self, x: Any, indices: Any, axis: int | None = None) -> Array:
        a = self._operand(x)
        idx = _one(indices.a) if isinstance(indices, Array) else np.asarray(indices)
        if axis is None:
            return Array(np.take(a.reshape(a.shape[0], -1), idx, axis=1), self)
        return Array(np.take(a, idx, axis=_ax(axis, a.ndim - 1)), self)

    def take_along_axis(self, x: Any, indices: Any, axis: int = -1) -> Array:
        a = self._operand(x)
        i = self._operand(indices)
        a, i = self._rows(a, i)
        return Array(np.take_along_axis(a, i, axis=_ax(axis, a.ndim - 1)), self)

    def _along(self, name: str, x: Any, axis: Any, **kwargs: Any) -> Array:
        a = self._operand(x)
        fn = getattr(self._np, name)
        nd = a.ndim - 1
        if axis is None:
            if name in ("argmax", "argmin"):
                out = fn(a.reshape(a.shape[0], -1), axis=1, **kwargs)
                return Array(np.asarray(out), self)
            return Array(np.asarray(fn(a, axis=_axes(None, nd), **kwargs)), self)
        if isinstance(axis, (tuple, list)):
            return Array(np.asarray(fn(a, axis=_axes(axis, nd), **kwargs)), self)
        return Array(np.asarray(fn(a, axis=_ax(axis, nd), **kwargs)), self)

    def max(self, x: Any, axis: Any = None, keepdims: bool = False) -> Array:
        return self._along("max", x, axis, keepdims=keepdims)

    def min(self, x: Any, axis: Any = None, keepdims: bool = False) -> Array:
        return self._along("min", x, axis, keepdims=keepdims)

    def all(self, x: Any, axis: Any = None, keepdims: bool = False) -> Array:
        return self._along("all", x, axis, keepdims=keepdims)

    def any(self, x: Any, axis: Any = None, keepdims: bool = False) -> Array:
        return self._along("any", x, axis, keepdims=keepdims)

    def argmax(self, x: Any, axis: int | None = None, keepdims: bool = False) -> Array:
        return self._along("argmax", x, axis, keepdims=keepdims)

    def argmin(self, x: Any, axis: int | None = None, keepdims: bool = False) -> Array:
        return self._along("argmin", x, axis, keepdims=keepdims)

    def argsort(self, x: Any, axis: int = -1, descending: bool = False, stable: bool = True) -> Array:
        return self._along("argsort", x, axis, descending=descending, stable=stable)

    def sort(self, x: Any, axis: int = -1, descending: bool = False, stable: bool = True) -> Array:
        return self._along("sort", x, axis, descending=descending, stable=stable)

    def nonzero(self, x: Any) -> tuple[Array, ...]:
        return tuple(Array(i[None], self) for i in np.nonzero(_one(self._operand(x))))

    def searchsorted(self, x1: Any, x2: Any, *, side: str = "left", sorter: Any = None) -> Array:
        a, v = _one(self._operand(x1)), _one(self._operand(x2))
        s = None if sorter is None else _one(self._operand(sorter))
        return Array(np.searchsorted(a, v, side=side, sorter=s)[None], self)

    def meshgrid(self, *arrays: Any, indexing: str = "xy") -> list[Array]:
        return [Array(g[None], self) for g in np.meshgrid(*[_one(self._operand(a)) for a in arrays], indexing=indexing)]

    def copy(self, x: Any) -> Array:
        return Array(self._operand(x).copy(), self)

    # --------------------------------------------------------------- dtypes and creation
    def astype(self, x: Any, dtype: Any, copy: bool = True, device: Any = None) -> Array:
        return Array(self._astype(self._operand(x), np.dtype(dtype)), self)

    def _astype(self, a: np.ndarray, dtype: np.dtype) -> np.ndarray:
        if dtype.kind == "f" and dtype != _F32:
            raise EmulationError(f"astype to {dtype} in an emulated float32 computation")
        if dtype.kind == "c" and dtype != _C64:
            raise EmulationError(f"astype to {dtype} in an emulated float32 computation")
        if dtype.kind in "fc" and a.dtype.kind not in "fcb":
            return self._round(a.astype(_CLD if dtype.kind == "c" else _LD)).astype(dtype)
        if dtype.kind == "f" and a.dtype.kind == "c":
            raise EmulationError("astype from complex64 to float32 drops the imaginary part; use real()")
        return a.astype(dtype)

    def asarray(self, obj: Any, dtype: Any = None, copy: Any = None, device: Any = None) -> Array:
        if isinstance(obj, Array):
            a = obj.a
        else:
            v = np.asarray(unwrap(obj))
            if dtype is None and v.dtype.kind in "fc" and v.dtype not in (_F32, _C64):
                # NumPy (and array-api-strict) would make a float64 array here and promote the computation
                raise EmulationError(f"a result comes out as {v.dtype} from float32 inputs (asarray of "
                                     f"{v.dtype} data without a dtype)")
            a = v[None]
        if dtype is not None:
            a = self._astype(a, np.dtype(dtype))
        _checked(a)
        return Array(a.copy() if copy else a, self)

    def _creation(self, name: str) -> Callable[..., Array]:
        fn = getattr(self._np, name)

        def call(*args: Any, dtype: Any = None, device: Any = None, **kwargs: Any) -> Array:
            args = list(args)
            if name.endswith("_like"):
                like = args[0]
                if dtype is None:
                    dtype = like.dtype
                args[0] = np.empty(like.shape, dtype=like.dtype)  # only its shape is read
            args = [(_one(a.a) if isinstance(a, Array) else a) for a in args]
            if name in ("full", "full_like"):
                fill = args[1] if len(args) > 1 else kwargs.pop("fill_value")
                fill = _one(fill.a) if isinstance(fill, Array) else fill
                args = args[:1]
                if dtype is None and isinstance(fill, (float, np.floating)):
                    dtype = _F32
                if dtype is None and isinstance(fill, (complex, np.complexfloating)):
                    dtype = _C64
                d = np.dtype(dtype) if dtype is not None else None
                value = np.float32(fill) if d == _F32 else (np.complex64(fill) if d == _C64 else fill)
                out = fn(*args, value, dtype=d, **kwargs)
            elif name == "arange":
                out = np.asarray(fn(*args, dtype=dtype, **kwargs))
                if out.dtype.kind == "f" and out.dtype != _F32:
                    out = out.astype(_F32)  # float steps: float32 numbers, as NumPy's float32 arange
            else:
                if dtype is None and name in ("zeros", "ones", "empty", "eye", "linspace"):
                    dtype = _F32
                out = fn(*args, dtype=dtype, **kwargs)
            return Array(_checked(np.asarray(out))[None], self)

        call.__name__ = name
        return call

    def isdtype(self, dtype: Any, kind: Any) -> bool:
        return self._np.isdtype(dtype, kind)

    def result_type(self, *args: Any) -> np.dtype:
        vals = [a.a if isinstance(a, Array) else a for a in args]
        vals = [np.float32 if isinstance(v, float) else (np.complex64 if isinstance(v, complex) else v) for v in vals]
        return np.result_type(*vals)

    def finfo(self, x: Any) -> Any:
        return np.finfo(x.dtype if isinstance(x, Array) else x)

    def iinfo(self, x: Any) -> Any:
        return np.iinfo(x.dtype if isinstance(x, Array) else x)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        fn = self._function(name)
        self.__dict__[name] = fn  # found once per namespace
        return fn

    def _function(self, name: str) -> Callable[..., Any]:
        fn = _UNARY_ROUNDED.get(name)
        if fn is not None:
            def unary(x: Any) -> Array:
                return self._rounded1(fn, x)

            unary.__name__ = name
            return unary
        fn = _UNARY_EXACT.get(name)
        if fn is not None:
            def exact(x: Any) -> Array:
                a = self._operand(x)
                return Array(np.asarray(fn(a if a.ndim else a.reshape(1))), self)

            exact.__name__ = name
            return exact
        fn2 = _BINARY_EXACT.get(name)
        if fn2 is not None:
            return lambda x, y: self._exact2(fn2, x, y)
        if name in ("zeros", "ones", "empty", "full", "eye", "arange", "zeros_like", "ones_like", "empty_like",
                    "full_like", "linspace"):
            return self._creation(name)
        raise EmulationError(f"the emulated float32 namespace has no {name!r}; add it to refmem.emulated32")
