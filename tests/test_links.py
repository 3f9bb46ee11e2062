"""Every relative link of README.md, examples/README.md and docs/ resolves inside a clone.

A clone of the repository is all a reader has: a link to ``../shared/SPEC.md`` (outside
the repository) or to a file that was moved is dead. The checker below parses the
Markdown links and image links (inline ``[text](target)``, ``![alt](target)`` and
reference definitions ``[label]: target``) outside code, resolves each relative target
against the file that holds it, and requires the file to exist inside the repository;
a ``#fragment`` must name a heading of the target Markdown file (GitHub's heading ids,
which ``mkdocs.yml`` uses too) or an explicit ``id``.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def markdown_files(root: Path = ROOT) -> list[Path]:
    files = [root / "README.md", root / "examples" / "README.md"]
    files += sorted((root / "docs").rglob("*.md"))
    return [f for f in files if f.is_file()]


_FENCE = re.compile(r"^\s*(```|~~~)")
_CODE_SPAN = re.compile(r"(`+)(?:(?!\1).)+?\1")
_INLINE = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]*)>?(?:\s+[\"'(][^)]*)?\)")
_REFERENCE = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$")
_EXTERNAL = re.compile(r"^(?:[a-zA-Z][a-zA-Z0-9+.-]*:|//)")
_HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
_ATTR_ID = re.compile(r"\{[^}]*#([\w\-]+)[^}]*\}\s*$")
_HTML_ID = re.compile(r"<a\s[^>]*(?:id|name)=[\"']([^\"']+)[\"']", re.IGNORECASE)


def _prose_lines(text: str):
    """(line number, line without code spans) for every line outside fenced code."""
    in_fence = False
    for number, line in enumerate(text.splitlines(), start=1):
        if _FENCE.match(line):
            in_fence = not in_fence
            continue
        if not in_fence:
            yield number, _CODE_SPAN.sub("", line)


def links(text: str) -> list[tuple[int, str]]:
    """Every link target of a Markdown text, with its line number."""
    found = []
    for number, line in _prose_lines(text):
        found += [(number, m.group(1)) for m in _INLINE.finditer(line)]
        ref = _REFERENCE.match(line)
        if ref:
            found.append((number, ref.group(1)))
    return found


def slug(heading: str) -> str:
    """GitHub's heading id: inline markup dropped, lower case, Unicode letters kept."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)   # links -> their text
    text = re.sub(r"<[^>]+>", "", text).replace("`", "").replace("*", "")
    text = re.sub(r"[^\w\- ]", "", text.strip().lower())
    return text.replace(" ", "-")


def anchors(text: str) -> set[str]:
    """The ids a Markdown text's headings and explicit anchors define."""
    ids: set[str] = set()
    counts: dict[str, int] = {}
    for _, line in _prose_lines(text.replace("`", "\x00")):  # keep code text in headings
        line = line.replace("\x00", "`")
        ids.update(_HTML_ID.findall(line))
        m = _HEADING.match(line)
        if not m:
            continue
        explicit = _ATTR_ID.search(m.group(2))
        if explicit:
            ids.add(explicit.group(1))
            continue
        base = slug(m.group(2))
        n = counts.get(base, 0)
        counts[base] = n + 1
        ids.add(base if n == 0 else f"{base}-{n}")
    return ids


def dead_links(path: Path, root: Path = ROOT) -> list[str]:
    """One message per dead relative link (or dead ``#fragment``) in the file ``path``."""
    root = root.resolve()
    problems = []
    text = path.read_text(encoding="utf-8")
    for number, target in links(text):
        if not target or _EXTERNAL.match(target):
            continue
        where = f"{path.relative_to(root)}:{number}: link {target!r}"
        file_part, _, fragment = target.partition("#")
        dest = (path.parent / file_part).resolve() if file_part else path.resolve()
        if root not in dest.parents and dest != root:
            problems.append(f"{where} points outside the repository ({dest})")
            continue
        if not dest.exists():
            problems.append(f"{where}: no such file {dest.relative_to(root)}")
            continue
        if fragment and dest.suffix == ".md":
            if fragment not in anchors(dest.read_text(encoding="utf-8")):
                problems.append(f"{where}: no heading #{fragment} in {dest.relative_to(root)}")
    return problems


def test_the_checked_files_are_there():
    names = {str(f.relative_to(ROOT)) for f in markdown_files()}
    assert {"README.md", "examples/README.md", "docs/spec.md", "docs/golden-format.md",
            "docs/derivations/dnc.md"} <= names


@pytest.mark.parametrize("path", markdown_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve_inside_the_repository(path):
    assert dead_links(path) == []


def test_nothing_points_at_the_shared_folder_beside_the_repository():
    sources = markdown_files() + sorted((ROOT / "refmem").rglob("*.py"))
    offenders = [str(f.relative_to(ROOT)) for f in sources
                 if "../shared" in f.read_text(encoding="utf-8")]
    assert offenders == []


def test_nothing_names_the_old_top_level_documents():
    """GOLDEN.md, SPEC.md and ARCHITECTURE.md are docs/golden-format.md, docs/spec.md and
    docs/architecture.md: no page, docstring, help text or example names the old files."""
    sources = (markdown_files() + sorted((ROOT / "refmem").rglob("*.py")) + sorted((ROOT / "examples").rglob("*.py"))
               + sorted((ROOT / "tools").rglob("*.py")) + sorted((ROOT / "benchmarks").rglob("*.py")))
    old = re.compile(r"\b(GOLDEN|SPEC|ARCHITECTURE)\.md\b")
    offenders = [f"{f.relative_to(ROOT)}:{n}" for f in sources
                 for n, line in enumerate(f.read_text(encoding="utf-8").splitlines(), start=1) if old.search(line)]
    assert offenders == []


_PATH_IN_CODE = re.compile(
    r"`((?:refmem|tests|benchmarks|examples|docs|golden)/[\w./-]*?)(?:::[\w\[\]-]+)?`")


def named_paths(text: str) -> list[tuple[int, str]]:
    """Repository paths named in code spans (`refmem/dnc/core.py`, `tests/x.py::test_y`)."""
    found = []
    for number, line in enumerate(text.splitlines(), start=1):
        found += [(number, m.group(1)) for m in _PATH_IN_CODE.finditer(line)]
    return found


@pytest.mark.parametrize("path", markdown_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_files_named_in_code_spans_exist(path):
    """A path the prose names as code (not a link) is as dead as a link when a file moves."""
    text = path.read_text(encoding="utf-8")
    missing = [f"{path.relative_to(ROOT)}:{n}: {p}" for n, p in named_paths(text)
               if not (ROOT / p).exists()]
    assert missing == []


def test_the_checker_finds_planted_dead_links(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "target.md").write_text(
        "# Title\n\n## 5. The `usage_forward` step (σ)\n\n## Twice\n\n## Twice\n", encoding="utf-8")
    (tmp_path / "pic.png").write_bytes(b"")
    page = tmp_path / "README.md"
    page.write_text(
        "[ok](docs/target.md) [ok](docs/target.md#5-the-usage_forward-step-σ) [ok](#local)\n"
        "[ok](docs/target.md#twice-1) ![ok](pic.png) [web](https://example.org/x.md)\n"
        "## Local\n"
        "`[in code](nowhere.md)`\n"
        "```\n[in a fence](nowhere.md)\n```\n"
        "[dead](docs/missing.md) ![dead image](img/missing.png)\n"
        "[dead anchor](docs/target.md#no-such-heading) [dead local](#nowhere)\n"
        "[outside](../shared/SPEC.md)\n"
        "[ref]: docs/also-missing.md\n"
        "Code in `refmem/nowhere.py` and `tests/test_links.py::test_x`.\n",
        encoding="utf-8")
    problems = dead_links(page, root=tmp_path)
    assert len(problems) == 6, problems
    for needle in ("docs/missing.md", "img/missing.png", "#no-such-heading", "#nowhere",
                   "outside the repository", "docs/also-missing.md"):
        assert any(needle in p for p in problems), (needle, problems)
    named = [p for _, p in named_paths(page.read_text(encoding="utf-8"))]
    assert named == ["refmem/nowhere.py", "tests/test_links.py"]
    assert not (ROOT / named[0]).exists() and (ROOT / named[1]).exists()
