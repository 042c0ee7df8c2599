"""Run the form's consistency rules over one submission and turn violations into findings.

The same rule definitions are compiled into the template's live checks (template_writer); here
they run in Python with DHIS2 semantics (rules.py). A warning that the unit justified in the
template's "Giải trình" cell stays a warning but counts as accepted, and the justification
travels with the finding to the summary.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from . import expr, rules
from .findings import Finding
from .form import Form
from .layout import Cell, build_layout
from .submission import SubmissionData
from .textnorm import format_number
from .units import Unit
from .vocabulary import Severity


def show(value: Any) -> str:
    """A side's value in a Vietnamese message."""
    if value is None:
        return "(trống)"
    if value is expr.NA:
        return "không phát sinh"
    if isinstance(value, bool):
        return "đúng" if value else "sai"
    if isinstance(value, int | float):
        return format_number(value)
    return str(value)


def rule_cell(form: Form, rule: rules.Rule) -> Cell | None:
    """The cell a rule finding points at: the first scalar field it reads, else its table."""
    layout = build_layout(form)
    for fid in rule.fields:
        if fid in layout.fields:
            return layout.fields[fid].cell
    for fid in rule.fields:
        if fid in layout.tables:
            return layout.tables[fid].cell(0, 0)
    return None


def rule_findings(
    form: Form, unit: Unit, data: SubmissionData, prev: Mapping[str, Any] | None = None, file: str = "",
) -> list[Finding]:
    env = data.env(dict(prev or {}), form.constants)
    out: list[Finding] = []
    for rule in form.rules:
        if not rule.applies(unit.kind):
            continue
        result = rules.evaluate(rule, env)
        cell = rule_cell(form, rule)
        where = {"file": file, "sheet": cell.sheet if cell else "", "cell": cell.a1 if cell else "",
                 "field": ",".join(rule.fields), "rule": rule.id, "unit": unit.code}
        if result.outcome == rules.Outcome.VIOLATED:
            message = rule.message.format(left=show(result.left), right=show(result.right))
            justification = data.justifications.get(rule.id, "") if rule.justifiable else ""
            out.append(Finding("rule-violated", rule.severity, message, left=_plain(result.left),
                               right=_plain(result.right), justification=justification, **where))
        elif result.outcome == rules.Outcome.UNDETERMINED:
            out.append(Finding("rule-undetermined", Severity.INFO,
                               f"Không kiểm tra được “{rule.title}” (phép chia cho 0).", **where))
    return out


def _plain(value: Any) -> Any:
    if value is expr.NA:
        return "không phát sinh"
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def check_submission(
    form: Form, unit: Unit, data: SubmissionData, read_findings: Sequence[Finding],
    prev: Mapping[str, Any] | None = None, file: str = "",
) -> list[Finding]:
    """All findings of a submission: the reader's value findings, then the rule findings."""
    findings = [_with_unit(f, unit.code) for f in read_findings]
    return findings + rule_findings(form, unit, data, prev, file)


def _with_unit(f: Finding, unit: str) -> Finding:
    if f.unit == unit:
        return f
    return Finding(f.code, f.severity, f.message, f.file, f.sheet, f.cell, f.field, f.rule, f.left, f.right, unit,
                   f.justification)
