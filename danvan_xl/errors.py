"""Exceptions: things that stop an operation. Data problems are findings, never exceptions.

Each class carries the exit code the CLI uses (design.md §3.7: 0 done, 1 data errors or rejected
files, 2 bad usage or configuration) and a Vietnamese message meant for the office clerk.
"""

from __future__ import annotations


class DanvanError(Exception):
    """Base for errors that stop a danvan_xl operation."""

    exit_code = 2


class ConfigError(DanvanError):
    """The workspace, its danvan.toml or the units register is unusable."""


class FormError(DanvanError):
    """The form definition is invalid; carries every problem found."""

    def __init__(self, path: str, problems: list[str]) -> None:
        self.path = path
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"Định nghĩa biểu mẫu {path} có {len(problems)} lỗi:\n{lines}")


class RegisterError(ConfigError):
    """The units register has bad rows; carries every problem found."""

    def __init__(self, path: str, problems: list[str]) -> None:
        self.path = path
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"Danh sách đơn vị {path} có {len(problems)} lỗi:\n{lines}")


class TemplateBuildError(DanvanError):
    """A workbook could not be written (a bug in the definition or in danvan_xl)."""


class OutputError(DanvanError):
    """An output file or folder could not be written (disk full, read-only, permission)."""

    exit_code = 2


class LedgerError(DanvanError):
    """The ledger is unusable (corrupt, wrong schema)."""

    exit_code = 2


class LedgerBusy(LedgerError):
    """Another danvan run holds the workspace lock."""

    exit_code = 1


class MailError(DanvanError):
    """A message could not be built, sent or fetched."""

    exit_code = 1
