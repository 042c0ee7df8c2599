"""One sheet per report section with paragraph fields: the units' texts side by side, one row per
unit that wrote something; a text taller than one row (409 points) continues on "(tiếp)" rows.
"""

from __future__ import annotations

from collections.abc import Sequence

from .form import Field, Form, Section
from .summary_model import Model, UnitRow
from .summary_sheet import Context, Sheet
from .summary_text import chunk_lines, safe_text
from .vocabulary import Kind, ValueState


def paragraph_fields(form: Form, section: Section) -> list[Field]:
    """The section's paragraph fields; none for unnumbered sections ("Thông tin chung", the rubric)."""
    if not section.number:  # "Thông tin chung" (nơi nhận) and the rubric are not report sections
        return []
    return [form.fields[f] for f in section.fields if form.fields[f].kind == Kind.PARAGRAPH]


# (index in model.rows, each paragraph's pieces as chunk_lines gives them) of the units that wrote something
SectionPlan = list[tuple[int, list[list[tuple[str, int]]]]]


def section_plan(model: Model, section: Section) -> SectionPlan:
    """The section's texts cut into pieces that fit a row, for each unit that wrote something: the
    pure half of :func:`write_section` (it can be worked out on another core, :func:`section_plans`)."""
    paragraphs = paragraph_fields(model.form, section)
    width = 122 / len(paragraphs)
    plan: SectionPlan = []
    for i, r in enumerate(model.rows):
        texts = [_paragraph_text(r, f) for f in paragraphs]
        if any(texts):
            plan.append((i, [chunk_lines(t, width) for t in texts]))
    return plan


def section_plans(model: Model) -> dict[str, SectionPlan]:
    """:func:`section_plan` of every section that has a sheet."""
    return {s.id: section_plan(model, s) for s in model.form.sections if paragraph_fields(model.form, s)}


def write_section(cx: Context, sh: Sheet, section: Section) -> None:
    """The units' texts for one report section, one row per unit that wrote something."""
    st = cx.st
    paragraphs = paragraph_fields(cx.model.form, section)
    text_width = 122 / len(paragraphs)
    widths = [5, 30] + [text_width] * len(paragraphs)
    sh.widths(widths)
    number = cx.model.numbers.get(section.id) or section.number
    plans = cx.section_plans() if cx.section_plans is not None else None
    plan = plans[section.id] if plans is not None and section.id in plans else section_plan(cx.model, section)
    cx.title(sh, f"{number}. {section.title}",
             f"Nội dung báo cáo của {len(plan)}/{len(cx.model.rows)} đơn vị (đơn vị chưa nộp hoặc để trống "
             f"mục này không có dòng) — {cx.as_of_line()}", len(widths) - 1)
    head = 3
    for c, h in enumerate(["TT", "Đơn vị"] + [f.label for f in paragraphs]):
        sh.text(head, c, h, st.head)
    row = head + 1
    rows = cx.model.rows
    for i, (index, pieces) in enumerate(plan, start=1):
        row = _section_unit(cx, sh, row, i, rows[index], pieces)
    sh.ws.freeze_panes(head + 1, 0)
    sh.page(cx.footer, header_rows=(head, head))


def _section_unit(cx: Context, sh: Sheet, row: int, index: int, r: UnitRow,
                  pieces: Sequence[Sequence[tuple[str, int]]]) -> int:
    """One unit's texts; a long text continues on extra rows (a row is at most 409 points high)."""
    st = cx.st
    name_fmt = st.label("unit" if r.included or r.state == "missing" else "excluded")
    height = max(map(len, pieces))
    for k in range(height):
        w = sh.row(row + k)
        if k == 0:
            w.num(0, index, st.center)
            w.text(1, r.unit.name, name_fmt)
        else:
            w.blank(0, st.center)
            w.text(1, f"{r.unit.name} (tiếp)", name_fmt)
        for j, parts in enumerate(pieces):
            if k < len(parts) and parts[k][0]:
                w.piece(2 + j, parts[k][0], st.paragraph, parts[k][1])
            else:
                w.blank(2 + j, st.paragraph)
    return row + height


def _paragraph_text(r: UnitRow, f: Field) -> str:
    v = r.submission.data.values.get(f.id) if r.submission is not None else None
    if v is None or v.state != ValueState.VALUE or not isinstance(v.value, str):
        return ""
    return safe_text(v.value)
