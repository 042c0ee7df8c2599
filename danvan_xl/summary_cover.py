"""The "Bìa" sheet: office, year, reporting window, as-of time, the counts (live formulas over the
status, table and findings sheets), the form's identity, and an index of the sheets.
"""

from __future__ import annotations

from collections.abc import Sequence

from . import __version__
from .status import STATE_VI
from .summary_model import IN
from .summary_sheet import SHEET_TABLE, Context, Sheet, col_range
from .summary_table import COL_INCL
from .summary_text import vn_datetime
from .textnorm import format_date_short, upper_vi


def write_cover(cx: Context, sh: Sheet) -> None:
    m, st = cx.model, cx.st
    sh.widths((3, 44, 62, 3))
    office = m.office
    sh.text(0, 1, upper_vi(office.parent) if office.parent else "", st.plain_center)
    sh.text(1, 1, office.header_name or upper_vi(office.name), st.plain_center_bold)
    sh.text(0, 2, "CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM", st.plain_center_bold)
    sh.text(1, 2, "Độc lập - Tự do - Hạnh phúc", st.plain_center_bold)
    sh.set_row(3, 46)
    sh.merge(3, 1, 3, 2, f"TỔNG HỢP {upper_vi(m.form.title)} NĂM {m.year}", st.title)
    sh.merge(4, 1, 4, 2, f"Địa bàn: {office.area}" if office.area else "", st.subtitle)
    start, end = m.form.period(m.year)
    rows = [
        ("Cơ quan tổng hợp", office.name),
        ("Năm báo cáo", str(m.year)),
        ("Kỳ báo cáo (thời gian chốt số liệu)", f"Từ ngày {format_date_short(start)} đến ngày {format_date_short(end)}"),
        ("Hạn nộp của các đơn vị", format_date_short(m.deadline)),
        ("Số liệu tính đến", vn_datetime(m.as_of)),
        ("Cách cộng số liệu", "Tính cả đơn vị còn lỗi (được đánh dấu)" if m.include_with_errors else
         "Chỉ cộng đơn vị đã nộp, không còn lỗi; đơn vị còn lỗi, chưa nộp không được cộng"),
    ]
    row = _pairs(cx, sh, 6, "Thông tin chung", rows)
    row = _cover_counts(cx, sh, row + 1)
    ident = [("Mã biểu mẫu", m.form.id), ("Phiên bản", m.form.version), ("Mã định danh (SHA-256)", m.form.definition_hash)]
    if m.form.rubric is not None and m.form.rubric.sample:
        ident.append(("Thang điểm", "Thang điểm MẪU — chưa phải tiêu chí chính thức của tỉnh"))
    row = _pairs(cx, sh, row + 1, "Biểu mẫu", ident)
    row = _index(cx, sh, row + 1)
    if m.unknown_units:
        sh.merge(row + 1, 1, row + 1, 2, "Có bản nộp của đơn vị không còn trong danh sách (không đưa vào tổng hợp): "
                 + ", ".join(m.unknown_units), st.note_red)
        row += 1
    sh.merge(row + 2, 1, row + 2, 2,
             f"Lập tự động bằng danvan_xl {__version__} từ sổ cái của không gian làm việc. Không sửa số liệu trực tiếp "
             "trong tệp này: sửa ở bản nộp của đơn vị, thu nhận lại rồi tổng hợp lại.", st.note)
    sh.page(cx.footer, gridlines=False)


def _pairs(cx: Context, sh: Sheet, row: int, heading: str, pairs: Sequence[tuple[str, str]]) -> int:
    st = cx.st
    sh.merge(row, 1, row, 2, heading, st.head)
    for i, (label, value) in enumerate(pairs, start=1):
        sh.text(row + i, 1, label, st.bold)
        sh.text(row + i, 2, value, st.text)
    return row + len(pairs) + 1


def _cover_counts(cx: Context, sh: Sheet, row: int) -> int:
    st, counts, plan = cx.st, cx.model.counts(), cx.plan
    status, late = plan.status_range, plan.late_range
    sev, handled = plan.findings_range
    incl = f"'{SHEET_TABLE}'!{col_range(COL_INCL, plan.table_range, True)}"
    items = [
        ("Số đơn vị phải báo cáo", f"=ROWS({status})", counts["expected"]),
        ("Đã nộp", f'=ROWS({status})-COUNTIF({status},"{STATE_VI["missing"]}")', counts["received"]),
        ("  trong đó: không lỗi", f'=COUNTIF({status},"{STATE_VI["accepted"]}")', counts["accepted"]),
        ("  còn lỗi", f'=COUNTIF({status},"{STATE_VI["with_errors"]}")', counts["with_errors"]),
        ("  có hai tệp khác nhau, chờ xử lý", f'=COUNTIF({status},"{STATE_VI["conflict"]}")', counts["conflict"]),
        ("Nộp muộn (sau hạn)", f'=COUNTIF({late},"Nộp muộn")', counts["late"]),
        ("Chưa nộp", f'=COUNTIF({status},"{STATE_VI["missing"]}")', counts["missing"]),
        ("Được tính vào số liệu tổng hợp", f'=COUNTIF({incl},"{IN}")', counts["included"]),
        ("Lỗi chưa sửa", f'=COUNTIFS({sev},"Lỗi",{handled},"Chưa xử lý")', counts["errors_open"]),
        ("Cảnh báo chưa giải trình", f'=COUNTIFS({sev},"Cảnh báo",{handled},"Chưa xử lý")', counts["warnings_open"]),
        ("Cảnh báo đã được giải trình", f'=COUNTIF({handled},"Đã giải trình")', counts["warnings_accepted"]),
    ]
    sh.merge(row, 1, row, 2, "Tình hình nộp và số liệu", st.head)
    for i, (label, formula, cached) in enumerate(items, start=1):
        sh.text(row + i, 1, label, st.bold if not label.startswith(" ") else st.text)
        sh.formula(row + i, 2, formula, st.count_center, cached)
    return row + len(items) + 1


def _index(cx: Context, sh: Sheet, row: int) -> int:
    st = cx.st
    sh.merge(row, 1, row, 2, "Các trang trong tệp", st.head)
    for i, (name, what) in enumerate(cx.plan.sheets[1:], start=1):
        sh.link(row + i, 1, name, name, st.link)
        sh.text(row + i, 2, what, st.text)
    return row + len(cx.plan.sheets)
