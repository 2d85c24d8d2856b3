"""The status bar with a ComfyUI server's set chosen (issue 17 follow-up): at a normal width (1250 px) every
entry fits or elides, the window never grows, and the remote session's memory entry is short
("ComfyUI 0.8.0 · gpu-box", the whole text in its tooltip)."""

import socket
import threading
import time

import pytest

from app.remote.engine_list import EngineList
from app.ui.generation.jobs import JobStatus
from tests.comfyui.fake_server import FakeComfy
from tests.ui.conftest import wait_until_ready
from tests.ui.test_window_remote_engine import window_on_server_set

LABEL = "sd3.5_medium · gpu-box · no T5"


@pytest.fixture(autouse=True)
def token_file(monkeypatch):
    monkeypatch.setattr("app.remote.engine_list._usable_keyring", lambda: None)


def run_one_image(qtbot, window):
    window.state.update(prompt="a harbour", steps=2, count=1, width=64, height=64, cfg=2.0, sampler="euler",
                        random_seed=False, seed=7)  # fmt: skip
    with qtbot.waitSignal(window.controller.job_ended, timeout=60_000) as ended:
        window.commands.generate.generate()
    assert ended.args[1].status is JobStatus.FINISHED, ended.args[1].message


def test_the_status_bar_fits_at_1250_px_with_a_server_set_and_names_the_server_shortly(qtbot, make_window):
    with FakeComfy() as fake:
        window = window_on_server_set(qtbot, make_window, fake.url, "gpu-box", LABEL)
        run_one_image(qtbot, window)
        window.resize(1250, 800)
        qtbot.wait(50)
        window.grab().save("/tmp/engfollow/status-1250.png")
        window.statusBar().grab().save("/tmp/engfollow/statusbar-1250.png")

        memory = window.memory_label
        assert memory.text() == "ComfyUI 0.8.0 · gpu-box"
        assert fake.url in memory.toolTip() and "fake" in memory.toolTip()  # the whole text, with the device
        assert window.width() == 1250  # never grown by the status bar
        bar = window.statusBar()
        last = window.last_job_label
        assert last.text().startswith("Last job: ")
        assert last.isVisible() and last.width() >= last.sizeHint().width()  # not cut off
        assert last.geometry().right() <= bar.width()
        for label in (window.engine_hookup.label, window.device_label, window.model_label, memory):
            assert label.isVisible() and label.geometry().right() <= bar.width()
            shown = label.text()
            full = getattr(label, "full_text", label.text)()
            assert label.fontMetrics().horizontalAdvance(shown) <= label.contentsRect().width() + 1, full

        long_device = "Device: CUDA · 80 GB (" + "a-very-long-server-name-" * 6 + ")"
        window.device_label.setText(long_device)  # a long server name: elided, the window keeps its width
        window.memory_label.setText("ComfyUI 0.8.0 · " + "another-long-name-" * 6)
        qtbot.wait(50)
        assert window.minimumSizeHint().width() <= 1250 and window.width() == 1250
        assert window.device_label.text() != long_device and window.device_label.text().endswith("…")
        assert window.device_label.toolTip() == long_device
        assert last.width() >= last.sizeHint().width() and last.geometry().right() <= bar.width()
        window.statusBar().grab().save("/tmp/engfollow/statusbar-1250-long.png")
        window.close()


def test_a_server_that_goes_away_while_idle_shows_offline_and_online_again_when_it_returns(
    qtbot, make_window, monkeypatch
):
    monkeypatch.setattr("app.ui.window.engine_watch.HEARTBEAT_S", 0.3)
    monkeypatch.setattr("app.ui.window.engine_hookup.RETRY_FIRST", 0.3)
    fake = FakeComfy().__enter__()
    port = fake.httpd.server_address[1]
    try:
        window = window_on_server_set(qtbot, make_window, fake.url, "gpu-box", LABEL)
        label = window.engine_hookup.label
        qtbot.waitUntil(lambda: label.full_text() == "Engine: gpu-box · online", timeout=5_000)
        before = len(fake.requests)
        qtbot.waitUntil(lambda: len(fake.requests) >= before + 2, timeout=5_000)  # idle: the heartbeat asks
        assert set(fake.requests[before:]) == {("GET", "/system_stats")}  # only that, the cheap call
        fake.__exit__(None, None, None)  # the server goes away; no job runs
        qtbot.waitUntil(lambda: label.full_text() == "Engine: gpu-box · offline — retrying", timeout=5_000)
        assert "cannot reach the ComfyUI server" in label.toolTip()
        assert window.controller.current_job is None
        fake = FakeComfy(port).__enter__()  # it comes back on the same address
        qtbot.waitUntil(lambda: label.full_text() == "Engine: gpu-box · online", timeout=10_000)
        assert window.picker.selected.label == LABEL  # still the server's set
        window.close()
    finally:
        fake.__exit__(None, None, None)


def test_quitting_while_a_server_hangs_in_a_check_does_not_wait_for_it(qtbot, make_window):
    """A server that accepts the connection and never answers: the window closes at once, and the check's
    thread is a daemon, so the process's exit does not wait for the 10 s HTTP timeout either."""
    hanging = socket.socket()
    hanging.bind(("127.0.0.1", 0))
    hanging.listen(8)  # the kernel accepts connections; nobody ever reads or answers
    try:
        url = f"http://127.0.0.1:{hanging.getsockname()[1]}"
        EngineList().add(url, "stuck")
        window = make_window()
        wait_until_ready(qtbot, window)
        hookup = window.engine_hookup
        qtbot.waitUntil(lambda: url in hookup._checking, timeout=5_000)
        checks = [t for t in threading.enumerate() if t.name.startswith("sd35-io-engines")]
        assert checks and all(t.is_alive() for t in checks)
        started = time.perf_counter()
        window.close()
        assert time.perf_counter() - started < 1.0
        assert all(t.daemon for t in checks)  # abandoned, never joined at exit
        assert url in hookup._checking and url not in hookup.reports  # it was still hanging when we quit
    finally:
        hanging.close()
