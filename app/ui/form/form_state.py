"""The generation form as plain Python: the one truth that the widgets show and edit, and the job it builds.

No Qt here. Widgets are bound to fields (`form_widgets.FieldBinder`): a user's edit goes in through `edit()`, a
change from anywhere else (variant switch, restore, recall, reuse seed) comes out through the listeners, and the
request is built only from these values. `request_from_values` and its inverse `values_from_request` sit side by
side at the end, so a field added to one is added to the other. `app.inference.api` is torch-free, so importing
it keeps the UI thread free of torch.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Mapping
from dataclasses import asdict, fields, replace
from pathlib import Path

from app.inference.api.control import ControlSpec
from app.inference.api.lora import LoraSpec
from app.inference.api.request import MAX_SEED, GenerationRequest
from app.inference.api.variants import PRESETS, VARIANTS
from app.metadata.controlnet_meta import controlnet_to_dict, controlnets_from_json
from app.ui.form.addons import (
    LoraCatalog,
    controlnet_problems,
    lora_from_dict,
    lora_problems,
    prompt_loras,
    recalled_loras,
)
from app.ui.form.form_fields import (
    MAX_IMAGES,
    OUTPAINT_FIELDS,
    FormValues,
    adjustment_note,
    coerce,
    layers_text,
    parse_layers,
)
from app.ui.form.presets import CUSTOM_ASPECT, NO_STYLE, StylePreset, aspect_of, aspect_size, snap_side

log = logging.getLogger(__name__)

__all__ = ["MAX_IMAGES", "FormValues", "GenerationFormState", "parse_layers", "variant_defaults"]

# Largest side each variant supports when no checkpoint says otherwise (16 px x pos_embed_max_size).
VARIANT_MAX_SIDE = {"large": 3072, "large-turbo": 3072, "medium": 6144}
MEDIUM_DEPTH = 24  # SD3.5 Medium's joint blocks: the preset's skip layers (7, 8, 9) are chosen for this depth
RANDOM_SEED_LIMIT = 2**32  # random seeds stay short enough to read and type

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


def default_slg_layers(depth: int | None) -> tuple[int, ...]:
    """Medium's skip layers for a model of `depth` joint blocks: the preset's when they exist, else the same
    relative depths (7/24, 8/24, 9/24) in this model."""
    layers = PRESETS["medium"].slg_layers
    if depth is None or all(n < depth for n in layers):
        return layers
    return tuple(sorted({min(depth - 1, round(n * depth / MEDIUM_DEPTH)) for n in layers}))


def variant_defaults(variant: str, max_side: int, depth: int | None = None) -> dict[str, object]:
    """The values a switch to `variant` applies (DECISIONS row 11), per field, for a model of `depth` blocks."""
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
        "slg_layers": layers_text(default_slg_layers(depth)),
        "slg_start": p.slg_start,
        "slg_end": p.slg_end,
    }


class GenerationFormState:
    """The form's values plus what they depend on: the selected model (variant, size limit, depth), the pinned
    groups, and notes that say why a typed value was changed or cannot be used."""

    def __init__(self, values: FormValues | None = None, variant: str = "large") -> None:
        self.values = values or FormValues()
        self.variant = variant
        self.max_side = VARIANT_MAX_SIDE[variant]
        self.depth: int | None = None  # joint blocks of the selected model, once its header has been read
        self.pins: set[str] = set()
        self.last_seed: int | None = None
        self.notes: dict[str, str] = {}  # field -> why the typed value was changed
        self.invalid: dict[str, str] = {}  # field -> why the typed text cannot be used (blocks Generate)
        self.listeners: list[Callable[[frozenset[str]], None]] = []
        # Widgets that hold typed text not yet committed (a spin box before Enter) register here; every read
        # of the whole form commits them first, so Ctrl+Return sends what the fields show.
        self.edit_flushers: list[Callable[[], None]] = []
        self._default_layers = layers_text(
            default_slg_layers(None)
        )  # the skip layers last filled in for the user
        # Refine: Inpaint mode asks this for the painted mask's PNG at submit time (app.ui.refine sets it; it
        # raises ValueError with a sentence when nothing is painted). A recalled image's mask file waits here.
        self.mask_writer: Callable[[], Path] | None = None
        self.recalled_mask: Path | None = None
        # LoRAs and ControlNets (app/ui/form/addons.py): ordered sets, so outside the one-value FormValues.
        # Changes notify "loras" / "controlnets" / "lora_catalog" like a field.
        self.loras: tuple[LoraSpec, ...] = ()  # the LoRA panel's list (prompt tags are added at request time)
        self.controlnets: tuple[ControlSpec, ...] = ()
        # Switches the chosen engine cannot run (a ComfyUI server without a node or file): field -> the reason,
        # shown as the disabled control's tooltip. Set by app/ui/window/engine_hookup.py; notifies "unavailable".
        self.unavailable: dict[str, str] = {}
        self.lora_catalog = LoraCatalog()  # discovered LoRAs: `<lora:name>` tags resolve against it

    # ------------------------------------------------------------------------------------------ changes

    def update(self, **changes: object) -> frozenset[str]:
        """Set some values (validated and clamped); tell the listeners which fields changed."""
        clean = {name: coerce(name, value, getattr(self.values, name)) for name, value in changes.items()}
        if "width" in clean or "height" in clean:
            for side in ("width", "height"):
                if side in clean:
                    clean[side] = snap_side(int(clean[side]), self.max_side)
            if "aspect" not in clean:
                clean["aspect"] = CUSTOM_ASPECT
        if clean.get("aspect", CUSTOM_ASPECT) != CUSTOM_ASPECT:
            clean["width"], clean["height"] = aspect_size(str(clean["aspect"]), self.max_side)
        changed = frozenset(k for k, v in clean.items() if getattr(self.values, k) != v)
        stale = {k for k in clean if k in self.notes or k in self.invalid}
        for name in stale:  # a value set from anywhere replaces what the field said about the last typing
            self.notes.pop(name, None)
            self.invalid.pop(name, None)
        if changed:
            self.values = replace(self.values, **{k: clean[k] for k in changed})
        if changed or stale:
            self._notify(changed | ({"notes"} if stale else set()))
        return changed

    def edit(self, name: str, value: object) -> frozenset[str]:
        """A user's edit of one field: applied like `update`; when the value had to change, a note says why."""
        changed = self.update(**{name: value})
        note = adjustment_note(name, value, getattr(self.values, name), self.max_side)
        if note:
            self.notes[name] = note
            self._notify(frozenset({"notes"}))
        return changed

    def reject(self, name: str, message: str) -> None:
        """The field shows text that is not a value (a seed "12.5"): say why, and refuse to build a job."""
        if self.invalid.get(name) != message:
            self.invalid[name] = message
            self.notes.pop(name, None)
            self._notify(frozenset({"notes"}))

    def commit_edits(self) -> None:
        for flush in list(self.edit_flushers):
            flush()

    def set_pinned(self, group: str, pinned: bool) -> None:
        if group not in PIN_GROUPS:
            raise ValueError(f"unknown pin group {group!r}")
        (self.pins.add if pinned else self.pins.discard)(group)
        self._notify(frozenset({f"pin:{group}"}))

    def set_unavailable(self, reasons: Mapping[str, str]) -> frozenset[str]:
        """The engine cannot run these on/off fields (field -> why): they are switched off and stay off."""
        self.unavailable = dict(reasons)
        changed = self.update(
            **{name: False for name in self.unavailable if getattr(self.values, name, None)}
        )
        self._notify(frozenset({"unavailable"}))
        return changed

    def select_model(self, variant: str, max_side: int | None, depth: int | None = None) -> frozenset[str]:
        """The picker chose a model set: its variant's defaults when the variant changes, else only its limits."""
        if variant != self.variant:
            return self.apply_variant(variant, max_side, depth)
        changed = self.set_max_side(max_side)
        if depth is not None and depth != self.depth:
            self.depth = depth
            changed |= self._fit_layers()
            self._notify(frozenset({"variant"}))
        return changed

    def apply_variant(
        self, variant: str, max_side: int | None = None, depth: int | None = None
    ) -> frozenset[str]:
        """Switch variant: its recommended values replace every group that is not pinned; sizes are clamped.
        The skip layers follow the model's depth instead (kept when the user typed layers this model has)."""
        if variant not in VARIANTS:
            raise ValueError(f"unknown variant {variant!r}")
        self.variant = variant
        self.max_side = min(max_side or VARIANT_MAX_SIDE[variant], VARIANT_MAX_SIDE[variant])
        self.depth = depth
        defaults = variant_defaults(variant, self.max_side, depth)
        changes = {
            name: defaults[name]
            for group, names in PIN_GROUPS.items()
            if group not in self.pins
            for name in names
            if name != "slg_layers"
        }
        if "size" in self.pins:  # kept, but still clamped to what this variant supports
            changes.update(self._size_values())
        changed = self.update(**changes) | self._fit_layers()
        self._notify(frozenset({"variant"}))
        return changed | {"variant"}

    def set_max_side(self, max_side: int | None) -> frozenset[str]:
        """Limit sizes to what the selected checkpoint supports (without applying any defaults). An unknown
        limit (the header is still being read) keeps the sizes the fields show."""
        if max_side is None:
            return frozenset()
        self.max_side = min(max_side, VARIANT_MAX_SIDE[self.variant])
        changed = self.update(**self._size_values())
        self._notify(frozenset({"variant"}))
        return changed | {"variant"}

    def _size_values(self) -> dict[str, object]:
        v = self.values
        return {"aspect": v.aspect} if v.aspect != CUSTOM_ASPECT else {"width": v.width, "height": v.height}

    def _fit_layers(self) -> frozenset[str]:
        """Default skip layers follow the model's depth; layers the user typed stay unless the model lacks them
        (then the model's default, with a note). Pinned layers are never replaced (`problems` names them)."""
        if not self.slg_available:
            return frozenset()  # skip layers are Medium's: another variant's depth says nothing about them
        wanted = layers_text(default_slg_layers(self.depth))
        current = self.values.slg_layers
        try:
            fits = self.depth is None or all(n < self.depth for n in parse_layers(current))
        except ValueError:
            return frozenset()  # shown as a problem; the user's text is not replaced
        typed = current != self._default_layers
        if "slg" in self.pins or current == wanted or (typed and fits):
            return frozenset()
        changed = self.update(slg_layers=wanted)
        self._default_layers = wanted
        if typed:
            self.notes["slg_layers"] = (
                f"Layers {current} → {wanted}: this model has {self.depth} blocks (0–{self.depth - 1})."
            )
            self._notify(frozenset({"notes"}))
        return changed

    # ------------------------------------------------------------------------------------------ LoRAs, ControlNets

    def set_loras(self, loras: tuple[LoraSpec, ...]) -> None:
        if tuple(loras) != self.loras:
            self.loras = tuple(loras)
            self._notify(frozenset({"loras"}))

    def set_controlnets(self, controlnets: tuple[ControlSpec, ...], incomplete: str = "") -> None:
        """`incomplete`: why a ControlNet switched on in the form cannot be sent yet (no file or image chosen);
        it blocks Generate like a field that shows no value."""
        changed = tuple(controlnets) != self.controlnets or self.invalid.get("controlnets", "") != incomplete
        self.controlnets = tuple(controlnets)
        if incomplete:
            self.invalid["controlnets"] = incomplete
        else:
            self.invalid.pop("controlnets", None)
        if changed:
            self._notify(frozenset({"controlnets"}))

    def set_lora_catalog(self, catalog: LoraCatalog) -> None:
        self.lora_catalog = catalog
        self._notify(frozenset({"lora_catalog"}))

    def addon_problems(self) -> dict[str, str]:
        """Why the LoRA set or the ControlNets cannot be sent with the selected model ({} when they can)."""
        return {
            **lora_problems(self.values.prompt, self.loras, self.lora_catalog, self.variant),
            **controlnet_problems(self.controlnets, self.variant),
        }

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

    @property
    def slg_on(self) -> bool:
        v = self.values
        return self.slg_available and v.slg_enabled and v.slg_scale > 0

    def problems(self) -> dict[str, str]:
        """Fields whose shown value cannot be sent, with a sentence each (shown before Generate)."""
        v = self.values
        out = {name: m for name, m in self.invalid.items() if not (name == "seed" and v.random_seed)}
        if self.slg_on:
            try:
                layers = parse_layers(v.slg_layers)
            except ValueError as exc:
                out["slg_layers"] = str(exc)
            else:
                missing = [n for n in layers if self.depth is not None and n >= self.depth]
                if missing:
                    out["slg_layers"] = (
                        f"Skip-layer guidance: layer{'s' if len(missing) > 1 else ''} "
                        f"{layers_text(tuple(missing))} do{'' if len(missing) > 1 else 'es'} not exist — "
                        f"this model has {self.depth} blocks (0–{self.depth - 1})."
                    )
                elif not layers:
                    out["slg_layers"] = "Skip-layer guidance: name at least one layer, e.g. 7,8,9."
            if not v.slg_start <= v.slg_end:
                out["slg_end"] = "Skip-layer guidance: the start must not be after the end."
        out.update(refine_problems(v))
        out.update(self.addon_problems())
        return out

    def reuse_last_seed(self) -> bool:
        """Put the last job's seed back in the field and stop randomising; False when no job ran yet."""
        if self.last_seed is None:
            return False
        self.update(seed=self.last_seed, random_seed=False)
        return True

    # ------------------------------------------------------------------------------------------ request <-> values

    def build_request(
        self, styles: Mapping[str, StylePreset], rng: random.Random | None = None, *, record: bool = True
    ) -> GenerationRequest:
        """The job for what the fields show (typed text is committed first); raises ValueError with a sentence
        for the user when a field cannot be sent.

        With "random each time" a fresh seed is drawn; `record` keeps it as the last seed (Generate) — a dialog
        that only looks at the request (X/Y Plot) passes False and changes nothing.
        """
        self.commit_edits()
        if not self.values.prompt.strip():
            raise ValueError("Write a prompt first: describe the picture you want.")
        problems = self.problems()
        if problems:
            raise ValueError(next(iter(problems.values())))
        prompt, loras = prompt_loras(self.values.prompt, self.loras, self.lora_catalog)
        v = replace(self.values, prompt=prompt)  # `<lora:…>` tags go to `loras`, not to the text encoders
        seed = (rng or random.Random()).randrange(RANDOM_SEED_LIMIT) if v.random_seed else v.seed
        request = request_from_values(v, styles, seed, slg=self.slg_on, negative=self.negative_active)
        request = replace(request, loras=loras, controlnets=self.controlnets)
        if v.refine_mode != "generate" or v.hires_enabled:
            mask = self.mask_writer() if v.refine_mode == "inpaint" and self.mask_writer is not None else None
            request = replace(request, **refine_request_fields(v, mask))
        if record:
            self.last_seed = request.seed
            if v.random_seed:
                self.update(seed=request.seed)
        return request

    def apply_request(self, request: GenerationRequest, seed: int | None = None) -> frozenset[str]:
        """Fill the form from a request (a recalled image); `seed` None keeps the seed settings. A refine
        job's input image comes back only while its file exists (else a note says so); its mask file is
        handed to the mask painter through `recalled_mask`."""
        self.set_loras(recalled_loras(request.loras, self.lora_catalog))
        self.set_controlnets(request.controlnets)
        values = values_from_request(request, seed, self.max_side)
        values.update(refine_values_from_request(request))
        changed = self.update(**values)
        self.recalled_mask = None
        missing = request.init_image is not None and not Path(request.init_image).is_file()
        if missing:
            self.notes["init_image"] = (
                f"The input image {Path(request.init_image).name} no longer exists; "
                "the settings were applied to Generate mode."
            )
        elif request.mask_image is not None:
            self.recalled_mask = Path(request.mask_image)
        if missing or self.recalled_mask is not None:
            self._notify(frozenset({"notes", "recalled_mask"}))
        return changed

    # ------------------------------------------------------------------------------------------ persistence

    def to_dict(self) -> dict[str, object]:
        self.commit_edits()
        return {
            "values": asdict(self.values),
            "variant": self.variant,
            "max_side": self.max_side,
            "depth": self.depth,
            "pins": sorted(self.pins),
            "last_seed": self.last_seed,
            "loras": [lora.to_dict() for lora in self.loras],
            "controlnets": [controlnet_to_dict(c) for c in self.controlnets],
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
            coerced = coerce(name, value, default)
            if coerced == default and value != default:
                log.warning("saved setting %s=%r is invalid; using %r", name, value, default)
            clean[name] = coerced
        state.values = replace(state.values, **clean)
        if data.get("variant") in VARIANTS:
            state.variant = data["variant"]
            state.max_side = VARIANT_MAX_SIDE[state.variant]
        # The last model's limits, so that sizes are not re-derived before its header has been read again.
        if isinstance(data.get("max_side"), int) and 64 <= data["max_side"] <= state.max_side:
            state.max_side = data["max_side"]
        if isinstance(data.get("depth"), int) and data["depth"] > 0:
            state.depth = data["depth"]
        state.pins = (
            {p for p in data.get("pins", []) if p in PIN_GROUPS}
            if isinstance(data.get("pins"), list)
            else set()
        )
        if isinstance(data.get("last_seed"), int) and 0 <= data["last_seed"] <= MAX_SEED:
            state.last_seed = data["last_seed"]
        if isinstance(data.get("loras"), list):
            state.loras = tuple(s for s in map(lora_from_dict, data["loras"]) if s is not None)
        try:
            state.controlnets = controlnets_from_json(data.get("controlnets", []))
        except ValueError as exc:
            log.warning("dropping saved ControlNets: %s", exc)
        return state


def refine_problems(v: FormValues) -> dict[str, str]:
    """What keeps a refine job from being sent, with a sentence each."""
    if v.refine_mode == "generate":
        return {}
    if not v.init_image:
        return {"init_image": "Choose an input image first: Open…, paste, drop one on the window, or "
                              "“Use as input” on a picture."}  # fmt: skip
    if not Path(v.init_image).is_file():
        return {"init_image": f"The input image {Path(v.init_image).name} no longer exists; choose another."}
    if v.refine_mode == "outpaint" and not any(getattr(v, f) for f in OUTPAINT_FIELDS):
        return {"outpaint_left": "Outpaint: extend at least one side (left, top, right or bottom)."}
    return {}


def refine_request_fields(v: FormValues, mask: Path | None) -> dict[str, object]:
    """The request fields of the refine mode and the hires fix (sent only when the mode or the fix is on)."""
    out: dict[str, object] = {}
    if v.refine_mode != "generate":
        out.update(
            init_image=Path(v.init_image), denoise=v.denoise, mask_grow=v.mask_grow, mask_blur=v.mask_blur
        )
        if v.refine_mode == "inpaint":
            out["mask_image"] = mask
        if v.refine_mode == "outpaint":
            out["outpaint"] = tuple(getattr(v, f) for f in OUTPAINT_FIELDS)
    if v.hires_enabled and v.hires_scale > 1.0:
        out.update(
            hires_scale=v.hires_scale, hires_denoise=v.hires_denoise, hires_steps=v.hires_steps or None
        )
    return out


def refine_values_from_request(r: GenerationRequest) -> dict[str, object]:
    """The inverse of `refine_request_fields`: the mode from what the request carries (a mask → Inpaint,
    extended sides → Outpaint, an input image alone → Image to image), only while the input image exists."""
    hires = r.hires_scale is not None and r.hires_scale > 1.0
    values: dict[str, object] = {"hires_enabled": hires}
    if hires:
        values.update(
            hires_scale=r.hires_scale, hires_denoise=r.hires_denoise, hires_steps=r.hires_steps or 0
        )
    if r.init_image is None or not Path(r.init_image).is_file():
        values["refine_mode"] = "generate"
        return values
    sides = tuple(r.outpaint or (0, 0, 0, 0))
    mode = "inpaint" if r.mask_image is not None else "outpaint" if any(sides) else "img2img"
    values.update(refine_mode=mode, init_image=str(r.init_image), denoise=r.denoise,
                  mask_grow=r.mask_grow, mask_blur=r.mask_blur)  # fmt: skip
    values.update(zip(OUTPAINT_FIELDS, sides, strict=True))
    return values


def request_from_values(
    v: FormValues, styles: Mapping[str, StylePreset], seed: int, *, slg: bool, negative: bool
) -> GenerationRequest:
    """The request for valid form values (see `GenerationFormState.problems`): the style applied visibly,
    skip-layer guidance only when `slg`, the negative window only when the negative prompt is `negative`."""
    prompt, negative_prompt = styles.get(v.style, NO_STYLE).apply(v.prompt, v.negative)
    return GenerationRequest(
        prompt=prompt,
        negative=negative_prompt,
        seed=min(seed, MAX_SEED - (v.count - 1)),
        count=v.count,
        steps=v.steps,
        cfg=v.cfg,
        sampler=v.sampler,
        scheduler=v.scheduler,
        width=v.width,
        height=v.height,
        shift=v.shift,
        slg_layers=parse_layers(v.slg_layers) if slg else (),
        slg_scale=v.slg_scale if slg else 0.0,
        slg_start=v.slg_start,
        slg_end=v.slg_end,
        negative_until=v.negative_until if v.negative_window and negative else None,
        use_t5=v.use_t5,
    )


def values_from_request(request: GenerationRequest, seed: int | None, max_side: int) -> dict[str, object]:
    """The inverse of `request_from_values`: form values that send `request` again (the style is "none", as the
    request's prompt already carries it). Fields the request leaves `None` keep the form's value; `seed` None
    keeps the seed settings. Init image, denoise and text mode have no field in this form."""
    r = request
    values: dict[str, object] = {
        "prompt": r.prompt,
        "negative": r.negative,
        "style": NO_STYLE.id,
        "count": r.count,
        "use_t5": r.use_t5,
        "negative_window": r.negative_until is not None,
    }
    for name in ("steps", "cfg", "sampler", "scheduler", "shift", "slg_start", "slg_end", "negative_until"):
        if getattr(r, name) is not None:
            values[name] = getattr(r, name)
    if r.width is not None and r.height is not None:
        values.update(aspect=aspect_of(r.width, r.height, max_side), width=r.width, height=r.height)
    if seed is not None:
        values.update(seed=seed, random_seed=False)
    if r.slg_layers is not None and r.slg_scale is not None:
        values["slg_enabled"] = bool(r.slg_layers) and r.slg_scale > 0
        if values["slg_enabled"]:
            values.update(slg_scale=r.slg_scale, slg_layers=layers_text(r.slg_layers))
    return values
