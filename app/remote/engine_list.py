"""The ComfyUI servers the user added (Settings ▸ Engines), and their auth tokens.

The list is JSON in the user data folder (`engines.json`: URL, display name, enabled, whether a server without
CLIP-G is accepted, an optional CA file the server's certificate is trusted through), in priority order: the first
enabled server is tried first. A token is never in that file: it goes to the system keyring when the `keyring`
package is importable and has a usable backend, else to `engine-tokens.json` beside the list, created with mode
0600. Qt-free and torch-free: the window and the CLI read the same files (`app.downloads.layout.user_data_dir`)."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import urllib.parse
from collections.abc import Iterable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from app.remote.http import normalize_url
from app.remote.tls import check_ca_file, set_server_ca_files

log = logging.getLogger(__name__)

LIST_FILE = "engines.json"
TOKEN_FILE = "engine-tokens.json"
KEYRING_SERVICE = "SD3.5 Studio ComfyUI servers"
TOKEN_ENV = "SD35_ENGINE_TOKEN"
MAX_TOKEN_CHARS = 4096


def default_folder() -> Path:
    from app.downloads.layout import user_data_dir

    return user_data_dir()


def short_name(url: str) -> str:
    """`host:port` of a server address: the name shown when the user gave none."""
    parts = urllib.parse.urlsplit(url)
    return parts.netloc or url


def auth_headers(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


def check_token(token: str) -> str:
    """The token without surrounding white space; ValueError for one that cannot travel in a header."""
    token = token.strip()
    if len(token) > MAX_TOKEN_CHARS:
        raise ValueError(f"the token is longer than {MAX_TOKEN_CHARS} characters")
    if any(ord(c) < 0x20 or ord(c) > 0x7E for c in token):
        raise ValueError("the token may hold only printable ASCII characters (no line breaks)")
    return token


@dataclass(frozen=True, slots=True)
class EngineEntry:
    url: str  # normalized (app.remote.http.normalize_url)
    name: str  # what the window shows: "gpu-box"
    enabled: bool = True
    partial_text_encoders: bool = False  # accept a server without CLIP-G (the image's graph says what ran)
    ca_file: str = (
        ""  # a PEM file of CAs this server's certificate may be signed by (added to the system store)
    )

    @property
    def label(self) -> str:
        return self.name or short_name(self.url)


# ------------------------------------------------------------------------------------------------ tokens
class TokenStore:
    """Tokens by server URL: the system keyring when usable, else a 0600 JSON file. Never logged."""

    def __init__(self, folder: Path, use_keyring: bool | None = None) -> None:
        self.path = folder / TOKEN_FILE
        self._keyring = _usable_keyring() if use_keyring is None or use_keyring else None

    def __repr__(self) -> str:
        return f"TokenStore({'keyring' if self._keyring else self.path})"

    @property
    def where(self) -> str:
        return "the system keyring" if self._keyring is not None else str(self.path)

    def get(self, url: str) -> str:
        url = normalize_url(url)
        if self._keyring is not None:
            try:
                return self._keyring.get_password(KEYRING_SERVICE, url) or ""
            except Exception as exc:  # a locked or broken keyring: the job runs without a token, and says why
                log.warning("cannot read the token for %s from the keyring: %s", url, exc.__class__.__name__)
                return ""
        token = self._read_file().get(url)
        return token if isinstance(token, str) else ""

    def set(self, url: str, token: str) -> None:
        url, token = normalize_url(url), check_token(token)
        if not token:
            self.delete(url)
            return
        if self._keyring is not None:
            self._keyring.set_password(KEYRING_SERVICE, url, token)
            return
        tokens = self._read_file()
        tokens[url] = token
        self._write_file(tokens)

    def delete(self, url: str) -> None:
        url = normalize_url(url)
        if self._keyring is not None:
            with contextlib.suppress(Exception):  # none stored is fine
                self._keyring.delete_password(KEYRING_SERVICE, url)
            return
        tokens = self._read_file()
        if tokens.pop(url, None) is not None:
            self._write_file(tokens)

    def _read_file(self) -> dict[str, object]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            log.warning("cannot read %s (%s); no server tokens loaded", self.path, exc.__class__.__name__)
            return {}
        return data if isinstance(data, dict) else {}

    def _write_file(self, tokens: dict[str, object]) -> None:
        """Written to a new 0600 file, then renamed over the old one: never readable by others, even briefly."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temp = self.path.with_name(self.path.name + ".tmp")
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(tokens, f)
        os.replace(temp, self.path)


def _usable_keyring():
    """The keyring module when it is installed and its backend really stores secrets (not the fail/null one)."""
    try:
        import keyring
        from keyring.backends import fail
    except Exception:
        return None
    try:
        backend = keyring.get_keyring()
        if isinstance(backend, fail.Keyring) or getattr(backend, "priority", 0) <= 0:
            return None
    except Exception:
        return None
    return keyring


def read_token_file(path: Path) -> str:
    """`--engine-token-file F`: the token on the file's first line. Refused when others may read the file."""
    try:
        mode = path.stat().st_mode
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"cannot read the token file {path}: {exc.strerror or exc}") from None
    if os.name == "posix" and mode & 0o077:
        raise ValueError(f"{path} can be read by other users; make it private first (chmod 600 {path})")
    lines = text.strip().splitlines()
    token = check_token(lines[0] if lines else "")
    if not token:
        raise ValueError(f"the token file {path} is empty")
    return token


# ------------------------------------------------------------------------------------------------ the list
class EngineList:
    """The user's servers in priority order, saved at each change."""

    def __init__(self, folder: Path | None = None, tokens: TokenStore | None = None) -> None:
        self.folder = folder if folder is not None else default_folder()
        self.path = self.folder / LIST_FILE
        self.tokens = tokens if tokens is not None else TokenStore(self.folder)
        self.entries: list[EngineEntry] = self._load()
        self._share_ca_files()

    def __repr__(self) -> str:
        return f"EngineList({self.path}, {len(self.entries)} servers)"

    # ------------------------------------------------------------------------------------------- reading
    def enabled(self) -> list[EngineEntry]:
        return [e for e in self.entries if e.enabled]

    def find(self, url: str) -> EngineEntry | None:
        try:
            url = normalize_url(url)
        except ValueError:
            return None
        return next((e for e in self.entries if e.url == url), None)

    def label_for(self, url: str) -> str:
        """The display name of a server (its host:port when it is not in the list)."""
        entry = self.find(url)
        return entry.label if entry is not None else short_name(url)

    def headers_for(self, url: str) -> dict[str, str]:
        return auth_headers(self.tokens.get(url))

    def has_token(self, url: str) -> bool:
        return bool(self.tokens.get(url))

    # ------------------------------------------------------------------------------------------- changes
    def add(self, url: str, name: str = "", token: str = "") -> EngineEntry:
        """A new server at the end (lowest priority); ValueError with a sentence for a bad or known address."""
        url = normalize_url(url)
        if self.find(url) is not None:
            raise ValueError(f"{url} is already in the list")
        token = check_token(token)
        entry = EngineEntry(url, " ".join(name.split())[:80])
        if token:
            self.tokens.set(url, token)
        self.entries.append(entry)
        self.save()
        return entry

    def remove(self, url: str) -> None:
        entry = self.find(url)
        if entry is None:
            return
        self.entries.remove(entry)
        self.tokens.delete(entry.url)
        self.save()

    def move(self, url: str, delta: int) -> int:
        """Raise (delta < 0) or lower a server's priority; returns its new position."""
        entry = self.find(url)
        if entry is None:
            raise ValueError(f"{url} is not in the list")
        old = self.entries.index(entry)
        new = min(max(old + delta, 0), len(self.entries) - 1)
        self.entries.insert(new, self.entries.pop(old))
        self.save()
        return new

    def update(self, url: str, **changes: object) -> EngineEntry:
        entry = self.find(url)
        if entry is None:
            raise ValueError(f"{url} is not in the list")
        new = replace(entry, **changes)  # type: ignore[arg-type]
        self.entries[self.entries.index(entry)] = new
        self.save()
        return new

    def set_token(self, url: str, token: str) -> None:
        self.tokens.set(url, token)

    def set_ca_file(self, url: str, path: str) -> EngineEntry:
        """Trust `path` (a PEM file) for this server's certificate, "" for none; ValueError for an unreadable file."""
        path = path.strip()
        if path:
            check_ca_file(path)
        return self.update(url, ca_file=path)

    def _share_ca_files(self) -> None:
        set_server_ca_files({e.url: e.ca_file for e in self.entries})

    # ------------------------------------------------------------------------------------------- file
    def save(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        temp = self.path.with_name(self.path.name + ".tmp")
        data = {"version": 1, "servers": [asdict(e) for e in self.entries]}
        temp.write_text(json.dumps(data, indent=2, ensure_ascii=False), encoding="utf-8")
        os.replace(temp, self.path)
        self._share_ca_files()

    def _load(self) -> list[EngineEntry]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return []
        except (OSError, ValueError) as exc:
            log.warning("cannot read the server list %s (%s); starting with none", self.path, exc)
            return []
        servers = data.get("servers") if isinstance(data, dict) else None
        return list(_entries(servers if isinstance(servers, list) else []))


def _entries(raw: Iterable[object]) -> Iterable[EngineEntry]:
    seen: set[str] = set()
    for item in raw:
        if not isinstance(item, dict):
            continue
        try:
            url = normalize_url(str(item.get("url", "")))
        except ValueError as exc:
            log.warning("skipping a saved server: %s", exc)
            continue
        if url in seen:
            continue
        seen.add(url)
        name = item.get("name")
        yield EngineEntry(
            url,
            name if isinstance(name, str) else "",
            item.get("enabled") is not False,
            item.get("partial_text_encoders") is True,
            ca_file if isinstance(ca_file := item.get("ca_file"), str) else "",
        )
