"""Collecting returned workbooks into the ledger (design.md §3.4–3.5): formats, outcomes, values."""

from __future__ import annotations

import datetime as dt
import email.header
import email.policy
import io
import os
import sqlite3
import zipfile
from email.message import EmailMessage
from pathlib import Path

import openpyxl
import pytest
from helpers import SEED_MODELS, SEED_VALUES, fill_template

from danvan_xl.collect import collect
from danvan_xl.generate import generate
from danvan_xl.ledger import Ledger
from danvan_xl.vocabulary import ValueState
from danvan_xl.workspace import init_workspace

UNITS = ["TN-VP", "TN-NV", "TN-TP", "30025", "30019"]


@pytest.fixture
def ws(tmp_path):
    ws = init_workspace(tmp_path / "ws", issue_date=dt.date(2020, 11, 2))
    generate(ws, UNITS)
    return ws


def template(ws, code: str) -> Path:
    return next(ws.templates_dir.glob(f"2020_{code}_*.xlsx"))


def filled(ws, code: str, out: Path, values=None, tables=None, **kw) -> Path:
    """A unit's template filled with the seed's figures (and its one "Dân vận khéo" model) unless told otherwise."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tables = {"dvk_mo_hinh": SEED_MODELS} if tables is None else tables
    return fill_template(template(ws, code), out, SEED_VALUES if values is None else values, tables, **kw)


def current(ws, code: str):
    with Ledger.open_readonly(ws.ledger_path) as ledger:
        subs = {s.unit_code: s for s in ledger.current_submissions("nam-dan-van-chinh-quyen", 2020)}
        sub = subs.get(code)
        return sub, (ledger.findings(sub.id) if sub else [])


def dump(ws) -> list:
    conn = sqlite3.connect(ws.ledger_path)
    try:
        return list(conn.iterdump())
    finally:
        conn.close()


def test_seed_workbook_is_accepted_with_the_seed_numbers(ws, tmp_path):
    path = filled(ws, "TN-VP", tmp_path / "in" / "Bao cao dan van (1).xlsx", tables={"dvk_mo_hinh": SEED_MODELS})
    result = collect(ws, [path])
    assert [o.outcome for o in result.outcomes] == ["accepted"]
    assert result.outcomes[0].unit == "TN-VP" and result.exit_code == 0
    sub, findings = current(ws, "TN-VP")
    plain = sub.data.plain()
    for key, value in SEED_VALUES.items():
        assert plain[key] == value, key
    assert sub.data.values["tcd_thuong_xuyen_nguoi"].state == ValueState.BLANK  # blank is not 0
    assert sub.data.rows("dvk_mo_hinh")[0]["linh_vuc"] == "Văn hóa - xã hội"
    assert [f for f in findings if f.severity == "error"] == []


def test_unit_comes_from_content_not_file_name(ws, tmp_path):
    path = filled(ws, "30025", tmp_path / "in" / "2020_TN-VP_nam-dan-van-chinh-quyen.xlsx")
    result = collect(ws, [path])
    assert result.outcomes[0].unit == "30025"


def test_rerunning_the_same_collect_changes_nothing(ws, tmp_path):
    inbox = tmp_path / "in"
    filled(ws, "TN-VP", inbox / "a.xlsx")
    filled(ws, "30025", inbox / "b.xlsx")
    (inbox / "ghi-chu.txt").write_text("không phải bảng tính", encoding="utf-8")
    first = collect(ws, [inbox])
    assert sorted(o.outcome for o in first.outcomes) == ["accepted", "accepted", "rejected"]
    before = dump(ws)
    archived = sorted(p.name for p in ws.archive_dir.rglob("*") if p.is_file())
    second = collect(ws, [inbox])
    assert [o.outcome for o in second.outcomes] == ["duplicate"] * 3
    assert dump(ws) == before
    assert sorted(p.name for p in ws.archive_dir.rglob("*") if p.is_file()) == archived


def test_originals_are_archived_by_content_and_read_only(ws, tmp_path):
    path = filled(ws, "TN-VP", tmp_path / "in" / "a.xlsx")
    collect(ws, [path])
    import hashlib

    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    stored = ws.archive_dir / digest[:2] / digest
    assert stored.read_bytes() == path.read_bytes()
    assert not os.stat(stored).st_mode & 0o222


def test_corrected_file_supersedes_and_both_versions_stay(ws, tmp_path):
    wrong = filled(ws, "TN-VP", tmp_path / "v1" / "a.xlsx", dict(SEED_VALUES, don_khac=50))
    first = collect(ws, [wrong])
    assert first.outcomes[0].errors == 1 and first.exit_code == 1
    right = filled(ws, "TN-VP", tmp_path / "v2" / "a.xlsx")
    os.utime(right, (wrong.stat().st_mtime + 3600,) * 2)
    second = collect(ws, [right])
    assert second.outcomes[0].outcome == "accepted" and "bản sửa" in second.outcomes[0].message
    sub, findings = current(ws, "TN-VP")
    assert sub.data.plain()["don_khac"] == 52 and not [f for f in findings if f.severity == "error"]
    with Ledger.open_readonly(ws.ledger_path) as ledger:
        rows = ledger.submissions_of("TN-VP", "nam-dan-van-chinh-quyen", 2020)
    assert [r["state"] for r in rows] == ["superseded", "current"]


def test_an_older_version_arriving_late_does_not_replace_the_current(ws, tmp_path):
    new = filled(ws, "TN-VP", tmp_path / "new" / "a.xlsx")
    old = filled(ws, "TN-VP", tmp_path / "old" / "a.xlsx", dict(SEED_VALUES, don_khac=50))
    os.utime(old, (new.stat().st_mtime - 86400,) * 2)
    collect(ws, [new])
    result = collect(ws, [old])
    assert result.outcomes[0].outcome == "superseded-old"
    sub, _ = current(ws, "TN-VP")
    assert sub.data.plain()["don_khac"] == 52


def test_two_different_files_for_one_unit_in_one_run_are_a_conflict(ws, tmp_path):
    a = filled(ws, "TN-VP", tmp_path / "in" / "a.xlsx")
    filled(ws, "TN-VP", tmp_path / "in" / "b.xlsx", dict(SEED_VALUES, don_khac=50))
    result = collect(ws, [a.parent])
    assert [o.outcome for o in result.outcomes] == ["conflict", "conflict"]
    assert result.exit_code == 1
    assert current(ws, "TN-VP")[0] is None
    from danvan_xl.collect import resolve_conflict

    sid, other = (o.submission_id for o in result.outcomes)
    message = result.outcomes[0].message  # the clerk is told which number is which file
    assert f"bản số {sid}: a.xlsx" in message and f"bản số {other}: b.xlsx" in message
    assert f"danvan resolve TN-VP <số bản> (ví dụ: danvan resolve TN-VP {other})" in message
    resolve_conflict(ws, "TN-VP", sid)
    assert current(ws, "TN-VP")[0].id == sid


def test_same_values_resaved_is_a_duplicate(ws, tmp_path):
    a = filled(ws, "TN-VP", tmp_path / "in" / "a.xlsx")
    collect(ws, [a])
    wb = openpyxl.load_workbook(a)
    wb.properties.creator = "someone else"
    resaved = tmp_path / "resaved.xlsx"
    wb.save(resaved)
    result = collect(ws, [resaved])
    assert result.outcomes[0].outcome == "duplicate" and result.outcomes[0].code == "same-values"


def _workbook_bytes(path: Path) -> bytes:
    return path.read_bytes()


def test_zip_with_cp437_names_and_nested_content(ws, tmp_path):
    a = filled(ws, "TN-VP", tmp_path / "a.xlsx")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("Báo cáo Văn phòng.xlsx", a.read_bytes())
    # Old Windows tools store UTF-8 bytes without the UTF-8 flag (bit 11): clear it in both headers.
    raw = bytearray(buf.getvalue())
    # The outer local header is first; the outer central directory entry is the last one.
    for pos, offset in ((raw.find(b"PK\x03\x04"), 7), (raw.rfind(b"PK\x01\x02"), 9)):  # high byte of the flags
        raw[pos + offset] &= ~0x08
    archive = tmp_path / "tra-loi.zip"
    archive.write_bytes(bytes(raw))
    assert zipfile.ZipFile(archive).namelist()[0].startswith("B├")  # what Python shows without the repair
    result = collect(ws, [archive])
    assert result.outcomes[0].outcome == "accepted"
    assert result.outcomes[0].name == "Báo cáo Văn phòng.xlsx"


def test_encoded_words_the_parser_left_are_decoded():
    """Headers read raw (where Python's e-mail parser failed on them) keep their encoded words: the
    intake decodes them itself, with UTF-8 when the charset is unknown or refused."""
    from danvan_xl.intake import _decode

    assert _decode("=?utf-8?b?QsOhbyBjw6FvLnhsc3g=?=") == "Báo cáo.xlsx"
    assert _decode("=?\x01\x00utf-8?q?V=C4=83n?=") == "Văn"
    assert _decode("Báo cáo") == "Báo cáo"


@pytest.mark.parametrize("style", ["rfc2231", "encoded-word"])
def test_eml_attachment_names_in_both_encodings(ws, tmp_path, style):
    a = filled(ws, "30025", tmp_path / "a.xlsx")
    msg = EmailMessage()
    msg["From"] = "UBND xã Phú Cường <phucuong@tamnong.dongthap.example>"
    msg["To"] = "noivu@tamnong.dongthap.example"
    msg["Subject"] = "Gửi báo cáo dân vận"
    msg["Date"] = "Tue, 08 Dec 2020 09:30:00 +0700"
    msg.set_content("Kính gửi Phòng Nội vụ, đơn vị gửi báo cáo.")
    name = "Báo cáo dân vận xã Phú Cường.xlsx"
    msg.add_attachment(a.read_bytes(), maintype="application", subtype="octet-stream", filename=name)
    raw = msg.as_bytes(policy=email.policy.default)
    if style == "encoded-word":
        encoded = email.header.Header(name, "utf-8").encode()
        text = raw.decode("utf-8")
        start = text.index("Content-Disposition: attachment")
        end = text.index("\n\n", start)
        text = text[:start] + f'Content-Disposition: attachment; filename="{encoded}"' + text[end:]
        raw = text.encode("utf-8")
    path = tmp_path / "thu.eml"
    path.write_bytes(raw)
    result = collect(ws, [path])
    out = result.outcomes[0]
    assert out.outcome == "accepted" and out.unit == "30025"
    assert out.name == "Báo cáo dân vận xã Phú Cường.xlsx"
    assert "thư từ phucuong@tamnong.dongthap.example, 08/12/2020" in out.origin
    sub, _ = current(ws, "30025")
    assert sub.received_at.date() == dt.date(2020, 12, 8)


def test_reply_carrying_another_units_workbook_is_collected_by_content_and_flagged(ws, tmp_path):
    a = filled(ws, "30019", tmp_path / "a.xlsx")
    msg = EmailMessage()
    msg["From"] = "phucuong@tamnong.dongthap.example"
    msg["Subject"] = "báo cáo"
    msg.set_content("gửi")
    msg.add_attachment(a.read_bytes(), maintype="application", subtype="octet-stream", filename="bc.xlsx")
    (tmp_path / "m.eml").write_bytes(msg.as_bytes())
    result = collect(ws, [tmp_path / "m.eml"])
    assert result.outcomes[0].unit == "30019"
    _, findings = current(ws, "30019")
    assert any(f.code == "sent-by-other-unit" for f in findings)


def test_message_without_attachment_is_listed_for_a_human(ws, tmp_path):
    msg = EmailMessage()
    msg["From"] = "anlong@tamnong.dongthap.example"
    msg["Subject"] = "Xin gia hạn nộp báo cáo"
    msg.set_content("Đơn vị xin gia hạn.")
    (tmp_path / "m.eml").write_bytes(msg.as_bytes())
    result = collect(ws, [tmp_path / "m.eml"])
    assert result.outcomes[0].outcome == "skipped"
    assert "không có tệp đính kèm" in result.outcomes[0].message


def test_values_are_normalised_at_one_boundary(ws, tmp_path):
    values = dict(SEED_VALUES)
    values.update({
        "don_moi_truong": "05", "don_tiep_nhan": " 182 ", "tcd_dinh_ky_luot": "５３", "tcd_thuong_xuyen_luot": "170",
        "don_to_cao": "không phát sinh", "don_khieu_nai": "KHÔNG PHÁT SINH", "tthc_tiep_nhan": "1.234",
        "nguoi_ky_ho_ten": "Đoa\u0300n\u00a0Hữu Tiên",  # NFD + NBSP
    })
    path = filled(ws, "TN-VP", tmp_path / "in" / "a.xlsx", values)
    collect(ws, [path])
    sub, findings = current(ws, "TN-VP")
    plain = sub.data.plain()
    assert plain["don_moi_truong"] == 5 and plain["don_tiep_nhan"] == 182 and plain["tcd_dinh_ky_luot"] == 53
    assert plain["tthc_tiep_nhan"] == 1234
    assert sub.data.values["don_to_cao"].state == ValueState.NA
    assert sub.data.values["don_khieu_nai"].state == ValueState.NA
    assert plain["nguoi_ky_ho_ten"] == "Đoàn Hữu Tiên"
    assert not [f for f in findings if f.severity == "error"]


def test_bad_values_are_findings_never_zero_or_blank(ws, tmp_path):
    values = dict(SEED_VALUES)
    values.update({"don_moi_truong": -5, "don_khac": 7.5, "vu_viec_dong_nguoi": "nhiều",
                   "lich_tiep_cong_khai": "Chưa rõ", "nguoi_ky_ho_ten": "x" * 150})
    path = filled(ws, "TN-VP", tmp_path / "in" / "a.xlsx", values)
    result = collect(ws, [path])
    assert result.exit_code == 1
    sub, findings = current(ws, "TN-VP")
    by_field = {f.field: f for f in findings if f.code != "rule-violated"}
    for fid, code in (("don_moi_truong", "out-of-range"), ("don_khac", "fractional-count"),
                      ("vu_viec_dong_nguoi", "not-a-number"), ("lich_tiep_cong_khai", "not-in-list"),
                      ("nguoi_ky_ho_ten", "too-long")):
        assert by_field[fid].code == code, fid
        assert by_field[fid].sheet and by_field[fid].cell and by_field[fid].file == "a.xlsx"
        assert sub.data.values[fid].state == ValueState.INVALID
        assert sub.data.values[fid].raw  # the unit's text is kept
    assert by_field["don_moi_truong"].message.startswith("“Theo nội dung: môi trường” là số âm (-5)")


def test_wrong_year_form_and_unknown_unit_are_rejected(ws, tmp_path):
    base = filled(ws, "TN-VP", tmp_path / "base.xlsx")

    def variant(name: str, **meta: str) -> Path:
        wb = openpyxl.load_workbook(base)
        for row in wb["_meta"].iter_rows(max_col=2):
            if row[0].value in meta:
                row[1].value = meta[row[0].value]
        for prop in wb.custom_doc_props:
            key = prop.name.removeprefix("danvan_")
            if key in meta:
                prop.value = meta[key]
        out = tmp_path / "in" / name
        out.parent.mkdir(exist_ok=True)
        wb.save(out)
        return out

    variant("nam.xlsx", year="2019")
    variant("bieu.xlsx", form_id="bieu-mau-khac")
    variant("phienban.xlsx", form_version="2019.1")
    variant("donvi.xlsx", unit_code="TN-XX", unit_name="Phòng Không Có")
    result = collect(ws, [tmp_path / "in"])
    codes = {o.name: o.code for o in result.outcomes}
    assert codes == {"bieu.xlsx": "wrong-form", "donvi.xlsx": "unknown-unit", "nam.xlsx": "wrong-year",
                     "phienban.xlsx": "wrong-version"}
    assert all(o.outcome == "rejected" for o in result.outcomes) and result.exit_code == 1
    msgs = {o.name: o.message for o in result.outcomes}
    assert "năm 2019, không phải năm 2020" in msgs["nam.xlsx"]
    with Ledger.open_readonly(ws.ledger_path) as ledger:
        assert ledger.conn.execute("SELECT count(*) FROM submissions").fetchone()[0] == 0
        assert ledger.conn.execute("SELECT count(*) FROM deliveries WHERE outcome='rejected'").fetchone()[0] == 4


def test_encrypted_and_foreign_files_are_rejected_with_reasons(ws, tmp_path):
    import msoffcrypto.format.ooxml

    plain = filled(ws, "TN-VP", tmp_path / "plain.xlsx")
    inbox = tmp_path / "in"
    inbox.mkdir()
    with open(plain, "rb") as src, open(inbox / "matkhau.xlsx", "wb") as dst:
        msoffcrypto.format.ooxml.OOXMLFile(src).encrypt("Secret123", dst)
    (inbox / "scan.xlsx").write_bytes(b"%PDF-1.4\n...")
    (inbox / "rong.xlsx").write_bytes(b"")
    (inbox / "cut.xlsx").write_bytes(plain.read_bytes()[: plain.stat().st_size // 2])
    (inbox / "web.xls").write_bytes(b"<html><body><table><tr><td>1</td></tr></table></body></html>")
    result = collect(ws, [inbox])
    codes = {o.name: o.code for o in result.outcomes}
    assert codes == {"cut.xlsx": "damaged-file", "matkhau.xlsx": "encrypted", "rong.xlsx": "empty-file",
                     "scan.xlsx": "wrong-format", "web.xls": "wrong-format"}
    msgs = {o.name: o.message for o in result.outcomes}
    assert "không đặt mật khẩu" in msgs["matkhau.xlsx"] and "PDF" in msgs["scan.xlsx"] and "HTML" in msgs["web.xls"]


def test_renamed_sheet_and_moved_cells_are_structure_damage(ws, tmp_path):
    base = filled(ws, "TN-VP", tmp_path / "base.xlsx")
    wb = openpyxl.load_workbook(base)
    wb["TiepDan"].title = "TiepDan2"
    (tmp_path / "in").mkdir()
    wb.save(tmp_path / "in" / "renamed.xlsx")
    wb = openpyxl.load_workbook(base)
    wb["TiepDan"].insert_rows(6)  # openpyxl leaves the names behind: labels no longer line up
    wb.save(tmp_path / "in" / "moved.xlsx")
    result = collect(ws, [tmp_path / "in"])
    out = {o.name: o for o in result.outcomes}
    assert out["renamed.xlsx"].code == "structure-damaged" and "TiepDan" in out["renamed.xlsx"].message
    assert out["moved.xlsx"].code == "structure-damaged"


def test_dropped_names_and_deleted_identity_sheet_fall_back_and_say_so(ws, tmp_path):
    base = filled(ws, "TN-VP", tmp_path / "base.xlsx")
    wb = openpyxl.load_workbook(base)
    for name in list(wb.defined_names):
        del wb.defined_names[name]
    del wb["_meta"]
    (tmp_path / "in").mkdir()
    wb.save(tmp_path / "in" / "stripped.xlsx")
    result = collect(ws, [tmp_path / "in"])
    out = result.outcomes[0]
    assert out.outcome == "accepted" and out.unit == "TN-VP"
    notes = " ".join(out.notes)
    assert "đọc theo vị trí ô" in notes and "thuộc tính tệp" in notes
    sub, _ = current(ws, "TN-VP")
    assert sub.data.plain()["don_tiep_nhan"] == 182


def test_macro_enabled_files_are_flagged_never_run(ws, tmp_path):
    base = filled(ws, "TN-VP", tmp_path / "base.xlsx")
    src = zipfile.ZipFile(base)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename == "[Content_Types].xml":
                data = data.replace(b"spreadsheetml.sheet.main+xml", b"ms-excel.sheet.macroEnabled.main+xml")
            dst.writestr(info, data)
        dst.writestr("xl/vbaProject.bin", b"\xd0\xcf\x11\xe0fake vba project")
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "macro.xlsm").write_bytes(buf.getvalue())
    result = collect(ws, [tmp_path / "in"])
    assert result.outcomes[0].outcome == "accepted"
    _, findings = current(ws, "TN-VP")
    assert any(f.code == "has-macros" for f in findings)


def test_events_are_append_only(ws, tmp_path):
    collect(ws, [filled(ws, "TN-VP", tmp_path / "a.xlsx")])
    conn = sqlite3.connect(ws.ledger_path)
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        conn.execute("DELETE FROM events")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        conn.execute("UPDATE events SET kind = 'x'")
    conn.close()


def test_identical_rejected_files_in_one_run_are_duplicates_of_this_run(ws, tmp_path):
    """Files are hashed while earlier ones are already rejected and stored: a copy still names this run."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "a.xlsx").write_bytes(b"don_vi,so_don\nX,12\n")
    (inbox / "b.xlsx").write_bytes(b"don_vi,so_don\nX,12\n")
    filled(ws, "TN-VP", inbox / "c.xlsx")
    result = collect(ws, [inbox])
    outcomes = {o.name: o for o in result.outcomes}
    assert outcomes["a.xlsx"].outcome == "rejected" and outcomes["c.xlsx"].outcome == "accepted"
    assert outcomes["b.xlsx"].outcome == "duplicate" and outcomes["b.xlsx"].code == "same-bytes"
    assert "(a.xlsx, trong lần này)" in outcomes["b.xlsx"].message
    again = collect(ws, [inbox / "b.xlsx"])  # in a later run the earlier delivery is named with its date
    assert again.outcomes[0].outcome == "duplicate" and "trong lần này" not in again.outcomes[0].message


def test_more_units_than_one_commit_batch_are_all_stored_once(tmp_path):
    from danvan_xl.collect import COMMIT_UNITS
    from danvan_xl.sample_data import sample_values

    ws = init_workspace(tmp_path / "ws", issue_date=dt.date(2020, 11, 2))
    generate(ws)
    form, units = ws.load_form(), list(ws.load_register())
    assert len(units) > COMMIT_UNITS
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    for unit in units:
        values, tables = sample_values(form, unit, 2020)
        fill_template(template(ws, unit.code), inbox / f"{unit.code}.xlsx", values, tables)
    result = collect(ws, [inbox])
    assert result.count("accepted") == len(units)
    conn = sqlite3.connect(ws.ledger_path)
    try:
        assert conn.execute("SELECT count(*), count(DISTINCT unit_code) FROM submissions").fetchone() == (len(units),) * 2
        assert conn.execute("SELECT count(*) FROM current").fetchone()[0] == len(units)
        assert conn.execute("SELECT count(*) FROM checks").fetchone()[0] == len(units)
    finally:
        conn.close()
