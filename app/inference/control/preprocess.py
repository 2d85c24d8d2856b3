"""Control-map preprocessors in plain torch: Gaussian blur, Canny edges, a supplied depth map (SD35_ADDONS.md §2.1).

Every function takes and returns (1, 3, H, W) float32 images in [0, 1] on the CPU. Canny is our own
implementation of the classic algorithm with OpenCV's conventions (3x3 Sobel on 0..255 grey levels, L1 gradient
magnitude |gx| + |gy|, non-maximum suppression in four directions, hysteresis from the high threshold), so the
usual OpenCV thresholds (100 / 200) mean the same here; no image-processing dependency is needed for it
(bench/controlnet_bench.py times it at 1024²).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from app.inference.api.control import ControlPreprocess

_LUMA = (0.299, 0.587, 0.114)  # ITU-R 601, as PIL's convert("L") and OpenCV's cvtColor


def grey(image: torch.Tensor) -> torch.Tensor:
    """(1, 3, H, W) -> (1, 1, H, W) luma."""
    w = torch.tensor(_LUMA, dtype=image.dtype).view(1, 3, 1, 1)
    return (image * w).sum(dim=1, keepdim=True)


def gaussian_blur(image: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian of standard deviation `sigma` px (kernel ±3 sigma), edges replicated."""
    radius = max(1, math.ceil(3 * sigma))
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-(x**2) / (2 * sigma**2))
    k = k / k.sum()
    c = image.shape[1]
    out = F.pad(image, (radius, radius, 0, 0), mode="replicate")
    out = F.conv2d(out, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)  # along W
    out = F.pad(out, (0, 0, radius, radius), mode="replicate")
    return F.conv2d(out, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)  # along H


def _sobel(g: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(H, W) -> gx, gy with OpenCV's 3x3 Sobel kernels (edges reflected, BORDER_REFLECT_101), separably."""
    p = F.pad(g[None, None], (1, 1, 1, 1), mode="reflect")[0, 0]
    rows = p[:-2] + 2 * p[1:-1] + p[2:]  # (H, W + 2) smoothed along y
    cols = p[:, :-2] + 2 * p[:, 1:-1] + p[:, 2:]  # (H + 2, W) smoothed along x
    return rows[:, 2:] - rows[:, :-2], cols[2:] - cols[:-2]


_TAN_22_5 = math.tan(math.radians(22.5))
_TAN_67_5 = math.tan(math.radians(67.5))


def canny(image: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """Edges (white on black) of an image in [0, 1]; thresholds on the L1 gradient of 0..255 grey levels."""
    g = grey(image)[0, 0] * 255.0
    gx, gy = _sobel(g)
    ax, ay = gx.abs(), gy.abs()
    mag = ax + ay  # (H, W)
    # Direction of the gradient in four bins, as OpenCV finds it (tangent comparisons, no atan2):
    # horizontal, vertical, or the diagonal given by the signs (image rows grow downwards: gy > 0 points down).
    horizontal = ay <= ax * _TAN_22_5
    vertical = ay > ax * _TAN_67_5
    diagonal = ~(horizontal | vertical)
    same_sign = (gx > 0) == (gy > 0)
    padded = F.pad(mag[None, None], (1, 1, 1, 1))[0, 0]  # zero outside
    h, w = mag.shape

    def shifted(dy: int, dx: int) -> torch.Tensor:
        return padded[1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w]

    def local_max(a: tuple[int, int], b: tuple[int, int]) -> torch.Tensor:
        # one side strict, the other not: a plateau two pixels wide keeps one edge pixel (as OpenCV does)
        return (mag > shifted(*a)) & (mag >= shifted(*b))

    keep = horizontal & local_max((0, -1), (0, 1))
    keep |= vertical & local_max((-1, 0), (1, 0))
    keep |= diagonal & same_sign & local_max((-1, -1), (1, 1))
    keep |= diagonal & ~same_sign & local_max((-1, 1), (1, -1))
    thin = mag * keep
    edges = _hysteresis(thin > high, thin > low)
    return edges.float()[None, None].expand(1, 3, h, w).contiguous()


def _dilate(mask: torch.Tensor) -> torch.Tensor:
    """3x3 dilation of a (H, W) bool mask by OR-ing its eight shifts (far faster on the CPU than max_pool2d)."""
    h, w = mask.shape
    p = F.pad(mask[None, None].to(torch.uint8), (1, 1, 1, 1))[0, 0].bool()
    out = mask.clone()
    for dy in (0, 1, 2):
        for dx in (0, 1, 2):
            if dy != 1 or dx != 1:
                out |= p[dy : dy + h, dx : dx + w]
    return out


def _hysteresis(strong: torch.Tensor, weak: torch.Tensor) -> torch.Tensor:
    """Weak pixels 8-connected (through weak pixels) to a strong one, grown until nothing changes."""
    edges = strong & weak
    while True:
        grown = edges
        for _ in range(8):  # a few growth steps between the (comparatively costly) convergence checks
            grown = _dilate(grown) & weak
        if torch.equal(grown, edges):
            return edges
        edges = grown


def depth_map(image: torch.Tensor, invert: bool) -> torch.Tensor:
    """A supplied depth map as grey levels (fed as given; `invert` for maps of the opposite convention)."""
    g = grey(image)
    if invert:
        g = 1.0 - g
    return g.expand(-1, 3, -1, -1).contiguous()


def apply_preprocess(image: torch.Tensor, options: ControlPreprocess) -> torch.Tensor:
    """(1, 3, H, W) in [0, 1] at the generation size -> the control map, (1, 3, H, W) in [0, 1]."""
    if options.kind == "blur":
        return gaussian_blur(image, options.blur_radius).clamp(0.0, 1.0)
    if options.kind == "canny":
        return canny(image, options.canny_low, options.canny_high)
    if options.kind == "depth":
        return depth_map(image, options.invert)
    return image
