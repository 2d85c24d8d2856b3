"""Our parameters from a ComfyUI API-format graph (the `prompt` chunk of a ComfyUI PNG).

Understands simple SD3 graphs: a KSampler fed by CLIPTextEncode nodes (also through the negative-window
construction, SD35_SAMPLING.md §6.1), EmptySD3LatentImage or LoadImage ─ VAEEncode, a model chain of
CheckpointLoaderSimple / UNETLoader with ModelSamplingSD3 and SkipLayerGuidanceSD3, and the CLIP loaders.
Everything else is reported as "not mapped" rather than guessed.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path, PurePosixPath

from app.inference.api.lora import LoraSpec
from app.inference.api.request import SAMPLER_NAMES, SCHEDULER_NAMES
from app.metadata import comfy_refine_recall, comfy_sampler
from app.metadata.controlnet_meta import comfy_controlnets
from app.metadata.fields import checked_fields
from app.metadata.params import ImageParams, variant_of_name

log = logging.getLogger(__name__)

_SAMPLER_TYPES = ("KSampler", "KSamplerAdvanced")
_LORA_LOADERS = ("LoraLoader", "LoraLoaderModelOnly")
_PASS_THROUGH_MODEL = {
    "FreeU",
    "FreeU_V2",
    "CFGNorm",
    "ModelSamplingAuraFlow",
}


class _Walker:
    def __init__(self, prompt: dict) -> None:
        self.nodes = {str(k): v for k, v in prompt.items() if isinstance(v, dict) and "class_type" in v}
        self.unmapped: list[str] = []

    def node(self, ref: object) -> tuple[str, dict] | None:
        if isinstance(ref, list) and len(ref) == 2 and str(ref[0]) in self.nodes:
            return str(ref[0]), self.nodes[str(ref[0])]
        return None

    def note(self, text: str) -> None:
        if text not in self.unmapped:
            self.unmapped.append(text)

    def text(self, ref: object, where: str) -> str | None:
        found = self.node(ref)
        if found is None:
            self.note(f"{where}: the text does not come from a text node")
            return None
        node_id, node = found
        inputs, kind = node.get("inputs", {}), node["class_type"]
        if kind == "CLIPTextEncode" and isinstance(inputs.get("text"), str):
            return inputs["text"]
        if kind == "CLIPTextEncodeSD3":
            self.note(f"{where}: separate prompts per text encoder; the T5 prompt is used")
            return inputs.get("t5xxl") if isinstance(inputs.get("t5xxl"), str) else None
        self.note(f"{where}: node {node_id} ({kind}) is not understood")
        return None


def _negative(w: _Walker, ref: object, out: dict[str, object]) -> None:
    """A plain negative, or the window construction: Combine(Range(0, f) ← text, Range(f, 1) ← ZeroOut)."""
    found = w.node(ref)
    if found is not None and found[1]["class_type"] == "ConditioningCombine":
        parts = [w.node(found[1]["inputs"].get(k)) for k in ("conditioning_1", "conditioning_2")]
        ranges = [
            p[1] for p in parts if p is not None and p[1]["class_type"] == "ConditioningSetTimestepRange"
        ]
        if len(ranges) == 2:
            early, late = sorted(ranges, key=lambda n: n["inputs"].get("start", 0))
            zero = w.node(late["inputs"].get("conditioning"))
            if (
                zero is not None
                and zero[1]["class_type"] == "ConditioningZeroOut"
                and early["inputs"]["start"] == 0
            ):
                out["negative"] = w.text(early["inputs"].get("conditioning"), "negative prompt") or ""
                out["negative_until"] = float(early["inputs"]["end"])
                return
        w.note("negative prompt: a combination of conditionings that is not the negative window")
        return
    out["negative"] = w.text(ref, "negative prompt") or ""


def _model(w: _Walker, ref: object, out: dict[str, object]) -> None:
    seen: set[str] = set()
    while (found := w.node(ref)) is not None and found[0] not in seen:
        node_id, node = found
        seen.add(node_id)
        inputs, kind = node.get("inputs", {}), node["class_type"]
        if kind == "ModelSamplingSD3":
            out["shift"] = float(inputs["shift"])
        elif kind in ("SkipLayerGuidanceSD3", "SkipLayerGuidanceDiT"):
            layers = inputs.get("layers", inputs.get("double_layers", ""))
            out["slg_layers"] = tuple(int(i) for i in re.findall(r"\d+", str(layers)))
            out["slg_scale"] = float(inputs["scale"])
            out["slg_start"], out["slg_end"] = float(inputs["start_percent"]), float(inputs["end_percent"])
            w.note(
                "skip-layer guidance: ComfyUI picks its steps by noise level, SD3.5 Studio by step index "
                "(the same steps for the usual step counts)"
            )
        elif kind in ("CheckpointLoaderSimple", "UNETLoader"):
            name = str(inputs.get("ckpt_name", inputs.get("unet_name", "")))
            stem = PurePosixPath(name.replace("\\", "/")).stem
            out["model_name"] = stem
            out["variant"] = variant_of_name(stem)
            out["fp8"] = "fp8" in name.lower() or "fp8" in str(inputs.get("weight_dtype", ""))
            return
        elif kind in _LORA_LOADERS and isinstance(inputs.get("lora_name"), str):
            name = inputs["lora_name"].replace("\\", "/")  # relative to models/loras; recall finds it by name
            strength = float(inputs.get("strength_model", 1.0))
            te = float(inputs.get("strength_clip", 0.0 if kind == "LoraLoaderModelOnly" else strength))
            lora = LoraSpec(Path(name), strength, None if te == strength else te)
            out["loras"] = (lora, *out.get("loras", ()))  # type: ignore[misc]  # walking back to the loader
        elif kind == "DifferentialDiffusion":
            out["mask_soft"] = True
        elif kind in _PASS_THROUGH_MODEL:
            w.note(f"model: node {node_id} ({kind}) has no counterpart and is left out")
        else:
            w.note(f"model: node {node_id} ({kind}) is not understood")
        ref = inputs.get("model")


def _latent(w: _Walker, ref: object, out: dict[str, object]) -> None:
    found = w.node(ref)
    if found is None:
        w.note("latent image: not understood")
        return
    node_id, node = found
    inputs, kind = node.get("inputs", {}), node["class_type"]
    if kind in ("EmptySD3LatentImage", "EmptyLatentImage"):
        out["width"], out["height"] = int(inputs["width"]), int(inputs["height"])
        if int(inputs.get("batch_size", 1)) > 1:
            w.note(f"batch of {inputs['batch_size']}: only its first image has this seed on its own")
    elif kind == "VAEEncode":
        pixels = w.node(inputs.get("pixels"))
        if pixels is not None and pixels[1]["class_type"] == "LoadImage":
            out["init_image"] = str(pixels[1]["inputs"].get("image"))
        w.note("img2img: choose the source image again")
    elif kind == "SetLatentNoiseMask":
        comfy_refine_recall.masked_latent(w, inputs, out)
    else:
        w.note(f"latent image: node {node_id} ({kind}) is not understood")


def _clip(w: _Walker, text_ref: object, out: dict[str, object]) -> None:
    found = w.node(text_ref)
    clip = w.node(found[1].get("inputs", {}).get("clip")) if found else None
    if clip is None:
        return
    kind, inputs = clip[1]["class_type"], clip[1].get("inputs", {})
    names = " ".join(str(v) for v in inputs.values()).lower()
    if kind == "DualCLIPLoader" or (kind != "CheckpointLoaderSimple" and "t5" not in names):
        out["use_t5"] = False


def params_from_comfy_prompt(prompt: dict) -> tuple[ImageParams, tuple[str, ...]]:
    """Raises ValueError when the graph has no sampler we can read (and ValueError, TypeError, KeyError or
    AttributeError when a node is not shaped as ComfyUI writes it: the caller turns those into a sentence).
    Values of the wrong type are left out with a note (`app.metadata.fields`)."""
    w = _Walker(comfy_sampler.as_ksamplers(prompt))  # our remote graphs' SamplerCustom reads as its KSampler
    samplers = [(k, n) for k, n in sorted(w.nodes.items()) if n["class_type"] in _SAMPLER_TYPES]
    if not samplers:
        raise ValueError("the ComfyUI graph has no KSampler")
    out: dict[str, object] = {"noise": "cpu"}
    second = comfy_refine_recall.hires_pass(w, samplers, out)
    if second is not None:
        samplers = [s for s in samplers if s is not second]
    if len(samplers) > 1:
        w.note(f"{len(samplers)} samplers in the graph; node {samplers[0][0]} is used")
    sampler = samplers[0][1]
    inputs = sampler.get("inputs", {})
    seed = inputs.get("seed", inputs.get("noise_seed"))
    if isinstance(seed, int):
        out["seed"] = seed
    else:
        w.note("seed: comes from another node")
    for key, name, cast in (("steps", "steps", int), ("cfg", "cfg", float), ("denoise", "denoise", float)):
        if isinstance(inputs.get(name), int | float):
            out[key] = cast(inputs[name])
    if inputs.get("sampler_name") in SAMPLER_NAMES:
        out["sampler"] = inputs["sampler_name"]
    else:
        w.note(f"sampler {inputs.get('sampler_name')}: not available; using the variant's default")
    if inputs.get("scheduler") in SCHEDULER_NAMES:
        out["scheduler"] = inputs["scheduler"]
    else:
        w.note(f"scheduler {inputs.get('scheduler')}: not available; using the variant's default")
    if sampler["class_type"] == "KSamplerAdvanced":
        w.note("KSamplerAdvanced: start/end steps and added noise are not mapped")
    positive, controlnets = comfy_controlnets(w.node, inputs.get("positive"), "positive")
    negative, _ = comfy_controlnets(w.node, inputs.get("negative"), "negative")
    if controlnets:
        out["controlnets"] = controlnets
        w.note(
            "ControlNet: ComfyUI names its files relative to its folders; choose the files again if needed"
        )
    out["prompt"] = w.text(positive, "prompt") or ""
    _negative(w, negative, out)
    _model(w, inputs.get("model"), out)
    _latent(w, inputs.get("latent_image"), out)
    _clip(w, positive, out)
    comfy_refine_recall.hires_scale(w, out)
    checked, notes = checked_fields(out)
    return ImageParams.from_fields(**checked), tuple(dict.fromkeys((*w.unmapped, *notes)))
