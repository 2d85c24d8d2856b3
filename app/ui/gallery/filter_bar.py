"""The gallery's filter bar: search, rating, model, LoRA, grouping, sort order and named filters."""

from __future__ import annotations

import logging

from PySide6.QtCore import QTimer, Signal
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLineEdit, QToolButton, QVBoxLayout, QWidget

from app.gallery.filters import GalleryFilter
from app.ui.gallery.list_model import Grouping

log = logging.getLogger(__name__)

RATINGS = ("Any rating", "★ or more", "★★ or more", "★★★ or more", "★★★★ or more", "★★★★★ only")
VARIANTS = (("All models", ""), ("Large", "large"), ("Large Turbo", "large-turbo"), ("Medium", "medium"))
GROUPINGS = (("Group by job", Grouping.JOB), ("Group by day", Grouping.DAY), ("No groups", Grouping.NONE))
_SAVED_PLACEHOLDER = "Saved filters"
ANY_LORA = "Any LoRA"


class GalleryFilterBar(QWidget):
    filter_changed = Signal(object)  # GalleryFilter
    grouping_changed = Signal(object)  # Grouping
    save_requested = Signal()  # the panel asks for a name and stores the current filter

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.search = QLineEdit(placeholderText="Search prompts…", clearButtonEnabled=True)
        self.search.setMinimumWidth(120)
        self.rating = QComboBox()
        self.rating.addItems(RATINGS)
        self.variant = QComboBox()
        for label, value in VARIANTS:
            self.variant.addItem(label, value)
        self.lora = QComboBox()  # filled by set_lora_names; hidden while no image used a LoRA
        self.lora.setToolTip("Show only the images made with this LoRA")
        self.lora.addItem(ANY_LORA, "")
        self.lora.setVisible(False)
        self.grouping = QComboBox()
        for label, value in GROUPINGS:
            self.grouping.addItem(label, value)
        self.order = QComboBox()
        self.order.addItems(["Newest first", "Oldest first"])
        self.saved = QComboBox()
        self.saved.setToolTip("Apply a saved filter")
        self.save_button = QToolButton(text="Save filter…")
        self.save_button.setToolTip("Save the current search and filters under a name")
        # Two rows, so the gallery fits a side dock of ~320 px next to the canvas.
        top = QHBoxLayout()
        top.addWidget(self.search, 1)
        top.addWidget(self.saved)
        top.addWidget(self.save_button)
        bottom = QHBoxLayout()
        for combo in (self.rating, self.variant, self.lora, self.grouping, self.order):
            combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
            combo.setMinimumContentsLength(6)
            bottom.addWidget(combo, 1)
        self.saved.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.saved.setMinimumContentsLength(6)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(4)
        layout.addLayout(top)
        layout.addLayout(bottom)
        self._debounce = QTimer(self, singleShot=True, interval=250)
        self._debounce.timeout.connect(self._on_debounce_timeout)
        self._saved_filters: dict[str, GalleryFilter] = {}
        self._applying = False
        self.search.textChanged.connect(self._debounce.start)
        for combo in (self.rating, self.variant, self.lora, self.order):
            combo.currentIndexChanged.connect(self._on_combo_changed)
        self.grouping.currentIndexChanged.connect(self._on_grouping_changed)
        self.saved.activated.connect(self._on_saved_activated)
        self.save_button.clicked.connect(self.save_requested)
        self.set_saved_filters({})

    def current(self) -> GalleryFilter:
        return GalleryFilter(
            text=self.search.text().strip(),
            min_rating=self.rating.currentIndex(),
            variant=self.variant.currentData()
            or None,  # "" (not None) as item data: see GalleryListModel.tile
            newest_first=self.order.currentIndex() == 0,
            lora=self.lora.currentData() or None,
        )

    def apply(self, spec: GalleryFilter) -> None:
        """Show `spec` in the controls and emit it once."""
        self._applying = True
        try:
            self.search.setText(spec.text)
            self.rating.setCurrentIndex(spec.min_rating)
            self.variant.setCurrentIndex(max(0, self.variant.findData(spec.variant or "")))
            self.order.setCurrentIndex(0 if spec.newest_first else 1)
            self._select_lora(spec.lora)
        finally:
            self._applying = False
        self._debounce.stop()
        self.filter_changed.emit(self.current())

    def set_lora_names(self, names: list[str]) -> None:
        """Offer these LoRAs (the ones the gallery's images used); the current choice stays selected."""
        chosen = self.lora.currentData() or ""
        self.lora.blockSignals(True)
        self.lora.clear()
        self.lora.addItem(ANY_LORA, "")
        for name in names:
            self.lora.addItem(name, name)
        self.lora.blockSignals(False)
        self._select_lora(chosen)
        self.lora.setVisible(self.lora.count() > 1)

    def _select_lora(self, name: str | None) -> None:
        """Select `name`, adding it when it is not offered (a saved filter's LoRA whose images are gone)."""
        if name and self.lora.findData(name) < 0:
            self.lora.addItem(name, name)
            self.lora.setVisible(True)
        self.lora.blockSignals(True)
        self.lora.setCurrentIndex(max(0, self.lora.findData(name or "")))
        self.lora.blockSignals(False)

    def set_saved_filters(self, filters: dict[str, GalleryFilter]) -> None:
        self._saved_filters = dict(filters)
        self.saved.blockSignals(True)
        self.saved.clear()
        self.saved.addItem(_SAVED_PLACEHOLDER)
        for name in filters:
            self.saved.addItem(name)
        self.saved.setEnabled(bool(filters))
        self.saved.blockSignals(False)

    def _on_debounce_timeout(self) -> None:
        if not self._applying:
            self.filter_changed.emit(self.current())

    def _on_combo_changed(self, _index: int) -> None:
        if not self._applying:
            self.filter_changed.emit(self.current())

    def _on_grouping_changed(self, _index: int) -> None:
        self.grouping_changed.emit(self.grouping.currentData())

    def _on_saved_activated(self, index: int) -> None:
        name = self.saved.itemText(index)
        if name in self._saved_filters:
            self.apply(self._saved_filters[name])
        self.saved.setCurrentIndex(0)
