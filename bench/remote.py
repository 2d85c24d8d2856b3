"""The remote engine's own cost on loopback, against a real ComfyUI server running the tiny SD3 set (CPU).

Per image: the client's wall time of a one-seed job (RemoteSession.execute: queue, follow /ws, /history + /view,
decode) against the server's own execution time of that prompt (its execution_start -> execution_success
timestamps), in the same run. The difference is split into ours (POST /prompt, then from the result's
`executing` message to ImageFinished: /history, /view, PNG decode) and the server's (its queue-to-start delay,
and how late its own messages arrive after their timestamps: a busy server's event loop), and compared with one
HTTP round trip (median GET /queue). Preview latency: a binary preview frame's arrival on our socket -> the
StepUpdate carrying the decoded preview handed to the consumer (the window's paint is not measured here).

    python -m bench remote        (needs ../shared/comfyui-server; starts and stops its own server)
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from app.inference.api.cancel import CancelToken
from app.inference.api.events import ImageFinished, StepUpdate
from app.inference.api.request import GenerationRequest
from app.remote.messages import Message, Preview
from app.remote.session import RemoteSession
from bench.common import write_result
from tests.comfyui.server import TINY_CHECKPOINT, TINY_CLIP_L, start_server, tiny_models_dir


def _server_seconds(entry: dict) -> float:
    stamps = {name: data.get("timestamp") for name, data in entry["status"]["messages"]}
    return (stamps["execution_success"] - stamps["execution_start"]) / 1000.0


def run(images: int = 6, steps: int = 4, size: int = 64) -> dict:
    base = Path(tempfile.mkdtemp(prefix="bench-remote-"))
    server = start_server(base)
    try:
        models = tiny_models_dir()
        server.link_model("checkpoints", models / "checkpoints" / TINY_CHECKPOINT)
        server.link_model("clip", models / "clip" / TINY_CLIP_L)
        session = RemoteSession(server.url, partial_text_encoders=True)
        seen: list[tuple[float, object]] = []  # (arrival wall clock, message) on our socket
        receive, request_http = session.socket.receive, session.http.request
        posts: list[float] = []

        def timed_receive(timeout: float):
            message = receive(timeout)
            if message is not None:
                seen.append((time.time(), message))
            return message

        def timed_request(method, path, *args, **kwargs):
            started = time.time()
            try:
                return request_http(method, path, *args, **kwargs)
            finally:
                if path == "/prompt":
                    posts.append(time.time() - started)

        session.socket.receive = timed_receive  # type: ignore[method-assign]
        session.http.request = timed_request  # type: ignore[method-assign]
        request = GenerationRequest(prompt="a fox", steps=steps, width=size, height=size, use_t5=False,
                                    sampler="euler", cfg=2.0)  # fmt: skip
        list(session.run(TINY_CHECKPOINT, request))  # warm-up: the server loads the models
        rows, latencies = [], []
        for seed in range(1, images + 1):
            events: list[tuple[float, object]] = []
            seen.clear()
            posts.clear()
            started = time.time()
            session.execute(TINY_CHECKPOINT, replace(request, seed=seed), CancelToken(),
                            lambda e, out=events: out.append((time.time(), e)))  # fmt: skip
            wall = time.time() - started
            (done_at,) = [t for t, e in events if isinstance(e, ImageFinished)]
            stamps = {m.type: m.data.get("timestamp") / 1000 for _, m in seen
                      if isinstance(m, Message) and m.type in ("execution_start", "execution_success")}  # fmt: skip
            arrived = {m.type: t for t, m in seen if isinstance(m, Message)}
            finished_msg = max(t for t, m in seen if isinstance(m, Message) and m.type == "executing"
                               and m.data.get("node", 0) is None)  # fmt: skip
            server_s = stamps["execution_success"] - stamps["execution_start"]
            ours = posts[0] + (done_at - finished_msg)  # queueing + fetching and decoding the result
            arrivals = [t for t, m in seen if isinstance(m, Preview)]
            shown = [t for t, e in events if isinstance(e, StepUpdate) and e.preview is not None]
            latencies += [t - a for t, a in zip(shown, arrivals, strict=False)]
            rows.append({"seed": seed, "client_s": wall, "server_s": server_s, "overhead_s": wall - server_s,
                         "ours_s": ours, "start_delay_s": stamps["execution_start"] - started,
                         "delivery_delay_s": arrived["execution_success"] - stamps["execution_success"]})  # fmt: skip
        round_trips = []
        for _ in range(20):
            t = time.perf_counter()
            server.get("/queue")
            round_trips.append(time.perf_counter() - t)
        session.close()
    finally:
        server.stop()
    med = {k: statistics.median(r[k] for r in rows) for k in rows[0] if k != "seed"}
    rtt = statistics.median(round_trips)
    return {
        "images": images, "steps": steps, "size": size, "round_trip_s": rtt,
        **{f"{k}_median": v for k, v in med.items()},
        "overhead_ratio": med["overhead_s"] / med["server_s"], "ours_ratio": med["ours_s"] / med["server_s"],
        "preview_latency_ms_median": 1000 * statistics.median(latencies) if latencies else None,
        "preview_latency_ms_max": 1000 * max(latencies) if latencies else None,
        "previews": len(latencies), "rows": rows,
    }  # fmt: skip


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--images", type=int, default=6)
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--size", type=int, default=64)
    args = p.parse_args(argv)
    result = run(args.images, args.steps, args.size)
    r = result
    ms = {k: 1000 * v for k, v in r.items() if k.endswith("_median") and "latency" not in k}
    print(f"server's own execution {r['server_s_median']:.3f} s/image (medians of {r['images']} one-seed jobs); "
          f"client wall minus that: {ms['overhead_s_median']:.0f} ms = {100 * r['overhead_ratio']:.1f} %; ours "
          f"(queue + fetch + decode) {ms['ours_s_median']:.1f} ms = {100 * r['ours_ratio']:.2f} %; the server's "
          f"start delay {ms['start_delay_s_median']:.0f} ms, its message delivery delay "
          f"{ms['delivery_delay_s_median']:.0f} ms; one round trip {r['round_trip_s'] * 1000:.1f} ms")  # fmt: skip
    if result["preview_latency_ms_median"] is not None:
        print(f"preview frame -> StepUpdate: median {result['preview_latency_ms_median']:.1f} ms, "
              f"max {result['preview_latency_ms_max']:.1f} ms over {result['previews']} previews")  # fmt: skip
    write_result("remote", result)
    return result


if __name__ == "__main__":
    main()
