"""danvan_xl — the annual "Năm Dân vận chính quyền" reporting cycle through Excel workbooks.

Pipeline stages (one module each): :mod:`form` (definition) → :mod:`generate` (templates) →
mail out → :mod:`collect` (returned files into the :mod:`ledger`) → :mod:`checks` (rules) →
:mod:`summary` (district workbook) and :mod:`narrative` (reports).
"""

from __future__ import annotations

__version__ = "0.1.0"

from .errors import DanvanError, FormError
from .form import Form, load_form
from .units import Register, Unit, read_register
from .workspace import Workspace, init_workspace, load_workspace

__all__ = [
    "DanvanError", "Form", "FormError", "Register", "Unit", "Workspace", "__version__",
    "init_workspace", "load_form", "load_workspace", "read_register",
]
