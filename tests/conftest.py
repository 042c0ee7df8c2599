"""Shared fixtures. Tests that need LibreOffice or Dovecot skip when those are absent, unless
DANVAN_REQUIRE_EXTERNAL=1 (set by .ci/run), which turns such skips into failures."""

from __future__ import annotations

import datetime as dt
import os
import shutil
from pathlib import Path

import pytest

from danvan_xl.form import Form, load_form
from danvan_xl.resources import sample_dir
from danvan_xl.template_writer import TemplateContext
from danvan_xl.units import Register, read_register

REQUIRE = os.environ.get("DANVAN_REQUIRE_EXTERNAL") == "1"


def need_program(name: str, why: str) -> str:
    path = shutil.which(name)
    if path is None:
        if REQUIRE:
            pytest.fail(f"{name} is required (DANVAN_REQUIRE_EXTERNAL=1) but not installed: {why}")
        pytest.skip(f"{name} not installed: {why}")
    return path


@pytest.fixture(scope="session")
def form() -> Form:
    return load_form("nam-dan-van-chinh-quyen")


@pytest.fixture(scope="session")
def register() -> Register:
    return read_register(sample_dir() / "units.csv")


@pytest.fixture(scope="session")
def ctx() -> TemplateContext:
    return TemplateContext(2020, dt.date(2020, 12, 10), dt.datetime(2020, 11, 2, 8, 0),
                           "Phòng Nội vụ huyện Tam Nông", "noivu@tamnong.dongthap.example", "0277 3827 xxx")


@pytest.fixture(scope="session")
def soffice() -> str:
    return need_program("soffice", "LibreOffice round trips (Debian package libreoffice-calc-nogui)")


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    return tmp_path
