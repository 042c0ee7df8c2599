"""The district summary workbook: honest totals, live formulas with right cached values, safety.

One small cycle is run once for the module (7 of the 25 sample units return a workbook: one clean,
one with a rule error, one mostly blank, one with a justified warning, communes with "không phát
sinh", an invalid value and a late file) and every test reads the same compiled summary. Expected
numbers are computed independently with pandas from the ledger's own tables, never from
danvan_xl.summary's intermediate results.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import sqlite3
import zipfile
from pathlib import Path
from typing import Any

import openpyxl
import pandas as pd
import pytest
from helpers import SEED_MODELS, SEED_VALUES, fill_template, soffice_convert
from lxml import etree

from danvan_xl.collect import collect
from danvan_xl.errors import ConfigError, TemplateBuildError
from danvan_xl.expr import NA
from danvan_xl.findings import Finding
from danvan_xl.generate import generate
from danvan_xl.status import UnitStatus
from danvan_xl.submission import Submission, SubmissionData, Value
from danvan_xl.summary import (
    TRUNCATED,
    Sheet,
    build_model,
    build_summary,
    compile_summary,
    csv_cell,
    render_csv,
)
from danvan_xl.units import Register, Unit
from danvan_xl.vocabulary import NA_TEXT, Severity, ValueState
from danvan_xl.workspace import Office, init_workspace

YEAR = 2020
FORM_ID = "nam-dan-van-chinh-quyen"
NS = {"m": "http://schemas.openxmlformats.org/spreadsheetml/2006/main"}
INJECTIONS = {
    "nd_1_lanh_dao": '=HYPERLINK("http://evil.example","bấm vào đây")',
    "nd_2_1_quan_triet": "+cmd|' /C calc'!A0",
    "nd_3_1_ket_qua": "@SUM(1,1)",
    "nd_3_2_han_che": "-2+3 là hạn chế",
}
SCORES_FULL = dict(zip([f"diem_tc{i}" for i in range(1, 9)], [15, 14, 9, 18, 9, 14, 9, 5], strict=True))  # 93
SCORES_PART = {"diem_tc1": 12, "diem_tc2": 10.5, "diem_tc3": 8, "diem_tc4": 15}  # 45.5, criteria 5–8 blank
SCORES_KHA = dict(zip([f"diem_tc{i}" for i in range(1, 9)], [12, 12, 8, 16, 8, 12, 8, 4], strict=True))  # 80

SIGN = {"nguoi_ky_chuc_vu": "CHỦ TỊCH", "nguoi_ky_ho_ten": "Nguyễn Văn A"}
UNITS: dict[str, dict[str, Any]] = {
    # clean, the seed's figures, injection strings in its paragraphs
    "TN-VP": {**SEED_VALUES, **INJECTIONS, **SCORES_FULL, "vb_trien_khai": 12, "hn_quan_triet": 4, "cbccvc_tong": 25,
              "cbccvc_vi_pham": 1, "cbccvc_ky_luat": 0, "tthc_tiep_nhan": 320, "tthc_dung_han": 300, "tthc_qua_han": 5,
              "doi_thoai": 2, "dvk_ho_duoc_giup": 1, "kiem_tra_dv": 2, "ty_le_hai_long": 92.5, "dvk_kinh_phi": 12.5},
    # a rule error (topics add up to 190, not 182): excluded from totals
    "TN-NV": {**SEED_VALUES, "don_khac": 60, "vb_trien_khai": 100, "cbccvc_tong": 1000, "tthc_tiep_nhan": 900,
              "tthc_dung_han": 800, "tthc_qua_han": 100, **SCORES_KHA},
    # mostly blank, one "không phát sinh"
    "TN-TP": {**SIGN, "vb_trien_khai": 3, "cbccvc_tong": 12, "tcd_thuong_xuyen_luot": "không phát sinh"},
    # a warning justified by the unit (đơn quá hạn), partial self-scores
    "TN-TNMT": {**SIGN, **SCORES_PART, "don_tiep_nhan": 40, "don_nam_truoc": 35, "don_btht_tdc": 10,
                "don_tranh_chap_dat": 25, "don_moi_truong": 3, "don_khac": 2, "don_khieu_nai": 0, "don_to_cao": 0,
                "don_kien_nghi": 40, "don_da_chuyen": 30, "don_dang_giai_quyet": 10, "don_con_han": 8, "don_qua_han": 2,
                "tcd_dinh_ky_luot": 12, "tcd_dinh_ky_nguoi": 15, "vb_trien_khai": 5, "cbccvc_tong": 30,
                "cbccvc_vi_pham": 2, "cbccvc_ky_luat": 1, "tthc_tiep_nhan": 150, "tthc_dung_han": 140,
                "tthc_qua_han": 10, "lich_tiep_cong_khai": "Có"},
    # a commune with "không phát sinh" in a topic and in a ratio's denominator
    "30001": {**SIGN, **SCORES_KHA, "tcd_dinh_ky_luot": 50, "tcd_dinh_ky_nguoi": 60, "tcd_thuong_xuyen_luot": 20,
              "tcd_thuong_xuyen_nguoi": 22, "don_tiep_nhan": 15, "don_btht_tdc": 5, "don_tranh_chap_dat": 5,
              "don_moi_truong": "không phát sinh", "don_khac": 5, "don_khieu_nai": 0, "don_to_cao": 0,
              "don_kien_nghi": 15, "don_da_chuyen": 10, "don_dang_giai_quyet": 5, "don_con_han": 5, "don_qua_han": 0,
              "vb_trien_khai": 7, "cbccvc_tong": 20, "cbccvc_vi_pham": "không phát sinh", "tthc_tiep_nhan": 500,
              "tthc_dung_han": 480, "tthc_qua_han": "không phát sinh", "lich_tiep_cong_khai": "Có"},
    # an invalid number (error) and an open warning: excluded
    "30004": {**SIGN, **SCORES_FULL, "tcd_dinh_ky_luot": 20, "tcd_dinh_ky_nguoi": 20, "tcd_thuong_xuyen_luot": 5,
              "tcd_thuong_xuyen_nguoi": 5, "vb_trien_khai": "mười hai", "cbccvc_tong": 18},
    # late (after the deadline), two "Dân vận khéo" models
    "30007": {**SIGN, **SCORES_KHA, "tcd_dinh_ky_luot": 48, "tcd_dinh_ky_nguoi": 50, "vb_trien_khai": "không phát sinh",
              "cbccvc_tong": 15, "tthc_tiep_nhan": 80, "tthc_dung_han": 80, "tthc_qua_han": 0, "dvk_so_mo_hinh": 2,
              "lich_tiep_cong_khai": "Có", "nd_2_6_dan_van_kheo": "Hai mô hình “Dân vận khéo”.\nMô hình thứ hai mới."},
}
MODELS = {
    "TN-VP": SEED_MODELS,
    "30007": [{"ten_mo_hinh": "Tuyến đường hoa nông thôn mới", "linh_vuc": "Kinh tế", "cap_cong_nhan": "Cấp xã"},
              {"ten_mo_hinh": "Tổ hòa giải ở cơ sở", "linh_vuc": "Xây dựng hệ thống chính trị",
               "cap_cong_nhan": "Chưa công nhận"}],
}
JUSTIFY = {"TN-TNMT": {"don_qua_han": "Hai đơn phức tạp đang chờ kết quả đo đạc địa chính."}}
RECEIVED = {"TN-VP": 1, "TN-NV": 2, "TN-TP": 3, "TN-TNMT": 4, "30001": 5, "30004": 8, "30007": 12}  # day of Dec 2020


def _as_text(path: Path, names: list[str]) -> None:
    """Store typed text that starts with "=" as text, as Excel does when a cell is formatted as text."""
    wb = openpyxl.load_workbook(path)
    for name in names:
        sheet, coord = next(iter(wb.defined_names[name].destinations))
        cell = wb[sheet][coord.replace("$", "")]
        cell.data_type = "s"
    wb.save(path)


@pytest.fixture(scope="module")
def cycle(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    base = tmp_path_factory.mktemp("summary")
    ws = init_workspace(base / "ws", issue_date=dt.date(2020, 11, 2))
    generated = generate(ws, list(UNITS))
    inbox = base / "inbox"
    inbox.mkdir()
    for f in generated.files:
        out = inbox / f.path.name
        fill_template(f.path, out, UNITS[f.unit_code], {"dvk_mo_hinh": MODELS.get(f.unit_code, [])},
                      JUSTIFY.get(f.unit_code))
        if f.unit_code == "TN-VP":
            _as_text(out, ["nd_1_lanh_dao"])
        stamp = dt.datetime(2020, 12, RECEIVED[f.unit_code], 9, 30).timestamp()
        os.utime(out, (stamp, stamp))
    collect(ws, [inbox], workers=1)
    result = compile_summary(ws)
    return {"ws": ws, "result": result, "base": base}


# ---------------------------------------------------------------------- independent expectations (pandas)

def _ledger_frame(ledger: Path) -> pd.DataFrame:
    """unit_code, field, state, num of the current submissions, plus the latest check's error count."""
    with sqlite3.connect(ledger) as conn:
        values = pd.read_sql(
            "SELECT s.id AS submission_id, s.unit_code, v.field, v.state, v.num FROM current c "
            "JOIN submissions s ON s.id = c.submission_id JOIN submission_values v ON v.submission_id = s.id "
            "WHERE c.form_id = ? AND c.year = ? AND v.row = 0", conn, params=(FORM_ID, YEAR))
        checks = pd.read_sql("SELECT id, submission_id, errors FROM checks", conn)
    latest = checks.sort_values("id").groupby("submission_id").tail(1)[["submission_id", "errors"]]
    return values.merge(latest, on="submission_id", how="left")


def _expected_total(frame: pd.DataFrame, field: str, units: set[str] | None = None) -> Any:
    rows = frame[(frame.field == field) & (frame.errors == 0)]
    if units is not None:
        rows = rows[rows.unit_code.isin(units)]
    numbers = rows[rows.state == "value"].num
    if len(numbers):
        return numbers.sum()
    return NA_TEXT if (rows.state == "na").any() else None


def _sheet_frame(path: Path, sheet: str) -> pd.DataFrame:
    return pd.read_excel(path, sheet_name=sheet, header=None, engine="openpyxl")


def _locate(frame: pd.DataFrame) -> tuple[int, dict[str, int], dict[str, int]]:
    """(field-id header row, field id → column, row label → row) of the indicator sheet."""
    id_row = next(i for i in range(len(frame)) if "vb_trien_khai" in set(frame.iloc[i].astype(str)))
    cols = {str(v): j for j, v in enumerate(frame.iloc[id_row]) if isinstance(v, str) and re.fullmatch(r"[a-z0-9_]+", v)}
    rows = {str(frame.iat[i, 1]): i for i in range(id_row + 1, len(frame)) if isinstance(frame.iat[i, 1], str)}
    return id_row, cols, rows


def _same(a: Any, b: Any) -> bool:
    blank = (None, "")
    if (a in blank or (isinstance(a, float) and pd.isna(a))) and (b in blank or (isinstance(b, float) and pd.isna(b))):
        return True
    if isinstance(a, int | float) and isinstance(b, int | float) and not isinstance(a, bool):
        return b == pytest.approx(a, rel=1e-9, abs=1e-9)
    return a == b


# ---------------------------------------------------------------------- totals and honesty

def test_totals_equal_the_ledger_sums_for_readers_that_do_not_recalculate(cycle):
    ws, result = cycle["ws"], cycle["result"]
    form, register = ws.load_form(), ws.load_register()
    ledger = _ledger_frame(ws.ledger_path)
    frame = _sheet_frame(result.path, "Chỉ tiêu")  # pandas reads the cached values only
    _id_row, cols, rows = _locate(frame)
    grand = next(r for label, r in rows.items() if label.startswith("TỔNG CỘNG"))
    blocks = {u.block for u in register}
    block_rows = {b: next(r for label, r in rows.items() if label.endswith(b)) for b in blocks}
    summable = [f for f in cols if f in form.fields and form.fields[f].summable and form.fields[f].kind in ("count", "decimal")]
    assert {"vb_trien_khai", "cbccvc_tong", "tthc_tiep_nhan", "tcd_thuong_xuyen_luot"} <= set(summable)
    for f in summable:
        assert _same(_expected_total(ledger, f), frame.iat[grand, cols[f]]), f
        for block, r in block_rows.items():
            members = {u.code for u in register if u.block == block}
            assert _same(_expected_total(ledger, f, members), frame.iat[r, cols[f]]), (f, block)
    # spot values: clean units only (TN-NV's 100 and 30004's invalid value are out)
    assert frame.iat[grand, cols["vb_trien_khai"]] == 12 + 3 + 5 + 7
    assert frame.iat[grand, cols["cbccvc_tong"]] == 25 + 12 + 30 + 20 + 15


def test_ratios_are_recomputed_from_counts_never_averaged(cycle):
    ws, result = cycle["ws"], cycle["result"]
    ledger = _ledger_frame(ws.ledger_path)
    frame = _sheet_frame(result.path, "Chỉ tiêu")
    _id_row, cols, rows = _locate(frame)
    grand = next(r for label, r in rows.items() if label.startswith("TỔNG CỘNG"))
    wide = ledger[ledger.errors == 0].pivot_table(index="unit_code", columns="field", values="num", aggfunc="first")
    parts = wide[["tthc_dung_han", "tthc_qua_han"]].dropna()
    parts = parts[(parts.tthc_dung_han + parts.tthc_qua_han) > 0]
    expected = parts.tthc_dung_han.sum() / (parts.tthc_dung_han + parts.tthc_qua_han).sum()
    assert frame.iat[grand, cols["ty_le_tthc_dung_han"]] == pytest.approx(expected)
    per_unit = (parts.tthc_dung_han / (parts.tthc_dung_han + parts.tthc_qua_han)).mean()
    assert expected != pytest.approx(per_unit)  # the naive average would be another number
    # the percentage a unit typed (ty_le_hai_long) is never summed or averaged
    assert frame.iat[grand, cols["ty_le_hai_long"]] == "—"


def test_csv_copy_has_the_same_totals_and_a_bom(cycle):
    result = cycle["result"]
    raw = result.csv_path.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")
    table = pd.read_csv(result.csv_path, encoding="utf-8-sig", dtype=str, keep_default_na=False)
    frame = _sheet_frame(result.path, "Chỉ tiêu")
    _id_row, cols, rows = _locate(frame)
    grand = next(r for label, r in rows.items() if label.startswith("TỔNG CỘNG"))
    total = table[table.loai_dong == "tong_cong"].iloc[0]
    for f in ("vb_trien_khai", "cbccvc_tong", "tcd_thuong_xuyen_luot", "don_tiep_nhan"):
        xlsx = frame.iat[grand, cols[f]]
        assert total[f] == (str(int(xlsx)) if isinstance(xlsx, int | float) else str(xlsx)), f
    vp = table[table.ma_don_vi == "TN-VP"].iloc[0]
    assert vp.tinh_trang == "Không lỗi" and vp.tinh_vao_tong == "Có"


def test_missing_errors_na_and_blank_are_shown_distinctly(cycle):
    ws, result = cycle["ws"], cycle["result"]
    form, register = ws.load_form(), ws.load_register()
    frame = _sheet_frame(result.path, "Chỉ tiêu")
    _id_row, cols, rows = _locate(frame)
    by_code = {str(frame.iat[r, 2]): r for r in rows.values()}
    numeric = [c for f, c in cols.items() if f in form.fields]
    # not returned: "Chưa nộp", not counted, and no zeros
    missing = by_code["TN-TCKH"]
    assert frame.iat[missing, 3] == "Chưa nộp" and frame.iat[missing, 4] == "Không"
    assert all(pd.isna(frame.iat[missing, c]) for c in numeric)
    # with errors: its figures are shown but not counted
    nv = by_code["TN-NV"]
    assert frame.iat[nv, 3] == "Còn lỗi" and frame.iat[nv, 4] == "Không"
    assert frame.iat[nv, cols["vb_trien_khai"]] == 100
    # "không phát sinh" is text, blank is empty, 0 is 0
    assert frame.iat[by_code["TN-TP"], cols["tcd_thuong_xuyen_luot"]] == NA_TEXT
    assert pd.isna(frame.iat[by_code["TN-TP"], cols["tthc_tiep_nhan"]])
    assert frame.iat[by_code["30007"], cols["tthc_qua_han"]] == 0
    # invalid: blank cell, and the reader's finding is listed
    assert pd.isna(frame.iat[by_code["30004"], cols["vb_trien_khai"]])
    findings = _sheet_frame(result.path, "Lỗi và cảnh báo")
    assert ((findings[2] == "30004") & findings[9].astype(str).str.contains("mười hai")).any()
    # non-summable counts (double counting across units): "—" in every total row
    totals = [r for label, r in rows.items() if label.startswith(("TỔNG CỘNG", "I.", "II."))]
    assert all(frame.iat[r, cols["don_tiep_nhan"]] == "—" for r in totals)
    assert result.units_included == 5 and result.units_excluded_with_errors == 2
    assert result.missing == len(register) - len(UNITS) and result.late == 1


def test_findings_sheet_lists_open_errors_warnings_and_accepted_justifications(cycle):
    frame = _sheet_frame(cycle["result"].path, "Lỗi và cảnh báo")
    body = frame.iloc[4:]
    nv = body[body[2] == "TN-NV"]
    assert (nv[3] == "Lỗi").any() and nv[8].astype(str).str.contains("don_theo_noi_dung").any()
    tnmt = body[body[2] == "TN-TNMT"]
    accepted = tnmt[tnmt[4] == "Đã giải trình"]
    assert len(accepted) == 1 and "đo đạc" in accepted.iloc[0][10]
    assert ((body[2] == "30004") & (body[3] == "Cảnh báo") & (body[4] == "Chưa xử lý")).any()
    assert not (body[3] == "Thông tin").any()


def test_cover_scores_models_and_include_with_errors(cycle, tmp_path):
    ws, result = cycle["ws"], cycle["result"]
    wb = openpyxl.load_workbook(result.path, data_only=True)
    assert wb.sheetnames[:3] == ["Bìa", "Chỉ tiêu", "Biểu đồ"]
    assert all(len(n) <= 31 for n in wb.sheetnames)
    cover = {str(r[1].value).strip(): r[2].value for r in wb["Bìa"].iter_rows() if r[1].value}
    assert cover["Số đơn vị phải báo cáo"] == 25 and cover["Chưa nộp"] == 18 and cover["Nộp muộn (sau hạn)"] == 1
    assert cover["Được tính vào số liệu tổng hợp"] == 5
    assert cover["Kỳ báo cáo (thời gian chốt số liệu)"] == "Từ ngày 15/12/2019 đến ngày 14/12/2020"
    assert cover["Mã định danh (SHA-256)"] == ws.load_form().definition_hash
    assert cover["Số liệu tính đến"] == "09:30 ngày 12/12/2020"  # the newest submission, not now()
    scores = {r[2].value: [c.value for c in r] for r in wb["Chấm điểm"].iter_rows() if r[2].value}
    assert scores["TN-VP"][12:14] == [93, "Tốt"] and scores["30001"][12:14] == [80, "Khá"]
    assert scores["TN-TNMT"][12] == 45.5 and scores["TN-TCKH"][12] in (None, "")
    models = [r[5].value for r in wb["Mô hình Dân vận khéo"].iter_rows(min_row=5) if r[2].value in ("TN-VP", "30007")]
    assert len(models) == 3 and "Tổ hòa giải ở cơ sở" in models
    sheets = openpyxl.load_workbook(result.path)
    assert sheets["Chấm điểm"].freeze_panes and sheets["Chỉ tiêu"].print_title_rows
    # with errors included: TN-NV now counts, and is marked
    widened = compile_summary(ws, tmp_path / "voi-loi.xlsx", include_with_errors=True)
    assert widened.units_included == 7 and widened.units_excluded_with_errors == 0
    frame = _sheet_frame(widened.path, "Chỉ tiêu")
    _id_row, cols, rows = _locate(frame)
    grand = next(r for label, r in rows.items() if label.startswith("TỔNG CỘNG"))
    assert frame.iat[grand, cols["vb_trien_khai"]] == 12 + 3 + 5 + 7 + 100
    nv = next(r for r in rows.values() if frame.iat[r, 2] == "TN-NV")
    assert frame.iat[nv, 3] == "Còn lỗi" and frame.iat[nv, 4] == "Có"


# ---------------------------------------------------------------------- safety and determinism

def _sheet_xml(path: Path) -> dict[str, etree._Element]:
    """Sheet name → parsed worksheet XML."""
    with zipfile.ZipFile(path) as zf:
        book = etree.fromstring(zf.read("xl/workbook.xml"))
        rels = etree.fromstring(zf.read("xl/_rels/workbook.xml.rels"))
        targets = {r.get("Id"): r.get("Target") for r in rels}
        rid = "{http://schemas.openxmlformats.org/officeDocument/2006/relationships}id"
        return {s.get("name"): etree.fromstring(zf.read("xl/" + targets[s.get(rid)]))
                for s in book.find("m:sheets", NS)}


def test_injection_strings_stay_strings_at_xml_level(cycle):
    path = cycle["result"].path
    xml = _sheet_xml(path)
    formulas = [f.text or "" for tree in xml.values() for f in tree.iterfind(".//m:f", NS)]
    assert formulas and not any(("HYPERLINK" in f or "cmd" in f or "@SUM" in f) for f in formulas)
    wb = openpyxl.load_workbook(path)  # formulas, not values
    found = {}
    for ws in wb.worksheets:
        for row in ws.iter_rows():
            for cell in row:
                if isinstance(cell.value, str) and cell.value in INJECTIONS.values():
                    found[cell.value] = cell.data_type
    assert found == dict.fromkeys(INJECTIONS.values(), "s")
    # no hyperlink object was made from the unit's text (only the cover's internal sheet links)
    assert all(h.location and not h.target for ws in wb.worksheets for h in ws._hyperlinks)


def test_csv_cells_that_start_like_formulas_are_prefixed():
    assert csv_cell("=1+1") == "'=1+1" and csv_cell("+cmd") == "'+cmd" and csv_cell("@SUM(1)") == "'@SUM(1)"
    assert csv_cell("-2+3") == "'-2+3" and csv_cell(-5) == "-5" and csv_cell("Hòa") == "Hòa" and csv_cell(None) == ""


def test_same_input_gives_the_same_bytes(cycle, tmp_path):
    ws, first = cycle["ws"], cycle["result"]
    again = compile_summary(ws, tmp_path / "lai.xlsx")
    assert again.path.read_bytes() == first.path.read_bytes()
    assert again.csv_path.read_bytes() == first.csv_path.read_bytes()
    assert not list(first.path.parent.glob(".*.tmp"))  # written through a temporary file, then renamed
    with pytest.raises(ConfigError, match=r"\.xlsx"):
        compile_summary(ws, tmp_path / "tong-hop.csv")  # the CSV would overwrite the workbook


# ---------------------------------------------------------------------- pure build_summary cases

def _value(field: str, v: Any) -> Value:
    if v is NA:
        return Value(field, ValueState.NA)
    if v is None:
        return Value(field, ValueState.BLANK)
    return Value(field, ValueState.VALUE, v)


def _submission(sid: int, unit: str, values: dict[str, Any], errors: int = 0, day: int = 1) -> Submission:
    data = SubmissionData(unit, FORM_ID, "2020.1", "x", YEAR, {k: _value(k, v) for k, v in values.items()})
    return Submission(sid, unit, dt.datetime(2020, 12, day, 8), "tệp", "0" * 64, "current", data, errors=errors)


def _units(*specs: tuple[str, str, str]) -> Register:
    return Register(tuple(Unit(code, name, kind, i) for i, (code, name, kind) in enumerate(specs, start=1)), "mem")


def test_hostile_text_is_cleaned_and_truncated_not_crashing(form, tmp_path):
    register = _units(("A", "=HYPERLINK(\"x\")", "phong"), ("B", "Xã Bình", "xa"))
    long_text = "Dòng đầu\x00\x07\x1b tiếp\r\n" + "chữ " * 10_000  # ~40,000 characters
    subs = [_submission(1, "A", {"nd_1_lanh_dao": long_text, "vb_trien_khai": 3}),
            _submission(2, "B", {"nd_1_lanh_dao": "=cmd|' /C calc'!A0", "vb_trien_khai": NA})]
    statuses = [UnitStatus(u, "accepted", s.received_at, 1, s.id, True) for u, s in zip(register, subs, strict=True)]
    data = build_summary(form, Office(name="Phòng Nội vụ"), register, YEAR, dt.date(2020, 12, 10), subs, {}, statuses,
                         prev=None, include_with_errors=False, as_of=dt.datetime(2020, 12, 2))
    path = tmp_path / "hostile.xlsx"
    path.write_bytes(data)
    if True:
        wb = openpyxl.load_workbook(path)
        rows = [r for r in wb["Mục I.1"].iter_rows(min_row=5) if str(r[1].value).startswith('=HYPERLINK("x")')]
        texts = [r[2].value for r in rows]  # a long text continues on "(tiếp)" rows
        joined = "\n".join(texts)
        assert len(rows) > 3 and rows[1][1].value == '=HYPERLINK("x") (tiếp)' and rows[1][1].data_type == "s"
        assert joined.startswith("Dòng đầu tiếp\nchữ chữ") and "\x00" not in joined and "\x1b" not in joined
        assert texts[-1].endswith(TRUNCATED) and len(joined) <= 32_767 + len(texts)
        names = [c.value for r in wb["Chỉ tiêu"].iter_rows() for c in r if c.value == '=HYPERLINK("x")']
        assert names and all(c.data_type == "s" for r in wb["Chỉ tiêu"].iter_rows() for c in r if c.value in names)
        grand = next(r for r in wb["Chỉ tiêu"].iter_rows() if str(r[1].value).startswith("TỔNG CỘNG"))
        assert isinstance(grand[5].value, str) and grand[5].value.startswith("=IF(")  # a live formula
    model = build_model(form, Office(), register, YEAR, dt.date(2020, 12, 10), subs, {}, statuses, prev=None,
                        include_with_errors=False, as_of=dt.datetime(2020, 12, 2))
    table = render_csv(model).decode("utf-8-sig")
    assert "'=HYPERLINK" in table and ",=" not in table


def test_a_cell_longer_than_excel_allows_is_cut_with_a_marker(form):
    from danvan_xl.summary import safe_text

    text = safe_text("x" * 40_000)
    assert len(text) == 32_767 and text.endswith(TRUNCATED)
    emoji = safe_text("😀" * 20_000)  # two UTF-16 units each: Excel counts those
    assert len(emoji.encode("utf-16-le")) // 2 <= 32_767 and emoji.endswith(TRUNCATED)


def test_xlsxwriter_return_codes_are_checked():
    import io

    import xlsxwriter

    wb = xlsxwriter.Workbook(io.BytesIO(), {"in_memory": True})
    sheet = Sheet(wb.add_worksheet("S"))
    with pytest.raises(TemplateBuildError, match="S!"):
        sheet.num(1_048_576, 0, 1)  # beyond Excel's last row: xlsxwriter returns -1 instead of raising
    wb.close()


def test_conflicting_files_keep_a_unit_out_of_the_totals(form):
    register = _units(("A", "Phòng A", "phong"), ("B", "Phòng B", "phong"))
    subs = [_submission(1, "A", {"vb_trien_khai": 10}), _submission(2, "B", {"vb_trien_khai": 20})]
    statuses = [UnitStatus(register.units[0], "accepted", subs[0].received_at, 1, 1, True),
                UnitStatus(register.units[1], "conflict", subs[1].received_at, 3, 2, None)]
    args = (form, Office(), register, YEAR, dt.date(2020, 12, 10), subs, {}, statuses)
    model = build_model(*args, prev=None, include_with_errors=False, as_of=dt.datetime(2020, 12, 2))
    assert [(r.unit.code, r.mark(), r.included) for r in model.rows] == [("A", "Không lỗi", True), ("B", "Xung đột", False)]
    assert model.counts()["conflict"] == 1 and model.counts()["excluded_with_errors"] == 1
    widened = build_model(*args, prev=None, include_with_errors=True, as_of=dt.datetime(2020, 12, 2))
    assert all(r.included for r in widened.rows)


def test_all_na_total_and_comparison_with_last_year(form, tmp_path):
    register = _units(("A", "Phòng A", "phong"), ("B", "Phòng B", "phong"), ("C", "Xã C", "xa"))
    subs = [_submission(1, "A", {"vb_trien_khai": 10, "hn_quan_triet": NA, "tthc_dung_han": 9, "tthc_qua_han": 1}),
            _submission(2, "B", {"vb_trien_khai": 20, "hn_quan_triet": NA, "tthc_dung_han": 1, "tthc_qua_han": 1}),
            _submission(3, "C", {"vb_trien_khai": 5}, errors=1)]
    statuses = [UnitStatus(register.units[0], "accepted", subs[0].received_at, 1, 1, True),
                UnitStatus(register.units[1], "accepted", subs[1].received_at, 1, 2, True),
                UnitStatus(register.units[2], "with_errors", subs[2].received_at, 1, 3, True, errors=1)]
    prev = {"A": {"vb_trien_khai": 8, "tthc_dung_han": 5, "tthc_qua_han": 5}, "B": {"vb_trien_khai": None},
            "C": {"vb_trien_khai": 100}}
    findings = {3: [Finding("rule-violated", Severity.ERROR, "Sai", sheet="ChiDao", cell="D9", unit="C")]}
    data = build_summary(form, Office(name="PNV"), register, YEAR, dt.date(2020, 12, 10), subs, findings, statuses,
                         prev=prev, include_with_errors=False, as_of=dt.datetime(2020, 12, 3))
    path = tmp_path / "s.xlsx"
    path.write_bytes(data)
    frame = _sheet_frame(path, "Chỉ tiêu")
    _id_row, cols, rows = _locate(frame)
    grand = next(r for label, r in rows.items() if label.startswith("TỔNG CỘNG"))
    assert frame.iat[grand, cols["vb_trien_khai"]] == 30  # C has errors
    assert frame.iat[grand, cols["hn_quan_triet"]] == NA_TEXT  # everyone said không phát sinh
    assert pd.isna(frame.iat[grand, cols["kiem_tra_dv"]])  # nobody reported: blank, not 0
    assert frame.iat[grand, cols["ty_le_tthc_dung_han"]] == pytest.approx(10 / 12)
    compare = _sheet_frame(path, "So với năm 2019")
    row = compare[compare[2] == form.fields["vb_trien_khai"].label].iloc[0]
    assert list(row[4:9]) == [8, 10, 2, 0.25, 1]  # only A has both years; C is excluded
    ratio = compare[compare[2].astype(str).str.startswith("Tỷ lệ hồ sơ")].iloc[0]
    assert ratio[4] == pytest.approx(0.5) and ratio[5] == pytest.approx(0.9) and ratio[6] == pytest.approx(0.4)


# ---------------------------------------------------------------------- LibreOffice: recalculation and PDF

def _always_recalculate(outdir: Path) -> None:
    """A LibreOffice profile that recalculates every formula on load (its default keeps cached values)."""
    user = outdir / ".lo-profile" / "user"
    user.mkdir(parents=True, exist_ok=True)
    (user / "registrymodifications.xcu").write_text(
        '<?xml version="1.0" encoding="UTF-8"?>\n<oor:items xmlns:oor="http://openoffice.org/2001/registry" '
        'xmlns:xs="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">\n'
        '<item oor:path="/org.openoffice.Office.Calc/Formula/Load"><prop oor:name="OOXMLRecalcMode" oor:op="fuse">'
        "<value>0</value></prop></item>\n</oor:items>\n", encoding="utf-8")


@pytest.fixture(scope="module")
def lo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One LibreOffice profile for both conversions (creating a profile costs several seconds)."""
    path = tmp_path_factory.mktemp("lo")
    _always_recalculate(path)
    return path


@pytest.mark.libreoffice
def test_cached_values_equal_libreoffice_recalculation(cycle, soffice, lo_dir):
    path = cycle["result"].path
    (recalculated,) = soffice_convert(soffice, path, "xlsx", lo_dir)
    ours_f = openpyxl.load_workbook(path)
    ours = openpyxl.load_workbook(path, data_only=True)
    theirs = openpyxl.load_workbook(recalculated, data_only=True)
    checked = 0
    for ws in ours_f.worksheets:
        for row in ws.iter_rows():
            for cell in row:
                if cell.data_type != "f":
                    continue
                cached = ours[ws.title][cell.coordinate].value
                fresh = theirs[ws.title][cell.coordinate].value
                assert _same(cached, fresh), (ws.title, cell.coordinate, cell.value, cached, fresh)
                checked += 1
    assert checked > 150


@pytest.mark.libreoffice
def test_summary_converts_to_pdf(cycle, soffice, lo_dir):
    (pdf,) = soffice_convert(soffice, cycle["result"].path, "pdf", lo_dir)
    data = pdf.read_bytes()
    assert data.startswith(b"%PDF") and len(data) > 20_000
    pages = len(re.findall(rb"/Type\s*/Page[^s]", data))
    assert pages >= 10
