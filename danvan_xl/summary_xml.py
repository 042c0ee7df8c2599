"""Fast worksheet XML for the summary workbook: cells rendered when written, rows joined when saved.

xlsxwriter keeps every cell as a small named tuple in ``worksheet.table`` and serialises it through a
generic, attribute-escaping path: several microseconds per cell, and a summary of 10,000 units has
over a million cells. :class:`XlsxWorksheet` adds a second cell store beside xlsxwriter's: each
cell's ``<c>`` element is rendered once, when it is written, as a string with ``{k}`` where its
style index goes (``k`` numbers the cell's format, :class:`Shared`).

Style (xf) indices are only handed out by xlsxwriter while the file is saved, in the order cells
are met. So a sheet is saved in two phases: while some of its formats have no index yet, rows are
walked cell by cell and each format is asked for its index where xlsxwriter would ask; after that,
each row is one ``join`` and one ``format``. The XML is byte for byte what xlsxwriter writes for
the same calls. Cells xlsxwriter writes itself (merged ranges, links) stay in its table and are
interleaved in column order.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager
from itertools import groupby
from typing import Any

from xlsxwriter.utility import xl_col_to_name
from xlsxwriter.worksheet import Worksheet

ERROR_CODES = frozenset(("#DIV/0!", "#N/A", "#NAME?", "#NULL!", "#NUM!", "#REF!", "#VALUE!"))
LETTERS: list[str] = []  # column letters by index, grown on demand by letters()


def letters(col: int) -> str:
    """Column letters ("A", "AB") of a 0-based column, cached."""
    while len(LETTERS) <= col:
        LETTERS.append(xl_col_to_name(len(LETTERS)))
    return LETTERS[col]


def escape(text: str) -> str:
    """XML text content as xlsxwriter escapes it (``&``, ``<``, ``>``; quotes stay)."""
    if "&" in text or "<" in text or ">" in text:
        return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return text


@contextmanager
def no_cyclic_gc() -> Iterator[None]:
    """Pause the cyclic garbage collector (reference counting still frees everything).

    Rendering allocates millions of small objects and no reference cycles; each automatic full
    collection would walk the model's million objects again, which cost about a fifth of the time.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


class Shared:
    """What the stored sheets of one workbook share: a small number ``k`` per cell format with the
    style index found for it so far, and the short texts already known to be clean."""

    def __init__(self) -> None:
        self.ids: dict[int, int] = {}
        self.formats: list[Any] = [None]  # numbers start at 1, so that a number is never falsy
        self.xf: list[int | None] = [None]
        self.clean: set[str] = set()

    def number(self, fmt: Any) -> int:
        k = self.ids.get(id(fmt))
        if k is None:
            k = self.ids[id(fmt)] = len(self.formats)
            self.formats.append(fmt)
            self.xf.append(None)
        return k

    def resolve(self, k: int) -> int:
        """The style index of format ``k``, asked of xlsxwriter (which numbers formats as it meets them)."""
        index = self.xf[k]
        if index is None:
            index = self.xf[k] = self.formats[k]._get_xf_index()
        return index


class XlsxWorksheet(Worksheet):
    """xlsxwriter's worksheet with a pre-rendered cell store and no formula rewriting.

    ``write_formula`` rewrites Excel 2010+ function names (``_xlfn.`` prefixes) with one regex each;
    the summary only uses classic functions (IF, SUM, SUMIFS, COUNTIF(S), SUMPRODUCT, ISNUMBER, AND,
    OR, N, COUNT, ROWS), so with tens of thousands of row formulas that work is pure cost.
    """

    def __init__(self) -> None:
        super().__init__()
        self.cells: dict[int, dict[int, str]] = {}
        self.shared = Shared()  # replaced by the workbook-wide one (Sheet does it)
        self.used: set[int] = set()  # format numbers of this sheet's stored cells
        self.pending: set[int] = set()  # … that have no style index yet, while saving
        self._heights: dict[float, str] = {}

    def _prepare_formula(self, formula: str, expand_future_functions: bool = False) -> str:
        return formula[1:] if formula.startswith("=") else formula

    def row_cells(self, row: int, col: int) -> dict[int, str] | None:
        """The store of ``row`` after checking the cell is on the sheet (None when it is not), with
        the sheet's dimensions grown as xlsxwriter grows them and any cell it holds there dropped."""
        if row < 0 or col < 0 or row >= self.xls_rowmax or col >= self.xls_colmax:
            return None
        if self.dim_rowmin is None:
            self.dim_rowmin = self.dim_rowmax = row
            self.dim_colmin = self.dim_colmax = col
        else:
            if row < self.dim_rowmin:
                self.dim_rowmin = row
            elif row > self.dim_rowmax:
                self.dim_rowmax = row
            if col < self.dim_colmin:
                self.dim_colmin = col
            elif col > self.dim_colmax:
                self.dim_colmax = col
        theirs = self.table.get(row)
        if theirs and col in theirs:
            del theirs[col]  # the later write wins, as in xlsxwriter
        cells = self.cells.get(row)
        if cells is None:
            cells = self.cells[row] = {}
        return cells

    def forget(self, first_row: int, first_col: int, last_row: int, last_col: int) -> None:
        """Drop stored cells that xlsxwriter has just written over (a merged range, a link)."""
        for row in range(first_row, last_row + 1):
            cells = self.cells.get(row)
            for col in range(first_col, last_col + 1) if cells else ():
                cells.pop(col, None)

    def _write_rows(self) -> None:
        """The ``<row>`` elements, block of 16 rows by block of 16 rows (a block shares its ``spans``:
        first and last used column, as xlsxwriter computes them). Stored cells are freed as they go."""
        mine, theirs, notes, info = self.cells, self.table, self.comments, self.row_info
        used = {r for r, c in mine.items() if c} | {r for r, c in theirs.items() if c} | info.keys() | notes.keys()
        rows = sorted(r for r in used if self.dim_rowmin <= r <= self.dim_rowmax)
        self.pending = {k for k in self.used if self.shared.xf[k] is None}
        self.row_spans = {}
        plain = self._height_attributes(self.default_row_height)
        write, xf = self.fh.write, self.shared.xf
        args = tuple(map(str, xf))  # style indices as text, for format(); redone when one is added
        for block, group in groupby(rows, key=_block):
            members = [(row, mine.pop(row, None)) for row in group]
            low, high = 1 << 30, -1
            for row, cells in members:
                for source in (cells, theirs.get(row), notes.get(row)):
                    if source:
                        low, high = min(low, min(source)), max(high, max(source))
            span = f"{low + 1}:{high + 1}" if high >= 0 else None
            if span:
                self.row_spans[block] = span
            head = f'" spans="{span}"' if span else '"'
            for row, cells in members:
                row_info = info.get(row)
                extra = plain if row_info is None else self._height_attributes(row_info)
                if extra is None or theirs.get(row):  # an unusual row, or cells xlsxwriter holds
                    tag = None if extra is None else f'<row r="{row + 1}{head}{extra}'
                    self._write_mixed_row(row, span, tag, cells or {}, theirs.get(row) or {})
                    args = tuple(map(str, xf))
                elif not cells:
                    write(f'<row r="{row + 1}{head}{extra}/>')
                else:
                    pieces = [cells[c] for c in sorted(cells)]
                    body = "".join(pieces)
                    if self.pending and self._meets_pending(body):  # formats to be numbered: meet them in order
                        for piece in pieces:
                            self._meet(piece)
                        args = tuple(map(str, xf))
                    write(f'<row r="{row + 1}{head}{extra}>' + body.format(*args) + "</row>")

    def _meets_pending(self, body: str) -> bool:
        """Whether a cell of the row (its cells' XML) has a format still to be numbered (the others need nothing)."""
        return any(f's="{{{k}}}"' in body for k in self.pending)

    def _meet(self, piece: str) -> None:
        k = _format_number(piece)
        self.shared.resolve(k)
        self.pending.discard(k)

    def _write_mixed_row(self, row: int, span: str | None, tag: str | None, cells: dict[int, str],
                         other: dict[int, Any]) -> None:
        """A row xlsxwriter has a say in: its own cells or an unusual row (format, outline, hidden)."""
        if not cells and not other:
            self._write_empty_row(row, span, self.row_info.get(row))
            return
        if tag is None:
            self._write_row(row, span, self.row_info.get(row))
        else:
            self.fh.write(tag + ">")
        for col in sorted(cells.keys() | other.keys()):
            if col in cells:
                self._meet(cells[col])
                self.fh.write(cells[col].format(*self.shared.xf))
            else:
                self._write_cell(row, col, other[col])
        self._xml_end_tag("row")

    def _height_attributes(self, info: Any) -> str | None:
        """``ht``/``customHeight`` of a row (a height, or the RowInfo of ``set_row``) as xlsxwriter
        writes them; None for what only xlsxwriter writes (row format, outline, hidden, Excel 2010)."""
        if self.excel_version == 2010:
            return None
        if not isinstance(info, int | float):  # xlsxwriter's RowInfo
            if info.row_format is not None or info.hidden or info.level or info.collapsed:
                return None
            info = self.default_row_height if info.height is None else info.height
        text = self._heights.get(info)
        if text is None:
            custom = info != self.original_row_height or info != self.default_row_height
            text = self._heights[info] = f' ht="{info * 0.75:.16g}" customHeight="1"' if custom else ""
        return text


def _block(row: int) -> int:
    return row >> 4


def _format_number(piece: str) -> int:
    """``k`` of a pre-rendered cell ``<c r="B7" s="{k}"…``."""
    start = piece.index('s="{') + 4
    return int(piece[start:piece.index("}", start)])
