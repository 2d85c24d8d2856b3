"""Import folder goes file by file: a bad file is skipped with its reason, the others are imported."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from app.gallery.db import GalleryDB
from app.gallery.filters import GalleryFilter
from app.gallery.importer import import_folder
from tests.gallery.helpers import A1111_TEXT, params
from tests.gallery.test_metadata_limits import DEEP, itxt, text, write_png


def _ours(folder: Path, i: int, **fields: object) -> Path:
    data = params(seed=100 + i, prompt=f"a fox number {i}").to_dict() | fields
    return write_png(folder / f"img-{i:02d}.png", itxt("sd35-studio", json.dumps(data)))


def test_one_bad_file_among_42_skips_that_file_only(tmp_path):
    folder = tmp_path / "folder"
    folder.mkdir()
    for i in range(38):
        _ours(folder, i)
    _ours(folder, 38, seed=2**64 + 7)  # beyond SQLite's 64 bits: aborted the whole import before
    write_png(folder / "img-39.png", text("parameters", A1111_TEXT.replace("Seed: 3141592653", "Seed: abc")))
    write_png(folder / "img-40.png", itxt("sd35-studio", DEEP))  # unreadable: nested too deeply
    cut = _ours(folder, 41)
    cut.write_bytes(cut.read_bytes()[:60])  # cut off in its metadata
    db = GalleryDB.open(tmp_path / "data")

    report = import_folder(db, folder)

    assert report.added == 40 and db.count() == 40
    assert [(p.name, r) for p, r in report.skipped] == [
        ("img-40.png", "The sd35-studio text is nested more than 64 levels deep."),
        ("img-41.png", "The PNG file is cut off in the middle of a text chunk."),
    ]
    assert report.message().endswith("; 2 skipped.") and report.message().startswith("Imported 40 images")
    assert report.details() == "\n".join(f"{p.name}: {r}" for p, r in report.skipped)
    by_name = {r.path.name: r for r in db.get([k.id for k in db.row_keys(GalleryFilter())])}
    assert (
        by_name["img-38.png"].params.seed is None and by_name["img-38.png"].params.prompt == "a fox number 38"
    )
    assert by_name["img-39.png"].params.seed is None and by_name["img-39.png"].params.steps == 30
    assert by_name["img-07.png"].params.seed == 107
    db.close()


@pytest.mark.skipif(os.name != "posix", reason="file names that are not UTF-8 exist on POSIX file systems")
def test_a_file_name_the_database_cannot_store_is_skipped(tmp_path):
    folder = tmp_path / "folder"
    folder.mkdir()
    _ours(folder, 1)
    bad = Path(os.fsdecode(bytes(folder) + b"/caf\xe9.png"))  # Latin-1 bytes: not UTF-8
    bad.write_bytes((folder / "img-01.png").read_bytes())
    db = GalleryDB.open(tmp_path / "data")

    report = import_folder(db, folder)

    assert report.added == 1 and db.count() == 1
    assert len(report.skipped) == 1 and "not valid UTF-8" in report.skipped[0][1]
    db.close()


def test_a_row_the_database_refuses_is_skipped_alone(tmp_path, monkeypatch):
    """The batch falls back to one row at a time, so a value SQLite cannot hold costs only its own file."""
    folder = tmp_path / "folder"
    folder.mkdir()
    for i in range(5):
        _ours(folder, i)
    db = GalleryDB.open(tmp_path / "data")
    real = db.add_images

    def refuse_fox_3(rows):
        rows = list(rows)
        if any(p.prompt == "a fox number 3" for _, p, *_ in rows):
            raise OverflowError("Python int too large to convert to SQLite INTEGER")
        return real(rows)

    monkeypatch.setattr(db, "add_images", refuse_fox_3)
    report = import_folder(db, folder)
    assert report.added == 4 and db.count() == 4
    assert [(p.name, r) for p, r in report.skipped] == [
        (
            "img-03.png",
            "It cannot be stored in the gallery (Python int too large to convert to SQLite INTEGER).",
        )
    ]
    db.close()
