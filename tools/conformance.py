"""refmem's verdict on framework implementations: run every installed one against the goldens.

Writes ``docs/conformance.md``: a matrix of implementation × golden case with the
verdict and the worst ratio per dtype, and every declared deviation with its root cause.

    python tools/conformance.py                    # run all installed, write docs/conformance.md
    python tools/conformance.py --only pytorch-dnc --no-write

Each implementation runs in its own process (a Keras backend is fixed at import; JAX's
x64 switch is global) through its golden adapter (examples/README.md's protocol), and
every output and gradient is compared with ``refmem.golden.compare`` in float32 and
float64. Its declared deviations (``conformance/<name>.toml``) are then applied:

* a failing tensor that no deviation declares fails the run (a new deviation);
* a declared deviation that no failing tensor matches fails the run too (it no longer
  occurs: the package was fixed, or the entry is wrong); so does one that is removed
  while the failure stays (the failure is then undeclared);
* an adapter error or a missing tensor is never excused.

An implementation whose packages are not installed is skipped with a line saying which.
Exit status: 0 when every implementation that ran matches its declarations, 1 otherwise.
"""

from __future__ import annotations

import argparse
import fnmatch
import importlib.metadata
import importlib.util
import json
import math
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

DTYPES = ("float32", "float64")
COMMAND = "python tools/conformance.py"


@dataclass(frozen=True)
class Implementation:
    """One implementation under test: its golden adapter and what it needs."""

    name: str
    title: str
    adapter: str  # path/to/adapter.py:function, relative to the repository
    requires: tuple[str, ...]  # importable modules
    packages: tuple[str, ...]  # distributions whose versions the report names
    env: dict = field(default_factory=dict)
    deviations: str | None = None  # conformance/<name>.toml; None: none may occur
    ours: bool = False  # refmem's own example (written from SPEC), not a public implementation
    unavailable: str = ""  # the error its import is declared to raise (installed, not importable)


IMPLEMENTATIONS = [
    Implementation("pytorch-dnc", "pytorch-dnc (PyPI `dnc`, ixaxaar/pytorch-dnc), `dnc.memory.Memory`",
                   "conformance/pytorch_dnc.py:run", ("torch", "dnc"), ("dnc", "torch"),
                   deviations="conformance/pytorch_dnc.toml"),
    Implementation("keras-torch", "Keras 3 built-in attention layers, torch backend",
                   "conformance/keras_attention.py:run", ("keras", "torch"), ("keras", "torch"),
                   env={"KERAS_BACKEND": "torch"}, deviations="conformance/keras_torch.toml"),
    Implementation("keras-jax", "Keras 3 built-in attention layers, jax backend",
                   "conformance/keras_attention.py:run", ("keras", "jax"), ("keras", "jax"),
                   env={"KERAS_BACKEND": "jax"}, deviations="conformance/keras_jax.toml"),
    Implementation("keras-tensorflow", "Keras 3 built-in attention layers, tensorflow backend",
                   "conformance/keras_attention.py:run", ("keras", "tensorflow"), ("keras", "tensorflow"),
                   env={"KERAS_BACKEND": "tensorflow"}),
    Implementation("opennmt", "OpenNMT-py's `onmt.modules.global_attention.GlobalAttention` (dot, general, mlp)",
                   "conformance/opennmt.py:run", ("torch", "onmt"), ("OpenNMT-py", "torch")),
    Implementation("d2l", "d2l's `AdditiveAttention` (PyPI `d2l`, `d2l.torch`)",
                   "conformance/d2l_torch.py:run", ("torch", "d2l", "pandas"), ("d2l", "torch")),
    Implementation("attention-pkg", "the `attention` package's `Attention` layer (philipperemy/keras-attention), "
                   "tensorflow backend", "conformance/keras_attention_pkg.py:run", ("attention", "keras", "tensorflow"),
                   ("attention", "keras", "tensorflow-cpu"), env={"KERAS_BACKEND": "tensorflow"}),
    Implementation("tensorflow-addons", "TensorFlow Addons' `tfa.seq2seq.BahdanauAttention`",
                   "conformance/tensorflow_addons.py:run", ("tensorflow_addons",),
                   ("tensorflow-addons", "tensorflow-cpu", "keras"),
                   unavailable="ModuleNotFoundError: No module named 'keras.src.engine'"),
    Implementation("keras-decoder-torch", "refmem's Keras 3 `AttentionDecoder` (examples/), torch backend",
                   "examples/keras_attention_decoder.py:run", ("keras", "torch"), ("keras", "torch"),
                   env={"KERAS_BACKEND": "torch"}, ours=True),
    Implementation("keras-decoder-jax", "refmem's Keras 3 `AttentionDecoder` (examples/), jax backend",
                   "examples/keras_attention_decoder.py:run", ("keras", "jax"), ("keras", "jax"),
                   env={"KERAS_BACKEND": "jax"}, ours=True),
    Implementation("keras-decoder-tensorflow", "refmem's Keras 3 `AttentionDecoder` (examples/), tensorflow backend",
                   "examples/keras_attention_decoder.py:run", ("keras", "tensorflow"), ("keras", "tensorflow"),
                   env={"KERAS_BACKEND": "tensorflow"}, ours=True),
]
BY_NAME = {i.name: i for i in IMPLEMENTATIONS}


# ----------------------------------------------------------------------------- the worker (one process per implementation)


def _import_adapter(spec: str):
    """``(module, function)`` of ``path/to/adapter.py:function`` (relative to the repository)."""
    path, _, fn = spec.partition(":")
    mod_spec = importlib.util.spec_from_file_location("refmem_conformance_" + Path(path).stem, REPO / path)
    module = importlib.util.module_from_spec(mod_spec)
    sys.modules[mod_spec.name] = module
    mod_spec.loader.exec_module(module)
    return module, getattr(module, fn)


def _worker(name: str, golden_dir: str | None) -> int:
    """Run one implementation's adapter on every case it declares; print JSON rows."""
    from refmem import catalogue, golden

    impl = BY_NAME[name]
    try:
        module, function = _import_adapter(impl.adapter)
    except Exception as exc:  # noqa: BLE001 - an installed package that does not import is a verdict too
        print("CONFORMANCE-JSON " + json.dumps({"import_error": f"{type(exc).__name__}: {exc}"}))
        return 0
    patterns = getattr(module, "CASES")
    names = sorted(c.name for c in catalogue.cases() if any(fnmatch.fnmatchcase(c.name, p) for p in patterns))
    rows, problems = [], []
    for case in names:
        g = golden.load(case, golden_dir)
        for dtype in DTYPES:
            try:
                results = function(case, g.given(dtype), dtype, config=dict(g.config))
                report = golden.compare(g, results, dtype)
            except Exception as exc:  # noqa: BLE001 - an adapter error fails the case, the others still run
                problems.append({"case": case, "dtype": dtype, "problem": f"{type(exc).__name__}: {exc}"})
                continue
            for p in report.problems:
                problems.append({"case": case, "dtype": dtype, "problem": p})
            for r in report.rows:
                rows.append({"case": r.case, "tensor": r.tensor, "dtype": dtype, "returned": r.dtype,
                             "ratio": None if math.isnan(r.ratio) else r.ratio, "passed": r.passed, "note": r.note})
    info = {
        "rows": rows,
        "problems": problems,
        "layers": getattr(module, "LAYERS", {}),
        "not_covered": getattr(module, "NOT_COVERED", {}),
        "rnnsearch": getattr(module, "RNNSEARCH", {}),
    }
    print("CONFORMANCE-JSON " + json.dumps(info))
    return 0


# ----------------------------------------------------------------------------- declarations


def _as_list(v) -> list[str]:
    return [v] if isinstance(v, str) else list(v)


def load_deviations(path: Path) -> list[dict]:
    """The ``[[deviation]]`` entries of a TOML file, each checked for its fields."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    out = []
    for i, d in enumerate(data.get("deviation", [])):
        missing = [k for k in ("case", "tensor", "dtypes", "reason", "where") if k not in d]
        if missing:
            raise ValueError(f"{path}: deviation {i + 1} lacks {', '.join(missing)}")
        bad = [t for t in _as_list(d["dtypes"]) if t not in DTYPES]
        if bad:
            raise ValueError(f"{path}: deviation {i + 1}: dtypes must be among {DTYPES}, got {bad}")
        out.append({"case": _as_list(d["case"]), "tensor": _as_list(d["tensor"]), "dtypes": _as_list(d["dtypes"]),
                    "reason": " ".join(d["reason"].split()), "where": d["where"], "index": i + 1})
    return out


def _matches(dev: dict, row: dict) -> bool:
    return (row["dtype"] in dev["dtypes"]
            and any(fnmatch.fnmatchcase(row["case"], p) for p in dev["case"])
            and any(fnmatch.fnmatchcase(row["tensor"], p) for p in dev["tensor"]))


@dataclass
class Outcome:
    impl: Implementation
    skipped: str = ""
    versions: dict = field(default_factory=dict)
    rows: list = field(default_factory=list)
    problems: list = field(default_factory=list)
    layers: dict = field(default_factory=dict)
    not_covered: dict = field(default_factory=dict)
    deviations: list = field(default_factory=list)
    undeclared: list = field(default_factory=list)  # failing rows no deviation declares
    stale: list = field(default_factory=list)  # deviations that matched no failing row
    seconds: float = 0.0
    import_error: str = ""  # the adapter's import failed with this (declared or not)
    rnnsearch: dict = field(default_factory=dict)  # part of RNNsearch -> how the implementation compares

    @property
    def passed(self) -> bool:
        return bool(self.skipped) or not (self.undeclared or self.stale or self.problems)


def apply_deviations(out: Outcome) -> None:
    """Sort every failing row into declared or undeclared; find declarations that match nothing."""
    used = set()
    for row in out.rows:
        row["declared"] = None
        if row["passed"]:
            continue
        for dev in out.deviations:
            if _matches(dev, row):
                row["declared"] = dev["index"]
                used.add(dev["index"])
                break
        if row["declared"] is None:
            out.undeclared.append(row)
    out.stale = [d for d in out.deviations if d["index"] not in used]


# ----------------------------------------------------------------------------- running


def _missing(impl: Implementation) -> list[str]:
    return [m for m in impl.requires if importlib.util.find_spec(m) is None]


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "-"


def run_implementation(impl: Implementation, deviations_dir: Path | None = None, golden_dir: str | None = None,
                       timeout: float = 900) -> Outcome:
    out = Outcome(impl)
    missing = _missing(impl)
    if missing:
        out.skipped = f"not installed: {', '.join(missing)}"
        return out
    out.versions = {p: _version(p) for p in impl.packages}
    if impl.deviations:
        path = (deviations_dir / Path(impl.deviations).name) if deviations_dir else REPO / impl.deviations
        out.deviations = load_deviations(path) if path.exists() else []
    env = {**os.environ, **impl.env}
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", impl.name]
    if golden_dir:
        cmd += ["--golden", str(golden_dir)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    out.seconds = time.perf_counter() - t0
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("CONFORMANCE-JSON ")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        out.problems.append({"case": "*", "dtype": "-", "problem": "the worker failed: " + " | ".join(tail)})
        return out
    info = json.loads(lines[-1][len("CONFORMANCE-JSON "):])
    if "import_error" in info:
        out.import_error = info["import_error"]
        if not impl.unavailable or impl.unavailable not in out.import_error:
            out.problems.append({"case": "*", "dtype": "-", "problem": f"the adapter does not import: {out.import_error}"})
        return out
    if impl.unavailable:
        out.problems.append({"case": "*", "dtype": "-", "problem": "declared not importable "
                             f"({impl.unavailable}), but it imports now: write its adapter"})
    out.rows, out.problems = info["rows"], out.problems + info["problems"]
    out.rnnsearch = info.get("rnnsearch", {})
    out.layers, out.not_covered = info["layers"], info["not_covered"]
    apply_deviations(out)
    return out


# ----------------------------------------------------------------------------- the report


def _ratio(x) -> str:
    if x is None:
        return "-"
    return f"{x:.2g}"


def _cell(out: Outcome, case: str, dtype: str) -> tuple[str, str]:
    """(verdict, worst ratio) of one case in one dtype."""
    rows = [r for r in out.rows if r["case"] == case and r["dtype"] == dtype]
    probs = [p for p in out.problems if p["case"] == case and p["dtype"] == dtype]
    if probs or not rows:
        return "**error**", "-"
    ratios = [r["ratio"] for r in rows if r["ratio"] is not None]
    worst = max(ratios) if ratios else None
    if all(r["passed"] for r in rows):
        return "pass", _ratio(worst)
    if any(r["declared"] is None for r in rows if not r["passed"]):
        return "**FAIL (undeclared)**", _ratio(worst)
    devs = sorted({r["declared"] for r in rows if not r["passed"]})
    return "deviates " + ", ".join(f"[{out.impl.name} #{d}](#{out.impl.name}-{d})" for d in devs), _ratio(worst)


def render(outcomes: list[Outcome]) -> str:
    from refmem import catalogue
    lines = [
        "# Conformance: refmem's verdict on framework implementations",
        "",
        f"Generated by `{COMMAND}` from the golden tensors (`golden/`) and the declared deviations",
        "(`conformance/*.toml`); do not edit by hand. CI re-runs it where the packages are installed.",
        "",
        "Each implementation runs, unpatched, through a golden adapter (examples/README.md's protocol):",
        "its outputs and its own autodiff gradients are compared with refmem's references by",
        "`refmem.golden.compare` (element-wise `|a - r| <= atol + rtol |r|`; *ratio* is the worst",
        "`|a - r| / (atol + rtol |r|)` over the case's tensors, at most 1 to pass). A failing tensor must be",
        "declared as a deviation with its root cause, and a declared deviation must still occur: either",
        "surprise fails the run.",
        "",
        f"{len(catalogue.cases())} golden cases in the catalogue.",
        "",
        "## Implementations",
        "",
        "| implementation | what | versions | result |",
        "|---|---|---|---|",
    ]
    for o in outcomes:
        if o.skipped:
            lines.append(f"| `{o.impl.name}` | {o.impl.title} | - | skipped ({o.skipped}) |")
            continue
        if o.import_error:
            vers = ", ".join(f"{k} {v}" for k, v in o.versions.items())
            verdict = "as declared" if o.passed else "**not declared**"
            lines.append(f"| `{o.impl.name}` | {o.impl.title} | {vers} | installs, does not import ({verdict}): "
                         f"`{o.import_error}` |")
            continue
        cases = sorted({r["case"] for r in o.rows} | {p["case"] for p in o.problems if p["case"] != "*"})
        passing = sum(1 for c in cases for d in DTYPES if _cell(o, c, d)[0] == "pass")
        verdict = ("conforms to its declarations" if o.passed else "**does not match its declarations**")
        vers = ", ".join(f"{k} {v}" for k, v in o.versions.items())
        lines.append(f"| `{o.impl.name}` | {o.impl.title} | {vers} | {len(cases)} cases × 2 dtypes: {passing} pass, "
                     f"{2 * len(cases) - passing} deviate; declared deviations: {len(o.deviations)}; {verdict} |")
    ran = [o for o in outcomes if not o.skipped and not o.import_error]
    all_cases = sorted({r["case"] for o in ran for r in o.rows} | {p["case"] for o in ran for p in o.problems if p["case"] != "*"})
    if ran:
        lines += ["", "## Matrix", "",
                  "Each cell: float32 verdict (worst ratio) / float64 verdict (worst ratio); `·` not covered.", "",
                  "| case | " + " | ".join(f"`{o.impl.name}`" for o in ran) + " |",
                  "|---|" + "---|" * len(ran)]
        for case in all_cases:
            cells = []
            for o in ran:
                if not any(r["case"] == case for r in o.rows) and not any(p["case"] == case for p in o.problems):
                    cells.append("·")
                    continue
                parts = []
                for d in DTYPES:
                    v, r = _cell(o, case, d)
                    parts.append(f"{d[-2:]}: {v} ({r})")
                cells.append("<br>".join(parts))
            lines.append(f"| `{case}` | " + " | ".join(cells) + " |")
    for o in outcomes:
        lines += ["", f"## `{o.impl.name}`", "", o.impl.title + "."]
        if o.skipped:
            lines += ["", f"Skipped: {o.skipped}."]
            continue
        if o.import_error:
            lines += ["", f"Installs but does not import: `{o.import_error}` (declared in `{o.impl.adapter.split(':')[0]}`, "
                      "whose docstring gives the root cause; the run fails when it imports)."]
            if o.problems:
                lines += ["", "**Errors:**", ""] + [f"- {p['problem']}" for p in o.problems]
            continue
        lines += ["", f"Adapter `{o.impl.adapter}`"
                  + (f", deviations `{o.impl.deviations}`" if o.impl.deviations else ", no deviations may occur")
                  + (" (refmem's own implementation, written from SPEC)" if o.impl.ours else "") + "."]
        if o.impl.ours and o.impl.name == "keras-decoder-torch" and (REPO / "docs" / "img" / "keras_reverse_attention.png").exists():
            lines += ["", "Trained on the reversal task (`KERAS_BACKEND=torch python examples/keras_reverse_demo.py "
                      "--out docs/img/keras_reverse_attention.png`: 400 Adam steps; its title gives the reversal accuracy "
                      "on 256 fresh sequences), step t attends to source position T + 1 - t:", "",
                      "![attention of the trained Keras AttentionDecoder: the anti-diagonal](img/keras_reverse_attention.png)"]
        if o.layers:
            lines += ["", "| case | computed by |", "|---|---|"]
            lines += [f"| `{c}` | `{v}` |" for c, v in sorted(o.layers.items())]
        if o.deviations:
            lines += ["", "Declared deviations:", ""]
            for d in o.deviations:
                hit = [r for r in o.rows if r["declared"] == d["index"]]
                n_cases = len({r["case"] for r in hit})
                worst = max((r["ratio"] for r in hit if r["ratio"] is not None), default=None)
                lines += [f'<a id="{o.impl.name}-{d["index"]}"></a>',
                          f"{d['index']}. {', '.join(f'`{c}`' for c in d['case'])} · tensors {', '.join(f'`{t}`' for t in d['tensor'])} · "
                          f"{', '.join(d['dtypes'])} · `{d['where']}`  ",
                          f"   {d['reason']}  ",
                          f"   Observed: {len(hit)} tensors in {n_cases} cases, worst ratio {_ratio(worst)}."
                          + ("" if hit else " **No longer occurs: remove it from the file.**"), ""]
        if o.rnnsearch:
            lines += ["", "Against RNNsearch as the paper writes it ([SPEC §7](spec.md#7-rnnsearch-bahdanau-cho-and-bengio-2015-appendix-a)):", "",
                      "| part | this implementation |", "|---|---|"]
            lines += [f"| {k} | {v} |" for k, v in o.rnnsearch.items()]
        if o.not_covered:
            lines += ["", "Not covered (the implementation cannot compute these on the golden inputs):", ""]
            lines += [f"- `{k}`: {v}" for k, v in o.not_covered.items()]
        if o.undeclared:
            lines += ["", "**Undeclared failures:**", ""]
            lines += [f"- `{r['case']}` `{r['tensor']}` {r['dtype']}: ratio {_ratio(r['ratio'])} {r['note']}"
                      for r in o.undeclared]
        if o.problems:
            lines += ["", "**Errors:**", ""]
            lines += [f"- `{p['case']}` {p['dtype']}: {p['problem']}" for p in o.problems]
    return "\n".join(lines) + "\n"


def summary(o: Outcome) -> str:
    if o.skipped:
        return f"{o.impl.name}: skipped ({o.skipped})"
    if o.import_error and o.passed:
        return f"{o.impl.name}: installed, does not import, as declared ({o.import_error}): ok"
    head = f"{o.impl.name}: {len(o.rows)} tensors, {sum(not r['passed'] for r in o.rows)} failing, " \
           f"declared deviations: {len(o.deviations)}, {o.seconds:.1f} s: " + ("ok" if o.passed else "FAIL")
    out = [head]
    for r in o.undeclared:
        out.append(f"  undeclared: {r['case']} {r['tensor']} {r['dtype']} ratio {_ratio(r['ratio'])} {r['note']}")
    for d in o.stale:
        out.append(f"  no longer occurs: deviation {d['index']} ({', '.join(d['case'])} {', '.join(d['tensor'])} "
                   f"{', '.join(d['dtypes'])})")
    for p in o.problems:
        out.append(f"  error: {p['case']} {p['dtype']}: {p['problem']}")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog=COMMAND, description=__doc__.split("\n")[0])
    p.add_argument("--only", action="append", metavar="NAME", choices=list(BY_NAME),
                   help="run only this implementation (repeatable)")
    p.add_argument("--out", default=str(REPO / "docs" / "conformance.md"), help="the report to write")
    p.add_argument("--no-write", action="store_true", help="run and print the verdicts, write no report")
    p.add_argument("--deviations", metavar="DIR", help="read the <name>.toml files from DIR instead of conformance/")
    p.add_argument("--golden", metavar="DIR", help="golden directory (default: the repository's)")
    p.add_argument("--worker", metavar="NAME", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        return _worker(args.worker, args.golden)
    chosen = [BY_NAME[n] for n in args.only] if args.only else IMPLEMENTATIONS
    outcomes = []
    for impl in chosen:
        o = run_implementation(impl, Path(args.deviations) if args.deviations else None, args.golden)
        print(summary(o), flush=True)
        outcomes.append(o)
    if not args.no_write:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(render(outcomes), encoding="utf-8")
        print(f"wrote {args.out}")
    ok = all(o.passed for o in outcomes)
    print("conformance: " + ("every implementation that ran matches its declared deviations" if ok else "FAILED"))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
