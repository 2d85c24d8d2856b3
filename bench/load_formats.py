"""Loading the MMDiT from each file format and precision: wall time and peak RSS against the bytes of the
loaded weights, with a plain `load_file` + `load_state_dict` baseline from the same run, and the saving from
fp8 storage.

The checkpoint is synthetic (SD3.5 Medium widths and position table, reduced depth) and is written as: bf16,
fp16 and fp32 single files, plain float8_e4m3fn and ComfyUI scaled fp8 (joint-block Linear weights in fp8,
the rest bf16), and a diffusers-format sharded transformer. Each load runs in a fresh subprocess; peak RSS is
VmHWM after a reset that follows the imports.
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

from bench.common import (
    medium_width_config,
    peak_rss_bytes,
    random_mmdit_state,
    reset_peak_rss,
    rss_bytes,
    write_result,
)

PREFIX = "model.diffusion_model."
# (case, file, what is loaded)
CASES = (
    ("plain load_state_dict, bf16 file -> fp32", "bf16", "plain"),
    ("ours, bf16 file -> bf16", "bf16", "bf16"),
    ("ours, fp16 file -> bf16", "fp16", "bf16"),
    ("ours, fp32 file -> bf16", "fp32", "bf16"),
    ("ours, diffusers sharded bf16 -> bf16", "diffusers", "bf16"),
    ("ours, scaled fp8 file -> bf16 (dequantised)", "fp8-scaled", "bf16"),
    ("ours, scaled fp8 file -> fp8 storage", "fp8-scaled", "fp8"),
    ("ours, plain fp8 file -> fp8 storage", "fp8-plain", "fp8"),
    ("ours, bf16 file -> fp8 storage (quantised)", "bf16", "fp8"),
)


def _is_linear(key: str, t: torch.Tensor) -> bool:
    return key.startswith("joint_blocks.") and key.endswith(".weight") and t.ndim == 2


def write_files(folder: Path, depth: int) -> dict[str, Path]:
    from app.inference.checkpoints.fp8 import quantize

    state = random_mmdit_state(medium_width_config(depth=depth), torch.bfloat16)
    files = {}
    for name, dtype in (("bf16", torch.bfloat16), ("fp16", torch.float16), ("fp32", torch.float32)):
        files[name] = folder / f"mmdit_{name}.safetensors"
        save_file({PREFIX + k: v.to(dtype) for k, v in state.items()}, str(files[name]))
    scaled: dict[str, torch.Tensor] = {PREFIX + "scaled_fp8": torch.zeros(2, dtype=torch.float8_e4m3fn)}
    plain: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if _is_linear(key, value):
            w8, scale = quantize(value)
            scaled[PREFIX + key] = w8
            scaled[PREFIX + key[: -len("weight")] + "scale_weight"] = scale.reshape(())
            plain[PREFIX + key] = value.to(torch.float8_e4m3fn)
        else:
            scaled[PREFIX + key] = plain[PREFIX + key] = value
    files["fp8-scaled"] = folder / "mmdit_fp8_scaled.safetensors"
    files["fp8-plain"] = folder / "mmdit_fp8.safetensors"
    save_file(scaled, str(files["fp8-scaled"]))
    save_file(plain, str(files["fp8-plain"]))
    del scaled, plain
    from diffusers.loaders.single_file_utils import convert_sd3_transformer_checkpoint_to_diffusers

    converted = convert_sd3_transformer_checkpoint_to_diffusers({PREFIX + k: v for k, v in state.items()})
    keys = sorted(converted)
    weight_map = {}
    (folder / "transformer").mkdir()
    for i in range(2):
        name = f"diffusion_pytorch_model-{i + 1:05d}-of-00002.safetensors"
        save_file({k: converted[k].contiguous() for k in keys[i::2]}, str(folder / "transformer" / name))
        weight_map.update(dict.fromkeys(keys[i::2], name))
    files["diffusers"] = folder / "transformer" / "diffusion_pytorch_model.safetensors.index.json"
    files["diffusers"].write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    return files


def _child(how: str, path: str, depth: int) -> None:
    from safetensors.torch import load_file

    from app.inference.checkpoints.fp8 import fp8_storage_bytes
    from app.inference.checkpoints.mmdit_loading import load_mmdit
    from app.inference.networks.mmdit import MMDiT

    diffusers = path.endswith(".json")
    reset_peak_rss()  # peak RSS restarts here, after the imports
    base = rss_bytes()
    start = time.perf_counter()
    if how == "plain":  # what a naive port does: random init, read the whole file, copy in
        model = MMDiT(medium_width_config(depth=depth))
        sd = {k.removeprefix(PREFIX): v for k, v in load_file(path).items()}
        model.load_state_dict(sd)
        del sd
    else:
        model = load_mmdit(
            Path(path), dtype=torch.bfloat16, device="cpu", prefix="" if diffusers else PREFIX,
            layout="diffusers" if diffusers else "single-file", fp8=how == "fp8",
        )  # fmt: skip
    seconds = time.perf_counter() - start
    weights = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    print(json.dumps({"seconds": seconds, "weight_bytes": weights, "fp8_bytes": fp8_storage_bytes(model),
                      "peak_rss_bytes": peak_rss_bytes() - base}))  # fmt: skip


def run(depth: int = 4) -> dict:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        files = write_files(Path(tmp), depth)
        sizes = {name: path.stat().st_size for name, path in files.items()}
        sizes["diffusers"] = sum(p.stat().st_size for p in files["diffusers"].parent.glob("*.safetensors"))
        for label, fmt, how in CASES:
            out = subprocess.run(
                [sys.executable, "-m", "bench.load_formats", "--child", how, str(files[fmt]), "--depth", f"{depth}"],
                capture_output=True, text=True, check=True,
            )  # fmt: skip
            row = json.loads(out.stdout.strip().splitlines()[-1])
            ratio = row["peak_rss_bytes"] / row["weight_bytes"]
            row.update(case=label, file=fmt, file_bytes=sizes[fmt], peak_over_weights=ratio)
            rows.append(row)
    resident = next(r for r in rows if r["case"] == "ours, bf16 file -> bf16")["weight_bytes"]
    stored = next(r for r in rows if r["case"] == "ours, bf16 file -> fp8 storage (quantised)")[
        "weight_bytes"
    ]
    return {"benchmark": "load_formats", "depth": depth, "rows": rows, "fp8_saving": 1 - stored / resident}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--depth", type=int, default=4)
    p.add_argument("--child", nargs=2, metavar=("HOW", "PATH"))
    args = p.parse_args(argv)
    if args.child:
        _child(args.child[0], args.child[1], args.depth)
        return {}
    r = run(args.depth)
    print(
        f"loading the MMDiT (Medium widths, depth {r['depth']}) from each format; peak RSS vs loaded weights"
    )
    for row in r["rows"]:
        print(f"  {row['case']:<46} file {row['file_bytes'] / 1e9:5.2f} GB  {row['seconds']:6.2f} s  "
              f"peak {row['peak_rss_bytes'] / 1e9:5.2f} GB = {row['peak_over_weights']:.2f} x weights "
              f"({row['weight_bytes'] / 1e9:.2f} GB)")  # fmt: skip
    print(f"  fp8 storage holds the weights in {1 - r['fp8_saving']:.0%} of the bf16 bytes")
    print(f"  -> {write_result('load_formats', r)}")
    return r


if __name__ == "__main__":
    main()
