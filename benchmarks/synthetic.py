"""The synthetic district the benchmarks share: N units and a workspace with their register."""

from __future__ import annotations

import csv
import datetime as dt
from pathlib import Path

from danvan_xl.units import Unit
from danvan_xl.workspace import Workspace, init_workspace, load_workspace


def units_for(n: int) -> list[Unit]:
    """``n`` units: a quarter offices (P…), the rest communes (X…), in register order 1…n."""
    return [Unit(f"P{i:05d}", f"Phòng Thử Nghiệm {i}", "phong", i, "Trưởng phòng", "", f"p{i}@x.example")
            if i % 4 == 0 else
            Unit(f"X{i:05d}", f"Ủy ban nhân dân xã Thử Nghiệm {i}", "xa", i, "Chủ tịch", "TM. ỦY BAN NHÂN DÂN",
                 f"x{i}@x.example") for i in range(1, n + 1)]


def make_workspace(root: Path, units: list[Unit]) -> Workspace:
    """A workspace in ``root/ws`` whose register is ``units`` (written to ``root/units.csv``)."""
    register = root / "units.csv"
    with open(register, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["code", "name", "kind", "order", "head_title", "authority", "email"])
        for u in units:
            w.writerow([u.code, u.name, u.kind, u.order, u.head_title, u.authority, u.email])
    ws = init_workspace(root / "ws", units=register, issue_date=dt.date(2020, 11, 2))
    return load_workspace(ws.root)
