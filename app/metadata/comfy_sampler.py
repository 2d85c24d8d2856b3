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

import math
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


def denoise_for(steps: int, dropped: int) -> float:
    """A denoise strength whose img2img rule drops exactly `dropped` of `steps` sigmas (the inverse of
    dropped_steps; several strengths drop the same count: the one with the fewest decimals at or below
    1 − dropped/steps, so 40 steps with 7 dropped reads 0.8, the strength such a graph is usually made from)."""
    if dropped <= 0:
        return 1.0
    exact = 1 - dropped / steps
    for digits in range(1, 13):
        d = math.floor(exact * 10**digits) / 10**digits
        if dropped_steps(steps, d) == dropped:
            return d
    while dropped_steps(steps, exact) < dropped:  # float rounding just under the count
        exact -= 1e-15
    return exact


def as_ksamplers(prompt: dict) -> dict:
    """A copy of an API graph where each SamplerCustom fed by KSamplerSelect and BasicScheduler (denoise 1)
    [→ SplitSigmas.low_sigmas], the form add_sampler writes, reads as the KSampler of the same schedule:
    steps N, denoise with the same dropped sigmas. Other graphs come back unchanged."""
    nodes = {str(k): v for k, v in prompt.items() if isinstance(v, dict)}

    def node(ref: object) -> dict | None:
        return nodes.get(str(ref[0])) if isinstance(ref, list) and len(ref) == 2 else None

    out = dict(prompt)
    for key, n in nodes.items():
        if n.get("class_type") != "SamplerCustom" or not isinstance(n.get("inputs"), dict):
            continue
        inputs = n["inputs"]
        chosen, sigmas = node(inputs.get("sampler")), node(inputs.get("sigmas"))
        dropped = 0
        if sigmas is not None and sigmas.get("class_type") == "SplitSigmas" and inputs["sigmas"][1] == 1:
            dropped = sigmas.get("inputs", {}).get("step")
            sigmas = node(sigmas.get("inputs", {}).get("sigmas"))
        if chosen is None or chosen.get("class_type") != "KSamplerSelect" or sigmas is None:
            continue
        schedule = sigmas.get("inputs", {})
        steps = schedule.get("steps")
        if sigmas.get("class_type") != "BasicScheduler" or schedule.get("denoise") != 1.0:
            continue
        if not (isinstance(steps, int) and isinstance(dropped, int) and 0 <= dropped < steps):
            continue
        out[key] = {"class_type": "KSampler", "inputs": {
            "model": inputs.get("model"), "seed": inputs.get("noise_seed"), "steps": steps,
            "cfg": inputs.get("cfg"), "sampler_name": chosen.get("inputs", {}).get("sampler_name"),
            "scheduler": schedule.get("scheduler"), "positive": inputs.get("positive"),
            "negative": inputs.get("negative"), "latent_image": inputs.get("latent_image"),
            "denoise": denoise_for(steps, dropped)}}  # fmt: skip
    return out
