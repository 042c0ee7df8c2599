"""The gate: decide what a received file really is before any spreadsheet library touches it.

Routing is by content, never by extension (reliability.md §1.9). Zip containers are checked for
bombs (declared sizes, ratios, member counts), lying or overlapping entries, duplicate and unsafe
member names, and XML parts that declare a DTD or entities. OLE containers are told apart:
encrypted OOXML, legacy .xls, or another Office document. Every refusal is a :class:`Rejected`
carrying a stable code and a Vietnamese message that tells the clerk what to ask the sender for.
"""

from __future__ import annotations

import io
import itertools
import re
import zipfile
from dataclasses import dataclass, field

from .textnorm import format_int
from .workspace import Limits

MB = 1024 * 1024
# What zipfile raises for a damaged or unsupported archive: its own error, OSError and EOFError for
# short or lying data, ValueError for impossible fields, and NotImplementedError for a version,
# compression method (Deflate64, AES) or encryption it does not support (the last found by atheris:
# a central directory claiming zip version 19.6 took a whole collect down when it came inside a zip).
ZIP_ERRORS: tuple[type[Exception], ...] = (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError)
OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
ODS_MIME = b"application/vnd.oasis.opendocument.spreadsheet"
# Parts checked here; the reader checks the sheets it parses (and calamine refuses entities).
_XML_PARTS = re.compile(r"^(xl/workbook\.xml|xl/sharedStrings\.xml|\[Content_Types\]\.xml)$")
_DTD = re.compile(rb"<!DOCTYPE|<!ENTITY", re.IGNORECASE)


class Rejected(Exception):
    """A file refused with a stable code and a Vietnamese reason."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Sniffed:
    kind: str  # xlsx | ods | xls
    macros: bool = False
    notes: tuple[str, ...] = field(default=())
    # The opened, already checked container (xlsx/ods), so the reader does not parse it again.
    zip: zipfile.ZipFile | None = field(default=None, compare=False, repr=False)


def sniff(data: bytes, limits: Limits) -> Sniffed:
    """Classify ``data``; raise :class:`Rejected` for anything that is not a usable workbook."""
    if not data:
        raise Rejected("empty-file", "tệp rỗng (0 byte); đề nghị đơn vị gửi lại")
    if len(data) > limits.max_file_mb * MB:
        raise Rejected("too-large", f"tệp nặng {len(data) / MB:.1f} MB, vượt giới hạn {limits.max_file_mb:g} MB")
    if data.startswith(b"PK\x03\x04") or data.startswith(b"PK\x05\x06"):
        return _sniff_zip(data, limits)
    if data.startswith(OLE_MAGIC):
        return _sniff_ole(data)
    raise Rejected("wrong-format", f"tệp không phải bảng tính Excel mà là {describe_foreign(data)}")


def describe_foreign(data: bytes) -> str:
    head = data[:1024].lstrip()
    lower = head.lower()
    if head.startswith(b"%PDF"):
        return "tệp PDF; đề nghị gửi tệp Excel (.xlsx)"
    if head.startswith(b"\x89PNG") or head.startswith(b"\xff\xd8\xff") or head.startswith(b"GIF8"):
        return "ảnh chụp; đề nghị gửi tệp Excel (.xlsx)"
    if head.startswith(b"{\\rtf"):
        return "văn bản RTF; đề nghị gửi tệp Excel (.xlsx)"
    if lower.startswith(b"<!doctype html") or lower.startswith(b"<html") or b"<table" in lower:
        return "trang HTML đổi đuôi thành Excel; đề nghị mở bằng Excel rồi lưu lại dạng .xlsx"
    try:
        text = data[:4096].decode("utf-8-sig")
    except UnicodeDecodeError:
        return "dữ liệu không nhận dạng được; đề nghị gửi lại tệp .xlsx"
    if "," in text or ";" in text or "\t" in text:
        return "văn bản CSV; đề nghị dùng đúng biểu mẫu Excel được gửi"
    return "văn bản thường; đề nghị gửi lại tệp .xlsx"


def _sniff_ole(data: bytes) -> Sniffed:
    import olefile

    try:
        ole = olefile.OleFileIO(io.BytesIO(data))
    except Exception as err:  # olefile raises OSError and its own errors for damaged containers
        raise Rejected("damaged-file", "tệp Office bị hỏng (không đọc được cấu trúc OLE); đề nghị gửi lại") from err
    try:
        streams = {"/".join(s) for s in ole.listdir(streams=True, storages=False)}
    except Exception as err:  # RecursionError included
        # A damaged directory can chain storages inside each other: olefile then recurses until
        # Python's limit (found by atheris); other damage raises olefile's own errors.
        raise Rejected("damaged-file", "tệp Office bị hỏng (cây thư mục OLE không hợp lệ); đề nghị gửi lại") from err
    finally:
        ole.close()
    if "EncryptionInfo" in streams or "EncryptedPackage" in streams:
        raise Rejected("encrypted", "tệp được đặt mật khẩu mở; đề nghị đơn vị gửi lại bản không đặt mật khẩu")
    if "Workbook" in streams or "Book" in streams:
        macros = any(s.startswith("_VBA_PROJECT_CUR") for s in streams)
        notes = ("tệp có macro VBA (không chạy macro)",) if macros else ()
        return Sniffed("xls", macros=macros, notes=notes)
    if "WordDocument" in streams:
        raise Rejected("wrong-format", "tệp Word (.doc), không phải bảng tính; đề nghị gửi tệp Excel")
    if "PowerPoint Document" in streams:
        raise Rejected("wrong-format", "tệp PowerPoint, không phải bảng tính")
    raise Rejected("wrong-format", "tệp Office không phải bảng tính Excel")


def _sniff_zip(data: bytes, limits: Limits) -> Sniffed:
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
        infos = zf.infolist()
    except ZIP_ERRORS as err:
        raise Rejected("damaged-file", "tệp bị hỏng hoặc không trọn vẹn (không đọc được cấu trúc nén); đề nghị gửi lại") from err
    check_zip_members(infos, len(data), limits)
    names = {i.filename for i in infos}
    notes: list[str] = []
    if "[Content_Types].xml" in names and "xl/workbook.xml" in names:
        content_types = _read(zf, "[Content_Types].xml", 200_000)
        macros = ("xl/vbaProject.bin" in names or b"macroEnabled" in content_types
                  or any(n.startswith("xl/macrosheets/") for n in names))
        if macros:
            notes.append("tệp có macro (không chạy macro)")
        if any(n.startswith("xl/externalLinks/") for n in names):
            notes.append("tệp có liên kết tới sổ tính khác (chỉ dùng giá trị đã lưu)")
        _check_xml_parts(zf, infos)
        return Sniffed("xlsx", macros=macros, notes=tuple(notes), zip=zf)
    if "mimetype" in names and "content.xml" in names:
        mime = _read(zf, "mimetype", 200).strip()
        if mime != ODS_MIME:
            kind = mime.decode("ascii", "replace")
            raise Rejected("wrong-format", f"tệp OpenDocument loại '{kind}', không phải bảng tính (.ods)")
        _check_xml_parts(zf, infos)
        return Sniffed("ods", zip=zf)
    if "word/document.xml" in names:
        raise Rejected("wrong-format", "tệp Word (.docx), không phải bảng tính; đề nghị gửi tệp Excel")
    if "ppt/presentation.xml" in names:
        raise Rejected("wrong-format", "tệp PowerPoint (.pptx), không phải bảng tính")
    if "xl/workbook.bin" in names:
        raise Rejected("unsupported-format", "tệp Excel dạng nhị phân (.xlsb) chưa được hỗ trợ; đề nghị lưu lại dạng .xlsx")
    if "[Content_Types].xml" in names or "xl/workbook.xml" in names:
        raise Rejected("damaged-file", "tệp Excel thiếu thành phần bắt buộc; đề nghị mở bằng Excel rồi lưu lại")
    raise Rejected("archive", "tệp nén (.zip)")


def check_zip_members(infos: list[zipfile.ZipInfo], archive_size: int, limits: Limits) -> None:
    """Bomb, overlap, duplicate and unsafe-name checks on a zip's central directory."""
    if len(infos) > limits.max_members:
        raise Rejected("too-large", f"tệp nén có {format_int(len(infos))} thành phần, vượt giới hạn "
                                    f"{format_int(limits.max_members)}")
    seen: set[str] = set()
    total = 0
    for info in infos:
        name = info.filename
        if not name:  # zipfile's own ZipInfo.is_dir() fails on it (found by atheris)
            raise Rejected("damaged-file", "tệp nén có thành phần không có tên; đề nghị nén hoặc lưu lại tệp")
        if name in seen:
            raise Rejected("ambiguous-archive", f"tệp có hai thành phần cùng tên '{name[:80]}'; đề nghị lưu lại tệp")
        seen.add(name)
        if unsafe_member_name(name):
            raise Rejected("unsafe-archive", f"tệp chứa đường dẫn không an toàn '{name[:80]}'")
        total += info.file_size
        if info.file_size > limits.max_member_mb * MB:
            raise Rejected("too-large", f"thành phần '{name[:60]}' giải nén ra {info.file_size / MB:.0f} MB, "
                                        f"vượt giới hạn {limits.max_member_mb:g} MB (nghi tệp nén độc hại)")
        if info.file_size > MB and info.compress_size and info.file_size / info.compress_size > limits.max_ratio:
            ratio = info.file_size / info.compress_size
            raise Rejected("too-large", f"thành phần '{name[:60]}' có tỷ lệ nén {format_int(round(ratio))}:1, vượt giới hạn "
                                        f"{limits.max_ratio:g}:1 (nghi tệp nén độc hại)")
    if total > limits.max_expanded_mb * MB:
        raise Rejected("too-large", f"tệp giải nén ra {total / MB:.0f} MB, vượt giới hạn {limits.max_expanded_mb:g} MB")
    _check_overlap(infos, archive_size)


def unsafe_member_name(name: str) -> bool:
    return (name.startswith(("/", "\\")) or "\\" in name or "\x00" in name
            or ".." in name.split("/") or re.match(r"^[A-Za-z]:", name) is not None)


def _check_overlap(infos: list[zipfile.ZipInfo], archive_size: int) -> None:
    """Entries whose data overlaps (the "better zip bomb"); Python 3.11's zipfile does not check."""
    spans = sorted((i.header_offset, i.header_offset + 30 + len(_raw_name(i)) + i.compress_size, i.filename)
                   for i in infos)
    for (_s1, e1, n1), (s2, _e2, n2) in itertools.pairwise(spans):
        if s2 < e1:
            raise Rejected("damaged-file", f"các thành phần '{n1[:40]}' và '{n2[:40]}' chồng lên nhau (tệp bị hỏng hoặc độc hại)")
    if spans and spans[-1][1] > archive_size:
        raise Rejected("damaged-file", "tệp bị cắt cụt (thiếu dữ liệu ở cuối); đề nghị gửi lại")


def _raw_name(info: zipfile.ZipInfo) -> bytes:
    """The name as stored in the local header (UTF-8 if flagged, else CP437)."""
    return info.filename.encode("utf-8" if info.flag_bits & 0x800 else "cp437", "replace")


def _read(zf: zipfile.ZipFile, name: str, limit: int) -> bytes:
    try:
        with zf.open(name) as fh:
            return fh.read(limit)
    except ZIP_ERRORS as err:
        raise Rejected("damaged-file", f"thành phần '{name}' bị hỏng; đề nghị mở bằng Excel rồi lưu lại") from err
    except Exception as err:  # zlib.error and friends from corrupt deflate streams
        raise Rejected("damaged-file", f"thành phần '{name}' bị hỏng; đề nghị gửi lại") from err


def _check_xml_parts(zf: zipfile.ZipFile, infos: list[zipfile.ZipInfo]) -> None:
    for info in infos:
        if _XML_PARTS.match(info.filename):
            head = _read(zf, info.filename, 2048)
            if _DTD.search(head):
                raise Rejected("unsafe-xml", f"thành phần '{info.filename}' khai báo DTD/thực thể XML "
                                             "(không có trong bảng tính thật; nghi tệp độc hại)")
