"""Pieces of the ControlNet section: the preprocessing fields and the image thumbnails."""

from __future__ import annotations

import logging
from pathlib import Path

from PySide6.QtCore import QSize, Qt
from PySide6.QtGui import QDragEnterEvent, QDropEvent, QImage
from PySide6.QtWidgets import QCheckBox, QComboBox, QHBoxLayout, QLabel, QSlider, QWidget

from app.inference.api.control import (
    DEFAULT_BLUR_RADIUS,
    DEFAULT_CANNY_HIGH,
    DEFAULT_CANNY_LOW,
    ControlPreprocess,
)
from app.ui.form.form_widgets import float_spin

log = logging.getLogger(__name__)

PREVIEW_SIDE = 120  # px of the control image and map thumbnails
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
PREPROCESS_LABELS = {
    "none": "None (already a map)",
    "blur": "Blur",
    "canny": "Canny edges",
    "depth": "Depth map",
}


class PreprocessFields:
    """The preprocessor combo and, on a row of their own (the dock is narrow), the chosen one's settings."""

    def __init__(self, parent: QWidget) -> None:
        self.combo = QComboBox(parent)
        for key, label in PREPROCESS_LABELS.items():
            self.combo.addItem(label, key)
        self.combo.setToolTip("How the control image becomes the map the ControlNet sees")
        self.blur_spin = float_spin(parent, 1.0, 1, "Blur radius (Gaussian sigma, px at the generation size)")
        self.blur_spin.setRange(0.5, 256)
        self.blur_spin.setValue(DEFAULT_BLUR_RADIUS)
        self.blur_spin.setPrefix("r ")
        self.low_spin = float_spin(parent, 10, 0, "Canny low threshold")
        self.low_spin.setRange(0, 2040)
        self.low_spin.setValue(DEFAULT_CANNY_LOW)
        self.low_spin.setPrefix("low ")
        self.high_spin = float_spin(parent, 10, 0, "Canny high threshold")
        self.high_spin.setRange(0, 2040)
        self.high_spin.setValue(DEFAULT_CANNY_HIGH)
        self.high_spin.setPrefix("high ")
        self.invert_check = QCheckBox("Invert", parent)
        self.invert_check.setToolTip("Flip near and far (for depth maps of the opposite convention)")
        self.row = QHBoxLayout()
        self.row.setSpacing(4)
        for widget in (self.blur_spin, self.low_spin, self.high_spin, self.invert_check):
            self.row.addWidget(widget, 1)
        self.spins = (self.blur_spin, self.low_spin, self.high_spin)

    def value(self) -> ControlPreprocess:
        return ControlPreprocess(
            str(self.combo.currentData()),
            self.blur_spin.value(),
            self.low_spin.value(),
            self.high_spin.value(),
            self.invert_check.isChecked(),
        )

    def show(self, p: ControlPreprocess) -> None:
        self.combo.setCurrentIndex(max(0, self.combo.findData(p.kind)))
        self.blur_spin.setValue(p.blur_radius)
        self.low_spin.setValue(p.canny_low)
        self.high_spin.setValue(p.canny_high)
        self.invert_check.setChecked(p.invert)

    def update_visible(self) -> None:
        kind = self.combo.currentData()
        self.blur_spin.setVisible(kind == "blur")
        self.low_spin.setVisible(kind == "canny")
        self.high_spin.setVisible(kind == "canny")
        self.invert_check.setVisible(kind == "depth")


class StrengthFields:
    """Strength as a slider (0–2) and a spin box (0–10) kept in step, and the start/end window of the steps."""

    def __init__(self, parent: QWidget) -> None:
        self.slider = QSlider(Qt.Orientation.Horizontal, parent)
        self.slider.setRange(0, 200)
        self.slider.setAccessibleName("ControlNet strength")
        self.spin = float_spin(parent, 0.05, 2, "ControlNet strength (0 = no effect)")
        self.spin.setRange(0, 10)
        self.spin.setValue(1.0)
        self.slider.setValue(100)
        self.strength_row = QHBoxLayout()
        self.strength_row.setSpacing(4)
        self.strength_row.addWidget(self.slider, 1)
        self.strength_row.addWidget(self.spin)
        self.start_spin = float_spin(
            parent, 0.05, 2, "Where in the sampling it starts acting (0 = first step)"
        )
        self.start_spin.setRange(0, 1)
        self.end_spin = float_spin(parent, 0.05, 2, "Where it stops acting (1 = last step)")
        self.end_spin.setRange(0, 1)
        self.end_spin.setValue(1.0)
        self.range_row = QHBoxLayout()
        self.range_row.setSpacing(4)
        self.range_row.addWidget(self.start_spin, 1)
        self.range_row.addWidget(QLabel("to", parent))
        self.range_row.addWidget(self.end_spin, 1)
        self.range_row.addWidget(QLabel("of the steps", parent))
        self._syncing = False
        self.slider.valueChanged.connect(self._on_slider)
        self.spin.valueChanged.connect(self._on_spin)

    def show(self, strength: float, start: float, end: float) -> None:
        self.spin.setValue(strength)
        self.start_spin.setValue(start)
        self.end_spin.setValue(end)

    def _on_slider(self, value: int) -> None:
        if not self._syncing:
            self.spin.setValue(value / 100)

    def _on_spin(self, value: float) -> None:
        self._syncing = True  # the slider follows without rounding the typed value to its 0.01 steps
        self.slider.setValue(round(min(value, 2.0) * 100))
        self._syncing = False


def thumb_label(parent: QWidget, text: str) -> QLabel:
    label = QLabel(text, parent)
    label.setFixedSize(PREVIEW_SIDE, PREVIEW_SIDE)
    label.setAlignment(Qt.AlignmentFlag.AlignCenter)
    label.setWordWrap(True)
    label.setObjectName("hintLabel")
    label.setStyleSheet("border: 1px solid rgba(128,128,128,0.4);")
    return label


def fit(image: QImage) -> QImage:
    return image.scaled(QSize(PREVIEW_SIDE - 2, PREVIEW_SIDE - 2), Qt.AspectRatioMode.KeepAspectRatio,
                        Qt.TransformationMode.SmoothTransformation)  # fmt: skip


def dropped_image(event: QDragEnterEvent | QDropEvent) -> Path | None:
    mime = event.mimeData()
    for url in mime.urls() if mime.hasUrls() else []:
        path = Path(url.toLocalFile())
        if path.suffix.lower() in IMAGE_SUFFIXES:
            return path
    return None


def accept_image_drag(event: QDragEnterEvent) -> None:
    """Take a drag that carries an image file, so that its drop comes to this widget."""
    if dropped_image(event) is not None:
        event.acceptProposedAction()


def accept_image_drop(event: QDropEvent) -> Path | None:
    """The dropped image file, the drop accepted; None (and the drop left alone) when it carries none."""
    path = dropped_image(event)
    if path is not None:
        event.acceptProposedAction()
    return path
