"""Throughput of a Compare-Seeds-style run (N seeds) over two local ComfyUI servers vs one, in the same run.

Both servers run the tiny SD3 set on this machine's CPUs; with two CPU-bound servers on the same cores the gain
is bounded by the cores they do not share, so the ratio reported is what this machine allows, not the design's.

    python -m bench remote_pool [--seeds 8]   (needs ../shared/comfyui-server)
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from app.inference.api.events import ImageFinished
from app.inference.api.request import GenerationRequest
from app.remote.pool import ServerPool
from bench.common import write_result
from tests.comfyui.server import TINY_CHECKPOINT, TINY_CLIP_L, start_server, tiny_models_dir


def run(seeds: int = 8, steps: int = 4, size: int = 64) -> dict:
    servers = [start_server(Path(tempfile.mkdtemp(prefix="bench-pool-"))) for _ in range(2)]
    try:
        models = tiny_models_dir()
        for server in servers:
            server.link_model("checkpoints", models / "checkpoints" / TINY_CHECKPOINT)
            server.link_model("clip", models / "clip" / TINY_CLIP_L)
        request = GenerationRequest(prompt="a fox", steps=steps, width=size, height=size, use_t5=False,
                                    sampler="euler", cfg=2.0, count=seeds)  # fmt: skip
        timings = {}
        for name, urls in (("one", [servers[0].url]), ("two", [s.url for s in servers])):
            for url in urls:  # every server loads the models before the timed run
                warm = ServerPool([url], partial_text_encoders=True)
                list(warm.run(TINY_CHECKPOINT, replace(request, count=1, seed=10_000 + len(timings))))
                warm.close()
            pool = ServerPool(urls, partial_text_encoders=True)
            started = time.perf_counter()
            events = list(pool.run(TINY_CHECKPOINT, request))
            timings[name] = time.perf_counter() - started
            made = [e for e in events if isinstance(e, ImageFinished)]
            assert len(made) == seeds, events[-1]
            timings[f"{name}_by_server"] = {u: sum(e.engine == u for e in made) for u in urls}
            pool.close()
    finally:
        for server in servers:
            server.stop()
    return {
        "seeds": seeds,
        "cpu_count": os.cpu_count(),
        **timings,
        "speedup": timings["one"] / timings["two"],
    }


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--seeds", type=int, default=8)
    args = p.parse_args(argv)
    r = run(args.seeds)
    print(f"{r['seeds']} seeds: one server {r['one']:.1f} s, two servers {r['two']:.1f} s -> {r['speedup']:.2f}x "
          f"(split {r['two_by_server']}; {r['cpu_count']} CPUs shared by both servers)")  # fmt: skip
    write_result("remote_pool", r)
    return r


if __name__ == "__main__":
    main()
