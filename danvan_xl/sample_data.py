"""Plausible returns for the sample district: what units would type into their templates.

The Văn phòng HĐND và UBND unit (TN-VP) carries the seed report's own numbers and paragraphs;
other units get deterministic, internally consistent figures. The demo and the tests use this to
fill real templates with openpyxl, the way a clerk's spreadsheet program would.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .form import Form
from .units import Unit
from .vocabulary import NA_TEXT

# The seed report's paragraphs (shared/seed), re-flowed; its typos are the unit's own words.
SEED_PARAGRAPHS = {
    "nd_1_lanh_dao": (
        "- Thời gian qua, Văn phòng Hội đồng nhân dân và Ủy ban nhân dân Huyện luôn quan tâm, chú trọng đến công tác "
        "dân vận của chính quyền, nhất là từ khi thực hiện Chỉ thị 18/2000/CT-TTg của Thủ tướng Chính phủ về tăng cường "
        "công tác dân vận và các văn bản chỉ đạo của Ủy ban nhân dân Tỉnh.\n"
        "- Lãnh đạo đơn vị luôn quan tâm chỉ đạo, phối hợp thực hiện trong công tác dân vận giữa cơ quan, cấp ủy và các "
        "tổ chức đoàn thể gắn với việc thực hiện quy chế dân chủ cơ sở phát huy quyền làm chủ của công chức và người lao "
        "động trong tham gia giám sát, phản biện và quản lý xã hội, những vấn đề có liên quan trực tiếp đến quyền và "
        "nghĩa vụ của người lao động."
    ),
    "nd_2_1_quan_triet": (
        "- Thực hiện Nghị định số 04/2015/NĐ-CP ngày 09/01/2015 của Chính phủ về thực hiện dân chủ trong hoạt động của "
        "cơ quan hành chính nhà nước đơn vị sự nghiệp công lập; Kế hoạch số 30- KH/BDVHU-UBND về phối hợp triển khai "
        "thực hiện “Năm dân vận khéo” năm 2020; Quy chế hoạt động về công tác dân vận giai đoạn 2016 - 2021; Kế hoạch "
        "số 134/KH-UBND ngày 13 tháng 5 năm 2020 về phát động phong trào thi đua “Dân vận khéo” năm 2020, Văn phòng Hội "
        "đồng nhân dân và Ủy ban nhân dân Huyện chỉ đạo các tổ, bộ phận thực hiện tự kiểm tra, giám sát việc triển khai "
        "thực hiện Kế hoạch. Bên cạnh đó, đơn vị thường xuyên chỉ đạo và tuyên truyền trong các cuộc họp về tăng cường "
        "và đổi mới công tác dân vận trong cơ quan hành chính nhà nước trong tình hình mới.\n"
        "- Việc quán triệt các nội dung về công tác dân vận đã góp phần nâng cao nhận thức, phát huy quyền làm chủ, tinh "
        "thần trách nhiệm của công chức, người lao động; tăng cường kỷ luật, kỷ cương, thực hành tiết kiệm, chống lãng "
        "phí, quan liêu, chấn chỉnh tác phong, lề lối làm việc và nâng cao trách nhiệm trong thực hiện nhiệm vụ của đội "
        "ngũ công chức, người lao động; nâng cao hiệu quả thực hiện Quy chế dân chủ ở cơ sở gắn với chống quan liêu."
    ),
    "nd_2_2_dao_duc": (
        "Thực hiện Chỉ thị số 26/CT-TTg ngày 05 tháng 9 năm 2016 của Thủ tướng Chính phủ về tăng cường kỷ luật, kỷ "
        "cương trong các cơ quan hành chính nhà nước các cấp; Quyết định số 70/QĐ-UBND ngày 07 tháng 7 năm 2016 của Ủy "
        "ban nhân dân Tỉnh về chấp hành nghiêm trong giờ làm việc hành chính thực hiện không uống rượu, bia trong ngày "
        "làm việc và không hút thuốc lá nơi công sở; đơn vị đã quán triệt đến công chức, người lao động trong đơn vị "
        "thực hiện nghiêm túc Luật Cán bộ công chức. Nâng cao hiệu quả sử dụng thời gian làm việc theo quy định, thực "
        "hiện tốt văn hóa công sở, có thái độ tích cực trong công việc."
    ),
    "nd_2_3_tuyen_truyen": (
        "Đơn vị triển khai thực hiện công tác tuyên truyền phổ biến quán triệt học tập văn bản về công tác dân vận của "
        "Đảng, Nhà nước gắn với thực hiện Nghị quyết Trung ương 4 khóa XII về tăng cường xây dựng chỉnh đốn Đảng; ngăn "
        "chặn đẩy lùi sự suy thoái về tư tưởng chính trị, đạo đức, lối sống, những biểu hiện “tự diễn biễn\", \"tự chuyển "
        "hóa\" trong nội bộ. Thực hiện nghiêm túc Nghị định số 04/2015/NĐ-CP ngày 09 tháng 01 năm 2015 của Chính phủ về "
        "thực hiện dân chủ trong hoạt động của cơ quan hành chính nhà nước đơn vị sự nghiệp công lập. Nâng cao hiệu quả "
        "thực hiện Quy chế dân chủ ở cơ sở gắn với chống quan liêu; phòng chống tham nhũng; thực hành tiết kiệm, chống "
        "lãng phí."
    ),
    "nd_2_4_tiep_dan": (
        "Văn phòng Hội đồng nhân dân và Ủy ban nhân dân Huyện xây dựng và ban hành kế hoạch, lịch tiếp công dân định kỳ "
        "và niêm yết công khai tại trụ sở cơ quan, công khai trên lịch công tác hàng tuần của Huyện. Văn phòng Hội đồng "
        "nhân dân và Ủy ban nhân dân phân công trực tiếp công dân thường xuyên và định kỳ theo quy định; phân công nhiệm "
        "vụ cho công chức làm nhiệm vụ tiếp công dân."
    ),
    "nd_2_5_phoi_hop": (
        "Văn phòng Hội đồng nhân dân và Ủy ban nhân dân Huyện phối hợp với các ban, ngành, đoàn thể thực hiện việc phối "
        "hợp thực hiện các nhiệm vụ góp phần bảo đảm chính trị kinh tế - xã hội như: phối hợp với các ban ngành thực "
        "hiện ký kết thi đua, ngoài ra, đơn vị còn phối hợp với các ban, ngành khác trong việc tham mưu tuyên truyền, "
        "thực hiện nhiệm vụ công tác dân vận chính quyền ở tại các xã, thị trấn."
    ),
    "nd_2_6_dan_van_kheo": (
        "Tiếp tục thực hiện trong công tác dân vận về việc phụng dưỡng 01 hộ gia đình chính sách nghèo của Huyện do Văn "
        "phòng đảm nhận."
    ),
    "nd_2_7_kiem_tra": (
        "Lãnh đạo đơn vị thường xuyên kiểm tra và giám sát việc thực hiện công tác dân vận chính quyền tại đơn vị. Đồng "
        "thời, phân công cho từng công chức tự kiểm tra, giám sát lẫn nhau. Qua đó, các vấn đề phát sinh đều được phát "
        "hiện kịp thời và có sự nhắc nhở tại các cuộc họp cơ quan, nhờ vậy việc thực hiện công tác dân vận chính quyền "
        "tại đơn vị đều đạt kết quả tốt."
    ),
    "nd_3_1_ket_qua": (
        "Văn phòng Hội đồng nhân dân và Ủy ban nhân dân đã quan tâm triển khai thực hiện nghiêm túc các Chỉ thị, Nghị "
        "quyết của Trung ương và của Tỉnh về công tác dân vận đồng thời quán triệt, nâng cao nhận thức về vị trí, vai "
        "trò, tầm quan trọng của công tác dân vận trong tình hình mới đến toàn thể đảng viên, công chức, người lao động "
        "tại đơn vị.\n"
        "Kỷ luật, kỷ cương hành chính được tăng cường, tinh thần trách nhiệm, đạo đức công vụ và thái độ phục vụ nhân "
        "dân của công chức, người lao động được nâng lên.\n"
        "Công khai minh bạch các thủ tục hành chính; đẩy mạnh cải cách hành chính; thực hiện tốt chế độ tiếp công dân, "
        "giải quyết khiếu nại, tố cáo."
    ),
    "nd_3_2_han_che": (
        "Công tác tuyên truyền thực hiện quy chế dân vận có lúc chưa được thường xuyên. Công tác chỉ đạo, phối hợp "
        "triển khai phong trào thi có lúc đua chưa đồng bộ.\n"
        "Việc triển khai, cụ thể hóa một số nội dung, giải pháp thực hiện dân vận ở đơn vị có lúc chưa thật sự chú trọng."
    ),
    "nd_3_2_nguyen_nhan": (
        "Công chức đảm trách việc thực hiện quy chế dân vận ở cơ quan kiêm nhiệm, chưa được tập huấn, bồi dưỡng nghiệp "
        "vụ nên hiệu quả tham mưu, chỉ đạo chưa cao, thiếu sự phối hợp đồng bộ, chặt chẽ với các đoàn thể trong việc "
        "tham mưu thực hiện."
    ),
}

SEED_NUMBERS: dict[str, Any] = {
    "tcd_dinh_ky_luot": 53, "tcd_dinh_ky_nguoi": 57, "tcd_thuong_xuyen_luot": 170,
    "don_tiep_nhan": 182, "don_nam_truoc": 206, "don_btht_tdc": 94, "don_tranh_chap_dat": 31,
    "don_moi_truong": 5, "don_khac": 52, "don_khieu_nai": 0, "don_to_cao": 0, "don_kien_nghi": 182,
    "vu_viec_dong_nguoi": 0, "don_da_chuyen": 153, "don_dang_giai_quyet": 29, "don_con_han": 29,
    "don_qua_han": 0, "dvk_so_mo_hinh": 1, "lich_tiep_cong_khai": "Có",
    "nguoi_ky_chuc_vu": "CHÁNH VĂN PHÒNG", "nguoi_ky_ho_ten": "Đoàn Hữu Tiên",
}
SEED_MODELS = [{"ten_mo_hinh": "Phụng dưỡng hộ gia đình chính sách nghèo của huyện", "linh_vuc": "Văn hóa - xã hội",
                "cap_cong_nhan": "Cấp huyện", "ghi_chu": "01 hộ"}]

_MODELS = [
    ("Hỗ trợ nông dân chuyển đổi cây trồng, vật nuôi", "Kinh tế"),
    ("Xây dựng tuyến đường hoa nông thôn mới", "Văn hóa - xã hội"),
    ("Tổ tự quản an ninh trật tự ấp", "Quốc phòng - an ninh"),
    ("Dân vận khéo trong giải phóng mặt bằng", "Kinh tế"),
    ("Chi bộ ấp gắn với dân", "Xây dựng hệ thống chính trị"),
    ("Mái ấm tình thương cho hộ nghèo", "Văn hóa - xã hội"),
    ("Một cửa thân thiện, phục vụ Nhân dân", "Xây dựng hệ thống chính trị"),
]
_NAMES = ["Nguyễn Văn Hùng", "Trần Thị Mai", "Lê Văn Sáu", "Phạm Thị Thu", "Võ Minh Tâm", "Huỳnh Văn Lợi",
          "Đặng Thị Lan", "Bùi Văn Nam", "Ngô Thị Hồng", "Dương Văn Phúc", "Lý Thị Kim", "Mai Văn Tài"]


def _paragraphs(unit: Unit) -> dict[str, str]:
    name = unit.name
    return {
        "nd_1_lanh_dao": f"Lãnh đạo {name} quan tâm chỉ đạo thực hiện công tác dân vận chính quyền gắn với thực hiện "
                         "quy chế dân chủ ở cơ sở; phối hợp chặt chẽ với cấp ủy và các đoàn thể trong triển khai nhiệm vụ.",
        "nd_2_1_quan_triet": "Đơn vị ban hành kế hoạch thực hiện “Năm Dân vận chính quyền”, tổ chức quán triệt các văn bản "
                             "chỉ đạo về công tác dân vận đến toàn thể cán bộ, công chức, người lao động.",
        "nd_2_2_dao_duc": "Đơn vị chấp hành nghiêm kỷ luật, kỷ cương hành chính, thực hiện tốt văn hóa công sở, nâng cao "
                          "tinh thần trách nhiệm, thái độ phục vụ Nhân dân.",
        "nd_2_3_tuyen_truyen": "Tổ chức tuyên truyền, vận động cán bộ, công chức thực hiện tốt nhiệm vụ chính trị của đơn "
                               "vị, gắn với học tập và làm theo tư tưởng, đạo đức, phong cách Hồ Chí Minh.",
        "nd_2_4_tiep_dan": "Đơn vị xây dựng lịch tiếp công dân, phân công công chức tiếp nhận, xử lý đơn thư đúng quy định.",
        "nd_2_5_phoi_hop": "Phối hợp với Mặt trận Tổ quốc và các đoàn thể cùng cấp trong tuyên truyền, vận động Nhân dân "
                           "thực hiện chủ trương, chính sách.",
        "nd_2_6_dan_van_kheo": "Tiếp tục duy trì và nhân rộng các mô hình “Dân vận khéo” có hiệu quả tại đơn vị.",
        "nd_2_7_kiem_tra": "Lãnh đạo đơn vị thường xuyên kiểm tra, giám sát việc thực hiện công tác dân vận chính quyền.",
        "nd_3_1_ket_qua": "Công tác dân vận chính quyền được quan tâm, góp phần hoàn thành nhiệm vụ chính trị của đơn vị.",
        "nd_3_2_han_che": "Công tác tuyên truyền có lúc chưa thường xuyên; việc nhân rộng mô hình còn hạn chế.",
        "nd_3_2_nguyen_nhan": "Công chức phụ trách công tác dân vận kiêm nhiệm, chưa được bồi dưỡng nghiệp vụ thường xuyên.",
    }


def sample_values(form: Form, unit: Unit, year: int) -> tuple[dict[str, Any], dict[str, list[dict[str, Any]]]]:
    """Consistent values a unit would type, and its "Dân vận khéo" rows. Deterministic per unit and year."""
    rng = random.Random(f"{unit.code}-{year}")
    if unit.code.endswith("-VP"):
        values = {**SEED_PARAGRAPHS, **SEED_NUMBERS}
        models = [dict(m) for m in SEED_MODELS]
    else:
        values = {**_paragraphs(unit), **_numbers(rng, unit)}
        models = _models(rng, unit, values["dvk_so_mo_hinh"])
        values["nguoi_ky_chuc_vu"] = (unit.head_title or "Trưởng phòng").upper()
        values["nguoi_ky_ho_ten"] = rng.choice(_NAMES)
        if unit.authority:
            values["nguoi_ky_quyen_han"] = "TM."
    values |= {
        "so_ky_hieu": f"{rng.randint(3, 40):02d}/BC-{unit.abbr or 'UBND'}",
        "nguoi_lap": rng.choice(_NAMES), "dien_thoai": f"0277 38{rng.randint(10000, 99999)}",
        "email_lien_he": unit.email, "hinh_thuc_quan_triet": rng.choice(form.choices["hinh_thuc_quan_triet"]),
        "noi_nhan": "- Phòng Nội vụ huyện;\n- Lưu: VT.",
    }
    values |= _scores(rng, form)
    return values, {"dvk_mo_hinh": models}


def _numbers(rng: random.Random, unit: Unit) -> dict[str, Any]:
    commune = unit.kind in ("xa", "thi_tran", "phuong")
    received = rng.randint(8, 60) if commune else rng.choice([0, 0, rng.randint(2, 25)])
    topics = _split(rng, received, 4)
    handling = rng.randint(0, received // 4) if received else 0
    overdue = 1 if handling and rng.random() < 0.15 else 0
    staff = rng.randint(12, 45) if commune else rng.randint(6, 30)
    violations = rng.randint(0, 2)
    files = rng.randint(300, 2400) if commune else rng.randint(20, 400)
    late_files = rng.randint(0, files // 100)
    luot = rng.randint(48, 70) if commune else rng.randint(0, 24)
    out: dict[str, Any] = {
        "vb_trien_khai": rng.randint(2, 9), "hn_quan_triet": rng.randint(1, 6), "luot_nguoi_du": rng.randint(20, 180),
        "cbccvc_tong": staff, "cbccvc_vi_pham": violations, "cbccvc_ky_luat": rng.randint(0, violations),
        "kiem_tra_cong_vu": rng.randint(1, 6), "hn_tuyen_truyen": rng.randint(2, 12),
        "lich_tiep_cong_khai": "Có", "tcd_dinh_ky_luot": luot, "tcd_dinh_ky_nguoi": luot + rng.randint(0, 12),
        "tcd_thuong_xuyen_luot": rng.randint(10, 90) if commune else rng.randint(0, 20),
        "don_tiep_nhan": received, "don_nam_truoc": max(1, received + round(received * rng.uniform(-0.3, 0.3))),
        "don_btht_tdc": topics[0], "don_tranh_chap_dat": topics[1], "don_moi_truong": topics[2], "don_khac": topics[3],
        "don_khieu_nai": 0, "don_to_cao": 0, "don_kien_nghi": received, "vu_viec_dong_nguoi": 0,
        "don_da_chuyen": received - handling, "don_dang_giai_quyet": handling, "don_con_han": handling - overdue,
        "don_qua_han": overdue, "tthc_tiep_nhan": files, "tthc_dung_han": files - late_files, "tthc_qua_han": late_files,
        "doi_thoai": rng.randint(1, 4), "ty_le_hai_long": round(rng.uniform(88, 99.5), 1),
        "quy_che_phoi_hop": rng.randint(1, 4), "giam_sat_phan_bien": rng.randint(0, 5),
        "dvk_so_mo_hinh": rng.randint(1, 3), "dvk_ho_duoc_giup": rng.randint(0, 30),
        "dvk_kinh_phi": round(rng.uniform(5, 120), 1), "kiem_tra_dv": rng.randint(1, 4),
    }
    if received == 0:
        for fid in ("don_btht_tdc", "don_tranh_chap_dat", "don_moi_truong", "don_khac", "don_khieu_nai", "don_to_cao",
                    "don_kien_nghi", "don_da_chuyen", "don_dang_giai_quyet", "don_con_han", "don_qua_han",
                    "vu_viec_dong_nguoi", "don_tiep_nhan", "don_nam_truoc"):
            out[fid] = NA_TEXT
    return out


def _split(rng: random.Random, total: int, parts: int) -> list[int]:
    cuts = sorted(rng.randint(0, total) for _ in range(parts - 1))
    bounds = [0, *cuts, total]
    return [bounds[i + 1] - bounds[i] for i in range(parts)]


def _models(rng: random.Random, unit: Unit, count: int) -> list[dict[str, Any]]:
    levels = ["Cấp xã", "Cấp huyện", "Chưa công nhận"] if unit.kind in ("xa", "thi_tran") else ["Cấp huyện", "Cấp tỉnh"]
    picks = rng.sample(_MODELS, count)
    return [{"ten_mo_hinh": name, "linh_vuc": field, "cap_cong_nhan": rng.choice(levels), "ghi_chu": ""}
            for name, field in picks]


def _scores(rng: random.Random, form: Form) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if form.rubric is None:
        return out
    for c in form.rubric.criteria:
        out[c.score_field] = round(c.max * rng.uniform(0.75, 1.0) * 2) / 2
        out[c.evidence_field] = "Kế hoạch, báo cáo của đơn vị"
    return out


def fill_workbook(
    template: Path, out: Path, values: Mapping[str, Any],
    tables: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
    justifications: Mapping[str, str] | None = None,
) -> Path:
    """Fill a template through its defined names with openpyxl, as a unit's spreadsheet program would.

    openpyxl keeps the template's validations, names and protection (lab.md §1); pasted or
    programmatic values bypass validation exactly like a clerk pasting from Word.
    """
    import openpyxl

    wb = openpyxl.load_workbook(template)
    form_id = {r[0].value: r[1].value for r in wb["_meta"].iter_rows(max_col=2)}.get("form_id")
    for name, value in values.items():
        sheet, coord = _destination(wb, name)
        wb[sheet][coord] = value
    if tables:
        from .form import load_form

        form = load_form(str(form_id))
        for name, rows in tables.items():
            sheet, coord = _destination(wb, name)
            top = wb[sheet][coord.split(":")[0]]
            columns = [c.id for c in form.fields[name].columns]
            for i, row in enumerate(rows):
                for j, col in enumerate(columns):
                    if col in row:
                        wb[sheet].cell(top.row + i, top.column + j, row[col])
    for rule, text in (justifications or {}).items():
        sheet, coord = _destination(wb, f"giai_trinh_{rule}")
        wb[sheet][coord] = text
    wb.save(out)
    return out


def _destination(wb: Any, name: str) -> tuple[str, str]:
    sheet, coord = next(iter(wb.defined_names[name].destinations))
    return sheet, coord.replace("$", "")


def build_sample_returns(out: Path, soffice: str = "soffice") -> list[Path]:
    """(Re)build ``samples/returns``: filled workbooks re-saved by real LibreOffice, clean and with problems.

    Run after changing the bundled form: ``python -m danvan_xl.sample_data samples/returns``.
    """
    import datetime as dt
    import shutil
    import subprocess
    import tempfile

    from .generate import generate
    from .workspace import init_workspace

    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("2020_*"):
        old.unlink()
    with tempfile.TemporaryDirectory() as tmp:
        ws = init_workspace(Path(tmp) / "ws", issue_date=dt.date(2020, 11, 2))
        plan = {"TN-TP": "ods", "TN-LDTBXH": "xls", "30028": "xlsx", "TN-VP": None, "30007": None}
        generate(ws, list(plan))
        form, register = ws.load_form(), ws.load_register()
        made: list[Path] = []
        for code, fmt in plan.items():
            unit = register.get(code)
            assert unit is not None
            values, tables = sample_values(form, unit, 2020)
            suffix = "co-loi" if code == "30007" else ("libreoffice" if fmt else "sach")
            if code == "30007":
                values["vu_viec_dong_nguoi"] = "nhiều"
                values["don_khac"] = values["don_khac"] + 3 if isinstance(values["don_khac"], int) else 3
            template = next(ws.templates_dir.glob(f"2020_{code}_*.xlsx"))
            filled = fill_workbook(template, Path(tmp) / f"2020_{code}_{suffix}.xlsx", values, tables)
            if fmt is None:
                made.append(Path(shutil.copyfile(filled, out / filled.name)))
                continue
            profile = Path(tmp) / "lo-profile"
            subprocess.run([soffice, f"-env:UserInstallation=file://{profile}", "--headless", "--norestore",
                            "--convert-to", fmt, "--outdir", str(out), str(filled)], check=True, capture_output=True,
                           timeout=180)
            made.append(out / f"{filled.stem}.{fmt}")
        return made


if __name__ == "__main__":  # pragma: no cover - developer tool
    import sys

    for p in build_sample_returns(Path(sys.argv[1] if len(sys.argv) > 1 else "samples/returns")):
        print(p)
