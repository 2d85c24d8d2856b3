"""Building blocks of the MMDiT: embedders, norms, modulation, attention, MLP.

Attribute names equal the checkpoint keys (Stability's `mmditx.py` layout), so weights load without remapping.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

LN_EPS = 1e-6


def layer_norm(x: torch.Tensor) -> torch.Tensor:
    """Affine-free LayerNorm with fp32 statistics (the reference runs it in fp32 under autocast)."""
    return F.layer_norm(x.float(), (x.shape[-1],), eps=LN_EPS).to(x.dtype)


@dataclass(frozen=True, slots=True)
class ModulationOut:
    """One adaLN triple, each (B, D): a sub-layer sees `modulate(layer_norm(x), shift, scale)` and its output is
    added back scaled by `gate`. No gate where nothing is gated (the pre-only attention, the final layer)."""

    shift: torch.Tensor
    scale: torch.Tensor
    gate: torch.Tensor | None = None


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    # x (B, L, D); shift, scale (B, D)
    return torch.addcmul(shift[:, None, :], x, 1 + scale[:, None, :])


def gated(x: torch.Tensor, gate: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """x + gate * y in one pass; x, y (B, L, D), gate (B, D)."""
    return torch.addcmul(x, gate[:, None, :], y)


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Multi-head attention over (B, heads, L, head_dim) tensors; returns (B, L, heads * head_dim)."""
    out = F.scaled_dot_product_attention(q, k, v)  # (B, H, L, hd)
    b, h, n, d = out.shape
    return out.transpose(1, 2).reshape(b, n, h * d)


def timestep_embedding(t: torch.Tensor, dim: int = 256, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal features of t (B,) -> (B, dim), cos first, computed in float32."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]  # (B, half)
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class RMSNorm(nn.Module):
    """QK-RMSNorm over the head dimension, statistics in fp32."""

    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.empty(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x * rsqrt(mean(x^2) + eps) in fp32 (one fused kernel), then the weight in the input dtype
        normed = F.rms_norm(x.float(), (x.shape[-1],), eps=self.eps)
        return normed.to(x.dtype) * self.weight


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x), approximate="tanh"))


class EmbedMLP(nn.Module):
    """Linear -> SiLU -> Linear, stored as `mlp.0` and `mlp.2` (t_embedder, y_embedder)."""

    def __init__(self, in_dim: int, dim: int) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(in_dim, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(x)


class PatchEmbed(nn.Module):
    def __init__(self, in_channels: int, dim: int, patch: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_channels, dim, kernel_size=patch, stride=patch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (B, C, H, W) -> (B, D, H/p, W/p) -> (B, N, D), tokens in row-major patch order
        return self.proj(x).flatten(2).transpose(1, 2)


class SelfAttention(nn.Module):
    """qkv projection with per-head QK-RMSNorm; the attention itself happens outside (joint over streams)."""

    def __init__(self, dim: int, num_heads: int, qk_norm: bool, pre_only: bool = False) -> None:
        super().__init__()
        self.num_heads = num_heads
        head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        if not pre_only:
            self.proj = nn.Linear(dim, dim)
        if qk_norm:
            self.ln_q = RMSNorm(head_dim)
            self.ln_k = RMSNorm(head_dim)
        else:
            self.ln_q = self.ln_k = nn.Identity()

    def pre_attention(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        b, n, _ = x.shape
        qkv = self.qkv(x).view(b, n, 3, self.num_heads, -1)  # (B, L, 3, H, hd)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each (B, H, L, hd)
        return self.ln_q(q), self.ln_k(k), v
