"""The mask brush on the canvas: turns presses and drags (mouse or tablet pen) into strokes of a `MaskDocument`
and draws the mask over the input image as a tinted, semi-transparent layer.

The tint is kept in an ARGB image updated only where a stroke changed the mask, so a drag on a 2048² mask
costs a small rectangle per move, not a whole-image conversion.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from PySide6.QtCore import QPointF, QRect, QRectF
from PySide6.QtGui import QColor, QImage, QPainter

from app.ui.canvas.mask_document import MaskDocument

log = logging.getLogger(__name__)

MASK_TINT = QColor(255, 60, 90)  # regenerated area: a warm red that reads on most pictures


class MaskOverlay:
    """Active while the canvas shows the input image in Inpaint mode (`active`); `repaint(area)` asks the canvas
    to redraw the image area that changed (None: all of it)."""

    def __init__(self, document: MaskDocument, repaint: Callable[[QRectF | None], None]) -> None:
        self.document = document
        self.active = True
        self.opacity = 0.5
        self._repaint = repaint
        self._tint = QImage()
        self._dirty: QRect | None = None  # image area whose tint is out of date
        self._stroking = False
        document.listeners.append(self._on_document_changed)
        self._on_document_changed(None)

    def detach(self) -> None:
        if self._on_document_changed in self.document.listeners:
            self.document.listeners.remove(self._on_document_changed)

    # ------------------------------------------------------------------------------------------ input

    def press(self, point: QPointF, pressure: float = 1.0) -> None:
        """Start a stroke at `point` (image pixels)."""
        self._stroking = True
        self.document.begin_stroke(point, pressure)

    def move(self, point: QPointF, pressure: float = 1.0) -> None:
        if self._stroking:
            self.document.stroke_to(point, pressure)

    def release(self) -> None:
        if self._stroking:
            self._stroking = False
            self.document.end_stroke()

    def is_stroking(self) -> bool:
        return self._stroking

    # ------------------------------------------------------------------------------------------ drawing

    def _on_document_changed(self, changed: QRectF | None) -> None:
        whole = QRect(0, 0, self.document.image.width(), self.document.image.height())
        area = whole if changed is None else changed.toAlignedRect().intersected(whole)
        self._dirty = area if self._dirty is None else self._dirty.united(area)
        self._repaint(None if changed is None else QRectF(area))

    def tint(self) -> QImage:
        """The mask as a tinted ARGB image (brought up to date where it changed)."""
        mask = self.document.image
        if self._tint.size() != mask.size():
            self._tint = QImage(mask.size(), QImage.Format.Format_ARGB32_Premultiplied)
            self._dirty = QRect(0, 0, mask.width(), mask.height())
        if self._dirty is not None and not self._dirty.isEmpty():
            # The grey bytes read as alpha: colour x coverage, with no per-pixel Python.
            alpha = QImage(mask.constBits(), mask.width(), mask.height(), mask.bytesPerLine(),
                           QImage.Format.Format_Alpha8)  # fmt: skip
            painter = QPainter(self._tint)
            painter.setClipRect(self._dirty)
            painter.setCompositionMode(QPainter.CompositionMode.CompositionMode_Source)
            painter.fillRect(self._dirty, MASK_TINT)
            painter.setCompositionMode(QPainter.CompositionMode.CompositionMode_DestinationIn)
            painter.drawImage(0, 0, alpha)
            painter.end()
        self._dirty = None
        return self._tint

    def paint(self, painter: QPainter, target: QRectF) -> None:
        """Draw the mask over the picture drawn at `target` (widget coordinates)."""
        if not self.active or self.opacity <= 0:
            return
        tint = self.tint()
        painter.save()
        painter.setOpacity(self.opacity)
        painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, False)
        painter.drawImage(target, tint, QRectF(tint.rect()))
        painter.restore()


def cursor_radius(document: MaskDocument, zoom: float) -> float:
    """The brush's radius on screen, for the outline that follows the pointer."""
    return max(1.0, document.brush.size * zoom / 2)
