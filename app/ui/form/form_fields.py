"""The form's fields as data: their values, allowed choices and ranges, and how a typed value is made valid.

Qt-free. `coerce` turns any value into a valid one for its field; `adjustment_note` says, in one sentence, why a
value the user typed was changed, so that the form can show the change instead of making it silently.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from app.inference.api.request import (
    MAX_HIRES_SCALE,
    MAX_MASK_PX,
    MAX_OUTPAINT_PX,
    MAX_SEED,
    SAMPLER_NAMES,
    SCHEDULER_NAMES,
)
from app.inference.memory.plan import PLAN_NAMES
from app.ui.form.presets import ASPECT_SIZES_1MP, CUSTOM_ASPECT, MIN_SIDE, NO_STYLE, SIZE_MULTIPLE

MAX_IMAGES = 16
DEVICES = ("auto", "cpu", "cuda", "mps")
PRECISIONS = ("auto", "float32", "bfloat16", "float16")
PREVIEW_DECODERS = ("auto", "taesd", "linear", "off")
REFINE_MODES = ("generate", "img2img", "inpaint", "outpaint")
OUTPAINT_FIELDS = ("outpaint_left", "outpaint_top", "outpaint_right", "outpaint_bottom")
MEMORY_PLANS = ("auto", *(p for p in PLAN_NAMES if p != "no-t5"))  # T5 has its own switch in the form


@dataclass(frozen=True, slots=True)
class FormValues:
    """Every control of the form. Defaults are SD3.5 Large's (the picker's first variant)."""

    prompt: str = ""
    negative: str = ""
    style: str = NO_STYLE.id
    steps: int = 28
    cfg: float = 3.5
    sampler: str = "dpmpp_2m"
    scheduler: str = "normal"
    aspect: str = "1:1"
    width: int = 1024
    height: int = 1024
    seed: int = 0
    random_seed: bool = True
    count: int = 1
    shift: float = 3.0
    slg_enabled: bool = False
    slg_scale: float = 2.5
    slg_layers: str = "7,8,9"
    slg_start: float = 0.01
    slg_end: float = 0.20
    negative_window: bool = False
    negative_until: float = 0.1
    use_t5: bool = True
    preview: str = "auto"
    preview_every: int = 1
    memory_plan: str = "auto"
    device: str = "auto"
    precision: str = "auto"
    # Refine (image to image, inpaint, outpaint, hires fix): app/ui/refine. Sides are px added to the input.
    refine_mode: str = "generate"
    init_image: str = ""  # path of the input image; "" = none chosen
    denoise: float = 0.6
    mask_grow: int = 6
    mask_blur: int = 8
    outpaint_left: int = 0
    outpaint_top: int = 0
    outpaint_right: int = 0
    outpaint_bottom: int = 0
    hires_enabled: bool = False
    hires_scale: float = 1.5
    hires_denoise: float = 0.4
    hires_steps: int = 0  # 0 = as many as the first pass
    # The engine (Settings ▸ Engines): "" = this machine; else the ComfyUI servers' URLs (comma-separated, in
    # priority order) and the checkpoint name they list, as chosen in the model picker.
    engine: str = ""
    remote_model: str = ""


CHOICES: dict[str, tuple[str, ...]] = {
    "sampler": SAMPLER_NAMES,
    "scheduler": SCHEDULER_NAMES,
    "aspect": (*ASPECT_SIZES_1MP, CUSTOM_ASPECT),
    "preview": PREVIEW_DECODERS,
    "memory_plan": MEMORY_PLANS,
    "device": DEVICES,
    "precision": PRECISIONS,
    "refine_mode": REFINE_MODES,
}
RANGES: dict[str, tuple[float, float]] = {
    "steps": (1, 150),
    "cfg": (1.0, 20.0),
    "width": (MIN_SIDE, 6144),
    "height": (MIN_SIDE, 6144),
    "seed": (0, MAX_SEED),
    "count": (1, MAX_IMAGES),
    "shift": (0.5, 12.0),
    "slg_scale": (0.0, 10.0),
    "slg_start": (0.0, 1.0),
    "slg_end": (0.0, 1.0),
    "negative_until": (0.0, 1.0),
    "preview_every": (1, 50),
    "denoise": (0.01, 1.0),
    "mask_grow": (0, MAX_MASK_PX),
    "mask_blur": (0, MAX_MASK_PX),
    **dict.fromkeys(OUTPAINT_FIELDS, (0, MAX_OUTPAINT_PX)),
    "hires_scale": (1.0, MAX_HIRES_SCALE),
    "hires_denoise": (0.01, 1.0),
    "hires_steps": (0, 150),
}
# How the notes name each number field (the words of its label in the form).
LABELS: dict[str, str] = {
    "steps": "Steps",
    "cfg": "CFG",
    "width": "Width",
    "height": "Height",
    "seed": "Seed",
    "count": "Images",
    "shift": "Shift",
    "slg_scale": "Skip-layer scale",
    "slg_start": "Skip-layer start",
    "slg_end": "Skip-layer end",
    "negative_until": "Negative window",
    "preview_every": "Preview interval",
    "denoise": "Denoise",
    "mask_grow": "Mask grow",
    "mask_blur": "Mask blur",
    "outpaint_left": "Extend left",
    "outpaint_top": "Extend top",
    "outpaint_right": "Extend right",
    "outpaint_bottom": "Extend bottom",
    "hires_scale": "Hires scale",
    "hires_denoise": "Hires denoise",
    "hires_steps": "Hires steps",
}
SIZE_FIELDS = ("width", "height")


def coerce(name: str, value: object, fallback: object) -> object:
    """`value` converted to the field's type and range; `fallback` when it cannot be."""
    kind = type(fallback)
    try:
        if kind is bool:
            if not isinstance(value, bool):
                return fallback
            out: object = value
        elif kind is int:
            if isinstance(value, bool) or not isinstance(value, (int, float, str)):
                return fallback
            out = int(value)
        elif kind is float:
            if isinstance(value, bool) or not isinstance(value, (int, float, str)):
                return fallback
            out = float(value)
            if not math.isfinite(out):
                return fallback
        else:
            if not isinstance(value, str):
                return fallback
            out = value
    except (TypeError, ValueError, OverflowError):
        return fallback
    if name in CHOICES and out not in CHOICES[name]:
        return fallback
    if name in RANGES:
        lo, hi = RANGES[name]
        out = min(max(out, kind(lo)), kind(hi))  # type: ignore[operator]
    return out


def _number(value: float) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def adjustment_note(name: str, typed: object, used: object, max_side: int) -> str:
    """Why the typed value of a number field became `used` ("" when it was used as typed)."""
    if not isinstance(typed, (int, float)) or isinstance(typed, bool) or typed == used:
        return ""
    label = LABELS.get(name, name)
    if name in SIZE_FIELDS:
        top = max(MIN_SIDE, max_side // SIZE_MULTIPLE * SIZE_MULTIPLE)
        if typed > top:
            return f"{label} {_number(typed)} → {used}: this model makes at most {top} px per side."
        if typed < MIN_SIDE:
            return f"{label} {_number(typed)} → {used}: the smallest side is {MIN_SIDE} px."
        return f"{label} {_number(typed)} → {used}: sizes are multiples of {SIZE_MULTIPLE} px."
    if name in RANGES:
        lo, hi = RANGES[name]
        return f"{label} {_number(typed)} → {_number(used)}: allowed from {_number(lo)} to {_number(hi)}."
    return f"{label} {_number(typed)} → {_number(used)}."


def parse_seed(text: str) -> int:
    """A typed seed; raises ValueError with a sentence for the user (never drops characters silently)."""
    text = text.strip()
    if not text:
        raise ValueError("Seed: type a whole number, or turn on the dice for a random seed each time.")
    if not (text.isascii() and text.isdigit()):
        raise ValueError(f"Seed: “{text}” is not a whole number.")
    seed = int(text)
    if seed > MAX_SEED:
        raise ValueError(f"Seed: {text} is too large; seeds go from 0 to {MAX_SEED}.")
    return seed


def parse_layers(text: str) -> tuple[int, ...]:
    """`"7, 8,9"` -> (7, 8, 9); raises ValueError with a message for the user."""
    parts = [p.strip() for p in text.replace(" ", ",").split(",") if p.strip()]
    try:
        layers = tuple(int(p) for p in parts)
    except ValueError:
        raise ValueError(f"Skip-layer guidance layers must be numbers like 7,8,9, not “{text}”.") from None
    if any(n < 0 for n in layers):
        raise ValueError("Skip-layer guidance layers cannot be negative.")
    return layers


def layers_text(layers: tuple[int, ...]) -> str:
    return ",".join(map(str, layers))
