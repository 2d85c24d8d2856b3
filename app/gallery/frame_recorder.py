"""Recording the preview frames of a job's images while they are sampled: small, compressed and bounded.

The UI worker feeds every preview it receives, on the inference thread, which only relays the engine's events:
sampling runs on the engine's own thread, and Pillow resizes and encodes without holding the GIL, so recording
does not stall it. Each frame is scaled to at most `MAX_SIDE` px and encoded as a lossy WebP at once; raw pixels
are never kept for more than the latest frame.

Thinning: at most `max_frames` frames are kept per image. When a long job passes that bound the recorder
keeps every second frame (doubling its stride), so the frames stay evenly spread over the steps; the latest
preview is always kept, even when it falls between two kept frames.
"""

from __future__ import annotations

import io
import logging

import numpy as np
from PIL import Image

from app.gallery.step_frames import StepFrames

log = logging.getLogger(__name__)

MAX_SIDE = 256  # px, long side
QUALITY = 55  # lossy WebP: ~6 KB for a detailed 256 px frame; a frame is a guide, not the image
METHOD = 2  # libwebp effort 0-6: ~40 % less time than the default 4, for files ~5 % larger
MAX_FRAMES = 40  # per image: all frames of a 40-step job; longer jobs are thinned evenly


def encode_frame(image: Image.Image, quality: int = QUALITY) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="WEBP", quality=quality, method=METHOD)
    return buffer.getvalue()


class FrameRecorder:
    """The step frames of one image."""

    def __init__(
        self, max_frames: int = MAX_FRAMES, max_side: int = MAX_SIDE, quality: int = QUALITY
    ) -> None:
        if max_frames < 2:
            raise ValueError(f"max_frames must be at least 2, not {max_frames}")
        self.max_frames, self.max_side, self.quality = max_frames, max_side, quality
        self.total_steps = 0
        self._kept: list[tuple[int, int, bytes]] = []  # (ordinal of the preview, step, WebP)
        self._latest: tuple[int, Image.Image | bytes] | None = None  # (step, frame) when not in _kept
        self._stride = 1  # keep the previews whose ordinal is a multiple of this
        self._received = 0
        self._size: tuple[int, int] | None = None  # every frame takes the first frame's size

    @property
    def frame_count(self) -> int:
        return len(self._kept) + (self._latest is not None)

    def add(self, step: int, total_steps: int, preview: np.ndarray) -> None:
        """One preview, (h, w, 3) uint8, of sampling step `step` (1-based) of `total_steps`."""
        ordinal = self._received
        self._received += 1
        self.total_steps = max(total_steps, step)
        small = self._downscale(preview)
        if ordinal % self._stride:
            self._latest = (step, small)  # between two kept frames: encoded only if it stays the last one
            return
        self._latest = None
        encoded = encode_frame(small, self.quality)
        self._kept.append((ordinal, step, encoded))
        if len(self._kept) > self.max_frames:
            self._stride *= 2
            self._kept = [k for k in self._kept if k[0] % self._stride == 0]
            if self._kept[-1][0] != ordinal:  # the newest frame was thinned out, but it is still the last
                self._latest = (step, encoded)

    def finish(self) -> StepFrames | None:
        """The recorded frames, or None when no preview came."""
        kept = [(step, data) for _, step, data in self._kept]
        if self._latest is not None:
            step, frame = self._latest
            kept.append((step, frame if isinstance(frame, bytes) else encode_frame(frame, self.quality)))
        if not kept:
            return None
        return StepFrames(tuple(s for s, _ in kept), self.total_steps, tuple(d for _, d in kept))

    def _downscale(self, preview: np.ndarray) -> Image.Image:
        pixels = np.ascontiguousarray(preview, dtype=np.uint8)
        if pixels.ndim != 3 or pixels.shape[2] != 3:
            raise ValueError(f"a preview must be (h, w, 3) uint8, not {pixels.shape}")
        image = Image.fromarray(pixels, "RGB")
        if self._size is None:
            height, width = pixels.shape[:2]
            scale = min(1.0, self.max_side / max(width, height))
            self._size = (max(1, round(width * scale)), max(1, round(height * scale)))
        if image.size == self._size:
            return image.copy()  # own the pixels: the preview array is the engine's
        return image.resize(self._size, Image.Resampling.BILINEAR, reducing_gap=2.0)


class JobFrameRecorder:
    """Recorders for the images of one job, by image index (a batch interleaves its images' steps).

    Recording is a nicety: a preview it cannot use is logged and that image's recording stops; the job goes on.
    """

    def __init__(self, max_frames: int = MAX_FRAMES) -> None:
        self.max_frames = max_frames
        self._images: dict[int, FrameRecorder] = {}
        self._failed: set[int] = set()

    def add(self, image_index: int, step: int, total_steps: int, preview: np.ndarray) -> None:
        if image_index in self._failed:
            return
        recorder = self._images.setdefault(image_index, FrameRecorder(self.max_frames))
        try:
            recorder.add(step, total_steps, preview)
        except Exception as exc:  # a bad preview or an encoder error must never stop the job
            log.warning("step frames of image %d are not recorded: %s", image_index, exc)
            self._failed.add(image_index)
            self._images.pop(image_index, None)

    def finish(self, image_index: int) -> StepFrames | None:
        recorder = self._images.pop(image_index, None)
        if recorder is None:
            return None
        try:
            return recorder.finish()
        except Exception as exc:  # as in add: the image matters, its frames are a nicety
            log.warning("step frames of image %d are lost: %s", image_index, exc)
            return None

    def discard(self, image_index: int) -> None:
        self._images.pop(image_index, None)
