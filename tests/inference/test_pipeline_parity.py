"""A whole txt2img job against diffusers' StableDiffusion3Pipeline on the same tiny model set.

Where the spec says the two agree (Euler + "normal" schedule, T5 padded to 77 tokens, a prompt of one CLIP
window without "!" or weight syntax) the final latents match; the PNG differs only by diffusers' rounding
(we truncate, SD35_MODEL.md section 4.3).
"""

import numpy as np
import pytest
import torch

from app.inference.api.events import ImageFinished
from app.inference.api.request import GenerationRequest
from app.inference.checkpoints.model_set import locate_model_set
from app.inference.networks.vae import process_out
from app.inference.pipeline.session import GenerationSession
from app.inference.sampling.samplers import make_noise
from tests.factory.diffusers_oracle import diffusers_pipeline
from tests.factory.snapshot import write_snapshot

pytest.importorskip("diffusers")

PROMPT = "a red fox in the snow"


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    folder = write_snapshot(tmp_path_factory.mktemp("snap") / "sd35m", "medium", seed=4)
    model_set = locate_model_set(folder)
    session = GenerationSession(device="cpu", dtype="float32", preview="off")
    pipe = diffusers_pipeline(folder, model_set.checkpoint)
    return session, model_set, pipe


def _rel(a, b):
    return ((a - b).abs().max() / b.abs().max()).item()


@pytest.mark.parametrize(
    "guidance",
    [
        {"cfg": 4.5},
        {"cfg": 1.0},
        {"cfg": 3.0, "slg_layers": (7, 8, 9), "slg_scale": 2.5, "slg_start": 0.01, "slg_end": 0.5},
    ],
)
def test_txt2img_latent_and_pixels_match_diffusers(setup, guidance):
    session, model_set, pipe = setup
    steps, size, seed = 6, 48, 11
    request = GenerationRequest(
        prompt=PROMPT,
        negative="blurry",
        seed=seed,
        steps=steps,
        sampler="euler",
        scheduler="normal",
        width=size,
        height=64,
        text_mode="reference",
        slg_layers=guidance.get("slg_layers", ()),
        slg_scale=guidance.get("slg_scale", 0.0),
        slg_start=guidance.get("slg_start", 0.01),
        slg_end=guidance.get("slg_end", 0.2),
        cfg=guidance["cfg"],
    )
    events = list(session.run(model_set, request))
    ours = next(e for e in events if isinstance(e, ImageFinished))

    extra = {}
    if "slg_layers" in guidance:
        extra = {
            "skip_guidance_layers": list(guidance["slg_layers"]),
            "skip_layer_guidance_scale": guidance["slg_scale"],
            "skip_layer_guidance_start": guidance["slg_start"],
            "skip_layer_guidance_stop": guidance["slg_end"],
        }
    noise = make_noise(seed, (1, 16, 64 // 8, size // 8))
    with torch.inference_mode():
        # diffusers runs cfg 1 as "guidance off" only below 1 (guidance_scale > 1 enables CFG): 1.0 is off there too.
        latents = pipe(
            prompt=PROMPT,
            negative_prompt="blurry",
            num_inference_steps=steps,
            guidance_scale=guidance["cfg"],
            height=64,
            width=size,
            latents=noise.clone(),
            max_sequence_length=77,
            output_type="latent",
            **extra,
        ).images
        theirs_latent = process_out(latents.float())
        image = pipe.vae.decode(theirs_latent).sample
    assert _rel(ours.latent, theirs_latent) < 1e-4
    theirs_pixels = (
        (image[0].permute(1, 2, 0).clamp(-1, 1).add(1).div(2) * 255).round().numpy().astype(np.uint8)
    )
    diff = theirs_pixels.astype(int) - ours.pixels.astype(int)
    assert diff.min() >= -1 and diff.max() <= 1  # rounding vs truncation, plus float noise at the boundaries
    assert (diff != 0).mean() > 0.2  # truncation really differs from diffusers' rounding on most pixels


def test_text_conditioning_matches_diffusers_encode_prompt(setup):
    session, model_set, pipe = setup
    list(
        session.run(model_set, GenerationRequest(prompt="x", steps=1, width=16, height=16))
    )  # loads the models
    ours = session.engine.encode(PROMPT, "reference")
    with torch.inference_mode():
        context, _, pooled, _ = pipe.encode_prompt(
            prompt=PROMPT,
            prompt_2=None,
            prompt_3=None,
            do_classifier_free_guidance=False,
            max_sequence_length=77,
        )
    assert ours.context.shape == context.shape == (1, 154, 256)
    torch.testing.assert_close(ours.context, context.float(), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ours.pooled, pooled.float(), rtol=1e-5, atol=1e-5)


# --- where the spec says diffusers departs from Stability's reference: we follow the reference -----------------


def test_t5_is_not_padded_to_256_tokens(setup):
    session, model_set, pipe = setup
    list(session.run(model_set, GenerationRequest(prompt="x", steps=1, width=16, height=16)))
    ours = session.engine.encode(PROMPT, "reference")
    with torch.inference_mode():
        context, *_ = pipe.encode_prompt(
            prompt=PROMPT, prompt_2=None, prompt_3=None, do_classifier_free_guidance=False
        )  # diffusers' default: 256 T5 tokens
    assert context.shape[1] == 77 + 256
    assert ours.context.shape[1] == 77 + 77  # the reference: max(77, n + 1)


def test_weight_syntax_is_stripped_where_diffusers_tokenises_parentheses(setup):
    session, model_set, pipe = setup
    list(session.run(model_set, GenerationRequest(prompt="x", steps=1, width=16, height=16)))
    plain = session.engine.encode("a red fox", "reference")
    weighted = session.engine.encode("a (red:1.3) fox", "reference")
    torch.testing.assert_close(weighted.context, plain.context)  # reference mode: weights parsed and ignored
    with torch.inference_mode():
        d_plain, *_ = pipe.encode_prompt(
            prompt="a red fox",
            prompt_2=None,
            prompt_3=None,
            do_classifier_free_guidance=False,
            max_sequence_length=77,
        )
        d_weighted, *_ = pipe.encode_prompt(
            prompt="a (red:1.3) fox",
            prompt_2=None,
            prompt_3=None,
            do_classifier_free_guidance=False,
            max_sequence_length=77,
        )
    assert not torch.allclose(d_plain, d_weighted)


def test_img2img_keeps_one_more_step_than_diffusers_in_float_edge_cases():
    from types import SimpleNamespace

    from diffusers import FlowMatchEulerDiscreteScheduler, StableDiffusion3Img2ImgPipeline

    from app.inference.sampling.schedules import img2img_sigmas, make_sigmas

    ours = img2img_sigmas(make_sigmas("normal", 40), 0.8)
    assert len(ours) - 1 == 33  # int(40 * (1 - 0.8)) = int(7.999...) = 7 dropped
    scheduler = FlowMatchEulerDiscreteScheduler(shift=3.0)
    scheduler.set_timesteps(40)
    timesteps, n = StableDiffusion3Img2ImgPipeline.get_timesteps(
        SimpleNamespace(scheduler=scheduler), 40, 0.8, "cpu"
    )
    assert n == len(timesteps) == 32  # diffusers drops int(40 - 40 * 0.8) = 8
    torch.testing.assert_close(
        ours[:-1], scheduler.sigmas[7:-1].float(), rtol=0, atol=2e-7
    )  # ours starts 1 earlier
