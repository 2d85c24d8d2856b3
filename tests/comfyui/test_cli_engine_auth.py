"""The CLI's `--engine` and `engines test` send the token stored for the server (Settings ▸ Engines), or the one
in `--engine-token-file` / `$SD35_ENGINE_TOKEN`, and never print it."""

import json

import pytest

from app.cli.main import main
from app.remote.engine_list import EngineList
from tests.comfyui.fake_server import FakeComfy

TOKEN = "tok-cli-7f3e"


@pytest.fixture
def data_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("SD35_ENGINE_TOKEN", raising=False)
    monkeypatch.setattr("app.remote.engine_list._usable_keyring", lambda: None)  # the 0600 file path


def generate_args(url, tmp_path, *more):
    return ["generate", "--engine", url, "--model", "sd3.5_medium.safetensors", "--prompt", "a boat", "--seed", "5",
            "--steps", "2", "--width", "64", "--height", "64", "--no-t5", "--sampler", "euler",
            "--engine-partial-encoders", "--out", str(tmp_path / "boat.png"), *more]  # fmt: skip


def test_the_stored_token_is_sent_by_engines_test_and_generate(data_folder, tmp_path, capsys):
    with FakeComfy() as fake:
        EngineList().add(fake.url, "fake", token=TOKEN)
        assert main(["engines", "test", fake.url, "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["reachable"] is True
        assert fake.authorization and set(fake.authorization) == {f"Bearer {TOKEN}"}

        fake.authorization.clear()
        assert main(generate_args(fake.url, tmp_path)) == 0
        out, err = capsys.readouterr()
        assert (tmp_path / "boat.png").is_file()
        assert ("GET", "/ws") in fake.requests and set(fake.authorization) == {f"Bearer {TOKEN}"}
        assert TOKEN not in out + err and TOKEN.encode() not in (tmp_path / "boat.png").read_bytes()


def test_a_token_file_or_the_environment_when_none_is_stored(data_folder, tmp_path, capsys, monkeypatch):
    token_file = tmp_path / "token"
    token_file.write_text("from-file-123\n")
    token_file.chmod(0o600)
    with FakeComfy() as fake:
        assert main(["engines", "test", fake.url, "--engine-token-file", str(token_file)]) == 0
        assert set(fake.authorization) == {"Bearer from-file-123"}
        assert "from-file-123" not in capsys.readouterr().out

        fake.authorization.clear()
        monkeypatch.setenv("SD35_ENGINE_TOKEN", "from-env-456")
        assert main(generate_args(fake.url, tmp_path)) == 0
        assert set(fake.authorization) == {"Bearer from-env-456"}

        fake.authorization.clear()
        monkeypatch.delenv("SD35_ENGINE_TOKEN")
        assert main(["engines", "test", fake.url]) == 0
        assert set(fake.authorization) == {None}  # nothing stored, nothing given: no header


def test_a_token_file_others_can_read_is_refused_in_one_line(data_folder, tmp_path, capsys):
    token_file = tmp_path / "token"
    token_file.write_text("open-secret\n")
    token_file.chmod(0o644)
    with FakeComfy() as fake:
        assert main(generate_args(fake.url, tmp_path, "--engine-token-file", str(token_file))) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "chmod 600" in err and "open-secret" not in err
        assert fake.requests == []  # refused before anything was sent
