"""Download a whole model set: check the Hub, check the disk, fetch each file, then check the model set.

Call `download_model_set` from a worker thread; `on_progress` is called on that thread (a UI forwards it with a
queued signal), and `cancel` is a `threading.Event` the UI thread may set at any time. The checkpoint is fetched
last, so whatever happens before the end, the folder never looks like a usable model set that is not one.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock, Timeout  # huggingface_hub's own dependency

from app.downloads.catalog import RemoteFile
from app.downloads.errors import DestinationError, DiskSpaceError, DownloadCancelled, IncompleteModelSetError
from app.downloads.hub import RemoteMetadata, resolve_plan
from app.downloads.layout import PARTIAL_DIR, remove_empty_partial_dirs
from app.downloads.plan import DownloadPlan
from app.downloads.progress import DownloadProgress, Phase, ProgressCallback, RateMeter, format_bytes
from app.downloads.reuse import reuse_controlnets
from app.downloads.transfer import fetch_file

log = logging.getLogger(__name__)

SPACE_MARGIN = 200_000_000  # keep some room beyond the files themselves
LOCK_NAME = ".downloads.lock"


@dataclass(frozen=True, slots=True)
class DownloadResult:
    plan: DownloadPlan  # with the Hub's exact sizes
    model_name: str  # as the model library will show it (the checkpoint's stem); "" for ControlNets only
    fetched_files: int
    fetched_bytes: int  # transferred in this session (resumed data not counted)
    seconds: float

    @property
    def destination(self) -> Path:
        return self.plan.destination


class _Reporter:
    """Turns per-file byte counts into DownloadProgress values for the whole plan."""

    def __init__(self, plan: DownloadPlan, on_progress: ProgressCallback | None, clock: Callable[[], float]):
        self.plan = plan
        self.on_progress = on_progress
        self.meter = RateMeter(clock=clock)
        self.index = 0
        self.name = ""
        self.file_total = 0
        self.file_done = 0
        self.done_before = plan.present_bytes  # complete files and partial data of files not started yet
        self.fetched = 0

    def start_file(self, index: int, name: str, size: int, present: int) -> None:
        self.index, self.name, self.file_total = index, name, size
        self.done_before -= present  # counted again through file_done from here on
        self.file_done = present

    def bytes_on_disk(self, n: int) -> None:
        if n > self.file_done:
            self.meter.add(n - self.file_done)
            self.fetched += n - self.file_done
        self.file_done = n
        self.emit(Phase.DOWNLOADING)

    def checking(self, index: int, name: str, done: int, total: int) -> None:
        """Reading back a file already on disk (a ControlNet another set has) before it is linked."""
        self.index, self.name, self.file_total = index, name, total
        self.emit(Phase.VERIFYING, verified=done)

    def finish_file(self) -> None:
        self.done_before += self.file_total
        self.file_done = 0

    def emit(self, phase: Phase, verified: int | None = None) -> None:
        if self.on_progress is None:
            return
        done = self.done_before + (self.file_done if phase is not Phase.DONE else 0)
        remaining = max(self.plan.total_bytes - done, 0)
        self.on_progress(
            DownloadProgress(
                phase=phase,
                file_index=self.index,
                file_count=len(self.plan.files),
                file_name=self.name,
                file_done=verified if verified is not None else self.file_done,
                file_total=self.file_total,
                done_bytes=done,
                total_bytes=self.plan.total_bytes,
                speed=self.meter.speed(),
                eta_seconds=self.meter.eta(remaining) if phase is Phase.DOWNLOADING else None,
            )
        )


def _prepare_destination(destination: Path) -> None:
    try:
        destination.mkdir(parents=True, exist_ok=True)
        (destination / PARTIAL_DIR).mkdir(exist_ok=True)
    except FileExistsError:
        raise DestinationError(
            f"{destination} exists and is not a folder; choose another destination"
        ) from None
    except NotADirectoryError:
        raise DestinationError(f"{destination}: part of this path is a file, not a folder") from None
    except PermissionError:
        raise DestinationError(
            f"cannot create {destination}: permission denied; choose another folder"
        ) from None
    except OSError as exc:
        raise DestinationError(f"cannot create {destination}: {exc.strerror or exc}") from None


@contextlib.contextmanager
def _only_download_into(destination: Path) -> Iterator[None]:
    """One download per destination: two writers appending to the same partial file would waste the transfer."""
    lock_path = destination / LOCK_NAME
    lock = FileLock(lock_path, timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise DestinationError(
            f"another download into {destination} is running (in this app or in a terminal); wait for it or "
            "cancel it first"
        ) from None
    try:
        yield
    finally:
        lock.release()
        with contextlib.suppress(OSError):
            lock_path.unlink()


def check_free_space(plan: DownloadPlan, free_bytes: Callable[[Path], int] | None = None) -> None:
    needed = plan.remaining_bytes
    if needed == 0:
        return
    free = (free_bytes or (lambda p: shutil.disk_usage(p).free))(plan.destination)
    if needed + SPACE_MARGIN > free:
        raise DiskSpaceError(
            f"{format_bytes(needed)} still to download but only {format_bytes(free)} free on the disk holding "
            f"{plan.destination}; free some space or choose another folder"
        )


def verify_model_set(destination: Path, variant: str) -> str:
    """The same check the model library does (headers only); returns the model's name."""
    from app.inference.api.errors import InferenceError  # imports torch: only now, at the very end
    from app.inference.checkpoints.model_set import locate_model_set

    try:
        model_set = locate_model_set(destination, variant=variant)
        model_set.require_text_encoders(use_t5=True)
    except (InferenceError, OSError, ValueError) as exc:
        raise IncompleteModelSetError(
            f"the files arrived but {destination} is not a usable model set: {exc}"
        ) from None
    return model_set.name


def verify_controlnets(plan: DownloadPlan) -> None:
    """Each downloaded ControlNet passes the check the ControlNet list does (headers only)."""
    from app.inference.api.errors import InferenceError  # imports torch: only now, at the very end
    from app.inference.checkpoints.controlnet_loading import inspect_controlnet

    for planned in plan.files:
        if planned.remote.role != "controlnet":
            continue
        path = plan.destination / planned.local_path
        try:
            inspect_controlnet(path)
        except (InferenceError, OSError) as exc:
            raise IncompleteModelSetError(f"{path} arrived but is not a usable ControlNet: {exc}") from None


def download_model_set(
    plan: DownloadPlan,
    *,
    token: str | None,
    on_progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
    clock: Callable[[], float] = time.monotonic,
    free_bytes: Callable[[Path], int] | None = None,
) -> DownloadResult:
    """Fetch what `plan` still lacks into `plan.destination`, resuming partial files, then check the set.

    Raises DownloadCancelled (not an error) or a DownloadError whose message is meant for the user.
    """
    started = clock()
    if cancel is not None and cancel.is_set():
        raise DownloadCancelled()
    _prepare_destination(plan.destination)
    reporter = _Reporter(plan, on_progress, clock)
    with _only_download_into(plan.destination):
        try:
            plan, fetched_files = _fetch_missing(plan, token, reporter, cancel, free_bytes)
        finally:
            remove_empty_partial_dirs(plan.destination)  # partial data stays; empty folders do not
    reporter.index, reporter.name = 0, ""
    reporter.emit(Phase.CHECKING_MODEL_SET)
    name = verify_model_set(plan.destination, plan.variant) if plan.has_model_set else ""
    verify_controlnets(plan)
    reporter.emit(Phase.DONE)
    return DownloadResult(plan, name, fetched_files, reporter.fetched, clock() - started)


def _fetch_missing(
    plan: DownloadPlan,
    token: str | None,
    reporter: _Reporter,
    cancel: threading.Event | None,
    free_bytes: Callable[[Path], int] | None,
) -> tuple[DownloadPlan, int]:
    reporter.emit(Phase.CHECKING)
    plan, metadata = resolve_plan(plan, token)
    # a ControlNet the other Large set already has is linked, not fetched (after checking it: shown as verifying)
    plan = reuse_controlnets(plan, metadata, cancel, reporter.checking)
    reporter.index, reporter.name, reporter.file_total = 0, "", 0
    reporter.plan = plan
    reporter.done_before = plan.present_bytes
    check_free_space(plan, free_bytes)
    log.info(
        "downloading %s into %s: %s of %s left",
        plan.source.label,
        plan.destination,
        format_bytes(plan.remaining_bytes),
        format_bytes(plan.total_bytes),
    )
    fetched_files = 0
    for index, (planned, meta) in enumerate(zip(plan.files, metadata, strict=True), start=1):
        if planned.complete or meta is None:
            continue
        if cancel is not None and cancel.is_set():
            raise DownloadCancelled()
        _fetch_one(
            plan.destination, planned.remote, meta, index, planned.present_bytes, token, reporter, cancel
        )
        fetched_files += 1
    return plan, fetched_files


def _fetch_one(
    destination: Path,
    remote: RemoteFile,
    meta: RemoteMetadata,
    index: int,
    present: int,
    token: str | None,
    reporter: _Reporter,
    cancel: threading.Event | None,
) -> None:
    reporter.start_file(index, remote.local_path, meta.size, present)

    def verified(n: int) -> None:
        reporter.emit(Phase.VERIFYING, verified=n)

    fetch_file(
        destination,
        remote,
        meta,
        token=token,
        report=reporter.bytes_on_disk,
        cancel=cancel,
        report_verify=verified,
    )
    reporter.finish_file()
