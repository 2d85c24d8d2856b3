"""Settings ▸ Engines says when a server's token would cross the network unencrypted (plain http:// to another
machine), on adding it, setting its token and testing it, and still sends the token. Real clicks and typing."""

import pytest
from PySide6.QtCore import Qt

from app.remote.tls import CLEAR_TOKEN_WARNING
from tests.comfyui.fake_server import FakeComfy
from tests.comfyui.resolve import as_remote, resolve_remote_host_to_loopback
from tests.ui.conftest import open_engines_dialog

TOKEN = "tok-dialog-clear-5"


@pytest.fixture
def dialog(qtbot, tmp_path):
    yield from open_engines_dialog(qtbot, tmp_path)


def add(qtbot, dialog, url: str, name: str, token: str = "") -> None:
    for edit, text in ((dialog.url_edit, url), (dialog.name_edit, name), (dialog.token_edit, token)):
        edit.clear()
        qtbot.keyClicks(edit, text)
    qtbot.mouseClick(dialog.add_button, Qt.MouseButton.LeftButton)
    assert dialog.add_problem.full_text() == ""


def warning(dialog) -> str:
    return dialog.token_warning.text() if dialog.token_warning.isVisible() else ""


def test_a_token_over_plain_http_to_another_machine_is_warned_about_and_still_sent(
    qtbot, dialog, monkeypatch
):
    resolve_remote_host_to_loopback(monkeypatch)
    with FakeComfy() as fake:
        url = as_remote(fake.url)
        add(qtbot, dialog, url, "lan box", TOKEN)
        assert warning(dialog) == f"⚠ lan box: {CLEAR_TOKEN_WARNING}"
        dialog.grab().save("/tmp/tlsui-token-clear.png")

        qtbot.mouseClick(dialog.test_button, Qt.MouseButton.LeftButton)
        qtbot.waitUntil(lambda: dialog.report_title.full_text().startswith(("✓", "✗")), timeout=20_000)
        assert dialog.report_title.full_text().startswith("✓ lan box is reachable")
        assert warning(dialog) == f"⚠ lan box: {CLEAR_TOKEN_WARNING}"  # the test does not clear it
        assert set(fake.authorization) == {f"Bearer {TOKEN}"}  # warned, never blocked
        assert TOKEN not in dialog.report_view.toPlainText() + warning(dialog)


def test_no_warning_for_https_loopback_or_no_token_until_one_is_set(qtbot, dialog):
    add(qtbot, dialog, "https://gpu-box.test:8443", "cloud", TOKEN)
    assert warning(dialog) == ""
    add(qtbot, dialog, "http://127.0.0.1:8188", "here", TOKEN)
    assert warning(dialog) == ""
    add(qtbot, dialog, "http://gpu-box.test:8188", "lan", "")
    assert warning(dialog) == ""

    qtbot.mouseClick(dialog.set_token_button, Qt.MouseButton.LeftButton)
    prompt = dialog.token_dialog
    assert prompt is not None
    qtbot.keyClicks(prompt.findChild(type(dialog.url_edit)), TOKEN)
    qtbot.keyClick(prompt.findChild(type(dialog.url_edit)), Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: warning(dialog) == f"⚠ lan: {CLEAR_TOKEN_WARNING}", timeout=5_000)

    qtbot.mouseClick(dialog.clear_token_button, Qt.MouseButton.LeftButton)
    assert warning(dialog) == ""
    here = dialog.server_list.visualItemRect(dialog.server_list.item(1)).center()
    qtbot.mouseClick(dialog.server_list.viewport(), Qt.MouseButton.LeftButton, pos=here)
    assert dialog.selected_url() == "http://127.0.0.1:8188"  # its token stays on this machine
    assert warning(dialog) == ""
