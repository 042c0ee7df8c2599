"""Turn whatever arrived into a stream of candidate files, each with where it came from.

Accepts files, folders, .zip archives (including names without the UTF-8 flag), .eml messages,
.mbox files and Maildir folders; attachments may themselves be .zip files. Names are metadata
only — they are NFC-normalised for display and never used as paths. Messages without a usable
attachment are reported for a human to look at.
"""

from __future__ import annotations

import datetime as dt
import email
import email.header
import email.policy
import email.utils
import io
import mailbox
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import Message
from pathlib import Path

from .gate import MB, ZIP_ERRORS, Rejected, check_zip_members
from .textnorm import clean_text, no_surrogates
from .workspace import Limits

WORKBOOK_EXTS = (".xlsx", ".xlsm", ".xls", ".ods", ".xltx", ".xlt")
SKIP_NAMES = (".DS_Store", "Thumbs.db", "desktop.ini")


@dataclass(frozen=True)
class Origin:
    """How a file reached the office."""

    kind: str  # file | zip | email | mbox | maildir | imap
    path: str = ""  # the file, archive or mailbox on disk
    member: str = ""  # the name inside a zip or the attachment name
    sender: str = ""  # e-mail address
    sender_name: str = ""
    date: dt.datetime | None = None  # e-mail Date header
    message_id: str = ""
    subject: str = ""

    def __post_init__(self) -> None:
        # A file name in a legacy code page reaches Python with lone surrogates, which SQLite and the
        # terminal refuse: the origin is for people, so show those bytes as U+FFFD (Item.path keeps
        # the real name for reading).
        for name in ("path", "member", "sender", "sender_name", "message_id", "subject"):
            value = getattr(self, name)
            if isinstance(value, str):
                object.__setattr__(self, name, no_surrogates(value))

    def describe(self) -> str:
        if self.kind in ("email", "mbox", "maildir", "imap"):
            when = self.date.strftime("%d/%m/%Y %H:%M") if self.date else "không rõ ngày"
            return f"thư từ {self.sender or 'không rõ người gửi'}, {when}"
        if self.kind == "zip":
            return f"{self.path} › {self.member}"
        return self.path


@dataclass(frozen=True)
class Item:
    """One candidate file or one message without a usable attachment.

    Plain files are read lazily (``path``) so that listing 10,000 files costs no memory; members
    of archives and attachments are already in memory (``data``).
    """

    name: str  # display name (NFC), never a path
    data: bytes | None
    origin: Origin
    received_at: dt.datetime
    problem: str = ""  # set when there is nothing to collect (e.g. a message with no attachment)
    path: Path | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "name", no_surrogates(self.name))

    def load(self) -> bytes:
        if self.data is not None:
            return self.data
        assert self.path is not None
        return self.path.read_bytes()


def expand(paths: list[Path], limits: Limits) -> Iterator[Item]:
    """Yield items from every path, in a stable order (sorted folders)."""
    for path in paths:
        yield from _expand_path(Path(path), limits)


def _expand_path(path: Path, limits: Limits) -> Iterator[Item]:
    if path.is_dir():
        if all((path / sub).is_dir() for sub in ("cur", "new", "tmp")):
            yield from _maildir(path, limits)
            return
        for child in sorted(path.rglob("*"), key=lambda p: str(p)):
            if child.is_file() and not _skipped(child):
                yield from _expand_file(child, limits)
        return
    if not path.exists():
        yield Item(path.name, None, Origin("file", str(path)), _now(), problem="không tìm thấy tệp hoặc thư mục")
        return
    yield from _expand_file(path, limits)


def _skipped(path: Path) -> bool:
    name = path.name
    return name in SKIP_NAMES or name.startswith("~$") or name.startswith(".~lock") or any(
        part.startswith(".") for part in path.parts[-1:])


def _expand_file(path: Path, limits: Limits) -> Iterator[Item]:
    try:
        stat = path.stat()
    except OSError as err:
        yield Item(path.name, None, Origin("file", str(path)), _now(), problem=f"không đọc được tệp ({err.strerror})")
        return
    mtime = dt.datetime.fromtimestamp(stat.st_mtime).replace(microsecond=0)
    name = clean_text(no_surrogates(path.name), multiline=False)
    suffix = path.suffix.lower()
    if stat.st_size > limits.max_file_mb * MB * 4:
        yield Item(name, None, Origin("file", str(path)), mtime,
                   problem=f"tệp nặng {stat.st_size / MB:.0f} MB, quá lớn để là báo cáo; đã bỏ qua")
        return
    try:
        with open(path, "rb") as fh:
            head = fh.read(4096)
    except OSError as err:
        yield Item(name, None, Origin("file", str(path)), mtime, problem=f"không đọc được tệp ({err.strerror})")
        return
    if suffix == ".mbox" or (suffix not in WORKBOOK_EXTS and head.startswith(b"From ") and b"\n" in head):
        yield from _mbox(path, limits)
        return
    if suffix == ".eml" or (suffix not in WORKBOOK_EXTS and _looks_like_email(head)):
        yield from message_items(path.read_bytes(), Origin("email", str(path)), limits)
        return
    if head.startswith(b"PK\x03\x04") and suffix not in WORKBOOK_EXTS:
        data = path.read_bytes()
        if _is_plain_zip(data):
            yield from _zip_members(data, Origin("zip", str(path)), mtime, limits)
            return
    yield Item(name, None, Origin("file", str(path)), mtime, path=path)


def _looks_like_email(data: bytes) -> bool:
    head = data[:2048]
    return any(head.startswith(h) or b"\n" + h in head for h in (b"From:", b"Received:", b"Return-Path:", b"MIME-Version:"))


def _is_plain_zip(data: bytes) -> bool:
    """A zip archive that is not itself an OOXML or ODF document."""
    if not data.startswith(b"PK\x03\x04"):
        return False
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            names = set(zf.namelist())
    except ZIP_ERRORS:
        return False
    return "[Content_Types].xml" not in names and "mimetype" not in names


def member_name(info: zipfile.ZipInfo) -> str:
    """Repair names stored without the UTF-8 flag (Windows tools): CP437 → UTF-8, else CP1258."""
    name = info.filename
    if not info.flag_bits & 0x800:
        raw = name.encode("cp437", "replace")
        for codec in ("utf-8", "cp1258"):
            try:
                name = raw.decode(codec)
                break
            except UnicodeDecodeError:
                continue
    return clean_text(name, multiline=False)


def _zip_members(data: bytes, origin: Origin, when: dt.datetime, limits: Limits, depth: int = 0) -> Iterator[Item]:
    label = origin.member or Path(origin.path).name
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
        infos = zf.infolist()
        check_zip_members(infos, len(data), limits)
    except (Rejected, *ZIP_ERRORS):
        # A damaged or hostile archive is one file like any other: archived, then rejected by the
        # gate with its reason (the same checks), and the run exits 1.
        yield Item(clean_text(label, multiline=False), data, origin if origin.member else Origin("file", origin.path), when)
        return
    for info in sorted(infos, key=lambda i: i.filename):
        if info.is_dir():
            continue
        name = member_name(info)
        base = name.rsplit("/", 1)[-1]
        if not base or base in SKIP_NAMES or base.startswith((".", "~$")) or name.startswith("__MACOSX/"):
            continue
        member_origin = Origin(origin.kind if origin.kind != "file" else "zip", origin.path,
                               f"{origin.member} › {name}" if origin.member else name, origin.sender,
                               origin.sender_name, origin.date, origin.message_id, origin.subject)
        try:
            content = zf.read(info)
        except Exception as err:  # corrupt deflate data, CRC errors, lying sizes
            yield Item(base, None, member_origin, when, problem=f"không giải nén được ({type(err).__name__})")
            continue
        stamp = _zip_time(info) or when
        if depth == 0 and _is_plain_zip(content):
            yield from _zip_members(content, member_origin, stamp, limits, depth + 1)
        else:
            yield Item(base, content, member_origin, stamp if origin.kind in ("file", "zip") else when)


def _zip_time(info: zipfile.ZipInfo) -> dt.datetime | None:
    try:
        return dt.datetime(*info.date_time)
    except ValueError:
        return None


def _mbox(path: Path, limits: Limits) -> Iterator[Item]:
    box = mailbox.mbox(path, factory=lambda f: parse_message(f.read()), create=False)
    try:
        for key in sorted(box.keys()):
            yield from parsed_message_items(box[key], Origin("mbox", str(path)), limits, f"thư số {key}")
    finally:
        box.close()


def _maildir(path: Path, limits: Limits) -> Iterator[Item]:
    box = mailbox.Maildir(path, factory=lambda f: parse_message(f.read()), create=False)
    for key in sorted(box.keys()):
        yield from parsed_message_items(box[key], Origin("maildir", str(path)), limits, f"thư số {key}")


def parse_message(raw: bytes) -> Message | None:
    """The message, or None when Python's e-mail parser fails on it (it raises ValueError on a NUL in a
    charset name, among others; found by atheris)."""
    try:
        return email.message_from_bytes(raw, policy=email.policy.default)
    except Exception:
        return None


def message_items(raw: bytes, origin: Origin, limits: Limits) -> Iterator[Item]:
    """Items of one raw RFC 822 message."""
    yield from parsed_message_items(parse_message(raw), origin, limits)


def parsed_message_items(msg: Message | None, origin: Origin, limits: Limits, label: str = "") -> Iterator[Item]:
    """Items of a message from ``parse_message`` (also used by fetch-mail, which reads its headers
    too); one item for a human, named ``label`` or after the origin, when the parser failed on it."""
    if msg is None:
        yield Item(label or Path(origin.path).name or "thư", None, origin, _now(),
                   problem="thư bị hỏng, chương trình không đọc được; cần người xem")
        return
    yield from _message(msg, origin, limits)


def _message(msg: Message, base: Origin, limits: Limits) -> Iterator[Item]:
    """The message's attachments as items. Python's e-mail parser raises odd exceptions on some
    malformed headers and parts (AttributeError, IndexError, ValueError…; found by atheris): a
    header it cannot parse is read raw, and a part it cannot read is reported for a human, so one
    bad message never ends the run."""
    name, address = email.utils.parseaddr(header_text(msg, "From"))
    date = message_date(msg)
    origin = Origin(base.kind, base.path, "", clean_text(address, multiline=False).lower(),
                    clean_text(_decode(name), multiline=False), date, clean_text(header_text(msg, "Message-ID"), multiline=False),
                    clean_text(_decode(header_text(msg, "Subject")), multiline=False))
    when = date or _now()
    found = unreadable = False
    try:
        parts = list(_attachments(msg))
    except Exception:
        parts, unreadable = [], True
    for part in parts:
        try:
            filename = attachment_name(part)
        except Exception:
            filename = "tep-dinh-kem"
        try:
            payload = part.get_payload(decode=True) or b""
        except Exception:  # malformed transfer encoding
            payload, unreadable = b"", True
        if not payload:
            continue
        found = True
        att_origin = Origin(origin.kind, origin.path, filename, origin.sender, origin.sender_name, origin.date,
                            origin.message_id, origin.subject)
        if _is_plain_zip(payload):
            yield from _zip_members(payload, att_origin, when, limits)
        else:
            yield Item(filename, payload, att_origin, when)
    if not found:
        subject = origin.subject or "(không tiêu đề)"
        problem = ("thư có phần bị hỏng, không đọc được tệp đính kèm; cần người xem" if unreadable
                   else "thư không có tệp đính kèm dùng được; cần người xem")
        yield Item(subject, None, origin, when, problem=problem)


def header_text(msg: Message | None, name: str) -> str:
    """A header as text; its raw value when the e-mail package's parser fails on it ("" without a message)."""
    if msg is None:
        return ""
    try:
        value = msg.get(name)
        return "" if value is None else no_surrogates(str(value))
    except Exception:
        for key, raw in msg.raw_items():
            if key.lower() == name.lower():
                return no_surrogates(str(raw))
        return ""


def _attachments(msg: Message) -> Iterator[Message]:
    """Every leaf part that is an attachment or carries a file name (also inside forwarded messages)."""
    for part in msg.walk():
        if part.is_multipart() or part.get_content_type() == "message/rfc822":
            continue
        if part.get_content_maintype() == "image" and (part.get_content_disposition() != "attachment" or part["Content-ID"]):
            continue  # a logo in the signature, not something the unit sent
        if part.get_content_disposition() == "attachment" or attachment_name(part, default=""):
            yield part


def attachment_name(part: Message, default: str = "tep-dinh-kem") -> str:
    """The attachment's file name, decoded from RFC 2231 or an encoded-word, NFC, never a path."""
    raw = part.get_filename() or ""
    if not raw:
        ctype_name = part.get_param("name")
        raw = ctype_name if isinstance(ctype_name, str) else ""
    raw = no_surrogates(raw)
    name = _decode(raw) if raw.startswith("=?") or "=?" in raw else raw
    name = clean_text(name, multiline=False).replace("\\", "/").rsplit("/", 1)[-1]
    return name or default


def _decode(value: str) -> str:
    if "=?" not in value:
        return value
    try:
        parts = email.header.decode_header(value)
    except Exception:  # malformed encoded words: keep the text as it is
        return value
    out = []
    for text, charset in parts:
        if isinstance(text, bytes):
            try:
                out.append(text.decode(charset or "utf-8", "replace"))
            except (LookupError, ValueError):  # an unknown charset, or a name codecs refuse (a NUL in it: atheris)
                out.append(text.decode("utf-8", "replace"))
        else:
            out.append(text)
    return "".join(out)


def message_date(msg: Message | None) -> dt.datetime | None:
    """The Date header as a naive local time (None when absent or unreadable)."""
    raw = header_text(msg, "Date")
    if not raw:
        return None
    try:
        parsed = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone().replace(tzinfo=None)
    return parsed.replace(microsecond=0)


def _now() -> dt.datetime:
    return dt.datetime.now().replace(microsecond=0)


__all__ = ["Item", "Origin", "attachment_name", "expand", "header_text", "member_name", "message_date", "message_items",
           "parse_message", "parsed_message_items"]
