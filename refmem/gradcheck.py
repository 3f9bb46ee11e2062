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
  differentiable tensor at once (``v`` is the cotangent), by central differences;
  ``u`` is tilted towards the analytic gradient so that ``vᵀ J u`` cannot cancel
  to rounding noise (``_tilted_direction``);
* ``hvp``: second order ([`hvp_records`][refmem.gradcheck.hvp_records], on the complex step of [`refmem.forward_mode`][refmem.forward_mode]): the complex step
  through the hand-derived backward against Richardson-extrapolated central
  differences of it, and the symmetry ``⟨t₂, H t₁⟩ = ⟨t₁, H t₂⟩``.

A stopped gradient is checked with the stopped tensor frozen at the value the
unperturbed forward recorded ([`Forward.frozen`][refmem.catalogue.Forward]).

Every check yields [`Record`][refmem.gradcheck.Record]s with SPEC §6's verdict: element-wise
``|a - n| ≤ 1e-7 + 1e-5 |n|`` and a norm-wise relative error below ``1e-8``
(central, directional) or ``1e-12`` (complex).

Batched finite differences
--------------------------
Element-wise checks need one forward per perturbed element (two for central
differences). For ``inputs/`` and ``state/`` tensors, which carry the batch
axis first, the engine evaluates many perturbations in one forward call:
every family's functions are batch-separable (batch rows never mix), so ``P``
perturbed copies of the batch are stacked along axis 0 (``P*B`` rows, params
unchanged) and each row is read back on its own. Copy ``j`` perturbs element
``j`` of *every* batch row at once (row ``b`` of copy ``j`` answers for element
``(b, j)``), so a tensor of ``B*m`` elements costs ``m`` copies, and plus and
minus copies share one call. Each row's central difference is still taken on
the outputs before the sum with the cotangent. Params (no batch axis) touch
every row and every copy, so their elements are perturbed one forward call at
a time; no grouping of param perturbations is sound.

The engine uses the batched path only where it can vouch for it
([`Evaluation.batch_rows`][refmem.gradcheck.Evaluation.batch_rows]): every input and state tensor and
every output and frozen tensor has the same leading size ``B``, and a probe call with three
stacked copies, the outer two perturbed, reproduces the unperturbed outputs in
the middle copy (rows that mixed would not). Otherwise, or with
``batched=False``, it runs the plain per-element loop; both give the same
numbers to rounding.

Params are the bulk of the element-wise work of a model case. ``refmem check``
runs its cases side by side in worker processes (``refmem.executor``,
``--workers``, default [`default_jobs`][refmem.gradcheck.default_jobs]); each case is
checked in one process, exactly as a serial run checks it.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable, Iterable, Mapping

import numpy as np

from .validation import probing, trusted
from . import forward_mode as fm
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
    "hvp_records",
]

CENTRAL_STEP = 2.0**-20
COMPLEX_STEP = 1e-30
METHODS = ("central", "complex", "directional", "hvp")


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
    "hvp": Tolerance(atol=1e-7, rtol=1e-5, normwise=1e-8),  # see refmem.forward_mode.HVP_TOLERANCES
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
    values recorded by the unperturbed forward.
    [`central_delta`][refmem.gradcheck.Evaluation.central_delta] evaluates
    ``Σ cot ∘ (f(x + d) - f(x - d))`` for perturbations of any tensors; where
    [`batch_rows`][refmem.gradcheck.Evaluation.batch_rows] allows it, many perturbed
    copies of the batch are evaluated in one call (see the module docstring).
    """

    STACK_BUDGET = 2**20
    """Stacked elements (inputs, state and outputs of all copies) per batched call."""

    def __init__(self, case: Case, xp: Any, arrays: Mapping[str, Any], seed: int):
        self.case = case
        self.xp = xp
        self.arrays = dict(arrays)
        self.native = {k: rx.to_numpy(v) for k, v in arrays.items()}
        self.host = {k: v.astype(np.float64) for k, v in self.native.items()}
        t0 = time.perf_counter()
        base = case.forward(self.arrays)
        #: Seconds of the unperturbed forward call (to decide whether worker processes pay off).
        self.forward_seconds = time.perf_counter() - t0
        self.frozen = dict(base.frozen)
        self.outputs = {k: rx.to_numpy(v) for k, v in base.outputs.items()}
        for name, value in self.outputs.items():
            if not np.all(np.isfinite(value)):
                raise FloatingPointError(f"{case.name}: output {name!r} holds NaN or infinity")
        self.cotangents = cotangents_for(self.outputs, seed)
        self.keys = case.differentiable(self.arrays)
        self._cast: dict[Any, dict[str, Any]] = {}
        self._batch: Any = _UNKNOWN
        self._frozen_host: dict[str, np.ndarray] = {}
        #: Why the batched path is off for this case ("" when it is on or not yet probed).
        self.batch_note = ""

    def _inputs_as(self, dtype: Any) -> dict[str, Any]:
        """The case's arrays with every differentiable tensor cast to ``dtype`` (cached)."""
        if dtype is np.float64:
            return self.arrays
        if dtype not in self._cast:
            self._cast[dtype] = {
                k: (rx.from_numpy(self.xp, self.host[k].astype(dtype)) if k in self.keys else v)
                for k, v in self.arrays.items()
            }
        return self._cast[dtype]

    def outputs_at(self, changes: Mapping[str, np.ndarray], dtype: Any = np.float64) -> dict[str, np.ndarray]:
        """Host outputs with ``changes`` (role/name -> host array) replacing inputs."""
        arrays = dict(self._inputs_as(dtype))
        for k, v in changes.items():
            arrays[k] = rx.from_numpy(self.xp, v)
        # probes step off the sample, maybe across an edge of [0, 1]; the arguments are those of the
        # checked forward of __init__ but for the step (`trusted`)
        with probing(), trusted():
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

    # ------------------------------------------------------------------------- batched evaluation

    def batch_rows(self) -> int | None:
        """The batch size ``B`` when many perturbed copies may share one call, else ``None``.

        Requires every ``inputs/``/``state/`` tensor, every output and every
        frozen tensor to have the same leading size, and a probe: three stacked
        copies, the first and last perturbed, must give the unperturbed outputs
        in the middle copy (rows that mix, or read a fixed row, would not). The answer is computed once
        and kept; `batch_note` says why it is ``None``.
        """
        if self._batch is _UNKNOWN:
            self._batch, self.batch_note = self._probe_batch()
        return self._batch

    def _probe_batch(self) -> tuple[int | None, str]:
        rows = [k for k in self.host if k.split("/")[0] != "params"]
        if not rows:
            return None, "no input or state tensor"
        leads = {self.host[k].shape[0] if self.host[k].ndim else None for k in rows}
        if len(leads) != 1 or None in leads:
            return None, "inputs and state do not share a leading batch axis"
        B = leads.pop()
        frozen = {k: rx.to_numpy(v) for k, v in self.frozen.items()}
        for what, group in (("output", self.outputs), ("frozen tensor", frozen)):
            for k, v in group.items():
                if np.ndim(v) == 0 or np.shape(v)[0] != B:
                    return None, f"{what} {k!r} has no leading batch axis of size {B}"
        self._frozen_host = frozen
        rng = np.random.default_rng(0xBA7C)
        stacks = {}
        for k in rows:
            x = self.host[k]
            if k in self.keys:
                noise = [1e-4 * (1.0 + np.abs(x)) * rng.standard_normal(x.shape) for _ in range(2)]
                stacks[k] = np.stack([x + noise[0], x, x + noise[1]])
        try:
            out = self._run_stacked(stacks, 3, B, np.float64)
        except Exception as exc:  # a forward that refuses stacked rows is not batch-separable
            return None, f"stacked probe raised {type(exc).__name__}"
        for k, base in self.outputs.items():
            got = out[k][1]
            if got.shape != base.shape:
                return None, f"stacked output {k!r} has shape {got.shape}"
            scale = float(np.max(np.abs(base))) if base.size else 0.0
            if not np.all(np.abs(got - base) <= 1e-11 * max(scale, 1e-300)):
                return None, f"batch rows mix in output {k!r}"
        return B, ""

    def _run_stacked(self, stacks: Mapping[str, np.ndarray], copies: int, B: int, dtype: Any) -> dict[str, np.ndarray]:
        """Outputs ``[copies, B, ...]`` of one call on ``copies`` stacked copies of the batch.

        ``stacks`` maps tensors to their per-copy values ``[copies, B, ...]``;
        every other input and state tensor, and every frozen tensor, is repeated
        ``copies`` times along axis 0; params are passed unchanged. Differentiable
        tensors are cast to ``dtype`` (complex step).
        """
        arrays = {}
        for k, v in self._inputs_as(dtype).items():
            if k in stacks:
                s = stacks[k]
                arrays[k] = rx.from_numpy(self.xp, s.reshape((copies * B,) + s.shape[2:]))
            elif k.split("/")[0] == "params":
                arrays[k] = v
            else:
                base = self.host[k].astype(dtype) if k in self.keys else self.native[k]
                arrays[k] = rx.from_numpy(self.xp, np.concatenate([base] * copies, axis=0))
        frozen = {k: rx.from_numpy(self.xp, np.concatenate([v] * copies, axis=0))
                  for k, v in self._frozen_host.items()}
        with probing(), trusted():
            out = self.case.forward(arrays, frozen=frozen).outputs
        return {k: rx.to_numpy(v).reshape((copies, B) + tuple(v.shape[1:])) for k, v in out.items()}

    def _chunk(self, key: str) -> int:
        """How many copies of the batch one call may stack for tensor ``key``."""
        per_copy = sum(v.size for k, v in self.host.items() if k.split("/")[0] != "params")
        per_copy += sum(v.size for v in self.outputs.values())
        return max(1, self.STACK_BUDGET // max(per_copy, 1))

    def row_deltas(self, fp: Mapping[str, np.ndarray], fm: Mapping[str, np.ndarray] | None = None) -> np.ndarray:
        """``Σ cot ∘ (fp - fm)`` per copy and row (``[copies, B]``); ``fm`` omitted means 0."""
        total = None
        for k, cot in self.cotangents.items():
            d = fp[k] if fm is None else fp[k] - fm[k]
            s = np.sum((d * cot).reshape(d.shape[:2] + (-1,)), axis=-1)
            total = s if total is None else total + s
        return total


_UNKNOWN = object()


def cotangents_for(outputs: Mapping[str, np.ndarray], seed: int) -> dict[str, np.ndarray]:
    """A fixed random cotangent per output (float32-representable, float64), from ``seed``."""
    rng = np.random.default_rng([int(seed), 0xC07A])
    return {
        k: rng.normal(size=np.shape(v)).astype(np.float32).astype(np.float64)
        for k, v in sorted(outputs.items())
    }


def _batched(ev: Evaluation, key: str, batched: bool) -> int | None:
    """The batch size if ``key`` goes through the batched path, else ``None``."""
    if not batched or key.split("/")[0] == "params":
        return None
    return ev.batch_rows()


def central_gradient(ev: Evaluation, key: str, step: float = CENTRAL_STEP, batched: bool = True) -> np.ndarray:
    """Element-wise central differences of the loss with respect to tensor ``key``.

    With ``batched`` (the default) an input or state tensor of a batch-separable
    case is perturbed in stacked copies of the batch, many per forward call;
    ``batched=False`` runs the plain loop of two forward calls per element. Both
    take each difference on the outputs before summing with the cotangent.
    """
    B = _batched(ev, key, batched)
    if B is None:
        return _loop(ev, key, "central", step)
    x = ev.host[key]
    m = x.size // B
    rows = x.reshape(B, m)
    grad = np.empty((B, m))
    chunk = max(1, ev._chunk(key) // 2)
    for j0 in range(0, m, chunk):
        c = min(chunk, m - j0)
        stack = np.broadcast_to(rows, (2 * c, B, m)).copy()
        idx = np.arange(c)
        stack[idx, :, j0 + idx] += step
        stack[c + idx, :, j0 + idx] -= step
        out = ev._run_stacked({key: stack.reshape((2 * c,) + x.shape)}, 2 * c, B, np.float64)
        fp = {k: v[:c] for k, v in out.items()}
        fm = {k: v[c:] for k, v in out.items()}
        grad[:, j0:j0 + c] = ev.row_deltas(fp, fm).T / (2 * step)
    return grad.reshape(x.shape)


def _loop(ev: Evaluation, key: str, method: str, step: float) -> np.ndarray:
    """The per-element loop of ``method`` over every element of ``key``."""
    x = ev.host[key]
    idx = np.arange(x.size)
    return _VALUES[method](ev, key, step, idx).reshape(x.shape)


def _central_values(ev: Evaluation, key: str, step: float, indices: np.ndarray) -> np.ndarray:
    """Central differences for the flat ``indices`` of ``key``; the perturbed buffers are restored after each."""
    x = ev.host[key]
    out = np.empty(len(indices))
    plus, minus = x.copy(), x.copy()
    p, m, x0 = plus.reshape(-1), minus.reshape(-1), x.reshape(-1)
    for n, i in enumerate(indices):
        p[i] = x0[i] + step
        m[i] = x0[i] - step
        out[n] = ev.central_delta({key: plus}, {key: minus}) / (2 * step)
        p[i] = m[i] = x0[i]
    return out


def complex_gradient(ev: Evaluation, key: str, step: float = COMPLEX_STEP, batched: bool = True) -> np.ndarray:
    """Element-wise complex-step derivative ``Im L(x + i h e_i) / h`` for tensor ``key``.

    ``batched`` as in [`central_gradient`][refmem.gradcheck.central_gradient]: one stacked copy of the batch per
    element of a batch row instead of one forward call per element.
    """
    B = _batched(ev, key, batched)
    if B is None:
        return _loop(ev, key, "complex", step)
    x = ev.host[key]
    m = x.size // B
    rows = x.reshape(B, m).astype(np.complex128)
    grad = np.empty((B, m))
    chunk = ev._chunk(key)
    for j0 in range(0, m, chunk):
        c = min(chunk, m - j0)
        stack = np.broadcast_to(rows, (c, B, m)).copy()
        idx = np.arange(c)
        stack[idx, :, j0 + idx] += 1j * step
        out = ev._run_stacked({key: stack.reshape((c,) + x.shape)}, c, B, np.complex128)
        grad[:, j0:j0 + c] = np.imag(ev.row_deltas(out)).T / step
    return grad.reshape(x.shape)


def _complex_values(ev: Evaluation, key: str, step: float, indices: np.ndarray) -> np.ndarray:
    """Complex steps for the flat ``indices`` of ``key``; the perturbed buffer is restored after each."""
    x = ev.host[key].astype(np.complex128)
    out = np.empty(len(indices))
    z = x.copy()
    zf, x0 = z.reshape(-1), x.reshape(-1)
    for n, i in enumerate(indices):
        zf[i] = x0[i] + 1j * step
        res = ev.outputs_at({key: z}, dtype=np.complex128)
        out[n] = float(np.imag(ev.loss_of(res))) / step
        zf[i] = x0[i]
    return out


_VALUES = {"central": _central_values, "complex": _complex_values}


# ----------------------------------------------------------------------------- workers


def default_jobs() -> int:
    """Worker processes for the per-element loops: ``REFMEM_JOBS`` if set, else the idle CPUs.

    Idle CPUs (``refmem.executor.idle_cpus``): the usable CPUs less those other processes keep
    busy now (sampled from ``/proc/stat`` for a tenth of a second on Linux, else the one-minute
    load average; niced processes count: a niced job of another session keeps its share), at
    least 1. On a machine that other jobs keep busy, more workers would only queue behind them.
    ``refmem check --workers`` defaults to it.
    """
    env = os.environ.get("REFMEM_JOBS", "").strip()
    if env:
        try:
            jobs = int(env)
        except ValueError:
            jobs = 0
        if jobs < 1:
            from .errors import DomainError

            raise DomainError(f"REFMEM_JOBS: expected an integer >= 1, got {env!r}")
        return jobs
    from .executor import idle_cpus

    return idle_cpus()


def directional_derivative(ev: Evaluation, direction: Mapping[str, np.ndarray], step: float = CENTRAL_STEP) -> float:
    """``vᵀ J u`` by central differences along ``u = direction`` (all tensors at once)."""
    plus = {k: ev.host[k] + step * u for k, u in direction.items()}
    minus = {k: ev.host[k] - step * u for k, u in direction.items()}
    return ev.central_delta(plus, minus) / (2 * step)


def _tilted_direction(u: Mapping[str, np.ndarray], grads: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``u + 6 g / ‖g‖`` over all tensors at once (``u`` itself when ``g = 0``).

    With a purely random ``u ~ N(0, I)`` the scalar ``gᵀu ~ N(0, ‖g‖²)`` now and then
    cancels to a tiny value, where the relative error of ``vᵀJu`` measures only the
    rounding of the finite difference (about 1 draw in 100 failed at small shapes for
    correct backwards). Tilted, ``gᵀu = gᵀr + 6 ‖g‖ ≥ ‖g‖`` unless ``gᵀr < -5 ‖g‖``
    (probability 3e-7), each element moves by at most 6 more, and an error ``δ`` in
    the analytic ``g`` still shows in full as ``δᵀu``.
    """
    g_norm = float(np.sqrt(sum(np.sum(g * g) for g in grads.values())))
    if g_norm == 0.0 or not np.isfinite(g_norm):
        return dict(u)
    return {k: v + (6.0 / g_norm) * grads[k] for k, v in u.items()}


# ----------------------------------------------------------------------------- checks


def hvp_records(case: Case, xp: Any, seed: int = 0, sizes: Mapping[str, int] | None = None,
                backend: str = "numpy") -> list:
    """The records of ``refmem check --method hvp`` for ``case`` at ``seed``: the complex-step HVP
    ([`refmem.forward_mode.hvp`][refmem.forward_mode.hvp]) against Richardson-extrapolated central differences
    of the backward, per tensor, and the symmetry ``⟨t₂, H t₁⟩ = ⟨t₁, H t₂⟩`` for two tangent draws."""
    ev = Evaluation(case, xp, case.draw(xp, seed, sizes), seed)
    arrays = {k: (rx.from_numpy(xp, ev.host[k]) if k in ev.keys else v) for k, v in ev.arrays.items()}
    frozen = ev.frozen if case.stopped else {}
    records = []
    # Agreement: complex step against central differences of the backward, per tensor.
    t1 = fm.tangents_for(ev.host, ev.keys, seed)
    t0 = time.perf_counter()
    exact = fm.hvp(case, xp, arrays, ev.cotangents, t1, frozen)
    numeric = fm.central_hvp(case, xp, arrays, ev.cotangents, t1, frozen)
    seconds = time.perf_counter() - t0
    atol, rtol, normwise = fm.HVP_TOLERANCES["agreement"]
    tol = Tolerance(atol=atol, rtol=rtol, normwise=normwise)
    for k in sorted(exact):
        err = compare(exact[k], numeric[k], tol)
        records.append(Record(case.name, f"hvp/{k}", "hvp", *err, seconds / len(exact), backend,
                              note="complex step vs Richardson central differences of the backward"))
    # Symmetry on a second draw of tangents.
    t0 = time.perf_counter()
    a, b = t1, fm.tangents_for(ev.host, ev.keys, seed, draw=1)
    ha, hb = fm.hvp(case, xp, arrays, ev.cotangents, a, frozen), fm.hvp(case, xp, arrays, ev.cotangents, b, frozen)
    ba = sum(float(np.sum(b[k] * ha[k])) for k in a)
    ab = sum(float(np.sum(a[k] * hb[k])) for k in a)
    scale = max(abs(ba), abs(ab), sum(float(np.sum(np.abs(b[k] * ha[k]))) for k in a), 1e-300)
    rel = abs(ba - ab) / scale
    records.append(Record(case.name, "<t2,Ht1>", "hvp", abs(ba - ab), rel, rel,
                          bool(rel <= fm.HVP_TOLERANCES["symmetry"]), time.perf_counter() - t0, backend,
                          note="symmetry <t2,Ht1> = <t1,Ht2>"))
    return records




def check_case(
    case: Case,
    xp: Any,
    seed: int = 0,
    methods: Iterable[str] = ("central", "complex"),
    sizes: Mapping[str, int] | None = None,
    on_tensor: Callable[[Record], None] | None = None,
    batched: bool = True,
    jobs: int | None = None,
) -> list[Record]:
    """Check every differentiable tensor of ``case`` at ``seed`` with ``methods``.

    ``complex`` is skipped for cases that are not analytic on their path
    (``case.complex_step`` false). Returns one [`Record`][refmem.gradcheck.Record] per tensor and
    method (one per case for ``directional``). ``batched=False`` forces the
    plain per-element loop (see the module docstring). ``jobs`` is no longer
    used (0.2.0: a case is checked in one process; ``refmem check --workers``
    checks cases side by side) and warns when given.
    """
    if jobs is not None:
        import warnings

        warnings.warn("check_case(jobs=...) is ignored since refmem 0.2.0: a case is checked in one process; "
                      "refmem check --workers N checks cases in N processes", DeprecationWarning, stacklevel=2)
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

    if "hvp" in methods:
        for rec in hvp_records(case, xp, seed, sizes, backend):
            emit(rec)
        methods = [m for m in methods if m != "hvp"]
    for method in methods:
        if method == "complex" and not case.complex_step:
            continue
        tol = TOLERANCES[method]
        if method == "directional":
            t0 = time.perf_counter()
            rng = np.random.default_rng([int(seed), 0xD1EC])
            u = {k: rng.normal(size=ev.host[k].shape) for k in ev.keys}
            u = _tilted_direction(u, analytic)
            numeric = directional_derivative(ev, u)
            exact = float(sum(np.sum(analytic[k] * u[k]) for k in ev.keys))
            err = compare(np.array([exact]), np.array([numeric]), tol)
            emit(Record(case.name, "vJu", method, *err, time.perf_counter() - t0, backend))
            continue
        for key in ev.keys:
            t0 = time.perf_counter()
            if method == "central":
                numeric = central_gradient(ev, key, batched=batched)
            else:
                numeric = complex_gradient(ev, key, batched=batched)
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
    batched: bool = True,
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
    return check_case(case, xp, seed=seed, methods=methods, batched=batched)
