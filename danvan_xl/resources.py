"""Where the bundled forms and the sample district are, installed or in a source checkout.

In a wheel they sit inside the package as ``danvan_xl/forms`` (from ``workbook_templates/``) and
``danvan_xl/sample`` (from ``samples/``); in a source checkout they are the top-level folders.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent
_CHECKOUT = _PACKAGE.parent


def _data_dir(installed: str, checkout: str) -> Path:
    inside = _PACKAGE / installed
    return inside if inside.is_dir() else _CHECKOUT / checkout


def bundled_forms_root() -> Path:
    return _data_dir("forms", "workbook_templates")


def bundled_form_dir(form_id: str) -> Path | None:
    if not form_id or "/" in form_id or "\\" in form_id or form_id.startswith("."):
        return None
    path = bundled_forms_root() / form_id
    return path if (path / "form.yaml").is_file() else None


def sample_dir() -> Path:
    return _data_dir("sample", "samples")
