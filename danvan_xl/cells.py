"""The one place where raw cell content becomes a typed value (design.md §3.4).

Readers hand over whatever the spreadsheet program stored — floats for integers, text that holds
a number ("05", "1.234", " 12 ", full-width digits), NBSP and NFD text, Excel error values, formulas
typed by the unit, booleans, dates as serials — and get back a :class:`Value` with one of four
states plus findings with file, sheet, cell and field. A bad value is kept as INVALID with its raw
text: never stored as 0 or blank.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from difflib import get_close_matches
from typing import Any

from .findings import Finding
from .form import Column, Field
from .layout import Cell, TablePos
from .submission import Value
from .textnorm import clean_text, format_int, format_number, has_control_chars, match_key, parse_date_text, parse_number_text
from .vocabulary import NA_ALIASES, NA_TEXT, NO, NUMERIC_KINDS, YES, Kind, Severity, ValueState

EXCEL_MAX_STRING = 32_767  # characters per cell (Excel specifications and limits)
_NA_KEYS = {match_key(a) for a in NA_ALIASES}
_YES_KEYS = {match_key(a) for a in ("Có", "co", "x", "yes", "đã có", "true")}
_NO_KEYS = {match_key(a) for a in ("Không", "khong", "no", "chưa", "chưa có", "false")}
Special = tuple[str, str] | None  # ("formula", "=…") or ("error", "#DIV/0!")


class _Target:
    """What is being coerced: a scalar field or a table column (they share the rules)."""

    def __init__(self, fid: str, kind: Kind, label: str, *, na: bool = False, lo: float | None = None,
                 hi: float | None = None, max_length: int = 255, choices: tuple[str, ...] = (), required: bool = False) -> None:
        self.id, self.kind, self.label, self.na = fid, kind, label, na
        self.lo, self.hi, self.max_length, self.choices, self.required = lo, hi, max_length, choices, required


def target_for_field(f: Field, choices: tuple[str, ...] = (), max_string: int = EXCEL_MAX_STRING) -> _Target:
    return _Target(f.id, f.kind, f.label, na=f.na, lo=f.min, hi=f.max, max_length=min(f.max_length, max_string),
                   choices=choices, required=f.required)


ChoiceLists = dict[str, tuple[str, ...]]


def coerce_field(
    f: Field, raw: Any, special: Special, cell: Cell, file: str, lists: ChoiceLists,
    max_string: int = EXCEL_MAX_STRING,
) -> tuple[Value, list[Finding]]:
    """``max_string``: the workspace's cap on any text (``[limits] max_string``), below the field's own."""
    choices = (YES, NO) if f.kind == Kind.YESNO else lists.get(f.choices or "", ())
    return coerce(target_for_field(f, choices, max_string), raw, special, cell, file)


def coerce_column(
    table: Field, col: Column, raw: Any, special: Special, cell: Cell, file: str, lists: ChoiceLists,
    max_string: int = EXCEL_MAX_STRING,
) -> tuple[Value, list[Finding]]:
    choices = (YES, NO) if col.kind == Kind.YESNO else lists.get(col.choices or "", ())
    target = _Target(f"{table.id}.{col.id}", col.kind, f"{table.label} — {col.label}", lo=0.0,
                     max_length=min(col.max_length, max_string), choices=choices)
    return coerce(target, raw, special, cell, file)


def coerce(t: _Target, raw: Any, special: Special, cell: Cell, file: str) -> tuple[Value, list[Finding]]:
    findings: list[Finding] = []

    def finding(code: str, severity: Severity, message: str) -> None:
        findings.append(Finding(code, severity, message, file=file, sheet=cell.sheet, cell=cell.a1,
                                field=t.id.split(".")[0]))

    def value(state: ValueState, v: Any = None, raw_text: str | None = None) -> Value:
        return Value(t.id, state, v, raw_text, cell.sheet, cell.a1)

    label = f"“{t.label}”"
    if special and special[0] == "error":
        finding("excel-error", Severity.ERROR, f"Ô {label} chứa lỗi công thức {special[1]}; hãy nhập số liệu trực tiếp.")
        return value(ValueState.INVALID, None, special[1]), findings
    if special and special[0] == "formula" and raw in (None, ""):
        finding("uncalculated-formula", Severity.ERROR,
                f"Ô {label} chứa công thức {special[1][:80]} chưa được tính (tệp không được lưu bằng Excel/LibreOffice); "
                "hãy nhập số liệu trực tiếp rồi lưu lại.")
        return value(ValueState.INVALID, None, special[1]), findings
    if special and special[0] == "formula":
        shown = format_number(raw) if isinstance(raw, int | float) and not isinstance(raw, bool) else str(raw)
        finding("formula-in-input", Severity.WARNING,
                f"Ô {label} chứa công thức {special[1][:80]}; đã dùng giá trị tính được ({shown}). Nên nhập số liệu trực tiếp.")
    if raw is None or (isinstance(raw, str) and not clean_text(raw)):
        if t.required:
            finding("required-missing", Severity.ERROR, f"{label} chưa được điền.")
        return value(ValueState.BLANK), findings
    if t.kind in NUMERIC_KINDS:
        result = _number(t, raw, finding)
    elif t.kind == Kind.DATE:
        result = _date(t, raw, finding)
    elif t.kind in (Kind.CHOICE, Kind.YESNO):
        result = _choice(t, raw, finding)
    else:
        result = _text(t, raw, finding)
    state, v, raw_text = result
    return value(state, v, raw_text), findings


def _raw_text(raw: Any) -> str:
    if isinstance(raw, float) and raw.is_integer():
        return str(int(raw))
    return str(raw)


def _number(t: _Target, raw: Any, finding: Callable[[str, Severity, str], None]) -> tuple[ValueState, Any, str | None]:
    label = f"“{t.label}”"
    number: float | int | None
    raw_text: str | None = None
    if isinstance(raw, bool):
        finding("not-a-number", Severity.ERROR, f"{label} ghi {'TRUE' if raw else 'FALSE'}, không phải số.")
        return ValueState.INVALID, None, str(raw)
    if isinstance(raw, int | float):
        number = raw
    elif isinstance(raw, dt.date):
        finding("not-a-number", Severity.ERROR, f"{label} ghi ngày {raw:%d/%m/%Y}, không phải số.")
        return ValueState.INVALID, None, str(raw)
    else:
        text = clean_text(str(raw), multiline=False)
        if match_key(text) in _NA_KEYS:
            if not t.na:
                finding("na-not-allowed", Severity.ERROR, f"{label} không được ghi “{NA_TEXT}”; hãy nhập số (kể cả 0).")
                return ValueState.INVALID, None, text
            return ValueState.NA, None, None
        percent = t.kind == Kind.PERCENT and text.endswith("%")
        number = parse_number_text(text.rstrip("%").strip() if percent else text)
        raw_text = text
        if number is None:
            hint = f" Nếu không áp dụng, ghi “{NA_TEXT}”; nếu chưa có số liệu, để trống." if t.na else ""
            finding("not-a-number", Severity.ERROR, f"{label} ghi “{text[:60]}”, không phải số.{hint}")
            return ValueState.INVALID, None, text
        if text.replace(" ", "") != _raw_text(number):
            finding("number-as-text", Severity.INFO,
                    f"{label} được gõ dạng chữ “{text[:30]}”; đã đọc là {format_number(number)}.")
    if isinstance(number, float) and (number != number or number in (float("inf"), float("-inf"))):
        finding("not-a-number", Severity.ERROR, f"{label} không phải số hữu hạn.")
        return ValueState.INVALID, None, raw_text or _raw_text(raw)
    if t.kind == Kind.COUNT:
        if abs(number - round(number)) > 1e-9:
            finding("fractional-count", Severity.ERROR,
                    f"{label} là {format_number(number)}, có phần thập phân; số đếm phải là số nguyên.")
            return ValueState.INVALID, None, raw_text or _raw_text(raw)
        number = round(number)
    elif isinstance(number, float) and number.is_integer():
        number = int(number)
    if t.lo is not None and number < t.lo:
        what = "là số âm" if t.lo == 0 else f"nhỏ hơn {format_number(t.lo)}"
        finding("out-of-range", Severity.ERROR, f"{label} {what} ({format_number(number)}).")
        return ValueState.INVALID, None, raw_text or _raw_text(raw)
    if t.hi is not None and number > t.hi:
        finding("out-of-range", Severity.ERROR, f"{label} là {format_number(number)}, vượt mức tối đa {format_number(t.hi)}.")
        return ValueState.INVALID, None, raw_text or _raw_text(raw)
    if t.kind == Kind.PERCENT and 0 < number <= 1 and raw_text is None:
        as_percent = format_number(number * 100)
        finding("percent-fraction", Severity.WARNING,
                f"{label} là {format_number(number)}; nếu ý là {as_percent}%, hãy nhập {as_percent}.")
    return ValueState.VALUE, number, raw_text


def _date(t: _Target, raw: Any, finding: Callable[[str, Severity, str], None]) -> tuple[ValueState, Any, str | None]:
    label = f"“{t.label}”"
    if isinstance(raw, dt.datetime):
        return ValueState.VALUE, raw.date(), None
    if isinstance(raw, dt.date):
        return ValueState.VALUE, raw, None
    if isinstance(raw, int | float) and not isinstance(raw, bool) and 20000 <= raw <= 80000:
        return ValueState.VALUE, dt.date(1899, 12, 30) + dt.timedelta(days=int(raw)), None
    text = clean_text(str(raw), multiline=False)
    parsed = parse_date_text(text)
    if parsed is None:
        finding("not-a-date", Severity.ERROR, f"{label} ghi “{text[:40]}”, không phải ngày hợp lệ (dạng ngày/tháng/năm).")
        return ValueState.INVALID, None, text
    return ValueState.VALUE, parsed, text


def _choice(t: _Target, raw: Any, finding: Callable[[str, Severity, str], None]) -> tuple[ValueState, Any, str | None]:
    label = f"“{t.label}”"
    text = clean_text(_raw_text(raw), multiline=False)
    key = match_key(text)
    for option in t.choices:
        if match_key(option) == key:
            return ValueState.VALUE, option, None
    if t.kind == Kind.YESNO:
        if key in _YES_KEYS:
            return ValueState.VALUE, YES, text
        if key in _NO_KEYS:
            return ValueState.VALUE, NO, text
    close = get_close_matches(text, list(t.choices), n=1, cutoff=0.5)
    hint = f" Có phải “{close[0]}”?" if close else ""
    listed = ", ".join(t.choices[:6]) + ("…" if len(t.choices) > 6 else "")
    finding("not-in-list", Severity.ERROR, f"{label} ghi “{text[:60]}”, không có trong danh sách ({listed}).{hint}")
    return ValueState.INVALID, None, text


def _text(t: _Target, raw: Any, finding: Callable[[str, Severity, str], None]) -> tuple[ValueState, Any, str | None]:
    label = f"“{t.label}”"
    original = _raw_text(raw)
    text = clean_text(original, multiline=t.kind == Kind.PARAGRAPH)
    if has_control_chars(original.replace("\r", "").replace("\n", "").replace("\t", "")):
        finding("control-characters", Severity.INFO, f"{label} có ký tự điều khiển không in được; đã bỏ đi.")
    if len(text) > t.max_length:
        finding("too-long", Severity.ERROR,
                f"{label} dài {format_int(len(text))} ký tự, vượt giới hạn {format_int(t.max_length)} ký tự.")
        return ValueState.INVALID, text, text
    return ValueState.VALUE, text, None


def read_table(
    table: TablePos, get: Callable[[Cell], Any], special: dict[str, dict[str, tuple[str, str]]], file: str,
    lists: ChoiceLists, max_string: int = EXCEL_MAX_STRING,
) -> tuple[list[dict[str, Value]], list[Finding]]:
    """Filled rows of a repeating table (blank rows skipped), with findings."""
    f = table.field
    rows: list[dict[str, Value]] = []
    findings: list[Finding] = []
    for r in range(f.rows):
        raws = []
        for c in range(len(f.columns)):
            cell = table.cell(r, c)
            raws.append((cell, get(cell), special.get(cell.sheet, {}).get(cell.a1)))
        if all(raw in (None, "") or (isinstance(raw, str) and not clean_text(raw)) for _, raw, _ in raws):
            continue
        row: dict[str, Value] = {}
        for col, (cell, raw, sp) in zip(f.columns, raws, strict=True):
            value, problems = coerce_column(f, col, raw, sp, cell, file, lists, max_string)
            row[col.id] = value
            findings.extend(problems)
        key = f.columns[0]
        if row[key.id].state == ValueState.BLANK:
            cell = table.cell(r, 0)
            findings.append(Finding("table-row-without-key", Severity.ERROR,
                                    f"Dòng {r + 1} của bảng “{f.label}” có nội dung nhưng thiếu “{key.label}”.",
                                    file=file, sheet=cell.sheet, cell=cell.a1, field=f.id))
        rows.append(row)
    return rows, findings
