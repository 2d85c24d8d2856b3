"""The `Session` protocol: what runs a job, whoever runs it (the local torch engine, the test fake, and later a
remote ComfyUI engine). Torch-free, so the UI can hold a session by this type without importing the engine."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from app.inference.api.cancel import CancelToken
from app.inference.api.events import Event
from app.inference.api.request import GenerationRequest


@dataclass(frozen=True, slots=True)
class SessionOptions:
    """How a session runs its jobs; a change of any of them opens a new session."""

    device: str = "auto"  # "auto" | "cuda" | "mps" | "cpu"
    dtype: str = "auto"  # "auto" | "bfloat16" | "float16" | "float32"
    preview: str = "auto"  # "auto" (TAESD3 if found, else linear) | "taesd" | "linear" | "off"
    preview_every: int = 1  # decode a preview every n-th step
    memory_plan: str = "auto"  # "auto" or a plan name (app.inference.memory.plan.PLAN_NAMES)


@runtime_checkable
class Session(Protocol):
    """Runs generation jobs one at a time and reports each as a stream of events.

    `run` never raises for a failed job: the last event is `JobFinished`, `JobCancelled` or `JobFailed`.
    Stopping the iteration early cancels the job."""

    def run(
        self,
        model: Path | Any,  # a model file or folder (the local engine also takes a located ModelSet)
        request: GenerationRequest,
        cancel: CancelToken | None = None,
        variant: str | None = None,  # force a variant the file's name cannot tell ("large" vs "large-turbo")
    ) -> Iterator[Event]: ...


SessionFactory = Callable[[SessionOptions], Session]


def events_on_a_thread(
    execute: Callable[[Callable[[Event], None]], None], cancel: CancelToken, thread_name: str
) -> Iterator[Event]:
    """`Session.run` for a session whose job reports through an `emit` callback: the job runs on a private
    thread and its events are yielded as they happen; a consumer that stops early cancels it and waits."""
    events: queue.Queue = queue.Queue()
    done = object()

    def work() -> None:
        try:
            execute(events.put)
        finally:
            events.put(done)

    thread = threading.Thread(target=work, name=thread_name, daemon=True)
    thread.start()
    try:
        while (event := events.get()) is not done:
            yield event
    finally:
        cancel.cancel()
        thread.join()


class RunsOnAThread:
    """`Session.run` written once for the sessions whose `execute(model, request, cancel, emit, variant=)` runs a
    job on the calling thread: the job goes to a private thread named `thread_name`; its events are yielded."""

    thread_name = "sd35-job"

    def execute(
        self,
        model: Any,
        request: GenerationRequest,
        cancel: CancelToken,
        emit: Callable[[Event], None],
        variant: str | None = None,
    ) -> None:
        raise NotImplementedError

    def run(
        self,
        model: Path | Any,
        request: GenerationRequest,
        cancel: CancelToken | None = None,
        variant: str | None = None,
    ) -> Iterator[Event]:
        """Run the job on a private thread and yield its events as they happen; stopping early cancels it."""
        cancel = cancel or CancelToken()
        return events_on_a_thread(
            lambda emit: self.execute(model, request, cancel, emit, variant=variant), cancel, self.thread_name
        )
