"""Completeness: who was expected, who answered, when, with how many problems; the chase list."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from .units import Unit

# States of a unit in the cycle, with their Vietnamese labels.
STATE_VI = {
    "missing": "Chưa nộp",
    "accepted": "Đã nhận, không lỗi",
    "with_errors": "Đã nhận, còn lỗi",
    "conflict": "Có hai tệp khác nhau, chờ xử lý",
}


@dataclass(frozen=True)
class UnitStatus:
    unit: Unit
    state: str  # missing | accepted | with_errors | conflict
    received_at: dt.datetime | None = None
    version: int = 0  # number of versions received (1 = first)
    submission_id: int | None = None
    on_time: bool | None = None  # None when not received
    errors: int = 0
    warnings: int = 0  # open warnings (not justified)
    source: str = ""
    conflict_ids: tuple[int, ...] = ()  # the submissions to choose from with ``danvan resolve``

    @property
    def received(self) -> bool:
        return self.state != "missing"

    @property
    def late(self) -> bool:
        return self.on_time is False

    @property
    def state_vi(self) -> str:
        return STATE_VI[self.state]

    def to_dict(self) -> dict[str, Any]:
        return {
            "unit": self.unit.code, "name": self.unit.name, "state": self.state, "state_vi": self.state_vi,
            "received_at": self.received_at.isoformat(timespec="seconds") if self.received_at else None,
            "version": self.version, "submission_id": self.submission_id, "on_time": self.on_time,
            "errors": self.errors, "warnings": self.warnings, "email": self.unit.email, "source": self.source,
            "conflict_ids": list(self.conflict_ids),
        }


def compute_status(ledger: Any, form: Any, register: Any, year: int, deadline: dt.date) -> list[UnitStatus]:
    """One row per unit of the register, in official order (four queries for the whole register)."""
    conflicts = ledger.conflicts(form.id, year)
    current, versions_of, checks = ledger.status_facts(form.id, year)
    out: list[UnitStatus] = []
    for unit in register:
        row = current.get(unit.code)
        versions, first_received_at = versions_of.get(unit.code, (0, ""))
        if unit.code in conflicts:
            newest = conflicts[unit.code][-1]
            out.append(UnitStatus(unit, "conflict", dt.datetime.fromisoformat(newest["received_at"]), versions,
                                  int(row["id"]) if row else None, None, source=newest["source"],
                                  conflict_ids=tuple(int(r["id"]) for r in conflicts[unit.code])))
            continue
        if row is None:
            out.append(UnitStatus(unit, "missing", version=versions))
            continue
        received = dt.datetime.fromisoformat(row["received_at"])
        errors, warnings = checks.get(int(row["id"]), (0, 0))
        first_received = dt.datetime.fromisoformat(first_received_at)
        out.append(UnitStatus(
            unit, "with_errors" if errors else "accepted", received, versions, int(row["id"]),
            on_time=first_received.date() <= deadline, errors=errors, warnings=warnings, source=row["source"],
        ))
    return out


def chase_list(statuses: list[UnitStatus]) -> list[UnitStatus]:
    """Units the office must chase: not received, or received with errors, or in conflict."""
    return [s for s in statuses if s.state in ("missing", "with_errors", "conflict")]


def load_status(ws: Any) -> list[UnitStatus]:
    """Status of every unit of a workspace (all missing when nothing was collected yet)."""
    from .ledger import Ledger

    form = ws.load_form()
    register = ws.load_register()
    if not ws.ledger_path.exists():
        return [UnitStatus(u, "missing") for u in register]
    with Ledger.open_readonly(ws.ledger_path) as ledger:
        return compute_status(ledger, form, register, ws.year, ws.deadline)


def summary_counts(statuses: list[UnitStatus]) -> dict[str, int]:
    return {
        "expected": len(statuses),
        "received": sum(1 for s in statuses if s.received),
        "accepted": sum(1 for s in statuses if s.state == "accepted"),
        "with_errors": sum(1 for s in statuses if s.state == "with_errors"),
        "conflict": sum(1 for s in statuses if s.state == "conflict"),
        "late": sum(1 for s in statuses if s.late),
        "missing": sum(1 for s in statuses if s.state == "missing"),
    }
