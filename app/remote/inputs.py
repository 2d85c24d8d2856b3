"""The job's own images, sent to the server: the init image, a masked job's canvas and masks, control images.

Only pixels leave the machine, as PNGs named by their content hash (no local name, no EXIF, no other file).
A masked job (inpaint, outpaint) sends what our local engine samples from, prepared by the engine's own code
(app/inference/pipeline/refine.py, imported lazily: torch is needed only for a masked job):
  the canvas (init image + outpaint, new area edge-extended, 16-px aligned), the grown mask on the canvas
  (grey, white = regenerate; exact: growing keeps a mask's 8-bit levels), the feathered composite mask (8-bit).
The graph then loads them as they are (app/metadata/comfy_uploaded.py): no padding, growing or filling there.
Control images go resized as our engine resizes them (Lanczos, then RGB); the graph preprocesses them with
ComfyUI's nodes, as the PNG's graph says (controlnet_meta.COMFY_NOTE: how those differ from ours).
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from app.inference.api.errors import InvalidRequestError
from app.inference.api.request import GenerationRequest, hires_side
from app.metadata.comfy_graph import ComfyFiles

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SentInputs:
    """What the uploads made of the job: the graph's file names and the facts our ImageFinished carries."""

    files: ComfyFiles
    source_sha256: str | None = None  # of the init image file, for "made from ..."
    mask_alpha: bool = False  # the mask was read from its transparency
    mask_soft: bool = False  # the grown mask has levels between 0 and 1 (differential diffusion)
    result_size: tuple[int, int] | None = None  # (W, H) of each image the server returns


def png_named(prefix: str, pixels: np.ndarray) -> tuple[str, bytes]:
    """(name, PNG bytes) of (H, W, 3) or (H, W) uint8 pixels; the name is the bytes' SHA-256 (20 hex)."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels, dtype=np.uint8)).save(buffer, format="PNG")
    data = buffer.getvalue()
    return f"{prefix}-{hashlib.sha256(data).hexdigest()[:20]}.png", data


def mask_levels(mask: Any) -> np.ndarray:
    """(H, W) float mask in [0, 1] (a torch tensor) -> (H, W) uint8 grey, white = 1."""
    return np.rint(mask.numpy().clip(0.0, 1.0) * 255.0).astype(np.uint8)


def sized(request: GenerationRequest) -> GenerationRequest:
    """A masked job samples at its canvas size, as the local engine sizes it; other jobs are unchanged."""
    if not request.inpaints or request.init_image is None:
        return request
    from app.inference.pipeline.refine import sized_for_source  # torch: only for a masked job

    return sized_for_source(request)


def result_size(req: GenerationRequest, output_size: tuple[int, int] | None) -> tuple[int, int]:
    """(W, H) of the image the server returns: the (cropped) canvas, then the hires pass's size."""
    width, height = output_size or (req.width, req.height)
    if req.hires:  # sized from the first pass's image, as the local engine does (hires_job.py)
        return hires_side(width, req.hires_scale), hires_side(height, req.hires_scale)
    return width, height


class PendingUploads:
    """An `upload` that only records: the job's names are known (and its graph checked against the server's
    nodes) before anything is sent. Each content is sent once; `send` fixes any name the server changed."""

    def __init__(self) -> None:
        self.items: dict[
            str, tuple[str, bytes, str]
        ] = {}  # the name the graph uses -> (name, bytes, subfolder)

    def __call__(self, name: str, data: bytes, subfolder: str = "") -> str:
        key = f"{subfolder}/{name}" if subfolder else name
        self.items[key] = (name, data, subfolder)
        return key

    def send(self, upload, sent: SentInputs) -> SentInputs:
        """Upload everything with `upload(name, data, subfolder) -> server name`; the SentInputs as the server
        named the files (the same names, unless the server said otherwise)."""
        renamed = {}
        for key, (name, data, subfolder) in self.items.items():
            got = upload(name, data, subfolder)
            if got != key:
                renamed[key] = got
        if not renamed:
            return sent
        f = sent.files
        named = lambda n: renamed.get(n, n) if n else n  # noqa: E731
        files = dataclasses.replace(f, init_image=named(f.init_image), mask_image=named(f.mask_image),
                                    composite_mask=named(f.composite_mask),
                                    control_images=tuple(named(n) for n in f.control_images))  # fmt: skip
        return dataclasses.replace(sent, files=files)


def plan_inputs(upload, req: GenerationRequest, files: ComfyFiles, subfolder: str) -> SentInputs:
    """The job's images handed to `upload(name, data, subfolder) -> server name` (a PendingUploads, or a
    ComfyHttp's upload_image); their names in ComfyFiles."""
    sent = SentInputs(files)
    if req.inpaints and req.init_image is not None:
        sent = _send_masked(upload, req, files, subfolder)
    elif req.init_image is not None:
        from app.remote.job import init_image_upload

        name, data = init_image_upload(Path(req.init_image), req.width, req.height)
        sent = dataclasses.replace(sent, files=dataclasses.replace(files, init_image=upload(name, data, subfolder)),
                                   source_sha256=_file_sha256(Path(req.init_image)))  # fmt: skip
    if req.controlnets:
        names = tuple(upload(*control_image_upload(Path(c.image), req.width, req.height), subfolder)
                      for c in req.controlnets)  # fmt: skip
        sent = dataclasses.replace(sent, files=dataclasses.replace(sent.files, control_images=names))
    size = result_size(req, sent.files.output_size)
    return dataclasses.replace(sent, result_size=size)


def _send_masked(upload, req: GenerationRequest, files: ComfyFiles, subfolder: str) -> SentInputs:
    from app.inference.pipeline.refine import load_source  # torch: only for a masked job

    source = load_source(req)  # InvalidRequestError for an unreadable or unusable mask
    canvas = upload(*png_named("canvas", source.pixels), subfolder)
    mask = upload(*png_named("mask", mask_levels(source.mask)), subfolder)
    blend = upload(*png_named("blend", mask_levels(source.alpha)), subfolder) if req.mask_blur else mask
    output = source.canvas.output_size
    files = dataclasses.replace(files, init_image=canvas, mask_image=mask, composite_mask=blend,
                                output_size=None if output == source.canvas.size else output)  # fmt: skip
    return SentInputs(files, source.sha256, source.alpha_mask, source.soft)


def control_image_upload(path: Path, width: int, height: int) -> tuple[str, bytes]:
    """(name, PNG bytes) of a control image as our engine reads it (control/encoding.py: Lanczos to the job's
    size in the image's own mode, then RGB): the server's preprocessing nodes then see the same pixels as ours,
    and its own resize (nearest-exact) has nothing left to do."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            pixels = np.asarray(im.resize((width, height), Image.Resampling.LANCZOS).convert("RGB"))
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError) as exc:
        raise InvalidRequestError(
            f"{path}: cannot read the control image ({exc.__class__.__name__})"
        ) from None
    return png_named("control", pixels)


def _file_sha256(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None
