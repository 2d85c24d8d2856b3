"""Writing PNGs with their generation parameters as an A1111-style `parameters` text chunk.

A1111's infotext: the prompt, then `Negative prompt: ...`, then one line of `Key: value` pairs separated by
", " (values containing a comma, colon or quote are JSON-quoted). Metadata readers (A1111 PNG Info, Civitai)
parse exactly this.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from PIL import Image, PngImagePlugin

A1111_SAMPLER_NAMES = {"euler": "Euler", "euler_ancestral": "Euler a", "dpmpp_2m": "DPM++ 2M"}
A1111_SCHEDULE_NAMES = {"normal": "Normal", "simple": "Simple", "sgm_uniform": "SGM Uniform", "beta": "Beta"}


def _quote(value: object) -> str:
    text = str(value)
    if any(ch in text for ch in ',:"\n'):
        return json.dumps(text, ensure_ascii=False)
    return text


def format_infotext(prompt: str, negative: str, fields: Mapping[str, object]) -> str:
    lines = [prompt]
    if negative:
        lines.append(f"Negative prompt: {negative}")
    lines.append(", ".join(f"{k}: {_quote(v)}" for k, v in fields.items() if v is not None and v != ""))
    return "\n".join(lines)


def save_png(path: Path, pixels: np.ndarray, infotext: str) -> None:
    """Write atomically (temporary file in the same folder, then rename), so a crash never leaves half a PNG."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", infotext)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}-", suffix=".png.tmp", dir=path.parent)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)  # mkstemp creates 0600; an image should get the usual permissions
        with os.fdopen(fd, "wb") as f:
            Image.fromarray(pixels, "RGB").save(f, format="PNG", pnginfo=info)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
