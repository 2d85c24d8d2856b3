"""What can go wrong talking to a ComfyUI server, each a one-sentence message for the user."""

from __future__ import annotations

from app.inference.api.errors import InferenceError


class RemoteError(InferenceError):
    """Base of every remote-engine error."""


class ServerUnreachable(RemoteError):
    """The server does not answer: refused, timed out, or the connection dropped."""


class TlsFailure(ServerUnreachable):
    """The TLS handshake failed; `kind` says how: "untrusted", "wrong_name", "no_tls" or "failed"."""

    def __init__(self, message: str, kind: str = "failed") -> None:
        super().__init__(message)
        self.kind = kind


class ProtocolError(RemoteError):
    """The server answered with something we do not accept: malformed, oversized, or too deeply nested."""


class ServerRejected(RemoteError):
    """The server answered with an error status (4xx/5xx), e.g. a graph its validation refused."""

    def __init__(self, message: str, status: int = 0, body: object = None) -> None:
        super().__init__(message)
        self.status = status
        self.body = body


class ServerMissing(RemoteError):
    """The server lacks a node or a file the job needs (no T5 file, no SkipLayerGuidanceSD3 node, ...)."""
