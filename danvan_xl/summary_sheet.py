"""Writing the summary workbook's cells: checked writes, row heights, page setup, the shared
formats, and the context every sheet writer receives.

xlsxwriter reports misuse with return codes (-1/-2) instead of raising; :class:`Sheet` turns every
one into a :class:`TemplateBuildError` naming the cell (style.md §2.5).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from xlsxwriter.utility import xl_rowcol_to_cell
from xlsxwriter.workbook import Workbook
from xlsxwriter.worksheet import (
    Worksheet,
    re_dynamic_function,
)

from .errors import TemplateBuildError
from .summary_model import IN, OUT, Model, UnitRow
from .summary_styles import FONT, Styles
from .summary_text import header_footer, is_clean, line_count, line_count_cached, safe_text, vn_datetime
from .summary_xml import ERROR_CODES, LETTERS, Shared, XlsxWorksheet, escape, letters

_DIGITS = str.maketrans("123456789", "000000000")
LINE_PT = 12.9  # height of one wrapped line of 11-point Times New Roman, with leading
EXCEL_MAX_ROWS = 1_048_576

SHEET_COVER = "Bìa"
SHEET_TABLE = "Chỉ tiêu"
SHEET_CHARTS = "Biểu đồ"
SHEET_SCORES = "Chấm điểm"
SHEET_STATUS = "Tình hình nộp"
SHEET_FINDINGS = "Lỗi và cảnh báo"


class Sheet:
    """A worksheet whose every write is checked (xlsxwriter returns -1/-2 instead of raising).

    It also remembers how many wrapped lines each row needs: neither Excel nor LibreOffice
    re-fits row heights when opening a file, so :meth:`fit_rows` sets them from the text.

    On an :class:`XlsxWorksheet` the cells go to its pre-rendered store (``fast``); otherwise, and
    for what only xlsxwriter knows how to write (merged ranges, links, comments), to xlsxwriter.
    """

    def __init__(self, ws: Worksheet, *, fast: bool = True, shared: Shared | None = None) -> None:
        self.ws = ws
        self.name = ws.get_name()
        self.col_width: dict[int, float] = {}
        self.lines: dict[int, int] = {}
        self.fixed: set[int] = set()
        self.fast = fast and isinstance(ws, XlsxWorksheet)
        if self.fast:
            ws.shared = shared or Shared()  # one numbering of formats for the whole workbook
        self.k: dict[int, int] = {}  # id(format) → its number (Shared), for this sheet
        self._row: Row | None = None  # the row written last
        self._dynamic: dict[str, bool] = {}

    def number_of(self, fmt: Any) -> int:
        """``k`` of a format (see :class:`Shared`), noted as used on this sheet."""
        k = self.k[id(fmt)] = self.ws.shared.number(fmt)
        self.ws.used.add(k)
        return k

    def check(self, rc: int | None, row: int, col: int, what: str = "ô") -> None:
        """Raise on an xlsxwriter return code other than 0 (-1: outside the sheet, -2: bad argument)."""
        if rc not in (0, None):
            raise TemplateBuildError(
                f"Không ghi được {what} {self.name}!{xl_rowcol_to_cell(row, col)} vào bảng tổng hợp (mã lỗi {rc}).")

    def measure(self, row: int, text: str, width: float, fmt: Any) -> None:
        """Note how many wrapped lines ``text`` takes in a cell ``width`` characters wide."""
        if fmt is None or not fmt.text_wrap or len(text) * 1.45 <= width * 0.95 - 0.5:
            return  # not wrapped, or certainly one line
        scale = (fmt.font_size or 11) / 11 * (1.04 if fmt.bold else 1)
        n = line_count(text, width / scale) if len(text) > 200 else line_count_cached(text, width / scale)
        if n > self.lines.get(row, 1):
            self.lines[row] = n

    def dynamic(self, formula: str) -> bool:
        """Whether xlsxwriter would take ``formula`` for a dynamic-array formula (FILTER, UNIQUE…).

        Its test is a regex of some hundred function names (~6 µs); function names hold no digits,
        so formulas that differ only in their digits (row numbers) share the answer.
        """
        shape = formula.translate(_DIGITS)
        answer = self._dynamic.get(shape)
        if answer is None:
            answer = self._dynamic[shape] = re_dynamic_function.search(formula) is not None
        return answer

    def row(self, row: int) -> Row:
        """The writer of one row (hot loops take it once per row)."""
        current = self._row
        if current is None or current.row != row:
            current = self._row = Row(self, row) if self.fast else SlowRow(self, row)
        return current

    def direct(self, rc: int | None, row: int, col: int, what: str = "ô") -> None:
        """After xlsxwriter wrote a cell itself: check its return code, drop what the store held there."""
        self.check(rc, row, col, what)
        if self.fast:
            self.ws.forget(row, col, row, col)
            self._row = None

    def text(self, row: int, col: int, value: Any, fmt: Any = None) -> None:
        """Text, always as a string cell (never a formula, number or link), made safe first."""
        self.row(row).text(col, value, fmt)

    def num(self, row: int, col: int, value: float, fmt: Any = None) -> None:
        self.row(row).num(col, value, fmt)

    def blank(self, row: int, col: int, fmt: Any = None) -> None:
        self.row(row).blank(col, fmt)

    def maybe_num(self, row: int, col: int, value: float | None, fmt: Any) -> None:
        """A number, or a blank cell (same format) when there is none."""
        if value is None:
            self.row(row).blank(col, fmt)
        else:
            self.row(row).num(col, value, fmt)

    def formula(self, row: int, col: int, formula: str, fmt: Any, value: Any) -> None:
        """A live formula with its cached value (what readers that do not recalculate show)."""
        self.row(row).formula(col, formula, fmt, value)

    def datetime(self, row: int, col: int, value: dt.datetime, fmt: Any) -> None:
        if self.fast and fmt is not None:
            self.row(row).num(col, self.ws._convert_date_time(value), fmt)  # a date is its serial number
        else:
            self.direct(self.ws.write_datetime(row, col, value, fmt), row, col)

    def merge(self, first_row: int, first_col: int, last_row: int, last_col: int, text: str, fmt: Any) -> None:
        if first_row == last_row and first_col == last_col:
            self.text(first_row, first_col, text, fmt)
            return
        text = safe_text(text)
        self.check(self.ws.merge_range(first_row, first_col, last_row, last_col, text, fmt),
                   first_row, first_col, "vùng gộp")
        if self.fast:
            self.ws.forget(first_row, first_col, last_row, last_col)
            self._row = None
        if first_row == last_row:
            width = sum(self.col_width.get(c, 8.43) for c in range(first_col, last_col + 1))
            self.measure(first_row, text, width, fmt)

    def link(self, row: int, col: int, sheet: str, text: str, fmt: Any) -> None:
        self.direct(self.ws.write_url(row, col, f"internal:'{sheet}'!A1", fmt, safe_text(text)), row, col, "liên kết")

    def comment(self, row: int, col: int, text: str) -> None:
        self.check(self.ws.write_comment(row, col, safe_text(text)[:2000], {
            "author": "danvan_xl", "x_scale": 2.2, "y_scale": 1.6, "font_name": FONT, "font_size": 10,
        }), row, col, "ghi chú")

    def widths(self, widths: Sequence[float]) -> None:
        for i, w in enumerate(widths):
            self.check(self.ws.set_column(i, i, w), 0, i, "độ rộng cột")
            self.col_width[i] = w

    def set_row(self, row: int, height: float) -> None:
        """A fixed row height (titles); :meth:`fit_rows` leaves such rows alone."""
        self.check(self.ws.set_row(row, min(409, height)), row, 0, "chiều cao dòng")
        self.fixed.add(row)

    def fit_rows(self) -> None:
        """Set the height of every row whose wrapped text needs more than one line."""
        pixels: dict[int, int] = {}  # lines → height in pixels, as set_row() converts points
        for row in sorted(self.lines):
            if row not in self.fixed:
                n = self.lines[row]
                if n not in pixels:
                    pixels[n] = int(min(409, LINE_PT * n + 3) * 4.0 / 3.0 + 0.5)
                self.check(self.ws.set_row_pixels(row, pixels[n]), row, 0, "chiều cao dòng")

    def page(self, footer: str, *, fit_width: bool = True, header_rows: tuple[int, int] | None = None,
             gridlines: bool = True) -> None:
        """A4 landscape, fitted to the page width, repeated header rows, page numbers in the footer."""
        ws = self.ws
        ws.set_paper(9)
        ws.set_landscape()
        ws.set_margins(left=0.5, right=0.4, top=0.55, bottom=0.6)
        ws.center_horizontally()
        if fit_width:
            ws.fit_to_pages(1, 0)
        if header_rows is not None:
            ws.repeat_rows(*header_rows)
        ws.set_footer(f'&L&"{FONT}"&9{header_footer(footer)}&R&"{FONT}"&9Trang &P/&N')
        ws.hide_gridlines(1 if gridlines else 2)  # never print the grid; borders are drawn where they belong
        self.fit_rows()


class Row:
    """Writes the cells of one row into the sheet's store: each ``<c>`` element rendered now, with
    ``{k}`` for its style index (summary_xml), the sheet's dimensions kept as xlsxwriter keeps them."""

    __slots__ = ("cells", "clean", "fresh", "k", "r", "row", "sheet", "sst", "theirs", "ws")

    def __init__(self, sheet: Sheet, row: int) -> None:
        ws: XlsxWorksheet = sheet.ws  # type: ignore[assignment]
        if not 0 <= row < ws.xls_rowmax:
            sheet.check(-1, row, 0)
        self.sheet, self.ws, self.row, self.r, self.k = sheet, ws, row, str(row + 1), sheet.k
        self.cells = ws.cells.setdefault(row, {})
        self.theirs = ws.table.get(row)  # cells xlsxwriter holds in this row (a later write replaces them)
        self.sst = ws.str_table._get_shared_string_index
        self.clean = ws.shared.clean
        self.fresh = True  # the row is not yet inside the sheet's dimensions

    def _grow(self, col: int) -> None:
        """Check a cell is on the sheet and grow the sheet's dimensions to it, as xlsxwriter does."""
        ws, row = self.ws, self.row
        if not 0 <= col < ws.xls_colmax:
            self.sheet.check(-1, row, col)
        if ws.dim_rowmin is None:
            ws.dim_rowmin = ws.dim_rowmax = row
            ws.dim_colmin = ws.dim_colmax = col
        else:
            ws.dim_rowmin, ws.dim_rowmax = min(ws.dim_rowmin, row), max(ws.dim_rowmax, row)
            ws.dim_colmin, ws.dim_colmax = min(ws.dim_colmin, col), max(ws.dim_colmax, col)
        letters(ws.dim_colmax)  # LETTERS covers every column inside the dimensions
        self.fresh = False

    def _at(self, col: int, fmt: Any) -> str:
        """``<c r="…" s="{k}"`` of a cell about to be written, after the checks xlsxwriter makes."""
        ws = self.ws
        if self.fresh or not ws.dim_colmin <= col <= ws.dim_colmax:
            self._grow(col)
        if self.theirs and col in self.theirs:
            del self.theirs[col]
        k = self.k.get(id(fmt)) or self.sheet.number_of(fmt)
        return f'<c r="{LETTERS[col]}{self.r}" s="{{{k}}}"'

    def _direct(self, rc: int | None, col: int, what: str = "ô") -> None:
        """xlsxwriter wrote this cell itself (no format, or a value it must judge)."""
        self.sheet.direct(rc, self.row, col, what)
        self.theirs = self.ws.table.get(self.row)

    def text(self, col: int, value: Any, fmt: Any = None) -> None:
        """Text, always as a string cell (never a formula, number or link), made safe first."""
        if type(value) is not str:
            text = safe_text(value)
        elif value in self.clean:  # a short text met before (names, codes, labels)
            text = value
        elif is_clean(value):
            text = value
            if len(text) < 200:
                self.clean.add(text)
        else:
            text = safe_text(value)
        if fmt is None:
            self._direct(-1 if self.ws.write_string(self.row, col, text, fmt) else 0, col)
            return
        self.cells[col] = f'{self._at(col, fmt)} t="s"><v>{self.sst(text)}</v></c>'
        if fmt.text_wrap:
            width = self.sheet.col_width.get(col, 8.43)
            if len(text) * 1.45 > width * 0.95 - 0.5:  # else certainly one line (Sheet.measure's test)
                self.sheet.measure(self.row, text, width, fmt)

    def piece(self, col: int, text: str, fmt: Any, lines: int) -> None:
        """A piece of a text :func:`safe_text` already cleaned, taking ``lines`` wrapped lines in this
        column (:func:`chunk_lines` counted them): no second check, no second count."""
        self.cells[col] = f'{self._at(col, fmt)} t="s"><v>{self.sst(text)}</v></c>'
        sheet = self.sheet
        width = sheet.col_width.get(col, 8.43)
        if fmt.font_size not in (11, None) or fmt.bold:  # counted for 11-point regular text only
            sheet.measure(self.row, text, width, fmt)
        elif fmt.text_wrap and len(text) * 1.45 > width * 0.95 - 0.5 and lines > sheet.lines.get(self.row, 1):
            sheet.lines[self.row] = lines

    def num(self, col: int, value: float, fmt: Any = None) -> None:
        if fmt is None or not math.isfinite(value):  # xlsxwriter refuses NaN and infinities: let it say so
            self._direct(self.ws.write_number(self.row, col, value, fmt), col)
        else:
            self.cells[col] = f"{self._at(col, fmt)}><v>{number_text(value)}</v></c>"

    def nums(self, items: Sequence[tuple[int, float, Any]]) -> None:
        """Numbers as (column, value, format), columns increasing: :meth:`num` for a whole run of
        cells at once (the indicator table's hot loop), checks and dimensions done for the run."""
        if not items:
            return
        self._at(items[0][0], items[0][2])  # bounds and dimensions of the first and last cell
        self._at(items[-1][0], items[-1][2])
        cells, r, known, theirs, sheet = self.cells, self.r, self.k, self.theirs, self.sheet
        for col, value, fmt in items:
            if fmt is None:
                self.num(col, value, fmt)
                continue
            if type(value) is int and -9_007_199_254_740_992 < value < 9_007_199_254_740_992:
                text = str(value)
            elif math.isfinite(value):
                text = f"{value:.16G}"
            else:
                self.num(col, value, fmt)
                continue
            if theirs and col in theirs:
                del theirs[col]
            k = known.get(id(fmt)) or sheet.number_of(fmt)
            cells[col] = f'<c r="{LETTERS[col]}{r}" s="{{{k}}}"><v>{text}</v></c>'

    def blank(self, col: int, fmt: Any = None) -> None:
        if fmt is not None:  # an unformatted blank cell is no cell at all
            self.cells[col] = self._at(col, fmt) + "/>"

    def formula(self, col: int, formula: str, fmt: Any, value: Any) -> None:
        """A live formula with its cached value (what readers that do not recalculate show)."""
        if fmt is None or not formula or formula.startswith("{") or self.sheet.dynamic(formula):
            self._direct(self.ws.write_formula(self.row, col, formula, fmt, _cached(value)), col, "công thức")
            return
        kind, cached = _cached_xml(value)
        body = _braces(escape(self.ws._prepare_formula(formula)))
        self.cells[col] = f"{self._at(col, fmt)}{kind}><f>{body}</f><v>{cached}</v></c>"

    def row_formula(self, col: int, formula: RowFormula, fmt: Any, value: Any) -> None:
        """:meth:`formula` for this row of a formula written on many rows (checked and escaped once)."""
        if fmt is None or not formula.plain:
            self.formula(col, formula.at(self.row + 1), fmt, value)
            return
        kind, cached = _cached_xml(value)
        self.cells[col] = f"{self._at(col, fmt)}{kind}><f>{formula.xml.format(r=self.r)}</f><v>{cached}</v></c>"


class RowFormula:
    """A formula whose rows differ only in their row numbers: ``{r}`` in ``text`` is the 1-based row.

    Its XML (xlsxwriter drops the leading "=", escapes ``&<>``) and xlsxwriter's dynamic-array test
    are worked out once; braces are doubled twice, for this ``format`` and the style-index one.
    """

    def __init__(self, text: str) -> None:
        self.text = text
        parts = text.split("{r}")
        if parts[0].startswith("="):
            parts[0] = parts[0][1:]
        self.xml = "{r}".join(escape(p).replace("{", "{{{{").replace("}", "}}}}") for p in parts)
        self.plain = bool(text) and not text.startswith("{") and re_dynamic_function.search(self.at(1)) is None

    def at(self, row: int) -> str:
        return self.text.replace("{r}", str(row))


def _cached(value: Any) -> Any:
    """A formula's cached value as the summary stores it: "" for none, text made safe."""
    cached = "" if value is None else value
    return safe_text(cached) if isinstance(cached, str) else cached


def _cached_xml(value: Any) -> tuple[str, Any]:
    """(``t`` attribute, ``<v>`` content) of a formula's cached value, as xlsxwriter writes them."""
    cached = _cached(value)
    if isinstance(cached, bool):
        return ' t="b"', int(cached)
    if isinstance(cached, str):
        kind = "" if cached == "" else ' t="e"' if cached in ERROR_CODES else ' t="str"'
        return kind, _braces(escape(cached))
    return "", cached


class SlowRow:
    """The same writes through xlsxwriter's own cells (sheets whose cells xlsxwriter must see)."""

    def __init__(self, sheet: Sheet, row: int) -> None:
        self.sheet, self.ws, self.row = sheet, sheet.ws, row

    def piece(self, col: int, text: str, fmt: Any, lines: int) -> None:
        self.text(col, text, fmt)

    def text(self, col: int, value: Any, fmt: Any = None) -> None:
        text = value if type(value) is str and is_clean(value) else safe_text(value)
        if self.ws.write_string(self.row, col, text, fmt):
            self.sheet.check(-1, self.row, col)
        if fmt is not None and fmt.text_wrap:
            self.sheet.measure(self.row, text, self.sheet.col_width.get(col, 8.43), fmt)

    def num(self, col: int, value: float, fmt: Any = None) -> None:
        if self.ws.write_number(self.row, col, value, fmt):
            self.sheet.check(-1, self.row, col)

    def blank(self, col: int, fmt: Any = None) -> None:
        if self.ws.write_blank(self.row, col, None, fmt):
            self.sheet.check(-1, self.row, col)

    def formula(self, col: int, formula: str, fmt: Any, value: Any) -> None:
        self.sheet.check(self.ws.write_formula(self.row, col, formula, fmt, _cached(value)), self.row, col, "công thức")

    def row_formula(self, col: int, formula: RowFormula, fmt: Any, value: Any) -> None:
        self.formula(col, formula.at(self.row + 1), fmt, value)


def number_text(value: float) -> str:
    """A number as xlsxwriter writes it (``{:.16G}``); whole numbers below 2**53 the quick way."""
    if type(value) is int and -9_007_199_254_740_992 < value < 9_007_199_254_740_992:
        return str(value)
    return f"{value:.16G}"


def _braces(text: str) -> str:
    """Literal braces in a pre-rendered cell ("{}" marks where its style index goes)."""
    return text.replace("{", "{{").replace("}", "}}") if "{" in text or "}" in text else text


@dataclass
class Plan:
    """Where things land, so that sheets written later can refer to them."""

    table_rows: dict[str, int] = field(default_factory=dict)  # unit code → row on "Chỉ tiêu"
    table_cols: dict[str, int] = field(default_factory=dict)  # column key → column on "Chỉ tiêu"
    table_range: tuple[int, int] = (0, 0)  # first and last unit rows (block rows inside are excluded by SUMIFS)
    score_total: dict[str, str] = field(default_factory=dict)  # unit code → A1 of its self total
    status_range: str = ""
    late_range: str = ""
    findings_range: tuple[str, str] = ("", "")  # severity and handling columns
    sheets: list[tuple[str, str]] = field(default_factory=list)  # (name, what it holds) for the index


def col_range(col: int, rng: tuple[int, int], absolute: bool = False) -> str:
    a = xl_rowcol_to_cell(rng[0], col, absolute, absolute)
    b = xl_rowcol_to_cell(rng[1], col, absolute, absolute)
    return f"{a}:{b}"


@dataclass
class Context:
    """What every sheet writer shares: the model, the workbook and its formats, the plan, the footer."""

    model: Model
    wb: Workbook
    st: Styles
    plan: Plan = field(default_factory=Plan)
    footer: str = ""
    # the section sheets' texts already cut into pieces (summary_sections.section_plans), when another
    # core worked them out; asked for when the first section sheet is written
    section_plans: Callable[[], Mapping[str, Any] | None] | None = None

    @classmethod
    def create(cls, model: Model, wb: Workbook) -> Context:
        footer = f"{model.office.name} — Tổng hợp {model.form.short_title} năm {model.year}"
        return cls(model, wb, Styles(wb), Plan(), footer)

    def title(self, sh: Sheet, title: str, subtitle: str, last_col: int) -> None:
        """A sheet's title and subtitle, merged over its columns; the title row fits its text."""
        width = sum(sh.col_width.get(c, 8.43) for c in range(last_col + 1))
        sh.set_row(0, max(30, 19 * line_count(title, width * 0.8) + 8))
        sh.merge(0, 0, 0, last_col, title, self.st.title)
        sh.merge(1, 0, 1, last_col, subtitle, self.st.subtitle)

    def table_head(self, sh: Sheet, title: str, subtitle: str, head: Sequence[str], widths: Sequence[float]) -> None:
        """A list sheet's column widths, its title over the columns and the column headings (row 4)."""
        sh.widths(widths)
        self.title(sh, title, subtitle, len(head) - 1)
        for c, h in enumerate(head):
            sh.text(3, c, h, self.st.head)

    def as_of_line(self) -> str:
        return f"Số liệu tính đến {vn_datetime(self.model.as_of)}"

    def state_cells(self, sh: Sheet, row: int, col: int, r: UnitRow, *, with_inclusion: bool = True) -> None:
        """A unit's state ("Không lỗi", "Còn lỗi"…) and, by default, its "Tính vào tổng" cell."""
        fmt = self.st.status[r.state]
        if r.included and r.state != "accepted":
            fmt = self.st.status_included_with_errors
        w = sh.row(row)
        w.text(col, r.mark(), fmt)
        if with_inclusion:
            w.text(col + 1, IN if r.included else OUT, self.st.center)
