"""``jax.jit(jax.grad(...))`` on the CPU, written from SPEC §2, §4 and §5 with ``lax.scan`` over time.

The DNC's access step is the golden engineer's ``examples/jax_dnc.py``; the
controller, the output map and the two other models are here. float64 needs
``jax_enable_x64``, switched on when this module loads jax.
"""

from __future__ import annotations

from typing import Any, Callable

from .common import Skip, example
from .configs import Bench
from .problems import make


def _jax():
    try:
        import jax
    except ImportError as exc:
        raise Skip("jax is not installed") from exc
    jax.config.update("jax_enable_x64", True)
    return jax


def memory_lstm(x, p):
    """SPEC §4 over ``x [B, T, D]`` from a zero state: ``h [B, T, H]``."""
    jax = _jax()
    jnp = jax.numpy
    B, H, M = x.shape[0], p["W_i"].shape[1], p["W_e"].shape[1]

    def pre(xt, h, g):
        return xt @ p[f"W_{g}"] + h @ p[f"U_{g}"] + p[f"b_{g}"]

    def step(carry, xt):
        h, mem = carry
        i, f, o = (jax.nn.sigmoid(pre(xt, h, g)) for g in ("i", "f", "o"))
        c_tilde = jnp.tanh(pre(xt, h, "c"))
        e = jax.nn.softmax(pre(xt, h, "e"), axis=-1)
        m = jnp.einsum("bk,bkh->bh", e, mem)
        c = f * (m + xt @ p["W_m"]) + i * c_tilde
        h = o * jnp.tanh(c)
        mem = jnp.concatenate([c[:, None, :], mem[:, :-1, :]], axis=1)
        return (h, mem), h

    init = (jnp.zeros((B, H), x.dtype), jnp.zeros((B, M, H), x.dtype))
    _, hs = jax.lax.scan(step, init, jnp.swapaxes(x, 0, 1))
    return jnp.swapaxes(hs, 0, 1)


def bahdanau(h, p):
    """SPEC §2, ``output_state="previous"``, no mask: ``y [B, T, K]``."""
    jax = _jax()
    jnp = jax.numpy
    B, T, _ = h.shape
    K = p["W_o"].shape[0]
    keys = h @ p["U_a"] + p["b_a"]

    def step(carry, _):
        s, y = carry
        e = jnp.tanh((s @ p["W_a"])[:, None, :] + keys) @ p["V_a"]
        alpha = jax.nn.softmax(e, axis=-1)
        c = jnp.einsum("bj,bjd->bd", alpha, h)
        r = jax.nn.sigmoid(y @ p["W_r"] + s @ p["U_r"] + c @ p["C_r"] + p["b_r"])
        z = jax.nn.sigmoid(y @ p["W_z"] + s @ p["U_z"] + c @ p["C_z"] + p["b_z"])
        prop = jnp.tanh(y @ p["W_p"] + (r * s) @ p["U_p"] + c @ p["C_p"] + p["b_p"])
        y_new = jax.nn.softmax(y @ p["W_o"] + s @ p["U_o"] + c @ p["C_o"] + p["b_o"], axis=-1)
        return ((1 - z) * s + z * prop, y_new), y_new

    init = (jnp.tanh(h[:, 0] @ p["W_s"]), jnp.zeros((B, K), h.dtype))
    _, ys = jax.lax.scan(step, init, None, length=T)
    return jnp.swapaxes(ys, 0, 1)


def dnc_core(x, p, sizes: dict, convention: str = "deepmind"):
    """The DNC core (SPEC §5, one LSTM layer, no clip) over ``x [B, T, D]``: ``y [B, T, Y]``."""
    jax = _jax()
    jnp = jax.numpy
    access_step = example("jax_dnc").access_step
    B = x.shape[0]
    H, N, W, R, nw = sizes["H"], sizes["N"], sizes["W"], sizes["R"], sizes["nw"]
    z = lambda *shape: jnp.zeros(shape, x.dtype)  # noqa: E731
    state = {"memory": z(B, N, W), "read_weights": z(B, R, N), "write_weights": z(B, nw, N),
             "link": z(B, nw, N, N), "precedence": z(B, nw, N), "usage": z(B, N)}

    def step(carry, xt):
        h, c, reads, st = carry
        gates = jnp.concatenate([xt, reads, h], axis=1) @ p["W_lstm1"] + p["b_lstm1"]
        i, j, f, o = jnp.split(gates, 4, axis=1)
        c = jax.nn.sigmoid(f + 1.0) * c + jax.nn.sigmoid(i) * jnp.tanh(j)
        h = jnp.tanh(c) * jax.nn.sigmoid(o)
        read_vectors, st, _ = access_step(h, p["W_xi"], p["b_xi"], st, convention)
        reads = read_vectors.reshape(B, R * W)
        return (h, c, reads, st), jnp.concatenate([h, reads], axis=1) @ p["W_y"] + p["b_y"]

    _, ys = jax.lax.scan(step, (z(B, H), z(B, H), z(B, R * W), state), jnp.swapaxes(x, 0, 1))
    return jnp.swapaxes(ys, 0, 1)


def forward(model: str, x, p, sizes: dict):
    if model == "memory_lstm":
        return memory_lstm(x, p)
    if model == "attention":
        return bahdanau(x, p)
    if model == "dnc":
        return dnc_core(x, p, sizes)
    raise KeyError(model)


def build(bench: Bench, dtype: str) -> Callable[[], Any]:
    """``jax.jit(jax.grad(Σ out ∘ cot))`` w.r.t. ``x`` and every param; the first call compiles."""
    jax = _jax()
    jnp = jax.numpy
    dt = getattr(jnp, dtype)
    prob = make(bench.model, bench.sizes)
    x = jnp.asarray(prob["x"], dtype=dt)
    p = {k: jnp.asarray(v, dtype=dt) for k, v in prob["params"].items()}
    cot = jnp.asarray(prob["cot"], dtype=dt)
    if bench.model == "dnc":
        example("jax_dnc")  # Skip early when the example is missing

    def loss(x_, p_):
        return jnp.sum(forward(bench.model, x_, p_, dict(bench.sizes)) * cot)

    grad = jax.jit(jax.grad(loss, argnums=(0, 1)))

    def step():
        return jax.block_until_ready(grad(x, p))

    return step
