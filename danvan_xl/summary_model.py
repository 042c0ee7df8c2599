"""The district summary's model: which unit is in which block and state, what counts, and the
arithmetic behind every cached value (totals, ratios, comparison with last year, self scores).

Pure data, no Excel: the renderers (``summary_xlsx`` and the sheet modules, ``summary_text.render_csv``)
only lay out what is decided here.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .expr import NA
from .findings import Finding
from .form import Field, Form
from .status import UnitStatus
from .submission import Submission, Value
from .units import Register, Unit
from .vocabulary import NA_TEXT, Kind, Severity, ValueState
from .workspace import Office

DASH = "—"
IN, OUT = "Có", "Không"
STATE_SHORT = {"accepted": "Không lỗi", "with_errors": "Còn lỗi", "conflict": "Xung đột", "missing": "Chưa nộp"}
STATE_ORDER = ("accepted", "with_errors", "conflict", "missing")
_ROMAN = re.compile(r"^[IVXLC]+$")
_PLAIN = (int, float)  # exact types: a bool is an int but never a number here


@dataclass(frozen=True)
class Ratio:
    """A percentage recomputed from counts: sum(numerator) / sum(denominator), never averaged."""

    id: str
    label: str
    numerator: tuple[str, ...]
    denominator: tuple[str, ...]

    @property
    def fields(self) -> tuple[str, ...]:
        return self.numerator + self.denominator


# Ratios shown next to their counts; a ratio whose fields the form lacks is simply left out.
RATIOS = (
    Ratio("ty_le_cbccvc_vi_pham", "Tỷ lệ cán bộ, công chức, viên chức vi phạm", ("cbccvc_vi_pham",), ("cbccvc_tong",)),
    Ratio("ty_le_tthc_dung_han", "Tỷ lệ hồ sơ thủ tục hành chính giải quyết đúng hạn", ("tthc_dung_han",),
          ("tthc_dung_han", "tthc_qua_han")),
)


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
        value = ValueState.VALUE  # number_of(v), inlined: ~80 values per unit
        return {k: v.value for k, v in self.submission.data.values.items()
                if v.state == value and (type(v.value) in _PLAIN or number_of(v) is not None)}

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

    @functools.cached_property
    def totals(self) -> dict[str, tuple[list[Any], Any]]:
        """Column key → (each block's total, the grand total), as :func:`column_total` computes them."""
        return {c.key: column_totals(c, self.blocks) for c in self.columns}

    @functools.cached_property
    def with_prev(self) -> tuple[tuple[UnitRow, Mapping[str, Any]], ...]:
        """Included units with last year's values ({} when there are none), for comparisons."""
        empty: Mapping[str, Any] = {}
        return tuple((r, self.prev.get(r.unit.code, empty)) for r in self.included)

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
    number = row.numbers.get
    for fid in ratio.fields:
        if number(fid) is None:
            return None
    den = sum([number(fid) or 0 for fid in ratio.denominator])
    if den <= 0:
        return None
    return sum([number(fid) or 0 for fid in ratio.numerator]) / den


def column_total(col: IndicatorColumn, rows: Sequence[UnitRow]) -> Any:
    """The total of included rows: a number, ``NA_TEXT`` (all said không phát sinh), "" or "—"."""
    if not col.summable:
        return DASH
    included = [r for r in rows if r.included]
    if col.ratio is not None:
        ratio = col.ratio
        complete = [r for r in included if row_ratio(r, ratio) is not None]
        den = sum(r.numbers.get(f) or 0 for r in complete for f in ratio.denominator)
        num = sum(r.numbers.get(f) or 0 for r in complete for f in ratio.numerator)
        return num / den if den else ""
    key = col.key
    numbers = [n for r in included if (n := r.numbers.get(key)) is not None]
    if numbers:
        return sum(numbers)
    if any((v := r.value(key)) is not None and v.state == ValueState.NA for r in included):
        return NA_TEXT
    return ""


def column_totals(col: IndicatorColumn, blocks: Sequence[Block]) -> tuple[list[Any], Any]:
    """:func:`column_total` of each block's rows and of all rows, reading each row once.

    The grand total adds the same numbers in the same order as ``column_total(col, model.rows)``
    (the blocks' rows one after another), so it is the same float to the last bit.
    """
    if not col.summable:
        return [DASH] * len(blocks), DASH
    per_block: list[Any] = []
    if col.ratio is not None:
        ratio = col.ratio
        nums: list[float | int] = []
        dens: list[float | int] = []
        for block in blocks:
            complete = [r for r in block.rows if r.included and row_ratio(r, ratio) is not None]
            den = [r.numbers.get(f) or 0 for r in complete for f in ratio.denominator]
            num = [r.numbers.get(f) or 0 for r in complete for f in ratio.numerator]
            per_block.append(sum(num) / sum(den) if sum(den) else "")
            nums += num
            dens += den
        return per_block, (sum(nums) / sum(dens) if sum(dens) else "")
    key = col.key
    every: list[float | int] = []
    any_na = False
    for block in blocks:
        included = [r for r in block.rows if r.included]
        numbers = [n for r in included if (n := r.numbers.get(key)) is not None]
        na = not numbers and any((v := r.value(key)) is not None and v.state == ValueState.NA for r in included)
        per_block.append(sum(numbers) if numbers else NA_TEXT if na else "")
        every += numbers
        any_na = any_na or na
    return per_block, (sum(every) if every else NA_TEXT if any_na else "")


def comparison(model: Model, col: IndicatorColumn) -> tuple[float | None, float | None, int]:
    """(last year, this year, units compared) over included units with numbers in both years."""
    key, ratio = col.key, col.ratio
    if ratio is not None:
        prev_rows = [(r, b) for r, b in model.with_prev if _ratio_of(b, ratio) is not None and row_ratio(r, ratio) is not None]
        if not prev_rows:
            return None, None, 0
        old = _div(sum(_plain_number(b.get(f)) or 0 for _r, b in prev_rows for f in ratio.numerator),
                   sum(_plain_number(b.get(f)) or 0 for _r, b in prev_rows for f in ratio.denominator))
        new = _div(sum(r.numbers.get(f) or 0 for r, _b in prev_rows for f in ratio.numerator),
                   sum(r.numbers.get(f) or 0 for r, _b in prev_rows for f in ratio.denominator))
        return old, new, len(prev_rows)
    olds: list[float | int] = []
    news: list[float | int] = []
    for r, before in model.with_prev:  # the same terms, in the same order, as summing row by row
        v = before.get(key)
        if v is None:
            continue
        n = r.numbers.get(key)
        if n is not None and (type(v) in _PLAIN or _plain_number(v) is not None):
            olds.append(v or 0)
            news.append(n or 0)
    return (sum(olds), sum(news), len(olds)) if olds else (None, None, 0)


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
    scores = [row.numbers.get(c.score_field) for c in form.rubric.criteria]
    numbers = [s for s in scores if s is not None]
    return scores, (sum(numbers) if numbers else None)
