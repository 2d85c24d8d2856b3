"""View menu: zoom the canvas and put the cursor in the prompt (the dock toggles come from the docks)."""

from __future__ import annotations

import logging
from collections.abc import Callable

from app.ui.canvas.canvas import CanvasView

log = logging.getLogger(__name__)

ZOOM_STEP = 1.25


def view_handlers(canvas: CanvasView, focus_prompt: Callable[[], None]) -> dict[str, Callable[[], object]]:
    return {
        "fit": canvas.fit,
        "actual_size": canvas.actual_size,
        "zoom_in": lambda: canvas.set_zoom(canvas.zoom() * ZOOM_STEP),
        "zoom_out": lambda: canvas.set_zoom(canvas.zoom() / ZOOM_STEP),
        "focus_prompt": focus_prompt,
    }
