"""Benchmark: generating templates.

Prints ms per template for danvan_xl's writer and for bare xlsxwriter replaying exactly the same
calls (cells, formats, validations, conditional formats, comments, defined names, properties) with
no danvan_xl code in between, the ratio, and the wall time of writing N templates to disk with
every core (the ``danvan generate`` path).

    python benchmarks/bench_generate.py            # 1,000 templates
    python benchmarks/bench_generate.py 10000      # the 10,000-template target

Per-template timings are medians of interleaved rounds (the machines are shared and noisy).
"""

from __future__ import annotations

import datetime as dt
import io
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import xlsxwriter
from machine import machine_line

from danvan_xl import template_writer
from danvan_xl.form import load_form
from danvan_xl.generate import write_templates
from danvan_xl.resources import sample_dir
from danvan_xl.template_writer import TemplateContext, build_template
from danvan_xl.units import Unit, read_register

CTX = TemplateContext(2020, dt.date(2020, 12, 10), dt.datetime(2020, 11, 2, 8, 0), "Phòng Nội vụ", "nv@x.example", "0")
OPTIONS = {"in_memory": True, "strings_to_formulas": False, "strings_to_urls": False, "strings_to_numbers": False}


class Recording:
    """The xlsxwriter calls one template build makes, replayable on a fresh plain workbook."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, str, tuple, dict, int | None]] = []
        self.made: dict[int, int] = {}  # id() of an object the writer got back → its slot

    def wrap(self, target: Any, slot: int) -> Any:
        recording = self

        class Proxy:
            def __getattr__(self, name: str) -> Any:
                attr = getattr(target, name)
                if not callable(attr):
                    return attr

                def call(*args: Any, **kwargs: Any) -> Any:
                    result = attr(*args, **kwargs)
                    made = None
                    if name in ("add_worksheet", "add_format", "get_worksheet_by_name") and result is not None:
                        made = recording.made.setdefault(id(result), len(recording.made) + 1)
                    recording.calls.append((slot, name, args, kwargs, made))
                    return recording.wrap(result, made) if made is not None and name != "add_format" else result

                return call

        return Proxy()

    def replay(self) -> bytes:
        buf = io.BytesIO()
        slots: dict[int, Any] = {0: xlsxwriter.Workbook(buf, dict(OPTIONS))}
        for slot, name, args, kwargs, made in self.calls:
            if slot == 0 and name == "close":
                continue
            if name == "add_worksheet":
                kwargs = {k: v for k, v in kwargs.items() if k != "worksheet_class"}
            result = getattr(slots[slot], name)(*self._map(args, slots), **self._map(kwargs, slots))
            if made is not None:
                slots.setdefault(made, result)
        slots[0].close()
        return buf.getvalue()

    def _map(self, value: Any, slots: dict[int, Any]) -> Any:
        if isinstance(value, tuple):
            return tuple(self._map(v, slots) for v in value)
        if isinstance(value, dict):
            return {k: self._map(v, slots) for k, v in value.items()}
        slot = self.made.get(id(value))
        return slots[slot] if slot is not None and slot in slots else value


def record(form: Any, unit: Unit) -> Recording:
    recording = Recording()
    real = xlsxwriter.Workbook
    template_writer.xlsxwriter.Workbook = lambda *a, **k: recording.wrap(real(*a, **k), 0)  # type: ignore[attr-defined]
    try:
        build_template(form, unit, CTX)
    finally:
        template_writer.xlsxwriter.Workbook = real  # type: ignore[attr-defined]
    return recording


def per_call_ms(fn: Any, n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - start) / n * 1000


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    print(machine_line())
    form = load_form("nam-dan-van-chinh-quyen")
    unit = read_register(sample_dir() / "units.csv").get("30025")
    assert unit is not None
    recording = record(form, unit)
    bare_bytes = recording.replay()
    assert len(bare_bytes) > 20_000, "the replay must write a complete workbook"
    ours_ms, bare_ms = [], []
    for _ in range(7):  # interleaved rounds so both see the same machine load
        ours_ms.append(per_call_ms(lambda: build_template(form, unit, CTX), 10))
        bare_ms.append(per_call_ms(recording.replay, 10))
    ours, bare = statistics.median(ours_ms), statistics.median(bare_ms)
    calls = len(recording.calls)
    print(f"per template, in memory, one core: danvan_xl {ours:.1f} ms; bare xlsxwriter replaying the same {calls} "
          f"calls {bare:.1f} ms; ratio {ours / bare:.2f}× (target ≤ 1.3×)")
    units = [Unit(f"U{i:05d}", f"Ủy ban nhân dân xã Thử Nghiệm {i}", "xa", i, "Chủ tịch", "TM. ỦY BAN NHÂN DÂN",
                  f"u{i}@x.example") for i in range(n)]
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        write_templates(form, units, CTX, Path(tmp), workers=os.cpu_count())
        wall = time.perf_counter() - start
        files = list(Path(tmp).glob("*.xlsx"))
        size = sum(p.stat().st_size for p in files)
    assert len(files) == n
    print(f"{n} templates written to disk with {os.cpu_count()} processes: {wall:.1f} s "
          f"({wall / n * 1000:.1f} ms each, {size / n / 1024:.0f} KB each)")
    if n != 10_000:
        print(f"projected for 10000 templates: {wall / n * 10_000:.0f} s (target < 60 s)")


if __name__ == "__main__":
    main()
