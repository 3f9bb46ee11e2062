"""Golden tensors (GOLDEN.md): export, check, load, compare and verify.

Every catalogue case becomes one safetensors file holding what the case takes
(``inputs/``, ``params/``, ``state/`` as sampled at the seed), what it returns
(``outputs/<name>``), one upstream gradient per output (``cotangents/<name>``,
the very cotangents of :func:`refmem.gradcheck.cotangents_for`, so the gradient
check and the golden tensors agree) and the vector-Jacobian product of the
case's backward at those cotangents (``grads/<role>/<name>``). The walk over
:func:`refmem.catalogue.cases` is generic: a new case is exported with no
change here.

Tolerances, per output and gradient tensor and per dtype, as ``[rtol, atol]``
for the element-wise test ``|a - r| ≤ atol + rtol |r|`` (``r`` the float64
reference, ``a`` the result under test, both as float64):

* The case runs once more in float32 from the stored inputs and cotangents
  (cast without loss: they are float32-representable). With ``e`` the largest
  absolute deviation of that float32 result from the reference and ``s`` the
  largest ``|r|`` (1 for an all-zero tensor), ``κ = max(e / (ε₃₂ s), 1)`` is how
  many float32 units of the tensor's scale the computation loses.
* ``atol_d = SAFETY[d] · κ · ε_d · s`` and ``rtol_d = RTOL_ULPS · ε_d`` for
  ``d`` in float32 and float64 (``ε`` the machine epsilon). Rounding error grows
  with the unit roundoff to first order, so the float32 measurement sets the
  float64 tolerance too. The margins, :data:`SAFETY` (16 for float32, 256 for
  float64: another framework may pick other algorithms for softmax, sigmoid or
  sums), cover implementations that round differently from refmem.
* Values are rounded up to two significant digits. The tests check that a
  gradient with one entry moved by a thousandth of the tensor's scale fails.

Integrity: the manifest holds each file's sha256, and each file carries its
own manifest entry (without ``file`` and ``sha256``) as safetensors metadata,
so :func:`load` refuses, naming the case, a file that was changed and a
manifest entry that was edited (a loosened tolerance, a changed shape).
Nothing is pickled. Only C-contiguous arrays are written (safetensors 0.8.0
writes a non-contiguous array in memory order, issue #825).
"""

from __future__ import annotations

import fnmatch
import hashlib
import importlib
import importlib.util
import inspect
import json
import math
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from . import __version__
from . import catalogue, gradcheck
from . import xp as rx

__all__ = [
    "FORMAT_VERSION",
    "SEED",
    "SAFETY",
    "RTOL_ULPS",
    "DEFAULT_DIR",
    "GoldenError",
    "IntegrityError",
    "Golden",
    "Row",
    "Report",
    "Adapter",
    "reference",
    "float32_run",
    "tolerance",
    "export",
    "read_manifest",
    "load",
    "compare",
    "check",
    "verify",
    "load_adapter",
    "write_safetensors",
    "read_safetensors",
    "render_readme",
    "case_notes",
]

#: Version of the on-disk format (GOLDEN.md); bump it with a migration note.
FORMAT_VERSION = 1
#: The seed every case is exported at.
SEED = 0
#: Safety margins over the measured float32 rounding error, per dtype.
SAFETY = {"float32": 16.0, "float64": 256.0}
#: Relative tolerance in units of the dtype's machine epsilon.
RTOL_ULPS = 16.0
EPS = {"float32": float(np.finfo(np.float32).eps), "float64": float(np.finfo(np.float64).eps)}
DTYPES = ("float32", "float64")
ROLES = catalogue.ROLES
#: Name of the one safetensors metadata key (one key keeps the header deterministic:
#: safetensors orders several metadata keys at random).
META_KEY = "refmem_golden"

#: The repository's ``golden/`` directory when refmem runs from a checkout, else ``./golden``.
DEFAULT_DIR = (
    Path(__file__).resolve().parent.parent / "golden"
    if (Path(__file__).resolve().parent.parent / "golden" / "manifest.json").exists()
    else Path("golden")
)


class GoldenError(RuntimeError):
    """A golden directory that cannot be used (missing, wrong format, unknown case)."""


class IntegrityError(GoldenError):
    """A golden file or manifest entry that does not match its recorded hash or metadata."""


# ----------------------------------------------------------------------------- safetensors I/O


def write_safetensors(path: str | os.PathLike, tensors: Mapping[str, np.ndarray], metadata: str) -> bytes:
    """Write ``tensors`` to ``path`` and return the bytes written.

    Every array is copied to C order first (safetensors 0.8.0 writes a transposed
    view or a Fortran-ordered array in memory order under its logical shape,
    issue #825). ``metadata`` is stored under the single key :data:`META_KEY`.
    """
    from safetensors.numpy import save

    arrays = {}
    for name, value in tensors.items():
        a = np.asarray(value)
        if a.dtype.kind not in "fiub":
            raise GoldenError(f"{name}: cannot store dtype {a.dtype}")
        arrays[name] = np.ascontiguousarray(a)
    data = save(arrays, metadata={META_KEY: metadata})
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(str(path) + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return data


def read_safetensors(data: bytes) -> tuple[dict[str, np.ndarray], str]:
    """Parse safetensors ``data``: ``(tensors, metadata string)``."""
    from safetensors.numpy import load as st_load

    tensors = st_load(data)
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + n].decode("utf-8"))
    meta = (header.get("__metadata__") or {}).get(META_KEY, "")
    return tensors, meta


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _dumps(obj: Any) -> str:
    """The canonical JSON of refmem golden: sorted keys, indent 2, no NaN."""
    return json.dumps(obj, sort_keys=True, indent=2, allow_nan=False, ensure_ascii=False) + "\n"


# ----------------------------------------------------------------------------- computing a case


def _host(a: Any) -> np.ndarray:
    return np.ascontiguousarray(rx.to_numpy(a))


def _is_float(a: np.ndarray) -> bool:
    return a.dtype.kind == "f"


def reference(case: catalogue.Case, seed: int = SEED) -> dict[str, np.ndarray]:
    """Every golden tensor of ``case`` at ``seed``, computed in float64 under NumPy.

    Returns role-prefixed names: the sampled ``inputs/``, ``params/``, ``state/``,
    ``outputs/<name>``, ``cotangents/<name>`` and ``grads/<role>/<name>``.
    """
    xp = rx.backend("numpy")
    arrays = case.draw(xp, seed)
    out: dict[str, np.ndarray] = {k: _host(v) for k, v in arrays.items()}
    for k, v in out.items():
        if _is_float(v) and (v.dtype != np.float64 or not np.array_equal(v.astype(np.float32).astype(np.float64), v)):
            raise GoldenError(f"{case.name}: sampled {k} is not float32-representable float64 (GOLDEN.md)")
    outputs = {k: _host(v) for k, v in case.forward(arrays).outputs.items()}
    for k, v in outputs.items():
        if not np.all(np.isfinite(v)):
            raise GoldenError(f"{case.name}: output {k!r} holds NaN or infinity")
        out[f"outputs/{k}"] = v
    cot = gradcheck.cotangents_for(outputs, seed)
    for k, v in cot.items():
        out[f"cotangents/{k}"] = np.ascontiguousarray(v)
    grads = case.backward(arrays, {k: rx.from_numpy(xp, v) for k, v in cot.items()})
    keys = case.differentiable(arrays)
    if set(grads) != set(keys):
        raise GoldenError(f"{case.name}: backward returned gradients for {sorted(grads)}, expected {sorted(keys)}")
    for k in keys:
        g = _host(grads[k])
        if g.shape != out[k].shape:
            raise GoldenError(f"{case.name}: gradient of {k} has shape {g.shape}, expected {out[k].shape}")
        if not np.all(np.isfinite(g)):
            raise GoldenError(f"{case.name}: gradient of {k} holds NaN or infinity")
        out[f"grads/{k}"] = g
    return out


def _given(tensors: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The tensors an implementation is given: inputs, params, state and cotangents."""
    return {k: v for k, v in tensors.items() if k.split("/")[0] in ROLES + ("cotangents",)}


def _expected(tensors: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The tensors an implementation must return: outputs and grads."""
    return {k: v for k, v in tensors.items() if k.split("/")[0] in ("outputs", "grads")}


def float32_run(case: catalogue.Case, tensors: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The case's own forward and backward in float32 from the stored tensors.

    Returns ``outputs/...`` and ``grads/...`` as float32 arrays. Raises
    :class:`GoldenError` when a result is not float32 (a case that hard-codes
    float64 would make the measured tolerance too tight).
    """
    xp = rx.backend("numpy")
    arrays = {
        k: rx.from_numpy(xp, v.astype(np.float32) if _is_float(v) else v)
        for k, v in tensors.items()
        if k.split("/")[0] in ROLES
    }
    outputs = case.forward(arrays).outputs
    cot = {
        k[len("cotangents/") :]: rx.from_numpy(xp, v.astype(np.float32))
        for k, v in tensors.items()
        if k.startswith("cotangents/")
    }
    grads = case.backward(arrays, cot)
    result = {f"outputs/{k}": _host(v) for k, v in outputs.items()}
    result.update({f"grads/{k}": _host(v) for k, v in grads.items()})
    for k, v in result.items():
        if v.dtype != np.float32:
            raise GoldenError(
                f"{case.name}: {k} comes out as {v.dtype} from float32 inputs; "
                "model code must create arrays with the dtype of its inputs"
            )
    return result


def _round_up(x: float, digits: int = 2) -> float:
    """``x`` rounded up to ``digits`` significant digits (a clean number for JSON)."""
    if x <= 0:
        return 0.0
    e = math.floor(math.log10(x)) - (digits - 1)
    m = math.ceil(x / 10.0**e - 1e-9)
    return float(f"{m}e{e}")


def tolerance(ref: np.ndarray, f32: np.ndarray) -> dict[str, list[float]]:
    """``{"float64": [rtol, atol], "float32": [rtol, atol]}`` from a float32 measurement.

    See the module docstring: ``κ = max(e / (ε₃₂ s), 1)``, ``atol_d = SAFETY[d] κ ε_d s``,
    ``rtol_d = RTOL_ULPS ε_d``.
    """
    ref = np.asarray(ref, dtype=np.float64)
    err = float(np.max(np.abs(np.asarray(f32, dtype=np.float64) - ref))) if ref.size else 0.0
    scale = float(np.max(np.abs(ref))) if ref.size else 0.0
    if scale == 0.0:
        scale = 1.0
    kappa = max(err / (EPS["float32"] * scale), 1.0)
    return {
        d: [_round_up(RTOL_ULPS * EPS[d]), _round_up(SAFETY[d] * kappa * EPS[d] * scale)] for d in DTYPES
    }


def _entry(case: catalogue.Case, seed: int, tensors: Mapping[str, np.ndarray], f32: Mapping[str, np.ndarray]) -> dict:
    """The manifest entry of a case, without ``file`` and ``sha256``."""
    desc: dict[str, Any] = {}
    for name in sorted(tensors):
        a = tensors[name]
        d: dict[str, Any] = {"dtype": str(a.dtype), "shape": [int(s) for s in a.shape]}
        if name.split("/")[0] in ("outputs", "grads"):
            d["l2"] = float(np.linalg.norm(a.reshape(-1)))
            d["tol"] = tolerance(a, f32[name])
        desc[name] = d
    config = json.loads(json.dumps(dict(case.config), sort_keys=True, allow_nan=False))
    return {"function": case.function, "spec": case.spec, "seed": int(seed), "config": config, "tensors": desc}


def _relpath(name: str) -> str:
    parts = name.split("/")
    if len(parts) != 3 or not all(parts) or any(p in (".", "..") for p in parts):
        raise GoldenError(f"bad case name {name!r}; expected <module>/<function>/<variant>")
    return f"{name}.safetensors"


# ----------------------------------------------------------------------------- export


def export(
    directory: str | os.PathLike = "golden",
    cases: Sequence[catalogue.Case] | None = None,
    seed: int = SEED,
    on_case: Callable[[str], None] | None = None,
    merge: bool = False,
) -> dict:
    """Write every case (all catalogue cases by default) and the manifest and README.

    Deterministic: exporting twice gives byte-identical files. Every case is computed
    before anything is written. With ``merge``, the entries of an existing manifest
    for cases not exported now are kept (after their integrity is checked);
    otherwise the files of cases the previous manifest listed and this export does
    not are removed (no other file of ``directory`` is touched). Returns the manifest.
    """
    root = Path(directory)
    chosen = list(catalogue.cases()) if cases is None else list(cases)
    manifest: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "generator": {"refmem": __version__, "numpy": np.__version__},
        "cases": {},
    }
    old = None
    if (root / "manifest.json").exists():
        try:
            old = read_manifest(root)
        except GoldenError:
            old = None  # unreadable: overwritten below
    if merge and old is not None:
        fresh = {c.name for c in chosen}
        for name in sorted(set(old["cases"]) - fresh):
            load(name, root, old)  # refuse to carry over a damaged case
            manifest["cases"][name] = old["cases"][name]
    # Compute every case before writing anything, so that a failing case leaves the directory as it was.
    computed = []
    for case in chosen:
        tensors = reference(case, seed)
        entry = _entry(case, seed, tensors, float32_run(case, tensors))
        computed.append((case.name, tensors, entry))
    for name, tensors, entry in computed:
        rel = _relpath(name)
        data = write_safetensors(root / rel, tensors, json.dumps(entry, sort_keys=True, allow_nan=False))
        manifest["cases"][name] = {"file": rel, "sha256": _sha256(data), **entry}
        if on_case is not None:
            on_case(name)
    # Remove the files of cases the previous manifest listed and this one does not (only those:
    # ``directory`` may hold other files).
    kept = {(root / e["file"]).resolve() for e in manifest["cases"].values()}
    for name, e in sorted((old or {}).get("cases", {}).items()):
        path = root / str(e.get("file", ""))
        if name not in manifest["cases"] and path.suffix == ".safetensors" and path.resolve() not in kept:
            if path.exists() and root.resolve() in path.resolve().parents:
                path.unlink()
                for parent in path.parents:
                    if parent == root or not parent.is_dir() or any(parent.iterdir()):
                        break
                    parent.rmdir()
    manifest["cases"] = dict(sorted(manifest["cases"].items()))
    (root / "manifest.json").write_text(_dumps(manifest), encoding="utf-8")
    (root / "README.md").write_text(render_readme(manifest, case_notes(manifest)), encoding="utf-8")
    return manifest


# ----------------------------------------------------------------------------- loading


def read_manifest(directory: str | os.PathLike | None = None) -> dict:
    """Parse and validate ``<directory>/manifest.json``."""
    root = Path(directory) if directory is not None else DEFAULT_DIR
    path = root / "manifest.json"
    if not path.exists():
        raise GoldenError(f"no golden manifest at {path} (run: refmem golden export --dir {root})")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise IntegrityError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(manifest, dict) or manifest.get("format_version") != FORMAT_VERSION:
        got = manifest.get("format_version") if isinstance(manifest, dict) else None
        raise GoldenError(f"{path}: format_version {got!r}, this refmem reads {FORMAT_VERSION}")
    if not isinstance(manifest.get("cases"), dict):
        raise IntegrityError(f"{path}: no 'cases' object")
    return manifest


@dataclass(frozen=True)
class Golden:
    """One loaded golden case.

    ``inputs``, ``params``, ``state``, ``cotangents`` and ``outputs`` map bare names to
    arrays; ``grads`` maps role-prefixed names (``"params/W_a"``) to arrays;
    ``tensors`` holds everything under its full name (``"grads/params/W_a"``);
    ``tol`` maps each output and gradient's full name to
    ``{"float64": [rtol, atol], "float32": [rtol, atol]}``.
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

    def given(self, dtype: str = "float64") -> dict[str, np.ndarray]:
        """What an implementation is given (inputs, params, state, cotangents), floats cast to ``dtype``."""
        np_dtype = np.dtype(dtype)
        return {k: (v.astype(np_dtype) if _is_float(v) else v.copy()) for k, v in _given(self.tensors).items()}

    def expected(self) -> dict[str, np.ndarray]:
        """The float64 reference outputs and grads under their full names."""
        return _expected(self.tensors)


def load(case: str, dir: str | os.PathLike | None = None, manifest: dict | None = None) -> Golden:  # noqa: A002
    """Load golden case ``case`` from ``dir`` (the repository's ``golden/`` by default).

    Refuses, with :class:`IntegrityError` naming the case, a file whose sha256 is not
    the manifest's, a manifest entry that differs from the copy inside the file, and
    tensors whose names, dtypes or shapes differ from the manifest.
    """
    root = Path(dir) if dir is not None else DEFAULT_DIR
    manifest = manifest if manifest is not None else read_manifest(root)
    entry = manifest["cases"].get(case)
    if entry is None:
        raise GoldenError(f"no golden case {case!r} in {root / 'manifest.json'}")
    try:
        rel = entry["file"]
        if rel != _relpath(case):
            raise IntegrityError(f"{case}: manifest names file {rel!r}, expected {_relpath(case)!r}")
        path = root / rel
        if not path.exists():
            raise GoldenError(f"{case}: file {path} is missing")
        data = path.read_bytes()
        digest = _sha256(data)
        if digest != entry["sha256"]:
            raise IntegrityError(
                f"{case}: {path} has sha256 {digest}, the manifest records {entry['sha256']}; refusing a changed file"
            )
        try:
            tensors, meta = read_safetensors(data)
        except Exception as exc:  # noqa: BLE001 - the library raises several types
            raise IntegrityError(f"{case}: {path} is not a readable safetensors file: {exc}") from exc
        described = {k: v for k, v in entry.items() if k not in ("file", "sha256")}
        if not meta or json.loads(meta) != described:
            raise IntegrityError(f"{case}: the manifest entry differs from the one recorded inside {path}; refusing an edited manifest")
        if set(tensors) != set(entry["tensors"]):
            raise IntegrityError(f"{case}: tensors in {path} differ from the manifest's")
        for name, desc in entry["tensors"].items():
            a = tensors[name]
            if str(a.dtype) != desc["dtype"] or list(a.shape) != list(desc["shape"]):
                raise IntegrityError(
                    f"{case}: {name} is {a.dtype} {list(a.shape)}, the manifest says {desc['dtype']} {desc['shape']}"
                )
    except KeyError as exc:
        raise IntegrityError(f"{case}: manifest entry lacks {exc}") from exc

    def role(prefix: str) -> dict[str, np.ndarray]:
        n = len(prefix) + 1
        return {k[n:]: v for k, v in sorted(tensors.items()) if k.startswith(prefix + "/")}

    tol = {k: d["tol"] for k, d in entry["tensors"].items() if "tol" in d}
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
        tol=tol,
    )


# ----------------------------------------------------------------------------- comparing


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


@dataclass
class Report:
    """The rows of one or more compared cases, with a printable table."""

    rows: list[Row] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.problems and all(r.passed for r in self.rows)

    @property
    def failures(self) -> list[Row]:
        return [r for r in self.rows if not r.passed]

    def extend(self, other: "Report") -> None:
        self.rows.extend(other.rows)
        self.problems.extend(other.problems)

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
        lines += [f"problem: {p}" for p in self.problems]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()


def _e(x: float) -> str:
    return "nan" if x != x else ("inf" if x == math.inf else f"{x:.1e}")


def compare(
    golden: Golden,
    results: Mapping[str, Any],
    dtype: str = "float64",
    names: Iterable[str] | None = None,
) -> Report:
    """Compare ``results`` (full names ``outputs/...``, ``grads/...`` -> arrays of any
    framework) with the reference of ``golden`` at the tolerance of ``dtype``.

    Every expected tensor (or those in ``names``) must be present, of the reference
    shape and finite, with ``|a - r| ≤ atol + rtol |r|`` element-wise. Unexpected
    names are reported as problems, except gradients of given tensors that the case
    does not differentiate (``nondiff``), which are ignored.
    """
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")
    expected = golden.expected()
    wanted = list(names) if names is not None else sorted(expected)
    report = Report()
    # A gradient of a tensor the case does not differentiate (a mask, a state at a kink) is
    # not compared: autograd adapters naturally return one for every tensor they were given.
    given = {f"grads/{k}" for k in golden.tensors if k.split("/")[0] in ROLES}
    for extra in sorted(set(results) - set(expected) - given):
        report.problems.append(f"{golden.name}: returned {extra!r}, which is not an output or gradient of this case")
    for name in wanted:
        ref = expected[name]
        rtol, atol = golden.tol[name][dtype]
        shape = tuple(ref.shape)
        if name not in results:
            report.rows.append(Row(golden.name, name, shape, "-", rtol, atol, math.nan, math.nan, False, "missing"))
            continue
        try:
            got_native = rx.to_numpy(results[name])
            got = np.asarray(got_native, dtype=np.float64)
        except Exception as exc:  # noqa: BLE001 - anything that is not an array
            report.rows.append(Row(golden.name, name, shape, "?", rtol, atol, math.nan, math.nan, False,
                                   f"not an array: {type(exc).__name__}"))
            continue
        got_dtype = str(np.asarray(got_native).dtype)
        if got.shape != shape:
            report.rows.append(Row(golden.name, name, shape, got_dtype, rtol, atol, math.nan, math.nan, False,
                                   f"shape {list(got.shape)}"))
            continue
        if not np.all(np.isfinite(got)):
            report.rows.append(Row(golden.name, name, shape, got_dtype, rtol, atol, math.nan, math.nan, False,
                                   "NaN or inf"))
            continue
        diff = np.abs(got - ref)
        bound = atol + rtol * np.abs(ref)
        max_abs = float(diff.max()) if diff.size else 0.0
        ratio = float((diff / bound).max()) if diff.size else 0.0
        passed = bool(np.all(diff <= bound))
        note = ""
        if not passed and diff.size:
            idx = np.unravel_index(int(np.argmax(diff / bound)), diff.shape)
            note = f"at {list(map(int, idx))}: {got[idx]:.9g} vs {ref[idx]:.9g}"
        elif got_dtype != dtype:
            note = f"returned {got_dtype}"
        report.rows.append(Row(golden.name, name, shape, got_dtype, rtol, atol, max_abs, ratio, passed, note))
    return report


# ----------------------------------------------------------------------------- check


def check(
    directory: str | os.PathLike | None = None,
    on_case: Callable[[str], None] | None = None,
    modules: Sequence[str] | None = None,
) -> Report:
    """Recompute every case of the manifest and compare it with the stored tensors.

    Never writes. Problems: a catalogue case missing from the manifest, a manifest
    case missing from the catalogue, a file that fails integrity, sampled inputs or
    cotangents that differ from the stored ones, changed names, shapes, SPEC
    references or configs. Rows: each output and gradient, recomputed in float64,
    against the float64 tolerance; refmem's own float32 run against the float32
    tolerance (reported as ``<tensor> @float32``).
    """
    root = Path(directory) if directory is not None else DEFAULT_DIR
    manifest = read_manifest(root)
    known = {c.name: c for c in catalogue.cases(list(modules) if modules else None)}
    stored = {k for k in manifest["cases"] if not modules or k.split("/")[0] in modules}
    report = Report()
    for name in sorted(set(known) - stored):
        report.problems.append(f"{name}: in the catalogue, missing from the manifest (run refmem golden export)")
    for name in sorted(stored - set(known)):
        report.problems.append(f"{name}: in the manifest, not in the catalogue")
    readme = root / "README.md"
    if not modules and (not readme.exists() or readme.read_text(encoding="utf-8") != render_readme(manifest, case_notes(manifest))
    ):
        report.problems.append(f"{readme} is missing or not the one generated from the manifest")
    for name in sorted(stored & set(known)):
        case = known[name]
        try:
            report.extend(_check_case(case, root, manifest))
        except GoldenError as exc:
            report.problems.append(str(exc))
        except Exception as exc:  # noqa: BLE001 - a crashing case is a failed case
            report.problems.append(f"{name}: {type(exc).__name__}: {exc}")
        if on_case is not None:
            on_case(name)
    return report


def _check_case(case: catalogue.Case, root: Path, manifest: dict) -> Report:
    golden = load(case.name, root, manifest)
    report = Report()
    entry = manifest["cases"][case.name]
    for key, want in (("function", case.function), ("spec", case.spec)):
        if entry[key] != want:
            report.problems.append(f"{case.name}: manifest {key} {entry[key]!r}, the catalogue says {want!r}")
    config = json.loads(json.dumps(dict(case.config), sort_keys=True))
    if entry["config"] != config:
        report.problems.append(f"{case.name}: manifest config {entry['config']}, the catalogue says {config}")
    fresh = reference(case, golden.seed)
    if set(fresh) != set(golden.tensors):
        gone = sorted(set(golden.tensors) - set(fresh))
        new = sorted(set(fresh) - set(golden.tensors))
        report.problems.append(f"{case.name}: tensor names changed (stored only: {gone}; computed only: {new})")
        return report
    for name, value in _given(fresh).items():
        old = golden.tensors[name]
        if value.shape != old.shape or value.dtype != old.dtype or not np.array_equal(value, old):
            report.problems.append(
                f"{case.name}: {name} as sampled now differs from the stored tensor "
                "(the case changed; run refmem golden export if that is intended)"
            )
    if report.problems:
        return report
    report.extend(compare(golden, _expected(fresh), "float64"))
    f32 = compare(golden, float32_run(case, golden.tensors), "float32")
    for row in f32.rows:
        row.tensor += " @float32"
    report.extend(f32)
    return report


# ----------------------------------------------------------------------------- verify


@dataclass(frozen=True)
class Adapter:
    """A user's implementation: ``function(case, tensors, dtype[, config=...]) -> {name: array}``
    and the fnmatch ``patterns`` of the case names it implements."""

    spec: str
    function: Callable[..., Mapping[str, Any]]
    patterns: tuple[str, ...]

    def implements(self, case: str) -> bool:
        return any(fnmatch.fnmatchcase(case, p) for p in self.patterns)

    def __call__(self, case: str, tensors: dict[str, np.ndarray], dtype: str, config: dict) -> Mapping[str, Any]:
        try:
            params = inspect.signature(self.function).parameters
            takes_config = "config" in params or any(p.kind is p.VAR_KEYWORD for p in params.values())
        except (TypeError, ValueError):
            takes_config = False
        if takes_config:
            return self.function(case, tensors, dtype, config=config)
        return self.function(case, tensors, dtype)


def load_adapter(spec: str) -> Adapter:
    """Import ``package.module:function`` (or ``path/to/file.py:function``).

    The case patterns come from the function's ``cases`` attribute or else the
    module's ``CASES`` list. The current directory is put on ``sys.path`` so that
    ``examples.torch_dnc:run`` works from the repository root.
    """
    if ":" not in spec:
        raise GoldenError(f"adapter {spec!r}: expected package.module:function")
    mod_name, _, fn_name = spec.rpartition(":")
    if mod_name.endswith(".py"):
        path = Path(mod_name)
        if not path.exists():
            raise GoldenError(f"adapter {spec!r}: no file {path}")
        uniq = "refmem_adapter_" + hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:12]
        s = importlib.util.spec_from_file_location(uniq, path)
        module = importlib.util.module_from_spec(s)
        sys.modules[uniq] = module
        s.loader.exec_module(module)
    else:
        cwd = os.getcwd()
        if cwd not in sys.path and "" not in sys.path:
            sys.path.insert(0, cwd)
        try:
            module = importlib.import_module(mod_name)
        except ImportError as exc:
            raise GoldenError(f"adapter {spec!r}: cannot import {mod_name}: {exc}") from exc
    fn = getattr(module, fn_name, None)
    if not callable(fn):
        raise GoldenError(f"adapter {spec!r}: {mod_name} has no function {fn_name!r}")
    patterns = getattr(fn, "cases", None) or getattr(module, "CASES", None)
    if not patterns:
        raise GoldenError(f"adapter {spec!r}: declare the cases it implements in {mod_name}.CASES (fnmatch patterns)")
    if isinstance(patterns, str):
        patterns = [patterns]
    return Adapter(spec, fn, tuple(patterns))


def verify(
    adapter: Adapter | str,
    dtype: str = "float64",
    directory: str | os.PathLike | None = None,
    patterns: Sequence[str] | None = None,
    on_case: Callable[[str], None] | None = None,
) -> Report:
    """Run ``adapter`` on every golden case it declares (narrowed by ``patterns``) and compare.

    The adapter gets inputs, params, state and cotangents (floats cast to ``dtype``)
    and returns ``outputs/<name>`` and ``grads/<role>/<name>``; each is compared
    with the reference at the tolerance of ``dtype``. An exception inside the
    adapter fails that case and the others still run.
    """
    if dtype not in DTYPES:
        raise GoldenError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    if isinstance(adapter, str):
        adapter = load_adapter(adapter)
    root = Path(directory) if directory is not None else DEFAULT_DIR
    manifest = read_manifest(root)
    names = [n for n in sorted(manifest["cases"]) if adapter.implements(n)]
    if patterns:
        names = [n for n in names if any(fnmatch.fnmatchcase(n, p) or p in n for p in patterns)]
    if not names:
        raise GoldenError(
            f"adapter {adapter.spec}: no golden case in {root} matches {list(adapter.patterns)}"
            + (f" and {list(patterns)}" if patterns else "")
        )
    report = Report()
    for name in names:
        try:
            golden = load(name, root, manifest)
        except GoldenError as exc:
            report.problems.append(str(exc))
            continue
        try:
            results = adapter(name, golden.given(dtype), dtype, dict(golden.config))
            if not isinstance(results, Mapping):
                raise TypeError(f"the adapter returned {type(results).__name__}, expected a dict")
        except Exception as exc:  # noqa: BLE001 - report and go on
            report.problems.append(f"{name}: the adapter raised {type(exc).__name__}: {exc}")
            continue
        report.extend(compare(golden, results, dtype))
        if on_case is not None:
            on_case(name)
    return report


# ----------------------------------------------------------------------------- README


def case_notes(manifest: Mapping[str, Any]) -> dict[str, list[str]]:
    """What an implementer must know beyond shapes, from the catalogue: stopped
    gradients, non-differentiated inputs and how the inputs avoid kinks."""
    known = {c.name: c for c in catalogue.cases()}
    notes: dict[str, list[str]] = {}
    for name in manifest["cases"]:
        case = known.get(name)
        if case is None:
            continue
        lines = []
        if case.stopped:
            lines.append(f"Stopped gradient: {_sentence(case.stopped)}")
        if case.nondiff:
            lines.append("Not differentiated (no grads): " + ", ".join(f"`{n}`" for n in sorted(case.nondiff)) + ".")
        if case.kinks:
            lines.append(f"Inputs avoid kinks: {_sentence(case.kinks)}")
        if lines:
            notes[name] = lines
    return notes


def _sentence(text: str) -> str:
    text = " ".join(text.split())
    return text if text.endswith(".") else text + "."


def render_readme(manifest: Mapping[str, Any], notes: Mapping[str, Sequence[str]] | None = None) -> str:
    """``golden/README.md``, generated from the manifest (and ``notes`` per case, see :func:`case_notes`)."""
    notes = notes or {}
    cases = manifest["cases"]
    lines = [
        "# Golden tensors",
        "",
        "Generated by `refmem golden export` from `manifest.json`; do not edit by hand.",
        "The format is described in GOLDEN.md (format_version "
        f"{manifest['format_version']}); generator: "
        + ", ".join(f"{k} {v}" for k, v in sorted(manifest["generator"].items()))
        + ".",
        "",
        "Each case is one safetensors file. An implementation is given `inputs/`, `params/`, `state/` and",
        "`cotangents/` and must reproduce `outputs/` and `grads/` (the vector-Jacobian product of the",
        "outputs with the cotangents) within `tol = [rtol, atol]` for its dtype, element-wise",
        "`|a - r| <= atol + rtol |r|`. Check an implementation with",
        "`refmem golden verify --adapter package.module:function` (see examples/README.md).",
        "",
        f"{len(cases)} cases, seed {sorted({c['seed'] for c in cases.values()}) if cases else '-'}.",
        "",
        "| case | SPEC | function | config |",
        "|---|---|---|---|",
    ]
    for name in sorted(cases):
        c = cases[name]
        cfg = ", ".join(f"{k}={json.dumps(v)}" for k, v in sorted(c["config"].items())) or "-"
        lines.append(f"| [`{name}`](#{_anchor(name)}) | {c['spec']} | `{c['function']}` | {cfg} |")
    for name in sorted(cases):
        c = cases[name]
        lines += [
            "",
            f"## {name}",
            "",
            f"- {c['spec']}; forward `{c['function']}`; file `{c['file']}`; seed {c['seed']}.",
        ]
        if c["config"]:
            lines.append("- Config: " + ", ".join(f"`{k}` = `{json.dumps(v)}`" for k, v in sorted(c["config"].items())) + ".")
        for note in notes.get(name, ()):
            lines.append(f"- {note}")
        lines += [
            "",
            "| tensor | dtype | shape | l2 | tol float64 [rtol, atol] | tol float32 [rtol, atol] |",
            "|---|---|---|---|---|---|",
        ]
        order = {"inputs": 0, "params": 1, "state": 2, "cotangents": 3, "outputs": 4, "grads": 5}
        for t in sorted(c["tensors"], key=lambda k: (order.get(k.split("/")[0], 9), k)):
            d = c["tensors"][t]
            shape = "[" + ", ".join(str(s) for s in d["shape"]) + "]"
            if "tol" in d:
                l2 = f"{d['l2']:.6g}"
                t64 = "[{:.1e}, {:.1e}]".format(*d["tol"]["float64"])
                t32 = "[{:.1e}, {:.1e}]".format(*d["tol"]["float32"])
            else:
                l2 = t64 = t32 = ""
            lines.append(f"| `{t}` | {d['dtype']} | {shape} | {l2} | {t64} | {t32} |")
    return "\n".join(lines) + "\n"


def _anchor(name: str) -> str:
    return "".join(ch for ch in name.lower() if ch.isalnum() or ch in "-_ ").replace(" ", "-")
