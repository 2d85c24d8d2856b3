"""UI test fixtures: a qasync loop per test, fresh settings and data folders, the tiny model set, windows
driven by a fake session, and a check that no thread outlives its test."""

from __future__ import annotations

import asyncio
import threading
import time
import traceback

import pytest
import qasync
from PIL import Image
from PySide6.QtCore import QSettings, Qt, QThread

from app.ui.downloads.dialog import DownloadDialog
from app.ui.window.settings_store import APPLICATION, ORGANIZATION
from tests.downloads.conftest import (  # noqa: F401  (the fake Hub and a private HF home, for the download dialog)
    fake_hub,
    hf_home,
    hub_state,
    served_large_repos,
    served_repos,
)
from tests.factory.snapshot import write_snapshot
from tests.ui.fake_session import FakeSession, fake_backend


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    """A tiny SD3.5 Medium model set in the Hugging Face layout (random weights, real key layout)."""
    return write_snapshot(tmp_path_factory.mktemp("models") / "sd3.5-medium-tiny", "medium")


@pytest.fixture
def large_model(tmp_path_factory):
    """A tiny SD3.5 Large model set (what the ControlNets run with), fresh for each test."""
    return write_snapshot(tmp_path_factory.mktemp("large") / "sd3.5-large-tiny", "large")


@pytest.fixture(autouse=True)
def _app_identity(qapp):
    qapp.setOrganizationName(ORGANIZATION)
    qapp.setApplicationName(APPLICATION)


@pytest.fixture(autouse=True)
def fresh_settings(tmp_path, monkeypatch):
    """Settings, data folders and the Hugging Face cache all under this test's tmp_path."""
    config = tmp_path / "config"
    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, str(config))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    return config


@pytest.fixture(autouse=True)
def qasync_loop(qapp):
    """The app runs on a qasync loop; in tests Qt's loop is driven by qtbot, so the loop is 'already running'."""
    loop = qasync.QEventLoop(qapp, already_running=True)
    asyncio.set_event_loop(loop)
    yield loop
    asyncio.events._set_running_loop(None)
    asyncio.set_event_loop(None)


@pytest.fixture(autouse=True)
def no_dangling_threads(monkeypatch, qtbot):
    """Fail a test that leaves a QThread or one of the app's worker threads running (napari's idea)."""
    started: list[tuple[QThread, str]] = []
    original = QThread.start

    def recording_start(self, *args):
        started.append((self, "".join(traceback.format_stack(limit=6))))
        return original(self, *args)

    monkeypatch.setattr(QThread, "start", recording_start)
    yield
    # A tokenizer load started at window start runs to its end (seconds; longer on a busy machine).
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        running = [(t, where) for t, where in started if _alive(t)]
        ours = [t for t in threading.enumerate() if t.name.startswith(("sd35-io", "sd35-tokens", "sd35-job"))]
        if not running and not ours:
            return
        qtbot.wait(20)
    details = "\n".join(where for _, where in running)
    pytest.fail(
        f"threads still running after the test: {len(running)} QThread(s) {[t.name for t in ours]}\n{details}"
    )


def _alive(thread: QThread) -> bool:
    try:
        return thread.isRunning()
    except RuntimeError:  # the C++ object is gone: it has finished
        return False


@pytest.fixture
def fake_sessions():
    FakeSession.instances.clear()
    FakeSession.step_seconds = 0.01
    yield FakeSession
    FakeSession.instances.clear()


@pytest.fixture
def make_window(qtbot, tiny_model, tmp_path, fake_sessions):
    """Build main windows on the fake session, shown, with the tiny model given like `--model`."""
    from app.ui.window.main_window import MainWindow

    windows = []

    def make(**kwargs):
        kwargs.setdefault("model_path", tiny_model)
        kwargs.setdefault("output_dir", tmp_path / "out")
        kwargs.setdefault("backend_loader", fake_backend)
        kwargs.setdefault("search_default_locations", False)
        window = MainWindow(**kwargs)
        qtbot.addWidget(window)
        windows.append(window)
        return window

    yield make
    for window in windows:
        window.close()


def click_in_message_box(qtbot, button_name, seen):
    """When a message box shows (they run modally), note its text and click its button named `button_name`."""
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication, QMessageBox, QPushButton

    def answer():
        box = QApplication.activeModalWidget()
        if not isinstance(box, QMessageBox):
            QTimer.singleShot(20, answer)
            return
        seen.append(box.text())
        qtbot.mouseClick(box.findChild(QPushButton, button_name), Qt.MouseButton.LeftButton)

    QTimer.singleShot(20, answer)


@pytest.fixture(autouse=True)
def no_unanswered_dialogs(qtbot):
    """A modal dialog nobody answers would hang the suite: close it after a while and fail the test instead."""
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    stuck: list[str] = []
    seen_since: dict[int, float] = {}

    def check():
        widget = QApplication.activeModalWidget()
        if widget is None:
            seen_since.clear()
            return
        first = seen_since.setdefault(id(widget), time.monotonic())
        if time.monotonic() - first > 20:
            stuck.append(f"{type(widget).__name__} {widget.windowTitle()!r}")
            widget.close()

    timer = QTimer()
    timer.setInterval(500)
    timer.timeout.connect(check)
    timer.start()
    yield
    timer.stop()
    if stuck:
        pytest.fail(f"a modal dialog was left unanswered for 20 s: {stuck}")


@pytest.fixture
def dialog(qtbot, fake_hub):  # noqa: F811  (the fake Hub fixture imported above)
    """The download dialog (Medium chosen) against the fake Hub, shut down after the test."""
    dialog = DownloadDialog(None, "medium")
    qtbot.addWidget(dialog)
    dialog.show()
    yield dialog
    dialog.shutdown()


def wait_until_ready(qtbot, window, timeout=15000):
    """Show the window and wait for model discovery (header reads on the I/O thread)."""
    with qtbot.waitSignal(window.models_discovered, timeout=timeout):
        window.show()


def controlnet_window(qtbot, make_window, model):
    """A ready window on `model` (gallery up, a 2-step 64x64 job) with its ControlNet section switched on by a
    click; returns (window, section)."""
    window = make_window(model_path=model)
    wait_until_ready(qtbot, window)
    qtbot.waitUntil(lambda: window.gallery.panel is not None, timeout=5000)
    window.state.update(steps=2, width=64, height=64)
    section = window.panel.controlnet
    qtbot.mouseClick(section.toggle, Qt.MouseButton.LeftButton)
    return window, section


def write_square_picture(path):
    """A 64x64 black picture with a white square in the middle (clear edges for a canny map); returns `path`."""
    picture = Image.new("RGB", (64, 64), "black")
    picture.paste((255, 255, 255), (16, 16, 48, 48))
    picture.save(path)
    return path


def open_engines_dialog(qtbot, tmp_path):
    """The Engines dialog on its own engine list (tokens in a 0600 file) and executor; a generator for a fixture."""
    from concurrent.futures import ThreadPoolExecutor

    from app.remote.engine_list import EngineList, TokenStore
    from app.ui.engines.dialog import EnginesDialog

    executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="sd35-io-engines")
    engines = EngineList(tmp_path / "engines", TokenStore(tmp_path / "engines", use_keyring=False))
    dlg = EnginesDialog(engines, executor)
    qtbot.addWidget(dlg)
    dlg.show()
    yield dlg
    dlg.close()
    executor.shutdown(wait=True)
