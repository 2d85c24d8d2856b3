"""Loading the MMDiT from its files: the module built on `meta`, tensors assigned (never initialised, never twice).

Every layout and precision ends in the same modules: single-file and all-in-one checkpoints (any key prefix),
diffusers-format transformers (converted to our names as they load, `conversion.py`), fp32 / fp16 /
bf16 / float8_e4m3fn / ComfyUI scaled-fp8 weights (`fp8.py`), sharded files through their index json. With
`fp8=True` the MMDiT's joint-block Linear weights stay (or become) fp8 and are upcast per layer at compute.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from app.inference.api.variants import MMDIT_PREFIX, check_family
from app.inference.checkpoints.conversion import convert_state, transformer_recipes
from app.inference.checkpoints.formats import ComponentFile, mmdit_fp8_eligible
from app.inference.checkpoints.fp8 import (
    Fp8Reader,
    assign_with_fp8_storage,
    pop_scales,
    read_scales,
    weight_keys,
)
from app.inference.checkpoints.weights import assign_weights, load_tensors, read_header
from app.inference.networks.mmdit import MMDiT
from app.inference.networks.mmdit_config import mmdit_config_from_shapes

log = logging.getLogger(__name__)


def load_mmdit(
    path: Path,
    *,
    dtype: torch.dtype,
    device: torch.device | str,
    prefix: str = MMDIT_PREFIX,
    layout: str = "single-file",
    fp8: bool = False,
) -> MMDiT:
    """Build the MMDiT on `meta` from the file's shapes and assign its tensors (converted as they are read).

    `path` may be a single file, an all-in-one checkpoint (with `prefix`), or a diffusers transformer file or
    index (`layout="diffusers"`, prefix ""). fp8 weights are dequantised with their scales, unless `fp8`: then
    the joint blocks' Linear weights are kept in fp8 (16-bit files are quantised per tensor)."""
    header = read_header(path)
    source = str(header.path)
    scales = read_scales(path, prefix, header) if _has_scales(header.tensors, prefix) else {}
    keep = weight_keys(mmdit_fp8_eligible) if fp8 and layout == "single-file" else None
    reader = Fp8Reader(scales, dtype, keep)
    if layout == "diffusers":
        state = load_tensors(path, prefix, convert=reader, header=header)
        pop_scales(state)
        state = convert_state(transformer_recipes(state, source), state)
    else:
        skip = _other_components if prefix == "" else None
        state = load_tensors(path, prefix, convert=reader, header=header, skip=skip)
    shapes = {k: tuple(v.shape) for k, v in state.items() if not k.endswith(("scale_weight", "scale_input"))}
    shapes.pop("scaled_fp8", None)
    check_family(shapes, source, prefix="")
    cfg = mmdit_config_from_shapes(shapes, source)
    with torch.device("meta"):
        model = MMDiT(cfg)
    if fp8:
        assign_with_fp8_storage(
            model, state, eligible=mmdit_fp8_eligible, scales=reader.scales, source=source, what="SD3.5 MMDiT",
            dtype=dtype, device=device,
        )  # fmt: skip
    else:
        pop_scales(state)
        assign_weights(model, state, source=source, what="SD3.5 MMDiT", dtype=dtype, device=device)
    log.info("MMDiT from %s (%s): %s, %s%s", source, layout, cfg, dtype, ", fp8 storage" if fp8 else "")
    return model.eval().requires_grad_(False)


def _has_scales(keys, prefix: str) -> bool:
    return any(k.startswith(prefix) and k.endswith(".scale_weight") for k in keys)


def _other_components(key: str) -> bool:
    """In an MMDiT file without a prefix, the keys that belong to something else."""
    return key.startswith(("first_stage_model.", "text_encoders."))


def load_mmdit_component(
    component: ComponentFile, *, dtype: torch.dtype, device: torch.device | str, fp8: bool = False
) -> MMDiT:
    return load_mmdit(
        component.path, dtype=dtype, device=device, prefix=component.prefix, layout=component.layout, fp8=fp8
    )
