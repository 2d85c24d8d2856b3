"""The WebSocket half of a ComfyUI server's API (`websocket-client`, synchronous: it runs on the job's thread).

One connection per session and client id, opened BEFORE a prompt is queued so no message of the job is missed;
the first message announces `supports_preview_metadata`. Frames are bounded in size while they are read, and a
receive waits at most `timeout` seconds, so a silent or dropped server never blocks a job."""

from __future__ import annotations

import logging
from collections.abc import Mapping

import websocket

from app.remote.errors import ProtocolError, ServerUnreachable
from app.remote.limits import MAX_WS_MESSAGE_BYTES
from app.remote.messages import FEATURE_FLAGS, Message, Preview, parse_binary, parse_text
from app.remote.tls import client_context, server_ca_file, tls_error

log = logging.getLogger(__name__)

_REDIRECTS = {301, 302, 303, 307, 308}


def _too_big() -> ProtocolError:
    return ProtocolError(
        f"the server sent a WebSocket message larger than {MAX_WS_MESSAGE_BYTES // 2**20} MB"
    )


class _BoundedFrames(websocket.frame_buffer):
    """Refuses a frame by its header's length, before its payload is read into memory."""

    def recv_length(self) -> None:
        super().recv_length()
        if self.length is not None and self.length > MAX_WS_MESSAGE_BYTES:
            raise _too_big()


class _BoundedContinuation(websocket.continuous_frame):
    """Refuses a message fragmented into many frames once their sum passes the bound."""

    def add(self, frame) -> None:
        super().add(frame)
        if self.cont_data and len(self.cont_data[1]) > MAX_WS_MESSAGE_BYTES:
            raise _too_big()


class ComfySocket:
    def __init__(self, url: str, headers: Mapping[str, str] | None = None, connect_timeout: float = 10.0):
        self.url = url
        self.headers = dict(headers or {})
        self.connect_timeout = connect_timeout
        self._ws: websocket.WebSocket | None = None

    def __repr__(self) -> str:
        return f"ComfySocket({self.url!r})"

    @property
    def connected(self) -> bool:
        return self._ws is not None and self._ws.connected

    def connect(self) -> None:
        context = client_context(server_ca_file(self.url)) if self.url.startswith("wss:") else None
        ws = websocket.WebSocket(enable_multithread=True, sslopt={"context": context} if context else None)
        # Bound every frame while it is read (websocket-client has no size limit of its own).
        ws.frame_buffer = _BoundedFrames(ws._recv, skip_utf8_validation=False)
        ws.cont_frame = _BoundedContinuation(fire_cont_frame=False, skip_utf8_validation=False)
        try:
            # No redirects: websocket-client would follow them with the same headers (the token) to any host, and
            # from wss:// to ws:// (the HTTP half refuses them too, see http._NoRedirect).
            ws.connect(
                self.url,
                timeout=self.connect_timeout,
                header=[f"{k}: {v}" for k, v in self.headers.items()],
                redirect_limit=0,
            )
            ws.send(FEATURE_FLAGS)
        except (websocket.WebSocketException, OSError) as exc:
            ws.shutdown()
            if failure := tls_error(exc, self._short()):
                raise failure from None
            answer = getattr(ws, "handshake_response", None)
            if answer is not None and answer.status in _REDIRECTS:
                raise ServerUnreachable(
                    f"the ComfyUI server's WebSocket ({self._short()}) answered with a redirect "
                    f"(HTTP {answer.status}), which is not followed: connect to the address it redirects to"
                ) from None
            raise ServerUnreachable(
                f"cannot open the ComfyUI server's WebSocket ({self._short()}): {exc}"
            ) from None
        self._ws = ws

    def _short(self) -> str:
        return self.url.split("?", 1)[0]

    def receive(self, timeout: float) -> Message | Preview | None:
        """The next message, or None when none came within `timeout` (or a frame we ignore came).

        ServerUnreachable when the connection drops or closes; ProtocolError for a malformed or oversized one."""
        ws = self._ws
        if ws is None:
            raise ServerUnreachable("the WebSocket to the ComfyUI server is not open")
        try:
            ws.settimeout(timeout)
            opcode, data = ws.recv_data()
        except websocket.WebSocketTimeoutException:
            return None
        except ProtocolError:
            self.close()
            raise
        except (websocket.WebSocketException, OSError) as exc:
            self.close()
            raise ServerUnreachable(
                f"the connection to the ComfyUI server dropped ({exc or 'closed'})"
            ) from None
        if opcode == websocket.ABNF.OPCODE_TEXT:
            return parse_text(data)
        if opcode == websocket.ABNF.OPCODE_BINARY:
            return parse_binary(data)
        if opcode == websocket.ABNF.OPCODE_CLOSE:
            self.close()
            raise ServerUnreachable("the ComfyUI server closed the WebSocket")
        return None

    def close(self) -> None:
        ws, self._ws = self._ws, None
        if ws is not None:
            try:
                ws.close(timeout=1)
            except (websocket.WebSocketException, OSError):
                ws.shutdown()
