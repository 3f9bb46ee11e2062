"""A [`Report`][refmem.golden.comparison.Report] as JSON, JUnit XML (what CI systems read) and Markdown."""

from __future__ import annotations

import json
import math
import xml.etree.ElementTree as ET
from typing import Any

from .comparison import Report, Row

__all__ = ["to_json", "to_junit", "to_markdown"]


def _num(x: float) -> float | None:
    return None if (x != x or x in (math.inf, -math.inf)) else float(x)


def _row(r: Row) -> dict[str, Any]:
    return {"tensor": r.tensor, "shape": list(r.shape), "dtype": r.dtype, "rtol": r.rtol, "atol": r.atol,
            "max_abs_err": _num(r.max_abs_err), "ratio": _num(r.ratio), "passed": r.passed, "note": r.note}


def _cell(text: str) -> str:
    """``text`` safe inside a Markdown table cell."""
    return text.replace("|", "\\|").replace("\n", " ")


def _xml(text: str) -> str:
    """``text`` with what XML 1.0 cannot hold (control characters but tab, newline and carriage
    return; lone surrogates; U+FFFE, U+FFFF) written as ``\\xNN`` / ``\\uNNNN``, so the
    document stays valid whatever a message holds."""
    out = []
    for ch in text:
        o = ord(ch)
        if (o < 0x20 and ch not in "\t\n\r") or 0xD800 <= o <= 0xDFFF or o in (0xFFFE, 0xFFFF):
            out.append(f"\\x{o:02x}" if o < 0x100 else f"\\u{o:04x}")
        else:
            out.append(ch)
    return "".join(out)


def _cases(report: Report) -> list[str]:
    return report.cases


def to_json(report: Report, meta: dict[str, Any] | None = None) -> str:
    """``{"passed", "meta", "cases": {case: {"passed", "first_divergence", "problems", "tensors"}}}``."""
    cases = {}
    failed = set(report.failed_cases())
    for case in _cases(report):
        d = report.divergences.get(case)
        cases[case] = {
            "passed": case not in failed,
            "first_divergence": None if d is None else {
                "message": d.message, "tensor": d.tensor, "spec": d.spec, "step": d.step, "index": list(d.index),
                "reference": _num(d.reference), "given": _num(d.given), "reason": d.reason},
            "problems": [p for p in report.problems if p.split(":")[0] == case],
            "tensors": [_row(r) for r in report.rows if r.case == case],
        }
    other = [p for p in report.problems if p.split(":")[0] not in cases]
    doc = {"passed": report.passed, "meta": dict(meta or {}), "cases": cases, "problems": other}
    return json.dumps(doc, indent=2, sort_keys=True, allow_nan=False) + "\n"


def to_junit(report: Report, suite: str = "refmem golden") -> str:
    """One ``<testsuite>`` with one ``<testcase>`` per golden case; a failing case holds a
    ``<failure message="first divergence ...">`` with its failing tensors and problems.

    Always well-formed XML 1.0: a character XML cannot hold (a control character in an
    adapter's exception message) is written as ``\\xNN``."""
    cases = _cases(report)
    failed = set(report.failed_cases())
    suite = _xml(suite)
    root = ET.Element("testsuites", name=suite, tests=str(len(cases)), failures=str(len(failed)), errors="0")
    ts = ET.SubElement(root, "testsuite", name=suite, tests=str(len(cases)), failures=str(len(failed)),
                       errors="0", skipped="0")
    for case in cases:
        module = case.split("/")[0]
        tc = ET.SubElement(ts, "testcase", classname=_xml(f"refmem.golden.{module}"), name=_xml(case))
        if case in failed:
            text = _xml(report.failure_text(case))
            f = ET.SubElement(tc, "failure", message=text.splitlines()[0] if text else "failed", type="GoldenMismatch")
            f.text = text
    other = [p for p in report.problems if p.split(":")[0] not in cases]
    if other:
        ET.SubElement(ts, "system-err").text = _xml("\n".join(other))
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


def to_markdown(report: Report, title: str = "refmem golden verify") -> str:
    """A summary: one line per case (pass or its first divergence), then the failing tensors."""
    cases = _cases(report)
    failed = report.failed_cases()
    lines = [f"## {title}", "", f"**{len(cases) - len(failed)} of {len(cases)} cases pass**"
             + ("." if report.passed else f"; {len(failed)} fail."), "", "| case | result |", "|---|---|"]
    for case in cases:
        if case in failed:
            msg = report.divergences[case].message if case in report.divergences else report.failure_text(case)
            lines.append(f"| `{case}` | ❌ {_cell(msg.splitlines()[0])} |")
        else:
            lines.append(f"| `{case}` | ✅ |")
    bad = report.failures
    if bad:
        lines += ["", "| case | tensor | ratio | note |", "|---|---|---|---|"]
        for r in bad:
            ratio = "nan" if r.ratio != r.ratio else f"{r.ratio:.3g}"
            lines.append(f"| `{r.case}` | `{r.tensor}` | {ratio} | {_cell(r.note)} |")
    other = [p for p in report.problems if p.split(":")[0] not in cases]
    lines += [f"- problem: {p}" for p in other]
    return "\n".join(lines) + "\n"
