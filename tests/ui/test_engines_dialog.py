"""Settings ▸ Engines against the real ComfyUI server and a closed port: real clicks and typing; the connection
test runs off the UI thread and reports in the same lines as `sd35-studio engines test`."""

import time

import pytest
from PySide6.QtCore import Qt

from app.remote.engine_list import EngineList, TokenStore
from tests.comfyui.fake_server import FakeComfy
from tests.ui.conftest import open_engines_dialog

CLOSED = "http://127.0.0.1:9"


@pytest.fixture
def dialog(qtbot, tmp_path):
    yield from open_engines_dialog(qtbot, tmp_path)


def add(qtbot, dlg, url, name="", token=""):
    for edit, text in ((dlg.url_edit, url), (dlg.name_edit, name), (dlg.token_edit, token)):
        edit.clear()
        qtbot.keyClicks(edit, text)
    qtbot.mouseClick(dlg.add_button, Qt.MouseButton.LeftButton)


@pytest.mark.slow
def test_add_and_test_the_real_server(qtbot, dialog, comfyui_server):
    add(qtbot, dialog, comfyui_server.url, "tiny box", "tok-dialog-1")
    assert dialog.server_list.count() == 1 and dialog.selected_url() == comfyui_server.url
    assert (
        "tiny box" in dialog.server_list.item(0).text()
        and "tok-dialog-1" not in dialog.server_list.item(0).text()
    )
    assert dialog.token_edit.text() == ""  # the token is stored, never shown again
    qtbot.mouseClick(dialog.test_button, Qt.MouseButton.LeftButton)
    assert dialog.report_title.full_text() == "Testing tiny box…" and not dialog.test_button.isEnabled()
    qtbot.waitUntil(lambda: dialog.report_title.full_text().startswith("✓"), timeout=20_000)
    lines = dialog.report_view.toPlainText().splitlines()
    assert lines[0].startswith(f"reachable: yes ({comfyui_server.url}, ") and lines[1] == "ComfyUI: 0.8.0"
    assert lines[2].startswith("device: cpu (cpu), VRAM ") and "previews: on (latent2rgb)" in lines
    assert any(line.startswith("SD3.5 checkpoints: ") for line in lines)
    assert dialog.engines.headers_for(comfyui_server.url) == {"Authorization": "Bearer tok-dialog-1"}
    dialog.grab().save("/tmp/engineui-engines-dialog.png")


def test_a_closed_port_gives_one_clear_line(qtbot, dialog):
    add(qtbot, dialog, CLOSED)
    qtbot.mouseClick(dialog.test_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: dialog.report_title.full_text().startswith("✗"), timeout=20_000)
    assert dialog.report_title.full_text() == "✗ 127.0.0.1:9 is not reachable"
    lines = dialog.report_view.toPlainText().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        f"reachable: no — cannot reach the ComfyUI server at {CLOSED}: "
    )
    dialog.grab().save("/tmp/engineui-engines-unreachable.png")


def test_the_window_stays_live_while_a_slow_server_is_tested(qtbot, dialog):
    with FakeComfy() as fake:
        fake.delay["/system_stats"] = 1.5
        add(qtbot, dialog, fake.url, "slow")
        started = time.monotonic()
        qtbot.mouseClick(dialog.test_button, Qt.MouseButton.LeftButton)
        assert time.monotonic() - started < 0.5  # the click returned: the test runs elsewhere
        qtbot.keyClicks(dialog.name_edit, "typing meanwhile")  # the UI takes input during the test
        assert dialog.name_edit.text() == "typing meanwhile"
        assert dialog.report_title.full_text() == "Testing slow…"
        qtbot.waitUntil(lambda: dialog.report_title.full_text().startswith("✓"), timeout=20_000)
        assert "ComfyUI: 0.8.0" in dialog.report_view.toPlainText()


def test_bad_address_order_enable_and_remove(qtbot, dialog, tmp_path):
    add(qtbot, dialog, "ftp://nowhere")
    assert "is not a server address" in dialog.add_problem.full_text() and dialog.server_list.count() == 0
    assert dialog.url_edit.text() == "ftp://nowhere"  # nothing the user typed is lost
    add(qtbot, dialog, "http://a:1", "first")
    add(qtbot, dialog, "http://b:2", "second")
    assert dialog.add_problem.full_text() == ""
    qtbot.mouseClick(dialog.up_button, Qt.MouseButton.LeftButton)  # "second" is selected: now first
    reread = EngineList(tmp_path / "engines", TokenStore(tmp_path / "engines", use_keyring=False))
    assert [e.name for e in reread.entries] == ["second", "first"]
    item = dialog.server_list.item(1)
    rect = dialog.server_list.visualItemRect(item)
    check = rect.topLeft() + rect.center().__class__(10, rect.height() // 2)  # the tick box at the row's left
    qtbot.mouseClick(dialog.server_list.viewport(), Qt.MouseButton.LeftButton, pos=check)
    assert item.checkState() == Qt.CheckState.Unchecked
    reread = EngineList(tmp_path / "engines", TokenStore(tmp_path / "engines", use_keyring=False))
    assert [e.enabled for e in reread.entries] == [True, False]
    dialog.server_list.setCurrentRow(0)
    qtbot.mouseClick(dialog.remove_button, Qt.MouseButton.LeftButton)
    assert [
        dialog.server_list.item(i).data(Qt.ItemDataRole.UserRole) for i in range(dialog.server_list.count())
    ] == ["http://a:1"]


def test_the_partial_encoders_switch_is_per_server_and_saved(qtbot, dialog, tmp_path):
    add(qtbot, dialog, "http://a:1", "first")
    add(qtbot, dialog, "http://b:2", "second")
    assert dialog.selected_url() == "http://b:2" and not dialog.partial_check.isChecked()
    qtbot.mouseClick(dialog.partial_check, Qt.MouseButton.LeftButton)
    reread = EngineList(tmp_path / "engines", TokenStore(tmp_path / "engines", use_keyring=False))
    assert [e.partial_text_encoders for e in reread.entries] == [False, True]
    dialog.server_list.setCurrentRow(0)
    assert not dialog.partial_check.isChecked()  # shows the selected server's own setting
    dialog.server_list.setCurrentRow(1)
    assert dialog.partial_check.isChecked()
