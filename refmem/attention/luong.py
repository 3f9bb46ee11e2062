"""SPEC §3: Luong attention (Luong, Pham & Manning 2015), forward and backward.

A decoder state ``h_t [B, H]`` (or a sequence of them ``[B, T, H]``; ``T`` plays
SPEC's ``T'``) attends over source states ``hs [B, S, Hs]``.

Scores (:data:`SCORES`), one per query ``t`` and source position ``s``:

* ``dot``:      ``h_t · hs_s`` (needs ``H = Hs``);
* ``general``:  ``(h_t @ W_a) · hs_s`` with ``W_a [H, Hs]``;
* ``concat``:   ``v_a · tanh([h_t ; hs_s] @ W_a)`` with ``W_a [H + Hs, A]``, ``v_a [A]``;
* ``location``: ``h_t @ W_a`` with ``W_a [H, S]`` (the source states do not enter).

Alignments (:data:`ALIGNMENTS`):

* ``global``:  ``a_t = softmax_s(score_t)``;
* ``local_m``: ``p_t = t``; ``local_p``: ``p_t = S · σ(tanh(h_t @ W_p) · v_p)``, ``W_p [H, A]``,
  ``v_p [A]``. The window holds the positions with ``|s - p_t| ≤ D`` and
  ``a_t(s) = softmax over the window(score_t)(s) · exp(-(s - p_t)² / (2σ²))``,
  ``σ = D / 2``, with no renormalisation after the Gaussian; outside the window
  ``a_t(s) = 0``. The gradient reaches ``p_t`` through the Gaussian (window
  membership is piecewise constant in ``p_t``: its edges are the kinks).

Then ``c_t = Σ_s a_t(s) hs_s`` and the attentional state
``h~_t = tanh([c_t ; h_t] @ W_c)``, ``W_c [Hs + H, H]``.

Source positions are 0-based (``s = 0 .. S-1``), so for ``local_m`` the query
``t`` (0-based) sits at ``p_t = t0 + t``. Public pairs: :func:`score_forward` /
:func:`score_backward`, :func:`position_forward` / :func:`position_backward`,
:func:`window_forward` / :func:`window_backward`, and the whole layer
:func:`attention_forward` / :func:`attention_backward`.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from .. import primitives as PR
from .. import xp as rx
from ..errors import ShapeError
from ..sampling import Sampler
from ..errors import DomainError
from ..validation import check_arrays, check_size, checked_by, spec_from_symbols
from .bahdanau import attention_weights, attention_weights_backward

__all__ = [
    "SCORES",
    "ALIGNMENTS",
    "LuongParams",
    "LuongOutput",
    "LuongCache",
    "LuongGrads",
    "ScoreCache",
    "PositionCache",
    "WindowCache",
    "param_shapes",
    "init_params",
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
ALIGNMENTS = ("global", "local_m", "local_p")


class LuongParams(NamedTuple):
    """Parameters of SPEC §3 (``None`` where the score or alignment does not use one).

    ``W_a``: ``general`` ``[H, Hs]``, ``concat`` ``[H + Hs, A]``, ``location`` ``[H, S]``,
    ``dot`` ``None``. ``v_a [A]``: ``concat`` only. ``W_c [Hs + H, H]``: always.
    ``W_p [H, A]``, ``v_p [A]``: ``local_p`` only. The same type holds gradients.
    """

    W_c: Any
    W_a: Any = None
    v_a: Any = None
    W_p: Any = None
    v_p: Any = None


def param_shapes(score: str, alignment: str, H: int, Hs: int, S: int, A: int) -> dict[str, tuple[tuple[int, ...], str]]:
    """The parameters a ``(score, alignment)`` pair uses, with shapes and their SPEC spelling."""
    _check_choice(score, alignment)
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


def init_params(xp: Any, score: str, alignment: str, H: int, Hs: int, S: int = 0, A: int = 0,
                seed: int = 0) -> LuongParams:
    """Glorot-uniform matrices and vectors (Keras 2 fans) for a ``(score, alignment)`` pair.

    ``S`` is needed by the ``location`` score, ``A`` by ``concat`` and ``local_p``.
    """
    H, Hs = check_size("H", H), check_size("Hs", Hs)
    shapes = param_shapes(score, alignment, H, Hs, S, A)
    for name, (_, symbols) in shapes.items():
        for letter, value in (("S", S), ("A", A)):
            if letter in symbols.replace("Hs", ""):
                check_size(letter, value)
    s = Sampler(xp, check_size("seed", seed, 0))
    values = {}
    for name, (shape, _) in shapes.items():
        if len(shape) == 2:
            fan_in, fan_out = shape
        else:
            fan_in = fan_out = shape[0] ** 0.5
        limit = (6.0 / (fan_in + fan_out)) ** 0.5
        values[name] = s.uniform(shape, -limit, limit)
    return LuongParams(**values)


def _check_choice(score: str, alignment: str) -> None:
    if score not in SCORES:
        raise DomainError(f"score: expected one of {SCORES}, got {score!r}")
    if alignment not in ALIGNMENTS:
        raise DomainError(f"alignment: expected one of {ALIGNMENTS}, got {alignment!r}")


def _flat_outer(x: Any, d: Any) -> Any:
    """``Σ_batch xᵀ d`` for ``x [..., I]`` and ``d [..., O]``: the gradient of ``W`` in ``x @ W``."""
    xp = rx.namespace(x, d)
    return PR.transpose_last(xp.reshape(x, (-1, x.shape[-1]))) @ xp.reshape(d, (-1, d.shape[-1]))


# ----------------------------------------------------------------------------- scores


class ScoreCache(NamedTuple):
    """``score``: the kind; ``h [B, T, H]``, ``hs [B, S, Hs]``; ``W_a``, ``v_a`` (or ``None``);
    ``hw [B, T, Hs]`` (``general``: ``h @ W_a``); ``u [B, T, S, A]`` (``concat``: the tanh)."""

    score: str
    h: Any
    hs: Any
    W_a: Any
    v_a: Any
    hw: Any
    u: Any


def _check_score(score: str, h: Any, hs: Any, W_a: Any = None, v_a: Any = None) -> None:
    _check_choice(score, "global")
    specs = {"h": "B T H", "hs": "B S Hs"}
    for name, (_, symbols) in param_shapes(score, "global", 1, 1, 1, 1).items():
        if name != "W_c":
            specs[name] = spec_from_symbols(symbols)
    if score == "dot":
        specs["hs"] = "B S H"
    check_arrays({"h": h, "hs": hs, "W_a": W_a, "v_a": v_a}, specs)


@checked_by(_check_score)
def score_forward(score: str, h: Any, hs: Any, W_a: Any = None, v_a: Any = None) -> tuple[Any, ScoreCache]:
    """SPEC §3 scores of every query ``h [B, T, H]`` against every source ``hs [B, S, Hs]``.

    Args:
        score: ``"dot"``, ``"general"``, ``"concat"`` or ``"location"`` (:data:`SCORES`).
        h: ``[B, T, H]``, the queries.
        hs: ``[B, S, Hs]``, the source states (``Hs = H`` for ``dot``).
        W_a: ``general`` ``[H, Hs]``, ``concat`` ``[H + Hs, A]``, ``location`` ``[H, S]``, ``dot`` ``None``.
        v_a: ``concat`` ``[A]``, otherwise ``None``.

    Returns:
        ``score [B, T, S]`` and a :class:`ScoreCache`.
    """
    xp = rx.namespace(h, hs)
    H = int(h.shape[-1])
    hw = u = None
    if score == "dot":
        out = h @ PR.transpose_last(hs)
    elif score == "general":
        hw = h @ W_a
        out = hw @ PR.transpose_last(hs)
    elif score == "concat":
        q = h @ W_a[:H, :]  # [B, T, A]
        k = hs @ W_a[H:, :]  # [B, S, A]
        u = xp.tanh(q[:, :, None, :] + k[:, None, :, :])  # [B, T, S, A]
        out = xp.sum(u * v_a, axis=-1)
    elif score == "location":
        out = h @ W_a
    else:
        raise DomainError(f"score: expected one of {SCORES}, got {score!r}")
    return out, ScoreCache(score, h, hs, W_a, v_a, hw, u)


def _check_score_backward(d_score: Any, cache: Any) -> None:
    if not isinstance(cache, ScoreCache):
        raise TypeError(f"cache: expected the ScoreCache of score_forward, got {type(cache).__name__}")
    check_arrays({"the forward's h": cache.h, "the forward's hs": cache.hs, "d_score": d_score},
                 {"the forward's h": "B T H", "the forward's hs": "B S Hs", "d_score": "B T S"})


@checked_by(_check_score_backward)
def score_backward(d_score: Any, cache: ScoreCache) -> tuple[Any, Any, Any, Any]:
    """VJP of :func:`score_forward`: ``(d_h, d_hs, d_W_a, d_v_a)`` (``None`` for an unused parameter).

    Args:
        d_score: ``[B, T, S]``, the gradient of the scores (not ``None``).
        cache: the :class:`ScoreCache` of :func:`score_forward`.

    Returns:
        d_h: ``[B, T, H]``.
        d_hs: ``[B, S, Hs]`` (zeros for ``location``, whose score does not read ``hs``).
        d_W_a: the shape of ``W_a``, or ``None`` for ``dot``.
        d_v_a: ``[A]`` for ``concat``, otherwise ``None``.

    Derivation: [docs/derivations/attention.md, "3. Luong attention (SPEC §3)"](../derivations/attention.md#3-luong-attention-spec-3) ("Scores")
    """
    xp = rx.namespace(d_score)
    C = cache
    H = int(C.h.shape[-1])
    if C.score == "dot":
        return d_score @ C.hs, PR.transpose_last(d_score) @ C.h, None, None
    if C.score == "general":
        d_hw = d_score @ C.hs  # [B, T, Hs]
        return d_hw @ PR.transpose_last(C.W_a), PR.transpose_last(d_score) @ C.hw, _flat_outer(C.h, d_hw), None
    if C.score == "concat":
        d_v_a = xp.sum(xp.reshape(d_score[..., None] * C.u, (-1, C.u.shape[-1])), axis=0)
        d_pre = (d_score[..., None] * C.v_a) * (1.0 - C.u * C.u)  # [B, T, S, A]
        d_q = xp.sum(d_pre, axis=2)  # [B, T, A]
        d_k = xp.sum(d_pre, axis=1)  # [B, S, A]
        d_W_a = xp.concat([_flat_outer(C.h, d_q), _flat_outer(C.hs, d_k)], axis=0)
        return d_q @ PR.transpose_last(C.W_a[:H, :]), d_k @ PR.transpose_last(C.W_a[H:, :]), d_W_a, d_v_a
    # location
    return d_score @ PR.transpose_last(C.W_a), xp.zeros_like(C.hs), _flat_outer(C.h, d_score), None


# ----------------------------------------------------------------------------- local-p position


class PositionCache(NamedTuple):
    """``h [B, T, H]``, ``u [B, T, A]`` (``tanh(h @ W_p)``), ``sig [B, T]`` (``σ(u · v_p)``),
    ``S``, ``W_p [H, A]``, ``v_p [A]``."""

    h: Any
    u: Any
    sig: Any
    S: int
    W_p: Any
    v_p: Any


def _check_position(h: Any, W_p: Any, v_p: Any, S: int) -> None:
    check_size("S", S)
    check_arrays({"h": h, "W_p": W_p, "v_p": v_p}, {"h": "B T H", "W_p": "H A", "v_p": "A"})


@checked_by(_check_position)
def position_forward(h: Any, W_p: Any, v_p: Any, S: int) -> tuple[Any, PositionCache]:
    """Local-p's predicted position ``p_t = S · σ(tanh(h_t @ W_p) · v_p)`` (SPEC §3), shape ``[B, T]``.

    Args:
        h: ``[B, T, H]``, the queries.
        W_p: ``[H, A]``.
        v_p: ``[A]``.
        S: the number of source positions.

    Returns:
        ``p [B, T]`` and a :class:`PositionCache`.
    """
    xp = rx.namespace(h, W_p, v_p)
    u = xp.tanh(h @ W_p)
    sig = PR.sigmoid(xp.sum(u * v_p, axis=-1))
    return S * sig, PositionCache(h, u, sig, S, W_p, v_p)


def _check_position_backward(d_p: Any, cache: Any) -> None:
    if not isinstance(cache, PositionCache):
        raise TypeError(f"cache: expected the PositionCache of position_forward, got {type(cache).__name__}")
    check_arrays({"the forward's h": cache.h, "d_p": d_p}, {"the forward's h": "B T H", "d_p": "B T"})


@checked_by(_check_position_backward)
def position_backward(d_p: Any, cache: PositionCache) -> tuple[Any, Any, Any]:
    """VJP of :func:`position_forward`: ``(d_h, d_W_p, d_v_p)``.

    Args:
        d_p: ``[B, T]``, the gradient of the positions ``p`` (not ``None``).
        cache: the :class:`PositionCache` of :func:`position_forward`.

    Returns:
        d_h: ``[B, T, H]``.
        d_W_p: ``[H, A]``.
        d_v_p: ``[A]``.

    Derivation: [docs/derivations/attention.md, "3. Luong attention (SPEC §3)"](../derivations/attention.md#3-luong-attention-spec-3) ("Position (local-p)")
    """
    xp = rx.namespace(d_p)
    C = cache
    d_q = d_p * C.S * C.sig * (1.0 - C.sig)  # [B, T]
    d_v_p = xp.sum(xp.reshape(d_q[..., None] * C.u, (-1, C.u.shape[-1])), axis=0)
    d_pre = (d_q[..., None] * C.v_p) * (1.0 - C.u * C.u)  # [B, T, A]
    return d_pre @ PR.transpose_last(C.W_p), _flat_outer(C.h, d_pre), d_v_p


# ----------------------------------------------------------------------------- the window


class WindowCache(NamedTuple):
    """``inside [B, T, S]`` (bool, ``|s - p_t| ≤ D``), ``gauss [B, T, S]`` (0 outside),
    ``offset [B, T, S]`` (``s - p_t``), ``sigma``."""

    inside: Any
    gauss: Any
    offset: Any
    sigma: float


def _check_window(p: Any, S: int, D: int) -> None:
    check_size("S", S)
    check_size("D", D)
    check_arrays({"p": p}, {"p": "B T"})


@checked_by(_check_window)
def window_forward(p: Any, S: int, D: int) -> tuple[tuple[Any, Any], WindowCache]:
    """The local window around ``p [B, T]``: ``(inside, gauss)``, both ``[B, T, S]``.

    ``inside``: ``|s - p_t| ≤ D`` (decided on the real part); ``gauss``:
    ``exp(-(s - p_t)² / (2σ²))`` with ``σ = D / 2`` inside the window, 0 outside (SPEC §3, local).

    Args:
        p: ``[B, T]``, the window centres.
        S: the number of source positions.
        D: the half-width of the window (``σ = D / 2``).

    Returns:
        ``(inside [B, T, S], gauss [B, T, S])`` and a :class:`WindowCache`; ``inside`` is
            boolean (no gradient), so :func:`window_backward` takes the gradient of ``gauss`` only.
    """
    xp = rx.namespace(p)
    sigma = D / 2.0
    pos = xp.astype(xp.arange(S), p.dtype)
    offset = pos[None, None, :] - p[:, :, None]
    inside = xp.abs(PR.real_part(offset)) <= D
    g = xp.exp(-(offset * offset) / (2.0 * sigma * sigma))
    gauss = xp.where(inside, g, xp.zeros_like(g))
    return (inside, gauss), WindowCache(inside, gauss, offset, sigma)


def _check_window_backward(d_gauss: Any, cache: Any) -> None:
    if not isinstance(cache, WindowCache):
        raise TypeError(f"cache: expected the WindowCache of window_forward, got {type(cache).__name__}")
    check_arrays({"the forward's gauss": cache.gauss, "d_gauss": d_gauss},
                 {"the forward's gauss": "B T S", "d_gauss": "B T S"})


@checked_by(_check_window_backward)
def window_backward(d_gauss: Any, cache: WindowCache) -> Any:
    """VJP of the Gaussian in ``p``: ``d_p = Σ_s d_gauss ∘ gauss ∘ (s - p_t) / σ²``.

    Args:
        d_gauss: ``[B, T, S]``, the gradient of ``gauss`` (not ``None``; ``inside`` has none).
        cache: the :class:`WindowCache` of :func:`window_forward`.

    Returns:
        d_p: ``[B, T]``, the gradient of the centres ``p`` (window membership contributes nothing).

    Derivation: [docs/derivations/attention.md, "3. Luong attention (SPEC §3)"](../derivations/attention.md#3-luong-attention-spec-3) ("Window (local)")
    """
    xp = rx.namespace(d_gauss)
    C = cache
    return xp.sum(d_gauss * C.gauss * C.offset, axis=-1) / (C.sigma * C.sigma)


# ----------------------------------------------------------------------------- the layer


class LuongOutput(NamedTuple):
    """``a [B, T, S]`` (alignment weights), ``c [B, T, Hs]`` (context), ``h_tilde [B, T, H]``
    (attentional state), ``p [B, T]`` (window centres; ``None`` for global). A 2-D query
    ``h [B, H]`` gives the same without the ``T`` axis."""

    a: Any
    c: Any
    h_tilde: Any
    p: Any


class LuongCache(NamedTuple):
    """``score``/``alignment``: the choices; ``single``: whether ``h`` was ``[B, H]``;
    ``h [B, T, H]``, ``hs [B, S, Hs]``; ``params``; ``score_cache``; ``soft [B, T, S]``
    (the softmax over the window); ``window``: a :class:`WindowCache` or ``None``;
    ``position``: a :class:`PositionCache` or ``None``; ``a [B, T, S]``; ``ch [B, T, Hs + H]``
    (``[c ; h]``); ``h_tilde [B, T, H]``."""

    score: str
    alignment: str
    single: bool
    h: Any
    hs: Any
    params: LuongParams
    score_cache: ScoreCache
    soft: Any
    window: Any
    position: Any
    a: Any
    ch: Any
    h_tilde: Any


class LuongGrads(NamedTuple):
    """``h`` (shape of the given ``h``), ``hs [B, S, Hs]``, ``params``: a :class:`LuongParams`
    of gradients (``None`` where unused)."""

    h: Any
    hs: Any
    params: LuongParams


def _check_attention(h: Any, hs: Any, params: Any, score: str = "general", alignment: str = "global",
                     window: int = 2, t0: int = 0) -> None:
    _check_choice(score, alignment)
    if not isinstance(params, LuongParams):
        raise TypeError(f"params: expected LuongParams, got {type(params).__name__}")
    if alignment != "global":
        check_size("window", window)
        if isinstance(t0, bool) or not isinstance(t0, int) or t0 < 0:
            raise DomainError(f"t0: expected an integer >= 0, got {t0!r}")
    arrays, specs = {}, {}  # the parameters first: the inputs are measured against them
    for name, (_, symbols) in param_shapes(score, alignment, 1, 1, 1, 1).items():
        arrays[f"params.{name}"] = getattr(params, name)
        specs[f"params.{name}"] = spec_from_symbols(symbols)
    arrays.update({"hs": hs, "h": h})
    specs.update({"hs": "B S Hs", "h": "B H" if getattr(h, "ndim", 0) == 2 else "B T H"})
    sizes = {"Hs": int(hs.shape[-1])} if score == "dot" and hasattr(hs, "shape") and len(hs.shape) == 3 else {}
    if score == "dot" and hasattr(h, "shape") and sizes and int(h.shape[-1]) != sizes["Hs"]:
        raise ShapeError(f"hs: the dot score needs Hs = H = {int(h.shape[-1])}, got hs of shape {tuple(hs.shape)}")
    check_arrays(arrays, specs)


@checked_by(_check_attention)
def attention_forward(
    h: Any,
    hs: Any,
    params: LuongParams,
    score: str = "general",
    alignment: str = "global",
    window: int = 2,
    t0: int = 0,
) -> tuple[LuongOutput, LuongCache]:
    """Luong attention (SPEC §3) for queries ``h [B, H]`` or ``[B, T, H]`` over ``hs [B, S, Hs]``.

    Args:
        h: ``[B, H]`` (one query) or ``[B, T, H]``.
        hs: ``[B, S, Hs]``, the source states.
        params: :class:`LuongParams` holding what the score and alignment use.
        score: ``"dot"``, ``"general"``, ``"concat"`` or ``"location"``.
        alignment: ``"global"``, ``"local_m"`` or ``"local_p"``.
        window: the half-width ``D`` of the local window (``σ = D / 2``).
        t0: ``local_m`` only: the decoder step of the first query (``p_t = t0 + t``).
    Returns:
        The outputs, a :class:`LuongOutput`, and a :class:`LuongCache`.
    """
    B, S, Hs = (int(d) for d in hs.shape)
    single = h.ndim == 2
    if single:
        h = h[:, None, :]
    T = int(h.shape[1])
    xp = rx.namespace(h, hs)
    sc, sc_cache = score_forward.unchecked(score, h, hs, params.W_a, params.v_a)
    position = win = p = None
    if alignment == "global":
        soft = attention_weights.unchecked(sc)
        a = soft
    else:
        if alignment == "local_m":
            p = xp.broadcast_to(xp.astype(xp.arange(T), h.dtype)[None, :] + t0, (B, T))
        else:
            p, position = position_forward.unchecked(h, params.W_p, params.v_p, S)
        (inside, gauss), win = window_forward.unchecked(p, S, int(window))
        soft = attention_weights.unchecked(sc, inside)
        a = soft * gauss
    c = a @ hs  # [B, T, Hs]
    ch = xp.concat([c, h], axis=-1)
    h_tilde = xp.tanh(ch @ params.W_c)
    cache = LuongCache(score, alignment, single, h, hs, params, sc_cache, soft, win, position, a, ch, h_tilde)
    out = LuongOutput(a, c, h_tilde, p)
    if single:
        out = LuongOutput(*(None if v is None else v[:, 0, ...] for v in out))
    return out, cache


def _check_attention_backward(d_a: Any, d_c: Any, d_h_tilde: Any, cache: Any, d_p: Any = None) -> None:
    if not isinstance(cache, LuongCache):
        raise TypeError(f"cache: expected the LuongCache of attention_forward, got {type(cache).__name__}")
    lead = "B" if cache.single else "B T"
    check_arrays({"the forward's h": cache.h, "the forward's hs": cache.hs, "d_a": d_a, "d_c": d_c,
                  "d_h_tilde": d_h_tilde, "d_p": d_p},
                 {"the forward's h": "B T H", "the forward's hs": "B S Hs", "d_a": f"?{lead} S",
                  "d_c": f"?{lead} Hs", "d_h_tilde": f"?{lead} H", "d_p": f"?{lead}"})


@checked_by(_check_attention_backward)
def attention_backward(
    d_a: Any | None,
    d_c: Any | None,
    d_h_tilde: Any | None,
    cache: LuongCache,
    d_p: Any | None = None,
) -> LuongGrads:
    """VJP of :func:`attention_forward`; each upstream gradient may be ``None`` (zero).

    The gradients have the shapes of the forward's outputs (without ``T`` for a 2-D ``h``).
    ``d_p`` (the gradient of the returned window centres) is used by ``local_p`` only.

    Args:
        d_a: ``[B, T, S]`` or ``None`` (zero), the gradient of the alignment weights ``a``.
        d_c: ``[B, T, Hs]`` or ``None`` (zero), the gradient of the contexts ``c``.
        d_h_tilde: ``[B, T, H]`` or ``None`` (zero), the gradient of the attentional states.
        cache: the :class:`LuongCache` of :func:`attention_forward`.
        d_p: ``[B, T]`` or ``None`` (zero), the gradient of the window centres ``p``
            (an extra output, so a keyword after the cache; ``local_p`` only).

    Returns:
        The gradients, a :class:`LuongGrads` with fields ``h`` (the shape of the given ``h``), ``hs [B, S, Hs]`` and
            ``params``, a :class:`LuongParams` of gradients (``None`` where unused).

    Derivation: [docs/derivations/attention.md, "3. Luong attention (SPEC §3)"](../derivations/attention.md#3-luong-attention-spec-3)
    """
    C = cache
    P = C.params
    xp = rx.namespace(C.h, C.hs)
    Hs = int(C.hs.shape[-1])

    def lift(d):
        return None if d is None else (d[:, None, ...] if C.single else d)

    d_a, d_c, d_h_tilde, d_p = lift(d_a), lift(d_c), lift(d_h_tilde), lift(d_p)
    d_a = xp.zeros_like(C.a) if d_a is None else d_a
    d_h = xp.zeros_like(C.h)
    d_hs = xp.zeros_like(C.hs)
    d_W_c = xp.zeros_like(P.W_c)
    # h~ = tanh([c ; h] @ W_c)
    if d_h_tilde is not None:
        d_pre = d_h_tilde * (1.0 - C.h_tilde * C.h_tilde)
        d_W_c = _flat_outer(C.ch, d_pre)
        d_ch = d_pre @ PR.transpose_last(P.W_c)
        d_c = d_ch[..., :Hs] if d_c is None else d_c + d_ch[..., :Hs]
        d_h = d_h + d_ch[..., Hs:]
    # c = a @ hs
    if d_c is not None:
        d_a = d_a + d_c @ PR.transpose_last(C.hs)
        d_hs = d_hs + PR.transpose_last(C.a) @ d_c
    # a = soft ∘ gauss (local) or a = soft (global)
    g_W_p = g_v_p = None
    if C.window is None:
        d_soft = d_a
    else:
        d_soft = d_a * C.window.gauss
        if C.alignment == "local_p":
            d_pos = window_backward.unchecked(d_a * C.soft, C.window)
            if d_p is not None:
                d_pos = d_pos + d_p
            dh_p, g_W_p, g_v_p = position_backward.unchecked(d_pos, C.position)
            d_h = d_h + dh_p
    d_score = attention_weights_backward.unchecked(d_soft, C.soft)
    dh_s, dhs_s, g_W_a, g_v_a = score_backward.unchecked(d_score, C.score_cache)
    d_h = d_h + dh_s
    d_hs = d_hs + dhs_s
    if C.single:
        d_h = d_h[:, 0, :]
    return LuongGrads(d_h, d_hs, LuongParams(W_c=d_W_c, W_a=g_W_a, v_a=g_v_a, W_p=g_W_p, v_p=g_v_p))
