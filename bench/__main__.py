"""python -m bench [NAME ...]: run every benchmark (or the named ones), print a summary table, write JSON.

Each benchmark measures its baseline in the same run and writes bench/results/<name>.json.
"""

from __future__ import annotations

import argparse
import importlib
import json
import platform
import time

import torch

from bench.common import write_result

BENCHMARKS = {
    "step": "denoiser step at Medium and Large widths vs diffusers",
    "load": "checkpoint loading: time and peak RSS vs weight bytes",
    "preview": "preview cost vs step time",
    "overhead": "per-step time outside the network",
    "vae": "full-size VAE decode at 1024² and 1440² vs diffusers; channels-last; tiled decoding",
    "masked": "masked sampling (inpaint, differential diffusion) overhead per step vs plain",
}
OPTIONAL = {  # benchmarks that arrive with other parts of the app; run when present
    "scan": "model discovery over a tree of files",
    "load_formats": "loading every file format and precision: time and peak RSS",
    "startup": "window start-up and main-thread stalls",
    "gallery": "gallery of 10,000 images",
    "controlnet": "ControlNet step overhead at Large width, plan sizes, 1024² preprocessing",
    "remote": "remote engine on a local ComfyUI: per-image overhead vs the server's time, preview latency",
    "remote_pool": "a seed run over two local ComfyUI servers vs one",
    "remote_canvas": "a real window on a local ComfyUI: preview frame on the socket -> painted on the canvas",
    "remote_img2img": "img2img on a local ComfyUI: our schedule (as the remote engine sends it) vs KSampler's",
    "lora": "LoRA apply/switch at Medium widths, fp8 side-branch overhead, header scan of 500 LoRAs",
    "mask_paint": "mask brush stroke segment on a 2048² input vs the same canvas area without a mask",
}


def main(argv=None) -> None:
    names = [*BENCHMARKS, *OPTIONAL]
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("names", nargs="*", help=f"benchmarks to run (default: all of {', '.join(names)})")
    args = p.parse_args(argv)
    unknown = sorted(set(args.names) - set(names))
    if unknown:
        p.error(f"unknown benchmark(s): {', '.join(unknown)}")
    chosen = args.names or names
    machine = {
        "python": platform.python_version(), "torch": torch.__version__, "machine": platform.machine(),
        "cpu_threads": torch.get_num_threads(), "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available()
        else None,
    }  # fmt: skip
    summary = {"machine": machine, "results": {}}
    for name in chosen:
        try:
            module = importlib.import_module(f"bench.{name}")
        except ModuleNotFoundError:
            print(f"== {name}: not present in this checkout, skipped")
            continue
        print(f"== {name}: {BENCHMARKS.get(name) or OPTIONAL[name]}")
        started = time.perf_counter()
        summary["results"][name] = module.main([])
        print(f"   ({time.perf_counter() - started:.0f} s)\n")
    path = write_result("summary", summary)
    print(json.dumps(machine))
    print(f"summary -> {path}")


if __name__ == "__main__":
    main()
