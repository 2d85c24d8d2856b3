"""Style presets (data in `app/resources/style_presets.json`) and size presets by aspect ratio. Qt-free.

A style preset wraps the user's prompt in tested wording and appends to the negative prompt. The wording is
applied when a job is built and shown to the user (in the panel and in the saved image's parameters); it is
never hidden.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

log = logging.getLogger(__name__)

PRESETS_RESOURCE = "style_presets.json"
PROMPT_SLOT = "{prompt}"
SIZE_MULTIPLE = 64  # every preset and every step of the size fields
MIN_SIDE = 64


@dataclass(frozen=True, slots=True)
class StylePreset:
    id: str
    label: str
    prompt: str = PROMPT_SLOT  # template; {prompt} is replaced by the user's text
    negative: str = ""

    @property
    def is_none(self) -> bool:
        return self.prompt.strip() == PROMPT_SLOT and not self.negative.strip()

    def apply(self, prompt: str, negative: str) -> tuple[str, str]:
        """The prompt and negative prompt the job will use."""
        prompt = prompt.strip()
        if PROMPT_SLOT in self.prompt:
            styled = self.prompt.replace(PROMPT_SLOT, prompt) if prompt else _without_slot(self.prompt)
        else:
            styled = ", ".join(p for p in (prompt, self.prompt.strip()) if p)
        negatives = [n for n in (negative.strip(), self.negative.strip()) if n]
        return styled.strip(), ", ".join(negatives)


NO_STYLE = StylePreset("none", "None")


def _without_slot(template: str) -> str:
    """A template applied to an empty prompt: drop the slot and the joining words around it."""
    text = template.replace(f" of {PROMPT_SLOT}", "").replace(PROMPT_SLOT, "")
    return ", ".join(part.strip() for part in text.split(",") if part.strip())


def _parse_presets(data: object, source: str) -> list[StylePreset]:
    if not isinstance(data, dict) or not isinstance(data.get("presets"), list):
        raise ValueError(f"{source}: expected an object with a 'presets' list")
    presets: list[StylePreset] = []
    seen: set[str] = set()
    for i, item in enumerate(data["presets"]):
        if (
            not isinstance(item, dict)
            or not isinstance(item.get("id"), str)
            or not isinstance(item.get("label"), str)
        ):
            raise ValueError(f"{source}: preset {i} needs string 'id' and 'label'")
        prompt, negative = item.get("prompt", PROMPT_SLOT), item.get("negative", "")
        if not isinstance(prompt, str) or not isinstance(negative, str):
            raise ValueError(f"{source}: preset {item['id']!r}: 'prompt' and 'negative' must be strings")
        if item["id"] in seen:
            raise ValueError(f"{source}: preset id {item['id']!r} appears twice")
        seen.add(item["id"])
        presets.append(StylePreset(item["id"], item["label"], prompt, negative))
    return presets


def packaged_presets_text() -> str:
    return resources.files("app.resources").joinpath(PRESETS_RESOURCE).read_text(encoding="utf-8")


def load_style_presets(user_file: Path | None = None) -> list[StylePreset]:
    """The user's edited presets when `user_file` exists and is valid, else the packaged ones; "None" first."""
    presets: list[StylePreset] | None = None
    if user_file is not None and user_file.is_file():
        try:
            presets = _parse_presets(json.loads(user_file.read_text(encoding="utf-8")), str(user_file))
        except (OSError, ValueError) as exc:  # json.JSONDecodeError is a ValueError
            log.warning("ignoring the edited style presets (%s); using the built-in ones", exc)
    if presets is None:
        presets = _parse_presets(json.loads(packaged_presets_text()), PRESETS_RESOURCE)
    if not any(p.id == NO_STYLE.id for p in presets):
        presets.insert(0, NO_STYLE)
    return presets


# ----------------------------------------------------------------------------------------------- sizes

# Aspect ratio label -> (width, height) at about 1 megapixel, multiples of 64 (SD35_SAMPLING.md §7.2).
ASPECT_SIZES_1MP: dict[str, tuple[int, int]] = {
    "1:1": (1024, 1024),
    "4:3": (1152, 896),
    "3:2": (1216, 832),
    "16:9": (1344, 768),
    "21:9": (1536, 640),
    "3:4": (896, 1152),
    "2:3": (832, 1216),
    "9:16": (768, 1344),
    "9:21": (640, 1536),
}
CUSTOM_ASPECT = "custom"


def snap_side(value: int, max_side: int) -> int:
    """Round to the nearest multiple of 64 and clamp to [64, max_side] (max_side rounded down to 64)."""
    top = max(MIN_SIDE, max_side // SIZE_MULTIPLE * SIZE_MULTIPLE)
    snapped = math.floor(value / SIZE_MULTIPLE + 0.5) * SIZE_MULTIPLE
    return min(top, max(MIN_SIDE, snapped))


def aspect_size(aspect: str, max_side: int, megapixels: float = 1.0) -> tuple[int, int]:
    """The preset size of `aspect` scaled to `megapixels`, shrunk (keeping the ratio) to fit `max_side`."""
    w, h = ASPECT_SIZES_1MP[aspect]
    scale = math.sqrt(megapixels)
    longest = max(w, h) * scale
    if longest > max_side:
        scale *= max_side / longest
    return snap_side(round(w * scale), max_side), snap_side(round(h * scale), max_side)


def aspect_of(width: int, height: int, max_side: int) -> str:
    """The preset label whose size equals (width, height) under `max_side`, else "custom"."""
    for label in ASPECT_SIZES_1MP:
        if aspect_size(label, max_side) == (width, height):
            return label
    return CUSTOM_ASPECT
