"""Benchmark: writing narrative reports (.docx in the NĐ 30 layout and the .md twin).

1. ``build_docx`` of the seed-sized report (TN-VP, the seed's paragraphs and numbers): median ms
   over interleaved rounds, next to building the same report's text (``unit_report``).
2. The ``danvan narrative`` path: a synthetic workspace of N units, each with an accepted
   submission in the ledger (the sample district's values), then the wall time of
   ``narrate.write_narratives`` writing every unit's .docx and .md, with one process and with
   every core.

    .venv/bin/python benchmarks/bench_narrative.py             # 200 runs, 1,000 units
    .venv/bin/python benchmarks/bench_narrative.py --units 10000

Target: ≤ 10 ms per report on one core; 10,000 unit reports in under a minute on 2 cores.
The machines are shared: timings are medians; the load average is printed with them.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import synthetic
from machine import machine_line

from danvan_xl.docx_writer import build_docx
from danvan_xl.expr import NA
from danvan_xl.form import Form, load_form
from danvan_xl.ledger import Ledger
from danvan_xl.narrate import write_narratives
from danvan_xl.narrative import Report, unit_report
from danvan_xl.resources import sample_dir
from danvan_xl.sample_data import sample_values
from danvan_xl.submission import SubmissionData, Value
from danvan_xl.units import Unit, read_register
from danvan_xl.vocabulary import ValueState

YEAR = 2020


def submission_data(form: Form, unit: Unit, year: int = YEAR) -> SubmissionData:
    """The values the sample district's unit would send, as the reader returns them."""
    values, tables = sample_values(form, unit, year)

    def value(fid: str, x: Any) -> Value:
        if x is NA:
            return Value(fid, ValueState.NA)
        return Value(fid, ValueState.BLANK) if x is None else Value(fid, ValueState.VALUE, x)

    rows = {t: [{c: value(c, x) for c, x in row.items()} for row in table] for t, table in tables.items()}
    return SubmissionData(unit.code, form.id, form.version, form.definition_hash, year,
                          {k: value(k, x) for k, x in values.items()}, rows)


def seed_report(form: Form) -> tuple[Report, Unit, SubmissionData]:
    unit = read_register(sample_dir() / "units.csv").get("TN-VP")
    data = submission_data(form, unit)
    return unit_report(form, unit, data, year=YEAR), unit, data


def time_build(form: Form, runs: int) -> None:
    report, unit, data = seed_report(form)
    build_docx(report)  # the shared parts are made once per process: not part of a report's cost
    docx_ms, text_ms = [], []
    for _ in range(runs):
        start = time.perf_counter()
        build_docx(report)
        docx_ms.append((time.perf_counter() - start) * 1000)
        start = time.perf_counter()
        unit_report(form, unit, data, year=YEAR)
        text_ms.append((time.perf_counter() - start) * 1000)
    size = len(build_docx(report))
    print(f"seed report: {len(report.blocks)} blocks, {sum(len(b.text) for b in report.blocks):,} characters, "
          f".docx {size:,} bytes")
    print(f"  build_docx   median {statistics.median(docx_ms):6.2f} ms  (min {min(docx_ms):.2f}, {runs} runs)")
    print(f"  unit_report  median {statistics.median(text_ms):6.2f} ms  (the wording, for scale)")


def make_workspace(root: Path, form: Form, n: int) -> Any:
    """A workspace of ``n`` units (a quarter offices, the rest communes), each with a current,
    error-free submission of sample values."""
    units = synthetic.units_for(n)
    ws = synthetic.make_workspace(root, units)
    received = dt.datetime(2020, 12, 1, 8, 0)
    with Ledger.open(ws.ledger_path, ws.archive_dir, "bench") as ledger, ledger.transaction() as conn:
        for i, unit in enumerate(units):
            data = submission_data(form, unit)
            digest = f"{i:064x}"
            sid = ledger.add_submission(conn, data, digest=digest, chash=digest, received_at=received, source="bench",
                                        file_format="xlsx", state="current", supersedes=None, notes=())
            ledger.set_current(conn, unit.code, form.id, YEAR, sid)
    return ws


def time_stage(form: Form, n: int, rounds: int) -> None:
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as tmp:
        start = time.perf_counter()
        ws = make_workspace(Path(tmp), form, n)
        print(f"\nworkspace of {n:,} units with accepted submissions built in {time.perf_counter() - start:.1f} s")
        for workers in (1, os.cpu_count() or 1):
            walls = []
            for r in range(rounds):
                out = Path(tmp) / f"out-{workers}-{r}"
                start = time.perf_counter()
                result = write_narratives(ws, out_dir=out, workers=workers)
                walls.append(time.perf_counter() - start)
                assert len(result.written) == n and not result.skipped, (len(result.written), result.skipped[:3])
            wall = statistics.median(walls)
            print(f"  write_narratives, {workers} process(es): {wall:6.2f} s for {n:,} reports (.docx + .md), "
                  f"{wall / n * 1000:.2f} ms per report  (median of {rounds}: {', '.join(f'{w:.2f}' for w in walls)})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=200, help="build_docx repetitions (default 200)")
    parser.add_argument("--units", type=int, default=1000, help="unit reports for the stage timing (default 1000)")
    parser.add_argument("--rounds", type=int, default=3, help="repetitions of the stage timing (default 3)")
    args = parser.parse_args()
    print(machine_line())
    form = load_form("nam-dan-van-chinh-quyen")
    time_build(form, args.runs)
    if args.units:
        time_stage(form, args.units, args.rounds)
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
