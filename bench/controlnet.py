"""ControlNet cost: the denoiser step with a Large-width ControlNet vs the plain step (same run), the full-size
ControlNet's memory in each plan (meta device), and 1024² canny / blur preprocessing.

Step: one CFG forward (batch 2) at SD3.5 Large's widths (hidden 2432, 38 heads) with a reduced depth that keeps
Large's ratio of joint blocks to ControlNet blocks (38 : 19 -> 2 : 1 by default), timed in turns with the plain
step, as a job runs it (text tokens and adaLN modulation prepared once). The ratio, not the absolute time, is the
result: on the real model the ControlNet adds its 19 single-stream blocks to the 38 joint blocks.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import statistics
import time

import torch
from PIL import Image, ImageFilter

from app.inference.api.control import ControlPreprocess
from app.inference.checkpoints.controlnet_loading import controlnet_fp8_eligible
from app.inference.checkpoints.weights import assign_weights
from app.inference.control.apply import ControlStack, ControlUnit
from app.inference.control.preprocess import apply_preprocess
from app.inference.memory.plan import PLAN_NAMES, Machine, plan_for
from app.inference.networks.controlnet import ControlNet, ControlNetConfig
from app.inference.networks.mmdit import MMDiT, PreparedInputs
from app.inference.networks.modulation import ModulationTable
from bench.common import interleaved_times, large_width_config, random_mmdit_state, write_result
from tests.inference.test_memory_plan import LARGE

GB = 1e9


def _controlnet(depth: int, dtype: torch.dtype, head_dim: int = 64) -> ControlNet:
    cfg = ControlNetConfig(depth, 2432, 2432 // head_dim, 2, 16, 2048, 4 * 2432, "canny")
    with torch.device("meta"):
        model = ControlNet(cfg)
    gen = torch.Generator().manual_seed(1)
    state = {}
    for k, v in model.state_dict().items():
        fan_in = math.prod(v.shape[1:]) if v.ndim > 1 else 1
        state[k] = (torch.randn(v.shape, generator=gen) / math.sqrt(fan_in)).to(dtype)
    return assign_weights(model, state, source="bench", what="ControlNet").eval()


def step(size: int, depth: int, cn_depth: int, reps: int, dtype_name: str, text_tokens: int = 333) -> dict:
    dtype = getattr(torch, dtype_name)
    cfg = large_width_config(depth=depth)
    with torch.device("meta"):
        base = MMDiT(cfg)
    assign_weights(base, random_mmdit_state(cfg, dtype), source="bench", what="MMDiT")
    base.eval()
    cnet = _controlnet(cn_depth, dtype)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 16, size // 8, size // 8, generator=gen).to(dtype)
    y = torch.randn(2, 2048, generator=gen).to(dtype)
    ctx = torch.randn(2, text_tokens, 4096, generator=gen).to(dtype)
    hint_latent = torch.randn(1, 16, size // 8, size // 8, generator=gen)
    with torch.inference_mode():
        table = ModulationTable(base, [y[:1], y[1:]])
        keys = [(800.0, 0), (800.0, 1)]
        table.add(keys)
        side = size // 16
        plain = PreparedInputs(
            base.embed_context(ctx), table.rows(keys), base.cropped_pos_embed(side, side).to(dtype)
        )
        stack = ControlStack([ControlUnit.of(cnet, cnet.embed_hint(hint_latent), 1.0, 0.0, 1.0, 3.0, depth)])
        t = torch.full((2,), 800.0)

        def controlled():
            return base.forward_prepared(x, dataclasses.replace(plain, control=stack.for_call(0.8, t, y)))

        times = interleaved_times(
            {"plain": lambda: base.forward_prepared(x, plain), "controlnet": controlled}, reps
        )
    med = {k: statistics.median(v) for k, v in times.items()}
    return {
        "size": size, "image_tokens": side * side, "text_tokens": text_tokens, "batch": 2, "depth": depth,
        "controlnet_depth": cn_depth, "dtype": dtype_name, "threads": torch.get_num_threads(), "reps": reps,
        "plain_s": med["plain"], "controlnet_s": med["controlnet"], "ratio": med["controlnet"] / med["plain"],
        "ratio_per_rep": [a / b for a, b in zip(times["controlnet"], times["plain"], strict=True)],
    }  # fmt: skip


def plan_sizes() -> dict:
    """The full-size ControlNet on the meta device, and what it adds to each plan (a machine where all fit)."""
    cfg = ControlNetConfig(19, 2432, 38, 2, 16, 2048, 4 * 2432, "canny")
    with torch.device("meta"):
        model = ControlNet(cfg)
    params = sum(p.numel() for p in model.parameters())
    linears = [(n, m) for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)]
    fp8 = sum(m.weight.numel() for n, m in linears if controlnet_fp8_eligible(n))
    block = sum(
        p.numel()
        for p in [*model.transformer_blocks[0].parameters(), *model.controlnet_blocks[0].parameters()]
    )
    with_cn = dataclasses.replace(
        LARGE, controlnet_params=params, controlnet_fp8_params=fp8, controlnet_block_params=block
    )
    machine = Machine("cuda", int(500 * GB), int(500 * GB))
    plans = {}
    for name in PLAN_NAMES:
        a, b = plan_for(name, LARGE, machine, "bfloat16"), plan_for(name, with_cn, machine, "bfloat16")
        plans[name] = {
            "device_gb": b.device_bytes / GB, "ram_gb": b.ram_bytes / GB,
            "controlnet_device_gb": (b.device_bytes - a.device_bytes) / GB,
            "controlnet_ram_gb": (b.ram_bytes - a.ram_bytes) / GB,
        }  # fmt: skip
    return {"params": params, "fp8_params": fp8, "block_params": block, "bf16_gb": params * 2 / GB,
            "fp32_gb": params * 4 / GB, "plans": plans}  # fmt: skip


def preprocessing(size: int = 1024, reps: int = 5) -> dict:
    gen = torch.Generator().manual_seed(0)
    image = torch.rand(1, 3, size, size, generator=gen)
    # a picture with edges: smooth noise plus rectangles
    image = torch.nn.functional.avg_pool2d(image, 9, stride=1, padding=4)
    image[..., size // 4 : size // 2, size // 4 : 3 * size // 4] = 0.9
    pil = Image.fromarray((image[0].permute(1, 2, 0).numpy() * 255).astype("uint8"))
    fns = {
        "canny": lambda: apply_preprocess(image, ControlPreprocess("canny")),
        "blur_r8": lambda: apply_preprocess(image, ControlPreprocess("blur", blur_radius=8)),
        "pil_gaussian_r8": lambda: pil.filter(
            ImageFilter.GaussianBlur(8)
        ),  # baseline: PIL's box approximation
    }
    times = interleaved_times(fns, reps)
    return {"size": size, "reps": reps, **{f"{k}_s": statistics.median(v) for k, v in times.items()}}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", type=int, default=512, help="image side in px (1024 -> 4096 image tokens)")
    p.add_argument("--depth", type=int, default=2, help="joint blocks (Large: 38)")
    p.add_argument("--controlnet-depth", type=int, default=1, help="ControlNet blocks (Large: 19)")
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
    args = p.parse_args(argv)
    started = time.perf_counter()
    s = step(args.size, args.depth, args.controlnet_depth, args.reps, args.dtype)
    print(
        f"step at Large width, {s['image_tokens']} image + {s['text_tokens']} text tokens, batch 2, depth "
        f"{s['depth']} + ControlNet {s['controlnet_depth']}, {s['dtype']}, {s['threads']} threads, median of "
        f"{s['reps']}: plain {s['plain_s'] * 1000:.0f} ms, with ControlNet {s['controlnet_s'] * 1000:.0f} ms, "
        f"ratio {s['ratio']:.3f}"
    )
    sizes = plan_sizes()
    print(
        f"full-size ControlNet: {sizes['params']:,} params, {sizes['bf16_gb']:.2f} GB bf16, "
        f"{sizes['fp32_gb']:.2f} GB fp32"
    )
    for name, r in sizes["plans"].items():
        print(
            f"  {name:9s} +{r['controlnet_device_gb']:.2f} GB accelerator, +{r['controlnet_ram_gb']:.2f} GB RAM"
        )
    pre = preprocessing()
    print(
        f"1024² preprocessing, median of {pre['reps']}: canny {pre['canny_s'] * 1000:.0f} ms, blur r=8 "
        f"{pre['blur_r8_s'] * 1000:.0f} ms (PIL's GaussianBlur {pre['pil_gaussian_r8_s'] * 1000:.0f} ms)"
    )
    result = {"step": s, "sizes": sizes, "preprocessing": pre, "seconds": time.perf_counter() - started}
    print(f"  -> {write_result('controlnet', result)}")
    return result


if __name__ == "__main__":
    main()
