"""Masked sampling: inpainting with the base model (SD35_ADDONS.md section 3, ComfyUI `KSamplerX0Inpaint`).

With `z0` the init latent, `noise` the start noise and `m` the mask at latent resolution (1 = regenerate),
every model call of any sampler is wrapped:

    before:  x = x·m + (σ·noise + (1 − σ)·z0)·(1 − m)     the kept area is put back on the init's noise path
    after:   D = D·m + z0·(1 − m)                         the kept area's estimate is the init itself

A soft mask (values between 0 and 1) goes through differential diffusion instead of blending by its values:
at each step the effective mask is the binary `m ≥ τ` with `τ = (t_now − t_end) / (t_start − t_end)`, so
an area whose mask is 0.3 only starts to change in the last 30 % of the schedule.
"""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F

from app.inference.sampling.samplers import Denoiser
from app.inference.sampling.schedules import sigma_table

log = logging.getLogger(__name__)


def latent_mask(mask: torch.Tensor, latent_hw: tuple[int, int]) -> torch.Tensor:
    """(H, W) pixel mask in [0, 1] -> (1, 1, h, w) at latent resolution (bilinear, as ComfyUI's prepare_mask)."""
    m = mask.to(torch.float32)[None, None]  # (1, 1, H, W)
    return F.interpolate(m, size=latent_hw, mode="bilinear", align_corners=False).clamp_(0.0, 1.0)


def is_soft(mask: torch.Tensor) -> bool:
    """True when the mask holds values strictly between 0 and 1 (a painted gradient or a soft brush)."""
    return bool(((mask > 0) & (mask < 1)).any())


class DifferentialThreshold:
    """τ per step of a run over `sigmas` (ComfyUI `DifferentialDiffusion`, strength 1). For a flow model the
    timestep is 1000·σ, so τ = (σ − σ_to) / (σ_from − σ_to) with σ_from the run's first σ and σ_to the larger
    of the model's smallest σ and the run's last one. The thresholds of the run's steps are computed once on
    the host, so a step reads its own without waiting for the device."""

    def __init__(self, sigmas: torch.Tensor, shift: float) -> None:
        sigma_min = float(sigma_table(shift)[0])
        self.sigma_from = float(sigmas[0])
        self.sigma_to = max(sigma_min, float(sigmas[-1]))
        self.per_step = [self(s) for s in sigmas[:-1].tolist()]  # τ of step i

    def __call__(self, sigma: float) -> float:
        return (sigma - self.sigma_to) / (self.sigma_from - self.sigma_to)

    def mask(self, soft: torch.Tensor, step: int) -> torch.Tensor:
        """The binary effective mask of step `step`: 1 where the soft mask reaches the threshold."""
        return (soft >= self.per_step[step]).to(soft.dtype)


class MaskedDenoiser:
    """Wraps a denoiser `D(x, σ, i)` with the noise-mask blend before and the denoised blend after each call.

    `init` (1 or B, 16, h, w) model space, `noise` (B, 16, h, w) the batch's start noise (each image its own),
    `mask` (1, 1, h, w) in [0, 1]. With `threshold` the mask is soft and used through differential diffusion."""

    def __init__(
        self,
        denoise: Denoiser,
        init: torch.Tensor,
        noise: torch.Tensor,
        mask: torch.Tensor,
        threshold: DifferentialThreshold | None = None,
    ) -> None:
        self.denoise = denoise
        self.init = init.to(noise.device, noise.dtype)
        self.noise = noise
        self.mask = mask.to(noise.device, noise.dtype)
        self.threshold = threshold
        self._fixed = None if threshold is not None else (self.mask, 1.0 - self.mask)
        self.masks_used: list[torch.Tensor] | None = None  # set to [] to record each step's mask (tests)

    def step_mask(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(m, 1 − m) effective at step `i`, each (1, 1, h, w)."""
        if self._fixed is not None:
            return self._fixed
        m = self.threshold.mask(self.mask, i)
        return m, 1.0 - m

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor, i: int) -> torch.Tensor:
        m, keep = self.step_mask(i)
        if self.masks_used is not None:
            self.masks_used.append(m.cpu())
        s = sigma.to(x.device, x.dtype)
        x = x * m + (s * self.noise + (1.0 - s) * self.init) * keep  # (B, 16, h, w)
        denoised = self.denoise(x, sigma, i)
        return denoised * m + self.init * keep
