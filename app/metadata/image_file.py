"""The one image writer: pixels and the image's parameters in, a complete PNG on disk out (atomically).

Every image the app writes goes through `write_image`: `sd35-studio generate`, the window's inference worker,
File ▸ Save Image As, the gallery's own saves. Its chunks are a pure function of the parameters
(`image_chunks`), so one image written by any of them carries byte-identical metadata:
  parameters   A1111 text (`app.metadata.a1111.infotext_of`: also what Copy Parameters gives)
  sd35-studio  our versioned JSON (`ImageParams.to_json`)
  prompt       ComfyUI API-format graph
  workflow     ComfyUI UI-format graph
The model hash is in the first two when the parameters know it. Torch-free and Qt-free.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from app.metadata.a1111 import infotext_of
from app.metadata.comfy_graph import ComfyFiles, comfy_chunks
from app.metadata.params import ImageParams
from app.metadata.png_info import COMFY_PROMPT_KEY, COMFY_WORKFLOW_KEY, PARAMETERS_KEY, STUDIO_KEY, save_png

log = logging.getLogger(__name__)


def finished_image_params(event: Any) -> ImageParams:
    """The parameters of an image the engine finished, from the facts its `ImageFinished` event carries (the
    resolved request, the seed, the model's name and variant, fp8, the model hash when the engine knows it): what
    the CLI and the window both write.

    Our engine leaves the model hash out: the gallery computes it in the background, so saving never waits."""
    from app import __version__

    return ImageParams.from_request(
        event.request, event.seed, variant=getattr(event, "variant", "") or None,
        model_name=getattr(event, "model_name", "") or None, model_hash=getattr(event, "model_hash", None) or None,
        fp8=bool(getattr(event, "fp8", False)), app_version=__version__,
        source_sha256=getattr(event, "source_sha256", None), mask_alpha=bool(getattr(event, "mask_alpha", False)),
        mask_soft=bool(getattr(event, "mask_soft", False)),
    )  # fmt: skip


def comfy_files(params: ImageParams) -> ComfyFiles:
    """The file names ComfyUI's loaders would list for the image's model (the checkpoint from its name)."""
    return ComfyFiles(checkpoint=f"{params.model_name or 'sd3.5_large'}.safetensors")


def image_chunks(params: ImageParams, files: ComfyFiles | None = None) -> dict[str, str]:
    """The text chunks of one image, by PNG keyword, in the order they are written."""
    prompt, workflow = comfy_chunks(params, files or comfy_files(params))
    return {
        PARAMETERS_KEY: infotext_of(params),
        STUDIO_KEY: params.to_json(),
        COMFY_PROMPT_KEY: prompt,
        COMFY_WORKFLOW_KEY: workflow,
    }


def write_image(path: Path, pixels: np.ndarray, params: ImageParams, files: ComfyFiles | None = None) -> Path:
    """Write the PNG (temporary file, fsync, rename: a crash never leaves half an image) with all its chunks.

    `pixels` is (H, W, 3) uint8. Blocking (PNG compression, fsync): call it off the UI thread.
    Raises DiskFullError (an OSError with an actionable message) or another OSError; nothing is left behind.
    """
    chunks = image_chunks(params, files)
    save_png(
        Path(path),
        np.ascontiguousarray(pixels, dtype=np.uint8),
        chunks[PARAMETERS_KEY],
        parameters_json=chunks[STUDIO_KEY],
        comfy_prompt=chunks[COMFY_PROMPT_KEY],
        comfy_workflow=chunks[COMFY_WORKFLOW_KEY],
    )
    log.info("saved %s", path)
    return Path(path)
