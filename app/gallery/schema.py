"""The gallery database schema, as an ordered list of migrations; `PRAGMA user_version` is the schema version.

A new database runs every step from 1; an older one runs the steps it lacks, each in its own transaction, so a
crash mid-migration leaves the previous version intact. Never edit a released step: add a new one.
"""

from __future__ import annotations

import logging
import sqlite3

log = logging.getLogger(__name__)

_V1 = """
CREATE TABLE images (
    id INTEGER PRIMARY KEY,
    path TEXT NOT NULL UNIQUE,
    created REAL NOT NULL,              -- Unix time the image was made
    job_id TEXT,                        -- one generation job (a seed sweep is one job)
    favourite INTEGER NOT NULL DEFAULT 0,
    prompt TEXT NOT NULL DEFAULT '',
    negative TEXT NOT NULL DEFAULT '',
    seed INTEGER,                       -- two's complement of the unsigned 64-bit seed
    width INTEGER,
    height INTEGER,
    variant TEXT,
    model_name TEXT,
    model_hash TEXT,
    params TEXT NOT NULL                -- ImageParams JSON (app.metadata.params)
);
CREATE INDEX images_created ON images (created);
CREATE INDEX images_job ON images (job_id, created);
"""

# v2: a 0-5 star rating replaces the favourite flag (a favourite becomes 5 stars); full-text search over
# prompts; where the metadata came from; soft deletion (the file went to the trash, undo is possible).
_V2 = """
ALTER TABLE images ADD COLUMN rating INTEGER NOT NULL DEFAULT 0 CHECK (rating BETWEEN 0 AND 5);
UPDATE images SET rating = 5 WHERE favourite != 0;
ALTER TABLE images DROP COLUMN favourite;
ALTER TABLE images ADD COLUMN source TEXT NOT NULL DEFAULT 'sd35-studio';
ALTER TABLE images ADD COLUMN trashed TEXT;  -- where the file went in the trash; NULL = live
CREATE INDEX images_rating ON images (rating, created);
CREATE VIRTUAL TABLE images_fts USING fts5(prompt, negative, content='images', content_rowid='id');
INSERT INTO images_fts (images_fts) VALUES ('rebuild');
CREATE TRIGGER images_fts_insert AFTER INSERT ON images BEGIN
    INSERT INTO images_fts (rowid, prompt, negative) VALUES (new.id, new.prompt, new.negative);
END;
CREATE TRIGGER images_fts_delete AFTER DELETE ON images BEGIN
    INSERT INTO images_fts (images_fts, rowid, prompt, negative)
        VALUES ('delete', old.id, old.prompt, old.negative);
END;
CREATE TRIGGER images_fts_update AFTER UPDATE OF prompt, negative ON images BEGIN
    INSERT INTO images_fts (images_fts, rowid, prompt, negative)
        VALUES ('delete', old.id, old.prompt, old.negative);
    INSERT INTO images_fts (rowid, prompt, negative) VALUES (new.id, new.prompt, new.negative);
END;
"""

# v3: named filters; the model-hash cache (a SHA-256 of a 16 GB file is worth keeping).
_V3 = """
CREATE TABLE saved_filters (name TEXT PRIMARY KEY, spec TEXT NOT NULL);
CREATE TABLE model_files (
    path TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    short_hash TEXT NOT NULL,
    fp8 INTEGER NOT NULL DEFAULT 0
);
"""

# v4: each image's step frames (an animated WebP in the data folder's step_frames/); deleting the image row
# deletes this row, and the gallery then deletes the file.
_V4 = """
CREATE TABLE step_frames (
    image_id INTEGER PRIMARY KEY REFERENCES images (id) ON DELETE CASCADE,
    file TEXT NOT NULL,                 -- file name inside step_frames/
    steps TEXT NOT NULL,                -- JSON list: the sampling step each frame shows, in frame order
    total_steps INTEGER NOT NULL
);
"""

# v5: the LoRAs (by name) each image used, for the gallery's LoRA filter; filled here from the parameters JSON
# already stored (`loras` entries of app.metadata.params), and by GalleryDB.add_images for new images.
# json_each gets '{}' for a damaged params text, so one unreadable row cannot stop the migration.
_V5 = """
CREATE TABLE image_loras (
    image_id INTEGER NOT NULL REFERENCES images (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    PRIMARY KEY (image_id, name)
) WITHOUT ROWID;
CREATE INDEX image_loras_name ON image_loras (name, image_id);
INSERT OR IGNORE INTO image_loras (image_id, name)
    SELECT images.id, json_extract(images.params, lora.fullkey || '.name')
    FROM images, json_each(CASE WHEN json_valid(images.params) THEN images.params ELSE '{}' END, '$.loras') AS lora
    WHERE json_type(images.params, lora.fullkey || '.name') = 'text';
"""

MIGRATIONS: tuple[str, ...] = (_V1, _V2, _V3, _V4, _V5)
SCHEMA_VERSION = len(MIGRATIONS)


def schema_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def migrate(conn: sqlite3.Connection) -> int:
    """Bring the schema up to SCHEMA_VERSION; returns the version found. The caller refuses newer ones."""
    found = schema_version(conn)
    for version in range(found + 1, SCHEMA_VERSION + 1):
        log.info("gallery database: migrating to schema %d", version)
        statements = [s.strip() for s in _split(MIGRATIONS[version - 1]) if s.strip()]
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in statements:
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {version}")
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:  # SQLite rolls back by itself on some errors (a full disk)
                conn.execute("ROLLBACK")
            raise
    return found


def _split(script: str) -> list[str]:
    """Statements of a script, keeping trigger bodies (which contain ';') whole."""
    out, current = [], []
    for line in script.splitlines():
        code = line.split("--", 1)[0]
        current.append(code)
        joined = "\n".join(current).strip()
        in_trigger = joined.upper().startswith("CREATE TRIGGER")
        if code.rstrip().endswith(";") and (not in_trigger or joined.upper().endswith("END;")):
            out.append(joined)
            current = []
    if "\n".join(current).strip():
        out.append("\n".join(current))
    return out
