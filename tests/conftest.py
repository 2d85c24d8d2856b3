import os

# Qt must never try to open a display in tests; set before anything imports PySide6.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

# The real ComfyUI server (session-scoped, started on first use) for every test folder: remote engine, graphs.
from tests.comfyui.server import comfyui_placed_files_removed, comfyui_server, comfyui_tiny  # noqa: F401
