"""The ControlNet section: a list of ControlNets (`control_unit.ControlUnit`, each folding to a one-line
summary), "Add ControlNet", the model card's recommended settings offered by a button, and the switch that
shows the active unit's preprocessed map over the canvas. Thin: the job's set lives in
`GenerationFormState.controlnets` (the switched-on, complete units in order); a recall or a restore that brings
another set rebuilds the units from it. The window computes the maps off the UI thread (`map_wanted`).
"""

from __future__ import annotations

import logging
from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QDragEnterEvent, QDropEvent, QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QApplication,
    QCheckBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSlider,
    QVBoxLayout,
    QWidget,
)

from app.inference.api.control import ControlSpec
from app.ui.form.addons import CONTROLNET_RECOMMENDED, CONTROLNET_VARIANTS, ControlNetInfo
from app.ui.form.control_unit import ControlUnit
from app.ui.form.control_widgets import accept_image_drag, accept_image_drop
from app.ui.form.form_state import GenerationFormState
from app.ui.form.form_widgets import CollapsibleSection

log = logging.getLogger(__name__)

MEDIUM_NOTE = (
    "ControlNets are for SD3.5 Large: the selected model is SD3.5 Medium, which has no official ControlNet."
)
MAX_UNITS = 4  # each Large ControlNet is 8.65 GB in bf16
DEFAULT_OVERLAY_OPACITY = 50  # percent


class ControlNetSection(CollapsibleSection):
    map_wanted = Signal(
        object, object, object, object
    )  # unit, image Path, (width, height), ControlPreprocess
    canvas_image_requested = Signal(object)  # unit: the window answers with `unit.set_image`
    overlay_changed = Signal()  # the overlay switch, its opacity or the active unit's map changed
    said = Signal(str)  # a sentence for the status bar
    folders_requested = Signal()  # "Add folder…": the window asks for a ControlNet folder and rescans

    def __init__(self, state: GenerationFormState, parent: QWidget | None = None) -> None:
        super().__init__("ControlNet", parent)
        self.state = state
        self.units: list[ControlUnit] = []
        self.active: ControlUnit | None = None
        self._known: tuple[ControlNetInfo, ...] = ()
        self._pushing = False
        self._map_keys: dict[int, tuple] = {}  # id(unit) -> what its shown (or coming) map was made from
        self.setAcceptDrops(True)
        # Ctrl+V in the section (a click on its background focuses it) pastes a picture into a unit
        self.setFocusPolicy(Qt.FocusPolicy.ClickFocus)
        self.paste_shortcut = QShortcut(QKeySequence.StandardKey.Paste, self, self.paste_here)
        self.paste_shortcut.setContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
        column = QVBoxLayout(self.content)
        column.setContentsMargins(14, 2, 0, 2)
        column.setSpacing(6)
        self.unit_column = QVBoxLayout()
        self.unit_column.setSpacing(6)
        column.addLayout(self.unit_column)
        self.empty_label = QLabel("No ControlNet: add one, or drop a control image here.", self.content)
        self.empty_label.setObjectName("hintLabel")
        self.empty_label.setWordWrap(True)
        column.addWidget(self.empty_label)

        buttons = QHBoxLayout()
        buttons.setSpacing(6)
        self.add_button = QPushButton("Add ControlNet", self.content)
        self.add_button.setToolTip(f"Another ControlNet (up to {MAX_UNITS}); their effects add up")
        self.recommended_button = QPushButton("Recommended settings", self.content)
        self.recommended_button.setToolTip(
            "The ControlNet model card's settings: Euler sampler, 60 steps, CFG 3.5 (your values stay until you click)"
        )
        buttons.addWidget(self.add_button)
        buttons.addWidget(self.recommended_button)
        buttons.addStretch(1)
        column.addLayout(buttons)
        folder_row = QHBoxLayout()  # its own row: the dock's default width has no room beside the two above
        self.folders_button = QPushButton("Add folder…", self.content)
        self.folders_button.setToolTip(
            "Add a folder of ControlNet files (ComfyUI's models/controlnet and the Hugging Face download "
            "are searched too); the list is read again"
        )
        folder_row.addWidget(self.folders_button)
        folder_row.addStretch(1)
        column.addLayout(folder_row)

        overlay_row = QHBoxLayout()
        overlay_row.setSpacing(6)
        self.overlay_check = QCheckBox("Map on canvas", self.content)
        self.overlay_check.setToolTip(
            "Draw the active ControlNet's preprocessed map over the canvas, stretched to the generation size"
        )
        self.overlay_slider = QSlider(Qt.Orientation.Horizontal, self.content)
        self.overlay_slider.setRange(5, 100)
        self.overlay_slider.setValue(DEFAULT_OVERLAY_OPACITY)
        self.overlay_slider.setAccessibleName("Control map opacity")
        self.overlay_slider.setToolTip("Opacity of the map over the canvas")
        overlay_row.addWidget(self.overlay_check)
        overlay_row.addWidget(self.overlay_slider, 1)
        column.addLayout(overlay_row)

        self.note = QLabel("", self)
        self.note.setObjectName("warningLabel")
        self.note.setWordWrap(True)
        self.note.hide()
        self.layout().addWidget(self.note)  # under the header: seen even while the section is folded

        self.add_button.clicked.connect(lambda: self.add_unit(expanded=True))
        self.recommended_button.clicked.connect(self.apply_recommended)
        self.folders_button.clicked.connect(self.folders_requested)
        self.overlay_check.toggled.connect(lambda _on: self.overlay_changed.emit())
        self.overlay_slider.valueChanged.connect(lambda _v: self.overlay_changed.emit())
        self.toggle.toggled.connect(lambda _on: self._show_note())
        state.listeners.append(self._on_state_changed)
        state.edit_flushers.append(self.commit)
        if state.controlnets:
            self._rebuild(state.controlnets)
        else:
            self.add_unit()
        self._push()

    # ------------------------------------------------------------------------------------------ units

    def add_unit(self, expanded: bool = True) -> ControlUnit | None:
        if len(self.units) >= MAX_UNITS:
            self.said.emit(f"At most {MAX_UNITS} ControlNets at once.")
            return None
        for other in self.units:  # the new one is where the user works: fold the others to their summary
            other.set_expanded(False)
        unit = ControlUnit(len(self.units) + 1, self.content)
        unit.set_files(self._known)
        unit.changed.connect(self._push)
        unit.activated.connect(lambda u=unit: self._set_active(u))
        unit.remove_requested.connect(lambda u=unit: self.remove_unit(u))
        unit.canvas_image_requested.connect(lambda u=unit: self.canvas_image_requested.emit(u))
        unit.said.connect(self.said)
        self.unit_column.addWidget(unit)
        unit.show()  # now, not at the next event loop turn: a click right after Add reaches it
        self.units.append(unit)
        unit.set_expanded(expanded)
        self._set_active(unit)
        self._update_buttons()
        return unit

    def remove_unit(self, unit: ControlUnit) -> None:
        if unit not in self.units:
            return
        self.units.remove(unit)
        self._map_keys.pop(id(unit), None)
        unit.hide()
        unit.setParent(None)
        unit.deleteLater()
        for number, other in enumerate(self.units, 1):
            other.number = number
            other.update_summary()
        if self.active is unit:
            self._set_active(self.units[-1] if self.units else None)
        self._name_overlay()  # the numbers moved up
        self._update_buttons()
        self._push()

    def _set_active(self, unit: ControlUnit | None) -> None:
        if unit is not self.active:
            self.active = unit
            self.overlay_changed.emit()
        self._name_overlay()

    def _name_overlay(self) -> None:
        """The overlay switch names the unit whose map it draws (the one last worked in)."""
        several = len(self.units) > 1 and self.active is not None
        self.overlay_check.setText(f"Map {self.active.number} on canvas" if several else "Map on canvas")

    def _update_buttons(self) -> None:
        self.add_button.setEnabled(len(self.units) < MAX_UNITS)
        self.empty_label.setVisible(not self.units)

    def _target(self) -> ControlUnit | None:
        """Where an image from outside goes (a drop on the section, the gallery): the active unit, else a new one."""
        unit = self.active or (self.units[0] if self.units else None)
        return unit or self.add_unit()

    # ------------------------------------------------------------------------------------------ inputs

    def set_files(self, known: tuple[ControlNetInfo, ...]) -> None:
        self._known = known
        for unit in self.units:
            unit.set_files(known)

    def use_image(self, path: Path) -> None:
        """An image from elsewhere (gallery, canvas) as the active unit's control image."""
        unit = self._target()
        if unit is None:
            return
        self.set_expanded(True)
        unit.set_expanded(True)
        unit.set_image(Path(path))

    def paste_here(self) -> None:
        """Ctrl+V in the section: the clipboard's picture into the unit being worked in (the one holding the
        focus, else the active one). Text and number fields claim their own Ctrl+V first (ShortcutOverride), so
        this never takes a field's paste."""
        focus = QApplication.focusWidget()
        unit = next((u for u in self.units if focus is not None and u.isAncestorOf(focus)), None)
        unit = unit or self._target()
        if unit is not None:
            self.set_expanded(True)
            unit.set_expanded(True)
            unit.paste_image()

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        accept_image_drag(event)

    def dropEvent(self, event: QDropEvent) -> None:
        path = accept_image_drop(event)
        if path is not None:
            self.use_image(path)

    def apply_recommended(self) -> None:
        self.state.edit("sampler", CONTROLNET_RECOMMENDED["sampler"])
        self.state.edit("steps", CONTROLNET_RECOMMENDED["steps"])
        self.state.edit("cfg", CONTROLNET_RECOMMENDED["cfg"])

    # ------------------------------------------------------------------------------------------ overlay

    def overlay(self) -> tuple[object | None, float]:
        """(the active unit's map QImage, or None when the switch is off or there is no map; opacity 0..1)."""
        unit = self.active
        shown = self.overlay_check.isChecked() and unit is not None and unit.map_image is not None
        return (unit.map_image if shown else None), self.overlay_slider.value() / 100

    def show_map(self, unit: ControlUnit, image, error: str = "") -> None:
        if unit in self.units:
            unit.show_map(image, error)
            if unit is self.active:
                self.overlay_changed.emit()

    # ------------------------------------------------------------------------------------------ state

    def commit(self) -> None:
        for unit in self.units:
            unit.commit()

    def specs(self) -> tuple[ControlSpec, ...]:
        return tuple(s for s in (u.spec() for u in self.units) if s is not None)

    def _push(self) -> None:
        """The units' set into the state (the one the job gets), with why a switched-on unit cannot be sent."""
        if self._pushing:
            return
        problems = [(u.number, p) for u in self.units if (p := u.problem())]
        missing = ""
        if problems:
            number, problem = problems[0]
            name = f"ControlNet {number}" if len(self.units) > 1 else "ControlNet"
            missing = f"{name}: {problem}."
        self._pushing = True
        try:
            self.state.set_controlnets(self.specs(), missing)
        finally:
            self._pushing = False
        self._want_maps()
        self._show_note()

    def _rebuild(self, specs: tuple[ControlSpec, ...]) -> None:
        """Units for a set from outside (recall, restore): one per ControlNet, in order; switched-off drafts
        are dropped (the set replaces them). The state already holds the set: nothing is pushed back meanwhile."""
        was, self._pushing = self._pushing, True
        try:
            self._fill_units(specs)
        finally:
            self._pushing = was

    def _fill_units(self, specs: tuple[ControlSpec, ...]) -> None:
        while len(self.units) > len(specs):
            self.remove_unit(self.units[-1])
        while len(self.units) < len(specs):
            self.add_unit(expanded=False)
        for unit, spec in zip(self.units, specs, strict=True):
            unit.fill(spec)
            unit.set_expanded(False)
        if self.units:
            self.units[0].set_expanded(True)
            self._set_active(self.units[0])

    def _want_maps(self) -> None:
        """Ask for a unit's map when what it depends on changed (not for a strength or range change)."""
        size = (self.state.values.width, self.state.values.height)
        for unit in self.units:
            key = (unit.image, size, unit.preprocess())
            if self._map_keys.get(id(unit)) == key:
                continue
            self._map_keys[id(unit)] = key
            if unit.image is None:
                self.show_map(unit, None)
            else:
                self.map_wanted.emit(unit, *key)

    def _on_state_changed(self, changed: frozenset[str]) -> None:
        if "controlnets" in changed and not self._pushing:
            ours, theirs = self.specs(), self.state.controlnets
            on = [u for u in self.units if u.spec() is not None]
            if theirs and len(on) == len(theirs) and theirs != ours:
                for unit, spec in zip(on, theirs, strict=True):  # the same units, new values (kept images)
                    unit.fill(spec)
                self._push()
            elif theirs and theirs != ours:
                self._rebuild(theirs)  # a recall or another window part brought another set
                self._push()
            elif not theirs and ours:
                for unit in self.units:  # a recall without ControlNets
                    unit.switch_off()
                self._push()
        if changed & {"variant", "controlnets", "notes"}:
            self._show_note()
        if changed & {"width", "height"}:
            self._want_maps()

    def _show_note(self) -> None:
        note = self.state.problems().get("controlnets", "")
        if not note and self.is_expanded() and self.state.variant not in CONTROLNET_VARIANTS:
            note = MEDIUM_NOTE
        self.note.setText(f"⚠ {note}" if note else "")
        self.note.setVisible(bool(note))
        count = len(self.state.controlnets)
        self.toggle.setText(f"ControlNet ({count} on)" if count else "ControlNet")

    def detach(self) -> None:
        if self._on_state_changed in self.state.listeners:
            self.state.listeners.remove(self._on_state_changed)
        if self.commit in self.state.edit_flushers:
            self.state.edit_flushers.remove(self.commit)
