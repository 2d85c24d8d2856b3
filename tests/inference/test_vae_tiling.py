"""Tiled VAE decoding (vae_tiling.py): the tile grid, the feathered blend, closeness to the whole decode on the
tiny random-weight VAE, and the memory decision."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from app.inference.checkpoints.vae_loading import vae_from_state_dict
from app.inference.networks.vae import (
    VAE,
    build_vae,
    tensor_to_uint8,
    vae_config_from_shapes,
)
from app.inference.networks.vae_tiling import (
    MIN_TILE,
    TileConfig,
    decode_peak_bytes,
    decode_tiled,
    plan_tiling,
    tile_spans,
)
from tests.factory.vae_model import real_vae_shapes, write_tiny_vae


@pytest.fixture(scope="module")
def tiny() -> VAE:
    return vae_from_state_dict(write_tiny_vae(prefix="", dtype=torch.float32), source="tiny VAE")


def _latent(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def _error_255(got: torch.Tensor, ref: torch.Tensor) -> tuple[float, float, float]:
    """Max and mean absolute difference of the 8-bit images, and PSNR in dB."""
    a = torch.from_numpy(tensor_to_uint8(got)).float()
    b = torch.from_numpy(tensor_to_uint8(ref)).float()
    mse = ((a - b) ** 2).mean().item()
    return (a - b).abs().max().item(), (a - b).abs().mean().item(), 10 * math.log10(255**2 / mse)


# --- the grid ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("length", [1, 7, 31, 32, 33, 57, 64, 65, 97, 128, 129, 180, 181])
@pytest.mark.parametrize(("max_tile", "overlap"), [(32, 8), (64, 16), (20, 19), (5, 0), (24, 8)])
def test_spans_cover_every_position_within_the_limits(length: int, max_tile: int, overlap: int):
    spans = tile_spans(length, max_tile, overlap)
    covered = set().union(*(range(a, b) for a, b in spans))
    assert covered == set(range(length))
    assert spans[0][0] == 0
    assert spans[-1][1] == length
    assert len({b - a for a, b in spans}) == 1  # one tile size
    assert all(b - a <= max_tile for a, b in spans)
    assert all(spans[i][1] - spans[i + 1][0] >= overlap for i in range(len(spans) - 1))
    assert all(spans[i][0] < spans[i + 1][0] for i in range(len(spans) - 1))


def test_spans_use_the_fewest_tiles():
    assert tile_spans(40, 64, 16) == [(0, 40)]
    assert tile_spans(128, 96, 16) == [(0, 72), (56, 128)]  # 2 tiles of 72, not 96 + a sliver
    assert len(tile_spans(180, 64, 16)) == 4  # ceil((180 - 16) / 48)


def test_tile_config_is_validated():
    with pytest.raises(ValueError, match="overlap"):
        TileConfig(max_tile=16, overlap=16)
    with pytest.raises(ValueError, match="positive"):
        TileConfig(max_tile=0, overlap=0)
    with pytest.raises(ValueError, match="non-negative"):
        TileConfig(max_tile=16, overlap=-1)


@pytest.mark.parametrize("shape", [(2, 16, 27, 41), (1, 16, 13, 5), (1, 16, 9, 9)])
@pytest.mark.parametrize("tiling", [TileConfig(8, 3), TileConfig(5, 2), TileConfig(6, 0)])
def test_blend_weights_sum_to_one_on_every_pixel(shape: tuple[int, ...], tiling: TileConfig):
    """A position-independent 'decoder' (nearest x8 upsampling) gives every tile the same pixels where they
    overlap, so the blend must return exactly the whole upsampled latent: no pixel missed (NaN), none
    weighted twice."""

    def upsample(z: torch.Tensor) -> torch.Tensor:
        return F.interpolate(z[:, :3], scale_factor=8.0, mode="nearest")

    z = _latent(*shape)
    got = decode_tiled(upsample, z, tiling)
    assert got.shape == (shape[0], 3, 8 * shape[2], 8 * shape[3])
    torch.testing.assert_close(got, upsample(z), rtol=0, atol=1e-6)


# --- against the whole decode -----------------------------------------------------------------------------


def test_one_tile_covering_everything_is_bit_exact(tiny: VAE):
    z = _latent(2, 16, 6, 10)
    whole = tiny.decode(z)
    assert torch.equal(tiny.decode(z, TileConfig(max_tile=10, overlap=4)), whole)
    assert torch.equal(tiny.decode(z, TileConfig(max_tile=64)), whole)


def test_tiled_decode_is_close_to_the_whole_decode(tiny: VAE):
    """Measured on this latent (tiny VAE, 27x41 latent, tiles <= 24 overlapping by >= 8: 2x3 tiles of 18x19):
    max 38, mean 4.8 levels of 255, PSNR 32.1 dB; seeds 1 and 2 gave PSNR 31.6 and 33.2 dB, max 34 and 32.
    The bounds leave ~2x margin on the mean and ~3 dB on PSNR. The difference is not the blend (the test above)
    but what a tile cannot see: GroupNorm statistics and the mid-block attention become per tile. Without
    overlap (hard seams, 2x2 tiles) the same latent gives PSNR 24.5 dB and mean 9.5."""
    z = _latent(1, 16, 27, 41)
    whole = tiny.decode(z)
    max_abs, mean_abs, psnr = _error_255(tiny.decode(z, TileConfig(max_tile=24, overlap=8)), whole)
    assert 0 < mean_abs < 7.0
    assert max_abs < 64
    assert psnr > 29.0
    _, seam_mean, seam_psnr = _error_255(tiny.decode(z, TileConfig(max_tile=24, overlap=0)), whole)
    assert seam_psnr < psnr - 4.0  # the feathered overlap is what makes it close
    assert seam_mean > mean_abs


def test_tiled_batch_equals_tiled_samples_and_bf16_returns_float32(tiny: VAE):
    z = _latent(2, 16, 6, 9)
    tiling = TileConfig(max_tile=4, overlap=1)
    both = tiny.decode(z, tiling)
    torch.testing.assert_close(both[1:], tiny.decode(z[1:], tiling), rtol=1e-5, atol=1e-5)
    bf16 = vae_from_state_dict(
        write_tiny_vae(prefix="", dtype=torch.float32), source="tiny VAE", dtype=torch.bfloat16
    )
    got = bf16.decode(z[:1], tiling)
    assert got.dtype == torch.float32
    assert got.shape == (1, 3, 48, 72)
    assert ((got - both[:1]).norm() / both[:1].norm()).item() < 5e-2


# --- when to tile -----------------------------------------------------------------------------------------


def test_peak_estimate_scales_with_pixels_batch_and_element_size():
    fp32 = decode_peak_bytes((128, 128), torch.float32)
    assert decode_peak_bytes((128, 128), torch.bfloat16) == fp32 // 2
    assert decode_peak_bytes((128, 128), torch.float32, batch=2) == 2 * fp32
    assert decode_peak_bytes((180, 180), torch.float32) == pytest.approx(fp32 * (180 / 128) ** 2, rel=1e-6)
    # 1024x1024 float32 with the SD3 widths: a few GB (bench/vae.py prints the measured value beside it)
    assert 2e9 < fp32 < 6e9


def test_no_tiling_when_the_whole_decode_fits():
    need = decode_peak_bytes((128, 128), torch.float32)
    assert plan_tiling((128, 128), need, torch.float32) is None
    assert plan_tiling((128, 128), need - 1, torch.float32) is not None


@pytest.mark.parametrize("latent_hw", [(128, 128), (180, 180), (96, 168), (200, 40)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_planned_tiles_fit_the_budget(latent_hw: tuple[int, int], dtype: torch.dtype):
    budget = decode_peak_bytes(latent_hw, dtype) // 5
    tiling = plan_tiling(latent_hw, budget, dtype)
    assert tiling is not None
    assert tiling.max_tile % 8 == 0
    assert tiling.max_tile >= MIN_TILE
    assert 0 < tiling.overlap < tiling.max_tile
    tile_hw = (min(tiling.max_tile, latent_hw[0]), min(tiling.max_tile, latent_hw[1]))
    assert decode_peak_bytes(tile_hw, dtype) <= budget
    bigger = (min(tiling.max_tile + 8, latent_hw[0]), min(tiling.max_tile + 8, latent_hw[1]))
    assert decode_peak_bytes(bigger, dtype) > budget  # the largest tile that fits


def test_tiles_shrink_with_the_budget_and_bottom_out_at_the_minimum():
    sides = [plan_tiling((180, 180), budget, torch.float32).max_tile for budget in (4e9, 2e9, 1e9, 5e8)]
    assert sides == sorted(sides, reverse=True)
    assert sides[0] > sides[-1]
    assert plan_tiling((180, 180), 1, torch.float32) == TileConfig(MIN_TILE, MIN_TILE // 4)
    # bfloat16 halves the activations: the same budget allows a larger tile
    fp32 = plan_tiling((180, 180), 1e9, torch.float32)
    bf16 = plan_tiling((180, 180), 1e9, torch.bfloat16)
    assert bf16.max_tile > fp32.max_tile


def test_the_vae_plans_with_its_own_widths_dtype_and_batch(tiny: VAE):
    full = build_vae(vae_config_from_shapes(real_vae_shapes()))  # on meta: the real widths, no memory
    need = decode_peak_bytes((128, 128), torch.float32, level1_width=256, batch=2)
    assert full.tiling_for((2, 16, 128, 128), need) is None
    assert full.tiling_for((2, 16, 128, 128), need // 4) == plan_tiling(
        (128, 128), need // 4, torch.float32, level1_width=256, batch=2
    )
    # the tiny VAE is 4x narrower at level 1 (64): a third of what the full one needs covers it whole
    assert tiny.tiling_for((2, 16, 128, 128), need // 3) is None
    assert full.tiling_for((2, 16, 128, 128), need // 3) is not None
