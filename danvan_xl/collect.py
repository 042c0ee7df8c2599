"""Stage 2: collect returned workbooks into the ledger (design.md §3.4–3.5).

Whatever arrives — files, folders, zips, e-mails, mailboxes — is expanded into candidate files.
Each new file's bytes are archived first, then parsed in an isolated worker. Accepted results are
staged on disk (memory stays flat for 10,000 files) and committed per unit, a few units
(``COMMIT_UNITS``) per transaction:

* same bytes as before → duplicate, nothing stored;
* same values as the unit's current version (a re-save) → duplicate, file kept as evidence;
* one new version → accepted (first, or superseding the current one; an older one is kept as history);
* two different new files for one unit in one run → both held as a conflict, current unchanged.

A kill at any point leaves the ledger consistent; the next run skips what was committed and
finishes the rest.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import pickle
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .checks import check_submission
from .findings import Finding
from .form import Form
from .intake import Item, expand
from .isolation import Crash, Job, WorkerPool, safe_loads
from .ledger import Delivery, Ledger, WorkspaceLock, prepare_submission, sha256
from .submission import SubmissionData
from .units import Register, Unit
from .vocabulary import Severity, ValueState
from .workbook_reader import ReadResult
from .workspace import Workspace

OUTCOME_VI = {
    "accepted": "Đã nhận",
    "superseded-old": "Lưu làm lịch sử",
    "duplicate": "Trùng",
    "rejected": "Từ chối",
    "conflict": "Xung đột",
    "skipped": "Bỏ qua",
}


@dataclass
class FileOutcome:
    name: str
    origin: str
    outcome: str  # accepted | superseded-old | duplicate | rejected | conflict | skipped
    message: str
    code: str = ""
    unit: str = ""
    unit_name: str = ""
    submission_id: int | None = None
    errors: int = 0
    warnings: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def outcome_vi(self) -> str:
        return OUTCOME_VI[self.outcome]

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "origin": self.origin, "outcome": self.outcome, "outcome_vi": self.outcome_vi,
            "code": self.code, "message": self.message, "unit": self.unit, "unit_name": self.unit_name,
            "submission_id": self.submission_id, "errors": self.errors, "warnings": self.warnings, "notes": self.notes,
        }


@dataclass
class CollectResult:
    outcomes: list[FileOutcome] = field(default_factory=list)

    def count(self, outcome: str) -> int:
        return sum(1 for o in self.outcomes if o.outcome == outcome)

    @property
    def exit_code(self) -> int:
        bad = any(o.outcome in ("rejected", "conflict") or o.errors for o in self.outcomes)
        return 1 if bad else 0

    def summary(self) -> str:
        parts = [f"{self.count('accepted')} nhận mới", f"{self.count('duplicate')} trùng",
                 f"{self.count('rejected')} bị từ chối", f"{self.count('conflict')} xung đột"]
        if self.count("superseded-old"):
            parts.append(f"{self.count('superseded-old')} lưu làm lịch sử")
        if self.count("skipped"):
            parts.append(f"{self.count('skipped')} bỏ qua")
        with_errors = sum(1 for o in self.outcomes if o.outcome == "accepted" and o.errors)
        tail = f"; {with_errors} bản nhận còn lỗi số liệu" if with_errors else ""
        return f"{len(self.outcomes)} tệp: " + ", ".join(parts) + tail

    def to_dict(self) -> dict[str, Any]:
        return {"files": [o.to_dict() for o in self.outcomes], "summary": self.summary(), "exit_code": self.exit_code}


Progress = Callable[[int, int], None]  # (done, total)
# Units stored per transaction: a kill or a full disk loses at most this many units' work of the run
# (never part of a unit); one transaction per unit spent more on committing than on storing.
COMMIT_UNITS = 8


def collect(ws: Workspace, paths: Sequence[Path], progress: Progress | None = None,
            workers: int | None = None) -> CollectResult:
    """Collect files, folders, zips and mail files into the workspace's ledger."""
    form = ws.load_form()
    register = ws.load_register()
    with WorkspaceLock(ws.lock_path, "danvan collect"), Ledger.open(ws.ledger_path, ws.archive_dir, "collect") as ledger:
        items = list(expand([Path(p) for p in paths], ws.limits))
        return ingest(ws, form, register, ledger, items, progress, workers)


@dataclass
class _Staged:
    """What the per-unit commit needs of one parsed file, computed while the workers parse the next ones.

    ``findings`` (the reader's and the rules') are used only when the file is stored."""

    kind: str
    notes: list[str]
    prepared: tuple[str, list[tuple[Any, ...]], str]  # the data's JSON, value rows, content hash (prepare_submission)
    findings: list[Finding]
    head: SubmissionData  # the submission's own columns; its values travel in ``prepared``

    @property
    def chash(self) -> str:
        return self.prepared[2]

    def record(self) -> tuple[Any, ...]:
        d = self.head
        return (self.kind, self.notes, self.prepared, self.findings,
                (d.unit_code, d.form_id, d.form_version, d.definition_hash, d.year))

    @classmethod
    def from_record(cls, record: tuple[Any, ...]) -> _Staged:
        kind, notes, prepared, findings, head = record
        return cls(kind, notes, prepared, findings, SubmissionData(*head))  # values: see ``prepared``


@dataclass
class _Pending:
    seq: int
    item: Item
    digest: str
    size: int
    archived: str = ""  # the archive copy the worker reads


def ingest(
    ws: Workspace, form: Form, register: Register, ledger: Ledger, items: Sequence[Item],
    progress: Progress | None = None, workers: int | None = None,
    on_committed: Callable[[sqlite3.Connection, Item], None] | None = None,
) -> CollectResult:
    """The shared core of ``collect`` and ``fetch-mail`` (the caller holds the workspace lock)."""
    result = CollectResult()
    slots: list[FileOutcome | None] = [None] * len(items)
    total = len(items)
    done = 0

    def tick() -> None:
        nonlocal done
        done += 1
        if progress:
            progress(done, total)

    seen_now: dict[str, str] = {}
    by_seq: dict[int, _Pending] = {}

    def jobs() -> Iterator[Job]:
        """New files, hashed and archived as the workers ask for more (duplicates are settled here)."""
        for seq, item in enumerate(items):
            if item.problem or (item.data is None and item.path is None):
                slots[seq] = FileOutcome(item.name, item.origin.describe(), "skipped", item.problem or "không có dữ liệu")
                tick()
                continue
            try:
                data = item.load()
            except OSError as err:
                slots[seq] = FileOutcome(item.name, item.origin.describe(), "skipped", f"không đọc được tệp ({err.strerror})")
                tick()
                continue
            digest = sha256(data)
            # This run's own files first: rows written for them meanwhile (rejections) must not count as earlier.
            earlier = None if digest in seen_now else ledger.seen_sha(digest)
            if earlier is not None or digest in seen_now:
                when = earlier["received_at"][:10] if earlier is not None else "trong lần này"
                first = earlier["name"] if earlier is not None else seen_now[digest]
                slots[seq] = FileOutcome(item.name, item.origin.describe(), "duplicate",
                                         f"trùng hoàn toàn với tệp đã nhận ({first}, {_vn_date(when)}); không lưu thêm",
                                         code="same-bytes", unit=earlier["unit_code"] or "" if earlier is not None else "")
                tick()
                continue
            seen_now[digest] = item.name
            archived = ledger.archive_bytes(data, digest)
            by_seq[seq] = _Pending(seq, item, digest, len(data), str(archived))
            yield Job(seq, None, item.name, str(archived))

    staging = _Staging(ws.root)
    try:
        pool = WorkerPool(str(form.folder), ws.year, ws.limits, workers)
        prev = _previous(ledger, form, ws.year)  # last year's values: not changed by this run
        for seq, parsed in pool.run(jobs()):
            p = by_seq.pop(seq)
            outcome = _triage(ws, form, register, ledger, p, parsed, staging, prev, on_committed)
            if outcome is not None:
                slots[seq] = outcome
            tick()
        ledger.sync_archive()
        units = staging.units()
        for start in range(0, len(units), COMMIT_UNITS):
            with ledger.transaction() as conn:
                for unit_code in units[start:start + COMMIT_UNITS]:
                    group = staging.group(unit_code)
                    for seq, outcome in _commit_unit(ws, form, register.get(unit_code), ledger, conn, group,
                                                     on_committed):
                        slots[seq] = outcome
    finally:
        staging.close()
    result.outcomes = [o for o in slots if o is not None]
    return result


def _vn_date(iso: str) -> str:
    try:
        d = dt.date.fromisoformat(iso[:10])
    except ValueError:
        return iso
    return f"{d:%d/%m/%Y}"


def _triage(
    ws: Workspace, form: Form, register: Register, ledger: Ledger, p: _Pending, parsed: ReadResult | Crash,
    staging: _Staging, prev: dict[str, dict[str, Any]], on_committed: Callable[[sqlite3.Connection, Item], None] | None,
) -> FileOutcome | None:
    """Reject now (one transaction) or stage for the per-unit commit; returns the outcome if final."""
    item = p.item
    if isinstance(parsed, Crash):
        return _reject(ledger, p, parsed.code, parsed.message, "", on_committed)
    if not parsed.ok:
        return _reject(ledger, p, parsed.code, parsed.message, parsed.kind, on_committed)
    assert parsed.data is not None
    if _unfilled(form, parsed.data):
        return _reject(ledger, p, "not-filled", "biểu mẫu chưa được điền số liệu nào (có thể là biểu mẫu trống gửi nhầm, "
                       "hoặc thư gửi biểu mẫu của chính cơ quan tổng hợp); không lưu làm bản nộp", parsed.kind, on_committed)
    unit = _identify_unit(register, parsed)
    if unit is None:
        claimed = parsed.identity.get("unit_code") or parsed.identity.get("unit_name") or "?"
        return _reject(ledger, p, "unknown-unit", f"đơn vị '{claimed}' không có trong danh sách đơn vị của năm {ws.year}",
                       parsed.kind, on_committed)
    sender_unit = register.by_email(item.origin.sender) if item.origin.sender else None
    if sender_unit is not None and sender_unit.code != unit.code:
        parsed.findings.append(Finding(
            "sent-by-other-unit", Severity.WARNING,
            f"Tệp của {unit.name} nhưng được gửi từ địa chỉ của {sender_unit.name} ({item.origin.sender}); "
            "đã nhận theo nội dung tệp, đề nghị kiểm tra lại.", file=item.name, unit=unit.code))
    data = _with_unit(parsed.data, unit.code, ws.year)
    findings = check_submission(form, unit, data, parsed.findings, prev.get(unit.code), item.name)
    head = SubmissionData(data.unit_code, data.form_id, data.form_version, data.definition_hash, data.year)
    staging.put(unit.code, p, _Staged(parsed.kind, parsed.notes, prepare_submission(data), findings, head))
    return None


def _unfilled(form: Form, data: Any) -> bool:
    """True when no input holds anything: a blank template is not a report."""
    inputs = (v for fid, v in data.values.items() if form.fields[fid].is_input)
    return all(v.state == ValueState.BLANK for v in inputs) and not any(data.tables.values())


def _identify_unit(register: Register, parsed: ReadResult) -> Unit | None:
    code = parsed.identity.get("unit_code", "")
    unit = register.get(code) if code else None
    if unit is None and parsed.identity.get("unit_name"):
        unit = register.by_name(parsed.identity["unit_name"])
    return unit


def _reject(ledger: Ledger, p: _Pending, code: str, message: str, kind: str,
            on_committed: Callable[[sqlite3.Connection, Item], None] | None) -> FileOutcome:
    item = p.item
    with ledger.transaction() as conn:
        ledger.add_blob(conn, p.digest, p.size, kind)
        ledger.add_delivery(conn, _delivery(item, p.digest, "rejected", message, code))
        ledger.event(conn, "rejected", "", item.name, code=code, sha256=p.digest)
        if on_committed:
            on_committed(conn, item)
    return FileOutcome(item.name, item.origin.describe(), "rejected", message, code=code)


def _delivery(item: Item, digest: str, outcome: str, message: str, code: str = "", unit: str = "",
              submission_id: int | None = None, notes: Sequence[str] = ()) -> Delivery:
    o = item.origin
    return Delivery(item.name, o.kind, o.describe(), item.received_at, outcome, message, digest, code, o.sender,
                    o.message_id, unit, submission_id, tuple(notes))


def _previous(ledger: Ledger, form: Form, year: int) -> dict[str, dict[str, Any]]:
    return ledger.current_values(form.id, year - 1)


def _commit_unit(
    ws: Workspace, form: Form, unit: Unit | None, ledger: Ledger, conn: sqlite3.Connection,
    group: list[tuple[_Pending, _Staged]], on_committed: Callable[[sqlite3.Connection, Item], None] | None,
) -> Iterable[tuple[int, FileOutcome]]:
    """One unit's files, inside the caller's transaction."""
    assert unit is not None
    out: list[tuple[int, FileOutcome]] = []
    current = ledger.current_row(unit.code, form.id, ws.year)
    fresh: list[tuple[_Pending, _Staged]] = []
    seen_content: dict[str, str] = {}
    for p, parsed in group:
        chash = parsed.chash
        ledger.add_blob(conn, p.digest, p.size, parsed.kind)
        if current is not None and chash == current["content_hash"]:
            message = "cùng số liệu với bản đang dùng (tệp được lưu lại bằng chương trình khác); không có thay đổi"
            out.append((p.seq, _final(p, "duplicate", message, unit, current["id"], "same-values")))
            ledger.add_delivery(conn, _delivery(p.item, p.digest, "duplicate", message, "same-values", unit.code,
                                                current["id"], parsed.notes))
            continue
        if chash in seen_content:
            message = f"cùng số liệu với tệp {seen_content[chash]} trong lần thu nhận này"
            out.append((p.seq, _final(p, "duplicate", message, unit, None, "same-values")))
            ledger.add_delivery(conn, _delivery(p.item, p.digest, "duplicate", message, "same-values", unit.code))
            continue
        seen_content[chash] = p.item.name
        fresh.append((p, parsed))
    if len(fresh) == 1:
        out.append(_accept(ws, form, unit, ledger, conn, current, fresh[0]))
    elif len(fresh) > 1:
        out.extend(_conflict(ws, form, unit, ledger, conn, fresh))
    if on_committed:
        for p, _parsed in group:
            on_committed(conn, p.item)
    return out


def _with_unit(data: Any, unit_code: str, year: int) -> Any:
    return SubmissionData(unit_code, data.form_id, data.form_version, data.definition_hash, year, data.values,
                          data.tables, data.justifications)


def _final(p: _Pending, outcome: str, message: str, unit: Unit, sid: int | None, code: str = "",
           findings: Sequence[Finding] = (), notes: Sequence[str] = ()) -> FileOutcome:
    errors = sum(1 for f in findings if f.severity == Severity.ERROR)
    warnings = sum(1 for f in findings if f.severity == Severity.WARNING and not f.accepted)
    return FileOutcome(p.item.name, p.item.origin.describe(), outcome, message, code, unit.code, unit.name, sid,
                       errors, warnings, list(notes))


def _store(form: Form, ledger: Ledger, conn: sqlite3.Connection, entry: tuple[_Pending, _Staged], state: str,
           supersedes: int | None) -> tuple[int, list[Finding]]:
    p, parsed = entry
    sid = ledger.add_submission(conn, parsed.head, digest=p.digest, chash=parsed.chash, received_at=p.item.received_at,
                                source=p.item.origin.describe(), file_format=parsed.kind, state=state,
                                supersedes=supersedes, notes=parsed.notes, prepared=parsed.prepared)
    findings = parsed.findings  # checked when staged (check_submission)
    ledger.store_check(conn, sid, form.definition_hash, findings, latest=None)  # stored just now: no earlier check
    return sid, findings


def _accept(ws: Workspace, form: Form, unit: Unit, ledger: Ledger, conn: sqlite3.Connection,
            current: sqlite3.Row | None, entry: tuple[_Pending, _Staged]) -> tuple[int, FileOutcome]:
    p, parsed = entry
    received = p.item.received_at
    older = current is not None and dt.datetime.fromisoformat(current["received_at"]) > received
    if older:
        assert current is not None
        sid, findings = _store(form, ledger, conn, entry, "superseded", None)
        message = (f"bản này cũ hơn bản đang dùng (nhận {_vn_date(current['received_at'])}); "
                   "đã lưu làm lịch sử, không thay bản đang dùng")
        ledger.add_delivery(conn, _delivery(p.item, p.digest, "superseded-old", message, "older", unit.code, sid, parsed.notes))
        ledger.event(conn, "stored-older", unit.code, p.item.name, submission=sid, current=current["id"])
        return p.seq, _final(p, "superseded-old", message, unit, sid, "older", findings, parsed.notes)
    supersedes = int(current["id"]) if current is not None else None
    sid, findings = _store(form, ledger, conn, entry, "current", supersedes)
    if current is not None:
        ledger.set_state(conn, int(current["id"]), "superseded")
    for row in ledger.unit_conflicts(unit.code, form.id, ws.year):
        ledger.set_state(conn, int(row["id"]), "superseded")
        ledger.event(conn, "conflict-resolved-by-new-version", unit.code, str(row["id"]), by=sid)
    ledger.set_current(conn, unit.code, form.id, ws.year, sid)
    if current is None:
        message = f"đã nhận bản đầu tiên của {unit.name}"
    else:
        version = ledger.count_submissions(unit.code, form.id, ws.year)
        message = f"đã nhận bản sửa (bản thứ {version}), thay bản nhận ngày {_vn_date(current['received_at'])}"
    ledger.add_delivery(conn, _delivery(p.item, p.digest, "accepted", message, "new" if current is None else "superseding",
                                        unit.code, sid, parsed.notes))
    ledger.event(conn, "accepted", unit.code, p.item.name, submission=sid, supersedes=supersedes)
    return p.seq, _final(p, "accepted", message, unit, sid, "new" if current is None else "superseding", findings,
                         parsed.notes)


def _conflict(ws: Workspace, form: Form, unit: Unit, ledger: Ledger, conn: sqlite3.Connection,
              fresh: list[tuple[_Pending, _Staged]]) -> list[tuple[int, FileOutcome]]:
    stored = [(entry, *_store(form, ledger, conn, entry, "conflict", None)) for entry in fresh]
    ids = [sid for _e, sid, _f in stored]
    names = "; ".join(f"bản số {sid}: {e[0].item.name} ({e[0].item.origin.describe()})" for e, sid, _f in stored)
    message = (f"{len(fresh)} tệp khác nhau cùng của {unit.name} trong một lần thu nhận — {names}. "
               f"Giữ cả hai, chưa dùng bản nào; chọn một bằng: danvan resolve {unit.code} <số bản> "
               f"(ví dụ: danvan resolve {unit.code} {ids[-1]})")
    out = []
    for (p, parsed), sid, findings in stored:
        ledger.add_delivery(conn, _delivery(p.item, p.digest, "conflict", message, "conflict", unit.code, sid, parsed.notes))
        out.append((p.seq, _final(p, "conflict", message, unit, sid, "conflict", findings, parsed.notes)))
    ledger.event(conn, "conflict", unit.code, "", submissions=ids)
    return out


class _Staging:
    """Parsed results waiting for their unit's commit, kept in a temporary SQLite file."""

    def __init__(self, root: Path) -> None:
        for stale in root.glob(".danvan-staging-*.sqlite*"):
            with contextlib.suppress(OSError):
                stale.unlink()
        self.path = root / f".danvan-staging-{os.getpid()}.sqlite"
        self.conn = sqlite3.connect(self.path, isolation_level=None)
        self.conn.execute("PRAGMA journal_mode=OFF")
        self.conn.execute("PRAGMA synchronous=OFF")
        self.conn.execute("CREATE TABLE staged(seq INTEGER PRIMARY KEY, unit TEXT, payload BLOB)")
        # Each unit's files are looked up by this index: a scan per unit made collect quadratic.
        self.conn.execute("CREATE INDEX staged_unit ON staged(unit, seq)")
        # One transaction for the file's whole life (it is deleted, never committed to): no page writes per record.
        self.conn.execute("BEGIN")
        self.order: dict[str, int] = {}

    def put(self, unit: str, pending: _Pending, staged: _Staged) -> None:
        self.order.setdefault(unit, len(self.order))
        item = pending.item
        record = (pending.seq, item.name, item.origin, item.received_at, pending.digest, pending.size, staged.record())
        self.conn.execute("INSERT INTO staged VALUES (?,?,?)", (pending.seq, unit, pickle.dumps(record)))

    def units(self) -> list[str]:
        return sorted(self.order, key=self.order.__getitem__)

    def group(self, unit: str) -> list[tuple[_Pending, _Staged]]:
        out = []
        for (payload,) in self.conn.execute("SELECT payload FROM staged WHERE unit = ? ORDER BY seq", (unit,)):
            seq, name, origin, received, digest, size, record = _load_staged(payload)
            out.append((_Pending(seq, Item(name, None, origin, received), digest, size), _Staged.from_record(record)))
        return out

    def close(self) -> None:
        self.conn.close()
        for suffix in ("", "-journal", "-wal", "-shm"):
            with contextlib.suppress(OSError):
                Path(str(self.path) + suffix).unlink()


def _load_staged(payload: bytes) -> Any:
    # Staged records are written by this process, but parsed content came from untrusted files:
    # unpickle with the same allow-list as worker results (plus our Origin/Item types).
    return safe_loads(payload, extra={("danvan_xl.intake", "Origin")})


def resolve_conflict(ws: Workspace, unit_code: str, submission_id: int) -> str:
    """Make one of a unit's conflicting submissions current; the others become history."""
    from .errors import ConfigError

    form = ws.load_form()
    unit = ws.load_register().get(unit_code)
    if unit is None:
        raise ConfigError(f"Không có đơn vị mã '{unit_code}'")
    with WorkspaceLock(ws.lock_path, "danvan resolve"), Ledger.open(ws.ledger_path, ws.archive_dir, "resolve") as ledger:
        rows = ledger.conflicts(form.id, ws.year).get(unit_code, [])
        ids = [int(r["id"]) for r in rows]
        if submission_id not in ids:
            listed = ", ".join(f"{r['id']} ({r['source']})" for r in rows) or "không có"
            raise ConfigError(f"Bản nộp số {submission_id} không phải bản xung đột của {unit.name}. Các bản xung đột: {listed}")
        current = ledger.current_row(unit_code, form.id, ws.year)
        with ledger.transaction() as conn:
            for sid in ids:
                ledger.set_state(conn, sid, "current" if sid == submission_id else "superseded")
            if current is not None:
                ledger.set_state(conn, int(current["id"]), "superseded")
            ledger.set_current(conn, unit_code, form.id, ws.year, submission_id)
            ledger.event(conn, "conflict-resolved", unit_code, str(submission_id), others=[i for i in ids if i != submission_id])
    return f"Đã chọn bản nộp số {submission_id} làm bản đang dùng của {unit.name}; các bản còn lại lưu làm lịch sử."
