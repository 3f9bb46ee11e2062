"""Load a golden case and compare results with it: strictly, and naming the first divergence.

[`load`][refmem.golden.comparison.load] checks integrity (sha256, the manifest entry recorded inside the file,
names, dtypes, shapes). [`compare`][refmem.golden.comparison.compare] holds every returned tensor to the
reference: a result must be a real array of the dtype under test, of the reference
shape, finite and within ``|a - r| ≤ atol + rtol |r|``; a complex, integer or
wrongly typed result, a wrong shape, a NaN or infinity, a missing output or
gradient, and a name the case does not have fail with a message that says which
and why. For a failing case, [`first_divergence`][refmem.golden.comparison.first_divergence] walks the
manifest's ``order`` (the earliest time step first) and names the first quantity that
disagrees, its SPEC reference, the worst element, the reference and the given value.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np

from .. import xp as rx
from ..errors import DomainError
from ..catalogue import ROLES
from .storage import (
    COMPARED, OPTIONAL, GoldenError, IntegrityError, expected_tensors, given_tensors, is_float, parse_json,
    read_manifest, read_regular, read_safetensors, relpath, resolve_dir, role_of, sha256, validate_entry,
)
from .tolerances import DTYPES

__all__ = ["Golden", "load", "Row", "Divergence", "Report", "compare", "first_divergence", "to_host"]


@dataclass(frozen=True)
class Golden:
    """One loaded golden case.

    ``inputs``, ``params``, ``state``, ``cotangents``, ``outputs`` and ``intermediates``
    map bare names to arrays; ``grads`` maps role-prefixed names (``"params/W_a"``) to
    arrays; ``tensors`` holds everything under its full name (``"grads/params/W_a"``);
    ``tol`` maps each compared tensor's full name to ``{"float64": [rtol, atol],
    "float32": [rtol, atol]}``; ``order`` is the manifest's ``order`` (for a format-1
    file: the outputs at the case's SPEC reference); ``precision`` its ``precision``.
    ``tangents`` and ``hvp`` map role-prefixed names, ``jvp`` bare output names, to arrays
    (empty for a file without forward-mode tensors).
    """

    name: str
    function: str
    spec: str
    seed: int
    config: dict[str, Any]
    inputs: dict[str, np.ndarray]
    params: dict[str, np.ndarray]
    state: dict[str, np.ndarray]
    cotangents: dict[str, np.ndarray]
    outputs: dict[str, np.ndarray]
    grads: dict[str, np.ndarray]
    tensors: dict[str, np.ndarray] = field(repr=False)
    tol: dict[str, dict[str, list[float]]] = field(repr=False)
    intermediates: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    order: tuple[dict[str, Any], ...] = ()
    precision: str = ""
    tangents: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    jvp: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    hvp: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    def given(self, dtype: str = "float64") -> dict[str, np.ndarray]:
        """What an implementation is given (inputs, params, state, cotangents, tangents), floats cast to ``dtype``."""
        np_dtype = np.dtype(dtype)
        return {k: (v.astype(np_dtype) if is_float(v) else v.copy()) for k, v in given_tensors(self.tensors).items()}

    def expected(self, dtype: str | None = None, intermediates: bool = True) -> dict[str, np.ndarray]:
        """The float64 reference outputs, intermediates, grads, jvp and hvp under their full names
        (cast to ``dtype`` when given; without the intermediates when ``intermediates`` is false)."""
        out = {k: v for k, v in expected_tensors(self.tensors).items()
               if intermediates or role_of(k) != "intermediates"}
        return out if dtype is None else {k: v.astype(np.dtype(dtype)) for k, v in out.items()}


def load(case: str, dir: str | Path | None = None, manifest: dict | None = None) -> Golden:  # noqa: A002
    """Load golden case ``case`` from ``dir`` (see
    [`refmem.golden.storage.default_dir`][refmem.golden.storage.default_dir]).

    Refuses, with `IntegrityError` naming the case, a malformed manifest entry
    (`refmem.golden.storage.validate_entry`: a wrong JSON type, a tolerance that is not
    finite and > 0), a file whose sha256 is not the manifest's, a manifest entry that differs
    from the copy inside the file, and tensors whose names, dtypes or shapes differ from the
    manifest; a case file that is not a regular file (a directory, a FIFO: never waited on)
    is a `GoldenError` naming it.
    """
    root = resolve_dir(dir)
    manifest = manifest if manifest is not None else read_manifest(root)
    entry = manifest["cases"].get(case)
    if entry is None:
        raise GoldenError(f"no golden case {case!r} in {root / 'manifest.json'}")
    validate_entry(case, entry, root / "manifest.json")
    rel = entry["file"]
    if rel != relpath(case):
        raise IntegrityError(f"{case}: manifest names file {rel!r}, expected {relpath(case)!r}")
    path = root / rel
    if not os.path.lexists(path):
        raise GoldenError(f"{case}: file {path} is missing")
    try:
        data = read_regular(path)
    except GoldenError as exc:
        raise GoldenError(f"{case}: {exc}") from None
    digest = sha256(data)
    if digest != entry["sha256"]:
        raise IntegrityError(
            f"{case}: {path} has sha256 {digest}, the manifest records {entry['sha256']}; refusing a changed file"
        )
    try:
        tensors, meta = read_safetensors(data)
    except Exception as exc:  # noqa: BLE001 - the library raises several types
        raise IntegrityError(f"{case}: {path} is not a readable safetensors file: "
                             f"{' '.join(str(exc).split()) or type(exc).__name__}") from None
    described = {k: v for k, v in entry.items() if k not in ("file", "sha256")}
    try:
        recorded = parse_json(meta, path) if meta else None
    except GoldenError:
        recorded = None
    if recorded != described:
        raise IntegrityError(f"{case}: the manifest entry differs from the one recorded inside {path}; "
                             "refusing an edited manifest")
    if set(tensors) != set(entry["tensors"]):
        raise IntegrityError(f"{case}: tensors in {path} differ from the manifest's")
    for name, desc in entry["tensors"].items():
        a = tensors[name]
        if str(a.dtype) != desc["dtype"] or list(a.shape) != list(desc["shape"]):
            raise IntegrityError(
                f"{case}: {name} is {a.dtype} {list(a.shape)}, the manifest says {desc['dtype']} {desc['shape']}"
            )
    order = entry.get("order") or [{"name": k, "spec": entry["spec"]} for k in sorted(tensors)
                                   if k.startswith("outputs/")]
    for item in order:
        if item.get("name") not in tensors:
            raise IntegrityError(f"{case}: order names {item.get('name')!r}, which the file does not hold")

    def role(prefix: str) -> dict[str, np.ndarray]:
        n = len(prefix) + 1
        return {k[n:]: v for k, v in sorted(tensors.items()) if k.startswith(prefix + "/")}

    return Golden(
        name=case,
        function=entry["function"],
        spec=entry["spec"],
        seed=int(entry["seed"]),
        config=dict(entry["config"]),
        inputs=role("inputs"),
        params=role("params"),
        state=role("state"),
        cotangents=role("cotangents"),
        outputs=role("outputs"),
        grads=role("grads"),
        tensors=dict(sorted(tensors.items())),
        tol={k: d["tol"] for k, d in entry["tensors"].items() if "tol" in d},
        intermediates=role("intermediates"),
        order=tuple(dict(o) for o in order),
        precision=str(entry.get("precision", "")),
        tangents=role("tangents"),
        jvp=role("jvp"),
        hvp=role("hvp"),
    )


# ----------------------------------------------------------------------------- rows and reports


@dataclass
class Row:
    """One compared tensor.

    ``ratio`` is ``max |a - r| / (atol + rtol |r|)``: the tensor passes when it is at most 1.
    """

    case: str
    tensor: str
    shape: tuple[int, ...]
    dtype: str
    rtol: float
    atol: float
    max_abs_err: float
    ratio: float
    passed: bool
    note: str = ""


@dataclass(frozen=True)
class Divergence:
    """The first quantity of a failing case that disagrees with the reference.

    ``tensor``: its full name; ``spec``: its SPEC reference; ``step``: the time step
    (0-based index on the time axis) for a per-step quantity, else ``None``; ``index``:
    the worst element (within the step's slice for a per-step quantity); ``reference``
    and ``given`` its values (``nan`` when the failure is structural); ``reason``: a
    structural failure (dtype, shape, complex) instead of a value, or ``""``.
    """

    case: str
    tensor: str
    spec: str
    step: int | None
    index: tuple[int, ...]
    reference: float
    given: float
    reason: str = ""

    @property
    def message(self) -> str:
        where = f" at t={self.step}" if self.step is not None else ""
        role = self.tensor.split("/", 1)[0]
        head = ("first divergence" if role not in ("grads", "jvp", "hvp") else
                "the forward agrees on every quantity it returned; first failing "
                + {"grads": "gradient", "jvp": "JVP", "hvp": "HVP"}[role])
        what = f"{self.tensor} ({self.spec})"
        if self.reason:
            return f"{head}{where}: {what}: {self.reason}"
        ref, got = _pair(self.reference, self.given)
        return f"{head}{where}: {what} at {list(self.index)}: reference {ref}, yours {got}"

    def __str__(self) -> str:
        return self.message


def _pair(a: float, b: float) -> tuple[str, str]:
    """``a`` and ``b`` with 4 significant digits, or as many more as it takes to tell them apart."""
    for digits in range(4, 18):
        sa, sb = f"{a:.{digits}g}", f"{b:.{digits}g}"
        if sa != sb:
            return sa, sb
    return sa, sb


@dataclass
class Report:
    """The rows of one or more compared cases, their first divergences and a printable table."""

    rows: list[Row] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    divergences: dict[str, Divergence] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return not self.problems and all(r.passed for r in self.rows)

    @property
    def failures(self) -> list[Row]:
        return [r for r in self.rows if not r.passed]

    @property
    def cases(self) -> list[str]:
        """Every case named by a row or a problem, in first-seen order."""
        seen = dict.fromkeys(r.case for r in self.rows)
        for p in self.problems:
            seen.setdefault(p.split(":")[0], None)
        return list(seen)

    def failed_cases(self) -> list[str]:
        bad = dict.fromkeys(r.case for r in self.failures)
        for p in self.problems:
            bad.setdefault(p.split(":")[0], None)
        return list(bad)

    def extend(self, other: "Report") -> None:
        self.rows.extend(other.rows)
        self.problems.extend(other.problems)
        for k, v in other.divergences.items():
            self.divergences.setdefault(k, v)

    def table(self, only_failures: bool = False) -> str:
        rows = [r for r in self.rows if not (only_failures and r.passed)]
        lines = []
        if rows:
            wc = max(len("case"), *(len(r.case) for r in rows))
            wt = max(len("tensor"), *(len(r.tensor) for r in rows))
            ws = max(len("shape"), *(len(str(list(r.shape))) for r in rows))
            head = (f"{'case':<{wc}}  {'tensor':<{wt}}  {'shape':<{ws}}  {'dtype':<7} {'rtol':>7} {'atol':>7} "
                    f"{'max_abs':>8} {'ratio':>8}  result")
            lines += [head, "-" * len(head)]
            for r in rows:
                verdict = "ok" if r.passed else "FAIL"
                if r.note:
                    verdict += f" ({r.note})"
                lines.append(
                    f"{r.case:<{wc}}  {r.tensor:<{wt}}  {str(list(r.shape)):<{ws}}  {r.dtype:<7} {_e(r.rtol):>7} "
                    f"{_e(r.atol):>7} {_e(r.max_abs_err):>8} {_e(r.ratio):>8}  {verdict}"
                )
        lines += [f"{case}: {d.message}" for case, d in self.divergences.items()]
        lines += [f"problem: {p}" for p in self.problems]
        return "\n".join(lines)

    def failure_text(self, case: str) -> str:
        """What went wrong in ``case``: its first divergence, failing tensors and problems, one per line."""
        lines = []
        if case in self.divergences:
            lines.append(self.divergences[case].message)
        bad = [r for r in self.failures if r.case == case]
        if bad:
            lines.append("failing: " + ", ".join(f"{r.tensor}" + (f" ({r.note})" if r.note else "") for r in bad))
        lines += [p for p in self.problems if p.split(":")[0] == case]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()


def _e(x: float) -> str:
    return "nan" if x != x else ("inf" if x == math.inf else f"{x:.1e}")


# ----------------------------------------------------------------------------- comparing


def to_host(value: Any) -> np.ndarray:
    """``value`` (an array of any framework, a torch tensor with grad, a list) as a NumPy array, dtype kept."""
    try:
        return np.asarray(rx.to_numpy(value))
    except Exception:  # noqa: BLE001 - not an array refmem knows: let NumPy try
        return np.asarray(value)


def _origin(value: Any) -> str:
    """``"a Python list"`` (tuple, float, int) for a value that is not an array and so has no dtype
    of its own, else ``""``."""
    if isinstance(value, (list, tuple, float, int)) and not isinstance(value, bool):
        return f"a Python {type(value).__name__}"
    return ""


def _structural(ref: np.ndarray, got: np.ndarray, dtype: str, given: Any = None) -> str:
    """Why ``got`` (``given`` as returned, converted) cannot be compared with ``ref`` in ``dtype``
    (``""`` when it can)."""
    origin = _origin(given)
    if got.dtype.kind == "c":
        return f"complex result ({got.dtype}); expected a real {dtype} array"
    if origin and str(got.dtype) != dtype:
        return (f"returned {origin}, which has no dtype (NumPy reads it as {got.dtype}); "
                f"return an array of dtype {dtype}")
    if got.dtype.kind != "f":
        return f"dtype {got.dtype} is not a floating type; expected {dtype}"
    if str(got.dtype) != dtype:
        return f"dtype {got.dtype}, expected {dtype} (compute in the dtype you were given)"
    if tuple(got.shape) != tuple(ref.shape):
        return f"shape {list(got.shape)}, expected {list(ref.shape)}"
    return ""


def _bad_elements(ref: np.ndarray, got: np.ndarray, rtol: float, atol: float) -> tuple[np.ndarray, np.ndarray]:
    """``(bad, ratio)``: where ``|a - r| > atol + rtol |r|`` or ``a`` is not finite, and the ratio (inf there)."""
    with np.errstate(invalid="ignore", over="ignore"):
        diff = np.abs(got - ref)
        ratio = diff / (atol + rtol * np.abs(ref))
    ratio = np.where(np.isfinite(got), ratio, np.inf)
    return ~(ratio <= 1.0), ratio


def compare(
    golden: Golden,
    results: Mapping[str, Any],
    dtype: str = "float64",
    names: Iterable[str] | None = None,
) -> Report:
    """Compare ``results`` (full names ``outputs/...``, ``intermediates/...``, ``grads/...`` -> arrays
    of any framework) with the reference of ``golden`` at the tolerance of ``dtype``.

    Every output and gradient (or those in ``names``) must be present; intermediates,
    ``jvp/`` and ``hvp/`` are compared when returned. Each must be a real ``dtype`` array of the reference shape,
    finite, with ``|a - r| ≤ atol + rtol |r|`` element-wise. A name the case does not
    have is a problem, except gradients of given tensors the case does not differentiate
    (``nondiff``), which are ignored. A failing case gets its
    [`Divergence`][refmem.golden.comparison.Divergence].
    """
    if not isinstance(golden, Golden):
        raise TypeError(f"golden: expected a refmem.golden.Golden (from refmem.golden.load), "
                        f"got {type(golden).__name__}")
    if not isinstance(results, Mapping):
        raise TypeError(f"results: expected a mapping of tensor names ('outputs/...', 'grads/...') to arrays, "
                        f"got {type(results).__name__}")
    if dtype not in DTYPES:
        raise DomainError(f"dtype: expected one of {DTYPES}, got {dtype!r}")
    expected = golden.expected()
    report = Report()
    # A gradient of a tensor the case does not differentiate (a mask, a state at a kink) is
    # not compared: autograd adapters naturally return one for every tensor they were given.
    given = {f"{r}/{k}" for k in golden.tensors if role_of(k) in ROLES for r in ("grads", "hvp")}
    for extra in sorted(set(results) - set(expected) - given, key=str):
        role = role_of(extra) if isinstance(extra, str) else ""
        if role not in COMPARED:
            why = (f"unknown role {role!r}; an implementation returns "
                   + ", ".join(f"{r}/" for r in COMPARED) + " names")
        else:
            known = sorted(k[len(role) + 1:] for k in expected if role_of(k) == role)
            why = f"this case has no such tensor ({role} here: {', '.join(known) or 'none'})"
        report.problems.append(f"{golden.name}: returned {extra!r}: {why}")
    if names is not None:
        wanted = list(names)
    else:
        wanted = [k for k in sorted(expected) if role_of(k) not in OPTIONAL or k in results]
    host: dict[str, Any] = {}
    for name in wanted:
        ref = expected[name]
        rtol, atol = golden.tol[name][dtype]
        shape = tuple(ref.shape)
        if name not in results:
            report.rows.append(Row(golden.name, name, shape, "-", rtol, atol, math.nan, math.nan, False, "missing"))
            continue
        try:
            got = to_host(results[name])
        except Exception as exc:  # noqa: BLE001 - anything that is not an array
            report.rows.append(Row(golden.name, name, shape, "?", rtol, atol, math.nan, math.nan, False,
                                   f"not an array: {type(exc).__name__}: {exc}"))
            continue
        why = _structural(ref, got, dtype, results[name])
        host[name] = results[name]
        if why:
            report.rows.append(Row(golden.name, name, shape, str(got.dtype), rtol, atol, math.nan, math.nan,
                                   False, why))
            continue
        got64 = got.astype(np.float64)
        bad, ratio = _bad_elements(ref, got64, rtol, atol)
        finite = np.isfinite(got64)
        max_abs = float(np.max(np.abs(got64 - ref)[finite])) if finite.any() else math.nan
        worst = float(ratio.max()) if ratio.size else 0.0
        note = ""
        if not finite.all():
            idx = np.unravel_index(int(np.argmax(~finite)), ref.shape)
            kind = "NaN" if np.isnan(got64[idx]) else "inf"
            note = f"{int((~finite).sum())} non-finite, first {kind} at {list(map(int, idx))}"
        elif bad.any():
            idx = np.unravel_index(int(np.argmax(ratio)), ref.shape)
            r, a = _pair(float(ref[idx]), float(got64[idx]))
            note = f"at {list(map(int, idx))}: reference {r}, yours {a}"
        report.rows.append(Row(golden.name, name, shape, str(got.dtype), rtol, atol, max_abs, worst,
                               not bad.any(), note))
    if not report.passed:
        d = first_divergence(golden, host, dtype)
        if d is not None:
            report.divergences[golden.name] = d
    return report


def _steps(golden: Golden) -> list[tuple[dict[str, Any], int | None]]:
    """``(order item, time step or None)`` in the order they are computed: what comes before the
    loop, then every per-step quantity of step 0, of step 1, ..., then what comes after."""
    order = list(golden.order)
    per = [o for o in order if o.get("per_step")]
    if not per:
        return [(o, None) for o in order]
    first = order.index(per[0])
    T = int(golden.tensors[per[0]["name"]].shape[1])
    seq: list[tuple[dict[str, Any], int | None]] = [(o, None) for o in order[:first]]
    for t in range(T):
        seq += [(o, t) for o in per]
    seq += [(o, None) for o in order[first + len(per):]]
    return seq


def first_divergence(golden: Golden, results: Mapping[str, Any], dtype: str) -> Divergence | None:
    """The first quantity of ``golden.order`` (earliest time step first) on which ``results``
    (full names -> arrays as returned) disagree with the reference in ``dtype``; if all
    agree, the first failing gradient (by name), then JVP, then HVP; ``None`` when nothing disagrees. A structural
    failure (dtype, shape, complex) of a quantity counts as a disagreement at its first place."""
    expected = golden.expected()

    def check(name: str, spec: str, step: int | None) -> Divergence | None:
        ref, got = expected[name], to_host(results[name])
        why = _structural(ref, got, dtype, results[name])
        if why:
            return Divergence(golden.name, name, spec, step, (), math.nan, math.nan, why)
        got = got.astype(np.float64)
        rtol, atol = golden.tol[name][dtype]
        if step is not None:
            ref, got = ref[:, step], got[:, step]
        bad, ratio = _bad_elements(ref, got, rtol, atol)
        if not bad.any():
            return None
        idx = np.unravel_index(int(np.argmax(ratio)), ref.shape)
        return Divergence(golden.name, name, spec, step, tuple(int(i) for i in idx), float(ref[idx]), float(got[idx]))

    for item, step in _steps(golden):
        if item["name"] in results:
            d = check(item["name"], item["spec"], step)
            if d is not None:
                return d
    later = ("grads", "jvp", "hvp")
    for name in sorted((k for k in results if role_of(k) in later and k in expected),
                       key=lambda k: (later.index(role_of(k)), k)):
        d = check(name, golden.spec, None)
        if d is not None:
            return d
    return None
