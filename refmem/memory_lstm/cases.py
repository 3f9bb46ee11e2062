"""Catalogue cases of SPEC §4, the LSTM memory cell (module ``memory_lstm``).

* ``memory_lstm/step/default``: one step; takes ``inputs/x [B, D]``,
  ``state/h_prev [B, H]``, ``state/memory_prev [B, M, H]`` and ``params/<name>``
  for every field of [`Params`][refmem.memory_lstm.Params]; returns ``h``, ``c``, ``memory``.
* ``memory_lstm/unroll/default``: ``T`` steps; takes ``inputs/x [B, T, D]``,
  ``state/h0 [B, H]``, ``state/memory0 [B, M, H]`` and the parameters; returns
  ``h [B, T, H]``, ``c [B, T, H]`` and the final ``memory [B, M, H]``.

The cell is smooth everywhere (sigmoid, tanh, softmax, products), so there is no
kink to avoid and the complex step applies. Parameters are drawn at a scale that
keeps the gates away from saturation, with non-zero biases so that their
gradients are exercised.
"""

from __future__ import annotations

from typing import Any

from .. import xp as rx
from ..catalogue import Case, Forward
from ..sampling import Sampler
from . import model as L

PARAM_KEYS = [f"params/{name}" for name in L.Params._fields]

#: Sampling scales: matrices ``N(0, WEIGHT_SCALE² / fan_in)``, biases ``N(0, BIAS_SCALE²)``,
#: inputs ``N(0, X_SCALE²)``, hidden state ``U(-H_RANGE, H_RANGE)``, memory slots ``N(0, MEMORY_SCALE²)``.
WEIGHT_SCALE = 0.6
BIAS_SCALE = 0.2
X_SCALE = 1.0
MEMORY_SCALE = 0.7
H_RANGE = 0.9


def _sample_params(s: Sampler, D: int, H: int, M: int) -> dict[str, Any]:
    out = {}
    for name, shape in L.param_shapes(D, H, M).items():
        scale = BIAS_SCALE if len(shape) == 1 else WEIGHT_SCALE / max(shape[0], 1) ** 0.5
        out[f"params/{name}"] = s.normal(shape, scale=scale)
    return out


def _params(arrays: dict[str, Any]) -> L.Params:
    return L.Params(*(arrays[k] for k in PARAM_KEYS))


def _param_grads(grads: L.Params) -> dict[str, Any]:
    return {f"params/{name}": g for name, g in zip(L.Params._fields, grads)}


#: The order of one step (SPEC §4's symbols); the unroll adds the final memory after the loop.
STEP_ORDER: tuple[tuple[str, str], ...] = (
    ("intermediates/i", "SPEC §4 input gate i"),
    ("intermediates/f", "SPEC §4 forget gate f"),
    ("intermediates/o", "SPEC §4 output gate o"),
    ("intermediates/c_tilde", "SPEC §4 candidate c~"),
    ("intermediates/e", "SPEC §4 slot weights e"),
    ("intermediates/m", "SPEC §4 memory read m"),
    ("outputs/c", "SPEC §4 cell c"),
    ("outputs/h", "SPEC §4 hidden h"),
)
_MEMORY = ("outputs/memory", "SPEC §4 memory (newest first)")


def step_intermediates(cache: L.StepCache) -> dict[str, Any]:
    """``i, f, o, c_tilde [B, H]``, ``e [B, M]`` and ``m = Σ_k e_k memory_prev[:, k] [B, H]`` of one step."""
    xp = rx.namespace(cache.e)
    m = xp.sum(cache.e[:, :, None] * cache.memory_prev, axis=1)  # as the step computes it (4.4)
    return {"i": cache.i, "f": cache.f, "o": cache.o, "c_tilde": cache.c_tilde, "e": cache.e, "m": m}


def unroll_intermediates(cache: L.UnrollCache) -> dict[str, Any]:
    """[`step_intermediates`][refmem.memory_lstm.cases.step_intermediates] of every step, stacked right after the batch axis (``[B, T, ...]``)."""
    steps = [step_intermediates(c) for c in cache.steps]
    xp = rx.namespace(cache.steps[0].e)
    return {k: xp.stack([d[k] for d in steps], axis=1) for k in steps[0]}


def _step_case() -> Case:
    def sample(xp, seed, sizes):
        s = Sampler(xp, seed)
        B, D, H, M = sizes["B"], sizes["D"], sizes["H"], sizes["M"]
        arrays = {
            "inputs/x": s.normal((B, D), scale=X_SCALE),
            "state/h_prev": s.uniform((B, H), -H_RANGE, H_RANGE),
            "state/memory_prev": s.normal((B, M, H), scale=MEMORY_SCALE),
        }
        arrays.update(_sample_params(s, D, H, M))
        return arrays

    def run(arrays):
        return L.step_forward(arrays["inputs/x"], arrays["state/h_prev"], arrays["state/memory_prev"], _params(arrays))

    def fwd(arrays, frozen=None):
        out, cache = run(arrays)
        return Forward({"h": out.h, "c": out.c, "memory": out.memory}, trace=lambda: step_intermediates(cache))

    def bwd(arrays, cot):
        _, cache = run(arrays)
        g = L.step_backward(L.StepOutputs(h=cot["h"], c=cot["c"], memory=cot["memory"]), cache)
        return {"inputs/x": g.x, "state/h_prev": g.h_prev, "state/memory_prev": g.memory_prev, **_param_grads(g.params)}

    return Case(
        name="memory_lstm/step/default",
        spec="SPEC §4",
        function="refmem.memory_lstm.step_forward",
        sample=sample,
        forward=fwd,
        backward=bwd,
        sizes={"B": 2, "D": 3, "H": 4, "M": 3},
        kinks="none: the cell is smooth",
        order=STEP_ORDER + (_MEMORY,),
    )


def _unroll_case() -> Case:
    def sample(xp, seed, sizes):
        s = Sampler(xp, seed)
        B, T, D, H, M = sizes["B"], sizes["T"], sizes["D"], sizes["H"], sizes["M"]
        arrays = {
            "inputs/x": s.normal((B, T, D), scale=X_SCALE),
            "state/h0": s.uniform((B, H), -H_RANGE, H_RANGE),
            "state/memory0": s.normal((B, M, H), scale=MEMORY_SCALE),
        }
        arrays.update(_sample_params(s, D, H, M))
        return arrays

    def run(arrays):
        return L.unroll_forward(arrays["inputs/x"], _params(arrays), arrays["state/h0"], arrays["state/memory0"])

    def fwd(arrays, frozen=None):
        out, cache = run(arrays)
        return Forward({"h": out.h, "c": out.c, "memory": out.memory}, trace=lambda: unroll_intermediates(cache))

    def bwd(arrays, cot):
        _, cache = run(arrays)
        g = L.unroll_backward(L.UnrollOutputs(h=cot["h"], memory=cot["memory"], c=cot["c"]), cache)
        return {"inputs/x": g.x, "state/h0": g.h0, "state/memory0": g.memory0, **_param_grads(g.params)}

    return Case(
        name="memory_lstm/unroll/default",
        spec="SPEC §4 (unrolled over T steps, BPTT)",
        function="refmem.memory_lstm.unroll_forward",
        sample=sample,
        forward=fwd,
        backward=bwd,
        sizes={"B": 2, "T": 3, "D": 3, "H": 4, "M": 3},
        kinks="none: the cell is smooth",
        order=STEP_ORDER + (_MEMORY,),
        per_step=frozenset(n for n, _ in STEP_ORDER),
    )


#: Place of this family in the catalogue listing (see `refmem.catalogue`).
ORDER = 20

CASES: list[Case] = [_step_case(), _unroll_case()]
