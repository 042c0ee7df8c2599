"""Ledger guarantees: crash safety, locking, integrity, status and export over a real SQLite file."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import SEED_MODELS, SEED_VALUES, fill_template

from danvan_xl.collect import collect
from danvan_xl.errors import LedgerError
from danvan_xl.generate import generate
from danvan_xl.ledger import WorkspaceLock
from danvan_xl.sample_data import sample_values
from danvan_xl.vocabulary import ValueState
from danvan_xl.workspace import init_workspace

DANVAN = [sys.executable, "-m", "danvan_xl"]


@pytest.fixture(scope="module")
def returns(tmp_path_factory):
    """A workspace with all 25 templates and one filled return per unit."""
    root = tmp_path_factory.mktemp("ledger")
    ws = init_workspace(root / "base", issue_date=dt.date(2020, 11, 2))
    generate(ws)
    form, register = ws.load_form(), ws.load_register()
    inbox = root / "inbox"
    inbox.mkdir()
    for unit in register:
        values, tables = sample_values(form, unit, 2020)
        template = next(ws.templates_dir.glob(f"2020_{unit.code}_*.xlsx"))
        fill_template(template, inbox / f"{unit.code}.xlsx", values, tables)
    return ws, inbox


def fresh_ws(returns, tmp_path):
    ws, _ = returns
    target = tmp_path / "ws"
    shutil.copytree(ws.root, target)
    from danvan_xl.workspace import load_workspace

    return load_workspace(target)


def summary(path: Path) -> dict:
    conn = sqlite3.connect(path)
    try:
        return {
            "integrity": conn.execute("PRAGMA integrity_check").fetchone()[0],
            "submissions": sorted(conn.execute("SELECT unit_code, sha256, state FROM submissions").fetchall()),
            "current": sorted(conn.execute("SELECT unit_code, submission_id FROM current").fetchall()),
            "deliveries": conn.execute("SELECT count(*) FROM deliveries").fetchone()[0],
            "orphan_values": conn.execute("SELECT count(*) FROM submission_values v LEFT JOIN submissions s "
                                          "ON s.id = v.submission_id WHERE s.id IS NULL").fetchone()[0],
            "incomplete": [sid for sid, data, stored in conn.execute(
                "SELECT s.id, s.data_json, (SELECT count(*) FROM submission_values v WHERE v.submission_id = s.id) "
                "FROM submissions s") if stored != _cells(data)],
        }
    finally:
        conn.close()


def _cells(data_json: str) -> int:
    data = json.loads(data_json)
    return len(data["values"]) + sum(len(row) for rows in data["tables"].values() for row in rows)


def test_kill_9_mid_collect_leaves_a_consistent_ledger_and_the_next_run_finishes(returns, tmp_path):
    ws = fresh_ws(returns, tmp_path)
    _, inbox = returns
    # Paused after every commit, so the kill lands mid-run however fast the machine stores the 25 units.
    env = dict(os.environ, DANVAN_LOCK_TIMEOUT="5", DANVAN_FAILPOINT_HOLD_COMMIT="0.5")
    proc = subprocess.Popen([*DANVAN, "collect", "-w", str(ws.root), str(inbox)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 60
    committed = 0
    while time.monotonic() < deadline and proc.poll() is None:
        if ws.ledger_path.exists():
            try:
                conn = sqlite3.connect(f"file:{ws.ledger_path}?mode=ro", uri=True, timeout=0.2)
                committed = conn.execute("SELECT count(*) FROM submissions").fetchone()[0]
                conn.close()
            except sqlite3.Error:
                pass
        if committed >= 3:
            break
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)  # the collect and its parser workers
    proc.wait()
    state = summary(ws.ledger_path)
    assert state["integrity"] == "ok" and state["orphan_values"] == 0
    assert state["incomplete"] == []  # every stored submission is complete
    assert 0 < len(state["submissions"]) < 25, "the kill should land mid-run"
    result = collect(ws, [inbox])
    assert result.count("accepted") == 25 - len(state["submissions"])
    final = summary(ws.ledger_path)
    assert len(final["submissions"]) == 25 and len({s[0] for s in final["submissions"]}) == 25
    assert final["integrity"] == "ok"
    clean = fresh_ws(returns, tmp_path / "clean")
    collect(clean, [inbox])
    assert summary(clean.ledger_path)["submissions"] == final["submissions"]


def test_a_second_collect_waits_for_the_lock_then_refuses_clearly(returns, tmp_path):
    ws = fresh_ws(returns, tmp_path)
    _, inbox = returns
    with WorkspaceLock(ws.lock_path, "danvan collect (test)"):
        env = dict(os.environ, DANVAN_LOCK_TIMEOUT="0.5")
        proc = subprocess.run([*DANVAN, "collect", "-w", str(ws.root), str(inbox / "TN-VP.xlsx")], env=env,
                              capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert "đang được một lệnh khác dùng" in proc.stderr and "danvan collect (test)" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not ws.ledger_path.exists() or summary(ws.ledger_path)["submissions"] == []


def test_concurrent_collects_store_each_file_once(returns, tmp_path):
    ws = fresh_ws(returns, tmp_path)
    _, inbox = returns
    procs = [subprocess.Popen([*DANVAN, "collect", "-w", str(ws.root), str(inbox)], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL) for _ in range(4)]
    codes = [p.wait(timeout=240) for p in procs]
    assert all(c in (0, 1) for c in codes)
    state = summary(ws.ledger_path)
    assert len(state["submissions"]) == 25 and state["integrity"] == "ok"
    assert len(state["current"]) == 25


def test_a_corrupt_ledger_is_reported_never_recreated(returns, tmp_path):
    ws = fresh_ws(returns, tmp_path)
    _, inbox = returns
    collect(ws, [inbox / "TN-VP.xlsx"])
    size = ws.ledger_path.stat().st_size
    with open(ws.ledger_path, "r+b") as fh:
        fh.seek(4096)
        fh.write(os.urandom(4096))
    with pytest.raises(LedgerError, match="bị hỏng"):
        collect(ws, [inbox / "TN-NV.xlsx"])
    assert ws.ledger_path.stat().st_size == size  # left for the office to restore


def test_status_table_json_and_chase_list(returns, tmp_path):
    ws = fresh_ws(returns, tmp_path)
    _, inbox = returns
    wrong = tmp_path / "wrong.xlsx"
    template = next(ws.templates_dir.glob("2020_30025_*.xlsx"))
    fill_template(template, wrong, dict(SEED_VALUES, don_khac=50), {"dvk_mo_hinh": SEED_MODELS})
    for p in (inbox / "TN-VP.xlsx", inbox / "TN-NV.xlsx"):
        os.utime(p, (dt.datetime(2020, 12, 5).timestamp(),) * 2)
    os.utime(wrong, (dt.datetime(2020, 12, 12).timestamp(),) * 2)
    collect(ws, [inbox / "TN-VP.xlsx", inbox / "TN-NV.xlsx", wrong])
    proc = subprocess.run([*DANVAN, "status", "-w", str(ws.root), "--json"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["totals"] == {"expected": 25, "received": 3, "accepted": 2, "with_errors": 1, "conflict": 0,
                              "late": 1, "missing": 22}
    units = {u["unit"]: u for u in data["units"]}
    assert units["TN-VP"]["on_time"] is True and units["30025"]["on_time"] is False
    assert units["30025"]["state"] == "with_errors" and units["30025"]["errors"] == 1
    chase = [u["unit"] for u in data["chase"]]
    assert "30025" in chase and "TN-TP" in chase and "TN-VP" not in chase
    assert all(u["email"] for u in data["chase"])
    proc = subprocess.run([*DANVAN, "status", "-w", str(ws.root)], capture_output=True, text=True, timeout=60)
    assert "Cần đôn đốc:" in proc.stdout and "Chưa nộp" in proc.stdout and "nộp muộn 1" in proc.stdout


def test_export_formats_and_dataframe(returns, tmp_path):
    ws = fresh_ws(returns, tmp_path)
    _, inbox = returns
    collect(ws, [inbox])
    from danvan_xl.export import dataframe, export, states

    csv_path = export(ws, "csv")
    text = csv_path.read_bytes().decode("utf-8")
    assert text.startswith("\ufeffma_don_vi_bao_cao,ten_don_vi_bao_cao,")
    import csv
    import io

    rows = list(csv.reader(io.StringIO(text.lstrip("\ufeff"))))
    assert len(rows) == 26 and rows[1][:2] == ["TN-VP", "Văn phòng Hội đồng nhân dân và Ủy ban nhân dân huyện Tam Nông"]
    json_rows = json.loads(export(ws, "json").read_text(encoding="utf-8"))
    vp = json_rows[0]
    assert vp["don_tiep_nhan"] == 182 and vp["tcd_thuong_xuyen_nguoi"] is None
    import openpyxl

    wb = openpyxl.load_workbook(export(ws, "xlsx"))
    assert wb.active.max_row == 26
    frame = dataframe(ws)
    assert str(frame["don_tiep_nhan"].dtype) == "Int64" and frame.loc["TN-VP", "don_tiep_nhan"] == 182
    assert str(frame["ty_le_hai_long"].dtype) == "Float64"
    st = states(ws)
    na_units = [u for u in st.index if st.loc[u, "don_to_cao"] == "na"]
    for unit in na_units:  # "không phát sinh" is <NA> in the typed frame and "na" in the states frame
        assert frame.loc[unit, "don_to_cao"] is not None
    assert st.loc["TN-VP", "tcd_thuong_xuyen_nguoi"] == "blank"


def _reference_value(v) -> list:
    value = {"date": v.value.isoformat()} if isinstance(v.value, dt.date) else v.value
    return [v.state.value, value, v.raw, v.sheet, v.cell]


def _reference_columns(v) -> tuple:
    """submission_values columns as the ledger first computed them."""
    num = v.value if isinstance(v.value, int | float) and not isinstance(v.value, bool) else None
    text = None
    if v.state == ValueState.NA:
        text = "không phát sinh"
    elif isinstance(v.value, dt.date):
        text = v.value.isoformat()
    elif isinstance(v.value, str):
        text = v.value
    return (v.state.value, num, text, v.raw, v.sheet, v.cell)


def _reference_json(data) -> str:
    """The stored JSON as the ledger first wrote it: every dict sorted, values as [state, value, raw, sheet, cell]."""
    return json.dumps({
        "unit_code": data.unit_code, "form_id": data.form_id, "form_version": data.form_version,
        "definition_hash": data.definition_hash, "year": data.year,
        "values": {k: _reference_value(v) for k, v in sorted(data.values.items())},
        "tables": {t: [{c: _reference_value(v) for c, v in sorted(row.items())} for row in rows]
                   for t, rows in sorted(data.tables.items())},
        "justifications": dict(sorted(data.justifications.items())),
    }, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def _reference_content_hash(data) -> str:
    """The content hash as the ledger first computed it: the canonical JSON without cell positions."""
    import hashlib

    canon = {
        "unit_code": data.unit_code, "form_id": data.form_id, "form_version": data.form_version,
        "definition_hash": data.definition_hash, "year": data.year,
        "values": {k: _reference_value(v)[:3] for k, v in data.values.items()},
        "tables": {t: [{c: _reference_value(v)[:3] for c, v in row.items()} for row in rows]
                   for t, rows in data.tables.items()},
        "justifications": data.justifications,
    }
    return hashlib.sha256(json.dumps(canon, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def test_prepare_submission_equals_the_reference_encoders():
    """collect's one-pass encoding (while workers parse) stores exactly what the reference functions give."""
    from danvan_xl.ledger import prepare_submission
    from danvan_xl.submission import SubmissionData, Value

    values = {
        "a_int": Value("a_int", ValueState.VALUE, 12, None, "S", "D5"),
        "a_float": Value("a_float", ValueState.VALUE, 1.5, None, "S", "D6"),
        "a_text": Value("a_text", ValueState.VALUE, "Xã Phú & <Hoà>", None, "S", "D7"),
        "a_date": Value("a_date", ValueState.VALUE, dt.date(2020, 11, 2), None, "S", "D8"),
        "a_blank": Value("a_blank", ValueState.BLANK, None, None, "S", "D9"),
        "a_na": Value("a_na", ValueState.NA, None, "không phát sinh", "S", "D10"),
        "a_na_text": Value("a_na_text", ValueState.NA, "x", "x", "S", "D11"),
        "a_bad": Value("a_bad", ValueState.INVALID, None, "mười hai", "S", "D12"),
        "a_bool": Value("a_bool", ValueState.VALUE, True, None, "S", "D13"),
    }
    tables = {"t": [{"c1": Value("c1", ValueState.VALUE, "một", None, "T", "B5"),
                     "c2": Value("c2", ValueState.VALUE, 3.0, None, "T", "C5")},
                    {"c1": Value("c1", ValueState.BLANK), "c2": Value("c2", ValueState.NA)}], "u": []}
    data = SubmissionData("30001", "f", "1.0", "abc", 2020, values, tables, {"r2": "lý do", "r1": "x"})
    encoded, rows, chash = prepare_submission(data)
    assert encoded == _reference_json(data)
    assert chash == _reference_content_hash(data)
    reference = [(fid, 0, "", *_reference_columns(v)) for fid, v in values.items()]
    reference += [(tid, i, col, *_reference_columns(v)) for tid, rs in tables.items()
                  for i, row in enumerate(rs, start=1) for col, v in row.items()]
    assert rows == reference
    assert [[type(x) for x in r] for r in rows] == [[type(x) for x in r] for r in reference]
