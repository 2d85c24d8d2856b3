"""The window with a ComfyUI server as the engine (issue 17): the real server with the tiny SD3 set is in the
engine list; the user picks its model set in the picker, types a prompt and presses Ctrl+Return; the canvas
shows the server's step previews, the image lands in the gallery, and its PNG carries the same metadata as the
CLI's `generate --engine` run of the same request."""

import json

import pytest
from PIL import Image
from PySide6.QtCore import Qt

from app.cli.main import main
from app.remote.engine_list import EngineList
from app.ui.generation.jobs import JobStatus
from tests.comfyui.fake_server import OBJECT_INFO, FakeComfy
from tests.ui.conftest import wait_until_ready
from tests.ui.test_window_generation import count_canvas_images

pytestmark = pytest.mark.slow


@pytest.fixture
def engine_in_list(comfyui_tiny, monkeypatch):
    """The tiny server in the user's engine list (the tiny set has no CLIP-G: accepted for this server)."""
    monkeypatch.setattr("app.remote.engine_list._usable_keyring", lambda: None)
    server, checkpoint, _ = comfyui_tiny
    engines = EngineList()  # the user data folder of this test (XDG_DATA_HOME, conftest)
    engines.add(server.url, "tiny box", token="tok-window-9")
    engines.update(server.url, partial_text_encoders=True)
    return server, checkpoint


def remote_index(window, label):
    combo = window.panel.model_combo
    return next((i for i in range(combo.count()) if combo.itemText(i) == label), -1)


def window_on_server_set(qtbot, make_window, url: str, name: str, label: str):
    """A ready window with the server at `url` in the engine list (as `name`) and its set `label` chosen."""
    EngineList().add(url, name)
    window = make_window()
    wait_until_ready(qtbot, window)
    qtbot.waitUntil(lambda: remote_index(window, label) >= 0, timeout=10_000)
    window.panel.model_combo.setCurrentIndex(remote_index(window, label))
    return window


def test_a_job_on_the_server_shows_previews_and_lands_in_the_gallery_as_the_cli_writes_it(
    qtbot, make_window, engine_in_list, tmp_path, capsys
):
    server, checkpoint = engine_in_list
    window = make_window()
    wait_until_ready(qtbot, window)
    label = "sd35_tiny_comfy · tiny box · no T5"
    qtbot.waitUntil(lambda: remote_index(window, label) >= 0, timeout=20_000)
    assert (
        window.engine_hookup.label.full_text() == f"Engine: {'This machine'}"
    )  # the local set stays the default

    combo = window.panel.model_combo
    combo.setFocus()
    while combo.currentIndex() < remote_index(window, label):  # the user steps down to the server's set
        qtbot.keyClick(combo, Qt.Key.Key_Down)
    picked = window.picker.selected
    assert picked is not None and picked.is_remote and picked.engine == (server.url,)
    assert window.state.values.engine == server.url and window.state.values.remote_model == checkpoint
    assert window.engine_hookup.label.full_text() == "Engine: tiny box · online"
    device = window.device_label.full_text()  # (elided in this narrow test window; whole in its tooltip)
    assert device.startswith("Device: CPU · ") and device.endswith(" GB (tiny box)")  # the server's device
    # No T5 on the server: T5 is off and its switch says why.
    assert not window.state.values.use_t5 and not window.panel.advanced.t5_check.isEnabled()
    assert "tiny box has no T5-XXL" in window.panel.advanced.t5_check.toolTip()
    # The server is sent LoRAs and ControlNets by its own file names (app.remote.server_files): both stay on.
    assert window.panel.loras.isEnabled() and window.panel.controlnet.isEnabled()
    # What app.remote sends stays on (asked of refuse_what_is_not_sent, not assumed): masks and the hires fix too.
    inpaint, hires = window.refine_bar.mode_buttons["inpaint"], window.refine_settings.hires_check
    assert inpaint.isEnabled() and hires.isEnabled() and "cannot run" not in hires.toolTip()

    window.state.update(steps=2, width=64, height=64, cfg=2.0, sampler="euler", random_seed=False, seed=21)
    qtbot.keyClicks(window.panel.prompt.edit, "a red fox")
    seen = count_canvas_images(window)
    with qtbot.waitSignal(window.controller.job_ended, timeout=120_000) as ended:
        qtbot.keyClick(window.panel.prompt.edit, Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier)
    job, outcome = ended.args
    assert outcome.status is JobStatus.FINISHED, outcome.message
    assert job.options.engine == (server.url,) and str(job.model_path) == checkpoint
    assert [kind for kind, *_ in seen].count("preview") >= 1  # the server's step previews reached the canvas
    assert seen[-1] == ("final", 64, 64)
    assert window.device_label.full_text().endswith(
        " GB (tiny box)"
    )  # still the server's device after the job
    window.grab().save("/tmp/engineui-window-remote.png")

    (png,) = (tmp_path / "out").glob("*.png")
    qtbot.waitUntil(lambda: window.gallery.panel is not None, timeout=5000)
    panel = window.gallery.panel
    qtbot.waitUntil(
        lambda: any(panel.model.image_id(r) is not None for r in range(panel.model.rowCount())),
        timeout=10_000,
    )

    r = job.request
    cli_png = tmp_path / "cli.png"
    args = ["generate", "--engine", server.url, "--model", checkpoint, "--prompt", r.prompt, "--negative", r.negative,
            "--seed", str(r.seed), "--steps", str(r.steps), "--cfg", str(r.cfg), "--sampler", r.sampler,
            "--scheduler", r.scheduler, "--shift", str(r.shift), "--width", "64", "--height", "64", "--no-t5",
            "--engine-partial-encoders", "--out", str(cli_png)]  # fmt: skip
    assert main(args) == 0, capsys.readouterr().err
    with Image.open(png) as window_image, Image.open(cli_png) as cli_image:
        assert window_image.text["parameters"] == cli_image.text["parameters"]
        assert json.loads(window_image.text["prompt"]) == json.loads(cli_image.text["prompt"])
        assert "tok-window-9" not in json.dumps(window_image.text)
    window.close()


def test_an_unreachable_server_is_shown_offline_and_retried(qtbot, make_window, monkeypatch):
    monkeypatch.setattr("app.remote.engine_list._usable_keyring", lambda: None)
    monkeypatch.setattr("app.ui.window.engine_hookup.RETRY_FIRST", 0.2)
    EngineList().add("http://127.0.0.1:9", "gone box")
    window = make_window()
    wait_until_ready(qtbot, window)
    hookup = window.engine_hookup
    qtbot.waitUntil(lambda: "http://127.0.0.1:9" in hookup.reports, timeout=10_000)
    checks = []
    hookup.checked.connect(lambda url, report: checks.append(report.reachable))
    qtbot.waitUntil(lambda: len(checks) >= 2, timeout=10_000)  # checked again, with a back-off
    assert checks[:2] == [False, False] and hookup._backoff["http://127.0.0.1:9"] >= 0.8
    assert remote_index(window, "gone box") < 0  # it listed nothing: no entry in the picker
    assert hookup.label.full_text() == "Engine: This machine"


def test_a_server_without_slg_t5_or_previews_and_one_that_drops_out(qtbot, make_window, monkeypatch):
    """The in-process fake server: no SkipLayerGuidanceSD3 node, no T5 file, no preview frames; then it goes."""
    monkeypatch.setattr("app.remote.engine_list._usable_keyring", lambda: None)
    object_info = {k: v for k, v in OBJECT_INFO.items() if k != "SkipLayerGuidanceSD3"}
    fake = FakeComfy()
    fake.body["/object_info"] = json.dumps(object_info).encode()
    with fake:
        EngineList().add(fake.url, "fake box")
        window = make_window()
        wait_until_ready(qtbot, window)
        label = "sd3.5_medium · fake box · no T5"
        qtbot.waitUntil(lambda: remote_index(window, label) >= 0, timeout=20_000)
        combo = window.panel.model_combo
        combo.setFocus()
        while combo.currentIndex() < remote_index(window, label):
            qtbot.keyClick(combo, Qt.Key.Key_Down)
        assert window.picker.selected.engine == (fake.url,) and window.state.variant == "medium"
        advanced = window.panel.advanced
        assert not window.state.values.slg_enabled and not advanced.slg_check.isEnabled()
        assert (
            advanced.slg_check.toolTip()
            == "fake box has no SkipLayerGuidanceSD3 node: skip-layer guidance is off."
        )
        qtbot.mouseClick(
            advanced.slg_check, Qt.MouseButton.LeftButton
        )  # a click on the disabled switch: stays off
        assert not window.state.values.slg_enabled
        hires_tip = window.engine_hookup._tips[window.refine_settings.hires_check]  # its own, from before
        assert (
            window.refine_settings.hires_check.isEnabled()
        )  # the hires fix is sent to a server (remotejobs)
        window.panel.advanced.set_expanded(True)
        qtbot.wait(100)  # laid out before the grab
        window.grab().save("/tmp/engineui-window-no-slg.png")

        window.state.update(steps=3, width=64, height=64, cfg=2.0, sampler="euler")
        qtbot.keyClicks(window.panel.prompt.edit, "a lighthouse")
        notices = []
        for _ in range(2):  # the notice comes once, not per job
            with qtbot.waitSignal(window.controller.job_ended, timeout=30_000) as ended:
                qtbot.keyClick(
                    window.panel.prompt.edit, Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier
                )
            assert ended.args[1].status is JobStatus.FINISHED, ended.args[1].message
            notices.append(window.banner.message())
            window.banner.hide()
        assert notices[0].startswith("fake box sends no previews") and notices[1] == ""
        assert ("GET", "/ws") in fake.requests

    # The server is gone: the next job fails with the connection's sentence and the status bar says offline.
    with qtbot.waitSignal(window.controller.job_ended, timeout=60_000) as ended:
        qtbot.keyClick(window.panel.prompt.edit, Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier)
    assert ended.args[1].status is JobStatus.FAILED and "ComfyUI server" in ended.args[1].message
    qtbot.waitUntil(lambda: window.engine_hookup.label.full_text() == "Engine: fake box · offline — retrying")

    # Back to this machine's set: everything the server could not run is available again, with its own tooltip.
    window.panel.model_combo.setCurrentIndex(0)
    assert (
        not window.picker.selected.is_remote
        and window.engine_hookup.label.full_text() == "Engine: This machine"
    )
    assert advanced.slg_check.isEnabled() and "fake box" not in advanced.slg_check.toolTip()
    assert window.panel.loras.isEnabled() and window.panel.loras.toolTip() == ""
    hires = window.refine_settings.hires_check
    assert hires.isEnabled() and hires.toolTip() == hires_tip and "cannot run" not in hires_tip
    assert window.state.values.engine == "" and window.state.values.remote_model == ""
    window.close()


def test_the_chosen_server_set_is_restored_at_the_next_start(qtbot, make_window, engine_in_list):
    _, checkpoint = engine_in_list
    window = make_window()
    wait_until_ready(qtbot, window)
    label = "sd35_tiny_comfy · tiny box · no T5"
    qtbot.waitUntil(lambda: remote_index(window, label) >= 0, timeout=20_000)
    window.panel.model_combo.setCurrentIndex(remote_index(window, label))
    window.close()

    again = make_window()
    wait_until_ready(qtbot, again)
    qtbot.waitUntil(
        lambda: (
            again.picker.selected is not None
            and again.picker.selected.is_remote
            and not again.picker.selected.offline
        ),  # (listed as offline/connecting until the server answers)
        timeout=20_000,
    )
    assert again.panel.model_combo.currentText() == label and again.state.values.remote_model == checkpoint
    assert again.engine_hookup.label.full_text() == "Engine: tiny box · online"
