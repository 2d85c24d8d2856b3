"""`RemoteSession`: the Session protocol (app.inference.api.session) on a ComfyUI server.

A job: read the server's capabilities → check it can run the request (its checkpoint, text encoders, the job's
LoRA and ControlNet files by the server's names: server_files.py; every node of the graph) → upload the job's own
images (init image, a masked job's canvas and masks, control images: inputs.py) → queue one prompt
per seed (each image reproducible alone, graphs from the PNG writer's builder) → follow /ws: `progress` of the
KSampler node → StepUpdate (ETA from the image's own clock), preview frames → the next step's preview,
`execution_success` → the PNG via /history + /view → ImageFinished; `execution_error` → ImageFailed.
Cancel: /queue delete for waiting prompts, /interrupt (with the prompt id) for the running one.

Nothing hangs: every receive has a short timeout, and when the socket is silent the server is asked over HTTP
whether our prompts still exist (a result missed while the socket was down is fetched from /history). A dropped
WebSocket is reopened once; if the server stays away the job ends with JobFailed(kind CONNECTION).
"""

from __future__ import annotations

import logging
import time
import urllib.parse
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from app.inference.api.cancel import CancelToken
from app.inference.api.errors import FailureKind, GenerationCancelled, InferenceError, failure_kind
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
from app.inference.api.session import RunsOnAThread, SessionFactory, SessionOptions
from app.metadata.comfy_graph import ComfyFiles
from app.remote.answers import (
    MAX_ERROR_TEXT,
    history_error,
    output_images,
    preview_pixels,
    queued_ids,
    rejection,
)
from app.remote.capabilities import ServerInfo, read_capabilities
from app.remote.errors import ProtocolError, RemoteError, ServerMissing, ServerRejected, ServerUnreachable
from app.remote.http import ComfyHttp, websocket_url
from app.remote.inputs import PendingUploads, SentInputs, plan_inputs, sized
from app.remote.job import (
    UPLOAD_SUBFOLDER,
    RemoteImage,
    checkpoint_name,
    image_graph,
    image_params,
    model_stem,
    refuse_what_is_not_sent,
    require_nodes,
    server_files,
    step_sigmas,
    variant_of,
)
from app.remote.limits import decode_image
from app.remote.messages import Message, Preview
from app.remote.server_files import server_metadata, with_server_files
from app.remote.ws import ComfySocket

log = logging.getLogger(__name__)

_PREVIEW_METHODS = {"auto": "auto", "taesd": "taesd", "linear": "latent2rgb", "off": "none"}
_RECEIVE = 0.25  # seconds per WebSocket wait: how fast a cancel is seen
_STOP_WAIT = 10.0  # seconds a cancel waits for the server to confirm that the running prompt stopped


def remote_factory(url: str, **kwargs: Any) -> SessionFactory:
    """A SessionFactory for the server at `url` (options: previews; the rest does not apply to a server)."""
    return lambda options: RemoteSession(url, preview=options.preview, **kwargs)


class RemoteSession(RunsOnAThread):
    thread_name = "sd35-remote-job"

    def __init__(
        self,
        url: str,
        headers: Mapping[str, str] | None = None,
        preview: str = "auto",
        partial_text_encoders: bool = False,
        timeout: float = 10.0,
        poll_every: float = 5.0,
    ) -> None:
        self.http = ComfyHttp(url, headers, timeout)
        self.client_id = uuid.uuid4().hex
        self.socket = ComfySocket(websocket_url(self.http.url, self.client_id), headers, timeout)
        self.preview = preview  # SessionOptions.preview: "auto" | "taesd" | "linear" | "off"
        self.partial_text_encoders = (
            partial_text_encoders  # allow a server without CLIP-G (said in the graph)
        )
        self.poll_every = poll_every  # seconds of WebSocket silence before the server is asked over HTTP
        self.info: ServerInfo | None = None
        self._announced: str | None = None  # the checkpoint ModelLoaded was reported for
        # After a job that sampled with previews wanted: did the server send any? False: a server that ignores
        # the per-job preview method (older than the one tested) and was started without --preview-method.
        self.previews_seen: bool | None = None

    def __repr__(self) -> str:
        return f"RemoteSession({self.http.url!r})"

    @classmethod
    def from_options(cls, options: SessionOptions, url: str = "", **kwargs: Any) -> RemoteSession:
        return cls(url, preview=options.preview, **kwargs)

    @property
    def url(self) -> str:
        return self.http.url

    @property
    def loaded_checkpoint(self) -> str | None:
        """The checkpoint this session's last job used: likely still loaded on the server."""
        return self._announced

    def capabilities(self, refresh: bool = False) -> ServerInfo:
        if self.info is None or refresh:
            self.info = read_capabilities(self.http)
        return self.info

    def close(self) -> None:
        self.socket.close()

    # ------------------------------------------------------------------------------------------------ run
    def execute(
        self,
        model: Path | Any,
        request: GenerationRequest,
        cancel: CancelToken,
        emit: Callable[[Event], None],
        variant: str | None = None,
    ) -> None:
        """Run the job on the calling thread, reporting through `emit`. Never raises for a failed job."""
        job = _Job(self, emit, cancel)
        try:
            job.run(checkpoint_name(model), request, variant)
        except GenerationCancelled:
            job.stop_on_server(wait=True)
            emit(JobCancelled(job.finished))
        except (ServerUnreachable, ProtocolError) as exc:
            job.stop_on_server()
            emit(JobFailed(str(exc), FailureKind.CONNECTION))
        except ServerMissing as exc:
            emit(JobFailed(str(exc), FailureKind.MODEL))
        except ServerRejected as exc:
            job.stop_on_server()
            emit(JobFailed(str(exc), FailureKind.REQUEST if exc.status == 400 else FailureKind.CONNECTION))
        except InferenceError as exc:
            emit(JobFailed(str(exc), failure_kind(exc)))
        except OSError as exc:  # the consumer's own writing (a full disk) while handling ImageFinished
            job.stop_on_server()
            emit(JobFailed(f"could not read or write a file: {exc}", FailureKind.IO))
        except Exception as exc:  # the session must survive anything
            log.exception("remote job failed")
            job.stop_on_server()
            emit(JobFailed(f"internal error: {exc.__class__.__name__}: {exc}", FailureKind.INTERNAL))


class _Job:
    """The state of one job on the server: its images by prompt id, and what has been reported."""

    def __init__(self, session: RemoteSession, emit: Callable[[Event], None], cancel: CancelToken) -> None:
        self.s = session
        self.emit = emit
        self.cancel = cancel
        self.images: dict[str, RemoteImage] = {}
        self.finished = 0
        self.previews = 0
        self.stepped = False  # a step was reported (a prompt ComfyUI had cached runs no step)
        self.sigmas: list[float] = []
        self.sent = SentInputs(ComfyFiles(checkpoint=""))  # the uploads, set by run

    # ------------------------------------------------------------------------------------------------ plan
    def run(self, checkpoint: str, request: GenerationRequest, variant: str | None) -> None:
        started = time.perf_counter()
        s = self.s
        info = s.capabilities()
        if checkpoint not in info.checkpoints:
            info = s.capabilities(refresh=True)  # the file may have been added since
        if checkpoint not in info.checkpoints:
            listed = ", ".join(info.sd35_checkpoints or info.checkpoints[:8]) or "none"
            raise ServerMissing(
                f"{info.url} has no checkpoint {checkpoint!r} (SD3.5 checkpoints there: {listed})"
            )
        variant = variant_of(checkpoint, variant)
        req = sized(request).resolved(variant)
        refuse_what_is_not_sent(req)
        info.require(req, s.partial_text_encoders)
        files = server_files(info, checkpoint, s.partial_text_encoders)
        try:  # the job's LoRAs and ControlNets by the server's names
            files = with_server_files(info, req, files, server_metadata(s.http))
        except ServerMissing:  # the file may have been added since the capabilities were read
            info = s.capabilities(refresh=True)
            files = with_server_files(info, req, files, server_metadata(s.http))
        pending = PendingUploads()  # the job's images: named now, sent once the server is known to fit
        planned = plan_inputs(pending, req, files, UPLOAD_SUBFOLDER)
        stem = model_stem(checkpoint)
        require_nodes(
            image_graph(image_params(req, req.seed, variant, stem, planned), planned.files)[0], info
        )
        self.sent = pending.send(s.http.upload_image, planned)
        files = self.sent.files
        if s._announced != checkpoint:
            device = info.devices[0].name if info.devices else "unknown device"
            plan = f"ComfyUI {info.comfyui_version} at {info.url} ({device})"
            self.emit(ModelLoaded(variant, stem, time.perf_counter() - started, plan))
            s._announced = checkpoint
        # both passes: the image's steps as ours count them
        self.sigmas = step_sigmas(req, files.our_schedule)
        if not s.socket.connected:
            s.socket.connect()  # before queueing: no message of the job may be missed
        extra: dict[str, object] = {}
        if s.preview != "auto" or not info.previews_by_default:  # "auto" keeps a server's own choice
            extra["preview_method"] = _PREVIEW_METHODS.get(s.preview, "auto")
        for index in range(req.count):
            self.cancel.raise_if_cancelled()
            seed = req.seed + index
            graph, samplers = image_graph(image_params(req, seed, variant, stem, self.sent), files)
            image = RemoteImage(index, seed, uuid.uuid4().hex, graph, samplers)
            self._queue(image, extra)
        self._follow(req, variant, stem, files)
        if s.preview != "off" and self.stepped:
            s.previews_seen = self.previews > 0
            if not s.previews_seen:
                log.warning(
                    "%s sent no previews (started without --preview-method?): progress only", info.url
                )
        self.emit(JobFinished(self.finished, time.perf_counter() - started))

    def _queue(self, image: RemoteImage, extra: dict) -> None:
        body = {"prompt": image.graph, "client_id": self.s.client_id, "prompt_id": image.prompt_id,
                "extra_data": dict(extra)}  # fmt: skip
        status, answer = self.s.http.post_json("/prompt", body, "the job")
        if status != 200:
            raise ServerRejected(f"the server refused the job: {rejection(answer)}", status, answer)
        server_id = answer.get("prompt_id") if isinstance(answer, dict) else None
        if isinstance(server_id, str) and server_id != image.prompt_id:  # an older server ignores ours
            image.prompt_id = server_id
        self.images[image.prompt_id] = image

    # ------------------------------------------------------------------------------------------------ follow
    def _follow(self, req: GenerationRequest, variant: str, stem: str, files: ComfyFiles) -> None:
        s = self.s
        silent_since = time.monotonic()
        reconnected = False
        while any(not i.done for i in self.images.values()):
            self.cancel.raise_if_cancelled()
            for image in self.images.values():
                if not image.done and self.cancel.image_cancelled(image.index):
                    self._cancel_image(image)
            try:
                message = s.socket.receive(_RECEIVE)
            except ServerUnreachable as exc:
                if reconnected:
                    raise
                reconnected = True  # once per job: a server that keeps dropping us is not usable
                log.warning("the WebSocket to %s dropped; reconnecting", s.http.url)
                time.sleep(0.2)
                try:
                    s.socket.connect()
                    self._poll(req, variant, stem, files)  # what finished while we were away
                except ServerUnreachable:
                    raise ServerUnreachable(f"lost the connection to the ComfyUI server at {s.http.url} during "
                                            f"the job ({exc})") from None  # fmt: skip
                continue
            if message is None:
                if time.monotonic() - silent_since > s.poll_every:
                    self._poll(req, variant, stem, files)
                    silent_since = time.monotonic()
                continue
            silent_since = time.monotonic()
            if isinstance(message, Preview):
                self._preview(message)
            else:
                self._message(message, req, variant, stem, files)

    def _current(self) -> RemoteImage | None:
        running = [i for i in self.images.values() if i.started is not None and not i.done]
        return running[0] if running else None

    def _preview(self, preview: Preview) -> None:
        image = self.images.get(preview.prompt_id) if preview.prompt_id else self._current()
        if image is None or image.done:
            return  # another client's job, or a late frame
        self.previews += 1
        if preview.prompt_id is None and image.last_step:  # legacy event 1 follows its step: show it now
            self._step(image, image.last_step, len(self.sigmas), preview)
        else:  # event 4 comes before its step's `progress`
            image.preview = preview

    def _message(self, m: Message, req, variant: str, stem: str, files: ComfyFiles) -> None:
        image = self.images.get(m.get("prompt_id") or "")
        if image is None or image.done:
            return
        if m.type == "execution_start":
            image.started = time.perf_counter()
        elif m.type == "progress":
            node = str(m.data.get("node")) if m.get("node", (str, int)) is not None else None
            if node in image.samplers:
                value, total = m.get("value", int, 0), m.get("max", int, 0)
                if 0 < value <= total <= 100_000:
                    preview, image.preview = image.preview, None
                    before = image.samplers[node]  # the hires pass continues the first pass's count
                    self._step(image, before + value, max(before + total, len(self.sigmas)), preview)
        elif m.type == "executing" and m.data.get("node", 0) is None:  # sent once /history has the result
            self._fetch(image, req, variant, stem, files)
        elif m.type == "execution_error":
            self._failed(image, m)
        elif m.type == "execution_interrupted":
            image.done = True
            self.emit(ImageCancelled(image.index, image.seed))

    def _step(self, image: RemoteImage, value: int, total: int, preview: Preview | None) -> None:
        now = time.perf_counter()
        self.stepped = True
        if image.started is None:
            image.started = now
        image.last_step = value
        elapsed = max(now - image.started, 1e-6)
        its = value / elapsed
        eta = (total - value) / its if its > 0 else None
        sigma = self.sigmas[value - 1] if value <= len(self.sigmas) else float("nan")
        self.emit(
            StepUpdate(
                image.index, image.seed, value, total, sigma, elapsed, its, eta, preview_pixels(preview)
            )
        )

    def _fetch(self, image: RemoteImage, req, variant: str, stem: str, files: ComfyFiles) -> None:
        """The image's PNG via /history + /view; server names are only ever query values, never paths here."""
        entry = self._history(image.prompt_id)
        if entry is None:
            raise ProtocolError(f"the server finished prompt {image.prompt_id} but has no history of it")
        self._finish_from(image, entry, req, variant, stem, files)

    def _finish_from(self, image: RemoteImage, entry: dict, req, variant: str, stem: str, files: ComfyFiles):
        image.done = True
        refs = output_images(entry)
        if not refs:
            status = entry.get("status") if isinstance(entry.get("status"), dict) else {}
            if status.get("status_str") == "error":
                self.emit(ImageFailed(image.index, image.seed, history_error(status), FailureKind.INTERNAL))
                return
            raise ProtocolError(f"the server reports no image for prompt {image.prompt_id}")
        query = urllib.parse.urlencode(refs[0])
        pixels = decode_image(self.s.http.get_bytes(f"/view?{query}", "image", timeout=60), "image")
        width, height = self.sent.result_size or (req.width, req.height)
        if pixels.shape[:2] != (height, width):
            h, w = pixels.shape[:2]
            raise ProtocolError(f"the server returned a {w}x{h} image for a {width}x{height} job")
        self.finished += 1
        sent = self.sent
        self.emit(ImageFinished(image.index, image.seed, pixels, None, req, model_name=stem, variant=variant,
                                noise_device="cpu", comfy_files=files, engine=self.s.http.url,
                                source_sha256=sent.source_sha256, mask_alpha=sent.mask_alpha,
                                mask_soft=sent.mask_soft))  # fmt: skip

    def _failed(self, image: RemoteImage, m: Message) -> None:
        image.done = True
        text = (m.get("exception_message") or "unknown error").strip()[:MAX_ERROR_TEXT]
        node = m.get("node_type") or "a node"
        kind = FailureKind.MEMORY if "out of memory" in text.lower() else FailureKind.INTERNAL
        if node.endswith("Loader") or node.endswith("LoaderSimple"):
            kind = FailureKind.MODEL
        self.emit(ImageFailed(image.index, image.seed, f"the server failed in {node}: {text}", kind))

    def _history(self, prompt_id: str) -> dict | None:
        answer = self.s.http.get_json(f"/history/{urllib.parse.quote(prompt_id)}", "job history")
        entry = answer.get(prompt_id) if isinstance(answer, dict) else None
        return entry if isinstance(entry, dict) else None

    def _poll(self, req, variant: str, stem: str, files: ComfyFiles) -> None:
        """The socket was silent (or dropped): is the server there, and are our prompts still queued or done?"""
        queue_state = self.s.http.get_json("/queue", "queue")
        alive = queued_ids(queue_state)
        for image in list(self.images.values()):
            if image.done or image.prompt_id in alive:
                continue
            entry = self._history(image.prompt_id)  # history holds finished prompts only
            if entry is not None:
                self._finish_from(image, entry, req, variant, stem, files)  # finished while we did not listen
            elif entry is None:
                image.done = True
                self.emit(ImageFailed(image.index, image.seed, "the server lost this image's job (it is neither "
                                      "queued nor in its history); run it again", FailureKind.CONNECTION))  # fmt: skip

    # ------------------------------------------------------------------------------------------------ cancel
    def _cancel_image(self, image: RemoteImage) -> None:
        self._remove([image.prompt_id])
        image.done = True
        self.emit(ImageCancelled(image.index, image.seed))

    def _remove(self, prompt_ids: list[str]) -> None:
        """Delete waiting prompts from the queue and interrupt the running one (only if it is ours)."""
        if not prompt_ids:
            return
        self.s.http.post_json("/queue", {"delete": prompt_ids}, "queue delete")
        running = [
            i.prompt_id for i in self.images.values() if i.prompt_id in prompt_ids and i.started is not None
        ]
        for prompt_id in running or prompt_ids[:1]:  # a prompt may start between our look and the delete
            self.s.http.post_json("/interrupt", {"prompt_id": prompt_id}, "interrupt")

    def stop_on_server(self, wait: bool = False) -> None:
        """Best effort: leave nothing of ours running or queued on the server. With `wait`, until the running
        prompt has stopped (it stops at its next step), at most `_STOP_WAIT` seconds."""
        running = [i.prompt_id for i in self.images.values() if not i.done and i.started is not None]
        try:
            self._remove([i.prompt_id for i in self.images.values() if not i.done])
            deadline = time.monotonic() + _STOP_WAIT
            while wait and running and time.monotonic() < deadline and self.s.socket.connected:
                m = self.s.socket.receive(_RECEIVE)
                if (
                    isinstance(m, Message)
                    and m.get("prompt_id") in running
                    and (m.type in ("execution_interrupted", "execution_error", "execution_success"))
                ):
                    running.remove(m.get("prompt_id"))
        except RemoteError as exc:
            log.info("could not remove the job's prompts from %s: %s", self.s.http.url, exc)
