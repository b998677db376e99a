"""Recipes for the tiny presets (tiny-llama, tiny-t5, tiny-bert): random weights, tokenizers trained offline.

Called by `storage.resolve_model` when `spec.model.preset` names a preset whose source is `tiny://…`
(see `finetune_api.presets`). Each builder trains a tokenizer on the bundled `assets/corpus.txt`, builds
the model from a config in code with a fixed seed, and saves both with `save_pretrained`, so the recipe loads
them back with `from_pretrained(local_dir)` exactly like a downloaded checkpoint. Nothing is downloaded.

The result is deterministic: the same preset built twice has identical weights and vocabulary, which is what lets
tests pin loss values. Builds are cached in a directory and published with an atomic rename, so concurrent ranks
may all call `ensure_tiny_preset` and share one copy.
"""

from __future__ import annotations

import collections
import shutil
import tempfile
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

import torch
import transformers
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

VOCAB_SIZE = 512
HIDDEN = 64
LAYERS = 2
HEADS = 4
CONTEXT = 256
"""Sizes shared by the three tiny models: small enough that a training step takes milliseconds on one core."""

LLAMA_CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}</s>\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
"""A Zephyr-style chat template; `tasks.encode_causal_lm` relies on it rendering a prefix of the full chat."""

RECIPE_VERSION = 2
"""Part of the cache folder's name; bump it whenever a builder's output changes, so old builds are not reused."""

_COMPLETE = ".complete"


def corpus() -> list[str]:
    """The bundled text the tiny tokenizers are trained on, one line per entry."""
    text = resources.files("finetune_trainer").joinpath("assets/corpus.txt").read_text(encoding="utf-8")
    return [line for line in text.splitlines() if line.strip()]


def _byte_level_bpe(special: list[str]) -> Tokenizer:
    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE, special_tokens=special, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(corpus(), trainer=trainer)
    return tok


def _wordpiece_vocab(special: list[str]) -> dict[str, int]:
    """Specials, every character (alone and as a `##` continuation), then the most frequent words.

    Built by counting rather than with `WordPieceTrainer`, whose tie-breaking follows hash-map order and so changes
    from one process to the next; a vocabulary that moves would move every pinned loss in the tests.
    """
    normalizer = normalizers.BertNormalizer(lowercase=True)
    splitter = pre_tokenizers.BertPreTokenizer()
    counts: collections.Counter[str] = collections.Counter()
    for line in corpus():
        counts.update(word for word, _ in splitter.pre_tokenize_str(normalizer.normalize_str(line)))
    chars = sorted({c for word in counts for c in word})
    tokens = [*special, *chars, *(f"##{c}" for c in chars)]
    words = sorted((w for w in counts if len(w) > 1), key=lambda w: (-counts[w], w))
    tokens += words[: VOCAB_SIZE - len(tokens)]
    return {token: index for index, token in enumerate(tokens)}


def _wordpiece(special: list[str]) -> Tokenizer:
    tok = Tokenizer(models.WordPiece(vocab=_wordpiece_vocab(special), unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls), ("[SEP]", sep)],
    )
    return tok


def _llama(dest: Path) -> None:
    special = ["<unk>", "<s>", "</s>", "<pad>", "<|system|>", "<|user|>", "<|assistant|>"]
    tokenizer = transformers.PreTrainedTokenizerFast(
        tokenizer_object=_byte_level_bpe(special),
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>",
        model_max_length=CONTEXT,
    )
    tokenizer.chat_template = LLAMA_CHAT_TEMPLATE
    config = transformers.LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=HIDDEN,
        intermediate_size=2 * HIDDEN,
        num_hidden_layers=LAYERS,
        num_attention_heads=HEADS,
        num_key_value_heads=HEADS // 2,
        max_position_embeddings=CONTEXT,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )
    _save(transformers.LlamaForCausalLM(config), tokenizer, dest)


def _t5(dest: Path) -> None:
    special = ["<pad>", "</s>", "<unk>"]
    bpe = _byte_level_bpe(special)
    bpe.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    tokenizer = transformers.PreTrainedTokenizerFast(
        tokenizer_object=bpe, eos_token="</s>", unk_token="<unk>", pad_token="<pad>", model_max_length=CONTEXT
    )
    sizes: dict[str, Any] = {
        "vocab_size": len(tokenizer), "d_model": HIDDEN, "d_kv": HIDDEN // HEADS, "d_ff": 2 * HIDDEN,
        "num_layers": LAYERS, "num_decoder_layers": LAYERS, "num_heads": HEADS, "relative_attention_num_buckets": 8,
        "dropout_rate": 0.0, "pad_token_id": 0, "eos_token_id": 1, "decoder_start_token_id": 0,
        "tie_word_embeddings": True,  # T5 then scales the output by d_model**-0.5, which keeps random logits small
    }  # fmt: skip
    config = transformers.T5Config(**sizes)
    _save(transformers.T5ForConditionalGeneration(config), tokenizer, dest)


def _bert(dest: Path) -> None:
    special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tokenizer = transformers.PreTrainedTokenizerFast(
        tokenizer_object=_wordpiece(special),
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=CONTEXT,
    )
    config = transformers.BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=HIDDEN,
        num_hidden_layers=LAYERS,
        num_attention_heads=HEADS,
        intermediate_size=2 * HIDDEN,
        max_position_embeddings=CONTEXT,
        pad_token_id=0,
    )
    _save(transformers.BertModel(config), tokenizer, dest)


def _save(model: Any, tokenizer: Any, dest: Path) -> None:
    model.save_pretrained(dest)
    tokenizer.save_pretrained(dest)


BUILDERS: dict[str, Callable[[Path], None]] = {"tiny://llama": _llama, "tiny://t5": _t5, "tiny://bert": _bert}
"""Tiny preset source (as in `Preset.source`) → the function that writes it into a directory."""


def preset_dir(source: str, cache_dir: Path) -> Path:
    """Where `ensure_tiny_preset` puts the preset `source` under `cache_dir`."""
    return cache_dir / "tiny" / f"{source.removeprefix('tiny://')}-v{RECIPE_VERSION}"


def ensure_tiny_preset(source: str, cache_dir: Path) -> Path:
    """Build the tiny preset `source` (e.g. `tiny://llama`) under `cache_dir` unless it is there; return its path."""
    if source not in BUILDERS:
        raise ValueError(f"no recipe for tiny preset source {source!r}; known: {', '.join(sorted(BUILDERS))}")
    dest = preset_dir(source, cache_dir)
    if (dest / _COMPLETE).exists():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}-", dir=dest.parent))
    # A private RNG scope: building a preset must not shift the caller's random stream (and so its loss curve).
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        BUILDERS[source](staging)
    if not (staging / "config.json").exists():  # e.g. save_pretrained skipped: not rank 0 of a process group
        shutil.rmtree(staging, ignore_errors=True)
        raise RuntimeError(
            f"building {source} wrote no config.json; build presets before torch.distributed starts"
        )
    (staging / _COMPLETE).touch()
    try:
        staging.replace(dest)
    except OSError:  # another rank published the same deterministic build first
        shutil.rmtree(staging, ignore_errors=True)
    return dest
