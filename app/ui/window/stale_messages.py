"""Messages that stop being true take themselves down: the banner about an unusable or missing model once a
usable model is chosen, "Write a prompt first" once there is a prompt, and the canvas's empty-state hint
follows the prompt field."""

from __future__ import annotations

import logging

from app.ui.canvas.canvas import CanvasView
from app.ui.form.form_state import GenerationFormState
from app.ui.form.model_library import ModelSetInfo
from app.ui.form.model_picker import ModelPickerController
from app.ui.window.banner import MessageBanner

log = logging.getLogger(__name__)

NO_PROMPT_HINT = "Write a prompt and press Generate (Ctrl+Enter)."
READY_HINT = "Press Generate (Ctrl+Enter) to make an image."

# How the banner's messages about these two subjects begin (file_menu, job_factory, form_state say them).
_MODEL_MESSAGES = ("Choose a model first", "Still reading the model files", "Reading the model files")
_MODEL_MARK = " cannot be used: "
_PROMPT_MESSAGES = ("Write a prompt first",)


class StaleMessages:
    def __init__(
        self,
        banner: MessageBanner,
        canvas: CanvasView,
        picker: ModelPickerController,
        state: GenerationFormState,
    ) -> None:
        self._banner, self._canvas, self._state = banner, canvas, state
        picker.selection_changed.connect(self._on_picker_selection_changed)
        state.listeners.append(self._on_state_changed)
        self._show_prompt_hint()

    def close(self) -> None:
        if self._on_state_changed in self._state.listeners:
            self._state.listeners.remove(self._on_state_changed)

    def _on_picker_selection_changed(self, info: ModelSetInfo | None, _hint: str) -> None:
        if info is not None and info.usable:
            text = self._banner.message()
            if text.startswith(_MODEL_MESSAGES) or _MODEL_MARK in text:
                self._banner.hide()

    def _on_state_changed(self, changed: frozenset[str]) -> None:
        if "prompt" not in changed:
            return
        self._show_prompt_hint()
        if self._state.values.prompt.strip() and self._banner.message().startswith(_PROMPT_MESSAGES):
            self._banner.hide()

    def _show_prompt_hint(self) -> None:
        hint = READY_HINT if self._state.values.prompt.strip() else NO_PROMPT_HINT
        if hint != self._canvas.placeholder:
            self._canvas.placeholder = hint
            self._canvas.update()
