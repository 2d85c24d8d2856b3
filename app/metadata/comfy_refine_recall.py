"""Reading the refine part of a ComfyUI graph back (the inverse of comfy_refine.py): the masked start
(SetLatentNoiseMask over VAEEncode, its mask chain, an outpaint pad) and a hires second pass."""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)

_SCALERS = ("ImageScale", "ImageScaleBy")


def masked_latent(w: Any, inputs: dict, out: dict[str, object]) -> None:
    """SetLatentNoiseMask(samples ← VAEEncode ← [ImagePadForOutpaint ←] LoadImage, mask ← mask chain)."""
    encoded = w.node(inputs.get("samples"))
    if encoded is None or encoded[1]["class_type"] != "VAEEncode":
        w.note("inpainting: the masked latent does not come from an encoded image")
        return
    pixels = w.node(encoded[1].get("inputs", {}).get("pixels"))
    if pixels is not None and pixels[1]["class_type"] == "ImagePadForOutpaint":
        pad = pixels[1].get("inputs", {})
        out["outpaint"] = tuple(int(pad.get(side, 0)) for side in ("left", "top", "right", "bottom"))
        pixels = w.node(pad.get("image"))
    if pixels is not None and pixels[1]["class_type"] == "LoadImage":
        out["init_image"] = str(pixels[1]["inputs"].get("image"))
    w.note("img2img: choose the source image again")
    _mask(w, inputs.get("mask"), out)


def _mask(w: Any, ref: object, out: dict[str, object]) -> None:
    out["mask_grow"] = 0
    while (found := w.node(ref)) is not None:
        _, node = found
        inputs, kind = node.get("inputs", {}), node["class_type"]
        if kind == "GrowMask":
            out["mask_grow"] = int(inputs.get("expand", 0))
            ref = inputs.get("mask")
        elif kind == "MaskComposite":  # the painted mask added onto the outpaint area
            ref = inputs.get("source")
        elif kind == "LoadImageMask":
            out["mask_image"] = str(inputs.get("image"))
            if inputs.get("channel") not in ("red", "green", "blue"):
                w.note(f"mask: the {inputs.get('channel')} channel is read as grey here")
            return
        elif kind == "LoadImage" and ref[1] == 1:  # its MASK output: 1 − alpha
            out["mask_image"], out["mask_alpha"] = str(inputs.get("image")), True
            return
        elif kind == "ImagePadForOutpaint":  # no painted mask: the new area only
            return
        else:
            w.note(f"mask: node {found[0]} ({kind}) is not understood")
            return
    w.note("mask: not understood; choose the mask again")


def hires_pass(w: Any, samplers: list[tuple[str, dict]], out: dict[str, object]) -> tuple[str, dict] | None:
    """Of two samplers, the one sampling an upscaled decode (VAEEncode ← ImageScale): its hires fields go
    into `out`, and it is returned (the other one is the first pass). None when the graph is not that."""
    if len(samplers) != 2:
        return None
    for second in samplers:
        encoded = w.node(second[1].get("inputs", {}).get("latent_image"))
        if encoded is None or encoded[1]["class_type"] != "VAEEncode":
            continue
        scaled = w.node(encoded[1].get("inputs", {}).get("pixels"))
        if scaled is None or scaled[1]["class_type"] not in _SCALERS:
            continue
        inputs, scale = second[1].get("inputs", {}), scaled[1].get("inputs", {})
        out["hires_steps"] = int(inputs["steps"]) if isinstance(inputs.get("steps"), int) else None
        out["hires_denoise"] = float(inputs.get("denoise", 1.0))
        out["_hires_scale_input"] = scale
        if scale.get("upscale_method") != "lanczos":
            w.note(f"hires upscaler {scale.get('upscale_method')}: Lanczos is used here")
        return second
    return None


def hires_scale(w: Any, out: dict[str, object]) -> None:
    """The scale from the ImageScale size and the first pass's size (known for a txt2img first pass)."""
    scale = out.pop("_hires_scale_input", None)
    if scale is None:
        return
    if "scale_by" in scale:
        out["hires_scale"] = float(scale["scale_by"])
    elif isinstance(out.get("width"), int) and isinstance(scale.get("width"), int) and out["width"]:
        out["hires_scale"] = round(scale["width"] / out["width"], 4)
    else:
        w.note("hires: the first pass's size is not known; set the hires scale again")
