"""Lay a narrative :class:`~danvan_xl.narrative.Report` out as a Word document per Nghị định 30/2020.

domain.md §3: A4 portrait, margins 20/20/30/15 mm, Times New Roman (also for the East-Asian and
complex-script slots, so Word never falls back to another font for Vietnamese), body 14 pt
justified with a 1.27 cm first-line indent; the two-column borderless header (cơ quan | quốc hiệu,
số | địa danh và ngày), "BÁO CÁO" + trích yếu, the body, then "Nơi nhận" beside the signer; page
numbers centred at the top from page 2. Rules are paragraph borders narrowed by indents, which
Word and LibreOffice both draw. The file is deterministic: fixed document properties and zip times.
"""

from __future__ import annotations

import io
import re
import unicodedata
import zipfile
from collections.abc import Iterable
from pathlib import Path

from docx import Document
from docx.document import Document as DocumentObject
from docx.enum.table import WD_CELL_VERTICAL_ALIGNMENT, WD_TABLE_ALIGNMENT
from docx.enum.text import WD_ALIGN_PARAGRAPH
from docx.oxml import OxmlElement
from docx.oxml.ns import qn
from docx.shared import Cm, Emu, Length, Mm, Pt, RGBColor, Twips
from docx.table import Table, _Cell
from docx.text.paragraph import Paragraph

from .fsio import write_atomic
from .narrative import QUOC_HIEU, TIEU_NGU, Block, BlockKind, Report

FONT = "Times New Roman"
LANG = "vi-VN"
BODY_PT = 14
HEADER_PT = 13  # cơ quan chủ quản, cơ quan ban hành, số ký hiệu
QUOC_HIEU_PT = 12
TIEU_NGU_PT = 13
RECIPIENTS_TITLE_PT = 12
RECIPIENTS_PT = 11
FIRST_LINE_INDENT = Cm(1.27)
PAGE_W, PAGE_H = Mm(210), Mm(297)
# Word stores twentieths of a point: 851 twips is 15.01 mm (Mm(15) would round down to 14.99 mm).
MARGINS = {"top": Mm(20), "bottom": Mm(20), "left": Mm(30), "right": Twips(851)}
TEXT_W = PAGE_W - MARGINS["left"] - MARGINS["right"]
# The header table reaches 5 mm into each side margin, as the usual NĐ 30 Word templates do, so
# that "CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM" and a long agency name each fit on their lines.
HEADER_COLS = (Mm(82), Mm(93))
HEADER_SHIFT = Mm(-5)
FOOTER_COLS = (Mm(80), Mm(85))
CELL_PAD = Mm(1)
RULE_PT = 0.75

# Advance widths of Times New Roman (1/1000 em; Liberation Serif has the same metrics), used to
# size the short rules and to break a long agency name into balanced lines.
_WIDTH_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789 .,:;-/()“”\"'&%"
_WIDTHS = {
    False: (722, 667, 667, 722, 611, 556, 722, 722, 333, 389, 722, 611, 889, 722, 722, 556, 722, 667, 556, 611,
            722, 722, 944, 722, 722, 611, 444, 500, 444, 500, 444, 333, 500, 500, 278, 278, 500, 278, 778, 500,
            500, 500, 500, 333, 389, 278, 500, 500, 722, 500, 500, 444, 500, 500, 500, 500, 500, 500, 500, 500,
            500, 500, 250, 250, 250, 278, 278, 333, 278, 333, 333, 444, 444, 408, 180, 778, 833),
    True: (722, 667, 722, 722, 667, 611, 778, 778, 389, 500, 778, 667, 944, 722, 778, 611, 778, 722, 556, 667,
           722, 722, 1000, 722, 722, 667, 500, 556, 444, 556, 444, 333, 500, 556, 278, 333, 556, 278, 833, 556,
           500, 556, 556, 444, 389, 333, 556, 500, 722, 500, 500, 444, 500, 500, 500, 500, 500, 500, 500, 500,
           500, 500, 250, 250, 250, 333, 333, 333, 278, 333, 333, 500, 500, 555, 278, 833, 1000),
}
_XML_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def write_docx(report: Report, path: Path) -> Path:
    """Write ``report`` as a .docx at ``path`` atomically (temporary file, then rename)."""
    return write_atomic(path, build_docx(report))


def build_docx(report: Report) -> bytes:
    """The .docx bytes of ``report``; the same report always gives the same bytes."""
    doc = Document()
    _setup_styles(doc)
    _setup_page(doc)
    _header_block(doc, report)
    _title_block(doc, report)
    for block in report.blocks:
        _body_block(doc, block)
    _signature_block(doc, report)
    _core_properties(doc, report)
    buffer = io.BytesIO()
    doc.save(buffer)
    return _fixed_zip(buffer.getvalue())


# ------------------------------------------------------------------ text measure

def text_width(text: str, size_pt: float, *, bold: bool = False) -> Length:
    """Estimated printed width of ``text`` in Times New Roman (diacritics do not change widths)."""
    table = _WIDTHS[bold]
    total = 0
    for ch in text:
        base = unicodedata.normalize("NFD", ch)[:1].replace("đ", "d").replace("Đ", "D")
        i = _WIDTH_CHARS.find(base)
        total += table[i] + (50 if ch in "ƠơƯư" else 0) if i >= 0 else 500
    return Emu(int(total / 1000 * size_pt * 12700))


def balanced_lines(text: str, width: Length, size_pt: float, *, bold: bool) -> list[str]:
    """Break ``text`` into the fewest lines that fit ``width``, preferring natural breaks
    ("VĂN PHÒNG HỘI ĐỒNG NHÂN DÂN / VÀ ỦY BAN NHÂN DÂN"), then the most even lines."""
    words = text.split()
    if not words or len(words) > 40 or text_width(text, size_pt, bold=bold) <= width:
        return [text]  # (over 40 words the search grows too large: Word wraps such text itself)
    for count in range(2, min(len(words), 4) + 1):  # beyond four lines, let Word wrap
        scored = []
        for lines in _splits(words, count):
            widest = max(text_width(line, size_pt, bold=bold) for line in lines)
            if widest <= width:
                awkward = sum(_break_cost(" ".join(lines[:i + 1]), nxt) for i, nxt in enumerate(lines[1:]))
                scored.append((awkward, widest, lines))
        if scored:
            return min(scored, key=lambda s: (s[0], s[1]))[2]
    return [text]


_BREAK_BEFORE = {"VÀ", "CỦA", "THUỘC", "TRÊN", "NĂM", "VỀ", "TẠI"}


def _break_cost(before: str, next_line: str) -> int:
    """0 for a natural break (before "và", "năm", "trên" …, after "," or " -"), 1 otherwise, 5 inside “quotes”."""
    if before.count("“") > before.count("”") or before.count('"') % 2:
        return 5
    return 0 if next_line.split()[0].upper() in _BREAK_BEFORE or before.endswith((",", " -")) else 1


def _splits(words: list[str], count: int) -> Iterable[list[str]]:
    if count == 1:
        yield [" ".join(words)]
        return
    for i in range(1, len(words) - count + 2):
        for rest in _splits(words[i:], count - 1):
            yield [" ".join(words[:i]), *rest]


# ------------------------------------------------------------------ styles and page

def _set_fonts(rpr: object) -> None:
    """Times New Roman in every script slot; theme fonts removed (they would win over it)."""
    fonts = rpr.find(qn("w:rFonts"))  # type: ignore[attr-defined]
    if fonts is None:
        fonts = OxmlElement("w:rFonts")
        rpr.insert(0, fonts)  # type: ignore[attr-defined]
    for attr in ("w:asciiTheme", "w:hAnsiTheme", "w:eastAsiaTheme", "w:cstheme"):
        fonts.attrib.pop(qn(attr), None)
    for attr in ("w:ascii", "w:hAnsi", "w:eastAsia", "w:cs"):
        fonts.set(qn(attr), FONT)


def _setup_styles(doc: DocumentObject) -> None:
    defaults = doc.styles.element.find(qn("w:docDefaults"))
    rpr = defaults.find(qn("w:rPrDefault")).find(qn("w:rPr"))
    _set_fonts(rpr)
    lang = rpr.find(qn("w:lang"))
    for attr in ("w:val", "w:eastAsia"):
        lang.set(qn(attr), LANG)
    normal = doc.styles["Normal"]
    _style_font(normal, BODY_PT)
    normal.paragraph_format.space_after = Pt(0)
    normal.paragraph_format.line_spacing = 1.0
    body = doc.styles["Body Text"]
    _style_font(body, BODY_PT)
    fmt = body.paragraph_format
    fmt.alignment = WD_ALIGN_PARAGRAPH.JUSTIFY
    fmt.first_line_indent = FIRST_LINE_INDENT
    fmt.space_before, fmt.space_after, fmt.line_spacing = Pt(6), Pt(0), 1.15
    fmt.widow_control = True
    for level in (1, 2, 3, 4):
        style = doc.styles[f"Heading {level}"]
        style.base_style = body
        _style_font(style, BODY_PT, bold=level < 4, italic=level == 4)
        hfmt = style.paragraph_format
        hfmt.alignment = WD_ALIGN_PARAGRAPH.JUSTIFY
        hfmt.first_line_indent = FIRST_LINE_INDENT
        hfmt.space_before, hfmt.space_after, hfmt.line_spacing = Pt(6), Pt(0), 1.15
        hfmt.keep_with_next = True
    for name in ("Header", "Footer"):
        _style_font(doc.styles[name], BODY_PT)


def _style_font(style: object, size: float, *, bold: bool = False, italic: bool = False) -> None:
    font = style.font  # type: ignore[attr-defined]
    font.name, font.size, font.bold, font.italic = FONT, Pt(size), bold, italic
    rpr = style.element.get_or_add_rPr()  # type: ignore[attr-defined]
    _set_fonts(rpr)
    color = rpr.find(qn("w:color"))
    if color is not None:
        rpr.remove(color)
    font.color.rgb = RGBColor(0, 0, 0)


def _setup_page(doc: DocumentObject) -> None:
    section = doc.sections[0]
    section.page_width, section.page_height = PAGE_W, PAGE_H
    section.top_margin, section.bottom_margin = MARGINS["top"], MARGINS["bottom"]
    section.left_margin, section.right_margin = MARGINS["left"], MARGINS["right"]
    section.header_distance, section.footer_distance = Mm(10), Mm(10)
    section.different_first_page_header_footer = True  # no number on page 1 (NĐ 30)
    section.first_page_header.is_linked_to_previous = False
    number = section.header.paragraphs[0]
    number.alignment = WD_ALIGN_PARAGRAPH.CENTER
    _page_field(number)


def _page_field(paragraph: Paragraph) -> None:
    """A PAGE field (begin / instruction / separate / cached result / end), 14 pt."""
    for kind, text in (("begin", None), (None, " PAGE "), ("separate", None), (None, "2"), ("end", None)):
        run = paragraph.add_run()
        _run_font(run, BODY_PT)
        if kind:
            char = OxmlElement("w:fldChar")
            char.set(qn("w:fldCharType"), kind)
            run._r.append(char)
        elif text == " PAGE ":
            instr = OxmlElement("w:instrText")
            instr.set(qn("xml:space"), "preserve")
            instr.text = text
            run._r.append(instr)
        else:
            run.text = text


# ------------------------------------------------------------------ paragraphs and runs

def _safe(text: str) -> str:
    return _XML_ILLEGAL.sub("", text)


def _run_font(run: object, size: float, *, bold: bool = False, italic: bool = False) -> None:
    font = run.font  # type: ignore[attr-defined]
    font.size, font.bold, font.italic = Pt(size), bold, italic
    _set_fonts(run._r.get_or_add_rPr())  # type: ignore[attr-defined]


def _para(
    target: Paragraph, text: str = "", *, size: float = BODY_PT, bold: bool = False, italic: bool = False,
    align: WD_ALIGN_PARAGRAPH = WD_ALIGN_PARAGRAPH.CENTER, before: float = 0, after: float = 0,
) -> Paragraph:
    fmt = target.paragraph_format
    fmt.alignment, fmt.first_line_indent = align, Cm(0)
    fmt.space_before, fmt.space_after, fmt.line_spacing = Pt(before), Pt(after), 1.0
    lines = _safe(text).split("\n")
    for i, line in enumerate(lines):
        run = target.add_run(line)
        _run_font(run, size, bold=bold, italic=italic)
        if i < len(lines) - 1:
            run.add_break()
    _mark_size(target, size)
    return target


def _mark_size(paragraph: Paragraph, size: float) -> None:
    """The paragraph mark's size sets an empty paragraph's height."""
    ppr = paragraph._p.get_or_add_pPr()
    rpr = ppr.find(qn("w:rPr"))
    if rpr is None:
        rpr = OxmlElement("w:rPr")
        ppr.append(rpr)
    for tag in ("w:sz", "w:szCs"):
        el = rpr.find(qn(tag))
        if el is None:
            el = OxmlElement(tag)
            rpr.append(el)
        el.set(qn("w:val"), str(int(size * 2)))


def _rule(target: Paragraph, length: Length, box: Length) -> Paragraph:
    """A solid line of ``length``, centred in a box of width ``box`` (a top border between indents)."""
    side = max(0, int((box - length) / 2))
    fmt = target.paragraph_format
    fmt.left_indent, fmt.right_indent, fmt.first_line_indent = Emu(side), Emu(side), Cm(0)
    fmt.space_before, fmt.space_after, fmt.line_spacing = Pt(4), Pt(0), Pt(4)
    _mark_size(target, 2)
    ppr = target._p.get_or_add_pPr()
    borders = OxmlElement("w:pBdr")
    top = OxmlElement("w:top")
    for key, value in (("w:val", "single"), ("w:sz", str(int(RULE_PT * 8))), ("w:space", "1"), ("w:color", "000000")):
        top.set(qn(key), value)
    borders.append(top)
    # pBdr must precede spacing/ind in CT_PPr's sequence; insert right after any pStyle/keepNext…
    anchor = next((ppr.find(qn(t)) for t in ("w:shd", "w:tabs", "w:spacing", "w:ind", "w:jc", "w:rPr")
                   if ppr.find(qn(t)) is not None), None)
    if anchor is not None:
        anchor.addprevious(borders)
    else:
        ppr.append(borders)
    return target


# ------------------------------------------------------------------ tables

def _borderless_table(doc: DocumentObject, rows: int, widths: tuple[Length, ...], shift: int = 0) -> Table:
    table = doc.add_table(rows=rows, cols=len(widths))
    table.alignment = WD_TABLE_ALIGNMENT.LEFT
    table.autofit = False
    tbl_pr = table._tbl.tblPr
    for tag, attrs in (
        ("w:tblW", {"w:w": str(int(sum(widths) / 635)), "w:type": "dxa"}),
        ("w:tblInd", {"w:w": str(int(shift / 635)), "w:type": "dxa"}),
        ("w:tblLayout", {"w:type": "fixed"}),
    ):
        el = tbl_pr.find(qn(tag))
        if el is None:
            el = OxmlElement(tag)
            tbl_pr.append(el)
        for k, v in attrs.items():
            el.set(qn(k), v)
    borders = OxmlElement("w:tblBorders")
    for side in ("top", "left", "bottom", "right", "insideH", "insideV"):
        edge = OxmlElement(f"w:{side}")
        edge.set(qn("w:val"), "nil")
        borders.append(edge)
    tbl_pr.append(borders)
    margins = OxmlElement("w:tblCellMar")
    for side in ("left", "right"):
        edge = OxmlElement(f"w:{side}")
        edge.set(qn("w:w"), str(int(CELL_PAD / 635)))
        edge.set(qn("w:type"), "dxa")
        margins.append(edge)
    tbl_pr.append(margins)
    _schema_order(tbl_pr, _TBL_PR_ORDER)
    for i, width in enumerate(widths):
        table.columns[i].width = width
        for cell in table.columns[i].cells:
            cell.width = width
            cell.vertical_alignment = WD_CELL_VERTICAL_ALIGNMENT.TOP
    for row in table.rows:
        cant_split = OxmlElement("w:cantSplit")
        row._tr.get_or_add_trPr().append(cant_split)
    return table


_TBL_PR_ORDER = ("tblStyle", "tblpPr", "tblOverlap", "bidiVisual", "tblStyleRowBandSize", "tblStyleColBandSize",
                 "tblW", "jc", "tblCellSpacing", "tblInd", "tblBorders", "shd", "tblLayout", "tblCellMar", "tblLook")


def _schema_order(parent: object, order: tuple[str, ...]) -> None:
    """Re-append children in the order the OOXML schema requires (Word rejects other orders)."""
    rank = {qn(f"w:{tag}"): i for i, tag in enumerate(order)}
    children = sorted(parent, key=lambda el: rank.get(el.tag, len(rank)))  # type: ignore[attr-defined]
    for child in children:
        parent.append(child)  # type: ignore[attr-defined]


def _cell_lines(cell: _Cell) -> Iterable[Paragraph]:
    """The cell's first (empty) paragraph, then new ones."""
    yield cell.paragraphs[0]
    while True:
        yield cell.add_paragraph()


def _header_block(doc: DocumentObject, report: Report) -> None:
    table = _borderless_table(doc, 2, HEADER_COLS, HEADER_SHIFT)
    left_w, right_w = (w - 2 * CELL_PAD for w in HEADER_COLS)
    left = _cell_lines(table.cell(0, 0))
    if report.parent:
        for line in balanced_lines(report.parent, left_w, HEADER_PT, bold=False):
            _para(next(left), line, size=HEADER_PT)
    agency_lines = balanced_lines(report.agency, left_w, HEADER_PT, bold=True)
    _para(next(left), "\n".join(agency_lines), size=HEADER_PT, bold=True)
    widest = max(text_width(line, HEADER_PT, bold=True) for line in agency_lines)
    _rule(next(left), Emu(int(min(widest, left_w) * 0.4)), left_w)
    right = _cell_lines(table.cell(0, 1))
    _para(next(right), QUOC_HIEU, size=QUOC_HIEU_PT, bold=True)
    _para(next(right), TIEU_NGU, size=TIEU_NGU_PT, bold=True)
    _rule(next(right), text_width(TIEU_NGU, TIEU_NGU_PT, bold=True), right_w)  # as long as the tiêu ngữ
    _para(table.cell(1, 0).paragraphs[0], report.number, size=HEADER_PT, before=6)
    _para(table.cell(1, 1).paragraphs[0], report.place_date, size=BODY_PT, italic=True, before=6)


def _title_block(doc: DocumentObject, report: Report) -> None:
    _para(doc.add_paragraph(), report.doc_type, size=BODY_PT, bold=True, before=18)
    lines = balanced_lines(report.subject, Emu(TEXT_W - Cm(1)), BODY_PT, bold=True)
    _para(doc.add_paragraph(), "\n".join(lines), size=BODY_PT, bold=True)
    subject_w = min(max(text_width(line, BODY_PT, bold=True) for line in lines), TEXT_W)
    _rule(doc.add_paragraph(), Emu(int(max(subject_w / 3, Cm(3)))), TEXT_W)
    _para(doc.add_paragraph(), "", size=6)


def _body_block(doc: DocumentObject, block: Block) -> None:
    if block.kind == BlockKind.HEADING:
        style = f"Heading{min(max(block.level, 1), 3)}"
    elif block.kind == BlockKind.SUBHEADING:
        style = "Heading4"
    else:
        style = "BodyText"
    paragraph = doc.add_paragraph()
    # Set the style id directly: python-docx's lookup by name scans every style for each paragraph
    # (most of the time spent writing a report). The ids are those of the built-in styles set up above.
    paragraph._p.get_or_add_pPr().style = style
    paragraph.add_run(_safe(block.display))
    if block.text.endswith("./."):  # the closing line stays on the page of the signature
        paragraph.paragraph_format.keep_with_next = True


def _signature_block(doc: DocumentObject, report: Report) -> None:
    _para(doc.add_paragraph(), "", size=12).paragraph_format.keep_with_next = True
    table = _borderless_table(doc, 1, FOOTER_COLS)
    left = _cell_lines(table.cell(0, 0))
    _para(next(left), "Nơi nhận:", size=RECIPIENTS_TITLE_PT, bold=True, italic=True, align=WD_ALIGN_PARAGRAPH.LEFT)
    for line in report.recipients:
        _para(next(left), f"- {line}", size=RECIPIENTS_PT, align=WD_ALIGN_PARAGRAPH.LEFT)
    right = _cell_lines(table.cell(0, 1))
    for line in report.signer.lines:
        _para(next(right), line, size=BODY_PT, bold=True)
    for _ in range(4):  # room for the signature and the seal
        _para(next(right), "", size=BODY_PT)
    if report.signer.name:
        _para(next(right), report.signer.name, size=BODY_PT, bold=True, before=12)


# ------------------------------------------------------------------ determinism

def _core_properties(doc: DocumentObject, report: Report) -> None:
    props = doc.core_properties
    when = report.timestamp
    props.title = _safe(f"{report.doc_type} {report.subject}")
    props.subject = _safe(report.subject)
    props.author = props.last_modified_by = _safe(report.agency)
    props.created = props.modified = props.last_printed = when
    props.revision = 1
    props.language = LANG
    props.keywords = _safe(report.code)
    props.comments = "Tạo bởi danvan_xl từ số liệu báo cáo"
    props.category = "Báo cáo"


def _fixed_zip(data: bytes) -> bytes:
    """Rewrite the package with fixed member times (python-docx stamps the current time)."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            member = zipfile.ZipInfo(info.filename, date_time=(1980, 1, 1, 0, 0, 0))
            member.compress_type = zipfile.ZIP_DEFLATED
            member.external_attr = 0o644 << 16
            dst.writestr(member, src.read(info.filename))
    return out.getvalue()


__all__ = ["balanced_lines", "build_docx", "text_width", "write_docx"]
