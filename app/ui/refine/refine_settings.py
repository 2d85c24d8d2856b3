"""The refine numbers in the settings panel: denoise (with what it means in plain words), mask grow and blur,
and the hires fix (A1111's habit: a checkbox with scale, denoise and steps in the main form). Thin: the values
live in `GenerationFormState`."""

from __future__ import annotations

import logging

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QCheckBox, QGridLayout, QHBoxLayout, QLabel, QSlider, QVBoxLayout, QWidget

from app.ui.form.form_state import GenerationFormState
from app.ui.form.form_widgets import FieldBinder, float_spin, int_spin

log = logging.getLogger(__name__)

DENOISE_HINT = "0.3 keeps the picture, 0.8 repaints most of it."


def denoise_words(denoise: float) -> str:
    """What a denoise value does to the input, in a few words."""
    if denoise < 0.25:
        return "touches up details"
    if denoise < 0.5:
        return "keeps the picture"
    if denoise < 0.75:
        return "keeps the layout, redraws the rest"
    if denoise < 0.95:
        return "repaints most of it"
    return "a new picture (only the size stays)"


class RefineSettings(QWidget):
    def __init__(self, state: GenerationFormState, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("refineSettings")
        self.state = state
        self.binder = FieldBinder(state)
        column = QVBoxLayout(self)
        column.setContentsMargins(0, 0, 0, 0)  # nothing shows in Generate mode: no gap either
        column.setSpacing(0)

        self.refine_box = QWidget(self)
        grid = QGridLayout(self.refine_box)
        grid.setContentsMargins(12, 8, 12, 6)
        grid.setColumnStretch(1, 1)
        title = QLabel("<b>Refine</b>", self.refine_box)
        grid.addWidget(title, 0, 0, 1, 3)
        self.denoise_slider = QSlider(Qt.Orientation.Horizontal, self.refine_box)
        self.denoise_slider.setObjectName("denoiseSlider")
        self.denoise_slider.setRange(1, 100)
        self.denoise_slider.setToolTip(f"How much of the input is repainted. {DENOISE_HINT}")
        self.denoise_spin = float_spin(self.refine_box, 0.05, 2, DENOISE_HINT)
        self.denoise_spin.setObjectName("denoiseSpin")
        denoise_label = QLabel("Denoise", self.refine_box)
        denoise_label.setBuddy(self.denoise_slider)
        grid.addWidget(denoise_label, 1, 0)
        grid.addWidget(self.denoise_slider, 1, 1)
        grid.addWidget(self.denoise_spin, 1, 2)
        self.denoise_hint = QLabel("", self.refine_box)
        self.denoise_hint.setObjectName("hintLabel")
        self.denoise_hint.setWordWrap(True)
        grid.addWidget(self.denoise_hint, 2, 0, 1, 3)
        self.mask_grow_spin = int_spin(
            self.refine_box, "Grow the painted area by this many pixels before sampling"
        )
        self.mask_grow_spin.setSuffix(" px")
        self.mask_grow_spin.setRange(-9999, 9999)
        self.mask_blur_spin = int_spin(self.refine_box, "Feather the seam where the new part meets the old")
        self.mask_blur_spin.setSuffix(" px")
        self.mask_blur_spin.setRange(-9999, 9999)
        self.mask_row = QWidget(self.refine_box)
        mask_layout = QHBoxLayout(self.mask_row)
        mask_layout.setContentsMargins(0, 0, 0, 0)
        mask_layout.addWidget(QLabel("Grow", self.mask_row))
        mask_layout.addWidget(self.mask_grow_spin, 1)
        mask_layout.addWidget(QLabel("Blur", self.mask_row))
        mask_layout.addWidget(self.mask_blur_spin, 1)
        mask_label = QLabel("Mask", self.refine_box)
        grid.addWidget(mask_label, 3, 0)
        grid.addWidget(self.mask_row, 3, 1, 1, 2)
        self._mask_label = mask_label
        column.addWidget(self.refine_box)

        # The hires fix sits under the form (A1111's place for it): a box of its own the window lays out there.
        self.hires_box = QWidget()
        self.hires_box.setObjectName("hiresSettings")
        hires_column = QVBoxLayout(self.hires_box)
        hires_column.setContentsMargins(12, 4, 12, 8)
        hires_column.setSpacing(4)
        self.hires_check = QCheckBox("Hires fix: upscale, then refine", self.hires_box)
        self.hires_check.setObjectName("hiresCheck")
        self.hires_check.setToolTip(
            "Make the picture, enlarge it (Lanczos), then redraw details at the larger size"
        )
        hires_column.addWidget(self.hires_check)
        self.hires_row = QWidget(self.hires_box)
        hires = QGridLayout(self.hires_row)  # two rows: the settings column stays narrow
        hires.setContentsMargins(18, 0, 0, 0)
        hires.setColumnStretch(1, 1)
        hires.setColumnStretch(3, 1)
        self.hires_scale_spin = float_spin(
            self.hires_row, 0.25, 2, "Enlarge by this factor (1.5 = 1024 → 1536 px)"
        )
        self.hires_denoise_spin = float_spin(
            self.hires_row, 0.05, 2, "How much the enlarged picture is redrawn"
        )
        self.hires_steps_spin = int_spin(self.hires_row, "Steps of the second pass (0: as many as the first)")
        self.hires_steps_spin.setSpecialValueText("same")
        for i, (label, spin) in enumerate((("Scale ×", self.hires_scale_spin), ("Denoise", self.hires_denoise_spin),
                                           ("Steps", self.hires_steps_spin))):  # fmt: skip
            spin.setRange(-9999, 9999)  # out-of-range typing still reaches the form, which says why
            hires.addWidget(QLabel(label, self.hires_row), i // 2, (i % 2) * 2)
            hires.addWidget(spin, i // 2, (i % 2) * 2 + 1)
        self.hires_steps_spin.setMinimum(0)  # 0 shows as "same"
        hires_column.addWidget(self.hires_row)

        b = self.binder
        b.spin(self.denoise_spin, "denoise")
        b.spin(self.mask_grow_spin, "mask_grow")
        b.spin(self.mask_blur_spin, "mask_blur")
        b.check(self.hires_check, "hires_enabled")
        b.spin(self.hires_scale_spin, "hires_scale")
        b.spin(self.hires_denoise_spin, "hires_denoise")
        b.spin(self.hires_steps_spin, "hires_steps")
        b.custom("denoise", self._show_denoise)
        b.custom("refine_mode", lambda _v: self._show_mode())
        b.custom("hires_enabled", lambda v: self.hires_row.setEnabled(bool(v)))
        self.denoise_slider.valueChanged.connect(lambda value: b.write(denoise=value / 100))
        b.refresh_all()

    def _show_denoise(self, value: object) -> None:
        denoise = float(value)  # type: ignore[arg-type]
        self.denoise_slider.setValue(round(denoise * 100))
        self.denoise_hint.setText(f"{denoise:.2f}: {denoise_words(denoise)}. {DENOISE_HINT}")

    def _show_mode(self) -> None:
        mode = self.state.values.refine_mode
        self.refine_box.setVisible(mode != "generate")
        masked = mode in ("inpaint", "outpaint")
        self.mask_row.setVisible(masked)
        self._mask_label.setVisible(masked)

    def detach(self) -> None:
        self.binder.detach()
