"""Tiny LoRA files in every key convention of SD35_ADDONS.md §1.1, and the checkpoints they should amount to.

`write_lora` writes random down/up matrices for a chosen list of layers, named as the convention names them,
and returns the factors with the tensor each one updates *in the convention's own space*: our checkpoint names
for kohya-style files, diffusers' `SD3Transformer2DModel` names for diffusers-style files, the text encoder files'
names for text-encoder layers. `merged_mmdit_state` / `merged_text_state` then merge `W + s·(alpha/r)·B@A` into a
base state by those names; diffusers-named deltas are merged in diffusers' own layout (converted with diffusers'
converter) and brought back with our model loader's converter. None of this uses the LoRA loader's mapping.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import save_file

from tests.factory.mmdit_model import PREFIX

# Convention -> (network prefix, naming space, dotted?, (down suffix, up suffix), alpha as a tensor?)
_LINEAR_LAYER = (".lora_linear_layer.down.weight", ".lora_linear_layer.up.weight")
_PEFT_DEFAULT = (".lora_A.default.weight", ".lora_B.default.weight")
CONVENTIONS: dict[str, tuple[str, str, bool, tuple[str, str], bool]] = {
    "kohya": ("lora_unet_", "ours", False, (".lora_down.weight", ".lora_up.weight"), True),
    "comfy": ("diffusion_model.", "ours", True, (".lora.down.weight", ".lora.up.weight"), True),
    "peft": ("transformer.", "diffusers", True, (".lora_A.weight", ".lora_B.weight"), False),
    "peft_default": ("base_model.model.", "diffusers", True, _PEFT_DEFAULT, True),
    "onetrainer": ("lora_transformer_", "diffusers", False, (".lora_down.weight", ".lora_up.weight"), True),
    "lycoris": ("lycoris_", "diffusers", False, (".lora_down.weight", ".lora_up.weight"), True),
    "diffusers_old": ("transformer.", "diffusers", True, _LINEAR_LAYER, True),
    "attn_procs": ("transformer.", "diffusers", True, ("_lora.down.weight", "_lora.up.weight"), True),
}  # fmt: skip
TE_CONVENTIONS = {
    "kohya": {"clip_l": "lora_te1_", "clip_g": "lora_te2_", "t5": "lora_te3_"},
    "peft": {"clip_l": "text_encoder.", "clip_g": "text_encoder_2.", "t5": "text_encoder_3."},
}


def ours_layers(variant: str, depth: int) -> list[str]:
    """Layers in our (checkpoint) names: fused qkv, proj, MLP, adaLN (a pre-only last block's included)."""
    last = depth - 1
    names = [
        "joint_blocks.0.x_block.attn.qkv",
        "joint_blocks.0.context_block.attn.proj",
        "joint_blocks.1.x_block.mlp.fc1",
        "joint_blocks.1.context_block.mlp.fc2",
        "joint_blocks.0.x_block.adaLN_modulation.1",
        f"joint_blocks.{last}.context_block.adaLN_modulation.1",
        f"joint_blocks.{last}.context_block.attn.qkv",
        "final_layer.adaLN_modulation.1",
        "final_layer.linear",
        "context_embedder",
        "t_embedder.mlp.0",
    ]
    if variant == "medium":
        names += ["joint_blocks.0.x_block.attn2.qkv", "joint_blocks.1.x_block.attn2.proj"]
    return names


def diffusers_layers(variant: str, depth: int) -> list[str]:
    """Layers in diffusers' names: split q/k/v (row thirds of ours), the swapped adaLN layers, the embedders."""
    last = depth - 1
    names = [
        "transformer_blocks.0.attn.to_q",
        "transformer_blocks.0.attn.to_v",
        "transformer_blocks.1.attn.add_k_proj",
        "transformer_blocks.0.attn.to_out.0",
        "transformer_blocks.0.attn.to_add_out",
        "transformer_blocks.1.ff.net.0.proj",
        "transformer_blocks.1.ff_context.net.2",
        "transformer_blocks.0.norm1.linear",
        "transformer_blocks.0.norm1_context.linear",
        f"transformer_blocks.{last}.norm1_context.linear",
        "norm_out.linear",
        "proj_out",
        "context_embedder",
        "time_text_embed.text_embedder.linear_1",
    ]
    if variant == "medium":
        names += ["transformer_blocks.0.attn2.to_k", "transformer_blocks.1.attn2.to_out.0"]
    return names


TE_LAYERS = {
    "clip_l": ["text_model.encoder.layers.0.self_attn.q_proj", "text_model.encoder.layers.1.mlp.fc1"],
    "clip_g": [
        "text_model.encoder.layers.0.self_attn.out_proj",
        "text_model.encoder.layers.1.self_attn.v_proj",
    ],
    "t5": ["encoder.block.0.layer.0.SelfAttention.q", "encoder.block.1.layer.1.DenseReluDense.wi_0"],
}


@dataclass
class Factor:
    space: str  # "ours" | "diffusers" | "clip_l" | "clip_g" | "t5"
    module: str  # the updated module, named in `space`
    down: torch.Tensor  # (r, in)
    up: torch.Tensor  # (out, r)
    alpha: float

    def delta(self, strength: float) -> torch.Tensor:
        return strength * (self.alpha / self.down.shape[0]) * (self.up.double() @ self.down.double())


@dataclass
class TinyLora:
    path: Path
    factors: list[Factor] = field(default_factory=list)
    keys: dict[str, torch.Tensor] = field(default_factory=dict)


def write_lora(
    path: Path,
    convention: str,
    shapes: dict[str, dict[str, tuple[int, ...]]],
    *,
    variant: str = "large",
    depth: int = 3,
    rank: int = 4,
    alpha: float | None = 2.0,
    seed: int = 0,
    te: tuple[str, ...] = (),
    layers: list[str] | None = None,
    extra: dict[str, torch.Tensor] | None = None,
    metadata: dict[str, str] | None = None,
) -> TinyLora:
    """A LoRA in `convention`. `shapes[space][module]` is the weight shape of each module (for the factors' sizes);
    `te`: text encoders to adapt too (kohya `lora_te*_` for kohya-style, PEFT `text_encoder*.` otherwise)."""
    prefix, space, _dotted, (down_sfx, up_sfx), alpha_tensor = CONVENTIONS[convention]
    gen = torch.Generator().manual_seed(seed)
    lora = TinyLora(Path(path))
    names = layers or (ours_layers if space == "ours" else diffusers_layers)(variant, depth)
    entries = [(space, prefix, n) for n in names]
    te_style = "kohya" if convention in ("kohya", "onetrainer", "lycoris") else "peft"
    for network in te:
        entries += [(network, TE_CONVENTIONS[te_style][network], n) for n in TE_LAYERS[network]]
    for where, key_prefix, module in entries:
        out_dim, in_dim = shapes[where][module][:2]
        down = torch.randn(rank, in_dim, generator=gen) / in_dim**0.5
        up = torch.randn(out_dim, rank, generator=gen) * 0.3
        key = key_prefix + (module.replace(".", "_") if key_prefix.endswith("_") else module)
        lora.keys[key + down_sfx] = down
        lora.keys[key + up_sfx] = up
        a = float(rank) if alpha is None else alpha
        if alpha is not None and (alpha_tensor or where != space):
            lora.keys[key + ".alpha"] = torch.tensor(alpha)
        lora.factors.append(Factor(where, module, down, up, a))
    lora.keys.update(extra or {})
    meta = {"format": "pt", **(metadata or {})}
    if not alpha_tensor and alpha is not None:  # PEFT: alpha in diffusers' adapter metadata
        meta["lora_adapter_metadata"] = json.dumps({"transformer.r": rank, "transformer.lora_alpha": alpha})
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in lora.keys.items()}, str(path), metadata=meta)
    return lora


def mmdit_shapes(state: dict[str, torch.Tensor]) -> dict[str, dict[str, tuple[int, ...]]]:
    """Weight shapes per module in our names and in diffusers' names (from diffusers' own converter)."""
    from diffusers.loaders.single_file_utils import convert_sd3_transformer_checkpoint_to_diffusers

    ours = {
        k[len(PREFIX) : -len(".weight")]: tuple(v.shape) for k, v in state.items() if k.endswith(".weight")
    }
    mmdit = {k: v for k, v in state.items() if k.startswith(PREFIX)}
    converted = convert_sd3_transformer_checkpoint_to_diffusers(mmdit)
    theirs = {k[: -len(".weight")]: tuple(v.shape) for k, v in converted.items() if k.endswith(".weight")}
    return {"ours": ours, "diffusers": theirs}


def merged_mmdit_state(
    state: dict[str, torch.Tensor], loras: list[tuple[TinyLora, float]]
) -> dict[str, torch.Tensor]:
    """Our-layout state (prefix kept) with every LoRA merged: ours-named deltas directly, diffusers-named ones in
    diffusers' layout, converted back with our loader's converter."""
    from diffusers.loaders.single_file_utils import convert_sd3_transformer_checkpoint_to_diffusers

    from app.inference.checkpoints.conversion import convert_state, transformer_recipes

    out = {k: v.double() if v.is_floating_point() else v for k, v in state.items()}
    for lora, s in loras:
        for f in lora.factors:
            if f.space == "ours":
                out[PREFIX + f.module + ".weight"] += f.delta(s)
    if any(f.space == "diffusers" for lora, _ in loras for f in lora.factors):
        mmdit = {k: v for k, v in out.items() if k.startswith(PREFIX)}
        d = convert_sd3_transformer_checkpoint_to_diffusers(mmdit)
        for lora, s in loras:
            for f in lora.factors:
                if f.space == "diffusers":
                    d[f.module + ".weight"] = d[f.module + ".weight"] + f.delta(s)
        back = convert_state(transformer_recipes(d.keys()), d)
        out.update({PREFIX + k: v for k, v in back.items()})
    return {k: v.to(state[k].dtype) if v.is_floating_point() else v for k, v in out.items()}


def merged_text_state(
    state: dict[str, torch.Tensor], network: str, loras: list[tuple[TinyLora, float]]
) -> dict[str, torch.Tensor]:
    out = dict(state)
    for lora, s in loras:
        for f in lora.factors:
            if f.space == network:
                key = f.module + ".weight"
                out[key] = (out[key].double() + f.delta(s)).to(state[key].dtype)
    return out
