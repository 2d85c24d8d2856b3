"""`sd35-studio engines test URL` and `generate --engine URL` against the real ComfyUI server (tiny SD3 set)."""

import json

import pytest
from PIL import Image

from app.cli.main import main

pytestmark = pytest.mark.slow


def test_engines_test_reports_what_the_server_has(comfyui_tiny, capsys):
    server, checkpoint, clip_l = comfyui_tiny
    assert main(["engines", "test", server.url]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"reachable: yes ({server.url}, ")
    assert out[1] == "ComfyUI: 0.8.0"
    assert out[2].startswith("device: cpu (cpu), VRAM ")
    assert f"SD3.5 checkpoints: {checkpoint}" in out
    assert f"text encoders: CLIP-L {clip_l}; CLIP-G missing; T5-XXL missing" in out
    assert "previews: on (latent2rgb)" in out and "missing nodes: none" in out

    assert main(["engines", "test", server.url, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["reachable"] is True and report["comfyui_version"] == "0.8.0"
    assert checkpoint in report["sd35_checkpoints"] and report["previews"] is True
    assert report["text_encoders"] == {"clip_l": clip_l, "clip_g": None, "t5": None}
    assert report["devices"][0]["vram_total"] > 0


def test_engines_test_exits_1_with_one_line_when_it_cannot_connect(capsys):
    assert main(["engines", "test", "http://127.0.0.1:9"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("sd35-studio: error: cannot reach the ComfyUI server at ")
    assert main(["engines", "test", "ftp://example.org"]) == 1
    assert "is not a server address" in capsys.readouterr().err


def test_generate_with_an_engine_writes_the_normal_png(comfyui_tiny, tmp_path, capsys):
    server, checkpoint, _ = comfyui_tiny
    args = ["generate", "--engine", server.url, "--model", checkpoint, "--prompt", "a lighthouse", "--seed", "3",
            "--steps", "2", "--width", "64", "--height", "64", "--no-t5", "--sampler", "euler",
            "--out", str(tmp_path / "remote.png"), "--json"]  # fmt: skip
    assert main(args) == 1  # the tiny set has no CLIP-G: refused unless allowed
    assert "no CLIP-G text encoder" in capsys.readouterr().err

    assert main([*args, "--engine-partial-encoders"]) == 0
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [e["event"] for e in events if e["event"] != "step"] == ["loaded", "image", "done"]
    image = Image.open(tmp_path / "remote.png")
    assert image.size == (64, 64)
    assert "Steps: 2, Sampler: Euler" in image.text["parameters"] and "Seed: 3" in image.text["parameters"]
    prompt = json.loads(image.text["prompt"])
    assert {n["class_type"] for n in prompt.values()} >= {"CLIPLoader", "KSampler", "SaveImage"}
    assert json.loads(image.text["sd35-studio"])["seed"] == 3
