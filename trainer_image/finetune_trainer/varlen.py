"""Attention for padding-free batches without a dense mask: SDPA run on each row of the flattened sequence.

Called by `model.load_base` for causal-lm models that use transformers' SDPA attention (`use_per_row_sdpa`).

transformers keeps the rows of a padding-free batch (`batching.flatten`) apart under SDPA by building a
block-diagonal causal mask of the whole sequence from the restarting `position_ids`: exact, but every layer's
attention then computes and masks all (total tokens)² scores, most of them between rows. Flash attention's
variable-length kernels read the row boundaries (`cu_seq_lens_q`/`_k`) instead, but they exist only on GPUs with the
flash-attn package. `per_row_sdpa` does what they do with plain SDPA: when the boundaries are present, it runs causal
SDPA on each row's slice and concatenates the results, so the scores computed are the sum of each row's length².
Batches without boundaries (padded, evaluation, generation) take transformers' SDPA path unchanged, mask included.
`batching.probe` still checks, on the model in use, that flattened rows do not see each other.
"""

from __future__ import annotations

import itertools
from typing import Any

import torch
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface, sdpa_mask

NAME = "finetune_per_row_sdpa"
"""The attention implementation's name in transformers' registries (`config._attn_implementation`)."""


def per_row_sdpa(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """transformers' attention signature: [batch, heads, tokens, dim] in, [batch, tokens, heads, dim] out.

    A single flattened self-attention sequence with row boundaries is split at them, each row attending causally
    to itself only; anything else goes to transformers' SDPA as is.
    """
    bounds = kwargs.pop("cu_seq_lens_q", None)
    kwargs.pop("cu_seq_lens_k", None)
    tokens = query.shape[2]
    flattened = (
        bounds is not None
        and query.shape[0] == 1
        and key.shape[2] == tokens
        and _edges(bounds)[-1] == tokens
        and getattr(module, "is_causal", True)
    )
    if not flattened:
        whole: tuple[torch.Tensor, None] = sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout, scaling, **kwargs
        )
        return whole
    edges = _edges(bounds)
    rows = [
        sdpa_attention_forward(
            module, query[:, :, a:b], key[:, :, a:b], value[:, :, a:b], None, dropout, scaling,
            **{**kwargs, "is_causal": True},
        )[0]
        for a, b in itertools.pairwise(edges)
    ]  # fmt: skip
    return torch.cat(rows, dim=1), None


_last: list[tuple[torch.Tensor, list[int]]] = []
"""The last boundaries read and their values: every layer of a forward gets the same tensor, and on a GPU reading
it waits for the device, so it is read once per forward."""


def _edges(bounds: torch.Tensor) -> list[int]:
    if not _last or _last[0][0] is not bounds:
        _last[:] = [(bounds, [int(b) for b in bounds.tolist()])]
    return _last[0][1]


def register() -> None:
    """Make `NAME` known to transformers (idempotent): this attention, and SDPA's mask for the batches it passes on."""
    if NAME not in ALL_MASK_ATTENTION_FUNCTIONS._global_mapping:
        AttentionInterface.register(NAME, per_row_sdpa)
        AttentionMaskInterface.register(NAME, sdpa_mask)


def use_per_row_sdpa(model: Any) -> bool:
    """Switch a model loaded with SDPA attention to `per_row_sdpa`; returns whether it now uses it (a model whose
    attention is not SDPA, or that cannot change it, keeps its own)."""
    if model.config._attn_implementation != "sdpa":
        return False
    register()
    model.set_attn_implementation(NAME)
    return bool(model.config._attn_implementation == NAME)
