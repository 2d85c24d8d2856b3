"""LoRA costs, each against a baseline from the same run (issue 15's goals in brackets):

1. apply / switch / remove a rank-16 LoRA on every joint-block layer of an MMDiT at SD3.5 Medium's widths
   (bf16, `--depth` of Medium's 24 blocks, MMDiT-X attn2 in the first blocks) [< 1 s for full Medium]. Baseline:
   re-reading the touched base tensors from a safetensors file (what a reload would cost). The per-block time is
   also extrapolated to the 24 blocks.
2. side-branch overhead per forward: the same MMDiT with fp8-stored joint blocks, a rank-16 side branch on every
   one of their layers vs none, at a 512² image [<= 5 %].
3. header scan of 500 LoRA files with Medium's real layer names (all joint-block linears: ~1,000 keys each)
   [< 1 s]. Baselines: walking + stat of the files, and the safetensors library opening each (keys + metadata).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch
from safetensors.torch import save_file

from bench.common import interleaved_times, medium_width_config, random_mmdit_state, write_result

RANK = 16


def _model(cfg, dtype, fp8: bool = False):
    from app.inference.checkpoints.formats import mmdit_fp8_eligible
    from app.inference.checkpoints.fp8 import assign_with_fp8_storage
    from app.inference.checkpoints.weights import assign_weights
    from app.inference.networks.mmdit import MMDiT

    state = random_mmdit_state(cfg, dtype)
    with torch.device("meta"):
        model = MMDiT(cfg)
    if fp8:
        return assign_with_fp8_storage(model, state, eligible=mmdit_fp8_eligible, source="bench", what="MMDiT",
                                       dtype=dtype)  # fmt: skip
    return assign_weights(model, state, source="bench", what="MMDiT").eval()


def _lora_file(model, path: Path, seed: int) -> Path:
    """A kohya-style rank-16 LoRA on every Linear of the joint blocks."""
    gen = torch.Generator().manual_seed(seed)
    tensors = {}
    for name, module in model.joint_blocks.named_modules():
        if hasattr(module, "in_features"):
            key = "lora_unet_joint_blocks_" + name.replace(".", "_")
            tensors[key + ".lora_down.weight"] = (
                torch.randn(RANK, module.in_features, generator=gen) * 0.01
            ).bfloat16()
            tensors[key + ".lora_up.weight"] = (
                torch.randn(module.out_features, RANK, generator=gen) * 0.01
            ).bfloat16()
            tensors[key + ".alpha"] = torch.tensor(float(RANK))
    save_file(tensors, str(path))
    return path


def bench_apply(depth: int, reps: int, tmp: Path) -> dict:
    from app.inference.checkpoints.weights import load_tensors
    from app.inference.lora.applying import LoraPatcher, Weighted
    from app.inference.lora.loading import TargetSet, load_lora

    cfg = medium_width_config(depth=depth, dual=tuple(range(min(depth, 13))))
    model = _model(cfg, torch.bfloat16)
    base_file = tmp / "base.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(base_file))
    targets = TargetSet.of(model, label="Medium widths")
    files = [_lora_file(model, tmp / f"l{i}.safetensors", i) for i in range(2)]
    t0 = time.perf_counter()
    loras = [load_lora(f, targets) for f in files]
    read_s = (time.perf_counter() - t0) / 2
    touched = {f"{u.target.module}.weight" for u in loras[0].updates}
    touched_bytes = sum(model.get_submodule(k[: -len(".weight")]).weight.nbytes for k in touched)
    patcher = LoraPatcher()
    state = {"i": 0}

    def apply_one() -> None:
        patcher.apply([Weighted(loras[state["i"] % 2], 0.8, 0.8)], targets, key=(state["i"],))
        state["i"] += 1

    def reread() -> None:
        load_tensors(base_file, keys=touched)

    patcher.apply([Weighted(loras[0], 0.8, 0.8)], targets, key=("first",))  # warm
    times = interleaved_times({"switch": apply_one, "reread_base": reread}, reps)
    t0 = time.perf_counter()
    patcher.remove()
    remove_s = time.perf_counter() - t0
    switch = statistics.median(times["switch"])
    per_block = switch / depth
    return {
        "depth": depth, "rank": RANK, "layers": len(touched), "touched_bytes": touched_bytes,
        "lora_read_seconds": read_s, "switch_seconds": switch, "remove_seconds": remove_s,
        "reread_touched_base_seconds": statistics.median(times["reread_base"]),
        "switch_vs_reread": switch / statistics.median(times["reread_base"]),
        "switch_seconds_extrapolated_24_blocks": per_block * 24,
    }  # fmt: skip


def bench_side_branch(depth: int, reps: int, tmp: Path) -> dict:
    from app.inference.lora.applying import LoraPatcher, Weighted
    from app.inference.lora.loading import TargetSet, load_lora

    cfg = medium_width_config(depth=depth, dual=tuple(range(depth)))
    model = _model(cfg, torch.float32, fp8=True)
    targets = TargetSet.of(model, label="Medium widths")
    lora = load_lora(_lora_file(model, tmp / "side.safetensors", 7), targets)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(1, 16, 64, 64, generator=gen)  # 512² image: 1,024 image tokens
    t = torch.tensor([500.0])
    y = torch.randn(1, 2048, generator=gen)
    ctx = torch.randn(1, 154, 4096, generator=gen)
    with torch.inference_mode():
        prepared = model.prepare(t, y, ctx)
    patcher = LoraPatcher()

    def forward() -> float:
        with torch.inference_mode():
            model.forward_prepared(x, prepared)  # warm
            started = time.perf_counter()
            model.forward_prepared(x, prepared)
            return time.perf_counter() - started

    times: dict[str, list[float]] = {"no_lora": [], "side_branch": []}
    for _ in range(reps):  # in turns, so load from other processes falls on both alike
        times["no_lora"].append(forward())
        patcher.apply([Weighted(lora, 1.0, 1.0)], targets)
        assert patcher.side_branches > 0
        times["side_branch"].append(forward())
        patcher.remove()
    base, side = statistics.median(times["no_lora"]), statistics.median(times["side_branch"])
    return {"depth": depth, "rank": RANK, "tokens": 1024 + 154, "forward_seconds": base,
            "forward_with_side_branch_seconds": side, "overhead": side / base - 1}  # fmt: skip


def bench_scan(n: int, tmp: Path) -> dict:
    from safetensors import safe_open

    from app.inference.lora.discovery import scan_loras

    cfg = medium_width_config(depth=24, dual=tuple(range(13)))
    with torch.device("meta"):
        from app.inference.networks.mmdit import MMDiT

        names = [n for n, m in MMDiT(cfg).joint_blocks.named_modules() if hasattr(m, "in_features")]
    folder = tmp / "loras"
    folder.mkdir()
    tensors = {}
    for name in names:
        key = "lora_unet_joint_blocks_" + name.replace(".", "_")
        tensors[key + ".lora_down.weight"] = torch.zeros(1, 1536)
        tensors[key + ".lora_up.weight"] = torch.zeros(1536, 1)
        tensors[key + ".alpha"] = torch.tensor(1.0)
    meta = {"ss_base_model_version": "sd3", "ss_tag_frequency": '{"set": {"tag": 3}}'}
    save_file(tensors, str(folder / "lora_000.safetensors"), metadata=meta)
    data = (folder / "lora_000.safetensors").read_bytes()
    for i in range(1, n):
        (folder / f"lora_{i:03d}.safetensors").write_bytes(data)

    def walk() -> None:
        for entry in os.scandir(folder):
            entry.stat()

    def library() -> None:
        for entry in os.scandir(folder):
            with safe_open(entry.path, "pt") as f:
                f.keys()
                f.metadata()

    times = interleaved_times({"walk": walk, "safe_open": library,
                               "ours": lambda: scan_loras([folder], defaults=False)}, reps=3)  # fmt: skip
    ours = statistics.median(times["ours"])
    return {"files": n, "keys_per_file": len(tensors), "seconds": ours,
            "walk_seconds": statistics.median(times["walk"]),
            "safe_open_seconds": statistics.median(times["safe_open"]),
            "ours_vs_safe_open": ours / statistics.median(times["safe_open"])}  # fmt: skip


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument(
        "--depth", type=int, default=6, help="joint blocks of the Medium-width model (Medium has 24)"
    )
    p.add_argument("--side-depth", type=int, default=2, help="joint blocks for the side-branch forward")
    p.add_argument("--files", type=int, default=500)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--parts", default="apply,side_branch,scan", help="which measurements, comma-separated")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default); 1 is steadier on a "
                   "machine that other processes load")  # fmt: skip
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        parts = {
            "apply": lambda: bench_apply(args.depth, args.reps, tmp),
            "side_branch": lambda: bench_side_branch(args.side_depth, args.reps, tmp),
            "scan": lambda: bench_scan(args.files, tmp),
        }
        result: dict = {"threads": torch.get_num_threads()}
        for name in args.parts.split(","):
            result[name] = parts[name]()
            print(f"   {name}: {result[name]}", flush=True)
    write_result("lora", result)
    return result


if __name__ == "__main__":
    main()
