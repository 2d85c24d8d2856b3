"""Hires fix: the first pass's image, upscaled, sampled again as image-to-image at the larger size.

The upscale step is an `Upscaler`: Lanczos today; an upscaler network (ESRGAN-style) plugs in as another entry
of UPSCALERS with the same call, (H, W, 3) uint8 pixels and a target (W', H') in, (H', W', 3) uint8 out.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch

from app.inference.api.request import GenerationRequest, hires_side
from app.inference.sampling.schedules import img2img_sigmas, make_sigmas

log = logging.getLogger(__name__)

DEFAULT_UPSCALER = "Lanczos"  # A1111's name for it ("Hires upscaler: Lanczos")


class Upscaler(Protocol):
    def __call__(self, pixels: np.ndarray, size: tuple[int, int]) -> np.ndarray: ...


def lanczos_upscale(pixels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(H, W, 3) uint8 -> (size[1], size[0], 3) uint8, Pillow's Lanczos filter."""
    from PIL import Image

    return np.asarray(Image.fromarray(pixels).resize(size, Image.Resampling.LANCZOS))


UPSCALERS: dict[str, Upscaler] = {DEFAULT_UPSCALER: lanczos_upscale}


@dataclass(frozen=True, slots=True)
class HiresPass:
    """The second pass of a hires job: its scale, its (truncated) schedule, its upscaler."""

    scale: float
    sigmas: torch.Tensor  # (N+1,) float32: the tail of the hires_steps schedule at hires_denoise
    upscaler: Upscaler

    @classmethod
    def of(cls, req: GenerationRequest, upscaler: str = DEFAULT_UPSCALER) -> HiresPass:
        """`req` resolved: steps, scheduler and shift known."""
        steps = req.hires_steps or req.steps
        sigmas = img2img_sigmas(make_sigmas(req.scheduler, steps, req.shift), req.hires_denoise)
        return cls(req.hires_scale, sigmas, UPSCALERS[upscaler])

    def size_for(self, width: int, height: int) -> tuple[int, int]:
        """(W', H') of a first-pass image of (width, height) px: scaled, multiples of 16."""
        return hires_side(width, self.scale), hires_side(height, self.scale)

    def vae_input(self, pixels: np.ndarray) -> torch.Tensor:
        """(H, W, 3) uint8 first-pass image -> (1, 3, H', W') float32 in [-1, 1] at the hires size."""
        size = self.size_for(pixels.shape[1], pixels.shape[0])
        big = self.upscaler(pixels, size).astype(np.float32) / 255.0  # (H', W', 3)
        return 2.0 * torch.from_numpy(big).permute(2, 0, 1)[None].contiguous() - 1.0
