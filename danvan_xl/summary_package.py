"""Saving the summary workbook: xlsxwriter prepares each part of the package, this module zips them.

Three things differ from ``Workbook.close()`` on its own, none in what a part contains:

* parts are deflated at level 1 when they are large (level 6 took 12 of the 35 seconds of a
  10,000-unit summary with the seed's texts; level 1 is ~8× faster for a file about a third
  larger), in a background thread while the next part is being written (zlib releases the GIL);
* the shared-strings part (all the units' texts) is produced in chunks straight into the
  compressor instead of as one string of hundreds of megabytes;
* a unit's text that looks like ``<r>…</r>`` is escaped like any other text; xlsxwriter takes
  such a string for pre-rendered rich text and copies it into the XML unescaped, which let a
  unit's paragraph break (or inject markup into) the whole workbook.

The zip itself is written here (stored names, fixed 1980-01-01 timestamps, no extra fields), so the
bytes depend only on the parts: the same model gives the same file.
"""

from __future__ import annotations

import re
import struct
import zlib
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import xlsxwriter
from xlsxwriter.packager import Packager
from xlsxwriter.sharedstrings import SharedStringTable

from .errors import TemplateBuildError
from .summary_xml import escape

SMALL_PART = 1 << 20  # parts below 1 MiB are deflated at level 6 (cheap there), larger ones at level 1
SPLIT_PART = 4 << 20  # parts from 4 MiB are deflated in two halves, one per worker thread
CHUNK_CHARS = 1 << 22  # shared strings are encoded and deflated ~4 M characters at a time
_DOS_DATE = (0 << 9) | (1 << 5) | 1  # 1980-01-01, the date xlsxwriter gives every part
_ESCAPED_ESCAPE = re.compile("(_x[0-9a-fA-F]{4}_)")  # xlsxwriter's control-character escaping, same rules
_CONTROL = re.compile(r"([\x00-\x08\x0b-\x1f])")
_CONTROL_BYTES = bytes.maketrans(bytes([*range(0x09), *range(0x0B, 0x20)]), bytes(0x09 + 0x15))  # → NUL


class SummaryWorkbook(xlsxwriter.Workbook):
    """A workbook whose package is zipped by :func:`zip_parts` (see the module docstring)."""

    packager: _Packager | None = None

    def _get_packager(self) -> Packager:
        self.packager = _Packager()
        return self.packager

    def package(self) -> bytes:
        """The .xlsx bytes, after :meth:`close`."""
        if self.packager is None:
            raise TemplateBuildError("Bảng tổng hợp chưa được đóng gói.")
        return self.packager.zipped()

    def discard(self) -> None:
        """Stop the compressor thread when saving failed half-way."""
        if self.packager is not None:
            self.packager.discard()


class _Packager(Packager):
    """Hands each finished part to the compressor as soon as the next one starts."""

    def _create_package(self) -> list[Any]:
        self._zip = _Zip()
        self._handed = 0
        table = self.workbook.str_table
        try:
            # All strings are known now: the shared strings (the units' texts, most of the bytes) are
            # deflated by the workers while this thread writes the worksheets.
            self._strings = self._zip.compress("xl/sharedStrings.xml", list(shared_strings(table))) if table.count else None
            super()._create_package()
            self._hand_over()
        except BaseException:
            self._zip.close()
            raise
        return []  # xlsxwriter writes an empty zip to its buffer; ours is in self._zip

    def _hand_over(self) -> None:
        """Every part listed so far is complete (parts are written one at a time)."""
        for i in range(self._handed, len(self.filenames)):
            source, name, is_binary = self.filenames[i]
            data = source.getvalue()
            self._zip.place(self._zip.compress(name, [data.encode("utf-8") if isinstance(data, str) else data]))
            self.filenames[i] = (None, name, is_binary)  # the text now lives in the compressor's queue
        self._handed = len(self.filenames)

    def _filename(self, xml_filename: str) -> Any:
        self._hand_over()
        return super()._filename(xml_filename)

    def _write_shared_strings_file(self) -> None:
        if self._strings is not None:
            self._hand_over()
            self._zip.place(self._strings)  # where xlsxwriter puts it in the package

    def zipped(self) -> bytes:
        return self._zip.finish()

    def discard(self) -> None:
        if getattr(self, "_zip", None) is not None:
            self._zip.close()


def shared_strings(table: SharedStringTable) -> Iterator[bytes]:
    """``xl/sharedStrings.xml`` in chunks of UTF-8, byte for byte what xlsxwriter writes (except that
    no string is taken for pre-rendered rich text)."""
    yield ('<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
           f'<sst xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" count="{table.count}" '
           f'uniqueCount="{table.unique_count}">').encode()
    batch: list[str] = []
    size = 0
    for string in table.string_array:
        batch.append(string)
        size += len(string)
        if size >= CHUNK_CHARS:
            yield _si_batch(batch)
            batch, size = [], 0
    yield _si_batch(batch) + b"</sst>"


def _si_batch(strings: list[str]) -> bytes:
    """``<si>`` elements of many strings, UTF-8. Checked once for the whole batch: when no string
    needs escaping (no ``&<>``, control character, ``_xHHHH_`` or U+FFFE/FFFF) each is copied as is."""
    xml = "".join([f'<si><t xml:space="preserve">{s}</t></si>' if s[:1].isspace() or s[-1:].isspace()
                   else f"<si><t>{s}</t></si>" for s in strings])
    tags = 4 * len(strings)  # "<" and ">" of the tags themselves
    if ("&" not in xml and "_x" not in xml and "\ufffe" not in xml and "\uffff" not in xml
            and xml.count("<") == tags and xml.count(">") == tags):
        data = xml.encode("utf-8")
        if b"\x00" not in data.translate(_CONTROL_BYTES):  # UTF-8 keeps them single bytes
            return data
    return "".join([_si(s) for s in strings]).encode("utf-8")


def _si(string: str) -> str:
    if "_x" in string:
        string = _ESCAPED_ESCAPE.sub(r"_x005F\1", string)
    if _CONTROL.search(string) is not None:
        string = _CONTROL.sub(lambda m: f"_x{ord(m.group(1)):04X}_", string)
    if "\ufffe" in string or "\uffff" in string:
        string = string.replace("\ufffe", "_xFFFE_").replace("\uffff", "_xFFFF_")
    if string[:1].isspace() or string[-1:].isspace():  # xlsxwriter's ^\s / \s$
        return f'<si><t xml:space="preserve">{escape(string)}</t></si>'
    return f"<si><t>{escape(string)}</t></si>"


class _Entry:
    """One zip entry: CRC and size of its bytes, and their deflated segments (being computed)."""

    def __init__(self, name: str, crc: int, size: int, segments: list[Future[bytes]]) -> None:
        self.name, self.crc, self.size, self.segments = name, crc, size, segments


class _Zip:
    """The package's entries, deflated by two worker threads, archived in the order placed.

    A large entry is deflated as two independent segments, one per worker: the first ends with a
    full flush (byte-aligned, not final), so the two concatenated are one valid deflate stream.
    """

    def __init__(self) -> None:
        self.pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="danvan-zip")
        self.entries: list[_Entry] = []

    def compress(self, name: str, pieces: list[bytes]) -> _Entry:
        size, crc = 0, 0
        for piece in pieces:
            crc = zlib.crc32(piece, crc)
            size += len(piece)
        level = 6 if size < SMALL_PART else 1
        halves = _halves(pieces, size) if size >= SPLIT_PART else [pieces]
        segments = [self.pool.submit(_deflate, half, level, i == len(halves) - 1) for i, half in enumerate(halves)]
        return _Entry(name, crc, size, segments)

    def place(self, entry: _Entry) -> None:
        self.entries.append(entry)

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)

    def finish(self) -> bytes:
        try:
            data = [b"".join(segment.result() for segment in e.segments) for e in self.entries]
        finally:
            self.close()
        return _archive(self.entries, data)


def _halves(pieces: list[bytes], size: int) -> list[list[bytes | memoryview]]:
    """Two runs of about ``size / 2`` bytes each (a piece may be cut in two)."""
    first: list[bytes | memoryview] = []
    used = 0
    for i, piece in enumerate(pieces):
        if used + len(piece) >= size // 2:
            cut = size // 2 - used
            view = memoryview(piece)
            return [[*first, view[:cut]], [view[cut:], *pieces[i + 1:]]]
        first.append(piece)
        used += len(piece)
    return [pieces]  # type: ignore[list-item]


def _deflate(pieces: list[bytes | memoryview], level: int, final: bool) -> bytes:
    compressor = zlib.compressobj(level, zlib.DEFLATED, -15)
    out = [compressor.compress(piece) for piece in pieces]
    out.append(compressor.flush(zlib.Z_FINISH if final else zlib.Z_FULL_FLUSH))
    return b"".join(out)


def _archive(entries: list[_Entry], data: list[bytes]) -> bytes:
    """The zip: local headers and data, then the central directory (no zip64: xlsxwriter has none)."""
    pieces: list[bytes] = []
    central: list[bytes] = []
    offset = 0
    for e, deflated in zip(entries, data, strict=True):
        name = e.name.encode("ascii")
        if max(len(deflated), e.size, offset) >= 0xFFFFFFFF:
            raise TemplateBuildError("Bảng tổng hợp vượt 4 GB, giới hạn của tệp .xlsx không dùng ZIP64.")
        header = struct.pack("<4s2B4HL2L2H", b"PK\x03\x04", 20, 0, 0, 8, 0, _DOS_DATE, e.crc, len(deflated), e.size,
                             len(name), 0) + name
        central.append(struct.pack("<4s4B4HL2L5H2L", b"PK\x01\x02", 20, 3, 20, 0, 0, 8, 0, _DOS_DATE, e.crc,
                                   len(deflated), e.size, len(name), 0, 0, 0, 0, 0, offset) + name)
        pieces += [header, deflated]
        offset += len(header) + len(deflated)
    directory = b"".join(central)
    end = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, len(central), len(central), len(directory), offset, 0)
    return b"".join([*pieces, directory, end])
