"""The generation session: events, previews, prompt reuse, seed batches, cancel and recovery."""

import threading

import pytest
import torch

from app.inference.api.cancel import CancelToken
from app.inference.api.events import (
    ImageCancelled,
    ImageFinished,
    JobCancelled,
    JobFailed,
    JobFinished,
    ModelLoaded,
    ModelLoading,
    StepUpdate,
)
from app.inference.api.request import GenerationRequest
from app.inference.checkpoints.model_set import locate_model_set
from app.inference.pipeline.session import GenerationSession
from tests.factory.snapshot import write_snapshot


@pytest.fixture(scope="module")
def model_set(tmp_path_factory):
    return locate_model_set(write_snapshot(tmp_path_factory.mktemp("m") / "sd35m", "medium"))


@pytest.fixture(scope="module")
def session():
    return GenerationSession(device="cpu", dtype="float32", preview="linear")


def req(**kw):
    base = dict(prompt="a lighthouse", negative="fog", width=32, height=48, steps=4, seed=5)
    return GenerationRequest(**(base | kw))


def test_events_of_a_job(session, model_set, monkeypatch):
    import app.inference.pipeline.batch as batch
    from app.inference.sampling.preview import PreviewBudget

    # The budget drops previews that cost more than 5 % of sampling time; on a loaded machine a preview can,
    # and this test is about the events, not the budget (tests/inference/test_preview.py covers that).
    monkeypatch.setattr(batch, "PreviewBudget", lambda every: PreviewBudget(float("inf"), every))
    fresh = GenerationSession(device="cpu", dtype="float32", preview="linear")
    events = list(fresh.run(model_set, req(count=2)))
    loading = [e for e in events if isinstance(e, ModelLoading)]
    assert [e.component for e in loading] == ["text encoders", "diffusion model", "VAE"]
    assert isinstance(events[len(loading)], ModelLoaded)
    steps = [e for e in events if isinstance(e, StepUpdate)]
    assert [(e.image_index, e.step) for e in steps] == [(i, s) for i in range(2) for s in range(1, 5)]
    assert all(
        e.preview is not None and e.preview.shape == (6, 4, 3) for e in steps
    )  # latent-size linear preview
    assert all(e.steps == 4 and e.its > 0 for e in steps)
    assert steps[-1].eta == 0
    images = [e for e in events if isinstance(e, ImageFinished)]
    assert [(e.image_index, e.seed) for e in images] == [(0, 5), (1, 6)]
    assert images[0].pixels.shape == (48, 32, 3)
    assert (images[1].model_name, images[1].variant, images[1].fp8) == ("sd3.5_medium", "medium", False)
    assert isinstance(events[-1], JobFinished) and events[-1].images == 2
    # A second job reuses the loaded models: no loading events.
    assert not any(isinstance(e, ModelLoading) for e in fresh.run(model_set, req(steps=1)))


def test_prompts_are_encoded_once_per_job(session, model_set):
    before = session.encode_calls
    list(session.run(model_set, req(count=3, steps=1)))
    assert session.encode_calls - before == 2  # prompt and negative, whatever the number of images
    before = session.encode_calls
    list(session.run(model_set, req(count=2, steps=1, cfg=1.0)))
    assert session.encode_calls - before == 1  # cfg 1: no negative at all


def test_preview_off_and_every_n(model_set):
    off = GenerationSession(device="cpu", dtype="float32", preview="off")
    assert all(e.preview is None for e in off.run(model_set, req()) if isinstance(e, StepUpdate))
    every2 = GenerationSession(device="cpu", dtype="float32", preview="linear", preview_every=2)
    shown = [
        e.step for e in every2.run(model_set, req()) if isinstance(e, StepUpdate) and e.preview is not None
    ]
    assert shown == [1, 3]


def test_cancel_stops_within_one_step_and_next_job_runs(session, model_set):
    token = CancelToken()
    seen = []
    for event in session.run(model_set, req(steps=10), token):
        seen.append(event)
        if isinstance(event, StepUpdate) and event.step == 3:
            token.cancel()
    steps = [e.step for e in seen if isinstance(e, StepUpdate)]
    assert max(steps) <= 4  # the cancel lands at the latest on the next step boundary
    assert isinstance(seen[-1], JobCancelled)
    assert not any(isinstance(e, ImageFinished) for e in seen)
    after = list(session.run(model_set, req(steps=2)))
    assert isinstance(after[-1], JobFinished) and after[-1].images == 1


def test_a_failure_mid_run_is_reported_and_the_session_recovers(session, model_set, monkeypatch):
    list(session.run(model_set, req(steps=1)))  # make sure the models are loaded
    mmdit = session.engine.mmdit
    calls = {"n": 0}
    original = mmdit.forward_prepared  # a job's forward (text tokens and modulation prepared once per job)

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("injected failure")
        return original(*args, **kwargs)

    monkeypatch.setattr(mmdit, "forward_prepared", flaky)
    events = list(session.run(model_set, req(steps=4)))
    assert isinstance(events[-1], JobFailed) and "injected failure" in events[-1].message
    monkeypatch.setattr(mmdit, "forward_prepared", original)
    events = list(session.run(model_set, req(steps=2)))
    assert isinstance(events[-1], JobFinished)


def test_out_of_memory_becomes_advice(session, model_set, monkeypatch):
    list(session.run(model_set, req(steps=1)))

    def oom(*a, **k):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(session.engine.mmdit, "forward_prepared", oom)
    failed = list(session.run(model_set, req(steps=2)))[-1]
    assert isinstance(failed, JobFailed) and failed.kind == "memory"
    assert "Lower the image size" in failed.message


def test_bad_request_and_bad_model_fail_cleanly(session, model_set, tmp_path):
    failed = list(session.run(model_set, req(width=4096)))[-1]
    assert isinstance(failed, JobFailed) and failed.kind == "request"
    bad = tmp_path / "sd3.5_medium.safetensors"
    bad.write_bytes(b"not a checkpoint")
    failed = list(session.run(bad, req()))[-1]
    assert isinstance(failed, JobFailed) and failed.kind == "model" and "safetensors" in failed.message


def test_batched_seeds_match_single_runs_and_one_image_can_be_cancelled(model_set):
    batched = GenerationSession(device="cpu", dtype="float32", preview="linear", batch_size=3)
    single = GenerationSession(device="cpu", dtype="float32", preview="off")
    list(batched.run(model_set, req(steps=1)))  # load
    batch_sizes = []
    batched.engine.mmdit.x_embedder.register_forward_pre_hook(lambda m, a: batch_sizes.append(a[0].shape[0]))
    token = CancelToken()
    events = []

    def on_event(event):  # execute() reports synchronously: the cancel lands before the next step
        events.append(event)
        if isinstance(event, StepUpdate) and event.image_index == 1 and event.step == 2:
            token.cancel_image(1)

    batched.execute(model_set, req(count=3, steps=4), token, on_event)
    assert [e.step for e in events if isinstance(e, StepUpdate) and e.image_index == 1] == [1, 2]
    assert [e.image_index for e in events if isinstance(e, ImageCancelled)] == [1]
    finished = {e.image_index: e for e in events if isinstance(e, ImageFinished)}
    assert sorted(finished) == [0, 2]
    assert batch_sizes == [6, 6, 4, 4]  # 3 images x (cond, uncond), then 2 images once image 1 left the batch
    for k in (0, 2):
        alone = next(
            e
            for e in single.run(model_set, req(count=1, seed=5 + k, steps=4))
            if isinstance(e, ImageFinished)
        )
        torch.testing.assert_close(finished[k].latent, alone.latent, rtol=1e-4, atol=1e-5)


def test_run_can_be_consumed_from_another_thread(session, model_set):
    result = []
    t = threading.Thread(target=lambda: result.extend(session.run(model_set, req(steps=1))))
    t.start()
    t.join(timeout=60)
    assert not t.is_alive() and isinstance(result[-1], JobFinished)
