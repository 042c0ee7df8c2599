"""A workspace: one folder per reporting cycle, configured by ``danvan.toml``.

The collecting office, its place name, its units and their order are configuration, never
constants (since 1 July 2025 the same cycle runs at commune or province level). Passwords are
never stored here: they come from ``DANVAN_SMTP_PASSWORD`` / ``DANVAN_IMAP_PASSWORD`` or a prompt.
"""

from __future__ import annotations

import datetime as dt
import shutil
import tomllib
from dataclasses import dataclass, field, fields
from difflib import get_close_matches
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .form import Form, load_form
from .resources import sample_dir
from .textnorm import nfc
from .units import Register, read_register

CONFIG_FILE = "danvan.toml"
DEFAULT_FORM = "nam-dan-van-chinh-quyen"
DEFAULT_YEAR = 2020

_TOP = {"form", "year", "units", "deadline", "issue_date", "office", "mail", "limits"}
SECURITY = ("none", "starttls", "ssl")


@dataclass(frozen=True)
class Office:
    """The collecting office: it issues the templates and signs the district report."""

    name: str = "Phòng Nội vụ"
    parent: str = ""
    header_name: str = ""
    abbr: str = ""
    place: str = ""
    area: str = ""  # the area the report covers, e.g. "huyện Tam Nông"
    signer_authority: str = ""
    signer_title: str = ""
    signer_name: str = ""
    email: str = ""
    phone: str = ""
    recipients: tuple[str, ...] = ()


@dataclass(frozen=True)
class MailSettings:
    sender: str = ""
    smtp_host: str = ""
    smtp_port: int = 587
    smtp_security: str = "starttls"
    smtp_user: str = ""
    imap_host: str = ""
    imap_port: int = 993
    imap_security: str = "ssl"
    imap_user: str = ""
    imap_folder: str = "INBOX"
    pause_seconds: float = 1.0
    retries: int = 3
    max_attachment_mb: float = 10.0
    timeout_seconds: float = 30.0


def _limit(default: Any, note: str) -> Any:
    """A limit's default and its Vietnamese description (shown in every new danvan.toml)."""
    return field(default=default, metadata={"note": note})


@dataclass(frozen=True)
class Limits:
    """Hard limits for untrusted files (reliability.md §1); generous for real workbooks."""

    max_file_mb: float = _limit(25.0, "dung lượng tối đa của một tệp nhận (MB)")
    max_expanded_mb: float = _limit(300.0, "tổng dung lượng sau giải nén của một tệp (MB)")
    max_member_mb: float = _limit(150.0, "dung lượng sau giải nén của một thành phần trong tệp (MB)")
    max_ratio: float = _limit(100.0, "tỉ lệ nén tối đa (chống bom nén)")
    max_members: int = _limit(2000, "số thành phần tối đa trong tệp nén")
    max_cells: int = _limit(2_000_000, "số ô tối đa của một trang")
    max_rows: int = _limit(100_000, "số dòng tối đa của một trang")
    max_cols: int = _limit(500, "số cột tối đa của một trang")
    max_string: int = _limit(32_767, "số ký tự tối đa của một ô chữ")
    timeout_seconds: float = _limit(60.0, "thời gian đọc tối đa của một tệp (giây)")
    memory_mb: int = _limit(2048, "bộ nhớ tối đa khi đọc một tệp (MB)")
    workers: int = _limit(0, "số tiến trình đọc tệp (0 = bằng số lõi CPU)")


_LIMITS = {f.name for f in fields(Limits)}
_OFFICE = {f.name for f in fields(Office)}
_MAIL_FIELDS = {("from" if f.name == "sender" else f.name): f.name for f in fields(MailSettings)}  # key → field
_MAIL = set(_MAIL_FIELDS)


@dataclass(frozen=True)
class Workspace:
    root: Path
    form_ref: str
    year: int
    units_path: Path
    deadline: dt.date
    issue_date: dt.date
    office: Office
    mail: MailSettings = field(default_factory=MailSettings)
    limits: Limits = field(default_factory=Limits)

    # -- lazily loaded parts -------------------------------------------------------
    def load_form(self) -> Form:
        return load_form(self.form_ref, base=self.root)

    def load_register(self) -> Register:
        return read_register(self.units_path)

    # -- folders ---------------------------------------------------------------------
    @property
    def config_path(self) -> Path:
        return self.root / CONFIG_FILE

    @property
    def templates_dir(self) -> Path:
        return self.root / "templates"

    @property
    def ledger_path(self) -> Path:
        return self.root / "danvan.sqlite"

    @property
    def archive_dir(self) -> Path:
        return self.root / "archive"

    @property
    def reports_dir(self) -> Path:
        return self.root / "reports"

    @property
    def feedback_dir(self) -> Path:
        return self.root / "feedback"

    @property
    def outbox_dir(self) -> Path:
        return self.root / "outbox" / "mail"

    @property
    def lock_path(self) -> Path:
        return self.root / ".danvan.lock"


def load_workspace(root: str | Path) -> Workspace:
    """Read ``danvan.toml``; raise :class:`ConfigError` with every problem in Vietnamese."""
    root = Path(root).resolve()
    path = root / CONFIG_FILE
    if not path.is_file():
        raise ConfigError(
            f"Thư mục {root} không phải không gian làm việc (thiếu {CONFIG_FILE}). "
            f"Tạo mới bằng: danvan init {root}"
        )
    try:
        data = tomllib.loads(nfc(path.read_text(encoding="utf-8")))
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: lỗi cú pháp TOML: {err}") from err
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: tệp không phải UTF-8") from err
    problems: list[str] = []
    _unknown(data, _TOP, "", problems)
    for table, allowed in (("office", _OFFICE), ("mail", _MAIL), ("limits", _LIMITS)):
        if not isinstance(data.get(table, {}), dict):
            problems.append(f"[{table}] phải là một bảng")
            data[table] = {}
        _unknown(data.get(table, {}), allowed, f"{table}.", problems)
    year = data.get("year", DEFAULT_YEAR)
    if not isinstance(year, int) or not 2000 <= year <= 2100:
        problems.append(f"year = {year!r}: năm báo cáo phải là số từ 2000 đến 2100")
        year = DEFAULT_YEAR
    deadline = _date(data.get("deadline"), "deadline", problems) or dt.date(year, 12, 10)
    issue_date = _date(data.get("issue_date"), "issue_date", problems) or dt.date(year, 11, 1)
    mail = data.get("mail", {})
    for key in ("smtp_security", "imap_security"):
        if key in mail and mail[key] not in SECURITY:
            problems.append(f"mail.{key} = {mail[key]!r}: chỉ dùng none, starttls hoặc ssl")
    limits, defaults = data.get("limits", {}), Limits()
    for f in fields(Limits):
        if f.name not in limits:
            continue
        value, whole = limits[f.name], isinstance(getattr(defaults, f.name), int)
        ok = isinstance(value, int if whole else (int, float)) and not isinstance(value, bool)
        if not ok or value < (0 if f.name == "workers" else 1e-9):
            kind = "số nguyên" if whole else "số"
            floor = "không âm" if f.name == "workers" else "dương"
            problems.append(f"limits.{f.name} = {value!r}: phải là {kind} {floor}")
    office = _typed(data.get("office", {}), Office(), {k: k for k in _OFFICE}, "office.", problems)
    mail_kwargs = _typed(mail, MailSettings(), _MAIL_FIELDS, "mail.", problems)
    if problems:
        raise ConfigError(f"{path} có lỗi cấu hình:\n" + "\n".join(f"  - {p}" for p in problems))
    return Workspace(
        root=root, form_ref=str(data.get("form", DEFAULT_FORM)), year=year,
        units_path=(root / str(data.get("units", "units.csv"))),
        deadline=deadline, issue_date=issue_date,
        office=Office(**office),
        mail=MailSettings(**mail_kwargs),
        limits=Limits(**{k: v for k, v in data.get("limits", {}).items() if k in _LIMITS}),
    )


def _typed(table: dict[str, Any], defaults: Any, keys: dict[str, str], prefix: str,
           problems: list[str]) -> dict[str, Any]:
    """The known keys of ``table`` as dataclass arguments, each checked against its default's type:
    text (numbers accepted as text), whole numbers, numbers, or a list of texts (a single text is a
    list of one). Unknown keys were reported by :func:`_unknown`."""
    kwargs: dict[str, Any] = {}
    for key, value in table.items():
        if key not in keys:
            continue
        name = keys[key]
        default = getattr(defaults, name)
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if isinstance(default, tuple):
            items = [value] if isinstance(value, str) else value
            if isinstance(items, list) and all(isinstance(x, str) for x in items):
                kwargs[name] = tuple(items)
                continue
            problems.append(f"{prefix}{key} = {value!r}: phải là một danh sách chuỗi, ví dụ [\"Như trên;\"]")
        elif isinstance(default, str):
            if isinstance(value, str) or number:
                kwargs[name] = str(value)
                continue
            problems.append(f"{prefix}{key} = {value!r}: phải là một chuỗi trong dấu nháy kép")
        elif isinstance(default, int) and not isinstance(default, bool):
            if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
                kwargs[name] = value
                continue
            problems.append(f"{prefix}{key} = {value!r}: phải là số nguyên không âm")
        else:
            if number and value >= 0:
                kwargs[name] = float(value)
                continue
            problems.append(f"{prefix}{key} = {value!r}: phải là số không âm")
    return kwargs


def _unknown(table: dict[str, Any], allowed: set[str], prefix: str, problems: list[str]) -> None:
    for key in table:
        if key not in allowed:
            close = get_close_matches(key, sorted(allowed), n=1)
            hint = f" — có phải '{prefix}{close[0]}'?" if close else ""
            problems.append(f"khoá '{prefix}{key}' không hợp lệ{hint}")


def _date(value: Any, key: str, problems: list[str]) -> dt.date | None:
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    problems.append(f"{key} = {value!r}: cần một ngày dạng 2020-12-10")
    return None


# ------------------------------------------------------------------ init

SAMPLE_OFFICE = Office(
    name="Phòng Nội vụ huyện Tam Nông",
    parent="UBND HUYỆN TAM NÔNG",
    header_name="PHÒNG NỘI VỤ",
    abbr="PNV",
    place="Tam Nông",
    area="huyện Tam Nông",
    signer_title="TRƯỞNG PHÒNG",
    signer_name="Nguyễn Văn Minh",
    email="noivu@tamnong.dongthap.example",
    phone="0277 3827 xxx",
    recipients=("Thường trực Huyện ủy", "Ban Dân vận Huyện ủy", "CT, các PCT UBND huyện", "Lưu: VT, PNV"),
)


def init_workspace(
    root: str | Path,
    *,
    form: str = DEFAULT_FORM,
    year: int = DEFAULT_YEAR,
    units: str | Path | None = None,
    issue_date: dt.date | None = None,
) -> Workspace:
    """Create a workspace folder; refuse a non-empty folder rather than overwrite anything."""
    root = Path(root)
    if root.exists() and not root.is_dir():
        raise ConfigError(f"{root} đã tồn tại và không phải thư mục")
    if root.exists() and any(root.iterdir()):
        raise ConfigError(
            f"Thư mục {root} không trống; danvan init không ghi đè. Hãy chọn một thư mục mới hoặc trống."
        )
    form_obj = load_form(form)  # fail early on a bad form, before creating anything
    units_src = Path(units) if units else sample_dir() / "units.csv"
    read_register(units_src)  # likewise: a bad register is reported before anything is written
    if not 2000 <= year <= 2100:
        raise ConfigError(f"Năm {year} không hợp lệ (2000–2100)")
    deadline = form_obj.deadline(year)
    issue = issue_date or dt.date.today()
    root.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(units_src, root / "units.csv")
    sample = units is None
    office = SAMPLE_OFFICE if sample else Office(name="(tên cơ quan tổng hợp)")
    (root / CONFIG_FILE).write_text(_render_config(form, year, deadline, issue, office), encoding="utf-8")
    return load_workspace(root)


def _q(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _render_config(form: str, year: int, deadline: dt.date, issue: dt.date, office: Office) -> str:
    recipients = ", ".join(_q(r) for r in office.recipients)
    return f"""# Không gian làm việc danvan_xl — một chu kỳ báo cáo.
# Sửa các giá trị dưới đây cho đúng cơ quan của mình. Mật khẩu thư điện tử KHÔNG ghi ở đây:
# dùng biến môi trường DANVAN_SMTP_PASSWORD / DANVAN_IMAP_PASSWORD hoặc nhập khi được hỏi.

form = {_q(form)}            # mã biểu mẫu có sẵn, hoặc đường dẫn tới thư mục biểu mẫu
year = {year}                # năm báo cáo
units = "units.csv"          # danh sách đơn vị báo cáo
deadline = {deadline.isoformat()}      # hạn nộp của các đơn vị
issue_date = {issue.isoformat()}    # ngày phát hành biểu mẫu (ghi vào biểu, giữ cố định để tệp sinh lại giống hệt)

[office]                     # cơ quan tổng hợp
name = {_q(office.name)}
parent = {_q(office.parent)}             # cơ quan chủ quản (IN HOA, dòng đầu tiêu đề văn bản)
header_name = {_q(office.header_name)}   # tên cơ quan ban hành (IN HOA)
abbr = {_q(office.abbr)}                 # chữ viết tắt trong ký hiệu văn bản (giữ nguyên hoa/thường)
place = {_q(office.place)}               # địa danh ghi trước ngày tháng
area = {_q(office.area)}                 # địa bàn tổng hợp
signer_authority = {_q(office.signer_authority)}
signer_title = {_q(office.signer_title)}
signer_name = {_q(office.signer_name)}
email = {_q(office.email)}
phone = {_q(office.phone)}
recipients = [{recipients}]

[mail]
from = {_q(office.email)}
smtp_host = ""
smtp_port = 587
smtp_security = "starttls"   # none | starttls | ssl
smtp_user = ""
imap_host = ""
imap_port = 993
imap_security = "ssl"        # none | starttls | ssl
imap_user = ""
imap_folder = "INBOX"

# Giới hạn an toàn với tệp nhận về (mặc định như dưới đây). Bỏ dấu # ở dòng cần đổi.
# (Bảng [limits] nằm cuối tệp: thêm dòng mới ở đây cũng được.)
[limits]
{_render_limits()}
"""


def _render_limits() -> str:
    lines, defaults = [], Limits()
    for f in fields(Limits):
        value = getattr(defaults, f.name)
        shown = str(value) if isinstance(value, int) else f"{value:g}"
        lines.append(f"# {f.name} = {shown}".ljust(30) + f"  # {f.metadata['note']}")
    return "\n".join(lines)
