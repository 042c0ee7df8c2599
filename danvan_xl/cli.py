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


class DanvanGroup(click.Group):
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
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
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
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
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
@click.argument("unit")
@click.argument("submission_id", type=int)
def resolve(workspace: Path, unit: str, submission_id: int) -> None:
    """Chọn một bản nộp khi một đơn vị gửi hai tệp khác nhau (xung đột).

    \b
    Ví dụ:
      danvan status -w ws             # xem đơn vị đang xung đột
      danvan resolve -w ws TN-VP 12   # dùng bản nộp số 12
    """
    from .collect import resolve_conflict

    click.echo(resolve_conflict(_ws(workspace), unit, submission_id))


@main.command()
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
def demo(directory: Path) -> None:
    """Chạy thử toàn bộ chu trình trên huyện mẫu (không cần mạng, không cần cấu hình).

    \b
    Ví dụ:
      danvan demo demo-out
    """
    from .demo import run_demo

    def say(step: Any) -> None:
        click.echo(f"✔ {step.title}: {step.detail}")
        for line in step.lines:
            click.echo(f"    · {line}")
        for p in step.outputs:
            click.echo(f"    → {p}")

    result = run_demo(directory, say)
    click.echo(f"Xong. Mọi kết quả nằm trong {result.root}")


if __name__ == "__main__":  # pragma: no cover
    main()
