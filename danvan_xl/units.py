"""The units register: who reports, in which official order, and how to address them.

A CSV file (UTF-8, with or without BOM) with one row per reporting unit. Official names are
kept exactly as written (GSO writes both "Hoà Bình" and "An Hòa"); lookups use
:func:`~danvan_xl.textnorm.match_key`. Every bad row is reported with its row number.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from pathlib import Path

from .errors import RegisterError
from .textnorm import match_key, nfc, upper_vi
from .vocabulary import UNIT_BLOCK, UNIT_KINDS

COLUMNS = (
    "code", "name", "kind", "order", "head_title", "authority", "email", "parent", "header_name",
    "abbr", "place", "gso_code",
)
REQUIRED = ("code", "name", "kind", "order")
_CODE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


@dataclass(frozen=True)
class Unit:
    code: str
    name: str
    kind: str
    order: int
    head_title: str = ""
    authority: str = ""  # e.g. "TM. ỦY BAN NHÂN DÂN" for communes
    email: str = ""
    parent: str = ""  # cơ quan chủ quản line of the document header, e.g. "UBND HUYỆN TAM NÔNG"
    header_name: str = ""  # issuing agency line (IN HOA); defaults to the upper-cased name
    abbr: str = ""  # ký hiệu of the agency, kept in its own case ("TTr", "LĐTBXH")
    place: str = ""  # địa danh used in "<place>, ngày … tháng … năm …"
    gso_code: str = ""

    @property
    def block(self) -> str:
        return UNIT_BLOCK.get(self.kind, UNIT_BLOCK["phong"])

    @property
    def agency_line(self) -> str:
        return self.header_name or upper_vi(self.name)


@dataclass(frozen=True)
class Register:
    units: tuple[Unit, ...]
    path: str

    def __post_init__(self) -> None:
        # Indexes for lookups: a province may have thousands of units and collect looks one up per file.
        object.__setattr__(self, "_by_code", {u.code: u for u in self.units})
        object.__setattr__(self, "_by_key", {match_key(u.name): u for u in reversed(self.units)})
        object.__setattr__(self, "_by_email", {u.email.lower(): u for u in reversed(self.units) if u.email})

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self.units)

    def __len__(self) -> int:
        return len(self.units)

    def get(self, code: str) -> Unit | None:
        return self._by_code.get(code)  # type: ignore[attr-defined]

    def by_name(self, name: str) -> Unit | None:
        return self._by_key.get(match_key(name))  # type: ignore[attr-defined]

    def by_email(self, address: str) -> Unit | None:
        return self._by_email.get(address.strip().lower())  # type: ignore[attr-defined]

    def select(self, codes: list[str] | tuple[str, ...]) -> list[Unit]:
        """Units with the given codes, in register order; raises for unknown codes."""
        if not codes:
            return list(self.units)
        known = {u.code for u in self.units}
        unknown = [c for c in codes if c not in known]
        if unknown:
            from difflib import get_close_matches

            hints = []
            for c in unknown:
                close = get_close_matches(c, sorted(known), n=1)
                hints.append(f"'{c}'" + (f" (có phải '{close[0]}'?)" if close else ""))
            raise RegisterError(self.path, [f"không có đơn vị mã {', '.join(hints)}"])
        wanted = set(codes)
        return [u for u in self.units if u.code in wanted]


def read_register(path: str | Path) -> Register:
    """Read a units register; raise :class:`RegisterError` listing every bad row."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise RegisterError(str(path), [f"không đọc được tệp: {err.strerror or err}"]) from err
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise RegisterError(str(path), [
            f"tệp không phải UTF-8 (byte lỗi ở vị trí {err.start}); hãy lưu lại dưới dạng CSV UTF-8"
        ]) from err
    return parse_register(nfc(text), str(path))


def parse_register(text: str, source: str = "<units>") -> Register:
    problems: list[str] = []
    reader = csv.DictReader(io.StringIO(text))
    header = [h.strip() for h in (reader.fieldnames or [])]
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        raise RegisterError(source, [f"dòng 1: thiếu cột {', '.join(missing)} (cần: {', '.join(COLUMNS)})"])
    unknown = [h for h in header if h and h not in COLUMNS]
    for h in unknown:
        problems.append(f"dòng 1: cột '{h}' không được dùng (các cột: {', '.join(COLUMNS)})")
    units: list[Unit] = []
    seen: dict[str, int] = {}
    for rowno, row in enumerate(reader, start=2):
        row = {(k or "").strip(): (v or "").strip() for k, v in row.items() if k is not None}
        if not any(row.values()):
            continue
        code, name, kind = row.get("code", ""), row.get("name", ""), row.get("kind", "")
        bad = False
        if not code:
            problems.append(f"dòng {rowno}: thiếu mã đơn vị (cột code)")
            bad = True
        elif not _CODE.match(code):
            problems.append(f"dòng {rowno}: mã '{code}' chỉ được gồm chữ không dấu, số, '-' hoặc '_' (tối đa 32 ký tự)")
            bad = True
        elif code in seen:
            problems.append(f"dòng {rowno}: mã '{code}' trùng với dòng {seen[code]}")
            bad = True
        else:
            seen[code] = rowno
        if not name:
            problems.append(f"dòng {rowno}: thiếu tên đơn vị (cột name)")
            bad = True
        if kind not in UNIT_KINDS:
            problems.append(f"dòng {rowno}: loại đơn vị '{kind}' không hợp lệ (dùng: {', '.join(UNIT_KINDS)})")
            bad = True
        try:
            order = int(row.get("order", ""))
        except ValueError:
            problems.append(f"dòng {rowno}: thứ tự '{row.get('order', '')}' phải là số nguyên")
            order, bad = 0, True
        email = row.get("email", "")
        if email and not _EMAIL.match(email):
            problems.append(f"dòng {rowno}: địa chỉ thư '{email}' không hợp lệ")
            bad = True
        if bad:
            continue
        units.append(Unit(
            code=code, name=name, kind=kind, order=order, head_title=row.get("head_title", ""),
            authority=row.get("authority", ""), email=email, parent=row.get("parent", ""),
            header_name=row.get("header_name", ""), abbr=row.get("abbr", ""),
            place=row.get("place", ""), gso_code=row.get("gso_code", ""),
        ))
    names: dict[str, str] = {}
    for u in units:
        key = match_key(u.name)
        if key in names:
            problems.append(f"đơn vị '{u.code}' trùng tên với '{names[key]}' ({u.name})")
        names[key] = u.code
    if not units and not problems:
        problems.append("danh sách không có đơn vị nào")
    if problems:
        raise RegisterError(source, problems)
    units.sort(key=lambda u: (u.order, u.code))
    return Register(tuple(units), source)
