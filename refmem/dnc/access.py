"""SPEC §5: the DNC memory access step (interface, steps 1-10).

Skeleton: the contract the core unroll codes against. The step itself follows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

from .. import xp as rx
from . import conventions as C

__all__ = ["AccessConfig", "AccessState", "interface_size", "initial_state",
           "access_step_forward", "access_step_backward"]


@dataclass(frozen=True)
class AccessConfig:
    """Sizes and convention of one memory access module.

    ``N`` memory slots, ``W`` word size, ``R`` read heads, ``nw`` write heads,
    ``convention`` ``"deepmind"`` (default) or ``"paper"`` (SPEC §5 conventions table).
    """

    N: int
    W: int
    R: int
    nw: int
    convention: str = "deepmind"

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        for name in ("N", "W", "R", "nw"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"AccessConfig.{name}: expected an int >= 1, got {v!r}")
        C.get(self.convention)

    @property
    def interface_size(self) -> int:
        return interface_size(self)


def interface_size(cfg: AccessConfig) -> int:
    """Width ``I`` of the interface vector: ``3 nw W + R + 3 nw + R (1 + 2nw) + nw + R W + R``."""
    N, W, R, nw = cfg.N, cfg.W, cfg.R, cfg.nw
    return nw * W + nw * W + R + nw + nw + R * (1 + 2 * nw) + nw * W + nw + R * W + R


class AccessState(NamedTuple):
    """The access state at ``t-1`` (SPEC §5).

    ``memory [B, N, W]``, ``read_weights [B, R, N]``, ``write_weights [B, nw, N]``,
    ``link [B, nw, N, N]``, ``precedence [B, nw, N]``, ``usage [B, N]``.
    """

    memory: Any
    read_weights: Any
    write_weights: Any
    link: Any
    precedence: Any
    usage: Any


def initial_state(xp: Any, B: int, cfg: AccessConfig, dtype: Any = None) -> AccessState:
    """The all-zero initial state of SPEC §5 (``dtype`` defaults to ``xp.float64``)."""
    dtype = xp.float64 if dtype is None else dtype
    N, W, R, nw = cfg.N, cfg.W, cfg.R, cfg.nw
    return AccessState(
        memory=xp.zeros((B, N, W), dtype=dtype),
        read_weights=xp.zeros((B, R, N), dtype=dtype),
        write_weights=xp.zeros((B, nw, N), dtype=dtype),
        link=xp.zeros((B, nw, N, N), dtype=dtype),
        precedence=xp.zeros((B, nw, N), dtype=dtype),
        usage=xp.zeros((B, N), dtype=dtype),
    )


def access_step_forward(controller_output: Any, W_xi: Any, b_xi: Any, state: AccessState, cfg: AccessConfig,
                        frozen_write_weights: Any = None) -> tuple[Any, AccessState, Any]:
    """One access step; returns ``(read_vectors [B, R, W], new_state, cache)``."""
    raise NotImplementedError("access_step_forward: in progress")


def access_step_backward(d_read_vectors: Any, d_new_state: AccessState, cache: Any) -> tuple[Any, Any, Any, AccessState]:
    """Returns ``(d_controller_output, d_W_xi, d_b_xi, d_state)``."""
    raise NotImplementedError("access_step_backward: in progress")
