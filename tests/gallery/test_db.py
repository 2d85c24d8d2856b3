"""The gallery database: round trip, search and filters, migrations, read-only for newer schemas, deletion."""

import json
import sqlite3

import pytest

from app.gallery.db import DB_NAME, GalleryDB, GalleryReadOnlyError
from app.gallery.filters import GalleryFilter
from app.gallery.schema import SCHEMA_VERSION
from tests.gallery.helpers import params


@pytest.fixture
def db(tmp_path):
    gallery = GalleryDB.open(tmp_path / "data")
    yield gallery
    gallery.close()


def test_round_trip_keeps_every_field(db, tmp_path):
    p = params(seed=2**64 - 1, negative_until=0.25)
    rec = db.add_image(tmp_path / "a.png", p, created=1000.5, job_id="job-7", rating=3, source="sd35-studio")
    (back,) = db.get([rec.id])
    assert back == rec
    assert (back.path, back.created, back.job_id, back.rating, back.params) == (tmp_path / "a.png", 1000.5, "job-7",
                                                                              3, p)  # fmt: skip
    db.set_rating([rec.id], 5)
    assert db.get([rec.id])[0].rating == 5
    with pytest.raises(ValueError, match="rating must be 0-5"):
        db.set_rating([rec.id], 6)
    assert db.integrity_ok()


def test_search_filters_and_saved_filters(db, tmp_path):
    rows = [
        ("fox.png", params(prompt="a red fox in snow"), 1.0, "j1", 4),
        ("fox2.png", params(prompt="red foxes at dusk", variant="large"), 2.0, "j1", 1),
        ("owl.png", params(prompt="an owl, watercolour"), 3.0, "j2", 5),
    ]
    db.add_images([(tmp_path / n, p, t, j, r, "sd35-studio") for n, p, t, j, r in rows])
    names = lambda spec: [db.get([k.id])[0].path.name for k in db.row_keys(spec)]  # noqa: E731
    assert names(GalleryFilter()) == ["owl.png", "fox2.png", "fox.png"]
    assert names(GalleryFilter(newest_first=False)) == ["fox.png", "fox2.png", "owl.png"]
    assert names(GalleryFilter(text="fox")) == ["fox2.png", "fox.png"]  # prefix: "fox" finds "foxes"
    assert names(GalleryFilter(text="red snow")) == ["fox.png"]
    assert names(GalleryFilter(text='watercol"* (')) == ["owl.png"]  # FTS syntax in user text is harmless
    assert names(GalleryFilter(min_rating=4)) == ["owl.png", "fox.png"]
    assert names(GalleryFilter(variant="large")) == ["fox2.png"]
    assert names(GalleryFilter(job_id="j1", min_rating=2)) == ["fox.png"]
    db.save_filter("best foxes", GalleryFilter(text="fox", min_rating=4))
    assert db.saved_filters() == {"best foxes": GalleryFilter(text="fox", min_rating=4)}
    db.delete_filter("best foxes")
    assert db.saved_filters() == {}


def test_trash_restore_and_purge_on_next_open(tmp_path):
    db = GalleryDB.open(tmp_path)
    a, b = (db.add_image(tmp_path / n, params()) for n in ("a.png", "b.png"))
    db.mark_trashed(a.id, "/trash/a.png")
    assert [k.id for k in db.row_keys(GalleryFilter())] == [b.id]
    db.restore(a.id)
    assert len(db.row_keys(GalleryFilter())) == 2
    db.mark_trashed(b.id, "/trash/b.png")
    db.close()
    db = GalleryDB.open(tmp_path)
    assert db.get([b.id]) == [] and db.count() == 1
    db.close()


V1_SCHEMA = """
CREATE TABLE images (id INTEGER PRIMARY KEY, path TEXT NOT NULL UNIQUE, created REAL NOT NULL, job_id TEXT,
    favourite INTEGER NOT NULL DEFAULT 0, prompt TEXT NOT NULL DEFAULT '', negative TEXT NOT NULL DEFAULT '',
    seed INTEGER, width INTEGER, height INTEGER, variant TEXT, model_name TEXT, model_hash TEXT,
    params TEXT NOT NULL);
CREATE INDEX images_created ON images (created);
CREATE INDEX images_job ON images (job_id, created);
PRAGMA user_version = 1;
"""


def test_migration_from_schema_1(tmp_path):
    """A version-1 database (favourite flag, no search) written by hand, as that version left it."""
    conn = sqlite3.connect(tmp_path / DB_NAME)
    conn.executescript(V1_SCHEMA)
    for i, (prompt, fav) in enumerate([("a castle at night", 1), ("a quiet harbour", 0)]):
        conn.execute("INSERT INTO images (path, created, favourite, prompt, seed, params) VALUES (?,?,?,?,?,?)",
                     (f"/img/{i}.png", 10.0 + i, fav, prompt, i, params(prompt=prompt, seed=i).to_json()))  # fmt: skip
    conn.commit()
    conn.close()
    db = GalleryDB.open(tmp_path)
    assert not db.read_only
    records = {r.params.prompt: r for r in db.get([1, 2])}
    assert records["a castle at night"].rating == 5 and records["a quiet harbour"].rating == 0
    assert [k.id for k in db.row_keys(GalleryFilter(text="harbour"))] == [2]  # the index covers old rows
    db.save_filter("x", GalleryFilter())  # a v3 table
    db.close()
    conn = sqlite3.connect(tmp_path / DB_NAME)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    columns = [r[1] for r in conn.execute("PRAGMA table_info(images)")]
    assert "favourite" not in columns and "rating" in columns
    conn.close()


def test_a_newer_schema_opens_read_only_with_a_message(tmp_path):
    db = GalleryDB.open(tmp_path)
    db.add_image(tmp_path / "a.png", params())
    db.close()
    conn = sqlite3.connect(tmp_path / DB_NAME)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    db = GalleryDB.open(tmp_path)
    assert db.read_only
    assert "newer version of SD3.5 Studio" in db.notice and "read-only" in db.notice
    assert db.count() == 1 and db.get([1])[0].params == params()
    with pytest.raises(GalleryReadOnlyError):
        db.add_image(tmp_path / "b.png", params())
    with pytest.raises(GalleryReadOnlyError):
        db.set_rating([1], 2)
    db.close()
    conn = sqlite3.connect(tmp_path / DB_NAME)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION + 1
    conn.close()


def test_unreadable_params_do_not_break_listing(db, tmp_path):
    rec = db.add_image(tmp_path / "a.png", params())
    db._write("UPDATE images SET params = ? WHERE id = ?", (json.dumps({"format": "other"}), rec.id))
    assert db.get([rec.id])[0].params.prompt == ""
