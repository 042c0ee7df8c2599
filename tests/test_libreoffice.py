"""Templates open cleanly in a real spreadsheet program: LibreOffice converts, keeps and computes."""

from __future__ import annotations

import openpyxl
import pytest
from helpers import SEED_MODELS, SEED_VALUES, fill_template, soffice_convert

from danvan_xl.template_writer import build_template

pytestmark = pytest.mark.libreoffice


@pytest.fixture(scope="module")
def template(tmp_path_factory, form, register, ctx):
    path = tmp_path_factory.mktemp("tpl") / "2020_TN-VP.xlsx"
    path.write_bytes(build_template(form, register.get("TN-VP"), ctx))
    return path


def test_template_converts_to_pdf_and_xlsx(soffice, template, tmp_path):
    pdf = soffice_convert(soffice, template, "pdf", tmp_path / "pdf")[0]
    assert pdf.stat().st_size > 10_000 and pdf.read_bytes().startswith(b"%PDF")
    out = soffice_convert(soffice, template, "xlsx", tmp_path / "xlsx")[0]
    wb = openpyxl.load_workbook(out)
    assert "don_tiep_nhan" in wb.defined_names and "ds_linh_vuc_dvk" in wb.defined_names
    assert wb["_meta"].sheet_state in ("hidden", "veryHidden")  # LibreOffice turns veryHidden into hidden
    assert {r[0].value: r[1].value for r in wb["_meta"].iter_rows(max_col=2)}["unit_code"] == "TN-VP"
    assert len(wb["TiepDan"].data_validations.dataValidation) > 10


def test_live_checks_compute_in_libreoffice(soffice, template, tmp_path, form):
    values = dict(SEED_VALUES, don_khac=50)  # topics now add up to 180, not 182
    filled = fill_template(template, tmp_path / "filled.xlsx", values, {"dvk_mo_hinh": SEED_MODELS})
    out = soffice_convert(soffice, filled, "xlsx", tmp_path / "lo")[0]
    wb = openpyxl.load_workbook(out, data_only=True)
    ws = wb["KiemTra"]
    status = {ws.cell(r, 1).value: ws.cell(r, 4).value for r in range(7, 7 + len(form.rules))}
    assert status["don_theo_noi_dung"] == "Chưa đạt"
    assert status["don_theo_loai"] == "Đạt" and status["don_xu_ly"] == "Đạt"
    assert status["dvk_so_mo_hinh"] == "Đạt"
    assert status["tcd_thuong_xuyen_nguoi"] == "Chưa đủ số liệu"  # the seed has no người count
    assert ws["D4"].value == 1  # one error-level rule fails
