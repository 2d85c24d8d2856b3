"""The ComfyUI graph of an image made with LoRAs passes the REAL ComfyUI server's validation (LoraLoader and
LoraLoaderModelOnly nodes, their input names, ranges and the lora_name choices), using the session fixture of
tests/comfyui/server.py. Until that fixture is in the checkout the test is skipped with that reason."""

import json
from pathlib import Path

import pytest

from app.inference.api.lora import LoraSpec
from app.metadata.comfy_graph import comfy_chunks
from app.metadata.image_file import comfy_files
from tests.gallery.helpers import params

LORAS = (
    LoraSpec(Path("/my/loras/style.safetensors"), 0.8),
    LoraSpec(Path("C:/loras/detail v2.safetensors"), -0.35, 1.5),
    LoraSpec(Path("model_only.safetensors"), 1.25, 0.0),
)


@pytest.fixture
def server(request):
    try:
        return request.getfixturevalue("comfyui_server")
    except pytest.FixtureLookupError:
        pytest.skip("the real-ComfyUI fixture (tests/comfyui/server.py) is not in this checkout")


def _place(server, prompt: dict, skip_loras: bool = False) -> None:
    for node in prompt.values():
        kind, inputs = node["class_type"], node["inputs"]
        if kind == "CheckpointLoaderSimple":
            server.place_models("checkpoints", inputs["ckpt_name"])
        elif kind in ("TripleCLIPLoader", "DualCLIPLoader"):
            server.place_models("clip", *(v for k, v in inputs.items() if k.startswith("clip_name")))
        elif kind.startswith("LoraLoader") and not skip_loras:
            server.place_models("loras", inputs["lora_name"])


def test_a_graph_with_loras_is_accepted_by_comfyui(server):
    p = params(loras=LORAS)
    prompt = json.loads(comfy_chunks(p, comfy_files(p))[0])  # exactly the PNG's `prompt` chunk
    assert {n["class_type"] for n in prompt.values()} >= {"LoraLoader", "LoraLoaderModelOnly"}
    _place(server, prompt)
    assert server.validate_graph(prompt) == {}


def test_comfyui_refuses_a_lora_it_does_not_have(server):
    """The check can fail: a LoRA file the server lacks is reported on its loader node."""
    p = params(loras=(LoraSpec(Path("not_on_the_server.safetensors"), 0.5),))
    prompt = json.loads(comfy_chunks(p, comfy_files(p))[0])
    _place(server, prompt, skip_loras=True)
    errors = server.validate_graph(prompt)
    (lora_id,) = [k for k, v in prompt.items() if v["class_type"] == "LoraLoader"]
    assert errors[lora_id]["errors"][0]["type"] == "value_not_in_list"
