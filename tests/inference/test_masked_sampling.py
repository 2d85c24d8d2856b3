"""Masked sampling (sampling/masked.py) and its pixel-space pieces (pipeline/canvas.py), without a model."""

import numpy as np
import pytest
import torch
from PIL import Image

from app.inference.api.errors import InvalidRequestError
from app.inference.api.request import SCHEDULER_NAMES
from app.inference.pipeline.canvas import (
    Canvas,
    check_mask,
    composite,
    feather,
    grow_mask,
    mask_from_image,
)
from app.inference.sampling.masked import DifferentialThreshold, MaskedDenoiser, is_soft, latent_mask
from app.inference.sampling.samplers import SAMPLERS, ancestral_noise_sampler, make_noise
from app.inference.sampling.schedules import img2img_sigmas, make_sigmas, sigma_table

SHAPE = (1, 16, 6, 4)
SHIFT = 3.0


def fake_model(x, sigma, i):
    """A deterministic stand-in for the guided MMDiT: some nonlinear function of x and sigma."""
    return torch.tanh(x * 0.7 + 0.1 * (i + 1)) * (1.0 - sigma)


def run(sampler, denoise, x, sigmas, seed=3):
    extra = {"noise": ancestral_noise_sampler(seed, x.shape)} if sampler == "euler_ancestral" else {}
    return SAMPLERS[sampler](denoise, x, sigmas, **extra)


def img2img_start(noise, init, sigmas):
    s = float(sigmas[0])
    return s * noise + (1.0 - s) * init


@pytest.mark.parametrize("sampler", sorted(SAMPLERS))
@pytest.mark.parametrize("scheduler", SCHEDULER_NAMES)
def test_all_ones_mask_is_plain_img2img(sampler, scheduler):
    sigmas = img2img_sigmas(make_sigmas(scheduler, 6, SHIFT), 0.7)
    init, noise = torch.randn(SHAPE), make_noise(5, SHAPE)
    start = img2img_start(noise, init, sigmas)
    plain = run(sampler, fake_model, start, sigmas)
    masked = run(sampler, MaskedDenoiser(fake_model, init, noise, torch.ones(1, 1, 6, 4)), start, sigmas)
    assert torch.equal(masked, plain)


@pytest.mark.parametrize("sampler", sorted(SAMPLERS))
def test_all_zeros_mask_returns_the_init_latent(sampler):
    sigmas = img2img_sigmas(make_sigmas("normal", 8, SHIFT), 0.9)
    init, noise = torch.randn(SHAPE), make_noise(5, SHAPE)
    masked = MaskedDenoiser(fake_model, init, noise, torch.zeros(1, 1, 6, 4))
    out = run(sampler, masked, img2img_start(noise, init, sigmas), sigmas)
    assert torch.allclose(out, init, atol=1e-5)
    assert not torch.allclose(run(sampler, fake_model, img2img_start(noise, init, sigmas), sigmas), init)


def test_blends_follow_ksamplerx0inpaint():
    init, noise = torch.randn(SHAPE), torch.randn(SHAPE)
    mask = torch.zeros(1, 1, 6, 4)
    mask[..., 2:4, 1:3] = 1.0
    seen = {}

    def model(x, sigma, i):
        seen["x"] = x.clone()
        return torch.full_like(x, 7.0)

    x = torch.randn(SHAPE)
    sigma = torch.tensor(0.6)
    out = MaskedDenoiser(model, init, noise, mask)(x, sigma, 0)
    expected_x = x * mask + (0.6 * noise + 0.4 * init) * (1 - mask)
    assert torch.allclose(seen["x"], expected_x, atol=1e-6)
    assert torch.equal(out, 7.0 * mask + init * (1 - mask))


def test_each_seed_keeps_its_own_noise_in_the_blend():
    init = torch.randn(SHAPE)
    noise = torch.cat([make_noise(1, SHAPE), make_noise(2, SHAPE)])  # (2, 16, 6, 4)
    seen = {}

    def model(x, sigma, i):
        seen["x"] = x.clone()
        return x

    MaskedDenoiser(model, init, noise, torch.zeros(1, 1, 6, 4))(
        torch.randn(2, *SHAPE[1:]), torch.tensor(0.5), 0
    )
    assert torch.allclose(seen["x"][1], (0.5 * make_noise(2, SHAPE) + 0.5 * init)[0], atol=1e-6)
    assert not torch.allclose(seen["x"][0], seen["x"][1])


def test_differential_diffusion_mask_per_step_follows_the_threshold_rule():
    sigmas = img2img_sigmas(make_sigmas("simple", 10, SHIFT), 0.8)
    gradient = torch.linspace(0, 1, 24).view(1, 1, 6, 4)  # soft: every value from 0 to 1
    threshold = DifferentialThreshold(sigmas, SHIFT)
    denoiser = MaskedDenoiser(fake_model, torch.zeros(SHAPE), torch.zeros(SHAPE), gradient, threshold)
    denoiser.masks_used = []
    run("euler", denoiser, torch.randn(SHAPE), sigmas)
    # ComfyUI's rule on timesteps (1000·σ): τ = (t_now − t_end) / (t_start − t_end), t_end from σ_min
    t_start = 1000 * float(sigmas[0])
    t_end = 1000 * max(float(sigma_table(SHIFT)[0]), float(sigmas[-1]))
    assert len(denoiser.masks_used) == len(sigmas) - 1
    for sigma, used in zip(sigmas[:-1].tolist(), denoiser.masks_used, strict=True):
        tau = (1000 * sigma - t_end) / (t_start - t_end)
        assert torch.equal(used, (gradient >= tau).float())
    regenerated = [int(m.sum()) for m in denoiser.masks_used]
    assert regenerated[0] == 1 and regenerated == sorted(regenerated) and regenerated[-1] > 12


def test_latent_mask_and_softness():
    mask = torch.zeros(48, 32)
    mask[16:32, 8:24] = 1.0
    small = latent_mask(mask, (6, 4))
    assert small.shape == (1, 1, 6, 4) and float(small.max()) == 1.0 and float(small.min()) == 0.0
    assert not is_soft(mask) and is_soft(mask * 0.5)


def test_grow_mask_is_a_cross_dilation():
    mask = torch.zeros(11, 11)
    mask[5, 5] = 1.0
    grown = grow_mask(mask, 2)
    assert grown[5, 3] == 1 and grown[3, 5] == 1 and grown[4, 4] == 1  # distance 2 along axes, 1+1 diagonal
    assert grown[3, 3] == 0 and grown[5, 2] == 0  # tapered corners; no further than 2
    assert int(grown.sum()) == 13


def test_feather_keeps_far_pixels_at_zero_and_inside_at_one():
    mask = torch.zeros(40, 40)
    mask[10:30, 10:30] = 1.0
    alpha = feather(mask, 6)
    assert float(alpha[:, :4].abs().max()) == 0.0 and float(alpha[20, 20]) == pytest.approx(1.0)
    assert 0 < float(alpha[20, 9]) < 1 and float(alpha[20, 3]) == 0.0
    assert torch.equal(feather(mask, 0), mask)


def test_composite_keeps_unmasked_pixels_exactly():
    rng = np.random.default_rng(0)
    original = rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)
    generated = rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)
    mask = torch.zeros(40, 40)
    mask[10:30, 10:30] = 1.0
    alpha = feather(mask, 6)
    out = composite(original, generated, alpha)
    outside = (alpha == 0).numpy()
    assert np.array_equal(out[outside], original[outside])
    inside = (alpha == 1).numpy()
    assert inside.any() and np.array_equal(out[inside], generated[inside])
    assert np.array_equal(composite(original, generated, torch.zeros(40, 40)), original)


def test_mask_files_grey_and_alpha():
    grey = Image.fromarray(np.array([[0, 255], [128, 255]], dtype=np.uint8))
    assert mask_from_image(grey)[0].flatten().tolist() == pytest.approx([0.0, 1.0, 128 / 255, 1.0])
    rgba = np.zeros((2, 2, 4), dtype=np.uint8)
    rgba[..., 3] = [[255, 0], [255, 255]]  # transparent = regenerate (ComfyUI's LoadImage MASK)
    assert mask_from_image(Image.fromarray(rgba, "RGBA"))[0].tolist() == [[0.0, 1.0], [0.0, 0.0]]
    opaque = np.full((2, 2, 4), 255, dtype=np.uint8)
    opaque[0, 0, :3] = 0  # fully opaque: read as grey
    assert mask_from_image(Image.fromarray(opaque, "RGBA"))[0].tolist() == [[0.0, 1.0], [1.0, 1.0]]


def test_bad_masks_are_refused_with_one_sentence():
    with pytest.raises(InvalidRequestError, match="is 3×2 px but the init image is 4×4 px"):
        check_mask(torch.ones(2, 3), (4, 4), "m.png", outpainting=False)
    with pytest.raises(InvalidRequestError, match="all black"):
        check_mask(torch.zeros(4, 4), (4, 4), "m.png", outpainting=False)
    check_mask(torch.zeros(4, 4), (4, 4), "m.png", outpainting=True)  # outpainting: the new area is masked


def test_outpaint_canvas_grows_by_the_requested_amounts_and_aligns_to_16():
    c = Canvas.around((40, 24), (8, 16, 8, 0))
    assert c.output_size == (56, 40) and c.size == (64, 48) and c.size[0] % 16 == c.size[1] % 16 == 0
    pixels = np.arange(24 * 40 * 3, dtype=np.uint8).reshape(24, 40, 3)
    canvas = c.extend(pixels)
    assert canvas.shape == (48, 64, 3)
    assert np.array_equal(canvas[16:40, 8:48], pixels)  # the original region, in place
    assert np.array_equal(canvas[0, 8:48], pixels[0]) and np.array_equal(canvas[20, 0], pixels[4, 0])  # edges
    mask = c.extend_mask(None)
    assert float(mask[16:40, 8:48].max()) == 0.0 and float(mask[:16].min()) == 1.0
    assert float(mask[:40, 48:].min()) == 1.0  # the right side, and its alignment px
    assert float(mask[40:, 8:48].max()) == 0.0  # the bottom is not outpainted: its alignment px are kept
    assert c.crop(canvas).shape == (40, 56, 3)
