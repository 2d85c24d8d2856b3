"""A remembered ComfyUI server set and an offline start (issue 17 follow-up): the picker keeps an entry for it
marked offline, Generate says so in one sentence, the choice survives the window saving its state, and the set
becomes usable when the server answers; a server answering only after the user chose another set does not take
the user's choice away."""

import pytest
from PySide6.QtCore import Qt

from app.remote.engine_list import EngineList
from tests.comfyui.fake_server import FakeComfy
from tests.ui.conftest import wait_until_ready
from tests.ui.test_window_remote_engine import remote_index, window_on_server_set

ONLINE = "sd3.5_medium · gpu-box · no T5"
OFFLINE = "sd3.5_medium · gpu-box · offline"


@pytest.fixture(autouse=True)
def quick_retries(monkeypatch):
    monkeypatch.setattr("app.remote.engine_list._usable_keyring", lambda: None)
    monkeypatch.setattr("app.ui.window.engine_hookup.RETRY_FIRST", 0.3)
    monkeypatch.setattr("app.ui.window.engine_hookup.RETRY_MAX", 0.5)


def remember_the_server_set(qtbot, make_window) -> int:
    """A first run chooses the server's set and quits; the server then goes away. Returns its port."""
    with FakeComfy() as fake:
        window = window_on_server_set(qtbot, make_window, fake.url, "gpu-box", ONLINE)
        window.close()
        return fake.httpd.server_address[1]


def test_a_remembered_server_set_survives_an_offline_start_and_is_usable_when_the_server_answers(
    qtbot, make_window, fake_sessions
):
    port = remember_the_server_set(qtbot, make_window)
    window = make_window()
    wait_until_ready(qtbot, window)
    qtbot.waitUntil(lambda: window.panel.model_combo.currentText() == OFFLINE, timeout=10_000)
    chosen = window.picker.selected
    assert chosen.is_remote and chosen.offline
    qtbot.waitUntil(
        lambda: window.engine_hookup.label.full_text() == "Engine: gpu-box · offline — retrying",
        timeout=5_000,
    )

    qtbot.mouseClick(window.generate_button, Qt.MouseButton.LeftButton)  # Generate: one sentence, no job
    message = window.banner.message()
    assert message.startswith("gpu-box is offline:") and message.endswith(".") and ". " not in message
    assert window.controller.current_job is None and not fake_sessions.instances
    window.grab().save("/tmp/engfollow-offline-start.png")

    window.save_settings()  # the choice is not lost when the window saves its state
    assert window.state.values.engine.endswith(f":{port}") and window.state.values.remote_model
    window.close()

    again = make_window()
    wait_until_ready(qtbot, again)
    qtbot.waitUntil(lambda: again.panel.model_combo.currentText() == OFFLINE, timeout=10_000)
    with FakeComfy(port) as fake:  # the server answers: the entry becomes the real, usable set, still chosen
        qtbot.waitUntil(lambda: again.panel.model_combo.currentText() == ONLINE, timeout=10_000)
        assert again.picker.selected.is_remote and not again.picker.selected.offline
        assert remote_index(again, OFFLINE) < 0
        qtbot.waitUntil(lambda: again.engine_hookup.label.full_text() == "Engine: gpu-box · online")
        assert ("GET", "/object_info") in fake.requests
        again.close()


def test_a_server_that_answers_after_the_user_chose_another_set_leaves_the_users_choice(qtbot, make_window):
    port = remember_the_server_set(qtbot, make_window)
    window = make_window()
    wait_until_ready(qtbot, window)
    combo = window.panel.model_combo
    qtbot.waitUntil(lambda: combo.currentText() == OFFLINE, timeout=10_000)
    combo.setFocus()
    while combo.currentIndex() > 0:  # the user steps up to this machine's set with the keyboard
        qtbot.keyClick(combo, Qt.Key.Key_Up)
    chosen = combo.currentText()
    assert not window.picker.selected.is_remote and window.state.values.engine == ""
    with FakeComfy(port):
        qtbot.waitUntil(lambda: remote_index(window, ONLINE) >= 0, timeout=10_000)
        qtbot.wait(100)
        assert combo.currentText() == chosen and not window.picker.selected.is_remote
        assert window.state.values.engine == ""
        window.close()


def test_the_remembered_entry_reads_connecting_until_a_check_fails_and_goes_when_the_server_is_removed(
    tmp_path,
):
    from app.remote.engine_list import TokenStore
    from app.ui.window.engine_sets import remembered_offline

    engines = EngineList(tmp_path, TokenStore(tmp_path, use_keyring=False))
    url = engines.add("http://gpu-box:8188", "gpu-box").url
    remembered = (url, "sd3.5_large.safetensors")
    waiting, [entry] = remembered_offline(remembered, engines, {}, [])
    assert waiting and entry.label == "sd3.5_large · gpu-box · connecting…" and entry.variant == "large"
    assert entry.offline.startswith("gpu-box has not answered yet")
    waiting, [entry] = remembered_offline(remembered, engines, {}, [], {url})
    assert entry.label == "sd3.5_large · gpu-box · offline" and entry.problem().startswith(
        "gpu-box is offline"
    )
    assert remembered_offline(remembered, engines, {url: object()}, []) == (False, [])  # it answered
    engines.update(url, enabled=False)
    assert remembered_offline(remembered, engines, {}, []) == (False, [])  # disabled: no entry
    engines.remove(url)
    assert remembered_offline(remembered, engines, {}, []) == (False, [])
