"""The compile stage's bulk ledger reads give exactly what the per-unit reads give.

``danvan compile`` reads the current submissions, their latest findings and every unit's status
with a handful of queries instead of several per unit; here both ways are compared on a ledger with
every state: clean, a rule error, a second version, a conflict and a unit that did not report.
"""

from __future__ import annotations

import datetime as dt
import os

import pytest
from helpers import SEED_MODELS, SEED_VALUES, fill_template

from danvan_xl.collect import collect
from danvan_xl.generate import generate
from danvan_xl.ledger import Ledger, decode_data, decode_data_shared, prepare_submission
from danvan_xl.status import UnitStatus, compute_status
from danvan_xl.submission import SubmissionData, Value
from danvan_xl.vocabulary import ValueState
from danvan_xl.workspace import init_workspace

UNITS = ["TN-VP", "TN-NV", "TN-TP", "30025", "30019"]
FORM_ID = "nam-dan-van-chinh-quyen"
LONG = "\n".join(f"Đoạn {i}: tiếp dân đúng hạn." for i in range(40))  # taller than a row: "(tiếp)" rows
TEXTS = {"nd_1_lanh_dao": '=HYPERLINK("http://evil.example","bấm vào đây")', "nd_2_1_quan_triet": LONG,
         "nd_3_1_ket_qua": "Kết quả <b>tốt</b> & đúng hạn"}


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    base = tmp_path_factory.mktemp("bulk")
    ws = init_workspace(base / "ws", issue_date=dt.date(2020, 11, 2))
    generate(ws, UNITS)

    def filled(code: str, name: str, values=None) -> os.PathLike:
        out = base / "in" / name
        out.parent.mkdir(parents=True, exist_ok=True)
        template = next(ws.templates_dir.glob(f"2020_{code}_*.xlsx"))
        return fill_template(template, out, SEED_VALUES if values is None else values, {"dvk_mo_hinh": SEED_MODELS})

    def at(path, day: int):
        stamp = dt.datetime(2020, 12, day, 9, 30).timestamp()
        os.utime(path, (stamp, stamp))
        return path

    first = at(filled("TN-NV", "nv1.xlsx", dict(SEED_VALUES, don_khac=50)), 1)  # on time, then corrected (late)
    collect(ws, [first])
    collect(ws, [at(filled("TN-NV", "nv2.xlsx"), 20)])
    conflict = [filled("TN-VP", "a.xlsx"), filled("TN-VP", "b.xlsx", dict(SEED_VALUES, don_khac=50))]
    collect(ws, [at(conflict[0], 3), at(conflict[1], 3),
                 at(filled("TN-TP", "tp.xlsx", dict(SEED_VALUES, don_khac=60, vb_trien_khai="mười hai")), 4),
                 at(filled("30025", "c.xlsx", dict(SEED_VALUES, **TEXTS)), 5)])
    return ws


def _reference_status(ledger: Ledger, form, register, year: int, deadline: dt.date) -> list[UnitStatus]:
    """The per-unit queries compute_status made before it read everything at once."""
    conflicts = ledger.conflicts(form.id, year)
    out: list[UnitStatus] = []
    for unit in register:
        row = ledger.current_row(unit.code, form.id, year)
        versions = len(ledger.submissions_of(unit.code, form.id, year))
        if unit.code in conflicts:
            newest = conflicts[unit.code][-1]
            out.append(UnitStatus(unit, "conflict", dt.datetime.fromisoformat(newest["received_at"]), versions,
                                  int(row["id"]) if row else None, None, source=newest["source"],
                                  conflict_ids=tuple(int(r["id"]) for r in conflicts[unit.code])))
            continue
        if row is None:
            out.append(UnitStatus(unit, "missing", version=versions))
            continue
        check = ledger.latest_check(int(row["id"]))
        errors = int(check["errors"]) if check else 0
        first = ledger.submissions_of(unit.code, form.id, year)[0]
        out.append(UnitStatus(
            unit, "with_errors" if errors else "accepted", dt.datetime.fromisoformat(row["received_at"]), versions,
            int(row["id"]), on_time=dt.datetime.fromisoformat(first["received_at"]).date() <= deadline,
            errors=errors, warnings=int(check["warnings"]) if check else 0, source=row["source"],
        ))
    return out


def test_status_read_at_once_equals_the_per_unit_reads(ws):
    form, register = ws.load_form(), ws.load_register()
    with Ledger.open_readonly(ws.ledger_path) as ledger:
        fast = compute_status(ledger, form, register, ws.year, ws.deadline)
        slow = _reference_status(ledger, form, register, ws.year, ws.deadline)
    assert fast == slow
    states = {s.unit.code: s.state for s in fast}
    assert states["TN-VP"] == "conflict" and states["TN-TP"] == "with_errors" and states["30019"] == "missing"
    nv = next(s for s in fast if s.unit.code == "TN-NV")
    assert nv.version == 2 and nv.on_time is True


def test_current_submissions_and_findings_in_bulk_equal_the_per_submission_reads(ws):
    form = ws.load_form()
    with Ledger.open_readonly(ws.ledger_path) as ledger:
        slow = ledger.current_submissions(form.id, ws.year)
        fast = ledger.current_submissions_bulk(form.id, ws.year)
        assert fast == slow
        assert {s.unit_code for s in fast} == {"TN-NV", "TN-TP", "30025"}
        assert any(s.errors for s in fast)
        findings = ledger.current_findings(form.id, ws.year)
        assert findings == {s.id: ledger.findings(s.id) for s in slow}
        assert any(findings.values())


# ---------------------------------------------------------------------- saving the workbook

def _model(ws):
    from danvan_xl.summary import build_model, default_as_of

    form, register = ws.load_form(), ws.load_register()
    with Ledger.open_readonly(ws.ledger_path) as ledger:
        current = ledger.current_submissions(form.id, ws.year)
        findings = {s.id: ledger.findings(s.id) for s in current}
        statuses = compute_status(ledger, form, register, ws.year, ws.deadline)
    return build_model(form, ws.office, register, ws.year, ws.deadline, current, findings, statuses, prev={},
                       include_with_errors=False, as_of=default_as_of(current, ws.deadline))


def test_workbook_is_the_same_when_every_row_is_met_cell_by_cell(ws, monkeypatch):
    from danvan_xl.summary_xlsx import render_xlsx
    from danvan_xl.summary_xml import XlsxWorksheet

    model = _model(ws)
    alone = render_xlsx(model)
    monkeypatch.setattr(XlsxWorksheet, "_meets_pending", lambda self, pieces: True)  # every cell met, as before
    assert render_xlsx(model) == alone


def test_compile_writes_the_workbook_of_the_per_unit_reads(ws):
    from danvan_xl.summary import compile_summary, render_csv
    from danvan_xl.summary_xlsx import render_xlsx

    result = compile_summary(ws)
    model = _model(ws)  # the model built from the per-unit reads
    assert result.path.read_bytes() == render_xlsx(model)
    assert result.csv_path.read_bytes() == render_csv(model)


def test_shared_decoding_keeps_every_value_and_its_type():
    plain = [0, 0.0, -0.0, 1, 1.0, True, False, None, 2.5, float("inf"), float("nan"), "1", "", "Có",
             dt.date(2020, 12, 1)]
    cache: dict = {}
    texts = []
    for unit in ("A", "B"):
        values = {f"f{i}": Value(f"f{i}", ValueState.VALUE, v, None, "S", f"D{i}") for i, v in enumerate(plain)}
        values["na"] = Value("na", ValueState.NA, None, None, "S", "E1")
        values["bad"] = Value("bad", ValueState.INVALID, None, "mười", "S", "E2")
        rows = [{"c": Value("c", ValueState.VALUE, 1, None, "S", f"B{r}")} for r in (5, 6)]
        texts.append(prepare_submission(SubmissionData(unit, "form", "1", "hash", 2020, values, {"t": rows},
                                                        {"x": "vì"}))[0])
    for text in texts:
        shared, alone = decode_data_shared(text, cache), decode_data(text)
        assert shared == alone
        for name, v in alone.values.items():
            w = shared.values[name]
            assert (type(w.value), repr(w.value), w.state, w.raw, w.cell) == (type(v.value), repr(v.value), v.state,
                                                                              v.raw, v.cell)
    a, b = decode_data_shared(texts[0], cache), decode_data_shared(texts[1], cache)
    assert a.values["na"] is b.values["na"] and a.values["f3"] is b.values["f3"]  # shared, not copied
    assert a.tables["t"][0]["c"] is not a.tables["t"][1]["c"]  # another cell: another value


# ---------------------------------------------------------------------- the second core

def test_forked_child_returns_the_bytes_or_none_when_it_fails():
    from danvan_xl.forked import in_child

    assert in_child(lambda: b"x" * 300_000).result() == b"x" * 300_000

    def fails() -> bytes:
        raise RuntimeError("boom")

    assert in_child(fails).result() is None
    job = in_child(lambda: b"never read")
    job.discard()
    assert job.result() is None


def test_workbook_is_the_same_with_section_plans_worked_out_elsewhere(ws):
    from danvan_xl.summary_sections import section_plans
    from danvan_xl.summary_xlsx import render_xlsx

    model = _model(ws)
    plans = section_plans(model)
    assert any(len(pieces) > 1 for plan in plans.values() for _i, units in plan for pieces in units)  # "(tiếp)"
    alone = render_xlsx(model)
    assert render_xlsx(model, lambda: plans) == alone
    assert render_xlsx(model, lambda: None) == alone


def test_compile_writes_the_same_without_a_child(ws, monkeypatch):
    from danvan_xl import forked
    from danvan_xl.summary import compile_summary

    result = compile_summary(ws)
    xlsx, csv = result.path.read_bytes(), result.csv_path.read_bytes()

    def no_fork() -> int:
        raise OSError("no fork")

    monkeypatch.setattr(forked.os, "fork", no_fork)
    result = compile_summary(ws)
    assert (result.path.read_bytes(), result.csv_path.read_bytes()) == (xlsx, csv)
