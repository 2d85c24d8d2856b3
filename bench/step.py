"""Denoiser step time at SD3.5 Medium and Large widths: ours vs diffusers' SD3Transformer2DModel, same weights,
same precision, same run.

A "step" is one CFG forward (batch 2: positive and negative) at a reduced depth, with real token counts:
image tokens of the chosen size plus the text tokens. Three things are timed in turns (so that load from other
processes falls on all alike), several repetitions each, medians compared:
  ours (job)      the forward as a job runs it: text tokens, position crop and every block's adaLN modulation
                  prepared once per job (modulation.py), so a step does none of it
  ours (forward)  the plain forward from (x, t, y, context), everything computed per call
  diffusers       SD3Transformer2DModel.forward, which computes everything per call
"""

from __future__ import annotations

import argparse
import logging
import statistics

import torch

from app.inference.checkpoints.weights import assign_weights
from app.inference.networks.mmdit import MMDiT, PreparedInputs
from app.inference.networks.modulation import ModulationTable
from bench.common import (
    interleaved_times,
    large_width_config,
    medium_width_config,
    random_mmdit_state,
    write_result,
)
from tests.factory.diffusers_oracle import diffusers_transformer
from tests.factory.mmdit_model import PREFIX

log = logging.getLogger(__name__)

VARIANTS = {  # name: (config builder, default size, default depth, default text tokens)
    "medium": (
        lambda depth: medium_width_config(depth=depth, dual=tuple(range(min(2, depth - 1)))),
        512,
        4,
        154,
    ),
    "large": (lambda depth: large_width_config(depth=depth), 1024, 2, 333),  # 333 = 77 CLIP + 256 T5 tokens
}


def _diffusers_model(state: dict[str, torch.Tensor], dtype: torch.dtype):
    # the test oracle: diffusers' own class and converter, sized from the tensors, not from our config
    return diffusers_transformer({PREFIX + k: v for k, v in state.items()}).to(dtype)


def run(
    variant: str = "medium",
    size: int | None = None,
    depth: int | None = None,
    reps: int = 5,
    dtype_name: str = "float32",
    text_tokens: int | None = None,
    threads: int | None = None,
) -> dict:
    if threads:
        torch.set_num_threads(threads)
    build, default_size, default_depth, default_text = VARIANTS[variant]
    size, depth, text_tokens = size or default_size, depth or default_depth, text_tokens or default_text
    dtype = getattr(torch, dtype_name)
    cfg = build(depth)
    state = random_mmdit_state(cfg, dtype)
    with torch.device("meta"):
        ours = MMDiT(cfg)
    assign_weights(ours, dict(state), source="bench", what="MMDiT")
    ours.eval()
    theirs = _diffusers_model(state, dtype)
    del state

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 16, size // 8, size // 8, generator=gen).to(dtype)
    t = torch.tensor([800.0, 800.0])
    y = torch.randn(2, cfg.adm_in_channels, generator=gen).to(dtype)
    ctx = torch.randn(2, text_tokens, cfg.context_in_channels, generator=gen).to(dtype)

    with torch.inference_mode():
        # What a job prepares once: the table row of each conditioning at this timestep, tokens, crop.
        table = ModulationTable(ours, [y[:1], y[1:]])
        keys = [(800.0, 0), (800.0, 1)]
        table.add(keys)
        side = size // 16
        prepared = PreparedInputs(
            ours.embed_context(ctx), table.rows(keys), ours.cropped_pos_embed(side, side).to(dtype)
        )
        fns = {
            "ours_job": lambda: ours.forward_prepared(x, prepared),
            "ours_forward": lambda: ours(x, t, y, ctx),
            "diffusers": lambda: (
                theirs(hidden_states=x, encoder_hidden_states=ctx, pooled_projections=y, timestep=t).sample
            ),
        }
        times = interleaved_times(fns, reps)
        reference = fns["diffusers"]().float()
        diff = max((fns[name]() - reference).abs().max().item() for name in ("ours_job", "ours_forward"))
    med = {name: statistics.median(v) for name, v in times.items()}
    return {
        "benchmark": f"denoiser_step_{variant}_width",
        "variant": variant,
        "size": size,
        "image_tokens": (size // 16) ** 2,
        "text_tokens": text_tokens,
        "batch": 2,
        "depth": depth,
        "hidden": cfg.hidden_size,
        "dtype": dtype_name,
        "threads": torch.get_num_threads(),
        "reps": reps,
        "ours_job_s": med["ours_job"],
        "ours_forward_s": med["ours_forward"],
        "diffusers_s": med["diffusers"],
        "ratio_job_over_diffusers": med["ours_job"] / med["diffusers"],
        "ratio_forward_over_diffusers": med["ours_forward"] / med["diffusers"],
        # per-repetition ratios (each pair measured back to back) show the spread the machine adds
        "ratio_job_per_rep": [a / b for a, b in zip(times["ours_job"], times["diffusers"], strict=True)],
        "times": times,
        "max_abs_diff": diff,
    }


def _report(r: dict) -> None:
    print(
        f"denoiser step, {r['variant']} width ({r['hidden']}), {r['image_tokens']} image + {r['text_tokens']} "
        f"text tokens, batch 2, depth {r['depth']}, {r['dtype']}, {r['threads']} threads, median of {r['reps']}"
    )
    print(f"  ours (job)     {r['ours_job_s'] * 1000:9.1f} ms   ratio {r['ratio_job_over_diffusers']:.3f}")
    print(
        f"  ours (forward) {r['ours_forward_s'] * 1000:9.1f} ms   ratio {r['ratio_forward_over_diffusers']:.3f}"
    )
    print(f"  diffusers      {r['diffusers_s'] * 1000:9.1f} ms   max |diff| {r['max_abs_diff']:.2e}")


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--variant", choices=(*VARIANTS, "both"), default="both")
    p.add_argument("--size", type=int, help="image side in px (1024 -> 4096 image tokens)")
    p.add_argument("--depth", type=int, help="joint blocks (reduced; default 4 Medium, 2 Large)")
    p.add_argument("--text-tokens", type=int, help="default 154 Medium, 333 Large")
    p.add_argument("--reps", type=int, help="default 5 Medium, 3 Large")
    p.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
    args = p.parse_args(argv)
    variants = list(VARIANTS) if args.variant == "both" else [args.variant]
    rows = []
    for variant in variants:
        reps = args.reps or (3 if variant == "large" else 5)
        r = run(variant, args.size, args.depth, reps, args.dtype, args.text_tokens)
        _report(r)
        rows.append(r)
    print(f"  -> {write_result('step', {'rows': rows})}")
    return {"rows": rows}


if __name__ == "__main__":
    main()
