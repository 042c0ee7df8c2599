"""The fixed parts of every report's .docx, prepared once per process, and the zip that holds them.

Styles, settings, fonts, theme, the first-page (empty) and other-page (PAGE field) headers, the
content types and relationships are the same in every report: they are made once with python-docx
(the page and style set-up below is the single source of truth for them) and kept compressed.
:mod:`docx_writer` then only writes ``word/document.xml`` and ``docProps/core.xml`` per report and
:func:`zip_package` lays the members out in the same order, with the same fixed times, as before.
"""

from __future__ import annotations

import functools
import io
import struct
import zipfile
import zlib
from collections.abc import Iterable
from dataclasses import dataclass

from docx import Document
from docx.document import Document as DocumentObject
from docx.enum.text import WD_ALIGN_PARAGRAPH
from docx.oxml import OxmlElement
from docx.oxml.ns import qn
from docx.shared import Cm, Mm, Pt, RGBColor, Twips
from docx.text.paragraph import Paragraph

FONT = "Times New Roman"
LANG = "vi-VN"
BODY_PT = 14
FIRST_LINE_INDENT = Cm(1.27)
PAGE_W, PAGE_H = Mm(210), Mm(297)
# Word stores twentieths of a point: 851 twips is 15.01 mm (Mm(15) would round down to 14.99 mm).
MARGINS = {"top": Mm(20), "bottom": Mm(20), "left": Mm(30), "right": Twips(851)}
TEXT_W = PAGE_W - MARGINS["left"] - MARGINS["right"]

DOCUMENT = "word/document.xml"
CORE = "docProps/core.xml"
XML_DECLARATION = "<?xml version='1.0' encoding='UTF-8' standalone='yes'?>\n"


@dataclass(frozen=True)
class Skeleton:
    """What every report shares: the compressed fixed members (``None`` marks a per-report
    member, in its place in the zip) and the text around the body of ``word/document.xml``."""

    members: tuple[tuple[str, Member | None], ...]
    document_head: str  # XML declaration, <w:document …><w:body>
    document_tail: str  # <w:sectPr …>…</w:sectPr></w:body></w:document>


@functools.cache
def skeleton() -> Skeleton:
    """The shared parts, built on first use and kept for the life of the process (forked
    workers inherit them when the parent has called this before forking)."""
    doc = Document()
    _setup_styles(doc)
    _setup_page(doc)
    buffer = io.BytesIO()
    doc.save(buffer)
    members: list[tuple[str, Member | None]] = []
    with zipfile.ZipFile(buffer) as package:
        for name in package.namelist():
            data = package.read(name)
            if name == DOCUMENT:
                head, tail = _split_document(data.decode("utf-8"))
            members.append((name, None if name in (DOCUMENT, CORE) else compress(data)))
    return Skeleton(tuple(members), head, tail)


def _split_document(xml: str) -> tuple[str, str]:
    """The empty document's XML before and after its body content (the section properties)."""
    body = xml.index("<w:body>") + len("<w:body>")
    section = xml.index("<w:sectPr", body)
    if xml[body:section]:
        raise ValueError("the python-docx default template is expected to have an empty body")
    return xml[:body], xml[section:]


# ------------------------------------------------------------------ styles and page (python-docx, once)

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
        font = run.font
        font.size, font.bold, font.italic = Pt(BODY_PT), False, False
        _set_fonts(run._r.get_or_add_rPr())
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


# ------------------------------------------------------------------ the zip

@dataclass(frozen=True)
class Member:
    """One deflated zip member's payload: CRC-32, sizes and the raw deflate stream."""

    crc: int
    size: int
    data: bytes


def compress(data: bytes) -> Member:
    """Deflate ``data`` as :mod:`zipfile` does (default level, raw stream)."""
    packer = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -15)
    return Member(zlib.crc32(data), len(data), packer.compress(data) + packer.flush())


# Every member: made on Unix (3), zip 2.0, deflated (8), 1980-01-01 00:00:00, mode 0644.
_VERSION, _SYSTEM, _DEFLATED, _TIME, _DATE = 20, 3, 8, 0, (0 << 9) | (1 << 5) | 1
_MODE = 0o644 << 16
_LOCAL = struct.Struct("<4s2B4HL2L2H")
_CENTRAL = struct.Struct("<4s4B4HL2L5H2L")
_END = struct.Struct("<4s4H2LH")


def zip_package(members: Iterable[tuple[str, Member]]) -> bytes:
    """A zip of already deflated members, byte for byte what :mod:`zipfile` writes for them with
    fixed times (names are ASCII; packages this small never need zip64)."""
    out: list[bytes] = []
    central: list[bytes] = []
    offset = 0
    count = 0
    for name, m in members:
        raw = name.encode("ascii")
        local = _LOCAL.pack(b"PK\x03\x04", _VERSION, 0, 0, _DEFLATED, _TIME, _DATE, m.crc, len(m.data), m.size,
                            len(raw), 0)
        central.append(_CENTRAL.pack(b"PK\x01\x02", _VERSION, _SYSTEM, _VERSION, 0, 0, _DEFLATED, _TIME, _DATE, m.crc,
                                     len(m.data), m.size, len(raw), 0, 0, 0, 0, _MODE, offset) + raw)
        out += (local, raw, m.data)
        offset += len(local) + len(raw) + len(m.data)
        count += 1
    directory = b"".join(central)
    out += (directory, _END.pack(b"PK\x05\x06", 0, 0, count, count, len(directory), offset, 0))
    return b"".join(out)


__all__ = ["BODY_PT", "FONT", "LANG", "MARGINS", "PAGE_H", "PAGE_W", "TEXT_W", "Member", "Skeleton", "compress",
           "skeleton", "zip_package"]
