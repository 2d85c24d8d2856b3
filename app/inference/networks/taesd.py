"""TAESD3: madebyollin's tiny autoencoder decoder for SD3 latents, used for live previews.

Input: the model-space latent (what the MMDiT denoises; no process_out). Output: RGB in about [0, 1] at 8x the
latent size. Module indices equal madebyollin's `nn.Sequential` names, so `taesd3_decoder.pth` loads unchanged
(checkpoints/taesd_loading.py finds and reads it).
"""

from __future__ import annotations

import torch
from torch import nn

CHANNELS = 64


class Clamp(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(x / 3) * 3


def _conv(n_in: int, n_out: int, bias: bool = True) -> nn.Conv2d:
    return nn.Conv2d(n_in, n_out, 3, padding=1, bias=bias)


class Block(nn.Module):
    """y = ReLU(conv(ReLU(conv(ReLU(conv(x))))) + x); every block here is 64 -> 64, so the skip is identity."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Sequential(
            _conv(channels, channels),
            nn.ReLU(),
            _conv(channels, channels),
            nn.ReLU(),
            _conv(channels, channels),
        )
        self.skip = nn.Identity()
        self.fuse = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fuse(self.conv(x) + self.skip(x))


def build_decoder(latent_channels: int = 16, channels: int = CHANNELS) -> nn.Sequential:
    c = channels
    return nn.Sequential(
        Clamp(),
        _conv(latent_channels, c), nn.ReLU(),
        Block(c), Block(c), Block(c), nn.Upsample(scale_factor=2), _conv(c, c, bias=False),
        Block(c), Block(c), Block(c), nn.Upsample(scale_factor=2), _conv(c, c, bias=False),
        Block(c), Block(c), Block(c), nn.Upsample(scale_factor=2), _conv(c, c, bias=False),
        Block(c), _conv(c, 3),
    )  # fmt: skip
