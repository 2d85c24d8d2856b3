"""The masked start of a graph whose inputs were uploaded by the remote engine (app/remote/inputs.py).

A remote job sends the pixels our local engine samples from, so the server does none of the preparing that a
portable graph asks ComfyUI to do (comfy_refine.masked_start: pad, fill, grow):
  LoadImage(canvas: the init image on the sampling canvas, new area edge-extended, 16-px aligned) ─ VAEEncode ─
  SetLatentNoiseMask(LoadImageMask(mask: the grown mask on the canvas, grey, red channel)) ─ KSampler ─
  VAEDecode ─ ImageCompositeMasked(onto the canvas, LoadImageMask(the feathered composite mask)) ─
  [ImageCrop: the alignment px off]
Names are the server's (content hashes under its upload subfolder); the files are what the graph reads, so a
PNG's `prompt` chunk with these names is exactly what ran.
"""

from __future__ import annotations

from typing import Any

from app.metadata.comfy_refine import Graph, Link, MaskedStart


def uploaded_start(g: Graph, files: Any, vae: Link) -> MaskedStart:
    """LoadImage(canvas) → VAEEncode → SetLatentNoiseMask(uploaded grown mask)."""
    pixels: Link = [g.add("LoadImage", image=files.init_image), 0]
    mask: Link = [g.add("LoadImageMask", image=files.mask_image, channel="red"), 0]
    encoded = g.add("VAEEncode", pixels=pixels, vae=vae)
    latent = g.add("SetLatentNoiseMask", samples=[encoded, 0], mask=mask)
    blend = mask
    if files.composite_mask and files.composite_mask != files.mask_image:
        blend = [g.add("LoadImageMask", image=files.composite_mask, channel="red"), 0]
    return MaskedStart([latent, 0], pixels, blend)


def cropped(g: Graph, files: Any, image: Link) -> Link:
    """The composited canvas without its alignment px (top-left kept), when the canvas was aligned."""
    if files.output_size is None:
        return image
    width, height = files.output_size
    return [g.add("ImageCrop", image=image, width=width, height=height, x=0, y=0), 0]


def hires_params(params: Any, files: Any) -> Any:
    """The parameters the hires pass is sized from: a cropped canvas's output size, as the local engine sizes it
    (hires_job.py: the first pass's actual image); unchanged otherwise."""
    if files.output_size is None:
        return params
    width, height = files.output_size
    return params.updated(width=width, height=height)
