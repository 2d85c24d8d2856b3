"""Deleting gallery images to the system trash, with undo for this session."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from app.gallery.db import GalleryDB, ImageRecord
from app.ui.gallery.actions import TrashError, move_to_trash, restore_from_trash

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class TrashOutcome:
    ids: tuple[int, ...]  # records that left the gallery
    errors: tuple[str, ...]

    def message(self) -> str:
        n = len(self.ids)
        moved = f"Moved {n} image{'s' if n != 1 else ''} to the trash." if n else ""
        return " ".join([moved, *self.errors]).strip()


class TrashUndo:
    """Moves files to the trash and marks their records; `undo` brings back the last batch."""

    def __init__(self, db: GalleryDB) -> None:
        self.db = db
        self._batches: list[list[tuple[ImageRecord, str]]] = []

    @property
    def can_undo(self) -> bool:
        return bool(self._batches)

    def delete(self, records: list[ImageRecord]) -> TrashOutcome:
        batch, errors = [], []
        for record in records:
            try:
                trashed = move_to_trash(record.path) if record.path.exists() else ""  # "" = was missing
            except TrashError as exc:
                errors.append(str(exc))
                continue
            self.db.mark_trashed(record.id, trashed)
            batch.append((record, trashed))
        if batch:
            self._batches.append(batch)
        return TrashOutcome(tuple(r.id for r, _ in batch), tuple(errors))

    def undo(self) -> tuple[int, tuple[str, ...]]:
        """(images restored, problems)."""
        if not self._batches:
            return 0, ()
        restored, errors = 0, []
        for record, trashed in self._batches.pop():
            try:
                if trashed:
                    restore_from_trash(trashed, record.path)
            except OSError as exc:
                errors.append(str(exc))
                continue
            self.db.restore(record.id)
            restored += 1
        return restored, tuple(errors)
