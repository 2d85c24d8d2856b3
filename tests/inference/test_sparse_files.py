"""Real-size files without the disk cost: real headers (real keys, shapes and dtypes of SD3.5 Large / Medium,
the VAE, CLIP-L/G and T5-XXL) extended to full length as holes. Detection, parameter counts and memory plans
are checked at real sizes; nothing here reads tensor data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from app.inference.api.errors import CheckpointMismatchError
from app.inference.checkpoints import weights
from app.inference.checkpoints.discovery import scan
from app.inference.checkpoints.model_set import locate_model_set
from app.inference.memory.plan import Machine, choose_plan
from tests.factory.sparse import (
    disk_bytes,
    manifest_params,
    sparse_all_in_one_fp8,
    sparse_checkpoint,
    sparse_diffusers_transformer,
    sparse_text_encoder,
)
from tests.inference.test_memory_plan import LARGE, MEDIUM

GB = 1e9
ENV = {"HF_HUB_CACHE": "/nonexistent-hf-cache"}


def _tokenizers(folder: Path) -> None:
    for sub in ("tokenizer", "tokenizer_2", "tokenizer_3"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
        (folder / sub / "tokenizer.json").write_text("{}")


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("sparse")
    for variant in ("large", "medium"):
        folder = root / f"stable-diffusion-3.5-{variant}"
        sparse_checkpoint(folder / f"sd3.5_{variant}.safetensors", variant)
        te = folder / "text_encoders"
        sparse_text_encoder(te / "clip_l.safetensors", "clip_l")
        sparse_text_encoder(te / "clip_g.safetensors", "clip_g")
        sparse_text_encoder(te / "t5xxl_fp16.safetensors", "t5xxl")
        sparse_text_encoder(te / "t5xxl_fp8_e4m3fn_scaled.safetensors", "t5xxl", fp8="scaled")
        _tokenizers(folder)
    sparse_all_in_one_fp8(root / "comfy" / "sd3.5_large_fp8_scaled.safetensors")
    return root


@pytest.fixture(autouse=True)
def no_tensor_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    def forbidden(*args, **kwargs):
        raise AssertionError("tensor data was read")

    monkeypatch.setattr(weights, "_read_tensor", forbidden)


def test_the_files_are_full_size_and_cost_no_disk(tree: Path) -> None:
    big = tree / "stable-diffusion-3.5-large" / "sd3.5_large.safetensors"
    if disk_bytes(big) > 0.01 * os.path.getsize(big):
        pytest.skip("this filesystem does not keep holes")
    assert os.path.getsize(big) > 16 * GB
    assert os.path.getsize(tree / "comfy" / "sd3.5_large_fp8_scaled.safetensors") > 14 * GB


def test_real_sizes_are_detected(tree: Path) -> None:
    result = scan([tree], defaults=False, env=ENV)
    found = {s.name: s for s in result.sets}
    assert set(found) == {"sd3.5_large", "sd3.5_medium", "sd3.5_large_fp8_scaled"}
    large, medium, fp8 = found["sd3.5_large"], found["sd3.5_medium"], found["sd3.5_large_fp8_scaled"]
    assert (large.variant, medium.variant, fp8.variant) == ("large", "medium", "large")
    assert large.complete and medium.complete
    assert fp8.missing == ("tokenizer", "t5_tokenizer")  # an all-in-one file holds no tokenizer
    assert large.component("mmdit").params == manifest_params("sd3.5_large") == 8_146_280_768
    assert medium.component("mmdit").params == manifest_params("sd3.5_medium") == 2_469_663_936
    assert large.component("vae").params == manifest_params("vae")
    assert large.component("t5").params == manifest_params("t5xxl")
    assert large.component("t5").path.name == "t5xxl_fp16.safetensors"  # 16-bit preferred over fp8
    assert large.mmdit_config.depth == 38 and medium.mmdit_config.x_block_self_attn_layers == tuple(range(13))
    assert fp8.component("mmdit").dtype == "fp8_e4m3fn scaled"
    assert fp8.component("t5").dtype.startswith("fp8_e4m3fn scaled")
    assert fp8.component("clip_g").prefix == "text_encoders.clip_g.transformer."
    assert fp8.component("mmdit").params == large.component("mmdit").params  # scales are not parameters


def test_real_sizes_feed_the_memory_plan(tree: Path) -> None:
    large = locate_model_set(tree / "stable-diffusion-3.5-large", env=ENV)
    medium = locate_model_set(tree / "stable-diffusion-3.5-medium", env=ENV)
    assert large.sizes() == LARGE and medium.sizes() == MEDIUM  # the table in test_memory_plan is real
    fp8 = locate_model_set(tree / "comfy" / "sd3.5_large_fp8_scaled.safetensors", env=ENV)
    sizes = fp8.sizes()
    assert sizes.mmdit_file_fp8 and sizes.t5_file_fp8
    plan = choose_plan(sizes, Machine("cuda", int(24 * GB), int(32 * GB)))
    assert (
        plan.name == "resident" and plan.mmdit_fp8 and plan.t5_fp8
    )  # fp8 files fit a 24 GB card as they are


def test_scaled_t5_override_at_real_size(tree: Path) -> None:
    folder = tree / "stable-diffusion-3.5-large"
    t5 = folder / "text_encoders" / "t5xxl_fp8_e4m3fn_scaled.safetensors"
    model_set = locate_model_set(folder, t5=t5, env=ENV)
    assert model_set.t5.path == t5 and model_set.sizes().t5_file_fp8


def test_clip_g_as_clip_l_at_real_size(tree: Path, tmp_path: Path) -> None:
    neutral = sparse_text_encoder(tmp_path / "encoder.safetensors", "clip_g")  # the real width decides
    with pytest.raises(CheckpointMismatchError, match=r"encoder\.safetensors holds CLIP-G, not a CLIP-L"):
        locate_model_set(tree / "stable-diffusion-3.5-large", clip_l=neutral, env=ENV)


def test_sharded_diffusers_transformer_at_real_size(tmp_path: Path) -> None:
    index = sparse_diffusers_transformer(tmp_path / "stable-diffusion-3.5-medium" / "transformer", "medium")
    (found,) = scan([tmp_path], defaults=False, env=ENV).sets
    assert found.variant == "medium" and found.anchor == index
    assert found.component("mmdit").layout == "diffusers"
    assert found.component("mmdit").params == manifest_params("sd3.5_medium")
    assert found.mmdit_config.pos_embed_max_size == 384
