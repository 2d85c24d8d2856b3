"""Inpainting, outpainting and hires fix through the generation session, on a tiny random-weight model set."""

import hashlib

import numpy as np
import pytest
import torch
from PIL import Image

from app.inference.api.events import ImageFinished, JobFailed, JobFinished, StepUpdate
from app.inference.api.request import GenerationRequest
from app.inference.checkpoints.model_set import locate_model_set
from app.inference.networks.vae import process_out, tensor_to_uint8
from app.inference.networks.vae_tiling import TileConfig
from app.inference.pipeline.canvas import feather, grow_mask
from app.inference.pipeline.session import GenerationSession
from app.metadata.a1111 import infotext_of
from app.metadata.image_file import finished_image_params
from app.metadata.params import ImageParams
from tests.factory.snapshot import write_snapshot

W, H = 32, 48


@pytest.fixture(scope="module")
def model_set(tmp_path_factory):
    return locate_model_set(write_snapshot(tmp_path_factory.mktemp("m") / "sd35m", "medium"))


@pytest.fixture(scope="module")
def session():
    return GenerationSession(device="cpu", dtype="float32", preview="off")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("refine")
    rng = np.random.default_rng(0)
    paths = {"init": folder / "init.png", "mask": folder / "mask.png"}
    Image.fromarray(rng.integers(0, 256, (H, W, 3), dtype=np.uint8)).save(paths["init"])
    mask = np.zeros((H, W), dtype=np.uint8)
    mask[16:32, 8:24] = 255
    Image.fromarray(mask).save(paths["mask"])
    Image.fromarray(np.full((H, W), 255, dtype=np.uint8)).save(folder / "white.png")
    Image.fromarray(np.zeros((H, W), dtype=np.uint8)).save(folder / "black.png")
    Image.fromarray(np.full((H + 16, W), 255, dtype=np.uint8)).save(folder / "tall.png")
    (folder / "text.png").write_text("not an image")
    gradient = np.tile(np.linspace(0, 255, W).astype(np.uint8), (H, 1))
    Image.fromarray(gradient).save(folder / "gradient.png")
    for name in ("white", "black", "tall", "text", "gradient"):
        paths[name] = folder / f"{name}.png"
    return paths


def req(files, **kw):
    base = dict(prompt="a lighthouse", negative="fog", steps=4, seed=5, init_image=files["init"], denoise=0.8)
    return GenerationRequest(**(base | kw))


def finished(session, model_set, request):
    events = list(session.run(model_set, request))
    failed = [e.message for e in events if isinstance(e, JobFailed)]
    assert not failed, failed
    assert isinstance(events[-1], JobFinished)
    return [e for e in events if isinstance(e, ImageFinished)]


def failure(session, model_set, request):
    events = list(session.run(model_set, request))
    assert isinstance(events[-1], JobFailed), events[-1]
    return events[-1].message


def original(files):
    return np.asarray(Image.open(files["init"]).convert("RGB"))


def test_inpaint_keeps_unmasked_pixels_and_changes_masked_latents(session, model_set, files):
    (image,) = finished(session, model_set, req(files, mask_image=files["mask"]))
    assert image.pixels.shape == (H, W, 3) and (image.request.width, image.request.height) == (W, H)
    mask = torch.from_numpy(np.asarray(Image.open(files["mask"])) / 255.0).float()
    alpha = feather(grow_mask(mask, 6), 8)
    outside = (alpha == 0).numpy()
    assert outside.sum() > 100
    assert np.array_equal(image.pixels[outside], original(files)[outside])
    inside = (alpha == 1).numpy()
    assert not np.array_equal(image.pixels[inside], original(files)[inside])
    # In latent space the masked area moved away from the init image's encoding; the kept area stayed close.
    init_latent = process_out(session.encode_pixels(_vae_input(original(files))))
    change = (image.latent - init_latent).abs().mean(dim=1)[0]  # (6, 4)
    assert float(change[2:4, 1:3].mean()) > 10 * float(change[0, :].mean())
    assert image.source_sha256 == hashlib.sha256(files["init"].read_bytes()).hexdigest()


def _vae_input(pixels):
    return 2.0 * torch.from_numpy(pixels.astype(np.float32) / 255.0).permute(2, 0, 1)[None] - 1.0


def test_all_white_mask_equals_img2img(session, model_set, files):
    (plain,) = finished(session, model_set, req(files, width=W, height=H))
    (masked,) = finished(session, model_set, req(files, mask_image=files["white"], mask_grow=0, mask_blur=0))
    assert torch.equal(masked.latent, plain.latent)
    assert np.array_equal(masked.pixels, plain.pixels)


def test_batched_seeds_with_a_mask_each_get_their_own_noise(model_set, files):
    batched = GenerationSession(device="cpu", dtype="float32", preview="off", batch_size=2)
    single = GenerationSession(device="cpu", dtype="float32", preview="off", batch_size=1)
    both = finished(batched, model_set, req(files, mask_image=files["mask"], count=2))
    assert [e.seed for e in both] == [5, 6]
    assert not np.array_equal(both[0].pixels, both[1].pixels)
    (second,) = finished(single, model_set, req(files, mask_image=files["mask"], seed=6))
    assert torch.allclose(both[1].latent, second.latent, atol=1e-4)


def test_soft_mask_runs_through_differential_diffusion(session, model_set, files):
    (image,) = finished(
        session, model_set, req(files, mask_image=files["gradient"], mask_grow=0, mask_blur=0)
    )
    # The black column is kept exactly; the white end regenerates.
    assert np.array_equal(image.pixels[:, 0], original(files)[:, 0])
    assert not np.array_equal(image.pixels[:, -1], original(files)[:, -1])


def test_outpaint_grows_the_canvas_and_keeps_the_original_region(session, model_set, files):
    (image,) = finished(session, model_set, req(files, outpaint=(16, 8, 8, 0), denoise=1.0))
    assert image.pixels.shape == (H + 8, W + 24, 3)  # exactly the requested amounts
    assert (image.request.width, image.request.height) == (64, 64)  # the sampled canvas, 16-aligned
    # Far from the new area (more than grow + blur = 14 px) the original is untouched.
    kept = image.pixels[8 + 14 : 8 + H, 16 + 14 : 16 + W - 14]
    assert kept.size and np.array_equal(kept, original(files)[14:, 14 : W - 14])
    assert not np.array_equal(image.pixels[:8, :], np.repeat(image.pixels[8:9, :], 8, axis=0))


def test_hires_output_size_and_metadata_of_both_passes(session, model_set, files):
    request = GenerationRequest(prompt="a lighthouse", steps=3, seed=2, width=W, height=H,
                                hires_scale=2.0, hires_denoise=0.5, hires_steps=4)  # fmt: skip
    (image,) = finished(session, model_set, request)
    assert image.pixels.shape == (2 * H, 2 * W, 3) and image.latent.shape[-2:] == (2 * H // 8, 2 * W // 8)
    params = finished_image_params(image)
    text = infotext_of(params)
    assert f"Size: {W}x{H}" in text and "Steps: 3" in text
    assert "Hires upscale: 2" in text and "Hires steps: 4" in text and "Hires upscaler: Lanczos" in text
    assert "Denoising strength: 0.5" in text
    back = ImageParams.from_json(params.to_json())
    assert (back.hires_scale, back.hires_denoise, back.hires_steps) == (2.0, 0.5, 4)


def test_hires_decodes_in_tiles_when_memory_is_short(model_set):
    request = GenerationRequest(
        prompt="a lighthouse", steps=2, seed=2, width=160, height=160, hires_scale=2.0
    )
    whole = GenerationSession(device="cpu", dtype="float32", preview="off")
    tiled = GenerationSession(device="cpu", dtype="float32", preview="off")
    tiled.decode_free_bytes = lambda: 1  # nothing free: the planner picks the smallest tiles
    (a,) = finished(whole, model_set, request)
    (b,) = finished(tiled, model_set, request)
    assert a.pixels.shape == b.pixels.shape == (320, 320, 3)
    assert torch.equal(a.latent, b.latent)
    diff = np.abs(a.pixels.astype(int) - b.pixels.astype(int))
    psnr = 10 * np.log10(255**2 / (diff**2).mean())
    # The random-weight VAE's tiles differ more than SD3's (test_vae_tiling: PSNR > 29 dB for 24/8 tiles);
    # these are the smallest tiles (32, overlap 8) on a 40×40 latent.
    assert 0 < diff.mean() < 7.0 and psnr > 27.0
    vae = tiled.engine.vae
    assert np.array_equal(b.pixels, tensor_to_uint8(vae.decode(b.latent, TileConfig(32, 8)))[0])


@pytest.mark.parametrize(
    ("mask", "words"),
    [
        ("tall", "the mask is 32×64 px but the init image is 32×48 px"),
        ("text", "cannot read the mask"),
        ("black", "the mask is all black"),
    ],
)
def test_bad_masks_fail_the_job_with_one_sentence(session, model_set, files, mask, words):
    message = failure(session, model_set, req(files, mask_image=files[mask]))
    assert words in message and "\n" not in message and "Traceback" not in message


def test_refine_fields_are_validated(session, model_set, files):
    assert "needs an init image" in failure(
        session, model_set, GenerationRequest(prompt="x", width=W, height=H, outpaint=(8, 0, 0, 0))
    )
    assert "hires scale" in failure(session, model_set, req(files, width=W, height=H, hires_scale=9.0))
    assert "larger than this model supports" in failure(
        session, model_set, GenerationRequest(prompt="x", width=320, height=320, hires_scale=2.0)
    )


def test_hires_after_an_outpaint_scales_the_composited_image(session, model_set, files):
    (image,) = finished(session, model_set, req(files, outpaint=(8, 0, 0, 0), hires_scale=2.0, hires_steps=2))
    assert image.pixels.shape == (2 * H, 2 * (W + 8), 3)  # the 40×48 result, not the 48×48 sampled canvas


def test_hires_step_events_count_both_passes(session, model_set):
    request = GenerationRequest(prompt="a lighthouse", steps=3, seed=2, width=W, height=H, hires_scale=1.5,
                                hires_denoise=0.5, hires_steps=4)  # fmt: skip
    steps = [e for e in session.run(model_set, request) if isinstance(e, StepUpdate)]
    assert [e.step for e in steps] == [1, 2, 3, 4, 5] and {e.steps for e in steps} == {5}  # 3 + int(4 * 0.5)
    assert steps[-1].eta == 0 and steps[0].eta > 0


def test_a_masked_job_samples_at_the_init_images_size_and_says_so_when_asked_otherwise(files):
    from app.inference.pipeline.refine import sized_for_source

    sized = sized_for_source(req(files, mask_image=files["mask"], width=512, height=512))
    assert (sized.width, sized.height) == (W, H)
    assert sized.warnings == ("inpainting keeps the init image's size: sampling at 32x48, not 512x512",)
    assert sized_for_source(req(files, mask_image=files["mask"])).warnings == ()
    plain = req(files, width=512, height=512)
    assert sized_for_source(plain) is plain  # plain img2img resizes the init image to the request's size
