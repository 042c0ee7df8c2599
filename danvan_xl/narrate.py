"""Stage: write the narrative reports (.docx in the Nghị định 30 layout and a .md twin) from the ledger.

Per unit: from its current submission (units whose current version still has errors are left out
unless asked for by code — a report must not be signed on wrong numbers). For the district: the
collecting office's report over the accepted submissions, with last year's totals when the ledger
has them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .docx_writer import write_docx
from .fsio import prepare_dir
from .ledger import Ledger, WorkspaceLock
from .narrative import DistrictInput, NarrativeOptions, district_report, unit_report, write_markdown
from .status import compute_status
from .workspace import Workspace


@dataclass(frozen=True)
class Written:
    unit: str  # unit code, or "" for the district report
    name: str
    docx: Path
    markdown: Path
    note: str = ""


@dataclass
class NarrativeResult:
    out_dir: Path
    written: list[Written] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (unit code, reason)

    def to_dict(self) -> dict[str, Any]:
        return {"out_dir": str(self.out_dir),
                "written": [{"unit": w.unit, "name": w.name, "docx": str(w.docx), "markdown": str(w.markdown),
                             "note": w.note} for w in self.written],
                "skipped": [{"unit": u, "reason": r} for u, r in self.skipped]}


def write_narratives(
    ws: Workspace, units: Sequence[str] = (), *, district: bool = False, out_dir: Path | None = None,
    options: NarrativeOptions | None = None,
) -> NarrativeResult:
    """Write unit reports (all, or the given units) and/or the district report."""
    form = ws.load_form()
    register = ws.load_register()
    selected = register.select(tuple(units)) if units else list(register)
    out = prepare_dir(Path(out_dir) if out_dir else ws.reports_dir / "bao-cao")
    result = NarrativeResult(out)
    options = options or NarrativeOptions()
    with WorkspaceLock(ws.lock_path, "danvan narrative"), Ledger.open_readonly(ws.ledger_path) as ledger:
        current = {s.unit_code: s for s in ledger.current_submissions(form.id, ws.year)}
        prev = ledger.current_values(form.id, ws.year - 1)
        statuses = compute_status(ledger, form, register, ws.year, ws.deadline)
    unit_reports = bool(units) or not district
    for unit in selected if unit_reports else []:
        sub = current.get(unit.code)
        if sub is None:
            result.skipped.append((unit.code, "chưa có bản nộp được nhận"))
            continue
        note = ""
        if sub.errors:
            if not units:
                result.skipped.append((unit.code, f"số liệu còn {sub.errors} lỗi; sửa xong mới viết báo cáo"))
                continue
            note = f"số liệu còn {sub.errors} lỗi — báo cáo chỉ để xem, chưa dùng để ký"
        report = unit_report(form, unit, sub.data, year=ws.year, prev=prev.get(unit.code), options=options,
                             collector=ws.office.name)
        result.written.append(_write(out, report, unit.code, unit.name, note))
    if district:
        accepted = [s for s in current.values() if not s.errors]
        missing = [st.unit for st in statuses if st.state == "missing"]
        with_errors = [st.unit for st in statuses if st.state in ("with_errors", "conflict")]
        inp = DistrictInput(ws.office, register, ws.year, accepted, missing, with_errors,
                            prev_totals=_totals(form, prev) if prev else None)
        report = district_report(form, inp, options=options)
        result.written.append(_write(out, report, "", ws.office.name))
    return result


def _write(out: Path, report: Any, code: str, name: str, note: str = "") -> Written:
    docx = write_docx(report, out / f"{report.file_stem}.docx")
    md = write_markdown(report, out / f"{report.file_stem}.md")
    return Written(code, name, docx, md, note)


def _totals(form: Any, prev: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Last year's district totals of the summable count fields (blank and không phát sinh skipped)."""
    totals: dict[str, Any] = {}
    for f in form.fields.values():
        if not (f.is_numeric and f.summable):
            continue
        numbers = [v.get(f.id) for v in prev.values()]
        numbers = [n for n in numbers if isinstance(n, int | float) and not isinstance(n, bool)]
        if numbers:
            totals[f.id] = sum(numbers)
    return totals
