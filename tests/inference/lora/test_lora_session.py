"""LoRAs through the generation session: the image with a LoRA (MMDiT and text encoders) equals the image of a
model set into which the test merged it; switching sets never leaks; strengths change without re-reading."""

import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from app.inference.api.events import ImageFinished, JobFailed
from app.inference.api.lora import LoraSpec
from app.inference.api.request import GenerationRequest
from app.inference.checkpoints.model_set import locate_model_set
from app.inference.pipeline.session import GenerationSession
from tests.factory.lora_files import merged_mmdit_state, merged_text_state, mmdit_shapes, write_lora
from tests.factory.mmdit_model import TINY_MEDIUM
from tests.factory.snapshot import CHECKPOINT_NAMES, write_snapshot

TE_FILES = {"clip_l": "clip_l.safetensors", "clip_g": "clip_g.safetensors", "t5": "t5xxl_fp16.safetensors"}


def _text_shapes(folder):
    out = {}
    for network, name in TE_FILES.items():
        state = load_file(str(folder / "text_encoders" / name))
        out[network] = {
            k[: -len(".weight")]: tuple(v.shape) for k, v in state.items() if k.endswith(".weight")
        }
    return out


@pytest.fixture(scope="module")
def snapshot(tmp_path_factory):
    return write_snapshot(tmp_path_factory.mktemp("m") / "sd35m", "medium")


@pytest.fixture(scope="module")
def loras(snapshot, tmp_path_factory):
    folder = tmp_path_factory.mktemp("loras")
    state = load_file(str(snapshot / CHECKPOINT_NAMES["medium"]))
    shapes = {**mmdit_shapes(state), **_text_shapes(snapshot)}
    depth = TINY_MEDIUM.depth
    kohya = write_lora(folder / "style.safetensors", "kohya", shapes, variant="medium", depth=depth, seed=11,
                       te=("clip_l", "clip_g", "t5"))  # fmt: skip
    peft = write_lora(folder / "peft.safetensors", "peft", shapes, variant="medium", depth=depth, seed=12,
                      te=("clip_l", "clip_g"))  # fmt: skip
    return kohya, peft


def merged_snapshot(snapshot, dest, loras_te):
    """A copy of the snapshot with LoRAs merged: [(lora, strength, te_strength)]."""
    shutil.copytree(snapshot, dest)
    ckpt = dest / CHECKPOINT_NAMES["medium"]
    state = {
        k: v.float() for k, v in load_file(str(ckpt)).items()
    }  # float32: the session's dtype, no rounding
    merged = merged_mmdit_state(state, [(lo, s) for lo, s, _ in loras_te])
    save_file(merged, str(ckpt), metadata={"format": "pt"})
    for network, name in TE_FILES.items():
        path = dest / "text_encoders" / name
        te = {k: v.float() for k, v in load_file(str(path)).items()}
        te = merged_text_state(te, network, [(lo, t) for lo, _, t in loras_te])
        save_file(te, str(path), metadata={"format": "pt"})
    return dest


def latent(session, model, loras=(), **kw):
    req = GenerationRequest(prompt="a red fox", negative="blur", width=32, height=32, steps=3, seed=7,
                            loras=tuple(loras), **kw)  # fmt: skip
    events = list(session.run(model, req))
    failed = [e for e in events if isinstance(e, JobFailed)]
    assert not failed, failed[0].message
    (image,) = [e for e in events if isinstance(e, ImageFinished)]
    return image


def rel(a, b):
    return ((a - b).abs().max() / b.abs().max()).item()


def test_lora_image_equals_merged_model_and_switching_back_gives_the_base(snapshot, loras, tmp_path):
    kohya, peft = loras
    session = GenerationSession(device="cpu", dtype="float32", preview="off")
    model = locate_model_set(snapshot)
    base = latent(session, model).latent
    with_lora = latent(session, model, [LoraSpec(kohya.path, 0.8, 0.6), LoraSpec(peft.path, -0.3)])
    assert [(s.name, s.short_hash is not None, len(s.sha256 or "")) for s in with_lora.request.loras] == [
        ("style", True, 64), ("peft", True, 64)
    ]  # fmt: skip
    merged = merged_snapshot(snapshot, tmp_path / "merged", [(kohya, 0.8, 0.6), (peft, -0.3, -0.3)])
    fresh = GenerationSession(device="cpu", dtype="float32", preview="off")
    expected = latent(fresh, locate_model_set(merged)).latent
    assert rel(with_lora.latent, expected) < 1e-4
    assert rel(with_lora.latent, base) > 1e-2
    # LoRA -> none: exactly the base image (nothing leaks into the weights)
    assert torch.equal(latent(session, model).latent, base)
    # a strength change needs no re-read of the LoRA file
    reads = session.loras.reads
    latent(session, model, [LoraSpec(kohya.path, 0.5)])
    latent(session, model, [LoraSpec(kohya.path, 0.0, 0.0)])
    assert session.loras.reads == reads
    assert torch.equal(latent(session, model, [LoraSpec(kohya.path, 0.0, 0.0)]).latent, base)


def test_text_encoder_strength_is_separate(snapshot, loras, tmp_path):
    kohya, _ = loras
    session = GenerationSession(device="cpu", dtype="float32", preview="off")
    model = locate_model_set(snapshot)
    got = latent(session, model, [LoraSpec(kohya.path, 1.0, 0.0)]).latent
    merged = merged_snapshot(snapshot, tmp_path / "mmdit_only", [(kohya, 1.0, 0.0)])
    expected = latent(
        GenerationSession(device="cpu", dtype="float32", preview="off"), locate_model_set(merged)
    )
    assert rel(got, expected.latent) < 1e-4


def test_a_bad_lora_fails_the_job_with_a_sentence_and_keeps_the_set(snapshot, loras, tmp_path):
    kohya, _ = loras
    session = GenerationSession(device="cpu", dtype="float32", preview="off")
    model = locate_model_set(snapshot)
    first = latent(session, model, [LoraSpec(kohya.path, 1.0)]).latent
    flux = tmp_path / "flux_style.safetensors"
    save_file({"lora_unet_double_blocks_0_img_attn_qkv.lora_down.weight": torch.zeros(4, 64)}, str(flux))
    for bad, words in ((flux, "flux_style.safetensors is a LoRA for FLUX.1"), (tmp_path / "gone.safetensors",
                       "LoRA file not found")):  # fmt: skip
        req = GenerationRequest(prompt="a red fox", width=32, height=32, steps=3, seed=7,
                                loras=(LoraSpec(bad, 1.0),))  # fmt: skip
        (failed,) = [e for e in session.run(model, req) if isinstance(e, JobFailed)]
        assert words in failed.message
    assert torch.equal(latent(session, model, [LoraSpec(kohya.path, 1.0)]).latent, first)


def test_keys_not_applied_are_reported_with_the_image(snapshot, loras):
    kohya, _ = loras  # it adapts T5 too: with T5 off those keys cannot apply
    session = GenerationSession(device="cpu", dtype="float32", preview="off")
    image = latent(session, locate_model_set(snapshot), [LoraSpec(kohya.path, 1.0)], use_t5=False)
    t5_keys = sum(1 for k in kohya.keys if k.startswith("lora_te3_"))
    (warning,) = [w for w in image.request.warnings if w.startswith("LoRA style:")]
    assert warning.startswith(
        f"LoRA style: {t5_keys} of {len(kohya.keys)} keys not applied: {t5_keys} for T5-XXL, which is not loaded"
    )
