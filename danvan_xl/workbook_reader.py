"""Read a returned workbook (xlsx, xlsm, ods, xls) into a :class:`SubmissionData`.

Runs inside an isolated worker process (see :mod:`isolation`): a hostile file may crash the
native reader, and that must only cost this one file. Identity comes from the content — the
``_meta`` sheet, else the custom document properties, else the pre-filled unit cells — never from
the file name. Values are read by defined name, falling back to the template's known positions
when a program dropped the names (the outcome says so). Everything Excel was supposed to enforce
is checked again by :mod:`cells`.
"""

from __future__ import annotations

import functools
import html
import io
import re
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from xml.parsers import expat as xml_expat

import python_calamine

from . import cells
from .findings import Finding
from .form import Form
from .gate import ZIP_ERRORS, Rejected, Sniffed
from .layout import Cell, Layout, build_layout, col_letter
from .submission import SubmissionData, Value
from .textnorm import clean_text, format_int, match_key
from .vocabulary import PROP_PREFIX, SHEET_CHECKS, SHEET_FEEDBACK, SHEET_INSTRUCTIONS, SHEET_LISTS, SHEET_META, Severity
from .workspace import Limits

_REF = re.compile(r"^'?(?P<sheet>[^'!]+)'?!\$?(?P<col>[A-Z]{1,3})\$?(?P<row>\d+)(?::\$?[A-Z]{1,3}\$?\d+)?$")
_ODS_REF = re.compile(r"^\$?'?(?P<sheet>[^'.]+)'?\.\$?(?P<col>[A-Z]{1,3})\$?(?P<row>\d+)")
_DTD = re.compile(rb"<!DOCTYPE|<!ENTITY", re.IGNORECASE)
_MERGE = re.compile(rb'<mergeCell ref="([A-Z]+[0-9]+:[A-Z]+[0-9]+)"')
_DEFINED = re.compile(rb'<definedName[^>]*\bname="([^"]+)"[^>]*>([^<]*)</definedName>')
_ODS_NAMED = re.compile(rb'<table:named-range[^>]*?table:name="([^"]+)"[^>]*?table:cell-range-address="([^"]+)"'
                        rb'|<table:named-range[^>]*?table:cell-range-address="([^"]+)"[^>]*?table:name="([^"]+)"')
_CUSTOM_XLSX = re.compile(rb'<property[^>]*\bname="([^"]+)"[^>]*>\s*<vt:[a-z0-9]+>([^<]*)</vt:')
_CUSTOM_ODS = re.compile(rb'<meta:user-defined[^>]*meta:name="([^"]+)"[^>]*>([^<]*)</meta:user-defined>')
_CELL_XML = re.compile(rb'<c r="([A-Z]{1,3})([0-9]+)"([^>]*?)(?:/>|>(.*?)</c>)', re.DOTALL)
# What Excel, LibreOffice, WPS and xlsxwriter write for every cell; python-calamine places a cell by its "r".
_CANONICAL_CELL = re.compile(rb'<c r="([A-Z]{1,3})([0-9]{1,7})"')
# The start of an element named c (python-calamine matches the local name) in any other form: with a namespace
# prefix, or without ``r="B5"`` right after the name. None in a sheet means every cell is canonical.
_OTHER_CELL = re.compile(rb"""<(?:[^\s<>/="']*:c[\s/>]|c(?! r="[A-Z]{1,3}[0-9]{1,7}")[\s/>])""")
_CELL_START = re.compile(rb"""<(?:[^\s<>/="']*:)?c[\s/>]""")  # every start of an element named c
_SHEET_REL = re.compile(rb'<sheet [^>]*?name="([^"]+)"[^>]*?r:id="([^"]+)"')
_REL = re.compile(rb'<Relationship [^>]*?Id="([^"]+)"[^>]*?Target="([^"]+)"'
                  rb'|<Relationship [^>]*?Target="([^"]+)"[^>]*?Id="([^"]+)"')


@dataclass
class Book:
    """The parts of a workbook the reader needs, whatever program saved it."""

    kind: str
    sheet_names: list[str]
    states: dict[str, str]
    names: dict[str, tuple[str, str]]  # defined name → (sheet, A1 of its top-left cell)
    properties: dict[str, str]
    special: dict[str, dict[str, tuple[str, str]]]  # sheet → A1 → ("formula", text) | ("error", "#DIV/0!")
    _calamine: Any = None
    merges: dict[str, list[str]] = field(default_factory=dict)  # sheet → ["B5:E5", …] (xlsx only)
    _rows: dict[str, list[list[Any]]] = field(default_factory=dict)
    _offsets: dict[str, tuple[int, int]] = field(default_factory=dict)

    def rows(self, sheet: str) -> list[list[Any]]:
        if sheet not in self._rows:
            try:
                ws = self._calamine.get_sheet_by_name(sheet)
                self._rows[sheet] = ws.to_python(skip_empty_area=False)
            except BaseException as err:
                # python-calamine panics (a BaseException) on some values, e.g. a large negative number in
                # a date-formatted cell ("TimeDelta::milliseconds out of bounds"); that is this file's problem.
                if not _is_panic(err):
                    raise
                raise Rejected("damaged-file", f"trang '{sheet}' có giá trị không đọc được ({_short(err)}), thường là một "
                                               "ô ngày tháng chứa số âm rất lớn; đề nghị kiểm tra và lưu lại") from None
        return self._rows[sheet]

    def value(self, cell: Cell) -> Any:
        rows = self.rows(cell.sheet)
        if cell.row < len(rows):
            row = rows[cell.row]
            if cell.col < len(row):
                return row[cell.col]
        return None


@dataclass
class ReadResult:
    """What the worker sends back for one file."""

    ok: bool
    kind: str = ""
    code: str = ""
    message: str = ""
    identity: dict[str, str] = field(default_factory=dict)
    identity_source: str = ""
    data: SubmissionData | None = None
    findings: list[Finding] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    macros: bool = False


def open_book(data: bytes, sniffed: Sniffed, limits: Limits, needed: set[str]) -> Book:
    """Open with python-calamine and collect names, properties and formula/error cells.

    ``needed`` are the sheets that will be read: only their extent is checked before calamine
    loads them (a far-away cell makes calamine allocate the whole rectangle and abort). An .ods is
    checked strictly first: calamine parses its whole content at opening, and loops for minutes on
    some damaged ones (found by atheris)."""
    zf = ods_content = None
    try:
        if sniffed.kind in ("xlsx", "ods"):
            zf = sniffed.zip or zipfile.ZipFile(io.BytesIO(data))
        if sniffed.kind == "ods":
            ods_content = _ods_content(zf)
    except (*ZIP_ERRORS, KeyError, zlib.error) as err:
        raise Rejected("damaged-file", f"tệp bị hỏng ({_short(err)}); đề nghị mở bằng Excel rồi lưu lại, hoặc gửi lại") from err
    try:
        wb = python_calamine.CalamineWorkbook.from_filelike(io.BytesIO(data))
        states = {m.name: _state(m.visible) for m in wb.sheets_metadata}
        sheet_names = list(wb.sheet_names)
    except python_calamine.PasswordError as err:
        raise Rejected("encrypted", "tệp được đặt mật khẩu; đề nghị gửi lại bản không đặt mật khẩu") from err
    except python_calamine.CalamineError as err:
        raise Rejected("damaged-file", f"không đọc được bảng tính ({_short(err)}); đề nghị mở bằng Excel rồi lưu lại") from err
    except BaseException as err:
        # python-calamine panics (a BaseException) on some damaged files while opening them, e.g. an
        # .xls whose record lengths lie ("range start index … out of range"; found by atheris).
        if not _is_panic(err):
            raise
        raise Rejected("damaged-file", "cấu trúc tệp bị hỏng, trình đọc bảng tính không đọc được; "
                                       "đề nghị mở bằng Excel rồi lưu lại, hoặc gửi lại") from None
    book = Book(sniffed.kind, sheet_names, states, {}, {}, {}, wb)
    try:
        if sniffed.kind == "xlsx":
            assert zf is not None
            _xlsx_parts(book, zf, limits, needed)
        elif sniffed.kind == "ods":
            assert zf is not None and ods_content is not None
            _ods_parts(book, zf, ods_content)
        else:
            _xls_names(book, data)
    except (*ZIP_ERRORS, KeyError, zlib.error) as err:
        # A member shorter or longer than declared (lying sizes), a bad CRC, a missing part.
        raise Rejected("damaged-file", f"tệp bị hỏng ({_short(err)}); đề nghị mở bằng Excel rồi lưu lại, hoặc gửi lại") from err
    return book


def _is_panic(err: BaseException) -> bool:
    """A Rust panic inside python-calamine (pyo3's PanicException, a BaseException not exported by name)."""
    return type(err).__name__ == "PanicException"


def _short(err: BaseException) -> str:
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return text[:120]


def _state(visible: Any) -> str:
    name = str(visible).rsplit(".", 1)[-1]  # pyo3 enums have no .name: "SheetVisibleEnum.Hidden"
    return {"Visible": "visible", "Hidden": "hidden", "VeryHidden": "veryHidden"}.get(name, "visible")


def _xlsx_parts(book: Book, zf: zipfile.ZipFile, limits: Limits, needed: set[str]) -> None:
    members = set(zf.namelist())
    workbook = _no_dtd("xl/workbook.xml", zf.read("xl/workbook.xml"))
    for raw_name, raw_ref in _DEFINED.findall(workbook):
        _add_name(book, raw_name, raw_ref, _REF)
    if "docProps/custom.xml" in members:
        for name, value in _CUSTOM_XLSX.findall(_no_dtd("docProps/custom.xml", zf.read("docProps/custom.xml"))):
            book.properties[_unescape(name)] = _unescape(value)
    if "xl/sharedStrings.xml" in members:
        _well_formed("xl/sharedStrings.xml", zf.read("xl/sharedStrings.xml"), "")
    targets = _sheet_targets(zf, workbook, members)
    for sheet, target in targets.items():
        if sheet not in needed or target not in members:
            continue
        xml = zf.read(target)
        _no_dtd(target, xml[:2048])
        _well_formed(target, xml, sheet)
        _check_extent(sheet, xml, limits)
        merges = _MERGE.findall(xml)
        if merges:
            book.merges[sheet] = [m.decode() for m in merges]
        # The check sheet is all formulas by design; only input sheets are scanned.
        if sheet != SHEET_CHECKS and (b"<f>" in xml or b"<f " in xml or b't="e"' in xml):
            book.special[sheet] = _special_cells(xml)


def _well_formed(part: str, xml: bytes, sheet: str) -> None:
    """A strict XML pass: calamine tolerates damage and may return different values (reliability.md §1.4)."""
    parser = xml_expat.ParserCreate()
    where = f"trang '{sheet}'" if sheet else f"thành phần '{part}'"
    try:
        parser.Parse(xml, True)
    except xml_expat.ExpatError as err:
        raise Rejected("damaged-file", f"{where} có cấu trúc XML bị hỏng (dòng {err.lineno}, cột {err.offset}); "
                                       "đề nghị mở bằng Excel rồi lưu lại, hoặc gửi lại tệp") from err
    except (LookupError, ValueError) as err:  # an XML declaration naming an unknown encoding (found by atheris)
        raise Rejected("damaged-file", f"{where} khai báo bảng mã không hợp lệ; đề nghị mở bằng Excel rồi lưu lại, "
                                       "hoặc gửi lại tệp") from err


def _no_dtd(part: str, xml: bytes) -> bytes:
    if _DTD.search(xml[:4096]):
        raise Rejected("unsafe-xml", f"thành phần '{part}' khai báo DTD/thực thể XML (không có trong bảng tính thật; "
                                     "nghi tệp độc hại)")
    return xml


def _sheet_targets(zf: zipfile.ZipFile, workbook: bytes, members: set[str]) -> dict[str, str]:
    rels = zf.read("xl/_rels/workbook.xml.rels") if "xl/_rels/workbook.xml.rels" in members else b""
    by_id: dict[bytes, bytes] = {}
    for a, b, c, d in _REL.findall(rels):
        rid, target = (a, b) if a else (d, c)
        by_id[rid] = target
    out = {}
    for name, rid in _SHEET_REL.findall(workbook):
        target = by_id.get(rid, b"").decode("utf-8", "replace")
        target = target[1:] if target.startswith("/") else f"xl/{target}"
        out[_unescape(name)] = target
    return out


def _check_extent(sheet: str, xml: bytes, limits: Limits) -> None:
    """Refuse a sheet whose cells reach far beyond any template, before python-calamine reads it.

    calamine allocates the whole rectangle from A1 to the farthest cell, and aborts the process when
    that fails (reliability.md §1.3). Cells written the usual way (``<c r="B5"``) are checked by one
    cheap scan; any other form — another attribute before ``r``, single quotes, lower-case or long
    column letters, a namespace prefix, cells without ``r`` — is measured by parsing the sheet the way
    calamine places cells (several such forms once slipped past a scan of the usual one; atheris
    found the first, a column of 120 letters)."""
    if _OTHER_CELL.search(xml) is None:
        canonical = _CANONICAL_CELL.findall(xml)
        count = len(canonical)
        max_row = max(map(int, {r for _c, r in canonical}), default=0)
        max_col = max((_col_index(c.decode()) for c in {c for c, _r in canonical}), default=0)
    else:
        count = len(_CELL_START.findall(xml))
        max_row, max_col = _extent_by_parsing(xml) if count <= limits.max_cells else (0, 0)
    if count > limits.max_cells:
        raise Rejected("too-large", f"trang '{sheet}' có {format_int(count)} ô, vượt giới hạn {format_int(limits.max_cells)}")
    if max_row > limits.max_rows or max_col > limits.max_cols:
        column = col_letter(max_col - 1) if 0 < max_col <= 16_384 else "ngoài cột cuối của Excel (XFD)"
        raise Rejected("too-large", f"trang '{sheet}' trải tới dòng {format_int(max_row)}, cột {column}"
                                    f" — vượt giới hạn {format_int(limits.max_rows)} dòng × {limits.max_cols} cột")


def _extent_by_parsing(xml: bytes) -> tuple[int, int]:
    """The farthest row and column (1-based) python-calamine would give a well-formed sheet's cells.

    As calamine does: a cell's ``r`` (letters in either case, then digits) places it; a cell without
    one follows the previous cell of its row; a row without ``r`` follows the previous row. Only the
    ASCII letters and digits of ``r`` are read, so a value calamine would refuse (anything else in
    it) still counts with them, and the bound errs on the side of refusing."""
    row = col = max_row = max_col = 0

    def start(name: str, attrs: dict[str, str]) -> None:
        nonlocal row, col, max_row, max_col
        local = name.rpartition(":")[2]
        if local == "row":
            digits = _ascii(attrs.get("r", ""), str.isdigit)
            row = int(digits) if digits else row + 1
            col = 0
        elif local == "c":
            ref = attrs.get("r")
            if ref is None:
                col += 1
                max_row = max(max_row, row)
            else:
                digits = _ascii(ref, str.isdigit)
                col = _col_index(_ascii(ref, str.isalpha).upper())
                max_row = max(max_row, int(digits) if digits else row)
            max_col = max(max_col, col)

    parser = xml_expat.ParserCreate()
    parser.StartElementHandler = start
    parser.Parse(xml, True)  # already checked by _well_formed
    return max_row, max_col


def _ascii(text: str, kind: Callable[[str], bool]) -> str:
    """The ASCII letters (``str.isalpha``) or digits (``str.isdigit``) of ``text``, in order."""
    return "".join(ch for ch in text if ch.isascii() and kind(ch))


def _col_index(letters: str) -> int:
    n = 0
    for ch in letters:
        n = n * 26 + (ord(ch) - 64)
    return n


def _special_cells(xml: bytes) -> dict[str, tuple[str, str]]:
    """Cells holding a formula or an Excel error, found from the few ``<f``/``t="e"`` markers."""
    out: dict[str, tuple[str, str]] = {}
    starts: set[int] = set()
    for marker in (b"<f>", b"<f ", b't="e"'):  # not "<formula>" of conditional formats
        pos = xml.find(marker)
        while pos >= 0:
            start = xml.rfind(b"<c ", 0, pos)
            if start >= 0:
                starts.add(start)
            pos = xml.find(marker, pos + 2)
    for start in sorted(starts):
        m = _CELL_XML.match(xml, start)
        if not m:
            continue
        col, row, attrs, inner = m.groups()
        a1 = (col + row).decode()
        inner = inner or b""
        if b't="e"' in attrs:
            v = re.search(rb"<v>([^<]*)</v>", inner)
            out[a1] = ("error", _unescape(v.group(1)) if v else "#ERROR")
        elif b"<f" in inner:
            f = re.search(rb"<f[^>]*>([^<]*)</f>", inner)
            out[a1] = ("formula", "=" + _unescape(f.group(1)) if f else "=(công thức dùng chung)")
    return out


def _ods_content(zf: zipfile.ZipFile) -> bytes:
    content = _no_dtd("content.xml", zf.read("content.xml"))
    _well_formed("content.xml", content, "")
    return content


def _ods_parts(book: Book, zf: zipfile.ZipFile, content: bytes) -> None:
    for m in _ODS_NAMED.finditer(content):
        name, ref = (m.group(1), m.group(2)) if m.group(1) else (m.group(4), m.group(3))
        _add_name(book, name, ref, _ODS_REF)
    if "meta.xml" in zf.namelist():
        for name, value in _CUSTOM_ODS.findall(_no_dtd("meta.xml", zf.read("meta.xml"))):
            book.properties[_unescape(name)] = _unescape(value)


def _xls_names(book: Book, data: bytes) -> None:
    try:
        import xlrd
        from xlrd.formula import oREF

        wb = xlrd.open_workbook(file_contents=data, on_demand=True, logfile=io.StringIO())
    except Exception:  # xlrd raises many types on damaged BIFF; names are optional evidence
        return
    try:
        sheets = wb.sheet_names()
        for nobj in wb.name_obj_list:
            # The reference itself, not ``area2d()``: that loads the whole sheet to clip the area, and a
            # damaged cell record far out made xlrd build rows millions of cells wide (15 s; found by atheris).
            try:
                res = nobj.result
                if not res or res.kind != oREF or len(res.value) != 1:
                    continue  # names that are formulas rather than areas
                sheet, sheet_end, row, _, col, _ = res.value[0].coords
            except Exception:  # a damaged name record
                continue
            if 0 <= sheet < len(sheets) and sheet_end == sheet + 1 and row >= 0 and col >= 0:
                book.names[nobj.name] = (sheets[sheet], f"{col_letter(col)}{row + 1}")
    finally:
        wb.release_resources()


def _add_name(book: Book, raw_name: bytes, raw_ref: bytes, pattern: re.Pattern[str]) -> None:
    short = len(raw_name) + len(raw_ref) <= 256  # a hostile file's huge names are not kept in the cache
    name, target = (_parse_name if short else _parse_name.__wrapped__)(raw_name, raw_ref, pattern)
    if target is not None:
        book.names[name] = target


@functools.lru_cache(maxsize=8192)
def _parse_name(raw_name: bytes, raw_ref: bytes, pattern: re.Pattern[str]) -> tuple[str, tuple[str, str] | None]:
    """A defined name and the (sheet, A1) it points at; cached, every return carries the template's names."""
    name = _unescape(raw_name)
    ref = _unescape(raw_ref).lstrip("=")
    m = pattern.match(ref)
    return name, (m.group("sheet"), f"{m.group('col')}{m.group('row')}") if m else None


def _unescape(raw: bytes) -> str:
    text = raw.decode("utf-8", "replace")
    return html.unescape(text) if "&" in text else text


# ------------------------------------------------------------------ identity

IDENTITY_KEYS = ("form_id", "form_version", "definition_hash", "unit_code", "unit_name", "year", "issued_at", "kind")


def read_identity(book: Book, form: Form, layout: Layout) -> tuple[dict[str, str], str]:
    """The file's identity and where it came from ("_meta", "properties", "cells" or "")."""
    if SHEET_META in book.sheet_names:
        meta: dict[str, str] = {}
        for row in book.rows(SHEET_META):
            if len(row) >= 2 and isinstance(row[0], str) and row[0] in IDENTITY_KEYS:
                meta[row[0]] = _text(row[1])
        if meta.get("form_id"):
            return meta, SHEET_META
    props = {k[len(PROP_PREFIX):]: v for k, v in book.properties.items() if k.startswith(PROP_PREFIX)}
    if props.get("form_id"):
        return props, "properties"
    # Last resort: the pre-filled, locked cells of the information sheet.
    evidence: dict[str, str] = {}
    for fid, key in (("ma_don_vi", "unit_code"), ("ten_don_vi", "unit_name"), ("nam_bao_cao", "year")):
        pos = layout.fields.get(fid)
        if pos is not None and pos.cell.sheet in book.sheet_names:
            value = book.value(pos.cell)
            if value not in (None, ""):
                evidence[key] = _text(value)
    if evidence.get("unit_code") or evidence.get("unit_name"):
        return evidence, "cells"
    return {}, ""


def _text(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return clean_text(str(value), multiline=False) if value is not None else ""


def check_identity(identity: dict[str, str], source: str, form: Form, year: int) -> list[str]:
    """Raise :class:`Rejected` for a wrong form, version, definition or year; return notes."""
    notes: list[str] = []
    if not source:
        raise Rejected("not-a-template", "tệp không phải biểu mẫu do cơ quan tổng hợp phát hành (không có thông tin nhận diện); "
                                         "đề nghị đơn vị điền vào đúng biểu mẫu đã được gửi")
    if source == "cells":
        notes.append("không còn trang nhận diện và thuộc tính tệp; đã nhận diện đơn vị qua ô thông tin chung")
    elif source == "properties":
        notes.append("trang nhận diện (_meta) đã bị xoá; đã nhận diện qua thuộc tính tệp")
    form_id = identity.get("form_id")
    if form_id and form_id != form.id:
        raise Rejected("wrong-form", f"tệp là biểu mẫu '{form_id}', không phải '{form.id}'")
    version = identity.get("form_version")
    if version and version != form.version:
        raise Rejected("wrong-version", f"tệp dùng biểu mẫu phiên bản {version}, phiên bản hiện hành là {form.version}; "
                                        "đề nghị đơn vị điền vào biểu mẫu mới")
    digest = identity.get("definition_hash")
    if digest and digest != form.definition_hash:
        raise Rejected("wrong-version", f"biểu mẫu trong tệp (mã kiểm tra {digest[:16]}) khác biểu mẫu hiện hành "
                                        f"({form.short_hash}) dù cùng phiên bản; đề nghị dùng biểu mẫu mới")
    file_year = identity.get("year", "")
    if file_year and file_year != str(year):
        raise Rejected("wrong-year", f"tệp là báo cáo năm {file_year}, không phải năm {year}")
    return notes


# ------------------------------------------------------------------ values

def read_values(book: Book, form: Form, layout: Layout, file_name: str,
                max_string: int = cells.EXCEL_MAX_STRING) -> tuple[SubmissionData | None, list[Finding], list[str]]:
    """Read every input by name (or position), normalise it, and collect findings.

    ``max_string`` caps every text below its field's own ``max_length`` (``[limits] max_string``)."""
    findings: list[Finding] = []
    notes: list[str] = []
    missing = [s for s in layout.section_sheets if s not in book.sheet_names]
    if missing:
        found = ", ".join(s for s in book.sheet_names if not s.startswith("_"))
        raise Rejected("structure-damaged", f"thiếu trang {', '.join(missing)} (trong tệp có: {found}); trang đã bị xoá "
                                            "hoặc đổi tên — đề nghị điền lại vào biểu mẫu gốc")
    positions = _resolve_positions(book, layout, notes)
    _check_merges(book, layout)
    expected = {*layout.section_sheets, SHEET_CHECKS, SHEET_META, SHEET_LISTS, SHEET_INSTRUCTIONS, SHEET_FEEDBACK}
    extra = [s for s in book.sheet_names if s not in expected]
    if extra:
        findings.append(Finding("extra-sheets", Severity.WARNING,
                                f"Tệp có thêm trang không thuộc biểu mẫu ({', '.join(extra[:5])}); nội dung các trang này "
                                "không được đọc.", file=file_name))
    values: dict[str, Value] = {}
    for fid, pos in layout.fields.items():
        f = pos.field
        if f.computed:
            continue
        cell = positions.get(fid, pos.cell)
        raw = book.value(cell)
        special = book.special.get(cell.sheet, {}).get(cell.a1)
        value, problems = cells.coerce_field(f, raw, special, cell, file_name, form.choices, max_string)
        values[fid] = value
        findings.extend(problems)
    tables: dict[str, list[dict[str, Value]]] = {}
    for tid, table in layout.tables.items():
        rows, problems = cells.read_table(table, book.value, book.special, file_name, form.choices, max_string)
        tables[tid] = rows
        findings.extend(problems)
    justifications: dict[str, str] = {}
    if SHEET_CHECKS in book.sheet_names:
        for rule_id, rpos in layout.rules.items():
            if rpos.justification is not None:
                raw = book.value(rpos.justification)
                if raw not in (None, ""):
                    justifications[rule_id] = clean_text(str(raw))[:1000]
    elif any(r.justification for r in layout.rules.values()):
        notes.append(f"trang {SHEET_CHECKS} đã bị xoá; không đọc được phần giải trình")
    data = SubmissionData("", form.id, form.version, form.definition_hash, 0, values, tables, justifications)
    return data, findings, notes


def _resolve_positions(book: Book, layout: Layout, notes: list[str]) -> dict[str, Cell]:
    """Check that every input is where the template put it; note when names had to be ignored.

    Defined names that point elsewhere mean rows or columns were inserted or deleted (Excel moves
    the names with the cells); labels that no longer sit next to their inputs mean the same when a
    program dropped or froze the names. Either way the file is refused rather than misread.
    """
    present = [fid for fid in layout.fields if fid in book.names]
    moved = []
    for fid in present:
        sheet, a1 = book.names[fid]
        expected = layout.fields[fid].cell
        if sheet != expected.sheet or a1 != expected.a1:
            moved.append(f"{fid} ({expected.sheet}!{expected.a1} → {sheet}!{a1})")
    if moved:
        raise Rejected("structure-damaged", "ô nhập liệu đã bị di chuyển (có chèn/xoá dòng hoặc cột): "
                                            + "; ".join(moved[:5]) + ("…" if len(moved) > 5 else "")
                                            + " — đề nghị điền lại vào biểu mẫu gốc")
    if not present:
        notes.append("chương trình đã lưu tệp đã bỏ tên ô; đã đọc theo vị trí ô của biểu mẫu và đối chiếu nhãn")
    elif len(present) < sum(1 for p in layout.fields.values() if not p.field.computed):
        notes.append("một phần tên ô đã bị mất; các ô còn lại đọc theo vị trí của biểu mẫu")
    wrong = []
    for pos in layout.fields.values():
        label = book.value(pos.label_cell)
        if label != pos.label and (not isinstance(label, str) or match_key(label) != match_key(pos.label)):
            wrong.append(f"{pos.label_cell.sheet}!{pos.label_cell.a1}")
    if wrong:
        raise Rejected("structure-damaged", "nhãn của biểu mẫu không còn ở đúng vị trí (" + ", ".join(wrong[:5])
                                            + ("…" if len(wrong) > 5 else "") + "); dòng hoặc cột đã bị chèn/xoá — "
                                            "đề nghị điền lại vào biểu mẫu gốc")
    return {}


def _check_merges(book: Book, layout: Layout) -> None:
    """An input cell merged into something the template did not merge loses its value: refuse."""
    if not book.merges:
        return
    for sheet, ranges in book.merges.items():
        for rng in ranges:
            hit = _merged_input(layout, sheet, rng)
            if hit is not None:
                raise Rejected("structure-damaged", f"ô nhập liệu {sheet}!{hit} đã bị gộp vào vùng {rng}; "
                                                    "đề nghị bỏ gộp ô hoặc điền lại vào biểu mẫu gốc")


@functools.lru_cache(maxsize=4096)
def _merged_input(layout: Layout, sheet: str, rng: str) -> str | None:
    """The first input cell a merged area covers (A1), unless the template itself made that merge.

    Cached: every returned file carries the template's own merged headers."""
    inputs, expected = _merge_expectations(layout)
    cells = inputs.get(sheet)
    if not cells or rng in expected.get(sheet, ()) or ":" not in rng:
        return None
    first, last = rng.split(":", 1)
    top, bottom = _a1_to_cell(sheet, first), _a1_to_cell(sheet, last)
    if top is None or bottom is None:
        return None  # not a cell range calamine or Excel would honour
    if (bottom.row - top.row + 1) * (bottom.col - top.col + 1) > 4096:
        hit = next((c for c in cells if top.row <= c[0] <= bottom.row and top.col <= c[1] <= bottom.col), None)
    else:
        hit = next(((r, c) for r in range(top.row, bottom.row + 1) for c in range(top.col, bottom.col + 1)
                    if (r, c) in cells), None)
    return None if hit is None else Cell(sheet, *hit).a1


@functools.lru_cache(maxsize=16)
def _merge_expectations(layout: Layout) -> tuple[dict[str, set[tuple[int, int]]], dict[str, set[str]]]:
    """Per sheet: the input cells, and the merged areas the template itself made over inputs."""
    inputs: dict[str, set[tuple[int, int]]] = {}
    for c in layout.input_cells():
        inputs.setdefault(c.sheet, set()).add((c.row, c.col))
    expected: dict[str, set[str]] = {}
    for pos in layout.fields.values():
        if pos.merge_to > pos.cell.col:
            end = Cell(pos.cell.sheet, pos.cell.row, pos.merge_to)
            expected.setdefault(pos.cell.sheet, set()).add(f"{pos.cell.a1}:{end.a1}")
    return inputs, expected


def _a1_to_cell(sheet: str, a1: str) -> Cell | None:
    m = re.fullmatch(r"\$?([A-Z]{1,3})\$?([0-9]{1,7})", a1)
    if not m:
        return None
    return Cell(sheet, int(m.group(2)) - 1, _col_index(m.group(1)) - 1)


def read_workbook(data: bytes, sniffed: Sniffed, form: Form, year: int, limits: Limits, file_name: str) -> ReadResult:
    """The whole per-file job of a worker: open, identify, read; never raises for bad input."""
    layout = build_layout(form)
    try:
        book = open_book(data, sniffed, limits, {*layout.section_sheets, SHEET_META, SHEET_CHECKS})
        identity, source = read_identity(book, form, layout)
        notes = list(sniffed.notes) + check_identity(identity, source, form, year)
        if book.states.get(SHEET_META) == "hidden":
            notes.append("tệp đã được lưu lại bằng chương trình khác (trang nhận diện chuyển sang ẩn thường)")
        data_, findings, more = read_values(book, form, layout, file_name, limits.max_string)
        notes += more
    except Rejected as rej:
        return ReadResult(False, sniffed.kind, rej.code, rej.message, macros=sniffed.macros)
    except python_calamine.CalamineError as err:
        if "entity" in str(err).lower():
            return ReadResult(False, sniffed.kind, "unsafe-xml", "tệp chứa thực thể XML không được phép (nghi tệp độc hại)",
                              macros=sniffed.macros)
        return ReadResult(False, sniffed.kind, "damaged-file",
                          f"nội dung bảng tính bị hỏng ({_short(err)}); đề nghị mở bằng Excel rồi lưu lại", macros=sniffed.macros)
    except (MemoryError, RecursionError) as err:
        return ReadResult(False, sniffed.kind, "too-large", f"tệp quá lớn hoặc quá phức tạp để đọc ({type(err).__name__})")
    assert data_ is not None
    if sniffed.macros:
        findings.append(Finding("has-macros", Severity.WARNING, "tệp có macro; danvan_xl không chạy macro, chỉ đọc số liệu. "
                                "Đề nghị lần sau lưu dạng .xlsx", file=file_name))
    data_ = SubmissionData(identity.get("unit_code", ""), form.id, form.version, form.definition_hash, year,
                           data_.values, data_.tables, data_.justifications)
    return ReadResult(True, sniffed.kind, identity=identity, identity_source=source, data=data_, findings=findings,
                      notes=notes, macros=sniffed.macros)


__all__ = ["Book", "ReadResult", "check_identity", "open_book", "read_identity", "read_values", "read_workbook"]
