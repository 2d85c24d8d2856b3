"""Bounds on what a server may send: JSON size and depth, image bytes and pixels. Everything is checked before
it is used, so a broken or hostile server costs at most these amounts of memory and ends the job with a sentence."""

from __future__ import annotations

import io
import json
from typing import TYPE_CHECKING

from app.remote.errors import ProtocolError

if TYPE_CHECKING:
    import numpy as np

MAX_JSON_BYTES = 8 * 2**20  # a queue answer, a history entry, system_stats
MAX_OBJECT_INFO_BYTES = 64 * 2**20  # /object_info of a server with many custom nodes is tens of MB
MAX_JSON_DEPTH = 64  # object_info nests about 8 deep
MAX_WS_MESSAGE_BYTES = 32 * 2**20  # a preview frame is tens of kB; a WebSocket-saved full image a few MB
MAX_IMAGE_BYTES = 256 * 2**20  # one /view answer (a 16-bit PNG of 4096² is ~100 MB)
MAX_IMAGE_PIXELS = 64 * 2**20  # 8192 x 8192
MAX_PREVIEW_SIDE = 2048


def _depth(value: object) -> int:
    """Nesting depth without recursion (the decoded value is already in memory; this bounds what code walks)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        deepest = max(deepest, depth)
        if depth > MAX_JSON_DEPTH:
            break
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
    return deepest


def parse_json(raw: bytes | str, what: str, max_bytes: int = MAX_JSON_BYTES) -> object:
    """Decode a server's JSON answer within the size and depth bounds; ProtocolError otherwise."""
    if len(raw) > max_bytes:
        raise ProtocolError(f"the server's {what} is larger than {max_bytes // 2**20} MB; refusing it")
    try:
        value = json.loads(raw)
    except RecursionError:  # the C decoder recurses per nesting level
        raise ProtocolError(f"the server's {what} is nested too deeply") from None
    except ValueError as exc:
        raise ProtocolError(f"the server's {what} is not valid JSON ({exc})") from None
    if _depth(value) > MAX_JSON_DEPTH:
        raise ProtocolError(f"the server's {what} is nested too deeply")
    return value


def decode_image(data: bytes, what: str, max_pixels: int = MAX_IMAGE_PIXELS, max_side: int = 0) -> np.ndarray:
    """(H, W, 3) uint8 from PNG/JPEG/WebP bytes, refusing oversized or undecodable images before decoding."""
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    if len(data) > MAX_IMAGE_BYTES:
        raise ProtocolError(f"the server's {what} is larger than {MAX_IMAGE_BYTES // 2**20} MB")
    try:
        with Image.open(io.BytesIO(data)) as im:
            width, height = im.size  # read from the header: nothing decoded yet
            if width * height > max_pixels or (max_side and max(width, height) > max_side):
                raise ProtocolError(f"the server's {what} is too large ({width}x{height} px)")
            if im.format not in ("PNG", "JPEG", "WEBP"):
                raise ProtocolError(f"the server's {what} is a {im.format} image, not PNG, JPEG or WebP")
            return np.asarray(im.convert("RGB"), dtype=np.uint8).copy()
    except Image.DecompressionBombError:  # Pillow's own, larger bound, checked when the header is read
        raise ProtocolError(f"the server's {what} is too large") from None
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as exc:
        raise ProtocolError(f"the server's {what} is not a readable image ({exc})") from None
