"""Short background chores for the gallery (thumbnails, saves, import, export) on the global QThreadPool.

`run_task(fn, on_done, on_failed)` runs `fn()` on a pool thread and calls one of the callbacks on the UI thread
with a plain value. `fn` must never touch a widget. Thumbnails have their own loader with a bounded queue, so
scrolling through 10,000 images never piles up work for images that are no longer on screen.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal
from PySide6.QtGui import QImage

from app.gallery.thumbnails import THUMB_SIZE, ensure_thumbnail

log = logging.getLogger(__name__)


class _TaskSignals(QObject):
    finished = Signal(object)
    failed = Signal(object)


class _Task(QRunnable):
    def __init__(self, fn: Callable[[], object]) -> None:
        super().__init__()
        self.fn = fn
        self.signals = _TaskSignals()  # created on the UI thread: its slots run there

    def run(self) -> None:
        try:
            result = self.fn()
        except Exception as exc:  # delivered to on_failed on the UI thread; never escapes the pool thread
            log.exception("background task failed")
            self._deliver(self.signals.failed, exc)
        else:
            self._deliver(self.signals.finished, result)

    @staticmethod
    def _deliver(signal: object, value: object) -> None:
        try:
            signal.emit(value)  # type: ignore[attr-defined]
        except RuntimeError:  # the receiving widget was closed while the task ran: nobody is waiting
            log.debug("result of a background task dropped: its receiver is gone")


_alive: set[_Task] = set()  # keeps each task's signal object alive until its result has been delivered


def run_task(
    fn: Callable[[], object],
    on_done: Callable[[object], None] | None = None,
    on_failed: Callable[[BaseException], None] | None = None,
    pool: QThreadPool | None = None,
) -> None:
    task = _Task(fn)
    task.setAutoDelete(False)
    _alive.add(task)

    def finish(result: object, callback: Callable | None) -> None:
        _alive.discard(task)
        if callback is not None:
            callback(result)

    task.signals.finished.connect(lambda r: finish(r, on_done))
    task.signals.failed.connect(lambda e: finish(e, on_failed))
    (pool or QThreadPool.globalInstance()).start(task)


class _ThumbSignals(QObject):
    loaded = Signal(int, QImage)
    missing = Signal(int)


class _ThumbTask(QRunnable):
    def __init__(self, image_id: int, path: Path, cache_dir: Path, signals: _ThumbSignals) -> None:
        super().__init__()
        self.image_id, self.path, self.cache_dir, self.signals = image_id, path, cache_dir, signals

    def run(self) -> None:
        try:
            thumb = ensure_thumbnail(self.cache_dir, self.path, THUMB_SIZE)
            image = QImage(str(thumb))
            if image.isNull():
                raise OSError(f"cannot read {thumb}")
            self.signals.loaded.emit(self.image_id, image)
        except FileNotFoundError:
            self.signals.missing.emit(self.image_id)
        except Exception:  # a broken file shows as missing rather than stopping the loader
            log.warning("no thumbnail for %s", self.path, exc_info=True)
            self.signals.missing.emit(self.image_id)


class ThumbnailLoader(QObject):
    """Loads thumbnails on a private pool (2 threads); `request` is cheap and idempotent while in flight."""

    loaded = Signal(int, QImage)
    missing = Signal(int)

    MAX_QUEUED = 96

    def __init__(self, cache_dir: Path, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.cache_dir = cache_dir
        self._pool = QThreadPool(self)
        self._pool.setMaxThreadCount(2)
        self._pending: set[int] = set()
        self._signals = _ThumbSignals(self)
        self._signals.loaded.connect(self._on_signals_loaded)
        self._signals.missing.connect(self._on_signals_missing)

    def request(self, image_id: int, path: Path) -> None:
        if image_id in self._pending:
            return
        if len(self._pending) >= self.MAX_QUEUED:
            self._pool.clear()  # drop queued work for rows scrolled past; visible rows ask again on repaint
            self._pending.clear()
        self._pending.add(image_id)
        self._pool.start(_ThumbTask(image_id, path, self.cache_dir, self._signals))

    def _on_signals_loaded(self, image_id: int, image: QImage) -> None:
        self._pending.discard(image_id)
        self.loaded.emit(image_id, image)

    def _on_signals_missing(self, image_id: int) -> None:
        self._pending.discard(image_id)
        self.missing.emit(image_id)

    def shutdown(self) -> None:
        self._pool.clear()
        self._pool.waitForDone(5000)
