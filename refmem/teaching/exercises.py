"""Exercises graded by refmem: the learner writes a backward pass, refmem says what is wrong.

An [`Exercise`][refmem.teaching.exercises.Exercise] is one backward pass of the specification,
written by the learner in the form of [the backward rule](../conventions.md),
`f_backward(d_out, cache) -> FGrads`. Its reference solution is a module of
`refmem.teaching.solutions`: the given forward, and the backward between the lines
`# --- solution ---` and `# --- end of solution ---`. [`starter`][refmem.teaching.exercises.starter]
writes that module with the region reduced to its comments (the derivation's headings, each
followed by the names the step defines) and a `raise NotImplementedError`.

[`grade`][refmem.teaching.exercises.grade] imports a learner's file and

1. runs its forward and backward on the inputs and cotangents of the exercise's golden cases
   and compares outputs and gradients with the golden tensors
   ([`refmem.golden.compare`][refmem.golden.compare]: per-tensor tolerances and the first
   divergence, named with its SPEC reference);
2. traces the local variables of the learner's backward (on the first golden case) and compares
   every one named as in the derivation (`d_sorted_usage`, `d_c_total`, ...) with the reference
   solution's, in the order the reference completes them: the first that differs is the first
   wrong intermediate, named with the derivation step it belongs to;
3. runs the gradient check of SPEC §6 ([`refmem.gradcheck.check_case`][refmem.gradcheck.check_case],
   central differences and, where the forward is analytic, the complex step) at another seed, so
   that a backward fitted to the golden inputs fails;
4. runs the exercise's extra probes (a zero factor, ...) against the reference solution;
5. when anything failed, runs every catalogued mistake (the reference solution with one textual
   change, which must occur exactly once, as the mutants of `tests/differential_mutants.py`)
   on the golden cases and names each whose gradients equal the learner's.

A file that cannot be graded (it does not import, names no exercise, lacks the function, has
another signature, or its backward raises or returns another type) raises
[`SubmissionError`][refmem.teaching.exercises.SubmissionError], one line that names the file
and the line where it applies.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib.util
import inspect
import math
import os
import sys
import traceback
import types
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

__all__ = ["Mistake", "Exercise", "SubmissionError", "Grade", "EXERCISES", "get", "names", "solution_source",
           "starter", "starter_name", "load_submission", "load_solution", "mutant", "grade"]

SOLUTIONS = Path(__file__).resolve().parent / "solutions"
BEGIN = "# --- solution ---"
END = "# --- end of solution ---"


class SubmissionError(Exception):
    """A learner's file that cannot be graded; the message is one line naming the file."""


@dataclass(frozen=True)
class Mistake:
    """A known mistake: the reference solution with ``old`` replaced by ``new`` (exactly once).

    Attributes:
        name: a short identifier (`inclusive_cumprod`).
        title: what the mistake is, as the report says it ("an inclusive cumulative product").
        old: the text of the reference solution that the mistake changes (must occur once).
        new: what the mistake writes instead.
        explain: one or two sentences: why it is wrong, where in the derivation the right line is.
    """

    name: str
    title: str
    old: str
    new: str
    explain: str


@dataclass(frozen=True)
class Exercise:
    """One backward pass for a learner to write.

    Attributes:
        name: `family/function` (`dnc/allocation`), the argument of `refmem exercise start`.
        function: the backward the learner writes (`allocation_backward`).
        forward: the given forward of the file (`allocation_forward`).
        solution: the module of `refmem.teaching.solutions` holding the reference solution.
        cases: the golden cases it is graded on (names, or prefixes ending in `/` that take every
            case of the manifest under them).
        spec: the SPEC reference of the equation.
        derivation: the derivation section, as a path and anchor under `docs/`.
        summary: one line for `refmem exercise list`.
        grads_type: the name of the `FGrads` type the backward returns.
        call: `call(module, arrays, cotangents) -> (outputs, grads)`: runs the module's forward and
            backward on role-prefixed arrays (`inputs/x`, `params/W`) and bare-named cotangents;
            `outputs` under bare names, `grads` under role-prefixed names.
        mistakes: the catalogue of known mistakes.
        probes: extra points, `(what, make)` with `make() -> (arrays, cotangents)`, where the learner's
            gradients must equal the reference solution's (finite and within rounding).
        gradcheck_cases: the catalogue cases whose forward the gradient check differentiates
            (default: the golden cases).
        level: 1 (a few lines) to 3 (a whole step).
    """

    name: str
    function: str
    forward: str
    solution: str
    cases: tuple[str, ...]
    spec: str
    derivation: str
    summary: str
    grads_type: str
    call: Callable[[Any, Mapping[str, Any], Mapping[str, Any]], tuple[dict[str, Any], dict[str, Any]]]
    mistakes: tuple[Mistake, ...] = ()
    probes: tuple[tuple[str, Callable[[], tuple[dict[str, Any], dict[str, Any]]]], ...] = ()
    gradcheck_cases: tuple[str, ...] = ()
    level: int = 1

    @property
    def family(self) -> str:
        return self.name.split("/")[0]


# ----------------------------------------------------------------------------- calling a module


def _where(path: str | None) -> str:
    """`` (FILE, line N)`` of the innermost frame of the current exception inside ``path``, or ``""``."""
    if not path:
        return ""
    frames = traceback.extract_tb(sys.exc_info()[2])
    for fr in reversed(frames):
        if os.path.abspath(fr.filename) == os.path.abspath(path):
            return f" ({os.path.basename(path)}, line {fr.lineno})"
    return ""


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _run(module: Any, fn: str, *args: Any, **kwargs: Any) -> Any:
    """``module.fn(*args, **kwargs)``; an exception inside becomes a `SubmissionError` naming ``fn``."""
    f = getattr(module, fn)
    try:
        return f(*args, **kwargs)
    except (KeyboardInterrupt, SubmissionError):
        raise
    except BaseException as exc:  # noqa: BLE001 - anything the learner's code raises, SystemExit too
        path = getattr(module, "__file__", None)
        given = "" if fn.endswith("_backward") else " (the given forward)"
        raise SubmissionError(f"{_label(module)}: {fn}{given} raised {_one_line(exc)}{_where(path)}") from None


def _label(module: Any) -> str:
    path = getattr(module, "__file__", None)
    return path if path and not path.startswith("<") else getattr(module, "__name__", "the solution")


def backward(module: Any, fn: str, grads_type: type, d_out: Any, cache: Any) -> Any:
    """Call the learner's ``fn(d_out, cache)`` and check that it returns a ``grads_type``."""
    g = _run(module, fn, d_out, cache)
    if not isinstance(g, grads_type):
        fields = ", ".join(grads_type._fields)
        if isinstance(g, tuple) and len(g) == len(grads_type._fields) and not hasattr(g, "_fields"):
            hint = f"; wrap it: return {grads_type.__name__}(...)"
        else:
            hint = ""
        got = type(g).__name__ if not isinstance(g, tuple) else f"a {type(g).__name__} of {len(g)}"
        raise SubmissionError(f"{_label(module)}: {fn} returned {got}, expected a {grads_type.__name__}({fields}) "
                              f"(the backward rule: one FGrads named after the forward's arguments){hint}")
    return g


def _forward(module: Any, fn: str, *args: Any, **kwargs: Any) -> Any:
    out = _run(module, fn, *args, **kwargs)
    if not (isinstance(out, tuple) and len(out) == 2):
        raise SubmissionError(f"{_label(module)}: {fn} (the given forward) returned {type(out).__name__}, "
                              "expected (outputs, cache); restore it from refmem exercise start")
    return out


# ----------------------------------------------------------------------------- the exercises


def _primitives_softmax(mod, a, cot):
    from refmem import primitives as P

    out, cache = _forward(mod, "softmax_forward", a["inputs/x"], axis=-1)
    g = backward(mod, "softmax_backward", P.SoftmaxGrads, P.SoftmaxOutputs(cot.get("out")), cache)
    return {"out": out.out}, {"inputs/x": g.x}


def _primitives_cumprod(mod, a, cot):
    from refmem import primitives as P

    out, cache = _forward(mod, "exclusive_cumprod_forward", a["inputs/x"], axis=-1)
    g = backward(mod, "exclusive_cumprod_backward", P.ExclusiveCumprodGrads,
                 P.ExclusiveCumprodOutputs(cot.get("out")), cache)
    return {"out": out.out}, {"inputs/x": g.x}


def _cumprod_zero_factor():
    """`x` with a factor of exactly 0 (a fully used slot), and one of exactly 1."""
    x = np.array([[0.5, 0.0, 0.8, 0.3, 0.9], [0.7, 0.2, 1.0, 0.0, 0.4]])
    cot = np.array([[0.3, -1.2, 0.7, 0.5, -0.4], [1.1, 0.2, -0.6, 0.9, 0.8]])
    return {"inputs/x": x}, {"out": cot}


def _primitives_linear(mod, a, cot):
    from refmem import primitives as P

    out, cache = _forward(mod, "linear_forward", a["inputs/x"], a["params/W"], a["params/b"])
    g = backward(mod, "linear_backward", P.LinearGrads, P.LinearOutputs(cot.get("out")), cache)
    return {"out": out.out}, {"inputs/x": g.x, "params/W": g.W, "params/b": g.b}


def _memory_lstm_step(mod, a, cot):
    from refmem import memory_lstm as L

    params = L.Params(*(a[f"params/{k}"] for k in L.Params._fields))
    out, cache = _forward(mod, "step_forward", a["inputs/x"], a["state/h_prev"], a["state/memory_prev"], params)
    d_out = L.StepOutputs(h=cot.get("h"), c=cot.get("c"), memory=cot.get("memory"))
    g = backward(mod, "step_backward", L.StepGrads, d_out, cache)
    if not isinstance(g.params, L.Params):
        raise SubmissionError(f"{_label(mod)}: step_backward returned params of type {type(g.params).__name__}, "
                              "expected a Params of gradients (the same field names)")
    grads = {"inputs/x": g.x, "state/h_prev": g.h_prev, "state/memory_prev": g.memory_prev}
    grads.update({f"params/{k}": v for k, v in zip(L.Params._fields, g.params)})
    return {"h": out.h, "c": out.c, "memory": out.memory}, grads


def _bahdanau_step(mod, a, cot):
    from refmem.attention import bahdanau as BA

    params = BA.DecoderParams(*(a[f"params/{k}"] for k in BA.DecoderParams._fields))
    output_state = a.get("_output_state", "previous")
    out, caches = _forward(mod, "decoder_forward", a["inputs/h"], params, output_state=output_state)
    d_out = BA.DecoderOutputs(y=cot.get("y"), alpha=cot.get("alpha"), s=cot.get("s"))

    def step_backward(d: Any, cache: Any) -> Any:
        return backward(mod, "decoder_step_backward", BA.DecoderStepGrads, d, cache)

    g = _run(mod, "decoder_backward", d_out, caches, step_backward)
    grads = {"inputs/h": g.h}
    grads.update({f"params/{k}": v for k, v in zip(BA.DecoderParams._fields, g.params)})
    return {"y": out.y, "alpha": out.alpha, "s": out.s}, grads


def _dnc_allocation(mod, a, cot):
    from refmem.dnc import addressing as A

    out, cache = _forward(mod, "allocation_forward", a["inputs/usage"])
    g = backward(mod, "allocation_backward", A.AllocationGrads, A.AllocationOutputs(cot.get("allocation")), cache)
    return {"allocation": out.allocation}, {"inputs/usage": g.usage}


def _dnc_usage(mod, a, cot):
    from refmem.dnc import addressing as A

    out, cache = _forward(mod, "usage_forward", a["inputs/prev_usage"], a["inputs/prev_write_weights"],
                          a["inputs/free_gates"], a["inputs/prev_read_weights"],
                          convention=a.get("_convention", "deepmind"))
    g = backward(mod, "usage_backward", A.UsageGrads, A.UsageOutputs(cot.get("usage"), cot.get("retention")), cache)
    return ({"usage": out.usage},
            {"inputs/prev_usage": g.prev_usage, "inputs/prev_write_weights": g.prev_write_weights,
             "inputs/free_gates": g.free_gates, "inputs/prev_read_weights": g.prev_read_weights})


def _dnc_temporal_linkage(mod, a, cot):
    from refmem.dnc import addressing as A

    out, cache = _forward(mod, "temporal_linkage_forward", a["inputs/prev_link"], a["inputs/prev_precedence"],
                          a["inputs/write_weights"])
    d_out = A.TemporalLinkageOutputs(cot.get("link"), cot.get("precedence"))
    g = backward(mod, "temporal_linkage_backward", A.TemporalLinkageGrads, d_out, cache)
    return ({"link": out.link, "precedence": out.precedence},
            {"inputs/prev_link": g.prev_link, "inputs/prev_precedence": g.prev_precedence,
             "inputs/write_weights": g.write_weights})


EXERCISES: dict[str, Exercise] = {ex.name: ex for ex in (
    Exercise(
        name="primitives/softmax", function="softmax_backward", forward="softmax_forward",
        solution="primitives_softmax", cases=("primitives/softmax/default",), spec="SPEC §1 softmax",
        derivation="derivations/primitives.md#3-softmax", grads_type="SoftmaxGrads", level=1,
        summary="the softmax's vector-Jacobian product, diag(s) - s sᵀ without forming it",
        call=_primitives_softmax,
        mistakes=(
            Mistake("diagonal_only", "only the diagonal of the Jacobian",
                    "d_x = s * (g - g_dot_s)", "d_x = g * s * (1.0 - s)",
                    "s_i depends on every x_k, not only on x_i: the Jacobian is diag(s) - s sᵀ, so "
                    "x̄_k = s_k (g_k - Σ_i g_i s_i); g ∘ s ∘ (1 - s) is the sigmoid's derivative."),
            Mistake("sum_everything", "the sum taken over the whole array, not along the axis",
                    "xp.sum(g * s, axis=axis, keepdims=True)", "xp.sum(g * s)",
                    "Σ_i g_i s_i runs over the softmax's own axis only; summing over the batch too mixes "
                    "the rows of the batch."),
            Mistake("missing_s", "the factor s_k left out",
                    "d_x = s * (g - g_dot_s)", "d_x = g - g_dot_s",
                    "∂s_i/∂x_k = s_i (δ_ik - s_k): the factor s comes from differentiating the exponential."),
        )),
    Exercise(
        name="primitives/exclusive_cumprod", function="exclusive_cumprod_backward",
        forward="exclusive_cumprod_forward", solution="primitives_exclusive_cumprod",
        cases=("primitives/exclusive_cumprod/default",), spec="SPEC §1 exclusive cumulative product",
        derivation="derivations/primitives.md#5-exclusive-cumulative-product", grads_type="ExclusiveCumprodGrads",
        level=2, summary="the gradient of y_j = Π_{i<j} x_i, exact when a factor is 0 (no division)",
        call=_primitives_cumprod,
        probes=(("a factor of exactly 0 (a fully used slot) and one of exactly 1", _cumprod_zero_factor),),
        mistakes=(
            Mistake("inclusive_cumprod", "an inclusive cumulative product",
                    "y = xp.concat([ones, xp.cumulative_prod(x[..., :-1], axis=-1)], axis=-1)\n    d_x = y * S",
                    "y = xp.cumulative_prod(x, axis=-1)\n    d_x = y * S",
                    "x̄_i = y_i S_i with y_i = Π_{k<i} x_k, the exclusive product (it excludes x_i itself); "
                    "the inclusive Π_{k≤i} x_k multiplies in the factor being differentiated."),
            Mistake("divide_by_x", "the shortcut ∂y_j/∂x_i = y_j / x_i",
                    "    d_x = y * S\n",
                    "    d_x = xp.stack([xp.sum(g[..., i + 1:] * y[..., i + 1:], axis=-1) / x[..., i]\n"
                    "                    for i in range(n)], axis=-1)\n",
                    "dividing by x_i gives NaN (0/0) or infinity where a factor is 0, a usage of exactly 1 in "
                    "the DNC; the reverse recurrence S_i = g_{i+1} + x_{i+1} S_{i+1} needs no division."),
            Mistake("shifted_recurrence", "the recurrence shifted by one (S_i includes g_i)",
                    "S.append(g[..., i + 1] + x[..., i + 1] * S[-1])",
                    "S.append(g[..., i] + x[..., i + 1] * S[-1])",
                    "y_j contains x_i only for j > i, so S_i sums g_j over j > i: S_i = g_{i+1} + x_{i+1} S_{i+1}."),
        )),
    Exercise(
        name="primitives/linear", function="linear_backward", forward="linear_forward",
        solution="primitives_linear", cases=("primitives/linear/default",), spec="SPEC §1 linear map",
        derivation="derivations/primitives.md#6-linear-map", grads_type="LinearGrads", level=1,
        summary="x @ W + b: the three gradients, each shared parameter summed over the rows",
        call=_primitives_linear,
        mistakes=(
            Mistake("transposed_weight", "a transposed weight (W̄ computed as gᵀ x, reshaped to W's shape)",
                    "d_W = xp.matrix_transpose(x) @ g",
                    "d_W = xp.reshape(xp.matrix_transpose(g) @ x, (x.shape[-1], g.shape[-1]))",
                    "out = x W, so W̄ = xᵀ g, of shape [D_in, D_out]; gᵀ x is [D_out, D_in], W̄ transposed "
                    "(reshaping it to W's shape hides the error from a shape check, not from the values)."),
            Mistake("bias_not_summed", "the bias gradient of one row, not summed over the batch",
                    "d_b = xp.sum(g, axis=0)", "d_b = g[0]",
                    "b is shared by every row p of the batch, so its gradient is the sum of the rows' "
                    "gradients: b̄ = Σ_p g_p."),
            Mistake("bias_mean", "the bias gradient averaged over the batch",
                    "d_b = xp.sum(g, axis=0)", "d_b = xp.mean(g, axis=0)",
                    "the loss sums over the batch rows (no 1/B here), so each shared parameter's gradient is "
                    "a sum: b̄ = Σ_p g_p."),
        )),
    Exercise(
        name="memory_lstm/step", function="step_backward", forward="step_forward",
        solution="memory_lstm_step", cases=("memory_lstm/step/default",), spec="SPEC §4",
        derivation="derivations/memory_lstm.md#1-one-step-step_backwardd_out-cache", grads_type="StepGrads", level=3,
        summary="one step of the LSTM memory cell: gates, the slot attention, the memory shift",
        call=_memory_lstm_step,
        mistakes=(
            Mistake("missing_shift", "the memory shift left out (slot k of memory_prev is slot k + 1 of memory)",
                    "    d_memory_prev = d_memory_prev + shifted\n", "",
                    "memory = [c ; memory_prev[:, :M-1]], so slot k of memory_prev also receives the gradient "
                    "of slot k + 1 of memory (derivation step 4)."),
            Mistake("newest_slot", "c's gradient through the newest memory slot left out",
                    "+ d_memory[:, 0, :] + d_c", "+ d_c",
                    "c is used three times: in h, as memory[:, 0] and as an output of its own; the three "
                    "contributions add in d_c_total (derivation step 1)."),
            Mistake("transposed_weight", "a transposed weight (h̄_prev += ā_f U_f instead of ā_f U_fᵀ)",
                    "d_h_prev = d_h_prev + d_a @ T(U)", "d_h_prev = d_h_prev + d_a @ (U if g == \"f\" else T(U))",
                    "a_f = h_prev U_f + ..., so h̄_prev receives ā_f U_fᵀ (derivation step 6); U_f is square "
                    "[H, H], so the transposed product has the right shape and the wrong values."),
            Mistake("tanh_of_c", "tanh' taken at the wrong place (1 - c² instead of 1 - tanh² c)",
                    "d_h * o * (1.0 - tanh_c * tanh_c)", "d_h * o * (1.0 - (f * u + i * c_tilde) ** 2)",
                    "h = o ∘ tanh(c): its derivative with respect to c is o ∘ (1 - tanh² c), written with the "
                    "cached tanh_c, not with c itself."),
            Mistake("softmax_as_sigmoid", "the slot softmax differentiated like a sigmoid",
                    "d_a_e = e * (d_e - xp.sum(d_e * e, axis=-1, keepdims=True))", "d_a_e = d_e * e * (1.0 - e)",
                    "e is a softmax over the M slots: ā_e = e ∘ (ē - Σ_k ē_k e_k), the Jacobian diag(e) - e eᵀ "
                    "(derivation step 5)."),
        )),
)}


def _register_families() -> None:
    """Add the attention and DNC exercises (their 0.2 API: `DecoderStepOutputs`, `AllocationGrads`, ...)."""
    more = []
    more.append(Exercise(
        name="attention/bahdanau_step", function="decoder_step_backward", forward="decoder_step_forward",
        solution="attention_bahdanau_step",
        cases=("attention/bahdanau_decoder/previous", "attention/bahdanau_decoder/current"),
        spec="SPEC §2 eqs. 1-8", derivation="derivations/attention.md#1-the-bahdanau-decoder-spec-2-one-step",
        grads_type="DecoderStepGrads", level=3,
        summary="one Bahdanau decoder step (eqs. 8 back to 1); the given loop runs it through time",
        call=_bahdanau_step,
        mistakes=(
            Mistake("U_p_reads_s_prev", "U_p's gradient read from s_prev instead of r ∘ s_prev",
                    "T(C.rs) @ d_pp", "T(C.s_prev) @ d_pp",
                    "eq. 6 multiplies U_p by rs = r ∘ s_prev: the reset gate sits inside the product, so "
                    "Ū_p = rsᵀ d_pp."),
            Mistake("current_as_previous", "eq. 8's s_t differentiated as s_{t-1} ('current' read as 'previous')",
                    "    if C.output_state == \"current\":\n", "    if False:\n",
                    "with output_state='current', eq. 8 reads s_t itself: its gradient joins d_s before eq. 7 "
                    "is differentiated (the same state feeds the output and the next step); only "
                    "'previous' sends it to s_{t-1}."),
            Mistake("no_context_attention", "the context's path into the attention weights left out",
                    "d_alpha = d_alpha_c if d_alpha is None else d_alpha + d_alpha_c",
                    "d_alpha = xp.zeros_like(d_alpha_c) if d_alpha is None else d_alpha",
                    "c = Σ_j α_j h_j (eq. 3): ᾱ_j receives c̄ · h_j, the attention's only gradient from the "
                    "state and output."),
            Mistake("transposed_weight", "a transposed weight (s̄_prev += d_sw W_a instead of d_sw W_aᵀ)",
                    "d_s_prev = d_s_prev + d_sw @ T(P.W_a)", "d_s_prev = d_s_prev + d_sw @ P.W_a",
                    "e = tanh(s_prev W_a + ...) V_a (eq. 1): s̄_prev = d_sw W_aᵀ; W_a is square [H, H], so "
                    "the transposed product has the right shape and the wrong values."),
            Mistake("z_sign", "the update gate's gradient with the wrong sign (s_prev - p)",
                    "d_z = d_s * (C.p - C.s_prev)", "d_z = d_s * (C.s_prev - C.p)",
                    "s = (1 - z) s_prev + z p (eq. 7), so ∂s/∂z = p - s_prev."),
        )))
    more.append(Exercise(
        name="dnc/allocation", function="allocation_backward", forward="allocation_forward",
        solution="dnc_allocation", cases=("dnc/allocation/",), spec="SPEC §5 step 3",
        derivation="derivations/dnc.md#3-allocation-step-3-allocation_forward", grads_type="AllocationGrads",
        level=2, summary="the allocation weights: through the sort (held constant) and the exclusive product",
        call=_dnc_allocation,
        mistakes=(
            Mistake("unsort_not_gather", "the un-sort applied to the gradient instead of its inverse",
                    "d_sorted_allocation = xp.take_along_axis(d_allocation, cache.perm, axis=-1)",
                    "d_sorted_allocation = P.unsort(d_allocation, cache.perm, axis=-1)",
                    "the forward un-sorts with φ; the gradient goes back through the inverse "
                    "permutation: gather with φ (a permutation's transpose is its inverse)."),
            Mistake("su_sn_coupling", "s^u = 1 - s^n forgotten (the product's gradient not sent to s^n)",
                    "    d_sorted_nonusage = d_sorted_nonusage - d_sorted_usage\n", "",
                    "the sorted usages are 1 - the sorted non-usages: the product's gradient reaches s^n with "
                    "a minus sign."),
            Mistake("nonusage_sign", "the sign of nonusage = 1 - û dropped",
                    "d_usage = -(1.0 - cache.eps) * d_nonusage", "d_usage = (1.0 - cache.eps) * d_nonusage",
                    "nonusage = 1 - û and û = ε + (1 - ε) u, so ∂ nonusage/∂u = -(1 - ε)."),
            Mistake("missing_eps", "the (1 - ε) of û = ε + (1 - ε) u left out",
                    "d_usage = -(1.0 - cache.eps) * d_nonusage", "d_usage = -d_nonusage",
                    "û = ε + (1 - ε) u: the chain rule multiplies by 1 - ε (a relative error of 1e-6, far "
                    "above float64's tolerance)."),
            Mistake("inclusive_cumprod", "an inclusive cumulative product",
                    "d_sorted_usage = P.exclusive_cumprod_vjp(d_prod, cache.sorted_usage, -1)",
                    "d_sorted_usage = P.exclusive_cumprod_vjp(d_prod * cache.sorted_usage, cache.sorted_usage, -1)"
                    " + d_prod * cache.prod_sorted_usage",
                    "prod_sorted_usage_j = Π_{i<j} s^u_i excludes s^u_j itself (SPEC §5 step 3); this is the "
                    "backward of the inclusive Π_{i≤j} s^u_i, which gives s^u_j a gradient from its own "
                    "position j."),
        )))
    more.append(Exercise(
        name="dnc/usage", function="usage_backward", forward="usage_forward",
        solution="dnc_usage", cases=("dnc/usage/deepmind", "dnc/usage/paper"), spec="SPEC §5 step 1",
        derivation="derivations/dnc.md#2-usage-step-1-usage_forward", grads_type="UsageGrads", level=2,
        summary="the usage update, products without division, and deepmind's stop-gradient",
        call=_dnc_usage,
        mistakes=(
            Mistake("missing_stop_gradient", "a missing stop-gradient (deepmind's tf.stop_gradient)",
                    "    if cache.stop:\n", "    if False:\n",
                    "under the deepmind convention the usage reads the previous write weights through "
                    "tf.stop_gradient: their gradient is exactly 0 (SPEC §5 conventions; the paper "
                    "convention differentiates it)."),
            Mistake("retention_forgotten", "the retention ψ left out of u_{t-1}'s gradient",
                    "d_after_write = d_usage * cache.retention", "d_after_write = d_usage",
                    "u_t = u' ∘ ψ: every gradient that reaches u' is multiplied by ψ first."),
            Mistake("free_gate_sign", "the free gates' gradient with the wrong sign",
                    "d_free_gates = -xp.sum(d_free_factors * cache.prev_read_weights, axis=-1)",
                    "d_free_gates = xp.sum(d_free_factors * cache.prev_read_weights, axis=-1)",
                    "free_factors = 1 - f_r w^r_r: ∂/∂f_r = -w^r_r."),
        )))
    more.append(Exercise(
        name="dnc/temporal_linkage", function="temporal_linkage_backward", forward="temporal_linkage_forward",
        solution="dnc_temporal_linkage", cases=("dnc/temporal_linkage/",), spec="SPEC §5 step 6",
        derivation="derivations/dnc.md#6-link-and-precedence-step-6-temporal_linkage_forward",
        grads_type="TemporalLinkageGrads", level=2,
        summary="the link matrix and the precedence: w^w in its row and column roles, the zero diagonal",
        call=_dnc_temporal_linkage,
        mistakes=(
            Mistake("column_role", "w^w's column role left out (only L[i, :] differentiated)",
                    "    d_ww = d_ww - xp.sum(g * cache.prev_link, axis=-2)\n", "",
                    "w^w[j] also scales L_{t-1}[i, j] as the column index: (1 - w^w[i] - w^w[j]); its "
                    "gradient sums over the rows i."),
            Mistake("transposed_link", "a transposed link in the column role",
                    "d_ww = d_ww - xp.sum(g * cache.prev_link, axis=-2)",
                    "d_ww = d_ww - xp.sum(g * cache.prev_link, axis=-1)",
                    "in the column role w^w[j] multiplies L[i, j] for every i: sum over i (axis -2), "
                    "g[i, j] L[i, j], not over j."),
            Mistake("diagonal_kept", "the diagonal's gradient kept (L_t[i, i] is the constant 0)",
                    "g = d_link * off_diagonal", "g = d_link",
                    "L_t[i, i] = 0 whatever the inputs, so its upstream gradient must be dropped before it "
                    "reaches L_{t-1}, w^w and p_{t-1}."),
            Mistake("precedence_sum", "the precedence's write sum differentiated without the sum",
                    "d_ww = d_ww + d_precedence - xp.sum(d_precedence * cache.prev_precedence, axis=-1,"
                    " keepdims=True)",
                    "d_ww = d_ww + d_precedence - d_precedence * cache.prev_precedence",
                    "p_t = (1 - Σ_i w^w[i]) p_{t-1} + w^w: every w^w[i] scales every p_{t-1}[j], so its "
                    "gradient is d_p[i] - Σ_j d_p[j] p_{t-1}[j]."),
        )))
    for ex in more:
        EXERCISES.setdefault(ex.name, ex)


_register_families()


def names() -> list[str]:
    """Every exercise name, in listing order."""
    return list(EXERCISES)


def get(name: str) -> Exercise:
    """The exercise ``name``; `KeyError` naming the known ones."""
    try:
        return EXERCISES[name]
    except KeyError:
        raise KeyError(f"no exercise named {name!r}; known: {', '.join(EXERCISES)}") from None


def solution_source(ex: Exercise) -> str:
    """The source of the reference solution module of ``ex``."""
    return (SOLUTIONS / f"{ex.solution}.py").read_text(encoding="utf-8")


def _region(src: str) -> tuple[int, int, list[str]]:
    """``(first, last, lines)``: the line indices of the solution markers (0-based) and the lines."""
    lines = src.splitlines(keepends=True)
    begin = [i for i, ln in enumerate(lines) if ln.strip() == BEGIN]
    end = [i for i, ln in enumerate(lines) if ln.strip() == END]
    if len(begin) != 1 or len(end) != 1 or begin[0] > end[0]:
        raise ValueError("a solution module holds exactly one '# --- solution ---' ... '# --- end of solution ---'")
    return begin[0], end[0], lines


def _assigned(code: str) -> list[tuple[int, str]]:
    """``(line, name)`` of every simple name assigned in ``code`` (targets of =, +=, for)."""
    tree = ast.parse(code)
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        targets: list[Any] = []
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, (ast.AugAssign, ast.AnnAssign)):
            targets = [node.target]
        for t in targets:
            for n in ast.walk(t):
                if isinstance(n, ast.Name):
                    found.append((node.lineno, n.id))
    return sorted(found)


def _traceable(name: str) -> bool:
    """Whether the grader compares a local of this name: gradients (`d_...`, `g_...`) and the named
    partial results of a derivation (`S`, `shifted`)."""
    return name.startswith(("d_", "g_")) or name in ("S", "shifted")


def _parse(ex: Exercise) -> tuple[list[tuple[str, list[str]]], list[tuple[str, str]]]:
    """``(steps, traced)`` of the reference solution: every step's heading with the traceable names it
    assigns first, and ``(name, heading)`` of every traceable name in the order the reference
    completes it (its last assignment)."""
    src = solution_source(ex)
    first, last, lines = _region(src)
    heads: list[str] = []
    head_at: dict[int, int] = {}  # 1-based line -> index into heads
    for i in range(first + 1, last):
        raw = lines[i].strip()
        if raw.startswith("#"):
            text = raw[1:]
            if heads and text.startswith("    "):  # a continuation line of the heading above
                heads[-1] += " " + text.strip()
            else:
                heads.append(text.strip())
        head_at[i + 1] = len(heads) - 1
    defined: list[list[str]] = [[] for _ in heads]
    first_head: dict[str, int] = {}
    last_line: dict[str, int] = {}
    for lineno, n in _assigned(src):
        if not (first + 1 < lineno <= last) or not _traceable(n) or head_at.get(lineno, -1) < 0:
            continue
        k = head_at[lineno]
        if n not in first_head:
            first_head[n] = k
            defined[k].append(n)
        last_line[n] = lineno
    traced = []
    for n in sorted(last_line, key=lambda k: (last_line[k], k)):
        done, began = heads[head_at[last_line[n]]], heads[first_head[n]]
        traced.append((n, done if done == began else f"{done} (begun in {_short(began)})"))
    return list(zip(heads, defined)), traced


def _short(heading: str) -> str:
    """A heading up to its first colon (`Step 3 (4.4)`)."""
    return heading.split(":")[0].strip()


def steps(ex: Exercise) -> list[tuple[str, list[str]]]:
    """The derivation's steps of the reference solution: ``(heading, names it defines first)``, in order."""
    return _parse(ex)[0]


def traced_names(ex: Exercise) -> list[tuple[str, str]]:
    """``(name, heading)`` of the intermediate gradients the grader compares, in the order the reference
    completes them (its last assignment), each with the heading of the step that first assigns it."""
    return _parse(ex)[1]


def starter_name(ex: Exercise) -> str:
    """The file name `refmem exercise start` writes (`dnc_allocation.py`)."""
    return ex.name.replace("/", "_") + ".py"


def starter(ex: Exercise) -> str:
    """The starter file of ``ex``: the reference module with the solution region reduced to its
    comments, each step followed by the names it defines, and a `raise NotImplementedError`."""
    first, last, lines = _region(solution_source(ex))
    indent = lines[first][: len(lines[first]) - len(lines[first].lstrip())]
    body = [f"{indent}# Your backward. The steps of the derivation (docs/{ex.derivation.split('#')[0]}),\n",
            f"{indent}# with the names refmem compares when you use them:\n"]
    for heading, defined in steps(ex):
        body.append(f"{indent}# {heading}\n")
        if defined:
            body.append(f"{indent}#     -> {', '.join(defined)}\n")
    body.append(f"{indent}raise NotImplementedError(\"write {ex.function}: refmem exercise check this file grades "
                f"it\")\n")
    return "".join(lines[:first] + body + lines[last + 1:])


# ----------------------------------------------------------------------------- loading modules


def load_submission(path: str | os.PathLike) -> tuple[Any, Exercise]:
    """Import the learner's file at ``path``; `(module, exercise)` or a `SubmissionError`."""
    p = Path(path)
    if not p.exists():
        raise SubmissionError(f"{path}: no such file")
    if not p.is_file():
        raise SubmissionError(f"{path}: not a file")
    name = f"refmem_exercise_{abs(hash(str(p.resolve())))}"
    try:
        source = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SubmissionError(f"{path}: cannot be read ({_one_line(exc)})") from None
    module = types.ModuleType(name)
    module.__file__ = str(p)
    try:
        code = compile(source, str(p), "exec")
    except SyntaxError as exc:
        raise SubmissionError(f"{path} does not import: SyntaxError: {exc.msg} (line {exc.lineno})") from None
    sys.path.insert(0, str(p.resolve().parent))
    try:
        exec(code, module.__dict__)  # noqa: S102 - the learner's own file
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # noqa: BLE001
        raise SubmissionError(f"{path} does not import: {_one_line(exc)}{_where(str(p))}") from None
    finally:
        try:
            sys.path.remove(str(p.resolve().parent))
        except ValueError:
            pass
    declared = module.__dict__.get("EXERCISE")
    if declared is None:
        guess = [ex for ex in EXERCISES.values() if callable(module.__dict__.get(ex.function))]
        if len(guess) != 1:
            raise SubmissionError(f"{path} names no exercise: add a line EXERCISE = \"<name>\" (one of "
                                  f"{', '.join(EXERCISES)}), as refmem exercise start writes it")
        ex = guess[0]
    else:
        if declared not in EXERCISES:
            raise SubmissionError(f"{path}: EXERCISE = {declared!r} is no exercise; expected one of "
                                  f"{', '.join(EXERCISES)}")
        ex = EXERCISES[declared]
    for fn, role in ((ex.function, "the backward you write"), (ex.forward, "the given forward")):
        f = module.__dict__.get(fn)
        if not callable(f):
            raise SubmissionError(f"{path} defines no function {fn}, {role} (restore it from "
                                  f"refmem exercise start {ex.name})")
    try:
        params = list(inspect.signature(module.__dict__[ex.function]).parameters.values())
    except (TypeError, ValueError):
        params = None
    if params is not None:
        positional = [q for q in params if q.kind in (q.POSITIONAL_ONLY, q.POSITIONAL_OR_KEYWORD)]
        required = [q for q in params if q.default is q.empty and q.kind not in (q.VAR_POSITIONAL, q.VAR_KEYWORD)]
        if len(positional) < 2 or len(required) > 2 or any(q.kind is q.KEYWORD_ONLY for q in required):
            got = ", ".join(q.name for q in params)
            raise SubmissionError(f"{path}: {ex.function} takes ({got}), expected ({ex.function}(d_out, cache)): "
                                  "exactly two parameters, the upstream gradients and the forward's cache")
    return module, ex


def _module_from_source(source: str, name: str, filename: str) -> Any:
    module = types.ModuleType(name)
    module.__file__ = filename
    exec(compile(source, filename, "exec"), module.__dict__)  # noqa: S102 - refmem's own solution text
    return module


def load_solution(ex: Exercise) -> Any:
    """The reference solution module of ``ex``."""
    return _module_from_source(solution_source(ex), f"refmem_solution_{ex.solution}", f"<solution {ex.name}>")


def mutant(ex: Exercise, mistake: Mistake) -> Any:
    """The reference solution with ``mistake`` planted; `ValueError` unless its text occurs exactly once."""
    src = solution_source(ex)
    first, last, lines = _region(src)
    region = "".join(lines[first:last + 1])
    if region.count(mistake.old) != 1:
        raise ValueError(f"mistake {ex.name}:{mistake.name}: {mistake.old!r} occurs {region.count(mistake.old)} "
                         "times in the solution, expected once")
    planted = "".join(lines[:first]) + region.replace(mistake.old, mistake.new) + "".join(lines[last + 1:])
    return _module_from_source(planted, f"refmem_mistake_{ex.solution}_{mistake.name}",
                               f"<mistake {mistake.name} of {ex.name}>")


# ----------------------------------------------------------------------------- the golden cases


def golden_cases(ex: Exercise, directory: str | os.PathLike | None = None) -> list[str]:
    """The golden case names of ``ex`` present in the manifest (prefixes ending in `/` expanded)."""
    from refmem.golden import read_manifest

    have = list(read_manifest(directory)["cases"])
    out: list[str] = []
    for pattern in ex.cases:
        if pattern.endswith("/"):
            out += [c for c in sorted(have) if c.startswith(pattern)]
        elif pattern in have:
            out.append(pattern)
    return list(dict.fromkeys(out))


def _arrays_of(golden: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    arrays = {f"{role}/{k}": v for role in ("inputs", "params", "state") for k, v in getattr(golden, role).items()}
    config = golden.config or {}
    if "output_state" in config:
        arrays["_output_state"] = config["output_state"]
    if "convention" in config:
        arrays["_convention"] = config["convention"]
    return arrays, dict(golden.cotangents)


def _config_of(case: Any, arrays: dict[str, Any]) -> dict[str, Any]:
    out = dict(arrays)
    config = dict(case.config or {})
    if "output_state" in config:
        out["_output_state"] = config["output_state"]
    if "convention" in config:
        out["_convention"] = config["convention"]
    return out


# ----------------------------------------------------------------------------- tracing


class _Tracer:
    """Records the local variables of the first call of ``code`` at its return."""

    def __init__(self, code: Any):
        self.code = code
        self.locals: dict[str, Any] | None = None
        self._previous: Any = None

    def _profile(self, frame: Any, event: str, arg: Any) -> None:
        if event == "return" and frame.f_code is self.code and self.locals is None:
            self.locals = dict(frame.f_locals)

    def __enter__(self) -> "_Tracer":
        self._previous = sys.getprofile()
        sys.setprofile(self._profile)
        return self

    def __exit__(self, *exc: Any) -> None:
        sys.setprofile(self._previous)


def _traced(ex: Exercise, module: Any, arrays: Mapping[str, Any], cot: Mapping[str, Any]) -> tuple[dict, dict, dict]:
    fn = getattr(module, ex.function)
    code = getattr(inspect.unwrap(fn), "__code__", None)
    tracer = _Tracer(code)
    with tracer:
        outputs, grads = ex.call(module, arrays, cot)
    return outputs, grads, tracer.locals or {}


# ----------------------------------------------------------------------------- grading


def _host(v: Any) -> np.ndarray | None:
    if v is None:
        return None
    try:
        from refmem.golden import comparison

        return comparison.to_host(v)
    except Exception:  # noqa: BLE001
        return None


def _close(a: Any, r: Any, rtol: float = 1e-7) -> bool:
    """Whether ``a`` equals the reference ``r`` up to float64 rounding of a different order of operations."""
    a, r = _host(a), _host(r)
    if a is None or r is None or a.shape != r.shape or a.dtype.kind not in "fc" or r.dtype.kind not in "fc":
        return False
    a, r = a.astype(np.complex128).real if a.dtype.kind == "c" else a.astype(np.float64), r.astype(np.float64)
    if not np.array_equal(np.isfinite(a), np.isfinite(r)):
        return False
    fin = np.isfinite(r)
    if not fin.any():
        return True
    scale = float(np.max(np.abs(r[fin]))) if r.size else 0.0
    return bool(np.all(np.abs(a[fin] - r[fin]) <= 1e-12 + 1e-9 * scale + rtol * np.abs(r[fin])))


def _worst(a: Any, r: Any) -> str:
    a, r = _host(a), _host(r)
    if a is None:
        return "not an array"
    if r is None:
        return ""
    if a.shape != r.shape:
        return f"shape {list(a.shape)}, expected {list(r.shape)}"
    a = a.astype(np.float64)
    bad = ~np.isfinite(a)
    if bad.any():
        idx = np.unravel_index(int(np.argmax(bad)), a.shape)
        return f"{'NaN' if np.isnan(a[idx]) else 'inf'} at {list(map(int, idx))}"
    diff = np.abs(a - r)
    idx = np.unravel_index(int(np.argmax(diff)), a.shape) if diff.size else ()
    return f"at {list(map(int, idx))}: reference {r[idx]:.6g}, yours {a[idx]:.6g}"


@dataclass
class Intermediate:
    """One traced intermediate gradient: its name, the derivation step, and how it compares."""

    name: str
    step: str
    status: str  # "ok", "FAIL", "absent"
    detail: str = ""


@dataclass
class Grade:
    """The graded file: every comparison, the first wrong quantity and the recognised mistakes."""

    exercise: Exercise
    path: str
    golden: list[tuple[str, Any]] = field(default_factory=list)
    intermediates: list[Intermediate] = field(default_factory=list)
    traced_case: str = ""
    gradcheck: list[Any] = field(default_factory=list)
    probes: list[tuple[str, bool, str]] = field(default_factory=list)
    mistakes: list[Mistake] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def first_wrong(self) -> Intermediate | None:
        return next((i for i in self.intermediates if i.status == "FAIL"), None)

    @property
    def golden_passed(self) -> bool:
        return all(rep.passed for _, rep in self.golden)

    @property
    def passed(self) -> bool:
        return (bool(self.golden) and self.golden_passed and all(r.passed for r in self.gradcheck)
                and all(ok for _, ok, _ in self.probes))

    def as_json(self) -> dict[str, Any]:
        """The grade as JSON-able data (`refmem exercise check --json`)."""
        return {
            "exercise": self.exercise.name, "file": self.path, "passed": self.passed,
            "golden": [{"case": name, "passed": rep.passed,
                        "first_divergence": rep.divergences[name].message if name in rep.divergences else None,
                        "tensors": [{"tensor": r.tensor, "passed": r.passed, "ratio": _json_num(r.ratio),
                                     "note": r.note} for r in rep.rows],
                        "problems": list(rep.problems)} for name, rep in self.golden],
            "intermediates": [dataclasses.asdict(i) for i in self.intermediates],
            "first_wrong_intermediate": self.first_wrong.name if self.first_wrong else None,
            "traced_case": self.traced_case,
            "gradcheck": [{"case": r.case, "tensor": r.tensor, "method": r.method, "passed": r.passed,
                           "normwise_rel_err": _json_num(r.normwise_rel_err)} for r in self.gradcheck],
            "probes": [{"what": w, "passed": ok, "detail": d} for w, ok, d in self.probes],
            "mistakes": [{"name": m.name, "title": m.title, "explain": m.explain} for m in self.mistakes],
            "notes": list(self.notes),
        }


def _json_num(x: float) -> float | None:
    return None if x != x or x in (math.inf, -math.inf) else float(x)


def _gradcheck(ex: Exercise, module: Any, case_names: list[str], seed: int) -> list[Any]:
    from refmem import catalogue, gradcheck
    from refmem import xp as rx

    xp = rx.backend("numpy")
    records = []
    for name in (ex.gradcheck_cases or case_names):
        case = catalogue.get_case(name)

        def bwd(arrays: Mapping[str, Any], cot: Mapping[str, Any], frozen: Any = None, case: Any = case) -> dict:
            return ex.call(module, _config_of(case, dict(arrays)), cot)[1]

        methods = ("central", "complex") if case.complex_step else ("central",)
        records += gradcheck.check_case(dataclasses.replace(case, backward=bwd), xp, seed=seed, methods=methods)
    return records


def grade(path: str | os.PathLike, seed: int = 1, golden_dir: str | os.PathLike | None = None,
          gradcheck: bool = True) -> Grade:
    """Grade the learner's file at ``path`` (see the module docstring); `SubmissionError` when it cannot be.

    ``seed``: the seed of the gradient check's inputs (the golden tensors are at seed 0);
    ``gradcheck=False`` leaves the gradient check out (the golden tensors, the intermediates, the
    probes and the catalogue of mistakes remain).
    """
    module, ex = load_submission(path)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a wrong backward's overflow or 0/0 shows in the report, once
        return _grade(module, ex, str(path), seed, golden_dir, gradcheck)


def _grade(module: Any, ex: Exercise, path: str, seed: int, golden_dir: str | os.PathLike | None,
           gradcheck: bool) -> Grade:
    from refmem.golden import compare, load

    result = Grade(ex, path)
    names = golden_cases(ex, golden_dir)
    if not names:
        raise SubmissionError(f"no golden case of exercise {ex.name} in the golden directory ({', '.join(ex.cases)})")
    reference = load_solution(ex)
    learner_runs: dict[str, dict[str, Any]] = {}
    for name in names:
        golden = load(name, golden_dir)
        arrays, cot = _arrays_of(golden)
        outputs, grads, local = _traced(ex, module, arrays, cot)
        _, _, ref_local = _traced(ex, reference, arrays, cot)
        compared = _compare_locals(ex, local, ref_local)
        if not result.intermediates or (not any(i.status == "FAIL" for i in result.intermediates)
                                        and any(i.status == "FAIL" for i in compared)):
            result.intermediates, result.traced_case = compared, name
        learner_runs[name] = grads
        results = {f"outputs/{k}": v for k, v in outputs.items() if v is not None}
        results.update({f"grads/{k}": v for k, v in grads.items() if v is not None})
        result.golden.append((name, compare(golden, results, "float64")))
    if gradcheck:
        result.gradcheck = _gradcheck(ex, module, names, seed)
    for what, make in ex.probes:
        arrays, cot = make()
        _, mine = ex.call(module, arrays, cot)
        _, ref = ex.call(reference, arrays, cot)
        bad = [k for k in ref if not _close(mine.get(k), ref[k])]
        result.probes.append((what, not bad, "; ".join(f"{k} {_worst(mine.get(k), ref[k])}" for k in bad)))
    if not result.passed:
        result.mistakes = _recognise(ex, learner_runs, golden_dir)
    if not any(i.status != "absent" for i in result.intermediates) and result.intermediates:
        result.notes.append("none of your local variables has a name of the derivation, so only the results were "
                            "compared; name them as the comments of the starter do to have each step checked")
    return result


def _compare_locals(ex: Exercise, local: Mapping[str, Any], ref_local: Mapping[str, Any]) -> list[Intermediate]:
    out = []
    for name, step in traced_names(ex):
        ref = ref_local.get(name)
        if _host(ref) is None or getattr(_host(ref), "dtype", np.dtype(object)).kind not in "fc":
            continue
        mine = local.get(name)
        if mine is None or _host(mine) is None:
            out.append(Intermediate(name, step, "absent"))
            continue
        ok = _close(mine, ref)
        out.append(Intermediate(name, step, "ok" if ok else "FAIL", "" if ok else _worst(mine, ref)))
    return out


def _recognise(ex: Exercise, learner_runs: Mapping[str, Mapping[str, Any]],
               golden_dir: str | os.PathLike | None) -> list[Mistake]:
    """The catalogued mistakes whose gradients equal the learner's on every golden case."""
    from refmem.golden import load

    found = []
    for m in ex.mistakes:
        bad = mutant(ex, m)
        same = True
        for name, mine in learner_runs.items():
            arrays, cot = _arrays_of(load(name, golden_dir))
            try:
                _, theirs = ex.call(bad, arrays, cot)
            except SubmissionError:
                same = False
                break
            if set(theirs) != set(mine) or not all(_close(mine[k], theirs[k], rtol=1e-6) for k in theirs):
                same = False
                break
        if same:
            found.append(m)
    return found


# ----------------------------------------------------------------------------- the report


def render(g: Grade) -> list[tuple[str, str]]:
    """The report as ``(style, text)`` lines; style is ``""``, ``"ok"``, ``"fail"``, ``"head"`` or ``"hint"``."""
    ex = g.exercise
    out: list[tuple[str, str]] = [
        ("head", f"exercise {ex.name}: {ex.function}(d_out, cache), {ex.spec}"),
        ("", f"derivation: docs/{ex.derivation}"),
        ("", ""),
        ("head", "golden tensors (float64)"),
    ]
    for name, rep in g.golden:
        bad = [r for r in rep.rows if not r.passed]
        if rep.passed:
            out.append(("ok", f"  ok    {name}: {len(rep.rows)} tensors agree"))
            continue
        out.append(("fail", f"  FAIL  {name}: {len(bad)} of {len(rep.rows)} tensors differ"))
        for r in bad:
            out.append(("fail", f"          {r.tensor}  {r.note}"))
        for p in rep.problems:
            out.append(("fail", f"          {p}"))
        if name in rep.divergences:
            out.append(("fail", f"        {rep.divergences[name].message}"))
    if g.intermediates:
        where = f" (case {g.traced_case}" + (", the first call" if ex.name == "attention/bahdanau_step" else "") + ")"
        out += [("", ""), ("head", "your intermediate gradients, in the order the derivation completes them" + where)]
        first = g.first_wrong
        for i in g.intermediates:
            if i.status == "absent":
                out.append(("", f"  -     {i.name:<18} {_short(i.step)} (you named it otherwise)"))
            elif i.status == "ok":
                out.append(("ok", f"  ok    {i.name:<18} {_short(i.step)}"))
            else:
                tag = "first wrong" if i is first else "wrong"
                out.append(("fail", f"  FAIL  {i.name:<18} {i.step if i is first else _short(i.step)}"))
                out.append(("fail", f"          {tag}: {i.detail}"))
    if g.gradcheck:
        out += [("", ""), ("head", "gradient check (SPEC §6) at another seed")]
        by_method: dict[tuple[str, str], list[Any]] = {}
        for r in g.gradcheck:
            by_method.setdefault((r.case, r.method), []).append(r)
        for (case, method), recs in by_method.items():
            good = [r for r in recs if r.passed]
            what = "central differences" if method == "central" else "complex step" if method == "complex" else method
            if good:
                worst = max(r.normwise_rel_err for r in good)
                out.append(("ok", f"  ok    {case}, {what}: {len(good)} of {len(recs)} tensors agree "
                                  f"(norm-wise relative error <= {worst:.1e})"))
            for r in recs:
                if not r.passed:
                    err = "nan" if r.normwise_rel_err != r.normwise_rel_err else f"{r.normwise_rel_err:.1e}"
                    out.append(("fail", f"  FAIL  {case}, {what}: {r.tensor}, norm-wise relative error {err}"))
    for what, ok, detail in g.probes:
        out.append(("ok" if ok else "fail", f"  {'ok  ' if ok else 'FAIL'}  {what}" + (f": {detail}" if detail else "")))
    for m in g.mistakes:
        out += [("", ""), ("hint", f"known mistake: {m.title}"), ("hint", f"  {m.explain}")]
    for n in g.notes:
        out += [("", ""), ("", f"note: {n}")]
    out.append(("", ""))
    if g.passed:
        out.append(("ok", f"PASS: {ex.function} agrees with the golden tensors and the gradient check"))
        if g.first_wrong is not None:
            out.append(("", f"(your {g.first_wrong.name} differs from the derivation's, but your gradients are right:"
                            " it may mean something else in your derivation)"))
    else:
        what = []
        if g.first_wrong is not None:
            what.append(f"first wrong intermediate {g.first_wrong.name} ({_short(g.first_wrong.step)})")
        for name, rep in g.golden:
            if name in rep.divergences:
                d = rep.divergences[name]
                what.append(f"first wrong tensor {d.tensor} ({d.spec})")
                break
        if g.mistakes:
            what.append(f"looks like: {g.mistakes[0].title}")
        out.append(("fail", "FAIL" + (": " + "; ".join(what) if what else "")))
    return out
