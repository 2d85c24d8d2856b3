"""Which auth token the CLI sends to a ComfyUI server: `--token` / `--engine-token-file F` when given, else the
one stored for that URL in Settings ▸ Engines (app.remote.engine_list), else `$SD35_ENGINE_TOKEN`. The token is
never printed; a token that will cross the network unencrypted (plain http:// to another machine) is warned about
on stderr, once per server, and still sent."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from app.remote.engine_list import TOKEN_ENV, EngineList, auth_headers, check_token, read_token_file
from app.remote.tls import CLEAR_TOKEN_WARNING, token_in_clear


def engine_token(url: str, token: str | None = None, token_file: Path | None = None) -> str:
    engines = EngineList()  # read even when a token is given: it also shares the servers' own CA files (tls)
    if token:
        return check_token(token)
    if token_file is not None:
        return read_token_file(Path(token_file))
    stored = engines.tokens.get(url)
    return stored or check_token(os.environ.get(TOKEN_ENV, ""))


def engine_headers(url: str, token: str | None = None, token_file: Path | None = None) -> dict[str, str]:
    """The headers for `url`; ValueError (one sentence) for an unreadable or bad token file or address."""
    headers = auth_headers(engine_token(url, token, token_file))
    if headers and token_in_clear(url):
        sys.stderr.write(f"sd35-studio: warning: {url.strip()}: {CLEAR_TOKEN_WARNING}\n")
    return headers
