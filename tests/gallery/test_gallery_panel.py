"""The gallery panel, driven as a user would: groups, search, rating keys, trash with undo, recall, compare."""

import hashlib
import json
import struct
from pathlib import Path

import pytest
from PySide6.QtCore import QItemSelectionModel, Qt

from app.gallery.db import GalleryDB
from app.gallery.schema import SCHEMA_VERSION
from app.inference.api.request import GenerationRequest
from app.metadata.png_text import read_png_text
from app.ui.gallery.list_model import HEADER_ROLE, MISSING_ROLE
from tests.gallery.helpers import pixels, write_a1111_png


def image_rows(panel):
    return [r for r in range(panel.model.rowCount()) if panel.model.image_id(r) is not None]


def select(panel, rows):
    sel = panel.view.selectionModel()
    sel.clearSelection()
    sel.setCurrentIndex(panel.model.index(rows[0]), QItemSelectionModel.SelectionFlag.NoUpdate)
    for row in rows:
        sel.select(panel.model.index(row), QItemSelectionModel.SelectionFlag.Select)


def test_groups_by_job_with_headers_and_loads_thumbnails(qtbot, panel):
    model = panel.model
    headers = [model.index(r).data(HEADER_ROLE) for r in range(model.rowCount()) if model.image_id(r) is None]
    assert len(headers) == 3 and model.image_count == 13
    assert headers[0].startswith("a cozy reading nook with a cat, watercolour  ·  1 image  ·")
    assert "6 images" in headers[1] and "6 images" in headers[2]
    assert panel.count_label.text() == "13 images"
    first = image_rows(panel)[0]
    model.tile(first)  # painting asks for it; the pool makes it
    qtbot.waitUntil(lambda: model.tile(first)[1] is not None, timeout=5000)
    assert model.tile(first)[1].width() == 48  # thumbnails never upscale
    panel.filter_bar.grouping.setCurrentIndex(2)  # no groups
    assert model.rowCount() == 13


def test_search_rating_filter_and_saved_filters(qtbot, panel):
    with qtbot.waitSignal(panel.filter_bar.filter_changed, timeout=2000):
        panel.filter_bar.search.setText("lighthouse")
    assert panel.model.image_count == 6
    assert panel.count_label.text() == "6 images matching “lighthouse”"
    panel.save_filter("Lighthouses")
    assert panel.filter_bar.saved.itemText(1) == "Lighthouses"
    panel.filter_bar.search.clear()
    panel.filter_bar.rating.setCurrentIndex(3)
    assert panel.model.image_count == 0
    panel.filter_bar._on_saved_activated(1)  # choosing it from the list
    assert panel.filter_bar.search.text() == "lighthouse" and panel.model.image_count == 6


def test_number_keys_rate_the_selection(qtbot, panel):
    rows = image_rows(panel)[:2]
    select(panel, rows)
    qtbot.keyClick(panel.view, Qt.Key.Key_4)
    ids = [panel.model.image_id(r) for r in rows]
    assert [r.rating for r in panel.db.get(ids)] == [4, 4]
    assert panel.model.record(rows[0]).rating == 4
    qtbot.keyClick(panel.view, Qt.Key.Key_0)
    assert [r.rating for r in panel.db.get(ids)] == [0, 0]


def test_delete_moves_files_to_the_trash_and_undo_brings_them_back(qtbot, panel, tmp_path):
    rows = image_rows(panel)[1:3]
    records = [panel.model.record(r) for r in rows]
    select(panel, rows)
    qtbot.keyClick(panel.view, Qt.Key.Key_Delete)
    assert not any(r.path.exists() for r in records)
    trash = tmp_path / "xdg-data" / "Trash" / "files"
    assert sorted(p.name for p in trash.iterdir()) == sorted(r.path.name for r in records)
    assert panel.model.image_count == 11 and panel.count_label.text() == "11 images"
    assert panel.notice.text() == "Moved 2 images to the trash." and panel.undo_button.isVisible()
    qtbot.mouseClick(panel.undo_button, Qt.MouseButton.LeftButton)
    assert all(r.path.exists() for r in records)
    assert list(trash.iterdir()) == [] and list((trash.parent / "info").iterdir()) == []
    assert panel.model.image_count == 13


def test_a_finished_image_is_saved_with_its_model_hash_and_shown_first(qtbot, panel, tmp_path):
    checkpoint = tmp_path / "models" / "sd3.5_medium.safetensors"
    checkpoint.parent.mkdir()
    header = json.dumps(
        {"model.diffusion_model.x": {"dtype": "F8_E4M3", "shape": [2], "data_offsets": [0, 2]}}
    )
    checkpoint.write_bytes(struct.pack("<Q", len(header)) + header.encode() + b"\0\0")
    panel.set_model(checkpoint, "medium")
    request = GenerationRequest(prompt="a glass teapot, studio light", seed=7).resolved("medium")
    with qtbot.waitSignal(panel.image_saved, timeout=10000) as saved:
        panel.add_finished_image(pixels(3), request, 7, job_id="job-new")
    record = saved.args[0]
    assert record.params.model_hash == hashlib.sha256(checkpoint.read_bytes()).hexdigest()[:10]
    assert record.params.fp8 and record.params.model_name == "sd3.5_medium" and record.job_id == "job-new"
    assert set(read_png_text(record.path)) == {"parameters", "sd35-studio", "prompt", "workflow"}
    assert "Model hash: " + record.params.model_hash in read_png_text(record.path)["parameters"]
    assert panel.model.image_id(1) == record.id and panel.model.image_count == 14
    assert panel.model.index(0).data(HEADER_ROLE).startswith("a glass teapot, studio light  ·  1 image")


def test_save_failure_is_reported(qtbot, panel, tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    panel.set_output_settings(type(panel.output)(blocker))
    request = GenerationRequest(prompt="x").resolved("medium")
    with qtbot.waitSignal(panel.save_failed, timeout=10000) as failed:
        panel.add_finished_image(pixels(), request, 1, job_id="j")
    assert failed.args[0] and panel.notice.isVisible()


def test_use_settings_reuse_seed_and_recall_from_a_file(qtbot, panel, tmp_path):
    record = panel.model.record(image_rows(panel)[0])
    with qtbot.waitSignal(panel.settings_requested) as got:
        panel.request_settings(record)
    settings = got.args[0]
    assert settings.request.seed == record.params.seed and settings.request.count == 1
    assert settings.request.prompt == record.params.prompt and settings.request.cfg == record.params.cfg
    assert settings.source == "sd35-studio" and settings.unmapped == ()
    with qtbot.waitSignal(panel.seed_requested) as got:
        panel.request_seed(record)
    assert got.args[0].seed == record.params.seed
    with qtbot.waitSignal(panel.settings_requested) as got:
        panel.recall_file(write_a1111_png(tmp_path / "a1111.png"))
    assert got.args[0].source == "a1111" and "Clip skip: 2" in got.args[0].unmapped
    assert any("GPU" in w for w in got.args[0].warnings)


def test_missing_files_are_shown_and_can_be_removed(qtbot, filled):
    from app.ui.gallery.panel import GalleryPanel

    data, output = filled
    db = GalleryDB.open(data)
    (record,) = db.get([13])  # the newest image: first in the list
    db.close()
    record.path.unlink()  # deleted outside the app
    panel = GalleryPanel(data, output)
    qtbot.addWidget(panel)
    row = panel.model.row_of(record.id)
    index = panel.model.index(row)
    panel.model.tile(row)
    qtbot.waitUntil(lambda: panel.model.tile(row)[3], timeout=5000)
    assert index.data(MISSING_ROLE) is True
    assert "The file is missing" in index.data(Qt.ItemDataRole.ToolTipRole)
    panel.remove_missing()
    qtbot.waitUntil(lambda: panel.model.image_count == 12, timeout=5000)
    assert panel.db.get([record.id]) == []
    assert panel.notice.text() == "Removed 1 missing image from the gallery."
    panel.shutdown()


def test_images_drag_out_as_files(panel):
    rows = image_rows(panel)[:2]
    mime = panel.model.mimeData([panel.model.index(r) for r in rows])
    assert [Path(u.toLocalFile()) for u in mime.urls()] == [panel.model.record(r).path for r in rows]
    assert panel.model.flags(panel.model.index(rows[0])) & Qt.ItemFlag.ItemIsDragEnabled


def test_compare_labels_synced_zoom_rating_and_picks(qtbot, panel):
    rows = image_rows(panel)[1:5]  # one job: only the seeds differ
    select(panel, rows)
    qtbot.mouseClick(panel.compare_button, Qt.MouseButton.LeftButton)
    compare = panel.compare
    assert panel.pages.currentWidget() is compare and not panel.filter_bar.isVisible()
    seeds = [panel.model.record(r).params.seed for r in rows]
    assert [t.label for t in compare.tiles] == [f"seed {s}" for s in seeds]
    assert compare.title.text() == "4 images · differ in seed"
    first, others = compare.tiles[0], compare.tiles[1:]
    first.set_zoom(20.0)
    assert all(t.zoom() == pytest.approx(20.0) for t in others)
    first.horizontalScrollBar().setValue(first.horizontalScrollBar().maximum())
    centre = first.centre()
    assert all(
        abs(t.centre().x() - centre.x()) < 0.02 and abs(t.centre().y() - centre.y()) < 0.02 for t in others
    )
    assert centre.x() > 0.6
    qtbot.keyClick(compare, Qt.Key.Key_Right)
    qtbot.keyClick(compare, Qt.Key.Key_5)
    assert panel.db.get([compare.records[1].id])[0].rating == 5
    qtbot.keyClick(compare, Qt.Key.Key_P)
    qtbot.keyClick(compare, Qt.Key.Key_Right)
    qtbot.keyClick(compare, Qt.Key.Key_P)
    compare.keep_picks()
    assert [r.params.seed for r in compare.records] == seeds[1:3]
    with qtbot.waitSignal(panel.seed_requested) as got:
        qtbot.mouseClick(compare.vary_button, Qt.MouseButton.LeftButton)
    assert got.args[0].seed == seeds[1]
    qtbot.keyClick(compare, Qt.Key.Key_Escape)
    assert panel.pages.currentWidget() is panel.view and panel.filter_bar.isVisible()


def test_two_images_wipe_and_difference(qtbot, panel):
    rows = image_rows(panel)[1:3]
    panel.open_compare([panel.model.record(r) for r in rows])
    compare = panel.compare
    assert compare.diff_button.isEnabled()
    compare.wipe_button.click()
    assert compare.wipe.mode == "wipe" and compare.wipe.labels == tuple(t.label for t in compare.tiles)
    compare.diff_button.click()
    qtbot.waitUntil(lambda: compare.wipe.stats is not None, timeout=5000)
    assert compare.wipe.stats.mean > 0.01 and not compare.wipe.heat.isNull()
    compare.grid_button.click()
    assert compare._pages.currentWidget() is compare._grid_host


def test_a_newer_database_opens_read_only_with_a_message(qtbot, filled):
    from app.ui.gallery.panel import GalleryPanel

    data, output = filled
    db = GalleryDB.open(data)
    db._conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()
    widget = GalleryPanel(data, output)
    qtbot.addWidget(widget)
    try:
        assert widget.notice.text().startswith("This gallery was written by a newer version of SD3.5 Studio")
        assert widget.model.image_count == 13
        widget.rate([1], 3)
        assert widget.db.get([1])[0].rating == 0
    finally:
        widget.shutdown()


def test_default_folders_follow_the_platform(qapp, tmp_path):
    from app.ui.gallery.panel import default_data_dir, default_output_dir

    assert str(default_data_dir()).startswith(str(tmp_path / "xdg-data"))
    assert default_output_dir().name == "SD3.5 Studio"


def test_an_image_written_elsewhere_can_be_indexed(qtbot, panel, tmp_path):
    from app.metadata.image_file import write_image

    request = GenerationRequest(prompt="written by the worker", seed=5).resolved("medium")
    params = panel.loaded.image_params(request, 5)  # no model loaded: name and hash stay unknown
    assert (params.model_name, params.model_hash, params.seed) == (None, None, 5)
    path = tmp_path / "worker" / "00001-5.png"
    write_image(path, pixels(), params)
    with qtbot.waitSignal(panel.image_saved, timeout=10000) as saved:
        panel.add_saved_image(path, params, job_id="w1")
    assert saved.args[0].path == path and saved.args[0].params == params
    assert panel.model.image_id(1) == saved.args[0].id


def test_context_menu_names_the_compare_it_would_do(qtbot, panel):
    from app.ui.gallery.menu import build_context_menu

    rows = image_rows(panel)
    for chosen, label, enabled in ((rows[:1], "Compare (select 2–16 images)", False),
                                   (rows[:3], "Compare 3 Images", True)):  # fmt: skip
        records = panel.db.get([panel.model.image_id(r) for r in chosen])
        menu = build_context_menu(panel, panel, records)
        compare = [a for a in menu.actions() if a.text().startswith("Compare")]
        assert [(a.text(), a.isEnabled()) for a in compare] == [(label, enabled)]
