"""Stage 4: the district summary workbook ``tong-hop-<year>.xlsx`` (``danvan compile``).

One consolidated workbook for the year that a reader trusts at a glance and can audit cell by cell:

* **Bìa** — office, year, reporting window, as-of time, counts (live formulas over the status
  sheet), form id/version/definition hash, an index of the sheets;
* **Chỉ tiêu** — one row per unit in the register's official order, grouped by block
  ("Khối phòng, ban", "Khối xã, thị trấn"), block subtotals and a grand total (= sum of the
  subtotals) as live formulas with correct cached values, so readers that do not recalculate
  (pandas, a province collector) see the right numbers;
* **Biểu đồ** — native charts: petitions by topic and by unit, self-scores, submission status;
* **So với năm …** — change against last year's current values, over the same units;
* **Chấm điểm** — self score per criterion, total and grade (formulas), an empty "Điểm thẩm định"
  column the office fills in, and its grade as a formula;
* one sheet per repeating table (the "Dân vận khéo" models) and per report section with
  paragraph fields (the units' texts side by side);
* **Tình hình nộp** and **Lỗi và cảnh báo** — completeness and every open finding.

Honest aggregation (domain.md §2.4): a unit counts towards a total only when its "Tính vào tổng"
cell says "Có" (the totals are ``SUMIFS`` over that column, so the rule is visible and editable).
Units whose latest check has errors, or that sent two conflicting files, say "Không" unless
``include_with_errors``; units that did not report are "Chưa nộp" rows, never zeros. Blank, 0 and
"không phát sinh" stay distinct; fields marked ``summable: false`` (double counting across units)
are never summed — their totals show "—" with a note; percentages are recomputed from counts,
never summed or averaged.

Safety (lab.md §4f, reliability.md §1.5): text from units is always written with
``write_string`` after NFC and control-character stripping and truncated at Excel's 32,767
characters with a marker; every xlsxwriter return code is checked; the file is written
atomically; the CSV copy prefixes cells that start like a formula with ``'``.

Modules: ``summary_model`` (who counts, the arithmetic of every cached value), ``summary_text``
(safe text, wrapped-line estimates, the CSV), ``summary_xlsx`` (the workbook and its sheet order)
with ``summary_sheet`` (checked cell writes, formats, the shared context) and one module per sheet
family: ``summary_table``, ``summary_lists``, ``summary_sections``, ``summary_charts``, ``summary_cover``.
This module is the stage's API and re-exports the public names.

Speed (10,000 units): the ledger is read in a few queries with equal values shared between the
submissions (``Ledger.current_submissions_bulk``), the cyclic garbage collector is paused for the
whole stage, and a forked child (``forked``) cuts the section sheets' texts into row pieces and
renders the CSV while the parent renders the workbook; the bytes are those of the serial path.
"""

from __future__ import annotations

import datetime as dt
import pickle
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .findings import Finding
from .forked import in_child
from .form import Form
from .fsio import prepare_dir, write_atomic
from .status import UnitStatus
from .submission import Submission
from .summary_charts import CHART_MAX_UNITS, PETITION_TOPICS, PETITIONS
from .summary_model import (
    DASH,
    IN,
    OUT,
    RATIOS,
    STATE_ORDER,
    STATE_SHORT,
    Block,
    IndicatorColumn,
    Model,
    Ratio,
    UnitRow,
    build_model,
    column_total,
    comparison,
    indicator_columns,
    number_of,
    row_ratio,
    section_numbers,
    self_scores,
)
from .summary_sections import section_plans
from .summary_sheet import (
    EXCEL_MAX_ROWS,
    FONT,
    LINE_PT,
    SHEET_CHARTS,
    SHEET_COVER,
    SHEET_FINDINGS,
    SHEET_SCORES,
    SHEET_STATUS,
    SHEET_TABLE,
    Sheet,
    Styles,
)
from .summary_text import EXCEL_MAX_CHARS, TRUNCATED, csv_cell, render_csv, safe_text, short_name
from .summary_xlsx import render_xlsx
from .summary_xml import no_cyclic_gc
from .units import Register
from .workspace import Office, Workspace

# ====================================================================== public API

@dataclass(frozen=True)
class CompileResult:
    """What ``danvan compile`` wrote and the counts it prints.

    ``units_excluded_with_errors`` counts units left out of the totals because their latest check
    has errors or they sent two conflicting files (0 with ``include_with_errors``).
    """

    path: Path
    csv_path: Path
    units_included: int
    units_excluded_with_errors: int
    missing: int
    expected: int = 0
    received: int = 0
    late: int = 0
    conflicts: int = 0
    errors_open: int = 0
    warnings_open: int = 0
    include_with_errors: bool = False
    as_of: dt.datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path), "csv_path": str(self.csv_path), "units_included": self.units_included,
            "units_excluded_with_errors": self.units_excluded_with_errors, "missing": self.missing,
            "expected": self.expected, "received": self.received, "late": self.late, "conflicts": self.conflicts,
            "errors_open": self.errors_open, "warnings_open": self.warnings_open,
            "include_with_errors": self.include_with_errors,
            "as_of": self.as_of.isoformat(timespec="seconds") if self.as_of else None,
        }


def compile_summary(
    ws: Workspace, out: Path | None = None, *, include_with_errors: bool = False, as_of: dt.datetime | None = None,
) -> CompileResult:
    """Write the year's summary workbook and its indicator table as CSV (UTF-8 with BOM).

    :param ws: the workspace; its ledger is opened read-only (a missing ledger means nothing received).
    :param out: the .xlsx path; default ``reports/tong-hop-<year>.xlsx``. The CSV goes next to it.
    :param include_with_errors: also count units whose latest check has errors (they are marked).
    :param as_of: the time the figures are "as of"; default the newest submission's received time,
        so compiling the same ledger twice gives identical bytes.
    """
    with no_cyclic_gc():  # millions of objects, no reference cycles: full collections cost half of decoding
        return _compile(ws, out, include_with_errors=include_with_errors, as_of=as_of)


def _compile(ws: Workspace, out: Path | None, *, include_with_errors: bool, as_of: dt.datetime | None) -> CompileResult:
    from .ledger import Ledger
    from .status import compute_status

    form, register = ws.load_form(), ws.load_register()
    current: list[Submission] = []
    findings: dict[int, list[Finding]] = {}
    prev: dict[str, dict[str, Any]] = {}
    if ws.ledger_path.exists():
        with Ledger.open_readonly(ws.ledger_path) as ledger:
            current = ledger.current_submissions_bulk(form.id, ws.year)
            findings = ledger.current_findings(form.id, ws.year)
            prev = ledger.current_values(form.id, ws.year - 1)
            statuses = compute_status(ledger, form, register, ws.year, ws.deadline)
    else:
        statuses = [UnitStatus(u, "missing") for u in register]
    when = as_of or default_as_of(current, ws.deadline)
    model = build_model(form, ws.office, register, ws.year, ws.deadline, current, findings, statuses,
                        prev=prev, include_with_errors=include_with_errors, as_of=when)
    path = Path(out) if out else ws.reports_dir / f"tong-hop-{ws.year}.xlsx"
    if path.suffix.lower() != ".xlsx":
        raise ConfigError(f"Tệp tổng hợp {path} phải có đuôi .xlsx (bản CSV được ghi cạnh nó).")
    csv_path = path.with_suffix(".csv")
    prepare_dir(path.parent)  # created if needed; temporary files of a killed run removed
    side = _SideWork(model)  # on the second core while this one renders the workbook
    try:
        write_atomic(path, render_xlsx(model, side.section_plans))
        write_atomic(csv_path, side.csv())
    finally:
        side.discard()
    counts = model.counts()
    return CompileResult(
        path=path, csv_path=csv_path, units_included=counts["included"],
        units_excluded_with_errors=counts["excluded_with_errors"], missing=counts["missing"],
        expected=counts["expected"], received=counts["received"], late=counts["late"], conflicts=counts["conflict"],
        errors_open=counts["errors_open"], warnings_open=counts["warnings_open"],
        include_with_errors=include_with_errors, as_of=when,
    )


class _SideWork:
    """What a forked child works out while the parent renders the workbook: the section sheets' texts
    cut into row pieces (needed when the parent reaches those sheets) and the CSV copy. When no child
    could be used, the parent computes each itself when it needs it; the bytes are the same."""

    def __init__(self, model: Model) -> None:
        self.model = model
        self.job = in_child(lambda: pickle.dumps((section_plans(model), render_csv(model)), pickle.HIGHEST_PROTOCOL))
        self.done: tuple[dict[str, Any] | None, bytes | None] | None = None

    def _result(self) -> tuple[dict[str, Any] | None, bytes | None]:
        if self.done is None:
            data = self.job.result()
            self.done = pickle.loads(data) if data is not None else (None, None)
        return self.done

    def section_plans(self) -> dict[str, Any] | None:
        return self._result()[0]  # None: each section sheet works out its own

    def csv(self) -> bytes:
        data = self._result()[1]
        return render_csv(self.model) if data is None else data

    def discard(self) -> None:
        self.job.discard()


def build_summary(
    form: Form, office: Office, register: Register, year: int, deadline: dt.date, current: Sequence[Submission],
    findings: Mapping[int, Sequence[Finding]], statuses: Sequence[UnitStatus], *,
    prev: Mapping[str, Mapping[str, Any]] | None, include_with_errors: bool, as_of: dt.datetime,
) -> bytes:
    """The summary workbook's bytes; pure and deterministic (same inputs, same bytes).

    :param current: the current submission of each unit that reported (any order).
    :param findings: submission id → its latest check's findings.
    :param statuses: one :class:`UnitStatus` per register unit (``status.compute_status``).
    :param prev: last year's current values per unit (``ledger.current_values(form.id, year - 1)``).
    """
    model = build_model(form, office, register, year, deadline, current, findings, statuses,
                        prev=prev, include_with_errors=include_with_errors, as_of=as_of)
    return render_xlsx(model)


def default_as_of(current: Sequence[Submission], deadline: dt.date) -> dt.datetime:
    """The newest submission's received time; the deadline's midnight when nothing arrived."""
    if current:
        return max(s.received_at for s in current)
    return dt.datetime.combine(deadline, dt.time())


__all__ = [
    "CHART_MAX_UNITS", "DASH", "EXCEL_MAX_CHARS", "EXCEL_MAX_ROWS", "FONT", "IN", "LINE_PT", "OUT", "PETITIONS",
    "PETITION_TOPICS", "RATIOS", "SHEET_CHARTS", "SHEET_COVER", "SHEET_FINDINGS", "SHEET_SCORES", "SHEET_STATUS",
    "SHEET_TABLE", "STATE_ORDER", "STATE_SHORT", "TRUNCATED", "Block", "CompileResult", "IndicatorColumn", "Model",
    "Ratio", "Sheet", "Styles", "UnitRow", "build_model", "build_summary", "column_total", "comparison",
    "compile_summary", "csv_cell", "default_as_of", "indicator_columns", "number_of", "render_csv", "render_xlsx",
    "row_ratio", "safe_text", "section_numbers", "self_scores", "short_name",
]
