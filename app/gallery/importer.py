"""Import folder: index existing images (ours, A1111's, ComfyUI's) into the gallery from their metadata."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from app.gallery.db import GalleryDB
from app.gallery.export import CONTACT_SHEET, MANIFEST
from app.metadata.recall import IMAGE_SUFFIXES, read_metadata

log = logging.getLogger(__name__)

_BATCH = 200


@dataclass(frozen=True, slots=True)
class ImportReport:
    added: int
    already_known: int
    without_metadata: int  # images that carry no generation parameters (left out)
    by_source: tuple[tuple[str, int], ...]

    def message(self) -> str:
        sources = ", ".join(f"{n} from {s}" for s, n in self.by_source)
        skipped = (
            f"; {self.without_metadata} without generation settings left out" if self.without_metadata else ""
        )
        return f"Imported {self.added} images ({sources or 'none new'}){skipped}."


def find_images(folder: Path, recursive: bool = True) -> list[Path]:
    pattern = folder.rglob("*") if recursive else folder.glob("*")
    return sorted(
        p
        for p in pattern
        if p.suffix.lower() in IMAGE_SUFFIXES
        and p.is_file()
        and not p.name.startswith(".")
        and not _is_contact_sheet(p)
    )


def _is_contact_sheet(path: Path) -> bool:
    """The overview sheet of one of our exports: a picture of the other images, not a generation."""
    return path.name == CONTACT_SHEET and (path.parent / MANIFEST).is_file()


def import_folder(
    db: GalleryDB,
    folder: Path,
    *,
    recursive: bool = True,
    cancel: threading.Event | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> ImportReport:
    """Blocking; run it on a worker thread. Files already in the gallery are left as they are."""
    files = find_images(Path(folder), recursive)
    known = db.ids_for_paths(p.resolve() for p in files)
    added = without = 0
    sources: dict[str, int] = {}
    batch: list = []
    for i, path in enumerate(files):
        if cancel is not None and cancel.is_set():
            break
        resolved = path.resolve()
        if str(resolved) not in known:
            recalled = read_metadata(path)
            if recalled is None:
                without += 1
            else:
                created = path.stat().st_mtime
                batch.append((resolved, recalled.params, created, None, 0, recalled.source))
                sources[recalled.source] = sources.get(recalled.source, 0) + 1
        if len(batch) >= _BATCH:
            added += len(db.add_images(batch))
            batch = []
        if on_progress is not None:
            on_progress(i + 1, len(files))
    if batch:
        added += len(db.add_images(batch))
    log.info("imported %d images from %s (%d without metadata)", added, folder, without)
    return ImportReport(added, len(known), without, tuple(sorted(sources.items())))
