"""Small widgets of the settings form, its row grid, and the two-way binding between widgets and
`GenerationFormState`."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

from PySide6.QtCore import QSize, Qt
from PySide6.QtGui import QValidator
from PySide6.QtWidgets import (
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

from app.ui.form.form_fields import parse_seed
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


# Number fields take any number typed; the form state decides what is used and says why when it differs, so a
# spin box never drops a keystroke or snaps back silently (its own range only bounds what can be typed).
TYPED_INT_LIMIT = 999_999
TYPED_FLOAT_LIMIT = 9_999.0


def int_spin(parent: QWidget, tip: str = "") -> QSpinBox:
    spin = QSpinBox(parent)
    spin.setRange(-TYPED_INT_LIMIT, TYPED_INT_LIMIT)
    spin.setToolTip(tip)
    return spin


MAX_DECIMALS = 6  # what a float field keeps of what is typed or recalled


class DecimalSpinBox(QDoubleSpinBox):
    """A float field that keeps the digits it is given (up to MAX_DECIMALS) and shows them: a plain
    QDoubleSpinBox with 2 decimals turns a typed 4.567 into 4.56 and a recalled 4.125 into 4.13 without a word.
    At least `shown` decimals are displayed ("4.50"); further ones only when the value has them."""

    def __init__(self, parent: QWidget | None, shown: int) -> None:
        super().__init__(parent)
        self._shown = shown
        self.setDecimals(MAX_DECIMALS)

    def textFromValue(self, value: float) -> str:
        point = self.locale().decimalPoint()
        text = self.locale().toString(value, "f", MAX_DECIMALS).replace(self.locale().groupSeparator(), "")
        whole, _, fraction = text.partition(point)
        fraction = fraction.rstrip("0").ljust(self._shown, "0")
        return f"{whole}{point}{fraction}" if fraction else whole


def float_spin(parent: QWidget, step: float, decimals: int = 2, tip: str = "") -> QDoubleSpinBox:
    spin = DecimalSpinBox(parent, decimals)
    spin.setRange(-TYPED_FLOAT_LIMIT, TYPED_FLOAT_LIMIT)
    spin.setSingleStep(step)
    spin.setToolTip(tip)
    return spin


class SizeSpinBox(QSpinBox):
    """Width or height: arrows and wheel step to the next multiple of 64; any typed size is taken to the form,
    which snaps it to 64 px and the model's limit and says so."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setRange(0, TYPED_INT_LIMIT)
        self.setSingleStep(SIZE_MULTIPLE)
        self.setSuffix(" px")

    def stepBy(self, steps: int) -> None:
        value = self.value()
        if value % SIZE_MULTIPLE:
            value = (value // SIZE_MULTIPLE + (1 if steps > 0 else 0)) * SIZE_MULTIPLE
            steps -= 1 if steps > 0 else -1
        self.setValue(value + steps * SIZE_MULTIPLE)


class EveryStepsSpinBox(QSpinBox):
    """ "every step", "every 2 steps", …: the preview interval."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setRange(-TYPED_INT_LIMIT, TYPED_INT_LIMIT)

    def textFromValue(self, value: int) -> str:
        return "every step" if value == 1 else f"every {value} steps"

    def valueFromText(self, text: str) -> int:
        digits = "".join(c for c in text if c.isdigit() or c == "-")
        try:
            return int(digits) if digits.strip("-") else 1
        except ValueError:
            return 1

    def validate(self, text: str, pos: int) -> object:
        return QValidator.State.Acceptable if _has_number_or_step(text) else QValidator.State.Intermediate


def _has_number_or_step(text: str) -> bool:
    return text.strip() == "every step" or any(c.isdigit() for c in text)


class SeedEdit(QLineEdit):
    """A seed of up to 20 digits (seeds go to 2^64 - 1, beyond a QSpinBox's int range). Any text can be typed:
    the form says why text that is not a seed cannot be used, instead of dropping characters."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("seedEdit")
        self.setPlaceholderText("seed")
        self.setMaxLength(40)


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


class FormGrid:
    """Rows of "label, field, pin" (a pinned group survives a variant switch), each field with a note line under
    it that says why a typed value was changed or cannot be used."""

    def __init__(self, parent: QWidget, state: GenerationFormState, pins: dict[str, PinButton]) -> None:
        self.parent, self.state, self.pins = parent, state, pins
        self.layout = QGridLayout()
        self.layout.setHorizontalSpacing(8)
        self.layout.setVerticalSpacing(6)
        self.layout.setColumnStretch(1, 1)
        self.note_labels: dict[str, QLabel] = {}  # field -> the note line under its row
        self._row = 0

    def add(
        self, label: str, field: QWidget | QHBoxLayout, pin: str | None = None, notes: tuple[str, ...] = ()
    ) -> QLabel:
        text = QLabel(label, self.parent)
        self.layout.addWidget(text, self._row, 0)
        if isinstance(field, QWidget):
            text.setBuddy(field)
            self.layout.addWidget(field, self._row, 1)
        else:
            text.setBuddy(field.itemAt(0).widget())
            self.layout.addLayout(field, self._row, 1)
        if pin is not None:
            button = self.pins[pin] = PinButton(pin, self.parent)
            button.toggled.connect(lambda on, group=pin: self.state.set_pinned(group, on))
            self.layout.addWidget(button, self._row, 2)
        self._row += 1
        if notes:
            note = QLabel("", self.parent)
            note.setObjectName("warningLabel")
            note.setWordWrap(True)
            note.hide()
            self.layout.addWidget(note, self._row, 1, 1, 2)
            self._row += 1
            for name in notes:
                self.note_labels[name] = note
        return text

    def add_widget(self, widget: QWidget) -> None:
        """A full-width line under the rows (a hint)."""
        self.layout.addWidget(widget, self._row, 1, 1, 2)
        self._row += 1

    def show_notes(self, notes: Mapping[str, str]) -> None:
        texts: dict[QLabel, list[str]] = {label: [] for label in self.note_labels.values()}
        for name, label in self.note_labels.items():
            if notes.get(name):
                texts[label].append(notes[name])
        for label, lines in texts.items():
            label.setText("\n".join(lines))
            label.setToolTip("\n".join(lines))
            label.setVisible(bool(lines))


class FieldBinder:
    """Binds widgets to fields of `GenerationFormState`, the one truth: a user's edit goes into the state and the
    widget then shows the state's value (snapped or clamped, with a note); a state change from anywhere updates
    the widgets without echoing back. Typed text not yet committed is committed before the state is read."""

    def __init__(self, state: GenerationFormState) -> None:
        self.state = state
        self._shows: dict[str, list[Callable[[], None]]] = {}  # field -> show the state's value in a widget
        self._reads: dict[str, list[Callable[[], object]]] = {}  # field -> what a widget shows, as a value
        self._commits: list[Callable[[], None]] = []
        self._showing = False
        state.listeners.append(self._on_state_changed)
        state.edit_flushers.append(self.commit_pending)

    def detach(self) -> None:
        if self._on_state_changed in self.state.listeners:
            self.state.listeners.remove(self._on_state_changed)
        if self.commit_pending in self.state.edit_flushers:
            self.state.edit_flushers.remove(self.commit_pending)

    def spin(self, widget: QSpinBox | QDoubleSpinBox, field: str) -> None:
        widget.setKeyboardTracking(False)  # typing commits on Enter, focus-out or a read of the form
        widget.valueChanged.connect(lambda value: self._edit(field, value))
        self._bind(field, lambda v: widget.setValue(v), widget.value)  # type: ignore[arg-type]
        self._commits.append(widget.interpretText)

    def combo(self, widget: QComboBox, field: str) -> None:
        widget.currentIndexChanged.connect(lambda _i: self._edit(field, widget.currentData()))
        self._bind(field, lambda v: widget.setCurrentIndex(max(0, widget.findData(v))), widget.currentData)

    def check(self, widget: QCheckBox | QToolButton, field: str) -> None:
        widget.toggled.connect(lambda on: self._edit(field, on))
        self._bind(field, lambda v: widget.setChecked(bool(v)), widget.isChecked)

    def line(self, widget: QLineEdit, field: str) -> None:
        """A free text field (the skip layers): every edit goes to the state, so its problems show as typed."""

        def commit() -> None:
            if widget.isModified():
                widget.setModified(False)
                self._edit(field, widget.text())

        def show(value: object) -> None:
            if widget.text() != str(value):  # the same text: leave the cursor where the user is typing
                widget.setText(str(value))

        widget.textEdited.connect(lambda text: self._edit(field, text))  # any text is a value: take it live
        widget.editingFinished.connect(commit)
        self._commits.append(commit)
        self._bind(field, show, widget.text)

    def seed(self, widget: QLineEdit) -> None:
        """The seed: a number the user types, or "random" (empty, dimmed) while a new seed is drawn per job."""

        def commit() -> None:
            if not widget.isModified() or self.state.values.random_seed:
                return
            widget.setModified(False)
            try:
                seed = parse_seed(widget.text())
            except ValueError as exc:
                self.state.reject("seed", str(exc))
                return
            self._edit("seed", seed)

        def show(_value: object) -> None:
            v = self.state.values
            widget.setEnabled(not v.random_seed)
            widget.setText("" if v.random_seed else str(v.seed))
            last = self.state.last_seed
            widget.setPlaceholderText(
                ("random" + (f" (last: {last})" if last is not None else "")) if v.random_seed else "seed"
            )
            widget.setModified(False)

        widget.editingFinished.connect(commit)
        self._commits.append(commit)
        self._bind("seed", show)
        self._bind("random_seed", show)

    def custom(self, field: str, setter: Callable[[object], None]) -> None:
        self._bind(field, setter)

    def write(self, **changes: object) -> None:
        """A user's edit of widgets bound with `custom` (the prompt editors)."""
        if not self._showing:
            for name, value in changes.items():
                self.state.edit(name, value)

    def commit_pending(self) -> None:
        for commit in list(self._commits):
            commit()

    def refresh_all(self) -> None:
        self._on_state_changed(frozenset(self._shows))

    def mismatches(self) -> dict[str, tuple[object, object]]:
        """Fields whose widget shows another value than the state holds: {field: (shown, state)}."""
        out = {}
        for name, reads in self._reads.items():
            value = getattr(self.state.values, name)
            for read in reads:
                if read() != value:
                    out[name] = (read(), value)
        return out

    def _bind(
        self, field: str, setter: Callable[[object], None], read: Callable[[], object] | None = None
    ) -> None:
        self._shows.setdefault(field, []).append(lambda: setter(getattr(self.state.values, field)))
        if read is not None:
            self._reads.setdefault(field, []).append(read)

    def _edit(self, field: str, value: object) -> None:
        if self._showing:
            return
        self.state.edit(field, value)
        self._on_state_changed(frozenset({field}))  # show what the state made of it, even if unchanged

    def _on_state_changed(self, changed: frozenset[str]) -> None:
        if self._showing:
            return
        self._showing = True
        try:
            for field in changed:
                for show in self._shows.get(field, ()):
                    show()
        finally:
            self._showing = False
        # A widget that cannot show the value (a combo without the entry, a spin box with fewer decimals) shows
        # something else: the state takes what is shown, so what is sent is what is seen.
        unshown = {
            name: read()
            for name in changed
            for read in self._reads.get(name, ())
            if read() != getattr(self.state.values, name)
        }
        if unshown:
            log.info("fields %s take the value their widget can show", sorted(unshown))
            self.state.update(**unshown)
