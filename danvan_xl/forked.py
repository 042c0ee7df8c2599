"""Work done on the second core by a forked child, for stages that are one long Python computation.

:func:`in_child` forks; the child computes ``fn()`` (bytes) from the parent's memory as it was at
the fork, writes the result to an unnamed temporary file and exits. :meth:`Forked.result` waits for
it and reads the bytes back, or gives None when the platform cannot fork or the child failed for any
reason: the caller then computes the same thing itself, so errors surface exactly as without the
child and the output never depends on whether a child was used.

The child shares the parent's pages copy-on-write; only the pages it writes (reference counts of
the objects it reads, what it allocates) are copied, and it exits as soon as it is done.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable


class Forked:
    """The bytes ``fn()`` returns, computed by a child process while the parent does other work."""

    def __init__(self, fn: Callable[[], bytes]) -> None:
        self.pid = 0
        self.file = None
        if not hasattr(os, "fork"):
            return
        try:
            self.file = tempfile.TemporaryFile(prefix="danvan-")  # noqa: SIM115 (closed by result/discard)
            pid = os.fork()
        except OSError:
            self._close()
            return
        if pid == 0:  # the child: never returns
            status = 1
            try:
                data = fn()
                fd = self.file.fileno()
                view = memoryview(data)
                offset = 0
                while offset < len(view):
                    offset += os.pwrite(fd, view[offset:], offset)
                status = 0
            finally:
                os._exit(status)  # no atexit handlers, no flushing of the parent's buffers
        self.pid = pid

    def result(self) -> bytes | None:
        """The child's bytes (waiting for it); None when it could not be forked or did not succeed."""
        data = None
        if self.pid:
            pid, self.pid = self.pid, 0
            _, status = os.waitpid(pid, 0)
            if os.waitstatus_to_exitcode(status) == 0 and self.file is not None:
                self.file.seek(0)
                data = self.file.read()
        self._close()
        return data

    def discard(self) -> None:
        """Stop waiting for the child (the parent failed): it is killed and reaped."""
        if self.pid:
            pid, self.pid = self.pid, 0
            try:
                os.kill(pid, 9)
                os.waitpid(pid, 0)
            except OSError:
                pass
        self._close()

    def _close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None


def in_child(fn: Callable[[], bytes]) -> Forked:
    """Start computing ``fn()`` in a forked child (see the module docstring)."""
    return Forked(fn)
