"""Fast path for many feedback workbooks: record the writer's calls, replay one prototype per shape.

A feedback workbook is the template writer's output for one unit's values and findings. Most of its
cost is xlsxwriter turning the writer's calls into XML; the writer's own decisions are cheap. So for
each unit we run the writer against a recorder (a stand-in workbook that only notes the calls, with
the unit's name and code as placeholders, as in :mod:`template_stamp`), and reduce the calls to a
*shape*: every call with its arguments, except that cell strings, cell numbers, formula results and
comment texts become numbered slots (equal strings share a slot, as xlsxwriter shares them). The
first time a shape comes twice, xlsxwriter replays its calls once with placeholder strings and
sentinel numbers (the prototype); every later unit of that shape gets the prototype's zip with the
shared strings part rewritten by xlsxwriter's own writer and the slots of the other parts filled
in, only the changed parts recompressed. Same calls in the same order give the same styles, string
order, dimensions and comments, so the result is byte-identical to
:func:`template_writer.build_template` (tested on every demo and fixture unit and on odd strings);
anything a slot could not reproduce exactly (control characters, edge spaces in a comment,
non-finite numbers, very long strings, unusual unit names, rules on pre-filled fields) takes the
ordinary path.
"""

from __future__ import annotations

import gc
import io
import math
import pickle
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from xlsxwriter.sharedstrings import SharedStrings
from xlsxwriter.xmlwriter import XMLwriter

from .form import Form
from .layout import build_layout
from .template_stamp import _CODE, _NAME, _PLAIN, _escape, join_zip, split_zip
from .template_writer import Annotation, FeedbackSheet, Prefill, TemplateContext, _Writer, build_template, new_workbook
from .units import Unit

_OPEN, _CLOSE = "\ue020", "\ue021"  # string slot i is written as _OPEN + str(i) + _CLOSE
_SLOT = re.compile(("(" + _OPEN + r")(\d+)" + _CLOSE).encode())
_SENTINEL = re.compile(rb"-?7\.7\d{8,}[Ee]\+?299")
_PIECE = re.compile(b"|".join([_OPEN.encode() + rb"(\d+)" + _CLOSE.encode(), b"(" + _SENTINEL.pattern + b")",
                               b"(" + _NAME.encode() + b")", b"(" + _CODE.encode() + b")"]))
_ERROR_CODES = ("#DIV/0!", "#N/A", "#NAME?", "#NULL!", "#NUM!", "#REF!", "#VALUE!")
_MAX_TEXT = 30000
_MAX_PROTOTYPES = 200
_control_escaped = XMLwriter._escape_control_characters
_SST = "xl/sharedStrings.xml"


_SENTINELS: list[float] = []


def _sentinel(i: int) -> float:
    """Number slot i's stand-in: a value no form or unit writes, unique in every text form."""
    while len(_SENTINELS) <= i:
        _SENTINELS.append(float(f"7.7{len(_SENTINELS):08d}77e299"))
    return _SENTINELS[i]


def _result_sentinel(i: int) -> float:
    return -_sentinel(i)


class _Fmt:
    """A format as the recorder hands it out: only its creation number matters."""

    __slots__ = ("n",)

    def __init__(self, n: int) -> None:
        self.n = n

    def __repr__(self) -> str:
        return f"F{self.n}"

    def __reduce__(self) -> tuple[type[_Fmt], tuple[int]]:  # pickled for shape keys: a quarter faster than slots state
        return _Fmt, (self.n,)


class _Sheet:
    def __init__(self, book: _Recorder, index: int, name: str) -> None:
        self._book, self._index, self.name = book, index, name

    def __getattr__(self, method: str) -> Any:
        if method.startswith("_"):
            raise AttributeError(method)

        log, index = self._book.log, self._index

        def call(*args: Any, **kwargs: Any) -> int:
            log.append((index, method, args, kwargs))
            return 0
        setattr(self, method, call)  # found directly from now on
        return call


class _Recorder:
    """Stands in for an xlsxwriter workbook and notes what the writer asks of it."""

    def __init__(self) -> None:
        self.log: list[tuple[int, str, tuple, dict]] = []
        self.sheets: list[_Sheet] = []
        self.n_formats = 0

    def add_format(self, props: dict | None = None) -> _Fmt:
        fmt = _Fmt(self.n_formats)
        self.n_formats += 1
        self.log.append((-1, "add_format", (props,), {}))
        return fmt

    def add_worksheet(self, name: str | None = None, worksheet_class: Any = None) -> _Sheet:
        sheet = _Sheet(self, len(self.sheets), name or "")
        self.sheets.append(sheet)
        self.log.append((-1, "add_worksheet", (name,), {"worksheet_class": worksheet_class}))
        return sheet

    def worksheets(self) -> list[_Sheet]:
        return self.sheets

    def get_worksheet_by_name(self, name: str) -> _Sheet | None:
        return next((s for s in self.sheets if s.name == name), None)

    def __getattr__(self, method: str) -> Any:
        if method.startswith("_"):
            raise AttributeError(method)

        def call(*args: Any, **kwargs: Any) -> int:
            self.log.append((-1, method, args, kwargs))
            return 0
        return call


# which positional argument of a worksheet call is cell content, and of what sort
_VALUE_ARG = {"write_string": (2, "s"), "merge_range": (4, "s"), "write_number": (2, "n"),
              "write_formula": (4, "f"), "write_comment": (2, "c")}


@dataclass
class _Shape:
    key: bytes  # the pickled call list with slots (equal keys: equal calls up to slot values)
    abstract: list[tuple]  # the calls, a slot's argument replaced by its marker
    strings: list[str]  # the unit's string for each string slot
    numbers: list[float]  # cell numbers, by slot
    results: list[Any]  # numeric formula results, by slot


def _shape(log: list[tuple[int, str, tuple, dict]]) -> _Shape | None:
    """Reduce a recorded call list to its shape, or None when a value cannot go through a slot."""
    string_slot: dict[str, int] = {}
    strings: list[str] = []
    numbers: list[float] = []
    results: list[Any] = []
    abstract: list[tuple] = []
    for entry in log:
        spec = _VALUE_ARG.get(entry[1]) if entry[0] >= 0 else None
        if spec is None or len(entry[2]) <= spec[0]:
            abstract.append(entry)
            continue
        sheet, method, args, kwargs = entry
        pos, sort = spec
        value = args[pos]
        marker: Any
        if sort in ("s", "c") or (sort == "f" and isinstance(value, str)):
            if not isinstance(value, str) or value == "" or (sort == "f" and value in _ERROR_CODES):
                marker = ("lit", value)
            else:
                if len(value) > _MAX_TEXT:  # xlsxwriter would cut it
                    return None
                if sort == "c" and value != value.strip():  # a comment's edge spaces change its <t>
                    return None
                if sort != "s" and _control_escaped(value) != value:  # only shared strings are rewritten whole
                    return None
                if value not in string_slot:
                    string_slot[value] = len(strings)
                    strings.append(value)
                i = string_slot[value]
                marker = ("s", sort, i)
        elif sort == "n":
            if type(value) not in (int, float) or not math.isfinite(value):
                return None
            marker = ("n",)
            numbers.append(value)
        else:  # formula result that is not a string
            if isinstance(value, bool) or value is None:
                marker = ("lit", value)
            elif type(value) in (int, float) and math.isfinite(value):
                marker = ("r",)
                results.append(value)
            else:
                return None
        abstract.append((sheet, method, args[:pos], marker, args[pos + 1:], kwargs))
    return _Shape(pickle.dumps(abstract, 5), abstract, strings, numbers, results)


def _calls(abstract: list[tuple]) -> list[tuple[int, str, tuple, dict]]:
    """The calls of a shape with placeholder strings and sentinel numbers in its slots."""
    calls = []
    numbers = results = 0
    for entry in abstract:
        if len(entry) == 4:
            calls.append(entry)
            continue
        sheet, method, before, marker, after, kwargs = entry
        if marker[0] == "lit":
            value = marker[1]
        elif marker[0] == "s":
            value = f"{_OPEN}{marker[2]}{_CLOSE}"
        elif marker[0] == "n":
            value, numbers = _sentinel(numbers), numbers + 1
        else:
            value, results = _result_sentinel(results), results + 1
        calls.append((sheet, method, (*before, value, *after), kwargs))
    return calls


def _replay(calls: list[tuple[int, str, tuple, dict]]) -> bytes | None:
    """Play recorded calls into a real workbook; None if xlsxwriter refuses any of them."""
    buffer = io.BytesIO()
    wb = new_workbook(buffer)
    formats: list[Any] = []
    sheets: list[Any] = []

    def real(v: Any) -> Any:
        if isinstance(v, _Fmt):
            return formats[v.n]
        if isinstance(v, dict):
            return {k: real(x) for k, x in v.items()}
        return v

    try:
        for sheet, method, args, kwargs in calls:
            if sheet < 0 and method == "add_format":
                formats.append(wb.add_format(*args))
                continue
            if sheet < 0 and method == "add_worksheet":
                sheets.append(wb.add_worksheet(*args, **kwargs))
                continue
            target = wb if sheet < 0 else sheets[sheet]
            rc = getattr(target, method)(*[real(a) for a in args], **{k: real(v) for k, v in kwargs.items()})
            if method in ("data_validation", "define_name") and rc != 0:
                return None
        wb.close()
    except Exception:  # the ordinary path reports the same problem properly
        return None
    return buffer.getvalue()


class _Prototype:
    def __init__(self, data: bytes, shape: _Shape) -> None:
        split = split_zip(data)
        self.ok = split is not None
        self.entries, self.end = split or ([], b"")
        self.sst_order: list[int | None] = []
        self.sst_head = self.sst_tail = b""
        # per member: None when copied as compressed, else its content cut at its slots and the slots
        self.pieces: list[tuple[list[bytes], list[tuple[str, int]]] | None] = []
        marks = (_OPEN.encode(), _NAME.encode(), _CODE.encode())
        found: dict[bytes, int] = {}
        holding: list[bool] = []
        for entry in self.entries:
            sentinels = _SENTINEL.findall(entry.content)
            for s in sentinels:
                found[s] = found.get(s, 0) + 1
            holding.append(bool(sentinels) or any(m in entry.content for m in marks))
            if entry.name == _SST:
                self._read_sst(entry.content, len(shape.strings))
        expected = {f"{_sentinel(i):.16G}".encode() for i in range(len(shape.numbers))}
        expected |= {str(_result_sentinel(i)).encode() for i in range(len(shape.results))}
        if set(found) != expected or any(n != 1 for n in found.values()):
            self.ok = False  # a sentinel went missing or shows up where a slot is not
        if not self.ok:
            return
        where = {f"{_sentinel(i):.16G}".encode(): ("n", i) for i in range(len(shape.numbers))}
        where |= {str(_result_sentinel(i)).encode(): ("r", i) for i in range(len(shape.results))}
        for entry, holds in zip(self.entries, holding, strict=True):
            if not holds:
                self.pieces.append(None)
                continue
            segments: list[bytes] = []
            slots: list[tuple[str, int]] = []
            at, raw = 0, entry.content
            if entry.name != _SST:  # the shared strings are rebuilt whole (_sst)
                for m in _PIECE.finditer(raw):
                    segments.append(raw[at:m.start()])
                    at = m.end()
                    if m.group(1) is not None:
                        slots.append(("s", int(m.group(1))))
                    elif m.group(2) is not None:
                        slots.append(where[m.group(2)])
                    else:
                        slots.append(("name", 0) if m.group(3) is not None else ("code", 0))
            segments.append(raw[at:])
            self.pieces.append((segments, slots))

    def _read_sst(self, xml: bytes, n_strings: int) -> None:
        head = re.match(rb'.*?<sst [^>]*count="(\d+)" uniqueCount="(\d+)">', xml, re.DOTALL)
        items = re.findall(rb"<si><t>(.*?)</t></si>", xml, re.DOTALL)
        order: list[int | None] = []
        for item in items:
            m = _SLOT.fullmatch(item)
            if m is None and item != b"":  # every non-empty cell string is a slot
                self.ok = False
                return
            order.append(int(m.group(2)) if m else None)
        if head is None or len(order) != int(head.group(2)) or len(set(order)) != len(order):
            self.ok = False
            return
        first, last = xml.find(b"<si>"), xml.rfind(b"</si>")
        if first < 0 or last < 0:
            self.ok = False
            return
        self.sst_order = order
        self.sst_head, self.sst_tail = xml[:first], xml[last + len(b"</si>"):]

    def stamp(self, unit: Unit, shape: _Shape) -> bytes:
        name, code = _escape(unit.name), _escape(unit.code)

        def real(s: str) -> str:
            return s.replace(_NAME, unit.name).replace(_CODE, unit.code)

        def fill(sort: str, i: int) -> bytes:
            if sort == "s":
                return _escape(real(shape.strings[i]))
            if sort == "n":
                return f"{shape.numbers[i]:.16G}".encode()
            if sort == "r":
                return str(shape.results[i]).encode()
            return name if sort == "name" else code
        contents: list[bytes | None] = []
        for entry, pieces in zip(self.entries, self.pieces, strict=True):
            if pieces is None:
                contents.append(None)
            elif entry.name == _SST:
                contents.append(self._sst(shape, real))
            else:
                segments, slots = pieces
                joined = [segments[0]]
                for (sort, i), segment in zip(slots, segments[1:], strict=True):
                    joined.append(fill(sort, i))
                    joined.append(segment)
                contents.append(b"".join(joined))
        return join_zip(self.entries, self.end, contents)

    def _sst(self, shape: _Shape, real: Any) -> bytes:
        """The shared strings part: the prototype's head and tail around each string's ``<si>``
        element as xlsxwriter's own writer gives it (the same strings recur from unit to unit)."""
        items = [_si("" if i is None else real(shape.strings[i])) for i in self.sst_order]
        return self.sst_head + b"".join(items) + self.sst_tail


_SI_CACHE: dict[str, bytes] = {}


def _si(text: str) -> bytes:
    """One shared string's ``<si>`` element, written by xlsxwriter's shared strings writer."""
    item = _SI_CACHE.get(text)
    if item is None:
        part = SharedStrings()
        fh = io.StringIO()
        part._set_filehandle(fh)
        part._write_si(text)
        item = fh.getvalue().encode("utf-8")
        if len(_SI_CACHE) > 100_000:
            _SI_CACHE.clear()
        _SI_CACHE[text] = item
    return item


class FeedbackStamper:
    """Builds feedback workbooks for many units of one form and context (one process)."""

    def __init__(self, form: Form, ctx: TemplateContext, *, eager: bool = False) -> None:
        """``eager`` builds a prototype for a shape the first time it is met (tests); by default
        a shape met only once is built the ordinary way."""
        self.form, self.ctx, self.eager = form, ctx, eager
        self.layout = build_layout(form)
        prefilled = {fid for fid, pos in self.layout.fields.items() if pos.field.prefill is not None}
        # a rule reading a pre-filled field (unit name, code…) would see the placeholders
        self.usable = not any(prefilled & set(r.fields) for r in form.rules)
        self._seen: set[bytes] = set()
        self._prototypes: dict[bytes, _Prototype | None] = {}
        self.stamped = 0

    def build(self, unit: Unit, prefill: Prefill, annotations: Sequence[Annotation],
              feedback: FeedbackSheet) -> bytes:
        data = None
        if self.usable:
            collecting = gc.isenabled()
            gc.disable()  # thousands of small tuples, no cycles: collections would cost a third
            try:
                data = self._fast(unit, prefill, annotations, feedback)
            finally:
                if collecting:
                    gc.enable()
        if data is not None:
            self.stamped += 1
            return data
        return build_template(self.form, unit, self.ctx, prefill=prefill, annotations=annotations, feedback=feedback)

    def _fast(self, unit: Unit, prefill: Prefill, annotations: Sequence[Annotation],
              feedback: FeedbackSheet) -> bytes | None:
        if not (_PLAIN.match(unit.name) and _PLAIN.match(unit.code)):
            return None
        given = repr((prefill, [a.message for a in annotations], feedback))
        if "\\ue010" in given or "\\ue011" in given:  # would be taken for the name or code placeholder
            return None
        recorder = _Recorder()
        placeholder = replace(unit, name=_NAME, code=_CODE)
        try:
            _Writer(self.form, self.layout, placeholder, self.ctx, recorder, prefill, annotations).write(feedback)  # type: ignore[arg-type]
        except Exception:
            return None
        shape = _shape(recorder.log)
        if shape is None:
            return None
        if shape.key not in self._prototypes:
            if not self.eager and shape.key not in self._seen:  # a shape met once is not worth a prototype yet
                self._seen.add(shape.key)
                return None
            calls = _calls(shape.abstract)
            text = repr(calls)  # slot markers only where slots are, never in a literal argument
            marked = sum(1 for c in calls for a in c[2] if isinstance(a, str) and _OPEN in a)
            data = _replay(calls) if text.count("\\ue020") == marked else None
            if len(self._prototypes) >= _MAX_PROTOTYPES:  # many different shapes: keep memory bounded
                self._prototypes.clear()
            proto = _Prototype(data, shape) if data is not None else None
            self._prototypes[shape.key] = proto if proto is not None and proto.ok else None
        proto = self._prototypes[shape.key]
        return proto.stamp(unit, shape) if proto is not None else None
