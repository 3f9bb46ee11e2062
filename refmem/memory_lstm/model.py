"""SPEC §4: the LSTM memory cell (seed 000, the corrected version).

An LSTM whose cell mixes in an attention-weighted read of its last `M` cell states. One step,
with `x [B, D]`, `h_prev [B, H]`, `memory_prev [B, M, H]` (SPEC §4, equations numbered here as
in the code comments):

```text
(4.1)  i = σ(x @ W_i + h_prev @ U_i + b_i)
       f = σ(x @ W_f + h_prev @ U_f + b_f)
       o = σ(x @ W_o + h_prev @ U_o + b_o)
(4.2)  c~ = tanh(x @ W_c + h_prev @ U_c + b_c)
(4.3)  e = softmax(x @ W_e + h_prev @ U_e + b_e)             over the M slots
(4.4)  m = Σ_k e_k · memory_prev[:, k, :]
(4.5)  c = f ∘ (m + x @ W_m) + i ∘ c~
(4.6)  h = o ∘ tanh(c)
(4.7)  memory = concat(c[:, None, :], memory_prev[:, :-1, :])  newest first
```

The seed's original layer declared `W_m` with shape `(M, H)`; `x @ W_m` is then undefined and
every function here refuses such parameters with a `refmem.errors.ShapeError` naming
`params.W_m`, the expected `(D, H)` and the given shape.

Forward/backward pairs, following [the backward rule](../conventions.md):
[`step_forward`][refmem.memory_lstm.step_forward] / [`step_backward`][refmem.memory_lstm.step_backward]
for one step, [`unroll_forward`][refmem.memory_lstm.unroll_forward] /
[`unroll_backward`][refmem.memory_lstm.unroll_backward] for a sequence (backpropagation through
time composed from the step). The public pairs check their arguments once; the maths lives in
[`step`][refmem.memory_lstm.step], [`step_vjp`][refmem.memory_lstm.step_vjp],
[`unroll`][refmem.memory_lstm.unroll] and [`unroll_vjp`][refmem.memory_lstm.unroll_vjp], which
trust their inputs. The derivation of every backward line is in `docs/derivations/memory_lstm.md`;
the variable names there are the ones used below.
"""

import inspect
from typing import Any, NamedTuple

from .. import primitives as P
from .. import xp as rx
from ..sampling import Sampler
from ..validation import Array, Seed, Size, checked, warn_old_call

__all__ = [
    "Params",
    "StepOutputs",
    "StepCache",
    "StepGrads",
    "UnrollOutputs",
    "UnrollCache",
    "UnrollGrads",
    "StepOut",
    "UnrollOut",
    "PARAM_SHAPES",
    "init_params",
    "param_shapes",
    "step",
    "step_vjp",
    "unroll",
    "unroll_vjp",
    "step_forward",
    "step_backward",
    "unroll_forward",
    "unroll_backward",
]


class Params(NamedTuple):
    """Parameters of the cell (SPEC §4); gradients use the same type.

    Gates `g` in `i, f, o` and the candidate `c`: `W_g [D, H]`, `U_g [H, H]`, `b_g [H]`.
    Slot attention: `W_e [D, M]`, `U_e [H, M]`, `b_e [M]`. Input-to-memory map: `W_m [D, H]`.
    """

    W_i: Array["D H"]
    U_i: Array["H H"]
    b_i: Array["H"]
    W_f: Array["D H"]
    U_f: Array["H H"]
    b_f: Array["H"]
    W_o: Array["D H"]
    U_o: Array["H H"]
    b_o: Array["H"]
    W_c: Array["D H"]
    U_c: Array["H H"]
    b_c: Array["H"]
    W_e: Array["D M"]
    U_e: Array["H M"]
    b_e: Array["M"]
    W_m: Array["D H"]


#: Parameter name -> its shape in SPEC's letters (the axes of its annotation in `Params`).
PARAM_SHAPES: dict[str, tuple[str, ...]] = {name: tuple(ann.axes) for name, ann in Params.__annotations__.items()}


def param_shapes(D: int, H: int, M: int) -> dict[str, tuple[int, ...]]:
    """Parameter name -> its shape in numbers for input width `D`, hidden width `H`, `M` slots."""
    sizes = {"D": D, "H": H, "M": M}
    return {name: tuple(sizes[s] for s in shape) for name, shape in PARAM_SHAPES.items()}


class StepOutputs(NamedTuple):
    """The outputs of one step ([`step_forward`][refmem.memory_lstm.step_forward])."""

    h: Array["B H"]
    """The hidden state."""
    c: Array["B H"]
    """The cell state."""
    memory: Array["B M H"]
    """The memory slots, newest first (`memory[:, 0] = c`)."""


class StepCache(NamedTuple):
    """What [`step_backward`][refmem.memory_lstm.step_backward] needs from [`step_forward`][refmem.memory_lstm.step_forward]."""

    x: Array["B D"]
    """The input."""
    h_prev: Array["B H"]
    """The previous hidden state."""
    memory_prev: Array["B M H"]
    """The previous memory."""
    params: Params
    """The parameters."""
    i: Array["B H"]
    """The input gate."""
    f: Array["B H"]
    """The forget gate."""
    o: Array["B H"]
    """The output gate."""
    c_tilde: Array["B H"]
    """The candidate."""
    e: Array["B M"]
    """The slot weights."""
    u: Array["B H"]
    """The memory input `m + x @ W_m`."""
    tanh_c: Array["B H"]
    """`tanh(c)`."""


class StepGrads(NamedTuple):
    """The gradients of [`step_forward`][refmem.memory_lstm.step_forward]'s arguments."""

    x: Array["B D"]
    """The gradient of `x`."""
    h_prev: Array["B H"]
    """The gradient of `h_prev`."""
    memory_prev: Array["B M H"]
    """The gradient of `memory_prev`."""
    params: Params
    """The gradients of the parameters."""


class UnrollOutputs(NamedTuple):
    """The outputs of a sequence ([`unroll_forward`][refmem.memory_lstm.unroll_forward])."""

    h: Array["B T H"]
    """The hidden states of every step."""
    memory: Array["B M H"]
    """The memory after the last step."""
    c: Array["B T H"]
    """The cell states of every step."""


class UnrollCache(NamedTuple):
    """What [`unroll_backward`][refmem.memory_lstm.unroll_backward] needs from [`unroll_forward`][refmem.memory_lstm.unroll_forward]."""

    x: Array["B T D"]
    """The inputs."""
    h0: Array["B H"]
    """The initial hidden state (zeros when the forward was given none)."""
    memory0: Array["B M H"]
    """The initial memory (zeros when the forward was given none)."""
    steps: tuple[StepCache, ...]
    """One [`StepCache`][refmem.memory_lstm.StepCache] per time step, oldest first."""


class UnrollGrads(NamedTuple):
    """The gradients of [`unroll_forward`][refmem.memory_lstm.unroll_forward]'s arguments, in its order."""

    x: Array["B T D"]
    """The gradient of `x`."""
    params: Params
    """The gradients of the parameters, summed over the steps."""
    h0: Array["B H"]
    """The gradient of `h0` (also when the forward used the zero default)."""
    memory0: Array["B M H"]
    """The gradient of `memory0` (also when the forward used the zero default)."""


#: The 0.1 names of the output types (deprecated aliases).
StepOut = StepOutputs
UnrollOut = UnrollOutputs


class _UnrollGrads01(NamedTuple):
    """The 0.1 field order of the unroll's gradients, returned to the 0.1 call form only."""

    x: Any
    h0: Any
    memory0: Any
    params: Params


# --------------------------------------------------------------------------- initialisation


@checked
def init_params(xp: Any, D: Size, H: Size, M: Size, seed: Seed = 0, dtype: Any = None) -> Params:
    """Glorot-uniform `W_*` and `U_*`, zero biases (as the seed's `glorot_uniform` layer).

    Each matrix of shape `(fan_in, fan_out)` is drawn from `U(-a, a)`, `a = sqrt(6 / (fan_in + fan_out))`,
    in the field order of [`Params`][refmem.memory_lstm.Params] with one `refmem.sampling.Sampler`
    (float32-representable values), so a seed gives the same parameters on every backend.

    Args:
        xp: the namespace to create the arrays in (`rx.backend("numpy")`, ...).
        D: input width.
        H: hidden width.
        M: memory slots.
        seed: seed of the draws.
        dtype: floating dtype of the result (default `xp.float64`).

    Returns:
        params: the [`Params`][refmem.memory_lstm.Params].
    """
    dtype = xp.float64 if dtype is None else dtype
    sampler = Sampler(xp, seed)
    values = {}
    for name, shape in param_shapes(int(D), int(H), int(M)).items():
        if len(shape) == 1:
            values[name] = xp.zeros(shape, dtype=dtype)
        else:
            limit = (6.0 / (shape[0] + shape[1])) ** 0.5
            values[name] = xp.astype(sampler.uniform(shape, -limit, limit), dtype)
    return Params(**values)


# --------------------------------------------------------------------------- one step: the maths


def _gate_pre(x: Any, h_prev: Any, W: Any, U: Any, b: Any) -> Any:
    """Pre-activation `x @ W + h_prev @ U + b`."""
    return x @ W + h_prev @ U + b


def step(x: Any, h_prev: Any, memory_prev: Any, p: Params) -> tuple[StepOutputs, StepCache]:
    """One step of the cell (SPEC §4, equations 4.1-4.7), unchecked: `(StepOutputs, StepCache)`."""
    xp = rx.namespace(x, h_prev, memory_prev)
    i = P.sigmoid(_gate_pre(x, h_prev, p.W_i, p.U_i, p.b_i))  # (4.1)
    f = P.sigmoid(_gate_pre(x, h_prev, p.W_f, p.U_f, p.b_f))
    o = P.sigmoid(_gate_pre(x, h_prev, p.W_o, p.U_o, p.b_o))
    c_tilde = xp.tanh(_gate_pre(x, h_prev, p.W_c, p.U_c, p.b_c))  # (4.2)
    e = P.softmax(_gate_pre(x, h_prev, p.W_e, p.U_e, p.b_e), axis=-1)  # (4.3) [B, M]
    m = xp.sum(e[:, :, None] * memory_prev, axis=1)  # (4.4) [B, H]
    u = m + x @ p.W_m
    c = f * u + i * c_tilde  # (4.5)
    tanh_c = xp.tanh(c)
    h = o * tanh_c  # (4.6)
    memory = xp.concat([c[:, None, :], memory_prev[:, :-1, :]], axis=1)  # (4.7)
    cache = StepCache(x, h_prev, memory_prev, p, i, f, o, c_tilde, e, u, tanh_c)
    return StepOutputs(h, c, memory), cache


def step_vjp(d_h: Any, d_c: Any, d_memory: Any, cache: StepCache) -> StepGrads:
    """The gradients of one step from the gradients of its outputs `h`, `c`, `memory` (each may be
    `None`, zero), unchecked. `docs/derivations/memory_lstm.md` §1 derives it line by line."""
    xp = rx.namespace(cache.x)
    x, h_prev, memory_prev, p = cache.x, cache.h_prev, cache.memory_prev, cache.params
    i, f, o, c_tilde, e, u, tanh_c = cache.i, cache.f, cache.o, cache.c_tilde, cache.e, cache.u, cache.tanh_c
    if d_h is None:
        d_h = xp.zeros_like(tanh_c)

    # (4.6) h = o ∘ tanh(c); (4.7) memory[:, 0] = c; and c is an output itself.
    d_o = d_h * tanh_c
    d_c_total = d_h * o * (1.0 - tanh_c * tanh_c)
    if d_memory is not None:
        d_c_total = d_c_total + d_memory[:, 0, :]
    if d_c is not None:
        d_c_total = d_c_total + d_c
    # (4.5) c = f ∘ u + i ∘ c~, u = m + x @ W_m
    d_f = d_c_total * u
    d_u = d_c_total * f
    d_i = d_c_total * c_tilde
    d_c_tilde = d_c_total * i
    # (4.4) m = Σ_k e_k memory_prev[:, k]
    d_e = xp.sum(memory_prev * d_u[:, None, :], axis=2)  # [B, M]
    d_memory_prev = e[:, :, None] * d_u[:, None, :]  # [B, M, H]
    # (4.7) memory[:, k + 1] = memory_prev[:, k] for k < M - 1
    if d_memory is not None:
        shifted = xp.concat([d_memory[:, 1:, :], xp.zeros_like(d_memory[:, :1, :])], axis=1)
        d_memory_prev = d_memory_prev + shifted
    # pre-activations: (4.1) sigmoids, (4.2) tanh, (4.3) softmax
    d_a = {
        "i": d_i * i * (1.0 - i),
        "f": d_f * f * (1.0 - f),
        "o": d_o * o * (1.0 - o),
        "c": d_c_tilde * (1.0 - c_tilde * c_tilde),
        "e": P.softmax_vjp(d_e, e, -1),
    }
    x_t = xp.matrix_transpose(x)
    h_t = xp.matrix_transpose(h_prev)
    d_x = d_u @ xp.matrix_transpose(p.W_m)
    d_h_prev = xp.zeros_like(h_prev)
    grads: dict[str, Any] = {"W_m": x_t @ d_u}
    for g, d_pre in d_a.items():
        W, U = getattr(p, f"W_{g}"), getattr(p, f"U_{g}")
        grads[f"W_{g}"] = x_t @ d_pre
        grads[f"U_{g}"] = h_t @ d_pre
        grads[f"b_{g}"] = xp.sum(d_pre, axis=0)
        d_x = d_x + d_pre @ xp.matrix_transpose(W)
        d_h_prev = d_h_prev + d_pre @ xp.matrix_transpose(U)
    return StepGrads(d_x, d_h_prev, d_memory_prev, Params(**grads))


# --------------------------------------------------------------------------- one step: the checked pair


@checked
def step_forward(x: Array["B D"], h_prev: Array["B H"], memory_prev: Array["B M H"],
                 params: Params) -> tuple[StepOutputs, StepCache]:
    """One step of the LSTM memory cell (SPEC §4, equations 4.1-4.7 of this module).

    Args:
        x: the input `[B, D]`.
        h_prev: the previous hidden state `[B, H]`.
        memory_prev: the previous memory slots `[B, M, H]`, newest first.
        params: the [`Params`][refmem.memory_lstm.Params], with the shapes of SPEC §4.

    Returns:
        outputs: a [`StepOutputs`][refmem.memory_lstm.StepOutputs] `(h [B, H], c [B, H], memory [B, M, H])`.
        cache: a [`StepCache`][refmem.memory_lstm.StepCache].

    Raises:
        refmem.errors.ShapeError: an argument or parameter of the wrong shape (e.g. the seed's
            `W_m` of shape `(M, H)`), named in the message.
    """
    return step(x, h_prev, memory_prev, params)


_STEP_NEW = inspect.Signature([inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD) for n in ("d_out", "cache")])
_STEP_OLD = inspect.Signature([inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD) for n in ("d_h", "d_memory", "cache")]
                              + [inspect.Parameter("d_c", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None)])
_UNROLL_OLD = inspect.Signature([inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD) for n in ("d_h", "cache")]
                                + [inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None)
                                   for n in ("d_memory", "d_c")])


def _bind_new(args: tuple, kwargs: dict) -> Any:
    """The arguments of the new form `(d_out, cache)` with a tuple `d_out`, or `None`."""
    try:
        new = _STEP_NEW.bind(*args, **kwargs).arguments
    except TypeError:
        return None
    return new if isinstance(new["d_out"], tuple) else None


def _old_step_backward(*args: Any, **kwargs: Any) -> StepGrads:
    """The 0.1 form `step_backward(d_h, d_memory, cache, d_c=None)`, deprecated."""
    new = _bind_new(args, kwargs)
    if new is not None:
        return step_backward(new["d_out"], new["cache"])
    try:
        old = _STEP_OLD.bind(*args, **kwargs).arguments
    except TypeError:
        raise TypeError("step_backward() takes (d_out, cache): d_out a StepOutputs of gradients (None for "
                        "zero)") from None
    warn_old_call("step_backward(d_h, d_memory, cache, d_c=None)",
                  "step_backward(StepOutputs(h=d_h, c=d_c, memory=d_memory), cache)")
    return step_backward(StepOutputs(old["d_h"], old.get("d_c"), old["d_memory"]), old["cache"])


@checked(legacy=_old_step_backward)
def step_backward(d_out: StepOutputs, cache: StepCache) -> StepGrads:
    """Vector-Jacobian product of [`step_forward`][refmem.memory_lstm.step_forward].

    Args:
        d_out: a [`StepOutputs`][refmem.memory_lstm.StepOutputs] (or a tuple in its order) of the
            upstream gradients `h [B, H]`, `c [B, H]` and `memory [B, M, H]`; each may be `None`
            (zero). The gradient of `c` adds to the one that reaches `c` through `h` and the
            newest memory slot.
        cache: the [`StepCache`][refmem.memory_lstm.StepCache] of the forward.

    Returns:
        grads: a [`StepGrads`][refmem.memory_lstm.StepGrads] `(x [B, D], h_prev [B, H], memory_prev [B, M, H], params)`.

    Derivation: [docs/derivations/memory_lstm.md, "1. One step"](../derivations/memory_lstm.md#1-one-step-step_backwardd_out-cache)
    """
    d_h, d_c, d_memory = d_out
    return step_vjp(d_h, d_c, d_memory, cache)


# --------------------------------------------------------------------------- a sequence


def unroll(x: Any, params: Params, h0: Any = None, memory0: Any = None) -> tuple[UnrollOutputs, UnrollCache]:
    """[`step`][refmem.memory_lstm.step] over `x [B, T, D]` from `(h0, memory0)` (zeros when `None`), unchecked."""
    xp = rx.namespace(x)
    B, T = int(x.shape[0]), int(x.shape[1])
    H, M = int(params.U_i.shape[0]), int(params.b_e.shape[0])
    if h0 is None:
        h0 = xp.zeros((B, H), dtype=x.dtype)
    if memory0 is None:
        memory0 = xp.zeros((B, M, H), dtype=x.dtype)
    h, memory = h0, memory0
    hs, cs, steps = [], [], []
    for t in range(T):
        out, cache = step(x[:, t, :], h, memory, params)
        h, memory = out.h, out.memory
        hs.append(out.h)
        cs.append(out.c)
        steps.append(cache)
    return UnrollOutputs(xp.stack(hs, axis=1), memory, xp.stack(cs, axis=1)), UnrollCache(x, h0, memory0, tuple(steps))


def unroll_vjp(d_h: Any, d_memory: Any, d_c: Any, cache: UnrollCache) -> UnrollGrads:
    """Backpropagation through time for [`unroll`][refmem.memory_lstm.unroll] from the gradients of
    its outputs `h`, `memory`, `c` (each may be `None`, zero), unchecked.

    Going backwards in time, step `t` receives `d_h[:, t]` plus the `h_prev` gradient of step
    `t + 1`, and the `memory_prev` gradient of step `t + 1` as the gradient of its memory
    (`docs/derivations/memory_lstm.md` §2); parameter gradients are summed over the steps.
    """
    steps = cache.steps
    T = len(steps)
    xp = rx.namespace(cache.x)
    d_x = [None] * T
    d_h_next = None  # gradient reaching h_t from step t + 1
    d_mem_next = d_memory  # gradient reaching memory_t from step t + 1 (or from the output)
    total = None
    for t in range(T - 1, -1, -1):
        d_h_t = P.add_optional(None if d_h is None else d_h[:, t, :], d_h_next)
        g = step_vjp(d_h_t, None if d_c is None else d_c[:, t, :], d_mem_next, steps[t])
        d_x[t] = g.x
        d_h_next, d_mem_next = g.h_prev, g.memory_prev
        total = g.params if total is None else Params(*(a + b for a, b in zip(total, g.params)))
    return UnrollGrads(xp.stack(d_x, axis=1), total, d_h_next, d_mem_next)


@checked
def unroll_forward(x: Array["B T D"], params: Params, h0: Array["B H"] | None = None,
                   memory0: Array["B M H"] | None = None) -> tuple[UnrollOutputs, UnrollCache]:
    """Run [`step_forward`][refmem.memory_lstm.step_forward] over `x [B, T, D]` from `(h0, memory0)` (SPEC §4).

    Args:
        x: the inputs `[B, T, D]`, `T ≥ 1`.
        params: the [`Params`][refmem.memory_lstm.Params].
        h0: the initial hidden state `[B, H]`, or `None` (zeros, SPEC §4).
        memory0: the initial memory `[B, M, H]`, or `None` (zeros).

    Returns:
        outputs: an [`UnrollOutputs`][refmem.memory_lstm.UnrollOutputs] `(h [B, T, H], memory [B, M, H], c [B, T, H])`;
            `memory` is the state after the last step.
        cache: an [`UnrollCache`][refmem.memory_lstm.UnrollCache].
    """
    return unroll(x, params, h0, memory0)


def _old_unroll_backward(*args: Any, **kwargs: Any) -> _UnrollGrads01:
    """The 0.1 form `unroll_backward(d_h, cache, d_memory=None, d_c=None)`, deprecated; it returns
    the gradients in the 0.1 order `(x, h0, memory0, params)`."""
    new = _bind_new(args, kwargs)
    if new is not None:
        return unroll_backward(new["d_out"], new["cache"])
    try:
        old = _UNROLL_OLD.bind(*args, **kwargs).arguments
    except TypeError:
        raise TypeError("unroll_backward() takes (d_out, cache): d_out an UnrollOutputs of gradients (None "
                        "for zero)") from None
    warn_old_call("unroll_backward(d_h, cache, d_memory=None, d_c=None)",
                  "unroll_backward(UnrollOutputs(h=d_h, memory=d_memory, c=d_c), cache)")
    g = unroll_backward(UnrollOutputs(old["d_h"], old.get("d_memory"), old.get("d_c")), old["cache"])
    return _UnrollGrads01(g.x, g.h0, g.memory0, g.params)


@checked(legacy=_old_unroll_backward)
def unroll_backward(d_out: UnrollOutputs, cache: UnrollCache) -> UnrollGrads:
    """Backpropagation through time for [`unroll_forward`][refmem.memory_lstm.unroll_forward], composed from the step's VJP.

    Args:
        d_out: an [`UnrollOutputs`][refmem.memory_lstm.UnrollOutputs] (or a tuple in its order) of
            the upstream gradients `h [B, T, H]`, `memory [B, M, H]` (of the final memory) and
            `c [B, T, H]`; each may be `None` (zero).
        cache: the [`UnrollCache`][refmem.memory_lstm.UnrollCache] of the forward.

    Returns:
        grads: an [`UnrollGrads`][refmem.memory_lstm.UnrollGrads] `(x [B, T, D], params, h0 [B, H], memory0 [B, M, H])`,
            in the order of the forward's arguments; `h0` and `memory0` also when the forward used
            the zero defaults.

    Going backwards in time, step `t` receives `d_h[:, t]` plus the `h_prev` gradient of step
    `t + 1`, and the `memory_prev` gradient of step `t + 1` as the gradient of its memory
    (`docs/derivations/memory_lstm.md` §2); parameter gradients are summed over the steps.

    Derivation: [docs/derivations/memory_lstm.md, "2. A sequence"](../derivations/memory_lstm.md#2-a-sequence-unroll_backwardd_out-cache)
    """
    d_h, d_memory, d_c = d_out
    return unroll_vjp(d_h, d_memory, d_c, cache)
