#!/usr/bin/env python3
"""Coverage-guided fuzzing of the intake with atheris: e-mails and zip archives as they arrive.

The intake (``danvan_xl.intake``) runs in the collecting process itself, not in an isolated
worker: it splits messages into attachments (RFC 2231 and encoded-word names, forwarded
messages, transfer encodings) and expands zips (names without the UTF-8 flag, a zip inside a zip).
An exception here would end the whole run, so every exception is a finding. Inputs that start
like a zip are expanded as a sent .zip; anything else is parsed as a message.

    python tests/fuzz_intake_atheris.py /tmp/corpus-intake -max_total_time=1800 -timeout=20

The corpus folder is seeded with a message carrying a workbook, a zip and an encoded name, and a
zip of two workbooks with names stored as Windows tools store them. Findings are handled as in
``fuzz_reader_atheris.py`` (minimise, fix, keep under ``tests/regressions/``).
"""

from __future__ import annotations

import datetime as dt
import email.policy
import io
import sys
import zipfile
from email.message import EmailMessage
from pathlib import Path

import atheris

with atheris.instrument_imports():
    from danvan_xl import intake
    from danvan_xl.workspace import Limits

SAMPLES = Path(__file__).resolve().parent.parent / "samples" / "returns"
LIMITS = Limits()
WHEN = dt.datetime(2020, 12, 5, 8, 0)


def seeds() -> dict[str, bytes]:
    book = (SAMPLES / "2020_TN-VP_sach.xlsx").read_bytes()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        # Stored without the UTF-8 flag, as Windows' built-in zip does (CP437 bytes of the name).
        info = zipfile.ZipInfo("Bao cao dan van (1).xlsx", (2020, 12, 5, 8, 0, 0))
        z.writestr(info, book)
        z.writestr(zipfile.ZipInfo("báo cáo xã.xlsx", (2020, 12, 5, 8, 0, 0)), book)
    archive = buf.getvalue()
    msg = EmailMessage()
    msg["From"] = "=?utf-8?b?VsSDbiBwaMOybmc=?= <vanphong@tamnong.example>"
    msg["To"] = "noivu@tamnong.example"
    msg["Subject"] = "=?utf-8?q?B=C3=A1o_c=C3=A1o_d=C3=A2n_v=E1=BA=ADn?="
    msg["Date"] = "Sat, 05 Dec 2020 08:00:00 +0700"
    msg["Message-ID"] = "<seed@tamnong.example>"
    msg.set_content("Kính gửi Phòng Nội vụ,\nĐơn vị gửi báo cáo.\n")
    msg.add_attachment(book, maintype="application", subtype="vnd.openxmlformats-officedocument.spreadsheetml.sheet",
                       filename="Báo cáo dân vận.xlsx")
    msg.add_attachment(archive, maintype="application", subtype="zip", filename="bao-cao.zip")
    return {"thu.eml": msg.as_bytes(policy=email.policy.SMTP), "nen.zip": archive}


def test_one_input(data: bytes) -> None:
    if data.startswith(b"PK\x03\x04"):
        items = list(intake._zip_members(data, intake.Origin("zip", "fuzz.zip"), WHEN, LIMITS))
    else:
        items = list(intake.message_items(data, intake.Origin("email", "fuzz.eml"), LIMITS))
    for item in items:
        assert "\x00" not in item.name, item.name
        if item.data is not None:  # an attachment or member: a file name, never a path
            assert "/" not in item.name and item.name not in ("", ".", ".."), item.name
        item.name.encode("utf-8")  # no lone surrogates: the name is stored and printed
        item.origin.describe().encode("utf-8")


def main() -> None:
    args = [a for a in sys.argv[1:] if not a.startswith("-")]
    if args and not Path(args[0]).is_file():  # seed an empty corpus folder
        corpus = Path(args[0])
        corpus.mkdir(parents=True, exist_ok=True)
        if not any(corpus.iterdir()):
            for name, content in seeds().items():
                (corpus / name).write_bytes(content)
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
