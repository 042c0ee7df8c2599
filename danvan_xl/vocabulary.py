"""Names shared by every stage: field kinds, value states, sheet names, severities.

Keeping them here stops string literals from spreading (the pyxform ``constants.py`` habit).
"""

from __future__ import annotations

from enum import StrEnum


class Kind(StrEnum):
    """Field kinds of a form definition (design.md §3.1)."""

    COUNT = "count"
    DECIMAL = "decimal"
    PERCENT = "percent"
    TEXT = "text"
    PARAGRAPH = "paragraph"
    CHOICE = "choice"
    YESNO = "yesno"
    DATE = "date"
    TABLE = "table"


NUMERIC_KINDS = frozenset({Kind.COUNT, Kind.DECIMAL, Kind.PERCENT})
TEXT_KINDS = frozenset({Kind.TEXT, Kind.PARAGRAPH, Kind.CHOICE, Kind.YESNO})


class ValueState(StrEnum):
    """The state of one reported value. Blank is never silently 0."""

    VALUE = "value"
    BLANK = "blank"
    NA = "na"  # "không phát sinh"
    INVALID = "invalid"


class Severity(StrEnum):
    ERROR = "error"
    WARNING = "warning"
    INFO = "info"


SEVERITY_VI = {Severity.ERROR: "Lỗi", Severity.WARNING: "Cảnh báo", Severity.INFO: "Thông tin"}

#: What a unit types for "not applicable"; matched after NFC and case folding.
NA_TEXT = "không phát sinh"
NA_ALIASES = ("không phát sinh", "kps", "k.p.s", "khong phat sinh")

YES = "Có"
NO = "Không"

# Sheet names of a generated template that are not section sheets.
SHEET_INSTRUCTIONS = "HuongDan"
SHEET_CHECKS = "KiemTra"
SHEET_LISTS = "_lists"
SHEET_META = "_meta"
SHEET_FEEDBACK = "Kết quả kiểm tra"  # first sheet of a feedback workbook (never read back)

# Custom document properties stamped into every template.
PROP_PREFIX = "danvan_"

# Unit kinds of a register and the summary blocks they belong to.
UNIT_KINDS = ("phong", "dvsn", "thi_tran", "xa", "phuong")
BLOCK_OFFICES = "Khối phòng, ban"
BLOCK_COMMUNES = "Khối xã, thị trấn"
UNIT_BLOCK = {
    "phong": BLOCK_OFFICES,
    "dvsn": BLOCK_OFFICES,
    "thi_tran": BLOCK_COMMUNES,
    "xa": BLOCK_COMMUNES,
    "phuong": BLOCK_COMMUNES,
}
