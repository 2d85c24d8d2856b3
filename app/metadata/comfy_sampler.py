"""The sampler node of a graph: KSampler, or for a partial denoise OUR img2img schedule in ComfyUI's nodes.

ComfyUI's KSampler(denoise d) always runs N steps: it builds an int(N/d)-step schedule and keeps its last N+1
sigmas. Ours (Stability's reference, SD35_SAMPLING.md §2 img2img) builds the N-step schedule and drops its first
int(N·(1 − d)) sigmas. The remote engine (ComfyFiles.our_schedule) asks the server for ours, with ComfyUI's own
custom-sampling nodes (comfy_extras/nodes_custom_sampler.py):
  BasicScheduler(model, scheduler, N, denoise 1) ─ SplitSigmas(step = int(N·(1 − d))).low_sigmas ┐
  KSamplerSelect(sampler) ──────────────────────────────────────────────────────────────────── SamplerCustom
SamplerCustom draws its noise as KSampler does (the seed's noise over the latent), and takes a latent's noise mask.
Graphs written for a local image keep KSampler (the portable, familiar form), as before.
"""

from __future__ import annotations

from typing import Any


def dropped_steps(steps: int, denoise: float) -> int:
    """How many sigmas our img2img rule drops: int(N·(1 − d)) in Python float arithmetic (schedules.py)."""
    return int(steps * (1 - denoise)) if denoise < 1 else 0


def our_steps(steps: int, denoise: float) -> int:
    """The steps our img2img schedule runs (N minus the dropped sigmas)."""
    return steps - dropped_steps(steps, denoise)


def add_sampler(g: Any, files: Any, *, model: list, seed: int, steps: int, cfg: float, sampler: str,
                scheduler: str, positive: list, negative: list, latent: list, denoise: float) -> str:  # fmt: skip
    """The sampler node's id (its output 0 is the sampled LATENT)."""
    if not getattr(files, "our_schedule", False) or denoise >= 1:
        return g.add("KSampler", model=model, seed=seed, steps=steps, cfg=cfg, sampler_name=sampler,
                     scheduler=scheduler, positive=positive, negative=negative, latent_image=latent,
                     denoise=denoise)  # fmt: skip
    schedule = g.add("BasicScheduler", model=model, scheduler=scheduler, steps=steps, denoise=1.0)
    split = g.add("SplitSigmas", sigmas=[schedule, 0], step=dropped_steps(steps, denoise))
    chosen = g.add("KSamplerSelect", sampler_name=sampler)
    return g.add("SamplerCustom", model=model, add_noise=True, noise_seed=seed, cfg=cfg, positive=positive,
                 negative=negative, sampler=[chosen, 0], sigmas=[split, 1], latent_image=latent)  # fmt: skip
