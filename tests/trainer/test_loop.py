"""Loop features: evaluation on a held-out split, gradient checkpointing, plain DDP over two processes (packing:
`test_batching.py`)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.trainer.trainerkit import INSTRUCTIONS, LLAMA, Run, launch, make_config

LLAMA_JOB = {"model": {"preset": "tiny-llama"}}


def test_evaluation_on_the_held_out_split(train: Callable[..., Run]) -> None:
    rows = INSTRUCTIONS * 2  # 16 rows: 4 held out, 12 trained on
    run = train({**LLAMA_JOB, "method": {"type": "full"}, "dataset": {"validationSplit": 0.25},
                 "training": {"evalSteps": 5, "maxSteps": 10, "learningRate": 0.002}}, rows)  # fmt: skip

    assert run.rc == 0, run.summary
    assert run.event("start")["train_examples"] == 12
    evals = {e["step"]: e["eval_loss"] for e in run.events if e["event"] == "eval"}
    assert sorted(evals) == [5, 10]
    assert evals[10] < evals[5]  # the held-out rows repeat trained ones, so eval loss falls too
    assert run.summary["metrics"]["eval_loss"] == evals[10]


def test_gradient_checkpointing_does_not_change_the_numbers(train: Callable[..., Run]) -> None:
    spec = {**LLAMA_JOB, "training": {"maxSteps": 5}}
    plain = train(spec, INSTRUCTIONS, sub="plain")
    checkpointed = train(
        {**spec, "training": {"maxSteps": 5, "gradientCheckpointing": True}}, INSTRUCTIONS, sub="gc"
    )

    assert checkpointed.rc == 0, checkpointed.summary
    for step, loss in plain.losses.items():
        assert checkpointed.losses[step] == pytest.approx(loss, rel=1e-5)


def test_ddp_over_two_processes(tmp_path: Path) -> None:
    spec = {**LLAMA_JOB, "training": {"maxSteps": 6, "perDeviceBatchSize": 2, "checkpointSteps": 3}}
    run = launch(make_config(tmp_path, spec, INSTRUCTIONS), nproc=2)

    assert run.rc == 0, run.summary
    assert run.event("start")["world_size"] == 2
    assert sorted(run.losses) == list(range(1, 7))
    assert run.losses[6] < run.losses[1]
    assert (run.output / "adapter_model.safetensors").exists()


def test_two_processes_on_a_fresh_cache_publish_a_complete_preset(tmp_path: Path) -> None:
    """Each rank may build the tiny preset; what gets published must hold the model, not just the tokenizer."""
    spec = {**LLAMA_JOB, "training": {"maxSteps": 2, "perDeviceBatchSize": 2}}
    cfg = make_config(tmp_path, spec, INSTRUCTIONS)
    fresh = tmp_path / "fresh-cache"
    cfg = cfg.model_copy(update={"paths": cfg.paths.model_copy(update={"cache_dir": str(fresh)})})
    run = launch(cfg, nproc=2)

    assert run.rc == 0, run.summary
    (preset,) = [p for p in (fresh / "tiny").iterdir() if not p.name.startswith(".")]
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= {f.name for f in preset.iterdir()}


def _kept_bytes(checkpointing: bool) -> tuple[int, bool]:
    """Bytes one forward pass keeps for the backward outside checkpointed layers (LoRA on tiny-llama), and whether
    every module of the model is in training mode."""
    import torch
    from finetune_trainer import model as model_lib

    cfg = make_config(
        Path("unused"), {**LLAMA_JOB, "training": {"gradientCheckpointing": checkpointing}}, None
    )
    tokenizer = model_lib.load_tokenizer(LLAMA, trust_remote_code=False)
    net = model_lib.load_model(
        LLAMA, cfg.spec, model_lib.Placement(torch.device("cpu"), torch.float32), tokenizer
    )
    batch = tokenizer([" ".join(r["prompt"] for r in INSTRUCTIONS)] * 4, return_tensors="pt")
    params = {p.untyped_storage().data_ptr() for p in net.parameters()}
    kept: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        kept[tensor.untyped_storage().data_ptr()] = tensor.untyped_storage().nbytes()
        return tensor

    # Checkpointed layers keep their tensors through their own hooks, so this one sees only what stays for good.
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        net(**batch, labels=batch["input_ids"])
    return sum(size for pointer, size in kept.items() if pointer not in params), all(
        m.training for m in net.modules()
    )


def test_the_model_is_in_training_mode_so_checkpointing_applies(train: Callable[..., Run]) -> None:
    """from_pretrained hands back a model in eval mode; layers left so skip checkpointing (and their dropout)."""
    train({**LLAMA_JOB, "training": {"maxSteps": 1}}, INSTRUCTIONS)  # builds the preset

    (checkpointed, training), (plain, _) = _kept_bytes(checkpointing=True), _kept_bytes(checkpointing=False)

    assert training
    assert checkpointed < plain / 2
