"""The ComfyUI graphs of inpainted, outpainted and hires images pass the REAL ComfyUI server's /prompt validation
(tests/gallery/test_comfy_refine_graph.py checks them against a table written from ComfyUI's source).

Uses the session fixture `comfyui_server` of tests/comfyui/server.py (the remote-engine work); where that is not
in the checkout yet, this module is skipped as a whole."""

import json
from pathlib import Path

import pytest
from PIL import Image

from app.inference.api.request import GenerationRequest
from app.metadata.comfy_graph import comfy_chunks
from app.metadata.image_file import comfy_files
from app.metadata.params import ImageParams

pytest.importorskip(
    "tests.comfyui.server", reason="the real ComfyUI test server fixture is not in this checkout"
)


def variant_params(variant: str, **overrides) -> ImageParams:
    request = GenerationRequest(prompt="a fox", negative="blurry").resolved(variant)
    p = ImageParams.from_request(request, 42, variant=variant, model_name=f"sd3.5_{variant}", app_version="0")
    return p.updated(**overrides)


def place_files(server, prompt: dict) -> None:
    """Empty model files with the names the loaders ask for; the images and masks the graph loads."""
    for node in prompt.values():
        kind, inputs = node["class_type"], node["inputs"]
        if kind == "CheckpointLoaderSimple":
            server.place_models("checkpoints", inputs["ckpt_name"])
        elif kind in ("TripleCLIPLoader", "DualCLIPLoader"):
            server.place_models("clip", *(v for k, v in inputs.items() if k.startswith("clip_name")))
        elif kind == "LoadImageMask":  # a grey mask
            server.place_input(inputs["image"], Image.new("L", (64, 64), 255))
        elif kind == "LoadImage" and "mask" in inputs["image"]:  # a transparent one
            server.place_input(inputs["image"], Image.new("RGBA", (64, 64), (0, 0, 0, 0)))
        elif kind == "LoadImage":
            server.place_input(inputs["image"])


INIT = {"init_image": Path("/home/me/pictures/in put.png")}
GRAPHS = {
    "inpaint": INIT | {"mask_image": Path("/home/me/mask.png"), "denoise": 0.7, "mask_grow": 6},
    "inpaint-alpha-soft": INIT | {"mask_image": Path("/m/alpha mask.png"), "mask_alpha": True, "mask_soft": True,
                                  "mask_grow": 0},
    "outpaint": INIT | {"outpaint": (64, 0, 128, 32), "denoise": 1.0},
    "outpaint-and-mask": INIT | {"mask_image": Path("/home/me/mask.png"), "outpaint": (0, 16, 0, 48)},
    "hires": {"hires_scale": 1.5, "hires_denoise": 0.35, "hires_steps": 12},
    "inpaint-hires": INIT | {"mask_image": Path("/home/me/mask.png"), "hires_scale": 2.0},
}  # fmt: skip


@pytest.mark.parametrize("variant", ["medium", "large"])
@pytest.mark.parametrize("kind", list(GRAPHS))
def test_every_refine_graph_is_accepted_by_comfyui(comfyui_server, variant, kind):
    p = variant_params(variant, **GRAPHS[kind])
    prompt = json.loads(comfy_chunks(p, comfy_files(p))[0])  # exactly the PNG's `prompt` chunk
    place_files(comfyui_server, prompt)
    assert comfyui_server.validate_graph(prompt) == {}
    types = {n["class_type"] for n in prompt.values()}
    if "mask_image" in GRAPHS[kind] or "outpaint" in GRAPHS[kind]:
        assert {"SetLatentNoiseMask", "VAEEncode", "ImageCompositeMasked"} <= types
    if "hires_scale" in GRAPHS[kind]:
        assert "ImageScale" in types


def _choices(spec: list) -> list:
    """A COMBO input's options, in either of ComfyUI's spellings: [[...], {...}] or ["COMBO", {"options": [...]}]."""
    return spec[1]["options"] if spec[0] == "COMBO" else spec[0]


@pytest.mark.parametrize(
    ("node", "name", "value"),
    [("ImageScale", "upscale_method", "lanczos"), ("ImageScale", "crop", "disabled"),
     ("LoadImageMask", "channel", "red"), ("MaskComposite", "operation", "add")],
)  # fmt: skip
def test_the_choices_we_write_are_comfyui_choices(comfyui_server, node, name, value):
    required = comfyui_server.get(f"/object_info/{node}")[node]["input"]["required"]
    assert value in _choices(required[name])
