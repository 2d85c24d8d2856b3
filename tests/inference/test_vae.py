"""The SD3 VAE: structure from the real key manifest, parity with diffusers on tiny weights, loading errors,
latent format and pixel conventions (SD35_MODEL.md section 4)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from app.inference.api.errors import CheckpointMismatchError, MissingComponentError, ModelFileError
from app.inference.checkpoints.vae_loading import channels_last_by_default, load_vae
from app.inference.networks.vae import (
    VAE,
    VAEConfig,
    build_vae,
    image_to_tensor,
    process_in,
    process_out,
    tensor_to_uint8,
    vae_config_from_shapes,
)
from tests.factory.vae_model import (
    REAL_PREFIX,
    real_manifest,
    real_vae_shapes,
    write_tiny_vae,
)


def _rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm()).item()


@pytest.fixture(scope="module")
def tiny_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("vae") / "tiny_single_file.safetensors"
    write_tiny_vae(path)  # prefixed, fp16, like a single-file checkpoint
    return path


@pytest.fixture(scope="module")
def ours(tiny_file: Path) -> VAE:
    return load_vae(tiny_file, dtype=torch.float32)


@pytest.fixture(scope="module")
def diffusers_vae(tiny_file: Path) -> torch.nn.Module:
    from safetensors.torch import load_file

    from tests.factory.diffusers_oracle import diffusers_vae as build

    return build(load_file(str(tiny_file)))


# --- structure --------------------------------------------------------------------------------------------


def test_full_size_vae_on_meta_matches_the_real_manifest():
    shapes = real_vae_shapes()
    cfg = vae_config_from_shapes(shapes)
    assert cfg == VAEConfig(ch=128, ch_mult=(1, 2, 4, 4), num_res_blocks=2, z_channels=16)
    vae = build_vae(cfg)
    assert vae.dtype == torch.float32
    assert vae.device.type == "meta"
    assert {k: tuple(v.shape) for k, v in vae.state_dict().items()} == shapes
    assert len(shapes) == 244
    assert sum(p.numel() for p in vae.encoder.parameters()) == 34_274_208
    assert sum(p.numel() for p in vae.decoder.parameters()) == 49_545_475
    assert sum(p.numel() for p in vae.parameters()) == real_manifest()["num_params"]


def test_tiny_factory_has_exactly_the_real_key_names():
    real = [e["key"] for e in real_manifest()["keys"]]
    state = write_tiny_vae()
    assert sorted(state) == sorted(real)
    assert all(v.dtype == torch.float16 for v in state.values())
    again = write_tiny_vae()
    assert all(torch.equal(state[k], again[k]) for k in state)
    unprefixed = write_tiny_vae(prefix="", dtype=torch.float32)
    assert sorted(unprefixed) == sorted(k[len(REAL_PREFIX) :] for k in real)


def test_tiny_config_is_inferred(ours: VAE):
    assert ours.config == VAEConfig(ch=32, ch_mult=(1, 2, 3, 3), num_res_blocks=2, z_channels=16)
    assert ours.config.downscale == 8
    assert ours.dtype == torch.float32
    assert not any(p.requires_grad for p in ours.parameters())


# --- parity with diffusers --------------------------------------------------------------------------------


def test_decode_matches_diffusers_on_a_non_square_latent(ours: VAE, diffusers_vae: torch.nn.Module):
    z = torch.randn(2, 16, 6, 10, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = diffusers_vae.decode(z).sample
    got = ours.decode(z)
    assert got.shape == (2, 3, 48, 80)
    assert got.dtype == torch.float32
    assert _rel_err(got, expected) <= 1e-4
    clipped = (got.abs() > 1).float().mean().item()
    assert clipped < 0.5, f"tiny weights decode to a mostly clipped image ({clipped:.0%})"


def test_encode_returns_the_posterior_mean_of_diffusers(ours: VAE, diffusers_vae: torch.nn.Module):
    img = torch.rand(1, 3, 48, 80, generator=torch.Generator().manual_seed(2)) * 2 - 1
    with torch.no_grad():
        expected = diffusers_vae.encode(img).latent_dist.mean
    got = ours.encode(img)
    assert got.shape == (1, 16, 6, 10)
    assert _rel_err(got, expected) <= 1e-4
    assert torch.equal(ours.encode(img), got)  # deterministic: the mean, not a sample


def test_bf16_weights_return_float32_close_to_float32(tiny_file: Path, ours: VAE):
    vae = load_vae(tiny_file, dtype=torch.bfloat16)
    assert vae.dtype == torch.bfloat16
    z = torch.randn(1, 16, 4, 4, generator=torch.Generator().manual_seed(3))
    got = vae.decode(z)
    assert got.dtype == torch.float32
    assert _rel_err(got, ours.decode(z)) < 5e-2


def test_channels_last_is_the_same_network(tiny_file: Path):
    nhwc = load_vae(tiny_file, channels_last=True)
    ours = load_vae(tiny_file, channels_last=False)
    assert nhwc.channels_last
    assert not ours.channels_last
    conv = nhwc.decoder.up[0].block[0].conv1.weight
    assert conv.is_contiguous(memory_format=torch.channels_last)
    assert not conv.is_contiguous()
    z = torch.randn(2, 16, 6, 10, generator=torch.Generator().manual_seed(5))
    assert _rel_err(nhwc.decode(z), ours.decode(z)) <= 1e-5
    img = torch.rand(1, 3, 48, 80, generator=torch.Generator().manual_seed(6)) * 2 - 1
    assert _rel_err(nhwc.encode(img), ours.encode(img)) <= 1e-5
    nhwc.set_channels_last(False)
    assert not nhwc.channels_last
    assert nhwc.decoder.up[0].block[0].conv1.weight.is_contiguous()
    assert torch.equal(nhwc.decode(z), ours.decode(z))  # back to the default kernels, bit for bit


def test_loading_uses_the_measured_memory_format_default(tiny_file: Path):
    assert channels_last_by_default(torch.device("cpu"))  # measured faster on CPU
    assert not channels_last_by_default(torch.device("meta"))  # (stands in for an unmeasured GPU)
    assert load_vae(tiny_file).channels_last
    assert not load_vae(tiny_file, channels_last=False).channels_last


# --- loading ----------------------------------------------------------------------------------------------


def test_standalone_file_without_prefix_loads_the_same_weights(tmp_path: Path, ours: VAE):
    path = tmp_path / "vae.safetensors"
    write_tiny_vae(path, prefix="")
    vae = load_vae(path)
    assert all(torch.equal(v, ours.state_dict()[k]) for k, v in vae.state_dict().items())


def test_missing_key_names_the_file_and_the_key(tmp_path: Path):
    state = write_tiny_vae()
    del state[REAL_PREFIX + "decoder.up.0.block.0.nin_shortcut.weight"]
    path = tmp_path / "broken.safetensors"
    save_file(state, str(path))
    with pytest.raises(CheckpointMismatchError) as info:
        load_vae(path)
    assert str(path) in str(info.value)
    assert "decoder.up.0.block.0.nin_shortcut.weight" in str(info.value)


def test_wrong_shape_and_missing_layout_keys_are_mismatches(tmp_path: Path):
    state = write_tiny_vae()
    state[REAL_PREFIX + "encoder.mid.attn_1.q.weight"] = torch.zeros(96, 96, 3, 3, dtype=torch.float16)
    path = tmp_path / "wrong_shape.safetensors"
    save_file(state, str(path))
    with pytest.raises(CheckpointMismatchError, match="wrong shape"):
        load_vae(path)

    state = write_tiny_vae()
    del state[REAL_PREFIX + "encoder.conv_in.weight"]
    path = tmp_path / "no_conv_in.safetensors"
    save_file(state, str(path))
    with pytest.raises(CheckpointMismatchError, match=r"no_conv_in\.safetensors"):
        load_vae(path)


def test_file_without_vae_and_missing_file(tmp_path: Path):
    path = tmp_path / "mmdit_only.safetensors"
    save_file({"model.diffusion_model.x_embedder.proj.bias": torch.zeros(4)}, str(path))
    with pytest.raises(MissingComponentError, match="no VAE"):
        load_vae(path)
    with pytest.raises(ModelFileError):
        load_vae(tmp_path / "absent.safetensors")


# --- latent format and pixels -----------------------------------------------------------------------------


def test_latent_format_constants():
    z = torch.tensor([0.0609 + 1.0, 0.0609, -1.0])
    assert torch.allclose(process_in(z), torch.tensor([1.5305, 0.0, -1.0609 * 1.5305]))
    assert torch.allclose(process_out(process_in(z)), z, atol=1e-6)


def test_uint8_output_truncates_in_float32():
    levels = torch.tensor([0.0, 1.3, 17.7, 127.5, 200.3, 254.9, 255.0])
    x = (levels / 255.0 * 2.0 - 1.0).reshape(1, 1, 1, 7).expand(1, 3, 1, 7).clone()
    x[0, 1, 0, 0] = -3.0  # clamped to 0
    x[0, 2, 0, 6] = 2.5  # clamped to 255
    out = tensor_to_uint8(x)
    assert out.dtype == np.uint8
    assert out.shape == (1, 1, 7, 3)
    assert out[0, 0, :, 0].tolist() == [0, 1, 17, 127, 200, 254, 255]  # rounding would give 18, 128, 255 ...
    assert out[0, 0, 0, 1] == 0
    assert out[0, 0, 6, 2] == 255
    # the reference's recipe, literally (sd3_infer.vae_decode)
    img = torch.randn(1, 3, 5, 4, generator=torch.Generator().manual_seed(4))
    ref = (255.0 * np.moveaxis(torch.clamp((img + 1.0) / 2.0, 0.0, 1.0)[0].numpy(), 0, 2)).astype(np.uint8)
    assert np.array_equal(tensor_to_uint8(img)[0], ref)
    assert np.array_equal(tensor_to_uint8(img[0]), ref)


def test_image_to_tensor_range_and_resize_before_rgb():
    img = Image.fromarray(np.array([[[0, 128, 255], [255, 0, 64]]], dtype=np.uint8))  # 2 wide, 1 high
    x = image_to_tensor(img)
    assert x.shape == (1, 3, 1, 2)
    assert x.dtype == torch.float32
    assert x[0, :, 0, 0].tolist() == pytest.approx([-1.0, 2 * 128 / 255 - 1, 1.0], abs=1e-7)

    rgba = Image.new("RGBA", (4, 4))
    for i in range(4):
        for j in range(4):
            rgba.putpixel((i, j), (255, 0, 0, 255) if (i + j) % 2 else (0, 255, 0, 10))
    got = image_to_tensor(rgba, (3, 3))
    expected = image_to_tensor(rgba.resize((3, 3), Image.Resampling.LANCZOS).convert("RGB"))
    assert torch.equal(got, expected)
    assert not torch.equal(got, image_to_tensor(rgba.convert("RGB"), (3, 3)))  # the order matters
