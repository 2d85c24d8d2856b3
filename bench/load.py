"""Checkpoint loading: wall time and peak RSS against the bytes of the weights, ours vs a plain load.

Each loader runs in a fresh subprocess; peak RSS is the process's VmHWM (its own high-water mark; `ru_maxrss`
would carry over the parent's peak across exec) minus the RSS after importing torch.
The checkpoint is synthetic: SD3.5 Medium widths and position table, reduced depth, stored in bfloat16.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from safetensors.torch import save_file

from bench.common import medium_width_config, peak_rss_bytes, random_mmdit_state, rss_bytes, write_result

LOADERS = ("ours_bf16", "ours_float32", "plain_load_state_dict_float32")


def _child(loader: str, path: str, depth: int) -> None:
    from app.inference.checkpoints.mmdit_loading import load_mmdit
    from app.inference.networks.mmdit import MMDiT

    base = rss_bytes()
    start = time.perf_counter()
    if loader == "ours_bf16":
        model = load_mmdit(Path(path), dtype=torch.bfloat16, device=torch.device("cpu"))
    elif loader == "ours_float32":
        model = load_mmdit(Path(path), dtype=torch.float32, device=torch.device("cpu"))
    else:  # what a naive port does: build with random init, read the whole file, copy in
        from safetensors.torch import load_file

        model = MMDiT(medium_width_config(depth=depth))
        sd = {k.removeprefix("model.diffusion_model."): v for k, v in load_file(path).items()}
        model.load_state_dict(sd)
        del sd
    seconds = time.perf_counter() - start
    weights = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    peak = peak_rss_bytes() - base
    print(json.dumps({"loader": loader, "seconds": seconds, "weight_bytes": weights, "peak_rss_bytes": peak}))


def run(depth: int = 6) -> dict:
    cfg = medium_width_config(depth=depth)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "sd3.5_medium_synthetic.safetensors"
        state = {f"model.diffusion_model.{k}": v for k, v in random_mmdit_state(cfg, torch.bfloat16).items()}
        save_file(state, str(path))
        file_bytes = path.stat().st_size
        del state
        rows = []
        for loader in LOADERS:
            out = subprocess.run(
                [sys.executable, "-m", "bench.load", "--child", loader, str(path), "--depth", str(depth)],
                capture_output=True,
                text=True,
                check=True,
            )
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    for r in rows:
        r["peak_over_weights"] = r["peak_rss_bytes"] / r["weight_bytes"]
    return {"benchmark": "load", "depth": depth, "file_bytes": file_bytes, "rows": rows}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--depth", type=int, default=6)
    p.add_argument("--child", nargs=2, metavar=("LOADER", "PATH"))
    args = p.parse_args(argv)
    if args.child:
        _child(args.child[0], args.child[1], args.depth)
        return {}
    r = run(args.depth)
    print(f"loading a {r['file_bytes'] / 1e9:.2f} GB bf16 checkpoint (Medium widths, depth {r['depth']})")
    for row in r["rows"]:
        print(
            f"  {row['loader']:<32} {row['seconds']:7.2f} s   peak RSS {row['peak_rss_bytes'] / 1e9:6.2f} GB"
            f"   = {row['peak_over_weights']:.2f} x resident weights ({row['weight_bytes'] / 1e9:.2f} GB)"
        )
    print(f"  -> {write_result('load', r)}")
    return r


if __name__ == "__main__":
    main()
