"""`sd35-studio models [PATH ...] [--json]`, and `generate` with other layouts, single-component files and
memory plans."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from PIL import Image

from app.cli.main import main
from tests.factory.layouts import snapshot_state, write_all_in_one, write_hf_cache_repo
from tests.factory.snapshot import write_snapshot

FAST = ["--width", "32", "--height", "32", "--steps", "2"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_snapshot(tmp_path_factory.mktemp("cli") / "stable-diffusion-3.5-medium", "medium")


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Default places under a fresh HOME and hub cache."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("HF_HUB_CACHE", str(home / "hub"))
    for name in ("HF_HOME", "XDG_CACHE_HOME"):
        monkeypatch.delenv(name, raising=False)
    return home


def models(capsys, *args) -> tuple[int, str, str]:
    code = main(["models", *map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


def test_json_lists_sets_and_bad_files(tiny: Path, tmp_path: Path, home: Path, capsys) -> None:
    folder = tmp_path / "mine"
    shutil.copytree(tiny, folder / "medium")
    (folder / "medium" / "text_encoders" / "t5xxl_fp16.safetensors").unlink()
    (folder / "broken.safetensors").write_bytes(b"")
    code, out, _ = models(capsys, folder, "--json")
    assert code == 0
    entries = json.loads(out)
    (found,) = [e for e in entries if e["variant"]]
    assert found["variant"] == "medium" and found["complete"] is False and found["missing"] == ["t5"]
    assert found["components"]["mmdit"] == str(folder / "medium" / "sd3.5_medium.safetensors")
    assert found["components"]["clip_g"].endswith("text_encoders/clip_g.safetensors")
    assert found["errors"] == [] and found["details"]["mmdit"]["dtype"] == "fp16"
    assert found["plan"]["name"] in ("resident", "fp8", "no-t5")
    (bad,) = [e for e in entries if e["variant"] is None]
    assert bad["complete"] is False and bad["components"] == {} and "empty" in bad["errors"][0]
    assert str(folder / "broken.safetensors") in bad["errors"][0]


def test_default_places_and_human_output(tiny: Path, home: Path, capsys) -> None:
    write_hf_cache_repo(home / "hub", "stabilityai/stable-diffusion-3.5-medium", {
        str(p.relative_to(tiny)): p for p in tiny.rglob("*") if p.is_file()
    })  # fmt: skip
    code, out, _ = models(capsys)
    assert code == 0
    assert "SD3.5 Medium  (sd3.5_medium)  complete" in out
    assert "[hf-cache]" in out and "text_encoders/t5xxl_fp16.safetensors  fp16" in out
    assert "memory      " in out


def test_missing_path_is_an_error(home: Path, tmp_path: Path, capsys) -> None:
    code, out, err = models(capsys, tmp_path / "nowhere", "--json")
    assert code == 1 and "no such file or folder" in err and json.loads(out) == []


def generate(capsys, *args) -> tuple[int, str, str]:
    code = main(["generate", *map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


def test_generate_from_an_all_in_one_file_equals_the_snapshot(tiny: Path, tmp_path: Path, home: Path, capsys):
    aio = write_all_in_one(
        tmp_path / "aio" / "sd3.5_medium.safetensors", snapshot_state(tiny, "sd3.5_medium.safetensors")
    )
    for sub in ("tokenizer", "tokenizer_2", "tokenizer_3"):
        shutil.copytree(tiny / sub, aio.parent / sub)
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    code, out, err = generate(capsys, "--model", aio, "--prompt", "a cat", *FAST, "--out", a, "--json")
    assert code == 0, err
    plan = next(json.loads(line) for line in out.splitlines() if '"plan"' in line)
    assert plan["name"] and plan["description"].startswith(plan["name"])
    assert generate(capsys, "--model", tiny, "--prompt", "a cat", *FAST, "--out", b)[0] == 0
    assert a.read_bytes() == b.read_bytes()


def test_generate_with_single_component_files_and_a_memory_plan(
    tiny: Path, tmp_path: Path, home: Path, capsys
):
    folder = tmp_path / "set"
    shutil.copytree(tiny, folder)
    elsewhere = tmp_path / "encoders"
    shutil.move(folder / "text_encoders", elsewhere)
    out = tmp_path / "o.png"
    args = ["--model", folder, "--prompt", "a cat", *FAST, "--out", out, "--memory-plan", "fp8"]
    files = ["--clip-l", elsewhere / "clip_l.safetensors", "--clip-g", elsewhere / "clip_g.safetensors"]
    code, _, err = generate(capsys, *args, *files, "--t5", elsewhere / "t5xxl_fp16.safetensors")
    assert code == 0, err
    assert "loaded sd3.5_medium: fp8 plan" in err
    with Image.open(out) as im:
        assert im.size == (32, 32)


def test_generate_names_a_component_in_the_wrong_slot(tiny: Path, tmp_path: Path, home: Path, capsys):
    clip_g = tiny / "text_encoders" / "clip_g.safetensors"
    code, _, err = generate(
        capsys, "--model", tiny, "--prompt", "x", "--clip-l", clip_g, "--out", tmp_path / "o.png"
    )
    assert code == 1 and "Traceback" not in err
    assert f"{clip_g} holds CLIP-G, not a CLIP-L" in err and len(err.strip().splitlines()) == 1
