"""The summary workbook's cell formats, created once per workbook (xlsxwriter formats are
workbook-wide): titles, headers, text cells, status colours, and number formats per column kind
and row role (unit, excluded unit, block subtotal, grand total).
"""

from __future__ import annotations

from typing import Any

from xlsxwriter.workbook import Workbook

FONT = "Times New Roman"

_BORDER = {"border": 1, "border_color": "#808080"}


class Styles:
    """The workbook's cell formats, created once (xlsxwriter formats are workbook-wide)."""

    HEAD_FILL, TOTAL_FILL, BLOCK_FILL = "#DDEBF7", "#FCE4D6", "#F2F2F2"
    INVALID_FILL, INPUT_FILL, WARN_FILL = "#F8CBAD", "#FFF2CC", "#FFE699"

    def __init__(self, wb: Workbook) -> None:
        self.wb = wb
        self._cache: dict[tuple[Any, ...], Any] = {}
        base = {"font_name": FONT, "font_size": 11, "valign": "vcenter"}
        self.base = base
        add = wb.add_format
        cell = {**base, **_BORDER}
        self.title = add({**base, "bold": True, "font_size": 14, "align": "center", "text_wrap": True})
        self.title_left = add({**base, "bold": True, "font_size": 13})
        self.subtitle = add({**base, "italic": True, "align": "center", "text_wrap": True})
        self.subtitle_left = add({**base, "italic": True})
        self.head = add({**cell, "bold": True, "align": "center", "text_wrap": True, "bg_color": self.HEAD_FILL})
        self.head_small = add({**cell, "italic": True, "align": "center", "text_wrap": True, "font_size": 10,
                               "bg_color": self.HEAD_FILL})
        self.head_code = add({**cell, "align": "center", "font_size": 8, "font_color": "#595959",
                              "bg_color": self.HEAD_FILL, "text_wrap": True})
        self.text = add({**cell, "text_wrap": True})
        self.center = add({**cell, "align": "center", "text_wrap": True})
        self.bold = add({**cell, "bold": True, "text_wrap": True})
        self.untrusted = add({**cell, "text_wrap": True, "quote_prefix": True})
        self.paragraph = add({**cell, "text_wrap": True, "valign": "top", "quote_prefix": True})
        self.small = add({**cell, "text_wrap": True, "valign": "top", "font_size": 9, "quote_prefix": True})
        self.untrusted_center = add({**cell, "align": "center", "text_wrap": True, "quote_prefix": True})
        self.note = add({**base, "italic": True, "font_size": 10, "text_wrap": True, "valign": "top"})
        self.note_red = add({**base, "italic": True, "bold": True, "font_size": 10, "text_wrap": True,
                             "font_color": "#C00000", "valign": "top"})
        self.plain = add({**base})
        self.plain_bold = add({**base, "bold": True})
        self.plain_center = add({**base, "align": "center"})
        self.plain_center_bold = add({**base, "align": "center", "bold": True})
        self.link = add({**base, "font_color": "#1F4E79", "underline": 1})
        self.datetime = add({**cell, "align": "center", "num_format": "dd/mm/yyyy hh:mm"})
        self.input = add({**cell, "bg_color": self.INPUT_FILL, "locked": False, "num_format": "0.0#", "align": "center"})
        self.input_text = add({**cell, "bg_color": self.INPUT_FILL, "locked": False, "text_wrap": True})
        self.invalid = add({**cell, "bg_color": self.INVALID_FILL})
        self.code = add({**cell, "align": "center", "shrink": True})
        self.count_center = add({**cell, "align": "center", "num_format": "#,##0", "bold": True})
        self.status = {s: add({**cell, "align": "center", "text_wrap": True, **style}) for s, style in (
            ("accepted", {"font_color": "#375623"}), ("with_errors", {"font_color": "#C00000", "bold": True}),
            ("conflict", {"font_color": "#C65911", "bold": True}), ("missing", {"font_color": "#7F7F7F", "italic": True}),
        )}
        self.status_included_with_errors = add({**cell, "align": "center", "bold": True, "font_color": "#C00000",
                                                "bg_color": self.WARN_FILL, "text_wrap": True})

    def number(self, kind: str, places: int, role: str = "unit") -> Any:
        """Number format for a column kind; ``role`` is unit | excluded | block | total."""
        key = ("num", kind, places, role)
        if key not in self._cache:
            if kind == "ratio":
                num_format = "0.0%"
            elif kind == "count":
                num_format = "#,##0"
            else:
                num_format = "#,##0" + ("." + "0" * places if places else "")
            props = {**self.base, **_BORDER, "num_format": num_format, "align": "right"}
            props |= self._role(role)
            self._cache[key] = self.wb.add_format(props)
        return self._cache[key]

    def signed(self, kind: str, places: int) -> Any:
        """A change: "+12", "−3", "+2,5%" (Tăng (+), giảm (−))."""
        key = ("signed", kind, places)
        if key not in self._cache:
            body = "0.0%" if kind == "ratio" else "#,##0" + ("." + "0" * places if places else "")
            self._cache[key] = self.wb.add_format({**self.base, **_BORDER, "align": "right",
                                                   "num_format": f"+{body};-{body};{body}"})
        return self._cache[key]

    def fit(self, role: str) -> Any:
        """Centred text shrunk to the column width (short labels of total rows)."""
        key = ("fit", role)
        if key not in self._cache:
            self._cache[key] = self.wb.add_format({**self.base, **_BORDER, "align": "center", "shrink": True}
                                                  | self._role(role))
        return self._cache[key]

    def label(self, role: str, *, align: str = "left") -> Any:
        key = ("label", role, align)
        if key not in self._cache:
            role_props = {k: v for k, v in self._role(role).items() if k != "shrink"}  # wrap, not shrink
            props = {**self.base, **_BORDER, "text_wrap": True, "align": align} | role_props
            self._cache[key] = self.wb.add_format(props)
        return self._cache[key]

    def na(self, role: str) -> Any:
        key = ("na", role)
        if key not in self._cache:
            props = {**self.base, **_BORDER, "align": "center", "font_size": 9, "shrink": True,
                     "italic": True, "font_color": "#7F7F7F"} | {k: v for k, v in self._role(role).items() if k != "italic"}
            self._cache[key] = self.wb.add_format(props)
        return self._cache[key]

    def _role(self, role: str) -> dict[str, Any]:
        return {
            "unit": {}, "excluded": {"font_color": "#808080", "italic": True},
            "block": {"bold": True, "bg_color": self.BLOCK_FILL, "shrink": True},
            "total": {"bold": True, "bg_color": self.TOTAL_FILL, "shrink": True},
        }[role]
