"""`sd35-studio loras` (discovery by header) and `generate --lora`, run as subprocesses."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from app.cli.main import main
from app.inference.lora.discovery import find_lora, scan_loras
from app.metadata.recall import read_metadata
from tests.factory.lora_files import mmdit_shapes, write_lora
from tests.factory.snapshot import CHECKPOINT_NAMES, write_snapshot

FAST = ["--width", "32", "--height", "32", "--steps", "2"]


def _cli(*args) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}
    return subprocess.run(
        [sys.executable, "-m", "app", *args], env=env, timeout=300, capture_output=True, text=True
    )


def _pair(prefix: str, down_in: int, up_out: int, rank: int = 1) -> dict[str, torch.Tensor]:
    return {
        f"{prefix}.lora_down.weight": torch.zeros(rank, down_in),
        f"{prefix}.lora_up.weight": torch.zeros(up_out, rank),
    }


@pytest.fixture(scope="module")
def lora_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("loras")
    tags = json.dumps({"10_set": {"inkwash": 30, "mountain": 12, "1girl": 2}})
    ink = _pair("lora_unet_joint_blocks_0_x_block_attn_qkv", 2432, 3 * 2432, rank=2)
    save_file(
        ink,
        str(folder / "ink.safetensors"),
        metadata={"ss_tag_frequency": tags, "ss_output_name": "Ink Wash"},
    )
    Image.new("RGB", (8, 8)).save(folder / "ink.preview.png")
    sub = folder / "medium"
    sub.mkdir()
    save_file({**_pair("transformer.transformer_blocks.0.attn2.to_q", 1536, 1536)}, str(sub / "clay.safetensors"),
              metadata={"modelspec.architecture": "stable-diffusion-v3.5-medium/lora", "modelspec.title": "Clay",
                        "modelspec.trigger_phrase": "claymation, soft light"})  # fmt: skip
    save_file(_pair("lora_unet_double_blocks_0_img_attn_qkv", 3072, 9216), str(folder / "fluxy.safetensors"))
    (folder / "old.pt").write_bytes(b"\x80\x04not really a pickle")
    save_file({"model.diffusion_model.x": torch.zeros(2)}, str(folder / "not_a_lora.safetensors"))
    return folder


def test_discovery_reads_headers_and_tells_what_fits(lora_folder):
    scan = scan_loras([lora_folder], defaults=False)
    by_name = {e.name: e for e in scan.entries}
    assert set(by_name) == {"ink", "clay", "fluxy", "old"}
    ink, clay, fluxy, old = (by_name[n] for n in ("ink", "clay", "fluxy", "old"))
    assert (ink.title, ink.trigger_words, ink.rank, ink.preview) == (
        "Ink Wash", ("inkwash", "mountain", "1girl"), 2, lora_folder / "ink.preview.png")  # fmt: skip
    assert ink.architecture.family == "sd3.5-large" and ink.usable_with("large") is None
    assert "SD3.5 Medium" in ink.usable_with("medium")
    assert (clay.title, clay.trigger_words, clay.architecture.family) == (
        "Clay", ("claymation", "soft light"), "sd3.5-medium")  # fmt: skip
    assert clay.usable_with("medium") is None and "cannot be used with SD3.5 Large" in clay.usable_with(
        "large"
    )
    assert "FLUX.1" in fluxy.usable_with("medium") and "FLUX.1" in fluxy.usable_with("large")
    assert "pickle" in old.error
    assert find_lora("Clay", scan) is clay and find_lora("INK", scan) is ink


def test_loras_command_json_and_text(lora_folder):
    proc = _cli("loras", str(lora_folder), str(lora_folder / "nope"), "--json")
    assert proc.returncode == 1 and proc.stderr.strip().endswith("nope: no such file or folder")
    entries = {e["name"]: e for e in json.loads(proc.stdout)}
    assert entries["ink"]["compatible"] == {"large": True, "medium": False}
    assert entries["fluxy"]["architecture"] == "flux"
    text = _cli("loras", str(lora_folder))
    assert "ink  (Stable Diffusion 3.5 Large, rank 2)  works with SD3.5 Large" in text.stdout


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return write_snapshot(tmp_path_factory.mktemp("models") / "stable-diffusion-3.5-medium", "medium")


def test_generate_with_lora_writes_it_into_the_metadata(tiny, tmp_path):
    state = load_file(str(tiny / CHECKPOINT_NAMES["medium"]))
    lora = write_lora(
        tmp_path / "tiny_style.safetensors", "kohya", mmdit_shapes(state), variant="medium", depth=10
    )
    out = tmp_path / "o.png"
    proc = _cli("generate", "--model", str(tiny), "--prompt", "a fox", *FAST, "--out", str(out),
                "--lora", f"{lora.path}:0.7", "--lora", f"{lora.path}:-0.2:0")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    recalled = read_metadata(out)
    assert [(lo.name, lo.strength, lo.te_strength) for lo in recalled.params.loras] == [
        ("tiny_style", 0.7, None), ("tiny_style", -0.2, 0.0)]  # fmt: skip
    assert all(len(lo.sha256) == 64 and len(lo.short_hash) == 12 for lo in recalled.params.loras)
    assert "<lora:tiny_style:0.7>" in recalled.infotext


def test_generate_refuses_a_flux_lora_in_one_line(tiny, lora_folder, tmp_path, capsys):
    code = main(["generate", "--model", str(tiny), "--prompt", "a fox", *FAST, "--out", str(tmp_path / "o.png"),
                 "--lora", str(lora_folder / "fluxy.safetensors")])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 1
    assert "Traceback" not in err
    assert "fluxy.safetensors is a LoRA for FLUX.1" in err.strip().splitlines()[-1]
    assert not (tmp_path / "o.png").exists()


def test_prompt_tags_become_loras_found_by_name(lora_folder):
    from app.inference.lora.discovery import loras_from_prompt

    scan = scan_loras([lora_folder], defaults=False)
    text, specs, missing = loras_from_prompt(
        "ink mountains <lora:ink:0.6>, <lora:Clay:1:0> <lora:nowhere>", scan
    )
    assert text == "ink mountains,"
    clay = lora_folder / "medium" / "clay.safetensors"
    assert [(s.path, s.strength, s.te_strength) for s in specs] == [
        (lora_folder / "ink.safetensors", 0.6, None), (clay, 1.0, 0.0)]  # fmt: skip
    assert missing == ("<lora:nowhere> names no LoRA file in the LoRA folders; it is left out",)


def test_prompt_tags_apply_loras_found_in_lora_dir(tiny, tmp_path, capsys):
    state = load_file(str(tiny / CHECKPOINT_NAMES["medium"]))
    folder = tmp_path / "my loras"
    write_lora(folder / "tiny_style.safetensors", "kohya", mmdit_shapes(state), variant="medium", depth=10)
    out = tmp_path / "o.png"
    code = main(["generate", "--model", str(tiny), "--prompt", "a fox <lora:tiny_style:0.5> <lora:absent:1>", *FAST,
                 "--out", str(out), "--lora-dir", str(folder)])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 0, err
    assert "warning: <lora:absent> names no LoRA file in the LoRA folders; it is left out" in err
    p = read_metadata(out).params
    assert p.prompt == "a fox"
    assert [(lo.path, lo.strength) for lo in p.loras] == [(folder / "tiny_style.safetensors", 0.5)]
    bad = main(["generate", "--model", str(tiny), "--prompt", "a fox <lora:tiny_style:strong>", *FAST,
                "--out", str(tmp_path / "bad.png"), "--lora-dir", str(folder)])  # fmt: skip
    err = capsys.readouterr().err
    assert bad == 1 and len(err.strip().splitlines()) == 1 and "is not a number" in err
