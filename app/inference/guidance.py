"""The guided denoiser: classifier-free guidance, skip-layer guidance and the negative-prompt window.

D(x, sigma) = x - sigma * v(x, 1000 sigma, ...) for each conditioning, combined in float32 in the reference's
order (SD35_SAMPLING.md section 5):  D = D_u + (D_c - D_u) * cfg [+ (D_c - D_skip) * slg_scale].
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from app.inference.mmdit import MMDiT
from app.inference.schedules import percent_to_sigma

if TYPE_CHECKING:
    from app.inference.text_encoders import TextConditioning


@dataclass(frozen=True, slots=True)
class GuidanceConfig:
    cfg: float
    steps: int  # the requested step count N; the SLG window is counted against it, as in the reference
    shift: float = 3.0
    slg_layers: tuple[int, ...] = ()
    slg_scale: float = 0.0
    slg_start: float = 0.01
    slg_end: float = 0.20
    negative_until: float | None = None  # ComfyUI's SD3 negative window; None = negative for every step

    @property
    def uses_uncond(self) -> bool:
        # cfg == 1 skips the uncond pass entirely (ComfyUI's isclose with rel_tol 1e-9).
        return not math.isclose(self.cfg, 1.0, rel_tol=1e-9)

    def slg_active(self, step_index: int) -> bool:
        """The reference's step-counter rule: start*N < k < end*N, both strict."""
        if not self.slg_layers or self.slg_scale <= 0:
            return False
        return self.slg_start * self.steps < step_index < self.slg_end * self.steps


@dataclass(frozen=True, slots=True)
class _Cond:
    context: torch.Tensor  # (1, L, C)
    pooled: torch.Tensor  # (1, P)


class GuidedDenoiser:
    """Callable (x, sigma, step_index) -> guided denoised estimate, for the samplers."""

    def __init__(
        self,
        model: MMDiT,
        cond: TextConditioning,
        uncond: TextConditioning | None,
        guidance: GuidanceConfig,
    ) -> None:
        self.model = model
        self.guidance = guidance
        device, dtype = model.context_embedder.weight.device, model.dtype
        self.cond = _Cond(cond.context.to(device, dtype), cond.pooled.to(device, dtype))
        self.uncond = None
        self.zero_uncond = None
        if guidance.uses_uncond:
            if uncond is None:
                raise ValueError("cfg != 1 needs an unconditional (negative) encoding")
            self.uncond = _Cond(uncond.context.to(device, dtype), uncond.pooled.to(device, dtype))
            if guidance.negative_until is not None:
                self.zero_uncond = _Cond(
                    torch.zeros_like(self.uncond.context), torch.zeros_like(self.uncond.pooled)
                )
                self.window_sigma = float(
                    torch.tensor(
                        percent_to_sigma(guidance.negative_until, guidance.shift), dtype=torch.float32
                    )
                )
        self.calls = 0

    def _velocity(
        self, x: torch.Tensor, sigma: torch.Tensor, conds: list[_Cond], skip=()
    ) -> list[torch.Tensor]:
        """One batched forward over several conditionings of equal context length; returns D per conditioning."""
        b = x.shape[0]
        n = len(conds)
        context = torch.cat([c.context.expand(b, -1, -1) for c in conds])  # (n*B, L, C)
        pooled = torch.cat([c.pooled.expand(b, -1) for c in conds])  # (n*B, P)
        xs = x.repeat(n, 1, 1, 1)
        t = (sigma * 1000).float().expand(n * b)
        v = self.model(xs, t, pooled, context, skip_layers=skip)  # float32
        denoised = xs.float() - sigma.float() * v
        return list(denoised.chunk(n))

    def _denoise(self, x: torch.Tensor, sigma: torch.Tensor, conds: list[_Cond]) -> list[torch.Tensor]:
        # Batch conditionings whose contexts have the same length; never pad a context (DECISIONS row 5).
        out: list[torch.Tensor | None] = [None] * len(conds)
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, c in enumerate(conds):
            groups.setdefault(tuple(c.context.shape), []).append(i)
        for idx in groups.values():
            for i, d in zip(idx, self._velocity(x, sigma, [conds[i] for i in idx]), strict=True):
                out[i] = d
        return out  # type: ignore[return-value]

    def _uncond_entries(self, sigma_t: torch.Tensor) -> list[_Cond]:
        if self.zero_uncond is None:
            return [self.uncond]
        sigma = float(sigma_t)  # a host sync, only when the negative window is on
        if sigma > self.window_sigma:
            return [self.uncond]
        if sigma < self.window_sigma:
            return [self.zero_uncond]
        return [self.uncond, self.zero_uncond]  # both active at equality: averaged

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor, step_index: int) -> torch.Tensor:
        self.calls += 1
        g = self.guidance
        if not g.uses_uncond:
            d_cond = self._denoise(x, sigma, [self.cond])[0]
            denoised = d_cond
        else:
            uncond_entries = self._uncond_entries(sigma)
            d_all = self._denoise(x, sigma, [self.cond, *uncond_entries])
            d_cond, d_unconds = d_all[0], d_all[1:]
            d_uncond = d_unconds[0] if len(d_unconds) == 1 else sum(d_unconds) / len(d_unconds)
            denoised = d_uncond + (d_cond - d_uncond) * g.cfg
        if g.slg_active(step_index):
            d_skip = self._velocity(x, sigma, [self.cond], skip=g.slg_layers)[0]
            denoised = denoised + (d_cond - d_skip) * g.slg_scale
        return denoised
