"""Tiled VAE decoding: decode a latent in overlapping tiles and feather the overlaps, so the decoder's peak
activation memory is set by the tile size instead of the image size.

A tile sees only its own part of the latent: the decoder's GroupNorm statistics and its mid-block attention
become per tile, and pixels near a tile's edge see zero padding instead of their neighbours. The overlaps
hide this: each output pixel is the weighted mean of every tile that covers it, with weights that ramp
linearly from ~0 at a tile's inner edge to 1 where the next tile's overlap ends. The result is close to the
untiled decode, not equal to it (bench/vae.py measures by how much; on a smooth image's latent the random-weight
VAE differs far more than on noise, so check with real weights before tiling when memory is not short); with
one tile covering the whole latent it is equal, bit for bit.

`plan_tiling` is the pure decision: given the latent size and the bytes free for activations, it returns None
(decode whole) or the largest tiling whose decode fits.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

log = logging.getLogger(__name__)

MIN_TILE = 32  # latent pixels (256 image pixels): below this the seams dominate and the overhead explodes
DEFAULT_OVERLAP = 16  # latent pixels (128 image pixels) shared by neighbouring tiles
# Peak activations of an untiled decode, in elements per output pixel per unit of the level-1 width
# (ch * ch_mult[1], 256 for SD3): the upsample into level 0 holds its input, the upsampled map and the conv's
# output (3 maps of that width), and the first level-0 resnet holds x, norm1(x) and silu(...) at that width.
# bench/vae.py prints the measured peak next to this estimate.
PEAK_MAPS = 3.0
SAFETY = 1.25  # allocator slack, the output image, the float32 blend buffers


@dataclass(frozen=True, slots=True)
class TileConfig:
    """Tiles of at most `max_tile` x `max_tile` latent pixels overlapping by at least `overlap`."""

    max_tile: int = 64
    overlap: int = DEFAULT_OVERLAP

    def __post_init__(self) -> None:
        if self.max_tile < 1 or self.overlap < 0:
            raise ValueError(f"tile size must be positive and overlap non-negative, got {self}")
        if self.overlap >= self.max_tile:
            raise ValueError(f"overlap {self.overlap} must be smaller than the tile {self.max_tile}")


# ----------------------------------------------------------------------------------------------------
# The tile grid
# ----------------------------------------------------------------------------------------------------


def tile_spans(length: int, max_tile: int, overlap: int) -> list[tuple[int, int]]:
    """[start, end) spans covering 0..length: the fewest tiles of at most `max_tile` whose neighbours share at
    least `overlap`, all the same size and spread evenly (so no tile is wasted on a sliver at the end)."""
    if length <= max_tile:
        return [(0, length)]
    n = math.ceil((length - overlap) / (max_tile - overlap))
    size = min(length, math.ceil((length - overlap) / n) + overlap)
    # integer strides differ by at most one and never exceed size - overlap
    return [(s, s + size) for s in ((i * (length - size)) // (n - 1) for i in range(n))]


def _ramp(spans: list[tuple[int, int]], i: int, scale: int) -> torch.Tensor:
    """Blend weights of tile `i` along one axis, in output pixels: a linear ramp over each overlap with a
    neighbour ((k + 0.5) / width, never 0), 1 elsewhere and at the image borders."""
    start, end = spans[i]
    w = torch.ones((end - start) * scale)
    if i > 0 and (width := (spans[i - 1][1] - start) * scale) > 0:
        w[:width] = torch.minimum(w[:width], (torch.arange(width) + 0.5) / width)
    if i + 1 < len(spans) and (width := (end - spans[i + 1][0]) * scale) > 0:
        w[-width:] = torch.minimum(w[-width:], (torch.arange(width, 0, -1) - 0.5) / width)
    return w


def decode_tiled(
    decode: Callable[[torch.Tensor], torch.Tensor],
    z: torch.Tensor,
    tiling: TileConfig,
    scale: int = 8,
) -> torch.Tensor:
    """(B, C, h, w) latent -> (B, 3, scale*h, scale*w) float32 image, decoded tile by tile with `decode`
    ((B, C, th, tw) -> (B, 3, scale*th, scale*tw)) and feather-blended."""
    b, _, h, w = z.shape
    rows = tile_spans(h, tiling.max_tile, tiling.overlap)
    cols = tile_spans(w, tiling.max_tile, tiling.overlap)
    log.debug("tiled decode of %dx%d latent: %d x %d tiles", h, w, len(rows), len(cols))
    out: torch.Tensor | None = None
    weight = torch.zeros(h * scale, w * scale, device=z.device)  # (H, W)
    for i, (r0, r1) in enumerate(rows):
        wy = _ramp(rows, i, scale).to(z.device)
        for j, (c0, c1) in enumerate(cols):
            tile = decode(z[:, :, r0:r1, c0:c1]).float()  # (B, 3, scale*th, scale*tw)
            if out is None:
                out = torch.zeros(b, tile.shape[1], h * scale, w * scale, device=tile.device)
            mask = wy[:, None] * _ramp(cols, j, scale).to(z.device)[None, :]  # (scale*th, scale*tw)
            ys, xs = slice(r0 * scale, r1 * scale), slice(c0 * scale, c1 * scale)
            out[:, :, ys, xs] += tile * mask
            weight[ys, xs] += mask
            del tile
    assert out is not None  # at least one tile
    return out / weight


# ----------------------------------------------------------------------------------------------------
# When to tile
# ----------------------------------------------------------------------------------------------------


def decode_peak_bytes(
    latent_hw: tuple[int, int],
    dtype: torch.dtype,
    level1_width: int = 256,
    scale: int = 8,
    batch: int = 1,
) -> int:
    """Estimated peak activation bytes of an untiled decode of a (h, w) latent (weights not included).
    `level1_width` is the decoder's second-highest-resolution width, ch * ch_mult[1] (256 for SD3)."""
    pixels = latent_hw[0] * latent_hw[1] * scale * scale
    element = torch.empty((), dtype=dtype).element_size()
    return int(SAFETY * PEAK_MAPS * level1_width * pixels * element * batch)


def plan_tiling(
    latent_hw: tuple[int, int],
    free_bytes: int,
    dtype: torch.dtype,
    *,
    level1_width: int = 256,
    scale: int = 8,
    batch: int = 1,
    overlap: int = DEFAULT_OVERLAP,
) -> TileConfig | None:
    """None when the whole latent decodes within `free_bytes` of activation memory; otherwise the largest
    square tiling (a multiple of 8 latent pixels, at least MIN_TILE) whose tile decode fits. When not even
    MIN_TILE fits, MIN_TILE is returned anyway: the smallest footprint on offer."""
    h, w = latent_hw
    if decode_peak_bytes(latent_hw, dtype, level1_width, scale, batch) <= free_bytes:
        return None
    side = max(h, w) - max(h, w) % 8
    while side > MIN_TILE and decode_peak_bytes((min(side, h), min(side, w)), dtype, level1_width, scale,
                                                 batch) > free_bytes:  # fmt: skip
        side -= 8
    side = max(MIN_TILE, side)
    return TileConfig(max_tile=side, overlap=min(overlap, side // 4))
