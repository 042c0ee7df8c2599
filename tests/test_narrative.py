"""Narrative reports: the seed's wording from the seed's numbers, NĐ 30 layout, Markdown twin."""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import io
import pickle
import re
import shutil
import subprocess
import sys
import tomllib
import unicodedata
import zipfile
from pathlib import Path
from typing import Any

import docx
import pytest
from docx.enum.text import WD_ALIGN_PARAGRAPH
from docx.oxml.ns import qn
from helpers import SEED_MODELS, SEED_VALUES, soffice_convert
from hypothesis import given
from hypothesis import strategies as st
from lxml import etree

from danvan_xl import forkpool
from danvan_xl.docx_writer import build_docx, write_docx
from danvan_xl.expr import NA
from danvan_xl.ledger import Ledger
from danvan_xl.narrate import PARALLEL_THRESHOLD, write_narratives
from danvan_xl.narrative import (
    Block,
    BlockKind,
    DistrictInput,
    NarrativeError,
    NarrativeOptions,
    Report,
    Signer,
    district_report,
    parse_blocks,
    unescape_markdown,
    unit_report,
    write_markdown,
)
from danvan_xl.sample_data import sample_values
from danvan_xl.status import compute_status
from danvan_xl.submission import Submission, SubmissionData, Value
from danvan_xl.units import Unit
from danvan_xl.vocabulary import ValueState
from danvan_xl.workspace import SAMPLE_OFFICE, init_workspace, load_workspace

# The seed report's own paragraphs (re-flowed from shared/seed/000_ddaf1fc8cfb6a8d8.txt, typos kept:
# units' text is never corrected), as a unit would paste them into its workbook.
SEED_PARAGRAPHS = {
    "nd_1_lanh_dao": (
        "- Thời gian qua, Văn phòng Hội đồng nhân dân và Ủy ban nhân dân Huyện luôn quan tâm, chú trọng đến công tác "
        "dân vận của chính quyền, nhất là từ khi thực hiện Chỉ thị 18/2000/CT-TTg của Thủ tướng Chính phủ về tăng "
        "cường công tác dân vận và các văn bản chỉ đạo của Ủy ban nhân dân Tỉnh.\n"
        "- Lãnh đạo đơn vị luôn quan tâm chỉ đạo, phối hợp thực hiện trong công tác dân vận giữa cơ quan, cấp ủy và "
        "các tổ chức đoàn thể gắn với việc thực hiện quy chế dân chủ cơ sở phát huy quyền làm chủ của công chức và "
        "người lao động trong tham gia giám sát, phản biện và quản lý xã hội, những vấn đề có liên quan trực tiếp đến "
        "quyền và nghĩa vụ của người lao động."
    ),
    "nd_2_1_quan_triet": (
        "- Thực hiện Nghị định số 04/2015/NĐ-CP ngày 09/01/2015 của Chính phủ về thực hiện dân chủ trong hoạt động "
        "của cơ quan hành chính nhà nước đơn vị sự nghiệp công lập; Quyết định số 1002/QĐ-UBND-HC ngày 17 tháng 9 năm "
        "2019 của Ủy ban nhân dân tỉnh Đồng Tháp về việc ban hành Quy định nhà nước trên địa bàn tỉnh Đồng Tháp; Kế "
        "hoạch số 30- KH/BDVHU-UBND về phối hợp triển khai thực hiện “Năm dân vận khéo” năm 2020; Quy chế hoạt động "
        "về công tác dân vận giai đoạn 2016 - 2021; Kế hoạch số 134/KH-UBND ngày 13 tháng 5 năm 2020 về phát động "
        "phong trào thi đua “Dân vận khéo” năm 2020, Văn phòng Hội đồng nhân dân và Ủy ban nhân dân Huyện chỉ đạo "
        "các tổ, bộ phận thực hiện tự kiểm tra, giám sát việc triển khai thực hiện Kế hoạch. Bên cạnh đó, đơn vị "
        "thường xuyên chỉ đạo và tuyên truyền trong các cuộc họp về tăng cường và đổi mới công tác dân vận trong cơ "
        "quan hành chính nhà nước trong tình hình mới.\n"
        "- Việc quán triệt các nội dung về công tác dân vận đã góp phần nâng cao nhận thức, phát huy quyền làm chủ, "
        "tinh thần trách nhiệm của công chức, người lao động; tăng cường kỷ luật, kỷ cương, thực hành tiết kiệm, "
        "chống lãng phí, quan liêu, chấn chỉnh tác phong, lề lối làm việc và nâng cao trách nhiệm trong thực hiện "
        "nhiệm vụ của đội ngũ công chức, người lao động; nâng cao hiệu quả thực hiện Quy chế dân chủ ở cơ sở gắn với "
        "chống quan liêu."
    ),
    "nd_2_2_dao_duc": (
        "Thực hiện Chỉ thị số 26/CT-TTg ngày 05 tháng 9 năm 2016 của Thủ tướng Chính phủ về tăng cường kỷ luật, kỷ "
        "cương trong các cơ quan hành chính nhà nước các cấp; Quyết định số 70/QĐ-UBND ngày 07 tháng 7 năm 2016 của "
        "Ủy ban nhân dân Tỉnh về chấp hành nghiêm trong giờ làm việc hành chính thực hiện không uống rượu, bia trong "
        "ngày làm việc và không hút thuốc lá nơi công sở; đơn vị đã quán triệt đến công chức, người lao động trong "
        "đơn vị thực hiện nghiêm túc Luật Cán bộ công chức. Nâng cao hiệu quả sử dụng thời gian làm việc theo quy "
        "định, thực hiện tốt văn hóa công sở, có thái độ tích cực trong công việc."
    ),
    "nd_2_3_tuyen_truyen": (
        "Đơn vị triển khai thực hiện công tác tuyên truyền phổ biến quán triệt học tập văn bản về công tác dân vận "
        "của Đảng, Nhà nước gắn với thực hiện Nghị quyết Trung ương 4 khóa XII về tăng cường xây dựng chỉnh đốn "
        "Đảng; ngăn chặn đẩy lùi sự suy thoái về tư tưởng chính trị, đạo đức, lối sống, những biểu hiện “tự diễn "
        "biễn\", \"tự chuyển hóa\" trong nội bộ."
    ),
    "nd_2_4_tiep_dan": (
        "Văn phòng Hội đồng nhân dân và Ủy ban nhân dân Huyện xây dựng và ban hành kế hoạch, lịch tiếp công dân định "
        "kỳ và niêm yết công khai tại trụ sở cơ quan, công khai trên lịch công tác hàng tuần của Huyện. Văn phòng "
        "Hội đồng nhân dân và Ủy ban nhân dân phân công trực tiếp công dân thường xuyên và định kỳ theo quy định; "
        "phân công nhiệm vụ cho công chức làm nhiệm vụ tiếp công dân."
    ),
    "nd_2_5_phoi_hop": (
        "Văn phòng Hội đồng nhân dân và Ủy ban nhân dân Huyện phối hợp với các ban, ngành, đoàn thể thực hiện việc "
        "phối hợp thực hiện các nhiệm vụ góp phần bảo đảm chính trị kinh tế - xã hội như: phối hợp với các ban ngành "
        "thực hiện ký kết thi đua, ngoài ra, đơn vị còn phối hợp với các ban, ngành khác trong việc tham mưu tuyên "
        "truyền, thực hiện nhiệm vụ công tác dân vận chính quyền ở tại các xã, thị trấn."
    ),
    "nd_2_6_dan_van_kheo": (
        "Tiếp tục thực hiện trong công tác dân vận về việc phụng dưỡng 01 hộ gia đình chính sách nghèo của Huyện do "
        "Văn phòng đảm nhận."
    ),
    "nd_2_7_kiem_tra": (
        "Lãnh đạo đơn vị thường xuyên kiểm tra và giám sát việc thực hiện công tác dân vận chính quyền tại đơn vị. "
        "Đồng thời, phân công cho từng công chức tự kiểm tra, giám sát lẫn nhau."
    ),
    "nd_3_1_ket_qua": (
        "Văn phòng Hội đồng nhân dân và Ủy ban nhân dân đã quan tâm triển khai thực hiện nghiêm túc các Chỉ thị, Nghị "
        "quyết của Trung ương và của Tỉnh về công tác dân vận.\n"
        "Kỷ luật, kỷ cương hành chính được tăng cường, tinh thần trách nhiệm, đạo đức công vụ và thái độ phục vụ "
        "nhân dân của công chức, người lao động được nâng lên."
    ),
    "nd_3_2_han_che": (
        "Công tác tuyên truyền thực hiện quy chế dân vận có lúc chưa được thường xuyên. Công tác chỉ đạo, phối hợp "
        "triển khai phong trào thi có lúc đua chưa đồng bộ."
    ),
    "nd_3_2_nguyen_nhan": (
        "Công chức đảm trách việc thực hiện quy chế dân vận ở cơ quan kiêm nhiệm, chưa được tập huấn, bồi dưỡng "
        "nghiệp vụ nên hiệu quả tham mưu, chỉ đạo chưa cao."
    ),
    "noi_nhan": "- CT, các PCT UBND huyện;\n- Phòng Nội vụ huyện;\n- LĐVP; các CVNC;\n- Lưu: VT.",
}

# What section 2.4 must say for the seed's numbers (the seed writes "Huyện" in house style).
SEED_2_4 = (
    "Trong năm 2020, tham mưu cho lãnh đạo Ủy ban nhân dân huyện tiếp dân định kỳ giải quyết khiếu nại được 53 "
    "lượt, 57 người theo quy định, Ban Tiếp công dân của huyện tiếp dân thường xuyên được 170 lượt; tiếp nhận 182 "
    "đơn (giảm 24 đơn so với năm 2019), trong đó, bồi thường, hỗ trợ, tái định cư do thực hiện các công trình, dự "
    "án: 94 đơn, tranh chấp đất đai: 31 đơn, về môi trường: 05 đơn, khác 52 đơn, không có đơn khiếu nại, tố cáo, "
    "không có vụ việc đông người phức tạp; đã chuyển đơn đến ngành chuyên môn tham mưu giải quyết được 153/182 "
    "đơn, còn lại 29 đơn (còn hạn) đang xác minh giải quyết theo quy định."
)
_ZERO_COUNT = re.compile(r"(?<![\d.,/])0 (đơn|lượt|người|cuộc|mô hình|hồ sơ|vụ việc|văn bản|hộ)\b")


def make_data(form: Any, values: dict[str, Any], models: list[dict[str, Any]] | tuple = (), code: str = "TN-VP",
              year: int = 2020) -> SubmissionData:
    """A submission as the reader returns it: ``NA`` → không phát sinh, None → blank."""
    def value(fid: str, x: Any) -> Value:
        if x is NA:
            return Value(fid, ValueState.NA)
        if x is None:
            return Value(fid, ValueState.BLANK)
        return Value(fid, ValueState.VALUE, x)

    rows = [{k: value(k, x) for k, x in row.items()} for row in models]
    return SubmissionData(code, form.id, form.version, form.definition_hash, year,
                          {k: value(k, x) for k, x in values.items()}, {"dvk_mo_hinh": rows})


def seed_report(form: Any, register: Any, **changes: Any) -> Report:
    values = {**SEED_VALUES, **SEED_PARAGRAPHS, **changes}
    options = changes.pop("options", None) or NarrativeOptions()
    values.pop("options", None)
    return unit_report(form, register.get("TN-VP"), make_data(form, values, SEED_MODELS), year=2020, options=options)


def body(report: Report) -> str:
    return "\n".join(report.body_texts())


def section_text(report: Report, number: str) -> list[str]:
    """The paragraphs under the heading that starts with ``number`` (until the next heading)."""
    out: list[str] = []
    inside = False
    for b in report.blocks:
        if b.kind == BlockKind.HEADING:
            inside = b.text.startswith(f"{number}. ")
        elif inside:
            out.append(b.display)
    return out


# ------------------------------------------------------------------ the seed case

def test_seed_outline_follows_the_form_sections(form, register):
    report = seed_report(form, register)
    headings = [(b.level, b.text) for b in report.blocks if b.kind == BlockKind.HEADING]
    expected = [s for s in form.sections if s.number]
    assert [t for _, t in headings] == [s.heading for s in expected]
    assert [t.split(" ")[0] for _, t in headings] == [
        "I.", "1.", "2.", "2.1.", "2.2.", "2.3.", "2.4.", "2.5.", "2.6.", "2.7.", "III.", "1.", "2."]
    assert [lvl for lvl, _ in headings] == [1, 2, 2, 3, 3, 3, 3, 3, 3, 3, 1, 2, 2]
    assert not any(t.startswith("II.") for _, t in headings)  # the seed has no section II
    assert headings[0][1] == "I. KẾT QUẢ THỰC HIỆN CÔNG TÁC DÂN VẬN CHÍNH QUYỀN"
    subheadings = [b.text for b in report.blocks if b.kind == BlockKind.SUBHEADING]
    assert subheadings == ["Nguyên nhân tồn tại, hạn chế"]


def test_seed_section_2_4_reads_like_the_seed(form, register):
    report = seed_report(form, register)
    paragraphs = section_text(report, "2.4")
    assert paragraphs[0] == SEED_PARAGRAPHS["nd_2_4_tiep_dan"]  # the unit's own text comes first
    assert paragraphs[1] == SEED_2_4
    for fragment in (
        "tiếp dân định kỳ giải quyết khiếu nại được 53 lượt, 57 người",
        "Ban Tiếp công dân của huyện tiếp dân thường xuyên được 170 lượt; tiếp nhận 182 đơn (giảm 24 đơn so với năm 2019), "
        "trong đó, bồi thường, hỗ trợ, tái định cư",
        ": 94 đơn, tranh chấp đất đai: 31 đơn, về môi trường: 05 đơn, khác 52 đơn, không có đơn khiếu nại, tố cáo, "
        "không có vụ việc đông người phức tạp;",
        "153/182 đơn, còn lại 29 đơn (còn hạn)",
    ):
        assert fragment in paragraphs[1]


def test_seed_preamble_closing_and_unit_text(form, register):
    report = seed_report(form, register)
    texts = report.body_texts()
    assert texts[0] == (form.wording["preamble"] + ", Văn phòng Hội đồng nhân dân và Ủy ban nhân dân huyện Tam Nông "
                        "báo cáo kết quả thực hiện như sau:")
    assert texts[-1] == ("Trên đây là báo cáo kết quả thực hiện “Năm Dân vận chính quyền” năm 2020 của Văn phòng Hội "
                         "đồng nhân dân và Ủy ban nhân dân huyện Tam Nông./.")
    section_1 = section_text(report, "1")
    assert section_1[:2] == SEED_PARAGRAPHS["nd_1_lanh_dao"].split("\n")  # "- …" lines stay as in the seed
    items = [b for b in report.blocks if b.kind == BlockKind.ITEM]
    assert items[0].text.startswith("Thời gian qua, Văn phòng")
    assert "Năm 2020, đơn vị thực hiện 01 mô hình “Dân vận khéo”:" in texts
    assert ("- Phụng dưỡng hộ gia đình chính sách nghèo của huyện (lĩnh vực văn hóa - xã hội, được công nhận cấp "
            "huyện, 01 hộ).") in texts
    assert "tự diễn biễn" in body(report)  # units' typos are kept, never corrected


def test_seed_header_signer_and_recipients(form, register):
    report = seed_report(form, register)
    assert report.parent == "UBND HUYỆN TAM NÔNG"
    assert report.agency == "VĂN PHÒNG HỘI ĐỒNG NHÂN DÂN VÀ ỦY BAN NHÂN DÂN"
    assert report.number == "Số:     /BC-VP"
    assert report.place_date == "Tam Nông, ngày      tháng      năm 2020"
    assert report.subject == "Kết quả thực hiện “Năm Dân vận chính quyền” năm 2020"
    assert report.signer.lines == ("CHÁNH VĂN PHÒNG",) and report.signer.name == "Đoàn Hữu Tiên"
    assert report.recipients == ("CT, các PCT UBND huyện;", "Phòng Nội vụ huyện;", "LĐVP; các CVNC;", "Lưu: VT.")


def test_number_and_date_from_the_data(form, register):
    report = seed_report(form, register, so_ky_hieu="số: 7/BC-VP", ngay_bao_cao=dt.date(2021, 1, 5))
    assert report.number == "Số: 7/BC-VP"
    assert report.place_date == "Tam Nông, ngày 05 tháng 01 năm 2021"
    report = seed_report(form, register, so_ky_hieu="05/BC-VP", ngay_bao_cao=dt.date(2020, 12, 14))
    assert (report.number, report.place_date) == ("Số: 05/BC-VP", "Tam Nông, ngày 14 tháng 12 năm 2020")


def test_kyhieu_is_never_upper_cased_and_commune_signer(form, register):
    thanh_tra = unit_report(form, register.get("TN-TTr"), make_data(form, {}, code="TN-TTr"), year=2020)
    assert thanh_tra.number == "Số:     /BC-TTr"
    assert thanh_tra.signer.lines == ("CHÁNH THANH TRA",) and thanh_tra.signer.name == ""
    assert thanh_tra.recipients == ("Phòng Nội vụ huyện;", "Lưu: VT.")
    data = make_data(form, {"nguoi_ky_quyen_han": "KT.", "nguoi_ky_chuc_vu": "Phó Chủ tịch", "nguoi_ky_ho_ten": "Lê Văn A",
                            "tcd_dinh_ky_luot": 48, "tcd_dinh_ky_nguoi": 52}, code="30001")
    commune = unit_report(form, register.get("30001"), data, year=2020, collector="Phòng Nội vụ huyện Tam Nông")
    assert commune.signer.lines == ("TM. ỦY BAN NHÂN DÂN", "KT. CHỦ TỊCH", "PHÓ CHỦ TỊCH")
    assert commune.agency == "ỦY BAN NHÂN DÂN THỊ TRẤN TRÀM CHIM" and commune.parent == ""
    assert commune.place_date.startswith("Tràm Chim, ngày")
    assert commune.recipients == ("Phòng Nội vụ huyện Tam Nông;", "Lưu: VT.")
    assert "lãnh đạo Ủy ban nhân dân thị trấn tiếp dân định kỳ giải quyết khiếu nại được 48 lượt, 52 người" in body(commune)


# ------------------------------------------------------------------ sentences adapt to the data

@pytest.mark.parametrize(("previous", "prev", "expected"), [
    (206, None, "tiếp nhận 182 đơn (giảm 24 đơn so với năm 2019), trong đó"),
    (170, None, "tiếp nhận 182 đơn (tăng 12 đơn so với năm 2019), trong đó"),
    (182, None, "tiếp nhận 182 đơn (không thay đổi so với năm 2019), trong đó"),
    (None, {"don_tiep_nhan": 180}, "tiếp nhận 182 đơn (tăng 02 đơn so với năm 2019), trong đó"),
    (None, None, "tiếp nhận 182 đơn, trong đó"),
])
def test_increase_decrease_unchanged(form, register, previous, prev, expected):
    values = {**SEED_VALUES, "don_nam_truoc": previous}
    report = unit_report(form, register.get("TN-VP"), make_data(form, values), year=2020, prev=prev)
    assert expected in body(report)


def test_zeros_say_khong_co(form, register):
    values = {**SEED_VALUES, "don_khieu_nai": 3, "don_kien_nghi": 179, "vu_viec_dong_nguoi": 0, "don_moi_truong": 0,
              "don_khac": 57, "dvk_so_mo_hinh": 0, "kiem_tra_dv": 0, "vb_trien_khai": 0, "hn_quan_triet": 2,
              "tthc_tiep_nhan": 40, "tthc_dung_han": 40, "tthc_qua_han": 0, "doi_thoai": 0, "cbccvc_tong": 25,
              "cbccvc_vi_pham": 0, "don_dang_giai_quyet": 0, "don_con_han": 0, "don_da_chuyen": 182}
    text = body(unit_report(form, register.get("TN-VP"), make_data(form, values), year=2020))
    assert "03 đơn khiếu nại, không có đơn tố cáo, 179 đơn kiến nghị, phản ánh, không có vụ việc đông người phức tạp" in text
    assert "về môi trường" not in text  # a zero topic is simply not listed
    assert "Năm 2020, đơn vị không có mô hình “Dân vận khéo”." in text
    assert "Trong năm 2020, không có cuộc kiểm tra, giám sát việc thực hiện công tác dân vận chính quyền." in text
    assert ("Trong năm 2020, không có văn bản lãnh đạo, chỉ đạo, kế hoạch mới về công tác dân vận; tổ chức 02 cuộc hội "
            "nghị, buổi quán triệt.") in text
    assert ("Tổng số cán bộ, công chức, viên chức, người lao động của đơn vị là 25 người; trong năm 2020, không có cán bộ, "
            "công chức, viên chức vi phạm kỷ luật, kỷ cương hành chính.") in text
    assert "đạt 100% số hồ sơ đã giải quyết, không có hồ sơ giải quyết quá hạn" in text
    assert "đã chuyển đơn đến ngành chuyên môn tham mưu giải quyết được 182/182 đơn, không có đơn đang xác minh" in text
    assert not _ZERO_COUNT.search(text), _ZERO_COUNT.search(text)


def test_blank_is_omitted_never_none(form, register):
    values = {k: v for k, v in SEED_VALUES.items() if not k.startswith("tcd_")}
    text = body(unit_report(form, register.get("TN-VP"), make_data(form, values), year=2020))
    assert "Trong năm 2020, tiếp nhận 182 đơn (giảm 24 đơn so với năm 2019)" in text
    assert "tiếp dân định kỳ" not in text and "thường xuyên" not in text
    empty = unit_report(form, register.get("TN-VP"), make_data(form, {}), year=2020)
    texts = empty.body_texts()
    assert len(texts) == 2 + sum(1 for s in form.sections if s.number)  # preamble, headings, closing only
    for report in (empty, unit_report(form, register.get("TN-VP"), make_data(form, values), year=2020)):
        dump = body(report) + report.to_markdown()
        assert "None" not in dump and "NA" not in dump.replace("NAM", "") and "Undefined" not in dump


def test_not_applicable_is_phrased(form, register):
    values = {**SEED_VALUES, "don_khieu_nai": NA, "don_to_cao": NA, "tthc_tiep_nhan": NA, "dvk_so_mo_hinh": NA,
              "vu_viec_dong_nguoi": NA, "tcd_thuong_xuyen_luot": NA}
    text = body(unit_report(form, register.get("TN-VP"), make_data(form, values), year=2020))
    assert "không phát sinh đơn khiếu nại, tố cáo, không phát sinh vụ việc đông người phức tạp" in text
    assert "không phát sinh việc tiếp dân thường xuyên" in text
    assert "Về cải cách thủ tục hành chính, đơn vị không phát sinh hồ sơ thủ tục hành chính." in text
    assert "Năm 2020, đơn vị không phát sinh mô hình “Dân vận khéo”." in text


def test_small_count_padding_is_an_option(form, register):
    assert "về môi trường: 05 đơn" in body(seed_report(form, register))
    plain = seed_report(form, register, options=NarrativeOptions(pad_small_counts=False))
    assert "về môi trường: 5 đơn" in body(plain) and "01 mô hình" not in body(plain)


def test_numbers_use_vietnamese_notation(form, register):
    values = {"tthc_tiep_nhan": 12345, "tthc_dung_han": 11500, "tthc_qua_han": 1500, "ty_le_hai_long": 96.5,
              "dvk_so_mo_hinh": 1, "dvk_kinh_phi": 1250.5}
    text = body(unit_report(form, register.get("TN-VP"), make_data(form, values, SEED_MODELS), year=2020))
    assert ("Về cải cách thủ tục hành chính, đơn vị tiếp nhận 12.345 hồ sơ; giải quyết đúng hạn (kể cả trước hạn) "
            "11.500 hồ sơ, đạt 88,46% số hồ sơ đã giải quyết, quá hạn 1.500 hồ sơ.") in text
    assert "đạt 96,5%." in text and "kinh phí 1.250,5 triệu đồng" in text


# ------------------------------------------------------------------ the block syntax and the Markdown twin

def test_parse_blocks():
    blocks = parse_blocks("Một\n, hai ba\n\n# I. A\n## 1. B\n### 2.1. C\n#### Phụ\n- mục một\n  tiếp\n- mục hai\n\n\\# chữ")
    assert [(b.kind, b.level, b.text) for b in blocks] == [
        (BlockKind.PARAGRAPH, 0, "Một, hai ba"), (BlockKind.HEADING, 1, "I. A"), (BlockKind.HEADING, 2, "1. B"),
        (BlockKind.HEADING, 3, "2.1. C"), (BlockKind.SUBHEADING, 0, "Phụ"), (BlockKind.ITEM, 0, "mục một tiếp"),
        (BlockKind.ITEM, 0, "mục hai"), (BlockKind.PARAGRAPH, 0, "# chữ"),
    ]


def test_markdown_twin_has_the_same_text(form, register):
    report = seed_report(form, register, so_ky_hieu="05/BC-VP")
    markdown = report.to_markdown()
    lines = [unescape_markdown(re.sub(r"^(#+ |- |\*+)|\*+$", "", line)) for line in markdown.splitlines()]
    for text in (*report.body_texts(), report.parent, report.agency, report.number, report.place_date, report.subject,
                 *report.recipients, *report.signer.lines, report.signer.name):
        plain = text[2:] if text.startswith("- ") else text
        assert plain in lines, plain
    assert "\n## I. KẾT QUẢ THỰC HIỆN CÔNG TÁC DÂN VẬN CHÍNH QUYỀN\n" in markdown
    assert "\n#### 2.4. Công tác tiếp dân" in markdown and SEED_2_4 in markdown
    assert "\n- CT, các PCT UBND huyện;\n- Phòng Nội vụ huyện;\n" in markdown


def test_docx_paragraphs_equal_the_markdown_blocks(form, register, tmp_path):
    report = seed_report(form, register)
    path = write_docx(report, tmp_path / "bao_cao.docx")
    document = docx.Document(str(path))
    paragraphs = [p.text for p in document.paragraphs if p.style.name in ("Body Text", "Heading 1", "Heading 2",
                                                                         "Heading 3", "Heading 4")]
    assert paragraphs == report.body_texts()
    markdown = unescape_markdown(report.to_markdown())
    assert all((p[2:] if p.startswith("- ") else p) in markdown for p in paragraphs)


def test_output_is_deterministic(form, register, tmp_path):
    first, second = seed_report(form, register), seed_report(form, register)
    assert first.to_markdown() == second.to_markdown()
    assert build_docx(first) == build_docx(second)
    assert first.file_stem == "2020_TN-VP_bao-cao-dan-van"
    markdown = write_markdown(first, tmp_path / f"{first.file_stem}.md")
    assert markdown.read_text(encoding="utf-8") == first.to_markdown()
    path = write_docx(first, tmp_path / f"{first.file_stem}.docx")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["2020_TN-VP_bao-cao-dan-van.docx", "2020_TN-VP_bao-cao-dan-van.md"]
    props = docx.Document(str(path)).core_properties
    assert props.created == props.modified == dt.datetime(2020, 12, 14, 8, 0, tzinfo=props.created.tzinfo)
    assert props.language == "vi-VN" and props.title.startswith("BÁO CÁO Kết quả thực hiện")


# ------------------------------------------------------------------ the Word layout (NĐ 30/2020)

def _runs(paragraph: Any) -> list[Any]:
    return [r for r in paragraph.runs if r.text.strip()]


def test_docx_page_fonts_and_styles(form, register, tmp_path):
    document = docx.Document(str(write_docx(seed_report(form, register), tmp_path / "x.docx")))
    section = document.sections[0]
    assert round(section.page_width.mm) == 210 and round(section.page_height.mm) == 297
    assert 20 <= section.top_margin.mm <= 25 and 20 <= section.bottom_margin.mm <= 25
    assert 30 <= section.left_margin.mm <= 35 and 15 <= section.right_margin.mm <= 20
    assert section.different_first_page_header_footer
    assert "PAGE" in section.header._element.xml and "PAGE" not in section.first_page_header._element.xml
    number = section.header.paragraphs[0]
    assert number.alignment == WD_ALIGN_PARAGRAPH.CENTER and all(13 <= r.font.size.pt <= 14 for r in number.runs)
    for name in ("Normal", "Body Text", "Heading 1", "Heading 2", "Heading 3"):
        fonts = document.styles[name].element.rPr.rFonts
        assert {fonts.get(qn(f"w:{a}")) for a in ("ascii", "hAnsi", "eastAsia", "cs")} == {"Times New Roman"}, name
        assert fonts.get(qn("w:asciiTheme")) is None
    defaults = document.styles.element.find(qn("w:docDefaults")).find(qn("w:rPrDefault")).find(qn("w:rPr"))
    assert defaults.find(qn("w:rFonts")).get(qn("w:eastAsia")) == "Times New Roman"
    body_style = document.styles["Body Text"]
    fmt = body_style.paragraph_format
    assert 13 <= body_style.font.size.pt <= 14 and fmt.alignment == WD_ALIGN_PARAGRAPH.JUSTIFY
    assert 1.0 <= fmt.first_line_indent.cm <= 1.27 and fmt.space_before.pt >= 6 and 1.0 <= fmt.line_spacing <= 1.5
    for level in (1, 2, 3):
        heading = document.styles[f"Heading {level}"]
        assert heading.font.bold and str(heading.font.color.rgb) == "000000" and heading.font.size.pt == 14


def test_docx_header_title_and_signature(form, register, tmp_path):
    report = seed_report(form, register, so_ky_hieu="05/BC-VP", ngay_bao_cao=dt.date(2020, 12, 4))
    document = docx.Document(str(write_docx(report, tmp_path / "x.docx")))
    header, footer = document.tables[0], document.tables[-1]
    left = [p for p in header.cell(0, 0).paragraphs if p.text]
    assert left[0].text == "UBND HUYỆN TAM NÔNG" and not _runs(left[0])[0].font.bold
    assert left[1].text == "VĂN PHÒNG HỘI ĐỒNG NHÂN DÂN\nVÀ ỦY BAN NHÂN DÂN"  # balanced lines, broken before "VÀ"
    assert all(r.font.bold and 12 <= r.font.size.pt <= 13 for r in _runs(left[1]))
    right = [p for p in header.cell(0, 1).paragraphs if p.text]
    assert right[0].text == "CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM" and _runs(right[0])[0].font.bold
    assert 12 <= _runs(right[0])[0].font.size.pt <= 13
    assert right[1].text == "Độc lập - Tự do - Hạnh phúc" and 13 <= _runs(right[1])[0].font.size.pt <= 14
    assert header.cell(1, 0).text == "Số: 05/BC-VP" and _runs(header.cell(1, 0).paragraphs[0])[0].font.size.pt == 13
    date = header.cell(1, 1).paragraphs[0]
    assert date.text == "Tam Nông, ngày 04 tháng 12 năm 2020" and _runs(date)[0].font.italic
    rules = [p for p in document.element.body.iter(qn("w:p")) if p.find(f"{qn('w:pPr')}/{qn('w:pBdr')}") is not None]
    assert len(rules) == 3  # under the agency, under the tiêu ngữ, under the trích yếu
    title = [p for p in document.paragraphs if p.text][:2]
    assert title[0].text == "BÁO CÁO" and _runs(title[0])[0].font.bold
    assert title[0].alignment == WD_ALIGN_PARAGRAPH.CENTER
    assert title[1].text == report.subject and _runs(title[1])[0].font.bold
    recipients = footer.cell(0, 0).paragraphs
    assert recipients[0].text == "Nơi nhận:"
    run = _runs(recipients[0])[0]
    assert run.font.bold and run.font.italic and run.font.size.pt == 12
    assert [p.text for p in recipients[1:]] == [f"- {r}" for r in report.recipients]
    assert all(_runs(p)[0].font.size.pt == 11 for p in recipients[1:])
    signer = [p for p in footer.cell(0, 1).paragraphs if p.text]
    assert [p.text for p in signer] == ["CHÁNH VĂN PHÒNG", "Đoàn Hữu Tiên"]
    assert all(_runs(p)[0].font.bold and p.alignment == WD_ALIGN_PARAGRAPH.CENTER for p in signer)
    for table in (header, footer):
        borders = table._tbl.tblPr.find(qn("w:tblBorders"))
        assert {b.get(qn("w:val")) for b in borders} == {"nil"}


def test_odd_input_renders(form, register, tmp_path):
    long_text = "Nội dung rất dài. " * 1200
    nfd = unicodedata.normalize("NFD", "Hòa Bình, Đồng Tháp, thủy lợi")
    values = {
        **SEED_VALUES,
        "nd_1_lanh_dao": "Điều khiển\x00\x07\x1b\x0b ở giữa\ud800 và \ufffe cuối.\n=cmd|' /C calc'!A0\n# không phải tiêu đề",
        "nd_2_1_quan_triet": long_text, "nd_2_2_dao_duc": nfd, "nguoi_ky_ho_ten": unicodedata.normalize("NFD", "Đoàn Hữu Tiên"),
    }
    models = [{"ten_mo_hinh": "Mô hình\x0c “#1”\n*đậm* [liên kết](x)", "linh_vuc": "Kinh tế"}]
    report = unit_report(form, register.get("TN-VP"), make_data(form, values, models), year=2020)
    path = write_docx(report, tmp_path / "odd.docx")
    texts = [p.text for p in docx.Document(str(path)).paragraphs]
    joined = "\n".join(texts)
    assert "Điều khiển ở giữa và cuối." in texts and "=cmd|' /C calc'!A0" in texts
    assert "# không phải tiêu đề" in texts  # typed by the unit: text, not a heading
    assert unicodedata.normalize("NFC", nfd) in texts and unicodedata.is_normalized("NFC", joined)
    assert max(len(t) for t in texts) >= 20_000
    assert not re.search("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff\ue000\ue001]", joined)
    assert report.signer.name == "Đoàn Hữu Tiên"
    markdown = report.to_markdown()
    assert "\n\\# không phải tiêu đề\n" in markdown and "\n\\=cmd" in markdown and "\\*đậm\\*" in markdown
    assert "Mô hình “#1” \\*đậm\\* \\[liên kết\\](x) (lĩnh vực kinh tế)" in markdown


# ------------------------------------------------------------------ the fast writer: shared parts + XML text

_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def _members(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as package:
        assert package.testzip() is None
        return {name: package.read(name) for name in package.namelist()}


def test_docx_package_is_well_formed(form, register):
    data = build_docx(seed_report(form, register))
    members = _members(data)
    assert list(members)[:6] == ["[Content_Types].xml", "_rels/.rels", "docProps/core.xml", "docProps/app.xml",
                                 "word/document.xml", "word/_rels/document.xml.rels"]
    assert {"word/styles.xml", "word/header1.xml", "word/header2.xml", "word/settings.xml"} <= set(members)
    for name, payload in members.items():
        if name.endswith((".xml", ".rels")):
            root = etree.fromstring(payload)  # well-formed
            if name in ("word/document.xml", "docProps/core.xml"):  # the two written as text for each report …
                # … are exactly what lxml (python-docx's serialiser) writes for their tree: same escaping, no stray text
                assert etree.tostring(root, encoding="UTF-8", standalone=True) == payload, name
    # The zip is what zipfile writes for these members with fixed times (as the first version did).
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as package:
        for name, payload in members.items():
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type, info.create_system, info.external_attr = zipfile.ZIP_DEFLATED, 3, 0o644 << 16
            package.writestr(info, payload)
    assert out.getvalue() == data
    document = docx.Document(io.BytesIO(data))
    assert len(document.tables) == 2 and document.paragraphs[0].text == "BÁO CÁO"


def test_docx_bytes_are_the_same_in_a_fresh_process(form, register, tmp_path):
    report = seed_report(form, register)
    saved = tmp_path / "report.pickle"
    saved.write_bytes(pickle.dumps(report))
    script = ("import pickle, sys; from danvan_xl.docx_writer import build_docx; "
              "sys.stdout.buffer.write(build_docx(pickle.loads(open(sys.argv[1], 'rb').read())))")
    fresh = subprocess.run([sys.executable, "-c", script, str(saved)], capture_output=True, check=True).stdout
    assert fresh == build_docx(report) == build_docx(dataclasses.replace(report))


def test_odd_characters_everywhere(form, register):
    odd = "A & B <c> \"d\" 'e' ]]> &amp; \ttab\rcr x\x00\x0b\ud800\ufffe 😀 " + unicodedata.normalize("NFD", "Hòa")
    legal = _ILLEGAL.sub("", odd)
    printed = legal.replace("\r", "\n")  # python-docx reads a <w:br/> back as "\n"
    base = seed_report(form, register)
    blocks = (Block(BlockKind.HEADING, "I. " + odd, 1), Block(BlockKind.PARAGRAPH, odd), Block(BlockKind.ITEM, ""),
              Block(BlockKind.PARAGRAPH, "  hai đầu có khoảng trắng  "), Block(BlockKind.PARAGRAPH, ""),
              Block(BlockKind.PARAGRAPH, "Hết./."))
    report = dataclasses.replace(base, agency="SỞ " + odd, number="Số: " + odd, place_date=odd, subject=odd * 6,
                                 blocks=blocks, signer=Signer(("KT. " + odd,), odd), recipients=(odd,), code=odd)
    data = build_docx(report)
    members = _members(data)
    for name in ("word/document.xml", "docProps/core.xml"):
        etree.fromstring(members[name])  # a stray control character would make it unreadable
        assert not _ILLEGAL.search(members[name].decode("utf-8").replace("\n", "").replace("\t", "")), name
    document = docx.Document(io.BytesIO(data))
    assert [p.text for p in document.paragraphs if p.style.name != "Normal"] == [
        "I. " + printed, printed, "- ", "  hai đầu có khoảng trắng  ", "", "Hết./."]
    header, footer = document.tables[0], document.tables[-1]
    assert header.cell(1, 0).text == "Số: " + printed and header.cell(1, 1).text == printed
    assert [p.text for p in footer.cell(0, 0).paragraphs] == ["Nơi nhận:", "- " + printed]
    signer = [p.text for p in footer.cell(0, 1).paragraphs if p.text]
    assert signer == ["KT. " + printed, printed]
    spaced = [t for t in etree.fromstring(members["word/document.xml"]).iter(qn("w:t")) if t.text.startswith("  hai")]
    assert spaced[0].get("{http://www.w3.org/XML/1998/namespace}space") == "preserve"
    props = document.core_properties
    assert props.title == f"BÁO CÁO {legal * 6}"[:255] and props.keywords == legal  # (Word keeps 255 characters)
    assert props.author == props.last_modified_by == _ILLEGAL.sub("", "SỞ " + odd)
    assert build_docx(report) == data


def _bulk_workspace(root: Path, form: Any, n: int) -> Any:
    """A workspace of ``n`` synthetic units, each with an accepted submission of sample values."""
    units = [Unit(f"X{i:03d}", f"Ủy ban nhân dân xã Thử {i}", "xa", i, "Chủ tịch", "TM. ỦY BAN NHÂN DÂN") for i in range(n)]
    with open(root / "units.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["code", "name", "kind", "order", "head_title", "authority"])
        w.writerows([u.code, u.name, u.kind, u.order, u.head_title, u.authority] for u in units)
    ws = load_workspace(init_workspace(root / "ws", units=root / "units.csv", issue_date=dt.date(2020, 11, 2)).root)
    received = dt.datetime(2020, 12, 1, 8, 0)
    with Ledger.open(ws.ledger_path, ws.archive_dir, "test") as ledger, ledger.transaction() as conn:
        for i, unit in enumerate(units):
            values, tables = sample_values(form, unit, 2020)
            data = make_data(form, values, tables["dvk_mo_hinh"], code=unit.code)
            sid = ledger.add_submission(conn, data, digest=f"{i:064x}", chash=f"{i:064x}", received_at=received,
                                        source="test", file_format="xlsx", state="current", supersedes=None, notes=())
            ledger.set_current(conn, unit.code, form.id, 2020, sid)
    return ws


def test_many_unit_reports_are_shared_between_processes(form, tmp_path, monkeypatch):
    ws = _bulk_workspace(tmp_path, form, PARALLEL_THRESHOLD + 5)
    pools: list[int] = []

    class Pool(forkpool.ProcessPoolExecutor):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            pools.append(args[0])
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(forkpool, "ProcessPoolExecutor", Pool)
    one = write_narratives(ws, out_dir=tmp_path / "one", workers=1)
    assert not pools
    two = write_narratives(ws, out_dir=tmp_path / "two", workers=2)
    assert pools == [2]
    codes = [u.code for u in ws.load_register()]
    assert [w.unit for w in two.written] == [w.unit for w in one.written] == codes  # register order
    assert [w.docx.name for w in two.written] == [w.docx.name for w in one.written]
    for a, b in zip(one.written, two.written, strict=True):
        assert a.docx.read_bytes() == b.docx.read_bytes() and a.markdown.read_bytes() == b.markdown.read_bytes()
        assert b.docx.parent == tmp_path / "two"
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == sorted(p.name for p in (tmp_path / "one").iterdir())
    assert len(list((tmp_path / "two").iterdir())) == 2 * len(codes)  # no temporary files left
    few = write_narratives(ws, codes[:3], out_dir=tmp_path / "few", workers=2)
    assert pools == [2] and [w.unit for w in few.written] == codes[:3]


def _varied_ledger(ws: Any, form: Any) -> None:
    """Add what a real cycle leaves in a ledger to a :func:`_bulk_workspace`: every value state
    (không phát sinh, blank, invalid with its raw text, dates, Có/Không, fractions, typed text),
    a unit whose latest check has errors (an older check had none), a correction that supersedes,
    a conflict and a unit that sent nothing."""
    codes = [u.code for u in ws.load_register()]
    received = dt.datetime(2020, 12, 2, 8, 0)
    with Ledger.open(ws.ledger_path, ws.archive_dir, "test") as ledger, ledger.transaction() as conn:
        values, tables = sample_values(form, ws.load_register().get(codes[0]), 2020)
        data = make_data(form, {**values, "vb_trien_khai": NA, "hn_quan_triet": None, "ty_le_hai_long": 95.5,
                                "ngay_bao_cao": dt.date(2020, 12, 14), "lich_tiep_cong_khai": "Có",
                                "nd_1_lanh_dao": "  - Đoạn một\n# không phải tiêu đề  "},
                         [*tables["dvk_mo_hinh"], {"ten_mo_hinh": None, "linh_vuc": NA}], code=codes[0])
        data.values["luot_nguoi_du"] = Value("luot_nguoi_du", ValueState.INVALID, None, "mười hai", "I", "D9")
        sid = ledger.add_submission(conn, data, digest="a" * 64, chash="a" * 64, received_at=received, source="test",
                                    file_format="xlsx", state="current", supersedes=1, notes=("sửa",))
        ledger.set_current(conn, codes[0], form.id, 2020, sid)
        for errors, sub in ((0, 2), (3, 2), (1, 3)):  # unit 2: the latest check counts
            conn.execute("INSERT INTO checks(submission_id, run_id, created_at, definition_hash, errors, warnings, "
                         "digest) VALUES (?, ?, '2020-12-03', '', ?, 0, ?)", (sub, ledger.run_id(conn), errors,
                                                                             f"{errors}{sub}"))
        conflict = make_data(form, {"vb_trien_khai": 1}, code=codes[4])
        ledger.add_submission(conn, conflict, digest="b" * 64, chash="b" * 64, received_at=received, source="test",
                              file_format="xlsx", state="conflict", supersedes=None, notes=())
        conn.execute("DELETE FROM current WHERE unit_code = ?", (codes[5],))


def test_plain_reads_equal_full_reads(form, tmp_path):
    """The narrative's cheap reads (plain values, one query) give what the full reads give."""
    ws = _bulk_workspace(tmp_path, form, 8)
    _varied_ledger(ws, form)
    register = ws.load_register()
    with Ledger.open_readonly(ws.ledger_path) as ledger:
        full = ledger.current_submissions(form.id, 2020)
        plain = ledger.current_plain(form.id, 2020)
        assert [(s.id, s.unit_code, s.errors) for s in plain] == [(s.id, s.unit_code, s.errors) for s in full]
        assert any(s.errors for s in full) and len(full) == 7
        for p, f in zip(plain, full, strict=True):
            assert p.data.plain() == f.data.plain() and set(p.data.tables) == set(f.data.tables)
            for table in f.data.tables:
                assert p.data.rows(table) == f.data.rows(table)
            assert ledger.plain_data(f.id) == p.data
        states = {v.state for s in full for v in s.data.values.values()}
        assert states == set(ValueState)
        assert ledger.current_plain(form.id, 2019) == []
        statuses = compute_status(ledger, form, register, 2020, ws.deadline)
    missing = [st.unit for st in statuses if st.state == "missing"]
    with_errors = [st.unit for st in statuses if st.state in ("with_errors", "conflict")]
    assert missing and with_errors
    assert {st.state for st in statuses} == {"missing", "with_errors", "conflict", "accepted"}
    # The district report from the plain reads is the one from the full reads, to the byte.
    reports = [district_report(form, DistrictInput(SAMPLE_OFFICE, register, 2020, [s for s in subs if not s.errors],
                                                   missing, with_errors, prev_totals={"vb_trien_khai": 12}))
               for subs in (full, plain)]
    assert reports[0] == reports[1] and build_docx(reports[0]) == build_docx(reports[1])
    assert reports[0].to_markdown() == reports[1].to_markdown()
    # A unit report from the plain values is the one from the full data.
    unit = register.get(full[0].unit_code)
    assert (unit_report(form, unit, plain[0].data, year=2020) == unit_report(form, unit, full[0].data, year=2020))


def test_sandbox_short_way_keeps_private_attributes_out(form, tmp_path):
    """The sandbox's short way for the objects made here still refuses "_" attributes and gives
    what the plain sandbox gives for every other attribute."""
    from jinja2.exceptions import SecurityError
    from jinja2.sandbox import SandboxedEnvironment

    from danvan_xl.narrative import FieldValues, _cached_environment, unit_view

    env = _cached_environment(form.folder / "narrative", True)
    values = FieldValues({"a": 1.0, "b": "  x  ", "c": True})
    unit = unit_view(Unit("X", "Xã X", "xa", 1))
    plain = SandboxedEnvironment(undefined=env.undefined)
    for obj, name in ((values, "a"), (values, "b"), (values, "c"), (values, "missing"), (values, "get"),
                      (unit, "name"), (unit, "ubnd")):
        assert env.getattr(obj, name) == plain.getattr(obj, name)
    for obj, name in ((values, "_raw"), (values, "_values"), (values, "__class__"), (unit, "__dict__")):
        with pytest.raises(SecurityError):
            str(env.getattr(obj, name))
    with pytest.raises(SecurityError):
        env.from_string("{{ d._raw }}").render(d=values)


# ------------------------------------------------------------------ the district report

def _submission(form: Any, sid: int, code: str, values: dict[str, Any], models: Any = (), errors: int = 0) -> Submission:
    return Submission(sid, code, dt.datetime(2020, 12, 1, 8, 0), "tệp thử", "0" * 64, "current",
                      make_data(form, values, list(models), code=code), errors=errors)


@pytest.fixture
def district(form, register) -> Report:
    scores = dict(zip([c.score_field for c in form.rubric.criteria], [14, 13, 9, 18, 9, 13, 9, 5], strict=True))
    subs = [
        _submission(form, 1, "TN-VP", {**SEED_VALUES, **scores, "vb_trien_khai": 5, "tthc_tiep_nhan": 30,
                                        "tthc_dung_han": 23, "tthc_qua_han": 3, "lich_tiep_cong_khai": "Có"}, SEED_MODELS),
        _submission(form, 2, "TN-TP", {"vb_trien_khai": 3, "tcd_thuong_xuyen_luot": 20, "don_tiep_nhan": 0,
                                        "vu_viec_dong_nguoi": 0, "lich_tiep_cong_khai": "Không", "diem_tu_cham": 72}),
        _submission(form, 3, "30001", {
            "vb_trien_khai": 7, "tcd_dinh_ky_luot": 48, "tcd_dinh_ky_nguoi": 60, "tcd_thuong_xuyen_luot": 110,
            "don_tiep_nhan": 23, "don_nam_truoc": 30, "don_tranh_chap_dat": 20, "don_khac": 3, "don_khieu_nai": 2,
            "don_to_cao": 0, "vu_viec_dong_nguoi": 0, "dvk_so_mo_hinh": 1, "lich_tiep_cong_khai": "Có",
            "diem_tu_cham": 93, "xep_loai_tu_cham": "Tốt"},
            [{"ten_mo_hinh": "Dân vận khéo trong xây dựng nông thôn mới", "linh_vuc": "Kinh tế",
              "cap_cong_nhan": "Chưa công nhận"}]),
    ]
    received = {"TN-VP", "TN-TP", "30001", "TN-YT"}
    inp = DistrictInput(SAMPLE_OFFICE, register, 2020, subs, [u for u in register if u.code not in received],
                        [register.get("TN-YT")], prev_totals={"vb_trien_khai": 12, "tcd_thuong_xuyen_luot": 300})
    return district_report(form, inp)


def test_district_coverage_and_lists(district):
    text = body(district)
    assert ("Tổng số cơ quan, đơn vị thực hiện báo cáo: 25 đơn vị; đã gửi báo cáo 4/25 đơn vị (đạt 16%), gồm: khối "
            "phòng, ban 3/13; khối xã, thị trấn 1/12.") in text
    assert "Còn 21 đơn vị chưa gửi báo cáo:" in text and "- Ủy ban nhân dân xã Phú Thành A." in text
    assert "- Phòng Y tế, số liệu chưa được tính vào tổng hợp." in text
    assert district.agency == "PHÒNG NỘI VỤ" and district.number == "Số:     /BC-PNV"
    assert district.subject == "Tổng hợp kết quả thực hiện “Năm Dân vận chính quyền” năm 2020 trên địa bàn huyện Tam Nông"
    assert district.signer.lines == ("TRƯỞNG PHÒNG",) and district.signer.name == "Nguyễn Văn Minh"
    assert district.recipients[-1] == "Lưu: VT, PNV."


def test_district_totals_respect_summable(form, district):
    text = body(district)
    assert "- Số văn bản lãnh đạo, chỉ đạo, kế hoạch đã ban hành: 15 văn bản, tăng 03 văn bản (25%) so với năm 2019." in text
    assert "tiếp công dân thường xuyên được 300 lượt (không thay đổi so với năm 2019)" in text
    assert not form.fields["don_tiep_nhan"].summable and "205 đơn" not in text  # 182 + 23 is never added up
    assert "không cộng dồn giữa các đơn vị" in text
    assert "- Văn phòng Hội đồng nhân dân và Ủy ban nhân dân huyện Tam Nông: tham mưu cho lãnh đạo" in text
    assert "tiếp nhận 182 đơn (giảm 24 đơn so với năm 2019)" in text
    assert "- Ủy ban nhân dân thị trấn Tràm Chim: lãnh đạo Ủy ban nhân dân thị trấn tiếp dân định kỳ" in text
    assert "tiếp nhận 23 đơn (giảm 07 đơn so với năm 2019), trong đó, tranh chấp đất đai: 20 đơn, khác 03 đơn" in text
    assert "giải quyết đúng hạn (kể cả trước hạn) 23 hồ sơ, đạt 88,46% số hồ sơ đã giải quyết" in text
    assert "Có 2/3 đơn vị đã xây dựng và niêm yết công khai lịch tiếp công dân; chưa thực hiện: Phòng Tư pháp." in text
    assert not _ZERO_COUNT.search(text)


def test_district_models_and_grades(district):
    text = body(district)
    assert ("Toàn huyện Tam Nông có 02 mô hình “Dân vận khéo” tại 2/3 cơ quan, đơn vị; theo lĩnh vực: văn hóa - xã "
            "hội 01 mô hình, kinh tế 01 mô hình:") in text
    assert ("- Ủy ban nhân dân thị trấn Tràm Chim: Dân vận khéo trong xây dựng nông thôn mới (lĩnh vực kinh tế, chưa "
            "được công nhận).") in text
    assert "THANG ĐIỂM MẪU" in text  # the rubric is a labelled sample
    assert ("- Tốt (từ 90 điểm trở lên): 02 đơn vị (Văn phòng Hội đồng nhân dân và Ủy ban nhân dân huyện Tam Nông, "
            "Ủy ban nhân dân thị trấn Tràm Chim);") in text
    assert "- Khá (từ 70 đến dưới 90 điểm): 01 đơn vị (Phòng Tư pháp);" in text
    assert "- Yếu (dưới 50 điểm): không có." in text
    headings = [b.text for b in district.blocks if b.kind == BlockKind.HEADING]
    assert headings[:3] == ["I. TÌNH HÌNH GỬI BÁO CÁO", "II. KẾT QUẢ THỰC HIỆN CÔNG TÁC DÂN VẬN CHÍNH QUYỀN",
                            "1. Công tác triển khai, quán triệt thực hiện các văn bản lãnh đạo, chỉ đạo, hướng dẫn về "
                            "công tác dân vận"]


# ------------------------------------------------------------------ wording is data

def test_templates_are_editable_and_errors_name_the_file(form, register, tmp_path):
    folder = tmp_path / "narrative"
    shutil.copytree(form.folder / "narrative", folder)
    macros = folder / "macros.md.j2"
    text = macros.read_text(encoding="utf-8")
    macros.write_text(text.replace("Trong năm {{ year }}, {{ cau }}.", "Năm {{ year }}: {{ cau }}."), encoding="utf-8")
    report = seed_report(form, register, options=NarrativeOptions(template_dir=folder))
    assert SEED_2_4.replace("Trong năm 2020, ", "Năm 2020: ") in report.body_texts()
    (folder / "don_vi.md.j2").write_text("{% if %}\n", encoding="utf-8")
    with pytest.raises(NarrativeError, match=r"don_vi\.md\.j2, dòng 1"):
        seed_report(form, register, options=NarrativeOptions(template_dir=folder))
    (folder / "don_vi.md.j2").write_text("{{ d.nd_1_lanh_dao|title }}\n", encoding="utf-8")
    with pytest.raises(NarrativeError, match="title"):
        seed_report(form, register, options=NarrativeOptions(template_dir=folder))


def test_narrative_templates_ship_in_the_wheel(form):
    root = Path(__file__).resolve().parent.parent
    config = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))
    patterns = config["tool"]["setuptools"]["package-data"]["danvan_xl.forms"]
    source = root / config["tool"]["setuptools"]["package-dir"]["danvan_xl.forms"]
    shipped = {p for pattern in patterns for p in source.glob(pattern) if p.is_file()}
    templates = set((source / form.id / "narrative").glob("*.j2"))
    assert {"don_vi.md.j2", "tong_hop.md.j2", "macros.md.j2", "macros_tong_hop.md.j2"} <= {t.name for t in templates}
    assert templates <= shipped


# ------------------------------------------------------------------ what users see: real LibreOffice

@pytest.mark.libreoffice
def test_libreoffice_converts_to_pdf(soffice, form, register, district, tmp_path):
    unit = write_docx(seed_report(form, register), tmp_path / "don_vi.docx")
    summary = write_docx(district, tmp_path / "tong_hop.docx")
    pdfs = soffice_convert(soffice, [unit, summary], "pdf", tmp_path / "pdf")
    for pdf in pdfs:
        assert pdf.read_bytes().startswith(b"%PDF") and pdf.stat().st_size > 10_000
    if shutil.which("pdftotext"):
        text = subprocess.run(["pdftotext", "-layout", str(pdfs[0]), "-"], capture_output=True, text=True, check=True).stdout
        assert "CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM" in text and "153/182 đơn" in text
        pages = text.split("\f")
        assert pages[1].split()[0] == "2" and pages[0].split()[0] != "1"  # numbered from page 2, at the top


def _md_reference(text: str, *, start: bool = True) -> str:
    """The Markdown escaping as first written (template replacements, ``sub`` with ``count=1``)."""
    from danvan_xl.narrative import _MD_ENTITY, _MD_INLINE, _MD_LINE_START

    text = _MD_ENTITY.sub(r"\\&", _MD_INLINE.sub(r"\\\1", text))
    if start:
        text = _MD_LINE_START.sub(lambda m: m.group(0) + "\\" if m.group(0)[0].isdigit() else "\\" + m.group(0),
                                  text, count=1)
    return text


@given(st.text(alphabet="#-+*=>|~0123456789.)&;amp\\`_[]< \nxĐ", max_size=24), st.booleans())
def test_markdown_escaping_matches_the_first_version(text, start):
    from danvan_xl.narrative import _md

    assert _md(text, start=start) == _md_reference(text, start=start)
