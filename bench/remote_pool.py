"""Throughput of a Compare-Seeds-style run (N seeds) over two local ComfyUI servers vs one, in the same run.

Both servers run the tiny SD3 set on this machine's CPUs; with two CPU-bound servers on the same cores the gain
is bounded by the cores they do not share, so the ratio reported is what this machine allows, not the design's.
With --pin each server is started pinned to a core of its own (server i on core i, inherited by the whole
server process tree) with one torch/OpenMP thread (OMP_NUM_THREADS=MKL_NUM_THREADS=1), so "one" is one pinned
server and "two" is two servers on two separate cores. The machine's load average (other processes share it) is
recorded before and after.

    python -m bench.remote_pool [--seeds 8] [--pin]   (needs ../shared/comfyui-server)
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

from app.inference.api.events import ImageFinished
from app.inference.api.request import GenerationRequest
from app.remote.pool import ServerPool
from bench.common import write_result
from tests.comfyui.server import TINY_CHECKPOINT, TINY_CLIP_L, start_server, tiny_models_dir

_ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


@contextlib.contextmanager
def _pinned(core: int | None) -> Iterator[None]:
    """While inside: this thread (so every process it starts) runs on `core` only, with one OpenMP thread."""
    if core is None:
        yield
        return
    before_cpus, before_env = os.sched_getaffinity(0), {k: os.environ.get(k) for k in _ONE_THREAD}
    os.sched_setaffinity(0, {core})
    os.environ.update(_ONE_THREAD)
    try:
        yield
    finally:
        os.sched_setaffinity(0, before_cpus)
        for k, v in before_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _start(index: int, pin: bool):
    cores = sorted(os.sched_getaffinity(0))
    if pin and len(cores) < 2:
        raise RuntimeError("--pin needs two cores this process may run on")
    with _pinned(cores[index] if pin else None):
        server = start_server(Path(tempfile.mkdtemp(prefix="bench-pool-")))
    if pin:
        actual = os.sched_getaffinity(server.pid)
        assert actual == {cores[index]}, f"server {index} runs on cores {actual}, not {cores[index]}"
    return server


def _load() -> tuple[float, float, float]:
    return os.getloadavg()


def _busy_seconds(server, since: float) -> float:
    """The server's own execution time (execution_start -> execution_success) of the prompts begun after `since`."""
    total = 0.0
    for entry in server.get("/history").values():
        stamps = {name: data.get("timestamp") for name, data in entry["status"]["messages"]}
        start, end = stamps.get("execution_start"), stamps.get("execution_success")
        if start is not None and end is not None and start / 1000 >= since:
            total += (end - start) / 1000
    return total


_SPIN = (
    "import os, sys, time\nos.sched_setaffinity(0, {int(sys.argv[1])})\nt = time.perf_counter()\n"
    "x = 0\nfor i in range(6_000_000):\n    x += i * i\nprint(time.perf_counter() - t)"
)


def machine_scaling() -> float:
    """What the cores allow, as a baseline in the same run: a CPU-bound loop on one core alone vs the same loop on
    two cores at once (two processes, each pinned): 2.0 when the cores are free and separate."""
    cores = sorted(os.sched_getaffinity(0))[:2]
    alone = float(subprocess.run([sys.executable, "-c", _SPIN, str(cores[0])], capture_output=True, text=True,
                                 check=True).stdout)  # fmt: skip
    procs = [subprocess.Popen([sys.executable, "-c", _SPIN, str(c)], stdout=subprocess.PIPE, text=True)
             for c in cores]  # fmt: skip
    together = max(float(p.communicate()[0]) for p in procs)
    return 2 * alone / together


def run(seeds: int = 8, steps: int = 4, size: int = 64, pin: bool = False) -> dict:
    load_before = _load()
    scaling_before = machine_scaling() if pin else None
    servers = [_start(i, pin) for i in range(2)]
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
            since, started = time.time(), time.perf_counter()
            events = list(pool.run(TINY_CHECKPOINT, request))
            timings[name] = time.perf_counter() - started
            # How much of the wall time the servers spent executing: near 1 means they were the bottleneck.
            busy = sum(_busy_seconds(server, since) for server in servers if server.url in urls)
            timings[f"{name}_server_busy"] = busy / (timings[name] * len(urls))
            made = [e for e in events if isinstance(e, ImageFinished)]
            assert len(made) == seeds, events[-1]
            timings[f"{name}_by_server"] = {u: sum(e.engine == u for e in made) for u in urls}
            pool.close()
    finally:
        for server in servers:
            server.stop()
    return {
        "seeds": seeds,
        "steps": steps,
        "pinned": pin,
        "cpu_count": os.cpu_count(),
        "load_before": load_before,
        "load_after": _load(),
        "machine_scaling_before": scaling_before,
        "machine_scaling_after": machine_scaling() if pin else None,
        **timings,
        "speedup": timings["one"] / timings["two"],
    }


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--seeds", type=int, default=8)
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--pin", action="store_true", help="each server on a core of its own, one thread each")
    args = p.parse_args(argv)
    r = run(args.seeds, args.steps, pin=args.pin)
    where = "each server pinned to its own core, 1 thread" if r["pinned"] else "CPUs shared by both servers"
    print(f"{r['seeds']} seeds: one server {r['one']:.1f} s, two servers {r['two']:.1f} s -> {r['speedup']:.2f}x "
          f"(split {r['two_by_server']}; {r['cpu_count']} CPUs, {where}; load average before "
          f"{r['load_before'][0]:.2f}, after {r['load_after'][0]:.2f}); servers busy executing "
          f"{100 * r['one_server_busy']:.0f} % of the wall time with one, {100 * r['two_server_busy']:.0f} % "
          f"with two")  # fmt: skip
    if r["pinned"]:
        print(
            f"what the cores allowed (a CPU-bound loop on two pinned cores vs one, same run): "
            f"{r['machine_scaling_before']:.2f}x before, {r['machine_scaling_after']:.2f}x after"
        )
    write_result("remote_pool_pinned" if r["pinned"] else "remote_pool", r)
    return r


if __name__ == "__main__":
    main()
