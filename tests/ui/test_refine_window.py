"""Refine in the window, driven with real clicks, keys and drags on the fake session: the mode switch, the mask
brush and its undo, what Inpaint / Outpaint / the hires fix send, and a dropped image's two meanings."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from PySide6.QtCore import QPoint, Qt
from PySide6.QtWidgets import QApplication

from tests.gallery.helpers import write_a1111_png
from tests.ui.conftest import wait_until_ready
from tests.ui.test_image_drop import TEXT, drop_on, file_mime

LEFT = Qt.MouseButton.LeftButton


def plain_png(path: Path, size=(256, 192)) -> Path:
    """A picture without generation settings."""
    ramp = np.linspace(0, 255, size[0], dtype=np.uint8)[None, :, None]
    Image.fromarray(np.broadcast_to(ramp, (size[1], size[0], 3)).copy(), "RGB").save(path)
    return path


def ready_window(qtbot, make_window):
    window = make_window()
    wait_until_ready(qtbot, window)
    window.state.update(steps=2, random_seed=False, seed=5)
    return window


@pytest.fixture(autouse=True)
def _tokenizers_loaded(qtbot):
    """A prompt counted for the first time loads the tokenizers on their one thread (transformers: seconds on a
    busy machine, and the load runs on even when its count is superseded); let it finish before the thread
    check at teardown (this runs after the window closed and shut the executor down)."""
    yield
    from app.ui.form.token_counter import DEBOUNCE_MS
    from app.ui.window.main_window import MainWindow

    qtbot.wait(DEBOUNCE_MS + 50)  # a count still waiting for typing to pause starts now
    for widget in QApplication.topLevelWidgets():
        if isinstance(widget, MainWindow):
            for thread in list(widget.token_counter._executor._threads):
                thread.join(timeout=60)


def image_pos(window, x: float, y: float) -> QPoint:
    """The widget point over image pixel (x, y) of what the canvas shows."""
    canvas = window.canvas
    rect = canvas._target_rect()
    size = canvas.logical_size()
    return QPoint(round(rect.left() + x / size.width() * rect.width()),
                  round(rect.top() + y / size.height() * rect.height()))  # fmt: skip


def paint_stroke(qtbot, window, start, end):
    canvas = window.canvas
    qtbot.mousePress(canvas, LEFT, pos=image_pos(window, *start))
    for t in (0.25, 0.5, 0.75, 1.0):
        x = start[0] + (end[0] - start[0]) * t
        y = start[1] + (end[1] - start[1]) * t
        qtbot.mouseMove(canvas, image_pos(window, x, y))
    qtbot.mouseRelease(canvas, LEFT, pos=image_pos(window, *end))


def mask_value(window, x, y) -> int:
    return window.refine.mask.image.pixelColor(x, y).value()


def start_inpaint(qtbot, window, tmp_path):
    source = plain_png(tmp_path / "photo.png")
    assert window.refine.use_file(source)
    qtbot.mouseClick(window.refine_bar.mode_buttons["inpaint"], LEFT)
    assert window.state.values.refine_mode == "inpaint"
    assert window.refine.shows_input() and window.canvas.mask_overlay.active
    return source


def test_painting_a_stroke_changes_the_mask_and_undo_restores_it(qtbot, make_window, tmp_path):
    window = ready_window(qtbot, make_window)
    start_inpaint(qtbot, window, tmp_path)
    assert window.refine.mask.is_empty()
    window.refine_bar.size_spin.setValue(24)

    paint_stroke(qtbot, window, (60, 90), (180, 90))

    assert mask_value(window, 120, 90) == 255  # on the stroke
    assert mask_value(window, 120, 20) == 0  # far from it
    assert window.refine_bar.undo_button.isEnabled()
    qtbot.mouseClick(window.refine_bar.undo_button, LEFT)
    assert window.refine.mask.is_empty()
    qtbot.mouseClick(window.refine_bar.redo_button, LEFT)
    assert mask_value(window, 120, 90) == 255

    qtbot.mouseClick(window.refine_bar.eraser_button, LEFT)
    paint_stroke(qtbot, window, (100, 90), (140, 90))
    assert mask_value(window, 120, 90) == 0 and mask_value(window, 70, 90) == 255


def test_an_inpaint_job_sends_the_painted_mask(qtbot, make_window, tmp_path, fake_sessions):
    window = ready_window(qtbot, make_window)
    source = start_inpaint(qtbot, window, tmp_path)
    window.refine_bar.size_spin.setValue(32)
    paint_stroke(qtbot, window, (40, 40), (40, 150))
    window.state.update(prompt="a red door")

    with qtbot.waitSignal(window.controller.job_ended, timeout=10000):
        qtbot.keyClick(window.panel.prompt.edit, Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier)

    request = fake_sessions.instances[0].runs[0][1]
    assert request.init_image == source and request.mask_image is not None
    assert request.denoise == window.state.values.denoise
    mask = np.asarray(Image.open(request.mask_image).convert("L"))
    assert mask.shape == (192, 256)
    assert mask[100, 40] == 255 and mask[100, 200] == 0 and mask[5, 5] == 0


def test_inpaint_with_nothing_painted_says_what_to_do(qtbot, make_window, tmp_path, fake_sessions):
    window = ready_window(qtbot, make_window)
    start_inpaint(qtbot, window, tmp_path)
    window.state.update(prompt="a red door")
    assert window.commands.generate.generate() is None
    assert "paint over the part to regenerate" in window.banner.text.text().lower()


def test_outpaint_sides_and_hires_fields_go_into_the_request(qtbot, make_window, tmp_path, fake_sessions):
    window = ready_window(qtbot, make_window)
    source = plain_png(tmp_path / "photo.png")
    window.refine.use_file(source)
    qtbot.mouseClick(window.refine_bar.mode_buttons["outpaint"], LEFT)
    for field, typed in (("outpaint_left", "128"), ("outpaint_bottom", "64")):
        spin = window.refine_bar.side_spins[field]
        spin.lineEdit().selectAll()
        qtbot.keyClicks(spin.lineEdit(), typed)
        qtbot.keyClick(spin.lineEdit(), Qt.Key.Key_Return)
    assert window.canvas.image().size().width() == 256 + 128  # the extended area shows
    assert window.canvas.image().size().height() == 192 + 64
    qtbot.mouseClick(window.refine_settings.hires_check, LEFT)
    scale = window.refine_settings.hires_scale_spin
    scale.lineEdit().selectAll()
    qtbot.keyClicks(scale.lineEdit(), "2")
    qtbot.keyClick(scale.lineEdit(), Qt.Key.Key_Return)
    window.state.update(prompt="a wide beach")

    with qtbot.waitSignal(window.controller.job_ended, timeout=10000):
        qtbot.keyClick(window.panel.prompt.edit, Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier)

    request = fake_sessions.instances[0].runs[0][1]
    assert request.init_image == source and request.mask_image is None
    assert request.outpaint == (128, 0, 0, 64)
    assert (request.hires_scale, request.hires_denoise, request.hires_steps) == (2.0, 0.4, None)


def test_generate_mode_sends_no_refine_fields(qtbot, make_window, tmp_path, fake_sessions):
    window = ready_window(qtbot, make_window)
    window.refine.use_file(plain_png(tmp_path / "photo.png"))
    qtbot.mouseClick(window.refine_bar.mode_buttons["generate"], LEFT)
    window.state.update(prompt="a fox")
    job = window.commands.generate.generate()
    assert job.request.init_image is None and job.request.hires_scale == 1.0
    qtbot.waitUntil(lambda: not window.controller.is_busy, timeout=10000)


def click_menu_entry(qtbot, menu, text):
    qtbot.waitUntil(menu.isVisible, timeout=3000)
    (action,) = [a for a in menu.actions() if a.text() == text]
    qtbot.mouseClick(menu, LEFT, pos=menu.actionGeometry(action).center())


def test_a_dropped_png_with_settings_offers_both_choices_and_each_does_what_it_says(
    qtbot, make_window, tmp_path
):
    window = ready_window(qtbot, make_window)
    qtbot.waitUntil(lambda: window.gallery.panel is not None, timeout=5000)
    png = write_a1111_png(tmp_path / "fox.png", TEXT)

    assert drop_on(window.canvas, file_mime(png))
    menu = window.drop_choice.menu
    texts = [a.text() for a in menu.actions() if not a.isSeparator()]
    assert texts == ["Reuse its settings", "Use as input image"]
    click_menu_entry(qtbot, menu, "Use as input image")
    assert window.state.values.init_image == str(png) and window.state.values.refine_mode == "img2img"
    assert window.state.values.seed == 5  # its settings were not taken
    assert window.refine.shows_input()

    assert drop_on(window.panel.prompt.edit.viewport(), file_mime(png))
    click_menu_entry(qtbot, window.drop_choice.menu, "Reuse its settings")
    qtbot.waitUntil(lambda: window.state.values.seed == 4242, timeout=5000)
    assert window.state.values.prompt == "a red fox in fresh snow, watercolour"


def test_a_dropped_picture_without_settings_becomes_the_input_image(qtbot, make_window, tmp_path):
    window = ready_window(qtbot, make_window)
    photo = plain_png(tmp_path / "holiday.png")
    assert drop_on(window.canvas, file_mime(photo))
    assert window.drop_choice.menu is None
    assert window.state.values.init_image == str(photo) and window.state.values.refine_mode == "img2img"
    assert (window.state.values.width, window.state.values.height) == (256, 192)


def test_paste_and_use_shown_set_the_input(qtbot, make_window, tmp_path):
    from PySide6.QtGui import QImage

    window = ready_window(qtbot, make_window)
    picture = QImage(str(plain_png(tmp_path / "clip.png", (128, 128))))
    QApplication.clipboard().setImage(picture)
    qtbot.keyClick(
        window, Qt.Key.Key_V, Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier
    )
    pasted = Path(window.state.values.init_image)
    assert pasted.is_file() and pasted.name.startswith("pasted-")
    assert window.refine.input.size().width() == 128


def test_recalling_a_refine_image_restores_its_fields_or_says_the_input_is_gone(qtbot, make_window, tmp_path):
    from app.inference.api.request import GenerationRequest

    window = ready_window(qtbot, make_window)
    source = plain_png(tmp_path / "photo.png")
    mask_file = tmp_path / "mask.png"
    mask = np.zeros((192, 256), np.uint8)
    mask[10:50, 20:60] = 255
    Image.fromarray(mask, "L").save(mask_file)
    request = GenerationRequest(prompt="a door", init_image=source, denoise=0.45, mask_image=mask_file,
                                mask_grow=3, hires_scale=1.5, hires_steps=9)  # fmt: skip
    window.state.apply_request(request, seed=11)
    v = window.state.values
    assert (v.refine_mode, v.init_image, v.denoise, v.mask_grow) == ("inpaint", str(source), 0.45, 3)
    assert (v.hires_enabled, v.hires_scale, v.hires_steps) == (True, 1.5, 9)
    assert mask_value(window, 30, 20) == 255 and mask_value(window, 100, 100) == 0

    gone = GenerationRequest(prompt="a door", init_image=tmp_path / "deleted.png", denoise=0.45)
    window.state.apply_request(gone, seed=11)
    assert window.state.values.refine_mode == "generate"
    assert "deleted.png no longer exists" in window.state.notes["init_image"]


def test_screenshots_of_each_mode(qtbot, make_window, tmp_path):
    window = ready_window(qtbot, make_window)
    window.resize(1280, 800)
    width = window.width()
    window.refine.use_file(
        plain_png(tmp_path / "a-rather-long-file-name-for-an-input-image-from-a-camera.png")
    )
    for mode in ("generate", "img2img", "inpaint", "outpaint"):
        qtbot.mouseClick(window.refine_bar.mode_buttons[mode], LEFT)
        if mode == "inpaint":
            paint_stroke(qtbot, window, (40, 40), (200, 150))
        if mode == "outpaint":
            window.state.update(outpaint_right=128, outpaint_top=64)
        qtbot.wait(50)
        window.grab().save(f"/tmp/refineui-{mode}.png")
        assert window.width() == width  # the window never grows


def test_a_pen_paints_with_its_pressure(qtbot, make_window, tmp_path):
    """A tablet stroke (QTabletEvent) paints a dab scaled by the pen's pressure, without a mouse event."""
    from PySide6.QtCore import QPointF
    from PySide6.QtGui import QPointingDevice, QTabletEvent

    window = ready_window(qtbot, make_window)
    start_inpaint(qtbot, window, tmp_path)
    window.refine_bar.size_spin.setValue(80)
    window.refine_bar.hardness_spin.setValue(100)

    def pen(kind, x, y, pressure):
        pos = QPointF(image_pos(window, x, y))
        event = QTabletEvent(kind, QPointingDevice.primaryPointingDevice(), pos, window.canvas.mapToGlobal(pos),
                             pressure, 0.0, 0.0, 0.0, 0.0, 0.0, Qt.KeyboardModifier.NoModifier,
                             LEFT, LEFT)  # fmt: skip
        QApplication.sendEvent(window.canvas, event)
        return event.isAccepted()

    assert pen(QTabletEvent.Type.TabletPress, 60, 60, 0.25)
    pen(QTabletEvent.Type.TabletRelease, 60, 60, 0.25)
    assert pen(QTabletEvent.Type.TabletPress, 180, 60, 1.0)
    pen(QTabletEvent.Type.TabletRelease, 180, 60, 1.0)
    # A light touch: a 20 px dab (radius 10); full pressure: 80 px (radius 40).
    assert mask_value(window, 60, 60) == 255 and mask_value(window, 60, 60 + 20) == 0
    assert mask_value(window, 180, 60 + 30) == 255


def test_use_as_input_image_in_the_gallery_menu(qtbot, make_window, tmp_path):
    from app.ui.gallery.menu import build_context_menu

    window = ready_window(qtbot, make_window)
    qtbot.waitUntil(lambda: window.gallery.panel is not None, timeout=5000)
    photo = plain_png(tmp_path / "kept.png")

    class Record:
        path, id = photo, 1

    menu = build_context_menu(window, window.gallery.panel, [Record()])
    menu.popup(window.mapToGlobal(QPoint(100, 100)))
    click_menu_entry(qtbot, menu, "Use as Input Image")
    assert window.state.values.init_image == str(photo) and window.state.values.refine_mode == "img2img"


def test_a_refined_image_says_what_it_was_made_from_and_compares_before_after(
    qtbot, make_window, tmp_path, fake_sessions
):
    window = ready_window(qtbot, make_window)
    qtbot.waitUntil(lambda: window.gallery.panel is not None, timeout=5000)
    source = plain_png(tmp_path / "sketch.png")
    window.refine.use_file(source)
    window.state.update(prompt="a painting of a hill")
    with qtbot.waitSignal(window.controller.job_ended, timeout=10000):
        qtbot.keyClick(window.panel.prompt.edit, Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier)

    result = window.shown.result
    assert "made from sketch.png" in window.canvas.caption()
    panel = window.gallery.panel
    qtbot.waitUntil(lambda: str(result.path) in panel.db.ids_for_paths([result.path]), timeout=10000)
    (record,) = panel.db.get(list(panel.db.ids_for_paths([result.path]).values()))
    from app.ui.gallery.list_model import made_from

    assert f"Made from {source}" in made_from(record)

    qtbot.mouseClick(window.refine_bar.compare_button, LEFT)
    compare = panel.compare
    assert window.stack.currentWidget() is compare
    assert [r.path for r in compare.records] == [source, result.path]


def test_upscale_in_the_gallery_menu_prepares_a_larger_image_to_image_job(qtbot, make_window, tmp_path):
    from app.metadata.params import ImageParams
    from app.ui.gallery.menu import build_context_menu

    window = ready_window(qtbot, make_window)
    qtbot.waitUntil(lambda: window.gallery.panel is not None, timeout=5000)
    photo = plain_png(tmp_path / "made.png", (256, 128))

    class Record:
        path, id, rating, source = photo, 1, 0, "sd35-studio"
        params = ImageParams.from_fields(prompt="a fox at dusk", seed=77, steps=9)

    menu = build_context_menu(window, window.gallery.panel, [Record()])
    menu.popup(window.mapToGlobal(QPoint(100, 100)))
    click_menu_entry(qtbot, menu, "Upscale ×1.5")
    v = window.state.values
    assert (v.prompt, v.steps) == ("a fox at dusk", 9)  # its own settings
    assert (v.refine_mode, v.init_image, v.denoise) == ("img2img", str(photo), 0.35)
    assert (v.width, v.height) == (384, 192)


def test_use_shown_takes_the_finished_image_on_the_canvas_as_input(qtbot, make_window, fake_sessions):
    window = ready_window(qtbot, make_window)
    window.state.update(prompt="a hill", width=128, height=64)
    with qtbot.waitSignal(window.controller.job_ended, timeout=10000):
        qtbot.mouseClick(window.generate_button, LEFT)
    result = window.shown.result
    qtbot.mouseClick(window.refine_bar.mode_buttons["img2img"], LEFT)
    qtbot.mouseClick(window.refine_bar.use_shown_button, LEFT)
    assert window.state.values.init_image == str(result.path)
    assert window.refine.shows_input() and window.canvas.image().size().width() == 128


def test_the_refine_mode_and_input_come_back_after_a_restart(qtbot, make_window, tmp_path):
    window = ready_window(qtbot, make_window)
    photo = plain_png(tmp_path / "photo.png")
    window.refine.use_file(photo)
    qtbot.mouseClick(window.refine_bar.mode_buttons["inpaint"], LEFT)
    window.close()

    again = make_window()
    wait_until_ready(qtbot, again)
    assert (
        again.state.values.refine_mode == "inpaint" and again.refine_bar.mode_buttons["inpaint"].isChecked()
    )
    assert again.refine.shows_input() and again.canvas.mask_overlay.active
