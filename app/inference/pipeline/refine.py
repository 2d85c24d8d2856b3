"""The init image of an inpainting or outpainting job: read once, laid on the canvas, masked, composited back.

`sized_for_source` gives a masked job the canvas size (the init image's own, plus the outpaint, made a
multiple of 16) before the request is resolved; `load_source` reads the init image and the mask and prepares
what sampling and the final composite need; `Source.finish` turns a decoded canvas into the result, whose
unmasked pixels are the init image's own.
"""

from __future__ import annotations

import hashlib
import io
import logging
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from app.inference.api.errors import InvalidRequestError
from app.inference.api.request import GenerationRequest
from app.inference.pipeline.canvas import Canvas, check_mask, composite, feather, grow_mask, mask_from_image
from app.inference.sampling.masked import is_soft

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SourceFile:
    """An image file read once: its decoded pixels and the SHA-256 of its bytes (for "made from ...")."""

    path: Path
    image: object  # PIL.Image.Image, loaded
    sha256: str


def read_image_file(path: Path, what: str) -> SourceFile:
    from PIL import Image, UnidentifiedImageError

    try:
        data = Path(path).read_bytes()
        image = Image.open(io.BytesIO(data))
        image.load()
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError) as exc:
        raise InvalidRequestError(f"{path}: cannot read the {what} ({exc.__class__.__name__})") from None
    return SourceFile(Path(path), image, hashlib.sha256(data).hexdigest())


def image_size_of(path: Path) -> tuple[int, int]:
    """(W, H) from the file's header."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return im.size
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError) as exc:
        raise InvalidRequestError(f"{path}: cannot read the init image ({exc.__class__.__name__})") from None


def sized_for_source(request: GenerationRequest) -> GenerationRequest:
    """A masked job samples at the canvas size; other jobs are returned unchanged."""
    if not request.inpaints or request.init_image is None:
        return request
    width, height = Canvas.around(image_size_of(request.init_image), request.outpaint).size
    warnings = request.warnings
    asked = (request.width or width, request.height or height)
    if asked != (width, height):
        warnings += (
            f"inpainting keeps the init image's size: sampling at {width}x{height}, not {asked[0]}x{asked[1]}",
        )
    return replace(request, width=width, height=height, warnings=warnings)


@dataclass(frozen=True, slots=True)
class Source:
    """What a masked job keeps of its init image."""

    canvas: Canvas
    pixels: np.ndarray  # (H, W, 3) uint8: the canvas, new area edge-extended
    mask: torch.Tensor  # (H, W) float32: the grown mask sampling uses (1 = regenerate)
    alpha: torch.Tensor  # (H, W) float32: the feathered composite mask
    soft: bool  # the mask has values between 0 and 1: differential diffusion
    alpha_mask: bool  # the mask file was read from its transparency
    sha256: str  # of the init image file
    mask_sha256: str | None

    def vae_input(self) -> torch.Tensor:
        """(1, 3, H, W) float32 in [-1, 1]: the canvas for the VAE encoder."""
        x = torch.from_numpy(self.pixels.astype(np.float32) / 255.0).permute(2, 0, 1)[None]
        return 2.0 * x.contiguous() - 1.0

    def finish(self, generated: np.ndarray) -> np.ndarray:
        """(H, W, 3) uint8 decoded canvas -> the result: composited onto the init image, alignment cropped."""
        return self.canvas.crop(composite(self.pixels, generated, self.alpha))


def load_source(request: GenerationRequest) -> Source:
    """Read the init image and the mask of a masked job and prepare them (InvalidRequestError when unusable)."""
    init = read_image_file(request.init_image, "init image")
    pixels = np.asarray(init.image.convert("RGB"))  # (H, W, 3) uint8
    size = (pixels.shape[1], pixels.shape[0])
    mask, mask_sha, from_alpha = None, None, False
    if request.mask_image is not None:
        mask_file = read_image_file(request.mask_image, "mask")
        mask, from_alpha = mask_from_image(mask_file.image)
        check_mask(mask, size, str(request.mask_image), outpainting=any(request.outpaint))
        mask_sha = mask_file.sha256
    canvas = Canvas.around(size, request.outpaint)
    full = canvas.extend_mask(mask)  # (H', W')
    grown = grow_mask(full, request.mask_grow)
    return Source(
        canvas=canvas,
        pixels=canvas.extend(pixels),
        mask=grown,
        alpha=feather(grown, request.mask_blur),
        soft=is_soft(grown),
        alpha_mask=from_alpha,
        sha256=init.sha256,
        mask_sha256=mask_sha,
    )
