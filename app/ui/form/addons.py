"""LoRAs and ControlNets of the form, Qt-free and torch-free: the discovered files as the panels show them, and the
checks and prompt-tag resolution `GenerationFormState` runs before a job is built.

Discovery itself (`app.inference.lora.discovery`, `app.inference.control.discovery`) reads headers with torch's
safetensors helpers, so `discover_loras` / `discover_controlnets` import it lazily: they run on the window's I/O
thread, never on the UI thread.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path

from app.inference.api.control import ControlSpec
from app.inference.api.errors import InvalidRequestError
from app.inference.api.lora import LoraSpec, split_prompt_loras

log = logging.getLogger(__name__)

CONTROLNET_VARIANTS = (
    "large",
    "large-turbo",
)  # the official SD3.5 ControlNets are for Large (SD35_ADDONS §2)
# The model card's settings for the SD3.5 Large ControlNets: offered by a button, never applied by themselves.
CONTROLNET_RECOMMENDED = {"sampler": "euler", "steps": 60, "cfg": 3.5}
FAMILY_BADGES = {
    "sd3.5-large": "Large",
    "sd3.5-medium": "Medium",
    "sd3": "SD3",
    "flux": "FLUX",
    "sdxl": "SDXL",
}


@dataclass(frozen=True, slots=True)
class LoraInfo:
    """One discovered LoRA file as the panel shows it."""

    path: Path
    name: str  # the file name without `.safetensors` (what `<lora:name>` names)
    title: str = ""
    badge: str = "?"  # short base-model word for the list ("Large", "Medium", "FLUX", …)
    architecture: str = ""  # the long words ("SD3.5 Large"), for the tooltip
    fits: dict[str, str | None] = field(default_factory=dict)  # "large"/"medium" -> None or why not
    error: str | None = None
    trigger_words: tuple[str, ...] = ()
    preview: Path | None = None
    rank: int | None = None

    def usable_with(self, variant: str) -> str | None:
        """None when the LoRA can be used with `variant`, else the sentence saying why not."""
        if self.error:
            return self.error
        return self.fits.get("medium" if variant == "medium" else "large")


@dataclass(frozen=True, slots=True)
class LoraCatalog:
    """What a LoRA folder scan found. `scanned` False: the scan has not finished (tags cannot be resolved yet)."""

    entries: tuple[LoraInfo, ...] = ()
    scanned: bool = False

    def find(self, name: str) -> LoraInfo | None:
        """The entry `<lora:name>` means: its file name (without extension), else its title; case-insensitive."""
        lowered = name.strip().lower()
        for entry in self.entries:
            if entry.name.lower() == lowered:
                return entry
        return next((e for e in self.entries if e.title.lower() == lowered), None)

    def by_path(self, path: Path) -> LoraInfo | None:
        return next((e for e in self.entries if e.path == path), None)

    def matching(self, text: str) -> tuple[LoraInfo, ...]:
        """Entries whose name, title, base model or trigger words contain every word of `text`."""
        words = text.lower().split()
        return tuple(
            e
            for e in self.entries
            if all(
                w in " ".join((e.name, e.title, e.badge, e.architecture, *e.trigger_words)).lower()
                for w in words
            )
        )


@dataclass(frozen=True, slots=True)
class ControlNetInfo:
    """One discovered ControlNet file: its declared type ("canny", …) or why it cannot be used."""

    path: Path
    control_type: str | None = None
    error: str | None = None

    @property
    def label(self) -> str:
        kind = f" ({self.control_type})" if self.control_type else ""
        return f"{self.path.name}{kind}"


# ----------------------------------------------------------------------------------------------------
# discovery (run on the I/O thread)
# ----------------------------------------------------------------------------------------------------


def discover_loras(folders: Iterable[Path], defaults: bool = True) -> LoraCatalog:
    """Scan the user's LoRA folders and, with `defaults`, ComfyUI's and the Hugging Face cache (headers only)."""
    from app.inference.lora.discovery import (
        scan_loras,  # reads headers with torch's helpers: not on the UI thread
    )

    scan = scan_loras([Path(f) for f in folders], defaults=defaults)
    infos = []
    for e in scan.entries:
        arch = e.architecture
        badge = FAMILY_BADGES.get(arch.family, arch.label) if arch else "?"
        label = arch.label if arch else ""
        info = LoraInfo(
            e.path, e.name, e.title or e.name, badge, label, dict(e.fits), e.error, e.trigger_words, e.preview, e.rank
        )  # fmt: skip
        infos.append(info)
    return LoraCatalog(tuple(infos), scanned=True)


def discover_controlnets(folders: Iterable[Path], defaults: bool = True) -> tuple[ControlNetInfo, ...]:
    from app.inference.checkpoints.controlnet_discovery import find_controlnets  # torch: not on the UI thread

    found = find_controlnets(folders, defaults=defaults)
    return tuple(
        ControlNetInfo(e.path, e.control_type, e.error)
        for e in sorted(found, key=lambda e: (e.path.name.lower(), str(e.path)))
    )


# ----------------------------------------------------------------------------------------------------
# checks and the request's LoRA set
# ----------------------------------------------------------------------------------------------------


def prompt_loras(
    prompt: str, panel: tuple[LoraSpec, ...], catalog: LoraCatalog
) -> tuple[str, tuple[LoraSpec, ...]]:
    """(the prompt without `<lora:…>` tags, the panel's LoRAs followed by the tags' LoRAs). Raises ValueError with
    a sentence for a tag the LoRA folders do not have, a strength that is not a number, or a LoRA named twice."""
    try:
        text, tags = split_prompt_loras(prompt)
    except InvalidRequestError as exc:
        raise ValueError(f"Prompt: {exc}.") from None
    if not tags:
        return prompt, panel
    if not catalog.scanned:
        raise ValueError(
            "Still looking through the LoRA folders for the prompt's <lora:…> tags; try again soon."
        )
    out = list(panel)
    for tag in tags:
        entry = catalog.find(tag.name)
        if entry is None:
            raise ValueError(
                f"Prompt: no LoRA named “{tag.name}” in the LoRA folders — check the name, or add its folder "
                "in the LoRA panel."
            )
        if any(spec.path == entry.path for spec in out):
            raise ValueError(f"LoRA {entry.name} is added twice (panel or prompt); keep one of them.")
        out.append(LoraSpec(entry.path, tag.strength, tag.te_strength))
    return text, tuple(out)


def lora_problems(
    prompt: str, panel: tuple[LoraSpec, ...], catalog: LoraCatalog, variant: str
) -> dict[str, str]:
    """Why the LoRA set cannot be sent with this model (shown before Generate): {"loras": sentence}."""
    try:
        _, specs = prompt_loras(prompt, panel, catalog)
    except ValueError as exc:
        return {"loras": str(exc)}
    for spec in specs:
        try:
            spec.checked()
        except InvalidRequestError as exc:
            return {"loras": f"{exc}."}
        entry = catalog.by_path(spec.path)
        reason = entry.usable_with(variant) if entry is not None else None
        if reason:
            return {"loras": f"LoRA {spec.name}: {reason}."}
    return {}


def controlnet_problems(controlnets: tuple[ControlSpec, ...], variant: str) -> dict[str, str]:
    """Medium has no ControlNet (the engine refuses it too); each ControlNet needs its control image."""
    if not controlnets:
        return {}
    if variant not in CONTROLNET_VARIANTS:
        return {
            "controlnets": "ControlNet: the official SD3.5 ControlNets are for SD3.5 Large; the selected model is "
            "SD3.5 Medium — choose a Large model or remove the ControlNet."
        }
    for spec in controlnets:
        try:
            spec.validated()
        except InvalidRequestError as exc:
            return {"controlnets": f"ControlNet: {exc}."}
    return {}


def recalled_loras(loras: tuple[LoraSpec, ...], catalog: LoraCatalog) -> tuple[LoraSpec, ...]:
    """A recalled image's LoRAs that exist here: its path, else the discovered LoRA of the same name. Missing
    ones are left out (recall's warnings say so), so Generate does not fail on a file that is not there."""
    out = []
    for recalled in loras:
        spec = replace(
            recalled, sha256=None, short_hash=None
        )  # the image's hashes: the engine hashes the file here
        if spec.path.is_file():
            out.append(spec)
        elif (entry := catalog.find(spec.name)) is not None:
            out.append(replace(spec, path=entry.path))
        else:
            log.info("recalled LoRA %s is not here; left out", spec.path)
    return tuple(out)


def lora_from_dict(data: object) -> LoraSpec | None:
    """A saved LoRA entry of the form (file + strengths), None when it cannot be read."""
    try:
        return LoraSpec.from_dict(data).checked()
    except (ValueError, TypeError, InvalidRequestError):
        log.warning("dropping saved LoRA %r", data)
        return None
