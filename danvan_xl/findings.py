"""Findings: data problems as data, each with its position and a Vietnamese message.

A finding never stops anything; exceptions are for things that cannot continue (errors.py).
The ``code`` is a stable kebab-case type (frictionless style) that scripts can rely on; the
message is complete Vietnamese for the clerk: where → what is wrong → the value → how to fix.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from .vocabulary import SEVERITY_VI, Severity


@dataclass(frozen=True, slots=True)
class Finding:
    code: str
    severity: Severity
    message: str
    file: str = ""
    sheet: str = ""
    cell: str = ""
    field: str = ""  # field id (comma-separated when a rule reads several)
    rule: str = ""
    left: Any = None
    right: Any = None
    unit: str = ""
    justification: str = ""  # a unit's explanation that accepts a warning

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return (Finding, (self.code, self.severity, self.message, self.file, self.sheet, self.cell, self.field,
                          self.rule, self.left, self.right, self.unit, self.justification))

    @property
    def accepted(self) -> bool:
        return self.severity == Severity.WARNING and bool(self.justification)

    @property
    def severity_vi(self) -> str:
        return SEVERITY_VI[self.severity]

    def where(self) -> str:
        """"tệp a.xlsx, trang TiepDan, ô D13" — only the parts that are known."""
        parts = []
        if self.file:
            parts.append(f"tệp {self.file}")
        if self.sheet:
            parts.append(f"trang {self.sheet}")
        if self.cell:
            parts.append(f"ô {self.cell}")
        return ", ".join(parts)

    def line(self) -> str:
        """One line for the terminal: "Lỗi [tệp …, trang …, ô …] message"."""
        where = self.where()
        return f"{self.severity_vi}{f' [{where}]' if where else ''}: {self.message}"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["severity"] = self.severity.value
        d["accepted"] = self.accepted
        return d


def count(findings: list[Finding] | tuple[Finding, ...], severity: Severity, *, open_only: bool = True) -> int:
    return sum(1 for f in findings if f.severity == severity and not (open_only and f.accepted))
