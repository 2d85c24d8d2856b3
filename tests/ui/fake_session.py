"""A scripted `Session` (app.inference.api.session) standing in for the torch engine, for fast UI tests.

It yields the real event types of `app.inference.api.events` with small previews and sleeps `step_seconds` per
step, checks the real cancel token at every step like the real session, and fails like the real one on a model
path whose name contains "broken". tests/test_contracts.py checks that it keeps the shape.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import numpy as np

from app.inference.api.cancel import CancelToken
from app.inference.api.errors import FailureKind
from app.inference.api.events import (
    Event,
    ImageCancelled,
    ImageFinished,
    JobCancelled,
    JobFailed,
    JobFinished,
    ModelLoaded,
    ModelLoading,
    StepUpdate,
)
from app.inference.api.request import GenerationRequest
from app.inference.api.session import SessionOptions
from app.metadata.png_info import save_png
from app.ui.generation.worker import EngineBackend


class FakeSession:
    step_seconds = 0.01
    instances: ClassVar[list[FakeSession]] = []

    def __init__(self, options: SessionOptions | None = None) -> None:
        self.options = options or SessionOptions()
        self.loaded: Path | None = None
        self.runs: list[tuple[Path, object]] = []
        self.events_after_cancel = 0
        FakeSession.instances.append(self)

    def run(
        self,
        model: Path,
        request: GenerationRequest,
        cancel: CancelToken | None = None,
        variant: str | None = None,
    ) -> Iterator[Event]:
        cancel = cancel or CancelToken()
        path = Path(model)
        self.runs.append((path, request))
        if "broken" in path.name or not path.exists():
            yield JobFailed(
                f"{path} is not a usable SD3.5 checkpoint (the file is truncated); "
                "download it again or choose another model",
                FailureKind.MODEL,
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
                yield ImageFinished(k, seed, pixels, None, request, model_name=path.stem, variant="medium")
                done += 1
        yield JobFinished(done, time.perf_counter() - started)


class RaisingSession(FakeSession):
    """Breaks the session contract (raises mid-job): the worker must survive it."""

    def run(self, model, request, cancel=None, variant=None):
        yield ModelLoading("text encoders", 1, 3)
        raise RuntimeError("simulated engine crash")


def fake_backend() -> EngineBackend:
    return EngineBackend(FakeSession, save_png)


def raising_backend() -> EngineBackend:
    return EngineBackend(RaisingSession, save_png)
