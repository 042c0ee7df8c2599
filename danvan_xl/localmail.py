"""A real SMTP server on 127.0.0.1 for the demo's mail round trip (``danvan demo --send-to-local``).

aiosmtpd accepts every message and delivers it into one Maildir per recipient address under
``root``; the office's Maildir is then collected with ``danvan collect`` like any exported mailbox.
Nothing leaves the machine.
"""

from __future__ import annotations

import mailbox
import re
import socket
import threading
from pathlib import Path
from types import TracebackType
from typing import Any

from .errors import MailError


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def maildir_for(root: Path, address: str) -> Path:
    return root / re.sub(r"[^A-Za-z0-9@._-]+", "_", address.lower())


class _Deliver:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.lock = threading.Lock()
        self.count = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # aiosmtpd's hook name
        data = envelope.original_content or envelope.content
        with self.lock:
            for rcpt in envelope.rcpt_tos:
                box = mailbox.Maildir(maildir_for(self.root, rcpt), create=True)
                box.add(data)
                box.close()
            self.count += 1
        return "250 Đã nhận"


class LocalMailServer:
    """``with LocalMailServer(root) as server:`` → ``server.port`` accepts mail on 127.0.0.1."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = 0
        self._controller: Any = None
        self.handler = _Deliver(root)

    def __enter__(self) -> LocalMailServer:
        try:
            from aiosmtpd.controller import Controller
        except ImportError as err:  # pragma: no cover - aiosmtpd is a dependency
            raise MailError("Cần gói aiosmtpd để chạy thử gửi thư trên máy (pip install aiosmtpd).") from err
        self.root.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self._controller = Controller(self.handler, hostname="127.0.0.1", port=self.port)
        self._controller.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, err: BaseException | None, tb: TracebackType | None) -> None:
        if self._controller is not None:
            self._controller.stop()

    def mailbox(self, address: str) -> Path:
        return maildir_for(self.root, address)
