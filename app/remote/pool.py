"""Several ComfyUI servers as one engine: the seeds of a job are spread over the idle servers.

The rule is SwarmUI's: an idle server that already has the job's model loaded first, then list order (the
priority). Each seed runs as its own one-image job on one server (RemoteSession), so an image is the same
whichever server makes it. A server that drops out (a CONNECTION failure) or cannot run the job (it lacks the
model or a node) has its unfinished image put back for the others, nothing lost; a dropped server is tried again
after a back-off, within the same job. The pool keeps the Session protocol and reports one stream of events
with the job's own image indices; each ImageFinished names the server that made it (`engine`).
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from app.inference.api.cancel import CancelToken
from app.inference.api.errors import FailureKind, InvalidRequestError
from app.inference.api.events import (
    Event,
    ImageCancelled,
    ImageFailed,
    ImageFinished,
    JobCancelled,
    JobFailed,
    JobFinished,
    ModelLoaded,
    StepUpdate,
)
from app.inference.api.request import GenerationRequest
from app.inference.api.session import RunsOnAThread
from app.remote.job import checkpoint_name
from app.remote.session import RemoteSession

log = logging.getLogger(__name__)

RETRY_AFTER = 2.0  # seconds before a dropped server is tried again (doubles up to MAX_RETRY_AFTER)
MAX_RETRY_AFTER = 30.0


@dataclasses.dataclass
class _Server:
    session: RemoteSession
    priority: int
    busy: bool = False
    unsuitable: bool = False  # cannot run this job at all (model or node missing)
    down_until: float = 0.0
    backoff: float = RETRY_AFTER
    last_error: str = ""


class ServerPool(RunsOnAThread):
    thread_name = "sd35-pool-job"

    def __init__(
        self,
        urls: Sequence[str],
        headers: Mapping[str, str] | Callable[[str], Mapping[str, str]] | None = None,
        **session_kwargs: Any,
    ):
        """`headers`: the same for every server, or a function of the URL (each server its own token)."""
        if not urls:
            raise ValueError("a server pool needs at least one server")
        per_url = headers if callable(headers) else (lambda _url: headers)
        self.sessions = [RemoteSession(url, per_url(url), **session_kwargs) for url in urls]
        self.give_up_after = 120.0  # seconds with images left and no server able to take them

    def close(self) -> None:
        for s in self.sessions:
            s.close()

    def execute(
        self,
        model: Path | Any,
        request: GenerationRequest,
        cancel: CancelToken,
        emit: Callable[[Event], None],
        variant: str | None = None,
    ) -> None:
        """Run the job over the servers on the calling thread; never raises for a failed job."""
        started = time.perf_counter()
        emit = _serialized(emit)  # servers report from their own threads
        try:
            checkpoint = checkpoint_name(model)
        except InvalidRequestError as exc:
            emit(JobFailed(str(exc), FailureKind.REQUEST))
            return
        servers = [_Server(s, i) for i, s in enumerate(self.sessions)]
        pending = list(range(request.count))  # image indices not yet given to a server (or given back)
        running: dict[int, tuple[_Server, CancelToken]] = {}
        lock = threading.Condition()
        finished, announced = 0, False
        last_progress = time.monotonic()

        def forward(index: int, server: _Server, event: Event) -> None:
            nonlocal finished, announced
            if isinstance(event, ModelLoaded):
                if not announced:  # one ModelLoaded per job, from whichever server is first
                    announced = True
                    emit(event)
            elif isinstance(event, StepUpdate | ImageFailed | ImageCancelled):
                emit(dataclasses.replace(event, image_index=index))
            elif isinstance(event, ImageFinished):
                finished += 1
                emit(dataclasses.replace(event, image_index=index))

        def one_image(server: _Server, index: int, token: CancelToken) -> None:
            """A one-seed job on one server; decides whether the image is done or goes back to the pool."""
            nonlocal last_progress
            outcome: Event | None = None
            sub = dataclasses.replace(request, seed=request.seed + index, count=1)

            def sink(event: Event) -> None:
                nonlocal outcome
                if isinstance(event, JobFinished | JobFailed | JobCancelled):
                    outcome = event
                else:
                    forward(index, server, event)

            server.session.execute(checkpoint, sub, token, sink, variant)
            with lock:
                server.busy = False
                running.pop(index, None)
                if isinstance(outcome, JobFailed) and not cancel.is_cancelled:
                    server.last_error = outcome.message
                    if outcome.kind == FailureKind.CONNECTION:
                        server.down_until = time.monotonic() + server.backoff
                        server.backoff = min(server.backoff * 2, MAX_RETRY_AFTER)
                        log.warning("%s dropped out (%s); its image goes to another server", server.session.url,
                                    outcome.message)  # fmt: skip
                    else:
                        server.unsuitable = True
                    pending.insert(0, index)  # given back: nothing lost
                elif isinstance(outcome, JobCancelled) and not cancel.is_cancelled:
                    emit(ImageCancelled(index, request.seed + index))
                else:
                    server.backoff = RETRY_AFTER
                    last_progress = time.monotonic()
                lock.notify_all()

        def idle_servers() -> list[_Server]:
            now = time.monotonic()
            free = [s for s in servers if not s.busy and not s.unsuitable and s.down_until <= now]
            # SwarmUI's rule: the model already loaded first, then the list order.
            return sorted(free, key=lambda s: (s.session.loaded_checkpoint != checkpoint, s.priority))

        threads: list[threading.Thread] = []
        with lock:
            while pending or running:
                for index in [i for i in pending if cancel.image_cancelled(i)]:
                    pending.remove(index)
                    emit(ImageCancelled(index, request.seed + index))
                for index, (_, token) in running.items():
                    if cancel.image_cancelled(index) or cancel.is_cancelled:
                        token.cancel()
                if cancel.is_cancelled:
                    pending.clear()
                if all(s.unsuitable for s in servers) and pending:
                    reasons = _reasons(servers)
                    break_with = JobFailed(f"no server can run this job: {reasons}", FailureKind.MODEL)
                    return self._end(emit, lock, threads, running, break_with)
                if pending and not running and time.monotonic() - last_progress > self.give_up_after:
                    reasons = _reasons(servers)
                    message = f"no server took the job's images for {self.give_up_after:.0f} s: {reasons}"
                    return self._end(emit, lock, threads, running, JobFailed(message, FailureKind.CONNECTION))
                for server in idle_servers():
                    if not pending:
                        break
                    index = pending.pop(0)
                    token = CancelToken()
                    server.busy = True
                    running[index] = (server, token)
                    thread = threading.Thread(target=one_image, args=(server, index, token), daemon=True,
                                              name=f"sd35-pool-{server.priority}")  # fmt: skip
                    threads.append(thread)
                    thread.start()
                lock.wait(0.25)
        for thread in threads:
            thread.join()
        if cancel.is_cancelled:
            emit(JobCancelled(finished))
        else:
            emit(JobFinished(finished, time.perf_counter() - started))

    @staticmethod
    def _end(emit, lock, threads, running, event: Event) -> None:
        for _, token in running.values():
            token.cancel()
        lock.release()
        try:
            for thread in threads:
                thread.join()
        finally:
            lock.acquire()
        emit(event)


def _reasons(servers: list[_Server]) -> str:
    """Each server's failure once, in priority order; a clause every one of them ends with (the advice of a
    missing file: "copy it into the server's models/loras…") said once, at the end, not once per server."""
    parts = [s.last_error.split("; ") for s in servers if s.last_error]
    shared = [c for c in parts[0] if all(c in p for p in parts)] if parts else []
    own = dict.fromkeys(c for p in parts for c in p if c not in shared)
    return "; ".join([*own, *shared])


def _serialized(emit: Callable[[Event], None]) -> Callable[[Event], None]:
    lock = threading.Lock()

    def locked(event: Event) -> None:
        with lock:
            emit(event)

    return locked
