"""The committed sample returns (samples/returns) still match the bundled form and collect as documented."""

from __future__ import annotations

import pytest

from danvan_xl.gate import sniff
from danvan_xl.resources import sample_dir
from danvan_xl.workbook_reader import read_workbook
from danvan_xl.workspace import Limits

SAMPLES = sorted((sample_dir() / "returns").glob("2020_*"))


def test_samples_exist():
    kinds = {p.suffix for p in SAMPLES}
    assert {".xlsx", ".ods", ".xls"} <= kinds


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.name)
def test_sample_returns_are_current(form, path):
    """If this fails after editing form.yaml, rebuild them: python -m danvan_xl.sample_data samples/returns"""
    data = path.read_bytes()
    result = read_workbook(data, sniff(data, Limits()), form, 2020, Limits(), path.name)
    assert result.ok, f"{path.name}: {result.message}"
    errors = [f for f in result.findings if f.severity == "error"]
    if "co-loi" in path.name:
        assert errors, "the sample with problems must have problems"
    else:
        assert not errors
