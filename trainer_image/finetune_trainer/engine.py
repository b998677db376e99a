"""The optimisation step, with or without DeepSpeed: forward, backward, clip, step, schedule.

Called by the recipe's `_setup_engine` (`build_engine`), its loop (`loss`, `backward`, `step`) and its evaluation
(`outputs`, `generate`), and by `checkpoint` (`save_state`, `load_state`). `TorchEngine` runs one process or plain
DDP; `DeepSpeedEngine` wraps `deepspeed.initialize` with the config from `deepspeed_config`. Both expose the same
methods (`Engine`), so the loop in `recipe.py` is written once. Optimizers and schedulers are chosen from closed
tables, never by import path.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import torch
import transformers
from finetune_api.job import FineTuneJobSpec

from finetune_trainer import checkpoint, deepspeed_config
from finetune_trainer.distributed import World, is_rank_zero
from finetune_trainer.model import Placement, trainable_parameters


def _bnb_optimizer(name: str) -> Callable[..., torch.optim.Optimizer]:
    def build(params: Any, lr: float, weight_decay: float) -> torch.optim.Optimizer:
        import bitsandbytes as bnb

        return getattr(bnb.optim, name)(params, lr=lr, weight_decay=weight_decay)

    return build


OPTIMIZERS: dict[str, Callable[..., torch.optim.Optimizer]] = {
    "adamw": lambda params, lr, weight_decay: torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay),
    "sgd": lambda params, lr, weight_decay: torch.optim.SGD(
        params, lr=lr, weight_decay=weight_decay, momentum=0.9
    ),
    "adamw-8bit": _bnb_optimizer("AdamW8bit"),
    "paged-adamw-8bit": _bnb_optimizer("PagedAdamW8bit"),
}
"""training.optimizer → constructor(params, lr, weight_decay)."""

SCHEDULERS: dict[str, str] = {
    "linear": "linear", "cosine": "cosine", "constant": "constant",
    "constant-with-warmup": "constant_with_warmup", "polynomial": "polynomial",
}  # fmt: skip
"""training.lr_scheduler → name understood by `transformers.get_scheduler`."""


def build_scheduler(optimizer: Any, spec: FineTuneJobSpec, total_steps: int) -> Any:
    """The learning-rate schedule over `total_steps` optimizer steps, warmup included."""
    return transformers.get_scheduler(
        SCHEDULERS[spec.training.lr_scheduler],
        optimizer=optimizer,
        num_warmup_steps=round(spec.training.warmup_ratio * total_steps),
        num_training_steps=total_steps,
    )


class Engine(Protocol):
    """What the training loop and the checkpointer need from an optimisation backend."""

    module: Any
    """The model without DDP/DeepSpeed wrappers (what `output` saves)."""

    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor: ...
    def outputs(self, batch: dict[str, torch.Tensor]) -> Any:
        """The model's forward outputs (loss and logits) for `batch`, as training computes them."""
        ...

    def generate(self, batch: dict[str, torch.Tensor], max_new_tokens: int) -> torch.Tensor:
        """Greedy generations from `batch`'s inputs (ZeRO-3: a collective, every rank generates in step)."""
        ...

    def backward(self, loss: torch.Tensor) -> None: ...
    def step(self) -> float:
        """Clip, step the optimizer and scheduler, zero the gradients; returns the gradient norm."""
        ...

    def micro_step(self) -> None:
        """End a micro-batch that does not end an accumulation window."""
        ...

    def lr(self) -> float: ...
    def save_state(self, directory: Path) -> None: ...
    def load_state(self, directory: Path) -> None: ...


def _greedy(model: Any, batch: dict[str, torch.Tensor], max_new_tokens: int, synced: bool) -> torch.Tensor:
    generated: torch.Tensor = model.generate(
        input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], max_new_tokens=max_new_tokens,
        do_sample=False, num_beams=1, synced_gpus=synced,
    )  # fmt: skip
    return generated


class TorchEngine:
    """Single process or DDP, with autocast for bf16/fp16 and a gradient scaler for fp16."""

    def __init__(
        self, model: Any, spec: FineTuneJobSpec, placement: Placement, world: World, total_steps: int
    ):
        self.module = model
        self.placement = placement
        params = list(trainable_parameters(model).values())
        self.optimizer = OPTIMIZERS[spec.training.optimizer](
            params, lr=spec.training.learning_rate, weight_decay=spec.training.weight_decay
        )
        self.scheduler = build_scheduler(self.optimizer, spec, total_steps)
        self.accumulation = spec.training.gradient_accumulation_steps
        self.max_grad_norm = spec.training.max_grad_norm
        # On the run's device: a default (CUDA) scaler silently disables itself on CPU, leaving fp16 unscaled.
        self.scaler = torch.amp.GradScaler(placement.device.type, enabled=placement.dtype == torch.float16)
        self.forward = model
        if world.size > 1:
            ids = [world.local_rank] if placement.device.type == "cuda" else None
            self.forward = torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.placement.dtype == torch.float32:
            return contextlib.nullcontext()
        autocast: contextlib.AbstractContextManager[Any] = torch.autocast(
            self.placement.device.type, dtype=self.placement.dtype
        )
        return autocast

    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.outputs(batch).loss

    def outputs(self, batch: dict[str, torch.Tensor]) -> Any:
        with self._autocast():
            return self.forward(**batch)

    def generate(self, batch: dict[str, torch.Tensor], max_new_tokens: int) -> torch.Tensor:
        with self._autocast():
            return _greedy(self.module, batch, max_new_tokens, synced=False)

    def backward(self, loss: torch.Tensor) -> None:
        self.scaler.scale(loss / self.accumulation).backward()

    def step(self) -> float:
        self.scaler.unscale_(self.optimizer)
        params = [p for group in self.optimizer.param_groups for p in group["params"]]
        norm = torch.nn.utils.clip_grad_norm_(params, self.max_grad_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return float(norm)

    def micro_step(self) -> None:
        pass

    def lr(self) -> float:
        return float(self.scheduler.get_last_lr()[0])

    def save_state(self, directory: Path) -> None:
        from safetensors.torch import save_file

        if not is_rank_zero():  # DDP replicas hold identical weights and optimizer state
            return
        weights = {n: p.detach().contiguous().cpu() for n, p in trainable_parameters(self.module).items()}
        save_file(weights, directory / "trainable.safetensors")
        torch.save(
            {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
             "scaler": self.scaler.state_dict()},
            directory / "optimizer.pt",
        )  # fmt: skip

    def load_state(self, directory: Path) -> None:
        from safetensors.torch import load_file

        weights = load_file(directory / "trainable.safetensors", device=str(self.placement.device))
        params = trainable_parameters(self.module)
        missing = set(params) ^ set(weights)
        if missing:
            raise RuntimeError(f"checkpoint {directory} does not match the model: {sorted(missing)[:5]}")
        with torch.no_grad():
            for name, value in weights.items():
                params[name].copy_(value)
        state = checkpoint.load_tensors(directory / "optimizer.pt", map_location=self.placement.device)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])


class DeepSpeedEngine:
    """DeepSpeed ZeRO 0-3; DeepSpeed accumulates gradients itself, so `step` is called once per micro-batch."""

    def __init__(self, model: Any, spec: FineTuneJobSpec, config: dict[str, Any], total_steps: int):
        import deepspeed

        self.module = model
        optimizer = None
        if "optimizer" not in config:
            optimizer = OPTIMIZERS[spec.training.optimizer](
                [p for p in model.parameters() if p.requires_grad],
                lr=spec.training.learning_rate, weight_decay=spec.training.weight_decay,
            )  # fmt: skip
        self.engine, _, _, self.scheduler = deepspeed.initialize(
            model=model,
            optimizer=optimizer,
            model_parameters=[p for p in model.parameters() if p.requires_grad],
            lr_scheduler=lambda opt: build_scheduler(opt, spec, total_steps),
            config=config,
        )

    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.outputs(batch).loss

    def outputs(self, batch: dict[str, torch.Tensor]) -> Any:
        return self.engine(**batch)

    def generate(self, batch: dict[str, torch.Tensor], max_new_tokens: int) -> torch.Tensor:
        # ZeRO-3: every forward gathers sharded weights, so ranks keep generating until all are done.
        return _greedy(self.module, batch, max_new_tokens, synced=self.engine.zero_optimization_stage() == 3)

    def backward(self, loss: torch.Tensor) -> None:
        self.engine.backward(loss)

    def step(self) -> float:
        self.engine.step()
        norm = self.engine.get_global_grad_norm()
        return float(norm) if norm is not None else float("nan")

    def micro_step(self) -> None:
        """Let DeepSpeed see a micro-batch that does not end an accumulation window."""
        self.engine.step()

    def lr(self) -> float:
        return float(self.scheduler.get_last_lr()[0])

    def save_state(self, directory: Path) -> None:
        self.engine.save_checkpoint(str(directory), tag="deepspeed", exclude_frozen_parameters=True)

    def load_state(self, directory: Path) -> None:
        path, _ = self.engine.load_checkpoint(
            str(directory), tag="deepspeed", load_module_strict=False, load_optimizer_states=True,
            load_lr_scheduler_states=True,
        )  # fmt: skip
        if path is None:
            raise RuntimeError(f"DeepSpeed found no checkpoint in {directory}")

    def gathered_state_dict(self) -> dict[str, torch.Tensor] | None:
        """The full 16-bit state dict on rank 0 (ZeRO-3 gathers the shards; every rank must call this)."""
        if self.engine.zero_optimization_stage() == 3:
            gathered: dict[str, torch.Tensor] | None = self.engine._zero3_consolidated_16bit_state_dict()
            return gathered
        return None


def hold_zero3_config(config: dict[str, Any] | None) -> Any:
    """An `HfDeepSpeedConfig` for ZeRO-3 runs, which makes `from_pretrained` shard weights as it loads them.

    transformers keeps only a weak reference: the caller must hold the returned object for the whole run.
    """
    if config is None or config["zero_optimization"]["stage"] != 3:
        return None
    from transformers.integrations.deepspeed import HfDeepSpeedConfig

    return HfDeepSpeedConfig(config)


def deepspeed_settings(spec: FineTuneJobSpec, world: World, placement: Placement) -> dict[str, Any] | None:
    """The DeepSpeed config for this run, or None when `distributed.deepspeed` is unset."""
    ds = spec.distributed.deepspeed
    if ds is None:
        return None
    on_gpu = placement.device.type == "cuda"
    return deepspeed_config.build_deepspeed_config(spec.training, ds, world.size, placement.dtype, on_gpu)


def build_engine(
    model: Any,
    spec: FineTuneJobSpec,
    placement: Placement,
    world: World,
    ds_config: dict[str, Any] | None,
    total_steps: int,
) -> TorchEngine | DeepSpeedEngine:
    """The optimisation backend: DeepSpeed when configured, else plain torch (DDP over several processes)."""
    if ds_config is not None:
        return DeepSpeedEngine(model, spec, ds_config, total_steps)
    return TorchEngine(model, spec, placement, world, total_steps)
