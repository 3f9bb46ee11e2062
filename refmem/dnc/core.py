"""SPEC §5 "Core": the whole DNC over time, forward and backpropagation through time by hand.

One step (deepmind/dnc ``DNC._build``; seed 003 ``DNCoreLSTM._build``)::

    ctrl_in  = [x_t ; flatten(r_{t-1})]                                   [B, D + R W]
    h_c, ctrl_state_t = controller(ctrl_in, ctrl_state_{t-1})            clipped (SPEC §5)
    r_t, access_state_t = access_step(h_c, W_xi, b_xi, access_state_{t-1})   SPEC §5 steps 1-10
    y_t = clip([h_c ; flatten(r_t)] @ W_y + b_y)                         [B, Y]

The state carried from step to step is :class:`DNCState` (access state, controller
state, read vectors); the initial state is all zeros unless one is given.
:func:`unroll_forward` runs ``T`` steps on ``x [B, T, D]``; :func:`unroll_backward`
runs the step backward from ``t = T`` down to 1, carrying the gradient of the state
(docs/derivations/dnc_core.md derives it).

The ``deepmind`` convention stops the gradient of the usage with respect to the
previous write weights (deepmind/dnc's ``tf.stop_gradient``). The unroll records
those previous write weights per step (``UnrollCache.prev_write_weights [B, T, nw, N]``);
called again with ``frozen_write_weights=`` it uses the recorded values in the
usage update, which is how SPEC §6 checks a stopped gradient by finite differences.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from .. import primitives as P
from .. import xp as rx
from ..errors import ShapeError
from ..optim import tree_map
from ..validation import check_arrays, check_size, checked_by, fields
from . import conventions as CV
from .access import AccessCache, access_step_backward, access_step_forward
from .access import STATE_SPECS as ACCESS_STATE_SPECS
from .access import initial_state as access_initial_state
from .controller import (ControllerCache, LSTMParams, clip_backward, clip_forward, controller_backward, controller_forward,
                         controller_initial_state)
from .params import DNCConfig, DNCParams, named

__all__ = ["DNCState", "StepCache", "UnrollOutputs", "UnrollCache", "initial_state", "core_step_forward",
           "core_step_backward", "unroll_forward", "unroll_backward", "zeros_like_state"]


class DNCState(NamedTuple):
    """The state a DNC carries between steps.

    ``access``: :class:`~refmem.dnc.access.AccessState` (``memory [B, N, W]``,
    ``read_weights [B, R, N]``, ``write_weights [B, nw, N]``, ``link [B, nw, N, N]``,
    ``precedence [B, nw, N]``, ``usage [B, N]``); ``controller``: one
    ``LSTMState(h [B, H], c [B, H])`` per layer; ``read_vectors [B, R, W]`` (``r_{t-1}``).
    In a gradient any field may be ``None`` (zero).
    """

    access: Any
    controller: Any
    read_vectors: Any


class StepCache(NamedTuple):
    """One step's intermediates: ``controller`` (:class:`~refmem.dnc.controller.ControllerCache`),
    ``access`` (:class:`~refmem.dnc.access.AccessCache`), ``output`` (the
    :class:`~refmem.primitives.LinearCache` of ``[h_c ; flatten(r_t)] @ W_y``),
    ``y_inside [B, Y]`` (clip mask of ``y_t`` or ``None``), ``D``, ``Hc``."""

    controller: ControllerCache
    access: AccessCache
    output: P.LinearCache
    y_inside: Any
    D: int
    Hc: int


def initial_state(xp: Any, B: int, cfg: DNCConfig, dtype: Any = None) -> DNCState:
    """The all-zero initial state of SPEC §5 (``dtype`` defaults to ``xp.float64``)."""
    if not isinstance(cfg, DNCConfig):
        raise TypeError(f"cfg: expected a DNCConfig, got {type(cfg).__name__}")
    check_size("B", B)
    dtype = xp.float64 if dtype is None else dtype
    return DNCState(access_initial_state(xp, B, cfg.access, dtype),
                    controller_initial_state(xp, B, cfg.controller, dtype),
                    xp.zeros((B, cfg.R, cfg.W), dtype=dtype))


def zeros_like_state(state: DNCState) -> DNCState:
    """A state of zeros shaped like ``state``."""
    return tree_map(lambda a: rx.namespace(a).zeros_like(a), state)


def _state_arrays(state: Any, cfg: DNCConfig) -> tuple[dict, dict]:
    """The arrays of a :class:`DNCState` and their specs, for :func:`refmem.validation.check_arrays`."""
    if not isinstance(state, DNCState):
        raise TypeError(f"state: expected a DNCState, got {type(state).__name__}")
    arrays, specs = fields("state.access", state.access, ACCESS_STATE_SPECS)
    if len(state.controller) != cfg.layers:
        raise ShapeError(f"state.controller: expected {cfg.layers} layers, got {len(state.controller)}")
    for layer, st in enumerate(state.controller):
        arrays.update({f"state.controller[{layer}].h": st.h, f"state.controller[{layer}].c": st.c})
        specs.update({f"state.controller[{layer}].h": "B H", f"state.controller[{layer}].c": "B H"})
    arrays["state.read_vectors"] = state.read_vectors
    specs["state.read_vectors"] = "B R W"
    return arrays, specs


def _check_inputs(x: Any, x_spec: str, params: Any, cfg: Any, state: Any, frozen: Any, frozen_spec: str) -> None:
    if not isinstance(cfg, DNCConfig):
        raise TypeError(f"cfg: expected a DNCConfig, got {type(cfg).__name__}")
    if not isinstance(params, DNCParams):
        raise TypeError(f"params: expected DNCParams, got {type(params).__name__}")
    if len(params.lstm) != cfg.layers:
        raise ShapeError(f"lstm: expected {cfg.layers} controller layers, got {len(params.lstm)}")
    # the parameters first: a call's inputs are then measured against them (and the config)
    arrays, specs = {}, {}
    symbolic = {"W_xi": "Hc I", "b_xi": "I", "W_y": "(Hc+R*W) Y", "b_y": "Y"}
    for name, array in named(params).items():
        arrays[f"params.{name}"] = array
        specs[f"params.{name}"] = symbolic.get(name) or " ".join(str(n) for n in cfg.shapes()[name])
    arrays.update({"x": x, "frozen_write_weights": frozen})
    specs.update({"x": x_spec, "frozen_write_weights": frozen_spec})
    if state is not None:
        a, sp = _state_arrays(state, cfg)
        arrays.update(a)
        specs.update(sp)
    check_arrays(arrays, specs, sizes={"D": cfg.D, "N": cfg.N, "W": cfg.W, "R": cfg.R, "nw": cfg.nw,
                                       "H": cfg.hidden, "Hc": cfg.Hc, "I": cfg.I, "Y": cfg.Y})


def _check_step(x_t: Any, state: Any, params: Any, cfg: Any, frozen_write_weights: Any = None) -> None:
    if state is None:
        raise TypeError("state: expected a DNCState (see initial_state), got None")
    _check_inputs(x_t, "B D", params, cfg, state, frozen_write_weights, "?B nw N | unit")


@checked_by(_check_step)
def core_step_forward(x_t: Any, state: DNCState, params: DNCParams, cfg: DNCConfig,
                      frozen_write_weights: Any = None) -> tuple[Any, DNCState, StepCache]:
    """One DNC step (SPEC §5 Core).

    Args:
        x_t: ``[B, D]``.
        state: :class:`DNCState` at ``t-1``.
        params: :class:`~refmem.dnc.params.DNCParams`.
        cfg: :class:`~refmem.dnc.params.DNCConfig`.
        frozen_write_weights: ``[B, nw, N]`` or ``None``; see the module docstring.
    Returns:
        ``(y_t [B, Y], new_state, cache)``.
    """
    xp = rx.namespace(x_t)
    B = int(x_t.shape[0])
    R, W = cfg.R, cfg.W
    ctrl_in = xp.concat([x_t, xp.reshape(state.read_vectors, (B, R * W))], axis=1)
    h_c, ctrl_state, ccache = controller_forward.unchecked(ctrl_in, state.controller, params.lstm, cfg.controller)
    r_t, access_state, acache = access_step_forward.unchecked(h_c, params.W_xi, params.b_xi, state.access, cfg.access,
                                                    frozen_write_weights=frozen_write_weights)
    out_in = xp.concat([h_c, xp.reshape(r_t, (B, R * W))], axis=1)
    y_raw = P.linear(out_in, params.W_y, params.b_y)
    lcache = P.LinearCache(out_in, params.W_y)
    y, y_inside = clip_forward.unchecked(y_raw, cfg.clip_value)
    cache = StepCache(ccache, acache, lcache, y_inside, cfg.D, int(h_c.shape[1]))
    return y, DNCState(access_state, ctrl_state, r_t), cache


def _d_state_arrays(name: str, d_state: Any, layers: int) -> tuple[dict, dict]:
    """The arrays of a state gradient (``None`` or a :class:`DNCState` whose fields may be ``None``)."""
    if d_state is None:
        return {}, {}
    if not isinstance(d_state, DNCState):
        raise TypeError(f"{name}: expected a DNCState (fields may be None) or None, got {type(d_state).__name__}")
    arrays, specs = {}, {}
    if d_state.access is not None:
        arrays, specs = fields(f"{name}.access", d_state.access,
                               {k: "?" + v.split("|")[0] for k, v in ACCESS_STATE_SPECS.items()})
    if d_state.controller is not None:
        if len(d_state.controller) != layers:
            raise ShapeError(f"{name}.controller: expected {layers} layers, got {len(d_state.controller)}")
        for layer, st in enumerate(d_state.controller):
            if st is not None:
                arrays.update({f"{name}.controller[{layer}].h": st.h, f"{name}.controller[{layer}].c": st.c})
                specs.update({f"{name}.controller[{layer}].h": "?B H", f"{name}.controller[{layer}].c": "?B H"})
    arrays[f"{name}.read_vectors"] = d_state.read_vectors
    specs[f"{name}.read_vectors"] = "?B R W"
    return arrays, specs


def _check_step_backward(d_y: Any, d_new_state: Any, cache: Any) -> None:
    if not isinstance(cache, StepCache):
        raise TypeError(f"cache: expected the StepCache of core_step_forward, got {type(cache).__name__}")
    lin = cache.output
    acfg = cache.access.cfg
    ccfg = cache.controller.cfg
    arrays, specs = _d_state_arrays("d_new_state", d_new_state, ccfg.layers)
    check_arrays({"the forward's output input": lin.x, "d_y": d_y, **arrays},
                 {"the forward's output input": "B *", "d_y": f"?B {int(lin.W.shape[1])}", **specs},
                 sizes={"N": acfg.N, "W": acfg.W, "R": acfg.R, "nw": acfg.nw, "H": ccfg.hidden})


@checked_by(_check_step_backward)
def core_step_backward(d_y: Any, d_new_state: DNCState | None,
                       cache: StepCache) -> tuple[Any, DNCState, DNCParams]:
    """Reverse of :func:`core_step_forward`.

    Args:
        d_y: ``[B, Y]`` gradient of ``y_t`` (``None``: zero).
        d_new_state: gradient of the new :class:`DNCState` (``None`` or ``None`` fields: zero).
        cache: the step's :class:`StepCache`.
    Returns:
        ``(dx_t [B, D], d_state (w.r.t. the state at t-1), d_params)``.

    Derivation: [docs/derivations/dnc_core.md, "4. One DNC step"](../derivations/dnc_core.md#4-one-dnc-step)
    """
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
    d_y_raw = clip_backward.unchecked(d_y, cache.y_inside)
    d_out_in, dW_y, db_y = P.linear_vjp(d_y_raw, lin.x, lin.W)
    d_hc = d_out_in[:, :Hc]
    d_r = xp.reshape(d_out_in[:, Hc:], (B, R, W))
    if d_new_state.read_vectors is not None:
        d_r = d_r + d_new_state.read_vectors
    d_hc_access, dW_xi, db_xi, d_access = access_step_backward.unchecked(d_r, d_new_state.access, cache.access)
    d_hc = d_hc + d_hc_access
    d_ctrl_in, d_ctrl, d_lstm = controller_backward.unchecked(d_hc, d_new_state.controller, cache.controller)
    dx = d_ctrl_in[:, :D]
    d_r_prev = xp.reshape(d_ctrl_in[:, D:], (B, R, W))
    return dx, DNCState(d_access, d_ctrl, d_r_prev), DNCParams(d_lstm, dW_xi, db_xi, dW_y, db_y)


class UnrollOutputs(NamedTuple):
    """``y [B, T, Y]``, ``read_vectors [B, T, R, W]`` (``r_t`` of every step)."""

    y: Any
    read_vectors: Any


class UnrollCache(NamedTuple):
    """``steps``: one :class:`StepCache` per step; ``states``: the :class:`DNCState` after every
    step (``states[t]`` is the state at ``t + 1``); ``prev_write_weights [B, T, nw, N]``: the
    write weights each step's usage update read (the deepmind stop-gradient's recorded value);
    ``cfg``.

    With ``checkpoint_every=k > 1`` (see :func:`unroll_forward`) ``steps`` and ``states`` are
    empty and the cache holds what recomputes them: ``checkpoints``, the :class:`DNCState`
    before steps ``0, k, 2k, ...``; ``every`` (``k``); ``inputs``, the forward's
    ``(x, params, frozen_write_weights)``. A plain unroll has ``every = 1``.
    """

    steps: tuple
    states: tuple
    prev_write_weights: Any
    cfg: DNCConfig
    checkpoints: tuple = ()
    every: int = 1
    inputs: Any = None


def _check_unroll(x: Any, params: Any, cfg: Any, state: Any = None, frozen_write_weights: Any = None, *,
                  checkpoint_every: Any = None) -> None:
    if checkpoint_every is not None:
        check_size("checkpoint_every", checkpoint_every)
    _check_inputs(x, "B T D", params, cfg, state, frozen_write_weights, "?B T nw N | unit")


@checked_by(_check_unroll)
def unroll_forward(x: Any, params: DNCParams, cfg: DNCConfig, state: DNCState | None = None,
                   frozen_write_weights: Any = None, *,
                   checkpoint_every: int | None = None) -> tuple[UnrollOutputs, DNCState, UnrollCache]:
    """The DNC over ``T`` steps (SPEC §5 Core).

    Args:
        x: ``[B, T, D]``.
        params: :class:`~refmem.dnc.params.DNCParams` (validated against ``cfg``).
        cfg: :class:`~refmem.dnc.params.DNCConfig`.
        state: the initial :class:`DNCState` (zeros when ``None``).
        frozen_write_weights: ``[B, T, nw, N]`` or ``None``; under the ``deepmind``
            convention, the recorded previous write weights to use in each step's usage.
        checkpoint_every: ``None`` or ``1`` (default): keep every step's cache for
            :func:`unroll_backward`, memory growing as ``T`` step caches. An int ``k > 1``:
            checkpointed backpropagation through time; keep only the state before steps
            ``0, k, 2k, ...`` and let :func:`unroll_backward` recompute the ``k`` steps of
            each segment from its checkpoint before running them backward. Memory
            ``T/k`` states plus ``k`` step caches (least near ``k = sqrt(T)``) for one
            extra forward pass; outputs, final state and gradients are those of the plain
            unroll (the recomputation repeats the same operations on the same values).
    Returns:
        ``(UnrollOutputs(y [B, T, Y], read_vectors [B, T, R, W]), final_state, cache)``.
    """
    xp = rx.namespace(x)
    B, T = int(x.shape[0]), int(x.shape[1])
    dtype = xp.result_type(x, params.W_xi, params.W_y, params.lstm[0].W)
    if state is None:
        state = initial_state(xp, B, cfg, dtype=dtype)
    else:
        # one dtype throughout (a real initial state with complex parameters, as in the complex step:
        # some backends, e.g. torch, do not promote inside matmul)
        state = tree_map(lambda a: a if a.dtype == dtype else xp.astype(a, dtype), state)
    every = 1 if checkpoint_every is None else int(checkpoint_every)
    ys, rs, steps, states, prev_ww, checkpoints = [], [], [], [], [], []
    for t in range(T):
        if every > 1 and t % every == 0:
            checkpoints.append(state)
        prev_ww.append(state.access.write_weights)
        frozen_t = None if frozen_write_weights is None else frozen_write_weights[:, t, ...]
        y, state, cache = core_step_forward.unchecked(x[:, t, :], state, params, cfg, frozen_write_weights=frozen_t)
        ys.append(y)
        rs.append(state.read_vectors)
        if every == 1:
            steps.append(cache)
            states.append(state)
    outputs = UnrollOutputs(xp.stack(ys, axis=1), xp.stack(rs, axis=1))
    if every == 1:
        return outputs, state, UnrollCache(tuple(steps), tuple(states), xp.stack(prev_ww, axis=1), cfg)
    return outputs, state, UnrollCache((), (), xp.stack(prev_ww, axis=1), cfg, tuple(checkpoints), every,
                                       (x, params, frozen_write_weights))


def _recompute(cache: UnrollCache, start: int, stop: int) -> list:
    """The step caches of steps ``start .. stop - 1``, recomputed from the checkpoint before ``start``."""
    x, params, frozen = cache.inputs
    state = cache.checkpoints[start // cache.every]
    out = []
    for t in range(start, stop):
        frozen_t = None if frozen is None else frozen[:, t, ...]
        _, state, step = core_step_forward.unchecked(x[:, t, :], state, params, cache.cfg, frozen_write_weights=frozen_t)
        out.append(step)
    return out


def _num_steps(cache: UnrollCache) -> int:
    return int(cache.prev_write_weights.shape[1]) if cache.every > 1 else len(cache.steps)


def _first_output_input(cache: UnrollCache) -> Any:
    """A ``[B, *]`` array of the forward's batch and precision (the first step's output-layer input,
    or ``x[:, 0]``)."""
    return cache.steps[0].output.x if cache.every == 1 else cache.inputs[0][:, 0, :]


def _check_unroll_backward(d_outputs: Any, cache: Any, d_final_state: Any = None) -> None:
    if not isinstance(d_outputs, UnrollOutputs):
        raise TypeError(f"d_outputs: expected UnrollOutputs(d_y, d_read_vectors) (fields may be None), "
                        f"got {type(d_outputs).__name__}")
    if not isinstance(cache, UnrollCache):
        raise TypeError(f"cache: expected the UnrollCache of unroll_forward, got {type(cache).__name__}")
    cfg = cache.cfg
    arrays, specs = _d_state_arrays("d_final_state", d_final_state, cfg.layers)
    check_arrays({"the forward's output input": _first_output_input(cache), "d_outputs.y": d_outputs.y,
                  "d_outputs.read_vectors": d_outputs.read_vectors, **arrays},
                 {"the forward's output input": "B *", "d_outputs.y": "?B T Y", "d_outputs.read_vectors": "?B T R W",
                  **specs},
                 sizes={"T": _num_steps(cache), "Y": cfg.Y, "R": cfg.R, "W": cfg.W, "N": cfg.N, "nw": cfg.nw,
                        "H": cfg.hidden})


@checked_by(_check_unroll_backward)
def unroll_backward(d_outputs: UnrollOutputs, cache: UnrollCache,
                    d_final_state: DNCState | None = None) -> tuple[Any, DNCParams, DNCState]:
    """Backpropagation through time for :func:`unroll_forward`.

    Args:
        d_outputs: ``UnrollOutputs(d_y [B, T, Y], d_read_vectors [B, T, R, W])``; either may be ``None``.
        cache: the :class:`UnrollCache`.
        d_final_state: gradient of the final :class:`DNCState` (``None``: zero).
    Returns:
        ``(dx [B, T, D], d_params, d_initial_state)``. Under the ``deepmind``
            convention ``d_initial_state.access.write_weights`` is zero (stopped).

    A cache of ``unroll_forward(..., checkpoint_every=k)`` is run segment by segment from the
    last: the ``k`` steps of a segment are recomputed from its checkpoint, then run backward,
    and their caches dropped before the next segment. The gradients are the plain unroll's.

    Derivation: [docs/derivations/dnc_core.md, "5. Backpropagation through time"](../derivations/dnc_core.md#5-backpropagation-through-time)
    """
    T = _num_steps(cache)
    xp = rx.namespace(_first_output_input(cache))
    every = cache.every
    steps: list = list(cache.steps)
    d_state = d_final_state
    d_params = None
    dxs: list[Any] = [None] * T
    for t in reversed(range(T)):
        if every > 1 and (t == T - 1 or t % every == every - 1):
            start = t - t % every
            steps = [None] * start + _recompute(cache, start, t + 1)  # this segment's caches only
        d_y = None if d_outputs.y is None else d_outputs.y[:, t, :]
        d_r = None if d_outputs.read_vectors is None else d_outputs.read_vectors[:, t, ...]
        if d_r is not None:
            if d_state is None:
                d_state = DNCState(None, None, d_r)
            else:
                d_state = DNCState(d_state.access, d_state.controller, P.add_optional(d_state.read_vectors, d_r))
        dxs[t], d_state, g = core_step_backward.unchecked(d_y, d_state, steps[t])
        steps[t] = None  # free the step's cache as soon as it is used
        d_params = g if d_params is None else _add_params(d_params, g)
    return xp.stack(dxs, axis=1), d_params, d_state


def _add_params(a: DNCParams, b: DNCParams) -> DNCParams:
    """``a + b`` field by field (what ``tree_map`` does, without its per-leaf calls: it ran once per step)."""
    return DNCParams(tuple(LSTMParams(u.W + v.W, u.b + v.b) for u, v in zip(a.lstm, b.lstm)),
                     a.W_xi + b.W_xi, a.b_xi + b.b_xi, a.W_y + b.W_y, a.b_y + b.b_y)


def stops_usage_gradient(cfg: DNCConfig) -> bool:
    """Whether ``cfg``'s convention stops the usage gradient (so a check freezes the previous write weights)."""
    return CV.get(cfg.convention).stop_usage_gradient
