"""E-mail out: one message per unit — its template, a reminder, or feedback — as drafts or over SMTP.

Building is pure: :func:`build_messages` reads the workspace (register, templates, status, wording)
and returns :class:`Outgoing` messages; units that cannot be written to (no address, no template,
attachment too large) come back with a Vietnamese ``problem`` instead of raising. The wording is
data: Jinja2 templates in the form's ``mail/`` folder (``gui_bieu_mau.txt.j2``, ``nhac_nho.txt.j2``,
``phan_hoi.txt.j2``; the HTML alternative is built from the text by ``thu.html.j2``), subjects
from ``wording.mail_subject_*`` in the form definition.

Sending (:func:`send`) records every delivered message in the ledger's ``mail_log`` (unit, message
id, attachment sha256, time) *after* the server accepted it, so a re-run sends only what was not
sent yet (``resend=True`` overrides); temporary failures (4xx replies, dropped connections) are
retried with backoff. A crash between the server's acceptance and the ledger write can at worst
send one message twice — never lose one.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import datetime as dt
import email.policy
import hashlib
import ipaddress
import re
import secrets
import smtplib
import socket
import ssl
import string
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path
from typing import Any, Literal

import jinja2
from jinja2.sandbox import SandboxedEnvironment

from .errors import ConfigError, LedgerError, MailError
from .form import Form
from .fsio import prepare_dir, write_atomic
from .resources import bundled_form_dir
from .template_writer import template_filename
from .textnorm import clean_text, fold, format_date_short, nfc
from .units import Unit
from .workspace import DEFAULT_FORM, MailSettings, Workspace

Kind = Literal["template", "reminder", "feedback"]
KINDS: tuple[str, ...] = ("template", "reminder", "feedback")
KIND_VI = {"template": "gửi biểu mẫu", "reminder": "nhắc nộp báo cáo", "feedback": "đề nghị điều chỉnh"}
MAIL_FOLDER = "mail"
_BODY_TEMPLATE = {"template": "gui_bieu_mau", "reminder": "nhac_nho", "feedback": "phan_hoi"}
_SUBJECT_KEY = {"template": "mail_subject_template", "reminder": "mail_subject_reminder",
                "feedback": "mail_subject_feedback"}
_DEFAULT_SUBJECT = {
    "template": "[{year}] Biểu mẫu báo cáo {form_title} — {unit_name}",
    "reminder": "[{year}] Nhắc nộp báo cáo {form_title} — {unit_name}",
    "feedback": "[{year}] Đề nghị điều chỉnh báo cáo {form_title} — {unit_name}",
}
_DRAFT_SUFFIX = {"template": "", "reminder": "_nhac-nho", "feedback": "_phan-hoi"}
_ATTACHMENT_LABEL = {"template": "Biểu mẫu", "reminder": "Biểu mẫu", "feedback": "Biểu mẫu cần điều chỉnh"}
HTML_LAYOUT = "thu.html.j2"
XLSX_TYPE = ("application", "vnd.openxmlformats-officedocument.spreadsheetml.sheet")
MB = 1024 * 1024
# Backoff before retry n (n = 1, 2, …) is BACKOFF_SECONDS * 2 ** (n - 1), capped at BACKOFF_MAX.
BACKOFF_SECONDS = 2.0
BACKOFF_MAX = 60.0
# .eml drafts use CRLF like the files mail clients export; sent messages use the SMTP policy.
_EML_POLICY = email.policy.default.clone(linesep="\r\n")
_WIN_FORBIDDEN = re.compile(r'[\\/:*?"<>|\x00-\x1f]+')

Progress = Callable[[int, int], None]  # (done, total)


# ------------------------------------------------------------------ data


@dataclass(frozen=True)
class Outgoing:
    """One message for one unit, or the reason it cannot be written (``problem``)."""

    kind: str
    unit: Unit
    to: str
    message: EmailMessage | None
    attachment: Path | None = None
    attachment_sha: str | None = None
    attachment_name: str = ""  # the Vietnamese name the unit sees
    problem: str = ""
    problem_code: str = ""  # no-address | no-template | no-feedback | too-large

    @property
    def ok(self) -> bool:
        return self.message is not None and not self.problem

    @property
    def subject(self) -> str:
        return str(self.message["Subject"]) if self.message is not None else ""

    @property
    def message_id(self) -> str:
        return str(self.message["Message-ID"]) if self.message is not None else ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind, "unit": self.unit.code, "name": self.unit.name, "to": self.to,
            "subject": self.subject, "message_id": self.message_id,
            "attachment": str(self.attachment) if self.attachment else None, "attachment_sha256": self.attachment_sha,
            "attachment_name": self.attachment_name, "problem": self.problem, "problem_code": self.problem_code,
        }


STATUS_VI = {
    "sent": "Đã gửi",
    "skipped": "Bỏ qua (đã gửi trước đó)",
    "failed": "Không gửi được",
    "no-address": "Thiếu địa chỉ thư",
    "would-send": "Sẽ gửi (chạy thử)",
}


@dataclass
class SendResult:
    """What happened to one unit's message."""

    unit: str
    unit_name: str
    to: str
    status: str  # sent | skipped | failed | no-address | would-send
    message: str
    message_id: str = ""
    attempts: int = 0

    @property
    def status_vi(self) -> str:
        return STATUS_VI[self.status]

    def to_dict(self) -> dict[str, Any]:
        return {"unit": self.unit, "name": self.unit_name, "to": self.to, "status": self.status,
                "status_vi": self.status_vi, "message": self.message, "message_id": self.message_id,
                "attempts": self.attempts}


@dataclass
class SendReport:
    """Per-unit results of one :func:`send` call, in register order."""

    kind: str
    dry_run: bool
    results: list[SendResult] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def count(self, status: str) -> int:
        return sum(1 for r in self.results if r.status == status)

    @property
    def exit_code(self) -> int:
        return 1 if self.count("failed") or self.count("no-address") else 0

    def summary(self) -> str:
        parts = [f"{STATUS_VI[s].lower()} {self.count(s)}" for s in STATUS_VI if self.count(s)]
        head = f"Thư {KIND_VI.get(self.kind, self.kind)}" + (" (chạy thử, không gửi)" if self.dry_run else "")
        return f"{head}: " + (", ".join(parts) if parts else "không có thư nào") + "."

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "dry_run": self.dry_run, "results": [r.to_dict() for r in self.results],
                "warnings": self.warnings, "summary": self.summary(), "exit_code": self.exit_code}


# ------------------------------------------------------------------ building (pure)


def build_messages(ws: Workspace, kind: Kind, units: Sequence[str] = (), *, now: dt.datetime | None = None) -> list[Outgoing]:
    """One :class:`Outgoing` per selected unit, in register order.

    ``template``: every selected unit, with its generated workbook. ``reminder``: only units whose
    report has not been received, with their workbook again. ``feedback``: units that have a
    feedback workbook in ``feedback/<code>.xlsx``. Units that cannot be written to are returned
    with ``problem`` set (never raised); an unknown unit code raises :class:`ConfigError`.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown mail kind {kind!r}")
    now = now or dt.datetime.now().astimezone()
    form = ws.load_form()
    selected = ws.load_register().select(tuple(units))
    sender = sender_address(ws)
    wording = Wording.for_form(form)
    statuses = _statuses(ws) if kind in ("reminder", "feedback") else {}
    out: list[Outgoing] = []
    for unit in selected:
        status = statuses.get(unit.code)
        if kind == "reminder" and status is not None and status.received:
            continue
        attachment = _attachment_path(ws, form, kind, unit)
        if kind == "feedback" and attachment is None:
            if units:
                out.append(Outgoing(kind, unit, unit.email, None, problem_code="no-feedback", problem=(
                    f"chưa có tệp phản hồi {ws.feedback_dir / (unit.code + '.xlsx')}; chạy danvan check --annotate trước")))
            continue
        out.append(_outgoing(ws, form, wording, kind, unit, sender, attachment, status, now))
    return out


def _outgoing(ws: Workspace, form: Form, wording: Wording, kind: str, unit: Unit, sender: Address,
              attachment: Path | None, status: Any, now: dt.datetime) -> Outgoing:
    display = attachment_display_name(form, kind, unit, ws.year) if attachment else ""
    if not unit.email:
        return Outgoing(kind, unit, "", None, attachment, problem_code="no-address",
                        problem="đơn vị chưa có địa chỉ thư điện tử trong danh sách đơn vị (cột email)")
    if kind == "template" and (attachment is None or not attachment.is_file()):
        expected = ws.templates_dir / template_filename(form, unit, ws.year)
        return Outgoing(kind, unit, unit.email, None, expected, problem_code="no-template",
                        problem=f"chưa có biểu mẫu {expected.name}; chạy: danvan generate -w {ws.root} --unit {unit.code}")
    data = None
    if attachment is not None and attachment.is_file():
        data = attachment.read_bytes()
        limit = ws.mail.max_attachment_mb
        if len(data) > limit * MB:
            return Outgoing(kind, unit, unit.email, None, attachment, _sha(data), display, problem_code="too-large",
                            problem=f"tệp đính kèm nặng {len(data) / MB:.1f} MB, vượt giới hạn {limit:g} MB "
                                    "(mail.max_attachment_mb); không gửi")
    else:
        attachment, display = None, ""  # a reminder without a template: the body says so
    context = _context(ws, form, kind, unit, status, display, now)
    subject = wording.subject(kind, context)
    text, html = wording.body(kind, context, subject)
    msg = compose(sender, Address(unit.name, addr_spec=unit.email), subject, text, html, now=now,
                  reply_to=ws.office.email, attachment=(data, display) if data is not None else None,
                  headers={"X-Danvan-Kind": kind, "X-Danvan-Unit": unit.code, "X-Danvan-Year": str(ws.year)})
    return Outgoing(kind, unit, unit.email, msg, attachment, _sha(data) if data is not None else None, display)


def _statuses(ws: Workspace) -> dict[str, Any]:
    from .status import load_status

    return {s.unit.code: s for s in load_status(ws)}


def _attachment_path(ws: Workspace, form: Form, kind: str, unit: Unit) -> Path | None:
    if kind == "feedback":
        path = ws.feedback_dir / f"{unit.code}.xlsx"
        return path if path.is_file() else None
    return ws.templates_dir / template_filename(form, unit, ws.year)


def _context(ws: Workspace, form: Form, kind: str, unit: Unit, status: Any, attachment_name: str,
             now: dt.datetime) -> dict[str, Any]:
    today = now.date()
    days_left = (ws.deadline - today).days
    return {
        "kind": kind, "unit": unit, "unit_name": unit.name, "unit_code": unit.code, "office": ws.office,
        "year": ws.year, "form_title": form.title, "form_short_title": form.short_title or form.title,
        "deadline": format_date_short(ws.deadline), "today": format_date_short(today),
        "days_left": days_left, "overdue": days_left < 0, "attachment_name": attachment_name,
        "errors": int(getattr(status, "errors", 0) or 0), "warnings": int(getattr(status, "warnings", 0) or 0),
    }


def attachment_display_name(form: Form, kind: str, unit: Unit, year: int) -> str:
    """The Vietnamese file name the unit sees, e.g. "Biểu mẫu Năm Dân vận chính quyền 2020 - Phòng Tư pháp.xlsx"."""
    label = _ATTACHMENT_LABEL.get(kind, "Biểu mẫu")
    name = f"{label} {form.short_title or form.title} {year} - {unit.name}"
    name = _WIN_FORBIDDEN.sub(" ", nfc(name).replace("“", "").replace("”", ""))
    name = re.sub(r"\s+", " ", name).strip(" .")
    return f"{name[:150]}.xlsx"


def sender_address(ws: Workspace) -> Address:
    """The From address: ``[mail] from`` (or the office e-mail), shown with the office name."""
    addr = (ws.mail.sender or ws.office.email).strip()
    if not addr or "@" not in addr or any(c.isspace() for c in addr):
        raise ConfigError(f"Chưa khai báo địa chỉ gửi thư hợp lệ: đặt 'from' trong bảng [mail] của {ws.config_path}")
    try:
        return Address(nfc(ws.office.name), addr_spec=addr)
    except (ValueError, IndexError) as err:
        raise ConfigError(f"Địa chỉ gửi thư '{addr}' trong {ws.config_path} không hợp lệ") from err


def compose(
    sender: Address, to: Address, subject: str, text: str, html: str, *, now: dt.datetime,
    reply_to: str = "", attachment: tuple[bytes, str] | None = None, headers: dict[str, str] | None = None,
) -> EmailMessage:
    """An RFC 5322 message: text and HTML alternatives, an optional workbook, Message-ID and Date."""
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    if reply_to and reply_to.lower() != sender.addr_spec.lower():
        msg["Reply-To"] = Address(sender.display_name, addr_spec=reply_to)
    msg["Subject"] = subject
    msg["Date"] = format_datetime(now if now.tzinfo else now.astimezone())
    msg["Message-ID"] = message_id(sender.domain or "localhost")
    for name, value in (headers or {}).items():
        msg[name] = value
    msg.set_content(text, cte="quoted-printable")
    msg.add_alternative(html, subtype="html", cte="quoted-printable")
    if attachment is not None:
        data, display = attachment
        # RFC 2231 filename (Vietnamese) in Content-Disposition; an ASCII "name" in Content-Type for
        # old clients. (A non-ASCII "name" there makes Python mangle the long Content-Type header.)
        msg.add_attachment(data, maintype=XLSX_TYPE[0], subtype=XLSX_TYPE[1], filename=display,
                           params={"name": ascii_name(display)})
    return msg


def message_id(domain: str) -> str:
    """A unique Message-ID in the sender's domain, short enough not to be folded.

    ``email.utils.make_msgid`` gives the same kind of id but, with a long government domain, a
    header line over 78 characters that gets folded (and read back with a leading space).
    """
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d%H%M%S")
    return f"<{stamp}.{secrets.token_hex(6)}@{domain}>"


def ascii_name(name: str) -> str:
    """ASCII fallback of a file name: "Biểu mẫu - Phòng Tư pháp.xlsx" → "Bieu mau - Phong Tu phap.xlsx"."""
    folded = fold(name).encode("ascii", "ignore").decode()
    folded = _WIN_FORBIDDEN.sub(" ", folded)
    return re.sub(r"\s+", " ", folded).strip() or "bieu-mau.xlsx"


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ------------------------------------------------------------------ wording


class _SubjectFormatter(string.Formatter):
    def __init__(self, key: str) -> None:
        self.key = key

    def get_value(self, key: int | str, args: Sequence[Any], kwargs: dict[str, Any]) -> Any:
        if isinstance(key, str) and key in kwargs:
            return kwargs[key]
        raise ConfigError(f"Tiêu đề thư (wording.{self.key} trong định nghĩa biểu mẫu) dùng {{{key}}} không có; "
                          "dùng được: {year}, {unit_name}, {unit_code}, {deadline}, {form_title}")


@dataclass
class Wording:
    """The editable wording of the messages: subjects from the form, bodies from ``mail/*.j2``."""

    form: Form
    folder: Path
    text_env: SandboxedEnvironment
    html_env: SandboxedEnvironment

    @classmethod
    def for_form(cls, form: Form) -> Wording:
        """Load the form's ``mail/`` folder (the bundled form's when the form has none)."""
        folder = mail_folder(form)
        common = {"loader": jinja2.FileSystemLoader(str(folder), encoding="utf-8"), "undefined": jinja2.StrictUndefined,
                  "trim_blocks": True, "lstrip_blocks": True, "keep_trailing_newline": False}
        return cls(form, folder, SandboxedEnvironment(autoescape=False, **common),
                   SandboxedEnvironment(autoescape=True, **common))

    def subject(self, kind: str, context: dict[str, Any]) -> str:
        key = _SUBJECT_KEY[kind]
        pattern = self.form.wording.get(key) or _DEFAULT_SUBJECT[kind]
        values = {k: context[k] for k in ("year", "unit_name", "unit_code", "deadline", "form_title")}
        try:
            text = _SubjectFormatter(key).vformat(pattern, (), values)
        except (ValueError, IndexError) as err:
            raise ConfigError(f"Tiêu đề thư (wording.{key}) sai cú pháp: {err}") from err
        return clean_text(text, multiline=False)

    def body(self, kind: str, context: dict[str, Any], subject: str) -> tuple[str, str]:
        """The plain-text body and its HTML alternative."""
        name = _BODY_TEMPLATE[kind]
        text = tidy_text(self._render(self.text_env, f"{name}.txt.j2", context))
        html_context = dict(context, subject=subject, blocks=text_blocks(text), text=text)
        own_html = (self.folder / f"{name}.html.j2").is_file()
        html = self._render(self.html_env, f"{name}.html.j2" if own_html else HTML_LAYOUT, html_context)
        return text, nfc(html).strip() + "\n"

    def _render(self, env: SandboxedEnvironment, name: str, context: dict[str, Any]) -> str:
        where = self.folder / name
        try:
            return nfc(env.get_template(name).render(context))
        except jinja2.TemplateNotFound as err:
            raise ConfigError(f"Thiếu tệp mẫu thư {self.folder / str(err.name)}") from err
        except jinja2.TemplateSyntaxError as err:
            raise ConfigError(f"Mẫu thư {where}, dòng {err.lineno}: lỗi cú pháp ({err.message})") from err
        except jinja2.UndefinedError as err:
            raise ConfigError(f"Mẫu thư {where}: dùng biến không có ({err.message})") from err
        except jinja2.TemplateError as err:
            raise ConfigError(f"Mẫu thư {where}: {err}") from err


def mail_folder(form: Form) -> Path:
    """``<form folder>/mail``, or the bundled form's when a custom form ships no wording."""
    own = form.folder / MAIL_FOLDER
    if own.is_dir():
        return own
    bundled = bundled_form_dir(DEFAULT_FORM)
    if bundled is not None and (bundled / MAIL_FOLDER).is_dir():
        return bundled / MAIL_FOLDER
    raise ConfigError(f"Không tìm thấy thư mục mẫu thư {own}")


def tidy_text(text: str) -> str:
    """NFC, no trailing spaces (except the "-- " signature line), at most one blank line in a row."""
    lines = []
    for line in nfc(text).replace("\r\n", "\n").split("\n"):
        line = "-- " if line.strip() == "--" else line.rstrip()
        if not line and (not lines or not lines[-1]):
            continue
        lines.append(line)
    while lines and not lines[-1]:
        lines.pop()
    return "\n".join(lines) + "\n"


def text_blocks(text: str) -> list[dict[str, Any]]:
    """Split a plain-text body into paragraphs, lists ("- " lines) and the signature (after "-- ")."""
    blocks: list[dict[str, Any]] = []
    body, _sep, signature = text.partition("\n-- \n")
    for chunk in re.split(r"\n\s*\n", body.strip("\n")):
        current: dict[str, Any] | None = None
        for line in chunk.split("\n"):
            kind = "ul" if line.startswith("- ") else "p"
            content = line[2:] if kind == "ul" else line
            if current is None or current["kind"] != kind:
                current = {"kind": kind, "lines": []}
                blocks.append(current)
            current["lines"].append(content)
    sig = [line for line in signature.split("\n") if line.strip()]
    if sig:
        blocks.append({"kind": "sig", "lines": sig})
    return blocks


# ------------------------------------------------------------------ drafts


def draft_path(ws: Workspace, out: Outgoing) -> Path:
    """``outbox/mail/<unit code>[_nhac-nho|_phan-hoi].eml`` (ASCII)."""
    return ws.outbox_dir / f"{fold(out.unit.code)}{_DRAFT_SUFFIX.get(out.kind, '')}.eml"


def write_drafts(ws: Workspace, outgoing: Sequence[Outgoing]) -> list[Path]:
    """Write each buildable message as an .eml draft (atomically); returns the paths written.

    Drafts carry ``X-Unsent: 1`` so that Outlook opens them ready to send.
    """
    prepare_dir(ws.outbox_dir)
    paths = []
    for out in outgoing:
        if not out.ok:
            continue
        assert out.message is not None
        draft = copy.deepcopy(out.message)
        draft["X-Unsent"] = "1"
        paths.append(write_atomic(draft_path(ws, out), draft.as_bytes(policy=_EML_POLICY)))
    return paths


# ------------------------------------------------------------------ sending


class _Temporary(Exception):
    """A failure worth retrying (4xx, dropped connection)."""

    def __init__(self, reason: str, reconnect: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.reconnect = reconnect


class _Permanent(Exception):
    """The server refused this message for good (5xx)."""


def is_loopback(host: str) -> bool:
    if host.lower() in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def tls_context() -> ssl.SSLContext:
    """Certificate-verifying TLS context (system CAs; ``SSL_CERT_FILE`` is honoured)."""
    return ssl.create_default_context()


class SmtpSession:
    """One SMTP connection with the workspace's security mode and login; errors in Vietnamese."""

    def __init__(self, settings: MailSettings, password: str | None) -> None:
        self.s = settings
        self.password = password
        self.conn: smtplib.SMTP | None = None

    @property
    def where(self) -> str:
        return f"{self.s.smtp_host}:{self.s.smtp_port}"

    def open(self) -> None:
        """Connect, secure and log in; raise :class:`MailError` (or :class:`_Temporary` for 4xx greetings)."""
        s = self.s
        if not s.smtp_host:
            raise ConfigError("Chưa khai báo máy chủ gửi thư: đặt smtp_host trong bảng [mail] của danvan.toml")
        try:
            if s.smtp_security == "ssl":
                conn: smtplib.SMTP = smtplib.SMTP_SSL(s.smtp_host, s.smtp_port, local_hostname=_helo_name(),
                                                      timeout=s.timeout_seconds, context=tls_context())
            else:
                conn = smtplib.SMTP(s.smtp_host, s.smtp_port, local_hostname=_helo_name(), timeout=s.timeout_seconds)
        except smtplib.SMTPConnectError as err:
            if 400 <= err.smtp_code < 500:
                raise _Temporary(f"máy chủ {self.where} tạm thời từ chối kết nối ({_reply(err)})", True) from err
            raise MailError(f"Máy chủ gửi thư {self.where} từ chối kết nối: {_reply(err)}") from err
        except (ssl.SSLError, ssl.CertificateError) as err:
            raise MailError(_tls_message("gửi", self.where, err)) from err
        except (OSError, smtplib.SMTPException) as err:
            raise MailError(_connect_message("gửi", self.where, err)) from err
        self.conn = conn
        try:
            self._secure_and_login(conn)
        except BaseException:
            self.close()
            raise

    def _secure_and_login(self, conn: smtplib.SMTP) -> None:
        s = self.s
        try:
            conn.ehlo()
            if s.smtp_security == "starttls":
                if not conn.has_extn("starttls"):
                    raise MailError(f"Máy chủ gửi thư {self.where} không hỗ trợ STARTTLS (mã hoá kết nối). Kiểm tra "
                                    "smtp_port/smtp_security trong danvan.toml (cổng 465 dùng ssl, cổng 587 dùng starttls).")
                conn.starttls(context=tls_context())
                conn.ehlo()
            if s.smtp_user and self.password is not None:
                _login(conn, s.smtp_user, self.password)
        except smtplib.SMTPAuthenticationError as err:
            raise MailError(f"Máy chủ gửi thư {self.where} từ chối đăng nhập của '{s.smtp_user}': sai tên đăng nhập "
                            f"hoặc mật khẩu ({_reply(err)}). Kiểm tra biến DANVAN_SMTP_PASSWORD.") from err
        except smtplib.SMTPNotSupportedError as err:
            raise MailError(f"Máy chủ gửi thư {self.where} không cho đăng nhập trên kết nối này (thường phải bật "
                            "starttls hoặc ssl trước).") from err
        except (ssl.SSLError, ssl.CertificateError) as err:
            raise MailError(_tls_message("gửi", self.where, err)) from err
        except smtplib.SMTPResponseException as err:
            if 400 <= err.smtp_code < 500:
                raise _Temporary(f"máy chủ tạm thời từ chối ({_reply(err)})", True) from err
            raise MailError(f"Máy chủ gửi thư {self.where} từ chối: {_reply(err)}") from err
        except (OSError, smtplib.SMTPException) as err:
            raise MailError(_connect_message("gửi", self.where, err)) from err

    def send(self, msg: EmailMessage) -> None:
        """Send one message; raise :class:`_Temporary` or :class:`_Permanent` on failure."""
        if self.conn is None:
            self.open()
        assert self.conn is not None
        try:
            refused = self.conn.send_message(msg)
        except smtplib.SMTPRecipientsRefused as err:
            codes = [code for code, _text in err.recipients.values()]
            reason = "; ".join(f"{addr}: {code} {_text(text)}" for addr, (code, text) in err.recipients.items())
            if codes and all(400 <= c < 500 for c in codes):
                raise _Temporary(f"địa chỉ nhận tạm thời bị từ chối ({reason})", False) from err
            raise _Permanent(f"máy chủ từ chối địa chỉ nhận ({reason})") from err
        except smtplib.SMTPServerDisconnected as err:
            self.close()
            raise _Temporary(f"mất kết nối với máy chủ ({err or 'máy chủ ngắt kết nối'})", True) from err
        except smtplib.SMTPResponseException as err:
            if 400 <= err.smtp_code < 500:
                raise _Temporary(f"máy chủ tạm thời từ chối ({_reply(err)})", err.smtp_code == 421) from err
            raise _Permanent(f"máy chủ từ chối thư ({_reply(err)})") from err
        except (OSError, smtplib.SMTPException) as err:
            self.close()
            raise _Temporary(f"lỗi kết nối ({_os_reason(err)})", True) from err
        if refused:
            raise _Permanent("máy chủ từ chối địa chỉ nhận: " + ", ".join(refused))

    def close(self) -> None:
        if self.conn is None:
            return
        conn, self.conn = self.conn, None
        with contextlib.suppress(Exception):
            conn.quit()
        with contextlib.suppress(Exception):
            conn.close()


def _login(conn: smtplib.SMTP, user: str, password: str) -> None:
    """``SMTP.login``, or AUTH PLAIN in UTF-8 when the name or password has Vietnamese letters.

    smtplib encodes credentials as ASCII only (RFC 4616 PLAIN carries UTF-8).
    """
    if user.isascii() and password.isascii():
        conn.login(user, password)
        return
    if "plain" not in conn.esmtp_features.get("auth", "").lower().split():
        raise MailError("Mật khẩu hoặc tên đăng nhập thư có chữ có dấu nhưng máy chủ không hỗ trợ đăng nhập "
                        "AUTH PLAIN; hãy đổi sang mật khẩu không dấu.")
    token = base64.b64encode(b"\0" + user.encode() + b"\0" + password.encode()).decode("ascii")
    code, reply = conn.docmd("AUTH", f"PLAIN {token}")
    if code not in (235, 503):
        raise smtplib.SMTPAuthenticationError(code, reply)


def send(
    ws: Workspace, outgoing: Sequence[Outgoing], *, password: str | None, resend: bool = False,
    dry_run: bool = False, progress: Progress | None = None,
) -> SendReport:
    """Send the messages over SMTP and record each delivery in the ledger.

    Already-sent messages (same kind, unit, address and attachment; for reminders: the same day)
    are skipped unless ``resend``. ``dry_run`` connects to nothing and writes nothing. A failure to
    connect or log in raises :class:`MailError` before anything is sent; a failure in the middle is
    reported per unit (what was sent is in the ledger).
    """
    kind = outgoing[0].kind if outgoing else "template"
    report = SendReport(kind, dry_run, warnings=_security_warnings(ws.mail, password))
    results: dict[int, SendResult] = {}
    todo: list[tuple[int, Outgoing]] = []
    for i, out in enumerate(outgoing):
        if not out.ok:
            status = "no-address" if out.problem_code == "no-address" else "failed"
            results[i] = SendResult(out.unit.code, out.unit.name, out.to, status, out.problem or "không dựng được thư")
        else:
            todo.append((i, out))
    if dry_run:
        _dry_run(ws, todo, resend, results)
    elif todo:
        _send_all(ws, todo, password, resend, results, progress)
    report.results = [results[i] for i in sorted(results)]
    return report


def _dry_run(ws: Workspace, todo: list[tuple[int, Outgoing]], resend: bool, results: dict[int, SendResult]) -> None:
    from .ledger import Ledger

    ledger = Ledger.open_readonly(ws.ledger_path) if ws.ledger_path.exists() else None
    try:
        for i, out in todo:
            earlier = None if resend or ledger is None else _already_sent(ledger, out)
            if earlier is not None:
                results[i] = _skipped(out, earlier)
            else:
                results[i] = SendResult(out.unit.code, out.unit.name, out.to, "would-send",
                                        f"sẽ gửi tới {out.to}: {out.subject}", out.message_id)
    finally:
        if ledger is not None:
            ledger.close()


def _send_all(ws: Workspace, todo: list[tuple[int, Outgoing]], password: str | None, resend: bool,
              results: dict[int, SendResult], progress: Progress | None) -> None:
    from .ledger import Ledger, WorkspaceLock

    with WorkspaceLock(ws.lock_path, "danvan mail"), Ledger.open(ws.ledger_path, ws.archive_dir, "mail") as ledger:
        pending = []
        for i, out in todo:
            earlier = None if resend else _already_sent(ledger, out)
            if earlier is not None:
                results[i] = _skipped(out, earlier)
            else:
                pending.append((i, out))
        if not pending:
            return
        session = SmtpSession(ws.mail, password)
        _open_with_retry(session, ws.mail)  # connection, TLS or login failure: MailError, nothing sent
        try:
            _deliver(ws, ledger, session, pending, results, progress)
        finally:
            session.close()


def _deliver(ws: Workspace, ledger: Any, session: SmtpSession, pending: list[tuple[int, Outgoing]],
             results: dict[int, SendResult], progress: Progress | None) -> None:
    sent_now: list[str] = []
    for n, (i, out) in enumerate(pending):
        if n and ws.mail.pause_seconds > 0:
            time.sleep(ws.mail.pause_seconds)
        outcome = _send_one(session, out, ws.mail.retries)
        results[i] = outcome
        status = "sent" if outcome.status == "sent" else "failed"
        try:
            record_mail(ledger, out, status, "" if status == "sent" else outcome.message)
        except LedgerError as err:
            done = ", ".join([*sent_now, out.unit.code] if status == "sent" else sent_now) or "không có"
            raise MailError(f"Không ghi được sổ cái sau khi gửi thư cho {out.unit.code} ({err}). Các đơn vị đã nhận "
                            f"thư trong lần chạy này: {done}. Dừng gửi để tránh gửi trùng.") from err
        if status == "sent":
            sent_now.append(out.unit.code)
        if progress:
            progress(n + 1, len(pending))
        if outcome.status == "failed" and outcome.message.startswith(_LOST):
            for j, rest in pending[n + 1:]:
                results[j] = SendResult(rest.unit.code, rest.unit.name, rest.to, "failed",
                                        "chưa gửi: mất kết nối với máy chủ gửi thư; chạy lại lệnh để gửi tiếp",
                                        rest.message_id)
            return


_LOST = "không kết nối lại được máy chủ"


def record_mail(ledger: Any, out: Outgoing, status: str, error: str = "") -> None:
    """One ``mail_log`` row and its event, in one transaction."""
    ledger.log_mail(out.kind, out.unit.code, out.to, out.message_id, out.attachment_sha, out.subject, status, error)


def _send_one(session: SmtpSession, out: Outgoing, retries: int) -> SendResult:
    assert out.message is not None
    attempts = 0
    last = ""
    for attempt in range(max(0, retries) + 1):
        if attempt:
            time.sleep(_backoff(attempt))
        attempts += 1
        try:
            session.send(out.message)
        except _Temporary as err:
            last = err.reason
            if err.reconnect:
                session.close()
            continue
        except _Permanent as err:
            return SendResult(out.unit.code, out.unit.name, out.to, "failed", str(err), out.message_id, attempts)
        except MailError as err:  # reconnecting failed (server gone, login refused)
            return SendResult(out.unit.code, out.unit.name, out.to, "failed", f"{_LOST}: {err}", out.message_id,
                              attempts)
        return SendResult(out.unit.code, out.unit.name, out.to, "sent", f"đã gửi tới {out.to}", out.message_id,
                          attempts)
    return SendResult(out.unit.code, out.unit.name, out.to, "failed",
                      f"không gửi được sau {attempts} lần thử: {last}", out.message_id, attempts)


def _open_with_retry(session: SmtpSession, settings: MailSettings) -> None:
    last = ""
    for attempt in range(max(0, settings.retries) + 1):
        if attempt:
            time.sleep(_backoff(attempt))
        try:
            session.open()
            return
        except _Temporary as err:
            last = err.reason
    raise MailError(f"Không gửi được thư: {last}; đã thử {settings.retries + 1} lần. Hãy chạy lại sau.")


def _backoff(attempt: int) -> float:
    return min(BACKOFF_MAX, BACKOFF_SECONDS * 2 ** (attempt - 1))


def _already_sent(ledger: Any, out: Outgoing) -> Any:
    row = ledger.mail_sent(out.kind, out.unit.code, out.attachment_sha)
    if row is None or str(row["to_addr"]).lower() != out.to.lower():
        return None
    if out.kind == "reminder" and str(row["sent_at"])[:10] != dt.date.today().isoformat():
        return None  # one reminder a day at most; a later run is a new reminder
    return row


def _skipped(out: Outgoing, row: Any) -> SendResult:
    when = str(row["sent_at"])
    with contextlib.suppress(ValueError):
        when = dt.datetime.fromisoformat(when).strftime("%H:%M %d/%m/%Y")
    return SendResult(out.unit.code, out.unit.name, out.to, "skipped",
                      f"đã gửi thư này tới {row['to_addr']} lúc {when}; dùng --resend để gửi lại", str(row["message_id"]))


def _security_warnings(settings: MailSettings, password: str | None) -> list[str]:
    if settings.smtp_security == "none" and password and settings.smtp_host and not is_loopback(settings.smtp_host):
        return [f"Cảnh báo: mật khẩu gửi tới {settings.smtp_host} không được mã hoá (smtp_security = \"none\"). "
                "Nên dùng starttls hoặc ssl."]
    return []


def _helo_name() -> str:
    name = socket.gethostname() or "localhost"
    return name if name.isascii() else "localhost"


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _reply(err: smtplib.SMTPResponseException) -> str:
    return f"{err.smtp_code} {_text(err.smtp_error)}".strip()


def _os_reason(err: BaseException) -> str:
    if isinstance(err, ConnectionRefusedError):
        return "máy chủ không nhận kết nối ở cổng này"
    if isinstance(err, TimeoutError | socket.timeout):
        return "hết thời gian chờ"
    if isinstance(err, socket.gaierror):
        return "không tìm thấy tên máy chủ"
    if isinstance(err, ConnectionResetError):
        return "máy chủ ngắt kết nối"
    return str(err) or type(err).__name__


def _connect_message(direction: str, where: str, err: BaseException) -> str:
    return (f"Không kết nối được máy chủ {direction} thư {where}: {_os_reason(err)}. "
            "Kiểm tra tên máy chủ, cổng và mạng (bảng [mail] trong danvan.toml).")


def _tls_message(direction: str, where: str, err: BaseException) -> str:
    detail = getattr(err, "verify_message", "") or getattr(err, "reason", "") or str(err)
    return (f"Lỗi mã hoá kết nối (TLS) với máy chủ {direction} thư {where}: {detail}. Kiểm tra chế độ bảo mật "
            "(none/starttls/ssl) và cổng, hoặc chứng chỉ của máy chủ.")


__all__ = [
    "KINDS", "Outgoing", "SendReport", "SendResult", "SmtpSession", "Wording", "attachment_display_name",
    "build_messages", "compose", "draft_path", "send", "sender_address", "write_drafts",
]
