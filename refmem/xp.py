"""The array-namespace switch: which array library a computation runs on.

Model code never imports numpy or cupy. It takes the namespace of its inputs
([`namespace`][refmem.xp.namespace], array-api-compat under the hood) and uses only the array API
standard plus the helpers of [`refmem.primitives`][refmem.primitives]. Code that creates arrays
from nothing (samplers, initialisers) takes a namespace explicitly;
[`backend`][refmem.xp.backend] maps a backend name to one:

    from refmem import xp as rx
    xp = rx.backend("numpy")            # or "array_api_strict", "torch", "cupy"
    x = xp.asarray([[0.5, -1.0]], dtype=xp.float64)
    rx.to_numpy(x)

This module is the backend switch only: [`backend`][refmem.xp.backend],
[`backend_name`][refmem.xp.backend_name],
[`namespace`][refmem.xp.namespace], and the host transfers [`to_numpy`][refmem.xp.to_numpy] /
[`from_numpy`][refmem.xp.from_numpy].
For compatibility with code written against refmem 0.1, the names that used to
live here are still reachable as attributes (``rx.Sampler``, ``rx.ShapeError``,
``rx.sigmoid``, ...); they are the very objects of
[`refmem.sampling`][refmem.sampling], ``refmem.errors`` and
[`refmem.primitives`][refmem.primitives] (``rx.check_array`` went with the 0.1 validation
mechanism: declare arguments with the annotations of ``refmem.validation``).
"""

from __future__ import annotations

import importlib
import types
from typing import Any

import array_api_compat
import numpy as np

__all__ = [
    "BACKENDS",
    "BackendError",
    "backend",
    "backend_name",
    "namespace",
    "to_numpy",
    "from_numpy",
]

BACKENDS = ("numpy", "array_api_strict", "torch", "cupy")
"""Backend names accepted by [`backend`][refmem.xp.backend] and ``refmem check --backend``."""


class BackendError(RuntimeError):
    """A backend that is unknown, not installed, or has no device to run on."""


def backend(name: str) -> Any:
    """Return the array namespace for a backend name.

    ``numpy``, ``torch`` and ``cupy`` are returned wrapped by array-api-compat so
    that they follow the standard; ``array_api_strict`` is returned as it is.
    Raises [`BackendError`][refmem.xp.BackendError] with a one-line reason for an unknown backend, a
    backend that is not installed, or ``cupy`` without a usable GPU.
    """
    if name not in BACKENDS:
        raise BackendError(f"unknown backend {name!r}; expected one of {', '.join(BACKENDS)}")
    if name == "array_api_strict":
        try:
            mod = importlib.import_module("array_api_strict")
        except ImportError as exc:
            raise BackendError(
                "backend 'array_api_strict' is not installed (pip install array-api-strict)"
            ) from exc
        return mod
    try:
        importlib.import_module(name)
    except ImportError as exc:
        extra = {"torch": "refmem[torch]", "cupy": "refmem[gpu]"}.get(name, name)
        raise BackendError(f"backend {name!r} is not installed (pip install '{extra}')") from exc
    if name == "cupy":
        cupy = importlib.import_module("cupy")
        try:
            count = cupy.cuda.runtime.getDeviceCount()
        except Exception as exc:  # no driver, no runtime
            raise BackendError(f"backend 'cupy' has no usable GPU: {exc}") from exc
        if count < 1:
            raise BackendError("backend 'cupy' has no usable GPU: no CUDA device found")
    return importlib.import_module(f"array_api_compat.{name}")


def backend_name(xp: Any) -> str:
    """The backend name (one of [`BACKENDS`][refmem.xp.BACKENDS]) of a namespace."""
    name = getattr(xp, "__name__", str(xp))
    for candidate in ("array_api_strict", "torch", "cupy", "numpy"):
        if candidate in name:
            return candidate
    return name


def namespace(*arrays: Any) -> Any:
    """The array namespace shared by ``arrays`` (``None`` entries are ignored).

    Arrays of two libraries raise ``refmem.errors.NamespaceError`` (a ``TypeError``), a value
    that is no array ``refmem.errors.DTypeError`` (also a ``TypeError``).

    Plain NumPy arrays take a fast path to ``array_api_compat.numpy`` (what
    ``array_namespace`` answers for them): model code asks for the namespace in
    every function, and the general lookup costs tens of microseconds a call.
    The fast path is one loop in this frame (no generator, no helper call), since
    a DNC step asks about a hundred times.
    """
    seen = False
    for a in arrays:
        if a is None:
            continue
        if type(a) is not _NDARRAY:
            break
        seen = True
    else:
        if seen:
            return _NUMPY_NS if _NUMPY_NS is not None else _numpy_namespace()
    present = [a for a in arrays if a is not None]
    try:
        return array_api_compat.array_namespace(*present)
    except TypeError:
        raise _namespace_error(present) from None


def _namespace_error(present: list) -> Exception:
    """The error of `namespace` for arrays it cannot serve together: a `DTypeError` for a value
    that is no array, else a `NamespaceError` naming the libraries that were mixed."""
    from .errors import DTypeError, NamespaceError

    for i, a in enumerate(present):
        try:
            array_api_compat.array_namespace(a)
        except TypeError:
            return DTypeError(f"argument {i}: expected an array, got {type(a).__module__}.{type(a).__name__}")
    kinds = ", ".join(dict.fromkeys(f"{type(a).__module__}.{type(a).__name__}" for a in present))
    return NamespaceError(f"expected arrays of one array library, got {kinds}")


def _numpy_namespace() -> Any:
    global _NUMPY_NS
    if _NUMPY_NS is None:
        _NUMPY_NS = _fast_numpy(importlib.import_module("array_api_compat.numpy"))
    return _NUMPY_NS


def _fast_numpy(compat: Any) -> Any:
    """``array_api_compat.numpy`` with its hottest functions called one layer closer to C.

    Same functions, same answers: each replacement below is what the compat function
    (or the NumPy function it is an alias of) ends up calling for an ``ndarray``
    argument (``np.sum`` is ``np.add.reduce`` after NumPy's Python wrappers, the compat
    ``permute_dims`` is ``ndarray.transpose``, ...), with anything else (other
    arguments, scalars, a ``device``) handed to the original. At the DNC copy config
    these wrappers were about half of the 30,000 Python calls of a forward+backward.
    The namespace keeps the compat module's name, so [`backend_name`][refmem.xp.backend_name] answers
    ``numpy``.
    """
    ns = types.ModuleType(compat.__name__, compat.__doc__)
    ns.__dict__.update({k: v for k, v in vars(compat).items() if not k.startswith("__")})
    nd = np.ndarray
    add_reduce, mul_reduce, max_reduce = np.add.reduce, np.multiply.reduce, np.maximum.reduce
    concatenate, zeros_, np_dtype = np.concatenate, np.zeros, np.dtype
    c_sum, c_prod, c_max = compat.sum, compat.prod, compat.max
    c_permute, c_reshape, c_stack, c_zeros, c_zeros_like = (compat.permute_dims, compat.reshape, compat.stack,
                                                            compat.zeros, compat.zeros_like)
    c_flip, c_cumprod, c_isdtype = compat.flip, compat.cumulative_prod, compat.isdtype

    def sum(x, /, *, axis=None, dtype=None, keepdims=False):
        if type(x) is nd:
            return add_reduce(x, axis, dtype, None, keepdims=keepdims)
        return c_sum(x, axis=axis, dtype=dtype, keepdims=keepdims)

    def prod(x, /, *, axis=None, dtype=None, keepdims=False):
        if type(x) is nd:
            return mul_reduce(x, axis, dtype, None, keepdims=keepdims)
        return c_prod(x, axis=axis, dtype=dtype, keepdims=keepdims)

    def max(x, /, *, axis=None, keepdims=False):
        if type(x) is nd:
            return max_reduce(x, axis, None, None, keepdims=keepdims)
        return c_max(x, axis=axis, keepdims=keepdims)

    def permute_dims(x, /, axes):
        if type(x) is nd:
            return x.transpose(axes)
        return c_permute(x, axes)

    def reshape(x, /, shape, *, copy=None):
        if copy is None and type(x) is nd:
            return x.reshape(shape)
        return c_reshape(x, shape, copy=copy)

    def stack(arrays, /, *, axis=0):
        if type(arrays) in (list, tuple) and arrays:
            ndim = arrays[0].ndim
            if -ndim - 1 <= axis <= ndim:
                ax = axis if axis >= 0 else axis + ndim + 1
                index = (slice(None),) * ax + (None,)
                return concatenate([a[index] for a in arrays], axis=ax)
        return c_stack(arrays, axis=axis)

    def zeros(shape, *, dtype=None, device=None):
        if device is None:
            return zeros_(shape, dtype=dtype)
        return c_zeros(shape, dtype=dtype, device=device)

    np_zeros_like, ones_, full_ = np.zeros_like, np.ones, np.full
    c_ones, c_full, c_argsort = compat.ones, compat.full, compat.argsort

    def zeros_like(x, /, *, dtype=None, device=None):
        if device is None and type(x) is nd:
            if x.flags.c_contiguous:
                return zeros_(x.shape, dtype=x.dtype if dtype is None else dtype)
            return np_zeros_like(x, dtype=dtype)
        return c_zeros_like(x, dtype=dtype, device=device)

    def ones(shape, *, dtype=None, device=None):
        if device is None:
            return ones_(shape, dtype=dtype)
        return c_ones(shape, dtype=dtype, device=device)

    def full(shape, fill_value, *, dtype=None, device=None):
        if device is None:
            return full_(shape, fill_value, dtype=dtype)
        return c_full(shape, fill_value, dtype=dtype, device=device)

    def argsort(x, /, *, axis=-1, descending=False, stable=True):
        if type(x) is nd and not descending:
            return x.argsort(axis=axis, kind="stable" if stable else None)
        return c_argsort(x, axis=axis, descending=descending, stable=stable)

    def flip(x, /, *, axis=None):
        if type(x) is nd and type(axis) is int and -x.ndim <= axis < x.ndim:
            ax = axis if axis >= 0 else axis + x.ndim
            return x[(slice(None),) * ax + (slice(None, None, -1),)]
        return c_flip(x, axis=axis)

    def cumulative_prod(x, /, *, axis=None, dtype=None, include_initial=False):
        if type(x) is nd and axis is not None and not include_initial:
            return x.cumprod(axis=axis, dtype=dtype)
        return c_cumprod(x, axis=axis, dtype=dtype, include_initial=include_initial)

    def isdtype(dtype, kind):
        if type(dtype) is not type or not issubclass(dtype, np.generic):
            if isinstance(dtype, np_dtype):
                if kind == "complex floating":
                    return dtype.kind == "c"
                if kind == "real floating":
                    return dtype.kind == "f"
        return c_isdtype(dtype, kind)

    c_take = compat.take_along_axis
    arange = np.arange

    def take_along_axis(x, indices, /, *, axis=-1):
        # np.take_along_axis's fancy index (one arange per other axis), without its dtype checks' calls
        ndim = x.ndim
        if (type(x) is nd and type(indices) is nd and indices.ndim == ndim and indices.dtype.kind in "iu"
                and -ndim <= axis < ndim):
            ax = axis % ndim
            index = []
            for d in range(ndim):
                if d == ax:
                    index.append(indices)
                else:
                    shape = [1] * ndim
                    shape[d] = x.shape[d]
                    index.append(arange(x.shape[d]).reshape(shape))
            return x[tuple(index)]
        return c_take(x, indices, axis=axis)

    for f in (sum, prod, max, permute_dims, reshape, stack, zeros, zeros_like, ones, full, argsort, flip,
              cumulative_prod, isdtype, take_along_axis):
        f.__qualname__ = f.__name__
        f.__doc__ = getattr(compat, f.__name__).__doc__
        setattr(ns, f.__name__, f)
    return ns


_NDARRAY = np.ndarray
_NUMPY_NS: Any = None


def to_numpy(x: Any, contiguous: bool = False) -> np.ndarray:
    """Copy an array of any supported backend to a NumPy array on the host.

    With ``contiguous=True`` the result is C-contiguous (a copy only where needed),
    as file writers such as safetensors require (docs/golden-format.md, safetensors issue #825).
    """
    if contiguous:
        return np.ascontiguousarray(to_numpy(x))
    if isinstance(x, np.ndarray):
        return x
    mod = type(x).__module__
    if mod.startswith("cupy"):
        return x.get()
    if mod.startswith("torch"):
        return x.detach().cpu().numpy()
    if mod.startswith("array_api_strict"):
        return np.asarray(x)  # array-api-strict arrays implement __array__ on the CPU device
    return np.asarray(x)


def from_numpy(xp: Any, a: np.ndarray) -> Any:
    """Move a NumPy array into namespace ``xp`` keeping its dtype."""
    a = np.ascontiguousarray(a)
    return xp.asarray(a)


_MOVED = {
    "Sampler": "refmem.sampling",
    "ShapeError": "refmem.errors",
    **{name: "refmem.primitives" for name in (
        "sigmoid", "softplus", "oneplus", "softmax", "exclusive_cumprod", "unsort",
        "is_complex", "real_part")},
}
"""Names that lived in this module in refmem 0.1 -> the module that holds them now."""


def __getattr__(name: str) -> Any:
    """Resolve the 0.1 names (see the module docstring) lazily, without import cycles."""
    where = _MOVED.get(name)
    if where is None:
        raise AttributeError(f"module 'refmem.xp' has no attribute {name!r}")
    return getattr(importlib.import_module(where), name)
