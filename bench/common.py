"""Shared helpers for the benchmarks: synthetic checkpoints at real widths, timing, result files."""

from __future__ import annotations

import json
import math
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

from app.inference.mmdit import MMDiT
from app.inference.mmdit_config import MMDiTConfig

RESULTS = Path(__file__).parent / "results"


def medium_width_config(depth: int = 4, dual: tuple[int, ...] = (0, 1), pos_side: int = 384) -> MMDiTConfig:
    """SD3.5 Medium's widths (hidden 1536, 24 heads, 2048 pooled, 4096 context) at a reduced depth."""
    return MMDiTConfig(
        depth=depth,
        hidden_size=1536,
        num_heads=24,
        patch_size=2,
        in_channels=16,
        out_channels=16,
        pos_embed_max_size=pos_side,
        adm_in_channels=2048,
        context_in_channels=4096,
        mlp_hidden=6144,
        qk_norm=True,
        x_block_self_attn_layers=dual,
    )


def random_mmdit_state(cfg: MMDiTConfig, dtype: torch.dtype, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random weights in our (= the checkpoint's) layout, without allocating a model first."""
    with torch.device("meta"):
        shapes = {k: tuple(v.shape) for k, v in MMDiT(cfg).state_dict().items()}
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for k, shape in shapes.items():
        fan_in = math.prod(shape[1:]) if len(shape) > 1 else 1
        t = torch.randn(shape, generator=gen) / math.sqrt(max(fan_in, 1))
        if k.endswith(("ln_q.weight", "ln_k.weight")):
            t = t + 1.0
        state[k] = t.to(dtype)
    return state


def median_time(fn: Callable[[], object], reps: int, warmup: int = 1) -> tuple[float, list[float]]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), times


def write_result(name: str, data: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(data, indent=2))
    return path
