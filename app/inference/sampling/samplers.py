"""Samplers as plain functions, and the seeded noise they start from (SD35_SAMPLING.md sections 2 and 4).

Every sampler takes a denoiser `D(x, sigma, i)` returning the denoised (x0) estimate of the latent `x` at
noise level `sigma` (step `i`), the start latent and a float32 schedule `sigmas` (N+1 entries ending with 0),
and returns the final latent. The arithmetic follows the reference's (k-diffusion's) literal order of
operations on 0-d float32 sigma tensors, so the results are bit-identical to it for the same denoiser outputs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Protocol

import torch

from app.inference.api.errors import InvalidRequestError

log = logging.getLogger(__name__)

Denoiser = Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor]  # (x, sigma 0-d float32, step) -> D
StepCallback = Callable[[int, torch.Tensor], None]  # (step, denoised); may raise to cancel
NoiseSource = Callable[[], torch.Tensor]  # a fresh N(0, 1) tensor shaped like x

SEED_LIMIT = 2**64  # seeds are unsigned 64-bit integers
ANCESTRAL_ETA = 1.0
ANCESTRAL_S_NOISE = 1.0


class Sampler(Protocol):
    def __call__(
        self,
        denoise: Denoiser,
        x: torch.Tensor,
        sigmas: torch.Tensor,
        *,
        on_step: StepCallback | None = None,
        noise: NoiseSource | None = None,
    ) -> torch.Tensor: ...


def _check_sigmas(sigmas: torch.Tensor) -> None:
    if sigmas.ndim != 1 or len(sigmas) < 2:
        raise ValueError(
            f"sigmas must be a 1-D schedule with at least 2 entries, got shape {tuple(sigmas.shape)}"
        )
    if sigmas.dtype != torch.float32:
        raise ValueError(f"sigmas must be float32 (the reference's dtype), got {sigmas.dtype}")


# ----------------------------------------------------------------------------------------------------
# Samplers
# ----------------------------------------------------------------------------------------------------


@torch.no_grad()
def sample_euler(
    denoise: Denoiser,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    *,
    on_step: StepCallback | None = None,
    noise: NoiseSource | None = None,
) -> torch.Tensor:
    """Euler steps (Karras et al. 2022, Algorithm 2, without churn); `noise` is not used."""
    _check_sigmas(sigmas)
    for i in range(len(sigmas) - 1):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        denoised = denoise(x, sigma, i)
        if on_step is not None:
            on_step(i, denoised)
        d = (x - denoised) / sigma  # the velocity
        dt = sigma_next - sigma
        x = x + d * dt
    return x


@torch.no_grad()
def sample_dpmpp_2m(
    denoise: Denoiser,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    *,
    on_step: StepCallback | None = None,
    noise: NoiseSource | None = None,
) -> torch.Tensor:
    """DPM-Solver++(2M) (Lu et al. 2022) with t = -log(sigma), as the reference and ComfyUI run it for SD3;
    `noise` is not used. The first step is first order and the last step returns the denoised estimate."""
    _check_sigmas(sigmas)
    old_denoised: torch.Tensor | None = None
    for i in range(len(sigmas) - 1):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        denoised = denoise(x, sigma, i)
        if on_step is not None:
            on_step(i, denoised)
        if sigma_next == 0:
            # t' = inf: exp(-t')/exp(-t) = 0 and -expm1(-h) = 1, so the update is x = D
            x = denoised
        else:
            t, t_next = sigma.log().neg(), sigma_next.log().neg()
            h = t_next - t
            x_coeff = t_next.neg().exp() / t.neg().exp()
            if old_denoised is None:
                x = x_coeff * x - (-h).expm1() * denoised
            else:
                h_last = t - sigmas[i - 1].log().neg()
                r = h_last / h
                denoised_d = (1 + 1 / (2 * r)) * denoised - (1 / (2 * r)) * old_denoised
                x = x_coeff * x - (-h).expm1() * denoised_d
        old_denoised = denoised
    return x


@torch.no_grad()
def sample_euler_ancestral(
    denoise: Denoiser,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    *,
    on_step: StepCallback | None = None,
    noise: NoiseSource | None = None,
) -> torch.Tensor:
    """Euler ancestral for rectified flow (ComfyUI `sample_euler_ancestral_RF`, eta = 1, s_noise = 1): a
    deterministic move down to sigma_down, then re-noising up to sigma_{i+1} with one draw of `noise()`."""
    _check_sigmas(sigmas)
    if noise is None:
        raise ValueError("euler_ancestral needs a noise source (see ancestral_noise_sampler)")
    eta, s_noise = ANCESTRAL_ETA, ANCESTRAL_S_NOISE
    for i in range(len(sigmas) - 1):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        denoised = denoise(x, sigma, i)
        if on_step is not None:
            on_step(i, denoised)
        if sigma_next == 0:
            x = denoised
            continue
        sigma_down = sigma_next * (1 + (sigma_next / sigma - 1) * eta)
        alpha_next = 1 - sigma_next
        alpha_down = 1 - sigma_down
        renoise_coeff = (sigma_next**2 - sigma_down**2 * alpha_next**2 / alpha_down**2) ** 0.5
        down_ratio = sigma_down / sigma
        x = down_ratio * x + (1 - down_ratio) * denoised
        eps = noise()
        if eps.shape != x.shape:
            raise ValueError(f"noise source gave shape {tuple(eps.shape)}, the latent is {tuple(x.shape)}")
        x = (alpha_next / alpha_down) * x + eps * s_noise * renoise_coeff
    return x


SAMPLERS: dict[str, Sampler] = {
    "euler": sample_euler,
    "dpmpp_2m": sample_dpmpp_2m,
    "euler_ancestral": sample_euler_ancestral,
}


# ----------------------------------------------------------------------------------------------------
# Noise
# ----------------------------------------------------------------------------------------------------


def _check_seed(seed: int) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < SEED_LIMIT:
        raise InvalidRequestError(f"seed must be a whole number from 0 to {SEED_LIMIT - 1}, got {seed!r}")
    # torch's manual_seed takes the whole unsigned 64-bit range as is (ComfyUI passes it unchanged), so no
    # remapping is needed. The CPU generator (mt19937) uses only the low 32 bits: seeds 2**32 apart draw
    # the same numbers.
    return seed


def make_noise(seed: int, shape: Sequence[int], device: torch.device | str = "cpu") -> torch.Tensor:
    """The start noise of one image: float32 normals from a fresh CPU generator seeded with `seed`, then
    moved to `device` (the same numbers on every device; image k of a sweep uses seed + k)."""
    generator = torch.Generator("cpu").manual_seed(_check_seed(seed))
    return torch.randn(tuple(shape), generator=generator, dtype=torch.float32, device="cpu").to(device)


def ancestral_noise_sampler(
    seed: int, shape: Sequence[int], device: torch.device | str = "cpu"
) -> NoiseSource:
    """Noise drawn during ancestral sampling: a CPU generator seeded with (seed + 1) mod 2**64 (ComfyUI on the
    CPU), one float32 draw per call, moved to `device`."""
    generator = torch.Generator("cpu").manual_seed((_check_seed(seed) + 1) % SEED_LIMIT)
    size = tuple(shape)

    def draw() -> torch.Tensor:
        return torch.randn(size, generator=generator, dtype=torch.float32, device="cpu").to(device)

    return draw
