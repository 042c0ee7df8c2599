"""Lay a narrative :class:`~danvan_xl.narrative.Report` out as a Word document per Nghị định 30/2020.

domain.md §3: A4 portrait, margins 20/20/30/15 mm, Times New Roman (also for the East-Asian and
complex-script slots, so Word never falls back to another font for Vietnamese), body 14 pt
justified with a 1.27 cm first-line indent; the two-column borderless header (cơ quan | quốc hiệu,
số | địa danh và ngày), "BÁO CÁO" + trích yếu, the body, then "Nơi nhận" beside the signer; page
numbers centred at the top from page 2. Rules are paragraph borders narrowed by indents, which
Word and LibreOffice both draw. The file is deterministic: fixed document properties and zip times.

Speed (10,000 reports a minute): the parts every report shares are made once per process by
:mod:`docx_parts`; per report only ``word/document.xml`` and ``docProps/core.xml`` are written, as
XML text with the markup (and lxml's serialisation) of the python-docx calls this module used to
make — the files came out byte for byte the same when it was replaced (~1 ms instead of ~80 ms).
"""

from __future__ import annotations

import functools
import itertools
import re
import unicodedata
from collections.abc import Iterable
from pathlib import Path

from docx.shared import Cm, Emu, Length, Mm, Pt

from .docx_parts import BODY_PT, CORE, DOCUMENT, FONT, LANG, TEXT_W, XML_DECLARATION, compress, skeleton, zip_package
from .fsio import write_atomic
from .narrative import QUOC_HIEU, TIEU_NGU, Block, BlockKind, Report

HEADER_PT = 13  # cơ quan chủ quản, cơ quan ban hành, số ký hiệu
QUOC_HIEU_PT = 12
TIEU_NGU_PT = 13
RECIPIENTS_TITLE_PT = 12
RECIPIENTS_PT = 11
# The header table reaches 5 mm into each side margin, as the usual NĐ 30 Word templates do, so
# that "CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM" and a long agency name each fit on their lines.
HEADER_COLS = (Mm(82), Mm(93))
HEADER_SHIFT = Mm(-5)
FOOTER_COLS = (Mm(80), Mm(85))
CELL_PAD = Mm(1)
RULE_PT = 0.75
CORE_TEXT_MAX = 255  # characters Word keeps in a document property (python-docx refused longer ones)

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


def write_docx(report: Report, path: Path, *, durable: bool = True) -> Path:
    """Write ``report`` as a .docx at ``path`` atomically (temporary file, then rename); ``durable``
    also fsyncs (bulk writers pass False and sync once at the end, see :func:`fsio.write_atomic`)."""
    return write_atomic(path, build_docx(report), durable=durable)


def build_docx(report: Report) -> bytes:
    """The .docx bytes of ``report``; the same report always gives the same bytes."""
    parts = skeleton()
    own = {DOCUMENT: document_xml(report).encode("utf-8"), CORE: core_xml(report).encode("utf-8")}
    return zip_package((name, member or compress(own[name])) for name, member in parts.members)


def document_xml(report: Report) -> str:
    """``word/document.xml`` of ``report``: header table, title, body, signature table."""
    parts = skeleton()
    out = [parts.document_head, _header_block(report), _title_block(report)]
    out += [_body_block(block) for block in report.blocks]
    out += [_signature_block(report), parts.document_tail]
    return "".join(out)


# ------------------------------------------------------------------ text measure

@functools.cache
def _char_units(ch: str, bold: bool) -> int:
    """Advance width of one character in 1/1000 em (diacritics do not change widths)."""
    base = unicodedata.normalize("NFD", ch)[:1].replace("đ", "d").replace("Đ", "D")
    i = _WIDTH_CHARS.find(base)
    return _WIDTHS[bold][i] + (50 if ch in "ƠơƯư" else 0) if i >= 0 else 500


def _units(text: str, bold: bool) -> int:
    return sum(_char_units(ch, bold) for ch in text)


def _emu(units: int, size_pt: float) -> Emu:
    return Emu(int(units / 1000 * size_pt * 12700))


def text_width(text: str, size_pt: float, *, bold: bool = False) -> Length:
    """Estimated printed width of ``text`` in Times New Roman (diacritics do not change widths)."""
    return _emu(_units(text, bold), size_pt)


def balanced_lines(text: str, width: Length, size_pt: float, *, bold: bool) -> list[str]:
    """Break ``text`` into the fewest lines that fit ``width``, preferring natural breaks
    ("VĂN PHÒNG HỘI ĐỒNG NHÂN DÂN / VÀ ỦY BAN NHÂN DÂN"), then the most even lines."""
    return list(_balanced(text, int(width), size_pt, bold))


@functools.lru_cache(maxsize=4096)
def _balanced(text: str, width: int, size_pt: float, bold: bool) -> tuple[str, ...]:
    words = text.split()
    if not words or len(words) > 40 or text_width(text, size_pt, bold=bold) <= width:
        return (text,)  # (over 40 words the search grows too large: Word wraps such text itself)
    space = _char_units(" ", bold)
    ends = [0, *itertools.accumulate(_units(w, bold) for w in words)]  # ends[k]: words[:k], no spaces

    def line_width(a: int, b: int) -> int:
        return _emu(ends[b] - ends[a] + (b - a - 1) * space, size_pt)

    for count in range(2, min(len(words), 4) + 1):  # beyond four lines, let Word wrap
        scored = []
        # Break positions in the order the first version tried them (the first best split wins ties).
        for breaks in itertools.combinations(range(1, len(words)), count - 1):
            bounds = (0, *breaks, len(words))
            widest = max(line_width(a, b) for a, b in itertools.pairwise(bounds))
            if widest <= width:
                lines = [" ".join(words[a:b]) for a, b in itertools.pairwise(bounds)]
                awkward = sum(_break_cost(" ".join(words[:b]), nxt) for b, nxt in zip(breaks, lines[1:], strict=True))
                scored.append((awkward, widest, lines))
        if scored:
            return tuple(min(scored, key=lambda s: (s[0], s[1]))[2])
    return (text,)


_BREAK_BEFORE = {"VÀ", "CỦA", "THUỘC", "TRÊN", "NĂM", "VỀ", "TẠI"}


def _break_cost(before: str, next_line: str) -> int:
    """0 for a natural break (before "và", "năm", "trên" …, after "," or " -"), 1 otherwise, 5 inside “quotes”."""
    if before.count("“") > before.count("”") or before.count('"') % 2:
        return 5
    return 0 if next_line.split()[0].upper() in _BREAK_BEFORE or before.endswith((",", " -")) else 1


# ------------------------------------------------------------------ XML text

def _safe(text: str) -> str:
    """Text without the characters XML 1.0 forbids (controls, lone surrogates, U+FFFE/U+FFFF)."""
    return _XML_ILLEGAL.sub("", text)


def _escape(text: str) -> str:
    """Character data as lxml writes it (a carriage return as a reference, so parsers keep it)."""
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return text.replace("\r", "&#13;") if "\r" in text else text


_RUN_SPECIALS = re.compile(r"([\t\r\n])")


def _run_content(text: str) -> str:
    """A run's content as python-docx writes it: tabs → <w:tab/>, CR and LF → <w:br/>, the rest in
    <w:t> (xml:space="preserve" when the piece starts or ends with white space)."""
    out = []
    for piece in _RUN_SPECIALS.split(text) if ("\t" in text or "\r" in text or "\n" in text) else (text,):
        if piece == "\t":
            out.append("<w:tab/>")
        elif piece in ("\r", "\n"):
            out.append("<w:br/>")
        elif piece:
            space = ' xml:space="preserve"' if piece.strip() != piece else ""
            out.append(f"<w:t{space}>{_escape(piece)}</w:t>")
    return "".join(out)


def _twips(length: float) -> int:
    """EMU → twentieths of a point, rounded (python-docx's ST_TwipsMeasure)."""
    return round(length / 635)


def _dxa(length: float) -> int:
    """EMU → twips, truncated (the table widths and indents the first version wrote)."""
    return int(length / 635)


_FONTS = f'<w:rFonts w:ascii="{FONT}" w:hAnsi="{FONT}" w:eastAsia="{FONT}" w:cs="{FONT}"/>'
_OFF = ' w:val="0"'


@functools.cache
def _run_props(size: float, bold: bool, italic: bool) -> str:
    return (f'<w:rPr>{_FONTS}<w:b{"" if bold else _OFF}/><w:i{"" if italic else _OFF}/>'
            f'<w:sz w:val="{int(size * 2)}"/></w:rPr>')


def _mark(size: float) -> str:
    """The paragraph mark's size sets an empty paragraph's height."""
    return f'<w:rPr><w:sz w:val="{int(size * 2)}"/><w:szCs w:val="{int(size * 2)}"/></w:rPr>'


def _para(
    text: str = "", *, size: float = BODY_PT, bold: bool = False, italic: bool = False, align: str = "center",
    before: float = 0, after: float = 0, keep_next: bool = False,
) -> str:
    """A directly formatted paragraph, single-spaced, no indent; "\\n" in ``text`` breaks the line."""
    keep = "<w:keepNext/>" if keep_next else ""
    ppr = (f'<w:pPr>{keep}<w:spacing w:before="{_twips(Pt(before))}" w:after="{_twips(Pt(after))}" w:line="240" '
           f'w:lineRule="auto"/><w:ind w:firstLine="0"/><w:jc w:val="{align}"/>{_mark(size)}</w:pPr>')
    rpr = _run_props(size, bold, italic)
    lines = _safe(text).split("\n")
    last = len(lines) - 1
    runs = "".join(f"<w:r>{rpr}{_run_content(line)}{'<w:br/>' if i < last else ''}</w:r>" for i, line in enumerate(lines))
    return f"<w:p>{ppr}{runs}</w:p>"


def _rule(length: Length, box: Length) -> str:
    """A solid line of ``length``, centred in a box of width ``box`` (a top border between indents)."""
    side = _twips(max(0, int((box - length) / 2)))
    return (f'<w:p><w:pPr><w:pBdr><w:top w:val="single" w:sz="{int(RULE_PT * 8)}" w:space="1" w:color="000000"/>'
            f'</w:pBdr><w:spacing w:before="{_twips(Pt(4))}" w:after="0" w:line="{_twips(Pt(4))}" w:lineRule="exact"/>'
            f'<w:ind w:left="{side}" w:right="{side}" w:firstLine="0"/>{_mark(2)}</w:pPr></w:p>')


# ------------------------------------------------------------------ tables

_NO_BORDERS = "".join(f'<w:{side} w:val="nil"/>' for side in ("top", "left", "bottom", "right", "insideH", "insideV"))
_TBL_LOOK = ('<w:tblLook w:firstColumn="1" w:firstRow="1" w:lastColumn="0" w:lastRow="0" w:noHBand="0" '
             'w:noVBand="1" w:val="04A0"/>')


def _borderless_table(widths: tuple[Length, ...], rows: Iterable[Iterable[str]], shift: int = 0) -> str:
    """A fixed-layout table without borders; each cell is the XML of its paragraphs."""
    pad = _dxa(CELL_PAD)
    head = (f'<w:tbl><w:tblPr><w:tblW w:type="dxa" w:w="{_dxa(sum(widths))}"/><w:jc w:val="left"/>'
            f'<w:tblInd w:w="{_dxa(shift)}" w:type="dxa"/><w:tblBorders>{_NO_BORDERS}</w:tblBorders>'
            f'<w:tblLayout w:type="fixed"/><w:tblCellMar><w:left w:w="{pad}" w:type="dxa"/>'
            f'<w:right w:w="{pad}" w:type="dxa"/></w:tblCellMar>{_TBL_LOOK}</w:tblPr><w:tblGrid>'
            + "".join(f'<w:gridCol w:w="{_twips(w)}"/>' for w in widths) + "</w:tblGrid>")
    body = []
    for row in rows:
        cells = "".join(f'<w:tc><w:tcPr><w:tcW w:type="dxa" w:w="{_twips(w)}"/><w:vAlign w:val="top"/></w:tcPr>'
                        f'{content or "<w:p/>"}</w:tc>' for w, content in zip(widths, row, strict=True))
        body.append(f"<w:tr><w:trPr><w:cantSplit/></w:trPr>{cells}</w:tr>")
    return head + "".join(body) + "</w:tbl>"


# ------------------------------------------------------------------ the blocks of a report

def _header_block(report: Report) -> str:
    left_w, right_w = (w - 2 * CELL_PAD for w in HEADER_COLS)
    left = []
    if report.parent:
        left += [_para(line, size=HEADER_PT) for line in balanced_lines(report.parent, left_w, HEADER_PT, bold=False)]
    agency_lines = balanced_lines(report.agency, left_w, HEADER_PT, bold=True)
    left.append(_para("\n".join(agency_lines), size=HEADER_PT, bold=True))
    widest = max(text_width(line, HEADER_PT, bold=True) for line in agency_lines)
    left.append(_rule(Emu(int(min(widest, left_w) * 0.4)), left_w))
    right = (_para(QUOC_HIEU, size=QUOC_HIEU_PT, bold=True) + _para(TIEU_NGU, size=TIEU_NGU_PT, bold=True)
             + _rule(text_width(TIEU_NGU, TIEU_NGU_PT, bold=True), right_w))  # as long as the tiêu ngữ
    second = (_para(report.number, size=HEADER_PT, before=6),
              _para(report.place_date, size=BODY_PT, italic=True, before=6))
    return _borderless_table(HEADER_COLS, (("".join(left), right), second), HEADER_SHIFT)


def _title_block(report: Report) -> str:
    lines = balanced_lines(report.subject, Emu(TEXT_W - Cm(1)), BODY_PT, bold=True)
    subject_w = min(max(text_width(line, BODY_PT, bold=True) for line in lines), TEXT_W)
    return (_para(report.doc_type, size=BODY_PT, bold=True, before=18)
            + _para("\n".join(lines), size=BODY_PT, bold=True)
            + _rule(Emu(int(max(subject_w / 3, Cm(3)))), TEXT_W)
            + _para("", size=6))


_STYLE_IDS = {BlockKind.SUBHEADING: "Heading4", BlockKind.PARAGRAPH: "BodyText", BlockKind.ITEM: "BodyText"}


def _style_id(block: Block) -> str:
    if block.kind == BlockKind.HEADING:
        return f"Heading{min(max(block.level, 1), 3)}"
    return _STYLE_IDS.get(block.kind, "BodyText")


def _body_block(block: Block) -> str:
    """A body paragraph in its style (Body Text, Heading 1–4, set up in :mod:`docx_parts`)."""
    keep = "<w:keepNext/>" if block.text.endswith("./.") else ""  # the closing line stays with the signature
    content = _run_content(_safe(block.display))
    run = f"<w:r>{content}</w:r>" if content else "<w:r/>"
    return f'<w:p><w:pPr><w:pStyle w:val="{_style_id(block)}"/>{keep}</w:pPr>{run}</w:p>'


def _signature_block(report: Report) -> str:
    left = [_para("Nơi nhận:", size=RECIPIENTS_TITLE_PT, bold=True, italic=True, align="left")]
    left += [_para(f"- {line}", size=RECIPIENTS_PT, align="left") for line in report.recipients]
    right = [_para(line, size=BODY_PT, bold=True) for line in report.signer.lines]
    right += [_para("", size=BODY_PT)] * 4  # room for the signature and the seal
    if report.signer.name:
        right.append(_para(report.signer.name, size=BODY_PT, bold=True, before=12))
    return _para("", size=12, keep_next=True) + _borderless_table(FOOTER_COLS, (("".join(left), "".join(right)),))


# ------------------------------------------------------------------ document properties

_CORE_HEAD = (
    XML_DECLARATION + '<cp:coreProperties xmlns:cp="http://schemas.openxmlformats.org/package/2006/metadata/core-properties" '
    'xmlns:dc="http://purl.org/dc/elements/1.1/" xmlns:dcterms="http://purl.org/dc/terms/" '
    'xmlns:dcmitype="http://purl.org/dc/dcmitype/" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">'
)


def core_xml(report: Report) -> str:
    """``docProps/core.xml``: title, subject, author … and fixed times (the report's own date)."""
    def prop(tag: str, text: str) -> str:
        return f"<{tag}>{_escape(_safe(text)[:CORE_TEXT_MAX])}</{tag}>"

    when = report.timestamp.strftime("%Y-%m-%dT%H:%M:%SZ")
    stamp = f'xsi:type="dcterms:W3CDTF">{when}'
    return "".join((
        _CORE_HEAD, prop("dc:title", f"{report.doc_type} {report.subject}"), prop("dc:subject", report.subject),
        prop("dc:creator", report.agency), prop("cp:keywords", report.code),
        prop("dc:description", "Tạo bởi danvan_xl từ số liệu báo cáo"), prop("cp:lastModifiedBy", report.agency),
        "<cp:revision>1</cp:revision>", f"<dcterms:created {stamp}</dcterms:created>",
        f"<dcterms:modified {stamp}</dcterms:modified>", prop("cp:category", "Báo cáo"),
        f"<cp:lastPrinted>{when}</cp:lastPrinted>", prop("dc:language", LANG), "</cp:coreProperties>",
    ))


__all__ = ["balanced_lines", "build_docx", "core_xml", "document_xml", "text_width", "write_docx"]
