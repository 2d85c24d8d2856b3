"""The ComfyUI client over TLS (https + wss) against FakeComfy serving a certificate made for this test run:
trusted the ways a user trusts a server's own CA (SSL_CERT_FILE, or SD35_ENGINE_CA_FILE on top of the system store),
refused in one sentence when not trusted, with the
token never sent over an unverified connection, and no silent change of scheme either way."""

import json
import ssl
import threading
import time

import pytest

from app.cli.main import main
from app.inference.api.errors import FailureKind
from app.inference.api.events import ImageFinished, JobFailed, JobFinished, StepUpdate
from app.inference.api.request import GenerationRequest
from app.remote.engine_list import EngineList
from app.remote.errors import ServerUnreachable
from app.remote.http import ComfyHttp, websocket_url
from app.remote.report import check_server
from app.remote.session import RemoteSession
from app.remote.tls import CA_FILE_ENV, client_context
from app.remote.ws import ComfySocket
from tests.comfyui.fake_server import FakeComfy
from tests.comfyui.tls_certs import LOOPBACK, MISSING, TestCertificates, make_certificates

CHECKPOINT = "sd3.5_medium.safetensors"
TOKEN = "tok-tls-51c9"


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    made = make_certificates(tmp_path_factory.mktemp("tls"))
    if made is None:
        pytest.skip(MISSING)
    return made


@pytest.fixture
def untrusted(monkeypatch):
    """This computer's own trust store only: it has never heard of the test CA."""
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    monkeypatch.delenv("WEBSOCKET_CLIENT_CA_BUNDLE", raising=False)
    monkeypatch.delenv(CA_FILE_ENV, raising=False)


@pytest.fixture
def trusted(certs, untrusted, monkeypatch):
    monkeypatch.setenv("SSL_CERT_FILE", str(certs.ca))


@pytest.fixture
def tls_fake(certs):
    with FakeComfy(tls=certs.server_context()) as server:
        yield server


@pytest.fixture
def plain_fake():
    with FakeComfy() as server:
        yield server


@pytest.fixture
def data_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("SD35_ENGINE_TOKEN", raising=False)
    monkeypatch.setattr("app.remote.engine_list._usable_keyring", lambda: None)  # the 0600 file path


def run_bounded(session, req, limit: float = 15.0) -> list:
    events = []
    thread = threading.Thread(target=lambda: events.extend(session.run(CHECKPOINT, req)), daemon=True)
    thread.start()
    thread.join(limit)
    assert not thread.is_alive(), f"the job hung for {limit} s; events so far: {events}"
    return events


def refused_handshakes(fake, timeout: float = 3.0) -> list[str]:
    """The fake's failed TLS handshakes, once its connection thread has recorded one (it runs on its own)."""
    deadline = time.monotonic() + timeout
    while not fake.tls_failures and time.monotonic() < deadline:
        time.sleep(0.01)
    return fake.tls_failures


def request(**overrides):
    values = {"prompt": "a fox", "seed": 1, "steps": 3, "width": 64, "height": 64, "use_t5": False}
    return GenerationRequest(**{**values, **overrides})


def session_for(url, **kwargs):
    return RemoteSession(url, partial_text_encoders=True, timeout=3.0, poll_every=0.5, **kwargs)


# ------------------------------------------------------------------------------------------- trusted: it works
def test_engines_test_over_https_with_the_ca_trusted(tls_fake, trusted, data_folder, capsys):
    assert tls_fake.url.startswith("https://")
    EngineList().add(tls_fake.url, "cloud", token=TOKEN)
    assert main(["engines", "test", tls_fake.url, "--json"]) == 0
    out, err = capsys.readouterr()
    report = json.loads(out)
    assert report["reachable"] is True and report["comfyui_version"] == "0.8.0"
    assert set(tls_fake.authorization) == {f"Bearer {TOKEN}"} and tls_fake.tls_failures == []
    assert TOKEN not in out + err


def test_a_remote_job_runs_over_https_and_wss(tls_fake, trusted):
    session = session_for(tls_fake.url, headers={"Authorization": f"Bearer {TOKEN}"})
    assert session.socket.url.startswith("wss://127.0.0.1:")
    events = run_bounded(session, request(count=2))
    session.close()
    assert isinstance(events[-1], JobFinished), events[-1]
    assert sum(isinstance(e, ImageFinished) for e in events) == 2
    assert [e.step for e in events if isinstance(e, StepUpdate)] == [1, 2, 3, 1, 2, 3]  # these came over wss
    assert ("GET", "/ws") in tls_fake.requests and ("POST", "/prompt") in tls_fake.requests
    assert set(tls_fake.authorization) == {f"Bearer {TOKEN}"} and tls_fake.tls_failures == []


def test_the_app_s_ca_file_trusts_the_server_for_a_job_and_engines_test(
    tls_fake, certs, untrusted, data_folder, monkeypatch, capsys
):
    monkeypatch.setenv(CA_FILE_ENV, str(certs.ca))
    events = run_bounded(session_for(tls_fake.url), request())
    assert isinstance(events[-1], JobFinished), events[-1]
    assert ("GET", "/ws") in tls_fake.requests and [e.step for e in events if isinstance(e, StepUpdate)] == [
        1,
        2,
        3,
    ]
    assert main(["engines", "test", tls_fake.url]) == 0
    assert capsys.readouterr().out.startswith(f"reachable: yes ({tls_fake.url}, ")
    assert tls_fake.tls_failures == []


def test_the_app_s_ca_file_adds_to_the_system_store_instead_of_replacing_it(certs, untrusted, monkeypatch):
    system = ssl.create_default_context().cert_store_stats()["x509_ca"]
    assert client_context() is None  # nothing set: the libraries' own verified default
    monkeypatch.setenv(CA_FILE_ENV, str(certs.ca))
    context = client_context()
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert context.cert_store_stats()["x509_ca"] == system + 1


@pytest.mark.parametrize("content", [None, "not a certificate\n"])
def test_a_bad_ca_file_is_said_in_one_line_before_anything_is_sent(
    tls_fake, untrusted, data_folder, tmp_path, monkeypatch, capsys, content
):
    ca_file = tmp_path / "ca.pem"
    if content is not None:
        ca_file.write_text(content)
    monkeypatch.setenv(CA_FILE_ENV, str(ca_file))
    assert main(["engines", "test", tls_fake.url]) == 1
    err = capsys.readouterr().err
    assert (
        err
        == f"sd35-studio: error: {CA_FILE_ENV} names {ca_file}, which is not a readable certificate file ("
        + ("no such file or directory)\n" if content is None else "no PEM certificate in it)\n")
    )
    events = run_bounded(session_for(tls_fake.url), request())
    assert [type(e) for e in events] == [JobFailed] and CA_FILE_ENV in events[0].message
    with pytest.raises(ServerUnreachable, match=CA_FILE_ENV):
        ComfySocket(websocket_url(tls_fake.url, "c1"), {}, 3.0).connect()
    assert tls_fake.requests == [] and tls_fake.tls_failures == []


def test_the_ca_setting_is_not_read_for_a_plain_http_server(plain_fake, untrusted, tmp_path, monkeypatch):
    """A TLS-only setting (even a broken one) does not stop a home server on http:// from working."""
    monkeypatch.setenv(CA_FILE_ENV, str(tmp_path / "missing.pem"))
    assert check_server(plain_fake.url, timeout=3.0).reachable
    events = run_bounded(session_for(plain_fake.url), request())
    assert isinstance(events[-1], JobFinished), events[-1]


# ------------------------------------------------------------------------------------ untrusted: one sentence
def test_engines_test_refuses_an_untrusted_certificate_in_one_line(tls_fake, untrusted, data_folder, capsys):
    EngineList().add(tls_fake.url, "cloud", token=TOKEN)
    assert main(["engines", "test", tls_fake.url]) == 1
    out, err = capsys.readouterr()
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith(f"sd35-studio: error: the ComfyUI server at {tls_fake.url} has a certificate ")
    assert "does not trust" in err
    assert "set SD35_ENGINE_CA_FILE (or SSL_CERT_FILE) to the PEM file of the certificate authority" in err
    assert TOKEN not in out + err
    assert refused_handshakes(tls_fake)  # the handshake was tried and refused by the client ...
    assert tls_fake.requests == [] and tls_fake.authorization == []  # ... so no request, no token, was sent


def test_a_remote_job_against_an_untrusted_server_fails_in_one_sentence(tls_fake, untrusted):
    events = run_bounded(session_for(tls_fake.url, headers={"Authorization": f"Bearer {TOKEN}"}), request())
    assert [type(e) for e in events] == [JobFailed], events
    assert events[-1].kind == FailureKind.CONNECTION
    assert "has a certificate this computer does not trust" in events[-1].message
    assert "SSL_CERT_FILE" in events[-1].message and "\n" not in events[-1].message
    assert tls_fake.requests == [] and tls_fake.authorization == []


def test_the_websocket_refuses_an_untrusted_certificate_before_sending_the_token(tls_fake, untrusted):
    socket = ComfySocket(websocket_url(tls_fake.url, "c1"), {"Authorization": f"Bearer {TOKEN}"}, 3.0)
    with pytest.raises(ServerUnreachable) as refused:
        socket.connect()
    message = str(refused.value)
    assert message.startswith(
        f"the ComfyUI server at wss://127.0.0.1:{tls_fake.url.rsplit(':', 1)[1]}/ws has a "
    )
    assert "does not trust" in message and "SSL_CERT_FILE" in message and TOKEN not in message
    assert tls_fake.requests == [] and tls_fake.authorization == [] and refused_handshakes(tls_fake)


def test_a_ca_that_did_not_sign_the_certificate_is_not_enough(tls_fake, untrusted, tmp_path, monkeypatch):
    other = make_certificates(tmp_path)  # another CA: trusting it must not make this server trusted
    monkeypatch.setenv("SSL_CERT_FILE", str(other.ca))
    report = check_server(tls_fake.url, {"Authorization": f"Bearer {TOKEN}"}, timeout=3.0)
    assert not report.reachable and "does not trust" in report.error
    assert tls_fake.requests == [] and tls_fake.authorization == []


def test_a_trusted_certificate_for_another_name_is_refused_in_one_sentence(untrusted, tmp_path, monkeypatch):
    other = make_certificates(tmp_path, names=("DNS:comfy.example",))  # trusted, but not for 127.0.0.1
    monkeypatch.setenv(CA_FILE_ENV, str(other.ca))
    with FakeComfy(tls=other.server_context()) as fake:
        report = check_server(fake.url, {"Authorization": f"Bearer {TOKEN}"}, timeout=3.0)
        assert report.error.startswith(
            f"the certificate of the ComfyUI server at {fake.url} is not valid for that "
        )
        assert (
            report.error.endswith("; use a host name the certificate was made for")
            and "'127.0.0.1'" in report.error
        )
        with pytest.raises(ServerUnreachable, match="is not valid for that address"):
            ComfySocket(websocket_url(fake.url, "c1"), {"Authorization": f"Bearer {TOKEN}"}, 3.0).connect()
        assert fake.requests == [] and fake.authorization == []


def test_certificates_made_with_the_cryptography_package_serve_too(untrusted, tmp_path, monkeypatch):
    """The fallback for a machine without the openssl command makes certificates these tests accept."""
    pytest.importorskip("cryptography")
    from tests.comfyui.tls_certs import _with_cryptography

    made = TestCertificates(tmp_path / "ca.pem", tmp_path / "server.pem", tmp_path / "server.key")
    _with_cryptography(made, LOOPBACK)
    with FakeComfy(tls=made.server_context()) as fake:
        assert not check_server(fake.url, timeout=3.0).reachable
        monkeypatch.setenv(CA_FILE_ENV, str(made.ca))
        assert check_server(fake.url, timeout=3.0).reachable


# ------------------------------------------------------------------------------------- no silent scheme change
def test_an_http_address_is_never_upgraded_to_tls(tls_fake, trusted):
    plain_url = tls_fake.url.replace("https://", "http://")
    assert websocket_url(plain_url, "c1").startswith("ws://")
    with pytest.raises(ServerUnreachable) as failed:
        ComfyHttp(plain_url, timeout=3.0).get_json("/system_stats", "system stats")
    assert str(failed.value).startswith(f"cannot reach the ComfyUI server at {plain_url}: ")
    # The client spoke plain HTTP to the TLS port (the server saw an HTTP request instead of a TLS hello) ...
    assert any("HTTP_REQUEST" in failure for failure in refused_handshakes(tls_fake)), tls_fake.tls_failures
    assert tls_fake.requests == []  # ... and never tried again over TLS
    with pytest.raises(ServerUnreachable):
        ComfySocket(websocket_url(plain_url, "c1"), {}, 3.0).connect()
    assert tls_fake.requests == []


def test_an_https_address_never_falls_back_to_plain_http(plain_fake, trusted):
    tls_url = plain_fake.url.replace("http://", "https://")
    report = check_server(tls_url, {"Authorization": f"Bearer {TOKEN}"}, timeout=3.0)
    assert not report.reachable
    assert (
        report.error
        == f"the server at {tls_url} does not speak TLS; use its http:// address only on a network you trust"
    )
    events = run_bounded(session_for(tls_url, headers={"Authorization": f"Bearer {TOKEN}"}), request())
    assert [type(e) for e in events] == [JobFailed] and "does not speak TLS" in events[0].message
    with pytest.raises(ServerUnreachable, match="does not speak TLS"):
        ComfySocket(websocket_url(tls_url, "c1"), {"Authorization": f"Bearer {TOKEN}"}, 3.0).connect()
    assert plain_fake.requests == [] and plain_fake.authorization == []  # nothing went over plain HTTP


def test_a_redirect_to_plain_http_is_not_followed_by_either_half(tls_fake, plain_fake, trusted):
    """A TLS server answering with a redirect to an http:// address: neither the request nor the token goes there."""
    tls_fake.redirect["/system_stats"] = plain_fake.url + "/system_stats"
    tls_fake.redirect["/ws"] = websocket_url(plain_fake.url, "c1")
    report = check_server(tls_fake.url, {"Authorization": f"Bearer {TOKEN}"}, timeout=3.0)
    assert report.error == "the server answered 302 to system stats"
    socket = ComfySocket(websocket_url(tls_fake.url, "c1"), {"Authorization": f"Bearer {TOKEN}"}, 3.0)
    with pytest.raises(ServerUnreachable) as refused:
        socket.connect()
    assert str(refused.value) == (
        f"the ComfyUI server's WebSocket ({websocket_url(tls_fake.url, 'c1').split('?')[0]}) answered with a "
        "redirect (HTTP 302), which is not followed: connect to the address it redirects to"
    )
    assert tls_fake.requests == [("GET", "/system_stats"), ("GET", "/ws")]
    assert plain_fake.requests == [] and plain_fake.authorization == []
