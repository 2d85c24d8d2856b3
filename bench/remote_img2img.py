"""Image-to-image on a ComfyUI server: our img2img schedule (what the remote engine sends) against KSampler's own.

1. Schedules (no server): for SD3.5 Large's defaults, the steps run and the first sigma of our rule (drop the first
   int(N·(1 − d)) sigmas of the N-step schedule) and of ComfyUI's KSampler(denoise) (the last N of int(N/d)).
2. On a real ComfyUI server running the tiny SD3 set (CPU): the same img2img request sent as the remote engine
   sends it (BasicScheduler + SplitSigmas + SamplerCustom) and as KSampler(denoise) (the server's node list
   without SamplerCustom makes the engine fall back to it), in the same run: pixel difference and time per image.
Our local engine cannot run the tiny ComfyUI set (it has CLIP-L only; ours needs CLIP-G too), so a remote-vs-local
pixel comparison is not made here.

    python -m bench remote_img2img      (needs ../shared/comfyui-server; starts and stops its own server)
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from app.inference.api.events import ImageFinished
from app.inference.api.request import GenerationRequest
from app.remote.session import RemoteSession
from bench.common import write_result
from tests.comfyui.server import TINY_CHECKPOINT, link_tiny_set, start_server, tiny_models_dir

CASES = ((4, 0.5), (20, 0.75), (28, 0.6), (40, 0.8), (50, 0.75))


def schedules() -> list[dict]:
    from app.remote.job import _schedule

    r = GenerationRequest(prompt="x").resolved("large")
    rows = []
    for steps, denoise in CASES:
        ours = _schedule(r.scheduler, steps, r.shift, denoise, ours=True)
        comfy = _schedule(r.scheduler, steps, r.shift, denoise, ours=False)
        rows.append({"steps": steps, "denoise": denoise, "ours_steps": len(ours), "ours_first_sigma": ours[0],
                     "ksampler_steps": len(comfy), "ksampler_first_sigma": comfy[0]})  # fmt: skip
    return rows


def _image(session: RemoteSession, request: GenerationRequest) -> tuple[np.ndarray, float, object]:
    started = time.perf_counter()
    (done,) = [e for e in session.run(TINY_CHECKPOINT, request) if isinstance(e, ImageFinished)]
    return done.pixels.astype(np.int16), time.perf_counter() - started, done.comfy_files


def on_server(images: int, steps: int, denoise: float, size: int) -> dict:
    base = Path(tempfile.mkdtemp(prefix="bench-remote-img2img-"))
    server = start_server(base)
    try:
        link_tiny_set(server, tiny_models_dir())
        init = base / "init.png"
        from PIL import Image

        Image.fromarray(np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8)).save(init)
        ours, theirs = (RemoteSession(server.url, partial_text_encoders=True) for _ in range(2))
        info = theirs.capabilities()
        theirs.info = dataclasses.replace(info, nodes=info.nodes - {"SamplerCustom"})  # KSampler's schedule
        request = GenerationRequest(prompt="a fox", steps=steps, width=size, height=size, use_t5=False,
                                    sampler="euler", cfg=2.0, init_image=init, denoise=denoise)  # fmt: skip
        _image(ours, request), _image(theirs, request)  # warm-up: the server loads the models
        rows = []
        for seed in range(1, images + 1):
            a, ta, files_a = _image(ours, dataclasses.replace(request, seed=seed))
            b, tb, files_b = _image(theirs, dataclasses.replace(request, seed=seed))
            assert files_a.our_schedule and not files_b.our_schedule
            diff = np.abs(a - b)
            rows.append({"seed": seed, "mean_abs_diff": float(diff.mean()), "max_abs_diff": int(diff.max()),
                         "ours_s": ta, "ksampler_s": tb})  # fmt: skip
        ours.close(), theirs.close()
    finally:
        server.stop()
    med = {k: statistics.median(r[k] for r in rows) for k in rows[0] if k != "seed"}
    return {"images": images, "steps": steps, "denoise": denoise, "size": size,
            **{f"{k}_median": v for k, v in med.items()}, "time_ratio": med["ours_s"] / med["ksampler_s"],
            "rows": rows}  # fmt: skip


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--images", type=int, default=3)
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--denoise", type=float, default=0.6)
    p.add_argument("--size", type=int, default=64)
    args = p.parse_args(argv)
    result = {"schedules": schedules(), "server": on_server(args.images, args.steps, args.denoise, args.size)}
    for r in result["schedules"]:
        print(
            f"{r['steps']} steps at denoise {r['denoise']}: ours {r['ours_steps']} steps from sigma "
            f"{r['ours_first_sigma']:.5f}; KSampler {r['ksampler_steps']} from {r['ksampler_first_sigma']:.5f}"
        )
    s = result["server"]
    print(f"tiny set on the server, {s['steps']} steps at denoise {s['denoise']}, {s['images']} seeds: our "
          f"schedule vs KSampler's differ by {s['mean_abs_diff_median']:.1f} levels on average (max "
          f"{s['max_abs_diff_median']:.0f}); time per image ours/KSampler {s['time_ratio']:.2f}")  # fmt: skip
    write_result("remote_img2img", result)
    return result


if __name__ == "__main__":
    main()
