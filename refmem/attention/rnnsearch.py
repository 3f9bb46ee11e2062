"""SPEC §7: RNNsearch, the model of Bahdanau, Cho & Bengio (2015) as its appendix A writes it.

A bidirectional GRU encoder over embedded source tokens gives the annotations
``h_j = [→h_j ; ←h_j]``; the decoder starts from ``s_0 = tanh(←h_1 W_s + b_s)`` and at every
target step ``i`` aligns ``s_{i-1}`` with the annotations (``e_ij = v_a · tanh(s_{i-1} W_a + h_j U_a
+ b_a)``, the keys ``h_j U_a + b_a`` computed once per sequence), reads the context ``c_i``, updates
its gated unit from ``[E_y y_{i-1} ; c_i]`` and scores the next word with the deep output
``t̃_i = s_{i-1} U_o + E_y y_{i-1} V_o + c_i C_o + b_o``, a maxout over adjacent pairs and
``log softmax(t_i W_o + b_y)``. Under teacher forcing the log-likelihood of the reference
target is ``Σ_i m_i log p(y_i)`` (returned per position ``i``).

Every equation is a forward/backward pair of the project's rule (docs/conventions.md):
``out, cache = f_forward(...)`` returns a NamedTuple of outputs and a cache, and
``grads = f_backward(d_out, cache)`` takes the gradients of the outputs (a NamedTuple or tuple of
the same fields, ``None`` meaning zero) and returns one NamedTuple of the gradients of the
forward's differentiable arguments. Tokens and masks are not differentiated.

* [`embedding_forward`][refmem.attention.rnnsearch.embedding_forward]: ``E[y]``;
* [`gru_cell_forward`][refmem.attention.rnnsearch.gru_cell_forward]: the gated unit (reset gate
  before ``U``), with an optional step mask that carries the state;
* [`encoder_forward`][refmem.attention.rnnsearch.encoder_forward]: the bidirectional encoder;
* [`initial_state_forward`][refmem.attention.rnnsearch.initial_state_forward]: ``s_0``;
* [`alignment_forward`][refmem.attention.rnnsearch.alignment_forward]: energies, weights, context;
* [`maxout_forward`][refmem.attention.rnnsearch.maxout_forward]: the pairwise maximum;
* [`deep_output_forward`][refmem.attention.rnnsearch.deep_output_forward]: ``log p(y_i | ...)``;
* [`decoder_step_forward`][refmem.attention.rnnsearch.decoder_step_forward] and
  [`decoder_forward`][refmem.attention.rnnsearch.decoder_forward]: one step and the unroll
  (backpropagation through time);
* [`rnnsearch_forward`][refmem.attention.rnnsearch.rnnsearch_forward]: the whole model and its
  teacher-forced log-likelihood.

The arguments are declared in SPEC §7's letters ([`Array`][refmem.validation.Array]`["B Tx n2"]`,
[`Mask`][refmem.validation.Mask]`["B Tx"]`, the tokens [`Index`][refmem.validation.Index]`["B Tx", "Kx"]`)
and checked once by [`checked`][refmem.validation.checked]; the tokens and the masks are not
differentiated, so they are keyword-only, like every option. The widths that SPEC §7 derives from
others are the functions [`annotation_width`][refmem.attention.rnnsearch.annotation_width] (`2n`),
[`maxout_width`][refmem.attention.rnnsearch.maxout_width] (`2l`) and
[`encoder_input_width`][refmem.attention.rnnsearch.encoder_input_width] (`D = m`).

The maths of each pair lives in a private function of the same name without the checks
(``_gru_cell``, ``_decoder``, ...); the public functions validate their arguments once and call
it, and refmem's own code calls the private functions, so nothing is validated per step.
Derivations: docs/derivations/rnnsearch.md.
"""

from typing import Any, NamedTuple

from .. import primitives as PR
from .. import xp as rx
from ..errors import DTypeError, ShapeError
from ..sampling import Sampler
from ..validation import Array, Index, Mask, Seed, Size, Unit, checked

__all__ = [
    "MAXOUT_GAP",
    "GRUParams",
    "EncoderParams",
    "DecoderParams",
    "DeepOutputParams",
    "RNNsearchParams",
    "PARAM_NAMES",
    "annotation_width",
    "maxout_width",
    "encoder_input_width",
    "param_shapes",
    "named",
    "from_named",
    "init_params",
    "EmbeddingOutputs", "EmbeddingCache", "EmbeddingGrads", "embedding_forward", "embedding_backward",
    "GRUCellOutputs", "GRUCellCache", "GRUCellGrads", "gru_cell_forward", "gru_cell_backward",
    "EncoderOutputs", "EncoderCache", "EncoderGrads", "encoder_forward", "encoder_backward",
    "InitialStateOutputs", "InitialStateCache", "InitialStateGrads", "initial_state_forward",
    "initial_state_backward",
    "AlignmentOutputs", "AlignmentCache", "AlignmentGrads", "alignment_forward", "alignment_backward",
    "MaxoutOutputs", "MaxoutCache", "MaxoutGrads", "maxout_forward", "maxout_backward",
    "DeepOutputOutputs", "DeepOutputCache", "DeepOutputGrads", "deep_output_forward", "deep_output_backward",
    "DecoderStepOutputs", "DecoderStepCache", "DecoderStepGrads", "decoder_step_forward", "decoder_step_backward",
    "DecoderOutputs", "DecoderCache", "DecoderGrads", "decoder_forward", "decoder_backward",
    "RNNsearchOutputs", "RNNsearchCache", "RNNsearchGrads", "rnnsearch_forward", "rnnsearch_backward",
    # the names before the backward rule's naming (aliases)
    "GRUOutputs", "GRUCache", "StepOutputs", "StepCache", "StepGrads",
]

#: The smallest gap the catalogue's samplers keep between the two entries of a maxout pair (SPEC §7
#: step 6): the maximum is a kink, and the finite-difference and complex steps of SPEC §6 must not
#: cross it.
MAXOUT_GAP = 1e-3


# ----------------------------------------------------------------------------- sizes and parameters


def annotation_width(n: int) -> int:
    """`2n`, the width of an annotation `h_j = [→h_j ; ←h_j]` (the letter `n2` of the annotations)."""
    return 2 * n


def maxout_width(l: int) -> int:
    """`2l`, the width of the deep output's `t̃` before the maxout over pairs (the letter `l2`)."""
    return 2 * l


def encoder_input_width(m: int) -> int:
    """`D = m`: the encoder's cells read the embedded source (the letter `D` of their `W_z [D, n]`)."""
    return m


class GRUParams(NamedTuple):
    """One GRU cell (SPEC §7). The same type holds their gradients."""

    W_z: Array["D n"]
    """The update gate's input weights."""
    U_z: Array["n n"]
    """The update gate's recurrent weights."""
    b_z: Array["n"]
    """The update gate's bias."""
    W_r: Array["D n"]
    """The reset gate's input weights."""
    U_r: Array["n n"]
    """The reset gate's recurrent weights."""
    b_r: Array["n"]
    """The reset gate's bias."""
    W: Array["D n"]
    """The proposal's input weights."""
    U: Array["n n"]
    """The proposal's recurrent weights (applied to `r ∘ h_prev`)."""
    b: Array["n"]
    """The proposal's bias."""


class EncoderParams(NamedTuple):
    """The encoder: the source embedding and the two directions' cells (`D = m`)."""

    E_x: Array["Kx m"]
    """The source embedding."""
    fwd: GRUParams
    """The forward direction's cell (`→h_j`)."""
    bwd: GRUParams
    """The backward direction's cell (`←h_j`)."""


class DeepOutputParams(NamedTuple):
    """The deep output (SPEC §7 decoder steps 5-7)."""

    U_o: Array["n l2"]
    """`s_{i-1}`'s weights in `t̃`."""
    V_o: Array["m l2"]
    """`ey_{i-1}`'s weights in `t̃`."""
    C_o: Array["n2 l2"]
    """`c_i`'s weights in `t̃`."""
    b_o: Array["l2"]
    """`t̃`'s bias."""
    W_o: Array["l Ky"]
    """The output weights after the maxout."""
    b_y: Array["Ky"]
    """The output bias."""


class DecoderParams(NamedTuple):
    """The decoder (SPEC §7 decoder steps 1-7): target embedding, alignment, gated unit and deep
    output (as [`DeepOutputParams`][refmem.attention.rnnsearch.DeepOutputParams]). `E_y`, `U_a` and
    `b_a` may be `None` for [`decoder_step_forward`][refmem.attention.rnnsearch.decoder_step_forward]
    alone, which does not read them."""

    E_y: Array["Ky m"] | None
    """The target embedding."""
    W_a: Array["n A"]
    """The alignment's weights of `s_{i-1}`."""
    U_a: Array["n2 A"] | None
    """The alignment's weights of the annotations (the keys `h U_a + b_a`)."""
    b_a: Array["A"] | None
    """The keys' bias."""
    v_a: Array["A"]
    """The alignment's output vector."""
    W_z: Array["m n"]
    """The update gate's weights of `ey_{i-1}`."""
    U_z: Array["n n"]
    """The update gate's recurrent weights."""
    C_z: Array["n2 n"]
    """The update gate's weights of `c_i`."""
    b_z: Array["n"]
    """The update gate's bias."""
    W_r: Array["m n"]
    """The reset gate's weights of `ey_{i-1}`."""
    U_r: Array["n n"]
    """The reset gate's recurrent weights."""
    C_r: Array["n2 n"]
    """The reset gate's weights of `c_i`."""
    b_r: Array["n"]
    """The reset gate's bias."""
    W: Array["m n"]
    """The proposal's weights of `ey_{i-1}`."""
    U: Array["n n"]
    """The proposal's recurrent weights."""
    C: Array["n2 n"]
    """The proposal's weights of `c_i`."""
    b: Array["n"]
    """The proposal's bias."""
    U_o: Array["n l2"]
    """As in [`DeepOutputParams`][refmem.attention.rnnsearch.DeepOutputParams]."""
    V_o: Array["m l2"]
    """As in [`DeepOutputParams`][refmem.attention.rnnsearch.DeepOutputParams]."""
    C_o: Array["n2 l2"]
    """As in [`DeepOutputParams`][refmem.attention.rnnsearch.DeepOutputParams]."""
    b_o: Array["l2"]
    """As in [`DeepOutputParams`][refmem.attention.rnnsearch.DeepOutputParams]."""
    W_o: Array["l Ky"]
    """As in [`DeepOutputParams`][refmem.attention.rnnsearch.DeepOutputParams]."""
    b_y: Array["Ky"]
    """As in [`DeepOutputParams`][refmem.attention.rnnsearch.DeepOutputParams]."""


class RNNsearchParams(NamedTuple):
    """The whole model."""

    encoder: EncoderParams
    """The encoder's parameters."""
    W_s: Array["n n"]
    """The weights of `s_0 = tanh(←h_1 W_s + b_s)`."""
    b_s: Array["n"]
    """The bias of `s_0`."""
    decoder: DecoderParams
    """The decoder's parameters."""


_GRU_SHAPES = {"W_z": "D n", "U_z": "n n", "b_z": "n", "W_r": "D n", "U_r": "n n", "b_r": "n",
               "W": "D n", "U": "n n", "b": "n"}
_DECODER_SHAPES = {"E_y": "Ky m", "W_a": "n A", "U_a": "n2 A", "b_a": "A", "v_a": "A",
                   "W_z": "m n", "U_z": "n n", "C_z": "n2 n", "b_z": "n",
                   "W_r": "m n", "U_r": "n n", "C_r": "n2 n", "b_r": "n",
                   "W": "m n", "U": "n n", "C": "n2 n", "b": "n",
                   "U_o": "n l2", "V_o": "m l2", "C_o": "n2 l2", "b_o": "l2", "W_o": "l Ky", "b_y": "Ky"}

#: The golden (flat) names of the whole model's parameters, in SPEC §7's order: ``E_x``,
#: ``fwd_W_z .. fwd_b``, ``bwd_W_z .. bwd_b``, ``W_s``, ``b_s``, then the decoder's fields.
PARAM_NAMES: tuple[str, ...] = (
    ("E_x",) + tuple(f"fwd_{k}" for k in GRUParams._fields) + tuple(f"bwd_{k}" for k in GRUParams._fields)
    + ("W_s", "b_s") + DecoderParams._fields)


def param_shapes(Kx: int, Ky: int, m: int, n: int, A: int, l: int) -> dict[str, tuple[int, ...]]:
    """Every parameter's shape under its golden name (see ``PARAM_NAMES``)."""
    sizes = {"Kx": Kx, "Ky": Ky, "m": m, "n": n, "A": A, "l": l, "n2": 2 * n, "l2": 2 * l, "D": m}
    out: dict[str, tuple[int, ...]] = {"E_x": (Kx, m)}
    for d in ("fwd", "bwd"):
        out.update({f"{d}_{k}": tuple(sizes[a] for a in v.split()) for k, v in _GRU_SHAPES.items()})
    out["W_s"], out["b_s"] = (n, n), (n,)
    out.update({k: tuple(sizes[a] for a in v.split()) for k, v in _DECODER_SHAPES.items()})
    return out


def named(params: RNNsearchParams) -> dict[str, Any]:
    """The parameters (or their gradients) under their golden names."""
    e = params.encoder
    out = {"E_x": e.E_x}
    out.update({f"fwd_{k}": v for k, v in e.fwd._asdict().items()})
    out.update({f"bwd_{k}": v for k, v in e.bwd._asdict().items()})
    out["W_s"], out["b_s"] = params.W_s, params.b_s
    out.update(params.decoder._asdict())
    return out


def from_named(values: dict[str, Any]) -> RNNsearchParams:
    """[`RNNsearchParams`][refmem.attention.rnnsearch.RNNsearchParams] from golden names (see [`named`][refmem.attention.rnnsearch.named])."""
    missing = [k for k in PARAM_NAMES if k not in values]
    if missing:
        raise KeyError(f"params: missing {missing}")
    enc = EncoderParams(values["E_x"], GRUParams(*(values[f"fwd_{k}"] for k in GRUParams._fields)),
                        GRUParams(*(values[f"bwd_{k}"] for k in GRUParams._fields)))
    return RNNsearchParams(enc, values["W_s"], values["b_s"],
                           DecoderParams(*(values[k] for k in DecoderParams._fields)))


def _orthogonal(xp: Any, s: Sampler, n: int) -> Any:
    q, r = xp.linalg.qr(s.normal((n, n)))
    sign = xp.where(xp.linalg.diagonal(r) < 0, -1.0, 1.0)
    return q * sign[None, :]


@checked
def init_params(xp: Any, Kx: Size, Ky: Size, m: Size, n: Size, A: Size, l: Size,
                seed: Seed = 0) -> RNNsearchParams:
    """Parameters initialised as the paper's appendix B.1 says.

    The recurrent matrices (``U_z, U_r, U`` of both encoder directions and of the decoder) are
    random orthogonal; ``W_a`` and ``U_a`` normal with standard deviation 0.001; ``v_a`` and every
    bias zero; every other matrix (embeddings included) normal with standard deviation 0.01.

    Args:
        xp: the array namespace to create the parameters in.
        Kx: source vocabulary (SPEC §7).
        Ky: target vocabulary.
        m: embedding width.
        n: hidden units.
        A: alignment width (the paper's ``n'``).
        l: maxout units.
        seed: the draws come from ``refmem.sampling.Sampler(xp, seed)``.

    Returns:
        An [`RNNsearchParams`][refmem.attention.rnnsearch.RNNsearchParams].
    """
    s = Sampler(xp, seed)
    values = {}
    for name, shape in param_shapes(Kx, Ky, m, n, A, l).items():
        base = name.split("_", 1)[1] if name.startswith(("fwd_", "bwd_")) else name
        if base.startswith("b") or name == "v_a":
            values[name] = xp.zeros(shape, dtype=xp.float64)
        elif base in ("U_z", "U_r", "U"):
            values[name] = _orthogonal(xp, s, n)
        elif name in ("W_a", "U_a"):
            values[name] = s.normal(shape, scale=0.001)
        else:
            values[name] = s.normal(shape, scale=0.01)
    return from_named(values)


# ----------------------------------------------------------------------------- helpers


def _zeros_if_none(d: Any, like: Any) -> Any:
    return rx.namespace(like).zeros_like(like) if d is None else d


def _as_bool(mask: Any) -> Any:
    if mask is None:
        return None
    xp = rx.namespace(mask)
    return mask if xp.isdtype(mask.dtype, "bool") else mask != 0


# ----------------------------------------------------------------------------- embedding


class EmbeddingOutputs(NamedTuple):
    """The output of [`embedding_forward`][refmem.attention.rnnsearch.embedding_forward]."""

    emb: Array["... m"]
    """The rows of `E` picked by the tokens."""


class EmbeddingCache(NamedTuple):
    """What [`embedding_backward`][refmem.attention.rnnsearch.embedding_backward] needs."""

    onehot: Array["... K"]
    """The tokens as one-hot rows in `E`'s dtype."""
    E: Array["K m"]
    """The embedding matrix."""


class EmbeddingGrads(NamedTuple):
    """The gradient of [`embedding_forward`][refmem.attention.rnnsearch.embedding_forward]'s argument."""

    E: Array["K m"]
    """Each token's row receives the sum of its positions' gradients."""


def _onehot(tokens: Any, K: int, like: Any) -> Any:
    xp = rx.namespace(like)
    return xp.astype(tokens[..., None] == xp.arange(K, dtype=tokens.dtype), like.dtype)


def _embedding(tokens: Any, E: Any) -> tuple[EmbeddingOutputs, EmbeddingCache]:
    xp = rx.namespace(E)
    K, m = (int(d) for d in E.shape)
    flat = xp.reshape(tokens, (-1,))
    emb = xp.reshape(xp.take(E, flat, axis=0), tuple(int(d) for d in tokens.shape) + (m,))
    return EmbeddingOutputs(emb), EmbeddingCache(_onehot(tokens, K, E), E)


def _embedding_back(d_emb: Any, cache: EmbeddingCache) -> Any:
    xp = rx.namespace(cache.E)
    K, m = (int(d) for d in cache.E.shape)
    return PR.transpose_last(xp.reshape(cache.onehot, (-1, K))) @ xp.reshape(d_emb, (-1, m))


@checked
def embedding_forward(E: Array["K m"], *, tokens: Index["...", "K"]) -> tuple[EmbeddingOutputs, EmbeddingCache]:
    """Embedding lookup, SPEC §7: `emb[..., :] = E[tokens[...], :]`.

    Args:
        E: `[K, m]`, the embedding matrix.
        tokens: integer token indices `[...]` (any shape), each in `[0, K)`; not differentiated
            (keyword-only).

    Returns:
        outputs: an [`EmbeddingOutputs`][refmem.attention.rnnsearch.EmbeddingOutputs] `(emb [..., m])`.
        cache: an [`EmbeddingCache`][refmem.attention.rnnsearch.EmbeddingCache].
    """
    return _embedding(tokens, E)


@checked
def embedding_backward(d_out: EmbeddingOutputs, cache: EmbeddingCache) -> EmbeddingGrads:
    """VJP of [`embedding_forward`][refmem.attention.rnnsearch.embedding_forward]:
    `dE = onehotᵀ d_emb` (summed over every position).

    Args:
        d_out: an [`EmbeddingOutputs`][refmem.attention.rnnsearch.EmbeddingOutputs] (or a 1-tuple):
            the gradient of `emb [..., m]` (`None`: zero).
        cache: the [`EmbeddingCache`][refmem.attention.rnnsearch.EmbeddingCache] of the forward.

    Returns:
        grads: an [`EmbeddingGrads`][refmem.attention.rnnsearch.EmbeddingGrads] `(E [K, m])`.

    Derivation: [docs/derivations/rnnsearch.md, "1. Embedding"](../derivations/rnnsearch.md#1-embedding)
    """
    (d_emb,) = d_out
    if d_emb is None:
        return EmbeddingGrads(rx.namespace(cache.E).zeros_like(cache.E))
    return EmbeddingGrads(_embedding_back(d_emb, cache))


# ----------------------------------------------------------------------------- the GRU cell


class _GRUCore(NamedTuple):
    h_prev: Any
    z: Any
    r: Any
    rh: Any
    h_tilde: Any
    mask: Any
    U_z: Any
    U_r: Any
    U: Any


def _gru(a_z: Any, a_r: Any, a_h: Any, h_prev: Any, U_z: Any, U_r: Any, U: Any, mask: Any) -> tuple[Any, _GRUCore]:
    """SPEC §7 GRU steps 1-5 from the input projections ``a_g = x W_g + b_g`` (``[B, n]``)."""
    xp = rx.namespace(a_z, h_prev)
    z = PR.sigmoid(a_z + h_prev @ U_z)
    r = PR.sigmoid(a_r + h_prev @ U_r)
    rh = r * h_prev
    h_tilde = xp.tanh(a_h + rh @ U)
    h = (1.0 - z) * h_prev + z * h_tilde
    if mask is not None:
        h = xp.where(mask[:, None], h, h_prev)
    return h, _GRUCore(h_prev, z, r, rh, h_tilde, mask, U_z, U_r, U)


def _gru_back(d_h: Any, c: _GRUCore) -> tuple[Any, Any, Any, Any, Any, Any, Any]:
    """``(d a_z, d a_r, d a_h, d h_prev, dU_z, dU_r, dU)`` from ``d_h [B, n]``."""
    xp = rx.namespace(d_h)
    if c.mask is None:
        d_new, d_prev = d_h, 0.0
    else:
        zero = xp.zeros_like(d_h)
        d_new = xp.where(c.mask[:, None], d_h, zero)
        d_prev = xp.where(c.mask[:, None], zero, d_h)
    d_z = d_new * (c.h_tilde - c.h_prev)
    d_ht = d_new * c.z
    d_prev = d_prev + d_new * (1.0 - c.z)
    d_ah = d_ht * (1.0 - c.h_tilde * c.h_tilde)
    d_rh = d_ah @ PR.transpose_last(c.U)
    g_U = PR.transpose_last(c.rh) @ d_ah
    d_r = d_rh * c.h_prev
    d_prev = d_prev + d_rh * c.r
    d_az = d_z * c.z * (1.0 - c.z)
    d_ar = d_r * c.r * (1.0 - c.r)
    d_prev = d_prev + d_az @ PR.transpose_last(c.U_z) + d_ar @ PR.transpose_last(c.U_r)
    g_Uz = PR.transpose_last(c.h_prev) @ d_az
    g_Ur = PR.transpose_last(c.h_prev) @ d_ar
    return d_az, d_ar, d_ah, d_prev, g_Uz, g_Ur, g_U


class GRUCellOutputs(NamedTuple):
    """The output of [`gru_cell_forward`][refmem.attention.rnnsearch.gru_cell_forward]."""

    h: Array["B n"]
    """The new state."""


class GRUCellCache(NamedTuple):
    """What [`gru_cell_backward`][refmem.attention.rnnsearch.gru_cell_backward] needs."""

    x: Array["B D"]
    """The input."""
    h_prev: Array["B n"]
    """The previous state."""
    params: GRUParams
    """The parameters."""
    core: Any
    """The gate values of the step."""


class GRUCellGrads(NamedTuple):
    """The gradients of [`gru_cell_forward`][refmem.attention.rnnsearch.gru_cell_forward]'s arguments."""

    x: Array["B D"]
    """The gradient of the input."""
    h_prev: Array["B n"]
    """The gradient of the previous state."""
    params: GRUParams
    """The gradients of the parameters."""


GRUOutputs = GRUCellOutputs
"""The name of [`GRUCellOutputs`][refmem.attention.rnnsearch.GRUCellOutputs] before the backward rule."""
GRUCache = GRUCellCache
"""The name of [`GRUCellCache`][refmem.attention.rnnsearch.GRUCellCache] before the backward rule."""


def _gru_cell(x: Any, h_prev: Any, p: GRUParams, mask: Any) -> tuple[GRUCellOutputs, GRUCellCache]:
    h, core = _gru(x @ p.W_z + p.b_z, x @ p.W_r + p.b_r, x @ p.W + p.b, h_prev, p.U_z, p.U_r, p.U, _as_bool(mask))
    return GRUCellOutputs(h), GRUCellCache(x, h_prev, p, core)


def _gru_cell_back(d_h: Any, cache: GRUCellCache) -> GRUCellGrads:
    xp = rx.namespace(cache.x)
    p, x = cache.params, cache.x
    d_az, d_ar, d_ah, d_prev, g_Uz, g_Ur, g_U = _gru_back(d_h, cache.core)
    d_x = d_az @ PR.transpose_last(p.W_z) + d_ar @ PR.transpose_last(p.W_r) + d_ah @ PR.transpose_last(p.W)
    xt = PR.transpose_last(x)
    g = GRUParams(xt @ d_az, g_Uz, xp.sum(d_az, axis=0), xt @ d_ar, g_Ur, xp.sum(d_ar, axis=0),
                  xt @ d_ah, g_U, xp.sum(d_ah, axis=0))
    return GRUCellGrads(d_x, d_prev, g)


@checked
def gru_cell_forward(x: Array["B D"], h_prev: Array["B n"], params: GRUParams, *,
                     mask: Mask["B"] | None = None) -> tuple[GRUCellOutputs, GRUCellCache]:
    """The gated unit of SPEC §7 (the paper's eq. A.1.1; the reset gate acts before `U`).

    `z = σ(x W_z + h_prev U_z + b_z)`, `r = σ(x W_r + h_prev U_r + b_r)`,
    `h̃ = tanh(x W + (r ∘ h_prev) U + b)`, `h = (1 - z) ∘ h_prev + z ∘ h̃`; where `mask` is 0
    the state is carried: `h = h_prev`.

    Args:
        x: `[B, D]`, the input.
        h_prev: `[B, n]`, the previous state.
        params: a [`GRUParams`][refmem.attention.rnnsearch.GRUParams].
        mask: `None` or `[B]`, bool or 0/1 (0: a padded step, the state is carried; keyword-only).

    Returns:
        outputs: a [`GRUCellOutputs`][refmem.attention.rnnsearch.GRUCellOutputs] `(h [B, n])`.
        cache: a [`GRUCellCache`][refmem.attention.rnnsearch.GRUCellCache].
    """
    return _gru_cell(x, h_prev, params, mask)


@checked
def gru_cell_backward(d_out: GRUCellOutputs, cache: GRUCellCache) -> GRUCellGrads:
    """VJP of [`gru_cell_forward`][refmem.attention.rnnsearch.gru_cell_forward].

    Args:
        d_out: a [`GRUCellOutputs`][refmem.attention.rnnsearch.GRUCellOutputs] (or a 1-tuple): the
            gradient of `h [B, n]` (`None`: zero).
        cache: the [`GRUCellCache`][refmem.attention.rnnsearch.GRUCellCache] of the forward.

    Returns:
        grads: a [`GRUCellGrads`][refmem.attention.rnnsearch.GRUCellGrads] `(x [B, D], h_prev [B, n], params)`.

    Derivation: [docs/derivations/rnnsearch.md, "2. The GRU cell"](../derivations/rnnsearch.md#2-the-gru-cell)
    """
    (d_h,) = d_out
    return _gru_cell_back(_zeros_if_none(d_h, cache.h_prev), cache)


# ----------------------------------------------------------------------------- the encoder


class EncoderOutputs(NamedTuple):
    """The output of [`encoder_forward`][refmem.attention.rnnsearch.encoder_forward]."""

    h: Array["B Tx n2"]
    """The annotations `[→h_j ; ←h_j]`."""


class EncoderCache(NamedTuple):
    """What [`encoder_backward`][refmem.attention.rnnsearch.encoder_backward] needs."""

    h: Array["B Tx n2"]
    """The annotations."""
    emb: Array["B Tx m"]
    """The embedded source."""
    embedding: EmbeddingCache
    """The embedding's cache."""
    fwd: tuple
    """The forward direction's step caches, in source order."""
    bwd: tuple
    """The backward direction's step caches, in source order."""
    params: EncoderParams
    """The parameters."""
    mask: Mask["B Tx"] | None
    """The source mask as booleans, or `None`."""


class EncoderGrads(NamedTuple):
    """The gradients of [`encoder_forward`][refmem.attention.rnnsearch.encoder_forward]'s arguments."""

    params: EncoderParams
    """The gradients of the parameters."""


def _direction(emb: Any, p: GRUParams, mask: Any, reverse: bool) -> tuple[list, list]:
    """One direction over the source: the states and the step cores, both in source order."""
    xp = rx.namespace(emb)
    B, T, _ = (int(d) for d in emb.shape)
    n = int(p.U.shape[0])
    a_z, a_r, a_h = emb @ p.W_z + p.b_z, emb @ p.W_r + p.b_r, emb @ p.W + p.b  # once per sequence
    h = xp.zeros((B, n), dtype=emb.dtype)
    states: list = [None] * T
    cores: list = [None] * T
    for j in (reversed(range(T)) if reverse else range(T)):
        h, cores[j] = _gru(a_z[:, j, :], a_r[:, j, :], a_h[:, j, :], h, p.U_z, p.U_r, p.U,
                           None if mask is None else mask[:, j])
        states[j] = h
    return states, cores


def _direction_back(d_states: Any, emb: Any, p: GRUParams, cores: tuple, reverse: bool) -> tuple[Any, GRUParams]:
    """``(d emb, GRUParams of gradients)`` of one direction from ``d_states [B, T, n]``."""
    xp = rx.namespace(d_states)
    B, T, m = (int(d) for d in emb.shape)
    carry = xp.zeros_like(d_states[:, 0, :])
    d_az: list = [None] * T
    d_ar: list = [None] * T
    d_ah: list = [None] * T
    g_Uz = g_Ur = g_U = 0.0
    for j in (range(T) if reverse else reversed(range(T))):
        d_az[j], d_ar[j], d_ah[j], carry, uz, ur, u = _gru_back(d_states[:, j, :] + carry, cores[j])
        g_Uz, g_Ur, g_U = g_Uz + uz, g_Ur + ur, g_U + u
    e2 = PR.transpose_last(xp.reshape(emb, (B * T, m)))
    out = []
    d_emb = 0.0
    for d_a, W in ((d_az, p.W_z), (d_ar, p.W_r), (d_ah, p.W)):
        d_a = xp.stack(d_a, axis=1)
        d_emb = d_emb + d_a @ PR.transpose_last(W)
        d2 = xp.reshape(d_a, (B * T, -1))
        out.append((e2 @ d2, xp.sum(d2, axis=0)))
    (gWz, gbz), (gWr, gbr), (gW, gb) = out
    return d_emb, GRUParams(gWz, g_Uz, gbz, gWr, g_Ur, gbr, gW, g_U, gb)


def _encoder(x: Any, p: EncoderParams, mask: Any) -> tuple[EncoderOutputs, EncoderCache]:
    xp = rx.namespace(p.E_x)
    m = _as_bool(mask)
    (emb,), emb_cache = _embedding(x, p.E_x)
    fwd, fwd_cores = _direction(emb, p.fwd, m, reverse=False)
    bwd, bwd_cores = _direction(emb, p.bwd, m, reverse=True)
    h = xp.concat([xp.stack(fwd, axis=1), xp.stack(bwd, axis=1)], axis=-1)
    return EncoderOutputs(h), EncoderCache(h, emb, emb_cache, tuple(fwd_cores), tuple(bwd_cores), p, m)


def _encoder_back(d_h: Any, cache: EncoderCache) -> EncoderGrads:
    n = int(cache.params.fwd.U.shape[0])
    d_emb_f, g_fwd = _direction_back(d_h[..., :n], cache.emb, cache.params.fwd, cache.fwd, reverse=False)
    d_emb_b, g_bwd = _direction_back(d_h[..., n:], cache.emb, cache.params.bwd, cache.bwd, reverse=True)
    g_E = _embedding_back(d_emb_f + d_emb_b, cache.embedding)
    return EncoderGrads(EncoderParams(g_E, g_fwd, g_bwd))


@checked(derive={"D": encoder_input_width})
def encoder_forward(params: EncoderParams, *, x: Index["B Tx", "Kx"],
                    mask: Mask["B Tx"] | None = None) -> tuple[EncoderOutputs, EncoderCache]:
    """The bidirectional encoder of SPEC §7: `h_j = [→h_j ; ←h_j]`.

    Args:
        params: an [`EncoderParams`][refmem.attention.rnnsearch.EncoderParams] (`E_x [Kx, m]` and
            the two directions' [`GRUParams`][refmem.attention.rnnsearch.GRUParams], `D = m`).
        x: `[B, Tx]` source token indices in `[0, Kx)` (integers; not differentiated; keyword-only).
        mask: `None` or `[B, Tx]`, bool or 0/1 (0: padding; both directions carry their state
            over a padded position; keyword-only).

    Returns:
        outputs: an [`EncoderOutputs`][refmem.attention.rnnsearch.EncoderOutputs] `(h [B, Tx, 2n])`.
        cache: an [`EncoderCache`][refmem.attention.rnnsearch.EncoderCache].
    """
    return _encoder(x, params, mask)


@checked
def encoder_backward(d_out: EncoderOutputs, cache: EncoderCache) -> EncoderGrads:
    """Backpropagation through both directions of [`encoder_forward`][refmem.attention.rnnsearch.encoder_forward].

    Args:
        d_out: an [`EncoderOutputs`][refmem.attention.rnnsearch.EncoderOutputs] (or a 1-tuple): the
            gradient of `h [B, Tx, 2n]` (`None`: zero).
        cache: the [`EncoderCache`][refmem.attention.rnnsearch.EncoderCache] of the forward.

    Returns:
        grads: an [`EncoderGrads`][refmem.attention.rnnsearch.EncoderGrads] whose `params` is an
            [`EncoderParams`][refmem.attention.rnnsearch.EncoderParams] of gradients.

    Derivation: [docs/derivations/rnnsearch.md, "3. The bidirectional encoder"](../derivations/rnnsearch.md#3-the-bidirectional-encoder)
    """
    (d_h,) = d_out
    return _encoder_back(_zeros_if_none(d_h, cache.h), cache)


# ----------------------------------------------------------------------------- s_0


class InitialStateOutputs(NamedTuple):
    """The output of [`initial_state_forward`][refmem.attention.rnnsearch.initial_state_forward]."""

    s0: Array["B n"]
    """The decoder's initial state."""


class InitialStateCache(NamedTuple):
    """What [`initial_state_backward`][refmem.attention.rnnsearch.initial_state_backward] needs."""

    h: Array["B Tx n2"]
    """The annotations."""
    W_s: Array["n n"]
    """The weights."""
    s0: Array["B n"]
    """The initial state."""


class InitialStateGrads(NamedTuple):
    """The gradients of [`initial_state_forward`][refmem.attention.rnnsearch.initial_state_forward]'s arguments."""

    h: Array["B Tx n2"]
    """The gradient of the annotations (nonzero only in `←h_1`)."""
    W_s: Array["n n"]
    """The gradient of `W_s`."""
    b_s: Array["n"]
    """The gradient of `b_s`."""


def _initial_state(h: Any, W_s: Any, b_s: Any) -> tuple[InitialStateOutputs, InitialStateCache]:
    xp = rx.namespace(h, W_s)
    n = int(W_s.shape[0])
    s0 = xp.tanh(h[:, 0, n:] @ W_s + b_s)
    return InitialStateOutputs(s0), InitialStateCache(h, W_s, s0)


def _initial_state_back(d_s0: Any, cache: InitialStateCache) -> InitialStateGrads:
    xp = rx.namespace(d_s0)
    h = cache.h
    B, T, n2 = (int(d) for d in h.shape)
    n = n2 // 2
    d_pre = d_s0 * (1.0 - cache.s0 * cache.s0)
    g_W = PR.transpose_last(h[:, 0, n:]) @ d_pre
    d_first = xp.concat([xp.zeros((B, 1, n), dtype=h.dtype), (d_pre @ PR.transpose_last(cache.W_s))[:, None, :]], axis=-1)
    d_h = d_first if T == 1 else xp.concat([d_first, xp.zeros((B, T - 1, n2), dtype=h.dtype)], axis=1)
    return InitialStateGrads(d_h, g_W, xp.sum(d_pre, axis=0))


@checked(derive={"n2": annotation_width})
def initial_state_forward(h: Array["B Tx n2"], W_s: Array["n n"],
                          b_s: Array["n"]) -> tuple[InitialStateOutputs, InitialStateCache]:
    """The decoder's initial state, SPEC §7: `s_0 = tanh(←h_1 W_s + b_s)`.

    Args:
        h: `[B, Tx, 2n]`, the annotations; `←h_1 = h[:, 0, n:]`.
        W_s: `[n, n]`.
        b_s: `[n]`.

    Returns:
        outputs: an [`InitialStateOutputs`][refmem.attention.rnnsearch.InitialStateOutputs] `(s0 [B, n])`.
        cache: an [`InitialStateCache`][refmem.attention.rnnsearch.InitialStateCache].
    """
    return _initial_state(h, W_s, b_s)


@checked
def initial_state_backward(d_out: InitialStateOutputs, cache: InitialStateCache) -> InitialStateGrads:
    """VJP of [`initial_state_forward`][refmem.attention.rnnsearch.initial_state_forward].

    Args:
        d_out: an [`InitialStateOutputs`][refmem.attention.rnnsearch.InitialStateOutputs] (or a
            1-tuple): the gradient of `s0 [B, n]` (`None`: zero).
        cache: the [`InitialStateCache`][refmem.attention.rnnsearch.InitialStateCache] of the forward.

    Returns:
        grads: an [`InitialStateGrads`][refmem.attention.rnnsearch.InitialStateGrads]
            `(h [B, Tx, 2n], W_s [n, n], b_s [n])`.

    Derivation: [docs/derivations/rnnsearch.md, "4. The initial state"](../derivations/rnnsearch.md#4-the-initial-state)
    """
    (d_s0,) = d_out
    return _initial_state_back(_zeros_if_none(d_s0, cache.s0), cache)


# ----------------------------------------------------------------------------- the alignment


class AlignmentOutputs(NamedTuple):
    """The outputs of [`alignment_forward`][refmem.attention.rnnsearch.alignment_forward]."""

    alpha: Unit["B Tx"]
    """The weights (0 at a masked position)."""
    c: Array["B n2"]
    """The context `Σ_j α_j h_j`."""


class AlignmentCache(NamedTuple):
    """What [`alignment_backward`][refmem.attention.rnnsearch.alignment_backward] needs."""

    s_prev: Array["B n"]
    """The decoder state `s_{i-1}`."""
    h: Array["B Tx n2"]
    """The annotations."""
    att: Array["B Tx A"]
    """`tanh(s_prev W_a + keys)`."""
    e: Array["B Tx"]
    """The energies."""
    alpha: Array["B Tx"]
    """The weights."""
    W_a: Array["n A"]
    """`W_a`."""
    v_a: Array["A"]
    """`v_a`."""
    mask: Mask["B Tx"] | None
    """The source mask as booleans, or `None`."""


class AlignmentGrads(NamedTuple):
    """The gradients of [`alignment_forward`][refmem.attention.rnnsearch.alignment_forward]'s arguments."""

    s_prev: Array["B n"]
    """The gradient of `s_prev`."""
    h: Array["B Tx n2"]
    """The gradient of the annotations through the context."""
    keys: Array["B Tx A"]
    """The gradient of the keys."""
    W_a: Array["n A"]
    """The gradient of `W_a`."""
    v_a: Array["A"]
    """The gradient of `v_a`."""


def _masked_softmax(e: Any, mask: Any) -> Any:
    """Softmax over the last axis; where ``mask`` is False the weight is exactly 0 and takes no part
    in the maximum or the sum (a row with nothing unmasked: all zeros)."""
    if mask is None:
        return PR.softmax(e, axis=-1)
    xp = rx.namespace(e)
    re = PR.real_part(e)
    lowest = xp.min(re, axis=-1, keepdims=True)
    shift = xp.max(xp.where(mask, re, lowest), axis=-1, keepdims=True)
    zero = xp.zeros_like(e)
    ex = xp.where(mask, xp.exp(xp.where(mask, e - shift, zero)), zero)
    total = xp.sum(ex, axis=-1, keepdims=True)
    return ex / xp.where(PR.real_part(total) == 0, xp.ones_like(total), total)


def _alignment(s_prev: Any, h: Any, keys: Any, W_a: Any, v_a: Any, mask: Any) -> tuple[AlignmentOutputs, AlignmentCache]:
    xp = rx.namespace(s_prev, h, keys)
    att = xp.tanh((s_prev @ W_a)[:, None, :] + keys)
    e = xp.sum(att * v_a, axis=-1)
    alpha = _masked_softmax(e, mask)
    c = (alpha[:, None, :] @ h)[:, 0, :]
    return AlignmentOutputs(alpha, c), AlignmentCache(s_prev, h, att, e, alpha, W_a, v_a, mask)


def _alignment_back(d_alpha: Any, d_c: Any, cache: AlignmentCache) -> AlignmentGrads:
    xp = rx.namespace(cache.h)
    C = cache
    d_alpha = d_alpha + (C.h @ d_c[:, :, None])[:, :, 0]
    d_h = C.alpha[:, :, None] * d_c[:, None, :]
    d_e = C.alpha * (d_alpha - xp.sum(d_alpha * C.alpha, axis=-1, keepdims=True))
    A = int(C.att.shape[-1])
    g_v = xp.sum(xp.reshape(d_e[:, :, None] * C.att, (-1, A)), axis=0)
    d_pre = (d_e[:, :, None] * C.v_a) * (1.0 - C.att * C.att)
    d_sw = xp.sum(d_pre, axis=1)
    return AlignmentGrads(d_sw @ PR.transpose_last(C.W_a), d_h, d_pre, PR.transpose_last(C.s_prev) @ d_sw, g_v)


@checked(derive={"n2": annotation_width})
def alignment_forward(s_prev: Array["B n"], h: Array["B Tx n2"], keys: Array["B Tx A"], W_a: Array["n A"],
                      v_a: Array["A"], *, mask: Mask["B Tx"] | None = None) -> tuple[AlignmentOutputs, AlignmentCache]:
    """The alignment model and the context of SPEC §7 decoder steps 1-3.

    `e_j = tanh(s_prev W_a + keys_j) · v_a`, `α = softmax_j(e)` over the unmasked positions,
    `c = Σ_j α_j h_j`. The keys `h U_a + b_a` are computed once per sequence by the caller.

    Args:
        s_prev: `[B, n]`, the decoder state `s_{i-1}`.
        h: `[B, Tx, 2n]`, the annotations.
        keys: `[B, Tx, A]`, `h U_a + b_a`.
        W_a: `[n, A]`.
        v_a: `[A]`.
        mask: `None` or `[B, Tx]`, bool or 0/1 (0: padding, weight exactly 0; keyword-only).

    Returns:
        outputs: an [`AlignmentOutputs`][refmem.attention.rnnsearch.AlignmentOutputs] `(alpha [B, Tx], c [B, 2n])`.
        cache: an [`AlignmentCache`][refmem.attention.rnnsearch.AlignmentCache].
    """
    return _alignment(s_prev, h, keys, W_a, v_a, _as_bool(mask))


@checked
def alignment_backward(d_out: AlignmentOutputs, cache: AlignmentCache) -> AlignmentGrads:
    """VJP of [`alignment_forward`][refmem.attention.rnnsearch.alignment_forward].

    Args:
        d_out: an [`AlignmentOutputs`][refmem.attention.rnnsearch.AlignmentOutputs] (or a 2-tuple):
            the gradients of `alpha [B, Tx]` and `c [B, 2n]`, each `None` for zero.
        cache: the [`AlignmentCache`][refmem.attention.rnnsearch.AlignmentCache] of the forward.

    Returns:
        grads: an [`AlignmentGrads`][refmem.attention.rnnsearch.AlignmentGrads]
            `(s_prev [B, n], h [B, Tx, 2n], keys [B, Tx, A], W_a [n, A], v_a [A])`.

    Derivation: [docs/derivations/rnnsearch.md, "5. The alignment"](../derivations/rnnsearch.md#5-the-alignment)
    """
    d_alpha, d_c = d_out
    xp = rx.namespace(cache.h)
    d_alpha = _zeros_if_none(d_alpha, cache.alpha)
    d_c = d_c if d_c is not None else xp.zeros_like(cache.h[:, 0, :])
    return _alignment_back(d_alpha, d_c, cache)


# ----------------------------------------------------------------------------- maxout


class MaxoutOutputs(NamedTuple):
    """The output of [`maxout_forward`][refmem.attention.rnnsearch.maxout_forward]."""

    t: Array["... l"]
    """The larger of each adjacent pair."""


class MaxoutCache(NamedTuple):
    """What [`maxout_backward`][refmem.attention.rnnsearch.maxout_backward] needs."""

    first: Mask["... l"]
    """True where the first of the pair is the maximum (ties included)."""
    t_tilde: Array["... l2"]
    """The input."""


class MaxoutGrads(NamedTuple):
    """The gradient of [`maxout_forward`][refmem.attention.rnnsearch.maxout_forward]'s argument."""

    t_tilde: Array["... l2"]
    """Each pair's larger entry receives the gradient, the other 0."""


def _maxout(t_tilde: Any) -> tuple[MaxoutOutputs, MaxoutCache]:
    xp = rx.namespace(t_tilde)
    shape = tuple(int(d) for d in t_tilde.shape)
    pairs = xp.reshape(t_tilde, shape[:-1] + (shape[-1] // 2, 2))
    a, b = pairs[..., 0], pairs[..., 1]
    first = PR.real_part(a) >= PR.real_part(b)
    return MaxoutOutputs(xp.where(first, a, b)), MaxoutCache(first, t_tilde)


def _maxout_back(d_t: Any, cache: MaxoutCache) -> Any:
    xp = rx.namespace(d_t)
    zero = xp.zeros_like(d_t)
    both = xp.stack([xp.where(cache.first, d_t, zero), xp.where(cache.first, zero, d_t)], axis=-1)
    shape = tuple(int(d) for d in d_t.shape)
    return xp.reshape(both, shape[:-1] + (2 * shape[-1],))


@checked
def maxout_forward(t_tilde: Array["... l2"]) -> tuple[MaxoutOutputs, MaxoutCache]:
    """Maxout over adjacent pairs, SPEC §7 decoder step 6: `t_k = max(t̃_{2k-1}, t̃_{2k})`.

    Args:
        t_tilde: `[..., 2l]` (an even last axis).

    Returns:
        outputs: a [`MaxoutOutputs`][refmem.attention.rnnsearch.MaxoutOutputs] `(t [..., l])`.
        cache: a [`MaxoutCache`][refmem.attention.rnnsearch.MaxoutCache] (which of each pair won; on a tie the first).

    Raises:
        refmem.errors.ShapeError: an odd last axis.
    """
    if int(t_tilde.shape[-1]) % 2:
        raise ShapeError(f"t_tilde: expected an even last axis (2l), got shape {tuple(int(d) for d in t_tilde.shape)}")
    return _maxout(t_tilde)


@checked
def maxout_backward(d_out: MaxoutOutputs, cache: MaxoutCache) -> MaxoutGrads:
    """VJP of [`maxout_forward`][refmem.attention.rnnsearch.maxout_forward].

    Args:
        d_out: a [`MaxoutOutputs`][refmem.attention.rnnsearch.MaxoutOutputs] (or a 1-tuple): the
            gradient of `t [..., l]` (`None`: zero).
        cache: the [`MaxoutCache`][refmem.attention.rnnsearch.MaxoutCache] of the forward.

    Returns:
        grads: a [`MaxoutGrads`][refmem.attention.rnnsearch.MaxoutGrads] `(t_tilde [..., 2l])`.

    Derivation: [docs/derivations/rnnsearch.md, "6. Maxout"](../derivations/rnnsearch.md#6-maxout)
    """
    (d_t,) = d_out
    if d_t is None:
        return MaxoutGrads(rx.namespace(cache.t_tilde).zeros_like(cache.t_tilde))
    return MaxoutGrads(_maxout_back(d_t, cache))


# ----------------------------------------------------------------------------- the deep output


class DeepOutputOutputs(NamedTuple):
    """The output of [`deep_output_forward`][refmem.attention.rnnsearch.deep_output_forward]."""

    p: Unit["B Ky"]
    """`p(y_i = k | s_{i-1}, y_{i-1}, c_i)`."""


class DeepOutputCache(NamedTuple):
    """What [`deep_output_backward`][refmem.attention.rnnsearch.deep_output_backward] needs."""

    s_prev: Array["B n"]
    """`s_{i-1}`."""
    ey: Array["B m"]
    """`ey_{i-1}`."""
    c: Array["B n2"]
    """The context."""
    t_tilde: Array["B l2"]
    """`t̃`."""
    maxout: MaxoutCache
    """The maxout's cache."""
    t: Array["B l"]
    """`t`, after the maxout."""
    o: Array["B Ky"]
    """The logits."""
    p: Array["B Ky"]
    """The distribution."""
    log_p: Array["B Ky"]
    """`o - log Σ exp o`, for the log-likelihood."""
    params: DeepOutputParams
    """The parameters."""


class DeepOutputGrads(NamedTuple):
    """The gradients of [`deep_output_forward`][refmem.attention.rnnsearch.deep_output_forward]'s arguments."""

    s_prev: Array["B n"]
    """The gradient of `s_prev`."""
    ey: Array["B m"]
    """The gradient of `ey`."""
    c: Array["B n2"]
    """The gradient of the context."""
    params: DeepOutputParams
    """The gradients of the parameters."""


def _log_softmax(o: Any) -> Any:
    xp = rx.namespace(o)
    shift = xp.max(PR.real_part(o), axis=-1, keepdims=True)
    z = o - shift
    return z - xp.log(xp.sum(xp.exp(z), axis=-1, keepdims=True))


def _deep_output(s_prev: Any, ey: Any, c: Any, p: Any) -> tuple[DeepOutputOutputs, DeepOutputCache]:
    t_tilde = s_prev @ p.U_o + ey @ p.V_o + c @ p.C_o + p.b_o
    (t,), mcache = _maxout(t_tilde)
    o = t @ p.W_o + p.b_y
    lp = _log_softmax(o)
    probs = rx.namespace(o).exp(lp)
    params = DeepOutputParams(*(getattr(p, k) for k in DeepOutputParams._fields))
    return DeepOutputOutputs(probs), DeepOutputCache(s_prev, ey, c, t_tilde, mcache, t, o, probs, lp, params)


def _deep_output_back(d_p: Any, cache: DeepOutputCache, d_log_p: Any = None) -> DeepOutputGrads:
    """The VJP from ``d_p`` and, for the log-likelihood, ``d_log_p`` (``None``: zero), both ``[B, Ky]``."""
    xp = rx.namespace(d_p)
    C, p = cache, cache.params
    d_o = C.p * (d_p - xp.sum(d_p * C.p, axis=-1, keepdims=True))
    if d_log_p is not None:
        d_o = d_o + d_log_p - C.p * xp.sum(d_log_p, axis=-1, keepdims=True)
    g_Wo, g_by = PR.transpose_last(C.t) @ d_o, xp.sum(d_o, axis=0)
    d_tt = _maxout_back(d_o @ PR.transpose_last(p.W_o), C.maxout)
    g = DeepOutputParams(PR.transpose_last(C.s_prev) @ d_tt, PR.transpose_last(C.ey) @ d_tt,
                         PR.transpose_last(C.c) @ d_tt, xp.sum(d_tt, axis=0), g_Wo, g_by)
    return DeepOutputGrads(d_tt @ PR.transpose_last(p.U_o), d_tt @ PR.transpose_last(p.V_o),
                           d_tt @ PR.transpose_last(p.C_o), g)


@checked(derive={"n2": annotation_width, "l2": maxout_width})
def deep_output_forward(s_prev: Array["B n"], ey: Array["B m"], c: Array["B n2"],
                        params: DeepOutputParams) -> tuple[DeepOutputOutputs, DeepOutputCache]:
    """The deep output with maxout, SPEC §7 decoder steps 5-7.

    `t̃ = s_prev U_o + ey V_o + c C_o + b_o`, `t = maxout(t̃)`, `o = t W_o + b_y`,
    `p = softmax(o)` (computed as `exp(o - log Σ exp o)`, max-subtracted).

    Args:
        s_prev: `[B, n]`, `s_{i-1}`.
        ey: `[B, m]`, `E_y[y_{i-1}]` (zeros at the first step).
        c: `[B, 2n]`, the context `c_i`.
        params: a [`DeepOutputParams`][refmem.attention.rnnsearch.DeepOutputParams].

    Returns:
        outputs: a [`DeepOutputOutputs`][refmem.attention.rnnsearch.DeepOutputOutputs] `(p [B, Ky])`.
        cache: a [`DeepOutputCache`][refmem.attention.rnnsearch.DeepOutputCache].
    """
    return _deep_output(s_prev, ey, c, params)


@checked
def deep_output_backward(d_out: DeepOutputOutputs, cache: DeepOutputCache) -> DeepOutputGrads:
    """VJP of [`deep_output_forward`][refmem.attention.rnnsearch.deep_output_forward].

    Args:
        d_out: a [`DeepOutputOutputs`][refmem.attention.rnnsearch.DeepOutputOutputs] (or a 1-tuple):
            the gradient of `p [B, Ky]` (`None`: zero).
        cache: the [`DeepOutputCache`][refmem.attention.rnnsearch.DeepOutputCache] of the forward.

    Returns:
        grads: a [`DeepOutputGrads`][refmem.attention.rnnsearch.DeepOutputGrads]
            `(s_prev [B, n], ey [B, m], c [B, 2n], params)`.

    Derivation: [docs/derivations/rnnsearch.md, "7. The deep output"](../derivations/rnnsearch.md#7-the-deep-output)
    """
    (d_p,) = d_out
    return _deep_output_back(_zeros_if_none(d_p, cache.p), cache)


# ----------------------------------------------------------------------------- one decoder step


class DecoderStepOutputs(NamedTuple):
    """The outputs of [`decoder_step_forward`][refmem.attention.rnnsearch.decoder_step_forward]."""

    p: Unit["B Ky"]
    """The distribution of the next word (step 7)."""
    alpha: Unit["B Tx"]
    """The weights (step 2)."""
    s: Array["B n"]
    """The new state (step 4)."""


class DecoderStepCache(NamedTuple):
    """What [`decoder_step_backward`][refmem.attention.rnnsearch.decoder_step_backward] needs."""

    ey: Array["B m"]
    """The step's input embedding `ey_{i-1}`."""
    s_prev: Array["B n"]
    """`s_{i-1}`."""
    c: Array["B n2"]
    """The context."""
    alpha: Array["B Tx"]
    """The weights."""
    p: Array["B Ky"]
    """The distribution."""
    alignment: AlignmentCache
    """The alignment's cache."""
    gru: Any
    """The gated unit's gate values."""
    output: DeepOutputCache
    """The deep output's cache."""
    params: DecoderParams
    """The parameters."""


class DecoderStepGrads(NamedTuple):
    """The gradients of [`decoder_step_forward`][refmem.attention.rnnsearch.decoder_step_forward]'s arguments."""

    ey_prev: Array["B m"]
    """The gradient of `ey_prev`."""
    s_prev: Array["B n"]
    """The gradient of `s_prev`."""
    h: Array["B Tx n2"]
    """The gradient of the annotations through the context."""
    keys: Array["B Tx A"]
    """The gradient of the keys."""
    params: DecoderParams
    """The gradients of the parameters; `E_y`, `U_a` and `b_a` are `None` (a step does not use them)."""


StepOutputs = DecoderStepOutputs
"""The name of [`DecoderStepOutputs`][refmem.attention.rnnsearch.DecoderStepOutputs] before the backward rule."""
StepCache = DecoderStepCache
"""The name of [`DecoderStepCache`][refmem.attention.rnnsearch.DecoderStepCache] before the backward rule."""
StepGrads = DecoderStepGrads
"""The name of [`DecoderStepGrads`][refmem.attention.rnnsearch.DecoderStepGrads] before the backward rule."""


def _decoder_step(ey: Any, s_prev: Any, h: Any, keys: Any, p: DecoderParams, mask: Any,
                  step_mask: Any) -> tuple[DecoderStepOutputs, DecoderStepCache]:
    (alpha, c), acache = _alignment(s_prev, h, keys, p.W_a, p.v_a, mask)
    s, core = _gru(ey @ p.W_z + c @ p.C_z + p.b_z, ey @ p.W_r + c @ p.C_r + p.b_r, ey @ p.W + c @ p.C + p.b,
                   s_prev, p.U_z, p.U_r, p.U, step_mask)
    (probs,), ocache = _deep_output(s_prev, ey, c, p)
    return DecoderStepOutputs(probs, alpha, s), DecoderStepCache(ey, s_prev, c, alpha, probs, acache, core, ocache, p)


def _decoder_step_back(d_p: Any, d_alpha: Any, d_s: Any, cache: DecoderStepCache,
                       d_log_p: Any = None) -> DecoderStepGrads:
    xp = rx.namespace(d_s)
    C, p = cache, cache.params
    go = _deep_output_back(d_p, C.output, d_log_p)
    d_az, d_ar, d_ah, d_prev, g_Uz, g_Ur, g_U = _gru_back(d_s, C.gru)
    d_prev = d_prev + go.s_prev
    d_ey = go.ey + d_az @ PR.transpose_last(p.W_z) + d_ar @ PR.transpose_last(p.W_r) + d_ah @ PR.transpose_last(p.W)
    d_c = go.c + d_az @ PR.transpose_last(p.C_z) + d_ar @ PR.transpose_last(p.C_r) + d_ah @ PR.transpose_last(p.C)
    ga = _alignment_back(d_alpha, d_c, C.alignment)
    eyt, ct = PR.transpose_last(C.ey), PR.transpose_last(C.c)
    g = DecoderParams(
        E_y=None, W_a=ga.W_a, U_a=None, b_a=None, v_a=ga.v_a,
        W_z=eyt @ d_az, U_z=g_Uz, C_z=ct @ d_az, b_z=xp.sum(d_az, axis=0),
        W_r=eyt @ d_ar, U_r=g_Ur, C_r=ct @ d_ar, b_r=xp.sum(d_ar, axis=0),
        W=eyt @ d_ah, U=g_U, C=ct @ d_ah, b=xp.sum(d_ah, axis=0),
        **go.params._asdict())
    return DecoderStepGrads(d_ey, d_prev + ga.s_prev, ga.h, ga.keys, g)


@checked(derive={"n2": annotation_width, "l2": maxout_width})
def decoder_step_forward(ey_prev: Array["B m"], s_prev: Array["B n"], h: Array["B Tx n2"], keys: Array["B Tx A"],
                         params: DecoderParams, *, mask: Mask["B Tx"] | None = None,
                         step_mask: Mask["B"] | None = None) -> tuple[DecoderStepOutputs, DecoderStepCache]:
    """One decoder step `i`, SPEC §7 decoder steps 1-7.

    Args:
        ey_prev: `[B, m]`, `E_y[y_{i-1}]` (zeros at `i = 1`).
        s_prev: `[B, n]`, `s_{i-1}`.
        h: `[B, Tx, 2n]`, the annotations.
        keys: `[B, Tx, A]`, `h U_a + b_a` (computed once per sequence).
        params: a [`DecoderParams`][refmem.attention.rnnsearch.DecoderParams] (`E_y`, `U_a`, `b_a`
            are not used by a step and may be `None`).
        mask: `None` or `[B, Tx]`, the source mask (0: padding; keyword-only).
        step_mask: `None` or `[B]`, this step's target mask (0: the state is carried; keyword-only).

    Returns:
        outputs: a [`DecoderStepOutputs`][refmem.attention.rnnsearch.DecoderStepOutputs]
            `(p [B, Ky], alpha [B, Tx], s [B, n])`.
        cache: a [`DecoderStepCache`][refmem.attention.rnnsearch.DecoderStepCache].
    """
    return _decoder_step(ey_prev, s_prev, h, keys, params, _as_bool(mask), _as_bool(step_mask))


@checked
def decoder_step_backward(d_out: DecoderStepOutputs, cache: DecoderStepCache) -> DecoderStepGrads:
    """VJP of [`decoder_step_forward`][refmem.attention.rnnsearch.decoder_step_forward].

    Args:
        d_out: a [`DecoderStepOutputs`][refmem.attention.rnnsearch.DecoderStepOutputs] (or a
            3-tuple): the gradients of `p [B, Ky]`, `alpha [B, Tx]` and `s [B, n]`, each `None` for zero.
        cache: the [`DecoderStepCache`][refmem.attention.rnnsearch.DecoderStepCache] of the forward.

    Returns:
        grads: a [`DecoderStepGrads`][refmem.attention.rnnsearch.DecoderStepGrads]
            `(ey_prev [B, m], s_prev [B, n], h [B, Tx, 2n], keys [B, Tx, A], params)`.

    Derivation: [docs/derivations/rnnsearch.md, "8. One decoder step"](../derivations/rnnsearch.md#8-one-decoder-step)
    """
    d_p, d_alpha, d_s = d_out
    return _decoder_step_back(_zeros_if_none(d_p, cache.p), _zeros_if_none(d_alpha, cache.alpha),
                              _zeros_if_none(d_s, cache.s_prev), cache)


# ----------------------------------------------------------------------------- the decoder over Ty steps


class DecoderOutputs(NamedTuple):
    """The outputs of [`decoder_forward`][refmem.attention.rnnsearch.decoder_forward]."""

    p: Unit["B Ty Ky"]
    """The distribution of every target word."""
    alpha: Unit["B Ty Tx"]
    """The weights of every step."""
    s: Array["B Ty n"]
    """The states `s_1 .. s_Ty`."""


class DecoderCache(NamedTuple):
    """What [`decoder_backward`][refmem.attention.rnnsearch.decoder_backward] needs."""

    embedding: EmbeddingCache
    """The target embedding's cache."""
    h: Array["B Tx n2"]
    """The annotations."""
    s0: Array["B n"]
    """The initial state."""
    keys: Array["B Tx A"]
    """`h U_a + b_a`."""
    p: Array["B Ty Ky"]
    """The distributions."""
    steps: tuple
    """One [`DecoderStepCache`][refmem.attention.rnnsearch.DecoderStepCache] per step."""
    params: DecoderParams
    """The parameters."""


class DecoderGrads(NamedTuple):
    """The gradients of [`decoder_forward`][refmem.attention.rnnsearch.decoder_forward]'s arguments."""

    h: Array["B Tx n2"]
    """The gradient of the annotations (through the contexts and the keys)."""
    s0: Array["B n"]
    """The gradient of the initial state."""
    params: DecoderParams
    """The gradients of the parameters."""


def _decoder(y: Any, h: Any, s0: Any, p: DecoderParams, mask: Any, target_mask: Any) -> tuple[DecoderOutputs, DecoderCache]:
    xp = rx.namespace(h, s0)
    B, Ty = (int(d) for d in y.shape)
    (ey_all,), ecache = _embedding(y, p.E_y)
    keys = h @ p.U_a + p.b_a  # once per sequence
    tm = _as_bool(target_mask)
    s = s0
    ey = xp.zeros_like(ey_all[:, 0, :])  # ey_0 = 0
    lps, alphas, ss, steps = [], [], [], []
    for i in range(Ty):
        (lp, alpha, s), cache = _decoder_step(ey, s, h, keys, p, mask, None if tm is None else tm[:, i])
        lps.append(lp)
        alphas.append(alpha)
        ss.append(s)
        steps.append(cache)
        ey = ey_all[:, i, :]
    out = DecoderOutputs(xp.stack(lps, axis=1), xp.stack(alphas, axis=1), xp.stack(ss, axis=1))
    return out, DecoderCache(ecache, h, s0, keys, out.p, tuple(steps), p)


def _decoder_back(d_p: Any, d_alpha: Any, d_s: Any, cache: DecoderCache, d_log_p: Any = None) -> DecoderGrads:
    """BPTT from ``d_p``, ``d_alpha``, ``d_s`` and, for the log-likelihood, ``d_log_p [B, Ty, Ky]`` (``None``: 0)."""
    C, p = cache, cache.params
    xp = rx.namespace(C.h)
    B, Tx, n2 = (int(d) for d in C.h.shape)
    Ty = len(C.steps)
    A = int(C.keys.shape[-1])
    carry = xp.zeros_like(C.s0)
    acc: dict[str, Any] = {}
    d_h = xp.zeros_like(C.h)
    d_keys = xp.zeros_like(C.keys)
    d_ey: list = [None] * Ty
    for i in reversed(range(Ty)):
        g = _decoder_step_back(d_p[:, i, :], d_alpha[:, i, :], d_s[:, i, :] + carry, C.steps[i],
                               None if d_log_p is None else d_log_p[:, i, :])
        carry = g.s_prev
        d_ey[i] = g.ey_prev
        d_h = d_h + g.h
        d_keys = d_keys + g.keys
        for name, v in g.params._asdict().items():
            if v is not None:
                acc[name] = v if name not in acc else acc[name] + v
    # step i + 1 reads ey_i = E_y[y_i]; the first step reads the constant 0
    d_ey_all = xp.stack(d_ey[1:] + [xp.zeros_like(d_ey[0])], axis=1)
    acc["E_y"] = _embedding_back(d_ey_all, C.embedding)
    keys2 = xp.reshape(d_keys, (B * Tx, A))
    acc["U_a"] = PR.transpose_last(xp.reshape(C.h, (B * Tx, n2))) @ keys2
    acc["b_a"] = xp.sum(keys2, axis=0)
    d_h = d_h + d_keys @ PR.transpose_last(p.U_a)
    return DecoderGrads(d_h, carry, DecoderParams(**{k: acc[k] for k in DecoderParams._fields}))


def _require_full(params: DecoderParams, where: str) -> None:
    """The decoder reads `E_y`, `U_a` and `b_a`, which only a step may leave `None`."""
    for name in ("E_y", "U_a", "b_a"):
        if getattr(params, name) is None:
            raise DTypeError(f"{where}{name}: expected an array (the decoder reads it; only decoder_step_forward "
                             f"leaves it None), got None")


@checked(derive={"n2": annotation_width, "l2": maxout_width})
def decoder_forward(h: Array["B Tx n2"], s0: Array["B n"], params: DecoderParams, *, y: Index["B Ty", "Ky"],
                    mask: Mask["B Tx"] | None = None,
                    target_mask: Mask["B Ty"] | None = None) -> tuple[DecoderOutputs, DecoderCache]:
    """The decoder over `Ty` steps under teacher forcing, SPEC §7.

    Step `i` reads `ey_{i-1} = E_y[y_{i-1}]` (`ey_0 = 0`); the keys `h U_a + b_a` are
    computed once.

    Args:
        h: `[B, Tx, 2n]`, the annotations.
        s0: `[B, n]`, the initial state.
        params: a [`DecoderParams`][refmem.attention.rnnsearch.DecoderParams].
        y: `[B, Ty]` target token indices in `[0, Ky)` (integers; not differentiated; keyword-only).
        mask: `None` or `[B, Tx]`, the source mask (0: padding; keyword-only).
        target_mask: `None` or `[B, Ty]` (0: padding; the state is carried over the step; keyword-only).

    Returns:
        outputs: a [`DecoderOutputs`][refmem.attention.rnnsearch.DecoderOutputs]
            `(p [B, Ty, Ky], alpha [B, Ty, Tx], s [B, Ty, n])`.
        cache: a [`DecoderCache`][refmem.attention.rnnsearch.DecoderCache].
    """
    _require_full(params, "params.")
    return _decoder(y, h, s0, params, _as_bool(mask), target_mask)


def _d_decoder(d_out: Any, cache: DecoderCache) -> tuple[Any, Any, Any]:
    xp = rx.namespace(cache.h)
    B, Tx, _ = (int(d) for d in cache.h.shape)
    Ty = len(cache.steps)
    n = int(cache.s0.shape[-1])
    Ky = int(cache.p.shape[-1])
    z = lambda *s: xp.zeros(s, dtype=cache.h.dtype)  # noqa: E731
    return (z(B, Ty, Ky) if d_out[0] is None else d_out[0], z(B, Ty, Tx) if d_out[1] is None else d_out[1],
            z(B, Ty, n) if d_out[2] is None else d_out[2])


@checked
def decoder_backward(d_out: DecoderOutputs, cache: DecoderCache) -> DecoderGrads:
    """Backpropagation through time of [`decoder_forward`][refmem.attention.rnnsearch.decoder_forward].

    Args:
        d_out: a [`DecoderOutputs`][refmem.attention.rnnsearch.DecoderOutputs] (or a 3-tuple): the
            gradients of `p [B, Ty, Ky]`, `alpha [B, Ty, Tx]` and `s [B, Ty, n]`, each `None` for zero.
        cache: the [`DecoderCache`][refmem.attention.rnnsearch.DecoderCache] of the forward.

    Returns:
        grads: a [`DecoderGrads`][refmem.attention.rnnsearch.DecoderGrads] `(h [B, Tx, 2n], s0 [B, n], params)`:
            `h` through the contexts and the keys.

    Derivation: [docs/derivations/rnnsearch.md, "9. The decoder over Ty steps"](../derivations/rnnsearch.md#9-the-decoder-over-ty-steps)
    """
    return _decoder_back(*_d_decoder(d_out, cache), cache)


# ----------------------------------------------------------------------------- the whole model


class RNNsearchOutputs(NamedTuple):
    """The outputs of [`rnnsearch_forward`][refmem.attention.rnnsearch.rnnsearch_forward]."""

    log_likelihood: Array["B Ty"]
    """`m_i log p(y_i)`; a sentence's log-likelihood is its row sum."""
    p: Unit["B Ty Ky"]
    """The distribution of every target word."""
    alpha: Unit["B Ty Tx"]
    """The weights of every step."""
    s: Array["B Ty n"]
    """The decoder's states."""


class RNNsearchCache(NamedTuple):
    """What [`rnnsearch_backward`][refmem.attention.rnnsearch.rnnsearch_backward] needs."""

    h: Array["B Tx n2"]
    """The annotations."""
    s0: Array["B n"]
    """The initial state."""
    encoder: EncoderCache
    """The encoder's cache."""
    initial: InitialStateCache
    """The initial state's cache."""
    decoder: DecoderCache
    """The decoder's cache."""
    target: Array["B Ty Ky"]
    """The target tokens as one-hot rows."""
    weights: Array["B Ty"]
    """The target mask as weights."""


class RNNsearchGrads(NamedTuple):
    """The gradients of [`rnnsearch_forward`][refmem.attention.rnnsearch.rnnsearch_forward]'s arguments."""

    params: RNNsearchParams
    """The gradients of the parameters."""


def _rnnsearch(x: Any, y: Any, p: RNNsearchParams, mask: Any, target_mask: Any) -> tuple[RNNsearchOutputs, RNNsearchCache]:
    xp = rx.namespace(p.W_s)
    (h,), ecache = _encoder(x, p.encoder, mask)
    (s0,), icache = _initial_state(h, p.W_s, p.b_s)
    (probs, alpha, s), dcache = _decoder(y, h, s0, p.decoder, ecache.mask, target_mask)
    target = dcache.embedding.onehot  # [B, Ty, Ky]: picks log p(y_i = y_{b,i})
    B, Ty = (int(d) for d in y.shape)
    weights = (xp.ones((B, Ty), dtype=probs.dtype) if target_mask is None
               else xp.astype(_as_bool(target_mask), probs.dtype))
    log_p = xp.stack([st.output.log_p for st in dcache.steps], axis=1)
    ll = xp.sum(target * log_p, axis=-1) * weights  # [B, Ty]
    return RNNsearchOutputs(ll, probs, alpha, s), RNNsearchCache(h, s0, ecache, icache, dcache, target, weights)


def _rnnsearch_back(d_ll: Any, d_p: Any, d_alpha: Any, d_s: Any, cache: RNNsearchCache) -> RNNsearchGrads:
    d_log_p = (d_ll * cache.weights)[:, :, None] * cache.target
    gd = _decoder_back(d_p, d_alpha, d_s, cache.decoder, d_log_p)
    gi = _initial_state_back(gd.s0, cache.initial)
    ge = _encoder_back(gd.h + gi.h, cache.encoder)
    return RNNsearchGrads(RNNsearchParams(ge.params, gi.W_s, gi.b_s, gd.params))


@checked(derive={"D": encoder_input_width, "n2": annotation_width, "l2": maxout_width})
def rnnsearch_forward(params: RNNsearchParams, *, x: Index["B Tx", "Kx"], y: Index["B Ty", "Ky"],
                      mask: Mask["B Tx"] | None = None,
                      target_mask: Mask["B Ty"] | None = None) -> tuple[RNNsearchOutputs, RNNsearchCache]:
    """The whole RNNsearch under teacher forcing and its log-likelihood, SPEC §7.

    Encoder, `s_0`, the decoder reading the reference `y_{i-1}`, and
    `log_likelihood_{b,i} = target_mask_{b,i} log p(y_i = y_{b,i})` (its row sum is the sentence's
    log-likelihood, the paper's objective).

    Args:
        params: an [`RNNsearchParams`][refmem.attention.rnnsearch.RNNsearchParams].
        x: `[B, Tx]` source token indices in `[0, Kx)` (integers; not differentiated; keyword-only).
        y: `[B, Ty]` target token indices in `[0, Ky)` (integers; not differentiated; keyword-only).
        mask: `None` or `[B, Tx]`, the source mask (0: padding; keyword-only).
        target_mask: `None` or `[B, Ty]`, the target mask (0: padding, left out of the likelihood;
            keyword-only).

    Returns:
        outputs: an [`RNNsearchOutputs`][refmem.attention.rnnsearch.RNNsearchOutputs]
            `(log_likelihood [B, Ty], p [B, Ty, Ky], alpha [B, Ty, Tx], s [B, Ty, n])`.
        cache: an [`RNNsearchCache`][refmem.attention.rnnsearch.RNNsearchCache].
    """
    _require_full(params.decoder, "params.decoder.")
    return _rnnsearch(x, y, params, mask, target_mask)


@checked
def rnnsearch_backward(d_out: RNNsearchOutputs, cache: RNNsearchCache) -> RNNsearchGrads:
    """VJP of [`rnnsearch_forward`][refmem.attention.rnnsearch.rnnsearch_forward].

    Args:
        d_out: an [`RNNsearchOutputs`][refmem.attention.rnnsearch.RNNsearchOutputs] (or a 4-tuple):
            the gradients of `log_likelihood [B, Ty]`, `p [B, Ty, Ky]`, `alpha [B, Ty, Tx]` and
            `s [B, Ty, n]`, each `None` for zero.
        cache: the [`RNNsearchCache`][refmem.attention.rnnsearch.RNNsearchCache] of the forward.

    Returns:
        grads: an [`RNNsearchGrads`][refmem.attention.rnnsearch.RNNsearchGrads] whose `params` is an
            [`RNNsearchParams`][refmem.attention.rnnsearch.RNNsearchParams] of gradients.

    Derivation: [docs/derivations/rnnsearch.md, "10. The whole model and its log-likelihood"](../derivations/rnnsearch.md#10-the-whole-model-and-its-log-likelihood)
    """
    xp = rx.namespace(cache.h)
    d_ll = xp.zeros_like(cache.weights) if d_out[0] is None else d_out[0]
    return _rnnsearch_back(d_ll, *_d_decoder(tuple(d_out[1:]), cache.decoder), cache)
