"""Catalogue cases of SPEC §2 (the Bahdanau decoder) and SPEC §3 (Luong attention).

Module `attention`. Bahdanau: `attention/bahdanau_decoder/<variant>` for both `output_state`
readings of equation 8, plain, with a mask over the annotations and teacher-forced. Luong:
`attention/luong_<score>/<alignment>` for every score (dot, general, concat, location) and
alignment (global, local_m, local_p).
"""

from typing import Any

from ... import xp as rx
from ...catalogue import Case, Forward
from ...sampling import Sampler
from .. import bahdanau as BD
from .. import luong as LU

# ----------------------------------------------------------------------------- Bahdanau (SPEC §2)

#: The golden order of `attention/bahdanau_decoder/*` (docs/golden-format.md): `s_0` before the loop, then one step.
BAHDANAU_ORDER: tuple[tuple[str, str], ...] = (
    ("intermediates/s0", "SPEC §2 s_0"),
    ("intermediates/e", "SPEC §2 eq. 1"),
    ("outputs/alpha", "SPEC §2 eq. 2"),
    ("intermediates/context", "SPEC §2 eq. 3"),
    ("intermediates/r", "SPEC §2 eq. 4"),
    ("intermediates/z", "SPEC §2 eq. 5"),
    ("intermediates/p", "SPEC §2 eq. 6"),
    ("outputs/s", "SPEC §2 eq. 7"),
    ("outputs/y", "SPEC §2 eq. 8"),
)


def bahdanau_intermediates(cache: BD.DecoderCache) -> dict[str, Any]:
    """`s0 [B, H]`; per step, stacked after the batch axis: `e [B, T, T]` (the energies of eq. 1,
    before any mask), `context [B, T, D]` (`c_t`), `r`, `z`, `p [B, T, H]`."""
    xp = rx.namespace(cache.s0)
    V_a = cache.params.V_a
    steps = cache.steps
    return {
        "s0": cache.s0,
        "e": xp.stack([xp.sum(st.att * V_a, axis=-1) for st in steps], axis=1),
        "context": xp.stack([st.c for st in steps], axis=1),
        "r": xp.stack([st.r for st in steps], axis=1),
        "z": xp.stack([st.z for st in steps], axis=1),
        "p": xp.stack([st.p for st in steps], axis=1),
    }

_BD_SIZES = {"B": 6, "T": 4, "D": 3, "H": 3, "K": 3}

#: Standard deviations of the sampled parameters (others: matrices 1.0, biases 0.3).
#: The finite-difference floor of SPEC §6's central check is about 5e-10 per gradient
#: element (rounding of the outputs over a step of 2**-20), so every gradient must stay
#: well above it: the reset and update gates are kept in their linear range (small
#: weights, where σ' is largest), U_p is large so that the reset gate matters, and W_s
#: is moderate so that s_0 does not saturate. B = 6 averages out unlucky draws.
_BD_SCALES = {
    "W_r": 0.3, "U_r": 0.3, "C_r": 0.3, "b_r": 0.05,
    "W_z": 0.5, "U_z": 0.5, "C_z": 0.5, "b_z": 0.1,
    "U_p": 2.0, "W_s": 1.2,
}


def _bd_params(s: Sampler, D: int, H: int, K: int) -> dict[str, Any]:
    """Parameters drawn at the scales of `_BD_SCALES`."""
    out = {}
    for name, (shape, _) in BD.param_shapes(D, H, K).items():
        scale = _BD_SCALES.get(name, 0.3 if name.startswith("b_") else 1.0)
        out[f"params/{name}"] = s.normal(shape, scale=scale)
    return out


def _bahdanau_case(output_state: str, masked: bool = False, teacher: bool = False) -> Case:
    variant = output_state + ("_masked" if masked else "") + ("_teacher" if teacher else "")

    def sample(xp, seed, sizes):
        s = Sampler(xp, seed)
        B, T, D, H, K = (sizes[k] for k in ("B", "T", "D", "H", "K"))
        arrays = {"inputs/h": s.normal((B, T, D))}
        arrays.update(_bd_params(s, D, H, K))
        if teacher:
            # y_prev[:, 0] = y_0 = 0, then probability rows as a softmax output would give
            rows = s.simplex((B, T, K))
            first = xp.zeros((B, 1, K), dtype=rows.dtype)
            arrays["inputs/y_prev"] = xp.concat([first, rows[:, 1:, :]], axis=1) if T > 1 else first
        if masked:
            # padding masks: batch row b attends to its first length_b ≥ T/2 annotations (at least
            # two where T ≥ 3, so that the energies, and b_a through them, still matter)
            lengths = s.integers((B, 1), (T + 1) // 2, T + 1)
            pos = xp.arange(T)[None, :]
            arrays["inputs/mask"] = xp.astype(pos < lengths, xp.float64)
        return arrays

    def run(arrays):
        params = BD.DecoderParams(**{n: arrays[f"params/{n}"] for n in BD.PARAM_NAMES})
        return BD.decoder_forward(arrays["inputs/h"], params, arrays.get("inputs/y_prev"),
                                  output_state=output_state, mask=arrays.get("inputs/mask"))

    def fwd(arrays, frozen=None):
        out, cache = run(arrays)
        return Forward({"y": out.y, "alpha": out.alpha, "s": out.s}, trace=lambda: bahdanau_intermediates(cache))

    def bwd(arrays, cot):
        _, cache = run(arrays)
        g = BD.decoder_backward(BD.DecoderOutputs(cot["y"], cot["alpha"], cot["s"]), cache)
        grads = {"inputs/h": g.h}
        grads.update({f"params/{n}": v for n, v in zip(BD.PARAM_NAMES, g.params)})
        if teacher:
            grads["inputs/y_prev"] = g.y_prev
        return grads

    config = {"output_state": output_state, "masked": masked, "teacher_forcing": teacher}
    return Case(
        name=f"attention/bahdanau_decoder/{variant}",
        spec="SPEC §2 equations 1-8",
        function="refmem.attention.bahdanau.decoder_forward",
        sample=sample,
        forward=fwd,
        backward=bwd,
        sizes=dict(_BD_SIZES),
        min_sizes={"B": 1, "T": 1, "D": 1, "H": 1, "K": 1},
        config=config,
        nondiff=frozenset({"inputs/mask"}) if masked else frozenset(),
        kinks="none: tanh, sigmoid and softmax are smooth everywhere",
        order=BAHDANAU_ORDER,
        per_step=frozenset(n for n, _ in BAHDANAU_ORDER[1:]),
    )



CASES: list[Case] = [
    _bahdanau_case("previous"),
    _bahdanau_case("current"),
    _bahdanau_case("previous", masked=True),
    _bahdanau_case("current", teacher=True),
]


# ----------------------------------------------------------------------------- Luong (SPEC §3)

#: Half-width `D` of the local window in the catalogue (`σ = D / 2 = 1`).
_WINDOW = 2
#: Decoder step of the first query for `local_m` (windows `t0 - D .. t0 + T - 1 + D`).
_T0 = 2


def _luong_sizes(score: str, alignment: str) -> dict[str, int]:
    sizes = {"B": 2, "T": 2, "S": 6, "H": 3}
    if score != "dot":
        sizes["Hs"] = 4  # H ≠ Hs catches a transposed weight
    if score == "concat" or alignment == "local_p":
        sizes["A"] = 3
    return sizes


def _fractional_part(x):
    xp = rx.namespace(x)
    return x - xp.floor(x)


def _luong_case(score: str, alignment: str) -> Case:
    def sample(xp, seed, sizes):
        s = Sampler(xp, seed)
        B, T, S, H = sizes["B"], sizes["T"], sizes["S"], sizes["H"]
        Hs = H if score == "dot" else sizes["Hs"]
        A = sizes.get("A", 0)
        arrays = {"inputs/hs": s.normal((B, S, Hs))}
        for name, (shape, _) in LU.param_shapes(score, alignment, H, Hs, S, A).items():
            scale = 1.0 if name == "v_p" else 0.6
            arrays[f"params/{name}"] = s.normal(shape, scale=scale)
        h = s.normal((B, T, H))
        if alignment == "local_p":
            # Window edges sit where p_t is an integer (|s - p_t| = D with s, D integers).
            # Each query's p_t depends on its own row of h only, so rows whose p_t has a
            # fractional part outside [0.2, 0.8] are redrawn until all are well inside; if
            # W_p, v_p leave p_t no room (a tiny v_p pins p_t near S/2), they are redrawn too.
            for _ in range(50):
                W_p, v_p = arrays["params/W_p"], arrays["params/v_p"]
                for _ in range(50):
                    p, _ = LU.position(h, W_p, v_p, S)
                    frac = _fractional_part(p)
                    ok = (frac > 0.2) & (frac < 0.8)
                    if bool(xp.all(ok)):
                        break
                    h = xp.where(ok[:, :, None], h, s.normal((B, T, H)))
                if bool(xp.all(ok)):
                    break
                arrays["params/W_p"] = s.normal(tuple(W_p.shape), scale=0.6)
                arrays["params/v_p"] = s.normal(tuple(v_p.shape), scale=2.0)
            else:
                raise RuntimeError(f"luong_{score}/local_p: could not keep p_t off the window edges")
        arrays["inputs/h"] = h
        return arrays

    def run(arrays):
        params = LU.LuongParams(**{k.split("/", 1)[1]: v for k, v in arrays.items() if k.startswith("params/")})
        return LU.attention_forward(arrays["inputs/h"], arrays["inputs/hs"], params, score=score,
                                    alignment=alignment, window=_WINDOW, t0=_T0)

    def fwd(arrays, frozen=None):
        out, cache = run(arrays)
        outputs = {"a": out.a, "c": out.c, "h_tilde": out.h_tilde}
        if alignment == "local_p":
            outputs["p"] = out.p
        return Forward(outputs, trace=lambda: luong_intermediates(cache))

    def bwd(arrays, cot):
        _, cache = run(arrays)
        g = LU.attention_backward(LU.AttentionOutputs(cot["a"], cot["c"], cot["h_tilde"], cot.get("p")), cache)
        grads = {"inputs/h": g.h, "inputs/hs": g.hs}
        for name, value in g.params._asdict().items():
            if f"params/{name}" in arrays:
                grads[f"params/{name}"] = value
        return grads

    spec = f"SPEC §3 {score} score, {alignment.replace('_', '-')} alignment"
    order = [("intermediates/score", f"SPEC §3 {score} score")]
    if alignment == "local_p":
        order.insert(0, ("outputs/p", "SPEC §3 local-p position p_t"))
    if alignment != "global":
        order.append(("intermediates/align", "SPEC §3 softmax over the window"))
    order += [("outputs/a", f"SPEC §3 {alignment.replace('_', '-')} alignment a_t"),
              ("outputs/c", "SPEC §3 context c_t"), ("outputs/h_tilde", "SPEC §3 attentional state h~_t")]
    kinks = "none"
    if alignment == "local_m":
        kinks = "window edges: p_t = t0 + t is an integer constant, so no input moves an edge"
    elif alignment == "local_p":
        kinks = "window edges: rows of h are redrawn until every p_t has a fractional part in [0.2, 0.8]"
    return Case(
        name=f"attention/luong_{score}/{alignment}",
        spec=spec,
        function="refmem.attention.luong.attention_forward",
        sample=sample,
        forward=fwd,
        backward=bwd,
        sizes=_luong_sizes(score, alignment),
        min_sizes={"B": 1, "T": 1, "S": 1, "H": 1, "Hs": 1, "A": 1},
        config={"score": score, "alignment": alignment, "window": _WINDOW, "sigma": _WINDOW / 2,
                "t0": _T0 if alignment == "local_m" else None},
        kinks=kinks,
        order=tuple(order),
    )


def luong_intermediates(cache: LU.AttentionCache) -> dict[str, Any]:
    """`score [B, T, S]` (the score of every query and source position) and, for the local
    alignments, `align [B, T, S]` (the softmax over the window, before the Gaussian)."""
    out = {"score": cache.scores}
    if cache.alignment != "global":
        out["align"] = cache.soft
    return out


CASES += [_luong_case(score, alignment) for score in LU.SCORES for alignment in LU.ALIGNMENTS]
