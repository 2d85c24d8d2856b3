"""`generate --controlnet ...`: the options become the request's ControlSpecs, a run on the tiny Large set writes
the image, and bad input (missing or foreign files, a Medium model, unreadable images, options without
--controlnet, counts that do not match) is one line and exit 1."""

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from app.cli.main import build_parser, main
from app.cli.options import request_from_args
from app.inference.api.control import ControlPreprocess, ControlSpec
from app.metadata.png_info import STUDIO_KEY
from app.metadata.png_text import read_png_chunks
from tests.factory.controlnet_model import write_controlnet
from tests.factory.snapshot import write_snapshot

FAST = ["--width", "32", "--height", "32", "--steps", "2", "--device", "cpu", "--dtype", "float32"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli_cn")
    large = write_snapshot(root / "stable-diffusion-3.5-large", "large")
    canny = write_controlnet(root / "sd3.5_large_controlnet_canny.safetensors", blocks=3, seed=1)
    blur = write_controlnet(root / "sd3.5_large_controlnet_blur.safetensors", blocks=1, control_type="blur")
    image = root / "edges.png"
    Image.fromarray((np.indices((32, 32)).sum(axis=0) % 2 * 255).astype(np.uint8)).save(image)
    return {"root": root, "large": large, "canny": canny, "blur": blur, "image": image}


def _args(*argv):
    return build_parser().parse_args(["generate", "--model", "m", "--prompt", "p", "--out", "o.png", *argv])


def test_options_become_control_specs(tiny):
    canny, blur, image = str(tiny["canny"]), str(tiny["blur"]), str(tiny["image"])
    req = request_from_args(
        _args("--controlnet", canny, "--control-image", image, "--control-strength", "0.7", "--controlnet", blur,
              "--control-image", image, "--control-strength", "0.4", "--control-start", "0.1", "--control-end", "0.9",
              "--control-preprocess", "canny", "--control-preprocess", "blur", "--canny-low", "50", "--canny-high",
              "120", "--blur-radius", "3")
    )  # fmt: skip
    shared = {"blur_radius": 3.0, "canny_low": 50.0, "canny_high": 120.0}
    assert req.controlnets == (
        ControlSpec(tiny["canny"], tiny["image"], 0.7, 0.1, 0.9, None, ControlPreprocess("canny", **shared)),
        ControlSpec(tiny["blur"], tiny["image"], 0.4, 0.1, 0.9, None, ControlPreprocess("blur", **shared)),
    )
    assert request_from_args(_args()).controlnets == ()
    depth = request_from_args(
        _args("--controlnet", canny, "--control-image", image, "--control-type", "depth", "--control-preprocess",
              "depth", "--invert-depth")
    )  # fmt: skip
    assert depth.controlnets == (
        ControlSpec(
            tiny["canny"],
            tiny["image"],
            control_type="depth",
            preprocess=ControlPreprocess("depth", invert=True),
        ),
    )


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--control-strength", "0.5"], "--control-strength needs --controlnet"),
        (["--canny-low", "10"], "--canny-low needs --controlnet"),
        (["--controlnet", "{canny}"], "--controlnet needs --control-image"),
        (["--controlnet", "{canny}", "--controlnet", "{blur}", "--control-image", "{image}", "--control-strength",
          "1", "--control-strength", "1", "--control-strength", "1"], "given 3 times for 2 ControlNets"),
        (["--controlnet", "{canny}", "--control-image", "{image}", "--control-strength", "11"], "strength"),
        (["--controlnet", "{canny}", "--control-image", "{image}", "--control-start", "0.9", "--control-end", "0.1"],
         "start and end"),
        (["--controlnet", "{canny}", "--control-image", "{image}", "--control-preprocess", "canny", "--canny-low",
          "200", "--canny-high", "100"], "canny thresholds"),
        (["--controlnet", "{root}/nothing.safetensors", "--control-image", "{image}"], "file not found"),
        (["--controlnet", "{canny}", "--control-image", "{root}/nothing.png"], "file not found"),
        (["--controlnet", "{canny}", "--control-image", "{canny}"], "not a readable image"),
        (["--controlnet", "{canny}", "--control-image", "{image}", "--control-type", "pose"], "invalid choice"),
    ],
)  # fmt: skip
def test_bad_input_is_one_line(tiny, tmp_path, capsys, argv, message):
    argv = [a.format(**{k: str(v) for k, v in tiny.items()}) for a in argv]
    code = main(["generate", "--model", str(tiny["large"]), "--prompt", "x", *FAST, "--out", str(tmp_path / "o.png"),
                 *argv])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 1, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert message in err, err
    assert not (tmp_path / "o.png").exists()


def _cli(*args) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}
    return subprocess.run(
        [sys.executable, "-m", "app", *args], env=env, timeout=300, capture_output=True, text=True
    )


def test_generate_with_two_controlnets(tiny, tmp_path):
    out = tmp_path / "cn.png"
    proc = _cli(
        "generate", "--model", str(tiny["large"]), "--prompt", "a house", *FAST, "--out", str(out),
        "--controlnet", str(tiny["canny"]), "--control-image", str(tiny["image"]), "--control-strength", "0.8",
        "--controlnet", str(tiny["blur"]), "--control-image", str(tiny["image"]), "--control-preprocess", "none",
        "--control-preprocess", "blur", "--blur-radius", "2",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert out.is_file()
    with Image.open(out) as im:
        assert im.size == (32, 32)
    chunks = read_png_chunks(out).chunks
    recorded = json.loads(chunks[STUDIO_KEY])["controlnets"]
    assert [(Path(c["file"]), c["strength"], c["preprocess"]["kind"]) for c in recorded] == [
        (tiny["canny"], 0.8, "none"),
        (tiny["blur"], 0.8, "blur"),  # given once: for every ControlNet
    ]
    assert recorded[0]["sha256"] == hashlib.sha256(tiny["canny"].read_bytes()).hexdigest()
    assert recorded[1]["image_sha256"] == hashlib.sha256(tiny["image"].read_bytes()).hexdigest()
    assert 'ControlNet 1: "Module: blur_gaussian' in chunks["parameters"]
    assert "ControlNetApplyAdvanced" in chunks["prompt"] and "ControlNetLoader" in chunks["prompt"]


@pytest.mark.parametrize("what", ["foreign", "medium"])
def test_a_file_the_model_cannot_take_is_one_line(tiny, tmp_path, what):
    model, cnet = tiny["large"], tiny["canny"]
    if what == "foreign":
        cnet = next(tiny["large"].glob("sd3.5_large*.safetensors"))  # the base checkpoint, not a ControlNet
    else:
        model = write_snapshot(tmp_path / "stable-diffusion-3.5-medium", "medium")
    proc = _cli(
        "generate", "--model", str(model), "--prompt", "x", *FAST, "--out", str(tmp_path / "o.png"),
        "--controlnet", str(cnet), "--control-image", str(tiny["image"]),
    )  # fmt: skip
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert ("not an SD3.5 ControlNet" if what == "foreign" else "SD3.5 Medium") in lines[0]
