"""Choosing the compute device and dtypes (DECISIONS rows 8 and 9)."""

from __future__ import annotations

import logging
import os

import torch

from app.inference.api.errors import InvalidRequestError

log = logging.getLogger(__name__)

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise InvalidRequestError("--device cuda: no CUDA GPU is available to torch on this machine")
    if name == "mps" and not torch.backends.mps.is_available():
        raise InvalidRequestError("--device mps: Apple's Metal backend is not available on this machine")
    if name not in ("cpu", "cuda", "mps"):
        raise InvalidRequestError(f"unknown device {name!r}; choose auto, cpu, cuda or mps")
    return torch.device(name)


def available_ram_bytes() -> int:
    """Memory the OS could give this process now (Linux MemAvailable, else free pages)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 16 * 1024**3
