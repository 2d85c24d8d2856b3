"""The LoRA panel under the prompts: search the discovered LoRAs, add them, set each one's strength (and, when
wanted, a separate text-encoder strength), insert trigger words. Thin: the set lives in
`GenerationFormState.loras`; the list shows `GenerationFormState.lora_catalog` (filled by the window's scan).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QBrush, QColor, QIcon, QImage, QPixmap
from PySide6.QtWidgets import (
    QCheckBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QSlider,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from app.inference.api.lora import MAX_STRENGTH, LoraSpec
from app.ui.elided_label import ElidedLabel
from app.ui.form.addons import LoraInfo
from app.ui.form.form_state import GenerationFormState
from app.ui.form.form_widgets import CollapsibleSection, float_spin

log = logging.getLogger(__name__)

THUMB = 40  # px of the list's preview thumbnails
LIST_ROWS = 4  # entries the list shows before it scrolls
SLIDER_SCALE = 100  # slider units per strength unit (0.01 steps)
SLIDER_RANGE = 2.0  # the slider covers -2 … 2; the spin box takes any strength the engine accepts


class LoraRow(QWidget):
    """One LoRA of the set: name, strength slider + spin, optional text-encoder strength, triggers, remove."""

    changed = Signal(object)  # the new LoraSpec
    removed = Signal()
    triggers_requested = Signal()

    def __init__(self, spec: LoraSpec, info: LoraInfo | None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.spec = spec
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 2, 0, 2)
        layout.setSpacing(2)
        top = QHBoxLayout()
        top.setSpacing(4)
        self.name = ElidedLabel(info.title if info and info.title else spec.name, self)
        self.name.setToolTip(str(spec.path))
        self.triggers = QToolButton(self)
        self.triggers.setText("Triggers")
        words = ", ".join(info.trigger_words) if info else ""
        self.triggers.setEnabled(bool(words))
        self.triggers.setToolTip(f"Insert into the prompt: {words}" if words else "No trigger words known")
        self.remove = QToolButton(self)
        self.remove.setText("✕")
        self.remove.setToolTip(f"Remove {spec.name}")
        self.remove.setAccessibleName(f"Remove LoRA {spec.name}")
        top.addWidget(self.name, 1)
        top.addWidget(self.triggers)
        top.addWidget(self.remove)
        layout.addLayout(top)

        row = QHBoxLayout()
        row.setSpacing(4)
        self.slider = QSlider(Qt.Orientation.Horizontal, self)
        self.slider.setRange(int(-SLIDER_RANGE * SLIDER_SCALE), int(SLIDER_RANGE * SLIDER_SCALE))
        self.slider.setAccessibleName(f"Strength of {spec.name}")
        self.spin = float_spin(self, 0.05, 2, "Strength (negative values push away from the LoRA's style)")
        self.spin.setRange(-MAX_STRENGTH, MAX_STRENGTH)
        self.spin.setKeyboardTracking(False)
        self.te_check = QCheckBox("TE", self)
        self.te_check.setToolTip(
            "A separate strength for the text encoders (else they get the same strength)"
        )
        self.te_spin = float_spin(self, 0.05, 2, "Text-encoder strength")
        self.te_spin.setRange(-MAX_STRENGTH, MAX_STRENGTH)
        self.te_spin.setKeyboardTracking(False)
        row.addWidget(self.slider, 1)
        row.addWidget(self.spin)
        row.addWidget(self.te_check)
        row.addWidget(self.te_spin)
        layout.addLayout(row)
        self.show_spec(spec)

        self.slider.valueChanged.connect(lambda v: self._set(strength=v / SLIDER_SCALE))
        self.spin.valueChanged.connect(lambda v: self._set(strength=v))
        self.te_check.toggled.connect(lambda on: self._set(te_strength=self.spin.value() if on else None))
        self.te_spin.valueChanged.connect(
            lambda v: self._set(te_strength=v) if self.te_check.isChecked() else None
        )
        self.remove.clicked.connect(self.removed)
        self.triggers.clicked.connect(self.triggers_requested)

    def show_spec(self, spec: LoraSpec) -> None:
        self.spec = spec
        for widget in (self.slider, self.spin, self.te_check, self.te_spin):
            widget.blockSignals(True)
        self.slider.setValue(round(max(-SLIDER_RANGE, min(SLIDER_RANGE, spec.strength)) * SLIDER_SCALE))
        self.spin.setValue(spec.strength)
        self.te_check.setChecked(spec.te_strength is not None)
        self.te_spin.setValue(spec.text_strength)
        self.te_spin.setEnabled(spec.te_strength is not None)
        for widget in (self.slider, self.spin, self.te_check, self.te_spin):
            widget.blockSignals(False)

    def commit(self) -> None:
        """Typed text not yet confirmed with Enter counts (Generate reads what the fields show)."""
        self.spin.interpretText()
        self.te_spin.interpretText()

    def _set(self, **changes: object) -> None:
        spec = replace(self.spec, **changes)
        if spec != self.spec:
            self.show_spec(spec)
            self.changed.emit(spec)


class LoraPanel(CollapsibleSection):
    folders_requested = Signal()  # "Folders…": the window asks for a LoRA folder and rescans
    rescan_requested = Signal()

    def __init__(
        self, state: GenerationFormState, insert_text: Callable[[str], None], parent: QWidget | None = None
    ) -> None:
        super().__init__("LoRAs", parent)
        self.state = state
        self._insert_text = insert_text  # puts text at the prompt's cursor
        self.thumbnails: dict[Path, QImage] = {}
        self.rows: list[LoraRow] = []
        layout = QVBoxLayout(self.content)
        layout.setContentsMargins(14, 2, 0, 2)
        layout.setSpacing(4)

        search_row = QHBoxLayout()
        search_row.setSpacing(4)
        self.search = QLineEdit(self.content)
        self.search.setPlaceholderText("Search LoRAs")
        self.search.setToolTip("Filter by name, title, base model or trigger words")
        self.search.setClearButtonEnabled(True)
        self.folders_button = QToolButton(self.content)
        self.folders_button.setText("Folder…")
        self.folders_button.setToolTip("Add a folder of LoRA files (ComfyUI's models/loras is searched too)")
        self.rescan_button = QToolButton(self.content)
        self.rescan_button.setText("Rescan")
        self.rescan_button.setToolTip("Look through the LoRA folders again (new or removed files)")
        search_row.addWidget(self.search, 1)
        search_row.addWidget(self.folders_button)
        search_row.addWidget(self.rescan_button)
        layout.addLayout(search_row)

        self.list = QListWidget(self.content)
        self.list.setIconSize(QSize(THUMB, THUMB))
        self.list.setUniformItemSizes(True)
        self.list.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        self.list.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.list.setFixedHeight(2 * (THUMB + 6))  # then sized to what it lists (show_catalog)
        self.list.setAccessibleName("Discovered LoRAs")
        layout.addWidget(self.list)
        self.status = QLabel("Looking for LoRA files…", self.content)
        self.status.setObjectName("hintLabel")
        self.status.setWordWrap(True)
        layout.addWidget(self.status)
        add_row = QHBoxLayout()
        self.add_button = QPushButton("Add", self.content)
        self.add_button.setToolTip("Add the selected LoRA to the image (double-click does the same)")
        add_row.addStretch(1)
        add_row.addWidget(self.add_button)
        layout.addLayout(add_row)

        self.rows_box = QVBoxLayout()
        self.rows_box.setSpacing(2)
        layout.addLayout(self.rows_box)
        self.problem = QLabel("", self)
        self.problem.setObjectName("warningLabel")
        self.problem.setWordWrap(True)
        self.problem.hide()
        self.layout().addWidget(self.problem)  # under the header: seen even while the section is folded

        self.search.textChanged.connect(lambda _t: self.show_catalog())
        self.list.itemDoubleClicked.connect(lambda _item: self.add_selected())
        self.list.currentItemChanged.connect(lambda *_: self._update_add())
        self.add_button.clicked.connect(self.add_selected)
        self.folders_button.clicked.connect(self.folders_requested)
        self.rescan_button.clicked.connect(self.rescan_requested)
        state.listeners.append(self._on_state_changed)
        state.edit_flushers.append(self.commit_rows)
        self.show_catalog()
        self.show_rows()

    # ------------------------------------------------------------------------------------------ catalog list

    def show_catalog(self) -> None:
        catalog, variant = self.state.lora_catalog, self.state.variant
        selected = self.selected_path()
        self.list.clear()
        for info in catalog.matching(self.search.text()):
            reason = info.usable_with(variant)
            title = info.title if info.title and info.title != info.name else info.name
            item = QListWidgetItem(f"{title}\n{info.badge} · {info.name}")
            item.setData(Qt.ItemDataRole.UserRole, str(info.path))
            thumb = self.thumbnails.get(info.path)
            if thumb is not None and not thumb.isNull():
                item.setIcon(QIcon(QPixmap.fromImage(thumb)))
            tip = [str(info.path), f"Base model: {info.architecture or 'unknown'}"]
            if info.rank:
                tip.append(f"Rank {info.rank}")
            if info.trigger_words:
                tip.append("Trigger words: " + ", ".join(info.trigger_words))
            if reason:
                # greyed, with the reason; not addable (the engine would refuse it)
                item.setFlags(item.flags() & ~Qt.ItemFlag.ItemIsEnabled & ~Qt.ItemFlag.ItemIsSelectable)
                item.setForeground(QBrush(QColor("#7a7d85")))
                tip.insert(0, f"Cannot be used with the selected model: {reason}")
            item.setToolTip("\n".join(tip))
            self.list.addItem(item)
            if selected is not None and info.path == selected and not reason:
                self.list.setCurrentItem(item)
        # as tall as its entries, up to LIST_ROWS of them (the dock is shared with every other setting)
        row = self.list.sizeHintForRow(0) if self.list.count() else THUMB + 6
        shown = min(max(self.list.count(), 1), LIST_ROWS)
        self.list.setFixedHeight(shown * max(row, THUMB + 6) + 2 * self.list.frameWidth() + 2)
        if not catalog.scanned:
            self.status.setText("Looking for LoRA files…")
        elif not catalog.entries:
            self.status.setText("No LoRA files found. Use Folder… to add the folder that holds them.")
        else:
            usable = sum(1 for e in catalog.entries if e.usable_with(variant) is None)
            self.status.setText(f"{len(catalog.entries)} LoRAs found, {usable} usable with this model.")
        self._update_add()

    def selected_path(self) -> Path | None:
        item = self.list.currentItem()
        return Path(item.data(Qt.ItemDataRole.UserRole)) if item is not None else None

    def _update_add(self) -> None:
        path = self.selected_path()
        self.add_button.setEnabled(path is not None and all(s.path != path for s in self.state.loras))

    def add_selected(self) -> None:
        path = self.selected_path()
        if path is None or any(s.path == path for s in self.state.loras):
            return
        info = self.state.lora_catalog.by_path(path)
        if info is not None and info.usable_with(self.state.variant):
            return
        self.state.set_loras((*self.state.loras, LoraSpec(path, 1.0)))

    # ------------------------------------------------------------------------------------------ the set

    def show_rows(self) -> None:
        loras = self.state.loras
        if [r.spec.path for r in self.rows] == [s.path for s in loras]:
            for row, spec in zip(self.rows, loras, strict=True):
                if row.spec != spec:
                    row.show_spec(spec)
            return
        for row in self.rows:
            row.setParent(None)
            row.deleteLater()
        self.rows = []
        for index, spec in enumerate(loras):
            row = LoraRow(spec, self.state.lora_catalog.by_path(spec.path), self.content)
            row.changed.connect(lambda new, i=index: self._replace(i, new))
            row.removed.connect(lambda i=index: self._remove(i))
            row.triggers_requested.connect(lambda path=spec.path: self.insert_triggers(path))
            self.rows_box.addWidget(row)
            self.rows.append(row)
        count = len(loras)
        self.toggle.setText(f"LoRAs ({count})" if count else "LoRAs")
        self.toggle.updateGeometry()
        self._update_add()

    def _replace(self, index: int, spec: LoraSpec) -> None:
        loras = list(self.state.loras)
        if index < len(loras):
            loras[index] = spec
            self.state.set_loras(tuple(loras))

    def _remove(self, index: int) -> None:
        self.state.set_loras(tuple(s for i, s in enumerate(self.state.loras) if i != index))

    def insert_triggers(self, path: Path) -> None:
        info = self.state.lora_catalog.by_path(path)
        if info is not None and info.trigger_words:
            self._insert_text(", ".join(info.trigger_words))

    def commit_rows(self) -> None:
        for row in list(self.rows):
            row.commit()

    def set_thumbnails(self, thumbnails: dict[Path, QImage]) -> None:
        self.thumbnails = thumbnails
        self.show_catalog()

    def _on_state_changed(self, changed: frozenset[str]) -> None:
        if changed & {"lora_catalog", "variant"}:
            self.show_catalog()
            if "lora_catalog" in changed:
                self.rows_paths_changed()
        if "loras" in changed:
            self.show_rows()
        problem = self.state.addon_problems().get("loras", "")
        self.problem.setText(f"⚠ {problem}" if problem else "")
        self.problem.setVisible(bool(problem))

    def rows_paths_changed(self) -> None:
        """Titles and trigger words arrive with the scan: rebuild the rows."""
        for row in self.rows:
            row.setParent(None)
            row.deleteLater()
        self.rows = []
        self.show_rows()

    def detach(self) -> None:
        if self._on_state_changed in self.state.listeners:
            self.state.listeners.remove(self._on_state_changed)
        if self.commit_rows in self.state.edit_flushers:
            self.state.edit_flushers.remove(self.commit_rows)
