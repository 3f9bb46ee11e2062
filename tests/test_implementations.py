"""docs/implementations.md: every cell of the conventions table that states a choice links its
evidence, and every link resolves (a golden case of the manifest, a conformance anchor)."""

from __future__ import annotations

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "implementations.md"
LINK = re.compile(r"\]\(([^)\s]+)\)")


def _table() -> list[list[str]]:
    rows = [ln for ln in PAGE.read_text(encoding="utf-8").splitlines() if ln.startswith("| ")]
    return [[c.strip() for c in ln.strip().strip("|").split(" | ")] for ln in rows[1:]]


def _anchors(text: str) -> set[str]:
    return set(re.findall(r'<a id="([^"]+)"></a>', text))


def test_the_table_has_every_implementation_and_choice():
    header = [ln for ln in PAGE.read_text(encoding="utf-8").splitlines() if ln.startswith("| ")][0]
    for column in ("deepmind/dnc", "Nature paper", "Csordás & Schmidhuber", "pytorch-dnc", "keras-attention", "refmem"):
        assert column in header
    choices = " ".join(row[0] for row in _table())
    for choice in ("strength activation", "usage gradient", "read-mode order", "cosine epsilon", "eq. 8",
                   "tie order"):
        assert choice in choices


def test_every_cell_that_states_a_choice_links_its_evidence():
    unbacked = ("n/a", "not established here", "not specified", "not examined")
    for row in _table():
        assert len(row) == 7, row
        for cell in row[1:]:
            if not cell.startswith(unbacked):
                assert LINK.search(cell), f"{row[0]}: a cell without evidence: {cell!r}"


def test_every_link_of_the_table_resolves():
    text = PAGE.read_text(encoding="utf-8")
    anchors = _anchors(text)
    manifest = json.loads((ROOT / "golden" / "manifest.json").read_text(encoding="utf-8"))["cases"]
    conformance = (ROOT / "docs" / "conformance.md").read_text(encoding="utf-8")
    links = [link for row in _table() for cell in row[1:] for link in LINK.findall(cell)]
    assert links
    for link in links:
        if link.startswith("#g-"):
            assert link[1:] in anchors, f"no anchor {link} on the page"
            line = next(ln for ln in text.splitlines() if f'<a id="{link[1:]}"></a>' in ln)
            case = re.search(r"</a>`([^`]+)`", line).group(1)
            assert case in manifest, f"{link}: golden case {case} is not in golden/manifest.json"
            assert link[1:] == "g-" + case.replace("/", "-")
        elif link.startswith("conformance.md#"):
            assert f'<a id="{link.split("#", 1)[1]}"></a>' in conformance, f"{link}: no such conformance result"
        else:
            raise AssertionError(f"a link that is neither a golden case nor a conformance result: {link}")
