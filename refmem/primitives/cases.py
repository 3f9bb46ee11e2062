"""Catalogue cases of SPEC §1 (module `primitives`)."""

from __future__ import annotations

from typing import Any, Callable

from ..catalogue import Case, Forward
from ..sampling import Sampler
from . import ops as P


def _unary(fn: str, forward: Callable, backward: Callable, scale: float, spec: str, **kw: Any) -> Case:
    """A case for an element-wise ``out = f(x)`` with ``x [B, N]`` drawn at ``scale``."""

    def sample(xp, seed, sizes):
        return {"inputs/x": Sampler(xp, seed).normal((sizes["B"], sizes["N"]), scale=scale)}

    def fwd(arrays, frozen=None):
        out, _ = forward(arrays["inputs/x"], **kw)
        return Forward({"out": out.out})

    def bwd(arrays, cot):
        _, cache = forward(arrays["inputs/x"], **kw)
        return {"inputs/x": backward((cot["out"],), cache).x}

    return Case(
        name=f"primitives/{fn}/default",
        spec=spec,
        function=f"refmem.primitives.{fn}_forward",
        sample=sample,
        forward=fwd,
        backward=bwd,
        sizes={"B": 3, "N": 5},
    )


def _cosine_case() -> Case:
    def sample(xp, seed, sizes):
        s = Sampler(xp, seed)
        B, H, N, W = sizes["B"], sizes["H"], sizes["N"], sizes["W"]
        return {"inputs/keys": s.normal((B, H, W)), "inputs/memory": s.normal((B, N, W))}

    def fwd(arrays, frozen=None):
        out, _ = P.cosine_forward(arrays["inputs/keys"], arrays["inputs/memory"])
        return Forward({"similarity": out.similarity})

    def bwd(arrays, cot):
        _, cache = P.cosine_forward(arrays["inputs/keys"], arrays["inputs/memory"])
        g = P.cosine_backward((cot["similarity"],), cache)
        return {"inputs/keys": g.keys, "inputs/memory": g.memory}

    return Case(
        name="primitives/cosine/default",
        spec="SPEC §1 cosine similarity",
        function="refmem.primitives.cosine_forward",
        sample=sample,
        forward=fwd,
        backward=bwd,
        sizes={"B": 2, "H": 3, "N": 5, "W": 4},
        # W = 1: cos(k, m) of scalars is sign(k m) smoothed by eps, flat to ~1e-6, so any
        # finite difference there measures rounding only; words have at least 2 entries.
        min_sizes={"W": 2},
    )


def _cumprod_case() -> Case:
    def sample(xp, seed, sizes):
        # factors in (0.05, 0.95): away from 0 and 1 (the kinks of the DNC allocation).
        return {"inputs/x": Sampler(xp, seed).uniform((sizes["B"], sizes["N"]), 0.05, 0.95)}

    def fwd(arrays, frozen=None):
        out, _ = P.exclusive_cumprod_forward(arrays["inputs/x"], axis=-1)
        return Forward({"out": out.out})

    def bwd(arrays, cot):
        _, cache = P.exclusive_cumprod_forward(arrays["inputs/x"], axis=-1)
        return {"inputs/x": P.exclusive_cumprod_backward((cot["out"],), cache).x}

    return Case(
        name="primitives/exclusive_cumprod/default",
        spec="SPEC §1 exclusive cumulative product",
        function="refmem.primitives.exclusive_cumprod_forward",
        sample=sample,
        forward=fwd,
        backward=bwd,
        sizes={"B": 3, "N": 6},
    )


def _linear_case() -> Case:
    def sample(xp, seed, sizes):
        s = Sampler(xp, seed)
        B, I, O = sizes["B"], sizes["D"], sizes["H"]
        return {"inputs/x": s.normal((B, I)), "params/W": s.normal((I, O), 0.5), "params/b": s.normal((O,), 0.1)}

    def fwd(arrays, frozen=None):
        out, _ = P.linear_forward(arrays["inputs/x"], arrays["params/W"], arrays["params/b"])
        return Forward({"out": out.out})

    def bwd(arrays, cot):
        _, cache = P.linear_forward(arrays["inputs/x"], arrays["params/W"], arrays["params/b"])
        g = P.linear_backward((cot["out"],), cache)
        return {"inputs/x": g.x, "params/W": g.W, "params/b": g.b}

    return Case(
        name="primitives/linear/default",
        spec="SPEC §1 linear map",
        function="refmem.primitives.linear_forward",
        sample=sample,
        forward=fwd,
        backward=bwd,
        sizes={"B": 3, "D": 4, "H": 5},
    )


#: Place of this family in the catalogue listing (see `refmem.catalogue`).
ORDER = 10

CASES: list[Case] = [
    _unary("sigmoid", P.sigmoid_forward, P.sigmoid_backward, 3.0, "SPEC §1 sigmoid"),
    _unary("tanh", P.tanh_forward, P.tanh_backward, 1.5, "SPEC §1 tanh"),
    _unary("softplus", P.softplus_forward, P.softplus_backward, 3.0, "SPEC §1 softplus"),
    _unary("oneplus", P.oneplus_forward, P.oneplus_backward, 3.0, "SPEC §1 oneplus"),
    _unary("softmax", P.softmax_forward, P.softmax_backward, 2.0, "SPEC §1 softmax", axis=-1),
    _cosine_case(),
    _cumprod_case(),
    _linear_case(),
]
