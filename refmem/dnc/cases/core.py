"""Catalogue cases ``dnc/core_unroll/<variant>`` (SPEC §5 Core, the golden format's ``core_unroll`` row).

Variants ([`VARIANTS`][refmem.dnc.cases.core.VARIANTS]; the catalogue's [`CASES`][refmem.dnc.cases.core.CASES] are all but ``clip_deepmind``, whose clip
is inactive and which ``tests/test_dnc_core.py`` checks):

* ``deepmind``: single LSTM controller, ``deepmind`` convention (deepmind/dnc);
* ``paper``: single controller, ``paper`` convention;
* ``deep_deepmind``: three-layer controller with skip connections (seed 003's ``DNCoreDeepLSTM``);
* ``deep_noskip_deepmind``: three layers, ``skip=False``;
* ``clip_deepmind``: ``clip_value = 20`` as deepmind/dnc's ``train.py``; the sampled values
  stay inside the clip range (SPEC §6), so every clip passes its gradient and the path is analytic;
* ``state_deepmind`` / ``state_paper``: a random valid initial state ``state/...`` (not
  zeros), so the gradients reaching the initial state are checked too;
* ``clip_active_deepmind`` (zero state, ``T = 3``) / ``clip_active_state_paper`` (sampled state):
  ``clip_value = 0.5`` ([`CLIP_ACTIVE`][refmem.dnc.cases.core.CLIP_ACTIVE]), active: the sampler keeps drawing until some ``h``,
  some ``c`` and some ``y`` elements lie outside the range and every clipped quantity is at least
  [`CLIP_MARGIN`][refmem.dnc.cases.core.CLIP_MARGIN] from the clip edges (the gradient through a clipped element is 0);
* the Csordás & Schmidhuber options (SPEC §5): ``masked_content_deepmind``, ``deallocation_deepmind``,
  ``link_sharpness_deepmind``, ``all_deepmind``, the same one at a time in the paper convention
  (``masked_content_paper``, ``deallocation_paper``, ``link_sharpness_paper``) and ``all_paper`` (all
  three options), each from the zero state.

Tensors: ``inputs/x [B, T, D]``; ``params/W_lstm1 ... b_y`` (names of
[`refmem.dnc.params.named`][refmem.dnc.params.named]); the initial state ``state/memory``, ``state/read_weights``,
``state/write_weights``, ``state/link``, ``state/precedence``, ``state/usage``,
``state/read_vectors [B, R, W]``, ``state/h1``, ``state/c1``, ... per controller layer
(all zeros, SPEC §5's initial state, except in the ``state_*`` variants). At the zero
state the usage is a tie of every slot, a kink of the allocation sort, so ``state/usage``
(and, under the paper convention's exact usage gradient, ``state/write_weights``) are
``nondiff`` there. Outputs ``y [B, T, Y]`` and ``read_vectors [B, T, R, W]``.

Under the ``deepmind`` convention the forward records the previous write weights of
every step (``frozen["prev_write_weights"] [B, T, nw, N]``) and uses them when called
with ``frozen=``: the usage gradient w.r.t. them is stopped.

Kinks: the allocation sort and, in the ``clip_active_*`` variants, the clip edges (kept
[`CLIP_MARGIN`][refmem.dnc.cases.core.CLIP_MARGIN] away) are the only kinks on the path. The sampler keeps drawing until every step's sorted free-ness
values of every write head are separated by at least ``SORT_GAP`` or tied
*structurally* (the zero initial usage makes the first step's usages exactly equal,
or equal up to powers of the allocation ``eps``, whatever the parameters; such ties
cannot flip under a perturbation because their order is fixed by the stable sort or by
``eps`` terms proportional to the gates).
"""

import functools
import math

from ... import primitives as P
from ... import xp as rx
from ...catalogue import Case, Forward
from ...sampling import Sampler
from ..access import OPTIONS, AccessState, interface_layout
from ..controller import LSTMState
from ..core import DNCState, UnrollOutputs, initial_state, stops_usage_gradient, unroll_backward, unroll_forward
from ..params import DNCConfig, from_named, named
from .addressing import ACCESS_ORDER, OPTION_VARIANTS, access_intermediates, access_order

__all__ = ["CASES", "SORT_GAP", "config_for", "CORE_ORDER", "core_order", "core_intermediates", "CLIP_MARGIN"]

#: The golden format's order of one ``dnc/core_unroll`` step: the controller output, then the access step's
#: names (its new state under ``intermediates/``, as the core returns only ``y`` and the read vectors),
#: then ``y``. Every entry carries the time axis: ``[B, T, ...]``.
def core_order(options: tuple = ()) -> tuple[tuple[str, str], ...]:
    """[`CORE_ORDER`][refmem.dnc.cases.core.CORE_ORDER] for a core with the access ``options`` enabled (their interface slices
    after the read modes, as [`access_order`][refmem.dnc.cases.addressing.access_order])."""
    return (
        (("intermediates/controller_output", "SPEC §5 Core (controller)"),)
        + tuple((n if n == "outputs/read_vectors" else "intermediates/" + n.split("/", 1)[1], ref)
                for n, ref in access_order(options))
        + (("outputs/y", "SPEC §5 Core (output)"),)
    )


CORE_ORDER: tuple[tuple[str, str], ...] = core_order()


def core_intermediates(cache) -> dict:
    """The intermediates of an unroll (the bare names of [`CORE_ORDER`][refmem.dnc.cases.core.CORE_ORDER] but the outputs), each
    stacked over time right after the batch axis, read from the [`UnrollCache`][refmem.dnc.core.UnrollCache]."""
    xp = rx.namespace(cache.prev_write_weights)
    per_step = []
    for step, after in zip(cache.steps, cache.states):
        d = {"controller_output": step.output.x[:, :step.Hc]}
        d.update(access_intermediates(step.access))
        acc = after.access
        d.update({"usage": acc.usage, "write_weights": acc.write_weights, "memory": acc.memory,
                  "link": acc.link, "precedence": acc.precedence, "read_weights": acc.read_weights})
        per_step.append(d)
    return {k: xp.stack([d[k] for d in per_step], axis=1) for k in per_step[0]}

#: Smallest accepted gap between neighbouring sorted free-ness values that are not structurally tied.
SORT_GAP = 1e-4
#: Gaps below this are the structural ties of a zero initial usage (exact ties and gaps that scale with the
#: allocation's eps = 1e-6): their order is fixed by the stable sort or by eps terms, whatever the perturbation.
_STRUCTURAL = 1e-5

#: Small sizes (SPEC letters): the element-wise check runs one unrolled forward per parameter element.
#: T = 3 from the zero state exercises the link recurrence (L_1 = 0, L_2 = ww_2 p_1ᵀ, L_3 reads L_2);
#: nw = R = 2 exercise the head loops (docs/golden-format.md).
SIZES = {"B": 2, "T": 3, "D": 2, "H": 2, "N": 3, "W": 2, "R": 2, "nw": 2, "Y": 2}
#: The deep controller (wiring of three layers) and the sampled-state variant (which starts from a
#: non-zero link) need only one step boundary: T = 2.
SHORT_SIZES = {"B": 2, "T": 2, "D": 2, "H": 2, "N": 3, "W": 2, "R": 2, "nw": 2, "Y": 2}


def config_for(sizes: dict, convention: str, layers: int = 1, skip: bool = True, clip_value: float = 0.0,
               options: tuple = ()) -> DNCConfig:
    """The [`DNCConfig`][refmem.dnc.params.DNCConfig] of a case at ``sizes`` (SPEC letters), with the access ``options`` enabled."""
    return _config(sizes["D"], sizes["Y"], sizes["H"], sizes["N"], sizes["W"], sizes["R"], sizes["nw"], convention,
                   layers, skip, clip_value, tuple(options))


@functools.lru_cache(maxsize=256, typed=True)  # typed: a size of another type is validated (and refused) anew
def _config(D: int, Y: int, H: int, N: int, W: int, R: int, nw: int, convention: str, layers: int, skip: bool,
            clip_value: float, options: tuple) -> DNCConfig:
    """One validated (frozen) config per combination: the element-wise check rebuilds the config of each of
    its thousands of forward calls from the tensors' shapes."""
    return DNCConfig(D=D, Y=Y, hidden=H, layers=layers, skip=skip, N=N, W=W, R=R, nw=nw, convention=convention,
                     clip_value=clip_value, **{o: True for o in options})


def _state_from(arrays: dict, layers: int) -> DNCState | None:
    if "state/memory" not in arrays:
        return None
    acc = AccessState(*(arrays[f"state/{f}"] for f in AccessState._fields))
    ctrl = tuple(LSTMState(arrays[f"state/h{l + 1}"], arrays[f"state/c{l + 1}"]) for l in range(layers))
    return DNCState(acc, ctrl, arrays["state/read_vectors"])


def _state_to(state: DNCState, layers: int) -> dict:
    out = {f"state/{f}": v for f, v in zip(AccessState._fields, state.access)}
    out["state/read_vectors"] = state.read_vectors
    for l in range(layers):
        out[f"state/h{l + 1}"] = state.controller[l].h
        out[f"state/c{l + 1}"] = state.controller[l].c
    return out


def _sample_state(s: Sampler, cfg: DNCConfig, B: int) -> dict:
    """A valid DNC state in the sampler's namespace: weights sum below 1, link diagonal 0, usages separated."""
    N, W, R, nw, H = cfg.N, cfg.W, cfg.R, cfg.nw, cfg.hidden
    xp = s.xp
    link = s.uniform((B, nw, N, N), 0.02 / N, 1.0 / N)
    link = link * (1.0 - xp.eye(N, dtype=link.dtype))  # exact: every factor is 1 or 0
    lo, hi = 0.05, 0.95
    usage = s.separated((B, N), lo, hi, gap=0.2 * (hi - lo) / N)
    out = {
        "state/memory": s.normal((B, N, W), 0.5),
        "state/read_weights": s.simplex((B, R, N), total=0.9),
        "state/write_weights": s.simplex((B, nw, N), total=0.8),
        "state/link": link,
        "state/precedence": s.simplex((B, nw, N), total=0.7),
        "state/usage": usage,
        "state/read_vectors": s.normal((B, R, W), 0.5),
    }
    for l in range(cfg.layers):
        out[f"state/h{l + 1}"] = s.uniform((B, H), -0.8, 0.8)
        out[f"state/c{l + 1}"] = s.normal((B, H), 0.5)
    return out


#: Interface bias per slice: (mean, std). Write gates lean open and strengths positive so that writes and
#: lookups move the outputs; every other slice is centred.
_BIAS = {"write_vectors": (0.0, 1.0), "erase_vectors": (0.0, 1.0), "free_gates": (0.0, 1.0),
         "allocation_gates": (0.0, 1.0), "write_gates": (1.0, 0.5), "read_modes": (0.0, 1.0),
         "write_keys": (0.0, 1.0), "write_strengths": (1.0, 0.5), "read_keys": (0.0, 1.0),
         "read_strengths": (1.0, 0.5), "write_masks": (0.0, 1.0), "read_masks": (0.0, 1.0),
         "forward_sharpness": (0.0, 1.0), "backward_sharpness": (0.0, 1.0)}


def _sample_params(s: Sampler, cfg: DNCConfig, deep_gain: float = 1.5) -> dict:
    """Parameters that keep the finite differences well conditioned.

    SPEC §6's norm-wise 1e-8 asks for gradients well above the rounding of the outputs
    (about ``ulp(y) / 2**-20``). The draw makes the controller output large (LSTM weights
    ``1.5/sqrt(fan_in)``, input gate bias +1, output gate bias +2, so ``|h_c|`` nears 1), the
    writes and lookups active (`_BIAS`), and the part of ``y`` the memory does not touch
    small (the ``h_c`` rows of ``W_y`` scaled by 0.2, ``b_y`` at 0.05).
    """
    xp = s.xp
    out = {}
    H = cfg.hidden
    for name, shape in cfg.shapes().items():
        if name == "W_y":
            w = s.normal(shape, 1.0 / math.sqrt(shape[0]))
            out["params/W_y"] = xp.concat([w[:cfg.Hc] * 0.2, w[cfg.Hc:]], axis=0)
        elif name == "W_xi":
            out["params/W_xi"] = s.normal(shape, 1.0 / math.sqrt(shape[0]))
        elif name.startswith("W"):
            gain = 1.5 if name == "W_lstm1" else deep_gain
            out[f"params/{name}"] = s.normal(shape, gain / math.sqrt(shape[0]))
        elif name == "b_xi":
            parts = [s.normal((math.prod(shape_),), _BIAS[n][1], _BIAS[n][0])
                     for n, shape_, _ in interface_layout(cfg.access)]
            out["params/b_xi"] = xp.concat(parts, axis=0)
        elif name == "b_y":
            out["params/b_y"] = s.normal(shape, 0.05)
        else:  # an LSTM bias, gates i, j, f, o
            b = s.normal(shape, 0.3)
            out[f"params/{name}"] = xp.concat([b[0:H] + 1.0, b[H:3 * H], b[3 * H:] + 2.0], axis=0)
    # sums of float32 values are float32-representable only by luck: round once more
    return {k: xp.astype(xp.astype(v, xp.float32), xp.float64) for k, v in out.items()}


def config_from(arrays: dict, convention: str, layers: int, skip: bool, clip_value: float,
                options: tuple = ()) -> DNCConfig:
    """Recover the sizes from the tensors: ``N, W`` from ``state/memory``, ``R`` from ``state/read_vectors``,
    ``nw`` from ``state/write_weights``, ``H`` from ``params/b_lstm1``, ``D`` and ``Y`` from ``x`` and ``W_y``."""
    B, N, W = (int(s) for s in arrays["state/memory"].shape)
    z = {"D": int(arrays["inputs/x"].shape[2]), "Y": int(arrays["params/W_y"].shape[1]),
         "H": int(arrays["params/b_lstm1"].shape[0]) // 4, "N": N, "W": W,
         "R": int(arrays["state/read_vectors"].shape[1]), "nw": int(arrays["state/write_weights"].shape[1])}
    return config_for(z, convention, layers, skip, clip_value, options)


def gaps_ok(cache) -> bool:
    """Every neighbouring gap of every step's and head's sorted free-ness is structural (< 1e-5) or >= SORT_GAP."""
    for step in cache.steps:
        for head in step.access.write.allocation_cache.heads:
            sn = P.real_part(head.sorted_nonusage)
            if sn.shape[-1] < 2:
                continue
            xp = rx.namespace(sn)
            d = xp.abs(sn[..., 1:] - sn[..., :-1])
            if bool(xp.any((d >= _STRUCTURAL) & (d < SORT_GAP))):
                return False
    return True


#: Smallest distance of any clipped quantity (every layer's ``h`` and ``c``, hence the controller
#: output, and ``y``, before the clip) from the clip edges ``±clip_value`` that a sampler accepts in a
#: variant whose clip is active: far more than a finite-difference step of ``2**-20`` can move them.
CLIP_MARGIN = 0.02


def clip_stats(cache, b_y) -> tuple[float, dict]:
    """``(margin, clipped)``: the smallest ``| |v| - clip |`` over every clipped quantity of every step
    (``h`` and ``c`` of every layer, before the clip; ``y`` before the clip) and the number of elements
    of each kind (``"h"``, ``"c"``, ``"y"``) outside the range. ``inf`` and zeros without clipping."""
    clip = cache.cfg.clip_value
    if not clip > 0:
        return math.inf, {"h": 0, "c": 0, "y": 0}
    margin, clipped = math.inf, {"h": 0, "c": 0, "y": 0}
    for step in cache.steps:
        xp = rx.namespace(step.output.x)
        values = {"y": step.output.x @ step.output.W + b_y}
        for lc in step.controller.layers:
            values.setdefault("h", []).append(lc.o * lc.tanh_c)
            values.setdefault("c", []).append(lc.f * lc.c_prev + lc.i * lc.j)
        for kind, vs in values.items():
            for v in (vs if isinstance(vs, list) else [vs]):
                a = xp.abs(P.real_part(v))
                margin = min(margin, float(xp.min(xp.abs(a - clip))))
                clipped[kind] += int(xp.sum(xp.astype(a > clip, xp.int64)))
    return margin, clipped


def _make(variant: str, convention: str, layers: int = 1, skip: bool = True, clip_value: float = 0.0,
          with_state: bool = False, sizes: dict | None = None, options: tuple = (),
          clip_active: bool = False, deep_gain: float = 1.5) -> Case:
    sizes = dict(sizes or SIZES)
    stopped = stops_usage_gradient(config_for(sizes, convention))

    def accept(cache, arrays) -> bool:
        if not gaps_ok(cache):
            return False
        if not clip_active:
            return True
        margin, clipped = clip_stats(cache, arrays["params/b_y"])
        return margin >= CLIP_MARGIN and all(n > 0 for n in clipped.values())

    def run(arrays: dict, frozen: dict | None = None):
        cfg = config_from(arrays, convention, layers, skip, clip_value, options)
        params = from_named({k.split("/", 1)[1]: v for k, v in arrays.items() if k.startswith("params/")}, cfg)
        state = _state_from(arrays, cfg.layers)
        fw = None if (frozen is None or not stopped) else frozen["prev_write_weights"]
        return unroll_forward(arrays["inputs/x"], params, state, cfg=cfg, frozen_write_weights=fw)

    def sample(xp, seed, z):
        cfg = config_for(z, convention, layers, skip, clip_value, options)
        hp = rx.backend("numpy")  # draws and the rejection test on the host: the same draw on every backend
        s = Sampler(hp, seed)
        B = z["B"]
        for _ in range(200):
            host = {"inputs/x": s.normal((B, z["T"], z["D"]))}
            host.update(_sample_params(s, cfg, deep_gain))
            if with_state:
                host.update(_sample_state(s, cfg, B))
            else:
                host.update(_state_to(initial_state(hp, B, cfg), layers))
            arrays = {k: rx.to_numpy(v) for k, v in host.items()}
            _, cache = run(arrays)
            if accept(cache, arrays):
                return {k: rx.from_numpy(xp, v) for k, v in arrays.items()}
        raise RuntimeError(f"dnc/core_unroll/{variant}: no draw with sorted usages {SORT_GAP} apart"
                           + (f" and every clipped value {CLIP_MARGIN} from the clip edges" if clip_active else "")
                           + f" (seed {seed})")

    def forward(arrays, frozen=None):
        out, cache = run(arrays, frozen)
        recorded = {"prev_write_weights": cache.prev_write_weights} if stopped else {}
        return Forward({"y": out.y, "read_vectors": out.read_vectors}, recorded, lambda: core_intermediates(cache))

    def backward(arrays, cot, frozen=None):
        _, cache = run(arrays, frozen)
        dx, d_params, d_state = unroll_backward(UnrollOutputs(cot["y"], cot["read_vectors"]), cache)
        grads = {"inputs/x": dx}
        grads.update({f"params/{k}": v for k, v in named(d_params).items()})
        grads.update(_state_to(d_state, layers))
        return {k: v for k, v in grads.items() if k not in nondiff}

    if with_state:
        nondiff = frozenset()
        kink_state = ""
    else:
        # The zero initial state is a symmetric point: every memory slot is identical, every usage ties.
        # A perturbation of one slot's access state (memory, usage, weights, link, precedence) breaks the
        # ties of the allocation sort, and the cosine's norm sqrt(|m|^2 + eps) curves on the scale
        # sqrt(eps) = 1e-3 at m = 0; so the access state is not differentiated there. The controller
        # state and the read vectors act on every slot alike and are checked.
        nondiff = frozenset(f"state/{f}" for f in AccessState._fields)
        kink_state = ("; at the zero initial state every slot ties, so the access state tensors are "
                      "nondiff there (the state_* variants check them at a sampled state)")
    config = {"convention": convention, "layers": layers, "skip": skip, "clip_value": clip_value,
              "forget_bias": 1.0, "initial_state": "sampled" if with_state else "zeros",
              **{o: (o in options) for o in OPTIONS}}
    clip_text = ("; the clip is active: draws are repeated until some h, c and y elements lie outside "
                 f"[-clip, clip] and every clipped quantity is at least {CLIP_MARGIN} from the edges (the gradient "
                 "through a clipped element is 0)") if clip_active else "; values stay inside the clip range"
    return Case(
        name=f"dnc/core_unroll/{variant}",
        spec="SPEC §5 Core",
        function="refmem.dnc.core.unroll_forward",
        sample=sample,
        forward=forward,
        backward=backward,
        sizes=sizes,
        # content addressing: a word of 1 makes the cosine a smoothed sign (addressing.py). An active
        # clip: at larger sizes some clipped value almost always lies within the margin of an edge, and
        # at smaller ones nothing may clip, so the rejection sampler finds no draw: sizes stay the defaults
        min_sizes=dict(sizes) if clip_active else {"W": 2},
        max_sizes=dict(sizes) if clip_active else {},
        config=config,
        complex_step=True,
        nondiff=nondiff,
        stopped=("usage w.r.t. the previous write weights (deepmind stop_gradient), frozen at the recorded "
                 "prev_write_weights [B, T, nw, N]") if stopped else "",
        kinks="the allocation sort: draws are repeated until every step's sorted free-ness values are "
              f"{SORT_GAP} apart or structurally tied (gaps below {_STRUCTURAL}, powers of the allocation eps "
              "of a zero initial usage)" + clip_text + kink_state,
        order=core_order(options),
        per_step=frozenset(n for n, _ in core_order(options)),
    )


#: Weight gain (``gain / sqrt(fan_in)``) of controller layers 2 and 3 without skip connections: the
#: gradients of layer 1, the input and the interface then pass through both upper layers, and at the
#: default 1.5 they come out near 1e-3, too close to the finite differences' rounding for SPEC §6's
#: norm-wise 1e-8 (the complex step agreed to 1e-15 at the default gain).
NOSKIP_GAIN = 3.0

#: ``clip_value`` of the ``clip_active_*`` variants: below the ``|h_c|`` near 1 of `_sample_params`,
#: so some controller outputs, cell states and outputs ``y`` clip.
CLIP_ACTIVE = 0.5

#: Every variant, by name; [`CASES`][refmem.dnc.cases.core.CASES] holds the ones the catalogue checks element by element.
VARIANTS: dict[str, Case] = {c.variant: c for c in [
    _make("deepmind", "deepmind"),
    _make("paper", "paper"),
    _make("deep_deepmind", "deepmind", layers=3, sizes=SHORT_SIZES),
    _make("state_deepmind", "deepmind", with_state=True, sizes=SHORT_SIZES),
    _make("deep_noskip_deepmind", "deepmind", layers=3, skip=False, sizes=SHORT_SIZES, deep_gain=NOSKIP_GAIN),
    _make("clip_deepmind", "deepmind", clip_value=20.0),
    _make("state_paper", "paper", with_state=True, sizes=SHORT_SIZES),
    _make("clip_active_deepmind", "deepmind", clip_value=CLIP_ACTIVE, clip_active=True),
    _make("clip_active_state_paper", "paper", clip_value=CLIP_ACTIVE, clip_active=True, with_state=True,
          sizes=SHORT_SIZES),
] + [_make(f"{prefix}_{conv}", conv, options=opts)
     for prefix, opts in OPTION_VARIANTS for conv in ("deepmind", "paper")]}

#: The catalogue's core cases. Each element-wise check runs one unrolled forward per parameter element
#: (about 200-500 here), so the other variants are checked in tests/test_dnc_core.py (directional at
#: several seeds, element-wise on the tensors they add).
CASES: list[Case] = [VARIANTS[v] for v in (
    "deepmind", "paper", "deep_deepmind", "deep_noskip_deepmind", "state_deepmind", "state_paper",
    "clip_active_deepmind", "clip_active_state_paper", "masked_content_deepmind", "deallocation_deepmind",
    "link_sharpness_deepmind", "all_deepmind", "masked_content_paper", "deallocation_paper", "link_sharpness_paper",
    "all_paper")]
