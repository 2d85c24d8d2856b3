"""Reading generation parameters from any image file, and saying when they will not reproduce here.

Order of trust: our own JSON (`sd35-studio` chunk, exact), then A1111's infotext (`parameters` chunk, or EXIF
UserComment for JPEG/WebP), then a ComfyUI `prompt` graph, then a ComfyUI `workflow` (UI format, converted).
Everything is read within the bounds of `app.metadata.limits`, and every value's type is checked as it is read
(`app.metadata.fields`); whatever cannot be read becomes one MetadataError with a sentence.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from app.inference.api.control import ControlSpec
from app.inference.api.request import GenerationRequest
from app.metadata.a1111 import params_from_infotext
from app.metadata.comfy_recall import params_from_comfy_prompt
from app.metadata.comfy_workflow import WorkflowError, prompt_from_workflow
from app.metadata.control_image_search import find_moved_control_images
from app.metadata.controlnet_a1111 import resolve_controlnet_files
from app.metadata.controlnet_meta import controlnet_warnings
from app.metadata.exif import read_user_comment
from app.metadata.fields import FIELD_KINDS, checked_fields
from app.metadata.limits import MetadataError, load_json
from app.metadata.lora_recall import resolve_loras
from app.metadata.params import ImageParams
from app.metadata.png_info import COMFY_PROMPT_KEY, COMFY_WORKFLOW_KEY, PARAMETERS_KEY, STUDIO_KEY
from app.metadata.png_text import read_png_chunks

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
    lora_folders: tuple[Path, ...] = ()  # where recalled LoRAs are looked for by file name
    controlnet_files: tuple[
        Path, ...
    ] = ()  # the ControlNets found here: recalled ones are matched by file name
    control_image_folders: tuple[Path, ...] = ()  # where a moved kept control image is looked for (by hash)


def recall_from_text(chunks: dict[str, str], problems: dict[str, str] | None = None) -> Recalled | None:
    """The settings of the most trusted source that can be read; None when no chunk states any. When the
    sources present all fail, raises MetadataError with the first one's reason; when a more trusted one
    fails and a later one is read, the failure is among the notes. `problems` are chunks that could not be
    read at all (from `read_png_chunks`), by keyword."""
    problems = problems or {}
    failures: list[str] = []
    for key, read in _READERS:
        if key in problems:
            failures.append(problems[key])
        elif chunks.get(key):
            try:
                recalled = read(chunks[key])
            except MetadataError as exc:
                log.info("%s chunk not read: %s", key, exc)
                failures.append(str(exc))
                continue
            notes = tuple(dict.fromkeys((*failures, *recalled.unmapped)))
            infotext = recalled.infotext or chunks.get(PARAMETERS_KEY)
            return Recalled(recalled.params, recalled.source, notes, infotext)
    if failures:
        raise MetadataError(failures[0])
    return None


def recall_from_studio_json(text: str) -> Recalled:
    """Our own `sd35-studio` chunk: exact, except for fields of the wrong type, which are left out (noted)."""
    data = load_json(text, f"The {STUDIO_KEY} text")
    if not isinstance(data, dict):
        raise MetadataError(f"The {STUDIO_KEY} text is not a JSON object.")
    known, notes = checked_fields({k: v for k, v in data.items() if k in FIELD_KINDS})
    rest = {k: v for k, v in data.items() if k not in FIELD_KINDS}
    try:
        params = ImageParams.from_dict(rest | known)
    except (ValueError, TypeError) as exc:
        raise MetadataError(f"The {STUDIO_KEY} text is not understood ({exc}).") from None
    return Recalled(params, "sd35-studio", tuple(notes))


def recall_from_prompt_graph(text: str) -> Recalled:
    """A ComfyUI API-format `prompt` graph."""
    graph = load_json(text, "The ComfyUI prompt graph")
    if not isinstance(graph, dict):
        raise MetadataError("The ComfyUI prompt graph is not a JSON object.")
    try:
        params, unmapped = params_from_comfy_prompt(graph)
    except _NOT_UNDERSTOOD as exc:
        raise MetadataError(f"The ComfyUI prompt graph is not understood ({_reason(exc)}).") from None
    return Recalled(params, "comfyui", unmapped)


def recall_from_workflow(workflow: str) -> Recalled:
    """Parameters from a UI-format ComfyUI workflow; raises MetadataError (WorkflowError) with a readable
    reason when it is not one, or has no sampler."""
    converted = prompt_from_workflow(workflow)
    try:
        params, unmapped = params_from_comfy_prompt(converted.prompt)
    except _NOT_UNDERSTOOD as exc:
        raise WorkflowError(f"The ComfyUI workflow is not understood ({_reason(exc)}).") from None
    notes = tuple(dict.fromkeys((*converted.notes, *unmapped)))
    return Recalled(params, "comfyui", notes)


def recall_from_infotext(text: str) -> Recalled:
    params, unmapped = params_from_infotext(text)
    source = "sd35-studio" if params.app_version is not None or "Version: SD3.5 Studio" in text else "a1111"
    return Recalled(params, source, unmapped, text)


# Order of trust; each reader raises MetadataError when its chunk cannot be used.
_READERS: tuple[tuple[str, Callable[[str], Recalled]], ...] = (
    (STUDIO_KEY, recall_from_studio_json),
    (PARAMETERS_KEY, recall_from_infotext),
    (COMFY_PROMPT_KEY, recall_from_prompt_graph),
    (COMFY_WORKFLOW_KEY, recall_from_workflow),
)
# What a graph walk raises on a graph that is valid JSON but not the shape it expects.
_NOT_UNDERSTOOD = (ValueError, TypeError, KeyError, AttributeError, IndexError, OverflowError)


def _reason(exc: BaseException) -> str:
    return str(exc) if isinstance(exc, ValueError) else f"{type(exc).__name__}: {exc}"


def read_metadata(path: Path) -> Recalled | None:
    """The parameters an image file carries, or None when it states none. Raises MetadataError (one sentence,
    without the file's name) when the file or its metadata cannot be read: cut off, not an image, too big,
    nested too deeply, or every source it carries damaged."""
    path = Path(path)
    if path.suffix.lower() == ".png":
        found = read_png_chunks(path)
        return recall_from_text(found.chunks, found.problems)
    comment = read_user_comment(path)
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
    if p.loras:
        out.extend(resolve_loras(p.loras, setup.lora_folders if setup is not None else ())[1])
    if not p.use_t5:
        out.append("Made without T5: keep T5 switched off to reproduce it.")
    if p.noise != "cpu":
        out.append(
            "The start noise was drawn on the GPU (A1111's default), so the same seed gives a different "
            "image here."
        )
    if p.seed is None:
        out.append("The image does not state its seed.")
    out.extend(controlnet_warnings(_controlnets_here(p.controlnets, setup)))
    return tuple(out)


def _controlnets_here(specs: tuple[ControlSpec, ...], setup: CurrentSetup | None) -> tuple[ControlSpec, ...]:
    """Recalled ControlNets with the files found here in place of names that are not files (A1111 and ComfyUI
    metadata name the file only), and a moved kept control image found again by its hash."""
    if not specs or setup is None:
        return specs
    specs = find_moved_control_images(specs, setup.control_image_folders)
    if not setup.controlnet_files:
        return specs
    return resolve_controlnet_files(specs, setup.controlnet_files)[0]


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
    request = p.to_request()
    if request.controlnets:
        request = replace(request, controlnets=_controlnets_here(request.controlnets, setup))
    return SettingsRecall(
        request, p, recalled.source, recalled.unmapped, reproduction_warnings(recalled, setup)
    )
