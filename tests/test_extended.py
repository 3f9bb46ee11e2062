"""Exact references (refmem.extended) and machine-independent float32 tolerances (refmem.emulated32, refmem.golden.tolerances).

Issue 11 items 4 and 5: every catalogue case runs end to end in long double; the references are the
long double values rounded once; the emulated float32 is deterministic and BLAS-free; its
tolerances let correct float32 implementations pass and still catch an error of a thousandth of a
tensor's scale in one element, in both dtypes.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from refmem import catalogue, emulated32, extended, golden, gradcheck
from refmem.golden import tolerances
from refmem import xp as rx
from refmem.emulated32 import EmulationError, Namespace, wrap

REPO = Path(__file__).resolve().parent.parent
LD = np.longdouble
EXTENDED = extended.has_extended()
needs_extended = pytest.mark.skipif(not EXTENDED, reason="numpy.longdouble is not extended on this platform")
CASES = catalogue.cases()
IDS = [c.name for c in CASES]


def _sampled(case, seed=0):
    xp = rx.backend("numpy")
    arrays = {k: np.asarray(rx.to_numpy(v)) for k, v in case.draw(xp, seed).items()}
    shapes = {k: np.zeros(np.shape(v)) for k, v in case.forward(arrays).outputs.items()}
    return arrays, gradcheck.cotangents_for(shapes, seed)


def _ld(a):
    return a.astype(LD) if a.dtype.kind == "f" else a


# ----------------------------------------------------------------------------- item 4: long double end to end


@needs_extended
def test_longdouble_is_extended_here():
    fi = np.finfo(np.longdouble)
    assert fi.nmant == 63 and fi.eps == 2.0**-63
    assert extended.extended_bits() == 80
    assert extended.precision(extended.working_dtype()) == "float64, rounded once from an 80-bit long double evaluation"


@needs_extended
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_every_case_runs_in_long_double(case):
    arrays, cot = _sampled(case)
    given = {k: _ld(v) for k, v in arrays.items()}
    fwd = case.forward(given)
    got = {f"outputs/{k}": v for k, v in fwd.outputs.items()}
    got.update({f"intermediates/{k}": v for k, v in (getattr(fwd, "intermediates", None) or {}).items()})
    got.update({f"grads/{k}": v for k, v in case.backward(given, {k: v.astype(LD) for k, v in cot.items()}).items()})
    wrong = {k: str(np.asarray(v).dtype) for k, v in got.items() if np.asarray(v).dtype != LD}
    assert not wrong, f"{case.name}: not long double: {wrong}"
    if case.name in EXACT:  # selections and short sums of float32 numbers: float64 numbers in any precision
        return
    # the values carry more than float64's 53 bits: some element is not a float64 number
    floats = np.concatenate([np.asarray(v).reshape(-1) for v in got.values()])
    assert not np.all(floats.astype(np.float64).astype(LD) == floats), f"{case.name}: values look like float64"


#: Cases whose every result is a selection or a short sum of the float32-representable inputs and
#: cotangents (the embedding lookup and its scatter-add, the maxout), exact in float64 already.
EXACT = frozenset({"attention/rnnsearch_embedding/default", "attention/rnnsearch_maxout/default"})


def _complex_step_ok(case):
    return case.complex_step


@needs_extended
@pytest.mark.parametrize("case", [c for c in CASES if _complex_step_ok(c)], ids=[c.name for c in CASES if _complex_step_ok(c)])
def test_long_double_vjp_agrees_with_long_double_complex_step(case):
    """The backward and the forward are long double on every path: the VJP in a random direction
    matches the complex-step derivative in complex long double to within an ulp or so of long double
    (ε = 5.4e-20), measured against the magnitude of the dot product's terms, ``Σ|g_i u_i|``, the scale
    its rounding works at (against ``|vjp|`` itself the measure grows with the cancellation of the
    random direction: 324 for ``attention/rnnsearch/default``). A float64 step anywhere leaves 8e-18
    and more on that scale (measured, the same direction, float64 backward: 7.9e-18 for the
    Bahdanau decoder, 5.8e-17 for RNNsearch), so 2e-18 tells them apart (long double measures 0 to 4e-19)."""
    arrays, cot = _sampled(case)
    keys = case.differentiable(arrays)
    rng = np.random.default_rng(7)
    u = {k: rng.normal(size=arrays[k].shape).astype(LD) for k in keys}
    given = {k: _ld(v) for k, v in arrays.items()}
    grads = case.backward(given, {k: v.astype(LD) for k, v in cot.items()})
    terms = [np.asarray(grads[k]) * u[k] for k in keys]
    vjp, scale = sum(np.sum(t) for t in terms), sum(np.sum(np.abs(t)) for t in terms)
    frozen = case.forward(given).frozen or None
    h = LD("1e-300")
    z = {k: (given[k].astype(np.clongdouble) + 1j * h * u[k]) if k in u else given[k] for k in given}
    out = case.forward(z, frozen=frozen).outputs if frozen else case.forward(z).outputs
    jterms = [np.imag(np.asarray(out[k])) / h * cot[k].astype(LD) for k in out]
    jvp, scale = sum(np.sum(t) for t in jterms), max(scale, sum(np.sum(np.abs(t)) for t in jterms))
    rel = abs(vjp - jvp) / scale
    assert rel < 2e-18, f"{case.name}: long double VJP and complex step differ by {float(rel):.2e} of their terms' scale"


@needs_extended
@pytest.mark.parametrize("name", ["attention/bahdanau_decoder/previous", "attention/rnnsearch/default",
                                  "dnc/access_step/paper"])
def test_a_float64_backward_fails_the_long_double_agreement(name):
    """The control of the test above: the same measure with the backward run in float64 is beyond 2e-18."""
    case = catalogue.get_case(name)
    arrays, cot = _sampled(case)
    keys = case.differentiable(arrays)
    rng = np.random.default_rng(7)
    u = {k: rng.normal(size=arrays[k].shape).astype(LD) for k in keys}
    grads = case.backward(arrays, cot)  # float64
    terms = [np.asarray(grads[k]).astype(LD) * u[k] for k in keys]
    given = {k: _ld(v) for k, v in arrays.items()}
    exact = case.backward(given, {k: v.astype(LD) for k, v in cot.items()})
    vjp64 = sum(np.sum(t) for t in terms)
    vjp = sum(np.sum(np.asarray(exact[k]) * u[k]) for k in keys)
    assert abs(vjp64 - vjp) / sum(np.sum(np.abs(t)) for t in terms) > 2e-18


@needs_extended
@pytest.mark.parametrize("name", ["primitives/softmax/default", "attention/bahdanau_decoder/previous",
                                  "dnc/access_step/deepmind", "dnc/core_unroll/paper"])
def test_reference_is_the_long_double_value_rounded_once(name):
    case = catalogue.get_case(name)
    arrays, cot = _sampled(case)
    exact = extended.reference(case, arrays, cot, round=False)
    ref = extended.reference(case, arrays, cot)
    assert set(ref) == set(exact) and any(k.startswith("grads/") for k in ref)
    for k, r in ref.items():
        assert r.dtype == np.float64 and r.flags["C_CONTIGUOUS"]
        assert exact[k].dtype == LD
        # within half an ulp of float64, element by element
        err = np.abs(r.astype(LD) - exact[k])
        assert np.all(err <= np.spacing(np.abs(r)).astype(LD) / 2), k


@needs_extended
def test_golden_tensors_matches_a_float64_evaluation_up_to_float64_rounding():
    case = catalogue.get_case("dnc/access_step/paper")
    new = extended.golden_tensors(case, 0)
    arrays, cot = _sampled(case)
    f64 = extended.reference(case, arrays, cot, dtype=np.float64)
    given = golden.reference(case, 0)  # the export's: the very same sampled inputs and cotangents
    for k, v in given.items():
        if k.split("/")[0] in catalogue.ROLES + ("cotangents",):
            assert np.array_equal(new[k], v), k
    assert set(f64) <= set(new)
    for k, v in f64.items():
        scale = max(float(np.max(np.abs(v))), 1.0)
        assert np.max(np.abs(new[k] - v)) <= 64 * np.finfo(np.float64).eps * scale, k
    assert any(not np.array_equal(new[k], f64[k]) for k in f64 if k.startswith("grads/"))


def test_no_extended_type_refuses_unless_allowed(monkeypatch):
    monkeypatch.setattr(extended, "has_extended", lambda: False)
    with pytest.raises(extended.ExtendedPrecisionError, match="no extended-precision type.*allow_float64=True"):
        extended.working_dtype()
    assert extended.working_dtype(allow_float64=True) == np.float64
    assert extended.precision(np.float64) == extended.PRECISION_FLOAT64 == "float64 (no extended type on this platform)"
    case = catalogue.get_case("primitives/tanh/default")
    arrays, cot = _sampled(case)
    with pytest.raises(extended.ExtendedPrecisionError):
        extended.reference(case, arrays, cot)
    out = extended.reference(case, arrays, cot, allow_float64=True)
    assert out["outputs/out"].dtype == np.float64


def test_precision_rejects_other_dtypes():
    with pytest.raises(extended.ExtendedPrecisionError, match="dtype: expected float64 or an extended"):
        extended.precision(np.float32)


@needs_extended
def test_a_result_that_drops_out_of_long_double_is_refused():
    base = catalogue.get_case("primitives/tanh/default")

    def forward(arrays, frozen=None):
        out = base.forward(arrays)
        return catalogue.Forward({k: np.asarray(v).astype(np.float64) for k, v in out.outputs.items()})

    import dataclasses

    case = dataclasses.replace(base, forward=forward)
    arrays, cot = _sampled(base)
    with pytest.raises(extended.ExtendedPrecisionError, match="outputs/out comes out as float64 from float128"):
        extended.reference(case, arrays, cot)


def test_l2_is_the_norm():
    a = np.random.default_rng(0).normal(size=(3, 5, 7))
    assert extended.l2(a) == pytest.approx(float(np.linalg.norm(a.reshape(-1))), rel=4e-16)
    assert extended.l2(np.zeros(0)) == 0.0


# ----------------------------------------------------------------------------- item 5: the emulated float32


def test_emulated_arithmetic_is_correctly_rounded_float32():
    rng = np.random.default_rng(1)
    a = rng.normal(size=200).astype(np.float32)
    b = rng.normal(size=200).astype(np.float32)
    ns = Namespace()
    x, y = wrap(ns, a), wrap(ns, b)
    for got, want in [(x + y, a + b), (x - y, a - b), (x * y, a * b), (x / y, a / b),
                      (ns.sqrt(ns.abs(x)), np.sqrt(np.abs(a))), (2.0 * x, np.float32(2) * a)]:
        assert np.asarray(got).dtype == np.float32
        np.testing.assert_array_equal(np.asarray(got), want)  # IEEE float32: exact operations agree
    e = np.asarray(ns.exp(x))  # within half an ulp of the long double value
    assert np.all(np.abs(e.astype(LD) - np.exp(a.astype(LD))) <= np.spacing(e).astype(LD) / 2)


def test_emulated_reductions_accumulate_sequentially():
    rng = np.random.default_rng(2)
    A = rng.normal(size=(2, 3, 9)).astype(np.float32)
    B = rng.normal(size=(2, 9, 4)).astype(np.float32)
    ns = Namespace()
    got = np.asarray(wrap(ns, A) @ wrap(ns, B))
    acc = (A[:, :, 0, None].astype(LD) * B[:, 0, None, :]).astype(np.float32)
    for k in range(1, 9):
        acc = (acc.astype(LD) + A[:, :, k, None].astype(LD) * B[:, k, None, :].astype(LD)).astype(np.float32)
    np.testing.assert_array_equal(got, acc)
    s = np.asarray(ns.sum(wrap(ns, A), axis=(0, 2)))
    seq = np.zeros(3, dtype=np.float32)
    flat = np.transpose(A, (1, 0, 2)).reshape(3, -1)
    seq = flat[:, 0]
    for k in range(1, flat.shape[1]):
        seq = (seq + flat[:, k]).astype(np.float32)
    np.testing.assert_array_equal(s, seq)
    assert np.asarray(ns.sum(wrap(ns, A), axis=-1, keepdims=True)).shape == (2, 3, 1)


def test_stochastic_rounding_picks_a_neighbour_is_unbiased_and_reproducible():
    y = np.random.default_rng(3).normal(size=20000).astype(LD) / 3
    r1 = Namespace("stochastic", 1).rounded(y)[0]
    r1b = Namespace("stochastic", 1).rounded(y)[0]
    r2 = Namespace("stochastic", 2).rounded(y)[0]
    near = y.astype(np.float32)
    np.testing.assert_array_equal(r1, r1b)
    assert not np.array_equal(r1, r2) and not np.array_equal(r1, near)
    lo = np.minimum(near, np.where(near.astype(LD) > y, np.nextafter(near, np.float32(-np.inf)), near))
    hi = np.maximum(near, np.where(near.astype(LD) < y, np.nextafter(near, np.float32(np.inf)), near))
    assert np.all((r1 == lo) | (r1 == hi))
    # the chance to round away from the nearest is the distance to it, in ulps: 1/4 on average
    assert 0.22 < np.mean(r1 != near) < 0.28
    # unbiased: the rounding errors, in ulps, average to zero (nearest rounding's spread is 0.29 ulp)
    ulps = (r1.astype(LD) - y) / np.spacing(np.abs(near)).astype(LD)
    assert abs(float(np.mean(ulps))) < 0.02 < float(np.std(ulps))


def test_stochastic_rounding_rounds_equal_values_alike():
    """A tie stays a tie: equal exact values round to the same float32 in every operation."""
    ns = Namespace("stochastic", 4)
    third = np.full((4, 5), LD(1) / 3)
    r = ns.rounded(third)[0]
    assert np.all(r == r.flat[0])
    x = wrap(ns, np.full(6, np.float32(0.1)))
    once = np.asarray(1.0 - x)
    assert np.all(once == once[0])
    assert len({float(ns.rounded(np.asarray([LD(1) / 3]))[0, 0]) for _ in range(5)}) == 1


def test_faithful_runs_round_library_functions_to_either_neighbour():
    """A faithful run rounds the result of a library function (exp, tanh, ...) to the farther float32
    neighbour half of the time, whatever the distance; its arithmetic stays stochastic (the farther
    neighbour as often as the distance says: a quarter of the time on average); exact values stay."""
    rng = np.random.default_rng(7)
    x = rng.normal(size=20000).astype(np.float32)
    ns = Namespace("faithful", 1)
    a = wrap(ns, x)
    for got, exact in [(ns.tanh(a), np.tanh(x.astype(LD))), (ns.exp(a), np.exp(x.astype(LD)))]:
        g = np.asarray(got)
        near = exact.astype(np.float32)
        inexact = near.astype(LD) != exact
        far = (g != near) & inexact
        assert np.all((g == near) | far) and 0.47 < far.sum() / inexact.sum() < 0.53
    third = np.asarray(a / 3.0)
    near = (x.astype(LD) / 3).astype(np.float32)
    assert 0.2 < np.mean(third != near) < 0.3  # arithmetic: stochastic rounding
    assert np.asarray(ns.exp(wrap(ns, np.zeros(4, np.float32)))).tolist() == [1.0] * 4  # exact stays exact
    # the faithful run of a seed draws apart from the stochastic run of that seed
    assert not np.array_equal(np.asarray(ns.tanh(a)), np.asarray(Namespace("stochastic", 1).tanh(wrap(Namespace("stochastic", 1), x))))


def test_emulation_refuses_float64():
    ns = Namespace()
    x = wrap(ns, np.ones(3, dtype=np.float32))
    with pytest.raises(EmulationError, match="astype to float64"):
        ns.astype(x, np.float64)
    with pytest.raises(EmulationError, match="produced a float64"):
        wrap(ns, np.ones(3))
    with pytest.raises(EmulationError, match="has no 'fft_magic'"):
        ns.fft_magic  # noqa: B018


def test_a_case_that_makes_float64_is_refused_by_the_emulation():
    import dataclasses

    base = catalogue.get_case("primitives/tanh/default")

    def forward(arrays, frozen=None):
        x = arrays["inputs/x"]
        return catalogue.Forward({"out": x * rx.namespace(x).asarray(np.ones(x.shape))})  # float64 data

    case = dataclasses.replace(base, forward=forward)
    arrays, cot = _sampled(base)
    with pytest.raises(golden.GoldenError, match="primitives/tanh/default: a result comes out as float64 from float32"):
        tolerances.float32_runs(case, {**arrays, **{f"cotangents/{k}": v for k, v in cot.items()}})


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_every_case_runs_in_emulated_float32(case):
    arrays, cot = _sampled(case)
    tensors = {**arrays, **{f"cotangents/{k}": v for k, v in cot.items()}}
    runs = tolerances.float32_runs(case, tensors)
    assert all(len(v) == len(tolerances.RUNS) for v in runs.values())
    assert {k for k in runs if k.startswith("grads/")} == {f"grads/{k}" for k in case.differentiable(arrays)}
    for k, v in runs.items():
        assert all(a.dtype == np.float32 for a in v), k
    again = tolerances.float32_runs(case, tensors)
    assert all(all(np.array_equal(a, b) for a, b in zip(runs[k], again[k])) for k in runs)  # deterministic


_SIDE = ["dnc/access_step/deepmind", "dnc/core_unroll/deepmind", "attention/bahdanau_decoder/previous_masked",
         "attention/luong_concat/local_p", "memory_lstm/unroll/default"]


@pytest.mark.parametrize("name", _SIDE)
def test_runs_side_by_side_are_the_runs_one_by_one(name):
    """The four runs computed together (one row each) give the bits of four separate namespaces, in
    every compared role (jvp/ and hvp/, the emulated complex64, included), in any order of the runs."""
    case = catalogue.get_case(name)
    t = golden.load(name).tensors
    together = tolerances.float32_runs(case, t)
    assert {k.split("/")[0] for k in together} >= {"outputs", "intermediates", "grads", "jvp", "hvp"}
    for i, run in enumerate(tolerances.RUNS):
        alone = tolerances.float32_runs(case, t, (run,))
        assert set(alone) == set(together)
        for k, v in alone.items():
            assert np.array_equal(v[0], together[k][i], equal_nan=True), (k, run)
    backwards = tolerances.float32_runs(case, t, tolerances.RUNS[::-1])
    for k, v in together.items():
        assert all(np.array_equal(a, b) for a, b in zip(backwards[k][::-1], v)), k


def test_runs_that_would_branch_apart_are_computed_one_by_one(monkeypatch):
    case = catalogue.get_case("dnc/access_step/paper")
    t = golden.load(case.name).tensors
    want = tolerances.float32_runs(case, t)
    side_by_side, calls = tolerances._side_by_side, []

    def diverging(case, tensors, runs):
        calls.append(len(runs))
        if len(runs) > 1:
            raise emulated32.Diverged("the runs would branch apart here")
        return side_by_side(case, tensors, runs)

    monkeypatch.setattr(tolerances, "_side_by_side", diverging)
    got = tolerances.float32_runs(case, t)
    assert calls == [len(tolerances.RUNS)] + [1] * len(tolerances.RUNS)
    assert set(got) == set(want)
    for k, v in want.items():
        assert all(np.array_equal(a, b) for a, b in zip(got[k], v)), k


def test_a_value_whose_runs_differ_cannot_decide_a_branch():
    ns = Namespace(runs=tolerances.RUNS)
    same = ns.given(np.asarray([0.25, 0.75]))  # one row: the same in every run
    assert not bool(ns.all(same > 0.5)) and float(same[0]) == 0.25 and np.asarray(same).shape == (2,)
    rows = np.asarray([[0.25, 0.75], [0.25, 0.75], [0.75, 0.75], [0.25, 0.75]], dtype=np.float32)
    differ = emulated32.Array(rows, ns)  # the third run differs
    assert differ.shape == (2,) and differ.rows[2][0] == 0.75
    for decide in (lambda: bool(ns.all(differ > 0.5)), lambda: float(differ[0]), lambda: np.asarray(differ),
                   lambda: differ[differ > 0.5]):
        with pytest.raises(emulated32.Diverged):
            decide()
    assert bool(ns.all(differ[1:] > 0.5))  # the rows agree there


def test_emulated_complex64_rounds_each_component_once():
    rng = np.random.default_rng(5)
    a = (rng.normal(size=50) + 1j * rng.normal(size=50) * 2.0**-60).astype(np.complex64)  # a complex step
    b = (rng.normal(size=50) + 1j * rng.normal(size=50)).astype(np.complex64)
    CLD = np.clongdouble
    ns = Namespace()
    x, y = wrap(ns, a), wrap(ns, b)
    for got, exact in [(x + y, a.astype(CLD) + b), (x * y, a.astype(CLD) * b), (x / y, a.astype(CLD) / b),
                       (ns.exp(x), np.exp(a.astype(CLD))), (ns.tanh(x), np.tanh(a.astype(CLD))),
                       (x * 3.0, a.astype(CLD) * 3), (ns.sum(x * y), None)]:
        g = np.asarray(got)
        assert g.dtype == np.complex64
        if exact is not None:
            np.testing.assert_array_equal(g.real, exact.real.astype(np.float32))
            np.testing.assert_array_equal(g.imag, exact.imag.astype(np.float32))
    # stochastic: each component goes to one of its two float32 neighbours, the imaginary parts by draws of their own
    exact = a.astype(CLD) * b
    z = Namespace("stochastic", 1).rounded(exact)[0]
    for part, e in ((z.real, exact.real), (z.imag, exact.imag)):
        near = e.astype(np.float32)
        assert np.all((part == near) | (part == np.nextafter(near, np.where(near > e, -np.inf, np.inf).astype(np.float32))))
    same = Namespace("stochastic", 1).rounded(exact.real + 1j * exact.real)[0]
    assert not np.array_equal(same.real, same.imag)  # equal components, independent draws
    with pytest.raises(EmulationError, match="complex128"):
        wrap(ns, a.astype(np.complex128))


@pytest.mark.parametrize("name", ["dnc/access_step/deepmind", "attention/luong_general/local_p"])
def test_fewer_runs_give_lower_bounds_of_every_tolerance(name):
    case = catalogue.get_case(name)
    g = golden.load(name)
    m = tolerances.Measurement(case, g.tensors)
    bounds = [m.tolerances(n) for n in range(len(tolerances.RUNS) + 1)]
    assert m.exact and bounds[-1] == g.tol  # all runs: the exported tolerances, every role
    assert bounds[0] == {k: tolerances.tolerance(g.tensors[k]) for k in g.tol}  # none: κ = 1
    for lower, upper in zip(bounds, bounds[1:]):
        for k in g.tol:
            for d in tolerances.DTYPES:
                assert lower[k][d][0] == upper[k][d][0] and lower[k][d][1] <= upper[k][d][1], (k, d)
    assert any(bounds[0][k]["float32"][1] < g.tol[k]["float32"][1] for k in g.tol)  # the bound is not the rule


#: The machine-dependent switches neither the references nor the tolerances may depend on: OpenBLAS's
#: kernels (each core type sums in its own order) and NumPy's SIMD loops (float32/float64 exp, tanh, ...).
KERNELS = {
    "Prescott": {"OPENBLAS_CORETYPE": "Prescott"},
    "Nehalem": {"OPENBLAS_CORETYPE": "Nehalem"},
    "Sandybridge": {"OPENBLAS_CORETYPE": "Sandybridge"},
    "Haswell": {"OPENBLAS_CORETYPE": "Haswell"},
    "SkylakeX": {"OPENBLAS_CORETYPE": "SkylakeX"},
    "Zen": {"OPENBLAS_CORETYPE": "Zen"},
    "no NumPy SIMD": {"OPENBLAS_CORETYPE": "Haswell", "NPY_DISABLE_CPU_FEATURES": "X86_V3 X86_V4 AVX512_ICL AVX512_SPR"},
}
_SWITCHES = ("OPENBLAS_CORETYPE", "NPY_DISABLE_CPU_FEATURES", "NPY_ENABLE_CPU_FEATURES")
#: Which OpenBLAS kernels the child runs (for the failure message): its ``openblas_get_corename``.
_BLAS = ("import ctypes, numpy\n"
         "blas = []\n"
         "for path in sorted({l.split()[-1] for l in open('/proc/self/maps') if 'openblas' in l.lower() and '.so' in l}):\n"
         "    for fn in ('openblas_get_corename', 'openblas_get_corename64_', 'scipy_openblas_get_corename64_',\n"
         "               'scipy_openblas_get_corename'):\n"
         "        f = getattr(ctypes.CDLL(path), fn, None)\n"
         "        if f is not None:\n"
         "            f.restype = ctypes.c_char_p\n"
         "            blas.append(f().decode())\n"
         "            break\n")


def _run_under(label, extra, code, timeout=900):
    """Run ``code`` in a fresh interpreter with only ``extra`` of the machine switches set; its last
    stdout line as JSON. Skips where the child dies of SIGILL (this CPU cannot run those kernels);
    fails showing the child's stderr on any other error."""
    env = {k: v for k, v in os.environ.items() if k not in _SWITCHES}
    env.update({"PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", **extra})
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=timeout)
    if proc.returncode in (-signal.SIGILL, 128 + signal.SIGILL):
        pytest.skip(f"{label}: the child died with SIGILL: this CPU cannot run these kernels")
    if proc.returncode != 0 and "NPY_DISABLE_CPU_FEATURES" in extra and "cannot disable" in proc.stderr.lower():
        pytest.skip(f"{label}: NumPy refuses to disable these features here: {proc.stderr.strip().splitlines()[-1]}")
    assert proc.returncode == 0, f"{label}: the child exited with {proc.returncode}; its stderr:\n{proc.stderr}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _digest_script(names):
    """Per case: one digest of its reference tensors (every role, jvp/ and hvp/ included), its
    emulated float32 runs and its tolerances."""
    return (
        "import hashlib, json, numpy as np\n"
        "from refmem import catalogue, golden\n"
        "from refmem.golden import tolerances\n" + _BLAS +
        f"out = {{}}\nfor name in {names!r}:\n"
        "    case = catalogue.get_case(name)\n"
        "    t = golden.reference(case)\n"
        "    runs = tolerances.float32_runs(case, t)\n"
        "    tol = tolerances.tolerances(case, t)\n"
        "    h = hashlib.sha256()\n"
        "    for k in sorted(t): h.update(k.encode()); h.update(np.ascontiguousarray(t[k]).tobytes())\n"
        "    for k in sorted(runs):\n"
        "        for a in runs[k]: h.update(a.tobytes())\n"
        "    h.update(json.dumps(tol, sort_keys=True).encode())\n"
        "    out[name] = h.hexdigest()\n"
        "print(json.dumps({'blas': blas, 'digests': out}))\n"
    )


_FEW = ["attention/bahdanau_decoder/current", "dnc/core_unroll/paper", "memory_lstm/unroll/default"]


@pytest.fixture(scope="module")
def default_digests():
    return _run_under("default", {}, _digest_script(_FEW))


@needs_extended
@pytest.mark.parametrize("kernels", list(KERNELS))
def test_references_and_tolerances_do_not_depend_on_the_blas_kernels(kernels, default_digests):
    """The same bits, references of every role (jvp/ and hvp/ too) and tolerances, under other
    OpenBLAS kernels and without NumPy's AVX2/AVX-512 loops."""
    got = _run_under(kernels, KERNELS[kernels], _digest_script(_FEW))
    assert got["digests"] == default_digests["digests"], (kernels, got["blas"], default_digests["blas"])


_EXPORT_SCRIPT = (
    "import hashlib, json, sys, tempfile\n"
    "from pathlib import Path\n"
    "from refmem import golden\n" + _BLAS +
    "with tempfile.TemporaryDirectory() as tmp:\n"
    "    golden.export(tmp)\n"
    "    files = {str(p.relative_to(tmp)): hashlib.sha256(p.read_bytes()).hexdigest()\n"
    "             for p in sorted(Path(tmp).rglob('*')) if p.is_file()}\n"
    "print(json.dumps({'blas': blas, 'files': files}))\n"
)


@pytest.fixture(scope="module")
def default_export():
    """The default export's digests: those of the committed golden/, which
    test_golden.py::test_a_fresh_export_is_the_committed_set_byte_for_byte proves is one."""
    import hashlib

    root = REPO / "golden"
    return {"blas": "the committed set", "files": {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
                                                  for p in sorted(root.rglob("*")) if p.is_file()}}


#: The whole export runs under the oldest core type and without SIMD (the most different sums and
#: loops from the default's); every core type of ``KERNELS`` is covered by the test above on a case of
#: each family, every role and tolerance.
WHOLE_EXPORT_KERNELS = ("Prescott", "no NumPy SIMD")


@needs_extended
@pytest.mark.slow
@pytest.mark.parametrize("kernels", WHOLE_EXPORT_KERNELS)
def test_the_whole_export_is_byte_identical_under_other_blas_kernels_and_without_simd(kernels, default_export):
    """Every byte of every golden file, manifest.json and README.md (tensors, and tolerances of every
    role, jvp/ and hvp/ included), exported in a temporary directory under another OpenBLAS core
    type and without NumPy's SIMD loops, is the same as the default export's."""
    got = _run_under(kernels, KERNELS[kernels], _EXPORT_SCRIPT)
    want = default_export["files"]
    assert set(got["files"]) == set(want) and "manifest.json" in want and "README.md" in want
    differ = sorted(k for k in want if got["files"][k] != want[k])
    assert not differ, f"{kernels} (OpenBLAS {got['blas']}, default {default_export['blas']}): {len(differ)} of " \
                       f"{len(want)} files differ: {differ[:10]}"


@needs_extended
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_an_error_of_a_thousandth_of_the_scale_fails_in_both_dtypes(case):
    arrays, cot = _sampled(case)
    t = extended.golden_tensors(case, 0)
    runs = tolerances.float32_runs(case, t)
    for name, ref in t.items():
        if name.split("/")[0] not in ("outputs", "grads", "intermediates") or not ref.size:
            continue
        tol = golden.tolerance(ref, runs[name])
        scale = float(np.max(np.abs(ref))) or 1.0
        for dtype in ("float32", "float64"):
            rtol, atol = tol[dtype]
            for idx in (np.unravel_index(int(np.argmax(np.abs(ref))), ref.shape), (0,) * ref.ndim):
                bad = ref.copy()
                bad[idx] += 1e-3 * scale
                assert not np.all(np.abs(bad - ref) <= atol + rtol * np.abs(ref)), (name, dtype, tol)
        # and the emulated float32 runs themselves pass their own float32 tolerance with a margin
        rtol, atol = tol["float32"]
        for run in runs[name]:
            assert np.all(np.abs(run.astype(np.float64) - ref) <= (atol + rtol * np.abs(ref)) / 8), name


@needs_extended
@pytest.mark.parametrize("module,framework", [("torch_attention", "torch"), ("torch_luong", "torch"),
                                              ("torch_memory_lstm", "torch"), ("torch_dnc", "torch")])
def test_float32_examples_pass_with_ratio_at_most_a_quarter(module, framework, fresh_export, monkeypatch):
    """The float32 examples pass every case at a quarter of the tolerance, on a fresh export (long
    double references, emulated float32 tolerances; one export shared by the four examples), every role:
    jvp/ and hvp/ too."""
    pytest.importorskip(framework)
    monkeypatch.syspath_prepend(str(REPO))
    monkeypatch.chdir(REPO)
    for dtype in ("float32", "float64"):
        report = golden.verify(f"examples.{module}:run", dtype, fresh_export)
        assert report.passed, report.table(only_failures=True)
        assert {r.tensor.split("/")[0] for r in report.rows} >= {"outputs", "grads", "jvp", "hvp"}
        worst = max(report.rows, key=lambda r: r.ratio)
        assert worst.ratio <= 0.25, f"{dtype}: {worst.case} {worst.tensor} ratio {worst.ratio:.3f}"


# ----------------------------------------------------------------------------- wired into the golden package


def test_export_refuses_without_an_extended_type_unless_allowed(tmp_path, monkeypatch, capsys):
    from refmem import golden
    from refmem.cli import main

    case = catalogue.get_case("primitives/tanh/default")
    monkeypatch.setattr(extended, "has_extended", lambda: False)
    with pytest.raises(golden.GoldenError, match="no extended-precision type.*allow_float64=True"):
        golden.export(tmp_path / "a", [case])
    assert not (tmp_path / "a" / "manifest.json").exists()
    manifest = golden.export(tmp_path / "b", [case], allow_float64=True)
    assert manifest["cases"][case.name]["precision"].startswith("float64 (no extended type on this platform)")
    assert main(["golden", "export", "--dir", str(tmp_path / "c"), "--module", "primitives"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no extended-precision type" in err[0] and "Traceback" not in err[0]
    assert main(["golden", "export", "--dir", str(tmp_path / "c"), "--module", "primitives", "--allow-float64"]) == 0


@needs_extended
def test_the_export_uses_long_double_references_and_emulated_tolerances(tmp_path):
    from refmem import golden

    cases = [catalogue.get_case(n) for n in ("primitives/softmax/default", "dnc/access_step/paper")]
    manifest = golden.export(tmp_path, cases)
    for case in cases:
        entry = manifest["cases"][case.name]
        assert entry["precision"].startswith("float64, rounded once from an 80-bit long double evaluation")
        g = golden.load(case.name, tmp_path, manifest)
        want = extended.golden_tensors(case, 0)
        forward_mode = ("tangents", "jvp", "hvp")  # refmem.golden.forward_mode: complex step in complex long double
        assert set(want) == {k for k in g.tensors if k.split("/")[0] not in forward_mode}
        for k, v in want.items():
            assert np.array_equal(g.tensors[k], v), k
        runs = tolerances.float32_runs(case, g.tensors)
        assert g.tol == tolerances.tolerances(case, g.tensors)  # every role, jvp/ and hvp/ too
        for k, tol in g.tol.items():
            assert tol == golden.tolerance(g.tensors[k], runs[k]), k
            assert entry["tensors"][k]["l2"] == extended.l2(g.tensors[k])


@needs_extended
def test_committed_goldens_are_the_long_double_values_rounded_once():
    from refmem import golden

    committed = REPO / "golden"
    manifest = golden.read_manifest(committed)
    for case in CASES:
        g = golden.load(case.name, committed, manifest)
        assert manifest["cases"][case.name]["precision"].startswith("float64, rounded once from an 80-bit")
        arrays = {k: v for k, v in g.tensors.items() if k.split("/")[0] in catalogue.ROLES}
        cot = {k[len("cotangents/"):]: v for k, v in g.tensors.items() if k.startswith("cotangents/")}
        exact = extended.reference(case, arrays, cot, round=False)
        for k, r in exact.items():
            err = np.abs(g.tensors[k].astype(LD) - r)
            assert np.all(err <= np.spacing(np.abs(g.tensors[k])).astype(LD) / 2), (case.name, k)
