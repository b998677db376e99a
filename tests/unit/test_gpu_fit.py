"""The GPU-fit estimate (api/memory.py) and verdict (api/fit.py): a table of jobs with their verdicts, the ZeRO
paper's model states, the parts that have exact answers, and the verdict in `finetune validate`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import finetune_api as api
import pytest
import yaml
from finetune_api import fit, memory
from finetune_api.gpus import GPU_MEMORY_MIB, product_memory_gib
from finetune_api.presets import PRESETS
from finetune_cli.main import app
from typer.testing import CliRunner

from tests.invalid_specs import merge, minimal_job

LLAMA8B, MISTRAL, PHI3_MINI, PHI3_MEDIUM, QWEN = (
    "llama-3.1-8b-instruct", "mistral-7b-instruct-v0.3", "phi-3-mini-4k-instruct", "phi-3-medium-4k-instruct",
    "qwen2.5-7b-instruct",
)  # fmt: skip


def job(
    preset: str,
    method: str,
    zero: int | None = None,
    gpus: int = 1,
    nodes: int = 1,
    gpu: dict[str, Any] | None = None,
    **training: Any,
) -> dict[str, Any]:
    """A FineTuneJob: batches of 4 sequences of 1,024 tokens (the defaults), gradient checkpointing unless `training` says."""
    spec: dict[str, Any] = {
        "model": {"preset": preset},
        "method": {"type": method, **({"quantization": {"bits": 4}} if method == "qlora" else {})},
        "training": {"gradientCheckpointing": True, **training},
        "distributed": {"nodes": nodes, **({"deepspeed": {"zeroStage": zero}} if zero is not None else {})},
        "resources": {"gpu": {"count": gpus, **(gpu or {})}},
    }
    return merge(minimal_job("fit"), {"spec": spec})


def verdict_of(document: dict[str, Any]) -> fit.Verdict:
    found = fit.verdict(api.parse(document).spec)
    assert found is not None
    return found


GIB24, GIB40, GIB80 = {"minMemoryGiB": 24}, {"minMemoryGiB": 40}, {"minMemoryGiB": 80}

# (job, fits, the start of the cheapest fix when it does not)
VERDICTS = [
    (job(LLAMA8B, "qlora", gpu=GIB24), True, None),
    (job(LLAMA8B, "lora", gpu=GIB40), True, None),
    (job(LLAMA8B, "dora", gpu=GIB40), True, None),
    (job(LLAMA8B, "lora", gpu=GIB24, gradientCheckpointing=False), False, fit.CHECKPOINTING),
    (job(LLAMA8B, "full", gpu=GIB80), False, fit.QLORA),
    (job(LLAMA8B, "full", zero=3, gpus=8, gpu=GIB80), True, None),
    (job(LLAMA8B, "full", zero=2, gpus=8, gpu=GIB40), True, None),
    (job(LLAMA8B, "full", zero=3, gpus=8, nodes=2, gpu=GIB80), True, None),
    (job(MISTRAL, "lora", gpu={"product": "NVIDIA-A10G"}), True, None),
    (job(PHI3_MINI, "qlora", gpu={"product": "Tesla-T4"}), True, None),
    (job(PHI3_MINI, "full", gpu={"product": "NVIDIA-H100-80GB-HBM3"}), True, None),
    (job(PHI3_MEDIUM, "full", zero=3, gpus=8, gpu=GIB80), True, None),
    (job(PHI3_MEDIUM, "lora", gpu=GIB24), False, fit.QLORA),
    (job(QWEN, "full", zero=1, gpus=2, gpu=GIB80), False, fit.QLORA),
    (job(QWEN, "qlora", zero=1, gpus=4, gpu={"minMemoryGiB": 8}, perDeviceBatchSize=1), False,
     "set distributed.deepspeed.zeroStage: 3"),
    (job(LLAMA8B, "qlora", gpu={"minMemoryGiB": 16}), False, "set distributed.deepspeed.offloadOptimizer: cpu"),
    (job(LLAMA8B, "lora", gpu={"minMemoryGiB": 16}), False, "raise resources.gpu.count to 3 with"),
    (job(LLAMA8B, "full", gpu={"minMemoryGiB": 16}), False, "raise distributed.nodes to"),
    (job(LLAMA8B, "lora", zero=0, gpu={"minMemoryGiB": 16}, gradientCheckpointing=False), False,
     f"{fit.CHECKPOINTING} and {fit.QLORA}"),
]  # fmt: skip


def _id(document: dict[str, Any]) -> str:
    spec = document["spec"]
    zero = spec["distributed"].get("deepspeed", {}).get("zeroStage")
    gpu = spec["resources"]["gpu"]
    return "-".join(str(part) for part in (
        spec["model"]["preset"], spec["method"]["type"], f"zero{zero}" if zero is not None else "ddp",
        f"{spec['distributed']['nodes']}x{gpu['count']}", gpu.get("product") or f"{gpu['minMemoryGiB']}GiB",
    ))  # fmt: skip


@pytest.mark.parametrize(("document", "fits", "fix"), VERDICTS, ids=[_id(v[0]) for v in VERDICTS])
def test_verdicts_for_presets_methods_zero_stages_and_gpus(
    document: dict[str, Any], fits: bool, fix: str | None
) -> None:
    found = verdict_of(document)

    assert found.fits is fits, found.estimate.breakdown()
    if fix is None:
        assert found.problem() is None
    else:
        assert found.fix is not None and found.fix.startswith(f"cheapest fix: {fix}"), found.fix
        fixed_gib = float(found.fix.rsplit("about ", 1)[1].split(" GiB")[0])
        assert fixed_gib <= (found.capacity_gib or 0) < found.estimate.gib


def test_the_problem_is_one_line_naming_the_field_the_estimate_and_the_fix() -> None:
    line = verdict_of(job(LLAMA8B, "full", gpu=GIB24)).problem()

    assert line is not None and "\n" not in line
    assert line.startswith("spec.resources.gpu.minMemoryGiB: the job needs about ")
    assert "GiB per GPU (weights 29.9, gradients 29.9, optimizer 59.8, activations " in line
    assert "but one GPU has 24 GiB; cheapest fix: set method.type: qlora" in line


def test_the_capacity_is_the_larger_of_min_memory_and_the_products() -> None:
    a10g = {"product": "NVIDIA-A10G"}
    assert verdict_of(job(MISTRAL, "lora", gpu=a10g)).capacity_field == "resources.gpu.product"
    both = verdict_of(job(MISTRAL, "lora", gpu={**a10g, "minMemoryGiB": 40}))
    assert (both.capacity_gib, both.capacity_field) == (40, "resources.gpu.minMemoryGiB")
    unknown = verdict_of(job(MISTRAL, "lora", gpu={"product": "NVIDIA-A100-SXM4-80GB-MIG-1g.10gb"}))
    assert (unknown.fits, unknown.status()) == (None, {"gpuMemoryGiB": round(unknown.estimate.gib, 1)})
    assert product_memory_gib("NVIDIA-A100-SXM4-80GB") == 80
    assert all(8 * 1024 < mib < 200 * 1024 for mib in GPU_MEMORY_MIB.values())


def test_no_estimate_for_cpu_jobs_and_uri_models() -> None:
    assert fit.verdict(api.parse(minimal_job()).spec) is None  # tiny preset: CPU
    uri = merge(
        job(LLAMA8B, "lora", gpu=GIB24), {"spec": {"model": {"preset": None, "uri": "hf://org/model"}}}
    )
    del uri["spec"]["model"]["preset"]
    assert fit.verdict(api.parse(uri).spec) is None


@pytest.mark.parametrize(("stage", "gigabytes"), [(0, 120), (1, 31.4), (2, 16.6), (3, 1.9)])
def test_model_states_follow_the_zero_paper(stage: int, gigabytes: float) -> None:
    """ZeRO paper, Figure 1: a 7.5B model, mixed-precision Adam (K = 12), 64 GPUs."""
    layout = memory.Layout(
        method="full", compute_bytes=2, batch=1, seq=1, processes_per_node=64, zero_stage=stage
    )
    est = memory.estimate_layout(PRESETS[LLAMA8B].shape, 7_500_000_000, layout)

    assert (est.weights + est.gradients + est.optimizer) / 1e9 == pytest.approx(gigabytes, abs=0.05)


def test_offload_moves_the_optimizer_state_and_zero3_shards_the_frozen_base() -> None:
    base = job(LLAMA8B, "lora", zero=3, gpus=8, gpu=GIB80)
    sharded = verdict_of(base).estimate
    offloaded = verdict_of(merge(base, {"spec": {"distributed": {"deepspeed": {"offloadOptimizer": "cpu"}}}}))

    assert offloaded.estimate.optimizer == 0 < sharded.optimizer
    assert sharded.weights == pytest.approx((2 * 8_030_000_000 + 2 * 41_943_040) / 8)


def test_lora_trainable_parameters_match_peft() -> None:
    """peft prints 41,943,040 trainable parameters for r=16 on all seven projections of Llama 3 8B."""
    layout = memory.Layout(method="lora", compute_bytes=2, batch=1, seq=1)
    preset = PRESETS[LLAMA8B]

    assert memory.trainable_parameters(preset.shape, preset.parameters, layout) == 41_943_040


def test_qlora_stores_4_bits_plus_0_127_bits_of_constants_with_double_quantization() -> None:
    preset = PRESETS[LLAMA8B]
    blocks = preset.parameters - preset.shape.embedding_parameters
    for double_quant, bits in ((True, 4.127), (False, 4.5)):
        layout = memory.Layout(method="qlora", compute_bytes=2, batch=1, seq=1, double_quant=double_quant)
        frozen = memory.estimate_layout(preset.shape, preset.parameters, layout).weights - 4 * 41_943_040
        fp32_rest = 4 * preset.shape.embedding_parameters
        assert (frozen - fp32_rest) * 8 / blocks == pytest.approx(bits, abs=0.001)


def test_checkpointing_keeps_each_layers_input_instead_of_its_activations() -> None:
    plain = verdict_of(job(LLAMA8B, "lora", gpu=GIB80, gradientCheckpointing=False)).estimate
    checkpointed = verdict_of(job(LLAMA8B, "lora", gpu=GIB80)).estimate

    assert checkpointed.activations < plain.activations / 3
    assert checkpointed.weights == plain.weights


@pytest.mark.parametrize("name", list(PRESETS))
def test_preset_shapes_add_up_to_their_parameter_counts(name: str) -> None:
    preset = PRESETS[name]
    shape = preset.shape
    counted = (
        shape.embedding_parameters
        + shape.layers * shape.block_parameters
        + (2 * shape.layers + 1) * shape.hidden
    )
    # Exact for the decoders; the tiny encoder presets' shapes leave out biases, positions and cross-attention.
    assert counted == pytest.approx(preset.parameters, rel=0.001 if preset.family == "decoder" else 0.2)


def test_validate_refuses_a_job_that_does_not_fit_and_shows_the_estimate_of_one_that_does(
    tmp_path: Path,
) -> None:
    small, big = tmp_path / "small.yaml", tmp_path / "big.yaml"
    small.write_text(yaml.safe_dump(job(LLAMA8B, "full", gpu=GIB24)))
    big.write_text(yaml.safe_dump(job(LLAMA8B, "qlora", gpu=GIB24)))

    refused = CliRunner().invoke(app, ["validate", str(small)])
    accepted = CliRunner().invoke(app, ["validate", str(big)])

    assert refused.exit_code == 1
    assert f"✗ {small}: spec.resources.gpu.minMemoryGiB: the job needs about" in refused.output
    assert accepted.exit_code == 0, accepted.output
    assert "fit: about" in accepted.output and "GiB per GPU, fits 24 GiB (resources.gpu.minMemoryGiB)" in (
        accepted.output
    )
