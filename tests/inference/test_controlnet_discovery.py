"""Finding ControlNet files: the Hugging Face snapshot, ComfyUI's models/controlnet, a user's folder; files of
other kinds are skipped, SD3-Medium ControlNets are listed with the reason they cannot run."""

import torch
from safetensors.torch import save_file

from app.inference.checkpoints.controlnet_discovery import HF_REPO_FOLDER, find_controlnets
from tests.factory.controlnet_model import tiny_controlnet_state, write_controlnet


def test_finds_controlnets_in_the_usual_places(tmp_path):
    home = tmp_path / "home"
    snapshot = home / ".cache" / "huggingface" / "hub" / HF_REPO_FOLDER / "snapshots" / ("a" * 40)
    blur = write_controlnet(
        snapshot / "sd3.5_large_controlnet_blur.safetensors", control_type="blur", blocks=1
    )
    comfy = home / "ComfyUI" / "models" / "controlnet"
    canny = write_controlnet(comfy / "sd35" / "canny.safetensors", control_type="canny", blocks=1)
    instantx = tiny_controlnet_state(blocks=1)
    instantx["transformer_blocks.0.norm1.linear.weight"] = instantx.pop(
        "transformer_blocks.0.adaLN_modulation.1.weight"
    )
    medium = write_controlnet(comfy / "instantx_sd3_canny.safetensors", instantx)
    save_file({"input_blocks.0.weight": torch.zeros(2)}, str(comfy / "control_v11p_sd15_canny.safetensors"))
    (home / "ComfyUI" / "models" / "checkpoints").mkdir(parents=True)
    user = tmp_path / "mine"
    depth = write_controlnet(user / "d.safetensors", control_type="depth", blocks=1)
    save_file({"something.weight": torch.zeros(2)}, str(user / "other.safetensors"))

    found = {f.path: f for f in find_controlnets([user], env={}, home=home)}
    assert set(found) == {blur, canny, medium, depth}
    assert (found[blur].control_type, found[blur].source, found[blur].usable) == ("blur", "huggingface", True)
    assert (found[canny].control_type, found[canny].source) == ("canny", "comfyui")
    assert (found[depth].control_type, found[depth].source) == ("depth", "folder")
    assert not found[medium].usable and "SD3-Medium ControlNet" in found[medium].error
    assert find_controlnets([], env={}, home=tmp_path / "nobody") == []
