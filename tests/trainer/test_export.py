"""`output.formats`: the merged model and the ONNX graph load (transformers, ONNX Runtime) and reproduce the trained
PEFT model's logits; a damaged export fails the run and publishes nothing.

The PEFT model here is the base plus the saved adapter, loaded independently of the trainer; every run is fp32 on
CPU, so merged and ONNX agree with it to float32 noise (the tolerances below, far under the run's own 1e-3).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime
import peft
import pytest
import torch
import transformers
from finetune_api.trainer import ExitCode
from finetune_trainer import export, tasks
from safetensors.torch import load_file, save_file

from tests.trainer.test_tasks import REVIEWS
from tests.trainer.trainerkit import BERT, INSTRUCTIONS, LLAMA, Run, launch, make_config

MERGED_ATOL = 1e-4
ONNX_ATOL = 1e-3
"""Largest |Δlogit| allowed between an export and the PEFT model (logits here are of order 1)."""

LABELS = ["negative", "positive"]


def _manifest(run: Run) -> dict[str, Any]:
    return dict(json.loads((run.output / "manifest.json").read_text()))


def _agree(run: Run, auto_class: Any, base: Path, texts: list[str], formats: list[str]) -> None:
    """merged/ (transformers) and onnx/ (ONNX Runtime) give the PEFT model's logits on `texts`."""
    tokenizer = transformers.AutoTokenizer.from_pretrained(run.output)
    inputs = tokenizer(texts, return_tensors="pt", padding=True)
    head = (
        {"num_labels": len(LABELS)} if auto_class is transformers.AutoModelForSequenceClassification else {}
    )
    adapted = peft.PeftModel.from_pretrained(auto_class.from_pretrained(base, **head), run.output).eval()
    with torch.no_grad():
        want = adapted(**inputs).logits
        if "merged" in formats:
            merged = auto_class.from_pretrained(run.output / "merged").eval()
            assert (merged(**inputs).logits - want).abs().max() <= MERGED_ATOL
    if "onnx" in formats:
        session = onnxruntime.InferenceSession(str(run.output / "onnx" / "model.onnx"))
        feed = {i.name: inputs[i.name].numpy() for i in session.get_inputs()}
        (got,) = session.run(["logits"], feed)
        assert np.abs(got - want.numpy()).max() <= ONNX_ATOL


def _exports_recorded(run: Run, formats: list[str]) -> None:
    """Each format's files, with their sha256, and its passed checks are in manifest.json."""
    exports = _manifest(run)["exports"]
    assert sorted(exports) == sorted(formats)
    for fmt in formats:
        files = exports[fmt]["files"]
        assert files and all(name.startswith(f"{fmt}/") for name in files)
        assert files.items() <= _manifest(run)["digests"].items()
        assert exports[fmt]["precision"] == "fp32"
        assert exports[fmt]["checks"] and all(c["ok"] for c in exports[fmt]["checks"])
    assert not (run.output / export.STAGING).exists()


def test_causal_lm_merged_and_onnx_agree_with_the_adapter(train: Callable[..., Run]) -> None:
    # mergeAdapter is an alias of formats: [merged], and adds to the listed ones.
    spec = {"model": {"preset": "tiny-llama"}, "output": {"mergeAdapter": True, "formats": ["onnx"]},
            "training": {"maxSteps": 8}}  # fmt: skip
    run = train(spec, INSTRUCTIONS)

    assert run.rc == 0, run.summary
    _exports_recorded(run, ["merged", "onnx"])
    assert {c["against"] for c in _manifest(run)["exports"]["onnx"]["checks"]} == {"trained", "merged"}
    assert (run.output / "onnx" / "model.onnx.data").is_file()  # the weights, beside the graph
    texts = ["What is the capital of France?", "Say hi"]  # two lengths: padding and the dynamic axes
    _agree(run, transformers.AutoModelForCausalLM, LLAMA, texts, ["merged", "onnx"])


def test_sequence_classification_merged_and_onnx_agree_with_the_adapter(train: Callable[..., Run]) -> None:
    spec = {"model": {"preset": "tiny-bert"}, "task": {"type": "sequence-classification", "labels": LABELS},
            "output": {"formats": ["merged", "onnx"]}, "training": {"maxSteps": 8}}  # fmt: skip
    run = train(spec, REVIEWS * 2)

    assert run.rc == 0, run.summary
    _exports_recorded(run, ["merged", "onnx"])
    texts = ["the movie was great", "cold and boring food, terrible"]
    _agree(run, transformers.AutoModelForSequenceClassification, BERT, texts, ["merged", "onnx"])


def test_a_full_fine_tune_is_exported_to_onnx_from_the_saved_model(train: Callable[..., Run]) -> None:
    spec = {"model": {"preset": "tiny-llama"}, "method": {"type": "full"}, "output": {"formats": ["onnx"]},
            "training": {"maxSteps": 4, "learningRate": 1e-3}}  # fmt: skip
    run = train(spec, INSTRUCTIONS)

    assert run.rc == 0, run.summary
    _exports_recorded(run, ["onnx"])
    assert {c["against"] for c in _manifest(run)["exports"]["onnx"]["checks"]} == {"trained", "model"}
    assert not (run.output / "merged").exists()


@pytest.mark.parametrize(
    ("task", "head", "rows"),
    [
        ("token-classification", {"num_labels": 3}, [(["Alice", "lives", "in", "London"],), (["Bob"],)]),
        ("question-answering", {}, [("Where?", "In Paris, since 1990."), ("Who?", "Marie Curie.")]),
    ],
    ids=["token-classification", "question-answering"],
)
def test_the_other_tasks_graphs_reproduce_their_model(
    tmp_path: Path, task: str, head: dict[str, Any], rows: list[tuple[Any, ...]]
) -> None:
    """Per-token logits, and question answering's two outputs with BERT's token_type_ids as a third input."""
    auto_class = getattr(transformers, tasks.MODEL_CLASSES[task])
    model = auto_class.from_pretrained(BERT, **head).eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(BERT)
    split, pairs = task == "token-classification", task == "question-answering"
    # The tiny tokenizer leaves token_type_ids out unless asked; BERT's own tokenizers return them for pairs.
    examples = [dict(tokenizer(*row, is_split_into_words=split, return_token_type_ids=pairs)) for row in rows]
    batch = export.probe_batch(task, examples, tokenizer.pad_token_id)
    export.export_onnx(task, model, batch, tmp_path)
    got = export.run_onnx(task, tmp_path, batch)
    check = export.compare("onnx", "model", got, export.run_torch(task, model, batch), export.EXACT)
    assert check.ok, check.describe()
    assert set(got) == set(export.OUTPUTS.get(task, ("logits",)))
    assert ("token_type_ids" in export.onnx_inputs(batch)) == pairs


def test_a_damaged_merged_model_fails_the_run_and_publishes_nothing(
    train: Callable[..., Run], monkeypatch: pytest.MonkeyPatch
) -> None:
    load = export._load

    def damage_then_load(spec: Any, folder: Path, **kwargs: Any) -> Any:
        if (
            folder.name == "merged"
        ):  # as a bad disk or a bad merge would: one weight scaled in the written file
            weights = load_file(folder / "model.safetensors")
            weights["lm_head.weight"] = weights["lm_head.weight"] * 3.0
            save_file(weights, folder / "model.safetensors", metadata={"format": "pt"})
        return load(spec, folder, **kwargs)

    monkeypatch.setattr(export, "_load", damage_then_load)
    spec = {"model": {"preset": "tiny-llama"}, "output": {"formats": ["merged"]}, "training": {"maxSteps": 2}}
    run = train(spec, INSTRUCTIONS)

    assert run.rc == ExitCode.INVALID_CONFIG
    assert run.summary["reason"] == "ExportError"
    assert "merged vs trained" in run.summary["message"]
    assert "nothing was published" in run.summary["message"]
    assert not (run.output / "manifest.json").exists()
    assert not (run.output / "merged").exists()
    assert not (run.output / export.STAGING).exists()


def test_a_damaged_onnx_graph_is_caught(tmp_path: Path) -> None:
    """The ONNX check on its own: a graph whose weights file was altered no longer matches the model."""
    model = transformers.AutoModelForSequenceClassification.from_pretrained(BERT, num_labels=2).eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(BERT)
    rows = [dict(tokenizer(r["text"])) for r in REVIEWS]
    batch = export.probe_batch("sequence-classification", rows, tokenizer.pad_token_id)
    want = export.run_torch("sequence-classification", model, batch)
    export.export_onnx("sequence-classification", model, batch, tmp_path)
    good = export.compare(
        "onnx", "model", export.run_onnx("sequence-classification", tmp_path, batch), want, 1e-4
    )
    assert good.ok, good.describe()

    data = tmp_path / "model.onnx.data"
    raw = bytearray(data.read_bytes())
    raw[: len(raw) // 2] = bytes(len(raw) // 2)  # zero the first half of the weights
    data.write_bytes(bytes(raw))
    bad = export.compare(
        "onnx", "model", export.run_onnx("sequence-classification", tmp_path, batch), want, 1e-3
    )
    assert not bad.ok, bad.describe()


@pytest.mark.slow
def test_a_zero3_run_exports_on_rank_0(tmp_path: Path) -> None:
    """Under ZeRO-3 every rank computes the trained model's reference outputs (a collective), then rank 0 alone
    loads and exports whole models while the other rank waits."""
    spec = {"model": {"preset": "tiny-llama"}, "distributed": {"deepspeed": {"zeroStage": 3}},
            "output": {"formats": ["merged", "onnx"]}, "training": {"maxSteps": 4, "perDeviceBatchSize": 2}}  # fmt: skip
    run = launch(make_config(tmp_path, spec, INSTRUCTIONS), nproc=2)

    assert run.rc == 0, run.summary
    assert run.event("start")["world_size"] == 2
    _exports_recorded(run, ["merged", "onnx"])
    _agree(run, transformers.AutoModelForCausalLM, LLAMA, ["Say hi"], ["merged", "onnx"])
