"""RemoteSession against the REAL ComfyUI server running the tiny SD3 set (tests/comfyui/server.py).

The set has one CLIP-L and no CLIP-G or T5 (what ComfyUI can execute at test size), so these jobs run with
`partial_text_encoders=True`: the graph then loads CLIP-L alone (CLIPLoader type sd3) and says so in the PNG's
`prompt` chunk. Without that opt-in the session refuses the server (tested below)."""

import inspect
import json
import time

import numpy as np
import pytest
from PIL import Image

from app.inference.api.cancel import CancelToken
from app.inference.api.errors import FailureKind
from app.inference.api.events import (
    ImageFinished,
    JobCancelled,
    JobFailed,
    JobFinished,
    ModelLoaded,
    StepUpdate,
)
from app.inference.api.session import Session, SessionOptions
from app.metadata.image_file import finished_image_params, write_image
from app.remote.pool import ServerPool
from app.remote.session import RemoteSession, remote_factory
from tests.comfyui.remote_jobs import tiny_request

pytestmark = pytest.mark.slow


def test_the_remote_session_keeps_the_protocol():
    shape = [(p.name, p.kind, p.default) for p in inspect.signature(RemoteSession.run).parameters.values()]
    assert shape == [(p.name, p.kind, p.default) for p in inspect.signature(Session.run).parameters.values()]
    session = remote_factory("http://127.0.0.1:9")(SessionOptions(preview="off"))
    assert isinstance(session, Session) and session.preview == "off"
    pool_shape = [(p.name, p.kind, p.default) for p in inspect.signature(ServerPool.run).parameters.values()]
    assert pool_shape == shape and isinstance(
        ServerPool(["http://127.0.0.1:9", "http://127.0.0.1:10"]), Session
    )


def test_capabilities_from_the_real_server(remote):
    server, session, checkpoint = remote
    info = session.capabilities(refresh=True)
    assert (
        info.comfyui_version == "0.8.0" and info.devices[0].type == "cpu" and info.devices[0].vram_total > 0
    )
    assert (info.previews_by_default, info.preview_method) == (True, "latent2rgb")
    assert checkpoint in info.sd35_checkpoints
    assert (info.encoder("clip_l"), info.encoder("clip_g"), info.encoder("t5")) == ("clip_l_random.safetensors",
                                                                                   None, None)  # fmt: skip
    assert {"SkipLayerGuidanceSD3", "CLIPLoader", "KSampler"} <= info.nodes and info.missing_nodes() == []
    assert {"euler", "dpmpp_2m", "euler_ancestral"} <= set(info.samplers)
    server.place_models("loras", "sd35_detail_lora.safetensors")
    server.place_models("controlnet", "sd3.5_large_controlnet_canny.safetensors")
    info = session.capabilities(refresh=True)
    assert "sd35_detail_lora.safetensors" in info.loras
    assert "sd3.5_large_controlnet_canny.safetensors" in info.controlnets


def test_a_job_runs_end_to_end_with_previews_and_the_graph_that_ran_in_the_png(remote, tmp_path):
    server, session, checkpoint = remote
    events = list(session.run(checkpoint, tiny_request(count=2)))
    assert (
        isinstance(events[0], ModelLoaded) and isinstance(events[-1], JobFinished) and events[-1].images == 2
    )
    steps = [(e.image_index, e.step, e.steps) for e in events if isinstance(e, StepUpdate)]
    assert steps == [(0, 1, 2), (0, 2, 2), (1, 1, 2), (1, 2, 2)]
    previews = [e.preview for e in events if isinstance(e, StepUpdate)]
    assert all(
        p is not None and p.dtype == np.uint8 and p.shape[2] == 3 and max(p.shape) <= 512 for p in previews
    )
    finished = [e for e in events if isinstance(e, ImageFinished)]
    assert [(e.image_index, e.seed, e.pixels.shape) for e in finished] == [
        (0, 7, (64, 64, 3)),
        (1, 8, (64, 64, 3)),
    ]
    assert not np.array_equal(finished[0].pixels, finished[1].pixels)

    # The PNG our writer makes carries, as its `prompt` chunk, exactly the graph the server ran.
    path = write_image(tmp_path / "a.png", finished[1].pixels, finished_image_params(finished[1]),
                       finished[1].comfy_files)  # fmt: skip
    written = json.loads(Image.open(path).text["prompt"])
    history = server.get("/history?max_items=64")
    ran = [entry["prompt"][2] for entry in history.values() if entry["prompt"][2] == written]
    assert len(ran) == 1
    loaders = {n["class_type"] for n in written.values()} & {
        "CLIPLoader",
        "DualCLIPLoader",
        "TripleCLIPLoader",
    }
    assert loaders == {"CLIPLoader"}  # what the server really used: CLIP-L alone

    # Each seed is reproducible alone: seed 8 as a job of its own gives the same pixels.
    alone = [e for e in session.run(checkpoint, tiny_request(seed=8)) if isinstance(e, ImageFinished)]
    assert np.array_equal(alone[0].pixels, finished[1].pixels)


def test_previews_off_sends_none(remote):
    server, _, checkpoint = remote
    session = RemoteSession(server.url, preview="off", partial_text_encoders=True)
    try:
        events = list(session.run(checkpoint, tiny_request(seed=11)))
    finally:
        session.close()
    steps = [e for e in events if isinstance(e, StepUpdate)]
    assert len(steps) == 2 and all(e.preview is None for e in steps)
    assert isinstance(events[-1], JobFinished) and session.previews_seen is None


def test_a_server_started_without_previews_sends_them_when_a_job_asks(comfyui_tiny, tmp_path, capsys):
    """ComfyUI 0.8 takes a preview method per prompt (extra_data.preview_method): `engines test` says previews are
    off by default, and a job still gets them; the session records whether any came."""
    from app.cli.main import main
    from tests.comfyui.server import TINY_CLIP_L, start_server

    _, checkpoint, _ = comfyui_tiny
    server = start_server(tmp_path / "no-previews", "--preview-method", "none")
    try:
        for folder, name in (("checkpoints", checkpoint), ("clip", TINY_CLIP_L)):
            server.link_model(folder, (comfyui_tiny[0].comfy / "models" / folder / name).resolve())
        assert main(["engines", "test", server.url]) == 0
        assert "previews: off by default (started without --preview-method); SD3.5 Studio asks for them with " \
               "each job" in capsys.readouterr().out  # fmt: skip
        session = RemoteSession(server.url, preview="linear", partial_text_encoders=True)
        events = list(session.run(checkpoint, tiny_request(seed=31)))
        session.close()
    finally:
        server.stop()
    previews = [e.preview for e in events if isinstance(e, StepUpdate)]
    assert len(previews) == 2 and all(p is not None for p in previews) and session.previews_seen is True


def test_cancel_an_image_and_then_the_job_on_the_server(remote):
    server, session, checkpoint = remote
    cancel = CancelToken()
    events = []
    for event in session.run(checkpoint, tiny_request(seed=20, count=3, steps=40), cancel):
        events.append(event)
        if isinstance(event, StepUpdate) and (event.image_index, event.step) == (0, 1):
            cancel.cancel_image(1)  # still waiting in the server's queue: deleted there
        if isinstance(event, StepUpdate) and (event.image_index, event.step) == (2, 2):
            cancel.cancel()  # running: interrupted there
    kinds = [(type(e).__name__, getattr(e, "image_index", None)) for e in events
             if not isinstance(e, StepUpdate | ModelLoaded)]  # fmt: skip
    assert kinds == [("ImageCancelled", 1), ("ImageFinished", 0), ("JobCancelled", None)]
    assert events[-1] == JobCancelled(1)
    last_step = max(e.step for e in events if isinstance(e, StepUpdate) and e.image_index == 2)
    assert last_step < 40
    # The interrupt acts at the server's next step: on a busy machine its queue empties a moment later.
    deadline = time.monotonic() + 15
    while (queue := server.get("/queue"))["queue_running"] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert queue["queue_running"] == [] and queue["queue_pending"] == []
    statuses = [entry["status"]["messages"][-1][0] for entry in server.get("/history?max_items=64").values()
                if _seed(entry["prompt"][2]) in (21, 22)]  # fmt: skip
    assert statuses == ["execution_interrupted"]  # seed 21 never ran; seed 22 was stopped within its steps


def _seed(graph: dict) -> int | None:
    """The KSampler's seed; None for another test's graph on the shared server (SamplerCustom: img2img, hires)."""
    return next((n["inputs"]["seed"] for n in graph.values() if n["class_type"] == "KSampler"), None)


def test_image_to_image_uploads_the_resized_init_image(remote, tmp_path):
    server, session, checkpoint = remote
    init = tmp_path / "my private name.png"
    Image.new("RGB", (100, 80), (200, 30, 30)).save(init)
    events = list(session.run(checkpoint, tiny_request(seed=3, init_image=init, denoise=0.5)))
    (finished,) = [e for e in events if isinstance(e, ImageFinished)]
    assert finished.pixels.shape == (64, 64, 3)
    name = finished.comfy_files.init_image
    assert name.startswith("sd35-studio/init-") and "private" not in name  # no local name leaves the machine
    uploaded = Image.open(server.comfy / "input" / name)
    assert uploaded.size == (64, 64) and uploaded.getpixel((10, 10)) == (200, 30, 30)


def test_a_server_without_clip_g_is_refused_unless_allowed(remote):
    server, _, checkpoint = remote
    session = RemoteSession(server.url)
    events = list(session.run(checkpoint, tiny_request()))
    assert len(events) == 1 and isinstance(events[0], JobFailed) and events[0].kind == FailureKind.MODEL
    assert "no CLIP-G text encoder" in events[0].message
    (event,) = session.run("sd3.5_large.safetensors", tiny_request())
    assert event.kind == FailureKind.MODEL and "has no checkpoint 'sd3.5_large.safetensors'" in event.message
    (event,) = RemoteSession(server.url, partial_text_encoders=True).run(
        checkpoint, tiny_request(use_t5=True)
    )
    assert event.kind == FailureKind.MODEL and "no T5-XXL" in event.message


def test_an_unreachable_server_fails_the_job_with_one_sentence():
    (event,) = RemoteSession("http://127.0.0.1:9", timeout=2).run("x.safetensors", tiny_request())
    assert isinstance(event, JobFailed) and event.kind == FailureKind.CONNECTION
    assert event.message.startswith("cannot reach the ComfyUI server at http://127.0.0.1:9")
