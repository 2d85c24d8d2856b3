"""GenerationController: the job queue, the current job and the inference thread; the only UI class that talks
to the worker.

The queue is drained by a coroutine on the qasync loop: it hands one job at a time to the worker (a queued
signal into the inference thread) and awaits its outcome. Cancel calls the worker directly (thread-safe); the
pending jobs are simply dropped from the queue. Shutdown cancels, waits a bounded time and never terminates
the thread.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from PySide6.QtCore import (
    QAbstractListModel,
    QModelIndex,
    QObject,
    QPersistentModelIndex,
    Qt,
    QThread,
    Signal,
)

from app.ui.generation.jobs import JobOutcome, JobStatus, QueuedJob, StepInfo
from app.ui.generation.worker import EngineBackend, InferenceWorker, load_engine_backend

log = logging.getLogger(__name__)

JOB_ID_ROLE = Qt.ItemDataRole.UserRole + 1


class JobQueueListModel(QAbstractListModel):
    """The pending jobs, in the order they will run."""

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._jobs: list[QueuedJob] = []

    def rowCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self._jobs)

    def data(
        self, index: QModelIndex | QPersistentModelIndex, role: int = Qt.ItemDataRole.DisplayRole
    ) -> object:
        if not index.isValid() or not 0 <= index.row() < len(self._jobs):
            return None
        job = self._jobs[index.row()]
        if role == Qt.ItemDataRole.DisplayRole:
            return job.summary()
        if role == Qt.ItemDataRole.ToolTipRole:
            negative = f"\nNegative: {job.request.negative}" if job.request.negative else ""
            return f"{job.request.prompt}{negative}\nStyle: {job.style_label}"
        if role == JOB_ID_ROLE:
            return job.job_id
        return None

    def jobs(self) -> list[QueuedJob]:
        return list(self._jobs)

    def set_jobs(self, jobs: list[QueuedJob]) -> None:
        self.beginResetModel()
        self._jobs = list(jobs)
        self.endResetModel()


class GenerationController(QObject):
    run_requested = Signal(object)  # QueuedJob -> worker (queued connection into the inference thread)
    prepare_requested = Signal(str)
    job_started = Signal(object)  # QueuedJob
    job_ended = Signal(object, object)  # QueuedJob, JobOutcome
    busy_changed = Signal(bool)
    queue_changed = Signal()
    # Forwarded from the worker (arrive on the UI thread):
    step_completed = Signal(object)  # StepInfo
    image_finished = Signal(object)  # ImageResult
    image_cancelled = Signal(int, int)
    model_loading = Signal(int, str, int, int)
    prompt_encoding = Signal(int, str, int, int)  # job id, "prompt" | "negative prompt", done, total
    model_loaded = Signal(int, str, float, str)
    device_described = Signal(str)
    engine_prepared = Signal()  # the engine's modules are imported: other threads may now load tokenizers

    def __init__(
        self, backend_loader: Callable[[], EngineBackend] = load_engine_backend, parent: QObject | None = None
    ) -> None:
        super().__init__(parent)
        self.queue = JobQueueListModel(self)
        self._pending: list[QueuedJob] = []
        self._current: QueuedJob | None = None
        self._current_image = 0
        self._outcome: asyncio.Future[JobOutcome] | None = None
        self._runner: asyncio.Task[None] | None = None
        self._closing = False

        self._thread = QThread()
        self._thread.setObjectName("sd35-inference")
        self._worker = InferenceWorker(backend_loader)
        self._worker.moveToThread(self._thread)
        self._thread.started.connect(self._worker.lower_thread_priority)
        self._thread.finished.connect(self._worker.deleteLater)
        self.run_requested.connect(self._worker.run_job)
        self.prepare_requested.connect(self._worker.prepare)
        self._worker.job_ended.connect(self._on_worker_job_ended)
        self._worker.step_completed.connect(self._on_worker_step_completed)
        self._worker.image_finished.connect(self.image_finished)
        self._worker.image_cancelled.connect(self.image_cancelled)
        self._worker.model_loading.connect(self.model_loading)
        self._worker.prompt_encoding.connect(self.prompt_encoding)
        self._worker.model_loaded.connect(self.model_loaded)
        self._worker.device_described.connect(self.device_described)
        self._worker.engine_prepared.connect(self.engine_prepared)
        self._thread.start()

    # ------------------------------------------------------------------------------------------ queries

    @property
    def current_job(self) -> QueuedJob | None:
        return self._current

    @property
    def is_busy(self) -> bool:
        return self._current is not None or bool(self._pending)

    @property
    def thread(self) -> QThread:  # for shutdown checks in tests and the entry point
        return self._thread

    def pending(self) -> list[QueuedJob]:
        return list(self._pending)

    # ------------------------------------------------------------------------------------------ commands

    def submit(self, job: QueuedJob) -> None:
        if self._closing:
            return
        self._pending.append(job)
        self._queue_updated()
        if self._runner is None or self._runner.done():
            self._runner = asyncio.ensure_future(self._run_queue())

    def remove_pending(self, job_id: int) -> bool:
        before = len(self._pending)
        self._pending = [j for j in self._pending if j.job_id != job_id]
        if len(self._pending) != before:
            self._queue_updated()
            return True
        return False

    def cancel_current(self) -> bool:
        """Cancel the running job (within one step); the queue goes on with the next job."""
        if self._current is None:
            return False
        self._worker.cancel(self._current.job_id)
        return True

    def cancel_all(self) -> None:
        self._pending.clear()
        self._queue_updated()
        self.cancel_current()

    def skip_image(self) -> bool:
        """Cancel only the image being sampled now; the job's other images go on."""
        if self._current is None:
            return False
        self._worker.cancel_image(self._current.job_id, self._current_image)
        return True

    def cancel_image(self, job_id: int, index: int) -> bool:
        """Cancel image `index` of the running job `job_id` (a later image is skipped when its turn comes)."""
        if self._current is None or self._current.job_id != job_id:
            return False
        self._worker.cancel_image(job_id, index)
        return True

    def reopen_remote(self, url: str) -> None:
        """A server's token changed: the next job on it opens a new session (with the new token)."""
        self._worker.reopen_remote(url)

    def prepare_engine(self, device_preference: str) -> None:
        """Import the engine on the inference thread ahead of the first job and report the device."""
        self.prepare_requested.emit(device_preference)

    def shutdown(self, timeout_s: float = 2.0) -> bool:
        """Cancel everything, stop the thread and wait at most `timeout_s`; True when the thread has ended."""
        if self._closing and self._thread.isFinished():
            return True
        self._closing = True
        self._pending.clear()
        self._queue_updated()
        self._worker.stop()
        if self._runner is not None and not self._runner.done():
            self._runner.cancel()
        self._thread.quit()
        stopped = self._thread.wait(int(timeout_s * 1000))
        if not stopped:
            log.warning(
                "the inference thread did not stop within %.1f s (a step is still running)", timeout_s
            )
        return stopped

    # ------------------------------------------------------------------------------------------ the queue

    async def _run_queue(self) -> None:
        loop = asyncio.get_running_loop()
        self.busy_changed.emit(True)
        try:
            while self._pending and not self._closing:
                job = self._pending.pop(0)
                self._current, self._current_image = job, 0
                self._outcome = loop.create_future()
                self._queue_updated()
                self.job_started.emit(job)
                self.run_requested.emit(job)
                outcome = await self._outcome
                self._current = self._outcome = None
                self._log_outcome(job, outcome)
                self.job_ended.emit(job, outcome)
        finally:
            self._current = self._outcome = None
            if not self._closing:
                self.busy_changed.emit(False)

    def _on_worker_job_ended(self, outcome: JobOutcome) -> None:
        waiting = self._outcome is not None and not self._outcome.done() and self._current is not None
        if waiting and self._current.job_id == outcome.job_id:
            self._outcome.set_result(outcome)
            return
        log.debug("outcome of job %d arrived after the queue stopped waiting", outcome.job_id)

    def _on_worker_step_completed(self, info: StepInfo) -> None:
        if self._current is not None and info.job_id == self._current.job_id:
            self._current_image = info.image_index
        self.step_completed.emit(info)

    def _queue_updated(self) -> None:
        self.queue.set_jobs(self._pending)
        self.queue_changed.emit()

    @staticmethod
    def _log_outcome(job: QueuedJob, outcome: JobOutcome) -> None:
        if outcome.status is JobStatus.FAILED:
            log.warning("job %d failed (%s): %s", job.job_id, outcome.kind, outcome.message)
        else:
            log.info(
                "job %d %s: %d image(s), %.1f s",
                job.job_id,
                outcome.status.value,
                outcome.images,
                outcome.seconds,
            )
