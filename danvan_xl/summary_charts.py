"""The "Biểu đồ" sheet: native charts (petitions by topic and by unit, self scores, submission
status), each fed by a small data table outside the printed area whose cells refer to the other
sheets (so the charts follow edits), one chart per printed page.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from xlsxwriter.utility import xl_col_to_name, xl_rowcol_to_cell

from .status import STATE_VI
from .summary_model import STATE_ORDER, UnitRow, self_scores
from .summary_sheet import FONT, SHEET_CHARTS, SHEET_SCORES, SHEET_TABLE, Context, Sheet
from .summary_text import num_text, safe_text, short_name, topic_name

CHART_MAX_UNITS = 40
# Fixed field ids of the bundled form (design.md §3.2) that the charts use; absent ids skip a chart.
PETITIONS = "don_tiep_nhan"
PETITION_TOPICS = ("don_btht_tdc", "don_tranh_chap_dat", "don_moi_truong", "don_khac")
DATA_COL = 15  # chart data tables start in column P, outside the printed area
CHART_WIDTH, CHART_HEIGHT, CHART_ROWS, CHART_SCALE = 940, 600, 32, 95  # one chart per printed page


# ------------------------------------------------------------------ Biểu đồ

def write_charts(cx: Context, sh: Sheet) -> None:
    m = cx.model
    sh.widths([10] * 14 + [3, 30, 12, 12, 12, 12])
    sh.ws.set_default_row(15)
    sh.text(0, 0, f"BIỂU ĐỒ TỔNG HỢP NĂM {m.year} — {cx.as_of_line()}", cx.st.title_left)
    sh.text(1, 0, f"Biểu đồ theo đơn vị chỉ gồm các đơn vị được tính vào tổng (cột “Tính vào tổng” ở trang "
                  f"“{SHEET_TABLE}”); số liệu của từng biểu đồ ở bên phải, từ cột {xl_col_to_name(DATA_COL)}.",
            cx.st.subtitle_left)
    charts = [_chart_topics, _chart_petitions, _chart_scores, _chart_status]
    row, breaks = 3, []
    for make in charts:
        used = make(cx, sh, row)  # rows taken: a chart page, a one-line note, or nothing
        row += used
        if used == CHART_ROWS:
            breaks.append(row)
    sh.page(cx.footer, fit_width=False, gridlines=False)
    sh.ws.set_print_scale(CHART_SCALE)
    sh.ws.set_h_pagebreaks(breaks[:-1])
    sh.ws.print_area(0, 0, max(row, 2), 13)


def _chart_rows(values: Callable[[UnitRow], float | None], rows: Iterable[UnitRow]) -> tuple[list[UnitRow], bool]:
    """Included units with a value; the largest CHART_MAX_UNITS when there are more."""
    chosen = [r for r in rows if r.included and values(r) is not None]
    if len(chosen) <= CHART_MAX_UNITS:
        return chosen, False
    ranked = sorted(enumerate(chosen), key=lambda p: (-(values(p[1]) or 0), p[0]))
    return [r for _i, r in ranked[:CHART_MAX_UNITS]], True


def _chart_data(cx: Context, sh: Sheet, row: int, title: str, headers: Sequence[str]) -> None:
    st = cx.st
    sh.text(row, DATA_COL, title, st.plain_bold)
    for j, h in enumerate(headers):
        sh.text(row + 1, DATA_COL + j, h, st.head)


def _chart_topics(cx: Context, sh: Sheet, row: int) -> int:
    fields = [f for f in PETITION_TOPICS if f in cx.plan.table_cols]
    if not fields:
        return 0

    def topics(r: UnitRow) -> float | None:
        nums = [r.number(f) for f in fields]
        return None if all(n is None for n in nums) else sum(n or 0 for n in nums)

    rows, top = _chart_rows(topics, cx.model.rows)
    if not rows:
        return _no_chart(cx, sh, row, "Chưa có đơn vị nào báo cáo số đơn theo nội dung.")
    names = [topic_name(cx.model.form.fields[f].label) for f in fields]
    _chart_data(cx, sh, row, "Số liệu biểu đồ: đơn theo nội dung", ["Đơn vị", *names])
    refs = [[_table_ref(cx, r, f) for f in fields] for r in rows]
    _unit_series_table(cx, sh, row + 2, rows, refs)
    title = "Đơn tiếp nhận theo nội dung, từng đơn vị" + (f" ({CHART_MAX_UNITS} đơn vị nhiều đơn nhất)" if top else "")
    chart = _bar_chart(cx, title, "Số đơn", stacked=True)
    colors = ("#2E75B6", "#C55A11", "#548235", "#7F7F7F")
    for j, name in enumerate(names):
        _series(chart, name, row + 2, len(rows), DATA_COL + 1 + j, colors[j % len(colors)], labels="inside")
    return _place(sh, chart, row)


def _chart_petitions(cx: Context, sh: Sheet, row: int) -> int:
    if PETITIONS not in cx.plan.table_cols:
        return 0
    rows, top = _chart_rows(lambda r: r.number(PETITIONS), cx.model.rows)
    if not rows:
        return _no_chart(cx, sh, row, "Chưa có đơn vị nào báo cáo số đơn tiếp nhận.")
    _chart_data(cx, sh, row, "Số liệu biểu đồ: số đơn tiếp nhận", ["Đơn vị", "Số đơn"])
    _unit_series_table(cx, sh, row + 2, rows, [[_table_ref(cx, r, PETITIONS)] for r in rows])
    title = "Số đơn tiếp nhận trong năm theo đơn vị" + (f" ({CHART_MAX_UNITS} đơn vị nhiều nhất)" if top else "")
    chart = _bar_chart(cx, title, "Số đơn")
    _series(chart, "Số đơn tiếp nhận", row + 2, len(rows), DATA_COL + 1, "#2E75B6")
    return _place(sh, chart, row)


def _chart_scores(cx: Context, sh: Sheet, row: int) -> int:
    rubric = cx.model.form.rubric
    if rubric is None:
        return 0
    rows, top = _chart_rows(lambda r: self_scores(cx.model.form, r)[1], cx.model.rows)
    if not rows:
        return _no_chart(cx, sh, row, "Chưa có đơn vị nào tự chấm điểm.")
    _chart_data(cx, sh, row, "Số liệu biểu đồ: điểm tự chấm", ["Đơn vị", "Tổng điểm tự chấm"])
    refs = [[(f"=N('{SHEET_SCORES}'!{cx.plan.score_total[r.unit.code]})", self_scores(cx.model.form, r)[1])]
            for r in rows]
    _unit_series_table(cx, sh, row + 2, rows, refs)
    title = "Tổng điểm tự chấm theo đơn vị" + (f" ({CHART_MAX_UNITS} đơn vị điểm cao nhất)" if top else "")
    chart = _bar_chart(cx, title, f"Điểm (tối đa {num_text(rubric.max_total)})", maximum=rubric.max_total)
    _series(chart, "Tổng điểm tự chấm", row + 2, len(rows), DATA_COL + 1, "#548235", num_format="General")
    return _place(sh, chart, row)


def _chart_status(cx: Context, sh: Sheet, row: int) -> int:
    st, counts = cx.st, cx.model.counts()
    _chart_data(cx, sh, row, "Số liệu biểu đồ: tình hình nộp", ["Tình trạng", "Số đơn vị"])
    colors = {"accepted": "#548235", "with_errors": "#C00000", "conflict": "#C65911", "missing": "#A6A6A6"}
    for i, state in enumerate(STATE_ORDER):
        sh.text(row + 2 + i, DATA_COL, STATE_VI[state], st.text)
        sh.formula(row + 2 + i, DATA_COL + 1, f'=COUNTIF({cx.plan.status_range},"{STATE_VI[state]}")',
                   st.number("count", 0), counts[state])
    chart = cx.wb.add_chart({"type": "column"})
    chart.add_series({
        "name": "Số đơn vị", "categories": [SHEET_CHARTS, row + 2, DATA_COL, row + 5, DATA_COL],
        "values": [SHEET_CHARTS, row + 2, DATA_COL + 1, row + 5, DATA_COL + 1],
        "points": [{"fill": {"color": colors[s]}} for s in STATE_ORDER],
        "data_labels": {"value": True, "font": {"name": FONT, "size": 11, "bold": True}},
    })
    late = f"; {counts['late']} đơn vị nộp muộn" if counts["late"] else ""
    _style_chart(chart, f"Tình hình nộp báo cáo ({counts['expected']} đơn vị phải nộp{late})")
    chart.set_y_axis(_axis("Số đơn vị"))
    chart.set_x_axis({"num_font": {"name": FONT, "size": 11}})
    chart.set_legend({"none": True})
    return _place(sh, chart, row)


def _table_ref(cx: Context, r: UnitRow, fid: str) -> tuple[str, float]:
    cell = xl_rowcol_to_cell(cx.plan.table_rows[r.unit.code], cx.plan.table_cols[fid])
    return f"=N('{SHEET_TABLE}'!{cell})", r.number(fid) or 0


def _unit_series_table(cx: Context, sh: Sheet, row: int, rows: Sequence[UnitRow],
                       refs: Sequence[Sequence[tuple[str, float | None]]]) -> None:
    st = cx.st
    for i, (r, cells) in enumerate(zip(rows, refs, strict=True)):
        sh.text(row + i, DATA_COL, short_name(r.unit.name), st.text)
        for j, (formula, cached) in enumerate(cells):
            sh.formula(row + i, DATA_COL + 1 + j, formula, st.number("decimal", 1), cached or 0)


def _bar_chart(cx: Context, title: str, axis: str, *, stacked: bool = False, maximum: float | None = None) -> Any:
    chart = cx.wb.add_chart({"type": "bar", "subtype": "stacked"} if stacked else {"type": "bar"})
    _style_chart(chart, title)
    chart.set_x_axis({**_axis(axis), **({"max": maximum, "min": 0} if maximum else {"min": 0})})
    # First unit at the top; "crossing: max" keeps the value axis at the bottom after reversing.
    chart.set_y_axis({"reverse": True, "crossing": "max", "num_font": {"name": FONT, "size": 10},
                      "major_gridlines": {"visible": False}})
    if stacked:
        chart.set_legend({"position": "bottom", "font": {"name": FONT, "size": 10}})
    else:
        chart.set_legend({"none": True})
    return chart


def _axis(name: str) -> dict[str, Any]:
    return {"name": name, "name_font": {"name": FONT, "size": 10, "bold": False},
            "num_font": {"name": FONT, "size": 9}, "num_format": "#,##0",
            "major_gridlines": {"visible": True, "line": {"color": "#D9D9D9"}}}


def _style_chart(chart: Any, title: str) -> None:
    chart.set_title({"name": safe_text(title), "name_font": {"name": FONT, "size": 13, "bold": True}})
    chart.set_chartarea({"border": {"color": "#BFBFBF"}})
    chart.set_size({"width": CHART_WIDTH, "height": CHART_HEIGHT})


def _series(chart: Any, name: str, row: int, n: int, col: int, color: str, *,
            labels: str = "outside_end", num_format: str = "#,##0;;;") -> None:
    font = {"name": FONT, "size": 9, **({"color": "#FFFFFF"} if labels == "inside" else {})}
    chart.add_series({
        "name": safe_text(name), "categories": [SHEET_CHARTS, row, DATA_COL, row + n - 1, DATA_COL],
        "values": [SHEET_CHARTS, row, col, row + n - 1, col], "fill": {"color": color}, "gap": 50,
        "data_labels": {"value": True, "num_format": num_format, "font": font,
                        "position": "center" if labels == "inside" else "outside_end"},
    })


def _place(sh: Sheet, chart: Any, row: int) -> int:
    sh.check(sh.ws.insert_chart(row, 0, chart, {"x_offset": 4, "y_offset": 4}), row, 0, "biểu đồ")
    return CHART_ROWS


def _no_chart(cx: Context, sh: Sheet, row: int, message: str) -> int:
    """No unit has the figures: one line says so instead of an empty chart."""
    sh.merge(row, 0, row, 8, message, cx.st.note)
    return 2
