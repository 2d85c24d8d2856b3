"""Temporary files of image saves that a crash or a killed run left behind (the atomic writer's `.<stem>-*.png.tmp`)."""

from __future__ import annotations

import logging
import time
from pathlib import Path

log = logging.getLogger(__name__)

TEMP_PATTERN = ".*.png.tmp"


def remove_stale_temp_files(folder: Path, *, recursive: bool = True, older_than_s: float = 0.0) -> int:
    """Delete unfinished saves in `folder` (never a finished image) untouched for `older_than_s`; returns how many.

    With the default age 0, call it only when no save is in flight (e.g. the window at start-up); a command that
    may share the folder with another run passes an age that a save in flight cannot reach."""
    folder = Path(folder)
    if not folder.is_dir():
        return 0
    now = time.time()
    try:
        candidates = list(folder.rglob(TEMP_PATTERN) if recursive else folder.glob(TEMP_PATTERN))
    except OSError:
        return 0
    removed = 0
    for tmp in candidates:
        try:
            if not tmp.is_file() or now - tmp.stat().st_mtime < older_than_s:
                continue
            tmp.unlink()
            removed += 1
        except OSError as exc:
            log.warning("cannot remove %s: %s", tmp, exc)
    if removed:
        log.info("removed %d unfinished save(s) from %s", removed, folder)
    return removed
