"""Every layout and precision artists hold loads into the same networks as the canonical snapshot: all-in-one,
MMDiT-only, diffusers folders, ComfyUI installs; fp32 / bf16 / fp8 / scaled fp8, dequantised at load or kept
in fp8 storage. Layouts must match exactly; fp8 files must match their dequantised canonical form exactly and
the 16-bit original within fp8 rounding."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from app.inference.checkpoints.fp8 import Fp8Linear, fp8_storage_bytes
from app.inference.checkpoints.mmdit_loading import load_mmdit_component
from app.inference.checkpoints.model_set import locate_model_set
from app.inference.pipeline.engine import Engine
from tests.factory.layouts import (
    dequantized,
    mmdit_linear,
    snapshot_state,
    t5_linear,
    to_plain_fp8,
    to_scaled_fp8,
    write_all_in_one,
    write_comfyui_install,
    write_diffusers_folder,
)
from tests.factory.snapshot import write_snapshot

CKPT = "sd3.5_medium.safetensors"
PROMPT = "a photo of a red cat"


@pytest.fixture(scope="module")
def snapshot(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_snapshot(tmp_path_factory.mktemp("formats") / "stable-diffusion-3.5-medium", "medium")


@pytest.fixture(scope="module")
def parts(snapshot: Path) -> dict[str, dict[str, torch.Tensor]]:
    return snapshot_state(snapshot, CKPT)


def _engine(model: Path, plan: str = "resident", **overrides) -> Engine:
    engine = Engine(device="cpu", dtype="float32", memory_plan=plan)
    engine.load(locate_model_set(model, **overrides))
    return engine


def _outputs(engine: Engine) -> dict[str, torch.Tensor]:
    """Everything a job computes with the networks, on fixed inputs."""
    gen = torch.Generator().manual_seed(0)
    cfg = engine.mmdit.cfg
    cond = engine.encode(PROMPT, "full")
    x = torch.randn(1, 16, 8, 8, generator=gen)
    with torch.inference_mode():
        v = engine.mmdit(x, torch.tensor([700.0]), cond.pooled, cond.context)
        image = engine.vae.decode(torch.randn(1, 16, 4, 4, generator=gen))
    assert v.shape == (1, cfg.out_channels, 8, 8)
    return {"context": cond.context, "pooled": cond.pooled, "velocity": v, "image": image}


@pytest.fixture(scope="module")
def canonical(snapshot: Path) -> dict[str, torch.Tensor]:
    return _outputs(_engine(snapshot))


def _assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    for key in a:
        assert torch.equal(a[key], b[key]), key


def _tokenizers(src: Path, dst: Path) -> None:
    for sub in ("tokenizer", "tokenizer_2", "tokenizer_3"):
        shutil.copytree(src / sub, dst / sub)


def test_all_in_one_checkpoint(snapshot: Path, parts, canonical, tmp_path: Path) -> None:
    path = write_all_in_one(tmp_path / "sd3.5_medium_incl_clips_t5xxl.safetensors", parts)
    _tokenizers(snapshot, tmp_path)
    model_set = locate_model_set(path)
    assert {
        c.path for c in (model_set.mmdit, model_set.vae, model_set.clip_l, model_set.clip_g, model_set.t5)
    } == {path}
    assert model_set.t5.prefix == "text_encoders.t5xxl.transformer."
    _assert_same(canonical, _outputs(_engine(path)))


def test_mmdit_only_file_without_prefix_and_separate_vae(
    snapshot: Path, parts, canonical, tmp_path: Path
) -> None:
    folder = tmp_path / "set"
    shutil.copytree(snapshot / "text_encoders", folder / "text_encoders")
    _tokenizers(snapshot, folder)
    save_file(parts["mmdit"], str(folder / "sd3.5_medium_unet.safetensors"))  # keys without any prefix
    save_file(parts["vae"], str(tmp_path / "sd3_vae.safetensors"))
    with pytest.raises(Exception, match="--vae"):
        locate_model_set(folder)
    _assert_same(canonical, _outputs(_engine(folder, vae=tmp_path / "sd3_vae.safetensors")))


def test_diffusers_folder_sharded(snapshot: Path, canonical, tmp_path: Path) -> None:
    folder = write_diffusers_folder(tmp_path / "stable-diffusion-3.5-medium", snapshot, CKPT)
    model_set = locate_model_set(folder)
    assert model_set.mmdit.layout == "diffusers" and model_set.mmdit.path.name.endswith(".index.json")
    assert model_set.vae.layout == "diffusers"
    assert model_set.t5.path.name == "model.safetensors.index.json"
    _assert_same(canonical, _outputs(_engine(folder)))


def test_comfyui_install_with_separate_encoders(snapshot: Path, canonical, tmp_path: Path) -> None:
    root = write_comfyui_install(tmp_path / "ComfyUI", snapshot, CKPT, all_in_one=False)
    model_set = locate_model_set(root / "models" / "checkpoints" / CKPT)
    assert model_set.clip_l.path.parent.name == "clip"
    assert model_set.tokenizers.clip == root / "comfy" / "sd1_tokenizer"
    assert model_set.tokenizers.t5 == root / "comfy" / "text_encoders" / "t5_tokenizer"
    _assert_same(canonical, _outputs(_engine(root / "models" / "checkpoints" / CKPT)))


@pytest.mark.parametrize("dtype", [torch.bfloat16])  # fp16: the snapshot itself; fp32: the other side
def test_precisions_load_the_values_they_store(
    snapshot: Path, parts, tmp_path: Path, dtype: torch.dtype
) -> None:
    """A bf16 file and an fp32 file holding the same (bf16-representable) numbers give the same networks."""
    rounded = {name: {k: v.to(dtype) for k, v in part.items()} for name, part in parts.items()}
    a = write_all_in_one(tmp_path / "a" / CKPT, rounded)
    b = write_all_in_one(
        tmp_path / "b" / CKPT, {n: {k: v.float() for k, v in p.items()} for n, p in rounded.items()}
    )
    for folder in (a.parent, b.parent):
        _tokenizers(snapshot, folder)
    _assert_same(_outputs(_engine(a)), _outputs(_engine(b)))


@pytest.fixture(scope="module")
def fp8_files(snapshot: Path, parts, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """ComfyUI-style fp8 all-in-one files and their dequantised fp32 counterparts."""
    root = tmp_path_factory.mktemp("fp8")
    out = {}
    for kind, convert in (("scaled", to_scaled_fp8), ("plain", to_plain_fp8)):
        mmdit = convert(parts["mmdit"], mmdit_linear)
        t5 = convert(parts["t5"], t5_linear)
        fp8 = {**parts, "mmdit": mmdit, "t5": t5}
        exact = {
            **{n: dequantized(p) for n, p in parts.items()},
            "mmdit": dequantized(mmdit),
            "t5": dequantized(t5),
        }
        for name, state in ((kind, fp8), (f"{kind}-dequantized", exact)):
            path = write_all_in_one(root / name / f"sd3.5_medium_{name}.safetensors", state)
            _tokenizers(snapshot, path.parent)
            out[name] = path
    return out


@pytest.mark.parametrize("kind", ["scaled", "plain"])
def test_fp8_files_stay_fp8_and_equal_their_dequantised_form(fp8_files, canonical, kind: str) -> None:
    """An fp8 file keeps fp8 storage in every plan and computes exactly what its dequantised form computes."""
    engine = _engine(fp8_files[kind], "resident")
    assert engine.plan.mmdit_fp8 and engine.plan.t5_fp8
    assert isinstance(engine.mmdit.joint_blocks[0].x_block.mlp.fc1, Fp8Linear)
    assert fp8_storage_bytes(engine.mmdit) > 0 and fp8_storage_bytes(engine.text.t5.model) > 0
    got = _outputs(engine)
    _assert_same(_outputs(_engine(fp8_files[f"{kind}-dequantized"])), got)
    # ...and the 16-bit original within fp8 rounding: close, but really quantised.
    for key in ("context", "velocity"):
        error = (got[key] - canonical[key]).norm() / canonical[key].norm()
        assert 0 < error < 0.3, (key, float(error))  # ~2.7 % per layer, grown through tiny random nets


def test_dequantise_at_load_equals_fp8_storage(fp8_files) -> None:
    path = fp8_files["scaled"]
    model_set = locate_model_set(path)
    stored = load_mmdit_component(model_set.mmdit, dtype=torch.float32, device="cpu", fp8=True)
    upcast = load_mmdit_component(model_set.mmdit, dtype=torch.float32, device="cpu", fp8=False)
    assert fp8_storage_bytes(upcast) == 0 and fp8_storage_bytes(stored) == model_set.mmdit.fp8_params
    gen = torch.Generator().manual_seed(1)
    x, y, ctx = (
        torch.randn(1, 16, 8, 8, generator=gen),
        torch.randn(1, 192, generator=gen),
        torch.randn(1, 9, 256),
    )
    with torch.inference_mode():
        assert torch.equal(stored(x, torch.tensor([300.0]), y, ctx), upcast(x, torch.tensor([300.0]), y, ctx))


def test_fp8_plan_on_16_bit_files_quantises_per_tensor(snapshot: Path, canonical) -> None:
    engine = _engine(snapshot, "fp8")
    fc1 = engine.mmdit.joint_blocks[0].x_block.mlp.fc1
    assert fc1.weight.dtype == torch.float8_e4m3fn and fc1.scale_weight.dtype == torch.float32
    assert engine.text.t5.model.encoder.block[0].layer[1].DenseReluDense.wo.weight.dtype == torch.float32
    got = _outputs(engine)
    assert torch.equal(got["pooled"], canonical["pooled"])  # CLIPs are never stored in fp8
    for key in ("context", "velocity"):
        error = (got[key] - canonical[key]).norm() / canonical[key].norm()
        assert 0 < error < 0.3, (key, float(error))  # ~2.7 % per layer, grown through tiny random nets


def test_scaled_t5_override_file(snapshot: Path, parts, fp8_files, tmp_path: Path) -> None:
    """--t5 with a standalone scaled-fp8 T5 (bare `scaled_fp8` marker) replaces the set's T5."""
    path = tmp_path / "t5xxl_fp8_e4m3fn_scaled.safetensors"
    save_file(to_scaled_fp8(parts["t5"], t5_linear), str(path))
    model_set = locate_model_set(snapshot, t5=path)
    assert model_set.t5.path == path and model_set.t5.dtype.startswith("fp8_e4m3fn scaled")
    engine = Engine(device="cpu", dtype="float32", memory_plan="resident")
    engine.load(model_set)
    assert engine.plan.t5_fp8  # an fp8 file stays fp8 (DECISIONS row 9)
    reference = _engine(fp8_files["scaled-dequantized"])
    assert torch.equal(engine.encode(PROMPT, "full").context, reference.encode(PROMPT, "full").context)
