"""SPEC §5 "Core": the DNC controllers, Sonnet's LSTM and its DeepRNN stack.

One LSTM layer (Sonnet ``snt.LSTM`` without peepholes, layer norm or internal
clipping, as deepmind/dnc builds it)::

    gates = [x ; h_prev] @ W + b                         W [I + H, 4H], b [4H]
    i, j, f, o = split(gates, 4)                         (this order)
    c = σ(f + forget_bias) ∘ c_prev + σ(i) ∘ tanh(j)     forget_bias = 1.0, added at run time
    h = tanh(c) ∘ σ(o)

The controller (seed 003's ``DNCoreLSTM`` / ``DNCoreDeepLSTM``) is ``L`` such layers
in Sonnet's ``DeepRNN``. With ``skip=True`` (Sonnet's default ``skip_connections``)
layer ``l > 1`` reads ``[x ; h^{l-1}]`` and the controller output is
``[h^1 ; ... ; h^L]``; with ``skip=False`` layer ``l > 1`` reads ``h^{l-1}`` and the
output is ``h^L``. ``L = 1`` is the single controller.

Clipping (deepmind/dnc ``DNC._clip_if_enabled``): with ``clip_value > 0`` the
controller output and every carried ``h`` and ``c`` are clipped to
``[-clip, clip]`` *after* the whole stack has run (so layer ``l`` reads the
unclipped ``h^{l-1}`` of the same step). The gradient of a clip is 1 inside the
closed range and 0 outside (TensorFlow's ``clip_by_value``); the branch is taken
on the real part so the complex step runs the same code.

Every ``*_forward`` returns ``(out, new_state, cache)``; every ``*_backward``
takes the gradients of the output and of the new state and returns those of the
input, of the previous state and of the parameters.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, NamedTuple

from .. import primitives as P
from .. import xp as rx
from ..errors import DomainError, ShapeError
from ..validation import check_arrays, check_size, checked_by, edge

__all__ = [
    "LSTMParams",
    "LSTMState",
    "LSTMCache",
    "lstm_step_forward",
    "lstm_step_backward",
    "ControllerConfig",
    "ControllerCache",
    "controller_initial_state",
    "controller_forward",
    "controller_backward",
    "clip_forward",
    "clip_backward",
]


# ----------------------------------------------------------------------------- clipping


@edge(x="...", clip_value="float >= 0")
def clip_forward(x: Any, clip_value: float) -> tuple[Any, Any]:
    """Clip ``x`` to ``[-clip, clip]`` when ``clip_value > 0`` (SPEC §5 Core).

    Returns ``(y, inside)`` where ``inside`` is a boolean array (``|Re x| ≤ clip``),
    or ``None`` when clipping is off (``clip_value <= 0``: ``y`` is ``x``).

    Args:
        x: ``[...]``, any shape.
        clip_value: the bound; ``<= 0`` disables the clip.

    Returns:
        ``y [...]`` (the shape of ``x``) and ``inside [...]`` (bool) or ``None``: the cache of
            :func:`clip_backward`.
    """
    if not clip_value > 0:
        return x, None
    xp = rx.namespace(x)
    re = P.real_part(x)
    hi = re > clip_value
    lo = re < -clip_value
    bound = xp.full(x.shape, float(clip_value), dtype=x.dtype)
    y = xp.where(hi, bound, xp.where(lo, -bound, x))
    return y, xp.logical_not(xp.logical_or(hi, lo))


@edge(d_y="?...", inside="?... | mask")
def clip_backward(d_y: Any, inside: Any) -> Any:
    """Gradient of :func:`clip_forward`: ``d_y`` inside the range, 0 outside.

    Args:
        d_y: ``[...]``, the gradient of ``y``, or ``None`` (zero; returned as ``None``).
        inside: the mask :func:`clip_forward` returned (its cache), or ``None`` (no clip).

    Returns:
        dx: ``[...]``, the gradient of ``x`` (``None`` when ``d_y`` is ``None``).

    Derivation: [docs/derivations/dnc_core.md, "3. Clipping"](../derivations/dnc_core.md#3-clipping)
    """
    if inside is None or d_y is None:
        return d_y
    xp = rx.namespace(d_y)
    return xp.where(inside, d_y, xp.zeros_like(d_y))


# ----------------------------------------------------------------------------- one LSTM layer


class LSTMParams(NamedTuple):
    """One Sonnet LSTM layer: ``W [I + H, 4H]`` (rows: input then hidden; columns: ``i, j, f, o``), ``b [4H]``."""

    W: Any
    b: Any


class LSTMState(NamedTuple):
    """``h [B, H]``, ``c [B, H]``."""

    h: Any
    c: Any


class LSTMCache(NamedTuple):
    """Intermediates of :func:`lstm_step_forward`.

    ``xh [B, I + H]`` (``[x ; h_prev]``), ``W [I + H, 4H]``, ``c_prev [B, H]``, and the
    activated gates ``i = σ(i)``, ``j = tanh(j)``, ``f = σ(f + forget_bias)``,
    ``o = σ(o)`` and ``tanh_c = tanh(c)``, each ``[B, H]``; ``I`` the input width.
    """

    xh: Any
    W: Any
    c_prev: Any
    i: Any
    j: Any
    f: Any
    o: Any
    tanh_c: Any
    I: int


def _check_lstm_step(x: Any, state: Any, params: Any, forget_bias: float = 1.0, where: str = "") -> None:
    if not isinstance(state, LSTMState):
        raise TypeError(f"{where}state: expected an LSTMState(h, c), got {type(state).__name__}")
    if not isinstance(params, LSTMParams):
        raise TypeError(f"{where}params: expected LSTMParams(W, b), got {type(params).__name__}")
    sizes = {}  # read H and I off the parameters, so that an input of the wrong width is reported on itself
    W, b = params.W, params.b
    if len(getattr(b, "shape", ())) == 1 and int(b.shape[0]) % 4 == 0 and len(getattr(W, "shape", ())) == 2 \
            and int(W.shape[1]) == int(b.shape[0]) and int(W.shape[0]) > int(b.shape[0]) // 4:
        sizes = {"H": int(b.shape[0]) // 4, "I": int(W.shape[0]) - int(b.shape[0]) // 4}
    check_arrays({"params.W": params.W, "params.b": params.b, "x": x, "state.h": state.h, "state.c": state.c},
                 {"params.W": "(I+H) (4*H)", "params.b": "(4*H)", "x": "B I", "state.h": "B H", "state.c": "B H"},
                 sizes=sizes, where=where)


@checked_by(_check_lstm_step)
def lstm_step_forward(x: Any, state: LSTMState, params: LSTMParams,
                      forget_bias: float = 1.0) -> tuple[Any, LSTMState, LSTMCache]:
    """One Sonnet LSTM step (SPEC §5 Core, controller equations).

    Args:
        x: ``[B, I]``.
        state: ``LSTMState(h [B, H], c [B, H])`` at ``t-1``.
        params: ``LSTMParams(W [I + H, 4H], b [4H])``.
        forget_bias: added to the forget-gate pre-activation (Sonnet default 1.0).
    Returns:
        ``(h [B, H], LSTMState(h, c), cache)``.
    """
    xp = rx.namespace(x, state.h, state.c, params.W, params.b)
    I = int(x.shape[1])
    H = int(state.h.shape[1])
    xh = xp.concat([x, state.h], axis=1)
    gates = xh @ params.W + params.b
    i = P.sigmoid(gates[:, 0:H])
    j = xp.tanh(gates[:, H:2 * H])
    f = P.sigmoid(gates[:, 2 * H:3 * H] + forget_bias)
    o = P.sigmoid(gates[:, 3 * H:4 * H])
    c = f * state.c + i * j
    tanh_c = xp.tanh(c)
    h = tanh_c * o
    return h, LSTMState(h, c), LSTMCache(xh, params.W, state.c, i, j, f, o, tanh_c, I)


@edge({"cache.tanh_c": "B H"}, d_h="B H", d_c="?B H")
def lstm_step_backward(d_h: Any, d_c: Any, cache: LSTMCache) -> tuple[Any, LSTMState, LSTMParams]:
    """Gradients of :func:`lstm_step_forward`.

    Args:
        d_h: total gradient of the new ``h`` ``[B, H]`` (output and carried state; not ``None``).
        d_c: gradient of the new ``c`` ``[B, H]`` (``None`` for zero).
        cache: the :class:`LSTMCache` of :func:`lstm_step_forward`.
    Returns:
        ``(dx [B, I], LSTMState(dh_prev, dc_prev), LSTMParams(dW, db))``.

    ``dc = d_c + d_h ∘ o ∘ (1 - tanh²c)``; ``do = d_h ∘ tanh c``;
    pre-activation gradients ``di = dc ∘ j ∘ i(1-i)``, ``dj = dc ∘ i ∘ (1-j²)``,
    ``df = dc ∘ c_prev ∘ f(1-f)``, ``do ∘ o(1-o)``; then the linear map.

    Derivation: [docs/derivations/dnc_core.md, "1. One Sonnet LSTM layer"](../derivations/dnc_core.md#1-one-sonnet-lstm-layer)
    """
    xp = rx.namespace(d_h)
    i, j, f, o, tanh_c = cache.i, cache.j, cache.f, cache.o, cache.tanh_c
    dc = d_h * o * (1.0 - tanh_c * tanh_c)
    if d_c is not None:
        dc = dc + d_c
    d_o = d_h * tanh_c
    d_gates = xp.concat([
        dc * j * i * (1.0 - i),
        dc * i * (1.0 - j * j),
        dc * cache.c_prev * f * (1.0 - f),
        d_o * o * (1.0 - o),
    ], axis=1)
    dW = xp.permute_dims(cache.xh, (1, 0)) @ d_gates
    db = xp.sum(d_gates, axis=0)
    d_xh = d_gates @ xp.permute_dims(cache.W, (1, 0))
    dx = d_xh[:, :cache.I]
    dh_prev = d_xh[:, cache.I:]
    dc_prev = dc * f
    return dx, LSTMState(dh_prev, dc_prev), LSTMParams(dW, db)


# ----------------------------------------------------------------------------- the controller stack


@dataclass(frozen=True)
class ControllerConfig:
    """The DNC controller: ``layers`` Sonnet LSTMs of width ``hidden`` in a DeepRNN.

    ``input_size``: width of the controller input (``D + R W`` in the DNC);
    ``skip``: Sonnet DeepRNN skip connections; ``forget_bias``: added at run time;
    ``clip_value``: clip of the output and carried state (0 disables).
    """

    input_size: int
    hidden: int
    layers: int = 1
    skip: bool = True
    forget_bias: float = 1.0
    clip_value: float = 0.0

    def __post_init__(self) -> None:
        for name in ("input_size", "hidden", "layers"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise DomainError(f"ControllerConfig.{name}: expected an int >= 1, got {v!r}")
        for name in ("clip_value", "forget_bias"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) \
                    or (name == "clip_value" and v < 0):
                raise DomainError(f"ControllerConfig.{name}: expected a finite number"
                                  f"{' >= 0' if name == 'clip_value' else ''}, got {v!r}")

    def layer_input_size(self, layer: int) -> int:
        """Input width of layer ``layer`` (0-based): ``I``, then ``I + H`` (skip) or ``H``."""
        if layer == 0:
            return self.input_size
        return self.input_size + self.hidden if self.skip else self.hidden

    @property
    def output_size(self) -> int:
        """``L H`` with skip connections, else ``H``."""
        return self.layers * self.hidden if self.skip else self.hidden


class ControllerCache(NamedTuple):
    """Intermediates of :func:`controller_forward`.

    ``layers``: one :class:`LSTMCache` per layer; ``out_inside [B, Ho]``, and per
    layer ``h_inside``/``c_inside [B, H]``: the clip masks (``None`` without clip);
    ``cfg``: the :class:`ControllerConfig`.
    """

    layers: tuple
    out_inside: Any
    h_inside: tuple
    c_inside: tuple
    cfg: ControllerConfig


def controller_initial_state(xp: Any, B: int, cfg: ControllerConfig, dtype: Any = None) -> tuple:
    """All-zero state: one ``LSTMState(h [B, H], c [B, H])`` per layer."""
    if not isinstance(cfg, ControllerConfig):
        raise TypeError(f"cfg: expected a ControllerConfig, got {type(cfg).__name__}")
    check_size("B", B)
    dtype = xp.float64 if dtype is None else dtype
    return tuple(LSTMState(xp.zeros((B, cfg.hidden), dtype=dtype), xp.zeros((B, cfg.hidden), dtype=dtype))
                 for _ in range(cfg.layers))


def _check_controller(x: Any, state: Any, params: Any, cfg: Any) -> None:
    if not isinstance(cfg, ControllerConfig):
        raise TypeError(f"cfg: expected a ControllerConfig, got {type(cfg).__name__}")
    if len(params) != cfg.layers or len(state) != cfg.layers:
        raise ShapeError(f"controller: expected {cfg.layers} layers of params and state, "
                         f"got {len(params)} and {len(state)}")
    arrays, specs = {"x": x}, {"x": "B I"}
    for layer in range(cfg.layers):
        st, p, n = state[layer], params[layer], layer + 1
        if not isinstance(st, LSTMState) or not isinstance(p, LSTMParams):
            raise TypeError(f"layer {n}: expected LSTMState and LSTMParams, got {type(st).__name__} and "
                            f"{type(p).__name__}")
        arrays.update({f"state[{layer}].h": st.h, f"state[{layer}].c": st.c, f"b_lstm{n}": p.b})
        specs.update({f"state[{layer}].h": "B H", f"state[{layer}].c": "B H", f"b_lstm{n}": "(4*H)"})
    check_arrays(arrays, specs, sizes={"I": cfg.input_size, "H": cfg.hidden})
    for layer in range(cfg.layers):  # each layer its own input width I_l
        check_arrays({"x": x, f"W_lstm{layer + 1}": params[layer].W}, {"x": "B *", f"W_lstm{layer + 1}": "(I_l+H) (4*H)"},
                     sizes={"I_l": cfg.layer_input_size(layer), "H": cfg.hidden})


@checked_by(_check_controller)
def controller_forward(x: Any, state: tuple, params: tuple,
                       cfg: ControllerConfig) -> tuple[Any, tuple, ControllerCache]:
    """The controller for one time step (SPEC §5 Core; seed 003 ``DNCoreLSTM``/``DNCoreDeepLSTM``).

    Args:
        x: controller input ``[B, I]`` (the DNC passes ``[x_t ; flatten(r_{t-1})]``).
        state: per layer ``LSTMState(h [B, H], c [B, H])`` at ``t-1``.
        params: per layer ``LSTMParams(W [I_l + H, 4H], b [4H])`` (see
            :meth:`ControllerConfig.layer_input_size`).
        cfg: :class:`ControllerConfig`.
    Returns:
        ``(output [B, Ho], new_state, cache)``, ``Ho = cfg.output_size``; output and
            state clipped when ``cfg.clip_value > 0``.
    """
    xp = rx.namespace(x)
    hs, cs, caches = [], [], []
    below = None
    for layer in range(cfg.layers):
        if layer == 0:
            inp = x
        elif cfg.skip:
            inp = xp.concat([x, below], axis=1)
        else:
            inp = below
        p = params[layer]
        h, st, cache = lstm_step_forward.unchecked(inp, state[layer], p, cfg.forget_bias)
        hs.append(h)
        cs.append(st.c)
        caches.append(cache)
        below = h
    raw_out = xp.concat(hs, axis=1) if (cfg.skip and cfg.layers > 1) else hs[-1]
    out, out_inside = clip_forward.unchecked(raw_out, cfg.clip_value)
    new_state, h_in, c_in = [], [], []
    for h, c in zip(hs, cs):
        hc, hm = clip_forward.unchecked(h, cfg.clip_value)
        cc, cm = clip_forward.unchecked(c, cfg.clip_value)
        new_state.append(LSTMState(hc, cc))
        h_in.append(hm)
        c_in.append(cm)
    return out, tuple(new_state), ControllerCache(tuple(caches), out_inside, tuple(h_in), tuple(c_in), cfg)


def _check_controller_backward(d_out: Any, d_new_state: Any, cache: Any) -> None:
    if not isinstance(cache, ControllerCache):
        raise TypeError(f"cache: expected the ControllerCache of controller_forward, got {type(cache).__name__}")
    cfg = cache.cfg
    arrays = {"the forward's input": cache.layers[0].xh, "d_out": d_out}
    specs = {"the forward's input": "B *", "d_out": f"B {cfg.output_size}"}
    for layer, st in enumerate(d_new_state or ()):
        if st is not None:
            arrays.update({f"d_new_state[{layer}].h": st.h, f"d_new_state[{layer}].c": st.c})
            specs.update({f"d_new_state[{layer}].h": f"?B {cfg.hidden}", f"d_new_state[{layer}].c": f"?B {cfg.hidden}"})
    check_arrays(arrays, specs)


@checked_by(_check_controller_backward)
def controller_backward(d_out: Any, d_new_state: tuple | None,
                        cache: ControllerCache) -> tuple[Any, tuple, tuple]:
    """Gradients of :func:`controller_forward`.

    Args:
        d_out: ``[B, Ho]`` gradient of the controller output (not ``None``).
        d_new_state: per layer ``LSTMState(dh [B, H], dc [B, H])`` of the carried state (entries or
            the whole tuple may be ``None`` for zero).
        cache: :class:`ControllerCache`.
    Returns:
        ``(dx [B, I], d_prev_state (per layer LSTMState), d_params (per layer LSTMParams))``.

    Derivation: [docs/derivations/dnc_core.md, "2. The controller stack"](../derivations/dnc_core.md#2-the-controller-stack-sonnet-deeprnn) (clipping: section 3)
    """
    cfg = cache.cfg
    H, L = cfg.hidden, cfg.layers
    d_raw = clip_backward.unchecked(d_out, cache.out_inside)
    d_h = []
    for layer in range(L):
        if cfg.skip and L > 1:
            d_h.append(d_raw[:, layer * H:(layer + 1) * H])
        else:
            d_h.append(d_raw if layer == L - 1 else None)
    d_c: list[Any] = [None] * L
    if d_new_state is not None:
        for layer in range(L):
            st = d_new_state[layer]
            if st is None:
                continue
            if st.h is not None:
                g = clip_backward.unchecked(st.h, cache.h_inside[layer])
                d_h[layer] = g if d_h[layer] is None else d_h[layer] + g
            if st.c is not None:
                d_c[layer] = clip_backward.unchecked(st.c, cache.c_inside[layer])
    dx = None
    d_prev: list[Any] = [None] * L
    d_params: list[Any] = [None] * L
    xp = None
    for layer in reversed(range(L)):
        lc = cache.layers[layer]
        g = d_h[layer]
        if g is None:
            xp = rx.namespace(lc.xh)
            g = xp.zeros(lc.tanh_c.shape, dtype=lc.tanh_c.dtype)
        d_in, d_prev[layer], d_params[layer] = lstm_step_backward.unchecked(g, d_c[layer], lc)
        if layer == 0:
            dx = d_in if dx is None else dx + d_in
        elif cfg.skip:
            I = cfg.input_size
            dx = d_in[:, :I] if dx is None else dx + d_in[:, :I]
            below = d_in[:, I:]
            d_h[layer - 1] = below if d_h[layer - 1] is None else d_h[layer - 1] + below
        else:
            d_h[layer - 1] = d_in if d_h[layer - 1] is None else d_h[layer - 1] + d_in
    return dx, tuple(d_prev), tuple(d_params)
