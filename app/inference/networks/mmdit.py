"""MMDiT (SD3.5 Large / Large Turbo) and MMDiT-X (SD3.5 Medium), after Stability's reference `mmditx.py`.

velocity = MMDiT(x, t, y, context, skip_layers)
  x       (B, C, H, W)   latent in model space
  t       (B,)           timestep = 1000 * sigma, float32
  y       (B, adm)       pooled text vector
  context (B, Lc, ctx)   text tokens
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import nn

from app.inference.networks.layers import (
    EmbedMLP,
    Mlp,
    PatchEmbed,
    SelfAttention,
    attention,
    gated,
    layer_norm,
    modulate,
    timestep_embedding,
)
from app.inference.networks.mmdit_config import MMDiTConfig

Chunks = tuple[torch.Tensor, ...]  # n_mod tensors of (B, D), in the checkpoint's chunk order


class Modulation(Protocol):
    """The adaLN outputs of one forward batch, block by block (computed live, or read from a job's table)."""

    def block(self, index: int) -> tuple[Chunks, Chunks]:
        """(context stream, image stream) modulation of joint block `index`."""
        ...

    def final(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(shift, scale) of the final layer, each (B, D)."""
        ...


class DismantledBlock(nn.Module):
    """One stream (context or image) of a joint block: adaLN, attention projections and MLP."""

    def __init__(self, cfg: MMDiTConfig, *, pre_only: bool = False, x_self_attn: bool = False) -> None:
        super().__init__()
        d = cfg.hidden_size
        self.pre_only = pre_only
        self.x_self_attn = x_self_attn
        self.attn = SelfAttention(d, cfg.num_heads, cfg.qk_norm, pre_only=pre_only)
        if x_self_attn:
            self.attn2 = SelfAttention(d, cfg.num_heads, cfg.qk_norm)
        if not pre_only:
            self.mlp = Mlp(d, cfg.mlp_hidden)
        n_mod = 2 if pre_only else (9 if x_self_attn else 6)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(d, n_mod * d))

    def modulation(self, c: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return self.adaLN_modulation(c).chunk(self.adaLN_modulation[1].out_features // c.shape[-1], dim=1)

    def post_attention(
        self, x: torch.Tensor, attn: torch.Tensor, mod: tuple[torch.Tensor, ...]
    ) -> torch.Tensor:
        _, _, gate_msa, shift_mlp, scale_mlp, gate_mlp = mod[:6]
        x = gated(x, gate_msa, self.attn.proj(attn))
        return gated(x, gate_mlp, self.mlp(modulate(layer_norm(x), shift_mlp, scale_mlp)))


class JointBlock(nn.Module):
    def __init__(self, cfg: MMDiTConfig, index: int) -> None:
        super().__init__()
        self.context_block = DismantledBlock(cfg, pre_only=index == cfg.depth - 1)
        self.x_block = DismantledBlock(cfg, x_self_attn=index in cfg.x_block_self_attn_layers)

    def forward(
        self, context: torch.Tensor, x: torch.Tensor, mod: tuple[Chunks, Chunks]
    ) -> tuple[torch.Tensor | None, torch.Tensor]:
        cb, xb = self.context_block, self.x_block
        c_mod, x_mod = mod  # this block's adaLN outputs, computed live or read from a job's table

        qc, kc, vc = cb.attn.pre_attention(modulate(layer_norm(context), c_mod[0], c_mod[1]))
        x_norm = layer_norm(x)  # shared by both MMDiT-X attentions
        qx, kx, vx = xb.attn.pre_attention(modulate(x_norm, x_mod[0], x_mod[1]))

        # Joint attention over [context ; image] tokens, context first as in the reference.
        n_ctx = context.shape[1]
        joint = attention(torch.cat([qc, qx], dim=2), torch.cat([kc, kx], dim=2), torch.cat([vc, vx], dim=2))
        attn_c, attn_x = joint[:, :n_ctx], joint[:, n_ctx:]  # (B, Lc, D), (B, N, D)

        if xb.x_self_attn:
            shift2, scale2, gate2 = x_mod[6:9]
            q2, k2, v2 = xb.attn2.pre_attention(modulate(x_norm, shift2, scale2))
            _, _, gate_msa, shift_mlp, scale_mlp, gate_mlp = x_mod[:6]
            x = gated(x, gate_msa, xb.attn.proj(attn_x))
            x = gated(x, gate2, xb.attn2.proj(attention(q2, k2, v2)))
            x = gated(x, gate_mlp, xb.mlp(modulate(layer_norm(x), shift_mlp, scale_mlp)))
        else:
            x = xb.post_attention(x, attn_x, x_mod)

        context_out = None if cb.pre_only else cb.post_attention(context, attn_c, c_mod)
        return context_out, x


class FinalLayer(nn.Module):
    def __init__(self, dim: int, patch: int, out_channels: int) -> None:
        super().__init__()
        self.linear = nn.Linear(dim, patch * patch * out_channels)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 2 * dim))

    def forward(self, x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        return self.linear(modulate(layer_norm(x), shift, scale))


@dataclass(frozen=True, slots=True)
class PreparedInputs:
    """What the forward derives from (t, y, context), for one batch: computed live by `MMDiT.prepare`, or
    once per job by the guided denoiser (text tokens embedded once, modulation from a `ModulationTable`)."""

    context: torch.Tensor  # (B, Lc, D) context_embedder output
    modulation: Modulation
    pos_embed: torch.Tensor | None = (
        None  # (1, N, D) cropped table in the model dtype; None: cropped per call
    )


class LiveModulation:
    """`Modulation` computed from c = (B, D) as each block asks for it (the path without a table)."""

    def __init__(self, model: MMDiT, c: torch.Tensor) -> None:
        self.model = model
        self.c = c

    def block(self, index: int) -> tuple[Chunks, Chunks]:
        block = self.model.joint_blocks[index]
        return block.context_block.modulation(self.c), block.x_block.modulation(self.c)

    def final(self) -> tuple[torch.Tensor, torch.Tensor]:
        shift, scale = self.model.final_layer.adaLN_modulation(self.c).chunk(
            2, dim=1
        )  # the reference's order
        return shift, scale


class MMDiT(nn.Module):
    def __init__(self, cfg: MMDiTConfig) -> None:
        super().__init__()
        self.cfg = cfg
        d = cfg.hidden_size
        # The stored sin-cos table (1, S*S, D); loaded from the checkpoint, never synthesised.
        self.register_buffer("pos_embed", torch.empty(1, cfg.pos_embed_max_size**2, d))
        self.x_embedder = PatchEmbed(cfg.in_channels, d, cfg.patch_size)
        self.t_embedder = EmbedMLP(256, d)
        self.y_embedder = EmbedMLP(cfg.adm_in_channels, d)
        self.context_embedder = nn.Linear(cfg.context_in_channels, d)
        self.joint_blocks = nn.ModuleList(JointBlock(cfg, i) for i in range(cfg.depth))
        self.final_layer = FinalLayer(d, cfg.patch_size, cfg.out_channels)

    @property
    def dtype(self) -> torch.dtype:
        return self.context_embedder.weight.dtype

    def cropped_pos_embed(self, h: int, w: int) -> torch.Tensor:
        """Centre crop of the stored table for a patch grid of h x w -> (1, h*w, D)."""
        s = self.cfg.pos_embed_max_size
        if h > s or w > s:
            raise ValueError(f"patch grid {h}x{w} exceeds the position table {s}x{s}")
        top, left = (s - h) // 2, (s - w) // 2
        table = self.pos_embed.view(1, s, s, -1)  # (1, S, S, D), row index first
        return table[:, top : top + h, left : left + w, :].reshape(1, h * w, -1)

    def conditioning(self, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """c = t_embedder(t) + y_embedder(y), (B, D)."""
        t_emb = self.t_embedder(timestep_embedding(t).to(self.dtype))
        return t_emb + self.y_embedder(y.to(self.dtype))

    def unpatchify(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        # (B, h*w, p*p*C) -> (B, h, w, p, p, C) -> (B, C, h, p, w, p) -> (B, C, h*p, w*p)
        p, c = self.cfg.patch_size, self.cfg.out_channels
        x = x.reshape(x.shape[0], h, w, p, p, c)
        x = torch.einsum("nhwpqc->nchpwq", x)
        return x.reshape(x.shape[0], c, h * p, w * p)

    def embed_context(self, context: torch.Tensor) -> torch.Tensor:
        """Text tokens (B, Lc, ctx) -> (B, Lc, D)."""
        return self.context_embedder(context.to(self.dtype))

    def prepare(self, t: torch.Tensor, y: torch.Tensor, context: torch.Tensor) -> PreparedInputs:
        """The per-call inputs computed live: c = (B, D), adaLN per block as it runs, context embedded."""
        return PreparedInputs(self.embed_context(context), LiveModulation(self, self.conditioning(t, y)))

    def forward(
        self,
        x: torch.Tensor,
        t: torch.Tensor | None,
        y: torch.Tensor | None,
        context: torch.Tensor | None,
        skip_layers: Collection[int] = (),
        *,
        prepared: PreparedInputs | None = None,
    ) -> torch.Tensor:
        """The velocity (B, C, H, W) in float32. With `prepared` (a job's precomputed inputs for this batch),
        `t`, `y` and `context` are not read and may be None."""
        p = self.cfg.patch_size
        h, w = x.shape[-2] // p, x.shape[-1] // p
        if prepared is None:
            prepared = self.prepare(t, y, context)
        pos = prepared.pos_embed
        if pos is None:
            pos = self.cropped_pos_embed(h, w).to(self.dtype)
        tokens = self.x_embedder(x.to(self.dtype)) + pos  # (B, N, D)
        ctx, mod = prepared.context, prepared.modulation  # (B, Lc, D)

        for i, block in enumerate(self.joint_blocks):
            if i in skip_layers:  # skip-layer guidance bypasses the whole block, both streams
                continue
            ctx, tokens = block(ctx, tokens, mod.block(i))

        out = self.final_layer(tokens, *mod.final())  # (B, N, p*p*C)
        return self.unpatchify(out, h, w).float()
