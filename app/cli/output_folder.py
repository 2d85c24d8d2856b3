"""Housekeeping of the folder `generate` writes into: the temporary files of saves that an interrupted run left."""

from __future__ import annotations

import logging
from pathlib import Path

from app.metadata.unfinished_saves import remove_stale_temp_files

log = logging.getLogger(__name__)

# A save in flight writes its temporary file continuously and renames it within seconds; one left untouched this
# long belongs to a run that was killed. The age keeps a second run into the same folder from losing its save.
STALE_AFTER_S = 60.0


def remove_stale_output_temp_files(folder: Path) -> int:
    """Delete the stale temporary PNGs directly in `folder` (never a finished image); returns how many."""
    return remove_stale_temp_files(folder, recursive=False, older_than_s=STALE_AFTER_S)
