"""Several ControlNets in the window: units added and removed with real clicks, the request the (fake) engine gets
carries each one in order, saved settings and recall bring every unit back, a missing file is said."""

from pathlib import Path

import pytest
from PIL import Image
from PySide6.QtCore import Qt

from app.inference.api.control import ControlPreprocess, ControlSpec
from app.ui.form.controlnet_section import ControlNetSection
from app.ui.form.form_state import GenerationFormState
from tests.factory.controlnet_model import write_controlnet
from tests.ui.conftest import controlnet_window, write_square_picture
from tests.ui.test_image_drop import choose, drop_on, file_mime


@pytest.fixture
def two_controlnets(tmp_path):
    folder = tmp_path / "controlnet"
    canny = write_controlnet(folder / "sd3.5_large_controlnet_canny.safetensors", control_type="canny")
    depth = write_controlnet(folder / "sd3.5_large_controlnet_depth.safetensors", control_type="depth")
    edges, depth_map = tmp_path / "edges.png", tmp_path / "depth.png"
    write_square_picture(edges)
    Image.linear_gradient("L").resize((64, 64)).convert("RGB").save(depth_map)
    return canny, depth, edges, depth_map


def _type(qtbot, spin, text):
    spin.setFocus()
    spin.selectAll()
    qtbot.keyClicks(spin, text)
    qtbot.keyClick(spin, Qt.Key.Key_Return)


def _generate(qtbot, window):
    with qtbot.waitSignal(window.controller.job_ended, timeout=15000):
        qtbot.keyClick(window.panel.prompt.edit, Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier)


def _settle(qtbot, window):
    qtbot.waitUntil(lambda: not window.token_counter.is_loading(), timeout=60000)


def test_two_controlnets_reach_the_engine_in_order_and_recall_restores_both(
    qtbot, make_window, large_model, two_controlnets, tmp_path, fake_sessions
):
    canny, depth, edges, depth_map = two_controlnets
    window, section = controlnet_window(qtbot, make_window, large_model)
    qtbot.wait(50)  # posted layout requests
    size = window.size()
    (first,) = section.units
    first.choose_file(canny)
    first.set_image(edges)
    _type(qtbot, first.strength_spin, "0.6")

    qtbot.mouseClick(section.add_button, Qt.MouseButton.LeftButton)
    first_, second = section.units
    assert first_ is first and not first.is_expanded() and second.is_expanded()  # the first folds to a line
    assert first.summary.full_text() == "1 · canny · edges.png · strength 0.6"
    assert "choose a ControlNet file and a control image" not in window.state.problems().get(
        "controlnets", ""
    )
    second.choose_file(depth)
    assert "ControlNet 2: choose a control image" in window.state.problems()["controlnets"]
    assert drop_on(second, file_mime(depth_map))  # a drop on the second unit fills the second one
    assert (first.image, second.image) == (edges, depth_map)
    second.preprocess_combo.setCurrentIndex(second.preprocess_combo.findData("depth"))
    second.invert_check.setChecked(True)
    _type(qtbot, second.start_spin, "0.2")
    _type(qtbot, second.end_spin, "0.8")
    assert window.state.problems() == {}

    qtbot.waitUntil(lambda: second.map_image is not None and first.map_image is not None, timeout=15000)
    window.settings_scroll.ensureWidgetVisible(second)
    qtbot.wait(50)
    window.grab().save("/tmp/cnui-two-units.png")
    assert window.size() == size and window.panel.width() <= window.settings_scroll.viewport().width()

    qtbot.keyClicks(window.panel.prompt.edit, "a house")
    _generate(qtbot, window)
    sent = fake_sessions.instances[0].runs[-1][1].controlnets
    assert [(s.file, s.image, s.strength, s.start, s.end, s.preprocess) for s in sent] == [
        (canny, edges, 0.6, 0.0, 1.0, ControlPreprocess()),
        (depth, depth_map, 1.0, 0.2, 0.8, ControlPreprocess("depth", invert=True)),
    ]

    # removing the first leaves the second, renumbered
    qtbot.mouseClick(first.remove_button, Qt.MouseButton.LeftButton)
    assert section.units == [second] and second.number == 1
    assert [s.file for s in window.state.controlnets] == [depth]

    # recall of the image made with two ControlNets brings both units back, in order
    (png,) = (tmp_path / "out").glob("*.png")
    assert drop_on(window.canvas, file_mime(png))
    choose(qtbot, window, "Reuse its settings")
    qtbot.waitUntil(lambda: len(window.state.controlnets) == 2, timeout=5000)
    assert [(u.file(), u.image, u.strength_spin.value()) for u in section.units] == [
        (canny, edges, 0.6),
        (depth, depth_map, 1.0),
    ]
    assert section.units[1].preprocess().invert and section.units[1].start_spin.value() == 0.2
    assert window.state.problems() == {}

    # a recalled ControlNet whose file has gone: said in the section and before Generate, nothing sent
    canny.rename(canny.with_suffix(".moved"))
    runs = len(fake_sessions.instances[0].runs)
    choose_again = drop_on(window.canvas, file_mime(png))
    assert choose_again
    window.state.set_controlnets(())  # a fresh recall (the form had the same set already)
    assert not any(u.enabled_check.isChecked() for u in section.units)
    choose(qtbot, window, "Reuse its settings")
    qtbot.waitUntil(lambda: len(window.state.controlnets) == 2, timeout=5000)
    problem = window.state.problems()["controlnets"]
    assert "ControlNet 1: the file sd3.5_large_controlnet_canny.safetensors is missing" in problem
    assert section.units[0].summary.full_text().startswith("⚠ ")
    assert "ControlNet file sd3.5_large_controlnet_canny.safetensors is missing" in (
        window.statusBar().currentMessage()
    )
    qtbot.mouseClick(window.generate_button, Qt.MouseButton.LeftButton)
    qtbot.wait(200)
    assert len(fake_sessions.instances[0].runs) == runs and "is missing" in window.banner.text.text()
    _settle(qtbot, window)


def test_saved_settings_with_two_controlnets_open_as_two_units(qtbot, tmp_path):
    specs = (
        ControlSpec(Path("/c/canny.safetensors"), Path("/c/edges.png"), 0.5, 0.0, 0.7, "canny",
                    ControlPreprocess("canny", canny_low=40, canny_high=90)),
        ControlSpec(Path("/c/blur.safetensors"), Path("/c/photo.png"), 1.3, 0.1, 1.0, "blur",
                    ControlPreprocess("blur", blur_radius=3)),
    )  # fmt: skip
    state = GenerationFormState(variant="large")
    state.controlnets = specs
    restored = GenerationFormState.from_dict(state.to_dict())
    section = ControlNetSection(restored)
    qtbot.addWidget(section)
    assert len(section.units) == 2 and restored.controlnets == specs  # opening the section changed nothing
    assert [u.spec() for u in section.units] == list(specs)
    assert "the file canny.safetensors is missing" in restored.problems()["controlnets"]

    # switching the second unit off keeps it in the section but out of the job
    section.units[1].enabled_check.click()
    assert restored.controlnets == specs[:1] and len(section.units) == 2
    section.units[1].enabled_check.click()
    assert restored.controlnets == specs

    # the overlay switch names the unit whose map it draws; removing every unit leaves an empty, sendable set
    section.units[1].fold.click()
    assert section.active is section.units[1] and section.overlay_check.text() == "Map 2 on canvas"
    for unit in list(section.units):
        unit.remove_button.click()
    assert section.units == [] and section.active is None and restored.controlnets == ()
    assert not section.empty_label.isHidden() and "controlnets" not in restored.problems()
    assert section.overlay_check.text() == "Map on canvas"
