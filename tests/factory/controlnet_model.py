"""Tiny random-weight SD3.5 Large ControlNets in the official key layout (SD35_ADDONS.md §2).

`sd3.5_large_controlnet_*.safetensors` keys, no prefix: time_text_embed.{timestep,text}_embedder.linear_{1,2},
pos_embed.proj, pos_embed_input.proj, transformer_blocks.N.{adaLN_modulation.1, attn.qkv, attn.proj, mlp.fc1,
mlp.fc2}, controlnet_blocks.N and the scalar control_type (0 blur, 1 canny, 2 depth). Widths follow the tiny
Large MMDiT (hidden 64, pooled 192); the output Linears are random and non-zero (a trained ControlNet's are).
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from safetensors.torch import save_file

from tests.factory.mmdit_model import TINY_LARGE, TinyMMDiTSpec

CONTROL_TYPES = {"blur": 0, "canny": 1, "depth": 2}


def controlnet_shapes(hidden: int, pooled: int, blocks: int, patch: int = 2) -> dict[str, tuple[int, ...]]:
    d = hidden
    shapes: dict[str, tuple[int, ...]] = {
        "time_text_embed.timestep_embedder.linear_1.weight": (d, 256),
        "time_text_embed.timestep_embedder.linear_1.bias": (d,),
        "time_text_embed.timestep_embedder.linear_2.weight": (d, d),
        "time_text_embed.timestep_embedder.linear_2.bias": (d,),
        "time_text_embed.text_embedder.linear_1.weight": (d, pooled),
        "time_text_embed.text_embedder.linear_1.bias": (d,),
        "time_text_embed.text_embedder.linear_2.weight": (d, d),
        "time_text_embed.text_embedder.linear_2.bias": (d,),
        "pos_embed.proj.weight": (d, 16, patch, patch),
        "pos_embed.proj.bias": (d,),
        "pos_embed_input.proj.weight": (d, 16, patch, patch),
        "pos_embed_input.proj.bias": (d,),
    }
    for i in range(blocks):
        b = f"transformer_blocks.{i}."
        shapes |= {
            b + "adaLN_modulation.1.weight": (6 * d, d),
            b + "adaLN_modulation.1.bias": (6 * d,),
            b + "attn.qkv.weight": (3 * d, d),
            b + "attn.qkv.bias": (3 * d,),
            b + "attn.proj.weight": (d, d),
            b + "attn.proj.bias": (d,),
            b + "mlp.fc1.weight": (4 * d, d),
            b + "mlp.fc1.bias": (4 * d,),
            b + "mlp.fc2.weight": (d, 4 * d),
            b + "mlp.fc2.bias": (d,),
            f"controlnet_blocks.{i}.weight": (d, d),
            f"controlnet_blocks.{i}.bias": (d,),
        }
    return shapes


def tiny_controlnet_state(
    *,
    blocks: int = 2,
    control_type: str | None = "canny",
    spec: TinyMMDiTSpec = TINY_LARGE,
    seed: int = 0,
    dtype: torch.dtype = torch.float16,
) -> dict[str, torch.Tensor]:
    """Random weights scaled so activations stay O(1) and every output is non-zero."""
    gen = torch.Generator().manual_seed(seed)
    state: dict[str, torch.Tensor] = {}
    for key, shape in sorted(controlnet_shapes(spec.hidden, spec.pooled, blocks).items()):
        if key.endswith(".bias"):
            t = 0.02 * torch.randn(shape, generator=gen)
        else:
            t = torch.randn(shape, generator=gen) / math.sqrt(math.prod(shape[1:]))
        state[key] = t.to(dtype)
    if control_type is not None:
        state["control_type"] = torch.tensor(float(CONTROL_TYPES[control_type]), dtype=dtype)
    return state


def write_controlnet(path: Path, state: dict[str, torch.Tensor] | None = None, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(state if state is not None else tiny_controlnet_state(**kw), str(path))
    return path
