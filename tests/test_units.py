"""The units register of the sample district and its error reporting."""

from __future__ import annotations

import pytest

from danvan_xl.errors import RegisterError
from danvan_xl.units import parse_register


def test_sample_district_has_25_units_in_official_order(register):
    codes = [u.code for u in register]
    assert len(codes) == 25
    assert codes[0] == "TN-VP" and codes[13] == "30001" and codes[-1] == "30034"
    kinds = [u.kind for u in register]
    assert kinds.count("phong") + kinds.count("dvsn") == 13
    assert kinds.count("thi_tran") == 1 and kinds.count("xa") == 11


def test_gso_spellings_are_kept_verbatim(register):
    names = {u.code: u.name for u in register}
    assert names["30004"].endswith("xã Hoà Bình")  # GSO: old-style tone placement
    assert names["30019"].endswith("xã An Hòa")  # GSO: new-style, same district
    assert register.by_name("Ủy ban nhân dân xã Hòa Bình").code == "30004"  # matching folds both styles


def test_every_unit_has_an_email_and_a_head_title(register):
    assert all(u.email and u.head_title for u in register)
    assert register.get("TN-TTr").abbr == "TTr"  # ký hiệu keeps its own case


def test_bad_rows_are_all_reported_with_row_numbers():
    text = ("code,name,kind,order\n"
            "A,Đơn vị A,phong,1\n"
            "A,Đơn vị B,phong,2\n"
            "C,,xa,3\n"
            "D,Đơn vị D,huyen,4\n"
            "E,Đơn vị E,xa,năm\n")
    with pytest.raises(RegisterError) as info:
        parse_register(text, "units.csv")
    problems = info.value.problems
    assert "dòng 3: mã 'A' trùng với dòng 2" in problems
    assert "dòng 4: thiếu tên đơn vị (cột name)" in problems
    assert any(p.startswith("dòng 5: loại đơn vị 'huyen'") for p in problems)
    assert any(p.startswith("dòng 6: thứ tự 'năm'") for p in problems)


def test_missing_columns_are_reported():
    with pytest.raises(RegisterError) as info:
        parse_register("ma,ten\nA,B\n")
    assert "thiếu cột code, name, kind, order" in str(info.value)
