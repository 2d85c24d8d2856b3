"""Decoding a finished latent within the memory there is: whole when it fits, in tiles when it does not.

Tiles are a fallback, never the default: a tiled decode is close to the whole one, not equal to it
(vae_tiling.py). The whole decode is planned against the memory free now; when the estimate says it cannot
fit, or the accelerator runs out anyway, the latent is decoded in tiles sized for half of what is free.
On the CPU the estimate is what protects the app: past the free RAM Linux swaps or kills the process instead
of raising MemoryError.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch

from app.inference.memory.device import available_ram_bytes
from app.inference.memory.oom import is_out_of_memory
from app.inference.networks.vae import VAE
from app.inference.networks.vae_tiling import DEFAULT_OVERLAP, MIN_TILE, TileConfig

log = logging.getLogger(__name__)


def free_memory_bytes(device: torch.device) -> int:
    """Bytes a decode on `device` could still allocate: the driver's free memory plus what torch's caching
    allocator holds but does not use (CUDA), else the host's available RAM (CPU; MPS shares it)."""
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device))
    return available_ram_bytes()


def half_size_tiling(h: int, w: int) -> TileConfig:
    """Tiles of about half the latent's longer side (a multiple of 8, at least MIN_TILE)."""
    side = max(MIN_TILE, (max(h, w) // 2) // 8 * 8)
    return TileConfig(max_tile=side, overlap=min(DEFAULT_OVERLAP, side // 4))


def decode_fitting(
    vae: VAE,
    latent: torch.Tensor,
    free_bytes: Callable[[], int] | None = None,
) -> tuple[torch.Tensor, TileConfig | None]:
    """(B, z, h, w) latent (after `process_out`) -> ((B, 3, 8h, 8w) float32 image, the tiling used or None)."""
    probe = free_bytes or (lambda: free_memory_bytes(latent.device))
    tiling = vae.tiling_for(tuple(latent.shape), probe())
    if tiling is None:
        try:
            return vae.decode(latent), None
        except Exception as exc:
            if not is_out_of_memory(exc):
                raise
            log.warning("the VAE ran out of memory decoding %s; decoding in tiles", tuple(latent.shape))
            del exc  # drop the traceback's references to the failed decode's tensors before retrying
            if latent.device.type == "cuda":
                torch.cuda.empty_cache()
            tiling = vae.tiling_for(tuple(latent.shape), probe() // 2)
            if tiling is None:  # the estimate still says it fits: the estimate was wrong, halve the tiles
                tiling = half_size_tiling(latent.shape[-2], latent.shape[-1])
    log.info("decoding %s in tiles of %d latent px", tuple(latent.shape), tiling.max_tile)
    return vae.decode(latent, tiling), tiling
