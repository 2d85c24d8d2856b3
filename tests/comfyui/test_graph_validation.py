"""Every ComfyUI graph the app writes into a PNG's `prompt` chunk passes the REAL ComfyUI server's /prompt validation.

tests/gallery/test_comfy_graph.py checks the graphs against a node table written from ComfyUI's source; this
asks the server itself (node types, input names and types, links, combo values, ranges), so a graph that loads
in our table but not in ComfyUI fails here. Model files are empty: enough for validation (see server.py).
"""

import json

import pytest

from app.inference.api.request import SAMPLER_NAMES, SCHEDULER_NAMES
from app.inference.api.variants import VARIANTS
from app.metadata.comfy_graph import ComfyFiles, build_prompt, comfy_chunks
from app.metadata.image_file import comfy_files
from tests.gallery.helpers import params

GRAPHS = {
    "txt2img": {},
    "no-slg": {"slg_scale": 0.0, "slg_layers": ()},
    "negative-window": {"negative_until": 0.1},
    "no-t5": {"use_t5": False},
    "img2img": {"init_image": "/home/me/pictures/in put.png", "denoise": 0.6},
    "all": {"negative_until": 0.25, "use_t5": False, "init_image": "C:\\art\\in put.png", "denoise": 0.3},
}


def variant_params(variant: str, **overrides):
    from app.inference.api.request import GenerationRequest
    from app.metadata.params import ImageParams

    request = GenerationRequest(prompt="a fox", negative="blurry").resolved(variant)
    p = ImageParams.from_request(request, 42, variant=variant, model_name=f"sd3.5_{variant}", app_version="0")
    return p.updated(**overrides)


def _place_files(server, prompt: dict) -> None:
    """Empty files with every name the graph's loaders ask for, and the init images it loads."""
    for node in prompt.values():
        inputs = node["inputs"]
        if node["class_type"] == "CheckpointLoaderSimple":
            server.place_models("checkpoints", inputs["ckpt_name"])
        elif node["class_type"] in ("TripleCLIPLoader", "DualCLIPLoader", "CLIPLoader"):
            server.place_models("clip", *(v for k, v in inputs.items() if k.startswith("clip_name")))
        elif node["class_type"] == "LoadImage":
            server.place_input(inputs["image"])


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("kind", list(GRAPHS))
def test_every_written_graph_is_accepted_by_comfyui(comfyui_server, variant, kind):
    p = variant_params(variant, **GRAPHS[kind])
    prompt = json.loads(comfy_chunks(p, comfy_files(p))[0])  # exactly the PNG's `prompt` chunk
    _place_files(comfyui_server, prompt)
    assert comfyui_server.validate_graph(prompt) == {}


def test_every_sampler_and_scheduler_is_a_comfyui_choice(comfyui_server):
    info = comfyui_server.get("/object_info/KSampler")["KSampler"]["input"]["required"]
    assert set(SAMPLER_NAMES) <= set(info["sampler_name"][0])
    assert set(SCHEDULER_NAMES) <= set(info["scheduler"][0])
    p = params(sampler=SAMPLER_NAMES[-1], scheduler=SCHEDULER_NAMES[-1])
    prompt = build_prompt(p, ComfyFiles(checkpoint="sd3.5_medium.safetensors")).nodes
    _place_files(comfyui_server, prompt)
    assert comfyui_server.validate_graph(prompt) == {}


def test_validation_reports_what_comfyui_rejects(comfyui_server):
    """The check can fail: a missing model file, a wrong input name and an unknown node are each reported."""
    p = params()
    prompt = build_prompt(p, ComfyFiles(checkpoint="not-on-this-server.safetensors")).nodes
    _place_files(
        comfyui_server, {k: v for k, v in prompt.items() if v["class_type"] != "CheckpointLoaderSimple"}
    )
    errors = comfyui_server.validate_graph(prompt)
    (ckpt_id,) = [k for k, v in prompt.items() if v["class_type"] == "CheckpointLoaderSimple"]
    assert errors[ckpt_id]["errors"][0]["type"] == "value_not_in_list"

    comfyui_server.place_models("checkpoints", "sd3.5_medium.safetensors")
    prompt = build_prompt(p, ComfyFiles(checkpoint="sd3.5_medium.safetensors")).nodes
    sampler_id = next(k for k, v in prompt.items() if v["class_type"] == "KSampler")
    prompt[sampler_id]["inputs"]["cfg_scale"] = prompt[sampler_id]["inputs"].pop("cfg")
    assert comfyui_server.validate_graph(prompt)[sampler_id]["errors"][0]["type"] == "required_input_missing"

    prompt[sampler_id]["class_type"] = "KSamplerThatDoesNotExist"
    assert "does not exist" in comfyui_server.validate_graph(prompt)["prompt"]["errors"][0]["message"]


@pytest.mark.parametrize("use_t5", [False, True], ids=["clip-l", "clip-l+t5"])
def test_graphs_for_a_server_without_clip_g_are_accepted(comfyui_server, use_t5):
    """A remote job allowed to use partial text encoders names only what the server has (CLIP-L, T5)."""
    files = ComfyFiles(
        checkpoint="sd3.5_medium.safetensors", clip_g=None, init_image="sd35-studio/init-ab.png"
    )
    prompt = build_prompt(params(use_t5=use_t5, init_image="/x/in.png"), files).nodes
    loaders = [n for n in prompt.values() if "CLIPLoader" in n["class_type"]]
    assert [n["class_type"] for n in loaders] == ["DualCLIPLoader" if use_t5 else "CLIPLoader"]
    assert "clip_g.safetensors" not in json.dumps(prompt)
    assert (
        next(n for n in prompt.values() if n["class_type"] == "LoadImage")["inputs"]["image"]
        == files.init_image
    )
    _place_files(comfyui_server, prompt)
    assert comfyui_server.validate_graph(prompt) == {}
