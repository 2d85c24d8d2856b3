"""Watching the chosen ComfyUI servers while no job runs, without ever holding up the window.

`ping` is the heartbeat: one small `/system_stats` request with a short timeout, so a server that went away is
noticed within HEARTBEAT_S even when idle; every RELIST_S the window re-reads each online server's lists, so a
model file copied onto a server while the window is open joins the picker without a restart.

`DaemonRunner` runs the window's network checks each on a daemon thread: quitting never waits for a server that
accepts the connection and then never answers (a thread pool's workers are joined at interpreter exit; a hung
check would hold the quit for its whole HTTP timeout)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import Executor, Future
from itertools import count

from app.remote.errors import RemoteError
from app.remote.http import ComfyHttp

log = logging.getLogger(__name__)

HEARTBEAT_S = 30.0  # seconds between checks of the chosen set's servers while idle
RELIST_S = 150.0  # seconds between re-reads of every online server's lists (/object_info: large, so rarely)
PING_TIMEOUT_S = 3.0  # a heartbeat is one small request: a server slower than this counts as away


def ping(url: str, headers: Mapping[str, str] | None = None, timeout: float = PING_TIMEOUT_S) -> str:
    """ "" when the server answers `/system_stats`, else the one sentence why it does not."""
    try:
        ComfyHttp(url, headers, timeout).get_json("/system_stats", "the system stats", timeout=timeout)
    except (RemoteError, ValueError) as exc:
        return str(exc)
    return ""


class DaemonRunner(Executor):
    """`submit` like an executor, each call on its own daemon thread (checks are few: one per server)."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._numbers = count(1)
        self._closed = False

    def submit(self, fn: Callable[..., object], /, *args: object, **kwargs: object) -> Future:  # type: ignore[override]
        if self._closed:
            raise RuntimeError("cannot submit a check after shutdown")
        future: Future = Future()
        future.set_running_or_notify_cancel()

        def run() -> None:
            try:
                result = fn(*args, **kwargs)
            except BaseException as exc:  # handed to the future's owner, as an executor would
                future.set_exception(exc)
            else:
                future.set_result(result)

        threading.Thread(target=run, name=f"{self._name}-{next(self._numbers)}", daemon=True).start()
        return future

    def shutdown(self, wait: bool = False, *, cancel_futures: bool = True) -> None:
        """No new checks; running ones are abandoned (their results are dropped by their owners)."""
        self._closed = True
