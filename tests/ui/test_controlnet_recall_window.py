"""Recall in the window matches an image's ControlNet names to the files found here: "Use These Settings" on an
A1111 picture (sd-webui-controlnet's `ControlNet N` text names the model only) restores each unit with the local
file, and warns only about the ControlNet that is not here; a kept control image is found again after the output
folder moved."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QPoint, Qt
from PySide6.QtGui import QColor, QGuiApplication, QImage

from app.metadata.control_image_search import KEPT_FOLDER_NAME
from app.ui.gallery.menu import build_context_menu
from tests.factory.controlnet_model import write_controlnet
from tests.gallery.helpers import write_a1111_png
from tests.gallery.test_controlnet_a1111 import BLUR, CANNY, DEPTH, EXTENSION_TEXT
from tests.ui.conftest import controlnet_window, wait_until_ready
from tests.ui.test_image_drop import choose, drop_on, file_mime
from tests.ui.test_refine_window import click_menu_entry


def test_use_these_settings_on_an_a1111_image_restores_controlnets_with_the_files_here(
    qtbot,
    make_window,
    large_model,
    tmp_path,
):
    folder = tmp_path / "my-controlnets"  # canny and blur are here, depth is not
    canny = write_controlnet(folder / CANNY, control_type="canny")
    blur = write_controlnet(folder / BLUR, control_type="blur", seed=1)
    pictures = tmp_path / "from-a1111"
    pictures.mkdir()
    write_a1111_png(pictures / "castle.png", EXTENSION_TEXT)

    window = make_window(model_path=large_model)
    wait_until_ready(qtbot, window)
    qtbot.waitUntil(lambda: window.gallery.panel is not None, timeout=5000)
    panel = window.gallery.panel
    window.addons.add_controlnet_files((canny, blur))  # as a download or a chosen folder does
    qtbot.waitUntil(lambda: panel.loaded.controlnet_files == (blur, canny), timeout=15000)
    panel.import_folder(pictures)
    qtbot.waitUntil(lambda: len(panel.shown_records()) == 1, timeout=15000)
    (record,) = panel.shown_records()

    menu = build_context_menu(window, panel, [record])
    menu.popup(window.mapToGlobal(QPoint(100, 100)))
    click_menu_entry(qtbot, menu, "Use These Settings")
    qtbot.waitUntil(lambda: len(window.state.controlnets) == 3, timeout=5000)

    section = window.panel.controlnet
    assert [s.file for s in window.state.controlnets] == [canny, blur, Path(DEPTH)]  # depth: only its name
    assert [u.file() for u in section.units[:2]] == [canny, blur]  # chosen in the units' file lists
    assert [(s.strength, s.start, s.end) for s in window.state.controlnets] == [
        (0.8, 0.0, 0.75),
        (0.5, 0.1, 1.0),
        (1.0, 0.0, 1.0),
    ]
    status = window.statusBar().currentMessage()
    assert f"ControlNet file {DEPTH} is missing" in status
    assert CANNY not in status and BLUR not in status  # found here: no warning about them
    assert window.state.problems()["controlnets"].startswith(
        "ControlNet 1: choose a control image, or switch"
    )
    window.settings_scroll.ensureWidgetVisible(section)
    assert section.units[1].summary.full_text() == "⚠ 2 · blur · no image · strength 0.5"
    section.set_expanded(True)
    qtbot.wait(50)
    section.grab().save("/tmp/cnfollow-shot-recall.png")
    qtbot.waitUntil(lambda: not window.token_counter.is_loading(), timeout=60000)


def test_recall_finds_a_kept_control_image_after_the_output_folder_moved(
    qtbot, make_window, large_model, tmp_path, fake_sessions
):
    cn = write_controlnet(tmp_path / BLUR, control_type="blur")
    window, section = controlnet_window(qtbot, make_window, large_model)
    (unit,) = section.units
    unit.choose_file(cn)
    picture = QImage(24, 16, QImage.Format.Format_RGB32)
    picture.fill(QColor(30, 160, 90))
    QGuiApplication.clipboard().setImage(picture)
    qtbot.mouseClick(unit.paste_button, Qt.MouseButton.LeftButton)
    qtbot.keyClicks(window.panel.prompt.edit, "a kept picture")
    with qtbot.waitSignal(window.controller.job_ended, timeout=15000):
        qtbot.mouseClick(window.generate_button, Qt.MouseButton.LeftButton)
    (kept,) = (tmp_path / "out" / KEPT_FOLDER_NAME).glob("*.png")
    (output,) = (tmp_path / "out").glob("*.png")
    qtbot.waitUntil(lambda: len(window.gallery.panel.shown_records()) == 1, timeout=15000)

    # the output folder is moved (another disk); the recorded control image path is gone
    moved = tmp_path / "archive" / "out"
    moved.parent.mkdir()
    (tmp_path / "out").rename(moved)
    window.state.set_controlnets(())
    assert drop_on(window.canvas, file_mime(moved / output.name))
    choose(qtbot, window, "Reuse its settings")
    qtbot.waitUntil(lambda: len(window.state.controlnets) == 1, timeout=5000)
    assert section.units[0].image == moved / KEPT_FOLDER_NAME / kept.name
    assert window.state.problems() == {}
    assert "Control image" not in window.statusBar().currentMessage()
    qtbot.waitUntil(lambda: not window.token_counter.is_loading(), timeout=60000)


def test_a_comfyui_image_is_recalled_with_the_controlnet_files_found_here(
    qtbot, make_window, large_model, tmp_path
):
    from PIL import Image, PngImagePlugin

    from app.inference.api.control import ControlPreprocess, ControlSpec
    from app.inference.api.request import GenerationRequest
    from app.metadata.comfy_graph import ComfyFiles, comfy_chunks
    from app.metadata.params import ImageParams
    from app.metadata.png_info import COMFY_PROMPT_KEY, COMFY_WORKFLOW_KEY

    here = write_controlnet(tmp_path / "here" / CANNY, control_type="canny")
    made_with = ControlSpec(Path("/other/machine") / CANNY, Path("/other/machine/edges.png"), 0.7, 0.0, 0.6,
                            "canny", ControlPreprocess("canny"))  # fmt: skip
    request = GenerationRequest(prompt="a bridge", controlnets=(made_with,)).resolved("large")
    params = ImageParams.from_request(request, 11, variant="large", model_name="sd3.5_large")
    prompt_text, workflow_text = comfy_chunks(params, ComfyFiles(checkpoint="sd3.5_large.safetensors"))
    info = PngImagePlugin.PngInfo()
    info.add_text(COMFY_PROMPT_KEY, prompt_text)
    info.add_text(COMFY_WORKFLOW_KEY, workflow_text)
    png = tmp_path / "ComfyUI_00001_.png"
    Image.new("RGB", (32, 32), (90, 90, 90)).save(png, pnginfo=info)

    window = make_window(model_path=large_model)
    wait_until_ready(qtbot, window)
    qtbot.waitUntil(lambda: window.gallery.panel is not None, timeout=5000)
    window.addons.add_controlnet_files((here,))
    qtbot.waitUntil(
        lambda: window.panel.controlnet.units[0].file_combo.findData(str(here)) >= 0, timeout=15000
    )
    assert drop_on(window.canvas, file_mime(png))
    choose(qtbot, window, "Reuse its settings")
    qtbot.waitUntil(lambda: len(window.state.controlnets) == 1, timeout=5000)
    (spec,) = window.state.controlnets
    assert (spec.file, spec.strength, spec.end) == (here, 0.7, 0.6)
    assert window.panel.controlnet.units[0].file() == here
    assert f"ControlNet file {CANNY}" not in window.statusBar().currentMessage()
    qtbot.waitUntil(lambda: not window.token_counter.is_loading(), timeout=60000)
