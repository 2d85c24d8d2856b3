"""A tiny random-weight SD3 VAE with exactly the real checkpoint's 244 key names (keys/vae.json).

Channel widths 128/256/512 become 32/64/96 (multiples of the 32 GroupNorm groups, and still different at every
level, so the same `nin_shortcut` convs exist); latent channels (16), image channels (3) and kernels are kept.
Weights are drawn with std 1/sqrt(fan_in) so activations stay near unit scale and decoded images are not all
clipped.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file

KEYS_FILE = Path(__file__).parent / "keys" / "vae.json"
REAL_PREFIX = "first_stage_model."
TINY_WIDTHS = {128: 32, 256: 64, 512: 96}
TINY_CH = 32
TINY_CH_MULT = (1, 2, 3, 3)
TINY_BLOCK_OUT_CHANNELS = (32, 64, 96, 96)  # diffusers' `block_out_channels` for the same network


def real_manifest() -> dict:
    return json.loads(KEYS_FILE.read_text())


def real_vae_shapes() -> dict[str, tuple[int, ...]]:
    """Key (without the `first_stage_model.` prefix) -> shape of the real SD3.5 VAE."""
    return {e["key"][len(REAL_PREFIX) :]: tuple(e["shape"]) for e in real_manifest()["keys"]}


def tiny_vae_shapes() -> dict[str, tuple[int, ...]]:
    return {k: tuple(TINY_WIDTHS.get(d, d) for d in s) for k, s in real_vae_shapes().items()}


def _init(key: str, shape: tuple[int, ...], gen: torch.Generator) -> torch.Tensor:
    noise = torch.randn(shape, generator=gen, dtype=torch.float32)
    module = key.rsplit(".", 2)[-2]
    if key.endswith(".weight") and len(shape) == 4:  # conv
        fan_in = shape[1] * shape[2] * shape[3]
        # residual branches and attention outputs a little smaller: skip sums do not grow level by level
        gain = 0.5 if module in ("conv2", "proj_out") else 1.0
        return noise * (gain / fan_in**0.5)
    if module.startswith("norm"):  # GroupNorm affine
        return 1.0 + 0.1 * noise if key.endswith(".weight") else 0.1 * noise
    return 0.02 * noise  # conv bias


def write_tiny_vae(
    path: Path | None = None,
    *,
    prefix: str = REAL_PREFIX,
    seed: int = 0,
    dtype: torch.dtype = torch.float16,
) -> dict[str, torch.Tensor]:
    """The tiny VAE's tensors under `prefix` (deterministic for a seed); saved as safetensors if `path`."""
    gen = torch.Generator("cpu").manual_seed(seed)
    state = {prefix + k: _init(k, s, gen).to(dtype) for k, s in sorted(tiny_vae_shapes().items())}
    if path is not None:
        save_file(state, str(path))
    return state


def full_size_vae_state(*, seed: int = 0, dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
    """Random weights for the full-size SD3 VAE (the real shapes, unprefixed), drawn like the tiny one's."""
    gen = torch.Generator("cpu").manual_seed(seed)
    return {k: _init(k, s, gen).to(dtype) for k, s in sorted(real_vae_shapes().items())}
