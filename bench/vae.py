"""VAE decode of the full-size SD3 VAE (random weights in the real key layout) at 1024² and 1440² (Medium's
2 MP): wall time and peak memory, ours vs diffusers' AutoencoderKL with the same weights in the same run, in
float32 and bfloat16, on the GPU when there is one, else the CPU.

Rows per size and dtype: `ours`, `diffusers`, `ours_channels_last` (VAE.set_channels_last: weights and input
in torch.channels_last) and `ours_tiled` (vae_tiling.py). Every row runs in a fresh subprocess; peak RSS is
VmHWM after a reset that follows building the model, minus the RSS then: the decode's own activations (on a
GPU the rows also record peak VRAM). The tiled decode's visual error against the untiled one is measured on
the random latent and on a smooth one (a smooth test image encoded by the same VAE), where seams show most.
On a shared machine the rows' times drift with the load; the "taken in turn" timing (ours, diffusers and
channels-last alternating in one process, median of per-round ratios) is the robust comparison.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import math
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from app.inference.checkpoints.vae_loading import vae_from_state_dict
from app.inference.networks.vae import VAE, tensor_to_uint8
from app.inference.networks.vae_tiling import TileConfig, decode_peak_bytes
from bench.common import peak_rss_bytes, reset_peak_rss, rss_bytes, write_result
from tests.factory.vae_model import full_size_vae_state

ROWS = ("ours", "diffusers", "ours_channels_last", "ours_tiled")
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def _ours(dtype: torch.dtype, channels_last: bool = False) -> VAE:
    return vae_from_state_dict(
        full_size_vae_state(), source="random full-size SD3 VAE", dtype=dtype, channels_last=channels_last
    )


def _diffusers(dtype: torch.dtype) -> torch.nn.Module:
    from diffusers import AutoencoderKL
    from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint

    config = {
        "in_channels": 3, "out_channels": 3, "down_block_types": ["DownEncoderBlock2D"] * 4,
        "up_block_types": ["UpDecoderBlock2D"] * 4, "block_out_channels": [128, 256, 512, 512],
        "layers_per_block": 2, "act_fn": "silu", "latent_channels": 16, "norm_num_groups": 32,
        "use_quant_conv": False, "use_post_quant_conv": False, "scaling_factor": 1.5305, "shift_factor": 0.0609,
        "sample_size": 1024,
    }  # fmt: skip  # the SD3 VAE's diffusers config
    state = {f"first_stage_model.{k}": v for k, v in full_size_vae_state().items()}
    model = AutoencoderKL(**config)
    model.load_state_dict(convert_ldm_vae_checkpoint(state, config), strict=True)
    return model.to(dtype).eval().requires_grad_(False)


def _child(row: str, dtype_name: str, latent_path: str, out_path: str, reps: int, tile: int, overlap: int):
    dtype = DTYPES[dtype_name]
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    z = torch.load(latent_path).to(device)
    if row == "diffusers":
        model = _diffusers(dtype).to(device)

        def decode() -> torch.Tensor:
            return model.decode(z.to(dtype)).sample.float()
    else:
        vae = _ours(dtype, channels_last=row == "ours_channels_last").to(device)
        tiling = TileConfig(tile, overlap) if row == "ours_tiled" else None

        def decode() -> torch.Tensor:
            return vae.decode(z, tiling)

    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)  # hand freed heap back, or the decode reuses it unseen by RSS
    reset_peak_rss()  # peak restarts here: the weights and imports are in `base`
    base = rss_bytes()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = []
    with torch.inference_mode():
        for i in range(reps):
            start = time.perf_counter()
            image = decode()
            if device.type == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
            if i == 0:
                torch.save(image.cpu(), out_path)
            del image
    result = {
        "row": row,
        "dtype": dtype_name,
        "times": times,
        "seconds": statistics.median(times),
        "peak_rss_bytes": peak_rss_bytes() - base,
    }
    if device.type == "cuda":
        result["peak_vram_bytes"] = torch.cuda.max_memory_allocated()
    print(json.dumps(result))


def _run_child(row: str, dtype: str, latent: Path, out: Path, reps: int, tiling: TileConfig) -> dict:
    cmd = [sys.executable, "-m", "bench.vae", "--child", row, dtype, str(latent), str(out), "--reps", str(reps),
           "--tile", str(tiling.max_tile), "--overlap", str(tiling.overlap)]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{row} {dtype} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def image_error(got: torch.Tensor, ref: torch.Tensor) -> dict:
    """Max and mean absolute difference in 8-bit levels of the saved images, and PSNR in dB."""
    a = torch.from_numpy(tensor_to_uint8(got)).float()
    b = torch.from_numpy(tensor_to_uint8(ref)).float()
    mse = ((a - b) ** 2).mean().item()
    return {
        "max_abs_255": (a - b).abs().max().item(),
        "mean_abs_255": (a - b).abs().mean().item(),
        "psnr_db": math.inf if mse == 0 else 10 * math.log10(255**2 / mse),
    }


def smooth_image(side: int) -> torch.Tensor:
    """(1, 3, side, side) in [-1, 1]: colour ramps, a soft disc and a slow wave, nothing sharp."""
    y, x = torch.meshgrid(torch.linspace(0, 1, side), torch.linspace(0, 1, side), indexing="ij")
    disc = torch.sigmoid((0.3 - ((x - 0.6) ** 2 + (y - 0.4) ** 2).sqrt()) * 20)
    r = 0.2 + 0.6 * x * (1 - disc) + 0.9 * disc
    g = 0.3 + 0.5 * y + 0.1 * torch.sin(6 * x)
    b = 0.7 - 0.5 * y * x + 0.1 * torch.cos(5 * y)
    return (torch.stack([r, g, b]).clamp(0, 1) * 2 - 1)[None]


def smooth_check(side: int, tiling: TileConfig) -> dict:
    """Tiled vs untiled decode (float32, ours) of the latent of a smooth image encoded by the same VAE."""
    vae = _ours(torch.float32)
    with torch.inference_mode():
        z = vae.encode(smooth_image(side))  # (1, 16, side/8, side/8)
        whole = vae.decode(z)
        tiled = vae.decode(z, tiling)
    return {"side": side, "tile": tiling.max_tile, "overlap": tiling.overlap, **image_error(tiled, whole)}


def interleaved(side: int, dtype_name: str, rounds: int) -> dict:
    """Decode times of ours, diffusers and ours in channels-last taken in turn in one process, so load from
    elsewhere on a shared machine hits all three alike: the median of each round's ratios."""
    dtype = DTYPES[dtype_name]
    z = torch.randn(1, 16, side // 8, side // 8, generator=torch.Generator().manual_seed(side))
    ours, theirs = _ours(dtype), _diffusers(dtype)
    channels_last = _ours(dtype, channels_last=True)
    decoders = {
        "ours": lambda: ours.decode(z),
        "diffusers": lambda: theirs.decode(z.to(dtype)).sample,
        "ours_channels_last": lambda: channels_last.decode(z),
    }
    times: dict[str, list[float]] = {name: [] for name in decoders}
    with torch.inference_mode():
        for i in range(rounds):
            names = list(decoders)[i % 3 :] + list(decoders)[: i % 3]  # rotate who goes first
            for name in names:
                start = time.perf_counter()
                decoders[name]()
                times[name].append(time.perf_counter() - start)
    ratios = {
        f"{name}_over_ours": statistics.median(t / o for t, o in zip(times[name], times["ours"], strict=True))
        for name in ("diffusers", "ours_channels_last")
    }
    return {"side": side, "dtype": dtype_name, "rounds": rounds, "times": times, **ratios}


def summarise(side: int, dtype: str, rows: dict[str, dict], images: dict[str, torch.Tensor]) -> dict:
    """Ratios and image differences between the rows that ran (each against `ours`, the untiled decode)."""
    out: dict = {"side": side, "dtype": dtype, "rows": rows}
    out["estimated_peak_bytes"] = decode_peak_bytes((side // 8, side // 8), DTYPES[dtype])
    if "ours" not in rows:
        return out
    ours, base = rows["ours"], images["ours"]
    for name, key in (
        ("diffusers", "diffusers"),
        ("ours_channels_last", "channels_last"),
        ("ours_tiled", "tiled"),
    ):
        if name in rows:
            out[f"time_{key}_over_ours"] = rows[name]["seconds"] / ours["seconds"]
            out[f"peak_{key}_over_ours"] = rows[name]["peak_rss_bytes"] / ours["peak_rss_bytes"]
            out[f"max_abs_diff_{key}"] = (images[name] - base).abs().max().item()
    if "ours_tiled" in rows:
        out["tiled_error"] = image_error(images["ours_tiled"], base)
    return out


def run(
    sizes: list[int],
    dtypes: list[str],
    rows: list[str],
    reps: int,
    tiling: TileConfig,
    smooth: tuple[int, TileConfig],
    interleave: tuple[int, int],
) -> dict:
    results = []
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        for side in sizes:
            latent = tmp / f"latent_{side}.pt"
            gen = torch.Generator().manual_seed(side)
            torch.save(torch.randn(1, 16, side // 8, side // 8, generator=gen), latent)
            for dtype in dtypes:
                measured = {}
                for row in rows:
                    measured[row] = _run_child(row, dtype, latent, tmp / f"{row}.pt", reps, tiling)
                    print(f"    {side}² {dtype:<8} {row:<20} {measured[row]['seconds']:7.1f} s  "
                          f"peak +{measured[row]['peak_rss_bytes'] / 1e9:5.2f} GB", flush=True)  # fmt: skip
                images = {row: torch.load(tmp / f"{row}.pt") for row in rows}
                results.append(summarise(side, dtype, measured, images))
                _report_size(results[-1])
    smooth_error = smooth_check(*smooth) if smooth[0] else None
    if smooth_error is not None:
        _report_smooth(smooth_error)
    taken_in_turn = (
        [interleaved(interleave[0], dtype, interleave[1]) for dtype in dtypes] if interleave[0] else []
    )
    for t in taken_in_turn:
        print(f"  {t['side']}² {t['dtype']} taken in turn, median of {t['rounds']} rounds: "
              f"ours/diffusers {1 / t['diffusers_over_ours']:.3f}, "
              f"channels-last/contiguous {t['ours_channels_last_over_ours']:.3f}")  # fmt: skip
    return {
        "benchmark": "vae",
        "device": "cuda" if torch.cuda.is_available() else "cpu",
        "reps": reps,
        "tiling": {"max_tile": tiling.max_tile, "overlap": tiling.overlap},
        "results": results,
        "smooth_tiled_error": smooth_error,
        "interleaved": taken_in_turn,
    }


def _report_size(s: dict) -> None:
    print(f"  {s['side']}² {s['dtype']}: estimated untiled peak {s['estimated_peak_bytes'] / 1e9:.2f} GB")
    for key, label in (("diffusers", "ours/diffusers"), ("channels_last", "channels-last/contiguous"),
                       ("tiled", "tiled/untiled")):  # fmt: skip
        if f"time_{key}_over_ours" in s:
            time_ratio, peak_ratio = s[f"time_{key}_over_ours"], s[f"peak_{key}_over_ours"]
            if key == "diffusers":  # reported the other way round: ours over theirs
                time_ratio, peak_ratio = 1 / time_ratio, 1 / peak_ratio
            print(f"    {label:<26} time {time_ratio:6.3f}   peak {peak_ratio:6.3f}   "
                  f"max |diff| {s[f'max_abs_diff_{key}']:.1e}")  # fmt: skip
    if (e := s.get("tiled_error")) is not None:
        print(f"    tiled vs untiled image: max {e['max_abs_255']:.0f}/255, mean {e['mean_abs_255']:.2f}/255, "
              f"PSNR {e['psnr_db']:.1f} dB")  # fmt: skip


def _report_smooth(m: dict) -> None:
    print(f"  smooth image {m['side']}², tiles <= {m['tile']} overlap {m['overlap']}: "
          f"max {m['max_abs_255']:.0f}/255, mean {m['mean_abs_255']:.2f}/255, PSNR {m['psnr_db']:.1f} dB")  # fmt: skip


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="*", default=[1024, 1440], help="image sides, multiples of 8")
    p.add_argument("--dtypes", nargs="+", choices=list(DTYPES), default=list(DTYPES))
    p.add_argument("--rows", nargs="+", choices=ROWS, default=list(ROWS))
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--tile", type=int, default=64, help="largest tile side in latent pixels")
    p.add_argument("--overlap", type=int, default=16, help="tile overlap in latent pixels")
    p.add_argument("--smooth-side", type=int, default=1024, help="smooth-image seam check size (0: skip)")
    p.add_argument("--smooth-tile", type=int, help="tile for the smooth check (default: --tile)")
    p.add_argument("--smooth-overlap", type=int, help="overlap for the smooth check (default: --overlap)")
    p.add_argument("--interleave", type=int, default=512, help="side for the in-turn timing (0: skip)")
    p.add_argument("--rounds", type=int, default=3, help="rounds of the in-turn timing")
    p.add_argument("--child", nargs=4, metavar=("ROW", "DTYPE", "LATENT", "OUT"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        _child(*args.child, reps=args.reps, tile=args.tile, overlap=args.overlap)
        return {}
    smooth_tiling = TileConfig(
        args.tile if args.smooth_tile is None else args.smooth_tile,
        args.overlap if args.smooth_overlap is None else args.smooth_overlap,
    )
    r = run(
        args.sizes,
        args.dtypes,
        args.rows,
        args.reps,
        TileConfig(args.tile, args.overlap),
        (args.smooth_side, smooth_tiling),
        (args.interleave, args.rounds),
    )
    print(f"  -> {write_result('vae', r)}")
    return r


if __name__ == "__main__":
    main()
