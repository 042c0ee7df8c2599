"""Run the form's consistency rules over one submission and turn violations into findings.

The same rule definitions are compiled into the template's live checks (template_writer); here
they run in Python with DHIS2 semantics (rules.py). A warning that the unit justified in the
template's "Giải trình" cell stays a warning but counts as accepted, and the justification
travels with the finding to the summary.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import expr, rules
from .findings import Finding
from .form import Form
from .layout import Cell, build_layout
from .submission import SubmissionData
from .textnorm import clean_text, format_number
from .units import Unit
from .vocabulary import Severity
from .workspace import Workspace


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


# ------------------------------------------------------------------ the `check` stage

RULE_CODES = ("rule-violated", "rule-undetermined")
STORE_BATCH = 64  # units whose check results commit together (a killed run loses at most these; a rerun redoes them)


@dataclass
class UnitCheck:
    unit: Unit
    submission_id: int
    findings: list[Finding]
    feedback: Path | None = None

    @property
    def errors(self) -> int:
        return sum(1 for f in self.findings if f.severity == Severity.ERROR)

    @property
    def warnings(self) -> int:
        return sum(1 for f in self.findings if f.severity == Severity.WARNING and not f.accepted)


@dataclass
class CheckResult:
    units: list[UnitCheck] = field(default_factory=list)
    report: Path | None = None

    @property
    def exit_code(self) -> int:
        return 1 if any(u.errors for u in self.units) else 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "report": str(self.report) if self.report else None,
            "units": [{"unit": u.unit.code, "name": u.unit.name, "submission_id": u.submission_id, "errors": u.errors,
                       "warnings": u.warnings, "feedback": str(u.feedback) if u.feedback else None,
                       "findings": [f.to_dict() for f in u.findings]} for u in self.units],
            "exit_code": self.exit_code,
        }


def run_check(ws: Workspace, *, annotate: bool = False, progress: Callable[[str], None] | None = None) -> CheckResult:
    """Re-run the rules over every current submission, store changed results, write the findings
    workbook (and feedback workbooks with ``annotate``)."""
    from .feedback import FeedbackJob, FeedbackSetting, open_findings, write_feedbacks
    from .fsio import prepare_dir, sync_dir, write_atomic
    from .generate import template_context
    from .ledger import Ledger, WorkspaceLock

    form = ws.load_form()
    register = ws.load_register()
    result = CheckResult()
    prepare_dir(ws.reports_dir)
    if annotate:
        prepare_dir(ws.feedback_dir)
    if not ws.ledger_path.exists():
        result.report = write_atomic(ws.reports_dir / f"kiem-tra-{ws.year}.xlsx", findings_workbook(form, register, []))
        return result
    with WorkspaceLock(ws.lock_path, "danvan check"), Ledger.open(ws.ledger_path, ws.archive_dir, "check") as ledger:
        prev_all = ledger.current_values(form.id, ws.year - 1)
        # three queries for all units (not three per unit), results stored STORE_BATCH units per transaction
        current = ledger.current_submissions_bulk(form.id, ws.year)
        units = {s.unit_code: u for s in current if (u := register.get(s.unit_code)) is not None}
        subs = [s for s in current if s.unit_code in units]
        stored_all = ledger.current_findings(form.id, ws.year)
        latest_all = ledger.latest_check_keys(form.id, ws.year)
        by_id = {s.id: s for s in subs}
        for b in range(0, len(subs), STORE_BATCH):
            batch = []
            for sub in subs[b:b + STORE_BATCH]:
                unit = units[sub.unit_code]
                stored = stored_all.get(sub.id, [])
                kept = [f for f in stored if f.code not in RULE_CODES]
                file = next((f.file for f in stored if f.file), "")
                findings = kept + rule_findings(form, unit, sub.data, prev_all.get(unit.code), file)
                batch.append(UnitCheck(unit, sub.id, findings))
            with ledger.transaction() as conn:
                for uc in batch:
                    ledger.store_check(conn, uc.submission_id, form.definition_hash, uc.findings,
                                       latest=latest_all.get(uc.submission_id))
            result.units += batch
            if progress:
                for uc in batch:
                    progress(uc.unit.code)
        order = {u.code: i for i, u in enumerate(register)}
        result.units.sort(key=lambda u: order.get(u.unit.code, 10**6))
        if annotate:
            ctx = template_context(ws)
            reply_by = f"trước ngày {ws.deadline:%d/%m/%Y}" if ws.deadline else "sớm"
            needing = []
            for uc in result.units:
                if not open_findings(uc.findings):
                    stale = ws.feedback_dir / f"{uc.unit.code}.xlsx"
                    if stale.exists():  # an earlier feedback that the unit has since answered
                        stale.unlink()
                    continue
                needing.append(uc)
            jobs = [FeedbackJob(uc.unit, by_id[uc.submission_id], tuple(uc.findings), prev_all.get(uc.unit.code))
                    for uc in needing]
            setting = FeedbackSetting(form, ctx, ws.feedback_dir, ws.office.name, reply_by, jobs)
            for uc, path in zip(needing, write_feedbacks(setting, ws.limits.workers or None), strict=True):
                uc.feedback = path
            sync_dir(ws.feedback_dir)
    result.report = write_atomic(ws.reports_dir / f"kiem-tra-{ws.year}.xlsx",
                                 findings_workbook(form, register, result.units))
    return result


def findings_workbook(form: Form, register: Any, units: Sequence[UnitCheck]) -> bytes:
    """All findings of all current submissions in one sheet, for the office."""
    import io

    import xlsxwriter

    buf = io.BytesIO()
    wb = xlsxwriter.Workbook(buf, {"in_memory": True, "strings_to_formulas": False, "strings_to_urls": False,
                                   "default_format_properties": {"font_name": "Times New Roman", "font_size": 11}})
    wb.set_properties({"title": f"Kết quả kiểm tra — {form.title}", "created": dt.datetime(2000, 1, 1)})
    ws = wb.add_worksheet("Kết quả kiểm tra")
    head = wb.add_format({"bold": True, "text_wrap": True, "valign": "vcenter", "align": "center", "border": 1,
                          "bg_color": "#D9E1F2"})
    wrap = wb.add_format({"text_wrap": True, "valign": "top", "border": 1})
    headers = ["Mã đơn vị", "Đơn vị", "Mức độ", "Tệp", "Trang", "Ô", "Mã trường", "Quy tắc", "Vế trái", "Vế phải",
               "Nội dung", "Giải trình của đơn vị", "Đã chấp nhận"]
    widths = [10, 34, 10, 22, 10, 6, 22, 22, 9, 9, 60, 36, 10]
    for c, (h, w) in enumerate(zip(headers, widths, strict=True)):
        ws.set_column(c, c, w)
        ws.write_string(0, c, h, head)
    r = 1
    for uc in units:
        for f in uc.findings:
            cells = [uc.unit.code, uc.unit.name, f.severity_vi, f.file, f.sheet, f.cell, f.field, f.rule,
                     show(f.left) if f.left is not None else "", show(f.right) if f.right is not None else "",
                     f.message, f.justification, "Có" if f.accepted else ""]
            for c, v in enumerate(cells):
                ws.write_string(r, c, clean_text(str(v))[:32000], wrap)
            r += 1
    ws.freeze_panes(1, 2)
    ws.autofilter(0, 0, max(r - 1, 1), len(headers) - 1)
    ws.set_landscape()
    ws.set_paper(9)
    ws.fit_to_pages(1, 0)
    ws.repeat_rows(0)
    wb.close()
    return buf.getvalue()
