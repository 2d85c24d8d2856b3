"""The HTTP half of a ComfyUI server's API: bounded requests with timeouts, one-sentence errors.

Every answer is read with a size cap and a total deadline (a server trickling bytes cannot hold a job), JSON goes
through `limits.parse_json`. Auth headers (a cloud machine's token) are sent, never logged."""

from __future__ import annotations

import http.client
import json
import logging
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Mapping

from app.remote.errors import ProtocolError, ServerRejected, ServerUnreachable
from app.remote.limits import MAX_IMAGE_BYTES, MAX_JSON_BYTES, parse_json
from app.remote.tls import client_context, server_ca_file, tls_error

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 10.0  # seconds for one request: connect, and the whole answer
_CHUNK = 1 << 16


def normalize_url(url: str) -> str:
    """`http(s)://host:port` without a trailing slash; a bare `host:port` means http. ValueError otherwise."""
    text = url.strip()
    if "://" not in text:
        text = "http://" + text
    parts = urllib.parse.urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{url!r} is not a server address; use http://host:port or https://host:port")
    if parts.query or parts.fragment:
        raise ValueError(f"{url!r}: a server address has no query or fragment")
    try:
        parts.port  # noqa: B018 - raises ValueError for a port out of range
    except ValueError:
        raise ValueError(f"{url!r} has an invalid port") from None
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), "", ""))


def websocket_url(base: str, client_id: str) -> str:
    """ws(s)://host:port/ws?clientId=... for an http(s) base URL (TLS stays TLS)."""
    parts = urllib.parse.urlsplit(base)
    scheme = "wss" if parts.scheme == "https" else "ws"
    query = urllib.parse.urlencode({"clientId": client_id})
    return urllib.parse.urlunsplit((scheme, parts.netloc, parts.path + "/ws", query, ""))


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect is reported, not followed: the auth header must never travel to another host."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


class ComfyHttp:
    def __init__(self, url: str, headers: Mapping[str, str] | None = None, timeout: float = DEFAULT_TIMEOUT):
        self.url = normalize_url(url)
        self.headers = dict(headers or {})
        self.timeout = timeout
        self._opener: urllib.request.OpenerDirector | None = (
            None  # built on first use: it reads the CA setting
        )

    def __repr__(self) -> str:  # never the headers: they may hold a token
        return f"ComfyHttp({self.url!r})"

    # ------------------------------------------------------------------------------------------------ core
    def request(
        self,
        method: str,
        path: str,
        data: bytes | None = None,
        content_type: str | None = None,
        timeout: float | None = None,
        max_bytes: int = MAX_JSON_BYTES,
    ) -> tuple[int, bytes]:
        """(status, body) of one request; ServerUnreachable when no answer, ProtocolError when too big."""
        timeout = self.timeout if timeout is None else timeout
        req = urllib.request.Request(self.url + path, data=data, method=method, headers=self.headers)
        if content_type:
            req.add_header("Content-Type", content_type)
        deadline = time.monotonic() + timeout
        if self._opener is None:
            context = client_context(server_ca_file(self.url)) if self.url.startswith("https:") else None
            extra = [urllib.request.HTTPSHandler(context=context)] if context else []
            self._opener = urllib.request.build_opener(_NoRedirect(), *extra)
        try:
            try:
                resp = self._opener.open(req, timeout=timeout)
            except urllib.error.HTTPError as e:  # an answer with an error status: still read it (bounded)
                resp = e
            with resp:
                body = self._read(resp, max_bytes, deadline, path)
                return resp.status if hasattr(resp, "status") else resp.code, body
        except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            if failure := tls_error(reason, self.url):  # never retried without TLS: the sentence says why
                raise failure from None
            if isinstance(reason, socket.timeout | TimeoutError) or isinstance(exc, TimeoutError):
                reason = f"no answer within {timeout:g} s"
            raise ServerUnreachable(f"cannot reach the ComfyUI server at {self.url}: {reason}") from None

    def _read(self, resp, max_bytes: int, deadline: float, path: str) -> bytes:
        chunks, size = [], 0
        while True:
            if time.monotonic() > deadline:
                raise TimeoutError
            chunk = resp.read1(_CHUNK)  # what has arrived: read(n) would wait for all n bytes
            if not chunk:
                return b"".join(chunks)
            size += len(chunk)
            if size > max_bytes:
                raise ProtocolError(f"the server's answer to {path} is larger than {max_bytes // 2**20} MB")
            chunks.append(chunk)

    # ------------------------------------------------------------------------------------------------ JSON
    def get_json(self, path: str, what: str, max_bytes: int = MAX_JSON_BYTES, timeout: float | None = None):
        status, body = self.request("GET", path, max_bytes=max_bytes, timeout=timeout)
        if status != 200:
            raise ServerRejected(f"the server answered {status} to {what}", status)
        return parse_json(body, what, max_bytes)

    def post_json(self, path: str, payload: object, what: str, timeout: float | None = None):
        """(status, decoded answer or None): the caller decides what an error status means (/prompt's 400)."""
        data = json.dumps(payload).encode()
        status, body = self.request("POST", path, data, "application/json", timeout=timeout)
        if status >= 500:
            raise ServerRejected(f"the server failed on {what} (HTTP {status})", status)
        return status, (parse_json(body, what) if body.strip() else None)

    def get_bytes(self, path: str, what: str, max_bytes: int = MAX_IMAGE_BYTES, timeout: float | None = None):
        status, body = self.request("GET", path, max_bytes=max_bytes, timeout=timeout)
        if status != 200:
            raise ServerRejected(f"the server answered {status} to {what}", status)
        return body

    # ------------------------------------------------------------------------------------------------ upload
    def upload_image(self, name: str, data: bytes, subfolder: str = "", timeout: float | None = None) -> str:
        """POST /upload/image (multipart): the job's own image under `name`; returns the name the graph uses.

        `name` is ours (a content hash), never a local path; overwrite is on, so the same bytes keep one name."""
        boundary = uuid.uuid4().hex
        fields = [("overwrite", "true"), ("type", "input"), ("subfolder", subfolder)]
        parts = [
            f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
            for k, v in fields
        ]
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="{name}"\r\n'
            f"Content-Type: application/octet-stream\r\n\r\n".encode()
            + data
            + f"\r\n--{boundary}--\r\n".encode()
        )
        status, body = self.request(
            "POST", "/upload/image", b"".join(parts), f"multipart/form-data; boundary={boundary}", timeout
        )
        if status != 200:
            raise ServerRejected(f"the server refused the image upload (HTTP {status})", status)
        answer = parse_json(body, "upload answer")
        if not (isinstance(answer, dict) and isinstance(answer.get("name"), str)):
            raise ProtocolError("the server's upload answer has no file name")
        sub = answer.get("subfolder") or ""
        return f"{sub}/{answer['name']}" if sub else answer["name"]
