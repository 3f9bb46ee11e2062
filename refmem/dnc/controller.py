"""SPEC §5 "Core": the DNC controllers, Sonnet's LSTM and its DeepRNN stack.

One LSTM layer (Sonnet `snt.LSTM` without peepholes, layer norm or internal clipping, as
deepmind/dnc builds it):

```text
gates = [x ; h_prev] @ W + b                         W [I + H, 4H], b [4H]
i, j, f, o = split(gates, 4)                         (this order)
c = σ(f + forget_bias) ∘ c_prev + σ(i) ∘ tanh(j)     forget_bias = 1.0, added at run time
h = tanh(c) ∘ σ(o)
```

The controller (seed 003's `DNCoreLSTM` / `DNCoreDeepLSTM`) is `L` such layers in Sonnet's
`DeepRNN`. With `skip=True` (Sonnet's default `skip_connections`) layer `l > 1` reads
`[x ; h^{l-1}]` and the controller output is `[h^1 ; ... ; h^L]`; with `skip=False` layer
`l > 1` reads `h^{l-1}` and the output is `h^L`. `L = 1` is the single controller.

Clipping (deepmind/dnc `DNC._clip_if_enabled`): with `clip_value > 0` the controller output and
every carried `h` and `c` are clipped to `[-clip, clip]` *after* the whole stack has run (so
layer `l` reads the unclipped `h^{l-1}` of the same step). The gradient of a clip is 1 inside
the closed range and 0 outside (TensorFlow's `clip_by_value`); the branch is taken on the real
part so the complex step runs the same code.

The pairs follow [the backward rule](../conventions.md): every forward returns its outputs (the
output and the new state) in one NamedTuple and a cache; every backward takes the gradients of
those outputs and the cache and returns the gradients of the input, the previous state and the
parameters. The maths, which the core calls directly: [`lstm_step`][refmem.dnc.controller.lstm_step],
[`lstm_step_vjp`][refmem.dnc.controller.lstm_step_vjp], [`controller`][refmem.dnc.controller.controller],
[`controller_vjp`][refmem.dnc.controller.controller_vjp], [`clip`][refmem.dnc.controller.clip],
[`clip_vjp`][refmem.dnc.controller.clip_vjp].
"""

from dataclasses import dataclass
from typing import Any, NamedTuple

from .. import primitives as P
from .. import xp as rx
from ..errors import ShapeError
from ..validation import Array, Config, Mask, NonNegative, Size, checked, is_trusted, old_call_arguments, warn_old_call

__all__ = [
    "LSTMParams", "LSTMState",
    "LSTMStepOutputs", "LSTMStepCache", "LSTMStepGrads", "lstm_step", "lstm_step_vjp",
    "lstm_step_forward", "lstm_step_backward",
    "ControllerConfig", "controller_initial_state", "check_layers",
    "ControllerOutputs", "ControllerCache", "ControllerGrads", "controller", "controller_vjp",
    "controller_forward", "controller_backward",
    "ClipOutputs", "ClipCache", "ClipGrads", "clip", "clip_vjp", "clip_forward", "clip_backward",
]


def gate_width(H: int) -> int:
    """`G = 4H`, the width of an LSTM layer's gates."""
    return 4 * H


def input_width(IH: int, H: int) -> int:
    """`I = IH - H`, the input width an LSTM layer's `W` of `IH` rows reads (its input, then the hidden state)."""
    return IH - H


# ============================================================================= clipping


class ClipOutputs(NamedTuple):
    """The output of [`clip_forward`][refmem.dnc.controller.clip_forward]."""

    y: Array["..."]
    """`x` clipped to `[-clip, clip]` (`x` itself when clipping is off)."""


class ClipCache(NamedTuple):
    """What [`clip_backward`][refmem.dnc.controller.clip_backward] needs."""

    y: Array["..."]
    """The output (its shape and dtype)."""
    inside: Mask["..."] | None
    """`|Re x| ≤ clip` (bool), or `None` when clipping is off."""


class ClipGrads(NamedTuple):
    """The gradient of [`clip_forward`][refmem.dnc.controller.clip_forward]'s argument."""

    x: Array["..."]
    """The gradient of `x`."""


def clip(x: Any, clip_value: float) -> tuple[Any, Any]:
    """Clip `x` to `[-clip, clip]` when `clip_value > 0` (SPEC §5 Core), unchecked: `(y, inside)`,
    `inside` the boolean mask `|Re x| ≤ clip`, or `None` when clipping is off (`y` is `x`)."""
    if not clip_value > 0:
        return x, None
    xp = rx.namespace(x)
    re = P.real_part(x)
    hi = re > clip_value
    lo = re < -clip_value
    bound = xp.full(x.shape, float(clip_value), dtype=x.dtype)
    y = xp.where(hi, bound, xp.where(lo, -bound, x))
    return y, xp.logical_not(xp.logical_or(hi, lo))


def clip_vjp(d_y: Any, inside: Any) -> Any:
    """The gradient of `x` for [`clip`][refmem.dnc.controller.clip], unchecked: `d_y` inside the range, 0
    outside; `d_y` itself when `inside` is `None` (no clip) or `d_y` is `None`."""
    if inside is None or d_y is None:
        return d_y
    xp = rx.namespace(d_y)
    return xp.where(inside, d_y, xp.zeros_like(d_y))


@checked
def clip_forward(x: Array["..."], *, clip_value: NonNegative) -> tuple[ClipOutputs, ClipCache]:
    """Clip `x` to `[-clip, clip]` when `clip_value > 0` (SPEC §5 Core); `clip_value = 0` switches it off.

    Args:
        x: `[...]`, any shape.
        clip_value: the bound, a finite number >= 0 (keyword-only); 0 disables the clip.

    Returns:
        outputs: a [`ClipOutputs`][refmem.dnc.controller.ClipOutputs] `(y [...])`, the shape of `x`.
        cache: a [`ClipCache`][refmem.dnc.controller.ClipCache] (`inside`, the mask `|Re x| ≤ clip`, or
            `None` without clipping).
    """
    y, inside = clip(x, clip_value)
    return ClipOutputs(y), ClipCache(y, inside)


def _old_clip_backward(*args: Any, **kwargs: Any) -> Any:
    """The 0.1 form `clip_backward(d_y, inside)`, deprecated: it returns the array `dx` (`None` for a
    `None` `d_y`)."""
    given = dict(zip(("d_out", "cache"), args))
    if len(args) > 2 or set(given) & set(kwargs):
        raise TypeError("clip_backward() takes (d_out, cache)")
    given.update(kwargs)
    if "d_y" in given:
        given["d_out"] = given.pop("d_y")
    if "inside" in given:
        given["cache"] = given.pop("inside")
    if set(given) != {"d_out", "cache"}:
        raise TypeError("clip_backward() takes (d_out, cache)")
    d_out, cache = given["d_out"], given["cache"]
    if type(cache) is ClipCache:
        if isinstance(d_out, tuple):
            return clip_backward(d_out, cache)
        warn_old_call("clip_backward(d_y, cache)", "clip_backward((d_y,), cache).x")
        return None if d_out is None else clip_backward((d_out,), cache).x
    warn_old_call("clip_backward(d_y, inside)", "clip_backward((d_y,), cache).x with the ClipCache of clip_forward")
    if d_out is None:
        return None
    return clip_backward((d_out,), ClipCache(d_out, cache)).x


@checked(legacy=_old_clip_backward)
def clip_backward(d_out: ClipOutputs, cache: ClipCache) -> ClipGrads:
    """VJP of [`clip_forward`][refmem.dnc.controller.clip_forward]: the gradient passes inside the
    closed range and is 0 outside (TensorFlow's `clip_by_value`).

    Args:
        d_out: a [`ClipOutputs`][refmem.dnc.controller.ClipOutputs] (or a 1-tuple): the gradient of
            `y [...]` (`None`: zero).
        cache: the [`ClipCache`][refmem.dnc.controller.ClipCache] of the forward.

    Returns:
        grads: a [`ClipGrads`][refmem.dnc.controller.ClipGrads] `(x [...])`.

    Derivation: [docs/derivations/dnc_core.md, "3. Clipping"](../derivations/dnc_core.md#3-clipping)
    """
    (d,) = d_out
    return ClipGrads(clip_vjp(P.zeros_if_none(d, cache.y), cache.inside))


# ============================================================================= one LSTM layer


class LSTMParams(NamedTuple):
    """One Sonnet LSTM layer; gradients use the same type."""

    W: Array["IH G"]
    """`[I + H, 4H]`: rows the input then the hidden state, columns the gates `i, j, f, o`."""
    b: Array["G"]
    """`[4H]`."""


class LSTMState(NamedTuple):
    """The state of one LSTM layer; in a gradient either field may be `None` (zero)."""

    h: Array["B H"]
    """The hidden state."""
    c: Array["B H"]
    """The cell state."""


class LSTMStepOutputs(NamedTuple):
    """The outputs of [`lstm_step_forward`][refmem.dnc.controller.lstm_step_forward]."""

    h: Array["B H"]
    """The new hidden state, the layer's output."""
    state: LSTMState
    """The new [`LSTMState`][refmem.dnc.controller.LSTMState] `(h, c)` (the same `h`)."""


class LSTMStepCache(NamedTuple):
    """Intermediates of [`lstm_step_forward`][refmem.dnc.controller.lstm_step_forward]."""

    xh: Array["B IH"]
    """`[x ; h_prev]`."""
    W: Array["IH G"]
    """The weights."""
    c_prev: Array["B H"]
    """The previous cell state."""
    i: Array["B H"]
    """`σ(i)`."""
    j: Array["B H"]
    """`tanh(j)`."""
    f: Array["B H"]
    """`σ(f + forget_bias)`."""
    o: Array["B H"]
    """`σ(o)`."""
    tanh_c: Array["B H"]
    """`tanh(c)`."""
    I: int
    """The input width."""


class LSTMStepGrads(NamedTuple):
    """The gradients of [`lstm_step_forward`][refmem.dnc.controller.lstm_step_forward]'s arguments."""

    x: Array["B I"]
    """The gradient of `x`."""
    state: LSTMState
    """The gradients of the previous state `(h, c)`."""
    params: LSTMParams
    """The gradients of the parameters `(W, b)`."""


def lstm_step(x: Any, state: LSTMState, params: LSTMParams, forget_bias: float = 1.0) -> tuple[Any, Any, LSTMStepCache]:
    """One Sonnet LSTM step (SPEC §5 Core), unchecked: `(h, c, cache)`."""
    xp = rx.namespace(x, state.h, state.c, params.W, params.b)
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
    return h, c, LSTMStepCache(xh, params.W, state.c, i, j, f, o, tanh_c, int(x.shape[1]))


def lstm_step_vjp(d_h: Any, d_c: Any, cache: LSTMStepCache) -> LSTMStepGrads:
    """The gradients of [`lstm_step`][refmem.dnc.controller.lstm_step] from the total gradient of the new
    `h` (output and carried state) and that of the new `c` (either may be `None`, zero), unchecked.

    `dc = d_c + d_h ∘ o ∘ (1 - tanh²c)`; `do = d_h ∘ tanh c`; the pre-activation gradients
    `di = dc ∘ j ∘ i(1-i)`, `dj = dc ∘ i ∘ (1-j²)`, `df = dc ∘ c_prev ∘ f(1-f)`, `do ∘ o(1-o)`; then
    the linear map.
    """
    xp = rx.namespace(cache.xh)
    i, j, f, o, tanh_c = cache.i, cache.j, cache.f, cache.o, cache.tanh_c
    if d_h is None:
        d_h = xp.zeros_like(tanh_c)
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
    return LSTMStepGrads(d_xh[:, :cache.I], LSTMState(d_xh[:, cache.I:], dc * f), LSTMParams(dW, db))


@checked(derive={"G": gate_width, "I": input_width})
def lstm_step_forward(x: Array["B I"], state: LSTMState, params: LSTMParams, *,
                      forget_bias: float = 1.0) -> tuple[LSTMStepOutputs, LSTMStepCache]:
    """One Sonnet LSTM step (SPEC §5 Core, controller equations).

    Args:
        x: `[B, I]`.
        state: the [`LSTMState`][refmem.dnc.controller.LSTMState] `(h [B, H], c [B, H])` at `t-1`.
        params: the [`LSTMParams`][refmem.dnc.controller.LSTMParams] `(W [I + H, 4H], b [4H])`.
        forget_bias: added to the forget-gate pre-activation, a finite number (Sonnet's 1.0; keyword-only).

    Returns:
        outputs: an [`LSTMStepOutputs`][refmem.dnc.controller.LSTMStepOutputs] `(h [B, H], state)`,
            `state` the new [`LSTMState`][refmem.dnc.controller.LSTMState] `(h, c)`.
        cache: an [`LSTMStepCache`][refmem.dnc.controller.LSTMStepCache].
    """
    h, c, cache = lstm_step(x, state, params, forget_bias)
    return LSTMStepOutputs(h, LSTMState(h, c)), cache


def _old_lstm_step_backward(*args: Any, **kwargs: Any) -> LSTMStepGrads:
    """The 0.1 form `lstm_step_backward(d_h, d_c, cache)`, deprecated (it returned `(dx, d_state, d_params)`,
    the order of the new gradients)."""
    if len(args) == 2 and not kwargs:
        from .addressing import _not_outputs

        raise _not_outputs("d_out", LSTMStepOutputs, args[0])
    given = old_call_arguments("lstm_step_backward", ("d_h", "d_c", "cache"), args, kwargs)
    if set(given) == {"d_out", "cache"}:
        return lstm_step_backward(given["d_out"], given["cache"])
    warn_old_call("lstm_step_backward(d_h, d_c, cache)",
                  "lstm_step_backward(LSTMStepOutputs(h=d_h, state=LSTMState(None, d_c)), cache)")
    return lstm_step_backward(LSTMStepOutputs(given.get("d_h"), LSTMState(None, given.get("d_c"))), given["cache"])


@checked(legacy=_old_lstm_step_backward)
def lstm_step_backward(d_out: LSTMStepOutputs, cache: LSTMStepCache) -> LSTMStepGrads:
    """VJP of [`lstm_step_forward`][refmem.dnc.controller.lstm_step_forward].

    The gradient of the new `h` is `d_out.h + d_out.state.h` (the output and the carried state are
    the same array). `dc = d_c + d_h ∘ o ∘ (1 - tanh²c)`; `do = d_h ∘ tanh c`; pre-activation
    gradients `di = dc ∘ j ∘ i(1-i)`, `dj = dc ∘ i ∘ (1-j²)`, `df = dc ∘ c_prev ∘ f(1-f)`,
    `do ∘ o(1-o)`; then the linear map.

    Args:
        d_out: an [`LSTMStepOutputs`][refmem.dnc.controller.LSTMStepOutputs] (or a tuple in its order) of
            the gradients of `h [B, H]` and of the new `state` (an [`LSTMState`][refmem.dnc.controller.LSTMState]
            `(h [B, H], c [B, H])`); either, and either field of the state, may be `None` (zero).
        cache: the [`LSTMStepCache`][refmem.dnc.controller.LSTMStepCache] of the forward.

    Returns:
        grads: an [`LSTMStepGrads`][refmem.dnc.controller.LSTMStepGrads] `(x [B, I], state, params)`:
            `state` an [`LSTMState`][refmem.dnc.controller.LSTMState] `(h [B, H], c [B, H])` of the
            previous state's gradients, `params` an [`LSTMParams`][refmem.dnc.controller.LSTMParams]
            `(W [I + H, 4H], b [4H])`.

    Derivation: [docs/derivations/dnc_core.md, "1. One Sonnet LSTM layer"](../derivations/dnc_core.md#1-one-sonnet-lstm-layer)
    """
    d_h, d_state = d_out
    d_c = None
    if d_state is not None:
        d_h = P.add_optional(d_h, d_state.h)
        d_c = d_state.c
    return lstm_step_vjp(d_h, d_c, cache)


# ============================================================================= the controller stack


@dataclass(frozen=True)
class ControllerConfig(Config):
    """The DNC controller: `layers` Sonnet LSTMs of width `hidden` in a DeepRNN.

    Validated on construction, strictly by type. An argument annotated `ControllerConfig` binds
    the letters `I` (`input_size`), `H` (`hidden`), `G = 4H` and `Hc` (the output width).

    Attributes:
        input_size: width of the controller input (`D + R W` in the DNC).
        hidden: LSTM width per layer.
        layers: the number of layers.
        skip: Sonnet DeepRNN skip connections.
        forget_bias: added to the forget gate at run time.
        clip_value: clip of the output and carried state, a finite number >= 0 (0 disables).
    """

    input_size: Size
    hidden: Size
    layers: Size = 1
    skip: bool = True
    forget_bias: float = 1.0
    clip_value: NonNegative = 0.0

    def sizes(self) -> dict[str, int]:
        """The letters: `I`, `H`, `G = 4H`, `Hc`."""
        return {"I": self.input_size, "H": self.hidden, "G": gate_width(self.hidden), "Hc": self.output_size}

    def layer_input_size(self, layer: int) -> int:
        """Input width of layer `layer` (0-based): `I`, then `I + H` (skip) or `H`."""
        if layer == 0:
            return self.input_size
        return self.input_size + self.hidden if self.skip else self.hidden

    @property
    def output_size(self) -> int:
        """`L H` with skip connections, else `H`."""
        return self.layers * self.hidden if self.skip else self.hidden


@checked
def controller_initial_state(xp: Any, B: Size, cfg: ControllerConfig, dtype: Any = None) -> tuple[LSTMState, ...]:
    """The all-zero controller state: one [`LSTMState`][refmem.dnc.controller.LSTMState]
    `(h [B, H], c [B, H])` per layer.

    Args:
        xp: the namespace to create the arrays in.
        B: the batch size.
        cfg: the [`ControllerConfig`][refmem.dnc.controller.ControllerConfig].
        dtype: floating dtype (default `xp.float64`).

    Returns:
        state: a tuple of [`LSTMState`][refmem.dnc.controller.LSTMState], one per layer.
    """
    dtype = xp.float64 if dtype is None else dtype
    return tuple(LSTMState(xp.zeros((B, cfg.hidden), dtype=dtype), xp.zeros((B, cfg.hidden), dtype=dtype))
                 for _ in range(cfg.layers))


def check_layers(params: Any, cfg: ControllerConfig, state: Any = None, B: int | None = None,
                 label: str = "params", state_label: str = "state") -> None:
    """What the annotations of a layer stack cannot say: `cfg.layers` layers of parameters (and of
    state), layer `l`'s `W` of `layer_input_size(l) + H` rows, every layer's state of batch `B`.

    Raises:
        refmem.errors.ShapeError: naming the layer, e.g. `params[1].W: expected shape (I_l + H, 4H) = (7, 8), got (6, 8)`.
    """
    if is_trusted():  # refmem's own derivative loop, after one checked call
        return
    L, H = cfg.layers, cfg.hidden
    for name, seq in ((label, params), (state_label, state)):
        if seq is not None and len(seq) != L:
            raise ShapeError(f"{name}: expected {L} controller layer{'s' if L > 1 else ''} (cfg.layers), "
                             f"got {len(seq)}")
    for layer, p in enumerate(params):
        want = (cfg.layer_input_size(layer) + H, 4 * H)
        got = tuple(int(s) for s in p.W.shape)
        if got != want:
            raise ShapeError(f"{label}[{layer}].W: expected shape (I_l + H, 4H) = {want}, got {got} "
                             f"(layer {layer + 1} reads {cfg.layer_input_size(layer)} inputs)")
    if state is not None and B is not None:
        for layer, st in enumerate(state):
            for field in ("h", "c"):
                got = tuple(int(s) for s in getattr(st, field).shape)
                if got[0] != B:
                    raise ShapeError(f"{state_label}[{layer}].{field}: expected shape (B, H) = ({B}, {H}), got "
                                     f"{got} (B = {B} from the other arguments)")


class ControllerOutputs(NamedTuple):
    """The outputs of [`controller_forward`][refmem.dnc.controller.controller_forward]."""

    output: Array["B Hc"]
    """The controller output `h_c` (clipped when `clip_value > 0`)."""
    state: tuple[LSTMState, ...]
    """The new state, one [`LSTMState`][refmem.dnc.controller.LSTMState] per layer (clipped too)."""


class ControllerCache(NamedTuple):
    """Intermediates of [`controller_forward`][refmem.dnc.controller.controller_forward]."""

    layers: tuple[LSTMStepCache, ...]
    """One [`LSTMStepCache`][refmem.dnc.controller.LSTMStepCache] per layer."""
    out_inside: Any
    """The clip mask of the output, or `None` without clip."""
    h_inside: tuple
    """Per layer the clip mask of `h` (or `None`)."""
    c_inside: tuple
    """Per layer the clip mask of `c` (or `None`)."""
    cfg: ControllerConfig
    """The config."""
    output: Array["B Hc"] | None = None
    """The output (binds the batch and width of a gradient)."""
    h: Array["B H"] | None = None
    """The first layer's new `h` (binds the hidden width of a gradient)."""


class ControllerGrads(NamedTuple):
    """The gradients of [`controller_forward`][refmem.dnc.controller.controller_forward]'s arguments."""

    x: Array["B I"]
    """The gradient of `x`."""
    state: tuple[LSTMState, ...]
    """The gradients of the previous state, one [`LSTMState`][refmem.dnc.controller.LSTMState] per layer."""
    params: tuple[LSTMParams, ...]
    """The gradients of the parameters, one [`LSTMParams`][refmem.dnc.controller.LSTMParams] per layer."""


def controller(x: Any, state: tuple, params: tuple, cfg: ControllerConfig) -> tuple[Any, tuple, ControllerCache]:
    """The controller for one time step (SPEC §5 Core), unchecked: `(output, new_state, cache)`."""
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
        h, c, cache = lstm_step(inp, state[layer], params[layer], cfg.forget_bias)
        hs.append(h)
        cs.append(c)
        caches.append(cache)
        below = h
    raw_out = xp.concat(hs, axis=1) if (cfg.skip and cfg.layers > 1) else hs[-1]
    out, out_inside = clip(raw_out, cfg.clip_value)
    new_state, h_in, c_in = [], [], []
    for h, c in zip(hs, cs):
        hc, hm = clip(h, cfg.clip_value)
        cc, cm = clip(c, cfg.clip_value)
        new_state.append(LSTMState(hc, cc))
        h_in.append(hm)
        c_in.append(cm)
    cache = ControllerCache(tuple(caches), out_inside, tuple(h_in), tuple(c_in), cfg, out, new_state[0].h)
    return out, tuple(new_state), cache


def controller_vjp(d_out: Any, d_new_state: Any, cache: ControllerCache) -> ControllerGrads:
    """The gradients of [`controller`][refmem.dnc.controller.controller], unchecked; `d_out`,
    `d_new_state`, any of its layers and any field may be `None` (zero)."""
    cfg = cache.cfg
    H, L = cfg.hidden, cfg.layers
    d_raw = clip_vjp(d_out, cache.out_inside)
    d_h: list[Any] = []
    for layer in range(L):
        if d_raw is None:
            d_h.append(None)
        elif cfg.skip and L > 1:
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
                d_h[layer] = P.add_optional(d_h[layer], clip_vjp(st.h, cache.h_inside[layer]))
            if st.c is not None:
                d_c[layer] = clip_vjp(st.c, cache.c_inside[layer])
    dx = None
    d_prev: list[Any] = [None] * L
    d_params: list[Any] = [None] * L
    for layer in reversed(range(L)):
        g = lstm_step_vjp(d_h[layer], d_c[layer], cache.layers[layer])
        d_in, d_prev[layer], d_params[layer] = g
        if layer == 0:
            dx = P.add_optional(dx, d_in)
        elif cfg.skip:
            I = cfg.input_size
            dx = P.add_optional(dx, d_in[:, :I])
            d_h[layer - 1] = P.add_optional(d_h[layer - 1], d_in[:, I:])
        else:
            d_h[layer - 1] = P.add_optional(d_h[layer - 1], d_in)
    return ControllerGrads(dx, tuple(d_prev), tuple(d_params))


@checked
def controller_forward(x: Array["B I"], state: tuple[LSTMState, ...], params: tuple[LSTMParams, ...], *,
                       cfg: ControllerConfig) -> tuple[ControllerOutputs, ControllerCache]:
    """The controller for one time step (SPEC §5 Core; seed 003 `DNCoreLSTM`/`DNCoreDeepLSTM`).

    Args:
        x: the controller input `[B, I]` (the DNC passes `[x_t ; flatten(r_{t-1})]`).
        state: per layer an [`LSTMState`][refmem.dnc.controller.LSTMState] `(h [B, H], c [B, H])` at `t-1`.
        params: per layer an [`LSTMParams`][refmem.dnc.controller.LSTMParams] `(W [I_l + H, 4H], b [4H])`
            (see [`ControllerConfig.layer_input_size`][refmem.dnc.controller.ControllerConfig.layer_input_size]).
        cfg: the [`ControllerConfig`][refmem.dnc.controller.ControllerConfig] (keyword-only).

    Returns:
        outputs: a [`ControllerOutputs`][refmem.dnc.controller.ControllerOutputs] `(output [B, Hc], state)`,
            `Hc = cfg.output_size`; output and state clipped when `cfg.clip_value > 0`.
        cache: a [`ControllerCache`][refmem.dnc.controller.ControllerCache].
    """
    check_layers(params, cfg, state, int(x.shape[0]))
    out, new_state, cache = controller(x, state, params, cfg)
    return ControllerOutputs(out, new_state), cache


def _old_controller_backward(*args: Any, **kwargs: Any) -> ControllerGrads:
    """The 0.1 form `controller_backward(d_out, d_new_state, cache)`, deprecated (it returned
    `(dx, d_prev_state, d_params)`, the order of the new gradients)."""
    if len(args) == 2 and not kwargs:
        from .addressing import _not_outputs

        raise _not_outputs("d_out", ControllerOutputs, args[0])
    given = old_call_arguments("controller_backward", ("d_out", "d_new_state", "cache"), args, kwargs)
    if set(given) == {"d_out", "cache"}:
        return controller_backward(given["d_out"], given["cache"])
    warn_old_call("controller_backward(d_out, d_new_state, cache)",
                  "controller_backward(ControllerOutputs(output=d_out, state=d_new_state), cache)")
    d_state = given.get("d_new_state")
    if d_state is not None:  # 0.1 allowed None layers; the new form takes an LSTMState of None fields
        d_state = tuple(LSTMState(None, None) if st is None else st for st in d_state)
    return controller_backward(ControllerOutputs(given.get("d_out"), d_state), given["cache"])


@checked(legacy=_old_controller_backward)
def controller_backward(d_out: ControllerOutputs, cache: ControllerCache) -> ControllerGrads:
    """VJP of [`controller_forward`][refmem.dnc.controller.controller_forward].

    Args:
        d_out: a [`ControllerOutputs`][refmem.dnc.controller.ControllerOutputs] (or a tuple in its order)
            of the gradients of `output [B, Hc]` and of the new `state` (per layer an
            [`LSTMState`][refmem.dnc.controller.LSTMState] `(h [B, H], c [B, H])`); either, and any field,
            may be `None` (zero).
        cache: the [`ControllerCache`][refmem.dnc.controller.ControllerCache] of the forward.

    Returns:
        grads: a [`ControllerGrads`][refmem.dnc.controller.ControllerGrads] `(x [B, I], state, params)`:
            per layer an [`LSTMState`][refmem.dnc.controller.LSTMState] `(h [B, H], c [B, H])` and an
            [`LSTMParams`][refmem.dnc.controller.LSTMParams] `(W [I_l + H, 4H], b [4H])`.

    Derivation: [docs/derivations/dnc_core.md, "2. The controller stack"](../derivations/dnc_core.md#2-the-controller-stack-sonnet-deeprnn) (clipping: section 3)
    """
    d_output, d_state = d_out
    if d_state is not None and len(d_state) != cache.cfg.layers:
        raise ShapeError(f"d_out.state: expected {cache.cfg.layers} controller layers, got {len(d_state)}")
    return controller_vjp(d_output, d_state, cache)


# ----------------------------------------------------------------------------- 0.1 names

#: The 0.1 name of the step cache (deprecated alias; removed after 0.2).
LSTMCache = LSTMStepCache
