"""A small in-process stand-in for a ComfyUI server, for faults the real one cannot be made to show: a WebSocket
dropped mid-job, 500s, malformed and oversized messages, slow or trickling answers, a job that vanishes.

It speaks just enough of the protocol (http.server + a minimal RFC 6455 server side) for RemoteSession: the
routes it reads on connect, /prompt, /queue, /interrupt, /history, /view, /upload/image and /ws. By default a
queued prompt "runs": execution_start, one `progress` per step of its KSampler, history with one image,
`executing` with node null. Tests change that through the knobs below."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import re
import select
import ssl
import struct
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from PIL import Image

_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def ws_frame(opcode: int, payload: bytes, claimed_length: int | None = None) -> bytes:
    """One unmasked server frame (FIN set); `claimed_length` writes another length into the header."""
    n = len(payload) if claimed_length is None else claimed_length
    if n < 126:
        header = struct.pack(">BB", 0x80 | opcode, n)
    elif n < 1 << 16:
        header = struct.pack(">BBH", 0x80 | opcode, 126, n)
    else:
        header = struct.pack(">BBQ", 0x80 | opcode, 127, n)
    return header + payload


def png_bytes(size: tuple[int, int] = (64, 64), color=(10, 120, 200)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="PNG")
    return buffer.getvalue()


OBJECT_INFO = {
    "CheckpointLoaderSimple": {"input": {"required": {"ckpt_name": [["sd3.5_medium.safetensors"], {}]}}},
    "CLIPLoader": {"input": {"required": {"clip_name": [["clip_l.safetensors", "clip_g.safetensors"], {}]}}},
    "KSampler": {"input": {"required": {"sampler_name": [["euler", "dpmpp_2m", "euler_ancestral"], {}],
                                        "scheduler": [["normal", "simple", "sgm_uniform", "beta"], {}]}}},
    **{n: {"input": {}} for n in ("ModelSamplingSD3", "CLIPTextEncode", "EmptySD3LatentImage", "VAEDecode",
                                  "SaveImage", "TripleCLIPLoader", "DualCLIPLoader", "SkipLayerGuidanceSD3",
                                  "ConditioningZeroOut", "ConditioningSetTimestepRange", "ConditioningCombine",
                                  "LoadImage", "VAEEncode")},
}  # fmt: skip


class _Server(ThreadingHTTPServer):
    """With a TLS context, each accepted connection is wrapped on its own thread, so a client that refuses the
    certificate (or speaks plain HTTP) fails only its own handshake; those failures are recorded, not printed."""

    daemon_threads = True
    tls: ssl.SSLContext | None = None
    fake: FakeComfy

    def finish_request(self, request, client_address) -> None:
        if self.tls is None:
            return super().finish_request(request, client_address)
        try:
            request = self.tls.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError) as exc:
            self.fake.tls_failures.append(str(exc))
            return None
        with request:
            return super().finish_request(request, client_address)


class FakeComfy:
    def __init__(self, port: int = 0, tls: ssl.SSLContext | None = None) -> None:
        # port: the same server "coming back" after a stop; tls: serve https + wss with this server context
        self.status: dict[str, int] = {}  # route -> HTTP status to answer instead
        self.body: dict[str, bytes] = {}  # route -> raw answer instead
        self.delay: dict[str, float] = {}  # route -> seconds to wait before answering
        self.trickle: dict[str, float] = {}  # route -> seconds between the answer's bytes
        self.refuse_ws = False  # answer /ws upgrades with 503
        self.redirect: dict[str, str] = {}  # route -> a URL to answer 302 with (GET routes and /ws)
        self.accept_uploads = False  # answer /upload/image (with another name than asked for), else 404
        self.on_prompt: Callable[[FakeComfy, str, dict], None] = FakeComfy.run_prompt
        self.view_image = png_bytes()
        self.history: dict[str, dict] = {}
        self.queued: list[str] = []
        self.requests: list[tuple[str, str]] = []
        self.authorization: list[str | None] = []  # each request's Authorization header (None: not sent)
        self.ws: list = []  # open WebSocket connections (sockets)
        self.tls_failures: list[str] = []  # TLS handshakes that failed (a refused certificate, plain HTTP)
        self._lock = threading.Lock()
        self.httpd = _Server(("127.0.0.1", port), _Handler)
        self.httpd.tls = tls
        self.httpd.fake = self
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        scheme = "https" if self.httpd.tls is not None else "http"
        return f"{scheme}://127.0.0.1:{self.httpd.server_address[1]}"

    def __enter__(self) -> FakeComfy:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.drop_ws()
        self.httpd.shutdown()
        self.httpd.server_close()

    # ------------------------------------------------------------------ WebSocket side
    def send(self, data: bytes) -> None:
        with self._lock:
            for conn in list(self.ws):
                try:
                    conn.sendall(data)
                except OSError:
                    self.ws.remove(conn)

    def send_json(self, type_: str, data: dict) -> None:
        self.send(ws_frame(0x1, json.dumps({"type": type_, "data": data}).encode()))

    def send_preview(self, prompt_id: str, image: bytes) -> None:
        meta = json.dumps({"node_id": "7", "prompt_id": prompt_id, "image_type": "image/jpeg"}).encode()
        self.send(ws_frame(0x2, struct.pack(">II", 4, len(meta)) + meta + image))

    def drop_ws(self) -> None:
        with self._lock:
            for conn in self.ws:
                try:
                    conn.shutdown(2)
                    conn.close()
                except OSError:
                    pass
            self.ws.clear()

    def wait_ws(self, timeout: float = 5) -> None:
        deadline = time.monotonic() + timeout
        while not self.ws and time.monotonic() < deadline:
            time.sleep(0.01)

    # ------------------------------------------------------------------ a prompt's run
    @staticmethod
    def sampler_of(graph: dict) -> tuple[str, int]:
        node_id = next(k for k, v in graph.items() if v["class_type"] == "KSampler")
        return node_id, graph[node_id]["inputs"]["steps"]

    def finish(self, prompt_id: str, graph: dict) -> None:
        self.history[prompt_id] = {
            "prompt": [0, prompt_id, graph, {}, []],
            "outputs": {
                "9": {"images": [{"filename": "../../etc/passwd", "subfolder": "", "type": "output"}]}
            },
            "status": {"status_str": "success", "completed": True, "messages": []},
        }
        if prompt_id in self.queued:
            self.queued.remove(prompt_id)

    def run_prompt(self, prompt_id: str, graph: dict) -> None:
        node, steps = self.sampler_of(graph)
        self.send_json("execution_start", {"prompt_id": prompt_id})
        for step in range(1, steps + 1):
            self.send_json("progress", {"value": step, "max": steps, "prompt_id": prompt_id, "node": node})
        self.finish(prompt_id, graph)
        self.send_json("executing", {"node": None, "prompt_id": prompt_id})


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:  # quiet
        pass

    @property
    def fake(self) -> FakeComfy:
        return self.server.fake  # type: ignore[attr-defined]

    def _route(self) -> str:
        return self.path.split("?", 1)[0]

    def _answer(self, status: int, body: bytes, content_type: str = "application/json") -> None:
        route = self._route()
        time.sleep(self.fake.delay.get(route, 0))
        status = self.fake.status.get(route, status)
        body = self.fake.body.get(route, body)
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        pause = self.fake.trickle.get(route)
        try:
            if pause:
                for i in range(len(body)):
                    self.wfile.write(body[i : i + 1])
                    self.wfile.flush()
                    time.sleep(pause)
            else:
                self.wfile.write(body)
        except OSError:
            pass

    def _json(self, value: object, status: int = 200) -> None:
        self._answer(status, json.dumps(value).encode())

    def do_GET(self) -> None:
        route = self._route()
        self.fake.requests.append(("GET", route))
        self.fake.authorization.append(self.headers.get("Authorization"))
        if route in self.fake.redirect:
            self.send_response(302)
            self.send_header("Location", self.fake.redirect[route])
            self.send_header("Content-Length", "0")
            self.end_headers()
            return None
        if route == "/ws":
            return self._websocket()
        if route == "/system_stats":
            system = {"comfyui_version": "0.8.0", "argv": ["main.py", "--preview-method", "auto"]}
            device = {"name": "fake", "type": "cuda", "vram_total": 2**34, "vram_free": 2**33}
            return self._json({"system": system, "devices": [device]})
        if route == "/object_info":
            return self._json(OBJECT_INFO)
        if route == "/queue":
            running = [[0, p, {}, {}, []] for p in self.fake.queued]
            return self._json({"queue_running": running[:1], "queue_pending": running[1:]})
        if route.startswith("/history/"):
            prompt_id = route.rsplit("/", 1)[1]
            entry = self.fake.history.get(prompt_id)
            return self._json({prompt_id: entry} if entry else {})
        if route == "/view":
            return self._answer(200, self.fake.view_image, "image/png")
        return self._json({}, 404)

    def do_POST(self) -> None:
        route = self._route()
        self.fake.requests.append(("POST", route))
        self.fake.authorization.append(self.headers.get("Authorization"))
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        if route == "/prompt":
            body = json.loads(raw)
            prompt_id = body.get("prompt_id") or "p1"
            if self.fake.status.get(route, 200) == 200:
                self.fake.queued.append(prompt_id)
            self._json({"prompt_id": prompt_id, "number": 0, "node_errors": {}})
            if self.fake.status.get(route, 200) == 200:
                threading.Thread(target=self.fake.on_prompt, args=(self.fake, prompt_id, body["prompt"]),
                                 daemon=True).start()  # fmt: skip
            return None
        if route in ("/queue", "/interrupt"):
            return self._answer(200, b"")
        if route == "/upload/image" and self.fake.accept_uploads:  # names it as ComfyUI does when it renames
            found = re.search(rb'filename="([^"]+)"', raw)
            name = "renamed-" + (found.group(1).decode() if found else "image.png")
            return self._json({"name": name, "subfolder": "sd35-studio", "type": "input"})
        return self._json({}, 404)

    def _websocket(self) -> None:
        if self.fake.refuse_ws:
            return self._answer(503, b"")
        key = self.headers.get("Sec-WebSocket-Key", "")
        accept = base64.b64encode(hashlib.sha1((key + _GUID).encode()).digest()).decode()
        self.send_response(101)
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.send_header("Sec-WebSocket-Accept", accept)
        self.end_headers()
        self.wfile.flush()
        conn = self.connection
        with self.fake._lock:
            self.fake.ws.append(conn)
        self.fake.send_json("status", {"status": {"exec_info": {"queue_remaining": 0}}})
        try:  # read (and drop) the client's frames until it or the test closes the connection
            if isinstance(conn, ssl.SSLSocket):
                self._drain_tls(conn)
            else:
                while conn.recv(65536):
                    pass
        except (OSError, ValueError):
            pass
        self.close_connection = True
        return None

    def _drain_tls(self, conn: ssl.SSLSocket) -> None:
        """One TLS connection must not be read and written by two threads at once (OpenSSL): read only what has
        arrived, under the lock the senders hold."""
        while True:
            readable, _, _ = select.select([conn], [], [], 0.1)
            if not readable and not conn.pending():
                continue
            with self.fake._lock:
                if conn.fileno() < 0 or not conn.recv(65536):
                    return
