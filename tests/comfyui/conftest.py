"""Fixtures shared by the tests that run jobs on the REAL ComfyUI server (tests/comfyui/server.py)."""

import pytest

from app.remote.session import RemoteSession


@pytest.fixture(scope="module")
def remote(comfyui_tiny):
    """One RemoteSession per test module on the tiny SD3 set; yields (server, session, checkpoint)."""
    server, checkpoint, _ = comfyui_tiny
    session = RemoteSession(server.url, partial_text_encoders=True, poll_every=2.0)
    yield server, session, checkpoint
    session.close()
