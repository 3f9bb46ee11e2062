"""Bad and extreme inputs, one entry point at a time: what tests/test_bad_input.py does not already try.

test_bad_input.py tries each *kind* of bad input (a wrong shape, dtype, namespace, domain,
size, option or structure) over a dozen entry points. The probes here are the rest of a
new user's attempts on every public function, once a tool of their own (issue 12's
``tools/adversarial.py``, which compared them with the tree before the hardening): the
other primitives, the step functions, the backwards, the configs, the optimisers, the
golden API and the strategies. The probes that test_bad_input.py makes too are gone; the
command lines are in tests/test_cli_errors.py.

A ``bad`` probe passes when refmem raises one of its own errors whose message names each
given word (for a wrong structure type a ``TypeError``, for a missing file an ``OSError``,
for a tampered golden result a failed comparison that names them). A ``good`` probe (a
valid extreme input) passes when every float result is finite, and with ``"f32"`` when
every float result is float32.
"""

from __future__ import annotations

import re
import warnings

import numpy as np
import pytest

PROBES: list[tuple[str, str, str, tuple[str, ...], object]] = []  # (group, label, expect, names, thunk)
_GROUP = [""]


def group(name: str) -> None:
    _GROUP[0] = name


def bad(label: str, *names: str):
    """An invalid input: refmem must raise an error whose message names ``names``."""
    def deco(fn):
        PROBES.append((_GROUP[0], label, "error", names, fn))
        return fn
    return deco


def good(label: str, expect: str = "ok"):
    """A valid (extreme) input: finite results; ``expect="f32"``: every float result float32."""
    def deco(fn):
        PROBES.append((_GROUP[0], label, expect, (), fn))
        return fn
    return deco


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def normal(*shape: int, seed: int = 0) -> np.ndarray:
    return rng(seed).standard_normal(shape)


def unit(*shape: int, seed: int = 0) -> np.ndarray:
    return rng(seed).uniform(0.05, 0.95, shape)


def rows(*shape: int, seed: int = 0) -> np.ndarray:
    """Nonnegative rows summing to 0.9 (read/write weights)."""
    x = unit(*shape, seed=seed)
    return 0.9 * x / x.sum(-1, keepdims=True)


def f32(tree):
    import refmem.optim as O

    return O.tree_map(lambda a: a.astype(np.float32), tree)


def torch_of(x):
    torch = pytest.importorskip("torch")

    return torch.from_numpy(np.ascontiguousarray(x))


# ----------------------------------------------------------------------------- primitives
group("primitives")


def PR():
    import refmem.primitives as P

    return P


@bad("sigmoid_forward(Python list)", "x")
def _():
    return PR().sigmoid_forward([1.0, 2.0])


@bad("sigmoid_forward(Python float)", "x")
def _():
    return PR().sigmoid_forward(3.0)


@bad("sigmoid_forward(int64 array)", "x")
def _():
    return PR().sigmoid_forward(np.arange(4))


@bad("sigmoid_forward(NaN)", "x")
def _():
    return PR().sigmoid_forward(np.array([0.0, np.nan]))


@bad("tanh_forward(+inf)", "x")
def _():
    return PR().tanh_forward(np.array([np.inf, 1.0]))


@bad("sigmoid_backward(d_out of another shape)", "d_out")
def _():
    y, c = PR().sigmoid_forward(normal(2, 3))
    return PR().sigmoid_backward(normal(3, 2), c)


@bad("tanh_backward(d_out without the batch axis)", "d_out")
def _():
    y, c = PR().tanh_forward(normal(2, 3))
    return PR().tanh_backward(normal(3), c)


@bad("softplus_backward(d_out float32, forward float64)", "d_out", "float32", "float64")
def _():
    y, c = PR().softplus_forward(normal(2, 3))
    return PR().softplus_backward(normal(2, 3).astype(np.float32), c)


@bad("oneplus_forward(bool array)", "x")
def _():
    return PR().oneplus_forward(np.array([True, False]))


@bad("softmax_forward(axis=5 on a 2-d array)", "axis")
def _():
    return PR().softmax_forward(normal(2, 3), axis=5)


@bad("softmax_forward(axis='a')", "axis")
def _():
    return PR().softmax_forward(normal(2, 3), axis="a")


@bad("softmax_backward(d_out of another shape)", "d_out")
def _():
    y, c = PR().softmax_forward(normal(2, 3))
    return PR().softmax_backward(normal(2, 4), c)


@bad("softmax_forward(-inf everywhere)", "x")
def _():
    return PR().softmax_forward(np.full((2, 3), -np.inf))


@bad("cosine_forward(keys W != memory W)", "memory")
def _():
    return PR().cosine_forward(normal(2, 3, 4), normal(2, 5, 6))


@bad("cosine_forward(keys float32, memory float64)", "float32", "float64")
def _():
    return PR().cosine_forward(normal(2, 3, 4).astype(np.float32), normal(2, 5, 4))


@bad("cosine_forward(eps=NaN)", "eps")
def _():
    return PR().cosine_forward(normal(2, 3, 4), normal(2, 5, 4), eps=float("nan"))


@good("cosine_forward(zero keys and zero memory rows)")
def _():
    return PR().cosine_forward(np.zeros((2, 3, 4)), np.zeros((2, 5, 4)))


@bad("cosine_backward(d_out without the batch axis)", "d_out")
def _():
    y, c = PR().cosine_forward(normal(2, 3, 4), normal(2, 5, 4))
    return PR().cosine_backward(normal(3, 5), c)


@bad("exclusive_cumprod_forward(axis=3)", "axis")
def _():
    return PR().exclusive_cumprod_forward(normal(2, 3), axis=3)


@bad("exclusive_cumprod_backward(d_out of another shape)", "d_out")
def _():
    y, c = PR().exclusive_cumprod_forward(normal(2, 3))
    return PR().exclusive_cumprod_backward(normal(2, 2), c)


@bad("linear_forward(W rows != x width)", "W")
def _():
    return PR().linear_forward(normal(2, 3), normal(4, 5))


@bad("linear_forward(x torch, W NumPy)", "W")
def _():
    return PR().linear_forward(torch_of(normal(2, 3)), normal(3, 5))


@good("linear_forward(float32)", "f32")
def _():
    return PR().linear_forward(normal(2, 3).astype(np.float32), normal(3, 5).astype(np.float32),
                               normal(5).astype(np.float32))


@good("softmax_forward(float32, entries ±1e4)", "f32")
def _():
    return PR().softmax_forward((1e4 * normal(2, 3)).astype(np.float32))


# ----------------------------------------------------------------------------- memory LSTM
group("memory_lstm")


def ML():
    import refmem.memory_lstm as M

    return M


@bad("init_params(D=0)", "D")
def _():
    return ML().init_params(np, 0, 3, 2)


@bad("init_params(M=-1)", "M")
def _():
    return ML().init_params(np, 2, 3, -1)


@bad("init_params(D=2.5)", "D")
def _():
    return ML().init_params(np, 2.5, 3, 2)


def ml_step_inputs(dtype=np.float64):
    p = ML().init_params(np, 2, 3, 4, dtype=dtype)
    return normal(5, 2).astype(dtype), normal(5, 3).astype(dtype), normal(5, 4, 3).astype(dtype), p


@bad("step_forward(x of the wrong width)", "x")
def _():
    x, h, m, p = ml_step_inputs()
    return ML().step_forward(normal(5, 3), h, m, p)


@bad("step_forward(x as a list)", "x")
def _():
    x, h, m, p = ml_step_inputs()
    return ML().step_forward(x.tolist(), h, m, p)


@bad("step_forward(x float32, params float64)", "float32", "float64")
def _():
    x, h, m, p = ml_step_inputs()
    return ML().step_forward(x.astype(np.float32), h.astype(np.float32), m.astype(np.float32), p)


@bad("step_forward(h_prev with NaN)", "h_prev")
def _():
    x, h, m, p = ml_step_inputs()
    h[0, 0] = np.nan
    return ML().step_forward(x, h, m, p)


@bad("step_forward(params a plain tuple)", "params")
def _():
    x, h, m, p = ml_step_inputs()
    return ML().step_forward(x, h, m, tuple(p))


@bad("step_forward(memory_prev torch, rest NumPy)", "memory_prev")
def _():
    x, h, m, p = ml_step_inputs()
    return ML().step_forward(x, h, torch_of(m), p)


@good("step_forward(float32 throughout)", "f32")
def _():
    return ML().step_forward(*ml_step_inputs(np.float32))


@bad("step_backward(d_out.h without the batch axis)", "d_out.h")
def _():
    out, cache = ML().step_forward(*ml_step_inputs())
    return ML().step_backward(out._replace(h=normal(3)), cache)


@bad("step_backward(d_out.memory of another shape)", "d_out.memory")
def _():
    out, cache = ML().step_forward(*ml_step_inputs())
    return ML().step_backward(out._replace(memory=normal(5, 3, 3)), cache)


@good("unroll_forward(float32, default h0/memory0)", "f32")
def _():
    return ML().unroll_forward(normal(2, 3, 2).astype(np.float32), ML().init_params(np, 2, 3, 4, dtype=np.float32))


@bad("unroll_backward(d_out.h of another T)", "d_out.h")
def _():
    out, cache = ML().unroll_forward(normal(2, 3, 2), ML().init_params(np, 2, 3, 4))
    return ML().unroll_backward(out._replace(h=normal(2, 4, 3)), cache)


# ----------------------------------------------------------------------------- Bahdanau
group("attention.bahdanau")


def BA():
    import refmem.attention.bahdanau as B

    return B


def ba_inputs(B=2, T=3, D=2, H=3, K=4):
    return normal(B, T, D), BA().init_params(np, D, H, K)


@bad("init_params(H=0)", "H")
def _():
    return BA().init_params(np, 2, 0, 4)


@bad("init_params(K=0)", "K")
def _():
    return BA().init_params(np, 2, 3, 0)


@bad("attention_weights_forward(e with NaN)", "e")
def _():
    e = normal(2, 3)
    e[1, 2] = np.nan
    return BA().attention_weights_forward(e)


@good("attention_weights_forward(e all -inf): a row of no attended position, weights and gradients 0")
def _():
    # 0.2 reads -inf as the additive mask: a row all -inf is a fully masked row, with a defined answer
    out, cache = BA().attention_weights_forward(np.full((2, 3), -np.inf))
    grads = BA().attention_weights_backward((normal(2, 3),), cache)
    if not (np.all(out.alpha == 0) and np.all(grads.e == 0)):
        raise AssertionError(f"expected weights and gradients 0, got {out.alpha} and {grads.e}")
    return out, grads


@bad("attention_weights_forward(mask of another shape)", "mask")
def _():
    return BA().attention_weights_forward(normal(2, 3), mask=np.ones((2, 4), dtype=bool))


@bad("attention_weights_forward(e as a list)", "e")
def _():
    return BA().attention_weights_forward([[0.0, 1.0]])


@good("attention_weights_forward(one row fully masked)")
def _():
    m = np.array([[True, True, False], [False, False, False]])
    return BA().attention_weights_forward(normal(2, 3), mask=m)


@good("attention_weights_forward(float32, float 0/1 mask)", "f32")
def _():
    return BA().attention_weights_forward(normal(2, 3).astype(np.float32), mask=np.array([[1.0, 0.0, 1.0], [0.0, 1.0, 1.0]]))


@bad("attention_weights_backward(d_alpha of another shape)", "d_out.alpha")
def _():
    out, cache = BA().attention_weights_forward(normal(2, 3))
    return BA().attention_weights_backward((normal(2, 4),), cache)


@bad("attention_weights_backward(the 0.1 form, alpha = 2.0)", "alpha")
def _():
    # the 0.2 form takes the forward's cache, never built by a user; the 0.1 form (deprecated, still
    # accepted in 0.2) takes the weights themselves, which must be weights
    return BA().attention_weights_backward(normal(2, 3), np.full((2, 3), 2.0))


@bad("decoder_forward(params of Luong)", "params")
def _():
    import refmem.attention.luong as L

    h, p = ba_inputs()
    return BA().decoder_forward(h, L.init_params(np, "general", "global", 3, 2))


@bad("decoder_forward(h of the wrong D)", "D")
def _():
    h, p = ba_inputs()
    return BA().decoder_forward(normal(2, 3, 5), p)


@bad("decoder_forward(y_prev = 2.0)", "y_prev")
def _():
    h, p = ba_inputs()
    return BA().decoder_forward(h, p, y_prev=np.full((2, 3, 4), 2.0))


@good("decoder_forward(float32 throughout)", "f32")
def _():
    h, p = ba_inputs()
    return BA().decoder_forward(h.astype(np.float32), f32(p))


@good("decoder_forward+backward(one batch row fully masked)")
def _():
    h, p = ba_inputs()
    m = np.array([[True, True, True], [False, False, False]])
    out, cache = BA().decoder_forward(h, p, mask=m)
    return out, BA().decoder_backward(BA().DecoderOutputs(y=normal(2, 3, 4), alpha=None, s=None), cache)


@bad("decoder_backward(d_s of another T)", "d_out.s")
def _():
    h, p = ba_inputs()
    out, cache = BA().decoder_forward(h, p)
    return BA().decoder_backward(BA().DecoderOutputs(y=None, alpha=None, s=normal(2, 4, 3)), cache)


@bad("decoder_backward(cache a tuple)", "cache")
def _():
    h, p = ba_inputs()
    out, cache = BA().decoder_forward(h, p)
    return BA().decoder_backward(BA().DecoderOutputs(y=normal(2, 3, 4), alpha=None, s=None), tuple(cache))


@bad("decoder_step_forward(y_in of the wrong K)", "y_in")
def _():
    h, p = ba_inputs()
    uh = h @ p.U_a
    return BA().decoder_step_forward(np.zeros((2, 5)), np.zeros((2, 3)), h, uh, p)


@bad("decoder_step_backward(d_s without the batch axis)", "d_out.s")
def _():
    h, p = ba_inputs()
    uh = h @ p.U_a
    out, cache = BA().decoder_step_forward(np.zeros((2, 4)), np.zeros((2, 3)), h, uh, p)
    return BA().decoder_step_backward(BA().DecoderStepOutputs(y=normal(2, 4), alpha=None, s=normal(3)), cache)


# ----------------------------------------------------------------------------- Luong
group("attention.luong")


def LU():
    import refmem.attention.luong as L

    return L


def lu(score="general", alignment="global", B=2, T=3, S=5, H=3, Hs=3, A=4):
    p = LU().init_params(np, score, alignment, H, Hs, S=S, A=A)
    return normal(B, T, H), normal(B, S, Hs, seed=1), p


@bad("init_params(alignment='bogus')", "alignment")
def _():
    return LU().init_params(np, "general", "bogus", 3, 3)


@bad("init_params(H=0)", "H")
def _():
    return LU().init_params(np, "general", "global", 0, 3)


@bad("init_params(location, S=0)", "S")
def _():
    return LU().init_params(np, "location", "global", 3, 3, S=0)


@bad("attention_forward(dot score, Hs != H)", "hs")
def _():
    h, hs, p = lu("dot", H=3, Hs=4)
    return LU().attention_forward(h, hs, p, score="dot")


@bad("attention_forward(local_p, window=0)", "window")
def _():
    h, hs, p = lu("general", "local_p")
    return LU().attention_forward(h, hs, p, alignment="local_p", window=0)


@bad("attention_forward(local_m, t0=-1)", "t0")
def _():
    h, hs, p = lu("general", "local_m")
    return LU().attention_forward(h, hs, p, alignment="local_m", t0=-1)


@bad("attention_forward(concat score, general params)", "params")
def _():
    h, hs, p = lu("general")
    return LU().attention_forward(h, hs, p, score="concat")


@bad("attention_forward(h float32, rest float64)", "float32", "float64")
def _():
    h, hs, p = lu()
    return LU().attention_forward(h.astype(np.float32), hs, p)


@bad("attention_forward(B = 0)", "h", "empty")
def _():
    h, hs, p = lu()
    return LU().attention_forward(np.zeros((0, 3, 3)), np.zeros((0, 5, 3)), p)


@good("attention_forward(float32, local_p)", "f32")
def _():
    h, hs, p = lu("general", "local_p")
    return LU().attention_forward(h.astype(np.float32), hs.astype(np.float32), f32(p), alignment="local_p")


@bad("attention_backward(cache a tuple)", "cache")
def _():
    h, hs, p = lu()
    out, cache = LU().attention_forward(h, hs, p)
    return LU().attention_backward(LU().AttentionOutputs(a=None, c=None, h_tilde=normal(2, 3, 3)), tuple(cache))


@bad("score_forward(score='bogus')", "score")
def _():
    h, hs, p = lu()
    return LU().score_forward(h, hs, p.W_a, score="bogus")


@bad("score_backward(d_score of another shape)", "d_out.score")
def _():
    h, hs, p = lu()
    s, cache = LU().score_forward(h, hs, p.W_a, score="general")
    return LU().score_backward((normal(2, 3, 4),), cache)


@bad("position_forward(S=0)", "S")
def _():
    h, hs, p = lu("general", "local_p")
    return LU().position_forward(h, p.W_p, p.v_p, S=0)


@bad("position_backward(d_p without the batch axis)", "d_out.p")
def _():
    h, hs, p = lu("general", "local_p")
    pos, cache = LU().position_forward(h, p.W_p, p.v_p, S=5)
    return LU().position_backward((normal(3),), cache)


@bad("window_forward(p with NaN)", "p")
def _():
    return LU().window_forward(np.array([[1.0, np.nan]]), S=5, D=2)


@bad("window_forward(D=-1)", "D")
def _():
    return LU().window_forward(np.array([[1.0, 2.0]]), S=5, D=-1)


@bad("window_backward(d_gauss of another shape)", "d_out.gauss")
def _():
    out, cache = LU().window_forward(np.array([[1.0, 2.0]]), S=5, D=2)
    return LU().window_backward((None, normal(1, 2, 4)), cache)


group("attention.keras_scores")


def KS():
    import refmem.attention.keras_scores as K

    return K


def ks(score="dot_scaled"):
    q, k, v = normal(2, 3, 4), normal(2, 5, 4, seed=1), normal(2, 5, 2, seed=2)
    scale = np.ones(4) if score == "additive" else np.ones(1)
    return q, k, v, scale, (np.ones(1) if score == "concat_scaled" else None)


@bad("keras_scores.attention_forward(score='bogus')", "score")
def _():
    return KS().attention_forward(*ks(), score="bogus")


@bad("keras_scores.attention_forward(k of another d)", "k")
def _():
    q, k, v, s, w = ks()
    return KS().attention_forward(q, normal(2, 5, 3), v, s, w, score="dot_scaled")


@bad("keras_scores.attention_forward(q with NaN)", "q")
def _():
    q, k, v, s, w = ks()
    q[0, 0, 0] = np.nan
    return KS().attention_forward(q, k, v, s, w, score="dot_scaled")


@bad("keras_scores.attention_forward(v float32, rest float64)", "float32", "float64")
def _():
    q, k, v, s, w = ks()
    return KS().attention_forward(q, k, v.astype(np.float32), s, w, score="dot_scaled")


@bad("keras_scores.attention_backward(d_output without the batch axis)", "d_out.output")
def _():
    out, cache = KS().attention_forward(*ks("additive"), score="additive")
    return KS().attention_backward(KS().AttentionOutputs(weights=None, output=normal(3, 2)), cache)


# ----------------------------------------------------------------------------- DNC addressing
group("dnc.addressing")


def AD():
    import refmem.dnc.addressing as A

    return A


B_, N_, W_, H_, R_, NW_ = 2, 5, 3, 2, 2, 1


def content(dtype=np.float64, **over):
    a = dict(memory=normal(B_, N_, W_), keys=normal(B_, H_, W_, seed=1), strengths=1 + unit(B_, H_))
    a = {k: v.astype(dtype) for k, v in a.items()}
    a.update(over)
    return a


@bad("content_weights_forward(strengths of another H)", "strengths")
def _():
    return AD().content_weights_forward(**content(strengths=unit(B_, H_ + 1)))


@bad("content_weights_forward(keys float32, rest float64)", "float32", "float64")
def _():
    return AD().content_weights_forward(**content(keys=normal(B_, H_, W_).astype(np.float32)))


@good("content_weights_forward(strengths ±1e4, zero memory rows)")
def _():
    m = normal(B_, N_, W_)
    m[:, :2] = 0
    return AD().content_weights_forward(**content(memory=m, strengths=np.array([[1e4, -1e4], [-1e4, 1e4]])))


@good("content_weights_forward(float32)", "f32")
def _():
    return AD().content_weights_forward(**content(np.float32))


def usage_args(**over):
    a = dict(prev_usage=unit(B_, N_), prev_write_weights=rows(B_, NW_, N_), free_gates=unit(B_, R_),
             prev_read_weights=rows(B_, R_, N_))
    a.update(over)
    return a


@bad("usage_forward(prev_read_weights with NaN)", "prev_read_weights")
def _():
    w = rows(B_, R_, N_)
    w[0, 0, 0] = np.nan
    return AD().usage_forward(**usage_args(prev_read_weights=w))


@bad("usage_forward(convention='bogus')", "convention")
def _():
    return AD().usage_forward(**usage_args(), convention="bogus")


@bad("usage_backward(d_usage without the batch axis)", "d_out.usage")
def _():
    u, c = AD().usage_forward(**usage_args())
    return AD().usage_backward((normal(N_), None), c)


@good("usage_forward(usage exactly 0 and exactly 1, gates saturated)")
def _():
    u = np.zeros((B_, N_))
    u[:, ::2] = 1.0
    return AD().usage_forward(**usage_args(prev_usage=u, free_gates=np.ones((B_, R_))))


@bad("allocation_forward(eps=-1)", "eps")
def _():
    return AD().allocation_forward(unit(B_, N_), eps=-1.0)


@good("allocation_forward(usage exactly 0)")
def _():
    return AD().allocation_forward(np.zeros((B_, N_)))


@good("allocation_forward(usage exactly 1)")
def _():
    return AD().allocation_forward(np.ones((B_, N_)))


@good("allocation_forward+backward(usage tied)")
def _():
    a, c = AD().allocation_forward(np.full((B_, N_), 0.5))
    return a, AD().allocation_backward((normal(B_, N_),), c)


@good("allocation_forward(float32)", "f32")
def _():
    return AD().allocation_forward(unit(B_, N_).astype(np.float32))


@bad("write_allocation_weights_forward(write_gates = 1.5)", "write_gates")
def _():
    return AD().write_allocation_weights_forward(unit(B_, N_), np.full((B_, NW_), 1.5))


@bad("write_allocation_weights_backward(d_allocation of another shape)", "d_out.allocation")
def _():
    a, c = AD().write_allocation_weights_forward(unit(B_, N_), unit(B_, NW_))
    return AD().write_allocation_weights_backward((normal(B_, N_),), c)


def ww_args(**over):
    a = dict(memory=normal(B_, N_, W_), usage=unit(B_, N_), write_keys=normal(B_, NW_, W_), write_strengths=1 + unit(B_, NW_),
             allocation_gates=unit(B_, NW_), write_gates=unit(B_, NW_))
    a.update(over)
    return a


@bad("write_weights_forward(allocation_gates of another nw)", "allocation_gates")
def _():
    return AD().write_weights_forward(**ww_args(allocation_gates=unit(B_, NW_ + 1)))


@bad("write_weights_forward(write_gates NaN)", "write_gates")
def _():
    return AD().write_weights_forward(**ww_args(write_gates=np.full((B_, NW_), np.nan)))


@bad("write_weights_forward(convention='bogus')", "convention")
def _():
    return AD().write_weights_forward(**ww_args(), convention="bogus")


@bad("write_weights_backward(d_write_weights without the batch axis)", "d_out.write_weights")
def _():
    w, c = AD().write_weights_forward(**ww_args())
    return AD().write_weights_backward((normal(NW_, N_),), c)


@good("write_weights_forward(gates saturated at 0 and 1, usage 1)")
def _():
    return AD().write_weights_forward(**ww_args(usage=np.ones((B_, N_)), allocation_gates=np.ones((B_, NW_)),
                                                write_gates=np.zeros((B_, NW_))))


@bad("temporal_linkage_backward(d_link of another shape)", "d_out.link")
def _():
    _, c = AD().temporal_linkage_forward(np.zeros((B_, NW_, N_, N_)), rows(B_, NW_, N_), rows(B_, NW_, N_))
    return AD().temporal_linkage_backward((normal(B_, N_, N_), None), c)


@bad("directional_weights_forward(prev_read_weights of another N)", "prev_read_weights")
def _():
    return AD().directional_weights_forward(np.zeros((B_, NW_, N_, N_)), rows(B_, R_, N_ + 1))


@bad("directional_weights_backward(d_forward without the batch axis)", "d_out.forward")
def _():
    _, c = AD().directional_weights_forward(np.zeros((B_, NW_, N_, N_)), rows(B_, R_, N_))
    return AD().directional_weights_backward((normal(R_, NW_, N_), None), c)


def rw_args(**over):
    modes = unit(B_, R_, 1 + 2 * NW_)
    a = dict(memory=normal(B_, N_, W_), read_keys=normal(B_, R_, W_), read_strengths=1 + unit(B_, R_),
             link=np.zeros((B_, NW_, N_, N_)), prev_read_weights=rows(B_, R_, N_),
             read_modes=modes / modes.sum(-1, keepdims=True))
    a.update(over)
    return a


@bad("read_weights_forward(read_strengths -inf)", "read_strengths")
def _():
    return AD().read_weights_forward(**rw_args(read_strengths=np.full((B_, R_), -np.inf)))


@bad("read_weights_forward(read modes summing to 0.5)", "read_modes")
def _():
    a = rw_args()
    return AD().read_weights_forward(**{**a, "read_modes": 0.5 * a["read_modes"]})


@bad("read_weights_forward(a link with a non-zero diagonal)", "link")
def _():
    return AD().read_weights_forward(**rw_args(link=np.full((B_, NW_, N_, N_), 0.1)))


@bad("read_weights_backward(d_read_weights of another shape)", "d_out.read_weights")
def _():
    w, c = AD().read_weights_forward(**rw_args())
    return AD().read_weights_backward((normal(B_, R_, N_ + 1),), c)


@good("read_weights_forward(float32)", "f32")
def _():
    return AD().read_weights_forward(**{k: v.astype(np.float32) for k, v in rw_args().items()})


# ----------------------------------------------------------------------------- DNC access
group("dnc.access")


def AC():
    import refmem.dnc.access as A

    return A


def access(dtype=np.float64, B=2, N=5, W=3, R=2, nw=1, convention="deepmind"):
    A = AC()
    cfg = A.AccessConfig(N=N, W=W, R=R, nw=nw, convention=convention)
    S = A.interface_size(cfg)
    Hc = 4
    W_xi = (0.3 * normal(Hc, S, seed=2)).astype(dtype)
    b_xi = (0.1 * normal(S, seed=3)).astype(dtype)
    state = A.initial_state(np, B, cfg, dtype=dtype)
    return normal(B, Hc).astype(dtype), W_xi, b_xi, state, cfg


@bad("AccessConfig(R=0)", "R")
def _():
    return AC().AccessConfig(N=5, W=3, R=0, nw=1)


@bad("AccessConfig(W=2.0)", "W")
def _():
    return AC().AccessConfig(N=5, W=2.0, R=2, nw=1)


@bad("initial_state(B=-1)", "B")
def _():
    return AC().initial_state(np, -1, AC().AccessConfig(N=5, W=3, R=2, nw=1))


@bad("access_step_forward(W_xi of another width)", "W_xi")
def _():
    x, Wx, b, s, cfg = access()
    return AC().access_step_forward(x, Wx[:, :-1], b, s, cfg=cfg)


@bad("access_step_forward(state.link = -1)", "link")
def _():
    x, Wx, b, s, cfg = access()
    return AC().access_step_forward(x, Wx, b, s._replace(link=-np.ones((2, 1, 5, 5))), cfg=cfg)


@bad("access_step_forward(float32 inputs, float64 default state)", "float32", "float64")
def _():
    x, Wx, b, s, cfg = access()
    return AC().access_step_forward(x.astype(np.float32), Wx.astype(np.float32), b.astype(np.float32), s, cfg=cfg)


@bad("access_step_forward(state for another N)", "N")
def _():
    x, Wx, b, s, cfg = access()
    s2 = AC().initial_state(np, 2, AC().AccessConfig(N=6, W=3, R=2, nw=1))
    return AC().access_step_forward(x, Wx, b, s2, cfg=cfg)


@bad("access_step_forward(B = 0)", "B")
def _():
    x, Wx, b, s, cfg = access()
    s0 = AC().AccessState(*(np.zeros((0,) + a.shape[1:]) for a in s))
    return AC().access_step_forward(np.zeros((0, 4)), Wx, b, s0, cfg=cfg)


@good("access_step_forward(float32 throughout)", "f32")
def _():
    x, Wx, b, s, cfg = access(np.float32)
    return AC().access_step_forward(x, Wx, b, s, cfg=cfg)


@bad("access_step_backward(d_new_state a tuple)", "d_out.state")
def _():
    x, Wx, b, s, cfg = access()
    (r, ns), c = AC().access_step_forward(x, Wx, b, s, cfg=cfg)
    return AC().access_step_backward((normal(2, 2, 3), tuple(ns)), c)


@bad("access_step_backward(d_new_state.memory of another N)", "memory")
def _():
    x, Wx, b, s, cfg = access()
    (r, ns), c = AC().access_step_forward(x, Wx, b, s, cfg=cfg)
    d = AC().AccessState(np.zeros((2, 6, 3)), None, None, None, None, None)
    return AC().access_step_backward((normal(2, 2, 3), d), c)


@bad("access_step_backward(cache a tuple)", "cache")
def _():
    x, Wx, b, s, cfg = access()
    (r, ns), c = AC().access_step_forward(x, Wx, b, s, cfg=cfg)
    return AC().access_step_backward((normal(2, 2, 3), None), tuple(c))


@bad("interface_forward(b_xi of another width)", "b_xi")
def _():
    x, Wx, b, s, cfg = access()
    return AC().interface_forward(x, Wx, b[:-1], cfg=cfg)


@bad("interface_backward(d_interface a dict)", "d_out")
def _():
    x, Wx, b, s, cfg = access()
    i, c = AC().interface_forward(x, Wx, b, cfg=cfg)
    return AC().interface_backward(i._asdict(), c)


@good("200 access steps, controller outputs x1e6 (paper convention)")
def _():
    x, Wx, b, s, cfg = access(convention="paper")
    for t in range(200):
        (r, s), c = AC().access_step_forward(1e6 * normal(2, 4, seed=t), Wx, b, s, cfg=cfg)
    return r, s, AC().access_step_backward((normal(2, 2, 3), None), c)


@bad("access_step_forward(controller outputs x 1e300)", "controller_output")
def _():
    x, Wx, b, s, cfg = access()
    return AC().access_step_forward(1e300 * x, Wx, b, s, cfg=cfg)


# ----------------------------------------------------------------------------- DNC controller
group("dnc.controller")


def CT():
    import refmem.dnc.controller as C

    return C


@bad("ControllerConfig(hidden=0)", "hidden")
def _():
    return CT().ControllerConfig(input_size=3, hidden=0)


@bad("ControllerConfig(layers=0)", "layers")
def _():
    return CT().ControllerConfig(input_size=3, hidden=4, layers=0)


@bad("ControllerConfig(clip_value=NaN)", "clip_value")
def _():
    return CT().ControllerConfig(input_size=3, hidden=4, clip_value=float("nan"))


@bad("ControllerConfig(clip_value=-1)", "clip_value")
def _():
    return CT().ControllerConfig(input_size=3, hidden=4, clip_value=-1.0)


@bad("lstm_step_forward(x of another width)", "x")
def _():
    C = CT()
    p = C.LSTMParams(normal(3 + 4, 16), np.zeros(16))
    st = C.LSTMState(np.zeros((2, 4)), np.zeros((2, 4)))
    return C.lstm_step_forward(normal(2, 5), st, p)


@bad("lstm_step_backward(d_h without the batch axis)", "d_out.h")
def _():
    C = CT()
    p = C.LSTMParams(normal(3 + 4, 16), np.zeros(16))
    st = C.LSTMState(np.zeros((2, 4)), np.zeros((2, 4)))
    _, c = C.lstm_step_forward(normal(2, 3), st, p)
    return C.lstm_step_backward((normal(4), None), c)


@bad("clip_backward(d_y of another shape)", "d_out.y")
def _():
    _, cache = CT().clip_forward(normal(2, 3), clip_value=1.0)
    return CT().clip_backward((normal(2, 2),), cache)


# ----------------------------------------------------------------------------- DNC core and params
group("dnc.core/params")


def DC():
    import refmem.dnc.core as C

    return C


def DP():
    import refmem.dnc.params as P

    return P


def core(dtype=np.float64, layers=1, convention="deepmind", clip=0.0, B=2, T=3):
    cfg = DP().DNCConfig(D=3, Y=2, hidden=4, layers=layers, N=5, W=3, R=2, nw=1, convention=convention, clip_value=clip)
    p = DP().init_params(np, cfg, dtype=dtype) if dtype is not np.float64 else DP().init_params(np, cfg)
    return normal(B, T, 3).astype(dtype), p, cfg


@bad("DNCConfig(D=0)", "D")
def _():
    return DP().DNCConfig(D=0, Y=2)


@bad("DNCConfig(layers=0)", "layers")
def _():
    return DP().DNCConfig(D=2, Y=2, layers=0)


@bad("DNCConfig(convention='bogus')", "convention")
def _():
    return DP().DNCConfig(D=2, Y=2, convention="bogus")


@bad("DNCConfig(clip_value=NaN)", "clip_value")
def _():
    return DP().DNCConfig(D=2, Y=2, clip_value=float("nan"))


@bad("DNCConfig(forget_bias=inf)", "forget_bias")
def _():
    return DP().DNCConfig(D=2, Y=2, forget_bias=float("inf"))


@bad("init_params(dtype=int64)", "dtype")
def _():
    return DP().init_params(np, DP().DNCConfig(D=2, Y=2, hidden=4, N=5, W=3, R=2), dtype=np.int64)


@bad("core initial_state(B=0)", "B")
def _():
    return DC().initial_state(np, 0, DP().DNCConfig(D=2, Y=2, hidden=4, N=5, W=3, R=2))


@bad("unroll_forward(x 2-d, no time axis)", "x")
def _():
    x, p, cfg = core()
    return DC().unroll_forward(normal(2, 3), p, cfg=cfg)


@bad("unroll_forward(params for another hidden size)", "params")
def _():
    x, p, cfg = core()
    p2 = DP().init_params(np, DP().DNCConfig(D=3, Y=2, hidden=5, N=5, W=3, R=2))
    return DC().unroll_forward(x, p2, cfg=cfg)


@good("unroll_forward(float32, no initial state given)", "f32")
def _():
    x, p, cfg = core(np.float32)
    return DC().unroll_forward(x, p, cfg=cfg)[0]


@good("unroll_forward+backward(float32, deep, clipped)", "f32")
def _():
    x, p, cfg = core(np.float32, layers=3, clip=20.0)
    out, cache = DC().unroll_forward(x, p, cfg=cfg)
    return out, DC().unroll_backward(DC().UnrollOutputs(normal(2, 3, 2).astype(np.float32), None), cache)


@bad("unroll_backward(d_out a 2-tuple, UnrollOutputs has 3 fields)", "d_out")
def _():
    x, p, cfg = core()
    out, cache = DC().unroll_forward(x, p, cfg=cfg)
    return DC().unroll_backward((normal(2, 3, 2), None), cache)


@bad("core_step_forward(state None)", "state")
def _():
    x, p, cfg = core()
    return DC().core_step_forward(x[:, 0], None, p, cfg=cfg)


@bad("core_step_backward(d_y of another Y)", "d_out.y")
def _():
    x, p, cfg = core()
    _, c = DC().core_step_forward(x[:, 0], DC().initial_state(np, 2, cfg), p, cfg=cfg)
    return DC().core_step_backward((normal(2, 3), None), c)


@good("200 core steps, inputs x1e3 (and x1e6)")
def _():
    x, p, cfg = core()
    s = DC().initial_state(np, 2, cfg)
    for t in range(200):
        (y, s), c = DC().core_step_forward(1e6 * normal(2, 3, seed=t) if t % 2 else 1e3 * normal(2, 3, seed=t), s, p,
                                           cfg=cfg)
    return y, s, DC().core_step_backward((normal(2, 2), None), c)


@bad("from_named(a missing array)", "W_xi")
def _():
    x, p, cfg = core()
    named = DP().named(p)
    named.pop(next(k for k in named if "W_xi" in k))
    return DP().from_named(named, cfg)


@bad("check_params(a transposed array)", "W_y")
def _():
    x, p, cfg = core()
    return DP().check_params(p._replace(W_y=p.W_y.T), cfg)


@bad("load_params(a missing file)", "/nonexistent/params.npz")
def _():
    return DP().load_params("/nonexistent/params.npz")


# ----------------------------------------------------------------------------- tasks, training, optimisers
group("tasks/train/optim")


@bad("RepeatCopy(min_length > max_length)", "min_length")
def _():
    from refmem.dnc.tasks import RepeatCopy

    return RepeatCopy(min_length=5, max_length=2)


@bad("RepeatCopy(batch_size=0)", "batch_size")
def _():
    from refmem.dnc.tasks import RepeatCopy

    return RepeatCopy(batch_size=0)


@bad("masked_sigmoid_cross_entropy(target of another shape)", "target")
def _():
    from refmem.dnc.tasks import masked_sigmoid_cross_entropy

    return masked_sigmoid_cross_entropy(normal(3, 2, 4), unit(3, 2, 5).round(), np.ones((3, 2)))


@bad("bit_errors(logits of another shape)", "target")
def _():
    from refmem.dnc.tasks import bit_errors

    return bit_errors(normal(3, 2, 5), unit(3, 2, 4).round(), np.ones((3, 2)))


@bad("preset('bogus')", "bogus")
def _():
    from refmem.dnc.train import preset

    return preset("bogus")


@bad("preset(lr=NaN)", "lr")
def _():
    from refmem.dnc.train import preset

    return preset("demo", lr=float("nan"))


@bad("preset(lr=-1)", "lr")
def _():
    from refmem.dnc.train import preset

    return preset("demo", lr=-1.0)


@bad("preset(steps=0)", "steps")
def _():
    from refmem.dnc.train import preset

    return preset("demo", steps=0)


@bad("TrainConfig(task='bogus')", "task")
def _():
    from refmem.dnc.train import TrainConfig, make_task

    return make_task(TrainConfig(task="bogus"))


@bad("RMSProp(decay=1.5)", "decay")
def _():
    from refmem.optim import RMSProp

    return RMSProp(decay=1.5)


@bad("clip_by_global_norm(clip_norm=-1)", "clip_norm")
def _():
    from refmem.optim import clip_by_global_norm

    return clip_by_global_norm([normal(3)], -1.0)


@bad("Adam.update(grads of another structure)", "grads")
def _():
    from refmem.optim import Adam

    opt = Adam()
    params = (normal(3), normal(2))
    return opt.update(params, (normal(3),), opt.init(params))


# ----------------------------------------------------------------------------- golden, strategies
group("golden/strategies")


@bad("golden.load('no/such/case')", "no/such/case")
def _():
    import refmem.golden as G

    return G.load("no/such/case")


@bad("golden.load(dir='/nonexistent')", "/nonexistent")
def _():
    import refmem.golden as G

    return G.load("dnc/allocation/any_convention", dir="/nonexistent")


def _golden_report(mutate):
    import refmem.golden as G

    g = G.load("dnc/allocation/any_convention")
    res = {**{f"outputs/{k}": v for k, v in g.outputs.items()}, **{f"grads/{k}": v for k, v in g.grads.items()}}
    mutate(res)
    r = G.compare(g, res)
    if r.passed:
        return "passed"  # a tampered result that passes: silent
    raise _Refused(("; ".join(r.problems) or str(r.failures[0]))[:200])


class _Refused(Exception):
    """A comparison that fails as it should (not an exception refmem raises)."""


@bad("golden.compare(result with NaN)", "allocation")
def _():
    def m(res):
        k = next(k for k in res if k.startswith("outputs/"))
        res[k] = res[k].copy()
        res[k].flat[0] = np.nan
    return _golden_report(m)


@bad("golden.compare(result of another shape)", "allocation")
def _():
    def m(res):
        k = next(k for k in res if k.startswith("outputs/"))
        res[k] = res[k][:1]
    return _golden_report(m)


@bad("golden.compare(a gradient missing)", "grads")
def _():
    def m(res):
        res.pop(next(k for k in res if k.startswith("grads/")))
    return _golden_report(m)


@bad("golden.compare(dtype='float16')", "dtype", "float16")
def _():
    import refmem.golden as G

    return G.compare(G.load("dnc/allocation/any_convention"), {}, dtype="float16")


@bad("strategies.seeds(max_seed=-1)", "max_seed")
def _():
    from refmem.strategies import seeds

    return seeds(-1).example()


@bad("strategies.shapes(ndim=-1)", "ndim")
def _():
    from refmem.strategies import shapes

    return shapes(-1).example()


@bad("strategies.finite_arrays(low > high)", "low")
def _():
    from refmem.strategies import finite_arrays

    return finite_arrays((2,), low=5.0, high=1.0).example()


@bad("strategies.probability_rows(min_prob=2)", "min_prob")
def _():
    from refmem.strategies import probability_rows

    return probability_rows((2, 3), min_prob=2.0).example()


@bad("strategies.case_inputs(a case name, not a Case)", "case")
def _():
    from refmem.strategies import case_inputs

    return case_inputs("dnc/allocation/any_convention", np).example()


# ----------------------------------------------------------------------------- the verdict


def _leaves(x, out):
    if x is None or isinstance(x, (str, bytes, bool, int, float)):
        return out  # Python numbers in caches (a window's sigma) are not results
    if hasattr(x, "shape") and hasattr(x, "dtype"):
        out.append(x)
        return out
    if isinstance(x, dict):
        for v in x.values():
            _leaves(v, out)
        return out
    if isinstance(x, (tuple, list)):
        for v in x:
            _leaves(v, out)
        return out
    if hasattr(x, "__dataclass_fields__"):
        for k in x.__dataclass_fields__:
            _leaves(getattr(x, k), out)
    return out


def _host(a):
    if type(a).__module__.startswith("torch"):
        return a.detach().cpu().numpy()
    return np.asarray(a)


def _names(name: str, msg: str) -> bool:
    """Whether ``msg`` names ``name`` as a word (``state.usage`` names ``usage``; ``expected`` does not name ``x``)."""
    return re.search(r"(?<![\w])" + re.escape(name) + r"(?![\w])", msg) is not None


_STRUCTURES = ("params", "state", "cache", "cfg", "d_new_state", "d_outputs", "d_final_state", "d_interface", "case",
               "grads")


def verdict(expect: str, names: tuple[str, ...], thunk) -> str:
    """``""`` when the probe's outcome is the expected one, else what went wrong."""
    try:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            result = thunk()
    except _Refused as e:
        msg = str(e)
        missing = [n for n in names if not _names(n, msg)]
        if expect != "error":
            return f"a valid input was refused: {msg}"
        return f"the failed comparison does not name {missing}: {msg}" if missing else ""
    except Exception as e:  # noqa: BLE001 (the probe judges whatever happens)
        t = type(e)
        msg = str(e).replace("\n", " ")
        if expect != "error":
            return f"a valid input raised {t.__name__}: {msg}"
        ours = t.__module__.startswith("refmem")
        structural = isinstance(e, TypeError) and any(n in _STRUCTURES for n in names)
        filey = isinstance(e, OSError) and any(n.startswith("/") for n in names)
        if not (ours or structural or filey):
            return f"raw {t.__name__} from inside, not a refmem error: {msg}"
        missing = [n for n in names if not _names(n, msg)]
        return f"{t.__name__} does not name {missing}: {msg}" if missing else ""
    if expect == "error":
        return "an invalid input was accepted (nothing raised)"
    floats = [a for a in (_host(a) for a in _leaves(result, [])) if a.dtype.kind in "fc"]
    if any(not np.all(np.isfinite(a)) for a in floats):
        return "NaN or infinity in the results"
    if expect == "f32" and any(a.dtype != np.float32 for a in floats):
        return "float32 inputs gave results of " + "/".join(sorted({str(a.dtype) for a in floats}))
    return ""


@pytest.mark.parametrize("probe", PROBES, ids=[f"{g}: {label}" for g, label, *_ in PROBES])
def test_probe(probe):
    group_, label, expect, names, thunk = probe
    assert verdict(expect, names, thunk) == ""


def test_the_verdict_fails_a_probe_whose_subject_breaks():
    """The judge has teeth: each way a probe can go wrong is a failure, named."""
    from refmem.errors import ShapeError

    def raises(exc):
        def thunk():
            raise exc
        return thunk

    assert verdict("error", ("x",), raises(ShapeError("x: expected shape (2,), got (3,)"))) == ""
    assert "does not name ['x']" in verdict("error", ("x",), raises(ShapeError("expected shape (2,)")))
    assert "raw IndexError" in verdict("error", ("x",), raises(IndexError("x: index 3")))
    assert "accepted" in verdict("error", ("x",), lambda: np.zeros(2))
    assert "NaN" in verdict("ok", (), lambda: (np.zeros(2), {"y": np.array([np.nan])}))
    assert "float64" in verdict("f32", (), lambda: np.zeros(2, dtype=np.float64))
    assert verdict("f32", (), lambda: np.zeros(2, dtype=np.float32)) == ""
    assert "refused" in verdict("ok", (), raises(_Refused("no")))
