"""Benchmark: the whole yearly cycle for many units, with hostile files mixed in.

For each size N (default 1,000 then 10,000) it builds a register of N units (a quarter offices,
the rest communes), then runs every stage the way a user does, as a separate ``danvan`` process:

    generate   N templates                      floor: bare xlsxwriter replaying one template's calls, × N / cores
    collect    N filled returns + 5 % hostile   floor: python-calamine reading the same sheets, N files on all cores
    check      every current submission (+ feedback workbooks)   floor: sqlite3 reading every stored value
    compile    the district summary workbook    floor: bare xlsxwriter writing the workbook's own cells (constant_memory)
    narrative  N unit reports, then the district's  floor: zipfile writing the same .docx parts N + 1 times

and prints per-stage seconds, items/s, the peak memory (PSS) of the stage's processes together,
the ratio to the floor, and, when two sizes ran, how each stage grew (time(N2)/time(N1) divided by
N2/N1: 1.0 is linear). Every count is reconciled exactly: files in = accepted + rejected +
duplicates; one submission per unit; one delivery per file; one archived copy per distinct file;
one template and one report per unit. A mismatch stops the benchmark.

    python benchmarks/bench_cycle.py                # 1,000 and 10,000 units (4 to 15 minutes on 2 cores)
    python benchmarks/bench_cycle.py 500 2000       # other sizes
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import python_calamine

from danvan_xl.form import Form
from danvan_xl.generate import template_context
from danvan_xl.layout import build_layout
from danvan_xl.sample_data import sample_values
from danvan_xl.template_stamp import Stamper
from danvan_xl.template_writer import Prefill, template_filename
from danvan_xl.units import Unit
from danvan_xl.workspace import Workspace

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))  # the bad-input catalogue lives with the tests

import bench_generate  # noqa: E402
import hostile  # noqa: E402
from machine import machine_line  # noqa: E402
from synthetic import make_workspace, units_for  # noqa: E402
from xlsx_floor import floor_compile  # noqa: E402

HOSTILE_SHARE = 0.05
TARGET_SECONDS = 60.0
TARGET_MEMORY_MB = 1024.0
# Catalogue entries that must be refused (macros, external links and the like are accepted with a warning).
HOSTILE: list[tuple[str, Callable[[bytes, int], bytes]]] = [
    ("zip bomb", lambda good, _i: hostile.zip_bomb(good)),
    ("lying sizes", lambda good, _i: hostile.lying_size(good)),
    ("overlapping members", lambda good, _i: hostile.overlapping(good)),
    ("duplicate member", lambda good, _i: hostile.duplicate_member(good)),
    ("path traversal", lambda good, _i: hostile.traversal_member(good)),
    ("billion laughs", lambda good, _i: hostile.laughs_in_shared_strings(good)),
    ("XXE", lambda good, _i: hostile.xxe_in_sheet(good)),
    ("huge extent", lambda good, _i: hostile.huge_extent(good)),
    ("malformed XML", lambda good, _i: hostile.malformed_xml(good)),
    ("no workbook part", lambda good, _i: hostile.without_workbook_part(good)),
    (".xlsb", lambda good, _i: hostile.xlsb(good)),
    ("truncated", lambda good, _i: good[: len(good) // 2]),
    ("CSV renamed", lambda _good, i: f"don_vi,so_don\nX{i},12\n".encode()),
    ("HTML renamed", lambda _good, i: f"<html><table><tr><td>X{i}</td></tr></table></html>".encode()),
]


@dataclass
class Stage:
    name: str
    items: int
    seconds: float
    peak_mb: float
    floor: float
    exit_code: int

    @property
    def ratio(self) -> float:
        return self.seconds / self.floor if self.floor > 0 else float("nan")


@dataclass
class Run:
    n: int
    stages: list[Stage] = field(default_factory=list)


def make_returns(ws: Workspace, units: list[Unit], inbox: Path) -> tuple[int, int, int]:
    """Filled returns for every unit, plus 5 % hostile files; (good files, hostile files, distinct hostile)."""
    form = ws.load_form()
    stampers: dict[str, Stamper] = {}
    for u in units:
        if u.kind not in stampers:
            values, tables = sample_values(form, u, ws.year)
            stampers[u.kind] = Stamper(form, template_context(ws), Prefill(values, tables))
    inbox.mkdir()
    goods: list[bytes] = []
    for u in units:
        data = stampers[u.kind].build(u)
        (inbox / template_filename(form, u, ws.year)).write_bytes(data)
        if len(goods) < len(HOSTILE):
            goods.append(data)
    count = round(len(units) * HOSTILE_SHARE)
    digests = set()
    for i in range(count):
        kind, make = HOSTILE[i % len(HOSTILE)]
        data = make(goods[i % len(goods)], i)
        digests.add(hashlib.sha256(data).hexdigest())
        (inbox / f"zz-hostile-{i:05d}-{kind.replace(' ', '-')}.xlsx").write_bytes(data)
    return len(units), count, len(digests)


def run_stage(args: list[str], log: Path) -> tuple[float, float, int]:
    """Run ``danvan ARGS`` as a user would; (seconds, peak MB, exit code).

    The peak is the largest sum of proportional set sizes (PSS, /proc/<pid>/smaps_rollup) over the
    stage's processes (the command and its forked workers), sampled every 50 ms. PSS divides each
    shared page among the processes that map it, so pages a forked worker shares copy-on-write with
    its parent are counted once, not once per process as a sum of RSS would; ``ru_maxrss`` cannot
    be used either (Linux carries a parent's peak over into its children)."""
    with open(log, "wb") as out:
        start = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", "danvan_xl", *args], stdout=out, stderr=subprocess.STDOUT)
        peak = 0.0
        while proc.poll() is None:
            peak = max(peak, _tree_memory_mb(proc.pid))
            time.sleep(0.05)
        seconds = time.perf_counter() - start
    return seconds, peak, proc.returncode


def _tree_memory_mb(root: int) -> float:
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        try:
            children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
            total += _pss_kb(pid)
        except OSError:
            continue
        todo.extend(int(c) for c in children)
    return total / 1024


def _pss_kb(pid: int) -> int:
    try:
        rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
        key = "Pss:"
    except OSError:  # kernels before 4.14: fall back to RSS
        rollup = Path(f"/proc/{pid}/status").read_text()
        key = "VmRSS:"
    for line in rollup.splitlines():
        if line.startswith(key):
            return int(line.split()[1])
    return 0


# ------------------------------------------------------------------ floors

def floor_generate(form: Form, unit: Unit, n: int) -> float:
    recording = bench_generate.record(form, unit)
    per = statistics.median(_timed(recording.replay) for _ in range(15))
    return per * n / (os.cpu_count() or 1)


_SHEETS: list[str] = []


def _init_sheets(sheets: list[str]) -> None:
    _SHEETS[:] = sheets


def _calamine(path: str) -> int:
    wb = python_calamine.CalamineWorkbook.from_path(path)
    return sum(len(r) for s in _SHEETS for r in wb.get_sheet_by_name(s).to_python(skip_empty_area=False))


def floor_collect(form: Form, files: list[str]) -> float:
    sheets = sorted({*build_layout(form).section_sheets, "_meta", "KiemTra"})
    start = time.perf_counter()
    with ProcessPoolExecutor(os.cpu_count() or 1, initializer=_init_sheets, initargs=(sheets,)) as pool:
        list(pool.map(_calamine, files, chunksize=64))
    return time.perf_counter() - start


def floor_check(ws: Workspace) -> float:
    start = time.perf_counter()
    conn = sqlite3.connect(ws.ledger_path)
    rows = conn.execute("SELECT * FROM submission_values").fetchall()
    conn.close()
    assert rows
    return time.perf_counter() - start


def floor_narrative(sample_docx: Path, n: int) -> float:
    with zipfile.ZipFile(sample_docx) as zf:
        parts = [(i.filename, zf.read(i)) for i in zf.infolist()]
    start = time.perf_counter()
    for _ in range(n):
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as out:
            for name, data in parts:
                out.writestr(name, data)
    return time.perf_counter() - start


def _timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


# ------------------------------------------------------------------ the cycle

def cycle(n: int, tmp: Path) -> Run:
    run = Run(n)
    units = units_for(n)
    ws = make_workspace(tmp, units)
    form = ws.load_form()
    logs = tmp / "logs"
    logs.mkdir()
    root = str(ws.root)

    seconds, peak, rc = run_stage(["generate", "-w", root], logs / "generate.txt")
    templates = list(ws.templates_dir.glob("*.xlsx"))
    _require(len(templates) == n, f"generate wrote {len(templates)} templates for {n} units")
    run.stages.append(Stage("generate", n, seconds, peak, floor_generate(form, units[1], n), rc))

    inbox = tmp / "inbox"
    start = time.perf_counter()
    good, bad, distinct_bad = make_returns(ws, units, inbox)
    print(f"  (built {good:,} filled returns and {bad:,} hostile files in {time.perf_counter() - start:.0f} s)",
          flush=True)
    files = sorted(str(p) for p in inbox.iterdir())
    seconds, peak, rc = run_stage(["collect", "-w", root, str(inbox)], logs / "collect.txt")
    good_files = [f for f in files if "zz-hostile-" not in f]  # the floor: reading the good files
    run.stages.append(Stage("collect", len(files), seconds, peak, floor_collect(form, good_files), rc))
    reconcile_collect(ws, n, good, bad, distinct_bad, (logs / "collect.txt").read_text(encoding="utf-8"))

    seconds, peak, rc = run_stage(["check", "-w", root, "--annotate"], logs / "check.txt")
    conn = sqlite3.connect(ws.ledger_path)
    checked = conn.execute("SELECT count(DISTINCT submission_id) FROM checks").fetchone()[0]
    conn.close()
    _require(checked == n, f"check recorded {checked} checked submissions for {n} units")
    run.stages.append(Stage("check", n, seconds, peak, floor_check(ws), rc))

    seconds, peak, rc = run_stage(["compile", "-w", root], logs / "compile.txt")
    summary = ws.reports_dir / f"tong-hop-{ws.year}.xlsx"
    _require(summary.exists(), "compile wrote no summary workbook")
    text = (logs / "compile.txt").read_text(encoding="utf-8")
    counted = re.search(r"Tính vào tổng ([\d.]+)/([\d.]+)", text)
    _require(counted is not None and counted.group(1).replace(".", "") == str(n),
             "compile did not count every unit: " + text[-400:])
    run.stages.append(Stage("compile", n, seconds, peak, floor_compile(summary), rc))

    seconds, peak, rc = run_stage(["narrative", "-w", root], logs / "narrative.txt")
    more, peak2, rc2 = run_stage(["narrative", "-w", root, "--district"], logs / "narrative-district.txt")
    seconds, peak, rc = seconds + more, max(peak, peak2), max(rc, rc2)
    docx = sorted((ws.reports_dir / "bao-cao").glob("*.docx"))
    _require(len(docx) == n + 1, f"narrative wrote {len(docx)} reports for {n} units + the district")
    run.stages.append(Stage("narrative", n + 1, seconds, peak, floor_narrative(docx[0], n + 1), rc))
    return run


def reconcile_collect(ws: Workspace, n: int, good: int, bad: int, distinct_bad: int, log: str) -> None:
    """Files in = accepted + rejected + duplicates (the run's own summary line), and the ledger holds
    one delivery per distinct file: a file with the same bytes as one already received is reported
    as a duplicate and stores nothing (re-running a collect changes nothing)."""
    line = re.search(r"([\d.]+) tệp: ([\d.]+) nhận mới, ([\d.]+) trùng, ([\d.]+) bị từ chối, ([\d.]+) xung đột", log)
    _require(line is not None, "collect printed no summary line: " + log[-400:])
    files, new, dup, rejected, conflicts = (int(g.replace(".", "")) for g in line.groups())
    _require((files, new, dup, rejected, conflicts) == (good + bad, good, bad - distinct_bad, distinct_bad, 0),
             f"collect said {line.group(0)!r}; expected {good + bad} files: {good} new, {bad - distinct_bad} "
             f"duplicates, {distinct_bad} rejected, 0 conflicts")
    conn = sqlite3.connect(ws.ledger_path)
    try:
        outcomes = dict(conn.execute("SELECT outcome, count(*) FROM deliveries GROUP BY outcome").fetchall())
        submissions = conn.execute("SELECT count(*) FROM submissions").fetchone()[0]
        units = conn.execute("SELECT count(DISTINCT unit_code) FROM submissions").fetchone()[0]
        current = conn.execute("SELECT count(*) FROM current").fetchone()[0]
        integrity = conn.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        conn.close()
    archived = sum(1 for p in ws.archive_dir.rglob("*") if p.is_file())
    expected = {"accepted": good, "rejected": distinct_bad}
    _require(outcomes == expected, f"deliveries {outcomes}, expected {expected}")
    _require(submissions == n and units == n and current == n, f"{submissions} submissions / {units} units / "
             f"{current} current for {n} units")
    _require(archived == good + distinct_bad, f"{archived} archived files, expected {good + distinct_bad}")
    _require(integrity == "ok", f"ledger integrity: {integrity}")


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise SystemExit(f"COUNTS DO NOT RECONCILE: {message}")


# ------------------------------------------------------------------ report

def report(runs: list[Run]) -> None:
    for run in runs:
        print(f"\n{run.n:,} units")
        print(f"  {'stage':<10} {'items':>7} {'seconds':>8} {'items/s':>8} {'ms/item':>8} {'peak MB':>8} "
              f"{'floor s':>8} {'× floor':>8}  target")
        for s in run.stages:
            ok = s.seconds < TARGET_SECONDS and s.peak_mb < TARGET_MEMORY_MB
            print(f"  {s.name:<10} {s.items:>7,} {s.seconds:>8.1f} {s.items / s.seconds:>8.0f} "
                  f"{s.seconds / s.items * 1000:>8.2f} {s.peak_mb:>8.0f} {s.floor:>8.2f} {s.ratio:>8.1f}  "
                  f"{'met' if ok or run.n < 10_000 else 'NOT MET'}"
                  + ("" if s.exit_code in (0, 1) else f"  (exit code {s.exit_code})"))
        print(f"  whole cycle {sum(s.seconds for s in run.stages):.0f} s")
    if len(runs) >= 2:
        a, b = runs[0], runs[-1]
        scale = b.n / a.n
        print(f"\ngrowth {a.n:,} → {b.n:,} units (time ratio ÷ {scale:g}; 1.00 is linear)")
        for sa, sb in zip(a.stages, b.stages, strict=True):
            print(f"  {sa.name:<10} {sb.seconds / sa.seconds / scale:5.2f}   peak memory {sa.peak_mb:.0f} → {sb.peak_mb:.0f} MB")
    print(f"\ntargets at 10,000 units: each stage < {TARGET_SECONDS:.0f} s on 2 cores, peak memory < "
          f"{TARGET_MEMORY_MB:.0f} MB")
    print(f"now: {machine_line()}")


def main() -> None:
    sizes = [int(a) for a in sys.argv[1:]] or [1000, 10_000]
    print(machine_line())
    runs = []
    for n in sizes:
        print(f"running the cycle for {n:,} units …", flush=True)
        with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as tmp:
            runs.append(cycle(n, Path(tmp)))
    report(runs)


if __name__ == "__main__":
    main()
