"""The automation contract (focus, shortcuts, quit), persistence across windows, and a torch-free start."""

import subprocess
import sys
import textwrap

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication

from app.ui.generation.jobs import JobStatus
from tests.ui.conftest import click_in_message_box, wait_until_ready


def activate(qtbot, window):
    window.show()
    window.activateWindow()
    qtbot.waitUntil(lambda: QApplication.activeWindow() is window, timeout=5000)


def test_focus_starts_in_the_prompt_and_ctrl_return_generates(qtbot, make_window):
    window = make_window()
    wait_until_ready(qtbot, window)
    activate(qtbot, window)
    assert QApplication.focusWidget() is window.panel.prompt.edit
    window.state.update(steps=2)
    qtbot.keyClicks(window.panel.prompt.edit, "a boat")
    with qtbot.waitSignal(window.controller.job_ended, timeout=10000) as ended:
        qtbot.keyClick(window.panel.prompt.edit, Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier)
    assert ended.args[1].status is JobStatus.FINISHED
    assert window.panel.prompt.text() == "a boat"  # the shortcut did not type a newline


def test_escape_cancels_and_ctrl_q_cancels_then_quits(qtbot, make_window, fake_sessions):
    fake_sessions.step_seconds = 0.03
    window = make_window()
    wait_until_ready(qtbot, window)
    activate(qtbot, window)
    window.state.update(steps=100, prompt="long")
    with qtbot.waitSignal(window.controller.step_completed, timeout=10000):
        qtbot.keyClick(window.panel.prompt.edit, Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier)
    with qtbot.waitSignal(window.controller.job_ended, timeout=5000) as ended:
        qtbot.keyClick(window.panel.prompt.edit, Qt.Key.Key_Escape)
    assert ended.args[1].status is JobStatus.CANCELLED
    window.commands.generate.generate()
    qtbot.waitSignal(window.controller.step_completed, timeout=10000).wait()
    seen = []
    click_in_message_box(qtbot, "quitButton", seen)  # a running job: Ctrl+Q asks first
    qtbot.keyClick(window.panel.prompt.edit, Qt.Key.Key_Q, Qt.KeyboardModifier.ControlModifier)
    assert seen == ["Quit and cancel 1 running job?"]
    assert not window.isVisible() and window.controller.thread.isFinished()


def test_every_menu_action_has_a_home_and_the_key_ones_their_shortcuts(qtbot, make_window):
    window = make_window()
    in_menus = {
        a
        for menu in window.menuBar().findChildren(type(window.menuBar().addMenu("x")))
        for a in menu.actions()
    }
    for action in window.actions.all():
        assert action in in_menus, action.text()
    keys = {a.text().replace("&", ""): [s.toString() for s in a.shortcuts()] for a in window.actions.all()}
    assert keys["Generate"] == ["Ctrl+Return", "Ctrl+Enter"]
    assert keys["Cancel"] == ["Esc"] and keys["Quit"] == ["Ctrl+Q"]
    assert keys["Fit to Window"] == ["Ctrl+0"] and keys["Actual Size (100 %)"] == ["Ctrl+1"]
    for widget in (
        window.panel.steps_spin,
        window.panel.cfg_spin,
        window.panel.sampler_combo,
        window.panel.seed_edit,
        window.panel.count_spin,
        window.panel.advanced.shift_spin,
        window.panel.advanced.memory_combo,
    ):
        assert widget.toolTip(), widget


def test_settings_persist_across_two_windows(qtbot, make_window, tiny_model):
    first = make_window()
    wait_until_ready(qtbot, first)
    first.panel.prompt.edit.setPlainText("a persistent (idea:1.2)")
    first.panel.steps_spin.setValue(17)
    first.panel.pins["steps"].click()
    first.panel.aspect_combo.setCurrentIndex(first.panel.aspect_combo.findData("2:3"))
    first.panel.style_combo.setCurrentIndex(first.panel.style_combo.findData("anime"))
    first.panel.advanced.set_expanded(True)
    first.panel.advanced.t5_check.setChecked(False)
    first.resize(first.minimumSizeHint().width(), 560)  # fits the offscreen screen (800×600): no clamping
    first.recent_dock.hide()
    first.close()

    second = make_window(model_path=None)
    wait_until_ready(qtbot, second)
    v = second.state.values
    assert v.prompt == "a persistent (idea:1.2)" and second.panel.prompt.text() == v.prompt
    assert v.steps == 17 and second.panel.steps_spin.value() == 17 and "steps" in second.state.pins
    assert second.panel.pins["steps"].isChecked()
    assert v.aspect == "2:3" and v.style == "anime" and not v.use_t5
    assert second.panel.advanced.is_expanded() and not second.panel.advanced.t5_check.isChecked()
    assert second.size().height() == 560 and second.recent_dock.isHidden()
    assert second.picker.selected is not None and second.picker.selected.path == tiny_model


def test_the_window_paints_before_torch_is_imported(tiny_model, tmp_path):
    """In a fresh process: build and paint the real window (real engine backend); torch must still be absent."""
    code = textwrap.dedent(f"""
        import os, sys, asyncio
        os.environ["QT_QPA_PLATFORM"] = "offscreen"
        os.environ["XDG_DATA_HOME"] = {str(tmp_path / "data")!r}
        from PySide6.QtCore import QSettings
        from PySide6.QtWidgets import QApplication
        import qasync
        QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, {str(tmp_path / "cfg")!r})
        app = QApplication([])
        loop = qasync.QEventLoop(app)
        asyncio.set_event_loop(loop)
        from app.ui.window.main_window import MainWindow
        window = MainWindow(model_path={str(tiny_model)!r}, search_default_locations=False)
        built = "torch" in sys.modules
        state = {{}}
        def painted():
            state["painted"] = "torch" in sys.modules
            state["numpy"] = "numpy" in sys.modules
        window.first_painted.connect(painted)
        window.show()
        with loop:
            loop.run_until_complete(asyncio.sleep(0.5))
        window.close()
        print(built, state.get("painted"), state.get("numpy"))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[-3:] == ["False", "False", "False"], out.stdout + out.stderr


def test_cli_without_a_subcommand_opens_the_window_with_model_and_output_dir(monkeypatch, tmp_path):
    import app.main
    from app.cli.main import main

    calls = []
    monkeypatch.setattr(app.main, "run_app", lambda **kwargs: calls.append(kwargs) or 0)
    assert main(["--model", str(tmp_path / "m"), "--output-dir", str(tmp_path / "o")]) == 0
    assert calls == [{"model": tmp_path / "m", "output_dir": tmp_path / "o"}]
    assert main([]) == 0 and calls[-1] == {"model": None, "output_dir": None}
