"""Batching (`batching.py`): padding-free and packed rows never see each other, the head-only loss is exact, every
layout gives the same loss on the same rows, and length grouping keeps the epoch a permutation."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import torch
from finetune_api.job import FineTuneJobSpec
from finetune_trainer import batching, tasks, tiny, varlen
from finetune_trainer import model as model_lib

from tests.trainer.trainerkit import INSTRUCTIONS, LLAMA, PRESETS, Run

LLAMA_JOB: dict[str, Any] = {"model": {"preset": "tiny-llama"}, "method": {"lora": {"dropout": 0.0}}}
"""LoRA without dropout: dropout draws its masks over the batch's shape, so layouts would differ by its noise."""


def _row(start: int, length: int, prompt: int) -> tasks.Features:
    ids = [(start + 7 * i) % 500 + 3 for i in range(length)]
    return {"input_ids": ids, "labels": [tasks.IGNORE] * prompt + ids[prompt:]}


ROWS = [_row(0, 9, 4), _row(100, 23, 11), _row(200, 5, 0), _row(300, 14, 7)]
"""Rows of different lengths with an untrained prompt (so the head-only loss has positions to skip), one trained
whole (its first token must not become the target of the row before it)."""


@pytest.fixture(scope="module")
def net() -> Any:
    """LoRA on tiny-llama in training mode, without dropout; the adapters' B set so they change the output."""
    tiny.ensure_tiny_preset("tiny://llama", PRESETS)
    spec = FineTuneJobSpec.model_validate({**LLAMA_JOB, "dataset": {"uri": "pvc://data/x.jsonl"}})
    tokenizer = model_lib.load_tokenizer(LLAMA, trust_remote_code=False)
    model = model_lib.load_model(
        LLAMA, spec, model_lib.Placement(torch.device("cpu"), torch.float32), tokenizer
    )
    torch.manual_seed(0)
    for name, param in model.named_parameters():
        if "lora_B" in name:
            param.data.normal_(0, 0.1)
    return model


def _logits(net: Any, batch: batching.Batch) -> torch.Tensor:
    with torch.no_grad():
        return net(**batch).logits  # type: ignore[no-any-return]


def test_flattened_rows_do_not_see_each_other(net: Any) -> None:
    """A row's logits are the same alone, after one row, and after another row of other tokens and length."""
    alone = _logits(net, batching.Layout(causal_lm=True).collate([ROWS[1]], 0))[0]
    for before in (ROWS[0], ROWS[3]):
        flat = _logits(net, batching.flatten([before, ROWS[1]]))[0, len(before["input_ids"]) :]
        torch.testing.assert_close(flat, alone, rtol=1e-5, atol=1e-5)


def test_packing_places_whole_rows_that_stay_apart(net: Any) -> None:
    rows = ROWS * 3
    windows = batching.pack(rows, max_len=32)

    assert all(len(w["input_ids"]) <= 32 for w in windows)
    assert len(windows) == 5  # 153 tokens: the fewest windows of 32 that can hold them
    pieces = sorted(tuple(w["input_ids"][s:e]) for w in windows for s, e in _spans(w["position_ids"]))
    assert pieces == sorted(tuple(r["input_ids"]) for r in rows)  # each row once, whole
    packed = batching.flatten(windows)
    logits = _logits(net, packed)[0]
    for start, end in _spans(packed["position_ids"][0].tolist()):
        row = next(r for r in rows if r["input_ids"] == packed["input_ids"][0, start:end].tolist())
        alone = _logits(net, batching.Layout(causal_lm=True).collate([row], 0))[0]
        torch.testing.assert_close(logits[start:end], alone, rtol=1e-5, atol=1e-5)


def _spans(positions: list[int]) -> list[tuple[int, int]]:
    starts = [i for i, p in enumerate(positions) if p == 0]
    return list(zip(starts, [*starts[1:], len(positions)], strict=True))


LAYOUTS = {
    "padded": batching.Layout(causal_lm=True),
    "padded, head on trained positions": batching.Layout(causal_lm=True, logits_on_trained_only=True),
    "padding-free": batching.Layout(causal_lm=True, flat=True),
    "padding-free, head on trained positions": batching.Layout(
        causal_lm=True, flat=True, logits_on_trained_only=True
    ),
}


def _loss_and_grads(net: Any, layout: batching.Layout) -> tuple[float, dict[str, torch.Tensor]]:
    net.zero_grad()
    loss = net(**layout.collate(ROWS, 0)).loss
    loss.backward()
    return float(loss.detach()), {n: p.grad.clone() for n, p in net.named_parameters() if p.grad is not None}


def test_every_layout_gives_the_same_loss_and_gradients(net: Any) -> None:
    want_loss, want_grads = _loss_and_grads(net, LAYOUTS["padded"])
    for name, layout in LAYOUTS.items():
        loss, grads = _loss_and_grads(net, layout)
        assert loss == pytest.approx(want_loss, rel=1e-6), name
        assert grads.keys() == want_grads.keys(), name
        for param, grad in grads.items():
            torch.testing.assert_close(grad, want_grads[param], rtol=1e-4, atol=1e-6, msg=f"{name}: {param}")


def test_the_head_runs_only_on_trained_positions_and_matches_the_full_logits(net: Any) -> None:
    padded = LAYOUTS["padded"].collate(ROWS, 0)
    head = batching.keep_trained_logits(padded)
    full = _logits(net, padded)

    kept = _logits(net, head)

    trained = sum(len(r["labels"]) - max(1, r["labels"].count(tasks.IGNORE)) for r in ROWS)
    assert kept.shape == (trained, full.shape[-1])  # not batch x longest row
    torch.testing.assert_close(kept, full[head["logits_to_keep"]], rtol=1e-5, atol=1e-5)
    assert batching.scored_tokens(head) == batching.scored_tokens(padded) == trained


def test_the_probe_finds_what_tiny_llama_supports(net: Any) -> None:
    net.eval()
    try:
        support = batching.probe(lambda batch: net(**batch), ROWS, 0)
    finally:
        net.train()
    assert support == batching.Support(flat=True, logits_on_trained_only=True)


@contextlib.contextmanager
def _attention(net: Any, name: str) -> Iterator[None]:
    net.set_attn_implementation(name)
    try:
        yield
    finally:
        net.set_attn_implementation(varlen.NAME)


def test_the_probe_sees_a_model_whose_rows_attend_to_each_other(net: Any) -> None:
    """Under transformers' SDPA a KV cache makes it ignore the restarting positions: the probe must notice."""

    def cached(batch: batching.Batch) -> Any:
        return net(**{**batch, "use_cache": True})

    with _attention(net, "sdpa"):
        assert not batching.probe(cached, ROWS, 0).flat


def test_per_row_attention_equals_sdpa_with_the_block_diagonal_mask(
    net: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """varlen: tiny-llama is loaded with it, it runs SDPA once per row and layer, and it gives transformers' SDPA
    result without the dense mask."""
    flat = batching.flatten(ROWS)
    lengths: list[int] = []
    sdpa = varlen.sdpa_attention_forward

    def counted(module: Any, query: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        lengths.append(query.shape[2])
        return sdpa(module, query, *args, **kwargs)

    assert net.config._attn_implementation == varlen.NAME
    with monkeypatch.context() as patch:
        patch.setattr(varlen, "sdpa_attention_forward", counted)
        per_row = _logits(net, flat)
    assert lengths == [len(r["input_ids"]) for r in ROWS] * tiny.LAYERS
    with _attention(net, "sdpa"):
        masked = _logits(net, flat)
    torch.testing.assert_close(per_row, masked, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(("world", "size"), [(1, 4), (2, 2), (3, 1)])
def test_length_grouped_order_is_a_permutation_of_rows_of_like_length(world: int, size: int) -> None:
    lengths = [(37 * i) % 200 + 1 for i in range(1000)]
    order = batching.epoch_order(lengths, 7, world, size, grouped=True)

    assert sorted(order) == list(range(1000))
    assert order == batching.epoch_order(lengths, 7, world, size, grouped=True)
    assert order != batching.epoch_order(lengths, 8, world, size, grouped=True)
    step = world * size  # one global micro-batch: rank r's rows are order[r::world] of it
    spread = [max(lengths[i] for i in order[s : s + step]) - min(lengths[i] for i in order[s : s + step])
              for s in range(0, 1000 - step + 1, step)]  # fmt: skip
    assert sum(spread) / len(spread) < 10  # random batches would spread ~100


def test_the_padded_order_is_the_plain_shuffle() -> None:
    """Runs checkpointed before length grouping existed resume in the same order."""
    generator = torch.Generator().manual_seed(5)
    assert (
        batching.epoch_order([1] * 50, 5, 2, 4, grouped=False)
        == torch.randperm(50, generator=generator).tolist()
    )


def test_resolve_falls_back_or_refuses_when_rows_would_see_each_other() -> None:
    cannot = batching.Support(flat=False, logits_on_trained_only=True)

    layout, why = batching.resolve("auto", False, "causal-lm", cannot)
    assert layout == batching.Layout(causal_lm=True, grouped=True, logits_on_trained_only=True)
    assert why is not None and "length-grouped" in why
    with pytest.raises(batching.UnsupportedBatchingError, match=r"training\.batching padding-free"):
        batching.resolve("padding-free", False, "causal-lm", cannot)
    with pytest.raises(batching.UnsupportedBatchingError, match=r"training\.packing"):
        batching.resolve("auto", True, "causal-lm", cannot)
    assert batching.resolve("auto", False, "sequence-classification", None) == (batching.Layout(), None)


def _steps(spec: dict[str, Any], training: dict[str, Any]) -> dict[str, Any]:
    return {**spec, "training": {"maxSteps": 4, **training}}


def test_padding_free_trains_as_the_padded_layout_did(train: Callable[..., Run]) -> None:
    padded = train(_steps(LLAMA_JOB, {"batching": "padded"}), INSTRUCTIONS, sub="padded")
    auto = train(_steps(LLAMA_JOB, {}), INSTRUCTIONS, sub="auto")

    assert (padded.rc, auto.rc) == (0, 0), auto.summary
    assert (padded.event("start")["batching"], auto.event("start")["batching"]) == ("padded", "padding-free")
    assert auto.event("start")["logits_on_trained_positions_only"]
    for step, loss in padded.losses.items():
        assert auto.losses[step] == pytest.approx(loss, rel=1e-5), step
    assert auto.summary["metrics"]["tokens"] == padded.summary["metrics"]["tokens"]


def test_packed_rows_train_as_the_same_rows_unpacked(train: Callable[..., Run]) -> None:
    """All 8 rows fit one window: one packed window per step is the whole dataset, as one batch of 8 rows is."""
    unpacked = train(_steps(LLAMA_JOB, {"perDeviceBatchSize": 8}), INSTRUCTIONS, sub="unpacked")
    packed = train(_steps(LLAMA_JOB, {"packing": True, "perDeviceBatchSize": 1, "maxSeqLength": 256}),
                   INSTRUCTIONS, sub="packed")  # fmt: skip

    assert packed.rc == 0, packed.summary
    assert packed.event("start")["train_examples"] == 1
    for step, loss in unpacked.losses.items():
        assert packed.losses[step] == pytest.approx(loss, rel=1e-5), step
    assert packed.summary["metrics"]["tokens"] == unpacked.summary["metrics"]["tokens"]


def test_auto_falls_back_to_length_grouped_and_padding_free_is_refused(
    train: Callable[..., Run], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        batching, "probe", lambda *_: batching.Support(flat=False, logits_on_trained_only=True)
    )

    auto = train(_steps(LLAMA_JOB, {}), INSTRUCTIONS, sub="auto")
    refused = train(_steps(LLAMA_JOB, {"batching": "padding-free"}), INSTRUCTIONS, sub="refused")

    assert auto.rc == 0, auto.summary
    assert auto.event("start")["batching"] == "length-grouped"
    assert "length-grouped" in auto.event("warning")["message"]
    assert refused.rc == 2
    assert refused.summary["reason"] == "UnsupportedBatchingError"
    assert refused.summary["message"].startswith("training.batching padding-free:")


def test_other_tasks_keep_their_padded_batches(train: Callable[..., Run]) -> None:
    rows = [{"text": r["prompt"], "label": "yes" if i % 2 else "no"} for i, r in enumerate(INSTRUCTIONS)]
    spec = {
        "model": {"preset": "tiny-bert"},
        "task": {"type": "sequence-classification", "labels": ["no", "yes"]},
    }

    run = train(_steps(spec, {}), rows)

    assert run.rc == 0, run.summary
    assert run.event("start")["batching"] == "padded"
    assert not run.event("start")["logits_on_trained_positions_only"]
