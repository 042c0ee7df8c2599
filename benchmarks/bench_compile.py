"""Benchmark: build the district summary workbook for 25, 1,000 and 10,000 units.

No Excel files are involved: a register and its current submissions (values, "không phát sinh",
blanks, invalid values, paragraphs, "Dân vận khéo" models, self-scores), findings, statuses and
last year's values are synthesised with a fixed seed, then ``summary.build_summary`` is timed.
Each size runs in its own process so that the peak memory (``ru_maxrss``) belongs to that size.

    .venv/bin/python benchmarks/bench_compile.py                 # 25, 1000, 10000
    .venv/bin/python benchmarks/bench_compile.py --sizes 25 --out /tmp/tong-hop-25.xlsx

Target: 10,000 units in under 10 seconds.

Each size is also compared with its floor (``xlsx_floor.py``): bare xlsxwriter in constant_memory
mode writing the same workbook's cells, read back from the file just built (ratio below 1: faster
than the library alone writing those cells).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from machine import machine_line
from xlsx_floor import floor_compile

from danvan_xl.expr import NA
from danvan_xl.findings import Finding
from danvan_xl.form import Form, load_form
from danvan_xl.status import UnitStatus
from danvan_xl.submission import Submission, SubmissionData, Value
from danvan_xl.summary import build_summary
from danvan_xl.units import Register, Unit
from danvan_xl.vocabulary import Kind, Severity, ValueState
from danvan_xl.workspace import SAMPLE_OFFICE

YEAR = 2020
DEADLINE = dt.date(2020, 12, 10)
WORDS = ("công", "tác", "dân", "vận", "chính", "quyền", "được", "triển", "khai", "thực", "hiện", "nghiêm",
         "túc", "cán", "bộ", "công", "chức", "viên", "chức", "tiếp", "công", "dân", "giải", "quyết", "đơn",
         "thư", "khiếu", "nại", "tố", "cáo", "kịp", "thời", "đúng", "quy", "định", "cải", "cách", "hành",
         "chính", "phối", "hợp", "với", "Mặt", "trận", "Tổ", "quốc", "và", "các", "đoàn", "thể", "mô",
         "hình", "dân", "vận", "khéo", "hiệu", "quả", "thiết", "thực")
OFFICES = ("Tư pháp", "Tài chính - Kế hoạch", "Tài nguyên và Môi trường", "Văn hóa và Thông tin", "Y tế",
           "Giáo dục và Đào tạo", "Kinh tế và Hạ tầng", "Nội vụ", "Lao động - Thương binh và Xã hội")
PLACES = ("Phú Hiệp", "An Hòa", "Tân Công Sính", "Phú Đức", "Hoà Bình", "Phú Thành", "An Long", "Phú Cường")


TEXT = {"seed": (30, 260), "short": (3, 12)}  # words per paragraph: like the seed report (~9,600 characters
# of narrative per unit over 11 paragraphs), or one short sentence per section


def synthesize(form: Form, n: int, seed: int = 2020, text: str = "seed") -> dict[str, Any]:
    """A register of ``n`` units and everything ``build_summary`` needs, deterministic for a seed."""
    rng = random.Random(seed)
    units = []
    for i in range(1, n + 1):
        if i <= max(2, n * 2 // 5):
            units.append(Unit(f"P{i:05d}", f"Phòng {OFFICES[i % len(OFFICES)]} (đơn vị {i})", "phong", i))
        else:
            kind = "thi_tran" if i % 17 == 0 else "xa"
            word = "thị trấn" if kind == "thi_tran" else "xã"
            units.append(Unit(f"X{i:05d}", f"Ủy ban nhân dân {word} {PLACES[i % len(PLACES)]} {i}", kind, i))
    register = Register(tuple(units), "synthetic")
    current, findings, statuses, prev = [], {}, [], {}
    for sid, unit in enumerate(units, start=1):
        if rng.random() < 0.12:
            statuses.append(UnitStatus(unit, "missing"))
            continue
        errors = 1 if rng.random() < 0.1 else 0
        received = dt.datetime(2020, 12, 1, 8) + dt.timedelta(minutes=rng.randrange(0, 20 * 24 * 60))
        data = SubmissionData(unit.code, form.id, form.version, form.definition_hash, YEAR,
                              _values(form, rng, TEXT[text]), {"dvk_mo_hinh": _models(rng)},
                              {"don_qua_han": "Đơn phức tạp, đang xác minh."} if rng.random() < 0.05 else {})
        sub = Submission(sid, unit.code, received, f"thư từ {unit.code.lower()}@example.vn", "0" * 64, "current", data,
                         errors=errors, warnings=rng.randrange(0, 3))
        current.append(sub)
        findings[sid] = _findings(rng, unit, errors)
        statuses.append(UnitStatus(unit, "with_errors" if errors else "accepted", received, 1, sid,
                                   received.date() <= DEADLINE, errors, sub.warnings, sub.source))
        if rng.random() < 0.8:
            prev[unit.code] = {k: (v.value if v.state == ValueState.VALUE else (NA if v.state == ValueState.NA else None))
                               for k, v in _values(form, rng, TEXT[text]).items()}
    return {"register": register, "current": current, "findings": findings, "statuses": statuses, "prev": prev}


def _values(form: Form, rng: random.Random, words: tuple[int, int]) -> dict[str, Value]:
    out: dict[str, Value] = {}
    for f in form.fields.values():
        if not f.is_scalar or not f.is_input:
            continue
        roll = rng.random()
        if f.kind == Kind.PARAGRAPH:
            text = " ".join(rng.choice(WORDS) for _ in range(rng.randrange(*words))).capitalize() + "."
            out[f.id] = Value(f.id, ValueState.VALUE, text)
        elif f.is_numeric:
            if roll < 0.05:
                out[f.id] = Value(f.id, ValueState.NA)
            elif roll < 0.10:
                out[f.id] = Value(f.id, ValueState.BLANK)
            elif roll < 0.11:
                out[f.id] = Value(f.id, ValueState.INVALID, None, "mười hai")
            else:
                top = f.max if f.max is not None else 400
                value = round(rng.uniform(0, top), 1) if f.kind != Kind.COUNT else rng.randrange(0, int(top) + 1)
                out[f.id] = Value(f.id, ValueState.VALUE, value)
    return out


def _models(rng: random.Random) -> list[dict[str, Value]]:
    rows = []
    for k in range(rng.randrange(0, 3)):
        rows.append({
            "ten_mo_hinh": Value("ten_mo_hinh", ValueState.VALUE, f"Mô hình {rng.choice(WORDS)} số {k + 1}"),
            "linh_vuc": Value("linh_vuc", ValueState.VALUE, rng.choice(["Kinh tế", "Văn hóa - xã hội"])),
            "cap_cong_nhan": Value("cap_cong_nhan", ValueState.VALUE, rng.choice(["Cấp xã", "Cấp huyện"])),
            "ghi_chu": Value("ghi_chu", ValueState.BLANK),
        })
    return rows


def _findings(rng: random.Random, unit: Unit, errors: int) -> list[Finding]:
    out = [Finding("rule-violated", Severity.ERROR, "Tổng số đơn theo nội dung (185) phải bằng số đơn tiếp nhận (182).",
                   "tep.xlsx", "TiepDan", "D15", "don_btht_tdc,don_tiep_nhan", "don_theo_noi_dung", unit=unit.code)
           for _ in range(errors)]
    if rng.random() < 0.3:
        out.append(Finding("rule-violated", Severity.WARNING, "Còn 2 đơn quá hạn giải quyết.", "tep.xlsx", "TiepDan",
                           "D26", "don_qua_han", "don_qua_han", unit=unit.code,
                           justification="Đơn phức tạp." if rng.random() < 0.5 else ""))
    return out


def run_one(n: int, text: str, out: Path | None) -> dict[str, Any]:
    form = load_form("nam-dan-van-chinh-quyen")
    data = synthesize(form, n, text=text)
    chars = sum(len(v.value) for s in data["current"] for v in s.data.values.values() if isinstance(v.value, str))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    blob = build_summary(form, SAMPLE_OFFICE, data["register"], YEAR, DEADLINE, data["current"], data["findings"],
                         data["statuses"], prev=data["prev"], include_with_errors=False,
                         as_of=max(s.received_at for s in data["current"]))
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with tempfile.TemporaryDirectory() as tmp:
        path = out or Path(tmp) / "tong-hop.xlsx"
        path.write_bytes(blob)
        del blob, data
        floor = floor_compile(path)
        size = path.stat().st_size
    return {"units": n, "text": text, "text_mb": round(chars / 1e6, 1), "seconds": round(seconds, 2), "bytes": size,
            "peak_rss_mb": round(peak / 1024, 1), "rss_growth_mb": round((peak - before) / 1024, 1),
            "floor": round(floor, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[25, 1000, 10_000])
    parser.add_argument("--text", choices=sorted(TEXT), nargs="+", default=["seed", "short"],
                        help="paragraph lengths: like the seed report, or one short sentence")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help="write the workbook of the (single) size here")
    args = parser.parse_args()
    if args.one is not None:
        print(json.dumps(run_one(args.one, args.text[0], args.out)))
        return
    print(machine_line())
    print(f"{'units':>7} {'text':>6} {'text MB':>8} {'seconds':>8} {'xlsx MB':>8} {'peak RSS MB':>12} {'growth MB':>10}"
          f" {'floor s':>8} {'ratio':>6}")
    for text in args.text:
        for n in args.sizes:
            cmd = [sys.executable, __file__, "--one", str(n), "--text", text]
            cmd += ["--out", str(args.out)] if args.out else []
            r = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
            print(f"{r['units']:>7} {text:>6} {r['text_mb']:>8} {r['seconds']:>8} {r['bytes'] / 1e6:>8.1f} "
                  f"{r['peak_rss_mb']:>12} {r['rss_growth_mb']:>10} {r['floor']:>8} {r['seconds'] / r['floor']:>6.2f}",
                  flush=True)


if __name__ == "__main__":
    main()
