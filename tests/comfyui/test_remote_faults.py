"""Faults the real server cannot be made to show, injected with an in-process fake (fake_server.py): each job ends
with one clear sentence, images already made are kept, and nothing hangs (every run is bounded here)."""

import json
import struct
import threading
import time
import zlib

import pytest

from app.inference.api.errors import FailureKind
from app.inference.api.events import ImageFailed, ImageFinished, JobFailed, JobFinished, StepUpdate
from app.inference.api.request import GenerationRequest
from app.remote.pool import ServerPool
from app.remote.session import RemoteSession
from tests.comfyui.fake_server import FakeComfy, png_bytes, ws_frame

CHECKPOINT = "sd3.5_medium.safetensors"


def request(**overrides):
    values = {"prompt": "a fox", "seed": 1, "steps": 3, "width": 64, "height": 64, "use_t5": False}
    return GenerationRequest(**{**values, **overrides})


def run_bounded(session, req, limit: float = 15.0) -> tuple[list, float]:
    """All events of a job, failing the test if it takes longer than `limit` seconds (a hang)."""
    events, started = [], time.monotonic()
    thread = threading.Thread(target=lambda: events.extend(session.run(CHECKPOINT, req)), daemon=True)
    thread.start()
    thread.join(limit)
    assert not thread.is_alive(), f"the job hung for {limit} s; events so far: {events}"
    return events, time.monotonic() - started


@pytest.fixture
def fake():
    with FakeComfy() as server:
        yield server


def session_for(fake, **kwargs):
    kwargs.setdefault("partial_text_encoders", True)
    kwargs.setdefault("timeout", 2.0)
    kwargs.setdefault("poll_every", 0.5)
    return RemoteSession(fake.url, **kwargs)


def test_the_fake_runs_a_normal_job(fake):
    """The baseline the faults below depart from: two images, their steps, server names never used as paths."""
    session = session_for(fake)
    events, _ = run_bounded(session, request(count=2))
    assert [type(e).__name__ for e in events if not isinstance(e, StepUpdate)][1:] == [
        "ImageFinished", "ImageFinished", "JobFinished"]  # fmt: skip
    assert [e.step for e in events if isinstance(e, StepUpdate)] == [1, 2, 3, 1, 2, 3]
    assert session.previews_seen is False  # this server ignores the job's preview method: said, not hidden


def test_a_websocket_dropped_mid_job_with_the_server_gone_fails_the_job(fake):
    def run(fake, prompt_id, graph):
        fake.send_json("execution_start", {"prompt_id": prompt_id})
        node, steps = fake.sampler_of(graph)
        fake.send_json("progress", {"value": 1, "max": steps, "prompt_id": prompt_id, "node": node})
        time.sleep(0.2)
        fake.refuse_ws = True
        fake.status["/queue"] = 503
        fake.drop_ws()

    fake.on_prompt = run
    events, _ = run_bounded(session_for(fake), request())
    assert isinstance(events[-2], StepUpdate) and isinstance(events[-1], JobFailed)
    assert events[-1].kind == FailureKind.CONNECTION
    assert events[-1].message.startswith(
        f"lost the connection to the ComfyUI server at {fake.url} during the job"
    )


def test_a_websocket_dropped_mid_job_loses_no_image(fake):
    """The server finishes the image while our socket is down: after reconnecting it is fetched from /history."""

    def run(fake, prompt_id, graph):
        if len(fake.history) == 0:  # the first image: drop the socket, finish it unseen
            fake.send_json("execution_start", {"prompt_id": prompt_id})
            fake.drop_ws()
            time.sleep(0.3)
            fake.finish(prompt_id, graph)
        else:
            time.sleep(0.6)  # after the reconnect
            FakeComfy.run_prompt(fake, prompt_id, graph)

    fake.on_prompt = run
    events, _ = run_bounded(session_for(fake), request(count=2))
    finished = [e for e in events if isinstance(e, ImageFinished)]
    assert sorted(e.seed for e in finished) == [1, 2] and isinstance(events[-1], JobFinished)


@pytest.mark.parametrize("route", ["/prompt", "/object_info", "/history/"])
def test_a_500_ends_the_job_with_a_sentence(fake, route):
    fake.status[route if route != "/history/" else "/view"] = 500
    events, _ = run_bounded(session_for(fake), request())
    assert isinstance(events[-1], JobFailed) and events[-1].kind == FailureKind.CONNECTION
    assert "500" in events[-1].message and "\n" not in events[-1].message


def test_a_malformed_websocket_message(fake):
    fake.on_prompt = lambda fake, pid, graph: fake.send(ws_frame(0x1, b"{not json"))
    events, _ = run_bounded(session_for(fake), request())
    assert events[-1].kind == FailureKind.CONNECTION and "not valid JSON" in events[-1].message


def test_an_oversized_websocket_frame_is_refused_by_its_header(fake):
    """The frame claims 1 GB: refused from its header, nothing of that size is read or allocated."""
    fake.on_prompt = lambda fake, pid, graph: fake.send(ws_frame(0x2, b"\0" * 16, claimed_length=2**30))
    events, seconds = run_bounded(session_for(fake), request())
    assert events[-1].kind == FailureKind.CONNECTION and "larger than 32 MB" in events[-1].message
    assert seconds < 5


def test_a_deeply_nested_answer_is_refused(fake):
    fake.body["/object_info"] = b"[" * 100_000 + b"]" * 100_000
    events, _ = run_bounded(session_for(fake), request())
    assert events[-1].kind == FailureKind.CONNECTION and "nested too deeply" in events[-1].message


def test_a_slow_server_times_out(fake):
    fake.delay["/system_stats"] = 5
    events, seconds = run_bounded(session_for(fake, timeout=0.5), request())
    assert events[-1].kind == FailureKind.CONNECTION and "no answer within 0.5 s" in events[-1].message
    assert seconds < 4


def test_a_trickling_answer_times_out(fake):
    """Bytes keep coming, but too slowly: the answer's total deadline ends it (a per-read timeout would not)."""
    fake.trickle["/system_stats"] = 0.1
    events, seconds = run_bounded(session_for(fake, timeout=1.0), request())
    assert events[-1].kind == FailureKind.CONNECTION and "no answer within 1 s" in events[-1].message
    assert seconds < 5


def test_a_job_the_server_loses_fails_its_image_and_the_job_ends(fake):
    def vanish(fake, prompt_id, graph):
        fake.queued.remove(prompt_id)  # neither queued nor in history: gone (a server restart)

    fake.on_prompt = vanish
    events, _ = run_bounded(session_for(fake), request())
    (failed,) = [e for e in events if isinstance(e, ImageFailed)]
    assert failed.kind == FailureKind.CONNECTION and "lost this image's job" in failed.message
    assert events[-1] == JobFinished(0, events[-1].seconds)


def test_a_bad_preview_costs_the_preview_and_a_huge_image_is_refused_unread(fake):
    def run(fake, prompt_id, graph):
        fake.send_preview(prompt_id, b"\xff\xd8 not a jpeg")
        FakeComfy.run_prompt(fake, prompt_id, graph)

    fake.on_prompt = run
    png = png_bytes((8, 8))
    ihdr = b"IHDR" + struct.pack(">II", 9000, 9000) + png[24:29]  # the header claims 9000 x 9000 px
    fake.view_image = png[:12] + ihdr + struct.pack(">I", zlib.crc32(ihdr)) + png[33:]
    events, _ = run_bounded(session_for(fake), request())
    steps = [e for e in events if isinstance(e, StepUpdate)]
    assert len(steps) == 3 and steps[0].preview is None
    assert events[-1].kind == FailureKind.CONNECTION and "too large (9000x9000 px)" in events[-1].message


def test_something_that_is_not_comfyui(fake):
    fake.body["/system_stats"] = b"<html>a router's login page</html>"
    events, _ = run_bounded(session_for(fake), request())
    assert events[-1].kind == FailureKind.CONNECTION and "not valid JSON" in events[-1].message
    fake.body["/system_stats"] = json.dumps({"hello": 1}).encode()
    events, _ = run_bounded(session_for(fake), request())
    assert "does not look like a ComfyUI server" in events[-1].message


@pytest.mark.parametrize("model", ["/home/me/models/sd3.5_large.safetensors", "C:\\models\\x.safetensors",
                                   "../../secret.safetensors", "~/x.safetensors"])  # fmt: skip
def test_a_local_path_is_never_sent_as_a_checkpoint(fake, model):
    for session in (session_for(fake), ServerPool([fake.url, fake.url], timeout=2.0)):
        (event,) = list(session.run(model, request()))
        assert event.kind == FailureKind.REQUEST and "is a path on this machine" in event.message
    assert ("POST", "/prompt") not in fake.requests


def test_what_the_remote_engine_cannot_run_as_we_do_is_refused_before_anything_is_sent(fake, tmp_path):
    """Masks, outpainting, the hires fix, LoRAs and ControlNets are sent (tests/comfyui/test_remote_inputs.py);
    the reference text mode is not: ComfyUI encodes prompts its own way."""
    from PIL import Image

    image = tmp_path / "in.png"
    Image.new("RGB", (64, 64), "grey").save(image)
    events, _ = run_bounded(session_for(fake), request(text_mode="reference", init_image=image, denoise=0.5))
    assert isinstance(events[-1], JobFailed) and "not Stability's reference way" in events[-1].message
    assert "run this job on this machine" in events[-1].message
    assert ("POST", "/prompt") not in fake.requests and ("POST", "/upload/image") not in fake.requests


def test_a_server_lacking_a_node_the_job_needs_is_named_before_anything_is_queued(fake, tmp_path):
    """The fake lists no mask nodes: a masked job names them and queues nothing; img2img there, without the
    custom-sampling nodes, falls back to KSampler's own schedule and runs."""
    from PIL import Image

    image, mask = tmp_path / "in.png", tmp_path / "mask.png"
    Image.new("RGB", (64, 64), "grey").save(image)
    Image.new("L", (64, 64), 255).save(mask)
    events, _ = run_bounded(session_for(fake), request(init_image=image, mask_image=mask))
    assert [type(e) for e in events] == [JobFailed] and events[0].kind == FailureKind.MODEL
    assert "lacks the ImageCompositeMasked, LoadImageMask, SetLatentNoiseMask nodes this job needs" in \
        events[0].message  # fmt: skip
    assert ("POST", "/prompt") not in fake.requests
    fake.accept_uploads = True
    events, _ = run_bounded(session_for(fake), request(init_image=image, denoise=0.5))
    assert isinstance(events[-1], JobFinished) and events[-1].images == 1
    assert sum(isinstance(e, StepUpdate) for e in events) == 3  # KSampler(denoise) runs all 3 steps
    (finished,) = [e for e in events if isinstance(e, ImageFinished)]
    assert finished.comfy_files.init_image.startswith(
        "sd35-studio/renamed-init-"
    )  # the server's name is used
