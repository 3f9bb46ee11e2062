"""Export: every catalogue case as one safetensors file, plus the manifest and README.

Each file holds what the case takes (``inputs/``, ``params/``, ``state/`` as sampled at
the seed), what it returns (``outputs/<name>``), what it computes on the way
(``intermediates/<name>``, format 2), one upstream gradient per output
(``cotangents/<name>``, the very cotangents of
[`refmem.gradcheck.cotangents_for`][refmem.gradcheck.cotangents_for])
and the vector-Jacobian product of the case's backward at those cotangents
(``grads/<role>/<name>``). The walk over [`refmem.catalogue.cases`][refmem.catalogue.cases] is generic.

The reference values come from one function, [`reference`][refmem.golden.exporter.reference]; the
tolerances from the one float32 measurement,
[`tolerances`][refmem.golden.tolerances.tolerances]. Either can be replaced alone.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from .. import __version__
from .. import catalogue, extended
from .. import xp as rx
from . import forward_mode
from .readme import case_notes, render_readme
from .storage import (
    FORMAT_VERSION, GoldenError, encode_safetensors, is_float, previous_set, relpath, role_of, sha256, write_set,
)
from .tolerances import tolerances

__all__ = ["SEED", "PRECISION", "reference", "float32_run", "case_order", "manifest_entry", "export"]

SEED = 0
"""The seed every case is exported at."""
PRECISION = extended.precision(extended.working_dtype(allow_float64=True))
"""How [`reference`][refmem.golden.exporter.reference] computes the stored values on this platform (the
manifest's ``precision``): ``"float64, rounded once from an 80-bit long double evaluation"`` on
x86-64 Linux (see [`refmem.extended`][refmem.extended]), ``"float64 (no extended type on this
platform)"`` elsewhere, where [`export`][refmem.golden.exporter.export] refuses unless
``allow_float64``.
"""


def _host(a: Any) -> np.ndarray:
    return np.ascontiguousarray(rx.to_numpy(a))


def reference(case: catalogue.Case, seed: int = SEED, allow_float64: bool = False) -> dict[str, np.ndarray]:
    """Every golden tensor of ``case`` at ``seed``.

    Returns role-prefixed names: the sampled ``inputs/``, ``params/``, ``state/``
    (float64, float32-representable), ``cotangents/<name>``, and ``outputs/<name>``,
    ``intermediates/<name>``, ``grads/<role>/<name>`` evaluated in long double and rounded
    once to float64 ([`refmem.extended.golden_tensors`][refmem.extended.golden_tensors];
    [`PRECISION`][refmem.golden.PRECISION]), and ``tangents/<role>/<name>``, ``jvp/<output>``,
    ``hvp/<role>/<name>`` ([`refmem.golden.forward_mode`][refmem.golden.forward_mode]: the complex
    step in complex long double, rounded once). Raises [`GoldenError`][refmem.golden.storage.GoldenError] (an
    [`refmem.extended.ExtendedPrecisionError`][refmem.extended.ExtendedPrecisionError]) where the
    platform has no extended type, unless ``allow_float64``, and for results that are not
    finite or gradients of the wrong tensors.
    """
    try:
        out = extended.golden_tensors(case, seed, allow_float64=allow_float64)
    except extended.ExtendedPrecisionError as exc:
        raise GoldenError(str(exc)) from exc
    # forward mode and second order (refmem.golden.forward_mode): the complex step in the working
    # precision (complex long double: no BLAS, no SIMD), rounded once to float64
    work = extended.working_dtype(allow_float64)
    xp = rx.backend("numpy")
    arrays = {k: rx.from_numpy(xp, v.astype(work) if is_float(v) else v) for k, v in out.items()
              if role_of(k) in catalogue.ROLES}
    cot = {k[len("cotangents/"):]: v.astype(work) for k, v in out.items() if role_of(k) == "cotangents"}
    out.update(forward_mode.reference_tensors(case, xp, arrays, case.forward(arrays), cot, seed))
    return out


def float32_run(case: catalogue.Case, tensors: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """refmem's own native float32 forward and backward from the stored tensors (NumPy float32,
    the machine's BLAS): an implementation under test, which ``refmem golden check`` holds to the
    float32 tolerances. (The tolerances themselves come from the emulated runs of
    [`float32_runs`][refmem.golden.tolerances.float32_runs].)

    Returns ``outputs/...``, ``intermediates/...``, ``grads/...``, ``jvp/...`` and ``hvp/...``
    as float32 arrays.
    Raises [`GoldenError`][refmem.golden.storage.GoldenError] when a result is not float32 (a case that
    hard-codes float64 would make the measured tolerance too tight).
    """
    xp = rx.backend("numpy")
    arrays = {
        k: rx.from_numpy(xp, v.astype(np.float32) if is_float(v) else v)
        for k, v in tensors.items()
        if role_of(k) in catalogue.ROLES
    }
    fwd = case.forward(arrays)
    cot = {
        k[len("cotangents/"):]: rx.from_numpy(xp, v.astype(np.float32))
        for k, v in tensors.items()
        if k.startswith("cotangents/")
    }
    grads = case.backward(arrays, cot)
    result = {f"outputs/{k}": _host(v) for k, v in fwd.outputs.items()}
    result.update({f"intermediates/{k}": _host(v) for k, v in fwd.intermediates.items()})
    result.update({f"grads/{k}": _host(v) for k, v in grads.items()})
    result.update(forward_mode.float32_tensors(case, tensors))
    for k, v in result.items():
        if v.dtype != np.float32:
            raise GoldenError(
                f"{case.name}: {k} comes out as {v.dtype} from float32 inputs; "
                "model code must create arrays with the dtype of its inputs"
            )
    return result


def case_order(case: catalogue.Case, tensors: Mapping[str, np.ndarray]) -> list[dict[str, Any]]:
    """The manifest's ``order`` of ``case``: ``[{"name", "spec"[, "per_step": true]}, ...]``.

    From [`Case.order`][refmem.catalogue.Case] (the outputs in the forward's order at the case's SPEC
    reference when it is empty). Refuses an order that misses or repeats an output or
    intermediate, names a tensor the file lacks, or puts a quantity without a time axis
    between two per-step ones.
    """
    listed = list(case.order) or [(k, case.spec) for k in tensors if role_of(k) == "outputs"]
    names = [n for n, _ in listed]
    have = [k for k in tensors if role_of(k) in ("outputs", "intermediates")]
    if len(set(names)) != len(names):
        raise GoldenError(f"{case.name}: order lists a name twice: {names}")
    if set(names) != set(have):
        raise GoldenError(f"{case.name}: order lists {sorted(names)}, the case computes {sorted(have)}")
    steps = [i for i, n in enumerate(names) if n in case.per_step]
    if steps:
        if steps != list(range(steps[0], steps[-1] + 1)):
            raise GoldenError(f"{case.name}: a quantity without a time axis sits between per-step ones in order")
        lengths = {int(tensors[names[i]].shape[1]) for i in steps if tensors[names[i]].ndim >= 2}
        if len(lengths) != 1 or any(tensors[names[i]].ndim < 2 for i in steps):
            raise GoldenError(f"{case.name}: per-step quantities need one time axis after the batch axis")
    out = []
    for name, spec in listed:
        item: dict[str, Any] = {"name": name, "spec": spec}
        if name in case.per_step:
            item["per_step"] = True
        out.append(item)
    return out


def manifest_entry(case: catalogue.Case, seed: int, tensors: Mapping[str, np.ndarray],
                   tol: Mapping[str, Mapping[str, Any]], precision: str = PRECISION) -> dict:
    """The manifest entry of a case, without ``file`` and ``sha256``.

    ``tol`` maps each compared tensor (output, intermediate, gradient, JVP, HVP) to its
    ``{"float64": [rtol, atol], "float32": [rtol, atol]}``
    ([`tolerances`][refmem.golden.tolerances.tolerances]). ``l2`` is summed without BLAS
    ([`refmem.extended.l2`][refmem.extended.l2]), so the entry is the same on every machine.
    """
    desc: dict[str, Any] = {}
    for name in sorted(tensors):
        a = tensors[name]
        d: dict[str, Any] = {"dtype": str(a.dtype), "shape": [int(s) for s in a.shape]}
        if role_of(name) in ("outputs", "intermediates", "grads") + forward_mode.ROLES:
            d["l2"] = extended.l2(a)
            d["tol"] = {k: list(v) for k, v in tol[name].items()}
        desc[name] = d
    config = json.loads(json.dumps(dict(case.config), sort_keys=True, allow_nan=False))
    return {"function": case.function, "spec": case.spec, "seed": int(seed), "config": config,
            "order": case_order(case, tensors), "precision": _precision(case, tensors, precision), "tensors": desc}


def _precision(case: catalogue.Case, tensors: Mapping[str, np.ndarray], precision: str = PRECISION) -> str:
    """The manifest's ``precision``: ``precision``, and how ``jvp/`` and ``hvp/`` are computed."""
    if not any(role_of(k) in forward_mode.ROLES for k in tensors):
        return precision
    work = np.float64 if precision == extended.PRECISION_FLOAT64 else np.longdouble
    return f"{precision}; {forward_mode.precision(case, work)}"


def export(
    directory: str | Path = "golden",
    cases: Sequence[catalogue.Case] | None = None,
    seed: int = SEED,
    on_case: Callable[[str], None] | None = None,
    merge: bool = False,
    allow_float64: bool = False,
) -> dict:
    """Write every case (all catalogue cases by default) and the manifest and README.

    Deterministic: exporting twice gives byte-identical files. Every case is computed
    before anything is written, and the set is written atomically
    (`refmem.golden.storage.write_set`): staged beside ``directory`` and swapped in,
    so an exception, Ctrl-C, a kill or a full disk leaves ``directory`` holding the old
    complete set or the new one. With ``merge``, the entries of an existing manifest for
    cases not exported now are kept (after their integrity is checked); otherwise the
    files of cases the previous manifest listed and this export does not are removed (no
    other file of ``directory`` is touched). ``on_case(name)`` is called as each case is computed
    (`refmem golden export`'s progress). Returns the manifest.

    Refused before anything is computed (`GoldenError`): a ``directory`` that is not
    empty and holds no golden set, one whose manifest this refmem cannot read (a newer
    format, malformed: it is never overwritten nor shrunk), a merge into a format-1 set,
    and the other targets `refmem.golden.storage.set_target_problem` names.

    References are evaluated in long double and rounded once
    ([`reference`][refmem.golden.exporter.reference]); the tolerances come from the emulated
    float32 runs of the one measurement ([`tolerances`][refmem.golden.tolerances.tolerances],
    docs/golden-tolerances.md), so the export is byte-identical whatever the machine's BLAS, SIMD
    or NumPy version. Where no extended type exists it refuses with
    [`GoldenError`][refmem.golden.storage.GoldenError] unless
    ``allow_float64`` (then the manifest's ``precision`` says float64).
    """
    from .comparison import load

    try:  # refuse before anything is read or written
        precision = extended.precision(extended.working_dtype(allow_float64))
    except extended.ExtendedPrecisionError as exc:
        raise GoldenError(str(exc)) from exc
    root = Path(directory)
    chosen = list(catalogue.cases()) if cases is None else list(cases)
    manifest: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "generator": {"refmem": __version__},  # nothing machine- or environment-specific
        "cases": {},
    }
    old = previous_set(root)  # refuses a directory it must not write (a newer or damaged set, foreign files)
    if merge and old is not None:
        if old.get("format_version") != FORMAT_VERSION:
            raise GoldenError(f"{root}: format_version {old.get('format_version')}; export every module "
                              f"(without --module) to write format {FORMAT_VERSION}")
        fresh = {c.name for c in chosen}
        for name in sorted(set(old["cases"]) - fresh):
            load(name, root, old)  # refuse to carry over a damaged case
            manifest["cases"][name] = old["cases"][name]
    # Compute every case before writing anything, so that a failing case leaves the directory as it was.
    computed = []
    for case in chosen:
        tensors = reference(case, seed, allow_float64)
        entry = manifest_entry(case, seed, tensors, tolerances(case, tensors), precision)
        computed.append((case.name, tensors, entry))
        if on_case is not None:  # the progress of the dear part (the write that follows takes a moment)
            on_case(case.name)
    _write(root, manifest, computed, old)
    return manifest


def _write(root: Path, manifest: dict, computed: Sequence[tuple[str, Mapping[str, np.ndarray], dict]],
           old: Mapping[str, Any] | None) -> None:
    """The write phase of `export`: encode every computed case, then write the whole set
    atomically (`refmem.golden.storage.write_set`)."""
    files: dict[str, bytes] = {}
    for name, tensors, entry in computed:
        rel = relpath(name)
        data = encode_safetensors(tensors, json.dumps(entry, sort_keys=True, allow_nan=False))
        files[rel] = data
        manifest["cases"][name] = {"file": rel, "sha256": sha256(data), **entry}
    manifest["cases"] = dict(sorted(manifest["cases"].items()))
    write_set(root, manifest, files, render_readme(manifest, case_notes(manifest)), old)
