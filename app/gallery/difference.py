"""Per-pixel difference of two images as a heat map (black = identical, through purple and orange to yellow)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

log = logging.getLogger(__name__)

# Anchor colours of the map at 0, 0.25, 0.5, 0.75 and 1 of the scale.
_ANCHORS = np.array(
    [[0, 0, 0], [60, 15, 110], [180, 50, 95], [250, 140, 30], [252, 250, 170]], dtype=np.float64
)


@dataclass(frozen=True, slots=True)
class DifferenceStats:
    mean: float  # mean absolute difference, 0-1
    changed: float  # share of pixels differing by more than 2% in any channel
    scale: float  # the difference that maps to the top of the colour scale, 0-1


def _same_size(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    h, w = min(a.shape[0], b.shape[0]), min(a.shape[1], b.shape[1])
    return a[:h, :w, :3], b[:h, :w, :3]


def difference_heatmap(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, DifferenceStats]:
    """(H, W, 3) uint8 heat map and statistics. The scale adapts to the 99th percentile of the difference,
    so subtle seed-to-seed changes remain visible; images of different sizes are compared on their overlap."""
    a, b = _same_size(np.asarray(a), np.asarray(b))
    diff = np.abs(a.astype(np.int16) - b.astype(np.int16)).max(axis=-1).astype(np.float64) / 255.0
    scale = float(max(np.percentile(diff, 99), 1 / 255))
    t = np.clip(diff / scale, 0.0, 1.0) * (len(_ANCHORS) - 1)
    low = np.floor(t).astype(np.int64).clip(0, len(_ANCHORS) - 2)
    frac = (t - low)[..., None]
    heat = _ANCHORS[low] * (1 - frac) + _ANCHORS[low + 1] * frac
    stats = DifferenceStats(float(diff.mean()), float((diff > 0.02).mean()), scale)
    return heat.round().astype(np.uint8), stats
