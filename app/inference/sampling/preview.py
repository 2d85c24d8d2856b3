"""Preview decoders: model-space denoised estimate -> small uint8 RGB image (SD35_SAMPLING.md section 8).

`linear` is a 16x3 projection plus bias (ComfyUI's current SD3 factors), free and always available; `taesd`
decodes with TAESD3 at up to 1024 px and is then scaled to at most 512 px on the long side.
"""

from __future__ import annotations

import logging
import math
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F

log = logging.getLogger(__name__)

MAX_PREVIEW_SIDE = 512

# Rows: latent channels 0..15; columns: R, G, B.
LINEAR_FACTORS = (
    (-0.0922, -0.0175, 0.0749), (0.0311, 0.0633, 0.0954), (0.1994, 0.0927, 0.0458), (0.0856, 0.0339, 0.0902),
    (0.0587, 0.0272, -0.0496), (-0.0006, 0.1104, 0.0309), (0.0978, 0.0306, 0.0427), (-0.0042, 0.1038, 0.1358),
    (-0.0194, 0.0020, 0.0669), (-0.0488, 0.0130, -0.0268), (0.0922, 0.0988, 0.0951), (-0.0278, 0.0524, -0.0542),
    (0.0332, 0.0456, 0.0895), (-0.0069, -0.0030, -0.0810), (-0.0596, -0.0465, -0.0293), (-0.1448, -0.1463, -0.1189),
)  # fmt: skip
LINEAR_BIAS = (0.2394, 0.2135, 0.1925)


class PreviewDecoder(Protocol):
    name: str

    def __call__(self, denoised: torch.Tensor) -> list[np.ndarray]:
        """(B, 16, h, w) model-space latent -> one (H, W, 3) uint8 image per batch item."""
        ...


class LinearPreview:
    name = "linear"

    def __init__(self) -> None:
        self.factors = torch.tensor(LINEAR_FACTORS, dtype=torch.float32)  # (16, 3)
        self.bias = torch.tensor(LINEAR_BIAS, dtype=torch.float32)

    def __call__(self, denoised: torch.Tensor) -> list[np.ndarray]:
        x = denoised.detach().float().cpu()  # (B, 16, h, w)
        if max(x.shape[-2:]) > MAX_PREVIEW_SIDE:  # only above 4096 px images: keep previews small
            scale = MAX_PREVIEW_SIDE / max(x.shape[-2:])
            x = F.interpolate(x, size=(max(1, round(x.shape[-2] * scale)), max(1, round(x.shape[-1] * scale))),
                              mode="area")  # fmt: skip
        rgb = torch.einsum("bchw,cr->bhwr", x, self.factors) + self.bias  # (B, h, w, 3), about [-1, 1]
        pixels = torch.round((rgb.clamp(-1, 1) + 1) * 127.5).to(torch.uint8)
        return [p.numpy() for p in pixels]


class TaesdPreview:
    name = "taesd"

    def __init__(self, decoder: torch.nn.Module) -> None:
        self.decoder = decoder
        first = next(decoder.parameters())
        self.device, self.dtype = first.device, first.dtype

    def __call__(self, denoised: torch.Tensor) -> list[np.ndarray]:
        x = denoised.detach().to(self.device, self.dtype)
        long_side = max(x.shape[-2:]) * 8
        if long_side > 2 * MAX_PREVIEW_SIDE:  # decode a smaller latent: 4x cheaper, still sharper than shown
            factor = math.ceil(long_side / (2 * MAX_PREVIEW_SIDE))
            x = F.interpolate(x, scale_factor=1 / factor, mode="area")
        y = self.decoder(x).float()  # (B, 3, H, W) about [0, 1]
        if max(y.shape[-2:]) > MAX_PREVIEW_SIDE:
            scale = MAX_PREVIEW_SIDE / max(y.shape[-2:])
            size = (max(1, round(y.shape[-2] * scale)), max(1, round(y.shape[-1] * scale)))
            y = F.interpolate(y, size=size, mode="bilinear", antialias=True, align_corners=False)
        pixels = torch.round(y.clamp(0, 1) * 255).to(torch.uint8).permute(0, 2, 3, 1).cpu()
        return [p.numpy() for p in pixels]


class PreviewBudget:
    """Keeps previews under a fraction of generation time: a preview is decoded only when the time spent on
    previews so far stays within `fraction` of the time spent sampling; otherwise it is dropped (never queued)."""

    def __init__(self, fraction: float = 0.05, every: int = 1) -> None:
        self.fraction = fraction
        self.every = max(1, every)
        self.sampling_time = 0.0
        self.preview_time = 0.0
        self.last_cost = 0.0
        self.decoded = 0
        self.dropped = 0

    def add_step_time(self, seconds: float) -> None:
        self.sampling_time += seconds

    def should_decode(self, step: int) -> bool:
        if step % self.every:
            return False
        # The first preview is always shown; later ones only while the running cost stays within budget.
        if self.decoded and self.preview_time + self.last_cost > self.fraction * self.sampling_time:
            self.dropped += 1
            return False
        return True

    def record(self, seconds: float) -> None:
        self.preview_time += seconds
        self.last_cost = seconds
        self.decoded += 1
