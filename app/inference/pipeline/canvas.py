"""Pixel-space pieces of inpainting and outpainting: read a mask, grow it, extend the canvas, composite.

Masks are (H, W) float32 tensors in [0, 1], 1 = regenerate. Images are (H, W, 3) uint8 arrays.
A mask file is read one of two ways:
  - grey (or colour, or with an alpha channel that is opaque everywhere): its luminance, white = regenerate;
  - with transparency: ComfyUI's `LoadImage` MASK rule, 1 − alpha, so the transparent (erased) area is redone.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from app.inference.api.errors import InvalidRequestError

log = logging.getLogger(__name__)

ALIGN = 16  # sampling sizes are multiples of 16 px (VAE factor 8 x patch 2)


# ------------------------------------------------------------------------------------------------ reading


def mask_from_image(image) -> tuple[torch.Tensor, bool]:  # image: PIL.Image.Image
    """A PIL image -> ((H, W) float32 mask, read from its transparency) (see the module's two rules)."""
    has_alpha = image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info)
    if has_alpha:
        alpha = np.asarray(image.convert("RGBA"))[..., 3]
        if alpha.min() < 255:
            return torch.from_numpy(1.0 - alpha.astype(np.float32) / 255.0), True
    grey = np.asarray(image.convert("L")).astype(np.float32) / 255.0
    return torch.from_numpy(grey), False


def check_mask(mask: torch.Tensor, image_size: tuple[int, int], name: str, outpainting: bool) -> None:
    """One sentence when the mask cannot be used: another size than the init image, or nothing to redo."""
    h, w = mask.shape
    if (w, h) != image_size:
        raise InvalidRequestError(
            f"{name}: the mask is {w}×{h} px but the init image is {image_size[0]}×{image_size[1]} px; "
            "use a mask of the init image's size"
        )
    if not outpainting and float(mask.max()) == 0.0:
        raise InvalidRequestError(
            f"{name}: the mask is all black, so nothing would be regenerated; paint the area to redo in white"
        )


# ------------------------------------------------------------------------------------------------ growing


def grow_mask(mask: torch.Tensor, pixels: int) -> torch.Tensor:
    """Grey dilation by `pixels` steps of the 3×3 cross (ComfyUI `GrowMask`, tapered corners): (H, W) -> (H, W).
    One step is the larger of a vertical and a horizontal 3-px max (max-pooling, zero outside the image)."""
    m = mask[None, None]  # (1, 1, H, W)
    for _ in range(pixels):
        vertical = F.max_pool2d(m, (3, 1), stride=1, padding=(1, 0))
        horizontal = F.max_pool2d(m, (1, 3), stride=1, padding=(0, 1))
        m = torch.maximum(vertical, horizontal)
    return m[0, 0].clamp(min=0.0) if pixels else mask.clone()


def feather(mask: torch.Tensor, radius: int) -> torch.Tensor:
    """Separable Gaussian blur with σ = radius/3, cut at `radius` px: (H, W) -> (H, W) in [0, 1].
    A pixel farther than `radius` from every masked pixel stays exactly 0."""
    if radius <= 0:
        return mask.clone()
    sigma = radius / 3.0
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)
    kernel = kernel / kernel.sum()  # (2r+1,)
    m = mask[None, None]  # (1, 1, H, W)
    m = F.conv2d(F.pad(m, (radius, radius, 0, 0), mode="replicate"), kernel.view(1, 1, 1, -1))
    m = F.conv2d(F.pad(m, (0, 0, radius, radius), mode="replicate"), kernel.view(1, 1, -1, 1))
    out = m[0, 0].clamp(0.0, 1.0)
    out = torch.where(out < 1e-6, torch.zeros_like(out), out)  # float dust of the convolution: exactly 0 ...
    return torch.where(out > 1.0 - 1e-6, torch.ones_like(out), out)  # ... and exactly 1


# ------------------------------------------------------------------------------------------------ canvas


@dataclass(frozen=True, slots=True)
class Canvas:
    """Where the init image sits on the sampling canvas. `pad` is the (left, top, right, bottom) px added
    around it: the requested outpaint plus alignment px on the right and bottom, cropped off at the end."""

    image_size: tuple[int, int]  # (W, H) of the init image
    outpaint: tuple[int, int, int, int]
    align: tuple[int, int]  # extra (right, bottom) px that make the canvas a multiple of ALIGN

    @classmethod
    def around(cls, image_size: tuple[int, int], outpaint: tuple[int, int, int, int]) -> Canvas:
        left, top, right, bottom = outpaint
        w, h = image_size[0] + left + right, image_size[1] + top + bottom
        return cls(image_size, outpaint, ((-w) % ALIGN, (-h) % ALIGN))

    @property
    def pad(self) -> tuple[int, int, int, int]:
        left, top, right, bottom = self.outpaint
        return left, top, right + self.align[0], bottom + self.align[1]

    @property
    def size(self) -> tuple[int, int]:
        """(W, H) sampled: a multiple of ALIGN."""
        left, top, right, bottom = self.pad
        return self.image_size[0] + left + right, self.image_size[1] + top + bottom

    @property
    def output_size(self) -> tuple[int, int]:
        """(W, H) of the result: the init image grown by exactly the requested outpaint."""
        return self.size[0] - self.align[0], self.size[1] - self.align[1]

    def extend(self, pixels: np.ndarray) -> np.ndarray:
        """(H, W, 3) uint8 -> the canvas, new area filled by repeating the edge pixels outwards."""
        left, top, right, bottom = self.pad
        return np.pad(pixels, ((top, bottom), (left, right), (0, 0)), mode="edge")

    def extend_mask(self, mask: torch.Tensor | None) -> torch.Tensor:
        """(H, W) mask of the init image (None: keep all of it) -> the canvas's, the new area = 1. Alignment px
        on a side that is not outpainted are kept (0), so the mask does not grow from them into the image."""
        left, top, right, bottom = self.pad
        w, h = self.image_size
        out = torch.ones((h + top + bottom, w + left + right), dtype=torch.float32)
        if self.outpaint[2] == 0:
            out[:, left + w :] = 0.0
        if self.outpaint[3] == 0:
            out[top + h :, :] = 0.0
        out[top : top + h, left : left + w] = 0.0 if mask is None else mask
        return out

    def crop(self, pixels: np.ndarray) -> np.ndarray:
        """(H, W, 3) canvas -> the output without the alignment px."""
        w, h = self.output_size
        return pixels[:h, :w]


# ------------------------------------------------------------------------------------------------ composite


def composite(original: np.ndarray, generated: np.ndarray, alpha: torch.Tensor) -> np.ndarray:
    """generated·α + original·(1 − α) in pixel space, each (H, W, 3) uint8; where α = 0 the original's
    pixels are returned untouched, where α = 1 the generated ones."""
    a = alpha.numpy()[..., None]  # (H, W, 1)
    orig = original.astype(np.float32)
    mixed = np.clip(np.rint(orig + (generated.astype(np.float32) - orig) * a), 0, 255).astype(np.uint8)
    return np.where(a > 0, mixed, original)
