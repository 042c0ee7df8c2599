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
"""

from __future__ import annotations

import csv
import datetime as dt
import functools
import io
import math
import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import xlsxwriter
from xlsxwriter.utility import xl_col_to_name, xl_rowcol_to_cell
from xlsxwriter.workbook import Workbook
from xlsxwriter.worksheet import Worksheet

from . import __version__
from .errors import ConfigError, TemplateBuildError
from .expr import NA
from .findings import Finding
from .form import Column, Field, Form, Section
from .fsio import write_atomic
from .status import STATE_VI, UnitStatus
from .submission import Submission, Value
from .textnorm import format_date_short, format_int, upper_vi
from .units import Register, Unit
from .vocabulary import NA_TEXT, Kind, Severity, ValueState
from .workspace import Office, Workspace

FONT = "Times New Roman"
LINE_PT = 12.9  # height of one wrapped line of 11-point Times New Roman, with leading
EXCEL_MAX_CHARS = 32_767
EXCEL_MAX_ROWS = 1_048_576
TRUNCATED = " … [đã cắt bớt: vượt giới hạn 32.767 ký tự của một ô Excel]"
DASH = "—"
IN, OUT = "Có", "Không"
CHART_MAX_UNITS = 40
STATE_SHORT = {"accepted": "Không lỗi", "with_errors": "Còn lỗi", "conflict": "Xung đột", "missing": "Chưa nộp"}
STATE_ORDER = ("accepted", "with_errors", "conflict", "missing")
# Fixed field ids of the bundled form (design.md §3.2) that the charts use; absent ids skip a chart.
PETITIONS = "don_tiep_nhan"
PETITION_TOPICS = ("don_btht_tdc", "don_tranh_chap_dat", "don_moi_truong", "don_khac")
# Excel's "_xHHHH_" escapes are handled by xlsxwriter; these characters are not valid XML at all.
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff]")
_ROMAN = re.compile(r"^[IVXLC]+$")
_SHORT_WORDS = (("Ủy ban nhân dân", "UBND"), ("Uỷ ban nhân dân", "UBND"), ("Hội đồng nhân dân", "HĐND"))


@dataclass(frozen=True)
class Ratio:
    """A percentage recomputed from counts: sum(numerator) / sum(denominator), never averaged."""

    id: str
    label: str
    numerator: tuple[str, ...]
    denominator: tuple[str, ...]


# Ratios shown next to their counts; a ratio whose fields the form lacks is simply left out.
RATIOS = (
    Ratio("ty_le_cbccvc_vi_pham", "Tỷ lệ cán bộ, công chức, viên chức vi phạm", ("cbccvc_vi_pham",), ("cbccvc_tong",)),
    Ratio("ty_le_tthc_dung_han", "Tỷ lệ hồ sơ thủ tục hành chính giải quyết đúng hạn", ("tthc_dung_han",),
          ("tthc_dung_han", "tthc_qua_han")),
)


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
    from .ledger import Ledger
    from .status import compute_status

    form, register = ws.load_form(), ws.load_register()
    current: list[Submission] = []
    findings: dict[int, list[Finding]] = {}
    prev: dict[str, dict[str, Any]] = {}
    if ws.ledger_path.exists():
        with Ledger.open_readonly(ws.ledger_path) as ledger:
            current = ledger.current_submissions(form.id, ws.year)
            findings = {s.id: ledger.findings(s.id) for s in current}
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
    write_atomic(path, render_xlsx(model))
    write_atomic(csv_path, render_csv(model))
    counts = model.counts()
    return CompileResult(
        path=path, csv_path=csv_path, units_included=counts["included"],
        units_excluded_with_errors=counts["excluded_with_errors"], missing=counts["missing"],
        expected=counts["expected"], received=counts["received"], late=counts["late"], conflicts=counts["conflict"],
        errors_open=counts["errors_open"], warnings_open=counts["warnings_open"],
        include_with_errors=include_with_errors, as_of=when,
    )


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


# ====================================================================== the model (pure data)

@dataclass(frozen=True)
class IndicatorColumn:
    """One column of the indicator table: a numeric field or a recomputed ratio."""

    key: str
    label: str
    unit: str
    section: str  # full section number, "I.2.4"
    summable: bool
    kind: str  # count | decimal | percent | ratio
    places: int = 0
    ratio: Ratio | None = None

    @property
    def fields(self) -> tuple[str, ...]:
        if self.ratio is None:
            return (self.key,)
        return tuple(dict.fromkeys(self.ratio.numerator + self.ratio.denominator))


@dataclass(frozen=True)
class UnitRow:
    """A register unit with its current submission (if any) and whether it counts in totals."""

    unit: Unit
    state: str  # accepted | with_errors | conflict | missing
    included: bool
    submission: Submission | None = None
    status: UnitStatus | None = None

    def value(self, field_id: str) -> Value | None:
        return None if self.submission is None else self.submission.data.values.get(field_id)

    @functools.cached_property
    def numbers(self) -> dict[str, float | int]:
        """Every field that holds a number (computed once; rows are read many times)."""
        if self.submission is None:
            return {}
        return {k: n for k, v in self.submission.data.values.items() if (n := number_of(v)) is not None}

    def number(self, field_id: str) -> float | int | None:
        return self.numbers.get(field_id)

    def mark(self) -> str:
        return STATE_SHORT[self.state]


@dataclass(frozen=True)
class Block:
    number: str  # Roman numeral of the block row
    name: str
    rows: tuple[UnitRow, ...]


@dataclass(frozen=True)
class Model:
    form: Form
    office: Office
    year: int
    deadline: dt.date
    as_of: dt.datetime
    include_with_errors: bool
    blocks: tuple[Block, ...]
    columns: tuple[IndicatorColumn, ...]
    findings: tuple[tuple[UnitRow, Finding], ...]
    prev: Mapping[str, Mapping[str, Any]]
    unknown_units: tuple[str, ...] = ()  # current submissions of units no longer in the register
    numbers: Mapping[str, str] = field(default_factory=dict)  # section id → full number

    @functools.cached_property
    def rows(self) -> tuple[UnitRow, ...]:
        return tuple(r for b in self.blocks for r in b.rows)

    @functools.cached_property
    def included(self) -> tuple[UnitRow, ...]:
        return tuple(r for r in self.rows if r.included)

    def counts(self) -> dict[str, int]:
        rows = self.rows
        by_state = {s: sum(1 for r in rows if r.state == s) for s in STATE_ORDER}
        open_findings = [f for _r, f in self.findings if not f.accepted]
        return {
            "expected": len(rows), "received": len(rows) - by_state["missing"], **by_state,
            "late": sum(1 for r in rows if r.status is not None and r.status.late),
            "included": sum(1 for r in rows if r.included),
            "excluded_with_errors": sum(1 for r in rows if r.state in ("with_errors", "conflict") and not r.included),
            "errors_open": sum(1 for f in open_findings if f.severity == Severity.ERROR),
            "warnings_open": sum(1 for f in open_findings if f.severity == Severity.WARNING),
            "warnings_accepted": sum(1 for _r, f in self.findings if f.accepted),
        }


def number_of(v: Value | None) -> float | int | None:
    """The number a value holds, or None (blank, "không phát sinh", invalid, text)."""
    if v is None or v.state != ValueState.VALUE:
        return None
    if isinstance(v.value, bool) or not isinstance(v.value, int | float):
        return None
    return v.value


def build_model(
    form: Form, office: Office, register: Register, year: int, deadline: dt.date, current: Sequence[Submission],
    findings: Mapping[int, Sequence[Finding]], statuses: Sequence[UnitStatus], *,
    prev: Mapping[str, Mapping[str, Any]] | None, include_with_errors: bool, as_of: dt.datetime,
) -> Model:
    """Decide, once, which unit is in which block, in which state, and whether it counts."""
    by_unit = {s.unit_code: s for s in current}
    by_status = {s.unit.code: s for s in statuses}
    rows = [_unit_row(u, by_unit.get(u.code), by_status.get(u.code), include_with_errors) for u in register]
    blocks = _blocks(rows)
    known = {u.code for u in register}
    ordered = [r for b in blocks for r in b.rows]
    return Model(
        form=form, office=office, year=year, deadline=deadline, as_of=as_of, include_with_errors=include_with_errors,
        blocks=blocks, columns=indicator_columns(form), findings=_findings(ordered, findings), prev=prev or {},
        unknown_units=tuple(sorted(c for c in by_unit if c not in known)), numbers=section_numbers(form),
    )


def _unit_row(unit: Unit, sub: Submission | None, status: UnitStatus | None, include_with_errors: bool) -> UnitRow:
    if status is not None and status.state == "conflict":
        state = "conflict"
    elif sub is None:
        state = "missing"
    else:
        state = "with_errors" if sub.errors > 0 else "accepted"
    included = sub is not None and (state == "accepted" or include_with_errors)
    return UnitRow(unit, state, included, sub, status)


def _blocks(rows: Sequence[UnitRow]) -> tuple[Block, ...]:
    names: list[str] = []
    for r in rows:  # blocks in order of first appearance in the register
        if r.unit.block not in names:
            names.append(r.unit.block)
    return tuple(Block(_roman(i + 1), name, tuple(r for r in rows if r.unit.block == name))
                 for i, name in enumerate(names))


def _roman(n: int) -> str:
    out = ""
    for value, letters in ((1000, "M"), (900, "CM"), (500, "D"), (400, "CD"), (100, "C"), (90, "XC"), (50, "L"),
                           (40, "XL"), (10, "X"), (9, "IX"), (5, "V"), (4, "IV"), (1, "I")):
        while n >= value:
            out += letters
            n -= value
    return out


def _findings(rows: Sequence[UnitRow], findings: Mapping[int, Sequence[Finding]]) -> tuple[tuple[UnitRow, Finding], ...]:
    """Open errors and warnings and accepted justifications, in register order, errors first."""
    rank = {Severity.ERROR: 0, Severity.WARNING: 1}
    out: list[tuple[UnitRow, Finding]] = []
    for row in rows:
        if row.submission is None:
            continue
        chosen = [f for f in findings.get(row.submission.id, ()) if f.severity in rank]
        chosen.sort(key=lambda f: (rank[f.severity], f.accepted))  # stable: keeps the check's order
        out.extend((row, f) for f in chosen)
    return tuple(out)


def section_numbers(form: Form) -> dict[str, str]:
    """section id → full number: "1" under "III" becomes "III.1" (numbering is data, domain.md §0.1)."""
    out: dict[str, str] = {}
    roman = ""
    for s in form.sections:
        if _ROMAN.match(s.number):
            roman = s.number
            out[s.id] = s.number
        elif s.number:
            out[s.id] = f"{roman}.{s.number}" if roman else s.number
        else:
            out[s.id] = ""
    return out


def indicator_columns(form: Form) -> tuple[IndicatorColumn, ...]:
    """Numeric input fields in section order (rubric scores excluded), each ratio after its last count."""
    numbers = section_numbers(form)
    scores = set()
    if form.rubric is not None:
        scores = {c.score_field for c in form.rubric.criteria} | {form.rubric.total_field}
    ratios = [r for r in RATIOS if all(fid in form.fields and form.fields[fid].is_numeric
                                       for fid in r.numerator + r.denominator)]
    placed: set[str] = set()
    out: list[IndicatorColumn] = []
    for section in form.sections:
        for fid in section.fields:
            f = form.fields[fid]
            if not (f.is_scalar and f.is_numeric and f.is_input) or fid in scores:
                continue
            out.append(_field_column(f, numbers.get(section.id, "")))
            placed.add(fid)
            for r in [r for r in ratios if set(r.numerator + r.denominator) <= placed]:
                summable = all(form.fields[x].summable for x in r.numerator + r.denominator)
                out.append(IndicatorColumn(r.id, r.label, "%", numbers.get(section.id, ""), summable, "ratio", 1, r))
                ratios.remove(r)
    return tuple(out)


def _field_column(f: Field, section: str) -> IndicatorColumn:
    kind = {Kind.COUNT: "count", Kind.PERCENT: "percent"}.get(f.kind, "decimal")
    places = 0 if f.kind == Kind.COUNT else f.places
    summable = f.summable and f.kind != Kind.PERCENT  # a percentage is never summed
    return IndicatorColumn(f.id, f.label, f.unit, section, summable, kind, places)


# ---------------------------------------------------------------------- arithmetic (cached values)

def row_ratio(row: UnitRow, ratio: Ratio) -> float | None:
    """A unit's own ratio; None unless every part is a number and the denominator is positive."""
    parts = [row.number(fid) for fid in ratio.numerator + ratio.denominator]
    if any(p is None for p in parts):
        return None
    den = sum(row.number(fid) or 0 for fid in ratio.denominator)
    if den <= 0:
        return None
    return sum(row.number(fid) or 0 for fid in ratio.numerator) / den


def column_total(col: IndicatorColumn, rows: Sequence[UnitRow]) -> Any:
    """The total of included rows: a number, ``NA_TEXT`` (all said không phát sinh), "" or "—"."""
    if not col.summable:
        return DASH
    included = [r for r in rows if r.included]
    if col.ratio is not None:
        complete = [r for r in included if row_ratio(r, col.ratio) is not None]
        den = sum(r.number(f) or 0 for r in complete for f in col.ratio.denominator)
        num = sum(r.number(f) or 0 for r in complete for f in col.ratio.numerator)
        return num / den if den else ""
    numbers = [n for r in included if (n := r.number(col.key)) is not None]
    if numbers:
        return sum(numbers)
    if any(r.value(col.key) is not None and r.value(col.key).state == ValueState.NA for r in included):
        return NA_TEXT
    return ""


def comparison(model: Model, col: IndicatorColumn) -> tuple[float | None, float | None, int]:
    """(last year, this year, units compared) over included units with numbers in both years."""
    prev_rows = []
    for r in model.included:
        before = model.prev.get(r.unit.code, {})
        if col.ratio is not None:
            old = _ratio_of(before, col.ratio)
            new = row_ratio(r, col.ratio)
        else:
            old, new = _plain_number(before.get(col.key)), r.number(col.key)
        if old is not None and new is not None:
            prev_rows.append((r, before))
    if not prev_rows:
        return None, None, 0
    if col.ratio is None:
        return (sum(_plain_number(b.get(col.key)) or 0 for _r, b in prev_rows),
                sum(r.number(col.key) or 0 for r, _b in prev_rows), len(prev_rows))
    ratio = col.ratio
    old = _div(sum(_plain_number(b.get(f)) or 0 for _r, b in prev_rows for f in ratio.numerator),
               sum(_plain_number(b.get(f)) or 0 for _r, b in prev_rows for f in ratio.denominator))
    new = _div(sum(r.number(f) or 0 for r, _b in prev_rows for f in ratio.numerator),
               sum(r.number(f) or 0 for r, _b in prev_rows for f in ratio.denominator))
    return old, new, len(prev_rows)


def _plain_number(v: Any) -> float | int | None:
    if v is None or v is NA or isinstance(v, bool) or not isinstance(v, int | float):
        return None
    return v


def _ratio_of(values: Mapping[str, Any], ratio: Ratio) -> float | None:
    parts = [_plain_number(values.get(f)) for f in ratio.numerator + ratio.denominator]
    if any(p is None for p in parts):
        return None
    den = sum(_plain_number(values.get(f)) or 0 for f in ratio.denominator)
    return _div(sum(_plain_number(values.get(f)) or 0 for f in ratio.numerator), den)


def _div(num: float, den: float) -> float | None:
    return num / den if den > 0 else None


def self_scores(form: Form, row: UnitRow) -> tuple[list[float | int | None], float | int | None]:
    """Per-criterion self scores and their total (blank when no criterion was scored)."""
    if form.rubric is None:
        return [], None
    scores = [row.number(c.score_field) for c in form.rubric.criteria]
    numbers = [s for s in scores if s is not None]
    return scores, (sum(numbers) if numbers else None)


# ====================================================================== safe text

def _is_clean(text: str) -> bool:
    """True when :func:`safe_text` would return ``text`` unchanged (the common case, checked in C)."""
    return (len(text) <= EXCEL_MAX_CHARS // 2 and "\r" not in text and unicodedata.is_normalized("NFC", text)
            and _CONTROL.search(text) is None)


def safe_text(value: Any) -> str:
    """NFC, newlines normalised, control characters stripped, cut to Excel's cell limit with a marker."""
    text = unicodedata.normalize("NFC", str(value)).replace("\r\n", "\n").replace("\r", "\n")
    text = _CONTROL.sub("", text)
    if len(text) > EXCEL_MAX_CHARS // 2 and _utf16_len(text) > EXCEL_MAX_CHARS:
        text = _cut_utf16(text, EXCEL_MAX_CHARS - len(TRUNCATED)) + TRUNCATED
    return text


def _utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def _cut_utf16(text: str, limit: int) -> str:
    """The longest prefix of ``text`` that fits ``limit`` UTF-16 code units (Excel counts those)."""
    used = 0
    for i, ch in enumerate(text):
        used += 2 if ord(ch) > 0xFFFF else 1
        if used > limit:
            return text[:i]
    return text


def csv_cell(value: Any) -> str:
    """A CSV field; text that starts like a formula gets a leading ' (OWASP CSV injection)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return IN if value else OUT
    if isinstance(value, int | float):
        return format(value, "g") if isinstance(value, float) else str(value)
    text = safe_text(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def short_name(name: str, limit: int = 40) -> str:
    """"Ủy ban nhân dân xã Phú Đức" → "UBND xã Phú Đức" (standard abbreviations), for chart labels."""
    for long, short in _SHORT_WORDS:
        name = name.replace(long, short)
    return name if len(name) <= limit else name[: limit - 1].rstrip() + "…"


def _header_footer(text: str) -> str:
    return text.replace("&", "&&")[:200]


def _vn_datetime(value: dt.datetime) -> str:
    return f"{value:%H:%M} ngày {format_date_short(value.date())}"


# ====================================================================== writing: checked cells, styles

class Sheet:
    """A worksheet whose every write is checked (xlsxwriter returns -1/-2 instead of raising).

    It also remembers how many wrapped lines each row needs: neither Excel nor LibreOffice
    re-fits row heights when opening a file, so :meth:`fit_rows` sets them from the text.
    """

    def __init__(self, ws: Worksheet) -> None:
        self.ws = ws
        self.name = ws.get_name()
        self.col_width: dict[int, float] = {}
        self.lines: dict[int, int] = {}
        self.fixed: set[int] = set()

    def _ok(self, rc: int | None, row: int, col: int, what: str = "ô") -> None:
        if rc not in (0, None):
            raise TemplateBuildError(
                f"Không ghi được {what} {self.name}!{xl_rowcol_to_cell(row, col)} vào bảng tổng hợp (mã lỗi {rc}).")

    def _measure(self, row: int, text: str, width: float, fmt: Any) -> None:
        if fmt is None or not fmt.text_wrap or len(text) * 1.45 <= width * 0.95 - 0.5:
            return  # not wrapped, or certainly one line
        scale = (fmt.font_size or 11) / 11 * (1.04 if fmt.bold else 1)
        n = _lines(text, width / scale) if len(text) > 200 else _lines_cached(text, width / scale)
        if n > self.lines.get(row, 1):
            self.lines[row] = n

    def text(self, row: int, col: int, value: Any, fmt: Any = None) -> None:
        text = value if type(value) is str and _is_clean(value) else safe_text(value)
        if self.ws.write_string(row, col, text, fmt):
            self._ok(-1, row, col)
        if fmt is not None and fmt.text_wrap:
            self._measure(row, text, self.col_width.get(col, 8.43), fmt)

    def num(self, row: int, col: int, value: float, fmt: Any = None) -> None:
        if self.ws.write_number(row, col, value, fmt):
            self._ok(-1, row, col)

    def blank(self, row: int, col: int, fmt: Any = None) -> None:
        if self.ws.write_blank(row, col, None, fmt):
            self._ok(-1, row, col)

    def maybe_num(self, row: int, col: int, value: float | None, fmt: Any) -> None:
        """A number, or a blank cell (same format) when there is none."""
        if value is None:
            self.blank(row, col, fmt)
        else:
            self.num(row, col, value, fmt)

    def formula(self, row: int, col: int, formula: str, fmt: Any, value: Any) -> None:
        cached = "" if value is None else value
        if isinstance(cached, str):
            cached = safe_text(cached)
        self._ok(self.ws.write_formula(row, col, formula, fmt, cached), row, col, "công thức")

    def datetime(self, row: int, col: int, value: dt.datetime, fmt: Any) -> None:
        self._ok(self.ws.write_datetime(row, col, value, fmt), row, col)

    def merge(self, first_row: int, first_col: int, last_row: int, last_col: int, text: str, fmt: Any) -> None:
        if first_row == last_row and first_col == last_col:
            self.text(first_row, first_col, text, fmt)
            return
        text = safe_text(text)
        self._ok(self.ws.merge_range(first_row, first_col, last_row, last_col, text, fmt),
                 first_row, first_col, "vùng gộp")
        if first_row == last_row:
            width = sum(self.col_width.get(c, 8.43) for c in range(first_col, last_col + 1))
            self._measure(first_row, text, width, fmt)

    def link(self, row: int, col: int, sheet: str, text: str, fmt: Any) -> None:
        self._ok(self.ws.write_url(row, col, f"internal:'{sheet}'!A1", fmt, safe_text(text)), row, col, "liên kết")

    def comment(self, row: int, col: int, text: str) -> None:
        self._ok(self.ws.write_comment(row, col, safe_text(text)[:2000], {
            "author": "danvan_xl", "x_scale": 2.2, "y_scale": 1.6, "font_name": FONT, "font_size": 10,
        }), row, col, "ghi chú")

    def widths(self, widths: Sequence[float]) -> None:
        for i, w in enumerate(widths):
            self._ok(self.ws.set_column(i, i, w), 0, i, "độ rộng cột")
            self.col_width[i] = w

    def set_row(self, row: int, height: float) -> None:
        """A fixed row height (titles); :meth:`fit_rows` leaves such rows alone."""
        self._ok(self.ws.set_row(row, min(409, height)), row, 0, "chiều cao dòng")
        self.fixed.add(row)

    def fit_rows(self) -> None:
        for row in sorted(self.lines):
            if row not in self.fixed:
                self._ok(self.ws.set_row(row, min(409, LINE_PT * self.lines[row] + 3)), row, 0, "chiều cao dòng")

    def page(self, footer: str, *, fit_width: bool = True, header_rows: tuple[int, int] | None = None,
             gridlines: bool = True) -> None:
        """A4 landscape, fitted to the page width, repeated header rows, page numbers in the footer."""
        ws = self.ws
        ws.set_paper(9)
        ws.set_landscape()
        ws.set_margins(left=0.5, right=0.4, top=0.55, bottom=0.6)
        ws.center_horizontally()
        if fit_width:
            ws.fit_to_pages(1, 0)
        if header_rows is not None:
            ws.repeat_rows(*header_rows)
        ws.set_footer(f'&L&"{FONT}"&9{_header_footer(footer)}&R&"{FONT}"&9Trang &P/&N')
        ws.hide_gridlines(1 if gridlines else 2)  # never print the grid; borders are drawn where they belong
        self.fit_rows()


_BORDER = {"border": 1, "border_color": "#808080"}


class Styles:
    """The workbook's cell formats, created once (xlsxwriter formats are workbook-wide)."""

    HEAD_FILL, TOTAL_FILL, BLOCK_FILL = "#DDEBF7", "#FCE4D6", "#F2F2F2"
    INVALID_FILL, INPUT_FILL, WARN_FILL = "#F8CBAD", "#FFF2CC", "#FFE699"

    def __init__(self, wb: Workbook) -> None:
        self.wb = wb
        self._cache: dict[tuple[Any, ...], Any] = {}
        base = {"font_name": FONT, "font_size": 11, "valign": "vcenter"}
        self.base = base
        add = wb.add_format
        cell = {**base, **_BORDER}
        self.title = add({**base, "bold": True, "font_size": 14, "align": "center", "text_wrap": True})
        self.title_left = add({**base, "bold": True, "font_size": 13})
        self.subtitle = add({**base, "italic": True, "align": "center", "text_wrap": True})
        self.subtitle_left = add({**base, "italic": True})
        self.head = add({**cell, "bold": True, "align": "center", "text_wrap": True, "bg_color": self.HEAD_FILL})
        self.head_small = add({**cell, "italic": True, "align": "center", "text_wrap": True, "font_size": 10,
                               "bg_color": self.HEAD_FILL})
        self.head_code = add({**cell, "align": "center", "font_size": 8, "font_color": "#595959",
                              "bg_color": self.HEAD_FILL, "text_wrap": True})
        self.text = add({**cell, "text_wrap": True})
        self.center = add({**cell, "align": "center", "text_wrap": True})
        self.bold = add({**cell, "bold": True, "text_wrap": True})
        self.untrusted = add({**cell, "text_wrap": True, "quote_prefix": True})
        self.paragraph = add({**cell, "text_wrap": True, "valign": "top", "quote_prefix": True})
        self.small = add({**cell, "text_wrap": True, "valign": "top", "font_size": 9, "quote_prefix": True})
        self.untrusted_center = add({**cell, "align": "center", "text_wrap": True, "quote_prefix": True})
        self.note = add({**base, "italic": True, "font_size": 10, "text_wrap": True, "valign": "top"})
        self.note_red = add({**base, "italic": True, "bold": True, "font_size": 10, "text_wrap": True,
                             "font_color": "#C00000", "valign": "top"})
        self.plain = add({**base})
        self.plain_bold = add({**base, "bold": True})
        self.plain_center = add({**base, "align": "center"})
        self.plain_center_bold = add({**base, "align": "center", "bold": True})
        self.link = add({**base, "font_color": "#1F4E79", "underline": 1})
        self.datetime = add({**cell, "align": "center", "num_format": "dd/mm/yyyy hh:mm"})
        self.input = add({**cell, "bg_color": self.INPUT_FILL, "locked": False, "num_format": "0.0#", "align": "center"})
        self.input_text = add({**cell, "bg_color": self.INPUT_FILL, "locked": False, "text_wrap": True})
        self.invalid = add({**cell, "bg_color": self.INVALID_FILL})
        self.code = add({**cell, "align": "center", "shrink": True})
        self.count_center = add({**cell, "align": "center", "num_format": "#,##0", "bold": True})
        self.status = {s: add({**cell, "align": "center", "text_wrap": True, **style}) for s, style in (
            ("accepted", {"font_color": "#375623"}), ("with_errors", {"font_color": "#C00000", "bold": True}),
            ("conflict", {"font_color": "#C65911", "bold": True}), ("missing", {"font_color": "#7F7F7F", "italic": True}),
        )}
        self.status_included_with_errors = add({**cell, "align": "center", "bold": True, "font_color": "#C00000",
                                                "bg_color": self.WARN_FILL, "text_wrap": True})

    def number(self, kind: str, places: int, role: str = "unit") -> Any:
        """Number format for a column kind; ``role`` is unit | excluded | block | total."""
        key = ("num", kind, places, role)
        if key not in self._cache:
            if kind == "ratio":
                num_format = "0.0%"
            elif kind == "count":
                num_format = "#,##0"
            else:
                num_format = "#,##0" + ("." + "0" * places if places else "")
            props = {**self.base, **_BORDER, "num_format": num_format, "align": "right"}
            props |= self._role(role)
            self._cache[key] = self.wb.add_format(props)
        return self._cache[key]

    def signed(self, kind: str, places: int) -> Any:
        """A change: "+12", "−3", "+2,5%" (Tăng (+), giảm (−))."""
        key = ("signed", kind, places)
        if key not in self._cache:
            body = "0.0%" if kind == "ratio" else "#,##0" + ("." + "0" * places if places else "")
            self._cache[key] = self.wb.add_format({**self.base, **_BORDER, "align": "right",
                                                   "num_format": f"+{body};-{body};{body}"})
        return self._cache[key]

    def fit(self, role: str) -> Any:
        """Centred text shrunk to the column width (short labels of total rows)."""
        key = ("fit", role)
        if key not in self._cache:
            self._cache[key] = self.wb.add_format({**self.base, **_BORDER, "align": "center", "shrink": True}
                                                  | self._role(role))
        return self._cache[key]

    def label(self, role: str, *, align: str = "left") -> Any:
        key = ("label", role, align)
        if key not in self._cache:
            role_props = {k: v for k, v in self._role(role).items() if k != "shrink"}  # wrap, not shrink
            props = {**self.base, **_BORDER, "text_wrap": True, "align": align} | role_props
            self._cache[key] = self.wb.add_format(props)
        return self._cache[key]

    def na(self, role: str) -> Any:
        key = ("na", role)
        if key not in self._cache:
            props = {**self.base, **_BORDER, "align": "center", "font_size": 9, "shrink": True,
                     "italic": True, "font_color": "#7F7F7F"} | {k: v for k, v in self._role(role).items() if k != "italic"}
            self._cache[key] = self.wb.add_format(props)
        return self._cache[key]

    def _role(self, role: str) -> dict[str, Any]:
        return {
            "unit": {}, "excluded": {"font_color": "#808080", "italic": True},
            "block": {"bold": True, "bg_color": self.BLOCK_FILL, "shrink": True},
            "total": {"bold": True, "bg_color": self.TOTAL_FILL, "shrink": True},
        }[role]


# ====================================================================== rendering

SHEET_COVER = "Bìa"
SHEET_TABLE = "Chỉ tiêu"
SHEET_CHARTS = "Biểu đồ"
SHEET_SCORES = "Chấm điểm"
SHEET_STATUS = "Tình hình nộp"
SHEET_FINDINGS = "Lỗi và cảnh báo"

TABLE_FIXED = (("TT", 5), ("Đơn vị", 30), ("Mã", 11), ("Tình trạng", 10), ("Tính vào tổng", 8))
COL_NAME, COL_CODE, COL_STATE, COL_INCL = 1, 2, 3, 4
TABLE_HEAD = 2  # first header row of the indicator table (rows 0–1: title, subtitle)
TABLE_FIRST = TABLE_HEAD + 4  # grand total row; blocks and units follow
INDICATOR_WIDTH = 11
PRINT_SCALE = 72
PAGE_PX = 1030  # printable width of A4 landscape with the margins above, in pixels at 100 %


class _Worksheet(Worksheet):
    """xlsxwriter's worksheet, minus ~100 regular-expression passes per formula.

    ``write_formula`` rewrites Excel 2010+ function names (``_xlfn.`` prefixes) with one regex each;
    the summary only uses classic functions (IF, SUM, SUMIFS, COUNTIF(S), SUMPRODUCT, ISNUMBER, AND,
    OR, N, COUNT, ROWS), so with tens of thousands of row formulas that work is pure cost.
    """

    def _prepare_formula(self, formula: str, expand_future_functions: bool = False) -> str:
        return formula[1:] if formula.startswith("=") else formula


def render_xlsx(model: Model) -> bytes:
    """Render the model as the summary workbook (deterministic: ``created`` is the as-of time)."""
    buffer = io.BytesIO()
    wb = xlsxwriter.Workbook(buffer, {
        "in_memory": True, "strings_to_formulas": False, "strings_to_urls": False, "strings_to_numbers": False,
        "default_format_properties": {"font_name": FONT, "font_size": 11},
    })
    try:
        _Renderer(model, wb).write()
        wb.close()
    except TemplateBuildError:
        raise
    except Exception as err:  # xlsxwriter raises a handful of types for misuse
        raise TemplateBuildError(f"Không tạo được bảng tổng hợp: {err}") from err
    return buffer.getvalue()


@dataclass(frozen=True)
class _CellPlan:
    col: int
    column: IndicatorColumn
    number: dict[str, Any]
    na: dict[str, Any]
    ratio_formula: str = ""  # with "{r}" for the 1-based row number


@dataclass
class _Plan:
    """Where things land, so that sheets written later can refer to them."""

    table_rows: dict[str, int] = field(default_factory=dict)  # unit code → row on "Chỉ tiêu"
    table_cols: dict[str, int] = field(default_factory=dict)  # column key → column on "Chỉ tiêu"
    table_range: tuple[int, int] = (0, 0)  # first and last unit rows (block rows inside are excluded by SUMIFS)
    score_total: dict[str, str] = field(default_factory=dict)  # unit code → A1 of its self total
    status_range: str = ""
    late_range: str = ""
    findings_range: tuple[str, str] = ("", "")  # severity and handling columns
    sheets: list[tuple[str, str]] = field(default_factory=list)  # (name, what it holds) for the index


class _Renderer:
    def __init__(self, model: Model, wb: Workbook) -> None:
        self.m = model
        self.wb = wb
        self.st = Styles(wb)
        self.plan = _Plan()
        self._cells: list[_CellPlan] = []
        self.footer = f"{model.office.name} — Tổng hợp {model.form.short_title} năm {model.year}"

    # ------------------------------------------------------------------ top level
    def write(self) -> None:
        m = self.m
        prev_name = f"So với năm {m.year - 1}"
        sections = [s for s in m.form.sections if self._paragraphs(s)]
        tables = list(m.form.tables())
        order: list[tuple[str, str, Callable[[Sheet], None] | None]] = [
            (SHEET_COVER, "thông tin chung, số lượng, cách tổng hợp", None),
            (SHEET_TABLE, "số liệu từng đơn vị, cộng khối và tổng cộng", self._table),
            (SHEET_CHARTS, "biểu đồ đơn thư, điểm tự chấm, tình hình nộp", None),
            (prev_name, f"thay đổi so với năm {m.year - 1}, trên cùng các đơn vị", self._compare),
        ]
        if m.form.rubric is not None:
            order.append((SHEET_SCORES, "điểm tự chấm, cột điểm thẩm định để Văn phòng nhập", self._scores))
        names = {SHEET_COVER.lower(), SHEET_TABLE.lower(), SHEET_CHARTS.lower(), prev_name.lower(),
                 SHEET_SCORES.lower(), SHEET_STATUS.lower(), SHEET_FINDINGS.lower()}
        for t in tables:
            name = _unique(_table_sheet_name(t.label), names)
            order.append((name, t.label, lambda sh, t=t: self._repeating(sh, t)))
        for s in sections:
            name = _unique(f"Mục {self.m.numbers.get(s.id) or s.number}", names)
            order.append((name, s.title, lambda sh, s=s: self._section(sh, s)))
        order += [(SHEET_STATUS, "tình hình nộp của từng đơn vị", self._status),
                  (SHEET_FINDINGS, "lỗi, cảnh báo chưa xử lý và giải trình đã chấp nhận", self._findings)]
        sheets = {name: Sheet(self.wb.add_worksheet(name, worksheet_class=_Worksheet)) for name, _what, _fn in order}
        self.plan.sheets = [(name, what) for name, what, _fn in order]
        for name, _what, fn in order:  # dependencies first; the cover and charts read the plan
            if fn is not None:
                fn(sheets[name])
        self._cover(sheets[SHEET_COVER])
        self._charts(sheets[SHEET_CHARTS])
        sheets[SHEET_COVER].ws.activate()
        self._properties()

    def _properties(self) -> None:
        m = self.m
        self.wb.set_properties({
            "title": f"Tổng hợp {m.form.title} năm {m.year}", "subject": m.form.title,
            "author": m.office.name or "danvan_xl", "company": m.office.name, "category": "Báo cáo tổng hợp",
            "keywords": f"{m.form.id}, {m.year}", "created": m.as_of,
            "comments": f"Biểu mẫu {m.form.id} phiên bản {m.form.version}; sinh bởi danvan_xl {__version__}",
        })
        for key, value in (("form_id", m.form.id), ("form_version", m.form.version),
                           ("definition_hash", m.form.definition_hash), ("year", str(m.year)),
                           ("as_of", m.as_of.isoformat(timespec="seconds"))):
            if self.wb.set_custom_property(f"danvan_{key}", value) not in (0, None):
                raise TemplateBuildError(f"Không ghi được thuộc tính tài liệu danvan_{key}")

    def _paragraphs(self, section: Section) -> list[Field]:
        if not section.number:  # "Thông tin chung" (nơi nhận) and the rubric are not report sections
            return []
        return [self.m.form.fields[f] for f in section.fields if self.m.form.fields[f].kind == Kind.PARAGRAPH]

    def _title(self, sh: Sheet, title: str, subtitle: str, last_col: int) -> None:
        width = sum(sh.col_width.get(c, 8.43) for c in range(last_col + 1))
        sh.set_row(0, max(30, 19 * _lines(title, width * 0.8) + 8))
        sh.merge(0, 0, 0, last_col, title, self.st.title)
        sh.merge(1, 0, 1, last_col, subtitle, self.st.subtitle)

    def _as_of_line(self) -> str:
        return f"Số liệu tính đến {_vn_datetime(self.m.as_of)}"

    def _state_cells(self, sh: Sheet, row: int, col: int, r: UnitRow, *, with_inclusion: bool = True) -> None:
        fmt = self.st.status[r.state]
        if r.included and r.state != "accepted":
            fmt = self.st.status_included_with_errors
        sh.text(row, col, r.mark(), fmt)
        if with_inclusion:
            sh.text(row, col + 1, IN if r.included else OUT, self.st.center)

    # ------------------------------------------------------------------ Chỉ tiêu
    def _table(self, sh: Sheet) -> None:
        m, st = self.m, self.st
        cols = m.columns
        first = len(TABLE_FIXED)
        last_col = first + len(cols) - 1 if cols else first - 1
        sh.widths([w for _h, w in TABLE_FIXED] + [INDICATOR_WIDTH] * len(cols))
        # Title in the repeated name column only, so it is never cut by a vertical page break.
        sh.set_row(0, 22)
        sh.merge(0, 0, 0, COL_NAME, f"CHỈ TIÊU NĂM {m.year}", st.title_left)
        sh.merge(1, 0, 1, COL_NAME, f"Tính đến {_vn_datetime(m.as_of)}", st.subtitle_left)
        breaks = self._page_breaks(first)
        self._table_header(sh, first, breaks)
        self._cells = self._cell_plans(first)
        for i, col in enumerate(cols):
            self.plan.table_cols[col.key] = first + i
        row = TABLE_FIRST + 1
        block_rows: list[int] = []
        unit_rows: list[int] = []
        for block in m.blocks:
            block_rows.append(row)
            start = row + 1
            for i, r in enumerate(block.rows, start=1):
                self._unit_row(sh, start + i - 1, i, r)
                self.plan.table_rows[r.unit.code] = start + i - 1
                unit_rows.append(start + i - 1)
            end = start + len(block.rows) - 1
            self._total_row(sh, row, f"{block.number}. {block.name}", block.rows, (start, end), "block", block.number)
            row = end + 1
        all_rows = (min(unit_rows), max(unit_rows)) if unit_rows else (TABLE_FIRST + 1, TABLE_FIRST + 1)
        self.plan.table_range = all_rows
        label = "TỔNG CỘNG" + (f" ({' + '.join(b.number for b in m.blocks)})" if len(m.blocks) > 1 else "")
        self._grand_total_row(sh, label, block_rows, all_rows)
        self._table_notes(sh, row + 1, (breaks[0] - 1) if breaks else last_col)
        sh.ws.freeze_panes(TABLE_FIRST, COL_NAME + 1)
        sh.page(self.footer, fit_width=False, header_rows=(TABLE_HEAD, TABLE_FIRST - 1))
        # Many indicator columns: instead of shrinking them to one unreadable page width, each printed
        # page carries whole sections and repeats the unit names (fit-to-page would override the breaks).
        sh.ws.repeat_columns(0, COL_NAME)
        sh.ws.set_print_scale(PRINT_SCALE)
        sh.ws.set_v_pagebreaks(breaks)
        sh.ws.set_header(f'&C&"{FONT},Bold"&11{_header_footer(f"Tổng hợp chỉ tiêu năm {m.year}")}')

    def _table_header(self, sh: Sheet, first: int, breaks: Sequence[int]) -> None:
        st, cols = self.st, self.m.columns
        h = TABLE_HEAD
        for c, (text, _w) in enumerate(TABLE_FIXED):
            sh.merge(h, c, h + 3, c, text, st.head)
        cut = {b - first for b in breaks}
        for section, start, end in _runs([c.section for c in cols], cut):
            width = (end - start + 1) * INDICATOR_WIDTH
            title = f"{section}. {self._section_title(section)}" if section else ""
            if start > 0 and cols[start - 1].section == section:
                title = f"{section} (tiếp)"
            sh.merge(h, first + start, h, first + end, _fit_words(title, width * 3.4), st.head)
        for i, col in enumerate(cols):
            c = first + i
            sh.text(h + 1, c, col.label, st.head)
            sh.text(h + 2, c, col.unit or "", st.head_small)
            sh.text(h + 3, c, col.key, st.head_code)

    def _section_title(self, number: str) -> str:
        for s in self.m.form.sections:
            if self.m.numbers.get(s.id) == number:
                return s.title
        return ""

    def _unit_row(self, sh: Sheet, row: int, index: int, r: UnitRow) -> None:
        st = self.st
        role = "unit" if r.included or r.state == "missing" else "excluded"
        sh.num(row, 0, index, st.label(role, align="center"))
        sh.text(row, COL_NAME, r.unit.name, st.label(role))
        sh.text(row, COL_CODE, r.unit.code, st.code)
        self._state_cells(sh, row, COL_STATE, r)
        values = r.submission.data.values if r.submission is not None else {}
        numbers = r.numbers
        for cell in self._cells:
            key = cell.column.key
            n = numbers.get(key)
            if n is not None:
                sh.num(row, cell.col, n, cell.number[role])
            else:
                self._value_cell(sh, row, cell, r, values.get(key), role)

    def _value_cell(self, sh: Sheet, row: int, cell: _CellPlan, r: UnitRow, v: Value | None, role: str) -> None:
        """A cell that is not a plain number: a ratio formula, blank, "không phát sinh" or invalid."""
        col, column = cell.col, cell.column
        if column.ratio is not None:
            sh.formula(row, col, cell.ratio_formula.format(r=row + 1), cell.number[role], row_ratio(r, column.ratio))
        elif v is None or v.state in (ValueState.BLANK, ValueState.VALUE):
            sh.blank(row, col, cell.number[role])
        elif v.state == ValueState.NA:
            sh.text(row, col, NA_TEXT, cell.na[role])
        else:  # invalid: never shown as a number; the finding says why
            sh.blank(row, col, self.st.invalid)
            shown = f"“{v.raw}”" if v.raw else "(không đọc được)"
            sh.comment(row, col, f"Giá trị không hợp lệ {shown} — không đưa vào tổng hợp. Xem trang “{SHEET_FINDINGS}”.")

    def _cell_plans(self, first: int) -> list[_CellPlan]:
        """Per indicator column: its position, formats per row role and (for ratios) a row formula."""
        plans = []
        letters = {c.key: xl_col_to_name(first + i) for i, c in enumerate(self.m.columns)}
        for i, column in enumerate(self.m.columns):
            number = {role: self.st.number(column.kind, column.places, role) for role in ("unit", "excluded")}
            na = {role: self.st.na(role) for role in ("unit", "excluded")}
            template = ""
            if column.ratio is not None:
                template = _ratio_formula(column.ratio, {f: f"{letters[f]}{{r}}" for f in column.fields})
            plans.append(_CellPlan(first + i, column, number, na, template))
        return plans

    def _total_row(self, sh: Sheet, row: int, label: str, rows: Sequence[UnitRow], rng: tuple[int, int], role: str,
                   number: str) -> None:
        st = self.st
        sh.text(row, 0, number, st.label(role, align="center"))
        sh.text(row, COL_NAME, label, st.label(role))
        for c in (COL_CODE, COL_STATE, COL_INCL):
            sh.blank(row, c, st.label(role))
        included = sum(1 for r in rows if r.included)
        sh.text(row, COL_STATE, f"{included}/{len(rows)} đơn vị", st.fit(role))
        for i, column in enumerate(self.m.columns):
            col = len(TABLE_FIXED) + i
            total = column_total(column, rows)
            if not column.summable:
                sh.text(row, col, DASH, st.label(role, align="center"))
                continue
            fmt = st.number(column.kind, column.places, role)
            if column.ratio is not None:
                sh.formula(row, col, self._ratio_total_formula(column, rng), fmt, total)
            else:
                sh.formula(row, col, _sum_formula(col, rng), fmt, total)

    def _grand_total_row(self, sh: Sheet, label: str, block_rows: Sequence[int], all_rows: tuple[int, int]) -> None:
        st, row = self.st, TABLE_FIRST
        sh.blank(row, 0, st.label("total"))
        sh.text(row, COL_NAME, label, st.label("total"))
        sh.blank(row, COL_CODE, st.label("total"))
        rows = self.m.rows
        sh.text(row, COL_STATE, f"{sum(1 for r in rows if r.included)}/{len(rows)} đơn vị", st.fit("total"))
        sh.blank(row, COL_INCL, st.label("total"))
        for i, column in enumerate(self.m.columns):
            col = len(TABLE_FIXED) + i
            total = column_total(column, rows)
            if not column.summable:
                sh.text(row, col, DASH, st.label("total", align="center"))
                sh.comment(row, col, _not_summed_note(column))
                continue
            fmt = st.number(column.kind, column.places, "total")
            if column.ratio is not None:
                formula = self._ratio_total_formula(column, all_rows)
            else:
                formula = _grand_formula([xl_rowcol_to_cell(r, col) for r in block_rows])
            sh.formula(row, col, formula, fmt, total)

    def _ratio_total_formula(self, column: IndicatorColumn, rng: tuple[int, int]) -> str:
        assert column.ratio is not None
        ratio_col = self.plan.table_cols[column.key]

        def part(fids: tuple[str, ...]) -> str:
            return "+".join(
                f'SUMIFS({_col_range(self.plan.table_cols[f], rng)},{_col_range(COL_INCL, rng, True)},"{IN}",'
                f'{_col_range(ratio_col, rng)},">=0")' for f in fids)

        den = part(column.ratio.denominator)
        return f'=IF(({den})=0,"",({part(column.ratio.numerator)})/({den}))'

    def _table_notes(self, sh: Sheet, row: int, last_col: int) -> None:
        m = self.m
        notes = [
            "Ghi chú:",
            f"- Cột “Tính vào tổng”: chỉ các đơn vị ghi “{IN}” được cộng vào số của khối và tổng cộng (công thức SUMIFS). "
            + ("Theo yêu cầu, đã tính cả đơn vị còn lỗi (ô tình trạng tô vàng)." if m.include_with_errors else
               "Đơn vị còn lỗi hoặc gửi hai tệp khác nhau không được cộng (chữ xám nghiêng) cho đến khi sửa xong."),
            "- “Chưa nộp”: đơn vị chưa gửi báo cáo; các ô để trống, không phải số 0.",
            f"- Ô trống: đơn vị không ghi số liệu; “{NA_TEXT}”: đơn vị ghi không phát sinh. Cả hai đều không được tính là 0.",
            f"- “{DASH}”: chỉ tiêu không cộng giữa các đơn vị vì một đơn, một lượt tiếp có thể được nhiều đơn vị "
            "cùng báo cáo (chuyển đơn, phối hợp tiếp dân) — cộng lại sẽ tính trùng; tỷ lệ do đơn vị tự nhập không cộng, "
            "không lấy trung bình.",
            "- Các tỷ lệ (%) được tính lại từ số liệu đếm: tổng tử số chia tổng mẫu số của các đơn vị có đủ số liệu.",
            f"- Ô tô đỏ nhạt: giá trị không hợp lệ, không đưa vào tổng hợp; xem trang “{SHEET_FINDINGS}”.",
        ]
        for i, text in enumerate(notes):
            sh.merge(row + i, 0, row + i, max(last_col, COL_INCL + 4), text, self.st.note)

    def _page_breaks(self, first: int) -> list[int]:
        """Vertical page breaks so that every printed page fits the width and sections stay whole
        where they can (a section wider than a page continues on the next one)."""
        capacity = PAGE_PX * 100 / PRINT_SCALE * 0.95
        repeated = sum(_px(w) for _h, w in TABLE_FIXED[: COL_NAME + 1])
        used = sum(_px(w) for _h, w in TABLE_FIXED)
        col_px = _px(INDICATOR_WIDTH)
        breaks: list[int] = []
        for _section, start, end in _runs([c.section for c in self.m.columns]):
            width = (end - start + 1) * col_px
            fresh = repeated + width <= capacity or capacity - used < 4 * col_px
            if used + width > capacity and used > repeated and fresh:
                breaks.append(first + start)
                used = repeated
            for i in range(start, end + 1):
                if used + col_px > capacity:
                    breaks.append(first + i)
                    used = repeated
                used += col_px
        return sorted(set(breaks))

    # ------------------------------------------------------------------ So với năm trước
    def _compare(self, sh: Sheet) -> None:
        m, st = self.m, self.st
        widths = (5, 12, 48, 10, 13, 13, 14, 13, 11)
        sh.widths(widths)
        self._title(sh, f"SO SÁNH VỚI NĂM {m.year - 1}",
                    f"Chỉ so sánh trên cùng các đơn vị được tính vào tổng và có số liệu cả hai năm — {self._as_of_line()}",
                    len(widths) - 1)
        head = ["TT", "Mục", "Chỉ tiêu", "Đơn vị tính", f"Năm {m.year - 1}", f"Năm {m.year}", "Tăng (+), giảm (−)",
                "Tỷ lệ tăng, giảm", "Số đơn vị so sánh"]
        for c, h in enumerate(head):
            sh.text(3, c, h, st.head)
        row = 4
        if not m.prev:
            sh.merge(row, 0, row, len(head) - 1,
                     f"Sổ cái chưa có số liệu năm {m.year - 1} của biểu mẫu này nên chưa so sánh được. "
                     f"Khi thu nhận báo cáo năm {m.year - 1} vào cùng không gian làm việc, bảng này sẽ được lập.", st.text)
            row += 1
        else:
            for i, col in enumerate([c for c in m.columns if c.summable], start=1):
                self._compare_row(sh, row, i, col)
                row += 1
        skipped = [c.label for c in m.columns if not c.summable]
        if skipped:
            sh.merge(row + 1, 0, row + 1, len(head) - 1,
                     "Không so sánh ở cấp huyện các chỉ tiêu không cộng được giữa các đơn vị: " + "; ".join(skipped) + ".",
                     st.note)
        sh.ws.freeze_panes(4, 0)
        sh.page(self.footer, header_rows=(3, 3))

    def _compare_row(self, sh: Sheet, row: int, index: int, col: IndicatorColumn) -> None:
        st = self.st
        old, new, n = comparison(self.m, col)
        kind, places = col.kind, col.places
        sh.num(row, 0, index, st.center)
        sh.text(row, 1, col.section, st.center)
        sh.text(row, 2, col.label, st.text)
        sh.text(row, 3, col.unit or "", st.center)
        for c, value in ((4, old), (5, new)):
            if value is None:
                sh.blank(row, c, st.number(kind, places))
            else:
                sh.num(row, c, value, st.number(kind, places))
        e, f = xl_rowcol_to_cell(row, 4), xl_rowcol_to_cell(row, 5)
        change = None if old is None or new is None else new - old
        sh.formula(row, 6, f'=IF(COUNT({e},{f})<2,"",{f}-{e})', st.signed(kind, places), change)
        if col.ratio is None:
            rel = None if change is None or not old else change / old
            sh.formula(row, 7, f'=IF(OR(COUNT({e},{f})<2,N({e})=0),"",({f}-{e})/{e})', st.signed("ratio", 1), rel)
        else:
            sh.text(row, 7, "(điểm %)", st.center)
        sh.num(row, 8, n, st.number("count", 0))

    # ------------------------------------------------------------------ Chấm điểm
    def _scores(self, sh: Sheet) -> None:
        m, st = self.m, self.st
        rubric = m.form.rubric
        assert rubric is not None
        n = len(rubric.criteria)
        first = 4
        c_total, c_grade, c_appr, c_appr_grade, c_note = first + n, first + n + 1, first + n + 2, first + n + 3, first + n + 4
        sh.widths([5, 30, 11, 10] + [10] * n + [10, 11, 11, 11, 24])
        self._title(sh, f"TỔNG HỢP ĐIỂM TỰ CHẤM VÀ THẨM ĐỊNH CÔNG TÁC DÂN VẬN CHÍNH QUYỀN NĂM {m.year}",
                    f"{rubric.title} — {self._as_of_line()}", c_note)
        row = 2
        if rubric.sample:
            sh.merge(row, 0, row, c_note, rubric.note or "Thang điểm mẫu, chưa phải tiêu chí chính thức.", st.note_red)
        head = 3
        for c, text in enumerate(("TT", "Đơn vị", "Mã", "Tình trạng")):
            sh.merge(head, c, head + 1, c, text, st.head)
        lines = 1
        for i, crit in enumerate(rubric.criteria):
            sh.text(head, first + i, f"{i + 1}. {crit.title}", st.head)
            lines = max(lines, _lines(f"{i + 1}. {crit.title}", 10))
        for c, text in ((c_total, "Tổng điểm tự chấm"), (c_grade, "Xếp loại tự chấm"), (c_appr, "Điểm thẩm định"),
                        (c_appr_grade, "Xếp loại thẩm định"), (c_note, "Ghi chú thẩm định")):
            sh.text(head, c, text, st.head)
        for i, crit in enumerate(rubric.criteria):
            sh.text(head + 1, first + i, f"tối đa {_num_text(crit.max)}", st.head_small)
        sh.text(head + 1, c_total, f"tối đa {_num_text(rubric.max_total)}", st.head_small)
        for c in (c_grade, c_appr_grade, c_note):
            sh.blank(head + 1, c, st.head_small)
        sh.text(head + 1, c_appr, "Văn phòng nhập", st.head_small)
        row = head + 2
        rows = self.m.rows
        for i, r in enumerate(rows, start=1):
            self._score_row(sh, row, i, r, first, c_total)
            row += 1
        last = max(row - 1, head + 2)
        self._score_validation(sh, head + 2, last, c_appr, rubric.max_total)
        self._grade_counts(sh, row + 1, (head + 2, last), c_grade, c_appr_grade)
        sh.ws.freeze_panes(head + 2, 2)
        sh.page(self.footer, header_rows=(head, head + 1))

    def _score_row(self, sh: Sheet, row: int, index: int, r: UnitRow, first: int, c_total: int) -> None:
        st, rubric = self.st, self.m.form.rubric
        assert rubric is not None
        sh.num(row, 0, index, st.center)
        sh.text(row, 1, r.unit.name, st.text)
        sh.text(row, 2, r.unit.code, st.code)
        self._state_cells(sh, row, 3, r, with_inclusion=False)
        scores, total = self_scores(self.m.form, r)
        for i, crit in enumerate(rubric.criteria):
            v = r.value(crit.score_field)
            if v is not None and v.state == ValueState.INVALID:
                sh.blank(row, first + i, st.invalid)
            else:
                sh.maybe_num(row, first + i, scores[i], st.number("decimal", 1))
        rng = f"{xl_rowcol_to_cell(row, first)}:{xl_rowcol_to_cell(row, c_total - 1)}"
        total_cell = xl_rowcol_to_cell(row, c_total)
        self.plan.score_total[r.unit.code] = total_cell
        sh.formula(row, c_total, f'=IF(COUNT({rng})=0,"",SUM({rng}))', st.number("decimal", 1, "block"), total)
        grade = "" if total is None else rubric.grade(total)
        sh.formula(row, c_total + 1, f'=IF(ISNUMBER({total_cell}),{_grade_formula(rubric.grades, total_cell)},"")',
                   st.label("block", align="center"), grade)
        appraised = xl_rowcol_to_cell(row, c_total + 2)
        sh.blank(row, c_total + 2, st.input)
        sh.formula(row, c_total + 3, f'=IF(ISNUMBER({appraised}),{_grade_formula(rubric.grades, appraised)},"")',
                   st.label("block", align="center"), "")
        sh.blank(row, c_total + 4, st.input_text)

    def _score_validation(self, sh: Sheet, first: int, last: int, col: int, maximum: float) -> None:
        rc = sh.ws.data_validation(first, col, last, col, {
            "validate": "decimal", "criteria": "between", "minimum": 0, "maximum": maximum,
            "input_title": "Điểm thẩm định", "input_message": f"Nhập điểm thẩm định từ 0 đến {_num_text(maximum)}.",
            "error_title": "Điểm không hợp lệ", "error_message": f"Điểm thẩm định phải là số từ 0 đến {_num_text(maximum)}.",
        })
        sh._ok(rc, first, col, "kiểm tra dữ liệu")

    def _grade_counts(self, sh: Sheet, row: int, rng: tuple[int, int], c_grade: int, c_appr: int) -> None:
        st, rubric = self.st, self.m.form.rubric
        assert rubric is not None
        sh.text(row, 1, "Xếp loại", st.head)
        sh.text(row, 2, "Tự chấm", st.head)
        sh.text(row, 3, "Thẩm định", st.head)
        totals = [self_scores(self.m.form, r)[1] for r in self.m.rows]
        for i, (_minimum, label) in enumerate(rubric.grades, start=1):
            sh.text(row + i, 1, label, st.text)
            cached = sum(1 for t in totals if t is not None and rubric.grade(t) == label)
            sh.formula(row + i, 2, f'=COUNTIF({_col_range(c_grade, rng, True)},"{label}")', st.number("count", 0), cached)
            sh.formula(row + i, 3, f'=COUNTIF({_col_range(c_appr, rng, True)},"{label}")', st.number("count", 0), 0)

    # ------------------------------------------------------------------ repeating tables (Dân vận khéo)
    def _repeating(self, sh: Sheet, table: Field) -> None:
        st = self.st
        cols: tuple[Column, ...] = table.columns
        widths = [5, 30, 11, 10, 8] + [_column_width(c) for c in cols]
        sh.widths(widths)
        last = len(widths) - 1
        self._title(sh, upper_vi(_strip_parenthetical(table.label)) + f" NĂM {self.m.year}",
                    f"Mỗi mô hình một dòng, theo thứ tự đơn vị — {self._as_of_line()}", last)
        head = 3
        for c, h in enumerate(["TT", "Đơn vị", "Mã", "Tình trạng", "Tính vào tổng"] + [c.label for c in cols]):
            sh.text(head, c, h, st.head)
        row = head + 1
        index = 0
        for r in self.m.rows:
            for entry in self._table_rows(r, table.id):
                index += 1
                sh.num(row, 0, index, st.center)
                sh.text(row, 1, r.unit.name, st.text)
                sh.text(row, 2, r.unit.code, st.code)
                self._state_cells(sh, row, 3, r)
                for j, col in enumerate(cols):
                    self._table_value(sh, row, 5 + j, entry.get(col.id))
                row += 1
        if index == 0:
            sh.merge(row, 0, row, last, "Chưa có đơn vị nào liệt kê.", st.text)
            row += 1
        self._choice_counts(sh, row + 1, table, (head + 1, max(head + 1, row - 1)))
        sh.ws.freeze_panes(head + 1, 2)
        sh.page(self.footer, header_rows=(head, head))

    def _table_rows(self, r: UnitRow, table_id: str) -> list[dict[str, Value]]:
        if r.submission is None:
            return []
        rows = r.submission.data.tables.get(table_id, [])
        return [row for row in rows if any(v.state != ValueState.BLANK for v in row.values())]

    def _table_value(self, sh: Sheet, row: int, col: int, v: Value | None) -> None:
        st = self.st
        if v is None or v.state == ValueState.BLANK:
            sh.blank(row, col, st.untrusted)
        elif v.state == ValueState.INVALID:
            sh.text(row, col, v.raw or "", st.invalid)
        elif v.state == ValueState.NA:
            sh.text(row, col, NA_TEXT, st.na("unit"))
        elif isinstance(v.value, dt.date):
            sh.text(row, col, format_date_short(v.value), st.untrusted_center)
        elif (n := number_of(v)) is not None:
            sh.num(row, col, n, st.number("count", 0))
        else:
            sh.text(row, col, v.value, st.untrusted)

    def _choice_counts(self, sh: Sheet, row: int, table: Field, rng: tuple[int, int]) -> None:
        """Counts per choice (lĩnh vực, cấp công nhận) over the included units, as COUNTIFS formulas."""
        st, choices = self.st, self.m.form.choices
        choice_cols = [(j, c) for j, c in enumerate(table.columns) if c.choices and c.choices in choices]
        if not choice_cols:
            return
        counted = Counter((c.id, v.value) for r in self.m.included for e in self._table_rows(r, table.id)
                          for c in table.columns if (v := e.get(c.id)) is not None and v.state == ValueState.VALUE)
        sh.merge(row, 1, row, 3, "Số mô hình của các đơn vị được tính vào tổng", st.plain_bold)
        row += 1
        for j, col in choice_cols:
            sh.text(row, 1, col.label, st.head)
            sh.text(row, 2, "Số lượng", st.head)
            options = choices[col.choices]  # type: ignore[index]
            for k, choice in enumerate(options, start=1):
                sh.text(row + k, 1, choice, st.text)
                formula = (f'=COUNTIFS({_col_range(5 + j, rng, True)},"{choice}",'
                           f'{_col_range(4, rng, True)},"{IN}")')
                sh.formula(row + k, 2, formula, st.number("count", 0), counted[(col.id, choice)])
            row += len(options) + 2

    # ------------------------------------------------------------------ report sections (paragraphs)
    def _section(self, sh: Sheet, section: Section) -> None:
        """The units' texts for one report section, one row per unit that wrote something."""
        st = self.st
        paragraphs = self._paragraphs(section)
        text_width = 122 / len(paragraphs)
        widths = [5, 30] + [text_width] * len(paragraphs)
        sh.widths(widths)
        number = self.m.numbers.get(section.id) or section.number
        writers = [(r, texts) for r in self.m.rows if any(texts := [self._paragraph_text(r, f) for f in paragraphs])]
        self._title(sh, f"{number}. {section.title}",
                    f"Nội dung báo cáo của {len(writers)}/{len(self.m.rows)} đơn vị (đơn vị chưa nộp hoặc để trống "
                    f"mục này không có dòng) — {self._as_of_line()}", len(widths) - 1)
        head = 3
        for c, h in enumerate(["TT", "Đơn vị"] + [f.label for f in paragraphs]):
            sh.text(head, c, h, st.head)
        row = head + 1
        for i, (r, texts) in enumerate(writers, start=1):
            row = self._section_unit(sh, row, i, r, texts, text_width)
        sh.ws.freeze_panes(head + 1, 0)
        sh.page(self.footer, header_rows=(head, head))

    def _section_unit(self, sh: Sheet, row: int, index: int, r: UnitRow, texts: Sequence[str], width: float) -> int:
        """One unit's texts; a long text continues on extra rows (a row is at most 409 points high)."""
        st = self.st
        name_fmt = st.label("unit" if r.included or r.state == "missing" else "excluded")
        chunks = [_chunks(t, width) for t in texts]
        height = max(len(c) for c in chunks)
        for k in range(height):
            if k == 0:
                sh.num(row, 0, index, st.center)
                sh.text(row, 1, r.unit.name, name_fmt)
            else:
                sh.blank(row + k, 0, st.center)
                sh.text(row + k, 1, f"{r.unit.name} (tiếp)", name_fmt)
            for j, parts in enumerate(chunks):
                if k < len(parts) and parts[k]:
                    sh.text(row + k, 2 + j, parts[k], st.paragraph)
                else:
                    sh.blank(row + k, 2 + j, st.paragraph)
        return row + height

    def _paragraph_text(self, r: UnitRow, f: Field) -> str:
        v = r.value(f.id)
        if v is None or v.state != ValueState.VALUE or not isinstance(v.value, str):
            return ""
        return safe_text(v.value)

    # ------------------------------------------------------------------ Tình hình nộp
    def _status(self, sh: Sheet) -> None:
        st = self.st
        head = ["TT", "Mã", "Đơn vị", "Khối", "Tình trạng", "Thời điểm nhận", "Hạn nộp", "Số bản đã nhận",
                "Lỗi", "Cảnh báo chưa giải trình", "Tính vào tổng", "Nguồn (bản đang dùng)"]
        widths = (5, 11, 30, 15, 16, 14, 11, 9, 7, 11, 9, 40)
        sh.widths(widths)
        self._title(sh, f"TÌNH HÌNH NỘP BÁO CÁO NĂM {self.m.year}",
                    f"Hạn nộp {format_date_short(self.m.deadline)} — {self._as_of_line()}", len(head) - 1)
        for c, h in enumerate(head):
            sh.text(3, c, h, st.head)
        row = 4
        for i, r in enumerate(self.m.rows, start=1):
            self._status_row(sh, row, i, r)
            row += 1
        last = max(row - 1, 4)
        self.plan.status_range = f"'{SHEET_STATUS}'!{_col_range(4, (4, last), True)}"
        self.plan.late_range = f"'{SHEET_STATUS}'!{_col_range(6, (4, last), True)}"
        sh.ws.autofilter(3, 0, last, len(head) - 1)
        sh.ws.freeze_panes(4, 3)
        sh.page(self.footer, header_rows=(3, 3))

    def _status_row(self, sh: Sheet, row: int, index: int, r: UnitRow) -> None:
        st, s = self.st, r.status
        sh.num(row, 0, index, st.center)
        sh.text(row, 1, r.unit.code, st.code)
        sh.text(row, 2, r.unit.name, st.text)
        sh.text(row, 3, r.unit.block, st.text)
        sh.text(row, 4, STATE_VI[r.state], st.status[r.state])
        received = s.received_at if s is not None else (r.submission.received_at if r.submission else None)
        if received is not None:
            sh.datetime(row, 5, received, st.datetime)
        else:
            sh.blank(row, 5, st.center)
        on_time = "" if s is None or s.on_time is None else ("Đúng hạn" if s.on_time else "Nộp muộn")
        sh.text(row, 6, on_time, st.status["with_errors"] if on_time == "Nộp muộn" else st.center)
        version = s.version if s is not None else (1 if r.submission else 0)
        count = st.number("count", 0)
        sh.maybe_num(row, 7, version or None, count)
        sh.maybe_num(row, 8, r.submission.errors if r.submission else None, count)
        sh.maybe_num(row, 9, r.submission.warnings if r.submission else None, count)
        sh.text(row, 10, IN if r.included else OUT, st.center)
        source = s.source if s is not None and s.source else (r.submission.source if r.submission else "")
        sh.text(row, 11, source, st.small)

    # ------------------------------------------------------------------ Lỗi và cảnh báo
    def _findings(self, sh: Sheet) -> None:
        st = self.st
        head = ["TT", "Đơn vị", "Mã", "Mức độ", "Xử lý", "Trang", "Ô", "Mã trường", "Quy tắc", "Nội dung",
                "Giải trình của đơn vị", "Tệp"]
        widths = (5, 24, 11, 9, 12, 9, 6, 18, 16, 50, 34, 20)
        sh.widths(widths)
        self._title(sh, f"LỖI VÀ CẢNH BÁO CỦA CÁC BẢN NỘP ĐANG DÙNG NĂM {self.m.year}",
                    f"Lỗi, cảnh báo chưa xử lý và cảnh báo đã được đơn vị giải trình — {self._as_of_line()}", len(head) - 1)
        for c, h in enumerate(head):
            sh.text(3, c, h, st.head)
        row = 4
        limit = EXCEL_MAX_ROWS - 10
        for i, (r, f) in enumerate(self.m.findings, start=1):
            if row >= limit:
                sh.text(row, 1, f"… còn {len(self.m.findings) - i + 1} phát hiện không hiển thị (vượt số dòng của Excel).",
                        st.note)
                break
            self._finding_row(sh, row, i, r, f)
            row += 1
        if not self.m.findings:
            sh.merge(row, 0, row, len(head) - 1, "Không có lỗi hay cảnh báo nào.", st.text)
        last = max(row - 1, 4)
        self.plan.findings_range = (f"'{SHEET_FINDINGS}'!{_col_range(3, (4, last), True)}",
                                    f"'{SHEET_FINDINGS}'!{_col_range(4, (4, last), True)}")
        if self.m.findings:
            sh.ws.autofilter(3, 0, last, len(head) - 1)
        sh.ws.freeze_panes(4, 0)
        sh.page(self.footer, header_rows=(3, 3))

    def _finding_row(self, sh: Sheet, row: int, index: int, r: UnitRow, f: Finding) -> None:
        st = self.st
        sh.num(row, 0, index, st.center)
        sh.text(row, 1, r.unit.name, st.text)
        sh.text(row, 2, r.unit.code, st.code)
        severity_fmt = st.status["with_errors"] if f.severity == Severity.ERROR else st.status["conflict"]
        sh.text(row, 3, f.severity_vi, st.status["accepted"] if f.accepted else severity_fmt)
        sh.text(row, 4, "Đã giải trình" if f.accepted else "Chưa xử lý", st.center)
        for c, value in ((5, f.sheet), (6, f.cell), (7, f.field.replace(",", ", ")), (8, f.rule)):
            sh.text(row, c, value, st.untrusted_center if c in (5, 6) else st.small)
        sh.text(row, 9, f.message, st.untrusted)
        sh.text(row, 10, f.justification, st.untrusted)
        sh.text(row, 11, f.file, st.small)

    # ------------------------------------------------------------------ Bìa
    def _cover(self, sh: Sheet) -> None:
        m, st = self.m, self.st
        sh.widths((3, 44, 62, 3))
        office = m.office
        sh.text(0, 1, upper_vi(office.parent) if office.parent else "", st.plain_center)
        sh.text(1, 1, office.header_name or upper_vi(office.name), st.plain_center_bold)
        sh.text(0, 2, "CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM", st.plain_center_bold)
        sh.text(1, 2, "Độc lập - Tự do - Hạnh phúc", st.plain_center_bold)
        sh.set_row(3, 46)
        sh.merge(3, 1, 3, 2, f"TỔNG HỢP {upper_vi(m.form.title)} NĂM {m.year}", st.title)
        sh.merge(4, 1, 4, 2, f"Địa bàn: {office.area}" if office.area else "", st.subtitle)
        start, end = m.form.period(m.year)
        rows = [
            ("Cơ quan tổng hợp", office.name),
            ("Năm báo cáo", str(m.year)),
            ("Kỳ báo cáo (thời gian chốt số liệu)", f"Từ ngày {format_date_short(start)} đến ngày {format_date_short(end)}"),
            ("Hạn nộp của các đơn vị", format_date_short(m.deadline)),
            ("Số liệu tính đến", _vn_datetime(m.as_of)),
            ("Cách cộng số liệu", "Tính cả đơn vị còn lỗi (được đánh dấu)" if m.include_with_errors else
             "Chỉ cộng đơn vị đã nộp, không còn lỗi; đơn vị còn lỗi, chưa nộp không được cộng"),
        ]
        row = self._pairs(sh, 6, "Thông tin chung", rows)
        row = self._cover_counts(sh, row + 1)
        ident = [("Mã biểu mẫu", m.form.id), ("Phiên bản", m.form.version), ("Mã định danh (SHA-256)", m.form.definition_hash)]
        if m.form.rubric is not None and m.form.rubric.sample:
            ident.append(("Thang điểm", "Thang điểm MẪU — chưa phải tiêu chí chính thức của tỉnh"))
        row = self._pairs(sh, row + 1, "Biểu mẫu", ident)
        row = self._index(sh, row + 1)
        if m.unknown_units:
            sh.merge(row + 1, 1, row + 1, 2, "Có bản nộp của đơn vị không còn trong danh sách (không đưa vào tổng hợp): "
                     + ", ".join(m.unknown_units), st.note_red)
            row += 1
        sh.merge(row + 2, 1, row + 2, 2,
                 f"Lập tự động bằng danvan_xl {__version__} từ sổ cái của không gian làm việc. Không sửa số liệu trực tiếp "
                 "trong tệp này: sửa ở bản nộp của đơn vị, thu nhận lại rồi tổng hợp lại.", st.note)
        sh.page(self.footer, gridlines=False)

    def _pairs(self, sh: Sheet, row: int, heading: str, pairs: Sequence[tuple[str, str]]) -> int:
        st = self.st
        sh.merge(row, 1, row, 2, heading, st.head)
        for i, (label, value) in enumerate(pairs, start=1):
            sh.text(row + i, 1, label, st.bold)
            sh.text(row + i, 2, value, st.text)
        return row + len(pairs) + 1

    def _cover_counts(self, sh: Sheet, row: int) -> int:
        st, counts, plan = self.st, self.m.counts(), self.plan
        status, late = plan.status_range, plan.late_range
        sev, handled = plan.findings_range
        incl = f"'{SHEET_TABLE}'!{_col_range(COL_INCL, plan.table_range, True)}"
        items = [
            ("Số đơn vị phải báo cáo", f"=ROWS({status})", counts["expected"]),
            ("Đã nộp", f'=ROWS({status})-COUNTIF({status},"{STATE_VI["missing"]}")', counts["received"]),
            ("  trong đó: không lỗi", f'=COUNTIF({status},"{STATE_VI["accepted"]}")', counts["accepted"]),
            ("  còn lỗi", f'=COUNTIF({status},"{STATE_VI["with_errors"]}")', counts["with_errors"]),
            ("  có hai tệp khác nhau, chờ xử lý", f'=COUNTIF({status},"{STATE_VI["conflict"]}")', counts["conflict"]),
            ("Nộp muộn (sau hạn)", f'=COUNTIF({late},"Nộp muộn")', counts["late"]),
            ("Chưa nộp", f'=COUNTIF({status},"{STATE_VI["missing"]}")', counts["missing"]),
            ("Được tính vào số liệu tổng hợp", f'=COUNTIF({incl},"{IN}")', counts["included"]),
            ("Lỗi chưa sửa", f'=COUNTIFS({sev},"Lỗi",{handled},"Chưa xử lý")', counts["errors_open"]),
            ("Cảnh báo chưa giải trình", f'=COUNTIFS({sev},"Cảnh báo",{handled},"Chưa xử lý")', counts["warnings_open"]),
            ("Cảnh báo đã được giải trình", f'=COUNTIF({handled},"Đã giải trình")', counts["warnings_accepted"]),
        ]
        sh.merge(row, 1, row, 2, "Tình hình nộp và số liệu", st.head)
        for i, (label, formula, cached) in enumerate(items, start=1):
            sh.text(row + i, 1, label, st.bold if not label.startswith(" ") else st.text)
            sh.formula(row + i, 2, formula, st.count_center, cached)
        return row + len(items) + 1

    def _index(self, sh: Sheet, row: int) -> int:
        st = self.st
        sh.merge(row, 1, row, 2, "Các trang trong tệp", st.head)
        for i, (name, what) in enumerate(self.plan.sheets[1:], start=1):
            sh.link(row + i, 1, name, name, st.link)
            sh.text(row + i, 2, what, st.text)
        return row + len(self.plan.sheets)

    # ------------------------------------------------------------------ Biểu đồ
    def _charts(self, sh: Sheet) -> None:
        m = self.m
        sh.widths([10] * 14 + [3, 30, 12, 12, 12, 12])
        sh.ws.set_default_row(15)
        sh.text(0, 0, f"BIỂU ĐỒ TỔNG HỢP NĂM {m.year} — {self._as_of_line()}", self.st.title_left)
        sh.text(1, 0, f"Biểu đồ theo đơn vị chỉ gồm các đơn vị được tính vào tổng (cột “Tính vào tổng” ở trang "
                      f"“{SHEET_TABLE}”); số liệu của từng biểu đồ ở bên phải, từ cột {xl_col_to_name(DATA_COL)}.",
                self.st.subtitle_left)
        charts = [self._chart_topics, self._chart_petitions, self._chart_scores, self._chart_status]
        row, breaks = 3, []
        for make in charts:
            used = make(sh, row)  # rows taken: a chart page, a one-line note, or nothing
            row += used
            if used == CHART_ROWS:
                breaks.append(row)
        sh.page(self.footer, fit_width=False, gridlines=False)
        sh.ws.set_print_scale(CHART_SCALE)
        sh.ws.set_h_pagebreaks(breaks[:-1])
        sh.ws.print_area(0, 0, max(row, 2), 13)

    def _chart_rows(self, values: Callable[[UnitRow], float | None], rows: Iterable[UnitRow]) -> tuple[list[UnitRow], bool]:
        """Included units with a value; the largest CHART_MAX_UNITS when there are more."""
        chosen = [r for r in rows if r.included and values(r) is not None]
        if len(chosen) <= CHART_MAX_UNITS:
            return chosen, False
        ranked = sorted(enumerate(chosen), key=lambda p: (-(values(p[1]) or 0), p[0]))
        return [r for _i, r in ranked[:CHART_MAX_UNITS]], True

    def _chart_data(self, sh: Sheet, row: int, title: str, headers: Sequence[str]) -> None:
        st = self.st
        sh.text(row, DATA_COL, title, st.plain_bold)
        for j, h in enumerate(headers):
            sh.text(row + 1, DATA_COL + j, h, st.head)

    def _chart_topics(self, sh: Sheet, row: int) -> int:
        fields = [f for f in PETITION_TOPICS if f in self.plan.table_cols]
        if not fields:
            return 0

        def topics(r: UnitRow) -> float | None:
            nums = [r.number(f) for f in fields]
            return None if all(n is None for n in nums) else sum(n or 0 for n in nums)

        rows, top = self._chart_rows(topics, self.m.rows)
        if not rows:
            return self._no_chart(sh, row, "Chưa có đơn vị nào báo cáo số đơn theo nội dung.")
        names = [_topic_name(self.m.form.fields[f].label) for f in fields]
        self._chart_data(sh, row, "Số liệu biểu đồ: đơn theo nội dung", ["Đơn vị", *names])
        refs = [[self._table_ref(r, f) for f in fields] for r in rows]
        self._unit_series_table(sh, row + 2, rows, refs)
        title = "Đơn tiếp nhận theo nội dung, từng đơn vị" + (f" ({CHART_MAX_UNITS} đơn vị nhiều đơn nhất)" if top else "")
        chart = self._bar_chart(title, "Số đơn", stacked=True)
        colors = ("#2E75B6", "#C55A11", "#548235", "#7F7F7F")
        for j, name in enumerate(names):
            self._series(chart, name, row + 2, len(rows), DATA_COL + 1 + j, colors[j % len(colors)], labels="inside")
        return self._place(sh, chart, row)

    def _chart_petitions(self, sh: Sheet, row: int) -> int:
        if PETITIONS not in self.plan.table_cols:
            return 0
        rows, top = self._chart_rows(lambda r: r.number(PETITIONS), self.m.rows)
        if not rows:
            return self._no_chart(sh, row, "Chưa có đơn vị nào báo cáo số đơn tiếp nhận.")
        self._chart_data(sh, row, "Số liệu biểu đồ: số đơn tiếp nhận", ["Đơn vị", "Số đơn"])
        self._unit_series_table(sh, row + 2, rows, [[self._table_ref(r, PETITIONS)] for r in rows])
        title = "Số đơn tiếp nhận trong năm theo đơn vị" + (f" ({CHART_MAX_UNITS} đơn vị nhiều nhất)" if top else "")
        chart = self._bar_chart(title, "Số đơn")
        self._series(chart, "Số đơn tiếp nhận", row + 2, len(rows), DATA_COL + 1, "#2E75B6")
        return self._place(sh, chart, row)

    def _chart_scores(self, sh: Sheet, row: int) -> int:
        rubric = self.m.form.rubric
        if rubric is None:
            return 0
        rows, top = self._chart_rows(lambda r: self_scores(self.m.form, r)[1], self.m.rows)
        if not rows:
            return self._no_chart(sh, row, "Chưa có đơn vị nào tự chấm điểm.")
        self._chart_data(sh, row, "Số liệu biểu đồ: điểm tự chấm", ["Đơn vị", "Tổng điểm tự chấm"])
        refs = [[(f"=N('{SHEET_SCORES}'!{self.plan.score_total[r.unit.code]})", self_scores(self.m.form, r)[1])]
                for r in rows]
        self._unit_series_table(sh, row + 2, rows, refs)
        title = "Tổng điểm tự chấm theo đơn vị" + (f" ({CHART_MAX_UNITS} đơn vị điểm cao nhất)" if top else "")
        chart = self._bar_chart(title, f"Điểm (tối đa {_num_text(rubric.max_total)})", maximum=rubric.max_total)
        self._series(chart, "Tổng điểm tự chấm", row + 2, len(rows), DATA_COL + 1, "#548235", num_format="General")
        return self._place(sh, chart, row)

    def _chart_status(self, sh: Sheet, row: int) -> int:
        st, counts = self.st, self.m.counts()
        self._chart_data(sh, row, "Số liệu biểu đồ: tình hình nộp", ["Tình trạng", "Số đơn vị"])
        colors = {"accepted": "#548235", "with_errors": "#C00000", "conflict": "#C65911", "missing": "#A6A6A6"}
        for i, state in enumerate(STATE_ORDER):
            sh.text(row + 2 + i, DATA_COL, STATE_VI[state], st.text)
            sh.formula(row + 2 + i, DATA_COL + 1, f'=COUNTIF({self.plan.status_range},"{STATE_VI[state]}")',
                       st.number("count", 0), counts[state])
        chart = self.wb.add_chart({"type": "column"})
        chart.add_series({
            "name": "Số đơn vị", "categories": [SHEET_CHARTS, row + 2, DATA_COL, row + 5, DATA_COL],
            "values": [SHEET_CHARTS, row + 2, DATA_COL + 1, row + 5, DATA_COL + 1],
            "points": [{"fill": {"color": colors[s]}} for s in STATE_ORDER],
            "data_labels": {"value": True, "font": {"name": FONT, "size": 11, "bold": True}},
        })
        late = f"; {counts['late']} đơn vị nộp muộn" if counts["late"] else ""
        self._style_chart(chart, f"Tình hình nộp báo cáo ({counts['expected']} đơn vị phải nộp{late})")
        chart.set_y_axis(self._axis("Số đơn vị"))
        chart.set_x_axis({"num_font": {"name": FONT, "size": 11}})
        chart.set_legend({"none": True})
        return self._place(sh, chart, row)

    def _table_ref(self, r: UnitRow, fid: str) -> tuple[str, float]:
        cell = xl_rowcol_to_cell(self.plan.table_rows[r.unit.code], self.plan.table_cols[fid])
        return f"=N('{SHEET_TABLE}'!{cell})", r.number(fid) or 0

    def _unit_series_table(self, sh: Sheet, row: int, rows: Sequence[UnitRow],
                           refs: Sequence[Sequence[tuple[str, float | None]]]) -> None:
        st = self.st
        for i, (r, cells) in enumerate(zip(rows, refs, strict=True)):
            sh.text(row + i, DATA_COL, short_name(r.unit.name), st.text)
            for j, (formula, cached) in enumerate(cells):
                sh.formula(row + i, DATA_COL + 1 + j, formula, st.number("decimal", 1), cached or 0)

    def _bar_chart(self, title: str, axis: str, *, stacked: bool = False, maximum: float | None = None) -> Any:
        chart = self.wb.add_chart({"type": "bar", "subtype": "stacked"} if stacked else {"type": "bar"})
        self._style_chart(chart, title)
        chart.set_x_axis({**self._axis(axis), **({"max": maximum, "min": 0} if maximum else {"min": 0})})
        # First unit at the top; "crossing: max" keeps the value axis at the bottom after reversing.
        chart.set_y_axis({"reverse": True, "crossing": "max", "num_font": {"name": FONT, "size": 10},
                          "major_gridlines": {"visible": False}})
        if stacked:
            chart.set_legend({"position": "bottom", "font": {"name": FONT, "size": 10}})
        else:
            chart.set_legend({"none": True})
        return chart

    def _axis(self, name: str) -> dict[str, Any]:
        return {"name": name, "name_font": {"name": FONT, "size": 10, "bold": False},
                "num_font": {"name": FONT, "size": 9}, "num_format": "#,##0",
                "major_gridlines": {"visible": True, "line": {"color": "#D9D9D9"}}}

    def _style_chart(self, chart: Any, title: str) -> None:
        chart.set_title({"name": safe_text(title), "name_font": {"name": FONT, "size": 13, "bold": True}})
        chart.set_chartarea({"border": {"color": "#BFBFBF"}})
        chart.set_size({"width": CHART_WIDTH, "height": CHART_HEIGHT})

    def _series(self, chart: Any, name: str, row: int, n: int, col: int, color: str, *,
                labels: str = "outside_end", num_format: str = "#,##0;;;") -> None:
        font = {"name": FONT, "size": 9, **({"color": "#FFFFFF"} if labels == "inside" else {})}
        chart.add_series({
            "name": safe_text(name), "categories": [SHEET_CHARTS, row, DATA_COL, row + n - 1, DATA_COL],
            "values": [SHEET_CHARTS, row, col, row + n - 1, col], "fill": {"color": color}, "gap": 50,
            "data_labels": {"value": True, "num_format": num_format, "font": font,
                            "position": "center" if labels == "inside" else "outside_end"},
        })

    def _place(self, sh: Sheet, chart: Any, row: int) -> int:
        sh._ok(sh.ws.insert_chart(row, 0, chart, {"x_offset": 4, "y_offset": 4}), row, 0, "biểu đồ")
        return CHART_ROWS

    def _no_chart(self, sh: Sheet, row: int, message: str) -> int:
        """No unit has the figures: one line says so instead of an empty chart."""
        sh.merge(row, 0, row, 8, message, self.st.note)
        return 2


DATA_COL = 15  # chart data tables start in column P, outside the printed area
CHART_WIDTH, CHART_HEIGHT, CHART_ROWS, CHART_SCALE = 940, 600, 32, 95  # one chart per printed page


# ====================================================================== formula and layout helpers

def _col_range(col: int, rng: tuple[int, int], absolute: bool = False) -> str:
    a = xl_rowcol_to_cell(rng[0], col, absolute, absolute)
    b = xl_rowcol_to_cell(rng[1], col, absolute, absolute)
    return f"{a}:{b}"


def _sum_formula(col: int, rng: tuple[int, int]) -> str:
    """Sum of the included units' numbers; "không phát sinh" or blank when there is no number."""
    values = _col_range(col, rng)
    incl = _col_range(COL_INCL, rng, True)
    return (f'=IF(SUMPRODUCT(--({incl}="{IN}"),--ISNUMBER({values}))>0,SUMIFS({values},{incl},"{IN}"),'
            f'IF(COUNTIFS({incl},"{IN}",{values},"{NA_TEXT}")>0,"{NA_TEXT}",""))')


def _grand_formula(cells: Sequence[str]) -> str:
    """Grand total = sum of the block subtotals (which may be numbers, "không phát sinh" or blank)."""
    if not cells:
        return '=""'
    joined = ",".join(cells)
    na = "+".join(f'COUNTIF({c},"{NA_TEXT}")' for c in cells)
    return f'=IF(COUNT({joined})>0,SUM({joined}),IF({na}>0,"{NA_TEXT}",""))'


def _ratio_formula(ratio: Ratio, refs: Mapping[str, str]) -> str:
    parts = [refs[f] for f in dict.fromkeys(ratio.numerator + ratio.denominator)]
    den = "+".join(refs[f] for f in ratio.denominator)
    num = "+".join(refs[f] for f in ratio.numerator)
    checks = ",".join(f"ISNUMBER({p})" for p in parts)
    return f'=IF(AND({checks}),IF(({den})>0,({num})/({den}),""),"")'


def _grade_formula(grades: Sequence[tuple[float, str]], cell: str) -> str:
    formula = f'"{grades[-1][1]}"'
    for minimum, label in reversed(grades[:-1]):
        formula = f'IF({cell}>={_num_text(minimum, dot=True)},"{label}",{formula})'
    return formula


def _not_summed_note(column: IndicatorColumn) -> str:
    if column.kind == "percent":
        return "Tỷ lệ do từng đơn vị tự nhập: không cộng, không lấy trung bình."
    return ("Không cộng giữa các đơn vị: cùng một đơn, một lượt tiếp có thể được nhiều đơn vị báo cáo "
            "(chuyển đơn, phối hợp), cộng lại sẽ tính trùng.")


def _num_text(value: float, *, dot: bool = False) -> str:
    if float(value).is_integer():
        return str(int(value)) if dot else format_int(int(value))
    return repr(float(value)) if dot else f"{value:g}".replace(".", ",")


def _runs(values: Sequence[str], cut: Iterable[int] = ()) -> list[tuple[str, int, int]]:
    """Consecutive equal values as (value, first index, last index); a run also ends before ``cut``."""
    cuts = set(cut)
    out: list[tuple[str, int, int]] = []
    for i, v in enumerate(values):
        if out and out[-1][0] == v and i not in cuts:
            out[-1] = (v, out[-1][1], i)
        else:
            out.append((v, i, i))
    return out


def _px(width: float) -> int:
    """Column width in pixels as Excel computes it for the default font (xlsxwriter's rule)."""
    return int(width * 7 + 0.5) + 5 if width >= 1 else int(width * 12 + 0.5)


def _lines(text: str, width: float) -> int:
    """Wrapped lines of ``text`` in a column ``width`` characters wide, for 11-point Times New Roman.

    Short lines are word-wrapped with per-letter widths (capitals are wide, i/l/t and spaces
    narrow); long paragraphs use the average Vietnamese letter width, which is close enough there.
    """
    capacity = max(1.0, width * 0.95 - 0.5)
    total = 0
    for line in (text or " ").split("\n"):
        if len(line) * 1.3 <= capacity:
            total += 1
        elif len(line) > capacity * 4:
            total += math.ceil(len(line) * 0.8 / max(1.0, capacity - 2))
        else:
            total += _wrap(line.split(" "), capacity)
    return total


def _wrap(words: Sequence[str], capacity: float) -> int:
    lines, used = 1, 0.0
    for word in words:
        w = _word_width(word)
        if used and used + 0.5 + w <= capacity:
            used += 0.5 + w
        elif used:
            lines, used = lines + 1, w
        else:
            used = w
        while used > capacity:  # a word longer than the line is broken by the spreadsheet
            lines, used = lines + 1, used - capacity
    return lines


@functools.lru_cache(maxsize=65536)
def _lines_cached(text: str, width: float) -> int:
    return _lines(text, width)


@functools.lru_cache(maxsize=8192)
def _word_width(word: str) -> float:
    return sum(_char_width(c) for c in word)


@functools.lru_cache(maxsize=1024)
def _char_width(ch: str) -> float:
    base = unicodedata.normalize("NFD", ch)[:1] or " "
    if base in "iljtfrI.,;:'|!()[]/\"" or ch in "“”‘’":
        return 0.5
    if base in "mwMW":
        return 1.4
    return 1.3 if base.isupper() else 0.9


def _chunks(text: str, width: float, max_lines: int = 26) -> list[str]:
    """Split a long text at line (then word) boundaries into pieces that fit one 409-point row."""
    if not text:
        return [""]
    if _lines(text, width) <= max_lines:
        return [text]
    pieces: list[str] = []
    current: list[str] = []
    for line in _split_long(text.split("\n"), width, max_lines):
        if current and _lines("\n".join([*current, line]), width) > max_lines:
            pieces.append("\n".join(current))
            current = []
        current.append(line)
    if current:
        pieces.append("\n".join(current))
    return pieces


def _split_long(lines: Iterable[str], width: float, max_lines: int) -> Iterable[str]:
    limit = int(width * 1.15 * (max_lines - 1))
    for line in lines:
        while len(line) > limit:
            cut = line.rfind(" ", 0, limit)
            cut = cut if cut > limit // 2 else limit
            yield line[:cut]
            line = line[cut:].lstrip()
        yield line


def _fit_words(text: str, limit: float) -> str:
    if len(text) <= limit:
        return text
    cut = text.rfind(" ", 0, int(limit) - 1)
    return text[: cut if cut > 0 else int(limit) - 1].rstrip(" ,;") + "…"


def _strip_parenthetical(text: str) -> str:
    return re.sub(r"\s*\([^)]*\)", "", text).strip()


def _table_sheet_name(label: str) -> str:
    """"Danh sách mô hình “Dân vận khéo” (mỗi …)" → "Mô hình Dân vận khéo"."""
    name = _strip_parenthetical(label)
    name = re.sub(r"[“”\"'\[\]:*?/\\]", "", name)
    name = re.sub(r"^(?i:danh sách)\s+", "", name).strip()
    return (name[:1].upper() + name[1:])[:31] or "Bảng"


def _unique(name: str, taken: set[str]) -> str:
    name = re.sub(r"[\[\]:*?/\\]", "", name)[:31].strip("' ") or "Trang"
    candidate, i = name, 2
    while candidate.lower() in taken:
        suffix = f" ({i})"
        candidate = name[: 31 - len(suffix)] + suffix
        i += 1
    taken.add(candidate.lower())
    return candidate


def _topic_name(label: str) -> str:
    """"Theo nội dung: tranh chấp đất đai" → "Tranh chấp đất đai"."""
    name = label.split(":", 1)[-1].strip()
    return name[:1].upper() + name[1:]


def _column_width(col: Column) -> float:
    return 40 if col.kind == Kind.TEXT and col.max_length > 100 else 18


# ====================================================================== CSV

def render_csv(model: Model) -> bytes:
    """The indicator table as CSV (UTF-8 with BOM for Excel): grand total, block rows, unit rows."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow(["loai_dong", "tt", "khoi", "ma_don_vi", "ten_don_vi", "tinh_trang", "tinh_vao_tong",
                     *(c.key for c in model.columns)])
    rows = model.rows
    writer.writerow(["tong_cong", "", "", "", "TỔNG CỘNG", f"{sum(1 for r in rows if r.included)}/{len(rows)}", "",
                     *(csv_cell(column_total(c, rows)) for c in model.columns)])
    for block in model.blocks:
        writer.writerow(["cong_khoi", block.number, block.name, "", block.name,
                         f"{sum(1 for r in block.rows if r.included)}/{len(block.rows)}", "",
                         *(csv_cell(column_total(c, block.rows)) for c in model.columns)])
        for i, r in enumerate(block.rows, start=1):
            writer.writerow(["don_vi", i, block.name, csv_cell(r.unit.code), csv_cell(r.unit.name), r.mark(),
                             IN if r.included else OUT, *(csv_cell(_csv_value(r, c)) for c in model.columns)])
    return ("\ufeff" + buf.getvalue()).encode("utf-8")


def _csv_value(r: UnitRow, column: IndicatorColumn) -> Any:
    if column.ratio is not None:
        return row_ratio(r, column.ratio)
    v = r.value(column.key)
    if v is None:
        return None
    if v.state == ValueState.NA:
        return NA_TEXT
    return number_of(v)


__all__ = [
    "RATIOS", "Block", "CompileResult", "IndicatorColumn", "Model", "Ratio", "UnitRow", "build_model",
    "build_summary", "column_total", "compile_summary", "csv_cell", "default_as_of", "indicator_columns",
    "render_csv", "render_xlsx", "safe_text", "section_numbers",
]
