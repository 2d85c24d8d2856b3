"""Two images, A and B: a wipe (A left of the divider, B right; drag or move the mouse to slide it) or their
difference as a heat map, computed on a pool thread."""

from __future__ import annotations

import logging

import numpy as np
from PySide6.QtCore import QPointF, QRect, QRectF, Qt, Signal
from PySide6.QtGui import QColor, QImage, QMouseEvent, QPainter, QPen
from PySide6.QtWidgets import QWidget

from app.gallery.difference import DifferenceStats, difference_heatmap
from app.ui.gallery_tasks import run_task

log = logging.getLogger(__name__)


def qimage_to_array(image: QImage) -> np.ndarray:
    rgb = image.convertToFormat(QImage.Format.Format_RGB888)
    buffer = np.frombuffer(rgb.constBits(), np.uint8).reshape(rgb.height(), rgb.bytesPerLine())
    return buffer[:, : rgb.width() * 3].reshape(rgb.height(), rgb.width(), 3).copy()


def array_to_qimage(array: np.ndarray) -> QImage:
    array = np.ascontiguousarray(array)
    h, w, _ = array.shape
    return QImage(array.data, w, h, 3 * w, QImage.Format.Format_RGB888).copy()


class WipeView(QWidget):
    difference_ready = Signal(object)  # DifferenceStats

    def __init__(
        self, a: QImage, b: QImage, label_a: str, label_b: str, parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self.a, self.b = a, b
        self.labels = (label_a or "A", label_b or "B")
        self.split = 0.5
        self.mode = "wipe"  # or "difference"
        self.heat: QImage | None = None
        self.stats: DifferenceStats | None = None
        self.setMouseTracking(True)
        self.setMinimumSize(200, 200)

    def set_mode(self, mode: str) -> None:
        self.mode = mode
        if mode == "difference" and self.heat is None:
            a, b = qimage_to_array(self.a), qimage_to_array(self.b)
            run_task(lambda: difference_heatmap(a, b), self._on_task_finished)
        self.update()

    def _on_task_finished(self, result: object) -> None:
        heat, stats = result
        self.heat, self.stats = array_to_qimage(heat), stats
        self.difference_ready.emit(stats)
        self.update()

    def _image_rect(self) -> QRectF:
        size = self.a.size().scaled(self.size(), Qt.AspectRatioMode.KeepAspectRatio)
        rect = QRectF(0, 0, size.width(), size.height())
        rect.moveCenter(QRectF(self.rect()).center())
        return rect

    def mouseMoveEvent(self, event: QMouseEvent) -> None:
        if self.mode == "wipe":
            rect = self._image_rect()
            self.split = min(1.0, max(0.0, (event.position().x() - rect.left()) / max(1.0, rect.width())))
            self.update()

    def paintEvent(self, event: object) -> None:
        painter = QPainter(self)
        painter.fillRect(self.rect(), QColor(22, 22, 26))
        painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
        target = self._image_rect()
        if self.mode == "difference":
            if self.heat is None:
                painter.setPen(QColor(200, 200, 210))
                painter.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter, "Computing the difference…")
            else:
                painter.drawImage(target, self.heat)
                self._caption(painter, self._difference_caption(), Qt.AlignmentFlag.AlignLeft)
            return
        painter.drawImage(target, self.a)
        x = target.left() + self.split * target.width()
        painter.save()
        painter.setClipRect(QRectF(QPointF(x, target.top()), target.bottomRight()))
        painter.drawImage(target, self.b)
        painter.restore()
        painter.setPen(QPen(QColor(255, 255, 255, 220), 2))
        painter.drawLine(QPointF(x, target.top()), QPointF(x, target.bottom()))
        self._caption(painter, f"A  {self.labels[0]}", Qt.AlignmentFlag.AlignLeft)
        self._caption(painter, f"B  {self.labels[1]}", Qt.AlignmentFlag.AlignRight)

    def _difference_caption(self) -> str:
        s = self.stats
        if s is None:
            return ""
        return (
            f"Difference A−B · average {s.mean * 100:.1f}% · {s.changed * 100:.0f}% of pixels changed · "
            f"yellow = {s.scale * 100:.0f}% or more"
        )

    def _caption(self, painter: QPainter, text: str, side: Qt.AlignmentFlag) -> None:
        metrics = painter.fontMetrics()
        available = self.width() // 2 - 16 if self.mode == "wipe" else self.width() - 16
        width = min(available, metrics.horizontalAdvance(text) + 16)
        x = 8 if side == Qt.AlignmentFlag.AlignLeft else self.width() - width - 8
        box = QRect(x, 8, width, metrics.height() + 8)
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(QColor(0, 0, 0, 170))
        painter.drawRoundedRect(box, 4, 4)
        painter.setPen(QColor(240, 240, 245))
        elided = metrics.elidedText(text, Qt.TextElideMode.ElideRight, width - 16)
        painter.drawText(box.adjusted(8, 0, -8, 0), Qt.AlignmentFlag.AlignVCenter | side, elided)
