"""LoRAs in the metadata: our JSON, A1111's infotext (`<lora:...>` tags, `Lora hashes`), the ComfyUI graph's
LoraLoader chain, recall (missing file, other file, found by name), and the torch-free prompt/CLI parsing."""

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from app.inference.api.errors import InvalidRequestError
from app.inference.api.lora import LoraSpec, find_prompt_loras, parse_lora_arg, split_prompt_loras
from app.inference.lora.hashing import lora_hashes
from app.metadata.a1111 import infotext_of, params_from_infotext
from app.metadata.comfy_graph import ComfyFiles, comfy_chunks
from app.metadata.lora_recall import resolve_loras
from app.metadata.params import ImageParams
from app.metadata.recall import Recalled, reproduction_warnings
from tests.gallery.helpers import params

STYLE = LoraSpec(Path("/loras/style.safetensors"), 0.8, None, "a" * 64, "0123456789ab")
DETAIL = LoraSpec(Path("/loras/sub/detail_v2.safetensors"), -0.3, 0.5, "b" * 64, "ba9876543210")


def test_json_round_trip_keeps_file_hashes_and_strengths():
    p = params(loras=(STYLE, DETAIL))
    data = json.loads(p.to_json())
    assert data["loras"][1] == {"file": "/loras/sub/detail_v2.safetensors", "name": "detail_v2", "strength": -0.3,
                                "te_strength": 0.5, "sha256": "b" * 64, "short_hash": "ba9876543210"}  # fmt: skip
    assert ImageParams.from_json(p.to_json()) == p


def test_a1111_text_has_tags_and_lora_hashes_and_reads_back():
    p = params(loras=(STYLE, DETAIL))
    text = infotext_of(p)
    first_line = text.splitlines()[0]
    assert first_line == f"{p.prompt} <lora:style:0.8> <lora:detail_v2:-0.3:0.5>"
    assert 'Lora hashes: "style: 0123456789ab, detail_v2: ba9876543210"' in text
    back, unmapped = params_from_infotext(text)
    assert back.prompt == p.prompt
    assert [(lo.name, lo.strength, lo.te_strength, lo.short_hash) for lo in back.loras] == [
        ("style", 0.8, None, "0123456789ab"), ("detail_v2", -0.3, 0.5, "ba9876543210")]  # fmt: skip
    assert not [u for u in unmapped if "Lora" in u]


def test_a1111_text_from_a1111_itself():
    text = ("a castle <lora:castleStyle_v1:0.65>, dusk\nNegative prompt: blur\nSteps: 20, Sampler: Euler, "
            'CFG scale: 4, Seed: 5, Size: 1024x1024, Lora hashes: "castleStyle_v1: 5e1a2b3c4d5e"')  # fmt: skip
    back, _ = params_from_infotext(text)
    assert back.prompt == "a castle, dusk"
    (lora,) = back.loras
    assert (lora.path, lora.strength, lora.short_hash) == (
        Path("castleStyle_v1.safetensors"),
        0.65,
        "5e1a2b3c4d5e",
    )


def test_comfy_graph_chains_lora_loaders_between_loaders_and_the_rest():
    prompt = json.loads(
        comfy_chunks(params(loras=(STYLE, DETAIL)), ComfyFiles("sd3.5_medium.safetensors"))[0]
    )
    by_type = {}
    for node_id, node in prompt.items():
        by_type.setdefault(node["class_type"], []).append((node_id, node["inputs"]))
    (first_id, first), (second_id, second) = by_type["LoraLoader"]
    ckpt_id = by_type["CheckpointLoaderSimple"][0][0]
    clip_id = by_type["TripleCLIPLoader"][0][0]
    assert (first["model"], first["clip"], first["lora_name"], first["strength_model"], first["strength_clip"]) == (
        [ckpt_id, 0], [clip_id, 0], "style.safetensors", 0.8, 0.8)  # fmt: skip
    assert (second["model"], second["clip"], second["strength_model"], second["strength_clip"]) == (
        [first_id, 0], [first_id, 1], -0.3, 0.5)  # fmt: skip
    assert by_type["ModelSamplingSD3"][0][1]["model"] == [second_id, 0]
    assert all(inputs["clip"] == [second_id, 1] for _, inputs in by_type["CLIPTextEncode"])


def _lora_file(path: Path, seed: int) -> Path:
    gen = torch.Generator().manual_seed(seed)
    save_file({"lora_unet_context_embedder.lora_down.weight": torch.randn(2, 8, generator=gen)}, str(path))
    return path


def test_recall_finds_by_name_and_warns_when_missing_or_different(tmp_path):
    folder = tmp_path / "loras"
    (folder / "deep").mkdir(parents=True)
    mine = _lora_file(folder / "deep" / "style.safetensors", 1)
    full, short = lora_hashes(mine)
    recorded = (
        LoraSpec(Path("/elsewhere/style.safetensors"), 0.8, short_hash=short),  # moved: found by name
        LoraSpec(Path("gone.safetensors"), 0.5),  # missing
        LoraSpec(mine, 1.0, sha256="c" * 64),  # there, but another file than the image's
    )
    found, warnings = resolve_loras(recorded, [folder])
    assert [(lo.path, lo.sha256) for lo in found] == [(mine, full), (mine, full)]
    assert len(warnings) == 2
    assert "LoRA gone is not on this machine" in warnings[0]
    assert "not the one the image was made with" in warnings[1]
    recalled = Recalled(params(loras=recorded), "sd35-studio")
    assert any("LoRA gone" in w for w in reproduction_warnings(recalled, None))


def test_prompt_tags_and_cli_values():
    text = "a cat <lora:fur_v2:0.7>, <LORA:light> outside <lora:x:-1:0>"
    prompt, tags = split_prompt_loras(text)
    assert prompt == "a cat, outside"
    assert [(t.name, t.strength, t.te_strength) for t in tags] == [("fur_v2", 0.7, None), ("light", 1.0, None),
                                                                  ("x", -1.0, 0.0)]  # fmt: skip
    assert text[slice(*tags[0].span)] == "<lora:fur_v2:0.7>"
    assert split_prompt_loras("no tags  here") == ("no tags  here", ())
    with pytest.raises(InvalidRequestError, match="not a number"):
        find_prompt_loras("<lora:a:strong>")
    assert parse_lora_arg("C:/l/a.safetensors:0.5:0") == LoraSpec(Path("C:/l/a.safetensors"), 0.5, 0.0)
    assert parse_lora_arg("a.safetensors") == LoraSpec(Path("a.safetensors"), 1.0, None)
    with pytest.raises(InvalidRequestError):
        parse_lora_arg("a.safetensors:1e400")


def test_our_comfy_graph_recalls_the_lora_set():
    from app.metadata.recall import recall_from_prompt_graph

    prompt_text, _ = comfy_chunks(params(loras=(STYLE, DETAIL)), ComfyFiles("sd3.5_medium.safetensors"))
    back = recall_from_prompt_graph(prompt_text).params
    assert [(lo.path, lo.strength, lo.te_strength) for lo in back.loras] == [
        (Path("style.safetensors"), 0.8, None), (Path("detail_v2.safetensors"), -0.3, 0.5)]  # fmt: skip
