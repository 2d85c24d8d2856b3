"""The model picker's contents and selection: found sets first, then the variants this computer lacks, and last
"Download models…", an action rather than a model: choosing it asks for the download dialog and leaves the
selection as it was."""

from __future__ import annotations

import logging
from pathlib import Path

from PySide6.QtCore import QEvent, QObject, Qt, Signal
from PySide6.QtGui import QKeyEvent, QWheelEvent
from PySide6.QtWidgets import QComboBox

from app.inference.api.variants import PRESETS
from app.ui.form.model_library import ModelSetInfo, guess_variant, missing_variants

log = logging.getLogger(__name__)

MISSING_PREFIX = "missing:"
DOWNLOAD_DATA = "action:download"
DOWNLOAD_LABEL = "Download models…"
DOWNLOAD_TIP = "Download an SD3.5 model set from Hugging Face"


class ModelPickerController(QObject):
    """Fills the combo box and reports the chosen set (None: a variant that is not available)."""

    selection_changed = Signal(object, str)  # ModelSetInfo | None, hint for the user ("" when all is well)
    download_requested = Signal(str)  # the variant to offer first ("" for no preference)

    def __init__(self, combo: QComboBox, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.combo = combo
        self.sets: list[ModelSetInfo] = []
        self.remote: list[ModelSetInfo] = []  # model sets on ComfyUI servers, listed after this machine's
        self.selected: ModelSetInfo | None = None
        self.discovered = False
        self._shown_index = -1  # the entry on show: where the combo returns after "Download models…"
        combo.currentIndexChanged.connect(self._on_combo_current_index_changed)
        combo.installEventFilter(self)

    def show_pending(self, path: Path) -> ModelSetInfo:
        """Before discovery has read the headers: the path the user gave, with a variant guessed from its name."""
        info = ModelSetInfo(path, guess_variant(path), path.name)
        self.sets = [info]
        self.combo.blockSignals(True)
        self.combo.clear()
        self.combo.addItem(f"{path.name} — checking…", str(path))
        self._add_download_entry()
        self.combo.setCurrentIndex(0)
        self.combo.blockSignals(False)
        self._shown_index = 0
        self.selected = info
        return info

    def set_sets(self, sets: list[ModelSetInfo], prefer: Path | str | None, *, insist: bool = True) -> None:
        """Fill the picker and select `prefer`; with `insist=False` an unusable `prefer` (a remembered set that
        has since been deleted) gives way to the first usable set."""
        self.sets = [s for s in sets if not s.is_remote] + self.remote
        self.discovered = True
        self.combo.blockSignals(True)
        self.combo.clear()
        for info in self.sets:
            self.combo.addItem(info.label, info.key)
            tip = info.problem() or (f"{info.path.as_posix()} on {', '.join(info.engine)}" if info.is_remote
                                     else str(info.path))  # fmt: skip
            self.combo.setItemData(self.combo.count() - 1, tip, Qt.ItemDataRole.ToolTipRole)
        for variant in missing_variants(self.sets):
            self.combo.addItem(f"{PRESETS[variant].label} — not found (Locate…)", MISSING_PREFIX + variant)
        self._add_download_entry()
        self.combo.blockSignals(False)
        index = self._index_for(prefer) if not isinstance(prefer, str) else self._index_for_key(prefer)
        if index >= 0 and not insist and not self.sets[index].usable:
            index = -1
        if index < 0:
            index = next((i for i, info in enumerate(self.sets) if info.usable), 0)
        self.combo.setCurrentIndex(index)
        self._on_combo_current_index_changed(index)

    def add_or_select(self, info: ModelSetInfo) -> None:
        others = [s for s in self.sets if not _same(s.path, info.path)]
        self.set_sets([info, *others], info.path)

    def set_remote(self, remote: list[ModelSetInfo], prefer_key: str | None = None) -> None:
        """The servers' model sets changed: re-list them, keeping the selection (or choosing `prefer_key`)."""
        self.remote = [s for s in remote if s.is_remote]
        if not self.discovered:  # this machine's sets are still being read: they list both when done
            return
        keep = prefer_key or (self.selected.key if self.selected is not None else None)
        local = [s for s in self.sets if not s.is_remote]
        self.set_sets(local, keep, insist=False)  # type: ignore[arg-type]

    def _index_for_key(self, key: str) -> int:
        return next((i for i, info in enumerate(self.sets) if info.key == key), -1)

    def has_usable(self) -> bool:
        return any(info.usable for info in self.sets)

    def _index_for(self, path: Path | None) -> int:
        if path is None:
            return -1
        for i, info in enumerate(self.sets):
            if not info.is_remote and _same(info.path, path):
                return i
        return -1

    def _add_download_entry(self) -> None:
        self.combo.insertSeparator(self.combo.count())
        self.combo.addItem(DOWNLOAD_LABEL, DOWNLOAD_DATA)
        self.combo.setItemData(self.combo.count() - 1, DOWNLOAD_TIP, Qt.ItemDataRole.ToolTipRole)

    def _last_model_index(self) -> int:
        """The entry just above the separator, or -1 when the picker has no "Download models…" entry."""
        download = self.combo.findData(DOWNLOAD_DATA)
        return download - 2 if download >= 0 else -1

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if watched is self.combo and self._steps_onto_download(event):
            self.combo.setCurrentIndex(self._last_model_index())  # End, Page Down: as far as the last model
            return True
        return super().eventFilter(watched, event)

    def _steps_onto_download(self, event: QEvent) -> bool:
        """Whether the wheel or a key would move the closed picker onto "Download models…": it opens a dialog, so
        it is chosen from the open list only, never reached by scrolling past the picker."""
        last = self._last_model_index()
        if last < 0:
            return False
        at_last = self.combo.currentIndex() >= last
        if isinstance(event, QWheelEvent):
            return at_last and event.angleDelta().y() < 0
        if isinstance(event, QKeyEvent) and event.type() == QEvent.Type.KeyPress:
            if event.modifiers() & Qt.KeyboardModifier.AltModifier:  # Alt+Down opens the list
                return False
            return event.key() in (Qt.Key.Key_PageDown, Qt.Key.Key_End) or (
                at_last and event.key() == Qt.Key.Key_Down
            )
        return False

    def _on_combo_current_index_changed(self, index: int) -> None:
        data = self.combo.itemData(index) if index >= 0 else None
        if data == DOWNLOAD_DATA:
            shown = self._shown_index if self._shown_index < self.combo.count() else -1
            self.combo.blockSignals(True)
            self.combo.setCurrentIndex(shown)  # an action, not a model: the selection stays as it was
            self.combo.blockSignals(False)
            current = self.combo.itemData(shown) if shown >= 0 else None
            missing = str(current).startswith(MISSING_PREFIX)
            self.download_requested.emit(str(current)[len(MISSING_PREFIX) :] if missing else "")
            return
        self._shown_index = index
        if data is None:
            self.selected = None
            self.selection_changed.emit(None, "No model set found yet.")
            return
        if str(data).startswith(MISSING_PREFIX):
            variant = str(data)[len(MISSING_PREFIX) :]
            self.selected = None
            self.selection_changed.emit(
                None,
                f"{PRESETS[variant].label} is not on this computer: choose “{DOWNLOAD_LABEL}” at the end of "
                "this list, or Locate… its folder.",
            )
            return
        info = next((s for s in self.sets if s.key == data), None)
        self.selected = info if info is not None and (info.usable or not self.discovered) else None
        hint = "" if info is None else info.problem()
        self.selection_changed.emit(self.selected, hint)


def _same(a: Path, b: Path) -> bool:
    try:
        return a.expanduser().resolve() == b.expanduser().resolve()
    except OSError:
        return a == b
