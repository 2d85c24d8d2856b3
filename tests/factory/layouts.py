"""The tiny model set of `snapshot.py` rewritten in the other layouts artists hold: all-in-one checkpoints,
diffusers folders (converted with diffusers' own converters, sharded with index files), ComfyUI installs,
the Hugging Face hub cache, and fp8 / scaled-fp8 precisions. Every layout holds the same numbers as the
snapshot it was made from (up to the precision asked for), so loading any of them must give the same networks.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from tests.factory.mmdit_model import PREFIX as MMDIT_PREFIX
from tests.factory.vae_model import TINY_BLOCK_OUT_CHANNELS

VAE_PREFIX = "first_stage_model."
TE_PREFIXES = {
    "clip_l": "text_encoders.clip_l.transformer.",
    "clip_g": "text_encoders.clip_g.transformer.",
    "t5": "text_encoders.t5xxl.transformer.",
}
TE_FILES = {"clip_l": "clip_l.safetensors", "clip_g": "clip_g.safetensors", "t5": "t5xxl_fp16.safetensors"}


def _linear_weight(key: str, t: torch.Tensor) -> bool:
    return key.endswith(".weight") and t.ndim == 2


def mmdit_linear(key: str, t: torch.Tensor) -> bool:
    """What ComfyUI quantises in an MMDiT: Linear weights (here: those of the joint blocks)."""
    return ".joint_blocks." in f".{key}" and _linear_weight(key, t)


def t5_linear(key: str, t: torch.Tensor) -> bool:
    return "encoder.block." in key and _linear_weight(key, t) and "relative_attention_bias" not in key


def to_plain_fp8(state: dict[str, torch.Tensor], select: Callable[[str, torch.Tensor], bool]):
    """float8_e4m3fn without scales (e.g. t5xxl_fp8_e4m3fn.safetensors) for the selected tensors."""
    return {k: v.to(torch.float8_e4m3fn) if select(k, v) else v for k, v in state.items()}


def to_scaled_fp8(
    state: dict[str, torch.Tensor], select: Callable[[str, torch.Tensor], bool], marker_prefix: str = ""
) -> dict[str, torch.Tensor]:
    """ComfyUI's scaled fp8 (SD35_MODEL.md §5.3): W8 = fp8(W / s) with s = max|W| / 448 per tensor, a float32
    `scale_weight`, a `scale_input` of 1 and the `scaled_fp8` marker."""
    out: dict[str, torch.Tensor] = {marker_prefix + "scaled_fp8": torch.zeros(2, dtype=torch.float8_e4m3fn)}
    for key, value in state.items():
        if select(key, value):
            w = value.float()
            scale = w.abs().max() / 448.0
            base = key[: -len("weight")]
            out[key] = (w / scale).to(torch.float8_e4m3fn)
            out[base + "scale_weight"] = scale.reshape(())
            out[base + "scale_input"] = torch.tensor(1.0)
        else:
            out[key] = value
    return out


def dequantized(
    state: dict[str, torch.Tensor], dtype: torch.dtype = torch.float32
) -> dict[str, torch.Tensor]:
    """What a scaled/plain fp8 state means, in `dtype`: the canonical counterpart of an fp8 file."""
    out = {}
    for key, value in state.items():
        if key.endswith(("scale_weight", "scale_input", "scaled_fp8")):
            continue
        if value.dtype == torch.float8_e4m3fn:
            scale = state.get(key[: -len("weight")] + "scale_weight", torch.tensor(1.0))
            out[key] = (value.float() * scale.float()).to(dtype)
        else:
            out[key] = value.to(dtype) if value.is_floating_point() else value
    return out


def snapshot_state(snapshot: Path, checkpoint: str) -> dict[str, dict[str, torch.Tensor]]:
    """The snapshot's tensors per component, without prefixes."""
    ckpt = load_file(str(snapshot / checkpoint))
    parts = {
        "mmdit": {k[len(MMDIT_PREFIX) :]: v for k, v in ckpt.items() if k.startswith(MMDIT_PREFIX)},
        "vae": {k[len(VAE_PREFIX) :]: v for k, v in ckpt.items() if k.startswith(VAE_PREFIX)},
    }
    for name, file in TE_FILES.items():
        parts[name] = load_file(str(snapshot / "text_encoders" / file))
    return parts


def write_all_in_one(
    path: Path, parts: dict[str, dict[str, torch.Tensor]], metadata: dict | None = None
) -> Path:
    """One file: model.diffusion_model.*, first_stage_model.*, text_encoders.{clip_l,clip_g,t5xxl}.transformer.*"""
    prefixes = {"mmdit": MMDIT_PREFIX, "vae": VAE_PREFIX, **TE_PREFIXES}
    state = {prefixes[name] + k: v for name, part in parts.items() for k, v in part.items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(path), metadata=metadata)
    return path


def save_sharded(state: dict[str, torch.Tensor], folder: Path, stem: str, shards: int = 2) -> Path:
    """`<stem>-0000i-of-0000n.safetensors` files plus `<stem>.safetensors.index.json`, as diffusers writes."""
    folder.mkdir(parents=True, exist_ok=True)
    keys = sorted(state)
    weight_map = {}
    for i in range(shards):
        name = f"{stem}-{i + 1:05d}-of-{shards:05d}.safetensors"
        part = {k: state[k].contiguous() for k in keys[i::shards]}
        save_file(part, str(folder / name))
        weight_map.update(dict.fromkeys(part, name))
    index = folder / f"{stem}.safetensors.index.json"
    index.write_text(json.dumps({"metadata": {"total_size": 0}, "weight_map": weight_map}))
    return index


def write_diffusers_folder(folder: Path, snapshot: Path, checkpoint: str) -> Path:
    """transformer/ (sharded), vae/, text_encoder/, text_encoder_2/, text_encoder_3/ (sharded), tokenizer*/,
    converted from the snapshot by diffusers' own single-file converters."""
    from diffusers.loaders.single_file_utils import (
        convert_ldm_vae_checkpoint,
        convert_sd3_transformer_checkpoint_to_diffusers,
    )

    parts = snapshot_state(snapshot, checkpoint)
    prefixed = {MMDIT_PREFIX + k: v for k, v in parts["mmdit"].items()}
    transformer = convert_sd3_transformer_checkpoint_to_diffusers(prefixed)
    save_sharded(transformer, folder / "transformer", "diffusion_pytorch_model")
    config = {
        "down_block_types": ["DownEncoderBlock2D"] * 4, "up_block_types": ["UpDecoderBlock2D"] * 4,
        "block_out_channels": list(TINY_BLOCK_OUT_CHANNELS), "layers_per_block": 2, "latent_channels": 16,
    }  # fmt: skip
    vae = convert_ldm_vae_checkpoint({VAE_PREFIX + k: v for k, v in parts["vae"].items()}, config)
    (folder / "vae").mkdir(parents=True, exist_ok=True)
    save_file(
        {k: v.contiguous() for k, v in vae.items()},
        str(folder / "vae" / "diffusion_pytorch_model.safetensors"),
    )
    for sub, name in (("text_encoder", "clip_l"), ("text_encoder_2", "clip_g")):
        (folder / sub).mkdir(parents=True, exist_ok=True)
        save_file(parts[name], str(folder / sub / "model.safetensors"))
    save_sharded(parts["t5"], folder / "text_encoder_3", "model")
    for sub in ("tokenizer", "tokenizer_2", "tokenizer_3"):
        shutil.copytree(snapshot / sub, folder / sub)
    (folder / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusion3Pipeline"}))
    return folder


def write_comfyui_install(
    root: Path, snapshot: Path, checkpoint: str, *, all_in_one: bool = True, t5_format: str = "fp16"
) -> Path:
    """A ComfyUI install: models/checkpoints (all-in-one, or MMDiT+VAE with the encoders in models/clip),
    comfy/sd1_tokenizer (vocab + merges) and comfy/text_encoders/t5_tokenizer (tokenizer.json only)."""
    from transformers import T5TokenizerFast

    parts = snapshot_state(snapshot, checkpoint)
    if t5_format == "scaled":
        parts["t5"] = to_scaled_fp8(parts["t5"], t5_linear)
    models = root / "models"
    for sub in ("checkpoints", "clip", "text_encoders", "vae", "vae_approx", "loras"):
        (models / sub).mkdir(parents=True, exist_ok=True)
    if all_in_one:
        write_all_in_one(models / "checkpoints" / checkpoint, parts)
    else:
        write_all_in_one(models / "checkpoints" / checkpoint, {"mmdit": parts["mmdit"], "vae": parts["vae"]})
        save_file(parts["clip_l"], str(models / "clip" / "clip_l.safetensors"))
        save_file(parts["clip_g"], str(models / "clip" / "clip_g.safetensors"))
        t5_name = "t5xxl_fp8_e4m3fn_scaled.safetensors" if t5_format == "scaled" else "t5xxl_fp16.safetensors"
        save_file(parts["t5"], str(models / "text_encoders" / t5_name))
    shutil.copytree(snapshot / "tokenizer", root / "comfy" / "sd1_tokenizer")
    t5_tok = root / "comfy" / "text_encoders" / "t5_tokenizer"
    T5TokenizerFast.from_pretrained(str(snapshot / "tokenizer_3"), local_files_only=True).save_pretrained(
        str(t5_tok)
    )
    for extra in t5_tok.iterdir():
        if extra.name != "tokenizer.json":
            extra.unlink()
    return root


def write_hf_cache_repo(cache: Path, repo_id: str, files: dict[str, Path], revision: str = "0" * 40) -> Path:
    """A hub-cache repo: blobs/, refs/main and snapshots/<rev>/ with relative symlinks, as huggingface_hub makes."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / revision
    for rel, source in files.items():
        data = source.read_bytes()
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = snapshot / rel
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(revision)
    return snapshot


def snapshot_files(snapshot: Path) -> dict[str, Path]:
    return {str(p.relative_to(snapshot)): p for p in sorted(snapshot.rglob("*")) if p.is_file()}
