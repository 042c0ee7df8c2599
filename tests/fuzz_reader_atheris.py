#!/usr/bin/env python3
"""Coverage-guided fuzzing of the reader with atheris (libFuzzer), for long runs by hand or at night.

CI replays a short seeded run of it (``test_fuzz.test_atheris_seeded_run_finds_nothing``). Beside
the hypothesis fuzzers in ``test_fuzz.py`` it differs in two ways:

* it calls the worker's code in-process (``gate.sniff`` then ``workbook_reader.read_workbook``),
  so an unexpected exception is a finding with its traceback, where the worker pool would turn it
  into a "reader-error" rejection;
* libFuzzer keeps the inputs that reach new lines of the reader and mutates those further, inside
  one zip member at a time (the zip is rebuilt with valid CRCs, so mutations get past the zip layer).

Run (atheris comes with the test extras on Linux x86_64):

    python tests/fuzz_reader_atheris.py /tmp/corpus -max_total_time=1800 -timeout=20 -rss_limit_mb=2048 \
        -report_slow_units=5   # an input taking 5 s or more is written as slow-unit-…: a finding too

The corpus folder is seeded with the sample returns (``samples/returns``: Excel, LibreOffice .xlsx,
.ods and .xls). A finding is written as ``crash-<sha1>`` in the current folder; minimise it with
``-minimize_crash=1 -runs=10000 crash-…``, fix the reader, and keep the file with its expected
outcome in ``tests/regressions/`` (``test_fuzz.test_regression_files`` replays it).

python-calamine aborts the process on some damaged .xls files (it asks for hundreds of GB when a
record lies about its size): nothing in-process can catch that, which is why collect parses in
isolated workers, and such a file is rejected as "parser-crashed" (a kept example:
``tests/regressions/calamine-aborts-allocating-for-a-lying-xls-record.xls``). So that these known,
isolated aborts do not stop the fuzzer, an .xls input is first opened by python-calamine in a
forked child with the workers' memory limit; when the child dies, the input is one the workers
handle by dying (or stop at their time limit), and it is not tried in-process. A "deadly signal"
that still ends a run is a new kind of native crash: check what ``danvan collect`` says of the
input and keep it.
"""

from __future__ import annotations

import io
import os
import random
import resource
import shutil
import signal
import sys
from pathlib import Path

import atheris
import hostile  # tests/: the script's own folder is on sys.path
import python_calamine

with atheris.instrument_imports():
    from danvan_xl.form import load_form
    from danvan_xl.gate import Rejected, sniff
    from danvan_xl.workbook_reader import ReadResult, read_workbook
    from danvan_xl.workspace import Limits

SAMPLES = Path(__file__).resolve().parent.parent / "samples" / "returns"
FORM = load_form("nam-dan-van-chinh-quyen")
LIMITS = Limits()
YEAR = 2020


def _members(data: bytes) -> list[tuple[str, bytes]] | None:
    try:
        return list(hostile.members(data).items())
    except Exception:  # not a zip (an .xls), or one a mutation broke: mutate the raw bytes
        return None


def mutate(data: bytes, max_size: int, seed: int) -> bytes:
    """Mutate inside one member of the zip (weighted to the XML parts), or the raw bytes otherwise."""
    parts = _members(data)
    if not parts:
        return atheris.Mutate(data, max_size)
    rnd = random.Random(seed)
    weights = [5 if name.endswith(".xml") else 1 for name, _ in parts]
    i = rnd.choices(range(len(parts)), weights)[0]
    name, content = parts[i]
    parts[i] = (name, atheris.Mutate(content, max(2 * len(content), 1024)))
    out = hostile.rezip(parts)
    return out if len(out) <= max_size else atheris.Mutate(data, max_size)


def calamine_survives(data: bytes) -> bool:
    """Open and read every sheet with python-calamine in a forked child, as a worker would."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            # libFuzzer's handlers would report the child's abort or alarm as a finding of the run.
            for sig in (signal.SIGABRT, signal.SIGSEGV, signal.SIGBUS, signal.SIGILL, signal.SIGFPE, signal.SIGALRM):
                signal.signal(sig, signal.SIG_DFL)
            limit = LIMITS.memory_mb * 1024 * 1024
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
            signal.alarm(10)  # a loop in native code: the workers' time limit stops those
            wb = python_calamine.CalamineWorkbook.from_filelike(io.BytesIO(data))
            for name in wb.sheet_names:
                wb.get_sheet_by_name(name).to_python(skip_empty_area=False)
        except BaseException:
            pass
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    return os.WIFEXITED(status)


def test_one_input(data: bytes) -> None:
    if data.startswith(b"\xd0\xcf\x11\xe0") and not calamine_survives(data):
        return  # a native abort: collect's worker dies and the file is rejected as "parser-crashed"
    try:
        sniffed = sniff(data, LIMITS)
        result = read_workbook(data, sniffed, FORM, YEAR, LIMITS, "fuzz.xlsx")
    except Rejected as rej:
        assert rej.code and rej.message, rej
        return
    assert isinstance(result, ReadResult)
    assert result.ok or (result.code and result.message), result


def main() -> None:
    args = [a for a in sys.argv[1:] if not a.startswith("-")]
    if args and not Path(args[0]).is_file():  # seed an empty corpus folder with the sample returns
        corpus = Path(args[0])
        corpus.mkdir(parents=True, exist_ok=True)
        if not any(corpus.iterdir()):
            for sample in sorted(SAMPLES.iterdir()):
                shutil.copy(sample, corpus / sample.name)
    atheris.Setup(sys.argv, test_one_input, custom_mutator=mutate)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
