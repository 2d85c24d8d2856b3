"""The Hub's environment is read when a function is called, not when huggingface_hub was imported: HF_ENDPOINT and
HF_HOME set afterwards (as a test or the app does) decide where a token is checked and where it is kept."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from huggingface_hub import constants, hf_api
from huggingface_hub.utils import get_stored_tokens

from app.downloads import hub, token_store
from app.downloads.errors import HubUnavailableError, TokenError
from tests.downloads.conftest import GOOD_TOKEN
from tests.downloads.fake_hub import FakeHub, FakeHubState

DISCARD = "http://127.0.0.1:9"  # nothing listens on the discard port: a request sent here fails at once


@pytest.fixture
def late_hub(hf_home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeHub]:
    """A Hub that only knows GOOD_TOKEN, named in HF_ENDPOINT after import, while everything huggingface_hub read
    at its import (its ENDPOINT constant, its module-level HfApi) points at a port where nothing answers."""
    monkeypatch.setattr(constants, "ENDPOINT", DISCARD)
    monkeypatch.setattr(hf_api.api, "endpoint", DISCARD)
    with FakeHub(FakeHubState(repos={}, tokens={GOOD_TOKEN: "alice"}), lifetime_s=60) as served:
        monkeypatch.setenv("HF_ENDPOINT", served.url)
        yield served


def test_save_token_checks_the_token_at_the_endpoint_set_after_import(late_hub, hf_home):
    hub.save_token(f"  {GOOD_TOKEN}\n")

    assert [r.path for r in late_hub.requests("hub", "GET")] == ["/api/whoami-v2"]
    assert late_hub.requests()[0].authorization == f"Bearer {GOOD_TOKEN}"
    assert hub.current_token() == GOOD_TOKEN
    assert (hf_home / "token").read_text() == GOOD_TOKEN
    assert get_stored_tokens() == {
        "test-token": GOOD_TOKEN
    }  # the Hub's display name, as `hf auth login` keeps it


def test_a_token_the_late_endpoint_refuses_is_a_token_error_and_is_not_kept(late_hub, hf_home):
    with pytest.raises(TokenError, match="refused this token"):
        hub.save_token("hf_revoked")
    assert late_hub.requests("hub", "GET")  # refused by the late Hub, not unreachable at the import-time one
    assert hub.current_token() is None
    assert not (hf_home / "token").exists()


def test_the_token_store_follows_hf_home_set_after_import(late_hub, hf_home, tmp_path, monkeypatch):
    later = tmp_path / "later-home"
    monkeypatch.setenv("HF_HOME", str(later))

    hub.save_token(GOOD_TOKEN)

    assert (later / "token").read_text() == GOOD_TOKEN
    assert not (hf_home / "token").exists()  # where huggingface_hub's import-time constants point
    assert hub.current_token() == GOOD_TOKEN
    if os.name == "posix":
        assert (later / "token").stat().st_mode & 0o777 == 0o600
    # the files are huggingface_hub's own format: the library reads them once pointed there
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(later / "token"))
    monkeypatch.setattr(constants, "HF_STORED_TOKENS_PATH", str(later / "stored_tokens"))
    assert get_stored_tokens() == {"test-token": GOOD_TOKEN}


def test_hf_token_path_and_hf_token_set_after_import_win(late_hub, tmp_path, monkeypatch):
    explicit = tmp_path / "elsewhere" / "my-token"
    monkeypatch.setenv("HF_TOKEN_PATH", str(explicit))
    hub.save_token(GOOD_TOKEN)
    assert token_store.token_path() == explicit and explicit.read_text() == GOOD_TOKEN
    assert (explicit.parent / "stored_tokens").exists()
    assert hub.current_token() == GOOD_TOKEN
    monkeypatch.setenv("HF_TOKEN", "hf_from_the_environment")
    assert hub.current_token() == "hf_from_the_environment"


def test_a_second_token_is_added_beside_the_first_and_becomes_active(hf_home, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "home"))
    token_store.write_token("hf_first", "laptop")
    token_store.write_token("hf_second%x", "studio")  # '%' is not an interpolation
    token_store.write_token("hf_second%y", "studio")
    assert token_store.read_token(token_store.token_path()) == "hf_second%y"
    monkeypatch.setattr(constants, "HF_STORED_TOKENS_PATH", str(token_store.stored_tokens_path()))
    assert get_stored_tokens() == {"laptop": "hf_first", "studio": "hf_second%y"}


def test_offline_mode_set_after_import_refuses_before_any_request(late_hub, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(HubUnavailableError, match="HF_HUB_OFFLINE"):
        hub.save_token(GOOD_TOKEN)
    assert late_hub.requests() == []


def test_organisation_tokens_are_refused_without_asking_the_hub(late_hub):
    with pytest.raises(TokenError, match="personal read token"):
        hub.save_token("api_org_something")
    assert late_hub.requests() == []
