"""The keyring branch of the server tokens (app/remote/engine_list.py), with an in-memory object that implements
the `keyring` API (get_password / set_password / delete_password) standing in for the module: the project does
not depend on `keyring`, and the 0600 file branch is tested in test_engine_list.py."""

import json
import logging
import sys
import types

import pytest

from app.remote import engine_list
from app.remote.engine_list import KEYRING_SERVICE, EngineList, TokenStore

TOKEN = "tok-K3yring-77"


class PasswordDeleteError(Exception):
    """What keyring raises when there is nothing to delete."""


class MemoryKeyring:
    """The three calls SD3.5 Studio makes of the keyring module, kept in a dict."""

    def __init__(self) -> None:
        self.secrets: dict[tuple[str, str], str] = {}
        self.broken = False

    def get_password(self, service: str, user: str) -> str | None:
        if self.broken:
            raise RuntimeError("the keyring is locked")
        return self.secrets.get((service, user))

    def set_password(self, service: str, user: str, password: str) -> None:
        self.secrets[(service, user)] = password

    def delete_password(self, service: str, user: str) -> None:
        if (service, user) not in self.secrets:
            raise PasswordDeleteError(user)
        del self.secrets[(service, user)]


@pytest.fixture
def ring(monkeypatch):
    ring = MemoryKeyring()
    monkeypatch.setattr(engine_list, "_usable_keyring", lambda: ring)
    return ring


def test_tokens_go_to_the_keyring_and_never_to_a_file(tmp_path, ring):
    engines = EngineList(tmp_path)
    assert engines.tokens.where == "the system keyring"
    engines.add("https://cloud.example.com/", "cloud", token=f"  {TOKEN}\n")
    assert ring.secrets == {(KEYRING_SERVICE, "https://cloud.example.com"): TOKEN}  # normalized URL, stripped
    assert not (tmp_path / engine_list.TOKEN_FILE).exists()
    assert TOKEN not in (tmp_path / engine_list.LIST_FILE).read_text()

    again = EngineList(tmp_path)  # the next start (or the CLI) reads it back from the keyring
    assert again.headers_for("https://cloud.example.com") == {"Authorization": f"Bearer {TOKEN}"}
    assert again.has_token("https://cloud.example.com") and not again.has_token("http://other:1")


def test_set_clear_and_remove_change_the_keyring_entry(tmp_path, ring):
    engines = EngineList(tmp_path)
    engines.add("http://gpu-box:8188", "gpu-box")
    assert ring.secrets == {}
    engines.set_token("http://gpu-box:8188", "first")
    engines.set_token("gpu-box:8188", "second")  # the same server, written another way
    assert ring.secrets == {(KEYRING_SERVICE, "http://gpu-box:8188"): "second"}
    engines.set_token("http://gpu-box:8188", "")  # Clear token
    assert ring.secrets == {} and not engines.has_token("http://gpu-box:8188")
    engines.set_token("http://gpu-box:8188", "third")
    engines.remove("http://gpu-box:8188")
    assert ring.secrets == {}
    engines.add("http://gpu-box:8188")
    engines.remove("http://gpu-box:8188")  # nothing stored: the keyring's "nothing to delete" is fine
    with pytest.raises(ValueError, match="printable ASCII"):
        engines.set_token("http://127.0.0.1:9", "line\nbreak")
    assert ring.secrets == {}


def test_a_locked_keyring_means_no_token_and_a_log_line_without_it(tmp_path, ring, caplog):
    engines = EngineList(tmp_path)
    engines.add("http://gpu-box:8188", token=TOKEN)
    ring.broken = True
    with caplog.at_level(logging.WARNING):
        assert engines.headers_for("http://gpu-box:8188") == {}
    assert "cannot read the token" in caplog.text and "RuntimeError" in caplog.text
    assert TOKEN not in caplog.text and TOKEN not in repr(engines.tokens)


def fake_keyring_module(monkeypatch, priority: float, fail_backend: bool = False) -> MemoryKeyring:
    """A `keyring` package in sys.modules as _usable_keyring imports it (module, backend, keyring.backends.fail)."""
    fail = types.ModuleType("keyring.backends.fail")
    fail.Keyring = type("Keyring", (), {"priority": 0})
    backend = fail.Keyring() if fail_backend else types.SimpleNamespace(priority=priority)
    module = types.ModuleType("keyring")
    ring = MemoryKeyring()
    module.get_password, module.set_password = ring.get_password, ring.set_password
    module.delete_password = ring.delete_password
    module.get_keyring = lambda: backend
    backends = types.ModuleType("keyring.backends")
    backends.fail = fail
    module.backends = backends
    for name, value in (("keyring", module), ("keyring.backends", backends), ("keyring.backends.fail", fail)):
        monkeypatch.setitem(sys.modules, name, value)
    return ring


def test_a_keyring_with_a_real_backend_is_used_and_the_fail_or_null_one_is_not(tmp_path, monkeypatch):
    ring = fake_keyring_module(monkeypatch, priority=5)
    store = TokenStore(tmp_path)
    assert store.where == "the system keyring"
    store.set("http://gpu-box:8188", TOKEN)
    assert ring.secrets == {(KEYRING_SERVICE, "http://gpu-box:8188"): TOKEN}

    fake_keyring_module(monkeypatch, priority=0)  # a null backend stores nothing: the 0600 file instead
    assert TokenStore(tmp_path).where == str(tmp_path / engine_list.TOKEN_FILE)
    fake_keyring_module(monkeypatch, priority=5, fail_backend=True)
    store = TokenStore(tmp_path)
    store.set("http://gpu-box:8188", "in-the-file")
    assert json.loads((tmp_path / engine_list.TOKEN_FILE).read_text()) == {
        "http://gpu-box:8188": "in-the-file"
    }
    assert TokenStore(tmp_path, use_keyring=False).get("http://gpu-box:8188") == "in-the-file"
