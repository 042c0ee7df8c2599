"""The danvan command: Vietnamese messages, exit codes 0/1/2, help with examples."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers import SEED_MODELS, SEED_VALUES, fill_template

from danvan_xl.cli import main


def run(*args: str):
    return CliRunner().invoke(main, list(args))


def test_init_and_generate(tmp_path):
    ws = tmp_path / "ws"
    result = run("init", str(ws))
    assert result.exit_code == 0, result.output
    assert "Đã tạo không gian làm việc" in result.output and "25 đơn vị" in result.output
    result = run("generate", "-w", str(ws))
    assert result.exit_code == 0, result.output
    files = sorted((ws / "templates").glob("*.xlsx"))
    assert len(files) == 25 and all(f.name.isascii() for f in files)
    assert "Đã sinh 25 biểu mẫu" in result.output


def test_generate_selected_units_as_json(tmp_path):
    ws = tmp_path / "ws"
    run("init", str(ws))
    result = run("generate", "-w", str(ws), "--unit", "TN-VP", "--unit", "30025", "--json")
    assert result.exit_code == 0, result.output
    import json

    data = json.loads(result.output[result.output.index("{"):])
    assert [f["unit"] for f in data["files"]] == ["TN-VP", "30025"]


def test_unknown_unit_is_a_usage_error_with_suggestion(tmp_path):
    ws = tmp_path / "ws"
    run("init", str(ws))
    result = run("generate", "-w", str(ws), "--unit", "TN-PV")
    assert result.exit_code == 2
    assert "không có đơn vị mã 'TN-PV'" in result.output and "có phải" in result.output


def test_init_refuses_a_non_empty_folder(tmp_path):
    (tmp_path / "ws").mkdir()
    (tmp_path / "ws" / "notes.txt").write_text("giữ nguyên")
    result = run("init", str(tmp_path / "ws"))
    assert result.exit_code == 2
    assert "không trống" in result.output
    assert (tmp_path / "ws" / "notes.txt").read_text() == "giữ nguyên"
    assert not (tmp_path / "ws" / "danvan.toml").exists()


def test_missing_workspace_is_a_configuration_error(tmp_path):
    result = run("generate", "-w", str(tmp_path))
    assert result.exit_code == 2
    assert "không phải không gian làm việc" in result.output and "Traceback" not in result.output


def test_bad_config_is_reported_in_vietnamese(tmp_path):
    ws = tmp_path / "ws"
    run("init", str(ws))
    cfg = ws / "danvan.toml"
    cfg.write_text(cfg.read_text().replace("year = 2020", "yaer = 2020"), encoding="utf-8")
    result = run("generate", "-w", str(ws))
    assert result.exit_code == 2
    assert "khoá 'yaer' không hợp lệ — có phải 'year'?" in result.output


def test_limits_are_listed_in_the_config_and_checked(tmp_path):
    from dataclasses import fields

    from danvan_xl.workspace import Limits, load_workspace

    ws = tmp_path / "ws"
    run("init", str(ws))
    cfg = ws / "danvan.toml"
    text = cfg.read_text(encoding="utf-8")
    for f in fields(Limits):  # every limit is shown, commented out, with its default
        default = getattr(Limits(), f.name)
        shown = str(default) if isinstance(default, int) else f"{default:g}"
        assert f"# {f.name} = {shown} " in text, f.name
    assert load_workspace(ws).limits == Limits()
    cfg.write_text(text.replace("# max_cells = 2000000", "max_cells = 5000")
                   .replace("# timeout_seconds = 60", "timeout_seconds = 2.5"), encoding="utf-8")
    limits = load_workspace(ws).limits
    assert (limits.max_cells, limits.timeout_seconds, limits.max_rows) == (5000, 2.5, Limits().max_rows)
    cfg.write_text(text.replace("# max_cells = 2000000", 'max_cells = "nhiều"')
                   .replace("# workers = 0", "workers = -1").replace("# max_ratio = 100", "max_ratio = 0"),
                   encoding="utf-8")
    result = run("status", "-w", str(ws))
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "limits.max_cells = 'nhiều': phải là số nguyên dương" in result.output
    assert "limits.workers = -1: phải là số nguyên không âm" in result.output
    assert "limits.max_ratio = 0: phải là số dương" in result.output


def test_office_and_mail_settings_are_type_checked(tmp_path):
    import re

    from danvan_xl.workspace import load_workspace

    ws = tmp_path / "ws"
    run("init", str(ws))
    cfg = ws / "danvan.toml"
    text = cfg.read_text(encoding="utf-8")

    def setting(body: str, **values: str) -> str:
        for key, value in values.items():
            body = re.sub(rf"^{key} = .*$", f"{key} = {value}", body, count=1, flags=re.M)
        return body

    cfg.write_text(setting(text, phone="2773851234", recipients='"Như trên;"', smtp_port="2525"), encoding="utf-8")
    loaded = load_workspace(ws)
    assert loaded.office.phone == "2773851234" and loaded.office.recipients == ("Như trên;",)
    assert loaded.mail.smtp_port == 2525
    cfg.write_text(setting(text, name='["a"]', recipients="[1, 2]", smtp_port='"587"', imap_port="-1",
                           imap_folder="{ x = 1 }"), encoding="utf-8")
    result = run("status", "-w", str(ws))
    assert result.exit_code == 2 and "Traceback" not in result.output
    for message in ("office.name = ['a']: phải là một chuỗi", "office.recipients = [1, 2]: phải là một danh sách chuỗi",
                    "mail.smtp_port = '587': phải là số nguyên không âm", "mail.imap_port = -1: phải là số nguyên",
                    "mail.imap_folder = {'x': 1}: phải là một chuỗi"):
        assert message in result.output, message


def test_usage_errors_are_vietnamese(tmp_path):
    result = run("generate", "--khong-co")
    assert result.exit_code == 2
    assert "Không có tùy chọn '--khong-co'" in result.output and "generate [TÙY CHỌN]" in result.output
    assert "OPTIONS" not in result.output
    missing = run("collect", "-w", str(tmp_path), str(tmp_path / "khong-co.xlsx"))
    assert missing.exit_code == 2 and "khong-co.xlsx' (không tìm thấy tệp hay thư mục này)" in missing.output
    assert "Dẫn" not in missing.output  # click title-cases the kind of path; the message does without it
    number = run("resolve", "-w", str(tmp_path), "TN-VP", "abc")
    assert number.exit_code == 2 and "'SỐ_BẢN_NỘP': 'abc' không phải số nguyên hợp lệ" in number.output
    assert "integer" not in number.output


@pytest.mark.parametrize("command", ["init", "generate", "demo", "collect", "status", "export", "check", "resolve",
                                     "mail", "remind", "fetch-mail", "compile", "narrative"])
def test_every_command_has_help_with_an_example(command):
    result = run(command, "--help")
    assert result.exit_code == 0
    assert "Ví dụ:" in result.output and f"danvan {command}" in result.output


def test_demo_runs_the_cycle_and_says_where_outputs_are(tmp_path):
    result = run("demo", str(tmp_path / "demo"))
    assert result.exit_code == 0, result.output
    out = result.output
    assert "Xong." in out and str(tmp_path / "demo") in out
    assert len(list((tmp_path / "demo" / "templates").glob("*.xlsx"))) == 25
    assert "20 đơn vị trả lời" in out and "5 đơn vị không gửi" in out  # 19 accepted + 30013's wrong year
    assert "22 tệp: 19 nhận mới, 1 trùng, 2 bị từ chối, 0 xung đột" in out
    assert "tệp là báo cáo năm 2019, không phải năm 2020" in out and "tệp PDF" in out
    assert "đã nhận bản sửa (bản thứ 2)" in out
    assert "dự kiến 25, đã nhận 19, không lỗi 19, còn lỗi 0, nộp muộn 1, chưa nộp 6" in out
    demo = tmp_path / "demo"
    assert (demo / "outbox" / "mail" / "TN-TNMT_phan-hoi.eml").exists()  # feedback went out with its workbook
    assert not (demo / "feedback" / "TN-TNMT.xlsx").exists()  # and was withdrawn once the correction arrived
    assert (demo / "outbox" / "mail" / "TN-VHTT_nhac-nho.eml").exists()
    assert (demo / "reports" / "bao-cao" / "2020_TN-VP_bao-cao-dan-van.docx").exists()
    assert (demo / "reports" / "bao-cao" / "2020_tong-hop_bao-cao-dan-van.md").exists()
    assert (demo / "reports" / "tong-hop-2020.xlsx").exists() and (demo / "reports" / "tong-hop-2020.csv").exists()


def test_installed_command_works_from_any_folder(tmp_path):
    """The bundled form and sample district are found without the source checkout."""
    exe = Path(sys.executable).with_name("danvan")
    if not exe.exists():
        pytest.skip("danvan is not installed as a command in this environment")
    proc = subprocess.run([str(exe), "init", "ws"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    proc = subprocess.run([str(exe), "generate", "-w", "ws", "--unit", "TN-VP"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "ws" / "templates" / "2020_TN-VP_nam-dan-van-chinh-quyen.xlsx").exists()


def test_a_conflict_is_shown_with_the_numbers_to_choose_from_and_resolved(tmp_path):
    ws = tmp_path / "ws"
    run("init", str(ws))
    run("generate", "-w", str(ws), "--unit", "TN-VP")
    template = ws / "templates" / "2020_TN-VP_nam-dan-van-chinh-quyen.xlsx"
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    fill_template(template, inbox / "a.xlsx", SEED_VALUES, {"dvk_mo_hinh": SEED_MODELS})
    fill_template(template, inbox / "b.xlsx", dict(SEED_VALUES, tcd_thuong_xuyen_luot=171), {"dvk_mo_hinh": SEED_MODELS})
    result = run("collect", "-w", str(ws), str(inbox))
    assert result.exit_code == 1 and "2 xung đột" in result.output
    status = run("status", "-w", str(ws))
    assert "Có hai tệp khác nhau, chờ xử lý" in status.output
    hint = next(line for line in status.output.splitlines() if "danvan resolve" in line)
    first, second = (int(n) for n in hint.split("(số ")[1].split(")")[0].split(" hoặc "))
    assert hint.endswith(f"danvan resolve -w {ws} TN-VP {second}")
    assert f"bản số {first}: a.xlsx" in result.output and f"bản số {second}: b.xlsx" in result.output
    wrong = run("resolve", "-w", str(ws), "TN-VP", "999")
    assert wrong.exit_code == 2 and f"Các bản xung đột: {first} (" in wrong.output
    done = run("resolve", "-w", str(ws), "TN-VP", str(first))
    assert done.exit_code == 0 and f"Đã chọn bản nộp số {first}" in done.output
    status = run("status", "-w", str(ws), "--json")
    row = json.loads(status.output)["units"][0]
    assert (row["unit"], row["state"], row["submission_id"], row["conflict_ids"]) == ("TN-VP", "accepted", first, [])
