"""The per-unit list sheets: "Chấm điểm" (self scores, grades and the appraisal columns), one sheet
per repeating table (the "Dân vận khéo" models), "Tình hình nộp" and "Lỗi và cảnh báo".
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Sequence

from xlsxwriter.utility import xl_col_to_name, xl_rowcol_to_cell

from .findings import Finding
from .form import Column, Field
from .status import STATE_VI
from .submission import Value
from .summary_model import IN, OUT, UnitRow, number_of, self_scores
from .summary_sheet import EXCEL_MAX_ROWS, SHEET_FINDINGS, SHEET_STATUS, Context, RowFormula, Sheet, col_range
from .summary_text import line_count, num_text, strip_parenthetical
from .textnorm import format_date_short, upper_vi
from .vocabulary import NA_TEXT, Kind, Severity, ValueState

# ------------------------------------------------------------------ Chấm điểm

def write_scores(cx: Context, sh: Sheet) -> None:
    m, st = cx.model, cx.st
    rubric = m.form.rubric
    assert rubric is not None
    n = len(rubric.criteria)
    first = 4
    c_total, c_grade, c_appr, c_appr_grade, c_note = first + n, first + n + 1, first + n + 2, first + n + 3, first + n + 4
    sh.widths([5, 30, 11, 10] + [10] * n + [10, 11, 11, 11, 24])
    cx.title(sh, f"TỔNG HỢP ĐIỂM TỰ CHẤM VÀ THẨM ĐỊNH CÔNG TÁC DÂN VẬN CHÍNH QUYỀN NĂM {m.year}",
             f"{rubric.title} — {cx.as_of_line()}", c_note)
    row = 2
    if rubric.sample:
        sh.merge(row, 0, row, c_note, rubric.note or "Thang điểm mẫu, chưa phải tiêu chí chính thức.", st.note_red)
    head = 3
    for c, text in enumerate(("TT", "Đơn vị", "Mã", "Tình trạng")):
        sh.merge(head, c, head + 1, c, text, st.head)
    lines = 1
    for i, crit in enumerate(rubric.criteria):
        sh.text(head, first + i, f"{i + 1}. {crit.title}", st.head)
        lines = max(lines, line_count(f"{i + 1}. {crit.title}", 10))
    for c, text in ((c_total, "Tổng điểm tự chấm"), (c_grade, "Xếp loại tự chấm"), (c_appr, "Điểm thẩm định"),
                    (c_appr_grade, "Xếp loại thẩm định"), (c_note, "Ghi chú thẩm định")):
        sh.text(head, c, text, st.head)
    for i, crit in enumerate(rubric.criteria):
        sh.text(head + 1, first + i, f"tối đa {num_text(crit.max)}", st.head_small)
    sh.text(head + 1, c_total, f"tối đa {num_text(rubric.max_total)}", st.head_small)
    for c in (c_grade, c_appr_grade, c_note):
        sh.blank(head + 1, c, st.head_small)
    sh.text(head + 1, c_appr, "Văn phòng nhập", st.head_small)
    row = head + 2
    rows = cx.model.rows
    formulas = _score_formulas(rubric.grades, first, c_total)
    for i, r in enumerate(rows, start=1):
        _score_row(cx, sh, row, i, r, first, c_total, formulas)
        row += 1
    last = max(row - 1, head + 2)
    _score_validation(cx, sh, head + 2, last, c_appr, rubric.max_total)
    _grade_counts(cx, sh, row + 1, (head + 2, last), c_grade, c_appr_grade)
    sh.ws.freeze_panes(head + 2, 2)
    sh.page(cx.footer, header_rows=(head, head + 1))


def _score_formulas(grades: Sequence[tuple[float, str]], first: int, c_total: int) -> tuple[RowFormula, ...]:
    """Each unit row's self total, its grade and the appraised grade, with "{r}" for the row."""
    scores = f"{xl_col_to_name(first)}{{r}}:{xl_col_to_name(c_total - 1)}{{r}}"
    total, appraised = f"{xl_col_to_name(c_total)}{{r}}", f"{xl_col_to_name(c_total + 2)}{{r}}"
    return (RowFormula(f'=IF(COUNT({scores})=0,"",SUM({scores}))'),
            RowFormula(f'=IF(ISNUMBER({total}),{_grade_formula(grades, total)},"")'),
            RowFormula(f'=IF(ISNUMBER({appraised}),{_grade_formula(grades, appraised)},"")'))


def _score_row(cx: Context, sh: Sheet, row: int, index: int, r: UnitRow, first: int, c_total: int,
               formulas: tuple[RowFormula, ...]) -> None:
    st, rubric = cx.st, cx.model.form.rubric
    assert rubric is not None
    w = sh.row(row)
    w.num(0, index, st.center)
    w.text(1, r.unit.name, st.text)
    w.text(2, r.unit.code, st.code)
    cx.state_cells(sh, row, 3, r, with_inclusion=False)
    scores, total = self_scores(cx.model.form, r)
    score_fmt = st.number("decimal", 1)
    for i, crit in enumerate(rubric.criteria):
        v = r.value(crit.score_field)
        if v is not None and v.state == ValueState.INVALID:
            w.blank(first + i, st.invalid)
        elif scores[i] is None:
            w.blank(first + i, score_fmt)
        else:
            w.num(first + i, scores[i], score_fmt)
    cx.plan.score_total[r.unit.code] = xl_rowcol_to_cell(row, c_total)
    w.row_formula(c_total, formulas[0], st.number("decimal", 1, "block"), total)
    grade = "" if total is None else rubric.grade(total)
    w.row_formula(c_total + 1, formulas[1], st.label("block", align="center"), grade)
    w.blank(c_total + 2, st.input)
    w.row_formula(c_total + 3, formulas[2], st.label("block", align="center"), "")
    w.blank(c_total + 4, st.input_text)


def _score_validation(cx: Context, sh: Sheet, first: int, last: int, col: int, maximum: float) -> None:
    rc = sh.ws.data_validation(first, col, last, col, {
        "validate": "decimal", "criteria": "between", "minimum": 0, "maximum": maximum,
        "input_title": "Điểm thẩm định", "input_message": f"Nhập điểm thẩm định từ 0 đến {num_text(maximum)}.",
        "error_title": "Điểm không hợp lệ", "error_message": f"Điểm thẩm định phải là số từ 0 đến {num_text(maximum)}.",
    })
    sh.check(rc, first, col, "kiểm tra dữ liệu")


def _grade_counts(cx: Context, sh: Sheet, row: int, rng: tuple[int, int], c_grade: int, c_appr: int) -> None:
    st, rubric = cx.st, cx.model.form.rubric
    assert rubric is not None
    sh.text(row, 1, "Xếp loại", st.head)
    sh.text(row, 2, "Tự chấm", st.head)
    sh.text(row, 3, "Thẩm định", st.head)
    totals = [self_scores(cx.model.form, r)[1] for r in cx.model.rows]
    for i, (_minimum, label) in enumerate(rubric.grades, start=1):
        sh.text(row + i, 1, label, st.text)
        cached = sum(1 for t in totals if t is not None and rubric.grade(t) == label)
        sh.formula(row + i, 2, f'=COUNTIF({col_range(c_grade, rng, True)},"{label}")', st.number("count", 0), cached)
        sh.formula(row + i, 3, f'=COUNTIF({col_range(c_appr, rng, True)},"{label}")', st.number("count", 0), 0)


# ------------------------------------------------------------------ repeating tables (Dân vận khéo)

def write_models(cx: Context, sh: Sheet, table: Field) -> None:
    st = cx.st
    cols: tuple[Column, ...] = table.columns
    widths = [5, 30, 11, 10, 8] + [_column_width(c) for c in cols]
    sh.widths(widths)
    last = len(widths) - 1
    cx.title(sh, upper_vi(strip_parenthetical(table.label)) + f" NĂM {cx.model.year}",
             f"Mỗi mô hình một dòng, theo thứ tự đơn vị — {cx.as_of_line()}", last)
    head = 3
    for c, h in enumerate(["TT", "Đơn vị", "Mã", "Tình trạng", "Tính vào tổng"] + [c.label for c in cols]):
        sh.text(head, c, h, st.head)
    row = head + 1
    index = 0
    for r in cx.model.rows:
        for entry in _table_rows(r, table.id):
            index += 1
            w = sh.row(row)
            w.num(0, index, st.center)
            w.text(1, r.unit.name, st.text)
            w.text(2, r.unit.code, st.code)
            cx.state_cells(sh, row, 3, r)
            for j, col in enumerate(cols):
                _table_value(cx, sh, row, 5 + j, entry.get(col.id))
            row += 1
    if index == 0:
        sh.merge(row, 0, row, last, "Chưa có đơn vị nào liệt kê.", st.text)
        row += 1
    _choice_counts(cx, sh, row + 1, table, (head + 1, max(head + 1, row - 1)))
    sh.ws.freeze_panes(head + 1, 2)
    sh.page(cx.footer, header_rows=(head, head))


def _table_rows(r: UnitRow, table_id: str) -> list[dict[str, Value]]:
    if r.submission is None:
        return []
    rows = r.submission.data.tables.get(table_id, [])
    return [row for row in rows if any(v.state != ValueState.BLANK for v in row.values())]


def _table_value(cx: Context, sh: Sheet, row: int, col: int, v: Value | None) -> None:
    st = cx.st
    if v is None or v.state == ValueState.BLANK:
        sh.blank(row, col, st.untrusted)
    elif v.state == ValueState.INVALID:
        sh.text(row, col, v.raw or "", st.invalid)
    elif v.state == ValueState.NA:
        sh.text(row, col, NA_TEXT, st.na("unit"))
    elif isinstance(v.value, dt.date):
        sh.text(row, col, format_date_short(v.value), st.untrusted_center)
    elif (n := number_of(v)) is not None:
        sh.num(row, col, n, st.number("count", 0))
    else:
        sh.text(row, col, v.value, st.untrusted)


def _choice_counts(cx: Context, sh: Sheet, row: int, table: Field, rng: tuple[int, int]) -> None:
    """Counts per choice (lĩnh vực, cấp công nhận) over the included units, as COUNTIFS formulas."""
    st, choices = cx.st, cx.model.form.choices
    choice_cols = [(j, c) for j, c in enumerate(table.columns) if c.choices and c.choices in choices]
    if not choice_cols:
        return
    counted = Counter((c.id, v.value) for r in cx.model.included for e in _table_rows(r, table.id)
                      for c in table.columns if (v := e.get(c.id)) is not None and v.state == ValueState.VALUE)
    sh.merge(row, 1, row, 3, "Số mô hình của các đơn vị được tính vào tổng", st.plain_bold)
    row += 1
    for j, col in choice_cols:
        sh.text(row, 1, col.label, st.head)
        sh.text(row, 2, "Số lượng", st.head)
        options = choices[col.choices]  # type: ignore[index]
        for k, choice in enumerate(options, start=1):
            sh.text(row + k, 1, choice, st.text)
            formula = (f'=COUNTIFS({col_range(5 + j, rng, True)},"{choice}",'
                       f'{col_range(4, rng, True)},"{IN}")')
            sh.formula(row + k, 2, formula, st.number("count", 0), counted[(col.id, choice)])
        row += len(options) + 2


# ------------------------------------------------------------------ Tình hình nộp

def write_status(cx: Context, sh: Sheet) -> None:
    head = ["TT", "Mã", "Đơn vị", "Khối", "Tình trạng", "Thời điểm nhận", "Hạn nộp", "Số bản đã nhận",
            "Lỗi", "Cảnh báo chưa giải trình", "Tính vào tổng", "Nguồn (bản đang dùng)"]
    cx.table_head(sh, f"TÌNH HÌNH NỘP BÁO CÁO NĂM {cx.model.year}",
                  f"Hạn nộp {format_date_short(cx.model.deadline)} — {cx.as_of_line()}", head,
                  (5, 11, 30, 15, 16, 14, 11, 9, 7, 11, 9, 40))
    row = 4
    for i, r in enumerate(cx.model.rows, start=1):
        _status_row(cx, sh, row, i, r)
        row += 1
    last = max(row - 1, 4)
    cx.plan.status_range = f"'{SHEET_STATUS}'!{col_range(4, (4, last), True)}"
    cx.plan.late_range = f"'{SHEET_STATUS}'!{col_range(6, (4, last), True)}"
    sh.ws.autofilter(3, 0, last, len(head) - 1)
    sh.ws.freeze_panes(4, 3)
    sh.page(cx.footer, header_rows=(3, 3))


def _status_row(cx: Context, sh: Sheet, row: int, index: int, r: UnitRow) -> None:
    st, s, w = cx.st, r.status, sh.row(row)
    w.num(0, index, st.center)
    w.text(1, r.unit.code, st.code)
    w.text(2, r.unit.name, st.text)
    w.text(3, r.unit.block, st.text)
    w.text(4, STATE_VI[r.state], st.status[r.state])
    received = s.received_at if s is not None else (r.submission.received_at if r.submission else None)
    if received is not None:
        sh.datetime(row, 5, received, st.datetime)
    else:
        w.blank(5, st.center)
    on_time = "" if s is None or s.on_time is None else ("Đúng hạn" if s.on_time else "Nộp muộn")
    w.text(6, on_time, st.status["with_errors"] if on_time == "Nộp muộn" else st.center)
    version = s.version if s is not None else (1 if r.submission else 0)
    count = st.number("count", 0)
    for col, value in ((7, version or None), (8, r.submission.errors if r.submission else None),
                       (9, r.submission.warnings if r.submission else None)):
        if value is None:
            w.blank(col, count)
        else:
            w.num(col, value, count)
    w.text(10, IN if r.included else OUT, st.center)
    source = s.source if s is not None and s.source else (r.submission.source if r.submission else "")
    w.text(11, source, st.small)


# ------------------------------------------------------------------ Lỗi và cảnh báo

def write_findings(cx: Context, sh: Sheet) -> None:
    st = cx.st
    head = ["TT", "Đơn vị", "Mã", "Mức độ", "Xử lý", "Trang", "Ô", "Mã trường", "Quy tắc", "Nội dung",
            "Giải trình của đơn vị", "Tệp"]
    cx.table_head(sh, f"LỖI VÀ CẢNH BÁO CỦA CÁC BẢN NỘP ĐANG DÙNG NĂM {cx.model.year}",
                  f"Lỗi, cảnh báo chưa xử lý và cảnh báo đã được đơn vị giải trình — {cx.as_of_line()}", head,
                  (5, 24, 11, 9, 12, 9, 6, 18, 16, 50, 34, 20))
    row = 4
    limit = EXCEL_MAX_ROWS - 10
    for i, (r, f) in enumerate(cx.model.findings, start=1):
        if row >= limit:
            sh.text(row, 1, f"… còn {len(cx.model.findings) - i + 1} phát hiện không hiển thị (vượt số dòng của Excel).",
                    st.note)
            break
        _finding_row(cx, sh, row, i, r, f)
        row += 1
    if not cx.model.findings:
        sh.merge(row, 0, row, len(head) - 1, "Không có lỗi hay cảnh báo nào.", st.text)
    last = max(row - 1, 4)
    cx.plan.findings_range = (f"'{SHEET_FINDINGS}'!{col_range(3, (4, last), True)}",
                              f"'{SHEET_FINDINGS}'!{col_range(4, (4, last), True)}")
    if cx.model.findings:
        sh.ws.autofilter(3, 0, last, len(head) - 1)
    sh.ws.freeze_panes(4, 0)
    sh.page(cx.footer, header_rows=(3, 3))


def _finding_row(cx: Context, sh: Sheet, row: int, index: int, r: UnitRow, f: Finding) -> None:
    st, w = cx.st, sh.row(row)
    w.num(0, index, st.center)
    w.text(1, r.unit.name, st.text)
    w.text(2, r.unit.code, st.code)
    severity_fmt = st.status["with_errors"] if f.severity == Severity.ERROR else st.status["conflict"]
    w.text(3, f.severity_vi, st.status["accepted"] if f.accepted else severity_fmt)
    w.text(4, "Đã giải trình" if f.accepted else "Chưa xử lý", st.center)
    for c, value in ((5, f.sheet), (6, f.cell), (7, f.field.replace(",", ", ")), (8, f.rule)):
        w.text(c, value, st.untrusted_center if c in (5, 6) else st.small)
    w.text(9, f.message, st.untrusted)
    w.text(10, f.justification, st.untrusted)
    w.text(11, f.file, st.small)


def _grade_formula(grades: Sequence[tuple[float, str]], cell: str) -> str:
    formula = f'"{grades[-1][1]}"'
    for minimum, label in reversed(grades[:-1]):
        formula = f'IF({cell}>={num_text(minimum, dot=True)},"{label}",{formula})'
    return formula


def _column_width(col: Column) -> float:
    return 40 if col.kind == Kind.TEXT and col.max_length > 100 else 18
