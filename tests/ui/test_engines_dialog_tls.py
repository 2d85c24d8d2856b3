"""Settings ▸ Engines with an https server (FakeComfy over TLS, a CA made for the test): an untrusted certificate
is reported in one line that says how to trust it, with the token not sent; trusted through SD35_ENGINE_CA_FILE,
the same test passes. Real clicks and typing."""

import pytest
from PySide6.QtCore import Qt

from app.remote.tls import CA_FILE_ENV
from tests.comfyui.fake_server import FakeComfy
from tests.comfyui.tls_certs import MISSING, make_certificates
from tests.ui.conftest import open_engines_dialog

TOKEN = "tok-dialog-tls-3"


@pytest.fixture
def certs(tmp_path):
    made = make_certificates(tmp_path)
    if made is None:
        pytest.skip(MISSING)
    return made


@pytest.fixture
def dialog(qtbot, tmp_path, monkeypatch):
    for name in ("SSL_CERT_FILE", "SSL_CERT_DIR", "WEBSOCKET_CLIENT_CA_BUNDLE", CA_FILE_ENV):
        monkeypatch.delenv(name, raising=False)
    yield from open_engines_dialog(qtbot, tmp_path)


def test_an_untrusted_https_server_is_reported_with_how_to_trust_it(qtbot, dialog, certs, monkeypatch):
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
        qtbot.waitUntil(lambda: dialog.report_title.full_text().startswith("✗"), timeout=20_000)
        assert dialog.report_title.full_text() == "✗ cloud: certificate not trusted"
        lines = dialog.report_view.toPlainText().splitlines()
        assert len(lines) == 1 and lines[0].startswith(
            f"reachable: no — the ComfyUI server at {fake.url} has a certificate this computer does not trust ("
        )
        assert f"set {CA_FILE_ENV} (or SSL_CERT_FILE) to the PEM file" in lines[0] and TOKEN not in lines[0]
        assert fake.requests == [] and fake.authorization == []
        dialog.grab().save("/tmp/tls-engines-untrusted.png")

        monkeypatch.setenv(CA_FILE_ENV, str(certs.ca))
        qtbot.mouseClick(dialog.test_button, Qt.MouseButton.LeftButton)
        qtbot.waitUntil(lambda: dialog.report_title.full_text().startswith("✓"), timeout=20_000)
        assert dialog.report_view.toPlainText().startswith(f"reachable: yes ({fake.url}, ")
        assert set(fake.authorization) == {f"Bearer {TOKEN}"}


def add_and_test(qtbot, dialog, url: str, name: str, token: str = "") -> None:
    for edit, text in ((dialog.url_edit, url), (dialog.name_edit, name), (dialog.token_edit, token)):
        edit.clear()
        qtbot.keyClicks(edit, text)
    qtbot.mouseClick(dialog.add_button, Qt.MouseButton.LeftButton)
    qtbot.mouseClick(dialog.test_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: dialog.report_title.full_text().startswith(("✗", "✓")), timeout=20_000)


def test_an_https_address_of_a_plain_http_server_is_titled_does_not_speak_tls(qtbot, dialog):
    with FakeComfy() as fake:  # plain HTTP on the port the https:// address names
        https_url = fake.url.replace("http://", "https://")
        add_and_test(qtbot, dialog, https_url, "home")
        assert dialog.report_title.full_text() == "✗ home: does not speak TLS"
        lines = dialog.report_view.toPlainText().splitlines()
        assert lines == [f"reachable: no — the server at {https_url} does not speak TLS; use its http:// "
                         "address only on a network you trust"]  # fmt: skip
        assert fake.requests == []


def test_a_server_that_is_away_is_still_titled_not_reachable(qtbot, dialog):
    with FakeComfy() as fake:
        url = fake.url
    add_and_test(qtbot, dialog, url, "gone")  # the port is closed now: refused, not a TLS problem
    assert dialog.report_title.full_text() == "✗ gone is not reachable"
    assert dialog.report_view.toPlainText().startswith(
        f"reachable: no — cannot reach the ComfyUI server at {url}"
    )
