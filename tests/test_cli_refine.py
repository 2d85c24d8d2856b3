"""`generate` with a mask, outpainting and hires fix: end to end, and one clear line for what cannot work."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from app.cli.main import main
from app.metadata.png_text import read_png_chunks
from tests.factory.snapshot import write_snapshot

H, W = 48, 32


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return write_snapshot(tmp_path_factory.mktemp("models") / "stable-diffusion-3.5-medium", "medium")


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    folder = tmp_path_factory.mktemp("refine")
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 256, (H, W, 3), dtype=np.uint8)).save(folder / "init.png")
    mask = np.zeros((H, W), dtype=np.uint8)
    mask[16:32, 8:24] = 255
    Image.fromarray(mask).save(folder / "mask.png")
    Image.fromarray(np.zeros((H - 8, W), dtype=np.uint8)).save(folder / "small.png")
    Image.fromarray(np.zeros((H, W), dtype=np.uint8)).save(folder / "black.png")
    (folder / "notes.png").write_text("not an image")
    return folder


def test_inpaint_from_the_command_line_writes_the_composited_image_and_its_source(tiny, images, tmp_path):
    out = tmp_path / "inpainted.png"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}
    args = ["generate", "--model", str(tiny), "--prompt", "a red door", "--steps", "2", "--out", str(out),
            "--init-image", str(images / "init.png"), "--denoise", "0.9", "--mask", str(images / "mask.png"),
            "--mask-grow", "2", "--mask-blur", "3"]  # fmt: skip
    proc = subprocess.run(
        [sys.executable, "-m", "app", *args], env=env, timeout=300, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    pixels = np.asarray(Image.open(out).convert("RGB"))
    original = np.asarray(Image.open(images / "init.png").convert("RGB"))
    assert pixels.shape == original.shape
    assert np.array_equal(pixels[:11], original[:11])  # 16 - grow 2 - blur 3: untouched above the mask
    assert not np.array_equal(pixels[20:28, 12:20], original[20:28, 12:20])
    chunks = read_png_chunks(out).chunks
    data = json.loads(chunks["sd35-studio"])
    assert data["mask_image"] == str(images / "mask.png") and data["init_image"] == str(images / "init.png")
    assert (data["mask_grow"], data["mask_blur"], data["denoise"]) == (2, 3, 0.9)
    import hashlib

    assert data["source_sha256"] == hashlib.sha256((images / "init.png").read_bytes()).hexdigest()
    assert "Mask blur: 3" in chunks["parameters"] and "Denoising strength: 0.9" in chunks["parameters"]


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        (["--mask", "{small}"], "the mask is 32×40 px but the init image is 32×48 px"),
        (["--mask", "{black}"], "the mask is all black"),
        (["--mask", "{notes}"], "--mask: "),
        (["--outpaint", "8,0,0"], "--outpaint: expected four numbers"),
        (["--hires-denoise", "0.5"], "--hires-denoise needs --hires-scale"),
        (["--hires-scale", "5"], "hires scale must be between 1 and 4"),
        (
            ["--hires-scale", "4", "--width", "160"],
            "the hires width 640 px is larger than this model supports",
        ),
        (["--mask-grow", "300"], "--mask-grow: must be at most 256"),
    ],
)
def test_refine_options_refuse_what_cannot_work_in_one_line(tiny, images, tmp_path, capsys, extra, words):
    args = ["generate", "--model", str(tiny), "--prompt", "x", "--steps", "1", "--out", str(tmp_path / "o.png"),
            "--init-image", str(images / "init.png"), "--width", str(W), "--height", str(H)]  # fmt: skip
    code = main(args + [e.format(**{p.stem: p for p in images.iterdir()}) for e in extra])
    err = capsys.readouterr().err
    assert code == 1, err
    assert words in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "o.png").exists()


def test_mask_and_outpaint_need_an_init_image(tiny, images, tmp_path, capsys):
    for extra in (["--mask", str(images / "mask.png")], ["--outpaint", "16,0,0,0"]):
        code = main(
            ["generate", "--model", str(tiny), "--prompt", "x", "--out", str(tmp_path / "o.png"), *extra]
        )
        err = capsys.readouterr().err
        assert code == 1 and "needs --init-image" in err and len(err.strip().splitlines()) == 1
