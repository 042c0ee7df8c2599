"""Fuzzing the reader and the rule engine with a fixed budget (DANVAN_FUZZ_EXAMPLES raises it).

Nightly: ``DANVAN_FUZZ_EXAMPLES=200 pytest tests/test_fuzz.py`` (about 20 minutes on 2 cores).
Every file that ever broke something is kept in tests/regressions/ and replayed here.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import importlib.util
import io
import json
import os
import platform
import subprocess
import sys
import zipfile
from pathlib import Path

import hostile
import pytest
from conftest import REQUIRE
from helpers import SEED_MODELS, SEED_VALUES
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from danvan_xl import expr
from danvan_xl.generate import template_context
from danvan_xl.isolation import Crash, Job, WorkerPool
from danvan_xl.template_writer import Prefill, build_template
from danvan_xl.workbook_reader import ReadResult
from danvan_xl.workspace import Limits, init_workspace

BUDGET = int(os.environ.get("DANVAN_FUZZ_EXAMPLES", "10"))
REGRESSIONS = Path(__file__).parent / "regressions"
ATHERIS_RUNS = int(os.environ.get("DANVAN_ATHERIS_RUNS", "12000"))  # ~40 s for the reader; see below


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    ws = init_workspace(tmp_path_factory.mktemp("fuzz") / "ws", issue_date=dt.date(2020, 11, 2))
    form, unit = ws.load_form(), ws.load_register().get("TN-VP")
    data = build_template(form, unit, template_context(ws), prefill=Prefill(dict(SEED_VALUES), {"dvk_mo_hinh": SEED_MODELS}))
    return form, data


def _parse_all(form, files: list[bytes], limits: Limits | None = None, name: str = "f{}.xlsx") -> dict[int, object]:
    pool = WorkerPool(str(form.folder), 2020, limits or Limits(timeout_seconds=20, memory_mb=1024), 2)
    return dict(pool.run(Job(i, d, name.format(i)) for i, d in enumerate(files)))


_MUTATION = st.tuples(
    st.sampled_from(["xl/workbook.xml", "xl/sharedStrings.xml", "xl/styles.xml", "docProps/custom.xml", "TiepDan",
                     "ThongTin", "_meta"]),
    st.sampled_from(["flip", "insert", "delete", "swap-digit"]),
    st.floats(0, 1),
    st.integers(0, 255),
)


def _mutate(data: bytes, mutation: tuple) -> tuple[bytes, str]:
    target, kind, where, byte = mutation
    parts = hostile.members(data)
    name = target if target in parts else hostile.sheet_name_of(data, target)
    content = bytearray(parts[name])
    pos = min(int(where * len(content)), len(content) - 1)
    if kind == "flip":
        content[pos] = byte
    elif kind == "insert":
        content[pos:pos] = bytes([byte])
    elif kind == "delete":
        del content[pos]
    else:  # change a digit: the sneakiest edit, values and addresses are digits
        digits = [i for i, c in enumerate(content) if 48 <= c <= 57]
        if digits:
            content[digits[int(where * (len(digits) - 1))]] = 48 + byte % 10
    parts[name] = bytes(content)
    return hostile.rezip(parts), name


@settings(max_examples=BUDGET, deadline=None, suppress_health_check=list(HealthCheck),
          phases=[Phase.explicit, Phase.reuse, Phase.generate])
@given(mutations=st.lists(_MUTATION, min_size=40, max_size=40))
def test_mutated_workbooks_never_escape_the_reader(good, mutations):
    form, data = good
    baseline = _parse_all(form, [data])[0]
    assert isinstance(baseline, ReadResult) and baseline.ok
    mutated = [_mutate(data, m) for m in mutations]
    results = _parse_all(form, [m[0] for m in mutated])
    assert sorted(results) == list(range(len(mutated)))  # every file answered: no hang, no lost job
    for i, (content, member) in enumerate(mutated):
        result = results[i]
        assert isinstance(result, ReadResult | Crash)
        if isinstance(result, ReadResult) and not result.ok:
            assert result.code and result.message and "Traceback" not in result.message
            if result.code == "reader-error":  # the worker's catch-all: an exception the reader did not expect
                _keep(content, f"reader-error-{member.replace('/', '_')}")
            assert result.code != "reader-error", (member, mutations[i], result.message)
        if isinstance(result, ReadResult) and result.ok and not member.startswith("xl/worksheets/") \
                and member != "xl/sharedStrings.xml":
            # A file accepted after a change outside its values keeps the original values, or says why not:
            # every value that differs carries an error finding (e.g. a number format turned into a date).
            changed = {k for k, v in result.data.plain().items() if v != baseline.data.plain().get(k)}
            explained = {f.field for f in result.findings if f.severity == "error"}
            if not changed <= explained:
                _keep(content, f"silently-changed-{member.replace('/', '_')}")
            assert changed <= explained, (member, mutations[i], changed - explained)


def _keep(content: bytes, label: str) -> None:  # pragma: no cover - only when a bug is found
    REGRESSIONS.mkdir(exist_ok=True)
    (REGRESSIONS / f"{label}.xlsx").write_bytes(content)


_TOKENS = st.sampled_from(["a", "b", "t", "models", "k", "1", "2.5", '"x"', "(", ")", ",", "+", "-", "*", "/", "=",
                           "!=", "<", ">=", "and", "or", "not", "sum", "min", "max", "abs", "if", "isnull", "rows",
                           "prev", "true", "false", "$", "×", "≥", "''", "“y”"])
_SYMBOLS = {"a": expr.Symbol(expr.NUM), "b": expr.Symbol(expr.NUM), "t": expr.Symbol(expr.TEXT),
            "models": expr.Symbol(expr.TABLE), "k": expr.Symbol(expr.NUM, 0.5)}
_VALUES = st.one_of(st.none(), st.just(expr.NA), st.integers(-5, 5), st.floats(-1e6, 1e6), st.text(max_size=3))


@settings(max_examples=300 * BUDGET, deadline=None)
@given(tokens=st.lists(_TOKENS, max_size=14), a=_VALUES, b=_VALUES, t=_VALUES)
def test_rule_language_only_raises_its_own_errors(tokens, a, b, t):
    text = " ".join(tokens)
    try:
        node = expr.parse(text)
        expr.check(node, _SYMBOLS)
    except (expr.ExprSyntaxError, expr.ExprTypeError) as err:
        assert err.pos >= 0
        return
    env = expr.Env({"a": a, "b": b, "t": t}, {"a": b}, {"models": 2}, {"k": 0.5})
    with contextlib.suppress(expr.Undefined):  # division by zero is the one error evaluation may raise
        expr.evaluate(node, env)


@pytest.mark.parametrize("path", sorted(p for p in REGRESSIONS.iterdir() if p.suffix in {".xlsx", ".xls", ".ods"}),
                         ids=lambda p: p.name)
def test_regression_files(good, path):
    """Each kept file documents its expected outcome in a .json next to it."""
    form, _ = good
    expected = json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))
    result = _parse_all(form, [path.read_bytes()], name=path.name)[0]
    if expected.get("crash"):  # a native abort nothing in-process can catch: the worker dies, the run goes on
        assert isinstance(result, Crash), result
        return
    assert isinstance(result, ReadResult)  # not a Crash: the worker survived it
    assert (result.ok, result.code) == (expected["ok"], expected["code"]), result.message


@pytest.mark.parametrize("path", sorted(p for p in REGRESSIONS.iterdir() if p.name.startswith("intake-")
                                         and p.suffix != ".json"), ids=lambda p: p.name)
def test_intake_regression_files(tmp_path, path):
    """Messages and archives that once ended a whole collect: now each is one outcome in a finished run."""
    from danvan_xl.collect import collect

    expected = json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))
    ws = init_workspace(tmp_path / "ws", issue_date=dt.date(2020, 11, 2))
    result = collect(ws, [path])
    assert [o.outcome for o in result.outcomes] == expected["outcomes"], [o.message for o in result.outcomes]
    if "code" in expected:
        assert result.outcomes[0].code == expected["code"], result.outcomes[0].message


def test_zip_mutations_keep_valid_crcs(good):
    _, data = good
    mutated, _ = _mutate(data, ("_meta", "flip", 0.5, 65))
    with zipfile.ZipFile(io.BytesIO(mutated)) as z:
        assert z.testzip() is None


@pytest.mark.parametrize(("harness", "runs"), [("fuzz_reader_atheris.py", ATHERIS_RUNS),
                                               ("fuzz_intake_atheris.py", ATHERIS_RUNS * 2 // 3)])
def test_atheris_seeded_run_finds_nothing(tmp_path, harness, runs):
    """A short coverage-guided run (fixed seed and number of inputs, so CI replays the same ones) of
    each atheris harness: the reader in-process on mutations of the sample returns (.xlsx, .ods,
    .xls; 12,000 inputs, ~40 s), and the intake on mutated messages and archives (8,000, ~32 s).
    Any exception the code does not expect is a failure, with the input kept beside it. Nightly: a
    larger ``DANVAN_ATHERIS_RUNS``, or the harnesses themselves without ``-runs``. Against the code
    before the fixes these harnesses led to, the same budgets fail within seconds (a calamine
    panic in the reader, a NUL in a charset in the intake)."""
    if importlib.util.find_spec("atheris") is None:
        why = "atheris not installed (pip install '.[test]' installs it on Linux x86_64)"
        supported = sys.platform == "linux" and platform.machine() == "x86_64"
        if REQUIRE and supported:
            pytest.fail(f"{why}; required with DANVAN_REQUIRE_EXTERNAL=1")
        pytest.skip(why)
    proc = subprocess.run(
        [sys.executable, str(Path(__file__).parent / harness), str(tmp_path / "corpus"), "-seed=2020", f"-runs={runs}",
         "-timeout=30", "-rss_limit_mb=2048", "-max_len=400000", f"-artifact_prefix={tmp_path}/"],
        capture_output=True, text=True, timeout=900, env=dict(os.environ, RUST_BACKTRACE="0"))
    found = sorted(p.name for p in tmp_path.glob("*-*") if p.is_file())
    report = [line for line in proc.stderr.splitlines() if "Uncaught Python exception" in line or "Error" in line]
    assert proc.returncode == 0 and not found, (found, report[-5:], proc.stderr[-2000:])


def test_xls_names_are_read_without_loading_sheets(monkeypatch):
    """An .xls file's defined names come from their reference records: xlrd must not load a sheet.

    ``Name.area2d()`` loaded the whole sheet to clip the area, and on the kept regression file xlrd
    then spent 15 s widening rows to a damaged far cell (found by atheris)."""
    import xlrd.sheet

    from danvan_xl.gate import sniff
    from danvan_xl.resources import sample_dir
    from danvan_xl.workbook_reader import open_book

    def refuse(self, bk):
        raise AssertionError("xlrd loaded a sheet")

    monkeypatch.setattr(xlrd.sheet.Sheet, "read", refuse)
    for path in (REGRESSIONS / "xlrd-widens-rows-for-a-far-cell-while-reading-names.xls",
                 sample_dir() / "returns" / "2020_TN-LDTBXH_libreoffice.xls"):
        data = path.read_bytes()
        book = open_book(data, sniff(data, Limits()), Limits(), set())
        assert book.names["cbccvc_ky_luat"] == ("ChiDao", "D22"), path.name
        assert len(book.names) > 100, path.name
