"""SPEC §5: one DNC memory access step (the interface and steps 1-10).

The contract the core unroll codes against:

* [`AccessConfig`][refmem.dnc.access.AccessConfig] (`N, W, R, nw, convention` and the options) and
  [`interface_size`][refmem.dnc.access.interface_size];
* [`AccessState`][refmem.dnc.access.AccessState] (`memory, read_weights, write_weights, link,
  precedence, usage`) and [`initial_state`][refmem.dnc.access.initial_state] (zeros);
* [`access_step_forward`][refmem.dnc.access.access_step_forward] /
  [`access_step_backward`][refmem.dnc.access.access_step_backward], following
  [the backward rule](../conventions.md); the maths is [`access_step`][refmem.dnc.access.access_step]
  and [`access_step_vjp`][refmem.dnc.access.access_step_vjp], which the core calls directly.

A step: `xi = h_c @ W_xi + b_xi` sliced and activated ([`interface_forward`][refmem.dnc.access.interface_forward]),
then usage (step 1), write weights (steps 2-4), memory (step 5), link and precedence (step 6),
read weights (steps 7-9) and read vectors (step 10), each from [`refmem.dnc.addressing`][refmem.dnc.addressing].

The options of Csordás & Schmidhuber (ICLR 2019; SPEC §5) are flags of
[`AccessConfig`][refmem.dnc.access.AccessConfig]. Where their code (RobertCsordas/dnc
`Models/DNC.py`) differs from SPEC, refmem follows SPEC:

* interface layout: theirs puts each write mask first in the write head's slice and the read
  masks first in the read heads' slice (then the sharpness, forward then backward, after both
  heads); SPEC appends `write_masks`, `read_masks` after the read strengths, then the
  forward and backward sharpness;
* their cosine divides by `|k| |M_i| + eps` with plain norms; SPEC's cosine (§1) has `eps`
  inside each norm too;
* they have one write head: de-allocation multiplies the single erase matrix by `ψ_t`, the
  same as SPEC's `(M_{t-1} ∘ ψ_t) ∘ Π_k (1 - ww_k e_kᵀ)` for `nw = 1`; `ψ_t` carries its
  gradient there too, and the usage detaches the previous write weights (deepmind's stop);
* their sharpening divides `d + eps` by its maximum before the power, which cancels in the
  normalisation (refmem's `softmax(s log(d + eps))` subtracts the same maximum in log space);
* their strengths use oneplus and they clamp the whole interface vector to `±clip`; refmem
  activates by the convention and clips the controller output, not the interface (SPEC §5 Core);
  their masks accept a `mask_min` (default 0); SPEC has none.
"""

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal, NamedTuple

from .. import primitives as P
from .. import xp as rx
from ..errors import DomainError
from ..validation import Array, Config, Size, Unit, checked, old_call_arguments, warn_old_call
from . import addressing as A
from . import conventions as C
from .addressing import Distribution, LinkMatrix, Weighting

__all__ = [
    "OPTIONS", "AccessConfig", "AccessState", "interface_size", "interface_layout", "initial_state",
    "InterfaceOutputs", "InterfaceCache", "InterfaceGrads", "interface", "interface_vjp",
    "interface_forward", "interface_backward",
    "AccessStepOutputs", "AccessStepCache", "AccessStepGrads", "access_step", "access_step_vjp",
    "access_step_forward", "access_step_backward",
]


# ============================================================================= configuration

OPTIONS = ("masked_content", "deallocation", "link_sharpness")
"""The option flags of SPEC §5 (Csordás & Schmidhuber 2019), in the order they are named."""


@dataclass(frozen=True)
class AccessConfig(Config):
    """Sizes, convention and options of one memory access module (SPEC §5).

    Every field is validated on construction, strictly by type (`AccessConfig(N=0)` is a
    `DomainError`, `AccessConfig(nw=1.5)` and `AccessConfig(deallocation=1)` are `DTypeError`s,
    each naming `AccessConfig.<field>`). An argument annotated `AccessConfig` binds the letters
    `N`, `W`, `R`, `nw`, `K` (`1 + 2nw`) and `I` (the interface width) of its call.

    Attributes:
        N: memory slots.
        W: word size.
        R: read heads.
        nw: write heads.
        convention: `"deepmind"` (default) or `"paper"` (SPEC §5 conventions table).
        masked_content: write and read masks on the content lookups (Csordás & Schmidhuber).
        deallocation: the usage's retention `ψ_t` also scales the memory.
        link_sharpness: forward and backward weights sharpened per read head.
    """

    N: Size
    W: Size
    R: Size
    nw: Size
    convention: Literal["deepmind", "paper"] = "deepmind"
    masked_content: bool = False
    deallocation: bool = False
    link_sharpness: bool = False

    def sizes(self) -> dict[str, int]:
        """The letters this config fixes: `N`, `W`, `R`, `nw`, `K = 1 + 2nw` and `I` (the interface width)."""
        return {"N": self.N, "W": self.W, "R": self.R, "nw": self.nw, "K": C.read_mode_width(self.nw),
                "I": interface_size(self)}

    @property
    def interface_size(self) -> int:
        """Width `I` of the interface vector (see [`interface_size`][refmem.dnc.access.interface_size])."""
        return interface_size(self)

    @property
    def read_mode_width(self) -> int:
        """`K = 1 + 2 nw`."""
        return C.read_mode_width(self.nw)


def interface_layout(cfg: AccessConfig) -> list[tuple[str, tuple[int, ...], str]]:
    """The interface slices in SPEC §5 order: `(name, per-example shape, activation)`."""
    W, R, nw = cfg.W, cfg.R, cfg.nw
    return [
        ("write_vectors", (nw, W), "identity"),
        ("erase_vectors", (nw, W), "sigmoid"),
        ("free_gates", (R,), "sigmoid"),
        ("allocation_gates", (nw,), "sigmoid"),
        ("write_gates", (nw,), "sigmoid"),
        ("read_modes", (R, C.read_mode_width(nw)), "softmax"),
        ("write_keys", (nw, W), "identity"),
        ("write_strengths", (nw,), "identity"),
        ("read_keys", (R, W), "identity"),
        ("read_strengths", (R,), "identity"),
    ] + ([
        ("write_masks", (nw, W), "sigmoid"),
        ("read_masks", (R, W), "sigmoid"),
    ] if cfg.masked_content else []) + ([
        ("forward_sharpness", (R,), "oneplus"),
        ("backward_sharpness", (R,), "oneplus"),
    ] if cfg.link_sharpness else [])


@lru_cache(maxsize=64)
def _interface_plan(cfg: AccessConfig) -> tuple:
    """The layout as runs: `(activation, start, stop, entries)`, each entry `(name, shape, offset, width)`
    within its run. Neighbouring sigmoid slices share a run (one sigmoid over the run, the same value
    on every element); every other slice is a run of its own."""
    runs: list = []
    start = 0
    for name, shape, act in interface_layout(cfg):
        width = 1
        for n in shape:
            width *= n
        if act == "sigmoid" and runs and runs[-1][0] == "sigmoid" and runs[-1][2] == start:
            a, s0, _, entries = runs[-1]
            runs[-1] = (a, s0, start + width, entries + ((name, shape, start - s0, width),))
        else:
            runs.append((act, start, start + width, ((name, shape, 0, width),)))
        start += width
    return tuple(runs)


def interface_size(cfg: AccessConfig) -> int:
    """Width `I` of the interface: `3 nw W + 3 nw + R (1 + 2nw) + R W + 2 R` (the paper's
    `W R + 3W + 5R + 3` for `nw = 1`), plus `nw W + R W` with `masked_content` and `2 R` with
    `link_sharpness`."""
    total = 0
    for _, shape, _ in interface_layout(cfg):
        n = 1
        for s in shape:
            n *= s
        total += n
    return total


class AccessState(NamedTuple):
    """The access state (SPEC §5); in a gradient every field may be `None` (zero)."""

    memory: Array["B N W"]
    """`M`."""
    read_weights: Weighting["B R N"]
    """`wr`, rows summing to at most 1."""
    write_weights: Weighting["B nw N"]
    """`ww`, rows summing to at most 1."""
    link: LinkMatrix["B nw N N"]
    """`L`, zero on the diagonal."""
    precedence: Weighting["B nw N"]
    """`p`, rows summing to at most 1."""
    usage: Unit["B N"]
    """`u`."""


@checked
def initial_state(xp: Any, B: Size, cfg: AccessConfig, dtype: Any = None) -> AccessState:
    """The all-zero initial state of SPEC §5.

    Args:
        xp: the namespace to create the arrays in.
        B: the batch size.
        cfg: the [`AccessConfig`][refmem.dnc.access.AccessConfig].
        dtype: floating dtype (default `xp.float64`).

    Returns:
        state: an [`AccessState`][refmem.dnc.access.AccessState] of zeros.
    """
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


# ============================================================================= interface


class InterfaceOutputs(NamedTuple):
    """The activated interface (SPEC §5), in slice order; the option slices are `None` when off."""

    write_vectors: Array["B nw W"]
    """Identity."""
    erase_vectors: Unit["B nw W"]
    """Sigmoid."""
    free_gates: Unit["B R"]
    """Sigmoid."""
    allocation_gates: Unit["B nw"]
    """Sigmoid."""
    write_gates: Unit["B nw"]
    """Sigmoid."""
    read_modes: Unit["B R K"]
    """Softmax over the last axis, in the convention's layout."""
    write_keys: Array["B nw W"]
    """Identity."""
    write_strengths: Array["B nw"]
    """Raw (activated inside content addressing)."""
    read_keys: Array["B R W"]
    """Identity."""
    read_strengths: Array["B R"]
    """Raw."""
    write_masks: Unit["B nw W"] | None = None
    """Sigmoid; with `masked_content`."""
    read_masks: Unit["B R W"] | None = None
    """Sigmoid; with `masked_content`."""
    forward_sharpness: Array["B R"] | None = None
    """Oneplus; with `link_sharpness`."""
    backward_sharpness: Array["B R"] | None = None
    """Oneplus; with `link_sharpness`."""


class InterfaceCache(NamedTuple):
    """What [`interface_backward`][refmem.dnc.access.interface_backward] needs."""

    linear: P.LinearCache
    """The [`LinearCache`][refmem.primitives.LinearCache] of `h_c @ W_xi + b_xi`."""
    interface: InterfaceOutputs
    """The activated interface."""
    cfg: AccessConfig
    """The config (the layout)."""
    raw: Any = None
    """The raw values of the oneplus slices (`{name: [B, ...]}`, empty without `link_sharpness`)."""
    free_gates: Array["B R"] | None = None
    """The free gates (binds the call's batch and precision)."""
    blocks: Any = None
    """The activated sigmoid runs of the interface (`{start: [B, width]}`; neighbouring sigmoid
    slices are activated as one block), or `None` (the backward then reads the slices)."""


class InterfaceGrads(NamedTuple):
    """The gradients of [`interface_forward`][refmem.dnc.access.interface_forward]'s arguments."""

    controller_output: Array["B Hc"]
    """The gradient of `controller_output`."""
    W_xi: Array["Hc I"]
    """The gradient of `W_xi`."""
    b_xi: Array["I"]
    """The gradient of `b_xi`."""


def interface(controller_output: Any, W_xi: Any, b_xi: Any, cfg: AccessConfig) -> tuple[InterfaceOutputs, InterfaceCache]:
    """`xi = h_c @ W_xi + b_xi` sliced in SPEC §5 order, reshaped row-major and activated, unchecked."""
    xp = rx.namespace(controller_output, W_xi, b_xi)
    B = int(controller_output.shape[0])
    xi = P.linear(controller_output, W_xi, b_xi)
    parts = {}
    raws = {}
    blocks = {}
    for act, start, stop, entries in _interface_plan(cfg):
        if act == "sigmoid" and len(entries) > 1:
            block = P.sigmoid(xi[:, start:stop])
            blocks[start] = block
            for name, shape, offset, width in entries:
                parts[name] = xp.reshape(block[:, offset:offset + width], (B,) + shape)
            continue
        ((name, shape, _, _),) = entries
        raw = xp.reshape(xi[:, start:stop], (B,) + shape)
        if act == "sigmoid":
            raw = P.sigmoid(raw)
        elif act == "softmax":
            raw = P.softmax(raw, axis=-1)
        elif act == "oneplus":
            raws[name] = raw
            raw = P.oneplus(raw)
        parts[name] = raw
    iface = InterfaceOutputs(**parts)
    return iface, InterfaceCache(P.LinearCache(controller_output, W_xi), iface, cfg, raws, iface.free_gates, blocks)


def interface_vjp(d_interface: Any, cache: InterfaceCache) -> InterfaceGrads:
    """The gradients of [`interface`][refmem.dnc.access.interface] from an
    [`InterfaceOutputs`][refmem.dnc.access.InterfaceOutputs] of gradients (a `None` field is zero), unchecked.

    Sigmoid slices: `d ∘ s (1 - s)`; the read modes: the softmax VJP over the last axis; oneplus
    slices: `d ∘ σ(raw)`; identity slices pass through.
    """
    iface = cache.interface
    B = int(iface.free_gates.shape[0])
    xp = rx.namespace(iface.free_gates)
    blocks = cache.blocks or {}
    pieces = []
    for act, start, stop, entries in _interface_plan(cache.cfg):
        ds = []
        for name, _, _, _ in entries:
            out = getattr(iface, name)
            d = getattr(d_interface, name)
            ds.append(d if d is not None else xp.zeros(out.shape, dtype=out.dtype))
        if start in blocks:  # a sigmoid run activated as one block: d ∘ s (1 - s) over the block
            out = blocks[start]
            d = xp.concat([xp.reshape(d, (B, -1)) for d in ds], axis=-1)
            pieces.append(d * out * (1.0 - out))
            continue
        for (name, _, _, _), d in zip(entries, ds):
            out = getattr(iface, name)
            if act == "sigmoid":
                d = d * out * (1.0 - out)
            elif act == "softmax":
                d = P.softmax_vjp(d, out, -1)
            elif act == "oneplus":
                d = d * P.sigmoid(cache.raw[name])
            pieces.append(xp.reshape(d, (B, -1)))
    d_xi = xp.concat(pieces, axis=-1)
    return InterfaceGrads(*P.linear_vjp(d_xi, cache.linear.x, cache.linear.W))


@checked
def interface_forward(controller_output: Array["B Hc"], W_xi: Array["Hc I"], b_xi: Array["I"], *,
                      cfg: AccessConfig) -> tuple[InterfaceOutputs, InterfaceCache]:
    """The interface of SPEC §5: `xi = h_c @ W_xi + b_xi` sliced in SPEC order, reshaped row-major and
    activated.

    Args:
        controller_output: `[B, Hc]`.
        W_xi: `[Hc, I]` with `I = interface_size(cfg)`.
        b_xi: `[I]`.
        cfg: the [`AccessConfig`][refmem.dnc.access.AccessConfig] (sizes, convention, options; keyword-only).

    Returns:
        outputs: the activated [`InterfaceOutputs`][refmem.dnc.access.InterfaceOutputs] `(write_vectors,
            erase_vectors, free_gates, allocation_gates, write_gates, read_modes, write_keys,
            write_strengths, read_keys, read_strengths, write_masks, read_masks, forward_sharpness,
            backward_sharpness)`, the option slices `None` when off.
        cache: an [`InterfaceCache`][refmem.dnc.access.InterfaceCache].
    """
    return interface(controller_output, W_xi, b_xi, cfg)


@checked
def interface_backward(d_out: InterfaceOutputs, cache: InterfaceCache) -> InterfaceGrads:
    """VJP of [`interface_forward`][refmem.dnc.access.interface_forward].

    Sigmoid slices: `d ∘ s (1 - s)`; the read modes: the softmax VJP over the last axis; oneplus
    slices: `d ∘ σ(raw)`; identity slices pass through.

    Args:
        d_out: an [`InterfaceOutputs`][refmem.dnc.access.InterfaceOutputs] (or a tuple in its order) of
            gradients, each field the shape of that slice (`write_vectors [B, nw, W]`, ...,
            `read_strengths [B, R]`) or `None` (zero).
        cache: the [`InterfaceCache`][refmem.dnc.access.InterfaceCache] of the forward.

    Returns:
        grads: an [`InterfaceGrads`][refmem.dnc.access.InterfaceGrads]
            `(controller_output [B, Hc], W_xi [Hc, I], b_xi [I])`.

    Derivation: [docs/derivations/dnc.md, "10. The interface"](../derivations/dnc.md#10-the-interface-interface_forward)
    """
    if type(d_out) is not InterfaceOutputs:
        d_out = InterfaceOutputs(*d_out)
    return interface_vjp(d_out, cache)


# ============================================================================= the step


class AccessStepOutputs(NamedTuple):
    """The outputs of [`access_step_forward`][refmem.dnc.access.access_step_forward]."""

    read_vectors: Array["B R W"]
    """`r_t = wr_t M_t`."""
    state: AccessState
    """The [`AccessState`][refmem.dnc.access.AccessState] at `t`."""


class AccessStepCache(NamedTuple):
    """Everything [`access_step_backward`][refmem.dnc.access.access_step_backward] needs."""

    cfg: AccessConfig
    """The config."""
    interface: InterfaceCache
    """The [`InterfaceCache`][refmem.dnc.access.InterfaceCache]."""
    usage: A.UsageCache
    """The [`UsageCache`][refmem.dnc.addressing.UsageCache] of step 1."""
    write: A.WriteWeightsCache
    """The [`WriteWeightsCache`][refmem.dnc.addressing.WriteWeightsCache] of steps 2-4."""
    memory: A.MemoryUpdateCache
    """The [`MemoryUpdateCache`][refmem.dnc.addressing.MemoryUpdateCache] of step 5."""
    link: A.TemporalLinkageCache
    """The [`TemporalLinkageCache`][refmem.dnc.addressing.TemporalLinkageCache] of step 6."""
    read: A.ReadWeightsCache
    """The [`ReadWeightsCache`][refmem.dnc.addressing.ReadWeightsCache] of steps 7-9."""
    new_memory: Array["B N W"]
    """`M_t`, for the read vectors."""
    read_weights: Array["B R N"]
    """`wr_t`, for the read vectors."""
    write_weights: Array["B nw N"]
    """`ww_t`."""


class AccessStepGrads(NamedTuple):
    """The gradients of [`access_step_forward`][refmem.dnc.access.access_step_forward]'s arguments."""

    controller_output: Array["B Hc"]
    """The gradient of `controller_output`."""
    W_xi: Array["Hc I"]
    """The gradient of `W_xi`."""
    b_xi: Array["I"]
    """The gradient of `b_xi`."""
    state: AccessState
    """The gradients of the state at `t-1`; `write_weights` is zero under the `deepmind` convention
    (its only path, the usage, is stopped)."""


def access_step(controller_output: Any, W_xi: Any, b_xi: Any, state: AccessState, cfg: AccessConfig,
                frozen_write_weights: Any = None) -> tuple[Any, AccessState, AccessStepCache]:
    """One access step of SPEC §5 (interface, steps 1-10), unchecked: `(read_vectors, new_state, cache)`."""
    conv = C.CONVENTIONS[cfg.convention]
    iface, icache = interface(controller_output, W_xi, b_xi, cfg)
    usage, ucache = A.usage(state.usage, state.write_weights, iface.free_gates, state.read_weights, conv,
                            frozen_write_weights)
    ww, wcache = A.write_weights(state.memory, usage, iface.write_keys, iface.write_strengths,
                                 iface.allocation_gates, iface.write_gates, iface.write_masks, conv)
    memory, mcache = A.memory_update(state.memory, ww, iface.erase_vectors, iface.write_vectors,
                                     ucache.retention if cfg.deallocation else None)
    link, precedence, lcache = A.temporal_linkage(state.link, state.precedence, ww)
    wr, rcache = A.read_weights(memory, iface.read_keys, iface.read_strengths, link, state.read_weights,
                                iface.read_modes, iface.read_masks, iface.forward_sharpness,
                                iface.backward_sharpness, conv)
    read_vectors = wr @ memory
    new_state = AccessState(memory, wr, ww, link, precedence, usage)
    cache = AccessStepCache(cfg, icache, ucache, wcache, mcache, lcache, rcache, memory, wr, ww)
    return read_vectors, new_state, cache


def access_step_vjp(d_read_vectors: Any, d_new_state: AccessState | None, cache: AccessStepCache) -> AccessStepGrads:
    """Reverse of [`access_step`][refmem.dnc.access.access_step], steps 10 to 1 then the interface,
    unchecked; `d_read_vectors`, `d_new_state` and any of its fields may be `None` (zero)."""
    if d_new_state is None:
        d_new_state = AccessState(None, None, None, None, None, None)
    memory, wr = cache.new_memory, cache.read_weights
    # step 10: r = wr @ M_t
    d_memory = d_new_state.memory
    d_wr = d_new_state.read_weights
    if d_read_vectors is not None:
        d_memory = P.add_optional(d_memory, P.transpose_last(wr) @ d_read_vectors)
        d_wr = P.add_optional(d_wr, d_read_vectors @ P.transpose_last(memory))
    d_wr = P.zeros_if_none(d_wr, wr)
    # steps 7-9: read weights
    g_read = A.read_weights_vjp(d_wr, cache.read)
    d_memory = P.add_optional(d_memory, g_read.memory)
    d_link = g_read.link  # a fresh product of the directional VJP: summed into and masked in place
    if d_new_state.link is not None:
        d_link = A._iadd(d_link, d_new_state.link)
    # step 6: link and precedence
    g_link = A.temporal_linkage_vjp(d_link, d_new_state.precedence, cache.link, overwrite=True)
    # step 5: memory
    g_mem = A.memory_update_vjp(d_memory, cache.memory)
    d_ww = P.add_optional(P.add_optional(d_new_state.write_weights, g_link.write_weights), g_mem.write_weights)
    # steps 2-4: write weights
    g_write = A.write_weights_vjp(d_ww, cache.write)
    d_usage = P.add_optional(d_new_state.usage, g_write.usage)
    # step 1: usage (the retention also reaches the memory under the de-allocation option)
    g_usage = A.usage_vjp(d_usage, g_mem.deallocation, cache.usage)
    d_iface = InterfaceOutputs(
        write_vectors=g_mem.write_vectors,
        erase_vectors=g_mem.erase_vectors,
        free_gates=g_usage.free_gates,
        allocation_gates=g_write.allocation_gates,
        write_gates=g_write.write_gates,
        read_modes=g_read.read_modes,
        write_keys=g_write.write_keys,
        write_strengths=g_write.write_strengths,
        read_keys=g_read.read_keys,
        read_strengths=g_read.read_strengths,
        write_masks=g_write.write_masks,
        read_masks=g_read.read_masks,
        forward_sharpness=g_read.forward_sharpness,
        backward_sharpness=g_read.backward_sharpness,
    )
    d_h, d_W, d_b = interface_vjp(d_iface, cache.interface)
    d_state = AccessState(
        memory=g_mem.memory + g_write.memory,
        read_weights=g_read.prev_read_weights + g_usage.prev_read_weights,
        write_weights=g_usage.prev_write_weights,
        link=g_link.prev_link,
        precedence=g_link.prev_precedence,
        usage=g_usage.prev_usage,
    )
    return AccessStepGrads(d_h, d_W, d_b, d_state)


def _require_finite(label: str, what: str, arrays: Any, dtype: Any) -> None:
    """Refuse a result with an infinity or a NaN (the inputs' scale overflowed `dtype`): `DomainError`."""
    arrays = list(arrays)
    xp = rx.namespace(arrays[0][1])
    ok = xp.all(xp.isfinite(arrays[0][1]))
    for _, x in arrays[1:]:  # no arithmetic (an emulated float32 run would round it) and one sync
        ok = ok & xp.all(xp.isfinite(x))
    if bool(ok):
        return
    for name, x in arrays:  # which array
        if not bool(xp.all(xp.isfinite(x))):
            raise DomainError(f"{label}: {what} overflows {dtype} at this scale ({name} is not finite); every "
                              f"interface value, memory row and key must stay below "
                              f"{A.cosine_limit(dtype, xp):.3g} in norm (finfo({dtype}).max ** 0.25)")


@checked
def access_step_forward(controller_output: Array["B Hc"], W_xi: Array["Hc I"], b_xi: Array["I"],
                        state: AccessState, *, cfg: AccessConfig,
                        frozen_write_weights: Weighting["B nw N"] | None = None
                        ) -> tuple[AccessStepOutputs, AccessStepCache]:
    """One access step of SPEC §5 (interface, steps 1-10).

    Args:
        controller_output: `[B, Hc]`.
        W_xi: `[Hc, I]`, `I = interface_size(cfg)`.
        b_xi: `[I]`.
        state: the [`AccessState`][refmem.dnc.access.AccessState] at `t-1` (weightings with rows summing
            to at most 1, a link with a zero diagonal).
        cfg: the [`AccessConfig`][refmem.dnc.access.AccessConfig] (keyword-only).
        frozen_write_weights: `[B, nw, N]` or `None` (keyword-only); under the `deepmind` convention
            (stopped usage gradient), the value the usage update uses in place of `state.write_weights`
            (a finite-difference check freezes it at its recorded value, SPEC §6). Ignored by the
            `paper` convention.

    Returns:
        outputs: an [`AccessStepOutputs`][refmem.dnc.access.AccessStepOutputs]
            `(read_vectors [B, R, W], state)`, `state` the [`AccessState`][refmem.dnc.access.AccessState] at `t`.
        cache: an [`AccessStepCache`][refmem.dnc.access.AccessStepCache].

    Raises:
        refmem.errors.DomainError: inputs at a scale the step cannot carry: a key or memory row of
            norm at least [`cosine_limit`][refmem.dnc.addressing.cosine_limit], or a result that
            overflows the dtype.
    """
    A._require_norms("controller_output", controller_output)
    A._require_norms("W_xi", W_xi)
    A._require_norms("b_xi", b_xi)
    A._require_norms("state.memory", state.memory)
    read_vectors, new_state, cache = access_step(controller_output, W_xi, b_xi, state, cfg, frozen_write_weights)
    dtype = P.real_part(read_vectors).dtype
    # The interface h_c W_xi + b_xi needs no check of its own: with every row of h_c and W_xi and b_xi
    # below the limit (max ** 0.25, checked above), each entry is below sqrt(Hc) * max ** 0.5, finite
    # in any dtype; its keys' scale is what the lookups below refuse.
    A._require_cosine_scale(A._lookup_cosine(cache.write.content_cache),
                            "controller_output (the write keys of h_c W_xi + b_xi)", "state.memory")
    A._require_cosine_scale(A._lookup_cosine(cache.read.content_cache),
                            "controller_output (the read keys of h_c W_xi + b_xi)",
                            "controller_output (the memory M_t after the write)")
    _require_finite("controller_output", "the access step", [("read_vectors", read_vectors),
                                                              *new_state._asdict().items()], dtype)
    return AccessStepOutputs(read_vectors, new_state), cache


def _old_access_step_backward(*args: Any, **kwargs: Any) -> AccessStepGrads:
    """The 0.1 form `access_step_backward(d_read_vectors, d_new_state, cache)`, deprecated (it returned
    `(d_controller_output, d_W_xi, d_b_xi, d_state)`, the order of the new gradients)."""
    if len(args) == 2 and not kwargs:  # not a 0.1 call (it had three arguments): d_out is not a tuple
        raise A._not_outputs("d_out", AccessStepOutputs, args[0])
    given = old_call_arguments("access_step_backward", ("d_read_vectors", "d_new_state", "cache"), args, kwargs)
    if set(given) == {"d_out", "cache"}:
        return access_step_backward(given["d_out"], given["cache"])
    warn_old_call("access_step_backward(d_read_vectors, d_new_state, cache)",
                  "access_step_backward(AccessStepOutputs(read_vectors=d_read_vectors, state=d_new_state), cache)")
    return access_step_backward(AccessStepOutputs(given.get("d_read_vectors"), given.get("d_new_state")),
                                     given["cache"])


@checked(legacy=_old_access_step_backward)
def access_step_backward(d_out: AccessStepOutputs, cache: AccessStepCache) -> AccessStepGrads:
    """VJP of [`access_step_forward`][refmem.dnc.access.access_step_forward], steps 10 to 1 then the interface.

    Args:
        d_out: an [`AccessStepOutputs`][refmem.dnc.access.AccessStepOutputs] (or a tuple in its order) of
            the gradients of `read_vectors [B, R, W]` and of the new `state` (an
            [`AccessState`][refmem.dnc.access.AccessState] of gradients); either, and any field of the
            state, may be `None` (zero).
        cache: the [`AccessStepCache`][refmem.dnc.access.AccessStepCache] of the forward.

    Returns:
        grads: an [`AccessStepGrads`][refmem.dnc.access.AccessStepGrads]
            `(controller_output [B, Hc], W_xi [Hc, I], b_xi [I], state)`, `state` an
            [`AccessState`][refmem.dnc.access.AccessState] of gradients w.r.t. the state at `t-1`
            (`write_weights` is zero under the `deepmind` convention: its only path, the usage, is stopped).

    Raises:
        refmem.errors.DomainError: a gradient that overflows the dtype (upstream gradients at a scale
            the step cannot carry).

    Derivation: [docs/derivations/dnc.md, "9. Read vectors (step 10) and the whole step"](../derivations/dnc.md#9-read-vectors-step-10-and-the-whole-step-access_step_forward)
    """
    d_read_vectors, d_state = d_out
    grads = access_step_vjp(d_read_vectors, d_state, cache)
    dtype = P.real_part(cache.new_memory).dtype
    _require_finite("d_out", "the backward of the access step",
                    [(n, g) for n, g in grads._asdict().items() if n != "state"]
                    + [(f"state.{n}", g) for n, g in grads.state._asdict().items()], dtype)
    return grads



# ----------------------------------------------------------------------------- 0.1 names

#: The 0.1 names of the types (deprecated aliases; removed after 0.2).
Interface = InterfaceOutputs
AccessCache = AccessStepCache
