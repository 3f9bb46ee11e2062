"""The executable tutorials (docs/tutorials/): listed in the nav, executed by the site build, and
a block that raises fails `mkdocs build --strict` (a broken cell fails CI).

The tutorials themselves run once per CI run, in the one site build of CI (tests/test_docs_build.py,
under README's test command); here a small site of its own shows the mechanism: a raising block fails the strict build, a good block's output is in
the page, and `REFMEM_DOCS_EXECUTE=0` shows the blocks without running them.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TUTORIALS = sorted(p for p in (ROOT / "docs" / "tutorials").glob("*.md") if p.name != "index.md")


def test_there_are_four_tutorials_each_in_the_nav_with_executed_blocks():
    nav = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    assert len(TUTORIALS) >= 4
    for page in TUTORIALS:
        assert f"tutorials/{page.name}" in nav, page.name
        text = page.read_text(encoding="utf-8")
        assert len(re.findall(r'^```python exec="on"', text, re.MULTILINE)) >= 3, page.name
        assert f"({page.name})" in (ROOT / "docs" / "tutorials" / "index.md").read_text(encoding="utf-8")


def test_ci_executes_the_tutorials_once():
    """CI runs README's test command and builds the site nowhere else; the tests' one build of the
    site (tests/test_docs_build.py) executes the tutorials: it does not set REFMEM_DOCS_EXECUTE."""
    ci = [ln for ln in (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines() if not ln.lstrip().startswith("#")]
    assert not any("mkdocs build" in ln or "REFMEM_DOCS_EXECUTE" in ln for ln in ci)
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    command = re.search(r"Run the tests[^`]*```bash\n(python -m pytest[^\n]*)\n", readme).group(1)
    assert [ln for ln in ci if "-m pytest" in ln] == [f'step "pytest" {command}']  # exactly README's
    build = (ROOT / "tests" / "test_docs_build.py").read_text(encoding="utf-8")
    assert '"mkdocs", "build", "--strict"' in build and "REFMEM_DOCS_EXECUTE" not in build


needs_mkdocs = pytest.mark.skipif(
    importlib.util.find_spec("mkdocs") is None or importlib.util.find_spec("markdown_exec") is None,
    reason="the docs extra is not installed (pip install -e '.[docs]')")


def _site(tmp_path: Path, block: str, execute: bool = True) -> subprocess.CompletedProcess:
    (tmp_path / "docs" / "tutorials").mkdir(parents=True)
    (tmp_path / "docs" / "index.md").write_text("# home\n", encoding="utf-8")
    (tmp_path / "docs" / "tutorials" / "t.md").write_text(
        f'# t\n\n```python exec="on" source="above" result="text" session="t"\n{block}\n```\n', encoding="utf-8")
    (tmp_path / "mkdocs.yml").write_text(
        "site_name: t\nnav:\n  - index.md\n  - tutorials/t.md\n"
        f"hooks:\n  - {ROOT / 'docs' / 'hooks' / 'tutorials.py'}\n"
        "markdown_extensions:\n  - pymdownx.superfences\n"
        "plugins:\n  - markdown-exec:\n      languages: [python]\n", encoding="utf-8")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1", "REFMEM_DOCS_EXECUTE": "1" if execute else "0"}
    return subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                          cwd=tmp_path, capture_output=True, text=True, env=env, timeout=300)


@needs_mkdocs
def test_a_block_that_raises_fails_the_strict_build(tmp_path):
    r = _site(tmp_path, "x = 1\nassert x == 2, 'a broken cell'")
    assert r.returncode != 0
    assert "a broken cell" in r.stderr + r.stdout or "exited with errors" in r.stderr + r.stdout


@needs_mkdocs
def test_a_good_block_shows_its_output_and_its_time(tmp_path):
    r = _site(tmp_path, "print(6 * 7, 'is the answer')")
    assert r.returncode == 0, r.stderr
    assert "42 is the answer" in (tmp_path / "site" / "tutorials" / "t" / "index.html").read_text(encoding="utf-8")
    assert re.search(r"tutorial tutorials/t\.md: \d+\.\d s", r.stderr)


@needs_mkdocs
def test_without_execution_the_block_is_shown_and_not_run(tmp_path):
    r = _site(tmp_path, "x = [[1]][0][0]  # no reference link\nraise SystemExit('must not run')", execute=False)
    assert r.returncode == 0, r.stderr
    html = (tmp_path / "site" / "tutorials" / "t" / "index.html").read_text(encoding="utf-8")
    block = re.search(r"<pre.*?</pre>", html, re.DOTALL)
    assert block and "must not run" in re.sub(r"<[^>]+>", "", block.group(0)), html
    assert "tutorial tutorials/t.md" not in r.stderr


def test_the_pictures_are_small_and_shown_beside_their_equations():
    pages = {"dnc_copy_frames.png": "derivations/dnc.md", "reverse_attention.png": "derivations/attention.md"}
    for name, page in pages.items():
        png = ROOT / "docs" / "img" / name
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size < 80_000, name
        assert f"](../img/{name})" in (ROOT / "docs" / page).read_text(encoding="utf-8")
        assert "python -m refmem.teaching.pictures" in (ROOT / "docs" / page).read_text(encoding="utf-8")


def test_inline_png_and_strip_draw_a_figure():
    pytest.importorskip("matplotlib")
    import base64

    import numpy as np

    from refmem.teaching.pictures import inline_png, strip

    fig = strip([("a", [np.eye(3), np.ones((3, 3))]), ("b", [np.arange(3.0)[None, :]] * 2)], ["t=1", "t=2"])
    html = inline_png(fig, alt="two frames")
    assert html.startswith('<img alt="two frames" src="data:image/png;base64,')
    assert base64.b64decode(html.split(",", 1)[1].split('"')[0])[:4] == b"\x89PNG"
