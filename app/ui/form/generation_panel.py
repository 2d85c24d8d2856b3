"""The settings panel: model picker, prompts, style, size, seed, images, steps, CFG, sampler, scheduler and the
Advanced section. Thin: every value lives in `GenerationFormState`; this module only lays out and binds."""

from __future__ import annotations

import html
import logging

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QComboBox,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSizePolicy,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from app.inference.api.variants import PRESETS
from app.ui.elided_combo import ElidedComboBox
from app.ui.form.advanced_panel import AdvancedPanel
from app.ui.form.controlnet_section import ControlNetSection
from app.ui.form.form_state import GenerationFormState
from app.ui.form.form_widgets import (
    FieldBinder,
    FormGrid,
    PinButton,
    SeedEdit,
    SizeSpinBox,
    float_spin,
    int_spin,
)
from app.ui.form.lora_panel import LoraPanel
from app.ui.form.presets import ASPECT_SIZES_1MP, CUSTOM_ASPECT, PROMPT_SLOT, StylePreset
from app.ui.form.prompt_editor import PromptEditor
from app.ui.window.theme import icon
from app.ui.window.tooltips import tooltip

log = logging.getLogger(__name__)

SAMPLER_LABELS = {"euler": "Euler", "dpmpp_2m": "DPM++ 2M", "euler_ancestral": "Euler a"}
SCHEDULER_LABELS = {"normal": "Normal", "simple": "Simple", "sgm_uniform": "SGM Uniform", "beta": "Beta"}
ASPECT_LABELS = {
    "1:1": "1:1 square",
    "4:3": "4:3",
    "3:2": "3:2",
    "16:9": "16:9 wide",
    "21:9": "21:9 cinema",
    "3:4": "3:4",
    "2:3": "2:3",
    "9:16": "9:16 tall",
    "9:21": "9:21",
    CUSTOM_ASPECT: "Custom",
}


class GenerationPanel(QWidget):
    def __init__(
        self, state: GenerationFormState, styles: list[StylePreset], parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self.state = state
        self.styles = {s.id: s for s in styles}
        self.binder = FieldBinder(state)
        self.pins: dict[str, PinButton] = {}
        layout = QVBoxLayout(self)
        layout.setContentsMargins(12, 10, 12, 10)
        layout.setSpacing(10)

        # Model
        model_row = QHBoxLayout()
        model_row.setSpacing(6)
        self.model_combo = ElidedComboBox(self)
        self.model_combo.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.model_combo.setToolTip(tooltip("model"))
        self.model_combo.setAccessibleName("Model")
        self.locate_button = QPushButton("Locate…", self)
        self.locate_button.setToolTip(tooltip("locate"))
        model_label = QLabel("&Model", self)
        model_label.setObjectName("sectionLabel")
        model_label.setBuddy(self.model_combo)
        model_row.addWidget(model_label)
        model_row.addWidget(self.model_combo, 1)
        model_row.addWidget(self.locate_button)
        layout.addLayout(model_row)
        self.model_hint = QLabel("", self)
        self.model_hint.setObjectName("hintLabel")
        self.model_hint.setWordWrap(True)
        self.model_hint.hide()
        layout.addWidget(self.model_hint)

        # Prompts
        self.prompt = PromptEditor(
            "&Prompt",
            "A lighthouse on a cliff at dawn, (dramatic clouds:1.2), oil painting",
            tooltip("prompt"),
            self,
        )
        self.prompt.edit.setMinimumHeight(100)
        self.negative = PromptEditor(
            "&Negative prompt", "blurry, low quality, watermark", tooltip("negative"), self
        )
        self.negative.edit.setMinimumHeight(56)
        self.negative.edit.setMaximumHeight(90)
        layout.addWidget(self.prompt, 1)  # the prompt box takes the panel's spare height
        layout.addWidget(self.negative, 0)
        self.prompt.text_changed.connect(lambda text: self.binder.write(prompt=text))
        self.negative.text_changed.connect(lambda text: self.binder.write(negative=text))
        self.binder.custom("prompt", lambda v: self.prompt.set_text(str(v)))
        self.binder.custom("negative", lambda v: self.negative.set_text(str(v)))
        self.loras = LoraPanel(state, self.insert_in_prompt, self)
        layout.addWidget(self.loras)

        # Style
        style_row = QHBoxLayout()
        self.style_combo = QComboBox(self)
        for preset in styles:
            self.style_combo.addItem(preset.label, preset.id)
        self.style_combo.setToolTip(tooltip("style"))
        style_label = QLabel("St&yle", self)
        style_label.setBuddy(self.style_combo)
        style_row.addWidget(style_label)
        style_row.addWidget(self.style_combo, 1)
        layout.addLayout(style_row)
        self.style_hint = QLabel("", self)
        self.style_hint.setObjectName("hintLabel")
        self.style_hint.setWordWrap(True)
        self.style_hint.setTextFormat(Qt.TextFormat.RichText)
        self.style_hint.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout.addWidget(self.style_hint)
        self.binder.combo(self.style_combo, "style")

        layout.addLayout(self._build_parameters())
        self.controlnet = ControlNetSection(state, self)
        layout.addWidget(self.controlnet)
        self.advanced = AdvancedPanel(state, self.binder, self.pins, self)
        layout.addWidget(self.advanced)
        # Problems in the Advanced section stay visible while it is folded: Generate would refuse them.
        self.problem_label = QLabel("", self)
        self.problem_label.setObjectName("warningLabel")
        self.problem_label.setWordWrap(True)
        self.problem_label.hide()
        layout.addWidget(self.problem_label)
        self.advanced.toggle.toggled.connect(lambda _on: self._show_notes())
        state.listeners.append(self._on_state_changed)
        self.binder.refresh_all()
        for key, button in self.pins.items():
            button.setChecked(key in state.pins)
        self.refresh_variant()
        self._update_style_hint()
        self._show_notes()

    # ------------------------------------------------------------------------------------------ layout

    def _build_parameters(self) -> QGridLayout:
        rows = self.rows = FormGrid(self, self.state, self.pins)
        self.aspect_combo = QComboBox(self)
        for key in (*ASPECT_SIZES_1MP, CUSTOM_ASPECT):
            self.aspect_combo.addItem(ASPECT_LABELS[key], key)
        rows.add("Si&ze", self.aspect_combo, "size")
        self.binder.combo(self.aspect_combo, "aspect")

        size_row = QHBoxLayout()
        size_row.setSpacing(4)
        self.width_spin, self.height_spin = SizeSpinBox(self), SizeSpinBox(self)
        self.width_spin.setAccessibleName("Width")
        self.height_spin.setAccessibleName("Height")
        times = QLabel("×", self)
        times.setAlignment(Qt.AlignmentFlag.AlignCenter)
        size_row.addWidget(self.width_spin, 1)
        size_row.addWidget(times)
        size_row.addWidget(self.height_spin, 1)
        rows.add("", size_row, notes=("width", "height"))
        self.binder.spin(self.width_spin, "width")
        self.binder.spin(self.height_spin, "height")

        seed_row = QHBoxLayout()
        seed_row.setSpacing(4)
        self.seed_edit = SeedEdit(self)
        self.seed_edit.setToolTip(tooltip("seed"))
        self.random_button = QToolButton(self)
        self.random_button.setObjectName("randomSeedButton")
        self.random_button.setCheckable(True)
        self.random_button.setIcon(icon("dice"))
        self.random_button.setText("Random")
        self.random_button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.random_button.setToolTip(tooltip("random_seed"))
        self.random_button.setAccessibleName("Random seed each time")
        self.reuse_button = QToolButton(self)
        self.reuse_button.setIcon(icon("reuse"))
        self.reuse_button.setToolTip(tooltip("reuse_seed"))
        self.reuse_button.setAccessibleName("Reuse last seed")
        seed_row.addWidget(self.seed_edit, 1)
        seed_row.addWidget(self.random_button)
        seed_row.addWidget(self.reuse_button)
        rows.add("S&eed", seed_row, notes=("seed",))
        self.binder.seed(self.seed_edit)
        self.binder.check(self.random_button, "random_seed")
        self.reuse_button.clicked.connect(self.state.reuse_last_seed)

        self.count_spin = int_spin(self, tooltip("count"))
        rows.add("&Images", self.count_spin, notes=("count",))
        self.binder.spin(self.count_spin, "count")

        self.steps_spin = int_spin(self)
        rows.add("S&teps", self.steps_spin, "steps", notes=("steps",))
        self.binder.spin(self.steps_spin, "steps")

        self.cfg_spin = float_spin(self, 0.5)
        rows.add("&CFG", self.cfg_spin, "cfg", notes=("cfg",))
        self.binder.spin(self.cfg_spin, "cfg")

        self.sampler_combo = QComboBox(self)
        for key, label in SAMPLER_LABELS.items():
            self.sampler_combo.addItem(label, key)
        rows.add("Sa&mpler", self.sampler_combo, "sampler")
        self.binder.combo(self.sampler_combo, "sampler")

        self.scheduler_combo = QComboBox(self)
        for key, label in SCHEDULER_LABELS.items():
            self.scheduler_combo.addItem(label, key)
        rows.add("Sc&heduler", self.scheduler_combo, "scheduler")
        self.binder.combo(self.scheduler_combo, "scheduler")
        return rows.layout

    # ------------------------------------------------------------------------------------------ updates

    def refresh_variant(self) -> None:
        """Tooltips with the variant's recommended ranges, size limits and the Medium-only controls."""
        variant = self.state.variant
        for widget, key in (
            (self.aspect_combo, "aspect"),
            (self.width_spin, "width"),
            (self.height_spin, "height"),
            (self.steps_spin, "steps"),
            (self.cfg_spin, "cfg"),
            (self.sampler_combo, "sampler"),
            (self.scheduler_combo, "scheduler"),
        ):
            widget.setToolTip(tooltip(key, variant))
        for spin in (self.width_spin, self.height_spin):
            top = max(64, self.state.max_side // 64 * 64)
            spin.setToolTip(f"{spin.toolTip()}\nThis model makes up to {top} px per side.")
        self.advanced.refresh_variant()
        self._update_negative()

    def _show_notes(self) -> None:
        """Each field's note (why a typed value changed) or problem (why it cannot be sent) under its row."""
        problems = self.state.problems()
        notes = {**self.state.notes, **problems}
        self.rows.show_notes(notes)
        self.advanced.rows.show_notes(notes)
        folded = [] if self.advanced.is_expanded() else [
            text for name, text in problems.items() if name in self.advanced.rows.note_labels
        ]  # fmt: skip
        self.problem_label.setText("\n".join(f"⚠ {text} (Advanced)" for text in folded))
        self.problem_label.setVisible(bool(folded))

    def _on_state_changed(self, changed: frozenset[str]) -> None:
        self._show_notes()
        if changed & {"variant"}:
            self.refresh_variant()
        if changed & {"cfg"}:
            self._update_negative()
        if changed & {"prompt", "negative", "style"}:
            self._update_style_hint()
        for key, button in self.pins.items():
            if f"pin:{key}" in changed or "variant" in changed:
                button.setChecked(key in self.state.pins)

    def _update_negative(self) -> None:
        self.negative.set_active(self.state.negative_active, self.state.negative_inactive_reason)

    def _update_style_hint(self) -> None:
        preset = self.styles.get(self.state.values.style)
        if preset is None or preset.is_none:
            self.style_hint.setText("")
            self.style_hint.hide()
            return
        # Visible: what the style adds, around the user's prompt; the tooltip: the exact texts the job sends.
        template = html.escape(preset.prompt.strip()).replace(html.escape(PROMPT_SLOT), "<i>your prompt</i>")
        if PROMPT_SLOT not in preset.prompt:
            template = f"<i>your prompt</i>, {template}"
        text = f"Adds: {template}"
        if preset.negative.strip():
            text += f"<br>Negative adds: {html.escape(preset.negative.strip())}"
        self.style_hint.setText(text)
        prompt, negative = preset.apply(self.state.values.prompt or "…", self.state.values.negative)
        self.style_hint.setToolTip(f"Sent as: {prompt}" + (f"\nNegative: {negative}" if negative else ""))
        self.style_hint.show()

    def set_styles(self, styles: list[StylePreset]) -> None:
        self.styles = {s.id: s for s in styles}
        self.style_combo.blockSignals(True)
        self.style_combo.clear()
        for preset in styles:
            self.style_combo.addItem(preset.label, preset.id)
        self.style_combo.setCurrentIndex(max(0, self.style_combo.findData(self.state.values.style)))
        self.style_combo.blockSignals(False)
        if self.state.values.style not in self.styles:
            self.state.update(style=styles[0].id)
        self._update_style_hint()

    def insert_in_prompt(self, text: str) -> None:
        """Text (a LoRA's trigger words) at the prompt's cursor, separated from what is around it by commas."""
        cursor = self.prompt.edit.textCursor()
        before = self.prompt.text()[: cursor.position()].rstrip()
        lead = ", " if before and not before.endswith(",") else (" " if before else "")
        cursor.insertText(lead + text)
        self.prompt.edit.setTextCursor(cursor)

    def detach(self) -> None:
        self.binder.detach()
        self.loras.detach()
        self.controlnet.detach()
        for listener in (self._on_state_changed, self.advanced._on_state_changed):
            if listener in self.state.listeners:
                self.state.listeners.remove(listener)


def variant_label(variant: str | None) -> str:
    return PRESETS[variant].label if variant in PRESETS else "SD3.5"
