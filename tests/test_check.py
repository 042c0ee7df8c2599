"""`danvan check`: findings stored per version, feedback workbooks, justifications; robustness."""

from __future__ import annotations

import datetime as dt
import io
import shutil

import openpyxl
import pytest
from helpers import SEED_MODELS, SEED_VALUES, fill_template
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from danvan_xl.checks import check_submission, run_check
from danvan_xl.collect import collect
from danvan_xl.gate import sniff
from danvan_xl.generate import generate
from danvan_xl.layout import build_layout
from danvan_xl.ledger import Ledger
from danvan_xl.template_writer import build_template
from danvan_xl.workbook_reader import read_workbook
from danvan_xl.workspace import Limits, init_workspace, load_workspace


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    root = tmp_path_factory.mktemp("check")
    ws = init_workspace(root / "ws", issue_date=dt.date(2020, 11, 2))
    generate(ws, ["TN-VP", "30025", "30004"])
    return ws


@pytest.fixture
def ws(base, tmp_path):
    shutil.copytree(base.root, tmp_path / "ws")
    return load_workspace(tmp_path / "ws")


def _fill(ws, code, out, values, **kw):
    template = next(ws.templates_dir.glob(f"2020_{code}_*.xlsx"))
    out.parent.mkdir(parents=True, exist_ok=True)
    return fill_template(template, out, values, {"dvk_mo_hinh": SEED_MODELS}, **kw)


def test_check_reports_errors_and_writes_feedback_that_collects_back(ws, tmp_path):
    wrong = _fill(ws, "TN-VP", tmp_path / "in" / "vp.xlsx", dict(SEED_VALUES, don_khac=50, don_moi_truong="nhiều"))
    collect(ws, [wrong])
    result = run_check(ws, annotate=True)
    assert result.exit_code == 1
    vp = next(u for u in result.units if u.unit.code == "TN-VP")
    codes = sorted(f.code for f in vp.findings if f.severity == "error")
    assert codes == ["not-a-number", "rule-violated"]
    assert vp.feedback == ws.feedback_dir / "TN-VP.xlsx" and result.report.exists()
    wb = openpyxl.load_workbook(vp.feedback)
    front = wb.worksheets[0]
    assert front.title == "Kết quả kiểm tra"
    texts = [str(c.value) for row in front.iter_rows() for c in row if c.value]
    assert any("phải bằng số đơn tiếp nhận (182)" in t for t in texts)  # the rule's message, quoting both sides
    assert any("không phải số" in t for t in texts) and any(t == "Trang TiepDan, ô D17" for t in texts)
    layout = build_layout(ws.load_form())
    cell = layout.fields["don_moi_truong"].cell
    target = wb[cell.sheet][cell.a1]
    assert target.value == "nhiều"  # the unit's own text, to correct
    assert target.comment is not None and "không phải số" in target.comment.text
    assert target.fill.fgColor.rgb.endswith("F4B6B6")
    # The unit corrects the feedback workbook and sends it back: it is a new version.
    fixed = fill_template(vp.feedback, tmp_path / "fixed.xlsx", {"don_khac": 52, "don_moi_truong": 5})
    import os

    os.utime(fixed, (wrong.stat().st_mtime + 60,) * 2)
    again = collect(ws, [fixed])
    assert again.outcomes[0].outcome == "accepted" and "bản sửa" in again.outcomes[0].message
    assert again.outcomes[0].errors == 0
    assert run_check(ws).exit_code == 0


def test_findings_are_kept_per_version_and_check_is_idempotent(ws, tmp_path):
    collect(ws, [_fill(ws, "TN-VP", tmp_path / "a.xlsx", dict(SEED_VALUES, don_khac=50))])
    run_check(ws)
    with Ledger.open_readonly(ws.ledger_path) as ledger:
        checks = ledger.conn.execute("SELECT count(*) FROM checks").fetchone()[0]
    run_check(ws)
    with Ledger.open_readonly(ws.ledger_path) as ledger:
        assert ledger.conn.execute("SELECT count(*) FROM checks").fetchone()[0] == checks


def test_a_justified_warning_is_accepted_and_travels_with_the_finding(ws, tmp_path):
    values = dict(SEED_VALUES, tcd_dinh_ky_luot=30, tcd_dinh_ky_nguoi=35)
    path = _fill(ws, "30025", tmp_path / "pc.xlsx", values,
                 justifications={"tcd_toi_thieu_xa": "Chủ tịch xã đi tập huấn 3 tháng, Phó Chủ tịch tiếp thay"})
    unjustified = _fill(ws, "30004", tmp_path / "hb.xlsx", values)
    collect(ws, [path, unjustified])
    result = run_check(ws)
    pc = next(u for u in result.units if u.unit.code == "30025")
    hb = next(u for u in result.units if u.unit.code == "30004")
    warning = next(f for f in pc.findings if f.rule == "tcd_toi_thieu_xa")
    assert warning.accepted and "tập huấn" in warning.justification and pc.warnings == 0
    assert hb.warnings == 1 and not next(f for f in hb.findings if f.rule == "tcd_toi_thieu_xa").accepted
    assert result.exit_code == 0  # warnings do not fail the run


def test_the_findings_workbook_lists_every_finding(ws, tmp_path):
    collect(ws, [_fill(ws, "TN-VP", tmp_path / "a.xlsx", dict(SEED_VALUES, don_khac=50))])
    result = run_check(ws)
    rows = list(openpyxl.load_workbook(result.report).active.iter_rows(values_only=True))
    assert rows[0][:3] == ("Mã đơn vị", "Đơn vị", "Mức độ")
    assert any(r[7] == "don_theo_noi_dung" and r[2] == "Lỗi" for r in rows[1:])


# ------------------------------------------------------------------ junk never crashes the check

_JUNK = st.one_of(
    st.none(), st.integers(-10**12, 10**12), st.floats(allow_nan=False, allow_infinity=False, width=32),
    st.booleans(), st.datetimes(min_value=dt.datetime(1900, 3, 1), max_value=dt.datetime(2100, 1, 1)),
    st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=40),
    st.sampled_from(["không phát sinh", "KPS", "05", "1.234", "1,5", "=1/0", "=SUM(1,2)", "_x0007_", "#N/A", " ",
                     "Có", "khong", "31/02/2020", "12/14/2020", "x" * 400, "Đoa\u0300n"]),
)


@pytest.fixture(scope="module")
def template_bytes(base):
    form, register = base.load_form(), base.load_register()
    from danvan_xl.generate import template_context

    return form, register, build_template(form, register.get("30025"), template_context(base))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_random_junk_in_any_input_cell_never_crashes_and_findings_point_at_template_cells(template_bytes, data):
    form, register, raw = template_bytes
    layout = build_layout(form)
    cells = layout.input_cells()
    chosen = data.draw(st.lists(st.sampled_from(cells), min_size=1, max_size=12, unique=True))
    wb = openpyxl.load_workbook(io.BytesIO(raw))
    for cell in chosen:
        wb[cell.sheet][cell.a1] = data.draw(_JUNK)
    buf = io.BytesIO()
    wb.save(buf)
    content = buf.getvalue()
    result = read_workbook(content, sniff(content, Limits()), form, 2020, Limits(), "junk.xlsx")
    if not result.ok:  # a value python-calamine cannot convert (see tests/regressions): a clean rejection
        assert result.code == "damaged-file" and "không đọc được" in result.message, result.message
        return
    findings = check_submission(form, register.get("30025"), result.data, result.findings, None, "junk.xlsx")
    known = {(c.sheet, c.a1) for c in cells} | {(p.cell.sheet, p.cell.a1) for p in layout.fields.values()}
    for f in findings:
        if f.cell:
            assert (f.sheet, f.cell) in known, f
        assert f.message and "None" not in f.message


def test_bulk_check_and_inherited_submissions_give_what_the_per_unit_reads_give(ws, tmp_path):
    """run_check reads all units in three queries and hands feedback workers the parent's submission;
    the per-unit reads (findings, latest check, each submission read on its own) must give the same."""

    from danvan_xl.checks import RULE_CODES, rule_findings
    from danvan_xl.feedback import FeedbackSetting, write_feedbacks
    from danvan_xl.generate import template_context

    collect(ws, [_fill(ws, "TN-VP", tmp_path / "a.xlsx", dict(SEED_VALUES, don_khac=50, don_moi_truong="nhiều")),
                 _fill(ws, "30025", tmp_path / "b.xlsx", dict(SEED_VALUES, tcd_dinh_ky_luot=30)),
                 _fill(ws, "30004", tmp_path / "c.xlsx", SEED_VALUES)])
    form, register = ws.load_form(), ws.load_register()
    with Ledger.open_readonly(ws.ledger_path) as ledger:
        prev_all = ledger.current_values(form.id, ws.year - 1)
        expected = {}
        for sub in ledger.current_submissions(form.id, ws.year):
            stored = ledger.findings(sub.id)
            file = next((f.file for f in stored if f.file), "")
            expected[sub.unit_code] = [f for f in stored if f.code not in RULE_CODES] + rule_findings(
                form, register.get(sub.unit_code), sub.data, prev_all.get(sub.unit_code), file)
        keys = ledger.latest_check_keys(form.id, ws.year)
        for sub in ledger.current_submissions(form.id, ws.year):
            row = ledger.latest_check(sub.id)
            assert keys[sub.id] == (row["digest"], row["definition_hash"])
    result = run_check(ws, annotate=True)
    assert {u.unit.code: u.findings for u in result.units} == expected
    with Ledger.open(ws.ledger_path, ws.archive_dir) as ledger:
        conn = ledger.conn
        conn.execute("BEGIN IMMEDIATE")
        keys = ledger.latest_check_keys(form.id, ws.year)
        assert len(keys) == 3
        for u in result.units:  # unchanged results: stored neither way
            assert not ledger.store_check(conn, u.submission_id, form.definition_hash, u.findings)
            assert not ledger.store_check(conn, u.submission_id, form.definition_hash, u.findings,
                                          latest=keys[u.submission_id])
        assert ledger.store_check(conn, result.units[0].submission_id, form.definition_hash, [],
                                  latest=keys[result.units[0].submission_id])
        conn.execute("ROLLBACK")
    written = {p.name: p.read_bytes() for p in ws.feedback_dir.glob("*.xlsx")}
    assert written
    from danvan_xl.feedback import FeedbackJob, open_findings

    with Ledger.open_readonly(ws.ledger_path) as ledger:  # each submission read on its own, not in bulk
        jobs = [FeedbackJob(u.unit, ledger.submission(u.submission_id), tuple(u.findings), prev_all.get(u.unit.code))
                for u in result.units if open_findings(u.findings)]
    assert len(jobs) == len(written)
    out = tmp_path / "fb"
    out.mkdir()
    ctx = template_context(ws)
    reply_by = f"trước ngày {ws.deadline:%d/%m/%Y}" if ws.deadline else "sớm"
    write_feedbacks(FeedbackSetting(form, ctx, out, ws.office.name, reply_by, jobs), 1)
    assert {p.name: p.read_bytes() for p in out.glob("*.xlsx")} == written


def test_check_on_forked_workers_stores_and_writes_what_the_single_process_check_does(ws, tmp_path, monkeypatch):
    """Feedback workbooks written by forked workers (inheriting the parent's submissions): the
    ledger rows, the feedback workbooks (a stale one removed) and the result must be the same as
    when one process does everything."""
    import dataclasses
    import sqlite3

    from danvan_xl import feedback

    collect(ws, [_fill(ws, "TN-VP", tmp_path / "a.xlsx", dict(SEED_VALUES, don_khac=50, don_moi_truong="nhiều")),
                 _fill(ws, "30025", tmp_path / "b.xlsx", dict(SEED_VALUES, tcd_dinh_ky_luot=30)),
                 _fill(ws, "30004", tmp_path / "c.xlsx", SEED_VALUES)])
    ws.feedback_dir.mkdir(exist_ok=True)
    (ws.feedback_dir / "30004.xlsx").write_bytes(b"an earlier feedback the unit has since answered")
    shutil.copytree(ws.root, tmp_path / "forked")
    alone = run_check(ws, annotate=True)
    monkeypatch.setattr(feedback, "PARALLEL_THRESHOLD", 1)
    other = load_workspace(tmp_path / "forked")
    other = dataclasses.replace(other, limits=dataclasses.replace(other.limits, workers=2))
    seen: list[str] = []
    forked = run_check(other, annotate=True, progress=seen.append)
    assert sorted(seen) == sorted(u.unit.code for u in forked.units)

    def rows(root):
        conn = sqlite3.connect(root / "danvan.sqlite")
        try:
            return (conn.execute("SELECT submission_id, definition_hash, errors, warnings, digest FROM checks "
                                 "ORDER BY id").fetchall(),
                    conn.execute("SELECT submission_id, code, severity, message, cell, rule FROM findings "
                                 "ORDER BY id").fetchall())
        finally:
            conn.close()

    def files(folder):
        return {p.name: p.read_bytes() for p in folder.iterdir()}

    assert rows(ws.root) == rows(other.root) and rows(ws.root)[0]
    assert files(ws.feedback_dir) == files(other.feedback_dir)
    assert sorted(files(ws.feedback_dir)) == ["30025.xlsx", "TN-VP.xlsx"]  # the answered one removed
    assert files(ws.reports_dir) == files(other.reports_dir)
    strip = [{**u, "feedback": u["feedback"] and u["feedback"].rsplit("/", 1)[-1]}
             for u in alone.to_dict()["units"]]
    assert strip == [{**u, "feedback": u["feedback"] and u["feedback"].rsplit("/", 1)[-1]}
                     for u in forked.to_dict()["units"]]
    assert alone.exit_code == forked.exit_code == 1
