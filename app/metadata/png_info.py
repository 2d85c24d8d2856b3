"""PNG metadata: A1111's infotext, our full parameters as JSON, ComfyUI graphs; written atomically.

A1111's infotext (`modules/processing.py` `create_infotext`, `modules/infotext_utils.py` `quote`): the
prompt, then `Negative prompt: ...` when there is one, then one line of `Key: value` pairs joined by ", " in
a fixed key order; a value containing a comma, a colon or a newline is written as a JSON string; `None`
values are left out; the whole text is stripped. A1111's PNG Info, Civitai and most metadata readers parse
exactly this.

Chunks written by `save_png`:
  parameters   tEXt (iTXt if not Latin-1)  A1111 infotext
  sd35-studio  iTXt, UTF-8                  our versioned parameters as JSON (app.metadata.params)
  prompt       tEXt                         ComfyUI API-format graph (what ComfyUI's SaveImage writes)
  workflow     tEXt                         ComfyUI UI-format graph (what dropping the PNG on ComfyUI loads)
"""

from __future__ import annotations

import errno
import json
import logging
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from PIL import Image, PngImagePlugin

from app.inference.api.request import GenerationRequest
from app.metadata.file_modes import make_shareable

log = logging.getLogger(__name__)

A1111_SAMPLER_NAMES = {"euler": "Euler", "euler_ancestral": "Euler a", "dpmpp_2m": "DPM++ 2M"}
A1111_SCHEDULE_NAMES = {"normal": "Normal", "simple": "Simple", "sgm_uniform": "SGM Uniform", "beta": "Beta"}

PARAMETERS_KEY = "parameters"
STUDIO_KEY = "sd35-studio"
COMFY_PROMPT_KEY = "prompt"
COMFY_WORKFLOW_KEY = "workflow"

_DISK_FULL = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


class DiskFullError(OSError):
    """The image could not be written: the disk (or the user's quota) is full. Nothing was left behind."""


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


def a1111_fields(
    request: GenerationRequest,
    seed: int,
    model_name: str | None,
    model_hash: str | None = None,
    *,
    fp8: bool = False,
    version: str | None = None,
) -> dict[str, object]:
    """The infotext fields of one image of a resolved request, in A1111's order, then our SD3.5 extras."""
    r = request
    slg = bool(r.slg_scale and r.slg_layers)
    return {
        "Steps": r.steps,
        "Sampler": A1111_SAMPLER_NAMES[r.sampler],
        "Schedule type": A1111_SCHEDULE_NAMES[r.scheduler],
        "CFG scale": f"{r.cfg:g}",
        "Seed": seed,
        "Size": f"{r.width}x{r.height}",
        "Model hash": model_hash,
        "Model": model_name,
        "FP8 weight": "Enable" if fp8 else None,
        "Denoising strength": f"{r.denoise:g}" if r.init_image is not None else None,
        "RNG": "CPU",  # our start noise always comes from a CPU generator (A1111 leaves out its GPU default)
        "Shift": f"{r.shift:g}",
        "SLG layers": ",".join(map(str, r.slg_layers)) if slg else None,
        "SLG scale": f"{r.slg_scale:g}" if slg else None,
        "SLG range": f"{r.slg_start:g}-{r.slg_end:g}" if slg else None,
        "Negative until": f"{r.negative_until:g}" if r.negative_until is not None else None,
        "T5": None if r.use_t5 else "off",
        "Text mode": None if r.text_mode == "full" else r.text_mode,
        "Version": version,
    }


def a1111_infotext(
    request: GenerationRequest,
    seed: int,
    model_name: str | None,
    model_hash: str | None = None,
    *,
    fp8: bool = False,
    version: str | None = None,
) -> str:
    fields = a1111_fields(request, seed, model_name, model_hash, fp8=fp8, version=version)
    return format_infotext(request.prompt, request.negative, fields)


def png_info(
    infotext: str,
    *,
    parameters_json: str | None = None,
    comfy_prompt: str | None = None,
    comfy_workflow: str | None = None,
    extra_itxt: Mapping[str, str] | None = None,
) -> PngImagePlugin.PngInfo:
    info = PngImagePlugin.PngInfo()
    info.add_text(PARAMETERS_KEY, infotext)  # Pillow switches to iTXt by itself when the text is not Latin-1
    if parameters_json is not None:
        info.add_itxt(STUDIO_KEY, parameters_json)
    if comfy_prompt is not None:
        info.add_text(COMFY_PROMPT_KEY, comfy_prompt)
    if comfy_workflow is not None:
        info.add_text(COMFY_WORKFLOW_KEY, comfy_workflow)
    for key, value in (extra_itxt or {}).items():
        info.add_itxt(key, value)
    return info


def save_png(
    path: Path,
    pixels: np.ndarray,
    infotext: str,
    *,
    parameters_json: str | None = None,
    comfy_prompt: str | None = None,
    comfy_workflow: str | None = None,
    extra_itxt: Mapping[str, str] | None = None,
) -> None:
    """Write atomically (temporary file in the same folder, flush, fsync, rename): a crash or a full disk
    never leaves half a PNG, and an existing file at `path` is replaced only by a complete one.

    Raises DiskFullError (an OSError) with an actionable message when the disk is full.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    info = png_info(
        infotext,
        parameters_json=parameters_json,
        comfy_prompt=comfy_prompt,
        comfy_workflow=comfy_workflow,
        extra_itxt=extra_itxt,
    )
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}-", suffix=".png.tmp", dir=path.parent)
    try:
        make_shareable(fd)
        with os.fdopen(fd, "wb") as f:
            Image.fromarray(pixels, "RGB").save(f, format="PNG", pnginfo=info)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.errno in _DISK_FULL:
            raise DiskFullError(
                exc.errno,
                f"not enough disk space to save {path.name}: free some space in {path.parent} "
                "or choose another output folder; nothing was written",
            ) from exc
        raise
    _fsync_folder(path.parent)


def _fsync_folder(folder: Path) -> None:
    """Make the rename itself durable (POSIX); a no-op where folders cannot be opened (Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
