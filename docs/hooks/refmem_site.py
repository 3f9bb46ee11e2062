"""MkDocs hook for refmem's documentation site (named in ``mkdocs.yml``).

Two jobs, both at build time, so the built site needs nothing from the network:

* **Pages from outside ``docs/``.** The home page is the repository's ``README.md``
  and the examples page is ``examples/README.md`` (the adapter protocol), so each
  text has one source. Every page's relative links are written for a clone
  (``docs/spec.md`` from the root, ``../docs/...`` from ``examples/``,
  ``../examples/README.md`` from ``docs/``); here they are rewritten to point at
  the same texts inside the site. A link to a file the site does not hold is left
  as it is, so that ``mkdocs build --strict`` reports it.
* **MathJax from an installed package.** ``pymdownx.arithmatex`` (generic mode)
  wraps the ``$...$`` and ``$$...$$`` maths of the pages; MathJax 3 typesets it in
  the browser. Its script is taken from the ``django-static-mathjax`` wheel (the
  MathJax 3.2.2 distribution as package data, no dependencies, installed by the
  ``docs`` extra) and served from the site itself, never from a CDN.
"""

from __future__ import annotations

import importlib.resources
import os
import posixpath
import re

from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File, Files

#: Files outside ``docs/`` that become pages: repository path -> page path in the site.
INCLUDED_PAGES = {
    "README.md": "index.md",
    "examples/README.md": "examples.md",
}

#: MathJax components copied into the site: path in the package -> path in the site.
MATHJAX_FILES = {
    "es5/tex-svg-full.js": "javascripts/mathjax/tex-svg-full.js",
    "LICENSE": "javascripts/mathjax/LICENSE",
}

_LINK = re.compile(r"(!?\[[^\]\n]*\]\()([^)\s]+)((?:\s+\"[^\"\n]*\")?\))")
_FENCE = re.compile(r"^\s*(```|~~~)")
_EXTERNAL = re.compile(r"^(?:[a-zA-Z][a-zA-Z0-9+.-]*:|//|#)")


def _mathjax_root():
    try:
        root = importlib.resources.files("mathjax") / "static" / "mathjax"
    except ModuleNotFoundError:
        root = None
    if root is None or not (root / "es5" / "tex-svg-full.js").is_file():
        raise PluginError(
            "the documentation needs MathJax's files from the package django-static-mathjax "
            "(no network at view time, so no CDN): pip install -e '.[docs]'")
    return root


def rewrite_links(text: str, source: str, page: str, docs_prefix: str = "docs") -> str:
    """Rewrite the relative links of ``source`` (a repository path) for the site page ``page``.

    A target inside ``docs/`` becomes a path relative to ``page``; a target that is
    itself an included page (``INCLUDED_PAGES``) becomes that page. Links in
    fenced code blocks, absolute URLs and bare ``#anchors`` are left alone.
    """
    source_dir = posixpath.dirname(source)
    page_dir = posixpath.dirname(page)

    def fix(match: re.Match) -> str:
        target = match.group(2)
        if _EXTERNAL.match(target):
            return match.group(0)
        path, hash_, fragment = target.partition("#")
        resolved = posixpath.normpath(posixpath.join(source_dir, path))
        if resolved in INCLUDED_PAGES:
            new = INCLUDED_PAGES[resolved]
        elif resolved.startswith(docs_prefix + "/"):
            new = resolved[len(docs_prefix) + 1:]
        else:
            return match.group(0)
        new = posixpath.relpath(new, page_dir or ".")
        return match.group(1) + new + hash_ + fragment + match.group(3)

    out, in_fence = [], False
    for line in text.splitlines(keepends=True):
        if _FENCE.match(line):
            in_fence = not in_fence
            out.append(line)
        else:
            out.append(line if in_fence else _LINK.sub(fix, line))
    return "".join(out)


def on_config(config, **kwargs):
    _mathjax_root()  # fail early, with the fix, when the docs extra is missing
    return config


def on_files(files: Files, config, **kwargs) -> Files:
    repo_root = os.path.dirname(os.path.abspath(config.config_file_path))
    for source, page in INCLUDED_PAGES.items():
        with open(os.path.join(repo_root, source), encoding="utf-8") as fh:
            files.append(File.generated(config, page, content=fh.read()))
    root = _mathjax_root()
    for source, dest in MATHJAX_FILES.items():
        files.append(File.generated(
            config, dest, abs_src_path=str(root.joinpath(*source.split("/")))))
    return files


def on_page_markdown(markdown: str, page, config, files, **kwargs) -> str:
    """Give every page the links of the site, whether it lives in ``docs/`` or not."""
    repo_root = os.path.dirname(os.path.abspath(config.config_file_path))
    docs_prefix = posixpath.relpath(
        os.path.abspath(config.docs_dir), repo_root).replace(os.sep, "/")
    uri = page.file.src_uri
    sources = {v: k for k, v in INCLUDED_PAGES.items()}
    source = sources.get(uri, posixpath.join(docs_prefix, uri))
    return rewrite_links(markdown, source, uri, docs_prefix)
