"""The SD3.5 Large ControlNets are the same files for Large and Large Turbo: one already downloaded into the other
set's `controlnets/` folder is not downloaded again. Once the Hub's size and checksum (the ETag) match the file
there, it is hard-linked into this set's folder — the same bytes on disk, no second copy, and every later step
(the check, the ControlNet list) sees an ordinary file. Where a link cannot be made (another disk, a file system
without links) or the file differs, it is downloaded as usual.

    plan = reuse_controlnets(plan, metadata, cancel)   # after resolve_plan: the linked files are complete
"""

from __future__ import annotations

import functools
import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path

from app.downloads.hub import RemoteMetadata
from app.downloads.plan import DownloadPlan, PlannedFile, other_copies
from app.downloads.transfer import expected_digest, file_digest

log = logging.getLogger(__name__)


CheckCallback = Callable[[int, str, int, int], None]  # (file index from 1, local path, bytes checked, size)


def reuse_controlnets(
    plan: DownloadPlan,
    metadata: tuple[RemoteMetadata | None, ...],
    cancel: threading.Event | None = None,
    on_check: CheckCallback | None = None,
) -> DownloadPlan:
    """`plan` (resolved) with each missing ControlNet that another set already holds linked into place and
    marked complete; the rest unchanged. `on_check` follows the checksum of the other copy (8.65 GB: a while)."""
    for index, (planned, meta) in enumerate(zip(plan.files, metadata, strict=True)):
        if planned.complete or meta is None or planned.remote.role != "controlnet":
            continue
        for source in other_copies(plan.destination, planned.remote):
            report = None
            if on_check is not None:
                report = functools.partial(on_check, index + 1, planned.local_path, total=meta.size)
            if _link(source, plan.destination / planned.local_path, meta, cancel, report):
                plan = plan.replace_file(index, PlannedFile(planned.remote, meta.size, True, meta.size, True))
                break
    return plan


def _link(
    source: Path,
    target: Path,
    meta: RemoteMetadata,
    cancel: threading.Event | None,
    report: Callable[[int], None] | None,
) -> bool:
    try:
        if source.stat().st_size != meta.size:
            log.info("%s differs in size from the Hub's file; downloading instead", source)
            return False
        expected = expected_digest(meta.etag)
        if expected is not None and file_digest(source, expected[0], cancel, report) != expected[1]:
            log.info("%s differs from the Hub's file (checksum); downloading instead", source)
            return False
        target.parent.mkdir(parents=True, exist_ok=True)
        os.link(source, target)
    except OSError as exc:  # another disk, no hard links, no permission: an ordinary download follows
        log.info("cannot link %s into %s (%s); downloading instead", source, target.parent, exc)
        return False
    log.info("linked %s from %s: not downloaded again", target, source)
    return True
