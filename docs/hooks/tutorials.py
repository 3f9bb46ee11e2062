"""MkDocs hook: the executable tutorials of ``docs/tutorials/`` (named in ``mkdocs.yml``).

The tutorials are Markdown pages whose ``python exec="on"`` blocks the ``markdown-exec`` plugin
runs while the site is built, in the build's own Python process, and renders with their output
(text, tables, figures as inline PNG). A block that raises logs a warning, so
``mkdocs build --strict`` fails: a broken cell fails CI.

This hook adds two things:

* **Run once in CI.** CI builds the site once, in ``tests/test_docs_build.py`` under README's test
  command, with the tutorials executed. With ``REFMEM_DOCS_EXECUTE=0`` the blocks are shown as
  plain Python blocks (their options dropped) and not run (a quicker local build).
* **Their cost.** Each tutorial's build time (its blocks' execution and its rendering) is logged,
  ``tutorial tutorials/allocation.md: 1.3 s``, so a slow cell shows in the CI log.
"""

from __future__ import annotations

import logging
import os
import re
import time

log = logging.getLogger("mkdocs.hooks.tutorials")

#: The opening line of a fence whose info string holds ``exec="on"`` (or ``"1"``, ``"true"``, ``"yes"``).
_EXEC = re.compile(r'^(\s*(?:```|~~~))\s*python\b[^\n]*\bexec="(?:on|1|true|yes)"[^\n]*$', re.MULTILINE)

_started: dict[str, float] = {}


def _tutorial(page) -> bool:
    return page.file.src_uri.startswith("tutorials/")


def execute() -> bool:
    """Whether the tutorials' blocks run in this build (``REFMEM_DOCS_EXECUTE`` is not ``0``)."""
    return os.environ.get("REFMEM_DOCS_EXECUTE", "1").strip().lower() not in ("0", "false", "no", "off")


def on_page_markdown(markdown, page, config, files):
    if not _tutorial(page):
        return markdown
    if not execute():
        return _EXEC.sub(r"\1python", markdown)  # a plain Python block: shown, highlighted, not run
    _started[page.file.src_uri] = time.perf_counter()
    return markdown


def on_page_content(html, page, config, files):
    start = _started.pop(page.file.src_uri, None)
    if start is not None:
        log.info("tutorial %s: %.1f s", page.file.src_uri, time.perf_counter() - start)
    return html
