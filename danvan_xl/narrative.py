"""Narrative reports: the unit's and the district's "Báo cáo" written from the data.

The wording lives in Jinja2 templates next to the form (``<form>/narrative/*.md.j2``) so an office
can edit the phrasing without touching code. A template renders a small markdown-ish text that
:func:`parse_blocks` turns into a document model (headings, paragraphs, list items); the header,
signer and "Nơi nhận" are metadata built here. :mod:`docx_writer` lays the same :class:`Report`
out per Nghị định 30/2020 and :meth:`Report.to_markdown` gives its Markdown twin, so the numbers
and the sentences can never disagree between the two.

Block syntax of a rendered template: ``#``/``##``/``###`` headings (levels 1–3), ``####`` a
sub-heading, ``- `` a list item, blank lines between paragraphs, consecutive lines joined with a
space, and a leading ``\\`` making a line literal text. Text typed by units is printed between two
private-use marker characters, so a unit's "# …" line stays text and never becomes a heading.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import jinja2
from jinja2.sandbox import SandboxedEnvironment

from .errors import DanvanError
from .expr import NA
from .form import Form, Section
from .fsio import write_text_atomic
from .submission import PlainData, PlainSubmission, Submission, SubmissionData
from .textnorm import (
    clean_text,
    format_count,
    format_date_long,
    format_number,
    format_percent,
    match_key,
    nfc,
    safe_filename,
    upper_vi,
)
from .units import Register, Unit
from .vocabulary import NO, NUMERIC_KINDS, UNIT_BLOCK, YES, Kind
from .workspace import Office

QUOC_HIEU = "CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM"
TIEU_NGU = "Độc lập - Tự do - Hạnh phúc"
DOC_TYPE = "BÁO CÁO"
UNIT_TEMPLATE = "don_vi.md.j2"
DISTRICT_TEMPLATE = "tong_hop.md.j2"
BLANK_DAY = "ngày      tháng      năm"  # left for the văn thư to fill in when the report is signed
BLANK_NUMBER = "     "
COMMUNE_KINDS = {"xa": "xã", "thi_tran": "thị trấn", "phuong": "phường"}
_LEVEL_WORDS = ("thành phố", "thị xã", "quận", "huyện", "tỉnh", "thị trấn", "phường", "xã")

# XML 1.0 forbids these even after clean_text (lone surrogates, U+FFFE/U+FFFF): python-docx would
# crash on them. Our own marker characters are removed from input text too.
_XML_ILLEGAL = re.compile("[\ud800-\udfff\ufffe\uffff\ue000\ue001]")
# Private-use markers around text typed by units: inside them "#" never starts a heading.
_LIT_OPEN, _LIT_CLOSE = "\ue000", "\ue001"
_HEADING = re.compile(r"^(#{1,4})\s+(.*)$")
_SPACE_RUN = re.compile(r" {2,}")
_WHITE_SPACE = re.compile(r"\s+")
_ROMAN = re.compile(r"^[IVXLC]+$")


class NarrativeError(DanvanError):
    """A narrative template is missing or broken (the message names the file and line)."""


@dataclass(frozen=True)
class NarrativeOptions:
    """How numbers are written; where the wording templates are (default: ``<form>/narrative``)."""

    pad_small_counts: bool = True  # "05 đơn", "01 hộ" as in the seed (a drafting habit, domain.md §3.4)
    template_dir: Path | None = None


# ------------------------------------------------------------------ the document model

class BlockKind(StrEnum):
    HEADING = "heading"  # level 1: "I. …" (IN HOA), 2: "1. …", 3: "2.1. …"
    SUBHEADING = "subheading"  # an unnumbered sub-heading ("Nguyên nhân tồn tại, hạn chế")
    PARAGRAPH = "paragraph"
    ITEM = "item"  # a "- …" line


@dataclass(frozen=True)
class Block:
    kind: BlockKind
    text: str
    level: int = 0

    @property
    def display(self) -> str:
        """The text as printed: list items keep their dash, as in the seed."""
        return f"- {self.text}" if self.kind == BlockKind.ITEM else self.text


@dataclass(frozen=True)
class Signer:
    lines: tuple[str, ...]  # quyền hạn and chức vụ, IN HOA ("TM. ỦY BAN NHÂN DÂN", "CHỦ TỊCH")
    name: str = ""


@dataclass(frozen=True)
class Report:
    """One administrative report: header metadata, body blocks, recipients and signer."""

    parent: str  # cơ quan chủ quản (IN HOA), may be empty
    agency: str  # cơ quan ban hành (IN HOA)
    number: str  # "Số: 05/BC-VP"
    place_date: str  # "Tam Nông, ngày 14 tháng 12 năm 2020"
    subject: str  # trích yếu
    blocks: tuple[Block, ...]
    signer: Signer
    recipients: tuple[str, ...]  # each with its closing ";" or "."
    doc_type: str = DOC_TYPE
    year: int = 0
    date: dt.date | None = None  # signing date, when known
    code: str = ""  # unit code, or "" for the district report

    @property
    def timestamp(self) -> dt.datetime:
        """A fixed time for document properties: the signing date, else the end of the period."""
        day = self.date or dt.date(self.year or 2000, 12, 14)
        return dt.datetime(day.year, day.month, day.day, 8, 0, 0)

    @property
    def file_stem(self) -> str:
        """An ASCII, code-based file name without extension: "2020_TN-VP_bao-cao-dan-van"."""
        return f"{self.year}_{safe_filename(self.code) if self.code else 'tong-hop'}_bao-cao-dan-van"

    def body_texts(self) -> list[str]:
        return [b.display for b in self.blocks]

    def to_markdown(self) -> str:
        """The Markdown twin: the same text as the .docx, in reading order."""
        out = [_md(self.parent)] if self.parent else []
        out += [f"**{_md(self.agency)}**", _md(self.number), f"**{QUOC_HIEU}**", f"**{TIEU_NGU}**",
                f"*{_md(self.place_date)}*", f"# {_md(self.doc_type)}", f"**{_md(self.subject)}**"]
        for b in self.blocks:
            if b.kind == BlockKind.HEADING:
                out.append("#" * (b.level + 1) + " " + _md(b.text, start=False))
            elif b.kind == BlockKind.SUBHEADING:
                out.append(f"*{_md(b.text)}*")
            elif b.kind == BlockKind.ITEM:
                out.append("- " + _md(b.text))
            else:
                out.append(_md(b.text))
        out.append("***Nơi nhận:***")
        out.append("\n".join("- " + _md(r) for r in self.recipients))
        out += [f"**{_md(line)}**" for line in self.signer.lines]
        if self.signer.name:
            out.append(f"**{_md(self.signer.name)}**")
        return _merge_items("\n\n".join(out)) + "\n"


_MD_INLINE = re.compile(r"([\\`*_\[\]<>])")
_MD_ENTITY = re.compile(r"&(?=#?[A-Za-z0-9]+;)")
_MD_LINE_START = re.compile(r"^(#{1,6}(?=\s|$)|[-+*=>|~]|\d+(?=[.)]))")


def _md(text: str, *, start: bool = True) -> str:
    """Escape text for Markdown so it renders literally (and un-escapes to the .docx text)."""
    # (Replacement functions rather than r"\\\1" templates: a template is parsed again on every call.)
    text = _MD_ENTITY.sub(_escaped_amp, _MD_INLINE.sub(_escaped_group, text))
    if start and (m := _MD_LINE_START.match(text)):  # the pattern is anchored: at most one match, at 0
        # "2019. …" would start an ordered list: escape the dot; other markers get a leading backslash.
        mark = m.group(0)
        text = (mark + "\\" if mark[0].isdigit() else "\\" + mark) + text[m.end():]
    return text


def _escaped_group(m: re.Match[str]) -> str:
    return "\\" + m.group(1)


def _escaped_amp(_m: re.Match[str]) -> str:
    return "\\&"


def _merge_items(text: str) -> str:
    """Consecutive list items form one Markdown list (no blank line between them)."""
    return re.sub(r"(?m)^(- .*)\n\n(?=- )", r"\1\n", text)


def write_markdown(report: Report, path: Path, *, durable: bool = True) -> Path:
    """Write the Markdown twin of ``report`` atomically (UTF-8); ``durable`` as :func:`fsio.write_atomic`."""
    return write_text_atomic(path, report.to_markdown(), durable=durable)


def unescape_markdown(text: str) -> str:
    """Undo :func:`_md` escaping (used by tests to compare the twin with the .docx)."""
    return re.sub(r"\\(.)", r"\1", text)


# ------------------------------------------------------------------ text hygiene

def clean(text: Any, *, multiline: bool = True) -> str:
    """NFC, no control or XML-illegal characters, single spaces; never "None"."""
    if text is None or text is NA:
        return ""
    return _XML_ILLEGAL.sub("", clean_text(str(text), multiline=multiline))


def _protect(text: Any) -> _Raw:
    """Text typed by a unit: one paragraph per line, each wrapped in literal markers."""
    lines = [line for line in clean(text).split("\n") if line.strip()]
    return _Raw("\n\n".join(f"{_LIT_OPEN}{line}{_LIT_CLOSE}" for line in lines))


class _Raw(str):
    """Text that already follows the block syntax (a ``para`` result): printed as it is."""


class _Text(str):
    """A string typed by a unit: printed between literal markers so it cannot create headings."""


_CONTROL_KEEP_NL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff]")


_AS_IS = (_Raw, jinja2.Undefined)


def _finalize(value: Any) -> Any:
    """Every ``{{ … }}`` output: data is protected, template text keeps its spaces and line breaks."""
    if isinstance(value, _AS_IS):
        return value
    if isinstance(value, _Text):  # inline: one line (use the ``para`` filter for paragraphs)
        return _Raw(f"{_LIT_OPEN}{clean(value, multiline=False)}{_LIT_CLOSE}")
    if value is None:
        return ""
    if value is NA:
        return "không phát sinh"
    if isinstance(value, float):  # ints print as they are: {{ year }} is 2020, not 2.020
        return format_number(value)
    if type(value) is str or type(value) is int:  # the same words and numbers come back report after report
        done = _FINALIZED.get(value)
        if done is None:
            if len(_FINALIZED) >= _FINALIZED_MAX:
                _FINALIZED.clear()
            done = _FINALIZED[value] = _CONTROL_KEEP_NL.sub("", nfc(str(value)))
        return done
    return _CONTROL_KEEP_NL.sub("", nfc(str(value)))


_FINALIZED: dict[str | int, str] = {}
_FINALIZED_MAX = 20_000


def parse_blocks(text: str) -> list[Block]:
    """Turn a rendered template into blocks (see the module docstring for the syntax)."""
    blocks: list[Block] = []
    buf: list[str] = []
    kind = BlockKind.PARAGRAPH

    def flush() -> None:
        joined = _join_lines(buf)
        if joined:
            blocks.append(Block(kind, joined))
        buf.clear()

    for raw in text.splitlines():
        line = raw.strip()
        literal = line.startswith(_LIT_OPEN)
        bare = line.replace(_LIT_OPEN, "").replace(_LIT_CLOSE, "").strip()
        if not bare:
            flush()
            continue
        heading = None if literal else _HEADING.match(line)
        if heading:
            flush()
            level, title = len(heading.group(1)), _join_lines([heading.group(2)])
            if title:
                blocks.append(Block(BlockKind.SUBHEADING, title) if level == 4 else Block(BlockKind.HEADING, title, level))
        elif bare.startswith("- ") and (literal or line.startswith("- ")):
            flush()
            kind = BlockKind.ITEM
            buf.append(line.replace("- ", "", 1))
        else:
            if not buf:
                kind = BlockKind.PARAGRAPH
            buf.append(line[1:] if line.startswith("\\") else line)
    flush()
    return blocks


def _join_lines(lines: list[str]) -> str:
    text = ""
    for line in lines:
        line = line.replace(_LIT_OPEN, "").replace(_LIT_CLOSE, "").strip()
        if not line:
            continue
        text = f"{text}{line}" if not text or line[0] in ",.;:)" else f"{text} {line}"
    return (_SPACE_RUN.sub(" ", text) if "  " in text else text).strip()


# ------------------------------------------------------------------ values seen by templates

_NUMBER_TYPES = (int, float)


def _is_num(value: Any) -> bool:
    return isinstance(value, _NUMBER_TYPES) and not isinstance(value, bool)


def _plain(value: Any) -> Any:
    if value is None or type(value) is int:  # the common cases first (bool is not int here)
        return value
    if isinstance(value, bool):  # a Có/Không answer read as a boolean
        return _Text(YES if value else NO)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        return _Text(clean(value))
    return value


_UNREAD = object()


class FieldValues:
    """Field id → plain value (number, text, date, ``NA`` or None), by attribute or key.

    Each value is made plain (:func:`_plain`) when first read and kept: a report reads a few of a
    submission's ~80 values, the district report some of them for thousands of units."""

    __slots__ = ("_raw", "_values")

    def __init__(self, values: Mapping[str, Any] | None = None) -> None:
        self._raw = dict(values) if values else {}
        self._values: dict[str, Any] = {}

    def _value(self, name: str) -> Any:
        value = self._values.get(name, _UNREAD)
        if value is _UNREAD:
            value = self._values[name] = _plain(self._raw.get(name))
        return value

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return self._value(name)

    __getitem__ = _value  # the same method, not a call through it: the district report reads ~1,000 per unit

    def get(self, name: str, default: Any = None) -> Any:
        value = self._value(name)
        return default if value is None else value


@dataclass(frozen=True)
class UnitView:
    """What templates know about a unit: its name and how to refer to its leaders."""

    code: str
    name: str
    kind: str
    role: str  # "van_phong" (runs the Ban Tiếp công dân), "uy_ban" (commune), "co_quan"
    level: str  # the administrative level word: "huyện", "xã", "thị trấn" …
    block: str
    head_title: str = ""

    @property
    def ubnd(self) -> str:
        return f"Ủy ban nhân dân {self.level}"


def unit_view(unit: Unit) -> UnitView:
    key = match_key(unit.name)
    if unit.kind in COMMUNE_KINDS:
        role, level = "uy_ban", COMMUNE_KINDS[unit.kind]
    else:
        # Luật Tiếp công dân 2013, Điều 13: the district's Ban Tiếp công dân belongs to its Văn phòng.
        is_office = key.startswith("văn phòng") and ("ủy ban nhân dân" in key or "ubnd" in key)
        role, level = ("van_phong" if is_office else "co_quan"), _admin_level(unit)
    return UnitView(unit.code, clean(unit.name, multiline=False), unit.kind, role, level, unit.block,
                    clean(unit.head_title, multiline=False))


def _admin_level(unit: Unit) -> str:
    for source in (unit.parent, unit.name):
        key = f" {match_key(source)} "
        for word in _LEVEL_WORDS:
            if f" {word} " in key:
                return word
    return "huyện"


# ------------------------------------------------------------------ Jinja filters and tests

def _amount(value: Any, unit: str = "", *, pad: bool) -> str:
    """5 → "05 đơn" (padding is an option), 1234 → "1.234 hồ sơ", 12.5 → "12,5 triệu đồng"."""
    if not _is_num(value):
        return ""
    text = format_count(int(value), pad_small=pad) if float(value).is_integer() else format_number(value)
    return f"{text} {unit}".strip()


def _qty(value: Any, unit: str = "", what: str = "", *, pad: bool) -> str:
    """A count in a clause: "03 đơn khiếu nại", "không có đơn khiếu nại", "không phát sinh …", or ""."""
    tail = f" {unit} {what}".rstrip() if what else ""
    if value is NA:
        return f"không phát sinh{tail}"
    if not _is_num(value):
        return ""
    if value == 0:
        return f"không có{tail}"
    return f"{_amount(value, unit, pad=pad)} {what}".strip()


def _change(current: Any, previous: Any, unit: str = "", year: Any = None, *, pad: bool, percent: bool = False) -> str:
    """"giảm 24 đơn so với năm 2019", "tăng 03 đơn (1,2%) …", "không thay đổi so với năm 2019"."""
    if not (_is_num(current) and _is_num(previous)):
        return ""
    since = f" so với năm {year}" if year else ""
    diff = current - previous
    if diff == 0:
        return f"không thay đổi{since}"
    word = "tăng" if diff > 0 else "giảm"
    share = f" ({format_percent(abs(diff) / previous)})" if percent and previous else ""
    return f"{word} {_amount(abs(diff), unit, pad=pad)}{share}{since}"


def _ratio(part: Any, whole: Any) -> str:
    """23 of 26 → "88,46%" (recomputed from counts, never averaged)."""
    if not (_is_num(part) and _is_num(whole)) or whole <= 0:
        return ""
    return format_percent(part / whole)


def _percent(value: Any) -> str:
    """A percent field's value (0–100) → "95,5%"."""
    return f"{format_number(value)}%" if _is_num(value) else ""


def _para(text: Any) -> _Raw:
    """Text typed by a unit: one paragraph per line, protected from the block syntax."""
    return _protect(text)


def _clauses(parts: Iterable[Any], sep: str = ", ") -> str:
    """Join the non-empty parts; ``x if cond`` parts that are undefined are skipped."""
    out = []
    for part in parts:
        if isinstance(part, jinja2.Undefined) or part is None:
            continue
        text = _WHITE_SPACE.sub(" ", str(part)).strip()
        if text:
            out.append(text)
    return sep.join(out)


def _and_list(items: Iterable[Any], last: str = " và ") -> str:
    names = [str(i) for i in items if str(i).strip()]
    if len(names) < 2:
        return "".join(names)
    return ", ".join(names[:-1]) + last + names[-1]


def _sentence(text: Any) -> str:
    """Capitalise the first letter and end with a full stop: "trong năm …" → "Trong năm … ."."""
    text = _WHITE_SPACE.sub(" ", str(text)).strip()
    if not text:
        return ""
    text = text[:1].upper() + text[1:]
    return text if text[-1] in ".:;!?" else text + "."


def _lower_first(text: Any) -> str:
    text = clean(text, multiline=False)
    return text[:1].lower() + text[1:]


def _no_title(_text: Any) -> str:
    raise NarrativeError("Không dùng bộ lọc 'title' trong mẫu câu chữ: nó viết hoa sai quy tắc Nghị định 30.")


def _environment(folder: Path, options: NarrativeOptions) -> SandboxedEnvironment:
    if not folder.is_dir():
        raise NarrativeError(f"Không tìm thấy thư mục mẫu câu chữ báo cáo {folder}")
    return _cached_environment(_resolved(folder), options.pad_small_counts)


@functools.lru_cache(maxsize=64)
def _resolved(folder: Path) -> Path:
    return folder.resolve()


class _Sandbox(SandboxedEnvironment):
    """The sandbox, with a short way to the public attributes of the objects made here for the
    templates (values, units, sections …) and of Jinja's own modules and loops: for those the
    sandbox's checks (no "_" attribute; no internals of functions, frames, generators; no
    ``str.format``) always pass, so the attribute is returned as the sandbox would return it."""

    def getattr(self, obj: Any, attribute: str) -> Any:
        if type(obj) in _TRUSTED and not attribute.startswith("_"):
            try:
                return getattr(obj, attribute)
            except AttributeError:
                pass  # the sandbox's own way: obj[attribute], else undefined
        return super().getattr(obj, attribute)

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        """A template's own macros are always safe to call (the sandbox's check looks for
        ``unsafe_callable`` / ``alters_data`` attributes, which a macro never has)."""
        if type(__obj) is jinja2.runtime.Macro:
            return __context.call(__obj, *args, **kwargs)
        return super().call(__context, __obj, *args, **kwargs)


@functools.lru_cache(maxsize=16)
def _cached_environment(folder: Path, pad: bool) -> SandboxedEnvironment:
    """Compiling the templates is most of the work; the loader still reloads a file edited since."""
    env = _Sandbox(
        loader=jinja2.FileSystemLoader(str(folder), encoding="utf-8"), autoescape=False,
        undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
        extensions=["jinja2.ext.do"], finalize=_finalize,
    )
    env.filters.update({
        "amount": lambda v, unit="": _amount(v, unit, pad=pad),
        "qty": lambda v, unit="", what="": _qty(v, unit, what, pad=pad),
        "change": lambda cur, prev, unit="", year=None, percent=False: _change(cur, prev, unit, year, pad=pad,
                                                                             percent=percent),
        "num": lambda v: format_number(v) if _is_num(v) else "",
        "ratio": _ratio, "percent": _percent, "para": _para, "clauses": _clauses, "and_list": _and_list,
        "lower_first": _lower_first, "sentence": _sentence, "upper": upper_vi, "title": _no_title,
    })
    env.tests.update({
        "positive": lambda v: _is_num(v) and v > 0,
        "zero": lambda v: _is_num(v) and v == 0,
        "na": lambda v: v is NA,
        "blank": lambda v: v is None or (isinstance(v, str) and not v.strip()),
        "reported": lambda v: v is NA or _is_num(v) or (isinstance(v, str) and bool(v.strip())),
    })
    return env


def _render(env: SandboxedEnvironment, name: str, context: dict[str, Any]) -> tuple[list[Block], Any]:
    """Render a template; return its blocks and the module (for its exported ``set`` variables)."""
    try:
        module = env.get_template(name).make_module(context)
        return parse_blocks(nfc(str(module))), module
    except jinja2.TemplateNotFound as err:
        raise NarrativeError(f"Thiếu tệp mẫu câu chữ '{err.name}' trong thư mục mẫu báo cáo") from err
    except jinja2.TemplateSyntaxError as err:
        raise NarrativeError(f"Mẫu câu chữ {err.name or name}, dòng {err.lineno}: lỗi cú pháp ({err.message})") from err
    except jinja2.TemplateError as err:
        raise NarrativeError(f"Mẫu câu chữ {name}: {err}") from err


def _exported(module: Any, name: str) -> Any:
    value = getattr(module, name, None)
    return None if isinstance(value, jinja2.Undefined) else value


class _Wording:
    """``wording("closing", unit_name=…)``: form.yaml wording with {placeholders} filled in."""

    def __init__(self, wording: Mapping[str, str], defaults: Mapping[str, Any]) -> None:
        self._wording = wording
        self._defaults = dict(defaults)

    def __call__(self, key: str, **extra: Any) -> str:
        text = self._wording.get(key, "")
        try:
            return text.format_map(_KeepMissing({**self._defaults, **extra}))
        except (ValueError, IndexError, AttributeError):  # a stray brace in form.yaml: print the text as written
            return text


class _KeepMissing(dict):
    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


# ------------------------------------------------------------------ shared header pieces

def _section_level(number: str) -> int:
    if _ROMAN.match(number):
        return 1
    return min(3, number.count(".") + 2)


@dataclass(frozen=True)
class ParagraphView:
    label: str
    text: str


@dataclass(frozen=True)
class SectionView:
    id: str
    number: str
    title: str
    level: int
    paragraphs: tuple[ParagraphView, ...] = ()
    fields: tuple[Any, ...] = ()

    @property
    def heading(self) -> str:
        title = upper_vi(self.title) if self.level == 1 else self.title
        return f"{self.number}. {title}"

    def field(self, field_id: str) -> Any:
        """The summary of one field of this section (district report), or None."""
        return next((f for f in self.fields if f.id == field_id), None)


def _numbered_sections(form: Form) -> list[Section]:
    return [s for s in form.sections if s.number]


def _number_line(so_ky_hieu: Any, abbr: str) -> str:
    text = clean(so_ky_hieu, multiline=False)
    text = re.sub(r"^s[ốo]\s*:?\s*", "", text, flags=re.IGNORECASE)
    if text:
        return f"Số: {text}"
    return f"Số:{BLANK_NUMBER}/BC" + (f"-{abbr}" if abbr else "")


def _place_date(place: str, date: dt.date | None, year: int) -> str:
    day = format_date_long(date) if date else f"{BLANK_DAY} {year}"
    return f"{clean(place, multiline=False) or '……'}, {day}"


def _as_date(value: Any) -> dt.date | None:
    if isinstance(value, dt.datetime):
        return value.date()
    return value if isinstance(value, dt.date) else None


def _recipients(lines: Iterable[Any]) -> tuple[str, ...]:
    """"- a;" lines as NĐ 30 writes them: a dash each, ";" after each, "." after the last."""
    items = []
    for raw in lines:
        for line in clean(raw).split("\n"):
            text = re.sub(r"^[-–—•+*]\s*", "", line.strip()).rstrip(" ;.,")
            if text:
                items.append(text)
    if not any(match_key(i).startswith("lưu") for i in items):
        items.append("Lưu: VT")
    return (*(f"{t};" for t in items[:-1]), f"{items[-1]}.")


# ------------------------------------------------------------------ the unit report

def unit_report(
    form: Form, unit: Unit, data: SubmissionData | PlainData, *, year: int, prev: Mapping[str, Any] | None = None,
    options: NarrativeOptions = NarrativeOptions(), collector: str = "",
) -> Report:
    """Write a unit's report from its submission, in the seed's outline and wording.

    :param prev: last year's values of this unit (field id → value), for tăng/giảm comparisons.
    :param collector: the collecting office's name, used in the default "Nơi nhận".
    """
    values = FieldValues(data.plain())
    view = unit_view(unit)
    env = _environment(options.template_dir or form.folder / "narrative", options)
    context = {
        "d": values, "p": FieldValues(prev), "unit": view, "year": year, "prev_year": year - 1,
        "sections": _unit_sections(form, values), "models": _model_rows(data), "collector": clean(collector),
        "wording": _Wording(form.wording, {"year": year, "unit_name": view.name}), "form_title": form.title,
    }
    blocks, module = _render(env, UNIT_TEMPLATE, context)
    date = _as_date(values.ngay_bao_cao)
    default_recipients = _exported(module, "noi_nhan_mac_dinh") or [collector or f"Phòng Nội vụ {view.level}"]
    return Report(
        parent=clean(unit.parent, multiline=False), agency=clean(unit.agency_line, multiline=False),
        number=_number_line(values.so_ky_hieu, unit.abbr), place_date=_place_date(unit.place, date, year),
        subject=clean(_exported(module, "trich_yeu") or context["wording"]("trich_yeu"), multiline=False),
        blocks=tuple(blocks), signer=_unit_signer(unit, values),
        recipients=_recipients([values.noi_nhan] if values.noi_nhan else default_recipients),
        year=year, date=date, code=unit.code,
    )


def _unit_sections(form: Form, values: FieldValues) -> list[SectionView]:
    out = []
    for s, level, paragraph_fields in _outline(form):
        paragraphs = tuple(ParagraphView(label, text) for fid, label in paragraph_fields
                           if isinstance(text := values[fid], str) and text.strip())
        out.append(SectionView(s.id, s.number, s.title, level, paragraphs))
    return out


@functools.lru_cache(maxsize=16)
def _outline(form: Form) -> tuple[tuple[Section, int, tuple[tuple[str, str], ...]], ...]:
    """The numbered sections of a loaded form (forms compare by identity), each with its level and
    its paragraph fields (id, label), in order: the same for every unit report."""
    return tuple((s, _section_level(s.number), tuple((fid, form.fields[fid].label) for fid in s.fields
                                                     if form.fields[fid].kind == Kind.PARAGRAPH))
                 for s in _numbered_sections(form))


def _model_rows(data: SubmissionData | PlainData, table: str = "dvk_mo_hinh") -> list[FieldValues]:
    rows = [FieldValues(r) for r in data.rows(table)]
    return [r for r in rows if isinstance(r.ten_mo_hinh, str) and r.ten_mo_hinh.strip()]


def _unit_signer(unit: Unit, values: FieldValues) -> Signer:
    """Quyền hạn + chức vụ per NĐ 30: "TM. ỦY BAN NHÂN DÂN / KT. CHỦ TỊCH / PHÓ CHỦ TỊCH"."""
    power = clean(values.nguoi_ky_quyen_han, multiline=False).upper()
    title = upper_vi(clean(values.nguoi_ky_chuc_vu, multiline=False) or unit.head_title)
    head = upper_vi(unit.head_title)
    collective = clean(unit.authority, multiline=False)
    lines: list[str] = []
    if collective.upper().startswith("TM."):
        lines.append(upper_vi(collective))
    elif power == "TM.":
        lines.append(f"TM. {clean(unit.agency_line, multiline=False)}")
    if power in ("KT.", "TL.", "TUQ.") and head and head != title:
        lines.append(f"{power} {head}")
    lines.append(f"Q. {title}" if power == "Q." and not title.startswith("Q.") else title)
    return Signer(tuple(line for line in lines if line), clean(values.nguoi_ky_ho_ten, multiline=False))


# ------------------------------------------------------------------ the district report

@dataclass(frozen=True)
class DistrictInput:
    """What the district report is written from (current accepted submissions and the chase lists)."""

    office: Office
    register: Register
    year: int
    submissions: Sequence[Submission | PlainSubmission]  # unit_code, errors and data (plain() and rows()) are read
    missing: Sequence[Unit]
    with_errors: Sequence[Unit]
    prev_totals: Mapping[str, Any] | None = None  # last year's district totals per field id
    date: dt.date | None = None  # signing date, when known
    number: str = ""  # số, ký hiệu, when registered


@dataclass(frozen=True)
class FieldSummary:
    """One field across units: the total when summable, else each unit's value."""

    id: str
    label: str
    unit: str
    kind: str
    summable: bool
    total: Any = None
    prev: Any = None
    values: tuple[tuple[UnitView, Any], ...] = ()  # units that reported a value or NA
    options: tuple[tuple[str, tuple[UnitView, ...]], ...] = ()  # choice / Có-Không answers
    reported: int = 0

    @property
    def numeric(self) -> bool:
        return self.kind in NUMERIC_KINDS

    @property
    def positive(self) -> list[tuple[UnitView, Any]]:
        return list(self._positive)

    @functools.cached_property
    def _positive(self) -> tuple[tuple[UnitView, Any], ...]:
        """Found once: templates ask for ``positive`` several times (each still gets its own list)."""
        return tuple((u, v) for u, v in self.values if _is_num(v) and v > 0)


@dataclass(frozen=True)
class GradeRow:
    label: str
    band: str  # "từ 70 đến dưới 90 điểm"
    units: tuple[UnitView, ...]


def district_report(
    form: Form, inp: DistrictInput, *, options: NarrativeOptions = NarrativeOptions(),
) -> Report:
    """Write the collecting office's summary report: coverage, totals, comparisons, lists, grades."""
    office = inp.office
    order = {u.code: (u.order, u.code) for u in inp.register}
    subs = sorted(inp.submissions, key=lambda s: order.get(s.unit_code, (10**9, s.unit_code)))
    units = [_unit_of(inp.register, s.unit_code) for s in subs]
    rows = [(u, FieldValues(s.data.plain())) for u, s in zip(units, subs, strict=True)]
    prev_totals = FieldValues(inp.prev_totals)
    totals = {f.id: _total(f.id, rows) for f in form.scalar_fields() if f.summable}
    env = _environment(options.template_dir or form.folder / "narrative", options)
    area = clean(office.area, multiline=False)
    context = {
        "office": office, "office_name": clean(office.name, multiline=False), "area": area,
        "year": inp.year, "prev_year": inp.year - 1,
        "wording": _Wording(form.wording, {"year": inp.year, "unit_name": clean(office.name), "area": area}),
        "form_title": form.title, "units": rows, "pt": prev_totals,
        "t": FieldValues(totals),
        "sections": _district_sections(form, rows, prev_totals, totals),
        "p": FieldValues(), **_models(rows, subs), **_coverage(inp, subs), **_grades(form, rows),
    }
    blocks, module = _render(env, DISTRICT_TEMPLATE, context)
    recipients = office.recipients or _exported(module, "noi_nhan_mac_dinh") or []
    signer = Signer(tuple(upper_vi(clean(x, multiline=False)) for x in (office.signer_authority, office.signer_title)
                          if clean(x)), clean(office.signer_name, multiline=False))
    return Report(
        parent=clean(office.parent, multiline=False),
        agency=clean(office.header_name, multiline=False) or upper_vi(clean(office.name, multiline=False)),
        number=_number_line(inp.number, office.abbr), place_date=_place_date(office.place, inp.date, inp.year),
        subject=clean(_exported(module, "trich_yeu") or context["wording"]("trich_yeu"), multiline=False),
        blocks=tuple(blocks), signer=signer, recipients=_recipients(recipients), year=inp.year, date=inp.date,
    )


def _unit_of(register: Register, code: str) -> UnitView:
    unit = register.get(code)
    if unit is None:  # a submission from a unit no longer in the register: keep it, named by its code
        return UnitView(code, code, "", "co_quan", "huyện", UNIT_BLOCK["phong"])
    return unit_view(unit)


def _total(field_id: str, rows: Sequence[tuple[UnitView, FieldValues]]) -> Any:
    """Sum of the units' values; ``NA`` when every answer was "không phát sinh"; None when nobody answered."""
    answers = [v for _, d in rows if (v := d[field_id]) is NA or _is_num(v)]
    numbers = [v for v in answers if _is_num(v)]
    if numbers:
        return _plain(sum(numbers))
    return NA if answers else None


def _district_sections(form: Form, rows: Sequence[tuple[UnitView, FieldValues]], prev: FieldValues,
                       totals: Mapping[str, Any]) -> list[SectionView]:
    """The sections with a summary of each answered field; ``totals``: the summable fields' :func:`_total`."""
    out = []
    for s in _numbered_sections(form):
        summaries = [fs for fid in s.fields if (fs := _summarise(form.fields[fid], rows, prev, totals)) is not None]
        out.append(SectionView(s.id, s.number, s.title, _section_level(s.number), fields=tuple(summaries)))
    return out


def _summarise(f: Any, rows: Sequence[tuple[UnitView, FieldValues]], prev: FieldValues,
               totals: Mapping[str, Any]) -> FieldSummary | None:
    if f.kind in (Kind.PARAGRAPH, Kind.TABLE, Kind.TEXT, Kind.DATE) or f.prefill or f.computed:
        return None
    answered = [(u, v) for u, d in rows if (v := d[f.id]) is NA or _is_num(v) or isinstance(v, str)]
    if not answered:
        return None
    options: list[tuple[str, tuple[UnitView, ...]]] = []
    if f.kind in (Kind.CHOICE, Kind.YESNO):
        labels = dict.fromkeys(str(v) for _, v in answered if isinstance(v, str))
        options = [(label, tuple(u for u, v in answered if v == label)) for label in labels]
    summable = f.summable and f.kind in NUMERIC_KINDS
    return FieldSummary(
        f.id, f.label, f.unit, str(f.kind), summable, totals[f.id] if summable else None,
        prev[f.id] if summable else None, tuple(answered), tuple(options), len(answered),
    )


def _models(rows: Sequence[tuple[UnitView, FieldValues]], subs: Sequence[Submission | PlainSubmission]) -> dict[str, Any]:
    """The "Dân vận khéo" models per unit, and how many per lĩnh vực."""
    models = [(u, m) for (u, _), s in zip(rows, subs, strict=True) if (m := _model_rows(s.data))]
    fields: dict[str, int] = {}
    for _, rows_ in models:
        for r in rows_:
            if isinstance(r.linh_vuc, str) and r.linh_vuc:
                fields[r.linh_vuc] = fields.get(r.linh_vuc, 0) + 1
    return {"models": models, "model_total": sum(len(m) for _, m in models), "model_fields": list(fields.items())}


def _coverage(inp: DistrictInput, subs: Sequence[Submission | PlainSubmission]) -> dict[str, Any]:
    received = {s.unit_code for s in subs} | {u.code for u in inp.with_errors}
    register = list(inp.register)
    blocks = []
    for block in dict.fromkeys(u.block for u in register):
        members = [u for u in register if u.block == block]
        blocks.append({"name": block, "expected": len(members), "reported": sum(u.code in received for u in members)})
    errors = {s.unit_code: s.errors for s in subs}
    with_errors = [{"unit": unit_view(u), "errors": errors.get(u.code), "included": u.code in errors}
                   for u in inp.with_errors]
    return {"expected": len(register), "reported": len(received & {u.code for u in register}),
            "blocks": blocks, "missing": [unit_view(u) for u in inp.missing], "with_errors": with_errors}


def _grades(form: Form, rows: Sequence[tuple[UnitView, FieldValues]]) -> dict[str, Any]:
    rubric = form.rubric
    if rubric is None:
        return {"rubric": None, "grades": [], "ungraded": [], "graded": 0}
    by_label: dict[str, list[UnitView]] = {label: [] for _, label in rubric.grades}
    ungraded = []
    for unit, d in rows:
        total = d[rubric.total_field]
        scores = [d[c.score_field] for c in rubric.criteria]
        if not _is_num(total) and all(_is_num(s) for s in scores):
            total = sum(scores)
        label = d[rubric.grade_field] if d[rubric.grade_field] in by_label else None
        if label is None and _is_num(total):
            label = rubric.grade(total)
        if label is None:
            ungraded.append(unit)
        else:
            by_label[label].append(unit)
    grades = []
    upper = None
    for minimum, label in rubric.grades:
        grades.append(GradeRow(label, _band(minimum, upper), tuple(by_label[label])))
        upper = minimum
    return {"rubric": rubric, "grades": grades, "ungraded": ungraded, "graded": len(rows) - len(ungraded)}


def _band(minimum: float, upper: float | None) -> str:
    low, high = format_number(minimum), format_number(upper) if upper is not None else ""
    if upper is None:
        return f"từ {low} điểm trở lên"
    if minimum <= 0:
        return f"dưới {high} điểm"
    return f"từ {low} đến dưới {high} điểm"


# Objects whose public attributes templates read through :class:`_Sandbox`'s short way: none of them
# is a function, method, class, code, frame, traceback or generator, nor gives ``str.format``.
_TRUSTED = frozenset({FieldValues, UnitView, SectionView, ParagraphView, FieldSummary, GradeRow,
                      jinja2.environment.TemplateModule, jinja2.runtime.LoopContext})

__all__ = [
    "DISTRICT_TEMPLATE", "QUOC_HIEU", "TIEU_NGU", "UNIT_TEMPLATE", "Block", "BlockKind", "DistrictInput",
    "FieldValues", "NarrativeError", "NarrativeOptions", "Report", "Signer", "district_report", "parse_blocks",
    "unescape_markdown", "unit_report", "write_markdown",
]
