"""Reading generation parameters from any image file, and saying when they will not reproduce here.

Order of trust: our own JSON (`sd35-studio` chunk, exact), then A1111's infotext (`parameters` chunk, or EXIF
UserComment for JPEG/WebP), then a ComfyUI `prompt` graph, then a ComfyUI `workflow` (UI format, converted).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from app.inference.api.request import GenerationRequest
from app.metadata.a1111 import params_from_infotext
from app.metadata.comfy_recall import params_from_comfy_prompt
from app.metadata.comfy_workflow import prompt_from_workflow
from app.metadata.exif import read_user_comment
from app.metadata.params import ImageParams
from app.metadata.png_info import (
    COMFY_PROMPT_KEY,
    COMFY_WORKFLOW_KEY,
    PARAMETERS_KEY,
    STUDIO_KEY,
    read_png_text,
)

log = logging.getLogger(__name__)

SOURCES = ("sd35-studio", "a1111", "comfyui")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")


@dataclass(frozen=True, slots=True)
class Recalled:
    params: ImageParams
    source: str  # one of SOURCES
    unmapped: tuple[str, ...] = ()  # what could not be carried over, as short sentences
    infotext: str | None = None


@dataclass(frozen=True, slots=True)
class CurrentSetup:
    """What the app would generate with now; `None` where it is not known (no model loaded yet)."""

    model_name: str | None = None
    model_hash: str | None = None
    variant: str | None = None
    fp8: bool = False
    t5_available: bool = True


def recall_from_text(chunks: dict[str, str]) -> Recalled | None:
    if STUDIO_KEY in chunks:
        try:
            params = ImageParams.from_json(chunks[STUDIO_KEY])
            return Recalled(params, "sd35-studio", (), chunks.get(PARAMETERS_KEY))
        except (ValueError, TypeError) as exc:
            log.warning("unreadable %s chunk (%s); trying the infotext", STUDIO_KEY, exc)
    if chunks.get(PARAMETERS_KEY):
        return recall_from_infotext(chunks[PARAMETERS_KEY])
    if COMFY_PROMPT_KEY in chunks:
        try:
            graph = json.loads(chunks[COMFY_PROMPT_KEY])
            params, unmapped = params_from_comfy_prompt(graph)
            return Recalled(params, "comfyui", unmapped)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            log.info("ComfyUI graph not understood: %s", exc)
    if COMFY_WORKFLOW_KEY in chunks:
        try:
            return recall_from_workflow(chunks[COMFY_WORKFLOW_KEY])
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            log.info("ComfyUI workflow not understood: %s", exc)
    return None


def recall_from_workflow(workflow: str) -> Recalled:
    """Parameters from a UI-format ComfyUI workflow; raises ValueError (WorkflowError) with a readable reason
    when it is not one, or has no sampler."""
    converted = prompt_from_workflow(workflow)
    params, unmapped = params_from_comfy_prompt(converted.prompt)
    notes = tuple(dict.fromkeys((*converted.notes, *unmapped)))
    return Recalled(params, "comfyui", notes)


def recall_from_infotext(text: str) -> Recalled:
    params, unmapped = params_from_infotext(text)
    source = "sd35-studio" if params.app_version is not None or "Version: SD3.5 Studio" in text else "a1111"
    return Recalled(params, source, unmapped, text)


def read_metadata(path: Path) -> Recalled | None:
    """The parameters an image file carries, or None (no metadata, not an image, unreadable)."""
    path = Path(path)
    try:
        if path.suffix.lower() == ".png":
            return recall_from_text(read_png_text(path))
        comment = read_user_comment(path)
    except (OSError, UnidentifiedImageError, Image.DecompressionBombError) as exc:
        log.info("cannot read %s: %s", path, exc)
        return None
    return recall_from_infotext(comment) if comment else None


def reproduction_warnings(recalled: Recalled, setup: CurrentSetup | None) -> tuple[str, ...]:
    """Why the same settings may not give the same image here; empty when nothing is known to differ."""
    p = recalled.params
    out: list[str] = []
    if setup is not None:
        if p.model_hash and setup.model_hash and p.model_hash.lower() != setup.model_hash.lower():
            out.append(
                f"Made with a different model file ({p.model_name or 'unknown'}, hash {p.model_hash}); "
                f"yours is {setup.model_name or 'unknown'} (hash {setup.model_hash}). The image will differ."
            )
        elif p.model_name and setup.model_name and not p.model_hash and p.model_name != setup.model_name:
            out.append(f"Made with model {p.model_name}; you have {setup.model_name} loaded.")
        if p.variant and setup.variant and p.variant != setup.variant:
            out.append(f"Made with SD3.5 {p.variant}; the loaded model is SD3.5 {setup.variant}.")
        if p.fp8 != setup.fp8:
            made, have = ("fp8", "full-precision") if p.fp8 else ("full-precision", "fp8")
            out.append(f"Made with {made} weights; yours are {have}, so details will differ slightly.")
        if p.use_t5 and not setup.t5_available:
            out.append("Made with the T5 text encoder, which is not available here: the image will differ.")
    if not p.use_t5:
        out.append("Made without T5: keep T5 switched off to reproduce it.")
    if p.noise != "cpu":
        out.append(
            "The start noise was drawn on the GPU (A1111's default), so the same seed gives a different "
            "image here."
        )
    if p.seed is None:
        out.append("The image does not state its seed.")
    return tuple(out)


@dataclass(frozen=True, slots=True)
class SettingsRecall:
    """What "use these settings" / "reuse seed" / dropping an image hands to the generation controls."""

    request: GenerationRequest  # one image; None fields mean "the variant's default"
    params: ImageParams  # everything the image said, including model name, hash and variant
    source: str
    unmapped: tuple[str, ...]  # what could not be carried over
    warnings: tuple[str, ...]  # why it may not reproduce exactly here

    @property
    def seed(self) -> int | None:
        return self.params.seed


def settings_for(recalled: Recalled, setup: CurrentSetup | None) -> SettingsRecall:
    p = recalled.params
    return SettingsRecall(
        p.to_request(), p, recalled.source, recalled.unmapped, reproduction_warnings(recalled, setup)
    )
