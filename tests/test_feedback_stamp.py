"""Feedback workbooks stamped from a prototype (feedback_stamp) are the writer's bytes exactly."""

from __future__ import annotations

import datetime as dt
import io
import os
from dataclasses import replace

import openpyxl
import pytest
from helpers import SEED_MODELS, SEED_VALUES, fill_template

from danvan_xl.checks import run_check
from danvan_xl.collect import collect
from danvan_xl.feedback import feedback_parts
from danvan_xl.feedback_stamp import FeedbackStamper
from danvan_xl.generate import generate, template_context
from danvan_xl.ledger import Ledger
from danvan_xl.template_writer import Annotation, build_template
from danvan_xl.workspace import init_workspace, load_workspace

ODD = [
    "Nguye\u0302\u0303n Va\u0306n A",  # NFD
    "a\x01b\x1fc\x00d",  # control characters
    "<b>&amp; \"quote\" 'x' &lt;</b>",  # XML specials
    "  lề hai bên  ", " ", "\ttab đầu",
    "dài " * 9000,  # longer than a cell holds
    '=HYPERLINK("http://example.invalid","bấm")',
    "_x0041_ và _x005F_",  # Excel's own escape syntax
    "dòng 1\ndòng 2\r\n",
    "\ue010 \ue011 \ue020 1 \ue021",  # the placeholders' private-use characters
    "\ufffe\uffff", "🙂 ngoài BMP",
]


@pytest.fixture(scope="module")
def checked(tmp_path_factory):
    root = tmp_path_factory.mktemp("fbstamp")
    ws = init_workspace(root / "ws", issue_date=dt.date(2020, 11, 2))
    codes = [u.code for u in ws.load_register()][:10]
    generate(ws, codes)
    (root / "in").mkdir()
    files = []
    for i, code in enumerate(codes):
        template = next(ws.templates_dir.glob(f"2020_{code}_*.xlsx"))
        values = dict(SEED_VALUES, don_khac=50 + i, nguoi_ky_ho_ten=f"Người ký {i}")
        if i % 3 == 1:
            values["don_moi_truong"] = "nhiều"
        files.append(fill_template(template, root / "in" / f"{code}.xlsx", values, {"dvk_mo_hinh": SEED_MODELS}))
    collect(ws, files)
    return load_workspace(ws.root), run_check(ws)


def _jobs(ws, result):
    form = ws.load_form()
    with Ledger.open_readonly(ws.ledger_path) as ledger:
        for uc in result.units:
            parts = feedback_parts(form, ledger.submission(uc.submission_id), uc.findings, office="Văn phòng",
                                   reply_by="sớm")
            if parts[1] or parts[2].rows:
                yield uc.unit, parts


def _reference(ws, unit, parts):
    return build_template(ws.load_form(), unit, template_context(ws), prefill=parts[0], annotations=parts[1],
                          feedback=parts[2])


def test_stamped_feedback_is_byte_identical_to_the_built_one(checked):
    ws, result = checked
    form, ctx = ws.load_form(), template_context(ws)
    eager, lazy = FeedbackStamper(form, ctx, eager=True), FeedbackStamper(form, ctx)
    jobs = list(_jobs(ws, result))
    assert len(jobs) >= 5
    for unit, parts in jobs + jobs:  # twice: the second round reuses every prototype
        ref = _reference(ws, unit, parts)
        assert eager.build(unit, *parts) == ref, unit.code
        assert lazy.build(unit, *parts) == ref, unit.code
    assert eager.stamped == 2 * len(jobs) and lazy.stamped >= len(jobs)


def test_odd_strings_are_stamped_exactly_or_take_the_ordinary_path(checked):
    ws, result = checked
    form, ctx = ws.load_form(), template_context(ws)
    stamper = FeedbackStamper(form, ctx, eager=True)
    unit, (prefill, notes, sheet) = next(_jobs(ws, result))
    assert stamper.build(unit, prefill, notes, sheet) == _reference(ws, unit, (prefill, notes, sheet))
    text_field, number_field = "nguoi_ky_ho_ten", "don_khac"
    for odd in ODD:
        variants = [
            (replace(prefill, values={**prefill.values, text_field: odd}), notes, sheet),
            (replace(prefill, values={**prefill.values, number_field: odd}), notes, sheet),
            (replace(prefill, justifications={k: odd for k in form.rules_by_id} if hasattr(form, "rules_by_id")
                     else {r.id: odd for r in form.rules}), notes, sheet),
            (prefill, [Annotation(a.cell, odd, a.severity) for a in notes], sheet),
            (prefill, notes, replace(sheet, intro=odd, rows=[(s, w, odd, odd) for s, w, _m, _r in sheet.rows])),
        ]
        for parts in variants:
            assert stamper.build(unit, *parts) == _reference(ws, unit, parts), repr(odd[:40])
    odd_unit = replace(unit, name="Phòng A & B <Tư pháp>")  # names that template_stamp also refuses
    assert stamper.build(odd_unit, prefill, notes, sheet) == _reference(ws, odd_unit, (prefill, notes, sheet))
    assert stamper.stamped > len(ODD)  # most odd strings do go through the slots


def test_numbers_keep_their_exact_text(checked):
    ws, result = checked
    form, ctx = ws.load_form(), template_context(ws)
    stamper = FeedbackStamper(form, ctx, eager=True)
    unit, (prefill, notes, sheet) = next(_jobs(ws, result))
    for number in (0, 1, 7.5, 1e-7, 123456789012345678, 0.1 + 0.2, -3, 2**53 + 1, 1e300, float("nan"), float("inf")):
        for fid in ("don_khac", "don_tiep_nhan", "tcd_dinh_ky_luot"):
            parts = (replace(prefill, values={**prefill.values, fid: number}), notes, sheet)
            try:
                ref = _reference(ws, unit, parts)
            except Exception as err:  # the writer refuses it: so must the stamper
                with pytest.raises(type(err)):
                    stamper.build(unit, *parts)
                continue
            assert stamper.build(unit, *parts) == ref, (fid, number)


def test_a_stamped_feedback_opens_and_collects_back_as_a_new_version(checked, tmp_path):
    ws, result = checked
    form, ctx = ws.load_form(), template_context(ws)
    stamper = FeedbackStamper(form, ctx, eager=True)
    unit, parts = next((u, p) for u, p in _jobs(ws, result) if p[1])
    data = stamper.build(unit, *parts)
    assert stamper.stamped == 1
    wb = openpyxl.load_workbook(io.BytesIO(data))
    assert wb.worksheets[0].title == "Kết quả kiểm tra"
    path = tmp_path / "feedback.xlsx"
    path.write_bytes(data)
    fixed = fill_template(path, tmp_path / "fixed.xlsx", dict(SEED_VALUES, nguoi_ky_ho_ten="Người sửa"))
    later = max(p.stat().st_mtime for p in (ws.root / "archive").rglob("*") if p.is_file()) + 3600
    os.utime(fixed, (later, later))
    again = collect(ws, [fixed])
    assert again.outcomes[0].outcome == "accepted" and "bản sửa" in again.outcomes[0].message
