"""The benchmarks' compile floor must write the summary's own cells, all of them: a floor that
dropped cells (or misread them) would make the ratio printed beside compile's time meaningless."""

from __future__ import annotations

import datetime as dt
import sys
import zipfile
from pathlib import Path

import openpyxl
import pytest
from openpyxl.utils.datetime import to_excel

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

import bench_compile
import xlsx_floor


def test_compile_floor_reads_every_cell_of_the_summary(tmp_path: Path) -> None:
    out = tmp_path / "tong-hop.xlsx"
    result = bench_compile.run_one(25, "short", out)
    assert result["floor"] > 0

    sheets = xlsx_floor.summary_cells(out)
    with zipfile.ZipFile(out) as zf:
        elements = sum(zf.read(n).count(b"<c ") for n in zf.namelist() if n.startswith("xl/worksheets/sheet"))
    assert sum(len(cells) for _name, cells in sheets) == elements  # every <c>, blanks included

    book = openpyxl.load_workbook(out)  # formulas as their text, as the floor writes them
    assert [name for name, _cells in sheets] == book.sheetnames
    for name, cells in sheets:
        expected = {}
        for row in book[name].iter_rows():
            for c in row:
                if c.value is not None:
                    value = c.value
                    expected[(c.row - 1, c.column - 1)] = to_excel(value) if isinstance(value, dt.datetime) else value
        got = {(r, c): value for r, c, _kind, value, _cached in cells if value is not None}
        assert got.keys() == expected.keys(), name
        for key, value in got.items():
            want = expected[key]
            assert value == (pytest.approx(want, rel=1e-12) if isinstance(want, int | float) else want), (name, key)
