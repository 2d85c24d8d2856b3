"""One file from the Hub into place: resumable, cancellable, checked, and only then given its real name.

`hf_hub_download` (huggingface_hub 2.x) writes to a process-unique temporary file and deletes it on any failure,
so an interrupted multi-gigabyte download starts again from zero (huggingface/huggingface_hub#4196). We keep our
own partial file and hand it to huggingface_hub's `http_get`, which sends `Range: bytes=<size>-` and appends; its
own retries of dropped connections within one attempt also resume from the bytes written.
"""

from __future__ import annotations

import errno
import functools
import hashlib
import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import httpx2
from huggingface_hub.errors import HfHubHTTPError
from huggingface_hub.file_download import http_get
from huggingface_hub.utils import build_hf_headers

from app import __version__
from app.downloads.catalog import RemoteFile
from app.downloads.errors import (
    DestinationError,
    DiskSpaceError,
    DownloadCancelled,
    HubUnavailableError,
    IntegrityError,
)
from app.downloads.hub import RemoteMetadata, translate_hub_error
from app.downloads.layout import find_partials, partial_path
from app.downloads.progress import format_bytes

log = logging.getLogger(__name__)

HASH_BLOCK = 8 * 1024 * 1024
_DISK_FULL = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}

FileBytesCallback = Callable[[int], None]  # bytes of the current file now on disk (absolute, may go down)


class _ByteSink:
    """Stands in for huggingface_hub's tqdm bar: receives chunk sizes, reports them, and raises on cancel.

    `http_get` calls `update(len(chunk))` just before writing each chunk, so raising there stops the transfer
    with every reported byte also on disk. `initial` is where the transfer really starts (0 when the server
    ignored our Range header and the partial file was truncated).
    """

    def __init__(
        self, report: FileBytesCallback, cancel: threading.Event | None, *, initial: int = 0, **_: object
    ):
        self._report = report
        self._cancel = cancel
        self.n = initial
        report(initial)

    def __enter__(self) -> _ByteSink:
        return self

    def __exit__(self, *exc_info: object) -> None:
        return None

    def update(self, n: int | float = 1) -> None:
        if self._cancel is not None and self._cancel.is_set():
            raise DownloadCancelled()
        self.n += int(n)
        self._report(self.n)

    def close(self) -> None:
        return None


def _open_partial(path: Path) -> BinaryIO:
    """Open for appending after the bytes already there (seekable, unlike mode "a", so `http_get` can truncate)."""
    handle = open(path, "r+b") if path.exists() else open(path, "wb")  # noqa: SIM115 - closed by the caller
    handle.seek(0, os.SEEK_END)
    return handle


def expected_digest(etag: str) -> tuple[str, str] | None:
    """(algorithm, hex) to check a file against its ETag: sha256 for LFS/Xet files, git blob sha1 otherwise."""
    etag = etag.lower()
    if len(etag) == 64 and all(c in "0123456789abcdef" for c in etag):
        return "sha256", etag
    if len(etag) == 40 and all(c in "0123456789abcdef" for c in etag):
        return "git-sha1", etag
    return None


def file_digest(
    path: Path, algorithm: str, cancel: threading.Event | None, report: FileBytesCallback | None = None
) -> str:
    size = path.stat().st_size
    digest = hashlib.sha256() if algorithm == "sha256" else hashlib.sha1(f"blob {size}\0".encode())
    done = 0
    with open(path, "rb") as handle:
        while block := handle.read(HASH_BLOCK):
            if cancel is not None and cancel.is_set():
                raise DownloadCancelled()
            digest.update(block)
            done += len(block)
            if report is not None:
                report(done)
    return digest.hexdigest()


def _prepare_partial(destination: Path, remote: RemoteFile, meta: RemoteMetadata) -> Path:
    partial = partial_path(destination, remote.local_path, meta.etag)
    for stale in find_partials(destination, remote.local_path):
        if stale != partial:
            log.info("discarding partial data of an older version: %s", stale)
            stale.unlink(missing_ok=True)
    if partial.exists() and partial.stat().st_size > meta.size:
        log.warning("partial file larger than the file on the Hub; starting over: %s", partial)
        partial.unlink()
    return partial


def fetch_file(
    destination: Path,
    remote: RemoteFile,
    meta: RemoteMetadata,
    *,
    token: str | None,
    report: FileBytesCallback,
    cancel: threading.Event | None = None,
    report_verify: FileBytesCallback | None = None,
) -> Path:
    """Download (or resume) one file, check it against the Hub's size and checksum, and move it into place."""
    final = destination / remote.local_path
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        partial = _prepare_partial(destination, remote, meta)
        partial.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _disk_error(exc, destination, remote) from None
    if cancel is not None and cancel.is_set():
        raise DownloadCancelled()

    present = partial.stat().st_size if partial.exists() else 0
    if present:
        log.info("resuming %s at %s of %s", remote.local_path, format_bytes(present), format_bytes(meta.size))
    headers = build_hf_headers(
        token=(token or False) if meta.send_token else False,
        library_name="sd35-studio",
        library_version=__version__,
    )
    sink = functools.partial(_ByteSink, report, cancel)
    try:
        with _open_partial(partial) as handle:
            http_get(
                meta.url,
                handle,
                resume_size=present,
                headers=headers,
                expected_size=meta.size,
                tqdm_class=sink,
            )
    except DownloadCancelled:
        log.info("cancelled %s; %s kept for resuming", remote.local_path, format_bytes(_size(partial)))
        raise
    except (HfHubHTTPError, httpx2.RequestError) as exc:
        raise translate_hub_error(exc, remote, had_token=bool(token)) from None
    except OSError as exc:
        if exc.errno is None and _size(partial) != meta.size:  # http_get's "consistency check failed"
            raise HubUnavailableError(
                f"the transfer of {remote.local_path} ended early ({format_bytes(_size(partial))} of "
                f"{format_bytes(meta.size)}); try again to resume it"
            ) from None
        raise _disk_error(exc, destination, remote) from None

    _verify(partial, remote, meta, cancel, report_verify)
    try:
        os.replace(partial, final)
    except OSError as exc:
        raise _disk_error(exc, destination, remote) from None
    log.info("downloaded %s (%s)", final, format_bytes(meta.size))
    return final


def _verify(
    partial: Path,
    remote: RemoteFile,
    meta: RemoteMetadata,
    cancel: threading.Event | None,
    report: FileBytesCallback | None,
) -> None:
    size = _size(partial)
    if size != meta.size:
        partial.unlink(missing_ok=True)
        raise IntegrityError(
            f"{remote.local_path}: received {size} bytes but the Hub has {meta.size}; the data was discarded, "
            "try again"
        )
    expected = expected_digest(meta.etag)
    if expected is None:
        log.info("%s: ETag %r is not a checksum; checked the size only", remote.local_path, meta.etag)
        return
    algorithm, want = expected
    got = file_digest(partial, algorithm, cancel, report)
    if got != want:
        partial.unlink(missing_ok=True)
        raise IntegrityError(
            f"{remote.local_path}: the downloaded data does not match the Hub's checksum ({algorithm}); it was "
            "discarded, try again"
        )


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _disk_error(exc: OSError, destination: Path, remote: RemoteFile) -> DestinationError:
    if exc.errno in _DISK_FULL:
        return DiskSpaceError(
            f"the disk holding {destination} is full while writing {remote.local_path}. Free some space and try "
            "again: the data downloaded so far is kept and the download resumes from it."
        )
    if isinstance(exc, PermissionError):
        return DestinationError(f"cannot write to {destination}: permission denied; choose another folder")
    return DestinationError(f"cannot write {remote.local_path} into {destination}: {exc.strerror or exc}")
