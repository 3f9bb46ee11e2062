"""The array-namespace switch: which array library a computation runs on.

Model code never imports numpy or cupy. It takes the namespace of its inputs
(:func:`namespace`, array-api-compat under the hood) and uses only the array API
standard plus the helpers of :mod:`refmem.primitives`. Code that creates arrays
from nothing (samplers, initialisers) takes a namespace explicitly;
:func:`backend` maps a backend name to one::

    from refmem import xp as rx
    xp = rx.backend("numpy")            # or "array_api_strict", "torch", "cupy"
    x = xp.asarray([[0.5, -1.0]], dtype=xp.float64)
    rx.to_numpy(x)

This module is the backend switch only: :func:`backend`, :func:`backend_name`,
:func:`namespace`, and the host transfers :func:`to_numpy` / :func:`from_numpy`.
For compatibility with code written against refmem 0.1, the names that used to
live here are still reachable as attributes (``rx.Sampler``, ``rx.ShapeError``,
``rx.check_array``, ``rx.sigmoid``, ...); they are the very objects of
:mod:`refmem.sampling`, :mod:`refmem.errors`, :mod:`refmem.validation` and
:mod:`refmem.primitives`.
"""

from __future__ import annotations

import importlib
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

#: Backend names accepted by :func:`backend` and ``refmem check --backend``.
BACKENDS = ("numpy", "array_api_strict", "torch", "cupy")


class BackendError(RuntimeError):
    """A backend that is unknown, not installed, or has no device to run on."""


def backend(name: str) -> Any:
    """Return the array namespace for a backend name.

    ``numpy``, ``torch`` and ``cupy`` are returned wrapped by array-api-compat so
    that they follow the standard; ``array_api_strict`` is returned as it is.
    Raises :class:`BackendError` with a one-line reason for an unknown backend, a
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
    """The backend name (one of :data:`BACKENDS`) of a namespace."""
    name = getattr(xp, "__name__", str(xp))
    for candidate in ("array_api_strict", "torch", "cupy", "numpy"):
        if candidate in name:
            return candidate
    return name


def namespace(*arrays: Any) -> Any:
    """The array namespace shared by ``arrays`` (``None`` entries are ignored).

    Plain NumPy arrays take a fast path to ``array_api_compat.numpy`` (what
    ``array_namespace`` answers for them): model code asks for the namespace in
    every function, and the general lookup costs tens of microseconds a call.
    """
    present = [a for a in arrays if a is not None]
    if present and all(type(a) is np.ndarray for a in present):
        return _numpy_namespace()
    return array_api_compat.array_namespace(*present)


def _numpy_namespace() -> Any:
    global _NUMPY_NS
    if _NUMPY_NS is None:
        _NUMPY_NS = importlib.import_module("array_api_compat.numpy")
    return _NUMPY_NS


_NUMPY_NS: Any = None


def to_numpy(x: Any, contiguous: bool = False) -> np.ndarray:
    """Copy an array of any supported backend to a NumPy array on the host.

    With ``contiguous=True`` the result is C-contiguous (a copy only where needed),
    as file writers such as safetensors require (GOLDEN.md, safetensors issue #825).
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


#: Names that lived in this module in refmem 0.1 -> the module that holds them now.
_MOVED = {
    "Sampler": "refmem.sampling",
    "ShapeError": "refmem.errors",
    "check_array": "refmem.validation",
    **{name: "refmem.primitives" for name in (
        "sigmoid", "softplus", "oneplus", "softmax", "exclusive_cumprod", "unsort",
        "is_complex", "real_part")},
}


def __getattr__(name: str) -> Any:
    """Resolve the 0.1 names (see the module docstring) lazily, without import cycles."""
    where = _MOVED.get(name)
    if where is None:
        raise AttributeError(f"module 'refmem.xp' has no attribute {name!r}")
    return getattr(importlib.import_module(where), name)
