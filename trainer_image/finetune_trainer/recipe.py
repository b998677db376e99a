"""The fine-tuning recipe: one FineTuneJob, from config to saved adapter, read top to bottom.

Started by `python -m finetune_trainer --config FILE` (see `__main__.py`), under `torchrun` for several processes or
nodes. `main(cfg)` runs setup → train → save and turns any failure into a termination message and an exit code
(`ExitCode`). Features and the spec fields that control them:

- Base model: `model.preset` (tiny presets are built offline by `tiny.py`) or `model.uri` (`storage.py`).
- Method: `method.type` lora | dora | qlora (4/8-bit base via bitsandbytes) | full (`model.py`).
- Task: `task.type` causal-lm (prompt/completion or chat messages, loss on the answer only), sequence- and
  token-classification, seq2seq, question-answering (`tasks.py`); data checked up front (`data.py`), and
  causal-lm rows longer than `training.maxSeqLength` counted (the `lengths` log line, `manifest.json`).
- Loop: `training.*`: accumulation, clipping, schedule, precision with autocast, gradient checkpointing.
- Batching: padding-free, length-grouped or padded micro-batches, packing, and the LM head only on trained positions
  (`batching.py`; `training.batching`, `training.packing`), checked on the model before training.
- Distribution: DDP over `torchrun` processes, or DeepSpeed ZeRO 0-3 with CPU offload (`distributed.deepspeed`).
- Checkpoints: every `training.checkpoint_steps`; a restarted run resumes from the newest complete one and ends at
  exactly the configured step (`checkpoint.py`, `run_policy.resume_from_checkpoint`); another run's checkpoints
  or result in the same folders are refused (`ownership.py`).
- SIGTERM (suspension, preemption, node drain): all ranks agree on the step to stop at, save a checkpoint there and
  exit with `ExitCode.INTERRUPTED`, so a restart loses no finished step.
- Progress: Prometheus gauges on `metrics_port` and JSON log lines from rank 0 (`metrics.py`).
- Before/after evaluation (`spec.evaluation`): the base model and the result scored on the held-out rows (or
  `evaluation.datasetUri`) with the task's metrics (`evaluation.py`, `scoring.py`), reported as
  `eval_before_<metric>` / `eval_after_<metric>`.
- Output: adapter or model, `manifest.json` with digests (`output.py`); the extra formats of `output.formats`
  (merged, onnx), each checked against the trained model's logits before it is published (`export.py`).
"""

from __future__ import annotations

import contextlib
import functools
import gc
import math
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

import torch
from finetune_api.trainer import ExitCode, TerminationMessage, TrainerConfig, failed

from finetune_trainer import (
    batching,
    checkpoint,
    data,
    distributed,
    engine,
    evaluation,
    export,
    failures,
    metrics,
    model,
    output,
    ownership,
    provenance,
    scoring,
    storage,
    tasks,
    templates,
)
from finetune_trainer.checkpoint import Position

LISTED_TOO_LONG = 20
"""At most this many rows cut to fit are named in the `lengths` log line; manifest.json counts them all."""


class Interrupted(Exception):  # noqa: N818 - it is not an error
    """The run stopped early on SIGTERM, after saving a checkpoint at the step all ranks agreed on."""


class FineTuneRecipe:
    """One training run in this process (one rank of many under torchrun)."""

    def __init__(self, cfg: TrainerConfig, stop: distributed.StopSignal | None = None) -> None:
        """Cheap and without side effects: `setup` checks the folders, fetches, starts the process group."""
        self.cfg, self.spec = cfg, cfg.spec
        self.stop = stop or distributed.StopSignal()
        self._running = contextlib.ExitStack()
        """What `run` (or `cleanup`) closes: the metrics server."""

    def _start(self) -> None:
        """Claim the folders, fetch the base model, join the process group, start reporting."""
        cfg = self.cfg
        # First: another run's checkpoints or result in our folders must stop us before anything is loaded.
        self.identity = ownership.RunIdentity.of(cfg)
        checkpoints = checkpoint.complete_checkpoints(Path(cfg.paths.checkpoint_dir))
        ownership.check(self.identity, checkpoints, Path(cfg.paths.output_dir) / output.MANIFEST)
        output.check_destination(
            self.spec.output
        )  # a refusing bucket or registry fails now, not after training
        # Before the process group exists: transformers' save_pretrained writes nothing on ranks other than 0 once
        # it does, and every node (each with its own cache) must be able to build or fetch the base model.
        self.base_dir = storage.resolve_model(self.spec.model, cfg.paths)
        self.world = distributed.init_world(use_deepspeed=self.spec.distributed.deepspeed is not None)
        device = self.world.device
        self.placement = model.Placement(
            device, model.resolve_precision(self.spec.training.precision, device)
        )
        self.ds_config = engine.deepspeed_settings(self.spec, self.world, self.placement)
        zero3 = self.ds_config is not None and self.ds_config["zero_optimization"]["stage"] == 3
        self.placement = replace(self.placement, zero3=zero3)
        self.reporter = metrics.Reporter(
            distributed.is_rank_zero(),
            cfg.metrics_port,
            total_steps=0,
            logging_steps=self.spec.training.logging_steps,
        )
        self._running.enter_context(self.reporter)

    def setup(self) -> None:
        """Check the folders and the destination, fetch the base model, start the process group and reporting, read
        the data, build model and engine, restore a checkpoint: in dependency order."""
        self._start()
        distributed.seed_everything(self.spec.training.seed)
        self.tokenizer = model.load_tokenizer(self.base_dir, self.spec.model.trust_remote_code)
        templates.apply(self.tokenizer, self.spec.task, self.spec.dataset, self.cfg.paths)
        # Data comes before the model: a bad dataset fails in seconds, not after minutes of loading weights.
        self._setup_data()
        self.total_steps = self._plan_steps()
        self.reporter.total_steps = self.total_steps
        # ZeRO-3 needs the DeepSpeed config registered before from_pretrained; it must outlive the load.
        self._zero3_config = engine.hold_zero3_config(self.ds_config)
        net = model.load_model(self.base_dir, self.spec, self.placement, self.tokenizer)
        self.engine = engine.build_engine(
            net, self.spec, self.placement, self.world, self.ds_config, self.total_steps
        )
        self.layout = self._choose_layout()
        self.eval_scores = self._score(
            "before"
        )  # before a restore: a resumed run still scores the base model
        restored = None
        if self.spec.run_policy.resume_from_checkpoint:
            restored = checkpoint.restore(self.engine, Path(self.cfg.paths.checkpoint_dir), self.world)
        self.position = restored or Position(step=0, epoch=0, micro_batch=0, tokens=0)
        self.saved_step = self.position.step  # the newest step a restart would resume from (0: none)
        self.reporter.event("start", total_steps=self.total_steps, resumed_from=restored and restored.step,
                            train_examples=len(self.train_set), world_size=self.world.size,
                            batching=self.layout.name, logits_on_trained_positions_only=self.layout.logits_on_trained_only)  # fmt: skip

    def _setup_data(self) -> None:
        path = storage.resolve_dataset(self.spec.dataset, self.cfg.paths)
        splits = data.load_splits(path, self.spec.dataset, self.spec.task, self.spec.training.seed)
        rows = len(splits.train) + len(splits.eval)
        self.data_info: dict[str, Any] = {"rows": rows}
        if splits.shape is not None:
            self.data_info.update(shape=splits.shape.name, shape_from=splits.shape.origin)
        fetch = functools.partial(storage.resolve_dataset, paths=self.cfg.paths)
        splits, eval_shape = data.with_evaluation_dataset(splits, self.spec, fetch)
        if self.spec.evaluation.dataset_uri is not None:  # its rows instead of held-out ones
            self.data_info["eval_rows"] = len(splits.eval)
        self.reporter.event("data", **self.data_info)
        self.data_info["dataset"] = provenance.dataset_identity(
            self.spec.dataset, path, rows, self.cfg.origins or {}
        )
        for shape in (splits.shape, eval_shape):
            templates.require(self.tokenizer, self.spec.task, shape)
        scoring.require_answers(self.spec, eval_shape)
        max_len = min(self.spec.training.max_seq_length, self.tokenizer.model_max_length)
        encode = (self.tokenizer, self.spec.task, self.spec.dataset.columns, max_len)
        train, evals = (tasks.encode_all(rows, *encode) for rows in (splits.train, splits.eval))
        self.train_set, self.eval_set = train.examples, evals.examples
        self.eval_rows, self.max_len = splits.eval, max_len  # what `spec.evaluation`'s references come from
        # causal-lm: the rows cut to fit, counted as `finetune validate --data` counts them.
        if train.too_long is not None and evals.too_long is not None:
            too_long = train.too_long + evals.too_long
            self.data_info.update(max_seq_length=max_len, truncated=len(too_long))
            self.reporter.event("lengths", max_seq_length=max_len, truncated=len(too_long),
                                rows=too_long[:LISTED_TOO_LONG])  # fmt: skip
        if self.spec.training.packing:
            self.train_set = batching.pack(self.train_set, max_len)

    def _choose_layout(self) -> batching.Layout:
        """`training.batching` resolved on this model: causal-lm runs `batching.probe` on every rank (in eval mode),
        and all ranks take padding-free or the head-only loss only if every rank found it supported."""
        training, support = self.spec.training, None
        if self.spec.task.type == "causal-lm":
            self.engine.module.eval()
            found = batching.probe(self._forward, self.train_set, self.tokenizer.pad_token_id)
            self.engine.module.train()
            support = batching.Support(
                *(not distributed.any_rank(not ok) for ok in (found.flat, found.logits_on_trained_only))
            )
        layout, why = batching.resolve(training.batching, training.packing, self.spec.task.type, support)
        if why is not None:
            self.reporter.event("warning", message=why)
        return layout

    def _forward(self, batch: batching.Batch) -> Any:
        return self.engine.outputs(batching.to_device(batch, self.placement.device))

    def _plan_steps(self) -> int:
        """Optimizer steps for the run; also fixes the micro-batches per epoch that the data order uses."""
        training, world = self.spec.training, self.world.size
        self.micro_per_epoch = len(self.train_set) // world // training.per_device_batch_size
        self.steps_per_epoch = self.micro_per_epoch // training.gradient_accumulation_steps
        if self.steps_per_epoch == 0:
            need = training.per_device_batch_size * training.gradient_accumulation_steps * world
            raise data.DataError(
                f"{len(self.train_set)} training examples are fewer than one global batch ({need})"
            )
        if self.cfg.max_steps_override is not None:
            return self.cfg.max_steps_override
        return training.max_steps or math.ceil((training.epochs or 1.0) * self.steps_per_epoch)

    def _micro_batches(self, epoch: int, start: int) -> Iterator[batching.Batch]:
        """This rank's micro-batches of `epoch` from index `start`: a pure function of (seed, epoch, rank)."""
        size, world = self.spec.training.per_device_batch_size, self.world
        lengths = [len(row["input_ids"]) for row in self.train_set]
        order = batching.epoch_order(
            lengths, self.spec.training.seed + epoch, world.size, size, self.layout.grouped
        )
        mine = order[world.rank :: world.size]
        for index in range(start, self.steps_per_epoch * self.spec.training.gradient_accumulation_steps):
            rows = [self.train_set[i] for i in mine[index * size : (index + 1) * size]]
            yield batching.to_device(self._collate(rows), self.placement.device)

    def _collate(self, rows: list[tasks.Features]) -> batching.Batch:
        return self.layout.collate(rows, self.tokenizer.pad_token_id)

    def train(self) -> None:
        """Run optimizer steps from the restored position to `total_steps`, evaluating and checkpointing."""
        training, pos = self.spec.training, self.position
        accumulation = training.gradient_accumulation_steps
        self.reporter.resume(pos.step, pos.tokens)
        self.last_loss = math.nan
        while pos.step < self.total_steps:
            epoch = pos.step // self.steps_per_epoch
            batches = self._micro_batches(epoch, (pos.step % self.steps_per_epoch) * accumulation)
            for _ in range(self.steps_per_epoch - pos.step % self.steps_per_epoch):
                self._stop_if_asked(pos)
                loss, grad_norm, tokens = self._train_step([next(batches) for _ in range(accumulation)])
                pos = Position(
                    pos.step + 1,
                    epoch,
                    (pos.step + 1 - epoch * self.steps_per_epoch) * accumulation,
                    pos.tokens + tokens,
                )
                self.last_loss = loss
                self.reporter.step(pos.step, pos.step / self.steps_per_epoch, loss, self.engine.lr(), grad_norm,
                                   pos.tokens)  # fmt: skip
                self._maybe_evaluate(pos.step)
                if pos.step % training.checkpoint_steps == 0 or pos.step == self.total_steps:
                    self._checkpoint(pos)
                if pos.step == self.total_steps:
                    break
        self.position = pos

    def _checkpoint(self, pos: Position) -> None:
        checkpoint.save(self.engine, pos, Path(self.cfg.paths.checkpoint_dir), self.world, self.identity)
        self.saved_step = pos.step
        self.reporter.event("checkpoint", step=pos.step)

    def _stop_if_asked(self, pos: Position) -> None:
        """Before each step: when any rank got SIGTERM, all save a checkpoint at `pos` and raise `Interrupted`.

        One all-reduce of a flag per step, so every rank stops at the same step even when the signal reaches them
        at different moments (or, across nodes, reaches only one pod).
        """
        if not distributed.any_rank(self.stop.requested):
            return
        if self.saved_step != pos.step:
            self._checkpoint(pos)
        self.reporter.event("stopped", step=pos.step, signal="SIGTERM")
        raise Interrupted(
            f"stopped by SIGTERM at step {pos.step} of {self.total_steps}; a restart resumes there"
        )

    def _train_step(self, window: list[batching.Batch]) -> tuple[float, float, int]:
        """One optimizer step over `window` micro-batches; returns (mean loss over ranks, grad norm, tokens)."""
        total = torch.zeros((), device=self.placement.device)
        for index, batch in enumerate(window):
            loss = self.engine.loss(batch)
            self.engine.backward(loss)
            if index < len(window) - 1:
                self.engine.micro_step()
            total += loss.detach().float()
        grad_norm = self.engine.step()
        tokens = sum(batching.real_tokens(b) for b in window) * self.world.size
        return distributed.mean_over_ranks(float(total) / len(window)), grad_norm, tokens

    def _maybe_evaluate(self, step: int) -> None:
        every = self.spec.training.eval_steps
        if not self.eval_set or (not (every and step % every == 0) and step != self.total_steps):
            return
        self.eval_loss = self.evaluate()
        self.reporter.eval(step, self.eval_loss)

    def evaluate(self) -> float:
        """Loss over all the held-out rows (every rank scores its share; see `evaluation.score`)."""
        return self._held_out_scores(self.eval_set)["loss"]

    def _held_out_scores(
        self, rows: list[tasks.Features], scorer: scoring.Scorer | None = None
    ) -> dict[str, float]:
        self.engine.module.eval()
        scores = evaluation.score(
            self.spec.task.type, self.engine.outputs, rows, self.world, self.spec.training.per_device_batch_size,
            lambda part: batching.to_device(self._collate(part), self.placement.device),
            scorer,
        )  # fmt: skip
        self.engine.module.train()
        return scores

    def _score(self, phase: Literal["before", "after"]) -> dict[str, float]:
        """`spec.evaluation`: the model's scores on the held-out rows, named for `phase` ({} when it is off)."""
        wanted = self.spec.evaluation
        if not wanted.enabled:
            return {}
        rows = self.eval_set[: wanted.max_samples]
        scorer = scoring.scorer_for(self.spec, self.eval_rows[: wanted.max_samples], rows, self.tokenizer,
                                    self.engine.generate, self.max_len)  # fmt: skip
        reported = evaluation.report(
            phase, self._held_out_scores(rows, scorer), wanted.metrics_for(self.spec.task.type)
        )
        self.reporter.event("evaluation", phase=phase, rows=len(rows), **reported)
        return reported

    def run(self) -> TerminationMessage | None:
        """setup → train → save, then leave the process group (also when stopped by SIGTERM)."""
        with self._running:
            self.setup()
            try:
                self.train()
            except Interrupted:
                self.cleanup()
                raise
            self.eval_scores.update(self._score("after"))
            summary = self.save()
        self.cleanup()
        return summary

    def save(self) -> TerminationMessage | None:
        """Write the adapter or model and the manifest; returns the summary on rank 0."""
        state_dict = (
            self.engine.gathered_state_dict() if isinstance(self.engine, engine.DeepSpeedEngine) else None
        )
        loss = None if math.isnan(self.last_loss) else self.last_loss  # NaN when resumed at the last step
        final = {"step": self.position.step, "loss": loss, "tokens": self.position.tokens}
        if getattr(self, "eval_loss", None) is not None:
            final["eval_loss"] = self.eval_loss
        if "truncated" in self.data_info:  # causal-lm: rows cut to maxSeqLength, in status.result.metrics too
            final["truncated_rows"] = self.data_info["truncated"]
        final.update(self.eval_scores)
        summary = output.save_artifacts(
            self.cfg, self.engine.module, state_dict, self.tokenizer, self.base_dir, final, self.data_info,
            self._export_reference(),
        )  # fmt: skip
        distributed.barrier()
        return summary

    def _export_reference(self) -> export.Reference | None:
        """`output.formats`: the trained model's outputs on a few rows, which each export must reproduce (every
        rank runs them: a collective under ZeRO-3); None when no format is asked for."""
        if not self.spec.output.export_formats():
            return None
        task = self.spec.task.type
        batch = export.probe_batch(task, self.eval_set or self.train_set, self.tokenizer.pad_token_id)
        self.engine.module.eval()
        with torch.no_grad():
            outputs = export.outputs_of(
                task, self.engine.outputs(batching.to_device(batch, self.placement.device))
            )
        self.engine.module.train()
        return export.Reference(batch, outputs, export.precision_of(self.spec, self.placement.dtype))

    def cleanup(self) -> None:
        """Free the engine, then leave the process group.

        DDP's reducer and DeepSpeed hold the process group. Freed after `shutdown`, at interpreter exit, the engine
        dropped the group's last reference while holding the GIL, and gloo's destructor waited for a worker thread
        that needed the GIL: a rank that had saved its results hung or aborted ("terminate called without an active
        exception") on its way out.
        """
        self._running.close()
        self.__dict__.pop("engine", None)
        gc.collect()
        distributed.shutdown()


def main(cfg: TrainerConfig) -> int:
    """Run one FineTuneJob; returns the process exit code (`ExitCode`)."""
    message_path = metrics.termination_message_path(cfg.paths.termination_message_path)
    started = time.monotonic()
    try:
        with distributed.StopSignal() as stop:
            summary = FineTuneRecipe(cfg, stop).run()
    except Interrupted as exc:  # rank 0 logged `stopped`; the operator reads the reason from the pod
        metrics.write_termination_message(message_path, failed("Interrupted", str(exc)))
        return ExitCode.INTERRUPTED
    except Exception as exc:
        metrics.finish(message_path, failures.failure_summary(exc))
        return failures.exit_code(exc)
    if summary is not None:
        summary.metrics["train_seconds"] = round(time.monotonic() - started, 2)
        metrics.finish(message_path, summary)
    return ExitCode.SUCCEEDED
