"""Denoiser step time at SD3.5 Medium width: ours vs diffusers' SD3Transformer2DModel, same weights, same run.

A "step" is one CFG forward (batch 2: positive and negative) at a reduced depth, with real token counts:
image tokens of the chosen size plus 154 text tokens.
"""

from __future__ import annotations

import argparse

import torch

from app.inference.mmdit import MMDiT
from app.inference.weights import assign_weights
from bench.common import median_time, medium_width_config, random_mmdit_state, write_result


def run(
    size: int = 512, depth: int = 4, reps: int = 5, dtype_name: str = "float32", threads: int | None = None
) -> dict:
    from diffusers import SD3Transformer2DModel
    from diffusers.loaders.single_file_utils import convert_sd3_transformer_checkpoint_to_diffusers

    if threads:
        torch.set_num_threads(threads)
    dtype = getattr(torch, dtype_name)
    cfg = medium_width_config(depth=depth, dual=tuple(range(min(2, depth - 1))))
    state = random_mmdit_state(cfg, dtype)
    with torch.device("meta"):
        ours = MMDiT(cfg)
    assign_weights(ours, dict(state), source="bench", what="MMDiT")
    ours.eval()
    theirs = SD3Transformer2DModel(
        sample_size=128,
        patch_size=2,
        in_channels=16,
        num_layers=depth,
        attention_head_dim=64,
        num_attention_heads=24,
        joint_attention_dim=4096,
        caption_projection_dim=1536,
        pooled_projection_dim=2048,
        out_channels=16,
        pos_embed_max_size=cfg.pos_embed_max_size,
        dual_attention_layers=cfg.x_block_self_attn_layers,
        qk_norm="rms_norm",
    )
    converted = convert_sd3_transformer_checkpoint_to_diffusers({k: v.clone() for k, v in state.items()})
    theirs.load_state_dict(converted, strict=True)
    theirs.to(dtype).eval()
    del state, converted

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 16, size // 8, size // 8, generator=gen).to(dtype)
    t = torch.tensor([800.0, 800.0])
    y = torch.randn(2, 2048, generator=gen).to(dtype)
    ctx = torch.randn(2, 154, 4096, generator=gen).to(dtype)

    with torch.inference_mode():
        ours_s, ours_all = median_time(lambda: ours(x, t, y, ctx), reps)
        theirs_s, theirs_all = median_time(
            lambda: theirs(hidden_states=x, encoder_hidden_states=ctx, pooled_projections=y, timestep=t), reps
        )
        diff = (
            (
                ours(x, t, y, ctx)
                - theirs(
                    hidden_states=x, encoder_hidden_states=ctx, pooled_projections=y, timestep=t
                ).sample.float()
            )
            .abs()
            .max()
            .item()
        )
    return {
        "benchmark": "denoiser_step_medium_width",
        "size": size,
        "image_tokens": (size // 16) ** 2,
        "text_tokens": 154,
        "batch": 2,
        "depth": depth,
        "hidden": 1536,
        "dtype": dtype_name,
        "threads": torch.get_num_threads(),
        "reps": reps,
        "ours_s": ours_s,
        "diffusers_s": theirs_s,
        "ratio_ours_over_diffusers": ours_s / theirs_s,
        "ours_all": ours_all,
        "diffusers_all": theirs_all,
        "max_abs_diff": diff,
    }


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--size", type=int, default=512, help="image side in px (1024 -> 4096 image tokens)")
    p.add_argument("--depth", type=int, default=4)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
    args = p.parse_args(argv)
    r = run(args.size, args.depth, args.reps, args.dtype)
    print(
        f"denoiser step, Medium width, {r['image_tokens']} image + 154 text tokens, batch 2, depth {r['depth']}, "
        f"{r['dtype']}, {r['threads']} threads"
    )
    print(f"  ours      {r['ours_s'] * 1000:9.1f} ms (median of {r['reps']})")
    print(f"  diffusers {r['diffusers_s'] * 1000:9.1f} ms")
    print(f"  ratio ours/diffusers {r['ratio_ours_over_diffusers']:.3f}   max |diff| {r['max_abs_diff']:.2e}")
    print(f"  -> {write_result('step', r)}")
    return r


if __name__ == "__main__":
    main()
