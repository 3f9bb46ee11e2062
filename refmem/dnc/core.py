"""SPEC §5 "Core": the whole DNC over time, forward and backpropagation through time by hand.

One step (deepmind/dnc `DNC._build`; seed 003 `DNCoreLSTM._build`):

```text
ctrl_in  = [x_t ; flatten(r_{t-1})]                                      [B, D + R W]
h_c, ctrl_state_t = controller(ctrl_in, ctrl_state_{t-1})               clipped (SPEC §5)
r_t, access_state_t = access_step(h_c, W_xi, b_xi, access_state_{t-1})  SPEC §5 steps 1-10
y_t = clip([h_c ; flatten(r_t)] @ W_y + b_y)                            [B, Y]
```

The state carried from step to step is [`DNCState`][refmem.dnc.core.DNCState] (access state,
controller state, read vectors); the initial state is all zeros unless one is given.
[`unroll_forward`][refmem.dnc.core.unroll_forward] runs `T` steps on `x [B, T, D]`;
[`unroll_backward`][refmem.dnc.core.unroll_backward] runs the step backward from `t = T` down
to 1, carrying the gradient of the state ([docs/derivations/dnc_core.md](../derivations/dnc_core.md)
derives it). Both pairs follow [the backward rule](../conventions.md); the maths is
[`core_step`][refmem.dnc.core.core_step], [`core_step_vjp`][refmem.dnc.core.core_step_vjp],
[`unroll`][refmem.dnc.core.unroll] and [`unroll_vjp`][refmem.dnc.core.unroll_vjp].

The `deepmind` convention stops the gradient of the usage with respect to the previous write
weights (deepmind/dnc's `tf.stop_gradient`). The unroll records those previous write weights per
step (`UnrollCache.prev_write_weights [B, T, nw, N]`); called again with
`frozen_write_weights=` it uses the recorded values in the usage update, which is how SPEC §6
checks a stopped gradient by finite differences.
"""

from typing import Any, NamedTuple

from .. import primitives as P
from .. import xp as rx
from ..errors import ShapeError
from ..optim import tree_leaves, tree_map
from ..validation import Array, Size, checked, old_call_arguments, warn_old_call
from . import conventions as CV
from .access import AccessState, access_step, access_step_vjp
from .access import initial_state as access_initial_state
from .addressing import Weighting, _not_outputs
from .controller import (ControllerCache, LSTMParams, LSTMState, check_layers, clip, clip_vjp, controller,
                         controller_initial_state, controller_vjp)
from .params import DNCConfig, DNCParams

__all__ = ["DNCState", "initial_state", "zeros_like_state", "stops_usage_gradient",
           "CoreStepOutputs", "CoreStepCache", "CoreStepGrads", "core_step", "core_step_vjp",
           "core_step_forward", "core_step_backward",
           "UnrollOutputs", "UnrollCache", "UnrollGrads", "unroll", "unroll_vjp", "unroll_forward",
           "unroll_backward"]


class DNCState(NamedTuple):
    """The state a DNC carries between steps; in a gradient any field may be `None` (zero)."""

    access: AccessState
    """The [`AccessState`][refmem.dnc.access.AccessState] (`memory [B, N, W]`, `read_weights [B, R, N]`,
    `write_weights [B, nw, N]`, `link [B, nw, N, N]`, `precedence [B, nw, N]`, `usage [B, N]`)."""
    controller: tuple[LSTMState, ...]
    """One [`LSTMState`][refmem.dnc.controller.LSTMState] `(h [B, H], c [B, H])` per controller layer."""
    read_vectors: Array["B R W"]
    """`r_{t-1}`."""


@checked
def initial_state(xp: Any, B: Size, cfg: DNCConfig, dtype: Any = None) -> DNCState:
    """The all-zero initial state of SPEC §5.

    Args:
        xp: the namespace to create the arrays in.
        B: the batch size.
        cfg: the [`DNCConfig`][refmem.dnc.params.DNCConfig].
        dtype: floating dtype (default `xp.float64`).

    Returns:
        state: a [`DNCState`][refmem.dnc.core.DNCState] of zeros.
    """
    dtype = xp.float64 if dtype is None else dtype
    return DNCState(access_initial_state(xp, B, cfg.access, dtype),
                    controller_initial_state(xp, B, cfg.controller, dtype),
                    xp.zeros((B, cfg.R, cfg.W), dtype=dtype))


def zeros_like_state(state: DNCState) -> DNCState:
    """A state of zeros shaped like `state`."""
    return tree_map(lambda a: rx.namespace(a).zeros_like(a), state)


def stops_usage_gradient(cfg: DNCConfig) -> bool:
    """Whether `cfg`'s convention stops the usage gradient (so a check freezes the previous write weights)."""
    return CV.get(cfg.convention).stop_usage_gradient


# ============================================================================= one step


class CoreStepOutputs(NamedTuple):
    """The outputs of [`core_step_forward`][refmem.dnc.core.core_step_forward]."""

    y: Array["B Y"]
    """`y_t` (clipped when `clip_value > 0`)."""
    state: DNCState
    """The [`DNCState`][refmem.dnc.core.DNCState] at `t`."""


class CoreStepCache(NamedTuple):
    """One step's intermediates."""

    controller: ControllerCache
    """The [`ControllerCache`][refmem.dnc.controller.ControllerCache]."""
    access: Any
    """The [`AccessStepCache`][refmem.dnc.access.AccessStepCache]."""
    output: P.LinearCache
    """The [`LinearCache`][refmem.primitives.LinearCache] of `[h_c ; flatten(r_t)] @ W_y`."""
    y_inside: Any
    """The clip mask of `y_t`, or `None`."""
    D: int
    """The input width."""
    Hc: int
    """The controller output width."""
    y: Array["B Y"]
    """`y_t` (binds the letters of a gradient)."""
    read_vectors: Array["B R W"]
    """`r_t`."""
    memory: Array["B N W"]
    """`M_t`."""
    write_weights: Array["B nw N"]
    """`ww_t`."""
    h: Array["B H"]
    """The first controller layer's `h_t`."""


class CoreStepGrads(NamedTuple):
    """The gradients of [`core_step_forward`][refmem.dnc.core.core_step_forward]'s arguments."""

    x_t: Array["B D"]
    """The gradient of `x_t`."""
    state: DNCState
    """The gradients of the state at `t-1` (a [`DNCState`][refmem.dnc.core.DNCState])."""
    params: DNCParams
    """The gradients of the parameters (a [`DNCParams`][refmem.dnc.params.DNCParams])."""


def core_step(x_t: Any, state: DNCState, params: DNCParams, cfg: DNCConfig,
              frozen_write_weights: Any = None) -> tuple[Any, DNCState, CoreStepCache]:
    """One DNC step (SPEC §5 Core), unchecked: `(y_t, new_state, cache)`."""
    xp = rx.namespace(x_t)
    B = int(x_t.shape[0])
    R, W = cfg.R, cfg.W
    ctrl_in = xp.concat([x_t, xp.reshape(state.read_vectors, (B, R * W))], axis=1)
    h_c, ctrl_state, ccache = controller(ctrl_in, state.controller, params.lstm, cfg.controller)
    r_t, access_state, acache = access_step(h_c, params.W_xi, params.b_xi, state.access, cfg.access,
                                            frozen_write_weights)
    out_in = xp.concat([h_c, xp.reshape(r_t, (B, R * W))], axis=1)
    y_raw = P.linear(out_in, params.W_y, params.b_y)
    y, y_inside = clip(y_raw, cfg.clip_value)
    cache = CoreStepCache(ccache, acache, P.LinearCache(out_in, params.W_y), y_inside, cfg.D, int(h_c.shape[1]),
                          y, r_t, access_state.memory, access_state.write_weights, ctrl_state[0].h)
    return y, DNCState(access_state, ctrl_state, r_t), cache


def core_step_vjp(d_y: Any, d_new_state: DNCState | None, cache: CoreStepCache) -> CoreStepGrads:
    """Reverse of [`core_step`][refmem.dnc.core.core_step], unchecked; `d_y`, `d_new_state` and any of
    its fields may be `None` (zero)."""
    lin = cache.output
    xp = rx.namespace(lin.x)
    B = int(lin.x.shape[0])
    Hc, D = cache.Hc, cache.D
    acfg = cache.access.cfg
    R, W = acfg.R, acfg.W
    if d_new_state is None:
        d_new_state = DNCState(None, None, None)
    if d_y is None:
        d_y = xp.zeros((B, int(lin.W.shape[1])), dtype=lin.x.dtype)
    d_y_raw = clip_vjp(d_y, cache.y_inside)
    d_out_in, dW_y, db_y = P.linear_vjp(d_y_raw, lin.x, lin.W)
    d_hc = d_out_in[:, :Hc]
    d_r = xp.reshape(d_out_in[:, Hc:], (B, R, W))
    if d_new_state.read_vectors is not None:
        d_r = d_r + d_new_state.read_vectors
    d_hc_access, dW_xi, db_xi, d_access = access_step_vjp(d_r, d_new_state.access, cache.access)
    d_hc = d_hc + d_hc_access
    d_ctrl_in, d_ctrl, d_lstm = controller_vjp(d_hc, d_new_state.controller, cache.controller)
    dx = d_ctrl_in[:, :D]
    d_r_prev = xp.reshape(d_ctrl_in[:, D:], (B, R, W))
    return CoreStepGrads(dx, DNCState(d_access, d_ctrl, d_r_prev), DNCParams(d_lstm, dW_xi, db_xi, dW_y, db_y))


@checked
def core_step_forward(x_t: Array["B D"], state: DNCState, params: DNCParams, *, cfg: DNCConfig,
                      frozen_write_weights: Weighting["B nw N"] | None = None
                      ) -> tuple[CoreStepOutputs, CoreStepCache]:
    """One DNC step (SPEC §5 Core).

    Args:
        x_t: `[B, D]`.
        state: the [`DNCState`][refmem.dnc.core.DNCState] at `t-1`.
        params: the [`DNCParams`][refmem.dnc.params.DNCParams].
        cfg: the [`DNCConfig`][refmem.dnc.params.DNCConfig] (keyword-only).
        frozen_write_weights: `[B, nw, N]` or `None` (keyword-only); see the module docstring.

    Returns:
        outputs: a [`CoreStepOutputs`][refmem.dnc.core.CoreStepOutputs] `(y [B, Y], state)`, `state` the
            [`DNCState`][refmem.dnc.core.DNCState] at `t`.
        cache: a [`CoreStepCache`][refmem.dnc.core.CoreStepCache].
    """
    check_layers(params.lstm, cfg.controller, state.controller, int(x_t.shape[0]), label="params.lstm",
                 state_label="state.controller")
    y, new_state, cache = core_step(x_t, state, params, cfg, frozen_write_weights)
    return CoreStepOutputs(y, new_state), cache


def _old_core_step_backward(*args: Any, **kwargs: Any) -> CoreStepGrads:
    """The 0.1 form `core_step_backward(d_y, d_new_state, cache)`, deprecated (it returned
    `(dx_t, d_state, d_params)`, the order of the new gradients)."""
    if len(args) == 2 and not kwargs:
        raise _not_outputs("d_out", CoreStepOutputs, args[0])
    given = old_call_arguments("core_step_backward", ("d_y", "d_new_state", "cache"), args, kwargs)
    if set(given) == {"d_out", "cache"}:
        return core_step_backward(given["d_out"], given["cache"])
    warn_old_call("core_step_backward(d_y, d_new_state, cache)",
                  "core_step_backward(CoreStepOutputs(y=d_y, state=d_new_state), cache)")
    return core_step_backward(CoreStepOutputs(given.get("d_y"), given.get("d_new_state")), given["cache"])


@checked(legacy=_old_core_step_backward)
def core_step_backward(d_out: CoreStepOutputs, cache: CoreStepCache) -> CoreStepGrads:
    """VJP of [`core_step_forward`][refmem.dnc.core.core_step_forward].

    Args:
        d_out: a [`CoreStepOutputs`][refmem.dnc.core.CoreStepOutputs] (or a tuple in its order) of the
            gradients of `y [B, Y]` and of the new `state` (a [`DNCState`][refmem.dnc.core.DNCState] of
            gradients); either, and any field of the state, may be `None` (zero).
        cache: the [`CoreStepCache`][refmem.dnc.core.CoreStepCache] of the forward.

    Returns:
        grads: a [`CoreStepGrads`][refmem.dnc.core.CoreStepGrads] `(x_t [B, D], state, params)` in the
            forward's order: the gradients of the state at `t-1` (a [`DNCState`][refmem.dnc.core.DNCState])
            and of the parameters (a [`DNCParams`][refmem.dnc.params.DNCParams]).

    Derivation: [docs/derivations/dnc_core.md, "4. One DNC step"](../derivations/dnc_core.md#4-one-dnc-step)
    """
    d_y, d_state = d_out
    return core_step_vjp(d_y, d_state, cache)


# ============================================================================= the unroll


class UnrollOutputs(NamedTuple):
    """The outputs of [`unroll_forward`][refmem.dnc.core.unroll_forward].

    As an upstream gradient, `UnrollOutputs(d_y, d_read_vectors)` leaves the final state's
    gradient `None` (zero).
    """

    y: Array["B T Y"]
    """`y_t` of every step."""
    read_vectors: Array["B T R W"]
    """`r_t` of every step."""
    state: DNCState | None = None
    """The final [`DNCState`][refmem.dnc.core.DNCState] (the state after step `T`)."""


class UnrollCache(NamedTuple):
    """What [`unroll_backward`][refmem.dnc.core.unroll_backward] needs.

    With `checkpoint_every=k > 1` (see [`unroll_forward`][refmem.dnc.core.unroll_forward]) `steps` and
    `states` are empty and the cache holds what recomputes them.
    """

    steps: tuple
    """One [`CoreStepCache`][refmem.dnc.core.CoreStepCache] per step (empty when checkpointed)."""
    states: tuple
    """The [`DNCState`][refmem.dnc.core.DNCState] after every step (`states[t]` is the state at `t + 1`;
    empty when checkpointed)."""
    prev_write_weights: Array["B T nw N"]
    """The write weights each step's usage update read (the deepmind stop-gradient's recorded value)."""
    cfg: DNCConfig
    """The config."""
    checkpoints: tuple = ()
    """The [`DNCState`][refmem.dnc.core.DNCState] before steps `0, k, 2k, ...` (checkpointed only)."""
    every: int = 1
    """`k`; 1 for a plain unroll."""
    inputs: Any = None
    """The forward's `(x, params, frozen_write_weights)` (checkpointed only)."""
    y: Array["B T Y"] | None = None
    """The outputs `y` (bind the letters of a gradient)."""
    read_vectors: Array["B T R W"] | None = None
    """The read vectors of every step."""
    memory: Array["B N W"] | None = None
    """The final memory."""
    h: Array["B H"] | None = None
    """The first controller layer's final `h`."""
    x: Array["B T D"] | None = None
    """The inputs."""


class UnrollGrads(NamedTuple):
    """The gradients of [`unroll_forward`][refmem.dnc.core.unroll_forward]'s arguments, in its order."""

    x: Array["B T D"]
    """The gradient of `x`."""
    params: DNCParams
    """The gradients of the parameters, summed over the steps."""
    state: DNCState
    """The gradients of the initial state (also when the forward used the zero default); under the
    `deepmind` convention `state.access.write_weights` is zero (stopped)."""


def unroll(x: Any, params: DNCParams, state: DNCState | None, cfg: DNCConfig, frozen_write_weights: Any = None,
           checkpoint_every: int | None = None) -> tuple[Any, Any, DNCState, UnrollCache]:
    """The DNC over `T` steps (SPEC §5 Core), unchecked: `(y, read_vectors, final_state, cache)`."""
    xp = rx.namespace(x)
    B, T = int(x.shape[0]), int(x.shape[1])
    dtype = xp.result_type(x, params.W_xi, params.W_y, params.lstm[0].W)
    if state is None:
        state = initial_state(xp, B, cfg, dtype=dtype)
    else:
        # one dtype throughout (a real initial state with complex parameters, as in the complex step:
        # some backends, e.g. torch, do not promote inside matmul)
        if any(a.dtype != dtype for a in tree_leaves(state)):  # a rebuilt tree only when a dtype differs
            state = tree_map(lambda a: a if a.dtype == dtype else xp.astype(a, dtype), state)
    every = 1 if checkpoint_every is None else int(checkpoint_every)
    ys, rs, steps, states, prev_ww, checkpoints = [], [], [], [], [], []
    xs = xp.unstack(x, axis=1)  # every step's input in one operation
    frozen = None if frozen_write_weights is None else xp.unstack(frozen_write_weights, axis=1)
    for t in range(T):
        if every > 1 and t % every == 0:
            checkpoints.append(state)
        prev_ww.append(state.access.write_weights)
        frozen_t = None if frozen is None else frozen[t]
        y, state, cache = core_step(xs[t], state, params, cfg, frozen_t)
        ys.append(y)
        rs.append(state.read_vectors)
        if every == 1:
            steps.append(cache)
            states.append(state)
    y, r = xp.stack(ys, axis=1), xp.stack(rs, axis=1)
    pww = xp.stack(prev_ww, axis=1)
    tail = (y, r, state.access.memory, state.controller[0].h, x)
    if every == 1:
        return y, r, state, UnrollCache(tuple(steps), tuple(states), pww, cfg, (), 1, None, *tail)
    return y, r, state, UnrollCache((), (), pww, cfg, tuple(checkpoints), every, (x, params, frozen_write_weights),
                                    *tail)


def _recompute(cache: UnrollCache, start: int, stop: int) -> list:
    """The step caches of steps `start .. stop - 1`, recomputed from the checkpoint before `start`."""
    x, params, frozen = cache.inputs
    state = cache.checkpoints[start // cache.every]
    out = []
    for t in range(start, stop):
        frozen_t = None if frozen is None else frozen[:, t, ...]
        _, state, step = core_step(x[:, t, :], state, params, cache.cfg, frozen_t)
        out.append(step)
    return out


def unroll_vjp(d_y: Any, d_read_vectors: Any, d_final_state: DNCState | None, cache: UnrollCache) -> UnrollGrads:
    """Backpropagation through time for [`unroll`][refmem.dnc.core.unroll], unchecked; each upstream
    gradient may be `None` (zero).

    A cache of a checkpointed unroll is run segment by segment from the last: the `k` steps of a
    segment are recomputed from its checkpoint, then run backward, and their caches dropped before
    the next segment.
    """
    T = int(cache.prev_write_weights.shape[1])
    xp = rx.namespace(cache.prev_write_weights)
    every = cache.every
    steps: list = list(cache.steps)
    d_state = d_final_state
    d_params = None
    dxs: list[Any] = [None] * T
    d_ys = None if d_y is None else xp.unstack(d_y, axis=1)  # every step's gradient in one operation
    d_rs = None if d_read_vectors is None else xp.unstack(d_read_vectors, axis=1)
    for t in reversed(range(T)):
        if every > 1 and (t == T - 1 or t % every == every - 1):
            start = t - t % every
            steps = [None] * start + _recompute(cache, start, t + 1)  # this segment's caches only
        d_y_t = None if d_ys is None else d_ys[t]
        d_r = None if d_rs is None else d_rs[t]
        if d_r is not None:
            if d_state is None:
                d_state = DNCState(None, None, d_r)
            else:
                d_state = DNCState(d_state.access, d_state.controller, P.add_optional(d_state.read_vectors, d_r))
        dxs[t], d_state, g = core_step_vjp(d_y_t, d_state, steps[t])
        steps[t] = None  # free the step's cache as soon as it is used
        d_params = g if d_params is None else _add_params(d_params, g)
    return UnrollGrads(xp.stack(dxs, axis=1), d_params, d_state)


def _add_params(a: DNCParams, b: DNCParams) -> DNCParams:
    """`a + b` field by field (what `tree_map` does, without its per-leaf calls: it ran once per step)."""
    return DNCParams(tuple(LSTMParams(u.W + v.W, u.b + v.b) for u, v in zip(a.lstm, b.lstm)),
                     a.W_xi + b.W_xi, a.b_xi + b.b_xi, a.W_y + b.W_y, a.b_y + b.b_y)


@checked
def unroll_forward(x: Array["B T D"], params: DNCParams, state: DNCState | None = None, *, cfg: DNCConfig,
                   frozen_write_weights: Weighting["B T nw N"] | None = None,
                   checkpoint_every: Size | None = None) -> tuple[UnrollOutputs, UnrollCache]:
    """The DNC over `T` steps (SPEC §5 Core).

    Args:
        x: `[B, T, D]`.
        params: the [`DNCParams`][refmem.dnc.params.DNCParams] (validated against `cfg`).
        state: the initial [`DNCState`][refmem.dnc.core.DNCState], or `None` (zeros).
        cfg: the [`DNCConfig`][refmem.dnc.params.DNCConfig] (keyword-only).
        frozen_write_weights: `[B, T, nw, N]` or `None` (keyword-only); under the `deepmind`
            convention, the recorded previous write weights to use in each step's usage.
        checkpoint_every: `None` or `1` (default): keep every step's cache for
            [`unroll_backward`][refmem.dnc.core.unroll_backward], memory growing as `T` step caches. An
            integer `k > 1`: checkpointed backpropagation through time; keep only the state before
            steps `0, k, 2k, ...` and let the backward recompute the `k` steps of each segment from
            its checkpoint before running them backward. Memory `T/k` states plus `k` step caches
            (least near `k = sqrt(T)`) for one extra forward pass; outputs, final state and
            gradients are those of the plain unroll (the recomputation repeats the same operations
            on the same values). Keyword-only.

    Returns:
        outputs: an [`UnrollOutputs`][refmem.dnc.core.UnrollOutputs]
            `(y [B, T, Y], read_vectors [B, T, R, W], state)`, `state` the final
            [`DNCState`][refmem.dnc.core.DNCState].
        cache: an [`UnrollCache`][refmem.dnc.core.UnrollCache].
    """
    check_layers(params.lstm, cfg.controller, None if state is None else state.controller, int(x.shape[0]),
                 label="params.lstm", state_label="state.controller")
    y, r, final, cache = unroll(x, params, state, cfg, frozen_write_weights, checkpoint_every)
    return UnrollOutputs(y, r, final), cache


def _old_unroll_backward(*args: Any, **kwargs: Any) -> UnrollGrads:
    """The 0.1 form `unroll_backward(d_outputs, cache, d_final_state=None)`, deprecated (it returned
    `(dx, d_params, d_state)`, the order of the new gradients)."""
    given = old_call_arguments("unroll_backward", ("d_out", "cache", "d_final_state"), args, kwargs,
                               required=("d_out", "cache"), renamed={"d_outputs": "d_out"})
    d_out = given["d_out"]
    if "d_final_state" not in given:
        if not isinstance(d_out, tuple):
            raise _not_outputs("d_out", UnrollOutputs, d_out)
        return unroll_backward(d_out, given["cache"])
    warn_old_call("unroll_backward(d_outputs, cache, d_final_state)",
                  "unroll_backward(UnrollOutputs(y=d_y, read_vectors=d_read_vectors, state=d_final_state), cache)")
    if not isinstance(d_out, tuple) or len(d_out) not in (2, 3):
        raise _not_outputs("d_out", UnrollOutputs, d_out)
    return unroll_backward(UnrollOutputs(d_out[0], d_out[1], given["d_final_state"]), given["cache"])


@checked(legacy=_old_unroll_backward)
def unroll_backward(d_out: UnrollOutputs, cache: UnrollCache) -> UnrollGrads:
    """Backpropagation through time for [`unroll_forward`][refmem.dnc.core.unroll_forward].

    A cache of `unroll_forward(..., checkpoint_every=k)` is run segment by segment from the last:
    the `k` steps of a segment are recomputed from its checkpoint, then run backward, and their
    caches dropped before the next segment. The gradients are the plain unroll's.

    Args:
        d_out: an [`UnrollOutputs`][refmem.dnc.core.UnrollOutputs] (or a tuple in its order) of the
            gradients of `y [B, T, Y]`, `read_vectors [B, T, R, W]` and the final `state` (a
            [`DNCState`][refmem.dnc.core.DNCState] of gradients); each may be `None` (zero), and
            `UnrollOutputs(d_y, d_read_vectors)` leaves the state's `None`.
        cache: the [`UnrollCache`][refmem.dnc.core.UnrollCache] of the forward.

    Returns:
        grads: an [`UnrollGrads`][refmem.dnc.core.UnrollGrads] `(x [B, T, D], params, state)` in the
            forward's order: the gradients of the parameters (a [`DNCParams`][refmem.dnc.params.DNCParams])
            and of the initial state (a [`DNCState`][refmem.dnc.core.DNCState]; under the `deepmind`
            convention its `access.write_weights` is zero, stopped).

    Derivation: [docs/derivations/dnc_core.md, "5. Backpropagation through time"](../derivations/dnc_core.md#5-backpropagation-through-time)
    """
    d_y, d_read_vectors, d_state = d_out
    if d_state is not None and d_state.controller is not None and len(d_state.controller) != cache.cfg.layers:
        raise ShapeError(f"d_out.state.controller: expected {cache.cfg.layers} controller layers, "
                         f"got {len(d_state.controller)}")
    return unroll_vjp(d_y, d_read_vectors, d_state, cache)


# ----------------------------------------------------------------------------- 0.1 names

#: The 0.1 name of the step cache (deprecated alias; removed after 0.2).
StepCache = CoreStepCache
