"""Spreading independent jobs over forked worker processes, in order (feedback workbooks, reports).

The caller's work function ``work(start, stop)`` handles jobs ``start:stop`` and returns their
results; it is handed to the workers by ``fork`` (inherited, never pickled), so it may close over
the form, the settings and compiled templates. Results come back in job order.
"""

from __future__ import annotations

import gc
import multiprocessing
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from typing import TypeVar

T = TypeVar("T")

_WORK: list[Callable[[int, int], list]] = []  # set by the parent just before forking


def can_fork() -> bool:
    return "fork" in multiprocessing.get_all_start_methods()


def map_ranges(work: Callable[[int, int], list[T]], start: int, stop: int, workers: int) -> list[T]:
    """``work`` over consecutive ranges covering ``start:stop`` on ``workers`` forked processes
    (here when there is one worker or no ``fork``). Chunks are small enough to balance the load
    (about eight per worker, at most 50 jobs). An exception in any chunk cancels the chunks not
    started (a full disk: stop rather than finish the rest) and is raised here."""
    if workers < 2 or stop - start < 2 or not can_fork():
        return work(start, stop)
    step = max(1, min(50, (stop - start) // (workers * 8) or 1))
    starts = range(start, stop, step)
    results: list[T] = []
    _WORK[:] = [work]
    gc.freeze()  # the parent's objects out of the collector's reach: a worker's collections never write to
    try:         # (and so copy) the pages it shares with the parent
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
            try:
                for chunk in pool.map(_run, starts, [min(i + step, stop) for i in starts]):
                    results += chunk
            except BaseException:
                pool.shutdown(cancel_futures=True)
                raise
    finally:
        _WORK.clear()
        gc.unfreeze()
    return results


def _run(start: int, stop: int) -> list:
    return _WORK[0](start, stop)
