"""The Advanced section: shift, skip-layer guidance (Medium), negative-prompt window, T5, preview decoder,
memory plan, device and precision."""

from __future__ import annotations

import logging

from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QWidget,
)

from app.ui.form.form_state import GenerationFormState
from app.ui.form.form_widgets import (
    CollapsibleSection,
    EveryStepsSpinBox,
    FieldBinder,
    FormGrid,
    PinButton,
    float_spin,
)
from app.ui.window.tooltips import tooltip

log = logging.getLogger(__name__)

PREVIEW_LABELS = {"auto": "Automatic", "taesd": "TAESD3 (sharper)", "linear": "Linear (fast)", "off": "Off"}
MEMORY_PLAN_LABELS = {
    "auto": "Automatic",
    "resident": "Keep everything loaded",
    "lean": "Lean (a third less GPU memory)",
    "offload": "Offload (one network on the GPU)",
    "fp8": "fp8 weights (half the memory)",
    "low-vram": "Low VRAM (stream blocks)",
}
DEVICE_LABELS = {"auto": "Automatic", "cpu": "CPU", "cuda": "CUDA GPU", "mps": "Apple GPU (MPS)"}
PRECISION_LABELS = {"auto": "Automatic", "float32": "float32", "bfloat16": "bfloat16", "float16": "float16"}


def _combo(parent: QWidget, labels: dict[str, str], tip: str) -> QComboBox:
    combo = QComboBox(parent)
    for key, label in labels.items():
        combo.addItem(label, key)
    combo.setToolTip(tip)
    return combo


def _fraction_spin(parent: QWidget, tip: str) -> QDoubleSpinBox:
    spin = float_spin(parent, 0.01, 2, tip)
    spin.setMinimumWidth(60)
    return spin


class AdvancedPanel(CollapsibleSection):
    def __init__(
        self, state: GenerationFormState, binder: FieldBinder, pins: dict[str, PinButton], parent: QWidget
    ) -> None:
        super().__init__("Advanced", parent)
        self.state = state
        rows = self.rows = FormGrid(self.content, state, pins)
        rows.layout.setContentsMargins(14, 2, 0, 2)
        self.content.setLayout(rows.layout)
        add = rows.add

        self.shift_spin = float_spin(self.content, 0.5)
        add("Shift", self.shift_spin, "shift", notes=("shift",))
        binder.spin(self.shift_spin, "shift")

        self.slg_check = QCheckBox("Skip-layer guidance", self.content)
        self.slg_label = add("", self.slg_check, "slg")
        binder.check(self.slg_check, "slg_enabled")
        slg_row = QHBoxLayout()
        slg_row.setSpacing(4)
        self.slg_scale = float_spin(self.content, 0.1, 2, tooltip("slg_scale"))
        self.slg_scale.setPrefix("×")
        self.slg_layers = QLineEdit(self.content)
        self.slg_layers.setToolTip(tooltip("slg_layers"))
        self.slg_layers.setPlaceholderText("7,8,9")
        self.slg_start = _fraction_spin(self.content, tooltip("slg_range"))
        self.slg_end = _fraction_spin(self.content, tooltip("slg_range"))
        slg_row.addWidget(self.slg_scale, 1)
        slg_row.addWidget(QLabel("layers", self.content))
        slg_row.addWidget(self.slg_layers, 1)
        add("", slg_row, notes=("slg_scale", "slg_layers"))
        range_row = QHBoxLayout()
        range_row.setSpacing(4)
        range_row.addWidget(self.slg_start, 1)
        range_row.addWidget(QLabel("to", self.content))
        range_row.addWidget(self.slg_end, 1)
        range_row.addWidget(QLabel("of the steps", self.content))
        add("", range_row, notes=("slg_start", "slg_end"))
        binder.spin(self.slg_scale, "slg_scale")
        binder.line(self.slg_layers, "slg_layers")
        binder.spin(self.slg_start, "slg_start")
        binder.spin(self.slg_end, "slg_end")
        self.slg_note = QLabel("Skip-layer guidance is for SD3.5 Medium.", self.content)
        self.slg_note.setObjectName("hintLabel")
        rows.add_widget(self.slg_note)

        window_row = QHBoxLayout()
        self.window_check = QCheckBox("Only for the first", self.content)
        self.window_check.setAccessibleName("Negative prompt only for the first part of the steps")
        self.window_check.setToolTip(tooltip("negative_window"))
        self.window_spin = _fraction_spin(self.content, tooltip("negative_window"))
        window_row.setSpacing(4)
        window_row.addWidget(self.window_check)
        window_row.addWidget(self.window_spin, 1)
        add("Negative", window_row, notes=("negative_until",))
        binder.check(self.window_check, "negative_window")
        binder.spin(self.window_spin, "negative_until")

        self.t5_check = QCheckBox("Use the T5-XXL text encoder", self.content)
        self.t5_check.setToolTip(tooltip("use_t5"))
        add("T5", self.t5_check)
        binder.check(self.t5_check, "use_t5")

        preview_row = QHBoxLayout()
        self.preview_combo = _combo(self.content, PREVIEW_LABELS, tooltip("preview"))
        self.preview_every = EveryStepsSpinBox(self.content)
        self.preview_every.setToolTip(tooltip("preview_every"))
        add("Preview", self.preview_combo)
        preview_row.addWidget(self.preview_every, 1)
        add("", preview_row, notes=("preview_every",))
        binder.combo(self.preview_combo, "preview")
        binder.spin(self.preview_every, "preview_every")

        self.memory_combo = _combo(self.content, MEMORY_PLAN_LABELS, tooltip("memory_plan"))
        add("Memory plan", self.memory_combo)
        binder.combo(self.memory_combo, "memory_plan")
        self.device_combo = _combo(self.content, DEVICE_LABELS, tooltip("device"))
        add("Device", self.device_combo)
        binder.combo(self.device_combo, "device")
        self.precision_combo = _combo(self.content, PRECISION_LABELS, tooltip("precision"))
        add("Precision", self.precision_combo)
        binder.combo(self.precision_combo, "precision")

        self.shift_spin.setToolTip(tooltip("shift"))
        self.slg_check.setToolTip(tooltip("slg"))
        state.listeners.append(self._on_state_changed)

    def refresh_variant(self) -> None:
        variant = self.state.variant
        self.shift_spin.setToolTip(tooltip("shift", variant))
        self.slg_check.setToolTip(tooltip("slg", variant))
        self._update_enabled()

    def _on_state_changed(self, changed: frozenset[str]) -> None:
        if changed & {"slg_enabled", "negative_window", "preview", "cfg", "variant", "unavailable"}:
            self._update_enabled()

    def _update_enabled(self) -> None:
        v, medium = self.state.values, self.state.slg_available
        self.slg_check.setEnabled(medium)
        for widget in (self.slg_scale, self.slg_layers, self.slg_start, self.slg_end):
            widget.setEnabled(medium and v.slg_enabled)
        self.slg_note.setVisible(not medium)
        self.window_check.setEnabled(self.state.negative_active)
        self.window_spin.setEnabled(self.state.negative_active and v.negative_window)
        self.preview_every.setEnabled(v.preview != "off")
        # What the chosen engine (a ComfyUI server) cannot run: off, with the reason as the tooltip.
        off = self.state.unavailable
        for name, check in (("slg_enabled", self.slg_check), ("negative_window", self.window_check),
                            ("use_t5", self.t5_check)):  # fmt: skip
            if name in off:
                check.setEnabled(False)
            elif name == "use_t5":
                check.setEnabled(True)
            check.setToolTip(off.get(name) or tooltip({"slg_enabled": "slg", "negative_window": "negative_window",
                                                       "use_t5": "use_t5"}[name], self.state.variant))  # fmt: skip
