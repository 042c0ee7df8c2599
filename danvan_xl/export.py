"""Current submissions as a table: one row per unit, one column per scalar field id.

Blank stays blank (not reported), "không phát sinh" is written literally, and an invalid value
is left blank in typed outputs (its finding says why). The same table is offered to scripts as a
typed pandas DataFrame.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .fsio import prepare_dir, write_atomic
from .ledger import Ledger
from .vocabulary import NA_TEXT, Kind, ValueState
from .workspace import Workspace

if TYPE_CHECKING:  # pandas is imported lazily: it costs half a second at start-up
    import pandas as pd

FORMATS = ("csv", "json", "xlsx")


def table(ws: Workspace) -> tuple[list[str], list[list[Any]]]:
    """Header and rows (register order, units with a current submission only)."""
    form = ws.load_form()
    register = ws.load_register()
    fields = list(form.scalar_fields())
    header = ["ma_don_vi_bao_cao", "ten_don_vi_bao_cao"] + [f.id for f in fields]
    rows: list[list[Any]] = []
    with Ledger.open_readonly(ws.ledger_path) as ledger:
        current = {s.unit_code: s for s in ledger.current_submissions(form.id, ws.year)}
    for unit in register:
        sub = current.get(unit.code)
        if sub is None:
            continue
        row: list[Any] = [unit.code, unit.name]
        for f in fields:
            v = sub.data.values.get(f.id)
            if f.computed and form.rubric:
                row.append(_computed(form, sub.data, f.id))
            elif v is None or v.state in (ValueState.BLANK, ValueState.INVALID):
                row.append(None)
            elif v.state == ValueState.NA:
                row.append(NA_TEXT)
            else:
                row.append(v.value)
        rows.append(row)
    return header, rows


def _computed(form: Any, data: Any, fid: str) -> Any:
    scores = [data.values[c.score_field].value for c in form.rubric.criteria
              if c.score_field in data.values and data.values[c.score_field].state == ValueState.VALUE]
    if not scores:
        return None
    total = sum(scores)
    return total if fid == form.rubric.total_field else form.rubric.grade(total)


def export(ws: Workspace, fmt: str, out: Path | None = None) -> Path:
    """Write the table as csv (UTF-8 with BOM, for Excel), json or xlsx; returns the path."""
    if fmt not in FORMATS:
        raise ValueError(fmt)
    header, rows = table(ws)
    out = out or ws.reports_dir / f"du-lieu-{ws.year}.{fmt}"
    prepare_dir(out.parent)
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\r\n")
        writer.writerow(header)
        for row in rows:
            writer.writerow([_csv_cell(v) for v in row])
        data = ("\ufeff" + buf.getvalue()).encode("utf-8")
    elif fmt == "json":
        records = [dict(zip(header, (_json_cell(v) for v in row), strict=True)) for row in rows]
        data = json.dumps(records, ensure_ascii=False, indent=2).encode("utf-8")
    else:
        data = _xlsx(header, rows)
    return write_atomic(out, data)


def _csv_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, dt.date):
        return f"{value:%d/%m/%Y}"
    text = str(value)
    # A cell that starts like a formula must not run in the program that opens the CSV.
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") and not _is_number(value) else text


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _json_cell(value: Any) -> Any:
    return value.isoformat() if isinstance(value, dt.date) else value


def _xlsx(header: list[str], rows: list[list[Any]]) -> bytes:
    import xlsxwriter

    buf = io.BytesIO()
    wb = xlsxwriter.Workbook(buf, {"in_memory": True, "strings_to_formulas": False, "strings_to_urls": False,
                                   "default_format_properties": {"font_name": "Times New Roman", "font_size": 11}})
    ws = wb.add_worksheet("DuLieu")
    bold = wb.add_format({"bold": True})
    date = wb.add_format({"num_format": "dd/mm/yyyy"})
    wb.set_properties({"created": dt.datetime(2000, 1, 1)})
    for c, h in enumerate(header):
        ws.write_string(0, c, h, bold)
    for r, row in enumerate(rows, start=1):
        for c, v in enumerate(row):
            if v is None:
                continue
            if _is_number(v):
                ws.write_number(r, c, v)
            elif isinstance(v, dt.date):
                ws.write_datetime(r, c, dt.datetime(v.year, v.month, v.day), date)
            else:
                ws.write_string(r, c, str(v))
    ws.freeze_panes(1, 2)
    wb.close()
    return buf.getvalue()


def dataframe(ws: Workspace) -> pd.DataFrame:
    """The current submissions as a typed DataFrame indexed by unit code.

    Counts are ``Int64``, decimals ``Float64``, text ``string``, dates ``datetime64``; both
    "blank" and "không phát sinh" are ``<NA>`` — use :func:`states` to tell them apart.
    """
    import pandas as pd

    form = ws.load_form()
    header, rows = table(ws)
    frame = pd.DataFrame(rows, columns=header).set_index("ma_don_vi_bao_cao")
    for f in form.scalar_fields():
        col = frame[f.id].where(frame[f.id] != NA_TEXT)
        if f.kind == Kind.COUNT:
            frame[f.id] = pd.array(col.tolist(), dtype="Int64")
        elif f.kind in (Kind.DECIMAL, Kind.PERCENT):
            frame[f.id] = pd.array(col.tolist(), dtype="Float64")
        elif f.kind == Kind.DATE:
            frame[f.id] = pd.to_datetime(col)
        else:
            frame[f.id] = col.astype("string")
    frame["ten_don_vi_bao_cao"] = frame["ten_don_vi_bao_cao"].astype("string")
    return frame


def states(ws: Workspace) -> pd.DataFrame:
    """The state (value / blank / na / invalid) of every exported cell, same shape as :func:`dataframe`."""
    import pandas as pd

    form = ws.load_form()
    register = ws.load_register()
    with Ledger.open_readonly(ws.ledger_path) as ledger:
        current = {s.unit_code: s for s in ledger.current_submissions(form.id, ws.year)}
    records = {}
    for unit in register:
        sub = current.get(unit.code)
        if sub is not None:
            records[unit.code] = {f.id: (sub.data.values[f.id].state.value if f.id in sub.data.values else "blank")
                                  for f in form.scalar_fields()}
    return pd.DataFrame.from_dict(records, orient="index").astype("string")
