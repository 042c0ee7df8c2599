"""Real LibreOffice re-saves (xlsx, ods, xls) collect with the same values as the original."""

from __future__ import annotations

import datetime as dt
import shutil

import pytest
from helpers import SEED_MODELS, SEED_VALUES, fill_template, soffice_convert

from danvan_xl.collect import collect
from danvan_xl.generate import generate
from danvan_xl.ledger import Ledger
from danvan_xl.vocabulary import ValueState
from danvan_xl.workspace import init_workspace

pytestmark = pytest.mark.libreoffice

VALUES = dict(SEED_VALUES, don_to_cao="không phát sinh", nd_1_lanh_dao="Dòng một\nDòng hai “trích dẫn” & <b>",
              ngay_bao_cao=dt.datetime(2020, 12, 9), ty_le_hai_long=88.46, dvk_kinh_phi=12.5, so_ky_hieu="05/BC-VP")


@pytest.fixture(scope="module")
def resaved(tmp_path_factory, soffice):
    """One filled workbook plus its LibreOffice re-saves, converted in a single soffice batch."""
    root = tmp_path_factory.mktemp("rt")
    ws = init_workspace(root / "ws", issue_date=dt.date(2020, 11, 2))
    generate(ws, ["TN-VP"])
    template = next(ws.templates_dir.glob("*.xlsx"))
    original = fill_template(template, root / "vp.xlsx", VALUES, {"dvk_mo_hinh": SEED_MODELS},
                             justifications={"don_qua_han": "Không có đơn quá hạn"})
    # Formula and error cells as a unit might leave them; LibreOffice computes their cached values.
    odd = fill_template(template, root / "odd.xlsx", dict(SEED_VALUES, don_khac="=50+2", don_moi_truong="=1/0"),
                        {"dvk_mo_hinh": SEED_MODELS})
    outputs = {}
    for fmt in ("xlsx", "ods", "xls"):
        outputs[fmt] = soffice_convert(soffice, [original, odd], fmt, root / fmt)
    return ws, original, outputs


def _values(ws, path):
    target = ws.root.parent / f"ws-{path.suffix[1:]}-{path.stem}"
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(ws.root, target, ignore=shutil.ignore_patterns("danvan.sqlite*", "archive"))
    from danvan_xl.workspace import load_workspace

    copy = load_workspace(target)
    result = collect(copy, [path])
    with Ledger.open_readonly(copy.ledger_path) as ledger:
        subs = ledger.current_submissions("nam-dan-van-chinh-quyen", 2020)
        findings = ledger.findings(subs[0].id) if subs else []
    return result, (subs[0] if subs else None), findings


@pytest.mark.parametrize("fmt", ["xlsx", "ods", "xls"])
def test_libreoffice_resave_collects_with_the_same_values(resaved, fmt):
    ws, original, outputs = resaved
    _, base, _ = _values(ws, original)
    result, sub, _ = _values(ws, outputs[fmt][0])
    out = result.outcomes[0]
    assert out.outcome == "accepted", out.message
    assert sub.file_format == fmt
    assert sub.data.plain() == base.data.plain()
    assert sub.data.rows("dvk_mo_hinh") == base.data.rows("dvk_mo_hinh")
    assert sub.data.justifications == base.data.justifications == {"don_qua_han": "Không có đơn quá hạn"}
    assert sub.data.values["don_to_cao"].state == ValueState.NA
    assert sub.data.plain()["ngay_bao_cao"] == dt.date(2020, 12, 9)
    assert any("lưu lại bằng chương trình khác" in n for n in out.notes)


def test_the_same_values_resaved_by_libreoffice_are_a_duplicate(resaved, tmp_path):
    ws, original, outputs = resaved
    target = tmp_path / "ws"
    shutil.copytree(ws.root, target, ignore=shutil.ignore_patterns("danvan.sqlite*", "archive"))
    from danvan_xl.workspace import load_workspace

    copy = load_workspace(target)
    collect(copy, [original])
    result = collect(copy, [outputs["ods"][0]])
    assert result.outcomes[0].outcome == "duplicate" and result.outcomes[0].code == "same-values"


def test_formulas_and_error_cells_typed_by_a_unit(resaved):
    ws, _, outputs = resaved
    result, sub, findings = _values(ws, outputs["xlsx"][1])
    by_code = {f.code: f for f in findings}
    assert by_code["formula-in-input"].field == "don_khac" and "=50+2" in by_code["formula-in-input"].message
    assert sub.data.plain()["don_khac"] == 52  # the computed value, with a warning
    assert by_code["excel-error"].field == "don_moi_truong" and "#DIV/0!" in by_code["excel-error"].message
    assert sub.data.values["don_moi_truong"].state == ValueState.INVALID  # never 0 or blank
    assert result.exit_code == 1
