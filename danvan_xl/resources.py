"""Where the bundled forms and the sample district are, installed or in a source checkout.

In a wheel they are the packages ``danvan_xl.forms`` (from ``workbook_templates/``) and
``danvan_xl.sample`` (from ``samples/``); in a checkout they are the top-level folders.
"""

from __future__ import annotations

import importlib.resources
from pathlib import Path

_CHECKOUT = Path(__file__).resolve().parent.parent


def _package_dir(package: str, checkout_name: str) -> Path:
    try:
        path = Path(str(importlib.resources.files(package)))
        if path.is_dir():
            return path
    except (ModuleNotFoundError, TypeError):
        pass
    return _CHECKOUT / checkout_name


def bundled_forms_root() -> Path:
    return _package_dir("danvan_xl.forms", "workbook_templates")


def bundled_form_dir(form_id: str) -> Path | None:
    if not form_id or "/" in form_id or "\\" in form_id or form_id.startswith("."):
        return None
    path = bundled_forms_root() / form_id
    return path if (path / "form.yaml").is_file() else None


def sample_dir() -> Path:
    return _package_dir("danvan_xl.sample", "samples")
