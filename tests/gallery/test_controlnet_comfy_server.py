"""Our ComfyUI graphs with ControlNets, sent to a real ComfyUI server (../shared/comfyui-server): `POST /prompt`
validates every node's inputs against ComfyUI's own definitions (names, types, ranges, files present), so an
accepted graph is one ComfyUI will run. The server is the session's one (`comfyui_server`, tests/comfyui/server.py);
the files a graph names are placed as empty files for each test and removed after it.
"""

import json
from pathlib import Path

import pytest

from app.inference.api.control import ControlPreprocess, ControlSpec
from app.inference.api.request import GenerationRequest
from app.metadata.comfy_graph import ComfyFiles, comfy_chunks
from app.metadata.params import ImageParams

CONTROLNETS = ("sd3.5_large_controlnet_canny.safetensors", "sd3.5_large_controlnet_depth.safetensors")


@pytest.fixture
def server(comfyui_server):
    """The session's ComfyUI with what the graphs below load: the Large checkpoint, its text encoders, the two
    ControlNets (empty files: validation needs the names; execution is not asked for) and the control image."""
    comfyui_server.place_models("checkpoints", "sd3.5_large.safetensors")
    comfyui_server.place_models("clip", "clip_l.safetensors", "clip_g.safetensors", "t5xxl_fp16.safetensors")
    comfyui_server.place_models("controlnet", *CONTROLNETS)
    comfyui_server.place_input("edges.png", size=(64, 64))
    return comfyui_server


def _graph(preprocess: ControlPreprocess, strength: float = 0.8) -> dict:
    specs = (
        ControlSpec(
            Path("/m") / CONTROLNETS[0], Path("/i/edges.png"), strength, 0.1, 0.9, "canny", preprocess
        ),
        ControlSpec(
            Path("/m") / CONTROLNETS[1], Path("/i/edges.png"), 0.5, preprocess=ControlPreprocess("depth")
        ),
    )
    request = GenerationRequest(prompt="a house", negative="fog", controlnets=specs, width=64, height=64)
    params = ImageParams.from_request(request.resolved("large"), 7, variant="large", model_name="sd3.5_large")
    return json.loads(comfy_chunks(params, ComfyFiles(checkpoint="sd3.5_large.safetensors"))[0])


@pytest.mark.parametrize(
    "preprocess",
    [
        ControlPreprocess("none"),
        ControlPreprocess("canny", canny_low=80, canny_high=160),
        ControlPreprocess("blur", blur_radius=4),
        ControlPreprocess("depth", invert=True),
    ],
    ids=lambda p: p.describe(),
)
def test_the_server_accepts_our_controlnet_graphs(server, preprocess):
    assert server.validate_graph(_graph(preprocess)) == {}


def test_the_server_refuses_what_comfyui_does_not_allow(server):
    """The check can fail: a strength above ComfyUI's maximum of 10 is refused by the same validation."""
    prompt = _graph(ControlPreprocess("none"))
    for node in prompt.values():
        if node["class_type"] == "ControlNetApplyAdvanced":
            node["inputs"]["strength"] = 11.0
    errors = server.validate_graph(prompt)
    assert errors and "ControlNetApplyAdvanced" in json.dumps(errors)
