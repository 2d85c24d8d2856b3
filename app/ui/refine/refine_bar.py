"""Above the canvas: the mode switch (Generate / Image to image / Inpaint / Outpaint) where artists look first,
where the input image comes from, and the tools of the mode (mask brush, outpaint sides).

Thin: the mode and the numbers live in `GenerationFormState`, the picture and the mask in `RefineController`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QButtonGroup,
    QFileDialog,
    QFrame,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QSlider,
    QSpinBox,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from app.ui.elided_label import ElidedLabel
from app.ui.form.form_fields import OUTPAINT_FIELDS, REFINE_MODES
from app.ui.form.form_widgets import FieldBinder, int_spin
from app.ui.refine.refine_controller import MODE_LABELS, RefineController

log = logging.getLogger(__name__)

MODE_TIPS = {
    "generate": "Make a new picture from the prompt",
    "img2img": "Redraw an input image following the prompt (denoise sets how much)",
    "inpaint": "Paint over part of the input image; only that part is regenerated",
    "outpaint": "Extend the input image on any side; the new area is painted to match",
}
IMAGE_FILTER = "Images (*.png *.jpg *.jpeg *.webp)"


def _tool(text: str, tip: str, parent: QWidget, name: str = "") -> QToolButton:
    button = QToolButton(parent)
    button.setText(text)
    button.setToolTip(tip)
    button.setObjectName(name or "refineTool")
    return button


class RefineBar(QFrame):
    def __init__(
        self, refine: RefineController, use_shown: Callable[[], None], paste: Callable[[], None],
        compare: Callable[[], None] | None = None, parent: QWidget | None = None,
    ) -> None:  # fmt: skip
        super().__init__(parent)
        self.setObjectName("refineBar")
        self.refine, self.state = refine, refine.state
        self.binder = FieldBinder(self.state)
        column = QVBoxLayout(self)
        column.setContentsMargins(10, 6, 10, 4)
        column.setSpacing(4)

        # Row 1: the mode switch, a segmented control.
        modes = QHBoxLayout()
        modes.setSpacing(0)
        self.mode_group = QButtonGroup(self)
        self.mode_buttons: dict[str, QToolButton] = {}
        for mode in REFINE_MODES:
            button = _tool(MODE_LABELS[mode], MODE_TIPS[mode], self, "modeButton")
            button.setCheckable(True)
            button.setAccessibleName(f"{MODE_LABELS[mode]} mode")
            self.mode_group.addButton(button)
            self.mode_buttons[mode] = button
            modes.addWidget(button)
            button.clicked.connect(lambda _on, m=mode: refine.set_mode(m))
        # The input's name sits next to the modes, where the row has room (elided, never widening the bar).
        self.input_label = ElidedLabel("No input image", self)
        self.input_label.setObjectName("hintLabel")
        self.input_label.setMinimumWidth(40)
        modes.addSpacing(10)
        modes.addWidget(self.input_label, 1)
        modes.addStretch(0)  # keeps the segments together while the name is hidden (Generate)
        column.addLayout(modes)

        # Row 2: the input image.
        self.input_row = QWidget(self)
        row = QHBoxLayout(self.input_row)
        row.setContentsMargins(0, 0, 0, 0)
        self.open_button = _tool("Open…", "Choose an image file as the input", self.input_row)
        self.paste_button = _tool("Paste", "Use the picture on the clipboard (Ctrl+Shift+V)", self.input_row)
        self.use_shown_button = _tool(
            "Use shown", "Use the picture on the canvas as the input", self.input_row
        )
        self.show_input_button = _tool(
            "Show input", "Show the input image (and its mask) again", self.input_row
        )
        self.compare_button = _tool(
            "Before/after",
            "Compare the refined picture with its input",
            self.input_row,
            "compareSourceButton",
        )
        row.addWidget(QLabel("Input:", self.input_row))
        for button in (self.open_button, self.paste_button, self.use_shown_button, self.show_input_button,
                       self.compare_button):  # fmt: skip
            row.addWidget(button)
        row.addStretch(1)
        self.compare_button.setVisible(compare is not None)
        if compare is not None:
            self.compare_button.clicked.connect(compare)
        column.addWidget(self.input_row)
        self.open_button.clicked.connect(self.open_file)
        self.paste_button.clicked.connect(paste)
        self.use_shown_button.clicked.connect(use_shown)
        self.show_input_button.clicked.connect(refine.show_input)

        # Rows 3a: the mask brush (Inpaint), in two short rows so the bar never widens the window.
        self.mask_row = QWidget(self)
        mask_rows = QVBoxLayout(self.mask_row)
        mask_rows.setContentsMargins(0, 0, 0, 0)
        mask_rows.setSpacing(2)
        mask, edits = QHBoxLayout(), QHBoxLayout()
        mask_rows.addLayout(mask)
        mask_rows.addLayout(edits)
        self.brush_button = _tool("Brush", "Paint what to regenerate", self.mask_row, "brushButton")
        self.eraser_button = _tool("Eraser", "Take paint away", self.mask_row, "eraserButton")
        tools = QButtonGroup(self)
        for button in (self.brush_button, self.eraser_button):
            button.setCheckable(True)
            tools.addButton(button)
            mask.addWidget(button)
        self.brush_button.setChecked(True)
        self.size_spin = QSpinBox(self.mask_row)
        self.size_spin.setRange(1, 1024)
        self.size_spin.setSuffix(" px")
        self.size_spin.setToolTip("Brush size in image pixels")
        self.hardness_spin = QSpinBox(self.mask_row)
        self.hardness_spin.setRange(0, 100)
        self.hardness_spin.setSuffix(" %")
        self.hardness_spin.setToolTip("Brush hardness: 100 % a sharp edge, 0 % soft from the centre")
        self.opacity_slider = QSlider(Qt.Orientation.Horizontal, self.mask_row)
        self.opacity_slider.setRange(0, 100)
        self.opacity_slider.setValue(50)
        self.opacity_slider.setMinimumWidth(50)
        self.opacity_slider.setMaximumWidth(110)
        self.opacity_slider.setToolTip("How strongly the mask shows over the picture")
        mask.addWidget(QLabel("Size", self.mask_row))
        mask.addWidget(self.size_spin)
        mask.addWidget(QLabel("Hardness", self.mask_row))
        mask.addWidget(self.hardness_spin)
        mask.addStretch(1)
        self.undo_button = _tool("Undo", "Undo the last stroke", self.mask_row, "maskUndo")
        self.redo_button = _tool("Redo", "Redo the stroke", self.mask_row, "maskRedo")
        self.clear_button = _tool("Clear", "Remove all paint", self.mask_row, "maskClear")
        self.invert_button = _tool("Invert", "Regenerate everything except what is painted", self.mask_row,
                                   "maskInvert")  # fmt: skip
        for button in (self.undo_button, self.redo_button, self.clear_button, self.invert_button):
            edits.addWidget(button)
        edits.addWidget(QLabel("Mask shown", self.mask_row))
        edits.addWidget(self.opacity_slider)
        edits.addStretch(1)
        column.addWidget(self.mask_row)
        self.brush_button.toggled.connect(lambda on: self._set_brush(erase=not on))
        self.size_spin.valueChanged.connect(lambda v: self._set_brush(size=v))
        self.hardness_spin.valueChanged.connect(lambda v: self._set_brush(hardness=v / 100))
        self.opacity_slider.valueChanged.connect(self._set_opacity)
        self.undo_button.clicked.connect(lambda: self._mask_do("undo"))
        self.redo_button.clicked.connect(lambda: self._mask_do("redo"))
        self.clear_button.clicked.connect(lambda: self._mask_do("clear"))
        self.invert_button.clicked.connect(lambda: self._mask_do("invert"))

        # Row 3b: the outpaint sides, as on a picture frame: left and right, then top and bottom.
        self.outpaint_row = QWidget(self)
        sides = QGridLayout(self.outpaint_row)
        sides.setContentsMargins(0, 0, 0, 0)
        sides.setColumnStretch(2, 1)
        sides.setColumnStretch(4, 1)
        sides.addWidget(QLabel("Extend by", self.outpaint_row), 0, 0)
        self.side_spins: dict[str, QSpinBox] = {}
        places = ((0, 1), (1, 1), (0, 3), (1, 3))  # left, top, right, bottom
        for (field, label), (r, c) in zip(zip(OUTPAINT_FIELDS, ("Left", "Top", "Right", "Bottom"), strict=True),
                                          places, strict=True):  # fmt: skip
            spin = int_spin(self.outpaint_row, f"Pixels added on the {label.lower()} side")
            spin.setRange(-99999, 99999)
            spin.setSingleStep(64)
            spin.setSuffix(" px")
            spin.setObjectName(f"{field}Spin")
            sides.addWidget(QLabel(label, self.outpaint_row), r, c)
            sides.addWidget(spin, r, c + 1)
            self.binder.spin(spin, field)
            self.side_spins[field] = spin
        column.addWidget(self.outpaint_row)

        self.binder.custom("refine_mode", lambda _v: self._show_mode())
        self.binder.custom("init_image", lambda _v: self._show_input())
        refine.listeners.append(self._show_input)
        self.binder.refresh_all()

    # ------------------------------------------------------------------------------------------ actions

    def open_file(self) -> None:
        name, _ = QFileDialog.getOpenFileName(self, "Choose the input image", "", IMAGE_FILTER)
        if name:
            self.refine.use_file(Path(name))

    def _set_brush(
        self, *, erase: bool | None = None, size: int | None = None, hardness: float | None = None
    ):
        mask = self.refine.mask
        if mask is None:
            return
        if erase is not None:
            mask.brush.erase = erase
        if size is not None:
            mask.brush.size = size
        if hardness is not None:
            mask.brush.hardness = hardness

    def _set_opacity(self, value: int) -> None:
        if self.refine.overlay is not None:
            self.refine.overlay.opacity = value / 100
            self.refine.canvas.update()

    def _mask_do(self, what: str) -> None:
        if self.refine.mask is not None:
            getattr(self.refine.mask, what)()
            self._show_input()

    # ------------------------------------------------------------------------------------------ showing

    def _show_mode(self) -> None:
        mode = self.state.values.refine_mode
        self.mode_buttons[mode].setChecked(True)
        self.input_row.setVisible(mode != "generate")
        self.input_label.setVisible(mode != "generate")
        self.mask_row.setVisible(mode == "inpaint")
        self.outpaint_row.setVisible(mode == "outpaint")

    def _show_input(self) -> None:
        path = self.state.values.init_image
        self.input_label.setText(Path(path).name if path else "No input image — Open…, paste or drop one")
        self.input_label.setToolTip(path)
        mask = self.refine.mask
        if mask is not None:
            self.brush_button.setChecked(not mask.brush.erase)
            self.size_spin.setValue(mask.brush.size)
            self.hardness_spin.setValue(round(mask.brush.hardness * 100))
        self.undo_button.setEnabled(mask is not None and mask.can_undo())
        self.redo_button.setEnabled(mask is not None and mask.can_redo())
        for button in (self.clear_button, self.invert_button, self.show_input_button):
            button.setEnabled(self.refine.input is not None)

    def detach(self) -> None:
        self.binder.detach()
        if self._show_input in self.refine.listeners:
            self.refine.listeners.remove(self._show_input)
