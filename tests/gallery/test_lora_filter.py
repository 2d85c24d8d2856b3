"""The gallery's LoRA filter on a real database: which images used which LoRA, indexed when added or imported,
filled in for older galleries by the schema 5 migration from the parameters already stored."""

import sqlite3
from pathlib import Path

import pytest

from app.gallery.db import DB_NAME, GalleryDB
from app.gallery.filters import GalleryFilter
from app.gallery.importer import import_folder
from app.gallery.schema import MIGRATIONS, SCHEMA_VERSION, _split
from app.inference.api.lora import LoraSpec
from app.metadata.image_file import write_image
from tests.gallery.helpers import A1111_TEXT, params, pixels, write_a1111_png

CLAY = LoraSpec(Path("/loras/clay.safetensors"), 0.8)
INK = LoraSpec(Path("/loras/ink style.safetensors"), -0.3, 0.5)


@pytest.fixture
def db(tmp_path):
    gallery = GalleryDB.open(tmp_path / "data")
    yield gallery
    gallery.close()


def _names(db, spec):
    return [r.path.name for r in db.get([k.id for k in db.row_keys(spec)])]


def test_filter_by_lora_returns_only_the_images_that_used_it(db, tmp_path):
    db.add_image(tmp_path / "plain.png", params(prompt="a fox"), created=1.0)
    db.add_image(tmp_path / "clay.png", params(prompt="a fox", loras=(CLAY,)), created=2.0)
    db.add_image(tmp_path / "both.png", params(prompt="an owl", loras=(INK, CLAY)), created=3.0)
    db.add_image(tmp_path / "ink.png", params(prompt="a fox", loras=(INK,)), created=4.0)
    assert db.lora_names() == ["clay", "ink style"]
    assert _names(db, GalleryFilter(lora="clay")) == ["both.png", "clay.png"]
    assert _names(db, GalleryFilter(lora="ink style")) == ["ink.png", "both.png"]
    assert _names(db, GalleryFilter(lora="clay", text="fox")) == ["clay.png"]  # combines with the others
    assert _names(db, GalleryFilter(lora="sketch")) == []
    assert len(_names(db, GalleryFilter())) == 4
    spec = GalleryFilter(lora="clay", min_rating=2)
    assert not spec.is_empty and spec.describe() == "★★ or more, LoRA clay"
    assert GalleryFilter.from_json(spec.to_json()) == spec  # saved filters keep the LoRA
    assert db.matches(db.get([2])[0].id, GalleryFilter(lora="clay"))


def test_refreshing_an_image_replaces_its_loras_and_deleting_it_removes_them(db, tmp_path):
    rec = db.add_image(tmp_path / "a.png", params(loras=(CLAY,)))
    db.add_image(tmp_path / "a.png", params(loras=(INK,)))  # the same path imported again with new metadata
    assert _names(db, GalleryFilter(lora="clay")) == [] and _names(db, GalleryFilter(lora="ink style")) == [
        "a.png"
    ]
    db.mark_trashed(rec.id, "/trash/a.png")
    assert db.lora_names() == []  # a trashed image's LoRAs are not offered
    db.remove([rec.id])
    assert db._read("SELECT count(*) FROM image_loras")[0][0] == 0


def test_imported_files_are_indexed_by_their_loras(db, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    write_image(folder / "with.png", pixels(1), params(seed=1, loras=(CLAY,)))
    write_image(folder / "without.png", pixels(2), params(seed=2))
    write_a1111_png(
        folder / "a1111.png", A1111_TEXT.replace("(stormy sky:1.2)", "(stormy sky:1.2) <lora:detail:0.7>")
    )
    import_folder(db, folder)
    assert _names(db, GalleryFilter(lora="clay")) == ["with.png"]
    assert _names(db, GalleryFilter(lora="detail")) == ["a1111.png"]  # A1111's <lora:…> tags count too
    assert db.lora_names() == ["clay", "detail"]


def _v4_database(folder, rows):
    """A database exactly as schema 4 left it (the released migrations 1-4), with these (path, params text)."""
    folder.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(folder / DB_NAME, isolation_level=None)
    for version, script in enumerate(MIGRATIONS[:4], 1):
        for statement in _split(script):
            if statement.strip():
                conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {version}")
    for i, (path, text) in enumerate(rows):
        conn.execute(
            "INSERT INTO images (path, created, prompt, params) VALUES (?,?,?,?)", (path, i, "p", text)
        )
    conn.close()


def test_migration_to_schema_5_indexes_the_loras_already_stored(tmp_path):
    folder = tmp_path / "data"
    _v4_database(
        folder,
        [
            ("/img/clay.png", params(loras=(CLAY,)).to_json()),
            ("/img/both.png", params(loras=(CLAY, INK)).to_json()),
            ("/img/plain.png", params().to_json()),
            ("/img/damaged.png", '{"format": "sd35-studio.params", "loras": [{"na'),  # cut short
            ("/img/odd.png", '{"loras": ["clay", 3, {"file": "x"}]}'),  # entries without a name
        ],
    )
    db = GalleryDB.open(folder)
    try:
        assert db.lora_names() == ["clay", "ink style"]
        assert _names(db, GalleryFilter(lora="clay")) == ["both.png", "clay.png"]
        assert _names(db, GalleryFilter(lora="ink style")) == ["both.png"]
        assert db.count() == 5
    finally:
        db.close()
    conn = sqlite3.connect(folder / DB_NAME)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 5
    conn.close()
