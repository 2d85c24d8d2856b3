"""Discovery: every place artists keep SD3.5 weights is found and grouped into model sets, from headers only;
every bad file or folder becomes a message naming it, and a scan never crashes or hangs."""

from __future__ import annotations

import os
import pickle
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from app.inference.api.errors import CheckpointMismatchError, ModelFileError, UnsupportedModelError
from app.inference.checkpoints import scanning, weights
from app.inference.checkpoints.discovery import scan
from app.inference.checkpoints.model_set import locate_model_set
from tests.factory.layouts import snapshot_files, write_all_in_one, write_comfyui_install, write_hf_cache_repo
from tests.factory.layouts import snapshot_state as parts_of
from tests.factory.snapshot import write_checkpoint, write_snapshot

NO_DEFAULTS = {"HF_HUB_CACHE": "/nonexistent-hf-cache"}


@pytest.fixture(scope="module")
def medium(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_snapshot(tmp_path_factory.mktemp("disc") / "stable-diffusion-3.5-medium", "medium")


@pytest.fixture(scope="module")
def large(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_snapshot(tmp_path_factory.mktemp("disc") / "stable-diffusion-3.5-large", "large", seed=3)


def _scan(*paths: Path, env: dict | None = None, home: Path | None = None):
    return scan(paths, defaults=env is not None, env=NO_DEFAULTS if env is None else env, home=home)


def _only_set(result):
    sets = [s for s in result.sets if s.variant]
    assert len(sets) == 1, [(s.anchor, s.errors) for s in result.sets]
    return sets[0]


def test_snapshot_folder_is_one_complete_set(medium: Path) -> None:
    found = _only_set(_scan(medium))
    assert (found.variant, found.complete, found.missing, found.errors) == ("medium", True, (), ())
    components = dict(found.components)
    assert components["mmdit"].path == components["vae"].path == medium / "sd3.5_medium.safetensors"
    assert components["t5"].path == medium / "text_encoders" / "t5xxl_fp16.safetensors"
    assert (found.tokenizers.clip, found.tokenizers.t5) == (medium / "tokenizer", medium / "tokenizer_3")


def test_hf_cache_found_by_default_and_only_the_referenced_revision(large: Path, tmp_path: Path) -> None:
    cache = tmp_path / "hub"
    repo = "stabilityai/stable-diffusion-3.5-large"
    snapshot = write_hf_cache_repo(cache, repo, snapshot_files(large), revision="a" * 40)
    stale = cache / "models--stabilityai--stable-diffusion-3.5-large" / "snapshots" / ("b" * 40)
    shutil.copytree(snapshot, stale, symlinks=True)  # an old revision no ref points to
    write_hf_cache_repo(
        cache, "someone/unrelated-model", {"model.safetensors": large / "sd3.5_large.safetensors"}
    )
    result = _scan(env={"HF_HUB_CACHE": str(cache)}, home=tmp_path)
    found = _only_set(result)
    assert found.source == "hf-cache" and found.root == snapshot and found.complete
    assert found.anchor.is_symlink()  # the snapshot's links into blobs/ are followed for files


def test_hf_home_and_default_cache_locations(large: Path, tmp_path: Path) -> None:
    files = {"sd3.5_large.safetensors": large / "sd3.5_large.safetensors"}
    write_hf_cache_repo(tmp_path / "hf-home" / "hub", "stabilityai/stable-diffusion-3.5-large", files)
    assert _only_set(_scan(env={"HF_HOME": str(tmp_path / "hf-home")}, home=tmp_path)).variant == "large"
    home = tmp_path / "user"
    write_hf_cache_repo(
        home / ".cache" / "huggingface" / "hub", "stabilityai/stable-diffusion-3.5-large", files
    )
    assert _only_set(_scan(env={}, home=home)).source == "hf-cache"


@pytest.mark.parametrize(
    ("name", "metadata", "variant"),
    [
        ("sd3.5_large.safetensors", None, "large"),
        ("sd3.5_large_turbo.safetensors", None, "large-turbo"),
        ("model.safetensors", {"modelspec.title": "Stable Diffusion 3.5 Large Turbo"}, "large-turbo"),
    ],
)
def test_large_versus_turbo_by_name_or_metadata(tmp_path: Path, name: str, metadata, variant: str) -> None:
    path = write_checkpoint(tmp_path / "models" / name, "large")  # (tmp_path's own name says "turbo")
    if metadata:
        state = parts_of_file(path)
        save_file(state, str(path), metadata=metadata)
    assert _only_set(_scan(path)).variant == variant


def parts_of_file(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(path))


def test_turbo_from_the_hf_repo_name(large: Path, tmp_path: Path) -> None:
    files = {"sd3.5_large.safetensors": large / "sd3.5_large.safetensors"}
    write_hf_cache_repo(tmp_path / "hub", "stabilityai/stable-diffusion-3.5-large-turbo", files)
    assert (
        _only_set(_scan(env={"HF_HUB_CACHE": str(tmp_path / "hub")}, home=tmp_path)).variant == "large-turbo"
    )


def test_tokenizers_from_the_hf_cache(medium: Path, tmp_path: Path) -> None:
    from app.inference.pipeline.engine import Engine

    folder = tmp_path / "bare"
    shutil.copytree(medium, folder, ignore=shutil.ignore_patterns("tokenizer*"))
    cache = tmp_path / "hub"
    clip = {f.name: f for f in (medium / "tokenizer").iterdir()}
    t5 = {f.name: f for f in (medium / "tokenizer_3").iterdir()}
    write_hf_cache_repo(cache, "openai/clip-vit-large-patch14", clip)
    write_hf_cache_repo(cache, "google/t5-v1_1-xxl", t5)
    without = _only_set(_scan(folder))
    assert without.missing == ("tokenizer", "t5_tokenizer")
    env = {"HF_HUB_CACHE": str(cache)}
    model_set = locate_model_set(folder, env=env)
    assert model_set.tokenizers.clip.parent.parent.name == "models--openai--clip-vit-large-patch14"
    assert model_set.tokenizers.clip_g is None  # CLIP-G then pads with the id of "!" (DECISIONS row 4)
    a, b = Engine("cpu", "float32", "resident"), Engine("cpu", "float32", "resident")
    a.load(model_set)
    b.load(locate_model_set(medium))
    for prompt in ("a cat!", "a photo of a dog " * 20):
        assert torch.equal(a.encode(prompt, "full").context, b.encode(prompt, "full").context)
        assert torch.equal(a.encode(prompt, "full").pooled, b.encode(prompt, "full").pooled)


def test_comfyui_install(medium: Path, tmp_path: Path) -> None:
    root = write_comfyui_install(tmp_path / "ComfyUI", medium, "sd3.5_medium.safetensors", t5_format="scaled")
    sdxl = root / "models" / "checkpoints" / "sdxl" / "juggernaut.safetensors"
    sdxl.parent.mkdir()
    save_file({"conditioner.embedders.1.model.ln_final.weight": torch.zeros(4)}, str(sdxl))
    save_file({"lora_unet_down.weight": torch.zeros(2)}, str(root / "models" / "loras" / "style.safetensors"))
    (root / "models" / "vae_approx" / "taesd3_decoder.safetensors").write_bytes(b"")
    result = _scan(root)
    found = _only_set(result)
    assert found.complete and found.source == "comfyui"
    assert found.tokenizers.clip == root / "comfy" / "sd1_tokenizer"
    assert found.tokenizers.t5 == root / "comfy" / "text_encoders" / "t5_tokenizer"
    assert dict(found.components)["preview"].path.name == "taesd3_decoder.safetensors"
    messages = [o.message for o in result.other_files]
    assert any("juggernaut.safetensors is a Stable Diffusion XL model" in m for m in messages)
    assert not any("style.safetensors" in m for m in messages)  # loras/ is not a place for base models


def test_comfyui_default_location_and_separate_encoders(medium: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    root = write_comfyui_install(home / "ComfyUI", medium, "sd3.5_medium.safetensors", all_in_one=False)
    found = _only_set(_scan(env={"HF_HUB_CACHE": str(tmp_path / "none")}, home=home))
    components = dict(found.components)
    assert components["clip_g"].path == root / "models" / "clip" / "clip_g.safetensors"
    assert components["t5"].path == root / "models" / "text_encoders" / "t5xxl_fp16.safetensors"


def test_full_hf_download_with_both_layouts_is_one_set(medium: Path, tmp_path: Path) -> None:
    from tests.factory.layouts import write_diffusers_folder

    folder = write_diffusers_folder(
        tmp_path / "stable-diffusion-3.5-medium", medium, "sd3.5_medium.safetensors"
    )
    shutil.copy(medium / "sd3.5_medium.safetensors", folder)
    shutil.copytree(medium / "text_encoders", folder / "text_encoders")
    found = _only_set(_scan(folder))
    assert found.component("mmdit").layout == "single-file" and found.errors == ()
    shutil.rmtree(folder / "text_encoders")
    (folder / "sd3.5_medium.safetensors").unlink()
    diffusers_only = _only_set(_scan(folder))
    assert diffusers_only.complete and diffusers_only.name == "stable-diffusion-3.5-medium"
    assert diffusers_only.component("clip_g").path == folder / "text_encoder_2" / "model.safetensors"


def test_two_sets_claiming_one_variant(medium: Path, tmp_path: Path) -> None:
    folder = tmp_path / "two"
    shutil.copytree(medium, folder)
    write_checkpoint(folder / "sd3.5_medium_v2.safetensors", "medium", seed=9)
    sets = [s for s in _scan(folder).sets if s.variant]
    assert len(sets) == 2
    for s in sets:
        assert any("both claim SD3.5 Medium" in e for e in s.errors), s.errors
    with pytest.raises(ModelFileError, match=r"several SD3.5 model sets.*sd3.5_medium\.safetensors"):
        locate_model_set(folder)
    assert (
        locate_model_set(folder / "sd3.5_medium_v2.safetensors").checkpoint.name
        == "sd3.5_medium_v2.safetensors"
    )


def test_variant_picks_one_of_several_sets(medium: Path, large: Path, tmp_path: Path) -> None:
    folder = tmp_path / "mixed"
    shutil.copytree(medium, folder)
    shutil.copy(large / "sd3.5_large.safetensors", folder)
    assert locate_model_set(folder, "large").variant == "large"
    assert locate_model_set(folder, "medium").variant == "medium"


def _never_unpickle(path: Path, marker: Path) -> None:
    class Boom:
        def __reduce__(self):
            return (Path.touch, (marker,))

    path.write_bytes(pickle.dumps({"state_dict": Boom()}))


BAD_FILES = {
    "truncated.safetensors": "truncated",
    "garbage.safetensors": "not a safetensors file",
    "empty.safetensors": "empty",
    "badjson.safetensors": "corrupt safetensors header",
    "model.ckpt": "pickle-based weight file",
    "model.pt": "pickle-based weight file",
    "pytorch_model.bin": "pickle-based weight file",
    "sd3.5_large-Q8_0.gguf": "GGUF files are not supported",
}


def _write_bad_files(folder: Path, source: Path, marker: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    data = source.read_bytes()
    (folder / "truncated.safetensors").write_bytes(data[: len(data) // 2])
    (folder / "garbage.safetensors").write_bytes(b"\x00garbage" * 100)
    (folder / "empty.safetensors").write_bytes(b"")
    header = b'{"a": [1, 2'
    (folder / "badjson.safetensors").write_bytes(len(header).to_bytes(8, "little") + header + b"\x00" * 64)
    for name in ("model.ckpt", "model.pt", "pytorch_model.bin"):
        _never_unpickle(folder / name, marker)
    (folder / "sd3.5_large-Q8_0.gguf").write_bytes(b"GGUF" + b"\x00" * 60)


def test_bad_files_are_named_and_never_unpickled(medium: Path, tmp_path: Path) -> None:
    marker = tmp_path / "unpickled"
    bad = tmp_path / "bad"
    _write_bad_files(bad, medium / "sd3.5_medium.safetensors", marker)
    result = _scan(bad)
    assert result.sets == ()
    messages = {o.path.name: o.message for o in result.other_files}
    for name, words in BAD_FILES.items():
        assert name in messages and str(bad / name) in messages[name] and words in messages[name], name
    for name in ("model.ckpt", "truncated.safetensors"):
        with pytest.raises(ModelFileError, match=name.replace(".", r"\.")):
            locate_model_set(bad / name)
    assert not marker.exists()


def test_broken_text_encoder_is_reported_with_its_set(medium: Path, tmp_path: Path) -> None:
    folder = tmp_path / "set"
    shutil.copytree(medium, folder)
    t5 = folder / "text_encoders" / "t5xxl_fp16.safetensors"
    t5.write_bytes(t5.read_bytes()[:1000])
    found = _only_set(_scan(folder))
    assert "t5" in found.missing and not found.complete
    assert any(str(t5) in e and "truncated" in e for e in found.errors)
    with pytest.raises(Exception, match=r"--no-t5.*t5xxl_fp16\.safetensors.*truncated"):
        locate_model_set(folder).require_text_encoders(use_t5=True)


def test_wrong_slot_and_wrong_file_overrides(medium: Path, tmp_path: Path) -> None:
    te = medium / "text_encoders"
    with pytest.raises(CheckpointMismatchError, match=r"clip_g\.safetensors holds CLIP-G, not a CLIP-L"):
        locate_model_set(medium, clip_l=te / "clip_g.safetensors")
    with pytest.raises(CheckpointMismatchError, match=r"clip_l\.safetensors holds CLIP-L, not a T5-XXL"):
        locate_model_set(medium, t5=te / "clip_l.safetensors")
    sdxl_vae = tmp_path / "sdxl_vae.safetensors"
    save_file({"decoder.conv_in.weight": torch.zeros(8, 4, 3, 3), "encoder.conv_in.weight": torch.zeros(8, 3, 3, 3)},
              str(sdxl_vae))  # fmt: skip
    with pytest.raises(CheckpointMismatchError, match=r"sdxl_vae\.safetensors: a VAE with 4 latent channels"):
        locate_model_set(medium, vae=sdxl_vae)


def test_swapped_clips_of_unknown_role_are_caught(medium: Path, tmp_path: Path) -> None:
    te = medium / "text_encoders"
    (tmp_path / "a.safetensors").write_bytes((te / "clip_g.safetensors").read_bytes())  # no name hint
    with pytest.raises(CheckpointMismatchError, match="swapped"):
        locate_model_set(medium, clip_l=tmp_path / "a.safetensors")


@pytest.mark.parametrize(
    ("keys", "family"),
    [
        (
            {
                "model.diffusion_model.double_blocks.0.x": (2,),
                "model.diffusion_model.single_blocks.0.x": (2,),
            },
            "FLUX",
        ),
        ({"model.diffusion_model.input_blocks.0.0.weight": (2,), "cond_stage_model.x": (2,)}, "1.x/2.x"),
        ({"lora_unet_down_blocks_0.alpha": (1,)}, "LoRA"),
    ],
)
def test_other_families_are_named(tmp_path: Path, keys, family: str) -> None:
    path = tmp_path / "other.safetensors"
    save_file({k: torch.zeros(s) for k, s in keys.items()}, str(path))
    (message,) = [o.message for o in _scan(path).other_files]
    assert str(path) in message and family in message
    with pytest.raises(UnsupportedModelError, match=family.replace(".", r"\.")):
        locate_model_set(path)


def test_original_sd3_medium_is_refused(tmp_path: Path) -> None:
    path = write_checkpoint(tmp_path / "sd3_medium.safetensors", "large")
    state = {k: v for k, v in parts_of_file(path).items() if ".ln_q." not in k and ".ln_k." not in k}
    save_file(state, str(path))
    (found,) = _scan(path).sets
    assert found.variant is None and "original SD3 Medium (2024)" in found.errors[0]
    with pytest.raises(UnsupportedModelError, match="original SD3 Medium"):
        locate_model_set(path)


def test_lone_component_given_by_the_user(medium: Path) -> None:
    (entry,) = _scan(medium / "text_encoders" / "clip_g.safetensors").other_files
    assert entry.components == ("clip_g",) and "holds no SD3.5 diffusion model" in entry.message


def test_unreadable_folder_fifo_and_symlink_loop(medium: Path, tmp_path: Path, monkeypatch) -> None:
    root = tmp_path / "tree"
    shutil.copytree(medium, root / "ok")
    locked = root / "locked"
    locked.mkdir()
    os.mkfifo(root / "pipe.safetensors")  # opening it would block forever
    (root / "loop").symlink_to(root, target_is_directory=True)
    real_scandir = os.scandir

    def scandir(path):
        if Path(path) == locked:
            raise PermissionError(13, "Permission denied")
        return real_scandir(path)

    monkeypatch.setattr(scanning.os, "scandir", scandir)
    result = _scan(root)
    assert _only_set(result).root == root / "ok"
    messages = {o.path: o.message for o in result.other_files}
    assert "cannot read this folder (Permission denied)" in messages[locked]
    assert "not a regular file" in messages[root / "pipe.safetensors"]


def test_scan_stops_at_the_entry_limit(medium: Path, tmp_path: Path) -> None:
    root = tmp_path / "many"
    for i in range(5):
        shutil.copytree(medium, root / f"set{i}")
    result = scan([root], defaults=False, env=NO_DEFAULTS, max_entries=12)
    assert len(result.sets) < 5
    assert any("the scan stopped" in o.message for o in result.other_files)


def test_scanning_reads_no_tensor_data(medium: Path, large: Path, tmp_path: Path, monkeypatch) -> None:
    write_all_in_one(
        tmp_path / "aio" / "sd3.5_large_aio.safetensors", parts_of(large, "sd3.5_large.safetensors")
    )

    def forbidden(*args, **kwargs):
        raise AssertionError("a scan read tensor data")

    monkeypatch.setattr(weights, "_read_tensor", forbidden)
    result = _scan(medium, tmp_path / "aio")
    assert sorted(s.variant for s in result.sets) == ["large", "medium"]
