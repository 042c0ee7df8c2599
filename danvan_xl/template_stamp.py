"""Fast path for many templates: build one prototype per unit kind, then stamp each unit into it.

A template depends on its unit only through a few strings (name and code in shared strings, page
footers and document properties) and, through the unit's kind, on which rules apply. So for a
batch we let the template writer build a prototype with placeholder strings once per kind, and
for each unit replace the placeholders in the few XML parts that hold them, recompress only those
parts and reassemble the zip around the unchanged compressed parts. The result is byte-identical
to :func:`template_writer.build_template` for the same unit (tested for every sample unit); any
unit whose strings could make the two differ (a name equal to another string of the workbook,
leading spaces, characters Excel escapes) takes the ordinary path.
"""

from __future__ import annotations

import re
import struct
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, replace
from io import BytesIO

from .form import Form
from .template_writer import Prefill, TemplateContext, build_template
from .units import Unit

_NAME = "\ue010"  # private-use placeholders: never in real text, valid in XML
_CODE = "\ue011"
_LOCAL = struct.Struct("<4s5H3L2H")
_CENTRAL = struct.Struct("<4s6H3L5H2L")
_END = struct.Struct("<4s4H2LH")
_SHARED_TEXT = re.compile(rb"<si><t(?: xml:space=\"preserve\")?>(.*?)</t></si>", re.DOTALL)
_PLAIN = re.compile(r"^[^\s&<>\"'_\x00-\x1f\ue000-\uf8ff](?:[^&<>\"'\x00-\x1f\ue000-\uf8ff]|_(?!x[0-9A-Fa-f]{4}_))*(?<=\S)$")


def _escape(text: str) -> bytes:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").encode("utf-8")


@dataclass(frozen=True)
class ZipEntry:
    """One member of a zip written by xlsxwriter, kept as bytes to be reassembled around."""

    name: str
    local: bytes  # local file header including the name
    central: bytes  # central directory record including the name
    compressed: bytes
    content: bytes  # uncompressed


def split_zip(data: bytes) -> tuple[list[ZipEntry], bytes] | None:
    """The members of ``data`` and its end-of-central-directory record; None when a member uses
    data descriptors or a method other than deflate (then the caller takes the ordinary path)."""
    entries: list[ZipEntry] = []
    with zipfile.ZipFile(BytesIO(data)) as zf:
        for info in zf.infolist():
            if info.flag_bits & 0x08 or info.compress_type != zipfile.ZIP_DEFLATED:
                return None
            fields = _LOCAL.unpack_from(data, info.header_offset)
            start = info.header_offset + _LOCAL.size + fields[9] + fields[10]
            entries.append(ZipEntry(info.filename, data[info.header_offset:start], b"",
                                    data[start:start + info.compress_size], zf.read(info)))
    pos = _END.unpack_from(data, len(data) - _END.size)[6]
    for i, entry in enumerate(entries):
        fields = _CENTRAL.unpack_from(data, pos)
        size = _CENTRAL.size + fields[10] + fields[11] + fields[12]
        entries[i] = replace(entry, central=data[pos:pos + size])
        pos += size
    return entries, data[len(data) - _END.size:]


def join_zip(entries: Sequence[ZipEntry], end: bytes, contents: Sequence[bytes | None]) -> bytes:
    """The zip of ``entries`` in order, each member whose ``contents`` item is not None deflated anew
    with that content, the others copied as they were compressed; offsets and sizes fixed up."""
    out = BytesIO()
    centrals: list[bytes] = []
    for entry, content in zip(entries, contents, strict=True):
        offset = out.tell()
        local, central, compressed = entry.local, entry.central, entry.compressed
        if content is not None:
            compressor = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -15)
            compressed = compressor.compress(content) + compressor.flush()
            sizes = struct.pack("<3L", zlib.crc32(content) & 0xFFFFFFFF, len(compressed), len(content))
            local = local[:14] + sizes + local[26:]
            central = central[:16] + sizes + central[28:]
        central = central[:42] + struct.pack("<L", offset) + central[46:]
        out.write(local)
        out.write(compressed)
        centrals.append(central)
    cd_start = out.tell()
    for central in centrals:
        out.write(central)
    cd_size = out.tell() - cd_start
    out.write(end[:12] + struct.pack("<2L", cd_size, cd_start) + end[20:])
    return out.getvalue()


class _Prototype:
    """One prototype workbook, split into reusable zip entries."""

    def __init__(self, data: bytes) -> None:
        split = split_zip(data)
        self.ok = split is not None
        self.entries, self.end = split or ([], b"")
        marks = (_NAME.encode(), _CODE.encode())
        self.raw = [e.content if any(m in e.content for m in marks) else None for e in self.entries]

    def stamp(self, unit: Unit) -> bytes | None:
        name, code = _escape(unit.name), _escape(unit.code)
        contents: list[bytes | None] = []
        for entry, raw in zip(self.entries, self.raw, strict=True):
            if raw is None:
                contents.append(None)
                continue
            content = raw.replace(_NAME.encode(), name).replace(_CODE.encode(), code)
            if entry.name == "xl/sharedStrings.xml" and not _distinct_strings(content):
                return None  # xlsxwriter would have shared one string between two cells
            contents.append(content)
        return join_zip(self.entries, self.end, contents)


def _distinct_strings(xml: bytes) -> bool:
    texts = _SHARED_TEXT.findall(xml)
    return len(texts) == len(set(texts))


class Stamper:
    """Builds templates for many units of one form and context; falls back to the writer when needed."""

    def __init__(self, form: Form, ctx: TemplateContext, prefill: Prefill | None = None) -> None:
        """``prefill`` (optional) puts the same values into every unit's workbook (benchmarks, tests)."""
        self.form, self.ctx, self.prefill = form, ctx, prefill
        self._prototypes: dict[str, _Prototype] = {}

    def build(self, unit: Unit) -> bytes:
        if _PLAIN.match(unit.name) and _PLAIN.match(unit.code):
            proto = self._prototype(unit)
            if proto.ok:
                data = proto.stamp(unit)
                if data is not None:
                    return data
        return build_template(self.form, unit, self.ctx, prefill=self.prefill)

    def _prototype(self, unit: Unit) -> _Prototype:
        if unit.kind not in self._prototypes:
            placeholder = replace(unit, name=_NAME, code=_CODE)
            self._prototypes[unit.kind] = _Prototype(build_template(self.form, placeholder, self.ctx, prefill=self.prefill))
        return self._prototypes[unit.kind]
