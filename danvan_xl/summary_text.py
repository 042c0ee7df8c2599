"""Text for the district summary: unit text made safe for a cell, CSV cells, short names, sheet
names, and the estimate of how many wrapped lines a text takes (row heights, long-text splitting).

Also :func:`render_csv`, the indicator table as CSV.
"""

from __future__ import annotations

import csv
import datetime as dt
import functools
import io
import math
import re
import unicodedata
from collections.abc import Iterable, Sequence
from typing import Any

from .summary_model import IN, OUT, IndicatorColumn, Model, UnitRow, number_of, row_ratio
from .textnorm import format_date_short, format_int
from .vocabulary import NA_TEXT, ValueState

EXCEL_MAX_CHARS = 32_767
TRUNCATED = " … [đã cắt bớt: vượt giới hạn 32.767 ký tự của một ô Excel]"
# Excel's "_xHHHH_" escapes are handled by xlsxwriter; these characters are not valid XML at all.
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff]")
_SHORT_WORDS = (("Ủy ban nhân dân", "UBND"), ("Uỷ ban nhân dân", "UBND"), ("Hội đồng nhân dân", "HĐND"))


# ---------------------------------------------------------------------- safe text

def is_clean(text: str) -> bool:
    """True when :func:`safe_text` would return ``text`` unchanged (the common case, checked in C)."""
    return (len(text) <= EXCEL_MAX_CHARS // 2 and "\r" not in text and unicodedata.is_normalized("NFC", text)
            and not _has_control(text))


def _has_control(text: str) -> bool:
    """Whether :data:`_CONTROL` occurs in ``text``; printable text (tabs and newlines aside) has none,
    and ``isprintable`` is quicker than the regex on long paragraphs."""
    if text.isprintable() or text.replace("\n", " ").replace("\t", " ").isprintable():
        return False
    return _CONTROL.search(text) is not None


def safe_text(value: Any) -> str:
    """NFC, newlines normalised, control characters stripped, cut to Excel's cell limit with a marker."""
    text = unicodedata.normalize("NFC", str(value)).replace("\r\n", "\n").replace("\r", "\n")
    if _has_control(text):
        text = _CONTROL.sub("", text)
    if len(text) > EXCEL_MAX_CHARS // 2 and _utf16_len(text) > EXCEL_MAX_CHARS:
        text = _cut_utf16(text, EXCEL_MAX_CHARS - len(TRUNCATED)) + TRUNCATED
    return text


def _utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def _cut_utf16(text: str, limit: int) -> str:
    """The longest prefix of ``text`` that fits ``limit`` UTF-16 code units (Excel counts those)."""
    used = 0
    for i, ch in enumerate(text):
        used += 2 if ord(ch) > 0xFFFF else 1
        if used > limit:
            return text[:i]
    return text


def csv_cell(value: Any) -> str:
    """A CSV field; text that starts like a formula gets a leading ' (OWASP CSV injection)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return IN if value else OUT
    if isinstance(value, int | float):
        return format(value, "g") if isinstance(value, float) else str(value)
    text = safe_text(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def short_name(name: str, limit: int = 40) -> str:
    """"Ủy ban nhân dân xã Phú Đức" → "UBND xã Phú Đức" (standard abbreviations), for chart labels."""
    for long, short in _SHORT_WORDS:
        name = name.replace(long, short)
    return name if len(name) <= limit else name[: limit - 1].rstrip() + "…"


def header_footer(text: str) -> str:
    return text.replace("&", "&&")[:200]


def vn_datetime(value: dt.datetime) -> str:
    return f"{value:%H:%M} ngày {format_date_short(value.date())}"


def num_text(value: float, *, dot: bool = False) -> str:
    if float(value).is_integer():
        return str(int(value)) if dot else format_int(int(value))
    return repr(float(value)) if dot else f"{value:g}".replace(".", ",")


# ---------------------------------------------------------------------- wrapped lines (row heights)

def line_count(text: str, width: float) -> int:
    """Wrapped lines of ``text`` in a column ``width`` characters wide, for 11-point Times New Roman.

    Short lines are word-wrapped with per-letter widths (capitals are wide, i/l/t and spaces
    narrow); long paragraphs use the average Vietnamese letter width, which is close enough there.
    """
    capacity = max(1.0, width * 0.95 - 0.5)
    total = 0
    for line in (text or " ").split("\n"):
        if len(line) * 1.3 <= capacity:
            total += 1
        elif len(line) > capacity * 4:
            total += math.ceil(len(line) * 0.8 / max(1.0, capacity - 2))
        else:
            total += _wrap(line.split(" "), capacity)
    return total


def _wrap(words: Sequence[str], capacity: float) -> int:
    lines, used = 1, 0.0
    for w in map(_word_width, words):
        if used and used + 0.5 + w <= capacity:
            used += 0.5 + w
        elif used:
            lines, used = lines + 1, w
        else:
            used = w
        while used > capacity:  # a word longer than the line is broken by the spreadsheet
            lines, used = lines + 1, used - capacity
    return lines


@functools.lru_cache(maxsize=65536)
def line_count_cached(text: str, width: float) -> int:
    return line_count(text, width)


@functools.lru_cache(maxsize=8192)
def _word_width(word: str) -> float:
    return sum(_char_width(c) for c in word)


@functools.lru_cache(maxsize=1024)
def _char_width(ch: str) -> float:
    base = unicodedata.normalize("NFD", ch)[:1] or " "
    if base in "iljtfrI.,;:'|!()[]/\"" or ch in "“”‘’":
        return 0.5
    if base in "mwMW":
        return 1.4
    return 1.3 if base.isupper() else 0.9


def chunks(text: str, width: float, max_lines: int = 26) -> list[str]:
    """Split a long text at line (then word) boundaries into pieces that fit one 409-point row."""
    return [piece for piece, _lines in chunk_lines(text, width, max_lines)]


def chunk_lines(text: str, width: float, max_lines: int = 26) -> list[tuple[str, int]]:
    """:func:`chunks` with each piece's :func:`line_count` (a text's count is the sum of its lines')."""
    if not text:
        return [("", 1)]
    total = line_count(text, width)
    if total <= max_lines:
        return [(text, total)]
    pieces: list[tuple[str, int]] = []
    current: list[str] = []
    used = 0
    for line in _split_long(text.split("\n"), width, max_lines):
        n = line_count(line, width)
        if current and used + n > max_lines:
            pieces.append(("\n".join(current), used))
            current, used = [], 0
        current.append(line)
        used += n
    if current:
        pieces.append(("\n".join(current), used))
    return pieces


def _split_long(lines: Iterable[str], width: float, max_lines: int) -> Iterable[str]:
    limit = int(width * 1.15 * (max_lines - 1))
    for line in lines:
        while len(line) > limit:
            cut = line.rfind(" ", 0, limit)
            cut = cut if cut > limit // 2 else limit
            yield line[:cut]
            line = line[cut:].lstrip()
        yield line


def fit_words(text: str, limit: float) -> str:
    if len(text) <= limit:
        return text
    cut = text.rfind(" ", 0, int(limit) - 1)
    return text[: cut if cut > 0 else int(limit) - 1].rstrip(" ,;") + "…"


# ---------------------------------------------------------------------- names

def strip_parenthetical(text: str) -> str:
    return re.sub(r"\s*\([^)]*\)", "", text).strip()


def table_sheet_name(label: str) -> str:
    """"Danh sách mô hình “Dân vận khéo” (mỗi …)" → "Mô hình Dân vận khéo"."""
    name = strip_parenthetical(label)
    name = re.sub(r"[“”\"'\[\]:*?/\\]", "", name)
    name = re.sub(r"^(?i:danh sách)\s+", "", name).strip()
    return (name[:1].upper() + name[1:])[:31] or "Bảng"


def unique_sheet_name(name: str, taken: set[str]) -> str:
    name = re.sub(r"[\[\]:*?/\\]", "", name)[:31].strip("' ") or "Trang"
    candidate, i = name, 2
    while candidate.lower() in taken:
        suffix = f" ({i})"
        candidate = name[: 31 - len(suffix)] + suffix
        i += 1
    taken.add(candidate.lower())
    return candidate


def topic_name(label: str) -> str:
    """"Theo nội dung: tranh chấp đất đai" → "Tranh chấp đất đai"."""
    name = label.split(":", 1)[-1].strip()
    return name[:1].upper() + name[1:]


# ---------------------------------------------------------------------- CSV

def render_csv(model: Model) -> bytes:
    """The indicator table as CSV (UTF-8 with BOM for Excel): grand total, block rows, unit rows."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow(["loai_dong", "tt", "khoi", "ma_don_vi", "ten_don_vi", "tinh_trang", "tinh_vao_tong",
                     *(c.key for c in model.columns)])
    rows = model.rows
    writer.writerow(["tong_cong", "", "", "", "TỔNG CỘNG", f"{sum(1 for r in rows if r.included)}/{len(rows)}", "",
                     *(csv_cell(model.totals[c.key][1]) for c in model.columns)])
    for b, block in enumerate(model.blocks):
        writer.writerow(["cong_khoi", block.number, block.name, "", block.name,
                         f"{sum(1 for r in block.rows if r.included)}/{len(block.rows)}", "",
                         *(csv_cell(model.totals[c.key][0][b]) for c in model.columns)])
        for i, r in enumerate(block.rows, start=1):
            writer.writerow(["don_vi", i, block.name, csv_cell(r.unit.code), csv_cell(r.unit.name), r.mark(),
                             IN if r.included else OUT, *(csv_cell(_csv_value(r, c)) for c in model.columns)])
    return ("\ufeff" + buf.getvalue()).encode("utf-8")


def _csv_value(r: UnitRow, column: IndicatorColumn) -> Any:
    if column.ratio is not None:
        return row_ratio(r, column.ratio)
    v = r.value(column.key)
    if v is None:
        return None
    if v.state == ValueState.NA:
        return NA_TEXT
    return number_of(v)
