"""Form + unit → the unit's Excel input workbook (xlsxwriter, deterministic bytes).

What a unit receives (design.md §3.3): an instructions sheet; input sheets grouped by section;
locked labels and unlocked yellow input cells on protected sheets (no password); data validation
with Vietnamese input messages and stop alerts on every input cell; dropdown lists on a hidden
``_lists`` sheet behind defined names; one workbook-level defined name per scalar field id; the
identity (form id, version, definition hash, unit, year, issue time) in the very hidden ``_meta``
sheet and in custom document properties; the consistency rules compiled to live formulas (a check
sheet with Đạt/Chưa đạt and red conditional formatting on the cells involved); A4 print setup.

The same writer builds feedback workbooks: a fresh template pre-filled with a unit's returned
values, failing cells highlighted and commented, and a "Kết quả kiểm tra" sheet in front (never a
load-and-save of the returned file, which would drop extended validations).
"""

from __future__ import annotations

import datetime as dt
import functools
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import xlsxwriter
from xlsxwriter.workbook import Workbook
from xlsxwriter.worksheet import Worksheet

from . import expr, rules
from .errors import TemplateBuildError
from .expr import NA
from .form import Column, Field, Form
from .layout import CHECK_WIDTHS, HEADER_ROW, Cell, FieldPos, Layout, Row, SheetLayout, build_layout, col_letter
from .textnorm import format_date_short, format_int, safe_filename, slug
from .units import Unit
from .vocabulary import (
    NA_TEXT,
    NO,
    PROP_PREFIX,
    SEVERITY_VI,
    SHEET_CHECKS,
    SHEET_FEEDBACK,
    SHEET_INSTRUCTIONS,
    SHEET_LISTS,
    SHEET_META,
    YES,
    Kind,
    Severity,
)

FONT = "Times New Roman"
INPUT_FILL = "#FFF2CC"
PREFILL_FILL = "#EDEDED"
ERROR_FILL = "#F4B6B6"
GENERATOR = "danvan_xl 0.1"


@dataclass(frozen=True)
class TemplateContext:
    """What the collecting office adds to every template of a cycle."""

    year: int
    deadline: dt.date
    issued_at: dt.datetime
    office_name: str = ""
    office_email: str = ""
    office_phone: str = ""


@dataclass(frozen=True)
class Annotation:
    """A cell to highlight in a feedback workbook, with the comment to attach."""

    cell: Cell
    message: str
    severity: Severity = Severity.ERROR


@dataclass
class Prefill:
    """Values to write into input cells (feedback workbooks) and last year's figures."""

    values: Mapping[str, Any] = field(default_factory=dict)
    tables: Mapping[str, Sequence[Mapping[str, Any]]] = field(default_factory=dict)
    justifications: Mapping[str, str] = field(default_factory=dict)
    prev: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class FeedbackSheet:
    """The "Kết quả kiểm tra" sheet of a feedback workbook."""

    title: str
    intro: str
    rows: Sequence[tuple[str, str, str, str]]  # (severity, where, message, rule/field)


def template_filename(form: Form, unit: Unit, year: int, suffix: str = "") -> str:
    """ASCII, code-based: ``2020_TN-VP_nam-dan-van-chinh-quyen.xlsx``."""
    base = f"{year}_{safe_filename(unit.code)}_{slug(form.short_title or form.id)}"
    return f"{base}{suffix}.xlsx"


def build_template(
    form: Form,
    unit: Unit,
    ctx: TemplateContext,
    *,
    prefill: Prefill | None = None,
    annotations: Sequence[Annotation] = (),
    feedback: FeedbackSheet | None = None,
) -> bytes:
    """Return the bytes of the unit's workbook; the same inputs always give the same bytes."""
    layout = build_layout(form)
    buffer = io.BytesIO()
    wb = new_workbook(buffer)
    writer = _Writer(form, layout, unit, ctx, wb, prefill or Prefill(), annotations)
    try:
        writer.write(feedback)
        wb.close()
    except TemplateBuildError:
        raise
    except Exception as err:  # xlsxwriter raises a handful of types for misuse
        raise TemplateBuildError(f"Không tạo được biểu mẫu cho {unit.code}: {err}") from err
    return buffer.getvalue()


def new_workbook(buffer: io.BytesIO) -> Workbook:
    """The xlsxwriter workbook every template and feedback workbook is written into."""
    return xlsxwriter.Workbook(buffer, {
        "in_memory": True, "strings_to_formulas": False, "strings_to_urls": False,
        "strings_to_numbers": False,
        "default_format_properties": {"font_name": FONT, "font_size": 12},
    })


class _Worksheet(Worksheet):
    """A worksheet that skips xlsxwriter's future-function expansion.

    Every formula this module writes is compiled from the rule language (IF, AND, OR, NOT, N, TRIM,
    IFERROR, MIN, MAX, ABS, SUMPRODUCT) or is one of a few fixed totals (SUM, COUNT, COUNTIFS): none of
    them needs an ``_xlfn.`` prefix, and xlsxwriter's ~30 regex substitutions per formula were most
    of the time spent building a template.
    """

    def _prepare_formula(self, formula: str, expand_future_functions: bool = False) -> str:
        return formula[1:] if formula.startswith("=") else formula


class _Writer:
    def __init__(
        self, form: Form, layout: Layout, unit: Unit, ctx: TemplateContext, wb: Workbook,
        prefill: Prefill, annotations: Sequence[Annotation],
    ) -> None:
        self.form, self.layout, self.unit, self.ctx, self.wb = form, layout, unit, ctx, wb
        self.prefill = prefill
        self.annotations = {(a.cell.sheet, a.cell.row, a.cell.col): a for a in annotations}
        self.fmt = _Formats(wb)
        self.compiled = _compiled_rules(form)

    # ---------------------------------------------------------------- top level
    def write(self, feedback: FeedbackSheet | None) -> None:
        if feedback is not None:
            self._feedback_sheet(feedback)
        self._instructions()
        for sheet in self.layout.sheets:
            if sheet.name == SHEET_CHECKS:
                self._check_sheet(sheet)
            elif self.form.rubric and sheet.name == self.form.rubric.sheet:
                self._rubric_sheet(sheet)
            else:
                self._section_sheet(sheet)
        self._lists_sheet()
        self._meta_sheet()
        self._names()
        self._properties()
        self.wb.worksheets()[0].activate()

    # ---------------------------------------------------------------- helpers
    def _sheet(self, name: str, widths: Sequence[float], landscape: bool = False) -> Worksheet:
        ws = self.wb.add_worksheet(name, worksheet_class=_Worksheet)
        for i, w in enumerate(widths):
            ws.set_column(i, i, w)
        ws.set_paper(9)
        if landscape:
            ws.set_landscape()
        else:
            ws.set_portrait()
        ws.set_margins(left=0.6, right=0.4, top=0.6, bottom=0.6)
        ws.fit_to_pages(1, 0)
        ws.center_horizontally()
        name = self.unit.name.replace("&", "&&")  # "&" starts a code in Excel headers and footers
        ws.set_footer(f"&L&\"{FONT}\"&9{name}&R&\"{FONT}\"&9Trang &P/&N")
        ws.hide_gridlines(1)
        return ws

    def _protect(self, ws: Worksheet) -> None:
        ws.protect("", {
            "select_locked_cells": True, "select_unlocked_cells": True, "format_columns": True,
            "format_rows": True,
        })

    def _subtitle(self) -> str:
        return f"Đơn vị: {self.unit.name} — Năm {self.ctx.year}"

    def _validate(self, ws: Worksheet, cell: Cell, options: dict[str, Any], what: str, last_col: int = -1) -> None:
        last = cell.col if last_col < 0 else last_col
        rc = ws.data_validation(cell.row, cell.col, cell.row, last, options)
        if rc != 0:
            raise TemplateBuildError(f"Không đặt được kiểm tra dữ liệu cho {what} (mã {rc})")

    def _input_format(self, cell: Cell, kind: Kind, places: int = 0, wrap: bool = False) -> Any:
        note = self.annotations.get((cell.sheet, cell.row, cell.col))
        return self.fmt.input(kind, places, wrap, flagged=note is not None)

    def _comment(self, ws: Worksheet, cell: Cell) -> None:
        note = self.annotations.get((cell.sheet, cell.row, cell.col))
        if note is not None:
            ws.write_comment(cell.row, cell.col, note.message[:2000], {
                "author": "danvan_xl", "x_scale": 2.4, "y_scale": 1.8, "font_name": FONT, "font_size": 10,
            })

    def _write_value(self, ws: Worksheet, cell: Cell, value: Any, fmt: Any) -> None:
        if value is None or value == "":
            ws.write_blank(cell.row, cell.col, None, fmt)
        elif value is NA or (isinstance(value, str) and value == NA_TEXT):
            ws.write_string(cell.row, cell.col, NA_TEXT, fmt)
        elif isinstance(value, bool):
            ws.write_string(cell.row, cell.col, YES if value else NO, fmt)
        elif isinstance(value, int | float):
            ws.write_number(cell.row, cell.col, value, fmt)
        elif isinstance(value, dt.datetime):
            ws.write_datetime(cell.row, cell.col, value, fmt)
        elif isinstance(value, dt.date):
            ws.write_datetime(cell.row, cell.col, dt.datetime(value.year, value.month, value.day), fmt)
        else:
            ws.write_string(cell.row, cell.col, str(value)[:32767], fmt)

    # ---------------------------------------------------------------- sheets
    def _instructions(self) -> None:
        ws = self._sheet(SHEET_INSTRUCTIONS, (4.0, 100.0))
        f, form, ctx = self.fmt, self.form, self.ctx
        start, end = form.period(ctx.year)
        sheets = ", ".join(s.name for s in form.sheets)
        lines: list[tuple[str, str]] = [
            ("title", "HƯỚNG DẪN ĐIỀN BIỂU MẪU"),
            ("center", f"{form.title} năm {ctx.year}"),
            ("center_bold", self.unit.name),
            ("blank", ""),
            ("text", f"Số liệu tính từ ngày {format_date_short(start)} đến ngày {format_date_short(end)}."),
            ("bold", f"Hạn gửi biểu mẫu: ngày {format_date_short(ctx.deadline)}."),
            ("blank", ""),
            ("step", f"1. Điền lần lượt các trang {sheets}. Chỉ nhập vào ô nền vàng; các ô khác đã được khoá."),
            ("step", "2. Ô số liệu: nhập số nguyên không âm (không gõ dấu chấm, dấu phẩy ngăn cách hàng nghìn). "
                     "Nếu chỉ tiêu không phát sinh ở đơn vị, gõ “không phát sinh”. Để trống nghĩa là chưa có "
                     "số liệu — ô trống không được hiểu là 0; nếu số liệu bằng 0 hãy gõ 0."),
            ("step", "3. Ô có mũi tên: bấm vào mũi tên để chọn trong danh sách."),
            ("step", "4. Ô nội dung: có thể dán văn bản từ Word (dán vào thanh công thức). Xuống dòng trong ô bằng Alt+Enter."),
            ("step", "5. Cột “Năm trước” (nền xám) là số liệu đơn vị đã báo cáo năm trước, chỉ để đối chiếu."),
            ("step", f"6. Xem trang {SHEET_CHECKS}: các dòng ở mức Lỗi phải “Đạt”. Với Cảnh báo, nếu số liệu "
                     "đúng thực tế thì ghi giải trình vào cột G. Ô số liệu liên quan được tô đỏ khi chưa đạt."),
            ("step", "7. Không đổi tên, thêm hoặc xoá trang; không chèn, xoá dòng hay cột. Có thể đổi tên tệp: "
                     "hệ thống nhận biết đơn vị theo nội dung bên trong tệp."),
            ("step", "8. Lưu tệp (Excel, LibreOffice hoặc WPS đều được, giữ định dạng .xlsx) và gửi lại qua thư "
                     f"điện tử cho {ctx.office_name or 'cơ quan tổng hợp'}"
                     + (f" ({ctx.office_email})" if ctx.office_email else "") + "."),
            ("blank", ""),
            ("legend_input", "Ô nền vàng: ô nhập số liệu."),
            ("legend_prefill", "Ô nền xám: thông tin điền sẵn, không sửa."),
            ("legend_error", "Ô nền đỏ: số liệu chưa khớp với quy tắc kiểm tra."),
            ("blank", ""),
            ("small", f"Liên hệ: {ctx.office_name}" + (f" — {ctx.office_phone}" if ctx.office_phone else "")),
            ("small", f"Mã biểu mẫu: {form.id}, phiên bản {form.version}, mã kiểm tra {form.short_hash}; "
                      f"đơn vị {self.unit.code}; phát hành ngày {format_date_short(ctx.issued_at.date())}."),
        ]
        styles = {
            "title": f.title, "center": f.center, "center_bold": f.center_bold, "text": f.text,
            "bold": f.bold, "step": f.text_wrap, "small": f.small, "blank": f.text,
            "legend_input": f.legend_input, "legend_prefill": f.legend_prefill, "legend_error": f.legend_error,
        }
        for r, (style, text) in enumerate(lines):
            if style.startswith("legend"):
                ws.write_blank(r, 0, None, styles[style])
                ws.write_string(r, 1, text, f.text)
            else:
                ws.write_string(r, 1, text, styles[style])
            if style == "step":
                ws.set_row(r, 16.5 * max(1, -(-len(text) // 105)))
        ws.set_row(0, 24.0)
        self._protect(ws)

    def _section_sheet(self, sheet: SheetLayout) -> None:
        ws = self._sheet(sheet.name, sheet.widths)
        f = self.fmt
        last = len(sheet.widths) - 1
        year = self.ctx.year
        for row in sheet.rows:
            if row.height:
                ws.set_row(row.row, row.height)
            if row.kind == "title":
                ws.merge_range(row.row, 0, row.row, last, sheet.title, f.title)
            elif row.kind == "subtitle":
                ws.merge_range(row.row, 0, row.row, last, self._subtitle(), f.subtitle)
            elif row.kind == "header":
                headers = (["STT", "Thông tin", "Nội dung", "", ""] if sheet.info else
                           ["STT", "Nội dung, chỉ tiêu", "Đơn vị tính", f"Năm {year}", f"Năm {year - 1}"])
                if sheet.info:
                    ws.write_string(row.row, 0, headers[0], f.header)
                    ws.write_string(row.row, 1, headers[1], f.header)
                    ws.merge_range(row.row, 2, row.row, last, headers[2], f.header)
                else:
                    for c, h in enumerate(headers):
                        ws.write_string(row.row, c, h, f.header)
            elif row.kind == "section":
                ws.write_string(row.row, 0, row.number, f.section)
                ws.merge_range(row.row, 1, row.row, last, row.text, f.section)
            elif row.kind == "label":
                ws.write_blank(row.row, 0, None, f.label)
                ws.merge_range(row.row, 1, row.row, last, row.text, f.label_italic)
            elif row.kind == "paragraph":
                self._paragraph(ws, self.layout.fields[row.field_id], last)
            elif row.kind == "scalar":
                self._scalar(ws, row, sheet)
            elif row.kind == "table_label":
                ws.write_blank(row.row, 0, None, f.label)
                ws.merge_range(row.row, 1, row.row, last, row.text, f.label_bold)
            elif row.kind == "table_header":
                table = self.form.fields[row.field_id]
                ws.write_string(row.row, 0, "STT", f.header)
                for i, col in enumerate(table.columns):
                    ws.write_string(row.row, 1 + i, col.label, f.header)
            elif row.kind == "table_row":
                self._table_row(ws, row)
        ws.freeze_panes(HEADER_ROW + 1, 0)
        ws.repeat_rows(HEADER_ROW, HEADER_ROW)
        self._protect(ws)

    def _paragraph(self, ws: Worksheet, pos: FieldPos, last: int) -> None:
        f = pos.field
        fmt = self._input_format(pos.cell, Kind.PARAGRAPH, wrap=True)
        value = self.prefill.values.get(f.id)
        ws.merge_range(pos.cell.row, 1, pos.cell.row, last, "", fmt)
        self._write_value(ws, pos.cell, value, fmt)
        ws.write_blank(pos.cell.row, 0, None, self.fmt.label)
        self._validate(ws, pos.cell, _validation(f, self.ctx.year, pos.cell), f.id, last_col=last)
        self._comment(ws, pos.cell)

    def _scalar(self, ws: Worksheet, row: Row, sheet: SheetLayout) -> None:
        pos = self.layout.fields[row.field_id]
        f = pos.field
        fmt = self.fmt
        ws.write_string(row.row, 0, row.number, fmt.center_cell)
        ws.write_string(row.row, 1, row.text, fmt.label_indent(f.indent))
        if not sheet.info:
            ws.write_string(row.row, 2, f.unit, fmt.center_cell)
        if f.prefill is not None:
            value = self._prefill_value(f)
            style = fmt.prefill_num if isinstance(value, int) else fmt.prefill
            if pos.merge_to > pos.cell.col:
                ws.merge_range(row.row, pos.cell.col, row.row, pos.merge_to, "", style)
            self._write_value(ws, pos.cell, value, style)
            return
        style = self._input_format(pos.cell, f.kind, f.places, wrap=f.kind == Kind.TEXT)
        if pos.merge_to > pos.cell.col:
            ws.merge_range(row.row, pos.cell.col, row.row, pos.merge_to, "", style)
        self._write_value(ws, pos.cell, self.prefill.values.get(f.id), style)
        self._validate(ws, pos.cell, _validation(f, self.ctx.year, pos.cell), f.id,
                       last_col=pos.merge_to if pos.merge_to > pos.cell.col else -1)
        self._comment(ws, pos.cell)
        if pos.prev_cell is not None:
            prev = self.prefill.prev.get(f.id)
            self._write_value(ws, pos.prev_cell, prev, fmt.prev(f.places if f.kind != Kind.COUNT else 0))

    def _prefill_value(self, f: Field) -> Any:
        start, end = self.form.period(self.ctx.year)
        return {
            "unit_name": self.unit.name, "unit_code": self.unit.code, "year": self.ctx.year,
            "period": f"Từ ngày {format_date_short(start)} đến ngày {format_date_short(end)}",
        }[f.prefill or ""]

    def _table_row(self, ws: Worksheet, row: Row) -> None:
        table = self.layout.tables[row.field_id]
        f = table.field
        ws.write_string(row.row, 0, row.text, self.fmt.center_cell)
        rows = self.prefill.tables.get(f.id, ())
        values = rows[row.table_index] if row.table_index < len(rows) else {}
        for i, col in enumerate(f.columns):
            cell = table.cell(row.table_index, i)
            style = self._input_format(cell, col.kind, wrap=True)
            self._write_value(ws, cell, values.get(col.id), style)
            self._comment(ws, cell)
        for i, col in enumerate(f.columns):
            first = table.cell(0, i)
            if row.table_index == 0:
                rc = ws.data_validation(first.row, first.col, first.row + f.rows - 1, first.col,
                                        _column_validation(col, self.ctx.year, first))
                if rc != 0:
                    raise TemplateBuildError(f"Không đặt được kiểm tra dữ liệu cho {f.id}.{col.id} (mã {rc})")

    def _rubric_sheet(self, sheet: SheetLayout) -> None:
        assert self.form.rubric is not None
        rubric = self.form.rubric
        ws = self._sheet(sheet.name, sheet.widths)
        f = self.fmt
        last = len(sheet.widths) - 1
        score_cells: list[str] = []
        for row in sheet.rows:
            if row.height:
                ws.set_row(row.row, row.height)
            if row.kind == "title":
                ws.merge_range(row.row, 0, row.row, last, sheet.title, f.title)
            elif row.kind == "subtitle":
                ws.merge_range(row.row, 0, row.row, last, self._subtitle(), f.subtitle)
            elif row.kind == "note":
                ws.merge_range(row.row, 0, row.row, last, row.text, f.note_red if rubric.sample and "MẪU" in row.text else f.note)
            elif row.kind == "header":
                for c, h in enumerate(["STT", "Tiêu chí", "Điểm tối đa", "Điểm tự chấm", "Minh chứng, ghi chú"]):
                    ws.write_string(row.row, c, h, f.header)
                ws.repeat_rows(row.row, row.row)
                ws.freeze_panes(row.row + 1, 0)
            elif row.kind == "criterion":
                criterion = next(c for c in rubric.criteria if c.score_field == row.field_id)
                score = self.layout.fields[criterion.score_field]
                evidence = self.layout.fields[criterion.evidence_field]
                ws.write_string(row.row, 0, row.number, f.center_cell)
                ws.write_string(row.row, 1, row.text, f.label_indent(0))
                ws.write_number(row.row, 2, criterion.max, f.prefill_dec)
                style = self._input_format(score.cell, Kind.DECIMAL, 2)
                self._write_value(ws, score.cell, self.prefill.values.get(score.field.id), style)
                self._validate(ws, score.cell, _validation(score.field, self.ctx.year, score.cell), score.field.id)
                self._comment(ws, score.cell)
                style = self._input_format(evidence.cell, Kind.TEXT, wrap=True)
                self._write_value(ws, evidence.cell, self.prefill.values.get(evidence.field.id), style)
                self._validate(ws, evidence.cell, _validation(evidence.field, self.ctx.year, evidence.cell), evidence.field.id)
                score_cells.append(score.cell.a1)
            elif row.kind == "total":
                pos = self.layout.fields[row.field_id]
                ws.write_blank(row.row, 0, None, f.label)
                ws.write_string(row.row, 1, "Tổng điểm", f.label_bold)
                ws.write_number(row.row, 2, rubric.max_total, f.prefill_dec)
                rng = f"{score_cells[0]}:{score_cells[-1]}"
                total = self._rubric_total()
                ws.write_formula(pos.cell.row, pos.cell.col, f'=IF(COUNT({rng})=0,"",SUM({rng}))',
                                 f.computed_dec, "" if total is None else total)
                ws.write_blank(row.row, 4, None, f.label)
            elif row.kind == "grade":
                pos = self.layout.fields[row.field_id]
                total_cell = self.layout.fields[rubric.total_field].cell.a1
                formula = f'"{rubric.grades[-1][1]}"'
                for minimum, label in reversed(rubric.grades[:-1]):
                    formula = f'IF({total_cell}>={expr.excel_number(minimum)},"{label}",{formula})'
                ws.write_blank(row.row, 0, None, f.label)
                ws.write_string(row.row, 1, "Xếp loại", f.label_bold)
                ws.write_blank(row.row, 2, None, f.label)
                total = self._rubric_total()
                ws.write_formula(pos.cell.row, pos.cell.col, f'=IF({total_cell}="","",{formula})', f.computed,
                                 "" if total is None else rubric.grade(total))
                ws.write_blank(row.row, 4, None, f.label)
        self._protect(ws)

    def _rubric_total(self) -> float | None:
        assert self.form.rubric is not None
        scores = [self.prefill.values.get(c.score_field) for c in self.form.rubric.criteria]
        numbers = [s for s in scores if isinstance(s, int | float) and not isinstance(s, bool)]
        return float(sum(numbers)) if numbers else None

    def _check_sheet(self, sheet: SheetLayout) -> None:
        ws = self._sheet(SHEET_CHECKS, CHECK_WIDTHS, landscape=True)
        f = self.fmt
        last = 6
        env = self._env()
        first = self.layout.check_first_row
        end = first + max(len(self.form.rules), 1) - 1
        for row in sheet.rows:
            if row.height:
                ws.set_row(row.row, row.height)
            if row.kind == "title":
                ws.merge_range(row.row, 0, row.row, last, sheet.title, f.title)
            elif row.kind == "subtitle":
                ws.merge_range(row.row, 0, row.row, last, self._subtitle(), f.subtitle)
            elif row.kind == "note":
                ws.merge_range(row.row, 0, row.row, last, row.text, f.note)
            elif row.kind == "check_summary":
                errors, warnings = self._summary_counts(env)
                status_rng = f"D{first + 1}:D{end + 1}"
                level_rng = f"C{first + 1}:C{end + 1}"
                ws.write_string(row.row, 1, "Số quy tắc mức Lỗi chưa đạt:", f.label_bold)
                ws.write_formula(row.row, 3, f'=COUNTIFS({level_rng},"Lỗi",{status_rng},"Chưa đạt")', f.computed_int, errors)
                ws.write_string(row.row + 1, 1, "Số cảnh báo chưa đạt:", f.label_bold)
                ws.write_formula(row.row + 1, 3, f'=COUNTIFS({level_rng},"Cảnh báo",{status_rng},"Chưa đạt")',
                                 f.computed_int, warnings)
            elif row.kind == "check_header":
                for c, h in enumerate(["Mã quy tắc", "Nội dung kiểm tra", "Mức độ", "Kết quả", "Vế trái",
                                       "Vế phải", "Giải trình (với cảnh báo)", "vp"]):
                    ws.write_string(row.row, c, h, f.header)
            elif row.kind == "check":
                self._check_row(ws, row, env)
        ws.set_column(7, 7, CHECK_WIDTHS[7], None, {"hidden": True})
        ws.freeze_panes(6, 0)
        ws.repeat_rows(5, 5)
        ws.print_area(0, 0, end, 6)
        self._conditional_formats()
        self._protect(ws)

    def _env(self) -> expr.Env:
        values: dict[str, Any] = {}
        for fid, value in self.prefill.values.items():
            f = self.form.fields.get(fid)
            if f is None:
                continue
            values[fid] = _env_value(f, value)
        for fid, pos in self.layout.fields.items():
            if pos.field.prefill is not None:
                values[fid] = _env_value(pos.field, self._prefill_value(pos.field))
        prev = {k: _env_value(self.form.fields[k], v) for k, v in self.prefill.prev.items() if k in self.form.fields}
        rows = {}
        for t in self.form.tables():
            key = t.columns[0].id
            rows[t.id] = sum(1 for r in self.prefill.tables.get(t.id, ()) if str(r.get(key) or "").strip())
        return expr.Env(values, prev, rows, self.form.constants)

    def _summary_counts(self, env: expr.Env) -> tuple[int, int]:
        errors = warnings = 0
        for rule in self.form.rules:
            if not rule.applies(self.unit.kind):
                continue
            if rules.evaluate(rule, env).outcome == rules.Outcome.VIOLATED:
                if rule.severity == Severity.ERROR:
                    errors += 1
                elif rule.severity == Severity.WARNING:
                    warnings += 1
        return errors, warnings

    def _check_row(self, ws: Worksheet, row: Row, env: expr.Env) -> None:
        rule = next(r for r in self.form.rules if r.id == row.field_id)
        pos = self.layout.rules[rule.id]
        f = self.fmt
        ws.write_string(row.row, 0, rule.id, f.small_cell)
        ws.write_string(row.row, 1, rule.title, f.label_indent(0))
        ws.write_string(row.row, 2, SEVERITY_VI[rule.severity], f.center_cell)
        if pos.justification is not None:
            style = self._input_format(pos.justification, Kind.TEXT, wrap=True)
            self._write_value(ws, pos.justification, self.prefill.justifications.get(rule.id), style)
            rc = ws.data_validation(pos.justification.row, pos.justification.col, pos.justification.row,
                                    pos.justification.col, {
                                        "validate": "length", "criteria": "<=", "value": 1000,
                                        "input_title": "Giải trình", "input_message":
                                        "Nếu số liệu đúng thực tế, ghi ngắn gọn lý do (tối đa 1.000 ký tự).",
                                        "error_title": "Giải trình quá dài", "error_message":
                                        "Giải trình tối đa 1.000 ký tự."})
            if rc != 0:
                raise TemplateBuildError(f"Không đặt được kiểm tra dữ liệu cho giải trình {rule.id}")
            self._comment(ws, pos.justification)
        else:
            ws.write_blank(row.row, 6, None, f.locked_cell)
        if not rule.applies(self.unit.kind):
            ws.write_string(row.row, 3, "Không áp dụng", f.center_cell)
            ws.write_blank(row.row, 4, None, f.locked_cell)
            ws.write_blank(row.row, 5, None, f.locked_cell)
            ws.write_boolean(row.row, 7, False, f.locked_cell)
            return
        compiled = self.compiled[rule.id]
        result = rules.evaluate(rule, env)
        left, right = _side_cached(rule.left, env), _side_cached(rule.right, env)
        ws.write_formula(row.row, 3, "=" + compiled.status, f.status, rules.OUTCOME_VI[result.outcome])
        ws.write_formula(row.row, 4, f'=IFERROR({compiled.left},"")', f.value_cell, left)
        ws.write_formula(row.row, 5, f'=IFERROR({compiled.right},"")', f.value_cell, right)
        ws.write_formula(row.row, 7, "=" + compiled.violation, f.locked_cell,
                         result.outcome == rules.Outcome.VIOLATED)

    def _conditional_formats(self) -> None:
        """Red fill on every input cell a violated rule reads (via the rule's vp_ name)."""
        targets: dict[str, list[tuple[str, str]]] = {}
        for rule in self.form.rules:
            if not rule.applies(self.unit.kind):
                continue
            for fid in rule.fields:
                if fid in self.layout.tables:
                    t = self.layout.tables[fid]
                    top, bottom = t.cell(0, 0), t.cell(t.field.rows - 1, len(t.field.columns) - 1)
                    rng = f"{top.a1}:{bottom.a1}"
                    targets.setdefault(t.sheet, []).append((rng, rule.id))
                elif fid in self.layout.fields:
                    cell = self.layout.fields[fid].cell
                    targets.setdefault(cell.sheet, []).append((cell.a1, rule.id))
        for sheet_name, items in targets.items():
            ws = self.wb.get_worksheet_by_name(sheet_name)
            assert ws is not None
            for rng, rule_id in items:
                ws.conditional_format(rng, {"type": "formula", "criteria": f"=vp_{rule_id}",
                                            "format": self.fmt.cf_error})

    def _feedback_sheet(self, feedback: FeedbackSheet) -> None:
        ws = self._sheet(SHEET_FEEDBACK, (12.0, 30.0, 70.0, 26.0), landscape=True)
        f = self.fmt
        ws.merge_range(0, 0, 0, 3, feedback.title, f.title)
        ws.merge_range(1, 0, 1, 3, self._subtitle(), f.subtitle)
        ws.set_row(2, 16.5 * max(2, -(-len(feedback.intro) // 130)))
        ws.merge_range(2, 0, 2, 3, feedback.intro, f.note)
        for c, h in enumerate(["Mức độ", "Vị trí", "Nội dung cần điều chỉnh", "Quy tắc / trường"]):
            ws.write_string(4, c, h, f.header)
        for i, (severity, where, message, ref) in enumerate(feedback.rows):
            r = 5 + i
            ws.set_row(r, 16.5 * max(1, -(-len(message) // 80)))
            ws.write_string(r, 0, severity, f.center_cell)
            ws.write_string(r, 1, where, f.label_indent(0))
            ws.write_string(r, 2, message, f.label_indent(0))
            ws.write_string(r, 3, ref, f.small_cell)
        ws.freeze_panes(5, 0)
        ws.repeat_rows(4, 4)
        self._protect(ws)

    def _lists_sheet(self) -> None:
        ws = self.wb.add_worksheet(SHEET_LISTS)
        for i, (name, items) in enumerate(_lists(self.form)):
            ws.write_string(0, i, name)
            for j, item in enumerate(items):
                ws.write_string(j + 1, i, item)
        ws.hide()
        self._protect(ws)

    def _meta_sheet(self) -> None:
        ws = self.wb.add_worksheet(SHEET_META)
        for r, (key, value) in enumerate(self._identity()):
            ws.write_string(r, 0, key)
            ws.write_string(r, 1, value)
        ws.set_column(0, 1, 30)
        ws.very_hidden()
        self._protect(ws)

    def _identity(self) -> list[tuple[str, str]]:
        kind = "feedback" if self.wb.get_worksheet_by_name(SHEET_FEEDBACK) is not None else "template"
        return [
            ("form_id", self.form.id), ("form_version", self.form.version),
            ("definition_hash", self.form.definition_hash), ("unit_code", self.unit.code),
            ("unit_name", self.unit.name), ("year", str(self.ctx.year)),
            ("issued_at", self.ctx.issued_at.isoformat(timespec="seconds")),
            ("generator", GENERATOR), ("kind", kind),
        ]

    def _names(self) -> None:
        for fid, pos in self.layout.fields.items():
            self._define(fid, "=" + pos.cell.ref)
        for fid, table in self.layout.tables.items():
            top, bottom = table.cell(0, 0), table.cell(table.field.rows - 1, len(table.field.columns) - 1)
            self._define(fid, f"={table.sheet}!{top.abs_a1}:{bottom.abs_a1}")
        for rule_id, pos in self.layout.rules.items():
            self._define(f"vp_{rule_id}", "=" + pos.violation.ref)
            if pos.justification is not None:
                self._define(f"giai_trinh_{rule_id}", "=" + pos.justification.ref)
        for i, (name, items) in enumerate(_lists(self.form)):
            col = col_letter(i)
            self._define(f"ds_{name}", f"={SHEET_LISTS}!${col}$2:${col}${len(items) + 1}")

    def _define(self, name: str, ref: str) -> None:
        if self.wb.define_name(name, ref) != 0:
            raise TemplateBuildError(f"Không đặt được tên ô '{name}'")

    def _properties(self) -> None:
        issued = self.ctx.issued_at
        self.wb.set_properties({
            "title": f"{self.form.title} năm {self.ctx.year} — {self.unit.name}",
            "subject": self.form.title, "author": self.ctx.office_name or "danvan_xl",
            "company": self.ctx.office_name, "category": "Báo cáo",
            "keywords": f"{self.form.id}, {self.unit.code}, {self.ctx.year}",
            "comments": f"Biểu mẫu {self.form.id} phiên bản {self.form.version} — sinh bởi {GENERATOR}",
            "created": issued,
        })
        for key, value in self._identity():
            self.wb.set_custom_property(PROP_PREFIX + key, value)


def _env_value(f: Field, value: Any) -> Any:
    if value is None or value == "":
        return None
    if value is NA or (isinstance(value, str) and value.strip().lower() == NA_TEXT):
        return NA
    if f.kind == Kind.DATE and isinstance(value, dt.date):
        return excel_serial(value)
    if f.is_numeric:
        return value if isinstance(value, int | float) and not isinstance(value, bool) else None
    return value


def excel_serial(value: dt.date) -> float:
    """Excel's serial number of a date (1900 system)."""
    return float((dt.date(value.year, value.month, value.day) - dt.date(1899, 12, 30)).days)


def _side_cached(side: rules.Side, env: expr.Env) -> Any:
    try:
        value = expr.evaluate(side.node, env)
    except expr.Undefined:
        return ""
    if value is None or value is NA:
        return 0 if side.type == expr.NUM else ""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


@functools.lru_cache(maxsize=16)
def _compiled_rules(form: Form) -> dict[str, rules.ExcelRule]:
    layout = build_layout(form)
    symbols = form.symbols()
    types = {k: s.type for k, s in symbols.items()}

    def prev(fid: str) -> str:
        pos = layout.fields[fid]
        if pos.prev_cell is None:
            raise TemplateBuildError(f"Trường '{fid}' không có cột năm trước để dùng prev()")
        return pos.prev_cell.ref

    refs = expr.CellRefs(
        value=lambda fid: layout.fields[fid].cell.ref, prev=prev,
        table_keys=lambda tid: layout.tables[tid].key_range, types=types, constants=form.constants,
    )
    return {rule.id: rules.to_excel(rule, refs) for rule in form.rules}


def _lists(form: Form) -> list[tuple[str, tuple[str, ...]]]:
    return [*sorted(form.choices.items()), ("co_khong", (YES, NO))]


def _na_formula(a1: str, condition: str) -> str:
    return (f'=IF(ISNUMBER({a1}),{condition},OR(TRIM({a1})="{NA_TEXT}",TRIM({a1})="kps"))')


def _validation(f: Field, year: int, cell: Cell) -> dict[str, Any]:
    """Data validation options for one input field (Vietnamese messages, stop alerts)."""
    return _kind_validation(f.kind, year, f.unit, f.hint, f.na, f.min, f.max, f.max_length, f.choices, cell.a1)


def _column_validation(col: Column, year: int, cell: Cell) -> dict[str, Any]:
    return _kind_validation(col.kind, year, "", "", False, 0.0, None, col.max_length, col.choices, cell.a1)


def _kind_validation(
    kind: Kind, year: int, unit: str, hint: str, na: bool, lo: float | None, hi: float | None,
    max_length: int, choices: str | None, a1: str,
) -> dict[str, Any]:
    """Options for xlsxwriter's data_validation; ``a1`` is the top-left cell the rule applies to
    (custom formulas are relative to it)."""
    na_note = " Gõ “không phát sinh” nếu không áp dụng." if na else ""
    blank_note = " Để trống nếu chưa có số liệu."
    opts: dict[str, Any]
    if kind == Kind.COUNT:
        unit_note = f" ({unit})" if unit else ""
        message = (hint + na_note) if hint else f"Nhập số nguyên ≥ {lo or 0:g}{unit_note}.{blank_note}{na_note}"
        if na:
            cond = f"AND({a1}>={expr.excel_number(lo or 0)},{a1}=INT({a1}))"
            opts = {"validate": "custom", "value": _na_formula(a1, cond)}
        else:
            opts = {"validate": "integer", "criteria": ">=", "value": int(lo or 0)}
        opts |= {"input_title": "Số nguyên không âm", "error_title": "Số liệu không hợp lệ",
                 "error_message": "Chỉ nhập số nguyên không âm" + (", hoặc “không phát sinh”." if na else ".")}
    elif kind in (Kind.DECIMAL, Kind.PERCENT):
        lo_v = lo if lo is not None else 0.0
        rng = f"từ {lo_v:g} đến {hi:g}" if hi is not None else f"≥ {lo_v:g}"
        unit_note = f" ({unit})" if unit else ""
        message = (hint + na_note) if hint else f"Nhập số {rng}{unit_note}; phần thập phân theo cách gõ của máy.{na_note}"
        if na:
            cond = f"AND({a1}>={expr.excel_number(lo_v)}" + (f",{a1}<={expr.excel_number(hi)})" if hi is not None else ")")
            opts = {"validate": "custom", "value": _na_formula(a1, cond)}
        elif hi is not None:
            opts = {"validate": "decimal", "criteria": "between", "minimum": lo_v, "maximum": hi}
        else:
            opts = {"validate": "decimal", "criteria": ">=", "value": lo_v}
        opts |= {"input_title": "Nhập số", "error_title": "Số liệu không hợp lệ",
                 "error_message": f"Chỉ nhập số {rng}" + (", hoặc “không phát sinh”." if na else ".")}
    elif kind in (Kind.TEXT, Kind.PARAGRAPH):
        message = hint or (f"Nhập nội dung, tối đa {format_int(max_length)} ký tự."
                           + (" Xuống dòng bằng Alt+Enter." if kind == Kind.PARAGRAPH else ""))
        opts = {"validate": "length", "criteria": "<=", "value": max_length,
                "input_title": "Nhập nội dung", "error_title": "Nội dung quá dài",
                "error_message": f"Nội dung tối đa {format_int(max_length)} ký tự."}
    elif kind in (Kind.CHOICE, Kind.YESNO):
        name = "co_khong" if kind == Kind.YESNO else choices
        message = hint or "Bấm mũi tên để chọn trong danh sách."
        opts = {"validate": "list", "source": f"=ds_{name}", "input_title": "Chọn trong danh sách",
                "error_title": "Giá trị không có trong danh sách",
                "error_message": "Chỉ chọn một giá trị trong danh sách (bấm mũi tên bên phải ô)."}
    elif kind == Kind.DATE:
        message = hint or "Nhập ngày dạng ngày/tháng/năm."
        opts = {"validate": "date", "criteria": "between",
                "minimum": dt.datetime(year - 1, 1, 1), "maximum": dt.datetime(year + 1, 12, 31),
                "input_title": "Nhập ngày", "error_title": "Ngày không hợp lệ",
                "error_message": f"Nhập một ngày trong khoảng năm {year - 1}–{year + 1}, dạng ngày/tháng/năm."}
    else:
        raise TemplateBuildError(f"Loại trường '{kind}' không có kiểm tra dữ liệu")
    opts["input_message"] = message
    opts["error_type"] = "stop"
    return opts


class _Formats:
    """Cell formats of one workbook, created on demand."""

    def __init__(self, wb: Workbook) -> None:
        self.wb = wb
        self._cache: dict[tuple, Any] = {}
        base = {"font_name": FONT, "font_size": 12, "valign": "vcenter"}
        border = {"border": 1, "border_color": "#7F7F7F"}
        add = wb.add_format
        self.title = add({**base, "bold": True, "font_size": 14, "align": "center", "text_wrap": True})
        self.subtitle = add({**base, "italic": True, "align": "center"})
        self.center = add({**base, "align": "center", "font_size": 13})
        self.center_bold = add({**base, "align": "center", "bold": True, "font_size": 13})
        self.text = add({**base})
        self.text_wrap = add({**base, "text_wrap": True, "valign": "top"})
        self.bold = add({**base, "bold": True})
        self.small = add({**base, "font_size": 10, "italic": True, "text_wrap": True})
        self.header = add({**base, **border, "bold": True, "align": "center", "text_wrap": True, "bg_color": "#D9E1F2"})
        self.section = add({**base, **border, "bold": True, "text_wrap": True, "bg_color": "#F2F2F2"})
        self.label = add({**base, **border, "text_wrap": True})
        self.label_italic = add({**base, **border, "italic": True, "text_wrap": True})
        self.label_bold = add({**base, **border, "bold": True, "text_wrap": True})
        self.center_cell = add({**base, **border, "align": "center", "text_wrap": True})
        self.small_cell = add({**base, **border, "font_size": 9, "text_wrap": True})
        self.locked_cell = add({**base, **border})
        self.value_cell = add({**base, **border, "align": "right", "num_format": "#,##0.##"})
        self.status = add({**base, **border, "align": "center", "bold": True})
        self.note = add({**base, "italic": True, "text_wrap": True, "font_size": 11})
        self.note_red = add({**base, "italic": True, "bold": True, "text_wrap": True, "font_size": 11, "font_color": "#C00000"})
        self.prefill = add({**base, **border, "bg_color": PREFILL_FILL, "text_wrap": True})
        self.prefill_num = add({**base, **border, "bg_color": PREFILL_FILL, "align": "left", "num_format": "0"})
        self.prefill_dec = add({**base, **border, "bg_color": PREFILL_FILL, "align": "center", "num_format": "0.##"})
        self.computed = add({**base, **border, "bold": True, "align": "center", "bg_color": PREFILL_FILL})
        self.computed_dec = add({**base, **border, "bold": True, "align": "center", "bg_color": PREFILL_FILL,
                                 "num_format": "0.##"})
        self.computed_int = add({**base, **border, "bold": True, "align": "center", "num_format": "0"})
        self.legend_input = add({**border, "bg_color": INPUT_FILL})
        self.legend_prefill = add({**border, "bg_color": PREFILL_FILL})
        self.legend_error = add({**border, "bg_color": ERROR_FILL})
        self.cf_error = add({"bg_color": ERROR_FILL, "font_color": "#9C0006"})
        self._base, self._border = base, border

    def label_indent(self, indent: int) -> Any:
        key = ("label", indent)
        if key not in self._cache:
            self._cache[key] = self.wb.add_format({**self._base, **self._border, "text_wrap": True, "indent": indent})
        return self._cache[key]

    def input(self, kind: Kind, places: int, wrap: bool, flagged: bool = False) -> Any:
        key = ("input", kind, places, wrap, flagged)
        if key not in self._cache:
            props = {**self._base, **self._border, "locked": False, "bg_color": ERROR_FILL if flagged else INPUT_FILL}
            if kind == Kind.COUNT:
                props |= {"num_format": "#,##0", "align": "right"}
            elif kind in (Kind.DECIMAL, Kind.PERCENT):
                props |= {"num_format": "#,##0." + "#" * max(places, 1), "align": "right"}
            elif kind == Kind.DATE:
                props |= {"num_format": "dd/mm/yyyy", "align": "center"}
            if wrap or kind == Kind.PARAGRAPH:
                props |= {"text_wrap": True, "valign": "top"}
            self._cache[key] = self.wb.add_format(props)
        return self._cache[key]

    def prev(self, places: int) -> Any:
        key = ("prev", places)
        if key not in self._cache:
            fmt = "#,##0" if places == 0 else "#,##0." + "#" * places
            self._cache[key] = self.wb.add_format({**self._base, **self._border, "bg_color": PREFILL_FILL,
                                                   "num_format": fmt, "align": "right"})
        return self._cache[key]
