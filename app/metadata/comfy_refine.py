"""The refine part of an image's ComfyUI graph: the masked start (inpaint, outpaint) and the hires pass.

Node names and inputs as ComfyUI declares them (`nodes.py`: LoadImage, LoadImageMask, VAEEncode,
SetLatentNoiseMask, ImagePadForOutpaint, ImageScale; `comfy_extras/nodes_mask.py`: GrowMask, MaskComposite,
ImageCompositeMasked; `nodes_differential_diffusion.py`: DifferentialDiffusion):

  LoadImage ─ [ImagePadForOutpaint] ─ VAEEncode ─ SetLatentNoiseMask ─ KSampler ─ VAEDecode ─ ImageCompositeMasked
  mask: LoadImageMask(red) for a grey mask, LoadImage's MASK (1 − alpha) for a transparent one,
        [MaskComposite(add) onto the outpaint area] ─ [GrowMask]
  model: [DifferentialDiffusion] for a soft mask
  hires: ImageScale(lanczos, W', H') ─ VAEEncode ─ KSampler(denoise = hires denoise) ─ VAEDecode

Where ComfyUI differs: its outpaint fills the new area with grey (ours repeats the edge pixels), and its
composite is not feathered (ours blends over `mask_blur` px).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Protocol

from app.inference.api.request import hires_side
from app.metadata.comfy_sampler import add_sampler
from app.metadata.params import ImageParams

log = logging.getLogger(__name__)

Link = list[object]  # [source node id, output slot]


class Graph(Protocol):
    def add(self, class_type: str, title: str | None = None, **inputs: object) -> str: ...


def file_name(path: object) -> str:
    """The name ComfyUI's LoadImage lists: the file's name in its input folder."""
    return str(path).replace("\\", "/").rsplit("/", 1)[-1]


@dataclass(frozen=True, slots=True)
class MaskedStart:
    """The masked start's links: the KSampler's latent, and what the final composite needs."""

    latent: Link  # LATENT with its noise mask
    pixels: Link  # IMAGE: the (padded) init image, the composite's destination
    mask: Link  # MASK: the grown mask, 1 = regenerate


def masked_start(g: Graph, params: ImageParams, vae: Link) -> MaskedStart:
    """LoadImage (and the mask) → VAEEncode → SetLatentNoiseMask, for an image with a mask or an outpaint."""
    left, top, right, bottom = params.outpaint
    image = g.add("LoadImage", image=file_name(params.init_image))
    pixels: Link = [image, 0]
    mask: Link | None = None
    if any(params.outpaint):
        pad = g.add("ImagePadForOutpaint", image=pixels, left=left, top=top, right=right, bottom=bottom,
                    feathering=0)  # fmt: skip
        pixels, mask = [pad, 0], [pad, 1]
    if params.mask_image is not None:
        name = file_name(params.mask_image)
        if params.mask_alpha:
            user: Link = [g.add("LoadImage", image=name), 1]
        else:
            user = [g.add("LoadImageMask", image=name, channel="red"), 0]
        if mask is None:
            mask = user
        else:  # the painted mask, placed where the init image sits on the extended canvas
            mask = [g.add("MaskComposite", destination=mask, source=user, x=left, y=top, operation="add"), 0]
    if params.mask_grow:
        mask = [g.add("GrowMask", mask=mask, expand=params.mask_grow, tapered_corners=True), 0]
    encoded = g.add("VAEEncode", pixels=pixels, vae=vae)
    latent = g.add("SetLatentNoiseMask", samples=[encoded, 0], mask=mask)
    return MaskedStart([latent, 0], pixels, mask)


def soft_mask_model(g: Graph, params: ImageParams, model: Link) -> Link:
    """The model through DifferentialDiffusion when the mask was soft; unchanged otherwise."""
    if not params.mask_soft or not (params.mask_image is not None or any(params.outpaint)):
        return model
    return [g.add("DifferentialDiffusion", model=model, strength=1.0), 0]


def composite(g: Graph, start: MaskedStart, decoded: Link) -> Link:
    """The sampled image over the init image, outside the mask exactly the init's pixels."""
    node = g.add("ImageCompositeMasked", destination=start.pixels, source=decoded, x=0, y=0,
                 resize_source=False, mask=start.mask)  # fmt: skip
    return [node, 0]


def hires_pass(g: Graph, params: ImageParams, image: Link, model: Link, positive: Link, negative: Link,
               vae: Link, files: object = None) -> Link:  # fmt: skip
    """ImageScale (Lanczos, to the 16-px-aligned hires size) → VAEEncode → KSampler → VAEDecode (`files`: a
    remote job's ComfyFiles; with `our_schedule` the sampler is comfy_sampler's)."""
    width, height = (
        hires_side(params.width, params.hires_scale),
        hires_side(params.height, params.hires_scale),
    )
    scaled = g.add("ImageScale", image=image, upscale_method="lanczos", width=width, height=height,
                   crop="disabled")  # fmt: skip
    encoded = g.add("VAEEncode", pixels=[scaled, 0], vae=vae)
    sampled = add_sampler(g, files, model=model, seed=params.seed, steps=params.hires_steps or params.steps,
                          cfg=params.cfg, sampler=params.sampler, scheduler=params.scheduler, positive=positive,
                          negative=negative, latent=[encoded, 0], denoise=params.hires_denoise)  # fmt: skip
    return [g.add("VAEDecode", samples=[sampled, 0], vae=vae), 0]
