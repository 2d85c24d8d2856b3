"""diffusers-format SD3 transformer and VAE -> our (= Stability's single-file) tensor names, at load time.

The rules are SD35_MODEL.md §5.4 read backwards: diffusers splits each fused `qkv` into `to_q/to_k/to_v`
(thirds of the rows), stores the final / last-context adaLN rows as (scale, shift) instead of (shift, scale),
renames the VAE's blocks and reverses its decoder level order, and keeps the VAE attention as linears instead of
1x1 convs. Each target tensor is described by a `Recipe` (sources + operation), so the same table serves
header-only checks (`recipe_shapes`) and loading (`apply_recipes`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Literal

import torch

from app.inference.api.errors import CheckpointMismatchError

Op = Literal["copy", "cat", "swap", "conv1x1"]


@dataclass(frozen=True, slots=True)
class Recipe:
    """How one tensor in our layout is made from the diffusers tensors `sources`."""

    target: str
    sources: tuple[str, ...]
    op: Op = "copy"  # cat: rows concatenated; swap: row halves exchanged; conv1x1: (C, C) -> (C, C, 1, 1)


# ----------------------------------------------------------------------------------------------------
# Transformer
# ----------------------------------------------------------------------------------------------------

_TOP = {
    "pos_embed.pos_embed": "pos_embed",
    "pos_embed.proj": "x_embedder.proj",
    "time_text_embed.timestep_embedder.linear_1": "t_embedder.mlp.0",
    "time_text_embed.timestep_embedder.linear_2": "t_embedder.mlp.2",
    "time_text_embed.text_embedder.linear_1": "y_embedder.mlp.0",
    "time_text_embed.text_embedder.linear_2": "y_embedder.mlp.2",
    "context_embedder": "context_embedder",
    "proj_out": "final_layer.linear",
}
# Inside transformer_blocks.{i}: diffusers module -> our module (one-to-one copies).
_BLOCK_COPY = {
    "attn.norm_q": "x_block.attn.ln_q",
    "attn.norm_k": "x_block.attn.ln_k",
    "attn.norm_added_q": "context_block.attn.ln_q",
    "attn.norm_added_k": "context_block.attn.ln_k",
    "attn.to_out.0": "x_block.attn.proj",
    "attn.to_add_out": "context_block.attn.proj",
    "attn2.norm_q": "x_block.attn2.ln_q",
    "attn2.norm_k": "x_block.attn2.ln_k",
    "attn2.to_out.0": "x_block.attn2.proj",
    "norm1.linear": "x_block.adaLN_modulation.1",
    "norm1_context.linear": "context_block.adaLN_modulation.1",
    "ff.net.0.proj": "x_block.mlp.fc1",
    "ff.net.2": "x_block.mlp.fc2",
    "ff_context.net.0.proj": "context_block.mlp.fc1",
    "ff_context.net.2": "context_block.mlp.fc2",
}
# Fused projections: our qkv <- diffusers (q, k, v).
_BLOCK_QKV = {
    "x_block.attn.qkv": ("attn.to_q", "attn.to_k", "attn.to_v"),
    "context_block.attn.qkv": ("attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj"),
    "x_block.attn2.qkv": ("attn2.to_q", "attn2.to_k", "attn2.to_v"),
}
_QKV_PART = {part: (target, n) for target, parts in _BLOCK_QKV.items() for n, part in enumerate(parts)}
_BLOCK_KEY = re.compile(r"^transformer_blocks\.(\d+)\.(.+)\.(weight|bias)$")
_PARAM_KEY = re.compile(r"^(.+)\.(weight|bias)$")


def is_diffusers_transformer(keys: Iterable[str]) -> bool:
    names = set(keys)
    return "pos_embed.proj.weight" in names and "transformer_blocks.0.attn.to_q.weight" in names


def transformer_recipes(keys: Iterable[str], source: str = "transformer") -> list[Recipe]:
    """Recipes for every tensor of our MMDiT layout from the diffusers `SD3Transformer2DModel` key names."""
    names = set(keys)
    blocks = sorted({int(m.group(1)) for k in names if (m := _BLOCK_KEY.match(k))})
    last = blocks[-1] if blocks else -1
    recipes: list[Recipe] = []
    used: set[str] = set()
    for key in sorted(names):
        if m := _BLOCK_KEY.match(key):
            i, module, kind = int(m.group(1)), m.group(2), m.group(3)
            prefix = f"joint_blocks.{i}."
            if module in _QKV_PART:
                target, position = _QKV_PART[module]
                if position == 0:  # one recipe per (q, k, v) triple, made when its q is seen
                    srcs = tuple(f"transformer_blocks.{i}.{p}.{kind}" for p in _BLOCK_QKV[target])
                    if not all(s in names for s in srcs):
                        raise CheckpointMismatchError(f"{source}: {key} has no matching k and v projections")
                    recipes.append(Recipe(f"{prefix}{target}.{kind}", srcs, "cat"))
                    used.update(srcs)
                continue
            if module in _BLOCK_COPY:
                # The last block's context adaLN is diffusers' AdaLayerNormContinuous: (scale, shift) rows.
                op: Op = "swap" if module == "norm1_context.linear" and i == last else "copy"
                recipes.append(Recipe(f"{prefix}{_BLOCK_COPY[module]}.{kind}", (key,), op))
                used.add(key)
            continue
        if key == "pos_embed.pos_embed":
            recipes.append(Recipe("pos_embed", (key,)))
            used.add(key)
            continue
        m = _PARAM_KEY.match(key)
        if m and m.group(1) in _TOP:
            recipes.append(Recipe(f"{_TOP[m.group(1)]}.{m.group(2)}", (key,)))
            used.add(key)
        elif m and m.group(1) == "norm_out.linear":
            recipes.append(Recipe(f"final_layer.adaLN_modulation.1.{m.group(2)}", (key,), "swap"))
            used.add(key)
    _check_all_used(names, used, source, "diffusers SD3 transformer")
    return recipes


# ----------------------------------------------------------------------------------------------------
# VAE
# ----------------------------------------------------------------------------------------------------

_VAE_RULES: tuple[tuple[re.Pattern[str], Callable[[re.Match[str], int], str]], ...] = (
    (re.compile(r"^(encoder|decoder)\.(conv_in|conv_out)\.(.+)$"), lambda m, n: f"{m[1]}.{m[2]}.{m[3]}"),
    (re.compile(r"^(encoder|decoder)\.conv_norm_out\.(.+)$"), lambda m, n: f"{m[1]}.norm_out.{m[2]}"),
    (
        re.compile(r"^encoder\.down_blocks\.(\d+)\.resnets\.(\d+)\.(.+)$"),
        lambda m, n: f"encoder.down.{m[1]}.block.{m[2]}.{_resnet(m[3])}",
    ),
    (
        re.compile(r"^encoder\.down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.+)$"),
        lambda m, n: f"encoder.down.{m[1]}.downsample.conv.{m[2]}",
    ),
    (
        re.compile(r"^decoder\.up_blocks\.(\d+)\.resnets\.(\d+)\.(.+)$"),
        lambda m, n: f"decoder.up.{n - 1 - int(m[1])}.block.{m[2]}.{_resnet(m[3])}",
    ),
    (
        re.compile(r"^decoder\.up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.+)$"),
        lambda m, n: f"decoder.up.{n - 1 - int(m[1])}.upsample.conv.{m[2]}",
    ),
    (
        re.compile(r"^(encoder|decoder)\.mid_block\.resnets\.([01])\.(.+)$"),
        lambda m, n: f"{m[1]}.mid.block_{int(m[2]) + 1}.{_resnet(m[3])}",
    ),
    (
        re.compile(r"^(encoder|decoder)\.mid_block\.attentions\.0\.group_norm\.(.+)$"),
        lambda m, n: f"{m[1]}.mid.attn_1.norm.{m[2]}",
    ),
)
# Attention projections: diffusers linear (current and legacy names) -> our 1x1 conv.
_VAE_ATTN = re.compile(
    r"^(encoder|decoder)\.mid_block\.attentions\.0\.(to_q|to_k|to_v|to_out\.0|query|key|value|proj_attn)\.(.+)$"
)
_ATTN_NAMES = {
    "to_q": "q",
    "to_k": "k",
    "to_v": "v",
    "to_out.0": "proj_out",
    "query": "q",
    "key": "k",
    "value": "v",
    "proj_attn": "proj_out",
}


def _resnet(rest: str) -> str:
    return rest.replace("conv_shortcut.", "nin_shortcut.")


def is_diffusers_vae(keys: Iterable[str]) -> bool:
    return any(k.startswith(("decoder.up_blocks.", "encoder.down_blocks.")) for k in keys)


def vae_recipes(keys: Iterable[str], source: str = "VAE") -> list[Recipe]:
    """Recipes for our (LDM) VAE layout from diffusers `AutoencoderKL` key names."""
    names = set(keys)
    levels = len({k.split(".")[2] for k in names if k.startswith("decoder.up_blocks.")})
    recipes: list[Recipe] = []
    used: set[str] = set()
    for key in sorted(names):
        if m := _VAE_ATTN.match(key):
            op: Op = "conv1x1" if m[3] == "weight" else "copy"
            recipes.append(Recipe(f"{m[1]}.mid.attn_1.{_ATTN_NAMES[m[2]]}.{m[3]}", (key,), op))
            used.add(key)
            continue
        for pattern, rename in _VAE_RULES:
            if m := pattern.match(key):
                recipes.append(Recipe(rename(m, levels), (key,)))
                used.add(key)
                break
    _check_all_used(names, used, source, "diffusers SD3 VAE")
    return recipes


# ----------------------------------------------------------------------------------------------------
# Applying recipes
# ----------------------------------------------------------------------------------------------------


def _check_all_used(names: set[str], used: set[str], source: str, what: str) -> None:
    unknown = sorted(names - used)
    if unknown:
        raise CheckpointMismatchError(
            f"{source}: not a {what}: {len(unknown)} tensors with unexpected names (e.g. {', '.join(unknown[:3])})"
        )


def recipe_shapes(
    recipes: Iterable[Recipe], shapes: Mapping[str, tuple[int, ...]]
) -> dict[str, tuple[int, ...]]:
    """Our-layout shapes from the diffusers shapes, without reading any tensor."""
    out: dict[str, tuple[int, ...]] = {}
    for r in recipes:
        first = tuple(shapes[r.sources[0]])
        if r.op == "cat":
            out[r.target] = (sum(shapes[s][0] for s in r.sources), *first[1:])
        elif r.op == "conv1x1":
            out[r.target] = (*first, 1, 1)
        else:
            out[r.target] = first
    return out


def apply_recipe(recipe: Recipe, tensors: list[torch.Tensor]) -> torch.Tensor:
    if recipe.op == "cat":
        widths = {t.shape[1:] for t in tensors}
        if len(widths) != 1:
            raise CheckpointMismatchError(f"{recipe.target}: q, k, v parts have different shapes {widths}")
        return torch.cat(tensors, dim=0)  # rows [q; k; v]
    (t,) = tensors
    if recipe.op == "swap":
        first, second = t.chunk(2, dim=0)  # diffusers (scale, shift) -> ours (shift, scale)
        return torch.cat([second, first], dim=0)
    if recipe.op == "conv1x1":
        return t.reshape(*t.shape, 1, 1)  # (C_out, C_in) -> (C_out, C_in, 1, 1)
    return t


def apply_recipes(
    recipes: Iterable[Recipe], state: dict[str, torch.Tensor]
) -> Iterator[tuple[str, torch.Tensor]]:
    """Yield (our name, tensor), consuming `state` as it goes so no source outlives its target."""
    for r in recipes:
        yield r.target, apply_recipe(r, [state.pop(s) for s in r.sources])


def convert_state(recipes: Iterable[Recipe], state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """diffusers state dict -> our layout (`state` is emptied)."""
    return dict(apply_recipes(recipes, state))
