"""MMDiT (SD3.5 Large / Large Turbo) and MMDiT-X (SD3.5 Medium), after Stability's reference `mmditx.py`.

velocity = MMDiT(x, t, y, context, skip_layers)
  x       (B, C, H, W)   latent in model space
  t       (B,)           timestep = 1000 * sigma, float32
  y       (B, adm)       pooled text vector
  context (B, Lc, ctx)   text tokens

A job evaluates the same (t, y, context) many times, so it prepares what they give once (text tokens, every
block's adaLN outputs from a `ModulationTable`, the position crop) and calls `forward_prepared(x, prepared)`.
Block structure as in the reference: each stream's `pre_attention`, one `joint_attention`, each stream's
`post_attention` (MMDiT-X's image-only second attention inside the image stream's), with the adaLN outputs
named (`StreamModulation`: attn / mlp / attn2, each a `ModulationOut(shift, scale, gate)`).
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import nn

from app.inference.networks.layers import (
    EmbedMLP,
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
from app.inference.networks.mmdit_config import MMDiTConfig

Chunks = tuple[torch.Tensor, ...]  # n_mod tensors of (B, D), in the checkpoint's chunk order
QKV = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # each (B, heads, L, head_dim)


@dataclass(frozen=True, slots=True)
class StreamModulation:
    """The adaLN outputs of one stream of a joint block, by name. The checkpoint's chunk order (the reference's):
    attention (shift, scale, gate), MLP (shift, scale, gate), then MMDiT-X's second attention (shift, scale, gate)
    in image streams of `x_block_self_attn_layers`; the pre-only last context block has the attention's
    (shift, scale) only."""

    attn: ModulationOut
    mlp: ModulationOut | None = None
    attn2: ModulationOut | None = None

    @classmethod
    def from_chunks(cls, chunks: Chunks) -> StreamModulation:
        if len(chunks) == 2:
            return cls(ModulationOut(*chunks))
        if len(chunks) not in (6, 9):
            raise ValueError(f"an adaLN stream has 2, 6 or 9 chunks, not {len(chunks)}")
        attn2 = ModulationOut(*chunks[6:9]) if len(chunks) == 9 else None
        return cls(ModulationOut(*chunks[0:3]), ModulationOut(*chunks[3:6]), attn2)

    def chunks(self) -> Chunks:
        """Back to the checkpoint's chunk order (the inverse of `from_chunks`)."""
        if self.mlp is None:
            return self.attn.shift, self.attn.scale
        named = (self.attn, self.mlp) if self.attn2 is None else (self.attn, self.mlp, self.attn2)
        return tuple(t for m in named for t in (m.shift, m.scale, m.gate))


class Modulation(Protocol):
    """The adaLN outputs of one forward batch, block by block (computed live, or read from a job's table)."""

    def block(self, index: int) -> tuple[StreamModulation, StreamModulation]:
        """(context stream, image stream) modulation of joint block `index`."""
        ...

    def final(self) -> ModulationOut:
        """(shift, scale) of the final layer, each (B, D)."""
        ...


class ControlResiduals(Protocol):
    """What ControlNets add to the image tokens after each joint block of one forward (control/apply.py)."""

    def after_block(self, index: int) -> torch.Tensor | None:
        """(B, N, D) to add after joint block `index`, or None."""
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

    def modulation(self, c: torch.Tensor) -> StreamModulation:
        """c (B, D) -> this stream's adaLN outputs."""
        n_mod = self.adaLN_modulation[1].out_features // c.shape[-1]
        return StreamModulation.from_chunks(self.adaLN_modulation(c).chunk(n_mod, dim=1))

    def pre_attention(self, x: torch.Tensor, mod: StreamModulation) -> tuple[QKV, QKV | None]:
        """x (B, L, D) -> (q, k, v) for the joint attention and, in MMDiT-X image streams, (q, k, v) for the
        image-only second attention; both from the same normalised x."""
        x_norm = layer_norm(x)
        qkv = self.attn.pre_attention(modulate(x_norm, mod.attn.shift, mod.attn.scale))
        if not self.x_self_attn:
            return qkv, None
        return qkv, self.attn2.pre_attention(modulate(x_norm, mod.attn2.shift, mod.attn2.scale))

    def post_attention(
        self, x: torch.Tensor, attn: torch.Tensor, mod: StreamModulation, qkv2: QKV | None = None
    ) -> torch.Tensor:
        """x (B, L, D) plus the gated attention output (B, L, D), plus (MMDiT-X) the gated image-only attention
        over `qkv2`, then the gated MLP."""
        x = gated(x, mod.attn.gate, self.attn.proj(attn))
        if self.x_self_attn:
            x = gated(x, mod.attn2.gate, self.attn2.proj(attention(*qkv2)))
        return gated(x, mod.mlp.gate, self.mlp(modulate(layer_norm(x), mod.mlp.shift, mod.mlp.scale)))


def joint_attention(context_qkv: QKV, x_qkv: QKV) -> tuple[torch.Tensor, torch.Tensor]:
    """Attention over [context ; image] tokens, context first as in the reference -> (B, Lc, D), (B, N, D)."""
    q, k, v = (torch.cat([c, x], dim=2) for c, x in zip(context_qkv, x_qkv, strict=True))
    out = attention(q, k, v)  # (B, Lc + N, D)
    n_ctx = context_qkv[0].shape[2]
    return out[:, :n_ctx], out[:, n_ctx:]


class JointBlock(nn.Module):
    """The reference's `block_mixing`: both streams' pre-attention, one joint attention, each stream's own
    post-attention (the image stream's includes MMDiT-X's second attention)."""

    def __init__(self, cfg: MMDiTConfig, index: int) -> None:
        super().__init__()
        self.context_block = DismantledBlock(cfg, pre_only=index == cfg.depth - 1)
        self.x_block = DismantledBlock(cfg, x_self_attn=index in cfg.x_block_self_attn_layers)

    def forward(
        self, context: torch.Tensor, x: torch.Tensor, mod: tuple[StreamModulation, StreamModulation]
    ) -> tuple[torch.Tensor | None, torch.Tensor]:
        c_mod, x_mod = mod  # this block's adaLN outputs, computed live or read from a job's table
        context_qkv, _ = self.context_block.pre_attention(context, c_mod)
        x_qkv, x_qkv2 = self.x_block.pre_attention(x, x_mod)
        attn_c, attn_x = joint_attention(context_qkv, x_qkv)  # (B, Lc, D), (B, N, D)
        x = self.x_block.post_attention(x, attn_x, x_mod, x_qkv2)
        if self.context_block.pre_only:  # the last block's context output is never used
            return None, x
        return self.context_block.post_attention(context, attn_c, c_mod), x


class FinalLayer(nn.Module):
    def __init__(self, dim: int, patch: int, out_channels: int) -> None:
        super().__init__()
        self.linear = nn.Linear(dim, patch * patch * out_channels)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 2 * dim))

    def modulation(self, c: torch.Tensor) -> ModulationOut:
        shift, scale = self.adaLN_modulation(c).chunk(2, dim=1)  # the reference's order
        return ModulationOut(shift, scale)

    def forward(self, x: torch.Tensor, mod: ModulationOut) -> torch.Tensor:
        return self.linear(modulate(layer_norm(x), mod.shift, mod.scale))


@dataclass(frozen=True, slots=True)
class PreparedInputs:
    """What the forward derives from (t, y, context), for one batch: computed live by `MMDiT.prepare`, or
    once per job by the guided denoiser (text tokens embedded once, modulation from a `ModulationTable`)."""

    context: torch.Tensor  # (B, Lc, D) context_embedder output
    modulation: Modulation
    pos_embed: torch.Tensor | None = (
        None  # (1, N, D) cropped table in the model dtype; None: cropped per call
    )
    # ControlNets of this call: embedded tokens (B, N, D) -> what to add after each block; None: no ControlNet
    control: Callable[[torch.Tensor], ControlResiduals] | None = None


class LiveModulation:
    """`Modulation` computed from c = (B, D) as each block asks for it (the path without a table)."""

    def __init__(self, model: MMDiT, c: torch.Tensor) -> None:
        self.model = model
        self.c = c

    def block(self, index: int) -> tuple[StreamModulation, StreamModulation]:
        block = self.model.joint_blocks[index]
        return block.context_block.modulation(self.c), block.x_block.modulation(self.c)

    def final(self) -> ModulationOut:
        return self.model.final_layer.modulation(self.c)


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
        t: torch.Tensor,
        y: torch.Tensor,
        context: torch.Tensor,
        skip_layers: Collection[int] = (),
    ) -> torch.Tensor:
        """The velocity (B, C, H, W) in float32, everything computed from the inputs (module docstring)."""
        self.check_inputs(x, t, y, context)
        return self.forward_prepared(x, self.prepare(t, y, context), skip_layers)

    def forward_prepared(
        self, x: torch.Tensor, prepared: PreparedInputs, skip_layers: Collection[int] = ()
    ) -> torch.Tensor:
        """The velocity (B, C, H, W) in float32 from inputs a job prepared once (text tokens, modulation table
        rows, position crop). A plain method: the MMDiT's own module hooks do not run, so the caller puts the
        model where it computes first (Engine.prepare_mmdit)."""
        self.check_latent(x)
        if prepared.context.shape[0] != x.shape[0]:
            raise ValueError(
                f"MMDiT: the prepared context holds {prepared.context.shape[0]} rows for a batch of {x.shape[0]}"
            )
        p = self.cfg.patch_size
        h, w = x.shape[-2] // p, x.shape[-1] // p
        pos = prepared.pos_embed
        if pos is None:
            pos = self.cropped_pos_embed(h, w).to(self.dtype)
        tokens = self.x_embedder(x.to(self.dtype)) + pos  # (B, N, D)
        ctx, mod = prepared.context, prepared.modulation  # (B, Lc, D)
        control = prepared.control(tokens) if prepared.control is not None else None

        for i, block in enumerate(self.joint_blocks):
            if i in skip_layers:  # skip-layer guidance bypasses the whole block (and its ControlNet residual)
                continue
            ctx, tokens = block(ctx, tokens, mod.block(i))
            if control is not None and (residual := control.after_block(i)) is not None:
                tokens = tokens + residual  # after every block, the pre-only last one included (§2 step 4)

        out = self.final_layer(tokens, mod.final())  # (B, N, p*p*C)
        return self.unpatchify(out, h, w).float()

    # ------------------------------------------------------------------------------------------ shape checks

    def check_latent(self, x: torch.Tensor) -> None:
        """x must be (B, in_channels, H, W) with H and W multiples of the patch size, within the position table."""
        cfg = self.cfg
        if not isinstance(x, torch.Tensor) or x.ndim != 4 or x.shape[1] != cfg.in_channels:
            raise ValueError(f"MMDiT: x must be a (B, {cfg.in_channels}, H, W) latent, got {_shape(x)}")
        p, s = cfg.patch_size, cfg.pos_embed_max_size
        if x.shape[-2] % p or x.shape[-1] % p:
            raise ValueError(
                f"MMDiT: the latent's height and width must be multiples of {p}, got {_shape(x)}"
            )
        if x.shape[-2] // p > s or x.shape[-1] // p > s:
            raise ValueError(
                f"MMDiT: a {_shape(x)} latent exceeds the position table (sides of at most {s * p})"
            )

    def check_inputs(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor, context: torch.Tensor) -> None:
        """Raise ValueError naming the input whose shape does not fit this model (before any compute)."""
        cfg = self.cfg
        self.check_latent(x)
        b = x.shape[0]
        if not isinstance(t, torch.Tensor) or tuple(t.shape) != (b,):
            raise ValueError(f"MMDiT: t must hold one timestep per latent, shape ({b},), got {_shape(t)}")
        if not isinstance(y, torch.Tensor) or tuple(y.shape) != (b, cfg.adm_in_channels):
            raise ValueError(
                f"MMDiT: y must be the ({b}, {cfg.adm_in_channels}) pooled text vectors, got {_shape(y)}"
            )
        if (
            not isinstance(context, torch.Tensor)
            or context.ndim != 3
            or context.shape[0] != b
            or context.shape[2] != cfg.context_in_channels
        ):
            raise ValueError(
                f"MMDiT: context must be ({b}, L, {cfg.context_in_channels}) text tokens, got {_shape(context)}"
            )


def _shape(value: object) -> str:
    return str(tuple(value.shape)) if isinstance(value, torch.Tensor) else type(value).__name__
