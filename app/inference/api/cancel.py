"""The cancel token a job checks between steps and prompt windows (torch-free: the UI creates it)."""

from __future__ import annotations

import threading

from app.inference.api.errors import GenerationCancelled


class CancelToken:
    """Thread-safe cancellation, set from any thread: the whole job, or single images of it."""

    def __init__(self) -> None:
        self._job = threading.Event()
        self._images: set[int] = set()
        self._lock = threading.Lock()

    def cancel(self) -> None:
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

    def raise_if_cancelled(self) -> None:
        if self._job.is_set():
            raise GenerationCancelled()
