"""Why the gallery database does not open, in a sentence, and setting a damaged one aside.

GalleryDB.open turns whatever SQLite or the file system raised into one GalleryOpenError whose `problem` tells
the window what to offer: a damaged file (or a folder in its place) can be set aside for a new gallery; a
read-only file or disk and a full disk need the user to act first. A damaged file is never changed or
deleted: `set_aside` renames it, and only when the user chooses to start a new gallery.
"""

from __future__ import annotations

import errno
import logging
import os
import time
from pathlib import Path

from app.gallery.errors import GalleryOpenError, OpenProblem

log = logging.getLogger(__name__)

_SQLITE_HEADER = b"SQLite format 3\0"
_PERM, _READONLY, _IOERR, _CORRUPT, _FULL, _CANTOPEN, _NOTADB = (
    3,
    8,
    10,
    11,
    13,
    14,
    26,
)  # SQLite result codes


def check_file(path: Path) -> None:
    """Refuse what is plainly not a database before SQLite touches it (it would not say so clearly)."""
    if not path.is_file():
        raise GalleryOpenError(_not_a_file(path), path, OpenProblem.NOT_A_FILE)
    with open(path, "rb") as f:
        head = f.read(100)
    if head and (len(head) < 100 or not head.startswith(_SQLITE_HEADER)):
        raise GalleryOpenError(
            damaged_message(path, "it is not an SQLite database"), path, OpenProblem.DAMAGED
        )


def damaged_message(path: Path, detail: str) -> str:
    return f"The gallery database {path} is damaged and cannot be read ({detail})."


def _not_a_file(path: Path) -> str:
    return f"The gallery database {path} is a folder (or something else), not a database file."


def open_error(path: Path, exc: BaseException) -> GalleryOpenError:
    """The sentence and kind of problem for an error raised while opening the database at `path`."""
    folder = path.parent
    code = getattr(exc, "sqlite_errorcode", None)
    code = None if code is None else code & 0xFF  # the primary result code
    number = exc.errno if isinstance(exc, OSError) else None
    if code == _FULL or number in (errno.ENOSPC, errno.EDQUOT) or (code == _IOERR and _disk_full(folder)):
        message = f"There is not enough disk space for the gallery database {path}: free some space, then try again."
        return GalleryOpenError(message, path, OpenProblem.DISK_FULL)
    cannot_write = code in (_READONLY, _PERM) or number in (errno.EROFS, errno.EACCES, errno.EPERM)
    if cannot_write or (code == _CANTOPEN and _read_only(folder, path)):
        message = (
            f"The gallery database {path} cannot be written: the file, its folder or its disk is read-only. "
            "Make it writable, then try again."
        )
        return GalleryOpenError(message, path, OpenProblem.READ_ONLY)
    if code == _CANTOPEN and path.exists() and not path.is_file():
        return GalleryOpenError(_not_a_file(path), path, OpenProblem.NOT_A_FILE)
    if code in (_IOERR, _CANTOPEN) or isinstance(exc, OSError):
        return GalleryOpenError(
            f"The gallery database {path} cannot be opened ({exc}).", path, OpenProblem.UNREADABLE
        )
    # SQLITE_CORRUPT, SQLITE_NOTADB, a broken schema or search index ("vtable constructor failed"), bad UTF-8
    return GalleryOpenError(damaged_message(path, str(exc)), path, OpenProblem.DAMAGED)


def _disk_full(folder: Path) -> bool:
    try:
        stat = os.statvfs(folder)
    except (OSError, AttributeError):  # AttributeError: no statvfs (Windows)
        return False
    return stat.f_bavail * stat.f_frsize < 1 << 20


def _read_only(folder: Path, path: Path) -> bool:
    try:
        if os.statvfs(folder).f_flag & os.ST_RDONLY:
            return True
    except (OSError, AttributeError):
        pass
    return not os.access(folder, os.W_OK) or (path.exists() and not os.access(path, os.W_OK))


def set_aside(path: Path) -> Path:
    """Rename a damaged database (with its -wal and -shm files, which belong to it) to
    `<name>.damaged-<date>-<time>` next to it, so that a new gallery can start and nothing is lost. Returns the
    new path; raises OSError when the rename fails."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target = path.with_name(f"{path.name}.damaged-{stamp}")
    n = 1
    while target.exists() or target.is_symlink():
        n += 1
        target = path.with_name(f"{path.name}.damaged-{stamp}-{n}")
    path.rename(target)
    for suffix in ("-wal", "-shm"):
        companion = path.with_name(path.name + suffix)
        if companion.is_file():
            companion.rename(target.with_name(target.name + suffix))
    log.warning("damaged gallery database set aside as %s", target)
    return target
