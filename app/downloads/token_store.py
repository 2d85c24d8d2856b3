"""huggingface_hub's token store, found from the environment as it is when asked.

huggingface_hub works out its paths (`HF_HOME`, `HF_TOKEN_PATH`) once, when it is imported; a user or a test that sets
them later would otherwise read and write another store than the one they named. The layout is the library's own:
the active token alone in `HF_TOKEN_PATH` (default `$HF_HOME/token`), and every named token in the INI file
`stored_tokens` beside it, which `hf auth list` and `hf auth switch` read. Both files are private to the user.
"""

from __future__ import annotations

import configparser
import contextlib
import io
import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)

_FILE_MODE = 0o600
_DIR_MODE = 0o700


def _expand(path: str) -> Path:
    return Path(os.path.expandvars(os.path.expanduser(path)))


def hf_home() -> Path:
    """`HF_HOME`, else `$XDG_CACHE_HOME/huggingface`, else `~/.cache/huggingface` (huggingface_hub's order)."""
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "huggingface"
    )
    return _expand(home)


def token_path() -> Path:
    """The file holding the active token: `HF_TOKEN_PATH`, else `$HF_HOME/token`."""
    explicit = os.environ.get("HF_TOKEN_PATH")
    return _expand(explicit) if explicit else hf_home() / "token"


def stored_tokens_path() -> Path:
    return token_path().parent / "stored_tokens"


def env_token() -> str | None:
    """`HF_TOKEN` (or the older `HUGGING_FACE_HUB_TOKEN`), which takes precedence over the stored token."""
    return _clean(os.environ.get("HF_TOKEN") or os.environ.get("HUGGING_FACE_HUB_TOKEN"))


def read_token(path: Path) -> str | None:
    try:
        return _clean(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None


def write_token(token: str, name: str) -> Path:
    """Keep `token` under `name` in the stored tokens and make it the active one; returns the active token's file."""
    stored = stored_tokens_path()
    config = configparser.ConfigParser(interpolation=None)  # tokens are opaque: a '%' is not a placeholder
    try:
        config.read_string(stored.read_text(encoding="utf-8"))
    except FileNotFoundError:
        pass
    except (configparser.Error, UnicodeDecodeError) as exc:  # what huggingface_hub does too: start afresh
        log.warning("%s cannot be read (%s); it is written anew", stored, exc)
        config = configparser.ConfigParser(interpolation=None)
    if config.has_section(name):
        config.remove_section(name)  # a new login under the same name drops the old section's fields
    config.add_section(name)
    config.set(name, "hf_token", token)
    text = io.StringIO()
    config.write(text)
    _write_private(stored, text.getvalue())
    active = token_path()
    _write_private(active, token)
    return active


def _clean(token: str | None) -> str | None:
    return None if token is None else (token.replace("\r", "").replace("\n", "").strip() or None)


def _write_private(path: Path, content: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=_DIR_MODE)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, _FILE_MODE)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(content)
    with contextlib.suppress(OSError, NotImplementedError):  # Windows has no POSIX modes
        path.chmod(_FILE_MODE)
