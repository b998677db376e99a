"""The README's preset table (which `finetune validate` and the GPU-fit estimate point to) says what PRESETS says."""

from __future__ import annotations

from pathlib import Path

import finetune_api as api
from finetune_api import memory
from finetune_api.presets import PRESETS, Preset

from tests.invalid_specs import merge, minimal_job

METHODS = ("qlora", "lora", "dora", "full")


def _size(parameters: int) -> str:
    return f"{parameters / 1e9:.1f} B" if parameters >= 1e9 else f"{parameters / 1e3:.0f} K"


def _gib(p: Preset, method: str) -> str:
    """The estimate for one GPU, the default batch, bf16 and gradient checkpointing."""
    quantization = {"quantization": {"bits": 4}} if method == "qlora" else {}
    spec = {"model": {"preset": p.name}, "method": {"type": method, **quantization},
            "training": {"precision": "bf16", "gradientCheckpointing": True}, "resources": {"gpu": {"count": 1}}}  # fmt: skip
    estimate = memory.estimate(api.parse(merge(minimal_job(), {"spec": spec})).spec)
    assert estimate is not None
    return f"{estimate.gib:.0f}"


def _row(p: Preset) -> str:
    memory_gib = "CPU" if p.tiny else " / ".join(_gib(p, m) for m in METHODS)
    return (
        f"| `{p.name}` | {_size(p.parameters)} | {', '.join(p.tasks)} | {', '.join(p.target_modules)} | "
        f"{memory_gib} | {p.context_length:,} |"
    )


def test_the_readme_lists_every_preset_as_defined() -> None:
    header = (
        "| Preset | Parameters | Tasks | Default LoRA target modules | GiB per GPU: qlora / lora / dora / full "
        "| Context |\n| --- | --- | --- | --- | --- | --- |\n"
    )
    table = header + "\n".join(_row(p) for p in PRESETS.values()) + "\n"

    assert table in (Path(__file__).parents[2] / "README.md").read_text(encoding="utf-8")
