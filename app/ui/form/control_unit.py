"""One ControlNet of the section: a one-line header (fold arrow, on/off, summary, remove) over its fields — the
ControlNet file, the control image (Open…, the canvas, the clipboard, a drop) with its preprocessed map beside
it, the preprocessing, strength and the start/end window. Thin: it reports `changed` and the section turns all
units into `GenerationFormState.controlnets`.
"""

from __future__ import annotations

import logging
from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QDragEnterEvent, QDropEvent, QGuiApplication, QImage, QPixmap
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from app.inference.api.control import ControlPreprocess, ControlSpec
from app.ui.elided_label import ElidedLabel
from app.ui.form.addons import ControlNetInfo
from app.ui.form.control_images import write_scratch_image
from app.ui.form.control_widgets import (
    IMAGE_SUFFIXES,
    PreprocessFields,
    StrengthFields,
    accept_image_drag,
    accept_image_drop,
    fit,
    thumb_label,
)

log = logging.getLogger(__name__)

BROWSE = "__browse__"
NO_IMAGE = "No image"  # short: the row also holds three buttons at the dock's default width
NO_IMAGE_TIP = "No control image yet — open, paste or drop one"
NO_PICTURE_ON_CLIPBOARD = "The clipboard holds no picture to use as the control image."


class ControlUnit(QWidget):
    changed = Signal()  # a value the job depends on changed
    activated = Signal()  # the user worked in this unit: it becomes the one the canvas overlay shows
    remove_requested = Signal()
    canvas_image_requested = Signal()  # "Canvas": the window answers with `set_image`
    said = Signal(str)  # a sentence for the status bar (nothing on the clipboard, …)

    def __init__(self, number: int, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("controlUnit")
        self.number = number
        self.image: Path | None = None
        self.map_image: QImage | None = None  # the preprocessed map at the generation size (canvas overlay)
        self._known: tuple[ControlNetInfo, ...] = ()
        self._filling = False
        self._filled_type: tuple[Path | None, str | None] = (None, None)  # (file, type) a recall said
        self.setAcceptDrops(True)
        column = QVBoxLayout(self)
        column.setContentsMargins(0, 0, 0, 0)
        column.setSpacing(4)

        header = QHBoxLayout()
        header.setSpacing(4)
        self.fold = QToolButton(self)
        self.fold.setCheckable(True)
        self.fold.setAutoRaise(True)
        self.fold.setArrowType(Qt.ArrowType.RightArrow)
        self.fold.setToolTip("Show or hide this ControlNet's settings")
        self.enabled_check = QCheckBox(self)
        self.enabled_check.setToolTip("Use this ControlNet (off: kept here, not sent)")
        self.summary = ElidedLabel("", self, Qt.TextElideMode.ElideMiddle)
        self.remove_button = QToolButton(self)
        self.remove_button.setText("✕")
        self.remove_button.setAutoRaise(True)
        self.remove_button.setToolTip("Remove this ControlNet")
        self.remove_button.setAccessibleName(f"Remove ControlNet {number}")
        header.addWidget(self.fold)
        header.addWidget(self.enabled_check)
        header.addWidget(self.summary, 1)
        header.addWidget(self.remove_button)
        column.addLayout(header)

        self.body = QWidget(self)
        column.addWidget(self.body)
        grid = QGridLayout(self.body)
        grid.setContentsMargins(0, 0, 0, 4)
        grid.setHorizontalSpacing(8)
        grid.setVerticalSpacing(6)
        grid.setColumnStretch(1, 1)

        self.file_combo = QComboBox(self.body)
        self.file_combo.setToolTip(
            "The ControlNet file: blur, canny or depth, found in ComfyUI's models/controlnet and the Hugging Face "
            "cache, or chosen with Browse…"
        )
        self.file_combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.file_combo.setMinimumContentsLength(12)
        self.file_combo.setAccessibleName("ControlNet file")
        grid.addWidget(QLabel("File", self.body), 0, 0)
        grid.addWidget(self.file_combo, 0, 1)

        image_row = QHBoxLayout()
        image_row.setSpacing(4)
        self.image_label = ElidedLabel(NO_IMAGE, self.body, Qt.TextElideMode.ElideMiddle)
        self.image_label.setToolTip(NO_IMAGE_TIP)
        self.open_button = self._tool(
            "Open…", "Choose the control image: a picture, an edge map or a depth map"
        )
        self.canvas_button = self._tool("Canvas", "Use the image shown on the canvas as the control image")
        self.paste_button = self._tool("Paste", "Use the picture on the clipboard as the control image")
        image_row.addWidget(self.image_label, 1)
        for button in (self.open_button, self.canvas_button, self.paste_button):
            image_row.addWidget(button)
        grid.addWidget(QLabel("Image", self.body), 1, 0)
        grid.addLayout(image_row, 1, 1)

        self.pre = PreprocessFields(self.body)
        self.preprocess_combo, self.invert_check = self.pre.combo, self.pre.invert_check
        self.blur_spin, self.low_spin, self.high_spin = self.pre.spins
        grid.addWidget(QLabel("Preprocess", self.body), 2, 0)
        grid.addWidget(self.preprocess_combo, 2, 1)
        grid.addLayout(self.pre.row, 3, 1)

        previews = QHBoxLayout()
        previews.setSpacing(8)
        self.source_view = thumb_label(self.body, "control image")
        self.map_view = thumb_label(self.body, "map")
        self.map_view.setAccessibleName("Preprocessed control map")
        previews.addWidget(self.source_view)
        previews.addWidget(self.map_view)
        previews.addStretch(1)
        grid.addLayout(previews, 4, 1)

        self.strength = StrengthFields(self.body)
        self.strength_slider, self.strength_spin = self.strength.slider, self.strength.spin
        self.start_spin, self.end_spin = self.strength.start_spin, self.strength.end_spin
        grid.addWidget(QLabel("Strength", self.body), 5, 0)
        grid.addLayout(self.strength.strength_row, 5, 1)
        grid.addWidget(QLabel("Active", self.body), 6, 0)
        grid.addLayout(self.strength.range_row, 6, 1)

        for spin in self.spins():
            spin.setKeyboardTracking(False)
            spin.valueChanged.connect(lambda _v: self._on_edit())
        self.enabled_check.toggled.connect(lambda _on: self._on_edit())
        self.invert_check.toggled.connect(lambda _on: self._on_edit())
        self.preprocess_combo.currentIndexChanged.connect(lambda _i: self._on_edit())
        self.file_combo.activated.connect(self._on_file_activated)
        self.open_button.clicked.connect(self.open_image)
        self.canvas_button.clicked.connect(self._on_canvas_clicked)
        self.paste_button.clicked.connect(self.paste_image)
        self.remove_button.clicked.connect(self.remove_requested)
        self.fold.toggled.connect(self.set_expanded)
        self.set_files(())
        self.set_expanded(True)
        self.pre.update_visible()
        self.update_summary()

    def _tool(self, text: str, tip: str) -> QToolButton:
        button = QToolButton(self.body)
        button.setText(text)
        button.setToolTip(tip)
        return button

    def spins(self) -> tuple:
        return (
            self.blur_spin,
            self.low_spin,
            self.high_spin,
            self.strength_spin,
            self.start_spin,
            self.end_spin,
        )

    # ------------------------------------------------------------------------------------------ folding

    def set_expanded(self, on: bool) -> None:
        self.fold.blockSignals(True)
        self.fold.setChecked(on)
        self.fold.blockSignals(False)
        self.fold.setArrowType(Qt.ArrowType.DownArrow if on else Qt.ArrowType.RightArrow)
        self.body.setVisible(on)
        if on:
            self.activated.emit()

    def is_expanded(self) -> bool:
        return self.fold.isChecked()

    # ------------------------------------------------------------------------------------------ file

    def set_files(self, known: tuple[ControlNetInfo, ...]) -> None:
        """The discovered ControlNets (usable ones first), then Browse…; the current choice is kept."""
        current = self.file()
        self._known = known
        self.file_combo.blockSignals(True)
        self.file_combo.clear()
        self.file_combo.addItem("Choose a ControlNet…", None)
        for info in known:
            self.file_combo.addItem(info.label, str(info.path))
            index = self.file_combo.count() - 1
            self.file_combo.setItemData(index, info.error or str(info.path), Qt.ItemDataRole.ToolTipRole)
        self.file_combo.addItem("Browse…", BROWSE)
        if current is not None:
            self._select_file(current)
        self.file_combo.blockSignals(False)
        self.update_summary()

    def file(self) -> Path | None:
        data = self.file_combo.currentData()
        return Path(data) if data and data != BROWSE else None

    def choose_file(self, path: Path) -> None:
        self._select_file(Path(path))
        self.enabled_check.setChecked(True)
        self._on_edit()

    def _select_file(self, path: Path) -> None:
        index = self.file_combo.findData(str(path))
        if index < 0:
            self.file_combo.insertItem(self.file_combo.count() - 1, path.name, str(path))
            index = self.file_combo.count() - 2
        self.file_combo.setCurrentIndex(index)

    def _on_file_activated(self, _index: int) -> None:
        if self.file_combo.currentData() == BROWSE:
            chosen, _ = QFileDialog.getOpenFileName(
                self, "Choose a ControlNet file", "", "safetensors (*.safetensors)"
            )
            if chosen:
                self.choose_file(Path(chosen))
                return
            self.file_combo.setCurrentIndex(0)
        elif self.file() is not None:
            self.enabled_check.setChecked(True)
        self._on_edit()

    def control_type(self) -> str | None:
        file = self.file()
        known = next((k for k in self._known if k.path == file), None)
        if known is not None:
            return known.control_type
        return (
            self._filled_type[1] if self._filled_type[0] == file else None
        )  # a recalled file not found here

    # ------------------------------------------------------------------------------------------ image

    def open_image(self) -> None:
        chosen, _ = QFileDialog.getOpenFileName(
            self, "Choose a control image", "", "Images (*.png *.jpg *.jpeg *.webp *.bmp)"
        )
        if chosen:
            self.set_image(Path(chosen))

    def paste_image(self) -> bool:
        """The clipboard's picture (written to a scratch PNG, kept next to the output at Generate) or its one
        image file."""
        clipboard = QGuiApplication.clipboard()
        mime = clipboard.mimeData()
        if mime is not None and mime.hasUrls():
            local = [Path(u.toLocalFile()) for u in mime.urls() if u.isLocalFile()]
            if len(local) == 1 and local[0].is_file() and local[0].suffix.lower() in IMAGE_SUFFIXES:
                self.set_image(local[0])
                return True
        image = clipboard.image() if mime is not None and mime.hasImage() else QImage()
        if image.isNull():
            self.said.emit(NO_PICTURE_ON_CLIPBOARD)
            return False
        try:
            path = write_scratch_image(image)
        except OSError as exc:
            self.said.emit(f"Could not keep the pasted picture: {exc}")
            return False
        self.set_image(path)
        return True

    def _on_canvas_clicked(self) -> None:
        self.activated.emit()
        self.canvas_image_requested.emit()

    def set_image(self, path: Path | None) -> None:
        self._show_image(path)
        if self.image is not None:
            self.enabled_check.setChecked(True)
        self._on_edit()

    def _show_image(self, path: Path | None) -> None:
        self.image = Path(path) if path is not None else None
        self.image_label.setText(self.image.name if self.image else NO_IMAGE)
        self.image_label.setToolTip(str(self.image) if self.image else NO_IMAGE_TIP)
        source = QImage(str(self.image)) if self.image else QImage()
        if source.isNull():
            self.source_view.setText("cannot read the image" if self.image else "control image")
            self.source_view.setPixmap(QPixmap())
        else:
            self.source_view.setPixmap(QPixmap.fromImage(fit(source)))

    def show_map(self, image: QImage | None, error: str = "") -> None:
        """The preprocessed map (from the window's worker), or why it could not be made."""
        self.map_image = image if image is not None and not image.isNull() else None
        if self.map_image is None:
            self.map_view.setPixmap(QPixmap())
            self.map_view.setText(error or "map")
            self.map_view.setToolTip(error)
            return
        self.map_view.setPixmap(QPixmap.fromImage(fit(self.map_image)))
        self.map_view.setToolTip("What the ControlNet is shown (after preprocessing)")

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        accept_image_drag(event)

    def dropEvent(self, event: QDropEvent) -> None:
        path = accept_image_drop(event)
        if path is not None:
            self.set_expanded(True)
            self.set_image(path)

    # ------------------------------------------------------------------------------------------ values

    def preprocess(self) -> ControlPreprocess:
        return self.pre.value()

    def commit(self) -> None:
        for spin in self.spins():
            spin.interpretText()

    def spec(self) -> ControlSpec | None:
        """The ControlNet this unit sends: None while it is off or lacks its file or image."""
        file, image = self.file(), self.image
        if not self.enabled_check.isChecked() or file is None or image is None:
            return None
        return ControlSpec(
            file, image, self.strength_spin.value(), self.start_spin.value(), self.end_spin.value(),
            self.control_type(), self.preprocess(),
        )  # fmt: skip

    def problem(self) -> str:
        """Why this switched-on unit cannot be sent yet ("" when it can, or when it is off)."""
        if not self.enabled_check.isChecked():
            return ""
        file, image = self.file(), self.image
        if image is not None and not image.name:  # A1111 text names no control image (NO_IMAGE)
            image = None
        if file is None or image is None:
            what = " and ".join(
                w for w, v in (("a ControlNet file", file), ("a control image", image)) if v is None
            )
            return f"choose {what}, or switch it off"
        if not file.is_file():
            return f"the file {file.name} is missing ({file}) — choose it again, or switch it off"
        if not image.is_file():
            return f"the control image {image.name} is missing — choose it again, or switch it off"
        return ""

    def fill(self, spec: ControlSpec) -> None:
        """Show a ControlNet from the state (restored settings, recall) without reporting it back."""
        self._filling = True
        try:
            self.enabled_check.setChecked(True)
            self._filled_type = (Path(spec.file), spec.control_type)
            self._select_file(spec.file)
            self._show_image(spec.image)
            self.pre.show(spec.preprocess)
            self.strength.show(spec.strength, spec.start, spec.end)
            self.pre.update_visible()
        finally:
            self._filling = False
        self.update_summary()

    def switch_off(self) -> None:
        self._filling = True
        self.enabled_check.setChecked(False)
        self._filling = False
        self.update_summary()

    def _on_edit(self) -> None:
        if self._filling:
            return
        self.pre.update_visible()
        self.update_summary()
        self.activated.emit()
        self.changed.emit()

    def update_summary(self) -> None:
        """The header's line: what the unit does, so a folded unit still says it."""
        file, image = self.file(), self.image
        kind = self.control_type() or (
            file.stem.removeprefix("sd3.5_large_controlnet_") if file else "no file"
        )
        parts = [f"{self.number}", kind, image.name if image and image.name else "no image"]
        if file is not None and image is not None:
            parts.append(f"strength {self.strength_spin.value():g}")
        problem = self.problem()
        self.summary.setText(("⚠ " if problem else "") + " · ".join(parts))
        self.summary.setToolTip(problem or (str(file) if file else "No ControlNet file chosen"))
