"""The rule language and DHIS2 semantics (anchors.md §3.1), and the bundled form's rules."""

from __future__ import annotations

import pytest

from danvan_xl import expr, rules
from danvan_xl.expr import NA, Env, ExprSyntaxError, ExprTypeError, Symbol
from danvan_xl.rules import Operator, Outcome, Rule, Side, Strategy
from danvan_xl.vocabulary import Severity

SYMBOLS = {"a": Symbol(expr.NUM), "b": Symbol(expr.NUM), "c": Symbol(expr.NUM), "t": Symbol(expr.TEXT),
           "models": Symbol(expr.TABLE), "k": Symbol(expr.NUM, 0.5)}


def side(text: str, strategy: Strategy = Strategy.SKIP_IF_ANY) -> Side:
    node = expr.parse(text)
    kind = expr.check(node, SYMBOLS)
    return Side(text, node, strategy, tuple(expr.items(node, SYMBOLS)), kind)


def rule(left: str, op: Operator, right: str, ls: Strategy = Strategy.SKIP_IF_ANY,
         rs: Strategy = Strategy.SKIP_IF_ANY) -> Rule:
    return Rule("r", "r", side(left, ls), op, side(right, rs), Severity.ERROR, "{left} {right}")


def outcome(r: Rule, **values) -> Outcome:
    return rules.evaluate(r, Env(values, constants={"k": 0.5})).outcome


# ------------------------------------------------------------------ parsing and checking

@pytest.mark.parametrize(("text", "value"), [
    ("1 + 2 * 3", 7), ("(1 + 2) * 3", 9), ("-2 + 5", 3), ("10 / 4", 2.5), ("7 − 2", 5), ("3 × 4", 12),
    ("12 ÷ 4", 3), ("sum(1, 2, 3)", 6), ("min(4, 2, 9)", 2), ("max(4, 2, 9)", 9), ("abs(-3)", 3),
    ("if(1 < 2, 10, 20)", 10), ("1 <= 1 and not (2 < 1)", True), ("1 > 2 or 3 ≥ 3", True), ("2 ≠ 2", False),
])
def test_arithmetic_and_logic(text, value):
    node = expr.parse(text)
    assert expr.evaluate(node, Env({})) == value


@pytest.mark.parametrize(("text", "message", "pos"), [
    ("a +", "thiếu toán hạng", 3), ("a + (b", "cần ')'", 6), ("a $ b", "ký tự không hợp lệ", 2),
    ("1 < 2 < 3", "không được nối hai phép so sánh", 6),
])
def test_syntax_errors_carry_a_position(text, message, pos):
    with pytest.raises(ExprSyntaxError) as info:
        expr.check(expr.parse(text), SYMBOLS)
    assert message in str(info.value) and info.value.pos == pos


@pytest.mark.parametrize(("text", "message"), [
    ("a + t", "vế phải của '+' phải là số, nhưng là chữ"), ("d + 1", "không có trường hay hằng số 'd'"),
    ("t < \"x\"", "phép '<' chỉ dùng cho số"), ("models + 1", "'models' là bảng"), ("rows(a)", "rows() nhận tên một bảng"),
    ("summ(a)", "không có hàm 'summ' — có phải 'sum'?"), ("if(a, 1, 2)", "điều kiện của if() phải là đúng/sai"),
    ("prev(t)", "prev() chỉ dùng cho trường số"), ("abs(1, 2)", "abs() cần đúng 1 đối số"),
])
def test_type_errors(text, message):
    with pytest.raises(ExprTypeError) as info:
        expr.check(expr.parse(text), SYMBOLS)
    assert message in str(info.value)


def test_no_eval_anywhere():
    with pytest.raises(ExprSyntaxError):
        expr.parse("__import__('os').system('true')")


def test_items_count_fields_not_constants_or_tables():
    s = side("a + k * b + rows(models) + prev(a)")
    assert [(i.field, i.prev) for i in s.items] == [("a", False), ("b", False), ("a", True)]


# ------------------------------------------------------------------ DHIS2 missing-value truth table

BREAKDOWN = ("a + b", "c")  # parts = total
ALL_BLANK: dict = {}
PARTS_ONLY = {"a": 3, "b": 4}
TOTAL_ONLY = {"c": 7}


@pytest.mark.parametrize(("ls", "rs", "expected"), [
    # anchors.md §3.1 "Example mapping": all blank / breakdown filled total blank / total filled breakdown blank
    (Strategy.NEVER_SKIP, Strategy.NEVER_SKIP, (Outcome.PASSED, Outcome.VIOLATED, Outcome.VIOLATED)),
    (Strategy.SKIP_IF_ALL, Strategy.NEVER_SKIP, (Outcome.SKIPPED, Outcome.VIOLATED, Outcome.SKIPPED)),
    (Strategy.SKIP_IF_ANY, Strategy.SKIP_IF_ANY, (Outcome.SKIPPED, Outcome.SKIPPED, Outcome.SKIPPED)),
])
def test_dhis2_truth_table_for_breakdown_equals_total(ls, rs, expected):
    r = rule(BREAKDOWN[0], Operator.EQ, BREAKDOWN[1], ls, rs)
    assert (outcome(r, **ALL_BLANK), outcome(r, **PARTS_ONLY), outcome(r, **TOTAL_ONLY)) == expected


def test_skip_if_any_vs_skip_if_all_with_one_item_missing():
    any_ = rule("a + b", Operator.EQ, "c", Strategy.SKIP_IF_ANY, Strategy.NEVER_SKIP)
    all_ = rule("a + b", Operator.EQ, "c", Strategy.SKIP_IF_ALL, Strategy.NEVER_SKIP)
    assert outcome(any_, a=3, c=3) == Outcome.SKIPPED
    assert outcome(all_, a=3, c=3) == Outcome.PASSED  # the missing item counts as 0
    assert outcome(all_, a=3, c=4) == Outcome.VIOLATED


def test_a_skip_on_either_side_skips_the_rule_even_if_the_other_is_never_skip():
    r = rule("a", Operator.GE, "b", Strategy.NEVER_SKIP, Strategy.SKIP_IF_ANY)
    assert outcome(r, a=1) == Outcome.SKIPPED


@pytest.mark.parametrize(("values", "compulsory", "exclusive"), [
    ({}, Outcome.PASSED, Outcome.PASSED),
    ({"a": 1}, Outcome.VIOLATED, Outcome.PASSED),
    ({"b": 1}, Outcome.VIOLATED, Outcome.PASSED),
    ({"a": 1, "b": 2}, Outcome.PASSED, Outcome.VIOLATED),
])
def test_pair_operators(values, compulsory, exclusive):
    assert outcome(rule("a", Operator.COMPULSORY_PAIR, "b"), **values) == compulsory
    assert outcome(rule("a", Operator.EXCLUSIVE_PAIR, "b"), **values) == exclusive


def test_not_applicable_is_present_and_counts_as_zero():
    r = rule("a + b", Operator.EQ, "c")
    assert outcome(r, a=NA, b=7, c=7) == Outcome.PASSED
    assert rules.evaluate(rule("isnull(a)", Operator.EQ, "0"), Env({"a": NA})).left is False


def test_zero_is_a_value_not_missing():
    r = rule("a", Operator.GE, "b")
    assert outcome(r, a=0, b=0) == Outcome.PASSED
    assert outcome(r, a=0, b=1) == Outcome.VIOLATED


def test_division_by_zero_is_undetermined_not_a_crash():
    assert outcome(rule("a / b", Operator.EQ, "1"), a=1, b=0) == Outcome.UNDETERMINED


def test_text_comparison_ignores_case_like_excel():
    r = rule("t", Operator.EQ, '"có"')
    assert outcome(r, t="Có") == Outcome.PASSED


def test_equality_is_approximate_like_libreoffice():
    r = rule("a + b", Operator.EQ, "c")
    assert outcome(r, a=0.1, b=0.2, c=0.3) == Outcome.PASSED


# ------------------------------------------------------------------ the bundled form's rules

def _bundled(form, rule_id):
    return next(r for r in form.rules if r.id == rule_id)


def test_seed_figures_satisfy_the_identities(form):
    from helpers import SEED_VALUES

    env = Env(dict(SEED_VALUES), rows={"dvk_mo_hinh": 1}, constants=form.constants)
    results = {r.id: rules.evaluate(r, env).outcome for r in form.rules}
    for rid in ("don_theo_noi_dung", "don_theo_loai", "don_xu_ly", "don_dang_giai_quyet", "tcd_dinh_ky_nguoi",
                "dvk_so_mo_hinh", "bien_dong_don", "don_qua_han", "lich_tiep_cong_khai", "tcd_dinh_ky_cap"):
        assert results[rid] == Outcome.PASSED, rid
    assert results["tcd_thuong_xuyen_nguoi"] == Outcome.SKIPPED  # the seed reports no người count


@pytest.mark.parametrize(("change", "rule_id"), [
    ({"don_khac": 50}, "don_theo_noi_dung"), ({"don_kien_nghi": 180}, "don_theo_loai"),
    ({"don_da_chuyen": 150}, "don_xu_ly"), ({"don_con_han": 20}, "don_dang_giai_quyet"),
    ({"tcd_dinh_ky_nguoi": 50}, "tcd_dinh_ky_nguoi"), ({"dvk_so_mo_hinh": 2}, "dvk_so_mo_hinh"),
    ({"don_nam_truoc": 500}, "bien_dong_don"),
])
def test_each_identity_catches_its_mismatch(form, change, rule_id):
    from helpers import SEED_VALUES

    env = Env(dict(SEED_VALUES) | change, rows={"dvk_mo_hinh": 1}, constants=form.constants)
    assert rules.evaluate(_bundled(form, rule_id), env).outcome == Outcome.VIOLATED


def test_rubric_scores_are_checked_against_each_maximum(form):
    first = form.rubric.criteria[0]
    r = _bundled(form, f"diem_{first.id}_toi_da")
    assert rules.evaluate(r, Env({first.score_field: first.max + 1})).outcome == Outcome.VIOLATED
    assert rules.evaluate(r, Env({first.score_field: first.max})).outcome == Outcome.PASSED


def test_year_over_year_warning_reads_last_years_value(form):
    r = _bundled(form, "bien_dong_tiep_dan")
    assert r.severity == Severity.WARNING and r.justifiable
    c = form.constants
    assert rules.evaluate(r, Env({"tcd_dinh_ky_luot": 53}, {"tcd_dinh_ky_luot": 20}, constants=c)).outcome == Outcome.VIOLATED
    assert rules.evaluate(r, Env({"tcd_dinh_ky_luot": 53}, {"tcd_dinh_ky_luot": 50}, constants=c)).outcome == Outcome.PASSED
    assert rules.evaluate(r, Env({"tcd_dinh_ky_luot": 53}, {}, constants=c)).outcome == Outcome.SKIPPED


def test_commune_minimum_applies_to_communes_only(form, register):
    r = _bundled(form, "tcd_toi_thieu_xa")
    assert r.applies(register.get("30025").kind) and not r.applies(register.get("TN-VP").kind)


def test_every_operator_compiles_to_excel(form):
    from danvan_xl.template_writer import _compiled_rules

    compiled = _compiled_rules(form)
    assert set(compiled) == {r.id for r in form.rules}
    pair = compiled["tcd_dinh_ky_cap"].violation
    assert "<>" in pair and "TiepDan!$D$9" in pair
