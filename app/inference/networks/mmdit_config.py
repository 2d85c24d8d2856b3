"""MMDiT / MMDiT-X architecture config, inferred from a checkpoint's tensor shapes (never hard-coded).

The same function reads a real 8B Large file, a Medium file and the tiny test checkpoints.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass

from app.inference.api.errors import CheckpointMismatchError

# The SD3 family stores no head size; the reference fixes it at 64 (`hidden = 64 * depth`). When the checkpoint
# has QK-RMSNorm weights their length *is* the head size, which also covers the tiny test models.
DEFAULT_HEAD_DIM = 64
_BLOCK_RE = re.compile(r"^joint_blocks\.(\d+)\.")


@dataclass(frozen=True, slots=True)
class MMDiTConfig:
    depth: int
    hidden_size: int
    num_heads: int
    patch_size: int
    in_channels: int
    out_channels: int
    pos_embed_max_size: int  # side S of the stored S x S position table
    adm_in_channels: int  # pooled text vector width (2048)
    context_in_channels: int  # text token width (4096)
    mlp_hidden: int
    qk_norm: bool
    x_block_self_attn_layers: tuple[int, ...]  # MMDiT-X blocks with the extra image-only attention

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    @property
    def max_image_side(self) -> int:
        """Largest image side in pixels that the position table covers (VAE factor 8 x patch size)."""
        return self.pos_embed_max_size * self.patch_size * 8

    @property
    def is_mmditx(self) -> bool:
        return bool(self.x_block_self_attn_layers)

    @property
    def modulation_vectors(self) -> int:
        """adaLN output vectors (of width hidden_size) per conditioning: 6 per stream and block, 2 for the
        pre-only last context block, 9 for MMDiT-X image streams, 2 for the final layer."""
        blocks = sum(
            (2 if i == self.depth - 1 else 6) + (9 if i in self.x_block_self_attn_layers else 6)
            for i in range(self.depth)
        )
        return blocks + 2

    @property
    def adaln_params(self) -> int:
        """Parameters of every adaLN modulation Linear (weights and biases, final layer included)."""
        d = self.hidden_size
        return self.modulation_vectors * (d * d + d)

    @property
    def adaln_block_weight_params(self) -> int:
        """Of `adaln_params`, the joint blocks' Linear weights (the part fp8 storage holds in one byte)."""
        d = self.hidden_size
        return (self.modulation_vectors - 2) * d * d


def mmdit_config_from_shapes(
    shapes: Mapping[str, tuple[int, ...]], source: str = "checkpoint"
) -> MMDiTConfig:
    """Infer the architecture from `{key: shape}` of the MMDiT tensors (prefix already removed)."""

    def shape(key: str) -> tuple[int, ...]:
        if key not in shapes:
            raise CheckpointMismatchError(f"{source}: not an SD3 MMDiT checkpoint (no tensor '{key}')")
        return tuple(shapes[key])

    hidden, in_channels, patch, _ = shape("x_embedder.proj.weight")
    blocks = sorted({int(m.group(1)) for k in shapes if (m := _BLOCK_RE.match(k))})
    depth = len(blocks)
    if depth == 0 or blocks != list(range(depth)):
        raise CheckpointMismatchError(f"{source}: joint blocks are missing or not numbered 0..n-1")

    ln_q = shapes.get("joint_blocks.0.x_block.attn.ln_q.weight")
    qk_norm = ln_q is not None
    head_dim = ln_q[0] if ln_q is not None else DEFAULT_HEAD_DIM
    if hidden % head_dim:
        raise CheckpointMismatchError(
            f"{source}: hidden size {hidden} is not a multiple of head size {head_dim}"
        )

    num_patches = shape("pos_embed")[1]
    pos_side = math.isqrt(num_patches)
    if pos_side * pos_side != num_patches:
        raise CheckpointMismatchError(f"{source}: pos_embed has {num_patches} positions, not a square grid")

    out_features = shape("final_layer.linear.weight")[0]
    dual = tuple(i for i in blocks if f"joint_blocks.{i}.x_block.attn2.qkv.weight" in shapes)
    return MMDiTConfig(
        depth=depth,
        hidden_size=hidden,
        num_heads=hidden // head_dim,
        patch_size=patch,
        in_channels=in_channels,
        out_channels=out_features // (patch * patch),
        pos_embed_max_size=pos_side,
        adm_in_channels=shape("y_embedder.mlp.0.weight")[1],
        context_in_channels=shape("context_embedder.weight")[1],
        mlp_hidden=shape("joint_blocks.0.x_block.mlp.fc1.weight")[0],
        qk_norm=qk_norm,
        x_block_self_attn_layers=dual,
    )
