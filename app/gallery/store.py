"""Saving a finished image: the PNG (through the one image writer), then its gallery record; its step frames.

The file is written first and the record second, each atomic on its own: a crash in between leaves a complete
PNG that "Import folder" picks up again, never a record pointing at half a file. Step frames follow the same
order (file, then row); a frame file without a row is an orphan that `remove_orphan_step_frames` sweeps away.
"""

from __future__ import annotations

import datetime as dt
import logging
import sqlite3
import time

import numpy as np

from app.gallery.db import GalleryDB, ImageRecord
from app.gallery.step_frames import StepFrames, StepFramesError, decode_frame, read_file, write_file
from app.metadata.comfy_graph import ComfyFiles
from app.metadata.file_names import ImageNamer, OutputTarget
from app.metadata.image_file import write_image
from app.metadata.params import ImageParams

log = logging.getLogger(__name__)

ORPHAN_AGE_S = 3600  # a frame file this old without a row is left over from a crash (never a save in flight)
_NAMER = ImageNamer()  # one numbering per process for the gallery's own saves


def save_finished_image(
    db: GalleryDB,
    output: OutputTarget,
    pixels: np.ndarray,
    params: ImageParams,
    *,
    job_id: str | None,
    files: ComfyFiles | None = None,
    created: float | None = None,
) -> ImageRecord:
    """Blocking (file I/O, PNG compression): call from a worker thread. Raises DiskFullError, OSError.

    Named and written like every image of the app (`app.metadata.file_names`, `app.metadata.image_file`)."""
    when = created if created is not None else time.time()
    folder = output.folder(dt.date.fromtimestamp(when))
    path = write_image(_NAMER.path_for(folder, params.seed), pixels, params, files)
    return db.add_image(path, params, created=when, job_id=job_id)


def save_step_frames(db: GalleryDB, image_id: int, frames: StepFrames) -> int:
    """Blocking: write an image's step frames and their row; returns the file's size in bytes (0 when the
    image left the gallery meanwhile). Raises OSError."""
    path = db.frames_dir / f"{image_id}.webp"
    size = write_file(path, frames)
    try:
        db.set_step_frames(image_id, path.name, frames.steps, frames.total_steps)
    except sqlite3.IntegrityError:  # deleted while its frames were being written
        path.unlink(missing_ok=True)
        return 0
    return size


def load_step_frames(db: GalleryDB, image_id: int) -> StepFrames | None:
    """Blocking: an image's step frames, every frame checked to decode; None when it has none, or when its file
    is missing or damaged (logged: the viewer simply offers no scrubbing)."""
    entry = db.step_frames(image_id)
    if entry is None:
        return None
    try:
        frames = read_file(entry.path, entry.steps, entry.total_steps)
        for still in frames.frames:
            decode_frame(still)
    except (OSError, StepFramesError) as exc:
        log.warning("step frames of image %d are unusable: %s", image_id, exc)
        return None
    return frames


def remove_orphan_step_frames(db: GalleryDB, min_age_s: float = ORPHAN_AGE_S) -> int:
    """Delete step-frame files (and unfinished writes) that no gallery row refers to, left by a crash."""
    folder = db.frames_dir
    if not folder.is_dir():
        return 0
    known = db.step_frame_files()
    cutoff = time.time() - min_age_s
    removed = 0
    for path in folder.iterdir():
        try:
            if path.name in known or not path.is_file() or path.stat().st_mtime > cutoff:
                continue
            path.unlink()
            removed += 1
        except OSError as exc:
            log.warning("cannot remove %s: %s", path, exc)
    if removed:
        log.info("removed %d orphaned step-frame file(s) from %s", removed, folder)
    return removed
