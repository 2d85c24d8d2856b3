"""The inference worker: a QObject living on the one long-lived inference thread, owning the session.

It imports the engine lazily, on its own thread, at the first job: the UI thread never imports torch. Each
engine event becomes a Qt signal carrying ready values (`QImage(...).copy()`), and every finished image is
written to disk here, before the UI hears of it, so an image on screen is always an image on disk.

Cancel is a direct, thread-safe call from the UI thread (`cancel`), never a queued signal: while `run_job`
runs, this thread's event loop is busy.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QObject, Qt, QThread, Signal, Slot

from app.inference.api.cancel import CancelToken
from app.inference.api.errors import FailureKind
from app.inference.api.events import ImageFailed, ImageFinished
from app.inference.api.session import Session, SessionFactory, SessionOptions
from app.metadata.file_names import ImageNamer
from app.ui.canvas.image_arrays import array_to_qimage
from app.ui.generation.jobs import EngineOptions, ImageResult, JobOutcome, JobStatus, QueuedJob, StepInfo

if TYPE_CHECKING:
    from app.gallery.frame_recorder import JobFrameRecorder
    from app.gallery.step_frames import StepFrames

log = logging.getLogger(__name__)

THUMBNAIL_SIZE = 112
INFERENCE_NICENESS = 5  # Linux nice increment of the inference thread and the threads it starts


@dataclass(frozen=True, slots=True)
class EngineBackend:
    """What the worker needs from the engine: a way to open a `Session` (the local torch engine; tests use a
    fake, and a remote engine can be another) and the PNG writer."""

    open_session: SessionFactory
    save_png: Callable[..., None]
    # A job whose model set is on ComfyUI servers: (server URLs, preview choice) -> Session (app/ui/engines).
    open_remote: Callable[[tuple[str, ...], str], Session] | None = None


def load_engine_backend() -> EngineBackend:
    """The real engine (imports torch: call it on the worker thread only)."""
    from app.inference.pipeline.session import GenerationSession
    from app.metadata.png_info import save_png

    # transformers resolves these names lazily, and its lazy module is not safe when two threads resolve names
    # at once (the token counter's tokenizers and a job's text encoders): resolve them all here, once.
    try:
        from transformers import (  # noqa: F401
            CLIPTextConfig,
            CLIPTextModel,
            CLIPTextModelWithProjection,
            CLIPTokenizer,
            T5Config,
            T5EncoderModel,
            T5TokenizerFast,
        )
    except ImportError as exc:
        log.warning("transformers classes could not be imported ahead of the first job: %s", exc)
    return EngineBackend(GenerationSession.from_options, save_png)


def describe_device(preference: str) -> str:
    """ "CUDA · NVIDIA H100 · 79 GB" / "CPU · 31 GB RAM" (imports torch: worker thread only)."""
    import torch

    if preference in ("auto", "cuda") and torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        return f"CUDA · {props.name} · {props.total_memory / 1024**3:.0f} GB"
    if preference in ("auto", "mps") and torch.backends.mps.is_available():
        return "Apple GPU (MPS)"
    try:
        with open("/proc/meminfo") as f:
            total_kb = next(int(line.split()[1]) for line in f if line.startswith("MemTotal:"))
        return f"CPU · {total_kb / 1024**2:.0f} GB RAM"
    except (OSError, StopIteration, ValueError):
        return "CPU"


class InferenceWorker(QObject):
    job_started = Signal(int)
    model_loading = Signal(int, str, int, int)  # job id, component, index (1-based), total
    model_loaded = Signal(int, str, float, str)  # job id, model name, seconds, memory plan in words
    prompt_encoding = Signal(int, str, int, int)  # job id, "prompt" | "negative prompt", done, total
    step_completed = Signal(object)  # StepInfo
    image_finished = Signal(object)  # ImageResult
    image_cancelled = Signal(int, int)  # job id, image index
    job_ended = Signal(object)  # JobOutcome: finished, cancelled or failed
    device_described = Signal(str)
    engine_prepared = Signal()

    def __init__(self, backend_loader: Callable[[], EngineBackend] = load_engine_backend) -> None:
        super().__init__()
        self._backend_loader = backend_loader
        self._backend: EngineBackend | None = None
        self._session: Session | None = None
        self._session_options: EngineOptions | None = None
        self._namer = ImageNamer()
        self._lock = threading.Lock()
        self._current: tuple[int, CancelToken] | None = None  # (job id, cancel token) of the running job
        self._cancelled_ids: set[int] = set()
        self._stopping = False
        self._frames: JobFrameRecorder | None = None  # the running job's step frames

    # ------------------------------------------------------------------------------ called from the UI thread

    def cancel(self, job_id: int | None = None) -> None:
        """Cancel job `job_id` (the running one when None); a job not started yet is dropped when it starts."""
        with self._lock:
            if job_id is not None:
                self._cancelled_ids.add(job_id)
            if self._current is not None and job_id in (None, self._current[0]):
                self._current[1].cancel()

    def cancel_image(self, job_id: int, index: int) -> None:
        with self._lock:
            if self._current is not None and self._current[0] == job_id:
                self._current[1].cancel_image(index)

    def stop(self) -> None:
        """Shutting down: cancel the running job and every job that would still arrive."""
        with self._lock:
            self._stopping = True
            if self._current is not None:
                self._current[1].cancel()

    # ------------------------------------------------------------------------------ worker-thread slots

    @Slot()
    def lower_thread_priority(self) -> None:
        """Run inference below the UI thread's CPU priority, so a busy CPU never starves the window.

        Threads the engine starts from here (its job thread, torch's OpenMP workers) inherit the priority.
        On Linux QThread priorities are ignored, so the thread's nice value is raised instead.
        """
        threading.current_thread().name = "sd35-inference"  # for the log (Qt started this thread)
        try:
            if sys.platform.startswith("linux"):
                tid = threading.get_native_id()
                os.setpriority(
                    os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + INFERENCE_NICENESS)
                )
            else:
                QThread.currentThread().setPriority(QThread.Priority.LowPriority)
        except (OSError, AttributeError) as exc:  # not permitted, or no such API here: run at normal priority
            log.debug("cannot lower the inference thread's priority: %s", exc)

    @Slot(str)
    def prepare(self, device_preference: str) -> None:
        """While the user writes the first prompt: import the engine (seconds of imports that would otherwise
        delay the first job and compete with its previews) and describe the device for the status bar."""
        try:
            self._ensure_backend()
            self.device_described.emit(describe_device(device_preference))
        except Exception:  # preparing is an optimisation: the first job will report any real problem
            log.exception("preparing the engine failed")
        finally:
            self.engine_prepared.emit()

    @Slot(object)
    def run_job(self, job: QueuedJob) -> None:
        started = time.perf_counter()
        self.job_started.emit(job.job_id)
        outcome: JobOutcome | None = None
        finished = 0
        failures: list[ImageFailed] = []
        try:
            backend = self._ensure_backend()
            from app.gallery.frame_recorder import JobFrameRecorder  # numpy and Pillow: worker thread only

            self._frames = JobFrameRecorder()
            token = CancelToken()
            with self._lock:
                if self._stopping or job.job_id in self._cancelled_ids:
                    token.cancel()
                self._current = (job.job_id, token)
            session = self._session_for(job.options, backend)
            for event in session.run(job.model_path, job.request, token, variant=job.variant or None):
                result = self._dispatch(job, event)
                if isinstance(result, ImageResult):
                    finished += 1
                elif isinstance(result, ImageFailed):
                    failures.append(result)
                elif isinstance(result, JobOutcome):
                    outcome = result
        except MemoryError:
            outcome = JobOutcome(
                job.job_id,
                JobStatus.FAILED,
                finished,
                time.perf_counter() - started,
                "Out of memory: lower the size or the number of images, or turn T5 off.",
                FailureKind.MEMORY,
            )
        except Exception as exc:  # the session should never raise; if it does, the app must survive it
            log.exception("job %d crashed the session", job.job_id)
            self._session = None  # start clean next time
            outcome = JobOutcome(
                job.job_id,
                JobStatus.FAILED,
                finished,
                time.perf_counter() - started,
                f"Internal error ({exc.__class__.__name__}: {exc}). The job was stopped; "
                "the app is still usable. Details are in the log.",
                FailureKind.INTERNAL,
            )
        finally:
            with self._lock:
                self._current = None
                self._cancelled_ids.discard(job.job_id)
            self._frames = None
        if outcome is None:
            outcome = JobOutcome(
                job.job_id,
                JobStatus.FAILED,
                finished,
                time.perf_counter() - started,
                "The engine stopped without finishing the job; try again.",
                FailureKind.INTERNAL,
            )
        if failures and outcome.status is JobStatus.FINISHED:
            outcome = _failed_images_outcome(outcome, failures, finished, job.request.count)
        if outcome.status is not JobStatus.FINISHED and not outcome.seconds:
            # The engine's cancelled and failed events carry no time; the job still took this long.
            outcome = replace(outcome, seconds=time.perf_counter() - started)
        self.job_ended.emit(outcome)

    # ------------------------------------------------------------------------------ internals

    def _ensure_backend(self) -> EngineBackend:
        if self._backend is None:
            self._backend = self._backend_loader()
        return self._backend

    def _session_for(self, options: EngineOptions, backend: EngineBackend) -> Session:
        if self._session is not None and options == self._session_options:
            return self._session
        if self._session is not None and self._session_options is not None and self._session_options.engine:
            self._session.close()  # type: ignore[attr-defined]  # a server's WebSocket
        self._session = None  # release the old session's models before loading new ones
        if options.engine:  # the model set is on ComfyUI servers: the local engine is left as it is
            from app.ui.engines.sessions import open_remote_session

            opener = backend.open_remote or open_remote_session
            self._session = opener(options.engine, options.preview)
            self._session_options = options
            return self._session
        self._session = backend.open_session(
            SessionOptions(
                device=options.device,
                dtype=options.precision,
                preview=options.preview,
                preview_every=options.preview_every,
                memory_plan=options.memory_plan,
            )
        )
        self._session_options = options
        return self._session

    def _dispatch(self, job: QueuedJob, event: Any) -> ImageResult | ImageFailed | JobOutcome | None:
        from app.inference.api import events as ev  # already imported by the session; worker thread

        jid = job.job_id
        if isinstance(event, ev.StepUpdate):
            if event.preview is not None and self._frames is not None:
                self._frames.add(event.image_index, event.step, event.steps, event.preview)
            preview = None if event.preview is None else array_to_qimage(event.preview)
            self.step_completed.emit(
                StepInfo(
                    jid,
                    event.image_index,
                    job.request.count,
                    event.seed,
                    event.step,
                    event.steps,
                    event.its,
                    event.eta,
                    preview,
                )
            )
        elif isinstance(event, ev.ImageFinished):
            frames = None if self._frames is None else self._frames.finish(event.image_index)
            result = self._save(job, event, frames)
            self.image_finished.emit(result)
            return result
        elif isinstance(event, ev.ModelLoading):
            self.model_loading.emit(jid, event.component, event.index, event.total)
        elif isinstance(event, ev.ModelLoaded):
            self.model_loaded.emit(jid, event.model_name, event.seconds, event.plan)
        elif isinstance(event, ev.PromptEncoding):
            self.prompt_encoding.emit(jid, event.prompt, event.done, event.total)
        elif isinstance(event, ev.ImageFailed):
            log.warning(
                "job %d image %d (seed %d) failed: %s", jid, event.image_index, event.seed, event.message
            )
            if self._frames is not None:
                self._frames.discard(event.image_index)
            return event
        elif isinstance(event, ev.ImageCancelled):
            if self._frames is not None:
                self._frames.discard(event.image_index)
            self.image_cancelled.emit(jid, event.image_index)
        elif isinstance(event, ev.JobFinished):
            return JobOutcome(jid, JobStatus.FINISHED, event.images, event.seconds)
        elif isinstance(event, ev.JobCancelled):
            return JobOutcome(jid, JobStatus.CANCELLED, event.images_finished)
        elif isinstance(event, ev.JobFailed):
            return JobOutcome(jid, JobStatus.FAILED, message=event.message, kind=event.kind)
        else:
            log.warning("ignoring an unknown engine event %r", type(event).__name__)
        return None

    def _save(self, job: QueuedJob, event: ImageFinished, frames: StepFrames | None = None) -> ImageResult:
        image = array_to_qimage(event.pixels)
        thumbnail = image.scaled(
            THUMBNAIL_SIZE,
            THUMBNAIL_SIZE,
            Qt.AspectRatioMode.KeepAspectRatio,
            Qt.TransformationMode.SmoothTransformation,
        )
        from app.metadata.image_file import finished_image_params, write_image  # numpy, Pillow: worker thread

        params = finished_image_params(event)
        try:
            path = write_image(
                self._namer.path_for(job.output.folder(), event.seed), event.pixels, params, event.comfy_files
            )
            return ImageResult(
                job.job_id, event.image_index, event.seed, image, params, path, thumbnail, step_frames=frames,
                engine=getattr(event, "engine", ""),
            )  # fmt: skip
        except (
            Exception
        ) as exc:  # a full disk, a read-only folder, an encoder error: the image must still show
            log.error("could not save image %d of job %d: %s", event.image_index, job.job_id, exc)
            message = f"Could not save the image ({exc}). Use File ▸ Save Image As… or choose another output folder."
            return ImageResult(
                job.job_id, event.image_index, event.seed, image, params, None, thumbnail,
                save_error=message, step_frames=frames, engine=getattr(event, "engine", ""),
            )  # fmt: skip


def _failed_images_outcome(
    outcome: JobOutcome, failures: list[ImageFailed], finished: int, count: int
) -> JobOutcome:
    """A job that ran to its end with images that could not be made (NaN, ...) is reported as failed, with
    the first image's sentence; the images that were made are already saved and shown."""
    first = failures[0]
    message = first.message
    if count > 1:
        failed = (
            f"{len(failures)} of {count} images" if len(failures) > 1 else f"image {first.image_index + 1}"
        )
        message = f"{failed} failed (seed {first.seed}): {message}"
    return replace(outcome, status=JobStatus.FAILED, images=finished, message=message, kind=first.kind)
