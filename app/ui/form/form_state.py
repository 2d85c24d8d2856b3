"""The generation form as plain Python: values, variant defaults, pinned values, seeds, and the job it builds.

No Qt here: the panel widgets write into `GenerationFormState` and redraw from it, and tests drive it without a
screen. `app.inference.api.request` and `app.inference.api.variants` are torch-free, so importing them keeps the UI
thread free of torch.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, fields, replace

from app.inference.api.request import MAX_SEED, SAMPLER_NAMES, SCHEDULER_NAMES, GenerationRequest
from app.inference.api.variants import PRESETS, VARIANTS
from app.inference.memory.plan import PLAN_NAMES
from app.ui.form.presets import ASPECT_SIZES_1MP, CUSTOM_ASPECT, NO_STYLE, StylePreset, aspect_size, snap_side

log = logging.getLogger(__name__)

# Largest side each variant supports when no checkpoint says otherwise (16 px x pos_embed_max_size).
VARIANT_MAX_SIDE = {"large": 3072, "large-turbo": 3072, "medium": 6144}
RANDOM_SEED_LIMIT = 2**32  # random seeds stay short enough to read and type
MAX_IMAGES = 16
DEVICES = ("auto", "cpu", "cuda", "mps")
PRECISIONS = ("auto", "float32", "bfloat16", "float16")
PREVIEW_DECODERS = ("auto", "taesd", "linear", "off")
MEMORY_PLANS = ("auto", *(p for p in PLAN_NAMES if p != "no-t5"))  # T5 has its own switch in the form

# Values a variant switch may change, grouped as the user pins them.
PIN_GROUPS: dict[str, tuple[str, ...]] = {
    "steps": ("steps",),
    "cfg": ("cfg",),
    "sampler": ("sampler",),
    "scheduler": ("scheduler",),
    "shift": ("shift",),
    "size": ("aspect", "width", "height"),
    "slg": ("slg_enabled", "slg_scale", "slg_layers", "slg_start", "slg_end"),
}


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


_CHOICES: dict[str, tuple[str, ...]] = {
    "sampler": SAMPLER_NAMES,
    "scheduler": SCHEDULER_NAMES,
    "aspect": (*ASPECT_SIZES_1MP, CUSTOM_ASPECT),
    "preview": PREVIEW_DECODERS,
    "memory_plan": MEMORY_PLANS,
    "device": DEVICES,
    "precision": PRECISIONS,
}
_RANGES: dict[str, tuple[float, float]] = {
    "steps": (1, 150),
    "cfg": (1.0, 20.0),
    "width": (64, 6144),
    "height": (64, 6144),
    "seed": (0, MAX_SEED),
    "count": (1, MAX_IMAGES),
    "shift": (0.5, 12.0),
    "slg_scale": (0.0, 10.0),
    "slg_start": (0.0, 1.0),
    "slg_end": (0.0, 1.0),
    "negative_until": (0.0, 1.0),
    "preview_every": (1, 50),
}


def parse_layers(text: str) -> tuple[int, ...]:
    """`"7, 8,9"` -> (7, 8, 9); raises ValueError with a message for the user."""
    parts = [p.strip() for p in text.replace(" ", ",").split(",") if p.strip()]
    try:
        layers = tuple(int(p) for p in parts)
    except ValueError:
        raise ValueError(f"skip-layer guidance layers must be numbers like 7,8,9, not {text!r}") from None
    if any(n < 0 for n in layers):
        raise ValueError("skip-layer guidance layers cannot be negative")
    return layers


def variant_defaults(variant: str, max_side: int) -> dict[str, object]:
    """The values a switch to `variant` applies (DECISIONS row 11), per field."""
    p = PRESETS[variant]
    width, height = aspect_size("1:1", max_side)
    return {
        "steps": p.steps,
        "cfg": p.cfg,
        "sampler": p.sampler,
        "scheduler": p.scheduler,
        "shift": p.shift,
        "aspect": "1:1",
        "width": width,
        "height": height,
        "slg_enabled": p.slg_scale > 0 and bool(p.slg_layers),
        "slg_scale": p.slg_scale if p.slg_scale > 0 else 2.5,
        "slg_layers": ",".join(map(str, p.slg_layers or (7, 8, 9))),
        "slg_start": p.slg_start,
        "slg_end": p.slg_end,
    }


class GenerationFormState:
    """The form's values plus what they depend on: the selected variant, its size limit and pinned groups."""

    def __init__(self, values: FormValues | None = None, variant: str = "large") -> None:
        self.values = values or FormValues()
        self.variant = variant
        self.max_side = VARIANT_MAX_SIDE[variant]
        self.pins: set[str] = set()
        self.last_seed: int | None = None
        self.listeners: list[Callable[[frozenset[str]], None]] = []

    # ------------------------------------------------------------------------------------------ changes

    def update(self, **changes: object) -> frozenset[str]:
        """Set some values (validated and clamped); tell the listeners which fields changed."""
        clean = {name: _coerce(name, value, getattr(self.values, name)) for name, value in changes.items()}
        if "width" in clean or "height" in clean:
            for side in ("width", "height"):
                if side in clean:
                    clean[side] = snap_side(int(clean[side]), self.max_side)
            if "aspect" not in clean:
                clean["aspect"] = CUSTOM_ASPECT
        if clean.get("aspect", CUSTOM_ASPECT) != CUSTOM_ASPECT:
            clean["width"], clean["height"] = aspect_size(str(clean["aspect"]), self.max_side)
        changed = frozenset(k for k, v in clean.items() if getattr(self.values, k) != v)
        if changed:
            self.values = replace(self.values, **{k: clean[k] for k in changed})
            self._notify(changed)
        return changed

    def set_pinned(self, group: str, pinned: bool) -> None:
        if group not in PIN_GROUPS:
            raise ValueError(f"unknown pin group {group!r}")
        (self.pins.add if pinned else self.pins.discard)(group)
        self._notify(frozenset({f"pin:{group}"}))

    def apply_variant(self, variant: str, max_side: int | None = None) -> frozenset[str]:
        """Switch variant: its recommended values replace every group that is not pinned; sizes are clamped."""
        if variant not in VARIANTS:
            raise ValueError(f"unknown variant {variant!r}")
        self.variant = variant
        self.max_side = min(max_side or VARIANT_MAX_SIDE[variant], VARIANT_MAX_SIDE[variant])
        defaults = variant_defaults(variant, self.max_side)
        changes = {
            name: defaults[name]
            for group, names in PIN_GROUPS.items()
            if group not in self.pins
            for name in names
        }
        if "size" in self.pins:  # kept, but still clamped to what this variant supports
            v = self.values
            if v.aspect != CUSTOM_ASPECT:
                changes["aspect"] = v.aspect
            else:
                changes["width"], changes["height"] = v.width, v.height
        changed = self.update(**changes)
        self._notify(frozenset({"variant"}))
        return changed | {"variant"}

    def set_max_side(self, max_side: int | None) -> frozenset[str]:
        """Limit sizes to what the selected checkpoint supports (without applying any defaults)."""
        self.max_side = min(max_side or VARIANT_MAX_SIDE[self.variant], VARIANT_MAX_SIDE[self.variant])
        v = self.values
        changed = (
            self.update(aspect=v.aspect)
            if v.aspect != CUSTOM_ASPECT
            else self.update(width=v.width, height=v.height)
        )
        self._notify(frozenset({"variant"}))
        return changed | {"variant"}

    def _notify(self, changed: frozenset[str]) -> None:
        for listener in list(self.listeners):
            listener(changed)

    # ------------------------------------------------------------------------------------------ derived

    @property
    def negative_active(self) -> bool:
        """The negative prompt only matters when classifier-free guidance runs (CFG above 1)."""
        return self.values.cfg > 1.0

    @property
    def negative_inactive_reason(self) -> str:
        if self.negative_active:
            return ""
        turbo = " (Large Turbo's default)" if self.variant == "large-turbo" else ""
        return f"Ignored at CFG 1{turbo}: guidance is off. Raise CFG above 1 to use a negative prompt."

    @property
    def slg_available(self) -> bool:
        return self.variant == "medium"

    def reuse_last_seed(self) -> bool:
        """Put the last job's seed back in the field and stop randomising; False when no job ran yet."""
        if self.last_seed is None:
            return False
        self.update(seed=self.last_seed, random_seed=False)
        return True

    def build_request(
        self, styles: Mapping[str, StylePreset], rng: random.Random | None = None
    ) -> GenerationRequest:
        """The job for the current values (raises ValueError with a user message on an invalid field).

        With "random each time" a fresh seed is drawn and shown in the seed field; images get S, S+1, ...
        """
        v = self.values
        if not v.prompt.strip():
            raise ValueError("Write a prompt first: describe the picture you want.")
        style = styles.get(v.style, NO_STYLE)
        prompt, negative = style.apply(v.prompt, v.negative)
        slg_on = self.slg_available and v.slg_enabled and v.slg_scale > 0
        layers = parse_layers(v.slg_layers) if slg_on else ()
        if slg_on and not v.slg_start <= v.slg_end:
            raise ValueError("Skip-layer guidance: the start must not be after the end.")
        seed = (rng or random.Random()).randrange(RANDOM_SEED_LIMIT) if v.random_seed else v.seed
        seed = min(seed, MAX_SEED - (v.count - 1))
        request = GenerationRequest(
            prompt=prompt,
            negative=negative,
            seed=seed,
            count=v.count,
            steps=v.steps,
            cfg=v.cfg,
            sampler=v.sampler,
            scheduler=v.scheduler,
            width=v.width,
            height=v.height,
            shift=v.shift,
            slg_layers=layers,
            slg_scale=v.slg_scale if slg_on else 0.0,
            slg_start=v.slg_start,
            slg_end=v.slg_end,
            negative_until=v.negative_until if v.negative_window and self.negative_active else None,
            use_t5=v.use_t5,
        )
        self.last_seed = seed
        if v.random_seed:
            self.update(seed=seed)
        return request

    # ------------------------------------------------------------------------------------------ persistence

    def to_dict(self) -> dict[str, object]:
        return {
            "values": asdict(self.values),
            "variant": self.variant,
            "pins": sorted(self.pins),
            "last_seed": self.last_seed,
        }

    @classmethod
    def from_dict(cls, data: object) -> GenerationFormState:
        """Restore saved state; unknown or invalid entries are logged and fall back to their defaults."""
        state = cls()
        if not isinstance(data, dict):
            return state
        saved = data.get("values") if isinstance(data.get("values"), dict) else {}
        known = {f.name: f for f in fields(FormValues)}
        clean: dict[str, object] = {}
        for name, value in saved.items():
            if name not in known:
                log.info("dropping unknown saved setting %r", name)
                continue
            default = getattr(state.values, name)
            coerced = _coerce(name, value, default)
            if coerced == default and value != default:
                log.warning("saved setting %s=%r is invalid; using %r", name, value, default)
            clean[name] = coerced
        state.values = replace(state.values, **clean)
        if data.get("variant") in VARIANTS:
            state.variant = data["variant"]
            state.max_side = VARIANT_MAX_SIDE[state.variant]
        state.pins = (
            {p for p in data.get("pins", []) if p in PIN_GROUPS}
            if isinstance(data.get("pins"), list)
            else set()
        )
        if isinstance(data.get("last_seed"), int) and 0 <= data["last_seed"] <= MAX_SEED:
            state.last_seed = data["last_seed"]
        return state


def _coerce(name: str, value: object, fallback: object) -> object:
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
    except (TypeError, ValueError):
        return fallback
    if name in _CHOICES and out not in _CHOICES[name]:
        return fallback
    if name in _RANGES:
        lo, hi = _RANGES[name]
        out = min(max(out, kind(lo)), kind(hi))  # type: ignore[operator]
    return out
