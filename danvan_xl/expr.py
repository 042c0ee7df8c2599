"""The rule expression language: parsed without ``eval``, checked, evaluated, compiled to Excel.

Grammar (lowest precedence first)::

    expr    := or
    or      := and ("or" and)*
    and     := not ("and" not)*
    not     := "not" not | compare
    compare := sum (("=" | "==" | "!=" | "<>" | "≠" | "<" | "<=" | "≤" | ">" | ">=" | "≥") sum)?
    sum     := product (("+" | "-" | "−") product)*
    product := unary (("*" | "×" | "/" | "÷") unary)*
    unary   := ("-" | "−") unary | atom
    atom    := NUMBER | STRING | "true" | "false" | NAME | NAME "(" args ")" | "(" expr ")"

Names are field ids or constants of the form. Functions: ``sum``, ``min``, ``max``, ``abs``,
``if``, ``isnull``, ``rows`` (filled rows of a repeating table) and ``prev`` (last year's value).

Evaluation follows DHIS2 for missing items: a blank item contributes 0 to arithmetic once the
side is evaluated (the skip decision belongs to :mod:`danvan_xl.rules`). "Không phát sinh" is a
present value that contributes 0. Division by zero makes the expression undefined
(:class:`Undefined`), which the rule reports as "cannot be determined" — the Excel compilation
wraps the same in ``IFERROR``. Arithmetic and comparisons mirror LibreOffice's approximate
equality so the template's live checks and the collector agree (tested against real LibreOffice).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from .textnorm import nfc

NUM, TEXT, BOOL, TABLE = "number", "text", "bool", "table"


class ExprSyntaxError(ValueError):
    def __init__(self, message: str, pos: int) -> None:
        super().__init__(message)
        self.pos = pos


class Undefined(ArithmeticError):
    """The expression has no value (division by zero)."""


# ------------------------------------------------------------------ AST

@dataclass(frozen=True, slots=True)
class Node:
    pos: int


@dataclass(frozen=True, slots=True)
class Num(Node):
    value: float


@dataclass(frozen=True, slots=True)
class Str(Node):
    value: str


@dataclass(frozen=True, slots=True)
class Bool(Node):
    value: bool


@dataclass(frozen=True, slots=True)
class Name(Node):
    name: str


@dataclass(frozen=True, slots=True)
class Call(Node):
    func: str
    args: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Unary(Node):
    op: str  # "-" or "not"
    operand: Node


@dataclass(frozen=True, slots=True)
class Binary(Node):
    op: str  # + - * / = != < <= > >= and or
    left: Node
    right: Node


# ------------------------------------------------------------------ tokens

_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<num>\d+(?:\.\d+)?)
  | (?P<str>"[^"]*"|'[^']*'|“[^”]*”)
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op><=|>=|==|!=|<>|[-+*/()=<>,−×÷≤≥≠])
    """,
    re.VERBOSE,
)
_OP_ALIASES = {"−": "-", "×": "*", "÷": "/", "≤": "<=", "≥": ">=", "≠": "!=", "<>": "!=", "==": "="}
KEYWORDS = {"and", "or", "not", "true", "false"}
FUNCTIONS = {"sum", "min", "max", "abs", "if", "isnull", "rows", "prev"}


@dataclass(frozen=True, slots=True)
class Token:
    kind: str
    text: str
    pos: int


def tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m:
            raise ExprSyntaxError(f"ký tự không hợp lệ '{text[pos]}'", pos)
        kind = m.lastgroup or ""
        if kind != "ws":
            value = m.group()
            if kind == "op":
                value = _OP_ALIASES.get(value, value)
            elif kind == "name" and value.lower() in KEYWORDS:
                kind, value = "kw", value.lower()
            tokens.append(Token(kind, value, pos))
        pos = m.end()
    tokens.append(Token("end", "", len(text)))
    return tokens


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = tokenize(text)
        self.i = 0

    @property
    def tok(self) -> Token:
        return self.tokens[self.i]

    def take(self, kind: str, text: str | None = None) -> Token | None:
        t = self.tok
        if t.kind == kind and (text is None or t.text == text):
            self.i += 1
            return t
        return None

    def expect(self, kind: str, text: str) -> Token:
        t = self.take(kind, text)
        if t is None:
            found = self.tok.text or "hết biểu thức"
            raise ExprSyntaxError(f"cần '{text}' nhưng gặp '{found}'", self.tok.pos)
        return t

    def parse(self) -> Node:
        node = self.or_()
        if self.tok.kind != "end":
            raise ExprSyntaxError(f"thừa '{self.tok.text}'", self.tok.pos)
        return node

    def or_(self) -> Node:
        node = self.and_()
        while (t := self.take("kw", "or")) is not None:
            node = Binary(t.pos, "or", node, self.and_())
        return node

    def and_(self) -> Node:
        node = self.not_()
        while (t := self.take("kw", "and")) is not None:
            node = Binary(t.pos, "and", node, self.not_())
        return node

    def not_(self) -> Node:
        if (t := self.take("kw", "not")) is not None:
            return Unary(t.pos, "not", self.not_())
        return self.compare()

    def compare(self) -> Node:
        node = self.sum_()
        t = self.tok
        if t.kind == "op" and t.text in {"=", "!=", "<", "<=", ">", ">="}:
            self.i += 1
            node = Binary(t.pos, t.text, node, self.sum_())
            if self.tok.kind == "op" and self.tok.text in {"=", "!=", "<", "<=", ">", ">="}:
                raise ExprSyntaxError("không được nối hai phép so sánh; dùng 'and'", self.tok.pos)
        return node

    def sum_(self) -> Node:
        node = self.product()
        while self.tok.kind == "op" and self.tok.text in {"+", "-"}:
            t = self.tok
            self.i += 1
            node = Binary(t.pos, t.text, node, self.product())
        return node

    def product(self) -> Node:
        node = self.unary()
        while self.tok.kind == "op" and self.tok.text in {"*", "/"}:
            t = self.tok
            self.i += 1
            node = Binary(t.pos, t.text, node, self.unary())
        return node

    def unary(self) -> Node:
        if (t := self.take("op", "-")) is not None:
            return Unary(t.pos, "-", self.unary())
        if self.take("op", "+") is not None:
            return self.unary()
        return self.atom()

    def atom(self) -> Node:
        t = self.tok
        if t.kind == "num":
            self.i += 1
            return Num(t.pos, float(t.text))
        if t.kind == "str":
            self.i += 1
            return Str(t.pos, nfc(t.text[1:-1]))
        if t.kind == "kw" and t.text in {"true", "false"}:
            self.i += 1
            return Bool(t.pos, t.text == "true")
        if t.kind == "name":
            self.i += 1
            if self.take("op", "(") is not None:
                args: list[Node] = []
                if self.take("op", ")") is None:
                    args.append(self.or_())
                    while self.take("op", ",") is not None:
                        args.append(self.or_())
                    self.expect("op", ")")
                return Call(t.pos, t.text.lower(), tuple(args))
            return Name(t.pos, t.text)
        if self.take("op", "(") is not None:
            node = self.or_()
            self.expect("op", ")")
            return node
        found = t.text or "hết biểu thức"
        raise ExprSyntaxError(f"thiếu toán hạng trước '{found}'", t.pos)


def parse(text: str) -> Node:
    """Parse an expression; raises :class:`ExprSyntaxError` with a character position."""
    return _Parser(text).parse()


# ------------------------------------------------------------------ checking

@dataclass(frozen=True, slots=True)
class Symbol:
    """What a name means to the checker: a field of some type, a table, or a constant."""

    type: str
    constant: float | None = None


class ExprTypeError(ValueError):
    def __init__(self, message: str, pos: int) -> None:
        super().__init__(message)
        self.pos = pos


_TYPE_VI = {NUM: "số", TEXT: "chữ", BOOL: "đúng/sai", TABLE: "bảng"}


def check(node: Node, symbols: dict[str, Symbol], suggest: Callable[[str], str] = lambda n: "") -> str:
    """Return the type of ``node``; raise :class:`ExprTypeError` for unknown names or misuse."""

    def need(n: Node, want: str, what: str) -> None:
        got = check(n, symbols, suggest)
        if got != want:
            raise ExprTypeError(f"{what} phải là {_TYPE_VI[want]}, nhưng là {_TYPE_VI[got]}", n.pos)

    if isinstance(node, Num):
        return NUM
    if isinstance(node, Str):
        return TEXT
    if isinstance(node, Bool):
        return BOOL
    if isinstance(node, Name):
        sym = symbols.get(node.name)
        if sym is None:
            raise ExprTypeError(f"không có trường hay hằng số '{node.name}'{suggest(node.name)}", node.pos)
        if sym.type == TABLE:
            raise ExprTypeError(f"'{node.name}' là bảng; dùng rows({node.name})", node.pos)
        return sym.type
    if isinstance(node, Unary):
        if node.op == "-":
            need(node.operand, NUM, "toán hạng của dấu trừ")
            return NUM
        need(node.operand, BOOL, "toán hạng của 'not'")
        return BOOL
    if isinstance(node, Binary):
        if node.op in {"and", "or"}:
            need(node.left, BOOL, f"vế trái của '{node.op}'")
            need(node.right, BOOL, f"vế phải của '{node.op}'")
            return BOOL
        if node.op in {"+", "-", "*", "/"}:
            need(node.left, NUM, f"vế trái của '{node.op}'")
            need(node.right, NUM, f"vế phải của '{node.op}'")
            return NUM
        left, right = check(node.left, symbols, suggest), check(node.right, symbols, suggest)
        if left != right:
            raise ExprTypeError(
                f"không so sánh được {_TYPE_VI[left]} với {_TYPE_VI[right]}", node.pos
            )
        if left != NUM and node.op not in {"=", "!="}:
            raise ExprTypeError(f"phép '{node.op}' chỉ dùng cho số", node.pos)
        return BOOL
    if isinstance(node, Call):
        return _check_call(node, symbols, suggest, need)
    raise ExprTypeError("biểu thức không hợp lệ", node.pos)


def _check_call(node: Call, symbols: dict[str, Symbol], suggest: Callable[[str], str], need: Any) -> str:
    f, args = node.func, node.args
    if f not in FUNCTIONS:
        from difflib import get_close_matches

        close = get_close_matches(f, sorted(FUNCTIONS), n=1)
        hint = f" — có phải '{close[0]}'?" if close else ""
        raise ExprTypeError(f"không có hàm '{f}'{hint}", node.pos)
    if f in {"sum", "min", "max"}:
        if not args:
            raise ExprTypeError(f"{f}() cần ít nhất một đối số", node.pos)
        for a in args:
            need(a, NUM, f"đối số của {f}()")
        return NUM
    if f == "abs":
        _arity(node, 1)
        need(args[0], NUM, "đối số của abs()")
        return NUM
    if f == "if":
        _arity(node, 3)
        need(args[0], BOOL, "điều kiện của if()")
        a, b = check(args[1], symbols, suggest), check(args[2], symbols, suggest)
        if a != b:
            raise ExprTypeError("hai nhánh của if() phải cùng kiểu", node.pos)
        return a
    if f in {"isnull", "prev"}:
        _arity(node, 1)
        inner = args[0]
        if f == "isnull" and isinstance(inner, Call) and inner.func == "prev":
            check(inner, symbols, suggest)
            return BOOL
        if not isinstance(inner, Name):
            raise ExprTypeError(f"{f}() nhận tên một trường", inner.pos)
        sym = symbols.get(inner.name)
        if sym is None or sym.constant is not None:
            raise ExprTypeError(f"không có trường '{inner.name}'{suggest(inner.name)}", inner.pos)
        if sym.type == TABLE:
            raise ExprTypeError(f"'{inner.name}' là bảng", inner.pos)
        if f == "prev" and sym.type != NUM:
            raise ExprTypeError("prev() chỉ dùng cho trường số", inner.pos)
        return BOOL if f == "isnull" else NUM
    # rows
    _arity(node, 1)
    inner = args[0]
    if not isinstance(inner, Name) or symbols.get(inner.name, Symbol(NUM)).type != TABLE:
        raise ExprTypeError("rows() nhận tên một bảng", inner.pos)
    return NUM


def _arity(node: Call, n: int) -> None:
    if len(node.args) != n:
        raise ExprTypeError(f"{node.func}() cần đúng {n} đối số", node.pos)


# ------------------------------------------------------------------ items

@dataclass(frozen=True, slots=True)
class Item:
    """A data item an expression reads: a field this year, or last year (``prev``)."""

    field: str
    prev: bool = False


def items(node: Node, symbols: dict[str, Symbol]) -> list[Item]:
    """Distinct data items referenced by ``node`` in first-seen order (tables and constants excluded)."""
    seen: dict[Item, None] = {}

    def walk(n: Node) -> None:
        if isinstance(n, Name):
            sym = symbols.get(n.name)
            if sym is not None and sym.constant is None and sym.type != TABLE:
                seen.setdefault(Item(n.name))
        elif isinstance(n, Call):
            if n.func == "prev" and isinstance(n.args[0], Name):
                seen.setdefault(Item(n.args[0].name, prev=True))
                return
            if n.func == "rows":
                return
            for a in n.args:
                walk(a)
        elif isinstance(n, Unary):
            walk(n.operand)
        elif isinstance(n, Binary):
            walk(n.left)
            walk(n.right)

    walk(node)
    return list(seen)


def tables(node: Node) -> Iterator[str]:
    if isinstance(node, Call):
        if node.func == "rows" and isinstance(node.args[0], Name):
            yield node.args[0].name
        for a in node.args:
            yield from tables(a)
    elif isinstance(node, Unary):
        yield from tables(node.operand)
    elif isinstance(node, Binary):
        yield from tables(node.left)
        yield from tables(node.right)


# ------------------------------------------------------------------ Python evaluation

class NotApplicable:
    """The "không phát sinh" marker: present, contributes 0 to arithmetic."""

    _instance: NotApplicable | None = None

    def __new__(cls) -> NotApplicable:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "NA"

    def __reduce__(self) -> str:
        return "NA"


NA = NotApplicable()

_TINY = 1.0 / (16777216.0 * 16777216.0)  # 2**-48, LibreOffice rtl::math::approxEqual


def approx_equal(a: float, b: float) -> bool:
    if a == b:
        return True
    return abs(a - b) < abs(a) * _TINY


def _add(a: float, b: float) -> float:
    if ((a < 0 < b) or (b < 0 < a)) and approx_equal(a, -b):
        return 0.0
    return a + b


def _sub(a: float, b: float) -> float:
    if ((a < 0 < -b) or (-b < 0 < a)) and approx_equal(a, b):
        return 0.0
    return a - b


class Env:
    """Values an expression reads. Subclass or pass callables."""

    def __init__(
        self,
        values: dict[str, Any],
        prev: dict[str, Any] | None = None,
        rows: dict[str, int] | None = None,
        constants: dict[str, float] | None = None,
    ) -> None:
        self.values = values
        self.prev_values = prev or {}
        self.row_counts = rows or {}
        self.constants = constants or {}

    def item(self, item: Item) -> Any:
        src = self.prev_values if item.prev else self.values
        return src.get(item.field)


def is_present(value: Any) -> bool:
    return value is not None and value != ""


def evaluate(node: Node, env: Env) -> Any:
    """Evaluate with DHIS2 item semantics: blank → 0 in arithmetic, NA → 0, text compares caselessly."""
    if isinstance(node, Num):
        return node.value
    if isinstance(node, Str):
        return node.value
    if isinstance(node, Bool):
        return node.value
    if isinstance(node, Name):
        if node.name in env.constants:
            return float(env.constants[node.name])
        return _scalar(env.values.get(node.name))
    if isinstance(node, Unary):
        v = evaluate(node.operand, env)
        return (-_num(v) if _num(v) != 0 else 0.0) if node.op == "-" else not v
    if isinstance(node, Binary):
        return _binary(node, env)
    if isinstance(node, Call):
        return _call(node, env)
    raise TypeError(node)


def _scalar(v: Any) -> Any:
    if v is None or v is NA:
        return None if v is None else NA
    return v


def _num(v: Any) -> float:
    if v is None or v is NA or v == "":
        return 0.0
    if isinstance(v, bool):
        return float(v)
    if isinstance(v, int | float):
        return float(v)
    return 0.0  # text in a numeric position (already a finding elsewhere)


def _text(v: Any) -> str:
    if v is None or v is NA:
        return ""
    return nfc(str(v)).casefold()


def _binary(node: Binary, env: Env) -> Any:
    # Both sides are always evaluated, like Excel's AND/OR: an undefined operand stays undefined.
    return apply_binary(node.op, evaluate(node.left, env), evaluate(node.right, env))


def apply_binary(op: str, left: Any, right: Any) -> Any:
    """Apply a binary operator to evaluated operands (shared with rule comparisons)."""
    if op == "and":
        return bool(left) and bool(right)
    if op == "or":
        return bool(left) or bool(right)
    if op in {"+", "-", "*", "/"}:
        a, b = _num(left), _num(right)
        if op == "+":
            return _add(a, b)
        if op == "-":
            return _sub(a, b)
        if op == "*":
            return a * b
        if b == 0:
            raise Undefined("chia cho 0")
        return a / b
    if isinstance(left, bool) or isinstance(right, bool):
        c = (left > right) - (left < right)
    elif isinstance(left, str) or isinstance(right, str):
        lt, rt = _text(left), _text(right)
        c = (lt > rt) - (lt < rt)
    else:
        a, b = _num(left), _num(right)
        c = 0 if approx_equal(a, b) else (1 if a > b else -1)
    return {"=": c == 0, "!=": c != 0, "<": c < 0, "<=": c <= 0, ">": c > 0, ">=": c >= 0}[op]


def _call(node: Call, env: Env) -> Any:
    f = node.func
    if f == "if":
        return evaluate(node.args[1] if evaluate(node.args[0], env) else node.args[2], env)
    if f == "isnull":
        inner = node.args[0]
        item = Item(inner.args[0].name, True) if isinstance(inner, Call) else Item(inner.name)  # type: ignore[union-attr]
        return not is_present(env.item(item))
    if f == "prev":
        return _scalar(env.prev_values.get(node.args[0].name))  # type: ignore[union-attr]
    if f == "rows":
        return float(env.row_counts.get(node.args[0].name, 0))  # type: ignore[union-attr]
    values = [_num(evaluate(a, env)) for a in node.args]
    if f == "sum":
        total = 0.0
        for v in values:
            total = _add(total, v)
        return total
    if f == "min":
        return min(values)
    if f == "max":
        return max(values)
    if f == "abs":
        return abs(values[0])
    raise TypeError(f)


# ------------------------------------------------------------------ Excel compilation

@dataclass(frozen=True, slots=True)
class CellRefs:
    """How the compiler names cells: this year's input, last year's value, a table's key column."""

    value: Callable[[str], str]
    prev: Callable[[str], str]
    table_keys: Callable[[str], str]
    types: dict[str, str]
    constants: dict[str, float]


def excel_number(x: float) -> str:
    if float(x).is_integer() and abs(x) < 1e15:
        return str(int(x))
    return format(x, ".15g").upper()


def excel_string(s: str) -> str:
    return '"' + s.replace('"', '""') + '"'


def to_excel(node: Node, refs: CellRefs) -> str:
    """Compile to an Excel formula fragment (no leading '='), fully parenthesised."""
    if isinstance(node, Num):
        return excel_number(node.value)
    if isinstance(node, Str):
        return excel_string(node.value)
    if isinstance(node, Bool):
        return "TRUE" if node.value else "FALSE"
    if isinstance(node, Name):
        if node.name in refs.constants:
            return excel_number(refs.constants[node.name])
        cell = refs.value(node.name)
        return f"N({cell})" if refs.types.get(node.name) == NUM else f"TRIM({cell})"
    if isinstance(node, Unary):
        inner = to_excel(node.operand, refs)
        return f"(-{inner})" if node.op == "-" else f"NOT({inner})"
    if isinstance(node, Binary):
        a, b = to_excel(node.left, refs), to_excel(node.right, refs)
        if node.op in {"and", "or"}:
            return f"{node.op.upper()}({a},{b})"
        op = {"!=": "<>"}.get(node.op, node.op)
        return f"({a}{op}{b})"
    if isinstance(node, Call):
        f, args = node.func, node.args
        if f == "if":
            return f"IF({','.join(to_excel(a, refs) for a in args)})"
        if f == "isnull":
            inner = args[0]
            if isinstance(inner, Call):
                return f"({refs.prev(inner.args[0].name)}=\"\")"  # type: ignore[union-attr]
            return f"({refs.value(inner.name)}=\"\")"  # type: ignore[union-attr]
        if f == "prev":
            return f"N({refs.prev(args[0].name)})"  # type: ignore[union-attr]
        if f == "rows":
            # Not COUNTA: LibreOffice 7.4 counts an empty cell of such a range as filled when the row
            # holds data further left (found by the fuzz test; tests/test_rules_excel.py keeps the case).
            return f"SUMPRODUCT(--({refs.table_keys(args[0].name)}<>\"\"))"  # type: ignore[union-attr]
        parts = [to_excel(a, refs) for a in args]
        if f == "sum":  # explicit additions: SUM() uses compensated summation in LibreOffice
            return "(" + "+".join(parts) + ")"
        return f"{f.upper()}({','.join(parts)})"
    raise TypeError(node)


def present_excel(item: Item, refs: CellRefs) -> str:
    cell = refs.prev(item.field) if item.prev else refs.value(item.field)
    return f'({cell}<>"")'
