"""Sigma schedules for SD3's discrete-flow model sampling (SD35_SAMPLING.md sections 1 and 3).

Every schedule is a float32 tensor of N+1 sigmas, decreasing from sigma_max = 1.0 and ending with 0.0; step
i goes from sigmas[i] to sigmas[i+1]. "normal" is the reference's `get_sigmas`, built with the same float32
operations in the same order so that it is bit-identical to it; "sgm_uniform", "simple" and "beta" are
ComfyUI's.
"""

from __future__ import annotations

import logging
import math

import numpy as np
import torch

from app.inference.api.errors import InvalidRequestError

log = logging.getLogger(__name__)

SHIFT = 3.0  # every SD3.5 variant
NUM_TIMESTEPS = 1000
MULTIPLIER = 1000.0  # timestep = 1000 * sigma
BETA_ALPHA = 0.6
BETA_BETA = 0.6


# ----------------------------------------------------------------------------------------------------
# Time shift and the 1000-entry table
# ----------------------------------------------------------------------------------------------------


def time_shift(t: torch.Tensor, shift: float = SHIFT) -> torch.Tensor:
    """sigma(t) = s*t / (1 + (s-1)*t), in the dtype of `t` (float32 for the reference)."""
    if shift == 1.0:
        return t
    return shift * t / (1 + (shift - 1) * t)


def sigma_table(shift: float = SHIFT) -> torch.Tensor:
    """The model's 1000 float32 sigmas: table[k-1] = sigma(k/1000), k = 1..1000 (ascending)."""
    ts = torch.arange(1, NUM_TIMESTEPS + 1, 1)  # int64
    return time_shift(ts / MULTIPLIER, shift)  # (1000,) float32


def _timestep_range(shift: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(1000*sigma_max, 1000*sigma_min) as float32 0-d tensors, as the reference passes them to linspace."""
    table = sigma_table(shift)
    return table[-1] * MULTIPLIER, table[0] * MULTIPLIER


def _sigmas_from_timesteps(timesteps: torch.Tensor, shift: float) -> torch.Tensor:
    sigmas = [time_shift(ts / MULTIPLIER, shift) for ts in timesteps]  # per entry, float32 0-d
    return torch.stack([*sigmas, torch.zeros((), dtype=torch.float32)])


# ----------------------------------------------------------------------------------------------------
# Schedulers
# ----------------------------------------------------------------------------------------------------


def normal_schedule(steps: int, shift: float = SHIFT) -> torch.Tensor:
    """The reference (`get_sigmas`) = ComfyUI "normal" = diffusers' default. Its last non-zero sigma is
    sigma(sigma_min) = 0.00892857: sigma_min is already shifted and is shifted again."""
    start, end = _timestep_range(shift)
    return _sigmas_from_timesteps(torch.linspace(start, end, steps), shift)


def sgm_uniform_schedule(steps: int, shift: float = SHIFT) -> torch.Tensor:
    """ComfyUI "sgm_uniform": N+1 evenly spaced timesteps, the last one dropped."""
    start, end = _timestep_range(shift)
    return _sigmas_from_timesteps(torch.linspace(start, end, steps + 1)[:-1], shift)


def simple_schedule(steps: int, shift: float = SHIFT) -> torch.Tensor:
    """ComfyUI "simple": table[999 - floor(i * 1000/N)] for i = 0..N-1, then 0."""
    table = sigma_table(shift)
    stride = len(table) / steps  # Python float, as ComfyUI
    sigmas = [float(table[-(1 + int(i * stride))]) for i in range(steps)]
    return torch.tensor([*sigmas, 0.0], dtype=torch.float32)


def beta_schedule(
    steps: int, shift: float = SHIFT, alpha: float = BETA_ALPHA, beta: float = BETA_BETA
) -> torch.Tensor:
    """ComfyUI "beta": table entries at rint(BetaPPF(1 - i/N) * 999), repeated entries skipped (so with many
    steps the schedule can have fewer than N steps)."""
    table = sigma_table(shift)
    u = 1.0 - np.linspace(0.0, 1.0, steps, endpoint=False)  # float64, 1 .. 1/N
    idx = np.rint(np.array([beta_ppf(float(p), alpha, beta) for p in u]) * (len(table) - 1))
    sigmas: list[float] = []
    last = -1.0
    for t in idx:
        if t != last:
            sigmas.append(float(table[int(t)]))
        last = t
    return torch.tensor([*sigmas, 0.0], dtype=torch.float32)


_SCHEDULES = {
    "normal": normal_schedule,
    "sgm_uniform": sgm_uniform_schedule,
    "simple": simple_schedule,
    "beta": beta_schedule,
}
SCHEDULERS: tuple[str, ...] = tuple(_SCHEDULES)


def make_sigmas(scheduler: str, steps: int, shift: float = SHIFT) -> torch.Tensor:
    """The float32 schedule of a scheduler in `SCHEDULERS`: N+1 sigmas ending with 0 ("beta" may have
    fewer)."""
    build = _SCHEDULES.get(scheduler)
    if build is None:
        raise InvalidRequestError(f"unknown scheduler {scheduler!r}; choose one of {', '.join(SCHEDULERS)}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise InvalidRequestError(f"steps must be a positive whole number, got {steps!r}")
    if not shift > 0:
        raise InvalidRequestError(f"shift must be positive, got {shift!r}")
    return build(steps, shift)


# ----------------------------------------------------------------------------------------------------
# img2img truncation and percent -> sigma
# ----------------------------------------------------------------------------------------------------


def img2img_sigmas(sigmas: torch.Tensor, denoise: float) -> torch.Tensor:
    """The reference's img2img rule: drop the first int(N * (1 - denoise)) entries of an N-step schedule
    (Python float arithmetic and truncation: 40 steps at 0.8 drop 7, not 8)."""
    if not 0.0 < denoise <= 1.0:
        raise InvalidRequestError(f"denoising strength must be in (0, 1], got {denoise!r}")
    steps = len(sigmas) - 1
    drop = int(steps * (1 - denoise))
    if drop >= steps:
        raise InvalidRequestError(
            f"denoising strength {denoise} leaves no step of {steps}; raise the strength or the steps"
        )
    return sigmas[drop:]


def percent_to_sigma(percent: float, shift: float = SHIFT) -> float:
    """ComfyUI's percent -> sigma for flow models: the time shift of 1 - percent (1.0 at 0, 0.0 at 1)."""
    if percent <= 0.0:
        return 1.0
    if percent >= 1.0:
        return 0.0
    t = 1.0 - percent
    return shift * t / (1 + (shift - 1) * t)


# ----------------------------------------------------------------------------------------------------
# Inverse of the regularized incomplete beta function (scipy.stats.beta.ppf without scipy)
# ----------------------------------------------------------------------------------------------------


def _beta_cf(x: float, a: float, b: float) -> float:
    """Continued fraction of I_x(a, b) (modified Lentz); converges fast for x < (a + 1) / (a + b + 2)."""
    tiny, eps = 1e-300, 1e-16
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    result = d
    for m in range(1, 1000):
        for numerator in (
            m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),  # even term d_2m
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1)),  # odd term d_2m+1
        ):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            delta = c * d
            result *= delta
        if abs(delta - 1.0) < eps:
            break
    return result


def beta_cdf(x: float, a: float, b: float) -> float:
    """The regularized incomplete beta function I_x(a, b) for x in [0, 1], a, b > 0."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = a * math.log(x) + b * math.log1p(-x) - (math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b))
    if x < (a + 1) / (a + b + 2):
        return math.exp(log_front) * _beta_cf(x, a, b) / a
    return 1.0 - math.exp(log_front) * _beta_cf(1.0 - x, b, a) / b


def beta_ppf(p: float, a: float, b: float) -> float:
    """Inverse of `beta_cdf` in x, by bisection to float64 resolution."""
    if p <= 0.0:
        return 0.0
    if p >= 1.0:
        return 1.0
    if a == b and p == 0.5:
        return 0.5  # the exact median of a symmetric beta; 0.5 * 999 must round half to even (beta, N = 4)
    lo, hi = 0.0, 1.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if mid in (lo, hi):
            break
        if beta_cdf(mid, a, b) < p:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)
