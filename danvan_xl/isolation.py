"""Parse untrusted files in worker processes so that one file's crash is one file's rejection.

A hostile workbook can abort the native reader (python-calamine allocates a whole sheet rectangle
and aborts on failure, reliability.md §1.3), exhaust memory, or hang. Each worker is a separate
``python -m danvan_xl.isolation`` process with an address-space limit; the parent feeds jobs over
pipes, enforces a per-file timeout, and replaces a worker that died. ``multiprocessing.Pool`` is
avoided on purpose: it can hang forever when a worker dies abruptly (cpython #96062).

Results come back pickled; the parent unpickles them with an allow-list of our own classes.
"""

from __future__ import annotations

import contextlib
import io
import os
import pickle
import selectors
import signal
import struct
import subprocess
import sys
import time
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from .workspace import Limits

_HEADER = struct.Struct("!I")
_ALLOWED = {
    ("danvan_xl.workbook_reader", "ReadResult"), ("danvan_xl.submission", "SubmissionData"),
    ("danvan_xl.submission", "Value"), ("danvan_xl.findings", "Finding"), ("danvan_xl.vocabulary", "Severity"),
    ("danvan_xl.vocabulary", "ValueState"), ("danvan_xl.expr", "NotApplicable"), ("datetime", "date"),
    ("danvan_xl.expr", "NA"), ("datetime", "datetime"), ("builtins", "set"), ("builtins", "frozenset"),
}


class _SafeUnpickler(pickle.Unpickler):
    def __init__(self, fh: io.BytesIO, allowed: set[tuple[str, str]]) -> None:
        super().__init__(fh)
        self.allowed = allowed

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self.allowed:
            raise pickle.UnpicklingError(f"refused {module}.{name}")
        return super().find_class(module, name)


def safe_loads(data: bytes, extra: set[tuple[str, str]] | None = None) -> Any:
    """Unpickle results that carry content from untrusted files: only our own data classes."""
    return _SafeUnpickler(io.BytesIO(data), _ALLOWED | (extra or set())).load()


@dataclass(frozen=True)
class Job:
    """One file to read: its bytes, or the path of a copy the worker reads itself (cheaper to send)."""

    index: int
    data: bytes | None
    name: str
    path: str | None = None


@dataclass(frozen=True)
class Crash:
    """The worker died or timed out on this job."""

    code: str  # parser-crashed | timeout
    message: str


# Jobs sent ahead to a worker, so that it starts the next file while the parent handles the last result.
DEPTH = 2


class _Worker:
    def __init__(self, init: dict[str, Any]) -> None:
        env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "danvan_xl.isolation"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL, env=env,
        )
        self.jobs = deque[Job]()  # in the worker's order; the first is the one being read now
        self.started = 0.0  # when the first job started
        self.buffer = b""
        self._send(pickle.dumps(init))

    def _send(self, payload: bytes) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(_HEADER.pack(len(payload)) + payload)
        self.proc.stdin.flush()

    def start(self, job: Job) -> None:
        if not self.jobs:
            self.started = time.monotonic()
        self.jobs.append(job)
        self._send(pickle.dumps((job.data, job.name, job.path)))

    def read_available(self) -> list[tuple[Job, Any]]:
        """Read what the pipe has; return the finished ``(job, result)`` pairs; raise EOFError if the worker died."""
        assert self.proc.stdout is not None
        chunk = os.read(self.proc.stdout.fileno(), 1 << 20)
        if not chunk:
            raise EOFError
        self.buffer += chunk
        done = []
        while len(self.buffer) >= _HEADER.size:
            (size,) = _HEADER.unpack_from(self.buffer)
            if len(self.buffer) < _HEADER.size + size:
                break
            payload = self.buffer[_HEADER.size:_HEADER.size + size]
            self.buffer = self.buffer[_HEADER.size + size:]
            done.append((self.jobs.popleft(), safe_loads(payload)))
            self.started = time.monotonic()  # the next job starts now
        return done

    def kill(self) -> int | None:
        with contextlib.suppress(OSError):
            self.proc.kill()
        try:
            return self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:  # pragma: no cover - kill -9 does not fail
            return None

    def close(self) -> None:
        try:
            if self.proc.stdin:
                self.proc.stdin.close()
            self.proc.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            self.kill()


class WorkerPool:
    """Run ``read_workbook`` for jobs in N isolated workers; yields ``(index, result | Crash)``.

    Each worker holds up to ``DEPTH`` jobs. When a worker dies or overruns the per-file timeout,
    the job it was reading gets the :class:`Crash`; the jobs queued behind it go to another worker.
    """

    def __init__(self, form_folder: str, year: int, limits: Limits, workers: int | None = None) -> None:
        self.init = {"form": form_folder, "year": year, "limits": limits}
        self.limits = limits
        self.size = max(1, workers or limits.workers or os.cpu_count() or 1)

    def run(self, jobs: Iterable[Job]) -> Iterator[tuple[int, Any]]:
        pending = deque[Job]()
        source = iter(jobs)
        workers: list[_Worker] = []
        selector = selectors.DefaultSelector()
        try:
            yield from self._loop(source, pending, workers, selector)
        finally:
            for w in workers:
                w.close()
            selector.close()

    def _loop(self, source: Iterator[Job], pending: deque[Job], workers: list[_Worker],
              selector: selectors.BaseSelector) -> Iterator[tuple[int, Any]]:
        exhausted = False

        def refill() -> None:
            nonlocal exhausted
            while not exhausted and len(pending) < self.size * DEPTH:
                try:
                    pending.append(next(source))
                except StopIteration:
                    exhausted = True

        def spawn() -> _Worker:
            w = _Worker(self.init)
            workers.append(w)
            assert w.proc.stdout is not None
            selector.register(w.proc.stdout, selectors.EVENT_READ, w)
            return w

        def retire(w: _Worker) -> tuple[Job | None, int | None]:
            """Stop ``w``; return the job it was reading; its queued jobs go back to the front."""
            assert w.proc.stdout is not None
            selector.unregister(w.proc.stdout)
            workers.remove(w)
            rc = w.kill()
            current = w.jobs.popleft() if w.jobs else None
            pending.extendleft(reversed(w.jobs))
            w.jobs.clear()
            return current, rc

        refill()
        for _ in range(min(self.size, max(len(pending), 1))):
            spawn()
        while True:
            refill()
            for depth in range(1, DEPTH + 1):  # first give every idle worker a job, then queue one more each
                for w in workers:
                    if len(w.jobs) < depth and pending:
                        w.start(pending.popleft())
            busy = [w for w in workers if w.jobs]
            if not busy:
                if exhausted and not pending:
                    return
                continue
            now = time.monotonic()
            deadline = min(w.started for w in busy) + self.limits.timeout_seconds
            for key, _ in selector.select(timeout=max(0.0, deadline - now)):
                w = key.data
                if w not in workers:
                    continue
                try:
                    finished = w.read_available()
                except EOFError:
                    job, rc = retire(w)
                    if job is not None:
                        yield job.index, _crash(rc)
                    spawn()
                    continue
                for job, payload in finished:
                    yield job.index, payload
            now = time.monotonic()
            for w in list(workers):
                if w.jobs and now - w.started > self.limits.timeout_seconds:
                    job, _rc = retire(w)
                    assert job is not None
                    yield job.index, Crash("timeout", f"đọc tệp quá {self.limits.timeout_seconds:g} giây; đã dừng "
                                                      "(tệp quá lớn, quá phức tạp hoặc bị hỏng)")
                    spawn()


def _crash(rc: int | None) -> Crash:
    if rc is not None and rc < 0:
        try:
            sig = signal.Signals(-rc).name
        except ValueError:
            sig = str(-rc)
        detail = f"tín hiệu {sig}"
    else:
        detail = f"mã thoát {rc}"
    return Crash("parser-crashed", f"trình đọc bảng tính dừng đột ngột khi đọc tệp này ({detail}) — thường do tệp quá lớn "
                                   "hoặc cố ý làm hỏng; các tệp khác không bị ảnh hưởng")


# ------------------------------------------------------------------ the worker side

def _serve() -> None:  # pragma: no cover - runs in the child process, exercised by the collect tests
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer

    def read_frame() -> bytes | None:
        head = stdin.read(_HEADER.size)
        if len(head) < _HEADER.size:
            return None
        (size,) = _HEADER.unpack(head)
        return stdin.read(size)

    frame = read_frame()
    if frame is None:
        return
    init = pickle.loads(frame)  # from our own parent
    limits: Limits = init["limits"]
    _limit_memory(limits.memory_mb)
    from .form import load_form
    from .gate import Rejected, sniff
    from .workbook_reader import ReadResult, read_workbook

    form = load_form(init["form"])
    while (frame := read_frame()) is not None:
        data, name, path = pickle.loads(frame)
        try:
            if data is None:
                with open(path, "rb") as fh:
                    data = fh.read(int(limits.max_file_mb * 1024 * 1024) + 1)
            sniffed = sniff(data, limits)
            result = read_workbook(data, sniffed, form, init["year"], limits, name)
        except Rejected as rej:
            result = ReadResult(False, "", rej.code, rej.message)
        except MemoryError:
            result = ReadResult(False, "", "too-large", "tệp quá lớn để đọc trong giới hạn bộ nhớ")
        except OSError as err:
            result = ReadResult(False, "", "unreadable", f"không đọc được tệp ({err.strerror or err})")
        except Exception as err:  # a reader bug must not take the run down; report it as this file's problem
            result = ReadResult(False, "", "reader-error", f"lỗi khi đọc tệp ({type(err).__name__}: {str(err)[:120]})")
        payload = pickle.dumps(result)
        stdout.write(_HEADER.pack(len(payload)) + payload)
        stdout.flush()


def _limit_memory(megabytes: int) -> None:  # pragma: no cover - child process
    try:
        import resource

        soft = megabytes * 1024 * 1024
        _, hard = resource.getrlimit(resource.RLIMIT_AS)
        if hard != resource.RLIM_INFINITY:
            soft = min(soft, hard)
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
    except (ImportError, ValueError, OSError):
        pass


if __name__ == "__main__":  # pragma: no cover
    _serve()
