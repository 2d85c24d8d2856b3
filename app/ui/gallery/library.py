"""The gallery's data side, without widgets: the database, model hashing, the trash, and the short background
jobs on it (saving finished images, importing, exporting, finding missing files).

Every job runs on the library's own pool, so shutdown can wait for writes in flight before the database closes;
a job's result reaches its callback (on the UI thread) only while the library is open.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, QThreadPool

from app.gallery.db import GalleryDB, ImageRecord
from app.gallery.export import DEFAULT_QUALITY, ExportReport, export_images
from app.gallery.importer import ImportReport, import_folder
from app.gallery.model_files import ModelHasher
from app.gallery.store import save_finished_image
from app.metadata.file_names import OutputTarget
from app.metadata.params import ImageParams
from app.metadata.unfinished_saves import remove_stale_temp_files
from app.ui.gallery.metadata import LoadedModel
from app.ui.gallery.tasks import run_task
from app.ui.gallery.trash import TrashUndo

if TYPE_CHECKING:
    import numpy as np

    from app.inference.api.request import GenerationRequest

log = logging.getLogger(__name__)

SHUTDOWN_WAIT_MS = 3000

Done = Callable[[object], None]
Failed = Callable[[BaseException], None]


class GalleryLibrary:
    def __init__(self, data_dir: Path, parent: QObject) -> None:
        self.closed = False
        self.tasks = QThreadPool(
            parent
        )  # saves, imports, checks: waited for at shutdown, before the DB closes
        self.db = GalleryDB.open(data_dir)
        self.hasher = ModelHasher(self.db)
        self.loaded = LoadedModel(self.hasher)
        self.trash = TrashUndo(self.db)

    def run(
        self, fn: Callable[[], object], on_done: Done | None = None, on_failed: Failed | None = None
    ) -> None:
        """A background task whose result is delivered only while the library is open."""
        if self.closed:  # e.g. an image that finished while the window closed: its PNG is on disk already
            log.info("gallery closed; a late task was not started")
            return

        def guard(callback):
            return None if callback is None else (lambda value: None if self.closed else callback(value))

        run_task(fn, guard(on_done), guard(on_failed), pool=self.tasks)

    def stop(self) -> None:
        """Let database writes in flight finish (bounded); later results are dropped."""
        self.closed = True
        self.tasks.waitForDone(SHUTDOWN_WAIT_MS)

    def close(self) -> None:
        self.hasher.shutdown()
        self.db.close()

    # -- jobs ----------------------------------------------------------------------------------------------

    def clean_output_folder(self, folder: Path) -> None:
        self.run(lambda: remove_stale_temp_files(folder))

    def save_finished(
        self,
        output: OutputTarget,
        pixels: np.ndarray,
        request: GenerationRequest,
        seed: int,
        *,
        job_id: str,
        on_done: Done,
        on_failed: Failed,
    ) -> None:
        db, loaded = self.db, self.loaded

        def save() -> ImageRecord:
            params = loaded.image_params(request, seed)
            return save_finished_image(db, output, pixels, params, job_id=job_id)

        self.run(save, on_done, on_failed)

    def add_saved(
        self, path: Path, params: ImageParams, job_id: str | None, on_done: Done, on_failed: Failed
    ) -> None:
        db = self.db
        self.run(lambda: db.add_image(Path(path), params, job_id=job_id), on_done, on_failed)

    def find_missing(self, records: list[ImageRecord], on_done: Done) -> None:
        self.run(lambda: [r.id for r in records if not r.path.exists()], on_done)

    def import_folder(self, folder: Path, on_done: Callable[[ImportReport], None], on_failed: Failed) -> None:
        db = self.db
        self.run(lambda: import_folder(db, folder), on_done, on_failed)

    def export(
        self,
        records: list[ImageRecord],
        destination: Path,
        *,
        as_zip: bool,
        fmt: str,
        quality: int = DEFAULT_QUALITY,
        on_done: Callable[[ExportReport], None],
        on_failed: Failed,
    ) -> None:
        self.run(
            lambda: export_images(records, destination, as_zip=as_zip, fmt=fmt, quality=quality),
            on_done,
            on_failed,
        )
