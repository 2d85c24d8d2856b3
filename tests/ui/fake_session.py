"""A scripted stand-in for `app.inference.pipeline.session.GenerationSession` with the same shape, for fast UI tests.

It yields the real event types of `app.inference.api.events` with small previews and sleeps `step_seconds` per
step, checks the cancel token at every step like the real session, and fails like the real one on a model
path whose name contains "broken".
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import ClassVar

import numpy as np

from app.inference.api.events import (
    ImageCancelled,
    ImageFinished,
    JobCancelled,
    JobFailed,
    JobFinished,
    ModelLoaded,
    ModelLoading,
    StepUpdate,
)
from app.metadata.a1111 import format_infotext
from app.metadata.png_info import save_png
from app.ui.generation.worker import EngineBackend


class FakeCancelToken:
    def __init__(self) -> None:
        self._job = threading.Event()
        self._images: set[int] = set()
        self._lock = threading.Lock()
        self.cancelled_at: float | None = None

    def cancel(self) -> None:
        if not self._job.is_set():
            self.cancelled_at = time.perf_counter()
        self._job.set()

    def cancel_image(self, index: int) -> None:
        with self._lock:
            self._images.add(index)

    @property
    def is_cancelled(self) -> bool:
        return self._job.is_set()

    def image_cancelled(self, index: int) -> bool:
        with self._lock:
            return index in self._images


class FakeSession:
    step_seconds = 0.01
    instances: ClassVar[list[FakeSession]] = []

    def __init__(
        self, device: str = "auto", dtype: str = "auto", preview: str = "auto", preview_every: int = 1
    ):
        self.options = (device, dtype, preview, preview_every)
        self.loaded: Path | None = None
        self.runs: list[tuple[Path, object]] = []
        self.events_after_cancel = 0
        FakeSession.instances.append(self)

    def run(self, model_path, request, cancel):
        path = Path(model_path)
        self.runs.append((path, request))
        if "broken" in path.name or not path.exists():
            yield JobFailed(
                f"{path} is not a usable SD3.5 checkpoint (the file is truncated); "
                "download it again or choose another model",
                "model",
            )
            return
        started = time.perf_counter()
        if self.loaded != path:
            for i, component in enumerate(("text encoders", "diffusion model", "VAE"), 1):
                yield ModelLoading(component, i, 3)
            self.loaded = path
            yield ModelLoaded("medium", path.name, 0.01)
        done = 0
        for k in range(request.count):
            seed = request.seed + k
            image_started = time.perf_counter()
            for i in range(request.steps):
                if cancel.is_cancelled:
                    yield JobCancelled(done)
                    return
                if cancel.image_cancelled(k):
                    yield ImageCancelled(k, seed)
                    break
                time.sleep(self.step_seconds)
                elapsed = time.perf_counter() - image_started
                its = (i + 1) / elapsed
                preview = np.full(
                    (min(request.height, 64), min(request.width, 64), 3), (i * 40) % 256, np.uint8
                )
                yield StepUpdate(
                    k,
                    seed,
                    i + 1,
                    request.steps,
                    1.0 - i / request.steps,
                    elapsed,
                    its,
                    (request.steps - i - 1) / its,
                    preview,
                )
            else:
                if cancel.is_cancelled:
                    yield JobCancelled(done)
                    return
                pixels = np.zeros((request.height, request.width, 3), np.uint8)
                pixels[..., 0] = seed % 256
                pixels[..., 1] = 128
                infotext = format_infotext(
                    request.prompt,
                    request.negative,
                    {
                        "Steps": request.steps,
                        "Seed": seed,
                        "CFG scale": f"{request.cfg:g}",
                        "Size": f"{request.width}x{request.height}",
                        "Model": path.name,
                    },
                )
                yield ImageFinished(k, seed, pixels, None, request, infotext)
                done += 1
        yield JobFinished(done, time.perf_counter() - started)


class RaisingSession(FakeSession):
    """Breaks the session contract (raises mid-job): the worker must survive it."""

    def run(self, model_path, request, cancel):
        yield ModelLoading("text encoders", 1, 3)
        raise RuntimeError("simulated engine crash")


def fake_backend() -> EngineBackend:
    return EngineBackend(FakeSession, FakeCancelToken, save_png)


def raising_backend() -> EngineBackend:
    return EngineBackend(RaisingSession, FakeCancelToken, save_png)
