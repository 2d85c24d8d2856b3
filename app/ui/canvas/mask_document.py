"""The inpainting mask as a plain object: a grey image the size of the input image (white = regenerate), brush
and eraser strokes rendered into it, clear / invert, and undo / redo of whole strokes.

No widget here: the canvas turns mouse and tablet events into `begin_stroke` / `stroke_to` / `end_stroke` in
image pixels, so tests and the benchmark drive the same code. A stroke segment is a run of soft dabs (radial
gradients) spaced a fraction of the brush size apart; hardness is where the dab's fall-off starts, pressure
scales the dab. Undo keeps the mask as it was before each stroke (a few MB each at 2048², bounded).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from PySide6.QtCore import QPointF, QRectF, QSize, QSizeF, Qt
from PySide6.QtGui import QBrush, QColor, QImage, QPainter, QRadialGradient

log = logging.getLogger(__name__)

MAX_UNDO = 30
DAB_SPACING = 0.15  # dabs per stroke segment: a dab every 15 % of the brush diameter (smooth, not too many)
MIN_SIZE, MAX_SIZE = 1, 1024


@dataclass(slots=True)
class Brush:
    size: int = 64  # diameter in image pixels
    hardness: float = 0.7  # 1 = hard edge, 0 = soft all the way from the centre
    erase: bool = False


class MaskDocument:
    """The mask of one input image. `changed` listeners hear of every edit (the canvas repaints)."""

    def __init__(self, size: QSize) -> None:
        self.image = QImage(size, QImage.Format.Format_Grayscale8)
        self.image.fill(0)
        self.brush = Brush()
        self._undo: list[QImage] = []
        self._redo: list[QImage] = []
        self._last: QPointF | None = None
        self._stroking = False
        self._travel = 0.0  # stroke length since the last dab
        self.listeners: list[Callable[[QRectF | None], None]] = []  # told what changed (None: everything)

    # ------------------------------------------------------------------------------------------ state

    def size(self) -> QSize:
        return self.image.size()

    def is_empty(self) -> bool:
        """True when nothing is marked for regeneration (no pixel above black)."""
        return _max_value(self.image) == 0

    def can_undo(self) -> bool:
        return bool(self._undo)

    def can_redo(self) -> bool:
        return bool(self._redo)

    # ------------------------------------------------------------------------------------------ strokes

    def begin_stroke(self, point: QPointF, pressure: float = 1.0) -> QRectF:
        """Start a stroke at `point` (image pixels): the mask before it goes on the undo stack."""
        self._push_undo()
        self._stroking = True
        self._last = QPointF(point)
        self._travel = 0.0
        return self._dab_run(point, point, pressure, first=True)

    def stroke_to(self, point: QPointF, pressure: float = 1.0) -> QRectF:
        """Continue the stroke to `point`; returns the image rectangle that changed (for a partial repaint)."""
        if not self._stroking or self._last is None:
            return self.begin_stroke(point, pressure)
        start, self._last = self._last, QPointF(point)
        return self._dab_run(start, point, pressure, first=False)

    def end_stroke(self) -> None:
        self._stroking = False
        self._last = None

    def _dab_run(self, start: QPointF, end: QPointF, pressure: float, first: bool) -> QRectF:
        """Dabs every `spacing` px along start → end, carrying the distance since the last dab over from the
        previous segment (short mouse moves do not pile dabs onto one spot)."""
        radius = max(0.5, self.brush.size * max(0.05, min(1.0, pressure)) / 2)
        length = math.hypot(end.x() - start.x(), end.y() - start.y())
        spacing = max(1.0, 2 * radius * DAB_SPACING)
        offsets = [0.0] if first else []
        at = spacing - self._travel
        while at <= length:
            offsets.append(at)
            at += spacing
        self._travel = length - (at - spacing)
        if not offsets:
            return QRectF()
        colour = 0 if self.brush.erase else 255  # over an opaque mask, a dab of coverage a moves a of the way
        stamp = _stamp(round(radius * 2) / 2, round(max(0.0, min(1.0, self.brush.hardness)), 2), colour)
        half = stamp.width() / 2
        painter = QPainter(self.image)
        box = QRectF()
        for offset in offsets:
            t = offset / length if length else 0.0
            centre = QPointF(start.x() + (end.x() - start.x()) * t, start.y() + (end.y() - start.y()) * t)
            corner = QPointF(round(centre.x() - half), round(centre.y() - half))
            painter.drawImage(corner, stamp)
            box = box.united(QRectF(corner, QSizeF(stamp.size())))
        painter.end()
        self._notify(box)
        return box

    # ------------------------------------------------------------------------------------------ whole mask

    def clear(self) -> None:
        self._push_undo()
        self.image.fill(0)
        self._notify()

    def invert(self) -> None:
        self._push_undo()
        self.image.invertPixels()
        self._notify()

    def undo(self) -> bool:
        if not self._undo:
            return False
        self._redo.append(self.image)
        self.image = self._undo.pop()
        self._notify()
        return True

    def redo(self) -> bool:
        if not self._redo:
            return False
        self._undo.append(self.image)
        self.image = self._redo.pop()
        self._notify()
        return True

    def load(self, path: Path) -> str:
        """Replace the mask with a grey or alpha PNG of the same size; "" or a sentence saying why not."""
        image = QImage(str(path))
        if image.isNull():
            return f"{Path(path).name} is not an image the mask can be read from."
        if image.size() != self.image.size():
            w, h = self.image.width(), self.image.height()
            return f"The mask {Path(path).name} is {image.width()}×{image.height()}, the input image {w}×{h}."
        self._push_undo()
        if (
            image.hasAlphaChannel()
            and _max_value(image.convertToFormat(QImage.Format.Format_Grayscale8)) == 0
        ):
            alpha = image.convertToFormat(QImage.Format.Format_Alpha8)  # transparent = regenerate (LoadImage)
            grey = QImage(alpha.constBits(), alpha.width(), alpha.height(), alpha.bytesPerLine(),
                          QImage.Format.Format_Grayscale8).copy()  # fmt: skip
            grey.invertPixels()
            self.image = grey
        else:
            self.image = image.convertToFormat(QImage.Format.Format_Grayscale8)
        self._notify()
        return ""

    def save(self, path: Path) -> Path:
        """Write the mask as a grey PNG (white = regenerate); raises OSError when it cannot be written."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        if not self.image.save(str(path), "PNG"):
            raise OSError(f"cannot write the mask to {path}")
        return path

    def _push_undo(self) -> None:
        self._undo.append(self.image.copy())
        del self._undo[:-MAX_UNDO]
        self._redo.clear()

    def _notify(self, changed: QRectF | None = None) -> None:
        for listener in list(self.listeners):
            listener(changed)


@lru_cache(maxsize=16)
def _stamp(radius: float, hardness: float, grey: int) -> QImage:
    """One dab, drawn once per brush (a gradient per dab costs about 3x a blit of this image)."""
    side = max(1, math.ceil(2 * radius))
    stamp = QImage(side, side, QImage.Format.Format_ARGB32_Premultiplied)
    stamp.fill(0)
    painter = QPainter(stamp)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing, True)
    painter.setPen(Qt.PenStyle.NoPen)
    centre = QPointF(side / 2, side / 2)
    painter.setBrush(_dab_brush(centre, radius, hardness, grey))
    painter.drawEllipse(centre, radius, radius)
    painter.end()
    return stamp


def _dab_brush(centre: QPointF, radius: float, hardness: float, grey: int) -> QBrush:
    """Solid up to `hardness` x radius, then falling to transparent at the edge."""
    gradient = QRadialGradient(centre, radius)
    gradient.setColorAt(0.0, QColor(grey, grey, grey, 255))
    gradient.setColorAt(min(hardness, 0.999), QColor(grey, grey, grey, 255))
    gradient.setColorAt(1.0, QColor(grey, grey, grey, 0))
    return QBrush(gradient)


def _max_value(grey: QImage) -> int:
    """The largest pixel value of a Grayscale8 image (for a save or a check, not per frame)."""
    import numpy as np

    if grey.isNull() or grey.width() == 0 or grey.height() == 0:
        return 0
    rows = np.frombuffer(grey.constBits(), np.uint8, grey.bytesPerLine() * grey.height())
    return int(rows.reshape(grey.height(), grey.bytesPerLine())[:, : grey.width()].max())
