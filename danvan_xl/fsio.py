"""Atomic file output: write to a temporary file in the same folder, fsync, rename.

A crash, a full disk or Ctrl-C never leaves a half-written workbook or report where a good one
was (reliability.md §0.10); errors become :class:`OutputError` with a Vietnamese message.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from pathlib import Path

from .errors import OutputError

_REASONS = {
    errno.ENOSPC: "ổ đĩa đã đầy",
    errno.EDQUOT: "vượt hạn mức dung lượng",
    errno.EROFS: "thư mục chỉ cho phép đọc",
    errno.EACCES: "không có quyền ghi",
    errno.EPERM: "không có quyền ghi",
    errno.EFBIG: "ổ đĩa đầy hoặc tệp vượt giới hạn kích thước cho phép",
}


def describe_os_error(err: OSError) -> str:
    return _REASONS.get(err.errno or 0, err.strerror or str(err))


def prepare_dir(path: Path) -> Path:
    """An output folder at the start of a stage: created if needed, temporary files of killed runs removed."""
    ensure_dir(path)
    remove_stale_temps(path)
    return path


def ensure_dir(path: Path) -> Path:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OutputError(f"Không tạo được thư mục {path}: {describe_os_error(err)}") from err
    return path


def write_atomic(path: str | Path, data: bytes, *, durable: bool = True) -> Path:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never a mix.

    ``durable`` also fsyncs the file and its folder (survives a power cut, costs ~10–50 ms); bulk
    outputs that can be regenerated (templates) skip it and call :func:`sync_dir` once at the end.
    """
    path = Path(path)
    ensure_dir(path.parent)
    fd = -1
    tmp = ""
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        if durable:
            os.fsync(fd)
        os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600; outputs are meant to be shared
        os.close(fd)
        fd = -1
        failpoint_hold("TEMP")
        os.replace(tmp, path)
        tmp = ""
        if durable:
            sync_dir(path.parent)
    except OSError as err:
        raise OutputError(f"Không ghi được {path}: {describe_os_error(err)}") from err
    finally:
        if fd >= 0:
            os.close(fd)
        if tmp:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
    return path


def failpoint_hold(point: str) -> None:
    """Fault-injection points for the kill -9 tests, so that a test kills the process at exactly
    that moment instead of racing a fast machine. With ``DANVAN_FAILPOINT_HOLD_<POINT>=seconds`` in
    the environment the process pauses there:

    * ``TEMP``: every atomic write, with its complete temporary file on disk, just before the rename;
    * ``COMMIT``: every ledger transaction, just after its commit.

    Unset (always, outside tests) it costs one dictionary lookup."""
    hold = os.environ.get(f"DANVAN_FAILPOINT_HOLD_{point}")
    if hold:
        import time

        time.sleep(float(hold))


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _umask()


def write_text_atomic(path: str | Path, text: str, *, durable: bool = True) -> Path:
    return write_atomic(path, text.encode("utf-8"), durable=durable)


def fsync_file(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def sync_dir(path: Path) -> None:
    """fsync a folder so that renames into it survive a power cut."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def remove_stale_temps(folder: Path, older_than: float = 60.0) -> int:
    """Remove ``.name.*.tmp`` files a killed run left behind (older than ``older_than`` seconds, so
    that a temporary file another run is still writing is never touched); returns how many."""
    import time

    removed = 0
    if not folder.is_dir():
        return 0
    limit = time.time() - older_than
    for p in folder.glob(".*.tmp"):
        with contextlib.suppress(OSError):
            if p.stat().st_mtime < limit:
                p.unlink()
                removed += 1
    return removed
