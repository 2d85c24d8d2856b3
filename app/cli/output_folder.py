"""Housekeeping of the folder `generate` writes into: the temporary files of saves that an interrupted run left."""

from __future__ import annotations

import logging
import time
from pathlib import Path

log = logging.getLogger(__name__)

TEMP_PATTERN = ".*.png.tmp"  # the atomic PNG writer's temporary name: ".<stem>-<random>.png.tmp"
# A save in flight writes its temporary file continuously and renames it within seconds; one left untouched this
# long belongs to a run that was killed. The age keeps a second run into the same folder from losing its save.
STALE_AFTER_S = 60.0


def remove_stale_temp_files(folder: Path, *, older_than_s: float = STALE_AFTER_S) -> int:
    """Delete the stale temporary PNGs directly in `folder` (never a finished image); returns how many."""
    removed = 0
    now = time.time()
    try:
        candidates = list(Path(folder).glob(TEMP_PATTERN))
    except OSError:
        return 0
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
