"""Catalogue cases of SPEC §8: the attention layers of public packages (:mod:`refmem.attention.additive`),
and a square Luong ``general`` case.

* ``attention/additive/{plain,masked}``: additive attention over separate queries, keys and values,
  no bias (d2l's ``AdditiveAttention``, masked by ``valid_lens``);
* ``attention/additive/mlp_output``: the additive score with the bias inside the tanh, keys = values,
  a key mask, and the output layer ``h̃_t = [c_t ; q_t] W_o + b_o`` without activation (OpenNMT-py's
  ``GlobalAttention(attn_type="mlp")``);
* ``attention/many_to_one/{bahdanau,luong}``: the query is the last row of the sequence itself,
  ``q = h[:, -1]``, keys = values = ``h``, and ``a = tanh([c ; q] W_c)`` (the ``attention``
  package's ``Attention`` layer);
* ``attention/luong_general/global_square``: SPEC §3's ``general`` score, global, at ``Hs = H``
  (OpenNMT-py's ``general`` needs a square ``W_a``; the other Luong cases take ``Hs ≠ H``).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from ... import xp as rx
from ...catalogue import Case, Forward
from ...sampling import Sampler
from .. import additive as AD
from .decoder_and_luong import CASES as _LUONG_CASES

_SMOOTH = "none: tanh and softmax are smooth everywhere"


def _t(x: Any) -> Any:
    return rx.namespace(x).permute_dims(x, (1, 0))


def _prefix_mask(xp: Any, s: Sampler, B: int, T: int) -> Any:
    lengths = s.integers((B, 1), (T + 1) // 2, T + 1)
    return xp.astype(xp.arange(T)[None, :] < lengths, xp.float64)


def _additive_case(variant: str) -> Case:
    masked = variant != "plain"
    mlp = variant == "mlp_output"
    sizes = {"B": 2, "Tq": 2, "Tk": 4, "D": 3, "A": 3} if mlp else {"B": 2, "Tq": 3, "Tk": 4, "Dq": 3, "Dk": 2,
                                                                    "Dv": 3, "A": 4}

    def sample(xp, seed, sz):
        s = Sampler(xp, seed)
        B, Tq, Tk, A = sz["B"], sz["Tq"], sz["Tk"], sz["A"]
        if mlp:
            D = sz["D"]
            a = {"inputs/q": s.normal((B, Tq, D)), "inputs/hs": s.normal((B, Tk, D)),
                 "params/W_q": s.normal((D, A), scale=0.6), "params/W_k": s.normal((D, A), scale=0.6),
                 "params/b": s.normal((A,), scale=0.3), "params/w": s.normal((A,), scale=1.5),
                 "params/W_o": s.normal((2 * D, D), scale=0.6), "params/b_o": s.normal((D,), scale=0.3)}
        else:
            a = {"inputs/q": s.normal((B, Tq, sz["Dq"])), "inputs/k": s.normal((B, Tk, sz["Dk"])),
                 "inputs/v": s.normal((B, Tk, sz["Dv"])), "params/W_q": s.normal((sz["Dq"], A), scale=0.6),
                 "params/W_k": s.normal((sz["Dk"], A), scale=0.6), "params/w": s.normal((A,), scale=1.5)}
        if masked:
            a["inputs/mask"] = _prefix_mask(xp, s, B, Tk)
        return a

    def run(a):
        k = a["inputs/hs"] if mlp else a["inputs/k"]
        v = a["inputs/hs"] if mlp else a["inputs/v"]
        out, cache = AD.attention_forward(a["inputs/q"], k, v, a["params/W_q"], a["params/W_k"], a["params/w"],
                                          a.get("params/b"), score="additive", mask=a.get("inputs/mask"))
        if not mlp:
            return {"weights": out.weights, "context": out.context}, cache, None
        xp = rx.namespace(out.context)
        cq = xp.concat([out.context, a["inputs/q"]], axis=-1)
        return ({"weights": out.weights, "context": out.context, "h_tilde": cq @ a["params/W_o"] + a["params/b_o"]},
                cache, cq)

    def fwd(a, frozen=None):
        return Forward(run(a)[0])

    def bwd(a, cot):
        _, cache, cq = run(a)
        xp = rx.namespace(a["inputs/q"])
        d_c = cot["context"]
        extra = {}
        if mlp:
            D = int(a["inputs/q"].shape[-1])
            d_ht = cot["h_tilde"]
            d_cq = d_ht @ _t(a["params/W_o"])
            d_c = d_c + d_cq[..., :D]
            extra = {"params/W_o": _t(xp.reshape(cq, (-1, 2 * D))) @ xp.reshape(d_ht, (-1, D)),
                     "params/b_o": xp.sum(xp.reshape(d_ht, (-1, D)), axis=0)}
        g = AD.attention_backward(AD.AttentionOutputs(cot["weights"], d_c), cache)
        out = {"inputs/q": g.q, "params/W_q": g.W_q, "params/W_k": g.W_k, "params/w": g.w, **extra}
        if mlp:
            out["inputs/q"] = g.q + d_cq[..., D:]
            out["inputs/hs"] = g.k + g.v
            out["params/b"] = g.b
        else:
            out.update({"inputs/k": g.k, "inputs/v": g.v})
        return out

    outs = ["outputs/weights", "outputs/context"] + (["outputs/h_tilde"] if mlp else [])
    spec = "SPEC §8 additive score" + (", bias and linear output layer" if mlp else "")
    return Case(name=f"attention/additive/{variant}", spec=spec, function="refmem.attention.additive.attention_forward",
                sample=sample, forward=fwd, backward=bwd, sizes=sizes, min_sizes={k: 1 for k in sizes},
                config={"score": "additive", "masked": masked, "bias": mlp, "output": "linear" if mlp else "none"},
                nondiff=frozenset({"inputs/mask"}) if masked else frozenset(), kinks=_SMOOTH,
                order=tuple((n, spec) for n in outs))


def _many_to_one_case(score: str) -> Case:
    sizes = {"B": 3, "T": 4, "D": 3, "U": 2}

    def sample(xp, seed, sz):
        s = Sampler(xp, seed)
        B, T, D, U = sz["B"], sz["T"], sz["D"], sz["U"]
        a = {"inputs/h": s.normal((B, T, D)), "params/W_c": s.normal((2 * D, U), scale=0.6)}
        if score == "bahdanau":
            a.update({"params/W_1": s.normal((D, D), scale=0.6), "params/W_2": s.normal((D, D), scale=0.6),
                      "params/v": s.normal((D,), scale=1.5)})
        else:
            a["params/W"] = s.normal((D, D), scale=0.6)
        return a

    def run(a):
        h = a["inputs/h"]
        xp = rx.namespace(h)
        T = int(h.shape[1])
        q = h[:, T - 1:, :]
        if score == "bahdanau":
            out, cache = AD.attention_forward(q, h, h, a["params/W_1"], a["params/W_2"], a["params/v"], score="additive")
        else:
            out, cache = AD.attention_forward(q, h, h, a["params/W"], score="general")
        cq = xp.concat([out.context[:, 0, :], q[:, 0, :]], axis=-1)
        att = xp.tanh(cq @ a["params/W_c"])
        return out, cache, cq, att

    def fwd(a, frozen=None):
        out, _, _, att = run(a)
        return Forward({"attention_vector": att},
                       trace=lambda: {"weights": out.weights[:, 0, :], "context": out.context[:, 0, :]})

    def bwd(a, cot):
        out, cache, cq, att = run(a)
        xp = rx.namespace(att)
        h = a["inputs/h"]
        B, T, D = (int(s) for s in h.shape)
        d_pre = cot["attention_vector"] * (1.0 - att * att)
        d_cq = d_pre @ _t(a["params/W_c"])
        g = AD.attention_backward(AD.AttentionOutputs(None, d_cq[:, None, :D]), cache)
        d_q = g.q[:, 0, :] + d_cq[:, D:]
        last = xp.concat([xp.zeros((B, T - 1, D), dtype=h.dtype), d_q[:, None, :]], axis=1) if T > 1 else d_q[:, None, :]
        grads = {"inputs/h": g.k + g.v + last, "params/W_c": _t(cq) @ d_pre}
        if score == "bahdanau":
            grads.update({"params/W_1": g.W_q, "params/W_2": g.W_k, "params/v": g.w})
        else:
            grads["params/W"] = g.W_q
        return grads

    spec = f"SPEC §8 many-to-one attention, {score} score"
    return Case(name=f"attention/many_to_one/{score}", spec=spec, function="refmem.attention.additive.attention_forward",
                sample=sample, forward=fwd, backward=bwd, sizes=sizes, min_sizes={k: 1 for k in sizes},
                config={"score": "additive" if score == "bahdanau" else "general", "query": "last row"},
                kinks=_SMOOTH,
                order=(("intermediates/weights", spec), ("intermediates/context", spec),
                       ("outputs/attention_vector", spec)))


def _square_general() -> Case:
    base = next(c for c in _LUONG_CASES if c.name == "attention/luong_general/global")

    def sample(xp, seed, sizes):
        return base.sample(xp, seed, {**sizes, "Hs": sizes["H"]})

    sizes = {k: v for k, v in base.sizes.items() if k != "Hs"}
    return dataclasses.replace(base, name="attention/luong_general/global_square", sample=sample, sizes=sizes,
                               min_sizes={k: v for k, v in base.min_sizes.items() if k != "Hs"},
                               config={**base.config, "square": True})


CASES: list[Case] = [
    _additive_case("plain"),
    _additive_case("masked"),
    _additive_case("mlp_output"),
    _many_to_one_case("bahdanau"),
    _many_to_one_case("luong"),
    _square_general(),
]
