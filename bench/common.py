"""Shared helpers for the benchmarks: synthetic checkpoints at real widths, timing, result files."""

from __future__ import annotations

import json
import math
import resource
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

from app.inference.networks.mmdit import MMDiT
from app.inference.networks.mmdit_config import MMDiTConfig

RESULTS = Path(__file__).parent / "results"


def _width_config(hidden: int, heads: int, depth: int, pos_side: int, dual: tuple[int, ...]) -> MMDiTConfig:
    """An SD3.5 MMDiT at its real widths (2048 pooled, 4096 context, MLP 4x) and a reduced depth."""
    return MMDiTConfig(
        depth=depth,
        hidden_size=hidden,
        num_heads=heads,
        patch_size=2,
        in_channels=16,
        out_channels=16,
        pos_embed_max_size=pos_side,
        adm_in_channels=2048,
        context_in_channels=4096,
        mlp_hidden=4 * hidden,
        qk_norm=True,
        x_block_self_attn_layers=dual,
    )


def medium_width_config(depth: int = 4, dual: tuple[int, ...] = (0, 1), pos_side: int = 384) -> MMDiTConfig:
    """SD3.5 Medium's widths (hidden 1536, 24 heads) at a reduced depth."""
    return _width_config(1536, 24, depth, pos_side, dual)


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


def interleaved_times(
    fns: dict[str, Callable[[], object]], reps: int, warmup: int = 1
) -> dict[str, list[float]]:
    """Time several functions in turns (A B C, then C B A, ...), so that load from other processes on a shared
    machine falls on all of them alike; returns every repetition's seconds per name."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    order = list(fns)
    for rep in range(reps):
        for name in order if rep % 2 == 0 else reversed(order):
            start = time.perf_counter()
            fns[name]()
            times[name].append(time.perf_counter() - start)
    return times


def large_width_config(depth: int = 2, pos_side: int = 192) -> MMDiTConfig:
    """SD3.5 Large's widths (hidden 2432, 38 heads, no MMDiT-X blocks) at a reduced depth."""
    return _width_config(2432, 38, depth, pos_side, ())


def write_result(name: str, data: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(data, indent=2))
    return path


def rss_bytes() -> int:
    """This process's resident set size now."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def reset_peak_rss() -> None:
    """Restart VmHWM from the current RSS (Linux: writing 5 to clear_refs), e.g. after the imports."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def peak_rss_bytes() -> int:
    """This process's own RSS high-water mark (VmHWM; `ru_maxrss` would carry the parent's across exec)."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))
