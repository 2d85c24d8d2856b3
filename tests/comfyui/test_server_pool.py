"""Several servers as one engine (app/remote/pool.py), with two in-process fake ComfyUIs: the seeds are spread,
the rule prefers a server with the model loaded, and a server that drops out mid-run loses no image."""

import threading
import time

from app.inference.api.events import ImageFinished, JobFailed, JobFinished, StepUpdate
from app.inference.api.request import GenerationRequest
from app.remote.pool import ServerPool
from tests.comfyui.fake_server import FakeComfy

CHECKPOINT = "sd3.5_medium.safetensors"


def request(**overrides):
    values = {"prompt": "a fox", "seed": 100, "steps": 2, "width": 64, "height": 64, "use_t5": False}
    return GenerationRequest(**{**values, **overrides})


def slow_run(fake, prompt_id, graph):
    time.sleep(0.3)  # long enough that both servers are busy at once
    FakeComfy.run_prompt(fake, prompt_id, graph)


def run_bounded(pool, req, limit=20.0):
    events = []
    thread = threading.Thread(target=lambda: events.extend(pool.run(CHECKPOINT, req)), daemon=True)
    thread.start()
    thread.join(limit)
    assert not thread.is_alive(), f"the pool hung; events so far: {events}"
    return events


def test_four_seeds_are_spread_over_two_servers():
    with FakeComfy() as a, FakeComfy() as b:
        a.on_prompt = b.on_prompt = slow_run
        pool = ServerPool([a.url, b.url], partial_text_encoders=True, timeout=2.0, poll_every=0.5)
        events = run_bounded(pool, request(count=4))
        pool.close()
    finished = sorted((e.image_index, e.seed, e.engine) for e in events if isinstance(e, ImageFinished))
    assert [(i, s) for i, s, _ in finished] == [(0, 100), (1, 101), (2, 102), (3, 103)]
    assert {e for *_, e in finished} == {a.url, b.url}  # each tile can say which server made it
    steps = {(e.image_index, e.step) for e in events if isinstance(e, StepUpdate)}
    assert steps == {(i, s) for i in range(4) for s in (1, 2)}
    assert events[-1] == JobFinished(4, events[-1].seconds)


def test_a_server_with_the_model_loaded_is_preferred():
    with FakeComfy() as a, FakeComfy() as b:
        pool = ServerPool([a.url, b.url], partial_text_encoders=True, timeout=2.0)
        pool.sessions[1]._announced = CHECKPOINT  # b ran this model last
        events = run_bounded(pool, request(count=1))
        pool.close()
    (image,) = [e for e in events if isinstance(e, ImageFinished)]
    assert image.engine == b.url


def test_a_server_that_drops_out_mid_run_loses_no_image():
    with FakeComfy() as a, FakeComfy() as b:
        b.on_prompt = slow_run

        def die(fake, prompt_id, graph):  # a's first image starts, then the server goes away
            fake.send_json("execution_start", {"prompt_id": prompt_id})
            time.sleep(0.1)
            fake.refuse_ws = True
            for route in ("/queue", "/history/" + prompt_id, "/system_stats", "/object_info", "/prompt"):
                fake.status[route] = 503
            fake.drop_ws()

        a.on_prompt = die
        pool = ServerPool([a.url, b.url], partial_text_encoders=True, timeout=2.0, poll_every=0.5)
        events = run_bounded(pool, request(count=4))
        pool.close()
    finished = sorted((e.image_index, e.engine) for e in events if isinstance(e, ImageFinished))
    assert [i for i, _ in finished] == [0, 1, 2, 3]  # nothing lost
    assert {e for _, e in finished} == {b.url}
    assert isinstance(events[-1], JobFinished) and events[-1].images == 4


def test_when_no_server_can_run_the_job_it_fails_with_their_reasons():
    with FakeComfy() as a, FakeComfy() as b:
        pool = ServerPool([a.url, b.url], timeout=2.0)  # the job wants T5; neither fake has a T5 file
        events = run_bounded(pool, GenerationRequest(prompt="x", width=64, height=64, use_t5=True, steps=2))
        pool.close()
    assert isinstance(events[-1], JobFailed) and events[-1].message.startswith("no server can run this job: ")
    assert "no T5-XXL text encoder" in events[-1].message


def test_generate_spreads_a_job_over_servers_given_to_engine(tmp_path, capsys):
    from app.cli.main import main

    with FakeComfy() as a, FakeComfy() as b:
        a.on_prompt = b.on_prompt = slow_run
        code = main(["generate", "--engine", f"{a.url},{b.url}", "--model", CHECKPOINT, "--prompt", "x",
                     "--count", "3", "--seed", "5", "--width", "64", "--height", "64", "--steps", "2", "--no-t5",
                     "--engine-partial-encoders", "--out", str(tmp_path / "img.png")])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.glob("*.png")) == ["img-5.png", "img-6.png", "img-7.png"]
    assert (
        main(["generate", "--engine", ",", "--model", "m", "--prompt", "x", "--out", str(tmp_path / "y.png")])
        == 1
    )
    assert "--engine needs a server address" in capsys.readouterr().err


def with_loras(fake, *names):
    """`fake`'s /object_info listing these LoRA files (LoraLoader's lora_name choices)."""
    import json

    from tests.comfyui.fake_server import OBJECT_INFO

    loader = {"input": {"required": {"lora_name": [list(names), {}]}}}
    fake.body["/object_info"] = json.dumps({**OBJECT_INFO, "LoraLoader": loader}).encode()


def lora_request(tmp_path, count):
    from app.inference.api.lora import LoraSpec

    lora = tmp_path / "clay style.safetensors"
    lora.write_bytes(b"local weights, never uploaded")
    return request(count=count, loras=(LoraSpec(lora, 0.8),))


def test_only_the_server_with_the_jobs_lora_makes_its_images(tmp_path):
    with FakeComfy() as a, FakeComfy() as b:
        with_loras(a, "other.safetensors")  # a lacks the job's LoRA; it is first in the list
        with_loras(b, "styles/clay style.safetensors")
        pool = ServerPool([a.url, b.url], partial_text_encoders=True, timeout=2.0, poll_every=0.5)
        started = time.monotonic()
        events = run_bounded(pool, lora_request(tmp_path, 4))
        pool.close()
    finished = sorted((e.image_index, e.seed, e.engine) for e in events if isinstance(e, ImageFinished))
    assert [(i, s) for i, s, _ in finished] == [(0, 100), (1, 101), (2, 102), (3, 103)]  # none lost
    assert {e for *_, e in finished} == {b.url}
    assert all(e.comfy_files.loras == ("styles/clay style.safetensors",) for e in events
               if isinstance(e, ImageFinished))  # fmt: skip
    assert ("POST", "/prompt") not in a.requests  # a was never sent a graph it cannot run
    assert not [e for e in events if isinstance(e, JobFailed)]
    assert events[-1] == JobFinished(4, events[-1].seconds)
    assert time.monotonic() - started < 10


def test_when_no_server_has_the_jobs_lora_the_job_fails_at_once_naming_it(tmp_path):
    with FakeComfy() as a, FakeComfy() as b:
        with_loras(a, "other.safetensors")
        with_loras(b)
        pool = ServerPool([a.url, b.url], partial_text_encoders=True, timeout=2.0, poll_every=0.5)
        started = time.monotonic()
        events = run_bounded(pool, lora_request(tmp_path, 3))
        seconds = time.monotonic() - started
        pool.close()
    assert not [e for e in events if isinstance(e, ImageFinished)]
    assert isinstance(events[-1], JobFailed) and events[-1].kind.name == "MODEL"
    message = events[-1].message
    assert "has no LoRA clay style.safetensors" in message and a.url in message and b.url in message
    assert "\n" not in message and message.count("never uploads") == 1  # the advice once, not per server
    assert seconds < 5, f"took {seconds:.1f} s"  # not the 120 s give-up
    assert ("POST", "/prompt") not in a.requests + b.requests
