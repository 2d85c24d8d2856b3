"""CompareView: 2-16 images side by side with synchronised zoom and pan, labelled with only what differs.

Keys: ←/→ step through the tiles, 0-5 rate the current one, P (or Space) picks it, Enter opens it in the
canvas, F fits, Z shows actual pixels, Esc goes back; the wheel zooms about the cursor, a drag pans and a
double-click fits, in every view at once. With two images, "A/B wipe" and "Difference" replace the grid.
"Keep picks" narrows the set to the picked tiles; "Vary from this" reuses the current tile's seed.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

from PySide6.QtCore import QPointF, Qt, QTimer, Signal
from PySide6.QtGui import QImage, QKeyEvent, QPixmap, QResizeEvent, QShowEvent
from PySide6.QtWidgets import (
    QButtonGroup,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from app.gallery.db import ImageRecord
from app.gallery.labels import differing_fields, differing_labels
from app.ui.elided_label import ElidedLabel
from app.ui.gallery.compare_tile import CompareTile
from app.ui.gallery.compare_wipe import WipeView

log = logging.getLogger(__name__)

MAX_TILES = 16
FIELD_NAMES = {"cfg": "CFG", "slg": "skip-layer guidance", "t5": "T5", "negative": "negative prompt"}


class CompareView(QWidget):
    closed = Signal()
    rating_changed = Signal(int, int)  # image id, stars
    seed_requested = Signal(object)  # ImageRecord whose seed to reuse ("vary from this")
    image_opened = Signal(object)  # Path

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.records: list[ImageRecord] = []
        self.tiles: list[CompareTile] = []
        self.current = 0
        self.picked: set[int] = set()
        self._syncing = False
        self.back = QPushButton("← Gallery")
        self.title = ElidedLabel()
        self._fit_mode = True  # keep fitting on resize until the user zooms or pans
        self.grid_button = QPushButton("Grid", checkable=True, checked=True)
        self.wipe_button = QPushButton("A/B wipe", checkable=True)
        self.diff_button = QPushButton("Difference", checkable=True)
        for button in (self.grid_button, self.wipe_button, self.diff_button):
            button.setObjectName("modeButton")  # the active mode is drawn in the accent colour (dark.qss)
        self._modes = QButtonGroup(self)
        for n, button in enumerate((self.grid_button, self.wipe_button, self.diff_button)):
            self._modes.addButton(button, n)
        self.fit_button = QPushButton("Fit")
        self.actual_button = QPushButton("100%")
        self.keep_button = QPushButton("Keep picks")
        self.keep_button.setToolTip("Compare only the picked images (P picks the current one)")
        self.vary_button = QPushButton("Vary from this")
        self.vary_button.setToolTip("Use the current image's settings and seed for the next generation")
        self.open_button = QPushButton("Open")
        # Rows of controls, so the view fits a side dock (~360 px) as well as a wide window.
        bar = QVBoxLayout()
        top, modes, actions = QHBoxLayout(), QHBoxLayout(), QHBoxLayout()
        top.addWidget(self.back)
        top.addWidget(self.title, 1)
        for widget in (
            self.grid_button,
            self.wipe_button,
            self.diff_button,
            self.fit_button,
            self.actual_button,
        ):
            modes.addWidget(widget)
        modes.addStretch(1)
        actions.addStretch(1)
        for widget in (self.keep_button, self.vary_button, self.open_button):
            actions.addWidget(widget)
        for row in (top, modes, actions):
            bar.addLayout(row)
        self.hint = QLabel(
            "←/→ step · 0–5 rate · P pick · Enter open · wheel zoom · drag pan · F fit · Z actual size · Esc back"
        )
        self.hint.setObjectName("hintLabel")  # muted but readable (dark.qss)
        self.hint.setWordWrap(True)
        self._grid_host = QWidget()
        self._grid = QGridLayout(self._grid_host)
        self._grid.setSpacing(4)
        self._grid.setContentsMargins(0, 0, 0, 0)
        self._pages = QStackedWidget()
        self._pages.addWidget(self._grid_host)
        self.wipe: WipeView | None = None
        layout = QVBoxLayout(self)
        layout.addLayout(bar)
        layout.addWidget(self._pages, 1)
        layout.addWidget(self.hint)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.back.clicked.connect(self.closed)
        self._modes.idClicked.connect(self._on_modes_id_clicked)
        self.fit_button.clicked.connect(self.fit)
        self.actual_button.clicked.connect(lambda: self.set_zoom(1.0))
        self.keep_button.clicked.connect(self.keep_picks)
        self.vary_button.clicked.connect(self._on_vary_button_clicked)
        self.open_button.clicked.connect(self._on_open_button_clicked)

    # -- contents ------------------------------------------------------------------------------------------

    def set_records(self, records: Sequence[ImageRecord]) -> None:
        records = list(records)[:MAX_TILES]
        for tile in self.tiles:
            self._grid.removeWidget(tile)
            tile.deleteLater()
        self.records, self.tiles, self.current, self.picked = records, [], 0, set()
        labels = differing_labels([r.params for r in records])
        columns = max(1, math.ceil(math.sqrt(len(records))))
        for n, (record, label) in enumerate(zip(records, labels, strict=True)):
            tile = CompareTile(QPixmap(str(record.path)), label)
            tile.rating = record.rating
            tile.view_changed.connect(
                lambda zoom, centre, source=tile: self._on_tile_view_changed(source, zoom, centre)
            )
            tile.clicked.connect(lambda n=n: self.set_current(n))
            tile.fit_requested.connect(self.fit)
            self._grid.addWidget(tile, n // columns, n % columns)
            self.tiles.append(tile)
        differs = [FIELD_NAMES.get(f, f) for f in differing_fields([r.params for r in records])]
        self.title.setText(
            f"{len(records)} images · differ in {', '.join(differs)}"
            if differs
            else f"{len(records)} images · same settings"
        )
        two = len(records) == 2
        self.wipe_button.setEnabled(two)
        self.diff_button.setEnabled(two)
        self.grid_button.setChecked(True)
        self._set_wipe(None)
        if self.wipe is not None:  # it showed the previous pair
            self._pages.removeWidget(self.wipe)
            self.wipe.deleteLater()
            self.wipe = None
        self.set_current(0)
        self.fit()
        QTimer.singleShot(0, self.fit)

    def _set_wipe(self, mode: str | None) -> None:
        if mode is None:
            self._pages.setCurrentWidget(self._grid_host)
            return
        if self.wipe is None:
            labels = [t.label for t in self.tiles]
            self.wipe = WipeView(
                QImage(str(self.records[0].path)), QImage(str(self.records[1].path)), *labels
            )
            self.wipe.view_changed.connect(
                lambda zoom, centre, source=self.wipe: self._on_tile_view_changed(source, zoom, centre)
            )
            self.wipe.fit_requested.connect(self.fit)
            self._pages.addWidget(self.wipe)
            if not self._fit_mode and self.tiles:  # take over the grid's zoom and pan
                tile = self.tiles[self.current]
                self.wipe.resize(self._pages.size())
                self.wipe.apply_view(tile.zoom(), tile.centre())
        self.wipe.set_mode(mode)
        self._pages.setCurrentWidget(self.wipe)

    def _on_modes_id_clicked(self, mode: int) -> None:
        self._set_wipe({0: None, 1: "wipe", 2: "difference"}[mode])

    # -- zoom and pan --------------------------------------------------------------------------------------

    def _views(self) -> list[CompareTile | WipeView]:
        """Every view of the set: the grid tiles and, with two images, the wipe/difference view."""
        return [*self.tiles, *([self.wipe] if self.wipe is not None else [])]

    def _on_tile_view_changed(self, source: CompareTile | WipeView, zoom: float, centre: QPointF) -> None:
        if self._syncing:
            return
        self._fit_mode = False
        self._syncing = True
        try:
            for view in self._views():
                if view is not source:
                    view.apply_view(zoom, centre)
        finally:
            self._syncing = False

    def fit(self) -> None:
        """Each page fits its own space: the tiles share the zoom that fits them all, the wipe fills its view."""
        if self.tiles:
            zoom = min(t.fit_zoom() for t in self.tiles)
            for tile in self.tiles:
                tile.apply_view(zoom, QPointF(0.5, 0.5))
        if self.wipe is not None:
            self.wipe.fit()
        self._fit_mode = True

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        if self._fit_mode:
            QTimer.singleShot(0, self.fit)  # after the grid has given the tiles their sizes

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        if self._fit_mode:
            QTimer.singleShot(0, self.fit)

    def set_zoom(self, zoom: float) -> None:
        """Zoom the page on show (its change reaches the other views through `view_changed`)."""
        if self.wipe is not None and self._pages.currentWidget() is self.wipe:
            self.wipe.set_zoom(zoom)
        elif self.tiles:
            self.tiles[self.current].set_zoom(zoom)

    # -- stepping, rating, picking -------------------------------------------------------------------------

    def set_current(self, n: int) -> None:
        if not self.tiles:
            return
        self.current = n % len(self.tiles)
        for i, tile in enumerate(self.tiles):
            tile.current = i == self.current
            tile.viewport().update()

    def rate_current(self, stars: int) -> None:
        if self.tiles:
            tile, record = self.tiles[self.current], self.records[self.current]
            tile.rating = stars
            tile.viewport().update()
            self.rating_changed.emit(record.id, stars)

    def toggle_pick(self) -> None:
        if self.tiles:
            self.picked ^= {self.current}
            self.tiles[self.current].picked = self.current in self.picked
            self.tiles[self.current].viewport().update()

    def keep_picks(self) -> None:
        if len(self.picked) >= 1:
            self.set_records([r for n, r in enumerate(self.records) if n in self.picked])

    def _on_vary_button_clicked(self) -> None:
        if self.records:
            self.seed_requested.emit(self.records[self.current])

    def _on_open_button_clicked(self) -> None:
        if self.records:
            self.image_opened.emit(self.records[self.current].path)

    def keyPressEvent(self, event: QKeyEvent) -> None:
        key = event.key()
        if key in (Qt.Key.Key_Right, Qt.Key.Key_Down, Qt.Key.Key_Tab):
            self.set_current(self.current + 1)
        elif key in (Qt.Key.Key_Left, Qt.Key.Key_Up, Qt.Key.Key_Backtab):
            self.set_current(self.current - 1)
        elif (
            Qt.Key.Key_0 <= key <= Qt.Key.Key_5
            and not event.modifiers() & Qt.KeyboardModifier.ControlModifier
        ):
            self.rate_current(key - Qt.Key.Key_0)
        elif key in (Qt.Key.Key_P, Qt.Key.Key_Space):
            self.toggle_pick()
        elif key in (Qt.Key.Key_Return, Qt.Key.Key_Enter):
            self._on_open_button_clicked()
        elif key == Qt.Key.Key_F:
            self.fit()
        elif key == Qt.Key.Key_Z:
            self.set_zoom(1.0)
        elif key == Qt.Key.Key_Escape:
            self.closed.emit()
        else:
            super().keyPressEvent(event)
