"""Decoding within the free memory (vae_decode.py): whole when it fits, tiles when the estimate says it will not
or when the decode runs out of memory anyway; other errors are not swallowed."""

from __future__ import annotations

import pytest
import torch

from app.inference.checkpoints.vae_loading import vae_from_state_dict
from app.inference.memory.oom import is_out_of_memory
from app.inference.memory.vae_decode import decode_fitting, half_size_tiling
from app.inference.networks.vae import VAE
from app.inference.networks.vae_tiling import MIN_TILE, decode_peak_bytes
from tests.factory.vae_model import write_tiny_vae

LATENT = (1, 16, 48, 40)  # 384 x 320 px: larger than MIN_TILE, so tiles are possible


@pytest.fixture(scope="module")
def tiny() -> VAE:
    return vae_from_state_dict(write_tiny_vae(prefix="", dtype=torch.float32), source="tiny VAE")


@pytest.fixture(scope="module")
def latent() -> torch.Tensor:
    return torch.randn(*LATENT, generator=torch.Generator().manual_seed(3))


def test_plenty_of_memory_decodes_whole(tiny: VAE, latent: torch.Tensor):
    image, tiling = decode_fitting(tiny, latent, free_bytes=lambda: 1 << 40)
    assert tiling is None
    assert torch.equal(image, tiny.decode(latent))


def test_too_little_memory_decodes_in_tiles_that_fit(tiny: VAE, latent: torch.Tensor):
    whole_peak = tiny.tiling_for(LATENT, 1 << 40)
    assert whole_peak is None
    budget = decode_peak_bytes((32, 32), tiny.dtype, level1_width=tiny.config.ch * tiny.config.ch_mult[1])
    image, tiling = decode_fitting(tiny, latent, free_bytes=lambda: budget)
    assert tiling is not None and tiling.max_tile == MIN_TILE == 32  # 48 and 40 would not fit
    assert image.shape == (1, 3, 384, 320)
    assert torch.equal(image, tiny.decode(latent, tiling))
    assert not torch.equal(
        image, tiny.decode(latent)
    )  # really tiled, not the whole decode under another name


class _RunsOutWhole:
    """The tiny VAE whose whole decode runs out of memory (as CUDA would), while tiles decode."""

    def __init__(self, vae: VAE, error: BaseException) -> None:
        self.vae, self.error, self.calls = vae, error, []

    def tiling_for(self, shape, free):
        return self.vae.tiling_for(shape, free)

    def decode(self, z, tiling=None):
        self.calls.append(tiling)
        if tiling is None:
            raise self.error
        return self.vae.decode(z, tiling)


@pytest.mark.parametrize(
    "error",
    [
        torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
        MemoryError(),
        RuntimeError("MPS backend out of memory (MPS allocated: 8 GB)"),
    ],
)
def test_running_out_of_memory_retries_in_tiles(tiny: VAE, latent: torch.Tensor, error: BaseException):
    vae = _RunsOutWhole(tiny, error)
    image, tiling = decode_fitting(vae, latent, free_bytes=lambda: 1 << 40)  # the estimate said it would fit
    assert vae.calls == [None, tiling]
    assert tiling == half_size_tiling(48, 40)
    assert torch.equal(image, tiny.decode(latent, tiling))


def test_other_errors_are_not_taken_for_memory(tiny: VAE, latent: torch.Tensor):
    vae = _RunsOutWhole(tiny, RuntimeError("expected 16 channels, got 4"))
    with pytest.raises(RuntimeError, match="expected 16 channels"):
        decode_fitting(vae, latent, free_bytes=lambda: 1 << 40)
    assert vae.calls == [None]
    assert not is_out_of_memory(ValueError("out of memory"))


def test_half_size_tiles_are_multiples_of_eight_and_at_least_the_minimum():
    assert half_size_tiling(128, 96).max_tile == 64
    assert half_size_tiling(90, 30).max_tile == 40
    assert half_size_tiling(40, 40).max_tile == MIN_TILE
    t = half_size_tiling(180, 180)
    assert t.max_tile == 88 and t.overlap < t.max_tile
