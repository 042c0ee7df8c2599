"""Faults (reliability.md §4.3): kill -9 at many points, disk full, read-only folders, stale locks,
16 simultaneous runs. After each: the ledger passes its integrity check, no output is half-written,
and the next run completes without storing anything twice."""

from __future__ import annotations

import datetime as dt
import os
import resource
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import fill_template

from danvan_xl.collect import collect
from danvan_xl.errors import LedgerError
from danvan_xl.generate import generate
from danvan_xl.ledger import Ledger
from danvan_xl.sample_data import sample_values
from danvan_xl.workspace import init_workspace, load_workspace

DANVAN = [sys.executable, "-m", "danvan_xl"]
# Every ledger transaction pauses just after its commit (fsio.failpoint_hold), so a kill that waits
# for some rows lands mid-run however fast the machine stores the rest.
HOLD_COMMIT = {"DANVAN_FAILPOINT_HOLD_COMMIT": "0.5"}


@pytest.fixture(scope="module")
def returns(tmp_path_factory):
    root = tmp_path_factory.mktemp("faults")
    ws = init_workspace(root / "base", issue_date=dt.date(2020, 11, 2))
    generate(ws)
    form, register = ws.load_form(), ws.load_register()
    inbox = root / "inbox"
    inbox.mkdir()
    for unit in register:
        values, tables = sample_values(form, unit, 2020)
        if unit.code == "30025":
            values["don_khac"] = 999  # one unit with an error, so check has feedback to write
        template = next(ws.templates_dir.glob(f"2020_{unit.code}_*.xlsx"))
        fill_template(template, inbox / f"{unit.code}.xlsx", values, tables)
    return ws, inbox


def fresh(returns, tmp_path, name="ws"):
    shutil.copytree(returns[0].root, tmp_path / name)
    return load_workspace(tmp_path / name)


def state(path: Path) -> dict:
    conn = sqlite3.connect(path)
    try:
        return {
            "integrity": conn.execute("PRAGMA integrity_check").fetchone()[0],
            "subs": sorted(conn.execute("SELECT unit_code, sha256 FROM submissions").fetchall()),
            "current": conn.execute("SELECT count(*) FROM current").fetchone()[0],
            "deliveries": sorted(conn.execute("SELECT sha256, outcome FROM deliveries").fetchall()),
            "dangling": conn.execute("SELECT count(*) FROM current c LEFT JOIN submissions s ON s.id = c.submission_id "
                                     "WHERE s.id IS NULL").fetchone()[0],
        }
    finally:
        conn.close()


def count(path: Path, table: str) -> int:
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=0.2)
        try:
            return conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
        finally:
            conn.close()
    except sqlite3.Error:
        return -1


def kill_when(cmd: list[str], ready, timeout: float = 90, env: dict[str, str] | None = None) -> bool:
    """Run ``cmd``, kill -9 its process group once ``ready()``; True if it was still running then."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                            env=dict(os.environ, DANVAN_LOCK_TIMEOUT="10", **(env or {})))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None and not ready():
        time.sleep(0.002)
    running = proc.poll() is None
    with __import__("contextlib").suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    return running and proc.returncode == -signal.SIGKILL


@pytest.mark.parametrize("after", [1, 6, 13, 21])
def test_kill_9_at_many_points_of_collect(returns, tmp_path, after):
    ws = fresh(returns, tmp_path)
    _, inbox = returns
    killed = kill_when([*DANVAN, "collect", "-w", str(ws.root), str(inbox)],
                       lambda: count(ws.ledger_path, "submissions") >= after, env=HOLD_COMMIT)
    assert killed, "the run ended before the kill point; the test did not test anything"
    mid = state(ws.ledger_path) if ws.ledger_path.exists() else None
    if mid:
        assert mid["integrity"] == "ok" and mid["dangling"] == 0
        assert len(mid["subs"]) == len({s[0] for s in mid["subs"]})  # nothing stored twice
    collect(ws, [inbox])
    final = state(ws.ledger_path)
    assert final["integrity"] == "ok" and len(final["subs"]) == 25 and final["current"] == 25
    clean = fresh(returns, tmp_path, "clean")
    collect(clean, [inbox])
    assert state(clean.ledger_path)["subs"] == final["subs"]
    assert state(clean.ledger_path)["deliveries"] == final["deliveries"]


@pytest.mark.parametrize("after", [3, 12])
def test_kill_9_during_check_with_feedback(returns, tmp_path, after):
    ws = fresh(returns, tmp_path)
    _, inbox = returns
    collect(ws, [inbox])
    before = count(ws.ledger_path, "checks")
    killed = kill_when([*DANVAN, "check", "-w", str(ws.root), "--annotate"],
                       lambda: count(ws.ledger_path, "checks") >= before + after or (ws.feedback_dir / "30025.xlsx").exists(),
                       env=HOLD_COMMIT)
    assert killed, "the run ended before the kill point; the test did not test anything"
    assert state(ws.ledger_path)["integrity"] == "ok"
    for folder in (ws.feedback_dir, ws.reports_dir):  # a killed run may leave a hidden temp file, never a torn output
        for p in folder.glob("*.xlsx") if folder.exists() else []:
            import openpyxl

            openpyxl.load_workbook(p).close()
        for tmp in folder.glob(".*.tmp") if folder.exists() else []:
            os.utime(tmp, (time.time() - 3600,) * 2)
    proc = subprocess.run([*DANVAN, "check", "-w", str(ws.root), "--annotate"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and "30025" in proc.stdout  # the one unit with an error
    assert (ws.feedback_dir / "30025.xlsx").exists()
    assert not list(ws.feedback_dir.glob(".*.tmp")) and not list(ws.reports_dir.glob(".*.tmp"))


def _outputs(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and not p.name.startswith(".")}


def _assert_whole(folder: Path) -> None:
    """Every output present opens completely: a killed run leaves old or new files, never torn ones."""
    import zipfile

    import openpyxl

    for p in folder.rglob("*"):
        if p.name.startswith(".") or not p.is_file():
            continue
        if p.suffix == ".xlsx":
            openpyxl.load_workbook(p).close()
        elif p.suffix == ".docx":
            with zipfile.ZipFile(p) as zf:
                assert zf.testzip() is None and "word/document.xml" in zf.namelist(), p
        else:
            p.read_bytes().decode("utf-8")


@pytest.mark.parametrize(("command", "point"), [("compile", "temp"), ("compile", 0.5), ("narrative", "temp"),
                                                ("narrative", 6), ("narrative", 15)])
def test_kill_9_during_compile_and_narrative(returns, tmp_path, command, point):
    """Killed while writing the summary or the reports: no torn output, the ledger intact, and the
    next run writes exactly what an uninterrupted run writes.

    Points: "temp" = a finished temporary file before its rename (held there by the failpoint, so
    the kill lands exactly between write and rename however fast the writer is); an int = after
    that many reports; a float = that fraction of an uninterrupted run's wall time (measured on this
    machine first, so the point stays inside the run on fast and slow machines alike)."""
    ws = fresh(returns, tmp_path)
    _, inbox = returns
    collect(ws, [inbox])
    clean = fresh(returns, tmp_path, "clean")
    shutil.rmtree(clean.root)
    shutil.copytree(ws.root, clean.root)
    began = time.monotonic()
    reference = subprocess.run([*DANVAN, command, "-w", str(clean.root)], capture_output=True, text=True, timeout=300)
    clean_seconds = time.monotonic() - began
    out = ws.reports_dir
    start = time.monotonic()

    def ready() -> bool:
        if point == "temp":
            return out.exists() and any(out.rglob(".*.tmp"))
        if isinstance(point, int):
            return (out / "bao-cao").exists() and len(list((out / "bao-cao").glob("*.docx"))) >= point
        return time.monotonic() - start > point * clean_seconds

    hold = {"DANVAN_FAILPOINT_HOLD_TEMP": "30"} if point == "temp" else None
    killed = kill_when([*DANVAN, command, "-w", str(ws.root)], ready, env=hold)
    assert killed, "the run ended before the kill point; the test did not test anything"
    assert state(ws.ledger_path)["integrity"] == "ok"
    if out.exists():
        _assert_whole(out)
        for tmp in out.rglob(".*.tmp"):
            os.utime(tmp, (time.time() - 3600,) * 2)
    again = subprocess.run([*DANVAN, command, "-w", str(ws.root)], capture_output=True, text=True, timeout=300)
    assert again.returncode in (0, 1), again.stderr
    assert not list(out.rglob(".*.tmp"))
    _assert_whole(out)
    assert reference.returncode == again.returncode
    assert _outputs(out) == _outputs(clean.reports_dir)


def _limit_file_size(limit: int):
    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))
    return apply


def test_disk_full_while_writing_an_output_keeps_the_old_one(returns, tmp_path):
    ws = fresh(returns, tmp_path)
    _, inbox = returns
    collect(ws, [inbox])
    out = tmp_path / "so-lieu.json"
    subprocess.run([*DANVAN, "export", "-w", str(ws.root), "--format", "json", "--out", str(out)], check=True,
                   capture_output=True, timeout=120)
    good = out.read_bytes()
    assert len(good) > 40_000  # the limit lets the ledger's 32 KiB shared-memory file through, not the output
    proc = subprocess.run([*DANVAN, "export", "-w", str(ws.root), "--format", "json", "--out", str(out)],
                          capture_output=True, text=True, timeout=120, preexec_fn=_limit_file_size(40_000))
    assert proc.returncode == 2 and "ổ đĩa đầy" in proc.stderr and "Traceback" not in proc.stderr
    assert out.read_bytes() == good
    assert not list(tmp_path.glob(".*.tmp"))


def test_disk_full_while_archiving_stores_nothing(returns, tmp_path):
    ws = fresh(returns, tmp_path)
    _, inbox = returns
    proc = subprocess.run([*DANVAN, "collect", "-w", str(ws.root), str(inbox / "TN-VP.xlsx")], capture_output=True,
                          text=True, timeout=120, preexec_fn=_limit_file_size(8192))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "ổ đĩa đầy" in proc.stderr
    if ws.ledger_path.exists():
        assert count(ws.ledger_path, "submissions") in (0, -1)
    result = collect(ws, [inbox / "TN-VP.xlsx"])  # with room again, the same file goes in once
    assert [o.outcome for o in result.outcomes] == ["accepted"]


def test_database_full_rolls_back_the_unit_being_stored(returns, tmp_path):
    ws = fresh(returns, tmp_path)
    _, inbox = returns
    collect(ws, [inbox / "TN-VP.xlsx"])
    from danvan_xl.collect import ingest
    from danvan_xl.intake import expand
    from danvan_xl.ledger import WorkspaceLock

    before = state(ws.ledger_path)
    with WorkspaceLock(ws.lock_path, "test"), Ledger.open(ws.ledger_path, ws.archive_dir, "collect") as ledger:
        pages = ledger.conn.execute("PRAGMA page_count").fetchone()[0]
        ledger.conn.execute(f"PRAGMA max_page_count = {pages + 2}")
        with pytest.raises(LedgerError, match="đầy"):
            ingest(ws, ws.load_form(), ws.load_register(), ledger, list(expand([inbox], ws.limits)))
    after = state(ws.ledger_path)
    assert after["integrity"] == "ok" and set(before["subs"]) <= set(after["subs"])
    assert len(after["subs"]) == len({s[0] for s in after["subs"]})
    collect(ws, [inbox])
    assert len(state(ws.ledger_path)["subs"]) == 25


def _immutable(path: Path, on: bool) -> bool:
    proc = subprocess.run(["chattr", "+i" if on else "-i", str(path)], capture_output=True)
    return proc.returncode == 0


def test_a_read_only_output_folder_is_reported_and_nothing_is_lost(returns, tmp_path):
    ws = fresh(returns, tmp_path)
    _, inbox = returns
    collect(ws, [inbox])
    ws.reports_dir.mkdir(exist_ok=True)
    if not _immutable(ws.reports_dir, True):  # root ignores permission bits; an immutable folder it cannot write
        pytest.skip("chattr +i is not permitted here (needs CAP_LINUX_IMMUTABLE on ext4/xfs)")
    try:
        proc = subprocess.run([*DANVAN, "export", "-w", str(ws.root), "--format", "csv"], capture_output=True, text=True,
                              timeout=120)
    finally:
        _immutable(ws.reports_dir, False)
    assert proc.returncode == 2 and str(ws.reports_dir) in proc.stderr and "Traceback" not in proc.stderr
    assert "không có quyền ghi" in proc.stderr or "chỉ cho phép đọc" in proc.stderr
    assert state(ws.ledger_path)["integrity"] == "ok"


def test_a_stale_lock_from_a_killed_run_does_not_block(returns, tmp_path):
    ws = fresh(returns, tmp_path)
    _, inbox = returns
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from pathlib import Path; from danvan_xl.ledger import WorkspaceLock\n"
        f"lock = WorkspaceLock(Path({str(ws.lock_path)!r}), 'danvan collect (bị treo)'); lock.__enter__()\n"
        "print('locked', flush=True); time.sleep(600)")], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    holder.kill()
    holder.wait()
    proc = subprocess.run([*DANVAN, "collect", "-w", str(ws.root), str(inbox / "TN-VP.xlsx")], capture_output=True,
                          text=True, timeout=120, env=dict(os.environ, DANVAN_LOCK_TIMEOUT="2"))
    assert proc.returncode == 0, proc.stderr


def test_sixteen_simultaneous_runs_wait_or_refuse_and_lose_nothing(returns, tmp_path):
    ws = fresh(returns, tmp_path)
    _, inbox = returns
    files = sorted(inbox.glob("*.xlsx"))
    commands = []
    for i in range(16):
        kind = i % 4
        if kind == 0:
            commands.append(["collect", "-w", str(ws.root), *map(str, files[i:i + 12])])
        elif kind == 1:
            commands.append(["collect", "-w", str(ws.root), str(inbox)])
        elif kind == 2:
            commands.append(["check", "-w", str(ws.root)])
        else:
            commands.append(["status", "-w", str(ws.root), "--json"])
    env = dict(os.environ, DANVAN_LOCK_TIMEOUT="240")
    procs = [subprocess.Popen([*DANVAN, *c], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for c in commands]
    results = [(p.wait(timeout=600), p.stderr.read()) for p in procs]
    for code, err in results:
        assert code in (0, 1), err
        assert "Traceback" not in err
    final = state(ws.ledger_path)
    assert final["integrity"] == "ok" and len(final["subs"]) == 25 and final["current"] == 25
    shas = [d[0] for d in final["deliveries"]]
    assert len(shas) == len(set(shas))  # every file recorded exactly once
