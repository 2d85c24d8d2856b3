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

from app.inference.api.request import TEXT_MODES
from app.metadata.controlnet_meta import a1111_controlnet_fields
from app.metadata.fields import checked_fields
from app.metadata.limits import check_size
from app.metadata.params import ImageParams, variant_of_name

log = logging.getLogger(__name__)

A1111_SAMPLER_NAMES = {"euler": "Euler", "euler_ancestral": "Euler a", "dpmpp_2m": "DPM++ 2M"}
A1111_SCHEDULE_NAMES = {"normal": "Normal", "simple": "Simple", "sgm_uniform": "SGM Uniform", "beta": "Beta"}
A1111_RNG_NAMES = {"cpu": "CPU", "nv": "NV", "gpu": None}  # A1111 leaves out its GPU default

_SAMPLERS = {v: k for k, v in A1111_SAMPLER_NAMES.items()}
_SCHEDULES = {v: k for k, v in A1111_SCHEDULE_NAMES.items()}
_SIZE = re.compile(r"^(\d+)x(\d+)$")
_KEY = re.compile(r"\w[\w \-/+]*")
_OURS = "SD3.5 Studio"
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
        "Denoising strength": _g(r.denoise) if r.init_image is not None else None,
        "RNG": A1111_RNG_NAMES.get(params.noise),
        "Shift": _g(r.shift),
        "SLG layers": ",".join(map(str, r.slg_layers)) if slg else None,  # type: ignore[arg-type]
        "SLG scale": _g(r.slg_scale) if slg else None,
        "SLG range": f"{r.slg_start:g}-{r.slg_end:g}" if slg else None,
        "Negative until": _g(r.negative_until),
        "T5": None if r.use_t5 else "off",
        "Text mode": None if r.text_mode == "full" else r.text_mode,
        **a1111_controlnet_fields(r.controlnets),
        "Version": version,
    }


def infotext_of(params: ImageParams) -> str:
    """The A1111 text of one image: what its PNG's `parameters` chunk holds and what Copy Parameters gives."""
    return format_infotext(params.prompt, params.negative, a1111_fields(params))


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
    checked, notes = checked_fields(values)
    return ImageParams.from_fields(**checked), tuple(dict.fromkeys((*unmapped, *notes)))


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
        unmapped.append("the img2img source image is not part of the metadata; choose it again")
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
    elif key == "Version":
        if value.startswith(_OURS):
            out["app_version"] = value[len(_OURS) :].strip() or None
    else:
        return False
    return True
