"""Model discovery over a tree of 50 files: wall time and RSS growth, against two baselines from the same run.

The tree mixes what artists have: full-size sparse checkpoints (real headers of SD3.5 Large / Medium, the
ComfyUI fp8-scaled all-in-one, CLIP-L/G, T5 fp16 and scaled fp8, a sharded diffusers transformer: ~100 GB
of apparent size, no disk), tiny real snapshots, ComfyUI folders with other families and LoRAs, and broken
files (truncated, garbage, empty, pickles, GGUF). Goals (issue 3): < 1 s and < 100 MB RSS growth.

Baselines: `walk` lists and stats every file (the floor of any scan); `safe_open` opens every .safetensors
file with the safetensors library and reads its keys and metadata (what a typical tool does). Each runs in a
fresh subprocess; RSS growth is peak RSS minus RSS after the imports.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import peak_rss_bytes, reset_peak_rss, rss_bytes, write_result

METHODS = ("walk", "safe_open", "ours")
GOALS = {"seconds": 1.0, "rss_growth_bytes": 100e6}


def build_tree(root: Path) -> int:
    """Write the 50-file tree; returns the number of files."""
    import torch
    from safetensors.torch import save_file

    from tests.factory import sparse
    from tests.factory.snapshot import write_snapshot

    hf = root / "hub" / "models--stabilityai--stable-diffusion-3.5-large" / "snapshots" / ("a" * 40)
    sparse.sparse_checkpoint(hf / "sd3.5_large.safetensors", "large")
    te = hf / "text_encoders"
    sparse.sparse_text_encoder(te / "clip_l.safetensors", "clip_l")
    sparse.sparse_text_encoder(te / "clip_g.safetensors", "clip_g")
    sparse.sparse_text_encoder(te / "t5xxl_fp16.safetensors", "t5xxl")
    sparse.sparse_text_encoder(te / "t5xxl_fp8_e4m3fn_scaled.safetensors", "t5xxl", fp8="scaled")
    (hf.parent.parent / "refs").mkdir(parents=True)
    (hf.parent.parent / "refs" / "main").write_text("a" * 40)
    medium = root / "downloads" / "stable-diffusion-3.5-medium"
    sparse.sparse_checkpoint(medium / "sd3.5_medium.safetensors", "medium")
    sparse.sparse_diffusers_transformer(medium / "transformer", "medium")
    comfy = root / "ComfyUI" / "models"
    sparse.sparse_all_in_one_fp8(comfy / "checkpoints" / "sd3.5_large_fp8_scaled.safetensors")
    for i in range(6):  # other families and add-ons that live next to SD3.5 files
        save_file({"conditioner.embedders.1.model.ln_final.weight": torch.zeros(8)},
                  str(comfy / "checkpoints" / f"sdxl_{i}.safetensors"))  # fmt: skip
        (comfy / "loras").mkdir(parents=True, exist_ok=True)
        save_file({"lora_unet_x.alpha": torch.zeros(1)}, str(comfy / "loras" / f"lora_{i}.safetensors"))
    for name in ("clip_l", "clip_g"):
        sparse.sparse_text_encoder(comfy / "clip" / f"{name}.safetensors", name)
    sparse.sparse_text_encoder(comfy / "text_encoders" / "t5xxl_fp8_e4m3fn.safetensors", "t5xxl", fp8="plain")
    write_snapshot(root / "tiny" / "medium", "medium")
    write_snapshot(root / "tiny" / "large", "large", text_encoders=False)
    bad = root / "downloads" / "broken"
    bad.mkdir(parents=True)
    source = (root / "tiny" / "medium" / "sd3.5_medium.safetensors").read_bytes()
    (bad / "truncated.safetensors").write_bytes(source[: len(source) // 3])
    (bad / "garbage.safetensors").write_bytes(b"\x00garbage" * 64)
    (bad / "empty.safetensors").write_bytes(b"")
    for name in ("old.ckpt", "model.pt", "pytorch_model.bin"):
        (bad / name).write_bytes(b"\x80\x04not unpickled")
    (bad / "sd3.5_large-Q4.gguf").write_bytes(b"GGUF")
    files = [p for p in root.rglob("*") if p.is_file()]
    for i in range(50 - len(files)):  # fill up to 50 with small files the scan must skip (configs)
        (root / "downloads" / f"notes_{i}.json").write_text("{}")
    return sum(1 for p in root.rglob("*") if p.is_file())


def _child(method: str, root: str, reps: int) -> None:
    import safetensors  # noqa: F401  (imports before the RSS baseline)

    from app.inference.checkpoints.discovery import scan

    env = {"HF_HUB_CACHE": str(Path(root) / "hub")}
    reset_peak_rss()
    base = rss_bytes()

    def walk() -> int:
        n = 0
        for folder, _, names in os.walk(root):
            for name in names:
                os.stat(os.path.join(folder, name))
                n += 1
        return n

    def with_safe_open() -> int:
        from safetensors import safe_open

        n = 0
        for folder, _, names in os.walk(root):
            for name in names:
                if name.endswith(".safetensors"):
                    try:
                        with safe_open(os.path.join(folder, name), "pt") as f:
                            n += len(list(f.keys())) + len(f.metadata() or {})
                    except Exception:
                        n += 1
        return n

    def ours() -> int:
        result = scan([root], defaults=True, env=env, home=Path(root) / "nohome")
        return len(result.sets) * 1000 + len(result.other_files)

    fn = {"walk": walk, "safe_open": with_safe_open, "ours": ours}[method]
    times, found = [], 0
    for _ in range(reps):
        started = time.perf_counter()
        found = fn()
        times.append(time.perf_counter() - started)
    peak = peak_rss_bytes()
    print(json.dumps({"method": method, "seconds": statistics.median(times), "first_seconds": times[0],
                      "rss_growth_bytes": peak - base, "found": found}))  # fmt: skip


def run(reps: int = 5) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "tree"
        n_files = build_tree(root)
        apparent = sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
        on_disk = sum(p.stat().st_blocks * 512 for p in root.rglob("*") if p.is_file())
        rows = []
        for method in METHODS:
            out = subprocess.run(
                [sys.executable, "-m", "bench.scan", "--child", method, str(root), "--reps", str(reps)],
                capture_output=True, text=True, check=True,
            )  # fmt: skip
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        check = subprocess.run(
            [sys.executable, "-m", "app", "models", str(root), "--json"], capture_output=True, text=True,
            env={**os.environ, "HF_HUB_CACHE": str(root / "hub"), "HOME": str(root / "nohome")},
        )  # fmt: skip
        entries = json.loads(check.stdout) if check.returncode == 0 else []
    return {
        "benchmark": "scan", "files": n_files, "apparent_bytes": apparent, "disk_bytes": on_disk,
        "sets": sorted(f"{e['variant']}:{e['name']}" for e in entries if e["variant"]),
        "other_files": sum(1 for e in entries if e["variant"] is None), "rows": rows, "goals": GOALS,
    }  # fmt: skip


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--child", nargs=2, metavar=("METHOD", "ROOT"))
    args = p.parse_args(argv)
    if args.child:
        _child(args.child[0], args.child[1], args.reps)
        return {}
    r = run(args.reps)
    size = f"{r['apparent_bytes'] / 1e9:.0f} GB apparent, {r['disk_bytes'] / 1e6:.0f} MB on disk"
    print(f"scanning {r['files']} files ({size}): {len(r['sets'])} sets, {r['other_files']} other files")
    for row in r["rows"]:
        ms, first = row["seconds"] * 1e3, row["first_seconds"] * 1e3
        growth = row["rss_growth_bytes"] / 1e6
        print(
            f"  {row['method']:<10} median {ms:8.1f} ms (first {first:7.1f} ms)   RSS growth {growth:6.1f} MB"
        )
    goals = f"< {GOALS['seconds']:.0f} s, < {GOALS['rss_growth_bytes'] / 1e6:.0f} MB"
    print(f"  goals: {goals}; sets: {', '.join(r['sets'])}")
    print(f"  -> {write_result('scan', r)}")
    return r


if __name__ == "__main__":
    main()
