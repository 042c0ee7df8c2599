"""Vietnamese for click's own messages (usage errors, help headings).

click marks its strings with ``gettext``; it imports ``gettext``/``ngettext`` into each module, so
we replace those module globals with a lookup in the table below. Unknown strings fall back to
English, so a new click release degrades gracefully instead of breaking.
"""

from __future__ import annotations

import importlib

_VI = {
    "Usage:": "Cách dùng:",
    "Options": "Tùy chọn",
    "Commands": "Lệnh",
    "Positional arguments": "Đối số",
    "Show this message and exit.": "Hiện hướng dẫn này rồi thoát.",
    "Show the version and exit.": "Hiện phiên bản rồi thoát.",
    "%(prog)s, version %(version)s": "%(prog)s, phiên bản %(version)s",
    "Error: {message}": "Lỗi: {message}",
    "Try '{command} {option}' for help.": "Xem hướng dẫn: '{command} {option}'.",
    "No such option {name!r}.": "Không có tùy chọn {name!r}.",
    "No such command {name!r}.": "Không có lệnh {name!r}.",
    "Missing command.": "Thiếu tên lệnh.",
    "Missing argument": "Thiếu đối số",
    "Missing option": "Thiếu tùy chọn",
    "Missing parameter": "Thiếu tham số",
    "Missing {param_type}": "Thiếu {param_type}",
    "Missing parameter: {param_name}": "Thiếu tham số: {param_name}",
    "Invalid value for {param_hint}: {message}": "Giá trị không hợp lệ cho {param_hint}: {message}",
    "Invalid value: {message}": "Giá trị không hợp lệ: {message}",
    "Option {name!r} does not take a value.": "Tùy chọn {name!r} không nhận giá trị.",
    "Aborted!": "Đã huỷ.",
    "Do you want to continue?": "Tiếp tục?",
    "Repeat for confirmation": "Nhập lại để xác nhận",
    "Error: The two entered values do not match.": "Lỗi: hai lần nhập không khớp nhau.",
    "Error: invalid input": "Lỗi: giá trị nhập không hợp lệ",
    "{value!r} is not a valid {number_type}.": "{value!r} không phải {number_type} hợp lệ.",
    "{value} is not in the range {range}.": "{value} nằm ngoài khoảng {range}.",
    "{name} {filename!r} does not exist.": "Không có {filename!r} (không tìm thấy tệp hay thư mục này).",
    "{name} {filename!r} is a directory.": "{filename!r} là một thư mục, cần một tệp.",
    "{name} {filename!r} is a file.": "{filename!r} là một tệp, cần một thư mục.",
    "{name} {filename!r} is not readable.": "Không đọc được {filename!r} (không có quyền đọc).",
    "{name} {filename!r} is not writable.": "Không ghi được vào {filename!r} (không có quyền ghi).",
    "Could not open file {filename!r}: {message}": "Không mở được tệp {filename!r}: {message}",
    "file": "tệp",
    "directory": "thư mục",
    "path": "đường dẫn",
    "default: {default}": "mặc định: {default}",
    "env var: {var}": "biến môi trường: {var}",
    "Choose from:\n\t{choices}": "Chọn một trong:\n\t{choices}",
    "integer": "số nguyên",
    "float": "số thực",
}
_VI_PLURAL = {
    "Got unexpected extra argument ({args})": "Thừa đối số ({args})",
    "Got unexpected extra arguments ({args})": "Thừa đối số ({args})",
    "Did you mean {possibility}?": "Có phải '{possibility}'?",
    "(Did you mean one of: {possibilities}?)": "(Có phải một trong: {possibilities}?)",
    "Option {name!r} requires an argument.": "Tùy chọn {name!r} cần một giá trị.",
    "Option {name!r} requires {nargs} arguments.": "Tùy chọn {name!r} cần {nargs} giá trị.",
    "{value!r} is not {choice}.": "{value!r} không phải {choice}.",
    "{value!r} is not one of {choices}.": "{value!r} không thuộc {choices}.",
    "{value!r} does not match the format {format}.": "{value!r} không đúng dạng {format}.",
    "{value!r} does not match the formats {formats}.": "{value!r} không đúng các dạng {formats}.",
}


def gettext_vi(message: str) -> str:
    return _VI.get(message, message)


def ngettext_vi(singular: str, plural: str, n: int) -> str:
    chosen = singular if n == 1 else plural
    return _VI_PLURAL.get(chosen, chosen)


# Names click puts into messages without translating them ("'abc' is not a valid integer.").
_TYPE_NAMES = {"IntParamType": "số nguyên", "FloatParamType": "số thực", "IntRange": "số nguyên",
               "FloatRange": "số thực"}


def install() -> None:
    """Point click's message lookups at the Vietnamese table."""
    import click.types

    for cls, name in _TYPE_NAMES.items():
        if hasattr(click.types, cls):
            getattr(click.types, cls).name = name
    for name in ("core", "decorators", "exceptions", "formatting", "parser", "termui", "types", "utils"):
        try:
            module = importlib.import_module(f"click.{name}")
        except ImportError:  # pragma: no cover - click layout changed
            continue
        if hasattr(module, "_"):
            module._ = gettext_vi  # type: ignore[attr-defined]
        if hasattr(module, "ngettext"):
            module.ngettext = ngettext_vi  # type: ignore[attr-defined]
