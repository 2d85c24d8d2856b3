"""Two images, A and B: a wipe (A left of the divider, B right; the divider follows the mouse) or their
difference as a heat map, computed on a pool thread.

Both zoom and pan like the grid tiles: the wheel zooms about the cursor, a drag pans once the image is larger
than the view, a double-click fits. Every change is reported as `view_changed(zoom, centre)`, the tiles'
protocol, so the compare view keeps the grid and the wipe in step; `apply_view` does not echo.
"""

from __future__ import annotations

import logging

from PySide6.QtCore import QPointF, QRect, QRectF, Qt, Signal
from PySide6.QtGui import QColor, QImage, QMouseEvent, QPainter, QPen, QResizeEvent, QWheelEvent
from PySide6.QtWidgets import QWidget

from app.gallery.difference import DifferenceStats, difference_heatmap
from app.ui.canvas.image_arrays import array_to_qimage, qimage_to_array
from app.ui.canvas.zoom_pan import ZoomPan
from app.ui.gallery.compare_tile import WHEEL_STEP
from app.ui.gallery.tasks import run_task

log = logging.getLogger(__name__)

PIXEL_ZOOM = 2.0  # from this zoom on, image pixels are drawn as crisp squares


class WipeView(QWidget):
    difference_ready = Signal(object)  # DifferenceStats
    view_changed = Signal(float, QPointF)  # zoom, centre (as a fraction of the image), as CompareTile
    fit_requested = Signal()  # a double-click: fit every view of the compare set

    def __init__(
        self, a: QImage, b: QImage, label_a: str, label_b: str, parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self.a, self.b = a, b
        self.labels = (label_a or "A", label_b or "B")
        self.split = 0.5  # the divider, as a fraction of the image width
        self.mode = "wipe"  # or "difference"
        self.heat: QImage | None = None
        self.stats: DifferenceStats | None = None
        self.view = ZoomPan(a.width(), a.height())  # B and the heat map are drawn in A's place
        self._drag_from: QPointF | None = None
        self.setMouseTracking(True)
        self.setMinimumSize(200, 200)
        self._update_cursor()

    def set_mode(self, mode: str) -> None:
        self.mode = mode
        self._update_cursor()
        if mode == "difference" and self.heat is None:
            a, b = qimage_to_array(self.a), qimage_to_array(self.b)
            run_task(lambda: difference_heatmap(a, b), self._on_task_finished)
        self.update()

    def _on_task_finished(self, result: object) -> None:
        heat, stats = result
        self.heat, self.stats = array_to_qimage(heat), stats
        self.difference_ready.emit(stats)
        self.update()

    # -- zoom and pan -------------------------------------------------------------------------------------

    def zoom(self) -> float:
        return self.view.zoom

    def centre(self) -> QPointF:
        return QPointF(self.view.centre_x, self.view.centre_y)

    def apply_view(self, zoom: float, centre: QPointF) -> None:
        """Show the view of another widget of the set; not reported back."""
        self.view.set_view(zoom, centre.x(), centre.y())
        self._view_moved(announce=False)

    def fit(self) -> None:
        self.view.fit()
        self._view_moved(announce=False)

    def set_zoom(self, zoom: float) -> None:
        self.view.set_zoom(zoom)
        self._view_moved()

    def _view_moved(self, announce: bool = True) -> None:
        if announce:
            self.view_changed.emit(self.view.zoom, self.centre())
        self._update_cursor()
        self.update()

    def _update_cursor(self) -> None:
        if self._drag_from is not None:
            self.setCursor(Qt.CursorShape.ClosedHandCursor)
        elif self.view.pannable:
            self.setCursor(Qt.CursorShape.OpenHandCursor)
        elif self.mode == "wipe":
            self.setCursor(Qt.CursorShape.SplitHCursor)
        else:
            self.unsetCursor()

    def _image_rect(self) -> QRectF:
        r = self.view.image_rect()
        return QRectF(r.x, r.y, r.width, r.height)

    # -- events --------------------------------------------------------------------------------------------

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        self.view.set_view_size(self.width(), self.height())

    def wheelEvent(self, event: QWheelEvent) -> None:
        notches = event.angleDelta().y() / 120
        if notches:
            self.view.zoom_about(WHEEL_STEP**notches, event.position().x(), event.position().y())
            self._follow(event.position())
            self._view_moved()
        event.accept()

    def mousePressEvent(self, event: QMouseEvent) -> None:
        if event.button() == Qt.MouseButton.LeftButton and self.view.pannable:
            self._drag_from = event.position()
            self._update_cursor()
        event.accept()

    def mouseMoveEvent(self, event: QMouseEvent) -> None:
        if self._drag_from is not None:
            delta = event.position() - self._drag_from
            self._drag_from = event.position()
            self.view.pan_by(delta.x(), delta.y())
            self._view_moved()  # the image moves with the cursor, so the divider stays under it
            return
        self._follow(event.position())

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:
        if event.button() == Qt.MouseButton.LeftButton and self._drag_from is not None:
            self._drag_from = None
            self._update_cursor()
        event.accept()

    def mouseDoubleClickEvent(self, event: QMouseEvent) -> None:
        self._drag_from = None
        self.fit()
        self.fit_requested.emit()
        event.accept()

    def _follow(self, position: QPointF) -> None:
        """The divider follows the mouse (wipe mode), at the image point under the cursor."""
        if self.mode == "wipe":
            self.split = min(1.0, max(0.0, self.view.to_image(position.x(), position.y())[0]))
            self.update()

    def paintEvent(self, event: object) -> None:
        painter = QPainter(self)
        painter.fillRect(self.rect(), QColor(22, 22, 26))
        # Smooth when shrinking or enlarging a little; from 2x on, crisp pixels are what one compares.
        painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, self.view.zoom < PIXEL_ZOOM)
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
        top, bottom = max(0.0, target.top()), min(float(self.height()), target.bottom())
        painter.drawLine(QPointF(x, top), QPointF(x, bottom))
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
