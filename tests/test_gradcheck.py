"""The engine itself: it agrees with SciPy's differentiation and it catches wrong gradients."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import approx_fprime

from refmem import gradcheck
from refmem import xp as rx
from refmem.catalogue import Case, Forward, get_case


def _fn(arrays):
    x, w = arrays["x"], arrays["w"]
    return {"y": np.tanh(x @ w) ** 2, "z": np.exp(0.3 * x)}


def _bwd(arrays, cot):
    x, w = arrays["x"], arrays["w"]
    t = np.tanh(x @ w)
    da = cot["y"] * 2 * t * (1 - t * t)
    return {"x": da @ w.T + cot["z"] * 0.3 * np.exp(0.3 * x), "w": x.T @ da}


def _arrays():
    rng = np.random.default_rng(0)
    return {"x": rng.normal(size=(3, 4)), "w": rng.normal(size=(4, 2))}


def test_engine_matches_scipy_approx_fprime():
    """The central-difference gradient equals SciPy's, and both match the analytic one."""
    arrays = _arrays()
    xp = rx.backend("numpy")
    case = Case("user/t/default", "", "t", lambda xp_, s, z: {f"inputs/{k}": v for k, v in arrays.items()},
                lambda a, frozen=None: Forward(_fn({k.split("/")[1]: v for k, v in a.items()})),
                lambda a, c: {f"inputs/{k}": v for k, v in _bwd({k.split("/")[1]: v for k, v in a.items()}, c).items()})
    ev = gradcheck.Evaluation(case, xp, case.draw(xp, 0), 0)
    ours = gradcheck.central_gradient(ev, "inputs/x")

    def loss(flat_x):
        out = _fn({"x": flat_x.reshape(3, 4), "w": arrays["w"]})
        return sum(np.sum(out[k] * ev.cotangents[k]) for k in out)

    theirs = approx_fprime(arrays["x"].ravel(), loss, 1e-7).reshape(3, 4)
    analytic = _bwd(arrays, ev.cotangents)["x"]
    np.testing.assert_allclose(ours, analytic, rtol=1e-8, atol=1e-9)
    np.testing.assert_allclose(theirs, analytic, rtol=1e-5, atol=1e-6)


def test_engine_matches_scipy_differentiate():
    """Element by element against ``scipy.differentiate.derivative`` (Richardson extrapolation)."""
    differentiate = pytest.importorskip("scipy.differentiate")
    arrays = _arrays()
    records = gradcheck.check_function(_fn, _bwd, arrays, methods=("central", "complex"))
    assert all(r.passed for r in records)
    case = get_case("primitives/softplus/default")
    xp = rx.backend("numpy")
    ev = gradcheck.Evaluation(case, xp, case.draw(xp, 0), 0)
    x = ev.host["inputs/x"]
    cot = ev.cotangents["out"]
    # softplus is element-wise: dL/dx_i = cot_i * softplus'(x_i)
    res = differentiate.derivative(lambda v: np.logaddexp(0, v), x)
    np.testing.assert_allclose(gradcheck.central_gradient(ev, "inputs/x"), cot * res.df, rtol=1e-8, atol=1e-10)


def test_engine_catches_a_wrong_gradient():
    arrays = _arrays()

    def wrong(a, c):
        g = _bwd(a, c)
        g["w"] = g["w"] * (1 + 1e-6)
        return g

    records = gradcheck.check_function(_fn, wrong, arrays, methods=("central", "complex", "directional"))
    by = {(r.tensor, r.method): r for r in records}
    assert by[("inputs/x", "central")].passed
    assert not by[("inputs/w", "central")].passed
    assert not by[("inputs/w", "complex")].passed
    assert not by[("vJu", "directional")].passed


def test_complex_step_reaches_roundoff():
    records = gradcheck.check_function(_fn, _bwd, _arrays(), methods=("complex",))
    assert max(r.normwise_rel_err for r in records) < 1e-14


def test_compare_definitions():
    a = np.array([1.0, 2.0, 0.0])
    n = np.array([1.0, 2.0 + 1e-6, 0.0])
    max_abs, max_rel, normwise, ok = gradcheck.compare(a, n, gradcheck.TOLERANCES["central"])
    assert max_abs == pytest.approx(1e-6)
    assert max_rel == pytest.approx(1e-6 / (4 + 1e-6))
    assert normwise == pytest.approx(1e-6 / np.linalg.norm(n))
    assert not ok  # norm-wise 4.5e-7 > 1e-8
    assert gradcheck.compare(np.zeros(3), np.zeros(3), gradcheck.TOLERANCES["central"])[3]
    assert not gradcheck.compare(np.array([np.nan]), np.array([0.0]), gradcheck.TOLERANCES["central"])[3]


def test_stopped_gradient_is_checked_with_the_frozen_value():
    """A forward with a stopped path passes only because the engine freezes the recorded value."""
    xp = rx.backend("numpy")

    def fwd(a, frozen=None):
        x = a["inputs/x"]
        stopped = x if frozen is None else frozen["x"]
        return Forward({"y": x * stopped}, {"x": x})

    def bwd(a, cot):
        return {"inputs/x": cot["y"] * a["inputs/x"]}  # d(x * sg(x))/dx = sg(x)

    case = Case("user/stop/default", "", "stop", lambda xp_, s, z: {"inputs/x": xp_.asarray([0.5, -1.5, 2.0])},
                fwd, bwd)
    assert all(r.passed for r in gradcheck.check_case(case, xp, methods=("central", "complex")))


def test_forward_mode_imports_nothing_from_gradcheck():
    """No import circle: the check engine builds on refmem.forward_mode, never the other way round
    (imports inside functions included)."""
    import ast
    from pathlib import Path

    import refmem.forward_mode as fm

    tree = ast.parse(Path(fm.__file__).read_text(encoding="utf-8"))
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            imported.add(node.module or "")
            imported.update(a.name for a in node.names)
        elif isinstance(node, ast.Import):
            imported.update(a.name for a in node.names)
    assert not any("gradcheck" in name for name in imported), imported
