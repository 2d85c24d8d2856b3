"""Full-size SD3.5 files that cost no disk: a real safetensors header (the real keys and shapes from `keys/*.json`)
followed by a hole — the file is extended to its full length with `truncate`, no tensor data is written.

Header-only code (discovery, variant detection, memory plans) sees exactly what it would see on a real
16 GB checkpoint; reading a tensor would give zeros.
"""

from __future__ import annotations

import json
import math
import os
import struct
from pathlib import Path

KEYS_DIR = Path(__file__).parent / "keys"
_BYTES = {"F32": 4, "F16": 2, "BF16": 2, "F8_E4M3": 1}

Entry = tuple[str, tuple[int, ...]]  # (safetensors dtype, shape)


def manifest(name: str) -> dict[str, tuple[int, ...]]:
    """Real key -> shape, from keys/<name>.json."""
    data = json.loads((KEYS_DIR / f"{name}.json").read_text())
    return {k["key"]: tuple(k["shape"]) for k in data["keys"]}


def manifest_params(name: str) -> int:
    return int(json.loads((KEYS_DIR / f"{name}.json").read_text())["num_params"])


def write_sparse(path: Path, entries: dict[str, Entry], metadata: dict[str, str] | None = None) -> Path:
    """A valid safetensors file of full length whose data section is a hole."""
    header: dict[str, object] = {}
    if metadata:
        header["__metadata__"] = metadata
    offset = 0
    for key in sorted(
        entries, key=lambda k: (entries[k][0], k)
    ):  # dtype, then name, as safetensors orders them
        dtype, shape = entries[key]
        size = math.prod(shape) * _BYTES[dtype]
        header[key] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
    os.truncate(path, 8 + len(raw) + offset)
    return path


def _with(entries: dict[str, tuple[int, ...]], dtype: str, prefix: str = "") -> dict[str, Entry]:
    return {prefix + k: (dtype, s) for k, s in entries.items()}


def _strip(entries: dict[str, tuple[int, ...]], prefix: str) -> dict[str, tuple[int, ...]]:
    return {k[len(prefix) :]: s for k, s in entries.items() if k.startswith(prefix)}


def scaled_fp8(entries: dict[str, Entry], is_linear) -> dict[str, Entry]:
    """Scaled-fp8 form of a header: fp8 Linear weights, float32 scalar scales, the marker."""
    out: dict[str, Entry] = {}
    for key, (dtype, shape) in entries.items():
        if is_linear(key, shape):
            out[key] = ("F8_E4M3", shape)
            out[key[: -len("weight")] + "scale_weight"] = ("F32", ())
            out[key[: -len("weight")] + "scale_input"] = ("F32", ())
        else:
            out[key] = (dtype, shape)
    return out


def _mmdit_linear(key: str, shape: tuple[int, ...]) -> bool:
    return ".joint_blocks." in key and key.endswith(".weight") and len(shape) == 2


def _t5_linear(key: str, shape: tuple[int, ...]) -> bool:
    return "encoder.block." in key and key.endswith(".weight") and len(shape) == 2 and "relative" not in key


def sparse_checkpoint(path: Path, variant: str, *, dtype: str = "BF16", metadata: dict | None = None) -> Path:
    """sd3.5_large / sd3.5_medium single file: MMDiT + VAE at full size."""
    name = "sd3.5_medium" if variant == "medium" else "sd3.5_large"
    entries = {**_with(manifest(name), dtype), **_with(manifest("vae"), dtype)}
    return write_sparse(path, entries, metadata)


def sparse_text_encoder(path: Path, name: str, *, dtype: str = "F16", fp8: str | None = None) -> Path:
    """clip_l / clip_g / t5xxl standalone file; T5 optionally `fp8="plain"` or `fp8="scaled"`."""
    entries = _with(manifest(name), dtype)
    if fp8 == "scaled":
        entries = {"scaled_fp8": ("F8_E4M3", (2,)), **scaled_fp8(entries, _t5_linear)}
    elif fp8 == "plain":
        entries = {k: ("F8_E4M3", s) if _t5_linear(k, s) else (d, s) for k, (d, s) in entries.items()}
    return write_sparse(path, entries)


def sparse_all_in_one_fp8(path: Path, variant: str = "large") -> Path:
    """ComfyUI's sd3.5_large_fp8_scaled.safetensors: scaled-fp8 MMDiT and T5, 16-bit CLIPs and VAE."""
    name = "sd3.5_medium" if variant == "medium" else "sd3.5_large"
    mmdit = scaled_fp8(_with(manifest(name), "BF16"), _mmdit_linear)
    t5 = scaled_fp8(_with(manifest("t5xxl"), "F16", "text_encoders.t5xxl.transformer."), _t5_linear)
    entries = {
        **mmdit,
        "model.diffusion_model.scaled_fp8": ("F8_E4M3", (2,)),
        **_with(manifest("vae"), "BF16"),
        **_with(manifest("clip_l"), "F16", "text_encoders.clip_l.transformer."),
        **_with(manifest("clip_g"), "F16", "text_encoders.clip_g.transformer."),
        **t5,
        "text_encoders.t5xxl.transformer.scaled_fp8": ("F8_E4M3", (2,)),
    }
    return write_sparse(path, entries, {"modelspec.architecture": "stable-diffusion-v3.5-large"})


def sparse_diffusers_transformer(folder: Path, variant: str) -> Path:
    """transformer/ of the diffusers layout at full size (names from diffusers' converter on meta tensors),
    in two sparse shards with their index."""
    import torch
    from diffusers.loaders.single_file_utils import convert_sd3_transformer_checkpoint_to_diffusers

    name = "sd3.5_medium" if variant == "medium" else "sd3.5_large"
    with torch.device("meta"):
        state = {k: torch.empty(s, dtype=torch.bfloat16) for k, s in manifest(name).items()}
    converted = convert_sd3_transformer_checkpoint_to_diffusers(state)
    keys = sorted(converted)
    weight_map = {}
    for i in range(2):
        shard = f"diffusion_pytorch_model-{i + 1:05d}-of-00002.safetensors"
        write_sparse(folder / shard, {k: ("BF16", tuple(converted[k].shape)) for k in keys[i::2]})
        weight_map.update(dict.fromkeys(keys[i::2], shard))
    index = folder / "diffusion_pytorch_model.safetensors.index.json"
    index.write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    return index


def disk_bytes(path: Path) -> int:
    """Bytes the file really occupies (holes excluded)."""
    return os.stat(path).st_blocks * 512
