"""``refmem golden check``: recompute every case of a golden directory and compare, never writing."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np

from .. import catalogue
from .comparison import Report, compare, load
from .exporter import case_order, float32_run, reference
from .readme import case_notes, render_readme
from .storage import (
    FORMAT_VERSION, GoldenError, expected_tensors, given_tensors, read_manifest, read_regular, resolve_dir, role_of,
)
from .tolerances import DTYPES, tolerances

__all__ = ["check", "measured_tolerances", "loosened"]

def measured_tolerances(case: catalogue.Case, tensors: Mapping[str, np.ndarray],
                        reference_values: Mapping[str, np.ndarray] | None = None) -> dict[str, dict[str, list[float]]]:
    """The tolerances the export stores for ``case``, measured again from the stored ``tensors``:
    ``{compared tensor: {"float64": [rtol, atol], "float32": [rtol, atol]}}``.

    The export's own float32 measurement and rule,
    [`refmem.golden.tolerances.tolerances`][refmem.golden.tolerances.tolerances] (the same on every
    machine, every role), against ``reference_values`` (the freshly computed references, so that
    a replaced reference cannot move its own tolerance; ``tensors``' own when not given).
    """
    ref = dict(tensors) if reference_values is None else {**tensors, **reference_values}
    return tolerances(case, ref)


def loosened(case: str, stored: Mapping[str, Mapping[str, list[float]]],
             measured: Mapping[str, Mapping[str, list[float]]]) -> list[str]:
    """One problem per stored tolerance looser than the measured one, or missing where the
    measurement has one."""
    problems = []
    for name in sorted(measured):
        if name not in stored:
            problems.append(f"{case}: {name} has no stored tolerance; the export measures one")
            continue
        for d in DTYPES:
            have, want = stored[name][d], measured[name][d]
            if any(h > w for h, w in zip(have, want)):
                problems.append(
                    f"{case}: {name} tolerance {d} [rtol, atol] = [{have[0]:.2g}, {have[1]:.2g}] is looser than "
                    f"the recomputed [{want[0]:.2g}, {want[1]:.2g}]"
                    "; refusing a loosened tolerance (re-export with refmem golden export)")
                break
    return problems


def check(
    directory: str | os.PathLike | None = None,
    on_case: Callable[[str], None] | None = None,
    modules: Sequence[str] | None = None,
) -> Report:
    """Recompute every case of the manifest and compare it with the stored tensors.

    Never writes. Problems: a manifest of an older format, a catalogue case missing
    from the manifest, a manifest case missing from the catalogue, a file that fails
    integrity, sampled inputs or cotangents that differ from the stored ones, changed
    names, shapes, SPEC references, configs or order, and a stored tolerance looser than
    the one the export measures now (`measured_tolerances`, `loosened`: a
    tampered file whose references and tolerances were both replaced and its sha256
    recomputed is refused). Rows: each output, intermediate and gradient, recomputed in
    float64, against the float64 tolerance; refmem's own float32 run against the float32
    tolerance (reported as ``<tensor> @float32``). A malformed manifest (a tolerance that
    is not finite and > 0 included) is refused whole (`refmem.golden.storage.read_manifest`).
    """
    root = resolve_dir(directory)
    manifest = read_manifest(root)
    report = Report()
    if manifest["format_version"] != FORMAT_VERSION:
        report.problems.append(f"{root / 'manifest.json'}: format_version {manifest['format_version']}, "
                               f"this refmem writes {FORMAT_VERSION} (run refmem golden export)")
    known = {c.name: c for c in catalogue.cases(list(modules) if modules else None)}
    stored = {k for k in manifest["cases"] if not modules or k.split("/")[0] in modules}
    for name in sorted(set(known) - stored):
        report.problems.append(f"{name}: in the catalogue, missing from the manifest (run refmem golden export)")
    for name in sorted(stored - set(known)):
        report.problems.append(f"{name}: in the manifest, not in the catalogue")
    readme = root / "README.md"
    if not modules:
        try:
            text = read_regular(readme).decode("utf-8", errors="replace")
        except GoldenError:
            text = None
        if text != render_readme(manifest, case_notes(manifest)):
            report.problems.append(f"{readme} is missing or not the one generated from the manifest")
    for name in sorted(stored & set(known)):
        try:
            report.extend(_check_case(known[name], root, manifest))
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
    if entry.get("order") != case_order(case, fresh):
        report.problems.append(f"{case.name}: manifest order differs from the catalogue's (run refmem golden export)")
    for name, value in given_tensors(fresh).items():
        old = golden.tensors[name]
        if value.shape != old.shape or value.dtype != old.dtype or not (value == old).all():
            report.problems.append(
                f"{case.name}: {name} as sampled now differs from the stored tensor "
                "(the case changed; run refmem golden export if that is intended)"
            )
    if report.problems:
        return report
    report.problems.extend(loosened(case.name, golden.tol, measured_tolerances(case, golden.tensors, fresh)))
    report.extend(compare(golden, expected_tensors(fresh), "float64"))
    f32 = compare(golden, float32_run(case, golden.tensors), "float32")
    for row in f32.rows:
        row.tensor += " @float32"
    report.extend(f32)
    return report
