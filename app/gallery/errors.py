"""The gallery's errors: every message is a sentence that says what to do."""

from __future__ import annotations

from enum import Enum
from pathlib import Path


class GalleryError(Exception):
    """A gallery operation failed; the message says what to do."""


class GalleryReadOnlyError(GalleryError):
    pass


class OpenProblem(Enum):
    """Why the gallery database could not be opened, which decides what the window offers."""

    DAMAGED = "damaged"  # not a readable SQLite database: start a new one (the file is kept aside)
    NOT_A_FILE = "not a file"  # a folder (or something else) where the database file should be
    READ_ONLY = "read-only"  # the file, its folder or its disk cannot be written
    DISK_FULL = "disk full"
    UNREADABLE = "unreadable"  # another disk or permission error


class GalleryOpenError(GalleryError):
    """GalleryDB.open failed; the message is a sentence with the path. `problem` says what kind of failure,
    `path` is the database file. Nothing was changed on disk."""

    def __init__(self, message: str, path: Path, problem: OpenProblem) -> None:
        super().__init__(message)
        self.path = path
        self.problem = problem

    @property
    def damaged(self) -> bool:
        """A new gallery helps: the file itself is the problem (and can be set aside)."""
        return self.problem in (OpenProblem.DAMAGED, OpenProblem.NOT_A_FILE)
