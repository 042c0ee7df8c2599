"""The ``danvan`` command: it only translates between the terminal and the library.

Each command parses options, calls one library function, prints Vietnamese text (or JSON with
``--json``) and maps the outcome to an exit code: 0 done without errors, 1 done with data errors
or rejected files, 2 bad usage or configuration. Tracebacks appear only with ``--debug``.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from . import __version__
from .cli_vi import install as _install_vietnamese
from .errors import DanvanError
from .workspace import DEFAULT_FORM, DEFAULT_YEAR, Workspace, load_workspace

_install_vietnamese()

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


class CliError(click.ClickException):
    """A library error shown as one Vietnamese line, with the library's exit code."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


OPTIONS_METAVAR = "[TÙY CHỌN]"


class DanvanGroup(click.Group):
    """Vietnamese usage lines for the group and its commands; library errors as one Vietnamese line."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("options_metavar", OPTIONS_METAVAR)
        kwargs.setdefault("subcommand_metavar", "LỆNH [ĐỐI SỐ]...")
        super().__init__(*args, **kwargs)

    def command(self, *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("options_metavar", OPTIONS_METAVAR)
        return super().command(*args, **kwargs)

    def invoke(self, ctx: click.Context) -> Any:
        debug = bool(ctx.params.get("debug")) or os.environ.get("DANVAN_DEBUG") == "1"
        try:
            return super().invoke(ctx)
        except DanvanError as err:
            if debug:
                raise
            raise CliError(str(err), err.exit_code) from err
        except (click.ClickException, click.exceptions.Exit, click.Abort, SystemExit):
            raise
        except KeyboardInterrupt:
            raise click.Abort() from None
        except BrokenPipeError:  # output piped into `head` and closed early: not an error
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            sys.exit(0)
        except Exception as err:
            if debug:
                raise
            raise CliError(
                f"Lỗi nội bộ của danvan_xl ({type(err).__name__}: {err}). "
                "Chạy lại với 'danvan --debug …' để xem chi tiết và báo cho người quản trị.", 1
            ) from err


def workspace_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "-w", "--workspace", "workspace", type=click.Path(file_okay=False, path_type=Path),
        default=Path("."), show_default=True, help="Thư mục không gian làm việc (có tệp danvan.toml).",
    )(fn)


def json_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--json", "as_json", is_flag=True, help="In kết quả dạng JSON (cho script).")(fn)


def _ws(path: Path) -> Workspace:
    return load_workspace(path)


def _echo_json(data: Any) -> None:
    click.echo(json.dumps(data, ensure_ascii=False, indent=2, default=str))


def _progress(label: str, length: int, quiet: bool = False) -> Any:
    return click.progressbar(length=length, label=label, file=sys.stderr if not quiet else open(os.devnull, "w"),
                             show_pos=True, width=30)


@click.group(cls=DanvanGroup, context_settings=CONTEXT)
@click.option("--debug", is_flag=True, help="Hiện chi tiết kỹ thuật (traceback) khi có lỗi.")
@click.version_option(__version__, prog_name="danvan")
def main(debug: bool) -> None:
    """danvan_xl — chu trình báo cáo “Năm Dân vận chính quyền” qua biểu mẫu Excel.

    Sinh biểu mẫu cho từng đơn vị, gửi và thu nhận qua thư điện tử, kiểm tra số liệu,
    tổng hợp và viết báo cáo theo thể thức Nghị định 30/2020/NĐ-CP.

    \b
    Bắt đầu nhanh:
      danvan demo demo-out        # chạy thử toàn bộ chu trình trên huyện mẫu
      danvan init ws              # tạo không gian làm việc
      danvan generate -w ws       # sinh biểu mẫu cho các đơn vị
    """


@main.command()
@click.argument("directory", metavar="THƯ_MỤC", type=click.Path(file_okay=False, path_type=Path))
@click.option("--form", "form_ref", default=DEFAULT_FORM, show_default=True,
              help="Mã biểu mẫu có sẵn hoặc đường dẫn tới thư mục biểu mẫu.")
@click.option("--year", type=click.IntRange(2000, 2100), default=DEFAULT_YEAR, show_default=True,
              help="Năm báo cáo.")
@click.option("--units", "units_file", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="Danh sách đơn vị (CSV); mặc định là huyện mẫu Tam Nông.")
def init(directory: Path, form_ref: str, year: int, units_file: Path | None) -> None:
    """Tạo không gian làm việc mới cho một chu kỳ báo cáo.

    Không ghi đè: thư mục phải chưa có hoặc đang trống.

    \b
    Ví dụ:
      danvan init ws
      danvan init ws2021 --year 2021 --units don-vi.csv
    """
    from .workspace import init_workspace

    ws = init_workspace(directory, form=form_ref, year=year, units=units_file)
    register = ws.load_register()
    form = ws.load_form()
    click.echo(f"Đã tạo không gian làm việc {ws.root}")
    click.echo(f"  Biểu mẫu: {form.title} (mã {form.id}, phiên bản {form.version})")
    click.echo(f"  Năm báo cáo: {ws.year}; hạn nộp: {ws.deadline:%d/%m/%Y}; {len(register)} đơn vị")
    click.echo(f"  Cấu hình: {ws.config_path}")
    click.echo(f"Bước tiếp theo: danvan generate -w {directory}")


@main.command()
@workspace_option
@click.option("--unit", "units", multiple=True, metavar="MÃ", help="Chỉ sinh cho đơn vị này (lặp lại được).")
@click.option("--out-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Thư mục ghi biểu mẫu (mặc định: templates/ trong không gian làm việc).")
@json_option
def generate(workspace: Path, units: tuple[str, ...], out_dir: Path | None, as_json: bool) -> None:
    """Sinh biểu mẫu Excel cho từng đơn vị.

    Mỗi đơn vị một tệp, tên tệp không dấu theo mã đơn vị (ví dụ 2020_TN-VP_…xlsx);
    tên đơn vị, năm và mã nhận diện nằm bên trong tệp.

    \b
    Ví dụ:
      danvan generate -w ws
      danvan generate -w ws --unit TN-VP --unit 30025 --out-dir gui-lai
    """
    from .generate import generate as run

    ws = _ws(workspace)
    n = len(ws.load_register().select(units))
    with _progress("Đang sinh biểu mẫu", n, quiet=as_json) as bar:
        result = run(ws, units, out_dir, progress=lambda _code: bar.update(1))
    if as_json:
        _echo_json(result.to_dict())
        return
    total = sum(f.size for f in result.files)
    for f in result.files:
        click.echo(f"  {f.unit_code:<10} {f.path.name}")
    click.echo(f"Đã sinh {len(result.files)} biểu mẫu vào {result.out_dir} "
               f"(tổng {total / 1024:,.0f} KB).".replace(",", "."))


@main.command()
@workspace_option
@click.argument("paths", metavar="TỆP_HOẶC_THƯ_MỤC...", nargs=-1, required=True,
                type=click.Path(exists=True, path_type=Path))
@json_option
def collect(workspace: Path, paths: tuple[Path, ...], as_json: bool) -> None:
    """Thu nhận biểu mẫu đã điền: tệp, thư mục, tệp nén .zip, thư .eml, hộp thư .mbox/Maildir.

    Đơn vị, biểu mẫu và năm được nhận diện theo nội dung tệp, không theo tên tệp. Mỗi tệp một
    dòng kết quả: đã nhận, trùng, từ chối (kèm lý do) hoặc xung đột. Thu nhận lại cùng thư mục
    không làm thay đổi gì.

    \b
    Ví dụ:
      danvan collect -w ws hop-thu/
      danvan collect -w ws "Bao cao dan van (1).xlsx" tra-loi.zip thu.eml
      danvan collect -w ws hop-thu/ --json
    """
    from .collect import collect as run

    ws = _ws(workspace)
    bar = _progress("Đang thu nhận", 1, quiet=as_json)
    with bar:
        def tick(done: int, total: int) -> None:
            bar.length = total
            bar.update(done - bar.pos)

        result = run(ws, list(paths), progress=tick)
    if as_json:
        _echo_json(result.to_dict())
    else:
        for o in result.outcomes:
            unit = f" [{o.unit}]" if o.unit else ""
            counts = f" — {o.errors} lỗi, {o.warnings} cảnh báo" if (o.errors or o.warnings) else ""
            click.echo(f"{o.outcome_vi:<16} {o.name}{unit}: {o.message}{counts}")
            for note in o.notes:
                click.echo(f"{'':<16}   · {note}")
        click.echo(result.summary())
    sys.exit(result.exit_code)


@main.command()
@workspace_option
@json_option
def status(workspace: Path, as_json: bool) -> None:
    """Tình hình nộp báo cáo: dự kiến, đã nhận, không lỗi, còn lỗi, nộp muộn; danh sách cần đôn đốc.

    \b
    Ví dụ:
      danvan status -w ws
      danvan status -w ws --json
    """
    from .status import chase_list, load_status, summary_counts

    ws = _ws(workspace)
    statuses = load_status(ws)
    counts = summary_counts(statuses)
    chase = chase_list(statuses)
    if as_json:
        _echo_json({"units": [s.to_dict() for s in statuses], "totals": counts,
                    "chase": [s.to_dict() for s in chase]})
        return
    click.echo(_status_table(statuses))
    click.echo(f"Dự kiến {counts['expected']}; đã nhận {counts['received']} (không lỗi {counts['accepted']}, "
               f"còn lỗi {counts['with_errors']}, xung đột {counts['conflict']}); nộp muộn {counts['late']}; "
               f"chưa nộp {counts['missing']}.")
    if chase:
        click.echo("Cần đôn đốc:")
        for s in chase:
            click.echo(f"  {s.unit.code:<10} {s.unit.name} — {s.state_vi} — {s.unit.email or '(chưa có địa chỉ thư)'}")
            if s.conflict_ids:
                numbers = " hoặc ".join(str(i) for i in s.conflict_ids)
                click.echo(f"{'':13}chọn một bản (số {numbers}): danvan resolve -w {workspace} {s.unit.code} "
                           f"{s.conflict_ids[-1]}")


def _status_table(statuses: list[Any]) -> str:
    header = ("STT", "Mã", "Đơn vị", "Tình trạng", "Ngày nhận", "Bản", "Hạn", "Lỗi", "C.báo")
    rows = []
    for i, s in enumerate(statuses, start=1):
        name = s.unit.name if len(s.unit.name) <= 44 else s.unit.name[:43] + "…"
        received = s.received_at.strftime("%d/%m/%Y") if s.received_at else ""
        on_time = "" if s.on_time is None else ("đúng" if s.on_time else "muộn")
        rows.append((str(i), s.unit.code, name, s.state_vi, received, str(s.version or ""), on_time,
                     str(s.errors or ""), str(s.warnings or "")))
    widths = [max(len(r[c]) for r in [header, *rows]) for c in range(len(header))]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))]
    lines.append("  ".join("─" * w for w in widths))
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(lines)


@main.command()
@workspace_option
@click.option("--format", "fmt", type=click.Choice(["csv", "json", "xlsx"]), default="csv", show_default=True,
              help="Định dạng tệp xuất.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="Tệp kết quả (mặc định trong reports/).")
def export(workspace: Path, fmt: str, out: Path | None) -> None:
    """Xuất số liệu đang dùng: mỗi đơn vị một dòng, mỗi mã trường một cột.

    Ô trống = chưa báo cáo; “không phát sinh” được ghi nguyên văn.

    \b
    Ví dụ:
      danvan export -w ws --format xlsx
      danvan export -w ws --format csv --out so-lieu.csv
    """
    from .export import export as run

    path = run(_ws(workspace), fmt, out)
    click.echo(f"Đã xuất số liệu ra {path}")


@main.command()
@workspace_option
@click.option("--annotate", is_flag=True, help="Viết bảng phản hồi feedback/<mã đơn vị>.xlsx cho đơn vị có phát hiện.")
@json_option
def check(workspace: Path, annotate: bool, as_json: bool) -> None:
    """Kiểm tra số liệu của mọi bản đang dùng theo các quy tắc của biểu mẫu.

    In bảng phát hiện (lỗi, cảnh báo, giải trình đã chấp nhận), ghi reports/kiem-tra-<năm>.xlsx;
    thoát với mã 1 nếu còn lỗi. Với --annotate, mỗi đơn vị có phát hiện nhận một bảng tính
    phản hồi: số liệu của chính đơn vị, ô cần sửa tô đỏ kèm ghi chú, trang “Kết quả kiểm tra”.

    \b
    Ví dụ:
      danvan check -w ws
      danvan check -w ws --annotate
      danvan check -w ws --json
    """
    from .checks import run_check

    result = run_check(_ws(workspace), annotate=annotate)
    if as_json:
        _echo_json(result.to_dict())
        sys.exit(result.exit_code)
    for uc in result.units:
        shown = [f for f in uc.findings if f.severity != "info"]
        if not shown:
            continue
        click.echo(f"{uc.unit.code} — {uc.unit.name}: {uc.errors} lỗi, {uc.warnings} cảnh báo chưa giải trình")
        for f in shown:
            accepted = f" [đã giải trình: {f.justification}]" if f.accepted else ""
            click.echo(f"  {f.line()}{accepted}")
        if uc.feedback:
            click.echo(f"  → bảng phản hồi: {uc.feedback}")
    errors = sum(u.errors for u in result.units)
    warnings = sum(u.warnings for u in result.units)
    clean = sum(1 for u in result.units if not u.errors and not u.warnings)
    click.echo(f"Đã kiểm tra {len(result.units)} bản đang dùng: {clean} không có vấn đề, {errors} lỗi, "
               f"{warnings} cảnh báo chưa giải trình. Bảng kết quả: {result.report}")
    sys.exit(result.exit_code)


@main.command()
@workspace_option
@click.argument("unit", metavar="MÃ_ĐƠN_VỊ")
@click.argument("submission_id", metavar="SỐ_BẢN_NỘP", type=int)
def resolve(workspace: Path, unit: str, submission_id: int) -> None:
    """Chọn một bản nộp khi một đơn vị gửi hai tệp khác nhau (xung đột).

    \b
    Ví dụ:
      danvan status -w ws             # xem đơn vị đang xung đột
      danvan resolve -w ws TN-VP 12   # dùng bản nộp số 12
    """
    from .collect import resolve_conflict

    click.echo(resolve_conflict(_ws(workspace), unit, submission_id))


def _password(env: str, what: str, needed: bool) -> str | None:
    """A password from the environment or a hidden prompt; never stored."""
    value = os.environ.get(env)
    if value is not None or not needed:
        return value
    if not sys.stdin.isatty():
        raise CliError(f"Chưa có mật khẩu {what}: đặt biến môi trường {env}.", 2)
    return click.prompt(f"Mật khẩu {what}", hide_input=True, err=True)


def _send_or_draft(ws: Workspace, outgoing: list[Any], send_now: bool, resend: bool, dry_run: bool,
                   as_json: bool) -> None:
    from .mailer import send, write_drafts

    problems = [o for o in outgoing if not o.ok]
    if not send_now and not dry_run:
        paths = write_drafts(ws, outgoing)
        if as_json:
            _echo_json({"drafts": [str(p) for p in paths], "messages": [o.to_dict() for o in outgoing]})
        else:
            for o in problems:
                click.echo(f"  {o.unit.code:<10} KHÔNG SOẠN ĐƯỢC: {o.problem}")
            click.echo(f"Đã soạn {len(paths)} thư nháp (.eml) vào {ws.outbox_dir}; mở bằng chương trình thư để "
                       "gửi, hoặc chạy lại với --send để gửi qua máy chủ thư.")
        sys.exit(1 if problems else 0)
    needed = bool(ws.mail.smtp_host and ws.mail.smtp_user) and not dry_run
    password = _password("DANVAN_SMTP_PASSWORD", "máy chủ gửi thư", needed)
    todo = sum(1 for o in outgoing if o.ok)
    with _progress("Đang gửi thư", max(todo, 1), quiet=as_json or dry_run) as bar:
        report = send(ws, outgoing, password=password, resend=resend, dry_run=dry_run,
                      progress=lambda done, _total: bar.update(done - bar.pos))
    if as_json:
        _echo_json(report.to_dict())
    else:
        for w in report.warnings:
            click.echo(w, err=True)
        for r in report.results:
            click.echo(f"{r.status_vi:<26} {r.unit:<10} {r.to or '—'}: {r.message}")
        click.echo(report.summary())
    sys.exit(report.exit_code)


@main.command()
@workspace_option
@click.option("--send", "send_now", is_flag=True, help="Gửi ngay qua máy chủ thư (mặc định: chỉ soạn thư nháp .eml).")
@click.option("--unit", "units", multiple=True, metavar="MÃ", help="Chỉ gửi cho đơn vị này (lặp lại được).")
@click.option("--resend", is_flag=True, help="Gửi lại cả thư đã gửi trước đó.")
@click.option("--dry-run", is_flag=True, help="Chỉ liệt kê thư sẽ gửi, không kết nối máy chủ.")
@click.option("--feedback", is_flag=True, help="Gửi bảng phản hồi (thư mục feedback/) để đơn vị điều chỉnh.")
@json_option
def mail(workspace: Path, send_now: bool, units: tuple[str, ...], resend: bool, dry_run: bool, feedback: bool,
         as_json: bool) -> None:
    """Gửi mỗi đơn vị biểu mẫu của mình qua thư điện tử (hoặc thư đề nghị điều chỉnh với --feedback).

    Mặc định chỉ soạn thư nháp .eml trong outbox/mail/; --send mới gửi qua máy chủ (bảng [mail]
    trong danvan.toml). Mật khẩu lấy từ biến DANVAN_SMTP_PASSWORD hoặc được hỏi khi chạy, không
    lưu lại. Thư đã gửi được ghi sổ: chạy lại không gửi trùng (trừ khi có --resend).

    \b
    Ví dụ:
      danvan mail -w ws                      # soạn thư nháp
      danvan mail -w ws --send --dry-run     # xem thư nào sẽ được gửi
      danvan mail -w ws --send --unit TN-TP
      danvan mail -w ws --feedback --send
    """
    from .mailer import build_messages

    ws = _ws(workspace)
    outgoing = build_messages(ws, "feedback" if feedback else "template", units)
    _send_or_draft(ws, outgoing, send_now, resend, dry_run, as_json)


@main.command()
@workspace_option
@click.option("--send", "send_now", is_flag=True, help="Gửi ngay qua máy chủ thư (mặc định: chỉ soạn thư nháp .eml).")
@click.option("--resend", is_flag=True, help="Nhắc lại cả đơn vị đã được nhắc hôm nay.")
@click.option("--dry-run", is_flag=True, help="Chỉ liệt kê thư sẽ gửi, không kết nối máy chủ.")
@json_option
def remind(workspace: Path, send_now: bool, resend: bool, dry_run: bool, as_json: bool) -> None:
    """Nhắc các đơn vị chưa nộp báo cáo (kèm lại biểu mẫu và hạn nộp).

    Mỗi đơn vị được nhắc nhiều nhất một lần mỗi ngày (trừ khi có --resend).

    \b
    Ví dụ:
      danvan remind -w ws                    # soạn thư nháp nhắc nộp
      danvan remind -w ws --send --dry-run
      danvan remind -w ws --send
    """
    from .mailer import build_messages

    ws = _ws(workspace)
    outgoing = build_messages(ws, "reminder")
    if not outgoing:
        click.echo("Mọi đơn vị đều đã nộp báo cáo; không cần nhắc.")
        return
    _send_or_draft(ws, outgoing, send_now, resend, dry_run, as_json)


@main.command("fetch-mail")
@workspace_option
@json_option
def fetch_mail_command(workspace: Path, as_json: bool) -> None:
    """Thu nhận biểu mẫu từ hộp thư (IMAP): chỉ đọc thư mới, không xoá hay đánh dấu thư trên máy chủ.

    Mật khẩu hộp thư lấy từ biến DANVAN_IMAP_PASSWORD hoặc được hỏi khi chạy, không lưu lại.
    Thư của đơn vị mà không có bảng tính được liệt kê để người xem.

    \b
    Ví dụ:
      danvan fetch-mail -w ws
      DANVAN_IMAP_PASSWORD=... danvan fetch-mail -w ws --json
    """
    from .mailfetch import fetch_mail

    ws = _ws(workspace)
    password = _password("DANVAN_IMAP_PASSWORD", "hộp thư", bool(ws.mail.imap_host))
    bar = _progress("Đang đọc hộp thư", 1, quiet=as_json)
    with bar:
        def tick(done: int, total: int) -> None:
            bar.length = total
            bar.update(done - bar.pos)

        report = fetch_mail(ws, password=password, progress=tick)
    if as_json:
        _echo_json(report.to_dict())
    else:
        for w in report.warnings:
            click.echo(w, err=True)
        for o in report.collect.outcomes:
            unit = f" [{o.unit}]" if o.unit else ""
            counts = f" — {o.errors} lỗi, {o.warnings} cảnh báo" if (o.errors or o.warnings) else ""
            click.echo(f"{o.outcome_vi:<16} {o.name}{unit}: {o.message} ({o.origin}){counts}")
        if report.needs_human:
            click.echo("Cần người xem:")
            for n in report.needs_human:
                click.echo(f"  {n.describe()}")
        click.echo(report.summary())
    sys.exit(report.exit_code)


@main.command(name="compile")
@workspace_option
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              help="Tệp kết quả (mặc định: reports/tong-hop-<năm>.xlsx; bản CSV nằm cạnh).")
@click.option("--include-with-errors", is_flag=True,
              help="Tính cả đơn vị còn lỗi vào số tổng (các đơn vị này được đánh dấu).")
@json_option
def compile_cmd(workspace: Path, out: Path | None, include_with_errors: bool, as_json: bool) -> None:
    """Lập bảng tổng hợp của năm: chỉ tiêu từng đơn vị, cộng khối, tổng cộng, biểu đồ, chấm điểm.

    Đơn vị còn lỗi không được cộng vào số tổng (trừ khi dùng --include-with-errors); đơn vị chưa
    nộp có dòng “Chưa nộp”, không tính là 0. Kèm bảng chỉ tiêu dạng CSV.

    \b
    Ví dụ:
      danvan compile -w ws
      danvan compile -w ws --include-with-errors --out tong-hop-ca-don-vi-loi.xlsx
    """
    from .summary import compile_summary

    result = compile_summary(_ws(workspace), out, include_with_errors=include_with_errors)
    if as_json:
        _echo_json(result.to_dict())
    else:
        click.echo(f"Đã lập bảng tổng hợp {result.path}")
        click.echo(f"  Bảng chỉ tiêu dạng CSV: {result.csv_path}")
        click.echo(f"  Số liệu tính đến {result.as_of:%H:%M} ngày {result.as_of:%d/%m/%Y}.")
        left_out = "" if include_with_errors else f"; không tính {result.units_excluded_with_errors} đơn vị còn lỗi"
        click.echo(f"  Tính vào tổng {result.units_included}/{result.expected} đơn vị{left_out}; "
                   f"chưa nộp {result.missing}; nộp muộn {result.late}.")
        if result.errors_open:
            click.echo(f"  Còn {result.errors_open} lỗi chưa sửa: xem trang “Lỗi và cảnh báo”.")
    sys.exit(1 if result.errors_open else 0)


@main.command()
@workspace_option
@click.option("--unit", "units", multiple=True, metavar="MÃ", help="Chỉ viết báo cáo của đơn vị này (lặp lại được).")
@click.option("--district", is_flag=True, help="Viết báo cáo tổng hợp của cơ quan tổng hợp.")
@click.option("--out-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Thư mục ghi báo cáo (mặc định: reports/bao-cao/).")
@click.option("--no-pad", is_flag=True, help="Không viết số nhỏ dạng 05, 01 (mặc định viết như văn bản mẫu).")
@json_option
def narrative(workspace: Path, units: tuple[str, ...], district: bool, out_dir: Path | None, no_pad: bool,
              as_json: bool) -> None:
    """Viết báo cáo (.docx theo thể thức Nghị định 30/2020 và bản .md) từ số liệu đã thu nhận.

    Không có tuỳ chọn: báo cáo của mọi đơn vị đã nộp, số liệu không còn lỗi. --district: báo cáo
    tổng hợp của cơ quan tổng hợp. Câu chữ nằm trong thư mục narrative/ của biểu mẫu, sửa được.

    \b
    Ví dụ:
      danvan narrative -w ws
      danvan narrative -w ws --unit TN-VP
      danvan narrative -w ws --district
    """
    from .narrate import write_narratives
    from .narrative import NarrativeOptions

    result = write_narratives(_ws(workspace), units, district=district, out_dir=out_dir,
                              options=NarrativeOptions(pad_small_counts=not no_pad))
    if as_json:
        _echo_json(result.to_dict())
        return
    for w in result.written:
        note = f" ({w.note})" if w.note else ""
        click.echo(f"  {w.unit or 'tổng hợp':<10} {w.docx.name}, {w.markdown.name}{note}")
    for code, reason in result.skipped:
        click.echo(f"  {code:<10} bỏ qua: {reason}")
    click.echo(f"Đã viết {len(result.written)} báo cáo vào {result.out_dir}.")


@main.command()
@click.argument("directory", metavar="THƯ_MỤC", type=click.Path(file_okay=False, path_type=Path))
@click.option("--send-to-local", is_flag=True,
              help="Gửi và nhận thư thật qua một máy chủ thư chạy tạm trên máy này (127.0.0.1).")
def demo(directory: Path, send_to_local: bool) -> None:
    """Chạy thử toàn bộ chu trình trên huyện mẫu (không cần mạng, không cần cấu hình).

    \b
    Ví dụ:
      danvan demo demo-out
      danvan demo demo-thu --send-to-local   # thư đi, thư về qua máy chủ SMTP trên máy
    """
    from .demo import run_demo

    def say(step: Any) -> None:
        click.echo(f"✔ {step.title}: {step.detail}")
        for line in step.lines:
            click.echo(f"    · {line}")
        for p in step.outputs:
            click.echo(f"    → {p}")

    result = run_demo(directory, say, send_to_local=send_to_local)
    click.echo(f"Xong. Mọi kết quả nằm trong {result.root}")


if __name__ == "__main__":  # pragma: no cover
    main()
