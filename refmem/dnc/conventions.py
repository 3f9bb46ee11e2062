"""The two DNC conventions of SPEC §5, as named presets.

| | `deepmind` (default) | `paper` |
|---|---|---|
| strength activation | `softplus` | `oneplus` |
| read-mode layout per head | `[backward×nw, forward×nw, content]` | `[backward×nw, content, forward×nw]` |
| usage gradient w.r.t. `ww_{t-1}` | stopped (deepmind's `stop_gradient`) | exact |

Every function of [`refmem.dnc.addressing`][refmem.dnc.addressing] that depends on a convention
takes the keyword `convention=`, a name (`"deepmind"`, `"paper"`) or a
[`Convention`][refmem.dnc.conventions.Convention]; the access step and the core read it from their
config. [`get`][refmem.dnc.conventions.get] resolves either.

The strength activation is a forward/backward pair following [the backward rule](../conventions.md):
[`strength_forward`][refmem.dnc.conventions.strength_forward] /
[`strength_backward`][refmem.dnc.conventions.strength_backward]; its maths is
[`strength`][refmem.dnc.conventions.strength] and [`strength_vjp`][refmem.dnc.conventions.strength_vjp].
"""

from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

from .. import primitives as P
from .. import xp as rx
from ..errors import DomainError, ShapeError
from ..validation import Array, checked, warn_old_call

__all__ = ["Convention", "CONVENTIONS", "DEFAULT", "ConventionName", "get",
           "StrengthOutputs", "StrengthCache", "StrengthGrads", "strength", "strength_vjp",
           "strength_forward", "strength_backward",
           "read_mode_width", "split_read_modes", "join_read_modes"]


@dataclass(frozen=True)
class Convention:
    """One preset of SPEC §5's conventions table.

    Attributes:
        name: `"deepmind"` or `"paper"`.
        strength_activation: `"softplus"` or `"oneplus"`, applied to the raw strengths
            inside content addressing (SPEC §5 step 2 `act(β)`).
        read_mode_layout: the order of the three blocks of a head's read modes, a
            permutation of `("backward", "forward", "content")`; the backward and
            forward blocks are `nw` wide, the content block 1 wide.
        stop_usage_gradient: whether the usage update (SPEC §5 step 1) treats
            `ww_{t-1}` as a constant (deepmind's `tf.stop_gradient`).
    """

    name: str
    strength_activation: str
    read_mode_layout: tuple[str, str, str]
    stop_usage_gradient: bool


CONVENTIONS: dict[str, Convention] = {
    "deepmind": Convention("deepmind", "softplus", ("backward", "forward", "content"), True),
    "paper": Convention("paper", "oneplus", ("backward", "content", "forward"), False),
}
"""The two presets by name."""

DEFAULT = "deepmind"
"""The default convention name."""

ConventionName = Literal["deepmind", "paper"] | Convention
"""The annotation of a `convention=` keyword: a name of [`CONVENTIONS`][refmem.dnc.conventions.CONVENTIONS]
or a [`Convention`][refmem.dnc.conventions.Convention]."""


def get(convention: str | Convention = DEFAULT) -> Convention:
    """Resolve a convention name (or pass a [`Convention`][refmem.dnc.conventions.Convention] through).

    Args:
        convention: `"deepmind"`, `"paper"` or a `Convention`.

    Returns:
        convention: the [`Convention`][refmem.dnc.conventions.Convention].

    Raises:
        refmem.errors.DomainError: an unknown name (the message names the known ones).
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


class StrengthOutputs(NamedTuple):
    """The output of [`strength_forward`][refmem.dnc.conventions.strength_forward]."""

    beta: Array["..."]
    """`act(β)`, the activated strengths, the shape of `raw`."""


class StrengthCache(NamedTuple):
    """What [`strength_backward`][refmem.dnc.conventions.strength_backward] needs: the raw strengths."""

    raw: Array["..."]
    """The raw strengths."""


class StrengthGrads(NamedTuple):
    """The gradient of [`strength_forward`][refmem.dnc.conventions.strength_forward]'s argument."""

    raw: Array["..."]
    """The gradient of `raw`."""


def strength(raw: Any, conv: Convention) -> Any:
    """`act(β)` of SPEC §5 step 2 for a resolved convention: `softplus(raw)` or `oneplus(raw)`."""
    return P.softplus(raw) if conv.strength_activation == "softplus" else P.oneplus(raw)


def strength_vjp(d_beta: Any, raw: Any) -> Any:
    """The gradient of `raw` for either activation: `d_beta ∘ σ(raw)` (the 1 of oneplus is a constant)."""
    return P.softplus_vjp(d_beta, raw)


@checked
def strength_forward(raw: Array["..."], *,
                     convention: ConventionName = DEFAULT) -> tuple[StrengthOutputs, StrengthCache]:
    """`act(β)` of SPEC §5 step 2: `softplus` (deepmind) or `oneplus` (paper) of the raw strengths.

    Args:
        raw: `[...]` (`[B, H]` in content addressing), the raw strengths.
        convention: `"deepmind"` (default), `"paper"` or a [`Convention`][refmem.dnc.conventions.Convention]
            (keyword-only).

    Returns:
        outputs: a [`StrengthOutputs`][refmem.dnc.conventions.StrengthOutputs] `(beta [...])`.
        cache: a [`StrengthCache`][refmem.dnc.conventions.StrengthCache] (the raw strengths).
    """
    return StrengthOutputs(strength(raw, get(convention))), StrengthCache(raw)


def _old_strength_backward(*args: Any, **kwargs: Any) -> Any:
    """The 0.1 form `strength_backward(d_strength, raw)`, deprecated: it returns the array `d_raw`."""
    given = dict(zip(("d_out", "cache"), args), **kwargs)
    if set(given) == {"d_strength", "raw"}:
        given = {"d_out": given["d_strength"], "cache": given["raw"]}
    if len(args) > 2 or set(given) != {"d_out", "cache"}:
        raise TypeError("strength_backward() takes (d_out, cache): d_out a StrengthOutputs of gradients "
                        "(None for zero), cache the StrengthCache of strength_forward")
    d_out, cache = given["d_out"], given["cache"]
    if isinstance(d_out, tuple):
        return strength_backward(d_out, cache)
    warn_old_call("strength_backward(d_strength, raw)", "strength_backward((d_strength,), cache).raw")
    return strength_backward((d_out,), StrengthCache(cache)).raw


@checked(legacy=_old_strength_backward)
def strength_backward(d_out: StrengthOutputs, cache: StrengthCache) -> StrengthGrads:
    """VJP of [`strength_forward`][refmem.dnc.conventions.strength_forward]: both activations have
    the derivative `σ(raw)` (the 1 of oneplus is a constant).

    Args:
        d_out: a [`StrengthOutputs`][refmem.dnc.conventions.StrengthOutputs] (or a 1-tuple): the
            gradient of `beta [...]` (`None`: zero).
        cache: the [`StrengthCache`][refmem.dnc.conventions.StrengthCache] of the forward.

    Returns:
        grads: a [`StrengthGrads`][refmem.dnc.conventions.StrengthGrads] `(raw [...])`.

    Derivation: [docs/derivations/primitives.md, "2. Softplus and oneplus"](../derivations/primitives.md#2-softplus-and-oneplus)
    """
    (d,) = d_out
    return StrengthGrads(P.zeros_if_none(None, cache.raw) if d is None else strength_vjp(d, cache.raw))


# ----------------------------------------------------------------------------- read modes


def read_mode_width(nw: int) -> int:
    """Width `K` of one head's read modes: `1 + 2 nw`."""
    return 1 + 2 * int(nw)


def _offsets(conv: Convention, nw: int) -> dict[str, tuple[int, int]]:
    widths = {"backward": nw, "forward": nw, "content": 1}
    out, start = {}, 0
    for block in conv.read_mode_layout:
        out[block] = (start, start + widths[block])
        start += widths[block]
    return out


def split_read_modes(modes: Any, nw: int, convention: str | Convention = DEFAULT) -> tuple[Any, Any, Any]:
    """Split `read_modes [B, R, 1 + 2nw]` into `(backward [B, R, nw], forward [B, R, nw], content [B, R, 1])`.

    Args:
        modes: `[..., 1 + 2nw]`, in the convention's layout (SPEC §5 conventions table).
        nw: the number of write heads.
        convention: `"deepmind"`, `"paper"` or a [`Convention`][refmem.dnc.conventions.Convention].

    Returns:
        backward: `[..., nw]`.
        forward: `[..., nw]`.
        content: `[..., 1]`.

    Raises:
        refmem.errors.ShapeError: the last axis is not `1 + 2nw`.
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
    """Inverse of [`split_read_modes`][refmem.dnc.conventions.split_read_modes]: concatenate the blocks in the
    convention's layout.

    Args:
        backward: `[..., nw]`.
        forward: `[..., nw]`.
        content: `[..., 1]`.
        convention: `"deepmind"`, `"paper"` or a [`Convention`][refmem.dnc.conventions.Convention].

    Returns:
        modes: `[..., 1 + 2nw]`.
    """
    conv = get(convention)
    xp = rx.namespace(backward, forward, content)
    blocks = {"backward": backward, "forward": forward, "content": content}
    return xp.concat([blocks[name] for name in conv.read_mode_layout], axis=-1)
