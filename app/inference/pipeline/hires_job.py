"""The hires pass of a job: per batch, the first pass's images are upscaled, encoded, and sampled again.

Prepared once per job (its schedule and guided denoiser over that schedule), run once per batch of seeds.
Each image keeps its seed: the second pass's noise is drawn from the same seed at the hires latent size.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch

from app.inference.api.cancel import CancelToken
from app.inference.api.events import Event
from app.inference.api.request import GenerationRequest
from app.inference.pipeline.batch import Batch, BatchRunner, Sampling
from app.inference.pipeline.hires import HiresPass
from app.inference.sampling.guidance import GuidanceConfig, GuidedDenoiser
from app.inference.sampling.preview import PreviewDecoder

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class HiresJob:
    hires: HiresPass
    sampling: Sampling  # the second pass's, without its init latents (set per batch)
    encode: Callable[[torch.Tensor], torch.Tensor]  # (1, 3, H, W) [-1, 1] -> (1, 16, H/8, W/8) model space
    preview_every: int

    @classmethod
    def prepare(
        cls, session: Any, req: GenerationRequest, guidance: GuidanceConfig, prompts: Any, first_steps: int
    ) -> HiresJob:
        """`session` is the GenerationSession running the job (its engine, precision and options);
        `first_steps` the first pass's: the second pass's step events continue from there."""
        hires = HiresPass.of(req)
        engine = session.engine
        engine.prepare_mmdit()
        denoiser = GuidedDenoiser(
            engine.mmdit, prompts.cond, prompts.uncond, guidance, hires.sigmas, precompute=session.precompute
        )
        w, h = hires.size_for(req.width, req.height)  # a masked job's output may be a few px smaller: see run
        shape = (1, engine.mmdit.cfg.in_channels, h // 8, w // 8)
        steps = len(hires.sigmas) - 1
        sampling = Sampling(
            denoiser, hires.sigmas, req.sampler, shape, None, engine.device, session._precision(),
            step_offset=first_steps, total_steps=first_steps + steps,
        )  # fmt: skip
        return cls(hires, sampling, session.encode_pixels, session.preview_every)

    def run(
        self,
        first: dict[int, np.ndarray],
        batch: Batch,
        cancel: CancelToken,
        emit: Callable[[Event], None],
        preview: PreviewDecoder | None,
    ) -> tuple[torch.Tensor, Batch]:
        """{row: (H, W, 3) uint8 first-pass image} -> ((B', 16, h', w') latents, the batch of those images)."""
        rows = sorted(first)
        second = Batch([batch.indices[r] for r in rows], [batch.seeds[r] for r in rows], [True] * len(rows))
        if not rows:  # every image failed or left: nothing to sample
            return torch.zeros((0, *self.sampling.latent_shape[1:])), second
        init = torch.cat([self.encode(self.hires.vae_input(first[r])) for r in rows])  # (B', 16, h', w')
        shape = (1, init.shape[1], init.shape[2], init.shape[3])  # from the first pass's actual size
        sampling = replace(self.sampling, init_latent=init, latent_shape=shape)
        latents = BatchRunner(sampling, second, cancel, emit, preview, self.preview_every).run()
        return latents, second
