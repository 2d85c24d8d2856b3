"""Our ComfyUI graphs with ControlNets, sent to a real ComfyUI server (../shared/comfyui-server): `POST /prompt`
validates every node's inputs against ComfyUI's own definitions (names, types, ranges, files present), so an
accepted graph is one ComfyUI will run. Skipped where that server's environment is not set up.

(Starts its own server with the shared `start.sh`; the session-wide `comfyui_server` fixture of tests/comfyui/
can replace `server` below once it is on main.)
"""

import json
import os
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from PIL import Image

from app.inference.api.control import ControlPreprocess, ControlSpec
from app.inference.api.request import GenerationRequest
from app.metadata.comfy_graph import ComfyFiles, comfy_chunks
from app.metadata.params import ImageParams

_REPO = Path(__file__).parents[2]
SERVER = next(
    (
        p
        for p in (
            Path(os.environ.get("SD35_COMFYUI_SERVER", "/nonexistent")),
            _REPO.parent / "shared" / "comfyui-server",
            _REPO.parent.parent / "shared" / "comfyui-server",
        )
        if (p / "start.sh").is_file()
    ),
    _REPO.parent / "shared" / "comfyui-server",
)  # ../shared from the repository (or from a worktree one level deeper)
VENV = Path(os.environ.get("SD35_COMFYUI_VENV", Path.home() / ".cache/sd35-studio-tests/comfyui-venv"))
CONTROLNETS = ("sd3.5_large_controlnet_canny.safetensors", "sd3.5_large_controlnet_depth.safetensors")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    if not (SERVER / "start.sh").is_file() or not (VENV / "bin" / "python").is_file():
        pytest.skip("the real ComfyUI server is not set up here (../shared/comfyui-server/setup.sh)")
    base = tmp_path_factory.mktemp("comfy")
    out = subprocess.run(
        [str(SERVER / "start.sh"), "0", str(base)], capture_output=True, text=True, timeout=300
    )
    if out.returncode != 0:
        pytest.skip(f"ComfyUI did not start: {out.stderr.strip()[-300:]}")
    pid, port, _ = out.stdout.split()[-3:]
    models = base / "comfyui" / "models"
    for folder, names in (
        ("checkpoints", ["sd3.5_large.safetensors"]),
        ("clip", ["clip_l.safetensors", "clip_g.safetensors", "t5xxl_fp16.safetensors"]),
        ("controlnet", list(CONTROLNETS)),
    ):
        (models / folder).mkdir(parents=True, exist_ok=True)
        for name in names:
            (models / folder / name).touch()  # validation needs the names; execution is not asked for
    Image.new("RGB", (64, 64), (20, 20, 20)).save(base / "comfyui" / "input" / "edges.png")
    yield f"http://127.0.0.1:{port}"
    subprocess.run(["kill", pid], check=False)


def _post(url: str, prompt: dict) -> tuple[int, dict]:
    body = json.dumps({"prompt": prompt}).encode()
    request = urllib.request.Request(f"{url}/prompt", data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


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
    status, answer = _post(server, _graph(preprocess))
    assert status == 200, answer
    assert answer.get("node_errors") == {} and answer.get("prompt_id")


def test_the_server_refuses_what_comfyui_does_not_allow(server):
    """The check can fail: a strength above ComfyUI's maximum of 10 is refused by the same validation."""
    prompt = _graph(ControlPreprocess("none"))
    for node in prompt.values():
        if node["class_type"] == "ControlNetApplyAdvanced":
            node["inputs"]["strength"] = 11.0
    status, answer = _post(server, prompt)
    assert status == 400 and "ControlNetApplyAdvanced" in json.dumps(answer["node_errors"])
