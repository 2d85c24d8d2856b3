"""A1111 infotext both ways: our parameters → the exact text A1111 writes; any infotext → our parameters.

Writing (A1111 `modules/processing.py` `create_infotext`, `modules/infotext_utils.py` `quote`): the prompt, then
`Negative prompt: ...` when there is one, then one line of `Key: value` pairs joined by ", " in a fixed key
order; a value containing a comma, a colon or a newline is written as a JSON string; `None` values are left out;
the whole text is stripped. `infotext_of` is the one function that turns parameters into this text: the PNG's
`parameters` chunk, EXIF copies and every Copy Parameters use it.

Reading (A1111 `parse_generation_parameters`): prompt lines, an optional block starting with `Negative prompt:`,
and a last line of `Key: value` pairs separated by ", ", where a value that holds a comma, a colon or a newline
is a JSON string. The last line counts as parameters only when it has at least three pairs.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from pathlib import Path

from app.inference.api.errors import InvalidRequestError
from app.inference.api.lora import LoraSpec, lora_tag, split_prompt_loras
from app.inference.api.request import TEXT_MODES
from app.metadata.controlnet_a1111 import controlnet_from_a1111
from app.metadata.controlnet_meta import a1111_controlnet_fields
from app.metadata.fields import checked_fields
from app.metadata.limits import check_size
from app.metadata.params import ImageParams, variant_of_name

log = logging.getLogger(__name__)

A1111_SAMPLER_NAMES = {"euler": "Euler", "euler_ancestral": "Euler a", "dpmpp_2m": "DPM++ 2M"}
A1111_SCHEDULE_NAMES = {"normal": "Normal", "simple": "Simple", "sgm_uniform": "SGM Uniform", "beta": "Beta"}
A1111_RNG_NAMES = {"cpu": "CPU", "nv": "NV", "gpu": None}  # A1111 leaves out its GPU default
HIRES_UPSCALER = "Lanczos"  # the one upscaler the engine has (app.inference.pipeline.hires.DEFAULT_UPSCALER)

_SAMPLERS = {v: k for k, v in A1111_SAMPLER_NAMES.items()}
_SCHEDULES = {v: k for k, v in A1111_SCHEDULE_NAMES.items()}
_SIZE = re.compile(r"^(\d+)x(\d+)$")
_CONTROLNET_UNIT = re.compile(r"^ControlNet \d+$")
_KEY = re.compile(r"\w[\w \-/+]*")
_OURS = "SD3.5 Studio"
_NO_SOURCE = "the img2img source image is not part of the metadata; choose it again"
# A1111 writes about 20 pairs; past this many the rest of the line is not read (and a note says so), which keeps
# a crafted line of millions of `Steps: 4, ` pairs from costing seconds and hundreds of MB.
MAX_PAIRS = 200


def quote(value: object) -> str:
    """A1111's rule: JSON-quote a value holding a comma, a colon or a newline; leave the rest as is."""
    text = str(value)
    if "," in text or ":" in text or "\n" in text:
        return json.dumps(text, ensure_ascii=False)
    return text


def format_infotext(prompt: str, negative: str, fields: Mapping[str, object]) -> str:
    """The infotext for `fields` in the given order; `None` values are left out, as A1111 does."""
    pairs = ", ".join(k if k == v else f"{k}: {quote(v)}" for k, v in fields.items() if v is not None)
    negative_line = f"\nNegative prompt: {negative}" if negative else ""
    return f"{prompt}{negative_line}\n{pairs}".strip()


def _g(value: float | None) -> str | None:
    return None if value is None else f"{value:g}"


def a1111_fields(params: ImageParams) -> dict[str, object]:
    """The infotext fields of one image, in A1111's order, then our SD3.5 extras (the one A1111 vocabulary)."""
    r = params.request
    slg = bool(r.slg_scale and r.slg_layers)
    masked = r.mask_image is not None or any(r.outpaint or ())
    hires = r.hires_scale not in (None, 1.0)
    version = f"{_OURS} {params.app_version}" if params.app_version else _OURS
    return {
        "Steps": r.steps,
        "Sampler": A1111_SAMPLER_NAMES.get(r.sampler or "", r.sampler),
        "Schedule type": A1111_SCHEDULE_NAMES.get(r.scheduler or "", r.scheduler),
        "CFG scale": _g(r.cfg),
        "Seed": r.seed,
        "Size": f"{r.width}x{r.height}" if r.width and r.height else None,
        "Model hash": params.model_hash,
        "Model": params.model_name,
        "FP8 weight": "Enable" if params.fp8 else None,
        "Denoising strength": _denoising_strength(r),
        "Mask blur": r.mask_blur if masked else None,
        "Hires upscale": _g(r.hires_scale) if hires else None,
        "Hires steps": r.hires_steps if hires else None,
        "Hires upscaler": HIRES_UPSCALER if hires else None,
        "RNG": A1111_RNG_NAMES.get(params.noise),
        "Shift": _g(r.shift),
        "SLG layers": ",".join(map(str, r.slg_layers)) if slg else None,  # type: ignore[arg-type]
        "SLG scale": _g(r.slg_scale) if slg else None,
        "SLG range": f"{r.slg_start:g}-{r.slg_end:g}" if slg else None,
        "Negative until": _g(r.negative_until),
        "T5": None if r.use_t5 else "off",
        "Text mode": None if r.text_mode == "full" else r.text_mode,
        "Lora hashes": lora_hashes_field(r.loras),
        "Mask grow": r.mask_grow if masked else None,
        "Outpaint": ",".join(map(str, r.outpaint)) if any(r.outpaint or ()) else None,
        "Hires denoise": _g(r.hires_denoise) if hires and r.init_image is not None else None,
        **a1111_controlnet_fields(r.controlnets),
        "Version": version,
    }


def lora_hashes_field(loras: tuple[LoraSpec, ...]) -> str | None:
    """A1111's `Lora hashes` value: `name: shorthash, name2: shorthash2` (None when no LoRA has a hash)."""
    pairs = [f"{lo.name}: {lo.short_hash}" for lo in loras if lo.short_hash]
    return ", ".join(pairs) or None


def prompt_with_loras(prompt: str, loras: tuple[LoraSpec, ...]) -> str:
    """The prompt as A1111 shows it: the `<lora:name:strength>` tags after the text."""
    tags = " ".join(lora_tag(lo.name, lo.strength, lo.te_strength) for lo in loras)
    return f"{prompt} {tags}".strip() if tags else prompt


def _denoising_strength(r: object) -> str | None:
    """A1111's one denoise field: the img2img strength, or in a txt2img hires job the hires pass's."""
    if r.init_image is not None:
        return _g(r.denoise)
    return _g(r.hires_denoise) if r.hires_scale not in (None, 1.0) else None


def infotext_of(params: ImageParams) -> str:
    """The A1111 text of one image: what its PNG's `parameters` chunk holds and what Copy Parameters gives."""
    return format_infotext(
        prompt_with_loras(params.prompt, params.loras), params.negative, a1111_fields(params)
    )


def split_pairs(line: str, limit: int = MAX_PAIRS) -> list[tuple[str, str]]:
    """`Key: value, Key: "quoted, value", ...` → [(key, value)], JSON strings unquoted. Stops at the first
    fragment that is not a pair (so a prompt line rarely passes for parameters), and after `limit` pairs."""
    pairs: list[tuple[str, str]] = []
    i, n = 0, len(line)
    while i < n and len(pairs) < limit:
        while i < n and line[i] == " ":
            i += 1
        m = _KEY.match(line, i)
        if m is None or m.end() >= n or line[m.end()] != ":":
            break
        key = m.group(0).strip()
        i = m.end() + 1
        while i < n and line[i] == " ":
            i += 1
        if i < n and line[i] == '"':
            try:
                value, end = json.JSONDecoder().raw_decode(line, i)
            except json.JSONDecodeError:
                break
            i = end
            value = str(value)
        else:
            end = line.find(",", i)
            end = n if end < 0 else end
            value, i = line[i:end].strip(), end
        pairs.append((key, value))
        while i < n and line[i] == " ":
            i += 1
        if i < n and line[i] == ",":
            i += 1
        elif i < n:
            break
    return pairs


def parse_infotext(text: str) -> tuple[str, str, list[tuple[str, str]]]:
    """(prompt, negative prompt, [(key, value)] in written order; at most MAX_PAIRS + 1 pairs are read, so a
    caller can tell that there were more). Raises MetadataError for a text over MAX_TEXT_BYTES."""
    check_size(text, "The infotext")
    lines = text.strip().split("\n")
    pairs = split_pairs(lines[-1], MAX_PAIRS + 1) if lines else []
    if len(pairs) >= 3:
        lines = lines[:-1]
    else:
        pairs = []
    prompt: list[str] = []
    negative: list[str] | None = None
    for line in lines:
        if negative is None and line.startswith("Negative prompt:"):
            negative = [line[len("Negative prompt:") :].strip()]
        elif negative is not None:
            negative.append(line)
        else:
            prompt.append(line)
    return "\n".join(prompt).strip(), "\n".join(negative or []).strip(), pairs


def params_from_infotext(text: str) -> tuple[ImageParams, tuple[str, ...]]:
    """Our parameters from an A1111-style infotext, and what could not be mapped (as readable sentences)."""
    prompt, negative, pairs = parse_infotext(text)
    values: dict[str, object] = {"prompt": prompt, "negative": negative}
    unmapped: list[str] = []
    values["noise"] = {"CPU": "cpu", "NV": "nv"}.get(dict(pairs).get("RNG", ""), "gpu")
    if len(pairs) > MAX_PAIRS:
        pairs = pairs[:MAX_PAIRS]
        unmapped.append(f"only the first {MAX_PAIRS} fields of the parameters line are read")
    for key, value in pairs:
        try:
            if not _map_field(key, value, values, unmapped):
                unmapped.append(f"{key}: {_short(value)}")
        except ValueError:
            unmapped.append(f"{key}: {_short(value)} (not understood)")
    if "controlnets" in values:
        values["controlnets"] = tuple(values["controlnets"])  # type: ignore[arg-type]
    _loras_from_prompt(values, unmapped)
    _hires_denoise_of_txt2img(values, unmapped, dict(pairs))
    checked, notes = checked_fields(values)
    return ImageParams.from_fields(**checked), tuple(dict.fromkeys((*unmapped, *notes)))


def _loras_from_prompt(values: dict[str, object], unmapped: list[str]) -> None:
    """`<lora:name:s>` tags leave the prompt and become LoRA entries (file `name.safetensors`, to be found in
    the LoRA folders by recall), with their short hashes from `Lora hashes`."""
    hashes: dict[str, str] = {}
    for pair in str(values.pop("lora_hashes", "")).split(","):
        name, _, digest = pair.rpartition(":")
        if name.strip() and digest.strip():
            hashes[name.strip()] = digest.strip()
    try:
        prompt, tags = split_prompt_loras(str(values.get("prompt", "")))
    except InvalidRequestError:
        unmapped.append("a <lora:...> tag of the prompt has a strength that is not a number")
        return
    tagged = {t.name for t in tags}
    untagged = [f"{n}: {h}" for n, h in hashes.items() if n not in tagged]
    if untagged:  # a hash without its tag says a LoRA was used, but not at which strength
        unmapped.append("Lora hashes: " + ", ".join(untagged))
    if not tags:
        return
    values["prompt"] = prompt
    values["loras"] = tuple(
        LoraSpec(Path(f"{t.name}.safetensors"), t.strength, t.te_strength, short_hash=hashes.get(t.name))
        for t in tags
    )


def _hires_denoise_of_txt2img(values: dict[str, object], unmapped: list[str], pairs: dict[str, str]) -> None:
    """In a txt2img hires infotext (no init image), "Denoising strength" is the hires pass's."""
    if "hires_scale" in values and "Hires denoise" not in pairs and "denoise" in values:
        values["hires_denoise"] = values.pop("denoise")
        unmapped.remove(_NO_SOURCE)


def _short(value: str) -> str:
    return value if len(value) <= 60 else value[:57] + "…"


def _map_field(key: str, value: str, out: dict[str, object], unmapped: list[str]) -> bool:
    """Write one field into `out`; False when the field means nothing to SD3.5 Studio."""
    if key == "Steps":
        out["steps"] = int(value)
    elif key == "Sampler":
        name = value
        if name.endswith(" Karras"):  # before A1111 1.9 the schedule was part of the sampler's name
            name = name[: -len(" Karras")]
            unmapped.append("Schedule type: Karras (not available; using the variant's default)")
        if name not in _SAMPLERS:
            unmapped.append(f"Sampler: {value} (not available; using the variant's default)")
        else:
            out["sampler"] = _SAMPLERS[name]
    elif key == "Schedule type":
        if value in _SCHEDULES:
            out["scheduler"] = _SCHEDULES[value]
        elif value != "Automatic":
            unmapped.append(f"Schedule type: {value} (not available; using the variant's default)")
    elif key == "CFG scale":
        out["cfg"] = float(value)
    elif key == "Seed":
        out["seed"] = int(value)
    elif key == "Size":
        m = _SIZE.match(value)
        if m is None:
            raise ValueError(value)
        out["width"], out["height"] = int(m.group(1)), int(m.group(2))
    elif key == "Model hash":
        out["model_hash"] = value
    elif key == "Model":
        out["model_name"] = value
        out["variant"] = variant_of_name(value)
    elif key == "FP8 weight":
        out["fp8"] = value != "Disable"
    elif key == "Denoising strength":
        out["denoise"] = float(value)
        unmapped.append(_NO_SOURCE)
    elif key == "Mask blur":
        out["mask_blur"] = int(value)
    elif key == "Mask grow":
        out["mask_grow"] = int(value)
    elif key == "Outpaint":
        out["outpaint"] = tuple(int(v) for v in value.split(","))
    elif key == "Hires upscale":
        out["hires_scale"] = float(value)
    elif key == "Hires steps":
        out["hires_steps"] = int(value)
    elif key == "Hires denoise":
        out["hires_denoise"] = float(value)
    elif key == "Hires upscaler":
        if value != HIRES_UPSCALER:
            unmapped.append(f"Hires upscaler: {value} (not available; using {HIRES_UPSCALER})")
    elif key == "RNG":
        if value not in ("CPU", "GPU", "NV"):
            return False
    elif key == "Shift":
        out["shift"] = float(value)
    elif key == "SLG layers":
        out["slg_layers"] = tuple(int(i) for i in re.findall(r"\d+", value))
    elif key == "SLG scale":
        out["slg_scale"] = float(value)
    elif key == "SLG range":
        start, end = value.split("-")
        out["slg_start"], out["slg_end"] = float(start), float(end)
    elif key == "Negative until":
        out["negative_until"] = float(value)
    elif key == "T5":
        out["use_t5"] = value.lower() not in ("off", "false", "0")
    elif key == "Text mode":
        if value not in TEXT_MODES:
            raise ValueError(value)
        out["text_mode"] = value
    elif key == "Lora hashes":
        out["lora_hashes"] = value
    elif _CONTROLNET_UNIT.match(key):  # sd-webui-controlnet's units, in written order
        spec, notes = controlnet_from_a1111(key, value)
        unmapped.extend(notes)
        if spec is not None:
            out.setdefault("controlnets", []).append(spec)  # type: ignore[union-attr]
    elif key == "Version":
        if value.startswith(_OURS):
            out["app_version"] = value[len(_OURS) :].strip() or None
    else:
        return False
    return True
