"""Small widgets of the settings form and the two-way binding between widgets and `GenerationFormState`."""

from __future__ import annotations

import logging
from collections.abc import Callable

from PySide6.QtCore import QRegularExpression, QSize, Qt
from PySide6.QtGui import QRegularExpressionValidator
from PySide6.QtWidgets import (
    QAbstractSpinBox,
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QSpinBox,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from app.ui.form.form_state import GenerationFormState
from app.ui.form.presets import SIZE_MULTIPLE
from app.ui.window.theme import icon
from app.ui.window.tooltips import tooltip

log = logging.getLogger(__name__)


class PinButton(QToolButton):
    """A small toggle: pinned values survive a variant switch."""

    def __init__(self, group: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.group = group
        self.setObjectName("pinButton")
        self.setCheckable(True)
        self.setIcon(icon("pin"))
        self.setIconSize(QSize(14, 14))
        self.setToolTip(tooltip("pin"))
        self.setAccessibleName(f"Pin {group}")
        self.setFocusPolicy(Qt.FocusPolicy.TabFocus)


class FormRows:
    """Rows of "label · widget · pin" in a grid: the label is the widget's buddy (its Alt+letter focuses the
    widget) and a pin, when given, pins that group of values against variant switches."""

    def __init__(
        self, grid: QGridLayout, parent: QWidget, state: GenerationFormState, pins: dict[str, PinButton]
    ) -> None:
        self.grid, self.parent, self.state, self.pins = grid, parent, state, pins
        self.row = 0

    def add(self, label: str, widget: QWidget | QHBoxLayout, pin: str | None = None) -> QLabel:
        text = QLabel(label, self.parent)
        self.grid.addWidget(text, self.row, 0)
        if isinstance(widget, QWidget):
            text.setBuddy(widget)
            self.grid.addWidget(widget, self.row, 1)
        else:
            text.setBuddy(widget.itemAt(0).widget())
            self.grid.addLayout(widget, self.row, 1)
        if pin is not None:
            button = self.pins[pin] = PinButton(pin, self.parent)
            button.toggled.connect(lambda on, group=pin: self.state.set_pinned(group, on))
            self.grid.addWidget(button, self.row, 2)
        self.row += 1
        return text

    def add_unlabelled(self, widget: QWidget) -> None:
        """A row with only a widget, in the widgets' column (a note under the row above)."""
        self.grid.addWidget(widget, self.row, 1)
        self.row += 1


class SizeSpinBox(QSpinBox):
    """Width or height: arrows and wheel step to the next multiple of 64."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setRange(SIZE_MULTIPLE, 6144)
        self.setSingleStep(SIZE_MULTIPLE)
        self.setSuffix(" px")
        self.setKeyboardTracking(False)
        self.setCorrectionMode(QAbstractSpinBox.CorrectionMode.CorrectToNearestValue)

    def stepBy(self, steps: int) -> None:
        value = self.value()
        if value % SIZE_MULTIPLE:
            value = (value // SIZE_MULTIPLE + (1 if steps > 0 else 0)) * SIZE_MULTIPLE
            steps -= 1 if steps > 0 else -1
        self.setValue(value + steps * SIZE_MULTIPLE)


class SeedEdit(QLineEdit):
    """A seed of up to 20 digits (seeds go to 2^64 - 1, beyond a QSpinBox's int range)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setValidator(QRegularExpressionValidator(QRegularExpression(r"\d{0,20}"), self))
        self.setPlaceholderText("seed")
        self.setMaxLength(20)

    def seed(self) -> int:
        text = self.text().strip()
        return int(text) if text else 0


class CollapsibleSection(QWidget):
    """A header button that shows or hides its content (the Advanced section)."""

    def __init__(self, title: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(4)
        self.toggle = QToolButton(self)
        self.toggle.setText(title)
        self.toggle.setCheckable(True)
        self.toggle.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.toggle.setArrowType(Qt.ArrowType.RightArrow)
        self.toggle.setAutoRaise(True)
        self.toggle.setObjectName("sectionToggle")
        self.content = QWidget(self)
        self.content.hide()
        layout.addWidget(self.toggle)
        layout.addWidget(self.content)
        self.toggle.toggled.connect(self.set_expanded)

    def set_expanded(self, expanded: bool) -> None:
        if self.toggle.isChecked() != expanded:
            self.toggle.setChecked(expanded)
        self.toggle.setArrowType(Qt.ArrowType.DownArrow if expanded else Qt.ArrowType.RightArrow)
        self.content.setVisible(expanded)

    def is_expanded(self) -> bool:
        return self.toggle.isChecked()


class FieldBinder:
    """Keeps widgets and form state in step: a user edit updates the state; a state change (variant switch,
    restore, reuse seed) updates the widgets without echoing back."""

    def __init__(self, state: GenerationFormState) -> None:
        self.state = state
        self._setters: dict[str, list[Callable[[object], None]]] = {}
        self._updating = False
        state.listeners.append(self._on_state_changed)

    def detach(self) -> None:
        if self._on_state_changed in self.state.listeners:
            self.state.listeners.remove(self._on_state_changed)

    def spin(self, widget: QSpinBox | QDoubleSpinBox, field: str) -> None:
        widget.valueChanged.connect(lambda value: self._write(field, value))
        self._add(field, lambda v: widget.setValue(v))  # type: ignore[arg-type]

    def combo(self, widget: QComboBox, field: str) -> None:
        widget.currentIndexChanged.connect(lambda _i: self._write(field, widget.currentData()))
        self._add(field, lambda v: widget.setCurrentIndex(max(0, widget.findData(v))))

    def check(self, widget: QCheckBox | QToolButton, field: str) -> None:
        widget.toggled.connect(lambda on: self._write(field, on))
        self._add(field, lambda v: widget.setChecked(bool(v)))

    def line(self, widget: QLineEdit, field: str, parse: Callable[[str], object] = str) -> None:
        widget.editingFinished.connect(lambda: self._write(field, parse(widget.text())))
        self._add(field, lambda v: widget.setText(str(v)))

    def custom(self, field: str, setter: Callable[[object], None]) -> None:
        self._add(field, setter)

    def write(self, **changes: object) -> None:
        if not self._updating:
            self.state.update(**changes)

    def refresh_all(self) -> None:
        self._on_state_changed(frozenset(self._setters))

    def _add(self, field: str, setter: Callable[[object], None]) -> None:
        self._setters.setdefault(field, []).append(setter)

    def _write(self, field: str, value: object) -> None:
        self.write(**{field: value})

    def _on_state_changed(self, changed: frozenset[str]) -> None:
        self._updating = True
        try:
            for field in changed:
                for setter in self._setters.get(field, ()):
                    setter(getattr(self.state.values, field))
        finally:
            self._updating = False
