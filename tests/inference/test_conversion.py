"""diffusers-layout -> our layout (SD35_MODEL.md §5.4), checked against diffusers' own single-file converters:
ours(diffusers(x)) must give back x exactly, for Large and Medium transformers and the VAE, at tiny and at
real (meta-device) sizes."""

from __future__ import annotations

import pytest
import torch

from app.inference.api.errors import CheckpointMismatchError
from app.inference.checkpoints.conversion import (
    convert_state,
    is_diffusers_transformer,
    is_diffusers_vae,
    recipe_shapes,
    transformer_recipes,
    vae_recipes,
)
from tests.factory.mmdit_model import PREFIX, tiny_mmdit_state
from tests.factory.sparse import manifest
from tests.factory.vae_model import TINY_BLOCK_OUT_CHANNELS, write_tiny_vae

VAE_CONFIG = {
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
    "block_out_channels": list(TINY_BLOCK_OUT_CHANNELS),
    "layers_per_block": 2,
    "latent_channels": 16,
}


def _to_diffusers_transformer(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    from diffusers.loaders.single_file_utils import convert_sd3_transformer_checkpoint_to_diffusers

    return convert_sd3_transformer_checkpoint_to_diffusers({PREFIX + k: v.clone() for k, v in state.items()})


@pytest.mark.parametrize("family", ["large", "medium"])
def test_transformer_round_trip_through_diffusers(family: str) -> None:
    ours = {k[len(PREFIX) :]: v for k, v in tiny_mmdit_state(family, dtype=torch.float32).items()}
    theirs = _to_diffusers_transformer(ours)
    assert is_diffusers_transformer(theirs)
    recipes = transformer_recipes(theirs)
    shapes = recipe_shapes(recipes, {k: tuple(v.shape) for k, v in theirs.items()})
    back = convert_state(recipes, dict(theirs))
    assert set(back) == set(ours)
    assert shapes == {k: tuple(v.shape) for k, v in ours.items()}
    for key, value in ours.items():
        assert torch.equal(back[key], value), key


def test_adaln_halves_are_swapped_only_where_diffusers_swaps_them() -> None:
    ours = {k[len(PREFIX) :]: v for k, v in tiny_mmdit_state("large", dtype=torch.float32).items()}
    theirs = _to_diffusers_transformer(ours)
    last = max(int(k.split(".")[1]) for k in ours if k.startswith("joint_blocks."))
    final = ours["final_layer.adaLN_modulation.1.weight"]
    assert not torch.equal(theirs["norm_out.linear.weight"], final)  # diffusers stores (scale, shift)
    assert torch.equal(theirs["norm_out.linear.weight"], torch.cat(final.chunk(2)[::-1]))
    key = f"transformer_blocks.{last}.norm1_context.linear.weight"
    ours_last = ours[f"joint_blocks.{last}.context_block.adaLN_modulation.1.weight"]
    assert torch.equal(theirs[key], torch.cat(ours_last.chunk(2)[::-1]))
    first = ours["joint_blocks.0.context_block.adaLN_modulation.1.weight"]  # not the last block: no swap
    assert torch.equal(theirs["transformer_blocks.0.norm1_context.linear.weight"], first)


@pytest.mark.parametrize("variant", ["sd3.5_large", "sd3.5_medium"])
def test_real_size_names_and_shapes_round_trip(variant: str) -> None:
    """The real 923 / 665 tensors (meta tensors: no memory), through diffusers and back, header-style."""
    real = {k[len(PREFIX) :]: s for k, s in manifest(variant).items()}
    with torch.device("meta"):
        theirs = _to_diffusers_transformer({k: torch.empty(s) for k, s in real.items()})
    shapes = {k: tuple(v.shape) for k, v in theirs.items()}
    assert recipe_shapes(transformer_recipes(shapes), shapes) == real


def test_vae_round_trip_through_diffusers() -> None:
    from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint

    state = write_tiny_vae(None, dtype=torch.float32)
    ours = {k[len("first_stage_model.") :]: v for k, v in state.items()}
    theirs = convert_ldm_vae_checkpoint({k: v.clone() for k, v in state.items()}, VAE_CONFIG)
    assert is_diffusers_vae(theirs) and not is_diffusers_vae(ours)
    recipes = vae_recipes(theirs)
    assert recipe_shapes(recipes, {k: tuple(v.shape) for k, v in theirs.items()}) == {
        k: tuple(v.shape) for k, v in ours.items()
    }
    back = convert_state(recipes, dict(theirs))
    assert set(back) == set(ours)
    for key, value in ours.items():
        assert torch.equal(back[key], value), key


def test_legacy_diffusers_vae_attention_names() -> None:
    """Old diffusers VAEs name the mid-block attention query/key/value/proj_attn."""
    keys = {
        "decoder.up_blocks.0.resnets.0.conv1.weight": (4, 4, 3, 3),
        "decoder.mid_block.attentions.0.query.weight": (8, 8),
        "decoder.mid_block.attentions.0.proj_attn.bias": (8,),
    }
    shapes = recipe_shapes(vae_recipes(keys), keys)
    assert shapes["decoder.mid.attn_1.q.weight"] == (8, 8, 1, 1)
    assert shapes["decoder.mid.attn_1.proj_out.bias"] == (8,)
    assert "decoder.up.0.block.0.conv1.weight" in shapes  # one level: index 1-1-0


def test_unknown_diffusers_names_are_reported_with_the_file() -> None:
    qkv = {f"transformer_blocks.0.attn.to_{p}.weight" for p in "qkv"}
    keys = {"pos_embed.proj.weight", *qkv, "transformer_blocks.0.lora_A.weight"}
    with pytest.raises(CheckpointMismatchError, match=r"x\.safetensors.*lora_A"):
        transformer_recipes(keys, "x.safetensors")


def test_q_without_k_and_v_is_refused() -> None:
    keys = {"pos_embed.proj.weight", "transformer_blocks.0.attn.to_q.weight"}
    with pytest.raises(CheckpointMismatchError, match="no matching k and v"):
        transformer_recipes(keys, "t.safetensors")
