"""Edit ▸ Engines: Set token… / Clear token for a server already in the list (issue 17 follow-up). The token is
stored the same way as at Add (here the 0600 file), never shown, and the window's open session on that server is
reopened, so the next job sends the new token: the fake server records each request's Authorization header."""

import stat

import pytest
from PySide6.QtCore import Qt

from app.remote.engine_list import EngineList
from app.ui.generation.jobs import JobStatus
from tests.comfyui.fake_server import FakeComfy
from tests.ui.conftest import wait_until_ready
from tests.ui.test_window_remote_engine import remote_index

LABEL = "sd3.5_medium · gpu-box · no T5"


@pytest.fixture(autouse=True)
def token_file(monkeypatch):
    monkeypatch.setattr("app.remote.engine_list._usable_keyring", lambda: None)


def prompt_tokens(qtbot, window, fake) -> list[str | None]:
    """Run a one-image job; the Authorization headers of the /prompt requests it sent."""
    before = len(fake.requests)
    with qtbot.waitSignal(window.controller.job_ended, timeout=60_000) as ended:
        window.commands.generate.generate()  # (the Engines dialog may have the focus: Ctrl+Return is the window's)
    assert ended.args[1].status is JobStatus.FINISHED, ended.args[1].message
    pairs = list(zip(fake.requests, fake.authorization, strict=False))[before:]
    return [auth for request, auth in pairs if request == ("POST", "/prompt")]


def test_set_token_and_clear_token_reach_the_open_session(qtbot, make_window):
    with FakeComfy() as fake:
        engines = EngineList()
        engines.add(fake.url, "gpu-box", token="old-token")
        window = make_window()
        wait_until_ready(qtbot, window)
        qtbot.waitUntil(lambda: remote_index(window, LABEL) >= 0, timeout=10_000)
        window.panel.model_combo.setCurrentIndex(remote_index(window, LABEL))
        window.state.update(
            prompt="a harbour", steps=2, count=1, width=64, height=64, random_seed=False, seed=3
        )
        assert prompt_tokens(qtbot, window, fake) == ["Bearer old-token"]  # the session is open now

        dialog = window.engine_hookup.open_dialog()
        assert dialog.selected_url() == fake.url and dialog.clear_token_button.isEnabled()
        qtbot.mouseClick(dialog.set_token_button, Qt.MouseButton.LeftButton)
        prompt = dialog.token_dialog
        assert prompt is not None and prompt.isVisible()
        line = prompt.findChild(type(dialog.url_edit))
        assert line.echoMode() == line.EchoMode.Password  # typed unseen
        qtbot.keyClicks(line, "new-token-42")
        qtbot.keyClick(line, Qt.Key.Key_Return)
        qtbot.waitUntil(lambda: not prompt.isVisible())
        assert EngineList().tokens.get(fake.url) == "new-token-42"  # stored as at Add: the 0600 file
        token_file = EngineList().tokens.path
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        assert all(
            "new-token-42" not in dialog.server_list.item(i).text() for i in range(dialog.server_list.count())
        )
        qtbot.waitUntil(lambda: window.engine_hookup.label.full_text() == "Engine: gpu-box · online")
        assert prompt_tokens(qtbot, window, fake) == ["Bearer new-token-42"]  # the worker's session reopened

        qtbot.mouseClick(dialog.clear_token_button, Qt.MouseButton.LeftButton)
        assert not EngineList().has_token(fake.url) and not dialog.clear_token_button.isEnabled()
        assert prompt_tokens(qtbot, window, fake) == [None]
        dialog.close()
        window.close()


def test_a_token_that_cannot_travel_in_a_header_is_refused_with_a_sentence(qtbot, make_window):
    with FakeComfy() as fake:
        EngineList().add(fake.url, "gpu-box", token="kept")
        window = make_window()
        wait_until_ready(qtbot, window)
        dialog = window.engine_hookup.open_dialog()
        prompt = dialog.ask_token()
        prompt.setTextValue("tök")
        prompt.accept()
        assert "printable ASCII" in dialog.add_problem.full_text()
        assert EngineList().tokens.get(fake.url) == "kept"  # nothing lost
        dialog.close()
        window.close()


def test_choosing_a_ca_file_reconnects_the_open_session(qtbot, make_window, monkeypatch, tmp_path):
    """A CA file chosen for a server (CA file… in Edit ▸ Engines) must reach the window's open session too: it
    trusted the old set of CAs, so the next job on that server opens a new one."""
    from PySide6.QtWidgets import QFileDialog

    from tests.comfyui.tls_certs import MISSING, make_certificates

    (tmp_path / "tls").mkdir()
    certs = make_certificates(tmp_path / "tls")
    if certs is None:
        pytest.skip(MISSING)
    monkeypatch.setattr("app.remote.tls._server_ca_files", {})
    monkeypatch.setattr(
        QFileDialog, "getOpenFileName", staticmethod(lambda *a: (str(certs.ca), "PEM certificates (*.pem)"))
    )
    with FakeComfy() as fake:
        EngineList().add(fake.url, "gpu-box", token="a-token")
        window = make_window()
        wait_until_ready(qtbot, window)
        qtbot.waitUntil(lambda: remote_index(window, LABEL) >= 0, timeout=10_000)
        window.panel.model_combo.setCurrentIndex(remote_index(window, LABEL))
        window.state.update(
            prompt="a harbour", steps=2, count=1, width=64, height=64, random_seed=False, seed=3
        )
        assert prompt_tokens(qtbot, window, fake) == ["Bearer a-token"]  # the session is open now
        reopened: list[str] = []
        reopen = window.controller.reopen_remote
        monkeypatch.setattr(
            window.controller, "reopen_remote", lambda url: (reopened.append(url), reopen(url))
        )

        dialog = window.engine_hookup.open_dialog()
        assert dialog.selected_url() == fake.url
        qtbot.mouseClick(dialog.ca_button, Qt.MouseButton.LeftButton)
        assert EngineList().find(fake.url).ca_file == str(certs.ca)
        assert reopened == [fake.url]
        # A new session on the same server still works.
        assert prompt_tokens(qtbot, window, fake) == ["Bearer a-token"]
        dialog.close()
        window.close()
