"""SPEC §4: the LSTM memory cell (seed 000, the corrected version).

An LSTM whose cell mixes in an attention-weighted read of its last ``M`` cell
states. One step, with ``x [B, D]``, ``h_prev [B, H]``, ``memory_prev [B, M, H]``
(SPEC §4, equations numbered here as in the code comments)::

    (4.1)  i = σ(x @ W_i + h_prev @ U_i + b_i)
           f = σ(x @ W_f + h_prev @ U_f + b_f)
           o = σ(x @ W_o + h_prev @ U_o + b_o)
    (4.2)  c~ = tanh(x @ W_c + h_prev @ U_c + b_c)
    (4.3)  e = softmax(x @ W_e + h_prev @ U_e + b_e)             over the M slots
    (4.4)  m = Σ_k e_k · memory_prev[:, k, :]
    (4.5)  c = f ∘ (m + x @ W_m) + i ∘ c~
    (4.6)  h = o ∘ tanh(c)
    (4.7)  memory = concat(c[:, None, :], memory_prev[:, :-1, :])  newest first

The seed's original layer declared ``W_m`` with shape ``(M, H)``; ``x @ W_m`` is
then undefined and every function here refuses such parameters with an
:class:`refmem.xp.ShapeError` naming ``W_m``, the expected ``(D, H)`` and the
given shape.

Forward/backward pairs: :func:`step_forward` / :func:`step_backward` for one
step, :func:`unroll_forward` / :func:`unroll_backward` for a sequence
(backpropagation through time composed from the step pair). The derivation of
every backward line is in ``docs/derivations/memory_lstm.md``; the variable
names there are the ones used below.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from .. import primitives as P
from .. import xp as rx
from ..errors import DomainError, DTypeError, NamespaceError, ShapeError
from ..sampling import Sampler
from ..validation import check_arrays, check_size

__all__ = [
    "Params",
    "StepOut",
    "StepCache",
    "StepGrads",
    "UnrollOut",
    "UnrollCache",
    "UnrollGrads",
    "PARAM_SHAPES",
    "init_params",
    "param_shapes",
    "step_forward",
    "step_backward",
    "unroll_forward",
    "unroll_backward",
]


class Params(NamedTuple):
    """Parameters of the cell (SPEC §4); gradients use the same type.

    Gates ``g`` in ``i, f, o`` and the candidate ``c``: ``W_g [D, H]``, ``U_g [H, H]``,
    ``b_g [H]``. Slot attention: ``W_e [D, M]``, ``U_e [H, M]``, ``b_e [M]``.
    Input-to-memory map: ``W_m [D, H]``.
    """

    W_i: Any
    U_i: Any
    b_i: Any
    W_f: Any
    U_f: Any
    b_f: Any
    W_o: Any
    U_o: Any
    b_o: Any
    W_c: Any
    U_c: Any
    b_c: Any
    W_e: Any
    U_e: Any
    b_e: Any
    W_m: Any


#: Parameter name -> its shape in SPEC's letters.
PARAM_SHAPES: dict[str, tuple[str, ...]] = {
    **{name: shape for g in "ifoc" for name, shape in
       ((f"W_{g}", ("D", "H")), (f"U_{g}", ("H", "H")), (f"b_{g}", ("H",)))},
    "W_e": ("D", "M"),
    "U_e": ("H", "M"),
    "b_e": ("M",),
    "W_m": ("D", "H"),
}


def param_shapes(D: int, H: int, M: int) -> dict[str, tuple[int, ...]]:
    """Parameter name -> its shape in numbers for input width ``D``, hidden width ``H``, ``M`` slots."""
    sizes = {"D": D, "H": H, "M": M}
    return {name: tuple(sizes[s] for s in shape) for name, shape in PARAM_SHAPES.items()}


class StepOut(NamedTuple):
    """Outputs of one step: ``h [B, H]``, ``c [B, H]``, ``memory [B, M, H]`` (newest slot first)."""

    h: Any
    c: Any
    memory: Any


class StepCache(NamedTuple):
    """What :func:`step_backward` needs from :func:`step_forward`.

    ``x [B, D]``, ``h_prev [B, H]``, ``memory_prev [B, M, H]``, ``params`` (:class:`Params`);
    gate activations ``i, f, o [B, H]``, candidate ``c_tilde [B, H]``, slot weights
    ``e [B, M]``, memory input ``u = m + x @ W_m [B, H]``, ``tanh_c = tanh(c) [B, H]``.
    """

    x: Any
    h_prev: Any
    memory_prev: Any
    params: Params
    i: Any
    f: Any
    o: Any
    c_tilde: Any
    e: Any
    u: Any
    tanh_c: Any


class StepGrads(NamedTuple):
    """Gradients of one step: ``x [B, D]``, ``h_prev [B, H]``, ``memory_prev [B, M, H]``, ``params`` (:class:`Params`)."""

    x: Any
    h_prev: Any
    memory_prev: Any
    params: Params


class UnrollOut(NamedTuple):
    """Outputs of a sequence: ``h [B, T, H]``, ``memory [B, M, H]`` (after the last step), ``c [B, T, H]``."""

    h: Any
    memory: Any
    c: Any


class UnrollCache(NamedTuple):
    """``steps``: one :class:`StepCache` per time step, oldest first (a tuple of length ``T``)."""

    steps: tuple


class UnrollGrads(NamedTuple):
    """Gradients of a sequence: ``x [B, T, D]``, ``h0 [B, H]``, ``memory0 [B, M, H]``, ``params`` (:class:`Params`)."""

    x: Any
    h0: Any
    memory0: Any
    params: Params


# --------------------------------------------------------------------------- validation


def _check_call(x: Any, x_spec: str, h: Any, h_name: str, memory: Any, m_name: str, params: Any,
                sizes: dict | None = None) -> dict[str, int]:
    """One check of a call's arrays (shapes in SPEC's letters, one namespace, one precision, finite
    values; see :mod:`refmem.validation`), naming the first wrong argument."""
    if not isinstance(params, Params):
        raise TypeError(f"params: expected refmem.memory_lstm.Params, got {type(params).__name__}")
    p_arrays = {name: getattr(params, name) for name in PARAM_SHAPES}
    p_specs = {name: " ".join(letters) for name, letters in PARAM_SHAPES.items()}
    try:  # parameters that agree among themselves fix D, H, M: a wrong input is then reported on itself
        sizes = {**check_arrays(p_arrays, p_specs), **(sizes or {})}
    except (ShapeError, DTypeError, NamespaceError, DomainError):
        pass  # reported below, measured against the inputs
    arrays = {"x": x, h_name: h, m_name: memory, **p_arrays}
    specs = {"x": x_spec, h_name: "?B H", m_name: "?B M H", **p_specs}
    return check_arrays(arrays, specs, sizes=sizes)


# --------------------------------------------------------------------------- initialisation


def init_params(xp: Any, D: int, H: int, M: int, seed: int = 0, dtype: Any = None) -> Params:
    """Glorot-uniform ``W_*`` and ``U_*``, zero biases (as the seed's ``glorot_uniform`` layer).

    Each matrix of shape ``(fan_in, fan_out)`` is drawn from
    ``U(-a, a)``, ``a = sqrt(6 / (fan_in + fan_out))``, in the field order of
    :class:`Params` with one :class:`refmem.xp.Sampler` (float32-representable
    values), so a seed gives the same parameters on every backend.

    Args:
        xp: the namespace to create the arrays in (``rx.backend("numpy")``, ...).
        D: input width.
        H: hidden width.
        M: memory slots.
        seed: seed of the draws.
        dtype: floating dtype of the result (default ``xp.float64``).
    """
    D, H, M = (check_size(letter, n) for letter, n in (("D", D), ("H", H), ("M", M)))
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


# --------------------------------------------------------------------------- one step


def _gate_pre(x: Any, h_prev: Any, W: Any, U: Any, b: Any) -> Any:
    """Pre-activation ``x @ W + h_prev @ U + b``."""
    return x @ W + h_prev @ U + b


def step_forward(x: Any, h_prev: Any, memory_prev: Any, params: Params) -> tuple[StepOut, StepCache]:
    """One step of the LSTM memory cell (SPEC §4, equations 4.1-4.7 of this module).

    Args:
        x: input ``[B, D]``.
        h_prev: previous hidden state ``[B, H]``.
        memory_prev: previous memory slots ``[B, M, H]``, newest first.
        params: :class:`Params` with the shapes of SPEC §4.
    Returns:
        ``(StepOut(h [B, H], c [B, H], memory [B, M, H]), StepCache)``.
    Raises:
        refmem.xp.ShapeError: an argument or parameter of the wrong shape or dtype
        (e.g. the seed's ``W_m`` of shape ``(M, H)``), named in the message.
    """
    for name, value in (("h_prev", h_prev), ("memory_prev", memory_prev)):
        if value is None:
            raise ShapeError(f"{name}: expected an array, got None")
    _check_call(x, "B D", h_prev, "h_prev", memory_prev, "memory_prev", params)
    return _step_forward(x, h_prev, memory_prev, params)


def _step_forward(x: Any, h_prev: Any, memory_prev: Any, p: Params) -> tuple[StepOut, StepCache]:
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
    return StepOut(h, c, memory), cache


def step_backward(d_h: Any, d_memory: Any, cache: StepCache, d_c: Any = None) -> StepGrads:
    """Vector-Jacobian product of :func:`step_forward`.

    Args:
        d_h: upstream gradient of ``h`` ``[B, H]`` (not ``None``).
        d_memory: upstream gradient of ``memory`` ``[B, M, H]`` (``None``: zeros).
        cache: the :class:`StepCache` of the forward.
        d_c: upstream gradient of the returned ``c`` ``[B, H]`` (``None``: zeros). It adds
            to the gradient that reaches ``c`` through ``h`` and the newest memory slot.
    Returns:
        The gradients, a :class:`StepGrads` ``(x [B, D], h_prev [B, H], memory_prev [B, M, H], params)``.

    The derivation, line by line with these names, is ``docs/derivations/memory_lstm.md`` §1.

    Derivation: [docs/derivations/memory_lstm.md, "1. One step"](../derivations/memory_lstm.md#1-one-step-step_backwardd_h-d_memory-cache-d_cnone)
    """
    B, H = (int(s) for s in cache.h_prev.shape)
    M = int(cache.memory_prev.shape[1])
    check_arrays({"the forward's h_prev": cache.h_prev, "d_h": d_h, "d_memory": d_memory, "d_c": d_c},
                 {"the forward's h_prev": "B H", "d_h": "B H", "d_memory": "?B M H", "d_c": "?B H"},
                 sizes={"B": B, "H": H, "M": M})
    return _step_backward(d_h, d_memory, cache, d_c)


def _step_backward(d_h: Any, d_memory: Any, cache: StepCache, d_c: Any) -> StepGrads:
    xp = rx.namespace(d_h, cache.x)
    x, h_prev, memory_prev, p = cache.x, cache.h_prev, cache.memory_prev, cache.params
    i, f, o, c_tilde, e, u, tanh_c = cache.i, cache.f, cache.o, cache.c_tilde, cache.e, cache.u, cache.tanh_c

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
        "e": P.softmax_backward.unchecked(d_e, P.SoftmaxCache(e, -1)),
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


# --------------------------------------------------------------------------- a sequence


def unroll_forward(x: Any, params: Params, h0: Any = None, memory0: Any = None) -> tuple[UnrollOut, UnrollCache]:
    """Run :func:`step_forward` over ``x [B, T, D]`` from ``(h0, memory0)`` (zeros when ``None``).

    Args:
        x: inputs ``[B, T, D]``, ``T ≥ 1``.
        params: :class:`Params`.
        h0: initial hidden state ``[B, H]`` or ``None`` (zeros, SPEC §4).
        memory0: initial memory ``[B, M, H]`` or ``None`` (zeros).
    Returns:
        ``(UnrollOut(h [B, T, H], memory [B, M, H], c [B, T, H]), UnrollCache)``; ``memory`` is
            the state after the last step.
    """
    bound = _check_call(x, "B T D", h0, "h0", memory0, "memory0", params)
    B, T, H, M = bound["B"], bound["T"], bound["H"], bound["M"]
    xp = rx.namespace(x)
    if h0 is None:
        h0 = xp.zeros((B, H), dtype=x.dtype)
    if memory0 is None:
        memory0 = xp.zeros((B, M, H), dtype=x.dtype)

    h, memory = h0, memory0
    hs, cs, steps = [], [], []
    for t in range(T):
        out, cache = _step_forward(x[:, t, :], h, memory, params)
        h, memory = out.h, out.memory
        hs.append(out.h)
        cs.append(out.c)
        steps.append(cache)
    return UnrollOut(xp.stack(hs, axis=1), memory, xp.stack(cs, axis=1)), UnrollCache(tuple(steps))


def unroll_backward(d_h: Any, cache: UnrollCache, d_memory: Any = None, d_c: Any = None) -> UnrollGrads:
    """Backpropagation through time for :func:`unroll_forward`, composed from :func:`step_backward`.

    Args:
        d_h: upstream gradient of ``h`` ``[B, T, H]`` (not ``None``).
        cache: the :class:`UnrollCache` of the forward.
        d_memory: upstream gradient of the final ``memory`` ``[B, M, H]`` (``None``: zeros).
        d_c: upstream gradient of the returned cell states ``c`` ``[B, T, H]`` (``None``: zeros).
    Returns:
        The gradients, a :class:`UnrollGrads` ``(x [B, T, D], h0 [B, H], memory0 [B, M, H], params)``; ``h0``
            and ``memory0`` are returned also when the forward used the zero defaults.

    Going backwards in time, step ``t`` receives ``d_h[:, t]`` plus the ``h_prev``
    gradient of step ``t + 1``, and the ``memory_prev`` gradient of step ``t + 1``
    as its ``d_memory`` (``docs/derivations/memory_lstm.md`` §2); parameter
    gradients are summed over the steps.

    Derivation: [docs/derivations/memory_lstm.md, "2. A sequence"](../derivations/memory_lstm.md#2-a-sequence-unroll_backwardd_h-cache-d_memorynone-d_cnone)
    """
    steps = cache.steps
    T = len(steps)
    B, H = (int(s) for s in steps[0].h_prev.shape)
    M = int(steps[0].memory_prev.shape[1])
    check_arrays({"the forward's h_prev": steps[0].h_prev, "d_h": d_h, "d_memory": d_memory, "d_c": d_c},
                 {"the forward's h_prev": "B H", "d_h": "B T H", "d_memory": "?B M H", "d_c": "?B T H"},
                 sizes={"B": B, "T": T, "H": H, "M": M})
    xp = rx.namespace(d_h)

    d_x = [None] * T
    d_h_next = None  # gradient reaching h_t from step t + 1
    d_mem_next = d_memory  # gradient reaching memory_t from step t + 1 (or from the output)
    total = None
    for t in range(T - 1, -1, -1):
        d_h_t = d_h[:, t, :] if d_h_next is None else d_h[:, t, :] + d_h_next
        g = _step_backward(d_h_t, d_mem_next, steps[t], None if d_c is None else d_c[:, t, :])
        d_x[t] = g.x
        d_h_next, d_mem_next = g.h_prev, g.memory_prev
        total = g.params if total is None else Params(*(a + b for a, b in zip(total, g.params)))
    return UnrollGrads(xp.stack(d_x, axis=1), d_h_next, d_mem_next, total)
