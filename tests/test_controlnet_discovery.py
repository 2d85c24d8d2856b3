"""Finding ControlNet files by header: the type each declares, other safetensors left out, refusals named."""

import torch
from safetensors.torch import save_file

from app.inference.control.discovery import default_controlnet_roots, scan_controlnets
from tests.factory.controlnet_model import tiny_controlnet_state, write_controlnet


def test_scan_finds_controlnets_with_their_type_and_skips_other_files(tmp_path):
    folder = tmp_path / "models" / "controlnet"
    canny = write_controlnet(folder / "sd3.5_large_controlnet_canny.safetensors", control_type="canny")
    depth = write_controlnet(folder / "sub" / "depth.safetensors", control_type="depth")
    save_file({"model.diffusion_model.x": torch.zeros(2)}, str(folder / "checkpoint.safetensors"))
    found = scan_controlnets([folder], defaults=False)
    assert [(e.path, e.control_type, e.error) for e in found] == [
        (depth, "depth", None),
        (canny, "canny", None),
    ]


def test_a_file_given_by_name_that_is_not_usable_says_why(tmp_path):
    state = tiny_controlnet_state()
    state["transformer_blocks.0.attn.to_q.weight"] = torch.zeros(2, 2)  # the SD3-Medium (diffusers) layout
    path = tmp_path / "instantx.safetensors"
    save_file(state, str(path))
    (entry,) = scan_controlnets([path], defaults=False)
    assert entry.control_type is None and "SD3-Medium ControlNet" in entry.error


def test_default_roots_are_comfyui_and_the_official_snapshot(tmp_path):
    roots = default_controlnet_roots({"HF_HUB_CACHE": str(tmp_path / "hub")}, tmp_path)
    assert tmp_path / "ComfyUI" / "models" / "controlnet" in roots
    assert tmp_path / "hub" / "models--stabilityai--stable-diffusion-3.5-controlnets" / "snapshots" in roots
