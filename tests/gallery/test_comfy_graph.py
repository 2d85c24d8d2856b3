"""The ComfyUI graphs we write are valid for ComfyUI: node types, input names and types, links, widget values.

The node table below is written from ComfyUI's own node definitions (`nodes.py`: CheckpointLoaderSimple,
CLIPTextEncode, KSampler, VAEDecode, VAEEncode, LoadImage, SaveImage, ConditioningCombine,
ConditioningZeroOut, ConditioningSetTimestepRange, DualCLIPLoader; `comfy_extras/nodes_sd3.py`:
TripleCLIPLoader, EmptySD3LatentImage, SkipLayerGuidanceSD3; `nodes_model_advanced.py`: ModelSamplingSD3),
independently of the app's own table, so a wrong input name in the app fails here.
"""

import json
from pathlib import Path

import pytest

from app.inference.api.lora import LoraSpec
from app.metadata.comfy_graph import ComfyFiles, comfy_chunks
from tests.gallery.helpers import params

SAMPLERS = {"euler", "euler_ancestral", "dpmpp_2m", "dpmpp_2m_sde", "heun", "lms"}
SCHEDULERS = {"normal", "karras", "exponential", "sgm_uniform", "simple", "ddim_uniform", "beta"}

# class: (required inputs {name: type}, output types, widget names in the UI's widgets_values order)
COMFY = {
    "CheckpointLoaderSimple": ({"ckpt_name": "COMBO"}, ["MODEL", "CLIP", "VAE"], ["ckpt_name"]),
    "TripleCLIPLoader": ({"clip_name1": "COMBO", "clip_name2": "COMBO", "clip_name3": "COMBO"}, ["CLIP"],
                         ["clip_name1", "clip_name2", "clip_name3"]),
    "DualCLIPLoader": ({"clip_name1": "COMBO", "clip_name2": "COMBO", "type": "COMBO"}, ["CLIP"],
                       ["clip_name1", "clip_name2", "type"]),
    "ModelSamplingSD3": ({"model": "MODEL", "shift": "FLOAT"}, ["MODEL"], ["shift"]),
    "SkipLayerGuidanceSD3": ({"model": "MODEL", "layers": "STRING", "scale": "FLOAT", "start_percent": "FLOAT",
                              "end_percent": "FLOAT"}, ["MODEL"], ["layers", "scale", "start_percent", "end_percent"]),
    "CLIPTextEncode": ({"text": "STRING", "clip": "CLIP"}, ["CONDITIONING"], ["text"]),
    "ConditioningZeroOut": ({"conditioning": "CONDITIONING"}, ["CONDITIONING"], []),
    "ConditioningSetTimestepRange": ({"conditioning": "CONDITIONING", "start": "FLOAT", "end": "FLOAT"},
                                     ["CONDITIONING"], ["start", "end"]),
    "ConditioningCombine": ({"conditioning_1": "CONDITIONING", "conditioning_2": "CONDITIONING"}, ["CONDITIONING"],
                            []),
    "EmptySD3LatentImage": ({"width": "INT", "height": "INT", "batch_size": "INT"}, ["LATENT"],
                            ["width", "height", "batch_size"]),
    "LoadImage": ({"image": "COMBO"}, ["IMAGE", "MASK"], ["image", "upload"]),
    "VAEEncode": ({"pixels": "IMAGE", "vae": "VAE"}, ["LATENT"], []),
    "KSampler": ({"model": "MODEL", "seed": "INT", "steps": "INT", "cfg": "FLOAT", "sampler_name": "COMBO",
                  "scheduler": "COMBO", "positive": "CONDITIONING", "negative": "CONDITIONING",
                  "latent_image": "LATENT", "denoise": "FLOAT"}, ["LATENT"],
                 ["seed", "control_after_generate", "steps", "cfg", "sampler_name", "scheduler", "denoise"]),
    "VAEDecode": ({"samples": "LATENT", "vae": "VAE"}, ["IMAGE"], []),
    "SaveImage": ({"images": "IMAGE", "filename_prefix": "STRING"}, [], ["filename_prefix"]),
    "LoraLoader": ({"model": "MODEL", "clip": "CLIP", "lora_name": "COMBO", "strength_model": "FLOAT",
                    "strength_clip": "FLOAT"}, ["MODEL", "CLIP"], ["lora_name", "strength_model", "strength_clip"]),
    "LoraLoaderModelOnly": ({"model": "MODEL", "lora_name": "COMBO", "strength_model": "FLOAT"}, ["MODEL"],
                            ["lora_name", "strength_model"]),
}  # fmt: skip
WIDGETS = {"INT", "FLOAT", "STRING", "COMBO"}


def check_widget(class_type, name, value):
    if class_type == "KSampler":
        rules = {"seed": lambda v: isinstance(v, int) and 0 <= v <= 2**64 - 1,
                 "steps": lambda v: isinstance(v, int) and 1 <= v <= 10000,
                 "cfg": lambda v: isinstance(v, float | int) and 0 <= v <= 100,
                 "sampler_name": SAMPLERS.__contains__, "scheduler": SCHEDULERS.__contains__,
                 "denoise": lambda v: isinstance(v, float | int) and 0 <= v <= 1}  # fmt: skip
        assert rules[name](value), (name, value)
    elif class_type == "EmptySD3LatentImage":
        assert isinstance(value, int) and value >= 1 and (name == "batch_size" or value % 16 == 0), (
            name,
            value,
        )
    elif class_type in ("ConditioningSetTimestepRange",) or name in ("start_percent", "end_percent"):
        assert isinstance(value, float) and 0 <= value <= 1, (name, value)
    elif name in ("strength_model", "strength_clip"):
        assert isinstance(value, float) and -100 <= value <= 100, (name, value)
    elif name in ("shift", "scale"):
        assert isinstance(value, float) and value >= 0
    elif name == "type":
        assert value == "sd3"
    else:
        assert isinstance(value, str) and (value or name == "text"), (name, value)


def validate(prompt: dict, workflow: dict) -> None:
    # API format: every node known, every required input present, links to existing nodes with the right type.
    consumers = {}
    for node_id, node in prompt.items():
        assert set(node) == {"inputs", "class_type"}
        spec_inputs, _, _ = COMFY[node["class_type"]]
        assert set(node["inputs"]) == set(spec_inputs), node["class_type"]
        for name, value in node["inputs"].items():
            kind = spec_inputs[name]
            if kind in WIDGETS:
                check_widget(node["class_type"], name, value)
            else:
                source_id, slot = value
                assert isinstance(source_id, str) and isinstance(slot, int)
                assert COMFY[prompt[source_id]["class_type"]][1][slot] == kind, (node_id, name)
                consumers.setdefault(source_id, []).append(node_id)
    outputs = [k for k, n in prompt.items() if n["class_type"] == "SaveImage"]
    assert len(outputs) == 1
    dangling = [k for k, n in prompt.items() if k not in consumers and n["class_type"] != "SaveImage"]
    assert dangling == []
    # UI format: the same nodes, widgets in order and equal to the API values, links consistent in both directions.
    nodes = {n["id"]: n for n in workflow["nodes"]}
    assert set(nodes) == {int(k) for k in prompt}
    assert workflow["last_node_id"] == max(nodes) and workflow["last_link_id"] == len(workflow["links"])
    links = {link[0]: link for link in workflow["links"]}
    for node_id, node in nodes.items():
        api = prompt[str(node_id)]
        spec_inputs, spec_outputs, widget_names = COMFY[node["type"]]
        assert node["type"] == api["class_type"]
        expected = [api["inputs"].get(w, {"control_after_generate": "fixed", "upload": "image"}.get(w))
                    for w in widget_names]  # fmt: skip
        assert node["widgets_values"] == expected
        assert [o["type"] for o in node["outputs"]] == spec_outputs
        link_inputs = [n for n, t in spec_inputs.items() if t not in WIDGETS]
        assert [i["name"] for i in node["inputs"]] == link_inputs
        for slot, entry in enumerate(node["inputs"]):
            link_id, from_node, from_slot, to_node, to_slot, kind = links[entry["link"]]
            assert (to_node, to_slot, kind) == (node_id, slot, entry["type"])
            assert api["inputs"][entry["name"]] == [str(from_node), from_slot]
            assert link_id in nodes[from_node]["outputs"][from_slot]["links"]
        for out in node["outputs"]:
            for link_id in out["links"]:
                assert links[link_id][1] == node_id and links[link_id][2] == out["slot_index"]


@pytest.mark.parametrize(
    ("overrides", "expected_types"),
    [
        ({"slg_scale": 0.0, "slg_layers": ()}, {"TripleCLIPLoader"}),
        ({}, {"SkipLayerGuidanceSD3", "TripleCLIPLoader"}),
        (
            {"negative_until": 0.1},
            {"ConditioningZeroOut", "ConditioningSetTimestepRange", "ConditioningCombine"},
        ),
        ({"use_t5": False}, {"DualCLIPLoader"}),
        ({"init_image": "/home/me/in.png", "denoise": 0.6}, {"LoadImage", "VAEEncode"}),
        (
            {
                "loras": (
                    LoraSpec(Path("/l/style.safetensors"), 0.8, 0.5),
                    LoraSpec(Path("/l/x.safetensors"), -0.3, 0.0),
                )
            },
            {"LoraLoader", "LoraLoaderModelOnly"},
        ),
    ],
)
def test_graph_is_valid_for_comfyui(overrides, expected_types):
    p = params(**overrides)
    prompt_text, workflow_text = comfy_chunks(p, ComfyFiles(checkpoint="sd3.5_medium.safetensors"))
    prompt, workflow = json.loads(prompt_text), json.loads(workflow_text)
    validate(prompt, workflow)
    types = {n["class_type"] for n in prompt.values()}
    assert expected_types <= types
    assert {"CheckpointLoaderSimple", "ModelSamplingSD3", "EmptySD3LatentImage", "CLIPTextEncode", "KSampler",
            "VAEDecode", "SaveImage"} - {"EmptySD3LatentImage"} <= types  # fmt: skip
    sampler = next(n["inputs"] for n in prompt.values() if n["class_type"] == "KSampler")
    assert (sampler["seed"], sampler["steps"], sampler["cfg"], sampler["sampler_name"], sampler["scheduler"]) == (
        p.seed, p.steps, p.cfg, p.sampler, p.scheduler)  # fmt: skip
    if p.negative_until is not None:
        ranges = sorted((n["inputs"]["start"], n["inputs"]["end"]) for n in prompt.values()
                        if n["class_type"] == "ConditioningSetTimestepRange")  # fmt: skip
        assert ranges == [(0.0, 0.1), (0.1, 1.0)]
