"""The gallery's LoRA filter in the panel, chosen with real clicks and keys: only the images made with that LoRA
show; the choice lists the LoRAs the gallery's images used, and a newly saved image's LoRA joins it."""

import time
from pathlib import Path

import pytest
from PySide6.QtCore import Qt

from app.gallery.db import GalleryDB
from app.gallery.store import save_finished_image
from app.inference.api.lora import LoraSpec
from app.metadata.file_names import OutputTarget
from app.metadata.image_file import write_image
from tests.gallery.helpers import params, pixels

CLAY = LoraSpec(Path("/loras/clay.safetensors"), 0.8)
INK = LoraSpec(Path("/loras/ink.safetensors"), 0.6)


@pytest.fixture
def panel(qtbot, tmp_path):
    from app.ui.gallery.panel import GalleryPanel

    data, output = tmp_path / "data", OutputTarget(tmp_path / "out")
    db = GalleryDB.open(data)
    start = time.time() - 3600
    loras = [(), (CLAY,), (CLAY, INK), (INK,), ()]
    for i, used in enumerate(loras):
        p = params(seed=100 + i, prompt=f"image {i}", loras=used)
        save_finished_image(db, output, pixels(i, 48), p, job_id=f"job{i}", created=start + i)
    db.close()
    widget = GalleryPanel(data, output)
    qtbot.addWidget(widget)
    widget.resize(900, 700)
    widget.show()
    yield widget
    widget.shutdown()


def shown_prompts(panel):
    model = panel.model
    records = [model.record(r) for r in range(model.rowCount()) if model.image_id(r) is not None]
    return sorted(r.params.prompt for r in records)


def choose_in_popup(qtbot, combo, text):
    """Open the list with a click, walk down to `text` with the arrow keys, take it with Enter."""
    qtbot.mouseClick(combo, Qt.MouseButton.LeftButton)
    view = combo.view()
    qtbot.waitUntil(view.isVisible, timeout=2000)
    for _ in range(combo.findText(text) - combo.currentIndex()):
        qtbot.keyClick(view, Qt.Key.Key_Down)
    qtbot.keyClick(view, Qt.Key.Key_Return)


def test_choosing_a_lora_in_the_filter_bar_shows_only_its_images(qtbot, panel, tmp_path):
    combo = panel.filter_bar.lora
    assert combo.isVisible()
    assert [combo.itemText(i) for i in range(combo.count())] == ["Any LoRA", "clay", "ink"]
    assert len(shown_prompts(panel)) == 5
    with qtbot.waitSignal(panel.filter_bar.filter_changed, timeout=2000):
        choose_in_popup(qtbot, combo, "clay")
    assert combo.currentText() == "clay"
    assert shown_prompts(panel) == ["image 1", "image 2"]
    assert panel.count_label.text() == "2 images matching LoRA clay"
    combo.setFocus()
    qtbot.keyClick(combo, Qt.Key.Key_Down)  # the next LoRA
    assert shown_prompts(panel) == ["image 2", "image 3"]
    qtbot.keyClick(combo, Qt.Key.Key_Home)  # back to "Any LoRA"
    assert combo.currentText() == "Any LoRA" and len(shown_prompts(panel)) == 5
    panel.grab().save("/tmp/lorafilter-shot.png")

    path = write_image(
        tmp_path / "new.png",
        pixels(9),
        params(seed=9, prompt="image 9", loras=(LoraSpec(Path("/l/wax.safetensors")),)),
    )
    with qtbot.waitSignal(panel.image_saved, timeout=10000):
        panel.add_saved_image(
            path, params(seed=9, prompt="image 9", loras=(LoraSpec(Path("/l/wax.safetensors")),)), job_id="w"
        )
    assert combo.findText("wax") > 0  # a new LoRA is offered as soon as an image with it is in the gallery
    with qtbot.waitSignal(panel.filter_bar.filter_changed, timeout=2000):
        choose_in_popup(qtbot, combo, "wax")
    assert shown_prompts(panel) == ["image 9"]


def test_the_lora_choice_is_hidden_while_no_image_used_one(qtbot, tmp_path):
    from app.ui.gallery.panel import GalleryPanel

    db = GalleryDB.open(tmp_path / "data")
    db.add_image(tmp_path / "a.png", params())
    db.close()
    panel = GalleryPanel(tmp_path / "data", OutputTarget(tmp_path / "out"))
    qtbot.addWidget(panel)
    panel.show()
    assert not panel.filter_bar.lora.isVisible() and panel.filter_bar.current().lora is None
    panel.close()  # no paint after the database is closed
    panel.shutdown()
