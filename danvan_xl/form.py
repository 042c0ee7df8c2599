"""The form definition: load ``form.yaml``, check everything, and expose frozen dataclasses.

Loading never stops at the first problem: every unknown key, duplicate id, bad kind, missing
choice list, broken rule expression or type mismatch is collected with its line and key path,
with a "did you mean" where a name is close (difflib, as click and pyxform do), and raised once as
:class:`~danvan_xl.errors.FormError`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from difflib import get_close_matches
from pathlib import Path
from typing import Any

from . import expr
from .errors import FormError
from .resources import bundled_form_dir
from .rules import OPERATOR_ALIASES, Operator, Rule, Side, Strategy
from .textnorm import nfc
from .vocabulary import NUMERIC_KINDS, Kind, Severity
from .yamlsrc import Located, load_yaml

FORM_FILE = "form.yaml"
PREFILL_SOURCES = ("unit_name", "unit_code", "year", "period")
_ID = re.compile(r"^[a-z][a-z0-9_]*$")
# Names Excel would read as a cell reference (A1 or R1C1 style) cannot be defined names.
_CELL_LIKE = re.compile(r"^([a-z]{1,3}\d+|r\d*c\d*|r|c)$")
_SHEET_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,30}$")


@dataclass(frozen=True)
class Column:
    id: str
    kind: Kind
    label: str
    choices: str | None = None
    max_length: int = 255


@dataclass(frozen=True)
class Field:
    id: str
    kind: Kind
    label: str
    section: str
    sheet: str
    unit: str = ""
    hint: str = ""
    required: bool = False
    na: bool = True
    min: float | None = None
    max: float | None = None
    max_length: int = 255
    choices: str | None = None
    prefill: str | None = None
    summable: bool = True
    places: int = 2
    indent: int = 0
    rows: int = 0
    columns: tuple[Column, ...] = ()
    computed: bool = False  # derived in the template (rubric total, grade); never typed

    @property
    def is_numeric(self) -> bool:
        return self.kind in NUMERIC_KINDS

    @property
    def is_input(self) -> bool:
        return self.prefill is None and not self.computed

    @property
    def is_scalar(self) -> bool:
        return self.kind != Kind.TABLE


@dataclass(frozen=True)
class Section:
    id: str
    number: str
    title: str
    sheet: str
    fields: tuple[str, ...]

    @property
    def heading(self) -> str:
        return f"{self.number}. {self.title}" if self.number else self.title


@dataclass(frozen=True)
class SheetSpec:
    name: str
    title: str


@dataclass(frozen=True)
class Criterion:
    id: str
    title: str
    max: float
    score_field: str
    evidence_field: str


@dataclass(frozen=True)
class Rubric:
    sample: bool
    title: str
    note: str
    sheet: str
    criteria: tuple[Criterion, ...]
    grades: tuple[tuple[float, str], ...]  # (minimum total, label), highest first
    total_field: str
    grade_field: str

    @property
    def max_total(self) -> float:
        return sum(c.max for c in self.criteria)

    def grade(self, total: float) -> str:
        for minimum, label in self.grades:
            if total >= minimum:
                return label
        return self.grades[-1][1]


@dataclass(frozen=True, eq=False)  # identity equality: layouts are cached per loaded form
class Form:
    id: str
    version: str
    title: str
    short_title: str
    description: str
    period_start: tuple[int, int]  # (day, month) in the previous year
    period_end: tuple[int, int]  # (day, month) in the reporting year
    default_deadline: tuple[int, int]
    sheets: tuple[SheetSpec, ...]
    sections: tuple[Section, ...]
    fields: dict[str, Field]
    choices: dict[str, tuple[str, ...]]
    constants: dict[str, float]
    rules: tuple[Rule, ...]
    rubric: Rubric | None
    wording: dict[str, str]
    folder: Path
    definition_hash: str

    # -- convenience ---------------------------------------------------------------
    def field(self, field_id: str) -> Field:
        return self.fields[field_id]

    def scalar_fields(self) -> Iterator[Field]:
        return (f for f in self.fields.values() if f.is_scalar)

    def input_fields(self) -> Iterator[Field]:
        return (f for f in self.fields.values() if f.is_input)

    def tables(self) -> Iterator[Field]:
        return (f for f in self.fields.values() if f.kind == Kind.TABLE)

    def period(self, year: int) -> tuple[dt.date, dt.date]:
        (sd, sm), (ed, em) = self.period_start, self.period_end
        start_year = year - 1 if (sm, sd) > (em, ed) else year
        return dt.date(start_year, sm, sd), dt.date(year, em, ed)

    def deadline(self, year: int) -> dt.date:
        d, m = self.default_deadline
        return dt.date(year, m, d)

    def symbols(self) -> dict[str, expr.Symbol]:
        return _symbols(self.fields, self.constants)

    @property
    def short_hash(self) -> str:
        return self.definition_hash[:16]


# ------------------------------------------------------------------ loading

_TOP_KEYS = {"form", "sheets", "choices", "constants", "sections", "rules", "rubric", "wording"}
_FORM_KEYS = {"id", "version", "title", "short_title", "description", "period", "default_deadline"}
_SECTION_KEYS = {"id", "number", "title", "sheet", "fields"}
_FIELD_KEYS = {
    "id", "kind", "label", "unit", "hint", "required", "na", "min", "max", "max_length", "choices",
    "prefill", "summable", "places", "indent", "rows", "columns",
}
_COLUMN_KEYS = {"id", "kind", "label", "choices", "max_length"}
_RULE_KEYS = {
    "id", "title", "left", "op", "right", "missing", "missing_left", "missing_right", "severity",
    "message", "applies_to", "justify",
}
_RUBRIC_KEYS = {"sample", "title", "note", "sheet", "criteria", "grades", "total_field", "grade_field"}
_CRITERION_KEYS = {"id", "title", "max"}
_GRADE_KEYS = {"min", "label"}
_SHEET_KEYS = {"name", "title"}
_STRATEGIES = {s.value: s for s in Strategy} | {
    "SKIP_IF_ANY": Strategy.SKIP_IF_ANY, "SKIP_IF_ALL": Strategy.SKIP_IF_ALL,
}
_TEXT_LIMIT = {Kind.TEXT: 255, Kind.PARAGRAPH: 8000, Kind.CHOICE: 255, Kind.YESNO: 10}


def find_form(name_or_path: str | Path, base: Path | None = None) -> Path:
    """Resolve a form id (bundled) or a folder/file path to the form's folder."""
    candidate = Path(name_or_path)
    if base is not None and not candidate.is_absolute():
        candidate = base / candidate
    if candidate.is_file():
        return candidate.parent
    if (candidate / FORM_FILE).is_file():
        return candidate
    bundled = bundled_form_dir(str(name_or_path))
    if bundled is not None:
        return bundled
    raise FormError(str(name_or_path), [f"không tìm thấy biểu mẫu '{name_or_path}' (mã biểu mẫu hoặc thư mục)"])


def load_form(name_or_path: str | Path, base: Path | None = None) -> Form:
    """Load and check a form definition; raise :class:`FormError` listing every problem."""
    folder = find_form(name_or_path, base)
    path = folder / FORM_FILE
    text = nfc(path.read_text(encoding="utf-8"))
    try:
        located = load_yaml(text, str(path))
    except ValueError as err:
        raise FormError(str(path), [str(err)]) from err
    loader = _FormLoader(located, folder)
    form = loader.build()
    if loader.problems:
        raise FormError(str(path), loader.problems)
    assert form is not None
    return form


class _FormLoader:
    """Walks the YAML tree once, collecting problems instead of raising."""

    def __init__(self, located: Located, folder: Path) -> None:
        self.src = located
        self.folder = folder
        self.problems: list[str] = list(located.problems)

    # -- problem reporting -----------------------------------------------------------
    def problem(self, path: tuple, message: str) -> None:
        line = self.src.line(path)
        where = ".".join(str(p) for p in path) or "(gốc)"
        prefix = f"dòng {line}" if line else "tệp"
        self.problems.append(f"{prefix} [{where}]: {message}")

    def invalid(self, path: tuple, what: str, value: Any, options: Any, extra: str = "") -> None:
        """Report "<what> '<value>' không hợp lệ" with a suggestion from ``options``."""
        self.problem(path, f"{what} '{value}' không hợp lệ{extra}{_did_you_mean(str(value), options)}")

    def check_keys(self, obj: Any, allowed: set[str], path: tuple, required: tuple[str, ...] = ()) -> dict:
        if not isinstance(obj, dict):
            self.problem(path, "cần một bảng khoá: giá trị")
            return {}
        for key in obj:
            if key not in allowed:
                self.invalid((*path, key), "khoá", key, allowed)
        for key in required:
            if key not in obj or obj[key] in (None, ""):
                self.problem(path, f"thiếu khoá bắt buộc '{key}'")
        return obj

    def text(self, obj: dict, key: str, path: tuple, default: str = "") -> str:
        value = obj.get(key, default)
        if value is None:
            return default
        if not isinstance(value, str | int | float):
            self.problem((*path, key), "cần một chuỗi chữ")
            return default
        return nfc(str(value)).strip()

    def number(self, obj: dict, key: str, path: tuple, default: float | None = None) -> float | None:
        value = obj.get(key, default)
        if value is None or isinstance(value, bool) or not isinstance(value, int | float):
            if key in obj and obj[key] is not None:
                self.problem((*path, key), f"cần một số, không phải '{obj[key]}'")
            return default
        return float(value)

    def flag(self, obj: dict, key: str, path: tuple, default: bool) -> bool:
        value = obj.get(key, default)
        if not isinstance(value, bool):
            self.problem((*path, key), "cần true hoặc false")
            return default
        return value

    def ident(self, value: Any, path: tuple, what: str, *, excel_name: bool = False) -> str:
        """Check an identifier; ``excel_name`` ids also become workbook defined names."""
        text = str(value or "")
        if not _ID.match(text):
            self.problem(path, f"{what} '{text}' phải viết thường, không dấu, dạng ma_truong (a-z, 0-9, _)")
        elif excel_name and _CELL_LIKE.match(text):
            self.problem(path, f"{what} '{text}' trùng dạng địa chỉ ô Excel; hãy đặt tên khác")
        return text

    # -- building --------------------------------------------------------------------
    def build(self) -> Form | None:
        root = self.check_keys(self.src.data, _TOP_KEYS, (), ("form", "sections"))
        meta = self.check_keys(root.get("form", {}), _FORM_KEYS, ("form",), ("id", "version", "title"))
        form_id = self.text(meta, "id", ("form",))
        if form_id and not re.fullmatch(r"[a-z0-9][a-z0-9-]*", form_id):
            self.problem(("form", "id"), "mã biểu mẫu chỉ gồm chữ thường không dấu, số và dấu gạch ngang")
        period = meta.get("period") or {"start": "15/12", "end": "14/12"}
        period = self.check_keys(period, {"start", "end"}, ("form", "period"), ("start", "end"))
        p_start = self._day_month(period.get("start", "15/12"), ("form", "period", "start"))
        p_end = self._day_month(period.get("end", "14/12"), ("form", "period", "end"))
        deadline = self._day_month(meta.get("default_deadline", "10/12"), ("form", "default_deadline"))

        sheets = self._sheets(root.get("sheets", []))
        choices = self._choices(root.get("choices", {}))
        constants = self._constants(root.get("constants", {}))
        sections, fields = self._sections(root.get("sections", []), sheets, choices)
        rubric = self._rubric(root.get("rubric"), sheets, fields, sections)
        clash = set(constants) & set(fields)
        for name in sorted(clash):
            self.problem(("constants", name), f"hằng số '{name}' trùng mã một trường")
        rules = self._rules(root.get("rules", []), fields, constants)
        if rubric is not None:
            rules = rules + _rubric_rules(rubric)
        wording = self._wording(root.get("wording", {}))
        if self.problems:
            return None
        canonical = {
            "form": {k: meta.get(k) for k in sorted(_FORM_KEYS) if k in meta},
            "sheets": root.get("sheets", []), "choices": root.get("choices", {}),
            "constants": root.get("constants", {}), "sections": root.get("sections", []),
            "rules": root.get("rules", []), "rubric": root.get("rubric"),
        }
        digest = hashlib.sha256(
            json.dumps(canonical, sort_keys=True, ensure_ascii=False, default=str).encode()
        ).hexdigest()
        return Form(
            id=form_id, version=self.text(meta, "version", ("form",)), title=self.text(meta, "title", ("form",)),
            short_title=self.text(meta, "short_title", ("form",)) or self.text(meta, "title", ("form",)),
            description=self.text(meta, "description", ("form",)),
            period_start=p_start, period_end=p_end, default_deadline=deadline,
            sheets=tuple(sheets.values()), sections=tuple(sections), fields=fields, choices=choices,
            constants=constants, rules=tuple(rules), rubric=rubric, wording=wording,
            folder=self.folder, definition_hash=digest,
        )

    def _day_month(self, value: Any, path: tuple) -> tuple[int, int]:
        m = re.fullmatch(r"(\d{1,2})/(\d{1,2})", str(value))
        if not m:
            self.problem(path, f"cần dạng ngày/tháng, ví dụ 15/12, không phải '{value}'")
            return (1, 1)
        day, month = int(m.group(1)), int(m.group(2))
        try:
            dt.date(2001, month, day)
        except ValueError:
            self.problem(path, f"ngày/tháng '{value}' không tồn tại")
            return (1, 1)
        return (day, month)

    def _sheets(self, raw: Any) -> dict[str, SheetSpec]:
        out: dict[str, SheetSpec] = {}
        if not isinstance(raw, list):
            self.problem(("sheets",), "cần một danh sách trang tính")
            return out
        for i, item in enumerate(raw):
            path = ("sheets", i)
            obj = self.check_keys(item, _SHEET_KEYS, path, ("name", "title"))
            name = str(obj.get("name", ""))
            if not _SHEET_NAME.match(name):
                self.problem((*path, "name"), f"tên trang '{name}' phải ngắn (≤ 31 ký tự), không dấu, không khoảng trắng")
            elif name.lower() in {s.lower() for s in out} or name.startswith("_") or name in {"HuongDan", "KiemTra"}:
                self.problem((*path, "name"), f"tên trang '{name}' bị trùng hoặc dành riêng")
            out[name] = SheetSpec(name, self.text(obj, "title", path))
        return out

    def _choices(self, raw: Any) -> dict[str, tuple[str, ...]]:
        out: dict[str, tuple[str, ...]] = {}
        if not isinstance(raw, dict):
            self.problem(("choices",), "cần một bảng các danh mục")
            return out
        for name, items in raw.items():
            path = ("choices", name)
            self.ident(name, path, "tên danh mục")
            if not isinstance(items, list) or not items:
                self.problem(path, "danh mục cần ít nhất một lựa chọn")
                continue
            values = tuple(nfc(str(v)).strip() for v in items)
            if len(set(values)) != len(values):
                self.problem(path, "danh mục có lựa chọn bị lặp")
            for v in values:
                if not v or len(v) > 250:
                    self.problem(path, f"lựa chọn '{v[:30]}' rỗng hoặc quá dài")
            out[str(name)] = values
        return out

    def _constants(self, raw: Any) -> dict[str, float]:
        out: dict[str, float] = {}
        if not isinstance(raw, dict):
            self.problem(("constants",), "cần một bảng hằng số")
            return out
        for name, value in raw.items():
            self.ident(name, ("constants", name), "tên hằng số")
            if isinstance(value, bool) or not isinstance(value, int | float):
                self.problem(("constants", name), f"hằng số phải là số, không phải '{value}'")
                continue
            out[str(name)] = float(value)
        return out

    def _sections(
        self, raw: Any, sheets: dict[str, SheetSpec], choices: dict[str, tuple[str, ...]]
    ) -> tuple[list[Section], dict[str, Field]]:
        sections: list[Section] = []
        fields: dict[str, Field] = {}
        if not isinstance(raw, list):
            self.problem(("sections",), "cần một danh sách các mục")
            return sections, fields
        seen_sections: set[str] = set()
        for i, item in enumerate(raw):
            path = ("sections", i)
            obj = self.check_keys(item, _SECTION_KEYS, path, ("id", "title", "sheet"))
            sid = self.ident(obj.get("id"), (*path, "id"), "mã mục")
            if sid in seen_sections:
                self.problem((*path, "id"), f"mã mục '{sid}' bị trùng")
            seen_sections.add(sid)
            sheet = str(obj.get("sheet", ""))
            if sheet and sheet not in sheets:
                self.problem((*path, "sheet"), f"không có trang '{sheet}' trong 'sheets'{_did_you_mean(sheet, sheets)}")
            ids: list[str] = []
            raw_fields = obj.get("fields", []) or []
            if not isinstance(raw_fields, list):
                self.problem((*path, "fields"), "cần một danh sách trường")
                raw_fields = []
            for j, fobj in enumerate(raw_fields):
                f = self._field(fobj, (*path, "fields", j), sid, sheet, choices)
                if f is None:
                    continue
                if f.id in fields:
                    where = fields[f.id].section
                    self.problem((*path, "fields", j, "id"), f"mã trường '{f.id}' bị trùng (đã có ở mục '{where}')")
                    continue
                fields[f.id] = f
                ids.append(f.id)
            number = self.text(obj, "number", path)
            sections.append(Section(sid, number, self.text(obj, "title", path), sheet, tuple(ids)))
        return sections, fields

    def _field(
        self, raw: Any, path: tuple, section: str, sheet: str, choices: dict[str, tuple[str, ...]]
    ) -> Field | None:
        obj = self.check_keys(raw, _FIELD_KEYS, path, ("id", "kind", "label"))
        if not obj:
            return None
        fid = self.ident(obj.get("id"), (*path, "id"), "mã trường", excel_name=True)
        kind_text = str(obj.get("kind", ""))
        try:
            kind = Kind(kind_text)
        except ValueError:
            self.invalid((*path, "kind"), "loại trường", kind_text, [k.value for k in Kind])
            return None
        choice_list = obj.get("choices")
        if kind == Kind.CHOICE:
            if not choice_list:
                self.problem(path, "trường chọn (choice) cần khoá 'choices'")
            elif choice_list not in choices:
                self.problem((*path, "choices"), f"không có danh mục '{choice_list}'{_did_you_mean(str(choice_list), choices)}")
        elif choice_list is not None:
            self.problem((*path, "choices"), f"chỉ trường loại choice mới có 'choices' (trường này là {kind})")
        prefill = obj.get("prefill")
        if prefill is not None and prefill not in PREFILL_SOURCES:
            self.invalid((*path, "prefill"), "nguồn điền sẵn", prefill, PREFILL_SOURCES)
        columns: tuple[Column, ...] = ()
        rows = 0
        if kind == Kind.TABLE:
            columns = self._columns(obj.get("columns"), (*path, "columns"), choices)
            rows = int(self.number(obj, "rows", path, 10) or 10)
            if not 1 <= rows <= 200:
                self.problem((*path, "rows"), "số dòng của bảng phải từ 1 đến 200")
        elif "columns" in obj or "rows" in obj:
            self.problem(path, "chỉ trường loại table mới có 'columns' và 'rows'")
        unit = self.text(obj, "unit", path)
        if kind == Kind.COUNT and not unit and prefill is None:
            self.problem(path, "trường đếm (count) cần đơn vị tính 'unit' (lượt, người, đơn, …)")
        max_length = int(self.number(obj, "max_length", path, _TEXT_LIMIT.get(kind, 255)) or 255)
        if not 1 <= max_length <= 32000:
            self.problem((*path, "max_length"), "độ dài tối đa phải từ 1 đến 32000 ký tự")
        hint = self.text(obj, "hint", path)
        if len(hint) > 200:
            self.problem((*path, "hint"), f"gợi ý dài {len(hint)} ký tự; Excel chỉ hiện tối đa 200")
        is_num = kind in NUMERIC_KINDS
        lo = self.number(obj, "min", path, 0.0 if is_num else None)
        hi = self.number(obj, "max", path, 100.0 if kind == Kind.PERCENT else None)
        return Field(
            id=fid, kind=kind, label=self.text(obj, "label", path), section=section, sheet=sheet,
            unit=unit or ("%" if kind == Kind.PERCENT else ""), hint=hint,
            required=self.flag(obj, "required", path, False), na=self.flag(obj, "na", path, is_num) and is_num,
            min=lo, max=hi, max_length=max_length, choices=str(choice_list) if choice_list else None,
            prefill=str(prefill) if prefill else None,
            summable=self.flag(obj, "summable", path, kind == Kind.COUNT),
            places=int(self.number(obj, "places", path, 2) or 0), indent=int(self.number(obj, "indent", path, 0) or 0),
            rows=rows, columns=columns,
        )

    def _columns(self, raw: Any, path: tuple, choices: dict[str, tuple[str, ...]]) -> tuple[Column, ...]:
        out: list[Column] = []
        if not isinstance(raw, list) or not raw:
            self.problem(path, "bảng cần danh sách cột 'columns'")
            return ()
        seen: set[str] = set()
        for i, item in enumerate(raw):
            cpath = (*path, i)
            obj = self.check_keys(item, _COLUMN_KEYS, cpath, ("id", "kind", "label"))
            cid = self.ident(obj.get("id"), (*cpath, "id"), "mã cột")
            if cid in seen:
                self.problem((*cpath, "id"), f"mã cột '{cid}' bị trùng")
            seen.add(cid)
            try:
                kind = Kind(str(obj.get("kind", "")))
            except ValueError:
                kind_text = str(obj.get("kind", ""))
                self.invalid((*cpath, "kind"), "loại cột", kind_text, ["text", "choice", "count", "date"])
                continue
            if kind not in {Kind.TEXT, Kind.CHOICE, Kind.COUNT, Kind.DATE, Kind.YESNO}:
                self.problem((*cpath, "kind"), f"cột của bảng không dùng loại '{kind}'")
            clist = obj.get("choices")
            if kind == Kind.CHOICE and clist not in choices:
                self.problem((*cpath, "choices"), f"không có danh mục '{clist}'{_did_you_mean(str(clist), choices)}")
            out.append(Column(cid, kind, self.text(obj, "label", cpath), str(clist) if clist else None,
                              int(self.number(obj, "max_length", cpath, 255) or 255)))
        return tuple(out)

    def _rules(self, raw: Any, fields: dict[str, Field], constants: dict[str, float]) -> list[Rule]:
        out: list[Rule] = []
        if not isinstance(raw, list):
            self.problem(("rules",), "cần một danh sách quy tắc")
            return out
        symbols = _symbols(fields, constants)
        names = sorted(symbols)
        seen: set[str] = set()
        for i, item in enumerate(raw):
            path = ("rules", i)
            obj = self.check_keys(item, _RULE_KEYS, path, ("id", "left", "op", "right", "message"))
            if not obj:
                continue
            rid = self.ident(obj.get("id"), (*path, "id"), "mã quy tắc")
            if rid in seen:
                self.problem((*path, "id"), f"mã quy tắc '{rid}' bị trùng")
            seen.add(rid)
            op_text = str(obj.get("op", ""))
            op = OPERATOR_ALIASES.get(op_text)
            if op is None:
                try:
                    op = Operator(op_text)
                except ValueError:
                    self.invalid((*path, "op"), "phép so sánh", op_text, [o.value for o in Operator])
            default = str(obj.get("missing", Strategy.SKIP_IF_ANY.value))
            sides = []
            for side in ("left", "right"):
                strategy_text = str(obj.get(f"missing_{side}", default))
                strategy = _STRATEGIES.get(strategy_text)
                if strategy is None:
                    key = f"missing_{side}" if f"missing_{side}" in obj else "missing"
                    self.invalid((*path, key), "cách xử lý thiếu số liệu", strategy_text, [s.value for s in Strategy])
                    strategy = Strategy.SKIP_IF_ANY
                sides.append(self._side(obj.get(side), (*path, side), strategy, symbols, names))
            severity_text = str(obj.get("severity", "error"))
            try:
                severity = Severity(severity_text)
            except ValueError:
                self.invalid((*path, "severity"), "mức độ", severity_text, [s.value for s in Severity], " (error, warning, info)")
                severity = Severity.ERROR
            left, right = sides
            if left is None or right is None or op is None:
                continue
            if op not in (Operator.COMPULSORY_PAIR, Operator.EXCLUSIVE_PAIR):
                if left.type != right.type:
                    self.problem(path, f"hai vế khác kiểu: vế trái là {left.type}, vế phải là {right.type}")
                elif left.type != expr.NUM and op not in (Operator.EQ, Operator.NE):
                    self.problem((*path, "op"), f"phép '{op.value}' chỉ dùng cho số")
            applies = obj.get("applies_to") or []
            if not isinstance(applies, list):
                self.problem((*path, "applies_to"), "cần một danh sách loại đơn vị")
                applies = []
            from .vocabulary import UNIT_KINDS

            for kind in applies:
                if kind not in UNIT_KINDS:
                    self.invalid((*path, "applies_to"), "loại đơn vị", kind, UNIT_KINDS)
            message = self.text(obj, "message", path)
            for placeholder in re.findall(r"\{([^}]*)\}", message):
                if placeholder not in {"left", "right"}:
                    self.invalid((*path, "message"), "chỗ thay thế", f"{{{placeholder}}}", (), " (chỉ dùng {left}, {right})")
            justify = self.flag(obj, "justify", path, False)
            if justify and severity == Severity.ERROR:
                self.problem((*path, "justify"), "chỉ cảnh báo (warning) mới được chấp nhận bằng giải trình")
            used = tuple(dict.fromkeys(i.field for i in (*left.items, *right.items)))
            tables = tuple(dict.fromkeys([*expr.tables(left.node), *expr.tables(right.node)]))
            out.append(Rule(
                id=rid, title=self.text(obj, "title", path) or rid, left=left, op=op, right=right,
                severity=severity, message=message, applies_to=tuple(str(a) for a in applies),
                justifiable=justify, fields=used + tables,
            ))
        return out

    def _side(self, raw: Any, path: tuple, strategy: Strategy, symbols: dict[str, expr.Symbol], names: list[str]) -> Side | None:
        if raw is None or isinstance(raw, bool | dict | list):
            self.problem(path, "cần một biểu thức")
            return None
        text = nfc(str(raw)).strip()
        try:
            node = expr.parse(text)
            kind = expr.check(node, symbols, lambda n: _did_you_mean(n, names))
        except (expr.ExprSyntaxError, expr.ExprTypeError) as err:
            self.problem(path, f"biểu thức '{text}', ký tự thứ {err.pos + 1}: {err}")
            return None
        return Side(text, node, strategy, tuple(expr.items(node, symbols)), kind)

    def _rubric(
        self, raw: Any, sheets: dict[str, SheetSpec], fields: dict[str, Field], sections: list[Section]
    ) -> Rubric | None:
        if raw is None:
            return None
        path = ("rubric",)
        obj = self.check_keys(raw, _RUBRIC_KEYS, path, ("criteria", "grades", "sheet"))
        sheet = str(obj.get("sheet", ""))
        if sheet and sheet not in sheets:
            self.problem((*path, "sheet"), f"không có trang '{sheet}' trong 'sheets'{_did_you_mean(sheet, sheets)}")
        criteria: list[Criterion] = []
        raw_criteria = obj.get("criteria") or []
        for i, item in enumerate(raw_criteria if isinstance(raw_criteria, list) else []):
            cpath = (*path, "criteria", i)
            c = self.check_keys(item, _CRITERION_KEYS, cpath, ("id", "title", "max"))
            cid = self.ident(c.get("id"), (*cpath, "id"), "mã tiêu chí")
            maximum = self.number(c, "max", cpath, 0.0) or 0.0
            if maximum <= 0:
                self.problem((*cpath, "max"), "điểm tối đa phải lớn hơn 0")
            criteria.append(Criterion(cid, self.text(c, "title", cpath), maximum, f"diem_{cid}", f"minh_chung_{cid}"))
        grades: list[tuple[float, str]] = []
        raw_grades = obj.get("grades") or []
        for i, item in enumerate(raw_grades if isinstance(raw_grades, list) else []):
            gpath = (*path, "grades", i)
            g = self.check_keys(item, _GRADE_KEYS, gpath, ("min", "label"))
            grades.append((self.number(g, "min", gpath, 0.0) or 0.0, self.text(g, "label", gpath)))
        grades.sort(key=lambda g: -g[0])
        if grades and grades[-1][0] > 0:
            self.problem((*path, "grades"), "mức xếp loại thấp nhất phải có 'min: 0'")
        if not criteria or not grades:
            self.problem(path, "thang điểm cần ít nhất một tiêu chí và một mức xếp loại")
            return None
        total_field = self.ident(obj.get("total_field", "diem_tu_cham"), (*path, "total_field"), "mã trường tổng điểm")
        grade_field = self.ident(obj.get("grade_field", "xep_loai"), (*path, "grade_field"), "mã trường xếp loại")
        rubric_section = "tu_cham"
        ids: list[str] = []
        for c in criteria:
            for fid, kind, label, extra in (
                (c.score_field, Kind.DECIMAL, f"Điểm tự chấm: {c.title}", {"min": 0.0, "max": c.max, "na": False, "places": 2}),
                (c.evidence_field, Kind.TEXT, f"Minh chứng: {c.title}", {"max_length": 500}),
            ):
                if fid in fields:
                    self.problem((*path, "criteria"), f"mã trường sinh ra '{fid}' trùng một trường đã có")
                    continue
                fields[fid] = Field(id=fid, kind=kind, label=label, section=rubric_section, sheet=sheet,
                                    unit="điểm" if kind == Kind.DECIMAL else "", summable=False, **extra)
                ids.append(fid)
        derived = ((total_field, Kind.DECIMAL, "Tổng điểm tự chấm"), (grade_field, Kind.TEXT, "Xếp loại (tự chấm)"))
        for fid, kind, label in derived:
            if fid in fields:
                self.problem((*path,), f"mã trường '{fid}' trùng một trường đã có")
                continue
            fields[fid] = Field(id=fid, kind=kind, label=label, section=rubric_section, sheet=sheet,
                                unit="điểm" if kind == Kind.DECIMAL else "", summable=False, computed=True, na=False)
            ids.append(fid)
        title = self.text(obj, "title", path) or "Tự chấm điểm"
        sections.append(Section(rubric_section, "", title, sheet, tuple(ids)))
        return Rubric(
            sample=self.flag(obj, "sample", path, False), title=title, note=self.text(obj, "note", path),
            sheet=sheet, criteria=tuple(criteria), grades=tuple(grades), total_field=total_field,
            grade_field=grade_field,
        )

    def _wording(self, raw: Any) -> dict[str, str]:
        if not isinstance(raw, dict):
            self.problem(("wording",), "cần một bảng câu chữ")
            return {}
        return {str(k): nfc(str(v)).strip() for k, v in raw.items()}


def _symbols(fields: dict[str, Field], constants: dict[str, float]) -> dict[str, expr.Symbol]:
    symbols: dict[str, expr.Symbol] = {}
    for f in fields.values():
        if f.kind == Kind.TABLE:
            symbols[f.id] = expr.Symbol(expr.TABLE)
        elif f.kind in NUMERIC_KINDS or f.kind == Kind.DATE:
            symbols[f.id] = expr.Symbol(expr.NUM)
        else:
            symbols[f.id] = expr.Symbol(expr.TEXT)
    for name, value in constants.items():
        symbols.setdefault(name, expr.Symbol(expr.NUM, value))
    return symbols


def _rubric_rules(rubric: Rubric) -> list[Rule]:
    """Self-scores stay within each criterion's maximum (generated, one rule per criterion)."""
    out = []
    symbols = {c.score_field: expr.Symbol(expr.NUM) for c in rubric.criteria}
    for c in rubric.criteria:
        node = expr.parse(c.score_field)
        limit = expr.Num(0, c.max)
        out.append(Rule(
            id=f"diem_{c.id}_toi_da", title=f"Điểm tự chấm tiêu chí {c.id} không vượt điểm tối đa",
            left=Side(c.score_field, node, Strategy.SKIP_IF_ANY, tuple(expr.items(node, symbols)), expr.NUM),
            op=Operator.LE,
            right=Side(expr.excel_number(c.max), limit, Strategy.NEVER_SKIP, (), expr.NUM),
            severity=Severity.ERROR,
            message=f"Điểm tự chấm “{c.title}” ({{left}}) vượt điểm tối đa ({{right}}).",
            generated=True, fields=(c.score_field,),
        ))
    return out


def _did_you_mean(name: str, options: Any) -> str:
    close = get_close_matches(str(name), [str(o) for o in options], n=1, cutoff=0.6)
    return f" — có phải '{close[0]}'?" if close else ""


def list_bundled_forms() -> list[str]:
    from .resources import bundled_forms_root

    root = bundled_forms_root()
    return sorted(p.name for p in root.iterdir() if (p / FORM_FILE).is_file())


__all__ = [
    "Column", "Criterion", "Field", "Form", "Rubric", "Section", "SheetSpec", "find_form",
    "list_bundled_forms", "load_form",
]

