"""Benchmark: collecting returned workbooks.

Builds N filled workbooks for N synthetic units (each a distinct unit, so each becomes a new
submission), then times ``collect`` on them against the floor of just parsing the same sheets with
python-calamine (serial and with as many processes as collect uses), and against that floor plus the
strict XML pass over the same parts that reliability.md §1.4 requires (the least any collect keeping
that check can cost). Prints files/s, ms per file, both ratios, and peak memory of the collecting
process and of its workers.

    python benchmarks/bench_collect.py 1000
    python benchmarks/bench_collect.py 10000
"""

from __future__ import annotations

import os
import resource
import sys
import tempfile
import time
import zipfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from xml.parsers import expat

import python_calamine
import synthetic
from machine import machine_line

from danvan_xl.collect import collect
from danvan_xl.form import load_form
from danvan_xl.generate import template_context
from danvan_xl.layout import build_layout
from danvan_xl.sample_data import sample_values
from danvan_xl.template_stamp import Stamper
from danvan_xl.template_writer import Prefill, template_filename
from danvan_xl.units import Unit
from danvan_xl.workbook_reader import _sheet_targets

SHEETS: list[str] = []


def make_workspace(root: Path, n: int) -> tuple[object, Path]:
    units = [Unit(f"X{i:05d}", f"Ủy ban nhân dân xã Thử Nghiệm {i}", "xa", i + 1, "Chủ tịch", "TM. ỦY BAN NHÂN DÂN",
                  f"x{i}@x.example") for i in range(n)]
    ws = synthetic.make_workspace(root, units)
    form = ws.load_form()
    values, tables = sample_values(form, units[0], 2020)
    stamper = Stamper(form, template_context(ws), Prefill(values, tables))
    inbox = root / "inbox"
    inbox.mkdir()
    for u in units:
        (inbox / template_filename(form, u, 2020)).write_bytes(stamper.build(u))
    return ws, inbox


def parse_floor(path: str) -> int:
    """Just read the sheets a collect reads, with the fastest reader."""
    wb = python_calamine.CalamineWorkbook.from_path(path)
    cells = 0
    for name in SHEETS:
        cells += sum(len(r) for r in wb.get_sheet_by_name(name).to_python(skip_empty_area=False))
    return cells


def strict_floor(path: str) -> int:
    """The floor plus the strict XML pass reliability.md §1.4 requires of every part the reader uses.

    calamine tolerates damaged XML and can return different values from it, so collect checks the
    shared strings and each sheet it reads with expat (the fastest strict parser here: lxml took
    ~1.5× as long on the same parts). The parts are inflated twice, inside calamine and for expat:
    python-calamine can neither take parts nor hand them back. This is the least any collect that
    keeps that guarantee can cost, before archiving, hashing, normalising, checking or storing anything."""
    cells = parse_floor(path)
    with zipfile.ZipFile(path) as zf:
        workbook = zf.read("xl/workbook.xml")
        targets = _sheet_targets(zf, workbook, set(zf.namelist()))
        expat.ParserCreate().Parse(zf.read("xl/sharedStrings.xml"), True)
        for name in SHEETS:
            expat.ParserCreate().Parse(zf.read(targets[name]), True)
    return cells


def _init(sheets: list[str]) -> None:
    SHEETS[:] = sheets


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    workers = os.cpu_count() or 1
    print(machine_line())
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        ws, inbox = make_workspace(Path(tmp), n)
        print(f"built {n} filled workbooks in {time.perf_counter() - start:.1f} s")
        form = load_form("nam-dan-van-chinh-quyen")
        _init(sorted({*build_layout(form).section_sheets, "_meta", "KiemTra"}))
        files = sorted(str(p) for p in inbox.iterdir())
        start = time.perf_counter()
        for f in files:
            parse_floor(f)
        floor_serial = time.perf_counter() - start
        start = time.perf_counter()
        with ProcessPoolExecutor(workers, initializer=_init, initargs=(SHEETS,)) as pool:
            list(pool.map(parse_floor, files, chunksize=64))
        floor_parallel = time.perf_counter() - start
        start = time.perf_counter()
        with ProcessPoolExecutor(workers, initializer=_init, initargs=(SHEETS,)) as pool:
            list(pool.map(strict_floor, files, chunksize=64))
        strict_parallel = time.perf_counter() - start
        start = time.perf_counter()
        result = collect(ws, [inbox])
        wall = time.perf_counter() - start
        assert result.count("accepted") == n, result.summary()
        me = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        print(f"floor (calamine, same sheets): serial {floor_serial / n * 1000:.2f} ms/file; "
              f"{workers} processes {floor_parallel:.1f} s ({floor_parallel / n * 1000:.2f} ms/file)")
        print(f"floor + the required strict XML pass: {workers} processes {strict_parallel:.1f} s "
              f"({strict_parallel / n * 1000:.2f} ms/file) = {strict_parallel / floor_parallel:.2f}× the floor "
              "(the least a collect keeping reliability.md §1.4's check can reach)")
        print(f"collect {n} files: {wall:.1f} s, {n / wall:.0f} files/s, {wall / n * 1000:.2f} ms/file; "
              f"ratio to the {workers}-process floor {wall / floor_parallel:.2f}× (target ≤ 1.5×); "
              f"{wall / strict_parallel:.2f}× the strict floor")
        print(f"peak RSS: collecting process {me:.0f} MB, largest worker {kids:.0f} MB")
        if n != 10_000:
            print(f"projected for 10000 files: {wall / n * 10_000:.0f} s (target < 60 s)")


if __name__ == "__main__":
    main()
