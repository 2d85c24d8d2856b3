"""What the form shows is what Generate sends: real typing and clicks into the widgets, then Ctrl+Return, and the
request the (fake) engine receives is compared with what the fields show."""

from __future__ import annotations

import pytest
from PySide6.QtCore import Qt

from tests.factory.mmdit_model import TinyMMDiTSpec, tiny_mmdit_state
from tests.factory.snapshot import write_snapshot
from tests.ui.conftest import wait_until_ready

# A Medium model with only 6 joint blocks: the preset's skip layers (7, 8, 9) do not exist in it.
SHALLOW_MEDIUM = TinyMMDiTSpec(pos_side=32, depth=6, source_blocks=(0, 1, 2, 3, 4, 23))


@pytest.fixture(scope="session")
def tiny_large(tmp_path_factory):
    """SD3.5 Large, 256 px per side at most (the tiny Medium makes 512)."""
    return write_snapshot(tmp_path_factory.mktemp("models") / "sd3.5-large-tiny", "large")


@pytest.fixture(scope="session")
def shallow_medium(tmp_path_factory):
    from safetensors.torch import save_file

    from tests.factory.vae_model import write_tiny_vae

    folder = write_snapshot(tmp_path_factory.mktemp("models") / "sd3.5-medium-shallow", "medium")
    state = tiny_mmdit_state("medium", SHALLOW_MEDIUM)
    state.update(write_tiny_vae(None))
    save_file(state, str(folder / "sd3.5_medium.safetensors"), metadata={"format": "pt"})
    return folder


def ctrl_return(qtbot, window):
    qtbot.keyClick(window, Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier)


def sent(fake_sessions):
    """The requests the engine received, in order."""
    return [request for s in fake_sessions.instances for _, request in s.runs]


def generate_and_wait(qtbot, window):
    with qtbot.waitSignal(window.controller.job_ended, timeout=15000):
        ctrl_return(qtbot, window)


def retype(qtbot, widget, text):
    """Click into a field, select what it shows and type `text` (no Enter, no focus change)."""
    target = widget.lineEdit() if hasattr(widget, "lineEdit") else widget
    qtbot.mouseClick(target, Qt.MouseButton.LeftButton)
    qtbot.keyClick(target, Qt.Key.Key_A, Qt.KeyboardModifier.ControlModifier)
    qtbot.keyClicks(target, text)


def shown_size(panel):
    """Width and height as the fields show them ("512 px")."""
    return tuple(int(spin.text().removesuffix(" px")) for spin in (panel.width_spin, panel.height_spin))


def choose(qtbot, combo, data):
    """Pick an entry of a closed combo box with the arrow keys, as a keyboard user does."""
    combo.setFocus()
    target = combo.findData(data)
    assert target >= 0, data
    key = Qt.Key.Key_Down if target > combo.currentIndex() else Qt.Key.Key_Up
    for _ in range(combo.count()):
        if combo.currentIndex() == target:
            return
        qtbot.keyClick(combo, key)
    raise AssertionError(f"could not reach {data!r} in {combo.objectName()}")


def model_data(window, label_start):
    combo = window.panel.model_combo
    return next(combo.itemData(i) for i in range(combo.count()) if combo.itemText(i).startswith(label_start))


def type_prompt(qtbot, window, text="a lighthouse"):
    qtbot.mouseClick(window.panel.prompt.edit.viewport(), Qt.MouseButton.LeftButton)
    qtbot.keyClicks(window.panel.prompt.edit, text)


def test_switching_to_a_model_with_a_larger_limit_shows_and_sends_the_same_size(
    qtbot, make_window, tiny_large, tiny_model, fake_sessions
):
    window = make_window(model_path=tiny_large)
    window.remember_path(tiny_model)
    wait_until_ready(qtbot, window)
    assert shown_size(window.panel) == (256, 256)
    choose(qtbot, window.panel.model_combo, model_data(window, "SD3.5 Medium"))
    assert window.state.variant == "medium"
    assert shown_size(window.panel) == (512, 512)
    type_prompt(qtbot, window)
    window.panel.steps_spin.setValue(2)
    generate_and_wait(qtbot, window)
    (request,) = sent(fake_sessions)
    assert (request.width, request.height) == shown_size(window.panel) == (512, 512)

    choose(qtbot, window.panel.model_combo, model_data(window, "SD3.5 Large"))
    choose(qtbot, window.panel.model_combo, model_data(window, "SD3.5 Medium"))
    choose(qtbot, window.panel.aspect_combo, "16:9")
    width, height = shown_size(window.panel)
    assert width > height  # 16:9 is wider than tall
    window.panel.steps_spin.setValue(2)
    generate_and_wait(qtbot, window)
    assert (sent(fake_sessions)[-1].width, sent(fake_sessions)[-1].height) == (width, height) == (512, 320)
    # Each model set's tokenizers load on the counting thread (seconds on a busy machine): let them finish.
    qtbot.waitUntil(lambda: not window.token_counter.is_loading(), timeout=30000)


def test_typed_values_are_sent_by_ctrl_return_without_enter(qtbot, make_window, fake_sessions):
    window = make_window()
    wait_until_ready(qtbot, window)
    panel = window.panel
    type_prompt(qtbot, window)
    qtbot.mouseClick(panel.random_button, Qt.MouseButton.LeftButton)  # a fixed seed from now on
    assert not panel.random_button.isChecked()
    retype(qtbot, panel.steps_spin, "3")
    retype(qtbot, panel.width_spin, "128")
    retype(qtbot, panel.height_spin, "192")
    retype(qtbot, panel.seed_edit, "4242")  # the focus stays in the seed field: nothing committed it
    generate_and_wait(qtbot, window)
    (request,) = sent(fake_sessions)
    assert (request.seed, request.width, request.height, request.steps) == (4242, 128, 192, 3)
    assert (panel.seed_edit.text(), shown_size(panel), panel.steps_spin.value()) == ("4242", (128, 192), 3)


def test_a_typed_size_is_snapped_visibly_and_the_note_says_why(qtbot, make_window, fake_sessions):
    window = make_window()
    wait_until_ready(qtbot, window)
    panel = window.panel
    type_prompt(qtbot, window)
    panel.steps_spin.setValue(2)
    retype(qtbot, panel.width_spin, "128")
    qtbot.keyClick(panel.width_spin.lineEdit(), Qt.Key.Key_Return)
    retype(qtbot, panel.width_spin, "99")  # snaps to the same 128 the state already holds
    generate_and_wait(qtbot, window)
    (request,) = sent(fake_sessions)
    assert request.width == shown_size(panel)[0] == 128
    note = panel.rows.note_labels["width"]
    assert note.isVisibleTo(window) and "99 → 128" in note.text() and "multiples of 64" in note.text()
    retype(qtbot, panel.width_spin, "5000")
    qtbot.keyClick(panel.width_spin.lineEdit(), Qt.Key.Key_Return)
    assert shown_size(panel)[0] == 512 and "at most 512 px" in note.text()


@pytest.mark.parametrize(
    ("typed", "used", "why"), [("0", 1, "allowed from 1 to 150"), ("10000", 150, "allowed from 1 to 150")]
)
def test_out_of_range_steps_are_clamped_visibly_with_a_reason(
    qtbot, make_window, fake_sessions, typed, used, why
):
    window = make_window()
    wait_until_ready(qtbot, window)
    panel = window.panel
    type_prompt(qtbot, window)
    retype(qtbot, panel.steps_spin, typed)
    assert panel.steps_spin.lineEdit().text() == typed  # every keystroke kept while typing
    generate_and_wait(qtbot, window)
    assert sent(fake_sessions)[0].steps == panel.steps_spin.value() == used
    note = panel.rows.note_labels["steps"]
    assert note.isVisibleTo(window) and f"{typed} → {used}" in note.text() and why in note.text()
    retype(qtbot, panel.steps_spin, "5")  # a valid value clears the note
    qtbot.keyClick(panel.steps_spin.lineEdit(), Qt.Key.Key_Return)
    assert not note.isVisibleTo(window)


def test_a_seed_that_is_not_a_whole_number_is_refused_with_a_reason(qtbot, make_window, fake_sessions):
    window = make_window()
    wait_until_ready(qtbot, window)
    panel = window.panel
    type_prompt(qtbot, window)
    qtbot.mouseClick(panel.random_button, Qt.MouseButton.LeftButton)
    retype(qtbot, panel.seed_edit, "12.5")
    assert panel.seed_edit.text() == "12.5"  # no character dropped
    ctrl_return(qtbot, window)
    qtbot.wait(100)
    assert sent(fake_sessions) == [] and not window.controller.is_busy
    note = panel.rows.note_labels["seed"]
    assert note.isVisibleTo(window) and "12.5" in note.text() and "whole number" in note.text()
    assert "whole number" in window.banner.message()
    retype(qtbot, panel.seed_edit, "125")
    panel.steps_spin.setValue(2)
    generate_and_wait(qtbot, window)
    assert sent(fake_sessions)[0].seed == 125 and not note.isVisibleTo(window)


def test_random_seed_is_shown_as_random_not_as_a_number(qtbot, make_window, fake_sessions):
    window = make_window()
    wait_until_ready(qtbot, window)
    panel = window.panel
    assert panel.random_button.isChecked() and window.state.values.random_seed
    assert panel.seed_edit.text() == "" and panel.seed_edit.placeholderText() == "random"
    assert not panel.seed_edit.isEnabled()
    type_prompt(qtbot, window)
    panel.steps_spin.setValue(2)
    generate_and_wait(qtbot, window)
    used = sent(fake_sessions)[0].seed
    assert panel.seed_edit.text() == "" and panel.seed_edit.placeholderText() == f"random (last: {used})"
    qtbot.mouseClick(panel.random_button, Qt.MouseButton.LeftButton)  # fixed: the last seed, editable
    assert panel.seed_edit.isEnabled() and panel.seed_edit.text() == str(used)
    generate_and_wait(qtbot, window)
    assert sent(fake_sessions)[1].seed == used


def test_opening_and_cancelling_xy_plot_keeps_the_seed(qtbot, make_window, fake_sessions):
    from app.ui.tools.xy_dialog import XYPlotDialog

    window = make_window()
    wait_until_ready(qtbot, window)
    type_prompt(qtbot, window)
    window.panel.steps_spin.setValue(2)
    generate_and_wait(qtbot, window)
    before = (window.state.values.seed, window.state.last_seed, window.panel.seed_edit.placeholderText())
    window.actions.xy_plot.trigger()
    dialog = window.findChild(XYPlotDialog)
    assert dialog is not None and dialog.isVisible()
    qtbot.keyClick(dialog, Qt.Key.Key_Escape)
    qtbot.waitUntil(lambda: not dialog.isVisible())
    after = (window.state.values.seed, window.state.last_seed, window.panel.seed_edit.placeholderText())
    assert after == before
    qtbot.mouseClick(window.panel.random_button, Qt.MouseButton.LeftButton)
    assert window.panel.seed_edit.text() == str(sent(fake_sessions)[0].seed)


def test_skip_layers_follow_the_loaded_model_and_problems_show_before_generate(
    qtbot, make_window, shallow_medium, tiny_large, fake_sessions
):
    window = make_window(model_path=shallow_medium)
    window.remember_path(tiny_large)
    wait_until_ready(qtbot, window)
    panel, advanced = window.panel, window.panel.advanced
    assert window.state.variant == "medium" and window.state.depth == 6
    assert advanced.slg_check.isChecked() and advanced.slg_layers.text() == "2"  # 7/24 of 6 blocks
    type_prompt(qtbot, window)
    panel.steps_spin.setValue(2)
    generate_and_wait(qtbot, window)
    assert sent(fake_sessions)[0].slg_layers == (2,)

    qtbot.mouseClick(advanced.toggle, Qt.MouseButton.LeftButton)
    retype(qtbot, advanced.slg_layers, "7,8,9")
    note = advanced.rows.note_labels["slg_layers"]
    assert note.isVisibleTo(window) and "7,8,9 do not exist" in note.text() and "6 blocks" in note.text()
    qtbot.mouseClick(advanced.toggle, Qt.MouseButton.LeftButton)  # folded: the problem stays in sight
    assert panel.problem_label.isVisibleTo(window) and "6 blocks" in panel.problem_label.text()
    ctrl_return(qtbot, window)
    qtbot.wait(100)
    assert len(sent(fake_sessions)) == 1 and "6 blocks" in window.banner.message()

    qtbot.mouseClick(advanced.toggle, Qt.MouseButton.LeftButton)
    retype(qtbot, advanced.slg_layers, "1,3")
    assert not note.isVisibleTo(window) and not panel.problem_label.isVisibleTo(window)
    choose(qtbot, panel.model_combo, model_data(window, "SD3.5 Large"))
    choose(qtbot, panel.model_combo, model_data(window, "SD3.5 Medium"))
    assert advanced.slg_layers.text() == "1,3"  # what the user typed survives a variant switch
    generate_and_wait(qtbot, window)
    assert sent(fake_sessions)[-1].slg_layers == (1, 3)
    qtbot.waitUntil(lambda: not window.token_counter.is_loading(), timeout=30000)


def test_ctrl_return_right_after_opening_sends_the_size_the_fields_show(
    qtbot, make_window, tiny_large, fake_sessions
):
    first = make_window(model_path=tiny_large)
    wait_until_ready(qtbot, first)
    assert shown_size(first.panel) == (256, 256)
    first.close()

    window = make_window(model_path=tiny_large)
    with qtbot.waitActive(window):
        window.show()
    assert window.picker.discovered is False  # the model's header is still being read
    type_prompt(qtbot, window)
    with qtbot.waitSignal(window.controller.job_started, timeout=15000):
        ctrl_return(qtbot, window)
    shown = shown_size(window.panel)
    qtbot.waitUntil(lambda: not window.controller.is_busy, timeout=15000)
    request = sent(fake_sessions)[-1]
    assert (request.width, request.height) == shown == (256, 256)  # the model makes at most 256 px


def test_a_recalled_image_fills_the_fields_so_that_ctrl_return_sends_it_again(
    qtbot, make_window, fake_sessions
):
    from app.inference.api.request import GenerationRequest

    window = make_window()
    wait_until_ready(qtbot, window)
    window.panel.style_combo.setCurrentIndex(window.panel.style_combo.findData("watercolour"))
    recalled = GenerationRequest(
        prompt="cinematic still of a fox", negative="blurry", seed=0, count=1, steps=3, cfg=5.25,
        sampler="euler", scheduler="beta", width=192, height=128, shift=2.5, slg_layers=(2, 3), slg_scale=2.0,
        slg_start=0.05, slg_end=0.3, negative_until=0.25, use_t5=False,
    )  # fmt: skip
    window.state.apply_request(recalled, seed=777)
    assert window.panel.binder.mismatches() == {}
    assert window.panel.cfg_spin.text() == "5.25" and shown_size(window.panel) == (192, 128)
    generate_and_wait(qtbot, window)
    again = sent(fake_sessions)[0]
    assert again == GenerationRequest(**{**_fields(recalled), "seed": 777})


def _fields(request):
    from dataclasses import fields

    return {f.name: getattr(request, f.name) for f in fields(request) if f.name != "warnings"}


def test_typed_and_recalled_decimals_are_kept_and_shown(qtbot, make_window, fake_sessions):
    from app.inference.api.request import GenerationRequest

    window = make_window()
    wait_until_ready(qtbot, window)
    panel = window.panel
    type_prompt(qtbot, window)
    retype(qtbot, panel.cfg_spin, "4.567")
    generate_and_wait(qtbot, window)
    assert sent(fake_sessions)[0].cfg == 4.567 and panel.cfg_spin.text() == "4.567"
    recalled = GenerationRequest(
        prompt="a fox", count=1, steps=2, cfg=4.125, width=64, height=64, shift=3.125
    )
    window.state.apply_request(recalled, seed=1)
    assert (panel.cfg_spin.text(), window.panel.advanced.shift_spin.text()) == ("4.125", "3.125")
    assert window.panel.binder.mismatches() == {}
    generate_and_wait(qtbot, window)
    assert (sent(fake_sessions)[1].cfg, sent(fake_sessions)[1].shift) == (4.125, 3.125)
    panel.cfg_spin.setValue(4.5)
    assert panel.cfg_spin.text() == "4.50"  # two decimals shown at least, as before
