"""JPEG/WebP export: the EXIF UserComment is laid out as A1111 writes and reads it, an exported copy imports back
with its parameters, and the gallery's export dialog offers the format and remembers the choice."""

import struct

import pytest
from PIL import Image
from PySide6.QtCore import QSettings
from PySide6.QtWidgets import QDialog

from app.gallery.db import GalleryDB
from app.gallery.export import export_images
from app.gallery.filters import GalleryFilter
from app.gallery.importer import import_folder
from app.gallery.store import save_finished_image
from app.metadata.a1111 import infotext_of
from app.metadata.exif import JPEG_EXIF_LIMIT, save_with_user_comment
from app.metadata.file_names import OutputTarget
from app.metadata.image_file import write_image
from tests.gallery.helpers import params, pixels

TEXT = 'ünïcödé 🦊 "fox", snow\nNegative prompt: blurry\nSteps: 28, Sampler: Euler, Seed: 5'


def user_comment_entry(exif: bytes) -> tuple[int, bytes]:
    """(TIFF field type, raw bytes) of UserComment, found by walking the TIFF structure by hand, as piexif does."""
    tiff = exif[6:] if exif.startswith(b"Exif\0\0") else exif
    order = {b"II": "<", b"MM": ">"}[tiff[:2]]

    def entries(offset):
        (count,) = struct.unpack(order + "H", tiff[offset : offset + 2])
        for i in range(count):
            at = offset + 2 + 12 * i
            tag, kind, n = struct.unpack(order + "HHI", tiff[at : at + 8])
            yield tag, kind, n, at + 8

    (ifd0,) = struct.unpack(order + "I", tiff[4:8])
    (pointer,) = [
        struct.unpack(order + "I", tiff[v : v + 4])[0] for tag, _, _, v in entries(ifd0) if tag == 0x8769
    ]
    for tag, kind, n, value_at in entries(pointer):
        if tag == 0x9286:
            (offset,) = struct.unpack(order + "I", tiff[value_at : value_at + 4])
            return kind, tiff[offset : offset + n]
    raise AssertionError("no UserComment")


@pytest.mark.parametrize("fmt", ["jpeg", "webp"])
def test_user_comment_is_undefined_unicode_big_endian_like_a1111(tmp_path, fmt):
    src = tmp_path / "src.png"
    Image.fromarray(pixels()).save(src)
    dest = tmp_path / f"out.{fmt}"
    save_with_user_comment(src, dest, TEXT, fmt)
    with Image.open(dest) as im:
        kind, raw = user_comment_entry(im.info["exif"])
    # piexif hands UNDEFINED (7) fields over as bytes; a BYTE (1) field would come back as a tuple of ints,
    # which A1111's `UserComment.load` cannot decode.
    assert kind == 7
    # piexif.helper.UserComment.dump(TEXT, encoding="unicode"): the prefix, then utf_16_be, no terminator
    assert raw == b"UNICODE\0" + TEXT.encode("utf_16_be")


@pytest.mark.parametrize("fmt", ["jpeg", "webp"])
def test_a1111_reads_the_exported_parameters(tmp_path, fmt):
    """A1111's `read_info_from_image`, line for line, with the real piexif (when installed)."""
    piexif = pytest.importorskip("piexif")
    helper = pytest.importorskip("piexif.helper")

    src = tmp_path / "src.png"
    Image.fromarray(pixels()).save(src)
    dest = tmp_path / f"out.{fmt}"
    save_with_user_comment(src, dest, TEXT, fmt)
    with Image.open(dest) as image:
        items = image.info or {}
        exif = piexif.load(items["exif"])
        exif_comment = (exif or {}).get("Exif", {}).get(piexif.ExifIFD.UserComment, b"")
        assert helper.UserComment.load(exif_comment) == TEXT


def test_parameters_too_long_for_a_jpeg_give_a_clear_error(tmp_path):
    src = tmp_path / "src.png"
    Image.fromarray(pixels()).save(src)
    with pytest.raises(ValueError, match="too long for a JPEG"):
        save_with_user_comment(src, tmp_path / "long.jpg", "x" * JPEG_EXIF_LIMIT, "jpeg")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src.png"]
    save_with_user_comment(src, tmp_path / "long.webp", "x" * JPEG_EXIF_LIMIT, "webp")  # WebP has room


@pytest.mark.parametrize(("fmt", "suffix"), [("jpeg", ".jpg"), ("webp", ".webp")])
def test_an_exported_copy_imports_back_with_its_parameters(tmp_path, fmt, suffix):
    source_db = GalleryDB.open(tmp_path / "data")
    output = OutputTarget(tmp_path / "out")
    originals = [
        params(seed=900, negative_until=0.1),
        params(seed=901, prompt="a lighthouse, «storm», 灯台", cfg=5.5, steps=12, use_t5=False),
    ]
    records = [save_finished_image(source_db, output, pixels(i), p, job_id="j")
               for i, p in enumerate(originals)]  # fmt: skip
    report = export_images(records, tmp_path / "export", fmt=fmt, quality=80)
    source_db.close()
    assert report.exported == 2
    exported = sorted((tmp_path / "export").glob(f"*{suffix}"))
    assert [p.stem for p in exported] == sorted(r.path.stem for r in records)
    with Image.open(exported[0]) as im:
        assert im.format == fmt.upper()

    other = GalleryDB.open(tmp_path / "other-data")
    imported = import_folder(other, tmp_path / "export")
    assert imported.added == 2 and dict(imported.by_source) == {"sd35-studio": 2}
    back = {r.params.seed: r for k in other.row_keys(GalleryFilter()) for r in other.get([k.id])}
    assert {s: r.params for s, r in back.items()} == {p.seed: p for p in originals}
    assert all(r.path.suffix == suffix for r in back.values())
    other.close()


def test_quality_changes_the_file(tmp_path):
    src = tmp_path / "src.png"
    write_image(src, pixels(3, 128), params())
    sizes = []
    for quality in (30, 95):
        dest = tmp_path / f"q{quality}.jpg"
        save_with_user_comment(src, dest, infotext_of(params()), "jpeg", quality)
        sizes.append(dest.stat().st_size)
    assert sizes[0] < sizes[1]


# -- the dialog --------------------------------------------------------------------------------------------


@pytest.fixture
def settings(tmp_path):
    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, str(tmp_path / "config"))
    return QSettings(str(tmp_path / "config" / "test.ini"), QSettings.Format.IniFormat)


def test_export_dialog_choice_is_remembered(qtbot, settings, tmp_path):
    from app.ui.gallery.export import ExportChoice, ExportDialog, load_export_choice, save_export_choice

    first = load_export_choice(settings)
    assert (first.fmt, first.as_zip) == ("original", False) and first.destination.endswith("SD3.5 export")
    dialog = ExportDialog(3, first)
    qtbot.addWidget(dialog)
    assert dialog.windowTitle() == "Export 3 images"
    assert not dialog.quality.isEnabled()  # PNG originals are copied, never re-encoded
    dialog.format_buttons["webp"].click()
    assert dialog.quality.isEnabled()
    dialog.quality_slider.setValue(75)
    dialog.zip_button.click()
    dialog.destination.setText(str(tmp_path / "for-anna"))
    choice = dialog.choice()
    assert choice == ExportChoice("webp", 75, True, str(tmp_path / "for-anna"))
    assert choice.target() == tmp_path / "for-anna.zip"
    save_export_choice(settings, choice)
    assert load_export_choice(settings) == choice
    again = ExportDialog(1, load_export_choice(settings))
    qtbot.addWidget(again)
    assert again.format_buttons["webp"].isChecked() and again.quality.value() == 75
    assert again.zip_button.isChecked() and again.windowTitle() == "Export 1 image"
    again.destination.clear()
    assert not again.buttons.button(again.buttons.StandardButton.Ok).isEnabled()
    settings.setValue("gallery/export", '{"fmt": "tiff", "quality": "high"}')  # damaged or from elsewhere
    assert load_export_choice(settings).fmt == "original"


def test_export_from_the_menu_uses_the_chosen_format(qtbot, panel, settings, tmp_path, monkeypatch):
    from app.ui.gallery import menu as gallery_menu
    from app.ui.gallery.export import ExportDialog, load_export_choice

    panel._settings = settings
    records = panel.shown_records()[:2]

    def choose_jpeg(dialog):
        dialog.format_buttons["jpeg"].click()
        dialog.quality.setValue(70)
        dialog.destination.setText(str(tmp_path / "picked"))
        return QDialog.DialogCode.Accepted

    monkeypatch.setattr(ExportDialog, "exec", choose_jpeg)
    gallery_menu.ask_export(panel, panel, records)
    qtbot.waitUntil(lambda: panel.notice.isVisible(), timeout=10000)
    assert panel.notice.text() == f"Exported 2 images to {tmp_path / 'picked'}."
    jpegs = sorted((tmp_path / "picked").glob("*.jpg"))
    assert [p.stem for p in jpegs] == sorted(r.path.stem for r in records)
    assert load_export_choice(settings).fmt == "jpeg" and load_export_choice(settings).quality == 70

    monkeypatch.setattr(ExportDialog, "exec", lambda dialog: QDialog.DialogCode.Rejected)
    gallery_menu.ask_export(panel, panel, records)  # cancelled: nothing written, nothing remembered
    assert load_export_choice(settings).fmt == "jpeg"
