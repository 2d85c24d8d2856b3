"""The download dialog's worker thread: store a newly typed token, download, and report every outcome as a signal.

The signals object lives on the UI thread, so what the worker emits is queued and delivered there; Cancel is the
`threading.Event` the dialog sets, checked by the download between chunks.
"""

from __future__ import annotations

import logging
import threading
import time

from PySide6.QtCore import QObject, Signal

from app.downloads.downloader import download_model_set
from app.downloads.errors import DownloadCancelled, DownloadError
from app.downloads.hub import current_token, save_token
from app.downloads.plan import DownloadPlan
from app.downloads.progress import DownloadProgress, Phase

log = logging.getLogger(__name__)

PROGRESS_INTERVAL_S = 0.1  # at most ten progress updates a second cross to the UI thread
THREAD_NAME = "sd35-io-download"


class DownloadSignals(QObject):
    """Emitted on the worker thread, delivered on the UI thread (queued: the receiver lives there)."""

    progressed = Signal(object)  # DownloadProgress
    status_changed = Signal(str)
    succeeded = Signal(object)  # DownloadResult
    failed = Signal(object)  # DownloadError
    cancelled = Signal()


def run_download(
    plan: DownloadPlan, typed_token: str, cancel: threading.Event, signals: DownloadSignals
) -> None:
    """The worker thread's body: store a newly typed token, then download; every outcome becomes a signal."""
    last_emit = 0.0
    last_phase: Phase | None = None

    def on_progress(progress: DownloadProgress) -> None:
        nonlocal last_emit, last_phase
        now = time.monotonic()
        if progress.phase is not last_phase or now - last_emit >= PROGRESS_INTERVAL_S:
            last_emit, last_phase = now, progress.phase
            signals.progressed.emit(progress)

    try:
        if typed_token:
            signals.status_changed.emit("Checking the access token with Hugging Face…")
            save_token(typed_token)
        token = typed_token or current_token()
        result = download_model_set(plan, token=token, on_progress=on_progress, cancel=cancel)
    except DownloadCancelled:
        signals.cancelled.emit()
    except DownloadError as exc:
        signals.failed.emit(exc)
    except Exception as exc:  # the worker boundary: anything else is a bug, reported rather than lost
        log.exception("download failed unexpectedly")
        signals.failed.emit(DownloadError(f"the download stopped on an unexpected error: {exc}"))
    else:
        signals.succeeded.emit(result)


def start_download(
    plan: DownloadPlan, typed_token: str, cancel: threading.Event, signals: DownloadSignals
) -> threading.Thread:
    thread = threading.Thread(
        target=run_download,
        args=(plan, typed_token, cancel, signals),
        name=THREAD_NAME,
        daemon=True,  # never keeps the process alive; cancel + join is the normal way out
    )
    thread.start()
    return thread
