"""The Bahdanau attention decoder (SPEC §2, equations 1-8) in JAX: ``lax.scan`` over the steps, ``jax.vjp``.

An independent implementation written from SPEC §2, not a call into refmem. Both
``output_state`` options (``previous``: eq. 8 reads ``s_{t-1}``; ``current``: ``s_t``),
a mask over the annotations and teacher forcing are covered. float64 needs
``jax_enable_x64``, which this module switches on when it is imported::

    refmem golden verify --adapter examples.jax_attention:run --dtype float64
"""

from __future__ import annotations

import functools

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

#: The golden cases this adapter implements (fnmatch patterns).
CASES = ["attention/bahdanau_decoder/*"]


def _masked_softmax(e, attend):
    """Softmax over the last axis; masked positions get weight exactly 0 (an all-masked row: all 0)."""
    shift = jax.lax.stop_gradient(jnp.max(jnp.where(attend, e, jnp.min(e, -1, keepdims=True)), -1, keepdims=True))
    ex = jnp.where(attend, jnp.exp(jnp.where(attend, e - shift, 0.0)), 0.0)
    total = jnp.sum(ex, -1, keepdims=True)
    return ex / jnp.where(total == 0, 1.0, total)


def bahdanau_decoder(h, p, output_state="previous", mask=None, y_prev=None):
    """``y [B, T, K]``, ``alpha [B, T, T]``, ``s [B, T, H]`` for annotations ``h [B, T, D]``.

    ``mask [B, T]`` (nonzero: attended); ``y_prev [B, T, K]`` replaces the fed-back
    ``y_{t-1}`` of step ``t`` (0-based) by ``y_prev[:, t]``.
    """
    B = h.shape[0]
    K = p["W_o"].shape[0]
    keys = h @ p["U_a"] + p["b_a"]  # once per sequence
    attend = None if mask is None else mask != 0

    def step(carry, y_given):
        y, s = carry
        y_in = y if y_given is None else y_given
        e = jnp.tanh((s @ p["W_a"])[:, None, :] + keys) @ p["V_a"]  # (1)
        alpha = jax.nn.softmax(e, axis=-1) if attend is None else _masked_softmax(e, attend)  # (2)
        c = jnp.einsum("bj,bjd->bd", alpha, h)  # (3)
        r = jax.nn.sigmoid(y_in @ p["W_r"] + s @ p["U_r"] + c @ p["C_r"] + p["b_r"])  # (4)
        z = jax.nn.sigmoid(y_in @ p["W_z"] + s @ p["U_z"] + c @ p["C_z"] + p["b_z"])  # (5)
        prop = jnp.tanh(y_in @ p["W_p"] + (r * s) @ p["U_p"] + c @ p["C_p"] + p["b_p"])  # (6)
        s_new = (1 - z) * s + z * prop  # (7)
        s_star = s if output_state == "previous" else s_new
        y_new = jax.nn.softmax(y_in @ p["W_o"] + s_star @ p["U_o"] + c @ p["C_o"] + p["b_o"], axis=-1)  # (8)
        return (y_new, s_new), (y_new, alpha, s_new)

    init = (jnp.zeros((B, K), h.dtype), jnp.tanh(h[:, 0] @ p["W_s"]))  # y_0 = 0, s_0
    T = h.shape[1]
    xs = None if y_prev is None else jnp.swapaxes(y_prev, 0, 1)
    _, (ys, alphas, ss) = jax.lax.scan(step, init, xs, length=T)
    return tuple(jnp.swapaxes(a, 0, 1) for a in (ys, alphas, ss))


def _outputs(a, mask, output_state):
    p = {k.split("/", 1)[1]: v for k, v in a.items() if k.startswith("params/")}
    y, alpha, s = bahdanau_decoder(a["inputs/h"], p, output_state, mask, a.get("inputs/y_prev"))
    return {"y": y, "alpha": alpha, "s": s}


@functools.partial(jax.jit, static_argnums=3)
def _forward_backward(args, mask, cotangents, output_state):
    outputs, vjp = jax.vjp(lambda a: _outputs(a, mask, output_state), args)
    (grads,) = vjp(cotangents)
    return outputs, grads


@functools.partial(jax.jit, static_argnums=4)
def _forward_mode(args, mask, cotangents, tangents, output_state):
    """docs/golden-format.md's ``jvp/`` (``jax.jvp``) and ``hvp/`` (forward over reverse, ``jax.jvp(jax.grad(loss))``)."""
    def outputs(a):
        return _outputs(a, mask, output_state)

    def loss(a):
        out = outputs(a)
        return sum(jnp.sum(out[k] * cotangents[k]) for k in out)

    _, jvp = jax.jvp(outputs, (args,), (tangents,))
    _, hvp = jax.jvp(jax.grad(loss), (args,), (tangents,))
    return jvp, hvp


#: A differential campaign calls the adapter with new sizes at every example, and jit compiles each
#: new shape: the compiled code of thousands of shapes exhausts the process's memory maps (LLVM
#: "Cannot allocate memory", then a crash, seen after about 600 calls of jax_rnnsearch). The caches
#: are dropped every ``CLEAR_EVERY`` calls (a later call of a dropped shape compiles again).
CLEAR_EVERY = 64
_CALLS = 0


def run(case: str, tensors: dict[str, np.ndarray], dtype: str, config: dict | None = None) -> dict[str, np.ndarray]:
    """The adapter: outputs by the forward, grads by ``jax.vjp`` with the given cotangents, and
    ``jvp/`` and ``hvp/`` along the given tangents by ``jax.jvp`` and ``jax.jvp(jax.grad(...))``."""
    global _CALLS
    _CALLS += 1
    if _CALLS % CLEAR_EVERY == 0:
        jax.clear_caches()
    config = config or {}
    output_state = config.get("output_state") or ("current" if "/current" in case else "previous")
    jdtype = {"float32": jnp.float32, "float64": jnp.float64}[dtype]
    args = {k: jnp.asarray(v, dtype=jdtype) for k, v in tensors.items()
            if k.split("/")[0] in ("inputs", "params", "state") and k != "inputs/mask"}
    mask = jnp.asarray(tensors["inputs/mask"]) if "inputs/mask" in tensors else None  # not differentiated
    cot = {k.split("/", 1)[1]: jnp.asarray(v, dtype=jdtype) for k, v in tensors.items() if k.startswith("cotangents/")}
    outputs, grads = _forward_backward(args, mask, cot, output_state)
    result = {f"outputs/{k}": np.asarray(v) for k, v in outputs.items()}
    result.update({f"grads/{k}": np.asarray(g) for k, g in grads.items()})
    if any(k.startswith("tangents/") for k in tensors):  # a golden file with forward-mode tensors
        tangents = {k: (jnp.asarray(tensors[f"tangents/{k}"], dtype=jdtype) if f"tangents/{k}" in tensors
                        else jnp.zeros_like(v)) for k, v in args.items()}
        jvp, hvp = _forward_mode(args, mask, cot, tangents, output_state)
        result.update({f"jvp/{k}": np.asarray(v) for k, v in jvp.items()})
        result.update({f"hvp/{k}": np.asarray(v) for k, v in hvp.items() if f"tangents/{k}" in tensors})
    return result
