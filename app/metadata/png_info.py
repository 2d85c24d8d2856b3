"""PNG metadata chunks, written atomically and read back without decoding pixels.

Chunks of our images (`app.metadata.image_file` assembles them; `save_png` writes them):
  parameters   tEXt (iTXt if not Latin-1)  A1111 infotext (app.metadata.a1111.infotext_of)
  sd35-studio  iTXt, UTF-8                  our versioned parameters as JSON (app.metadata.params)
  prompt       tEXt                         ComfyUI API-format graph (what ComfyUI's SaveImage writes)
  workflow     tEXt                         ComfyUI UI-format graph (what dropping the PNG on ComfyUI loads)
"""

from __future__ import annotations

import errno
import logging
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from PIL import Image, PngImagePlugin

from app.metadata.file_modes import make_shareable

log = logging.getLogger(__name__)

PARAMETERS_KEY = "parameters"
STUDIO_KEY = "sd35-studio"
COMFY_PROMPT_KEY = "prompt"
COMFY_WORKFLOW_KEY = "workflow"

_DISK_FULL = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


class DiskFullError(OSError):
    """The image could not be written: the disk (or the user's quota) is full. Nothing was left behind."""


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
