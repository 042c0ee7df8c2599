"""Vietnamese text helpers: NFC, folding, matching keys, number and date formatting.

Every string that crosses an I/O boundary goes through :func:`nfc` (domain.md §6.1). Display
text keeps its official spelling ("Hoà" and "Hòa" both exist); matching uses :func:`match_key`.
Numbers in prose use the Vietnamese convention: "." groups thousands, "," marks decimals.
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata

_DASHES = dict.fromkeys(map(ord, "\u2010\u2011\u2012\u2013\u2014\u2212"), "-")
_SPACES = dict.fromkeys(map(ord, "\u00a0\u2007\u202f\u3000\t"), " ")
_ZERO_WIDTH = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff"), None)
# C0/C1 control characters other than newline; they crash openpyxl and mean nothing in a report.
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_XML_ESCAPE = re.compile(r"_x([0-9A-Fa-f]{4})_")
# Tone placement: old style (hoà, thuỷ) and new style (hòa, thủy) are different letters even in
# NFC. For matching only we move the mark to the second vowel (domain.md §6.2).
_OLD2NEW = {
    "oà": "òa", "oá": "óa", "oả": "ỏa", "oã": "õa", "oạ": "ọa",
    "oè": "òe", "oé": "óe", "oẻ": "ỏe", "oẽ": "õe", "oẹ": "ọe",
    "uỳ": "ùy", "uý": "úy", "uỷ": "ủy", "uỹ": "ũy", "uỵ": "ụy",
}
_OLD2NEW_RE = re.compile("(?<!q)(" + "|".join(_OLD2NEW) + r")(?=\b)")


def nfc(text: str) -> str:
    """NFC-normalise and repair look-alikes (Icelandic Ð for Vietnamese Đ)."""
    text = unicodedata.normalize("NFC", text)
    return text.replace("\u00d0", "\u0110").replace("\u00f0", "\u0111")


_SPECIAL = re.compile("[\x00-\x1f\x7f-\x9f\u00a0\u2007\u202f\u3000\u200b-\u200d\u2060\ufeff\u00d0\u00f0\ud800-\udfff]|  |_x")
# Lone surrogates: what Python's decoders leave for undecodable bytes (e-mail headers in 8-bit, file
# names). They cannot be written as UTF-8 (SQLite, files, the terminal): clean_text drops them like
# control characters; no_surrogates shows them as U+FFFD (for names, where the mark tells a reader
# that bytes were lost).
_SURROGATE = re.compile("[\ud800-\udfff]")


def clean_text(text: str, *, multiline: bool = True) -> str:
    """Normalise text typed by a unit: NFC, NBSP, zero-width and control characters, CRLF.

    Excel's ``_x000D_`` escapes are decoded first so a carriage return is not stored literally.
    """
    if not _SPECIAL.search(text) and unicodedata.is_normalized("NFC", text) and text == text.strip():
        return text  # the common case, already clean: no work
    text = _XML_ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), text)
    text = _SURROGATE.sub("", text)
    text = nfc(text).translate(_ZERO_WIDTH).translate(_SPACES)
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _CONTROL.sub("", text)
    if not multiline:
        text = text.replace("\n", " ")
    lines = [re.sub(r" {2,}", " ", line).strip() for line in text.split("\n")]
    return "\n".join(lines).strip()


def no_surrogates(text: str) -> str:
    """``text`` with lone surrogates (undecodable bytes of a file name or header) as U+FFFD, so it
    can be stored in SQLite and printed; everything else unchanged."""
    return _SURROGATE.sub("\ufffd", text) if _SURROGATE.search(text) else text


def has_control_chars(text: str) -> bool:
    return bool(_CONTROL.search(text))


def match_key(text: str) -> str:
    """A key for lookup and de-duplication only, never for display."""
    text = clean_text(text, multiline=False).translate(_DASHES).lower()
    text = re.sub(r"\s+", " ", text)
    return _OLD2NEW_RE.sub(lambda m: _OLD2NEW[m.group(1)], text)


def fold(text: str) -> str:
    """ASCII folding: "Đồng Tháp" → "Dong Thap" (đ has no decomposition, so map it)."""
    decomposed = unicodedata.normalize("NFD", nfc(text))
    stripped = "".join(c for c in decomposed if unicodedata.category(c) != "Mn")
    return stripped.replace("đ", "d").replace("Đ", "D")


def slug(text: str, *, keep_case: bool = False) -> str:
    """An ASCII, file-system safe slug: "Báo cáo (1).xlsx" → "bao-cao-1-xlsx"."""
    folded = fold(text)
    if not keep_case:
        folded = folded.lower()
    return re.sub(r"[^A-Za-z0-9]+", "-", folded).strip("-") or "x"


def safe_filename(text: str) -> str:
    """An ASCII file name that is valid on Windows too (no ``\\ / : * ? " < > |``)."""
    base = fold(nfc(text))
    base = re.sub(r'[\\/:*?"<>|\x00-\x1f]+', "_", base).strip(" .")
    base = re.sub(r"\s+", "_", base)
    if re.fullmatch(r"(?i)(con|prn|aux|nul|com\d|lpt\d)(\..*)?", base):
        base = "_" + base
    return base[:120] or "tep"


# ---------------------------------------------------------------- numbers in prose

def format_int(value: int) -> str:
    """1234567 → "1.234.567"."""
    sign = "-" if value < 0 else ""
    return sign + f"{abs(int(value)):,}".replace(",", ".")


def format_count(value: int, *, pad_small: bool = False) -> str:
    """A count in prose; ``pad_small`` writes 5 as "05" (a drafting habit, domain.md §3.4)."""
    if pad_small and 0 < value < 10:
        return f"0{value}"
    return format_int(value)


def format_decimal(value: float, places: int = 2) -> str:
    """1234.5 → "1.234,5" (trailing zeros dropped)."""
    text = f"{value:,.{places}f}"
    whole, _, frac = text.partition(".")
    whole = whole.replace(",", ".")
    frac = frac.rstrip("0")
    return f"{whole},{frac}" if frac else whole


def format_number(value: float | int, places: int = 2) -> str:
    if isinstance(value, int) or float(value).is_integer():
        return format_int(int(value))
    return format_decimal(float(value), places)


def format_percent(ratio: float, places: int = 2) -> str:
    """0.8846 → "88,46%" (no space before %)."""
    text = f"{ratio * 100:.{places}f}".replace(".", ",")
    if "," in text:
        text = text.rstrip("0").rstrip(",")
    return text + "%"


_FULLWIDTH = {ord(c): ord("0") + i for i, c in enumerate("０１２３４５６７８９")}
_NUMBER_VI = re.compile(r"^[+-]?(\d{1,3}(\.\d{3})+|\d+)(,\d+)?$")
_NUMBER_DOT_DECIMAL = re.compile(r"^[+-]?\d+\.\d+$")


def parse_number_text(text: str) -> float | int | None:
    """Parse a number a unit typed as text, by Vietnamese rules; None if it is not a number.

    "05" → 5, "1.234" → 1234 (grouping), "1.234,5" → 1234.5, "12,5" → 12.5, "１２" → 12.
    "1.5" (a dot followed by other than three digits) is read as a decimal point.
    """
    s = clean_text(text, multiline=False).translate(_FULLWIDTH).replace(" ", "")
    if not s:
        return None
    if _NUMBER_VI.match(s):
        whole, _, frac = s.partition(",")
        whole = whole.replace(".", "")
        if frac:
            return float(f"{whole}.{frac}")
        return int(whole)
    if _NUMBER_DOT_DECIMAL.match(s):
        return float(s)
    return None


# ---------------------------------------------------------------- dates (Nghị định 30)

def nd30_day(day: int) -> str:
    return f"{day:02d}" if day < 10 else str(day)


def nd30_month(month: int) -> str:
    """Months 1 and 2 are zero-padded, the others are not ("tháng 01", "tháng 8")."""
    return f"{month:02d}" if month <= 2 else str(month)


def format_date_long(date: dt.date) -> str:
    """"ngày 05 tháng 01 năm 2020" per Nghị định 30/2020 (domain.md §3.3)."""
    return f"ngày {nd30_day(date.day)} tháng {nd30_month(date.month)} năm {date.year}"


def format_date_short(date: dt.date) -> str:
    return f"{date.day:02d}/{date.month:02d}/{date.year}"


def parse_date_text(text: str) -> dt.date | None:
    """Parse "14/12/2020", "14-12-2020" or ISO "2020-12-14"; never month-first."""
    s = clean_text(text, multiline=False)
    m = re.fullmatch(r"(\d{1,2})[/.-](\d{1,2})[/.-](\d{4})", s)
    try:
        if m:
            return dt.date(int(m.group(3)), int(m.group(2)), int(m.group(1)))
        m = re.fullmatch(r"(\d{4})-(\d{2})-(\d{2})", s)
        if m:
            return dt.date(int(m.group(1)), int(m.group(2)), int(m.group(3)))
    except ValueError:
        return None
    return None


def upper_vi(text: str) -> str:
    """Upper case for headings ("IN HOA"); safe for Vietnamese. Never use ``str.title()``."""
    return nfc(text).upper()
