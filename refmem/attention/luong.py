"""SPEC §3: Luong attention (Luong, Pham & Manning 2015), forward and backward.

A decoder state `h_t [B, H]` (or a sequence of them `[B, T, H]`; `T` plays SPEC's `T'`)
attends over source states `hs [B, S, Hs]`.

Scores ([`SCORES`][refmem.attention.luong.SCORES]), one per query `t` and source position `s`:

* `dot`: `h_t · hs_s` (needs `H = Hs`);
* `general`: `(h_t @ W_a) · hs_s` with `W_a [H, Hs]`;
* `concat`: `v_a · tanh([h_t ; hs_s] @ W_a)` with `W_a [H + Hs, A]`, `v_a [A]`;
* `location`: `h_t @ W_a` with `W_a [H, S]` (the source states do not enter).

Alignments ([`ALIGNMENTS`][refmem.attention.luong.ALIGNMENTS]):

* `global`: `a_t = softmax_s(score_t)`;
* `local_m`: `p_t = t`; `local_p`: `p_t = S · σ(tanh(h_t @ W_p) · v_p)`, `W_p [H, A]`, `v_p [A]`.
  The window holds the positions with `|s - p_t| ≤ D` and
  `a_t(s) = softmax over the window(score_t)(s) · exp(-(s - p_t)² / (2σ²))`, `σ = D / 2`, with
  no renormalisation after the Gaussian; outside the window `a_t(s) = 0`. The gradient reaches
  `p_t` through the Gaussian (window membership is piecewise constant in `p_t`: its edges are
  the kinks).

Then `c_t = Σ_s a_t(s) hs_s` and the attentional state `h~_t = tanh([c_t ; h_t] @ W_c)`,
`W_c [Hs + H, H]`.

Source positions are 0-based (`s = 0 .. S-1`), so for `local_m` the query `t` (0-based) sits
at `p_t = t0 + t`. The forward/backward pairs follow [the backward rule](../conventions.md):
[`score_forward`][refmem.attention.luong.score_forward] /
[`score_backward`][refmem.attention.luong.score_backward],
[`position_forward`][refmem.attention.luong.position_forward] /
[`position_backward`][refmem.attention.luong.position_backward],
[`window_forward`][refmem.attention.luong.window_forward] /
[`window_backward`][refmem.attention.luong.window_backward], and the whole layer
[`attention_forward`][refmem.attention.luong.attention_forward] /
[`attention_backward`][refmem.attention.luong.attention_backward]. They check their arguments
once; the maths lives in [`scores`][refmem.attention.luong.scores],
[`position`][refmem.attention.luong.position], [`local_window`][refmem.attention.luong.local_window],
[`attention`][refmem.attention.luong.attention] and their `_vjp` functions, which trust their
inputs.

The shapes of `W_a` and `v_a` depend on the score and those of `W_p`, `v_p` on the alignment:
the annotations give their ranks, and the entry points check their shapes for the chosen
options, in SPEC's letters (the argument that disagrees with the others is named).
"""

from typing import Any, Literal, NamedTuple

from .. import primitives as PR
from .. import xp as rx
from ..errors import DomainError, DTypeError, ShapeError
from ..sampling import Sampler
from ..validation import Array, Mask, Seed, Size, Unit, checked
from ..validation import quiet_overflow, refuse_overflow
from ._edge import old_backward
from .bahdanau import masked_softmax

__all__ = [
    "SCORES",
    "ALIGNMENTS",
    "LuongParams",
    "ScoreOutputs",
    "ScoreCache",
    "ScoreGrads",
    "PositionOutputs",
    "PositionCache",
    "PositionGrads",
    "WindowOutputs",
    "WindowCache",
    "WindowGrads",
    "AttentionOutputs",
    "AttentionCache",
    "AttentionGrads",
    "LuongOutput",
    "LuongCache",
    "LuongGrads",
    "param_shapes",
    "init_params",
    "scores",
    "scores_vjp",
    "position",
    "position_vjp",
    "local_window",
    "local_window_vjp",
    "attention",
    "attention_vjp",
    "score_forward",
    "score_backward",
    "position_forward",
    "position_backward",
    "window_forward",
    "window_backward",
    "attention_forward",
    "attention_backward",
]

SCORES = ("dot", "general", "concat", "location")
"""The scores of SPEC §3."""
ALIGNMENTS = ("global", "local_m", "local_p")
"""The alignments of SPEC §3."""

Score = Literal["dot", "general", "concat", "location"]
Alignment = Literal["global", "local_m", "local_p"]


class LuongParams(NamedTuple):
    """Parameters of SPEC §3 (`None` where the score or alignment does not use one).

    The same type holds their gradients. Each field's annotation gives its rank; its shape
    depends on the score and the alignment (below), and
    [`attention_forward`][refmem.attention.luong.attention_forward] checks it for the chosen
    ones.
    """

    W_c: Array["I_c O_c"]
    """`[Hs + H, H]`, the attentional state's map (every score)."""
    W_a: Array["I_a O_a"] | None = None
    """`general` `[H, Hs]`, `concat` `[H + Hs, A]`, `location` `[H, S]`, `dot` `None`."""
    v_a: Array["A_a"] | None = None
    """`[A]`, `concat` only."""
    W_p: Array["I_p O_p"] | None = None
    """`[H, A]`, `local_p` only."""
    v_p: Array["A_p"] | None = None
    """`[A]`, `local_p` only."""


def param_shapes(score: str, alignment: str, H: int, Hs: int, S: int, A: int) -> dict[str, tuple[tuple[int, ...], str]]:
    """The parameters a `(score, alignment)` pair uses, with their shapes in numbers and in SPEC's letters."""
    if score not in SCORES:
        raise DomainError(f"score: expected one of {', '.join(map(repr, SCORES))}, got {score!r}")
    if alignment not in ALIGNMENTS:
        raise DomainError(f"alignment: expected one of {', '.join(map(repr, ALIGNMENTS))}, got {alignment!r}")
    shapes: dict[str, tuple[tuple[int, ...], str]] = {"W_c": ((Hs + H, H), "(Hs + H, H)")}
    if score == "general":
        shapes["W_a"] = ((H, Hs), "(H, Hs)")
    elif score == "concat":
        shapes["W_a"] = ((H + Hs, A), "(H + Hs, A)")
        shapes["v_a"] = ((A,), "(A,)")
    elif score == "location":
        shapes["W_a"] = ((H, S), "(H, S)")
    if alignment == "local_p":
        shapes["W_p"] = ((H, A), "(H, A)")
        shapes["v_p"] = ((A,), "(A,)")
    return shapes


@checked
def init_params(xp: Any, score: Score, alignment: Alignment, H: Size, Hs: Size, S: Size | None = None,
                A: Size | None = None, seed: Seed = 0, dtype: Any = None) -> LuongParams:
    """Glorot-uniform matrices and vectors (Keras 2 fans) for a `(score, alignment)` pair.

    The draws are made in float64 with one `refmem.sampling.Sampler`, then cast to `dtype`.

    Args:
        xp: the array namespace to create the parameters in.
        score: `"dot"`, `"general"`, `"concat"` or `"location"`.
        alignment: `"global"`, `"local_m"` or `"local_p"`.
        H: the query width.
        Hs: the source width (`H` for `dot`).
        S: the number of source positions; needed by the `location` score.
        A: the hidden width of `concat` and `local_p`; needed by them.
        seed: the seed of the draws.
        dtype: the floating dtype of the result (default `xp.float64`).

    Returns:
        params: the [`LuongParams`][refmem.attention.luong.LuongParams], `None` where unused.

    Raises:
        refmem.errors.DomainError: a size below 1, or `S`/`A` missing where the options need it.
    """
    needs = {"S": score == "location", "A": score == "concat" or alignment == "local_p"}
    for letter, value in (("S", S), ("A", A)):
        if needs[letter] and value is None:
            raise DomainError(f"{letter}: expected an integer >= 1 (the {score} score with the {alignment} "
                              f"alignment needs it), got None")
    dtype = xp.float64 if dtype is None else dtype
    s = Sampler(xp, seed)
    values = {}
    for name, (shape, _) in param_shapes(score, alignment, H, Hs, S or 0, A or 0).items():
        if len(shape) == 2:
            fan_in, fan_out = shape
        else:
            fan_in = fan_out = shape[0] ** 0.5
        limit = (6.0 / (fan_in + fan_out)) ** 0.5
        values[name] = xp.astype(s.uniform(shape, -limit, limit), dtype)
    return LuongParams(**values)


def _flat_outer(x: Any, d: Any) -> Any:
    """`Σ_batch xᵀ d` for `x [..., I]` and `d [..., O]`: the gradient of `W` in `x @ W`."""
    xp = rx.namespace(x, d)
    return xp.reshape(x, (-1, x.shape[-1])).mT @ xp.reshape(d, (-1, d.shape[-1]))


# ----------------------------------------------------------------------------- the shapes that depend on the options
#
# The annotations give every argument its rank; they cannot say that `W_a` is `[H, Hs]` for one
# score and `[H + Hs, A]` for another. The entry points check the exact shapes for their options
# here, after the annotations: each size (`H`, `Hs`, `S`, `A`) is read from every argument that
# shows it, the sizes that put the fewest arguments in the wrong are taken, and the first argument
# they put in the wrong is named, so a wrong `W_c` is reported on `W_c` even where it is the only
# parameter that reads `H`, and an input of the wrong width on the input.


def _check_option_shapes(h: Any, hs: Any, W_c: Any, W_a: Any, v_a: Any, W_p: Any, v_p: Any, score: str,
                         alignment: str, where: str = "params.") -> None:
    """Refuse arguments whose shapes disagree with the options (`ShapeError`), or a parameter the
    options need that is `None` (`DTypeError`). `W_c` is `None` for the scores alone."""
    if W_a is None and score != "dot":
        raise DTypeError(f"{where}W_a: expected an array (the {score} score uses it), got None")
    if v_a is None and score == "concat":
        raise DTypeError(f"{where}v_a: expected an array (the concat score uses it), got None")
    local_p = alignment == "local_p"
    if local_p and (W_p is None or v_p is None):
        name = "W_p" if W_p is None else "v_p"
        raise DTypeError(f"{where}{name}: expected an array (the local_p alignment uses it), got None")
    given = {"h": h, "hs": hs, "W_c": W_c, "W_a": W_a, "v_a": v_a, "W_p": W_p, "v_p": v_p}
    given = {k: tuple(int(d) for d in v.shape) for k, v in given.items() if v is not None}
    # every value each size takes in some argument, the parameters' first
    votes: dict[str, list[int]] = {"H": [], "Hs": [], "S": [], "A": []}
    if W_c is not None:
        votes["H"].append(given["W_c"][1])
    if score in ("general", "location"):
        votes["H"].append(given["W_a"][0])
    if local_p:
        votes["H"].append(given["W_p"][0])
        votes["A"] += [given["W_p"][1], given["v_p"][0]]
    votes["H"] += [given["h"][-1]] + ([given["hs"][2]] if score == "dot" else [])
    if score == "general":
        votes["Hs"].append(given["W_a"][1])
    if score == "concat":
        votes["A"] = [given["W_a"][1], given["v_a"][0]] + votes["A"]
    votes["Hs"].append(given["hs"][2])
    if score == "location":
        votes["S"].append(given["W_a"][1])
    votes["S"].append(given["hs"][1])

    def wrong(H: int, Hs: int, S: int, A: int) -> list[tuple[str, tuple, str]]:
        want = {"h": (given["h"][:-1] + (H,), "(..., H)"),
                "hs": ((given["hs"][0], S, Hs), "(B, S, H)" if score == "dot" else "(B, S, Hs)")}
        want.update((k, v) for k, v in param_shapes(score, alignment, H, Hs, S, A).items() if k in given)
        return [(name, shape, symbols) for name, (shape, symbols) in want.items() if given[name] != shape]

    # The derived widths (`W_c [Hs + H, H]`, the concat `W_a [H + Hs, A]`) vote for `Hs` once `H`
    # is chosen: every choice of the sizes among the values given is tried, and the one that puts
    # the fewest arguments in the wrong is kept (between equals, the most voted values, the
    # parameters' first). The first argument it puts in the wrong is named.
    def ranked(values: list[int]) -> list[int]:
        return sorted(dict.fromkeys(values), key=lambda v: -values.count(v)) or [0]

    best = None
    for H in ranked(votes["H"]):
        hs_votes = list(votes["Hs"])
        if W_c is not None:
            hs_votes.insert(0, given["W_c"][0] - H)
        if score == "concat":
            hs_votes.insert(0, given["W_a"][0] - H)
        for Hs in ([H] if score == "dot" else ranked(hs_votes)):
            for S in ranked(votes["S"]):
                for A in ranked(votes["A"]):
                    found = wrong(H, Hs, S, A)
                    if best is None or len(found) < len(best):
                        best = found
                    if not best:
                        return
    name, shape, symbols = best[0]
    label = name if name in ("h", "hs") else where + name
    raise ShapeError(f"{label}: expected shape {symbols} = {shape}{_for(score, alignment, name)}, got {given[name]}")


def _for(score: str, alignment: str, name: str) -> str:
    """`" for the <option>"` where the shape of `name` depends on an option."""
    if name in ("W_a", "v_a") or (name == "hs" and score == "dot"):
        return f" for the {score} score"
    if name in ("W_p", "v_p"):
        return f" for the {alignment} alignment"
    return ""


# ----------------------------------------------------------------------------- scores


class ScoreOutputs(NamedTuple):
    """The output of [`score_forward`][refmem.attention.luong.score_forward]."""

    score: Array["B T S"]
    """The score of every query `t` and source position `s`."""


class ScoreCache(NamedTuple):
    """What [`score_backward`][refmem.attention.luong.score_backward] needs."""

    score: str
    """The kind of score."""
    h: Array["B T H"]
    """The queries."""
    hs: Array["B S Hs"]
    """The source states."""
    W_a: Array["I_a O_a"] | None
    """`W_a`, or `None` (`dot`)."""
    v_a: Array["A"] | None
    """`v_a`, or `None` (all but `concat`)."""
    hw: Array["B T Hs"] | None
    """`general`: `h @ W_a`."""
    u: Array["B T S A"] | None
    """`concat`: `tanh(h @ W_a[:H] + hs @ W_a[H:])` for every pair `(t, s)`."""


class ScoreGrads(NamedTuple):
    """The gradients of [`score_forward`][refmem.attention.luong.score_forward]'s arguments."""

    h: Array["B T H"]
    """The gradient of `h`."""
    hs: Array["B S Hs"]
    """The gradient of `hs` (zeros for `location`, whose score does not read `hs`)."""
    W_a: Array["I_a O_a"] | None = None
    """The gradient of `W_a`; `None` for `dot`."""
    v_a: Array["A"] | None = None
    """The gradient of `v_a`; `None` unless `concat`."""


def scores(h: Any, hs: Any, W_a: Any, v_a: Any, kind: str) -> tuple[Any, ScoreCache]:
    """SPEC §3 scores `[B, T, S]` of the score `kind` and their cache, unchecked."""
    xp = rx.namespace(h, hs)
    H = int(h.shape[-1])
    hw = u = None
    if kind == "dot":
        out = h @ hs.mT
    elif kind == "general":
        hw = h @ W_a
        out = hw @ hs.mT
    elif kind == "concat":
        q = h @ W_a[:H, :]  # [B, T, A]
        k = hs @ W_a[H:, :]  # [B, S, A]
        u = xp.tanh(q[:, :, None, :] + k[:, None, :, :])  # [B, T, S, A]
        out = xp.sum(u * v_a, axis=-1)
    else:  # location
        out = h @ W_a
    return out, ScoreCache(kind, h, hs, W_a, v_a, hw, u)


def scores_vjp(d_score: Any, cache: ScoreCache) -> ScoreGrads:
    """The gradients of [`scores`][refmem.attention.luong.scores] from that of the scores, unchecked."""
    xp = rx.namespace(d_score)
    C = cache
    H = int(C.h.shape[-1])
    if C.score == "dot":
        return ScoreGrads(d_score @ C.hs, d_score.mT @ C.h, None, None)
    if C.score == "general":
        d_hw = d_score @ C.hs  # [B, T, Hs]
        return ScoreGrads(d_hw @ C.W_a.mT, d_score.mT @ C.hw, _flat_outer(C.h, d_hw), None)
    if C.score == "concat":
        d_v_a = xp.sum(xp.reshape(d_score[..., None] * C.u, (-1, C.u.shape[-1])), axis=0)
        d_pre = (d_score[..., None] * C.v_a) * (1.0 - C.u * C.u)  # [B, T, S, A]
        d_q = xp.sum(d_pre, axis=2)  # [B, T, A]
        d_k = xp.sum(d_pre, axis=1)  # [B, S, A]
        d_W_a = xp.concat([_flat_outer(C.h, d_q), _flat_outer(C.hs, d_k)], axis=0)
        return ScoreGrads(d_q @ C.W_a[:H, :].mT, d_k @ C.W_a[H:, :].mT, d_W_a, d_v_a)
    # location
    return ScoreGrads(d_score @ C.W_a.mT, xp.zeros_like(C.hs), _flat_outer(C.h, d_score), None)


_SCORE_INPUTS = {"dot": ("h", "hs"), "general": ("h", "hs", "W_a"), "concat": ("h", "hs", "W_a", "v_a"),
                 "location": ("h", "W_a")}
"""The arguments each score's values grow with, named when they overflow."""


def _score_inputs(score: str, where: str = "") -> str:
    """The arguments of a score, `where` before the parameters' names (`"params."`)."""
    return ", ".join(n if n.startswith("h") else where + n for n in _SCORE_INPUTS[score])


@checked
def score_forward(h: Array["B T H"], hs: Array["B S Hs"], W_a: Array["I_a O_a"] | None = None,
                  v_a: Array["A"] | None = None, *, score: Score) -> tuple[ScoreOutputs, ScoreCache]:
    """SPEC §3 scores of every query `h [B, T, H]` against every source `hs [B, S, Hs]`.

    Args:
        h: `[B, T, H]`, the queries.
        hs: `[B, S, Hs]`, the source states (`Hs = H` for `dot`).
        W_a: `general` `[H, Hs]`, `concat` `[H + Hs, A]`, `location` `[H, S]`, `dot` `None`.
        v_a: `concat` `[A]`, otherwise `None`.
        score: `"dot"`, `"general"`, `"concat"` or `"location"` (keyword-only).

    Returns:
        outputs: a [`ScoreOutputs`][refmem.attention.luong.ScoreOutputs] `(score [B, T, S])`.
        cache: a [`ScoreCache`][refmem.attention.luong.ScoreCache].

    Raises:
        refmem.errors.ShapeError: `W_a` or `v_a` of the wrong shape for the score.
        refmem.errors.DomainError: finite inputs whose scores overflow the dtype.
    """
    _check_option_shapes(h, hs, None, W_a, v_a, None, None, score, "global", where="")
    with quiet_overflow():
        out, cache = scores(h, hs, W_a, v_a, score)
    refuse_overflow(out, _score_inputs(score), f"{score} scores")
    return ScoreOutputs(out), cache


@checked(legacy=old_backward(lambda: score_backward, "score_backward(d_score, cache)",
                             "score_backward((d_score,), cache)", ("d_score", "cache"), (),
                             lambda a: ((a["d_score"],), a["cache"])))
def score_backward(d_out: ScoreOutputs, cache: ScoreCache) -> ScoreGrads:
    """VJP of [`score_forward`][refmem.attention.luong.score_forward].

    Args:
        d_out: a [`ScoreOutputs`][refmem.attention.luong.ScoreOutputs] (or a 1-tuple): the gradient
            of `score [B, T, S]` (`None`: zero).
        cache: the [`ScoreCache`][refmem.attention.luong.ScoreCache] of the forward.

    Returns:
        grads: a [`ScoreGrads`][refmem.attention.luong.ScoreGrads] `(h [B, T, H], hs [B, S, Hs], W_a, v_a [A])`;
            `hs` is zero for `location`, `W_a` is `None` for `dot` and `v_a` is `None` unless `concat`.

    Derivation: [docs/derivations/attention.md, "3. Luong attention (SPEC §3)"](../derivations/attention.md#3-luong-attention-spec-3) ("Scores")
    """
    (d_score,) = d_out
    if d_score is None:
        xp = rx.namespace(cache.h)
        d_score = xp.zeros((cache.h.shape[0], cache.h.shape[1], _sources(cache)), dtype=cache.h.dtype)
    return scores_vjp(d_score, cache)


def _sources(cache: ScoreCache) -> int:
    """`S` of a score's cache (the `location` score reads it from `W_a`)."""
    return int(cache.W_a.shape[1]) if cache.score == "location" else int(cache.hs.shape[1])


# ----------------------------------------------------------------------------- local-p position


class PositionOutputs(NamedTuple):
    """The output of [`position_forward`][refmem.attention.luong.position_forward]."""

    p: Array["B T"]
    """`p_t`, the window centres, in `(0, S)`."""


class PositionCache(NamedTuple):
    """What [`position_backward`][refmem.attention.luong.position_backward] needs."""

    h: Array["B T H"]
    """The queries."""
    u: Array["B T A"]
    """`tanh(h @ W_p)`."""
    sig: Array["B T"]
    """`σ(u · v_p)`."""
    S: int
    """The number of source positions."""
    W_p: Array["H A"]
    """`W_p`."""
    v_p: Array["A"]
    """`v_p`."""


class PositionGrads(NamedTuple):
    """The gradients of [`position_forward`][refmem.attention.luong.position_forward]'s arguments."""

    h: Array["B T H"]
    """The gradient of `h`."""
    W_p: Array["H A"]
    """The gradient of `W_p`."""
    v_p: Array["A"]
    """The gradient of `v_p`."""


def position(h: Any, W_p: Any, v_p: Any, S: int) -> tuple[Any, PositionCache]:
    """Local-p's `p = S · σ(tanh(h @ W_p) · v_p)` `[B, T]` and its cache, unchecked."""
    xp = rx.namespace(h, W_p, v_p)
    u = xp.tanh(h @ W_p)
    sig = PR.sigmoid(xp.sum(u * v_p, axis=-1))
    return S * sig, PositionCache(h, u, sig, S, W_p, v_p)


def position_vjp(d_p: Any, cache: PositionCache) -> PositionGrads:
    """The gradients of [`position`][refmem.attention.luong.position] from that of `p`, unchecked."""
    xp = rx.namespace(d_p)
    C = cache
    d_q = d_p * C.S * C.sig * (1.0 - C.sig)  # [B, T]
    d_v_p = xp.sum(xp.reshape(d_q[..., None] * C.u, (-1, C.u.shape[-1])), axis=0)
    d_pre = (d_q[..., None] * C.v_p) * (1.0 - C.u * C.u)  # [B, T, A]
    return PositionGrads(d_pre @ C.W_p.mT, _flat_outer(C.h, d_pre), d_v_p)


@checked
def position_forward(h: Array["B T H"], W_p: Array["H A"], v_p: Array["A"], *,
                     S: Size) -> tuple[PositionOutputs, PositionCache]:
    """Local-p's predicted position `p_t = S · σ(tanh(h_t @ W_p) · v_p)` (SPEC §3).

    Args:
        h: `[B, T, H]`, the queries.
        W_p: `[H, A]`.
        v_p: `[A]`.
        S: the number of source positions (keyword-only).

    Returns:
        outputs: a [`PositionOutputs`][refmem.attention.luong.PositionOutputs] `(p [B, T])`.
        cache: a [`PositionCache`][refmem.attention.luong.PositionCache].
    """
    p, cache = position(h, W_p, v_p, S)
    return PositionOutputs(p), cache


@checked(legacy=old_backward(lambda: position_backward, "position_backward(d_p, cache)",
                             "position_backward((d_p,), cache)", ("d_p", "cache"), (),
                             lambda a: ((a["d_p"],), a["cache"])))
def position_backward(d_out: PositionOutputs, cache: PositionCache) -> PositionGrads:
    """VJP of [`position_forward`][refmem.attention.luong.position_forward].

    Args:
        d_out: a [`PositionOutputs`][refmem.attention.luong.PositionOutputs] (or a 1-tuple): the
            gradient of the positions `p [B, T]` (`None`: zero).
        cache: the [`PositionCache`][refmem.attention.luong.PositionCache] of the forward.

    Returns:
        grads: a [`PositionGrads`][refmem.attention.luong.PositionGrads] `(h [B, T, H], W_p [H, A], v_p [A])`.

    Derivation: [docs/derivations/attention.md, "3. Luong attention (SPEC §3)"](../derivations/attention.md#3-luong-attention-spec-3) ("Position (local-p)")
    """
    (d_p,) = d_out
    return position_vjp(PR.zeros_if_none(d_p, cache.sig), cache)


# ----------------------------------------------------------------------------- the window


class WindowOutputs(NamedTuple):
    """The outputs of [`window_forward`][refmem.attention.luong.window_forward]."""

    inside: Mask["B T S"]
    """`|s - p_t| ≤ D`, boolean (decided on the real part; no gradient)."""
    gauss: Array["B T S"]
    """`exp(-(s - p_t)² / (2σ²))` inside the window, 0 outside."""


class WindowCache(NamedTuple):
    """What [`window_backward`][refmem.attention.luong.window_backward] needs."""

    inside: Mask["B T S"]
    """The window, boolean."""
    gauss: Array["B T S"]
    """The Gaussian, 0 outside the window."""
    offset: Array["B T S"]
    """`s - p_t`."""
    sigma: float
    """`σ = D / 2`."""


class WindowGrads(NamedTuple):
    """The gradient of [`window_forward`][refmem.attention.luong.window_forward]'s argument."""

    p: Array["B T"]
    """The gradient of the centres `p` (window membership contributes nothing)."""


def local_window(p: Any, S: int, D: int) -> tuple[Any, Any, WindowCache]:
    """The window `inside [B, T, S]` (boolean) and its Gaussian `gauss [B, T, S]` around `p`, unchecked."""
    xp = rx.namespace(p)
    sigma = D / 2.0
    pos = xp.astype(xp.arange(S), p.dtype)
    offset = pos[None, None, :] - p[:, :, None]
    inside = xp.abs(PR.real_part(offset)) <= D
    g = xp.exp(-(offset * offset) / (2.0 * sigma * sigma))
    gauss = xp.where(inside, g, xp.zeros_like(g))
    return inside, gauss, WindowCache(inside, gauss, offset, sigma)


def local_window_vjp(d_gauss: Any, cache: WindowCache) -> Any:
    """`d_p [B, T] = Σ_s d_gauss ∘ gauss ∘ (s - p_t) / σ²`, unchecked."""
    xp = rx.namespace(d_gauss)
    C = cache
    return xp.sum(d_gauss * C.gauss * C.offset, axis=-1) / (C.sigma * C.sigma)


@checked
def window_forward(p: Array["B T"], *, S: Size, D: Size) -> tuple[WindowOutputs, WindowCache]:
    """The local window around `p [B, T]` (SPEC §3, local alignments).

    `inside`: `|s - p_t| ≤ D` (decided on the real part); `gauss`: `exp(-(s - p_t)² / (2σ²))`
    with `σ = D / 2` inside the window, 0 outside.

    Args:
        p: `[B, T]`, the window centres.
        S: the number of source positions (keyword-only).
        D: the half-width of the window, `σ = D / 2` (keyword-only).

    Returns:
        outputs: a [`WindowOutputs`][refmem.attention.luong.WindowOutputs] `(inside [B, T, S], gauss [B, T, S])`;
            `inside` is boolean (no gradient).
        cache: a [`WindowCache`][refmem.attention.luong.WindowCache].
    """
    inside, gauss, cache = local_window(p, S, D)
    return WindowOutputs(inside, gauss), cache


@checked(legacy=old_backward(lambda: window_backward, "window_backward(d_gauss, cache)",
                             "window_backward((None, d_gauss), cache)", ("d_gauss", "cache"), (),
                             lambda a: ((None, a["d_gauss"]), a["cache"]), lambda g: g.p))
def window_backward(d_out: WindowOutputs, cache: WindowCache) -> WindowGrads:
    """VJP of the Gaussian of [`window_forward`][refmem.attention.luong.window_forward] in `p`: `d_p = Σ_s d_gauss ∘ gauss ∘ (s - p_t) / σ²`.

    Args:
        d_out: a [`WindowOutputs`][refmem.attention.luong.WindowOutputs] (or a 2-tuple): the
            gradients of `inside [B, T, S]` (boolean, so it has none: pass `None`; an array is
            ignored) and of `gauss [B, T, S]` (`None`: zero).
        cache: the [`WindowCache`][refmem.attention.luong.WindowCache] of the forward.

    Returns:
        grads: a [`WindowGrads`][refmem.attention.luong.WindowGrads] `(p [B, T])`; window
            membership contributes nothing.

    Derivation: [docs/derivations/attention.md, "3. Luong attention (SPEC §3)"](../derivations/attention.md#3-luong-attention-spec-3) ("Window (local)")
    """
    _, d_gauss = d_out
    if d_gauss is None:
        return WindowGrads(PR.zeros_if_none(None, cache.gauss[..., 0]))
    return WindowGrads(local_window_vjp(d_gauss, cache))


# ----------------------------------------------------------------------------- the layer


class AttentionOutputs(NamedTuple):
    """The outputs of [`attention_forward`][refmem.attention.luong.attention_forward]; without the
    `T` axis for a 2-D query `h [B, H]`."""

    a: Unit["... S"]
    """`[B, T, S]`, the alignment weights."""
    c: Array["... Hs"]
    """`[B, T, Hs]`, the contexts."""
    h_tilde: Array["... H"]
    """`[B, T, H]`, the attentional states."""
    p: Array["..."] | None = None
    """`[B, T]`, the window centres (a constant for `local_m`); `None` for `global`."""


class AttentionCache(NamedTuple):
    """What [`attention_backward`][refmem.attention.luong.attention_backward] needs."""

    score: str
    """The score."""
    alignment: str
    """The alignment."""
    query: Array["... H"]
    """`h` as given, `[B, H]` or `[B, T, H]`."""
    h: Array["B T H"]
    """The queries with the `T` axis."""
    hs: Array["B S Hs"]
    """The source states."""
    params: LuongParams
    """The parameters."""
    score_cache: ScoreCache
    """The cache of [`scores`][refmem.attention.luong.scores]."""
    scores: Array["B T S"]
    """The scores."""
    soft: Array["B T S"]
    """The softmax over the window (over every position for `global`)."""
    window: WindowCache | None
    """The window's cache, `None` for `global`."""
    position: PositionCache | None
    """The position's cache, `None` unless `local_p`."""
    a: Array["B T S"]
    """The alignment weights."""
    ch: Array["B T HsH"]
    """`[c ; h]`."""
    h_tilde: Array["B T H"]
    """The attentional states."""

    @property
    def single(self) -> bool:
        """Whether `h` was one query `[B, H]`."""
        return self.query.ndim == 2


class AttentionGrads(NamedTuple):
    """The gradients of [`attention_forward`][refmem.attention.luong.attention_forward]'s arguments."""

    h: Array["... H"]
    """The gradient of `h`, of its shape."""
    hs: Array["B S Hs"]
    """The gradient of `hs`."""
    params: LuongParams
    """The gradients of the parameters, `None` where unused."""


LuongOutput = AttentionOutputs
"""The 0.1 name of [`AttentionOutputs`][refmem.attention.luong.AttentionOutputs] (a deprecated alias)."""
LuongCache = AttentionCache
"""The 0.1 name of [`AttentionCache`][refmem.attention.luong.AttentionCache] (a deprecated alias)."""
LuongGrads = AttentionGrads
"""The 0.1 name of [`AttentionGrads`][refmem.attention.luong.AttentionGrads] (a deprecated alias)."""


def attention(h: Any, hs: Any, params: LuongParams, score: str = "general", alignment: str = "global",
              window: int = 2, t0: int = 0) -> tuple[AttentionOutputs, AttentionCache]:
    """Luong attention (SPEC §3), unchecked; `h` is `[B, H]` or `[B, T, H]`."""
    query = h
    B, S, Hs = (int(d) for d in hs.shape)
    single = h.ndim == 2
    if single:
        h = h[:, None, :]
    T = int(h.shape[1])
    xp = rx.namespace(h, hs)
    sc, sc_cache = scores(h, hs, params.W_a, params.v_a, score)
    pos_cache = win = p = None
    if alignment == "global":
        soft = PR.softmax(sc, axis=-1)
        a = soft
    else:
        if alignment == "local_m":
            p = xp.broadcast_to(xp.astype(xp.arange(T), h.dtype)[None, :] + t0, (B, T))
        else:
            p, pos_cache = position(h, params.W_p, params.v_p, S)
        inside, gauss, win = local_window(p, S, int(window))
        soft = masked_softmax(sc, inside)
        a = soft * gauss
    c = a @ hs  # [B, T, Hs]
    ch = xp.concat([c, h], axis=-1)
    h_tilde = xp.tanh(ch @ params.W_c)
    cache = AttentionCache(score, alignment, query, h, hs, params, sc_cache, sc, soft, win, pos_cache, a, ch, h_tilde)
    if single:
        return AttentionOutputs(a[:, 0], c[:, 0], h_tilde[:, 0], None if p is None else p[:, 0]), cache
    return AttentionOutputs(a, c, h_tilde, p), cache


def attention_vjp(d_a: Any, d_c: Any, d_h_tilde: Any, d_p: Any, cache: AttentionCache) -> AttentionGrads:
    """The gradients of [`attention`][refmem.attention.luong.attention] from those of its outputs
    `a`, `c`, `h_tilde`, `p` (each may be `None`, zero; `p`'s is used by `local_p` only),
    unchecked. `docs/derivations/attention.md` §3 derives it."""
    C = cache
    P = C.params
    xp = rx.namespace(C.h, C.hs)
    Hs = int(C.hs.shape[-1])
    if C.single:
        d_a, d_c, d_h_tilde, d_p = (None if d is None else d[:, None, ...] for d in (d_a, d_c, d_h_tilde, d_p))
    d_a = xp.zeros_like(C.a) if d_a is None else d_a
    d_h = xp.zeros_like(C.h)
    d_hs = xp.zeros_like(C.hs)
    d_W_c = xp.zeros_like(P.W_c)
    # h~ = tanh([c ; h] @ W_c)
    if d_h_tilde is not None:
        d_pre = d_h_tilde * (1.0 - C.h_tilde * C.h_tilde)
        d_W_c = _flat_outer(C.ch, d_pre)
        d_ch = d_pre @ P.W_c.mT
        d_c = d_ch[..., :Hs] if d_c is None else d_c + d_ch[..., :Hs]
        d_h = d_h + d_ch[..., Hs:]
    # c = a @ hs
    if d_c is not None:
        d_a = d_a + d_c @ C.hs.mT
        d_hs = d_hs + C.a.mT @ d_c
    # a = soft ∘ gauss (local) or a = soft (global)
    g_W_p = g_v_p = None
    if C.window is None:
        d_soft = d_a
    else:
        d_soft = d_a * C.window.gauss
        if C.alignment == "local_p":
            d_pos = local_window_vjp(d_a * C.soft, C.window)
            if d_p is not None:
                d_pos = d_pos + d_p
            g_pos = position_vjp(d_pos, C.position)
            d_h = d_h + g_pos.h
            g_W_p, g_v_p = g_pos.W_p, g_pos.v_p
    d_score = PR.softmax_vjp(d_soft, C.soft, -1)
    g_score = scores_vjp(d_score, C.score_cache)
    d_h = d_h + g_score.h
    d_hs = d_hs + g_score.hs
    if C.single:
        d_h = d_h[:, 0, :]
    return AttentionGrads(d_h, d_hs, LuongParams(W_c=d_W_c, W_a=g_score.W_a, v_a=g_score.v_a, W_p=g_W_p, v_p=g_v_p))


@checked
def attention_forward(h: Array["... H"], hs: Array["B S Hs"], params: LuongParams, *, score: Score = "general",
                      alignment: Alignment = "global", window: Size = 2,
                      t0: int = 0) -> tuple[AttentionOutputs, AttentionCache]:
    """Luong attention (SPEC §3) for queries `h [B, H]` or `[B, T, H]` over `hs [B, S, Hs]`.

    Args:
        h: `[B, H]` (one query) or `[B, T, H]`.
        hs: `[B, S, Hs]`, the source states.
        params: the [`LuongParams`][refmem.attention.luong.LuongParams] holding what the score
            and the alignment use.
        score: `"dot"`, `"general"`, `"concat"` or `"location"` (keyword-only).
        alignment: `"global"`, `"local_m"` or `"local_p"` (keyword-only).
        window: the half-width `D` of the local window, `σ = D / 2` (keyword-only).
        t0: `local_m` only: the decoder step of the first query, `p_t = t0 + t` (an integer
            `>= 0`, keyword-only).

    Returns:
        outputs: an [`AttentionOutputs`][refmem.attention.luong.AttentionOutputs] `(a [B, T, S], c [B, T, Hs], h_tilde [B, T, H], p [B, T])`,
            without the `T` axis for a 2-D `h`; `p` is `None` for `global`.
        cache: an [`AttentionCache`][refmem.attention.luong.AttentionCache].

    Raises:
        refmem.errors.ShapeError: an argument or parameter of the wrong shape for the options.
        refmem.errors.DomainError: an unknown option, `t0 < 0`, or finite inputs whose scores
            overflow the dtype.
    """
    if alignment != "global" and t0 < 0:
        raise DomainError(f"t0: expected an integer >= 0, got {t0!r}")
    if h.ndim not in (2, 3) or int(h.shape[0]) != int(hs.shape[0]):
        raise ShapeError(f"h: expected shape (B, H) or (B, T, H) with B = {int(hs.shape[0])} (from hs), "
                         f"got {tuple(int(d) for d in h.shape)}")
    _check_option_shapes(h, hs, *params, score, alignment)
    with quiet_overflow():
        out, cache = attention(h, hs, params, score, alignment, window, t0)
    refuse_overflow(cache.scores, _score_inputs(score, "params."), f"{score} scores")
    refuse_overflow(cache.h_tilde, "h, hs, params.W_c", "the attentional states' pre-activation [c ; h] @ W_c",
                    "h_tilde")
    return out, cache


@checked(legacy=old_backward(lambda: attention_backward, "attention_backward(d_a, d_c, d_h_tilde, cache, d_p=None)",
                             "attention_backward(AttentionOutputs(a=d_a, c=d_c, h_tilde=d_h_tilde, p=d_p), cache)",
                             ("d_a", "d_c", "d_h_tilde", "cache"), ("d_p",),
                             lambda a: (AttentionOutputs(a["d_a"], a["d_c"], a["d_h_tilde"], a["d_p"]), a["cache"])))
def attention_backward(d_out: AttentionOutputs, cache: AttentionCache) -> AttentionGrads:
    """VJP of [`attention_forward`][refmem.attention.luong.attention_forward].

    Args:
        d_out: an [`AttentionOutputs`][refmem.attention.luong.AttentionOutputs] (or a tuple in its
            order) of the upstream gradients of `a [B, T, S]`, `c [B, T, Hs]`, `h_tilde [B, T, H]`
            and `p [B, T]` (without `T` for a 2-D `h`); each may be `None` (zero). The gradient of
            `p` is used by `local_p` only (elsewhere `p` depends on no argument).
        cache: the [`AttentionCache`][refmem.attention.luong.AttentionCache] of the forward.

    Returns:
        grads: an [`AttentionGrads`][refmem.attention.luong.AttentionGrads] `(h, hs [B, S, Hs], params)`;
            `h` has the shape of the given `h`, `params` is a
            [`LuongParams`][refmem.attention.luong.LuongParams] of gradients (`None` where unused).

    Derivation: [docs/derivations/attention.md, "3. Luong attention (SPEC §3)"](../derivations/attention.md#3-luong-attention-spec-3)
    """
    d_a, d_c, d_h_tilde, d_p = d_out
    return attention_vjp(d_a, d_c, d_h_tilde, d_p, cache)
