"""Stage 1: write one input workbook per unit into the workspace's ``templates/`` folder.

Large runs use every CPU core (a process per core, each loading the form once). Each file is
written atomically; last year's figures are pre-filled when the ledger has them.
"""

from __future__ import annotations

import datetime as dt
import multiprocessing
import os
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .form import Form
from .fsio import fsync_file, prepare_dir, sync_dir, write_atomic
from .template_stamp import Stamper
from .template_writer import Prefill, TemplateContext, build_template, template_filename
from .units import Unit
from .workspace import Workspace

PARALLEL_THRESHOLD = 40


@dataclass(frozen=True)
class GeneratedFile:
    unit_code: str
    unit_name: str
    path: Path
    size: int


@dataclass(frozen=True)
class GenerateResult:
    out_dir: Path
    files: tuple[GeneratedFile, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "out_dir": str(self.out_dir),
            "files": [{"unit": f.unit_code, "name": f.unit_name, "path": str(f.path), "bytes": f.size}
                      for f in self.files],
        }


def template_context(ws: Workspace) -> TemplateContext:
    return TemplateContext(
        year=ws.year, deadline=ws.deadline,
        issued_at=dt.datetime(ws.issue_date.year, ws.issue_date.month, ws.issue_date.day, 8, 0),
        office_name=ws.office.name, office_email=ws.office.email, office_phone=ws.office.phone,
    )


def generate(
    ws: Workspace,
    unit_codes: Iterable[str] = (),
    out_dir: Path | None = None,
    progress: Callable[[str], None] | None = None,
    workers: int | None = None,
) -> GenerateResult:
    """Write the templates of the selected units (all by default)."""
    form = ws.load_form()
    register = ws.load_register()
    units = register.select(tuple(unit_codes))
    out = prepare_dir(Path(out_dir) if out_dir else ws.templates_dir)
    ctx = template_context(ws)
    prev = previous_values(ws, form)
    files = write_templates(form, units, ctx, out, prev, progress, workers)
    return GenerateResult(out, tuple(files))


def previous_values(ws: Workspace, form: Form) -> Mapping[str, Mapping[str, Any]]:
    """Last year's accepted values per unit, from the ledger (empty when there is none)."""
    if not ws.ledger_path.exists():
        return {}
    from .ledger import Ledger

    with Ledger.open_readonly(ws.ledger_path) as ledger:
        return ledger.current_values(form.id, ws.year - 1)


def write_templates(
    form: Form,
    units: list[Unit],
    ctx: TemplateContext,
    out: Path,
    prev: Mapping[str, Mapping[str, Any]] | None = None,
    progress: Callable[[str], None] | None = None,
    workers: int | None = None,
) -> list[GeneratedFile]:
    prev = prev or {}
    workers = workers or os.cpu_count() or 1
    jobs = [(u, dict(prev.get(u.code, {}))) for u in units]
    if workers > 1 and len(units) >= PARALLEL_THRESHOLD:
        files = _parallel(form, jobs, ctx, out, progress, workers)
    else:
        stamper = Stamper(form, ctx)
        files = []
        for unit, unit_prev in jobs:
            files.append(_write_one(stamper, unit, out, unit_prev))
            if progress:
                progress(unit.code)
    for f in files:  # one fsync per file at the end instead of two per file on the way (see write_atomic)
        fsync_file(f.path)
    sync_dir(out)
    return files


def _write_one(stamper: Stamper, unit: Unit, out: Path, prev: dict[str, Any]) -> GeneratedFile:
    """One unit's template: stamped from a prototype, or built in full when last year's figures go in."""
    form, ctx = stamper.form, stamper.ctx
    data = build_template(form, unit, ctx, prefill=Prefill(prev=prev)) if prev else stamper.build(unit)
    path = write_atomic(out / template_filename(form, unit, ctx.year), data, durable=False)
    return GeneratedFile(unit.code, unit.name, path, len(data))


_STATE: dict[str, Any] = {}


def _init_worker(form_folder: str, ctx: TemplateContext, out: str) -> None:
    from .form import load_form

    _STATE.update(stamper=Stamper(load_form(form_folder), ctx), out=Path(out))


def _worker(job: tuple[Unit, dict[str, Any]]) -> GeneratedFile:
    unit, prev = job
    return _write_one(_STATE["stamper"], unit, _STATE["out"], prev)


def _parallel(
    form: Form, jobs: list[tuple[Unit, dict[str, Any]]], ctx: TemplateContext, out: Path,
    progress: Callable[[str], None] | None, workers: int,
) -> list[GeneratedFile]:
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    mp = multiprocessing.get_context(method)
    chunk = max(1, min(50, len(jobs) // (workers * 8) or 1))
    files: list[GeneratedFile] = []
    with ProcessPoolExecutor(workers, mp_context=mp, initializer=_init_worker,
                             initargs=(str(form.folder), ctx, str(out))) as pool:
        for result in pool.map(_worker, jobs, chunksize=chunk):
            files.append(result)
            if progress:
                progress(result.unit_code)
    return files
