"""What machine a benchmark ran on, printed with its figures.

The development machines are shared and not all alike: the same code has measured 2.5 times slower
on one 2-core machine than on another. Every benchmark therefore prints the processor, the load, how
many CPU-bound processes really run at once, and the time one core takes for a fixed interpreter
loop, so that two sets of figures can be compared.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path


def _spin(_: int) -> float:
    start = time.perf_counter()
    x = 0
    for i in range(15_000_000):
        x += i
    return time.perf_counter() - start


def parallel_capacity() -> tuple[float, float]:
    """How many CPU-bound processes this machine really runs at once right now (shared machines
    often give less than ``os.cpu_count()``), and the seconds one core takes for a fixed loop of
    the interpreter (the same figure on two machines means the same single-core speed): read every
    timing in that light."""
    cores = os.cpu_count() or 1
    alone = min(_spin(0), _spin(0))
    with ProcessPoolExecutor(cores) as pool:
        start = time.perf_counter()
        list(pool.map(_spin, range(cores)))
        together = time.perf_counter() - start
    return cores * alone / together, alone


def cpu_model() -> str:
    """The processor's name as Linux reports it (blank elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


def machine_line() -> str:
    capacity, alone = parallel_capacity()
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return (f"{os.cpu_count()} cores ({cpu_model() or 'unknown CPU'}), load average {load}; effective "
            f"parallel capacity now {capacity:.1f} cores; one core runs the reference loop in {alone:.2f} s")
