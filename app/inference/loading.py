"""Loading networks from their files: modules built on `meta`, tensors assigned (never initialised, never twice)."""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from app.inference.mmdit import MMDiT
from app.inference.mmdit_config import mmdit_config_from_shapes
from app.inference.variants import MMDIT_PREFIX
from app.inference.weights import assign_weights, load_tensors

log = logging.getLogger(__name__)


def load_mmdit(path: Path, *, dtype: torch.dtype, device: torch.device, prefix: str = MMDIT_PREFIX) -> MMDiT:
    """Build the MMDiT on `meta` from the file's shapes and assign its tensors (cast to `dtype` as read)."""
    state = load_tensors(path, prefix, dtype=dtype)
    cfg = mmdit_config_from_shapes({k: tuple(v.shape) for k, v in state.items()}, str(path))
    with torch.device("meta"):
        model = MMDiT(cfg)
    assign_weights(model, state, source=str(path), what="SD3.5 MMDiT", dtype=dtype, device=device)
    return model.eval().requires_grad_(False)


