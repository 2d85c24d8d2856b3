"""Loading an SD3.5 Large ControlNet (`sd3.5_large_controlnet_{blur,canny,depth}.safetensors`).

The official layout (SD35_ADDONS.md §2) with any key prefix; 16/32-bit, plain float8_e4m3fn or ComfyUI
scaled-fp8 weights (dequantised with their scales, as the MMDiT loader does). With `fp8=True` the Linear
weights of the transformer and output blocks stay (or become) fp8 and are upcast per layer at compute.
Refused with a sentence: pickles (read_header), SD3-Medium ControlNets, a base model it does not fit
(Medium, another width), wrong shapes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from app.inference.api.errors import CheckpointMismatchError, ModelFileError, UnsupportedModelError
from app.inference.checkpoints.fp8 import (
    Fp8Reader,
    assign_with_fp8_storage,
    pop_scales,
    read_scales,
    weight_keys,
)
from app.inference.checkpoints.weights import SafetensorsHeader, assign_weights, load_tensors, read_header
from app.inference.networks.controlnet import (
    CONTROL_TYPE_KEY,
    ControlNet,
    ControlNetConfig,
    check_fits_base,
    controlnet_config_from_shapes,
)
from app.inference.networks.mmdit_config import DEFAULT_HEAD_DIM, MMDiTConfig

log = logging.getLogger(__name__)

_MARKER_KEY = "controlnet_blocks.0.weight"
# Stored by some exports, never used by the Large ControlNet (it takes the base model's position table); the
# reference's loader skips it and ComfyUI loads non-strictly. Everything else must match exactly.
UNUSED_KEYS = frozenset({"pos_embed.pos_embed"})
_SCALAR_DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
}  # fmt: skip


def controlnet_fp8_eligible(module_name: str) -> bool:
    """Linear layers kept in fp8 by the fp8 plans: everything inside the transformer and output blocks."""
    return module_name.startswith(("transformer_blocks.", "controlnet_blocks."))


@dataclass(frozen=True, slots=True)
class ControlNetFile:
    """A ControlNet file read from its header only: where its tensors are and what it is."""

    path: Path
    prefix: str
    config: ControlNetConfig
    params: int
    fp8_params: int  # of which Linear weights fp8 storage holds in one byte
    block_params: int  # one transformer block with its output Linear (what streaming holds at once)
    file_fp8: bool = False  # its block weights are stored in fp8 (they stay fp8 in every plan)


def inspect_controlnet(path: Path, head_dim: int = DEFAULT_HEAD_DIM) -> ControlNetFile:
    """Identify a ControlNet file from its header (no weights read, apart from the `control_type` scalar)."""
    header = read_header(path)
    source = str(header.path)
    prefix = _prefix(header)
    if prefix is None:
        raise UnsupportedModelError(f"{source} is not an SD3.5 ControlNet (no controlnet_blocks found)")
    shapes = {
        k[len(prefix) :]: v.shape
        for k, v in header.tensors.items()
        if k.startswith(prefix)
        and not k.endswith((".scale_weight", ".scale_input"))
        and k != prefix + "scaled_fp8"
    }
    control_type = _read_scalar(header, prefix + CONTROL_TYPE_KEY)
    for key in (CONTROL_TYPE_KEY, *UNUSED_KEYS):
        shapes.pop(key, None)
    cfg = controlnet_config_from_shapes(shapes, control_type, source, head_dim)
    params = sum(int(torch.Size(s).numel()) for s in shapes.values())
    fp8_params = sum(
        int(torch.Size(s).numel())
        for k, s in shapes.items()
        if len(s) == 2 and k.endswith(".weight") and controlnet_fp8_eligible(k)
    )
    block = sum(
        int(torch.Size(s).numel()) for k, s in shapes.items() if k.startswith("transformer_blocks.0.")
    )
    head = sum(int(torch.Size(s).numel()) for k, s in shapes.items() if k.startswith("controlnet_blocks.0."))
    file_fp8 = any(
        info.dtype.startswith("F8")
        for k, info in header.tensors.items()
        if k.startswith(prefix + "transformer_blocks.")
    )
    return ControlNetFile(header.path, prefix, cfg, params, fp8_params, block + head, file_fp8)


def _prefix(header: SafetensorsHeader) -> str | None:
    for key in header.tensors:
        if key.endswith(_MARKER_KEY):
            return key[: -len(_MARKER_KEY)]
    return None


def _read_scalar(header: SafetensorsHeader, key: str) -> int | None:
    """The rounded value of a one-element tensor (the file's `control_type`), or None if absent."""
    info = header.tensors.get(key)
    if info is None:
        return None
    if info.numel != 1 or info.dtype not in _SCALAR_DTYPES:
        raise CheckpointMismatchError(f"{header.path}: '{key}' is not a scalar ({info.dtype} {info.shape})")
    begin, end = info.offsets
    file_path = header.shards[info.shard][0] if header.shards else header.path
    data_start = header.shards[info.shard][1] if header.shards else header.data_start
    try:
        with file_path.open("rb") as f:
            f.seek(data_start + begin)
            raw = f.read(end - begin)
    except OSError as exc:
        raise ModelFileError(f"{file_path}: cannot read the file ({exc})") from None
    value = torch.frombuffer(bytearray(raw), dtype=_SCALAR_DTYPES[info.dtype])
    return round(float(value[0]))


def load_controlnet(
    path: Path,
    *,
    base: MMDiTConfig,
    dtype: torch.dtype,
    device: torch.device | str,
    fp8: bool = False,
) -> ControlNet:
    """Build the ControlNet on `meta` from the file's shapes, check it fits `base`, assign its tensors."""
    file = inspect_controlnet(Path(path), head_dim=base.head_dim)
    source = str(file.path)
    check_fits_base(file.config, base, source)
    header = read_header(file.path)
    has_scales = any(k.startswith(file.prefix) and k.endswith(".scale_weight") for k in header.tensors)
    scales = read_scales(file.path, file.prefix, header) if has_scales else {}
    keep = weight_keys(controlnet_fp8_eligible) if fp8 else None
    reader = Fp8Reader(scales, dtype, keep)
    state = load_tensors(
        file.path,
        file.prefix,
        convert=reader,
        header=header,
        skip=lambda k: k == CONTROL_TYPE_KEY or k in UNUSED_KEYS,
    )
    with torch.device("meta"):
        model = ControlNet(file.config)
    what = "SD3.5 Large ControlNet"
    if fp8:
        assign_with_fp8_storage(
            model, state, eligible=controlnet_fp8_eligible, scales=reader.scales, source=source, what=what,
            dtype=dtype, device=device,
        )  # fmt: skip
    else:
        pop_scales(state)
        assign_weights(model, state, source=source, what=what, dtype=dtype, device=device)
    log.info("ControlNet from %s: %s, %s%s", source, file.config, dtype, ", fp8 storage" if fp8 else "")
    return model.eval().requires_grad_(False)
