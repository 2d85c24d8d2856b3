"""The two hashes a LoRA file is known by (torch-free, so metadata and recall can use it).

- SHA-256 of the whole file: our JSON records it (what a download page lists as the file's SHA-256).
- A1111's LoRA hash: SHA-256 of the bytes after the safetensors header (sd-webui-additional-networks' "addnet"
  hash, which kohya's trainer also precomputes), written as its first 12 hex digits in `Lora hashes:`; Civitai
  shows it as "AutoV3". Hashing the tensor bytes only keeps it stable when a tool rewrites the metadata.
Both come from one read of the file, cached by (path, size, modification time).
"""

from __future__ import annotations

import hashlib
import logging
import struct
from pathlib import Path

log = logging.getLogger(__name__)

SHORT_HASH_DIGITS = 12
_CHUNK = 1 << 20
_cache: dict[tuple[str, int, int], tuple[str, str]] = {}


def lora_hashes(path: str | Path) -> tuple[str, str]:
    """(full-file SHA-256 hex, A1111 short hash) of a safetensors LoRA file. Raises OSError if unreadable."""
    path = Path(path)
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key in _cache:
        return _cache[key]
    full, addnet = hashlib.sha256(), hashlib.sha256()
    with path.open("rb") as f:
        head = f.read(8)
        full.update(head)
        (n,) = struct.unpack("<Q", head) if len(head) == 8 else (0,)
        header = f.read(n)
        full.update(header)
        while chunk := f.read(_CHUNK):
            full.update(chunk)
            addnet.update(chunk)
    result = (full.hexdigest(), addnet.hexdigest()[:SHORT_HASH_DIGITS])
    _cache[key] = result
    return result
