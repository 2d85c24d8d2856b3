"""The canvas: live previews scaled smoothly, then the final image; wheel zoom, fit / 100 %, drag to pan.

Only painting happens here. Images arrive as QImages; the conversion to a QPixmap happens once per image, at
the next paint, so a burst of previews costs one conversion for the image actually shown.
"""

from __future__ import annotations

import logging

from PySide6.QtCore import QPointF, QRectF, QSize, Qt, Signal
from PySide6.QtGui import (
    QColor,
    QContextMenuEvent,
    QImage,
    QMouseEvent,
    QPainter,
    QPaintEvent,
    QPixmap,
    QTabletEvent,
    QWheelEvent,
)
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QProgressBar, QPushButton, QSizePolicy, QWidget

from app.ui.canvas.mask_overlay import MaskOverlay
from app.ui.elided_label import ElidedLabel

log = logging.getLogger(__name__)

MIN_ZOOM, MAX_ZOOM = 0.05, 16.0
WHEEL_STEP = 1.15  # zoom factor per wheel notch
SHARP_ZOOM = 2.0  # from here on pixels are drawn as crisp squares (inspecting detail)


class CanvasView(QWidget):
    zoom_changed = Signal(float, bool)  # zoom factor, fit mode
    image_changed = Signal()  # set_image was called (a preview, a final image, a step frame, or nothing)
    menu_requested = Signal(object)  # QPoint (global): a right click on the picture asks for its menu

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("canvas")
        self.setMinimumSize(240, 200)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setFocusPolicy(Qt.FocusPolicy.ClickFocus)
        self.setMouseTracking(False)
        self._image: QImage | None = None
        self._pixmap: QPixmap | None = None
        self._logical = QSize()  # size the image stands for (a 512 px preview of a 1024 px image)
        self._is_preview = False
        self._caption = "Preview"  # drawn over a preview
        self._fit = True
        self._zoom = 1.0
        self._center = QPointF(0.5, 0.5)  # the image point (as a fraction) shown at the widget centre
        self._drag_from: QPointF | None = None
        self.placeholder = "Write a prompt and press Generate (Ctrl+Enter)."
        self.frames_painted = 0  # for tests and the stall benchmark
        # The mask brush (Inpaint mode): while set and active, the left button paints; the middle button pans.
        self.mask_overlay: MaskOverlay | None = None
        # A ControlNet's preprocessed map drawn over the picture (at the generation size) to check alignment.
        self._control_map: QImage | None = None
        self._control_opacity = 0.5

    # ------------------------------------------------------------------------------------------ content

    def set_image(
        self,
        image: QImage | None,
        *,
        preview: bool = False,
        logical_size: QSize | None = None,
        caption: str | None = None,
    ) -> None:
        """Show `image`; a preview is drawn at `logical_size` (the final image's size) so zoom stays put.
        `caption` (default: "Preview" on a preview) is drawn in its corner, elided; the whole one is the tooltip."""
        self._image = image
        self._pixmap = None
        self._is_preview = preview
        self._caption = caption if caption is not None else ("Preview" if preview else "")
        self.setToolTip(self._caption)
        if image is not None:
            self._logical = (
                logical_size if logical_size is not None and logical_size.isValid() else image.size()
            )
        self.update()
        self.image_changed.emit()

    def image(self) -> QImage | None:
        return self._image

    def caption(self) -> str:
        return self._caption

    def is_preview(self) -> bool:
        return self._is_preview

    def logical_size(self) -> QSize:
        """The size the shown picture stands for (a preview's final image size)."""
        return QSize(self._logical)

    # ------------------------------------------------------------------------------------------ zoom and pan

    def zoom(self) -> float:
        return self._fit_zoom() if self._fit else self._zoom

    def is_fit(self) -> bool:
        return self._fit

    def fit(self) -> None:
        self._fit, self._center = True, QPointF(0.5, 0.5)
        self.update()
        self.zoom_changed.emit(self.zoom(), True)

    def actual_size(self) -> None:
        self.set_zoom(1.0)

    def set_zoom(self, zoom: float, anchor: QPointF | None = None) -> None:
        """Zoom to `zoom`, keeping the image point under `anchor` (widget coordinates) in place."""
        if self._logical.isEmpty():
            return
        zoom = min(MAX_ZOOM, max(MIN_ZOOM, zoom))
        if anchor is not None:
            before = self._image_point_at(anchor)
            self._fit, self._zoom = False, zoom
            after = self._image_point_at(anchor)
            self._center += before - after
        else:
            self._fit, self._zoom = False, zoom
        self.update()
        self.zoom_changed.emit(zoom, False)

    def _fit_zoom(self) -> float:
        if self._logical.isEmpty():
            return 1.0
        return min(self.width() / self._logical.width(), self.height() / self._logical.height())

    def _target_rect(self) -> QRectF:
        zoom = self.zoom()
        w, h = self._logical.width() * zoom, self._logical.height() * zoom
        cx = self.width() / 2 - (self._center.x() - 0.5) * w
        cy = self.height() / 2 - (self._center.y() - 0.5) * h
        return QRectF(cx - w / 2, cy - h / 2, w, h)

    def _image_point_at(self, pos: QPointF) -> QPointF:
        rect = self._target_rect()
        return QPointF((pos.x() - rect.left()) / rect.width(), (pos.y() - rect.top()) / rect.height())

    def wheelEvent(self, event: QWheelEvent) -> None:
        notches = event.angleDelta().y() / 120
        if notches and self._image is not None:
            self.set_zoom(self.zoom() * WHEEL_STEP**notches, event.position())
        event.accept()

    def set_mask_overlay(self, overlay: MaskOverlay | None) -> None:
        """Show (or stop showing) a mask layer; its owner keeps it and may set it again later."""
        self.mask_overlay = overlay
        self.setCursor(Qt.CursorShape.CrossCursor) if self._painting() else self.unsetCursor()
        self.update()

    def set_control_map(self, image: QImage | None, opacity: float = 0.5) -> None:
        """Draw `image` (a control map, at the generation size) over the picture at `opacity`, centred and at the
        canvas's zoom, so a preview of the generation lies exactly under it; None stops drawing it."""
        self._control_map = image if image is not None and not image.isNull() else None
        self._control_opacity = min(1.0, max(0.0, opacity))
        self.update()

    def control_map(self) -> QImage | None:
        return self._control_map

    def _painting(self) -> bool:
        return self.mask_overlay is not None and self.mask_overlay.active and self._image is not None

    def image_point(self, pos: QPointF) -> QPointF:
        """The image pixel under a widget position (of the size the picture stands for)."""
        frac = self._image_point_at(pos)
        return QPointF(frac.x() * self._logical.width(), frac.y() * self._logical.height())

    def update_image_area(self, area: QRectF | None) -> None:
        """Repaint only where image pixels `area` are shown (a brush stroke); None repaints everything."""
        if area is None or self._logical.isEmpty():
            self.update()
            return
        rect, sx, sy = self._target_rect(), 1 / self._logical.width(), 1 / self._logical.height()
        shown = QRectF(rect.left() + area.left() * sx * rect.width(), rect.top() + area.top() * sy * rect.height(),
                       area.width() * sx * rect.width(), area.height() * sy * rect.height())  # fmt: skip
        self.update(shown.toAlignedRect().adjusted(-2, -2, 2, 2))

    def tabletEvent(self, event: QTabletEvent) -> None:
        """A pen paints with its pressure; accepted, so Qt does not also send the mouse events it stands for."""
        overlay = self.mask_overlay
        if overlay is None or not self._painting():
            event.ignore()
            return
        kind, point = event.type(), self.image_point(event.position())
        if kind == QTabletEvent.Type.TabletPress:
            overlay.press(point, event.pressure())
        elif kind == QTabletEvent.Type.TabletMove:
            overlay.move(point, event.pressure())
        elif kind == QTabletEvent.Type.TabletRelease:
            overlay.release()
        event.accept()

    def mousePressEvent(self, event: QMouseEvent) -> None:
        if event.button() == Qt.MouseButton.LeftButton and self._painting():
            self.mask_overlay.press(self.image_point(event.position()))  # type: ignore[union-attr]
            event.accept()
            return
        pan = Qt.MouseButton.MiddleButton if self._painting() else Qt.MouseButton.LeftButton
        if event.button() == pan and self._image is not None:
            self._drag_from = event.position()
            self.setCursor(Qt.CursorShape.ClosedHandCursor)
        super().mousePressEvent(event)

    def mouseMoveEvent(self, event: QMouseEvent) -> None:
        if self.mask_overlay is not None and self.mask_overlay.is_stroking():
            self.mask_overlay.move(self.image_point(event.position()))
            event.accept()
            return
        if self._drag_from is not None:
            if self._fit:
                self._fit, self._zoom = False, self._fit_zoom()
            rect = self._target_rect()
            delta = event.position() - self._drag_from
            self._drag_from = event.position()
            self._center -= QPointF(delta.x() / rect.width(), delta.y() / rect.height())
            self.update()
        super().mouseMoveEvent(event)

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:
        if self.mask_overlay is not None and self.mask_overlay.is_stroking():
            self.mask_overlay.release()
        self._drag_from = None
        self.setCursor(Qt.CursorShape.CrossCursor) if self._painting() else self.unsetCursor()
        super().mouseReleaseEvent(event)

    def contextMenuEvent(self, event: QContextMenuEvent) -> None:
        if self._image is None or self._painting():
            event.ignore()
            return
        event.accept()
        self.menu_requested.emit(event.globalPos())

    def mouseDoubleClickEvent(self, event: QMouseEvent) -> None:
        if self._painting():
            return  # a quick second dab is a dab, not a zoom
        self.fit() if not self._fit else self.set_zoom(1.0, event.position())

    # ------------------------------------------------------------------------------------------ painting

    def paintEvent(self, event: QPaintEvent) -> None:
        painter = QPainter(self)
        painter.fillRect(self.rect(), QColor("#141517"))
        if (self._image is None or self._image.isNull()) and self._control_map is not None:
            self._paint_control_map(painter, self._fit_rect(self._control_map.size()))  # nothing made yet
            painter.end()
            return
        if self._image is None or self._image.isNull():
            painter.setPen(QColor("#6f727a"))
            painter.drawText(
                self.rect(), Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap, self.placeholder
            )
            painter.end()
            return
        if self._pixmap is None:
            self._pixmap = QPixmap.fromImage(self._image)
        target = self._target_rect()
        sharp = not self._is_preview and target.width() >= self._pixmap.width() * SHARP_ZOOM
        painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, not sharp)
        painter.drawPixmap(target, self._pixmap, QRectF(self._pixmap.rect()))
        if self.mask_overlay is not None and not self._is_preview:
            self.mask_overlay.paint(painter, target)
        if self._control_map is not None:  # at the generation size, centred: a preview's own frame
            zoom, size = self.zoom(), self._control_map.size()
            w, h = size.width() * zoom, size.height() * zoom
            frame = QRectF(target.center().x() - w / 2, target.center().y() - h / 2, w, h)
            self._paint_control_map(painter, frame)
        if self._caption:
            painter.setPen(QColor(255, 255, 255, 150 if self._is_preview else 190))
            box = self.rect().adjusted(10, 8, -10, -8)
            text = painter.fontMetrics().elidedText(self._caption, Qt.TextElideMode.ElideMiddle, box.width())
            painter.drawText(box, Qt.AlignmentFlag.AlignTop, text)
        painter.end()
        self.frames_painted += 1

    def _paint_control_map(self, painter: QPainter, target: QRectF) -> None:
        painter.save()
        painter.setOpacity(self._control_opacity)
        painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, True)
        painter.drawImage(target, self._control_map, QRectF(self._control_map.rect()))
        painter.restore()

    def _fit_rect(self, size: QSize) -> QRectF:
        zoom = min(self.width() / size.width(), self.height() / size.height())
        w, h = size.width() * zoom, size.height() * zoom
        return QRectF((self.width() - w) / 2, (self.height() - h) / 2, w, h)


class JobProgressBar(QFrame):
    """Below the canvas: what the engine is doing — loading, step i/N with it/s and ETA, or the last result."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("progressBar")
        layout = QHBoxLayout(self)
        layout.setContentsMargins(10, 5, 10, 6)
        layout.setSpacing(10)
        self.label = ElidedLabel("Ready", self)  # may name a file: elided, never widens the window
        self.label.setObjectName("progressLabel")
        self.bar = QProgressBar(self)
        self.bar.setTextVisible(False)
        self.bar.setFixedWidth(220)
        self.zoom_label = QLabel("", self)
        self.zoom_label.setObjectName("hintLabel")
        self.zoom_label.setToolTip("Zoom: mouse wheel. Fit: Ctrl+0. 100 %: Ctrl+1. Drag to pan.")
        self.reveal_button = QPushButton("Show in folder", self)
        self.reveal_button.setObjectName("revealButton")
        self.reveal_button.setToolTip("Show the saved image in the file manager")
        self.reveal_button.hide()
        layout.addWidget(self.label, 1)
        layout.addWidget(self.reveal_button)
        layout.addWidget(self.bar)
        layout.addWidget(self.zoom_label)
        self.bar.hide()

    def show_message(self, text: str, reveal: bool = False) -> None:
        """`reveal`: offer "Show in folder" (the caller connects `reveal_button`)."""
        self.label.setText(text)
        self.bar.hide()
        self.reveal_button.setVisible(reveal)

    def show_busy(self, text: str) -> None:
        self.label.setText(text)
        self.reveal_button.hide()
        self.bar.setRange(0, 0)
        self.bar.show()

    def show_step(
        self, step: int, steps: int, its: float, eta: float | None, image: int, images: int
    ) -> None:
        parts = [f"Image {image}/{images}"] if images > 1 else []
        parts.append(f"Step {step}/{steps}")
        if its > 0:
            parts.append(f"{its:.2f} it/s" if its < 10 else f"{its:.0f} it/s")
        if eta is not None:
            parts.append(f"ETA {format_seconds(eta)}")
        self.label.setText("  ·  ".join(parts))
        self.reveal_button.hide()
        self.bar.setRange(0, steps)
        self.bar.setValue(step)
        self.bar.show()

    def show_zoom(self, zoom: float, fit: bool) -> None:
        self.zoom_label.setText(f"{'Fit · ' if fit else ''}{zoom * 100:.0f} %")


def format_seconds(seconds: float) -> str:
    seconds = max(0, round(seconds))
    minutes, secs = divmod(seconds, 60)
    return f"{minutes}:{secs:02d}" if minutes else f"{secs} s"
