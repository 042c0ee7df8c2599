"""E-mail in: collect returned workbooks from an IMAP mailbox (``danvan fetch-mail``).

Only new messages are fetched: the ledger remembers each message's UID under the folder's
UIDVALIDITY. When the server renumbers the folder (a new UIDVALIDITY) every message counts as new
again and the sha256 of each file makes the re-fetched ones duplicates. Messages are processed in
batches: a batch's attachments go through :func:`~danvan_xl.collect.ingest` (which commits them),
and only then are its UIDs marked seen — a crash in between re-fetches the batch, nothing is lost.

Attachment names are decoded by :mod:`danvan_xl.intake` (RFC 2231 or encoded-word, NFC) and are
only ever shown, never used as paths. Pictures and PDFs are not passed to the collector; a message
from a unit (or a reply to one of our messages) with no spreadsheet is listed for a human.
The mailbox is opened read-only: nothing is flagged, moved or deleted on the server.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import email
import email.utils
import imaplib
import re
import ssl
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from email.message import Message
from pathlib import PurePosixPath
from typing import Any

from .collect import CollectResult, ingest
from .errors import ConfigError, MailError
from .gate import MB, OLE_MAGIC
from .intake import WORKBOOK_EXTS, Item, Origin, header_text, message_date, parse_message, parsed_message_items
from .ledger import Ledger, WorkspaceLock
from .mailer import _connect_message, _tls_message, is_loopback, tls_context
from .textnorm import clean_text
from .units import Register
from .workspace import MailSettings, Workspace

BATCH = 25  # messages fetched and committed together
SINCE_MARGIN_DAYS = 30  # messages older than the issue date minus this cannot be replies
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_UID = re.compile(rb"UID (\d+)")
_SIZE = re.compile(rb"RFC822\.SIZE (\d+)")
_MSGID = re.compile(r"<[^<>\s]+>")

Progress = Callable[[int, int], None]  # (messages done, messages to do)


@dataclass(frozen=True)
class NeedsHuman:
    """A message with nothing to collect that a person should read."""

    uid: int
    sender: str
    subject: str
    date: dt.datetime | None
    reason: str
    unit: str = ""  # the unit whose address sent it, when known

    def describe(self) -> str:
        when = self.date.strftime("%d/%m/%Y %H:%M") if self.date else "không rõ ngày"
        who = f"{self.sender}" + (f" [{self.unit}]" if self.unit else "")
        return f"Thư từ {who}, {when}, “{self.subject or '(không tiêu đề)'}”: {self.reason}"

    def to_dict(self) -> dict[str, Any]:
        return {"uid": self.uid, "sender": self.sender, "subject": self.subject,
                "date": self.date.isoformat(timespec="seconds") if self.date else None, "reason": self.reason,
                "unit": self.unit, "text": self.describe()}


@dataclass
class FetchReport:
    """What one ``fetch-mail`` run found and collected."""

    account: str
    folder: str
    uidvalidity: int = 0
    uidvalidity_changed: bool = False
    in_window: int = 0  # messages in the folder since the issue date (minus a margin)
    new_messages: int = 0
    irrelevant: int = 0  # no attachment, not from a unit, not a reply to us
    collect: CollectResult = field(default_factory=CollectResult)
    needs_human: list[NeedsHuman] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)  # attachments that are not spreadsheets
    warnings: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return self.collect.exit_code if self.collect.outcomes else 0

    def summary(self) -> str:
        head = (f"Hộp thư {self.account}, thư mục {self.folder}: {self.new_messages} thư mới "
                f"(trong {self.in_window} thư kể từ ngày phát hành biểu mẫu).")
        parts = [head]
        if self.uidvalidity_changed:
            parts.append("Máy chủ đã đánh số lại thư mục (UIDVALIDITY đổi): đã đọc lại toàn bộ, tệp đã nhận được nhận "
                         "ra là trùng.")
        if self.collect.outcomes:
            parts.append(self.collect.summary())
        if self.needs_human:
            parts.append(f"{len(self.needs_human)} thư cần người xem.")
        if self.irrelevant:
            parts.append(f"{self.irrelevant} thư không liên quan (không đính kèm, không từ đơn vị nào) đã bỏ qua.")
        return " ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return {
            "account": self.account, "folder": self.folder, "uidvalidity": self.uidvalidity,
            "uidvalidity_changed": self.uidvalidity_changed, "in_window": self.in_window,
            "new_messages": self.new_messages, "irrelevant": self.irrelevant, "collect": self.collect.to_dict(),
            "needs_human": [n.to_dict() for n in self.needs_human], "ignored": self.ignored,
            "warnings": self.warnings, "summary": self.summary(), "exit_code": self.exit_code,
        }


def fetch_mail(ws: Workspace, *, password: str | None, progress: Progress | None = None,
               batch_size: int = BATCH) -> FetchReport:
    """Collect the workbooks attached to new messages of ``[mail] imap_folder``.

    Raises :class:`MailError` (Vietnamese) when the server cannot be reached, refuses TLS or the
    login, or has no such folder; nothing is recorded in that case.
    """
    s = ws.mail
    user = (s.imap_user or s.sender or ws.office.email).strip()
    if not s.imap_host:
        raise ConfigError("Chưa khai báo máy chủ nhận thư: đặt imap_host trong bảng [mail] của danvan.toml")
    if not user:
        raise ConfigError("Chưa khai báo tài khoản nhận thư: đặt imap_user trong bảng [mail] của danvan.toml")
    if password is None:
        raise MailError("Chưa có mật khẩu hộp thư: đặt biến môi trường DANVAN_IMAP_PASSWORD hoặc nhập khi được hỏi.")
    form = ws.load_form()
    register = ws.load_register()
    account = f"{user}@{s.imap_host}"
    report = FetchReport(account, s.imap_folder or "INBOX", warnings=_warnings(s))
    session = ImapSession(s, user, password)
    with WorkspaceLock(ws.lock_path, "danvan fetch-mail"), Ledger.open(ws.ledger_path, ws.archive_dir, "fetch-mail") as ledger:
        session.open()
        try:
            report.uidvalidity = session.select(report.folder)
            seen = ledger.imap_seen(account, report.folder, report.uidvalidity)
            report.uidvalidity_changed = not seen and _seen_elsewhere(ledger, account, report.folder, report.uidvalidity)
            since = ws.issue_date - dt.timedelta(days=SINCE_MARGIN_DAYS)
            uids = session.search_since(since)
            report.in_window = len(uids)
            new = sorted(u for u in uids if u not in seen)
            report.new_messages = len(new)
            ours = _our_message_ids(ledger)
            done = 0
            for batch in _chunks(new, max(1, batch_size)):
                _batch(ws, form, register, ledger, session, report, batch, ours)
                done += len(batch)
                if progress:
                    progress(done, len(new))
        finally:
            session.close()
    return report


def _batch(ws: Workspace, form: Any, register: Register, ledger: Ledger, session: ImapSession, report: FetchReport,
           uids: list[int], ours: set[str]) -> None:
    """Fetch, classify and ingest one batch; then mark its UIDs seen (after ingest committed)."""
    limit = int(ws.limits.max_file_mb * MB * 2)  # base64 and other attachments included
    sizes = session.sizes(uids)
    small = [u for u in uids if sizes.get(u, 0) <= limit]
    raws = session.fetch(small) if small else {}
    items: list[Item] = []
    handled: list[tuple[int, str]] = []
    for uid in uids:
        if uid not in sizes:
            continue  # expunged since the search: nothing to mark
        if uid not in raws:
            if uid in small:
                continue  # vanished between SIZE and FETCH; looked at again next time
            head = session.headers(uid)
            _name, sender = email.utils.parseaddr(header_text(head, "From"))
            sender_unit = register.by_email(sender) if sender else None
            report.needs_human.append(NeedsHuman(
                uid, clean_text(sender, multiline=False).lower(), clean_text(header_text(head, "Subject"), multiline=False),
                message_date(head),
                f"thư nặng {sizes[uid] / MB:.0f} MB, quá lớn để tải tự động; hãy mở bằng chương trình thư, lưu tệp đính kèm "
                "ra thư mục rồi chạy danvan collect", sender_unit.code if sender_unit else ""))
            handled.append((uid, header_text(head, "Message-ID").strip()))
            continue
        origin = Origin("imap", imap_url(report.account, report.folder, report.uidvalidity, uid))
        msg_id = _classify(ws, register, report, uid, raws[uid], origin, ours, items)
        handled.append((uid, msg_id))
    if items:
        result = ingest(ws, form, register, ledger, items)
        report.collect.outcomes.extend(result.outcomes)
    with ledger.transaction() as conn:
        for uid, msg_id in handled:
            ledger.mark_imap_seen(conn, report.account, report.folder, report.uidvalidity, uid, msg_id)


def _classify(ws: Workspace, register: Register, report: FetchReport, uid: int, raw: bytes, origin: Origin,
              ours: set[str], items: list[Item]) -> str:
    """Append the message's collectable items to ``items``; record the rest in the report."""
    msg = parse_message(raw)
    found = list(parsed_message_items(msg, origin, ws.limits))
    first = found[0].origin if found else origin
    sender_unit = register.by_email(first.sender) if first.sender else None
    collectable = [i for i in found if i.origin.member and (i.problem or _spreadsheet(i))]
    others = [i for i in found if i.origin.member and i not in collectable]
    items.extend(collectable)
    if collectable:
        report.ignored.extend(f"{i.name} ({first.describe()})" for i in others)
        return first.message_id
    relevant = sender_unit is not None or _replies_to_us(msg, ours) or bool(others)
    if not relevant:
        report.irrelevant += 1
        return first.message_id
    if others:
        names = ", ".join(f"“{i.name}”" for i in others)
        reason = f"không có bảng tính, chỉ có {names}; đề nghị đơn vị gửi tệp Excel (.xlsx) của biểu mẫu"
    else:
        reason = "thư không có tệp đính kèm; có thể đơn vị quên đính kèm biểu mẫu"
    report.needs_human.append(NeedsHuman(uid, first.sender, first.subject, first.date, reason,
                                         sender_unit.code if sender_unit else ""))
    return first.message_id


def _spreadsheet(item: Item) -> bool:
    """A candidate for the collector: a spreadsheet by name or by content (zip or OLE container)."""
    if item.data is None:
        return False
    suffix = PurePosixPath(item.name.lower()).suffix
    return suffix in WORKBOOK_EXTS or item.data.startswith(b"PK\x03\x04") or item.data.startswith(OLE_MAGIC)


def _replies_to_us(msg: Message | None, ours: set[str]) -> bool:
    refs = f"{header_text(msg, 'In-Reply-To')} {header_text(msg, 'References')}"
    return any(m in ours for m in _MSGID.findall(refs))


def _our_message_ids(ledger: Ledger) -> set[str]:
    rows = ledger.conn.execute("SELECT message_id FROM mail_log WHERE status = 'sent'").fetchall()
    return {str(r["message_id"]).strip() for r in rows}


def _seen_elsewhere(ledger: Ledger, account: str, folder: str, uidvalidity: int) -> bool:
    row = ledger.conn.execute("SELECT 1 FROM imap_seen WHERE account = ? AND folder = ? AND uidvalidity <> ? LIMIT 1",
                              (account, folder, uidvalidity)).fetchone()
    return row is not None


def _chunks(values: Sequence[int], size: int) -> Iterator[list[int]]:
    for start in range(0, len(values), size):
        yield list(values[start:start + size])


def _warnings(s: MailSettings) -> list[str]:
    if s.imap_security == "none" and not is_loopback(s.imap_host):
        return [f"Cảnh báo: mật khẩu hộp thư gửi tới {s.imap_host} không được mã hoá (imap_security = \"none\"). "
                "Nên dùng ssl (cổng 993) hoặc starttls."]
    return []


def imap_url(account: str, folder: str, uidvalidity: int, uid: int) -> str:
    """RFC 5092 style address of one message, kept as the submission's origin."""
    return f"imap://{account}/{folder};UIDVALIDITY={uidvalidity}/;UID={uid}"


# ------------------------------------------------------------------ IMAP


class ImapSession:
    """A read-only IMAP session (none | starttls | ssl) with Vietnamese errors."""

    def __init__(self, settings: MailSettings, user: str, password: str) -> None:
        self.s = settings
        self.user = user
        self.password = password
        self.conn: imaplib.IMAP4 | None = None

    @property
    def where(self) -> str:
        return f"{self.s.imap_host}:{self.s.imap_port}"

    def open(self) -> None:
        s = self.s
        try:
            if s.imap_security == "ssl":
                conn: imaplib.IMAP4 = imaplib.IMAP4_SSL(s.imap_host, s.imap_port, ssl_context=tls_context(),
                                                        timeout=s.timeout_seconds)
            else:
                conn = imaplib.IMAP4(s.imap_host, s.imap_port, timeout=s.timeout_seconds)
        except (ssl.SSLError, ssl.CertificateError) as err:
            raise MailError(_tls_message("nhận", self.where, err)) from err
        except (OSError, imaplib.IMAP4.error) as err:
            raise MailError(_connect_message("nhận", self.where, err)) from err
        self.conn = conn
        try:
            if s.imap_security == "starttls":
                self._starttls(conn)
            self._login(conn)
        except BaseException:
            self.close()
            raise

    def _starttls(self, conn: imaplib.IMAP4) -> None:
        try:
            conn.starttls(ssl_context=tls_context())
        except (ssl.SSLError, ssl.CertificateError) as err:
            raise MailError(_tls_message("nhận", self.where, err)) from err
        except imaplib.IMAP4.error as err:
            raise MailError(f"Máy chủ nhận thư {self.where} không hỗ trợ STARTTLS (mã hoá kết nối): {err}. Kiểm tra "
                            "imap_port/imap_security trong danvan.toml (cổng 993 dùng ssl, cổng 143 dùng starttls).") from err
        except OSError as err:
            raise MailError(_connect_message("nhận", self.where, err)) from err

    def _login(self, conn: imaplib.IMAP4) -> None:
        try:
            if self.password.isascii() and self.user.isascii():
                conn.login(self.user, self.password)
            else:  # LOGIN is ASCII-only in imaplib; SASL PLAIN carries UTF-8
                token = b"\0" + self.user.encode() + b"\0" + self.password.encode()
                conn.authenticate("PLAIN", lambda _challenge: token)
        except imaplib.IMAP4.error as err:
            raise MailError(f"Máy chủ nhận thư {self.where} từ chối đăng nhập của '{self.user}': sai tên đăng nhập hoặc "
                            f"mật khẩu ({_server_text(err)}). Kiểm tra biến DANVAN_IMAP_PASSWORD.") from err
        except OSError as err:
            raise MailError(_connect_message("nhận", self.where, err)) from err

    def select(self, folder: str) -> int:
        """Open ``folder`` read-only; return its UIDVALIDITY."""
        conn = self._conn()
        try:
            typ, data = conn.select(quote_mailbox(folder), readonly=True)
            if typ != "OK":
                raise MailError(f"Không mở được thư mục '{folder}' trên máy chủ {self.where}: {_text(data)}. "
                                "Kiểm tra imap_folder trong danvan.toml.")
            _typ, validity = conn.response("UIDVALIDITY")
        except imaplib.IMAP4.error as err:
            raise MailError(f"Không mở được thư mục '{folder}' trên máy chủ {self.where}: {_server_text(err)}. "
                            "Kiểm tra imap_folder trong danvan.toml.") from err
        except OSError as err:
            raise MailError(_connect_message("nhận", self.where, err)) from err
        try:
            return int(validity[-1])
        except (TypeError, ValueError, IndexError) as err:
            raise MailError(f"Máy chủ {self.where} không cho biết UIDVALIDITY của thư mục '{folder}'") from err

    def search_since(self, since: dt.date) -> list[int]:
        data = self._uid("SEARCH", None, "SINCE", f"{since.day:02d}-{_MONTHS[since.month - 1]}-{since.year}")
        return sorted({int(x) for chunk in data if isinstance(chunk, bytes) for x in chunk.split()})

    def sizes(self, uids: Sequence[int]) -> dict[int, int]:
        out: dict[int, int] = {}
        for chunk in self._uid("FETCH", _uid_set(uids), "(UID RFC822.SIZE)"):
            line = chunk[0] if isinstance(chunk, tuple) else chunk
            if not isinstance(line, bytes):
                continue
            uid, size = _UID.search(line), _SIZE.search(line)
            if uid and size:
                out[int(uid.group(1))] = int(size.group(1))
        return out

    def fetch(self, uids: Sequence[int]) -> dict[int, bytes]:
        """The raw messages (``BODY.PEEK[]``: the \\Seen flag is not set)."""
        data = self._uid("FETCH", _uid_set(uids), "(UID BODY.PEEK[])")
        out: dict[int, bytes] = {}
        for i, chunk in enumerate(data):
            if not isinstance(chunk, tuple) or len(chunk) < 2:
                continue
            head = chunk[0]
            match = _UID.search(head)
            if match is None and i + 1 < len(data) and isinstance(data[i + 1], bytes):
                match = _UID.search(data[i + 1])  # some servers send UID after the literal
            if match is not None:
                out[int(match.group(1))] = chunk[1]
        return out

    def headers(self, uid: int) -> Message | None:
        """From, Subject, Date and Message-ID of one message (without downloading it); None when the
        e-mail parser fails on them (read them with ``header_text``)."""
        data = self._uid("FETCH", str(uid), "(UID BODY.PEEK[HEADER.FIELDS (FROM SUBJECT DATE MESSAGE-ID)])")
        raw = next((c[1] for c in data if isinstance(c, tuple) and len(c) > 1), b"")
        return parse_message(raw)

    def _uid(self, command: str, *args: Any) -> list[Any]:
        conn = self._conn()
        try:
            typ, data = conn.uid(command, *args)
        except (imaplib.IMAP4.error, OSError) as err:
            raise MailError(f"Lỗi khi đọc hộp thư trên máy chủ {self.where} ({command}): {_server_text(err)}. "
                            "Các thư đã thu nhận trước đó vẫn được giữ; hãy chạy lại lệnh.") from err
        if typ != "OK":
            raise MailError(f"Máy chủ {self.where} từ chối lệnh {command}: {_text(data)}")
        return list(data or [])

    def _conn(self) -> imaplib.IMAP4:
        if self.conn is None:
            self.open()
        assert self.conn is not None
        return self.conn

    def close(self) -> None:
        if self.conn is None:
            return
        conn, self.conn = self.conn, None
        try:
            if conn.state == "SELECTED":
                conn.close()
            conn.logout()
        except (imaplib.IMAP4.error, OSError):
            with contextlib.suppress(OSError):
                conn.shutdown()


def _uid_set(uids: Sequence[int]) -> str:
    return ",".join(str(u) for u in uids)


def quote_mailbox(name: str) -> str:
    """A mailbox name for the IMAP wire: modified UTF-7 (RFC 3501 §5.1.3), quoted."""
    encoded = imap_utf7(name)
    return '"' + encoded.replace("\\", "\\\\").replace('"', '\\"') + '"'


def imap_utf7(name: str) -> str:
    """Encode a folder name such as "Báo cáo" as modified UTF-7 ("B&AOE-o c&AOE-o")."""
    import base64

    out: list[str] = []
    buf: list[str] = []

    def flush() -> None:
        if buf:
            raw = "".join(buf).encode("utf-16-be")
            out.append("&" + base64.b64encode(raw).decode().rstrip("=").replace("/", ",") + "-")
            buf.clear()

    for ch in name:
        if 0x20 <= ord(ch) <= 0x7E:
            flush()
            out.append("&-" if ch == "&" else ch)
        else:
            buf.append(ch)
    flush()
    return "".join(out)


def _server_text(err: BaseException) -> str:
    text = str(err)
    if text.startswith("b'") or text.startswith('b"'):
        text = text[2:-1]
    return clean_text(text, multiline=False) or type(err).__name__


def _text(data: Any) -> str:
    if isinstance(data, list | tuple):
        return " ".join(_text(d) for d in data if d is not None)
    if isinstance(data, bytes):
        return data.decode("utf-8", "replace")
    return str(data)


__all__ = ["FetchReport", "ImapSession", "NeedsHuman", "fetch_mail", "imap_url", "imap_utf7",
           "quote_mailbox"]
