"""Export keeps every file byte-identical (metadata intact) with a contact sheet and a manifest; import indexes
a folder of mixed images (ours, A1111's, ComfyUI's, JPEG with EXIF) from their metadata."""

import hashlib
import json
import os
import stat
import zipfile

import pytest
from PIL import Image

from app.gallery.db import GalleryDB
from app.gallery.export import CONTACT_SHEET, MANIFEST, export_images
from app.gallery.filters import GalleryFilter
from app.gallery.importer import import_folder
from app.gallery.store import save_finished_image
from app.metadata.a1111 import infotext_of
from app.metadata.exif import save_with_user_comment
from app.metadata.file_names import OutputTarget
from app.metadata.recall import read_metadata
from tests.gallery.helpers import params, pixels, write_a1111_png, write_comfy_png


@pytest.fixture
def gallery(tmp_path):
    db = GalleryDB.open(tmp_path / "data")
    settings = OutputTarget(tmp_path / "out", dated=False)
    records = [save_finished_image(db, settings, pixels(i), params(seed=500 + i), job_id="sweep")
               for i in range(4)]  # fmt: skip
    db.set_rating([records[1].id], 4)
    yield db, db.get([r.id for r in records])
    db.close()


def sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_export_to_a_folder_keeps_files_byte_identical(gallery, tmp_path):
    _, records = gallery
    records[3].path.unlink()  # deleted outside the app: reported, not exported
    report = export_images(records, tmp_path / "export", title="Fox seeds")
    assert report.exported == 3 and report.missing == (records[3].path,)
    folder = tmp_path / "export"
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [CONTACT_SHEET, MANIFEST] + [r.path.name for r in records[:3]])  # fmt: skip
    for r in records[:3]:
        assert (folder / r.path.name).read_bytes() == r.path.read_bytes()
        assert read_metadata(folder / r.path.name).params == r.params
    manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    assert manifest["format"] == "sd35-studio.export" and manifest["title"] == "Fox seeds"
    entries = {e["file"]: e for e in manifest["images"]}
    assert entries[records[1].path.name]["rating"] == 4
    assert entries[records[0].path.name]["sha256"] == sha(records[0].path)
    assert entries[records[0].path.name]["parameters"]["seed"] == 500
    assert entries[records[0].path.name]["infotext"] == infotext_of(records[0].params)
    with Image.open(folder / CONTACT_SHEET) as sheet:
        assert sheet.width > 3 * 256 and sheet.height > 256


def test_export_to_zip_and_as_jpeg(gallery, tmp_path):
    _, records = gallery
    export_images(records, tmp_path / "set.zip", as_zip=True)
    with zipfile.ZipFile(tmp_path / "set.zip") as zf:
        assert sorted(zf.namelist()) == sorted([CONTACT_SHEET, MANIFEST] + [r.path.name for r in records])
        for r in records:
            assert zf.read(r.path.name) == r.path.read_bytes()
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []
    export_images(records[:1], tmp_path / "jpeg", fmt="jpeg")
    jpeg = tmp_path / "jpeg" / (records[0].path.stem + ".jpg")
    assert read_metadata(jpeg).params.seed == 500


def test_exported_files_get_the_usual_permissions(gallery, tmp_path):
    """A zip or a JPEG handed to someone else is readable by the group/others like any file the user saves
    (the temporary file that becomes it starts 0600)."""
    _, records = gallery
    old = os.umask(0o022)
    try:
        export_images(records, tmp_path / "set.zip", as_zip=True)
        export_images(records[:1], tmp_path / "jpeg", fmt="jpeg")
    finally:
        os.umask(old)
    jpeg = tmp_path / "jpeg" / (records[0].path.stem + ".jpg")
    for path in (tmp_path / "set.zip", jpeg, records[0].path):
        assert stat.S_IMODE(path.stat().st_mode) == 0o644, path.name


def test_import_indexes_a_mixed_folder(gallery, tmp_path):
    db, records = gallery
    mixed = tmp_path / "mixed"
    (mixed / "sub").mkdir(parents=True)
    ours = mixed / "ours.png"
    ours.write_bytes(records[0].path.read_bytes())
    write_a1111_png(mixed / "a1111.png")
    write_comfy_png(mixed / "sub" / "comfy.png")
    save_with_user_comment(ours, mixed / "civitai.jpg", infotext_of(params(seed=77)), "jpeg")
    Image.new("RGB", (16, 16), "white").save(mixed / "photo.png")  # no generation metadata
    (mixed / "notes.txt").write_text("not an image")
    before = db.count()
    report = import_folder(db, mixed)
    assert (report.added, report.without_metadata) == (4, 1)
    assert dict(report.by_source) == {"a1111": 1, "comfyui": 1, "sd35-studio": 2}
    assert db.count() == before + 4
    found = {k.id: r for k in db.row_keys(GalleryFilter()) for r in db.get([k.id])}
    by_name = {r.path.name: r for r in found.values()}
    assert by_name["ours.png"].params == records[0].params
    assert by_name["a1111.png"].params.seed == 3141592653 and by_name["a1111.png"].source == "a1111"
    assert by_name["comfy.png"].params.sampler == "euler" and by_name["comfy.png"].source == "comfyui"
    assert by_name["civitai.jpg"].params.seed == 77
    assert [db.get([k.id])[0].path.name for k in db.row_keys(GalleryFilter(text="lighthouse"))] == [
        "a1111.png"
    ]
    again = import_folder(db, mixed)
    assert (again.added, again.already_known) == (0, 4)
