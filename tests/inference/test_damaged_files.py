"""Damaged model and tokenizer files, made from the factory's tiny model set: each is refused with one sentence
that names the file (a typed InferenceError for the window; one line and exit 1 from the CLI), never a traceback,
a wrong model or a black image."""

import json
import shutil
import struct
from collections.abc import Callable
from pathlib import Path

import pytest

from app.cli.main import main
from app.inference.api.errors import CheckpointMismatchError, ModelFileError
from app.inference.checkpoints.weights import read_header
from tests.factory.snapshot import write_snapshot

MMDIT = "sd3.5_medium.safetensors"
T5 = "text_encoders/t5xxl_fp16.safetensors"
QKV = "model.diffusion_model.joint_blocks.0.x_block.attn.qkv.weight"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return write_snapshot(tmp_path_factory.mktemp("models") / "stable-diffusion-3.5-medium", "medium")


@pytest.fixture
def model(tiny, tmp_path) -> Path:
    return shutil.copytree(tiny, tmp_path / "set")


def rewrite_header(path: Path, edit: Callable[[dict], None]) -> None:
    """Edit a safetensors header in place; the data section is kept byte for byte."""
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    edit(header)
    new = json.dumps(header).encode()
    new += b" " * (-len(new) % 8)
    path.write_bytes(struct.pack("<Q", len(new)) + new + raw[8 + n :])


def generate(capsys, model: Path, tmp_path: Path) -> str:
    out = tmp_path / "o.png"
    code = main(["generate", "--model", str(model), "--prompt", "x", "--width", "32", "--height", "32",
                 "--steps", "1", "--out", str(out)])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 1, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert not out.exists()
    return err


def nest_deeply(path: Path) -> None:
    depth = 200_000
    header = b'{"x":' + b"[" * depth + b"]" * depth + b"}"
    path.write_bytes(struct.pack("<Q", len(header)) + header)


def relabel_as_int(path: Path) -> None:
    def edit(h):
        h[QKV]["dtype"] = {"F16": "I16", "BF16": "I16", "F32": "I32"}[h[QKV]["dtype"]]

    rewrite_header(path, edit)


def share_bytes(path: Path) -> None:
    def edit(h):
        tensors = {k: v for k, v in h.items() if k != "__metadata__"}
        by_size: dict[tuple, str] = {}
        for key, v in sorted(tensors.items()):
            size = (v["dtype"], v["data_offsets"][1] - v["data_offsets"][0])
            if size in by_size:  # two tensors of one size: the second now reads the first one's bytes
                h[key]["data_offsets"] = list(h[by_size[size]]["data_offsets"])
                return
            by_size[size] = key
        raise AssertionError("no two tensors of one size")

    rewrite_header(path, edit)


def negative_offsets(path: Path) -> None:
    def edit(h):
        begin, end = h[QKV]["data_offsets"]
        h[QKV]["data_offsets"] = [-(end - begin), 0]  # would read the header's own bytes as weights

    rewrite_header(path, edit)


def swap_t5_dimensions(path: Path) -> None:
    from safetensors.torch import load_file, save_file

    state = load_file(str(path))
    key = "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"
    state[key] = state[key].t().contiguous()  # 32 x heads -> heads x 32: it would load with 32 heads
    save_file(state, str(path))


@pytest.mark.parametrize(
    ("damage", "file", "error", "says"),
    [
        (nest_deeply, MMDIT, ModelFileError, "corrupt safetensors header"),
        (relabel_as_int, MMDIT, CheckpointMismatchError, "stored as integers (I16)"),
        (share_bytes, MMDIT, ModelFileError, "share bytes"),
        (negative_offsets, MMDIT, ModelFileError, "data_offsets are not two byte positions"),
        (swap_t5_dimensions, T5, CheckpointMismatchError, "32 position buckets"),
    ],
    ids=["nested", "float-as-int", "shared-bytes", "negative-offsets", "t5-swapped"],
)
def test_damaged_weights_are_refused_naming_the_file(capsys, model, tmp_path, damage, file, error, says):
    damage(model / file)
    err = generate(capsys, model, tmp_path)
    assert f"{model / file}: " in err and says in err
    if damage in (nest_deeply, share_bytes, negative_offsets):  # the header alone tells
        with pytest.raises(error, match="corrupt safetensors header"):
            read_header(model / file)


def test_zero_sized_tensors_may_share_an_offset(tmp_path):
    import torch
    from safetensors.torch import save_file

    path = tmp_path / "ok.safetensors"
    save_file({"a": torch.zeros(0), "b": torch.zeros(0), "c": torch.ones(3)}, str(path))
    assert read_header(path).shape("c") == (3,)


@pytest.mark.parametrize(
    ("file", "content"),
    [
        ("tokenizer/vocab.json", b'{"a": 1, "b'),
        ("tokenizer/vocab.json", b"[1, 2, 3]"),
        ("tokenizer/merges.txt", b"#version: 0.2\n\xff\xfe\n"),
        ("tokenizer_3/spiece.model", b"garbage" * 100),
    ],
    ids=["vocab-cut", "vocab-list", "merges-binary", "spiece-garbage"],
)
def test_damaged_tokenizer_files_are_named(capsys, model, tmp_path, file, content):
    (model / file).write_bytes(content)
    err = generate(capsys, model, tmp_path)
    assert f"{model / file}: " in err and "damaged" in err
    assert "BPE" not in err and "tiktoken" not in err
