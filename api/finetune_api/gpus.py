"""GPU memory per product, keyed by the `nvidia.com/gpu.product` label NVIDIA GPU Feature Discovery sets.

The values are the total memory in MiB as the driver reports it (`nvidia-smi --query-gpu=memory.total`, which GFD
copies into the `nvidia.com/gpu.memory` label); ECC and driver versions move it by up to a few hundred MiB. Used by
the GPU-fit verdict (`memory.py`) when `resources.gpu.product` names a product and `resources.gpu.minMemoryGiB`
says less (or nothing).
"""

from __future__ import annotations

GPU_MEMORY_MIB: dict[str, int] = {
    "Tesla-T4": 15360,
    "Tesla-V100-SXM2-16GB": 16384,
    "Tesla-V100-SXM2-32GB": 32768,
    "NVIDIA-A10": 23028,
    "NVIDIA-A10G": 23028,
    "NVIDIA-L4": 23034,
    "NVIDIA-GeForce-RTX-4090": 24564,
    "NVIDIA-A100-PCIE-40GB": 40960,
    "NVIDIA-A100-SXM4-40GB": 40960,
    "NVIDIA-L40": 46068,
    "NVIDIA-L40S": 46068,
    "NVIDIA-RTX-A6000": 49140,
    "NVIDIA-A100-80GB-PCIe": 81920,
    "NVIDIA-A100-SXM4-80GB": 81920,
    "NVIDIA-H100-PCIe": 81559,
    "NVIDIA-H100-80GB-HBM3": 81559,
    "NVIDIA-H100-NVL": 95830,
    "NVIDIA-H200": 143771,
}


def product_memory_gib(product: str | None) -> float | None:
    """Memory of one GPU of `product` in GiB, or None for a product not in the table (MIG slices included)."""
    if product is None or product not in GPU_MEMORY_MIB:
        return None
    return GPU_MEMORY_MIB[product] / 1024
