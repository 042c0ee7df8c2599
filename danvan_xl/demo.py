"""``danvan demo``: the whole cycle on the sample district, offline, in one call.

Each stage of the pipeline adds its step here, so the demo always shows everything the toolkit
does. Every step reports what it produced and where.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .generate import generate
from .workspace import init_workspace


@dataclass
class DemoStep:
    title: str
    detail: str
    outputs: list[Path] = field(default_factory=list)


@dataclass
class DemoResult:
    root: Path
    steps: list[DemoStep] = field(default_factory=list)


def run_demo(root: str | Path, say: Callable[[DemoStep], None] | None = None) -> DemoResult:
    """Run the demo cycle in ``root`` (a new or empty folder)."""
    root = Path(root)
    result = DemoResult(root.resolve())

    def step(s: DemoStep) -> None:
        result.steps.append(s)
        if say:
            say(s)

    ws = init_workspace(root)
    step(DemoStep("Tạo không gian làm việc", f"huyện Tam Nông, năm {ws.year}, {len(ws.load_register())} đơn vị",
                  [ws.config_path, ws.units_path]))
    gen = generate(ws)
    step(DemoStep("Sinh biểu mẫu cho từng đơn vị", f"{len(gen.files)} tệp Excel", [gen.out_dir]))
    return result
