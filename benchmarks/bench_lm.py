"""The model and rows `trainer_vs_trl.py` trains on, built offline and cached under `.cache/bench-models`.

- Model: a Llama with SmolLM2-135M's exact shape (30 layers, hidden 576, 9 query / 3 key-value heads, MLP 1536,
  vocabulary 49,152, tied embeddings: 134.5 M parameters), weights drawn with a fixed seed. No checkpoint can be
  downloaded here; a step's cost depends on the shapes, not on the weights' values, and every side starts from
  the same weights, so the losses compare.
- Tokenizer: byte-level BPE trained on the rows' own text (it learns fewer than 49,152 tokens; the unused
  embedding rows cost what SmolLM2's do, since the head still spans the whole vocabulary).
- Rows: prompt/completion pairs made from the docstrings of the Python standard library that runs the script:
  "Document `module.function(signature)`." → the docstring. Docstring lengths have a long tail (most are a
  sentence or two, a few run to thousands of tokens, which the trainer's encoding cuts to the sequence length).
"""

from __future__ import annotations

import importlib
import inspect
import json
import random
from pathlib import Path
from typing import Any

import transformers
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

MODULES = (
    "argparse", "asyncio", "collections", "concurrent.futures", "contextlib", "csv", "dataclasses", "datetime",
    "decimal", "difflib", "email", "enum", "fractions", "functools", "glob", "gzip", "hashlib", "heapq", "http.client",
    "inspect", "ipaddress", "itertools", "json", "logging", "mailbox", "math", "os", "pathlib", "pickle", "pprint",
    "random", "re", "shutil", "socket", "sqlite3", "statistics", "string", "subprocess", "tarfile", "tempfile",
    "textwrap", "threading", "typing", "unittest", "urllib.parse", "uuid", "xml.dom.minidom", "zipfile",
)  # fmt: skip
"""Standard-library modules whose public callables' docstrings become the rows."""

EOS = "<|endoftext|>"


def rows() -> list[dict[str, str]]:
    """Every documented public function or method of `MODULES`, as a prompt/completion row, in a fixed order."""
    found: dict[str, str] = {}
    for name in MODULES:
        module = importlib.import_module(name)
        for attr, value in sorted(vars(module).items()):
            if attr.startswith("_"):
                continue
            members = [(attr, value)]
            if inspect.isclass(value):
                members += [
                    (f"{attr}.{m}", v) for m, v in sorted(vars(value).items()) if not m.startswith("_")
                ]
            for qualname, obj in members:
                doc = inspect.getdoc(obj) if callable(obj) else None
                if doc and len(doc) > 40:
                    found.setdefault(f"{name}.{qualname}{_signature(obj)}", doc)
    return [{"prompt": f"Document `{name}`.\n", "completion": doc} for name, doc in found.items()]


def _signature(obj: Any) -> str:
    try:
        return str(inspect.signature(obj))
    except (TypeError, ValueError):
        return "(...)"


def config() -> transformers.LlamaConfig:
    """SmolLM2-135M's architecture."""
    return transformers.LlamaConfig(
        vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
        num_key_value_heads=3, max_position_embeddings=8192, rope_theta=100000.0, rms_norm_eps=1e-5,
        tie_word_embeddings=True, bos_token_id=0, eos_token_id=0, pad_token_id=0,
    )  # fmt: skip


def build(cache: Path) -> tuple[Path, Path]:
    """(model folder, rows.jsonl), built once under `cache`."""
    folder, data = cache / "smollm2-135m-shape", cache / "docstring-rows.jsonl"
    if (folder / "config.json").exists() and data.exists():
        return folder, data
    folder.mkdir(parents=True, exist_ok=True)
    examples = rows()
    random.Random(0).shuffle(examples)
    data.write_text("".join(json.dumps(r) + "\n" for r in examples))
    bpe = Tokenizer(models.BPE(unk_token=None))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=49152, special_tokens=[EOS], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    bpe.train_from_iterator((r["prompt"] + r["completion"] for r in examples), trainer=trainer)
    tokenizer = transformers.PreTrainedTokenizerFast(
        tokenizer_object=bpe, eos_token=EOS, bos_token=EOS, pad_token=EOS, model_max_length=8192
    )
    transformers.set_seed(0)
    model = transformers.LlamaForCausalLM(config())
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder, data
