"""SPEC §5: one DNC memory access step (the interface and steps 1-10).

The contract the core unroll codes against:

* :class:`AccessConfig` (``N, W, R, nw, convention``) and :func:`interface_size`;
* :class:`AccessState` (``memory, read_weights, write_weights, link, precedence, usage``)
  and :func:`initial_state` (zeros);
* :func:`access_step_forward` / :func:`access_step_backward`.

A step: ``xi = h_c @ W_xi + b_xi`` sliced and activated (:func:`interface_forward`),
then usage (step 1), write weights (steps 2-4), memory (step 5), link and
precedence (step 6), read weights (steps 7-9) and read vectors (step 10), each
from :mod:`refmem.dnc.addressing`.

The options of Csordás & Schmidhuber (ICLR 2019; SPEC §5) are flags of :class:`AccessConfig`.
Where their code (RobertCsordas/dnc ``Models/DNC.py``) differs from SPEC, refmem follows SPEC:

* interface layout: theirs puts each write mask first in the write head's slice and the read
  masks first in the read heads' slice (then the sharpness, forward then backward, after both
  heads); SPEC appends ``write_masks``, ``read_masks`` after the read strengths, then the
  forward and backward sharpness;
* their cosine divides by ``|k| |M_i| + eps`` with plain norms; SPEC's cosine (§1) has ``eps``
  inside each norm too;
* they have one write head: de-allocation multiplies the single erase matrix by ``ψ_t``, the
  same as SPEC's ``(M_{t-1} ∘ ψ_t) ∘ Π_k (1 - ww_k e_kᵀ)`` for ``nw = 1``; ``ψ_t`` carries its
  gradient there too, and the usage detaches the previous write weights (deepmind's stop);
* their sharpening divides ``d + eps`` by its maximum before the power, which cancels in the
  normalisation (refmem's ``softmax(s log(d + eps))`` subtracts the same maximum in log space);
* their strengths use oneplus and they clamp the whole interface vector to ``±clip``; refmem
  activates by the convention and clips the controller output, not the interface (SPEC §5 Core);
  their masks accept a ``mask_min`` (default 0); SPEC has none.

"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

from .. import primitives as P
from .. import xp as rx
from ..errors import ShapeError
from ..errors import DomainError
from ..validation import check_arrays, check_size, checked_by, fields
from . import addressing as A
from . import conventions as C

__all__ = [
    "OPTIONS", "AccessConfig", "AccessState", "interface_size", "interface_layout", "initial_state",
    "Interface", "InterfaceCache", "interface_forward", "interface_backward",
    "AccessCache", "access_step_forward", "access_step_backward",
]


# ----------------------------------------------------------------------------- configuration

#: The option flags of SPEC §5 (Csordás & Schmidhuber 2019), in the order they are named.
OPTIONS = ("masked_content", "deallocation", "link_sharpness")


@dataclass(frozen=True)
class AccessConfig:
    """Sizes and convention of one memory access module (SPEC §5).

    ``N`` memory slots, ``W`` word size, ``R`` read heads, ``nw`` write heads (each ≥ 1),
    ``convention`` ``"deepmind"`` (default) or ``"paper"`` (SPEC §5 conventions table).
    The three options of Csordás & Schmidhuber (SPEC §5, each off by default, combinable):
    ``masked_content`` (write and read masks on the content lookups), ``deallocation``
    (the usage's retention ``ψ_t`` also scales the memory) and ``link_sharpness``
    (forward and backward weights sharpened per read head).
    Validated on construction: a bad size or an unknown convention raises ``ValueError``.
    """

    N: int
    W: int
    R: int
    nw: int
    convention: str = "deepmind"
    masked_content: bool = False
    deallocation: bool = False
    link_sharpness: bool = False

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Refuse sizes that are not ints ≥ 1 and unknown conventions (``ValueError``)."""
        for name in ("N", "W", "R", "nw"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise DomainError(f"AccessConfig.{name}: expected an int >= 1, got {v!r}")
        for name in OPTIONS:
            v = getattr(self, name)
            if not isinstance(v, bool):
                raise TypeError(f"AccessConfig.{name}: expected a bool, got {v!r}")
        C.get(self.convention)

    @property
    def interface_size(self) -> int:
        """Width ``I`` of the interface vector (see :func:`interface_size`)."""
        return interface_size(self)

    @property
    def read_mode_width(self) -> int:
        """``1 + 2 nw``."""
        return C.read_mode_width(self.nw)


def interface_layout(cfg: AccessConfig) -> list[tuple[str, tuple[int, ...], str]]:
    """The interface slices in SPEC §5 order: ``(name, per-example shape, activation)``."""
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


def interface_size(cfg: AccessConfig) -> int:
    """Width ``I`` of the interface: ``3 nw W + 3 nw + R (1 + 2nw) + R W + 2 R`` (the paper's ``W R + 3W + 5R + 3`` for ``nw = 1``),
    plus ``nw W + R W`` with ``masked_content`` and ``2 R`` with ``link_sharpness``."""
    total = 0
    for _, shape, _ in interface_layout(cfg):
        n = 1
        for s in shape:
            n *= s
        total += n
    return total


class AccessState(NamedTuple):
    """The access state (SPEC §5); every field may be ``None`` in a gradient meaning zero.

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
    _check_config(cfg)
    check_size("B", B)
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


#: Spec strings of the access state (see :mod:`refmem.validation`).
STATE_SPECS = {
    "memory": "B N W", "read_weights": "B R N | unit", "write_weights": "B nw N | unit",
    "link": "B nw N N | unit", "precedence": "B nw N | unit", "usage": "B N | unit",
}


def _sizes(cfg: AccessConfig) -> dict[str, int]:
    return {"N": cfg.N, "W": cfg.W, "R": cfg.R, "nw": cfg.nw, "I": interface_size(cfg)}


def _check_config(cfg: Any) -> None:
    if not isinstance(cfg, AccessConfig):
        raise TypeError(f"cfg: expected an AccessConfig, got {type(cfg).__name__}")


def _check_interface_inputs(controller_output: Any, W_xi: Any, b_xi: Any, cfg: AccessConfig,
                            extra: dict | None = None, extra_specs: dict | None = None) -> dict[str, int]:
    _check_config(cfg)
    I = interface_size(cfg)
    if hasattr(W_xi, "shape") and len(W_xi.shape) == 2 and int(W_xi.shape[1]) != I:
        Hc = int(W_xi.shape[0])
        raise ShapeError(
            f"W_xi: expected shape (Hc, I) = ({Hc}, {I}) where I = interface_size(N={cfg.N}, W={cfg.W}, "
            f"R={cfg.R}, nw={cfg.nw}) (read modes 1 + 2nw = {cfg.read_mode_width} per read head), "
            f"got {tuple(int(s) for s in W_xi.shape)}"
        )
    # the weights first, so that a controller output of the wrong width is reported on itself
    arrays = {"W_xi": W_xi, "b_xi": b_xi, "controller_output": controller_output, **(extra or {})}
    specs = {"W_xi": "Hc I", "b_xi": "I", "controller_output": "B Hc", **(extra_specs or {})}
    return check_arrays(arrays, specs, sizes=_sizes(cfg))


def _check_step(controller_output: Any, W_xi: Any, b_xi: Any, state: Any, cfg: Any,
                frozen_write_weights: Any = None) -> None:
    if not isinstance(state, AccessState):
        raise TypeError(f"state: expected an AccessState, got {type(state).__name__}")
    arrays, specs = fields("state", state, STATE_SPECS)
    arrays["frozen_write_weights"] = frozen_write_weights
    specs["frozen_write_weights"] = "?B nw N | unit"
    _check_interface_inputs(controller_output, W_xi, b_xi, cfg, arrays, specs)


def _check_step_backward(d_read_vectors: Any, d_new_state: Any, cache: Any) -> None:
    if not isinstance(cache, AccessCache):
        raise TypeError(f"cache: expected the AccessCache of access_step_forward, got {type(cache).__name__}")
    if d_new_state is not None and not isinstance(d_new_state, AccessState):
        raise TypeError(f"d_new_state: expected an AccessState (fields may be None) or None, "
                        f"got {type(d_new_state).__name__}")
    cfg = cache.cfg
    B = int(cache.new_memory.shape[0])
    arrays, specs = fields("d_new_state", d_new_state, {k: "?" + v.split("|")[0] for k, v in STATE_SPECS.items()})
    arrays["d_read_vectors"] = d_read_vectors
    specs["d_read_vectors"] = "?B R W"
    arrays["the forward's read vectors' memory"] = cache.new_memory
    specs["the forward's read vectors' memory"] = "B N W"
    check_arrays(arrays, specs, sizes={**_sizes(cfg), "B": B})


# ----------------------------------------------------------------------------- interface


class Interface(NamedTuple):
    """The activated interface (SPEC §5), in slice order.

    ``write_vectors [B, nw, W]``, ``erase_vectors [B, nw, W]`` (sigmoid), ``free_gates [B, R]``
    (sigmoid), ``allocation_gates [B, nw]`` (sigmoid), ``write_gates [B, nw]`` (sigmoid),
    ``read_modes [B, R, 1 + 2nw]`` (softmax over the last axis), ``write_keys [B, nw, W]``,
    ``write_strengths [B, nw]`` (raw), ``read_keys [B, R, W]``, ``read_strengths [B, R]`` (raw);
    with ``masked_content`` ``write_masks [B, nw, W]`` and ``read_masks [B, R, W]`` (sigmoid), with
    ``link_sharpness`` ``forward_sharpness [B, R]`` and ``backward_sharpness [B, R]`` (oneplus);
    ``None`` when the option is off.
    """

    write_vectors: Any
    erase_vectors: Any
    free_gates: Any
    allocation_gates: Any
    write_gates: Any
    read_modes: Any
    write_keys: Any
    write_strengths: Any
    read_keys: Any
    read_strengths: Any
    write_masks: Any = None
    read_masks: Any = None
    forward_sharpness: Any = None
    backward_sharpness: Any = None


class InterfaceCache(NamedTuple):
    """``linear``: the :class:`refmem.primitives.LinearCache`; ``interface``: the activated
    :class:`Interface`; ``cfg``: the :class:`AccessConfig`; ``raw``: the raw values of the
    oneplus slices (``{name: [B, ...]}``, empty without ``link_sharpness``)."""

    linear: P.LinearCache
    interface: Interface
    cfg: AccessConfig
    raw: Any = None


@checked_by(_check_interface_inputs)
def interface_forward(controller_output: Any, W_xi: Any, b_xi: Any, cfg: AccessConfig) -> tuple[Interface, InterfaceCache]:
    """``xi = h_c @ W_xi + b_xi`` sliced in SPEC §5 order, reshaped row-major and activated.

    Args:
        controller_output: ``[B, Hc]``.
        W_xi: ``[Hc, I]`` with ``I = interface_size(cfg)``.
        b_xi: ``[I]``.
        cfg: the :class:`AccessConfig` (sizes and convention).
    Returns:
        The activated :class:`Interface` and an :class:`InterfaceCache`.
    """
    xp = rx.namespace(controller_output, W_xi, b_xi)
    B = int(controller_output.shape[0])
    xi = P.linear(controller_output, W_xi, b_xi)
    lin_cache = P.LinearCache(controller_output, W_xi)
    parts = {}
    raws = {}
    start = 0
    for name, shape, act in interface_layout(cfg):
        width = 1
        for s in shape:
            width *= s
        raw = xp.reshape(xi[:, start:start + width], (B,) + shape)
        start += width
        if act == "sigmoid":
            raw = P.sigmoid(raw)
        elif act == "softmax":
            raw = P.softmax(raw, axis=-1)
        elif act == "oneplus":
            raws[name] = raw
            raw = P.oneplus(raw)
        parts[name] = raw
    iface = Interface(**parts)
    return iface, InterfaceCache(lin_cache, iface, cfg, raws)


def _check_interface_backward(d_interface: Any, cache: Any) -> None:
    if not isinstance(cache, InterfaceCache):
        raise TypeError(f"cache: expected the InterfaceCache of interface_forward, got {type(cache).__name__}")
    if not isinstance(d_interface, Interface):
        raise TypeError(f"d_interface: expected an Interface of gradients (fields may be None), "
                        f"got {type(d_interface).__name__}")
    iface = cache.interface
    arrays, specs = {}, {}
    for name in Interface._fields:
        ref = getattr(iface, name)
        if ref is None:  # an option's slice, off in this configuration
            continue
        arrays[f"d_interface.{name}"] = getattr(d_interface, name)
        specs[f"d_interface.{name}"] = "?" + " ".join(str(int(n)) for n in ref.shape)
    check_arrays(arrays, specs, precision_of={"the forward's interface": iface.free_gates})


@checked_by(_check_interface_backward)
def interface_backward(d_interface: Interface, cache: InterfaceCache) -> tuple[Any, Any, Any]:
    """Reverse of :func:`interface_forward`: ``(d_controller_output, d_W_xi, d_b_xi)``.

    Sigmoid slices: ``d ∘ s (1 - s)``; the read modes: the softmax VJP over the last
    axis; identity slices pass through. A ``None`` field is a zero gradient.

    Args:
        d_interface: an :class:`Interface` of gradients, each field the shape of that slice
            (``write_vectors [B, nw, W]``, ..., ``read_strengths [B, R]``) or ``None`` (zero);
            the whole may not be ``None``.
        cache: the :class:`InterfaceCache` of :func:`interface_forward`.

    Returns:
        d_controller_output: ``[B, Hc]``.
        d_W_xi: ``[Hc, I]``.
        d_b_xi: ``[I]``.

    Derivation: [docs/derivations/dnc.md, "10. The interface"](../derivations/dnc.md#10-the-interface-interface_forward)
    """
    iface = cache.interface
    B = int(iface.free_gates.shape[0])
    xp = rx.namespace(iface.free_gates)
    pieces = []
    for name, shape, act in interface_layout(cache.cfg):
        out = getattr(iface, name)
        d = getattr(d_interface, name)
        d = d if d is not None else xp.zeros(out.shape, dtype=out.dtype)
        if act == "sigmoid":
            d = d * out * (1.0 - out)
        elif act == "softmax":
            d = P.softmax_vjp(d, out, -1)
        elif act == "oneplus":
            d = d * P.sigmoid(cache.raw[name])
        pieces.append(xp.reshape(d, (B, -1)))
    d_xi = xp.concat(pieces, axis=-1)
    return P.linear_vjp(d_xi, cache.linear.x, cache.linear.W)


# ----------------------------------------------------------------------------- the step


class AccessCache(NamedTuple):
    """Everything :func:`access_step_backward` needs.

    ``cfg``; ``interface``: :class:`InterfaceCache`; ``usage``: :class:`~refmem.dnc.addressing.UsageCache`;
    ``write``: :class:`~refmem.dnc.addressing.WriteWeightsCache`; ``memory``:
    :class:`~refmem.dnc.addressing.MemoryCache`; ``link``: :class:`~refmem.dnc.addressing.LinkCache`;
    ``read``: :class:`~refmem.dnc.addressing.ReadWeightsCache`; ``new_memory [B, N, W]`` (``M_t``)
    and ``read_weights [B, R, N]`` (``wr_t``) for the read vectors.
    """

    cfg: AccessConfig
    interface: InterfaceCache
    usage: A.UsageCache
    write: A.WriteWeightsCache
    memory: A.MemoryCache
    link: A.LinkCache
    read: A.ReadWeightsCache
    new_memory: Any
    read_weights: Any


@checked_by(_check_step)
def access_step_forward(controller_output: Any, W_xi: Any, b_xi: Any, state: AccessState, cfg: AccessConfig,
                        frozen_write_weights: Any = None) -> tuple[Any, AccessState, AccessCache]:
    """One access step of SPEC §5 (interface, steps 1-10).

    Args:
        controller_output: ``[B, Hc]``.
        W_xi: ``[Hc, I]``, ``I = interface_size(cfg)``.
        b_xi: ``[I]``.
        state: the :class:`AccessState` at ``t-1``.
        cfg: the :class:`AccessConfig`.
        frozen_write_weights: ``[B, nw, N]`` or ``None``; under the ``deepmind``
            convention (stopped usage gradient), the value the usage update uses in
            place of ``state.write_weights`` (a finite-difference check freezes it at
            its recorded value, SPEC §6). Ignored by the ``paper`` convention.
    Returns:
        ``read_vectors [B, R, W]``, the new :class:`AccessState` and an :class:`AccessCache`.
    """
    conv = C.get(cfg.convention)
    iface, icache = interface_forward.unchecked(controller_output, W_xi, b_xi, cfg)
    usage, ucache = A.usage_forward.unchecked(state.usage, state.write_weights, iface.free_gates, state.read_weights,
                                    conv, frozen_write_weights=frozen_write_weights)
    ww, wcache = A.write_weights_forward.unchecked(state.memory, usage, iface.write_keys, iface.write_strengths,
                                         iface.allocation_gates, iface.write_gates, conv,
                                         write_masks=iface.write_masks)
    memory, mcache = A.memory_update_forward.unchecked(state.memory, ww, iface.erase_vectors, iface.write_vectors,
                                                       deallocation=ucache.retention if cfg.deallocation else None)
    link, precedence, lcache = A.temporal_linkage_forward.unchecked(state.link, state.precedence, ww)
    wr, rcache = A.read_weights_forward.unchecked(memory, iface.read_keys, iface.read_strengths, link, state.read_weights,
                                        iface.read_modes, conv, read_masks=iface.read_masks,
                                        forward_sharpness=iface.forward_sharpness,
                                        backward_sharpness=iface.backward_sharpness)
    read_vectors = wr @ memory
    new_state = AccessState(memory, wr, ww, link, precedence, usage)
    cache = AccessCache(cfg, icache, ucache, wcache, mcache, lcache, rcache, memory, wr)
    return read_vectors, new_state, cache


@checked_by(_check_step_backward)
def access_step_backward(d_read_vectors: Any, d_new_state: AccessState | None,
                         cache: AccessCache) -> tuple[Any, Any, Any, AccessState]:
    """Reverse of :func:`access_step_forward`, steps 10 to 1 then the interface.

    Args:
        d_read_vectors: ``[B, R, W]`` or ``None`` (zero).
        d_new_state: an :class:`AccessState` of gradients w.r.t. the new state; any
            field (or the whole) may be ``None`` meaning zero.
        cache: the :class:`AccessCache` of the forward.
    Returns:
        ``(d_controller_output [B, Hc], d_W_xi [Hc, I], d_b_xi [I], d_state)`` with
            ``d_state`` an :class:`AccessState` of gradients w.r.t. the state at ``t-1``
            (``write_weights`` is zero under the ``deepmind`` convention: its only path,
            the usage, is stopped).

    Derivation: [docs/derivations/dnc.md, "9. Read vectors (step 10) and the whole step"](../derivations/dnc.md#9-read-vectors-step-10-and-the-whole-step-access_step_forward)
    """
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
    g_read = A.read_weights_backward.unchecked(d_wr, cache.read)
    d_memory = P.add_optional(d_memory, g_read.memory)
    d_link = P.add_optional(d_new_state.link, g_read.link)
    # step 6: link and precedence
    g_link = A.temporal_linkage_backward.unchecked(d_link, d_new_state.precedence, cache.link)
    # step 5: memory
    g_mem = A.memory_update_backward.unchecked(d_memory, cache.memory)
    d_ww = P.add_optional(P.add_optional(d_new_state.write_weights, g_link.write_weights), g_mem.write_weights)
    # steps 2-4: write weights
    g_write = A.write_weights_backward.unchecked(d_ww, cache.write)
    d_usage = P.add_optional(d_new_state.usage, g_write.usage)
    # step 1: usage
    g_usage = A.usage_backward.unchecked(d_usage, cache.usage, d_retention=getattr(g_mem, "deallocation", None))
    d_iface = Interface(
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
        write_masks=getattr(g_write, "write_masks", None),
        read_masks=getattr(g_read, "read_masks", None),
        forward_sharpness=getattr(g_read, "forward_sharpness", None),
        backward_sharpness=getattr(g_read, "backward_sharpness", None),
    )
    d_h, d_W, d_b = interface_backward.unchecked(d_iface, cache.interface)
    d_state = AccessState(
        memory=g_mem.memory + g_write.memory,
        read_weights=g_read.prev_read_weights + g_usage.prev_read_weights,
        write_weights=g_usage.prev_write_weights,
        link=g_link.prev_link,
        precedence=g_link.prev_precedence,
        usage=g_usage.prev_usage,
    )
    return d_h, d_W, d_b, d_state
