"""The SD3.5 Large ("8B") ControlNet, after Stability's reference `dit_embedder.ControlNetEmbedder` and
`sd3_impls.BaseModel.apply_model` (SD35_ADDONS.md §2).

outputs = ControlNet(tokens, hint, t, y)
  tokens (B, N, D)  the base MMDiT's embedded latent: x_embedder(x) + cropped pos_embed (step 1)
  hint   (1|B, N, D) pos_embed_input(control latent), computed once per job (`embed_hint`)
  t      (B,)       timestep = 1000 * sigma
  y      (B, adm)   the raw pooled text vector (width 2048), not the base model's embedding of it
  -> N tensors (B, N, D): controlnet_blocks[k] applied after transformer block k, the blocks chained (step 3)

The base MMDiT adds output `j // (depth // N)` after each of its joint blocks j (step 4, `ControlResiduals`).
Attribute names equal the file's keys (`time_text_embed.timestep_embedder.linear_1`, `pos_embed_input.proj`,
`transformer_blocks.N.attn.qkv`, `controlnet_blocks.N`), so weights load strictly without a remapping table.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn

from app.inference.api.control import CONTROL_TYPES
from app.inference.api.errors import CheckpointMismatchError, UnsupportedModelError
from app.inference.networks.layers import (
    Mlp,
    ModulationOut,
    PatchEmbed,
    SelfAttention,
    attention,
    gated,
    layer_norm,
    modulate,
    timestep_embedding,
)
from app.inference.networks.mmdit_config import DEFAULT_HEAD_DIM, MMDiTConfig

_BLOCK_RE = re.compile(r"^transformer_blocks\.(\d+)\.")
CONTROL_TYPE_KEY = "control_type"


@dataclass(frozen=True, slots=True)
class ControlNetConfig:
    depth: int  # transformer blocks (19 in the official Large ControlNets)
    hidden_size: int  # equals the base model's (2432 on Large)
    num_heads: int
    patch_size: int
    in_channels: int  # control latent channels (16)
    adm_in_channels: int  # pooled text width the y embedder takes (2048: the raw pooled vector)
    mlp_hidden: int
    control_type: str | None  # "blur" | "canny" | "depth" from the file's `control_type`, None if absent

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads


def is_sd3_medium_controlnet(shapes: Mapping[str, tuple[int, ...]]) -> bool:
    """The 2024 SD3-Medium ControlNets (InstantX, diffusers `SD3ControlNetModel` layout): diffusers block names,
    or a y embedder fed the base model's embedded y (square `text_embedder.linear_1`)."""
    if (
        "transformer_blocks.0.norm1.linear.weight" in shapes
        or "transformer_blocks.0.attn.to_q.weight" in shapes
    ):
        return True
    y1 = shapes.get("time_text_embed.text_embedder.linear_1.weight")
    return y1 is not None and len(y1) == 2 and y1[0] == y1[1]


def controlnet_config_from_shapes(
    shapes: Mapping[str, tuple[int, ...]],
    control_type: int | None,
    source: str = "ControlNet",
    head_dim: int = DEFAULT_HEAD_DIM,
) -> ControlNetConfig:
    """Infer the architecture from `{key: shape}`; `head_dim` comes from the base model the ControlNet serves
    (the file stores none: the reference sets heads = depth of the base, i.e. 64-wide heads on Large)."""
    if "controlnet_blocks.0.weight" not in shapes or "pos_embed_input.proj.weight" not in shapes:
        raise UnsupportedModelError(
            f"{source} is not an SD3.5 ControlNet (no controlnet_blocks / pos_embed_input)"
        )
    if is_sd3_medium_controlnet(shapes):
        raise UnsupportedModelError(
            f"{source} is an SD3-Medium ControlNet (InstantX / diffusers layout), a different design that "
            "SD3.5 Studio does not run; use the official SD3.5 Large ControlNets (blur, canny, depth)"
        )

    def shape(key: str) -> tuple[int, ...]:
        if key not in shapes:
            raise CheckpointMismatchError(f"{source}: not a valid SD3.5 ControlNet (no tensor '{key}')")
        return tuple(shapes[key])

    hidden, in_channels, patch, _ = shape("pos_embed_input.proj.weight")
    blocks = sorted({int(m.group(1)) for k in shapes if (m := _BLOCK_RE.match(k))})
    if not blocks or blocks != list(range(len(blocks))):
        raise CheckpointMismatchError(f"{source}: ControlNet blocks are missing or not numbered 0..n-1")
    if hidden % head_dim:
        raise CheckpointMismatchError(
            f"{source}: hidden size {hidden} is not a multiple of head size {head_dim}"
        )
    kind = None
    if control_type is not None:
        if not 0 <= control_type < len(CONTROL_TYPES):
            raise CheckpointMismatchError(
                f"{source}: unknown control_type {control_type} (0 blur, 1 canny, 2 depth)"
            )
        kind = CONTROL_TYPES[control_type]
    return ControlNetConfig(
        depth=len(blocks),
        hidden_size=hidden,
        num_heads=hidden // head_dim,
        patch_size=patch,
        in_channels=in_channels,
        adm_in_channels=shape("time_text_embed.text_embedder.linear_1.weight")[1],
        mlp_hidden=shape("transformer_blocks.0.mlp.fc1.weight")[0],
        control_type=kind,
    )


def check_fits_base(cfg: ControlNetConfig, base: MMDiTConfig, source: str = "ControlNet") -> None:
    """Refuse, with a sentence, a ControlNet the loaded MMDiT cannot take."""
    if base.is_mmditx:
        raise UnsupportedModelError(
            f"{source} is a ControlNet for SD3.5 Large; the loaded model is SD3.5 Medium, for which no "
            "official ControlNet exists — load SD3.5 Large (or Large Turbo) to use it"
        )
    if cfg.hidden_size != base.hidden_size or cfg.patch_size != base.patch_size:
        raise UnsupportedModelError(
            f"{source} has width {cfg.hidden_size} (patch {cfg.patch_size}); the loaded model has "
            f"{base.hidden_size} (patch {base.patch_size}): it was made for another model"
        )
    if cfg.adm_in_channels != base.adm_in_channels or cfg.in_channels != base.in_channels:
        raise UnsupportedModelError(
            f"{source} takes a {cfg.adm_in_channels}-wide pooled vector and {cfg.in_channels} latent channels; "
            f"the loaded model has {base.adm_in_channels} and {base.in_channels}"
        )
    interval = base.depth // cfg.depth
    if interval == 0 or (base.depth - 1) // interval >= cfg.depth:
        raise UnsupportedModelError(
            f"{source} has {cfg.depth} blocks, which do not map onto the loaded model's {base.depth} joint blocks"
        )


class TimestepTextEmbed(nn.Module):
    """c = timestep_embedder(sinusoid(t)) + text_embedder(y) (the reference's t_embedder + y_embedder)."""

    def __init__(self, dim: int, adm: int) -> None:
        super().__init__()
        self.timestep_embedder = _TwoLinear(256, dim)
        self.text_embedder = _TwoLinear(adm, dim)

    def forward(self, t: torch.Tensor, y: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        return self.timestep_embedder(timestep_embedding(t).to(dtype)) + self.text_embedder(y.to(dtype))


class _TwoLinear(nn.Module):
    """linear_1 -> SiLU -> linear_2 (diffusers' TimestepEmbedding / PixArtAlphaTextProjection names)."""

    def __init__(self, in_dim: int, dim: int) -> None:
        super().__init__()
        self.linear_1 = nn.Linear(in_dim, dim)
        self.linear_2 = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear_2(torch.nn.functional.silu(self.linear_1(x)))


class ControlBlock(nn.Module):
    """A single-stream DismantledBlock (qkv with bias, no q/k norm): adaLN, self-attention, MLP."""

    def __init__(self, cfg: ControlNetConfig) -> None:
        super().__init__()
        d = cfg.hidden_size
        self.attn = SelfAttention(d, cfg.num_heads, qk_norm=False)
        self.mlp = Mlp(d, cfg.mlp_hidden)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(d, 6 * d))

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        # x (B, N, D), c (B, D); chunk order: attention (shift, scale, gate), MLP (shift, scale, gate)
        chunks = self.adaLN_modulation(c).chunk(6, dim=1)
        attn, mlp = ModulationOut(*chunks[0:3]), ModulationOut(*chunks[3:6])
        q, k, v = self.attn.pre_attention(modulate(layer_norm(x), attn.shift, attn.scale))
        x = gated(x, attn.gate, self.attn.proj(attention(q, k, v)))
        return gated(x, mlp.gate, self.mlp(modulate(layer_norm(x), mlp.shift, mlp.scale)))


class ControlNet(nn.Module):
    def __init__(self, cfg: ControlNetConfig) -> None:
        super().__init__()
        self.cfg = cfg
        d = cfg.hidden_size
        self.time_text_embed = TimestepTextEmbed(d, cfg.adm_in_channels)
        # `pos_embed.proj` is stored but unused by the Large ControlNet (the base model's x_embedder embeds x)
        self.pos_embed = PatchEmbed(cfg.in_channels, d, cfg.patch_size)
        self.pos_embed_input = PatchEmbed(cfg.in_channels, d, cfg.patch_size)
        self.transformer_blocks = nn.ModuleList(ControlBlock(cfg) for _ in range(cfg.depth))
        self.controlnet_blocks = nn.ModuleList(nn.Linear(d, d) for _ in range(cfg.depth))

    @property
    def dtype(self) -> torch.dtype:
        return self.pos_embed_input.proj.weight.dtype

    def embed_hint(self, control_latent: torch.Tensor) -> torch.Tensor:
        """Control latent (1, C, H, W) in model space -> (1, N, D) hint tokens (step 2's second term)."""
        return self.pos_embed_input(control_latent.to(self.dtype))

    def forward(
        self, tokens: torch.Tensor, hint: torch.Tensor, t: torch.Tensor, y: torch.Tensor
    ) -> list[torch.Tensor]:
        """Steps 2-3 of §2 (module docstring); outputs before the strength."""
        x = tokens + hint.to(tokens.dtype)  # (B, N, D)
        c = self.time_text_embed(t, y, self.dtype).to(tokens.dtype)  # (B, D)
        outputs = []
        for block, head in zip(self.transformer_blocks, self.controlnet_blocks, strict=True):
            x = block(x, c)  # chained: each block takes the previous one's output
            outputs.append(head(x))  # (B, N, D)
        return outputs


def block_interval(control_depth: int, base_depth: int) -> int:
    """Base joint block j receives output j // interval (2 on Large: 38 blocks, 19 outputs)."""
    return base_depth // control_depth
