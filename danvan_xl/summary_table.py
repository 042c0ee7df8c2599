"""The "Chỉ tiêu" sheet (one row per unit, block subtotals and a grand total as live formulas with
correct cached values) and the "So với năm …" sheet (change against last year, same units).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from xlsxwriter.utility import xl_col_to_name, xl_rowcol_to_cell

from .submission import Value
from .summary_model import DASH, IN, IndicatorColumn, Ratio, UnitRow, comparison, row_ratio
from .summary_sheet import FONT, SHEET_FINDINGS, Context, RowFormula, Sheet, col_range
from .summary_text import fit_words, header_footer, vn_datetime
from .vocabulary import NA_TEXT, ValueState

TABLE_FIXED = (("TT", 5), ("Đơn vị", 30), ("Mã", 11), ("Tình trạng", 10), ("Tính vào tổng", 8))
COL_NAME, COL_CODE, COL_STATE, COL_INCL = 1, 2, 3, 4
TABLE_HEAD = 2  # first header row of the indicator table (rows 0–1: title, subtitle)
TABLE_FIRST = TABLE_HEAD + 4  # grand total row; blocks and units follow
INDICATOR_WIDTH = 11
PRINT_SCALE = 72
PAGE_PX = 1030  # printable width of A4 landscape with the margins above, in pixels at 100 %


@dataclass(frozen=True)
class CellPlan:
    """Where an indicator column lands and how its unit cells are formatted."""

    col: int
    key: str
    column: IndicatorColumn
    number: dict[str, Any]
    na: dict[str, Any]
    ratio_formula: RowFormula | None = None


def write_table(cx: Context, sh: Sheet) -> None:
    m, st = cx.model, cx.st
    cols = m.columns
    first = len(TABLE_FIXED)
    last_col = first + len(cols) - 1 if cols else first - 1
    sh.widths([w for _h, w in TABLE_FIXED] + [INDICATOR_WIDTH] * len(cols))
    # Title in the repeated name column only, so it is never cut by a vertical page break.
    sh.set_row(0, 22)
    sh.merge(0, 0, 0, COL_NAME, f"CHỈ TIÊU NĂM {m.year}", st.title_left)
    sh.merge(1, 0, 1, COL_NAME, f"Tính đến {vn_datetime(m.as_of)}", st.subtitle_left)
    breaks = _page_breaks(cx, first)
    _table_header(cx, sh, first, breaks)
    cells = _cell_plans(cx, first)
    for i, col in enumerate(cols):
        cx.plan.table_cols[col.key] = first + i
    row = TABLE_FIRST + 1
    block_rows: list[int] = []
    unit_rows: list[int] = []
    for block in m.blocks:
        block_rows.append(row)
        start = row + 1
        for i, r in enumerate(block.rows, start=1):
            _unit_row(cx, sh, start + i - 1, i, r, cells)
            cx.plan.table_rows[r.unit.code] = start + i - 1
            unit_rows.append(start + i - 1)
        end = start + len(block.rows) - 1
        totals = [m.totals[c.key][0][len(block_rows) - 1] for c in cols]
        _total_row(cx, sh, row, f"{block.number}. {block.name}", block.rows, (start, end), "block", block.number, totals)
        row = end + 1
    all_rows = (min(unit_rows), max(unit_rows)) if unit_rows else (TABLE_FIRST + 1, TABLE_FIRST + 1)
    cx.plan.table_range = all_rows
    label = "TỔNG CỘNG" + (f" ({' + '.join(b.number for b in m.blocks)})" if len(m.blocks) > 1 else "")
    _grand_total_row(cx, sh, label, block_rows, all_rows)
    _table_notes(cx, sh, row + 1, (breaks[0] - 1) if breaks else last_col)
    sh.ws.freeze_panes(TABLE_FIRST, COL_NAME + 1)
    sh.page(cx.footer, fit_width=False, header_rows=(TABLE_HEAD, TABLE_FIRST - 1))
    # Many indicator columns: instead of shrinking them to one unreadable page width, each printed
    # page carries whole sections and repeats the unit names (fit-to-page would override the breaks).
    sh.ws.repeat_columns(0, COL_NAME)
    sh.ws.set_print_scale(PRINT_SCALE)
    sh.ws.set_v_pagebreaks(breaks)
    sh.ws.set_header(f'&C&"{FONT},Bold"&11{header_footer(f"Tổng hợp chỉ tiêu năm {m.year}")}')


def _table_header(cx: Context, sh: Sheet, first: int, breaks: Sequence[int]) -> None:
    st, cols = cx.st, cx.model.columns
    h = TABLE_HEAD
    for c, (text, _w) in enumerate(TABLE_FIXED):
        sh.merge(h, c, h + 3, c, text, st.head)
    cut = {b - first for b in breaks}
    for section, start, end in _runs([c.section for c in cols], cut):
        width = (end - start + 1) * INDICATOR_WIDTH
        title = f"{section}. {_section_title(cx, section)}" if section else ""
        if start > 0 and cols[start - 1].section == section:
            title = f"{section} (tiếp)"
        sh.merge(h, first + start, h, first + end, fit_words(title, width * 3.4), st.head)
    for i, col in enumerate(cols):
        c = first + i
        sh.text(h + 1, c, col.label, st.head)
        sh.text(h + 2, c, col.unit or "", st.head_small)
        sh.text(h + 3, c, col.key, st.head_code)


def _section_title(cx: Context, number: str) -> str:
    for s in cx.model.form.sections:
        if cx.model.numbers.get(s.id) == number:
            return s.title
    return ""


def _unit_row(cx: Context, sh: Sheet, row: int, index: int, r: UnitRow, cells: Sequence[CellPlan]) -> None:
    st = cx.st
    role = "unit" if r.included or r.state == "missing" else "excluded"
    w = sh.row(row)
    w.num(0, index, st.label(role, align="center"))
    w.text(COL_NAME, r.unit.name, st.label(role))
    w.text(COL_CODE, r.unit.code, st.code)
    cx.state_cells(sh, row, COL_STATE, r)
    values = r.submission.data.values if r.submission is not None else {}
    numbers = r.numbers
    plain = []
    for cell in cells:
        n = numbers.get(cell.key)
        if n is not None:
            plain.append((cell.col, n, cell.number[role]))
        else:
            _value_cell(cx, sh, row, cell, r, values.get(cell.key), role)
    w.nums(plain)


def _value_cell(cx: Context, sh: Sheet, row: int, cell: CellPlan, r: UnitRow, v: Value | None, role: str) -> None:
    """A cell that is not a plain number: a ratio formula, blank, "không phát sinh" or invalid."""
    col, column, w = cell.col, cell.column, sh.row(row)
    if column.ratio is not None:
        assert cell.ratio_formula is not None
        w.row_formula(col, cell.ratio_formula, cell.number[role], row_ratio(r, column.ratio))
    elif v is None or v.state in (ValueState.BLANK, ValueState.VALUE):
        w.blank(col, cell.number[role])
    elif v.state == ValueState.NA:
        w.text(col, NA_TEXT, cell.na[role])
    else:  # invalid: never shown as a number; the finding says why
        w.blank(col, cx.st.invalid)
        shown = f"“{v.raw}”" if v.raw else "(không đọc được)"
        sh.comment(row, col, f"Giá trị không hợp lệ {shown} — không đưa vào tổng hợp. Xem trang “{SHEET_FINDINGS}”.")


def _cell_plans(cx: Context, first: int) -> list[CellPlan]:
    """Per indicator column: its position, formats per row role and (for ratios) a row formula."""
    plans = []
    letters = {c.key: xl_col_to_name(first + i) for i, c in enumerate(cx.model.columns)}
    for i, column in enumerate(cx.model.columns):
        number = {role: cx.st.number(column.kind, column.places, role) for role in ("unit", "excluded")}
        na = {role: cx.st.na(role) for role in ("unit", "excluded")}
        template = None
        if column.ratio is not None:
            template = RowFormula(_ratio_formula(column.ratio, {f: f"{letters[f]}{{r}}" for f in column.fields}))
        plans.append(CellPlan(first + i, column.key, column, number, na, template))
    return plans


def _total_row(cx: Context, sh: Sheet, row: int, label: str, rows: Sequence[UnitRow], rng: tuple[int, int], role: str,
               number: str, totals: Sequence[Any]) -> None:
    st = cx.st
    sh.text(row, 0, number, st.label(role, align="center"))
    sh.text(row, COL_NAME, label, st.label(role))
    for c in (COL_CODE, COL_STATE, COL_INCL):
        sh.blank(row, c, st.label(role))
    included = sum(1 for r in rows if r.included)
    sh.text(row, COL_STATE, f"{included}/{len(rows)} đơn vị", st.fit(role))
    for i, (column, total) in enumerate(zip(cx.model.columns, totals, strict=True)):
        col = len(TABLE_FIXED) + i
        if not column.summable:
            sh.text(row, col, DASH, st.label(role, align="center"))
            continue
        fmt = st.number(column.kind, column.places, role)
        if column.ratio is not None:
            sh.formula(row, col, _ratio_total_formula(cx, column, rng), fmt, total)
        else:
            sh.formula(row, col, _sum_formula(col, rng), fmt, total)


def _grand_total_row(cx: Context, sh: Sheet, label: str, block_rows: Sequence[int], all_rows: tuple[int, int]) -> None:
    st, row = cx.st, TABLE_FIRST
    sh.blank(row, 0, st.label("total"))
    sh.text(row, COL_NAME, label, st.label("total"))
    sh.blank(row, COL_CODE, st.label("total"))
    rows = cx.model.rows
    sh.text(row, COL_STATE, f"{sum(1 for r in rows if r.included)}/{len(rows)} đơn vị", st.fit("total"))
    sh.blank(row, COL_INCL, st.label("total"))
    for i, column in enumerate(cx.model.columns):
        col = len(TABLE_FIXED) + i
        total = cx.model.totals[column.key][1]
        if not column.summable:
            sh.text(row, col, DASH, st.label("total", align="center"))
            sh.comment(row, col, _not_summed_note(column))
            continue
        fmt = st.number(column.kind, column.places, "total")
        if column.ratio is not None:
            formula = _ratio_total_formula(cx, column, all_rows)
        else:
            formula = _grand_formula([xl_rowcol_to_cell(r, col) for r in block_rows])
        sh.formula(row, col, formula, fmt, total)


def _ratio_total_formula(cx: Context, column: IndicatorColumn, rng: tuple[int, int]) -> str:
    assert column.ratio is not None
    ratio_col = cx.plan.table_cols[column.key]

    def part(fids: tuple[str, ...]) -> str:
        return "+".join(
            f'SUMIFS({col_range(cx.plan.table_cols[f], rng)},{col_range(COL_INCL, rng, True)},"{IN}",'
            f'{col_range(ratio_col, rng)},">=0")' for f in fids)

    den = part(column.ratio.denominator)
    return f'=IF(({den})=0,"",({part(column.ratio.numerator)})/({den}))'


def _table_notes(cx: Context, sh: Sheet, row: int, last_col: int) -> None:
    m = cx.model
    notes = [
        "Ghi chú:",
        f"- Cột “Tính vào tổng”: chỉ các đơn vị ghi “{IN}” được cộng vào số của khối và tổng cộng (công thức SUMIFS). "
        + ("Theo yêu cầu, đã tính cả đơn vị còn lỗi (ô tình trạng tô vàng)." if m.include_with_errors else
           "Đơn vị còn lỗi hoặc gửi hai tệp khác nhau không được cộng (chữ xám nghiêng) cho đến khi sửa xong."),
        "- “Chưa nộp”: đơn vị chưa gửi báo cáo; các ô để trống, không phải số 0.",
        f"- Ô trống: đơn vị không ghi số liệu; “{NA_TEXT}”: đơn vị ghi không phát sinh. Cả hai đều không được tính là 0.",
        f"- “{DASH}”: chỉ tiêu không cộng giữa các đơn vị vì một đơn, một lượt tiếp có thể được nhiều đơn vị "
        "cùng báo cáo (chuyển đơn, phối hợp tiếp dân) — cộng lại sẽ tính trùng; tỷ lệ do đơn vị tự nhập không cộng, "
        "không lấy trung bình.",
        "- Các tỷ lệ (%) được tính lại từ số liệu đếm: tổng tử số chia tổng mẫu số của các đơn vị có đủ số liệu.",
        f"- Ô tô đỏ nhạt: giá trị không hợp lệ, không đưa vào tổng hợp; xem trang “{SHEET_FINDINGS}”.",
    ]
    for i, text in enumerate(notes):
        sh.merge(row + i, 0, row + i, max(last_col, COL_INCL + 4), text, cx.st.note)


def _page_breaks(cx: Context, first: int) -> list[int]:
    """Vertical page breaks so that every printed page fits the width and sections stay whole
    where they can (a section wider than a page continues on the next one)."""
    capacity = PAGE_PX * 100 / PRINT_SCALE * 0.95
    repeated = sum(_px(w) for _h, w in TABLE_FIXED[: COL_NAME + 1])
    used = sum(_px(w) for _h, w in TABLE_FIXED)
    col_px = _px(INDICATOR_WIDTH)
    breaks: list[int] = []
    for _section, start, end in _runs([c.section for c in cx.model.columns]):
        width = (end - start + 1) * col_px
        fresh = repeated + width <= capacity or capacity - used < 4 * col_px
        if used + width > capacity and used > repeated and fresh:
            breaks.append(first + start)
            used = repeated
        for i in range(start, end + 1):
            if used + col_px > capacity:
                breaks.append(first + i)
                used = repeated
            used += col_px
    return sorted(set(breaks))


# ------------------------------------------------------------------ So với năm trước

def write_comparison(cx: Context, sh: Sheet) -> None:
    m, st = cx.model, cx.st
    head = ["TT", "Mục", "Chỉ tiêu", "Đơn vị tính", f"Năm {m.year - 1}", f"Năm {m.year}", "Tăng (+), giảm (−)",
            "Tỷ lệ tăng, giảm", "Số đơn vị so sánh"]
    cx.table_head(sh, f"SO SÁNH VỚI NĂM {m.year - 1}",
                  f"Chỉ so sánh trên cùng các đơn vị được tính vào tổng và có số liệu cả hai năm — {cx.as_of_line()}",
                  head, (5, 12, 48, 10, 13, 13, 14, 13, 11))
    row = 4
    if not m.prev:
        sh.merge(row, 0, row, len(head) - 1,
                 f"Sổ cái chưa có số liệu năm {m.year - 1} của biểu mẫu này nên chưa so sánh được. "
                 f"Khi thu nhận báo cáo năm {m.year - 1} vào cùng không gian làm việc, bảng này sẽ được lập.", st.text)
        row += 1
    else:
        for i, col in enumerate([c for c in m.columns if c.summable], start=1):
            _compare_row(cx, sh, row, i, col)
            row += 1
    skipped = [c.label for c in m.columns if not c.summable]
    if skipped:
        sh.merge(row + 1, 0, row + 1, len(head) - 1,
                 "Không so sánh ở cấp huyện các chỉ tiêu không cộng được giữa các đơn vị: " + "; ".join(skipped) + ".",
                 st.note)
    sh.ws.freeze_panes(4, 0)
    sh.page(cx.footer, header_rows=(3, 3))


def _compare_row(cx: Context, sh: Sheet, row: int, index: int, col: IndicatorColumn) -> None:
    st = cx.st
    old, new, n = comparison(cx.model, col)
    kind, places = col.kind, col.places
    sh.num(row, 0, index, st.center)
    sh.text(row, 1, col.section, st.center)
    sh.text(row, 2, col.label, st.text)
    sh.text(row, 3, col.unit or "", st.center)
    for c, value in ((4, old), (5, new)):
        if value is None:
            sh.blank(row, c, st.number(kind, places))
        else:
            sh.num(row, c, value, st.number(kind, places))
    e, f = xl_rowcol_to_cell(row, 4), xl_rowcol_to_cell(row, 5)
    change = None if old is None or new is None else new - old
    sh.formula(row, 6, f'=IF(COUNT({e},{f})<2,"",{f}-{e})', st.signed(kind, places), change)
    if col.ratio is None:
        rel = None if change is None or not old else change / old
        sh.formula(row, 7, f'=IF(OR(COUNT({e},{f})<2,N({e})=0),"",({f}-{e})/{e})', st.signed("ratio", 1), rel)
    else:
        sh.text(row, 7, "(điểm %)", st.center)
    sh.num(row, 8, n, st.number("count", 0))


def _sum_formula(col: int, rng: tuple[int, int]) -> str:
    """Sum of the included units' numbers; "không phát sinh" or blank when there is no number."""
    values = col_range(col, rng)
    incl = col_range(COL_INCL, rng, True)
    return (f'=IF(SUMPRODUCT(--({incl}="{IN}"),--ISNUMBER({values}))>0,SUMIFS({values},{incl},"{IN}"),'
            f'IF(COUNTIFS({incl},"{IN}",{values},"{NA_TEXT}")>0,"{NA_TEXT}",""))')


def _grand_formula(cells: Sequence[str]) -> str:
    """Grand total = sum of the block subtotals (which may be numbers, "không phát sinh" or blank)."""
    if not cells:
        return '=""'
    joined = ",".join(cells)
    na = "+".join(f'COUNTIF({c},"{NA_TEXT}")' for c in cells)
    return f'=IF(COUNT({joined})>0,SUM({joined}),IF({na}>0,"{NA_TEXT}",""))'


def _ratio_formula(ratio: Ratio, refs: Mapping[str, str]) -> str:
    parts = [refs[f] for f in dict.fromkeys(ratio.numerator + ratio.denominator)]
    den = "+".join(refs[f] for f in ratio.denominator)
    num = "+".join(refs[f] for f in ratio.numerator)
    checks = ",".join(f"ISNUMBER({p})" for p in parts)
    return f'=IF(AND({checks}),IF(({den})>0,({num})/({den}),""),"")'


def _not_summed_note(column: IndicatorColumn) -> str:
    if column.kind == "percent":
        return "Tỷ lệ do từng đơn vị tự nhập: không cộng, không lấy trung bình."
    return ("Không cộng giữa các đơn vị: cùng một đơn, một lượt tiếp có thể được nhiều đơn vị báo cáo "
            "(chuyển đơn, phối hợp), cộng lại sẽ tính trùng.")


def _runs(values: Sequence[str], cut: Iterable[int] = ()) -> list[tuple[str, int, int]]:
    """Consecutive equal values as (value, first index, last index); a run also ends before ``cut``."""
    cuts = set(cut)
    out: list[tuple[str, int, int]] = []
    for i, v in enumerate(values):
        if out and out[-1][0] == v and i not in cuts:
            out[-1] = (v, out[-1][1], i)
        else:
            out.append((v, i, i))
    return out


def _px(width: float) -> int:
    """Column width in pixels as Excel computes it for the default font (xlsxwriter's rule)."""
    return int(width * 7 + 0.5) + 5 if width >= 1 else int(width * 12 + 0.5)
