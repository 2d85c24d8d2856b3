"""The one input of a generation job: a frozen request, resolved against the variant's defaults and validated."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field, replace
from pathlib import Path

from app.inference.api.control import ControlSpec, validate_controlnets
from app.inference.api.errors import InvalidRequestError
from app.inference.api.lora import LoraSpec
from app.inference.api.variants import PRESETS
from app.inference.networks.mmdit_config import MMDiTConfig

log = logging.getLogger(__name__)

SAMPLER_NAMES = ("euler", "dpmpp_2m", "euler_ancestral")
SCHEDULER_NAMES = ("normal", "simple", "sgm_uniform", "beta")
TEXT_MODES = ("full", "reference")
SIZE_STEP = 16  # VAE factor 8 x patch size 2
MAX_SEED = 2**64 - 1
MAX_MASK_PX = 256  # mask grow and blur
MAX_OUTPAINT_PX = 4096  # per side
MAX_HIRES_SCALE = 4.0


@dataclass(frozen=True, slots=True)
class GenerationRequest:
    """Everything that determines the images of one job. `None` means "the variant's default"."""

    prompt: str
    negative: str = ""
    seed: int = 0
    count: int = 1
    steps: int | None = None
    cfg: float | None = None
    sampler: str | None = None
    scheduler: str | None = None
    width: int | None = None
    height: int | None = None
    shift: float | None = None
    slg_layers: tuple[int, ...] | None = None
    slg_scale: float | None = None
    slg_start: float | None = None
    slg_end: float | None = None
    negative_until: float | None = None
    init_image: Path | None = None
    denoise: float = 1.0
    use_t5: bool = True
    text_mode: str = "full"
    warnings: tuple[str, ...] = field(default=(), compare=False)
    loras: tuple[LoraSpec, ...] = ()  # applied in this order; strengths checked by `resolved`
    # Refine (img2img with a mask, outpainting, hires fix): SD35_ADDONS.md section 3. A mask has the init image's
    # size; a grey one regenerates where it is white, one with transparency where it is transparent (1 - alpha).
    mask_image: Path | None = None
    mask_grow: int = 6  # px the mask grows before sampling (ComfyUI's GrowMask default)
    mask_blur: int = 8  # px of feather on the final pixel composite
    outpaint: tuple[int, int, int, int] = (0, 0, 0, 0)  # px added (left, top, right, bottom)
    hires_scale: float = 1.0  # 1 = no hires pass
    hires_denoise: float = 0.4
    hires_steps: int | None = None  # None = the same as steps

    controlnets: tuple[ControlSpec, ...] = ()  # ControlNets and their control images (api/control.py)

    def resolved(self, variant: str, config: MMDiTConfig | None = None) -> GenerationRequest:
        """Fill defaults from the variant's preset and validate everything; sizes are rounded to 16 px."""
        p = PRESETS[variant]
        r = replace(
            self,
            steps=p.steps if self.steps is None else self.steps,
            cfg=p.cfg if self.cfg is None else self.cfg,
            sampler=p.sampler if self.sampler is None else self.sampler,
            scheduler=p.scheduler if self.scheduler is None else self.scheduler,
            width=p.width if self.width is None else self.width,
            height=p.height if self.height is None else self.height,
            shift=p.shift if self.shift is None else self.shift,
            slg_layers=p.slg_layers if self.slg_layers is None else self.slg_layers,
            slg_scale=p.slg_scale if self.slg_scale is None else self.slg_scale,
            slg_start=p.slg_start if self.slg_start is None else self.slg_start,
            slg_end=p.slg_end if self.slg_end is None else self.slg_end,
        )
        return r._validated(config)

    def _validated(self, config: MMDiTConfig | None) -> GenerationRequest:
        if self.sampler not in SAMPLER_NAMES:
            raise InvalidRequestError(
                f"unknown sampler {self.sampler!r}; choose from {', '.join(SAMPLER_NAMES)}"
            )
        if self.scheduler not in SCHEDULER_NAMES:
            raise InvalidRequestError(
                f"unknown scheduler {self.scheduler!r}; choose from {', '.join(SCHEDULER_NAMES)}"
            )
        if self.text_mode not in TEXT_MODES:
            raise InvalidRequestError(
                f"unknown text mode {self.text_mode!r}; choose from {', '.join(TEXT_MODES)}"
            )
        if not 1 <= self.steps <= 1000:
            raise InvalidRequestError(f"steps must be between 1 and 1000, not {self.steps}")
        if not (math.isfinite(self.cfg) and 0 <= self.cfg <= 100):
            raise InvalidRequestError(f"CFG must be between 0 and 100, not {self.cfg}")
        if not (math.isfinite(self.shift) and self.shift > 0):
            raise InvalidRequestError(f"shift must be positive, not {self.shift}")
        if not 0 <= self.seed <= MAX_SEED:
            raise InvalidRequestError(f"seed must be between 0 and 2^64-1, not {self.seed}")
        if not 1 <= self.count <= 1000 or self.seed + self.count - 1 > MAX_SEED:
            raise InvalidRequestError(f"image count {self.count} is out of range")
        if not 0 < self.denoise <= 1:
            raise InvalidRequestError(f"denoise strength must be in (0, 1], not {self.denoise}")
        if self.negative_until is not None and not 0 <= self.negative_until <= 1:
            raise InvalidRequestError(
                f"--negative-until must be a fraction in [0, 1], not {self.negative_until}"
            )
        if not 0 <= self.slg_start <= self.slg_end <= 1:
            raise InvalidRequestError("skip-layer guidance needs 0 <= start <= end <= 1")
        if config is not None:
            bad = [i for i in self.slg_layers if not 0 <= i < config.depth]
            if bad and self.slg_scale > 0:
                raise InvalidRequestError(
                    f"skip-layer guidance layer(s) {bad} do not exist: the model has {config.depth} blocks"
                )

        for lora in self.loras:
            lora.checked()
        validate_controlnets(self.controlnets)
        warnings = list(self.warnings)
        sizes = []
        for label, value in (("width", self.width), ("height", self.height)):
            if value <= 0:
                raise InvalidRequestError(f"{label} must be positive, not {value}")
            rounded = max(SIZE_STEP, math.floor(value / SIZE_STEP + 0.5) * SIZE_STEP)  # half rounds up
            if rounded != value:
                warnings.append(f"{label} {value} is not a multiple of {SIZE_STEP}; using {rounded}")
            if config is not None and rounded > config.max_image_side:
                raise InvalidRequestError(
                    f"{label} {rounded} px is larger than this model supports ({config.max_image_side} px per side)"
                )
            sizes.append(rounded)
        out = replace(self, width=sizes[0], height=sizes[1], warnings=tuple(warnings))
        out._validate_refine(config)
        return out

    @property
    def hires(self) -> bool:
        return self.hires_scale != 1.0

    @property
    def inpaints(self) -> bool:
        """True when sampling is masked: a mask was given or the canvas is extended."""
        return self.mask_image is not None or any(self.outpaint)

    def _validate_refine(self, config: MMDiTConfig | None) -> None:
        """The refine fields' ranges; the mask file itself is read (and checked) by the job."""
        if (self.mask_image is not None or any(self.outpaint)) and self.init_image is None:
            what = "a mask" if self.mask_image is not None else "outpainting"
            raise InvalidRequestError(f"{what} needs an init image")
        for label, value in (("mask grow", self.mask_grow), ("mask blur", self.mask_blur)):
            if not 0 <= value <= MAX_MASK_PX:
                raise InvalidRequestError(f"{label} must be between 0 and {MAX_MASK_PX} px, not {value}")
        if len(self.outpaint) != 4 or not all(0 <= v <= MAX_OUTPAINT_PX for v in self.outpaint):
            raise InvalidRequestError(
                f"outpaint needs four sizes (left, top, right, bottom) from 0 to {MAX_OUTPAINT_PX} px"
            )
        if not (math.isfinite(self.hires_scale) and 1 <= self.hires_scale <= MAX_HIRES_SCALE):
            raise InvalidRequestError(
                f"hires scale must be between 1 and {MAX_HIRES_SCALE:g}, not {self.hires_scale}"
            )
        if not (math.isfinite(self.hires_denoise) and 0 < self.hires_denoise <= 1):
            raise InvalidRequestError(f"hires denoise must be in (0, 1], not {self.hires_denoise}")
        if self.hires_steps is not None and not 1 <= self.hires_steps <= 1000:
            raise InvalidRequestError(f"hires steps must be between 1 and 1000, not {self.hires_steps}")
        if self.hires and config is not None:
            for label, value in (("width", self.width), ("height", self.height)):
                side = hires_side(value, self.hires_scale)
                if side > config.max_image_side:
                    raise InvalidRequestError(
                        f"the hires {label} {side} px is larger than this model supports "
                        f"({config.max_image_side} px per side); lower the hires scale"
                    )


def hires_side(side: int, scale: float) -> int:
    """The hires pass's size of one side: side x scale, rounded to a multiple of 16 px (half rounds up)."""
    return max(SIZE_STEP, math.floor(side * scale / SIZE_STEP + 0.5) * SIZE_STEP)
