"""A tiny SD3.5 model set in the Hugging Face snapshot layout, with random weights in the real key layouts.

<folder>/sd3.5_{large,large_turbo,medium}.safetensors   model.diffusion_model.* + first_stage_model.*
<folder>/text_encoders/{clip_l,clip_g,t5xxl_fp16}.safetensors
<folder>/tokenizer/, tokenizer_2/, tokenizer_3/
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import save_file

from tests.factory.mmdit_model import tiny_mmdit_state
from tests.factory.text_models import write_text_models
from tests.factory.vae_model import write_tiny_vae

CHECKPOINT_NAMES = {
    "large": "sd3.5_large.safetensors",
    "large-turbo": "sd3.5_large_turbo.safetensors",
    "medium": "sd3.5_medium.safetensors",
}


def write_checkpoint(path: Path, variant: str, *, seed: int = 0, dtype: torch.dtype = torch.float16) -> Path:
    family = "medium" if variant == "medium" else "large"
    state = tiny_mmdit_state(family, seed=seed, dtype=dtype)
    state.update(write_tiny_vae(None, seed=seed + 1, dtype=dtype))
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(path), metadata={"format": "pt"})
    return path


def write_snapshot(
    folder: Path, variant: str = "medium", *, seed: int = 0, text_encoders: bool = True
) -> Path:
    """Write a complete tiny model set into `folder` and return the folder."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    write_checkpoint(folder / CHECKPOINT_NAMES[variant], variant, seed=seed)
    if text_encoders:
        write_text_models(folder, seed=seed)
    return folder


def poison_tensor(checkpoint: Path, key: str, value: float = float("nan")) -> Path:
    """Set the first element of tensor `key` in a safetensors file to `value`: the one damaged weight of a bad
    download or a broken conversion (NaN by default)."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    with safe_open(str(checkpoint), "pt") as f:
        metadata = f.metadata()
    state = load_file(str(checkpoint))
    tensor = state[key].clone()
    tensor.view(-1)[0] = value
    state[key] = tensor
    save_file(state, str(checkpoint), metadata=metadata)
    return checkpoint
