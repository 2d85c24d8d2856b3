"""Preview cost per step against the step it belongs to, for the linear and TAESD3 previews.

Latent of a 1024x1024 image (16 x 128 x 128). The step is one CFG forward (batch 2) of an MMDiT at SD3.5 Medium
width with reduced depth, measured in the same run; the full-depth step is extrapolated linearly in depth
(blocks dominate the cost), and both ratios are printed.
"""

from __future__ import annotations

import argparse
import math

import torch

from app.inference.checkpoints.weights import assign_weights
from app.inference.networks.mmdit import MMDiT
from app.inference.networks.taesd import build_decoder
from app.inference.sampling.preview import LinearPreview, TaesdPreview
from bench.common import median_time, medium_width_config, random_mmdit_state, write_result

FULL_DEPTH_MEDIUM = 24


def _random_taesd() -> torch.nn.Module:
    with torch.device("meta"):
        decoder = build_decoder()
    gen = torch.Generator().manual_seed(0)
    state = {}
    for k, v in decoder.state_dict().items():
        fan_in = math.prod(v.shape[1:]) if v.dim() > 1 else 1
        state[k] = torch.randn(v.shape, generator=gen) / math.sqrt(fan_in)
    return assign_weights(decoder, state, source="bench", what="TAESD3").eval()


def run(size: int = 1024, depth: int = 2, reps: int = 3) -> dict:
    latent = torch.randn(1, 16, size // 8, size // 8)
    linear = LinearPreview()
    taesd = TaesdPreview(_random_taesd())
    with torch.inference_mode():
        linear_s, _ = median_time(lambda: linear(latent), reps)
        taesd_s, _ = median_time(lambda: taesd(latent), reps)

        cfg = medium_width_config(depth=depth, dual=(0,))
        with torch.device("meta"):
            model = MMDiT(cfg)
        assign_weights(model, random_mmdit_state(cfg, torch.float32), source="bench", what="MMDiT")
        x = torch.randn(2, 16, size // 8, size // 8)
        t, y, ctx = torch.tensor([500.0, 500.0]), torch.randn(2, 2048), torch.randn(2, 154, 4096)
        step_s, _ = median_time(lambda: model(x, t, y, ctx), max(1, reps - 1), warmup=0)
    full_step = step_s * FULL_DEPTH_MEDIUM / depth
    return {
        "benchmark": "preview_cost",
        "image_size": size,
        "threads": torch.get_num_threads(),
        "linear_s": linear_s,
        "taesd_s": taesd_s,
        "step_s_measured": step_s,
        "step_depth": depth,
        "step_s_full_depth_estimate": full_step,
        "linear_over_step": linear_s / full_step,
        "taesd_over_step": taesd_s / full_step,
        "linear_over_measured_step": linear_s / step_s,
        "taesd_over_measured_step": taesd_s / step_s,
    }


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--size", type=int, default=1024)
    p.add_argument("--depth", type=int, default=2)
    p.add_argument("--reps", type=int, default=3)
    args = p.parse_args(argv)
    r = run(args.size, args.depth, args.reps)
    print(f"previews of a {r['image_size']}^2 image, CPU, {r['threads']} threads")
    print(
        f"  step (Medium width, depth {r['step_depth']}, CFG batch 2): {r['step_s_measured']:.2f} s measured, "
        f"{r['step_s_full_depth_estimate']:.1f} s at depth 24 (extrapolated)"
    )
    print(
        f"  linear preview {r['linear_s'] * 1000:8.2f} ms = {100 * r['linear_over_step']:.3f} % of a full step"
    )
    print(
        f"  TAESD3 preview {r['taesd_s'] * 1000:8.2f} ms = {100 * r['taesd_over_step']:.2f} % of a full step "
        f"({100 * r['taesd_over_measured_step']:.1f} % of the depth-{r['step_depth']} step)"
    )
    print(f"  -> {write_result('preview', r)}")
    return r


if __name__ == "__main__":
    main()
