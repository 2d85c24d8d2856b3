"""ControlNets in a whole job on the tiny Large set: strength 0 gives the plain image, the window acts on the
right steps, two ControlNets differ from one, and every refusal is one sentence in JobFailed."""

import numpy as np
import pytest
import torch
from PIL import Image

from app.inference.api.control import ControlPreprocess, ControlSpec
from app.inference.api.errors import FailureKind, InvalidRequestError
from app.inference.api.events import ImageFinished, JobFailed, JobFinished
from app.inference.api.request import GenerationRequest
from app.inference.checkpoints.model_set import locate_model_set
from app.inference.control.apply import ControlStack
from app.inference.pipeline.session import GenerationSession
from app.inference.sampling.schedules import make_sigmas, percent_to_sigma
from tests.factory.controlnet_model import tiny_controlnet_state, write_controlnet
from tests.factory.mmdit_model import TINY_LARGE
from tests.factory.snapshot import write_snapshot


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("cnjob")
    large = locate_model_set(write_snapshot(root / "large", "large"))
    canny = write_controlnet(root / "cn" / "sd3.5_large_controlnet_canny.safetensors", blocks=3, seed=1)
    blur = write_controlnet(root / "cn" / "blur.safetensors", blocks=1, control_type="blur", seed=2)
    rgb = (np.indices((48, 32)).sum(axis=0)[..., None] * np.array([5, 3, 7])) % 256
    image = root / "control.png"
    Image.fromarray(rgb.astype(np.uint8)).save(image)
    return {"root": root, "large": large, "canny": canny, "blur": blur, "image": image}


@pytest.fixture(scope="module")
def session():
    return GenerationSession(device="cpu", dtype="float32", preview="off")


def _req(files, *controls, **kw):
    base = dict(
        prompt="a lighthouse", negative="fog", width=32, height=48, steps=4, seed=5, controlnets=controls
    )
    return GenerationRequest(**(base | kw))


def _spec(files, name="canny", **kw):
    return ControlSpec(files[name], files["image"], **kw)


def _run(session, model_set, req):
    events = list(session.run(model_set, req))
    failed = [e for e in events if isinstance(e, JobFailed)]
    if failed:
        return failed[0]
    assert isinstance(events[-1], JobFinished)
    return next(e for e in events if isinstance(e, ImageFinished)).pixels


def test_strength_zero_is_the_plain_image_and_strength_changes_it(session, files):
    plain = _run(session, files["large"], _req(files))
    zero = _run(session, files["large"], _req(files, _spec(files, strength=0.0)))
    assert np.array_equal(zero, plain)
    strong = _run(session, files["large"], _req(files, _spec(files, strength=1.0)))
    assert np.abs(strong.astype(int) - plain.astype(int)).max() > 0
    both = _run(session, files["large"], _req(files, _spec(files), _spec(files, "blur", strength=0.8)))
    assert np.abs(both.astype(int) - strong.astype(int)).max() > 0  # the second ControlNet adds its own


def test_window_acts_on_the_right_steps(session, files, monkeypatch):
    acted: list[float] = []
    original = ControlStack.for_call

    def spy(self, sigma, t, y):
        out = original(self, sigma, t, y)
        if out is not None:
            acted.append(round(sigma, 6))
        return out

    monkeypatch.setattr(ControlStack, "for_call", spy)
    steps, start, end = 8, 0.25, 0.6
    req = _req(files, _spec(files, start=start, end=end), steps=steps, sampler="euler")
    assert not isinstance(_run(session, files["large"], req), JobFailed)
    shift = req.resolved("large").shift
    sigmas = make_sigmas(req.resolved("large").scheduler, steps, shift).tolist()[:-1]
    hi, lo = percent_to_sigma(start, shift), percent_to_sigma(end, shift)
    expected = [round(s, 6) for s in sigmas if lo <= s <= hi]
    assert 0 < len(expected) < steps  # the window is a real part of the schedule
    assert acted == expected  # one batched (cond + uncond) forward per step, only inside the window


@pytest.mark.parametrize(
    ("make", "message"),
    [
        ("missing", "ControlNet file not found"),
        ("pickle", "pickle"),
        ("sd3_medium", "SD3-Medium ControlNet"),
        ("wrong_shape", "wrong shape"),
        ("narrow", "was made for another model"),
        ("not_controlnet", "not an SD3.5 ControlNet"),
        ("bad_image", "cannot read the control image"),
    ],
)
def test_refusals_are_one_sentence(session, files, tmp_path, make, message):
    image = files["image"]
    if make == "missing":
        path = tmp_path / "nothing.safetensors"
    elif make == "pickle":
        path = tmp_path / "cn.pt"
        torch.save({"a": torch.zeros(1)}, path)
    elif make == "sd3_medium":
        state = tiny_controlnet_state(blocks=1)
        state["transformer_blocks.0.norm1.linear.weight"] = state.pop(
            "transformer_blocks.0.adaLN_modulation.1.weight"
        )
        path = write_controlnet(tmp_path / "instantx.safetensors", state)
    elif make == "wrong_shape":
        state = tiny_controlnet_state(blocks=1)
        state["controlnet_blocks.0.weight"] = torch.zeros(64, 32, dtype=torch.float16)
        path = write_controlnet(tmp_path / "bad.safetensors", state)
    elif make == "narrow":
        path = write_controlnet(tmp_path / "narrow.safetensors", spec=type(TINY_LARGE)(hidden=32), blocks=1)
    elif make == "not_controlnet":
        path = files["large"].checkpoint
    else:
        path = files["blur"]
        image = tmp_path / "broken.png"
        image.write_bytes(b"\x89PNG not really")
    failed = _run(session, files["large"], _req(files, ControlSpec(path, image)))
    assert isinstance(failed, JobFailed), make
    assert message in failed.message
    assert "\n" not in failed.message and "Traceback" not in failed.message
    assert failed.kind in (FailureKind.MODEL, FailureKind.REQUEST)


def test_medium_model_is_refused(tmp_path, files):
    medium = locate_model_set(write_snapshot(tmp_path / "medium", "medium"))
    session = GenerationSession(device="cpu", dtype="float32", preview="off")
    failed = _run(session, medium, _req(files, _spec(files)))
    assert isinstance(failed, JobFailed)
    assert "SD3.5 Medium" in failed.message and "Large" in failed.message
    assert session.engine.mmdit is None  # refused before anything loaded


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"strength": -1.0}, "strength"),
        ({"strength": float("nan")}, "strength"),
        ({"start": 0.8, "end": 0.2}, "start and end"),
        ({"control_type": "pose"}, "unknown ControlNet type"),
        ({"preprocess": ControlPreprocess("sobel")}, "unknown control preprocessing"),
        ({"preprocess": ControlPreprocess("canny", canny_low=200, canny_high=100)}, "canny thresholds"),
        ({"preprocess": ControlPreprocess("blur", blur_radius=0)}, "blur radius"),
    ],
)
def test_request_values_are_checked(files, kw, message):
    with pytest.raises(InvalidRequestError, match=message):
        _req(files, _spec(files, **kw)).resolved("large")


def test_adding_a_controlnet_reloads_only_when_the_plan_cannot_hold_it(files):
    from dataclasses import replace

    from app.inference.api.events import ModelLoading
    from app.inference.memory.plan import Machine

    session = GenerationSession(device="cpu", dtype="float32", preview="off")
    list(session.run(files["large"], _req(files, steps=1)))
    events = list(session.run(files["large"], _req(files, _spec(files), steps=1)))
    assert not any(isinstance(e, ModelLoading) for e in events)  # it fits the loaded plan: nothing reloads
    engine = session.engine
    sizes, machine = engine._fit
    engine._fit = (sizes, replace(machine, ram_free=engine.plan.ram_bytes + 1))  # a machine with no room left
    assert not engine.is_loaded(files["large"], True)  # the ControlNet added since loading does not fit it
    engine.controlnet_sizes = {}
    assert engine.is_loaded(files["large"], True)  # without it, the loaded plan is still the one to use
    assert isinstance(machine, Machine)
