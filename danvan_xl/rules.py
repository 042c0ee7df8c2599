"""Validation rules with DHIS2 semantics (anchors.md §3.1), evaluated in Python or compiled to Excel.

A rule compares a left and a right side with one of the eight DHIS2 operators. Each side has a
missing-value strategy:

* ``SKIP_IF_ANY_VALUE_MISSING`` — the side is NULL if any item it reads is blank;
* ``SKIP_IF_ALL_VALUES_MISSING`` — NULL only if every item is blank (blank items count as 0);
* ``NEVER_SKIP`` — never NULL; blank items count as 0.

``compulsory_pair`` is violated when exactly one side is NULL, ``exclusive_pair`` when both are
present. For the other operators a NULL side skips the whole rule, even if the other side is
``NEVER_SKIP`` (the DHIS2 behaviour). Both compilations are generated from the same AST.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from . import expr
from .vocabulary import Severity


class Strategy(StrEnum):
    SKIP_IF_ANY = "SKIP_IF_ANY_VALUE_MISSING"
    SKIP_IF_ALL = "SKIP_IF_ALL_VALUES_MISSING"
    NEVER_SKIP = "NEVER_SKIP"


class Operator(StrEnum):
    EQ = "equal_to"
    NE = "not_equal_to"
    GT = "greater_than"
    GE = "greater_than_or_equal_to"
    LT = "less_than"
    LE = "less_than_or_equal_to"
    COMPULSORY_PAIR = "compulsory_pair"
    EXCLUSIVE_PAIR = "exclusive_pair"


OPERATOR_ALIASES = {
    "=": Operator.EQ, "==": Operator.EQ, "!=": Operator.NE, "<>": Operator.NE, ">": Operator.GT,
    ">=": Operator.GE, "<": Operator.LT, "<=": Operator.LE, "≥": Operator.GE, "≤": Operator.LE,
    "≠": Operator.NE,
}
_SYMBOL = {
    Operator.EQ: "=", Operator.NE: "!=", Operator.GT: ">", Operator.GE: ">=",
    Operator.LT: "<", Operator.LE: "<=",
}
OPERATOR_VI = {
    Operator.EQ: "bằng", Operator.NE: "khác", Operator.GT: "lớn hơn", Operator.GE: "không nhỏ hơn",
    Operator.LT: "nhỏ hơn", Operator.LE: "không lớn hơn",
    Operator.COMPULSORY_PAIR: "phải cùng có số liệu với", Operator.EXCLUSIVE_PAIR: "không được cùng có với",
}


class Outcome(StrEnum):
    PASSED = "passed"
    VIOLATED = "violated"
    SKIPPED = "skipped"  # a side is missing under its strategy
    UNDETERMINED = "undetermined"  # division by zero


OUTCOME_VI = {
    Outcome.PASSED: "Đạt",
    Outcome.VIOLATED: "Chưa đạt",
    Outcome.SKIPPED: "Chưa đủ số liệu",
    Outcome.UNDETERMINED: "Không xác định",
}


@dataclass(frozen=True, slots=True)
class Side:
    text: str
    node: expr.Node
    strategy: Strategy
    items: tuple[expr.Item, ...]
    type: str


@dataclass(frozen=True)
class Rule:
    id: str
    title: str
    left: Side
    op: Operator
    right: Side
    severity: Severity
    message: str
    applies_to: tuple[str, ...] = ()  # unit kinds; empty = all
    justifiable: bool = False  # a unit may accept a warning by writing a justification
    generated: bool = False  # derived from the rubric, not written in the form file
    fields: tuple[str, ...] = field(default=())  # fields the rule reads (for highlighting)

    def applies(self, unit_kind: str) -> bool:
        return not self.applies_to or unit_kind in self.applies_to


@dataclass(frozen=True, slots=True)
class Result:
    rule: Rule
    outcome: Outcome
    left: Any
    right: Any


def side_is_null(side: Side, env: expr.Env) -> bool:
    """Whether a side is NULL under its missing-value strategy (DHIS2 ``isViolation`` prologue)."""
    found = sum(1 for item in side.items if expr.is_present(env.item(item)))
    n = len(side.items)
    if side.strategy == Strategy.SKIP_IF_ANY and found < n:
        return True
    return side.strategy in (Strategy.SKIP_IF_ANY, Strategy.SKIP_IF_ALL) and n > 0 and found == 0


def _value(side: Side, env: expr.Env) -> Any:
    try:
        return expr.evaluate(side.node, env)
    except expr.Undefined:
        return None


def evaluate(rule: Rule, env: expr.Env) -> Result:
    """Evaluate one rule (the DHIS2 ``isViolation`` algorithm)."""
    lnull, rnull = side_is_null(rule.left, env), side_is_null(rule.right, env)
    if rule.op in (Operator.COMPULSORY_PAIR, Operator.EXCLUSIVE_PAIR):
        # Pair rules look only at presence; the values are for the message.
        left = None if lnull else _value(rule.left, env)
        right = None if rnull else _value(rule.right, env)
        violated = (lnull != rnull) if rule.op == Operator.COMPULSORY_PAIR else (not lnull and not rnull)
        return Result(rule, Outcome.VIOLATED if violated else Outcome.PASSED, left, right)
    if lnull or rnull:
        return Result(rule, Outcome.SKIPPED, None if lnull else _value(rule.left, env),
                      None if rnull else _value(rule.right, env))
    try:
        lval, rval = expr.evaluate(rule.left.node, env), expr.evaluate(rule.right.node, env)
        ok = expr.apply_binary(_SYMBOL[rule.op], lval, rval)
    except expr.Undefined:
        return Result(rule, Outcome.UNDETERMINED, None, None)
    return Result(rule, Outcome.PASSED if ok else Outcome.VIOLATED, lval, rval)


# ------------------------------------------------------------------ Excel

@dataclass(frozen=True, slots=True)
class ExcelRule:
    """Formulas (without '=') for one rule in a template."""

    skip: str  # TRUE when the rule is skipped for missing data
    violation: str  # TRUE when violated (errors count as not violated)
    status: str  # "Đạt" / "Chưa đạt" / "Chưa đủ số liệu" / "Không xác định"
    left: str
    right: str


def _skip_excel(side: Side, refs: expr.CellRefs) -> str:
    n = len(side.items)
    if side.strategy == Strategy.NEVER_SKIP or n == 0:
        return "FALSE"
    present = "+".join(expr.present_excel(i, refs) for i in side.items)
    if side.strategy == Strategy.SKIP_IF_ANY:
        return f"(({present})<{n})"
    return f"(({present})=0)"


def to_excel(rule: Rule, refs: expr.CellRefs) -> ExcelRule:
    lskip, rskip = _skip_excel(rule.left, refs), _skip_excel(rule.right, refs)
    lv, rv = expr.to_excel(rule.left.node, refs), expr.to_excel(rule.right.node, refs)
    ok, bad = '"' + OUTCOME_VI[Outcome.PASSED] + '"', '"' + OUTCOME_VI[Outcome.VIOLATED] + '"'
    if rule.op == Operator.COMPULSORY_PAIR:
        violation = f"({lskip}<>{rskip})"
        status = f"IF({violation},{bad},{ok})"
        skip = "FALSE"
    elif rule.op == Operator.EXCLUSIVE_PAIR:
        violation = f"AND(NOT({lskip}),NOT({rskip}))"
        status = f"IF({violation},{bad},{ok})"
        skip = "FALSE"
    else:
        op = {"!=": "<>"}.get(_SYMBOL[rule.op], _SYMBOL[rule.op])
        # Equality and ordering mirror expr: both sides evaluated, errors mean "undetermined".
        cmp = f"({lv}{op}{rv})"
        skip = f"OR({lskip},{rskip})"
        violation = f"IFERROR(AND(NOT({skip}),NOT({cmp})),FALSE)"
        undetermined = '"' + OUTCOME_VI[Outcome.UNDETERMINED] + '"'
        skipped = '"' + OUTCOME_VI[Outcome.SKIPPED] + '"'
        status = f"IF({skip},{skipped},IFERROR(IF({cmp},{ok},{bad}),{undetermined}))"
    return ExcelRule(skip=skip, violation=violation, status=status, left=lv, right=rv)
