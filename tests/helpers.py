"""Test helpers: the seed's figures, filling a template like a unit would, LibreOffice calls."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from danvan_xl.sample_data import fill_workbook

# The seed report's numbers (design.md §3.2) — the first acceptance case.
SEED_VALUES: dict[str, Any] = {
    "tcd_dinh_ky_luot": 53, "tcd_dinh_ky_nguoi": 57, "tcd_thuong_xuyen_luot": 170,
    "don_tiep_nhan": 182, "don_nam_truoc": 206, "don_btht_tdc": 94, "don_tranh_chap_dat": 31,
    "don_moi_truong": 5, "don_khac": 52, "don_khieu_nai": 0, "don_to_cao": 0, "don_kien_nghi": 182,
    "vu_viec_dong_nguoi": 0, "don_da_chuyen": 153, "don_dang_giai_quyet": 29, "don_con_han": 29,
    "don_qua_han": 0, "dvk_so_mo_hinh": 1, "nguoi_ky_chuc_vu": "CHÁNH VĂN PHÒNG",
    "nguoi_ky_ho_ten": "Đoàn Hữu Tiên", "lich_tiep_cong_khai": "Có",
}
SEED_MODELS = [{"ten_mo_hinh": "Phụng dưỡng hộ gia đình chính sách nghèo của huyện",
                "linh_vuc": "Văn hóa - xã hội", "cap_cong_nhan": "Cấp huyện", "ghi_chu": "01 hộ"}]


def fill_template(
    template: Path, out: Path, values: Mapping[str, Any],
    tables: Mapping[str, list[Mapping[str, Any]]] | None = None,
    justifications: Mapping[str, str] | None = None,
) -> Path:
    """Fill a template through its defined names with openpyxl, as a unit's clerk would."""
    return fill_workbook(template, out, values, tables, justifications)


def soffice_convert(soffice: str, src: Path | list[Path], fmt: str, outdir: Path, timeout: int = 180) -> list[Path]:
    """Convert with real LibreOffice (headless); returns the output paths, asserting they exist."""
    files = [src] if isinstance(src, Path) else list(src)
    outdir.mkdir(parents=True, exist_ok=True)
    profile = outdir / ".lo-profile"
    _always_recalculate(profile)
    env = dict(os.environ, HOME=str(outdir))
    cmd = [soffice, f"-env:UserInstallation=file://{profile}", "--headless", "--norestore",
           "--convert-to", fmt, "--outdir", str(outdir), *map(str, files)]
    proc = subprocess.run(cmd, capture_output=True, timeout=timeout, env=env)
    ext = fmt.split(":")[0]
    outs = [outdir / f"{p.stem}.{ext}" for p in files]
    missing = [o for o in outs if not o.exists()]
    assert not missing, f"LibreOffice did not produce {missing}: rc={proc.returncode} {proc.stderr[-500:]!r}"
    return outs


_RECALC = """<?xml version="1.0" encoding="UTF-8"?>
<oor:items xmlns:oor="http://openoffice.org/2001/registry" xmlns:xs="http://www.w3.org/2001/XMLSchema"
 xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
<item oor:path="/org.openoffice.Office.Calc/Formula/Load">
 <prop oor:name="OOXMLRecalcMode" oor:op="fuse"><value>0</value></prop></item>
<item oor:path="/org.openoffice.Office.Calc/Formula/Load">
 <prop oor:name="ODFRecalcMode" oor:op="fuse"><value>0</value></prop></item>
</oor:items>
"""


def _always_recalculate(profile: Path) -> None:
    """LibreOffice trusts the cached results of files that claim to come from Excel (xlsxwriter's
    do); tests must see LibreOffice's own arithmetic, so the profile recalculates on every load."""
    user = profile / "user"
    user.mkdir(parents=True, exist_ok=True)
    target = user / "registrymodifications.xcu"
    if not target.exists():
        target.write_text(_RECALC, encoding="utf-8")


def today() -> dt.date:
    return dt.date(2020, 12, 1)
