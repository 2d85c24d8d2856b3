"""The session of a job whose model set is on ComfyUI servers: a RemoteSession for one server, a ServerPool
(seeds spread over the idle servers, SwarmUI's rule) for several. Each server gets its own token from the
engine list; nothing here imports Qt or torch, so the worker can open it on its thread."""

from __future__ import annotations

import logging

from app.inference.api.session import Session
from app.remote.engine_list import EngineList
from app.remote.pool import ServerPool
from app.remote.session import RemoteSession

log = logging.getLogger(__name__)


def open_remote_session(urls: tuple[str, ...], preview: str, engines: EngineList | None = None) -> Session:
    """A session on `urls` (priority order); `preview` is the form's preview choice ("off": progress only)."""
    if not urls:
        raise ValueError("a remote session needs at least one server")
    engines = engines if engines is not None else EngineList()
    partial = {url: bool(e and e.partial_text_encoders) for url in urls for e in [engines.find(url)]}
    if len(urls) == 1:
        url = urls[0]
        return RemoteSession(
            url, engines.headers_for(url), preview=preview, partial_text_encoders=partial[url]
        )
    pool = ServerPool(list(urls), engines.headers_for, preview=preview)
    for session, url in zip(pool.sessions, urls, strict=True):
        session.partial_text_encoders = partial[url]  # each server as the user set it up
    return pool
