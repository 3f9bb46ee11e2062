"""The gradient-check engine of SPEC §6.

The loss of a check is ``L = Σ_outputs Σ out ∘ cot`` with a fixed random
cotangent ``cot`` per output, so the analytic side is the case's backward
applied to those cotangents and the numerical side differentiates ``L``:

* ``central``: element-wise central differences with step ``2**-20``; the
  difference of the outputs is taken before the sum with the cotangent, so
  rounding is relative to each output rather than to the whole loss;
* ``complex``: element-wise complex step ``Im L(x + i h e) / h`` with ``h = 1e-30``,
  for cases whose forward is analytic on the sampled path;
* ``directional``: ``vᵀ J u`` for a random direction ``u`` over every
  differentiable tensor at once (``v`` is the cotangent), by central differences.

A stopped gradient is checked with the stopped tensor frozen at the value the
unperturbed forward recorded (:class:`refmem.catalogue.Forward.frozen`).

Every check yields :class:`Record`s with SPEC §6's verdict: element-wise
``|a - n| ≤ 1e-7 + 1e-5 |n|`` and a norm-wise relative error below ``1e-8``
(central, directional) or ``1e-12`` (complex).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any, Callable, Iterable, Mapping

import numpy as np

from . import xp as rx
from .catalogue import Case

__all__ = [
    "CENTRAL_STEP",
    "COMPLEX_STEP",
    "METHODS",
    "Record",
    "Tolerance",
    "TOLERANCES",
    "Evaluation",
    "cotangents_for",
    "central_gradient",
    "complex_gradient",
    "directional_derivative",
    "compare",
    "check_case",
    "check_function",
]

CENTRAL_STEP = 2.0**-20
COMPLEX_STEP = 1e-30
METHODS = ("central", "complex", "directional")


@dataclass(frozen=True)
class Tolerance:
    """SPEC §6: element-wise ``|a-n| ≤ atol + rtol |n|`` and norm-wise relative error ≤ ``normwise``."""

    atol: float
    rtol: float
    normwise: float


TOLERANCES = {
    "central": Tolerance(atol=1e-7, rtol=1e-5, normwise=1e-8),
    "complex": Tolerance(atol=1e-7, rtol=1e-5, normwise=1e-12),
    "directional": Tolerance(atol=1e-7, rtol=1e-5, normwise=1e-8),
}


@dataclass
class Record:
    """One checked tensor; the fields of ``refmem check --json``."""

    case: str
    tensor: str
    method: str
    max_abs_err: float
    max_rel_err: float
    normwise_rel_err: float
    passed: bool
    seconds: float
    backend: str
    note: str = ""

    def as_json(self) -> dict[str, Any]:
        d = asdict(self)
        if not d["note"]:
            d.pop("note")
        return d


def compare(analytic: np.ndarray, numeric: np.ndarray, tol: Tolerance) -> tuple[float, float, float, bool]:
    """Errors of ``analytic`` against ``numeric``: ``(max_abs, max_rel, normwise_rel, passed)``.

    ``max_rel`` is ``max |a-n| / max(|a|+|n|, 1e-8)``; ``normwise_rel`` is
    ``‖a-n‖ / max(‖a‖, ‖n‖)`` (0 when both are 0).
    """
    a = np.asarray(analytic, dtype=np.float64)
    n = np.asarray(numeric, dtype=np.float64)
    if a.shape != n.shape:
        raise ValueError(f"analytic shape {a.shape} differs from numerical shape {n.shape}")
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(n))):
        return float("nan"), float("nan"), float("nan"), False
    diff = np.abs(a - n)
    max_abs = float(diff.max()) if diff.size else 0.0
    max_rel = float((diff / np.maximum(np.abs(a) + np.abs(n), 1e-8)).max()) if diff.size else 0.0
    scale = max(float(np.linalg.norm(a)), float(np.linalg.norm(n)))
    normwise = float(np.linalg.norm(a - n) / scale) if scale > 0 else 0.0
    elementwise = bool(np.all(diff <= tol.atol + tol.rtol * np.abs(n)))
    return max_abs, max_rel, normwise, elementwise and normwise <= tol.normwise


# ----------------------------------------------------------------------------- evaluation plumbing


class Evaluation:
    """A case's forward at fixed inputs, as a function of one tensor at a time.

    Holds the host (NumPy) copies of the inputs, the cotangents, and the frozen
    values recorded by the unperturbed forward. :meth:`loss_delta` evaluates
    ``Σ cot ∘ (f(x + d) - f(x - d))`` for perturbations of any tensors.
    """

    def __init__(self, case: Case, xp: Any, arrays: Mapping[str, Any], seed: int):
        self.case = case
        self.xp = xp
        self.arrays = dict(arrays)
        self.host = {k: rx.to_numpy(v).astype(np.float64) for k, v in arrays.items()}
        base = case.forward(self.arrays)
        self.frozen = dict(base.frozen)
        self.outputs = {k: rx.to_numpy(v) for k, v in base.outputs.items()}
        for name, value in self.outputs.items():
            if not np.all(np.isfinite(value)):
                raise FloatingPointError(f"{case.name}: output {name!r} holds NaN or infinity")
        self.cotangents = cotangents_for(self.outputs, seed)
        self.keys = case.differentiable(self.arrays)

    def outputs_at(self, changes: Mapping[str, np.ndarray], dtype: Any = np.float64) -> dict[str, np.ndarray]:
        """Host outputs with ``changes`` (role/name -> host array) replacing inputs."""
        arrays = {}
        for k, v in self.host.items():
            if k in changes:
                arrays[k] = rx.from_numpy(self.xp, changes[k])
            elif dtype is not np.float64 and k in self.keys:
                arrays[k] = rx.from_numpy(self.xp, v.astype(dtype))
            else:
                arrays[k] = self.arrays[k]
        out = self.case.forward(arrays, frozen=self.frozen).outputs
        return {k: rx.to_numpy(v) for k, v in out.items()}

    def loss_of(self, outputs: Mapping[str, np.ndarray]) -> Any:
        return sum(np.sum(outputs[k] * self.cotangents[k]) for k in self.cotangents)

    def central_delta(self, plus: Mapping[str, np.ndarray], minus: Mapping[str, np.ndarray]) -> float:
        """``Σ cot ∘ (f(plus) - f(minus))``, differencing before summing."""
        fp = self.outputs_at(plus)
        fm = self.outputs_at(minus)
        return float(sum(np.sum((fp[k] - fm[k]) * self.cotangents[k]) for k in self.cotangents))

    def analytic(self) -> dict[str, np.ndarray]:
        cot = {k: rx.from_numpy(self.xp, v) for k, v in self.cotangents.items()}
        grads = self.case.backward(self.arrays, cot)
        missing = set(self.keys) - set(grads)
        extra = set(grads) - set(self.keys)
        if missing or extra:
            raise KeyError(
                f"{self.case.name}: backward returned gradients for {sorted(grads)}, "
                f"expected {sorted(self.keys)}"
            )
        out = {}
        for k in self.keys:
            g = rx.to_numpy(grads[k])
            if g.shape != self.host[k].shape:
                raise ValueError(f"{self.case.name}: gradient {k} has shape {g.shape}, expected {self.host[k].shape}")
            out[k] = g
        return out


def cotangents_for(outputs: Mapping[str, np.ndarray], seed: int) -> dict[str, np.ndarray]:
    """A fixed random cotangent per output (float32-representable, float64), from ``seed``."""
    rng = np.random.default_rng([int(seed), 0xC07A])
    return {
        k: rng.normal(size=np.shape(v)).astype(np.float32).astype(np.float64)
        for k, v in sorted(outputs.items())
    }


def central_gradient(ev: Evaluation, key: str, step: float = CENTRAL_STEP) -> np.ndarray:
    """Element-wise central differences of the loss with respect to tensor ``key``."""
    x = ev.host[key]
    grad = np.empty_like(x)
    flat = grad.reshape(-1)
    for i in range(x.size):
        plus = x.copy().reshape(-1)
        minus = x.copy().reshape(-1)
        plus[i] += step
        minus[i] -= step
        flat[i] = ev.central_delta({key: plus.reshape(x.shape)}, {key: minus.reshape(x.shape)}) / (2 * step)
    return grad


def complex_gradient(ev: Evaluation, key: str, step: float = COMPLEX_STEP) -> np.ndarray:
    """Element-wise complex-step derivative ``Im L(x + i h e_i) / h`` for tensor ``key``."""
    x = ev.host[key].astype(np.complex128)
    grad = np.empty(x.shape)
    flat = grad.reshape(-1)
    for i in range(x.size):
        z = x.copy().reshape(-1)
        z[i] += 1j * step
        out = ev.outputs_at({key: z.reshape(x.shape)}, dtype=np.complex128)
        flat[i] = float(np.imag(ev.loss_of(out))) / step
    return grad


def directional_derivative(ev: Evaluation, direction: Mapping[str, np.ndarray], step: float = CENTRAL_STEP) -> float:
    """``vᵀ J u`` by central differences along ``u = direction`` (all tensors at once)."""
    plus = {k: ev.host[k] + step * u for k, u in direction.items()}
    minus = {k: ev.host[k] - step * u for k, u in direction.items()}
    return ev.central_delta(plus, minus) / (2 * step)


# ----------------------------------------------------------------------------- checks


def check_case(
    case: Case,
    xp: Any,
    seed: int = 0,
    methods: Iterable[str] = ("central", "complex"),
    sizes: Mapping[str, int] | None = None,
    on_tensor: Callable[[Record], None] | None = None,
) -> list[Record]:
    """Check every differentiable tensor of ``case`` at ``seed`` with ``methods``.

    ``complex`` is skipped for cases that are not analytic on their path
    (``case.complex_step`` false). Returns one :class:`Record` per tensor and
    method (one per case for ``directional``).
    """
    methods = list(methods)
    for m in methods:
        if m not in METHODS:
            raise ValueError(f"unknown method {m!r}; expected one of {METHODS}")
    backend = rx.backend_name(xp)
    arrays = case.draw(xp, seed, sizes)
    ev = Evaluation(case, xp, arrays, seed)
    analytic = ev.analytic()
    records: list[Record] = []

    def emit(rec: Record) -> None:
        records.append(rec)
        if on_tensor is not None:
            on_tensor(rec)

    for method in methods:
        if method == "complex" and not case.complex_step:
            continue
        tol = TOLERANCES[method]
        if method == "directional":
            t0 = time.perf_counter()
            rng = np.random.default_rng([int(seed), 0xD1EC])
            u = {k: rng.normal(size=ev.host[k].shape) for k in ev.keys}
            numeric = directional_derivative(ev, u)
            exact = float(sum(np.sum(analytic[k] * u[k]) for k in ev.keys))
            err = compare(np.array([exact]), np.array([numeric]), tol)
            emit(Record(case.name, "vJu", method, *err, time.perf_counter() - t0, backend))
            continue
        for key in ev.keys:
            t0 = time.perf_counter()
            numeric = central_gradient(ev, key) if method == "central" else complex_gradient(ev, key)
            err = compare(analytic[key], numeric, tol)
            emit(Record(case.name, key, method, *err, time.perf_counter() - t0, backend))
    return records


def check_function(
    forward: Callable[[Mapping[str, Any]], Mapping[str, Any]],
    backward: Callable[[Mapping[str, Any], Mapping[str, Any]], Mapping[str, Any]],
    arrays: Mapping[str, Any],
    seed: int = 0,
    methods: Iterable[str] = ("central",),
    name: str = "function",
    complex_step: bool = True,
) -> list[Record]:
    """Check a forward/backward pair that is not a catalogue case.

    ``forward(arrays) -> {output: array}``; ``backward(arrays, cotangents) ->
    {name: grad}`` with a gradient for every entry of ``arrays`` (names need no
    role prefix here).
    """
    prefixed = {k if "/" in k else f"inputs/{k}": v for k, v in arrays.items()}
    strip = {k: (k[len("inputs/"):] if k.startswith("inputs/") and k[len("inputs/"):] in arrays else k) for k in prefixed}

    from .catalogue import Forward

    def fwd(a, frozen=None):
        return Forward(dict(forward({strip[k]: v for k, v in a.items()})))

    def bwd(a, cot):
        g = backward({strip[k]: v for k, v in a.items()}, cot)
        inv = {v: k for k, v in strip.items()}
        return {inv[k]: v for k, v in g.items()}

    case = Case(
        name=f"user/{name}/default",
        spec="",
        function=name,
        sample=lambda xp, seed, sizes: prefixed,
        forward=fwd,
        backward=bwd,
        complex_step=complex_step,
    )
    xp = rx.namespace(*arrays.values())
    return check_case(case, xp, seed=seed, methods=methods)
