"""The engine's torch-free contracts: importable without torch, and a `Session` protocol that every engine keeps
(the local torch session and the UI tests' fake today; the remote ComfyUI engine joins this list when it exists)."""

import inspect
import subprocess
import sys

import pytest

from app.inference.api.cancel import CancelToken
from app.inference.api.errors import GenerationCancelled
from app.inference.api.session import Session, SessionOptions
from app.inference.pipeline.session import GenerationSession
from tests.ui.fake_session import FakeSession

API_MODULES = ("cancel", "errors", "events", "request", "session", "variants")


def test_the_api_imports_without_torch_or_numpy():
    imports = "; ".join(f"import app.inference.api.{name}" for name in API_MODULES)
    code = f"import sys; {imports}; print('torch' in sys.modules, 'numpy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"], out.stderr


def _shape(function) -> list[tuple[str, object, object]]:
    """Parameter names, kinds and defaults (annotations are strings here and differ in spelling)."""
    return [(p.name, p.kind, p.default) for p in inspect.signature(function).parameters.values()]


@pytest.mark.parametrize("session_class", [GenerationSession, FakeSession], ids=["torch", "fake"])
def test_every_session_keeps_the_protocol(session_class):
    assert _shape(session_class.run) == _shape(Session.run)
    options = SessionOptions(
        device="cpu", dtype="float32", preview="off", preview_every=3, memory_plan="auto"
    )
    factory = getattr(session_class, "from_options", session_class)  # a SessionFactory
    session = factory(options)
    assert isinstance(session, Session)


def test_the_torch_session_takes_every_option():
    session = GenerationSession.from_options(
        SessionOptions(device="cpu", dtype="float32", preview="linear", preview_every=3, memory_plan="lean")
    )
    assert (session.preview_mode, session.preview_every) == ("linear", 3)
    assert (session.engine.device.type, session.engine.dtype_name, session.engine.memory_plan) == (
        "cpu",
        "float32",
        "lean",
    )


def test_the_cancel_token_cancels_a_job_or_single_images():
    token = CancelToken()
    token.cancel_image(2)
    assert token.image_cancelled(2) and not token.image_cancelled(1) and not token.is_cancelled
    token.raise_if_cancelled()  # nothing yet
    token.cancel()
    with pytest.raises(GenerationCancelled):
        token.raise_if_cancelled()
