"""Facts about a diffusion-model file for metadata: A1111's short hash and whether its weights are fp8.

The short hash is the first 10 hex digits of the SHA-256 of the whole file (A1111's "Model hash" since 2023).
Hashing a 16 GB checkpoint takes tens of seconds, so it runs on a background thread and is cached in the
gallery database by (path, size, mtime): a file that has not changed is never hashed twice.
"""

from __future__ import annotations

import hashlib
import json
import logging
import struct
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from app.gallery.db import GalleryDB

log = logging.getLogger(__name__)

MMDIT_PREFIX = "model.diffusion_model."
_FP8_DTYPES = {"F8_E4M3", "F8_E5M2"}
_CHUNK = 4 << 20


@dataclass(frozen=True, slots=True)
class ModelFileInfo:
    path: Path
    short_hash: str
    fp8: bool


def sha256_short(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()[:10]


def weights_are_fp8(path: Path) -> bool:
    """True when the file's MMDiT tensors are stored in fp8 (read from the safetensors header only)."""
    try:
        with open(path, "rb") as f:
            (length,) = struct.unpack("<Q", f.read(8))
            if length > 100 << 20:
                return False
            header = json.loads(f.read(length))
    except (OSError, ValueError, struct.error):
        return False
    dtypes = {v.get("dtype") for k, v in header.items() if k.startswith(MMDIT_PREFIX) and isinstance(v, dict)}
    if not dtypes:  # a standalone diffusion-model file has no prefix
        dtypes = {v.get("dtype") for k, v in header.items() if k != "__metadata__" and isinstance(v, dict)}
    return bool(dtypes & _FP8_DTYPES)


class ModelHasher:
    """Hashes model files one at a time on a daemon thread; `info(path)` returns a Future."""

    def __init__(self, db: GalleryDB | None) -> None:
        self._db = db
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="model-hash")
        self._lock = threading.Lock()
        self._futures: dict[tuple[str, int, int], Future[ModelFileInfo]] = {}

    def info(self, path: Path) -> Future[ModelFileInfo]:
        path = Path(path).resolve()
        stat = path.stat()
        key = (str(path), stat.st_size, stat.st_mtime_ns)
        with self._lock:
            if key not in self._futures:
                self._futures[key] = self._pool.submit(self._compute, path, *key[1:])
            return self._futures[key]

    def _compute(self, path: Path, size: int, mtime_ns: int) -> ModelFileInfo:
        if self._db is not None:
            cached = self._db.model_file(str(path), size, mtime_ns)
            if cached is not None:
                return ModelFileInfo(path, cached[0], cached[1])
        log.info("hashing %s (%.1f GB)", path.name, size / 1e9)
        info = ModelFileInfo(path, sha256_short(path), weights_are_fp8(path))
        if self._db is not None and not self._db.read_only:
            self._db.store_model_file(str(path), size, mtime_ns, info.short_hash, info.fp8)
        return info

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
