"""``danvan demo``: the whole cycle on the sample district, offline, in one call.

The sample district (huyện Tam Nông, 25 units, 2020) plays out a realistic cycle: the office
issues templates and e-mail drafts; units reply on time, late, twice, zipped, by e-mail, re-saved
by LibreOffice, with mistakes, for the wrong year, or not at all; the office collects, checks,
returns feedback, receives a correction, chases the missing units, compiles the summary and
writes the reports. Every step says what it produced and where.
"""

from __future__ import annotations

import datetime as dt
import email.policy
import os
import shutil
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path
from typing import Any

from .form import Form
from .generate import generate, template_context
from .resources import sample_dir
from .sample_data import fill_workbook, sample_values
from .template_writer import build_template, template_filename
from .units import Unit
from .vocabulary import NA_TEXT
from .workspace import Workspace, init_workspace

ISSUE_DATE = dt.date(2020, 11, 2)


@dataclass
class DemoStep:
    title: str
    detail: str
    outputs: list[Path] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)


@dataclass
class DemoResult:
    root: Path
    steps: list[DemoStep] = field(default_factory=list)


@dataclass(frozen=True)
class Scenario:
    """How one sample unit answers."""

    day: int | None  # day of December 2020 the reply arrives; None = never
    how: str = "xlsx"  # xlsx | zip | eml | eml-zip | fixture
    change: dict[str, Any] = field(default_factory=dict)  # what this unit really reports, over the sample values
    mistake: dict[str, Any] = field(default_factory=dict)  # slips in the first reply, undone by the correction
    justify: dict[str, str] = field(default_factory=dict)
    twice: bool = False
    year: int = 2020
    correction: bool = False  # sends a corrected workbook back after the feedback, on day 12


SCENARIOS: dict[str, Scenario] = {
    "TN-VP": Scenario(8),
    "TN-NV": Scenario(3, "zip"),
    "TN-TP": Scenario(9, "fixture"),
    "TN-TCKH": Scenario(7, "eml"),
    "TN-TNMT": Scenario(6, change={
        "don_tiep_nhan": 14, "don_nam_truoc": 12, "don_btht_tdc": 5, "don_tranh_chap_dat": 6, "don_moi_truong": 1,
        "don_khac": 2, "don_khieu_nai": 0, "don_to_cao": 0, "don_kien_nghi": 14, "vu_viec_dong_nguoi": 0,
        "don_da_chuyen": 12, "don_dang_giai_quyet": 2, "don_con_han": 2, "don_qua_han": 0},
        mistake={"don_tranh_chap_dat": 8}, correction=True),
    "TN-LDTBXH": Scenario(10, "fixture"),
    "TN-VHTT": Scenario(None),
    "TN-GDDT": Scenario(4, "eml", change={"don_khac": "=NA"}),
    "TN-YT": Scenario(14),
    "TN-TTr": Scenario(2, twice=True),
    "TN-KTHT": Scenario(None),
    "TN-NNPTNT": Scenario(9, change={"tthc_tiep_nhan": "text", "don_moi_truong": "text"}),
    "TN-TTVH": Scenario(None),
    "30001": Scenario(5, "eml-zip", change={"tcd_dinh_ky_luot": 40, "tcd_dinh_ky_nguoi": 44},
                      justify={"tcd_toi_thieu_xa": "Chủ tịch UBND thị trấn đi học 3 tháng; Phó Chủ tịch tiếp thay theo lịch."}),
    "30004": Scenario(8, change={"tcd_dinh_ky_luot": 36, "tcd_dinh_ky_nguoi": 39}),
    "30007": Scenario(9, mistake={"vu_viec_dong_nguoi": "nhiều"}, correction=True),
    "30010": Scenario(3, "eml"),
    "30013": Scenario(7, year=2019),
    "30016": Scenario(8),
    "30019": Scenario(9),
    "30022": Scenario(None),
    "30025": Scenario(10),
    "30028": Scenario(9, "fixture"),
    "30031": Scenario(None),
    "30034": Scenario(6),
}


def run_demo(root: str | Path, say: Callable[[DemoStep], None] | None = None, *,
             send_to_local: bool = False) -> DemoResult:
    """Run the demo cycle in ``root`` (a new or empty folder).

    With ``send_to_local`` every message really travels through an SMTP server started on
    127.0.0.1 (templates out, replies in, feedback, corrections, reminders) and the office's
    mailbox is collected; otherwise the replies are files and the office's messages drafts.
    """
    root = Path(root)
    ws = init_workspace(root, issue_date=ISSUE_DATE)
    if send_to_local:
        from .localmail import LocalMailServer

        with LocalMailServer(root / "may-chu-thu") as server:
            return _run(_use_local_server(ws, server.port), say, server)
    return _run(ws, say, None)


def _run(ws: Workspace, say: Callable[[DemoStep], None] | None, server: Any) -> DemoResult:
    root = ws.root
    result = DemoResult(root)

    def step(s: DemoStep) -> None:
        result.steps.append(s)
        if say:
            say(s)

    step(DemoStep("Tạo không gian làm việc", f"huyện Tam Nông, năm {ws.year}, {len(ws.load_register())} đơn vị, "
                  f"hạn nộp {ws.deadline:%d/%m/%Y}", [ws.config_path, ws.units_path]))
    gen = generate(ws)
    step(DemoStep("Sinh biểu mẫu cho từng đơn vị", f"{len(gen.files)} tệp Excel", [gen.out_dir]))
    if server is not None:
        step(_mail_step(ws, "template", "Gửi biểu mẫu qua máy chủ thư trên máy (danvan mail --send)", server.root))
    else:
        for extra in _optional_steps_before_collect(ws):
            step(extra)
    inbox, first, later = prepare_replies(ws, root / "hop-thu-den")
    if server is not None:
        first = [_post_replies(ws, server, first)]
    silent = sum(1 for s in SCENARIOS.values() if s.day is None)
    step(DemoStep("Các đơn vị gửi lại báo cáo (mô phỏng)",
                  f"{len(SCENARIOS) - silent} đơn vị trả lời: đúng hạn, muộn, gửi hai lần, nén .zip, qua thư .eml, "
                  f"lưu bằng LibreOffice (.ods/.xls), có lỗi, sai năm; {silent} đơn vị không gửi"
                  + (" — qua máy chủ thư, vào hộp thư của cơ quan tổng hợp" if server is not None else ""),
                  first if server is not None else [inbox]))
    from .collect import collect

    collected = collect(ws, first)
    step(DemoStep("Thu nhận (danvan collect)", collected.summary(), [ws.ledger_path, ws.archive_dir],
                  [f"{o.outcome_vi}: {o.name} — {o.message}" for o in collected.outcomes if o.outcome != "accepted"]))
    from .checks import run_check

    checked = run_check(ws, annotate=True)
    failing = [u for u in checked.units if u.feedback]
    from .mailer import build_messages, write_drafts

    sent = _send(ws, "feedback").results if server is not None else None
    feedback_mail = sent if sent is not None else write_drafts(ws, build_messages(ws, "feedback"))
    step(DemoStep("Kiểm tra số liệu và gửi phản hồi (danvan check --annotate, danvan mail --feedback)",
                  f"{sum(u.errors for u in checked.units)} lỗi, {sum(u.warnings for u in checked.units)} cảnh báo chưa "
                  f"giải trình; {len(failing)} bảng phản hồi và {len(feedback_mail)} thư gửi kèm",
                  [p for p in (checked.report,) if p] + [ws.feedback_dir]))
    corrections = correct_from_feedback(ws, later)
    if server is not None and corrections:
        corrections = [_post_replies(ws, server, corrections)]
    again = collect(ws, corrections) if corrections else None
    if again is not None:
        step(DemoStep("Đơn vị sửa theo phản hồi và gửi lại", again.summary(), corrections,
                      [f"{o.outcome_vi}: {o.name} [{o.unit}] — {o.message}" for o in again.outcomes
                       if o.outcome != "duplicate"]))
        run_check(ws, annotate=True)  # corrected units no longer have a feedback workbook
    from .status import chase_list, load_status, summary_counts

    statuses = load_status(ws)
    counts = summary_counts(statuses)
    step(DemoStep("Tình hình nộp (danvan status)",
                  f"dự kiến {counts['expected']}, đã nhận {counts['received']}, không lỗi {counts['accepted']}, "
                  f"còn lỗi {counts['with_errors']}, nộp muộn {counts['late']}, chưa nộp {counts['missing']}", [],
                  [f"cần đôn đốc: {s.unit.code} {s.unit.name} ({s.state_vi})" for s in chase_list(statuses)]))
    from .export import export

    step(DemoStep("Xuất số liệu (danvan export)", "mỗi đơn vị một dòng, mỗi mã trường một cột", [export(ws, "csv")]))
    for extra in _optional_steps_after_collect(ws, server):
        step(extra)
    return result


def _use_local_server(ws: Workspace, port: int) -> Workspace:
    """Point the workspace's [mail] table at the demo's server on 127.0.0.1 (plain SMTP, no login)."""
    from .workspace import load_workspace

    text = ws.config_path.read_text(encoding="utf-8")
    text = text.replace('smtp_host = ""', 'smtp_host = "127.0.0.1"').replace("smtp_port = 587", f"smtp_port = {port}")
    text = text.replace('smtp_security = "starttls"', 'smtp_security = "none"')
    text = text.replace("[mail]\n", "[mail]\npause_seconds = 0\n", 1)
    ws.config_path.write_text(text, encoding="utf-8")
    return load_workspace(ws.root)


def _send(ws: Workspace, kind: str) -> Any:
    from .mailer import build_messages, send

    return send(ws, build_messages(ws, kind), password=None)


def _mail_step(ws: Workspace, kind: str, title: str, where: Path) -> DemoStep:
    report = _send(ws, kind)
    return DemoStep(title, report.summary(), [where])


def _post_replies(ws: Workspace, server: Any, files: list[Path]) -> Path:
    """Units answer by e-mail through the local server; returns the office's Maildir."""
    import smtplib

    register = ws.load_register()
    office = ws.office.email or "noivu@example.vn"
    with smtplib.SMTP("127.0.0.1", server.port, timeout=30) as smtp:
        for path in files:
            if path.suffix == ".eml":  # already a message: send it as it is (send_message writes CRLF lines)
                smtp.send_message(email.message_from_bytes(path.read_bytes(), policy=email.policy.SMTP),
                                  to_addrs=[office])
                continue
            code = next((u.code for u in register if u.code in path.name), "")
            unit = register.get(code)
            when = dt.datetime.fromtimestamp(path.stat().st_mtime)
            msg = _reply(unit, ws, when) if unit else EmailMessage()
            msg.add_attachment(path.read_bytes(), maintype="application", subtype="octet-stream", filename=path.name)
            smtp.send_message(msg, to_addrs=[office])
    return server.mailbox(office)


def _optional_steps_before_collect(ws: Workspace) -> list[DemoStep]:
    """E-mail drafts with each unit's template attached (nothing is sent)."""
    from .mailer import build_messages, write_drafts

    drafts = write_drafts(ws, build_messages(ws, "template"))
    return [DemoStep("Soạn thư gửi biểu mẫu (danvan mail)", f"{len(drafts)} thư nháp .eml, mỗi thư kèm biểu mẫu của "
                     "đơn vị; mở bằng Thunderbird/Outlook hoặc gửi bằng danvan mail --send", [ws.outbox_dir])]


def _optional_steps_after_collect(ws: Workspace, server: Any = None) -> list[DemoStep]:
    """Reminders to the units that have not answered, and the reports."""
    from .mailer import build_messages, write_drafts
    from .narrate import write_narratives

    steps = []
    if server is not None:
        steps.append(_mail_step(ws, "reminder", "Gửi thư nhắc đơn vị chưa nộp (danvan remind --send)", server.root))
    else:
        reminders = write_drafts(ws, build_messages(ws, "reminder"))
        steps.append(DemoStep("Soạn thư nhắc đơn vị chưa nộp (danvan remind)", f"{len(reminders)} thư nhắc, kèm lại "
                              f"biểu mẫu và hạn nộp {ws.deadline:%d/%m/%Y}", reminders[:1]))
    from .summary import compile_summary

    summary = compile_summary(ws)
    steps.append(DemoStep("Lập bảng tổng hợp (danvan compile)",
                          f"tính vào tổng {summary.units_included}/{summary.expected} đơn vị, chưa nộp {summary.missing}; "
                          "chỉ tiêu, cộng khối, biểu đồ, chấm điểm, tình hình nộp, lỗi và cảnh báo",
                          [summary.path, summary.csv_path]))
    units = write_narratives(ws)
    district = write_narratives(ws, district=True)
    seed = next((w for w in units.written if w.unit.endswith("-VP")), None)
    steps.append(DemoStep("Viết báo cáo (danvan narrative)",
                          f"{len(units.written)} báo cáo đơn vị và báo cáo tổng hợp, dạng .docx (Nghị định 30) và .md",
                          [p for p in (seed.docx if seed else None, district.written[0].docx) if p]))
    return steps


# ------------------------------------------------------------------ simulated replies

def _received(day: int) -> dt.datetime:
    return dt.datetime(2020, 12, day, 9, 30)


def _values_for(form: Form, unit: Unit, scenario: Scenario, *, corrected: bool = False) -> tuple[dict[str, Any], dict[str, Any]]:
    """What the unit types: sample values, its own figures, and (first time) its slips."""
    values, tables = sample_values(form, unit, 2020)
    changes = scenario.change if corrected else {**scenario.change, **scenario.mistake}
    for key, change in changes.items():
        if change == "=NA":
            for fid in ("don_tiep_nhan", "don_nam_truoc", "don_btht_tdc", "don_tranh_chap_dat", "don_moi_truong",
                        "don_khac", "don_khieu_nai", "don_to_cao", "don_kien_nghi", "don_da_chuyen",
                        "don_dang_giai_quyet", "don_con_han", "don_qua_han", "vu_viec_dong_nguoi"):
                values[fid] = NA_TEXT
        elif change == "text":  # typed as text: "05", "1.234" (only where there is a number)
            n = values.get(key)
            if isinstance(n, int):
                values[key] = f"{n:,}".replace(",", ".") if n >= 1000 else f"{n:02d}"
        else:
            values[key] = change
    return values, tables


def prepare_replies(ws: Workspace, inbox: Path) -> tuple[Path, list[Path], dict[str, Path]]:
    """Write the simulated replies into ``inbox``; returns (inbox, first batch, files by unit)."""
    form = ws.load_form()
    register = ws.load_register()
    inbox.mkdir(parents=True, exist_ok=True)
    work = inbox / ".tao"
    work.mkdir(exist_ok=True)
    batch: list[Path] = []
    filled: dict[str, Path] = {}
    for unit in register:
        scenario = SCENARIOS.get(unit.code, Scenario(None))
        if scenario.day is None:
            continue
        when = _received(scenario.day)
        if scenario.how == "fixture":
            fixture = _fixture(unit, form)
            if fixture is not None:
                target = inbox / fixture.name
                shutil.copyfile(fixture, target)
                _stamp(target, when)
                batch.append(target)
                filled[unit.code] = target
                continue
        values, tables = _values_for(form, unit, scenario)
        template = _template(ws, form, unit, scenario.year, work)
        path = work / f"Bao cao dan van {unit.code}.xlsx"
        fill_workbook(template, path, values, tables, scenario.justify)
        filled[unit.code] = path
        batch += _deliver(unit, scenario, path, inbox, when, ws)
    batch.append(_stray_scan(inbox, register.get("30016"), ws))
    shutil.rmtree(work, ignore_errors=True)
    return inbox, batch, filled


def _template(ws: Workspace, form: Form, unit: Unit, year: int, work: Path) -> Path:
    if year == ws.year:
        return ws.templates_dir / template_filename(form, unit, year)
    ctx = template_context(ws)
    ctx = type(ctx)(year, dt.date(year, 12, 10), ctx.issued_at.replace(year=year), ctx.office_name, ctx.office_email,
                    ctx.office_phone)
    path = work / template_filename(form, unit, year)
    path.write_bytes(build_template(form, unit, ctx))
    return path


def _stamp(path: Path, when: dt.datetime) -> None:
    stamp = when.timestamp()
    os.utime(path, (stamp, stamp))


def _deliver(unit: Unit, scenario: Scenario, path: Path, inbox: Path, when: dt.datetime, ws: Workspace) -> list[Path]:
    name = f"Bao cao Nam Dan van {unit.code}.xlsx"
    out: list[Path] = []
    if scenario.how in ("xlsx", "fixture"):
        target = inbox / name
        shutil.copyfile(path, target)
        _stamp(target, when)
        out.append(target)
        if scenario.twice:  # the same file sent again a day later, renamed by the mail client
            again = inbox / f"Bao cao Nam Dan van {unit.code} (1).xlsx"
            shutil.copyfile(path, again)
            _stamp(again, when + dt.timedelta(days=1))
            out.append(again)
    elif scenario.how == "zip":
        target = inbox / f"{unit.code}.zip"
        with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as z:
            info = zipfile.ZipInfo(f"Báo cáo dân vận {unit.code}.xlsx", date_time=when.timetuple()[:6])
            info.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(info, path.read_bytes())
        _stamp(target, when)
        out.append(target)
    else:
        msg = _reply(unit, ws, when)
        payload = path.read_bytes()
        if scenario.how == "eml-zip":
            import io

            buf = io.BytesIO()
            with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
                z.writestr(f"Báo cáo {unit.name}.xlsx", payload)
            msg.add_attachment(buf.getvalue(), maintype="application", subtype="zip", filename=f"Báo cáo {unit.code}.zip")
        else:
            msg.add_attachment(payload, maintype="application",
                               subtype="vnd.openxmlformats-officedocument.spreadsheetml.sheet",
                               filename=f"Báo cáo dân vận {unit.name}.xlsx")
        target = inbox / f"thu-{unit.code}.eml"
        target.write_bytes(msg.as_bytes(policy=email.policy.default))
        out.append(target)
    return out


def _reply(unit: Unit, ws: Workspace, when: dt.datetime) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = f"{unit.name} <{unit.email}>"
    msg["To"] = ws.office.email or "noivu@example.vn"
    msg["Subject"] = f"Re: [{ws.year}] Biểu mẫu báo cáo “Năm Dân vận chính quyền” — {unit.name}"
    msg["Date"] = format_datetime(when.replace(tzinfo=dt.timezone(dt.timedelta(hours=7))))
    msg["Message-ID"] = make_msgid(domain=unit.email.split("@")[-1] if unit.email else "example.vn")
    msg.set_content(f"Kính gửi {ws.office.name},\n\n{unit.name} gửi báo cáo kết quả thực hiện “Năm Dân vận chính quyền” "
                    f"năm {ws.year} (tệp đính kèm).\n\nTrân trọng.")
    return msg


def _stray_scan(inbox: Path, unit: Unit | None, ws: Workspace) -> Path:
    """A unit attaches a scanned letter instead of the workbook (a PDF): rejected with a reason."""
    msg = _reply(unit, ws, _received(8)) if unit else EmailMessage()
    msg.add_attachment(b"%PDF-1.4\n% ban scan cong van\n", maintype="application", subtype="pdf",
                       filename="Công văn kèm báo cáo.pdf")
    target = inbox / "thu-ban-scan.eml"
    target.write_bytes(msg.as_bytes(policy=email.policy.default))
    return target


def _fixture(unit: Unit, form: Form) -> Path | None:
    """A committed reply re-saved by real LibreOffice (samples/returns), if it was made from this form."""
    from .gate import Rejected, sniff
    from .workbook_reader import read_workbook
    from .workspace import Limits

    folder = sample_dir() / "returns"
    for path in sorted(folder.glob(f"2020_{unit.code}_*")) if folder.is_dir() else []:
        data = path.read_bytes()
        try:
            result = read_workbook(data, sniff(data, Limits()), form, 2020, Limits(), path.name)
        except Rejected:
            continue
        if result.ok:
            return path
    return None


def correct_from_feedback(ws: Workspace, filled: dict[str, Path]) -> list[Path]:
    """Units with a feedback workbook and a planned correction fix it and send it back (day 12)."""
    form = ws.load_form()
    register = ws.load_register()
    out: list[Path] = []
    folder = ws.root / "hop-thu-den" / "lan-2"
    for code, scenario in SCENARIOS.items():
        feedback = ws.feedback_dir / f"{code}.xlsx"
        if not scenario.correction or not feedback.exists():
            continue
        unit = register.get(code)
        if unit is None:
            continue
        values, _tables = _values_for(form, unit, scenario, corrected=True)
        fixes = {k: values[k] for k in scenario.mistake}
        folder.mkdir(parents=True, exist_ok=True)
        target = fill_workbook(feedback, folder / f"Bao cao da sua {code}.xlsx", fixes)
        _stamp(target, _received(12))
        out.append(target)
    return out
