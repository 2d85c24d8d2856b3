"""Config inference and full-size structure on the `meta` device, against the real key manifests."""

import pytest
import torch

from app.inference.networks.mmdit import MMDiT
from app.inference.networks.mmdit_config import mmdit_config_from_shapes
from tests.factory.mmdit_model import PREFIX, TINY_LARGE, TINY_MEDIUM, real_manifest, tiny_mmdit_shapes


def _real_shapes(variant):
    m = real_manifest(variant)
    return {k["key"][len(PREFIX) :]: tuple(k["shape"]) for k in m["keys"]}, m


@pytest.mark.parametrize(
    ("variant", "depth", "hidden", "heads", "pos", "dual", "params"),
    [
        ("large", 38, 2432, 38, 192, (), 8_146_280_768),
        ("medium", 24, 1536, 24, 384, tuple(range(13)), 2_469_663_936),
    ],
)
def test_full_size_model_on_meta_matches_every_key(variant, depth, hidden, heads, pos, dual, params):
    shapes, manifest = _real_shapes(variant)
    cfg = mmdit_config_from_shapes(shapes)
    assert (cfg.depth, cfg.hidden_size, cfg.num_heads, cfg.pos_embed_max_size) == (depth, hidden, heads, pos)
    assert cfg.x_block_self_attn_layers == dual
    assert (cfg.adm_in_channels, cfg.context_in_channels, cfg.qk_norm) == (2048, 4096, True)
    with torch.device("meta"):
        model = MMDiT(cfg)
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert ours == shapes
    total = sum(v.numel() for v in model.state_dict().values())
    assert total == params == manifest["num_params"]
    print(f"{variant}: {len(ours)} tensors, {total:,} parameters (pos_embed included)")


def test_max_image_side_from_pos_embed():
    large = mmdit_config_from_shapes(_real_shapes("large")[0])
    medium = mmdit_config_from_shapes(_real_shapes("medium")[0])
    assert (large.max_image_side, medium.max_image_side) == (3072, 6144)


@pytest.mark.parametrize(("variant", "spec"), [("large", TINY_LARGE), ("medium", TINY_MEDIUM)])
def test_tiny_shapes_infer_tiny_config(variant, spec):
    cfg = mmdit_config_from_shapes(tiny_mmdit_shapes(variant, spec))
    assert (cfg.depth, cfg.hidden_size, cfg.num_heads) == (
        spec.depth,
        spec.hidden,
        spec.hidden // spec.head_dim,
    )
    assert cfg.x_block_self_attn_layers == ((0, 1, 2, 3, 4) if variant == "medium" else ())
    assert (cfg.adm_in_channels, cfg.context_in_channels) == (spec.pooled, spec.context)
