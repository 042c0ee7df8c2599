"""Where everything sits in a generated template: one layout per form, shared by every stage.

The template writer draws from it, the reader falls back to it when a program dropped the defined
names, the feedback writer highlights from it, and rule formulas reference it. Positions depend on
the form definition only (not on the unit), so any returned file can be read with its form.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

from .form import Field, Form, Section
from .vocabulary import SHEET_CHECKS, Kind

# Column widths (characters) of an input sheet: STT | label | unit | this year | last year.
INPUT_WIDTHS = (6.0, 46.0, 24.0, 18.0, 24.0)
INFO_WIDTHS = (6.0, 40.0, 24.0, 20.0, 28.0)
CHECK_WIDTHS = (22.0, 52.0, 11.0, 16.0, 12.0, 12.0, 40.0, 8.0)
LINE_HEIGHT = 16.5  # points per wrapped line of 12 pt Times New Roman
PARAGRAPH_HEIGHT = 132.0
HEADER_ROW = 3  # 0-based row of the column headers on section sheets
FIRST_ROW = 4


@functools.lru_cache(maxsize=4096)
def col_letter(col: int) -> str:
    s = ""
    col += 1
    while col:
        col, r = divmod(col - 1, 26)
        s = chr(65 + r) + s
    return s


@functools.lru_cache(maxsize=65536)
def _a1(row: int, col: int) -> str:
    return f"{col_letter(col)}{row + 1}"


@dataclass(frozen=True, slots=True)
class Cell:
    sheet: str
    row: int  # 0-based
    col: int  # 0-based

    @property
    def a1(self) -> str:
        return _a1(self.row, self.col)

    @property
    def abs_a1(self) -> str:
        return f"${col_letter(self.col)}${self.row + 1}"

    @property
    def ref(self) -> str:
        """Absolute reference usable in formulas and defined names."""
        return f"{self.sheet}!{self.abs_a1}"


@dataclass(frozen=True)
class FieldPos:
    field: Field
    cell: Cell
    label_cell: Cell
    label: str  # the exact text written in label_cell (structure check)
    merge_to: int = -1  # last column of a merged input area, -1 if not merged
    prev_cell: Cell | None = None


@dataclass(frozen=True)
class TablePos:
    field: Field
    label_row: int
    header_row: int
    first_row: int
    first_col: int  # column of the table's first column (after the STT column)

    @property
    def sheet(self) -> str:
        return self.field.sheet

    def cell(self, row_index: int, col_index: int) -> Cell:
        return Cell(self.field.sheet, self.first_row + row_index, self.first_col + col_index)

    @property
    def key_range(self) -> str:
        """Absolute range of the key (first) column, for rows() in live checks."""
        top = Cell(self.sheet, self.first_row, self.first_col)
        bottom = Cell(self.sheet, self.first_row + self.field.rows - 1, self.first_col)
        return f"{self.sheet}!{top.abs_a1}:{bottom.abs_a1}"


@dataclass(frozen=True)
class RulePos:
    rule_id: str
    row: int
    status: Cell
    left: Cell
    right: Cell
    justification: Cell | None
    violation: Cell  # hidden boolean, named vp_<rule_id>


@dataclass(frozen=True)
class Row:
    """A drawing instruction for the writer: what goes on one sheet row."""

    kind: str  # title, subtitle, header, section, label, scalar, paragraph, table_label, table_header, table_row, note
    row: int
    height: float | None = None
    text: str = ""
    number: str = ""
    field_id: str = ""
    table_index: int = -1


@dataclass(frozen=True)
class SheetLayout:
    name: str
    title: str
    widths: tuple[float, ...]
    rows: tuple[Row, ...]
    info: bool = False  # the general-information sheet (label | merged value)


@dataclass(frozen=True, eq=False)  # identity hash: layouts are built once per form and cached
class Layout:
    sheets: tuple[SheetLayout, ...]
    fields: dict[str, FieldPos]
    tables: dict[str, TablePos]
    rules: dict[str, RulePos]
    check_first_row: int
    rubric_total_row: int = -1
    rubric_first_row: int = -1
    section_sheets: tuple[str, ...] = field(default=())

    def input_cells(self) -> list[Cell]:
        cells = [p.cell for p in self.fields.values() if p.field.is_input]
        for t in self.tables.values():
            cells += [t.cell(r, c) for r in range(t.field.rows) for c in range(len(t.field.columns))]
        cells += [r.justification for r in self.rules.values() if r.justification]
        return cells


def _lines(text: str, width: float) -> int:
    chars = max(8, int(width * 1.05))
    return sum(max(1, math.ceil(len(part) / chars)) for part in text.split("\n"))


def label_text(f: Field) -> str:
    prefix = {1: "- ", 2: "+ "}.get(f.indent, "")
    return prefix + f.label


@functools.lru_cache(maxsize=16)
def build_layout(form: Form) -> Layout:
    """Compute every position of the form's template (cached per form object)."""
    fields: dict[str, FieldPos] = {}
    tables: dict[str, TablePos] = {}
    sheets: list[SheetLayout] = []
    rubric_total_row = rubric_first_row = -1
    for spec in form.sheets:
        sections = [s for s in form.sections if s.sheet == spec.name]
        if form.rubric and spec.name == form.rubric.sheet:
            layout, rubric_first_row, rubric_total_row = _rubric_sheet(form, spec.name, spec.title, fields)
            sheets.append(layout)
            continue
        info = any(s.id == "thong_tin" for s in sections) or spec.name == form.sheets[0].name
        sheets.append(_section_sheet(form, spec.name, spec.title, sections, fields, tables, info))
    check_sheet, rules, first = _check_sheet(form)
    sheets.append(check_sheet)
    return Layout(
        sheets=tuple(sheets), fields=fields, tables=tables, rules=rules, check_first_row=first,
        rubric_total_row=rubric_total_row, rubric_first_row=rubric_first_row,
        section_sheets=tuple(s.name for s in form.sheets),
    )


def _section_sheet(
    form: Form, name: str, title: str, sections: list[Section], fields: dict[str, FieldPos],
    tables: dict[str, TablePos], info: bool,
) -> SheetLayout:
    widths = INFO_WIDTHS if info else INPUT_WIDTHS
    text_width = sum(widths[1:])
    rows: list[Row] = [Row("title", 0, 24.0, title), Row("subtitle", 1), Row("header", HEADER_ROW, 33.0)]
    r = FIRST_ROW
    seq = 0
    for section in sections:
        if section.number or not info:
            rows.append(Row("section", r, LINE_HEIGHT * _lines(section.title, text_width),
                            section.title, number=section.number))
            r += 1
        for fid in section.fields:
            f = form.fields[fid]
            if f.kind == Kind.TABLE:
                rows.append(Row("table_label", r, LINE_HEIGHT * _lines(f.label, text_width), f.label, field_id=fid))
                tables[fid] = TablePos(f, r, r + 1, r + 2, 1)
                header_height = LINE_HEIGHT * max(
                    _lines(c.label, widths[min(i + 1, len(widths) - 1)]) for i, c in enumerate(f.columns))
                rows.append(Row("table_header", r + 1, header_height, field_id=fid))
                for i in range(f.rows):
                    rows.append(Row("table_row", r + 2 + i, None, str(i + 1), field_id=fid, table_index=i))
                r += 2 + f.rows
                continue
            label = label_text(f)
            if f.kind == Kind.PARAGRAPH:
                rows.append(Row("label", r, LINE_HEIGHT * _lines(label, text_width), label, field_id=fid))
                fields[fid] = FieldPos(f, Cell(name, r + 1, 1), Cell(name, r, 1), label, merge_to=len(widths) - 1)
                rows.append(Row("paragraph", r + 1, PARAGRAPH_HEIGHT, field_id=fid))
                r += 2
                continue
            seq += 1
            height = LINE_HEIGHT * _lines(label, widths[1])
            if info:
                cell = Cell(name, r, 2)
                fields[fid] = FieldPos(f, cell, Cell(name, r, 1), label, merge_to=len(widths) - 1)
            elif f.is_numeric:
                fields[fid] = FieldPos(f, Cell(name, r, 3), Cell(name, r, 1), label, prev_cell=Cell(name, r, 4))
            elif f.kind in (Kind.TEXT,):
                fields[fid] = FieldPos(f, Cell(name, r, 2), Cell(name, r, 1), label, merge_to=len(widths) - 1)
            else:  # choice, yes/no, date: this-year column, widened over last year's
                fields[fid] = FieldPos(f, Cell(name, r, 3), Cell(name, r, 1), label, merge_to=4)
            rows.append(Row("scalar", r, max(height, LINE_HEIGHT + 3), label, number=str(seq), field_id=fid))
            r += 1
    return SheetLayout(name, title, widths, tuple(rows), info=info)


def _rubric_sheet(form: Form, name: str, title: str, fields: dict[str, FieldPos]) -> tuple[SheetLayout, int, int]:
    assert form.rubric is not None
    rubric = form.rubric
    rows: list[Row] = [Row("title", 0, 24.0, title), Row("subtitle", 1)]
    r = 2
    if rubric.note:
        rows.append(Row("note", r, LINE_HEIGHT * _lines(rubric.note, sum(INPUT_WIDTHS)), rubric.note))
        r += 1
    rows.append(Row("header", r, 33.0))
    r += 1
    first = r
    for i, c in enumerate(rubric.criteria):
        score = form.fields[c.score_field]
        evidence = form.fields[c.evidence_field]
        fields[c.score_field] = FieldPos(score, Cell(name, r, 3), Cell(name, r, 1), c.title)
        fields[c.evidence_field] = FieldPos(evidence, Cell(name, r, 4), Cell(name, r, 1), c.title)
        rows.append(Row("criterion", r, max(LINE_HEIGHT * _lines(c.title, INPUT_WIDTHS[1]), 30.0),
                        c.title, number=str(i + 1), field_id=c.score_field))
        r += 1
    total_row = r
    fields[rubric.total_field] = FieldPos(form.fields[rubric.total_field], Cell(name, r, 3), Cell(name, r, 1), "Tổng điểm")
    rows.append(Row("total", r, 20.0, "Tổng điểm", field_id=rubric.total_field))
    r += 1
    fields[rubric.grade_field] = FieldPos(form.fields[rubric.grade_field], Cell(name, r, 3), Cell(name, r, 1), "Xếp loại")
    rows.append(Row("grade", r, 20.0, "Xếp loại", field_id=rubric.grade_field))
    r += 1
    bands = "; ".join(f"từ {g[0]:g} điểm: {g[1]}" for g in rubric.grades)
    rows.append(Row("note", r + 1, LINE_HEIGHT * 2, f"Thang xếp loại: {bands}. Tổng điểm và xếp loại tự tính, không nhập."))
    return SheetLayout(name, title, INPUT_WIDTHS, tuple(rows)), first, total_row


def _check_sheet(form: Form) -> tuple[SheetLayout, dict[str, RulePos], int]:
    name = SHEET_CHECKS
    rows: list[Row] = [
        Row("title", 0, 24.0, "KIỂM TRA SỐ LIỆU"), Row("subtitle", 1),
        Row("note", 2, LINE_HEIGHT * 3, (
            "Bảng này tự cập nhật khi nhập số liệu. “Chưa đạt” ở mức Lỗi phải sửa trước khi gửi; "
            "với Cảnh báo, nếu số liệu đúng thực tế thì ghi giải trình ở cột G. "
            "Ô số liệu liên quan tô đỏ khi chưa đạt."
        )),
        Row("check_summary", 3, 20.0),
        Row("check_header", 5, 33.0),
    ]
    rules: dict[str, RulePos] = {}
    first = 6
    for i, rule in enumerate(form.rules):
        r = first + i
        rules[rule.id] = RulePos(
            rule.id, r, status=Cell(name, r, 3), left=Cell(name, r, 4), right=Cell(name, r, 5),
            justification=Cell(name, r, 6) if rule.justifiable else None, violation=Cell(name, r, 7),
        )
        height = LINE_HEIGHT * max(_lines(rule.title, CHECK_WIDTHS[1]), 1) + 4
        rows.append(Row("check", r, height, rule.title, field_id=rule.id))
    return SheetLayout(name, "KIỂM TRA SỐ LIỆU", CHECK_WIDTHS, tuple(rows)), rules, first
