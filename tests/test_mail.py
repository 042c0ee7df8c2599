"""E-mail out and in (issue 7): drafts, SMTP sending, IMAP fetching, and the mail paths of collect.

The servers are real and on loopback (tests/mailservers.py): aiosmtpd receives what danvan_xl
sends and the tests parse what arrived; a private Dovecot holds the replies that fetch-mail
collects. Nothing mocks smtplib or imaplib. Servers start once per module.
"""

from __future__ import annotations

import base64
import datetime as dt
import email
import email.header
import email.policy
import io
import mailbox
import shutil
import sqlite3
import unicodedata
import zipfile
from pathlib import Path

import pytest
from conftest import REQUIRE, need_program
from helpers import SEED_MODELS, SEED_VALUES, fill_template
from mailservers import Dovecot, LoginChecker, SmtpRecorder, free_port, self_signed, server_tls, smtp_server

from danvan_xl import mailer
from danvan_xl.collect import collect
from danvan_xl.errors import MailError
from danvan_xl.generate import generate
from danvan_xl.ledger import Ledger
from danvan_xl.mailer import build_messages, send, write_drafts
from danvan_xl.mailfetch import fetch_mail, imap_utf7
from danvan_xl.status import load_status
from danvan_xl.workspace import Workspace, init_workspace, load_workspace

SENDER = "noivu@tamnong.dongthap.example"
SMTP_USER, SMTP_PASSWORD = "noivu", "bi-mat-2020"
FORM_ID = "nam-dan-van-chinh-quyen"
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
# Login without TLS is what the loopback "none" mode tests; aiosmtpd warns about it on every session.
pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")


# ------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    """A workspace with all 25 templates and three filled replies (built once; tests copy it)."""
    root = tmp_path_factory.mktemp("mail") / "base"
    ws = init_workspace(root, issue_date=dt.date(2020, 11, 2))
    generate(ws)
    replies = root / "replies"
    replies.mkdir()
    for code in ("TN-TP", "TN-NV", "TN-VP"):
        fill_template(template(ws, code), replies / f"{code}.xlsx", SEED_VALUES, {"dvk_mo_hinh": SEED_MODELS})
    return root


@pytest.fixture
def make_ws(base, tmp_path):
    """Copy the base workspace and set its ``[mail]`` table."""

    def make(name: str = "ws", **mail: object) -> Workspace:
        root = tmp_path / name
        shutil.copytree(base, root)
        settings = {"from": SENDER, "smtp_host": "127.0.0.1", "smtp_port": free_port(), "smtp_security": "none",
                    "smtp_user": SMTP_USER, "imap_host": "127.0.0.1", "imap_port": free_port(),
                    "imap_security": "none", "imap_user": "kontor", "pause_seconds": 0, "retries": 2,
                    "timeout_seconds": 10}
        settings.update(mail)
        config = root / "danvan.toml"
        text = config.read_text(encoding="utf-8")
        lines = ["[mail]", *(f"{k} = {_toml(v)}" for k, v in settings.items())]
        config.write_text(text[: text.index("[mail]")] + "\n".join(lines) + "\n", encoding="utf-8")
        return load_workspace(root)

    return make


@pytest.fixture(autouse=True)
def fast_backoff(monkeypatch):
    monkeypatch.setattr(mailer, "BACKOFF_SECONDS", 0.01)


@pytest.fixture(scope="module")
def certs(tmp_path_factory) -> tuple[Path, Path]:
    return self_signed(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def recorder() -> SmtpRecorder:
    return SmtpRecorder()


@pytest.fixture(scope="module")
def smtp_plain(recorder):
    """Plain SMTP with required login (loopback only)."""
    with smtp_server(recorder, auth=LoginChecker(SMTP_USER, SMTP_PASSWORD), auth_required=True) as port:
        yield port


@pytest.fixture(scope="module")
def smtp_tls(recorder, certs):
    """SMTP offering STARTTLS with a self-signed certificate, login required."""
    with smtp_server(recorder, auth=LoginChecker(SMTP_USER, SMTP_PASSWORD), auth_required=True,
                     tls=server_tls(*certs)) as port:
        yield port


@pytest.fixture(scope="module")
def smtp_no_auth(recorder):
    with smtp_server(recorder) as port:
        yield port


@pytest.fixture
def inbox(recorder):
    recorder.clear()
    yield recorder
    recorder.clear()


@pytest.fixture(scope="module")
def dovecot():
    binary = shutil.which("dovecot") or ("/usr/sbin/dovecot" if Path("/usr/sbin/dovecot").exists() else None)
    if binary is None:
        need_program("dovecot", "the IMAP tests need a real IMAP server (Debian package dovecot-imapd)")
    try:
        server = Dovecot(str(binary)).start()
    except (RuntimeError, KeyError, PermissionError) as err:
        if REQUIRE:
            pytest.fail(f"dovecot could not be started (DANVAN_REQUIRE_EXTERNAL=1): {err}")
        pytest.skip(f"dovecot could not be started here: {err}")
    yield server
    server.stop()


@pytest.fixture
def mailbox_ws(dovecot, make_ws):
    """A workspace pointed at an emptied Dovecot INBOX."""
    dovecot.reset_folder("INBOX")

    def make(name: str = "ws", **mail: object) -> Workspace:
        settings = {"imap_port": dovecot.plain_port, **mail}
        return make_ws(name, **settings)

    return make


# ------------------------------------------------------------------ helpers


def _toml(value: object) -> str:
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return str(value)


def template(ws: Workspace, code: str) -> Path:
    return next(ws.templates_dir.glob(f"2020_{code}_*.xlsx"))


def reply_file(ws: Workspace, code: str) -> Path:
    return ws.root / "replies" / f"{code}.xlsx"


def parse(raw: bytes) -> email.message.EmailMessage:
    return email.message_from_bytes(raw, policy=email.policy.default)


def mail_log(ws: Workspace) -> list[sqlite3.Row]:
    if not ws.ledger_path.exists():
        return []
    with Ledger.open_readonly(ws.ledger_path) as ledger:
        return ledger.conn.execute("SELECT * FROM mail_log ORDER BY id").fetchall()


def current_units(ws: Workspace) -> dict[str, sqlite3.Row]:
    with Ledger.open_readonly(ws.ledger_path) as ledger:
        rows = ledger.conn.execute("SELECT s.* FROM current c JOIN submissions s ON s.id = c.submission_id").fetchall()
    return {r["unit_code"]: r for r in rows}


def mime(sender: str, subject: str, attachments: list[tuple[str, bytes]], *, text: str = "Gửi Phòng Nội vụ báo cáo.",
         headers: dict[str, str] | None = None, date: str = "Tue, 01 Dec 2020 09:30:00 +0700") -> bytes:
    """A hand-written MIME message; ``attachments`` are (raw Content-Disposition value, bytes).

    Written by hand so that the attachment headers are exactly what real clients send (RFC 2231
    parameters, or an encoded-word inside a quoted filename as Outlook and Gmail do).
    """
    boundary = "==danvan-test-boundary=="
    head = [f"From: {sender}", "To: Phòng Nội vụ <noivu@tamnong.dongthap.example>",
            f"Subject: {email.header.Header(subject, 'utf-8').encode()}", f"Date: {date}",
            f"Message-ID: <{abs(hash((sender, subject, len(attachments))))}@test.example>", "MIME-Version: 1.0",
            *(f"{k}: {v}" for k, v in (headers or {}).items()),
            f'Content-Type: multipart/mixed; boundary="{boundary}"', ""]
    body = [f"--{boundary}", 'Content-Type: text/plain; charset="utf-8"', "Content-Transfer-Encoding: base64", "",
            base64.encodebytes(text.encode()).decode()]
    for disposition, data in attachments:
        body += [f"--{boundary}", f"Content-Type: {XLSX}", "Content-Transfer-Encoding: base64",
                 f"Content-Disposition: {disposition}", "", base64.encodebytes(data).decode()]
    body.append(f"--{boundary}--")
    return "\r\n".join(head + body).encode()


def rfc2231(name: str) -> str:
    from urllib.parse import quote

    return f"attachment; filename*=utf-8''{quote(name)}"


def encoded_word(name: str) -> str:
    return f'attachment; filename="=?utf-8?b?{base64.b64encode(name.encode()).decode()}?="'


def zipped(name: str, data: bytes) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr(name, data)
    return buf.getvalue()


def replies(ws: Workspace) -> list[bytes]:
    """The replies a district inbox really gets (see test_fetch_mail_collects_replies)."""
    tp, nv, vp = (reply_file(ws, c).read_bytes() for c in ("TN-TP", "TN-NV", "TN-VP"))
    nfd_name = unicodedata.normalize("NFD", "Báo cáo dân vận Phòng Nội vụ.xlsx")
    return [
        mime("Phòng Tư pháp <tuphap@tamnong.dongthap.example>", "Re: [2020] Biểu mẫu báo cáo — Phòng Tư pháp",
             [(rfc2231("Báo cáo Năm Dân vận chính quyền - Phòng Tư pháp.xlsx"), tp)]),
        mime("Phòng Nội vụ <noivu@tamnong.dongthap.example>", "Báo cáo dân vận (nén)",
             [(encoded_word("Báo cáo nén.zip"), zipped(nfd_name, nv))]),
        mime("Phòng Tài chính - Kế hoạch <taichinh@tamnong.dongthap.example>", "Chuyển giúp báo cáo của Văn phòng",
             [(encoded_word("Báo cáo Văn phòng HĐND và UBND.xlsx"), vp)]),
        mime("Phòng Y tế <yte@tamnong.dongthap.example>", "Re: Nhắc nộp báo cáo", [],
             text="Đơn vị sẽ gửi báo cáo vào tuần sau."),
        mime("Bản tin <tin@example.org>", "Bản tin tuần", [], text="Không liên quan."),
        mime("Phòng Tư pháp <tuphap@tamnong.dongthap.example>", "Bản chụp có chữ ký",
             [("attachment; filename=\"scan.pdf\"", b"%PDF-1.4 scanned report")]),
    ]


# ------------------------------------------------------------------ building and drafts


def test_drafts_are_valid_messages_one_per_unit(make_ws):
    ws = make_ws()
    outgoing = build_messages(ws, "template")
    register = ws.load_register()
    assert [o.unit.code for o in outgoing] == [u.code for u in register]
    assert all(o.ok for o in outgoing)
    paths = write_drafts(ws, outgoing)
    assert len(paths) == len(register) == 25
    assert all(p.parent == ws.outbox_dir and p.name.isascii() for p in paths)
    tp = next(o for o in outgoing if o.unit.code == "TN-TP")
    raw = (ws.outbox_dir / "TN-TP.eml").read_bytes()
    assert b"\r\n" in raw and raw.isascii()
    msg = parse(raw)
    assert msg["To"].addresses[0].addr_spec == "tuphap@tamnong.dongthap.example"
    assert msg["From"].addresses[0].addr_spec == SENDER
    assert msg["From"].addresses[0].display_name == "Phòng Nội vụ huyện Tam Nông"
    subject = str(msg["Subject"])
    assert subject == "[2020] Biểu mẫu báo cáo “Năm Dân vận chính quyền” — Phòng Tư pháp"
    assert unicodedata.is_normalized("NFC", subject)
    assert msg["Message-ID"].endswith("@tamnong.dongthap.example>") and msg["Message-ID"] == tp.message_id
    assert email.utils.parsedate_to_datetime(str(msg["Date"])) is not None
    assert msg["X-Unsent"] == "1"
    text = msg.get_body(("plain",)).get_content()
    html = msg.get_body(("html",)).get_content()
    for part in (text, html):
        assert "10/12/2020" in part and "ô nền vàng" in part and "Trân trọng" in part
        assert "0277 3827 xxx" in part and SENDER in part
    assert "<li>Chỉ nhập vào các ô nền vàng" in html and "<ul>" in html
    (attachment,) = list(msg.iter_attachments())
    assert attachment.get_filename() == "Biểu mẫu Năm Dân vận chính quyền 2020 - Phòng Tư pháp.xlsx"
    assert attachment.get_content_type() == XLSX
    assert "=?" not in attachment["Content-Type"]  # Python folds long Content-Types badly with non-ASCII params
    assert attachment.get_param("name") == "Bieu mau Nam Dan van chinh quyen 2020 - Phong Tu phap.xlsx"
    assert b"filename*" in raw  # RFC 2231
    assert attachment.get_content() == template(ws, "TN-TP").read_bytes()
    assert tp.attachment == template(ws, "TN-TP")


def test_wording_is_data_an_office_can_edit(make_ws):
    ws = make_ws()
    form = ws.load_form()
    folder = mailer.mail_folder(form)
    assert folder == form.folder / "mail"
    assert {p.name for p in folder.glob("*.j2")} >= {"gui_bieu_mau.txt.j2", "nhac_nho.txt.j2", "phan_hoi.txt.j2",
                                                     "thu.html.j2"}
    # An office's own form folder with its own wording:
    own = ws.root / "bieu-mau"
    shutil.copytree(form.folder, own)
    (own / "mail" / "gui_bieu_mau.txt.j2").write_text(
        "Kính gửi {{ unit.name }}: đề nghị gửi trước {{ deadline }}.\n", encoding="utf-8")
    config = ws.config_path.read_text(encoding="utf-8").replace(f'form = "{FORM_ID}"', 'form = "bieu-mau"')
    ws.config_path.write_text(config, encoding="utf-8")
    ws = load_workspace(ws.root)
    (out,) = build_messages(ws, "template", ["TN-TP"])
    body = out.message.get_body(("plain",)).get_content()
    assert body.strip() == "Kính gửi Phòng Tư pháp: đề nghị gửi trước 10/12/2020."
    assert "<p>Kính gửi Phòng Tư pháp: đề nghị gửi trước 10/12/2020.</p>" in out.message.get_body(("html",)).get_content()


def test_unit_without_address_or_template_is_listed_not_raised(make_ws):
    ws = make_ws()
    units = ws.units_path.read_text(encoding="utf-8").replace("tuphap@tamnong.dongthap.example", "")
    ws.units_path.write_text(units, encoding="utf-8")
    template(ws, "TN-NV").unlink()
    outgoing = {o.unit.code: o for o in build_messages(ws, "template")}
    assert outgoing["TN-TP"].problem_code == "no-address" and "địa chỉ thư" in outgoing["TN-TP"].problem
    assert outgoing["TN-NV"].problem_code == "no-template" and "danvan generate" in outgoing["TN-NV"].problem
    assert sum(o.ok for o in outgoing.values()) == 23
    assert len(write_drafts(ws, list(outgoing.values()))) == 23


def test_reminder_goes_only_to_units_not_yet_received(make_ws):
    ws = make_ws()
    collect(ws, [reply_file(ws, "TN-TP")])
    outgoing = build_messages(ws, "reminder", now=dt.datetime(2020, 12, 8, 9, 0).astimezone())
    codes = [o.unit.code for o in outgoing]
    assert "TN-TP" not in codes and len(codes) == 24
    msg = outgoing[0].message
    assert str(msg["Subject"]).startswith("[2020] Nhắc nộp báo cáo")
    body = msg.get_body(("plain",)).get_content()
    assert "10/12/2020" in body and "còn 2 ngày" in body and "08/12/2020" in body
    (attachment,) = list(msg.iter_attachments())
    assert attachment.get_content() == template(ws, outgoing[0].unit.code).read_bytes()
    late = build_messages(ws, "reminder", ["TN-NV"], now=dt.datetime(2020, 12, 15, 9, 0).astimezone())
    assert "quá hạn 5 ngày" in late[0].message.get_body(("plain",)).get_content()


def test_feedback_goes_to_units_with_a_feedback_workbook(make_ws):
    ws = make_ws()
    ws.feedback_dir.mkdir()
    shutil.copyfile(template(ws, "TN-TP"), ws.feedback_dir / "TN-TP.xlsx")
    (out,) = build_messages(ws, "feedback")
    assert out.unit.code == "TN-TP"
    assert str(out.message["Subject"]).startswith("[2020] Đề nghị điều chỉnh báo cáo")
    body = out.message.get_body(("plain",)).get_content()
    assert "điều chỉnh" in body and "gửi lại" in body and "10/12/2020" in body
    (attachment,) = list(out.message.iter_attachments())
    assert attachment.get_filename().startswith("Biểu mẫu cần điều chỉnh")
    assert out.attachment_sha == mailer._sha((ws.feedback_dir / "TN-TP.xlsx").read_bytes())
    (missing,) = build_messages(ws, "feedback", ["TN-NV"])
    assert missing.problem_code == "no-feedback"


# ------------------------------------------------------------------ sending over SMTP


def test_send_over_smtp_with_login_records_and_never_sends_twice(make_ws, smtp_plain, inbox):
    ws = make_ws(smtp_port=smtp_plain)
    units = ws.units_path.read_text(encoding="utf-8").replace("yte@tamnong.dongthap.example", "")
    ws.units_path.write_text(units, encoding="utf-8")
    outgoing = build_messages(ws, "template")
    ticks: list[tuple[int, int]] = []
    report = send(ws, outgoing, password=SMTP_PASSWORD, progress=lambda d, t: ticks.append((d, t)))
    assert report.count("sent") == 24 and report.count("no-address") == 1 and report.exit_code == 1
    assert ticks[-1] == (24, 24)
    assert len(inbox.messages) == 24
    arrived = {m.rcpt_tos[0]: parse(m.data) for m in inbox.messages}
    msg = arrived["tuphap@tamnong.dongthap.example"]
    (attachment,) = list(msg.iter_attachments())
    assert attachment.get_filename() == "Biểu mẫu Năm Dân vận chính quyền 2020 - Phòng Tư pháp.xlsx"
    assert attachment.get_content() == template(ws, "TN-TP").read_bytes()
    assert msg.get_body(("html",)) is not None and "X-Unsent" not in msg
    log = mail_log(ws)
    assert len(log) == 24 and {r["status"] for r in log} == {"sent"}
    row = next(r for r in log if r["unit_code"] == "TN-TP")
    assert row["message_id"] == str(msg["Message-ID"])
    assert row["attachment_sha256"] == mailer._sha(template(ws, "TN-TP").read_bytes())
    # A re-run sends nothing; --resend sends again.
    inbox.clear()
    again = send(ws, build_messages(ws, "template"), password=SMTP_PASSWORD)
    assert again.count("skipped") == 24 and not inbox.messages
    assert "--resend" in next(r for r in again.results if r.status == "skipped").message
    forced = send(ws, build_messages(ws, "template", ["TN-TP"]), password=SMTP_PASSWORD, resend=True)
    assert forced.count("sent") == 1 and len(inbox.messages) == 1
    # A regenerated template (new bytes) is a new thing to send.
    template(ws, "TN-NV").write_bytes(template(ws, "TN-NV").read_bytes() + b"\0")
    changed = send(ws, build_messages(ws, "template", ["TN-NV", "TN-TP"]), password=SMTP_PASSWORD)
    assert [r.status for r in changed.results] == ["sent", "skipped"]


def test_dry_run_connects_to_nothing(make_ws, inbox):
    ws = make_ws()  # nothing listens on the configured port
    report = send(ws, build_messages(ws, "template", ["TN-TP", "TN-NV"]), password="x", dry_run=True)
    assert [r.status for r in report.results] == ["would-send", "would-send"]
    assert "chạy thử" in report.summary()
    assert not ws.ledger_path.exists()


def test_starttls_with_certificate_and_login(make_ws, smtp_tls, certs, inbox, monkeypatch):
    ws = make_ws(smtp_port=smtp_tls, smtp_security="starttls")
    outgoing = build_messages(ws, "template", ["TN-TP"])
    with pytest.raises(MailError, match="TLS"):  # self-signed: not trusted yet
        send(ws, outgoing, password=SMTP_PASSWORD)
    monkeypatch.setenv("SSL_CERT_FILE", str(certs[0]))
    report = send(ws, outgoing, password=SMTP_PASSWORD)
    assert report.count("sent") == 1 and len(inbox.messages) == 1


@pytest.mark.parametrize("case", ["wrong-password", "unreachable", "no-starttls"])
def test_connection_problems_raise_vietnamese_errors_and_record_nothing(case, make_ws, smtp_plain, smtp_no_auth, inbox):
    settings: dict[str, object] = {
        "wrong-password": {"smtp_port": smtp_plain},
        "unreachable": {},
        "no-starttls": {"smtp_port": smtp_no_auth, "smtp_security": "starttls"},
    }[case]
    expected = {"wrong-password": "từ chối đăng nhập", "unreachable": "Không kết nối được máy chủ gửi thư",
                "no-starttls": "không hỗ trợ STARTTLS"}[case]
    ws = make_ws(**settings)
    with pytest.raises(MailError, match=expected):
        send(ws, build_messages(ws, "template", ["TN-TP", "TN-NV"]), password="sai-mat-khau")
    assert mail_log(ws) == [] and not inbox.messages


def test_temporary_failures_are_retried_permanent_ones_reported(make_ws, smtp_no_auth, inbox):
    ws = make_ws(smtp_port=smtp_no_auth, smtp_user="")
    inbox.temp_fail["tuphap@tamnong.dongthap.example"] = 2
    inbox.perm_fail.add("noivu@tamnong.dongthap.example")
    inbox.drop_once.add("taichinh@tamnong.dongthap.example")
    report = send(ws, build_messages(ws, "template", ["TN-VP", "TN-NV", "TN-TP", "TN-TCKH"]), password=None)
    by_unit = {r.unit: r for r in report.results}
    assert by_unit["TN-TP"].status == "sent" and by_unit["TN-TP"].attempts == 3
    assert by_unit["TN-TCKH"].status == "sent" and by_unit["TN-TCKH"].attempts == 2  # reconnected
    assert by_unit["TN-NV"].status == "failed" and "từ chối địa chỉ nhận" in by_unit["TN-NV"].message
    assert by_unit["TN-VP"].status == "sent"
    assert sorted(m.rcpt_tos[0] for m in inbox.messages) == [
        "taichinh@tamnong.dongthap.example", "tuphap@tamnong.dongthap.example", "vanphong@tamnong.dongthap.example"]
    log = {r["unit_code"]: r["status"] for r in mail_log(ws)}
    assert log == {"TN-VP": "sent", "TN-NV": "failed", "TN-TP": "sent", "TN-TCKH": "sent"}
    # Give up after ws.mail.retries: reported, not recorded as sent, and sent on the next run.
    inbox.clear()
    inbox.temp_fail["tuphap@tamnong.dongthap.example"] = 5
    gave_up = send(ws, build_messages(ws, "template", ["TN-TP", "TN-NNPTNT"]), password=None, resend=True)
    assert gave_up.results[0].status == "failed" and "3 lần thử" in gave_up.results[0].message
    assert gave_up.results[1].status == "sent"


def test_password_with_vietnamese_letters(make_ws):
    received = SmtpRecorder()
    with smtp_server(received, auth=LoginChecker(SMTP_USER, "mật-khẩu-2020"), auth_required=True) as port:
        ws = make_ws(smtp_port=port)
        outgoing = build_messages(ws, "template", ["TN-TP"])
        with pytest.raises(MailError, match="từ chối đăng nhập"):
            send(ws, outgoing, password="mật-khẩu-sai")
        assert send(ws, outgoing, password="mật-khẩu-2020").count("sent") == 1
    assert len(received.messages) == 1


def test_server_gone_midway_reports_who_got_what(make_ws):
    dying = SmtpRecorder()
    dying.die_on.add("tuphap@tamnong.dongthap.example")
    with smtp_server(dying) as port:
        ws = make_ws(smtp_port=port, smtp_user="")
        report = send(ws, build_messages(ws, "template", ["TN-VP", "TN-NV", "TN-TP", "TN-TCKH", "TN-TNMT"]), password=None)
    statuses = [(r.unit, r.status) for r in report.results]
    assert statuses == [("TN-VP", "sent"), ("TN-NV", "sent"), ("TN-TP", "failed"), ("TN-TCKH", "failed"),
                        ("TN-TNMT", "failed")]
    assert "không kết nối lại được" in report.results[2].message
    assert "chạy lại lệnh để gửi tiếp" in report.results[3].message
    assert {r["unit_code"]: r["status"] for r in mail_log(ws)} == {"TN-VP": "sent", "TN-NV": "sent", "TN-TP": "failed"}
    assert len(dying.messages) == 2 and report.exit_code == 1


def test_oversized_attachment_is_not_sent(make_ws, smtp_no_auth, inbox):
    ws = make_ws(smtp_port=smtp_no_auth, smtp_user="", max_attachment_mb=0.01)
    outgoing = build_messages(ws, "template", ["TN-TP"])
    assert outgoing[0].problem_code == "too-large" and "vượt giới hạn" in outgoing[0].problem
    report = send(ws, outgoing, password=None)
    assert report.results[0].status == "failed" and not inbox.messages and mail_log(ws) == []
    assert write_drafts(ws, outgoing) == []


# ------------------------------------------------------------------ collecting from IMAP


def test_fetch_mail_collects_replies(mailbox_ws, dovecot):
    ws = mailbox_ws()
    for raw in replies(ws):
        dovecot.append(raw)
    report = fetch_mail(ws, password=dovecot.password)
    assert report.new_messages == 6 and report.in_window == 6
    outcomes = {o.unit: o for o in report.collect.outcomes if o.unit}
    assert {u for u, o in outcomes.items() if o.outcome == "accepted"} == {"TN-TP", "TN-NV", "TN-VP"}
    names = {o.name for o in report.collect.outcomes}
    # RFC 2231 and encoded-word names decoded; an NFD name inside a zip made NFC.
    assert "Báo cáo Năm Dân vận chính quyền - Phòng Tư pháp.xlsx" in names
    assert "Báo cáo Văn phòng HĐND và UBND.xlsx" in names
    assert unicodedata.normalize("NFC", "Báo cáo dân vận Phòng Nội vụ.xlsx") in names
    # The sender and date are the submission's source.
    current = current_units(ws)
    assert "tuphap@tamnong.dongthap.example" in current["TN-TP"]["source"]
    assert "01/12/2020" in current["TN-TP"]["source"]
    # Another unit's workbook is collected by content, with a warning naming the sender.
    with Ledger.open_readonly(ws.ledger_path) as ledger:
        findings = ledger.findings(int(current["TN-VP"]["id"]))
    (other,) = [f for f in findings if f.code == "sent-by-other-unit"]
    assert "taichinh@tamnong.dongthap.example" in other.message
    # The unit's message without a file and its PDF-only message are for a human; the newsletter is not.
    assert sorted(n.unit for n in report.needs_human) == ["TN-TP", "TN-YT"]
    assert any("không có tệp đính kèm" in n.reason for n in report.needs_human)
    assert any("scan.pdf" in n.reason for n in report.needs_human)
    assert report.irrelevant == 1
    assert {s.unit.code for s in load_status(ws) if s.received} == {"TN-TP", "TN-NV", "TN-VP"}
    # Only new messages next time.
    again = fetch_mail(ws, password=dovecot.password)
    assert again.new_messages == 0 and again.collect.outcomes == [] and again.needs_human == []
    dovecot.append(replies(ws)[0])  # the same file forwarded again: a new message, a duplicate file
    third = fetch_mail(ws, password=dovecot.password)
    assert third.new_messages == 1 and [o.outcome for o in third.collect.outcomes] == ["duplicate"]


def test_replies_to_our_messages_are_recognised(mailbox_ws, dovecot, smtp_no_auth, inbox):
    ws = mailbox_ws(smtp_port=smtp_no_auth, smtp_user="")
    (out,) = build_messages(ws, "template", ["TN-NNPTNT"])
    send(ws, [out], password=None)
    # A reply from a personal address, without the file, quoting our Message-ID.
    dovecot.append(mime("Chị Lan <lan.nguyen@gmail.example>", "Re: biểu mẫu", [], text="Gửi sau ạ.",
                        headers={"In-Reply-To": out.message_id}))
    report = fetch_mail(ws, password=dovecot.password)
    (human,) = report.needs_human
    assert human.sender == "lan.nguyen@gmail.example" and "quên đính kèm" in human.reason


def test_a_message_too_large_to_fetch_is_listed_from_its_headers(mailbox_ws, dovecot):
    """Only the headers of a message over twice max_file_mb are fetched; the office is told who
    sent it, when and about what, and reads it in its mail program."""
    ws = mailbox_ws()
    config = ws.config_path.read_text()
    assert "[limits]" not in config  # make_ws writes office and mail only
    ws.config_path.write_text(config + "\n[limits]\nmax_file_mb = 0.05\n")
    ws = load_workspace(ws.root)
    big = bytes(range(256)) * 800  # 200 KB, incompressible enough for base64 to keep it large
    dovecot.append(mime("Phòng Tư pháp <tuphap@tamnong.dongthap.example>", "Báo cáo kèm ảnh chụp",
                        [(rfc2231("ảnh chụp.png"), big)], headers={"Message-ID": "<nang@tamnong.example>"}))
    report = fetch_mail(ws, password=dovecot.password)
    (human,) = report.needs_human
    assert (human.unit, human.sender, human.subject) == ("TN-TP", "tuphap@tamnong.dongthap.example", "Báo cáo kèm ảnh chụp")
    assert human.date is not None and human.date.date() == dt.date(2020, 12, 1)
    assert "quá lớn để tải tự động" in human.reason and report.collect.outcomes == []
    again = fetch_mail(ws, password=dovecot.password)  # marked as handled: not listed twice
    assert again.new_messages == 0 and again.needs_human == []


@pytest.mark.parametrize("security", ["ssl", "starttls"])
def test_fetch_over_tls(security, mailbox_ws, dovecot, monkeypatch):
    port = dovecot.ssl_port if security == "ssl" else dovecot.plain_port
    ws = mailbox_ws(imap_port=port, imap_security=security)
    dovecot.append(replies(ws)[0])
    with pytest.raises(MailError, match="TLS"):  # the server's self-signed certificate is not trusted yet
        fetch_mail(ws, password=dovecot.password)
    monkeypatch.setenv("SSL_CERT_FILE", str(dovecot.cert))
    report = fetch_mail(ws, password=dovecot.password)
    assert [o.outcome for o in report.collect.outcomes] == ["accepted"]


def test_uidvalidity_change_refetches_and_dedupes(mailbox_ws, dovecot):
    ws = mailbox_ws()
    for raw in replies(ws)[:3]:
        dovecot.append(raw)
    first = fetch_mail(ws, password=dovecot.password)
    assert first.collect.count("accepted") == 3
    dovecot.set_uidvalidity(first.uidvalidity + 1000)
    second = fetch_mail(ws, password=dovecot.password)
    assert second.uidvalidity_changed and second.new_messages == 3
    assert {o.outcome for o in second.collect.outcomes} == {"duplicate"}
    assert "UIDVALIDITY" in second.summary()
    assert len(current_units(ws)) == 3


def test_crash_before_marking_seen_just_refetches(mailbox_ws, dovecot, monkeypatch):
    ws = mailbox_ws()
    for raw in replies(ws)[:2]:
        dovecot.append(raw)

    def crash(*_args, **_kwargs):
        raise KeyboardInterrupt  # the clerk closes the window after the files were committed

    monkeypatch.setattr(Ledger, "mark_imap_seen", crash)
    with pytest.raises(KeyboardInterrupt):
        fetch_mail(ws, password=dovecot.password)
    assert set(current_units(ws)) == {"TN-TP", "TN-NV"}
    monkeypatch.undo()
    monkeypatch.setattr(mailer, "BACKOFF_SECONDS", 0.01)
    again = fetch_mail(ws, password=dovecot.password)
    assert again.new_messages == 2 and {o.outcome for o in again.collect.outcomes} == {"duplicate"}
    assert fetch_mail(ws, password=dovecot.password).new_messages == 0


def test_folder_with_vietnamese_name(mailbox_ws, dovecot):
    assert imap_utf7("Báo cáo") == "B&AOE-o c&AOE-o"
    assert imap_utf7("A&B") == "A&-B"
    ws = mailbox_ws(imap_folder="Báo cáo 2020")
    dovecot.append(replies(ws)[0], folder="Báo cáo 2020")
    report = fetch_mail(ws, password=dovecot.password)
    assert report.folder == "Báo cáo 2020" and report.collect.count("accepted") == 1


# ------------------------------------------------------------------ the same replies through collect (intake)


def test_eml_mbox_and_maildir_collect_like_imap(make_ws, tmp_path):
    """`danvan collect` reads the same replies from .eml files, an mbox and a Maildir, with the same result."""
    ws0 = make_ws("ws0")
    messages = replies(ws0)
    eml_dir = tmp_path / "eml"
    eml_dir.mkdir()
    for i, raw in enumerate(messages):
        (eml_dir / f"thu-{i}.eml").write_bytes(raw)
    box = mailbox.mbox(tmp_path / "hop-thu.mbox")
    maildir = mailbox.Maildir(tmp_path / "Maildir")
    for raw in messages:
        box.add(raw)
        maildir.add(raw)
    box.close()
    results = {}
    for name, path in (("eml", eml_dir), ("mbox", tmp_path / "hop-thu.mbox"), ("maildir", tmp_path / "Maildir")):
        ws = make_ws(f"ws-{name}")
        result = collect(ws, [path])
        results[name] = sorted((o.outcome, o.unit, o.name) for o in result.outcomes)
        current = current_units(ws)
        assert "tuphap@tamnong.dongthap.example" in current["TN-TP"]["source"]
        with Ledger.open_readonly(ws.ledger_path) as ledger:
            assert any(f.code == "sent-by-other-unit" for f in ledger.findings(int(current["TN-VP"]["id"])))
    assert results["eml"] == results["mbox"] == results["maildir"]
    accepted = {(u, n) for o, u, n in results["eml"] if o == "accepted"}
    assert accepted == {("TN-TP", "Báo cáo Năm Dân vận chính quyền - Phòng Tư pháp.xlsx"),
                        ("TN-VP", "Báo cáo Văn phòng HĐND và UBND.xlsx"),
                        ("TN-NV", unicodedata.normalize("NFC", "Báo cáo dân vận Phòng Nội vụ.xlsx"))}


def test_reminders_are_sent_at_most_once_a_day(make_ws, smtp_no_auth, inbox):
    ws = make_ws(smtp_port=smtp_no_auth, smtp_user="")
    collect(ws, [reply_file(ws, "TN-TP")])
    first = send(ws, build_messages(ws, "reminder", ["TN-TP", "TN-NV", "30019"]), password=None)
    assert [(r.unit, r.status) for r in first.results] == [("TN-NV", "sent"), ("30019", "sent")]
    arrived = parse(inbox.messages[0].data)
    assert str(arrived["Subject"]).startswith("[2020] Nhắc nộp báo cáo") and arrived["X-Danvan-Kind"] == "reminder"
    again = send(ws, build_messages(ws, "reminder", ["TN-NV"]), password=None)
    assert again.results[0].status == "skipped" and len(inbox.messages) == 2
    with sqlite3.connect(ws.ledger_path) as conn:  # as if the first reminder went out yesterday
        conn.execute("UPDATE mail_log SET sent_at = '2020-12-01T08:00:00'")
    assert send(ws, build_messages(ws, "reminder", ["TN-NV"]), password=None).results[0].status == "sent"


def test_fetch_wrong_password_folder_or_host_records_nothing(mailbox_ws, dovecot):
    # Last in the module: after a failed login Dovecot delays that address's next logins for seconds.
    ws = mailbox_ws("ws1", imap_folder="Không có")
    dovecot.append(replies(ws)[0])
    with pytest.raises(MailError, match="Không mở được thư mục 'Không có'"):
        fetch_mail(ws, password=dovecot.password)
    ws2 = mailbox_ws("ws2", imap_port=free_port())
    with pytest.raises(MailError, match="Không kết nối được máy chủ nhận thư"):
        fetch_mail(ws2, password=dovecot.password)
    ws3 = mailbox_ws("ws3")
    with pytest.raises(MailError, match="từ chối đăng nhập"):
        fetch_mail(ws3, password="sai")
    for w in (ws, ws2, ws3):
        with Ledger.open_readonly(w.ledger_path) as ledger:
            assert ledger.conn.execute("SELECT COUNT(*) FROM imap_seen").fetchone()[0] == 0
            assert ledger.conn.execute("SELECT COUNT(*) FROM deliveries").fetchone()[0] == 0
