"""The documentation site builds with warnings as errors and needs no network to show its maths.

``mkdocs build --strict`` fails on any warning: a dead link or ``#anchor`` between pages,
a page left out of the nav, a docstring griffe cannot parse, a missing MathJax package.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("mkdocs") is None,
    reason="mkdocs is not installed (pip install -e '.[docs]' installs the documentation tools)")


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site")
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
        env={**__import__("os").environ, "NO_MKDOCS_2_WARNING": "1"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out


def test_every_page_of_the_nav_is_built(site):
    for page in ("index.html", "spec.html", "golden-format.html", "examples.html",
                 "performance.html", "derivations/dnc.html", "derivations/dnc_core.html",
                 "derivations/attention.html", "derivations/memory_lstm.html",
                 "api/dnc.addressing.html", "api/golden.html", "api/xp.html"):
        assert (site / page).is_file(), page


def test_the_maths_is_marked_for_mathjax_and_mathjax_is_in_the_site(site):
    for page in ("spec.html", "derivations/dnc.html"):
        html = (site / page).read_text(encoding="utf-8")
        assert html.count('class="arithmatex"') > 20, page
        assert "javascripts/mathjax/tex-svg-full.js" in html, page
    assert (site / "javascripts" / "mathjax" / "tex-svg-full.js").stat().st_size > 1_000_000


def test_no_page_loads_a_script_or_stylesheet_from_the_network(site):
    remote = re.compile(r"<(?:script|link)\b[^>]*(?:src|href)=\"(?:https?:)?//", re.IGNORECASE)
    offenders = [str(p.relative_to(site)) for p in site.rglob("*.html")
                 if remote.search(p.read_text(encoding="utf-8"))]
    assert offenders == []


def test_the_api_reference_is_rendered_from_the_docstrings(site):
    html = (site / "api" / "dnc.addressing.html").read_text(encoding="utf-8")
    assert "content_weights_forward" in html and "SPEC §5" in html
