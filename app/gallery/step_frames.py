"""Step frames: the small preview frames of one image's sampling steps, and their file (an animated WebP).

Each frame is a lossy still WebP made once, while the image was sampled (`app.gallery.frame_recorder`). The file
on disk is an ordinary animated WebP that any browser plays, built by wrapping those stills' VP8 bitstreams in
animation frames without re-encoding them: writing costs no CPU, reading gives back the very same stills, and
the file is smaller than Pillow's own animated encoder makes of the same frames.

Container layout (https://developers.google.com/speed/webp/docs/riff_container):
    RIFF <size> WEBP
      VP8X  flags (animation) · canvas width-1, height-1 (24 bits each)
      ANIM  background colour (BGRA) · loop count
      ANMF  x/2, y/2, width-1, height-1, duration ms (24 bits each) · flags   — one per frame, holding
        VP8   the still's bitstream

This module imports neither numpy nor Pillow at module level: the window imports it before its first paint.
"""

from __future__ import annotations

import io
import logging
import os
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

log = logging.getLogger(__name__)

FRAMES_FOLDER = "step_frames"  # in the app's data folder, next to the gallery database
FRAME_MS = 120  # how long each frame shows when the file is played as an animation
FINAL_FRAME_MS = 1500

_ANIMATION_FLAG = 0x02  # VP8X flags byte: the file is animated
_NO_BLEND = 0x02  # ANMF flags byte: draw the frame over the canvas as is (frames are opaque, full size)
_VP8_START_CODE = b"\x9d\x01\x2a"


class StepFramesError(ValueError):
    """The frames (or their file) are not what this module writes: missing, truncated or foreign."""


@dataclass(frozen=True, slots=True)
class StepFrames:
    """The preview frames of one image, oldest first; each a still lossy WebP of at most 256 px."""

    steps: tuple[int, ...]  # the sampling step each frame shows (1-based, ascending)
    total_steps: int
    frames: tuple[bytes, ...]  # one still WebP per entry of `steps`

    def __post_init__(self) -> None:
        if not self.frames or len(self.frames) != len(self.steps):
            raise StepFramesError(f"{len(self.frames)} frames for {len(self.steps)} steps")

    @property
    def nbytes(self) -> int:
        return sum(len(f) for f in self.frames)


def decode_frame(still: bytes) -> np.ndarray:
    """One still WebP -> (h, w, 3) uint8. Raises StepFramesError when the bytes do not decode."""
    import numpy as np
    from PIL import Image

    try:
        with Image.open(io.BytesIO(still)) as image:
            return np.asarray(image.convert("RGB"))
    except (OSError, ValueError, SyntaxError) as exc:  # Pillow's errors for broken or foreign data
        raise StepFramesError(f"a step frame does not decode: {exc}") from exc


# -- the animated WebP ---------------------------------------------------------------------------------------


def pack_animation(stills: Sequence[bytes]) -> bytes:
    """Still lossy WebPs of one size -> one animated WebP holding the same bitstreams."""
    bitstreams = [_vp8_of(still) for still in stills]
    sizes = {_vp8_size(vp8) for vp8 in bitstreams}
    if len(sizes) != 1:
        raise StepFramesError(f"frames of one animation must share one size, not {sorted(sizes)}")
    (width, height) = sizes.pop()
    body = bytearray(b"WEBP")
    body += _chunk(b"VP8X", bytes([_ANIMATION_FLAG, 0, 0, 0]) + _u24(width - 1) + _u24(height - 1))
    body += _chunk(b"ANIM", bytes(4) + (0).to_bytes(2, "little"))  # black background, loop forever
    for i, vp8 in enumerate(bitstreams):
        duration = FINAL_FRAME_MS if i == len(bitstreams) - 1 else FRAME_MS
        header = _u24(0) + _u24(0) + _u24(width - 1) + _u24(height - 1) + _u24(duration) + bytes([_NO_BLEND])
        body += _chunk(b"ANMF", header + _chunk(b"VP8 ", vp8))
    return b"RIFF" + len(body).to_bytes(4, "little") + bytes(body)


def unpack_animation(data: bytes) -> list[bytes]:
    """An animated WebP written by `pack_animation` -> its frames as still WebPs."""
    stills = []
    for fourcc, payload in _chunks(data, *_riff_bounds(data)):
        if fourcc != b"ANMF":
            continue
        if len(payload) < 16:
            raise StepFramesError("a frame header is truncated")
        inner = dict(_chunks(payload, 16, len(payload)))
        if b"VP8 " not in inner or b"ALPH" in inner:
            raise StepFramesError("a frame is not a lossy opaque image")
        _vp8_size(inner[b"VP8 "])
        body = b"WEBP" + _chunk(b"VP8 ", inner[b"VP8 "])
        stills.append(b"RIFF" + len(body).to_bytes(4, "little") + body)
    if not stills:
        raise StepFramesError("the file holds no frames")
    return stills


def write_file(path: Path, frames: StepFrames) -> int:
    """Write the animated WebP atomically (a crash leaves the old file or none); returns its size in bytes."""
    data = pack_animation(frames.frames)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return len(data)


def read_file(path: Path, steps: Sequence[int], total_steps: int) -> StepFrames:
    """The frames of `path`, which must hold one frame per step. Raises OSError, StepFramesError."""
    stills = unpack_animation(Path(path).read_bytes())
    if len(stills) != len(steps):
        raise StepFramesError(f"{path.name} holds {len(stills)} frames, the gallery expects {len(steps)}")
    return StepFrames(tuple(steps), total_steps, tuple(stills))


# -- RIFF chunks ---------------------------------------------------------------------------------------------


def _u24(value: int) -> bytes:
    if not 0 <= value < 1 << 24:
        raise StepFramesError(f"{value} does not fit the 24-bit field")
    return value.to_bytes(3, "little")


def _chunk(fourcc: bytes, payload: bytes) -> bytes:
    return fourcc + len(payload).to_bytes(4, "little") + payload + b"\0" * (len(payload) & 1)


def _riff_bounds(data: bytes) -> tuple[int, int]:
    """(start, end) of the chunks inside a RIFF/WEBP file."""
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WEBP":
        raise StepFramesError("not a WebP file")
    end = 8 + int.from_bytes(data[4:8], "little")
    if end > len(data):
        raise StepFramesError("the WebP file is truncated")
    return 12, end


def _chunks(data: bytes, start: int, end: int) -> Iterator[tuple[bytes, bytes]]:
    """(fourcc, payload) of each chunk in data[start:end]."""
    pos = start
    while pos < end:
        if pos + 8 > end:
            raise StepFramesError("a chunk header is truncated")
        size = int.from_bytes(data[pos + 4 : pos + 8], "little")
        if pos + 8 + size > end:
            raise StepFramesError("a chunk is truncated")
        yield data[pos : pos + 4], data[pos + 8 : pos + 8 + size]
        pos += 8 + size + (size & 1)


def _vp8_of(still: bytes) -> bytes:
    """The lossy bitstream of a still WebP (simple or extended layout, without alpha)."""
    chunks = dict(_chunks(still, *_riff_bounds(still)))
    if b"VP8 " not in chunks or b"ALPH" in chunks:
        raise StepFramesError("a frame is not a lossy opaque WebP")
    return chunks[b"VP8 "]


def _vp8_size(vp8: bytes) -> tuple[int, int]:
    """(width, height) from a VP8 key frame header: 3-byte frame tag, start code, 14-bit width and height."""
    if len(vp8) < 10 or vp8[3:6] != _VP8_START_CODE:
        raise StepFramesError("a frame's bitstream is not a VP8 key frame")
    width = int.from_bytes(vp8[6:8], "little") & 0x3FFF
    height = int.from_bytes(vp8[8:10], "little") & 0x3FFF
    if not width or not height:
        raise StepFramesError("a frame has no pixels")
    return width, height
