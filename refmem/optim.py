"""Optimisers and gradient clipping, framework-free, through the array namespace.

Every function here works on a *tree* of arrays: an array, or a dict, a
NamedTuple, a tuple or a list of trees (``None`` leaves pass through untouched).
Parameters, gradients and optimiser states are trees of the same structure, so
the same code trains the DNC ([`refmem.dnc.params.DNCParams`][refmem.dnc.params.DNCParams]), the
attention decoders or a plain ``{"W": ..., "b": ...}`` dict.

The optimisers are pure: ``state = opt.init(params)`` and
``params, state = opt.update(params, grads, state)``; nothing is written in place.

Conventions (checked against the sources named below, and tested in
``tests/test_optim.py`` against a hand-written reference):

* [`RMSProp`][refmem.optim.RMSProp] is TensorFlow 1's ``tf.train.RMSPropOptimizer`` as deepmind/dnc's
  ``train.py`` uses it (``learning_rate=1e-4``, ``epsilon=1e-10``, TF defaults
  ``decay=0.9``, ``momentum=0.0``, ``centered=False``):

      ms  <- decay ms + (1 - decay) g²          ms starts at ONES (TF1 slot "rms")
      mom <- momentum mom + lr g / sqrt(ms + epsilon)   epsilon INSIDE the square root
      var <- var - mom

  Two details differ from PyTorch's ``torch.optim.RMSprop`` and Keras 2's RMSprop,
  which start ``ms`` at zeros and put epsilon outside the root: the first steps of TF1
  are much smaller (``ms`` decays from 1 towards ``g²`` over ~20 steps). Both are
  options (``initial_ms``, ``epsilon_inside``).
* [`Adam`][refmem.optim.Adam] is Algorithm 1 of Kingma & Ba (2015) with bias-corrected moments,
  ``var <- var - lr m̂ / (sqrt(v̂) + epsilon)`` (as PyTorch); ``epsilon_hat=True``
  gives TF1's form ``lr_t = lr sqrt(1 - β2^t) / (1 - β1^t)``,
  ``var <- var - lr_t m / (sqrt(v) + epsilon)``.
* [`clip_by_global_norm`][refmem.optim.clip_by_global_norm] is ``tf.clip_by_global_norm``: every tensor is
  multiplied by ``clip_norm / max(global_norm, clip_norm)``.
"""

from __future__ import annotations

import math
from typing import Any, Callable, NamedTuple

from . import xp as rx
from .errors import DomainError

__all__ = [
    "tree_map",
    "tree_leaves",
    "global_norm",
    "clip_by_global_norm",
    "RMSProp",
    "RMSPropState",
    "Adam",
    "AdamState",
    "SGD",
]


# ----------------------------------------------------------------------------- trees


def _is_namedtuple(x: Any) -> bool:
    return isinstance(x, tuple) and hasattr(x, "_fields")


def tree_map(fn: Callable[..., Any], tree: Any, *rest: Any) -> Any:
    """Apply ``fn`` leaf by leaf to ``tree`` and the trees in ``rest`` (same structure).

    Containers: dict (by key), NamedTuple, tuple, list. ``None`` in ``tree`` stays
    ``None``. Anything else is a leaf. Trees of different structure raise ``TypeError``.
    """
    if tree is None:
        return None
    if isinstance(tree, (dict, tuple, list)):
        for r in rest:
            same = (isinstance(r, dict) and set(r) == set(tree)) if isinstance(tree, dict) else \
                (isinstance(r, (tuple, list)) and len(r) == len(tree))
            if not same:
                raise TypeError(f"tree_map: expected trees of one structure, got {type(tree).__name__} of "
                                f"{len(tree)} and {type(r).__name__} of {len(r) if hasattr(r, '__len__') else '?'} "
                                f"(params, grads and optimiser state must match)")
    if isinstance(tree, dict):
        return {k: tree_map(fn, tree[k], *(r[k] for r in rest)) for k in tree}
    if _is_namedtuple(tree):
        return type(tree)(*(tree_map(fn, v, *(r[i] for r in rest)) for i, v in enumerate(tree)))
    if isinstance(tree, (tuple, list)):
        out = [tree_map(fn, v, *(r[i] for r in rest)) for i, v in enumerate(tree)]
        return type(tree)(out)
    return fn(tree, *rest)


def tree_leaves(tree: Any) -> list[Any]:
    """The leaves of ``tree`` in a fixed order (dict keys in insertion order)."""
    out: list[Any] = []

    def visit(t: Any) -> None:
        if t is None:
            return
        if isinstance(t, dict):
            for k in t:
                visit(t[k])
        elif isinstance(t, (tuple, list)):
            for v in t:
                visit(v)
        else:
            out.append(t)

    visit(tree)
    return out


# ----------------------------------------------------------------------------- clipping


def global_norm(tree: Any) -> Any:
    """``sqrt(Σ_leaves Σ g²)`` as a 0-d array of the leaves' namespace."""
    leaves = tree_leaves(tree)
    if not leaves:
        raise ValueError("global_norm: the tree holds no arrays")
    xp = rx.namespace(*leaves)
    total = xp.sum(leaves[0] * leaves[0])
    for g in leaves[1:]:
        total = total + xp.sum(g * g)
    return xp.sqrt(total)


def clip_by_global_norm(grads: Any, clip_norm: float) -> tuple[Any, Any]:
    """Scale every gradient by ``clip_norm / max(global_norm, clip_norm)`` (``tf.clip_by_global_norm``).

    Returns ``(clipped, global_norm)`` with the norm measured before clipping. When
    the norm is at most ``clip_norm`` the gradients come back unchanged (scale 1).
    """
    clip_norm = float(clip_norm)
    if not (math.isfinite(clip_norm) and clip_norm > 0):
        raise DomainError(f"clip_norm: expected a finite number > 0, got {clip_norm!r}")
    norm = global_norm(grads)
    xp = rx.namespace(norm)
    scale = clip_norm / xp.maximum(norm, xp.asarray(clip_norm, dtype=norm.dtype))
    return tree_map(lambda g: g * scale, grads), norm


# ----------------------------------------------------------------------------- optimisers


def _check_hyper(owner: str, **values: Any) -> None:
    """Refuse a learning rate that is not finite and > 0 and a rate/decay outside [0, 1)."""
    for name, v in values.items():
        ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
        if name == "lr":
            ok = ok and v > 0
        elif name in ("decay", "momentum", "beta1", "beta2"):
            ok = ok and 0 <= v < 1
        else:  # epsilon, initial_ms
            ok = ok and v >= 0
        if not ok:
            want = {"lr": "a finite number > 0"}.get(name, "a number in [0, 1)" if name in ("decay", "momentum", "beta1",
                                                                                               "beta2") else "a finite number >= 0")
            raise DomainError(f"{owner} {name}: expected {want}, got {v!r}")


class RMSPropState(NamedTuple):
    """``ms``: running mean of ``g²`` (tree like the params); ``mom``: momentum buffer (tree); ``step``: int."""

    ms: Any
    mom: Any
    step: int


class RMSProp:
    """TF1 ``RMSPropOptimizer`` (deepmind/dnc's optimiser); see the module docstring.

    Args:
        lr: learning rate (deepmind/dnc: ``1e-4``).
        decay: discount of the running mean of ``g²`` (TF default ``0.9``).
        momentum: momentum coefficient (TF default ``0.0``).
        epsilon: added to ``ms`` (deepmind/dnc: ``1e-10``).
        initial_ms: starting value of ``ms`` (TF1: ``1.0``; PyTorch/Keras: ``0.0``).
        epsilon_inside: ``sqrt(ms + eps)`` (TF1, default) or ``sqrt(ms) + eps`` (PyTorch).
    """

    def __init__(self, lr: float = 1e-4, decay: float = 0.9, momentum: float = 0.0, epsilon: float = 1e-10,
                 initial_ms: float = 1.0, epsilon_inside: bool = True):
        _check_hyper("RMSProp", lr=lr, decay=decay, momentum=momentum, epsilon=epsilon, initial_ms=initial_ms)
        self.lr = float(lr)
        self.decay = float(decay)
        self.momentum = float(momentum)
        self.epsilon = float(epsilon)
        self.initial_ms = float(initial_ms)
        self.epsilon_inside = bool(epsilon_inside)

    def init(self, params: Any) -> RMSPropState:
        ms = tree_map(lambda p: rx.namespace(p).full(p.shape, self.initial_ms, dtype=p.dtype), params)
        mom = tree_map(lambda p: rx.namespace(p).zeros_like(p), params)
        return RMSPropState(ms, mom, 0)

    def update(self, params: Any, grads: Any, state: RMSPropState) -> tuple[Any, RMSPropState]:
        """One step; returns the new params and state (inputs are not modified)."""
        d, m, lr, eps = self.decay, self.momentum, self.lr, self.epsilon

        def new_ms(g, ms):
            return d * ms + (1.0 - d) * (g * g)

        ms = tree_map(new_ms, grads, state.ms)

        def new_mom(g, s, mo):
            xp = rx.namespace(g)
            denom = xp.sqrt(s + eps) if self.epsilon_inside else xp.sqrt(s) + eps
            return m * mo + lr * g / denom

        mom = tree_map(new_mom, grads, ms, state.mom)
        new_params = tree_map(lambda p, mo: p - mo, params, mom)
        return new_params, RMSPropState(ms, mom, state.step + 1)


class AdamState(NamedTuple):
    """``m``, ``v``: first and second moment trees; ``step``: int (steps taken)."""

    m: Any
    v: Any
    step: int


class Adam:
    """Adam (Kingma & Ba 2015, Algorithm 1); ``epsilon_hat=True`` for TF1's ``AdamOptimizer`` form."""

    def __init__(self, lr: float = 1e-3, beta1: float = 0.9, beta2: float = 0.999, epsilon: float = 1e-8,
                 epsilon_hat: bool = False):
        _check_hyper("Adam", lr=lr, beta1=beta1, beta2=beta2, epsilon=epsilon)
        self.lr = float(lr)
        self.beta1 = float(beta1)
        self.beta2 = float(beta2)
        self.epsilon = float(epsilon)
        self.epsilon_hat = bool(epsilon_hat)

    def init(self, params: Any) -> AdamState:
        zeros = tree_map(lambda p: rx.namespace(p).zeros_like(p), params)
        return AdamState(zeros, tree_map(lambda p: rx.namespace(p).zeros_like(p), params), 0)

    def update(self, params: Any, grads: Any, state: AdamState) -> tuple[Any, AdamState]:
        t = state.step + 1
        b1, b2, eps = self.beta1, self.beta2, self.epsilon
        m = tree_map(lambda g, m0: b1 * m0 + (1.0 - b1) * g, grads, state.m)
        v = tree_map(lambda g, v0: b2 * v0 + (1.0 - b2) * (g * g), grads, state.v)
        c1 = 1.0 - b1**t
        c2 = 1.0 - b2**t
        if self.epsilon_hat:
            lr_t = self.lr * math.sqrt(c2) / c1
            new_params = tree_map(lambda p, mm, vv: p - lr_t * mm / (rx.namespace(vv).sqrt(vv) + eps), params, m, v)
        else:
            new_params = tree_map(
                lambda p, mm, vv: p - self.lr * (mm / c1) / (rx.namespace(vv).sqrt(vv / c2) + eps), params, m, v)
        return new_params, AdamState(m, v, t)


class SGD:
    """Plain gradient descent ``var <- var - lr g``; state is the step count."""

    def __init__(self, lr: float = 1e-2):
        _check_hyper("SGD", lr=lr)
        self.lr = float(lr)

    def init(self, params: Any) -> int:
        return 0

    def update(self, params: Any, grads: Any, state: int) -> tuple[Any, int]:
        return tree_map(lambda p, g: p - self.lr * g, params, grads), state + 1
