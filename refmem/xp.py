"""The array-namespace switch and the few helpers the array API standard lacks.

Model code never imports numpy or cupy. It calls :func:`namespace` on its inputs
(array-api-compat under the hood) and uses only the array API standard plus the
helpers below. Code that creates arrays from nothing (samplers, initialisers)
takes a namespace explicitly; :func:`backend` maps a backend name to one::

    from refmem import xp as rx
    xp = rx.backend("numpy")            # or "array_api_strict", "torch", "cupy"
    x = xp.asarray([[0.5, -1.0]], dtype=xp.float64)
    rx.sigmoid(x)

The helpers work on real and complex arrays alike (the complex-step check of
SPEC §6 runs the very same model code on complex128), so every branch decision
is taken on the real part and every formula is analytic in between.
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
    "sigmoid",
    "softplus",
    "oneplus",
    "softmax",
    "softmax_backward",
    "exclusive_cumprod",
    "exclusive_cumprod_backward",
    "unsort",
    "is_complex",
    "real_part",
    "Sampler",
    "ShapeError",
    "check_array",
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


def is_complex(x: Any) -> bool:
    """Whether ``x`` has a complex floating dtype."""
    xp = namespace(x)
    return xp.isdtype(x.dtype, "complex floating")


def real_part(x: Any) -> Any:
    """The real part of ``x`` (``x`` itself when real); used for branch decisions."""
    xp = namespace(x)
    return xp.real(x) if is_complex(x) else x


# --------------------------------------------------------------------------- activations


def sigmoid(x: Any) -> Any:
    """Logistic sigmoid without overflow: ``0.5 * (1 + tanh(x / 2))`` (SPEC §1)."""
    xp = namespace(x)
    return 0.5 * (1.0 + xp.tanh(0.5 * x))


def softplus(x: Any) -> Any:
    """``log(1 + exp(x))`` without overflow (SPEC §1).

    Written as ``max(x, 0) + log1p(exp(-|x|))`` with the branch taken on the real
    part, which equals ``logaddexp(0, x)`` for real input and stays analytic for
    the complex step.
    """
    xp = namespace(x)
    pos = real_part(x) > 0
    safe_neg = xp.where(pos, -x, x)  # always has a non-positive real part
    return xp.where(pos, x, xp.zeros_like(x)) + xp.log1p(xp.exp(safe_neg))


def oneplus(x: Any) -> Any:
    """``1 + softplus(x)`` (SPEC §1), the DNC paper's strength activation."""
    return 1.0 + softplus(x)


def softmax(x: Any, axis: int = -1) -> Any:
    """Softmax along ``axis`` with the (real) maximum subtracted first (SPEC §1)."""
    xp = namespace(x)
    shift = xp.max(real_part(x), axis=axis, keepdims=True)
    ex = xp.exp(x - shift)
    return ex / xp.sum(ex, axis=axis, keepdims=True)


def softmax_backward(d_out: Any, out: Any, axis: int = -1) -> Any:
    """Vector-Jacobian product of :func:`softmax`: ``out ∘ (d_out - Σ d_out ∘ out)``."""
    xp = namespace(d_out, out)
    return out * (d_out - xp.sum(d_out * out, axis=axis, keepdims=True))


# --------------------------------------------------------------------------- products and sorting


def _moveaxis_last(x: Any, axis: int) -> Any:
    xp = namespace(x)
    axis = axis % x.ndim
    if axis == x.ndim - 1:
        return x
    order = [i for i in range(x.ndim) if i != axis] + [axis]
    return xp.permute_dims(x, tuple(order))


def _moveaxis_back(x: Any, axis: int) -> Any:
    xp = namespace(x)
    axis = axis % x.ndim
    if axis == x.ndim - 1:
        return x
    order = list(range(x.ndim - 1))
    order.insert(axis, x.ndim - 1)
    return xp.permute_dims(x, tuple(order))


def exclusive_cumprod(x: Any, axis: int = -1) -> Any:
    """Exclusive cumulative product: ``out[..., j] = Π_{i<j} x[..., i]``, ``out[..., 0] = 1``."""
    xp = namespace(x)
    y = _moveaxis_last(x, axis)
    n = y.shape[-1]
    ones = xp.ones(y.shape[:-1] + (1,), dtype=y.dtype)
    if n == 1:
        out = ones
    else:
        out = xp.concat([ones, xp.cumulative_prod(y[..., :-1], axis=-1)], axis=-1)
    return _moveaxis_back(out, axis)


def exclusive_cumprod_backward(d_out: Any, x: Any, axis: int = -1) -> Any:
    """VJP of :func:`exclusive_cumprod`, computed without dividing by any factor.

    With ``y_j = Π_{k<j} x_k``, ``∂L/∂x_i = Σ_{j>i} g_j Π_{k<j, k≠i} x_k
    = y_i · S_i`` with ``S_i = Σ_{j>i} g_j Π_{i<k<j} x_k``. ``S`` follows the
    reverse recurrence ``S_{n-1} = 0``, ``S_i = g_{i+1} + x_{i+1} S_{i+1}``
    (Horner's scheme), ``O(n)`` work and memory along the axis, so a factor
    equal to 0 gives the exact gradient instead of NaN.
    """
    xp = namespace(d_out, x)
    g = _moveaxis_last(d_out, axis)
    v = _moveaxis_last(x, axis)
    n = v.shape[-1]
    acc = xp.zeros_like(g[..., 0] * v[..., 0])
    s = [acc]
    for i in range(n - 2, -1, -1):
        acc = g[..., i + 1] + v[..., i + 1] * acc
        s.append(acc)
    grad = exclusive_cumprod(v, axis=-1) * xp.stack(s[::-1], axis=-1)
    return _moveaxis_back(grad, axis)


def unsort(sorted_values: Any, perm: Any, axis: int = -1) -> Any:
    """Undo a sort: given ``s = take_along_axis(x, perm)``, return ``x``.

    ``perm`` is the integer permutation returned by ``argsort`` along ``axis``.
    """
    xp = namespace(sorted_values)
    inverse = xp.argsort(perm, axis=axis, stable=True)
    return xp.take_along_axis(sorted_values, inverse, axis=axis)


# --------------------------------------------------------------------------- random inputs


class Sampler:
    """Seeded source of float32-representable float64 arrays in a given namespace.

    Samplers and initialisers draw with NumPy's ``Generator`` (PCG64) so that a
    seed gives the same numbers on every backend; each draw is rounded to
    float32 and stored as float64 (GOLDEN.md), then moved into ``xp``.
    """

    def __init__(self, xp: Any, seed: int | tuple[int, ...]):
        self.xp = xp
        # an int, or a sequence of ints (NumPy's SeedSequence entropy, e.g. ``(seed, 1)`` for a second stream)
        self.seed = tuple(int(k) for k in seed) if isinstance(seed, (list, tuple)) else int(seed)
        self.rng = np.random.default_rng(self.seed)

    @classmethod
    def from_generator(cls, xp: Any, generator: Any) -> "Sampler":
        """A sampler into ``xp`` that continues the stream of an existing NumPy ``Generator``.

        Lets an API that accepts a caller's ``numpy.random.Generator`` draw through
        :class:`Sampler`; every draw advances ``generator`` itself.
        """
        if not isinstance(generator, np.random.Generator):
            raise TypeError(f"Sampler.from_generator: expected a numpy.random.Generator, got "
                            f"{type(generator).__name__}")
        self = cls.__new__(cls)
        self.xp = xp
        self.seed = None
        self.rng = generator
        return self

    def with_namespace(self, xp: Any) -> "Sampler":
        """A sampler into ``xp`` that shares this sampler's stream (draws advance both)."""
        other = Sampler.from_generator(xp, self.rng)
        other.seed = self.seed
        return other

    def _out(self, a: np.ndarray) -> Any:
        a = np.asarray(a, dtype=np.float64).astype(np.float32).astype(np.float64)
        return from_numpy(self.xp, a)

    def normal(self, shape: tuple[int, ...], scale: float = 1.0, loc: float = 0.0) -> Any:
        """Normal draws of the given shape."""
        return self._out(self.rng.normal(loc, scale, size=shape))

    def uniform(self, shape: tuple[int, ...], low: float = -1.0, high: float = 1.0) -> Any:
        """Uniform draws in ``[low, high)``."""
        return self._out(self.rng.uniform(low, high, size=shape))

    def simplex(self, shape: tuple[int, ...], total: float = 1.0, axis: int = -1) -> Any:
        """Non-negative rows along ``axis`` that sum to ``total`` (Dirichlet draws)."""
        shape = tuple(shape)
        n = shape[axis]
        moved = tuple(s for i, s in enumerate(shape) if i != axis % len(shape)) + (n,)
        a = self.rng.dirichlet(np.ones(n), size=moved[:-1]) * total
        a = np.moveaxis(a.reshape(moved), -1, axis % len(shape))
        return self._out(a)

    def separated(self, shape: tuple[int, ...], low: float, high: float, gap: float) -> Any:
        """Values in ``[low, high]`` whose pairwise gaps along the last axis are ≥ ``gap``.

        Each row is a random permutation of an evenly spaced grid jittered by less
        than a quarter of the spacing; raises ``ValueError`` when the row is too
        long for the requested gap.
        """
        shape = tuple(shape)
        n = shape[-1]
        spacing = (high - low) / max(n, 1)
        if spacing < 2 * gap:
            raise ValueError(
                f"separated: {n} values in [{low}, {high}] cannot keep gaps of {gap}"
            )
        rows = int(np.prod(shape[:-1], dtype=np.int64))
        base = low + spacing * (np.arange(n) + 0.5)
        out = np.empty((rows, n))
        for r in range(rows):
            jitter = self.rng.uniform(-0.25 * spacing, 0.25 * spacing, size=n)
            out[r] = self.rng.permutation(base + jitter)
        return self._out(out.reshape(shape))

    def integers(self, shape: tuple[int, ...], low: int, high: int) -> Any:
        """Integer draws in ``[low, high)`` as int64."""
        return from_numpy(self.xp, self.rng.integers(low, high, size=shape).astype(np.int64))

    def truncated_normal(self, shape: tuple[int, ...], scale: float = 1.0, bound: float = 2.0,
                         float32: bool = True) -> Any:
        """Normal draws of standard deviation ``scale``, truncated at ``±bound`` standard deviations.

        TensorFlow's ``truncated_normal_initializer``: standard normal draws of the whole
        shape, then every draw outside ``[-bound, bound]`` is re-drawn (in C order, one
        batch of re-draws per round) until none is left; the result is multiplied by
        ``scale``. With ``float32=False`` the float64 draws are kept as they are (not
        rounded to float32-representable values).
        """
        out = self.rng.normal(0.0, 1.0, size=shape)
        bad = np.abs(out) > bound
        while np.any(bad):
            out[bad] = self.rng.normal(0.0, 1.0, size=int(bad.sum()))
            bad = np.abs(out) > bound
        out = out * scale
        if float32:
            return self._out(out)
        return from_numpy(self.xp, np.asarray(out, dtype=np.float64))


class ShapeError(ValueError):
    """An argument with the wrong shape or dtype; the message names it, the expected and the given."""


def check_array(name: str, x: Any, shape: tuple | None = None, symbols: str | None = None) -> None:
    """Refuse ``x`` unless it is a floating array of ``shape``.

    ``shape`` holds ints, or ``None`` for a free dimension; ``symbols`` spells it
    in SPEC's letters, e.g. ``"(D, H)"``. Raises :class:`ShapeError` such as
    ``W_m: expected shape (D, H) = (4, 5), got (8, 5)``.
    """
    if type(x) is np.ndarray:  # fast path, same verdicts: NumPy's floating kinds are "f" and "c"
        if x.dtype.kind not in "fc":
            raise ShapeError(f"{name}: expected a floating dtype, got {x.dtype}")
        if shape is None:
            return
        given = x.shape
    else:
        if not hasattr(x, "shape") or not hasattr(x, "dtype"):
            raise ShapeError(f"{name}: expected an array, got {type(x).__name__}")
        xp = namespace(x)
        if not (xp.isdtype(x.dtype, "real floating") or xp.isdtype(x.dtype, "complex floating")):
            raise ShapeError(f"{name}: expected a floating dtype, got {x.dtype}")
        if shape is None:
            return
        given = tuple(int(s) for s in x.shape)
    ok = len(given) == len(shape) and all(e is None or e == g for e, g in zip(shape, given))
    if not ok:
        shown = "(" + ", ".join("?" if e is None else str(e) for e in shape) + ("," if len(shape) == 1 else "") + ")"
        label = f"{symbols} = {shown}" if symbols else shown
        raise ShapeError(f"{name}: expected shape {label}, got {given}")
