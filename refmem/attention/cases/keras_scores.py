"""Catalogue cases of the Keras 3 attention scores (`refmem.attention.keras_scores`).

`attention/keras_scores/<score>` for `dot_scaled`, `concat_scaled` and `additive`: the scores
of `keras.layers.Attention` (`score_mode="dot"` and `"concat"`, `use_scale=True`) and
`keras.layers.AdditiveAttention`, with the softmax over the keys and the weighted values of
SPEC §3's global alignment.
"""

from ...catalogue import Case, Forward
from ...sampling import Sampler
from .. import keras_scores as KS

_SIZES = {"B": 2, "Tq": 3, "Tv": 4, "d": 3, "dv": 2}


def _case(score: str) -> Case:
    def sample(xp, seed, sizes):
        s = Sampler(xp, seed)
        B, Tq, Tv, d, dv = (sizes[k] for k in ("B", "Tq", "Tv", "d", "dv"))
        arrays = {"inputs/q": s.normal((B, Tq, d)), "inputs/k": s.normal((B, Tv, d)), "inputs/v": s.normal((B, Tv, dv))}
        if score == "additive":
            arrays["params/scale"] = s.normal((d,))
        else:
            # away from 0 and 1 so that a missing or a fixed scale shows; moderate so tanh does not saturate
            arrays["params/scale"] = s.uniform((1,), 0.5, 0.9)
        if score == "concat_scaled":
            arrays["params/weight"] = s.uniform((1,), 0.6, 1.4)
        return arrays

    def run(arrays):
        return KS.attention_forward(arrays["inputs/q"], arrays["inputs/k"], arrays["inputs/v"],
                                    arrays["params/scale"], arrays.get("params/weight"), score=score)

    def fwd(arrays, frozen=None):
        out, _ = run(arrays)
        return Forward({"weights": out.weights, "output": out.output})

    def bwd(arrays, cot):
        _, cache = run(arrays)
        g = KS.attention_backward(KS.AttentionOutputs(cot["weights"], cot["output"]), cache)
        grads = {"inputs/q": g.q, "inputs/k": g.k, "inputs/v": g.v, "params/scale": g.scale}
        if score == "concat_scaled":
            grads["params/weight"] = g.weight
        return grads

    return Case(
        name=f"attention/keras_scores/{score}",
        spec=f"SPEC §3 global alignment with the Keras 3 {score} score (refmem.attention.keras_scores)",
        function="refmem.attention.keras_scores.attention_forward",
        sample=sample,
        forward=fwd,
        backward=bwd,
        sizes=dict(_SIZES),
        min_sizes={k: 1 for k in _SIZES},
        config={"score": score},
        kinks="none: tanh and softmax are smooth everywhere",
    )


CASES: list[Case] = [_case(score) for score in KS.SCORES]
