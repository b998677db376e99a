"""How rows become micro-batches (`training.batching`, `training.packing`) and which positions reach the LM head.

Called by the recipe: `pack` once on the encoded rows, `probe` and `resolve` once the engine exists, then
`epoch_order` and `Layout.collate` for every micro-batch (training and held-out scoring alike).

- padding-free (causal-lm): a micro-batch's rows back to back in one sequence of shape [1, total tokens], with
  `position_ids` restarting at 0 on each row (and `cu_seq_lens_*`, the row boundaries flash attention reads). With
  no attention mask, transformers builds a block-diagonal causal mask from the restarting positions (or uses the
  boundaries directly), so no row attends to another and no compute goes to padding. The first label of each row
  is ignored: the last token of one row must not be trained to predict the first of the next.
- length-grouped: a shuffled epoch cut into megabatches of `MEGABATCH` global micro-batches, each sorted by length
  and its micro-batches shuffled again (transformers' LengthGroupedSampler, made a pure function of seed, epoch and
  rank so resuming stays exact); rows are right-padded to the longest in their micro-batch.
- padded: the plain shuffled order, right-padded (what the trainer did before padding-free existed).
- Trained positions only (causal-lm): the LM head runs only where the next token is trained (`logits_to_keep` as a
  boolean mask), and the model's own loss scores those positions against pre-shifted labels (`shift_labels`).
  That is the same mean over the same tokens as the full computation, without the vocabulary-wide logits of the
  prompt and padding positions.

`probe` checks both on the model in use, on two rows of the data, before training: a row's logits must not change
when another row is placed before it, and the head-only loss must equal the full one. `auto` takes padding-free
only when the first holds; the head-only loss is used wherever the second holds.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from finetune_trainer import tasks
from finetune_trainer.sft import IGNORE, Features

Batch = dict[str, Any]
"""A micro-batch as the model takes it: tensors, the ints `max_length_q`/`max_length_k` when padding-free, and
`use_cache: False` for causal-lm (a model that builds a KV cache ignores restarting positions, and keeps the
cache's memory for nothing)."""

MEGABATCH = 50
"""length-grouped: global micro-batches per sorted megabatch (transformers' LengthGroupedSampler uses 50)."""

PROBE_TOKENS = 16
"""Tokens of each of the two rows `probe` runs (a prefix of the first two training rows)."""


class UnsupportedBatchingError(ValueError):
    """The requested batching needs something the model's attention does not do; the message names the field."""


def pack(examples: list[Features], max_len: int) -> list[Features]:
    """causal-lm packing: whole examples placed best-fit-decreasing into windows of at most `max_len` tokens.

    Each window carries `position_ids` restarting at 0 on each example, so packed examples stay apart (see the
    module docstring). No example is cut or dropped (encoding already cut each to `max_len`).
    """
    by_length = sorted(range(len(examples)), key=lambda i: (-len(examples[i]["input_ids"]), i))
    windows: list[list[int]] = []
    free: list[tuple[int, int]] = []  # (tokens still free, window index), sorted
    for index in by_length:
        size = len(examples[index]["input_ids"])
        slot = bisect.bisect_left(free, (size, -1))  # the fullest window it still fits in
        if slot == len(free):
            windows.append([index])
            bisect.insort(free, (max_len - size, len(windows) - 1))
            continue
        room, window = free.pop(slot)
        windows[window].append(index)
        bisect.insort(free, (room - size, window))
    return [_concat([examples[i] for i in window]) for window in windows]


def _concat(examples: list[Features]) -> Features:
    return {
        "input_ids": [t for e in examples for t in e["input_ids"]],
        "labels": [t for e in examples for t in e["labels"]],
        "position_ids": [p for e in examples for p in _positions(e)],
    }


def _positions(example: Features) -> list[int]:
    return list(example.get("position_ids") or range(len(example["input_ids"])))


def flatten(examples: list[Features]) -> Batch:
    """The rows back to back as one sequence: ids, labels (each row's first ignored), restarting positions, and the
    row boundaries (`cu_seq_lens_q`/`_k`, `max_length_q`/`_k`) that flash attention's variable-length kernels take."""
    positions = torch.tensor([p for e in examples for p in _positions(e)], dtype=torch.long)
    labels = torch.tensor([t for e in examples for t in e["labels"]], dtype=torch.long)
    labels[positions == 0] = IGNORE
    starts = torch.nonzero(positions == 0).flatten()
    bounds = torch.cat([starts, torch.tensor([len(positions)])]).to(torch.int32)
    longest = int((bounds[1:] - bounds[:-1]).max())
    return {
        "input_ids": torch.tensor([[t for e in examples for t in e["input_ids"]]], dtype=torch.long),
        "labels": labels[None],
        "position_ids": positions[None],
        "cu_seq_lens_q": bounds,
        "cu_seq_lens_k": bounds,
        "max_length_q": longest,
        "max_length_k": longest,
        "use_cache": False,
    }


def keep_trained_logits(batch: Batch) -> Batch:
    """`batch` with the LM head restricted to the positions whose next token is trained: `logits_to_keep` marks
    them, and `labels`/`shift_labels` hold their targets (the model's loss then scores exactly those)."""
    labels = batch["labels"]
    keep = torch.zeros_like(labels, dtype=torch.bool)
    keep[:, :-1] = labels[:, 1:] != IGNORE
    targets = labels[:, 1:][keep[:, :-1]]
    return {**batch, "logits_to_keep": keep, "labels": targets, "shift_labels": targets}


def real_tokens(batch: Batch) -> int:
    """Tokens of the rows in `batch`, padding excluded."""
    if "attention_mask" in batch:
        return int(batch["attention_mask"].sum())
    return int(batch["input_ids"].numel())


def scored_tokens(batch: Batch) -> int:
    """Positions a causal-lm loss averages over: trained next tokens."""
    labels = batch["labels"]
    scored = labels if "shift_labels" in batch else labels[..., 1:]
    return int((scored != IGNORE).sum())


@dataclass(frozen=True)
class Layout:
    """The batching a run uses (`resolve`)."""

    causal_lm: bool = False
    flat: bool = False
    """padding-free: rows flattened into one sequence."""
    grouped: bool = False
    """Rows of similar length batched together."""
    logits_on_trained_only: bool = False
    """The LM head and loss only on trained positions (causal-lm)."""

    @property
    def name(self) -> str:
        """As `training.batching` spells it."""
        return "padding-free" if self.flat else "length-grouped" if self.grouped else "padded"

    def collate(self, examples: list[Features], pad_id: int) -> Batch:
        """One micro-batch of `examples` in this layout."""
        batch = flatten(examples) if self.flat else _padded(examples, pad_id, self.causal_lm)
        return keep_trained_logits(batch) if self.logits_on_trained_only else batch


def _padded(examples: list[Features], pad_id: int, causal_lm: bool) -> Batch:
    batch: Batch = tasks.collate(examples, pad_id)
    return {**batch, "use_cache": False} if causal_lm else batch


def epoch_order(lengths: list[int], seed: int, world: int, batch_size: int, grouped: bool) -> list[int]:
    """Every row index once, in the order of `seed`'s epoch; rank r takes `[r::world]`, `batch_size` at a time."""
    generator = torch.Generator().manual_seed(seed)
    order: list[int] = torch.randperm(len(lengths), generator=generator).tolist()
    if not grouped:
        return order
    step = world * batch_size  # one global micro-batch: rank r's share is every world-th row of it
    span = step * MEGABATCH
    grouped_order: list[int] = []
    for start in range(0, len(order), span):
        mega = sorted(order[start : start + span], key=lambda i: -lengths[i])
        batches = [mega[i : i + step] for i in range(0, len(mega), step)]
        shuffle = torch.randperm(len(batches), generator=generator).tolist()
        grouped_order += [row for b in shuffle for row in batches[b]]
    return grouped_order


@dataclass(frozen=True)
class Support:
    """What `probe` found the model does."""

    flat: bool
    logits_on_trained_only: bool


def _close(got: torch.Tensor, want: torch.Tensor) -> bool:
    """Equal within the noise of the compute dtype, relative to the size of the logits."""
    tolerance = 1e-4 if want.dtype == torch.float32 else 2e-2
    if got.shape != want.shape:
        return False
    return bool((got.float() - want.float()).abs().max() <= tolerance * max(1.0, float(want.abs().max())))


def probe(forward: Callable[[Batch], Any], examples: list[Features], pad_id: int) -> Support:
    """Run the model (in eval mode, without gradients) on two rows to see what it supports; see the module
    docstring. A collective under ZeRO-3: every rank must call it with the same rows."""
    first, second = ({"input_ids": e["input_ids"][:PROBE_TOKENS]} for e in (examples[0], examples[-1]))
    first, second = ({**e, "labels": list(e["input_ids"])} for e in (first, second))
    with torch.no_grad():
        alone = forward(_padded([second], pad_id, True)).logits[0]
        flat = forward(flatten([first, second])).logits[0, len(first["input_ids"]) :]
        both = _padded([first, second], pad_id, True)
        full = forward(both)
        try:
            head = forward(keep_trained_logits(both))
            kept = keep_trained_logits(both)["logits_to_keep"]
            logits_on_trained_only = _close(head.loss, full.loss) and _close(head.logits, full.logits[kept])
        except (TypeError, ValueError, RuntimeError, IndexError):  # a model without a boolean logits_to_keep
            logits_on_trained_only = False
    return Support(flat=_close(flat, alone), logits_on_trained_only=logits_on_trained_only)


def resolve(batching: str, packing: bool, task: str, support: Support | None) -> tuple[Layout, str | None]:
    """The layout for `training.batching` on this model, and why `auto` did not get padding-free (None if it did,
    or was not asked to). Raises UnsupportedBatchingError when padding-free is required (asked for, or packing) but the
    model's attention would let the rows see each other. `support` is None for tasks other than causal-lm."""
    if task != "causal-lm" or support is None:
        return Layout(grouped=batching == "length-grouped"), None
    head = support.logits_on_trained_only
    if batching in ("length-grouped", "padded"):
        return Layout(True, grouped=batching == "length-grouped", logits_on_trained_only=head), None
    if support.flat:
        return Layout(True, flat=True, logits_on_trained_only=head), None
    why = "the model's attention lets rows flattened into one sequence attend to each other (checked on two rows)"
    if packing:
        raise UnsupportedBatchingError(f"training.packing: {why}; set packing false")
    if batching == "padding-free":
        raise UnsupportedBatchingError(f"training.batching padding-free: {why}; use auto or length-grouped")
    return Layout(
        True, grouped=True, logits_on_trained_only=head
    ), f"batching auto chose length-grouped: {why}"


def to_device(batch: Batch, device: torch.device) -> Batch:
    """`batch` with its tensors on `device`."""
    return {
        k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in batch.items()
    }
