"""The type of every parameter an image can state, checked when it is read, before it becomes ImageParams.

Readers of our JSON, A1111's infotext and ComfyUI's graphs hand their values here as a plain dict. A value of
the wrong type, a seed outside 0..2^64-1, a number that is not finite or does not fit the gallery's 64-bit
columns is left out (the variant's default applies) with a note saying which field and why, so the rest of
the image's settings stay usable and nothing fails later in the gallery or the form.
"""

from __future__ import annotations

import logging
import math

from app.inference.api.request import MAX_SEED

log = logging.getLogger(__name__)

_INT64 = 1 << 63
_MAX_LAYERS = 1000

# field → kind; fields not listed are not checked (they are kept as they are by the caller, or unknown)
FIELD_KINDS: dict[str, str] = {
    "prompt": "str",
    "negative": "str",
    "seed": "seed",
    "steps": "int",
    "cfg": "float",
    "sampler": "str",
    "scheduler": "str",
    "width": "int",
    "height": "int",
    "shift": "float",
    "slg_layers": "layers",
    "slg_scale": "float",
    "slg_start": "float",
    "slg_end": "float",
    "negative_until": "float",
    "denoise": "float",
    "init_image": "str",
    "use_t5": "bool",
    "text_mode": "str",
    "variant": "str",
    "model_name": "str",
    "model_hash": "str",
    "fp8": "bool",
    "noise": "str",
    "app_version": "str",
    "mask_image": "str",
    "mask_grow": "int",
    "mask_blur": "int",
    "outpaint": "sides",
    "hires_scale": "float",
    "hires_denoise": "float",
    "hires_steps": "int",
    "source_sha256": "str",
    "mask_alpha": "bool",
    "mask_soft": "bool",
}


def checked_fields(values: dict[str, object]) -> tuple[dict[str, object], list[str]]:
    """(the values that have the right type, converted where lossless; a note for each one left out).
    A `None` value is left out silently: it means "not stated"."""
    out: dict[str, object] = {}
    notes: list[str] = []
    for name, value in values.items():
        kind = FIELD_KINDS.get(name)
        if value is None:
            continue
        if kind is None:
            out[name] = value
            continue
        checked, problem = _check(kind, value)
        if problem is None:
            out[name] = checked
        else:
            notes.append(f"{name}: {_show(value)} {problem}; left out")
    return out, notes


def _check(kind: str, value: object) -> tuple[object, str | None]:
    if kind == "str":
        return (value, None) if isinstance(value, str) else (None, "is not text")
    if kind == "bool":
        return (value, None) if isinstance(value, bool) else (None, "is not true or false")
    if kind in ("int", "seed"):
        number = _whole(value)
        if number is None:
            return None, "is not a whole number"
        if kind == "seed":  # unsigned 64 bits (the gallery stores it as two's complement)
            return (number, None) if 0 <= number <= MAX_SEED else (None, "is not a seed (0 to 2^64-1)")
        if not -_INT64 <= number < _INT64:
            return None, "is out of range"
        return number, None
    if kind == "float":
        if isinstance(value, bool) or not isinstance(value, int | float):
            return None, "is not a number"
        try:
            number = float(value)
        except OverflowError:
            return None, "is out of range"
        return (number, None) if math.isfinite(number) else (None, "is not a finite number")
    if kind == "layers":
        if not isinstance(value, list | tuple) or len(value) > _MAX_LAYERS:
            return None, "is not a list of layer numbers"
        layers = [_whole(v) for v in value]
        if any(v is None or not 0 <= v < _MAX_LAYERS for v in layers):
            return None, "is not a list of layer numbers"
        return tuple(layers), None
    if kind == "sides":  # outpaint: (left, top, right, bottom) px
        sides = [_whole(v) for v in value] if isinstance(value, list | tuple) and len(value) == 4 else None
        if sides is None or any(v is None or not 0 <= v < _INT64 for v in sides):
            return None, "is not four sizes (left, top, right, bottom)"
        return tuple(sides), None
    raise AssertionError(f"unknown field kind {kind}")


def _whole(value: object) -> int | None:
    """An int, or a float with no fraction (20.0 → 20); None for anything else (bools, text, 2.5, NaN)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    return None


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "…"
