"""Feedback workbooks: a unit's own returned values in a fresh template, problems marked.

Never a load-and-save of the returned file (openpyxl would drop extended validations); instead
the template writer rebuilds the unit's template with its values pre-filled, highlights every
cell a finding points at (with a comment quoting the message) and puts a "Kết quả kiểm tra"
sheet in front. The unit corrects it and sends it back; it collects as a new version.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .findings import Finding
from .forkpool import map_ranges
from .form import Form
from .layout import Cell, build_layout
from .submission import Submission
from .template_writer import Annotation, FeedbackSheet, Prefill, TemplateContext, build_template
from .textnorm import format_date_short
from .units import Unit
from .vocabulary import NA_TEXT, SEVERITY_VI, Severity, ValueState

_A1 = re.compile(r"^([A-Z]{1,3})([0-9]+)$")


def prefill_from(submission: Submission, prev: dict[str, Any] | None = None) -> Prefill:
    """The unit's returned values as it typed them (invalid values keep their raw text)."""
    values: dict[str, Any] = {}
    for fid, v in submission.data.values.items():
        values[fid] = _cell_value(v)
    tables = {t: [{c: _cell_value(v) for c, v in row.items()} for row in rows]
              for t, rows in submission.data.tables.items()}
    return Prefill(values, tables, dict(submission.data.justifications), dict(prev or {}))


def _cell_value(v: Any) -> Any:
    if v.state == ValueState.VALUE:
        return v.value
    if v.state == ValueState.NA:
        return NA_TEXT
    if v.state == ValueState.INVALID:
        return v.raw if v.raw is not None else v.value
    return None


def open_findings(findings: Sequence[Finding]) -> list[Finding]:
    """What the unit must act on: errors and warnings not yet justified (info is left out)."""
    return [f for f in findings if f.severity == Severity.ERROR or (f.severity == Severity.WARNING and not f.accepted)]


def build_feedback(
    form: Form, unit: Unit, ctx: TemplateContext, submission: Submission, findings: Sequence[Finding],
    *, office: str, reply_by: str, prev: dict[str, Any] | None = None,
) -> bytes:
    """The feedback workbook's bytes for one unit."""
    prefill, annotations, sheet = feedback_parts(form, submission, findings, office=office, reply_by=reply_by,
                                                 prev=prev)
    return build_template(form, unit, ctx, prefill=prefill, annotations=annotations, feedback=sheet)


def feedback_parts(
    form: Form, submission: Submission, findings: Sequence[Finding], *, office: str, reply_by: str,
    prev: dict[str, Any] | None = None,
) -> tuple[Prefill, list[Annotation], FeedbackSheet]:
    """What the template writer needs for one unit's feedback workbook."""
    todo = open_findings(findings)
    notes: dict[tuple[str, str], list[Finding]] = {}
    for f in todo:
        for cell in _cells_of(form, f):
            notes.setdefault((cell.sheet, cell.a1), []).append(f)
    annotations = []
    for (sheet, a1), items in sorted(notes.items()):
        cell = _cell(sheet, a1)
        text = "\n".join(f"{f.severity_vi}: {f.message}" for f in items)
        worst = Severity.ERROR if any(f.severity == Severity.ERROR for f in items) else Severity.WARNING
        annotations.append(Annotation(cell, text, worst))
    rows = []
    for f in sorted(todo, key=lambda f: (f.severity != Severity.ERROR, f.sheet, _row_of(f.cell), f.cell)):
        where = f"Trang {f.sheet}, ô {f.cell}" if f.sheet else "Toàn tệp"
        rows.append((SEVERITY_VI[f.severity], where, f.message, f.rule or f.field))
    received = format_date_short(submission.received_at.date())
    intro = (f"{office} đã kiểm tra báo cáo của đơn vị nhận ngày {received}. Có {len(todo)} nội dung cần xem lại "
             f"(ô tô đỏ; đưa chuột vào ô để đọc ghi chú). Đề nghị đơn vị điều chỉnh trực tiếp trong tệp này và gửi lại "
             f"{reply_by}. Với Cảnh báo, nếu số liệu đúng thực tế, ghi giải trình ở trang KiemTra, cột G.")
    sheet = FeedbackSheet("KẾT QUẢ KIỂM TRA SỐ LIỆU", intro, rows)
    return prefill_from(submission, prev), annotations, sheet


def _cells_of(form: Form, f: Finding) -> list[Cell]:
    """The input cells a finding is about: its own cell, and for a rule every field it reads."""
    layout = build_layout(form)
    cells: list[Cell] = []
    if f.sheet and f.cell and _A1.match(f.cell):
        cells.append(_cell(f.sheet, f.cell))
    if f.rule:
        rule = next((r for r in form.rules if r.id == f.rule), None)
        for fid in rule.fields if rule else ():
            if fid in layout.fields and layout.fields[fid].field.is_input:
                cells.append(layout.fields[fid].cell)
            elif fid in layout.tables:
                cells.append(layout.tables[fid].cell(0, 0))
        pos = layout.rules.get(f.rule)
        if pos is not None and pos.justification is not None and f.severity == Severity.WARNING:
            cells.append(pos.justification)
    return list(dict.fromkeys(cells))


def _cell(sheet: str, a1: str) -> Cell:
    m = _A1.match(a1)
    assert m
    col = 0
    for ch in m.group(1):
        col = col * 26 + ord(ch) - 64
    return Cell(sheet, int(m.group(2)) - 1, col - 1)


def _row_of(a1: str) -> int:
    m = _A1.match(a1 or "")
    return int(m.group(2)) if m else 0


# ------------------------------------------------------------------ writing many

PARALLEL_THRESHOLD = 40  # feedback workbooks; below this, starting worker processes costs more than it saves


@dataclass(frozen=True)
class FeedbackJob:
    unit: Unit
    submission: Submission  # the parent's copy, inherited by forked workers (never pickled)
    findings: tuple[Finding, ...]
    prev: dict[str, Any] | None


@dataclass(frozen=True)
class FeedbackSetting:
    """What every feedback workbook of one run shares (inherited by forked workers, never pickled)."""

    form: Form
    ctx: TemplateContext
    out: Path
    office: str
    reply_by: str
    jobs: Sequence[FeedbackJob]


def write_feedbacks(setting: FeedbackSetting, workers: int | None = None) -> list[Path]:
    """Build and write every job's feedback workbook (``out/<unit code>.xlsx``), in job order.

    Forked workers inherit the jobs (submissions included) and build whole workbooks, so nothing
    large crosses a pipe; files are written atomically and fsynced once."""
    workers = workers or os.cpu_count() or 1
    if len(setting.jobs) < PARALLEL_THRESHOLD:
        workers = 1
    return map_ranges(functools.partial(_write_range, setting), 0, len(setting.jobs), workers)


_STAMPER: dict[tuple[Form, TemplateContext], Any] = {}  # the FeedbackStamper of the last form and context


def _write_range(setting: FeedbackSetting, start: int, stop: int) -> list[Path]:
    from .feedback_stamp import FeedbackStamper
    from .fsio import fsync_file, write_atomic

    paths = []
    stamper = _STAMPER.get((setting.form, setting.ctx))
    if stamper is None:  # one per process and run: its prototypes serve every chunk the process gets
        _STAMPER.clear()
        stamper = _STAMPER[(setting.form, setting.ctx)] = FeedbackStamper(setting.form, setting.ctx)
    for job in setting.jobs[start:stop]:
        prefill, annotations, sheet = feedback_parts(setting.form, job.submission, job.findings,
                                                     office=setting.office, reply_by=setting.reply_by, prev=job.prev)
        data = stamper.build(job.unit, prefill, annotations, sheet)
        paths.append(write_atomic(setting.out / f"{job.unit.code}.xlsx", data, durable=False))
    for p in paths:
        fsync_file(p)
    return paths
