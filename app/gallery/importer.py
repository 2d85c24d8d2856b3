"""Import folder: index existing images (ours, A1111's, ComfyUI's) into the gallery from their metadata.

File by file: one unreadable file, damaged metadata or a value the database cannot hold skips that file (with a
sentence why, in the report) and never the folder.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from app.gallery.db import GalleryDB, GalleryError
from app.gallery.export import CONTACT_SHEET, MANIFEST
from app.metadata.limits import MetadataError
from app.metadata.params import ImageParams
from app.metadata.recall import IMAGE_SUFFIXES, read_metadata

log = logging.getLogger(__name__)

_BATCH = 200


@dataclass(frozen=True, slots=True)
class ImportReport:
    added: int
    already_known: int
    without_metadata: int  # images that carry no generation parameters (left out)
    by_source: tuple[tuple[str, int], ...]
    skipped: tuple[tuple[Path, str], ...] = ()  # files that could not be imported, each with a sentence why

    def message(self) -> str:
        sources = ", ".join(f"{n} from {s}" for s, n in self.by_source)
        without = (
            f"; {self.without_metadata} without generation settings left out" if self.without_metadata else ""
        )
        skipped = f"; {len(self.skipped)} skipped" if self.skipped else ""
        images = f"{self.added} image{'s' if self.added != 1 else ''}"
        return f"Imported {images} ({sources or 'none new'}){without}{skipped}."

    def details(self) -> str:
        """One line per skipped file: its name and why (empty when none was skipped)."""
        return "\n".join(f"{path.name}: {reason}" for path, reason in self.skipped)


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
    """Blocking; run it on a worker thread. Files already in the gallery are left as they are. A file that
    cannot be read or stored is skipped with its reason and the others are imported; only a database that
    cannot be written stops the import (GalleryError; what was imported before stays)."""
    files = find_images(Path(folder), recursive)
    known = db.ids_for_paths(p for p in (f.resolve() for f in files) if _storable(p))
    batch = _Batch(db)
    without = 0
    for i, path in enumerate(files):
        if cancel is not None and cancel.is_set():
            break
        row, reason = _read(path, known)
        if reason is not None:
            batch.skipped.append((path, reason))
        elif row is _WITHOUT:
            without += 1
        elif row is not None:
            batch.add(path, row)
        if on_progress is not None:
            on_progress(i + 1, len(files))
    batch.flush()
    log.info("imported %d images from %s (%d without metadata, %d skipped)", batch.added, folder, without,
             len(batch.skipped))  # fmt: skip
    for path, reason in batch.skipped:
        log.info("skipped %s: %s", path, reason)
    sources = tuple(sorted(batch.sources.items()))
    return ImportReport(batch.added, len(known), without, sources, tuple(batch.skipped))


_WITHOUT = object()  # a readable image without generation settings
Row = tuple[Path, ImageParams, float, None, int, str]


def _read(path: Path, known: dict[str, int]) -> tuple[Row | object | None, str | None]:
    """(the gallery row of one file, None when it is known already, or _WITHOUT; why it is skipped, or None)."""
    try:
        resolved = path.resolve()
        if str(resolved) in known:
            return None, None
        if not _storable(resolved):
            return None, "Its file name is not valid UTF-8, which the gallery cannot store; rename the file."
        recalled = read_metadata(path)
        if recalled is None:
            return _WITHOUT, None
        return (resolved, recalled.params, path.stat().st_mtime, None, 0, recalled.source), None
    except MetadataError as exc:
        return None, str(exc)
    except OSError as exc:
        return None, f"The file cannot be read ({exc.strerror or exc})."
    except Exception as exc:  # one file never stops the import, whatever is wrong with it
        log.exception("importing %s failed", path)
        return None, f"Its metadata could not be read ({type(exc).__name__}: {exc})."


def _storable(path: Path) -> bool:
    try:
        str(path).encode("utf-8")
    except UnicodeEncodeError:  # a name in another encoding, decoded by Python as surrogates
        return False
    return True


# What one row can raise when it is stored (a value SQLite cannot hold, a file name that is not valid UTF-8);
# anything else (a full disk, a read-only or damaged database) concerns every row and stops the import.
_ROW_ERRORS = (OverflowError, ValueError, TypeError, sqlite3.IntegrityError)


class _Batch:
    """Rows stored _BATCH at a time in one transaction; when a transaction fails because of a row, its rows
    are stored one by one and only the bad ones are skipped."""

    def __init__(self, db: GalleryDB) -> None:
        self.db = db
        self.rows: list[tuple[Path, Row]] = []
        self.added = 0
        self.sources: dict[str, int] = {}
        self.skipped: list[tuple[Path, str]] = []

    def add(self, path: Path, row: Row) -> None:
        self.rows.append((path, row))
        if len(self.rows) >= _BATCH:
            self.flush()

    def flush(self) -> None:
        rows, self.rows = self.rows, []
        if not rows:
            return
        try:
            self._store(rows)
        except _ROW_ERRORS:
            for one in rows:
                try:
                    self._store([one])
                except _ROW_ERRORS as exc:
                    self.skipped.append((one[0], f"It cannot be stored in the gallery ({exc})."))

    def _store(self, rows: list[tuple[Path, Row]]) -> None:
        try:
            self.db.add_images([row for _, row in rows])
        except (GalleryError, sqlite3.IntegrityError):
            raise
        except sqlite3.Error as exc:
            raise GalleryError(
                f"The gallery database could not be written ({exc}); {self.added} images were imported "
                "before that."
            ) from exc
        self.added += len(rows)
        for _, row in rows:
            self.sources[row[5]] = self.sources.get(row[5], 0) + 1
