"""`python -m tests.trainer.avx512bf16 --config FILE`: the trainer on a CPU that bitsandbytes takes for AVX512-BF16.

bitsandbytes asks `has_avx512bf16()` once per 4-bit layer, when `Linear4bit` is built; on a yes the layer repacks
its weight into the AVX512-BF16 layout at its first forward in eval mode without gradients. Answering yes here
puts that branch in front of the trainer on any CPU, so the suite covers both kinds of host. (The matmul kernel
bitsandbytes registered at import still follows the real CPU: a run that did repack would compute wrongly here, and
the trainer must not repack at all.)
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import bitsandbytes.functional
import bitsandbytes.nn.modules

LOOKUPS = ((bitsandbytes.functional, "has_avx512bf16"), (bitsandbytes.nn.modules, "has_avx512bf16"))
"""Where bitsandbytes finds the check: its own module, and `nn.modules`, which imported the name."""


def _yes() -> bool:
    return True


def claim_avx512bf16(assign: Callable[[Any, str, Any], None] = setattr) -> None:
    """Make bitsandbytes' CPU check answer yes (`assign`: e.g. `monkeypatch.setattr`, to undo it after a test)."""
    for module, name in LOOKUPS:
        assign(module, name, _yes)


if __name__ == "__main__":
    claim_avx512bf16()
    from finetune_trainer.__main__ import main

    sys.exit(main())
