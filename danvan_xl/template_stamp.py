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
class _Entry:
    name: str
    local: bytes  # local file header including the name
    central: bytes  # central directory record including the name
    compressed: bytes
    raw: bytes | None  # uncompressed content when it holds placeholders


class _Prototype:
    """One prototype workbook, split into reusable zip entries."""

    def __init__(self, data: bytes) -> None:
        self.ok = True
        self.entries: list[_Entry] = []
        with zipfile.ZipFile(BytesIO(data)) as zf:
            infos = zf.infolist()
            for info in infos:
                if info.flag_bits & 0x08 or info.compress_type != zipfile.ZIP_DEFLATED:
                    self.ok = False  # data descriptors or another method: use the ordinary path
                    return
                fields = _LOCAL.unpack_from(data, info.header_offset)
                name_len, extra_len = fields[9], fields[10]
                start = info.header_offset + _LOCAL.size + name_len + extra_len
                local = data[info.header_offset:start]
                compressed = data[start:start + info.compress_size]
                content = zf.read(info)
                holds = _NAME.encode() in content or _CODE.encode() in content
                self.entries.append(_Entry(info.filename, local, b"", compressed, content if holds else None))
        cd_offset = _END.unpack_from(data, len(data) - _END.size)[6]
        pos = cd_offset
        for i, entry in enumerate(self.entries):
            fields = _CENTRAL.unpack_from(data, pos)
            size = _CENTRAL.size + fields[10] + fields[11] + fields[12]
            self.entries[i] = replace(entry, central=data[pos:pos + size])
            pos += size
        self.end = data[len(data) - _END.size:]

    def stamp(self, unit: Unit) -> bytes | None:
        name, code = _escape(unit.name), _escape(unit.code)
        out = BytesIO()
        centrals: list[bytes] = []
        for entry in self.entries:
            offset = out.tell()
            local, central, compressed = entry.local, entry.central, entry.compressed
            if entry.raw is not None:
                content = entry.raw.replace(_NAME.encode(), name).replace(_CODE.encode(), code)
                if entry.name == "xl/sharedStrings.xml" and not _distinct_strings(content):
                    return None  # xlsxwriter would have shared one string between two cells
                compressor = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -15)
                compressed = compressor.compress(content) + compressor.flush()
                crc = zlib.crc32(content) & 0xFFFFFFFF
                local = local[:14] + struct.pack("<3L", crc, len(compressed), len(content)) + local[26:]
                central = central[:16] + struct.pack("<3L", crc, len(compressed), len(content)) + central[28:]
            central = central[:42] + struct.pack("<L", offset) + central[46:]
            out.write(local)
            out.write(compressed)
            centrals.append(central)
        cd_start = out.tell()
        for central in centrals:
            out.write(central)
        cd_size = out.tell() - cd_start
        out.write(self.end[:12] + struct.pack("<2L", cd_size, cd_start) + self.end[20:])
        return out.getvalue()


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
