"""The ControlNet section: which ControlNet file, the control image (file, drop, or the canvas image), the
preprocessing with its map shown next to the image, strength and the start/end window, and the model card's
recommended settings offered by a button. Thin: the draft's values live here, the job's set in
`GenerationFormState.controlnets`; the window computes the map preview off the UI thread (`map_wanted`).
"""

from __future__ import annotations

import logging
from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QDragEnterEvent, QDropEvent, QImage, QPixmap
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSlider,
    QToolButton,
    QWidget,
)

from app.inference.api.control import (
    ControlPreprocess,
    ControlSpec,
)
from app.ui.elided_label import ElidedLabel
from app.ui.form.addons import CONTROLNET_RECOMMENDED, CONTROLNET_VARIANTS, ControlNetInfo
from app.ui.form.control_widgets import PreprocessFields, dropped_image, fit, thumb_label
from app.ui.form.form_state import GenerationFormState
from app.ui.form.form_widgets import CollapsibleSection, float_spin

log = logging.getLogger(__name__)

BROWSE = "__browse__"
NO_IMAGE = "No control image — open one or drop it here"
MEDIUM_NOTE = (
    "ControlNets are for SD3.5 Large: the selected model is SD3.5 Medium, which has no official ControlNet."
)


class ControlNetSection(CollapsibleSection):
    map_wanted = Signal(
        object, object, object
    )  # image Path, (width, height), ControlPreprocess: show its map
    canvas_image_requested = Signal()  # "Use canvas image": the window answers with `set_image`

    def __init__(self, state: GenerationFormState, parent: QWidget | None = None) -> None:
        super().__init__("ControlNet", parent)
        self.state = state
        self.image: Path | None = None
        self._known: tuple[ControlNetInfo, ...] = ()
        self._showing = False
        self._map_key: tuple | None = None  # what the shown (or coming) map was made from
        self.setAcceptDrops(True)
        grid = QGridLayout(self.content)
        grid.setContentsMargins(14, 2, 0, 2)
        grid.setHorizontalSpacing(8)
        grid.setVerticalSpacing(6)
        grid.setColumnStretch(1, 1)

        self.enabled_check = QCheckBox("Use a ControlNet", self.content)
        self.enabled_check.setToolTip("Guide the composition with a control image (SD3.5 Large)")
        grid.addWidget(self.enabled_check, 0, 0, 1, 2)

        self.file_combo = QComboBox(self.content)
        self.file_combo.setToolTip(
            "The ControlNet file: blur, canny or depth, found in ComfyUI's models/controlnet and the Hugging Face "
            "cache, or chosen with Browse…"
        )
        self.file_combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.file_combo.setMinimumContentsLength(12)
        self.file_combo.setAccessibleName("ControlNet file")
        grid.addWidget(QLabel("File", self.content), 1, 0)
        grid.addWidget(self.file_combo, 1, 1)

        image_row = QHBoxLayout()
        image_row.setSpacing(4)
        self.image_label = ElidedLabel(NO_IMAGE, self.content, Qt.TextElideMode.ElideMiddle)
        self.open_button = QToolButton(self.content)
        self.open_button.setText("Open…")
        self.open_button.setToolTip("Choose the control image: a picture, an edge map or a depth map")
        self.canvas_button = QToolButton(self.content)
        self.canvas_button.setText("Canvas")
        self.canvas_button.setToolTip("Use the image shown on the canvas as the control image")
        image_row.addWidget(self.image_label, 1)
        image_row.addWidget(self.open_button)
        image_row.addWidget(self.canvas_button)
        grid.addWidget(QLabel("Image", self.content), 2, 0)
        grid.addLayout(image_row, 2, 1)

        self.pre = PreprocessFields(self.content)
        self.preprocess_combo, self.invert_check = self.pre.combo, self.pre.invert_check
        self.blur_spin, self.low_spin, self.high_spin = self.pre.spins
        grid.addWidget(QLabel("Preprocess", self.content), 3, 0)
        grid.addWidget(self.preprocess_combo, 3, 1)
        grid.addLayout(self.pre.row, 4, 1)

        previews = QHBoxLayout()
        previews.setSpacing(8)
        self.source_view = thumb_label(self.content, "control image")
        self.map_view = thumb_label(self.content, "map")
        self.map_view.setAccessibleName("Preprocessed control map")
        previews.addWidget(self.source_view)
        previews.addWidget(self.map_view)
        previews.addStretch(1)
        grid.addLayout(previews, 5, 1)

        strength_row = QHBoxLayout()
        strength_row.setSpacing(4)
        self.strength_slider = QSlider(Qt.Orientation.Horizontal, self.content)
        self.strength_slider.setRange(0, 200)
        self.strength_slider.setAccessibleName("ControlNet strength")
        self.strength_spin = float_spin(self.content, 0.05, 2, "ControlNet strength (0 = no effect)")
        self.strength_spin.setRange(0, 10)
        self.strength_spin.setValue(1.0)
        self.strength_slider.setValue(100)
        strength_row.addWidget(self.strength_slider, 1)
        strength_row.addWidget(self.strength_spin)
        grid.addWidget(QLabel("Strength", self.content), 6, 0)
        grid.addLayout(strength_row, 6, 1)

        range_row = QHBoxLayout()
        range_row.setSpacing(4)
        self.start_spin = float_spin(
            self.content, 0.05, 2, "Where in the sampling it starts acting (0 = first step)"
        )
        self.start_spin.setRange(0, 1)
        self.end_spin = float_spin(self.content, 0.05, 2, "Where it stops acting (1 = last step)")
        self.end_spin.setRange(0, 1)
        self.end_spin.setValue(1.0)
        range_row.addWidget(self.start_spin, 1)
        range_row.addWidget(QLabel("to", self.content))
        range_row.addWidget(self.end_spin, 1)
        range_row.addWidget(QLabel("of the steps", self.content))
        grid.addWidget(QLabel("Active", self.content), 7, 0)
        grid.addLayout(range_row, 7, 1)

        self.recommended_button = QPushButton("Apply recommended settings", self.content)
        self.recommended_button.setToolTip(
            "The ControlNet model card's settings: Euler sampler, 60 steps, CFG 3.5 (your values stay until you click)"
        )
        grid.addWidget(self.recommended_button, 8, 1, Qt.AlignmentFlag.AlignLeft)
        self.note = QLabel("", self)
        self.note.setObjectName("warningLabel")
        self.note.setWordWrap(True)
        self.note.hide()
        self.layout().addWidget(self.note)  # under the header: seen even while the section is folded

        for spin in (
            self.blur_spin,
            self.low_spin,
            self.high_spin,
            self.strength_spin,
            self.start_spin,
            self.end_spin,
        ):
            spin.setKeyboardTracking(False)
            spin.valueChanged.connect(lambda _v: self._changed())
        self.strength_slider.valueChanged.connect(self._on_slider)
        self.strength_spin.valueChanged.connect(self._on_strength_spin)
        self.enabled_check.toggled.connect(lambda _on: self._changed())
        self.invert_check.toggled.connect(lambda _on: self._changed())
        self.preprocess_combo.currentIndexChanged.connect(lambda _i: self._changed())
        self.file_combo.activated.connect(self._on_file_activated)
        self.open_button.clicked.connect(self.open_image)
        self.canvas_button.clicked.connect(self.canvas_image_requested)
        self.recommended_button.clicked.connect(self.apply_recommended)
        self.toggle.toggled.connect(lambda _on: self._show_note())
        state.listeners.append(self._on_state_changed)
        state.edit_flushers.append(self.commit)
        self.set_files(())
        self._show_from_state()
        self._changed()

    # ------------------------------------------------------------------------------------------ inputs

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

    def file(self) -> Path | None:
        data = self.file_combo.currentData()
        return Path(data) if data and data != BROWSE else None

    def choose_file(self, path: Path) -> None:
        self._select_file(Path(path))
        self.enabled_check.setChecked(True)
        self._changed()

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
        self._changed()

    def open_image(self) -> None:
        chosen, _ = QFileDialog.getOpenFileName(
            self, "Choose a control image", "", "Images (*.png *.jpg *.jpeg *.webp *.bmp)"
        )
        if chosen:
            self.set_image(Path(chosen))

    def set_image(self, path: Path | None) -> None:
        self.image = Path(path) if path is not None else None
        self.image_label.setText(str(self.image) if self.image else NO_IMAGE)
        source = QImage(str(self.image)) if self.image else QImage()
        if source.isNull():
            self.source_view.setText("cannot read the image" if self.image else "control image")
            self.source_view.setPixmap(QPixmap())
        else:
            self.source_view.setPixmap(QPixmap.fromImage(fit(source)))
        if self.image is not None:
            self.enabled_check.setChecked(True)
        self._changed()

    def show_map(self, image: QImage | None, error: str = "") -> None:
        """The preprocessed map (from the window's worker), or why it could not be made."""
        if image is None or image.isNull():
            self.map_view.setPixmap(QPixmap())
            self.map_view.setText(error or "map")
            self.map_view.setToolTip(error)
            return
        self.map_view.setPixmap(QPixmap.fromImage(fit(image)))
        self.map_view.setToolTip("What the ControlNet is shown (after preprocessing)")

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if dropped_image(event) is not None:
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:
        path = dropped_image(event)
        if path is not None:
            event.acceptProposedAction()
            self.set_expanded(True)
            self.set_image(path)

    def apply_recommended(self) -> None:
        self.state.edit("sampler", CONTROLNET_RECOMMENDED["sampler"])
        self.state.edit("steps", CONTROLNET_RECOMMENDED["steps"])
        self.state.edit("cfg", CONTROLNET_RECOMMENDED["cfg"])

    # ------------------------------------------------------------------------------------------ state

    def preprocess(self) -> ControlPreprocess:
        return self.pre.value()

    def commit(self) -> None:
        for spin in (
            self.blur_spin,
            self.low_spin,
            self.high_spin,
            self.strength_spin,
            self.start_spin,
            self.end_spin,
        ):
            spin.interpretText()

    def _on_slider(self, value: int) -> None:
        if not self._showing:
            self.strength_spin.setValue(value / 100)

    def _on_strength_spin(self, value: float) -> None:
        self._showing = True
        self.strength_slider.setValue(round(min(value, 2.0) * 100))
        self._showing = False

    def _changed(self) -> None:
        if self._showing:
            return
        self.pre.update_visible()
        on = self.enabled_check.isChecked()
        file, image = self.file(), self.image
        missing = ""
        if on and (file is None or image is None):
            what = " and ".join(
                w for w, v in (("a ControlNet file", file), ("a control image", image)) if v is None
            )
            missing = f"ControlNet: choose {what}, or switch the ControlNet off."
        specs: tuple[ControlSpec, ...] = ()
        if on and file is not None and image is not None:
            known = next((k for k in self._known if k.path == file), None)
            specs = (
                ControlSpec(
                    file, image, self.strength_spin.value(), self.start_spin.value(), self.end_spin.value(),
                    known.control_type if known else None, self.preprocess(),
                ),
            )  # fmt: skip
        self.state.set_controlnets(specs, missing)
        self._want_map()
        self._show_note()

    def _want_map(self) -> None:
        """Ask for the map when what it depends on changed (not for a strength or range change)."""
        key = (self.image, (self.state.values.width, self.state.values.height), self.preprocess())
        if key == self._map_key:
            return
        self._map_key = key
        if self.image is None:
            self.show_map(None)
        else:
            self.map_wanted.emit(*key)

    def _show_from_state(self) -> None:
        """Fill the fields from the state's first ControlNet (restored settings, recall)."""
        specs = self.state.controlnets
        if not specs:
            return
        spec = specs[0]
        self._showing = True
        try:
            self.enabled_check.setChecked(True)
            self._select_file(spec.file)
            self.image = spec.image
            self.image_label.setText(str(spec.image))
            source = QImage(str(spec.image))
            if not source.isNull():
                self.source_view.setPixmap(QPixmap.fromImage(fit(source)))
            self.pre.show(spec.preprocess)
            self.strength_spin.setValue(spec.strength)
            self.strength_slider.setValue(round(min(spec.strength, 2.0) * 100))
            self.start_spin.setValue(spec.start)
            self.end_spin.setValue(spec.end)
        finally:
            self._showing = False

    def _on_state_changed(self, changed: frozenset[str]) -> None:
        if "controlnets" in changed and not self._showing:
            ours = self.state.controlnets
            if ours and (ours[0].file != self.file() or ours[0].image != self.image):
                self._show_from_state()  # a recall brought another ControlNet
                self._changed()
            elif not ours and self.enabled_check.isChecked() and self.file() and self.image:
                self._showing = True
                self.enabled_check.setChecked(False)  # a recall without ControlNet
                self._showing = False
        if changed & {"variant", "controlnets", "notes"}:
            self._show_note()
        if changed & {"width", "height"}:
            self._want_map()

    def _show_note(self) -> None:
        note = self.state.problems().get("controlnets", "")
        if not note and self.is_expanded() and self.state.variant not in CONTROLNET_VARIANTS:
            note = MEDIUM_NOTE
        self.note.setText(f"⚠ {note}" if note else "")
        self.note.setVisible(bool(note))
        count = len(self.state.controlnets)
        self.toggle.setText("ControlNet (on)" if count else "ControlNet")

    def detach(self) -> None:
        if self._on_state_changed in self.state.listeners:
            self.state.listeners.remove(self._on_state_changed)
        if self.commit in self.state.edit_flushers:
            self.state.edit_flushers.remove(self.commit)
