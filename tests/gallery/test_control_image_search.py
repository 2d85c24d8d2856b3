"""Recall finds a kept control image that moved with its output folder (or lives in the current output folder):
by its content-addressed name, and only when its SHA-256 is the recorded one."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

from PIL import Image

from app.inference.api.control import ControlSpec
from app.inference.api.request import GenerationRequest
from app.metadata.control_image_search import KEPT_FOLDER_NAME, kept_image_folders
from app.metadata.params import ImageParams
from app.metadata.recall import CurrentSetup, Recalled, reproduction_warnings, settings_for


def _kept(root: Path, colour: tuple[int, int, int]) -> tuple[Path, str]:
    folder = root / KEPT_FOLDER_NAME
    folder.mkdir(parents=True, exist_ok=True)
    scratch = root / "scratch.png"
    Image.new("RGB", (8, 8), colour).save(scratch)
    digest = hashlib.sha256(scratch.read_bytes()).hexdigest()
    kept = folder / f"{digest[:16]}.png"
    scratch.replace(kept)
    return kept, digest


def _recalled(cn: Path, image: Path, digest: str) -> Recalled:
    spec = ControlSpec(cn, image, 0.7, control_type="canny", image_hash=digest)
    request = GenerationRequest(prompt="a moved house", controlnets=(spec,)).resolved("large")
    return Recalled(
        ImageParams.from_request(request, 3, variant="large", model_name="sd3.5_large"), "sd35-studio"
    )


def test_a_moved_output_folder_gives_back_its_kept_control_image(tmp_path):
    cn = tmp_path / "sd3.5_large_controlnet_canny.safetensors"
    cn.write_bytes(b"x")
    old = tmp_path / "old-out"
    kept, digest = _kept(old, (200, 10, 10))
    picture = old / "2026-12-03" / "00001-3.png"
    recalled = _recalled(cn, kept, digest)
    new = tmp_path / "new-out"
    shutil.move(old, new)  # the whole output folder moved: the recorded path is gone
    moved_picture = new / picture.relative_to(old)

    lost = settings_for(recalled, CurrentSetup(controlnet_files=(cn,)))
    assert lost.request.controlnets[0].image == kept
    assert any("Control image" in w and "is missing" in w for w in lost.warnings)

    setup = CurrentSetup(control_image_folders=kept_image_folders(moved_picture, None))
    found = settings_for(recalled, setup)
    assert found.request.controlnets[0].image == new / KEPT_FOLDER_NAME / kept.name
    assert not any("Control image" in w for w in found.warnings)
    assert not any("Control image" in w for w in reproduction_warnings(recalled, setup))

    # a copy of the picture elsewhere: the current output folder is searched too
    elsewhere = tmp_path / "downloads" / "00001-3.png"
    from_root = settings_for(recalled, CurrentSetup(control_image_folders=kept_image_folders(elsewhere, new)))
    assert from_root.request.controlnets[0].image == new / KEPT_FOLDER_NAME / kept.name


def test_a_file_with_the_same_name_but_other_content_is_not_used(tmp_path):
    cn = tmp_path / "cn.safetensors"
    cn.write_bytes(b"x")
    kept, digest = _kept(tmp_path / "old", (10, 200, 10))
    recalled = _recalled(cn, kept, digest)
    impostor_root = tmp_path / "new"
    (impostor_root / KEPT_FOLDER_NAME).mkdir(parents=True)
    Image.new("RGB", (8, 8), (0, 0, 255)).save(impostor_root / KEPT_FOLDER_NAME / kept.name)  # same name
    kept.unlink()

    result = settings_for(
        recalled, CurrentSetup(control_image_folders=kept_image_folders(None, impostor_root))
    )
    assert result.request.controlnets[0].image == kept  # left as recorded: recall says it is missing
    assert any(f"Control image {kept.name} is missing" in w for w in result.warnings)

    # without a recorded hash nothing is guessed, even when a file of that name is there
    no_hash = _recalled(cn, kept, "")
    same = settings_for(no_hash, CurrentSetup(control_image_folders=kept_image_folders(None, impostor_root)))
    assert same.request.controlnets[0].image == kept
