"""The README's preset table (which the GPU-memory validation message points to) says what PRESETS says."""

from __future__ import annotations

from pathlib import Path

from finetune_operator.api.presets import PRESETS, Preset

METHODS = ("qlora", "lora", "dora", "full")


def _size(parameters: int) -> str:
    return f"{parameters / 1e9:.1f} B" if parameters >= 1e9 else f"{parameters / 1e3:.0f} K"


def _row(p: Preset) -> str:
    memory = " / ".join(str(p.min_gpu_memory_gib[m]) for m in METHODS) if p.min_gpu_memory_gib else "CPU"
    return (
        f"| `{p.name}` | {_size(p.parameters)} | {', '.join(p.tasks)} | {', '.join(p.target_modules)} | {memory} | "
        f"{p.context_length:,} |"
    )


def test_the_readme_lists_every_preset_as_defined() -> None:
    header = (
        "| Preset | Parameters | Tasks | Default LoRA target modules | GPU memory GiB: qlora / lora / dora / full "
        "| Context |\n| --- | --- | --- | --- | --- | --- |\n"
    )
    table = header + "\n".join(_row(p) for p in PRESETS.values()) + "\n"

    assert table in (Path(__file__).parents[2] / "README.md").read_text(encoding="utf-8")
