"""Our MMDiT / MMDiT-X against diffusers' SD3Transformer2DModel on the same tiny weights.

The weights are converted with diffusers' own single-file converter, so the test also checks that our module
layout is the checkpoint's (chunk orders, the pre-only last block, the final layer's (shift, scale) order).
"""

import pytest
import torch

from app.inference.checkpoints.weights import assign_weights
from app.inference.networks.mmdit import MMDiT
from app.inference.networks.mmdit_config import mmdit_config_from_shapes
from tests.factory.diffusers_oracle import diffusers_transformer
from tests.factory.mmdit_model import PREFIX, tiny_mmdit_state

diffusers = pytest.importorskip("diffusers")


def _ours(state):
    sd = {k[len(PREFIX) :]: v.float() for k, v in state.items()}
    cfg = mmdit_config_from_shapes({k: tuple(v.shape) for k, v in sd.items()})
    with torch.device("meta"):
        model = MMDiT(cfg)
    return assign_weights(model, sd, source="tiny", what="MMDiT").eval(), cfg


def _rel(a, b):
    return ((a - b).abs().max() / b.abs().max()).item()


@pytest.mark.parametrize("variant", ["large", "medium"])
@pytest.mark.parametrize("skip_layers", [(), (1,)])
def test_forward_matches_diffusers(variant, skip_layers):
    state = tiny_mmdit_state(variant, seed=3)
    ours, cfg = _ours(state)
    theirs = diffusers_transformer(state)
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
