"""The gallery database: one SQLite file (WAL) in the app's data folder, one row per image.

Thread-safe: one connection behind a lock, so the UI thread's short queries and the worker threads' inserts
take turns. Every write is one transaction; a killed process loses at most the write in flight.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from app.gallery.db_open import check_file, damaged_message, open_error
from app.gallery.errors import GalleryError, GalleryOpenError, GalleryReadOnlyError, OpenProblem
from app.gallery.filters import GalleryFilter, fts_query
from app.gallery.lora_index import lora_names
from app.gallery.schema import SCHEMA_VERSION, migrate, schema_version
from app.gallery.step_frames import FRAMES_FOLDER
from app.metadata.params import ImageParams

log = logging.getLogger(__name__)

__all__ = ["DB_NAME", "GalleryDB", "GalleryError", "GalleryOpenError", "GalleryReadOnlyError", "ImageRecord"]

DB_NAME = "gallery.sqlite3"
_U64 = 1 << 64


def seed_to_db(seed: int | None) -> int | None:
    return None if seed is None else (seed - _U64 if seed >= 1 << 63 else seed)


def seed_from_db(value: int | None) -> int | None:
    return None if value is None else (value + _U64 if value < 0 else value)


@dataclass(frozen=True, slots=True)
class ImageRecord:
    id: int
    path: Path
    created: float
    job_id: str | None
    rating: int
    source: str
    params: ImageParams


@dataclass(frozen=True, slots=True)
class StepFramesEntry:
    """Where an image's step frames are and which steps they show (app.gallery.step_frames)."""

    path: Path
    steps: tuple[int, ...]
    total_steps: int


@dataclass(frozen=True, slots=True)
class RowKey:
    """What the gallery list needs for every row up front: cheap to load for 10,000+ images."""

    id: int
    created: float
    job_id: str | None


_COLUMNS = "id, path, created, job_id, rating, source, params"
_INSERT = (
    "INSERT INTO images (path, created, job_id, rating, prompt, negative, seed, width, height, variant,"
    " model_name, model_hash, params, source) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
    " ON CONFLICT (path) DO UPDATE SET params = excluded.params, prompt = excluded.prompt,"
    " negative = excluded.negative, trashed = NULL RETURNING id"
)


class GalleryDB:
    def __init__(self, conn: sqlite3.Connection, path: Path, read_only: bool, notice: str | None) -> None:
        self._conn = conn
        self._lock = threading.RLock()
        self.path = path
        self.read_only = read_only
        self.notice = notice  # shown to the user when set (e.g. "opened read-only because ...")

    @classmethod
    def open(cls, folder: Path) -> GalleryDB:
        """The gallery in `folder`, created when there is none. Raises GalleryOpenError (a sentence with the
        path, and the kind of problem) when it cannot be opened: a damaged file, a folder in its place, a
        read-only file or disk, a full disk. Never changes or removes an existing file it cannot read."""
        folder = Path(folder)
        path = folder / DB_NAME
        try:
            return cls._open(folder, path)
        except GalleryOpenError:
            raise
        except (sqlite3.Error, OSError, UnicodeDecodeError) as exc:
            log.warning("cannot open the gallery database %s: %s", path, exc)
            raise open_error(path, exc) from exc

    @classmethod
    def _open(cls, folder: Path, path: Path) -> GalleryDB:
        folder.mkdir(parents=True, exist_ok=True)
        if path.exists() or path.is_symlink():
            check_file(path)
        conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=10)
        conn.text_factory = _text  # a damaged row reads as replacement characters, never fails the query
        try:
            return cls._prepare(conn, path)
        except BaseException:
            conn.close()
            raise

    @classmethod
    def _prepare(cls, conn: sqlite3.Connection, path: Path) -> GalleryDB:
        found = schema_version(conn)
        check = conn.execute("PRAGMA quick_check").fetchone()[0]  # ~30 ms at 10,000 images
        if check != "ok":
            detail = " ".join(str(check).split())[:120]  # the first of the problems SQLite lists
            raise GalleryOpenError(damaged_message(path, detail), path, OpenProblem.DAMAGED)
        if found > SCHEMA_VERSION:
            conn.execute("PRAGMA query_only = ON")
            notice = (
                f"This gallery was written by a newer version of SD3.5 Studio (schema {found}, this "
                f"version knows {SCHEMA_VERSION}). It is open read-only: update the app to change it."
            )
            log.warning(notice)
            return cls(conn, path, True, notice)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")  # WAL + NORMAL: a killed process never corrupts or tears
        conn.execute("PRAGMA foreign_keys = ON")
        migrate(conn)
        conn.execute("INSERT INTO images_fts (images_fts) VALUES ('integrity-check')")  # the search index
        db = cls(conn, path, False, None)
        db._purge_trashed()
        return db

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    @property
    def frames_dir(self) -> Path:
        """Where the images' step frames live: next to the database, so they move with it."""
        return self.path.parent / FRAMES_FOLDER

    # -- writing -------------------------------------------------------------------------------------------

    def _write(self, sql: str, args: Sequence[object] = ()) -> sqlite3.Cursor:
        if self.read_only:
            raise GalleryReadOnlyError(self.notice or "the gallery is read-only")
        with self._lock:
            return self._conn.execute(sql, args)

    def add_image(
        self,
        path: Path,
        params: ImageParams,
        *,
        created: float | None = None,
        job_id: str | None = None,
        rating: int = 0,
        source: str = "sd35-studio",
    ) -> ImageRecord:
        return self.add_images([(path, params, created, job_id, rating, source)])[0]

    def add_images(
        self, rows: Iterable[tuple[Path, ImageParams, float | None, str | None, int, str]]
    ) -> list:
        """Insert (or refresh, for a path already known) many images in one transaction."""
        if self.read_only:
            raise GalleryReadOnlyError(self.notice or "the gallery is read-only")
        now = time.time()
        ids: list[int] = []
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                for path, p, created, job_id, rating, source in rows:
                    cur = self._conn.execute(
                        _INSERT,
                        (
                            str(path),
                            created or now,
                            job_id,
                            rating,
                            p.prompt,
                            p.negative,
                            seed_to_db(p.seed),
                            p.width,
                            p.height,
                            p.variant,
                            p.model_name,
                            p.model_hash,
                            p.to_json(),
                            source,
                        ),
                    )
                    image_id = cur.fetchone()[0]
                    ids.append(image_id)
                    self._set_loras(image_id, p)
                self._conn.execute("COMMIT")
            except BaseException:
                if self._conn.in_transaction:  # SQLite rolls back by itself on some errors (a full disk)
                    self._conn.execute("ROLLBACK")
                raise
        return self.get(ids)

    def _set_loras(self, image_id: int, params: ImageParams) -> None:
        """Index the LoRAs of an image (inside add_images' transaction); a refreshed path replaces them."""
        self._conn.execute("DELETE FROM image_loras WHERE image_id = ?", (image_id,))
        self._conn.executemany(
            "INSERT OR IGNORE INTO image_loras (image_id, name) VALUES (?, ?)",
            [(image_id, name) for name in lora_names(params)],
        )

    def set_rating(self, ids: Sequence[int], rating: int) -> None:
        if not 0 <= rating <= 5:
            raise ValueError(f"rating must be 0-5, not {rating}")
        self._write(f"UPDATE images SET rating = ? WHERE id IN ({_marks(ids)})", (rating, *ids))

    def mark_trashed(self, image_id: int, trash_path: str) -> None:
        self._write("UPDATE images SET trashed = ? WHERE id = ?", (trash_path, image_id))

    def restore(self, image_id: int) -> None:
        self._write("UPDATE images SET trashed = NULL WHERE id = ?", (image_id,))

    def remove(self, ids: Sequence[int]) -> None:
        self._delete_images(f"id IN ({_marks(ids)})", tuple(ids))

    def _purge_trashed(self) -> None:
        """Deletions of an earlier session are final: their undo history is gone."""
        self._delete_images("trashed IS NOT NULL")

    def _delete_images(self, where: str, args: Sequence[object] = ()) -> None:
        """Delete image rows (their step-frame rows cascade), then their step-frame files."""
        if self.read_only:
            raise GalleryReadOnlyError(self.notice or "the gallery is read-only")
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                files = self._conn.execute(
                    f"SELECT file FROM step_frames WHERE image_id IN (SELECT id FROM images WHERE {where})",
                    args,
                ).fetchall()
                self._conn.execute(f"DELETE FROM images WHERE {where}", args)
                self._conn.execute("COMMIT")
            except BaseException:
                if self._conn.in_transaction:  # SQLite rolls back by itself on some errors (a full disk)
                    self._conn.execute("ROLLBACK")
                raise
        for (name,) in files:  # after the commit: a file is never gone while its row is still there
            try:
                (self.frames_dir / Path(name).name).unlink(missing_ok=True)
            except OSError as exc:
                log.warning("cannot delete the step frames %s: %s", name, exc)

    def set_step_frames(self, image_id: int, file_name: str, steps: Sequence[int], total_steps: int) -> None:
        """Raises sqlite3.IntegrityError when the image is no longer in the gallery."""
        self._write(
            "INSERT OR REPLACE INTO step_frames (image_id, file, steps, total_steps) VALUES (?,?,?,?)",
            (image_id, file_name, json.dumps(list(steps)), total_steps),
        )

    def save_filter(self, name: str, spec: GalleryFilter) -> None:
        self._write("INSERT OR REPLACE INTO saved_filters (name, spec) VALUES (?, ?)", (name, spec.to_json()))

    def delete_filter(self, name: str) -> None:
        self._write("DELETE FROM saved_filters WHERE name = ?", (name,))

    def store_model_file(self, path: str, size: int, mtime_ns: int, short_hash: str, fp8: bool) -> None:
        self._write(
            "INSERT OR REPLACE INTO model_files (path, size, mtime_ns, short_hash, fp8) VALUES (?,?,?,?,?)",
            (path, size, mtime_ns, short_hash, int(fp8)),
        )

    # -- reading -------------------------------------------------------------------------------------------

    def _read(self, sql: str, args: Sequence[object] = ()) -> list[tuple]:
        with self._lock:
            return self._conn.execute(sql, args).fetchall()

    def get(self, ids: Sequence[int]) -> list[ImageRecord]:
        """Records in the order of `ids` (ids not found are skipped)."""
        found: dict[int, ImageRecord] = {}
        for start in range(0, len(ids), 500):
            chunk = list(ids[start : start + 500])
            for row in self._read(f"SELECT {_COLUMNS} FROM images WHERE id IN ({_marks(chunk)})", chunk):
                found[row[0]] = _record(row)
        return [found[i] for i in ids if i in found]

    def matches(self, image_id: int, spec: GalleryFilter) -> bool:
        return bool(self.row_keys(spec, only_id=image_id))

    def row_keys(self, spec: GalleryFilter, only_id: int | None = None) -> list[RowKey]:
        """Ids of the live images matching `spec`, sorted; fast enough for the UI thread at 10,000 rows."""
        where, args = ["trashed IS NULL"], []
        if only_id is not None:
            where.append("id = ?")
            args.append(only_id)
        if spec.text.strip():
            query = fts_query(spec.text)
            if query:
                where.append("id IN (SELECT rowid FROM images_fts WHERE images_fts MATCH ?)")
                args.append(query)
        if spec.min_rating:
            where.append("rating >= ?")
            args.append(spec.min_rating)
        if spec.variant:
            where.append("variant = ?")
            args.append(spec.variant)
        if spec.job_id:
            where.append("job_id = ?")
            args.append(spec.job_id)
        if spec.lora:
            where.append("id IN (SELECT image_id FROM image_loras WHERE name = ?)")
            args.append(spec.lora)
        order = "DESC" if spec.newest_first else "ASC"
        sql = f"SELECT id, created, job_id FROM images WHERE {' AND '.join(where)}"
        rows = self._read(f"{sql} ORDER BY created {order}, id {order}", args)
        return [RowKey(*row) for row in rows]

    def count(self) -> int:
        return self._read("SELECT count(*) FROM images WHERE trashed IS NULL")[0][0]

    def ids_for_paths(self, paths: Iterable[Path]) -> dict[str, int]:
        names = [str(p) for p in paths]
        out: dict[str, int] = {}
        for start in range(0, len(names), 500):
            chunk = names[start : start + 500]
            out.update(self._read(f"SELECT path, id FROM images WHERE path IN ({_marks(chunk)})", chunk))
        return out

    def saved_filters(self) -> dict[str, GalleryFilter]:
        rows = self._read("SELECT name, spec FROM saved_filters ORDER BY name COLLATE NOCASE")
        return {name: GalleryFilter.from_json(spec) for name, spec in rows}

    def model_file(self, path: str, size: int, mtime_ns: int) -> tuple[str, bool] | None:
        rows = self._read(
            "SELECT short_hash, fp8 FROM model_files WHERE path = ? AND size = ? AND mtime_ns = ?",
            (path, size, mtime_ns),
        )
        return (rows[0][0], bool(rows[0][1])) if rows else None

    def step_frames(self, image_id: int) -> StepFramesEntry | None:
        """The step frames recorded for an image; None when there are none (or their row is unreadable)."""
        rows = self._read("SELECT file, steps, total_steps FROM step_frames WHERE image_id = ?", (image_id,))
        if not rows:
            return None
        name, steps, total = rows[0]
        try:
            parsed = tuple(int(s) for s in json.loads(steps))
        except (ValueError, TypeError, json.JSONDecodeError):
            log.warning("image %s: unreadable step frames entry in the database", image_id)
            return None
        return StepFramesEntry(self.frames_dir / Path(name).name, parsed, int(total))

    def step_frame_files(self) -> set[str]:
        return {row[0] for row in self._read("SELECT file FROM step_frames")}

    def lora_names(self) -> list[str]:
        """The LoRAs the live images used, by name, for the filter bar's choice."""
        rows = self._read(
            "SELECT DISTINCT l.name FROM image_loras AS l JOIN images AS i ON i.id = l.image_id"
            " WHERE i.trashed IS NULL ORDER BY l.name COLLATE NOCASE"
        )
        return [r[0] for r in rows]

    def job_ids(self) -> list[str]:
        return [r[0] for r in self._read("SELECT DISTINCT job_id FROM images WHERE job_id IS NOT NULL")]

    def integrity_ok(self) -> bool:
        return self._read("PRAGMA integrity_check")[0][0] == "ok"


def _text(data: bytes) -> str:
    return data.decode("utf-8", "replace")


def _marks(items: Sequence[object]) -> str:
    return ",".join("?" * len(items)) or "NULL"


def _record(row: tuple) -> ImageRecord:
    image_id, path, created, job_id, rating, source, params = row
    try:
        parsed = ImageParams.from_json(params)
    except (ValueError, TypeError, json.JSONDecodeError):
        log.warning("image %s: unreadable parameters in the database", image_id)
        parsed = ImageParams.from_fields(prompt="")
    return ImageRecord(image_id, Path(path), created, job_id, rating, source, parsed)
