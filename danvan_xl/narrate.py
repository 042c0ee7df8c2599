"""Stage: write the narrative reports (.docx in the Nghị định 30 layout and a .md twin) from the ledger.

Per unit: from its current submission (units whose current version still has errors are left out
unless asked for by code — a report must not be signed on wrong numbers). For the district: the
collecting office's report over the accepted submissions, with last year's totals when the ledger
has them. Many unit reports (:data:`PARALLEL_THRESHOLD` or more) are written by a process per core.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .docx_parts import skeleton
from .docx_writer import write_docx
from .forkpool import can_fork, map_ranges
from .form import Form
from .fsio import fsync_file, prepare_dir, sync_dir
from .ledger import Ledger, WorkspaceLock
from .narrative import DistrictInput, NarrativeOptions, district_report, unit_report, write_markdown
from .status import compute_status
from .units import Unit
from .workspace import Workspace

PARALLEL_THRESHOLD = 40  # unit reports; below this, starting the worker processes costs more than it saves


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


@dataclass(frozen=True)
class _UnitJob:
    unit: Unit
    submission_id: int  # read from the ledger by the process that writes the report
    prev: dict[str, Any] | None
    note: str


@dataclass(frozen=True)
class _Setting:
    """What every unit report of one run shares (inherited by forked workers, never pickled)."""

    form: Form
    year: int
    options: NarrativeOptions
    collector: str
    out: Path
    ledger_path: Path
    jobs: tuple[_UnitJob, ...]


def write_narratives(
    ws: Workspace, units: Sequence[str] = (), *, district: bool = False, out_dir: Path | None = None,
    options: NarrativeOptions | None = None, workers: int | None = None,
) -> NarrativeResult:
    """Write unit reports (all, or the given units) and/or the district report.

    ``workers``: processes for the unit reports (default: one per core; used from
    :data:`PARALLEL_THRESHOLD` reports on, where ``fork`` is available). The files and the order
    of ``written`` (register order) do not depend on it."""
    form = ws.load_form()
    register = ws.load_register()
    selected = register.select(tuple(units)) if units else list(register)
    out = prepare_dir(Path(out_dir) if out_dir else ws.reports_dir / "bao-cao")
    result = NarrativeResult(out)
    options = options or NarrativeOptions()
    with WorkspaceLock(ws.lock_path, "danvan narrative"), Ledger.open_readonly(ws.ledger_path) as ledger:
        index = ledger.current_index(form.id, ws.year)  # ids and error counts only: the data stays in the ledger
        prev = ledger.current_values(form.id, ws.year - 1)
    unit_reports = bool(units) or not district
    jobs: list[_UnitJob] = []
    for unit in selected if unit_reports else []:
        if unit.code not in index:
            result.skipped.append((unit.code, "chưa có bản nộp được nhận"))
            continue
        sid, errors = index[unit.code]
        note = ""
        if errors:
            if not units:
                result.skipped.append((unit.code, f"số liệu còn {errors} lỗi; sửa xong mới viết báo cáo"))
                continue
            note = f"số liệu còn {errors} lỗi — báo cáo chỉ để xem, chưa dùng để ký"
        jobs.append(_UnitJob(unit, sid, prev.get(unit.code), note))
    setting = _Setting(form, ws.year, options, ws.office.name, out, ws.ledger_path, tuple(jobs))
    result.written += _write_units(setting, workers or os.cpu_count() or 1)
    if jobs:
        sync_dir(out)  # the renames of the unit reports (each file was synced by the process that wrote it)
    if district:
        result.written.append(_write_district(ws, form, register, prev, options, out))
    return result


def _write_district(ws: Workspace, form: Form, register: Any, prev: dict[str, Any], options: NarrativeOptions,
                    out: Path) -> Written:
    """The collecting office's report: every accepted submission is needed for its totals and lists."""
    with WorkspaceLock(ws.lock_path, "danvan narrative"), Ledger.open_readonly(ws.ledger_path, verify=False) as ledger:
        current = ledger.current_plain(form.id, ws.year)  # plain values only: states and cells are not needed
        statuses = compute_status(ledger, form, register, ws.year, ws.deadline)
    missing = [st.unit for st in statuses if st.state == "missing"]
    with_errors = [st.unit for st in statuses if st.state in ("with_errors", "conflict")]
    accepted = [s for s in current if not s.errors]
    inp = DistrictInput(ws.office, register, ws.year, accepted, missing, with_errors,
                        prev_totals=_totals(form, prev) if prev else None)
    return _write(out, district_report(form, inp, options=options), "", ws.office.name)


def _write_units(setting: _Setting, workers: int) -> list[Written]:
    """The unit reports in job order: here, or the first here (it compiles the wording templates and
    the .docx parts, which forked workers then inherit) and the rest spread over the workers."""
    jobs = setting.jobs
    if workers < 2 or len(jobs) < PARALLEL_THRESHOLD or not can_fork():
        return _write_range(setting, 0, len(jobs))
    skeleton()
    written = _write_range(setting, 0, 1)
    return written + map_ranges(functools.partial(_write_range, setting), 1, len(jobs), workers)


def _write_range(setting: _Setting, start: int, stop: int) -> list[Written]:
    """Jobs ``start:stop``: written atomically, then each file fsynced once (reports can be made
    again from the ledger, so, as templates, they skip the two syncs per file on the way). The
    fsyncs run on a thread beside the writing (waiting for the disk, not for the interpreter) and
    all of them have returned before the range does."""
    written = []
    with ThreadPoolExecutor(1) as syncer:
        synced = []
        # Checked (SQLite quick check) by write_narratives at the start of this command: a full read
        # of the ledger, too costly to repeat for every range.
        with Ledger.open_readonly(setting.ledger_path, verify=False) as ledger:
            for job in setting.jobs[start:stop]:
                data = ledger.plain_data(job.submission_id)
                report = unit_report(setting.form, job.unit, data, year=setting.year, prev=job.prev,
                                     options=setting.options, collector=setting.collector)
                w = _write(setting.out, report, job.unit.code, job.unit.name, job.note, durable=False)
                written.append(w)
                synced.append(syncer.submit(_fsync_both, w))
        for future in synced:
            future.result()
    return written


def _fsync_both(w: Written) -> None:
    fsync_file(w.docx)
    fsync_file(w.markdown)


def _write(out: Path, report: Any, code: str, name: str, note: str = "", *, durable: bool = True) -> Written:
    docx = write_docx(report, out / f"{report.file_stem}.docx", durable=durable)
    md = write_markdown(report, out / f"{report.file_stem}.md", durable=durable)
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
