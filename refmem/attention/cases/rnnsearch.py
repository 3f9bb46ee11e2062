"""Catalogue cases of SPEC §7, RNNsearch (:mod:`refmem.attention.rnnsearch`).

One case per equation and the whole model, each plain and, where the equation reads a mask,
masked: ``attention/rnnsearch_embedding/default``, ``attention/rnnsearch_gru_cell/{default,masked}``,
``attention/rnnsearch_encoder/{default,masked}``, ``attention/rnnsearch_initial_state/default``,
``attention/rnnsearch_alignment/{default,masked}``, ``attention/rnnsearch_maxout/default``,
``attention/rnnsearch_deep_output/default``, ``attention/rnnsearch_decoder_step/{default,masked}``,
``attention/rnnsearch_decoder/{default,masked}`` and ``attention/rnnsearch/{default,masked}``.

Tokens (``inputs/x``, ``inputs/y``, ``inputs/tokens``) are int64 and, like the masks
(``inputs/mask`` over the source, ``inputs/target_mask`` over the target, ``inputs/step_mask``
of one step; float 0/1, padded rows at the end), not differentiated. The one kink on the path is
the maxout (SPEC §7 step 6): every sampler draws again, from the next seed, until every pair of
every step is at least :data:`refmem.attention.rnnsearch.MAXOUT_GAP` apart.
"""

from __future__ import annotations

from typing import Any, Callable

from ... import xp as rx
from ...catalogue import Case, Forward
from ...sampling import Sampler
from .. import rnnsearch as RS

#: Default sizes (SPEC §7's letters). ``Tx ≠ Ty`` and ``Kx ≠ Ky`` catch a swapped axis; ``A ≠ n``
#: and ``2l ≠ n`` a transposed weight.
SIZES = {"B": 3, "Tx": 4, "Ty": 3, "Kx": 6, "Ky": 5, "m": 3, "n": 3, "A": 3, "l": 2}

#: Standard deviations of the sampled parameters (the rest: matrices 0.6, biases 0.2): large enough
#: that every gradient stays far above the rounding floor of SPEC §6's central check (about 5e-10 per
#: element here; the reset gates act only through ``(r ∘ h) U``, so the proposals' ``U`` are large),
#: small enough that no gate saturates. ``s_{i-1} W_a`` and ``b_a`` are added to every source position's
#: pre-activation alike, so they move the weights only through the tanh's curvature: the alignment's
#: pre-activations are drawn in its curved range.
SCALES = {"E_x": 1.0, "E_y": 1.0, "W_o": 1.0, "b_y": 0.5, "W_s": 1.5, "W_a": 0.5, "U_a": 0.8, "b_a": 1.0,
          "v_a": 2.5, "C": 0.3,
          **{f"{d}{k}": 0.3 for d in ("", "fwd_", "bwd_") for k in ("W_r", "U_r", "C_r", "b_r", "W")},
          **{f"{d}U": 2.0 for d in ("", "fwd_", "bwd_")}, "fwd_W": 0.6, "bwd_W": 0.6}
#: Means of the update gates' biases: open gates (``z`` near 0.7) let the states grow from their zero
#: start, so that the reset gates, which act on ``h_prev``, matter from the second step on.
LOCS = {"b_z": 1.5, "fwd_b_z": 0.8, "bwd_b_z": 0.8}

_NONDIFF = frozenset({"inputs/x", "inputs/y", "inputs/tokens", "inputs/mask", "inputs/target_mask", "inputs/step_mask"})
_KINK = (f"the maxout (SPEC §7 step 6): draws are repeated, from the next seed, until every pair is at least "
         f"{RS.MAXOUT_GAP} apart")
_SMOOTH = "none: tanh, sigmoid, softmax and the lookup are smooth in every differentiated tensor"


def _scale(name: str) -> float:
    base = name.split("_", 1)[1] if name.startswith(("fwd_", "bwd_")) else name
    if name in SCALES:
        return SCALES[name]
    return 0.2 if base.startswith("b") else 0.6


def _params(s: Sampler, sizes: dict[str, int], names: tuple[str, ...] | None = None) -> dict[str, Any]:
    shapes = RS.param_shapes(*(sizes[k] for k in ("Kx", "Ky", "m", "n", "A", "l")))
    return {f"params/{k}": s.normal(v, scale=_scale(k), loc=LOCS.get(k, 0.0))
            for k, v in shapes.items() if names is None or k in names}


def _lengths_mask(xp: Any, s: Sampler, B: int, T: int) -> Any:
    """Padding masks ``[B, T]`` (float 0/1): row ``b`` keeps its first ``length_b ≥ ceil(T/2)`` positions."""
    lengths = s.integers((B, 1), (T + 1) // 2, T + 1)
    return xp.astype(xp.arange(T)[None, :] < lengths, xp.float64)


def _gaps_ok(t_tilde: Any) -> bool:
    xp = rx.namespace(t_tilde)
    shape = tuple(int(d) for d in t_tilde.shape)
    pairs = xp.reshape(t_tilde, shape[:-1] + (shape[-1] // 2, 2))
    return bool(xp.all(xp.abs(pairs[..., 0] - pairs[..., 1]) >= RS.MAXOUT_GAP))


def _redraw(name: str, draw: Callable[[Sampler], dict], t_tilde_of: Callable[[dict], Any] | None):
    """A sampler that draws until the maxout pairs are separated (``t_tilde_of``: the ``t̃`` of a draw)."""

    def sample(xp, seed, sizes):
        for attempt in range(200):
            s = Sampler(xp, seed if attempt == 0 else (seed, attempt))
            arrays = draw(xp, s, sizes)
            if t_tilde_of is None or _gaps_ok(t_tilde_of(arrays)):
                return arrays
        raise RuntimeError(f"{name}: no draw kept every maxout pair {RS.MAXOUT_GAP} apart")

    return sample


def _p(arrays: dict, names: tuple[str, ...]) -> dict[str, Any]:
    return {k: arrays[f"params/{k}"] for k in names}


def _gru(arrays: dict, prefix: str = "") -> RS.GRUParams:
    return RS.GRUParams(*(arrays[f"params/{prefix}{k}"] for k in RS.GRUParams._fields))


def _decoder_params(arrays: dict) -> RS.DecoderParams:
    return RS.DecoderParams(**_p(arrays, RS.DecoderParams._fields))


def _output_params(arrays: dict) -> RS.DeepOutputParams:
    return RS.DeepOutputParams(**_p(arrays, RS.DeepOutputParams._fields))


def _stack(xp: Any, values: list) -> Any:
    return xp.stack(values, axis=1)


def _case(function: str, variant: str, spec: str, forward_path: str, sample, fwd, bwd, sizes: dict[str, int],
          order: tuple = (), per_step: frozenset = frozenset(), kinks: str = _SMOOTH, config: dict | None = None,
          nondiff: frozenset | None = None) -> Case:
    return Case(
        name=f"attention/{function}/{variant}",
        spec=spec,
        function=f"refmem.attention.rnnsearch.{forward_path}",
        sample=sample,
        forward=fwd,
        backward=bwd,
        sizes=dict(sizes),
        min_sizes={k: 1 for k in sizes},
        config=dict(config or {}),
        nondiff=nondiff if nondiff is not None else frozenset(),
        kinks=kinks,
        order=order,
        per_step=per_step,
    )


def _sub(*letters: str) -> dict[str, int]:
    """The default sizes of ``letters``. One-step cases take ``B = 6``: a small parameter (``v_a``, ``b_a``)
    then sums more rows, so that its gradient is rarely small by chance next to the central check's
    rounding floor."""
    return {k: SIZES[k] for k in letters}


# ----------------------------------------------------------------------------- embedding


def _embedding_case() -> Case:
    def draw(xp, s, sizes):
        return {"inputs/tokens": s.integers((sizes["B"], sizes["T"]), 0, sizes["K"]),
                "params/E": s.normal((sizes["K"], sizes["m"]))}

    def fwd(a, frozen=None):
        out, _ = RS.embedding_forward(a["params/E"], tokens=a["inputs/tokens"])
        return Forward({"emb": out.emb})

    def bwd(a, cot):
        _, cache = RS.embedding_forward(a["params/E"], tokens=a["inputs/tokens"])
        return {"params/E": RS.embedding_backward(RS.EmbeddingOutputs(cot["emb"]), cache).E}

    return _case("rnnsearch_embedding", "default", "SPEC §7 embedding", "embedding_forward",
                 _redraw("embedding", draw, None), fwd, bwd, {"B": 3, "T": 4, "K": 5, "m": 3},
                 order=(("outputs/emb", "SPEC §7 embedding"),),
                 nondiff=frozenset({"inputs/tokens"}))


# ----------------------------------------------------------------------------- GRU cell


def _gru_case(masked: bool) -> Case:
    def draw(xp, s, sizes):
        B, D, n = sizes["B"], sizes["D"], sizes["n"]
        a = {"inputs/x": s.normal((B, D)), "inputs/h_prev": s.normal((B, n), scale=0.8)}
        for k, v in {"W_z": (D, n), "U_z": (n, n), "b_z": (n,), "W_r": (D, n), "U_r": (n, n), "b_r": (n,),
                     "W": (D, n), "U": (n, n), "b": (n,)}.items():
            a[f"params/{k}"] = s.normal(v, scale=_scale(k))
        if masked:  # at least one carried and one updated row where B ≥ 2
            m = s.integers((B,), 0, 2)
            if B >= 2:
                m = xp.concat([xp.asarray([1, 0], dtype=m.dtype), m[2:]])
            a["inputs/step_mask"] = xp.astype(m, xp.float64)
        return a

    def run(a):
        return RS.gru_cell_forward(a["inputs/x"], a["inputs/h_prev"], _gru(a), mask=a.get("inputs/step_mask"))

    def fwd(a, frozen=None):
        out, cache = run(a)
        c = cache.core
        return Forward({"h": out.h}, trace=lambda: {"z": c.z, "r": c.r, "h_tilde": c.h_tilde})

    def bwd(a, cot):
        _, cache = run(a)
        g = RS.gru_cell_backward(RS.GRUCellOutputs(cot["h"]), cache)
        out = {"inputs/x": g.x, "inputs/h_prev": g.h_prev}
        out.update({f"params/{k}": v for k, v in g.params._asdict().items()})
        return out

    return _case("rnnsearch_gru_cell", "masked" if masked else "default", "SPEC §7 GRU cell", "gru_cell_forward",
                 _redraw("gru_cell", draw, None), fwd, bwd, {"B": 4, "D": 3, "n": 3},
                 order=(("intermediates/z", "SPEC §7 GRU step 1"), ("intermediates/r", "SPEC §7 GRU step 2"),
                        ("intermediates/h_tilde", "SPEC §7 GRU step 3"), ("outputs/h", "SPEC §7 GRU steps 4-5")),
                 config={"masked": masked}, nondiff=frozenset({"inputs/step_mask"}) if masked else frozenset())


# ----------------------------------------------------------------------------- encoder

ENCODER_ORDER = (
    ("intermediates/source_embedding", "SPEC §7 embedding E_x[x_j]"),
    ("intermediates/forward_states", "SPEC §7 encoder →h_j"),
    ("intermediates/backward_states", "SPEC §7 encoder ←h_j"),
    ("outputs/h", "SPEC §7 encoder h_j = [→h_j ; ←h_j]"),
)


def _encoder_names() -> tuple[str, ...]:
    return ("E_x",) + tuple(f"{d}_{k}" for d in ("fwd", "bwd") for k in RS.GRUParams._fields)


def _encoder_params(a: dict) -> RS.EncoderParams:
    return RS.EncoderParams(a["params/E_x"], _gru(a, "fwd_"), _gru(a, "bwd_"))


def encoder_intermediates(h: Any, cache: RS.EncoderCache) -> dict[str, Any]:
    """``source_embedding [B, Tx, m]``, ``forward_states`` and ``backward_states [B, Tx, n]``."""
    n = int(cache.params.fwd.U.shape[0])
    return {"source_embedding": cache.emb, "forward_states": h[..., :n], "backward_states": h[..., n:]}


def _encoder_case(masked: bool) -> Case:
    def draw(xp, s, sizes):
        B, Tx = sizes["B"], sizes["Tx"]
        a = {"inputs/x": s.integers((B, Tx), 0, sizes["Kx"])}
        a.update(_params(s, {**SIZES, **sizes}, _encoder_names()))
        if masked:
            a["inputs/mask"] = _lengths_mask(xp, s, B, Tx)
        return a

    def run(a):
        return RS.encoder_forward(_encoder_params(a), x=a["inputs/x"], mask=a.get("inputs/mask"))

    def fwd(a, frozen=None):
        out, cache = run(a)
        return Forward({"h": out.h}, trace=lambda: encoder_intermediates(out.h, cache))

    def bwd(a, cot):
        _, cache = run(a)
        g = RS.encoder_backward(RS.EncoderOutputs(cot["h"]), cache).params
        out = {"params/E_x": g.E_x}
        out.update({f"params/fwd_{k}": v for k, v in g.fwd._asdict().items()})
        out.update({f"params/bwd_{k}": v for k, v in g.bwd._asdict().items()})
        return out

    return _case("rnnsearch_encoder", "masked" if masked else "default", "SPEC §7 encoder", "encoder_forward",
                 _redraw("encoder", draw, None), fwd, bwd, _sub("B", "Tx", "Kx", "m", "n"), order=ENCODER_ORDER,
                 config={"masked": masked},
                 nondiff=frozenset({"inputs/x", "inputs/mask"}) if masked else frozenset({"inputs/x"}))


# ----------------------------------------------------------------------------- s_0


def _initial_state_case() -> Case:
    def draw(xp, s, sizes):
        B, Tx, n = sizes["B"], sizes["Tx"], sizes["n"]
        return {"inputs/h": s.normal((B, Tx, 2 * n), scale=0.8), "params/W_s": s.normal((n, n), scale=0.6),
                "params/b_s": s.normal((n,), scale=0.2)}

    def run(a):
        return RS.initial_state_forward(a["inputs/h"], a["params/W_s"], a["params/b_s"])

    def fwd(a, frozen=None):
        return Forward({"s0": run(a)[0].s0})

    def bwd(a, cot):
        g = RS.initial_state_backward(RS.InitialStateOutputs(cot["s0"]), run(a)[1])
        return {"inputs/h": g.h, "params/W_s": g.W_s, "params/b_s": g.b_s}

    return _case("rnnsearch_initial_state", "default", "SPEC §7 initial state", "initial_state_forward",
                 _redraw("initial_state", draw, None), fwd, bwd, _sub("B", "Tx", "n"),
                 order=(("outputs/s0", "SPEC §7 s_0"),))


# ----------------------------------------------------------------------------- alignment

ALIGNMENT_ORDER = (
    ("intermediates/keys", "SPEC §7 decoder step 1, keys h U_a + b_a"),
    ("intermediates/e", "SPEC §7 decoder step 1"),
    ("outputs/alpha", "SPEC §7 decoder step 2"),
    ("outputs/c", "SPEC §7 decoder step 3"),
)


def _alignment_case(masked: bool) -> Case:
    def draw(xp, s, sizes):
        B, Tx, n, A = sizes["B"], sizes["Tx"], sizes["n"], sizes["A"]
        a = {"inputs/s_prev": s.normal((B, n), scale=1.0), "inputs/h": s.normal((B, Tx, 2 * n), scale=0.8)}
        a.update(_params(s, {**SIZES, **sizes}, ("W_a", "U_a", "b_a", "v_a")))
        if masked:
            a["inputs/mask"] = _lengths_mask(xp, s, B, Tx)
        return a

    def run(a):
        keys = a["inputs/h"] @ a["params/U_a"] + a["params/b_a"]
        out, cache = RS.alignment_forward(a["inputs/s_prev"], a["inputs/h"], keys, a["params/W_a"], a["params/v_a"],
                                          mask=a.get("inputs/mask"))
        return keys, out, cache

    def fwd(a, frozen=None):
        keys, out, cache = run(a)
        return Forward({"alpha": out.alpha, "c": out.c}, trace=lambda: {"keys": keys, "e": cache.e})

    def bwd(a, cot):
        _, _, cache = run(a)
        g = RS.alignment_backward(RS.AlignmentOutputs(cot["alpha"], cot["c"]), cache)
        xp = rx.namespace(g.h)
        h = a["inputs/h"]
        B, Tx, n2 = (int(d) for d in h.shape)
        A = int(g.keys.shape[-1])
        dk = xp.reshape(g.keys, (B * Tx, A))
        return {"inputs/s_prev": g.s_prev, "inputs/h": g.h + g.keys @ xp.permute_dims(a["params/U_a"], (1, 0)),
                "params/W_a": g.W_a, "params/U_a": xp.permute_dims(xp.reshape(h, (B * Tx, n2)), (1, 0)) @ dk,
                "params/b_a": xp.sum(dk, axis=0), "params/v_a": g.v_a}

    return _case("rnnsearch_alignment", "masked" if masked else "default", "SPEC §7 decoder steps 1-3",
                 "alignment_forward", _redraw("alignment", draw, None), fwd, bwd, _sub("B", "Tx", "n", "A"),
                 order=ALIGNMENT_ORDER, config={"masked": masked},
                 nondiff=frozenset({"inputs/mask"}) if masked else frozenset())


# ----------------------------------------------------------------------------- maxout and the deep output


def _maxout_case() -> Case:
    def draw(xp, s, sizes):
        return {"inputs/t_tilde": s.normal((sizes["B"], 2 * sizes["l"]))}

    def fwd(a, frozen=None):
        return Forward({"t": RS.maxout_forward(a["inputs/t_tilde"])[0].t})

    def bwd(a, cot):
        _, cache = RS.maxout_forward(a["inputs/t_tilde"])
        return {"inputs/t_tilde": RS.maxout_backward(RS.MaxoutOutputs(cot["t"]), cache).t_tilde}

    return _case("rnnsearch_maxout", "default", "SPEC §7 decoder step 6", "maxout_forward",
                 _redraw("maxout", draw, lambda a: a["inputs/t_tilde"]), fwd, bwd, {"B": 4, "l": 3},
                 order=(("outputs/t", "SPEC §7 decoder step 6"),), kinks=_KINK)


OUTPUT_ORDER = (
    ("intermediates/t_tilde", "SPEC §7 decoder step 5"),
    ("intermediates/t", "SPEC §7 decoder step 6"),
    ("intermediates/logits", "SPEC §7 decoder step 7, o_i"),
    ("intermediates/log_p", "SPEC §7 decoder step 7, log p"),
    ("outputs/p", "SPEC §7 decoder step 7"),
)


def _deep_output_case() -> Case:
    def draw(xp, s, sizes):
        B, n, m = sizes["B"], sizes["n"], sizes["m"]
        a = {"inputs/s_prev": s.normal((B, n), scale=1.0), "inputs/ey": s.normal((B, m)),
             "inputs/c": s.normal((B, 2 * n), scale=0.8)}
        a.update(_params(s, {**SIZES, **sizes}, RS.DeepOutputParams._fields))
        return a

    def run(a):
        return RS.deep_output_forward(a["inputs/s_prev"], a["inputs/ey"], a["inputs/c"], _output_params(a))

    def fwd(a, frozen=None):
        out, c = run(a)
        return Forward({"p": out.p}, trace=lambda: {"t_tilde": c.t_tilde, "t": c.t, "logits": c.o, "log_p": c.log_p})

    def bwd(a, cot):
        g = RS.deep_output_backward(RS.DeepOutputOutputs(cot["p"]), run(a)[1])
        out = {"inputs/s_prev": g.s_prev, "inputs/ey": g.ey, "inputs/c": g.c}
        out.update({f"params/{k}": v for k, v in g.params._asdict().items()})
        return out

    return _case("rnnsearch_deep_output", "default", "SPEC §7 decoder steps 5-7", "deep_output_forward",
                 _redraw("deep_output", draw, lambda a: run(a)[1].t_tilde), fwd, bwd,
                 _sub("B", "n", "m", "l", "Ky"), order=OUTPUT_ORDER, kinks=_KINK)


# ----------------------------------------------------------------------------- one decoder step

STEP_ORDER = (
    ("intermediates/keys", "SPEC §7 decoder step 1, keys h U_a + b_a"),
    ("intermediates/e", "SPEC §7 decoder step 1"),
    ("outputs/alpha", "SPEC §7 decoder step 2"),
    ("intermediates/context", "SPEC §7 decoder step 3"),
    ("intermediates/z", "SPEC §7 decoder step 4, GRU step 1"),
    ("intermediates/r", "SPEC §7 decoder step 4, GRU step 2"),
    ("intermediates/s_tilde", "SPEC §7 decoder step 4, GRU step 3"),
    ("outputs/s", "SPEC §7 decoder step 4"),
) + OUTPUT_ORDER

_STEP_PARAMS = tuple(k for k in RS.DecoderParams._fields if k != "E_y")


def _step_trace(cache: RS.DecoderStepCache) -> dict[str, Any]:
    return {"e": cache.alignment.e, "context": cache.c, "z": cache.gru.z, "r": cache.gru.r,
            "s_tilde": cache.gru.h_tilde, "t_tilde": cache.output.t_tilde, "t": cache.output.t,
            "logits": cache.output.o, "log_p": cache.output.log_p}


def _decoder_step_case(masked: bool) -> Case:
    def draw(xp, s, sizes):
        B, Tx, n, m = sizes["B"], sizes["Tx"], sizes["n"], sizes["m"]
        a = {"inputs/ey_prev": s.normal((B, m)), "inputs/s_prev": s.normal((B, n), scale=1.0),
             "inputs/h": s.normal((B, Tx, 2 * n), scale=0.8)}
        a.update(_params(s, {**SIZES, **sizes}, _STEP_PARAMS))
        if masked:
            a["inputs/mask"] = _lengths_mask(xp, s, B, Tx)
            sm = s.integers((B,), 0, 2)
            if B >= 2:
                sm = xp.concat([xp.asarray([1, 0], dtype=sm.dtype), sm[2:]])
            a["inputs/step_mask"] = xp.astype(sm, xp.float64)
        return a

    def run(a):  # the public entry point, as a user calls it (a step does not read E_y)
        p = RS.DecoderParams(E_y=None, **_p(a, _STEP_PARAMS))
        keys = a["inputs/h"] @ p.U_a + p.b_a
        out, cache = RS.decoder_step_forward(a["inputs/ey_prev"], a["inputs/s_prev"], a["inputs/h"], keys, p,
                                             mask=a.get("inputs/mask"), step_mask=a.get("inputs/step_mask"))
        return keys, out, cache

    def fwd(a, frozen=None):
        keys, out, cache = run(a)
        return Forward({"p": out.p, "alpha": out.alpha, "s": out.s},
                       trace=lambda: {"keys": keys, **_step_trace(cache)})

    def bwd(a, cot):
        _, _, cache = run(a)
        g = RS.decoder_step_backward(RS.DecoderStepOutputs(cot["p"], cot["alpha"], cot["s"]), cache)
        xp = rx.namespace(g.h)
        h = a["inputs/h"]
        B, Tx, n2 = (int(d) for d in h.shape)
        dk = xp.reshape(g.keys, (B * Tx, -1))
        out = {"inputs/ey_prev": g.ey_prev, "inputs/s_prev": g.s_prev,
               "inputs/h": g.h + g.keys @ xp.permute_dims(a["params/U_a"], (1, 0))}
        out.update({f"params/{k}": v for k, v in g.params._asdict().items() if k in _STEP_PARAMS})
        out["params/U_a"] = xp.permute_dims(xp.reshape(h, (B * Tx, n2)), (1, 0)) @ dk
        out["params/b_a"] = xp.sum(dk, axis=0)
        return out

    return _case("rnnsearch_decoder_step", "masked" if masked else "default", "SPEC §7 decoder steps 1-7",
                 "decoder_step_forward", _redraw("decoder_step", draw, lambda a: run(a)[2].output.t_tilde), fwd, bwd,
                 {**_sub("Tx", "n", "m", "A", "l", "Ky"), "B": 6}, order=STEP_ORDER, kinks=_KINK, config={"masked": masked},
                 nondiff=frozenset({"inputs/mask", "inputs/step_mask"}) if masked else frozenset())


# ----------------------------------------------------------------------------- the decoder unroll

DECODER_ORDER = (("intermediates/keys", "SPEC §7 decoder step 1, keys h U_a + b_a, once per sequence"),
                 ("intermediates/target_embedding", "SPEC §7 decoder, ey_{i-1} = E_y[y_{i-1}], ey_0 = 0")) \
    + STEP_ORDER[1:]
_DECODER_PER_STEP = frozenset(n for n, _ in DECODER_ORDER[1:])


def decoder_intermediates(cache: RS.DecoderCache) -> dict[str, Any]:
    """``keys [B, Tx, A]``; per step, stacked after the batch axis: ``target_embedding`` (the
    ``ey_{i-1}`` step ``i`` reads), ``e``, ``context``, ``z``, ``r``, ``s_tilde``, ``t_tilde``, ``t``,
    ``logits``, ``log_p``."""
    xp = rx.namespace(cache.h)
    traces = [_step_trace(st) for st in cache.steps]
    out = {"keys": cache.keys, "target_embedding": _stack(xp, [st.ey for st in cache.steps])}
    out.update({k: _stack(xp, [t[k] for t in traces]) for k in traces[0]})
    return out


def _decoder_case(masked: bool) -> Case:
    def draw(xp, s, sizes):
        B, Tx, Ty, n = sizes["B"], sizes["Tx"], sizes["Ty"], sizes["n"]
        a = {"inputs/y": s.integers((B, Ty), 0, sizes["Ky"]), "inputs/h": s.normal((B, Tx, 2 * n), scale=0.8),
             "inputs/s0": s.normal((B, n), scale=1.0)}
        a.update(_params(s, {**SIZES, **sizes}, RS.DecoderParams._fields))
        if masked:
            a["inputs/mask"] = _lengths_mask(xp, s, B, Tx)
            a["inputs/target_mask"] = _lengths_mask(xp, s, B, Ty)
        return a

    def run(a):
        return RS.decoder_forward(a["inputs/h"], a["inputs/s0"], _decoder_params(a), y=a["inputs/y"],
                                  mask=a.get("inputs/mask"), target_mask=a.get("inputs/target_mask"))

    def fwd(a, frozen=None):
        out, cache = run(a)
        return Forward({"p": out.p, "alpha": out.alpha, "s": out.s},
                       trace=lambda: decoder_intermediates(cache))

    def bwd(a, cot):
        g = RS.decoder_backward(RS.DecoderOutputs(cot["p"], cot["alpha"], cot["s"]), run(a)[1])
        out = {"inputs/h": g.h, "inputs/s0": g.s0}
        out.update({f"params/{k}": v for k, v in g.params._asdict().items()})
        return out

    def t_tilde(a):
        xp = rx.namespace(a["inputs/h"])
        return xp.stack([st.output.t_tilde for st in run(a)[1].steps], axis=1)

    nd = {"inputs/y"} | ({"inputs/mask", "inputs/target_mask"} if masked else set())
    return _case("rnnsearch_decoder", "masked" if masked else "default", "SPEC §7 decoder", "decoder_forward",
                 _redraw("decoder", draw, t_tilde), fwd, bwd, _sub("B", "Tx", "Ty", "Ky", "n", "m", "A", "l"),
                 order=DECODER_ORDER, per_step=_DECODER_PER_STEP, kinks=_KINK, config={"masked": masked},
                 nondiff=frozenset(nd))


# ----------------------------------------------------------------------------- the whole model

MODEL_ORDER = ENCODER_ORDER[:3] + (
    ("intermediates/annotations", "SPEC §7 encoder h_j = [→h_j ; ←h_j]"),
    ("intermediates/s0", "SPEC §7 s_0"),
) + DECODER_ORDER + (("outputs/log_likelihood", "SPEC §7 log-likelihood under teacher forcing"),)
_MODEL_PER_STEP = _DECODER_PER_STEP


def rnnsearch_intermediates(cache: RS.RNNsearchCache) -> dict[str, Any]:
    """The encoder's (``source_embedding``, ``forward_states``, ``backward_states``, ``annotations``),
    ``s0``, and the decoder's (see :func:`decoder_intermediates`)."""
    h = cache.decoder.h
    out = encoder_intermediates(h, cache.encoder)
    out.update({"annotations": h, "s0": cache.decoder.s0})
    out.update(decoder_intermediates(cache.decoder))
    return out


def _model_case(masked: bool) -> Case:
    def draw(xp, s, sizes):
        B, Tx, Ty = sizes["B"], sizes["Tx"], sizes["Ty"]
        a = {"inputs/x": s.integers((B, Tx), 0, sizes["Kx"]), "inputs/y": s.integers((B, Ty), 0, sizes["Ky"])}
        a.update(_params(s, sizes))
        if masked:
            a["inputs/mask"] = _lengths_mask(xp, s, B, Tx)
            a["inputs/target_mask"] = _lengths_mask(xp, s, B, Ty)
        return a

    def run(a):
        params = RS.from_named({k.split("/", 1)[1]: v for k, v in a.items() if k.startswith("params/")})
        return RS.rnnsearch_forward(params, x=a["inputs/x"], y=a["inputs/y"], mask=a.get("inputs/mask"),
                                    target_mask=a.get("inputs/target_mask"))

    def fwd(a, frozen=None):
        out, cache = run(a)
        return Forward(out._asdict(), trace=lambda: rnnsearch_intermediates(cache))

    def bwd(a, cot):
        g = RS.rnnsearch_backward(RS.RNNsearchOutputs(**{k: cot[k] for k in RS.RNNsearchOutputs._fields}), run(a)[1])
        return {f"params/{k}": v for k, v in RS.named(g.params).items()}

    def t_tilde(a):
        xp = rx.namespace(a["inputs/x"])
        return xp.stack([st.output.t_tilde for st in run(a)[1].decoder.steps], axis=1)

    nd = {"inputs/x", "inputs/y"} | ({"inputs/mask", "inputs/target_mask"} if masked else set())
    return _case("rnnsearch", "masked" if masked else "default", "SPEC §7 RNNsearch under teacher forcing",
                 "rnnsearch_forward", _redraw("rnnsearch", draw, t_tilde), fwd, bwd, SIZES,
                 order=MODEL_ORDER, per_step=_MODEL_PER_STEP, kinks=_KINK, config={"masked": masked},
                 nondiff=frozenset(nd))


CASES: list[Case] = [
    _embedding_case(),
    _gru_case(False),
    _gru_case(True),
    _encoder_case(False),
    _encoder_case(True),
    _initial_state_case(),
    _alignment_case(False),
    _alignment_case(True),
    _maxout_case(),
    _deep_output_case(),
    _decoder_step_case(False),
    _decoder_step_case(True),
    _decoder_case(False),
    _decoder_case(True),
    _model_case(False),
    _model_case(True),
]
