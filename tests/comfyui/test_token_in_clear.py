"""A token sent over plain http:// to another machine is warned about once on stderr by the CLI (`engines test`,
`generate --engine`) and still sent; https:// and loopback addresses are not warned about."""

import pytest

from app.cli.main import main
from app.remote.tls import CLEAR_TOKEN_WARNING, token_in_clear
from tests.comfyui.fake_server import FakeComfy
from tests.comfyui.resolve import as_remote, resolve_remote_host_to_loopback
from tests.comfyui.test_cli_engine_auth import generate_args

TOKEN = "tok-clear-91"


@pytest.mark.parametrize(
    ("url", "clear"),
    [
        ("http://gpu-box:8188", True),
        ("gpu-box:8188", True),  # a bare host:port means http
        ("http://192.168.1.20:8188", True),
        ("http://[fd00::2]:8188", True),
        ("ws://gpu-box:8188/ws", True),
        ("https://gpu-box:8188", False),
        ("wss://gpu-box:8188/ws", False),
        ("http://127.0.0.1:8188", False),
        ("http://127.8.0.1:8188", False),
        ("http://[::1]:8188", False),
        ("http://localhost:8188", False),
        ("http://LOCALHOST.:8188", False),
        ("http://app.localhost:8188", False),
    ],
)
def test_which_addresses_carry_a_token_in_clear(url, clear):
    assert token_in_clear(url) is clear


@pytest.fixture
def data_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("SD35_ENGINE_TOKEN", raising=False)
    monkeypatch.setattr("app.remote.engine_list._usable_keyring", lambda: None)


@pytest.fixture
def remote_fake(monkeypatch):
    resolve_remote_host_to_loopback(monkeypatch)
    with FakeComfy() as fake:
        yield fake


def warnings(err: str) -> list[str]:
    return [line for line in err.splitlines() if CLEAR_TOKEN_WARNING in line]


def test_engines_test_warns_once_and_still_sends_the_token(data_folder, remote_fake, capsys):
    url = as_remote(remote_fake.url)
    assert main(["engines", "test", url, "--token", TOKEN]) == 0
    out, err = capsys.readouterr()
    assert warnings(err) == [f"sd35-studio: warning: {url}: {CLEAR_TOKEN_WARNING}"]
    assert out.startswith(f"reachable: yes ({url}, ") and TOKEN not in out + err
    assert set(remote_fake.authorization) == {f"Bearer {TOKEN}"}


def test_generate_with_a_remote_engine_warns_once_per_server(
    data_folder, remote_fake, tmp_path, capsys, monkeypatch
):
    monkeypatch.setenv("SD35_ENGINE_TOKEN", TOKEN)
    url = as_remote(remote_fake.url)
    assert main(generate_args(url, tmp_path)) == 0
    _, err = capsys.readouterr()
    assert warnings(err) == [f"sd35-studio: warning: {url}: {CLEAR_TOKEN_WARNING}"]  # once, not per request
    assert (tmp_path / "boat.png").is_file()
    assert ("GET", "/ws") in remote_fake.requests and set(remote_fake.authorization) == {f"Bearer {TOKEN}"}


def test_no_warning_without_a_token_or_on_loopback(data_folder, remote_fake, capsys):
    assert main(["engines", "test", as_remote(remote_fake.url)]) == 0
    assert set(remote_fake.authorization) == {None}
    remote_fake.authorization.clear()
    assert main(["engines", "test", remote_fake.url, "--token", TOKEN]) == 0
    assert set(remote_fake.authorization) == {f"Bearer {TOKEN}"}
    assert warnings(capsys.readouterr().err) == []
