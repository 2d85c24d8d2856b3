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
    """(1, 1, H, W) -> gx, gy with OpenCV's 3x3 Sobel kernels (edges reflected, BORDER_REFLECT_101)."""
    kx = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]]).view(1, 1, 3, 3)
    p = F.pad(g, (1, 1, 1, 1), mode="reflect")
    return F.conv2d(p, kx), F.conv2d(p, kx.transpose(2, 3))


def canny(image: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """Edges (white on black) of an image in [0, 1]; thresholds on the L1 gradient of 0..255 grey levels."""
    g = grey(image) * 255.0
    gx, gy = _sobel(g)
    mag = (gx.abs() + gy.abs())[0, 0]  # (H, W)
    # Direction of the gradient in four bins: 0 horizontal, 1 diagonal /, 2 vertical, 3 diagonal \.
    angle = torch.rad2deg(torch.atan2(gy[0, 0], gx[0, 0])) % 180.0
    direction = torch.bucketize(angle, torch.tensor([22.5, 67.5, 112.5, 157.5])) % 4
    padded = F.pad(mag[None, None], (1, 1, 1, 1))[0, 0]  # zero outside
    h, w = mag.shape

    def shifted(dy: int, dx: int) -> torch.Tensor:
        return padded[1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w]

    # Neighbours along the gradient (image rows grow downwards: gy > 0 points down).
    pairs = {0: ((0, -1), (0, 1)), 1: ((-1, -1), (1, 1)), 2: ((-1, 0), (1, 0)), 3: ((-1, 1), (1, -1))}
    keep = torch.zeros_like(mag, dtype=torch.bool)
    for d, (a, b) in pairs.items():
        # one side strict, the other not: a plateau two pixels wide keeps one edge pixel (as OpenCV does)
        local = (mag > shifted(*a)) & (mag >= shifted(*b))
        keep |= (direction == d) & local
    thin = torch.where(keep, mag, torch.zeros_like(mag))
    strong = thin > high
    weak = thin > low
    edges = _hysteresis(strong, weak)
    return edges.float()[None, None].expand(1, 3, h, w).contiguous()


def _hysteresis(strong: torch.Tensor, weak: torch.Tensor) -> torch.Tensor:
    """Weak pixels 8-connected (through weak pixels) to a strong one, grown until nothing changes."""
    edges = strong.float()[None, None]
    allowed = weak.float()[None, None]
    while True:
        grown = F.max_pool2d(edges, 3, stride=1, padding=1) * allowed
        for _ in range(7):  # a few growth steps between the (comparatively costly) convergence checks
            grown = F.max_pool2d(grown, 3, stride=1, padding=1) * allowed
        if torch.equal(grown, edges):
            return edges[0, 0] > 0
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
