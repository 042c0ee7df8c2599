"""The form definition: the bundled form's contract and the loader's error reporting."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from danvan_xl.errors import FormError
from danvan_xl.form import load_form
from danvan_xl.vocabulary import Kind

FIXED_IDS = [
    "tcd_dinh_ky_luot", "tcd_dinh_ky_nguoi", "tcd_thuong_xuyen_luot", "tcd_thuong_xuyen_nguoi",
    "don_tiep_nhan", "don_nam_truoc", "don_btht_tdc", "don_tranh_chap_dat", "don_moi_truong", "don_khac",
    "don_khieu_nai", "don_to_cao", "don_kien_nghi", "vu_viec_dong_nguoi", "don_da_chuyen",
    "don_dang_giai_quyet", "don_con_han", "don_qua_han", "dvk_so_mo_hinh", "nguoi_ky_chuc_vu", "nguoi_ky_ho_ten",
]


def test_bundled_form_has_the_fixed_field_ids(form):
    missing = [f for f in FIXED_IDS if f not in form.fields]
    assert missing == []
    assert form.fields["don_tiep_nhan"].kind == Kind.COUNT
    assert form.fields["don_tiep_nhan"].unit == "đơn"
    assert form.fields["tcd_dinh_ky_luot"].unit == "lượt"


def test_bundled_form_uses_every_field_kind(form):
    kinds = {f.kind for f in form.fields.values()}
    assert kinds == set(Kind)
    table = form.fields["dvk_mo_hinh"]
    assert [c.id for c in table.columns][:3] == ["ten_mo_hinh", "linh_vuc", "cap_cong_nhan"]
    assert table.columns[1].choices == "linh_vuc_dvk" and table.columns[2].choices == "cap_cong_nhan"


def test_numbers_allow_the_not_applicable_state(form):
    assert form.fields["don_moi_truong"].na is True
    assert form.fields["cbccvc_tong"].na is False  # explicitly excluded in the form


def test_sections_follow_the_seed_outline_without_section_ii(form):
    numbers = [s.number for s in form.sections if s.number]
    assert numbers == ["I", "1", "2", "2.1", "2.2", "2.3", "2.4", "2.5", "2.6", "2.7", "III", "1", "2"]


def test_sample_rubric_is_labelled_and_derives_total_and_grade(form):
    rubric = form.rubric
    assert rubric is not None and rubric.sample
    assert "MẪU" in rubric.note
    assert rubric.max_total == 100
    assert rubric.grade(95) == "Tốt" and rubric.grade(70) == "Khá" and rubric.grade(10) == "Yếu"
    assert form.fields[rubric.total_field].computed and not form.fields[rubric.total_field].is_input


def test_reporting_period_is_the_decree_09_window(form):
    import datetime as dt

    assert form.period(2020) == (dt.date(2019, 12, 15), dt.date(2020, 12, 14))


def test_definition_hash_is_stable(form):
    again = load_form("nam-dan-van-chinh-quyen")
    assert again.definition_hash == form.definition_hash and len(form.definition_hash) == 64


BROKEN = """\
form:
  id: thu-nghiem
  version: "1"
  title: Thử nghiệm
  colour: blue
sheets:
  - {name: SoLieu, title: Số liệu}
choices:
  linh_vuc: [A, B]
sections:
  - id: s1
    title: Mục một
    sheet: SoLieu
    fields:
      - {id: don_tiep_nhan, kind: count, unit: đơn, label: Đơn}
      - {id: don_tiep_nhan, kind: count, unit: đơn, label: Trùng}
      - {id: loai, kind: choice, choices: linh_vuk, label: Loại}
      - {id: so_luong, kind: cout, label: Sai loại}
      - {id: ghi_chu, kind: text, labl: Nhầm khoá}
rules:
  - id: r1
    left: don_tiep_nhn
    op: equal_to
    right: "0"
    message: Sai tên trường
  - id: r2
    left: don_tiep_nhan +
    op: equal_to
    right: "1"
    message: Sai cú pháp
  - id: r3
    left: loai + 1
    op: bang
    right: "1"
    message: Sai kiểu
"""


def _write_form(tmp_path: Path, text: str) -> Path:
    folder = tmp_path / "thu-nghiem"
    folder.mkdir()
    (folder / "form.yaml").write_text(text, encoding="utf-8")
    return folder


def test_broken_definition_reports_every_problem_with_line_and_suggestion(tmp_path):
    with pytest.raises(FormError) as info:
        load_form(_write_form(tmp_path, BROKEN))
    problems = info.value.problems
    text = "\n".join(problems)
    assert len(problems) >= 8, text
    assert "dòng 5 [form.colour]: khoá 'colour' không hợp lệ" in text
    assert "mã trường 'don_tiep_nhan' bị trùng" in text
    assert "không có danh mục 'linh_vuk' — có phải 'linh_vuc'?" in text
    assert "loại trường 'cout' không hợp lệ — có phải 'count'?" in text
    assert "khoá 'labl' không hợp lệ — có phải 'label'?" in text
    assert "không có trường hay hằng số 'don_tiep_nhn' — có phải 'don_tiep_nhan'?" in text
    assert "biểu thức 'don_tiep_nhan +'" in text and "thiếu toán hạng" in text
    assert "phép so sánh 'bang' không hợp lệ" in text
    assert "vế trái của '+' phải là số, nhưng là chữ" in text
    # every message names its line
    assert all(p.startswith("dòng ") for p in problems), text


def test_yaml_syntax_error_names_line(tmp_path):
    with pytest.raises(FormError) as info:
        load_form(_write_form(tmp_path, "form:\n  id: [x\n"))
    assert "lỗi cú pháp YAML ở dòng" in str(info.value)


def test_duplicate_yaml_keys_are_reported(tmp_path):
    text = BROKEN.replace("  colour: blue\n", "  title: Lặp\n")
    with pytest.raises(FormError) as info:
        load_form(_write_form(tmp_path, text))
    assert "khoá 'title' bị lặp lại" in str(info.value)


def test_field_id_that_looks_like_a_cell_is_refused(tmp_path):
    text = BROKEN.split("rules:")[0].replace("{id: ghi_chu, kind: text, labl: Nhầm khoá}",
                                              "{id: abc1, kind: text, label: Ô}")
    with pytest.raises(FormError) as info:
        load_form(_write_form(tmp_path, text))
    assert "'abc1' trùng dạng địa chỉ ô Excel" in str(info.value)


def test_a_copied_bundled_form_loads_from_a_folder(tmp_path, form):
    dest = tmp_path / "copy"
    shutil.copytree(form.folder, dest)
    again = load_form(dest)
    assert again.definition_hash == form.definition_hash


def test_unknown_form_id_is_a_clear_error():
    with pytest.raises(FormError) as info:
        load_form("khong-co-bieu-mau-nay")
    assert "không tìm thấy biểu mẫu" in str(info.value)
