"""A result that travels: the adapter names its base as a user resolves it, the manifest proves what was read, and
the model card says what a reader needs (`finetune_trainer.provenance`, `finetune_trainer.card`)."""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import transformers
from finetune_api.model import ModelSpec
from finetune_trainer import provenance, storage
from peft import PeftModel

from tests.trainer.trainerkit import INSTRUCTIONS, LLAMA, Run


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize(
    ("model", "name", "revision"),
    [
        ({"preset": "phi-3-mini-4k-instruct"}, "microsoft/Phi-3-mini-4k-instruct", None),
        ({"preset": "tiny-llama"}, "tiny://llama", None),
        ({"uri": "hf://org/model@v1.2"}, "org/model", "v1.2"),
        ({"uri": "s3://models/base"}, "s3://models/base", None),
        ({"uri": "oci://registry.example.com/models/base@sha256:" + "a" * 64}, None, None),
    ],
)
def test_the_base_is_named_as_a_user_fetches_it(
    model: dict[str, str], name: str | None, revision: str | None
) -> None:
    reference = provenance.base_reference(ModelSpec.model_validate(model))
    assert (reference.name, reference.revision) == (name or model["uri"], revision)


def test_the_output_loads_elsewhere_on_the_base_it_names(train: Callable[..., Run], tmp_path: Path) -> None:
    """A real saved model folder (pvc://models/base), trained, its output moved: it loads on the named base."""
    data_dir = tmp_path / "run" / "data"
    base_dir = (
        data_dir / "models" / "base"
    )  # pvc://models/base: the claim `models` mounted at data_dir/models
    base = transformers.AutoModelForCausalLM.from_pretrained(LLAMA)
    base.save_pretrained(base_dir)
    transformers.AutoTokenizer.from_pretrained(LLAMA).save_pretrained(base_dir)
    (base_dir / "README.md").write_text("---\nlicense: apache-2.0\n---\n# a base model\n")

    run = train({"model": {"uri": "pvc://models/base"}, "training": {"maxSteps": 8}}, INSTRUCTIONS)
    assert run.rc == 0, run.summary
    moved = tmp_path / "elsewhere"
    shutil.copytree(run.output, moved, ignore=shutil.ignore_patterns("checkpoints"))
    shutil.rmtree(run.output)

    config = json.loads((moved / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == "pvc://models/base"
    # The documented mapping: pvc://CLAIM/PATH is PATH inside the claim, wherever it is mounted.
    resolved = storage.mounted_candidates(config["base_model_name_or_path"], data_dir)[0]
    adapted = PeftModel.from_pretrained(transformers.AutoModelForCausalLM.from_pretrained(resolved), moved)
    ids = torch.tensor([[1, 5, 9, 13]])
    with torch.no_grad():
        assert not torch.allclose(adapted(ids).logits, base(ids).logits)

    manifest = json.loads((moved / "manifest.json").read_text())
    weights = {"model.safetensors": _sha256(base_dir / "model.safetensors")}
    assert manifest["base_model"]["weights"] == weights
    assert manifest["base_model"]["name"] == "pvc://models/base"
    dataset = manifest["data"]["dataset"]
    assert (dataset["uri"], dataset["rows"]) == ("pvc://data/data.jsonl", len(INSTRUCTIONS))
    assert dataset["files"] == {"data.jsonl": _sha256(data_dir / "data.jsonl")}
    listing = "".join(f"{digest}  {name}\n" for name, digest in dataset["files"].items())
    assert dataset["digest"] == "sha256:" + hashlib.sha256(listing.encode()).hexdigest()

    card = (moved / "README.md").read_text()
    assert "More Information Needed" not in card
    assert card.startswith("---\nbase_model: pvc://models/base\nlibrary_name: peft\nlicense: apache-2.0\n")
    for fact in (
        "method: `lora`",
        "r=16",
        "8 rows",
        dataset["digest"],
        "PeftModel.from_pretrained",
        "vllm serve",
    ):
        assert fact in card, fact
