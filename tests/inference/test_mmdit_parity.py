"""Our MMDiT / MMDiT-X against diffusers' SD3Transformer2DModel on the same tiny weights.

The weights are converted with diffusers' own single-file converter, so the test also checks that our module
layout is the checkpoint's (chunk orders, the pre-only last block, the final layer's (shift, scale) order).
"""

import pytest
import torch

from app.inference.mmdit import MMDiT
from app.inference.mmdit_config import mmdit_config_from_shapes
from app.inference.weights import assign_weights
from tests.factory.mmdit_model import PREFIX, tiny_mmdit_state

diffusers = pytest.importorskip("diffusers")
from diffusers import SD3Transformer2DModel  # noqa: E402
from diffusers.loaders.single_file_utils import convert_sd3_transformer_checkpoint_to_diffusers  # noqa: E402


def _ours(state):
    sd = {k[len(PREFIX) :]: v.float() for k, v in state.items()}
    cfg = mmdit_config_from_shapes({k: tuple(v.shape) for k, v in sd.items()})
    with torch.device("meta"):
        model = MMDiT(cfg)
    return assign_weights(model, sd, source="tiny", what="MMDiT").eval(), cfg


def _theirs(state, cfg):
    converted = convert_sd3_transformer_checkpoint_to_diffusers({k: v.float() for k, v in state.items()})
    model = SD3Transformer2DModel(
        sample_size=32,
        patch_size=cfg.patch_size,
        in_channels=cfg.in_channels,
        num_layers=cfg.depth,
        attention_head_dim=cfg.head_dim,
        num_attention_heads=cfg.num_heads,
        joint_attention_dim=cfg.context_in_channels,
        caption_projection_dim=cfg.hidden_size,
        pooled_projection_dim=cfg.adm_in_channels,
        out_channels=cfg.out_channels,
        pos_embed_max_size=cfg.pos_embed_max_size,
        dual_attention_layers=cfg.x_block_self_attn_layers,
        qk_norm="rms_norm",
    )
    missing, unexpected = model.load_state_dict(converted, strict=True), None
    del missing, unexpected
    return model.eval()


def _rel(a, b):
    return ((a - b).abs().max() / b.abs().max()).item()


@pytest.mark.parametrize("variant", ["large", "medium"])
@pytest.mark.parametrize("skip_layers", [(), (1,)])
def test_forward_matches_diffusers(variant, skip_layers):
    state = tiny_mmdit_state(variant, seed=3)
    ours, cfg = _ours(state)
    theirs = _theirs(state, cfg)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 16, 8, 12, generator=gen)  # non-square latent: 4 x 6 patches
    sigma = torch.tensor([0.97, 0.31])
    y = torch.randn(2, cfg.adm_in_channels, generator=gen)
    ctx = torch.randn(2, 154, cfg.context_in_channels, generator=gen)
    with torch.inference_mode():
        v_ours = ours(x, sigma * 1000, y, ctx, skip_layers=skip_layers)
        v_theirs = theirs(
            hidden_states=x,
            encoder_hidden_states=ctx,
            pooled_projections=y,
            timestep=sigma * 1000,
            skip_layers=list(skip_layers) or None,
        ).sample
    assert v_ours.shape == x.shape
    assert _rel(v_ours, v_theirs) < 1e-4
    # The comparison is meaningful only if the output depends on what we vary.
    assert v_ours.abs().max() > 1e-3


def test_skip_layers_change_output():
    state = tiny_mmdit_state("medium", seed=1)
    ours, cfg = _ours(state)
    x = torch.randn(1, 16, 8, 8)
    args = (
        x,
        torch.tensor([500.0]),
        torch.randn(1, cfg.adm_in_channels),
        torch.randn(1, 77, cfg.context_in_channels),
    )
    with torch.inference_mode():
        assert not torch.allclose(ours(*args), ours(*args, skip_layers=(1,)))


def test_pos_embed_crop_is_centred():
    state = tiny_mmdit_state("large", seed=2)
    ours, cfg = _ours(state)
    s = cfg.pos_embed_max_size  # 16
    crop = ours.cropped_pos_embed(4, 6)  # top = 6, left = 5
    table = ours.pos_embed.view(s, s, -1)
    assert torch.equal(crop[0, 0], table[6, 5])
    assert torch.equal(crop[0, 7], table[7, 6])  # token 7 = row 1, column 1
