"""GalleryListModel: the gallery's rows (group headers and images), loaded lazily for 10,000+ images.

Up front the model holds only (id, time, job) per image, one fast query. Records (prompt, parameters, rating)
are fetched from the database a page at a time when a row is first painted; thumbnails are requested from a
ThumbnailLoader when a row is painted and cached as QPixmaps (least recently used first out).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from pathlib import Path

from PySide6.QtCore import (
    QAbstractListModel,
    QMimeData,
    QModelIndex,
    QObject,
    QPersistentModelIndex,
    Qt,
    QUrl,
)
from PySide6.QtGui import QImage, QPixmap

from app.gallery.db import GalleryDB, ImageRecord, RowKey
from app.gallery.filters import GalleryFilter
from app.gallery.labels import summary
from app.ui.gallery.tasks import ThumbnailLoader

log = logging.getLogger(__name__)

RECORD_ROLE = Qt.ItemDataRole.UserRole + 1
HEADER_ROLE = Qt.ItemDataRole.UserRole + 2  # str for a header row, None for an image
MISSING_ROLE = Qt.ItemDataRole.UserRole + 3
ID_ROLE = Qt.ItemDataRole.UserRole + 4

_PAGE = 120
_RECORD_CACHE = 3000
_PIXMAP_CACHE = 400


class Grouping(Enum):
    JOB = "job"
    DAY = "day"
    NONE = "none"


@dataclass(frozen=True, slots=True)
class _Row:
    image_id: int | None  # None for a header
    first_id: int | None = None  # header: the first image under it
    count: int = 0  # header: how many images follow it
    created: float = 0.0  # header: time of its first image
    group: object = None  # header: what its images share (a job and day, or a day)


def group_of(key: RowKey, grouping: Grouping) -> object:
    day = datetime.fromtimestamp(key.created).date()
    return day if grouping is Grouping.DAY else (key.job_id or f"single-{key.id}", day)


def group_rows(keys: Sequence[RowKey], grouping: Grouping) -> list[_Row]:
    """Images in their sorted order, with a header row wherever the job (or the day) changes."""
    rows: list[_Row] = []
    previous: object = object()
    headers: list[int] = []
    for key in keys:
        if grouping is not Grouping.NONE:
            group = group_of(key, grouping)
            if group != previous:
                headers.append(len(rows))
                rows.append(_Row(None, key.id, 0, key.created, group))
                previous = group
        rows.append(_Row(key.id))
    for n, at in enumerate(headers):
        end = headers[n + 1] if n + 1 < len(headers) else len(rows)
        h = rows[at]
        rows[at] = _Row(None, h.first_id, end - at - 1, h.created, h.group)
    return rows


class GalleryListModel(QAbstractListModel):
    def __init__(self, db: GalleryDB, thumbnails: ThumbnailLoader, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.db = db
        self._thumbs = thumbnails
        self._rows: list[_Row] = []
        self._row_of: dict[int, int] = {}
        self._records: OrderedDict[int, ImageRecord] = OrderedDict()
        self._pixmaps: OrderedDict[int, QPixmap] = OrderedDict()
        self._missing: set[int] = set()
        self.filter = GalleryFilter()
        self.grouping = Grouping.JOB
        thumbnails.loaded.connect(self._on_thumbnails_loaded)
        thumbnails.missing.connect(self._on_thumbnails_missing)

    # -- contents ------------------------------------------------------------------------------------------

    def reload(self, spec: GalleryFilter | None = None, grouping: Grouping | None = None) -> None:
        self.filter = spec or self.filter
        self.grouping = grouping or self.grouping
        keys = self.db.row_keys(self.filter)
        self.beginResetModel()
        self._rows = group_rows(keys, self.grouping)
        self._reindex()
        self._records.clear()
        self.endResetModel()

    def add_record(self, record: ImageRecord) -> None:
        """Show a newly saved image without resetting the view (newest-first lists; others reload)."""
        if record.id in self._row_of or not self.db.matches(record.id, self.filter):
            return
        if not self.filter.newest_first:
            self.reload()
            return
        self._records[record.id] = record
        key = RowKey(record.id, record.created, record.job_id)
        top = self._rows[0] if self._rows else None
        if self.grouping is Grouping.NONE:
            self._insert(0, [_Row(record.id)])
        elif top is not None and top.image_id is None and top.group == group_of(key, self.grouping):
            self._insert(1, [_Row(record.id)])
            self._rows[0] = _Row(None, record.id, top.count + 1, record.created, top.group)
            self.dataChanged.emit(self.index(0), self.index(0))
        else:
            header = _Row(None, record.id, 1, record.created, group_of(key, self.grouping))
            self._insert(0, [header, _Row(record.id)])

    def _insert(self, at: int, rows: list[_Row]) -> None:
        self.beginInsertRows(QModelIndex(), at, at + len(rows) - 1)
        self._rows[at:at] = rows
        self._reindex()
        self.endInsertRows()

    def remove_ids(self, ids: Sequence[int]) -> None:
        """Take images out of the list (deleted, or removed as missing), dropping headers left empty."""
        doomed = {self._row_of[i] for i in ids if i in self._row_of}
        counts: dict[int, int] = {}
        header = None
        for n, row in enumerate(self._rows):
            if row.image_id is None:
                header = n
                counts[n] = 0
            elif header is not None and n not in doomed:
                counts[header] += 1
        doomed |= {n for n, c in counts.items() if c == 0}
        for n in sorted(doomed, reverse=True):
            self.beginRemoveRows(QModelIndex(), n, n)
            del self._rows[n]
            self.endRemoveRows()
        self._reindex()
        for n, row in enumerate(self._rows):
            if row.image_id is None:
                following = 0
                for r in self._rows[n + 1 :]:
                    if r.image_id is None:
                        break
                    following += 1
                if following != row.count:
                    first = self._rows[n + 1].image_id
                    self._rows[n] = _Row(None, first, following, row.created, row.group)
                    self.dataChanged.emit(self.index(n), self.index(n))
        for image_id in ids:
            self._records.pop(image_id, None)
            self._missing.discard(image_id)

    def _reindex(self) -> None:
        self._row_of = {r.image_id: i for i, r in enumerate(self._rows) if r.image_id is not None}

    @property
    def image_count(self) -> int:
        return len(self._row_of)

    def rowCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self._rows)

    def image_id(self, row: int) -> int | None:
        return self._rows[row].image_id if 0 <= row < len(self._rows) else None

    def row_of(self, image_id: int) -> int | None:
        return self._row_of.get(image_id)

    def record(self, row: int) -> ImageRecord | None:
        image_id = self.image_id(row)
        if image_id is None:
            return None
        if image_id not in self._records:
            self._fetch_page(row)
        record = self._records.get(image_id)
        if record is not None:
            self._records.move_to_end(image_id)
        return record

    def _fetch_page(self, row: int) -> None:
        start = max(0, row - _PAGE // 4)
        ids = [r.image_id for r in self._rows[start : start + _PAGE] if r.image_id is not None]
        ids = [i for i in ids if i not in self._records]
        for record in self.db.get(ids):
            self._records[record.id] = record
        while len(self._records) > _RECORD_CACHE:
            self._records.popitem(last=False)

    def refresh_records(self, ids: Sequence[int]) -> None:
        """Re-read some records (after a rating change) and repaint their rows."""
        for record in self.db.get(list(ids)):
            self._records[record.id] = record
            row = self._row_of.get(record.id)
            if row is not None:
                index = self.index(row)
                self.dataChanged.emit(index, index)

    # -- Qt item model -------------------------------------------------------------------------------------

    def flags(self, index: QModelIndex | QPersistentModelIndex) -> Qt.ItemFlag:
        if not index.isValid() or self._rows[index.row()].image_id is None:
            return Qt.ItemFlag.NoItemFlags
        return Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable | Qt.ItemFlag.ItemIsDragEnabled

    def data(
        self, index: QModelIndex | QPersistentModelIndex, role: int = Qt.ItemDataRole.DisplayRole
    ) -> object:
        if not index.isValid():
            return None
        row = self._rows[index.row()]
        if row.image_id is None:
            return self._header_text(row) if role in (HEADER_ROLE, Qt.ItemDataRole.DisplayRole) else None
        if role == HEADER_ROLE:
            return None
        if role == ID_ROLE:
            return row.image_id
        if role == MISSING_ROLE:
            return row.image_id in self._missing
        if role == Qt.ItemDataRole.DecorationRole:
            return self._pixmap(row.image_id, index.row())
        record = self.record(index.row())
        if record is None:
            return None
        if role == RECORD_ROLE:
            return record
        if role == Qt.ItemDataRole.DisplayRole:
            return f"seed {record.params.seed}" if record.params.seed is not None else record.path.stem
        if role == Qt.ItemDataRole.ToolTipRole:
            missing = "\n⚠ The file is missing." if row.image_id in self._missing else ""
            return (
                f"{record.params.prompt}\n{summary(record.params)}\n{record.path}{made_from(record)}{missing}"
            )
        return None

    def tile(self, row: int) -> tuple[str | None, QPixmap | None, ImageRecord | None, bool]:
        """(header text, thumbnail, record, missing) of a row, for the delegate.

        The delegate calls this instead of `QModelIndex.data()`: no QVariant round trip per painted row, and
        PySide6 6.12 on Python 3.11 drops a reference to None whenever an empty QVariant comes back."""
        r = self._rows[row]
        if r.image_id is None:
            return self._header_text(r), None, None, False
        return None, self._pixmap(r.image_id, row), self.record(row), r.image_id in self._missing

    def is_header(self, row: int) -> bool:
        return 0 <= row < len(self._rows) and self._rows[row].image_id is None

    def _header_text(self, row: _Row) -> str:
        moment = datetime.fromtimestamp(row.created)
        images = f"{row.count} image{'s' if row.count != 1 else ''}"
        if self.grouping is Grouping.DAY:
            return f"{moment.strftime('%A %d %B %Y')}  ·  {images}"
        first = self._row_of.get(row.first_id) if row.first_id is not None else None
        record = self.record(first) if first is not None else None
        prompt = " ".join(record.params.prompt.split()) if record is not None else ""
        prompt = prompt if len(prompt) <= 70 else prompt[:69] + "…"
        return f"{prompt or 'Untitled'}  ·  {images}  ·  {moment.strftime('%d %b %Y, %H:%M')}"

    def _pixmap(self, image_id: int, row: int) -> QPixmap | None:
        pixmap = self._pixmaps.get(image_id)
        if pixmap is not None:
            self._pixmaps.move_to_end(image_id)
            return pixmap
        if image_id not in self._missing:
            record = self.record(row)
            if record is not None:
                self._thumbs.request(image_id, record.path)
        return None

    def _on_thumbnails_loaded(self, image_id: int, image: QImage) -> None:
        self._pixmaps[image_id] = QPixmap.fromImage(image)
        while len(self._pixmaps) > _PIXMAP_CACHE:
            self._pixmaps.popitem(last=False)
        self._changed(image_id)

    def _on_thumbnails_missing(self, image_id: int) -> None:
        self._missing.add(image_id)
        self._changed(image_id)

    def _changed(self, image_id: int) -> None:
        row = self._row_of.get(image_id)
        if row is not None:
            index = self.index(row)
            self.dataChanged.emit(index, index)

    def mark_missing(self, ids: Sequence[int]) -> None:
        for image_id in ids:
            self._on_thumbnails_missing(image_id)

    @property
    def missing_ids(self) -> set[int]:
        return set(self._missing)

    # -- drag out ------------------------------------------------------------------------------------------

    def mimeTypes(self) -> list[str]:
        return ["text/uri-list"]

    def mimeData(self, indexes: Sequence[QModelIndex]) -> QMimeData:
        mime = QMimeData()
        paths = [r.path for r in (self.record(i.row()) for i in indexes) if r is not None and r.path.exists()]
        mime.setUrls([QUrl.fromLocalFile(str(Path(p))) for p in paths])
        return mime

    def supportedDragActions(self) -> Qt.DropAction:
        return Qt.DropAction.CopyAction


def made_from(record: ImageRecord) -> str:
    """ "Made from …" for a refined image: its input's file and the SHA-256 its metadata recorded."""
    source = record.params.request.init_image
    if source is None:
        return ""
    digest = record.params.source_sha256
    return f"\nMade from {source}" + (f" (SHA-256 {digest[:12]}…)" if digest else "")
