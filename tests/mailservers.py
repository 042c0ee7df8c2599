"""Real mail servers on loopback for the mail tests: aiosmtpd (SMTP) and Debian's Dovecot (IMAP).

Nothing here mocks smtplib or imaplib: the library talks to these servers over TCP.

* :func:`self_signed` makes a certificate for 127.0.0.1/localhost with ``cryptography``; tests
  make Python trust it by pointing ``SSL_CERT_FILE`` at it (OpenSSL's standard variable).
* :class:`SmtpRecorder` is an aiosmtpd handler that keeps every message it accepts and can answer
  "451 try again" or "550 no such user" for chosen recipients, or drop the connection once.
* :class:`Dovecot` starts ``dovecot -F -c <conf>`` with a config rendered from
  ``tests/dovecot.conf.j2`` into a temporary folder: its own base/state dirs and log, a
  passwd-file with one user, Maildir storage, a plain+STARTTLS listener and an IMAPS listener on
  free loopback ports. Mail processes run as the system user ``mail`` (Dovecot refuses uid 0),
  login processes as ``dovenull``; the folder is world-traversable for them.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import imaplib
import ipaddress
import os
import pwd
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2

HERE = Path(__file__).resolve().parent


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


# ------------------------------------------------------------------ certificates


def self_signed(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate and key for 127.0.0.1 and localhost (PEM files in ``folder``).

    Made with ``cryptography`` when it is installed, else with the ``openssl`` command.
    """
    folder.mkdir(parents=True, exist_ok=True)
    try:
        import cryptography  # noqa: F401
    except ImportError:
        return _openssl_self_signed(folder)
    return _cryptography_self_signed(folder)


def _openssl_self_signed(folder: Path) -> tuple[Path, Path]:
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                    "-keyout", str(key_path), "-out", str(cert_path), "-days", "30", "-subj", "/CN=danvan test mail server",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-addext", "basicConstraints=critical,CA:TRUE"],
                   check=True, capture_output=True, timeout=60)
    os.chmod(key_path, 0o644)
    return cert_path, key_path


def _cryptography_self_signed(folder: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "danvan test mail server")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                    x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    os.chmod(key_path, 0o644)
    return cert_path, key_path


def server_tls(cert: Path, key: Path) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    return ctx


# ------------------------------------------------------------------ SMTP (aiosmtpd)


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes


@dataclass
class SmtpRecorder:
    """aiosmtpd handler: records messages; scripted temporary/permanent refusals and disconnects."""

    messages: list[Received] = field(default_factory=list)
    temp_fail: dict[str, int] = field(default_factory=dict)  # recipient -> how many 451 answers first
    perm_fail: set[str] = field(default_factory=set)  # recipients answered 550
    drop_once: set[str] = field(default_factory=set)  # recipients whose first DATA drops the connection
    die_on: set[str] = field(default_factory=set)  # recipients whose DATA shuts the whole server down
    controller: Any = None  # set by smtp_server(); needed by die_on
    attempts: dict[str, int] = field(default_factory=dict)

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]) -> str:
        if address in self.perm_fail:
            return "550 5.1.1 No such user here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        rcpt = envelope.rcpt_tos[0] if envelope.rcpt_tos else ""
        self.attempts[rcpt] = self.attempts.get(rcpt, 0) + 1
        if self.temp_fail.get(rcpt, 0) > 0:
            self.temp_fail[rcpt] -= 1
            return "451 4.3.0 Temporary failure, try again later"
        if rcpt in self.die_on and self.controller is not None:
            self.controller.server.close()  # stop listening: reconnecting is refused
            server.transport.close()
            return "421 4.3.2 System shutting down"
        if rcpt in self.drop_once:
            self.drop_once.discard(rcpt)
            server.transport.close()
            return "421 4.3.0 Closing connection"
        self.messages.append(Received(envelope.mail_from, list(envelope.rcpt_tos), bytes(envelope.content)))
        return "250 Message accepted for delivery"

    def clear(self) -> None:
        self.messages.clear()
        self.temp_fail.clear()
        self.perm_fail.clear()
        self.drop_once.clear()
        self.die_on.clear()
        self.attempts.clear()


class LoginChecker:
    """aiosmtpd authenticator accepting one user/password."""

    def __init__(self, user: str, password: str) -> None:
        self.user, self.password = user, password

    def __call__(self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> Any:
        from aiosmtpd.smtp import AuthResult, LoginPassword

        ok = (isinstance(auth_data, LoginPassword) and auth_data.login.decode() == self.user
              and auth_data.password.decode() == self.password)
        return AuthResult(success=ok, handled=False)


@contextlib.contextmanager
def smtp_server(handler: SmtpRecorder, *, auth: LoginChecker | None = None, auth_required: bool = False,
                tls: ssl.SSLContext | None = None) -> Iterator[int]:
    """Run aiosmtpd on a free loopback port; yields the port."""
    from aiosmtpd.controller import Controller

    port = free_port()
    kwargs: dict[str, Any] = {"auth_require_tls": False, "auth_required": auth_required}
    if auth is not None:
        kwargs["authenticator"] = auth
    if tls is not None:
        kwargs["tls_context"] = tls
    controller = Controller(handler, hostname="127.0.0.1", port=port, server_hostname="localhost", **kwargs)
    controller.start()
    handler.controller = controller
    try:
        yield port
    finally:
        handler.controller = None
        controller.stop()


# ------------------------------------------------------------------ IMAP (Dovecot)


class Dovecot:
    """A private Dovecot instance; ``plain_port`` offers STARTTLS, ``ssl_port`` is IMAPS."""

    def __init__(self, binary: str, user: str = "kontor", password: str = "mật-khẩu-thử") -> None:
        self.binary = binary
        self.user = user
        self.password = password
        self.root = Path(tempfile.mkdtemp(prefix="danvan-dovecot-"))
        self.proc: subprocess.Popen[bytes] | None = None
        self.plain_port = free_port()
        self.ssl_port = free_port()
        self.cert, self.key = self_signed(self.root / "tls")

    @property
    def conf(self) -> Path:
        return self.root / "dovecot.conf"

    def start(self) -> Dovecot:
        os.chmod(self.root, 0o755)
        mail_user = pwd.getpwnam("mail") if os.geteuid() == 0 else pwd.getpwuid(os.geteuid())
        for sub in ("base", "state", "mail"):
            (self.root / sub).mkdir()
        if os.geteuid() == 0:
            os.chown(self.root / "mail", mail_user.pw_uid, mail_user.pw_gid)
        (self.root / "users").write_text(f"{self.user}:{{PLAIN}}{self.password}::::::\n", encoding="utf-8")
        template = jinja2.Template((HERE / "dovecot.conf.j2").read_text(encoding="utf-8"))
        self.conf.write_text(template.render(
            root=str(self.root), plain_port=self.plain_port, ssl_port=self.ssl_port, cert=str(self.cert),
            key=str(self.key), mail_user=mail_user.pw_name,
            login_user=_login_user() if os.geteuid() == 0 else mail_user.pw_name,
        ), encoding="utf-8")
        log = open(self.root / "stdout.log", "wb")  # noqa: SIM115 - kept open for the server's lifetime
        self.proc = subprocess.Popen([self.binary, "-F", "-c", str(self.conf)], stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_port(self.plain_port)
            wait_port(self.ssl_port)
        except TimeoutError:
            self.stop()
            raise RuntimeError(f"dovecot did not start:\n{self.log()}") from None
        return self

    def log(self) -> str:
        parts = []
        for name in ("stdout.log", "dovecot.log"):
            p = self.root / name
            if p.exists():
                parts.append(p.read_text(errors="replace")[-4000:])
        return "\n".join(parts)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
            self.proc = None
        shutil.rmtree(self.root, ignore_errors=True)

    # -- client side helpers (seeding and inspecting the mailbox) --------------------------
    def client(self) -> imaplib.IMAP4:
        conn = imaplib.IMAP4("127.0.0.1", self.plain_port, timeout=10)
        token = b"\0" + self.user.encode() + b"\0" + self.password.encode()
        conn.authenticate("PLAIN", lambda _c: token)
        return conn

    def append(self, raw: bytes, folder: str = "INBOX") -> None:
        from danvan_xl.mailfetch import quote_mailbox

        conn = self.client()
        try:
            if folder != "INBOX":
                conn.create(quote_mailbox(folder))
            typ, data = conn.append(quote_mailbox(folder), None, None, raw)
            assert typ == "OK", data
        finally:
            conn.logout()

    def reset_folder(self, folder: str = "INBOX") -> None:
        """Expunge every message of ``folder``."""
        from danvan_xl.mailfetch import quote_mailbox

        conn = self.client()
        try:
            conn.select(quote_mailbox(folder))
            _typ, data = conn.uid("SEARCH", None, "ALL")
            uids = data[0].split() if data and data[0] else []
            if uids:
                conn.uid("STORE", b",".join(uids).decode(), "+FLAGS.SILENT", r"(\Deleted)")
                conn.expunge()
            conn.close()
        finally:
            conn.logout()

    def set_uidvalidity(self, value: int, folder: str = "INBOX") -> None:
        """Renumber a folder as a server migration would (``doveadm mailbox update --uid-validity``)."""
        doveadm = shutil.which("doveadm") or "/usr/bin/doveadm"
        proc = subprocess.run([doveadm, "-c", str(self.conf), "mailbox", "update", "--uid-validity", str(value),
                               "-u", self.user, folder], capture_output=True, timeout=30)
        assert proc.returncode == 0, proc.stderr.decode(errors="replace")


def _login_user() -> str:
    for name in ("dovenull", "nobody"):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(name)
            return name
    return "nobody"
