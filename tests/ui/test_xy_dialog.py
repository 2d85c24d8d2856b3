"""X/Y Plot on the fake session: the dialog expands two axes into one job per cell and saves a labelled grid."""

import json

from PIL import Image
from PySide6.QtCore import Qt

from app.gallery.xy_plot import XY_KEY
from tests.ui.conftest import wait_until_ready


def open_dialog(qtbot, make_window, **values):
    from app.ui.tools.xy_dialog import XYPlotDialog

    window = make_window()
    wait_until_ready(qtbot, window)
    values = {"prompt": "a red fox in snow", "steps": 3, "count": 1, "width": 64, "height": 48,
              "random_seed": False, "seed": 5, "cfg": 4.0, **values}  # fmt: skip
    window.state.update(**values)
    dialog = XYPlotDialog(window, window.tools, window.jobs.request())
    qtbot.addWidget(dialog)
    return window, dialog


def test_two_by_three_queues_six_jobs_and_writes_a_labelled_grid(qtbot, make_window, fake_sessions, tmp_path):
    window, dialog = open_dialog(qtbot, make_window)
    dialog.set_axes(("seed", "5, 6, 7"), ("cfg", "3, 5"))
    assert dialog.generate_button.isEnabled()
    assert dialog.generate_button.text() == "Generate 6 images"
    assert "3 columns × 2 rows" in dialog.summary.text()
    qtbot.mouseClick(dialog.generate_button, Qt.MouseButton.LeftButton)
    run = dialog.run
    assert len(run.jobs) == 6
    with qtbot.waitSignal(run.sheet_saved, timeout=20000) as saved:
        pass
    requests = [request for s in fake_sessions.instances for _, request in s.runs]
    assert [(r.seed, r.cfg, r.count) for r in requests] == [
        (5, 3.0, 1), (6, 3.0, 1), (7, 3.0, 1), (5, 5.0, 1), (6, 5.0, 1), (7, 5.0, 1),
    ]  # fmt: skip
    sheet = saved.args[0]
    out = tmp_path / "out"
    assert sheet.parent == out and sheet.name.startswith("xy-")
    assert len([p for p in out.glob("*.png") if p != sheet]) == 6  # the six cells, next to the grid
    with Image.open(sheet) as im:
        assert im.width > 3 * 64 and im.height > 2 * 48  # cells plus axis labels
        meta = json.loads(im.text[XY_KEY])
        assert im.text["parameters"].startswith("a red fox in snow")
    assert meta["x"] == {"kind": "seed", "values": [5, 6, 7]}
    assert meta["y"] == {"kind": "cfg", "values": [3.0, 5.0]}
    assert [(c["column"], c["row"]) for c in meta["cells"]] == [(c, r) for r in range(2) for c in range(3)]
    shown = window.canvas.image()
    assert window.stack.currentWidget() is window.canvas and shown.size().width() == im.width
    assert str(sheet) in window.statusBar().currentMessage()


def test_prompt_search_replace_and_bad_values_are_explained(qtbot, make_window):
    _window, dialog = open_dialog(qtbot, make_window)
    dialog.set_axes(("prompt", "fox, cat"), ("sampler", "euler, dpmpp_2m"))
    assert dialog.generate_button.text() == "Generate 4 images"
    prompts = sorted({cell.request.prompt for cell in dialog.plot.cells()})
    assert prompts == ["a red cat in snow", "a red fox in snow"]
    dialog.set_axes(("prompt", "wolf, cat"), None)
    assert not dialog.generate_button.isEnabled() and "does not occur in the prompt" in dialog.summary.text()
    dialog.set_axes(("cfg", "3, lots"), None)
    assert not dialog.generate_button.isEnabled() and "X axis (CFG)" in dialog.summary.text()
    dialog.set_axes(("steps", "20, 30"), ("steps", "4"))
    assert "two different settings" in dialog.summary.text()


def test_the_menu_opens_the_dialog_with_defaults_around_the_current_settings(qtbot, make_window):
    from app.ui.tools.xy_dialog import XYPlotDialog

    window = make_window()
    wait_until_ready(qtbot, window)
    window.state.update(prompt="a lighthouse", random_seed=False, seed=40, cfg=4.5)
    generate_menu = next(a.menu() for a in window.menuBar().actions() if a.text() == "&Generate")
    assert window.actions.xy_plot in generate_menu.actions()
    assert window.actions.compare_seeds in generate_menu.actions()
    window.actions.xy_plot.trigger()
    (dialog,) = window.findChildren(XYPlotDialog)
    assert dialog.x_row.values.text() == "40, 41, 42"
    assert dialog.y_row.values.text() == "3.5, 4.5, 5.5"
    assert dialog.generate_button.text() == "Generate 9 images"
    dialog.reject()


def test_clearing_the_queue_still_saves_the_cells_that_finished(qtbot, make_window, fake_sessions):
    fake_sessions.step_seconds = 0.05
    window, dialog = open_dialog(qtbot, make_window)
    dialog.set_axes(("seed", "5, 6, 7"), ("cfg", "3, 5"))
    qtbot.mouseClick(dialog.generate_button, Qt.MouseButton.LeftButton)
    run = dialog.run
    with qtbot.waitSignal(run.sheet_saved, timeout=20000) as saved:
        qtbot.waitUntil(lambda: len(run.images) >= 1, timeout=10000)
        window.commands.generate.clear_queue()
    assert 1 <= len(run.images) < 6
    assert saved.args[0].exists()
    assert "left empty" in window.statusBar().currentMessage()


def test_a_lora_strength_axis_sweeps_the_strength_each_cell_generates_with(qtbot, make_window, fake_sessions):
    from dataclasses import replace
    from pathlib import Path

    from app.inference.api.lora import LoraSpec
    from app.ui.tools.xy_dialog import XYPlotDialog

    window, plain = open_dialog(qtbot, make_window)
    plain.set_axes(("lora_strength", "0, 0.5, 1"), None)  # the job uses no LoRA: a sentence, no plot
    assert not plain.generate_button.isEnabled()
    assert "this job uses no LoRA; add one in the LoRA panel first" in plain.summary.text()
    plain.reject()

    clay, ink = (
        LoraSpec(Path("/loras/clay.safetensors"), 0.8),
        LoraSpec(Path("/loras/ink.safetensors"), 0.6, 0.4),
    )
    request = replace(window.jobs.request(), loras=(clay, ink))
    dialog = XYPlotDialog(window, window.tools, request)
    qtbot.addWidget(dialog)
    dialog.x_row.select("lora_strength")
    assert dialog.x_row.values.text() == "0, 0.5, 1" and "first LoRA" in dialog.x_row.hint.text()
    dialog.y_row.select("lora_strength")
    dialog.y_row.values.clear()
    qtbot.keyClicks(dialog.y_row.values, "sketch: -1, 1")
    assert "“sketch” is not one of this job's LoRAs (clay, ink)" in dialog.summary.text()
    dialog.y_row.values.clear()
    qtbot.keyClicks(dialog.y_row.values, "INK: -0.5, 0.5")
    assert dialog.generate_button.text() == "Generate 6 images"
    qtbot.mouseClick(dialog.generate_button, Qt.MouseButton.LeftButton)
    with qtbot.waitSignal(dialog.run.sheet_saved, timeout=20000) as saved:
        pass
    runs = [request for s in fake_sessions.instances for _, request in s.runs]
    assert [tuple((lora.name, lora.strength, lora.te_strength) for lora in r.loras) for r in runs] == [
        (("clay", s, None), ("ink", i, 0.4)) for i in (-0.5, 0.5) for s in (0.0, 0.5, 1.0)
    ]
    with Image.open(saved.args[0]) as im:
        meta = json.loads(im.text[XY_KEY])
    assert meta["x"] == {"kind": "lora_strength", "values": [0.0, 0.5, 1.0]}
    assert meta["y"] == {"kind": "lora_strength", "values": [-0.5, 0.5], "lora": "INK"}
