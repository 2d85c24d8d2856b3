"""The LoRA panel and the ControlNet section driven like a user: real clicks and keys on the window, the request
the (fake) engine gets checked."""

import pytest
import torch
from PIL import Image
from PySide6.QtCore import Qt
from safetensors.torch import save_file

from app.inference.api.lora import LoraSpec
from app.ui.window.settings_store import open_settings, save_json
from tests.factory.controlnet_model import write_controlnet
from tests.gallery.helpers import write_a1111_png
from tests.ui.conftest import wait_until_ready, write_square_picture
from tests.ui.test_image_drop import choose, drop_on, file_mime


def _lora(path, width, metadata):
    save_file(
        {
            "transformer.transformer_blocks.0.attn.to_q.lora_A.weight": torch.zeros(2, width),
            "transformer.transformer_blocks.0.attn.to_q.lora_B.weight": torch.zeros(width, 2),
        },
        str(path),
        metadata=metadata,
    )


@pytest.fixture
def lora_folder(tmp_path):
    folder = tmp_path / "my-loras"
    folder.mkdir()
    clay = {"modelspec.architecture": "stable-diffusion-v3.5-medium/lora", "modelspec.title": "Clay",
            "modelspec.trigger_phrase": "claymation, soft light"}  # fmt: skip
    _lora(folder / "clay.safetensors", 1536, clay)
    Image.new("RGB", (64, 64), (200, 120, 60)).save(folder / "clay.preview.png")
    ink = {"ss_output_name": "Ink Wash " + "with a very long title that must elide " * 3}
    _lora(folder / "ink_wash_large.safetensors", 2432, ink)
    save_json(open_settings(), "loras/folders", [str(folder)])
    return folder


def _ready_with_loras(qtbot, window):
    wait_until_ready(qtbot, window)
    qtbot.waitUntil(lambda: window.state.lora_catalog.scanned, timeout=15000)
    panel = window.panel.loras
    qtbot.mouseClick(panel.toggle, Qt.MouseButton.LeftButton)
    assert panel.is_expanded()
    return panel


def _item(panel, name):
    return next(panel.list.item(i) for i in range(panel.list.count()) if name in panel.list.item(i).text())


def _settle(qtbot, window):
    """Tokenizers load on their own thread (seconds on a loaded machine): let that finish inside the test."""
    qtbot.waitUntil(lambda: not window.token_counter.is_loading(), timeout=60000)


def _generate(qtbot, window):
    with qtbot.waitSignal(window.controller.job_ended, timeout=15000):
        qtbot.keyClick(window.panel.prompt.edit, Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier)


def test_add_lora_from_the_panel_set_its_strength_and_generate(
    qtbot, make_window, lora_folder, fake_sessions, tmp_path
):
    window = make_window()
    panel = _ready_with_loras(qtbot, window)
    size = window.size()
    window.state.update(steps=2, width=64, height=64)
    clay = _item(panel, "Clay")
    assert "Medium" in clay.text() and not clay.icon().isNull()  # badge and preview thumbnail
    ink = _item(panel, "Ink Wash")
    assert not ink.flags() & Qt.ItemFlag.ItemIsEnabled  # greyed: the tiny model is SD3.5 Medium
    assert "cannot be used with SD3.5 Medium" in ink.toolTip()

    rect = panel.list.visualItemRect(clay)
    qtbot.mouseClick(panel.list.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    qtbot.mouseClick(panel.add_button, Qt.MouseButton.LeftButton)
    (row,) = panel.rows
    assert window.state.loras == (LoraSpec(lora_folder / "clay.safetensors", 1.0),)
    row.slider.setFocus()
    qtbot.keyClick(row.slider, Qt.Key.Key_PageDown)  # one page = 0.1
    assert window.state.loras[0].strength == pytest.approx(0.9)
    row.spin.selectAll()
    qtbot.keyClicks(row.spin, "-0.35")  # typed, not confirmed: Generate still takes it
    qtbot.mouseClick(row.triggers, Qt.MouseButton.LeftButton)
    assert window.panel.prompt.text() == "claymation, soft light"
    qtbot.keyClicks(window.panel.prompt.edit, ", a clay fox")
    qtbot.wait(50)  # posted layout requests
    window.settings_scroll.ensureWidgetVisible(row)
    qtbot.wait(20)
    window.grab().save("/tmp/addonui-lora-panel.png")
    assert window.size() == size and window.panel.width() <= window.settings_scroll.viewport().width()

    _generate(qtbot, window)
    request = fake_sessions.instances[0].runs[-1][1]
    assert request.prompt == "claymation, soft light, a clay fox"
    assert [(s.path, s.strength, s.te_strength) for s in request.loras] == [
        (lora_folder / "clay.safetensors", -0.35, None)]  # fmt: skip
    assert row.slider.value() == -35
    (png,) = (tmp_path / "out").glob("*.png")  # the image's A1111 text names the LoRA as A1111 writes it
    with Image.open(png) as im:
        assert im.text["parameters"].startswith("claymation, soft light, a clay fox <lora:clay:-0.35>\n")

    qtbot.mouseClick(row.remove, Qt.MouseButton.LeftButton)
    assert window.state.loras == () and panel.rows == []
    _settle(qtbot, window)


def test_prompt_tag_adds_the_lora_and_is_not_sent_as_text(qtbot, make_window, lora_folder, fake_sessions):
    window = make_window()
    _ready_with_loras(qtbot, window)
    window.state.update(steps=2, width=64, height=64)
    qtbot.keyClicks(window.panel.prompt.edit, "a fox <lora:clay:0.5> in snow")
    spans = window.panel.prompt.highlighter.spans()
    assert any(s.kind.value == "lora" and (s.start, s.length) == (6, 15) for s in spans)
    _generate(qtbot, window)
    request = fake_sessions.instances[0].runs[-1][1]
    assert request.prompt == "a fox in snow"
    assert request.loras == (LoraSpec(lora_folder / "clay.safetensors", 0.5),)

    # an unknown name is said before Generate, not sent to the engine
    window.panel.prompt.edit.selectAll()
    qtbot.keyClicks(window.panel.prompt.edit, "a fox <lora:nope:0.5>")
    assert "no LoRA named “nope”" in window.panel.loras.problem.text()
    assert window.panel.loras.problem.isVisible()
    runs = len(fake_sessions.instances[0].runs)
    qtbot.keyClick(window.panel.prompt.edit, Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier)
    qtbot.wait(200)
    assert len(fake_sessions.instances[0].runs) == runs and "nope" in window.banner.text.text()
    _settle(qtbot, window)


def test_controlnet_file_image_strength_and_map(qtbot, make_window, large_model, tmp_path, fake_sessions):
    cn_folder = tmp_path / "controlnet"
    cn = write_controlnet(cn_folder / "sd3.5_large_controlnet_canny.safetensors")
    save_json(open_settings(), "controlnets/folders", [str(cn_folder)])
    image = write_square_picture(tmp_path / "house.png")

    window = make_window(model_path=large_model)
    wait_until_ready(qtbot, window)
    window.state.update(steps=2, width=64, height=64)
    section = window.panel.controlnet
    qtbot.mouseClick(section.toggle, Qt.MouseButton.LeftButton)
    (unit,) = section.units  # one empty ControlNet to start with
    qtbot.waitUntil(lambda: unit.file_combo.findData(str(cn)) >= 0, timeout=15000)
    assert "(canny)" in unit.file_combo.itemText(unit.file_combo.findData(str(cn)))
    unit.file_combo.setFocus()
    qtbot.keyClick(unit.file_combo, Qt.Key.Key_Down)  # the first discovered ControlNet
    assert unit.file() == cn
    assert "choose a control image" in window.state.problems()["controlnets"]
    unit.set_image(image)  # as Open… or a drop does
    index = unit.preprocess_combo.findData("canny")
    unit.preprocess_combo.setCurrentIndex(index)
    unit.strength_spin.selectAll()
    qtbot.keyClicks(unit.strength_spin, "0.7")
    qtbot.keyClick(unit.strength_spin, Qt.Key.Key_Return)
    assert unit.strength_slider.value() == 70
    qtbot.waitUntil(lambda: not unit.map_view.pixmap().isNull(), timeout=15000)
    shown = unit.map_view.pixmap().toImage()
    colours = {
        shown.pixelColor(x, y).lightness() > 128 for x in range(shown.width()) for y in range(shown.height())
    }
    assert colours == {True, False}  # the canny map: white edges on black
    window.settings_scroll.ensureWidgetVisible(unit.map_view)
    qtbot.wait(50)
    window.grab().save("/tmp/addonui-controlnet.png")
    assert window.panel.width() <= window.settings_scroll.viewport().width()  # nothing clipped on the right

    offered = (window.state.values.sampler, window.state.values.steps, window.state.values.cfg)
    assert offered == ("dpmpp_2m", 2, 3.5)  # choosing a ControlNet changed nothing by itself
    qtbot.mouseClick(section.recommended_button, Qt.MouseButton.LeftButton)
    assert (window.state.values.sampler, window.state.values.steps, window.state.values.cfg) == (
        "euler",
        60,
        3.5,
    )
    window.state.update(steps=2)
    qtbot.keyClicks(window.panel.prompt.edit, "a house")
    _generate(qtbot, window)
    (spec,) = fake_sessions.instances[0].runs[-1][1].controlnets
    assert (spec.file, spec.image, spec.strength, spec.start, spec.end) == (cn, image, 0.7, 0.0, 1.0)
    assert (spec.control_type, spec.preprocess.kind) == ("canny", "canny")

    qtbot.mouseClick(unit.canvas_button, Qt.MouseButton.LeftButton)  # the finished image as control image
    assert unit.image == window.shown_result.path and unit.image.is_file()
    _settle(qtbot, window)


def test_controlnet_on_medium_is_refused_inline(qtbot, make_window, tmp_path, fake_sessions):
    window = make_window()  # the tiny model set is SD3.5 Medium
    wait_until_ready(qtbot, window)
    section = window.panel.controlnet
    qtbot.mouseClick(section.toggle, Qt.MouseButton.LeftButton)
    assert "SD3.5 Large" in section.note.text() and section.note.isVisible()
    (unit,) = section.units
    cn = write_controlnet(tmp_path / "cn.safetensors")
    image = tmp_path / "i.png"
    Image.new("RGB", (32, 32)).save(image)
    unit.choose_file(cn)
    unit.set_image(image)
    assert "choose a Large model" in window.state.problems()["controlnets"]
    assert "choose a Large model" in section.note.text()
    window.state.update(prompt="a fox")
    qtbot.keyClick(window.panel.prompt.edit, Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier)
    qtbot.wait(200)
    assert not fake_sessions.instances or not fake_sessions.instances[0].runs
    _settle(qtbot, window)


def test_recall_restores_the_loras_found_here_and_warns_about_the_others(qtbot, make_window, lora_folder):
    window = make_window()
    _ready_with_loras(qtbot, window)
    qtbot.waitUntil(lambda: window.gallery.panel is not None, timeout=5000)
    text = (
        "a red fox <lora:clay:0.6> <lora:gone:0.3>, snow\nSteps: 23, Sampler: Euler, CFG scale: 3.5, Seed: 4242, "
        'Size: 256x256, Model: sd3.5_medium, Lora hashes: "clay: 0123456789ab, gone: 111111111111"'
    )
    png = write_a1111_png(tmp_png := lora_folder.parent / "fox.png", text)
    assert png == tmp_png and drop_on(window.canvas, file_mime(png))
    choose(qtbot, window, "Reuse its settings")  # the drop asks: reuse the settings or use as input
    qtbot.waitUntil(lambda: window.state.values.seed == 4242, timeout=5000)
    assert window.state.values.prompt == "a red fox, snow"
    assert window.state.loras == (LoraSpec(lora_folder / "clay.safetensors", 0.6),)
    assert [r.spec.strength for r in window.panel.loras.rows] == [0.6]
    message = window.statusBar().currentMessage()
    assert "LoRA gone is not on this machine" in message
    assert "LoRA clay: the file here" in message and "not the one the image was made with" in message
    _settle(qtbot, window)


def test_control_image_dropped_on_the_section_and_tags_not_counted(qtbot, make_window, tmp_path):
    window = make_window()
    wait_until_ready(qtbot, window)
    section = window.panel.controlnet
    qtbot.mouseClick(section.toggle, Qt.MouseButton.LeftButton)
    (unit,) = section.units  # one empty ControlNet to start with
    image = tmp_path / "sketch.png"
    Image.new("RGB", (48, 32), "white").save(image)
    assert drop_on(section, file_mime(image))
    assert unit.image == image and unit.enabled_check.isChecked()
    assert "choose a ControlNet file" in window.state.problems()["controlnets"]
    assert not unit.source_view.pixmap().isNull()

    counted = []
    window.token_counter.request = lambda key, text: counted.append((key, text))
    qtbot.keyClicks(window.panel.prompt.edit, "fox <lora:clay:0.5>")
    assert counted[-1][0] == "prompt" and "<lora" not in counted[-1][1] and counted[-1][1].strip() == "fox"
    _settle(qtbot, window)


def test_a_failing_folder_scan_is_said_and_leaves_the_panel_usable(qtbot, make_window, monkeypatch):
    def broken(folders, defaults):
        raise OSError("disk went away")

    monkeypatch.setattr("app.ui.window.addon_hookup.lora_scan", broken)
    window = make_window()
    wait_until_ready(qtbot, window)
    qtbot.waitUntil(lambda: window.state.lora_catalog.scanned, timeout=15000)
    assert "disk went away" in window.statusBar().currentMessage()
    assert "No LoRA files found" in window.panel.loras.status.text()
    _settle(qtbot, window)
