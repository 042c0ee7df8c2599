"""The bad-input catalogue (reliability.md §4.2): each hostile or broken file gets its documented
outcome and a Vietnamese reason, the run exits 1, the original bytes are archived, no submission
is stored and no output is touched."""

from __future__ import annotations

import datetime as dt
import email.policy
import hashlib
import os
import shutil
import sqlite3
import time
from email.message import EmailMessage
from pathlib import Path

import hostile
import openpyxl
import pytest
from helpers import SEED_MODELS, SEED_VALUES

from danvan_xl.collect import collect
from danvan_xl.generate import generate, template_context
from danvan_xl.isolation import DEPTH, Crash, Job, WorkerPool
from danvan_xl.template_writer import Prefill, build_template
from danvan_xl.workspace import Limits, init_workspace, load_workspace


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile")
    ws = init_workspace(root / "ws", issue_date=dt.date(2020, 11, 2))
    generate(ws, ["TN-VP"])
    form, unit = ws.load_form(), ws.load_register().get("TN-VP")
    # A filled workbook as Excel would save it: shared strings, numbers, cached formula results.
    good = build_template(form, unit, template_context(ws),
                          prefill=Prefill(dict(SEED_VALUES), {"dvk_mo_hinh": SEED_MODELS}))
    return ws, good


@pytest.fixture
def ws(base, tmp_path):
    shutil.copytree(base[0].root, tmp_path / "ws")
    return load_workspace(tmp_path / "ws")


def rows(ws, table: str) -> int:
    if not ws.ledger_path.exists():
        return 0
    conn = sqlite3.connect(ws.ledger_path)
    try:
        return conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    finally:
        conn.close()


def collect_one(ws, name: str, data: bytes):
    inbox = ws.root.parent / "in"
    inbox.mkdir(exist_ok=True)
    path = inbox / name
    path.write_bytes(data)
    (ws.reports_dir).mkdir(exist_ok=True)
    marker = ws.reports_dir / "ket-qua-cu.txt"
    marker.write_text("không được đụng tới")
    started = time.monotonic()
    result = collect(ws, [path])
    elapsed = time.monotonic() - started
    assert marker.read_text() == "không được đụng tới" and sorted(p.name for p in ws.reports_dir.iterdir()) == [marker.name]
    return result, elapsed


REJECTED = [
    ("rong.xlsx", lambda good: b"", "empty-file", "rỗng"),
    ("cut.xlsx", lambda good: good[: len(good) // 2], "damaged-file", "hỏng"),
    ("so-lieu.xlsx", lambda good: "đơn vị,số đơn\nTN-VP,182\n".encode(), "wrong-format", "CSV"),
    ("trang.xls", lambda good: b"<html><body><table><tr><td>182</td></tr></table></body></html>", "wrong-format", "HTML"),
    ("van-ban.xlsx", lambda good: hostile.docx_bytes(), "wrong-format", "Word"),
    ("anh.xlsx", lambda good: hostile.PNG, "wrong-format", "ảnh"),
    ("bom.xlsx", hostile.zip_bomb, "too-large", "nghi tệp nén độc hại"),
    ("kich-thuoc-gia.xlsx", hostile.lying_size, "damaged-file", "hỏng"),
    ("chong-lan.xlsx", hostile.overlapping, "damaged-file", "chồng lên nhau"),
    ("phien-ban-nen.xlsx", hostile.unsupported_version, "damaged-file", "cấu trúc nén"),
    ("trung-ten.xlsx", hostile.duplicate_member, "ambiguous-archive", "cùng tên"),
    ("duong-dan.xlsx", hostile.traversal_member, "unsafe-archive", "đường dẫn không an toàn"),
    ("laughs-sst.xlsx", hostile.laughs_in_shared_strings, "unsafe-xml", "DTD"),
    ("xxe.xlsx", hostile.xxe_in_sheet, "unsafe-xml", "DTD"),
    ("laughs-wb.xlsx", hostile.laughs_in_workbook, "unsafe-xml", "DTD"),
    ("quadratic.xlsx", hostile.quadratic, "unsafe-xml", "DTD"),
    ("xa-xoi.xlsx", hostile.huge_extent, "too-large", "trải tới dòng 1.048.576"),
    ("trieu-dong.xlsx", hostile.million_rows, "too-large", "vượt giới hạn"),
    *((f"xa-xoi-{form}.xlsx", hostile.far_cell(form), "too-large", "vượt giới hạn") for form in hostile.FAR_CELL_FORMS),
    ("xml-hong.xlsx", hostile.malformed_xml, "damaged-file", "cấu trúc XML bị hỏng"),
    ("bang-ma.xlsx", hostile.unknown_encoding, "damaged-file", "bảng mã không hợp lệ"),
    ("thieu.xlsx", hostile.without_workbook_part, "damaged-file", "thiếu thành phần"),
    ("nhi-phan.xlsb", hostile.xlsb, "unsupported-format", ".xlsb"),
]


@pytest.mark.parametrize(("name", "build", "code", "words"), REJECTED, ids=[r[0] for r in REJECTED])
def test_hostile_file_is_rejected_with_its_reason_and_nothing_stored(ws, base, name, build, code, words):
    data = build(base[1])
    result, elapsed = collect_one(ws, name, data)
    out = result.outcomes[0]
    assert (out.outcome, out.code) == ("rejected", code), out.message
    assert words in out.message and out.name == name
    assert result.exit_code == 1
    assert rows(ws, "submissions") == 0 and rows(ws, "current") == 0
    digest = hashlib.sha256(data).hexdigest()
    assert (ws.archive_dir / digest[:2] / digest).read_bytes() == data  # evidence is kept
    assert elapsed < 30
    assert "/etc/hostname" not in out.message and Path("/tmp/danvan-evil.txt").exists() is False


def test_the_secret_of_an_xxe_file_appears_nowhere(ws, base, tmp_path):
    secret = "bí-mật-" + hashlib.sha256(str(tmp_path).encode()).hexdigest()
    (tmp_path / "secret.txt").write_text(secret, encoding="utf-8")
    result, _ = collect_one(ws, "xxe.xlsx", hostile.xxe_in_sheet(base[1], str(tmp_path / "secret.txt")))
    dump = "\n".join(sqlite3.connect(ws.ledger_path).iterdump())
    assert secret not in dump and secret not in result.outcomes[0].message


def test_a_declared_huge_dimension_with_small_data_is_accepted(ws, base):
    result, _ = collect_one(ws, "dim.xlsx", hostile.declared_dimension_only(base[1]))
    assert result.outcomes[0].outcome == "accepted"


def test_cells_written_in_an_unusual_but_valid_form_read_the_same(ws, base, form):
    """The extent check measures such sheets by parsing them: it must not refuse a file with a normal extent."""
    from danvan_xl.gate import sniff
    from danvan_xl.workbook_reader import read_workbook

    def read(data):
        result = read_workbook(data, sniff(data, ws.limits), form, 2020, ws.limits, "x.xlsx")
        assert result.ok, result.message
        return result.data

    unusual = hostile.cells_written_otherwise(base[1])
    sheets = [x for n, x in hostile.members(unusual).items() if n.startswith("xl/worksheets/sheet")]
    assert all(b'<c r="' not in x for x in sheets) and sum(x.count(b"<c  r='") for x in sheets) > 500
    assert read(unusual) == read(base[1])


def test_the_parsed_extent_agrees_with_the_quick_scan_on_real_sheets(base):
    """Both ways of finding a sheet's extent give the same farthest cell on Excel-style and LibreOffice sheets."""
    from danvan_xl.resources import sample_dir
    from danvan_xl.workbook_reader import _CANONICAL_CELL, _OTHER_CELL, _col_index, _extent_by_parsing

    books = [base[1], *(p.read_bytes() for p in sorted((sample_dir() / "returns").glob("*.xlsx")))]
    checked = 0
    for data in books:
        for name, xml in hostile.members(data).items():
            if not name.startswith("xl/worksheets/sheet"):
                continue
            assert _OTHER_CELL.search(xml) is None, name
            cells = _CANONICAL_CELL.findall(xml)
            quick = (max((int(r) for _c, r in cells), default=0), max((_col_index(c.decode()) for c, _r in cells), default=0))
            assert _extent_by_parsing(xml) == quick, name
            checked += 1
    assert checked >= 30


def test_a_blank_workbook_is_not_a_template(ws, tmp_path):
    path = tmp_path / "trang.xlsx"
    wb = openpyxl.Workbook()
    wb.active["A1"] = "Báo cáo dân vận"
    wb.save(path)
    result, _ = collect_one(ws, "trang.xlsx", path.read_bytes())
    assert result.outcomes[0].code == "not-a-template" and "biểu mẫu" in result.outcomes[0].message


@pytest.mark.parametrize(("build", "code"), [(hostile.macro_sheet, "has-macros")])
def test_macro_sheets_are_flagged(ws, base, build, code):
    result, _ = collect_one(ws, "macro.xlsx", build(base[1]))
    assert result.outcomes[0].outcome == "accepted"
    conn = sqlite3.connect(ws.ledger_path)
    assert conn.execute("SELECT count(*) FROM findings WHERE code = ?", (code,)).fetchone()[0] == 1


def test_external_links_are_noted_and_their_cached_values_used(ws, base):
    result, _ = collect_one(ws, "link.xlsx", hostile.external_link(base[1]))
    assert result.outcomes[0].outcome == "accepted"
    assert any("liên kết tới sổ tính khác" in n for n in result.outcomes[0].notes)


def test_injection_control_characters_and_oversized_text(ws, base, tmp_path):
    form, unit = ws.load_form(), ws.load_register().get("TN-VP")
    values = dict(SEED_VALUES, nd_1_lanh_dao='=HYPERLINK("http://x","bấm")', nd_2_1_quan_triet="+cmd|' /C calc'!A0",
                  nd_2_2_dao_duc="Chuông\x07 báo\x0b lỗi _x0007_ ở đây", nd_2_3_tuyen_truyen="x" * 20_000)
    data = build_template(form, unit, template_context(ws), prefill=Prefill(values, {"dvk_mo_hinh": SEED_MODELS}))
    result, _ = collect_one(ws, "inject.xlsx", data)
    out = result.outcomes[0]
    assert out.outcome == "accepted" and out.errors == 1  # only the 20,000-character paragraph
    from danvan_xl.ledger import Ledger

    with Ledger.open_readonly(ws.ledger_path) as ledger:
        sub = ledger.current_submissions(form.id, 2020)[0]
        findings = ledger.findings(sub.id)
    plain = sub.data.plain()
    assert plain["nd_1_lanh_dao"] == '=HYPERLINK("http://x","bấm")'  # stored verbatim, as text
    assert plain["nd_2_2_dao_duc"] == "Chuông báo lỗi ở đây"
    too_long = next(f for f in findings if f.code == "too-long")
    assert too_long.cell and too_long.sheet == "ChiDao" and "dài 20.000 ký tự, vượt giới hạn 8.000" in too_long.message
    from danvan_xl.export import export

    csv_text = export(ws, "csv").read_text(encoding="utf-8-sig")
    assert "'=HYPERLINK" in csv_text and "'+cmd" in csv_text


def test_the_workspace_string_limit_caps_every_text_field(ws, base):
    """``[limits] max_string`` lowers the cap of every text below the field's own limit (8,000 here)."""
    cfg = ws.config_path
    cfg.write_text(cfg.read_text() + "\nmax_string = 500\n")
    ws = load_workspace(ws.root)
    form, unit = ws.load_form(), ws.load_register().get("TN-VP")
    values = dict(SEED_VALUES, nd_2_3_tuyen_truyen="Tuyên truyền " * 100)
    data = build_template(form, unit, template_context(ws), prefill=Prefill(values, {"dvk_mo_hinh": SEED_MODELS}))
    result, _ = collect_one(ws, "dai.xlsx", data)
    assert result.outcomes[0].outcome == "accepted" and result.outcomes[0].errors == 1
    conn = sqlite3.connect(ws.ledger_path)
    message, sheet, cell = conn.execute("SELECT message, sheet, cell FROM findings WHERE code = 'too-long'").fetchone()
    assert "vượt giới hạn 500 ký tự" in message and sheet == "ChiDao" and cell


def test_attachment_names_are_never_paths(ws, base, tmp_path):
    msg = EmailMessage()
    msg["From"] = "vanphong@tamnong.dongthap.example"
    msg["Subject"] = "báo cáo"
    msg.set_content("gửi")
    msg.add_attachment(base[1], maintype="application", subtype="octet-stream", filename="../../etc/passwd.xlsx")
    msg.add_attachment(b"not a workbook", maintype="application", subtype="octet-stream", filename="CON.xlsx")
    mailbox = tmp_path / "mail"
    mailbox.mkdir()
    eml = mailbox / "m.eml"
    eml.write_bytes(msg.as_bytes(policy=email.policy.default))
    before = sorted(str(p) for p in mailbox.rglob("*"))
    result = collect(ws, [eml])
    assert [o.name for o in result.outcomes] == ["passwd.xlsx", "CON.xlsx"]
    assert result.outcomes[0].outcome == "accepted"
    assert sorted(str(p) for p in mailbox.rglob("*")) == before  # nothing written next to the message
    assert not Path("/etc/passwd.xlsx").exists()


def test_an_archive_zipfile_cannot_open_inside_a_zip_is_one_rejected_file(ws, base, tmp_path):
    """A member of a sent .zip that is itself an archive Python's zipfile refuses (NotImplementedError
    for an unsupported version) used to end the whole collect with an internal error."""
    outer = tmp_path / "ca-hai.zip"
    outer.write_bytes(hostile.rezip({"a-hong.xlsx": hostile.unsupported_version(base[1]), "b-tot.xlsx": base[1]}))
    result = collect(ws, [outer])
    outcomes = {o.name: o for o in result.outcomes}
    assert outcomes["a-hong.xlsx"].outcome == "rejected" and outcomes["a-hong.xlsx"].code == "damaged-file"
    assert outcomes["b-tot.xlsx"].outcome == "accepted"
    assert result.exit_code == 1


@pytest.mark.parametrize(("name", "build", "code"), [
    ("khong-ten.zip", lambda good: hostile.nameless_member(), "damaged-file"),
    ("nen-doc.zip", lambda good: hostile.rezip({"bao-cao.xlsx": good, "rac.bin": b"\0" * (200 * 1024 * 1024)}), "too-large"),
    ("phien-ban.zip", lambda good: hostile.unsupported_version(hostile.rezip({"bao-cao.xlsx": good})), "damaged-file"),
])
def test_a_sent_zip_that_cannot_be_opened_safely_is_a_rejected_file(ws, base, name, build, code):
    """The archive a unit sends is judged like a workbook: archived, rejected with the gate's reason,
    exit 1 (it used to be 'skipped' with exit 0, and a nameless member ended the run)."""
    data = build(base[1])
    result, _ = collect_one(ws, name, data)
    [outcome] = result.outcomes
    assert (outcome.name, outcome.outcome, outcome.code) == (name, "rejected", code), outcome.message
    assert result.exit_code == 1
    digest = hashlib.sha256(data).hexdigest()
    assert (ws.archive_dir / digest[:2] / digest).read_bytes() == data  # evidence is kept
    assert rows(ws, "submissions") == 0 and rows(ws, "deliveries") == 1


def test_a_file_name_in_a_legacy_code_page_is_collected(ws, base, tmp_path):
    """A name that is not UTF-8 (copied from an old USB stick or zip tool) reaches Python with lone
    surrogates, which SQLite refuses: it used to end the run; now it shows U+FFFD for those bytes."""
    inbox = tmp_path / "in-cp1258"
    inbox.mkdir()
    with open(os.path.join(os.fsencode(inbox), b"b\xe1o c\xe1o.xlsx"), "wb") as fh:
        fh.write(base[1])
    result = collect(ws, [inbox])
    [outcome] = result.outcomes
    assert (outcome.outcome, outcome.name) == ("accepted", "b\ufffdo c\ufffdo.xlsx"), outcome.message
    conn = sqlite3.connect(ws.ledger_path)
    assert conn.execute("SELECT name FROM deliveries").fetchone()[0] == "b\ufffdo c\ufffdo.xlsx"


def test_a_message_the_email_parser_cannot_read_is_one_item_in_a_mailbox(ws, base, tmp_path):
    """Python's e-mail parser raises on some messages (a NUL in a parameter); in an .mbox the others
    are still collected."""
    import mailbox

    good = EmailMessage()
    good["From"] = "vanphong@tamnong.dongthap.example"
    good["Subject"] = "báo cáo"
    good.set_content("gửi")
    good.add_attachment(base[1], maintype="application", subtype="octet-stream", filename="bao-cao.xlsx")
    box = mailbox.mbox(tmp_path / "hop-thu.mbox")
    box.add((Path(__file__).parent / "regressions" / "intake-a-message-the-email-parser-cannot-parse.eml").read_bytes())
    box.add(good.as_bytes(policy=email.policy.SMTP))
    box.close()
    result = collect(ws, [tmp_path / "hop-thu.mbox"])
    assert [o.outcome for o in result.outcomes] == ["skipped", "accepted"], [o.message for o in result.outcomes]
    assert "không đọc được" in result.outcomes[0].message


def test_extra_sheets_and_merged_input_cells(ws, base, tmp_path):
    path = tmp_path / "src.xlsx"
    path.write_bytes(base[1])
    wb = openpyxl.load_workbook(path)
    wb.create_sheet("GhiChuRieng")["A1"] = "ghi chú của đơn vị"
    wb.save(tmp_path / "extra.xlsx")
    wb = openpyxl.load_workbook(path)
    wb["TiepDan"].merge_cells("D13:E13")
    wb.save(tmp_path / "merged.xlsx")
    result, _ = collect_one(ws, "extra.xlsx", (tmp_path / "extra.xlsx").read_bytes())
    assert result.outcomes[0].outcome == "accepted"
    conn = sqlite3.connect(ws.ledger_path)
    assert conn.execute("SELECT message FROM findings WHERE code = 'extra-sheets'").fetchone()[0].count("GhiChuRieng") == 1
    result, _ = collect_one(ws, "merged.xlsx", (tmp_path / "merged.xlsx").read_bytes())
    assert result.outcomes[0].code == "structure-damaged" and "TiepDan!D13" in result.outcomes[0].message


def test_a_crashing_parser_costs_one_file_not_the_run(ws, base, tmp_path):
    """Process isolation: with the extent pre-check loosened, the huge-extent file makes python-calamine
    abort inside its worker; that file is rejected and the good file in the same run is accepted."""
    cfg = ws.config_path
    cfg.write_text(cfg.read_text() + "\nmax_rows = 2000000\nmax_cols = 20000\nmemory_mb = 600\n")
    ws = load_workspace(ws.root)
    inbox = tmp_path / "in2"
    inbox.mkdir()
    (inbox / "a-xa-xoi.xlsx").write_bytes(hostile.huge_extent(base[1]))
    (inbox / "b-tot.xlsx").write_bytes(base[1])
    result = collect(ws, [inbox])
    outcomes = {o.name: o for o in result.outcomes}
    assert outcomes["a-xa-xoi.xlsx"].code == "parser-crashed", outcomes["a-xa-xoi.xlsx"].message
    assert "SIGABRT" in outcomes["a-xa-xoi.xlsx"].message or "SIGKILL" in outcomes["a-xa-xoi.xlsx"].message
    assert outcomes["b-tot.xlsx"].outcome == "accepted"
    assert result.exit_code == 1


def test_jobs_queued_behind_a_crash_are_read_by_a_fresh_worker(ws, base, tmp_path):
    """One worker holds DEPTH jobs at a time; when it dies on the first, the ones queued behind it
    are re-sent to its replacement, read from their paths, and come back once each."""
    assert DEPTH >= 2
    bad = tmp_path / "xau.xlsx"
    bad.write_bytes(hostile.huge_extent(base[1]))
    good = tmp_path / "tot.xlsx"
    good.write_bytes(base[1])
    limits = Limits(max_rows=2_000_000, max_cols=20_000, memory_mb=600, timeout_seconds=60)
    pool = WorkerPool(str(ws.load_form().folder), 2020, limits, workers=1)
    jobs = [Job(0, None, "xau.xlsx", str(bad)), Job(1, None, "tot.xlsx", str(good)), Job(2, base[1], "tot2.xlsx"),
            Job(3, None, "xau2.xlsx", str(bad)), Job(4, None, "tot3.xlsx", str(good))]
    results = list(pool.run(jobs))
    assert sorted(i for i, _ in results) == [0, 1, 2, 3, 4]
    by_index = dict(results)
    assert isinstance(by_index[0], Crash) and isinstance(by_index[3], Crash)
    assert all(by_index[i].ok and by_index[i].identity["unit_code"] == "TN-VP" for i in (1, 2, 4))


def test_a_parser_that_takes_too_long_is_stopped(ws, base, tmp_path):
    cfg = ws.config_path
    cfg.write_text(cfg.read_text() + "\ntimeout_seconds = 0.3\nmax_rows = 2000000\n")
    ws = load_workspace(ws.root)
    result, _ = collect_one(ws, "cham.xlsx", hostile.million_rows(base[1]))
    assert result.outcomes[0].code == "timeout" and "giây" in result.outcomes[0].message
