"""Reading A1111's `ControlNet N` units back: the text sd-webui-controlnet writes (and `controlnet_meta` writes in its
style) → a ControlSpec and the notes on what could not be carried over. Torch-free.

The extension writes one unit per key, `ControlNet 0: "Module: canny, Model: name [hash8], Weight: 1.0, Resize Mode:
Crop and Resize, Processor Res: 512, Threshold A: 100.0, Threshold B: 200.0, Guidance Start: 0.0, Guidance End:
1.0, Pixel Perfect: False, Control Mode: Balanced, …"` (field names are its unit's attribute names with each word
capitalised; A1111 JSON-quotes the whole value). Its older format used lower-case keys, `starting/ending: (0, 1)`
and `preprocessor params: (512, 100, 200)`; both are read. The control image itself is never in the text.

    spec, notes = controlnet_from_a1111("ControlNet 0", text)   # spec None: nothing usable in the unit
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path

from app.inference.api.control import CONTROL_TYPES, ControlPreprocess, ControlSpec
from app.inference.api.errors import InvalidRequestError

log = logging.getLogger(__name__)

NO_IMAGE = Path("")  # the control image of a unit read from A1111 text: unknown, the user chooses it again
_MODEL = re.compile(r"^(?P<name>.*?)\s*(?:\[(?P<hash>[0-9a-fA-F]{6,64})\])?$")
_WEIGHT_SUFFIXES = (".safetensors", ".pth", ".ckpt", ".bin")
# sd-webui-controlnet module names → our preprocessing; the depth estimators have no counterpart here (the
# control image then has to be a depth map already), which a note says.
_MODULES = {"none": "none", "canny": "canny", "blur_gaussian": "blur"}
_ESTIMATORS = ("depth_",)


def split_unit(text: str) -> list[tuple[str, str]]:
    """`Key: value, Key: (a, b), …` → [(lower-case key, value)]; commas inside parentheses stay in the value."""
    parts: list[str] = []
    depth, start = 0, 0
    for i, ch in enumerate(text):
        if ch in "([":
            depth += 1
        elif ch in ")]" and depth:
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    pairs = []
    for part in parts:
        key, sep, value = part.partition(":")
        if sep and key.strip():
            pairs.append((" ".join(key.split()).lower(), value.strip()))
    return pairs


def _number(value: str) -> float:
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(value)
    return number


def _pair(value: str) -> tuple[float, ...]:
    """`(0, 1)` or `(512, 100, 200)` → numbers."""
    return tuple(_number(v) for v in value.strip("() ").split(",") if v.strip())


def _model_file(value: str) -> Path | None:
    """`sd3.5_large_controlnet_canny [4bc5cf94]` → `sd3.5_large_controlnet_canny.safetensors` (looked for by
    name in the ControlNet folders on recall); None for A1111's `None`."""
    m = _MODEL.match(value.strip())
    name = m.group("name").strip() if m else ""
    if not name or name.lower() == "none":
        return None
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    return Path(name if name.lower().endswith(_WEIGHT_SUFFIXES) else f"{name}.safetensors")


def controlnet_from_a1111(label: str, text: str) -> tuple[ControlSpec | None, list[str]]:
    """One unit's text → (the ControlSpec, notes for the user). A value that is not understood keeps the
    default and gets a note; keys about A1111's own pipeline (Resize Mode, Processor Res, Pixel Perfect, Low
    Vram, Hr Option, …) and unknown keys are skipped silently; a unit without a model is None."""
    fields = dict(split_unit(text))
    notes: list[str] = []
    file = _model_file(fields.get("model", ""))
    if file is None:
        return None, [f"{label}: no ControlNet model named; left out"]
    values: dict[str, float] = {}
    thresholds: tuple[float, ...] = ()

    def read(key: str, target: str) -> None:
        if key in fields:
            try:
                values[target] = _number(fields[key])
            except ValueError:
                notes.append(f"{label}: {key.title()}: {fields[key]} (not understood; using the default)")

    read("weight", "strength")
    read("guidance start", "start")
    read("guidance end", "end")
    read("threshold a", "a")
    read("threshold b", "b")
    for key, wanted in (("starting/ending", 2), ("preprocessor params", 3)):  # the extension's older format
        if key in fields:
            try:
                numbers = _pair(fields[key])
                if len(numbers) != wanted:
                    raise ValueError(fields[key])
            except ValueError:
                notes.append(f"{label}: {key}: {fields[key]} (not understood; using the default)")
                continue
            if key == "starting/ending":
                values["start"], values["end"] = numbers
            else:
                thresholds = numbers[1:]
    if thresholds:
        values.setdefault("a", thresholds[0])
        values.setdefault("b", thresholds[1])

    preprocess = _preprocess(
        label, fields.get("module", fields.get("preprocessor", "none")), values, file, notes
    )
    if fields.get("invert", "").lower() == "true" and preprocess.kind == "depth":
        preprocess = ControlPreprocess("depth", invert=True)
    control_type = fields.get("control type")
    if control_type is not None and control_type not in CONTROL_TYPES:
        notes.append(
            f"{label}: Control Type: {control_type} (not an SD3.5 ControlNet type; the file's is used)"
        )
        control_type = None
    mode = fields.get("control mode")
    if mode is not None and mode != "Balanced":
        notes.append(
            f"{label}: Control Mode: {mode} (A1111's; SD3.5 Studio always balances prompt and control)"
        )
    start, end = values.get("start", 0.0), values.get("end", 1.0)
    if not 0 <= start <= end <= 1:
        notes.append(f"{label}: Guidance Start/End {start:g}/{end:g} (not a range in 0..1; using 0..1)")
        start, end = 0.0, 1.0
    strength = values.get("strength", 1.0)
    if not 0 <= strength <= 10:
        notes.append(f"{label}: Weight: {strength:g} (outside 0..10; using 1)")
        strength = 1.0
    spec = ControlSpec(file, NO_IMAGE, strength, start, end, control_type, preprocess)
    notes.append(f"{label}: the control image is not part of A1111 metadata; choose it again")
    return spec, notes


def _preprocess(
    label: str, module: str, values: dict[str, float], file: Path, notes: list[str]
) -> ControlPreprocess:
    module = module.strip()
    kind = _MODULES.get(module.lower())
    if kind is None:
        if module.lower().startswith(_ESTIMATORS):
            notes.append(
                f"{label}: Module: {module} (no depth estimator here; use a depth map as the control image)"
            )
            return ControlPreprocess("depth")
        notes.append(f"{label}: Module: {module} (not available; the control image is used as it is)")
        kind = "none"
    if kind == "canny":
        low, high = values.get("a"), values.get("b")
        if low is None or high is None:
            return ControlPreprocess("canny")
        candidate = ControlPreprocess("canny", canny_low=low, canny_high=high)
    elif kind == "blur":
        radius = values.get("a")
        if radius is None:
            return ControlPreprocess("blur")
        candidate = ControlPreprocess("blur", blur_radius=radius)
    elif "depth" in file.name.lower():  # a plain map for a depth ControlNet: what our writer calls "depth"
        return ControlPreprocess("depth")
    else:
        return ControlPreprocess()
    try:
        return candidate.validated()
    except InvalidRequestError as exc:
        notes.append(f"{label}: {exc} (using the defaults)")
        return ControlPreprocess(kind)


def resolve_controlnet_files(
    specs: tuple[ControlSpec, ...], available: Iterable[Path]
) -> tuple[tuple[ControlSpec, ...], tuple[str, ...]]:
    """Recalled ControlNets named only by file (A1111's model name, ComfyUI's `control_net_name`) matched by name,
    case-insensitively, against the ControlNet files found here (`find_controlnets`); (the specs with the paths
    found, a sentence per ControlNet that is not here). A spec whose file exists is kept as it is."""
    by_name: dict[str, Path] = {}
    for path in available:
        by_name.setdefault(Path(path).name.lower(), Path(path))
    out: list[ControlSpec] = []
    missing: list[str] = []
    for spec in specs:
        file = Path(spec.file)
        if not file.is_file():
            found = by_name.get(file.name.lower())
            if found is None:
                missing.append(
                    f"ControlNet {file.name} is not in the ControlNet folders here; choose it again."
                )
            else:
                spec = replace(spec, file=found, file_hash=None)  # the hash is of the file used from now on
        out.append(spec)
    return tuple(out), tuple(missing)
