"""A deterministic, machine-independent float32: an array namespace that rounds after every operation.

The golden float32 tolerances measure how much float32 arithmetic loses on each tensor. A plain
float32 run of refmem does not give a machine-independent answer: its ``matmul`` goes to the
machine's BLAS (OpenBLAS picks other kernels, with other summation orders, on other CPUs; a
re-export moved float32 tolerances by 0.4x to 5.4x) and NumPy's float32 ``exp``/``tanh``/``log``
have SIMD variants chosen at run time. This module runs the very same model code on arrays of
class :class:`Array` (float32 values) whose namespace, :class:`Namespace`, computes every
operation from its float32 operands in long double and rounds the result to float32 once:

* ``+ - * /``, ``sqrt`` and the elementwise functions (``exp``, ``log``, ``log1p``, ``tanh``, ...):
  the long double result rounded to float32, i.e. a correctly rounded float32 operation, the
  same bits on every machine (NumPy's long double loops call the C library, never SIMD or BLAS).
* reductions (``sum``, ``prod``, ``mean``, ``cumulative_prod``, ``cumulative_sum``) and
  products (``@``/``matmul``, ``vecdot``, ``tensordot``): a *sequential* float32 accumulation,
  ``acc ← round(acc + a_k b_k)`` for ``k = 0, 1, ...``, as a fused-multiply-add BLAS kernel
  does along ``K``; sequential summation is the least accurate usual order (error growing
  like ``K ε``, where pairwise and blocked orders grow like ``log K`` or ``√K``), so the
  measured loss is not smaller than what a real kernel loses.
* indexing, reshaping, ``where``, ``max``, ``min``, ``sort``, comparisons and the like are exact.
* a Python scalar operand is first converted to float32, as NumPy and PyTorch do for a
  float32 array.

``rounding="stochastic"`` replaces round-to-nearest by stochastic rounding (up or down with
probability proportional to the distance; Monte Carlo arithmetic). The "random" number of an
element is a hash of the seed and of the exact value being rounded, so equal values always
round alike (a real float32 computation maps equal inputs to equal outputs, and a tie such as
a sort of equal usages must stay a tie), while different values get independent-looking
errors. Each seed is another plausible set of rounding errors, a stand-in for a float32
implementation that orders its operations differently; results are bit-identical on every
machine.

Model code needs no change: it takes the namespace of its inputs (``__array_namespace__``).
A model function that created a float64 array in a float32 computation raises
:class:`EmulationError`.
"""

from __future__ import annotations

import math
import operator
from typing import Any, Callable, Sequence

import numpy as np


__all__ = ["Array", "Namespace", "EmulationError", "wrap", "unwrap", "RUNS", "float32_runs", "kappa"]

_LD = np.longdouble
_F32 = np.dtype(np.float32)


def _mix(z: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser on uint64 arrays (wrapping arithmetic): a fast, well-mixed hash."""
    with np.errstate(over="ignore"):  # wrapping is the point (0-d arrays would warn)
        z = np.asarray(z, dtype=np.uint64) + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


class EmulationError(RuntimeError):
    """An operation the emulated float32 namespace does not provide, or a non-float32 float
    (the golden export re-raises it as a :class:`refmem.golden.GoldenError`)."""


def unwrap(x: Any) -> Any:
    """The NumPy array inside an :class:`Array` (other values unchanged, tuples and lists recursively)."""
    if isinstance(x, Array):
        return x.a
    if isinstance(x, (tuple, list)):
        return type(x)(unwrap(v) for v in x)
    return x


def wrap(ns: "Namespace", a: Any) -> "Array":
    """An :class:`Array` of namespace ``ns`` holding ``a`` (a float array must be float32)."""
    a = np.asarray(a)
    if a.dtype.kind == "f" and a.dtype != _F32:
        raise EmulationError(f"an emulated float32 computation produced a {a.dtype} array")
    if a.dtype.kind == "c":
        raise EmulationError("an emulated float32 computation produced a complex array")
    return Array(a, ns)


class Array:
    """An emulated float32 array (or a bool/integer array of the same computation)."""

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
        return self.a.shape

    @property
    def ndim(self) -> int:
        return self.a.ndim

    @property
    def size(self) -> int:
        return self.a.size

    @property
    def dtype(self) -> np.dtype:
        return self.a.dtype

    @property
    def device(self) -> str:
        return "cpu"

    @property
    def T(self) -> "Array":  # noqa: N802
        return Array(self.a.T, self.ns)

    @property
    def mT(self) -> "Array":  # noqa: N802
        return Array(np.swapaxes(self.a, -1, -2), self.ns)

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        return self.a if dtype is None else self.a.astype(dtype)

    def __len__(self) -> int:
        return len(self.a)

    def __repr__(self) -> str:
        return f"Emulated32({self.a!r})"

    def __float__(self) -> float:
        return float(self.a)

    def __int__(self) -> int:
        return int(self.a)

    def __index__(self) -> int:
        return operator.index(self.a)

    def __bool__(self) -> bool:
        return bool(self.a)

    def __getitem__(self, key: Any) -> "Array":
        return Array(self.a[unwrap(key)], self.ns)

    def __setitem__(self, key: Any, value: Any) -> None:
        v = self.ns._operand(value, like=self.a)
        self.a = self.a.copy()
        self.a[unwrap(key)] = v

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
        return Array(np.abs(self.a), self.ns)

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
        return Array(self.a & self.ns._operand(o, self.a), self.ns)

    __rand__ = __and__

    def __or__(self, o: Any) -> "Array":
        return Array(self.a | self.ns._operand(o, self.a), self.ns)

    __ror__ = __or__

    def __invert__(self) -> "Array":
        return Array(~self.a, self.ns)

    __hash__ = None  # type: ignore[assignment]


#: Elementwise functions computed in long double and rounded once.
_UNARY_ROUNDED = ("exp", "expm1", "log", "log1p", "log2", "log10", "tanh", "sinh", "cosh", "sin", "cos", "tan",
                  "arctan", "sqrt", "square", "reciprocal")
#: Elementwise functions exact on float32 values.
_UNARY_EXACT = ("abs", "negative", "positive", "sign", "floor", "ceil", "trunc", "round", "isfinite", "isnan",
                "isinf", "logical_not", "signbit")
_BINARY_EXACT = {"maximum": np.maximum, "minimum": np.minimum, "less": np.less, "less_equal": np.less_equal,
                 "greater": np.greater, "greater_equal": np.greater_equal, "equal": np.equal,
                 "not_equal": np.not_equal, "logical_and": np.logical_and, "logical_or": np.logical_or,
                 "logical_xor": np.logical_xor, "copysign": np.copysign}
_ARRAY_API_NAMES = {"arctan": "atan", "power": "pow"}


class Namespace:
    """The array namespace of :class:`Array`: float32 with one rounding per operation.

    Args:
        rounding: ``"nearest"`` (round to nearest, ties to even) or ``"stochastic"``.
        seed: the seed of the stochastic rounding draws (ignored for ``"nearest"``).
    """

    float32 = np.dtype(np.float32)
    float64 = np.dtype(np.float64)
    complex64 = np.dtype(np.complex64)
    complex128 = np.dtype(np.complex128)
    bool = np.dtype(np.bool_)
    int8, int16, int32, int64 = (np.dtype(t) for t in (np.int8, np.int16, np.int32, np.int64))
    uint8, uint16, uint32, uint64 = (np.dtype(t) for t in (np.uint8, np.uint16, np.uint32, np.uint64))
    e, pi, inf, nan = math.e, math.pi, math.inf, math.nan
    newaxis = None
    __name__ = "refmem.emulated32"

    def __init__(self, rounding: str = "nearest", seed: int = 0):
        if rounding not in ("nearest", "stochastic"):
            raise ValueError(f"rounding: expected 'nearest' or 'stochastic', got {rounding!r}")
        self.rounding = rounding
        self.seed = int(seed)
        self._salt = _mix(np.asarray([self.seed], dtype=np.uint64) ^ np.uint64(0x5F3759DF5F32))[0]
        self.ops = 0  # rounded operations performed (for tests and cost reports)
        import array_api_compat.numpy as _np_ns

        self._np = _np_ns
        self.linalg = _Linalg(self)

    def __repr__(self) -> str:
        return f"Namespace(rounding={self.rounding!r}, seed={self.seed})"

    # --------------------------------------------------------------- core: operands and rounding
    def asarray(self, obj: Any, dtype: Any = None, copy: Any = None, device: Any = None) -> Array:
        if isinstance(obj, Array):
            a = obj.a
        else:
            a = np.asarray(unwrap(obj))
        if dtype is not None:
            a = self._astype(a, np.dtype(dtype))
        elif a.dtype.kind == "f" and a.dtype != _F32:
            # NumPy (and array-api-strict) would make a float64 array here and promote the computation
            raise EmulationError(f"a result comes out as {a.dtype} from float32 inputs (asarray of {a.dtype} "
                                 "data without a dtype)")
        return wrap(self, a.copy() if copy else a)

    def _operand(self, x: Any, like: np.ndarray | None = None) -> np.ndarray:
        """A NumPy operand: an Array's values, or a Python scalar converted to float32 (to the array's dtype)."""
        if isinstance(x, Array):
            return x.a
        if isinstance(x, np.ndarray):
            if x.dtype.kind == "f" and x.dtype != _F32:
                raise EmulationError(f"a {x.dtype} NumPy array entered an emulated float32 computation")
            return x
        if isinstance(x, (bool, np.bool_)):
            return np.asarray(x)
        if isinstance(x, (int, float, np.integer, np.floating)):
            if like is not None and like.dtype.kind in "iub" and isinstance(x, (int, np.integer)):
                return np.asarray(x, dtype=like.dtype)
            return np.asarray(np.float32(x))
        raise EmulationError(f"unsupported operand of type {type(x).__name__} in an emulated float32 computation")

    def _round(self, y: np.ndarray) -> np.ndarray:
        """Long double values ``y`` rounded to float32 (nearest, or stochastically)."""
        self.ops += 1
        r = np.asarray(y.astype(_F32))
        if self.rounding == "nearest":
            return r
        exact = r.astype(_LD) == y
        up = r.astype(_LD) > y  # r is above y: the other candidate is below
        other = np.where(up, np.nextafter(r, np.float32(-np.inf)), np.nextafter(r, np.float32(np.inf)))
        lo = np.where(up, other, r).astype(_LD)
        hi = np.where(up, r, other).astype(_LD)
        with np.errstate(invalid="ignore", divide="ignore"):
            p_hi = (y - lo) / (hi - lo)  # probability of rounding up
        pick = np.where(self._uniform(y) < p_hi, hi, lo).astype(_F32)
        out = np.where(exact | ~np.isfinite(y), r, pick)
        return np.asarray(out, dtype=_F32)

    def _uniform(self, y: np.ndarray) -> np.ndarray:
        """A number in [0, 1) per element that is a hash of the seed and the element's exact value.

        Equal values get equal numbers, so they round alike, as in any real float32
        implementation: a tie (a sort of equal usages) stays a tie. The value is split into
        its nearest float64 and the (exact) float64 residual, whose bits are hashed.
        """
        y = np.asarray(y, dtype=_LD)
        hi = y.astype(np.float64)
        lo = np.where(np.isfinite(y), (y - hi.astype(_LD)), 0).astype(np.float64) + 0.0  # no negative zero
        h = _mix(_mix(lo.view(np.uint64) ^ self._salt) ^ (hi + 0.0).view(np.uint64))
        return (h >> np.uint64(11)).astype(np.float64) * 2.0**-53

    def _float_result(self, y: np.ndarray) -> np.ndarray:
        return self._round(y) if y.dtype.kind == "f" else y

    def _ld(self, a: np.ndarray) -> np.ndarray:
        return a.astype(_LD) if a.dtype.kind in "fiub" else a

    def _binary_rounded(self, fn: Callable, x: Any, y: Any) -> Array:
        a, b = self._operand(x), self._operand(y)
        if a.dtype.kind != "f" and b.dtype.kind != "f":
            return wrap(self, fn(a, b))
        return wrap(self, self._round(np.asarray(fn(self._ld(a), self._ld(b)))))

    # --------------------------------------------------------------- elementwise
    def add(self, x: Any, y: Any) -> Array:
        return self._binary_rounded(np.add, x, y)

    def subtract(self, x: Any, y: Any) -> Array:
        return self._binary_rounded(np.subtract, x, y)

    def multiply(self, x: Any, y: Any) -> Array:
        return self._binary_rounded(np.multiply, x, y)

    def divide(self, x: Any, y: Any) -> Array:
        return self._binary_rounded(np.divide, x, y)

    def pow(self, x: Any, y: Any) -> Array:
        return self._binary_rounded(np.power, x, y)

    power = pow

    def atan2(self, x: Any, y: Any) -> Array:
        return self._binary_rounded(np.arctan2, x, y)

    def logaddexp(self, x: Any, y: Any) -> Array:
        return self._binary_rounded(np.logaddexp, x, y)

    def where(self, cond: Any, x: Any, y: Any) -> Array:
        c = self._operand(cond)
        a, b = self._operand(x), self._operand(y)
        return wrap(self, np.where(c, a, b).astype(np.result_type(a, b), copy=False))

    def clip(self, x: Any, min: Any = None, max: Any = None) -> Array:  # noqa: A002
        a = self._operand(x)
        lo = None if min is None else self._operand(min, a)
        hi = None if max is None else self._operand(max, a)
        return wrap(self, np.clip(a, lo, hi).astype(a.dtype, copy=False))

    def real(self, x: Any) -> Array:
        return wrap(self, self._operand(x))

    def imag(self, x: Any) -> Array:
        return wrap(self, np.zeros_like(self._operand(x)))

    def conj(self, x: Any) -> Array:
        return wrap(self, self._operand(x))

    # --------------------------------------------------------------- reductions (sequential, one rounding per step)
    def _move_reduced_last(self, a: np.ndarray, axis: Any) -> tuple[np.ndarray, tuple[int, ...]]:
        """``a`` with the reduced axes flattened into the last one, and the kept shape (keepdims form)."""
        nd = a.ndim
        axes = tuple(range(nd)) if axis is None else tuple(sorted(ax % nd for ax in
                                                                  (axis if isinstance(axis, tuple) else (axis,))))
        kept = [i for i in range(nd) if i not in axes]
        moved = np.transpose(a, kept + list(axes))
        flat = moved.reshape(tuple(a.shape[i] for i in kept) + (-1,))
        keep_shape = tuple(1 if i in axes else a.shape[i] for i in range(nd))
        return flat, keep_shape

    def _fold(self, flat: np.ndarray, step: Callable[[np.ndarray, np.ndarray], np.ndarray], empty: float) -> np.ndarray:
        n = flat.shape[-1]
        if n == 0:
            return np.full(flat.shape[:-1], empty, dtype=_F32)
        acc = flat[..., 0].astype(_F32)
        for k in range(1, n):
            acc = self._round(step(acc.astype(_LD), flat[..., k].astype(_LD)))
        return acc

    def _reduce(self, x: Any, axis: Any, keepdims: bool, step: Callable, empty: float) -> Array:
        a = self._operand(x)
        if a.dtype.kind != "f":
            a = a.astype(_F32)
        flat, keep_shape = self._move_reduced_last(a, axis)
        out = self._fold(flat, step, empty)
        return wrap(self, np.asarray(out).reshape(keep_shape) if keepdims else np.asarray(out))

    def sum(self, x: Any, axis: Any = None, keepdims: bool = False, dtype: Any = None) -> Array:
        return self._reduce(x, axis, keepdims, np.add, 0.0)

    def prod(self, x: Any, axis: Any = None, keepdims: bool = False, dtype: Any = None) -> Array:
        return self._reduce(x, axis, keepdims, np.multiply, 1.0)

    def mean(self, x: Any, axis: Any = None, keepdims: bool = False) -> Array:
        a = self._operand(x)
        s = self.sum(x, axis=axis, keepdims=keepdims)
        n = a.size // max(s.a.size, 1) if a.size else 0
        return self.divide(s, float(n))

    def _cumulative(self, x: Any, axis: Any, include_initial: bool, step: Callable, initial: float) -> Array:
        a = self._operand(x)
        if axis is None:
            if a.ndim != 1:
                raise EmulationError("cumulative_*: axis is required for arrays of more than one dimension")
            axis = 0
        b = np.moveaxis(a, axis, -1)
        outs = []
        if b.shape[-1]:
            acc = b[..., 0].astype(_F32)
            outs.append(acc)
            for k in range(1, b.shape[-1]):
                acc = self._round(step(acc.astype(_LD), b[..., k].astype(_LD)))
                outs.append(acc)
        if include_initial:
            outs.insert(0, np.full(b.shape[:-1], initial, dtype=_F32))
        out = np.stack(outs, axis=-1) if outs else np.zeros(b.shape[:-1] + (0,), dtype=_F32)
        return wrap(self, np.moveaxis(out, -1, axis))

    def cumulative_prod(self, x: Any, axis: Any = None, dtype: Any = None, include_initial: bool = False) -> Array:
        return self._cumulative(x, axis, include_initial, np.multiply, 1.0)

    def cumulative_sum(self, x: Any, axis: Any = None, dtype: Any = None, include_initial: bool = False) -> Array:
        return self._cumulative(x, axis, include_initial, np.add, 0.0)

    def matmul(self, x: Any, y: Any) -> Array:
        """``x @ y`` as a sequential fused multiply-add along the contracted axis."""
        a, b = self._operand(x), self._operand(y)
        va, vb = a.ndim == 1, b.ndim == 1
        A = a[None, :] if va else a
        Bm = b[:, None] if vb else b
        K = A.shape[-1]
        if Bm.shape[-2] != K:
            raise ValueError(f"matmul: shapes {a.shape} and {b.shape} do not align")
        out_shape = np.broadcast_shapes(A.shape[:-2], Bm.shape[:-2]) + (A.shape[-2], Bm.shape[-1])
        if K == 0:
            acc = np.zeros(out_shape, dtype=_F32)
        else:
            acc = np.broadcast_to(self._round(A[..., :, 0, None].astype(_LD) * Bm[..., 0, None, :].astype(_LD)),
                                  out_shape)
            for k in range(1, K):
                acc = self._round(acc.astype(_LD) + A[..., :, k, None].astype(_LD) * Bm[..., k, None, :].astype(_LD))
        acc = np.asarray(acc)
        if va:
            acc = acc[..., 0, :]
        if vb:
            acc = acc[..., 0]
        return wrap(self, np.ascontiguousarray(acc))

    def vecdot(self, x: Any, y: Any, axis: int = -1) -> Array:
        a, b = self._operand(x), self._operand(y)
        a, b = np.broadcast_arrays(a, b)
        a, b = np.moveaxis(a, axis, -1), np.moveaxis(b, axis, -1)
        K = a.shape[-1]
        acc = np.zeros(a.shape[:-1], dtype=_F32)
        for k in range(K):
            acc = self._round(acc.astype(_LD) + a[..., k].astype(_LD) * b[..., k].astype(_LD))
        return wrap(self, acc)

    def tensordot(self, x: Any, y: Any, axes: Any = 2) -> Array:
        a, b = self._operand(x), self._operand(y)
        if isinstance(axes, int):
            ax_a, ax_b = list(range(a.ndim - axes, a.ndim)), list(range(axes))
        else:
            ax_a, ax_b = [i % a.ndim for i in axes[0]], [i % b.ndim for i in axes[1]]
        free_a = [i for i in range(a.ndim) if i not in ax_a]
        free_b = [i for i in range(b.ndim) if i not in ax_b]
        m = int(np.prod([a.shape[i] for i in free_a], dtype=np.int64))
        n = int(np.prod([b.shape[i] for i in free_b], dtype=np.int64))
        A2 = np.transpose(a, free_a + ax_a).reshape(m, -1)
        B2 = np.transpose(b, ax_b + free_b).reshape(-1, n)
        out = self.matmul(Array(A2, self), Array(B2, self)).a
        return wrap(self, out.reshape(tuple(a.shape[i] for i in free_a) + tuple(b.shape[i] for i in free_b)))

    # --------------------------------------------------------------- exact array manipulation
    def _exact(self, name: str) -> Callable[..., Array]:
        fn = getattr(self._np, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            out = fn(*unwrap(list(args)), **{k: unwrap(v) for k, v in kwargs.items()})
            if isinstance(out, tuple):
                return tuple(wrap(self, o) for o in out)
            if isinstance(out, list):
                return [wrap(self, o) for o in out]
            return wrap(self, out)

        call.__name__ = name
        return call

    def astype(self, x: Any, dtype: Any, copy: bool = True, device: Any = None) -> Array:
        return wrap(self, self._astype(self._operand(x), np.dtype(dtype)))

    def _astype(self, a: np.ndarray, dtype: np.dtype) -> np.ndarray:
        if dtype.kind == "f" and dtype != _F32:
            raise EmulationError(f"astype to {dtype} in an emulated float32 computation")
        if dtype.kind == "c":
            raise EmulationError("complex dtypes are not emulated")
        if dtype == _F32 and a.dtype.kind != "f":
            return self._round(a.astype(_LD))
        return a.astype(dtype)

    def _creation(self, name: str) -> Callable[..., Array]:
        fn = getattr(self._np, name)

        def call(*args: Any, dtype: Any = None, device: Any = None, **kwargs: Any) -> Array:
            args = unwrap(list(args))
            like = args[0] if name.endswith("_like") else None
            if dtype is None and like is not None:
                dtype = like.dtype
            if name == "full" or name == "full_like":
                idx = 1
                fill = args[idx] if len(args) > idx else kwargs.pop("fill_value")
                args = args[:idx]
                if dtype is None:
                    dtype = _F32 if isinstance(fill, float) else None
                d = np.dtype(dtype) if dtype is not None else None
                value = np.float32(fill) if d is None or d == _F32 else fill
                out = fn(*args, value, dtype=d, **kwargs)
            elif name == "arange":
                out = fn(*args, dtype=dtype, **kwargs)
                if out.dtype.kind == "f":
                    out = self._astype(np.asarray(out), _F32) if out.dtype != _F32 else out
            else:
                if dtype is None and name in ("zeros", "ones", "empty", "eye"):
                    dtype = _F32
                out = fn(*args, dtype=dtype, **kwargs)
            return wrap(self, out)

        call.__name__ = name
        return call

    def isdtype(self, dtype: Any, kind: Any) -> bool:
        return self._np.isdtype(dtype, kind)

    def result_type(self, *args: Any) -> np.dtype:
        vals = [a.a if isinstance(a, Array) else a for a in args]
        return np.result_type(*[v if not isinstance(v, float) else np.float32 for v in vals])

    def finfo(self, x: Any) -> Any:
        return np.finfo(x.dtype if isinstance(x, Array) else x)

    def iinfo(self, x: Any) -> Any:
        return np.iinfo(x.dtype if isinstance(x, Array) else x)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        if name in _UNARY_ROUNDED or name in {v: k for k, v in _ARRAY_API_NAMES.items()}:
            np_name = {v: k for k, v in _ARRAY_API_NAMES.items()}.get(name, name)
            fn = getattr(np, np_name)

            def unary(x: Any) -> Array:
                a = self._operand(x)
                return wrap(self, self._round(np.asarray(fn(self._ld(a)))))

            unary.__name__ = name
            return unary
        if name in _UNARY_EXACT:
            fn = getattr(np, name)
            return lambda x: wrap(self, np.asarray(fn(self._operand(x))))
        if name in _BINARY_EXACT:
            fn2 = _BINARY_EXACT[name]
            return lambda x, y: wrap(self, np.asarray(fn2(self._operand(x), self._operand(y, unwrap(x) if isinstance(x, Array) else None))))
        if name in ("zeros", "ones", "empty", "full", "eye", "arange", "zeros_like", "ones_like", "empty_like",
                    "full_like", "linspace"):
            return self._creation(name)
        if name in ("reshape", "permute_dims", "matrix_transpose", "concat", "stack", "broadcast_to",
                    "broadcast_arrays", "expand_dims", "squeeze", "flip", "roll", "take", "take_along_axis",
                    "max", "min", "argmax", "argmin", "argsort", "sort", "all", "any", "nonzero", "tile",
                    "repeat", "tril", "triu", "meshgrid", "unstack", "moveaxis", "searchsorted", "copy"):
            return self._exact(name)
        raise EmulationError(f"the emulated float32 namespace has no {name!r}; add it to refmem.emulated32")


class _Linalg:
    """``xp.linalg`` of the emulated namespace: ``matmul``, ``vecdot``, ``tensordot``, ``vector_norm``."""

    def __init__(self, ns: Namespace):
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


# ----------------------------------------------------------------------------- golden float32 tolerances
#
# The golden export (refmem.golden.exporter) measures each tensor's float32 loss with
# :func:`float32_runs`: the case in emulated float32 once with round-to-nearest and three times
# with stochastic rounding (seeds 1, 2, 3), from the stored float32-representable inputs and
# cotangents. refmem.golden.tolerances.tolerance turns the largest deviation of those runs into
# ``[rtol, atol]`` (docs/golden-tolerances.md). The measurement is the same on every machine.

#: The emulated float32 runs each tolerance is measured from: (rounding, seed).
RUNS: tuple[tuple[str, int], ...] = (("nearest", 0), ("stochastic", 1), ("stochastic", 2), ("stochastic", 3))
_EPS32 = float(np.finfo(np.float32).eps)


def float32_runs(case: Any, tensors: Any, runs: Sequence[tuple[str, int]] = RUNS) -> dict[str, list[np.ndarray]]:
    """The case's forward (outputs and intermediates) and backward in emulated float32, once per run.

    Args:
        case: a :class:`refmem.catalogue.Case`.
        tensors: role-prefixed golden tensors; the ``inputs/``, ``params/``, ``state/`` and
            ``cotangents/`` are read (float64, float32-representable: cast without loss).
        runs: ``(rounding, seed)`` pairs, default :data:`RUNS`.

    Returns ``{"outputs/..." | "intermediates/..." | "grads/...": [float32 array per run]}``.
    Raises :class:`EmulationError` when a result is not float32.
    """
    from .catalogue import ROLES

    result: dict[str, list[np.ndarray]] = {}
    for rounding, seed in runs:
        ns = Namespace(rounding, seed)

        def given(v: np.ndarray) -> Array:
            return wrap(ns, v.astype(np.float32) if v.dtype.kind == "f" else v)

        arrays = {k: given(v) for k, v in tensors.items() if k.split("/")[0] in ROLES}
        cot = {k[len("cotangents/"):]: given(v) for k, v in tensors.items() if k.startswith("cotangents/")}
        try:
            fwd = case.forward(arrays)
            got = {f"outputs/{k}": v for k, v in fwd.outputs.items()}
            got.update({f"intermediates/{k}": v for k, v in (getattr(fwd, "intermediates", None) or {}).items()})
            got.update({f"grads/{k}": v for k, v in case.backward(arrays, cot).items()})
        except EmulationError as exc:
            raise EmulationError(f"{case.name}: {exc}; model code must create arrays with the dtype of its "
                                 "inputs") from exc
        for k, v in got.items():
            a = np.asarray(v.a if isinstance(v, Array) else v)
            if a.dtype != np.float32:
                raise EmulationError(f"{case.name}: {k} comes out as {a.dtype} from float32 inputs; model code "
                                     "must create arrays with the dtype of its inputs")
            result.setdefault(k, []).append(np.ascontiguousarray(a))
    return result


def kappa(ref: np.ndarray, f32: Any) -> float:
    """``max(e / (ε₃₂ s), 1)``: the float32 units of the tensor's scale ``s = max |ref|`` lost by the
    worst of ``f32`` (one array or a sequence of runs); the κ of ``refmem.golden.tolerances``, for
    measurements."""
    ref = np.asarray(ref, dtype=np.float64)
    runs = [f32] if isinstance(f32, np.ndarray) or not isinstance(f32, (list, tuple)) else list(f32)
    err = 0.0
    for run in runs:
        run = np.asarray(run, dtype=np.float64)
        if run.shape != ref.shape:
            raise ValueError(f"f32: expected shape {ref.shape}, got {run.shape}")
        if ref.size:
            err = max(err, float(np.max(np.abs(run - ref))))
    scale = float(np.max(np.abs(ref))) if ref.size else 0.0
    scale = scale if scale > 0.0 else 1.0
    return max(err / (_EPS32 * scale), 1.0)
