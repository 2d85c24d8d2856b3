"""The one job factory (form → job) and the notifier it reports through, without a main window around them."""

from __future__ import annotations

from PySide6.QtCore import QSettings, Qt
from PySide6.QtWidgets import QComboBox

from app.ui.form.form_state import GenerationFormState
from app.ui.form.model_library import inspect_path
from app.ui.form.model_picker import ModelPickerController
from app.ui.generation.job_factory import JobFactory
from app.ui.generation.output_folder import OutputFolder
from tests.ui.conftest import wait_until_ready


class RecordingNotifier:
    """A `Notifier` that remembers what it was told (the factory must not need the window's banner)."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, str, object]] = []

    def error(self, text, action=None):
        self.messages.append(("error", text, action))

    def info(self, text, action=None):
        self.messages.append(("info", text, action))

    def status(self, text):
        self.messages.append(("status", text, None))

    def clear(self):
        self.messages.append(("clear", "", None))


def make_factory(qtbot, tmp_path, state):
    combo = QComboBox()
    qtbot.addWidget(combo)
    picker = ModelPickerController(combo)
    notifier, calls = RecordingNotifier(), []
    output = OutputFolder(QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat), tmp_path / "out")
    factory = JobFactory(
        state, picker, lambda: {}, output, notifier,
        locate=lambda: calls.append("locate"), focus_prompt=lambda: calls.append("focus"),
    )  # fmt: skip
    return factory, picker, notifier, calls


def test_the_factory_says_what_is_missing_then_builds_numbered_jobs(qtbot, tmp_path, tiny_model):
    state = GenerationFormState()
    factory, picker, notifier, calls = make_factory(qtbot, tmp_path, state)

    assert factory.request() is None and not factory.can_build()
    ((kind, text, action),) = notifier.messages
    assert kind == "info" and text.startswith("Choose a model first")
    assert action[0] == "Locate…"
    action[1]()
    assert calls == ["locate"]

    picker.add_or_select(inspect_path(tiny_model))
    state.update(prompt="")
    assert factory.request() is None
    assert notifier.messages[-1][:2] == ("info", "Write a prompt first: describe the picture you want.")
    assert calls == ["locate", "focus"]

    state.update(prompt="a lighthouse at dusk", steps=3, random_seed=False, seed=7, device="cpu")
    first, second = (factory.job(factory.request()) for _ in range(2))
    assert (first.job_id, second.job_id) == (1, 2)
    assert first.request.prompt == "a lighthouse at dusk" and first.request.seed == 7
    assert first.model_path == tiny_model and first.options.device == "cpu"
    assert first.output.root == tmp_path / "out" and not first.output.dated  # --output-dir: no dated folder


def test_generate_and_compare_seeds_number_their_jobs_from_one_factory(qtbot, make_window):
    window = make_window()
    wait_until_ready(qtbot, window)
    window.state.update(
        prompt="a quiet harbour", steps=2, count=2, width=64, height=64, random_seed=False, seed=3
    )
    window.panel.prompt.edit.setFocus()
    jobs, ended = [], []
    window.controller.job_started.connect(jobs.append)
    window.controller.job_ended.connect(lambda job, _outcome: ended.append(job))
    qtbot.keyClick(window.panel.prompt.edit, Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier)
    shift_ctrl = Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier
    qtbot.keyClick(window.panel.prompt.edit, Qt.Key.Key_Return, shift_ctrl)
    qtbot.waitUntil(lambda: len(ended) == 2, timeout=15000)
    assert [j.job_id for j in jobs] == [1, 2]  # Generate, then Compare Seeds: one counter, one factory
    assert jobs[1] is window.seed_compare.job
    assert jobs[0].options == jobs[1].options and jobs[0].model_path == jobs[1].model_path
