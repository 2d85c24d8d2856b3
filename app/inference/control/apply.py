"""The ControlNets of a job at each model call: which act at this sigma, and what they add after each block.

A `ControlUnit` is one loaded ControlNet with its job's hint tokens, strength and window. The window is
ComfyUI's: `start`/`end` percent become sigmas with the schedule's shift (`percent_to_sigma`), and the unit acts
while sigma_end <= sigma <= sigma_start. Several units add their outputs (SD35_ADDONS.md §2.1). They act on the
cond/uncond batch of each step, not on the skip-layer guidance pass (the reference's choice; see guidance.py).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from app.inference.networks.controlnet import ControlNet
from app.inference.sampling.schedules import percent_to_sigma


@dataclass(frozen=True, slots=True)
class ControlUnit:
    model: ControlNet
    hint: torch.Tensor  # (1, N, D) pos_embed_input(control latent), on the model's device, in its dtype
    strength: float
    sigma_start: float  # acts while sigma_end <= sigma <= sigma_start
    sigma_end: float
    interval: int  # base joint block j receives output j // interval

    @classmethod
    def of(
        cls, model: ControlNet, hint: torch.Tensor, strength: float, start: float, end: float,
        shift: float, base_depth: int,
    ) -> ControlUnit:  # fmt: skip
        s_start, s_end = percent_to_sigma(start, shift), percent_to_sigma(end, shift)
        return cls(model, hint, strength, s_start, s_end, base_depth // model.cfg.depth)

    def acts_at(self, sigma: float) -> bool:
        return self.strength != 0 and self.sigma_end <= sigma <= self.sigma_start


class SummedResiduals:
    """The `ControlResiduals` of one forward: each unit's output for a block, times its strength, summed."""

    def __init__(self, outputs: Sequence[tuple[list[torch.Tensor], float, int]]) -> None:
        self.outputs = outputs  # per unit: (its N outputs, strength, interval)

    def after_block(self, index: int) -> torch.Tensor | None:
        total = None
        for outs, strength, interval in self.outputs:
            k = index // interval
            if k >= len(outs):
                continue
            r = outs[k] * strength
            total = r if total is None else total + r
        return total


class ControlStack:
    """All ControlNets of a job; `for_call` gives the MMDiT's `PreparedInputs.control` for one forward."""

    def __init__(self, units: Sequence[ControlUnit]) -> None:
        self.units = tuple(units)
        self.calls = 0  # forwards in which at least one unit acted (for tests and benchmarks)

    def for_call(
        self, sigma: float, t: torch.Tensor, y: torch.Tensor
    ) -> Callable[[torch.Tensor], SummedResiduals] | None:
        """t (B,) = 1000 sigma and y (B, adm) pooled rows of the batch; None when no unit acts at `sigma`."""
        active = [u for u in self.units if u.acts_at(sigma)]
        if not active:
            return None
        self.calls += 1

        def run(tokens: torch.Tensor) -> SummedResiduals:
            # tokens (B, N, D): the base model's x_embedder(x) + pos_embed, shared by every unit
            return SummedResiduals([(u.model(tokens, u.hint, t, y), u.strength, u.interval) for u in active])

        return run
