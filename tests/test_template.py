"""Generated templates (design.md §3.3), inspected with openpyxl as another program would."""

from __future__ import annotations

import io
import zipfile

import openpyxl
import pytest
from helpers import SEED_MODELS, SEED_VALUES, fill_template
from openpyxl.utils.cell import range_boundaries

from danvan_xl.layout import build_layout
from danvan_xl.template_writer import build_template, template_filename
from danvan_xl.vocabulary import Kind


@pytest.fixture(scope="module")
def vp_bytes(form, register, ctx) -> bytes:
    return build_template(form, register.get("TN-VP"), ctx)


@pytest.fixture(scope="module")
def wb(vp_bytes):
    return openpyxl.load_workbook(io.BytesIO(vp_bytes))


def _validations(ws):
    out = []
    for dv in ws.data_validations.dataValidation:
        for rng in str(dv.sqref).split():
            out.append((range_boundaries(rng), dv))
    return out


def _covering(ws, coord: str):
    cell = ws[coord]
    for (c1, r1, c2, r2), dv in _validations(ws):
        if c1 <= cell.column <= c2 and r1 <= cell.row <= r2:
            return dv
    return None


def test_every_scalar_field_has_a_defined_name_on_an_unlocked_validated_cell(wb, form):
    problems = []
    for f in form.scalar_fields():
        if f.id not in wb.defined_names:
            problems.append(f"{f.id}: no defined name")
            continue
        sheet, coord = next(iter(wb.defined_names[f.id].destinations))
        cell = wb[sheet][coord.replace("$", "")]
        if f.is_input:
            if cell.protection.locked:
                problems.append(f"{f.id}: input cell {sheet}!{coord} is locked")
            dv = _covering(wb[sheet], coord.replace("$", ""))
            if dv is None:
                problems.append(f"{f.id}: no data validation")
            elif not (dv.prompt and dv.promptTitle and dv.error and dv.errorStyle in (None, "stop") and dv.showErrorMessage):
                problems.append(f"{f.id}: validation lacks Vietnamese input message / stop alert")
        elif not cell.protection.locked:
            problems.append(f"{f.id}: pre-filled/computed cell is not locked")
    assert problems == []


def test_validation_texts_are_vietnamese_and_within_excel_limits(wb):
    for ws in wb.worksheets:
        for _, dv in _validations(ws):
            assert len(dv.promptTitle or "") <= 32 and len(dv.prompt or "") <= 255
            assert len(dv.errorTitle or "") <= 32 and len(dv.error or "") <= 255
    dv = _covering(wb["TiepDan"], build_layout_cell(wb, "don_tiep_nhan"))
    assert "không phát sinh" in dv.prompt and dv.type == "custom"


def build_layout_cell(wb, name):
    return next(iter(wb.defined_names[name].destinations))[1].replace("$", "")


def test_list_validations_resolve_to_the_hidden_lists_sheet(wb, form):
    assert wb["_lists"].sheet_state == "hidden"
    lists = []
    for ws in wb.worksheets:
        for _, dv in _validations(ws):
            if dv.type == "list":
                lists.append(dv.formula1)
                name = dv.formula1.lstrip("=")
                assert name in wb.defined_names, name
                sheet, _ = next(iter(wb.defined_names[name].destinations))
                assert sheet == "_lists"
                assert len(dv.formula1) < 255
    assert "ds_linh_vuc_dvk" in lists and "ds_cap_cong_nhan" in lists and "ds_co_khong" in lists
    sheet, rng = next(iter(wb.defined_names["ds_linh_vuc_dvk"].destinations))
    values = [c.value for row in wb[sheet][rng.replace("$", "")] for c in row]
    assert values == list(form.choices["linh_vuc_dvk"])


def test_table_rows_are_unlocked_with_dropdowns(wb, form):
    layout = build_layout(form)
    table = layout.tables["dvk_mo_hinh"]
    ws = wb[table.sheet]
    for r in range(table.field.rows):
        for c, col in enumerate(table.field.columns):
            cell = table.cell(r, c)
            assert not ws[cell.a1].protection.locked
            dv = _covering(ws, cell.a1)
            assert dv is not None
            if col.kind == Kind.CHOICE:
                assert dv.type == "list"


def test_sheets_are_protected_without_password(wb):
    for ws in wb.worksheets:
        assert ws.protection.sheet, ws.title
        assert not ws.protection.password


def test_identity_is_in_a_very_hidden_sheet_and_document_properties(wb, form):
    meta = wb["_meta"]
    assert meta.sheet_state == "veryHidden"
    data = {r[0].value: r[1].value for r in meta.iter_rows(max_col=2)}
    assert data["form_id"] == form.id and data["form_version"] == form.version
    assert data["definition_hash"] == form.definition_hash
    assert data["unit_code"] == "TN-VP" and data["year"] == "2020"
    assert data["issued_at"] == "2020-11-02T08:00:00"
    props = {p.name: p.value for p in wb.custom_doc_props}
    assert props["danvan_form_id"] == form.id and props["danvan_unit_code"] == "TN-VP"
    assert props["danvan_definition_hash"] == form.definition_hash and props["danvan_year"] == "2020"


def test_unit_name_and_year_are_prefilled_and_locked(wb):
    for name, expected in (("ten_don_vi", "Văn phòng Hội đồng nhân dân và Ủy ban nhân dân huyện Tam Nông"),
                           ("nam_bao_cao", 2020), ("ma_don_vi", "TN-VP")):
        sheet, coord = next(iter(wb.defined_names[name].destinations))
        cell = wb[sheet][coord.replace("$", "")]
        assert cell.value == expected and cell.protection.locked


def test_print_setup_and_font(wb):
    for ws in wb.worksheets:
        if ws.sheet_state != "visible":
            continue
        assert ws.page_setup.paperSize == 9, ws.title  # A4
        assert ws.sheet_properties.pageSetUpPr.fitToPage and ws.page_setup.fitToWidth in (None, 1)
        assert ws.page_setup.fitToHeight == 0  # fit the width, as many pages down as needed
    fonts = {c.font.name for ws in wb.worksheets for row in ws.iter_rows() for c in row if c.value is not None}
    assert fonts == {"Times New Roman"}


def test_instructions_sheet_comes_first_in_vietnamese(wb):
    first = wb.worksheets[0]
    assert first.title == "HuongDan"
    texts = " ".join(str(c.value) for row in first.iter_rows() for c in row if c.value)
    assert "HƯỚNG DẪN ĐIỀN BIỂU MẪU" in texts and "không phát sinh" in texts and "Hạn gửi" in texts


def test_generation_is_deterministic(form, register, ctx, vp_bytes):
    again = build_template(form, register.get("TN-VP"), ctx)
    assert again == vp_bytes
    other = build_template(form, register.get("30025"), ctx)
    assert other != vp_bytes


def test_zip_has_no_volatile_timestamps(vp_bytes):
    with zipfile.ZipFile(io.BytesIO(vp_bytes)) as z:
        stamps = {i.date_time for i in z.infolist()}
    assert len(stamps) == 1


def test_file_names_are_ascii_and_code_based(form, register):
    names = [template_filename(form, u, 2020) for u in register]
    assert names[0] == "2020_TN-VP_nam-dan-van-chinh-quyen.xlsx"
    assert all(n.isascii() for n in names) and len(set(names)) == len(names)


def test_seed_numbers_filled_by_defined_names_round_trip(tmp_path, vp_bytes):
    template = tmp_path / "t.xlsx"
    template.write_bytes(vp_bytes)
    filled = fill_template(template, tmp_path / "f.xlsx", SEED_VALUES, {"dvk_mo_hinh": SEED_MODELS})
    wb = openpyxl.load_workbook(filled)
    for name, value in SEED_VALUES.items():
        sheet, coord = next(iter(wb.defined_names[name].destinations))
        assert wb[sheet][coord.replace("$", "")].value == value, name
    # the live checks and validations survive an openpyxl fill
    assert wb["KiemTra"].conditional_formatting is not None
    assert len(wb["TiepDan"].data_validations.dataValidation) > 10


def test_live_checks_are_laid_out_for_every_rule(wb, form):
    ws = wb["KiemTra"]
    ids = [ws.cell(r, 1).value for r in range(7, 7 + len(form.rules))]
    assert ids == [r.id for r in form.rules]
    assert str(ws["D7"].value).startswith("=")
    for rule in form.rules:
        assert f"vp_{rule.id}" in wb.defined_names
        if rule.justifiable:
            assert f"giai_trinh_{rule.id}" in wb.defined_names


def test_commune_template_marks_district_only_rules_and_vice_versa(form, register, ctx):
    wb = openpyxl.load_workbook(io.BytesIO(build_template(form, register.get("TN-VP"), ctx)))
    row = 7 + [r.id for r in form.rules].index("tcd_toi_thieu_xa")
    assert wb["KiemTra"].cell(row, 4).value == "Không áp dụng"
    wb = openpyxl.load_workbook(io.BytesIO(build_template(form, register.get("30025"), ctx)))
    assert str(wb["KiemTra"].cell(row, 4).value).startswith("=")


def test_custom_validation_formulas_refer_to_their_own_cell(wb):
    ws = wb["TiepDan"]
    coord = build_layout_cell(wb, "don_tiep_nhan")
    dv = _covering(ws, coord)
    assert f"ISNUMBER({coord})" in dv.formula1 and "A1" not in dv.formula1.replace(coord, "")


def test_stamped_templates_are_byte_identical_to_built_ones(form, register, ctx):
    from danvan_xl.template_stamp import Stamper

    stamper = Stamper(form, ctx)
    for unit in register:
        assert stamper.build(unit) == build_template(form, unit, ctx), unit.code


def test_units_with_unusual_names_take_the_ordinary_path(form, register, ctx):
    from dataclasses import replace

    from danvan_xl.template_stamp import Stamper

    stamper = Stamper(form, ctx)
    office_twin = replace(register.get("TN-NV"), name=ctx.office_name)  # same text as another cell
    odd = replace(register.get("TN-TP"), name="Phòng A & B <Tư pháp>")
    for unit in (office_twin, odd):
        assert stamper.build(unit) == build_template(form, unit, ctx)
    wb = openpyxl.load_workbook(io.BytesIO(stamper.build(odd)))
    assert wb["ThongTin"].oddFooter.left.text == "Phòng A && B <Tư pháp>"  # Excel prints "&&" as "&"
