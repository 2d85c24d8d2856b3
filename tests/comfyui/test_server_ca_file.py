"""A per-server CA file in the engine list (`ca_file` in engines.json): that server's https/wss connections trust
it on top of the system store (and SD35_ENGINE_CA_FILE), other servers do not; a bad file is one sentence."""

import json

import pytest

from app.cli.main import main
from app.remote.engine_list import EngineList, TokenStore
from app.remote.errors import ServerUnreachable
from app.remote.http import ComfyHttp, websocket_url
from app.remote.tls import CA_FILE_ENV, server_ca_file
from app.remote.ws import ComfySocket
from tests.comfyui.fake_server import FakeComfy
from tests.comfyui.tls_certs import certificates_or_skip, make_certificates

TOKEN = "tok-ca-file-3"


@pytest.fixture
def certs(tmp_path):
    return certificates_or_skip(tmp_path)


@pytest.fixture
def setup(tmp_path, monkeypatch):
    for name in (
        "SSL_CERT_FILE",
        "SSL_CERT_DIR",
        "WEBSOCKET_CLIENT_CA_BUNDLE",
        CA_FILE_ENV,
        "SD35_ENGINE_TOKEN",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    monkeypatch.setattr("app.remote.engine_list._usable_keyring", lambda: None)
    monkeypatch.setattr("app.remote.tls._server_ca_files", {})  # no server of another test stays trusted


@pytest.fixture
def tls_fake(certs):
    with FakeComfy(tls=certs.server_context()) as server:
        yield server


def test_a_server_is_trusted_only_through_its_own_ca_file(setup, certs, tls_fake, capsys, monkeypatch):
    engines = EngineList()
    engines.add(tls_fake.url, "cloud", TOKEN)
    assert main(["engines", "test", tls_fake.url]) == 1
    assert "has a certificate this computer does not trust" in capsys.readouterr().err
    assert tls_fake.requests == [] and tls_fake.authorization == []

    engines.set_ca_file(tls_fake.url, str(certs.ca))
    saved = json.loads(engines.path.read_text())["servers"][0]
    assert saved["ca_file"] == str(certs.ca)
    assert main(["engines", "test", tls_fake.url]) == 0  # a new EngineList: read back from engines.json
    assert capsys.readouterr().out.startswith(f"reachable: yes ({tls_fake.url}, ")
    assert set(tls_fake.authorization) == {f"Bearer {TOKEN}"}

    tls_fake.authorization.clear()
    monkeypatch.setattr(
        "app.remote.tls._server_ca_files", {}
    )  # as in a new process: only engines.json knows it
    assert (
        main(["engines", "test", tls_fake.url, "--token", "given-9"]) == 0
    )  # a given token: its CA file too
    assert set(tls_fake.authorization) == {"Bearer given-9"}
    capsys.readouterr()

    socket = ComfySocket(websocket_url(tls_fake.url, "c1"), engines.headers_for(tls_fake.url))
    socket.connect()  # the WebSocket half trusts the same file
    socket.close()

    # The same server under another address the certificate is made for: not in the list, not trusted by it.
    other = tls_fake.url.replace("127.0.0.1", "localhost")
    assert server_ca_file(other) == ""
    with pytest.raises(ServerUnreachable, match="does not trust"):
        ComfyHttp(other).get_json("/system_stats", "the system stats")


def test_a_bad_ca_file_is_refused_when_set_and_said_when_it_vanished(setup, certs, tls_fake, tmp_path):
    engines = EngineList(tmp_path / "list", TokenStore(tmp_path / "list", use_keyring=False))
    engines.add(tls_fake.url)
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    with pytest.raises(
        ValueError, match=r"junk.pem is not a readable certificate file \(no PEM certificate in it\)"
    ):
        engines.set_ca_file(tls_fake.url, str(junk))
    assert engines.find(tls_fake.url).ca_file == ""

    moved = tmp_path / "ca-copy.pem"
    moved.write_bytes(certs.ca.read_bytes())
    engines.set_ca_file(tls_fake.url, str(moved))
    moved.unlink()
    with pytest.raises(ServerUnreachable) as caught:
        ComfyHttp(tls_fake.url).get_json("/system_stats", "the system stats")
    assert (
        str(caught.value)
        == f"the server's CA file {moved} is not a readable certificate file (no such file or directory)"
    )
    assert tls_fake.requests == []


def test_the_server_ca_file_adds_to_the_environment_ca_file(setup, certs, tls_fake, tmp_path, monkeypatch):
    """SD35_ENGINE_CA_FILE naming another CA does not stop a server's own CA file from being used."""
    (tmp_path / "other").mkdir()
    other = make_certificates(tmp_path / "other")
    monkeypatch.setenv(CA_FILE_ENV, str(other.ca))
    engines = EngineList(tmp_path / "list", TokenStore(tmp_path / "list", use_keyring=False))
    engines.add(tls_fake.url)
    with pytest.raises(ServerUnreachable, match="does not trust"):
        ComfyHttp(tls_fake.url).get_json("/system_stats", "the system stats")
    engines.set_ca_file(tls_fake.url, str(certs.ca))
    assert ComfyHttp(tls_fake.url).get_json("/system_stats", "the system stats")


def test_a_job_on_one_server_and_on_a_pool_uses_each_server_s_ca_file(setup, certs, tls_fake, tmp_path):
    """The window's sessions (one server, or a pool of several): the https and wss halves trust the server's own
    CA file, so a job runs with its steps over wss."""
    from app.inference.api.events import ImageFinished, JobFinished
    from app.inference.api.request import GenerationRequest
    from app.ui.engines.sessions import open_remote_session
    from tests.comfyui.test_remote_tls import run_bounded

    engines = EngineList(tmp_path / "list", TokenStore(tmp_path / "list", use_keyring=False))
    engines.add(tls_fake.url, "cloud", TOKEN)
    engines.update(tls_fake.url, partial_text_encoders=True)
    engines.set_ca_file(tls_fake.url, str(certs.ca))
    req = GenerationRequest(prompt="a fox", seed=1, steps=2, width=64, height=64, use_t5=False, count=2)
    with FakeComfy() as plain:
        engines.add(plain.url, "home")
        engines.update(plain.url, partial_text_encoders=True)
        for urls in ((tls_fake.url,), (tls_fake.url, plain.url)):
            tls_fake.requests.clear()
            session = open_remote_session(urls, "off", engines)
            events = run_bounded(session, req)
            session.close()
            assert isinstance(events[-1], JobFinished), events[-1]
            assert sum(isinstance(e, ImageFinished) for e in events) == 2
            assert ("GET", "/ws") in tls_fake.requests and ("POST", "/prompt") in tls_fake.requests, urls
    assert tls_fake.tls_failures == [] and set(tls_fake.authorization) == {f"Bearer {TOKEN}"}
