"""The session's phases: whole-run latents equal the pieces composed by hand, non-finite values fail the image
with a sentence (never a black image), and long prompts report encoding progress and can be cancelled."""

import pytest
import torch

from app.inference.api.cancel import CancelToken
from app.inference.api.errors import FailureKind
from app.inference.api.events import (
    ImageFailed,
    ImageFinished,
    JobCancelled,
    JobFinished,
    PromptEncoding,
    StepUpdate,
)
from app.inference.api.request import GenerationRequest
from app.inference.checkpoints.model_set import locate_model_set
from app.inference.networks.vae import process_out
from app.inference.pipeline.session import GenerationSession
from app.inference.sampling.guidance import GuidanceConfig, GuidedDenoiser
from app.inference.sampling.samplers import SAMPLERS, ancestral_noise_sampler, make_noise
from app.inference.sampling.schedules import make_sigmas
from tests.factory.snapshot import poison_tensor, write_snapshot


@pytest.fixture(scope="module")
def model_set(tmp_path_factory):
    return locate_model_set(write_snapshot(tmp_path_factory.mktemp("m") / "sd35m", "medium", seed=2))


@pytest.fixture(scope="module")
def session():
    return GenerationSession(device="cpu", dtype="float32", preview="linear", batch_size=2)


def req(**kw):
    base = dict(prompt="a (red:1.2) lighthouse", negative="fog", width=32, height=48, steps=4, seed=5)
    return GenerationRequest(**(base | kw))


def _by_hand(session: GenerationSession, model_set, request: GenerationRequest) -> list[torch.Tensor]:
    """The job composed from the engine's pieces directly: what the session's phases must add up to."""
    r = request.resolved(model_set.variant, model_set.mmdit_config)
    engine = session.engine
    guidance = GuidanceConfig(cfg=r.cfg, steps=r.steps, shift=r.shift, slg_layers=r.slg_layers,
                              slg_scale=r.slg_scale, slg_start=r.slg_start, slg_end=r.slg_end,
                              negative_until=r.negative_until)  # fmt: skip
    cond = engine.encode(r.prompt, r.text_mode)
    uncond = engine.encode(r.negative, r.text_mode) if guidance.uses_uncond else None
    sigmas = make_sigmas(r.scheduler, r.steps, r.shift)
    denoiser = GuidedDenoiser(engine.mmdit, cond, uncond, guidance, sigmas)
    shape = (1, 16, r.height // 8, r.width // 8)
    latents = []
    for seed in range(r.seed, r.seed + r.count):
        extra = {}
        if r.sampler == "euler_ancestral":
            extra["noise"] = ancestral_noise_sampler(seed, shape)
        with torch.inference_mode():
            x = SAMPLERS[r.sampler](lambda x, s, i: denoiser(x, s, i), make_noise(seed, shape), denoiser.sigmas,
                                    **extra)  # fmt: skip
            latents.append(process_out(x).float())
    return latents


@pytest.mark.parametrize(
    "kw",
    [
        {"sampler": "euler"},
        {"sampler": "dpmpp_2m", "count": 3},
        {"sampler": "euler_ancestral", "count": 2, "scheduler": "beta"},
        {"slg_layers": (1,), "slg_scale": 2.5, "slg_end": 0.9},
        {"negative_until": 0.4, "scheduler": "simple"},
        {"cfg": 1.0},
    ],
)
def test_whole_run_latents_equal_the_pieces_composed_by_hand(session, model_set, kw):
    images = [e for e in session.run(model_set, req(**kw)) if isinstance(e, ImageFinished)]
    expected = _by_hand(session, model_set, req(**kw))
    assert len(images) == len(expected)
    for image, latent in zip(images, expected, strict=True):
        assert torch.equal(image.latent, latent)


def test_a_model_with_nan_weights_fails_each_image_with_a_sentence(tmp_path):
    folder = write_snapshot(tmp_path / "sd35m", "medium", seed=2)
    poison_tensor(folder / "sd3.5_medium.safetensors", "model.diffusion_model.final_layer.linear.weight")
    events = list(GenerationSession(device="cpu", dtype="float32", preview="off").run(folder, req(count=2)))
    failed = [e for e in events if isinstance(e, ImageFailed)]
    assert [(e.image_index, e.seed) for e in failed] == [(0, 5), (1, 6)]
    assert all(e.kind is FailureKind.NON_FINITE for e in failed)
    assert failed[0].message.startswith("the model produced NaN at step 1: the weights may be damaged")
    assert not any(isinstance(e, (ImageFinished, StepUpdate)) for e in events)
    assert isinstance(events[-1], JobFinished) and events[-1].images == 0


def test_nan_at_step_three_fails_only_that_image_of_the_batch(session, model_set, monkeypatch):
    list(session.run(model_set, req(steps=1)))  # load
    mmdit = session.engine.mmdit
    original = mmdit.forward_prepared  # the job's path through the network
    calls = {"n": 0}

    def nan_in_row_0_at_step_3(x, *args, **kwargs):
        calls["n"] += 1
        out = original(x, *args, **kwargs)
        if calls["n"] == 3:  # the third network call: step 3 (cond and uncond in one call)
            out = out.clone()
            out[0] = float("nan")  # image 0's conditional half
        return out

    monkeypatch.setattr(mmdit, "forward_prepared", nan_in_row_0_at_step_3)
    events = list(session.run(model_set, req(count=2, steps=5)))
    monkeypatch.setattr(mmdit, "forward_prepared", original)
    (failed,) = [e for e in events if isinstance(e, ImageFailed)]
    assert (failed.image_index, failed.kind) == (0, FailureKind.NON_FINITE)
    assert failed.message.startswith("the model produced NaN at step 3:")
    assert "try float32" not in failed.message  # it runs in float32 already
    assert [e.step for e in events if isinstance(e, StepUpdate) and e.image_index == 0] == [1, 2]
    (finished,) = [e for e in events if isinstance(e, ImageFinished)]
    alone = next(e for e in session.run(model_set, req(seed=6, steps=5)) if isinstance(e, ImageFinished))
    assert finished.image_index == 1 and torch.equal(finished.latent, alone.latent)


def test_a_vae_with_nan_weights_fails_the_image_instead_of_saving_black(tmp_path):
    folder = write_snapshot(tmp_path / "sd35m", "medium", seed=2)
    poison_tensor(folder / "sd3.5_medium.safetensors", "first_stage_model.decoder.conv_out.weight")
    events = list(GenerationSession(device="cpu", dtype="float32", preview="off").run(folder, req(steps=2)))
    (failed,) = [e for e in events if isinstance(e, ImageFailed)]
    assert failed.message.startswith("the VAE produced NaN or infinite values while decoding")
    assert not any(isinstance(e, ImageFinished) for e in events)


LONG_PROMPT = " ".join(["a lighthouse on a rocky coast at dusk, waves, gulls"] * 30)  # several CLIP windows


def test_a_long_prompt_reports_encoding_progress_window_by_window(session, model_set):
    events = list(session.run(model_set, req(prompt=LONG_PROMPT, steps=1, cfg=1.0)))
    encoding = [e for e in events if isinstance(e, PromptEncoding)]
    windows = len(session.engine.text.tokenizer.tokenize(LONG_PROMPT, "full").clip_l)
    assert windows > 3
    total = 2 * windows + 1  # each window through CLIP-L and CLIP-G, then T5 once
    assert [(e.prompt, e.done, e.total) for e in encoding] == [
        ("prompt", k, total) for k in range(1, total + 1)
    ]
    first_step = next(i for i, e in enumerate(events) if isinstance(e, StepUpdate))
    assert events.index(encoding[-1]) < first_step


def test_cancel_while_encoding_stops_at_the_next_window(session, model_set):
    list(session.run(model_set, req(steps=1)))  # load
    token = CancelToken()
    seen = []

    def on_event(event):
        seen.append(event)
        if isinstance(event, PromptEncoding) and event.done == 2:
            token.cancel()

    session.execute(model_set, req(prompt=LONG_PROMPT, steps=2), token, on_event)
    assert [e.done for e in seen if isinstance(e, PromptEncoding)] == [1, 2]
    assert isinstance(seen[-1], JobCancelled)
