"""What one returned workbook says: typed values with their cells, plus identity.

This is the plain data that flows from the reader to the ledger, the rules, the summary and the
narrative. Every value keeps its state (value / blank / không phát sinh / invalid), the sheet and
cell it came from, and the raw text when the unit typed something that is not a valid value.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from .expr import NA, Env
from .vocabulary import ValueState


@dataclass(frozen=True, slots=True)
class Value:
    field: str
    state: ValueState
    value: Any = None  # int | float | str | datetime.date | None
    raw: str | None = None  # the cell's content as text when it was not a clean value
    sheet: str = ""
    cell: str = ""

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        # A plain constructor call: ten times cheaper to unpickle than a slotted dataclass's state.
        return (Value, (self.field, self.state, self.value, self.raw, self.sheet, self.cell))

    @property
    def plain(self) -> Any:
        """The value for arithmetic and display: ``NA`` for "không phát sinh", None for blank/invalid."""
        if self.state == ValueState.VALUE:
            return self.value
        if self.state == ValueState.NA:
            return NA
        return None


@dataclass(frozen=True)
class SubmissionData:
    """The content of one returned workbook, normalised."""

    unit_code: str
    form_id: str
    form_version: str
    definition_hash: str
    year: int
    values: dict[str, Value] = field(default_factory=dict)
    tables: dict[str, list[dict[str, Value]]] = field(default_factory=dict)
    justifications: dict[str, str] = field(default_factory=dict)

    def plain(self) -> dict[str, Any]:
        """field id → value, ``NA`` or None."""
        return {k: v.plain for k, v in self.values.items()}

    def rows(self, table: str) -> list[dict[str, Any]]:
        """The filled rows of a repeating table as plain dicts."""
        return [{k: v.plain for k, v in row.items()} for row in self.tables.get(table, [])]

    def env(self, prev: dict[str, Any] | None = None, constants: dict[str, float] | None = None) -> Env:
        """The rule-evaluation environment (dates as Excel serials, like the template formulas).

        ``rows(table)`` counts rows whose first (key) column is filled, like the template's SUMPRODUCT(--(keys<>""))."""
        values = {k: _env_value(v.plain) for k, v in self.values.items()}
        rows = {t: sum(1 for r in rs if r and next(iter(r.values())).state != ValueState.BLANK)
                for t, rs in self.tables.items()}
        return Env(values, {k: _env_value(v) for k, v in (prev or {}).items()}, rows, constants or {})


def _env_value(value: Any) -> Any:
    if isinstance(value, dt.date):
        return float((value - dt.date(1899, 12, 30)).days)
    return value


@dataclass(frozen=True)
class Submission:
    """A stored version of a unit's submission, as the ledger returns it."""

    id: int
    unit_code: str
    received_at: dt.datetime
    source: str  # file path, "thư từ <sender>, <date>" …
    sha256: str
    state: str  # current | superseded | conflict
    data: SubmissionData
    errors: int = 0
    warnings: int = 0
    file_format: str = "xlsx"
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class PlainData:
    """Only the plain values of a submission (what :meth:`SubmissionData.plain` and
    :meth:`SubmissionData.rows` give), for readers that need no states, raw text or cells."""

    values: dict[str, Any] = field(default_factory=dict)
    tables: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def plain(self) -> dict[str, Any]:
        return self.values

    def rows(self, table: str) -> list[dict[str, Any]]:
        return self.tables.get(table, [])


@dataclass(frozen=True)
class PlainSubmission:
    """A current submission's id, unit, error count at its latest check and plain values."""

    id: int
    unit_code: str
    data: PlainData
    errors: int = 0
