"""The `sd35-studio generate` contract: outputs, determinism, seeds, and every bad-input case."""

import json
import shutil
import subprocess
import sys

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from app.cli.main import main
from tests.factory.snapshot import write_snapshot

FAST = ["--width", "32", "--height", "32", "--steps", "2"]


@pytest.fixture(scope="session")
def tiny_medium(tmp_path_factory):
    return write_snapshot(tmp_path_factory.mktemp("models") / "stable-diffusion-3.5-medium", "medium")


@pytest.fixture
def model_copy(tiny_medium, tmp_path):
    return shutil.copytree(tiny_medium, tmp_path / "copy")


def run_cli(capsys, *args):
    code = main(["generate", *map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


def test_writes_png_with_a1111_parameters(tiny_medium, tmp_path, capsys):
    out = tmp_path / "cat.png"
    code, _, err = run_cli(
        capsys,
        "--model",
        tiny_medium,
        "--prompt",
        "a cat",
        "--negative",
        "blurry",
        *FAST,
        "--seed",
        7,
        "--out",
        out,
    )
    assert code == 0, err
    with Image.open(out) as im:
        assert im.size == (32, 32)
        text = im.text["parameters"]
    lines = text.split("\n")
    assert lines[0] == "a cat"
    assert lines[1] == "Negative prompt: blurry"
    assert lines[2].startswith(
        "Steps: 2, Sampler: DPM++ 2M, Schedule type: Normal, CFG scale: 4.5, Seed: 7, Size: 32x32"
    )
    assert "Model: sd3.5_medium" in lines[2]


def test_same_inputs_give_byte_identical_png(tiny_medium, tmp_path, capsys):
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    for out in (a, b):
        assert (
            run_cli(capsys, "--model", tiny_medium, "--prompt", "a cat", *FAST, "--seed", 3, "--out", out)[0]
            == 0
        )
    assert a.read_bytes() == b.read_bytes()


def test_count_images_equal_single_runs_and_latents_are_saved(tiny_medium, tmp_path, capsys):
    sweep = tmp_path / "sweep.png"
    code, out, _ = run_cli(
        capsys,
        "--model",
        tiny_medium,
        "--prompt",
        "a dog",
        *FAST,
        "--seed",
        10,
        "--count",
        2,
        "--out",
        sweep,
        "--json",
        "--save-latent",
    )
    assert code == 0
    events = [json.loads(line) for line in out.splitlines()]
    assert [e["seed"] for e in events if e["event"] == "image"] == [10, 11]
    assert sum(e["event"] == "step" for e in events) == 4
    single = tmp_path / "single.png"
    assert (
        run_cli(capsys, "--model", tiny_medium, "--prompt", "a dog", *FAST, "--seed", 11, "--out", single)[0]
        == 0
    )
    assert (tmp_path / "sweep-11.png").read_bytes() == single.read_bytes()
    latent = load_file(str(tmp_path / "sweep-10.latent.safetensors"))["latent"]
    assert latent.dtype == torch.float32 and latent.shape == (1, 16, 4, 4)
    assert not (tmp_path / "sweep-12.png").exists()


def test_console_entry_point_runs_without_traceback(tiny_medium, tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "app",
            "generate",
            "--model",
            str(tiny_medium),
            "--prompt",
            "x",
            *FAST,
            "--sampler",
            "bogus",
            "--out",
            str(tmp_path / "x.png"),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode != 0
    assert "invalid choice: 'bogus'" in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def _expect_error(capsys, *args, contains):
    code, _, err = run_cli(capsys, *args)
    assert code != 0
    assert "Traceback" not in err
    assert contains.lower() in err.lower(), err
    assert len(err.strip().splitlines()) == 1, err
    return err


def test_missing_model(tmp_path, capsys):
    _expect_error(
        capsys,
        "--model",
        tmp_path / "nope",
        "--prompt",
        "x",
        "--out",
        tmp_path / "o.png",
        contains="no such file",
    )


def test_truncated_checkpoint(model_copy, tmp_path, capsys):
    ckpt = model_copy / "sd3.5_medium.safetensors"
    data = ckpt.read_bytes()
    ckpt.write_bytes(data[: len(data) // 2])
    _expect_error(
        capsys, "--model", model_copy, "--prompt", "x", "--out", tmp_path / "o.png", contains="truncated"
    )


def test_corrupt_checkpoint(model_copy, tmp_path, capsys):
    (model_copy / "sd3.5_medium.safetensors").write_bytes(b"\x00garbage" * 1000)
    _expect_error(
        capsys,
        "--model",
        model_copy,
        "--prompt",
        "x",
        "--out",
        tmp_path / "o.png",
        contains="not a safetensors file",
    )


@pytest.mark.parametrize(
    ("keys", "name"),
    [
        (
            {
                "model.diffusion_model.input_blocks.0.0.weight": (4, 4),
                "model.diffusion_model.label_emb.0.0.weight": (4, 4),
                "conditioner.embedders.1.model.ln_final.weight": (4,),
            },
            "Stable Diffusion XL",
        ),
        ({"double_blocks.0.img_attn.qkv.weight": (4, 4), "single_blocks.0.linear1.weight": (4, 4)}, "FLUX"),
        ({"model.diffusion_model.input_blocks.0.0.weight": (4, 4), "cond_stage_model.x": (4,)}, "1.x/2.x"),
    ],
)
def test_other_architectures_are_named(tmp_path, capsys, keys, name):
    path = tmp_path / "other.safetensors"
    save_file({k: torch.zeros(s) for k, s in keys.items()}, str(path))
    _expect_error(capsys, "--model", path, "--prompt", "x", "--out", tmp_path / "o.png", contains=name)


def test_wrong_tensor_shape_names_file_and_key(model_copy, tmp_path, capsys):
    ckpt = model_copy / "sd3.5_medium.safetensors"
    sd = load_file(str(ckpt))
    sd["model.diffusion_model.joint_blocks.0.x_block.mlp.fc2.bias"] = torch.zeros(3, dtype=torch.float16)
    save_file(sd, str(ckpt))
    err = _expect_error(
        capsys,
        "--model",
        model_copy,
        "--prompt",
        "x",
        *FAST,
        "--out",
        tmp_path / "o.png",
        contains="joint_blocks.0.x_block.mlp.fc2.bias",
    )
    assert "sd3.5_medium.safetensors" in err


def test_missing_t5_suggests_no_t5_and_no_t5_runs(model_copy, tmp_path, capsys):
    (model_copy / "text_encoders" / "t5xxl_fp16.safetensors").unlink()
    _expect_error(
        capsys, "--model", model_copy, "--prompt", "x", *FAST, "--out", tmp_path / "o.png", contains="--no-t5"
    )
    code, _, err = run_cli(
        capsys, "--model", model_copy, "--prompt", "x", *FAST, "--no-t5", "--out", tmp_path / "o.png"
    )
    assert code == 0, err
    with Image.open(tmp_path / "o.png") as im:
        assert "T5: off" in im.text["parameters"]


def test_missing_clip_g(model_copy, tmp_path, capsys):
    (model_copy / "text_encoders" / "clip_g.safetensors").unlink()
    _expect_error(
        capsys, "--model", model_copy, "--prompt", "x", *FAST, "--out", tmp_path / "o.png", contains="clip_g"
    )


def test_missing_tokenizer(model_copy, tmp_path, capsys):
    shutil.rmtree(model_copy / "tokenizer_3")
    _expect_error(
        capsys,
        "--model",
        model_copy,
        "--prompt",
        "x",
        *FAST,
        "--out",
        tmp_path / "o.png",
        contains="tokenizer_3",
    )


@pytest.mark.parametrize(
    ("w", "message"), [(0, "must be positive"), (-64, "must be positive"), (1024, "512 px")]
)
def test_bad_sizes(tiny_medium, tmp_path, capsys, w, message):
    _expect_error(
        capsys,
        "--model",
        tiny_medium,
        "--prompt",
        "x",
        "--width",
        w,
        "--height",
        32,
        "--out",
        tmp_path / "o.png",
        contains=message,
    )


def test_size_not_multiple_of_16_is_rounded_with_warning(tiny_medium, tmp_path, capsys):
    code, _, err = run_cli(
        capsys,
        "--model",
        tiny_medium,
        "--prompt",
        "x",
        "--width",
        40,
        "--height",
        30,
        "--steps",
        1,
        "--out",
        tmp_path / "o.png",
    )
    assert code == 0
    assert "warning: width 40 is not a multiple of 16; using 48" in err
    assert "warning: height 30 is not a multiple of 16; using 32" in err
    with Image.open(tmp_path / "o.png") as im:
        assert im.size == (48, 32)


@pytest.mark.parametrize("option", ["--sampler", "--scheduler"])
def test_unknown_sampler_or_scheduler(tiny_medium, tmp_path, capsys, option):
    code, _, err = run_cli(
        capsys, "--model", tiny_medium, "--prompt", "x", option, "nope", "--out", tmp_path / "o"
    )
    assert code == 1  # every refused input exits 1 (argparse's own default is 2)
    assert "invalid choice: 'nope'" in err and len(err.strip().splitlines()) == 1


def test_img2img_runs_the_reference_share_of_steps(tiny_medium, tmp_path, capsys):
    init = tmp_path / "init.png"
    Image.new("RGBA", (50, 40), (200, 30, 30, 255)).save(init)  # resized to the job size, then RGB
    out = tmp_path / "i2i.png"
    code, stdout, err = run_cli(
        capsys,
        "--model",
        tiny_medium,
        "--prompt",
        "x",
        "--width",
        32,
        "--height",
        32,
        "--steps",
        10,
        "--init-image",
        init,
        "--denoise",
        0.45,
        "--out",
        out,
        "--json",
    )
    assert code == 0, err
    steps = [json.loads(line) for line in stdout.splitlines() if '"step"' in line]
    assert len(steps) == 10 - int(10 * (1 - 0.45))  # 6 of 10 steps
    with Image.open(out) as im:
        assert "Denoising strength: 0.45" in im.text["parameters"]


def test_denoise_without_init_image_is_an_error(tiny_medium, tmp_path, capsys):
    _expect_error(
        capsys,
        "--model",
        tiny_medium,
        "--prompt",
        "x",
        "--denoise",
        0.5,
        "--out",
        tmp_path / "o.png",
        contains="--init-image",
    )


def test_euler_ancestral_is_deterministic_per_seed(tiny_medium, tmp_path, capsys):
    outs = [tmp_path / "a.png", tmp_path / "b.png", tmp_path / "c.png"]
    for out, seed in zip(outs, (4, 4, 5), strict=True):
        assert (
            run_cli(
                capsys,
                "--model",
                tiny_medium,
                "--prompt",
                "x",
                *FAST,
                "--sampler",
                "euler_ancestral",
                "--seed",
                seed,
                "--out",
                out,
            )[0]
            == 0
        )
    assert outs[0].read_bytes() == outs[1].read_bytes() != outs[2].read_bytes()


def test_a_model_with_nan_weights_exits_1_with_one_sentence_and_writes_no_png(model_copy, tmp_path, capsys):
    from tests.factory.snapshot import poison_tensor

    poison_tensor(
        model_copy / "sd3.5_medium.safetensors", "model.diffusion_model.joint_blocks.0.x_block.mlp.fc2.weight"
    )
    out = tmp_path / "o.png"
    code, _, err = run_cli(capsys, "--model", model_copy, "--prompt", "x", *FAST, "--out", out)
    assert code == 1 and "Traceback" not in err
    errors = [line for line in err.splitlines() if "error:" in line]
    assert errors == [err.strip().splitlines()[-1]]  # one sentence, the last thing said
    assert "the model produced NaN at step 1: the weights may be damaged" in errors[0]
    assert list(tmp_path.glob("*.png")) == []
