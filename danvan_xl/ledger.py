"""The submission ledger: a SQLite file in the workspace that keeps everything that arrived.

Guarantees (design.md §3.5, reliability.md §3):

* every received file's original bytes are archived content-addressed (``archive/ab/<sha256>``),
  written before the database row that refers to them, and never overwritten;
* every version of every unit's submission is kept, with its source, time and outcome; the
  current version per (unit, form, year) is explicit in ``current``;
* writes happen in ``BEGIN IMMEDIATE`` transactions — a crash leaves the ledger as it was before
  the group being processed; WAL mode, busy timeout; ``events`` is append-only (triggers);
* a process-level lock file serialises writing commands; a stale lock from a killed run is
  released by the kernel (flock);
* a corrupt ledger file is detected on open and reported, never silently recreated.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
import json
import os
import socket
import sqlite3
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import LedgerBusy, LedgerError, OutputError
from .expr import NA
from .findings import Finding
from .fsio import describe_os_error, ensure_dir, failpoint_hold
from .submission import PlainData, PlainSubmission, Submission, SubmissionData, Value
from .vocabulary import NA_TEXT, Severity, ValueState

SCHEMA_VERSION = 1
SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs(
  id INTEGER PRIMARY KEY, command TEXT NOT NULL, started_at TEXT NOT NULL, host TEXT, pid INTEGER);
CREATE TABLE IF NOT EXISTS blobs(
  sha256 TEXT PRIMARY KEY, size INTEGER NOT NULL, kind TEXT, first_seen TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS deliveries(
  id INTEGER PRIMARY KEY, run_id INTEGER NOT NULL, sha256 TEXT, name TEXT NOT NULL, origin_kind TEXT NOT NULL,
  origin TEXT NOT NULL, sender TEXT, message_id TEXT, received_at TEXT NOT NULL, outcome TEXT NOT NULL,
  code TEXT, message TEXT NOT NULL, unit_code TEXT, submission_id INTEGER, notes TEXT);
CREATE INDEX IF NOT EXISTS deliveries_sha ON deliveries(sha256);
CREATE TABLE IF NOT EXISTS submissions(
  id INTEGER PRIMARY KEY, unit_code TEXT NOT NULL, form_id TEXT NOT NULL, form_version TEXT NOT NULL,
  definition_hash TEXT NOT NULL, year INTEGER NOT NULL, sha256 TEXT NOT NULL, content_hash TEXT NOT NULL,
  received_at TEXT NOT NULL, source TEXT NOT NULL, file_format TEXT NOT NULL, state TEXT NOT NULL,
  supersedes_id INTEGER, created_at TEXT NOT NULL, run_id INTEGER NOT NULL, notes TEXT, data_json TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS submissions_unit ON submissions(form_id, year, unit_code);
CREATE TABLE IF NOT EXISTS submission_values(
  submission_id INTEGER NOT NULL, field TEXT NOT NULL, row INTEGER NOT NULL, col TEXT NOT NULL, state TEXT NOT NULL,
  num REAL, text TEXT, raw TEXT, sheet TEXT, cell TEXT, PRIMARY KEY(submission_id, field, row, col));
CREATE TABLE IF NOT EXISTS checks(
  id INTEGER PRIMARY KEY, submission_id INTEGER NOT NULL, run_id INTEGER NOT NULL, created_at TEXT NOT NULL,
  definition_hash TEXT NOT NULL, errors INTEGER NOT NULL, warnings INTEGER NOT NULL, digest TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS checks_sub ON checks(submission_id);
CREATE TABLE IF NOT EXISTS findings(
  id INTEGER PRIMARY KEY, check_id INTEGER NOT NULL, submission_id INTEGER NOT NULL, code TEXT NOT NULL,
  severity TEXT NOT NULL, message TEXT NOT NULL, file TEXT, sheet TEXT, cell TEXT, field TEXT, rule TEXT,
  left_value TEXT, right_value TEXT, justification TEXT);
CREATE INDEX IF NOT EXISTS findings_check ON findings(check_id);
CREATE TABLE IF NOT EXISTS current(
  unit_code TEXT NOT NULL, form_id TEXT NOT NULL, year INTEGER NOT NULL, submission_id INTEGER NOT NULL,
  PRIMARY KEY(unit_code, form_id, year));
CREATE TABLE IF NOT EXISTS events(
  id INTEGER PRIMARY KEY, ts TEXT NOT NULL, run_id INTEGER, kind TEXT NOT NULL, unit_code TEXT, subject TEXT,
  details TEXT);
CREATE TRIGGER IF NOT EXISTS events_no_update BEFORE UPDATE ON events
  BEGIN SELECT RAISE(ABORT, 'events are append-only'); END;
CREATE TRIGGER IF NOT EXISTS events_no_delete BEFORE DELETE ON events
  BEGIN SELECT RAISE(ABORT, 'events are append-only'); END;
CREATE TABLE IF NOT EXISTS mail_log(
  id INTEGER PRIMARY KEY, run_id INTEGER, kind TEXT NOT NULL, unit_code TEXT NOT NULL, to_addr TEXT NOT NULL,
  message_id TEXT NOT NULL, attachment_sha256 TEXT, subject TEXT, sent_at TEXT NOT NULL, status TEXT NOT NULL,
  error TEXT);
CREATE INDEX IF NOT EXISTS mail_log_unit ON mail_log(kind, unit_code);
CREATE TABLE IF NOT EXISTS imap_seen(
  account TEXT NOT NULL, folder TEXT NOT NULL, uidvalidity INTEGER NOT NULL, uid INTEGER NOT NULL,
  message_id TEXT, seen_at TEXT NOT NULL, PRIMARY KEY(account, folder, uidvalidity, uid));
"""


def now() -> dt.datetime:
    return dt.datetime.now().replace(microsecond=0)


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat(timespec="seconds") if value else None


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ------------------------------------------------------------------ (de)serialising submissions

_STATES = {s.value: s for s in ValueState}  # a dict lookup is much cheaper than ValueState(text)
_STATE_TEXT = {s: s.value for s in ValueState}  # and cheaper than ``state.value`` through the enum


def _encode_value(v: Value) -> list[Any]:
    value = v.value
    if isinstance(value, dt.date):
        value = {"date": value.isoformat()}
    return [_STATE_TEXT[v.state], value, v.raw, v.sheet, v.cell]


def _decode_value(field: str, item: list[Any]) -> Value:
    state, value, raw, sheet, cell = item
    if type(value) is dict and "date" in value:
        value = dt.date.fromisoformat(value["date"])
    return Value(field, _STATES[state], value, raw, sheet, cell)


def decode_data(text: str) -> SubmissionData:
    d = json.loads(text)
    return SubmissionData(
        d["unit_code"], d["form_id"], d["form_version"], d["definition_hash"], d["year"],
        {k: _decode_value(k, v) for k, v in d["values"].items()},
        {t: [{c: _decode_value(c, v) for c, v in row.items()} for row in rows] for t, rows in d["tables"].items()},
        dict(d["justifications"]),
    )


def decode_data_shared(text: str, cache: dict[tuple[Any, ...], Value]) -> SubmissionData:
    """:func:`decode_data`, with equal values shared between the submissions decoded with one ``cache``.

    Values are immutable and most repeat from unit to unit (the same cell left blank, "không phát
    sinh", the same small number): looking one up costs a fraction of building it, and the
    submissions of a whole district then hold a few thousand values instead of a million. The key
    holds the value's type (1, 1.0 and True are equal in Python) and a float zero is never shared
    (0.0 and -0.0 are equal too); dates and anything unhashable are decoded as usual.
    """
    d = json.loads(text)
    return SubmissionData(
        d["unit_code"], d["form_id"], d["form_version"], d["definition_hash"], d["year"],
        _shared_values(d["values"], cache),
        {t: [_shared_values(row, cache) for row in rows] for t, rows in d["tables"].items()},
        dict(d["justifications"]),
    )


def _shared_values(items: dict[str, list[Any]], cache: dict[tuple[Any, ...], Value]) -> dict[str, Value]:
    out: dict[str, Value] = {}
    states = _STATES
    for name, item in items.items():
        state, value, raw, sheet, cell = item
        kind = type(value)
        if kind is dict or kind is list or (kind is float and value == 0):
            out[name] = _decode_value(name, item)
            continue
        key = (name, state, kind, value, raw, sheet, cell)
        v = cache.get(key)
        if v is None:
            v = cache[key] = Value(name, states[state], value, raw, sheet, cell)
        out[name] = v
    return out


def _plain_value(item: list[Any]) -> Any:
    """``_decode_value(…).plain`` without making the :class:`Value`."""
    state = item[0]
    if state == "value":
        value = item[1]
        if type(value) is dict and "date" in value:
            return dt.date.fromisoformat(value["date"])
        return value
    return NA if state == "na" else None


def decode_plain(text: str) -> PlainData:
    """The plain values of stored data: ``decode_data(text).plain()`` and ``.rows(table)``, cheaper."""
    d = json.loads(text)
    return PlainData({k: _plain_value(v) for k, v in d["values"].items()},
                     {t: [{c: _plain_value(v) for c, v in row.items()} for row in rows] for t, rows in d["tables"].items()})


# ------------------------------------------------------------------ the lock

class WorkspaceLock:
    """An exclusive flock on ``.danvan.lock``; waits up to ``wait`` seconds, then refuses clearly.

    The wait defaults to ``DANVAN_LOCK_TIMEOUT`` (seconds) or 60.
    """

    def __init__(self, path: Path, command: str, wait: float | None = None) -> None:
        if wait is None:
            wait = float(os.environ.get("DANVAN_LOCK_TIMEOUT", "60"))
        self.path, self.command, self.wait = path, command, wait
        self.fd = -1

    def __enter__(self) -> WorkspaceLock:
        try:
            self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            raise OutputError(f"Không tạo được tệp khoá {self.path}: {describe_os_error(err)}") from err
        deadline = time.monotonic() + self.wait
        while True:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = self._holder()
                    os.close(self.fd)
                    self.fd = -1
                    raise LedgerBusy(
                        f"Không gian làm việc đang được một lệnh khác dùng ({holder}); đã chờ {self.wait:g} giây. "
                        "Hãy chạy lại sau khi lệnh kia kết thúc.") from None
                time.sleep(0.05)
        info = f"{self.command}, tiến trình {os.getpid()} trên máy {socket.gethostname()}, bắt đầu {now():%H:%M:%S %d/%m/%Y}"
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, info.encode("utf-8"), 0)
        return self

    def _holder(self) -> str:
        try:
            text = os.pread(self.fd, 500, 0).decode("utf-8", "replace").strip()
        except OSError:
            text = ""
        return text or "không rõ lệnh"

    def __exit__(self, *exc: object) -> None:
        if self.fd >= 0:
            with contextlib.suppress(OSError):
                os.ftruncate(self.fd, 0)
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = -1


# ------------------------------------------------------------------ the ledger

@dataclass(frozen=True)
class Delivery:
    """A received file and what happened to it (one row of ``deliveries``)."""

    name: str
    origin_kind: str
    origin: str
    received_at: dt.datetime
    outcome: str
    message: str
    sha: str | None = None
    code: str = ""
    sender: str = ""
    message_id: str = ""
    unit_code: str = ""
    submission_id: int | None = None
    notes: tuple[str, ...] = ()


class Ledger:
    """Open with :meth:`open` (read-write, creates the schema) or :meth:`open_readonly`."""

    def __init__(self, conn: sqlite3.Connection, path: Path, archive: Path | None) -> None:
        self.conn = conn
        self.path = path
        self.archive = archive
        self._run_id: int | None = None
        self.command = ""
        self._dirs: set[Path] = set()
        self._unsynced = False

    # -- opening ---------------------------------------------------------------------
    @classmethod
    def open(cls, path: Path, archive: Path, command: str = "") -> Ledger:
        existed = path.exists() and path.stat().st_size > 0
        conn = _connect(path)
        if existed:
            _verify(conn, path)
        try:
            conn.executescript("PRAGMA journal_mode=WAL;")
            with conn:
                conn.executescript(SCHEMA)
                conn.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
        except sqlite3.DatabaseError as err:
            conn.close()
            raise _db_error(path, err) from err
        ledger = cls(conn, path, archive)
        ledger.command = command
        return ledger

    @classmethod
    def open_readonly(cls, path: Path, *, verify: bool = True) -> Ledger:
        """Open for reading. ``verify`` runs SQLite's quick check first (a full read of the file:
        ~0.6 s at 10,000 units); a command that opens the ledger again after checking it once
        (e.g. one connection per worker process) passes False for the later opens."""
        if not path.exists():
            raise LedgerError(f"Chưa có sổ cái {path}: chưa thu nhận tệp nào (chạy danvan collect trước).")
        try:
            conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30, isolation_level=None)
            conn.row_factory = sqlite3.Row
        except sqlite3.DatabaseError as err:
            raise _db_error(path, err) from err
        if verify:
            _verify(conn, path)
        return cls(conn, path, None)

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- transactions ------------------------------------------------------------------
    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        try:
            self.conn.execute("BEGIN IMMEDIATE")
        except sqlite3.DatabaseError as err:
            raise _db_error(self.path, err) from err
        try:
            yield self.conn
        except sqlite3.DatabaseError as err:
            with contextlib.suppress(sqlite3.Error):
                self.conn.execute("ROLLBACK")
            raise _db_error(self.path, err) from err
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                self.conn.execute("ROLLBACK")
            raise
        else:
            try:
                self.conn.execute("COMMIT")
            except sqlite3.DatabaseError as err:
                with contextlib.suppress(sqlite3.Error):
                    self.conn.execute("ROLLBACK")
                raise _db_error(self.path, err) from err
            failpoint_hold("COMMIT")

    def run_id(self, conn: sqlite3.Connection) -> int:
        """The current run's id, created lazily inside the first transaction that stores something."""
        if self._run_id is None:
            cur = conn.execute("INSERT INTO runs(command, started_at, host, pid) VALUES (?,?,?,?)",
                               (self.command, _iso(now()), socket.gethostname(), os.getpid()))
            self._run_id = int(cur.lastrowid or 0)
        return self._run_id

    def event(self, conn: sqlite3.Connection, event: str, unit: str = "", subject: str = "", **details: Any) -> None:
        """Append to the event log (``details`` may use any key, including ``kind``)."""
        conn.execute("INSERT INTO events(ts, run_id, kind, unit_code, subject, details) VALUES (?,?,?,?,?,?)",
                     (_iso(now()), self.run_id(conn), event, unit, subject,
                      json.dumps(details, ensure_ascii=False, default=str, sort_keys=True)))

    # -- archive ---------------------------------------------------------------------------
    def archive_path(self, digest: str) -> Path:
        assert self.archive is not None
        return self.archive / digest[:2] / digest

    def archive_bytes(self, data: bytes, digest: str) -> Path:
        """Write the original bytes once (temp + rename), read-only. Safe to repeat.

        No fsync per file: a killed run leaves the file in the page cache anyway, and collect calls
        :meth:`sync_archive` once before committing rows that refer to archived files.
        """
        target = self.archive_path(digest)
        if target.exists() and target.stat().st_size == len(data):
            return target
        if target.parent not in self._dirs:
            ensure_dir(target.parent)
            self._dirs.add(target.parent)
        tmp = target.with_name(f".{digest}.{os.getpid()}.tmp")
        try:
            with open(tmp, "wb") as fh:
                fh.write(data)
            os.chmod(tmp, 0o444)
            os.replace(tmp, target)
        except OSError as err:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise OutputError(f"Không lưu được bản gốc vào {self.archive}: {describe_os_error(err)}") from err
        self._unsynced = True
        return target

    def sync_archive(self) -> None:
        """Make archived bytes durable before the rows that point at them (one call per batch)."""
        if self._unsynced:
            os.sync()
            self._unsynced = False

    # -- queries ------------------------------------------------------------------------------
    def seen_sha(self, digest: str) -> sqlite3.Row | None:
        return self.conn.execute(
            "SELECT d.*, s.unit_code AS sub_unit FROM deliveries d LEFT JOIN submissions s ON s.id = d.submission_id "
            "WHERE d.sha256 = ? ORDER BY d.id LIMIT 1", (digest,)).fetchone()

    def current_row(self, unit: str, form_id: str, year: int) -> sqlite3.Row | None:
        return self.conn.execute(
            "SELECT s.* FROM current c JOIN submissions s ON s.id = c.submission_id "
            "WHERE c.unit_code = ? AND c.form_id = ? AND c.year = ?", (unit, form_id, year)).fetchone()

    def submission(self, submission_id: int) -> Submission:
        row = self.conn.execute("SELECT * FROM submissions WHERE id = ?", (submission_id,)).fetchone()
        if row is None:
            raise LedgerError(f"Không có bản nộp số {submission_id}")
        return self._submission(row)

    def plain_data(self, submission_id: int) -> PlainData:
        """``submission(submission_id).data``'s plain values and table rows only (see :func:`decode_plain`)."""
        row = self.conn.execute("SELECT data_json FROM submissions WHERE id = ?", (submission_id,)).fetchone()
        if row is None:
            raise LedgerError(f"Không có bản nộp số {submission_id}")
        return decode_plain(row[0])

    def _submission(self, row: sqlite3.Row) -> Submission:
        errors, warnings = self._counts(row["id"])
        return Submission(
            id=row["id"], unit_code=row["unit_code"], received_at=dt.datetime.fromisoformat(row["received_at"]),
            source=row["source"], sha256=row["sha256"], state=row["state"], data=decode_data(row["data_json"]),
            errors=errors, warnings=warnings, file_format=row["file_format"],
            notes=tuple(json.loads(row["notes"] or "[]")),
        )

    def _counts(self, submission_id: int) -> tuple[int, int]:
        check = self.latest_check(submission_id)
        if check is None:
            return 0, 0
        return int(check["errors"]), int(check["warnings"])

    def latest_check(self, submission_id: int) -> sqlite3.Row | None:
        return self.conn.execute("SELECT * FROM checks WHERE submission_id = ? ORDER BY id DESC LIMIT 1",
                                 (submission_id,)).fetchone()

    def current_index(self, form_id: str, year: int) -> dict[str, tuple[int, int]]:
        """Unit code → (current submission id, its errors at the latest check), without the data."""
        rows = self.conn.execute(
            "SELECT c.unit_code, c.submission_id, (SELECT k.errors FROM checks k WHERE k.submission_id = "
            "c.submission_id ORDER BY k.id DESC LIMIT 1) FROM current c WHERE c.form_id = ? AND c.year = ?",
            (form_id, year)).fetchall()
        return {str(r[0]): (int(r[1]), int(r[2] or 0)) for r in rows}

    def current_submissions(self, form_id: str, year: int) -> list[Submission]:
        rows = self.conn.execute(
            "SELECT s.* FROM current c JOIN submissions s ON s.id = c.submission_id "
            "WHERE c.form_id = ? AND c.year = ? ORDER BY s.unit_code", (form_id, year)).fetchall()
        return [self._submission(r) for r in rows]

    def current_plain(self, form_id: str, year: int) -> list[PlainSubmission]:
        """The current submissions as :meth:`current_submissions` orders them, with only their plain
        values and error counts (one query; no states, cells, sources or notes)."""
        rows = self.conn.execute(
            "SELECT s.id, s.unit_code, s.data_json, (SELECT k.errors FROM checks k WHERE k.submission_id = s.id "
            "ORDER BY k.id DESC LIMIT 1) FROM current c JOIN submissions s ON s.id = c.submission_id "
            "WHERE c.form_id = ? AND c.year = ? ORDER BY s.unit_code", (form_id, year)).fetchall()
        return [PlainSubmission(int(r[0]), r[1], decode_plain(r[2]), int(r[3] or 0)) for r in rows]

    def count_submissions(self, unit: str, form_id: str, year: int) -> int:
        return int(self.conn.execute("SELECT count(*) FROM submissions WHERE unit_code = ? AND form_id = ? AND year = ?",
                                     (unit, form_id, year)).fetchone()[0])

    def unit_conflicts(self, unit: str, form_id: str, year: int) -> list[sqlite3.Row]:
        return self.conn.execute("SELECT * FROM submissions WHERE unit_code = ? AND form_id = ? AND year = ? AND "
                                 "state = 'conflict' ORDER BY id", (unit, form_id, year)).fetchall()

    def submissions_of(self, unit: str, form_id: str, year: int) -> list[sqlite3.Row]:
        return self.conn.execute(
            "SELECT * FROM submissions WHERE unit_code = ? AND form_id = ? AND year = ? ORDER BY id",
            (unit, form_id, year)).fetchall()

    def conflicts(self, form_id: str, year: int) -> dict[str, list[sqlite3.Row]]:
        out: dict[str, list[sqlite3.Row]] = {}
        for row in self.conn.execute("SELECT * FROM submissions WHERE form_id = ? AND year = ? AND state = 'conflict' "
                                     "ORDER BY id", (form_id, year)):
            out.setdefault(row["unit_code"], []).append(row)
        return out

    def current_values(self, form_id: str, year: int) -> dict[str, dict[str, Any]]:
        """unit → field → plain value (``NA`` for không phát sinh) of the current submissions (plain
        reads: :meth:`current_plain`)."""
        return {s.unit_code: s.data.plain() for s in self.current_plain(form_id, year)}

    # -- bulk reads of the current submissions (compile): one query each instead of one or more per unit
    def current_submissions_bulk(self, form_id: str, year: int) -> list[Submission]:
        """:meth:`current_submissions` in one query: the latest check's counts are joined in instead
        of being asked for per submission (same submissions, same order, same counts), and equal values
        are one object shared by the submissions (:func:`decode_data_shared`)."""
        rows = self.conn.execute(
            "SELECT s.*, k.errors AS latest_errors, k.warnings AS latest_warnings FROM current c "
            "JOIN submissions s ON s.id = c.submission_id "
            "LEFT JOIN checks k ON k.id = (SELECT max(id) FROM checks WHERE submission_id = s.id) "
            "WHERE c.form_id = ? AND c.year = ? ORDER BY s.unit_code", (form_id, year)).fetchall()
        fromiso, out = dt.datetime.fromisoformat, []
        cache: dict[tuple[Any, ...], Value] = {}  # equal values shared (decode_data_shared)
        for row in rows:
            errors, warnings = row["latest_errors"], row["latest_warnings"]
            out.append(Submission(
                id=row["id"], unit_code=row["unit_code"], received_at=fromiso(row["received_at"]),
                source=row["source"], sha256=row["sha256"], state=row["state"],
                data=decode_data_shared(row["data_json"], cache), errors=0 if errors is None else int(errors),
                warnings=0 if warnings is None else int(warnings), file_format=row["file_format"],
                notes=tuple(json.loads(row["notes"] or "[]")),
            ))
        return out

    def current_findings(self, form_id: str, year: int) -> dict[int, list[Finding]]:
        """Current submission id → :meth:`findings` of it, for every current submission, in one query."""
        out: dict[int, list[Finding]] = {int(r[0]): [] for r in self.conn.execute(
            "SELECT c.submission_id FROM current c JOIN submissions s ON s.id = c.submission_id "
            "WHERE c.form_id = ? AND c.year = ?", (form_id, year))}
        rows = self.conn.execute(  # the latest checks first (joined the other way round it scans findings)
            "WITH latest AS MATERIALIZED (SELECT c.submission_id AS sid, (SELECT max(k.id) FROM checks k "
            "WHERE k.submission_id = c.submission_id) AS kid FROM current c WHERE c.form_id = ? AND c.year = ?) "
            "SELECT latest.sid AS of_submission, f.* FROM latest JOIN findings f ON f.check_id = latest.kid "
            "ORDER BY f.id", (form_id, year))
        for row in rows:
            out[int(row["of_submission"])].append(_finding(row))
        return out

    def status_facts(self, form_id: str, year: int) -> tuple[
            dict[str, sqlite3.Row], dict[str, tuple[int, str]], dict[int, tuple[int, int]]]:
        """What ``status.compute_status`` needs for every unit at once: unit → its current submission's
        row; unit → (number of versions, first version's received_at); submission id → (errors,
        warnings) of its latest check."""
        current = {str(r["current_unit"]): r for r in self.conn.execute(
            "SELECT c.unit_code AS current_unit, s.* FROM current c JOIN submissions s ON s.id = c.submission_id "
            "WHERE c.form_id = ? AND c.year = ?", (form_id, year))}
        versions = {str(r[0]): (int(r[1]), str(r[3])) for r in self.conn.execute(
            "SELECT unit_code, count(*), min(id), received_at FROM submissions WHERE form_id = ? AND year = ? "
            "GROUP BY unit_code", (form_id, year))}  # received_at of the min(id) row (SQLite's bare column rule)
        checks = {int(r[0]): (int(r[1]), int(r[2])) for r in self.conn.execute(
            "SELECT k.submission_id, k.errors, k.warnings FROM current c "
            "JOIN checks k ON k.id = (SELECT max(id) FROM checks WHERE submission_id = c.submission_id) "
            "WHERE c.form_id = ? AND c.year = ?", (form_id, year))}
        return current, versions, checks

    def latest_check_keys(self, form_id: str, year: int) -> dict[int, tuple[str, str]]:
        """Current submission id → (digest, definition hash) of its latest check, in one query
        (submissions without a check are absent)."""
        return {int(r[0]): (r[1], r[2]) for r in self.conn.execute(
            "SELECT k.submission_id, k.digest, k.definition_hash FROM current c "
            "JOIN checks k ON k.id = (SELECT max(id) FROM checks WHERE submission_id = c.submission_id) "
            "WHERE c.form_id = ? AND c.year = ?", (form_id, year))}

    def findings(self, submission_id: int) -> list[Finding]:
        check = self.latest_check(submission_id)
        if check is None:
            return []
        rows = self.conn.execute("SELECT * FROM findings WHERE check_id = ? ORDER BY id", (check["id"],)).fetchall()
        return [_finding(r) for r in rows]

    def deliveries(self, run_only: bool = False) -> list[sqlite3.Row]:
        if run_only and self._run_id is None:
            return []
        if run_only:
            return self.conn.execute("SELECT * FROM deliveries WHERE run_id = ? ORDER BY id", (self._run_id,)).fetchall()
        return self.conn.execute("SELECT * FROM deliveries ORDER BY id").fetchall()

    # -- writes ----------------------------------------------------------------------------------
    def add_blob(self, conn: sqlite3.Connection, digest: str, size: int, kind: str) -> None:
        conn.execute("INSERT OR IGNORE INTO blobs VALUES (?,?,?,?)", (digest, size, kind, _iso(now())))

    def add_delivery(self, conn: sqlite3.Connection, d: Delivery) -> int:
        cur = conn.execute(
            "INSERT INTO deliveries(run_id, sha256, name, origin_kind, origin, sender, message_id, received_at, outcome, "
            "code, message, unit_code, submission_id, notes) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (self.run_id(conn), d.sha, d.name, d.origin_kind, d.origin, d.sender, d.message_id, _iso(d.received_at),
             d.outcome, d.code, d.message, d.unit_code, d.submission_id, json.dumps(list(d.notes), ensure_ascii=False)))
        return int(cur.lastrowid or 0)

    def add_submission(
        self, conn: sqlite3.Connection, data: SubmissionData, *, digest: str, chash: str, received_at: dt.datetime,
        source: str, file_format: str, state: str, supersedes: int | None, notes: Sequence[str],
        prepared: tuple[str, list[tuple[Any, ...]], str] | None = None,
    ) -> int:
        """Store a submission and its values; ``prepared`` is :func:`prepare_submission` of ``data`` if done already."""
        encoded, value_rows, _chash = prepared if prepared is not None else prepare_submission(data)
        cur = conn.execute(
            "INSERT INTO submissions(unit_code, form_id, form_version, definition_hash, year, sha256, content_hash, "
            "received_at, source, file_format, state, supersedes_id, created_at, run_id, notes, data_json) "
            "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (data.unit_code, data.form_id, data.form_version, data.definition_hash, data.year, digest, chash,
             _iso(received_at), source, file_format, state, supersedes, _iso(now()), self.run_id(conn),
             json.dumps(list(notes), ensure_ascii=False), encoded))
        sid = int(cur.lastrowid or 0)
        conn.executemany("INSERT INTO submission_values VALUES (?,?,?,?,?,?,?,?,?,?)",
                         [(sid, *row) for row in value_rows])
        return sid

    def set_current(self, conn: sqlite3.Connection, unit: str, form_id: str, year: int, submission_id: int) -> None:
        conn.execute("INSERT INTO current VALUES (?,?,?,?) ON CONFLICT(unit_code, form_id, year) "
                     "DO UPDATE SET submission_id = excluded.submission_id", (unit, form_id, year, submission_id))

    def set_state(self, conn: sqlite3.Connection, submission_id: int, state: str) -> None:
        conn.execute("UPDATE submissions SET state = ? WHERE id = ?", (state, submission_id))

    def store_check(self, conn: sqlite3.Connection, submission_id: int, definition_hash: str,
                    findings: Sequence[Finding], latest: tuple[str, str] | bool | None = True) -> bool:
        """Store a check result; returns False (and stores nothing) when it equals the latest one.

        ``latest``: the latest check's (digest, definition hash) when the caller already has it
        (:meth:`latest_check_keys`); None when there is none (e.g. the submission was stored in this
        transaction); True asks the ledger."""
        digest = sha256(json.dumps([f.to_dict() for f in findings], sort_keys=True, ensure_ascii=False,
                                   default=str).encode())
        if latest is True:
            row = self.latest_check(submission_id)
            latest = None if row is None else (row["digest"], row["definition_hash"])
        if isinstance(latest, tuple) and latest[0] == digest and latest[1] == definition_hash:
            return False
        errors = sum(1 for f in findings if f.severity == Severity.ERROR)
        warnings = sum(1 for f in findings if f.severity == Severity.WARNING and not f.accepted)
        cur = conn.execute("INSERT INTO checks(submission_id, run_id, created_at, definition_hash, errors, warnings, digest) "
                           "VALUES (?,?,?,?,?,?,?)",
                           (submission_id, self.run_id(conn), _iso(now()), definition_hash, errors, warnings, digest))
        check_id = int(cur.lastrowid or 0)
        conn.executemany(
            "INSERT INTO findings(check_id, submission_id, code, severity, message, file, sheet, cell, field, rule, "
            "left_value, right_value, justification) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
            [(check_id, submission_id, f.code, f.severity.value, f.message, f.file, f.sheet, f.cell, f.field, f.rule,
              _json(f.left), _json(f.right), f.justification) for f in findings])
        return True

    # -- mail -------------------------------------------------------------------------------------
    def mail_sent(self, kind: str, unit: str, attachment_sha: str | None) -> sqlite3.Row | None:
        return self.conn.execute(
            "SELECT * FROM mail_log WHERE kind = ? AND unit_code = ? AND status = 'sent' AND "
            "(attachment_sha256 IS ? OR attachment_sha256 = ?) ORDER BY id DESC LIMIT 1",
            (kind, unit, attachment_sha, attachment_sha)).fetchone()

    def log_mail(self, kind: str, unit: str, to_addr: str, message_id: str, attachment_sha: str | None,
                 subject: str, status: str, error: str = "") -> None:
        with self.transaction() as conn:
            conn.execute("INSERT INTO mail_log(run_id, kind, unit_code, to_addr, message_id, attachment_sha256, subject, "
                         "sent_at, status, error) VALUES (?,?,?,?,?,?,?,?,?,?)",
                         (self.run_id(conn), kind, unit, to_addr, message_id, attachment_sha, subject, _iso(now()),
                          status, error))
            self.event(conn, f"mail-{status}", unit, message_id, kind=kind, to=to_addr, error=error)

    def imap_seen(self, account: str, folder: str, uidvalidity: int) -> set[int]:
        rows = self.conn.execute("SELECT uid FROM imap_seen WHERE account = ? AND folder = ? AND uidvalidity = ?",
                                 (account, folder, uidvalidity)).fetchall()
        return {int(r["uid"]) for r in rows}

    def mark_imap_seen(self, conn: sqlite3.Connection, account: str, folder: str, uidvalidity: int, uid: int,
                       message_id: str) -> None:
        conn.execute("INSERT OR IGNORE INTO imap_seen VALUES (?,?,?,?,?,?)",
                     (account, folder, uidvalidity, uid, message_id, _iso(now())))

    # -- maintenance -------------------------------------------------------------------------------
    def integrity_check(self) -> str:
        return str(self.conn.execute("PRAGMA integrity_check").fetchone()[0])


def prepare_submission(data: SubmissionData) -> tuple[str, list[tuple[Any, ...]], str]:
    """What a submission is stored as, in one pass over its values: ``(the JSON of the data — keys
    sorted, dates as ``{"date": iso}`` —, its submission_values rows without the submission id,
    the content hash)``.

    The content hash is equal for two files that carry the same values (e.g. the same workbook
    re-saved): the canonical JSON of the data without cell positions (positions do not change
    content). Collect prepares each file while the workers parse the next ones."""
    rows: list[tuple[Any, ...]] = []
    values: dict[str, list[Any]] = {}
    for fid, v in data.values.items():
        values[fid] = _encode_value(v)
        rows.append((fid, 0, "", *_value_columns(v)))
    tables: dict[str, list[dict[str, list[Any]]]] = {}
    for tid, table_rows in data.tables.items():
        encoded_rows = tables[tid] = []
        for i, row in enumerate(table_rows, start=1):
            encoded_rows.append({c: _encode_value(v) for c, v in row.items()})
            for col, v in row.items():
                rows.append((tid, i, col, *_value_columns(v)))
    head = {"unit_code": data.unit_code, "form_id": data.form_id, "form_version": data.form_version,
            "definition_hash": data.definition_hash, "year": data.year}
    # json sorts every dict's keys (sort_keys), so the insertion order here does not matter.
    encoded = json.dumps({**head, "values": values, "tables": tables, "justifications": data.justifications},
                         ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    canon = {**head, "values": {k: e[:3] for k, e in values.items()},
             "tables": {t: [{c: e[:3] for c, e in row.items()} for row in rs] for t, rs in tables.items()},
             "justifications": data.justifications}
    return encoded, rows, sha256(json.dumps(canon, sort_keys=True, ensure_ascii=False).encode())


def _value_columns(v: Value) -> tuple[Any, ...]:
    """A value's submission_values columns (state, num, text, raw, sheet, cell); the plain types
    that make up nearly every value are told apart by their exact type first."""
    value = v.value
    kind = type(value)
    if kind is float or kind is int:
        num, text = value, None
    elif kind is str:
        num, text = None, value
    elif value is None:
        num = text = None
    else:  # dates, booleans, subclasses
        num = value if isinstance(value, int | float) and not isinstance(value, bool) else None
        text = value.isoformat() if isinstance(value, dt.date) else value if isinstance(value, str) else None
    if v.state == ValueState.NA:
        text = NA_TEXT
    return (_STATE_TEXT[v.state], num, text, v.raw, v.sheet, v.cell)


def _json(value: Any) -> str | None:
    if value is None:
        return None
    if value is NA:
        return json.dumps("không phát sinh", ensure_ascii=False)
    return json.dumps(value, ensure_ascii=False, default=str)


def _finding(row: sqlite3.Row) -> Finding:
    def load(text: str | None) -> Any:
        return None if text is None else json.loads(text)

    return Finding(row["code"], Severity(row["severity"]), row["message"], row["file"] or "", row["sheet"] or "",
                   row["cell"] or "", row["field"] or "", row["rule"] or "", load(row["left_value"]),
                   load(row["right_value"]), "", row["justification"] or "")


def _connect(path: Path) -> sqlite3.Connection:
    try:
        ensure_dir(path.parent)
        conn = sqlite3.connect(path, timeout=30, isolation_level=None)
    except sqlite3.DatabaseError as err:
        raise _db_error(path, err) from err
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA busy_timeout = 30000")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("PRAGMA foreign_keys = ON")
    return conn


def _verify(conn: sqlite3.Connection, path: Path) -> None:
    try:
        result = conn.execute("PRAGMA quick_check").fetchone()[0]
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if result == "ok" and not tables:
            return  # created but never written (e.g. the disk filled up at once): nothing to protect
        if "meta" not in tables:
            conn.close()
            raise LedgerError(f"Tệp {path} không phải sổ cái của danvan_xl (không có bảng meta); không ghi đè lên nó.")
        version = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    except sqlite3.DatabaseError as err:
        conn.close()
        raise _db_error(path, err) from err
    if result != "ok":
        conn.close()
        raise LedgerError(f"Sổ cái {path} bị hỏng ({result}). Không tự tạo lại để tránh mất dữ liệu: hãy khôi phục từ "
                          "bản sao lưu, hoặc chuyển tệp hỏng sang chỗ khác rồi thu nhận lại từ thư mục archive/.")
    if version is None or int(version[0]) > SCHEMA_VERSION:
        conn.close()
        raise LedgerError(f"Sổ cái {path} được tạo bởi phiên bản danvan_xl mới hơn (lược đồ {version[0] if version else '?'}).")


def _db_error(path: Path, err: sqlite3.DatabaseError) -> LedgerError:
    text = str(err)
    if "locked" in text or "busy" in text:
        return LedgerBusy(f"Sổ cái {path} đang bị một chương trình khác khoá; hãy thử lại sau.")
    if "full" in text:
        return LedgerError(f"Không ghi được sổ cái {path}: ổ đĩa đã đầy. Phần đang ghi dở đã được huỷ; giải phóng chỗ "
                           "trống rồi chạy lại lệnh.")
    if "disk i/o" in text.lower():
        return LedgerError(f"Không đọc/ghi được sổ cái {path}: lỗi vào/ra của ổ đĩa (ổ đĩa đầy, hỏng, hoặc vượt giới hạn "
                           "dung lượng tệp). Phần đang ghi dở đã được huỷ; khắc phục rồi chạy lại lệnh.")
    if "readonly" in text or "read-only" in text:
        return LedgerError(f"Không ghi được sổ cái {path}: thư mục hoặc tệp chỉ cho phép đọc.")
    if "not a database" in text or "malformed" in text or "corrupt" in text:
        return LedgerError(f"Sổ cái {path} bị hỏng ({text}). Không tự tạo lại để tránh mất dữ liệu: hãy khôi phục từ "
                           "bản sao lưu, hoặc chuyển tệp hỏng sang chỗ khác rồi thu nhận lại từ thư mục archive/.")
    return LedgerError(f"Lỗi sổ cái {path}: {text}")
