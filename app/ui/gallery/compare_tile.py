"""One tile of the compare grid: an image in a zoomable, pannable view with its label and rating drawn on top.

Tiles report every zoom or pan as `view_changed(zoom, centre)` (zoom 1.0 = actual pixels, centre as a
fraction of the image); the compare view applies it to the other tiles with `apply_view`, which does not echo.
"""

from __future__ import annotations

import logging

from PySide6.QtCore import QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QColor, QFont, QMouseEvent, QPainter, QPen, QPixmap, QWheelEvent
from PySide6.QtWidgets import QFrame, QGraphicsPixmapItem, QGraphicsScene, QGraphicsView, QWidget

log = logging.getLogger(__name__)

WHEEL_STEP = 1.25
MIN_ZOOM, MAX_ZOOM = 0.02, 32.0
LABEL_BG = QColor(0, 0, 0, 170)
CURRENT = QColor(88, 150, 255)
PICKED = QColor(80, 200, 120)
STAR = QColor(255, 196, 61)


class CompareTile(QGraphicsView):
    view_changed = Signal(float, QPointF)
    clicked = Signal()
    fit_requested = Signal()  # a double-click: fit every view of the compare set

    def __init__(self, pixmap: QPixmap, label: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setScene(QGraphicsScene(self))
        self._item = QGraphicsPixmapItem(pixmap)
        self._item.setTransformationMode(Qt.TransformationMode.SmoothTransformation)
        self.scene().addItem(self._item)
        self.setSceneRect(QRectF(pixmap.rect()))
        self.label = label
        self.rating = 0
        self.current = False
        self.picked = False
        self._echo = False
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setBackgroundBrush(QColor(22, 22, 26))
        self.setDragMode(QGraphicsView.DragMode.ScrollHandDrag)
        self.setTransformationAnchor(QGraphicsView.ViewportAnchor.AnchorUnderMouse)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.horizontalScrollBar().valueChanged.connect(self._on_scroll_changed)
        self.verticalScrollBar().valueChanged.connect(self._on_scroll_changed)

    # -- view state ----------------------------------------------------------------------------------------

    def zoom(self) -> float:
        return self.transform().m11()

    def centre(self) -> QPointF:
        """The image point at the centre of the view, as a fraction of the image size."""
        rect = self.sceneRect()
        point = self.mapToScene(self.viewport().rect().center())
        return QPointF(point.x() / max(1.0, rect.width()), point.y() / max(1.0, rect.height()))

    def apply_view(self, zoom: float, centre: QPointF) -> None:
        self._echo = True
        try:
            self.resetTransform()
            self.scale(zoom, zoom)
            rect = self.sceneRect()
            self.centerOn(centre.x() * rect.width(), centre.y() * rect.height())
        finally:
            self._echo = False
        self.viewport().update()

    def fit_zoom(self) -> float:
        rect, view = self.sceneRect(), self.viewport().rect()
        return min(view.width() / max(1.0, rect.width()), view.height() / max(1.0, rect.height()))

    def set_zoom(self, zoom: float) -> None:
        zoom = min(MAX_ZOOM, max(MIN_ZOOM, zoom))
        self.scale(zoom / self.zoom(), zoom / self.zoom())
        self._announce()

    def _announce(self) -> None:
        if not self._echo:
            self.view_changed.emit(self.zoom(), self.centre())
        self.viewport().update()

    # -- events --------------------------------------------------------------------------------------------

    def wheelEvent(self, event: QWheelEvent) -> None:
        notches = event.angleDelta().y() / 120
        if notches:
            factor = WHEEL_STEP**notches
            target = min(MAX_ZOOM, max(MIN_ZOOM, self.zoom() * factor))
            self.scale(target / self.zoom(), target / self.zoom())
            self._announce()
        event.accept()

    def mousePressEvent(self, event: QMouseEvent) -> None:
        self.clicked.emit()
        super().mousePressEvent(event)

    def mouseDoubleClickEvent(self, event: QMouseEvent) -> None:
        self.fit_requested.emit()
        event.accept()

    def _on_scroll_changed(self, _value: int) -> None:
        self._announce()

    def drawForeground(self, painter: QPainter, rect: QRectF) -> None:
        painter.save()
        painter.resetTransform()
        view = self.viewport().rect()
        font = QFont(painter.font())
        font.setPointSizeF(max(9.0, font.pointSizeF()))
        painter.setFont(font)
        metrics = painter.fontMetrics()
        text = self.label or "same settings"
        stars = "★" * self.rating
        width = min(
            view.width() - 16, metrics.horizontalAdvance(text) + metrics.horizontalAdvance(stars) + 24
        )
        box = QRectF(8, view.height() - metrics.height() - 16, width, metrics.height() + 8)
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(LABEL_BG)
        painter.drawRoundedRect(box, 4, 4)
        painter.setPen(QColor(240, 240, 245))
        elided = metrics.elidedText(
            text, Qt.TextElideMode.ElideRight, int(box.width()) - 16 - len(stars) * 12
        )
        painter.drawText(
            box.adjusted(8, 0, -8, 0), Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignLeft, elided
        )
        if stars:
            painter.setPen(STAR)
            painter.drawText(
                box.adjusted(8, 0, -8, 0), Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignRight, stars
            )
        if self.picked:
            painter.setPen(Qt.PenStyle.NoPen)
            painter.setBrush(PICKED)
            badge = QRectF(view.width() - 70, 8, 62, metrics.height() + 6)
            painter.drawRoundedRect(badge, 4, 4)
            painter.setPen(QColor(10, 30, 15))
            painter.drawText(badge, Qt.AlignmentFlag.AlignCenter, "✓ Pick")
        if self.current or self.picked:
            painter.setBrush(Qt.BrushStyle.NoBrush)
            painter.setPen(QPen(CURRENT if self.current else PICKED, 3))
            painter.drawRect(QRectF(view).adjusted(1.5, 1.5, -1.5, -1.5))
        painter.restore()
