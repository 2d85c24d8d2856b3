"""Out of memory is recognised by the type each backend raises (message text decides only for the two
allocators torch gives no type of their own)."""

import pytest
import torch

from app.inference.memory.oom import is_out_of_memory


def test_a_real_cpu_allocation_failure_is_out_of_memory():
    with pytest.raises(RuntimeError) as caught:
        torch.empty(2**62, dtype=torch.uint8)  # 4 EiB: the CPU allocator refuses at once
    assert is_out_of_memory(caught.value)


@pytest.mark.parametrize(
    "error",
    [
        torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
        torch.cuda.OutOfMemoryError("anything"),
        MemoryError(),
        RuntimeError("MPS backend out of memory (MPS allocated: 8.00 GB, other allocations: 1 GB)"),
    ],
)
def test_each_backend_s_out_of_memory_is_recognised(error):
    assert is_out_of_memory(error)


@pytest.mark.parametrize(
    "error",
    [
        RuntimeError("out of memory"),  # words alone are not an allocator failure
        RuntimeError("CUDA error: an illegal memory access was encountered"),
        ValueError("out of memory"),
        KeyError("MPS backend out of memory"),
    ],
)
def test_other_errors_are_not_out_of_memory(error):
    assert not is_out_of_memory(error)
