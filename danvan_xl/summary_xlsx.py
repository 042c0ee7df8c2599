"""Render the summary model as the workbook: which sheets, in which order, written in which order
(sheets that others refer to first), and the document properties that identify the file.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Mapping
from typing import Any

from . import __version__
from .errors import TemplateBuildError
from .summary_charts import write_charts
from .summary_cover import write_cover
from .summary_lists import write_findings, write_models, write_scores, write_status
from .summary_model import Model
from .summary_package import SummaryWorkbook
from .summary_sections import paragraph_fields, write_section
from .summary_sheet import (
    FONT,
    SHEET_CHARTS,
    SHEET_COVER,
    SHEET_FINDINGS,
    SHEET_SCORES,
    SHEET_STATUS,
    SHEET_TABLE,
    Context,
    Sheet,
)
from .summary_table import write_comparison, write_table
from .summary_text import table_sheet_name, unique_sheet_name
from .summary_xml import Shared, XlsxWorksheet, no_cyclic_gc

Writer = Callable[[Context, Sheet], None]


def render_xlsx(model: Model, section_plans: Callable[[], Mapping[str, Any] | None] | None = None) -> bytes:
    """Render the model as the summary workbook (deterministic: ``created`` is the as-of time).

    :param section_plans: gives ``summary_sections.section_plans(model)`` worked out elsewhere (or
        None, and then each section sheet works out its own); the bytes are the same either way.
    """
    wb = SummaryWorkbook(io.BytesIO(), {
        "in_memory": True, "strings_to_formulas": False, "strings_to_urls": False, "strings_to_numbers": False,
        "default_format_properties": {"font_name": FONT, "font_size": 11},
    })
    try:
        with no_cyclic_gc():
            cx = Context.create(model, wb)
            cx.section_plans = section_plans
            _write(cx)
            wb.close()
            return wb.package()
    except TemplateBuildError:
        raise
    except Exception as err:  # xlsxwriter raises a handful of types for misuse
        raise TemplateBuildError(f"Không tạo được bảng tổng hợp: {err}") from err
    finally:
        wb.discard()


def _write(cx: Context) -> None:
    order = _sheet_order(cx.model)
    # The charts' data tables stay in xlsxwriter's own cells: it copies them into the charts' caches.
    shared = Shared()
    sheets = {name: Sheet(cx.wb.add_worksheet(name, worksheet_class=XlsxWorksheet), fast=name != SHEET_CHARTS,
                          shared=shared) for name, _what, _fn in order}
    cx.plan.sheets = [(name, what) for name, what, _fn in order]
    for name, _what, fn in order:  # dependencies first; the cover and charts read the plan
        if fn is not None:
            fn(cx, sheets[name])
    write_cover(cx, sheets[SHEET_COVER])
    write_charts(cx, sheets[SHEET_CHARTS])
    sheets[SHEET_COVER].ws.activate()
    _properties(cx)


def _sheet_order(m: Model) -> list[tuple[str, str, Writer | None]]:
    """(sheet name, what it holds, its writer) in workbook order; the cover and charts have none here."""
    prev_name = f"So với năm {m.year - 1}"
    sections = [s for s in m.form.sections if paragraph_fields(m.form, s)]
    tables = list(m.form.tables())
    order: list[tuple[str, str, Writer | None]] = [
        (SHEET_COVER, "thông tin chung, số lượng, cách tổng hợp", None),
        (SHEET_TABLE, "số liệu từng đơn vị, cộng khối và tổng cộng", write_table),
        (SHEET_CHARTS, "biểu đồ đơn thư, điểm tự chấm, tình hình nộp", None),
        (prev_name, f"thay đổi so với năm {m.year - 1}, trên cùng các đơn vị", write_comparison),
    ]
    if m.form.rubric is not None:
        order.append((SHEET_SCORES, "điểm tự chấm, cột điểm thẩm định để Văn phòng nhập", write_scores))
    names = {SHEET_COVER.lower(), SHEET_TABLE.lower(), SHEET_CHARTS.lower(), prev_name.lower(),
             SHEET_SCORES.lower(), SHEET_STATUS.lower(), SHEET_FINDINGS.lower()}
    for t in tables:
        name = unique_sheet_name(table_sheet_name(t.label), names)
        order.append((name, t.label, lambda cx, sh, t=t: write_models(cx, sh, t)))
    for s in sections:
        name = unique_sheet_name(f"Mục {m.numbers.get(s.id) or s.number}", names)
        order.append((name, s.title, lambda cx, sh, s=s: write_section(cx, sh, s)))
    order += [(SHEET_STATUS, "tình hình nộp của từng đơn vị", write_status),
              (SHEET_FINDINGS, "lỗi, cảnh báo chưa xử lý và giải trình đã chấp nhận", write_findings)]
    return order


def _properties(cx: Context) -> None:
    m = cx.model
    cx.wb.set_properties({
        "title": f"Tổng hợp {m.form.title} năm {m.year}", "subject": m.form.title,
        "author": m.office.name or "danvan_xl", "company": m.office.name, "category": "Báo cáo tổng hợp",
        "keywords": f"{m.form.id}, {m.year}", "created": m.as_of,
        "comments": f"Biểu mẫu {m.form.id} phiên bản {m.form.version}; sinh bởi danvan_xl {__version__}",
    })
    for key, value in (("form_id", m.form.id), ("form_version", m.form.version),
                       ("definition_hash", m.form.definition_hash), ("year", str(m.year)),
                       ("as_of", m.as_of.isoformat(timespec="seconds"))):
        if cx.wb.set_custom_property(f"danvan_{key}", value) not in (0, None):
            raise TemplateBuildError(f"Không ghi được thuộc tính tài liệu danvan_{key}")
