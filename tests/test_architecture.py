"""docs/architecture.md holds: the import layers, and the recipes with the files they take.

The layers are read from the page's table (layer, may import from refmem, may import from
outside the standard library); every import of every module of ``refmem`` (also those inside
functions and under ``TYPE_CHECKING``) must keep to them. The recipes are read from the page's
``### Add ... (N files)`` sections; each lists N files, and the code files it lists are all it
takes: the test writes exactly those into a temporary family (or adapter) and runs the readers
(discovery, ``refmem check``, the golden export and comparison, ``golden verify``) on it.
"""

from __future__ import annotations

import ast
import re
import sys
import textwrap
from pathlib import Path

import pytest

import refmem
from refmem import catalogue, golden, gradcheck
from refmem import xp as rx

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "architecture.md"

# ----------------------------------------------------------------------------- the page


def _section(title: str) -> str:
    text = PAGE.read_text(encoding="utf-8")
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start:end if end > 0 else len(text)]


def layer_table() -> list[dict]:
    """The rows of the Layers table: name, modules named, refmem layers allowed, outside packages allowed."""
    rows = []
    for line in _section("Layers").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 4 or cells[0] in ("Layer", "") or set(cells[0]) <= {"-"}:
            continue
        name, modules, ours, outside = cells
        rows.append({"name": name, "modules": [m for m in re.findall(r"`([\w.]+)`", modules) if m.startswith("refmem")],
                     "ours": ours, "outside": set(re.findall(r"`([\w.]+)`", outside)) if outside != "none" else set()})
    return rows


def recipes() -> dict[str, tuple[int, list[str]]]:
    """``"Add a family"`` -> (the number in its heading, the paths its numbered list names, in order)."""
    found = {}
    for block in re.split(r"\n(?=### )", _section("Recipes")):
        head = re.match(r"### (Add [^(]+?) \((\d+) files?\)", block)
        if head:
            items = re.findall(r"^\d+\. `([^`]+)`", block, re.MULTILINE)
            found[head.group(1)] = (int(head.group(2)), items)
    return found


# ----------------------------------------------------------------------------- the layers

FAMILIES = sorted(p.parent.name for p in (ROOT / "refmem").glob("*/cases.py")) + \
    sorted(p.parent.parent.name for p in (ROOT / "refmem").glob("*/cases/__init__.py"))
BASE = ("refmem", "refmem.errors", "refmem.xp", "refmem.validation", "refmem.sampling", "refmem.optim")
CLI = ("refmem.cli", "refmem.commands", "refmem.__main__")
ORDER = ["base", "model", "cases", "engines", "cli"]


def family_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "refmem" and parts[1] in FAMILIES else None


def layer_of(module: str) -> str:
    """The layer of a refmem module (docs/architecture.md, "Layers")."""
    if module in BASE:
        return "base"
    if module == "refmem.catalogue":
        return "cases"
    if family_of(module):
        parts = module.split(".")
        return "cases" if len(parts) > 2 and parts[2] == "cases" else "model"
    if any(module == c or module.startswith(c + ".") for c in CLI):
        return "cli"
    return "engines"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, module: str | None = None) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import statement of a source file (of ``module``: its name
    in the tree, by default where it lies)."""
    module = module or module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module
            if node.module is None:  # from . import x: x may be a module
                found += [(node.lineno, f"{target}.{alias.name}") for alias in node.names]
            else:
                found.append((node.lineno, target))
    return found


def _refmem_module(name: str) -> str:
    """The module a dotted import names (``refmem.dnc.params.DNCConfig`` -> ``refmem.dnc.params``)."""
    parts = name.split(".")
    while len(parts) > 1:
        candidate = ROOT.joinpath(*parts)
        if candidate.with_suffix(".py").is_file() or (candidate / "__init__.py").is_file():
            return ".".join(parts)
        parts.pop()
    return "refmem"


def violations(module: str, found: list[tuple[int, str]], table: list[dict]) -> list[str]:
    """What ``module``'s imports ``found`` break of the layers of ``table`` (``[]``: nothing)."""
    layer = layer_of(module)
    allowed_outside = next(r["outside"] for r in table if r["name"] == layer)
    if layer == "cli":  # the command line may use whatever the layers above it may
        allowed_outside = set().union(*(r["outside"] for r in table))
    problems = []
    for line, name in found:
        top = name.split(".")[0]
        where = f"{module}:{line} imports {name}"
        if top == "refmem":
            target = _refmem_module(name)
            t_layer = layer_of(target)
            if ORDER.index(t_layer) > ORDER.index(layer):
                problems.append(f"{where}: the {layer} layer may not import the {t_layer} layer")
            elif layer in ("model", "cases") and family_of(target) not in (None, "primitives", family_of(module)):
                problems.append(f"{where}: a family imports no other family but refmem.primitives")
        elif top not in sys.stdlib_module_names and top != "__future__" and top not in allowed_outside:
            problems.append(f"{where}: the {layer} layer may import only {sorted(allowed_outside) or 'nothing'} "
                            "from outside the standard library")
    return problems


def test_the_table_has_the_layers_in_order_and_names_real_modules():
    table = layer_table()
    assert [r["name"] for r in table] == ORDER
    for row in table:
        for name in row["modules"]:
            assert _refmem_module(name) == name, f"{row['name']}: no module {name}"
            assert layer_of(name) == row["name"], (name, row["name"], layer_of(name))


SOURCES = sorted((ROOT / "refmem").rglob("*.py"))


@pytest.mark.parametrize("path", SOURCES, ids=[str(p.relative_to(ROOT)) for p in SOURCES])
def test_imports_keep_to_the_layers(path):
    assert violations(module_name(path), imports(path), layer_table()) == []


@pytest.mark.parametrize("module,source,needle", [
    ("refmem.dnc.core", "import numpy as np", "the model layer may import only ['safetensors']"),
    ("refmem.attention.train", "from ..cli import int_at_least", "the model layer may not import the cli layer"),
    ("refmem.golden.checking", "from ..commands.check import run", "the engines layer may not import the cli"),
    ("refmem.dnc.access", "from ..attention import bahdanau", "a family imports no other family"),
    ("refmem.memory_lstm.model", "from .. import gradcheck", "the model layer may not import the engines layer"),
    ("refmem.xp", "from .catalogue import cases", "the base layer may not import the cases layer"),
    ("refmem.primitives.ops", "from .cases import CASES", "the model layer may not import the cases layer"),
    ("refmem.dnc.cases.core", "import torch", "the cases layer may import only nothing"),
    ("refmem.golden.storage", "def f():\n    import rich", "the engines layer may import only"),
])
def test_a_planted_crossing_is_found(module, source, needle, tmp_path):
    planted = tmp_path / "planted.py"
    planted.write_text(source + "\n", encoding="utf-8")
    problems = violations(module, imports(planted, module), layer_table())
    assert len(problems) == 1 and needle in problems[0], problems


# ----------------------------------------------------------------------------- the recipes


def test_each_recipe_lists_as_many_files_as_its_heading_says():
    found = recipes()
    assert set(found) == {"Add a case", "Add an equation", "Add a family", "Add an adapter"}
    for title, (count, paths) in found.items():
        assert len(paths) == count, (title, count, paths)
        assert len(set(paths)) == count, (title, paths)
        for p in paths:
            concrete = p.replace("<family>", "dnc").replace("<module>", "addressing").replace(
                "<framework>_dnc", "torch_dnc")
            if "<" not in concrete and title != "Add a family":
                assert (ROOT / concrete).exists() or (ROOT / concrete.replace("cases.py", "cases")).exists(), p


#: The toy family the recipes are carried out with: file (as the recipe names it) -> source.
TOY = {
    "refmem/<family>/__init__.py": '''
        """A toy family (tests/test_architecture.py): ``out = x tanh(x)``."""
        from .model import GainCache, GainGrads, GainOutputs, gain_backward, gain_forward

        __all__ = ["GainOutputs", "GainCache", "GainGrads", "gain_forward", "gain_backward"]
        ''',
    "refmem/<family>/model.py": '''
        """The toy family's equation, written as every family writes its equations."""
        from __future__ import annotations

        from typing import Any, NamedTuple

        from ..xp import namespace


        class GainOutputs(NamedTuple):
            out: Any


        class GainCache(NamedTuple):
            x: Any
            t: Any


        class GainGrads(NamedTuple):
            x: Any


        def gain_forward(x: Any) -> tuple[GainOutputs, GainCache]:
            t = namespace(x).tanh(x)
            return GainOutputs(x * t), GainCache(x, t)


        def gain_backward(d_out: GainOutputs, cache: GainCache) -> GainGrads:
            return GainGrads(d_out.out * (cache.t + cache.x * (1.0 - cache.t * cache.t)))
        ''',
    "refmem/<family>/cases.py": '''
        """The toy family's cases."""
        from ..catalogue import Case, Forward
        from ..sampling import Sampler
        from .model import GainOutputs, gain_backward, gain_forward

        ORDER = 1000


        def _sample(xp, seed, sizes):
            return {"inputs/x": Sampler(xp, seed).normal((sizes["B"], sizes["N"]))}


        def _forward(arrays, frozen=None):
            return Forward({"out": gain_forward(arrays["inputs/x"])[0].out})


        def _backward(arrays, cot):
            _, cache = gain_forward(arrays["inputs/x"])
            return {"inputs/x": gain_backward(GainOutputs(cot["out"]), cache).x}


        CASES = [Case(name="toy/gain/default", spec="SPEC §1", function="refmem.toy.gain_forward", sample=_sample,
                      forward=_forward, backward=_backward, sizes={"B": 2, "N": 3})]
        ''',
}

#: What "Add an equation" adds to the toy family: a module, and its case appended to cases.py.
TOY_EQUATION = {
    "refmem/<family>/<module>.py": '''
        """A second toy equation: ``out = x³``."""
        from __future__ import annotations

        from typing import Any, NamedTuple


        class CubeOutputs(NamedTuple):
            out: Any


        class CubeGrads(NamedTuple):
            x: Any


        def cube_forward(x: Any) -> tuple[CubeOutputs, Any]:
            return CubeOutputs(x * x * x), x


        def cube_backward(d_out: CubeOutputs, cache: Any) -> CubeGrads:
            return CubeGrads(3.0 * d_out.out * cache * cache)
        ''',
    "refmem/<family>/cases.py": '''

        from .cube import CubeOutputs, cube_backward, cube_forward


        def _cube_forward(arrays, frozen=None):
            return Forward({"out": cube_forward(arrays["inputs/x"])[0].out})


        def _cube_backward(arrays, cot):
            _, cache = cube_forward(arrays["inputs/x"])
            return {"inputs/x": cube_backward(CubeOutputs(cot["out"]), cache).x}


        CASES.append(Case(name="toy/cube/default", spec="SPEC §1", function="refmem.toy.cube.cube_forward",
                          sample=_sample, forward=_cube_forward, backward=_cube_backward, sizes={"B": 2, "N": 3}))
        ''',
}

#: What "Add a case" adds: a variant, appended to cases.py.
TOY_CASE = {
    "refmem/<family>/cases.py": '''

        CASES.append(Case(name="toy/gain/wide", spec="SPEC §1", function="refmem.toy.gain_forward", sample=_sample,
                          forward=_forward, backward=_backward, sizes={"B": 1, "N": 7}))
        ''',
}


def _concrete(path: str, root: Path) -> Path:
    rel = path.replace("refmem/<family>/", "").replace("<module>", "cube")
    return root / "toy" / rel


@pytest.fixture
def toy_root(tmp_path, monkeypatch):
    """A folder on ``refmem.__path__`` that holds the toy family; the catalogue forgets it afterwards."""
    root = tmp_path / "extra"
    (root / "toy").mkdir(parents=True)
    monkeypatch.setattr(refmem, "__path__", [*refmem.__path__, str(root)])
    monkeypatch.setattr(catalogue, "_FAMILIES", None)
    yield root
    for name in [m for m in sys.modules if m == "refmem.toy" or m.startswith("refmem.toy.")]:
        del sys.modules[name]


def _readers_accept(names: list[str], tmp: Path) -> None:
    """Discovery, the gradient checks, ``refmem check`` and the golden export and comparison take the cases."""
    from refmem import cli

    assert [c.name for c in catalogue.cases(["toy"])] == names
    assert catalogue.module_names()[-1] == "toy"
    np_ = rx.backend("numpy")
    for name in names:
        records = gradcheck.check_case(catalogue.get_case(name), np_, seed=0)
        assert records and all(r.passed for r in records), name
    # in this process: the toy family lives on this process's refmem.__path__ only, and the default
    # --workers (the idle CPUs) would start worker processes that cannot see it on an idle machine
    assert cli.main(["check", "--module", "toy", "--workers", "1"]) == 0
    out = tmp / "golden"
    golden.export(out, catalogue.cases(["toy"]))
    for name in names:
        g = golden.load(name, out)
        for dtype in ("float64", "float32"):
            assert golden.compare(g, g.expected(dtype), dtype).passed, (name, dtype)


def test_the_recipes_for_a_family_an_equation_and_a_case_take_the_files_they_list(toy_root, tmp_path, capsys):
    code = {title: [p for p in paths if p.startswith("refmem/")] for title, (_, paths) in recipes().items()}
    # a family: exactly the code files of its recipe
    assert sorted(code["Add a family"]) == sorted(TOY)
    for path, source in TOY.items():
        _concrete(path, toy_root).write_text(textwrap.dedent(source).lstrip(), encoding="utf-8")
    _readers_accept(["toy/gain/default"], tmp_path / "a")
    written = sorted(str(p.relative_to(toy_root)) for p in toy_root.rglob("*.py"))
    assert written == ["toy/__init__.py", "toy/cases.py", "toy/model.py"]
    # an equation: a module and its case, in exactly the code files of its recipe
    for name in [m for m in sys.modules if m.startswith("refmem.toy")]:
        del sys.modules[name]
    catalogue._FAMILIES = None
    assert sorted(code["Add an equation"]) == sorted(TOY_EQUATION)
    for path, source in TOY_EQUATION.items():
        target = _concrete(path, toy_root)
        before = target.read_text(encoding="utf-8") if target.exists() else ""
        target.write_text(before + textwrap.dedent(source).lstrip("\n"), encoding="utf-8")
    _readers_accept(["toy/gain/default", "toy/cube/default"], tmp_path / "b")
    # a case: one more entry in the cases module
    for name in [m for m in sys.modules if m.startswith("refmem.toy")]:
        del sys.modules[name]
    catalogue._FAMILIES = None
    assert code["Add a case"] == list(TOY_CASE)
    target = _concrete(code["Add a case"][0], toy_root)
    target.write_text(target.read_text(encoding="utf-8") + textwrap.dedent(TOY_CASE[code["Add a case"][0]]),
                      encoding="utf-8")
    _readers_accept(["toy/gain/default", "toy/cube/default", "toy/gain/wide"], tmp_path / "c")
    capsys.readouterr()


def test_the_recipe_for_an_adapter_takes_the_file_it_lists(tmp_path):
    """One file with ``CASES`` and ``run`` is an adapter that ``golden verify`` checks (and fails when wrong)."""
    (path, _ci) = recipes()["Add an adapter"][1]
    assert path.startswith("examples/") and _ci == "tests/test_examples.py"
    adapter = tmp_path / "numpy_primitives.py"
    adapter.write_text(textwrap.dedent('''
        import numpy as np

        CASES = ["primitives/tanh/*"]


        def run(case, tensors, dtype):
            x = tensors["inputs/x"]
            out = np.tanh(x)
            return {"outputs/out": out, "grads/inputs/x": tensors["cotangents/out"] * (1 - out * out)}
        '''), encoding="utf-8")
    for dtype in ("float64", "float32"):
        report = golden.verify(f"{adapter}:run", dtype, ROOT / "golden")
        assert report.passed and {r.case for r in report.rows} == {"primitives/tanh/default"}, dtype
    adapter.write_text(adapter.read_text(encoding="utf-8").replace("(1 - out * out)", "(1 - out)"), encoding="utf-8")
    assert not golden.verify(f"{adapter}:run", "float64", ROOT / "golden").passed
