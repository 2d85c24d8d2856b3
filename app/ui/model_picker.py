"""The model picker's contents and selection: found sets first, then the variants this computer lacks."""

from __future__ import annotations

import logging
from pathlib import Path

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtWidgets import QComboBox

from app.inference.variants import PRESETS
from app.ui.model_library import ModelSetInfo, guess_variant, missing_variants

log = logging.getLogger(__name__)

MISSING_PREFIX = "missing:"


class ModelPickerController(QObject):
    """Fills the combo box and reports the chosen set (None: a variant that is not available)."""

    selection_changed = Signal(object, str)  # ModelSetInfo | None, hint for the user ("" when all is well)

    def __init__(self, combo: QComboBox, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.combo = combo
        self.sets: list[ModelSetInfo] = []
        self.selected: ModelSetInfo | None = None
        self.discovered = False
        combo.currentIndexChanged.connect(self._on_combo_current_index_changed)

    def show_pending(self, path: Path) -> ModelSetInfo:
        """Before discovery has read the headers: the path the user gave, with a variant guessed from its name."""
        info = ModelSetInfo(path, guess_variant(path), path.name)
        self.sets = [info]
        self.combo.blockSignals(True)
        self.combo.clear()
        self.combo.addItem(f"{path.name} — checking…", str(path))
        self.combo.blockSignals(False)
        self.selected = info
        return info

    def set_sets(self, sets: list[ModelSetInfo], prefer: Path | None, *, insist: bool = True) -> None:
        """Fill the picker and select `prefer`; with `insist=False` an unusable `prefer` (a remembered set that
        has since been deleted) gives way to the first usable set."""
        self.sets = list(sets)
        self.discovered = True
        self.combo.blockSignals(True)
        self.combo.clear()
        for info in self.sets:
            self.combo.addItem(info.label, str(info.path))
            self.combo.setItemData(
                self.combo.count() - 1, info.problem() or str(info.path), Qt.ItemDataRole.ToolTipRole
            )
        for variant in missing_variants(self.sets):
            self.combo.addItem(f"{PRESETS[variant].label} — not found (Locate…)", MISSING_PREFIX + variant)
        self.combo.blockSignals(False)
        index = self._index_for(prefer)
        if index >= 0 and not insist and not self.sets[index].usable:
            index = -1
        if index < 0:
            index = next((i for i, info in enumerate(self.sets) if info.usable), 0)
        self.combo.setCurrentIndex(index)
        self._on_combo_current_index_changed(index)

    def add_or_select(self, info: ModelSetInfo) -> None:
        others = [s for s in self.sets if not _same(s.path, info.path)]
        self.set_sets([info, *others], info.path)

    def has_usable(self) -> bool:
        return any(info.usable for info in self.sets)

    def _index_for(self, path: Path | None) -> int:
        if path is None:
            return -1
        for i, info in enumerate(self.sets):
            if _same(info.path, path):
                return i
        return -1

    def _on_combo_current_index_changed(self, index: int) -> None:
        data = self.combo.itemData(index) if index >= 0 else None
        if data is None:
            self.selected = None
            self.selection_changed.emit(None, "No model set found yet.")
            return
        if str(data).startswith(MISSING_PREFIX):
            variant = str(data)[len(MISSING_PREFIX) :]
            self.selected = None
            self.selection_changed.emit(
                None,
                f"{PRESETS[variant].label} is not on this computer. Use Locate… to point to its folder, "
                "or see Help ▸ Getting Models.",
            )
            return
        info = next((s for s in self.sets if str(s.path) == data), None)
        self.selected = info if info is not None and (info.usable or not self.discovered) else None
        hint = "" if info is None else info.problem()
        self.selection_changed.emit(self.selected, hint)


def _same(a: Path, b: Path) -> bool:
    try:
        return a.expanduser().resolve() == b.expanduser().resolve()
    except OSError:
        return a == b
