"""Out-of-memory errors, recognised by the type each backend raises.

`torch.OutOfMemoryError` (also `torch.cuda.OutOfMemoryError`) is what the CUDA/ROCm and XPU caching allocators
raise, and `MemoryError` is the host's (Python, numpy, Pillow). Torch 2.13's CPU and MPS allocators have no
type of their own: they raise a plain `RuntimeError` (c10::Error). For those two only, the allocator's own
fixed wording tells the error apart; a RuntimeError subclass or any other text is never taken for one.
"""

from __future__ import annotations

import torch

OOM_TYPES: tuple[type[BaseException], ...] = (torch.OutOfMemoryError, MemoryError)

# The fixed wording of the untyped allocator failures: c10/core/impl/alloc_cpu.cpp (Linux/macOS, Windows) and
# aten/src/ATen/mps/MPSAllocator.mm.
_UNTYPED_ALLOCATOR_FAILURES = (
    "DefaultCPUAllocator: can't allocate memory",
    "DefaultCPUAllocator: not enough memory",
    "MPS backend out of memory",
)


def is_out_of_memory(exc: BaseException) -> bool:
    """True when `exc` says that a device or the host ran out of memory."""
    if isinstance(exc, OOM_TYPES):
        return True
    return type(exc) is RuntimeError and any(text in str(exc) for text in _UNTYPED_ALLOCATOR_FAILURES)
