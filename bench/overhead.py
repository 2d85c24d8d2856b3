"""Whole-job overhead: time per step spent outside the denoiser network (schedule, guidance arithmetic,
sampler update, previews, events), for a tiny MMDiT on real latent sizes (1024x1024 -> 16 x 128 x 128).

The network's own time is measured with forward hooks; the rest of each step is overhead.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from app.inference.api.cancel import CancelToken
from app.inference.api.events import StepUpdate
from app.inference.api.request import GenerationRequest
from app.inference.checkpoints.model_set import locate_model_set
from app.inference.pipeline.session import GenerationSession
from bench.common import write_result
from tests.factory.mmdit_model import TinyMMDiTSpec, tiny_mmdit_state
from tests.factory.text_models import write_text_models
from tests.factory.vae_model import write_tiny_vae


def _snapshot(folder: Path, side: int) -> Path:
    from safetensors.torch import save_file

    spec = TinyMMDiTSpec(pos_side=side // 16, depth=10, source_blocks=(0, 1, 2, 3, 4, 13, 14, 15, 16, 23))
    state = tiny_mmdit_state("medium", spec) | write_tiny_vae(None)
    save_file(state, str(folder / "sd3.5_medium.safetensors"))
    write_text_models(folder)
    return folder


def run(size: int = 1024, steps: int = 8, preview: str = "linear") -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        model_set = locate_model_set(_snapshot(Path(tmp), size))
        session = GenerationSession(device="cpu", dtype="float32", preview=preview)
        request = GenerationRequest(prompt="a lighthouse", negative="fog", steps=steps, width=size, height=size,
                                    seed=1)  # fmt: skip
        list(session.run(model_set, GenerationRequest(prompt="x", steps=1, width=64, height=64)))  # load once
        mmdit = session.engine.mmdit
        calls: list[list[float]] = []  # [start, end] of every network forward
        job_forward = mmdit.forward_prepared  # what a job calls (its per-job inputs prepared once)

        def timed(*args, **kwargs):
            calls.append([time.perf_counter(), 0.0])
            out = job_forward(*args, **kwargs)
            calls[-1][1] = time.perf_counter()
            return out

        mmdit.forward_prepared = timed
        step_events: list[float] = []

        def on_event(event):
            if isinstance(event, StepUpdate):
                step_events.append(time.perf_counter())

        session.execute(model_set, request, CancelToken(), on_event)
    # Between the first and the last step event: everything that is not a network forward is overhead
    # (guidance arithmetic, the sampler update, previews, events). Prompt encoding happens before step 1.
    first, last = step_events[0], step_events[-1]
    network = sum(end - begin for begin, end in calls if begin >= first and end <= last)
    n = len(step_events) - 1
    total = last - first
    per_step_network = network / n
    overhead = (total - network) / n
    return {
        "benchmark": "job_overhead",
        "size": size,
        "steps": steps,
        "preview": preview,
        "step_s": total / n,
        "network_s_per_step": per_step_network,
        "overhead_s_per_step": overhead,
    }


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--size", type=int, default=1024)
    p.add_argument("--steps", type=int, default=8)
    args = p.parse_args(argv)
    rows = [run(args.size, args.steps, preview) for preview in ("off", "linear")]
    print(f"job overhead outside the network, tiny MMDiT, {args.size}^2 latent, {args.steps} steps, CFG")
    for r in rows:
        step, net, over = (r[k] * 1000 for k in ("step_s", "network_s_per_step", "overhead_s_per_step"))
        print(
            f"  preview {r['preview']:<7} step {step:8.2f} ms, network {net:8.2f} ms, outside it {over:7.2f} ms"
        )
    print(f"  -> {write_result('overhead', {'rows': rows})}")
    return {"rows": rows}


if __name__ == "__main__":
    main()
