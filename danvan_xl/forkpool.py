"""Spreading independent jobs over forked worker processes, in order (feedback workbooks, reports).

The caller's work function ``work(start, stop)`` handles jobs ``start:stop`` and returns their
results; it is handed to the workers by ``fork`` (inherited, never pickled), so it may close over
the form, the settings and compiled templates. Results come back in job order.
"""

from __future__ import annotations

import contextlib
import gc
import multiprocessing
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from typing import TypeVar

T = TypeVar("T")

_WORK: list[Callable[[int, int], list]] = []  # set by the parent just before forking


def can_fork() -> bool:
    return "fork" in multiprocessing.get_all_start_methods()


def map_ranges(work: Callable[[int, int], list[T]], start: int, stop: int, workers: int) -> list[T]:
    """``work`` over consecutive ranges covering ``start:stop`` on ``workers`` forked processes
    (here when there is one worker or no ``fork``), results in job order; see :func:`iter_ranges`."""
    results: list[T] = []
    with contextlib.closing(iter_ranges(work, start, stop, workers)) as chunks:
        for _start, chunk in chunks:
            results += chunk
    return results


def iter_ranges(work: Callable[[int, int], list[T]], start: int, stop: int, workers: int,
                inline_step: int = 0) -> Iterator[tuple[int, list[T]]]:
    """``(chunk start, work(chunk start, chunk stop))`` for consecutive chunks covering ``start:stop``,
    in order, as soon as each is done: the caller can use (store) the first results while the
    workers compute the next ones. Chunks are small enough to balance the load (about eight per
    worker, at most 50 jobs). With one worker or no ``fork`` the chunks are computed here, one
    chunk of ``inline_step`` jobs (0: all) at a time. An exception in any chunk cancels the chunks
    not started (a full disk: stop rather than finish the rest) and is raised here; so does
    closing the iterator early (use ``contextlib.closing``)."""
    if workers < 2 or stop - start < 2 or not can_fork():
        step = inline_step or max(stop - start, 1)
        for i in range(start, stop, step):
            yield i, work(i, min(i + step, stop))
        return
    step = max(1, min(50, (stop - start) // (workers * 8) or 1))
    starts = range(start, stop, step)
    _WORK[:] = [work]
    gc.freeze()  # the parent's objects out of the collector's reach: a worker's collections never write to
    try:         # (and so copy) the pages it shares with the parent
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
            try:
                yield from zip(starts, pool.map(_run, starts, [min(i + step, stop) for i in starts]), strict=True)
            except BaseException:
                pool.shutdown(cancel_futures=True)
                raise
    finally:
        _WORK.clear()
        gc.unfreeze()


def _run(start: int, stop: int) -> list:
    return _WORK[0](start, stop)
