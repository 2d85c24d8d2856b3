"""Preview decoders: the linear projection, TAESD3 (both key layouts, against diffusers), the time budget."""

import json
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from app.inference.api.errors import ModelFileError
from app.inference.checkpoints.taesd_loading import find_taesd3_decoder, load_taesd3_decoder
from app.inference.networks.taesd import build_decoder
from app.inference.sampling.preview import (
    LINEAR_BIAS,
    LINEAR_FACTORS,
    LinearPreview,
    PreviewBudget,
    TaesdPreview,
)

KEYS = json.loads((Path(__file__).parents[1] / "factory" / "keys" / "taesd3_decoder.json").read_text())


def _random_state(seed=0):
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for entry in KEYS["keys"]:
        shape = tuple(entry["shape"])
        fan_in = math.prod(shape[1:]) if len(shape) > 1 else 1
        state[entry["key"]] = (
            torch.randn(shape, generator=gen) / math.sqrt(fan_in) * (1.0 if len(shape) > 1 else 0.1)
        )
    return state


def test_decoder_structure_matches_the_real_manifest():
    with torch.device("meta"):
        decoder = build_decoder()
    ours = {k: list(v.shape) for k, v in decoder.state_dict().items()}
    assert ours == {e["key"]: e["shape"] for e in KEYS["keys"]}
    assert sum(math.prod(s) for s in ours.values()) == KEYS["num_params"] == 1_229_443


def test_taesd_pth_and_diffusers_safetensors_load_the_same_and_match_diffusers(tmp_path):
    state = _random_state()
    pth = tmp_path / "taesd3_decoder.pth"
    torch.save(state, pth)
    diffusers_layout = {
        f"decoder.layers.{int(k.split('.')[0]) - 1}.{k.split('.', 1)[1]}": v for k, v in state.items()
    }
    diffusers_layout["encoder.layers.0.weight"] = torch.zeros(64, 3, 3, 3)  # encoder keys are ignored
    st = tmp_path / "diffusion_pytorch_model.safetensors"
    save_file(diffusers_layout, str(st))

    latent = torch.randn(1, 16, 6, 10)
    a = load_taesd3_decoder(pth)(latent)
    b = load_taesd3_decoder(st)(latent)
    assert a.shape == (1, 3, 48, 80)
    assert torch.equal(a, b)

    from diffusers import AutoencoderTiny

    tiny = AutoencoderTiny(
        latent_channels=16,
        decoder_block_out_channels=(64, 64, 64, 64),
        num_decoder_blocks=(3, 3, 3, 1),
        upsample_fn="nearest",
        scaling_factor=1.0,
    )
    tiny.decoder.load_state_dict(
        {k[len("decoder.") :]: v for k, v in diffusers_layout.items() if k.startswith("decoder.")}
    )
    with torch.inference_mode():
        theirs = tiny.decode(latent).sample  # diffusers returns 2y - 1
    torch.testing.assert_close(a, (theirs + 1) / 2, rtol=1e-4, atol=1e-5)

    pixels = TaesdPreview(load_taesd3_decoder(pth))(latent)
    assert pixels[0].shape == (48, 80, 3) and pixels[0].dtype.name == "uint8"


def test_taesd_preview_is_at_most_512_px(tmp_path):
    path = tmp_path / "taesd3_decoder.pth"
    torch.save(_random_state(), path)
    preview = TaesdPreview(load_taesd3_decoder(path))
    (image,) = preview(torch.randn(1, 16, 96, 64))  # a 768 x 512 image
    assert max(image.shape[:2]) == 512 and image.shape[:2] == (512, 341)


def test_pth_with_anything_but_tensors_is_refused(tmp_path):
    path = tmp_path / "taesd3_decoder.pth"
    torch.save({"1.weight": torch.zeros(64, 16, 3, 3), "step": 3}, path)
    with pytest.raises(ModelFileError, match="refused"):
        load_taesd3_decoder(path)
    torch.save({"1.weight": torch.zeros(1), "obj": Path("x")}, path)  # an arbitrary object: never unpickled
    with pytest.raises(ModelFileError, match="refused"):
        load_taesd3_decoder(path)


def test_find_taesd3_next_to_model_and_in_comfyui_vae_approx(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    assert find_taesd3_decoder(tmp_path / "model") is None
    comfy = tmp_path / "models"
    (comfy / "vae_approx").mkdir(parents=True)
    (comfy / "vae_approx" / "taesd3_decoder.pth").write_bytes(b"")
    assert find_taesd3_decoder(comfy / "checkpoints") == comfy / "vae_approx" / "taesd3_decoder.pth"
    snap = tmp_path / "hub" / "models--madebyollin--taesd3" / "snapshots" / "abc"
    snap.mkdir(parents=True)
    (snap / "diffusion_pytorch_model.safetensors").write_bytes(b"")
    assert find_taesd3_decoder(tmp_path / "elsewhere") == snap / "diffusion_pytorch_model.safetensors"


def test_linear_preview_gives_the_colours_the_factors_imply():
    latent = torch.zeros(2, 16, 4, 5)
    latent[1, 2] = 1.0  # channel 2 at 1.0: bias + row 2
    zero, chan2 = LinearPreview()(latent)
    assert zero.shape == (4, 5, 3)
    assert tuple(zero[0, 0]) == (158, 155, 152)  # the spec's worked value for a zero latent
    expected = [
        round((max(-1, min(1, b + f)) + 1) * 127.5)
        for b, f in zip(LINEAR_BIAS, LINEAR_FACTORS[2], strict=True)
    ]
    assert list(chan2[3, 4]) == expected


def test_budget_drops_previews_that_would_cost_more_than_five_percent():
    budget = PreviewBudget(fraction=0.05)
    shown = []
    for step in range(20):
        budget.add_step_time(1.0)  # each step takes 1 s
        if budget.should_decode(step):
            budget.record(0.2)  # each preview takes 0.2 s = 20 % of a step
            shown.append(step)
    assert shown[0] == 0
    assert budget.preview_time <= 0.05 * budget.sampling_time + 0.2
    assert 3 <= len(shown) <= 6 and budget.dropped == 20 - len(shown)


def test_budget_every_n_steps():
    budget = PreviewBudget(every=3)
    for _ in range(9):
        budget.add_step_time(1.0)
    assert [s for s in range(9) if budget.should_decode(s) and (budget.record(0.0) or True)] == [0, 3, 6]
