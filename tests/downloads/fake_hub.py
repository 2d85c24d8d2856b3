"""A local stand-in for the part of the Hugging Face Hub's HTTP interface that file downloads use.

Two servers on 127.0.0.1 (random ports), like the real Hub and its storage host:

hub  `HEAD|GET /{org}/{name}/resolve/{revision}/{path}`
       small ("regular") files: 200 with `ETag: "<git blob sha1>"`, `X-Repo-Commit`, `Content-Length`
       large (LFS) files:       302 to the storage host with `X-Linked-Etag: "<sha256>"`, `X-Linked-Size`,
                                `X-Repo-Commit`, `Location`
       missing file:            404 `X-Error-Code: EntryNotFound`; unknown revision: 404 `RevisionNotFound`
       gated repository:        401 `X-Error-Code: GatedRepo` without a token, 403 with a token lacking access,
                                401 `X-Error-Message: Invalid credentials in Authorization header` for unknown tokens
     `GET /api/whoami-v2`       the token's owner (what `huggingface_hub.login` checks)
cdn  `HEAD|GET /blobs/{sha256}` with `Range: bytes=N-` support (206 + `Content-Range`)

Fault injection: `drop_after[name] = n` sends the first n body bytes of the next GET of that file and closes the
connection mid-body; `fail_next[name] = [status, ...]` answers the next GETs with those statuses. Every request is
logged. Both servers stop on `stop()` or by themselves after `lifetime_s`.
"""

from __future__ import annotations

import hashlib
import json
import socket
import sys
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

LFS_SUFFIXES = (".safetensors", ".model", ".bin", ".pth")
INVALID_CREDENTIALS = "Invalid credentials in Authorization header"


@dataclass(frozen=True)
class Logged:
    server: str  # "hub" | "cdn"
    method: str
    path: str
    range: str | None
    authorization: str | None


@dataclass(frozen=True)
class Blob:
    repo_id: str
    name: str
    data: bytes

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @property
    def git_sha1(self) -> str:
        return hashlib.sha1(f"blob {len(self.data)}\0".encode() + self.data).hexdigest()

    @property
    def lfs(self) -> bool:
        return self.name.endswith(LFS_SUFFIXES)


@dataclass
class FakeHubState:
    repos: dict[str, dict[str, bytes]]
    gated: dict[str, set[str]] = field(default_factory=dict)  # repo -> tokens that accepted the licence
    tokens: dict[str, str] = field(default_factory=dict)  # token -> user name
    drop_after: dict[str, int] = field(default_factory=dict)  # file name -> bytes sent before dropping
    fail_next: dict[str, list[int]] = field(default_factory=dict)  # file name -> statuses for the next GETs
    log: list[Logged] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def commit(self, repo_id: str) -> str:
        return hashlib.sha1(repo_id.encode()).hexdigest()

    def blob(self, repo_id: str, name: str) -> Blob | None:
        data = self.repos.get(repo_id, {}).get(name)
        return None if data is None else Blob(repo_id, name, data)

    def blob_by_sha(self, sha: str) -> Blob | None:
        for repo_id, files in self.repos.items():
            for name, data in files.items():
                blob = Blob(repo_id, name, data)
                if blob.lfs and blob.sha256 == sha:
                    return blob
        return None

    def take_fault(self, name: str) -> tuple[int | None, int | None]:
        """(status to answer instead, bytes to send before dropping) for the next GET of `name`."""
        with self.lock:
            if name in self.drop_after:
                return None, self.drop_after.pop(name)
            statuses = self.fail_next.get(name)
            return (statuses.pop(0) if statuses else None), None


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 10  # seconds per connection read: a stuck client cannot hold a thread forever
    server: _Server

    def log_message(self, format: str, *args: object) -> None:  # quiet
        return

    # ---- plumbing
    @property
    def state(self) -> FakeHubState:
        return self.server.state

    def _record(self) -> None:
        self.state.log.append(
            Logged(
                self.server.role,
                self.command,
                urlsplit(self.path).path,
                self.headers.get("Range"),
                self.headers.get("Authorization"),
            )
        )

    def _reply(
        self, status: int, headers: dict[str, str], body: bytes = b"", *, drop_after: int | None = None
    ):
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", headers.get("Content-Length", str(len(body))))
        self.end_headers()
        if self.command == "HEAD":
            return
        try:
            if drop_after is not None:
                self.wfile.write(body[:drop_after])
                self.wfile.flush()
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):  # the client cancelled mid-body
            self.close_connection = True

    def do_HEAD(self) -> None:
        self._dispatch()

    def do_GET(self) -> None:
        self._dispatch()

    def _dispatch(self) -> None:
        self._record()
        path = unquote(urlsplit(self.path).path)
        if self.server.role == "cdn":
            self._cdn(path)
        elif path == "/api/whoami-v2":
            self._whoami()
        else:
            self._resolve(path)

    # ---- hub
    def _token(self) -> str | None:
        auth = self.headers.get("Authorization", "")
        return auth.removeprefix("Bearer ").strip() or None

    def _whoami(self) -> None:
        token = self._token()
        user = self.state.tokens.get(token or "")
        if user is None:
            self._reply(401, {"X-Error-Message": INVALID_CREDENTIALS})
            return
        body = json.dumps(
            {"name": user, "auth": {"accessToken": {"displayName": "test-token", "role": "read"}}}
        )
        self._reply(200, {"Content-Type": "application/json"}, body.encode())

    def _resolve(self, path: str) -> None:
        parts = path.strip("/").split("/")
        if len(parts) < 5 or parts[2] != "resolve":
            self._reply(404, {"X-Error-Code": "RepoNotFound"})
            return
        repo_id, revision, name = "/".join(parts[:2]), parts[3], "/".join(parts[4:])
        if repo_id not in self.state.repos:
            self._reply(401 if self._token() is None else 404, {"X-Error-Code": "RepoNotFound"})
            return
        commit = self.state.commit(repo_id)
        if revision not in ("main", commit):
            self._reply(404, {"X-Error-Code": "RevisionNotFound"})
            return
        token = self._token()
        if token is not None and token not in self.state.tokens:
            self._reply(401, {"X-Error-Message": INVALID_CREDENTIALS})
            return
        if repo_id in self.state.gated and token not in self.state.gated[repo_id]:
            message = f"Access to model {repo_id} is restricted."
            self._reply(
                401 if token is None else 403, {"X-Error-Code": "GatedRepo", "X-Error-Message": message}
            )
            return
        blob = self.state.blob(repo_id, name)
        if blob is None:
            self._reply(404, {"X-Error-Code": "EntryNotFound", "X-Repo-Commit": commit})
            return
        if blob.lfs:
            self._reply(
                302,
                {
                    "Location": f"{self.server.cdn_url}/blobs/{blob.sha256}?expires=soon",
                    "X-Repo-Commit": commit,
                    "X-Linked-Etag": f'"{blob.sha256}"',
                    "X-Linked-Size": str(len(blob.data)),
                    "ETag": '"0123456789abcdef0123456789abcdef01234567"',  # the pointer file's, as on the Hub
                },
            )
            return
        status, drop = (None, None) if self.command == "HEAD" else self.state.take_fault(name)
        if status is not None:
            self._reply(status, {})
            return
        headers = {
            "ETag": f'"{blob.git_sha1}"',
            "X-Repo-Commit": commit,
            "Content-Length": str(len(blob.data)),
        }
        self._reply(200, headers, blob.data, drop_after=drop)

    # ---- storage host
    def _cdn(self, path: str) -> None:
        blob = self.state.blob_by_sha(path.rsplit("/", 1)[-1]) if path.startswith("/blobs/") else None
        if blob is None:
            self._reply(404, {})
            return
        status, drop = (None, None) if self.command == "HEAD" else self.state.take_fault(blob.name)
        if status is not None:
            self._reply(status, {})
            return
        size, start = len(blob.data), 0
        requested = self.headers.get("Range")
        if requested:
            start = int(requested.removeprefix("bytes=").split("-", 1)[0])
            if start >= size:
                self._reply(416, {"Content-Range": f"bytes */{size}"})
                return
            body = blob.data[start:]
            headers = {"Content-Range": f"bytes {start}-{size - 1}/{size}", "Content-Length": str(len(body))}
            self._reply(206, {**headers, "Accept-Ranges": "bytes"}, body, drop_after=drop)
            return
        self._reply(200, {"Accept-Ranges": "bytes", "ETag": f'"{blob.sha256}"'}, blob.data, drop_after=drop)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    state: FakeHubState
    role: str
    cdn_url: str

    def handle_error(self, request: object, client_address: object) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):  # clients that cancel mid-body are expected
            super().handle_error(request, client_address)


class FakeHub:
    """`with FakeHub(state) as hub:` serves `state` on 127.0.0.1 at `hub.url` (the HF_ENDPOINT)."""

    def __init__(self, state: FakeHubState, lifetime_s: float = 120.0) -> None:
        self.state = state
        self._servers: list[_Server] = []
        for role in ("hub", "cdn"):
            server = _Server(("127.0.0.1", 0), _Handler)
            server.state, server.role = state, role
            self._servers.append(server)
        self.url = self._url(self._servers[0])
        self.cdn_url = self._url(self._servers[1])
        self._servers[0].cdn_url = self.cdn_url
        self._threads = [
            threading.Thread(target=s.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
            for s in self._servers
        ]
        self._timer = threading.Timer(lifetime_s, self.stop)
        self._timer.daemon = True
        self._stopped = threading.Event()

    @staticmethod
    def _url(server: _Server) -> str:
        host, port = server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> FakeHub:
        for thread in self._threads:
            thread.start()
        self._timer.start()
        return self

    def stop(self) -> None:
        if self._stopped.is_set():
            return
        self._stopped.set()
        self._timer.cancel()
        for server in self._servers:
            server.shutdown()
            server.server_close()

    def __enter__(self) -> FakeHub:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def requests(self, server: str | None = None, method: str | None = None) -> list[Logged]:
        return [
            r
            for r in self.state.log
            if (server is None or r.server == server) and (method is None or r.method == method)
        ]


def repo_files(folder: Path) -> dict[str, bytes]:
    """Every file under `folder`, keyed by its path in the repository."""
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }
