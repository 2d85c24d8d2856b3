"""The messages between the window, the controller and the inference worker: frozen values, no dicts.

A `QueuedJob` is a snapshot of the settings taken when Generate was pressed; the worker reports back with
`StepInfo`, `ImageResult` and one `JobOutcome`. Images travel as `QImage`s that own their pixels (built on the
worker thread with `.copy()`), so the UI thread only paints them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtGui import QImage

from app.inference.api.errors import FailureKind
from app.inference.api.request import GenerationRequest
from app.metadata.a1111 import infotext_of
from app.metadata.file_names import OutputTarget
from app.metadata.params import ImageParams

if TYPE_CHECKING:
    from app.gallery.step_frames import StepFrames

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class EngineOptions:
    """How the session runs (Advanced section). A change makes the worker start a new session."""

    device: str = "auto"
    precision: str = "auto"
    preview: str = "auto"  # "auto" | "taesd" | "linear" | "off"
    preview_every: int = 1
    memory_plan: str = "auto"
    engine: tuple[str, ...] = ()  # ComfyUI servers (URLs, priority order); () = this machine


@dataclass(frozen=True, slots=True)
class QueuedJob:
    job_id: int
    request: GenerationRequest
    model_path: Path
    variant: str | None
    model_label: str
    options: EngineOptions
    output: OutputTarget
    style_label: str = "None"

    def summary(self, width: int = 48) -> str:
        r = self.request
        prompt = " ".join(r.prompt.split())
        if len(prompt) > width:
            prompt = prompt[: width - 1].rstrip() + "…"
        images = f" ×{r.count}" if r.count > 1 else ""
        return (
            f"{prompt}\n{self.model_label} · {r.steps} steps · {r.width}×{r.height} · seed {r.seed}{images}"
        )


@dataclass(frozen=True, slots=True)
class StepInfo:
    job_id: int
    image_index: int
    images: int
    seed: int
    step: int
    steps: int
    its: float
    eta: float | None
    preview: QImage | None


@dataclass(frozen=True, slots=True)
class ImageResult:
    job_id: int
    image_index: int
    seed: int
    image: QImage
    params: ImageParams  # what the PNG carries; the gallery indexes it, Copy Parameters and Save As use it
    path: Path | None  # None when saving failed; `save_error` says why
    thumbnail: QImage | None = None  # made on the worker thread, for the recent strip
    save_error: str = ""
    step_frames: StepFrames | None = None  # small preview frames of the sampling steps, for the scrubber
    engine: str = ""  # the ComfyUI server that made the image; "" for this machine

    @property
    def infotext(self) -> str:
        """The A1111 text of the image: the same as its PNG's `parameters` chunk and the gallery's copy."""
        return infotext_of(self.params)


class JobStatus(Enum):
    FINISHED = "finished"
    CANCELLED = "cancelled"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class JobOutcome:
    job_id: int
    status: JobStatus
    images: int = 0
    seconds: float = 0.0
    message: str = ""  # for FAILED: one actionable sentence
    kind: FailureKind | None = None  # for FAILED: why, which decides what the user is offered
