"""ControlNet requests, torch-free: which ControlNet file, which control image, how strongly and when.

A `GenerationRequest` carries a tuple of `ControlSpec`s (SD35_ADDONS.md §2): each ControlNet's outputs are
multiplied by its strength and added to the MMDiT's image tokens while the sampling progress is within
[start, end] (ComfyUI's `start_percent` / `end_percent`); several ControlNets add up.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from app.inference.api.errors import InvalidRequestError

CONTROL_TYPES = ("blur", "canny", "depth")  # the official SD3.5 Large ControlNets, by their `control_type`
PREPROCESSORS = ("none", "blur", "canny", "depth")
DEFAULT_BLUR_RADIUS = 8.0  # px at the generation size: keeps the layout, drops the detail (tile/upscale use)
DEFAULT_CANNY_LOW = 100  # hysteresis thresholds on the 0..255 gradient magnitude (OpenCV's convention)
DEFAULT_CANNY_HIGH = 200
MAX_STRENGTH = 10.0  # ComfyUI's limit on `strength`
CANNY_MAX = 8 * 255  # the largest L1 Sobel gradient (|gx| + |gy|) of 0..255 grey levels


@dataclass(frozen=True, slots=True)
class ControlPreprocess:
    """How the control image becomes the control map before encoding.

    none   the image already is the map (an edge map, a blurred image, a depth map)
    blur   Gaussian blur with `blur_radius` (sigma, in pixels of the generation size)
    canny  Canny edges with hysteresis thresholds `canny_low` < `canny_high` (0..255 gradient scale)
    depth  a depth map supplied by the user, as grey levels; `invert` flips near and far
    """

    kind: str = "none"
    blur_radius: float = DEFAULT_BLUR_RADIUS
    canny_low: float = DEFAULT_CANNY_LOW
    canny_high: float = DEFAULT_CANNY_HIGH
    invert: bool = False

    def validated(self) -> ControlPreprocess:
        if self.kind not in PREPROCESSORS:
            raise InvalidRequestError(
                f"unknown control preprocessing {self.kind!r}; choose from {', '.join(PREPROCESSORS)}"
            )
        if not (math.isfinite(self.blur_radius) and 0 < self.blur_radius <= 256):
            raise InvalidRequestError(f"blur radius must be in (0, 256] px, not {self.blur_radius}")
        if not (0 <= self.canny_low < self.canny_high <= CANNY_MAX):
            raise InvalidRequestError(
                f"canny thresholds need 0 <= low < high, got low {self.canny_low} and high {self.canny_high}"
            )
        return self

    def describe(self) -> str:
        """Short words for metadata: `canny 100/200`, `blur r=8`, `depth inverted`, `none`."""
        if self.kind == "blur":
            return f"blur r={self.blur_radius:g}"
        if self.kind == "canny":
            return f"canny {self.canny_low:g}/{self.canny_high:g}"
        if self.kind == "depth":
            return "depth inverted" if self.invert else "depth"
        return "none"


@dataclass(frozen=True, slots=True)
class ControlSpec:
    """One ControlNet of a job. `control_type` None: the type the file declares (its `control_type` tensor)."""

    file: Path
    image: Path
    strength: float = 1.0
    start: float = 0.0  # fraction of the sampling progress where it starts acting (0 = the first step)
    end: float = 1.0  # fraction where it stops (1 = the last step)
    control_type: str | None = None
    preprocess: ControlPreprocess = ControlPreprocess()
    # SHA-256 of the ControlNet file and of the control image, for metadata (app/metadata/controlnet_meta.py)
    file_hash: str | None = field(default=None, compare=False)
    image_hash: str | None = field(default=None, compare=False)

    def validated(self) -> ControlSpec:
        """Raise InvalidRequestError with one sentence for a value out of range; return self."""
        if self.control_type is not None and self.control_type not in CONTROL_TYPES:
            raise InvalidRequestError(
                f"unknown ControlNet type {self.control_type!r}; choose from {', '.join(CONTROL_TYPES)}"
            )
        if not (math.isfinite(self.strength) and 0 <= self.strength <= MAX_STRENGTH):
            raise InvalidRequestError(
                f"ControlNet strength must be between 0 and {MAX_STRENGTH:g}, not {self.strength}"
            )
        if not (0 <= self.start <= self.end <= 1):
            raise InvalidRequestError(
                f"ControlNet start and end must satisfy 0 <= start <= end <= 1, got {self.start} and {self.end}"
            )
        self.preprocess.validated()
        return self


def validate_controlnets(specs: tuple[ControlSpec, ...]) -> tuple[ControlSpec, ...]:
    """Every spec checked (the request's `_validated` calls this)."""
    if not isinstance(specs, tuple):
        raise InvalidRequestError("controlnets must be a tuple of ControlSpec")
    return tuple(s.validated() for s in specs)
