"""The ComfyUI graphs of inpainted, outpainted and hires images: valid for ComfyUI, and saying what was done.

The rows below are written from ComfyUI's node definitions (`nodes.py`: LoadImageMask, SetLatentNoiseMask,
ImagePadForOutpaint, ImageScale; `comfy_extras/nodes_mask.py`: GrowMask, MaskComposite, ImageCompositeMasked;
`nodes_differential_diffusion.py`: DifferentialDiffusion), independently of the app's own table.
"""

import json
from pathlib import Path

import pytest

from app.metadata.comfy_graph import ComfyFiles, comfy_chunks
from app.metadata.comfy_recall import params_from_comfy_prompt
from app.metadata.comfy_workflow import prompt_from_workflow
from tests.gallery import test_comfy_graph as base
from tests.gallery.helpers import params

REFINE = {
    "LoadImageMask": ({"image": "COMBO", "channel": "COMBO"}, ["MASK"], ["image", "channel", "upload"]),
    "ImagePadForOutpaint": ({"image": "IMAGE", "left": "INT", "top": "INT", "right": "INT", "bottom": "INT",
                             "feathering": "INT"}, ["IMAGE", "MASK"], ["left", "top", "right", "bottom", "feathering"]),
    "MaskComposite": ({"destination": "MASK", "source": "MASK", "x": "INT", "y": "INT", "operation": "COMBO"},
                      ["MASK"], ["x", "y", "operation"]),
    "GrowMask": ({"mask": "MASK", "expand": "INT", "tapered_corners": "BOOLEAN"}, ["MASK"],
                 ["expand", "tapered_corners"]),
    "SetLatentNoiseMask": ({"samples": "LATENT", "mask": "MASK"}, ["LATENT"], []),
    "DifferentialDiffusion": ({"model": "MODEL", "strength": "FLOAT"}, ["MODEL"], ["strength"]),
    "ImageCompositeMasked": ({"destination": "IMAGE", "source": "IMAGE", "x": "INT", "y": "INT",
                              "resize_source": "BOOLEAN", "mask": "MASK"}, ["IMAGE"], ["x", "y", "resize_source"]),
    "ImageScale": ({"image": "IMAGE", "upscale_method": "COMBO", "width": "INT", "height": "INT", "crop": "COMBO"},
                   ["IMAGE"], ["upscale_method", "width", "height", "crop"]),
}  # fmt: skip
COMBOS = {"channel": {"alpha", "red", "green", "blue"},
          "operation": {"multiply", "add", "subtract", "and", "or", "xor"},
          "upscale_method": {"nearest-exact", "bilinear", "area", "bicubic", "lanczos"},
          "crop": {"disabled", "center"}}  # fmt: skip


@pytest.fixture(autouse=True)
def comfy_table(monkeypatch):
    monkeypatch.setattr(base, "COMFY", base.COMFY | REFINE)
    monkeypatch.setattr(base, "WIDGETS", base.WIDGETS | {"BOOLEAN"})
    check = base.check_widget

    def check_widget(class_type, name, value):
        if class_type not in REFINE:
            return check(class_type, name, value)
        if name in COMBOS:
            assert value in COMBOS[name], (name, value)
        elif name == "image":
            assert isinstance(value, str) and value
        elif REFINE[class_type][0][name] == "INT":
            assert isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 16384, (
                name,
                value,
            )
        elif REFINE[class_type][0][name] == "BOOLEAN":
            assert isinstance(value, bool), (name, value)
        else:
            assert isinstance(value, float) and 0 <= value <= 1, (name, value)

    monkeypatch.setattr(base, "check_widget", check_widget)


def graph(**overrides):
    p = params(**overrides)
    prompt_text, workflow_text = comfy_chunks(p, ComfyFiles(checkpoint="sd3.5_medium.safetensors"))
    prompt, workflow = json.loads(prompt_text), json.loads(workflow_text)
    base.validate(prompt, workflow)
    return prompt


def nodes(prompt, class_type):
    return [n["inputs"] for n in prompt.values() if n["class_type"] == class_type]


INPAINT = {"init_image": Path("/pics/in.png"), "mask_image": Path("/pics/mask.png"), "denoise": 0.7}


def test_inpaint_graph_with_a_grey_mask():
    prompt = graph(**INPAINT, mask_grow=6)
    assert [n["image"] for n in nodes(prompt, "LoadImage")] == ["in.png"]
    assert nodes(prompt, "LoadImageMask")[0] == {"image": "mask.png", "channel": "red"}
    assert nodes(prompt, "GrowMask")[0]["expand"] == 6
    assert len(nodes(prompt, "SetLatentNoiseMask")) == 1 and not nodes(prompt, "DifferentialDiffusion")
    assert nodes(prompt, "KSampler")[0]["denoise"] == 0.7
    assert nodes(prompt, "ImageCompositeMasked")[0]["resize_source"] is False


def test_inpaint_graph_with_an_alpha_soft_mask_uses_loadimage_mask_and_differential_diffusion():
    prompt = graph(**INPAINT, mask_alpha=True, mask_soft=True, mask_grow=0)
    loads = {n["image"]: k for k, n in ((k, n["inputs"]) for k, n in prompt.items()) if "image" in n}
    latent = nodes(prompt, "SetLatentNoiseMask")[0]
    assert latent["mask"] == [loads["mask.png"], 1]  # LoadImage's MASK output, ungrown
    assert not nodes(prompt, "LoadImageMask") and not nodes(prompt, "GrowMask")
    (diff,) = [k for k, n in prompt.items() if n["class_type"] == "DifferentialDiffusion"]
    assert nodes(prompt, "KSampler")[0]["model"] == [diff, 0]


def test_outpaint_graph_pads_and_adds_the_painted_mask():
    prompt = graph(init_image=Path("in.png"), outpaint=(64, 0, 128, 32), denoise=1.0)
    assert nodes(prompt, "ImagePadForOutpaint")[0] | {"image": None} == {
        "image": None, "left": 64, "top": 0, "right": 128, "bottom": 32, "feathering": 0}  # fmt: skip
    assert not nodes(prompt, "MaskComposite")
    prompt = graph(**INPAINT, outpaint=(64, 16, 0, 0))
    assert nodes(prompt, "MaskComposite")[0] | {"destination": 0, "source": 0} == {
        "destination": 0, "source": 0, "x": 64, "y": 16, "operation": "add"}  # fmt: skip


def test_hires_graph_has_a_second_pass_at_the_hires_size():
    prompt = graph(width=832, height=1216, hires_scale=1.5, hires_denoise=0.35, hires_steps=12)
    first, second = nodes(prompt, "KSampler")
    assert (first["denoise"], second["denoise"], second["steps"], second["seed"]) == (
        1.0,
        0.35,
        12,
        first["seed"],
    )
    assert nodes(prompt, "ImageScale")[0] | {"image": None} == {
        "image": None, "upscale_method": "lanczos", "width": 1248, "height": 1824, "crop": "disabled"}  # fmt: skip
    assert len(nodes(prompt, "VAEDecode")) == 2


def test_no_refine_nodes_without_refine():
    prompt = graph()
    assert not set(REFINE) & {n["class_type"] for n in prompt.values()}


@pytest.mark.parametrize(
    "overrides",
    [
        INPAINT | {"mask_grow": 4},
        INPAINT | {"mask_alpha": True, "mask_soft": True, "mask_grow": 0},
        {"init_image": Path("in.png"), "outpaint": (64, 0, 128, 32), "denoise": 1.0},
        INPAINT | {"outpaint": (64, 16, 0, 0)},
        {"width": 832, "height": 1216, "hires_scale": 1.5, "hires_denoise": 0.35, "hires_steps": 12},
    ],
)
def test_refine_graphs_convert_from_the_workflow_and_recall_their_settings(overrides):
    p = params(**overrides)
    prompt_text, workflow_text = comfy_chunks(p, ComfyFiles(checkpoint="sd3.5_medium.safetensors"))
    converted = prompt_from_workflow(workflow_text)
    assert converted.prompt == json.loads(prompt_text) and converted.notes == ()
    back, notes = params_from_comfy_prompt(json.loads(prompt_text))
    names = ["seed", "steps", "denoise", "width", "height", "mask_grow", "outpaint", "mask_alpha", "mask_soft",
             "hires_scale", "hires_denoise", "hires_steps"]  # fmt: skip
    if p.init_image is not None:
        names = [n for n in names if n not in ("width", "height")]  # the graph sizes from the image
        assert back.init_image == Path(p.init_image.name)
        assert back.mask_image == (None if p.mask_image is None else Path(p.mask_image.name))
    for name in names:
        assert getattr(back, name) == getattr(p, name), name
    assert not [n for n in notes if "not understood" in n or "samplers in the graph" in n], notes
