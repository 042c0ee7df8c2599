"""The compile stage's floor: bare xlsxwriter writing a summary workbook's own cells.

Shared by ``bench_cycle.py`` and ``bench_compile.py``. The cells (every text, number, formatted
blank, and formula with its cached result) are read from the workbook ``danvan compile`` wrote, then
only their writing is timed: xlsxwriter in ``constant_memory`` mode, one format, sheets of the same
names. No ledger, no model, no layout, no charts: the library's own cost for the same cells.
"""

from __future__ import annotations

import html
import io
import re
import time
import zipfile
from pathlib import Path
from typing import Any

import xlsxwriter
from xlsxwriter.utility import xl_cell_to_rowcol

_CELL = re.compile(rb'<c r="([A-Z]+)([0-9]+)"([^>]*?)(?:/>|>(.*?)</c>)', re.DOTALL)
_SI = re.compile(rb"<si>(.*?)</si>", re.DOTALL)
_T = re.compile(rb"<t[^>]*>(.*?)</t>", re.DOTALL)
_FORMULA = re.compile(rb"<f[^>]*>(.*?)</f>", re.DOTALL)
_VALUE = re.compile(rb"<v>(.*?)</v>", re.DOTALL)


def _xml_text(raw: bytes) -> str:
    return html.unescape(raw.decode())


def summary_cells(path: Path) -> list[tuple[str, list[tuple[int, int, str, Any, Any]]]]:
    """Every cell of the summary workbook's sheets: (sheet name, [(row, col, kind, value, cached)]),
    kind "s" text, "n" number, "b" formatted blank, "f" formula (value = its text, cached = its cached result)."""
    with zipfile.ZipFile(path) as zf:
        workbook = zf.read("xl/workbook.xml")
        names = [_xml_text(m) for m in re.findall(rb'<sheet [^>]*?name="([^"]+)"', workbook)]
        strings = [_xml_text(b"".join(_T.findall(si))) for si in _SI.findall(zf.read("xl/sharedStrings.xml"))]
        out = []
        for i, name in enumerate(names, start=1):
            cells = []
            for letters, digits, attrs, inner in _CELL.findall(zf.read(f"xl/worksheets/sheet{i}.xml")):
                row, col = xl_cell_to_rowcol((letters + digits).decode())
                inner = inner or b""
                value = _VALUE.search(inner)
                formula = _FORMULA.search(inner)
                if formula:
                    cached = _xml_text(value.group(1)) if value else 0
                    cells.append((row, col, "f", "=" + _xml_text(formula.group(1)), cached))
                elif b't="s"' in attrs and value:
                    cells.append((row, col, "s", strings[int(value.group(1))], None))
                elif value:
                    cells.append((row, col, "n", float(value.group(1)), None))
                else:  # a formatted empty cell
                    cells.append((row, col, "b", None, None))
            out.append((name, cells))
    return out


def floor_compile(summary: Path) -> float:
    """Bare xlsxwriter (constant_memory, one format) writing the summary's own cells: every text,
    number, formatted blank and formula with its cached result, on sheets of the same names. No
    ledger, no model, no layout, no charts: only the library's cost for the same cells."""
    sheets = summary_cells(summary)
    start = time.perf_counter()
    book = xlsxwriter.Workbook(io.BytesIO(), {"constant_memory": True, "strings_to_formulas": False,
                                              "strings_to_numbers": False, "strings_to_urls": False})
    fmt = book.add_format({"font_name": "Times New Roman", "num_format": "#,##0"})
    for name, cells in sheets:
        sheet = book.add_worksheet(name)
        for row, col, kind, value, cached in cells:
            if kind == "s":
                sheet.write_string(row, col, value, fmt)
            elif kind == "n":
                sheet.write_number(row, col, value, fmt)
            elif kind == "b":
                sheet.write_blank(row, col, None, fmt)
            else:
                sheet.write_formula(row, col, value, fmt, cached)
    book.close()
    return time.perf_counter() - start
