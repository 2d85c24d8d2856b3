"""Tiny random-weight MMDiT / MMDiT-X state dicts with exactly the key names of the real files.

Names come from the real manifests (`keys/sd3.5_large.json`, `keys/sd3.5_medium.json`); widths are scaled down
and only a few joint blocks are kept (the last one keeps the real last block's pre-only layout).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

import torch

KEYS_DIR = Path(__file__).parent / "keys"
PREFIX = "model.diffusion_model."
_BLOCK = re.compile(r"^joint_blocks\.(\d+)\.(.*)$")


@dataclass(frozen=True)
class TinyMMDiTSpec:
    hidden: int = 64
    head_dim: int = 16
    depth: int = 3
    pos_side: int = 16  # real: 192 (Large), 384 (Medium)
    pooled: int = 192  # tiny CLIP-L (64) + CLIP-G (128)
    context: int = 256  # tiny T5 d_model
    # Real block each tiny block is copied from (the last must be the real last block, whose context branch is
    # pre-only). None = the first depth-1 blocks.
    source_blocks: tuple[int, ...] | None = None


TINY_LARGE = TinyMMDiTSpec()
# Medium keeps 10 blocks so the default skip-layer guidance layers (7, 8, 9) exist, mixing MMDiT-X blocks (real
# 0..4) with plain ones (real 13..16).
TINY_MEDIUM = TinyMMDiTSpec(pos_side=32, depth=10, source_blocks=(0, 1, 2, 3, 4, 13, 14, 15, 16, 23))


def real_manifest(variant: str) -> dict:
    name = {"large": "sd3.5_large", "medium": "sd3.5_medium"}[variant]
    return json.loads((KEYS_DIR / f"{name}.json").read_text())


def tiny_mmdit_shapes(variant: str, spec: TinyMMDiTSpec) -> dict[str, tuple[int, ...]]:
    """Real key names (without prefix) -> tiny shapes."""
    manifest = real_manifest(variant)
    real = {k["key"][len(PREFIX) :]: tuple(k["shape"]) for k in manifest["keys"]}
    big = real["x_embedder.proj.weight"][0]
    real_depth = big // 64
    # The tiny model keeps blocks 0..depth-2 (or the chosen ones) and the real last block renamed to depth-1.
    source = spec.source_blocks or (*range(spec.depth - 1), real_depth - 1)
    assert len(source) == spec.depth and source[-1] == real_depth - 1
    rename = {real: tiny for tiny, real in enumerate(source)}

    def scale_dim(key: str, dim: int) -> int:
        if key.endswith(("ln_q.weight", "ln_k.weight")):
            return spec.head_dim
        if key == "pos_embed" and dim == real["pos_embed"][1]:
            return spec.pos_side**2
        if key == "y_embedder.mlp.0.weight" and dim == 2048:
            return spec.pooled
        if key == "context_embedder.weight" and dim == 4096:
            return spec.context
        if dim % big == 0 and dim // big in (1, 2, 3, 4, 6, 9):
            return dim // big * spec.hidden
        return dim

    shapes: dict[str, tuple[int, ...]] = {}
    for key, shape in real.items():
        m = _BLOCK.match(key)
        if m:
            i = int(m.group(1))
            if i not in rename:
                continue
            key = f"joint_blocks.{rename[i]}.{m.group(2)}"
        shapes[key] = tuple(scale_dim(key, s) for s in shape)
    return shapes


def tiny_mmdit_state(
    variant: str, spec: TinyMMDiTSpec | None = None, *, seed: int = 0, dtype: torch.dtype = torch.float16
) -> dict[str, torch.Tensor]:
    """Random weights scaled so activations stay O(1); keys carry the single-file prefix."""
    spec = spec or (TINY_MEDIUM if variant == "medium" else TINY_LARGE)
    gen = torch.Generator().manual_seed(seed)
    state: dict[str, torch.Tensor] = {}
    for key, shape in sorted(tiny_mmdit_shapes(variant, spec).items()):
        if key.endswith(("ln_q.weight", "ln_k.weight")):
            t = 1.0 + 0.1 * torch.randn(shape, generator=gen)
        elif key.endswith(".bias"):
            t = 0.02 * torch.randn(shape, generator=gen)
        elif key == "pos_embed":
            t = 0.5 * torch.randn(shape, generator=gen)
        else:
            fan_in = math.prod(shape[1:])
            t = torch.randn(shape, generator=gen) / math.sqrt(fan_in)
        state[PREFIX + key] = t.to(dtype)
    return state
