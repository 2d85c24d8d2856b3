"""Window start-up and main-thread stalls (issue 5).

1. Start-up: process start (the parent's clock just before spawning `python`) to the window's first paint, for
   `sd35-studio --model <tiny set>` through `app.main.run_app`. Goal: <= 1 s.
2. Stalls: the largest gap between ticks of a 5 ms QTimer on the UI thread while the real session generates
   with the tiny model set (previews every step), for a cold job (models load on the inference thread) and a
   warm one, each over the whole job and over its sampling phase. Goal: <= 50 ms. The cold job starts once
   discovery and the engine's background imports are done, as when a user writes the first prompt. The load
   average is recorded: on a machine shared with other work, OS scheduling dominates the outliers.

Both run in fresh child processes (own settings and data folders) so nothing is imported beforehand.
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

from bench.common import write_result

ROOT = Path(__file__).resolve().parent.parent

_STARTUP_CHILD = """
import time, sys
from pathlib import Path
from app.main import run_app

def on_window(window):
    def painted():
        print("PAINTED", time.time(), "torch" in sys.modules, flush=True)
        window.close()
    window.first_painted.connect(painted)

run_app(model=Path(sys.argv[1]), output_dir=Path(sys.argv[2]), on_window=on_window)
"""

_STALL_CHILD = """
import asyncio, json, sys, time
from pathlib import Path
from PySide6.QtCore import QTimer
from app.main import run_app

size, steps, count = int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
ticks, marks, result = [], {}, {}

def on_window(window):
    timer = QTimer(window)
    timer.setInterval(5)
    timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
    timer.start()
    c = window.controller

    def gaps(start, end):
        inside = [t for t in ticks if start <= t <= end]
        g = sorted(b - a for a, b in zip(inside, inside[1:]))
        if not g:
            return {}
        return {"max_ms": round(g[-1] * 1000, 1), "p99_ms": round(g[int(0.99 * (len(g) - 1))] * 1000, 1),
                "over_50ms": sum(x > 0.05 for x in g), "ticks": len(g)}

    async def drive():
        # As a user would: the prompt is typed while discovery and the engine's imports run in the background.
        while not window.picker.discovered or "detecting" in window.device_label.text():
            await asyncio.sleep(0.05)
        window.state.update(prompt="a lighthouse at dawn", width=size, height=size, steps=steps, count=count,
                            preview="linear", random_seed=False, seed=1)
        job = {}
        c.step_completed.connect(lambda s: job.setdefault("first_step", time.perf_counter()))
        c.job_ended.connect(lambda _job, outcome: job["done"].done() or job["done"].set_result(outcome))
        for name in ("cold", "warm"):
            job.clear()
            job["done"] = asyncio.get_running_loop().create_future()
            start = time.perf_counter()
            window.commands.generate.generate()
            outcome = await job["done"]
            end = time.perf_counter()
            first_step = [job["first_step"]] if "first_step" in job else []
            result[name] = {"status": outcome.status.value, "seconds": round(end - start, 2),
                            "whole_job": gaps(start, end), "sampling": gaps(first_step[0], end) if first_step else {}}
        window.close()

    asyncio.ensure_future(drive())

run_app(model=Path(sys.argv[1]), output_dir=Path(sys.argv[2]), on_window=on_window)
print("RESULT", json.dumps(result), flush=True)
"""


def _child_env(home: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        QT_QPA_PLATFORM=env.get("QT_QPA_PLATFORM", "offscreen"),
        XDG_CONFIG_HOME=str(home / "config"),
        XDG_DATA_HOME=str(home / "data"),
        HF_HUB_CACHE=str(home / "hf"),
        PYTHONPATH=str(ROOT),
    )
    return env


def measure_startup(model: Path, runs: int) -> dict:
    times, torch_loaded = [], []
    for i in range(runs):
        with tempfile.TemporaryDirectory() as tmp:
            home = Path(tmp)
            spawned = time.time()
            out = subprocess.run(
                [sys.executable, "-c", _STARTUP_CHILD, str(model), str(home / "out")],
                capture_output=True, text=True, env=_child_env(home), cwd=ROOT, timeout=120,
            )  # fmt: skip
        line = next((ln for ln in out.stdout.splitlines() if ln.startswith("PAINTED")), None)
        if line is None:
            raise RuntimeError(f"start-up run {i} printed no paint time:\n{out.stdout}\n{out.stderr}")
        _, painted, torch_flag = line.split()
        times.append(float(painted) - spawned)
        torch_loaded.append(torch_flag == "True")
    return {
        "runs_s": [round(t, 3) for t in times],
        "median_s": round(statistics.median(times), 3),
        "min_s": round(min(times), 3),
        "torch_imported_before_paint": any(torch_loaded),
        "goal_s": 1.0,
    }


def measure_stalls(model: Path, size: int, steps: int, count: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        out = subprocess.run(
            [sys.executable, "-c", _STALL_CHILD, str(model), str(home / "out"), str(size), str(steps), str(count)],
            capture_output=True, text=True, env=_child_env(home), cwd=ROOT, timeout=600,
        )  # fmt: skip
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith("RESULT")), None)
    if line is None:
        raise RuntimeError(f"the stall run printed no result:\n{out.stdout}\n{out.stderr[-4000:]}")
    return {
        "size": size,
        "steps": steps,
        "images": count,
        "goal_ms": 50,
        **json.loads(line[len("RESULT ") :]),
    }


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=5, help="start-up measurements (default 5)")
    p.add_argument("--size", type=int, default=512, help="image side for the stall run (tiny set: <= 512)")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--images", type=int, default=2)
    args = p.parse_args(argv)

    from tests.factory.snapshot import write_snapshot

    with tempfile.TemporaryDirectory() as tmp:
        model = write_snapshot(Path(tmp) / "sd3.5-medium-tiny", "medium")
        startup = measure_startup(model, args.runs)
        print(
            f"start-up to first paint: median {startup['median_s']:.3f} s, min {startup['min_s']:.3f} s "
            f"(runs {startup['runs_s']}; goal <= 1 s); torch imported before paint: "
            f"{startup['torch_imported_before_paint']}"
        )
        stalls = measure_stalls(model, args.size, args.steps, args.images)
    for name in ("cold", "warm"):
        job = stalls[name]
        print(
            f"{name} job ({args.images} x {args.size}px, {args.steps} steps, {job['seconds']} s): largest UI stall "
            f"{job['whole_job'].get('max_ms')} ms over the whole job (p99 {job['whole_job'].get('p99_ms')} ms, "
            f"{job['whole_job'].get('over_50ms')} gaps > 50 ms); while sampling {job['sampling'].get('max_ms')} ms"
        )
    result = {"startup": startup, "stalls": stalls, "load_average": os.getloadavg(), "cpus": os.cpu_count()}
    path = write_result("startup", result)
    print(f"-> {path}")
    return result


if __name__ == "__main__":
    main()
