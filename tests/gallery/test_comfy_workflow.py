"""Recall from ComfyUI PNGs that carry only the UI-format `workflow`: converted to the API format first."""

import json

import pytest
from PIL import Image, PngImagePlugin

from app.metadata.comfy_graph import ComfyFiles, comfy_chunks
from app.metadata.comfy_workflow import WorkflowError, prompt_from_workflow
from app.metadata.image_file import write_image
from app.metadata.limits import MetadataError
from app.metadata.png_text import read_png_text
from app.metadata.recall import read_metadata, recall_from_text, recall_from_workflow
from tests.gallery.helpers import params, pixels

FILES = ComfyFiles(checkpoint="sd3.5_medium.safetensors")


def png_with(path, **chunks):
    info = PngImagePlugin.PngInfo()
    for key, text in chunks.items():
        info.add_text(key, text)
    Image.fromarray(pixels(4), "RGB").save(path, pnginfo=info)
    return path


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"slg_scale": 0.0, "slg_layers": ()},
        {"negative_until": 0.1, "seed": 2**50 + 3},
        {"use_t5": False, "sampler": "euler", "scheduler": "sgm_uniform"},
        {"init_image": "/home/me/in.png", "denoise": 0.6},
    ],
)
def test_our_workflow_alone_converts_to_our_prompt_and_recalls_the_same(tmp_path, overrides):
    p = params(**overrides)
    prompt_text, workflow_text = comfy_chunks(p, FILES)
    converted = prompt_from_workflow(workflow_text)
    assert converted.prompt == json.loads(prompt_text)  # node for node, input for input
    assert converted.notes == ()
    source = tmp_path / "ours.png"
    write_image(source, pixels(), p)
    chunks = read_png_text(source)
    only_workflow = png_with(tmp_path / "workflow-only.png", workflow=chunks["workflow"])
    from_workflow = read_metadata(only_workflow)
    from_prompt = recall_from_text({"prompt": chunks["prompt"]})
    assert from_workflow.source == "comfyui"
    assert from_workflow.params == from_prompt.params and from_workflow.unmapped == from_prompt.unmapped
    names = ["prompt", "negative", "seed", "steps", "cfg", "sampler", "scheduler", "shift", "negative_until",
             "use_t5", "denoise", "model_name", "variant"]  # fmt: skip
    if p.slg_scale:  # a graph without the skip-layer node does not say "off"; recall leaves it to the default
        names += ["slg_layers", "slg_scale", "slg_start", "slg_end"]
    for name in names:
        assert getattr(from_workflow.params, name) == getattr(p, name), name


def node(node_id, kind, widgets=(), inputs=(), outputs=(), mode=0, **extra):
    return {"id": node_id, "type": kind, "mode": mode, "widgets_values": list(widgets),
            "inputs": [{"name": n, "type": t, "link": link, **({"widget": {"name": n}} if w else {})}
                       for n, t, link, w in inputs],
            "outputs": [{"name": t, "type": t, "links": [], "slot_index": i} for i, t in enumerate(outputs)],
            **extra}  # fmt: skip


def template_workflow(links_as_objects=False):
    """An SD3.5 workflow as ComfyUI's editor saves it, with what artists' files often contain: the seed driven
    by a Primitive node, a Reroute for the CLIP, a bypassed skip-layer node, a muted second output, a note."""
    nodes = [
        node(4, "CheckpointLoaderSimple", ["sd3.5_large.safetensors"], outputs=["MODEL", "CLIP", "VAE"]),
        node(11, "TripleCLIPLoader", ["clip_l.safetensors", "clip_g.safetensors", "t5xxl_fp16.safetensors"],
             outputs=["CLIP"]),
        node(13, "ModelSamplingSD3", [3.0], inputs=[("model", "MODEL", 1, False)], outputs=["MODEL"]),
        node(20, "SkipLayerGuidanceSD3", ["7, 8, 9", 3.0, 0.01, 0.15], mode=4,
             inputs=[("model", "MODEL", 2, False)], outputs=["MODEL"]),
        node(30, "Reroute", [], inputs=[("", "*", 3, False)], outputs=["CLIP"]),
        node(16, "CLIPTextEncode", ["a lighthouse on a cliff, dawn"], inputs=[("clip", "CLIP", 4, False)],
             outputs=["CONDITIONING"], title="Positive"),
        node(40, "CLIPTextEncode", ["blurry"], inputs=[("clip", "CLIP", 5, False)], outputs=["CONDITIONING"]),
        node(53, "EmptySD3LatentImage", [832, 1216, 1], outputs=["LATENT"]),
        node(50, "PrimitiveNode", [123456789, "fixed"], outputs=["INT"]),
        node(3, "KSampler", [1, "randomize", 28, 4.5, "dpmpp_2m", "sgm_uniform", 1.0],
             inputs=[("model", "MODEL", 6, False), ("positive", "CONDITIONING", 7, False),
                     ("negative", "CONDITIONING", 8, False), ("latent_image", "LATENT", 9, False),
                     ("seed", "INT", 10, True)], outputs=["LATENT"]),
        node(8, "VAEDecode", [], inputs=[("samples", "LATENT", 11, False), ("vae", "VAE", 12, False)],
             outputs=["IMAGE"]),
        node(9, "SaveImage", ["ComfyUI"], inputs=[("images", "IMAGE", 13, False)]),
        node(60, "SaveImage", ["backup"], mode=2, inputs=[("images", "IMAGE", 14, False)]),
        node(70, "Note", ["remember to try cfg 5"]),
    ]  # fmt: skip
    links = [[1, 4, 0, 13, 0, "MODEL"], [2, 13, 0, 20, 0, "MODEL"], [3, 11, 0, 30, 0, "CLIP"],
             [4, 11, 0, 16, 0, "CLIP"], [5, 30, 0, 40, 0, "CLIP"], [6, 20, 0, 3, 0, "MODEL"],
             [7, 16, 0, 3, 1, "CONDITIONING"], [8, 40, 0, 3, 2, "CONDITIONING"], [9, 53, 0, 3, 3, "LATENT"],
             [10, 50, 0, 3, 4, "INT"], [11, 3, 0, 8, 0, "LATENT"], [12, 4, 2, 8, 1, "VAE"],
             [13, 8, 0, 9, 0, "IMAGE"], [14, 8, 0, 60, 0, "IMAGE"]]  # fmt: skip
    if links_as_objects:  # the 1.0 schema
        keys = ("id", "origin_id", "origin_slot", "target_id", "target_slot", "type")
        links = [dict(zip(keys, link, strict=True)) for link in links]
    return {"last_node_id": 70, "last_link_id": 14, "nodes": nodes, "links": links, "version": 0.4}


@pytest.mark.parametrize("links_as_objects", [False, True])
def test_a_comfyui_editor_workflow_with_primitive_reroute_bypass_and_mute(links_as_objects):
    converted = prompt_from_workflow(json.dumps(template_workflow(links_as_objects)))
    prompt = converted.prompt
    assert set(prompt) == {
        "4",
        "11",
        "13",
        "16",
        "40",
        "53",
        "3",
        "8",
        "9",
    }  # no bypassed/muted/UI-only nodes
    sampler = prompt["3"]["inputs"]
    assert sampler["seed"] == 123456789  # from the Primitive, not the widget's stale value
    assert "control_after_generate" not in sampler and sampler["steps"] == 28
    assert sampler["model"] == ["13", 0]  # through the bypassed skip-layer node
    assert prompt["40"]["inputs"]["clip"] == ["11", 0]  # through the Reroute
    assert converted.notes == ()

    recalled = recall_from_workflow(json.dumps(template_workflow(links_as_objects)))
    p = recalled.params
    assert (p.prompt, p.negative, p.seed, p.steps, p.cfg, p.sampler, p.scheduler) == (
        "a lighthouse on a cliff, dawn", "blurry", 123456789, 28, 4.5, "dpmpp_2m", "sgm_uniform")  # fmt: skip
    assert (p.width, p.height, p.shift, p.model_name, p.variant, p.use_t5) == (
        832, 1216, 3.0, "sd3.5_large", "large", True)  # fmt: skip
    assert p.slg_scale is None  # bypassed: not used


def test_sd3_text_encode_clip_loaders_and_ksampler_advanced():
    nodes = [
        node(1, "UNETLoader", ["sd3.5_large_turbo.safetensors", "fp8_e4m3fn"], outputs=["MODEL"]),
        node(2, "DualCLIPLoader", ["clip_l.safetensors", "clip_g.safetensors", "sd3", "default"], outputs=["CLIP"]),
        node(3, "CLIPTextEncodeSD3", ["a fox", "a fox", "a red fox in snow", "none"],
             inputs=[("clip", "CLIP", 1, False)], outputs=["CONDITIONING"]),
        node(4, "ConditioningZeroOut", [], inputs=[("conditioning", "CONDITIONING", 2, False)],
             outputs=["CONDITIONING"]),
        node(5, "EmptyLatentImage", [768, 768, 1], outputs=["LATENT"]),
        node(6, "KSamplerAdvanced", ["enable", 42, "fixed", 4, 1.0, "euler", "simple", 0, 10000, "disable"],
             inputs=[("model", "MODEL", 3, False), ("positive", "CONDITIONING", 4, False),
                     ("negative", "CONDITIONING", 5, False), ("latent_image", "LATENT", 6, False)],
             outputs=["LATENT"]),
    ]  # fmt: skip
    links = [[1, 2, 0, 3, 0, "CLIP"], [2, 3, 0, 4, 0, "CONDITIONING"], [3, 1, 0, 6, 0, "MODEL"],
             [4, 3, 0, 6, 1, "CONDITIONING"], [5, 4, 0, 6, 2, "CONDITIONING"], [6, 5, 0, 6, 3, "LATENT"]]  # fmt: skip
    converted = prompt_from_workflow({"nodes": nodes, "links": links})
    assert converted.prompt["6"]["inputs"]["noise_seed"] == 42
    assert converted.prompt["6"]["inputs"]["end_at_step"] == 10000
    clips = converted.prompt["2"]["inputs"]
    assert clips == {"clip_name1": "clip_l.safetensors", "clip_name2": "clip_g.safetensors", "type": "sd3",
                     "device": "default"}  # fmt: skip
    recalled = recall_from_workflow(json.dumps({"nodes": nodes, "links": links}))
    p = recalled.params
    assert (p.prompt, p.seed, p.steps, p.cfg, p.width, p.fp8, p.variant, p.use_t5) == (
        "a red fox in snow", 42, 4, 1.0, 768, True, "large-turbo", False)  # fmt: skip
    assert "KSamplerAdvanced: start/end steps and added noise are not mapped" in recalled.unmapped


def test_unknown_nodes_and_dangling_muted_inputs_give_notes():
    workflow = template_workflow()
    workflow["nodes"].append(node(80, "UltimateSDUpscale", [2.0, 42, "fixed", 20], outputs=["IMAGE"],
                                  inputs=[("image", "IMAGE", 15, False)]))  # fmt: skip
    workflow["links"].append([15, 8, 0, 80, 0, "IMAGE"])
    for n in workflow["nodes"]:
        if n["id"] == 53:
            n["mode"] = 2  # the latent muted: the sampler has no latent image
    recalled = recall_from_workflow(json.dumps(workflow))
    assert "node 80 (UltimateSDUpscale) is not known here; its settings are left out" in recalled.unmapped
    assert "node 53 (EmptySD3LatentImage) is muted; what it fed is missing" in recalled.unmapped
    assert "latent image: not understood" in recalled.unmapped
    assert recalled.params.seed == 123456789 and recalled.params.width is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{not json", "The ComfyUI workflow is not valid JSON"),
        ('{"nodes": 3}', "The ComfyUI workflow has no list of nodes."),
        ("[1, 2]", "The ComfyUI workflow has no list of nodes."),
        ('{"nodes": [{"type": "KSampler"}]}', "The ComfyUI workflow has a node without an id or a type."),
        ('{"nodes": [], "links": [[1, "a"]]}', "The ComfyUI workflow has a link that is not understood"),
    ],
)
def test_garbage_gives_a_clear_message_and_recall_says_it(tmp_path, text, message):
    with pytest.raises(WorkflowError, match=message.replace(".", r"\.")):
        prompt_from_workflow(text)
    # reading the image gives the same sentence as the one error a reader raises, never another exception
    with pytest.raises(MetadataError, match=message.replace(".", r"\.")):
        read_metadata(png_with(tmp_path / "broken.png", workflow=text))


def test_a_workflow_without_a_sampler_says_so():
    with pytest.raises(ValueError, match="no KSampler"):
        recall_from_workflow(json.dumps({"nodes": [node(1, "CheckpointLoaderSimple", ["x.safetensors"])]}))


def test_the_prompt_chunk_still_wins_over_the_workflow(tmp_path):
    p = params(seed=5)
    prompt_text, _ = comfy_chunks(p, FILES)
    other = template_workflow()
    recalled = read_metadata(png_with(tmp_path / "both.png", prompt=prompt_text, workflow=json.dumps(other)))
    assert recalled.params.seed == 5
