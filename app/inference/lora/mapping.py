"""Where each LoRA layer lands in our networks (SD35_ADDONS.md §1.2).

Our MMDiT keeps Stability's checkpoint names (fused `qkv`, `adaLN_modulation.1`, ...), which kohya files use
with `.` written as `_`. diffusers/PEFT and OneTrainer name diffusers' `SD3Transformer2DModel` modules instead:
their q / k / v are row thirds of our fused qkv, and the final layer's (and the last block's context) adaLN rows
are (scale, shift) where ours are (shift, scale). A `Target` records both facts, so one low-rank update can be
placed into a slice of a fused weight, with its rows swapped where the layouts differ.

The tables are built from the loaded networks themselves (their Linear/Conv modules), so an MMDiT-X's `attn2`
layers, the pre-only last block and the text encoders' own module names are covered without lists per variant.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from app.inference.checkpoints.conversion import _BLOCK_COPY, _BLOCK_QKV, _TOP  # the diffusers <-> ours names
from app.inference.lora.formats import LoraLayer, Network
from app.inference.networks.mmdit import MMDiT


@dataclass(frozen=True, slots=True)
class Target:
    """A module of one of our networks that a LoRA layer updates; `rows` (start, stop) of its weight when the
    layer is one part of a fused projection; `swap`: the layer's output rows are diffusers' (scale, shift)."""

    network: Network
    module: str
    rows: tuple[int, int] | None = None
    swap: bool = False


def _weighted_modules(model: nn.Module) -> dict[str, nn.Module]:
    """Modules a LoRA can adapt: those with a 2-D (Linear) or 4-D (Conv) weight of their own."""
    out = {}
    for name, module in model.named_modules():
        weight = getattr(module, "weight", None)
        if isinstance(weight, torch.Tensor) and weight.ndim in (2, 4) and name:
            out[name] = module
    return out


def _add(table: dict[str, Target], name: str, target: Target) -> None:
    table.setdefault(name, target)
    table.setdefault(name.replace(".", "_"), target)


def mmdit_targets(model: MMDiT) -> dict[str, Target]:
    """Every name a LoRA may give an MMDiT layer (ours and diffusers', dotted and underscored) -> its Target."""
    modules = _weighted_modules(model)
    table: dict[str, Target] = {}
    for name in modules:
        _add(table, name, Target("mmdit", name))
    h = model.cfg.hidden_size
    last = model.cfg.depth - 1
    for diffusers, ours in _TOP.items():
        if ours in modules:
            _add(table, diffusers, Target("mmdit", ours))
    _add(table, "norm_out.linear", Target("mmdit", "final_layer.adaLN_modulation.1", swap=True))
    for i in range(model.cfg.depth):
        block = f"joint_blocks.{i}."
        for diffusers, ours in _BLOCK_COPY.items():
            if block + ours in modules:
                swap = diffusers == "norm1_context.linear" and i == last  # AdaLayerNormContinuous there
                _add(table, f"transformer_blocks.{i}.{diffusers}", Target("mmdit", block + ours, swap=swap))
        for ours, parts in _BLOCK_QKV.items():
            if block + ours not in modules:
                continue
            for n, part in enumerate(parts):  # q, k, v: row thirds of the fused weight
                target = Target("mmdit", block + ours, rows=(n * h, (n + 1) * h))
                _add(table, f"transformer_blocks.{i}.{part}", target)
    return table


def text_encoder_targets(network: Network, model: nn.Module) -> dict[str, Target]:
    """CLIP / T5 module names (with or without CLIP's `text_model.`, dotted or underscored) -> Target."""
    table: dict[str, Target] = {}
    for name in _weighted_modules(model):
        target = Target(network, name)
        _add(table, name, target)
        if network != "t5":
            _add(table, name.removeprefix("text_model."), target)
            _add(table, "text_model." + name.removeprefix("text_model."), target)
    return table


def resolve(layer: LoraLayer, tables: dict[Network, dict[str, Target]]) -> Target | None:
    """The Target of a LoRA layer, or None when the network is not loaded or has no such module."""
    table = tables.get(layer.network)
    if table is None:
        return None
    return table.get(layer.name)
