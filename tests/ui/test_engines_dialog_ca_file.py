"""Settings ▸ Engines ▸ CA file…: an https server whose certificate this computer does not trust is trusted
through the CA file chosen for it (QFileDialog answered by the test), the choice is saved, and a file that holds
no certificate is refused in one sentence. Real clicks."""

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFileDialog

from app.remote.engine_list import EngineList
from app.remote.tls import CA_FILE_ENV
from tests.comfyui.fake_server import FakeComfy
from tests.comfyui.tls_certs import certificates_or_skip
from tests.ui.conftest import open_engines_dialog

TOKEN = "tok-dialog-ca-8"


@pytest.fixture
def certs(tmp_path):
    return certificates_or_skip(tmp_path)


@pytest.fixture
def dialog(qtbot, tmp_path, monkeypatch):
    for name in ("SSL_CERT_FILE", "SSL_CERT_DIR", "WEBSOCKET_CLIENT_CA_BUNDLE", CA_FILE_ENV):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr("app.remote.tls._server_ca_files", {})
    yield from open_engines_dialog(qtbot, tmp_path)


def answer_file_dialog(monkeypatch, path: str) -> list[str]:
    asked: list[str] = []

    def get_open_file_name(parent, caption, folder, filters):
        asked.append(caption)
        return path, filters.split(";;")[0]

    monkeypatch.setattr(QFileDialog, "getOpenFileName", staticmethod(get_open_file_name))
    return asked


def test_a_server_is_trusted_through_the_ca_file_chosen_for_it(qtbot, dialog, certs, monkeypatch, tmp_path):
    with FakeComfy(tls=certs.server_context()) as fake:
        for edit, text in (
            (dialog.url_edit, fake.url),
            (dialog.name_edit, "cloud"),
            (dialog.token_edit, TOKEN),
        ):
            edit.clear()
            qtbot.keyClicks(edit, text)
        qtbot.mouseClick(dialog.add_button, Qt.MouseButton.LeftButton)
        qtbot.mouseClick(dialog.test_button, Qt.MouseButton.LeftButton)
        qtbot.waitUntil(lambda: dialog.report_title.full_text().startswith(("✗", "✓")), timeout=20_000)
        assert dialog.report_title.full_text() == "✗ cloud: certificate not trusted"
        assert fake.authorization == [] and not dialog.clear_ca_button.isEnabled()

        junk = tmp_path / "junk.pem"
        junk.write_text("nothing here\n")
        answer_file_dialog(monkeypatch, str(junk))
        qtbot.mouseClick(dialog.ca_button, Qt.MouseButton.LeftButton)
        assert dialog.add_problem.full_text() == (
            f"{junk} is not a readable certificate file (no PEM certificate in it)"
        )
        assert dialog.engines.find(fake.url).ca_file == ""

        asked = answer_file_dialog(monkeypatch, str(certs.ca))
        qtbot.mouseClick(dialog.ca_button, Qt.MouseButton.LeftButton)
        assert asked == ["CA file for cloud"] and dialog.add_problem.full_text() == ""
        assert dialog.clear_ca_button.isEnabled()
        assert dialog.server_list.currentItem().text().endswith(" · token · CA file")
        assert EngineList(dialog.engines.folder).find(fake.url).ca_file == str(certs.ca)  # saved

        qtbot.mouseClick(dialog.test_button, Qt.MouseButton.LeftButton)
        qtbot.waitUntil(lambda: dialog.report_title.full_text().startswith("✓"), timeout=20_000)
        assert dialog.report_view.toPlainText().startswith(f"reachable: yes ({fake.url}, ")
        assert set(fake.authorization) == {f"Bearer {TOKEN}"}
        dialog.grab().save("/tmp/tlsui-ca-file.png")

        qtbot.mouseClick(
            dialog.clear_ca_button, Qt.MouseButton.LeftButton
        )  # back to this computer's store only
        assert EngineList(dialog.engines.folder).find(fake.url).ca_file == ""
        assert not dialog.clear_ca_button.isEnabled()
        qtbot.mouseClick(dialog.test_button, Qt.MouseButton.LeftButton)
        qtbot.waitUntil(lambda: dialog.report_title.full_text().startswith("✗"), timeout=20_000)
        assert dialog.report_title.full_text() == "✗ cloud: certificate not trusted"
        assert "or choose that file with CA file… in Settings ▸ Engines" in dialog.report_view.toPlainText()
