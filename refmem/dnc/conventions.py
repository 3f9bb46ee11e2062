"""The two DNC conventions of SPEC §5, as named presets.

============================  ===================================  ===================================
                              ``deepmind`` (default)               ``paper``
============================  ===================================  ===================================
strength activation           ``softplus``                         ``oneplus``
read-mode layout per head     ``[backward×nw, forward×nw, content]``  ``[backward×nw, content, forward×nw]``
usage gradient w.r.t.         stopped (deepmind's ``stop_gradient``)  exact
``ww_{t-1}``
============================  ===================================  ===================================

Every function of :mod:`refmem.dnc.addressing` and :mod:`refmem.dnc.access` that
depends on a convention takes ``convention=`` as a name (``"deepmind"``,
``"paper"``) or a :class:`Convention`; :func:`get` resolves either.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .. import primitives as P
from .. import xp as rx
from ..errors import DomainError, ShapeError

__all__ = ["Convention", "CONVENTIONS", "DEFAULT", "get", "strength_forward", "strength_backward",
           "read_mode_width", "split_read_modes", "join_read_modes"]


@dataclass(frozen=True)
class Convention:
    """One preset of SPEC §5's conventions table.

    Attributes:
        name: ``"deepmind"`` or ``"paper"``.
        strength_activation: ``"softplus"`` or ``"oneplus"``, applied to the raw strengths
            inside content addressing (SPEC §5 step 2 ``act(β)``).
        read_mode_layout: the order of the three blocks of a head's read modes, a
            permutation of ``("backward", "forward", "content")``; the backward and
            forward blocks are ``nw`` wide, the content block 1 wide.
        stop_usage_gradient: whether the usage update (SPEC §5 step 1) treats
            ``ww_{t-1}`` as a constant (deepmind's ``tf.stop_gradient``).
    """

    name: str
    strength_activation: str
    read_mode_layout: tuple[str, str, str]
    stop_usage_gradient: bool


CONVENTIONS: dict[str, Convention] = {
    "deepmind": Convention("deepmind", "softplus", ("backward", "forward", "content"), True),
    "paper": Convention("paper", "oneplus", ("backward", "content", "forward"), False),
}

#: The default convention name.
DEFAULT = "deepmind"


def get(convention: str | Convention = DEFAULT) -> Convention:
    """Resolve a convention name (or pass a :class:`Convention` through).

    Raises :class:`~refmem.errors.DomainError` (a ``ValueError``) naming the known conventions for an unknown name.
    """
    if isinstance(convention, Convention):
        return convention
    try:
        return CONVENTIONS[convention]
    except (KeyError, TypeError):
        raise DomainError(
            f"convention: expected one of {', '.join(repr(k) for k in CONVENTIONS)}, got {convention!r}"
        ) from None


# ----------------------------------------------------------------------------- strengths


def strength_forward(raw: Any, convention: str | Convention = DEFAULT) -> Any:
    """``act(β)`` of SPEC §5 step 2: ``softplus`` (deepmind) or ``oneplus`` (paper) of the raw strengths.

    Args:
        raw: ``[...]`` (``[B, H]`` in content addressing), the raw strengths.
        convention: a name or a :class:`Convention`.

    Returns:
        ``beta [...]``, the activated strengths (no cache: :func:`strength_backward` reads ``raw``).
    """
    conv = get(convention)
    return P.softplus(raw) if conv.strength_activation == "softplus" else P.oneplus(raw)


def strength_backward(d_strength: Any, raw: Any) -> Any:
    """Both activations have derivative ``σ(raw)`` (the 1 of ``oneplus`` is a constant).

    Args:
        d_strength: ``[...]``, the gradient of ``beta`` (not ``None``).
        raw: ``[...]``, the input of :func:`strength_forward` (it is the cache).

    Returns:
        d_raw: ``[...]``, the gradient of ``raw``.

    Derivation: [docs/derivations/primitives.md, "2. Softplus and oneplus"](../derivations/primitives.md#2-softplus-and-oneplus)
    """
    return d_strength * P.sigmoid(raw)


# ----------------------------------------------------------------------------- read modes


def read_mode_width(nw: int) -> int:
    """Width of one head's read modes: ``1 + 2 nw``."""
    return 1 + 2 * int(nw)


def _offsets(conv: Convention, nw: int) -> dict[str, tuple[int, int]]:
    widths = {"backward": nw, "forward": nw, "content": 1}
    out, start = {}, 0
    for block in conv.read_mode_layout:
        out[block] = (start, start + widths[block])
        start += widths[block]
    return out


def split_read_modes(modes: Any, nw: int, convention: str | Convention = DEFAULT) -> tuple[Any, Any, Any]:
    """Split ``read_modes [B, R, 1 + 2nw]`` into ``(backward [B,R,nw], forward [B,R,nw], content [B,R,1])``.

    The layout is the convention's (SPEC §5 conventions table). Raises
    :class:`refmem.xp.ShapeError` when the last axis is not ``1 + 2nw``.
    """
    conv = get(convention)
    width = read_mode_width(nw)
    if modes.ndim < 1 or int(modes.shape[-1]) != width:
        raise ShapeError(
            f"read_modes: expected a last axis of 1 + 2nw = {width} (nw = {nw}), got shape {tuple(modes.shape)}"
        )
    off = _offsets(conv, nw)
    b = modes[..., off["backward"][0]:off["backward"][1]]
    f = modes[..., off["forward"][0]:off["forward"][1]]
    c = modes[..., off["content"][0]:off["content"][1]]
    return b, f, c


def join_read_modes(backward: Any, forward: Any, content: Any, convention: str | Convention = DEFAULT) -> Any:
    """Inverse of :func:`split_read_modes`: concatenate the blocks in the convention's layout."""
    conv = get(convention)
    xp = rx.namespace(backward, forward, content)
    blocks = {"backward": backward, "forward": forward, "content": content}
    return xp.concat([blocks[name] for name in conv.read_mode_layout], axis=-1)
