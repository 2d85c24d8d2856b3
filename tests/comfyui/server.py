"""A real ComfyUI server for tests: the shared copy in `<shared>/comfyui-server/`, started once per test session.

    def test_x(comfyui_server):
        comfyui_server.place_models("checkpoints", "sd3.5_medium.safetensors")   # empty files pass validation
        assert comfyui_server.validate_graph(graph) == {}

The shared folder is `$SD35_SHARED`, else the first `shared/` beside the repository or one level above it (the
main checkout sits beside it, worktrees one level deeper). `setup.sh` makes ComfyUI's venv (idempotent, prints
its python last); `start.sh` copies ComfyUI into a temp BASEDIR and starts it on a free port on 127.0.0.1 with
`--preview-method latent2rgb`. When the venv cannot be made (no network, no disk) the fixture FAILS with the
reason: a silently skipped server would hide every remote-engine test. `.ci/run` runs setup.sh before pytest.

Validation without executing forever: POST /prompt validates and, if valid, queues. With EMPTY model files the
queued job dies at once in its loader ("header too small"), so `validate_graph` waits for the job to leave the
queue (it shows up in /history) and returns only the validation's `node_errors`. Files placed by a test are
removed after it (autouse fixture), so tests sharing the session's server do not see each other's empty files.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
MODEL_FOLDERS = ("checkpoints", "clip", "loras", "controlnet")
TINY_CHECKPOINT = "sd35_tiny_comfy.safetensors"  # names written by tiny_sd3_set.py build
TINY_CLIP_L = "clip_l_random.safetensors"


def shared_dir() -> Path:
    """The project's shared folder (spec, comfyui-server); raises with the places looked at."""
    env = os.environ.get("SD35_SHARED")
    candidates = [Path(env)] if env else [REPO.parent / "shared", REPO.parent.parent / "shared"]
    for c in candidates:
        if (c / "comfyui-server" / "setup.sh").is_file():
            return c.resolve()
    raise FileNotFoundError(
        f"no comfyui-server/setup.sh under {' or '.join(map(str, candidates))} (set SD35_SHARED)"
    )


def comfy_server_dir() -> Path:
    return shared_dir() / "comfyui-server"


def setup_venv(timeout: float = 1200) -> str:
    """Runs setup.sh (idempotent) and returns the venv's python; raises RuntimeError with its output tail."""
    script = comfy_server_dir() / "setup.sh"
    try:
        done = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        raise RuntimeError(f"{script} did not finish within {timeout:.0f} s") from e
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines or not Path(lines[-1]).exists():
        tail = (done.stderr or done.stdout).strip()[-1500:]
        raise RuntimeError(f"{script} failed (exit {done.returncode}): {tail}")
    return lines[-1]


@dataclass
class ComfyServer:
    """A running ComfyUI: its base URL, BASEDIR (holding `comfyui/`), and helpers to fill its folders."""

    url: str
    basedir: Path
    pid: int
    python: str
    placed: list[Path] = field(default_factory=list)  # empty files and images of the current test

    @property
    def comfy(self) -> Path:
        return self.basedir / "comfyui"

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    # ------------------------------------------------------------------ files
    def place_models(self, folder: str, *names: str) -> list[Path]:
        """Empty files named `names` under comfyui/models/<folder>: enough for /prompt validation."""
        if folder not in MODEL_FOLDERS:
            raise ValueError(f"unknown model folder {folder!r}; one of {MODEL_FOLDERS}")
        out = []
        for name in names:
            path = self.comfy / "models" / folder / name
            path.parent.mkdir(parents=True, exist_ok=True)
            if not path.exists():
                path.write_bytes(b"")
                self.placed.append(path)
            out.append(path)
        return out

    def remove_placed(self) -> None:
        """Remove what place_models/place_input made (after each test: the `comfyui_placed_files_removed`
        fixture), so one test's empty clip_l.safetensors never stands in for another test's real encoder."""
        while self.placed:
            self.placed.pop().unlink(missing_ok=True)

    def link_model(self, folder: str, source: Path, name: str | None = None) -> Path:
        """A real model file linked into comfyui/models/<folder> (symlink; ComfyUI follows it)."""
        path = self.comfy / "models" / folder / (name or source.name)
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.is_symlink() or path.exists():
            path.unlink()
        path.symlink_to(source.resolve())
        return path

    def place_input(self, name: str, image=None, size: tuple[int, int] = (64, 64)) -> Path:
        """An image under comfyui/input (a PIL image, PNG bytes, or a small grey RGB PNG when None)."""
        from PIL import Image

        path = self.comfy / "input" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(image, bytes | bytearray):
            path.write_bytes(bytes(image))
        else:
            (image or Image.new("RGB", size, (128, 128, 128))).save(path)
        self.placed.append(path)
        return path

    # ------------------------------------------------------------------ HTTP (stdlib: independent of app.remote)
    def request(self, method: str, path: str, body: object = None, timeout: float = 30) -> tuple[int, object]:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                status, raw = r.status, r.read()
        except urllib.error.HTTPError as e:
            status, raw = e.code, e.read()
        try:
            return status, json.loads(raw) if raw else None
        except ValueError:
            return status, raw.decode("utf-8", "replace")

    def get(self, path: str, timeout: float = 30) -> object:
        status, body = self.request("GET", path, timeout=timeout)
        assert status == 200, (path, status, body)
        return body

    def wait_done(self, prompt_id: str, timeout: float = 60) -> dict:
        """The /history entry of `prompt_id` once the job has finished (successfully or not)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            entry = self.get(f"/history/{prompt_id}").get(prompt_id)
            if entry and entry.get("status", {}).get("completed") is not None:
                return entry
            time.sleep(0.1)
        self.request("POST", "/queue", {"delete": [prompt_id]})
        self.request("POST", "/interrupt", {"prompt_id": prompt_id})
        raise TimeoutError(f"prompt {prompt_id} did not finish within {timeout} s")

    def validate_graph(self, graph: dict) -> dict:
        """ComfyUI's own validation of an API-format graph: {} when valid, else {node id: {errors, ...}}.

        A prompt-level error without node errors (unknown node type, no outputs) comes back under key "prompt".
        A valid graph gets queued; it is waited out (empty model files make it fail in its loader at once)."""
        status, body = self.request("POST", "/prompt", {"prompt": graph, "client_id": "tests-validate"})
        if status != 200:
            assert isinstance(body, dict), (status, body)
            return body.get("node_errors") or {"prompt": {"errors": [body.get("error")]}}
        self.wait_done(body["prompt_id"])
        return body.get("node_errors") or {}

    def stop(self) -> None:
        try:
            os.kill(self.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                os.kill(self.pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.1)
        os.kill(self.pid, signal.SIGKILL)


def start_server(basedir: Path, *flags: str, timeout: float = 180) -> ComfyServer:
    """setup.sh + start.sh: a ComfyUI on a free port with BASEDIR `basedir` (made if missing)."""
    python = setup_venv()
    basedir.mkdir(parents=True, exist_ok=True)
    cmd = ["bash", str(comfy_server_dir() / "start.sh"), "0", str(basedir)]
    if flags:
        cmd += ["--", *flags]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        raise RuntimeError(
            f"ComfyUI did not start within {timeout:.0f} s (log: {basedir}/comfyui.log)"
        ) from e
    if done.returncode != 0:
        raise RuntimeError(f"ComfyUI did not start: {done.stderr.strip()[-1500:]}")
    pid, port, _ = done.stdout.strip().splitlines()[-1].split(maxsplit=2)
    return ComfyServer(url=f"http://127.0.0.1:{port}", basedir=basedir, pid=int(pid), python=python)


def tiny_models_dir() -> Path:
    """The tiny random-weight SD3 set ComfyUI can execute (checkpoints/, clip/), built once into a cache folder.

    `tiny_sd3_set.py build` is deterministic, so a cached build is reused across sessions."""
    cache = Path(os.environ.get("SD35_TEST_CACHE", Path.home() / ".cache" / "sd35-studio-tests"))
    folder = cache / "comfy-tiny" / "models"
    ckpt, clip = folder / "checkpoints" / TINY_CHECKPOINT, folder / "clip" / TINY_CLIP_L
    if not (ckpt.is_file() and clip.is_file()):
        script = comfy_server_dir() / "tiny_sd3_set.py"
        done = subprocess.run(
            [sys.executable, str(script), "build", str(folder)], capture_output=True, text=True, timeout=600
        )
        if done.returncode != 0 or not (ckpt.is_file() and clip.is_file()):
            raise RuntimeError(f"tiny_sd3_set.py build failed: {(done.stderr or done.stdout)[-1500:]}")
    return folder


def link_tiny_set(server: ComfyServer, folder: Path) -> None:
    """Link the tiny set built in `folder` (tiny_models_dir) into the server's checkpoints/ and clip/."""
    server.link_model("checkpoints", folder / "checkpoints" / TINY_CHECKPOINT)
    server.link_model("clip", folder / "clip" / TINY_CLIP_L)


@pytest.fixture(scope="session")
def comfyui_server():
    """One real ComfyUI for the whole test session (CPU, latent2rgb previews); fails loudly if it cannot start."""
    basedir = Path(tempfile.mkdtemp(prefix="sd35-comfyui-"))
    try:
        server = start_server(basedir)
    except (RuntimeError, FileNotFoundError) as e:
        shutil.rmtree(basedir, ignore_errors=True)
        pytest.fail(f"the real ComfyUI test server is unavailable: {e}", pytrace=False)
    _RUNNING.append(server)
    try:
        yield server
    finally:
        _RUNNING.remove(server)
        server.stop()
        shutil.rmtree(basedir, ignore_errors=True)


_RUNNING: list[ComfyServer] = []


@pytest.fixture(autouse=True)
def comfyui_placed_files_removed():
    """After every test: the files it placed on the session's server are gone (the server lives on)."""
    yield
    for server in _RUNNING:
        server.remove_placed()


@pytest.fixture(scope="session")
def comfyui_tiny(comfyui_server):
    """The session's server with the tiny executable SD3 set linked in; returns (server, checkpoint, clip-l)."""
    try:
        folder = tiny_models_dir()
    except (RuntimeError, OSError) as e:
        pytest.fail(f"the tiny SD3 set for ComfyUI could not be built: {e}", pytrace=False)
    link_tiny_set(comfyui_server, folder)
    return comfyui_server, TINY_CHECKPOINT, TINY_CLIP_L
